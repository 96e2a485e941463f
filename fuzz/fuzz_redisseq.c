/* fuzz_redisseq.c - libFuzzer harness for csrc/redisseq.c.
 *
 * Byte 0 sets max_pub_topics (1..8), byte 1 max_origins (1..4); then each
 * 4-byte step is an operation on topics "t0".."t15" (some of one byte, to
 * vary lengths and collide hashes) and origins 0..7, run on the tables and
 * on a plain-array model written here: next (its epoch/seq must match the
 * model's, which clears all counters and raises the epoch when full),
 * track (result and lost must match the model's stream rules), forget,
 * retain (by a bitmask). Stats must agree with the model after every step.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "redisseq.h"

#define NT 16
#define NO 8

typedef struct {
  int has;
  uint32_t epoch;
  uint64_t last;
  unsigned order; /* insertion rank within the topic */
} mstream;

typedef struct {
  int pub_has[NT];
  uint32_t pub_epoch[NT];
  uint64_t pub_seq[NT];
  uint32_t epoch;
  unsigned npub;
  mstream st[NT][NO];
  unsigned nst[NT];
} model;

static void topic_name(unsigned t, char *buf, size_t *len) {
  if (t < 4) {
    buf[0] = (char)('a' + t);
    *len = 1;
  } else {
    *len = (size_t)snprintf(buf, 8, "t%u", t);
  }
}

static int keep_fn(void *arg, const char *topic, size_t len) {
  unsigned keep_mask = *(const unsigned *)arg;
  char b[8];
  size_t l;
  for (unsigned t = 0; t < NT; t++) {
    topic_name(t, b, &l);
    if (l == len && memcmp(b, topic, l) == 0) return (keep_mask >> t) & 1;
  }
  CHECK(0, "retain saw an unknown topic");
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  uint32_t max_pub = 1 + data[0] % 8, max_or = 1 + data[1] % 4;
  uint8_t key[16] = {0};
  ws_rseq *s = ws_rseq_new(key, max_pub, max_or);
  CHECK(s != NULL, "new");
  model m;
  memset(&m, 0, sizeof m);
  m.epoch = 1;
  for (size_t i = 2; i + 4 <= size; i += 4) {
    const uint8_t *op = data + i;
    unsigned t = op[1] % NT, o = op[2] % NO;
    char name[8];
    size_t len;
    topic_name(t, name, &len);
    uint8_t origin[WS_REDIS_ORIGIN_LEN] = {0};
    origin[0] = (uint8_t)o;
    switch (op[0] % 4) {
    case 0: {
      uint32_t e;
      uint64_t q;
      CHECK(ws_rseq_next(s, name, len, &e, &q) == WS_RSEQ_NEXT, "next");
      if (!m.pub_has[t]) {
        if (m.npub >= max_pub) {
          memset(m.pub_has, 0, sizeof m.pub_has);
          memset(m.pub_seq, 0, sizeof m.pub_seq);
          m.npub = 0;
          m.epoch++;
        }
        m.pub_has[t] = 1;
        m.pub_epoch[t] = m.epoch;
        m.npub++;
      }
      m.pub_seq[t]++;
      CHECK(e == m.pub_epoch[t] && q == m.pub_seq[t], "next gave %u/%llu", e,
            (unsigned long long)q);
      break;
    }
    case 1: {
      uint32_t e = 1 + (op[3] >> 6);
      uint64_t q = 1 + (op[3] & 63);
      uint64_t lost = 99;
      int rc = ws_rseq_track(s, name, len, origin, e, q, &lost);
      mstream *ms = &m.st[t][o];
      int want;
      uint64_t wlost = 0;
      if (ms->has) {
        if (e == ms->epoch && q > ms->last) want = WS_RSEQ_NEXT, wlost = q - ms->last - 1;
        else if (e > ms->epoch) want = WS_RSEQ_NEXT, wlost = q - 1;
        else want = WS_RSEQ_STALE;
        if (want == WS_RSEQ_NEXT) ms->epoch = e, ms->last = q;
      } else {
        if (m.nst[t] >= max_or) {
          for (unsigned k = 0; k < NO; k++) m.st[t][k].has = 0;
          m.nst[t] = 0;
        }
        ms->has = 1, ms->epoch = e, ms->last = q;
        m.nst[t]++;
        want = WS_RSEQ_FIRST;
      }
      CHECK(rc == want && lost == wlost, "track rc %d lost %llu, want %d %llu", rc,
            (unsigned long long)lost, want, (unsigned long long)wlost);
      break;
    }
    case 2: {
      int rc = ws_rseq_forget(s, name, len);
      (void)rc;
      for (unsigned k = 0; k < NO; k++) m.st[t][k].has = 0;
      m.nst[t] = 0;
      break;
    }
    default: {
      unsigned keep_mask = (unsigned)op[1] | (unsigned)op[3] << 8;
      ws_rseq_retain(s, keep_fn, &keep_mask);
      for (unsigned k = 0; k < NT; k++)
        if (!((keep_mask >> k) & 1)) {
          for (unsigned j = 0; j < NO; j++) m.st[k][j].has = 0;
          m.nst[k] = 0;
        }
      break;
    }
    }
    ws_rseq_stats st;
    ws_rseq_get_stats(s, &st);
    uint64_t streams = 0;
    for (unsigned k = 0; k < NT; k++) streams += m.nst[k];
    CHECK(st.pub_topics == m.npub && st.streams == streams && st.resets == m.epoch - 1,
          "stats pub %llu streams %llu resets %llu", (unsigned long long)st.pub_topics,
          (unsigned long long)st.streams, (unsigned long long)st.resets);
  }
  ws_rseq_free(s);
  return 0;
}
