/* engine_stress.c - many connections' worth of handshake, parser and engine
 * work, checked end to end, for running under valgrind (make memcheck).
 *
 * Each simulated connection:
 *   1. sends an upgrade request (browser-like, random key, random header
 *      order) or one of a dozen bad requests, fed to ws_handshake in random
 *      pieces; the result, the HTTP status and the 101 response's accept key
 *      are checked; bytes after the head (first frames in the same read) go
 *      to the engine;
 *   2. sends messages of varied sizes (0 B .. 100 KiB), text or binary, whole
 *      or in up to 12 fragments with pings between them, which the
 *      application echoes;
 *      A third of the connections negotiate permessage-deflate: half of their
 *      messages are compressed by the client (zlib, context takeover), RSV1
 *      on the first frame, and the echoes are compressed by the engine (the
 *      output must still parse; the deflate memory must all be returned);
 *   3. ends with a client close, a server close answered by the client, a
 *      protocol error (unmasked frame, bad opcode, RSV bits, invalid UTF-8,
 *      message over the limit, too many fragments, bad close code, 1-byte
 *      close), or the transport dropping it mid-stream.
 * The peer's bytes arrive in random pieces, each in its own heap block. The
 * program checks every message delivered against what was sent, the close
 * code and cleanliness, that closed is reported once, that the server's
 * output parses (role CLIENT) with the echoes and pongs in it and nothing
 * but pongs after its close frame; the same stream also goes through ws_collect the way
 * the Python FrameParser drives it. Exit status 0 when everything matched.
 *
 * Usage: engine_stress [connections (10000)] [seed (1)]
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "collect.h"
#include "handshake.h"
#include "pmdeflate.h"
#include "sha1.h"
#include "utf8.h"
#include "wsconn.h"
#include "wsframe.h"
#include "wsparser.h"

static unsigned long failures;

#define EXPECT(cond, ...)                                             \
  do {                                                                \
    if (!(cond)) {                                                    \
      if (failures++ < 20) {                                          \
        fprintf(stderr, "conn %lu: %s:%d: ", conn_no, __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                                 \
        fprintf(stderr, "\n");                                        \
      }                                                               \
    }                                                                 \
  } while (0)

static unsigned long conn_no;

/* ---- small utilities ---------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static size_t below(size_t n) { return (size_t)(rnd() % n); }

typedef struct buf {
  uint8_t *p;
  size_t len, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
  if (n == 0) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
      perror("realloc");
      exit(2);
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, sizeof v); }
static void buf_free(buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* A client frame: masked with a random key. */
static void client_frame(buf *b, unsigned op, int fin, unsigned rsv, const uint8_t *d, size_t n,
                         int masked) {
  uint8_t hdr[WS_FRAME_MAX_HEADER], key[4];
  uint64_t k = rnd();
  memcpy(key, &k, 4);
  size_t hl = ws_frame_header(hdr, op, fin, rsv, n, masked ? key : NULL);
  put(b, hdr, hl);
  size_t at = b->len;
  put(b, d, n);
  if (masked && n) ws_frame_mask(b->p + at, n, key, 0);
}

/* Random payload: valid UTF-8 for text (mixing 1- to 4-byte sequences), any
 * bytes for binary. */
static void make_payload(buf *b, unsigned op, size_t n) {
  b->len = 0;
  if (op == WS_OP_BINARY) {
    uint64_t w = 0;
    put(b, "", 0);
    while (b->len < n) {
      size_t k = n - b->len < 8 ? n - b->len : 8;
      w = rnd();
      put(b, &w, k);
    }
    return;
  }
  static const char *pieces[] = {"a", "Z", " ", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                 "\xed\x9f\xbf", "\xf4\x8f\xbf\xbf"};
  while (b->len < n) {
    const char *s = pieces[below(8)];
    if (b->len + strlen(s) > n) s = "x";
    puts_(b, s);
  }
}

/* ---- the application side: engine callbacks ------------------------------ */

typedef struct app {
  buf out;          /* server output */
  buf got;          /* messages delivered: op, len, bytes */
  int closed;
  unsigned code;
  int clean;
  int echo;
  int closing;          /* the server sent its close: no more echoes */
  size_t msgs;
  unsigned long pings;
  unsigned long flushes;
  int abort_in_message; /* abort from inside the n-th message callback */
} app;

static void a_write(ws_conn *c, const ws_conn_buf *bufs, size_t n) {
  app *a = c->data;
  EXPECT(!a->closed, "write after closed");
  for (size_t i = 0; i < n; i++) put(&a->out, bufs[i].base, bufs[i].len);
}

static void a_message(ws_conn *c, unsigned op, const uint8_t *d, size_t n) {
  app *a = c->data;
  EXPECT(!a->closed, "message after closed");
  put_u64(&a->got, op);
  put_u64(&a->got, n);
  put(&a->got, d, n);
  a->msgs++;
  if (a->echo && !a->closing) EXPECT(ws_conn_send(c, op, d, n) == 0, "echo send failed");
  if (a->abort_in_message && --a->abort_in_message == 0) {
    ws_conn_abort(c, 1006, "dropped", 7);
    /* The message must still be readable here. */
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++) sum ^= d[i];
    (void)sum;
  }
}

static void a_control(ws_conn *c, unsigned op, const uint8_t *d, size_t n) {
  app *a = c->data;
  (void)d;
  (void)n;
  if (op == WS_OP_PING) a->pings++;
}

static void a_closed(ws_conn *c, unsigned code, const char *r, size_t rn, int clean) {
  app *a = c->data;
  (void)r;
  (void)rn;
  EXPECT(!a->closed, "closed twice");
  a->closed++;
  a->code = code;
  a->clean = clean;
}

/* The engine is about to write a pong or close of its own. */
static void a_flush(ws_conn *c) {
  app *a = c->data;
  EXPECT(!a->closed, "flush after closed");
  a->flushes++;
}

static const ws_conn_callbacks app_cb = {.write = a_write, .message = a_message,
                                         .control = a_control, .closed = a_closed,
                                         .flush = a_flush};

/* ---- parsing the server's output as a client ------------------------------ */

typedef struct out_parse {
  buf frames; /* op, len, payload of each complete frame */
  buf cur;
  unsigned op;
  int closes, after_close;
} out_parse;

static int o_header(ws_parser *p) {
  out_parse *o = p->data;
  /* After our close frame only pongs may follow (RFC 6455 5.5.1). */
  if (o->closes && p->opcode != WS_OP_PONG) o->after_close++;
  o->op = p->opcode;
  o->cur.len = 0;
  return WS_CB_OK;
}
static int o_chunk(ws_parser *p, const char *at, size_t n) {
  out_parse *o = p->data;
  put(&o->cur, at, n);
  return WS_CB_OK;
}
static int o_complete(ws_parser *p) {
  out_parse *o = p->data;
  if (o->op == WS_OP_CLOSE) o->closes++;
  put_u64(&o->frames, o->op);
  put_u64(&o->frames, o->cur.len);
  put(&o->frames, o->cur.p, o->cur.len);
  return WS_CB_OK;
}
static const ws_settings out_settings = {o_header, o_chunk, o_complete};

/* ---- ws_collect, driven like wsuv.FrameParser ------------------------------ */

/* Runs the client stream (from frame_start) through ws_collect in frames mode,
 * in random pieces, keeping retained payload at the front as the Python layer
 * does. Returns the number of complete frames; *err gets the parser error. */
static size_t collect_frames(const uint8_t *s, size_t n, int *err) {
  ws_collect col;
  ws_collect_init(&col, 0);
  uint64_t recs[16 * WS_COLLECT_WORDS];
  buf b = {0};
  size_t frames = 0, pos = 0;
  *err = 0;
  while (pos < n && !*err) {
    size_t k = 1 + below(n - pos < 3000 ? n - pos : 3000);
    size_t start = b.len;
    put(&b, s + pos, k);
    pos += k;
    for (;;) {
      size_t end = ws_collect_run(&col, (char *)b.p, start, b.len, recs, 16);
      for (size_t i = 0; i < col.count; i++) {
        uint64_t off = recs[i * 3 + 1], len = recs[i * 3 + 2];
        if (off + len > b.len) {
          fprintf(stderr, "collect: record outside the buffer\n");
          failures++;
        }
        frames++;
      }
      if (col.parser.error) {
        *err = col.parser.error;
        break;
      }
      if (end >= b.len) break;
      start = end;
    }
    if (*err) break;
    size_t keep = ws_collect_retain(&col, b.len);
    memmove(b.p, b.p + keep, b.len - keep);
    b.len -= keep;
  }
  buf_free(&b);
  return frames;
}

/* ---- handshakes ------------------------------------------------------------ */

enum hs_kind {
  HS_OK, HS_PLAIN_HTTP, HS_NO_KEY, HS_BAD_KEY, HS_VERSION, HS_NO_HOST, HS_POST, HS_HTTP10,
  HS_BODY, HS_MALFORMED, HS_URL_LIMIT, HS_HEADER_LIMIT, HS_NO_UPGRADE_TOKEN, HS_KINDS
};

static void add_header(buf *b, const char *name, const char *value) {
  puts_(b, name);
  puts_(b, below(4) ? ": " : ":\t ");
  puts_(b, value);
  puts_(b, "\r\n");
}

/* Writes a request; returns the expected status and *http_status. */
static int make_request(buf *b, enum hs_kind kind, char key[25], int *http_status) {
  uint8_t nonce[16];
  for (int i = 0; i < 16; i++) nonce[i] = (uint8_t)rnd();
  ws_base64_encode(nonce, 16, key, 24);
  key[24] = 0;
  b->len = 0;
  puts_(b, kind == HS_POST ? "POST " : "GET ");
  if (kind == HS_URL_LIMIT) {
    puts_(b, "/");
    for (int i = 0; i < 9000; i++) puts_(b, "u");
  } else {
    puts_(b, below(2) ? "/chat?room=42&user=stress" : "/");
  }
  puts_(b, kind == HS_HTTP10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  /* Header order varies; the required ones are interleaved with noise. */
  const char *names[8], *values[8];
  int nh = 0;
  if (kind != HS_NO_HOST) names[nh] = "Host", values[nh++] = "localhost:9001";
  if (kind != HS_PLAIN_HTTP)
    names[nh] = "Upgrade", values[nh++] = kind == HS_NO_UPGRADE_TOKEN ? "h2c" : "websocket";
  names[nh] = "Connection", values[nh++] = below(2) ? "Upgrade" : "keep-alive, Upgrade";
  if (kind != HS_NO_KEY) names[nh] = "Sec-WebSocket-Key",
                         values[nh++] = kind == HS_BAD_KEY ? "not-base64!!" : key;
  names[nh] = "Sec-WebSocket-Version", values[nh++] = kind == HS_VERSION ? "8" : "13";
  names[nh] = "User-Agent", values[nh++] = "engine_stress/1.0";
  names[nh] = "Origin", values[nh++] = "http://localhost";
  if (kind == HS_BODY) names[nh] = "Content-Length", values[nh++] = "5";
  for (int i = nh - 1; i > 0; i--) {
    int j = (int)below((size_t)i + 1);
    const char *t = names[i];
    names[i] = names[j], names[j] = t;
    t = values[i];
    values[i] = values[j], values[j] = t;
  }
  for (int i = 0; i < nh; i++) add_header(b, names[i], values[i]);
  if (kind == HS_HEADER_LIMIT)
    for (int i = 0; i < 70; i++) add_header(b, "X-Filler", "1");
  if (kind == HS_MALFORMED) puts_(b, "Bad Header Line\r\n");
  puts_(b, "\r\n");
  if (kind == HS_BODY) puts_(b, "hello");
  switch (kind) {
  case HS_OK: *http_status = 0; return WS_HS_UPGRADE;
  case HS_PLAIN_HTTP: *http_status = 426; return WS_HS_HTTP;
  case HS_NO_KEY: case HS_BAD_KEY: case HS_NO_HOST: case HS_BODY: case HS_MALFORMED:
  case HS_NO_UPGRADE_TOKEN:
    *http_status = 400; return WS_HS_FAIL;
  case HS_VERSION: *http_status = 426; return WS_HS_FAIL;
  case HS_POST: *http_status = 405; return WS_HS_FAIL;
  case HS_HTTP10: *http_status = 505; return WS_HS_FAIL;
  case HS_URL_LIMIT: *http_status = 414; return WS_HS_FAIL;
  case HS_HEADER_LIMIT: *http_status = 431; return WS_HS_FAIL;
  default: return -1;
  }
}

/* Feeds the request in random pieces; returns the status and sets *head to
 * the length of the head. */
static int run_handshake(ws_handshake *hs, const buf *req, size_t *head) {
  size_t pos = 0;
  int st = WS_HS_NEED_MORE;
  *head = 0;
  while (pos < req->len && st == WS_HS_NEED_MORE) {
    size_t k = 1 + below(req->len - pos < 700 ? req->len - pos : 700);
    char *piece = malloc(k);
    memcpy(piece, req->p + pos, k);
    size_t used;
    st = ws_handshake_execute(hs, piece, k, &used);
    free(piece);
    *head += used;
    pos += k;
  }
  return st;
}

/* ---- one connection ----------------------------------------------------------- */

enum ending { END_CLIENT_CLOSE, END_SERVER_CLOSE, END_ERROR, END_DROP, END_DROP_IN_MESSAGE };
enum error_kind { E_UNMASKED, E_OPCODE, E_RSV, E_UTF8, E_TOO_BIG, E_FRAGMENTS, E_CLOSE_CODE,
                  E_CLOSE_1BYTE, E_KINDS };

static unsigned long stat_conns, stat_upgrades, stat_refused, stat_messages, stat_bytes,
    stat_errors, stat_clean, stat_dropped;

static void one_connection(void) {
  buf req = {0}, stream = {0}, expect = {0}, payload = {0};
  char key[25];
  int http_status;
  enum hs_kind kind = below(10) < 8 ? HS_OK : (enum hs_kind)(1 + below(HS_KINDS - 1));
  int want = make_request(&req, kind, key, &http_status);
  stat_conns++;

  if (kind != HS_OK) {
    ws_handshake *hs = ws_handshake_new(NULL);
    size_t head;
    int st = run_handshake(hs, &req, &head);
    EXPECT(st == want, "handshake kind %d: status %d, expected %d (%d %s)", kind, st, want,
           ws_handshake_fail_status(hs), ws_handshake_fail_reason(hs));
    EXPECT(ws_handshake_fail_status(hs) == http_status, "kind %d: HTTP %d, expected %d", kind,
           ws_handshake_fail_status(hs), http_status);
    char resp[512];
    size_t rn = ws_handshake_error_response(ws_handshake_fail_status(hs),
                                            ws_handshake_fail_reason(hs),
                                            strlen(ws_handshake_fail_reason(hs)), NULL, 0,
                                            resp, sizeof resp);
    EXPECT(rn > 0, "error response did not fit");
    stat_refused++;
    ws_handshake_free(hs);
    buf_free(&req);
    return;
  }

  /* The client's frames; the first ones may share the request's last read. */
  ws_conn_limits lim;
  ws_conn_limits_default(&lim);
  lim.max_message_size = 256 * 1024;
  lim.max_fragments = 64;
  enum ending end = (enum ending)below(100);
  end = end < 45 ? END_CLIENT_CLOSE : end < 60 ? END_SERVER_CLOSE : end < 85 ? END_ERROR
        : end < 93 ? END_DROP : END_DROP_IN_MESSAGE;
  enum error_kind ek = (enum error_kind)below(E_KINDS);
  if (end == END_ERROR && ek == E_TOO_BIG) lim.max_message_size = 1000;

  app a;
  memset(&a, 0, sizeof a);
  a.echo = below(2);
  ws_conn *c = malloc(sizeof *c);
  c->data = &a;
  ws_conn_init(c, &app_cb, &lim);
  c->want_control = 1;
  /* permessage-deflate for a third of them, with the client's own zlib. */
  static ws_pmd_ctx pmd_ctx;
  ws_pmd_config pcfg;
  ws_pmd_config_default(&pcfg);
  pcfg.threshold = (uint32_t)below(200);
  ws_pmd_ctx_init(&pmd_ctx, &pcfg);
  int deflate_on = below(3) == 0;
  z_stream cz;
  memset(&cz, 0, sizeof cz);
  int cz_reset = 0; /* client_no_context_takeover: reset per message */
  if (deflate_on) {
    ws_pmd_params pp;
    memset(&pp, 0, sizeof pp);
    pp.server_max_window_bits = (uint8_t)(9 + below(7));
    pp.client_max_window_bits = 15;
    pp.client_no_context_takeover = (uint8_t)below(2);
    EXPECT(ws_conn_enable_deflate(c, &pmd_ctx, &pp) == 0, "enable_deflate failed");
    EXPECT(deflateInit2(&cz, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
    cz_reset = pp.client_no_context_takeover;
  }
  buf zbuf = {0};

  size_t nmsg = below(9);
  size_t server_close_after = nmsg ? below(nmsg) : 0;
  size_t expect_msgs = 0;
  size_t drop_at_msg = end == END_DROP_IN_MESSAGE && nmsg ? 1 + below(nmsg) : 0;
  if (end == END_DROP_IN_MESSAGE && !nmsg) end = END_DROP;
  a.abort_in_message = (int)drop_at_msg;
  unsigned long pings_sent = 0;
  buf echo_expect = {0};

  for (size_t m = 0; m < nmsg; m++) {
    unsigned op = below(2) ? WS_OP_TEXT : WS_OP_BINARY;
    size_t r = below(100), n;
    n = r < 70 ? below(126) : r < 93 ? 126 + below(3970) : r < 99 ? 4096 + below(16384)
      : 65536 + below(40000);
    if (n > lim.max_message_size) n = lim.max_message_size;
    make_payload(&payload, op, n);
    size_t frags = below(3) ? 1 : 2 + below(11);
    /* The bytes on the wire: the payload, or its compressed form. */
    const uint8_t *wire_p = payload.p;
    size_t wire_n = n;
    unsigned rsv = 0;
    if (deflate_on && below(2)) {
      zbuf.len = 0;
      size_t cap = n + n / 8 + 64;
      uint8_t *zout = malloc(cap);
      cz.next_in = payload.p;
      cz.avail_in = (uInt)n;
      cz.next_out = zout;
      cz.avail_out = (uInt)cap;
      int zr = deflate(&cz, Z_SYNC_FLUSH);
      size_t zn = cap - cz.avail_out;
      if (zr == Z_BUF_ERROR && zn == 0) { /* empty after a flush: one 00 byte */
        zout[0] = 0;
        zn = 5;
      }
      EXPECT(zn >= 4, "client deflate gave %zu bytes (%d)", zn, zr);
      put(&zbuf, zout, zn - 4);
      free(zout);
      if (cz_reset) deflateReset(&cz);
      wire_p = zbuf.p;
      wire_n = zbuf.len;
      rsv = WS_RSV1;
    }
    if (frags > wire_n) frags = wire_n ? wire_n : 1;
    size_t at = 0;
    for (size_t f = 0; f < frags; f++) {
      size_t piece = f + 1 == frags ? wire_n - at : (wire_n - at) / (frags - f);
      client_frame(&stream, f ? WS_OP_CONTINUATION : op, f + 1 == frags, f ? 0 : rsv,
                   wire_p + at, piece, 1);
      at += piece;
      if (below(4) == 0) {
        uint8_t ping[8];
        for (int i = 0; i < 8; i++) ping[i] = (uint8_t)rnd();
        client_frame(&stream, WS_OP_PING, 1, 0, ping, below(9), 1);
        pings_sent++;
      }
    }
    if (!drop_at_msg || m < drop_at_msg) {
      put_u64(&expect, op);
      put_u64(&expect, n);
      put(&expect, payload.p, n);
      if (a.echo) {
        put_u64(&echo_expect, op);
        put_u64(&echo_expect, n);
        put(&echo_expect, payload.p, n);
      }
      expect_msgs++;
    }
  }

  unsigned want_code = 0;
  int want_clean = 0;
  switch (end) {
  case END_CLIENT_CLOSE:
  case END_SERVER_CLOSE: {
    uint8_t cp[8];
    size_t cn = ws_frame_close_payload(cp, sizeof cp, 1000, "bye", 3);
    client_frame(&stream, WS_OP_CLOSE, 1, 0, cp, cn, 1);
    client_frame(&stream, WS_OP_TEXT, 1, 0, (const uint8_t *)"late", 4, 1); /* ignored */
    want_code = 1000;
    want_clean = 1;
    break;
  }
  case END_ERROR: {
    static const uint8_t bad_utf8[] = {'o', 'k', 0xED, 0xA0, 0x80};
    uint8_t big[1001] = {0};
    uint8_t cp[2];
    switch (ek) {
    case E_UNMASKED: client_frame(&stream, WS_OP_TEXT, 1, 0, (const uint8_t *)"x", 1, 0);
      want_code = 1002; break;
    case E_OPCODE: client_frame(&stream, 0x3, 1, 0, (const uint8_t *)"x", 1, 1);
      want_code = 1002; break;
    case E_RSV: client_frame(&stream, WS_OP_BINARY, 1, WS_RSV2, (const uint8_t *)"x", 1, 1);
      want_code = 1002; break;
    case E_UTF8: client_frame(&stream, WS_OP_TEXT, 0, 0, bad_utf8, sizeof bad_utf8, 1);
      want_code = 1007; break;
    case E_TOO_BIG: client_frame(&stream, WS_OP_BINARY, 0, 0, big, 600, 1);
      client_frame(&stream, WS_OP_CONTINUATION, 1, 0, big, 401, 1);
      want_code = 1009; break;
    case E_FRAGMENTS:
      client_frame(&stream, WS_OP_BINARY, 0, 0, big, 1, 1);
      for (int i = 0; i < 70; i++) client_frame(&stream, WS_OP_CONTINUATION, 0, 0, big, 1, 1);
      want_code = 1009; break;
    case E_CLOSE_CODE: cp[0] = 0x03, cp[1] = 0xED; /* 1005 may not be sent */
      client_frame(&stream, WS_OP_CLOSE, 1, 0, cp, 2, 1);
      want_code = 1002; break;
    default: client_frame(&stream, WS_OP_CLOSE, 1, 0, (const uint8_t *)"\x03", 1, 1);
      want_code = 1002; break;
    }
    client_frame(&stream, WS_OP_TEXT, 1, 0, (const uint8_t *)"late", 4, 1); /* ignored */
    break;
  }
  case END_DROP:
    /* Half a message, then the transport drops the connection. */
    make_payload(&payload, WS_OP_BINARY, 3000);
    client_frame(&stream, WS_OP_BINARY, 0, 0, payload.p, 3000, 1);
    client_frame(&stream, WS_OP_CONTINUATION, 1, 0, payload.p, 3000, 1);
    stream.len -= 1000;
    want_code = 1006;
    break;
  case END_DROP_IN_MESSAGE:
    want_code = 1006;
    break;
  }

  /* The handshake reads the request and the client's frames as one byte
   * stream: the frames that share its last read are the engine's. */
  buf wire = {0};
  put(&wire, req.p, req.len);
  put(&wire, stream.p, stream.len);
  ws_handshake *hs = ws_handshake_new(NULL);
  size_t head;
  int st = run_handshake(hs, &wire, &head);
  EXPECT(st == WS_HS_UPGRADE, "handshake: status %d (%d %s)", st, ws_handshake_fail_status(hs),
         ws_handshake_fail_reason(hs));
  EXPECT(head == req.len, "head of %zu bytes, request is %zu", head, req.len);
  stat_upgrades++;
  size_t klen;
  const char *k = ws_handshake_key(hs, &klen);
  EXPECT(k && klen == 24 && memcmp(k, key, 24) == 0, "key mismatch");
  char resp[512], accept[WS_ACCEPT_LEN];
  ws_accept_key(key, 24, accept);
  size_t rn = ws_handshake_accept_response(hs, NULL, 0, NULL, 0, resp, sizeof resp);
  EXPECT(rn > 0 && memmem(resp, rn, accept, WS_ACCEPT_LEN) != NULL, "bad 101 response");
  ws_handshake_free(hs);
  buf_free(&wire);

  /* Feed the frames in random pieces. */
  size_t pos = 0;
  int server_close_done = 0;
  while (pos < stream.len && !a.closed) {
    size_t k = 1 + below(stream.len - pos < 5000 ? stream.len - pos : 5000);
    uint8_t *piece = malloc(k);
    memcpy(piece, stream.p + pos, k);
    size_t used = ws_conn_feed(c, piece, k);
    EXPECT(used <= k, "consumed more than given");
    if (!a.closed) EXPECT(used == k, "open engine consumed %zu of %zu", used, k);
    free(piece);
    pos += k;
    /* The server starts the close once enough messages arrived. */
    if (end == END_SERVER_CLOSE && !server_close_done && !a.closed &&
        a.msgs >= server_close_after) {
      EXPECT(ws_conn_close(c, 1001, "going away", 10) == 0, "server close refused");
      a.closing = 1;
      EXPECT(ws_conn_send(c, WS_OP_TEXT, (const uint8_t *)"x", 1) == -1, "send after close");
      server_close_done = 1;
    }
  }
  if (!a.closed) ws_conn_abort(c, 1006, "connection lost", 15);
  EXPECT(a.closed == 1, "closed reported %d times", a.closed);
  EXPECT(c->msg == NULL, "assembly buffer kept after closed");

  if (end == END_SERVER_CLOSE && server_close_done) want_code = 1000; /* the client's answer */
  EXPECT(a.code == want_code, "end %d/%d: close code %u, expected %u", end, ek, a.code,
         want_code);
  EXPECT(a.clean == want_clean, "end %d: clean %d, expected %d", end, a.clean, want_clean);
  EXPECT(a.got.len == expect.len && (!expect.len || memcmp(a.got.p, expect.p, expect.len) == 0),
         "end %d: messages differ (%zu vs %zu bytes)", end, a.got.len, expect.len);
  if (end != END_DROP && end != END_DROP_IN_MESSAGE && end != END_ERROR)
    EXPECT(a.pings == pings_sent, "pings %lu of %lu reported", a.pings, pings_sent);

  /* The server's output as a client sees it. */
  out_parse o;
  memset(&o, 0, sizeof o);
  ws_parser p;
  ws_parser_init(&p);
  p.role = WS_ROLE_CLIENT;
  p.rsv_allowed = deflate_on ? WS_RSV1 : 0;
  p.data = &o;
  size_t used = ws_parser_execute(&p, &out_settings, (char *)a.out.p, a.out.len);
  EXPECT(p.error == WS_PE_OK && used == a.out.len && ws_parser_at_frame_boundary(&p),
         "server output does not parse: %s", ws_parser_strerror(p.error));
  EXPECT(o.after_close == 0 && o.closes <= 1, "frames after close (%d) or %d closes",
         o.after_close, o.closes);
  if (want_code != 1006) EXPECT(o.closes == 1, "no close frame written");
  /* Echoes appear in order among the pongs. */
  buf echoes = {0};
  for (size_t i = 0; i < o.frames.len;) {
    uint64_t op, n;
    memcpy(&op, o.frames.p + i, 8);
    memcpy(&n, o.frames.p + i + 8, 8);
    if (op == WS_OP_TEXT || op == WS_OP_BINARY) put(&echoes, o.frames.p + i, 16 + n);
    i += 16 + n;
  }
  if (end != END_SERVER_CLOSE && !deflate_on) /* compressed echoes: only parsed */
    EXPECT(echoes.len == echo_expect.len && memcmp(echoes.p, echo_expect.p, echoes.len) == 0,
           "echoes differ");

  /* The same stream through ws_collect. */
  int cerr;
  size_t nframes = collect_frames(stream.p, stream.len, &cerr);
  (void)nframes;
  if (end == END_ERROR && ek != E_UTF8 && ek != E_TOO_BIG && ek != E_FRAGMENTS &&
      ek != E_CLOSE_CODE && ek != E_CLOSE_1BYTE)
    EXPECT(cerr != 0, "collect did not fail on error %d", ek);

  stat_messages += a.msgs;
  (void)expect_msgs;
  stat_bytes += stream.len;
  stat_errors += end == END_ERROR;
  stat_clean += a.clean;
  stat_dropped += a.code == 1006;

  if (deflate_on && !a.closed) ws_pmd_release(c->pmd);
  ws_conn_free(c);
  EXPECT(pmd_ctx.bytes == 0, "%zu bytes of deflate memory not returned", pmd_ctx.bytes);
  if (deflate_on) deflateEnd(&cz);
  buf_free(&zbuf);
  free(c);
  buf_free(&req);
  buf_free(&stream);
  buf_free(&expect);
  buf_free(&payload);
  buf_free(&a.out);
  buf_free(&a.got);
  buf_free(&o.frames);
  buf_free(&o.cur);
  buf_free(&echoes);
  buf_free(&echo_expect);
}

int main(int argc, char **argv) {
  unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
  rng_state = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
  for (conn_no = 0; conn_no < n; conn_no++) one_connection();
  printf("engine_stress: %lu connections (%lu upgraded, %lu refused), %lu messages, "
         "%lu client bytes; %lu protocol errors, %lu clean closes, %lu dropped; %lu failures\n",
         stat_conns, stat_upgrades, stat_refused, stat_messages, stat_bytes, stat_errors,
         stat_clean, stat_dropped, failures);
  return failures ? 1 : 0;
}
