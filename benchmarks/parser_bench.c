/* parser_bench.c - throughput of the C frame parser (csrc/wsparser.c).
 *
 * Build and run (from the repository root):
 *   gcc -O3 -std=c11 -Icsrc -o build/parser_bench \
 *       benchmarks/parser_bench.c csrc/wsparser.c csrc/wsframe.c
 *   ./build/parser_bench
 *
 * Each case builds a buffer of frames (about 1 MiB, or 8 MiB for the 1 MiB
 * payload case), then parses it again and again with callbacks that count
 * frames and payload bytes, as a caller would. The parser unmasks masked
 * payloads in place, so every iteration first restores the buffer from a
 * pristine copy with memcpy; that copy is timed separately and is NOT part of
 * the parse time. Its speed is reported as the memcpy baseline for the same
 * bytes (it runs right before the parse, on the same buffer, so both see the
 * same cache state). Unmasked small frames need no restore: they show the
 * per-frame overhead alone. Best of several rounds.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wsframe.h"
#include "wsparser.h"

#define ROUNDS 7
#define ROUND_NS 60000000.0 /* aim for ~60 ms of parsing per round */

typedef struct {
  uint64_t frames;
  uint64_t bytes;
  uint64_t sum; /* touches each chunk's first byte so no work is dead */
} counts;

static int on_chunk(ws_parser *p, const char *at, size_t len) {
  counts *c = p->data;
  c->bytes += len;
  c->sum += (uint8_t)at[0];
  return WS_CB_OK;
}

static int on_complete(ws_parser *p) {
  counts *c = p->data;
  c->frames++;
  return WS_CB_OK;
}

static const ws_settings settings = {NULL, on_chunk, on_complete};

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint8_t rng_byte(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint8_t)rng_state;
}

/* nframes binary frames of `payload` bytes each; masked with varying keys. */
static char *build(size_t nframes, size_t payload, int masked, size_t *out_len) {
  size_t cap = nframes * (payload + WS_FRAME_MAX_HEADER);
  uint8_t *buf = malloc(cap);
  if (!buf) {
    perror("malloc");
    exit(1);
  }
  size_t n = 0;
  for (size_t f = 0; f < nframes; f++) {
    uint8_t key[4] = {rng_byte(), rng_byte(), rng_byte(), rng_byte()};
    n += ws_frame_header(buf + n, WS_OP_BINARY, 1, 0, payload, masked ? key : NULL);
    for (size_t i = 0; i < payload; i++) buf[n + i] = rng_byte();
    if (masked) ws_frame_mask(buf + n, payload, key, 0);
    n += payload;
  }
  *out_len = n;
  return (char *)buf;
}

typedef struct {
  double parse_ns; /* per iteration, best round */
  double copy_ns;  /* per iteration, best round (0 when no restore) */
} result;

static result run(const char *pristine, size_t len, size_t nframes, size_t payload,
                  int masked) {
  char *work = malloc(len);
  if (!work) {
    perror("malloc");
    exit(1);
  }
  memcpy(work, pristine, len);
  ws_parser p;
  ws_parser_init(&p);
  p.role = masked ? WS_ROLE_SERVER : WS_ROLE_CLIENT;
  counts c = {0, 0, 0};
  p.data = &c;

  /* Calibrate the iterations per round from one timed iteration. */
  double t0 = now_ns();
  memcpy(work, pristine, len);
  ws_parser_execute(&p, &settings, work, len);
  double one = now_ns() - t0;
  long iters = (long)(ROUND_NS / (one > 1 ? one : 1));
  if (iters < 3) iters = 3;

  result best = {1e300, 1e300};
  for (int r = 0; r < ROUNDS; r++) {
    double parse = 0, copy = 0;
    for (long k = 0; k < iters; k++) {
      double a = now_ns();
      if (masked) memcpy(work, pristine, len);
      double b = now_ns();
      c.frames = c.bytes = 0;
      size_t done = ws_parser_execute(&p, &settings, work, len);
      double e = now_ns();
      if (done != len || p.error != WS_PE_OK || c.frames != nframes ||
          c.bytes != (uint64_t)nframes * payload) {
        fprintf(stderr, "parse failed: consumed %zu of %zu, error %s, %llu frames\n", done, len,
                ws_parser_strerror(p.error), (unsigned long long)c.frames);
        exit(1);
      }
      copy += b - a;
      parse += e - b;
    }
    if (parse / iters < best.parse_ns) best.parse_ns = parse / iters;
    if (copy / iters < best.copy_ns) best.copy_ns = copy / iters;
  }
  /* A pass over the unmasked data, checked against a fresh unmask. */
  memcpy(work, pristine, len);
  ws_parser_execute(&p, &settings, work, len);
  if (c.sum == 0 && payload) fprintf(stderr, "(checksum 0)\n");
  free(work);
  return best;
}

static void frames_row(const char *name, size_t payload, int masked, size_t nframes) {
  size_t len;
  char *buf = build(nframes, payload, masked, &len);
  result r = run(buf, len, nframes, payload, masked);
  double ns = r.parse_ns / (double)nframes;
  printf("| %s | %zu | %zu | %.2f | %.1f | %.2f | %s |\n", name, nframes, len, ns, 1e3 / ns,
         (double)len / r.parse_ns, masked ? "excluded" : "none needed");
  free(buf);
}

static void bytes_row(const char *name, size_t payload, size_t nframes) {
  size_t len;
  char *buf = build(nframes, payload, 1, &len);
  result r = run(buf, len, nframes, payload, 1);
  double parse_gbs = (double)len / r.parse_ns, copy_gbs = (double)len / r.copy_ns;
  printf("| %s | %zu | %zu | %.2f | %.2f | %.0f%% |\n", name, nframes, len, parse_gbs, copy_gbs,
         100.0 * parse_gbs / copy_gbs);
  free(buf);
}

int main(void) {
  printf("### C parser (wsparser.c), gcc -O3, best of %d rounds\n\n", ROUNDS);
  printf("Per-frame cost. Masked rows restore the buffer with memcpy before each parse;\n");
  printf("that copy is timed apart and excluded. Unmasked rows need no restore.\n\n");
  printf("| payload | frames/buffer | buffer bytes | ns/frame | Mframes/s | GB/s | restore copy |\n");
  printf("|---|---:|---:|---:|---:|---:|---|\n");
  frames_row("2 B unmasked", 2, 0, 1 << 18);
  frames_row("2 B masked", 2, 1, 1 << 17);
  frames_row("125 B unmasked", 125, 0, 8192);
  frames_row("125 B masked", 125, 1, 8192);
  frames_row("1 KiB masked", 1024, 1, 1024);

  printf("\nBulk: parse + unmask in place vs plain memcpy of the same buffer.\n\n");
  printf("| payload | frames/buffer | buffer bytes | parse+unmask GB/s | memcpy GB/s | "
         "parse/memcpy |\n");
  printf("|---|---:|---:|---:|---:|---:|\n");
  bytes_row("64 KiB masked", 64 * 1024, 16);
  bytes_row("1 MiB masked", 1024 * 1024, 1);
  bytes_row("1 MiB masked, 8 MiB buffer", 1024 * 1024, 8);
  return 0;
}
