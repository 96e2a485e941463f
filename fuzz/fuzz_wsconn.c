/* fuzz_wsconn.c - libFuzzer harness for the per-connection engine
 * (csrc/wsconn.c over wsparser.c, wsframe.c, utf8.c).
 *
 * Input: 4 configuration bytes, then the peer's bytes.
 *   [0] bit 0: want_control
 *       bit 1: script mode: the rest is a list of frames that the harness
 *              encodes and masks (see encode_script), so the fuzzer reaches
 *              deep states without having to learn masking
 *       bits 2-3: application: 0 passive (compared against a reference
 *              engine), 1-3 active with rising probability (sends, fragmented
 *              sends, pings, close, abort from inside the message, control
 *              and flush callbacks and between feeds)
 *       bit 4: the transport aborts from inside write calls now and then
 *   [1] max_message_size: 0 defaults (limits NULL), 1..127 bytes,
 *       128..254 (b - 127) * 64 bytes, 255 no limit
 *   [2] max_fragments: 0 none, else b (ignored with limits NULL)
 *   [3] seed for split points and application decisions
 *
 * Invariants: the closed callback at most once and nothing (no message,
 * control, flush, write) after it; after our close frame nothing but pongs
 * (RFC 6455 5.5.1 forbids data frames; since a8a522d the engine answers pings
 * while CLOSING) and never a second close (our output is parsed back with
 * ws_parser role CLIENT and must be valid);
 * feed consumes <= len, all of it while open, nothing once closed; the
 * assembly buffer never above max_message_size; text messages are valid
 * UTF-8 and no message is over the limit; API calls succeed exactly when the
 * state allows; message data stays readable after an abort from inside the
 * callback. In passive mode the whole sequence of events (messages, control
 * reports, frames written, closed) must equal a reference engine's run over
 * ref_parse(), whatever the split points.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "ref_ws.h"
#include "utf8.h"
#include "wsconn.h"
#include "wsframe.h"
#include "wsparser.h"

#define CFG_BYTES 4

/* ---- harness state ------------------------------------------------------ */

typedef struct h_state {
  fz_rng *rng;
  unsigned app;              /* 0 passive, 1..3 active */
  int transport_aborts;
  int want_control;
  uint64_t limit;            /* effective max message size, 0 = none */
  fz_log events;             /* M / P / O / K entries, see log_* */
  fz_log out;                /* every byte written */
  int closed;                /* closed callback count */
  int close_written;         /* our close frame went out */
  int send_open;             /* model: our fragmented message is unfinished */
  int in_feed;
  unsigned long flushes;
  ws_conn *c;
} h_state;

static h_state H;

static void check_buffer(const ws_conn *c) {
  if (H.limit) CHECK(c->msg_cap <= H.limit, "assembly buffer %zu > max_message_size %llu",
                     c->msg_cap, (unsigned long long)H.limit);
  CHECK(c->msg_len <= c->msg_cap, "msg_len %zu > msg_cap %zu", c->msg_len, c->msg_cap);
  CHECK((c->msg == NULL) == (c->msg_cap == 0), "msg %p with cap %zu", (void *)c->msg,
        c->msg_cap);
}

/* ---- logs shared by the engine and the reference -------------------------- */

static void log_message(fz_log *l, unsigned op, const uint8_t *d, size_t n) {
  fz_log_byte(l, 'M');
  fz_log_byte(l, (uint8_t)op);
  fz_log_u64(l, n);
  fz_log_put(l, d, n);
}

static void log_control(fz_log *l, unsigned op, const uint8_t *d, size_t n) {
  fz_log_byte(l, 'P');
  fz_log_byte(l, (uint8_t)op);
  fz_log_u64(l, n);
  fz_log_put(l, d, n);
}

/* A frame we wrote: opcode and payload; for a close frame only its code
 * (the reason of a failure is a free-form sentence). */
static void log_output(fz_log *l, unsigned op, const uint8_t *d, size_t n) {
  fz_log_byte(l, 'O');
  fz_log_byte(l, (uint8_t)op);
  if (op == WS_OP_CLOSE) n = n < 2 ? 0 : 2;
  fz_log_u64(l, n);
  fz_log_put(l, d, n);
}

static void log_closed(fz_log *l, unsigned code, int clean, const char *reason, size_t n) {
  fz_log_byte(l, 'K');
  fz_log_u64(l, code);
  fz_log_byte(l, (uint8_t)clean);
  if (!clean) n = 0; /* our own failure sentences are not compared */
  fz_log_u64(l, n);
  fz_log_put(l, reason, n);
}

/* ---- the application ------------------------------------------------------- */

static const uint8_t text_payload[] = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80";

static int send_ok(void) { return !H.closed && !H.close_written; }

static void app_act(ws_conn *c) {
  if (H.app == 0 || H.closed) return;
  unsigned p = H.app; /* 1..3: act with probability p/4 */
  if (fz_below(H.rng, 4) >= p) return;
  uint8_t buf[200];
  size_t len = (size_t)fz_below(H.rng, sizeof buf);
  for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)('a' + fz_below(H.rng, 26));
  int r;
  switch (fz_below(H.rng, 10)) {
  case 0:
  case 1: {
    unsigned op = fz_chance(H.rng, 1, 2) ? WS_OP_TEXT : WS_OP_BINARY;
    const uint8_t *d = op == WS_OP_TEXT ? text_payload : buf;
    size_t n = op == WS_OP_TEXT ? sizeof text_payload - 1 : len;
    int want = send_ok() && !H.send_open ? 0 : -1;
    r = ws_conn_send(c, op, d, n);
    CHECK(r == want, "ws_conn_send returned %d, expected %d", r, want);
    break;
  }
  case 2:
  case 3: {
    unsigned op = H.send_open ? WS_OP_CONTINUATION : WS_OP_BINARY;
    if (fz_chance(H.rng, 1, 8)) op = fz_below(H.rng, 3); /* sometimes out of order */
    int fin = fz_chance(H.rng, 1, 3);
    int order_ok = op == WS_OP_CONTINUATION ? H.send_open : !H.send_open;
    int want = send_ok() && order_ok ? 0 : -1;
    r = ws_conn_send_frame(c, op, fin, buf, len);
    CHECK(r == want, "ws_conn_send_frame(op %u) returned %d, expected %d", op, r, want);
    if (r == 0) H.send_open = !fin;
    break;
  }
  case 4:
  case 5: {
    size_t n = fz_chance(H.rng, 1, 8) ? 126 : len % 126;
    int want = send_ok() && n <= 125 ? 0 : -1;
    r = fz_chance(H.rng, 1, 2) ? ws_conn_ping(c, buf, n) : ws_conn_pong(c, buf, n);
    CHECK(r == want, "ping/pong returned %d, expected %d", r, want);
    break;
  }
  case 6:
  case 7:
  case 8: {
    static const unsigned codes[] = {0, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1011,
                                     1015, 2999, 3000, 4999, 5000};
    unsigned code = codes[fz_below(H.rng, sizeof codes / sizeof codes[0])];
    size_t rl = fz_chance(H.rng, 1, 2) ? 0 : (size_t)fz_below(H.rng, 130);
    const char *reason = (const char *)buf;
    if (fz_chance(H.rng, 1, 8)) reason = "\xff\xfe bad";
    if (reason != (const char *)buf && rl > 6) rl = 6;
    int valid = code == 0 ? rl == 0 : ws_frame_close_code_valid(code);
    valid = valid && rl <= 123 && ws_utf8_valid((const uint8_t *)reason, rl);
    int want = send_ok() && valid ? 0 : -1;
    size_t before = H.out.len;
    r = ws_conn_close(c, code, reason, rl);
    CHECK(r == want, "ws_conn_close(%u, %zu bytes) returned %d, expected %d", code, rl, r,
          want);
    if (r == 0) CHECK(H.close_written && H.out.len > before, "close accepted, none written");
    break;
  }
  default:
    ws_conn_abort(c, 1006, "gone", 4);
    CHECK(H.closed == 1, "abort did not report closed");
    break;
  }
}

/* ---- engine callbacks ---------------------------------------------------- */

static void cb_write(ws_conn *c, const ws_conn_buf *bufs, size_t n) {
  CHECK(!H.closed, "write after closed");
  CHECK((n == 1 || n == 2) && bufs[0].len >= 2, "write with %zu pieces", n);
  uint8_t frame[WS_FRAME_MAX_HEADER + 256];
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    CHECK(bufs[i].base != NULL || bufs[i].len == 0, "NULL write piece");
    fz_log_put(&H.out, bufs[i].base, bufs[i].len);
    if (total + bufs[i].len <= sizeof frame) memcpy(frame + total, bufs[i].base, bufs[i].len);
    total += bufs[i].len;
  }
  /* One write is one frame: decode it for the event log. */
  CHECK(total >= 2, "write of %zu bytes", total);
  unsigned op = frame[0] & 0x0F, len7 = frame[1] & 0x7F;
  CHECK((frame[1] & 0x80) == 0, "we masked a frame");
  size_t hl = len7 < 126 ? 2 : len7 == 126 ? 4 : 10;
  /* RFC 6455 5.5.1: no data frame after our close frame, and one close.
   * Pongs may follow it (the engine answers pings while CLOSING). */
  CHECK(!H.close_written || op == WS_OP_PONG, "frame with opcode %u written after our close "
        "frame", op);
  if (op == WS_OP_CLOSE) H.close_written = 1;
  if (total <= sizeof frame) log_output(&H.events, op, frame + hl, total - hl);
  else log_output(&H.events, op, NULL, 0);
  if (H.transport_aborts && fz_chance(H.rng, 1, 16)) {
    ws_conn_abort(c, 1006, "write failed", 12);
    CHECK(H.closed == 1, "abort inside write did not report closed");
  }
}

static void cb_message(ws_conn *c, unsigned opcode, const uint8_t *data, size_t len) {
  CHECK(!H.closed, "message after closed");
  CHECK(H.in_feed, "message outside a feed");
  CHECK(opcode == WS_OP_TEXT || opcode == WS_OP_BINARY, "message opcode %u", opcode);
  CHECK(data != NULL, "NULL message data");
  if (H.limit) CHECK(len <= H.limit, "message of %zu bytes over the limit", len);
  if (opcode == WS_OP_TEXT) CHECK(ref_utf8_decode(data, len), "invalid UTF-8 delivered");
  check_buffer(c);
  log_message(&H.events, opcode, data, len);
  uint64_t sum = 0;
  for (size_t i = 0; i < len; i++) sum = sum * 31 + data[i];
  app_act(c);
  /* The data must stay readable for the whole call, even after an abort or a
   * close from inside it (ASan flags a use after free). */
  uint64_t again = 0;
  for (size_t i = 0; i < len; i++) again = again * 31 + data[i];
  CHECK(sum == again, "message data changed during the callback");
}

static void cb_control(ws_conn *c, unsigned opcode, const uint8_t *data, size_t len) {
  CHECK(!H.closed, "control after closed");
  CHECK(H.want_control, "control reported without want_control");
  CHECK(opcode == WS_OP_PING || opcode == WS_OP_PONG, "control opcode %u", opcode);
  CHECK(len <= WS_FRAME_MAX_CONTROL && data != NULL, "bad control payload");
  log_control(&H.events, opcode, data, len);
  app_act(c);
}

static void cb_closed(ws_conn *c, unsigned code, const char *reason, size_t reason_len,
                      int clean) {
  CHECK(H.closed == 0, "closed reported twice");
  H.closed = 1;
  CHECK(c->state == WS_CONN_CLOSED, "closed callback in state %u", c->state);
  CHECK(reason != NULL && reason_len <= 123, "bad closed reason");
  if (clean) {
    CHECK(code == 1005 || ws_frame_close_code_valid(code), "clean close with code %u", code);
    CHECK(ws_utf8_valid((const uint8_t *)reason, reason_len), "close reason not UTF-8");
  }
  log_closed(&H.events, code, clean, reason, reason_len);
}

/* The engine is about to write a pong or close of its own: the application
 * may send, close or abort from here. */
static void cb_flush(ws_conn *c) {
  CHECK(!H.closed, "flush after closed");
  CHECK(H.in_feed, "flush outside a feed");
  H.flushes++;
  app_act(c);
}

static const ws_conn_callbacks callbacks = {.write = cb_write, .message = cb_message,
                                            .control = cb_control, .closed = cb_closed,
                                            .flush = cb_flush};

/* ---- the reference engine (passive application) ---------------------------- */

typedef struct ref_engine {
  fz_log *log;
  uint64_t limit;      /* 0 = none */
  uint32_t max_frags;  /* 0 = none */
  int want_control;
  int closed, close_sent;
  unsigned msg_op;
  uint32_t frames;
  fz_log msg;
  uint8_t ctl[125];
  size_t ctl_len;
  unsigned cur_op;
} ref_engine;

static void ref_write(ref_engine *e, unsigned op, const uint8_t *d, size_t n) {
  log_output(e->log, op, d, n);
  if (op == WS_OP_CLOSE) e->close_sent = 1;
}

static void ref_fail(ref_engine *e, unsigned code) {
  if (e->closed) return;
  if (!e->close_sent) {
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    ref_write(e, WS_OP_CLOSE, p, 2);
  }
  e->closed = 1;
  log_closed(e->log, code, 0, "", 0);
}

static void ref_eng_header(void *ctx, const ref_header *h) {
  ref_engine *e = ctx;
  if (e->closed) return;
  e->cur_op = h->opcode;
  if (h->opcode & 8) {
    e->ctl_len = 0;
    return;
  }
  if (h->opcode != WS_OP_CONTINUATION) {
    e->msg_op = h->opcode;
    e->frames = 1;
    e->msg.len = 0;
  } else if (++e->frames > e->max_frags && e->max_frags) {
    ref_fail(e, 1009);
    return;
  }
  if (e->limit && h->length + e->msg.len > e->limit) ref_fail(e, 1009);
}

static void ref_eng_data(void *ctx, const uint8_t *p, size_t n) {
  ref_engine *e = ctx;
  if (e->closed) return;
  if (e->cur_op & 8) {
    memcpy(e->ctl + e->ctl_len, p, n);
    e->ctl_len += n;
    return;
  }
  fz_log_put(&e->msg, p, n);
  size_t bad;
  int complete;
  if (e->msg_op == WS_OP_TEXT && !ref_utf8_table(e->msg.p, e->msg.len, &bad, &complete))
    ref_fail(e, 1007);
}

static void ref_eng_complete(void *ctx, const ref_header *h) {
  ref_engine *e = ctx;
  if (e->closed) return;
  if (h->opcode == WS_OP_CLOSE) {
    unsigned code = 1005;
    if (e->ctl_len == 1) return ref_fail(e, 1002);
    if (e->ctl_len >= 2) {
      code = (unsigned)e->ctl[0] << 8 | e->ctl[1];
      if (!ws_frame_close_code_valid(code)) return ref_fail(e, 1002);
      if (!ref_utf8_decode(e->ctl + 2, e->ctl_len - 2)) return ref_fail(e, 1007);
    }
    if (!e->close_sent) ref_write(e, WS_OP_CLOSE, e->ctl, e->ctl_len >= 2 ? 2 : 0);
    e->closed = 1;
    log_closed(e->log, code, 1, (const char *)e->ctl + 2, e->ctl_len >= 2 ? e->ctl_len - 2 : 0);
    return;
  }
  if (h->opcode == WS_OP_PING || h->opcode == WS_OP_PONG) {
    if (h->opcode == WS_OP_PING && !e->close_sent) ref_write(e, WS_OP_PONG, e->ctl, e->ctl_len);
    if (e->want_control) log_control(e->log, h->opcode, e->ctl, e->ctl_len);
    return;
  }
  if (!h->fin) return;
  if (e->msg_op == WS_OP_TEXT && !ref_utf8_decode(e->msg.p, e->msg.len)) return ref_fail(e, 1007);
  log_message(e->log, e->msg_op, e->msg.p, e->msg.len);
  e->msg.len = 0;
}

/* ---- script mode --------------------------------------------------------- */

/* Padding stops adding frames past this many stream bytes (speed). */
#define SCRIPT_MAX_STREAM (1u << 20)

/* Each record: b0 (first header byte, verbatim), b1 (bit 7 set: send the
 * frame unmasked; bits 0-6: 0..125 the length, 126: a 16-bit length follows,
 * 127: one byte k follows and the length is 2^(k & 63)). The payload is taken
 * from the script; a 7/16-bit length not covered by the script is padded with
 * ASCII, a 2^k length is not (the stream ends inside that frame). */
static void encode_script(const uint8_t *s, size_t n, fz_log *out, fz_rng *rng) {
  size_t i = 0;
  while (i < n && out->len < SCRIPT_MAX_STREAM) {
    uint8_t b0 = s[i++];
    if (i == n) {
      fz_log_byte(out, b0);
      return;
    }
    uint8_t b1 = s[i++];
    int masked = !(b1 & 0x80);
    unsigned code = b1 & 0x7F;
    uint64_t len = code;
    int pad = 1;
    if (code == 126) {
      len = i + 1 < n ? (uint64_t)s[i] << 8 | s[i + 1] : 0;
      i += i + 1 < n ? 2 : n - i;
    } else if (code == 127) {
      len = i < n ? (uint64_t)1 << (s[i] & 63) : 0;
      if (i < n) i++;
      pad = 0;
    }
    uint8_t key[4];
    uint64_t k = fz_next(rng);
    memcpy(key, &k, 4);
    uint8_t hdr[WS_FRAME_MAX_HEADER];
    size_t hl = ws_frame_header(hdr, b0 & 0x0F, b0 >> 7, b0 & 0x70, len, masked ? key : NULL);
    fz_log_put(out, hdr, hl);
    size_t avail = n - i;
    size_t take = (uint64_t)avail < len ? avail : (size_t)len;
    size_t start = out->len;
    fz_log_put(out, s + i, take);
    i += take;
    if ((uint64_t)take < len) {
      if (!pad) return;
      for (uint64_t j = take; j < len; j++) fz_log_byte(out, (uint8_t)('a' + j % 26));
    }
    if (masked) ws_frame_mask(out->p + start, out->len - start, key, 0);
  }
}

/* ---- our output, parsed back ------------------------------------------- */

typedef struct out_count {
  int frames, closes, after_close;
} out_count;

static int out_header(ws_parser *p) {
  out_count *oc = p->data;
  oc->frames++;
  if (oc->closes && p->opcode != WS_OP_PONG) oc->after_close++;
  if (p->opcode == WS_OP_CLOSE) oc->closes++;
  return WS_CB_OK;
}

static const ws_settings out_settings = {out_header, NULL, NULL};

/* ---- the run ------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < CFG_BYTES) return 0;
  fz_rng rng;
  fz_rng_seed(&rng, data + 3, 1);
  memset(&H, 0, sizeof H);
  H.rng = &rng;
  H.want_control = data[0] & 1;
  int script = (data[0] >> 1) & 1;
  H.app = (data[0] >> 2) & 3;
  H.transport_aborts = H.app && ((data[0] >> 4) & 1);
  ws_conn_limits lim, *limp = &lim;
  uint8_t m = data[1];
  if (m == 0) {
    limp = NULL;
    ws_conn_limits_default(&lim);
  } else {
    lim.max_message_size = m < 128 ? m : m < 255 ? (uint64_t)(m - 127) * 64 : 0;
    lim.max_fragments = data[2];
  }
  H.limit = lim.max_message_size;

  fz_log stream = {0};
  if (script) encode_script(data + CFG_BYTES, size - CFG_BYTES, &stream, &rng);
  else fz_log_put(&stream, data + CFG_BYTES, size - CFG_BYTES);
  const uint8_t *in = stream.p;
  size_t n = stream.len;

  ws_conn conn;
  memset(&conn, 0xA5, sizeof conn); /* init must not rely on zeroed memory */
  conn.data = &H;
  ws_conn_init(&conn, &callbacks, limp);
  CHECK(conn.data == &H, "ws_conn_init changed data");
  conn.want_control = (uint8_t)H.want_control;
  H.c = &conn;

  size_t pos = 0;
  while (pos < n) {
    size_t k = fz_piece(&rng, n - pos);
    uint8_t *piece = fz_dup(in + pos, k);
    int was_closed = H.closed;
    H.in_feed = 1;
    size_t used = ws_conn_feed(&conn, piece, k);
    H.in_feed = 0;
    free(piece);
    CHECK(used <= k, "feed consumed %zu of %zu", used, k);
    if (was_closed) CHECK(used == 0, "a closed engine consumed %zu bytes", used);
    else if (!H.closed) CHECK(used == k, "an open engine consumed %zu of %zu", used, k);
    check_buffer(&conn);
    if (H.closed) CHECK(conn.msg == NULL, "assembly buffer kept after closed");
    pos += k;
    app_act(&conn);
  }

  if (H.app == 0) {
    /* Passive: compare with the reference engine over the whole stream. */
    fz_log want = {0};
    ref_engine e;
    memset(&e, 0, sizeof e);
    e.log = &want;
    e.limit = lim.max_message_size;
    e.max_frags = lim.max_fragments;
    e.want_control = H.want_control;
    ref_cfg cfg = {WS_ROLE_SERVER, lim.max_message_size, 0};
    ref_sink sink = {ref_eng_header, ref_eng_data, ref_eng_complete, &e};
    size_t consumed;
    int err = ref_parse(in, n, &cfg, &sink, &consumed, NULL);
    if (err != WS_PE_OK) ref_fail(&e, ws_parser_close_code(err));
    CHECK(fz_log_eq(&H.events, &want), "engine events differ from the reference (%zu vs %zu "
          "log bytes)", H.events.len, want.len);
    fz_log_free(&want);
    fz_log_free(&e.msg);
  }

  /* The transport goes away: closed exactly once in all. */
  ws_conn_abort(&conn, 1006, "", 0);
  CHECK(H.closed == 1, "closed reported %d times", H.closed);
  uint8_t late[6] = {0x81, 0x80, 1, 2, 3, 4};
  CHECK(ws_conn_feed(&conn, late, sizeof late) == 0 && H.closed == 1, "feed after closed");
  ws_conn_free(&conn);
  CHECK(conn.msg == NULL, "buffer after free");

  /* Our output, parsed as a client would: valid, and nothing after close. */
  ws_parser p;
  ws_parser_init(&p);
  p.role = WS_ROLE_CLIENT;
  out_count oc = {0, 0, 0};
  p.data = &oc;
  uint8_t *out = fz_dup(H.out.p, H.out.len);
  size_t used = ws_parser_execute(&p, &out_settings, (char *)out, H.out.len);
  CHECK(p.error == WS_PE_OK && used == H.out.len, "our output does not parse: %s at %zu of %zu",
        ws_parser_strerror(p.error), used, H.out.len);
  CHECK(ws_parser_at_frame_boundary(&p), "our output ends inside a frame");
  CHECK(oc.after_close == 0, "%d non-pong frame(s) written after our close frame",
        oc.after_close);
  CHECK(oc.closes <= 1, "%d close frames written", oc.closes);
  free(out);
  fz_log_free(&stream);
  fz_log_free(&H.events);
  fz_log_free(&H.out);
  return 0;
}
