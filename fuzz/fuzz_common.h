/* fuzz_common.h - helpers shared by the libFuzzer harnesses in fuzz/.
 *
 * Every harness takes a few leading bytes of the input as its configuration
 * (limits, role, a seed) and the rest as the byte stream under test. Choices
 * that do not belong to the stream (where to split it, when a callback pauses
 * or aborts, what the application does) come from a small PRNG seeded from the
 * input, so a crash input replays exactly.
 *
 * CHECK() reports a broken invariant and aborts, which libFuzzer records as a
 * crash and saves as an artifact.
 */
#ifndef WSUV_FUZZ_COMMON_H
#define WSUV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                     \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "\nINVARIANT FAILED %s:%d: %s\n  ", __FILE__, __LINE__, \
              #cond);                                                        \
      fprintf(stderr, __VA_ARGS__);                                          \
      fprintf(stderr, "\n");                                                 \
      abort();                                                               \
    }                                                                        \
  } while (0)

/* splitmix64: tiny, decent, and fully determined by its seed. */
typedef struct fz_rng {
  uint64_t s;
} fz_rng;

static inline void fz_rng_seed(fz_rng *r, const uint8_t *p, size_t n) {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < n; i++) s = (s ^ p[i]) * 0x100000001B3ull;
  r->s = s;
}

static inline uint64_t fz_next(fz_rng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform-ish in [0, n); n > 0. */
static inline uint64_t fz_below(fz_rng *r, uint64_t n) { return fz_next(r) % n; }

/* 1 with probability num/den. */
static inline int fz_chance(fz_rng *r, unsigned num, unsigned den) {
  return fz_below(r, den) < num;
}

/* Length of the next piece when a stream is cut at random points: mostly
 * small pieces (1..16 bytes, which exercise every header state), sometimes
 * large ones, sometimes the whole rest. */
static inline size_t fz_piece(fz_rng *r, size_t left) {
  if (left == 0) return 0;
  size_t n;
  switch (fz_below(r, 4)) {
  case 0: n = 1 + (size_t)fz_below(r, 4); break;
  case 1: n = 1 + (size_t)fz_below(r, 16); break;
  case 2: n = 1 + (size_t)fz_below(r, 256); break;
  default: n = left; break;
  }
  return n < left ? n : left;
}

/* A growable byte log: harnesses serialise the events they see into one and
 * compare logs with memcmp. */
typedef struct fz_log {
  uint8_t *p;
  size_t len, cap;
} fz_log;

static inline void fz_log_put(fz_log *l, const void *data, size_t n) {
  if (n == 0) return;
  if (l->len + n > l->cap) {
    size_t cap = l->cap ? l->cap : 256;
    while (cap < l->len + n) cap *= 2;
    uint8_t *p = realloc(l->p, cap);
    if (!p) abort();
    l->p = p;
    l->cap = cap;
  }
  memcpy(l->p + l->len, data, n);
  l->len += n;
}

static inline void fz_log_byte(fz_log *l, uint8_t b) { fz_log_put(l, &b, 1); }

static inline void fz_log_u64(fz_log *l, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (56 - 8 * i));
  fz_log_put(l, b, 8);
}

/* 1 if the logs are equal. */
static inline int fz_log_eq(const fz_log *a, const fz_log *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* 1 if a is a prefix of b. */
static inline int fz_log_prefix(const fz_log *a, const fz_log *b) {
  return a->len <= b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static inline void fz_log_free(fz_log *l) {
  free(l->p);
  l->p = NULL;
  l->len = l->cap = 0;
}

/* A heap copy of data (the parsers unmask in place, and ASan then catches any
 * read past the end of what we gave them). Never NULL, even for n == 0. */
static inline uint8_t *fz_dup(const uint8_t *data, size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  if (!p) abort();
  if (n) memcpy(p, data, n);
  return p;
}

#endif
