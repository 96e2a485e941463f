/* clienths.h - the client's opening handshake (RFC 6455 4.1, 4.2.2).
 *
 * Sans-I/O, the client-side twin of handshake.h. ws_client_hs_request()
 * writes the upgrade request into a caller buffer and remembers what it
 * offered (the key, the subprotocols, whether extensions were offered);
 * response bytes then go in with ws_client_hs_execute(), split anywhere, and
 * the result says: need more bytes, OPEN (a valid 101: the connection is a
 * WebSocket), REFUSED (any other status, with its headers and a bounded
 * body), or INVALID (malformed HTTP, a limit, or a 101 that fails RFC 6455
 * 4.1's checks, each with its own reason). Parsing uses the system's Node.js
 * http-parser in HTTP_RESPONSE mode with our own limits, as handshake.c does.
 *
 * Ownership: a ws_client_hs owns one heap buffer holding the reason phrase
 * and the header fields (spans into it, ws_header_span from handshake.h),
 * one for the body of a refusal, and a copy of the offered subprotocols; all
 * are freed by ws_client_hs_free(). Pointers returned by accessors point into
 * those buffers (or are static strings, said where) and stay valid until
 * ws_client_hs_free(); lengths are explicit, nothing is NUL-terminated.
 *
 * The 16-byte key comes from the caller (ws_csprng_bytes in csprng.h), so
 * this layer does no I/O at all and tests can fix the key.
 */
#ifndef WS_CLIENTHS_H
#define WS_CLIENTHS_H

#include <stddef.h>
#include <stdint.h>

#include "handshake.h" /* ws_header_span */

typedef struct ws_client_hs ws_client_hs;

/* Bytes of the nonce the caller supplies (RFC 6455 4.1 item 7). */
#define WS_CLIENT_HS_KEY_BYTES 16
/* Length of its base64 form, the Sec-WebSocket-Key value. */
#define WS_CLIENT_HS_KEY_LEN 24

typedef struct ws_client_hs_limits {
  uint32_t max_headers;      /* header fields in the response; over -> INVALID */
  uint32_t max_header_bytes; /* raw bytes of the response head (status line,
                                header lines with their CRLFs, blank line,
                                and any interim 1xx heads before it);
                                over -> INVALID */
  uint32_t max_body;         /* bytes of a refusal's body kept (after
                                chunked decoding); more -> REFUSED with
                                ws_client_hs_body_truncated() = 1. At most
                                2 * max_body raw bytes are read after a
                                refusal's head (chunk framing included) */
} ws_client_hs_limits;

/* Defaults: 64 headers, 16 KiB of response head, 64 KiB of body. */
void ws_client_hs_limits_default(ws_client_hs_limits *l);

/* ---- the request ---------------------------------------------------------- */

/* A string as pointer and length (not NUL-terminated). */
typedef struct ws_client_hs_str {
  const char *ptr;
  size_t len;
} ws_client_hs_str;

/* An extra header field: name and value, without ": " or CRLF. */
typedef struct ws_client_hs_field {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} ws_client_hs_field;

/* What to ask for. Every pointer is borrowed for the duration of the call;
 * what must outlive it (the key, the subprotocols) is copied. */
typedef struct ws_client_hs_options {
  const char *host;       /* reg-name, IPv4, or IPv6 literal with or without
                             brackets ("::1", "[::1]", "fe80::1%eth0": a zone
                             is sent as %25, RFC 6874); ASCII only (IDNA is
                             the caller's); required */
  size_t host_len;
  uint16_t port;          /* 0 = the scheme's default; the default is left
                             out of Host (RFC 6455 4.1 item 4) */
  uint8_t secure;         /* 1 for wss:// (default port 443), 0 for ws:// (80) */
  const char *target;     /* origin-form "/path?query", already percent-
                             encoded: starts with '/', then RFC 3986 pchar,
                             '/' and '?' only (so no space, '#' (RFC 6455 3),
                             '"', '<', '>', '\\', '^', '`', '{', '|', '}' or
                             non-ASCII); NULL or "" means "/" */
  size_t target_len;
  const char *origin;     /* Origin value; NULL or length 0 for none */
  size_t origin_len;
  const ws_client_hs_str *subprotocols; /* offered in this order; each a
                             token (RFC 6455 4.1 item 10), all distinct */
  size_t subprotocol_count;
  const char *extensions; /* Sec-WebSocket-Extensions value (the deflate
                             layer's offer); NULL or length 0 for none */
  size_t extensions_len;
  const ws_client_hs_field *headers; /* extra fields, sent in order */
  size_t header_count;
} ws_client_hs_options;

/* Errors from ws_client_hs_request (negative). */
enum ws_client_hs_request_error {
  WS_CLIENT_HS_E_NOSPACE = -1,     /* cap too small: nothing usable written */
  WS_CLIENT_HS_E_HOST = -2,        /* empty, or a byte not allowed in a host */
  WS_CLIENT_HS_E_TARGET = -3,      /* not "/...", or a byte outside pchar/'/'/'?',
                                      or a '%' not followed by two hex digits */
  WS_CLIENT_HS_E_ORIGIN = -4,      /* CR, LF, NUL or another CTL in the value */
  WS_CLIENT_HS_E_SUBPROTOCOL = -5, /* empty, not a token, or repeated */
  WS_CLIENT_HS_E_EXTENSIONS = -6,  /* CR, LF, NUL or another CTL in the value */
  WS_CLIENT_HS_E_HEADER_NAME = -7, /* an extra field's name is not a token */
  WS_CLIENT_HS_E_HEADER_VALUE = -8, /* CR, LF, NUL or another CTL in a value */
  WS_CLIENT_HS_E_RESERVED_HEADER = -9, /* an extra field this layer writes
                                      (Upgrade, Connection, Sec-WebSocket-*),
                                      one that announces a body
                                      (Content-Length, Transfer-Encoding),
                                      Origin when opts->origin is also set,
                                      or a second Host */
  WS_CLIENT_HS_E_STATE = -10,      /* response bytes were already fed */
  WS_CLIENT_HS_E_NOMEM = -11
};

/* Writes the upgrade request into out[0..cap):
 *   GET <target> HTTP/1.1
 *   Host: <host>[:<port>]        (left out if an extra field named Host is
 *                                 given: that one is sent instead)
 *   Upgrade: websocket
 *   Connection: Upgrade
 *   Sec-WebSocket-Key: <base64 of key>
 *   Sec-WebSocket-Version: 13
 *   Origin: ...                  (if given)
 *   Sec-WebSocket-Protocol: a, b (if any offered)
 *   Sec-WebSocket-Extensions: ...(if given)
 *   <extra fields in order>
 *   <blank line>
 * and records the key and the offers for checking the response. Field
 * values are sent as given (no trimming; an extra field's value may be
 * empty). Returns the length (> 0), or a negative
 * ws_client_hs_request_error; on error the handshake keeps its previous
 * request, if any. May be called again (a retry with another key) until
 * the first response byte is fed. ws_client_hs_request_size() gives the
 * exact length to allocate. */
long ws_client_hs_request(ws_client_hs *hs, const ws_client_hs_options *opts,
                          const uint8_t key[WS_CLIENT_HS_KEY_BYTES], char *out, size_t cap);

/* The length ws_client_hs_request() would write for these options, or the
 * negative error it would return (never E_STATE or E_NOMEM; E_NOSPACE only
 * for a length over LONG_MAX). */
long ws_client_hs_request_size(const ws_client_hs_options *opts);

/* A static one-line sentence for a ws_client_hs_request_error. */
const char *ws_client_hs_strerror(long err);

/* ---- the response --------------------------------------------------------- */

enum ws_client_hs_status {
  WS_CLIENT_HS_NEED_MORE = 0, /* response incomplete: feed more bytes (or EOF) */
  WS_CLIENT_HS_OPEN = 1,      /* a valid 101: the bytes after *consumed are the
                                 server's first frames */
  WS_CLIENT_HS_REFUSED = 2,   /* a complete response with another status:
                                 status, headers and body available */
  WS_CLIENT_HS_INVALID = 3    /* see ws_client_hs_fail_code / _fail_reason */
};

/* Why a response is INVALID (ws_client_hs_fail_code). */
enum ws_client_hs_fail {
  WS_CLIENT_HS_FAIL_NONE = 0,
  WS_CLIENT_HS_FAIL_NO_REQUEST,      /* execute before any request was built */
  WS_CLIENT_HS_FAIL_MALFORMED,       /* not HTTP/1.x syntax (reason names why) */
  WS_CLIENT_HS_FAIL_HEAD_TOO_LARGE,  /* over max_header_bytes */
  WS_CLIENT_HS_FAIL_TOO_MANY_HEADERS, /* over max_headers */
  WS_CLIENT_HS_FAIL_NOMEM,
  WS_CLIENT_HS_FAIL_EOF,             /* EOF before the head was complete */
  WS_CLIENT_HS_FAIL_VERSION,         /* a 101 in HTTP/1.0 or older */
  WS_CLIENT_HS_FAIL_UPGRADE,         /* Upgrade missing or not exactly
                                        "websocket" (RFC 6455 4.1, 2nd item
                                        of the response checks) */
  WS_CLIENT_HS_FAIL_CONNECTION,      /* Connection without token "upgrade" */
  WS_CLIENT_HS_FAIL_ACCEPT_MISSING,  /* no Sec-WebSocket-Accept */
  WS_CLIENT_HS_FAIL_ACCEPT_REPEATED, /* more than one Sec-WebSocket-Accept */
  WS_CLIENT_HS_FAIL_ACCEPT_MISMATCH, /* not the digest of our key */
  WS_CLIENT_HS_FAIL_PROTOCOL_MULTIPLE, /* Sec-WebSocket-Protocol repeated or
                                        a list */
  WS_CLIENT_HS_FAIL_PROTOCOL_NOT_OFFERED, /* a subprotocol we did not offer
                                        (or any, when we offered none) */
  WS_CLIENT_HS_FAIL_EXTENSIONS_NOT_OFFERED /* Sec-WebSocket-Extensions when
                                        we offered none */
};

/* Allocates a handshake with the given limits (NULL = defaults; a zero field
 * takes its default). Returns NULL on allocation failure. */
ws_client_hs *ws_client_hs_new(const ws_client_hs_limits *limits);
void ws_client_hs_free(ws_client_hs *hs);

/* Feeds response bytes. Returns the status and sets *consumed to the bytes
 * used. On OPEN, *consumed ends exactly after the head's blank line (every
 * CR in a 101's head must be followed by LF): the bytes past it are the server's first frames and
 * belong to the caller. On REFUSED, *consumed covers the head and the body
 * bytes read. On NEED_MORE every byte was used. Once not NEED_MORE the
 * result is final: later calls return it with *consumed = 0. len 0 is a
 * no-op (it is not EOF: see ws_client_hs_eof).
 *
 * Interim responses (1xx other than 101, e.g. 100 Continue, 103 Early
 * Hints) are read past (RFC 7231 6.2); their bytes count toward
 * max_header_bytes and their fields are forgotten. The final head is
 * judged, first match wins:
 *   status not 101                                  -> REFUSED, once the
 *     body is read: up to Content-Length, chunked to its end, or to EOF when
 *     neither is given; none for 204 and 304; at most max_body bytes
 *   HTTP/1.0 or older                               -> INVALID VERSION
 *   Upgrade (all fields as one list) not exactly
 *     the one token "websocket", case-insensitive   -> INVALID UPGRADE
 *   Connection without token "upgrade"              -> INVALID CONNECTION
 *   Sec-WebSocket-Accept absent / repeated / not
 *     base64(SHA-1(key ++ GUID)) exactly             -> INVALID ACCEPT_*
 *   Sec-WebSocket-Protocol repeated or a list       -> INVALID PROTOCOL_MULTIPLE
 *   Sec-WebSocket-Protocol not one offered (exact,
 *     case-sensitive)                               -> INVALID PROTOCOL_NOT_OFFERED
 *   Sec-WebSocket-Extensions present, none offered  -> INVALID EXTENSIONS_NOT_OFFERED
 *   otherwise                                       -> OPEN
 * A 101 has no body whatever its headers say (RFC 7230 3.3.3). Values are
 * compared with surrounding SP/HTAB trimmed. Stricter than Debian's
 * non-strict http-parser, and MALFORMED otherwise: each status line is
 * "HTTP/" version SP three digits (SP reason)?, every CR in a 101's head is
 * followed by LF, and header names are tokens (no space before the colon). */
int ws_client_hs_execute(ws_client_hs *hs, const char *data, size_t len, size_t *consumed);

/* The peer closed the connection (EOF). Completes a refusal whose body runs
 * to EOF (or cuts one short: body_truncated = 1); before the head is
 * complete the result becomes INVALID EOF. Returns the (now final) status;
 * after a final status, changes nothing. */
int ws_client_hs_eof(ws_client_hs *hs);

/* The status ws_client_hs_execute / _eof last returned. */
int ws_client_hs_status(const ws_client_hs *hs);

/* enum ws_client_hs_fail (0 unless INVALID) and a one-line reason (static
 * string, no line break; "" unless INVALID). */
int ws_client_hs_fail_code(const ws_client_hs *hs);
const char *ws_client_hs_fail_reason(const ws_client_hs *hs);

/* ---- accessors ------------------------------------------------------------ */

/* The base64 key of the last request built (WS_CLIENT_HS_KEY_LEN bytes), or
 * NULL / 0 before any. */
const char *ws_client_hs_key(const ws_client_hs *hs, size_t *len);

/* The rest are valid once the head is complete and the result final: after
 * OPEN, REFUSED, or an INVALID judged on a complete head (then
 * ws_client_hs_status_code() is non-zero); otherwise NULL / 0. */
int ws_client_hs_status_code(const ws_client_hs *hs);        /* e.g. 101, 403 */
unsigned ws_client_hs_http_major(const ws_client_hs *hs);
unsigned ws_client_hs_http_minor(const ws_client_hs *hs);
const char *ws_client_hs_reason(const ws_client_hs *hs, size_t *len); /* phrase */
const char *ws_client_hs_buffer(const ws_client_hs *hs, size_t *len); /* base for spans */
size_t ws_client_hs_header_count(const ws_client_hs *hs);
const ws_header_span *ws_client_hs_headers(const ws_client_hs *hs);
/* First field with this name (case-insensitive): its value; NULL if absent. */
const char *ws_client_hs_header(const ws_client_hs *hs, const char *name, size_t name_len,
                                size_t *value_len);
/* Every field with this name, in order: start with *pos = 0; each call
 * returns the next value and advances *pos; NULL when there are no more. */
const char *ws_client_hs_header_next(const ws_client_hs *hs, const char *name,
                                     size_t name_len, size_t *pos, size_t *value_len);

/* After OPEN: the subprotocol the server chose (one of those offered), or
 * NULL / 0 for none. */
const char *ws_client_hs_subprotocol(const ws_client_hs *hs, size_t *len);
/* After OPEN: the Sec-WebSocket-Extensions value, repeated fields joined
 * with ", " (RFC 7230 3.2.2), for the deflate layer to check against its
 * offer; NULL / 0 if the server sent none. */
const char *ws_client_hs_extensions(const ws_client_hs *hs, size_t *len);

/* After REFUSED: the body (decoded if chunked, at most max_body bytes) and
 * whether it was cut short (longer than max_body, or EOF before its end). */
const char *ws_client_hs_body(const ws_client_hs *hs, size_t *len);
int ws_client_hs_body_truncated(const ws_client_hs *hs);

#endif
