/* handshake.h - the HTTP/1.1 upgrade request (RFC 6455 4.2.1) and responses.
 *
 * Sans-I/O: request bytes go in with ws_handshake_execute(); the result says
 * whether more bytes are needed, the request is a valid WebSocket upgrade, it
 * is a plain HTTP request (e.g. GET / for a page), or it failed with an HTTP
 * status. Parsing uses the Node.js http-parser from the system, with our own
 * per-request limits enforced in its callbacks (http-parser's own limit is
 * compile-time and process-wide, and it has no header-count limit).
 *
 * Ownership: a ws_handshake owns one heap buffer holding the request line and
 * headers (bounded by the limits) and frees it in ws_handshake_free(); it
 * lives only until the connection is upgraded or refused, so an open
 * WebSocket pays nothing for it.
 */
#ifndef WS_HANDSHAKE_H
#define WS_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "httpfields.h"

typedef struct ws_handshake ws_handshake;

typedef struct ws_handshake_limits {
  uint32_t max_url;          /* bytes in the request target; over -> 414 */
  uint32_t max_headers;      /* header fields; over -> 431 */
  uint32_t max_header_bytes; /* raw bytes of the request head as received:
                                request line, header lines with their CRLFs
                                and the blank line; over -> 431. http-parser
                                itself stops at 80 KiB (also 431). */
} ws_handshake_limits;

/* Defaults: 8 KiB URL, 64 headers, 16 KiB of request head. */
void ws_handshake_limits_default(ws_handshake_limits *l);

enum ws_handshake_status {
  WS_HS_NEED_MORE = 0, /* request incomplete: feed more bytes */
  WS_HS_UPGRADE = 1,   /* complete, valid WebSocket upgrade request */
  WS_HS_HTTP = 2,      /* complete HTTP request that is not an upgrade attempt
                          (no Upgrade header): the caller may serve a page, or
                          answer 426 */
  WS_HS_FAIL = 3       /* invalid: answer ws_handshake_fail_status() and close */
};

/* The header fields come as ws_header_span (httpfields.h): spans into the
 * request buffer, not NUL-terminated. */

/* Allocates a handshake with the given limits (NULL = defaults; a zero field
 * takes its default). Returns NULL on allocation failure. The buffer and the
 * span array are allocated as the request arrives. */
ws_handshake *ws_handshake_new(const ws_handshake_limits *limits);
void ws_handshake_free(ws_handshake *hs);

/* Feeds request bytes. Returns the status and sets *consumed to the bytes
 * used. On WS_HS_UPGRADE / WS_HS_HTTP, *consumed ends exactly after the
 * head's blank line: bytes past it belong to the connection that follows (a
 * client's first frames may arrive in the same read, or a pipelined request)
 * and must be kept by the caller. On NEED_MORE every byte was used. Once not
 * NEED_MORE the result is final: later calls return it with *consumed = 0.
 * len 0 is a no-op (it is not EOF).
 *
 * Classification of a complete head, first match wins:
 *   Content-Length > 0 or any Transfer-Encoding    -> FAIL 400 (no bodies)
 *   no Upgrade header                              -> HTTP (any method/version)
 *   method not GET                                 -> FAIL 405 (Allow: GET)
 *   HTTP/1.0 or older                              -> FAIL 505
 *   Host missing or repeated                       -> FAIL 400
 *   Upgrade without token "websocket"              -> FAIL 400
 *   Connection without token "upgrade"             -> FAIL 400
 *   Sec-WebSocket-Version missing or not "13"      -> FAIL 426 (repeated: 400)
 *   Sec-WebSocket-Key missing, repeated, or not
 *     base64 of 16 bytes                           -> FAIL 400
 *   otherwise                                      -> UPGRADE
 * Token lists are comma-separated, case-insensitive, and repeated fields
 * count as one list. Malformed HTTP -> 400, limits -> 414 / 431, allocation
 * failure -> 500. */
int ws_handshake_execute(ws_handshake *hs, const char *data, size_t len, size_t *consumed);

/* After WS_HS_FAIL (or for WS_HS_HTTP, 426): the HTTP status to answer (400,
 * 405, 414, 426, 431, 500, 505) and a one-line reason (static string, no
 * newline). Otherwise 0 and "". */
int ws_handshake_fail_status(const ws_handshake *hs);
const char *ws_handshake_fail_reason(const ws_handshake *hs);

/* Accessors valid after UPGRADE or HTTP until ws_handshake_free() (before
 * that: NULL / 0). Returned pointers point into the handshake's buffer, except
 * the method (a static string); lengths are explicit. Names and values have
 * surrounding SP/HTAB trimmed. */
const char *ws_handshake_method(const ws_handshake *hs, size_t *len);
const char *ws_handshake_target(const ws_handshake *hs, size_t *len); /* path?query as sent */
const char *ws_handshake_buffer(const ws_handshake *hs, size_t *len);  /* base for spans */
size_t ws_handshake_header_count(const ws_handshake *hs);
const ws_header_span *ws_handshake_headers(const ws_handshake *hs);
/* First header with this name (case-insensitive), value span; NULL if absent. */
const char *ws_handshake_header(const ws_handshake *hs, const char *name, size_t name_len,
                                size_t *value_len);
/* The client's Sec-WebSocket-Key (trimmed), valid after UPGRADE. */
const char *ws_handshake_key(const ws_handshake *hs, size_t *len);
unsigned ws_handshake_http_major(const ws_handshake *hs);
unsigned ws_handshake_http_minor(const ws_handshake *hs);

/* The reason phrase for a status code ("Bad Request"); a generic phrase for
 * codes without their own. Static string. */
const char *ws_handshake_status_phrase(int status);

/* Writes the 101 response into out: Upgrade, Connection, Sec-WebSocket-Accept
 * computed from the key, Sec-WebSocket-Protocol if subprotocol_len > 0, then
 * extra_headers verbatim (each line ending in CRLF, may be empty), then the
 * blank line. Returns the length, or 0 if cap is too small or the handshake
 * is not UPGRADE. */
size_t ws_handshake_accept_response(const ws_handshake *hs,
                                    const char *subprotocol, size_t subprotocol_len,
                                    const char *extra_headers, size_t extra_len,
                                    char *out, size_t cap);

/* Writes an error response with the status line for status, Connection:
 * close, Content-Type text/plain; charset=utf-8, Content-Length and the body
 * (reason + LF). For 426, adds Sec-WebSocket-Version: 13 and Upgrade:
 * websocket; for 405, Allow: GET. extra_headers as above. Returns the length,
 * or 0 if cap is too small or status is not 3 digits. Needs no handshake:
 * also used for 503 before any byte is read. */
size_t ws_handshake_error_response(int status, const char *reason, size_t reason_len,
                                   const char *extra_headers, size_t extra_len,
                                   char *out, size_t cap);

#endif
