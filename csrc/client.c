/* client.c - client connections on a ws_server's loop. See client.h.
 *
 * The connection is an ordinary ws_server_conn in PH_HANDSHAKE with c->cl
 * set: srv_read.c sends its reads, EOF and open timeout here until the 101 is
 * read, then everything runs through the transport's paths (start_engine picks
 * the client role). What is here: resolving, connecting, the request, the
 * response, and the one report of a failure before open.
 */
#include "server_int.h"

#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

/* A resolution in flight: libuv owns it until its callback, which may come
 * after the connection is gone (then conn is NULL). */
typedef struct resolve_req {
  uv_getaddrinfo_t req;
  ws_server_conn *conn;
  uint16_t port;
} resolve_req;

struct ws_client_state {
  ws_client_hs *hs;      /* request offers, then the response (owned) */
  uv_connect_t connect;
  resolve_req *gai;      /* while resolving (libuv's until its callback) */
  struct addrinfo *addrs; /* the resolved addresses (owned) */
  struct addrinfo *next_addr; /* the next one to try when a connect fails */
  uint16_t port;
  ws_tls_ctx *tls_ctx;   /* wss://: the context (a reference of ours) */
  char *tls_host;        /* the name or IP literal the certificate must match (owned) */
  char *request;         /* the upgrade request, until it is written (owned) */
  size_t request_len;
  int err;               /* what on_connect_failed will say */
  const char *tls_why;   /* static: a TLS failure the layer did not see (or NULL) */
  uint8_t reported;      /* on_connect_failed was called (or is not owed) */
  uint8_t offered_deflate;
  uint8_t want_control;   /* o->want_control */
};

void ws_client_options_default(ws_client_options *o) {
  memset(o, 0, sizeof *o);
  o->compression = 1;
}

const char *ws_client_strerror(int err) {
  switch (err) {
  case WS_CLIENT_REFUSED: return "the server refused the WebSocket handshake";
  case WS_CLIENT_INVALID: return "the server's handshake response is invalid";
  case WS_CLIENT_BAD_EXTENSIONS:
    return "the server's Sec-WebSocket-Extensions answer does not fit our offer";
  case WS_CLIENT_TLS: return "the TLS handshake failed";
  case WS_CLIENT_E_ARGS: return "a client needs a host and a port, or a unix socket path";
  case WS_CLIENT_E_REQUEST: return "the upgrade request could not be built";
  case WS_CLIENT_E_NOMEM: return "out of memory";
  case WS_CLIENT_E_STOPPING: return "the server is stopping";
  default: return err < 0 ? uv_strerror(err) : "unknown client error";
  }
}

const ws_client_hs *ws_client_conn_response(const ws_server_conn *c) {
  return c->cl ? c->cl->hs : NULL;
}

int ws_client_conn_is_client(const ws_server_conn *c) { return c->cl != NULL; }

const char *ws_client_conn_tls_error(const ws_server_conn *c, int *verify) {
  if (verify) *verify = c->tls ? ws_tls_verify_error(c->tls) : WS_TLS_VERIFY_OK;
  if (!c->tls) return "";
  if (c->cl && c->cl->tls_why) return c->cl->tls_why;
  const char *why = ws_tls_error(c->tls);
  if (why[0]) return why;
  return ws_tls_handshake_done(c->tls) ? "" : "the server closed the connection during the "
                                              "TLS handshake";
}

/* ---------- failure ---------- */

static void client_fail(ws_server_conn *c, int err) {
  c->cl->err = err;
  ws_srv_conn_destroy(c); /* reports through ws_client_int_gone */
}

void ws_client_int_gone(ws_server_conn *c) {
  struct ws_client_state *cl = c->cl;
  if (cl->gai) { /* its callback frees it */
    cl->gai->conn = NULL;
    uv_cancel((uv_req_t *)&cl->gai->req);
    cl->gai = NULL;
  }
  if (cl->reported) return;
  cl->reported = 1;
  ws_server *s = c->server;
  if (s->finished || !s->cb.on_connect_failed) return; /* being freed: no callbacks */
  int err = cl->err;
  /* srv_tls.c ends a connection whose TLS failed without telling us why:
   * the layer knows. (With TLS 1.3 a server refuses our certificate after
   * our side of the handshake is done, so this is not only the handshake.) */
  if (!err && c->tls && ws_tls_failed(c->tls)) err = WS_CLIENT_TLS;
  if (!err) err = UV_ECANCELED;
  /* Inside an application callback (a stop from it) the report waits for
   * it to return, like on_close. */
  ws_srv_report_connect_failed(s, c, err);
}

void ws_client_int_report_failed(ws_server *s, ws_server_conn *c, int err) {
  const ws_client_hs *hs = err > 0 && err != WS_CLIENT_TLS ? c->cl->hs : NULL;
  s->cb.on_connect_failed(s, c, err, hs);
}

void ws_client_int_free(struct ws_client_state *cl) {
  uv_freeaddrinfo(cl->addrs);
  ws_client_hs_free(cl->hs);
  free(cl->tls_host);
  ws_tls_ctx_free(cl->tls_ctx); /* our reference (NULL without TLS) */
  free(cl->request);
  free(cl);
}

void ws_client_int_timeout(ws_server_conn *c) { client_fail(c, UV_ETIMEDOUT); }

int ws_client_cancel(ws_server_conn *c) {
  if (!c->cl || c->phase != PH_HANDSHAKE) return -1;
  client_fail(c, UV_ECANCELED);
  return 0;
}

void ws_client_int_mask_key(ws_conn *e, uint8_t key[4]) {
  ws_server_conn *c = e->data;
  /* The pool falls back to /dev/urandom; if the OS refuses both, the key is
   * zero (the frame stays valid; only its unpredictability is lost). */
  if (ws_csprng_mask_key(c->server->csprng, key) != 0) memset(key, 0, 4);
}

/* ---------- the response ---------- */

void ws_client_int_read(ws_server_conn *c, char *data, size_t len) {
  struct ws_client_state *cl = c->cl;
  ws_server *s = c->server;
  size_t used = 0;
  int st = ws_client_hs_execute(cl->hs, data, len, &used);
  if (st == WS_CLIENT_HS_NEED_MORE) return;
  if (st == WS_CLIENT_HS_REFUSED) {
    client_fail(c, WS_CLIENT_REFUSED);
    return;
  }
  if (st != WS_CLIENT_HS_OPEN) {
    client_fail(c, WS_CLIENT_INVALID);
    return;
  }
  if (cl->offered_deflate) {
    size_t elen = 0;
    const char *ext = ws_client_hs_extensions(cl->hs, &elen);
    int r = ws_pmd_client_accept(&s->cfg.pmd, ext ? ext : "", ext ? elen : 0, &c->pmd_params);
    if (r < 0) {
      client_fail(c, WS_CLIENT_BAD_EXTENSIONS);
      return;
    }
    c->pmd_on = r == 1;
  }
  cl->reported = 1; /* from here on, on_close is the report */
  ws_srv_start_engine(c);
  if (cl->want_control) c->ws.want_control = 1;
  /* The server's first frames may have come with its 101. */
  if (used < len && c->phase == PH_OPEN) ws_conn_feed(&c->ws, (uint8_t *)data + used, len - used);
  if (c->phase == PH_OPEN) ws_srv_pmd_note(c);
}

void ws_client_int_read_end(ws_server_conn *c, int err) {
  if (c->tls && !ws_tls_handshake_done(c->tls)) {
    client_fail(c, WS_CLIENT_TLS); /* EOF or a reset before TLS was up */
    return;
  }
  size_t got = 0;
  ws_client_hs_buffer(c->cl->hs, &got);
  if (c->tls && got == 0 && !ws_tls_failed(c->tls)) {
    /* TLS 1.3: the server checks our certificate after our side of the
     * handshake has finished; a server that refuses it and hangs up without
     * sending its alert looks like this. */
    c->cl->tls_why = "the server ended the connection right after the TLS handshake, "
                     "before any HTTP response (did it refuse our client certificate?)";
    client_fail(c, WS_CLIENT_TLS);
    return;
  }
  if (err != UV_EOF) {
    client_fail(c, err);
    return;
  }
  int st = ws_client_hs_eof(c->cl->hs);
  client_fail(c, st == WS_CLIENT_HS_REFUSED ? WS_CLIENT_REFUSED : WS_CLIENT_INVALID);
}

/* ---------- connecting ---------- */

static void on_retry_closed(uv_handle_t *h);

static void on_connected(uv_connect_t *req, int status) {
  ws_server_conn *c = req->data;
  if (status == UV_ECANCELED || c->phase != PH_HANDSHAKE) return; /* being destroyed */
  if (status < 0 && !c->is_pipe && c->cl->next_addr) {
    /* The name has more addresses: a fresh socket for the next one. */
    uv_close(&c->h.handle, on_retry_closed);
    return;
  }
  if (status < 0) {
    client_fail(c, status);
    return;
  }
  ws_server *s = c->server;
  if (!c->is_pipe) {
    if (s->cfg.tcp_nodelay) uv_tcp_nodelay(&c->h.tcp, 1);
    if (s->cfg.tcp_keepalive > 0) uv_tcp_keepalive(&c->h.tcp, 1, (unsigned)s->cfg.tcp_keepalive);
  }
  struct ws_client_state *cl = c->cl;
  if (uv_read_start(&c->h.stream, ws_srv_on_alloc, ws_srv_on_read) != 0) {
    client_fail(c, UV_EIO);
    return;
  }
  c->reading = 1;
  if (cl->tls_ctx && !c->is_pipe) {
    /* wss://: the ClientHello goes now; the request below is kept by the
     * layer and leaves encrypted once the handshake completes. */
    ws_tls *t = ws_tls_new(cl->tls_ctx, cl->tls_host);
    if (!t) {
      client_fail(c, WS_CLIENT_E_NOMEM);
      return;
    }
    if (ws_srv_tls_attach(c, t) != 0) { /* c owns t from here */
      if (c->phase == PH_HANDSHAKE) client_fail(c, WS_CLIENT_TLS);
      return;
    }
    if (c->phase != PH_HANDSHAKE) return;
  }
  ws_srv_conn_write_raw(c, cl->request, cl->request_len); /* what is not taken is copied */
  free(cl->request);
  cl->request = NULL;
  ws_srv_loop_touched(s->loop);
}

static int start_tcp_connect(ws_server_conn *c, const struct sockaddr *addr) {
  c->cl->connect.data = c;
  int r = uv_tcp_connect(&c->cl->connect, &c->h.tcp, addr, on_connected);
  if (r == 0) ws_srv_loop_touched(c->server->loop);
  return r;
}

/* Connects to the next resolved address (in the resolver's order); a
 * synchronous failure moves on to the one after. 0, or the last error. */
static int connect_next(ws_server_conn *c) {
  struct ws_client_state *cl = c->cl;
  int r = UV_EAI_NONAME;
  while (cl->next_addr) {
    struct addrinfo *ai = cl->next_addr;
    cl->next_addr = ai->ai_next;
    struct sockaddr_storage ss;
    if (ai->ai_addrlen > sizeof ss || (ai->ai_family != AF_INET && ai->ai_family != AF_INET6))
      continue;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (ss.ss_family == AF_INET6) ((struct sockaddr_in6 *)&ss)->sin6_port = htons(cl->port);
    else ((struct sockaddr_in *)&ss)->sin_port = htons(cl->port);
    r = start_tcp_connect(c, (const struct sockaddr *)&ss);
    if (r == 0) return 0;
  }
  return r;
}

/* The failed socket is closed: open a fresh one for the next address, unless
 * the connection was destroyed meanwhile (conn_destroy leaves a closing
 * stream alone; its close is counted here). */
static void on_retry_closed(uv_handle_t *h) {
  ws_server_conn *c = h->data;
  if (c->phase == PH_CLOSED) {
    ws_srv_on_conn_handle_closed(h);
    return;
  }
  int r = uv_tcp_init(&c->server->loop->uv, &c->h.tcp);
  if (r == 0) {
    c->h.handle.data = c;
    r = connect_next(c);
    if (r == 0) return;
    client_fail(c, r);
    return;
  }
  c->handles_open--; /* the stream stays closed: conn_destroy skips it */
  client_fail(c, r);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  resolve_req *rr = (resolve_req *)req;
  ws_server_conn *c = rr->conn;
  uint16_t port = rr->port;
  free(rr);
  if (!c) { /* the connection went first */
    uv_freeaddrinfo(res);
    return;
  }
  struct ws_client_state *cl = c->cl;
  cl->gai = NULL;
  if (status < 0 || !res) {
    uv_freeaddrinfo(res);
    client_fail(c, status < 0 ? status : UV_EAI_NONAME);
    return;
  }
  cl->addrs = cl->next_addr = res;
  cl->port = port;
  int r = connect_next(c);
  if (r != 0) client_fail(c, r);
}

/* Builds the request into cl (with a fresh nonce): 0 or an error. */
static int build_request(ws_server *s, struct ws_client_state *cl, const ws_client_options *o,
                         long *request_error) {
  ws_client_hs_options ho;
  memset(&ho, 0, sizeof ho);
  if (o->host && o->host_len) {
    ho.host = o->host;
    ho.host_len = o->host_len;
  } else {
    ho.host = "localhost";
    ho.host_len = 9;
  }
  ho.port = o->unix_path ? 0 : o->port;
  ho.target = o->target;
  ho.target_len = o->target_len;
  ho.origin = o->origin;
  ho.origin_len = o->origin_len;
  ho.subprotocols = o->subprotocols;
  ho.subprotocol_count = o->subprotocol_count;
  ho.headers = o->headers;
  ho.header_count = o->header_count;
  char offer[WS_PMD_HEADER_MAX];
  if (o->compression) {
    size_t n = ws_pmd_client_offer(&s->cfg.pmd, offer, sizeof offer);
    if (n) {
      ho.extensions = offer;
      ho.extensions_len = n;
      cl->offered_deflate = 1;
    }
  }
  long size = ws_client_hs_request_size(&ho);
  if (size < 0) {
    if (request_error) *request_error = size;
    return WS_CLIENT_E_REQUEST;
  }
  uint8_t key[WS_CLIENT_HS_KEY_BYTES];
  int r = ws_csprng_bytes(s->csprng, key, sizeof key);
  if (r != 0) return r; /* a negative errno: libuv's codes on Unix */
  cl->request = malloc((size_t)size);
  if (!cl->request) return WS_CLIENT_E_NOMEM;
  long n = ws_client_hs_request(cl->hs, &ho, key, cl->request, (size_t)size);
  memset(key, 0, sizeof key);
  if (n < 0) {
    if (request_error) *request_error = n;
    return n == WS_CLIENT_HS_E_NOMEM ? WS_CLIENT_E_NOMEM : WS_CLIENT_E_REQUEST;
  }
  cl->request_len = (size_t)n;
  return 0;
}

int ws_client_connect(ws_server *s, const ws_client_options *o, ws_server_conn **out,
                      long *request_error) {
  if (s->finished || s->stopping) return WS_CLIENT_E_STOPPING;
  if (!o->unix_path && (!o->host || !o->host_len || !o->port)) return WS_CLIENT_E_ARGS;
  if (!s->csprng && !(s->csprng = ws_csprng_new(0))) return WS_CLIENT_E_NOMEM;
  struct ws_client_state *cl = calloc(1, sizeof *cl);
  if (!cl) return WS_CLIENT_E_NOMEM;
  cl->hs = ws_client_hs_new(&o->limits);
  if (!cl->hs) {
    free(cl);
    return WS_CLIENT_E_NOMEM;
  }
  int r = build_request(s, cl, o, request_error);
  /* The name to resolve, NUL-terminated, without IPv6 brackets. */
  char *name = NULL;
  if (r == 0 && !o->unix_path) {
    const char *h = o->host;
    size_t hl = o->host_len;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
      h++;
      hl -= 2;
    }
    if (!(name = malloc(hl + 1))) r = WS_CLIENT_E_NOMEM;
    else {
      memcpy(name, h, hl);
      name[hl] = 0;
    }
  }
  if (r == 0 && o->tls && !o->unix_path) {
    if (ws_tls_ctx_role(o->tls) != WS_TLS_CLIENT) r = WS_CLIENT_E_ARGS;
    else if (!(cl->tls_host = strdup(name))) r = WS_CLIENT_E_NOMEM;
    else cl->tls_ctx = ws_tls_ctx_ref(o->tls);
  }
  ws_server_conn *c = r == 0 ? calloc(1, sizeof *c) : NULL;
  if (r == 0 && !c) r = WS_CLIENT_E_NOMEM;
  if (r == 0) {
    c->is_pipe = o->unix_path != NULL;
    r = c->is_pipe ? uv_pipe_init(&s->loop->uv, &c->h.pipe, 0) : uv_tcp_init(&s->loop->uv, &c->h.tcp);
    if (r != 0) {
      free(c);
      c = NULL;
    }
  }
  if (r != 0) {
    free(name);
    ws_client_int_free(cl);
    return r;
  }
  c->server = s;
  c->cl = cl;
  cl->want_control = o->want_control != 0;
  uv_timer_init(&s->loop->uv, &c->timer);
  c->h.handle.data = c;
  c->timer.data = c;
  c->handles_open = 2;
  ws_srv_conn_link(s, c);
  c->phase = PH_HANDSHAKE;
  uv_update_time(&s->loop->uv);
  c->started_ms = uv_now(&s->loop->uv);
  if (c->is_pipe) {
    cl->connect.data = c;
    uv_pipe_connect(&cl->connect, &c->h.pipe, o->unix_path, on_connected);
    ws_srv_loop_touched(s->loop);
  } else {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(name, o->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(name, o->port, (struct sockaddr_in6 *)&ss) == 0) {
      r = start_tcp_connect(c, (const struct sockaddr *)&ss);
    } else {
      resolve_req *rr = calloc(1, sizeof *rr);
      if (!rr) r = WS_CLIENT_E_NOMEM;
      else {
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        rr->conn = c;
        rr->port = o->port;
        r = uv_getaddrinfo(&s->loop->uv, &rr->req, on_resolved, name, NULL, &hints);
        if (r != 0) free(rr);
        else cl->gai = rr;
      }
    }
    free(name);
    if (r != 0) {
      cl->reported = 1; /* the caller hears of it from the return value */
      ws_srv_conn_destroy(c);
      return r;
    }
  }
  ws_srv_arm_timer(c);
  *out = c;
  return 0;
}
