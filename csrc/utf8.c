/* utf8.c - incremental UTF-8 validator. See utf8.h for the contract.
 *
 * The automaton is RFC 3629 section 4's table of well-formed sequences:
 *
 *   UTF8-1 = 00-7F
 *   UTF8-2 = C2-DF tail
 *   UTF8-3 = E0 A0-BF tail / E1-EC 2tail / ED 80-9F tail / EE-EF 2tail
 *   UTF8-4 = F0 90-BF 2tail / F1-F3 3tail / F4 80-8F 2tail
 *   tail   = 80-BF
 *
 * The restricted second bytes after E0, ED, F0 and F4 are what exclude
 * overlong forms, surrogates and code points above U+10FFFF; C0, C1 and
 * F5-FF can never occur. Every byte moves the automaton to the next state or
 * to REJECT, so the first byte that cannot continue a valid sequence is the
 * one that fails.
 *
 * Encoding ("shift DFA"): each state is stored as 6 * its number. For every
 * input byte, dfa_row[byte] packs, for each state s, the next state (again
 * times 6) into bits [6s, 6s + 6). One step is then a load, a shift and a
 * mask, with no table lookup that depends on the previous state's load.
 */
#include "utf8.h"

#include <string.h>

enum {
  S_ACCEPT = 0, /* at a code point boundary */
  S_REJECT = 1, /* sticky failure */
  S_TAIL1 = 2,  /* one 80-BF byte still needed */
  S_TAIL2 = 3,  /* two 80-BF bytes still needed */
  S_TAIL3 = 4,  /* three 80-BF bytes still needed */
  S_E0 = 5,     /* after E0: A0-BF, then one tail (no overlongs) */
  S_ED = 6,     /* after ED: 80-9F, then one tail (no surrogates) */
  S_F0 = 7,     /* after F0: 90-BF, then two tails (no overlongs) */
  S_F4 = 8      /* after F4: 80-8F, then two tails (<= U+10FFFF) */
};

/* Next states from ACCEPT, REJECT, TAIL1, TAIL2, TAIL3, E0, ED, F0, F4. */
#define DFA_ROW(n0, n1, n2, n3, n4, n5, n6, n7, n8)                        \
  (((uint64_t)(n0) * 6 << 0) | ((uint64_t)(n1) * 6 << 6) |                 \
   ((uint64_t)(n2) * 6 << 12) | ((uint64_t)(n3) * 6 << 18) |               \
   ((uint64_t)(n4) * 6 << 24) | ((uint64_t)(n5) * 6 << 30) |               \
   ((uint64_t)(n6) * 6 << 36) | ((uint64_t)(n7) * 6 << 42) |               \
   ((uint64_t)(n8) * 6 << 48))

#define X S_REJECT
/* 00-7F: a whole code point, valid only at a boundary. */
#define B_ASCII DFA_ROW(S_ACCEPT, X, X, X, X, X, X, X, X)
/* 80-8F: any tail; the only second bytes F4 allows; ED allows them too. */
#define B_80 DFA_ROW(X, X, S_ACCEPT, S_TAIL1, S_TAIL2, X, S_TAIL1, X, S_TAIL2)
/* 90-9F: any tail; second byte after ED or F0, not after E0 or F4. */
#define B_90 DFA_ROW(X, X, S_ACCEPT, S_TAIL1, S_TAIL2, X, S_TAIL1, S_TAIL2, X)
/* A0-BF: any tail; second byte after E0 or F0, not after ED or F4. */
#define B_A0 DFA_ROW(X, X, S_ACCEPT, S_TAIL1, S_TAIL2, S_TAIL1, X, S_TAIL2, X)
/* C0-C1 and F5-FF: never valid. */
#define B_BAD DFA_ROW(X, X, X, X, X, X, X, X, X)
/* Lead bytes are valid only at a boundary. */
#define B_C2 DFA_ROW(S_TAIL1, X, X, X, X, X, X, X, X)
#define B_E0 DFA_ROW(S_E0, X, X, X, X, X, X, X, X)
#define B_E1 DFA_ROW(S_TAIL2, X, X, X, X, X, X, X, X) /* E1-EC, EE-EF */
#define B_ED DFA_ROW(S_ED, X, X, X, X, X, X, X, X)
#define B_F0 DFA_ROW(S_F0, X, X, X, X, X, X, X, X)
#define B_F1 DFA_ROW(S_TAIL3, X, X, X, X, X, X, X, X) /* F1-F3 */
#define B_F4 DFA_ROW(S_F4, X, X, X, X, X, X, X, X)

#define REP2(x) x, x
#define REP4(x) REP2(x), REP2(x)
#define REP8(x) REP4(x), REP4(x)
#define REP16(x) REP8(x), REP8(x)

static const uint64_t dfa_row[] = {
    REP16(B_ASCII), REP16(B_ASCII), REP16(B_ASCII), REP16(B_ASCII), /* 00-3F */
    REP16(B_ASCII), REP16(B_ASCII), REP16(B_ASCII), REP16(B_ASCII), /* 40-7F */
    REP16(B_80),                                                    /* 80-8F */
    REP16(B_90),                                                    /* 90-9F */
    REP16(B_A0), REP16(B_A0),                                       /* A0-BF */
    REP2(B_BAD),                                                    /* C0-C1 */
    REP16(B_C2), REP8(B_C2), REP4(B_C2), REP2(B_C2),                /* C2-DF */
    B_E0,                                                           /* E0 */
    REP8(B_E1), REP4(B_E1),                                         /* E1-EC */
    B_ED,                                                           /* ED */
    REP2(B_E1),                                                     /* EE-EF */
    B_F0,                                                           /* F0 */
    REP2(B_F1), B_F1,                                               /* F1-F3 */
    B_F4,                                                           /* F4 */
    REP8(B_BAD), REP2(B_BAD), B_BAD,                                /* F5-FF */
};
#undef X

_Static_assert(sizeof dfa_row / sizeof dfa_row[0] == 256, "one row per byte value");

#define ST_ACCEPT ((uint32_t)S_ACCEPT * 6)
#define ST_REJECT ((uint32_t)S_REJECT * 6)

static inline uint32_t dfa_step(uint32_t state, uint8_t byte) {
  return (uint32_t)(dfa_row[byte] >> state) & 63u;
}

#define ASCII_MASK UINT64_C(0x8080808080808080)

/* 1 if p[0..16) are all ASCII. memcpy keeps the loads free of alignment and
 * aliasing UB; compilers turn it into two plain 8-byte loads. */
static inline int ascii16(const uint8_t *p) {
  uint64_t a, b;
  memcpy(&a, p, 8);
  memcpy(&b, p + 8, 8);
  return ((a | b) & ASCII_MASK) == 0;
}

void ws_utf8_init(ws_utf8 *v) { v->state = ST_ACCEPT; }

/* Runs the automaton over p[0..n) and returns the final state. REJECT is
 * sticky, so checking only at the end keeps the loop branch-free; the caller
 * rescans to locate the failing byte. */
static inline uint32_t dfa_run(uint32_t state, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) state = dfa_step(state, p[i]);
  return state;
}

/* Offset of the first byte in p[0..n) that moves state to REJECT; such a
 * byte is known to exist. */
static size_t dfa_find_reject(uint32_t state, const uint8_t *p, size_t n) {
  size_t i = 0;
  for (; i < n; i++) {
    state = dfa_step(state, p[i]);
    if (state == ST_REJECT) break;
  }
  return i;
}

int ws_utf8_feed(ws_utf8 *v, const uint8_t *data, size_t len, size_t *bad_offset) {
  uint32_t state = v->state;
  if (state == ST_REJECT) {
    if (bad_offset) *bad_offset = 0;
    return WS_UTF8_INVALID;
  }
  if (len == 0) return WS_UTF8_OK; /* data may be NULL then */
  size_t i = 0;
  while (len - i >= 16) {
    /* Skip ASCII sixteen bytes at a time while between code points. */
    if (state == ST_ACCEPT && ascii16(data + i)) {
      i += 16;
      continue;
    }
    uint32_t next = dfa_run(state, data + i, 16);
    if (next == ST_REJECT) {
      i += dfa_find_reject(state, data + i, 16);
      goto reject;
    }
    state = next;
    i += 16;
  }
  {
    uint32_t next = dfa_run(state, data + i, len - i);
    if (next == ST_REJECT) {
      i += dfa_find_reject(state, data + i, len - i);
      goto reject;
    }
    state = next;
  }
  v->state = state;
  return WS_UTF8_OK;

reject:
  v->state = ST_REJECT;
  if (bad_offset) *bad_offset = i;
  return WS_UTF8_INVALID;
}

int ws_utf8_complete(const ws_utf8 *v) { return v->state == ST_ACCEPT; }

int ws_utf8_valid(const uint8_t *data, size_t len) {
  ws_utf8 v;
  ws_utf8_init(&v);
  return ws_utf8_feed(&v, data, len, NULL) == WS_UTF8_OK && ws_utf8_complete(&v);
}
