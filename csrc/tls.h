/* tls.h - TLS for one connection, sans-I/O, over OpenSSL 3 (both roles).
 *
 * The layer never touches a socket. Ciphertext from the peer goes in with
 * ws_tls_feed() and comes out as plaintext from ws_tls_read(); plaintext to
 * send goes in with ws_tls_write()/ws_tls_writev() and the ciphertext to put
 * on the wire is taken with ws_tls_out()/ws_tls_out_done(). The handshake is
 * driven by those same calls (a client starts it with ws_tls_start()).
 *
 * A context (ws_tls_ctx) holds what every connection of one role shares: the
 * certificate chain and key, the trust anchors, the verification mode and the
 * TLS 1.2 cipher list. Its files are read once, in ws_tls_ctx_new(); a bad
 * file, a key that does not match the certificate, a wrong password or a
 * cipher string that selects nothing is one sentence in the caller's buffer.
 *
 * Policy, the same for every context: TLS 1.2 and 1.3 only; no renegotiation;
 * no server session cache and no TLS 1.3 session tickets (see tls.c);
 * ALPN "http/1.1" (offered by a client, chosen by a server when offered; a
 * client offering only other protocols gets no ALPN answer, not an alert);
 * SNI sent by a client for a host name (never for an IP address) and readable
 * on the server (ws_tls_sni); SSL_MODE_RELEASE_BUFFERS, and the layer's own
 * buffers are freed as soon as they are empty, so an idle connection holds
 * only OpenSSL's SSL object and ws_tls itself (measured in docs/PERFORMANCE.md).
 *
 * Client role: verification is on unless the context was made with
 * insecure_no_verify = 1 (an explicit, loudly named choice): the peer's chain
 * is checked against ca_file, or the system trust store when ca_file is NULL,
 * and its name against the host name (DNS names and IP addresses both).
 * A failure is WS_TLS_ERR with ws_tls_verify_error() saying why.
 *
 * Ownership: every pointer handed in is borrowed for the duration of the call
 * unless stated otherwise; the layer copies what it keeps. The one exception is
 * ws_tls_feed's data (see there). Errors: functions return WS_TLS_OK (0) or a
 * negative enum ws_tls_result; after WS_TLS_ERR, ws_tls_error() is a static
 * sentence fragment (OpenSSL's reason or the verification failure) and the
 * connection is finished: only ws_tls_out (an alert may be waiting) and
 * ws_tls_free remain useful.
 *
 * Thread use: a context may be shared by connections on one thread; a
 * connection is used by one thread at a time. No global state is written.
 */
#ifndef WS_TLS_H
#define WS_TLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_tls_ctx ws_tls_ctx;
typedef struct ws_tls ws_tls;

enum ws_tls_role { WS_TLS_SERVER = 0, WS_TLS_CLIENT = 1 };

/* Client certificates (server role), the numbers of Python's ssl.CERT_*. */
enum ws_tls_cert_reqs {
  WS_TLS_CERT_NONE = 0,     /* none asked for */
  WS_TLS_CERT_OPTIONAL = 1, /* asked for; a certificate sent must verify */
  WS_TLS_CERT_REQUIRED = 2  /* a verified certificate is required */
};

enum ws_tls_result {
  WS_TLS_OK = 0,
  WS_TLS_EOF = -1, /* the peer sent close_notify: no more plaintext will come */
  WS_TLS_ERR = -2, /* fatal: bad record, handshake failure, verification failure */
  WS_TLS_NOMEM = -3
};

/* Why a peer's certificate was refused (client role, or a server checking a
 * client certificate). */
enum ws_tls_verify_error {
  WS_TLS_VERIFY_OK = 0,
  WS_TLS_VERIFY_EXPIRED = 1,           /* expired or not yet valid */
  WS_TLS_VERIFY_UNKNOWN_ISSUER = 2,    /* no path to a trusted root (incl. self-signed) */
  WS_TLS_VERIFY_HOSTNAME_MISMATCH = 3, /* valid chain, but not for this host or IP */
  WS_TLS_VERIFY_OTHER = 4              /* anything else (see ws_tls_error) */
};

#define WS_TLS_ERRBUF 256 /* enough for every sentence of ws_tls_ctx_new */

typedef struct ws_tls_config {
  uint8_t role;               /* enum ws_tls_role */
  uint8_t cert_reqs;          /* enum ws_tls_cert_reqs: server role only */
  uint8_t insecure_no_verify; /* client role only: 1 = accept any certificate, any name */
  const char *certfile;       /* PEM chain (leaf first); server: required, client: optional */
  const char *keyfile;        /* PEM private key; NULL = the key is in certfile */
  const char *password;       /* for an encrypted keyfile; NULL = none */
  const char *ca_file;        /* PEM trust anchors; client: NULL = the system store;
                                 server: required when cert_reqs != NONE */
  const char *ciphers;        /* OpenSSL cipher list for TLS 1.2; NULL or "" = defaults
                                 (TLS 1.3 suites are OpenSSL's defaults) */
} ws_tls_config;

/* Fields zero/NULL, role server. */
void ws_tls_config_default(ws_tls_config *cfg);

/* Returns the context, or NULL with one sentence (no newline) in err
 * (errlen >= WS_TLS_ERRBUF recommended; always NUL-terminated when errlen > 0). */
ws_tls_ctx *ws_tls_ctx_new(const ws_tls_config *cfg, char *err, size_t errlen);
/* One more reference for a holder other than a connection (given back with
 * ws_tls_ctx_free). Returns ctx. */
ws_tls_ctx *ws_tls_ctx_ref(ws_tls_ctx *ctx);
/* Gives up the caller's reference. Each connection holds one too (taken by
 * ws_tls_new, given back by ws_tls_free), so the context lives until the
 * last of its connections is freed, in whatever order (a connection freed
 * in a later loop turn than its owner's free stays valid). The count is
 * atomic: the last reference may be dropped on another thread. NULL is ignored. */
void ws_tls_ctx_free(ws_tls_ctx *ctx);
int ws_tls_ctx_role(const ws_tls_ctx *ctx);

/* A connection. host (client role): the name or IP literal the certificate
 * must match and, for a name, the SNI sent; may be NULL only with
 * insecure_no_verify (then no SNI). Ignored by the server role. NULL if out of
 * memory or host is unusable. */
ws_tls *ws_tls_new(ws_tls_ctx *ctx, const char *host);
void ws_tls_free(ws_tls *t);

/* Client role: queues the ClientHello (take it with ws_tls_out). Server role:
 * nothing. Returns WS_TLS_OK or WS_TLS_ERR. */
int ws_tls_start(ws_tls *t);

/* Hands the layer len bytes of ciphertext from the peer. They are NOT copied:
 * data must stay valid and unchanged until ws_tls_read() has returned 0 or a
 * negative value; a caller that stops reading earlier calls ws_tls_stash()
 * first. Feeding again before that copies what is left of the earlier data
 * first (it is still valid then by the rule above). */
int ws_tls_feed(ws_tls *t, const char *data, size_t len);
/* Copies the unread rest of the fed bytes into the layer (owned). */
int ws_tls_stash(ws_tls *t);
/* Forgets the unread rest of the fed bytes (the connection is going away). */
void ws_tls_discard_input(ws_tls *t);

/* Decrypts into out (cap bytes): returns the number of plaintext bytes (> 0,
 * as many records as fit), 0 when the fed bytes are used up (more ciphertext
 * needed; handshake messages and alerts they produced are in ws_tls_out), or
 * WS_TLS_EOF / WS_TLS_ERR / WS_TLS_NOMEM. Drives the handshake; when it
 * completes, plaintext written before (ws_tls_write) is encrypted. */
long ws_tls_read(ws_tls *t, char *out, size_t cap);

/* Encrypts len bytes (records of up to 16 KiB). Before the handshake has
 * completed the plaintext is kept (copied) and encrypted when it does.
 * Returns WS_TLS_OK, WS_TLS_ERR (connection failed or closed) or WS_TLS_NOMEM. */
int ws_tls_write(ws_tls *t, const char *data, size_t len);
/* Same for n pieces, gathered: small pieces share records (one record per
 * 16 KiB of plaintext, not one per piece). */
typedef struct ws_tls_iov {
  const char *base;
  size_t len;
} ws_tls_iov;
int ws_tls_writev(ws_tls *t, const ws_tls_iov *iov, size_t n);

/* Ciphertext waiting to be sent: a pointer to *len bytes (NULL and 0 when
 * none), valid until the next call on t other than ws_tls_out. */
const char *ws_tls_out(ws_tls *t, size_t *len);
/* n bytes of ws_tls_out were sent (or copied away); the buffer is freed when
 * it is empty. */
void ws_tls_out_done(ws_tls *t, size_t n);

/* Queues close_notify (once). Returns WS_TLS_OK or WS_TLS_ERR. */
int ws_tls_close(ws_tls *t);

int ws_tls_handshake_done(const ws_tls *t);
/* 1 after WS_TLS_ERR or WS_TLS_EOF was returned. */
int ws_tls_failed(const ws_tls *t);
/* The reason for the last WS_TLS_ERR ("" if none). Static storage. */
const char *ws_tls_error(const ws_tls *t);
/* enum ws_tls_verify_error for the peer's certificate. */
int ws_tls_verify_error(const ws_tls *t);
/* Server role: the SNI name the client sent, or NULL. Owned by t. */
const char *ws_tls_sni(const ws_tls *t);
/* The ALPN protocol agreed on, or NULL (*len 0). Owned by t. */
const char *ws_tls_alpn(const ws_tls *t, size_t *len);
/* "TLSv1.3", "TLSv1.2" (static), or NULL before the handshake. */
const char *ws_tls_version(const ws_tls *t);
/* 1 if the peer presented a certificate that verified. */
int ws_tls_peer_verified(const ws_tls *t);

#endif
