/* fuzz_handshake.c - libFuzzer harness for csrc/handshake.c (+ sha1.c and
 * the system http-parser).
 *
 * Input: 4 configuration bytes, then the request bytes.
 *   [0] max_url: 0 default, 1..199 that many bytes, else default
 *   [1] max_headers: b % 80 (0 = default)
 *   [2] max_header_bytes: 0 default, 1..127 that many, else (b - 127) * 64
 *   [3] seed for the split points
 *
 * The request is fed whole to one handshake and in random pieces to another.
 * Checked: consumed never past what was given; NEED_MORE uses every byte; a
 * final status is sticky (later calls: same status, consumed 0); on UPGRADE /
 * HTTP the head ends with LF exactly at the consumed count and within
 * max_header_bytes; both feeds reach the same status, the same consumed count
 * and the same request (method, target, headers), and the same HTTP status on
 * FAIL unless the two failures are both among the syntax/limit ones (400, 414,
 * 431), which legitimately depend on where the input was cut: the first
 * failure seen wins. Accessors: NULL / 0 before completion; spans inside the
 * buffer and trimmed; header() returns the first field of that name; the key
 * is base64 of 16 bytes; the 101 and error responses fit exactly and fail
 * with one byte less room.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "handshake.h"
#include "sha1.h"

#define CFG_BYTES 4

static int is_ws(char c) { return c == ' ' || c == '\t'; }

static int ieq(const char *a, size_t an, const char *b, size_t bn) {
  if (an != bn) return 0;
  for (size_t i = 0; i < an; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
    if (x != y) return 0;
  }
  return 1;
}

static size_t count_named(const ws_handshake *hs, const char *name) {
  size_t blen, n = 0;
  const char *buf = ws_handshake_buffer(hs, &blen);
  const ws_header_span *h = ws_handshake_headers(hs);
  for (size_t i = 0; i < ws_handshake_header_count(hs); i++)
    n += ieq(buf + h[i].name_off, h[i].name_len, name, strlen(name));
  return n;
}

static void check_not_done(const ws_handshake *hs) {
  size_t len = 1;
  CHECK(ws_handshake_method(hs, &len) == NULL && len == 0, "method before completion");
  len = 1;
  CHECK(ws_handshake_target(hs, &len) == NULL && len == 0, "target before completion");
  CHECK(ws_handshake_header_count(hs) == 0 && ws_handshake_headers(hs) == NULL,
        "headers before completion");
  len = 1;
  CHECK(ws_handshake_header(hs, "host", 4, &len) == NULL && len == 0, "header() before "
        "completion");
  len = 1;
  CHECK(ws_handshake_key(hs, &len) == NULL && len == 0, "key before upgrade");
  char out[512];
  CHECK(ws_handshake_accept_response(hs, NULL, 0, NULL, 0, out, sizeof out) == 0,
        "101 response before upgrade");
}

static void check_reason(const ws_handshake *hs, int st) {
  int status = ws_handshake_fail_status(hs);
  const char *reason = ws_handshake_fail_reason(hs);
  CHECK(reason != NULL, "NULL fail reason");
  size_t rlen = strlen(reason);
  CHECK(memchr(reason, '\n', rlen) == NULL && memchr(reason, '\r', rlen) == NULL,
        "reason with a line break: %s", reason);
  if (st == WS_HS_FAIL) {
    CHECK(status == 400 || status == 405 || status == 414 || status == 426 || status == 431 ||
          status == 500 || status == 505, "unexpected fail status %d", status);
    CHECK(rlen > 0, "FAIL without a reason");
  } else if (st == WS_HS_HTTP) {
    CHECK(status == 426 && rlen > 0, "HTTP result: status %d", status);
  } else {
    CHECK(status == 0 && rlen == 0, "status %d / reason '%s' for result %d", status, reason,
          st);
  }
  if (status) {
    char out[1024];
    size_t n = ws_handshake_error_response(status, reason, rlen, "X-A: b\r\n", 8, out,
                                           sizeof out);
    CHECK(n > 0 && n <= sizeof out, "error response did not fit");
    CHECK(ws_handshake_error_response(status, reason, rlen, "X-A: b\r\n", 8, out, n - 1) == 0,
          "error response claims to fit in one byte less");
    char cl[64];
    int k = snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", rlen + 1);
    CHECK(memmem(out, n, cl, (size_t)k) != NULL, "wrong Content-Length");
    CHECK(n > rlen + 1 && memcmp(out + n - rlen - 1, reason, rlen) == 0 && out[n - 1] == '\n',
          "body is not the reason");
  }
}

/* Checks a complete request's accessors; in is the whole input. */
static void check_done(const ws_handshake *hs, int st, const ws_handshake_limits *lim,
                       const uint8_t *in, size_t consumed) {
  size_t blen;
  const char *buf = ws_handshake_buffer(hs, &blen);
  CHECK(blen <= lim->max_header_bytes, "buffer %zu > max_header_bytes %u", blen,
        lim->max_header_bytes);
  CHECK(consumed >= 1 && consumed <= lim->max_header_bytes, "head of %zu bytes, limit %u",
        consumed, lim->max_header_bytes);
  CHECK(in[consumed - 1] == '\n', "head does not end with LF");

  size_t mlen;
  const char *m = ws_handshake_method(hs, &mlen);
  CHECK(m != NULL && mlen > 0 && strlen(m) == mlen, "bad method");
  size_t skip = 0;
  while (skip < consumed && (in[skip] == '\r' || in[skip] == '\n')) skip++;
  CHECK(consumed - skip > mlen && memcmp(in + skip, m, mlen) == 0, "method %s is not what was "
        "sent", m);

  size_t tlen;
  const char *t = ws_handshake_target(hs, &tlen);
  CHECK(t != NULL && t >= buf && tlen <= blen && (size_t)(t - buf) <= blen - tlen,
        "target outside the buffer");
  CHECK(tlen <= lim->max_url, "target %zu > max_url %u", tlen, lim->max_url);
  if (tlen) CHECK(memmem(in, consumed, t, tlen) != NULL, "target not in the request");

  size_t nh = ws_handshake_header_count(hs);
  const ws_header_span *h = ws_handshake_headers(hs);
  CHECK(nh <= lim->max_headers, "%zu headers > max_headers %u", nh, lim->max_headers);
  CHECK(nh == 0 || h != NULL, "NULL header array");
  for (size_t i = 0; i < nh; i++) {
    const ws_header_span *s = &h[i];
    CHECK(s->name_off <= blen && s->name_len <= blen - s->name_off, "name span out of buffer");
    CHECK(s->value_off <= blen && s->value_len <= blen - s->value_off,
          "value span out of buffer");
    const char *nm = buf + s->name_off, *v = buf + s->value_off;
    CHECK(s->name_len == 0 || (!is_ws(nm[0]) && !is_ws(nm[s->name_len - 1])),
          "name not trimmed");
    CHECK(s->value_len == 0 || (!is_ws(v[0]) && !is_ws(v[s->value_len - 1])),
          "value not trimmed");
    size_t first = i;
    for (size_t j = 0; j < i; j++)
      if (ieq(buf + h[j].name_off, h[j].name_len, nm, s->name_len)) {
        first = j;
        break;
      }
    size_t vl;
    const char *got = ws_handshake_header(hs, nm, s->name_len, &vl);
    CHECK(got == buf + h[first].value_off && vl == h[first].value_len,
          "header() does not return the first field of its name");
  }

  char out[2048];
  size_t klen;
  const char *key = ws_handshake_key(hs, &klen);
  if (st == WS_HS_HTTP) {
    CHECK(count_named(hs, "upgrade") == 0, "HTTP result with an Upgrade header");
    CHECK(key == NULL && klen == 0, "key on an HTTP result");
    CHECK(ws_handshake_accept_response(hs, NULL, 0, NULL, 0, out, sizeof out) == 0,
          "101 response for an HTTP result");
    return;
  }
  /* UPGRADE */
  CHECK(count_named(hs, "host") == 1, "upgrade without exactly one Host");
  CHECK(count_named(hs, "sec-websocket-key") == 1, "upgrade without exactly one key");
  CHECK(count_named(hs, "sec-websocket-version") == 1, "upgrade without one version");
  size_t vl;
  const char *ver = ws_handshake_header(hs, "Sec-WebSocket-Version", 21, &vl);
  CHECK(ver && vl == 2 && memcmp(ver, "13", 2) == 0, "upgrade with version != 13");
  CHECK(strcmp(m, "GET") == 0, "upgrade with method %s", m);
  unsigned major = ws_handshake_http_major(hs), minor = ws_handshake_http_minor(hs);
  CHECK(major > 1 || (major == 1 && minor >= 1), "upgrade over HTTP/%u.%u", major, minor);
  CHECK(key != NULL && klen == 24, "key of length %zu", klen);
  const char *kh = ws_handshake_header(hs, "sec-websocket-key", 17, &vl);
  CHECK(kh == key && vl == klen, "key() differs from the header");
  uint8_t nonce[24];
  CHECK(ws_base64_decode(key, klen, nonce, sizeof nonce) == 16, "key is not 16 bytes");

  char accept[WS_ACCEPT_LEN];
  ws_accept_key(key, klen, accept);
  size_t n = ws_handshake_accept_response(hs, "chat", 4, "X-A: b\r\n", 8, out, sizeof out);
  CHECK(n > 0, "101 response did not fit");
  CHECK(ws_handshake_accept_response(hs, "chat", 4, "X-A: b\r\n", 8, out, n - 1) == 0,
        "101 response claims to fit in one byte less");
  CHECK(n >= 4 && memcmp(out + n - 4, "\r\n\r\n", 4) == 0, "101 response not terminated");
  CHECK(memmem(out, n, accept, sizeof accept) != NULL, "101 response without the accept key");
  CHECK(memcmp(out, "HTTP/1.1 101 ", 13) == 0, "not a 101");
}

/* Captures a finished request for comparison between the two feeds. */
static void snapshot(const ws_handshake *hs, fz_log *l) {
  size_t len;
  const char *m = ws_handshake_method(hs, &len);
  fz_log_u64(l, len);
  fz_log_put(l, m, len);
  const char *t = ws_handshake_target(hs, &len);
  fz_log_u64(l, len);
  fz_log_put(l, t, len);
  const char *buf = ws_handshake_buffer(hs, &len);
  size_t nh = ws_handshake_header_count(hs);
  const ws_header_span *h = ws_handshake_headers(hs);
  fz_log_u64(l, nh);
  for (size_t i = 0; i < nh; i++) {
    fz_log_u64(l, h[i].name_len);
    fz_log_put(l, buf + h[i].name_off, h[i].name_len);
    fz_log_u64(l, h[i].value_len);
    fz_log_put(l, buf + h[i].value_off, h[i].value_len);
  }
  fz_log_u64(l, ws_handshake_http_major(hs));
  fz_log_u64(l, ws_handshake_http_minor(hs));
}

static int syntax_or_limit(int status) { return status == 400 || status == 414 || status == 431; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < CFG_BYTES) return 0;
  ws_handshake_limits lim, eff;
  lim.max_url = data[0] < 200 ? data[0] : 0;
  lim.max_headers = data[1] % 80;
  lim.max_header_bytes = data[2] == 0 ? 0 : data[2] < 128 ? data[2] : (data[2] - 127u) * 64;
  ws_handshake_limits_default(&eff);
  if (lim.max_url) eff.max_url = lim.max_url;
  if (lim.max_headers) eff.max_headers = lim.max_headers;
  if (lim.max_header_bytes) eff.max_header_bytes = lim.max_header_bytes;
  fz_rng rng;
  fz_rng_seed(&rng, data + 3, 1);
  const uint8_t *in = data + CFG_BYTES;
  size_t n = size - CFG_BYTES;

  /* Whole. */
  ws_handshake *a = ws_handshake_new(&lim);
  CHECK(a != NULL, "ws_handshake_new failed");
  check_not_done(a);
  uint8_t *copy = fz_dup(in, n);
  size_t ca = (size_t)-1;
  int sa = ws_handshake_execute(a, (const char *)copy, n, &ca);
  CHECK(sa >= WS_HS_NEED_MORE && sa <= WS_HS_FAIL, "status %d", sa);
  CHECK(ca <= n, "consumed %zu > len %zu", ca, n);
  if (sa == WS_HS_NEED_MORE) CHECK(ca == n, "NEED_MORE but consumed %zu of %zu", ca, n);
  free(copy);

  /* Pieces, each in its own heap block so ASan sees any read past it. */
  ws_handshake *b = ws_handshake_new(&lim);
  CHECK(b != NULL, "ws_handshake_new failed");
  size_t pos = 0, cb_total = 0;
  int sb = WS_HS_NEED_MORE;
  while (pos < n) {
    size_t k = fz_piece(&rng, n - pos);
    uint8_t *piece = fz_dup(in + pos, k);
    size_t c = (size_t)-1;
    int was = sb;
    sb = ws_handshake_execute(b, (const char *)piece, k, &c);
    CHECK(c <= k, "consumed %zu > len %zu", c, k);
    if (was != WS_HS_NEED_MORE) {
      CHECK(sb == was && c == 0, "a final status changed (%d -> %d) or consumed %zu", was, sb,
            c);
    } else {
      if (sb == WS_HS_NEED_MORE) {
        CHECK(c == k, "NEED_MORE but consumed %zu of %zu", c, k);
        check_not_done(b);
      }
      cb_total += c;
    }
    if (fz_chance(&rng, 1, 8)) { /* len 0 is a no-op, not EOF */
      size_t z = (size_t)-1;
      int sz = ws_handshake_execute(b, (const char *)piece, 0, &z);
      CHECK(sz == sb && z == 0, "a zero-length feed changed the status or consumed");
    }
    free(piece);
    pos += k;
  }
  CHECK(sb == sa, "whole feed gives status %d (%d), pieces give %d (%d)", sa,
        ws_handshake_fail_status(a), sb, ws_handshake_fail_status(b));
  if (sa == WS_HS_FAIL) {
    int fa = ws_handshake_fail_status(a), fb = ws_handshake_fail_status(b);
    CHECK(fa == fb || (syntax_or_limit(fa) && syntax_or_limit(fb)),
          "whole feed fails %d (%s), pieces fail %d (%s)", fa, ws_handshake_fail_reason(a), fb,
          ws_handshake_fail_reason(b));
  }
  check_reason(a, sa);
  check_reason(b, sb);
  if (sa == WS_HS_UPGRADE || sa == WS_HS_HTTP) {
    CHECK(ca == cb_total, "whole feed consumed %zu, pieces %zu", ca, cb_total);
    check_done(a, sa, &eff, in, ca);
    check_done(b, sb, &eff, in, cb_total);
    fz_log la = {0}, lb = {0};
    snapshot(a, &la);
    snapshot(b, &lb);
    CHECK(fz_log_eq(&la, &lb), "whole and split feeds parsed different requests");
    fz_log_free(&la);
    fz_log_free(&lb);
  } else if (sa == WS_HS_NEED_MORE) {
    CHECK(cb_total == n, "pieces: NEED_MORE but consumed %zu of %zu", cb_total, n);
    check_not_done(a);
  } else {
    check_not_done(a);
    check_not_done(b);
  }
  ws_handshake_free(a);
  ws_handshake_free(b);
  return 0;
}
