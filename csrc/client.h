/* client.h - client connections on a ws_server's loop (RFC 6455 4.1, 7.1.1).
 *
 * A client connection is a ws_server_conn hosted by a ws_server (the loop
 * owner): once open it has the same engine (in the client role: every frame
 * masked with a key from the server's CSPRNG pool, masked server frames fail
 * with 1002), cork, timers (ping interval, pong timeout, close timeout),
 * write limits, batching and callbacks (on_open, on_message, on_close, ...)
 * as an accepted one, and the ws_server_conn_* functions work on it.
 *
 * ws_client_connect resolves the host (numeric, or a name through
 * uv_getaddrinfo: its addresses are tried in the resolver's order until one
 * accepts, each with a fresh socket), connects over TCP or
 * to a Unix socket, writes the upgrade request (clienths.h, with a 16-byte
 * nonce from the pool), reads the response through clienths, and on a valid
 * 101 starts the engine (permessage-deflate with the parameters the server
 * answered, checked by ws_pmd_client_accept, when we offered it), calls
 * on_open, then feeds the bytes that followed the response head (the
 * server's first frames) to the engine. The server's handshake_timeout_ms
 * bounds all of it (the open timeout). Any failure before on_open is
 * reported once through on_connect_failed (server.h), after which the
 * connection is gone; a connection that opened gets on_close as usual.
 *
 * wss:// (o->tls): once TCP has connected, the connection gets a client-role
 * ws_tls (srv_tls.h's ws_srv_tls_attach): the ClientHello leaves at once, the
 * upgrade request is encrypted when the TLS handshake completes, and from
 * then on every read and write of the transport goes through TLS. A failed
 * TLS handshake (certificate refused, alert, no TLS, EOF in it) is
 * on_connect_failed with WS_CLIENT_TLS. The open timeout covers it too.
 *
 * Closing: a client whose close handshake completed waits for the server to
 * close TCP (RFC 6455 7.1.1), at most close_timeout_ms, then closes.
 *
 * Sharing the host: client connections are connections of the server like
 * the accepted ones: ws_server_connection_count counts them,
 * ws_server_broadcast reaches them, a graceful ws_server_stop closes them
 * with 1001 (one still in its handshake gets on_connect_failed with
 * UV_ECANCELED: from inside ws_server_stop, or, when the stop was called
 * from an application callback, once that callback returns, like on_close). Their limits, timers and
 * compression settings are the server's config (the deflate offer is built
 * from cfg.pmd: window_bits for our compressor, peer_window_bits < 15 asks
 * the server for server_max_window_bits).
 *
 * Every function here is called on the loop's thread (server.h's rule).
 */
#ifndef WS_CLIENT_H
#define WS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "clienths.h"
#include "server.h"
#include "tls.h"

/* err > 0 of on_connect_failed: the server answered, hs says what. */
enum ws_client_failure {
  WS_CLIENT_REFUSED = 1,       /* a complete response with a status other than 101 */
  WS_CLIENT_INVALID = 2,       /* malformed, over a limit, EOF in the head, or a 101
                                  failing RFC 6455 4.1 (ws_client_hs_fail_reason) */
  WS_CLIENT_BAD_EXTENSIONS = 3, /* a 101 whose Sec-WebSocket-Extensions answer does
                                  not fit our permessage-deflate offer */
  WS_CLIENT_TLS = 4            /* the TLS handshake failed (a certificate refused, no TLS
                                  on the other side, an alert, EOF during it):
                                  ws_client_conn_tls_error says why */
};

/* Errors of ws_client_connect itself (negative, beside libuv's). */
enum ws_client_connect_error {
  WS_CLIENT_E_ARGS = -5000,    /* no host and no unix_path, or port 0 for TCP */
  WS_CLIENT_E_REQUEST = -5001, /* the request could not be built: *request_error says why */
  WS_CLIENT_E_NOMEM = -5002,
  WS_CLIENT_E_STOPPING = -5003 /* the server is stopping or freed */
};

typedef struct ws_client_options {
  const char *host;       /* TCP: numeric IPv4/IPv6 (brackets allowed) or a name;
                             also the Host header. With unix_path, only the Host
                             header (NULL = "localhost"). */
  size_t host_len;
  uint16_t port;          /* TCP port; also in Host unless 80 */
  const char *unix_path;  /* NUL-terminated; non-NULL: connect to this socket */
  const char *target;     /* "/path?query" (clienths.h's rules); NULL = "/" */
  size_t target_len;
  const char *origin;     /* NULL = no Origin */
  size_t origin_len;
  const ws_client_hs_str *subprotocols;
  size_t subprotocol_count;
  const ws_client_hs_field *headers; /* extra request fields */
  size_t header_count;
  int compression;        /* 1: offer permessage-deflate (the server config's
                             pmd: "permessage-deflate; client_max_window_bits" by
                             default) */
  ws_client_hs_limits limits; /* response limits (zeros = clienths defaults) */
  int want_control;       /* 1: on_control reports this connection's pings and pongs
                             even if the server's cfg.want_control is 0 */
  ws_tls_ctx *tls;        /* non-NULL: wss://, TLS with this client-role context over
                             TCP (the connection takes its own reference: the caller
                             may free its own at any time). The certificate is checked
                             against host (a name: SNI too; an IP literal: no SNI)
                             unless the context is insecure_no_verify. */
} ws_client_options;

/* Zeros, compression on. */
void ws_client_options_default(ws_client_options *o);

/* Starts a client connection. Returns 0 with *out set (the connection, its
 * outcome reported by on_open or on_connect_failed), or a negative
 * ws_client_connect_error / libuv error, with nothing created; for
 * WS_CLIENT_E_REQUEST, *request_error (if non-NULL) receives the
 * ws_client_hs_request_error. Every pointer in o is borrowed for the call. */
int ws_client_connect(ws_server *s, const ws_client_options *o, ws_server_conn **out,
                      long *request_error);

/* The response of an open client connection (status 101, its headers, the
 * subprotocol, the extensions answer); NULL for accepted connections. Valid
 * until the connection's on_close returns. */
const ws_client_hs *ws_client_conn_response(const ws_server_conn *c);

/* Gives up a client connection still in its handshake: on_connect_failed
 * reports UV_ECANCELED (when the current application callback returns, if
 * called from one). 0, or -1 if c is not a client connection before open. */
int ws_client_cancel(ws_server_conn *c);

/* 1 for a client connection, 0 for an accepted one. */
int ws_client_conn_is_client(const ws_server_conn *c);

/* Why the TLS handshake of c failed (err WS_CLIENT_TLS of on_connect_failed,
 * valid during that call): a static sentence fragment, and in *verify (if
 * non-NULL) the enum ws_tls_verify_error of the server's certificate
 * (WS_TLS_VERIFY_OK when the failure was not about the certificate). "" and
 * OK for a connection without TLS. */
const char *ws_client_conn_tls_error(const ws_server_conn *c, int *verify);

/* A static sentence for an err of on_connect_failed or ws_client_connect. */
const char *ws_client_strerror(int err);

#endif
