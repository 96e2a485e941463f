/* fuzz_clienths.c - libFuzzer harness for csrc/clienths.c (+ sha1.c, the
 * system http-parser, and handshake.c as the request's reader).
 *
 * Input: 5 configuration bytes, then the stream.
 *   [0] max_headers: b % 80 (0 = default)
 *   [1] max_header_bytes: 0 default, 1..127 that many, else (b - 127) * 64
 *   [2] max_body: 0 default, else b * 4
 *   [3] mode bits: 1 offer subprotocols "chat" and "superchat"; 2 offer an
 *       extension; 4 prepend a valid 101 status line, Upgrade, Connection and
 *       the right Sec-WebSocket-Accept (so the fuzzer reaches the checks
 *       after those); 8 signal EOF after the last byte; 16 request mode
 *       (below) instead of a response
 *   [4] seed for the split points
 *
 * Response mode. The request is built with the fixed RFC 6455 1.3 nonce, so
 * seeds can carry its accept (s3pPLMBiTxaQ9kYGzzhZRbK+xOo=) literally. The
 * stream is fed whole to one handshake and in random pieces (each its own
 * heap block, so ASan sees any read past it) to another. Checked: consumed
 * never past what was given; NEED_MORE uses every byte; a final status is
 * sticky; both feeds agree on the status, the consumed count on OPEN, and
 * the fail code (syntax and limit failures may differ between them: which
 * one is seen first depends on the cut). Reference check of every OPEN, by
 * a line-based reading of the head independent of http-parser (interim 1xx
 * heads skipped): the head ends in LF at the consumed count, the status is 101, there is exactly one
 * Sec-WebSocket-Accept field and its value (folded lines joined with SP,
 * trimmed) is the accept of our key, a subprotocol only when offered and then
 * one of them, an extensions field only when offered. Accessors: spans
 * inside the buffer, header() is the first of header_next()'s values, the
 * body within max_body, reasons one line.
 *
 * Request mode: the stream's first 4 bytes give the lengths (mod 64) of a
 * host, a target, an extra header name and value taken from the rest.
 * Checked: a request is built only if none of them holds CR, LF or NUL (the
 * host is not sent when the extra field is a Host); it has no NUL and every
 * CR and LF is part of a CRLF; its length is what ws_client_hs_request_size()
 * said; and wsuv's server side (handshake.c) reads it as a valid upgrade with
 * our key and that field.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clienths.h"
#include "fuzz_common.h"
#include "handshake.h"
#include "sha1.h"

#define CFG_BYTES 5
#define MODE_PROTOCOLS 1
#define MODE_EXTENSIONS 2
#define MODE_PREFIX 4
#define MODE_EOF 8
#define MODE_REQUEST 16

static const uint8_t NONCE[16] = "the sample nonce";
static const char ACCEPT[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
static const char PREFIX[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                             "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

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

static void trim(const char **p, size_t *n) {
  while (*n > 0 && is_ws(**p)) { (*p)++; (*n)--; }
  while (*n > 0 && is_ws((*p)[*n - 1])) (*n)--;
}

/* ---- the reference reading of a head ------------------------------------- */

#define REF_MAX_FIELDS 256
#define REF_VALUE_CAP 512

typedef struct ref_field {
  const char *name;
  size_t name_len;
  char value[REF_VALUE_CAP]; /* joined over folded lines, then trimmed */
  size_t value_len;
  int overflow;               /* value longer than REF_VALUE_CAP: not compared */
} ref_field;

typedef struct ref_head {
  int status;
  size_t nfields;
  ref_field fields[REF_MAX_FIELDS];
} ref_head;

static void ref_append(ref_field *f, const char *s, size_t n) {
  if (f->overflow || n > REF_VALUE_CAP - f->value_len) {
    f->overflow = 1;
    return;
  }
  memcpy(f->value + f->value_len, s, n);
  f->value_len += n;
}

/* Splits head[0..n) at LF (a CR before it dropped), skipping interim 1xx
 * heads. Returns 0 if the reading fails (then nothing is checked against it:
 * http-parser accepted something this simple reader does not model). */
static int ref_parse(const char *head, size_t n, ref_head *r) {
  size_t i = 0, line = 0;
  r->status = -1;
  r->nfields = 0;
  while (i < n && (head[i] == '\r' || head[i] == '\n')) i++; /* leading blank lines */
  while (i < n) {
    size_t start = i;
    while (i < n && head[i] != '\n') i++;
    if (i == n) return 0; /* the head must end in LF */
    size_t end = i++;
    if (end > start && head[end - 1] == '\r') end--;
    const char *l = head + start;
    size_t len = end - start;
    if (line++ == 0) { /* HTTP/x.y SP DDD [SP reason] */
      CHECK(len >= 5 && memcmp(l, "HTTP/", 5) == 0, "a status line accepted without HTTP/");
      size_t k = 0;
      while (k < len && l[k] != ' ') k++;
      k++;
      CHECK(k + 3 <= len, "a status line accepted without a code");
      for (size_t d = k; d < k + 3; d++)
        CHECK(l[d] >= '0' && l[d] <= '9', "a status code accepted with '%c'", l[d]);
      CHECK(k + 3 == len || l[k + 3] == ' ', "a status code of more than 3 digits accepted");
      r->status = (l[k] - '0') * 100 + (l[k + 1] - '0') * 10 + (l[k + 2] - '0');
      continue;
    }
    if (len == 0) { /* the blank line ends a head */
      if (r->status / 100 == 1 && r->status != 101) { /* interim: the next head */
        line = 0;
        r->nfields = 0;
        while (i < n && (head[i] == '\r' || head[i] == '\n')) i++;
        continue;
      }
      return i == n;
    }
    if (is_ws(l[0])) { /* obs-fold: the previous value goes on after one SP */
      if (r->nfields == 0) return 0;
      ref_field *f = &r->fields[r->nfields - 1];
      const char *v = l;
      size_t vn = len;
      trim(&v, &vn);
      ref_append(f, " ", 1);
      ref_append(f, v, vn);
      continue;
    }
    const char *colon = memchr(l, ':', len);
    if (colon == NULL || r->nfields == REF_MAX_FIELDS) return 0;
    ref_field *f = &r->fields[r->nfields++];
    f->name = l;
    f->name_len = (size_t)(colon - l);
    trim(&f->name, &f->name_len); /* as the handshake trims names */
    f->value_len = 0;
    f->overflow = 0;
    ref_append(f, colon + 1, len - (size_t)(colon - l) - 1);
  }
  return 0;
}

static size_t ref_count(const ref_head *r, const char *name, const ref_field **first) {
  size_t c = 0;
  *first = NULL;
  for (size_t i = 0; i < r->nfields; i++)
    if (ieq(r->fields[i].name, r->fields[i].name_len, name, strlen(name)) && c++ == 0)
      *first = &r->fields[i];
  return c;
}

static void ref_value(const ref_field *f, const char **v, size_t *n) {
  *v = f->value;
  *n = f->value_len;
  trim(v, n);
}

static void check_open_against_reference(const uint8_t *in, size_t consumed, unsigned mode,
                                         const ws_client_hs *hs) {
  CHECK(consumed >= 1 && in[consumed - 1] == '\n', "OPEN head does not end in LF");
  ref_head *r = malloc(sizeof *r);
  CHECK(r != NULL, "malloc");
  if (ref_parse((const char *)in, consumed, r)) {
    CHECK(r->status == 101, "OPEN with status line code %d", r->status);
    const ref_field *f;
    CHECK(ref_count(r, "sec-websocket-accept", &f) == 1, "OPEN without exactly one accept");
    if (!f->overflow) {
      const char *v;
      size_t n;
      ref_value(f, &v, &n);
      CHECK(n == sizeof ACCEPT - 1 && memcmp(v, ACCEPT, n) == 0,
            "OPEN with a wrong Sec-WebSocket-Accept '%.*s'", (int)n, v);
    }
    size_t np = ref_count(r, "sec-websocket-protocol", &f);
    size_t sl;
    const char *sp = ws_client_hs_subprotocol(hs, &sl);
    if (!(mode & MODE_PROTOCOLS)) CHECK(np == 0, "OPEN with a subprotocol none was offered");
    CHECK(np <= 1, "OPEN with %zu Sec-WebSocket-Protocol fields", np);
    CHECK((np == 1) == (sp != NULL), "subprotocol accessor disagrees with the head");
    if (np == 1 && !f->overflow) {
      const char *v;
      size_t n;
      ref_value(f, &v, &n);
      CHECK((n == 4 && memcmp(v, "chat", 4) == 0) || (n == 9 && memcmp(v, "superchat", 9) == 0),
            "OPEN with subprotocol '%.*s'", (int)n, v);
      CHECK(sl == n && memcmp(sp, v, n) == 0, "subprotocol accessor differs from the head");
    }
    size_t ne = ref_count(r, "sec-websocket-extensions", &f);
    size_t el;
    const char *ev = ws_client_hs_extensions(hs, &el);
    if (!(mode & MODE_EXTENSIONS)) CHECK(ne == 0, "OPEN with extensions none were offered");
    CHECK((ne > 0) == (ev != NULL), "extensions accessor disagrees with the head");
  }
  free(r);
}

/* ---- accessor consistency ------------------------------------------------ */

static void check_accessors(const ws_client_hs *hs, int st, uint32_t max_body) {
  const char *reason = ws_client_hs_fail_reason(hs);
  CHECK(reason != NULL && strchr(reason, '\n') == NULL && strchr(reason, '\r') == NULL,
        "bad fail reason");
  CHECK((st == WS_CLIENT_HS_INVALID) == (ws_client_hs_fail_code(hs) != 0),
        "fail code %d for status %d", ws_client_hs_fail_code(hs), st);
  CHECK((st == WS_CLIENT_HS_INVALID) == (reason[0] != '\0'), "reason for status %d", st);
  int code = ws_client_hs_status_code(hs);
  if (st == WS_CLIENT_HS_OPEN) CHECK(code == 101, "OPEN with status %d", code);
  if (st == WS_CLIENT_HS_REFUSED) CHECK(code >= 100 && code != 101, "REFUSED status %d", code);
  if (st == WS_CLIENT_HS_NEED_MORE) CHECK(code == 0, "status %d before the end", code);

  size_t blen, n;
  const char *buf = ws_client_hs_buffer(hs, &blen);
  const ws_header_span *h = ws_client_hs_headers(hs);
  size_t nh = ws_client_hs_header_count(hs);
  CHECK(code != 0 || (buf == NULL && h == NULL && nh == 0), "headers without a head");
  for (size_t i = 0; i < nh; i++) {
    CHECK((uint64_t)h[i].name_off + h[i].name_len <= blen &&
          (uint64_t)h[i].value_off + h[i].value_len <= blen, "span outside the buffer");
    const char *name = buf + h[i].name_off;
    if (h[i].value_len > 0)
      CHECK(!is_ws(buf[h[i].value_off]) && !is_ws(buf[h[i].value_off + h[i].value_len - 1]),
            "value not trimmed");
    size_t pos = 0, count = 0, vl, first_vl = 0;
    const char *v, *first = NULL;
    while ((v = ws_client_hs_header_next(hs, name, h[i].name_len, &pos, &vl)) != NULL) {
      if (count++ == 0) { first = v; first_vl = vl; }
      CHECK(count <= nh, "header_next does not end");
    }
    CHECK(count >= 1, "header_next misses a field");
    const char *one = ws_client_hs_header(hs, name, h[i].name_len, &n);
    CHECK(one == first && n == first_vl, "header() is not the first value");
  }
  const char *phrase = ws_client_hs_reason(hs, &n);
  CHECK(code == 0 ? phrase == NULL : (phrase != NULL && n <= blen), "reason phrase");
  const char *body = ws_client_hs_body(hs, &n);
  CHECK((st == WS_CLIENT_HS_REFUSED) == (body != NULL), "body for status %d", st);
  CHECK(n <= max_body, "body of %zu > max_body %u", n, max_body);
}

/* ---- response mode ----------------------------------------------------- */

static ws_client_hs *new_client(const ws_client_hs_limits *lim, unsigned mode) {
  ws_client_hs *hs = ws_client_hs_new(lim);
  CHECK(hs != NULL, "ws_client_hs_new failed");
  ws_client_hs_str protos[2] = {{"chat", 4}, {"superchat", 9}};
  ws_client_hs_options o;
  memset(&o, 0, sizeof o);
  o.host = "server.example.com";
  o.host_len = strlen(o.host);
  if (mode & MODE_PROTOCOLS) {
    o.subprotocols = protos;
    o.subprotocol_count = 2;
  }
  if (mode & MODE_EXTENSIONS) {
    o.extensions = "permessage-deflate";
    o.extensions_len = strlen(o.extensions);
  }
  char req[512];
  long n = ws_client_hs_request(hs, &o, NONCE, req, sizeof req);
  CHECK(n > 0 && n == ws_client_hs_request_size(&o), "request: %ld", n);
  return hs;
}

static int syntax_or_limit(int f) {
  return f == WS_CLIENT_HS_FAIL_MALFORMED || f == WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE ||
         f == WS_CLIENT_HS_FAIL_TOO_MANY_HEADERS;
}

static void response_mode(const uint8_t *cfg, const uint8_t *in, size_t n) {
  ws_client_hs_limits lim, eff;
  lim.max_headers = cfg[0] % 80;
  lim.max_header_bytes = cfg[1] == 0 ? 0 : cfg[1] < 128 ? cfg[1] : (cfg[1] - 127u) * 64;
  lim.max_body = cfg[2] * 4u;
  ws_client_hs_limits_default(&eff);
  if (lim.max_body) eff.max_body = lim.max_body;
  unsigned mode = cfg[3];
  fz_rng rng;
  fz_rng_seed(&rng, cfg + 4, 1);

  /* Whole. */
  ws_client_hs *a = new_client(&lim, mode);
  uint8_t *copy = fz_dup(in, n);
  size_t ca = (size_t)-1;
  int sa = ws_client_hs_execute(a, (const char *)copy, n, &ca);
  CHECK(sa >= WS_CLIENT_HS_NEED_MORE && sa <= WS_CLIENT_HS_INVALID, "status %d", sa);
  CHECK(ca <= n, "consumed %zu > len %zu", ca, n);
  if (sa == WS_CLIENT_HS_NEED_MORE) CHECK(ca == n, "NEED_MORE consumed %zu of %zu", ca, n);
  free(copy);
  if (mode & MODE_EOF) {
    int was = sa;
    sa = ws_client_hs_eof(a);
    CHECK(was == WS_CLIENT_HS_NEED_MORE || sa == was, "eof changed a final status");
    CHECK((sa != WS_CLIENT_HS_NEED_MORE && sa != WS_CLIENT_HS_OPEN) || was == sa,
          "eof gave status %d", sa);
  }

  /* Pieces. */
  ws_client_hs *b = new_client(&lim, mode);
  size_t pos = 0, cb = 0;
  int sb = WS_CLIENT_HS_NEED_MORE;
  while (pos < n) {
    size_t k = fz_piece(&rng, n - pos);
    uint8_t *piece = fz_dup(in + pos, k);
    size_t c = (size_t)-1;
    int was = sb;
    sb = ws_client_hs_execute(b, (const char *)piece, k, &c);
    CHECK(c <= k, "consumed %zu > len %zu", c, k);
    if (was != WS_CLIENT_HS_NEED_MORE) {
      CHECK(sb == was && c == 0, "a final status changed (%d -> %d) or consumed %zu", was, sb,
            c);
    } else {
      if (sb == WS_CLIENT_HS_NEED_MORE) CHECK(c == k, "NEED_MORE consumed %zu of %zu", c, k);
      cb += c;
    }
    if (fz_chance(&rng, 1, 8)) {
      size_t z = (size_t)-1;
      CHECK(ws_client_hs_execute(b, (const char *)piece, 0, &z) == sb && z == 0,
            "a zero-length feed changed something");
    }
    check_accessors(b, sb, eff.max_body);
    free(piece);
    pos += k;
  }
  if (mode & MODE_EOF) sb = ws_client_hs_eof(b);

  if (sa == WS_CLIENT_HS_INVALID && sb == WS_CLIENT_HS_INVALID) {
    int fa = ws_client_hs_fail_code(a), fb = ws_client_hs_fail_code(b);
    CHECK(fa == fb || (syntax_or_limit(fa) && syntax_or_limit(fb)),
          "whole feed fails %d (%s), pieces %d (%s)", fa, ws_client_hs_fail_reason(a), fb,
          ws_client_hs_fail_reason(b));
  } else {
    /* A refusal cut short by a body limit or EOF may end as REFUSED either
     * way; everything else must agree exactly. */
    CHECK(sa == sb, "whole feed gives status %d, pieces %d", sa, sb);
  }
  if (sa == WS_CLIENT_HS_OPEN) {
    CHECK(ca == cb, "OPEN: whole feed consumed %zu, pieces %zu", ca, cb);
    check_open_against_reference(in, ca, mode, a);
    size_t l1, l2;
    const char *p1 = ws_client_hs_subprotocol(a, &l1), *p2 = ws_client_hs_subprotocol(b, &l2);
    CHECK(l1 == l2 && (l1 == 0 || memcmp(p1, p2, l1) == 0), "subprotocols differ");
    p1 = ws_client_hs_extensions(a, &l1);
    p2 = ws_client_hs_extensions(b, &l2);
    CHECK(l1 == l2 && (l1 == 0 || memcmp(p1, p2, l1) == 0), "extensions differ");
  }
  if (sa == WS_CLIENT_HS_REFUSED) {
    CHECK(ws_client_hs_status_code(a) == ws_client_hs_status_code(b), "status codes differ");
    size_t l1, l2;
    const char *b1 = ws_client_hs_body(a, &l1), *b2 = ws_client_hs_body(b, &l2);
    CHECK(l1 == l2 && (l1 == 0 || memcmp(b1, b2, l1) == 0), "bodies differ (%zu, %zu bytes)",
          l1, l2);
    CHECK(ws_client_hs_body_truncated(a) == ws_client_hs_body_truncated(b),
          "one body truncated, the other not");
  }
  check_accessors(a, sa, eff.max_body);
  check_accessors(b, sb, eff.max_body);
  ws_client_hs_free(a);
  ws_client_hs_free(b);
}

/* ---- request mode -------------------------------------------------------- */

static int has_crlfnul(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\r' || p[i] == '\n' || p[i] == 0) return 1;
  return 0;
}

static void request_mode(const uint8_t *in, size_t n) {
  if (n < 4) return;
  size_t lens[4] = {in[0] % 64u, in[1] % 64u, in[2] % 64u, in[3] % 64u};
  const uint8_t *p = in + 4;
  size_t left = n - 4;
  const uint8_t *parts[4];
  for (int i = 0; i < 4; i++) {
    if (lens[i] > left) lens[i] = left;
    parts[i] = p;
    p += lens[i];
    left -= lens[i];
  }
  ws_client_hs_field f = {(const char *)parts[2], lens[2], (const char *)parts[3], lens[3]};
  ws_client_hs_options o;
  memset(&o, 0, sizeof o);
  o.host = (const char *)parts[0];
  o.host_len = lens[0];
  o.target = (const char *)parts[1];
  o.target_len = lens[1];
  o.headers = &f;
  o.header_count = 1;
  o.port = (uint16_t)(in[0] * 257u);

  ws_client_hs *hs = ws_client_hs_new(NULL);
  CHECK(hs != NULL, "ws_client_hs_new failed");
  char *out = malloc(1024);
  CHECK(out != NULL, "malloc");
  long len = ws_client_hs_request(hs, &o, NONCE, out, 1024);
  long size = ws_client_hs_request_size(&o);
  CHECK(len == size || (len == WS_CLIENT_HS_E_NOSPACE && size > 1024),
        "request %ld, size %ld", len, size);
  if (len > 0) {
    /* With an extra Host field the host is not sent (nor checked). */
    int host_sent = !ieq(f.name, f.name_len, "host", 4);
    CHECK(!has_crlfnul(parts[2], lens[2]) && !has_crlfnul(parts[3], lens[3]) &&
          (!host_sent || !has_crlfnul(parts[0], lens[0])) && !has_crlfnul(parts[1], lens[1]),
          "a request was built from a CR, LF or NUL");
    CHECK(memchr(out, 0, (size_t)len) == NULL, "a NUL in the request");
    for (long i = 0; i + 1 < len; i++)
      CHECK((out[i] == '\r') == (out[i + 1] == '\n'), "a CR or LF that does not end a line");
    ws_handshake *srv = ws_handshake_new(NULL);
    CHECK(srv != NULL, "ws_handshake_new failed");
    size_t used;
    int st = ws_handshake_execute(srv, out, (size_t)len, &used);
    CHECK(st == WS_HS_UPGRADE && used == (size_t)len, "the server side reads %d (%s)", st,
          ws_handshake_fail_reason(srv));
    size_t kl, vl;
    const char *key = ws_handshake_key(srv, &kl);
    CHECK(kl == WS_CLIENT_HS_KEY_LEN && memcmp(key, "dGhlIHNhbXBsZSBub25jZQ==", kl) == 0,
          "the server reads another key");
    const char *v = ws_handshake_header(srv, f.name, f.name_len, &vl);
    const char *want = f.value;
    size_t wl = f.value_len;
    trim(&want, &wl);
    if (ieq(f.name, f.name_len, "host", 4) == 0)
      CHECK(v != NULL && vl == wl && memcmp(v, want, wl) == 0, "the extra field reads back "
            "as '%.*s'", (int)vl, v ? v : "");
    ws_handshake_free(srv);
  }
  free(out);
  ws_client_hs_free(hs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < CFG_BYTES) return 0;
  const uint8_t *in = data + CFG_BYTES;
  size_t n = size - CFG_BYTES;
  unsigned mode = data[3];
  if (mode & MODE_REQUEST) {
    request_mode(in, n);
  } else if (mode & MODE_PREFIX) {
    size_t pl = sizeof PREFIX - 1;
    uint8_t *buf = malloc(pl + n + 1);
    CHECK(buf != NULL, "malloc");
    memcpy(buf, PREFIX, pl);
    if (n) memcpy(buf + pl, in, n);
    response_mode(data, buf, pl + n);
    free(buf);
  } else {
    response_mode(data, in, n);
  }
  return 0;
}
