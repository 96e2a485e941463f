/* fuzz_pmdeflate.c - libFuzzer harness for permessage-deflate
 * (csrc/pmdeflate.c, and csrc/wsconn.c with deflate negotiated).
 *
 * Input: 4 configuration bytes, then data.
 *   [0] bits 0-1: mode
 *         0 negotiation: the rest is a Sec-WebSocket-Extensions value
 *         1 script: the rest is a list of messages the harness compresses
 *           with its own zlib stream, frames, masks and feeds (see run_script)
 *         2 raw: the rest is fed as is to an engine with deflate on; with
 *           bit 7 set, payloads instead (see run_payloads): arbitrary bytes
 *           sent as RSV1 messages, checked against a reference zlib inflater
 *         3 script, with the application echoing every message
 *       bit 2: client_no_context_takeover, bit 3: server_no_context_takeover
 *       bits 4-7: compression threshold = (b >> 4) * 16 bytes (modes 1, 3)
 *   [1] window bits: client 8 + (b & 7), server 8 + ((b >> 3) & 7)
 *   [2] max_message_size: 0 -> 1 MiB, else b * 256 bytes
 *   [3] seed for split points, fragment sizes and zlib levels
 *
 * Negotiation invariants: the result is 0 or 1; an accepted answer is
 * NUL-terminated, starts with "permessage-deflate", is itself a valid offer
 * that negotiates the same takeover flags, and our own client accepts it
 * when it asked for no window; a declined offer leaves an empty answer.
 *
 * Engine invariants (modes 1-3): closed at most once, with 1002, 1007, 1009
 * or 1000 for our final close; nothing after it; every message arrives
 * inflated, equal to what the script compressed, until the first record
 * that the script made invalid (corrupt data, RSV1 on a continuation,
 * invalid UTF-8, more than the limit): from there only safety is checked,
 * and for the deterministic cases the expected close code; the assembly
 * buffer never exceeds the limit; zlib memory is all given back at free.
 * With echo, our output is parsed back and inflated with an independent zlib
 * stream, and must equal the messages echoed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz_common.h"
#include "pmdeflate.h"
#include "utf8.h"
#include "wsconn.h"
#include "wsframe.h"
#include "wsparser.h"

#define CFG_BYTES 4
#define MAX_BOMB (4u << 20)

/* ---- negotiation ------------------------------------------------------------ */

static void fuzz_negotiation(const uint8_t *cfgb, const uint8_t *data, size_t len) {
  ws_pmd_config cfg;
  ws_pmd_config_default(&cfg);
  cfg.window_bits = (uint8_t)(9 + cfgb[1] % 7);
  cfg.peer_window_bits = (uint8_t)(8 + (cfgb[1] >> 3) % 8);
  cfg.peer_no_context_takeover = (cfgb[0] >> 2) & 1;
  cfg.no_context_takeover = (cfgb[0] >> 3) & 1;
  char *value = (char *)fz_dup(data, len);
  ws_pmd_params p;
  char resp[WS_PMD_HEADER_MAX];
  size_t rlen = 99;
  int r = ws_pmd_negotiate(&cfg, value, len, &p, resp, sizeof resp, &rlen);
  CHECK(r == 0 || r == 1, "negotiate returned %d", r);
  if (r == 0) {
    CHECK(rlen == 0 && resp[0] == 0, "declined with an answer of %zu bytes", rlen);
  } else {
    CHECK(rlen < sizeof resp && resp[rlen] == 0 && strlen(resp) == rlen, "answer not a string");
    CHECK(strncmp(resp, "permessage-deflate", 18) == 0, "answer %s", resp);
    CHECK(p.server_max_window_bits >= 8 && p.server_max_window_bits <= 15, "server bits");
    CHECK(p.client_max_window_bits >= 8 && p.client_max_window_bits <= 15, "client bits");
    CHECK(p.server_max_window_bits <= 15 && (!p.answer_server_bits ||
          p.server_max_window_bits <= cfg.window_bits), "server bits above ours");
    ws_pmd_config open_cfg;
    ws_pmd_config_default(&open_cfg);
    open_cfg.window_bits = open_cfg.peer_window_bits = 15;
    ws_pmd_params again;
    char resp2[WS_PMD_HEADER_MAX];
    size_t rlen2 = 0;
    CHECK(ws_pmd_negotiate(&open_cfg, resp, rlen, &again, resp2, sizeof resp2, &rlen2) == 1,
          "our answer %s is not a valid offer", resp);
    CHECK(again.server_no_context_takeover == p.server_no_context_takeover &&
          again.client_no_context_takeover == p.client_no_context_takeover,
          "answer %s reparsed differently", resp);
    ws_pmd_params client;
    CHECK(ws_pmd_client_accept(&open_cfg, resp, rlen, &client) == 1,
          "our client refuses our answer %s", resp);
    CHECK(client.server_max_window_bits == p.server_max_window_bits &&
          client.client_max_window_bits == p.client_max_window_bits, "client reads other bits");
  }
  /* The client side on arbitrary answers: only the result range. */
  ws_pmd_params client;
  int c = ws_pmd_client_accept(&cfg, value, len, &client);
  CHECK(c >= -1 && c <= 1, "client_accept returned %d", c);
  free(value);
}

/* ---- engine ------------------------------------------------------------------ */

typedef struct expect {
  uint8_t op;
  uint8_t *data;
  size_t len;
} expect;

typedef struct h_state {
  fz_rng *rng;
  int echo;
  uint64_t limit;
  int closed;
  unsigned close_code;
  int close_clean;
  expect *want;             /* messages the script sent, in order */
  size_t nwant, delivered;
  int trusted;              /* every record so far was valid: compare messages */
  fz_log out;               /* bytes written */
  fz_log echoed;            /* op, u64 len, data per message we echoed */
  ws_conn *c;
} h_state;

static h_state H;

static void cb_write(ws_conn *c, const ws_conn_buf *bufs, size_t n) {
  (void)c;
  CHECK(!H.closed, "write after closed");
  for (size_t i = 0; i < n; i++) fz_log_put(&H.out, bufs[i].base, bufs[i].len);
}

static void cb_message(ws_conn *c, unsigned op, const uint8_t *d, size_t n) {
  CHECK(!H.closed, "message after closed");
  CHECK(!H.limit || n <= H.limit, "message of %zu bytes over the limit", n);
  if (op == WS_OP_TEXT) CHECK(ws_utf8_valid(d, n), "invalid UTF-8 delivered");
  if (H.trusted && H.delivered < H.nwant) {
    const expect *e = &H.want[H.delivered];
    CHECK(e->op == op && e->len == n && (n == 0 || memcmp(e->data, d, n) == 0),
          "message %zu differs (%zu bytes, want %zu)", H.delivered, n, e->len);
  }
  H.delivered++;
  if (H.echo && ws_conn_send(c, op, d, n) == 0) {
    fz_log_byte(&H.echoed, (uint8_t)op);
    fz_log_u64(&H.echoed, n);
    fz_log_put(&H.echoed, d, n);
  }
}

static void cb_closed(ws_conn *c, unsigned code, const char *reason, size_t n, int clean) {
  (void)c;
  (void)reason;
  (void)n;
  CHECK(!H.closed, "closed twice");
  H.closed = 1;
  H.close_code = code;
  H.close_clean = clean;
  /* The engine fails a connection only for these (1011: out of memory). */
  if (!clean) CHECK(code == 1002 || code == 1007 || code == 1009 || code == 1011,
                    "failed with %u", code);
}

static const ws_conn_callbacks CB = {cb_write, cb_message, NULL, cb_closed, NULL, NULL, NULL,
                                     NULL};

static void feed_all(ws_conn *c, const uint8_t *data, size_t len) {
  size_t off = 0;
  while (off < len && !H.closed) {
    size_t n = fz_piece(H.rng, len - off);
    uint8_t *piece = fz_dup(data + off, n);
    size_t used = ws_conn_feed(c, piece, n);
    CHECK(used <= n, "consumed %zu of %zu", used, n);
    if (!H.closed) CHECK(used == n, "open but consumed %zu of %zu", used, n);
    free(piece);
    if (c->msg_cap) CHECK(!H.limit || c->msg_cap <= H.limit, "buffer %zu over limit", c->msg_cap);
    off += n;
  }
}

/* Appends one masked client frame to l. */
static void put_frame(fz_log *l, unsigned op, int fin, unsigned rsv, const uint8_t *p, size_t n) {
  uint8_t hdr[WS_FRAME_MAX_HEADER];
  uint8_t key[4];
  uint64_t k = fz_next(H.rng);
  memcpy(key, &k, 4);
  size_t h = ws_frame_header(hdr, op, fin, rsv, n, key);
  fz_log_put(l, hdr, h);
  size_t at = l->len;
  fz_log_put(l, p, n);
  if (n) ws_frame_mask(l->p + at, n, key, 0);
}

/* The script: records [op][len lo][len hi][len bytes]. op bits 0-1: 0 text,
 * 1 binary, 2 ping, 3 bomb (data[0] repeated len * 64 times, at most 4 MiB);
 * bit 2: corrupt one byte of the compressed form; bit 3: send uncompressed;
 * bit 4: RSV1 on a continuation as well; bits 5-7: fragments - 1. */
static void run_script(const uint8_t *cfgb, const uint8_t *data, size_t len) {
  int cnct = (cfgb[0] >> 2) & 1, snct = (cfgb[0] >> 3) & 1;
  unsigned cbits = 8 + (cfgb[1] & 7), sbits = 8 + ((cfgb[1] >> 3) & 7);
  z_stream def;
  memset(&def, 0, sizeof def);
  int level = 1 + (int)fz_below(H.rng, 9);
  CHECK(deflateInit2(&def, level, Z_DEFLATED, -(int)(cbits < 9 ? 9 : cbits), 8,
                     Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
  fz_log wire = {0};
  size_t pos = 0;
  int expect_code = 0; /* the close code an invalid record must cause, 0 = any */
  while (pos + 3 <= len && H.trusted && H.nwant < 64) {
    uint8_t op = data[pos];
    size_t n = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;
    pos += 3;
    if (n > len - pos) n = len - pos;
    const uint8_t *p = data + pos;
    pos += n;
    unsigned kind = op & 3;
    if (kind == 2) { /* a ping between messages */
      put_frame(&wire, WS_OP_PING, 1, 0, p, n > 125 ? 125 : n);
      continue;
    }
    uint8_t *msg = NULL;
    size_t mlen = n;
    unsigned wop = kind == 0 ? WS_OP_TEXT : WS_OP_BINARY;
    if (kind == 3) {
      mlen = n * 64 > MAX_BOMB ? MAX_BOMB : n * 64;
      msg = malloc(mlen ? mlen : 1);
      if (!msg) abort();
      memset(msg, n ? p[0] : 0, mlen);
    } else {
      msg = fz_dup(p, n);
    }
    int valid_text = wop != WS_OP_TEXT || ws_utf8_valid(msg, mlen);
    int over = H.limit && mlen > H.limit;
    /* The compressed form (or the raw one). */
    uint8_t *z = NULL;
    size_t zlen = 0;
    int raw = (op >> 3) & 1;
    if (raw) {
      z = fz_dup(msg, mlen);
      zlen = mlen;
    } else {
      size_t cap = mlen + mlen / 8 + 64;
      z = malloc(cap);
      if (!z) abort();
      def.next_in = msg;
      def.avail_in = (uInt)mlen;
      def.next_out = z;
      def.avail_out = (uInt)cap;
      int zr = deflate(&def, Z_SYNC_FLUSH);
      zlen = cap - def.avail_out;
      if (zr == Z_BUF_ERROR && zlen == 0) {
        /* An empty message right after a flush: zlib writes nothing; the one
         * byte 00 plus the receiver's tail is an empty stored block. */
        z[0] = 0;
        zlen = 1;
      } else {
        CHECK(zr == Z_OK && def.avail_in == 0 && zlen >= 4, "harness deflate");
        zlen -= 4;
      }
      if (cnct) deflateReset(&def);
    }
    int corrupt = !raw && ((op >> 2) & 1) && zlen > 0;
    if (corrupt) z[fz_below(H.rng, zlen)] ^= (uint8_t)(1 + fz_below(H.rng, 255));
    unsigned frags = 1 + (op >> 5);
    int bad_rsv = ((op >> 4) & 1) && frags > 1 && !raw;
    size_t step = zlen / frags + 1, off = 0;
    for (unsigned f = 0; f < frags; f++) {
      size_t take = f + 1 == frags ? zlen - off : (step < zlen - off ? step : zlen - off);
      unsigned rsv = (!raw && (f == 0 || bad_rsv)) ? WS_RSV1 : 0;
      put_frame(&wire, f == 0 ? wop : WS_OP_CONTINUATION, f + 1 == frags, rsv, z + off, take);
      off += take;
    }
    free(z);
    /* Where two faults meet, which one the engine meets first depends on
     * the bytes: then any failure code goes (expect_code 0). */
    if (corrupt) {
      H.trusted = 0; /* may still inflate to something: anything safe goes */
    } else if (bad_rsv || over || !valid_text) {
      H.trusted = 0;
      expect_code = bad_rsv + over + !valid_text > 1 ? 0 : bad_rsv ? 1002 : over ? 1009 : 1007;
    } else {
      H.want = realloc(H.want, (H.nwant + 1) * sizeof *H.want);
      if (!H.want) abort();
      H.want[H.nwant].op = (uint8_t)wop;
      H.want[H.nwant].data = msg;
      H.want[H.nwant].len = mlen;
      H.nwant++;
      msg = NULL;
    }
    free(msg);
  }
  deflateEnd(&def);
  (void)snct;
  (void)sbits;
  feed_all(H.c, wire.p, wire.len);
  fz_log_free(&wire);
  if (H.trusted) {
    CHECK(!H.closed, "closed (%u) on valid traffic", H.close_code);
    CHECK(H.delivered == H.nwant, "%zu of %zu messages delivered", H.delivered, H.nwant);
  } else if (expect_code) {
    CHECK(H.closed && H.close_code == expect_code, "closed %d with %u, expected %d", H.closed,
          H.close_code, expect_code);
  }
}

/* Mode 2 with bit 7: records [flags][len lo][len hi][len bytes]; each is one
 * message whose compressed payload is those bytes as they are (no compressor
 * wrote them), RSV1 on its first frame; flags bit 0: binary, bits 1-2:
 * frames - 1. A reference raw inflater (zlib, window max(client bits, 9) as
 * ours, the 00 00 ff ff tail appended, reset per message without client
 * context takeover, after a final block the rest of the message ignored and
 * the window kept) says what each message inflates to: the engine delivers
 * exactly that; where zlib fails it closes with 1007, past the limit with
 * 1009, on invalid UTF-8 in a text message with 1007 (where two of these meet
 * either code goes), and nothing after. Output is capped at limit + 1. */
enum { REF_OK = 0, REF_BAD = 1, REF_OVER = 2 };

static int ref_restart(z_stream *z, int reset, unsigned bits) {
  if (reset) return inflateReset(z) == Z_OK;
  uint8_t *win = malloc((size_t)1 << bits);
  if (!win) abort();
  uInt n = 0;
  int ok = inflateGetDictionary(z, win, &n) == Z_OK && inflateReset(z) == Z_OK &&
           (n == 0 || inflateSetDictionary(z, win, n) == Z_OK);
  free(win);
  return ok;
}

static int ref_message(z_stream *z, int reset, unsigned bits, const uint8_t *p, size_t n,
                       uint8_t *out, size_t cap, size_t *olen) {
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  *olen = 0;
  for (int part = 0; part < 2; part++) {
    z->next_in = (Bytef *)(uintptr_t)(part ? tail : p);
    z->avail_in = (uInt)(part ? 4 : n);
    while (z->avail_in > 0) {
      z->next_out = out + *olen;
      z->avail_out = (uInt)(cap - *olen);
      int zr = inflate(z, Z_SYNC_FLUSH);
      *olen = cap - z->avail_out;
      if (zr == Z_STREAM_END) {
        CHECK(ref_restart(z, reset, bits), "reference restart");
        if (reset && inflateReset(z) != Z_OK) abort();
        return *olen == cap ? REF_OVER : REF_OK;
      }
      if (*olen == cap) return REF_OVER;
      if (zr != Z_OK && zr != Z_BUF_ERROR) return REF_BAD;
      if (zr == Z_BUF_ERROR) break; /* needs more input */
    }
  }
  if (reset && inflateReset(z) != Z_OK) abort();
  return REF_OK;
}

/* zlib accepts a distance past the window while the bytes it names are still
 * in the output of the same inflate() call, so how a reference is fed decides
 * whether it notices a sender that broke the negotiated window (ws_pmd, fed
 * as frames arrive, may notice where ref_message did not). Fed one output
 * byte per call, zlib always notices. 1 if the count messages ps/ns hold such
 * a distance (or any other invalid data). */
static int strict_ref_rejects(const uint8_t *const *ps, const size_t *ns, size_t count, int reset,
                              unsigned bits) {
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  z_stream z;
  memset(&z, 0, sizeof z);
  CHECK(inflateInit2(&z, -(int)bits) == Z_OK, "inflateInit2");
  int bad = 0;
  for (size_t i = 0; i < count && !bad; i++) {
    int ended = 0;
    for (int part = 0; part < 2 && !ended && !bad; part++) {
      z.next_in = (Bytef *)(uintptr_t)(part ? tail : ps[i]);
      z.avail_in = (uInt)(part ? 4 : ns[i]);
      for (;;) {
        uint8_t one;
        z.next_out = &one;
        z.avail_out = 1;
        int zr = inflate(&z, Z_SYNC_FLUSH);
        if (zr == Z_STREAM_END) {
          CHECK(ref_restart(&z, reset, bits), "reference restart");
          ended = 1;
          break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
          bad = 1;
          break;
        }
        if (z.avail_out == 1) break; /* no output: needs more input */
      }
    }
    if (!bad && reset && inflateReset(&z) != Z_OK) abort();
  }
  inflateEnd(&z);
  return bad;
}

static void run_payloads(const uint8_t *cfgb, const uint8_t *data, size_t len) {
  int cnct = (cfgb[0] >> 2) & 1;
  unsigned bits = 8 + (cfgb[1] & 7);
  if (bits < 9) bits = 9;
  z_stream ref;
  memset(&ref, 0, sizeof ref);
  CHECK(inflateInit2(&ref, -(int)bits) == Z_OK, "inflateInit2");
  size_t cap = (size_t)H.limit + 1;
  uint8_t *out = malloc(cap);
  if (!out) abort();
  fz_log wire = {0};
  size_t pos = 0;
  int expect_code = 0;
  const uint8_t *mp[64]; /* the messages ref_message accepted */
  size_t mn[64], nm = 0;
  while (pos + 3 <= len && H.trusted && H.nwant < 64) {
    uint8_t flags = data[pos];
    size_t n = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;
    pos += 3;
    if (n > len - pos) n = len - pos;
    const uint8_t *p = data + pos;
    pos += n;
    unsigned op = flags & 1 ? WS_OP_BINARY : WS_OP_TEXT;
    unsigned frags = 1 + ((flags >> 1) & 3);
    size_t off = 0;
    for (unsigned f = 0; f < frags; f++) {
      size_t take = f + 1 == frags ? n - off : (size_t)fz_below(H.rng, n - off + 1);
      put_frame(&wire, f == 0 ? op : WS_OP_CONTINUATION, f + 1 == frags, f == 0 ? WS_RSV1 : 0,
                p + off, take);
      off += take;
    }
    size_t olen = 0;
    int r = ref_message(&ref, cnct, bits, p, n, out, cap, &olen);
    int bad_text = op == WS_OP_TEXT && !ws_utf8_valid(out, olen);
    if (r == REF_OK && !bad_text) {
      H.want = realloc(H.want, (H.nwant + 1) * sizeof *H.want);
      if (!H.want) abort();
      H.want[H.nwant].op = (uint8_t)op;
      H.want[H.nwant].data = fz_dup(out, olen);
      H.want[H.nwant].len = olen;
      H.nwant++;
      mp[nm] = p;
      mn[nm++] = n;
      continue;
    }
    H.trusted = 0;
    /* Binary: one fault, one code. Text: a UTF-8 error may come first. */
    if (op == WS_OP_BINARY) expect_code = r == REF_OVER ? 1009 : 1007;
    else if (r == REF_OK) expect_code = 1007; /* only the text is bad */
  }
  inflateEnd(&ref);
  free(out);
  int trusted = H.trusted;
  H.trusted = 1; /* compare every message before the invalid one */
  feed_all(H.c, wire.p, wire.len);
  fz_log_free(&wire);
  CHECK(H.delivered >= H.nwant || H.closed, "%zu of %zu messages delivered", H.delivered,
        H.nwant);
  if (trusted && H.closed && H.close_code == 1007 && strict_ref_rejects(mp, mn, nm, cnct, bits))
    trusted = -1; /* a distance past the window: refusing it is right */
  if (trusted == 1) {
    CHECK(!H.closed, "closed (%u) on messages zlib inflates", H.close_code);
    CHECK(H.delivered == H.nwant, "%zu of %zu messages delivered", H.delivered, H.nwant);
  } else if (trusted == 0) {
    CHECK(H.closed && H.delivered == H.nwant, "invalid message delivered or not closed "
          "(closed %d, %zu of %zu delivered)", H.closed, H.delivered, H.nwant);
    CHECK(H.close_code == 1007 || H.close_code == 1009, "closed with %u", H.close_code);
    if (expect_code)
      CHECK(H.close_code == (unsigned)expect_code, "closed with %u, expected %d", H.close_code,
            expect_code);
  }
}

/* Our output, parsed back and inflated with the peer's (zlib's) stream. */
typedef struct out_state {
  z_stream inf;
  int snct;
  fz_log msg;        /* the message being reassembled (inflated or raw) */
  fz_log got;        /* op, u64 len, data per message: must equal H.echoed */
  unsigned op;
  int compressed;
} out_state;

static int o_header(ws_parser *p) {
  out_state *o = p->data;
  if (p->opcode == WS_OP_TEXT || p->opcode == WS_OP_BINARY) {
    o->op = p->opcode;
    o->compressed = (p->rsv & WS_RSV1) != 0;
    o->msg.len = 0;
  } else {
    CHECK(!(p->rsv & WS_RSV1), "RSV1 on a frame that is not a message's first");
  }
  return WS_CB_OK;
}

static void o_inflate(out_state *o, const uint8_t *d, size_t n) {
  uint8_t buf[4096];
  o->inf.next_in = (Bytef *)(uintptr_t)d;
  o->inf.avail_in = (uInt)n;
  do {
    o->inf.next_out = buf;
    o->inf.avail_out = sizeof buf;
    int r = inflate(&o->inf, Z_SYNC_FLUSH);
    CHECK(r == Z_OK || r == Z_BUF_ERROR, "our output does not inflate: %d", r);
    fz_log_put(&o->msg, buf, sizeof buf - o->inf.avail_out);
  } while (o->inf.avail_out == 0);
}

static int o_chunk(ws_parser *p, const char *at, size_t n) {
  out_state *o = p->data;
  if (WS_OP_IS_CONTROL(p->opcode)) return WS_CB_OK;
  if (o->compressed) o_inflate(o, (const uint8_t *)at, n);
  else fz_log_put(&o->msg, at, n);
  return WS_CB_OK;
}

static int o_complete(ws_parser *p) {
  out_state *o = p->data;
  if (WS_OP_IS_CONTROL(p->opcode) || !p->fin) return WS_CB_OK;
  if (o->compressed) {
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    o_inflate(o, tail, 4);
    if (o->snct) inflateReset(&o->inf);
  }
  fz_log_byte(&o->got, (uint8_t)o->op);
  fz_log_u64(&o->got, o->msg.len);
  fz_log_put(&o->got, o->msg.p, o->msg.len);
  return WS_CB_OK;
}

static void check_output(unsigned sbits, int snct) {
  out_state o;
  memset(&o, 0, sizeof o);
  o.snct = snct;
  CHECK(inflateInit2(&o.inf, -(int)(sbits < 9 ? 9 : sbits)) == Z_OK, "inflateInit2");
  ws_parser p;
  ws_parser_init(&p);
  p.role = WS_ROLE_CLIENT;
  p.rsv_allowed = WS_RSV1;
  p.data = &o;
  ws_settings s = {o_header, o_chunk, o_complete};
  size_t used = ws_parser_execute(&p, &s, (char *)H.out.p, H.out.len);
  CHECK(used == H.out.len && p.error == WS_PE_OK, "our output does not parse: %s",
        ws_parser_strerror(p.error));
  CHECK(fz_log_prefix(&o.got, &H.echoed) && o.got.len == H.echoed.len,
        "echoed messages differ from what the peer decodes");
  inflateEnd(&o.inf);
  fz_log_free(&o.msg);
  fz_log_free(&o.got);
}

static void fuzz_engine(const uint8_t *cfgb, const uint8_t *data, size_t len, int script) {
  fz_rng rng;
  fz_rng_seed(&rng, cfgb, CFG_BYTES);
  memset(&H, 0, sizeof H);
  H.rng = &rng;
  H.trusted = 1;
  H.echo = (cfgb[0] & 3) == 3;
  H.limit = cfgb[2] ? (uint64_t)cfgb[2] * 256 : (uint64_t)1 << 20;
  ws_pmd_config cfg;
  ws_pmd_config_default(&cfg);
  cfg.threshold = (uint32_t)(cfgb[0] >> 4) * 16;
  cfg.window_bits = (uint8_t)(9 + fz_below(&rng, 7));
  cfg.mem_level = (uint8_t)(1 + fz_below(&rng, 9));
  cfg.filtered = (uint8_t)fz_below(&rng, 2);
  ws_pmd_ctx ctx;
  ws_pmd_ctx_init(&ctx, &cfg);
  ws_pmd_params p;
  memset(&p, 0, sizeof p);
  p.client_no_context_takeover = (cfgb[0] >> 2) & 1;
  p.server_no_context_takeover = (cfgb[0] >> 3) & 1;
  p.client_max_window_bits = (uint8_t)(8 + (cfgb[1] & 7));
  p.server_max_window_bits = (uint8_t)(8 + ((cfgb[1] >> 3) & 7));
  ws_conn_limits lim;
  ws_conn_limits_default(&lim);
  lim.max_message_size = H.limit;
  ws_conn c;
  memset(&c, 0, sizeof c);
  H.c = &c;
  ws_conn_init(&c, &CB, &lim);
  CHECK(ws_conn_enable_deflate(&c, &ctx, &p) == 0, "enable_deflate");
  if (script) {
    run_script(cfgb, data, len);
  } else if (cfgb[0] >> 7) {
    run_payloads(cfgb, data, len);
  } else {
    feed_all(&c, data, len);
  }
  if (!H.closed && fz_chance(&rng, 1, 2)) ws_pmd_release(c.pmd);
  if (H.echo) check_output(p.server_max_window_bits, p.server_no_context_takeover);
  ws_conn_free(&c);
  CHECK(ctx.bytes == 0, "%zu bytes of deflate memory not given back", ctx.bytes);
  for (size_t i = 0; i < H.nwant; i++) free(H.want[i].data);
  free(H.want);
  fz_log_free(&H.out);
  fz_log_free(&H.echoed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < CFG_BYTES) return 0;
  const uint8_t *cfgb = data;
  data += CFG_BYTES;
  size -= CFG_BYTES;
  switch (cfgb[0] & 3) {
  case 0: fuzz_negotiation(cfgb, data, size); break;
  case 2: fuzz_engine(cfgb, data, size, 0); break;
  default: fuzz_engine(cfgb, data, size, 1); break;
  }
  return 0;
}
