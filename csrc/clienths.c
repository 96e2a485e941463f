/* clienths.c - the client's opening handshake (see clienths.h).
 *
 * The request side is a bounded writer over the caller's buffer with the
 * syntax checks that keep a caller's string from becoming a second header
 * line. The response side drives http-parser like handshake.c does: fields
 * are copied into one owned buffer as they arrive (split anywhere), limits
 * are enforced where the bytes arrive, and RFC 6455 4.1's checks run once,
 * when the head is complete. Nothing is process-wide: the settings table is
 * const and every limit lives in the handshake.
 */
#include "clienths.h"

#include <http_parser.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sha1.h"

#define WS_CHS_INITIAL_BUF 512u  /* a typical 101 head fits */
#define WS_CHS_INITIAL_SPANS 8u
#define WS_CHS_INITIAL_BODY 1024u

struct ws_client_hs {
  http_parser parser;          /* parser.data points back here */
  ws_client_hs_limits limits;
  /* What the last request offered. */
  char key[WS_CLIENT_HS_KEY_LEN];
  char accept[WS_ACCEPT_LEN];  /* the Sec-WebSocket-Accept we expect */
  char *offer;                 /* owned: offered subprotocols joined by ','
                                  (tokens never contain one) */
  size_t offer_len;
  uint8_t have_request;
  uint8_t ext_offered;
  uint8_t fed;                 /* a response byte was fed: no new request */
  /* The response. */
  ws_fields f;                 /* owned: reason phrase, names, values, and
                                  the joined extensions value */
  uint32_t reason_off, reason_len;
  uint32_t head_bytes;         /* raw head bytes fed to the parser */
  uint64_t body_raw;           /* raw bytes fed after the head (framing too) */
  uint32_t proto_off, proto_len;
  uint32_t ext_off, ext_len;
  char *body;                  /* owned: a refusal's body, <= max_body */
  uint32_t body_len, body_cap;
  uint8_t has_proto, has_ext;
  uint8_t head_complete;       /* on_headers_complete ran */
  uint8_t msg_complete;        /* on_message_complete ran */
  uint8_t interim;             /* the head being read is a 1xx other than 101 */
  uint8_t body_truncated;
  uint8_t interim_done;        /* an interim head ended (parser paused) */
  uint8_t head_paused;         /* a refusal's head ended (parser paused) */
  uint8_t cr_pending;          /* the last head byte fed was a CR */
  uint8_t bare_cr;             /* a head CR was followed by something not LF */
  uint8_t sl_state;            /* enum ws_chs_sl: where in this head's status line */
  uint8_t bad_status_line;     /* one that is not "HTTP/x.y SP DDD ..." */
  uint8_t verdict;             /* result a complete head calls for */
  uint8_t verdict_fail;        /* its fail code */
  uint8_t result;              /* enum ws_client_hs_status */
  uint8_t fail;                /* enum ws_client_hs_fail */
  const char *fail_reason;     /* static string */
  const char *verdict_reason;
};

/* ---- small helpers ---------------------------------------------------------- */

#define WS_CHS_LIT(s) s, (sizeof(s) - 1)

/* tchar (RFC 7230 3.2.6). */
static int ws_chs_is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int ws_chs_is_token(const char *s, size_t n) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!ws_chs_is_tchar((unsigned char)s[i]))
      return 0;
  return 1;
}

/* field-value (RFC 7230 3.2): VCHAR, obs-text, SP, HTAB. Everything else
 * (CR, LF, NUL, other CTLs, DEL) could end or corrupt the header line. */
static int ws_chs_is_field_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7F)
      return 0;
  }
  return 1;
}

static int ws_chs_is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int ws_chs_is_unreserved(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         c == '-' || c == '.' || c == '_' || c == '~';
}

/* unreserved / pct-encoded (+ sub-delims when sub is set) over s[0..n);
 * a '%' must start a pct-encoding. */
static int ws_chs_is_uri_chars(const char *s, size_t n, int sub) {
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= n ||
          !ws_chs_is_hex(s[i + 1]) || !ws_chs_is_hex(s[i + 2]))
        return 0;
      i += 2;
    } else if (!ws_chs_is_unreserved(c) && !(sub && c != 0 && strchr("!$&'()*+,;=", c))) {
      return 0;
    }
  }
  return 1;
}

/* ---- the request ------------------------------------------------------------ */

/* A bounded writer that keeps counting past cap, so one routine both
 * measures and writes; the length saturates instead of wrapping. */
typedef struct ws_chs_out {
  char *p;
  size_t cap, len;
} ws_chs_out;

static void ws_chs_put(ws_chs_out *o, const char *s, size_t n) {
  if (o->len <= o->cap && n <= o->cap - o->len) {
    if (n > 0)
      memcpy(o->p + o->len, s, n);
    o->len += n;
  } else {
    o->len = n > SIZE_MAX - o->len ? SIZE_MAX : o->len + n;
  }
}

static void ws_chs_puts(ws_chs_out *o, const char *s) { ws_chs_put(o, s, strlen(s)); }

static void ws_chs_put_uint(ws_chs_out *o, unsigned v) {
  char tmp[12];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  ws_chs_put(o, tmp + i, sizeof tmp - i);
}

static void ws_chs_put_field(ws_chs_out *o, const char *name, size_t nlen, const char *value,
                             size_t vlen) {
  ws_chs_put(o, name, nlen);
  ws_chs_puts(o, ": ");
  ws_chs_put(o, value, vlen);
  ws_chs_puts(o, "\r\n");
}

/* The Host value: checks opts->host and writes it (brackets for IPv6, the
 * port unless it is the scheme's default). Returns 0 or E_HOST. */
static long ws_chs_put_host(ws_chs_out *o, const ws_client_hs_options *opts) {
  const char *h = opts->host;
  size_t n = opts->host_len;
  if (h == NULL || n == 0)
    return WS_CLIENT_HS_E_HOST;
  if (h[0] == '[') {
    /* URI form (RFC 3986 3.2.2, RFC 6874): sent as given. */
    if (n < 4 || h[n - 1] != ']')
      return WS_CLIENT_HS_E_HOST;
    size_t i = 1, end = n - 1;
    while (i < end && (ws_chs_is_hex(h[i]) || h[i] == ':' || h[i] == '.'))
      i++;
    if (i < end) { /* a zone: "%25" then unreserved / pct-encoded */
      if (end - i < 4 || memcmp(h + i, "%25", 3) != 0 ||
          !ws_chs_is_uri_chars(h + i + 3, end - i - 3, 0))
        return WS_CLIENT_HS_E_HOST;
    }
    if (memchr(h + 1, ':', n - 2) == NULL)
      return WS_CLIENT_HS_E_HOST;
    ws_chs_put(o, h, n);
  } else if (memchr(h, ':', n) != NULL) {
    /* An IPv6 address as getaddrinfo() spells it: bracket it, and send a
     * zone's '%' as "%25" (RFC 6874 2). */
    size_t i = 0;
    while (i < n && (ws_chs_is_hex(h[i]) || h[i] == ':' || h[i] == '.'))
      i++;
    if (i < n && (h[i] != '%' || i + 1 == n || !ws_chs_is_uri_chars(h + i + 1, n - i - 1, 0)))
      return WS_CLIENT_HS_E_HOST;
    ws_chs_puts(o, "[");
    ws_chs_put(o, h, i);
    if (i < n) {
      ws_chs_puts(o, "%25");
      ws_chs_put(o, h + i + 1, n - i - 1);
    }
    ws_chs_puts(o, "]");
  } else {
    /* reg-name or IPv4address (RFC 3986 3.2.2). */
    if (!ws_chs_is_uri_chars(h, n, 1))
      return WS_CLIENT_HS_E_HOST;
    ws_chs_put(o, h, n);
  }
  unsigned def = opts->secure ? 443u : 80u;
  if (opts->port != 0 && opts->port != def) {
    ws_chs_puts(o, ":");
    ws_chs_put_uint(o, opts->port);
  }
  return 0;
}

/* Names this layer writes or that would change how the request is read. */
static int ws_chs_reserved(const char *name, size_t n) {
  static const char *const names[] = {
    "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
    "sec-websocket-protocol", "sec-websocket-extensions", "sec-websocket-accept",
    "content-length", "transfer-encoding",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (ws_fields_ieq(name, n, names[i], strlen(names[i])))
      return 1;
  return 0;
}

/* Checks opts and writes the request with key_b64 into o (which may be a
 * measuring writer with cap 0). Returns 0 or a negative error. */
static long ws_chs_build(const ws_client_hs_options *opts, const char *key_b64, ws_chs_out *o) {
  const char *t = opts->target;
  size_t tn = opts->target_len;
  if (t == NULL || tn == 0) {
    t = "/";
    tn = 1;
  }
  /* origin-form (RFC 7230 5.3.1): path-abempty [ "?" query ], each byte a
   * pchar, '/' or '?' (RFC 3986 3.3, 3.4); no fragment (RFC 6455 3). */
  if (t[0] != '/')
    return WS_CLIENT_HS_E_TARGET;
  for (size_t i = 0; i < tn; i++) {
    char c = t[i];
    if (c == '%') {
      if (i + 2 >= tn || !ws_chs_is_hex(t[i + 1]) || !ws_chs_is_hex(t[i + 2]))
        return WS_CLIENT_HS_E_TARGET;
      i += 2;
    } else if (!ws_chs_is_unreserved(c) && (c == 0 || strchr("!$&'()*+,;=:@/?", c) == NULL)) {
      return WS_CLIENT_HS_E_TARGET;
    }
  }
  int has_origin = opts->origin != NULL && opts->origin_len > 0;
  if (has_origin && !ws_chs_is_field_value(opts->origin, opts->origin_len))
    return WS_CLIENT_HS_E_ORIGIN;
  int has_ext = opts->extensions != NULL && opts->extensions_len > 0;
  if (has_ext && !ws_chs_is_field_value(opts->extensions, opts->extensions_len))
    return WS_CLIENT_HS_E_EXTENSIONS;
  if (opts->subprotocol_count > 0 && opts->subprotocols == NULL)
    return WS_CLIENT_HS_E_SUBPROTOCOL;
  for (size_t i = 0; i < opts->subprotocol_count; i++) {
    const ws_client_hs_str *s = &opts->subprotocols[i];
    if (s->ptr == NULL || !ws_chs_is_token(s->ptr, s->len))
      return WS_CLIENT_HS_E_SUBPROTOCOL;
    for (size_t j = 0; j < i; j++) /* all distinct (4.1 item 10) */
      if (opts->subprotocols[j].len == s->len && memcmp(opts->subprotocols[j].ptr, s->ptr,
                                                        s->len) == 0)
        return WS_CLIENT_HS_E_SUBPROTOCOL;
  }
  if (opts->header_count > 0 && opts->headers == NULL)
    return WS_CLIENT_HS_E_HEADER_NAME;
  size_t extra_hosts = 0;
  for (size_t i = 0; i < opts->header_count; i++) {
    const ws_client_hs_field *f = &opts->headers[i];
    if (f->name == NULL || !ws_chs_is_token(f->name, f->name_len))
      return WS_CLIENT_HS_E_HEADER_NAME;
    if ((f->value == NULL && f->value_len > 0) ||
        !ws_chs_is_field_value(f->value, f->value_len))
      return WS_CLIENT_HS_E_HEADER_VALUE;
    if (ws_chs_reserved(f->name, f->name_len) ||
        (has_origin && ws_fields_ieq(f->name, f->name_len, WS_CHS_LIT("origin"))))
      return WS_CLIENT_HS_E_RESERVED_HEADER;
    if (ws_fields_ieq(f->name, f->name_len, WS_CHS_LIT("host")) && ++extra_hosts > 1)
      return WS_CLIENT_HS_E_RESERVED_HEADER;
  }

  ws_chs_puts(o, "GET ");
  ws_chs_put(o, t, tn);
  ws_chs_puts(o, " HTTP/1.1\r\n");
  if (extra_hosts == 0) {
    ws_chs_puts(o, "Host: ");
    long rc = ws_chs_put_host(o, opts);
    if (rc != 0)
      return rc;
    ws_chs_puts(o, "\r\n");
  }
  ws_chs_puts(o, "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: ");
  ws_chs_put(o, key_b64, WS_CLIENT_HS_KEY_LEN);
  ws_chs_puts(o, "\r\nSec-WebSocket-Version: 13\r\n");
  if (has_origin)
    ws_chs_put_field(o, WS_CHS_LIT("Origin"), opts->origin, opts->origin_len);
  if (opts->subprotocol_count > 0) {
    ws_chs_puts(o, "Sec-WebSocket-Protocol: ");
    for (size_t i = 0; i < opts->subprotocol_count; i++) {
      if (i > 0)
        ws_chs_puts(o, ", ");
      ws_chs_put(o, opts->subprotocols[i].ptr, opts->subprotocols[i].len);
    }
    ws_chs_puts(o, "\r\n");
  }
  if (has_ext)
    ws_chs_put_field(o, WS_CHS_LIT("Sec-WebSocket-Extensions"), opts->extensions,
                     opts->extensions_len);
  for (size_t i = 0; i < opts->header_count; i++) {
    const ws_client_hs_field *f = &opts->headers[i];
    ws_chs_put_field(o, f->name, f->name_len, f->value, f->value_len);
  }
  ws_chs_puts(o, "\r\n");
  return 0;
}

long ws_client_hs_request_size(const ws_client_hs_options *opts) {
  char dummy_key[WS_CLIENT_HS_KEY_LEN]; /* any key: they all have this length */
  memset(dummy_key, 'A', sizeof dummy_key);
  ws_chs_out o = {NULL, 0, 0};
  long rc = ws_chs_build(opts, dummy_key, &o);
  if (rc != 0)
    return rc;
  return o.len > (size_t)LONG_MAX ? WS_CLIENT_HS_E_NOSPACE : (long)o.len;
}

long ws_client_hs_request(ws_client_hs *hs, const ws_client_hs_options *opts,
                          const uint8_t key[WS_CLIENT_HS_KEY_BYTES], char *out, size_t cap) {
  if (hs->fed)
    return WS_CLIENT_HS_E_STATE;
  char key_b64[WS_CLIENT_HS_KEY_LEN];
  ws_base64_encode(key, WS_CLIENT_HS_KEY_BYTES, key_b64, sizeof key_b64);

  /* Measure first: an error or a short buffer leaves everything as it was. */
  ws_chs_out m = {NULL, 0, 0};
  long rc = ws_chs_build(opts, key_b64, &m);
  if (rc != 0)
    return rc;
  if (m.len > cap || m.len > (size_t)LONG_MAX)
    return WS_CLIENT_HS_E_NOSPACE;

  size_t offer_len = 0;
  for (size_t i = 0; i < opts->subprotocol_count; i++)
    offer_len += opts->subprotocols[i].len + (i > 0);
  char *offer = NULL;
  if (offer_len > 0) {
    offer = malloc(offer_len);
    if (offer == NULL)
      return WS_CLIENT_HS_E_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < opts->subprotocol_count; i++) {
      if (i > 0)
        offer[k++] = ',';
      memcpy(offer + k, opts->subprotocols[i].ptr, opts->subprotocols[i].len);
      k += opts->subprotocols[i].len;
    }
  }

  ws_chs_out o = {out, cap, 0};
  ws_chs_build(opts, key_b64, &o); /* cannot fail: the same checks passed */

  free(hs->offer);
  hs->offer = offer;
  hs->offer_len = offer_len;
  memcpy(hs->key, key_b64, sizeof hs->key);
  ws_accept_key(key_b64, sizeof key_b64, hs->accept);
  hs->ext_offered = opts->extensions != NULL && opts->extensions_len > 0;
  hs->have_request = 1;
  return (long)o.len;
}

const char *ws_client_hs_strerror(long err) {
  switch (err) {
    case 0: return "no error";
    case WS_CLIENT_HS_E_NOSPACE: return "the request does not fit in the buffer";
    case WS_CLIENT_HS_E_HOST: return "invalid host (empty, or a character not allowed in a URI host)";
    case WS_CLIENT_HS_E_TARGET:
      return "invalid request target (must start with '/', printable ASCII, no '#')";
    case WS_CLIENT_HS_E_ORIGIN: return "invalid Origin value (control character)";
    case WS_CLIENT_HS_E_SUBPROTOCOL: return "invalid subprotocol (empty, not a token, or repeated)";
    case WS_CLIENT_HS_E_EXTENSIONS: return "invalid Sec-WebSocket-Extensions value (control character)";
    case WS_CLIENT_HS_E_HEADER_NAME: return "invalid header name (not an HTTP token)";
    case WS_CLIENT_HS_E_HEADER_VALUE: return "invalid header value (CR, LF, NUL or another control character)";
    case WS_CLIENT_HS_E_RESERVED_HEADER:
      return "header set by the handshake itself, or in conflict with it";
    case WS_CLIENT_HS_E_STATE: return "the response has already started";
    case WS_CLIENT_HS_E_NOMEM: return "out of memory";
    default: return "unknown error";
  }
}

/* ---- failures --------------------------------------------------------------- */

/* Records the first failure only, as handshake.c does: a limit hit inside a
 * callback must not be overwritten by the parser error it then causes. */
static int ws_chs_fail(ws_client_hs *hs, int code, const char *reason) {
  if (hs->result == WS_CLIENT_HS_NEED_MORE) {
    hs->result = WS_CLIENT_HS_INVALID;
    hs->fail = (uint8_t)code;
    hs->fail_reason = reason;
  }
  return -1; /* what a refusing http-parser callback returns */
}

#define WS_CHS_ERRNO_REASON(n, s) "malformed HTTP response: " s,
static const char *const ws_chs_errno_reasons[] = {HTTP_ERRNO_MAP(WS_CHS_ERRNO_REASON)};
#undef WS_CHS_ERRNO_REASON

static const char *ws_chs_malformed_reason(enum http_errno e) {
  size_t n = sizeof ws_chs_errno_reasons / sizeof ws_chs_errno_reasons[0];
  return (size_t)e < n ? ws_chs_errno_reasons[e] : "malformed HTTP response";
}

/* ---- the owned buffers ------------------------------------------------------ */

/* Turns a collector error into the failure. Everything stored comes from
 * the head, capped at max_header_bytes, except the joined extensions value
 * (again at most the head): 2 * max_header_bytes bounds the buffer. */
static int ws_chs_fields_rc(ws_client_hs *hs, int rc) {
  switch (rc) {
  case WS_FIELDS_OK:
    return 0;
  case WS_FIELDS_TOO_LARGE:
    return ws_chs_fail(hs, WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE, "response header section too large");
  case WS_FIELDS_TOO_MANY:
    return ws_chs_fail(hs, WS_CLIENT_HS_FAIL_TOO_MANY_HEADERS,
                       "too many header fields in the response");
  case WS_FIELDS_NO_NAME:
    return ws_chs_fail(hs, WS_CLIENT_HS_FAIL_MALFORMED,
                       "malformed HTTP response: header value without name");
  default:
    return ws_chs_fail(hs, WS_CLIENT_HS_FAIL_NOMEM, "out of memory");
  }
}

/* Closes the header field being accumulated. Returns -1 (refused) for a
 * name that is not a token: non-strict http-parser lets "Name : value"
 * through, which RFC 7230 3.2.4 forbids. */
static int ws_chs_end_field(ws_client_hs *hs) {
  ws_header_span *s = ws_fields_end(&hs->f);
  if (s != NULL && !ws_chs_is_token(hs->f.buf + s->name_off, s->name_len))
    return ws_chs_fail(hs, WS_CLIENT_HS_FAIL_MALFORMED,
                       "malformed HTTP response: header name is not a token");
  return 0;
}

/* ---- http-parser callbacks ---------------------------------------------------- */

static int ws_chs_on_status(http_parser *p, const char *at, size_t len) {
  ws_client_hs *hs = p->data;
  if (hs->reason_len == 0)
    hs->reason_off = hs->f.len; /* the phrase is the first thing stored */
  if (ws_chs_fields_rc(hs, ws_fields_append(&hs->f, at, len)) != 0)
    return -1;
  hs->reason_len += (uint32_t)len;
  return 0;
}

static int ws_chs_on_header_field(http_parser *p, const char *at, size_t len) {
  ws_client_hs *hs = p->data;
  if (hs->head_complete) /* a chunked body's trailer: not part of the head */
    return 0;
  if (!ws_fields_in_name(&hs->f) && ws_chs_end_field(hs) != 0) /* a new field starts */
    return -1;
  return ws_chs_fields_rc(hs, ws_fields_name(&hs->f, at, len));
}

static int ws_chs_on_header_value(http_parser *p, const char *at, size_t len) {
  ws_client_hs *hs = p->data;
  if (hs->head_complete)
    return 0;
  return ws_chs_fields_rc(hs, ws_fields_value(&hs->f, at, len));
}

static void ws_chs_validate(ws_client_hs *hs);

/* Returns 1 ("no body") for a 101, so that http-parser never reads the
 * server's first frames as a body, and for the statuses that never have
 * one; 0 lets it read a refusal's body. */
static int ws_chs_on_headers_complete(http_parser *p) {
  ws_client_hs *hs = p->data;
  if (ws_chs_end_field(hs) != 0)
    return -1;
  unsigned st = p->status_code;
  if (st < 100) /* http-parser takes any three digits */
    return ws_chs_fail(hs, WS_CLIENT_HS_FAIL_MALFORMED,
                       "malformed HTTP response: status code below 100");
  if (st / 100 == 1 && st != 101) {
    /* An interim response (100 Continue, 103 Early Hints): a client must
     * read past it to the final one (RFC 7231 6.2). */
    hs->interim = 1;
    return 1;
  }
  hs->head_complete = 1;
  if (st != 101) {
    /* Pausing here returns just before the head's final LF (http-parser
     * reads that byte again on resuming), so ws_client_hs_execute() counts
     * the body's raw bytes from the same place however the input is cut. */
    hs->verdict = WS_CLIENT_HS_REFUSED;
    hs->head_paused = 1;
    http_parser_pause(p, 1);
    return (st == 204 || st == 304) ? 1 : 0;
  }
  ws_chs_validate(hs);
  return hs->result == WS_CLIENT_HS_NEED_MORE ? 1 : -1;
}

static int ws_chs_on_body(http_parser *p, const char *at, size_t len) {
  ws_client_hs *hs = p->data;
  size_t room = hs->limits.max_body - hs->body_len;
  size_t take = len < room ? len : room;
  if (take > 0) {
    uint32_t need = hs->body_len + (uint32_t)take;
    if (need > hs->body_cap) {
      uint64_t cap = hs->body_cap ? hs->body_cap : WS_CHS_INITIAL_BODY;
      while (cap < need)
        cap *= 2;
      if (cap > hs->limits.max_body)
        cap = hs->limits.max_body;
      char *nb = realloc(hs->body, (size_t)cap);
      if (nb == NULL) { /* the refusal stands; its body is what we have */
        hs->body_truncated = 1;
        http_parser_pause(p, 1);
        return 0;
      }
      hs->body = nb;
      hs->body_cap = (uint32_t)cap;
    }
    memcpy(hs->body + hs->body_len, at, take);
    hs->body_len = need;
  }
  if (take < len) { /* over max_body: stop reading */
    hs->body_truncated = 1;
    http_parser_pause(p, 1);
  }
  return 0;
}

/* Pausing stops http_parser_execute() right after the head's final LF (or
 * the body's last byte), so the bytes that follow stay with the caller. */
static int ws_chs_on_message_complete(http_parser *p) {
  ws_client_hs *hs = p->data;
  if (hs->interim) {
    /* Forget its fields; the pause lets ws_client_hs_execute() see where
     * the next head starts. Its bytes stay counted: max_header_bytes
     * bounds all the heads together. */
    hs->interim = 0;
    hs->interim_done = 1;
    ws_fields_clear(&hs->f);
    hs->reason_off = hs->reason_len = 0;
    http_parser_pause(p, 1);
    return 0;
  }
  hs->msg_complete = 1;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings ws_chs_settings = {
  .on_status = ws_chs_on_status,
  .on_header_field = ws_chs_on_header_field,
  .on_header_value = ws_chs_on_header_value,
  .on_headers_complete = ws_chs_on_headers_complete,
  .on_body = ws_chs_on_body,
  .on_message_complete = ws_chs_on_message_complete,
};

/* ---- header lookups ------------------------------------------------------------ */

typedef struct ws_chs_upgrade_ctx {
  size_t count;
  int websocket;
} ws_chs_upgrade_ctx;

static int ws_chs_upgrade_elem(void *ctx, const char *e, size_t n) {
  ws_chs_upgrade_ctx *c = ctx;
  c->count++;
  c->websocket = ws_fields_ieq(e, n, WS_CHS_LIT("websocket"));
  return 0;
}

static int ws_chs_upgrade_token_elem(void *ctx, const char *e, size_t n) {
  (void)ctx;
  return ws_fields_ieq(e, n, WS_CHS_LIT("upgrade"));
}

/* Whether the offered list (tokens joined by ',') holds v exactly. */
static int ws_chs_offered(const ws_client_hs *hs, const char *v, size_t n) {
  size_t i = 0;
  while (i < hs->offer_len) {
    size_t start = i;
    while (i < hs->offer_len && hs->offer[i] != ',')
      i++;
    if (i - start == n && memcmp(hs->offer + start, v, n) == 0)
      return 1;
    i++;
  }
  return 0;
}

/* ---- RFC 6455 4.1: the client's checks of a 101 ----------------------------------- */

static void ws_chs_verdict(ws_client_hs *hs, int fail, const char *reason) {
  hs->verdict = WS_CLIENT_HS_INVALID;
  hs->verdict_fail = (uint8_t)fail;
  hs->verdict_reason = reason;
}

/* Sets the verdict for a complete 101 head. The order is RFC 6455 4.1's
 * (after the version, which 4.1 takes for granted). */
static void ws_chs_validate(ws_client_hs *hs) {
  const http_parser *p = &hs->parser;
  const ws_header_span *s;
  if (p->http_major < 1 || (p->http_major == 1 && p->http_minor < 1)) {
    ws_chs_verdict(hs, WS_CLIENT_HS_FAIL_VERSION, "101 response is not HTTP/1.1 or later");
    return;
  }
  /* "an ASCII case-insensitive match for the value websocket": exactly one
   * protocol, the one we asked for. */
  ws_chs_upgrade_ctx up = {0, 0};
  ws_fields_each_elem(&hs->f, WS_CHS_LIT("upgrade"), ws_chs_upgrade_elem, &up);
  if (up.count != 1 || !up.websocket) {
    ws_chs_verdict(hs, WS_CLIENT_HS_FAIL_UPGRADE, "Upgrade header missing or not 'websocket'");
    return;
  }
  if (!ws_fields_each_elem(&hs->f, WS_CHS_LIT("connection"), ws_chs_upgrade_token_elem, NULL)) {
    ws_chs_verdict(hs, WS_CLIENT_HS_FAIL_CONNECTION,
                   "Connection header does not contain 'upgrade'");
    return;
  }
  uint32_t n = ws_fields_find(&hs->f, WS_CHS_LIT("sec-websocket-accept"), &s);
  if (n == 0) {
    ws_chs_verdict(hs, WS_CLIENT_HS_FAIL_ACCEPT_MISSING, "missing Sec-WebSocket-Accept header");
    return;
  }
  if (n > 1) {
    ws_chs_verdict(hs, WS_CLIENT_HS_FAIL_ACCEPT_REPEATED,
                   "duplicate Sec-WebSocket-Accept header");
    return;
  }
  if (s->value_len != WS_ACCEPT_LEN ||
      memcmp(hs->f.buf + s->value_off, hs->accept, WS_ACCEPT_LEN) != 0) {
    ws_chs_verdict(hs, WS_CLIENT_HS_FAIL_ACCEPT_MISMATCH,
                   "Sec-WebSocket-Accept does not match the key sent");
    return;
  }
  n = ws_fields_find(&hs->f, WS_CHS_LIT("sec-websocket-protocol"), &s);
  if (n > 1 || (n == 1 && memchr(hs->f.buf + s->value_off, ',', s->value_len) != NULL)) {
    ws_chs_verdict(hs, WS_CLIENT_HS_FAIL_PROTOCOL_MULTIPLE,
                   "Sec-WebSocket-Protocol names more than one subprotocol");
    return;
  }
  if (n == 1) {
    if (!ws_chs_offered(hs, hs->f.buf + s->value_off, s->value_len)) {
      ws_chs_verdict(hs, WS_CLIENT_HS_FAIL_PROTOCOL_NOT_OFFERED,
                     "Sec-WebSocket-Protocol names a subprotocol that was not offered");
      return;
    }
    hs->has_proto = 1;
    hs->proto_off = s->value_off;
    hs->proto_len = s->value_len;
  }
  n = ws_fields_find(&hs->f, WS_CHS_LIT("sec-websocket-extensions"), &s);
  if (n > 0 && !hs->ext_offered) {
    ws_chs_verdict(hs, WS_CLIENT_HS_FAIL_EXTENSIONS_NOT_OFFERED,
                   "Sec-WebSocket-Extensions in the response but no extension was offered");
    return;
  }
  if (n == 1) {
    hs->has_ext = 1;
    hs->ext_off = s->value_off;
    hs->ext_len = s->value_len;
  } else if (n > 1) {
    /* One list (RFC 7230 3.2.2): join the values into the buffer. The
     * copies come from the buffer itself, so reserve first. */
    size_t total = 0;
    ws_fields *fs = &hs->f;
    for (uint32_t i = 0; i < fs->n; i++) {
      const ws_header_span *f = &fs->spans[i];
      if (ws_fields_ieq(fs->buf + f->name_off, f->name_len, WS_CHS_LIT("sec-websocket-extensions")))
        total += f->value_len + 2;
    }
    total -= 2;
    if (ws_chs_fields_rc(hs, ws_fields_reserve(fs, total)) != 0)
      return; /* failed: the result says why */
    uint32_t start = fs->len;
    int first = 1;
    for (uint32_t i = 0; i < fs->n; i++) {
      const ws_header_span *f = &fs->spans[i];
      if (!ws_fields_ieq(fs->buf + f->name_off, f->name_len, WS_CHS_LIT("sec-websocket-extensions")))
        continue;
      if (!first) {
        memcpy(fs->buf + fs->len, ", ", 2);
        fs->len += 2;
      }
      first = 0;
      memcpy(fs->buf + fs->len, fs->buf + f->value_off, f->value_len);
      fs->len += f->value_len;
    }
    hs->has_ext = 1;
    hs->ext_off = start;
    hs->ext_len = fs->len - start;
  }
  hs->verdict = WS_CLIENT_HS_OPEN;
}

/* ---- public API ------------------------------------------------------------------ */

void ws_client_hs_limits_default(ws_client_hs_limits *l) {
  l->max_headers = 64;
  l->max_header_bytes = 16 * 1024;
  l->max_body = 64 * 1024;
}

ws_client_hs *ws_client_hs_new(const ws_client_hs_limits *limits) {
  ws_client_hs *hs = calloc(1, sizeof *hs);
  if (hs == NULL)
    return NULL;
  ws_client_hs_limits_default(&hs->limits);
  if (limits != NULL) {
    if (limits->max_headers)
      hs->limits.max_headers = limits->max_headers;
    if (limits->max_header_bytes)
      hs->limits.max_header_bytes = limits->max_header_bytes;
    if (limits->max_body)
      hs->limits.max_body = limits->max_body;
  }
  uint64_t max_bytes = 2u * (uint64_t)hs->limits.max_header_bytes;
  ws_fields_init(&hs->f, max_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)max_bytes,
                 hs->limits.max_headers, WS_CHS_INITIAL_BUF, WS_CHS_INITIAL_SPANS);
  http_parser_init(&hs->parser, HTTP_RESPONSE);
  hs->parser.data = hs;
  hs->result = WS_CLIENT_HS_NEED_MORE;
  return hs;
}

void ws_client_hs_free(ws_client_hs *hs) {
  if (hs == NULL)
    return;
  free(hs->offer);
  ws_fields_free(&hs->f);
  free(hs->body);
  free(hs);
}

/* Debian's http-parser is built non-strict, which skips checks we want:
 * after a CR that ends the status line or the head it takes any byte for
 * the LF ("HTTP/1.1 101 OK\rX..." reads as two lines, and the first byte of
 * the server's first frame could end the head); it takes any four bytes
 * after 'H' for "TTP/" ("Hxxxx1.1 101" reads as HTTP/1.1); and it takes
 * spaces before and any number of digits in the status code ("0101" is
 * 101). So the head bytes are scanned as they are fed: every CR must be
 * followed by LF, and each status line (after the blank lines http-parser
 * skips) must be "HTTP/" version SP three digits, then SP or the line's end
 * (RFC 7230 3.1.2; the version's digits are http-parser's to check). */
enum ws_chs_sl {
  WS_CHS_SL_START = 0,                /* 0..4: bytes of "HTTP/" matched */
  WS_CHS_SL_VERSION = 5,              /* up to the SP */
  WS_CHS_SL_CODE = 6,                 /* 6..8: digits of the code */
  WS_CHS_SL_AFTER_CODE = 9,           /* SP, CR or LF */
  WS_CHS_SL_DONE = 10                 /* the reason phrase and the fields */
};

static void ws_chs_scan_head(ws_client_hs *hs, const char *p, size_t n) {
  static const char proto[] = "HTTP/";
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (hs->cr_pending && c != '\n')
      hs->bare_cr = 1;
    hs->cr_pending = c == '\r';
    uint8_t st = hs->sl_state;
    if (st == WS_CHS_SL_DONE)
      continue;
    int ok = 1;
    if (st < WS_CHS_SL_VERSION) {
      if (st == 0 && (c == '\r' || c == '\n'))
        continue;
      ok = c == proto[st];
      st++;
    } else if (st == WS_CHS_SL_VERSION) {
      if (c == ' ')
        st = WS_CHS_SL_CODE;
      else
        ok = c != '\r' && c != '\n';
    } else if (st < WS_CHS_SL_AFTER_CODE) {
      ok = c >= '0' && c <= '9';
      st++;
    } else {
      ok = c == ' ' || c == '\r' || c == '\n';
      st = WS_CHS_SL_DONE;
    }
    if (!ok) {
      hs->bad_status_line = 1;
      st = WS_CHS_SL_DONE;
    }
    hs->sl_state = st;
  }
}

/* After an http_parser_execute() that stopped with errno e. */
static void ws_chs_parser_error(ws_client_hs *hs, enum http_errno e) {
  if (hs->head_complete) {
    /* A refusal whose body is malformed: the status stands. */
    hs->body_truncated = 1;
    hs->result = WS_CLIENT_HS_REFUSED;
  } else if (e == HPE_HEADER_OVERFLOW) { /* http-parser's own 80 KiB cap */
    ws_chs_fail(hs, WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE, "response header section too large");
  } else {
    ws_chs_fail(hs, WS_CLIENT_HS_FAIL_MALFORMED, ws_chs_malformed_reason(e));
  }
}

int ws_client_hs_execute(ws_client_hs *hs, const char *data, size_t len, size_t *consumed) {
  *consumed = 0;
  if (hs->result != WS_CLIENT_HS_NEED_MORE)
    return hs->result;
  if (!hs->have_request) {
    ws_chs_fail(hs, WS_CLIENT_HS_FAIL_NO_REQUEST, "no request was built before the response");
    return hs->result;
  }
  if (len == 0) /* http-parser reads a zero-length feed as EOF */
    return WS_CLIENT_HS_NEED_MORE;
  hs->fed = 1;

  size_t pos = 0;
  while (pos < len && hs->result == WS_CLIENT_HS_NEED_MORE) {
    /* The head limit counts raw bytes, so it also bounds what http-parser
     * skips without a callback: feed the head at most what is left of it. */
    size_t feed = len - pos;
    int in_head = !hs->head_complete;
    if (in_head) {
      uint32_t room = hs->limits.max_header_bytes - hs->head_bytes;
      if (room == 0) {
        ws_chs_fail(hs, WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE, "response header section too large");
        break;
      }
      if (feed > room)
        feed = room;
    } else {
      /* Chunk framing is read without a body callback, and http-parser
       * bounds neither chunk extensions nor leading zeros in a chunk size:
       * a refusal gets 2 * max_body raw bytes after its head (counted from
       * the head's final LF), then it is cut short. */
      uint64_t limit = 2u * (uint64_t)hs->limits.max_body;
      if (hs->body_raw >= limit) {
        hs->body_truncated = 1;
        hs->result = WS_CLIENT_HS_REFUSED;
        break;
      }
      if (feed > limit - hs->body_raw)
        feed = (size_t)(limit - hs->body_raw);
    }
    size_t n = http_parser_execute(&hs->parser, &ws_chs_settings, data + pos, feed);
    if (n > feed) /* never trust a count past what we gave */
      n = feed;
    if (in_head) {
      /* For a 101 or an interim head the parser stopped at the head's end;
       * for a refusal this may include body bytes, but its verdict ignores
       * bare_cr. */
      ws_chs_scan_head(hs, data + pos, n);
      if (!hs->head_complete)
        hs->head_bytes += (uint32_t)n;
    } else {
      hs->body_raw += n;
    }
    pos += n;
    if (hs->result != WS_CLIENT_HS_NEED_MORE) /* a callback refused */
      break;
    if (hs->bad_status_line) {
      ws_chs_fail(hs, WS_CLIENT_HS_FAIL_MALFORMED,
                  "malformed HTTP response: status line is not 'HTTP/x.y NNN ...'");
      break;
    }
    if (hs->interim_done) { /* the next head starts at pos */
      hs->interim_done = 0;
      hs->sl_state = WS_CHS_SL_START;
      http_parser_pause(&hs->parser, 0);
      continue;
    }
    if (hs->head_paused) { /* a refusal's body (if any) starts at pos */
      hs->head_paused = 0;
      http_parser_pause(&hs->parser, 0);
      continue;
    }

    if (hs->msg_complete) {
      if (hs->verdict == WS_CLIENT_HS_REFUSED) {
        hs->result = WS_CLIENT_HS_REFUSED;
      } else if (hs->bare_cr || data[pos - 1] != '\n') {
        /* A CR not followed by LF (see ws_chs_scan_head), or a head that does
         * not end in LF: the first byte of the server's first frame must
         * never be swallowed. The head ended in this call, so pos >= 1. */
        ws_chs_fail(hs, WS_CLIENT_HS_FAIL_MALFORMED,
                    "malformed HTTP response: LF character expected");
      } else if (hs->verdict == WS_CLIENT_HS_OPEN) {
        hs->result = WS_CLIENT_HS_OPEN;
      } else {
        ws_chs_fail(hs, hs->verdict_fail, hs->verdict_reason);
      }
      break;
    }
    if (hs->body_truncated) { /* over max_body (paused in on_body) */
      hs->result = WS_CLIENT_HS_REFUSED;
      break;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&hs->parser);
    if (e != HPE_OK) {
      ws_chs_parser_error(hs, e);
      break;
    }
    if (n < feed) { /* stopped without saying why: never loop on it */
      ws_chs_parser_error(hs, HPE_UNKNOWN);
      break;
    }
  }
  *consumed = pos;
  return hs->result;
}

int ws_client_hs_eof(ws_client_hs *hs) {
  if (hs->result != WS_CLIENT_HS_NEED_MORE)
    return hs->result;
  if (!hs->head_complete) {
    ws_chs_fail(hs, WS_CLIENT_HS_FAIL_EOF,
                "connection closed before the response head was complete");
    return hs->result;
  }
  /* A refusal's body: http-parser completes one that runs to EOF. */
  http_parser_execute(&hs->parser, &ws_chs_settings, NULL, 0);
  if (!hs->msg_complete)
    hs->body_truncated = 1;
  hs->result = WS_CLIENT_HS_REFUSED;
  return hs->result;
}

int ws_client_hs_status(const ws_client_hs *hs) { return hs->result; }

int ws_client_hs_fail_code(const ws_client_hs *hs) {
  return hs->result == WS_CLIENT_HS_INVALID ? hs->fail : WS_CLIENT_HS_FAIL_NONE;
}

const char *ws_client_hs_fail_reason(const ws_client_hs *hs) {
  return hs->result == WS_CLIENT_HS_INVALID ? hs->fail_reason : "";
}

const char *ws_client_hs_key(const ws_client_hs *hs, size_t *len) {
  *len = hs->have_request ? WS_CLIENT_HS_KEY_LEN : 0;
  return hs->have_request ? hs->key : NULL;
}

/* The head is complete and the result final. */
static int ws_chs_done(const ws_client_hs *hs) {
  return hs->head_complete && hs->result != WS_CLIENT_HS_NEED_MORE;
}

int ws_client_hs_status_code(const ws_client_hs *hs) {
  return ws_chs_done(hs) ? (int)hs->parser.status_code : 0;
}

unsigned ws_client_hs_http_major(const ws_client_hs *hs) {
  return ws_chs_done(hs) ? hs->parser.http_major : 0;
}

unsigned ws_client_hs_http_minor(const ws_client_hs *hs) {
  return ws_chs_done(hs) ? hs->parser.http_minor : 0;
}

const char *ws_client_hs_reason(const ws_client_hs *hs, size_t *len) {
  if (!ws_chs_done(hs)) {
    *len = 0;
    return NULL;
  }
  *len = hs->reason_len;
  return hs->f.buf != NULL ? hs->f.buf + hs->reason_off : "";
}

const char *ws_client_hs_buffer(const ws_client_hs *hs, size_t *len) {
  if (!ws_chs_done(hs)) {
    *len = 0;
    return NULL;
  }
  *len = hs->f.len;
  return hs->f.buf;
}

size_t ws_client_hs_header_count(const ws_client_hs *hs) {
  return ws_chs_done(hs) ? hs->f.n : 0;
}

const ws_header_span *ws_client_hs_headers(const ws_client_hs *hs) {
  return ws_chs_done(hs) ? hs->f.spans : NULL;
}

const char *ws_client_hs_header_next(const ws_client_hs *hs, const char *name,
                                     size_t name_len, size_t *pos, size_t *value_len) {
  *value_len = 0;
  if (!ws_chs_done(hs))
    return NULL;
  return ws_fields_next(&hs->f, name, name_len, pos, value_len);
}

const char *ws_client_hs_header(const ws_client_hs *hs, const char *name, size_t name_len,
                                size_t *value_len) {
  size_t pos = 0;
  return ws_client_hs_header_next(hs, name, name_len, &pos, value_len);
}

const char *ws_client_hs_subprotocol(const ws_client_hs *hs, size_t *len) {
  int ok = hs->result == WS_CLIENT_HS_OPEN && hs->has_proto;
  *len = ok ? hs->proto_len : 0;
  return ok ? hs->f.buf + hs->proto_off : NULL;
}

const char *ws_client_hs_extensions(const ws_client_hs *hs, size_t *len) {
  int ok = hs->result == WS_CLIENT_HS_OPEN && hs->has_ext;
  *len = ok ? hs->ext_len : 0;
  return ok ? hs->f.buf + hs->ext_off : NULL;
}

const char *ws_client_hs_body(const ws_client_hs *hs, size_t *len) {
  int ok = hs->result == WS_CLIENT_HS_REFUSED;
  *len = ok ? hs->body_len : 0;
  return ok ? (hs->body != NULL ? hs->body : "") : NULL;
}

int ws_client_hs_body_truncated(const ws_client_hs *hs) {
  return hs->result == WS_CLIENT_HS_REFUSED && hs->body_truncated;
}
