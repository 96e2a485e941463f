/* srv_tls.h - TLS on the transport's connections (uses tls.h).
 *
 * With a server-role context set, every connection the server accepts speaks
 * TLS: ciphertext read from the socket is decrypted (into one plaintext
 * buffer per server) before the HTTP handshake and the WebSocket engine see
 * it, and what the connection writes is encrypted where the bytes leave for
 * the socket, so the cork still gathers: one ws_tls_writev and one socket
 * write per connection per flush, not one per message. A broadcast is encoded
 * once and encrypted per connection. The handshake timeout covers the TLS
 * handshake (the connection is in its handshake phase until the upgrade).
 *
 * A connection that fails TLS (bytes that are not TLS, a bad record, a
 * failed handshake, a client certificate refused) or closes during the TLS
 * handshake ends alone: its alert is sent if any, the socket is closed, and
 * the log function (if any) hears one line about it (the Python side logs it
 * at debug level).
 */
#ifndef WS_SRV_TLS_H
#define WS_SRV_TLS_H

#include "server.h"
#include "tls.h"

/* peer: "ip:port" (as ws_server_conn_peer); reason: why it ended. Both valid
 * during the call only. */
typedef void (*ws_server_tls_log_fn)(ws_server *s, const char *peer, const char *reason);

/* Connections accepted from now on speak TLS with ctx (server role). The
 * server owns ctx on success (freed with the server); on failure (-1: not a
 * server-role context, TLS already set, out of memory) the caller keeps it.
 * log may be NULL. */
int ws_server_set_tls(ws_server *s, ws_tls_ctx *ctx, ws_server_tls_log_fn log);

/* 1 if the connection speaks TLS. */
int ws_server_conn_tls(const ws_server_conn *c);
/* Its SNI name ("" if none) and TLS version ("" before the handshake) into
 * out[0..cap), NUL-terminated; return the length. */
size_t ws_server_conn_tls_sni(const ws_server_conn *c, char *out, size_t cap);
size_t ws_server_conn_tls_version(const ws_server_conn *c, char *out, size_t cap);

#endif
