/* srv_tls.c - TLS on the transport's connections (see srv_tls.h).
 *
 * The transport calls in at five places (server_int.h, "TLS hooks"): accept,
 * read (ciphertext in), the write to the socket (plaintext out), the FIN
 * (close_notify first) and the connection's free. Everything else in the
 * transport sees plaintext and does not know TLS is there.
 */
#include "srv_tls.h"

#include <stdlib.h>
#include <string.h>

#include "server_int.h"

/* Plaintext of one read: at most the read's ciphertext plus the rest of a
 * record begun in an earlier read (16 KiB + overhead), so one pass usually
 * decrypts a whole read; the loop below handles more anyway. */
#define TLS_PLAIN_SIZE (READ_BUF_SIZE + 20 * 1024)

int ws_server_set_tls(ws_server *s, ws_tls_ctx *ctx, ws_server_tls_log_fn log) {
  if (ctx == NULL || ws_tls_ctx_role(ctx) != WS_TLS_SERVER || s->tls_ctx) return -1;
  if (s->tls_plain == NULL) {
    s->tls_plain = malloc(TLS_PLAIN_SIZE);
    if (s->tls_plain == NULL) return -1;
  }
  s->tls_ctx = ctx;
  s->tls_log = log;
  return 0;
}

void ws_srv_tls_free(ws_server *s) {
  ws_tls_ctx_free(s->tls_ctx);
  s->tls_ctx = NULL;
  free(s->tls_plain);
  s->tls_plain = NULL;
}

int ws_server_conn_tls(const ws_server_conn *c) { return c->tls != NULL; }

static size_t copy_out(const char *v, char *out, size_t cap) {
  if (cap == 0) return 0;
  size_t n = v ? strlen(v) : 0;
  if (n >= cap) n = cap - 1;
  if (n) memcpy(out, v, n);
  out[n] = 0;
  return n;
}

size_t ws_server_conn_tls_sni(const ws_server_conn *c, char *out, size_t cap) {
  return copy_out(c->tls ? ws_tls_sni(c->tls) : NULL, out, cap);
}

size_t ws_server_conn_tls_version(const ws_server_conn *c, char *out, size_t cap) {
  return copy_out(c->tls ? ws_tls_version(c->tls) : NULL, out, cap);
}

/* ---- hooks called by the transport --------------------------------------- */

/* What the layer has for the wire goes now (copied by the write path if the
 * kernel does not take it all). */
static void send_out(ws_server_conn *c) {
  size_t n;
  const char *p = ws_tls_out(c->tls, &n);
  if (n == 0) return;
  if (c->phase < PH_CLOSED) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    ws_srv_conn_write_wire(c, &b, 1);
  }
  ws_tls_out_done(c->tls, n);
}

static void log_end(ws_server_conn *c, const char *reason) {
  ws_server *s = c->server;
  if (s->tls_log == NULL) return;
  char peer[64];
  ws_server_conn_peer(c, peer, sizeof peer);
  s->tls_log(s, peer, reason);
}

/* The connection failed at the TLS level: its alert, a log line, the end. */
static void fail(ws_server_conn *c, const char *reason) {
  send_out(c);
  ws_tls_discard_input(c->tls);
  log_end(c, reason);
  if (c->phase == PH_OPEN && c->ws.state != WS_CONN_CLOSED)
    ws_conn_abort(&c->ws, 1006, "TLS failure", 11);
  ws_srv_conn_destroy(c);
}

int ws_srv_tls_accept(ws_server_conn *c) {
  ws_server *s = c->server;
  if (s->tls_ctx == NULL) return 0;
  c->tls = ws_tls_new(s->tls_ctx, NULL);
  return c->tls ? 0 : -1;
}

int ws_srv_tls_attach(ws_server_conn *c, ws_tls *t) {
  c->tls = t;
  ws_server *s = c->server;
  /* A host without a server context (the client's) gets the buffer now. */
  if (s->tls_plain == NULL && !(s->tls_plain = malloc(TLS_PLAIN_SIZE))) return -1;
  if (ws_tls_start(t) != WS_TLS_OK) return -1;
  send_out(c);
  return 0;
}

/* A decision is pending (reading stopped): later plaintext of this read
 * joins the bytes kept for the accept. */
static int keep_early(ws_server_conn *c, const char *data, size_t len) {
  size_t have = c->early ? c->early->len : 0;
  struct early_bytes *e = realloc(c->early, sizeof *e + have + len);
  if (e == NULL) return -1;
  memcpy(e->data + have, data, len);
  e->len = have + len;
  c->early = e;
  return 0;
}

void ws_srv_tls_read(ws_server_conn *c, char *data, size_t len) {
  ws_server *s = c->server;
  ws_tls *t = c->tls;
  if (ws_tls_feed(t, data, len) != WS_TLS_OK) {
    fail(c, "out of memory");
    return;
  }
  for (int guard = 0; guard < 1024; guard++) {
    long n = ws_tls_read(t, s->tls_plain, TLS_PLAIN_SIZE);
    send_out(c); /* handshake flights, tickets, alerts */
    if (c->phase >= PH_CLOSED) break;
    if (n == 0) return;
    if (n == WS_TLS_EOF) {
      ws_tls_discard_input(t);
      if (c->phase == PH_HANDSHAKE) log_end(c, "close_notify during the handshake");
      ws_srv_read_end(c, UV_EOF);
      return;
    }
    if (n < 0) {
      fail(c, ws_tls_error(t));
      return;
    }
    if (c->phase == PH_HANDSHAKE && c->decision == DEC_PENDING) {
      if (keep_early(c, s->tls_plain, (size_t)n) != 0) {
        fail(c, "out of memory");
        return;
      }
      continue;
    }
    if (c->phase >= PH_FLUSHING) break; /* closing: nothing more is read */
    ws_srv_read_plain(c, s->tls_plain, (size_t)n);
  }
  ws_tls_discard_input(t);
}

void ws_srv_tls_read_end(ws_server_conn *c) {
  if (!ws_tls_handshake_done(c->tls)) log_end(c, "closed during the TLS handshake");
}

void ws_srv_tls_write(ws_server_conn *c, const uv_buf_t *bufs, unsigned n) {
  ws_tls_iov v[CORK_IOV];
  while (n > 0) {
    unsigned k = n < CORK_IOV ? n : CORK_IOV;
    for (unsigned i = 0; i < k; i++) {
      v[i].base = bufs[i].base;
      v[i].len = bufs[i].len;
    }
    /* A connection that failed or sent close_notify takes no more: what
     * was written after is dropped (it is ending). */
    if (ws_tls_writev(c->tls, v, k) != WS_TLS_OK) break;
    bufs += k;
    n -= k;
  }
  send_out(c);
}

void ws_srv_tls_close(ws_server_conn *c) {
  ws_tls_close(c->tls);
  send_out(c);
}

void ws_srv_tls_conn_free(ws_server_conn *c) {
  ws_tls_free(c->tls);
  c->tls = NULL;
}
