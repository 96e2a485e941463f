/* pmd_sweep.c - what csrc/pmdeflate.c costs per 1 KiB JSON message for each
 * compression level, window and memLevel: the measurement behind the
 * compression_level / compression_window_bits / compression_mem_level /
 * compression_filtered
 * defaults (docs/PERFORMANCE.md).
 *
 *   make build/pmd_sweep && build/pmd_sweep [messages (20000)] [repetitions (3)]
 *
 * Messages are 1 KiB windows at scattered offsets of a 1 MiB JSON-like
 * pattern, the same records and offsets benchmarks/loadgen.c --json uses, so
 * consecutive messages share vocabulary but not text. One ws_pmd in the
 * server role compresses them in turn with context takeover (as an echo
 * server does); a client-role ws_pmd inflates each one (and checks it). Prints
 * per configuration: microseconds per deflate, per inflate, compressed bytes
 * per message, the compressor's memory while live, and what the inflater
 * keeps after an idle release (a 32 KiB window, deflated).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pmdeflate.h"

#define MSG 1024
#define PATTERN (1u << 20)

/* CPU time, not wall time: the machine is shared, and a preempted call
 * would count someone else's work. Whole loops are timed, not single calls. */
static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint8_t *pattern;

static void make_pattern(void) {
  static const char *names[] = {"alpha", "beta", "gamma", "delta", "omega"};
  pattern = malloc(PATTERN + MSG);
  if (!pattern) exit(1);
  size_t at = 0, cap = PATTERN + MSG;
  while (at < cap) {
    char rec[128];
    uint64_t r = rng();
    int n = snprintf(rec, sizeof rec, "{\"id\":%u,\"name\":\"%s-%02u\",\"price\":%u.%02u,"
                     "\"ok\":%s},", (unsigned)(r % 1000000), names[(r >> 20) % 5],
                     (unsigned)((r >> 24) % 100), (unsigned)((r >> 32) % 1000),
                     (unsigned)((r >> 42) % 100), (r >> 50) & 1 ? "true" : "false");
    size_t take = (size_t)n < cap - at ? (size_t)n : cap - at;
    memcpy(pattern + at, rec, take);
    at += take;
  }
}

static const uint8_t *message(uint64_t seq) {
  return pattern + (size_t)((seq * 2654435761u) % (uint64_t)PATTERN);
}

static void run(int level, int bits, int mem, int filtered, int count) {
  ws_pmd_config cfg;
  ws_pmd_config_default(&cfg);
  cfg.level = (uint8_t)level;
  cfg.window_bits = (uint8_t)bits;
  cfg.mem_level = (uint8_t)mem;
  cfg.filtered = (uint8_t)filtered;
  ws_pmd_ctx sctx, cctx;
  ws_pmd_ctx_init(&sctx, &cfg);
  ws_pmd_ctx_init(&cctx, &cfg);
  ws_pmd_params p = {0, 0, 15, 15, 0, 0};
  ws_pmd *srv = ws_pmd_new(&sctx, &p, WS_PMD_SERVER);
  ws_pmd *cli = ws_pmd_new(&cctx, &p, WS_PMD_CLIENT);
  static uint8_t out[MSG * 2];
  uint8_t *zs = malloc((size_t)count * (MSG + 64));
  size_t *zl = malloc((size_t)count * sizeof *zl);
  if (!zs || !zl) exit(1);
  int warm = count / 10;
  double t0 = 0;
  size_t wire = 0, live = 0;
  for (int i = 0; i < count; i++) { /* the server compresses every message */
    if (i == warm) t0 = now_us();
    const uint8_t *z;
    if (ws_pmd_deflate(srv, message((uint64_t)i), MSG, 1, &z, &zl[i]) != WS_PMD_OK) exit(2);
    memcpy(zs + (size_t)i * (MSG + 64), z, zl[i]);
    if (i >= warm) wire += zl[i];
    if (i == 0) live = ws_pmd_memory(srv);
  }
  double t_def = now_us() - t0;
  for (int i = 0; i < count; i++) { /* the client inflates them in order */
    if (i == warm) t0 = now_us();
    size_t used, olen, olen2;
    if (ws_pmd_inflate(cli, zs + (size_t)i * (MSG + 64), zl[i], &used, out, sizeof out, &olen)
        != WS_PMD_OK) exit(3);
    if (ws_pmd_inflate_end(cli, out + olen, sizeof out - olen, &olen2) != WS_PMD_OK) exit(4);
    if (olen + olen2 != MSG || memcmp(out, message((uint64_t)i), MSG) != 0) exit(5);
  }
  double t_inf = now_us() - t0;
  /* Idle release of the inflater (its 32 KiB window kept deflated), then one
   * more message through the restored window. */
  ws_pmd_release(cli);
  size_t idle = ws_pmd_memory(cli);
  {
    const uint8_t *z;
    size_t zlen, used, olen, olen2;
    if (ws_pmd_deflate(srv, message((uint64_t)count), MSG, 1, &z, &zlen) != WS_PMD_OK) exit(6);
    if (ws_pmd_inflate(cli, z, zlen, &used, out, sizeof out, &olen) != WS_PMD_OK) exit(7);
    if (ws_pmd_inflate_end(cli, out + olen, sizeof out - olen, &olen2) != WS_PMD_OK) exit(8);
    if (olen + olen2 != MSG || memcmp(out, message((uint64_t)count), MSG) != 0) exit(9);
  }
  free(zs);
  free(zl);
  int n = count - count / 10;
  printf("level %d  window %2d  memLevel %d  %-8s  deflate %6.2f us   inflate %5.2f us   "
         "%6.1f B/msg (%.3f)   compressor %6.1f KiB   idle inflater %5.2f KiB\n",
         level, bits, mem, filtered ? "filtered" : "default", t_def / n, t_inf / n, (double)wire / n, (double)wire / n / MSG,
         (double)live / 1024, (double)idle / 1024);
  ws_pmd_free(srv);
  ws_pmd_free(cli);
}

int main(int argc, char **argv) {
  int count = argc > 1 ? atoi(argv[1]) : 20000;
  int reps = argc > 2 ? atoi(argv[2]) : 3;
  if (count < 10) count = 10;
  if (reps < 1) reps = 1;
  make_pattern();
  /* level, window, memLevel, Z_FILTERED */
  static const int configs[][4] = {
      {1, 12, 5, 0}, {6, 12, 5, 0}, {6, 12, 5, 1}, {1, 15, 8, 0}, {6, 15, 8, 0}, {6, 15, 8, 1},
      {4, 15, 5, 1}, {5, 15, 5, 1}, {6, 15, 5, 0}, {6, 15, 5, 1}, {7, 15, 5, 1}, {6, 14, 5, 1},
      {6, 13, 5, 1}};
  for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++)
    for (int r = 0; r < reps; r++)
      run(configs[c][0], configs[c][1], configs[c][2], configs[c][3], count);
  return 0;
}
