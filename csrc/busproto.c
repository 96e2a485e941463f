/* busproto.c - worker bus frames (see busproto.h). */
#include "busproto.h"

#include <stdlib.h>
#include <string.h>

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

void ws_bus_header_encode(uint8_t out[WS_BUS_HEADER], const ws_bus_frame *f) {
  out[0] = 'w';
  out[1] = 'B';
  out[2] = WS_BUS_VERSION;
  out[3] = (uint8_t)f->type;
  out[4] = (uint8_t)f->opcode;
  out[5] = 0;
  put16(out + 6, (uint32_t)f->topic_len);
  put32(out + 8, (uint32_t)f->payload_len);
  put64(out + 12, f->origin);
  put64(out + 20, f->seq);
}

void ws_bus_stats_encode(uint8_t out[WS_BUS_STATS_LEN], const uint64_t v[WS_BUS_STATS_COUNT]) {
  for (int i = 0; i < WS_BUS_STATS_COUNT; i++) put64(out + 8 * i, v[i]);
}

void ws_bus_stats_decode(const uint8_t in[WS_BUS_STATS_LEN], uint64_t v[WS_BUS_STATS_COUNT]) {
  for (int i = 0; i < WS_BUS_STATS_COUNT; i++) v[i] = get64(in + 8 * i);
}

void ws_bus_header_set_seq(uint8_t hdr[WS_BUS_HEADER], uint64_t seq) { put64(hdr + 20, seq); }

int ws_bus_header_decode(const uint8_t in[WS_BUS_HEADER], const ws_bus_limits *lim,
                         ws_bus_frame *f) {
  if (in[0] != 'w' || in[1] != 'B') return WS_BUS_E_MAGIC;
  if (in[2] != WS_BUS_VERSION) return WS_BUS_E_VERSION;
  unsigned type = in[3], opcode = in[4];
  if (type < WS_BUS_HELLO || type > WS_BUS_STATS) return WS_BUS_E_TYPE;
  if (type == WS_BUS_PUB ? (opcode != 1 && opcode != 2) : opcode != 0) return WS_BUS_E_OPCODE;
  if (in[5] != 0) return WS_BUS_E_RESERVED;
  size_t tl = ((size_t)in[6] << 8) | in[7];
  size_t pl = ((size_t)in[8] << 24) | ((size_t)in[9] << 16) | ((size_t)in[10] << 8) | in[11];
  int no_topic = type == WS_BUS_HELLO || type == WS_BUS_STATS;
  if (no_topic ? tl != 0 : (tl == 0 || tl > lim->max_topic)) return WS_BUS_E_TOPIC;
  if (type == WS_BUS_PUB     ? pl > lim->max_payload
      : type == WS_BUS_STATS ? pl != WS_BUS_STATS_LEN
                             : pl != 0)
    return WS_BUS_E_PAYLOAD;
  f->type = type;
  f->opcode = opcode;
  f->topic_len = tl;
  f->payload_len = pl;
  f->origin = get64(in + 12);
  f->seq = get64(in + 20);
  f->topic = NULL;
  f->payload = NULL;
  return WS_BUS_OK;
}

const char *ws_bus_strerror(int err) {
  switch (err) {
    case WS_BUS_OK: return "ok";
    case WS_BUS_E_MAGIC: return "not a worker bus frame (bad magic)";
    case WS_BUS_E_VERSION: return "unknown worker bus frame version";
    case WS_BUS_E_TYPE: return "unknown worker bus frame type";
    case WS_BUS_E_OPCODE: return "bad opcode for the frame type";
    case WS_BUS_E_RESERVED: return "reserved byte not zero";
    case WS_BUS_E_TOPIC: return "bad topic length";
    case WS_BUS_E_PAYLOAD: return "bad payload length";
    case WS_BUS_E_NOMEM: return "out of memory";
    default: return "unknown error";
  }
}

/* ---- decoder ------------------------------------------------------------- */

void ws_bus_decoder_init(ws_bus_decoder *d, const ws_bus_limits *lim) {
  memset(d, 0, sizeof *d);
  d->lim = *lim;
}

void ws_bus_decoder_free(ws_bus_decoder *d) {
  free(d->buf);
  d->buf = NULL;
  d->len = d->cap = d->need = 0;
}

static int reserve(ws_bus_decoder *d, size_t n) {
  if (n <= d->cap) return 0;
  char *p = realloc(d->buf, n);
  if (!p) return -1;
  d->buf = p;
  d->cap = n;
  return 0;
}

static void point(ws_bus_frame *f, const char *base) {
  f->topic = base + WS_BUS_HEADER;
  f->payload = base + WS_BUS_HEADER + f->topic_len;
}

int ws_bus_decoder_feed(ws_bus_decoder *d, const char *data, size_t len, ws_bus_frame_fn fn,
                        void *arg) {
  if (d->error) return d->error;
  ws_bus_frame f;
  size_t pos = 0;
  /* A frame begun in an earlier feed: complete it in the buffer. */
  while (d->len > 0 && pos < len) {
    if (d->len < WS_BUS_HEADER) {
      size_t k = WS_BUS_HEADER - d->len;
      if (k > len - pos) k = len - pos;
      memcpy(d->buf + d->len, data + pos, k);
      d->len += k;
      pos += k;
      if (d->len < WS_BUS_HEADER) return WS_BUS_OK;
      int rc = ws_bus_header_decode((const uint8_t *)d->buf, &d->lim, &f);
      if (rc != WS_BUS_OK) return d->error = rc;
      d->need = WS_BUS_HEADER + f.topic_len + f.payload_len;
      if (reserve(d, d->need) != 0) return d->error = WS_BUS_E_NOMEM;
    }
    size_t k = d->need - d->len;
    if (k > len - pos) k = len - pos;
    memcpy(d->buf + d->len, data + pos, k);
    d->len += k;
    pos += k;
    if (d->len < d->need) return WS_BUS_OK;
    ws_bus_header_decode((const uint8_t *)d->buf, &d->lim, &f); /* checked above */
    point(&f, d->buf);
    d->len = d->need = 0;
    if (fn(arg, &f)) return 1;
  }
  /* Whole frames in data: handed out in place. */
  while (len - pos >= WS_BUS_HEADER) {
    int rc = ws_bus_header_decode((const uint8_t *)data + pos, &d->lim, &f);
    if (rc != WS_BUS_OK) return d->error = rc;
    size_t whole = WS_BUS_HEADER + f.topic_len + f.payload_len;
    if (len - pos < whole) {
      if (reserve(d, whole) != 0) return d->error = WS_BUS_E_NOMEM;
      d->need = whole;
      break;
    }
    point(&f, data + pos);
    pos += whole;
    if (fn(arg, &f)) return 1;
  }
  /* The start of the next frame (its header checked if it is all here). */
  if (pos < len) {
    if (reserve(d, d->need > WS_BUS_HEADER ? d->need : WS_BUS_HEADER) != 0)
      return d->error = WS_BUS_E_NOMEM;
    memcpy(d->buf, data + pos, len - pos);
    d->len = len - pos;
  }
  return WS_BUS_OK;
}

typedef struct collect_arg {
  ws_bus_record *out;
  size_t cap, n;
  char *bytes;
  size_t bytes_cap, bytes_len;
} collect_arg;

static int collect_one(void *arg, const ws_bus_frame *f) {
  collect_arg *a = arg;
  size_t sz = f->topic_len + f->payload_len;
  if (a->n == a->cap || a->bytes_cap - a->bytes_len < sz) return 1;
  ws_bus_record *r = &a->out[a->n++];
  r->type = f->type;
  r->opcode = f->opcode;
  r->origin = f->origin;
  r->seq = f->seq;
  r->off = a->bytes_len;
  r->topic_len = f->topic_len;
  r->payload_len = f->payload_len;
  if (f->topic_len) memcpy(a->bytes + a->bytes_len, f->topic, f->topic_len);
  if (f->payload_len) memcpy(a->bytes + a->bytes_len + f->topic_len, f->payload, f->payload_len);
  a->bytes_len += sz;
  return 0;
}

int ws_bus_decoder_collect(ws_bus_decoder *d, const char *data, size_t len, ws_bus_record *out,
                           size_t cap, size_t *n, char *bytes, size_t bytes_cap,
                           size_t *bytes_len) {
  collect_arg a = {out, cap, 0, bytes, bytes_cap, 0};
  int rc = ws_bus_decoder_feed(d, data, len, collect_one, &a);
  *n = a.n;
  *bytes_len = a.bytes_len;
  return rc;
}

/* ---- outgoing queue ------------------------------------------------------ */

void ws_bus_outq_init(ws_bus_outq *q) { memset(q, 0, sizeof *q); }

void ws_bus_outq_free(ws_bus_outq *q) {
  free(q->fill);
  free(q->out);
  memset(q, 0, sizeof *q);
}

size_t ws_bus_outq_pending(const ws_bus_outq *q) {
  return q->fill_len + (q->writing ? q->out_len : 0);
}

static int fill_reserve(ws_bus_outq *q, size_t more) {
  if (q->fill_cap - q->fill_len >= more) return 0;
  size_t want = q->fill_cap ? q->fill_cap : 4096;
  while (want - q->fill_len < more) want *= 2;
  char *p = realloc(q->fill, want);
  if (!p) return WS_BUS_E_NOMEM;
  q->fill = p;
  q->fill_cap = want;
  return 0;
}

int ws_bus_outq_append(ws_bus_outq *q, const uint8_t hdr[WS_BUS_HEADER], const char *topic,
                       size_t topic_len, const char *payload, size_t payload_len) {
  if (fill_reserve(q, WS_BUS_HEADER + topic_len + payload_len) != 0) return WS_BUS_E_NOMEM;
  memcpy(q->fill + q->fill_len, hdr, WS_BUS_HEADER);
  q->fill_len += WS_BUS_HEADER;
  if (topic_len) memcpy(q->fill + q->fill_len, topic, topic_len);
  q->fill_len += topic_len;
  if (payload_len) memcpy(q->fill + q->fill_len, payload, payload_len);
  q->fill_len += payload_len;
  return 0;
}

int ws_bus_outq_append_raw(ws_bus_outq *q, const char *data, size_t len) {
  if (fill_reserve(q, len) != 0) return WS_BUS_E_NOMEM;
  memcpy(q->fill + q->fill_len, data, len);
  q->fill_len += len;
  return 0;
}

int ws_bus_outq_take(ws_bus_outq *q) {
  if (q->writing || q->fill_len == 0) return 0;
  char *p = q->out;
  size_t cap = q->out_cap;
  q->out = q->fill;
  q->out_cap = q->fill_cap;
  q->out_len = q->fill_len;
  q->fill = p;
  q->fill_cap = cap;
  q->fill_len = 0;
  q->writing = 1;
  return 1;
}

void ws_bus_outq_done(ws_bus_outq *q) {
  q->writing = 0;
  q->out_len = 0;
  /* A burst's buffer is not kept: an idle link holds at most 64 KiB. */
  if (q->out_cap > 64 * 1024) {
    free(q->out);
    q->out = NULL;
    q->out_cap = 0;
  }
}
