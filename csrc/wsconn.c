/* wsconn.c - one connection's RFC 6455 protocol engine. See wsconn.h.
 *
 * The frame parser (wsparser.c) does the framing rules and calls back here
 * per frame header, payload chunk and frame end; this file adds what spans
 * frames: message assembly, UTF-8 of text messages, the size and fragment
 * limits, the answers to control frames and the close handshake.
 *
 * States and what moves between them:
 *
 *   state    input                          action                      next
 *   OPEN     peer close (valid)             echo close, closed(clean)   CLOSED
 *   OPEN     ws_conn_close                  write close                 CLOSING
 *   CLOSING  peer close (valid)             closed(clean)               CLOSED
 *   OPEN/CLOSING  protocol error            close frame if none yet,    CLOSED
 *                                           closed(not clean)
 *   OPEN/CLOSING  ws_conn_abort             closed(not clean)           CLOSED
 *   CLOSED   anything                       nothing                     CLOSED
 *
 * Parser callbacks return WS_CB_ABORT once the connection is CLOSED, so the
 * parser stops right after the frame (or byte) that ended it and nothing
 * later in the buffer is consumed.
 */
#include "wsconn.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"

static_assert(sizeof(void *) != 8 || sizeof(ws_conn) == 280,
              "sizeof(ws_conn) is documented as 280 bytes on LP64");

/* RFC 6455 5.5.1: a close payload is a 2-byte code and at most 123 bytes. */
#define MAX_CLOSE_REASON (WS_FRAME_MAX_CONTROL - 2)
/* First assembly buffer; then it doubles. */
#define MIN_ASSEMBLY 256
/* Inflated bytes asked of zlib per step at most: what a compressed message
 * can make the buffer grow by beyond the bytes already checked. */
#define INFLATE_STEP (64 * 1024)

/* A non-NULL pointer for empty payloads: callers may hand it to code that
 * rejects NULL even with a zero length. */
static const uint8_t empty_payload[1] = {0};

void ws_conn_limits_default(ws_conn_limits *l) {
  l->max_message_size = (uint64_t)16 << 20;
  l->max_fragments = 100000;
}

/* ---- output ---------------------------------------------------------- */

/* One frame, one write call: the header from a stack buffer, then the
 * payload where it lies (omitted when empty). */
/* Client frames: the payload masked into a copy (on the stack when small). */
#define MASK_STACK 2048

void ws_conn_abort(ws_conn *c, unsigned code, const char *reason, size_t reason_len);

static void write_masked(ws_conn *c, unsigned opcode, int fin, unsigned rsv,
                         const uint8_t *data, size_t len) {
  uint8_t header[WS_FRAME_MAX_HEADER];
  uint8_t key[4];
  c->cb->mask_key(c, key);
  uint8_t small[MASK_STACK];
  uint8_t *copy = len <= sizeof small ? small : malloc(len);
  if (!copy) {
    /* Nothing half-written: the frame is dropped and the connection fails
     * as if the peer vanished (the transport reports it). */
    ws_conn_abort(c, 1006, "out of memory masking a frame", 29);
    return;
  }
  if (len) memcpy(copy, data, len);
  ws_frame_mask(copy, len, key, 0);
  ws_conn_buf bufs[2];
  bufs[0].base = header;
  bufs[0].len = ws_frame_header(header, opcode, fin, rsv, len, key);
  bufs[1].base = copy;
  bufs[1].len = len;
  c->cb->write(c, bufs, len ? 2 : 1);
  if (copy != small) free(copy);
}

static void write_frame_rsv(ws_conn *c, unsigned opcode, int fin, unsigned rsv,
                            const uint8_t *data, size_t len) {
  if (c->client) {
    write_masked(c, opcode, fin, rsv, data, len);
    return;
  }
  uint8_t header[WS_FRAME_MAX_HEADER];
  ws_conn_buf bufs[2];
  bufs[0].base = header;
  bufs[0].len = ws_frame_header(header, opcode, fin, rsv, len, NULL);
  bufs[1].base = data;
  bufs[1].len = len;
  c->cb->write(c, bufs, len ? 2 : 1);
}

static void write_frame(ws_conn *c, unsigned opcode, int fin, const uint8_t *data, size_t len) {
  write_frame_rsv(c, opcode, fin, 0, data, len);
}

/* Writes our close frame (never twice); code 0 sends an empty payload. */
static void write_close(ws_conn *c, unsigned code, const char *reason, size_t reason_len) {
  uint8_t payload[WS_FRAME_MAX_CONTROL];
  if (reason_len > MAX_CLOSE_REASON) reason_len = MAX_CLOSE_REASON;
  size_t n = ws_frame_close_payload(payload, sizeof payload, code, reason, reason_len);
  c->close_sent = 1;
  write_frame(c, WS_OP_CLOSE, 1, payload, n);
}

/* ---- assembly buffer ------------------------------------------------- */

static void release_buffer(ws_conn *c) {
  /* cb is NULL for a never-initialised (zeroed) engine, which owns nothing. */
  if (c->msg && c->cb && c->cb->buf_give) c->cb->buf_give(c, c->msg, c->msg_cap);
  else free(c->msg);
  c->msg = NULL;
  c->msg_len = c->msg_cap = 0;
}

/* The message in progress is finished (delivered or dropped): forget it and
 * keep only a small buffer for the next one. */
static void end_message(ws_conn *c) {
  c->msg_len = 0;
  c->msg_frames = 0;
  c->msg_opcode = 0;
  c->msg_deflate = 0;
  if (c->msg_cap > WS_CONN_KEEP_BUFFER) release_buffer(c);
}

/* Makes room for `need` bytes in all; `known` is the message's final length
 * when the last frame's header has been seen (else 0). Growth is geometric
 * but never past the size limit or the known end, so memory follows the
 * bytes that actually arrived rather than what a header promised. */
static int reserve(ws_conn *c, size_t need, size_t known) {
  if (need <= c->msg_cap) return 0;
  size_t cap = c->msg_cap ? c->msg_cap : MIN_ASSEMBLY;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  uint64_t limit = c->limits.max_message_size;
  if (limit && cap > limit) cap = (size_t)limit;
  if (known && cap > known && known >= MIN_ASSEMBLY) cap = known;
  if (cap < need) cap = need;
  if (c->msg && c->cb->buf_resize) {
    size_t got = 0;
    uint8_t *p = c->cb->buf_resize(c, c->msg, c->msg_len, cap, &got);
    if (!p) return -1;
    c->msg = p;
    c->msg_cap = got;
    return 0;
  }
  if (c->cb->buf_take) {
    size_t got = 0;
    uint8_t *p = c->cb->buf_take(c, cap, &got);
    if (!p) return -1;
    if (c->msg_len) memcpy(p, c->msg, c->msg_len);
    if (c->msg) c->cb->buf_give(c, c->msg, c->msg_cap);
    c->msg = p;
    c->msg_cap = got;
    return 0;
  }
  uint8_t *p = realloc(c->msg, cap);
  if (!p) return -1;
  c->msg = p;
  c->msg_cap = cap;
  return 0;
}

/* ---- ending the connection ------------------------------------------- */

/* Reports closed, once: the transport may already have aborted from inside
 * the write of our close frame. */
static void finish(ws_conn *c, unsigned code, const char *reason, size_t reason_len, int clean) {
  if (c->state == WS_CONN_CLOSED) return;
  c->state = WS_CONN_CLOSED;
  c->inplace = NULL;
  c->inplace_len = 0;
  c->cb->closed(c, code, reason ? reason : "", reason ? reason_len : 0, clean);
}

/* Before a frame of the engine's own (pong, close): a transport that delays
 * message delivery (batching) delivers now, so the application's replies to
 * earlier messages go out first. The application may close or abort from
 * there: callers re-check the state afterwards. */
static void pre_own_write(ws_conn *c) {
  if (c->cb->flush) c->cb->flush(c);
}

/* Fails the connection (RFC 6455 7.1.7): our close frame with the code and a
 * static sentence, unless one was sent already, then closed(clean = 0). */
static int fail(ws_conn *c, unsigned code, const char *reason) {
  size_t len = strlen(reason);
  if (len > MAX_CLOSE_REASON) len = MAX_CLOSE_REASON;
  pre_own_write(c);
  if (c->state == WS_CONN_CLOSED) return WS_CB_ABORT;
  if (!c->close_sent) write_close(c, code, reason, len);
  finish(c, code, reason, len, 0);
  return WS_CB_ABORT;
}

/* After a callback into the application: stop parsing if it aborted us. */
static int go_on(const ws_conn *c) {
  return c->state == WS_CONN_CLOSED ? WS_CB_ABORT : WS_CB_OK;
}

/* ---- parser callbacks ------------------------------------------------ */

static int on_header(ws_parser *p) {
  ws_conn *c = p->data;
  /* The parser lets RSV1 through only once deflate is negotiated; RFC 7692
   * 6: it marks a compressed message, on its first frame only. */
  if (p->rsv & WS_RSV1) {
    if (WS_OP_IS_CONTROL(p->opcode)) return fail(c, 1002, "RSV1 set on a control frame");
    if (p->opcode == WS_OP_CONTINUATION)
      return fail(c, 1002, "RSV1 set on a continuation frame");
  }
  if (WS_OP_IS_CONTROL(p->opcode)) {
    c->ctl_len = 0;
    return WS_CB_OK;
  }
  /* The parser has already refused a frame over max_frame_size (set to the
   * message limit) and out-of-order continuations. */
  if (p->opcode != WS_OP_CONTINUATION) {
    c->msg_opcode = p->opcode;
    c->msg_frames = 1;
    c->msg_len = 0;
    c->msg_deflate = (p->rsv & WS_RSV1) ? 1 : 0;
    ws_utf8_init(&c->utf8);
  } else if (++c->msg_frames > c->limits.max_fragments && c->limits.max_fragments) {
    return fail(c, 1009, "message split into too many fragments");
  }
  /* msg_len never passes the limit, so the subtraction cannot wrap. A
   * compressed frame is bounded by the parser (max_frame_size) and its
   * inflated bytes as they come out (inflate_into). */
  uint64_t limit = c->limits.max_message_size;
  if (!limit || limit > SIZE_MAX) limit = SIZE_MAX;
  if (!c->msg_deflate && p->length > limit - c->msg_len)
    return fail(c, 1009, "message larger than the size limit");
  return WS_CB_OK;
}

/* Inflates compressed payload (or, with end = 1, the message's end) into the
 * assembly buffer, at most INFLATE_STEP bytes beyond what the buffer holds at
 * a time and never more than one byte past the size limit: a bomb is caught
 * with 1009 when that byte appears, before more memory is spent. Inflated
 * text is validated as it comes out (fail fast, 1007). */
static int inflate_into(ws_conn *c, const uint8_t *in, size_t len, int end) {
  uint64_t limit64 = c->limits.max_message_size;
  size_t limit = !limit64 || limit64 > SIZE_MAX - 1 ? SIZE_MAX - 1 : (size_t)limit64;
  uint8_t spill[1];
  for (;;) {
    uint8_t *out;
    size_t cap;
    if (c->msg_len < limit) {
      size_t step = c->msg_len < INFLATE_STEP ? (c->msg_len > 4096 ? c->msg_len : 4096)
                                              : INFLATE_STEP;
      size_t want = limit - c->msg_len < step ? limit : c->msg_len + step;
      if (want > c->msg_cap && reserve(c, want, 0) != 0)
        return fail(c, 1011, "out of memory for the message");
      out = c->msg + c->msg_len;
      cap = c->msg_cap - c->msg_len;
      if (cap > limit - c->msg_len) cap = limit - c->msg_len;
    } else {
      out = spill; /* any byte here is one too many */
      cap = sizeof spill;
    }
    size_t used = 0, got = 0;
    int r = end ? ws_pmd_inflate_end(c->pmd, out, cap, &got)
                : ws_pmd_inflate(c->pmd, in, len, &used, out, cap, &got);
    if (r == WS_PMD_ERROR) return fail(c, 1007, "invalid compressed data");
    if (r == WS_PMD_NOMEM) return fail(c, 1011, "out of memory for decompression");
    if (got && out == spill) return fail(c, 1009, "message larger than the size limit once inflated");
    if (got && c->msg_opcode == WS_OP_TEXT && ws_utf8_feed(&c->utf8, out, got, NULL) != WS_UTF8_OK)
      return fail(c, 1007, "invalid UTF-8 in a text message");
    c->msg_len += got;
    if (used) { /* in is NULL at the message's end */
      in += used;
      len -= used;
    }
    if (r == WS_PMD_OK) return WS_CB_OK;
  }
}

static int on_chunk(ws_parser *p, const char *at, size_t len) {
  ws_conn *c = p->data;
  const uint8_t *data = (const uint8_t *)at;
  if (WS_OP_IS_CONTROL(p->opcode)) {
    /* The parser bounds a control payload by 125 bytes. */
    memcpy(c->ctl + c->ctl_len, data, len);
    c->ctl_len = (uint8_t)(c->ctl_len + len);
    return WS_CB_OK;
  }
  if (c->msg_deflate) return inflate_into(c, data, len, 0);
  /* Fail fast (RFC 6455 8.1): the first invalid byte ends the connection,
   * whatever is still to come. */
  if (c->msg_opcode == WS_OP_TEXT && ws_utf8_feed(&c->utf8, data, len, NULL) != WS_UTF8_OK)
    return fail(c, 1007, "invalid UTF-8 in a text message");
  if (p->fin && p->opcode != WS_OP_CONTINUATION && len == p->length) {
    /* A whole single-frame message in the caller's buffer: no copy. */
    c->inplace = data;
    c->inplace_len = len;
    return WS_CB_OK;
  }
  size_t need = c->msg_len + len;
  size_t known = p->fin ? need + (size_t)p->remaining : 0;
  if (reserve(c, need, known) != 0) return fail(c, 1011, "out of memory for the message");
  memcpy(c->msg + c->msg_len, data, len);
  c->msg_len = need;
  return WS_CB_OK;
}

static int deliver_message(ws_conn *c) {
  unsigned opcode = c->msg_opcode;
  if (opcode == WS_OP_TEXT && !ws_utf8_complete(&c->utf8))
    return fail(c, 1007, "text message ends inside a UTF-8 sequence");
  const uint8_t *data;
  size_t len;
  if (c->inplace) {
    data = c->inplace;
    len = c->inplace_len;
    c->inplace = NULL;
    c->inplace_len = 0;
  } else {
    data = c->msg_len ? c->msg : empty_payload;
    len = c->msg_len;
  }
  c->cb->message(c, opcode, data, len);
  end_message(c);
  return go_on(c);
}

static int on_close_frame(ws_conn *c) {
  size_t n = c->ctl_len;
  unsigned code = 1005; /* RFC 6455 7.1.5: no status code present */
  const char *reason = "";
  size_t reason_len = 0;
  if (n == 1) return fail(c, 1002, "close frame with a 1-byte payload");
  if (n >= 2) {
    code = (unsigned)c->ctl[0] << 8 | c->ctl[1];
    if (!ws_frame_close_code_valid(code)) return fail(c, 1002, "invalid close code");
    reason = (const char *)c->ctl + 2;
    reason_len = n - 2;
    if (!ws_utf8_valid(c->ctl + 2, reason_len))
      return fail(c, 1007, "invalid UTF-8 in the close reason");
  }
  /* RFC 6455 5.5.1: answer a close with a close, echoing the status code. */
  pre_own_write(c);
  if (c->state == WS_CONN_CLOSED) return WS_CB_ABORT;
  if (!c->close_sent) write_close(c, n >= 2 ? code : 0, NULL, 0);
  finish(c, code, reason, reason_len, 1);
  return WS_CB_ABORT;
}

static int on_complete(ws_parser *p) {
  ws_conn *c = p->data;
  switch (p->opcode) {
  case WS_OP_CLOSE:
    return on_close_frame(c);
  case WS_OP_PING:
    /* RFC 6455 5.5.2: a pong with the same payload "unless it already
     * received a Close frame" -- which ends the connection here. While we
     * wait for the peer's close after sending ours (CLOSING) pings are still
     * answered: 5.5.1 forbids only data frames after our close. */
    pre_own_write(c);
    if (c->state != WS_CONN_CLOSED) write_frame(c, WS_OP_PONG, 1, c->ctl, c->ctl_len);
    /* fall through */
  case WS_OP_PONG:
    if (c->want_control && c->cb->control && c->state != WS_CONN_CLOSED)
      c->cb->control(c, p->opcode, c->ctl_len ? c->ctl : empty_payload, c->ctl_len);
    return go_on(c);
  default:
    if (!p->fin) return WS_CB_OK;
    if (c->msg_deflate && inflate_into(c, NULL, 0, 1) != WS_CB_OK) return WS_CB_ABORT;
    return deliver_message(c);
  }
}

static const ws_settings conn_settings = {on_header, on_chunk, on_complete};

/* ---- API ------------------------------------------------------------- */

void ws_conn_init(ws_conn *c, const ws_conn_callbacks *cb, const ws_conn_limits *limits) {
  void *data = c->data; /* the transport's, as libuv treats handle->data */
  memset(c, 0, sizeof *c);
  c->data = data;
  c->cb = cb;
  if (limits) c->limits = *limits;
  else ws_conn_limits_default(&c->limits);
  ws_parser_init(&c->parser);
  c->parser.role = WS_ROLE_SERVER;
  c->parser.max_frame_size = c->limits.max_message_size;
  c->parser.data = c;
  ws_utf8_init(&c->utf8);
  c->state = WS_CONN_OPEN;
}

void ws_conn_init_client(ws_conn *c, const ws_conn_callbacks *cb, const ws_conn_limits *limits) {
  ws_conn_init(c, cb, limits);
  c->client = 1;
  c->parser.role = WS_ROLE_CLIENT;
}

int ws_conn_enable_deflate(ws_conn *c, ws_pmd_ctx *ctx, const ws_pmd_params *params) {
  if (c->pmd) return 0;
  c->pmd = ws_pmd_new(ctx, params, c->client ? WS_PMD_CLIENT : WS_PMD_SERVER);
  if (!c->pmd) return -1;
  c->parser.rsv_allowed = WS_RSV1;
  /* A compressed frame of incompressible data is a little larger than the
   * message it carries (stored blocks, flush markers): let such frames
   * through; the limit that matters is counted on the inflated bytes. */
  uint64_t limit = c->parser.max_frame_size;
  if (limit && limit < UINT64_MAX / 2) c->parser.max_frame_size = limit + limit / 16 + 1024;
  return 0;
}

void ws_conn_free(ws_conn *c) {
  release_buffer(c);
  ws_pmd_free(c->pmd);
  c->pmd = NULL;
  c->inplace = NULL;
  c->inplace_len = 0;
}

size_t ws_conn_feed(ws_conn *c, uint8_t *data, size_t len) {
  if (c->state == WS_CONN_CLOSED || len == 0) return 0;
  c->busy = 1;
  size_t n = ws_parser_execute(&c->parser, &conn_settings, (char *)data, len);
  if (c->state != WS_CONN_CLOSED && c->parser.error != WS_PE_OK) {
    int err = c->parser.error;
    unsigned code = ws_parser_close_code(err);
    /* ABORTED only comes from our callbacks, which close first; be safe. */
    fail(c, code ? code : 1011, ws_parser_strerror(err));
  }
  c->busy = 0;
  if (c->state == WS_CONN_CLOSED) release_buffer(c);
  return n;
}

/* Our side ran out of memory while sending: close 1011 without calling
 * back into the application (it is the one calling us). */
static int send_failed(ws_conn *c) {
  static const char why[] = "out of memory for compression";
  if (!c->close_sent) write_close(c, 1011, why, sizeof why - 1);
  finish(c, 1011, why, sizeof why - 1, 0);
  return -1;
}

/* One frame of a compressed message; RSV1 on the first (first = 1). */
static int send_deflated(ws_conn *c, unsigned opcode, int fin, int first, const uint8_t *data,
                         size_t len) {
  const uint8_t *z = NULL;
  size_t zlen = 0;
  int r = ws_pmd_deflate(c->pmd, data, len, fin, &z, &zlen);
  if (r == WS_PMD_RAW) {
    write_frame(c, opcode, fin, data, len);
    return 0;
  }
  if (r != WS_PMD_OK) return send_failed(c);
  write_frame_rsv(c, opcode, fin, first ? WS_RSV1 : 0, z, zlen);
  return 0;
}

int ws_conn_send(ws_conn *c, unsigned opcode, const uint8_t *data, size_t len) {
  if (c->close_sent || c->state != WS_CONN_OPEN || c->send_open) return -1;
  if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) return -1;
  if (c->pmd && ws_pmd_compresses(c->pmd, len)) return send_deflated(c, opcode, 1, 1, data, len);
  write_frame(c, opcode, 1, data, len);
  return 0;
}

int ws_conn_send_frame(ws_conn *c, unsigned opcode, int fin, const uint8_t *data, size_t len) {
  if (c->close_sent || c->state != WS_CONN_OPEN) return -1;
  /* RFC 6455 5.4: a message is a first frame, then continuations. */
  if (opcode == WS_OP_CONTINUATION) {
    if (!c->send_open) return -1;
  } else if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) {
    return -1;
  } else if (c->send_open) {
    return -1;
  }
  int first = opcode != WS_OP_CONTINUATION;
  int deflated = first ? c->pmd && (!fin || ws_pmd_compresses(c->pmd, len)) : c->send_open == 2;
  c->send_open = fin ? 0 : (uint8_t)(deflated ? 2 : 1);
  if (deflated) return send_deflated(c, opcode, fin, first, data, len);
  write_frame(c, opcode, fin, data, len);
  return 0;
}

static int send_control(ws_conn *c, unsigned opcode, const uint8_t *data, size_t len) {
  if (c->close_sent || c->state != WS_CONN_OPEN || len > WS_FRAME_MAX_CONTROL) return -1;
  write_frame(c, opcode, 1, data, len);
  return 0;
}

int ws_conn_ping(ws_conn *c, const uint8_t *data, size_t len) {
  return send_control(c, WS_OP_PING, data, len);
}

int ws_conn_pong(ws_conn *c, const uint8_t *data, size_t len) {
  return send_control(c, WS_OP_PONG, data, len);
}

int ws_conn_close(ws_conn *c, unsigned code, const char *reason, size_t reason_len) {
  if (c->close_sent || c->state != WS_CONN_OPEN) return -1;
  if (code == 0 ? reason_len != 0 : !ws_frame_close_code_valid(code)) return -1;
  if (reason_len > MAX_CLOSE_REASON) return -1;
  if (reason_len && !ws_utf8_valid((const uint8_t *)reason, reason_len)) return -1;
  /* CLOSING first: the transport may abort from inside the write. */
  c->state = WS_CONN_CLOSING;
  write_close(c, code, reason, reason_len);
  return 0;
}

void ws_conn_abort(ws_conn *c, unsigned code, const char *reason, size_t reason_len) {
  if (c->state == WS_CONN_CLOSED) return;
  finish(c, code, reason, reason_len, 0);
  /* Inside a feed the message being delivered may live in the buffer; the
   * feed releases it on the way out. */
  if (!c->busy) release_buffer(c);
}
