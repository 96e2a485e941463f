/* fuzz_busproto.c - libFuzzer harness for csrc/busproto.c (worker bus frames).
 *
 * Input: byte 0 picks the limits (max_topic 1..16 or 256, max_payload 0..64 or
 * 64 KiB), byte 1 seeds the splits, the rest is a byte stream from a peer.
 *   1. An independent reference decoder written here (whole buffer, its own
 *      header rules) says which frames the stream holds and where it fails.
 *   2. ws_bus_decoder_feed, given the stream in one piece and again in
 *      random pieces (fed from exactly-sized heap copies: ASan sees any read
 *      past a piece), must hand out the same frames, in order, with the same
 *      contents, and end with the same result.
 *   3. Every frame re-encoded (ws_bus_header_encode + topic + payload) is
 *      the very bytes it was decoded from.
 *   4. The frames go through a ws_bus_outq (appends, takes, dones in an
 *      order drawn from the seed): what comes out is the concatenation.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "busproto.h"
#include "fuzz_common.h"

#define MAXF 4096

typedef struct rec {
  unsigned type, opcode;
  uint64_t origin, seq;
  size_t start, len;  /* where the whole frame lies in the stream (reference only) */
  const uint8_t *topic, *payload;
  size_t topic_len, payload_len;
} rec;

static uint64_t be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

/* The rules of busproto.h, restated. */
static int ref_header(const uint8_t *p, uint32_t mt, uint32_t mp) {
  if (p[0] != 'w' || p[1] != 'B') return WS_BUS_E_MAGIC;
  if (p[2] != 1) return WS_BUS_E_VERSION;
  if (p[3] < 1 || p[3] > 5) return WS_BUS_E_TYPE;
  if (p[3] == 4 ? !(p[4] == 1 || p[4] == 2) : p[4] != 0) return WS_BUS_E_OPCODE;
  if (p[5]) return WS_BUS_E_RESERVED;
  uint64_t tl = be(p + 6, 2), pl = be(p + 8, 4);
  if (p[3] == 1 || p[3] == 5 ? tl != 0 : (tl == 0 || tl > mt)) return WS_BUS_E_TOPIC;
  if (p[3] == 4 ? pl > mp : p[3] == 5 ? pl != 56 : pl != 0) return WS_BUS_E_PAYLOAD;
  return 0;
}

static int ref_decode(const uint8_t *d, size_t n, uint32_t mt, uint32_t mp, rec *out,
                      size_t *count) {
  size_t pos = 0;
  *count = 0;
  while (n - pos >= WS_BUS_HEADER) {
    int rc = ref_header(d + pos, mt, mp);
    if (rc) return rc;
    size_t tl = (size_t)be(d + pos + 6, 2), pl = (size_t)be(d + pos + 8, 4);
    if (n - pos < WS_BUS_HEADER + tl + pl) break;
    if (*count == MAXF) break;
    rec *r = &out[(*count)++];
    r->type = d[pos + 3];
    r->opcode = d[pos + 4];
    r->origin = be(d + pos + 12, 8);
    r->seq = be(d + pos + 20, 8);
    r->start = pos;
    r->len = WS_BUS_HEADER + tl + pl;
    r->topic = d + pos + WS_BUS_HEADER;
    r->topic_len = tl;
    r->payload = d + pos + WS_BUS_HEADER + tl;
    r->payload_len = pl;
    pos += r->len;
  }
  return 0;
}

typedef struct seen {
  const rec *ref;
  size_t nref, n;
  const uint8_t *stream;
} seen;

static int check_frame(void *arg, const ws_bus_frame *f) {
  seen *s = arg;
  CHECK(s->n < s->nref, "decoder gave more frames (%zu) than the reference", s->n + 1);
  const rec *r = &s->ref[s->n++];
  CHECK(f->type == r->type && f->opcode == r->opcode && f->origin == r->origin &&
            f->seq == r->seq && f->topic_len == r->topic_len && f->payload_len == r->payload_len,
        "frame %zu fields differ", s->n - 1);
  CHECK(!r->topic_len || memcmp(f->topic, r->topic, r->topic_len) == 0, "topic differs");
  CHECK(!r->payload_len || memcmp(f->payload, r->payload, r->payload_len) == 0,
        "payload differs");
  uint8_t hdr[WS_BUS_HEADER];
  ws_bus_header_encode(hdr, f);
  CHECK(memcmp(hdr, s->stream + r->start, WS_BUS_HEADER) == 0, "re-encoded header differs");
  return 0;
}

static void run_decoder(const uint8_t *d, size_t n, const ws_bus_limits *lim, const rec *ref,
                        size_t nref, int ref_rc, fz_rng *rng, int split) {
  ws_bus_decoder dec;
  ws_bus_decoder_init(&dec, lim);
  seen s = {ref, nref, 0, d};
  size_t pos = 0;
  int rc = 0;
  while (pos < n) {
    size_t k = split ? 1 + (size_t)(fz_next(rng) % (n - pos < 64 ? n - pos : 64)) : n - pos;
    uint8_t *piece = fz_dup(d + pos, k);
    rc = ws_bus_decoder_feed(&dec, (const char *)piece, k, check_frame, &s);
    free(piece);
    pos += k;
    if (rc != 0) break;
  }
  CHECK(rc == ref_rc, "decoder ended with %d, reference %d (split %d)", rc, ref_rc, split);
  CHECK(s.n == nref, "decoder gave %zu frames, reference %zu (split %d)", s.n, nref, split);
  if (rc != 0) /* sticky */
    CHECK(ws_bus_decoder_feed(&dec, "wB", 2, check_frame, &s) == rc, "error not sticky");
  size_t biggest = lim->max_topic + (size_t)lim->max_payload;
  if (biggest < WS_BUS_STATS_LEN) biggest = WS_BUS_STATS_LEN;
  CHECK(dec.len <= WS_BUS_HEADER + biggest, "buffer over one frame");
  ws_bus_decoder_free(&dec);
}

static void run_outq(const uint8_t *d, const rec *ref, size_t nref, fz_rng *rng) {
  ws_bus_outq q;
  ws_bus_outq_init(&q);
  size_t total = 0, got = 0;
  for (size_t i = 0; i < nref; i++) total += ref[i].len;
  uint8_t *out = malloc(total + 1);
  for (size_t i = 0; i < nref; i++) {
    const rec *r = &ref[i];
    CHECK(ws_bus_outq_append(&q, d + r->start, (const char *)r->topic, r->topic_len,
                             (const char *)r->payload, r->payload_len) == 0, "append");
    if (fz_next(rng) & 1) {
      if (ws_bus_outq_take(&q)) {
        memcpy(out + got, q.out, q.out_len);
        got += q.out_len;
        CHECK(ws_bus_outq_pending(&q) >= q.out_len, "pending below what is in flight");
        if (fz_next(rng) & 1) ws_bus_outq_done(&q);
      }
    }
    if (q.writing && (fz_next(rng) & 1)) ws_bus_outq_done(&q);
  }
  if (q.writing) ws_bus_outq_done(&q);
  if (ws_bus_outq_take(&q)) {
    memcpy(out + got, q.out, q.out_len);
    got += q.out_len;
    ws_bus_outq_done(&q);
  }
  CHECK(got == total && ws_bus_outq_pending(&q) == 0, "queue lost bytes: %zu of %zu", got, total);
  size_t pos = 0;
  for (size_t i = 0; i < nref; i++) {
    CHECK(memcmp(out + pos, d + ref[i].start, ref[i].len) == 0, "queue reordered bytes");
    pos += ref[i].len;
  }
  free(out);
  ws_bus_outq_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  ws_bus_limits lim;
  lim.max_topic = (data[0] & 15) == 15 ? 256 : 1 + (data[0] & 15);
  lim.max_payload = (data[0] >> 4) == 15 ? 65536 : 4u * (data[0] >> 4);
  fz_rng rng;
  fz_rng_seed(&rng, data, 2);
  const uint8_t *d = data + 2;
  size_t n = size - 2;
  static rec ref[MAXF];
  size_t nref;
  int ref_rc = ref_decode(d, n, lim.max_topic, lim.max_payload, ref, &nref);
  if (nref == MAXF) return 0; /* more frames than the table holds: not compared */
  run_decoder(d, n, &lim, ref, nref, ref_rc, &rng, 0);
  run_decoder(d, n, &lim, ref, nref, ref_rc, &rng, 1);
  run_outq(d, ref, nref, &rng);
  return 0;
}
