/* deflate_bench.c - what compressing and inflating one 1 KiB JSON-like
 * message costs with zlib (as csrc/pmdeflate.c uses it) and with libdeflate,
 * to decide whether libdeflate is worth using for the directions without
 * context takeover (issue 10).
 *
 *   make build/deflate_bench && build/deflate_bench [messages (20000)]
 *
 * Messages are 1 KiB windows at scattered offsets of a 1 MiB JSON-like
 * pattern (as benchmarks/loadgen.c --json makes them). Prints, per message:
 * microseconds and compressed bytes for each variant. Needs libdeflate-dev.
 */
#define _GNU_SOURCE
#include <libdeflate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define MSG 1024
#define PATTERN (1u << 20)

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
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

static const uint8_t *message(size_t i) {
  return pattern + (size_t)((i * 2654435761u) % (PATTERN - MSG));
}

/* zlib raw deflate with a sync flush per message; reset = no context takeover. */
static void bench_zlib(size_t n, int level, int bits, int mem, int reset) {
  z_stream z;
  memset(&z, 0, sizeof z);
  deflateInit2(&z, level, Z_DEFLATED, -bits, mem, Z_DEFAULT_STRATEGY);
  uint8_t out[2 * MSG];
  size_t total = 0;
  double t0 = now_us();
  for (size_t i = 0; i < n; i++) {
    z.next_in = (Bytef *)(uintptr_t)message(i);
    z.avail_in = MSG;
    z.next_out = out;
    z.avail_out = sizeof out;
    deflate(&z, Z_SYNC_FLUSH);
    total += sizeof out - z.avail_out - 4;
    if (reset) deflateReset(&z);
  }
  double dt = now_us() - t0;
  deflateEnd(&z);
  printf("zlib deflate level %d, window %2d, memLevel %d, %-15s %6.2f us  %6.1f B\n", level,
         bits, mem, reset ? "reset each" : "context kept", dt / (double)n,
         (double)total / (double)n);
}

static void bench_libdeflate(size_t n, int level) {
  struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);
  uint8_t out[2 * MSG];
  size_t total = 0;
  double t0 = now_us();
  for (size_t i = 0; i < n; i++) total += libdeflate_deflate_compress(c, message(i), MSG, out,
                                                                      sizeof out);
  double dt = now_us() - t0;
  libdeflate_free_compressor(c);
  printf("libdeflate level %d (no context, ends in a BFINAL block)  %6.2f us  %6.1f B\n", level,
         dt / (double)n, (double)total / (double)n);
}

static void bench_inflate(size_t n) {
  /* Each message compressed on its own (what a no-takeover peer sends). */
  uint8_t **zs = malloc(n * sizeof *zs);
  size_t *zl = malloc(n * sizeof *zl);
  z_stream d;
  memset(&d, 0, sizeof d);
  deflateInit2(&d, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  for (size_t i = 0; i < n; i++) {
    zs[i] = malloc(2 * MSG + 4);
    d.next_in = (Bytef *)(uintptr_t)message(i);
    d.avail_in = MSG;
    d.next_out = zs[i];
    d.avail_out = 2 * MSG;
    deflate(&d, Z_SYNC_FLUSH);
    zl[i] = 2 * MSG - d.avail_out; /* keeps the 00 00 ff ff: the receiver's tail */
    deflateReset(&d);
  }
  deflateEnd(&d);
  uint8_t out[MSG + 64];
  z_stream z;
  memset(&z, 0, sizeof z);
  inflateInit2(&z, -15);
  double t0 = now_us();
  for (size_t i = 0; i < n; i++) {
    z.next_in = zs[i];
    z.avail_in = (uInt)zl[i];
    z.next_out = out;
    z.avail_out = sizeof out;
    inflate(&z, Z_SYNC_FLUSH);
    inflateReset(&z);
  }
  double dz = now_us() - t0;
  inflateEnd(&z);
  struct libdeflate_decompressor *ld = libdeflate_alloc_decompressor();
  size_t got = 0, bad = 0;
  t0 = now_us();
  for (size_t i = 0; i < n; i++) {
    /* libdeflate wants a final block: a sync-flushed message has none, so
     * it reports an error past the data it did decode (counted). */
    size_t in_used = 0;
    if (libdeflate_deflate_decompress_ex(ld, zs[i], zl[i], out, sizeof out, &in_used, &got) !=
        LIBDEFLATE_SUCCESS)
      bad++;
  }
  double dl = now_us() - t0;
  libdeflate_free_decompressor(ld);
  printf("zlib inflate (reset each)                              %6.2f us\n", dz / (double)n);
  printf("libdeflate decompress                                  %6.2f us  (%zu of %zu "
         "refused: no final block)\n", dl / (double)n, bad, n);
  for (size_t i = 0; i < n; i++) free(zs[i]);
  free(zs);
  free(zl);
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
  static const char *names[] = {"alpha", "beta", "gamma", "delta", "omega"};
  pattern = malloc(PATTERN);
  if (!pattern) return 1;
  size_t at = 0;
  while (at < PATTERN) {
    char rec[128];
    uint64_t r = rng();
    int k = snprintf(rec, sizeof rec, "{\"id\":%u,\"name\":\"%s-%02u\",\"price\":%u.%02u,"
                     "\"ok\":%s},", (unsigned)(r % 1000000), names[(r >> 20) % 5],
                     (unsigned)((r >> 24) % 100), (unsigned)((r >> 32) % 1000),
                     (unsigned)((r >> 42) % 100), (r >> 50) & 1 ? "true" : "false");
    size_t take = (size_t)k < PATTERN - at ? (size_t)k : PATTERN - at;
    memcpy(pattern + at, rec, take);
    at += take;
  }
  printf("%zu messages of %d bytes\n", n, MSG);
  bench_zlib(n, 6, 12, 5, 0);
  bench_zlib(n, 6, 15, 8, 0);
  bench_zlib(n, 1, 12, 5, 0);
  bench_zlib(n, 6, 12, 5, 1);
  bench_zlib(n, 1, 12, 5, 1);
  bench_libdeflate(n, 6);
  bench_libdeflate(n, 1);
  bench_inflate(n);
  free(pattern);
  return 0;
}
