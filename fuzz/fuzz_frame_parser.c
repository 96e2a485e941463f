/* fuzz_frame_parser.c - libFuzzer harness for csrc/wsparser.c.
 *
 * Input: 4 configuration bytes, then the byte stream.
 *   [0] role (% 3) and allowed RSV bits ((b >> 2) & 7 -> RSV3/RSV2/RSV1)
 *   [1] max_frame_size: 0 none, 1..127 that many bytes, else 2^(b & 63)
 *   [2..3] seed for split points and callback decisions
 *
 * The stream is parsed four ways and each is checked against ref_parse() (a
 * whole-buffer reference in ref_ws.h), event for event (payload bytes are
 * compared as one run per frame, so chunk boundaries do not matter):
 *   A. whole, callbacks always OK;
 *   B. cut at random points, callbacks pausing at random (resuming must give
 *      exactly the unpaused events);
 *   C. as B, plus one callback aborting at a random event (the events must be
 *      a prefix of the reference, the error WS_PE_ABORTED, and the parser dead
 *      afterwards);
 *   D. after C, ws_parser_reset and the whole stream again.
 * Throughout: consumed <= len, a short return only after a pause or an error,
 * chunks never empty and inside the buffer given, payload delivered == the
 * header's length for completed frames, control frames final and <= 125.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "ref_ws.h"
#include "wsframe.h"
#include "wsparser.h"

#define CFG_BYTES 4

typedef struct run_ctx {
  fz_log log;
  fz_rng *rng;
  const ref_cfg *cfg;
  unsigned pause_num;       /* pause with probability pause_num / 8 */
  long abort_at;            /* event index that aborts; -1 = never */
  long events;
  int paused;               /* the last call's callbacks asked to pause */
  int aborted;              /* a callback returned WS_CB_ABORT */
  const uint8_t *buf;       /* the buffer of the current execute call */
  size_t buf_len;
  uint64_t delivered;       /* payload bytes of the current frame so far */
  int in_frame;
} run_ctx;

/* ---- reference log ---------------------------------------------------- */

static void log_header(fz_log *l, unsigned op, unsigned fin, unsigned rsv, unsigned masked,
                       uint64_t len, const uint8_t key[4]) {
  fz_log_byte(l, 'H');
  fz_log_byte(l, (uint8_t)op);
  fz_log_byte(l, (uint8_t)fin);
  fz_log_byte(l, (uint8_t)rsv);
  fz_log_byte(l, (uint8_t)masked);
  fz_log_u64(l, len);
  fz_log_put(l, key, 4);
}

/* Payload goes in raw, so the log does not depend on chunk boundaries: a
 * header entry carries the length, so the bytes after it are unambiguous. */
static void log_data(fz_log *l, const uint8_t *p, size_t n) { fz_log_put(l, p, n); }

typedef struct ref_ctx {
  fz_log log;
  long events; /* upper bound on a run's events: one chunk per byte at most */
} ref_ctx;

static void ref_on_header(void *ctx, const ref_header *h) {
  static const uint8_t zero[4] = {0};
  ref_ctx *r = ctx;
  r->events++;
  log_header(&r->log, h->opcode, h->fin, h->rsv, h->masked, h->length,
             h->masked ? h->key : zero);
}
static void ref_on_data(void *ctx, const uint8_t *p, size_t n) {
  ref_ctx *r = ctx;
  r->events += (long)n;
  log_data(&r->log, p, n);
}
static void ref_on_complete(void *ctx, const ref_header *h) {
  ref_ctx *r = ctx;
  (void)h;
  r->events++;
  fz_log_byte(&r->log, 'E');
}

/* ---- parser callbacks ------------------------------------------------- */

static int decide(run_ctx *r) {
  long ev = r->events++;
  if (r->abort_at >= 0 && ev == r->abort_at) {
    r->aborted = 1;
    return WS_CB_ABORT;
  }
  if (r->pause_num && fz_below(r->rng, 8) < r->pause_num) {
    r->paused = 1;
    return WS_CB_PAUSE;
  }
  return WS_CB_OK;
}

static int cb_header(ws_parser *p) {
  run_ctx *r = p->data;
  CHECK(!r->in_frame, "on_header inside a frame");
  CHECK(p->remaining == p->length, "remaining %llu != length %llu at on_header",
        (unsigned long long)p->remaining, (unsigned long long)p->length);
  CHECK(p->error == WS_PE_OK, "on_header with error %d", p->error);
  if (WS_OP_IS_CONTROL(p->opcode))
    CHECK(p->fin && p->length <= WS_FRAME_MAX_CONTROL, "bad control frame delivered");
  if (r->cfg->max_frame) CHECK(p->length <= r->cfg->max_frame, "frame over max_frame_size");
  CHECK(p->length >> 63 == 0, "length with MSB set");
  if (r->cfg->role == WS_ROLE_SERVER) CHECK(p->masked, "unmasked frame in server role");
  if (r->cfg->role == WS_ROLE_CLIENT) CHECK(!p->masked, "masked frame in client role");
  CHECK((p->rsv & ~r->cfg->rsv_allowed) == 0, "rsv 0x%x not allowed", p->rsv);
  r->in_frame = 1;
  r->delivered = 0;
  log_header(&r->log, p->opcode, p->fin, p->rsv, p->masked, p->length, p->mask_key);
  return decide(r);
}

static int cb_chunk(ws_parser *p, const char *at, size_t len) {
  run_ctx *r = p->data;
  const uint8_t *u = (const uint8_t *)at;
  CHECK(r->in_frame, "on_chunk outside a frame");
  CHECK(len > 0, "on_chunk with len 0");
  CHECK(u >= r->buf && len <= r->buf_len && u - r->buf <= (ptrdiff_t)(r->buf_len - len),
        "chunk [%p,+%zu) outside the buffer [%p,+%zu)", (void *)u, len, (void *)r->buf,
        r->buf_len);
  r->delivered += len;
  CHECK(r->delivered + p->remaining == p->length,
        "delivered %llu + remaining %llu != length %llu", (unsigned long long)r->delivered,
        (unsigned long long)p->remaining, (unsigned long long)p->length);
  log_data(&r->log, u, len);
  return decide(r);
}

static int cb_complete(ws_parser *p) {
  run_ctx *r = p->data;
  CHECK(r->in_frame, "on_complete outside a frame");
  CHECK(r->delivered == p->length && p->remaining == 0,
        "frame complete with %llu of %llu payload bytes delivered",
        (unsigned long long)r->delivered, (unsigned long long)p->length);
  r->in_frame = 0;
  fz_log_byte(&r->log, 'E');
  return decide(r);
}

static const ws_settings settings = {cb_header, cb_chunk, cb_complete};

/* ---- runs ------------------------------------------------------------- */

static void setup(ws_parser *p, const ref_cfg *cfg, run_ctx *r) {
  ws_parser_init(p);
  p->role = (uint8_t)cfg->role;
  p->max_frame_size = cfg->max_frame;
  p->rsv_allowed = cfg->rsv_allowed;
  p->data = r;
}

/* One execute call with the bookkeeping; returns the count consumed. */
static size_t exec1(ws_parser *p, run_ctx *r, uint8_t *buf, size_t len) {
  r->paused = 0;
  r->buf = buf;
  r->buf_len = len;
  int err_before = p->error;
  long ev_before = r->events;
  size_t n = ws_parser_execute(p, &settings, (char *)buf, len);
  CHECK(n <= len, "consumed %zu > len %zu", n, len);
  if (err_before != WS_PE_OK)
    CHECK(n == 0 && r->events == ev_before, "a failed parser consumed or called back");
  if (n < len) CHECK(r->paused || p->error != WS_PE_OK, "short return (%zu of %zu) "
                     "without pause or error", n, len);
  return n;
}

/* Feeds buf[0..n) in random pieces, resuming after pauses; at the end, drains
 * events still due with zero-length calls (a pause right after the header of
 * an empty frame leaves its on_complete for the next call). Returns the
 * total consumed. */
static size_t run_split(ws_parser *p, run_ctx *r, uint8_t *buf, size_t n, int split) {
  size_t pos = 0;
  size_t budget = 4 * n + 64; /* each call consumes bytes or makes an event */
  while (pos < n && p->error == WS_PE_OK) {
    size_t piece = split ? fz_piece(r->rng, n - pos) : n - pos;
    size_t off = 0;
    while (off < piece && p->error == WS_PE_OK) {
      CHECK(budget-- > 0, "parser makes no progress");
      off += exec1(p, r, buf + pos + off, piece - off);
    }
    pos += off;
  }
  while (p->error == WS_PE_OK) {
    CHECK(budget-- > 0, "parser makes no progress at the end");
    exec1(p, r, buf + n, 0);
    if (!r->paused) break;
  }
  return pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < CFG_BYTES) return 0;
  ref_cfg cfg;
  cfg.role = data[0] % 3;
  cfg.rsv_allowed = (uint8_t)(((data[0] >> 2) & 7) << 4);
  uint8_t m = data[1];
  cfg.max_frame = m == 0 ? 0 : m < 128 ? m : (uint64_t)1 << (m & 63);
  fz_rng rng;
  fz_rng_seed(&rng, data + 2, 2);
  const uint8_t *in = data + CFG_BYTES;
  size_t n = size - CFG_BYTES;

  /* The reference. */
  ref_ctx rc = {{0}, 0};
  ref_sink sink = {ref_on_header, ref_on_data, ref_on_complete, &rc};
  size_t ref_consumed;
  int ref_boundary;
  int ref_err = ref_parse(in, n, &cfg, &sink, &ref_consumed, &ref_boundary);
  fz_log ref = rc.log;
  long ref_events = rc.events;

  ws_parser p;
  for (int mode = 0; mode < 3; mode++) {
    run_ctx r;
    memset(&r, 0, sizeof r);
    r.rng = &rng;
    r.cfg = &cfg;
    r.abort_at = -1;
    if (mode >= 1) r.pause_num = 1 + (unsigned)fz_below(&rng, 7);
    if (mode == 2) r.abort_at = (long)fz_below(&rng, (uint64_t)ref_events + 1);
    uint8_t *buf = fz_dup(in, n);
    setup(&p, &cfg, &r);
    size_t consumed = run_split(&p, &r, buf, n, mode >= 1);
    if (r.aborted) {
      CHECK(p.error == WS_PE_ABORTED, "mode %d: error %d after an abort, want ABORTED", mode,
            p.error);
      CHECK(ws_parser_close_code(p.error) == 0, "ABORTED asks for a close code");
      CHECK(fz_log_prefix(&r.log, &ref),
            "events before the abort differ from the reference");
      CHECK(r.events == r.abort_at + 1, "events after the abort");
      CHECK(consumed <= ref_consumed, "consumed past the reference after abort");
    } else {
      CHECK(p.error == ref_err, "mode %d: error %d (%s), reference %d (%s)", mode, p.error,
            ws_parser_strerror(p.error), ref_err, ws_parser_strerror(ref_err));
      CHECK(consumed == ref_consumed, "mode %d: consumed %zu, reference %zu", mode, consumed,
            ref_consumed);
      CHECK(fz_log_eq(&r.log, &ref),
            "mode %d: events differ from the reference (log %zu vs %zu bytes)", mode, r.log.len,
            ref.len);
      CHECK(ws_parser_at_frame_boundary(&p) == ref_boundary, "mode %d: at_frame_boundary %d, "
            "reference %d", mode, ws_parser_at_frame_boundary(&p), ref_boundary);
      if (ref_err != WS_PE_OK) {
        unsigned want = ref_err == WS_PE_TOO_BIG ? 1009 : 1002;
        CHECK(ws_parser_close_code(ref_err) == want, "close code for error %d", ref_err);
      }
    }
    if (p.error != WS_PE_OK) {
      /* A failed parser stays failed until reset. */
      long ev = r.events;
      uint8_t one = 0x81;
      CHECK(ws_parser_execute(&p, &settings, (char *)&one, 1) == 0 && r.events == ev,
            "a failed parser went on");
    }
    fz_log_free(&r.log);
    free(buf);

    if (mode == 2) {
      /* D: reset keeps the configuration and data and forgets the rest. */
      ws_parser_reset(&p);
      CHECK(p.role == cfg.role && p.max_frame_size == cfg.max_frame &&
            p.rsv_allowed == cfg.rsv_allowed && p.data == &r,
            "reset lost the configuration");
      CHECK(ws_parser_at_frame_boundary(&p), "not at a boundary after reset");
      memset(&r.log, 0, sizeof r.log);
      r.events = 0;
      r.abort_at = -1;
      r.pause_num = 0;
      r.in_frame = 0;
      buf = fz_dup(in, n);
      consumed = run_split(&p, &r, buf, n, 0);
      CHECK(p.error == ref_err && consumed == ref_consumed && fz_log_eq(&r.log, &ref), "run after reset differs from the reference");
      fz_log_free(&r.log);
      free(buf);
    }
  }
  fz_log_free(&ref);
  return 0;
}
