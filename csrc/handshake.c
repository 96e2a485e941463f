/* handshake.c - the HTTP/1.1 upgrade request (RFC 6455 4.2.1) and responses.
 *
 * http-parser does the HTTP syntax; this file does everything else: it copies
 * the request target and the header fields into one owned buffer as they
 * arrive (a field can be split across reads and across callbacks), enforces
 * the per-request limits where the bytes arrive, and applies the RFC 6455
 * checks once the head is complete. Nothing here is process-wide: the
 * settings table is const and every limit lives in the handshake.
 */
#include "handshake.h"

#include <http_parser.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "sha1.h"

#define WS_HS_INITIAL_BUF 1024u  /* a typical browser request head fits */
#define WS_HS_INITIAL_SPANS 16u  /* browsers send about 12 fields */
#define WS_HS_KEY_B64_LEN 24u    /* base64 of the 16-byte nonce (4.1 item 7) */

struct ws_handshake {
  http_parser parser;        /* parser.data points back here */
  ws_handshake_limits limits;
  ws_fields f;               /* owned: target, then names and values */
  uint32_t url_off, url_len;
  uint32_t head_bytes;       /* raw request-head bytes fed to the parser */
  uint32_t key_off, key_len; /* Sec-WebSocket-Key, set on UPGRADE */
  uint8_t complete;          /* on_message_complete ran */
  uint8_t line_done;         /* the request line's LF was seen */
  uint8_t bad_name;          /* a field name ended in whitespace */
  uint8_t tail_len;          /* bytes in line_tail */
  char line_tail[10];        /* the request line's last bytes: " HTTP/1.1\r" */
  uint8_t result;            /* enum ws_handshake_status */
  uint16_t fail_status;      /* set with result FAIL (or 426 for HTTP) */
  const char *fail_reason;   /* static string */
};

/* ---- failures ---------------------------------------------------------- */

/* Records the first failure only: a limit hit inside a callback must not be
 * overwritten by the parser error the callback's refusal then causes. */
static int ws_handshake_fail(ws_handshake *hs, int status, const char *reason) {
  if (hs->result != WS_HS_FAIL) {
    hs->result = WS_HS_FAIL;
    hs->fail_status = (uint16_t)status;
    hs->fail_reason = reason;
  }
  return -1; /* what a refusing http-parser callback returns */
}

/* "malformed HTTP request: <description>" for every http_errno, built at
 * compile time so that the reason stays a static string. */
#define WS_HS_ERRNO_REASON(n, s) "malformed HTTP request: " s,
static const char *const ws_handshake_errno_reasons[] = {
  HTTP_ERRNO_MAP(WS_HS_ERRNO_REASON)
};
#undef WS_HS_ERRNO_REASON

static const char *ws_handshake_malformed_reason(enum http_errno e) {
  size_t n = sizeof ws_handshake_errno_reasons / sizeof ws_handshake_errno_reasons[0];
  return (size_t)e < n ? ws_handshake_errno_reasons[e] : "malformed HTTP request";
}

/* ---- the owned buffer -------------------------------------------------- */

/* Turns a collector error into the answer. The buffer never exceeds
 * max_header_bytes: everything stored is a subset of the head bytes, which
 * ws_handshake_execute() caps at that limit. */
static int ws_handshake_fields_rc(ws_handshake *hs, int rc) {
  switch (rc) {
  case WS_FIELDS_OK:
    return 0;
  case WS_FIELDS_TOO_LARGE:
    return ws_handshake_fail(hs, 431, "request header section too large");
  case WS_FIELDS_TOO_MANY:
    return ws_handshake_fail(hs, 431, "too many header fields");
  case WS_FIELDS_NO_NAME:
    return ws_handshake_fail(hs, 400, "malformed HTTP request: header value without name");
  default:
    return ws_handshake_fail(hs, 500, "out of memory");
  }
}

/* Closes the header field being accumulated. RFC 7230 3.2.4: whitespace
 * between a field name and its colon is a 400 (non-strict http-parser
 * passes "Host : x" with the space in the name). */
static void ws_handshake_end_field(ws_handshake *hs) {
  ws_header_span *s = ws_fields_end(&hs->f);
  if (s == NULL)
    return;
  if (s->name_len > 0 && ws_fields_is_ws(hs->f.buf[s->name_off + s->name_len - 1]))
    hs->bad_name = 1;
  ws_fields_trim(hs->f.buf, &s->name_off, &s->name_len);
}

/* ---- http-parser callbacks ----------------------------------------------- */

static int ws_handshake_on_url(http_parser *p, const char *at, size_t len) {
  ws_handshake *hs = p->data;
  if (len > (size_t)(hs->limits.max_url - hs->url_len))
    return ws_handshake_fail(hs, 414, "request target too long");
  if (hs->url_len == 0)
    hs->url_off = hs->f.len; /* the target is the first thing stored */
  hs->url_len += (uint32_t)len;
  return ws_handshake_fields_rc(hs, ws_fields_append(&hs->f, at, len));
}

static int ws_handshake_on_header_field(http_parser *p, const char *at, size_t len) {
  ws_handshake *hs = p->data;
  if (!ws_fields_in_name(&hs->f)) /* a new field starts */
    ws_handshake_end_field(hs);
  return ws_handshake_fields_rc(hs, ws_fields_name(&hs->f, at, len));
}

static int ws_handshake_on_header_value(http_parser *p, const char *at, size_t len) {
  ws_handshake *hs = p->data;
  return ws_handshake_fields_rc(hs, ws_fields_value(&hs->f, at, len));
}

static int ws_handshake_validate(ws_handshake *hs);

/* Returns 1 ("no body") so that http-parser never reads past the head: a
 * request that announces a body is refused in ws_handshake_validate(). */
static int ws_handshake_on_headers_complete(http_parser *p) {
  ws_handshake *hs = p->data;
  ws_handshake_end_field(hs);
  if (ws_handshake_validate(hs) != 0)
    return -1;
  return 1;
}

/* Pausing stops http_parser_execute() right after the head's final LF, so
 * bytes that follow (pipelined requests) are left to the caller. */
static int ws_handshake_on_message_complete(http_parser *p) {
  ws_handshake *hs = p->data;
  hs->complete = 1;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings ws_handshake_settings = {
  .on_url = ws_handshake_on_url,
  .on_header_field = ws_handshake_on_header_field,
  .on_header_value = ws_handshake_on_header_value,
  .on_headers_complete = ws_handshake_on_headers_complete,
  .on_message_complete = ws_handshake_on_message_complete,
};

#define WS_HS_LIT(s) s, (sizeof(s) - 1)

/* ---- RFC 6455 4.2.1 ------------------------------------------------------ */

/* Classifies a complete head. The order decides which answer a request with
 * several faults gets: body, then "is this an upgrade attempt at all", then
 * method, version, Host, Upgrade, Connection, Sec-WebSocket-Version (so that
 * a client speaking another version learns ours), Sec-WebSocket-Key. */
static int ws_handshake_validate(ws_handshake *hs) {
  const http_parser *p = &hs->parser;
  const ws_header_span *s;

  if (hs->bad_name)
    return ws_handshake_fail(hs, 400, "malformed HTTP request: whitespace between a header "
                                      "field name and its colon");

  /* We never read request bodies: the bytes after the head must be the
   * next protocol's, never a body we would misread as frames. */
  if (ws_fields_find(&hs->f, WS_HS_LIT("transfer-encoding"), &s) > 0 ||
      (p->content_length > 0 && p->content_length != ULLONG_MAX))
    return ws_handshake_fail(hs, 400, "request bodies are not accepted");

  if (ws_fields_find(&hs->f, WS_HS_LIT("upgrade"), &s) == 0) {
    /* Not an upgrade attempt: the caller serves a page or answers 426. */
    hs->result = WS_HS_HTTP;
    hs->fail_status = 426;
    hs->fail_reason = "this is a WebSocket endpoint: upgrade required";
    return 0;
  }

  if (p->method != HTTP_GET)
    return ws_handshake_fail(hs, 405, "WebSocket upgrade requires the GET method");
  if (p->http_major < 1 || (p->http_major == 1 && p->http_minor < 1))
    return ws_handshake_fail(hs, 505, "WebSocket upgrade requires HTTP/1.1 or later");

  uint32_t n = ws_fields_find(&hs->f, WS_HS_LIT("host"), &s);
  if (n == 0)
    return ws_handshake_fail(hs, 400, "missing Host header");
  if (n > 1)
    return ws_handshake_fail(hs, 400, "duplicate Host header");

  if (!ws_fields_any_has(&hs->f, WS_HS_LIT("upgrade"), WS_HS_LIT("websocket")))
    return ws_handshake_fail(hs, 400, "Upgrade header does not contain 'websocket'");
  if (!ws_fields_any_has(&hs->f, WS_HS_LIT("connection"), WS_HS_LIT("upgrade")))
    return ws_handshake_fail(hs, 400, "Connection header does not contain 'upgrade'");

  n = ws_fields_find(&hs->f, WS_HS_LIT("sec-websocket-version"), &s);
  if (n > 1)
    return ws_handshake_fail(hs, 400, "duplicate Sec-WebSocket-Version header");
  if (n == 0)
    return ws_handshake_fail(hs, 426, "missing Sec-WebSocket-Version header (13 required)");
  if (!(s->value_len == 2 && memcmp(hs->f.buf + s->value_off, "13", 2) == 0))
    return ws_handshake_fail(hs, 426, "unsupported Sec-WebSocket-Version (13 required)");

  n = ws_fields_find(&hs->f, WS_HS_LIT("sec-websocket-key"), &s);
  if (n == 0)
    return ws_handshake_fail(hs, 400, "missing Sec-WebSocket-Key header");
  if (n > 1)
    return ws_handshake_fail(hs, 400, "duplicate Sec-WebSocket-Key header");
  uint8_t nonce[WS_HS_KEY_B64_LEN];
  if (s->value_len != WS_HS_KEY_B64_LEN ||
      ws_base64_decode(hs->f.buf + s->value_off, s->value_len, nonce, sizeof nonce) != 16)
    return ws_handshake_fail(hs, 400, "Sec-WebSocket-Key is not 16 bytes in base64");

  hs->key_off = s->value_off;
  hs->key_len = s->value_len;
  hs->result = WS_HS_UPGRADE;
  return 0;
}

/* ---- public API ------------------------------------------------------------ */

void ws_handshake_limits_default(ws_handshake_limits *l) {
  l->max_url = 8 * 1024;
  l->max_headers = 64;
  l->max_header_bytes = 16 * 1024;
}

ws_handshake *ws_handshake_new(const ws_handshake_limits *limits) {
  ws_handshake *hs = calloc(1, sizeof *hs);
  if (hs == NULL)
    return NULL;
  ws_handshake_limits_default(&hs->limits);
  if (limits != NULL) {
    if (limits->max_url)
      hs->limits.max_url = limits->max_url;
    if (limits->max_headers)
      hs->limits.max_headers = limits->max_headers;
    if (limits->max_header_bytes)
      hs->limits.max_header_bytes = limits->max_header_bytes;
  }
  ws_fields_init(&hs->f, hs->limits.max_header_bytes, hs->limits.max_headers,
                 WS_HS_INITIAL_BUF, WS_HS_INITIAL_SPANS);
  http_parser_init(&hs->parser, HTTP_REQUEST);
  hs->parser.data = hs;
  hs->result = WS_HS_NEED_MORE;
  return hs;
}

void ws_handshake_free(ws_handshake *hs) {
  if (hs == NULL)
    return;
  ws_fields_free(&hs->f);
  free(hs);
}

/* Debian builds http-parser non-strict, and then it takes "H" and any four
 * bytes for "HTTP/". The request line must end in " HTTP/<d>.<d>" CRLF
 * (RFC 7230 3.1.1): its last bytes are kept as they arrive (split anywhere)
 * and checked at its LF. Returns -1 (failed) or 0. */
static int ws_handshake_check_line(ws_handshake *hs, const char *data, size_t len) {
  for (size_t i = 0; i < len && !hs->line_done; i++) {
    if (data[i] != '\n') {
      if (hs->tail_len == sizeof hs->line_tail) {
        memmove(hs->line_tail, hs->line_tail + 1, sizeof hs->line_tail - 1);
        hs->tail_len--;
      }
      hs->line_tail[hs->tail_len++] = data[i];
      continue;
    }
    if (hs->tail_len == 0 || (hs->tail_len == 1 && hs->line_tail[0] == '\r')) {
      hs->tail_len = 0; /* an empty line before the request line (RFC 7230 3.5) */
      continue;
    }
    hs->line_done = 1;
    const char *t = hs->line_tail;
    if (hs->tail_len != sizeof hs->line_tail || memcmp(t, " HTTP/", 6) != 0 ||
        t[6] < '0' || t[6] > '9' || t[7] != '.' || t[8] < '0' || t[8] > '9' || t[9] != '\r')
      return ws_handshake_fail(hs, 400, "malformed HTTP request: the request line must end "
                                        "in HTTP/<major>.<minor> and CRLF");
  }
  return 0;
}

int ws_handshake_execute(ws_handshake *hs, const char *data, size_t len, size_t *consumed) {
  *consumed = 0;
  if (hs->result != WS_HS_NEED_MORE)
    return hs->result;
  if (len == 0) /* http-parser reads a zero-length feed as EOF */
    return WS_HS_NEED_MORE;
  if (!hs->line_done && ws_handshake_check_line(hs, data, len) != 0)
    return hs->result;

  /* The head-size limit counts raw bytes (CRLFs, whitespace and all), so it
   * also bounds what http-parser skips without a callback. Feed at most
   * what the limit allows; a head not finished by then is too large. */
  uint32_t room = hs->limits.max_header_bytes - hs->head_bytes;
  if (room == 0) {
    ws_handshake_fail(hs, 431, "request header section too large");
    return hs->result;
  }
  size_t feed = len < room ? len : room;
  size_t n = http_parser_execute(&hs->parser, &ws_handshake_settings, data, feed);
  if (n > feed) /* never trust a count past what we gave */
    n = feed;
  *consumed = n;
  hs->head_bytes += (uint32_t)n;

  if (hs->result == WS_HS_FAIL) /* a callback or the validation refused */
    return hs->result;
  if (hs->complete) {
    /* Debian builds http-parser non-strict: any byte after the final CR
     * ends the head. Insist on the LF, so that a client's first frame byte
     * is never swallowed as one. The head ended in this call, so n >= 1. */
    if (n == 0 || data[n - 1] != '\n')
      ws_handshake_fail(hs, 400, "malformed HTTP request: LF character expected");
    return hs->result;
  }
  enum http_errno e = HTTP_PARSER_ERRNO(&hs->parser);
  if (e == HPE_HEADER_OVERFLOW) /* http-parser's own compile-time cap */
    ws_handshake_fail(hs, 431, "request header section too large");
  else if (e != HPE_OK)
    ws_handshake_fail(hs, 400, ws_handshake_malformed_reason(e));
  else if (feed < len)
    ws_handshake_fail(hs, 431, "request header section too large");
  return hs->result;
}

int ws_handshake_fail_status(const ws_handshake *hs) {
  return hs->result == WS_HS_FAIL || hs->result == WS_HS_HTTP ? hs->fail_status : 0;
}

const char *ws_handshake_fail_reason(const ws_handshake *hs) {
  return hs->result == WS_HS_FAIL || hs->result == WS_HS_HTTP ? hs->fail_reason : "";
}

static int ws_handshake_done(const ws_handshake *hs) {
  return hs->result == WS_HS_UPGRADE || hs->result == WS_HS_HTTP;
}

const char *ws_handshake_method(const ws_handshake *hs, size_t *len) {
  if (!ws_handshake_done(hs)) {
    *len = 0;
    return NULL;
  }
  const char *m = http_method_str((enum http_method)hs->parser.method);
  *len = strlen(m);
  return m;
}

const char *ws_handshake_target(const ws_handshake *hs, size_t *len) {
  if (!ws_handshake_done(hs)) {
    *len = 0;
    return NULL;
  }
  *len = hs->url_len;
  return hs->f.buf + hs->url_off;
}

const char *ws_handshake_buffer(const ws_handshake *hs, size_t *len) {
  *len = hs->f.len;
  return hs->f.buf;
}

size_t ws_handshake_header_count(const ws_handshake *hs) {
  return ws_handshake_done(hs) ? hs->f.n : 0;
}

const ws_header_span *ws_handshake_headers(const ws_handshake *hs) {
  return ws_handshake_done(hs) ? hs->f.spans : NULL;
}

const char *ws_handshake_header(const ws_handshake *hs, const char *name, size_t name_len,
                                size_t *value_len) {
  const ws_header_span *s = NULL;
  *value_len = 0;
  if (!ws_handshake_done(hs) || ws_fields_find(&hs->f, name, name_len, &s) == 0)
    return NULL;
  *value_len = s->value_len;
  return hs->f.buf + s->value_off;
}

const char *ws_handshake_key(const ws_handshake *hs, size_t *len) {
  if (hs->result != WS_HS_UPGRADE) {
    *len = 0;
    return NULL;
  }
  *len = hs->key_len;
  return hs->f.buf + hs->key_off;
}

unsigned ws_handshake_http_major(const ws_handshake *hs) { return hs->parser.http_major; }
unsigned ws_handshake_http_minor(const ws_handshake *hs) { return hs->parser.http_minor; }

/* ---- responses ------------------------------------------------------------- */

/* A bounded writer: once something does not fit, every later write is
 * dropped and the result is 0. */
typedef struct ws_handshake_out {
  char *p;
  size_t cap, len;
  int overflow;
} ws_handshake_out;

static void ws_handshake_put(ws_handshake_out *o, const char *s, size_t n) {
  if (o->overflow || n > o->cap - o->len) {
    o->overflow = 1;
    return;
  }
  if (n > 0)
    memcpy(o->p + o->len, s, n);
  o->len += n;
}

static void ws_handshake_puts(ws_handshake_out *o, const char *s) {
  ws_handshake_put(o, s, strlen(s));
}

static void ws_handshake_put_uint(ws_handshake_out *o, size_t v) {
  char tmp[24];
  size_t i = sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  ws_handshake_put(o, tmp + i, sizeof tmp - i);
}

static size_t ws_handshake_out_len(const ws_handshake_out *o) {
  return o->overflow ? 0 : o->len;
}

const char *ws_handshake_status_phrase(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 401: return "Unauthorized";
    case 408: return "Request Timeout";
    case 429: return "Too Many Requests";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: break;
  }
  if (status >= 200 && status < 300)
    return "OK";
  if (status >= 300 && status < 400)
    return "Redirect";
  if (status >= 400 && status < 500)
    return "Client Error";
  if (status >= 500 && status < 600)
    return "Server Error";
  return "Unknown";
}

size_t ws_handshake_accept_response(const ws_handshake *hs,
                                    const char *subprotocol, size_t subprotocol_len,
                                    const char *extra_headers, size_t extra_len,
                                    char *out, size_t cap) {
  if (hs->result != WS_HS_UPGRADE)
    return 0;
  char accept[WS_ACCEPT_LEN];
  ws_accept_key(hs->f.buf + hs->key_off, hs->key_len, accept);
  ws_handshake_out o = {out, cap, 0, 0};
  ws_handshake_puts(&o, "HTTP/1.1 101 Switching Protocols\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: ");
  ws_handshake_put(&o, accept, sizeof accept);
  ws_handshake_puts(&o, "\r\n");
  if (subprotocol_len > 0) {
    ws_handshake_puts(&o, "Sec-WebSocket-Protocol: ");
    ws_handshake_put(&o, subprotocol, subprotocol_len);
    ws_handshake_puts(&o, "\r\n");
  }
  ws_handshake_put(&o, extra_headers, extra_len);
  ws_handshake_puts(&o, "\r\n");
  return ws_handshake_out_len(&o);
}

size_t ws_handshake_error_response(int status, const char *reason, size_t reason_len,
                                   const char *extra_headers, size_t extra_len,
                                   char *out, size_t cap) {
  if (status < 100 || status > 999)
    return 0;
  ws_handshake_out o = {out, cap, 0, 0};
  ws_handshake_puts(&o, "HTTP/1.1 ");
  ws_handshake_put_uint(&o, (size_t)status);
  ws_handshake_puts(&o, " ");
  ws_handshake_puts(&o, ws_handshake_status_phrase(status));
  ws_handshake_puts(&o, "\r\nConnection: close\r\n"
                        "Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: ");
  ws_handshake_put_uint(&o, reason_len + 1);
  ws_handshake_puts(&o, "\r\n");
  if (status == 426)
    ws_handshake_puts(&o, "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n");
  else if (status == 405)
    ws_handshake_puts(&o, "Allow: GET\r\n");
  ws_handshake_put(&o, extra_headers, extra_len);
  ws_handshake_puts(&o, "\r\n");
  ws_handshake_put(&o, reason, reason_len);
  ws_handshake_puts(&o, "\n");
  return ws_handshake_out_len(&o);
}
