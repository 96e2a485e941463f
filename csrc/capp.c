/* capp.c - applications in C loaded at run time. See capp.h and wsuv_app.h.
 *
 * The handles of wsuv_app.h are ours in disguise: a wsuv_conn * is a
 * ws_server_conn *, a wsuv_server * is the ws_capp *, and a wsuv_request *
 * is the ws_capp's request snapshot (struct capp_request), so no host
 * function allocates or looks anything up.
 */
#define WSUV_APP_HOST /* the header's weak wsuv_app_abi_version is the application's */
#include "capp.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handshake.h"
#include "pubsub.h"
#include "wsuv_app.h"

/* A subprotocol longer than this is refused: it keeps the 101 response
 * small enough to be corked (never written, or failed, during on_connect). */
#define MAX_SUBPROTOCOL 1024
#define LOG_LINE 1024

/* The upgrade request, copied once per handshake so that on_open can read it
 * too (the server frees the handshake before on_open). Reused: it grows to
 * the largest request head seen (bounded by the handshake limits). */
struct capp_request {
  char *buf;                /* target, then the request head (owned) */
  size_t cap;
  size_t target_len;        /* buf[0..target_len) is the target */
  size_t head_off;          /* the head (the base of spans) starts here */
  ws_header_span *spans;    /* offsets relative to buf + head_off (owned) */
  size_t nspans, spans_cap;
  int valid;                /* 1 from on_connect to the end of on_open */
};

/* An application timer: the server's handle while it is pending. Slots are
 * reused through a free list; a generation in the id tells a stale id from
 * the slot's next timer. */
typedef struct capp_timer {
  ws_server_timer *t;       /* NULL when the slot is free */
  void *arg;
  uint32_t gen;
  uint32_t next_free;
} capp_timer;

#define NO_SLOT UINT32_MAX

/* The longest close reason a frame can carry (RFC 6455 5.5: 125 - 2). */
#define WSUV_MAX_REASON 123

/* An on_close that waits for the application's running callback to end. */
typedef struct capp_closed {
  ws_server_conn *c;
  unsigned code;
  size_t len;
  char reason[WSUV_MAX_REASON];
} capp_closed;

struct ws_capp {
  wsuv_host host;           /* handed to the application; its address must not move */
  void *dl;                 /* dlopen handle (owned) */
  const wsuv_app *app;      /* the application's table (its memory) */
  void *app_user;
  char *path;               /* for messages (owned) */
  ws_capp_log_fn log_fn;
  void *log_ctx;
  ws_server *server;        /* attached server, or NULL */
  void (*next_on_timer)(ws_server *s, uint64_t id);
  void (*next_on_shutdown)(ws_server *s);
  ws_server_conn *deciding; /* the connection in on_connect, or NULL */
  int decided;
  struct capp_request req;
  capp_timer *timers;       /* (owned) */
  uint32_t ntimers, free_timer;
  int depth;                /* application callbacks running (nested) */
  capp_closed *closed;      /* on_close calls waiting for depth 0 (owned) */
  size_t nclosed, closed_cap;
};

static ws_capp *capp_of(wsuv_server *s) { return (ws_capp *)s; }
static ws_server_conn *conn_of(wsuv_conn *c) { return (ws_server_conn *)c; }
static const ws_server_conn *cconn_of(const wsuv_conn *c) { return (const ws_server_conn *)c; }
static wsuv_conn *app_conn(ws_server_conn *c) { return (wsuv_conn *)c; }
static ws_capp *capp_of_conn(const wsuv_conn *c) {
  return ws_server_user(ws_server_conn_server(cconn_of(c)));
}

/* ---------- logging ---------- */

static void log_line(ws_capp *a, int level, const char *msg, size_t len) {
  const char *name = a->app && a->app->name ? a->app->name : NULL;
  if (a->log_fn) {
    a->log_fn(a->log_ctx, level, name, msg, len);
    return;
  }
  fprintf(stderr, "wsuv app%s%s: %.*s\n", name ? " " : "", name ? name : "", (int)len, msg);
}

static void h_log(wsuv_server *s, int level, const char *fmt, ...) {
  char line[LOG_LINE];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
  log_line(capp_of(s), level, line, len);
}

/* ---------- host functions: one connection ---------- */

static int is_data_opcode(unsigned op) { return op == WSUV_TEXT || op == WSUV_BINARY; }

static int h_send(wsuv_conn *c, unsigned opcode, const char *data, size_t len) {
  if (!is_data_opcode(opcode) || (len && !data)) return WSUV_EINVAL;
  return ws_server_conn_send(conn_of(c), opcode, data, len) == 0 ? WSUV_OK : WSUV_ECLOSED;
}

static int h_close(wsuv_conn *c, unsigned code, const char *reason, size_t len) {
  if (!ws_server_conn_can_send(cconn_of(c))) return WSUV_ECLOSED;
  if (len && !reason) return WSUV_EINVAL;
  /* Open and not closing: a refusal can only be the code or the reason. */
  return ws_server_conn_close(conn_of(c), code, reason, len) == 0 ? WSUV_OK : WSUV_EINVAL;
}

static int h_ping(wsuv_conn *c, const char *data, size_t len) {
  if (!ws_server_conn_can_send(cconn_of(c))) return WSUV_ECLOSED;
  if (len > 125 || (len && !data)) return WSUV_EINVAL;
  return ws_server_conn_ping(conn_of(c), data, len) == 0 ? WSUV_OK : WSUV_ECLOSED;
}

static size_t h_buffered(const wsuv_conn *c) { return ws_server_conn_buffered(cconn_of(c)); }
static void h_pause(wsuv_conn *c) { ws_server_conn_pause_reading(conn_of(c)); }
static void h_resume(wsuv_conn *c) { ws_server_conn_resume_reading(conn_of(c)); }

static int h_set_user(wsuv_conn *c, void *user) {
  if (capp_of_conn(c)->deciding == conn_of(c)) return WSUV_ESTATE;
  ws_server_conn_set_user(conn_of(c), user);
  return WSUV_OK;
}

static void *h_get_user(const wsuv_conn *c) { return ws_server_conn_user(cconn_of(c)); }
static uint64_t h_conn_id(const wsuv_conn *c) { return ws_server_conn_id(cconn_of(c)); }

static size_t h_peer(const wsuv_conn *c, char *out, size_t cap) {
  if (!out || cap == 0) return 0;
  return ws_server_conn_peer(cconn_of(c), out, cap);
}

/* ---------- host functions: the request ---------- */

static const struct capp_request *req_of(const wsuv_request *r) {
  return (const struct capp_request *)r;
}

static const char *h_request_target(const wsuv_request *r, size_t *len) {
  const struct capp_request *q = req_of(r);
  if (!q || !q->valid) {
    if (len) *len = 0;
    return NULL;
  }
  if (len) *len = q->target_len;
  return q->buf;
}

static int ascii_ieq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
    if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
    if (x != y) return 0;
  }
  return 1;
}

static const char *h_request_header(const wsuv_request *r, const char *name, size_t *len) {
  const struct capp_request *q = req_of(r);
  if (len) *len = 0;
  if (!q || !q->valid || !name) return NULL;
  size_t nlen = strlen(name);
  const char *head = q->buf + q->head_off;
  for (size_t i = 0; i < q->nspans; i++) {
    const ws_header_span *h = &q->spans[i];
    if (h->name_len == nlen && ascii_ieq(head + h->name_off, name, nlen)) {
      if (len) *len = h->value_len;
      return head + h->value_off;
    }
  }
  return NULL;
}

/* Copies what on_connect and on_open may read; 0, or -1 out of memory. */
static int req_snapshot(struct capp_request *q, const ws_handshake *hs) {
  size_t tlen = 0, hlen = 0;
  const char *target = ws_handshake_target(hs, &tlen);
  const char *head = ws_handshake_buffer(hs, &hlen);
  size_t n = ws_handshake_header_count(hs);
  size_t need = tlen + hlen;
  if (need > q->cap) {
    char *p = realloc(q->buf, need);
    if (!p) return -1;
    q->buf = p;
    q->cap = need;
  }
  if (n > q->spans_cap) {
    ws_header_span *p = realloc(q->spans, n * sizeof *p);
    if (!p) return -1;
    q->spans = p;
    q->spans_cap = n;
  }
  if (tlen) memcpy(q->buf, target, tlen);
  if (hlen) memcpy(q->buf + tlen, head, hlen);
  if (n) memcpy(q->spans, ws_handshake_headers(hs), n * sizeof *q->spans);
  q->target_len = tlen;
  q->head_off = tlen;
  q->nspans = n;
  q->valid = 1;
  return 0;
}

/* 1 if sp[0..len) is one of the comma-separated tokens of every
 * Sec-WebSocket-Protocol field of the request (RFC 6455 4.2.2: the server
 * picks one the client offered). */
static int offered(const struct capp_request *q, const char *sp, size_t len) {
  static const char field[] = "sec-websocket-protocol";
  const char *head = q->buf + q->head_off;
  for (size_t i = 0; i < q->nspans; i++) {
    const ws_header_span *h = &q->spans[i];
    if (h->name_len != sizeof field - 1 || !ascii_ieq(head + h->name_off, field, h->name_len))
      continue;
    const char *v = head + h->value_off, *end = v + h->value_len;
    while (v < end) {
      const char *comma = memchr(v, ',', (size_t)(end - v));
      const char *tok_end = comma ? comma : end;
      const char *a = v, *b = tok_end;
      while (a < b && (*a == ' ' || *a == '\t')) a++;
      while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
      if ((size_t)(b - a) == len && memcmp(a, sp, len) == 0) return 1;
      v = comma ? comma + 1 : end;
    }
  }
  return 0;
}

static void reject_500(ws_capp *a, ws_server_conn *c, const char *why) {
  static const char msg[] = "internal server error";
  log_line(a, WSUV_LOG_ERROR, why, strlen(why));
  a->decided = 1;
  ws_server_conn_reject(c, 500, msg, sizeof msg - 1, NULL, 0);
}

static int h_accept(wsuv_conn *c, const char *subprotocol, size_t len) {
  ws_capp *a = capp_of_conn(c);
  if (a->deciding != conn_of(c) || a->decided) return WSUV_ESTATE;
  if (len && (!subprotocol || len > MAX_SUBPROTOCOL || !offered(&a->req, subprotocol, len))) {
    reject_500(a, conn_of(c), "on_connect chose a subprotocol the client did not offer; "
               "answered 500");
    return WSUV_EINVAL;
  }
  a->decided = 1;
  return ws_server_conn_accept(conn_of(c), subprotocol, len, NULL, 0) == 0 ? WSUV_OK
                                                                           : WSUV_ECLOSED;
}

static int h_reject(wsuv_conn *c, int status, const char *reason, size_t len) {
  ws_capp *a = capp_of_conn(c);
  if (a->deciding != conn_of(c) || a->decided) return WSUV_ESTATE;
  if (status < 400 || status > 599 || (len && !reason) || memchr(reason ? reason : "", '\n', len)) {
    reject_500(a, conn_of(c), "on_connect rejected with a status outside 400-599 or a reason "
               "of more than one line; answered 500");
    return WSUV_EINVAL;
  }
  a->decided = 1;
  return ws_server_conn_reject(conn_of(c), status, reason, len, NULL, 0) == 0 ? WSUV_OK
                                                                              : WSUV_ECLOSED;
}

/* ---------- host functions: the server ---------- */

static size_t h_broadcast(wsuv_server *s, unsigned opcode, const char *data, size_t len,
                          const wsuv_conn *except) {
  ws_capp *a = capp_of(s);
  if (!a->server || !is_data_opcode(opcode) || (len && !data)) return 0;
  return ws_server_broadcast(a->server, opcode, data, len, cconn_of(except));
}

static size_t h_send_many(wsuv_server *s, wsuv_conn *const *conns, size_t n, unsigned opcode,
                          const char *data, size_t len) {
  ws_capp *a = capp_of(s);
  if (!a->server || !is_data_opcode(opcode) || (len && !data) || (n && !conns)) return 0;
  /* The array is the application's wsuv_conn pointers, which are our
   * ws_server_conn pointers: same representation, read as such in server.c. */
  return ws_server_send_many(a->server, (ws_server_conn *const *)conns, n, opcode, data, len);
}

static int h_subscribe(wsuv_conn *c, const char *topic, size_t len) {
  if (!topic || len == 0 || len > WS_PUBSUB_MAX_TOPIC) return WSUV_EINVAL;
  int r = ws_server_conn_subscribe(conn_of(c), topic, len);
  return r >= 0 ? r : r == -2 ? WSUV_ENOMEM : WSUV_ECLOSED;
}

static int h_unsubscribe(wsuv_conn *c, const char *topic, size_t len) {
  if (!topic || len == 0) return 0;
  return ws_server_conn_unsubscribe(conn_of(c), topic, len);
}

static size_t h_publish(wsuv_server *s, const char *topic, size_t len, unsigned opcode,
                        const char *data, size_t data_len, const wsuv_conn *except) {
  ws_capp *a = capp_of(s);
  if (!a->server || !topic || !is_data_opcode(opcode) || (data_len && !data)) return 0;
  return ws_server_publish(a->server, topic, len, opcode, data, data_len, cconn_of(except));
}

static size_t h_subscribers(const wsuv_server *s, const char *topic, size_t len) {
  const ws_capp *a = (const ws_capp *)s;
  return a->server && topic ? ws_server_subscribers(a->server, topic, len) : 0;
}

static size_t h_connection_count(const wsuv_server *s) {
  const ws_capp *a = (const ws_capp *)s;
  return a->server ? ws_server_connection_count(a->server) : 0;
}

static uint64_t h_now_ms(const wsuv_server *s) {
  const ws_capp *a = (const ws_capp *)s;
  return a->server ? ws_server_now(a->server) : 0;
}

static uint64_t timer_id(uint32_t slot, uint32_t gen) {
  return WS_CAPP_TIMER_BIT | ((uint64_t)(gen & 0x7fffffffu) << 32) | (uint64_t)(slot + 1u);
}

/* The slot of a pending timer's id, or NO_SLOT. */
static uint32_t timer_slot(const ws_capp *a, uint64_t id) {
  if (!(id & WS_CAPP_TIMER_BIT)) return NO_SLOT;
  uint64_t low = id & 0xffffffffu;
  if (low == 0 || low > a->ntimers) return NO_SLOT;
  uint32_t slot = (uint32_t)(low - 1);
  const capp_timer *t = &a->timers[slot];
  if (!t->t || (t->gen & 0x7fffffffu) != ((id >> 32) & 0x7fffffffu)) return NO_SLOT;
  return slot;
}

static void timer_release(ws_capp *a, uint32_t slot) {
  capp_timer *t = &a->timers[slot];
  t->t = NULL;
  t->arg = NULL;
  t->gen++;
  t->next_free = a->free_timer;
  a->free_timer = slot;
}

static uint64_t h_timer_start(wsuv_server *s, uint64_t ms, void *arg) {
  ws_capp *a = capp_of(s);
  if (!a->server) return 0;
  if (a->free_timer == NO_SLOT) {
    if (a->ntimers >= 0x7fffffffu) return 0;
    uint32_t cap = a->ntimers ? a->ntimers * 2 : 16;
    capp_timer *p = realloc(a->timers, (size_t)cap * sizeof *p);
    if (!p) return 0;
    a->timers = p;
    for (uint32_t i = cap; i-- > a->ntimers;) { /* lowest slot first on the free list */
      p[i].t = NULL;
      p[i].arg = NULL;
      p[i].gen = 0;
      p[i].next_free = a->free_timer;
      a->free_timer = i;
    }
    a->ntimers = cap;
  }
  uint32_t slot = a->free_timer;
  capp_timer *t = &a->timers[slot];
  uint64_t id = timer_id(slot, t->gen);
  ws_server_timer *st = ws_server_timer_start(a->server, ms, id);
  if (!st) return 0;
  a->free_timer = t->next_free;
  t->t = st;
  t->arg = arg;
  return id;
}

static int h_timer_cancel(wsuv_server *s, uint64_t timer) {
  ws_capp *a = capp_of(s);
  uint32_t slot = a->server ? timer_slot(a, timer) : NO_SLOT;
  if (slot == NO_SLOT) return WSUV_ENOENT;
  ws_server_timer_cancel(a->timers[slot].t);
  timer_release(a, slot);
  return WSUV_OK;
}

static void h_stop(wsuv_server *s, int graceful) {
  ws_capp *a = capp_of(s);
  /* Asynchronous: stopping from inside a callback must not tear down the
   * connection that callback is running for. */
  if (a->server) ws_server_request_stop(a->server, graceful ? 1 : 0);
}

static void host_init(wsuv_host *h) {
  memset(h, 0, sizeof *h);
  h->abi_version = WSUV_APP_ABI_VERSION;
  h->size = (uint32_t)sizeof *h;
  h->send = h_send;
  h->close = h_close;
  h->ping = h_ping;
  h->buffered = h_buffered;
  h->pause_reading = h_pause;
  h->resume_reading = h_resume;
  h->set_user = h_set_user;
  h->get_user = h_get_user;
  h->conn_id = h_conn_id;
  h->peer = h_peer;
  h->request_target = h_request_target;
  h->request_header = h_request_header;
  h->accept = h_accept;
  h->reject = h_reject;
  h->broadcast = h_broadcast;
  h->send_many = h_send_many;
  h->connection_count = h_connection_count;
  h->now_ms = h_now_ms;
  h->timer_start = h_timer_start;
  h->timer_cancel = h_timer_cancel;
  h->log = h_log;
  h->stop = h_stop;
  h->subscribe = h_subscribe;
  h->unsubscribe = h_unsubscribe;
  h->publish = h_publish;
  h->subscribers = h_subscribers;
}

/* ---------- server callbacks: the application's adapters ---------- */

/* Every callback into the application is bracketed by app_enter/app_leave.
 * A connection can finish while the application is running: a write it
 * makes fails (peer gone, write_limit), or a cork flush inside send_many
 * dooms another connection. Its on_close then waits in a->closes until the
 * outermost callback returns, so the pointers and user data the application
 * is holding stay valid for the whole callback (the server frees the
 * connection's memory only in a later loop phase). */
static void app_enter(ws_capp *a) { a->depth++; }

/* Out of line: the per-message path (cb_message) stays a few instructions. */
__attribute__((noinline)) static void app_deliver_closed(ws_capp *a) {
  /* Still at depth 1: closes reported by these on_close calls queue too. */
  for (size_t i = 0; i < a->nclosed; i++) {
    capp_closed e = a->closed[i]; /* copied: the array may grow meanwhile */
    a->app->on_close(a->app_user, app_conn(e.c), e.code, e.reason, e.len);
  }
  a->nclosed = 0;
}

static void app_leave(ws_capp *a) {
  if (a->depth == 1 && a->nclosed) app_deliver_closed(a);
  a->depth--;
}

static void cb_request(ws_server *s, ws_server_conn *c, const ws_handshake *hs) {
  ws_capp *a = ws_server_user(s);
  const wsuv_app *app = a->app;
  a->req.valid = 0;
  if (!app->on_connect && !app->on_open) return; /* accepted */
  app_enter(a);
  a->deciding = c;
  a->decided = 0;
  if (req_snapshot(&a->req, hs) != 0)
    reject_500(a, c, "out of memory copying an upgrade request; answered 500");
  else if (app->on_connect)
    app->on_connect(a->app_user, app_conn(c), (const wsuv_request *)&a->req);
  a->deciding = NULL;
  app_leave(a);
}

static void cb_open(ws_server *s, ws_server_conn *c) {
  ws_capp *a = ws_server_user(s);
  /* on_open comes right after its on_request, in the same read: the
   * snapshot is this connection's. */
  if (a->app->on_open) {
    app_enter(a);
    a->app->on_open(a->app_user, app_conn(c),
                    a->req.valid ? (const wsuv_request *)&a->req : NULL);
    app_leave(a);
  }
  a->req.valid = 0;
}

static void cb_message(ws_server *s, ws_server_conn *c, unsigned opcode, const char *data,
                       size_t len) {
  ws_capp *a = ws_server_user(s);
  app_enter(a);
  a->app->on_message(a->app_user, app_conn(c), opcode, data, len);
  app_leave(a);
}

static void cb_drain(ws_server *s, ws_server_conn *c) {
  ws_capp *a = ws_server_user(s);
  app_enter(a);
  a->app->on_drain(a->app_user, app_conn(c));
  app_leave(a);
}

static void cb_close(ws_server *s, ws_server_conn *c, unsigned code, const char *reason,
                     size_t len) {
  ws_capp *a = ws_server_user(s);
  if (len > WSUV_MAX_REASON) len = WSUV_MAX_REASON; /* a close frame's reason fits */
  if (a->depth > 0) {
    if (a->nclosed == a->closed_cap) {
      size_t cap = a->closed_cap ? 2 * a->closed_cap : 8;
      capp_closed *p = realloc(a->closed, cap * sizeof *p);
      if (!p) { /* no memory to wait: tell it now rather than never */
        a->app->on_close(a->app_user, app_conn(c), code, reason, len);
        return;
      }
      a->closed = p;
      a->closed_cap = cap;
    }
    capp_closed *e = &a->closed[a->nclosed++];
    e->c = c;
    e->code = code;
    e->len = len;
    if (len) memcpy(e->reason, reason, len);
    return;
  }
  app_enter(a);
  a->app->on_close(a->app_user, app_conn(c), code, reason, len);
  app_leave(a);
}

static void cb_timer(ws_server *s, uint64_t id) {
  ws_capp *a = ws_server_user(s);
  if (!(id & WS_CAPP_TIMER_BIT)) {
    if (a->next_on_timer) a->next_on_timer(s, id);
    return;
  }
  uint32_t slot = timer_slot(a, id);
  if (slot == NO_SLOT) return;
  void *arg = a->timers[slot].arg;
  timer_release(a, slot); /* the server freed its handle before calling us */
  if (a->app->on_timer) {
    app_enter(a);
    a->app->on_timer(a->app_user, id, arg);
    app_leave(a);
  }
}

static void cb_shutdown(ws_server *s) {
  ws_capp *a = ws_server_user(s);
  if (a->next_on_shutdown) a->next_on_shutdown(s);
  if (a->app->on_shutdown) {
    app_enter(a);
    a->app->on_shutdown(a->app_user);
    app_leave(a);
  }
}

ws_server *ws_capp_server_new(ws_capp *a, const ws_server_config *cfg, ws_server_callbacks *cb) {
  if (!a || a->server || !cfg || cfg->echo || !cb) return NULL;
  const wsuv_app *app = a->app;
  a->next_on_timer = cb->on_timer;
  a->next_on_shutdown = cb->on_shutdown;
  cb->on_request = cb_request;
  cb->on_open = cb_open;
  cb->on_message = app->on_message ? cb_message : NULL;
  cb->on_batch = NULL;
  cb->on_close = app->on_close ? cb_close : NULL;
  cb->on_drain = app->on_drain ? cb_drain : NULL;
  cb->on_timer = cb_timer;
  cb->on_shutdown = cb_shutdown;
  ws_server *s = ws_server_new(cfg, cb, a);
  if (!s) return NULL;
  a->server = s;
  return s;
}

void ws_capp_detach(ws_capp *a) {
  if (!a) return;
  a->server = NULL;
  a->deciding = NULL;
  a->req.valid = 0;
  a->nclosed = 0; /* none: they are delivered before any callback returns */
  a->depth = 0;
  /* The server closed and freed every pending timer's handle. */
  for (uint32_t i = 0; i < a->ntimers; i++)
    if (a->timers[i].t) timer_release(a, i);
}

unsigned ws_capp_abi_version(void) { return WSUV_APP_ABI_VERSION; }

int ws_capp_attached(const ws_capp *a) { return a && a->server ? 1 : 0; }

const char *ws_capp_name(const ws_capp *a) {
  return a && a->app && a->app->name ? a->app->name : "";
}

/* ---------- loading ---------- */

static void set_err(char *err, size_t cap, const char *fmt, ...) WSUV_APP_PRINTF(3, 4);
static void set_err(char *err, size_t cap, const char *fmt, ...) {
  if (!err || cap == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, cap, fmt, ap);
  va_end(ap);
  for (char *p = err; *p; p++) /* one line */
    if (*p == '\n' || *p == '\r') *p = ' ';
}

typedef const wsuv_app *(*init_fn)(const wsuv_host *, wsuv_server *, const char *, void **,
                                   char *, size_t);

static void capp_release(ws_capp *a) {
  if (a->dl) dlclose(a->dl);
  free(a->req.buf);
  free(a->req.spans);
  free(a->timers);
  free(a->closed);
  free(a->path);
  free(a);
}

ws_capp *ws_capp_open(const char *path, const char *arg, ws_capp_log_fn log, void *log_ctx,
                      char *err, size_t err_cap) {
  if (err && err_cap) err[0] = 0;
  if (!path || !*path) {
    set_err(err, err_cap, "no C application path given");
    return NULL;
  }
  ws_capp *a = calloc(1, sizeof *a);
  char *p = a ? strdup(path) : NULL;
  if (!p) {
    free(a);
    set_err(err, err_cap, "out of memory loading %s", path);
    return NULL;
  }
  a->path = p;
  a->log_fn = log;
  a->log_ctx = log_ctx;
  a->free_timer = NO_SLOT;
  host_init(&a->host);

  dlerror();
  a->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!a->dl) {
    const char *why = dlerror();
    set_err(err, err_cap, "cannot load the C application %s: %s", path,
            why ? why : "dlopen failed");
    capp_release(a);
    return NULL;
  }
  /* dlsym, not dlvsym or a cast of data to a function: POSIX guarantees a
   * void * from dlsym converts to a function pointer. */
  dlerror();
  void *init_sym = dlsym(a->dl, "wsuv_app_init");
  if (!init_sym) {
    set_err(err, err_cap, "%s is not a wsuv C application: it does not export wsuv_app_init "
            "(see wsuv_app.h)", path);
    capp_release(a);
    return NULL;
  }
  const uint32_t *abi = dlsym(a->dl, "wsuv_app_abi_version");
  if (!abi) {
    set_err(err, err_cap, "%s exports wsuv_app_init but not wsuv_app_abi_version: build it "
            "with #include <wsuv_app.h> (gcc or clang)", path);
    capp_release(a);
    return NULL;
  }
  if (*abi != WSUV_APP_ABI_VERSION) {
    set_err(err, err_cap, "%s was built for wsuv C application ABI version %u, but this wsuv "
            "has version %u: rebuild it against this wsuv's wsuv_app.h "
            "(wsuv-serve --print-include-dir)", path, (unsigned)*abi,
            (unsigned)WSUV_APP_ABI_VERSION);
    capp_release(a);
    return NULL;
  }
  init_fn init;
  memcpy(&init, &init_sym, sizeof init);

  char reason[512];
  reason[0] = 0;
  void *user = NULL;
  const wsuv_app *app = init(&a->host, (wsuv_server *)a, arg ? arg : "", &user, reason,
                             sizeof reason);
  reason[sizeof reason - 1] = 0;
  if (!app) {
    set_err(err, err_cap, "the C application %s refused to start: %s", path,
            reason[0] ? reason : "(wsuv_app_init gave no reason)");
    capp_release(a);
    return NULL;
  }
  if (app->abi_version != WSUV_APP_ABI_VERSION || app->size != sizeof(wsuv_app)) {
    /* Its init ran, so its state may be live; without a table we trust we
     * cannot call its on_destroy: the state leaks, the process exits. */
    set_err(err, err_cap, "%s returned a callback table for ABI version %u of %u bytes, but "
            "this wsuv has version %u of %zu bytes: rebuild it against this wsuv's "
            "wsuv_app.h (wsuv-serve --print-include-dir)", path, (unsigned)app->abi_version,
            (unsigned)app->size, (unsigned)WSUV_APP_ABI_VERSION, sizeof(wsuv_app));
    capp_release(a);
    return NULL;
  }
  a->app = app;
  a->app_user = user;
  return a;
}

void ws_capp_free(ws_capp *a) {
  if (!a) return;
  a->server = NULL;
  if (a->app && a->app->on_destroy) a->app->on_destroy(a->app_user);
  capp_release(a);
}
