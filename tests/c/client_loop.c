/* client_loop.c - one ws_server that listens and dials itself, for running
 * under valgrind (make memcheck): client connections and accepted ones on
 * the same loop, through the real transport (server.c and its files, client.c, libuv).
 *
 * The server listens on 127.0.0.1:0 and opens:
 *   - OK_CLIENTS client connections to itself (numeric host; a quarter by
 *     the name "localhost", a quarter by "two.test", whose first address
 *     refuses; half offer permessage-deflate, which the
 *     server accepts): each sends MSGS messages (text and binary, 0 B to
 *     100 KiB, some over the deflate threshold), the accepted side echoes
 *     them, the client checks every echo and closes with 1000 (or, for every
 *     third one, asks the server to close with 4000);
 *   - one to target "/reject", which on_request refuses with 403 + body:
 *     on_connect_failed(WS_CLIENT_REFUSED) with status 403 and the body;
 *   - one to a port nothing listens on: on_connect_failed(UV_ECONNREFUSED),
 *     and one by "two.test" to it (both addresses refuse: the same);
 *   - one to "no-such-host.invalid": on_connect_failed(a UV_EAI_* error);
 * and, before that, a second server freed with a resolution and a connect
 * in flight (no callback may come, nothing may leak).
 * When every outcome is in, a graceful stop; the program checks the counts
 * (every open client got on_close once, with the expected code, on both
 * sides) and exits 0 when everything matched. Valgrind checks the rest:
 * every allocation (client state, resolution, request, response) freed.
 *
 * With a certificate and its key (client_loop cert.pem key.pem; the
 * certificate for localhost, two.test and 127.0.0.1, self-signed), the same
 * runs over TLS: the server speaks it on its listener, every client dials
 * wss:// trusting that certificate (SNI and name checks on the way), and one
 * more client, trusting only the system store, must fail with WS_CLIENT_TLS
 * and an unknown issuer.
 *
 * Usage: client_loop [cert.pem key.pem]
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "client.h"
#include "server.h"
#include "srv_tls.h"
#include "tls.h"
#include "wsframe.h"

/* The resolver, interposed (libuv calls getaddrinfo from its thread pool):
 * "two.test" has two addresses, 127.0.0.2 first (nothing listens there: the
 * server is on 127.0.0.1 only) then 127.0.0.1, so a client must move on to
 * the second. Both lists come from the real getaddrinfo, chained, so the
 * real freeaddrinfo frees them. Other names go to the real one. */
typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
  gai_fn real = (gai_fn)(uintptr_t)dlsym(RTLD_NEXT, "getaddrinfo");
  if (!real) return EAI_SYSTEM;
  if (!node || strcmp(node, "two.test") != 0) return real(node, service, hints, res);
  struct addrinfo h;
  memset(&h, 0, sizeof h);
  h.ai_family = AF_INET;
  h.ai_socktype = SOCK_STREAM;
  h.ai_flags = AI_NUMERICHOST;
  struct addrinfo *first = NULL, *second = NULL;
  int r = real("127.0.0.2", service, &h, &first);
  if (r != 0) return r;
  r = real("127.0.0.1", service, &h, &second);
  if (r != 0) {
    freeaddrinfo(first);
    return r;
  }
  struct addrinfo *tail = first;
  while (tail->ai_next) tail = tail->ai_next;
  tail->ai_next = second;
  *res = first;
  return 0;
}

#define OK_CLIENTS 12
#define MSGS 6

typedef struct peer {
  int is_client;
  int index;      /* client number, or -1 for an accepted connection */
  int received;   /* echoes checked */
  int closed;     /* on_close count */
  unsigned code;  /* the code on_close reported */
} peer;

typedef struct app {
  int port;
  peer clients[OK_CLIENTS];
  int accepted_closed;
  int accepted_4000;
  int refused_403, refused_conn, dns_failed, tls_refused;
  ws_tls_ctx *tls;           /* wss:// clients trust the test certificate (or NULL: ws://) */
  int deflated;   /* clients that negotiated permessage-deflate */
  int failures;   /* mismatches */
  int outcomes;   /* clients (ok and failing) whose story is over */
} app;

#define EXPECTED_OUTCOMES (OK_CLIENTS + 4)
/* Over TLS, one more: the client that trusts only the system store. */
#define EXPECTED(a) (EXPECTED_OUTCOMES + ((a)->tls != NULL))

static void fail(app *a, const char *what) {
  fprintf(stderr, "client_loop: %s\n", what);
  a->failures++;
}

static size_t msg_len(int i) {
  static const size_t lens[MSGS] = {0, 1, 125, 4096, 70000, 100 * 1024};
  return lens[i % MSGS];
}

/* Deterministic payload of message i of client k. */
static void fill(char *buf, size_t len, int k, int i) {
  for (size_t j = 0; j < len; j++) buf[j] = (char)('a' + (j * 7 + (size_t)k * 3 + (size_t)i) % 26);
}

static void done_one(ws_server *s, app *a) {
  if (++a->outcomes == EXPECTED(a)) ws_server_stop(s, 1);
}

static void send_next(ws_server_conn *c, peer *p) {
  size_t len = msg_len(p->received);
  char *buf = malloc(len ? len : 1);
  if (!buf) return;
  fill(buf, len, p->index, p->received);
  unsigned op = p->received % 2 ? WS_OP_BINARY : WS_OP_TEXT;
  ws_server_conn_send(c, op, buf, len);
  free(buf);
}

static void on_request(ws_server *s, ws_server_conn *c, const ws_handshake *hs) {
  (void)s;
  size_t len = 0;
  const char *target = ws_handshake_target(hs, &len);
  if (len == 7 && memcmp(target, "/reject", 7) == 0) {
    static const char body[] = "members only";
    ws_server_conn_reject(c, 403, body, sizeof body - 1, NULL, 0);
  }
}

static void on_open(ws_server *s, ws_server_conn *c) {
  app *a = ws_server_user(s);
  if (!ws_client_conn_is_client(c)) {
    static peer accepted = {0, -1, 0, 0, 0};
    ws_server_conn_set_user(c, &accepted);
    return;
  }
  peer *p = ws_server_conn_user(c);
  const ws_client_hs *hs = ws_client_conn_response(c);
  if (!hs || ws_client_hs_status_code(hs) != 101) fail(a, "open without a 101");
  size_t elen = 0;
  const char *ext = hs ? ws_client_hs_extensions(hs, &elen) : NULL;
  int deflate = ext && elen >= 18 && memcmp(ext, "permessage-deflate", 18) == 0;
  if (deflate != p->index % 2) fail(a, "deflate negotiated iff offered");
  else if (deflate) a->deflated++;
  send_next(c, p);
}

static void on_message(ws_server *s, ws_server_conn *c, unsigned opcode, const char *data,
                       size_t len) {
  app *a = ws_server_user(s);
  if (!ws_client_conn_is_client(c)) {
    if (len == 4 && memcmp(data, "4000", 4) == 0) ws_server_conn_close(c, 4000, "asked", 5);
    else ws_server_conn_send(c, opcode, data, len); /* the echo */
    return;
  }
  peer *p = ws_server_conn_user(c);
  size_t want = msg_len(p->received);
  unsigned wop = p->received % 2 ? WS_OP_BINARY : WS_OP_TEXT;
  char *buf = malloc(want ? want : 1);
  if (!buf) return;
  fill(buf, want, p->index, p->received);
  if (len != want || opcode != wop || memcmp(buf, data, len) != 0) fail(a, "echo differs");
  free(buf);
  if (++p->received < MSGS) {
    send_next(c, p);
  } else if (p->index % 3 == 0) {
    ws_server_conn_send(c, WS_OP_TEXT, "4000", 4);
  } else {
    ws_server_conn_close(c, 1000, "done", 4);
  }
}

static void on_close(ws_server *s, ws_server_conn *c, unsigned code, const char *reason,
                     size_t reason_len) {
  (void)reason;
  (void)reason_len;
  app *a = ws_server_user(s);
  if (!ws_client_conn_is_client(c)) {
    a->accepted_closed++;
    if (code == 4000) a->accepted_4000++;
    return;
  }
  peer *p = ws_server_conn_user(c);
  p->closed++;
  p->code = code;
  done_one(s, a);
}

static void on_connect_failed(ws_server *s, ws_server_conn *c, int err, const ws_client_hs *hs) {
  app *a = ws_server_user(s);
  intptr_t kind = (intptr_t)ws_server_conn_user(c);
  if (kind == 1) {
    size_t blen = 0;
    const char *body = hs ? ws_client_hs_body(hs, &blen) : NULL;
    if (err == WS_CLIENT_REFUSED && ws_client_hs_status_code(hs) == 403 && body && blen >= 12 &&
        memcmp(body, "members only", 12) == 0)
      a->refused_403++;
    else fail(a, "the /reject connection did not fail with 403 and its body");
  } else if (kind == 2) {
    if (err == UV_ECONNREFUSED && !hs) a->refused_conn++;
    else fail(a, "the closed port did not fail with ECONNREFUSED");
  } else if (kind == 3) {
    /* UV_EAI_NONAME here; a resolver without network may say EAI_AGAIN. */
    if (err < 0 && err != UV_ECANCELED && !hs) a->dns_failed++;
    else fail(a, "the .invalid name did not fail");
  } else if (kind == 5) {
    int verify = -1;
    const char *why = ws_client_conn_tls_error(c, &verify);
    if (err == WS_CLIENT_TLS && !hs && verify == WS_TLS_VERIFY_UNKNOWN_ISSUER && why[0])
      a->tls_refused++;
    else fail(a, "the client trusting only the system store did not fail verification");
  } else if (kind == 4) {
    fail(a, "on_connect_failed called while the server was being freed");
  } else {
    fail(a, "an OK client failed to connect");
    fprintf(stderr, "  err %d: %s\n", err, ws_client_strerror(err));
  }
  done_one(s, a);
}

static int dial(ws_server *s, const char *host, int port, const char *target, int compression,
                void *user, ws_tls_ctx *tls) {
  ws_client_options o;
  ws_client_options_default(&o);
  o.tls = tls;
  o.host = host;
  o.host_len = strlen(host);
  o.port = (uint16_t)port;
  o.target = target;
  o.target_len = strlen(target);
  o.compression = compression;
  ws_server_conn *c = NULL;
  long req_err = 0;
  int r = ws_client_connect(s, &o, &c, &req_err);
  if (r != 0) {
    fprintf(stderr, "client_loop: ws_client_connect: %s\n", ws_client_strerror(r));
    return r;
  }
  ws_server_conn_set_user(c, user);
  return 0;
}

/* ---------- a stop from inside a callback ----------
 * Client "open" dials "/", client "held" dials "/hold", whose decision the
 * server defers for ever. In open's on_open the application stops the server:
 * held's on_connect_failed (UV_ECANCELED) must come after on_open returns,
 * not from inside the stop (the same rule as on_close). */
typedef struct stop_app {
  int in_callback;  /* inside on_open2 */
  int failed;       /* on_connect_failed count */
  int nested;       /* ... of which inside on_open2 */
  int err;
  int opened;
} stop_app;

static void on_request2(ws_server *s, ws_server_conn *c, const ws_handshake *hs) {
  (void)s;
  size_t len = 0;
  const char *target = ws_handshake_target(hs, &len);
  if (len == 5 && memcmp(target, "/hold", 5) == 0) ws_server_conn_defer(c);
}

static void on_open2(ws_server *s, ws_server_conn *c) {
  stop_app *a = ws_server_user(s);
  if (!ws_client_conn_is_client(c)) return;
  a->opened++;
  a->in_callback = 1;
  ws_server_stop(s, 1);
  a->in_callback = 0;
}

static void on_connect_failed2(ws_server *s, ws_server_conn *c, int err, const ws_client_hs *hs) {
  (void)c;
  (void)hs;
  stop_app *a = ws_server_user(s);
  a->failed++;
  a->nested += a->in_callback;
  a->err = err;
}

static void on_cancel2(ws_server *s, ws_server_conn *c) {
  (void)s;
  (void)c;
}

/* 0 when held's failure was reported once, outside on_open2. */
static int stop_from_callback(void) {
  stop_app a;
  memset(&a, 0, sizeof a);
  ws_server_config cfg;
  ws_server_config_default(&cfg);
  cfg.handle_signals = 0;
  ws_server_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.on_request = on_request2;
  cb.on_open = on_open2;
  cb.on_connect_failed = on_connect_failed2;
  cb.on_cancel = on_cancel2;
  int port = 0;
  ws_server *s = ws_server_new(&cfg, &cb, &a);
  if (!s || ws_server_listen_tcp(s, "127.0.0.1", 0, &port) != 0) {
    ws_server_free(s);
    return 1;
  }
  /* held first: its request is in (and deferred) before open's 101 is read. */
  int bad = dial(s, "127.0.0.1", port, "/hold", 0, NULL, NULL);
  bad |= dial(s, "127.0.0.1", port, "/", 0, NULL, NULL);
  if (!bad) ws_server_run(s);
  ws_server_free(s);
  if (bad || a.opened != 1 || a.failed != 1 || a.nested != 0 || a.err != UV_ECANCELED) {
    fprintf(stderr, "client_loop: stop inside on_open: opened %d, on_connect_failed %d "
            "(%d inside the callback), err %d\n", a.opened, a.failed, a.nested, a.err);
    return 1;
  }
  return 0;
}

static ws_tls_ctx *tls_ctx(int role, const char *cert, const char *key, const char *ca) {
  ws_tls_config tc;
  ws_tls_config_default(&tc);
  tc.role = (uint8_t)role;
  tc.certfile = cert;
  tc.keyfile = key;
  tc.ca_file = ca;
  char err[WS_TLS_ERRBUF];
  ws_tls_ctx *ctx = ws_tls_ctx_new(&tc, err, sizeof err);
  if (!ctx) fprintf(stderr, "client_loop: %s\n", err);
  return ctx;
}

int main(int argc, char **argv) {
  app a;
  memset(&a, 0, sizeof a);
  ws_tls_ctx *untrusting = NULL;
  if (argc == 3) {
    a.tls = tls_ctx(WS_TLS_CLIENT, NULL, NULL, argv[1]);
    untrusting = tls_ctx(WS_TLS_CLIENT, NULL, NULL, NULL); /* the system store */
    if (!a.tls || !untrusting) return 1;
  } else if (argc != 1) {
    fprintf(stderr, "usage: client_loop [cert.pem key.pem]\n");
    return 2;
  }
  ws_server_config cfg;
  ws_server_config_default(&cfg);
  cfg.handle_signals = 0;
  cfg.pmd.threshold = 64;
  ws_server_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.on_request = on_request;
  cb.on_open = on_open;
  cb.on_message = on_message;
  cb.on_close = on_close;
  cb.on_connect_failed = on_connect_failed;
  ws_server *s = ws_server_new(&cfg, &cb, &a);
  if (s && a.tls) {
    ws_tls_ctx *sctx = tls_ctx(WS_TLS_SERVER, argv[1], argv[2], NULL);
    if (!sctx || ws_server_set_tls(s, sctx, NULL) != 0) { /* owned by s on success */
      ws_tls_ctx_free(sctx);
      ws_server_free(s);
      return 1;
    }
  }
  if (!s || ws_server_listen_tcp(s, "127.0.0.1", 0, &a.port) != 0) {
    fprintf(stderr, "client_loop: cannot listen\n");
    ws_server_free(s);
    return 1;
  }
  /* A port nothing listens on: bind one, close it. */
  int dead_port = 0;
  {
    ws_server *tmp = ws_server_new(&cfg, &cb, &a);
    if (tmp) ws_server_listen_tcp(tmp, "127.0.0.1", 0, &dead_port);
    ws_server_free(tmp);
  }
  int bad = 0;
  /* A server freed with a resolution and a connect in flight: no callback,
   * nothing leaked (the resolution's callback runs inside ws_server_free). */
  {
    ws_server *tmp = ws_server_new(&cfg, &cb, &a);
    if (!tmp) return 1;
    bad |= dial(tmp, "localhost", a.port, "/", 1, (void *)(intptr_t)4, a.tls);
    bad |= dial(tmp, "127.0.0.1", a.port, "/", 1, (void *)(intptr_t)4, a.tls);
    ws_server_free(tmp);
  }
  for (int k = 0; k < OK_CLIENTS; k++) {
    a.clients[k].is_client = 1;
    a.clients[k].index = k;
    const char *host = k % 4 == 3 ? "localhost" : k % 4 == 1 ? "two.test" : "127.0.0.1";
    bad |= dial(s, host, a.port, "/echo?k=1", k % 2, &a.clients[k], a.tls); /* odd k: deflate */
  }
  bad |= dial(s, "127.0.0.1", a.port, "/reject", 1, (void *)(intptr_t)1, a.tls);
  bad |= dial(s, "127.0.0.1", dead_port, "/", 1, (void *)(intptr_t)2, a.tls);
  bad |= dial(s, "two.test", dead_port, "/", 1, (void *)(intptr_t)2, a.tls); /* both refuse */
  bad |= dial(s, "no-such-host.invalid", 80, "/", 1, (void *)(intptr_t)3, a.tls);
  if (untrusting) bad |= dial(s, "localhost", a.port, "/", 1, (void *)(intptr_t)5, untrusting);
  if (bad) {
    ws_server_free(s);
    return 1;
  }
  ws_server_run(s);
  ws_server_free(s);
  ws_tls_ctx_free(a.tls);
  ws_tls_ctx_free(untrusting);

  for (int k = 0; k < OK_CLIENTS; k++) {
    peer *p = &a.clients[k];
    unsigned want = k % 3 == 0 ? 4000 : 1000;
    if (p->received != MSGS || p->closed != 1 || p->code != want) {
      fprintf(stderr, "client %d: %d echoes, %d closes, code %u (want %u)\n", k, p->received,
              p->closed, p->code, want);
      a.failures++;
    }
  }
  if (a.accepted_closed != OK_CLIENTS) fail(&a, "accepted side: on_close count");
  if (a.accepted_4000 != (OK_CLIENTS + 2) / 3) fail(&a, "accepted side: 4000 closes");
  if (a.refused_403 != 1 || a.refused_conn != 2 || a.dns_failed != 1 ||
      a.tls_refused != (a.tls != NULL))
    fail(&a, "a failing client was not reported once");
  if (a.deflated != OK_CLIENTS / 2) fail(&a, "deflate count");
  if (stop_from_callback() != 0) a.failures++;
  if (a.failures) return 1;
  printf("client_loop%s: %d clients echoed and closed, %d failures reported as expected; "
         "a stop inside on_open reported the pending client after it\n",
         a.tls ? " (TLS)" : "", OK_CLIENTS, a.tls ? 5 : 4);
  return 0;
}
