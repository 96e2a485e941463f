/* tls.c - TLS for one connection over OpenSSL 3, sans-I/O (see tls.h).
 *
 * OpenSSL reads and writes through a BIO of our own instead of memory BIOs:
 * reads come straight from the caller's buffer (the fed slice, no copy) and
 * writes append to a buffer that is freed as soon as it has been taken, so an
 * idle connection keeps no buffer of ours and (SSL_MODE_RELEASE_BUFFERS) none
 * of OpenSSL's record buffers either. OpenSSL's memory BIOs never shrink: a
 * connection that once received a 256 KiB read would keep 256 KiB for life.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* The ALPN list in wire format: one protocol, "http/1.1". */
static const unsigned char ALPN[] = "\x08http/1.1";
#define ALPN_LEN (sizeof ALPN - 1)
/* Plaintext gathered per SSL_write: one full record. */
#define RECORD_MAX 16384
/* A type number for our BIO method (user range, source/sink). */
#define WS_TLS_BIO_TYPE (0x7e | BIO_TYPE_SOURCE_SINK)

struct ws_tls_ctx {
  atomic_int refs;        /* the owner's, plus one per connection (see ws_tls_ctx_free) */
  SSL_CTX *ssl_ctx;
  BIO_METHOD *bio_method; /* per context: no process-wide state of ours */
  int role;
  int insecure;
};

struct ws_tls {
  ws_tls_ctx *ctx;
  SSL *ssl;
  const char *in;        /* the fed slice (borrowed, see ws_tls_feed) */
  size_t in_len;
  char *kept;            /* the stashed rest of a slice (owned) */
  size_t kept_len, kept_off;
  char *out;             /* ciphertext to send (owned, freed when empty) */
  size_t out_len, out_off, out_cap;
  char *pend;            /* plaintext written before the handshake completed (owned) */
  size_t pend_len;
  const char *reason;    /* static: why the connection failed */
  uint8_t nomem;         /* an allocation in the BIO failed */
  uint8_t failed;        /* WS_TLS_ERR returned */
  uint8_t eof;           /* close_notify received */
  uint8_t closed;        /* close_notify queued */
};

/* ---- the BIO ------------------------------------------------------------- */

static int out_append(ws_tls *t, const char *data, size_t len) {
  if (t->out_off > 0 && t->out_off == t->out_len) t->out_off = t->out_len = 0;
  if (t->out_len + len > t->out_cap) {
    size_t cap = t->out_cap ? t->out_cap : 4096;
    while (cap < t->out_len + len) cap *= 2;
    char *p = realloc(t->out, cap);
    if (p == NULL) return -1;
    t->out = p;
    t->out_cap = cap;
  }
  memcpy(t->out + t->out_len, data, len);
  t->out_len += len;
  return 0;
}

static int bio_write(BIO *b, const char *data, int len) {
  ws_tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0) return 0;
  if (out_append(t, data, (size_t)len) != 0) {
    t->nomem = 1;
    return -1;
  }
  return len;
}

static int bio_read(BIO *b, char *buf, int len) {
  ws_tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (len <= 0) return 0;
  size_t want = (size_t)len, n = 0;
  if (t->kept_off < t->kept_len) {
    n = t->kept_len - t->kept_off;
    if (n > want) n = want;
    memcpy(buf, t->kept + t->kept_off, n);
    t->kept_off += n;
    if (t->kept_off == t->kept_len) {
      free(t->kept);
      t->kept = NULL;
      t->kept_len = t->kept_off = 0;
    }
  } else if (t->in_len > 0) {
    n = t->in_len < want ? t->in_len : want;
    memcpy(buf, t->in, n);
    t->in += n;
    t->in_len -= n;
    if (t->in_len == 0) t->in = NULL;
  }
  if (n == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  ws_tls *t = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH:
    return 1;
  case BIO_CTRL_WPENDING:
    return t ? (long)(t->out_len - t->out_off) : 0;
  case BIO_CTRL_PENDING:
    return t ? (long)(t->in_len + (t->kept_len - t->kept_off)) : 0;
  default:
    return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

/* ---- contexts ------------------------------------------------------------ */

void ws_tls_config_default(ws_tls_config *cfg) { memset(cfg, 0, sizeof *cfg); }

/* The password callback: never prompts (OpenSSL's default would read the
 * terminal). pw->called tells an encrypted key from one that is not PEM. */
struct pw_state {
  const char *password;
  int called;
};

static int pw_cb(char *buf, int size, int rwflag, void *u) {
  (void)rwflag;
  struct pw_state *pw = u;
  pw->called = 1;
  if (pw->password == NULL || size <= 0) return 0;
  size_t n = strlen(pw->password);
  if (n > (size_t)size) n = (size_t)size;
  memcpy(buf, pw->password, n);
  return (int)n;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  (void)arg;
  unsigned char *sel = NULL;
  unsigned char sel_len = 0;
  if (SSL_select_next_proto(&sel, &sel_len, ALPN, (unsigned)ALPN_LEN, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

/* Checks that a file can be opened for reading: a clear sentence otherwise
 * (OpenSSL's own error for a missing file is "system lib"). */
static int readable(const char *what, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    snprintf(err, errlen, "%s '%s' cannot be read: %s", what, path, strerror(errno));
    return 0;
  }
  fclose(f);
  return 1;
}

static const char *last_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "unknown OpenSSL error";
}

static int load_identity(SSL_CTX *sc, const ws_tls_config *cfg, char *err, size_t errlen) {
  const char *keyfile = cfg->keyfile ? cfg->keyfile : cfg->certfile;
  if (!readable("ssl_certfile", cfg->certfile, err, errlen)) return 0;
  if (cfg->keyfile && !readable("ssl_keyfile", cfg->keyfile, err, errlen)) return 0;
  if (SSL_CTX_use_certificate_chain_file(sc, cfg->certfile) != 1) {
    snprintf(err, errlen, "ssl_certfile '%s' holds no usable PEM certificate (%s)",
             cfg->certfile, last_reason());
    return 0;
  }
  struct pw_state pw = {cfg->password, 0};
  SSL_CTX_set_default_passwd_cb(sc, pw_cb);
  SSL_CTX_set_default_passwd_cb_userdata(sc, &pw);
  int ok = SSL_CTX_use_PrivateKey_file(sc, keyfile, SSL_FILETYPE_PEM);
  unsigned long e = ERR_peek_last_error();
  SSL_CTX_set_default_passwd_cb_userdata(sc, NULL);
  SSL_CTX_set_default_passwd_cb(sc, NULL);
  if (ok != 1) {
    if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
      snprintf(err, errlen, "ssl_keyfile '%s' does not match ssl_certfile '%s'", keyfile,
               cfg->certfile);
    else if (pw.called && cfg->password == NULL)
      snprintf(err, errlen, "ssl_keyfile '%s' is encrypted: give ssl_keyfile_password",
               keyfile);
    else if (pw.called)
      snprintf(err, errlen, "ssl_keyfile_password does not decrypt ssl_keyfile '%s'", keyfile);
    else
      snprintf(err, errlen, "ssl_keyfile '%s' holds no usable PEM private key (%s)", keyfile,
               last_reason());
    return 0;
  }
  if (SSL_CTX_check_private_key(sc) != 1) {
    snprintf(err, errlen, "ssl_keyfile '%s' does not match ssl_certfile '%s'", keyfile,
             cfg->certfile);
    return 0;
  }
  return 1;
}

static int setup(ws_tls_ctx *c, const ws_tls_config *cfg, char *err, size_t errlen) {
  SSL_CTX *sc = c->ssl_ctx;
  int server = cfg->role == WS_TLS_SERVER;
  if (SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION) != 1) {
    snprintf(err, errlen, "OpenSSL refused TLS 1.2 as the lowest version (%s)", last_reason());
    return 0;
  }
  SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                          (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
  if (cfg->ciphers && cfg->ciphers[0] && SSL_CTX_set_cipher_list(sc, cfg->ciphers) != 1) {
    snprintf(err, errlen, "ssl_ciphers '%s' selects no cipher OpenSSL knows", cfg->ciphers);
    return 0;
  }
  if (server) {
    if (cfg->certfile == NULL || cfg->certfile[0] == 0) {
      snprintf(err, errlen, "TLS on the server needs ssl_certfile");
      return 0;
    }
    if (cfg->cert_reqs > WS_TLS_CERT_REQUIRED) {
      snprintf(err, errlen, "ssl_cert_reqs must be 0 (none), 1 (optional) or 2 (required)");
      return 0;
    }
    if (cfg->cert_reqs != WS_TLS_CERT_NONE && (cfg->ca_file == NULL || !cfg->ca_file[0])) {
      snprintf(err, errlen, "ssl_cert_reqs asks for client certificates: give ssl_ca_certs "
                            "to check them against");
      return 0;
    }
    SSL_CTX_set_alpn_select_cb(sc, alpn_select, NULL);
    /* No server-side session cache to grow. TLS 1.2 resumes with stateless
     * tickets (sent inside the handshake). TLS 1.3 tickets are not sent: they
     * arrive after the handshake, and a client that reads and writes one SSL
     * object from two threads (websockets' sync client on Python's ssl) then
     * races its reader's ticket processing against its first write ("internal
     * error" seen in about 1 of 15 connections under ASan; none with 0). */
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(sc, 0);
    SSL_CTX_set_session_id_context(sc, (const unsigned char *)"wsuv", 4);
  } else {
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
  }
  if (cfg->certfile && cfg->certfile[0] && !load_identity(sc, cfg, err, errlen)) return 0;
  if (cfg->ca_file && cfg->ca_file[0]) {
    if (!readable("ssl_ca_certs", cfg->ca_file, err, errlen)) return 0;
    if (SSL_CTX_load_verify_locations(sc, cfg->ca_file, NULL) != 1) {
      snprintf(err, errlen, "ssl_ca_certs '%s' holds no usable PEM certificate (%s)",
               cfg->ca_file, last_reason());
      return 0;
    }
    if (server) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
      if (names) SSL_CTX_set_client_CA_list(sc, names);
    }
  } else if (!server && !cfg->insecure_no_verify) {
    if (SSL_CTX_set_default_verify_paths(sc) != 1) {
      snprintf(err, errlen, "the system trust store could not be loaded (%s)", last_reason());
      return 0;
    }
  }
  int mode = SSL_VERIFY_NONE;
  if (server) {
    if (cfg->cert_reqs == WS_TLS_CERT_OPTIONAL) mode = SSL_VERIFY_PEER;
    if (cfg->cert_reqs == WS_TLS_CERT_REQUIRED)
      mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  } else if (!cfg->insecure_no_verify) {
    mode = SSL_VERIFY_PEER;
  }
  SSL_CTX_set_verify(sc, mode, NULL);
  return 1;
}

ws_tls_ctx *ws_tls_ctx_new(const ws_tls_config *cfg, char *err, size_t errlen) {
  char dummy[1];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = 0;
  if (cfg == NULL || cfg->role > WS_TLS_CLIENT) {
    snprintf(err, errlen, "the TLS role must be server (0) or client (1)");
    return NULL;
  }
  ws_tls_ctx *c = calloc(1, sizeof *c);
  if (c == NULL) {
    snprintf(err, errlen, "out of memory for the TLS context");
    return NULL;
  }
  atomic_init(&c->refs, 1);
  c->role = cfg->role;
  c->insecure = cfg->role == WS_TLS_CLIENT && cfg->insecure_no_verify;
  ERR_clear_error();
  c->ssl_ctx = SSL_CTX_new(cfg->role == WS_TLS_SERVER ? TLS_server_method() : TLS_client_method());
  c->bio_method = BIO_meth_new(WS_TLS_BIO_TYPE, "wsuv");
  if (c->ssl_ctx == NULL || c->bio_method == NULL) {
    snprintf(err, errlen, "OpenSSL could not make a TLS context (%s)", last_reason());
    ws_tls_ctx_free(c);
    return NULL;
  }
  BIO_meth_set_write(c->bio_method, bio_write);
  BIO_meth_set_read(c->bio_method, bio_read);
  BIO_meth_set_ctrl(c->bio_method, bio_ctrl);
  BIO_meth_set_create(c->bio_method, bio_create);
  if (!setup(c, cfg, err, errlen)) {
    ERR_clear_error();
    ws_tls_ctx_free(c);
    return NULL;
  }
  ERR_clear_error();
  return c;
}

ws_tls_ctx *ws_tls_ctx_ref(ws_tls_ctx *c) {
  atomic_fetch_add(&c->refs, 1);
  return c;
}

void ws_tls_ctx_free(ws_tls_ctx *c) {
  if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1) return; /* a connection still uses it */
  SSL_CTX_free(c->ssl_ctx);
  if (c->bio_method) BIO_meth_free(c->bio_method);
  free(c);
}

int ws_tls_ctx_role(const ws_tls_ctx *c) { return c->role; }

/* ---- connections --------------------------------------------------------- */

static int is_ip(const char *host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

ws_tls *ws_tls_new(ws_tls_ctx *ctx, const char *host) {
  if (ctx == NULL) return NULL;
  int client = ctx->role == WS_TLS_CLIENT;
  if (client && !ctx->insecure && (host == NULL || host[0] == 0)) return NULL;
  ws_tls *t = calloc(1, sizeof *t);
  if (t == NULL) return NULL;
  t->ctx = ctx;
  atomic_fetch_add(&ctx->refs, 1); /* given back by ws_tls_free */
  t->reason = "";
  ERR_clear_error();
  t->ssl = SSL_new(ctx->ssl_ctx);
  BIO *b = t->ssl ? BIO_new(ctx->bio_method) : NULL;
  if (b == NULL) goto fail;
  BIO_set_data(b, t);
  SSL_set_bio(t->ssl, b, b); /* one reference, owned by the SSL */
  if (client) {
    SSL_set_connect_state(t->ssl);
    if (SSL_set_alpn_protos(t->ssl, ALPN, (unsigned)ALPN_LEN) != 0) goto fail;
    if (host && host[0]) {
      char lit[64];
      const char *name = host;
      size_t n = strlen(host);
      if (host[0] == '[' && n > 2 && n < sizeof lit && host[n - 1] == ']') {
        memcpy(lit, host + 1, n - 2);
        lit[n - 2] = 0;
        name = lit;
      }
      if (is_ip(name)) {
        if (!ctx->insecure &&
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) != 1)
          goto fail;
      } else {
        if (SSL_set_tlsext_host_name(t->ssl, name) != 1) goto fail;
        if (!ctx->insecure) {
          SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
          if (SSL_set1_host(t->ssl, name) != 1) goto fail;
        }
      }
    }
  } else {
    SSL_set_accept_state(t->ssl);
  }
  return t;
fail:
  ERR_clear_error();
  ws_tls_free(t);
  return NULL;
}

void ws_tls_free(ws_tls *t) {
  if (t == NULL) return;
  SSL_free(t->ssl);
  free(t->kept);
  free(t->out);
  free(t->pend);
  ws_tls_ctx *ctx = t->ctx;
  free(t);
  ws_tls_ctx_free(ctx); /* its reference: the last one frees the context */
}

/* Records why the connection failed, from the verify result or OpenSSL's
 * error queue, and empties the queue (it is per thread, shared by all). */
static int fail(ws_tls *t) {
  if (t->nomem) {
    t->reason = "out of memory";
    t->failed = 1;
    ERR_clear_error();
    return WS_TLS_NOMEM;
  }
  unsigned long e = ERR_peek_last_error();
  long v = SSL_get_verify_result(t->ssl);
  if (v != X509_V_OK && !t->ctx->insecure &&
      (e == 0 || ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED))
    t->reason = X509_verify_cert_error_string(v);
  else if (e != 0 && ERR_reason_error_string(e) != NULL)
    t->reason = ERR_reason_error_string(e);
  else
    t->reason = "the TLS connection failed";
  t->failed = 1;
  ERR_clear_error();
  return WS_TLS_ERR;
}

int ws_tls_start(ws_tls *t) {
  if (t->failed) return WS_TLS_ERR;
  if (t->ctx->role != WS_TLS_CLIENT) return WS_TLS_OK;
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) return WS_TLS_OK;
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ && !t->nomem) return WS_TLS_OK;
  return fail(t);
}

int ws_tls_stash(ws_tls *t) {
  if (t->in_len == 0) return WS_TLS_OK;
  size_t rest = t->kept_len - t->kept_off;
  char *p = malloc(rest + t->in_len);
  if (p == NULL) return WS_TLS_NOMEM;
  if (rest) memcpy(p, t->kept + t->kept_off, rest);
  memcpy(p + rest, t->in, t->in_len);
  free(t->kept);
  t->kept = p;
  t->kept_len = rest + t->in_len;
  t->kept_off = 0;
  t->in = NULL;
  t->in_len = 0;
  return WS_TLS_OK;
}

void ws_tls_discard_input(ws_tls *t) {
  t->in = NULL;
  t->in_len = 0;
  free(t->kept);
  t->kept = NULL;
  t->kept_len = t->kept_off = 0;
}

int ws_tls_feed(ws_tls *t, const char *data, size_t len) {
  if (t->in_len > 0 && ws_tls_stash(t) != WS_TLS_OK) return WS_TLS_NOMEM;
  if (len == 0) return WS_TLS_OK;
  if (t->kept_len > t->kept_off) {
    /* Order matters: what was kept comes first, so this joins it. */
    t->in = data;
    t->in_len = len;
    return ws_tls_stash(t);
  }
  t->in = data;
  t->in_len = len;
  return WS_TLS_OK;
}

static int write_now(ws_tls *t, const char *data, size_t len) {
  while (len > 0) {
    int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
    ERR_clear_error();
    int r = SSL_write(t->ssl, data, n);
    if (r <= 0) return fail(t);
    data += r;
    len -= (size_t)r;
  }
  return WS_TLS_OK;
}

/* The handshake just completed: what was written before goes now. */
static int flush_pending(ws_tls *t) {
  if (t->pend_len == 0) return WS_TLS_OK;
  char *p = t->pend;
  size_t n = t->pend_len;
  t->pend = NULL;
  t->pend_len = 0;
  int r = write_now(t, p, n);
  free(p);
  return r;
}

long ws_tls_read(ws_tls *t, char *out, size_t cap) {
  if (t->failed) return WS_TLS_ERR;
  if (t->eof) return WS_TLS_EOF;
  size_t n = 0;
  while (n < cap) {
    size_t room = cap - n;
    int want = room > (size_t)INT_MAX ? INT_MAX : (int)room;
    ERR_clear_error();
    int r = SSL_read(t->ssl, out + n, want);
    /* Read before any other call on t: it looks at the error queue. */
    int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_ZERO_RETURN) {
      if (n > 0) {
        /* Hand over what came before the failure; the failure is next. */
        fail(t);
        return (long)n;
      }
      return fail(t);
    }
    if (t->pend_len && SSL_is_init_finished(t->ssl)) {
      int w = flush_pending(t);
      if (w != WS_TLS_OK) return w;
    }
    if (r > 0) {
      n += (size_t)r;
      continue;
    }
    if (e == SSL_ERROR_WANT_READ && !t->nomem) {
      if (t->in_len > 0 || t->kept_len > t->kept_off) continue; /* not stuck: more to read */
      break;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      t->eof = 1;
      ERR_clear_error();
      if (n > 0) return (long)n;
      return WS_TLS_EOF;
    }
    return fail(t); /* out of memory in the BIO */
  }
  return (long)n;
}

int ws_tls_write(ws_tls *t, const char *data, size_t len) {
  ws_tls_iov v = {data, len};
  return ws_tls_writev(t, &v, 1);
}

int ws_tls_writev(ws_tls *t, const ws_tls_iov *iov, size_t n) {
  if (t->failed || t->closed) return WS_TLS_ERR;
  if (!SSL_is_init_finished(t->ssl)) {
    size_t total = t->pend_len;
    for (size_t i = 0; i < n; i++) total += iov[i].len;
    char *p = realloc(t->pend, total ? total : 1);
    if (p == NULL) return WS_TLS_NOMEM;
    t->pend = p;
    for (size_t i = 0; i < n; i++) {
      if (iov[i].len) memcpy(p + t->pend_len, iov[i].base, iov[i].len);
      t->pend_len += iov[i].len;
    }
    return WS_TLS_OK;
  }
  if (n == 1) return write_now(t, iov[0].base, iov[0].len);
  char rec[RECORD_MAX];
  size_t fill = 0;
  for (size_t i = 0; i < n; i++) {
    const char *p = iov[i].base;
    size_t left = iov[i].len;
    while (left > 0) {
      if (fill == 0 && left >= RECORD_MAX) {
        /* Whole records straight from the piece; its tail is gathered. */
        size_t whole = left - left % RECORD_MAX;
        int r = write_now(t, p, whole);
        if (r != WS_TLS_OK) return r;
        p += whole;
        left -= whole;
        continue;
      }
      size_t take = RECORD_MAX - fill < left ? RECORD_MAX - fill : left;
      memcpy(rec + fill, p, take);
      fill += take;
      p += take;
      left -= take;
      if (fill == RECORD_MAX) {
        int r = write_now(t, rec, fill);
        if (r != WS_TLS_OK) return r;
        fill = 0;
      }
    }
  }
  return fill ? write_now(t, rec, fill) : WS_TLS_OK;
}

const char *ws_tls_out(ws_tls *t, size_t *len) {
  size_t n = t->out_len - t->out_off;
  *len = n;
  return n ? t->out + t->out_off : NULL;
}

void ws_tls_out_done(ws_tls *t, size_t n) {
  size_t have = t->out_len - t->out_off;
  t->out_off += n < have ? n : have;
  if (t->out_off == t->out_len) {
    free(t->out);
    t->out = NULL;
    t->out_len = t->out_off = t->out_cap = 0;
  }
}

int ws_tls_close(ws_tls *t) {
  if (t->closed) return WS_TLS_OK;
  if (t->failed) return WS_TLS_ERR;
  t->closed = 1;
  if (!SSL_is_init_finished(t->ssl)) return WS_TLS_OK; /* nothing to protect yet */
  ERR_clear_error();
  int r = SSL_shutdown(t->ssl);
  if (r < 0 && SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ) return fail(t);
  ERR_clear_error();
  return WS_TLS_OK;
}

int ws_tls_handshake_done(const ws_tls *t) { return SSL_is_init_finished(t->ssl) ? 1 : 0; }

int ws_tls_failed(const ws_tls *t) { return t->failed || t->eof; }

const char *ws_tls_error(const ws_tls *t) { return t->reason ? t->reason : ""; }

int ws_tls_verify_error(const ws_tls *t) {
  switch (SSL_get_verify_result(t->ssl)) {
  case X509_V_OK:
    return WS_TLS_VERIFY_OK;
  case X509_V_ERR_CERT_HAS_EXPIRED:
  case X509_V_ERR_CERT_NOT_YET_VALID:
    return WS_TLS_VERIFY_EXPIRED;
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_CERT_UNTRUSTED:
    return WS_TLS_VERIFY_UNKNOWN_ISSUER;
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
    return WS_TLS_VERIFY_HOSTNAME_MISMATCH;
  default:
    return WS_TLS_VERIFY_OTHER;
  }
}

const char *ws_tls_sni(const ws_tls *t) {
  if (t->ctx->role != WS_TLS_SERVER) return NULL;
  return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *ws_tls_alpn(const ws_tls *t, size_t *len) {
  const unsigned char *p = NULL;
  unsigned n = 0;
  SSL_get0_alpn_selected(t->ssl, &p, &n);
  *len = p ? n : 0;
  return p ? (const char *)p : NULL;
}

const char *ws_tls_version(const ws_tls *t) {
  if (!SSL_is_init_finished(t->ssl)) return NULL;
  return SSL_get_version(t->ssl);
}

int ws_tls_peer_verified(const ws_tls *t) {
  X509 *peer = SSL_get0_peer_certificate(t->ssl);
  return peer != NULL && SSL_get_verify_result(t->ssl) == X509_V_OK;
}
