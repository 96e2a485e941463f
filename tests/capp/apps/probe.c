/* probe.c - a test application that exercises the host table. The client
 * drives it with text commands; replies are text. See test_capp_api.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wsuv_app.h>

typedef struct {
  const wsuv_host *h;
  wsuv_server *s;
  int setuser_rc;      /* what set_user returned in the last on_connect */
  int accept_again_rc; /* a second decision in on_connect */
} probe;

/* A connection's user data: its pending timer (cancelled in on_close). */
typedef struct { uint64_t timer; uint64_t started; int closed; int resume; } conn_state;

static int has_prefix(const char *d, size_t n, const char *p) {
  size_t k = strlen(p);
  return n >= k && memcmp(d, p, k) == 0;
}

static void reply(probe *p, wsuv_conn *c, const char *fmt, long a, long b) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, fmt, a, b);
  p->h->send(c, WSUV_TEXT, buf, (size_t)n);
}

static void on_connect(void *u, wsuv_conn *c, const wsuv_request *r) {
  probe *p = u;
  size_t len;
  const char *t = p->h->request_target(r, &len);
  p->setuser_rc = p->h->set_user(c, p);
  if (len == 7 && memcmp(t, "/reject", 7) == 0) {
    p->h->reject(c, 403, "go away", 7);
    p->accept_again_rc = p->h->accept(c, NULL, 0);
  } else if (len == 6 && memcmp(t, "/proto", 6) == 0) {
    p->h->accept(c, "beta", 4);
  } else if (len == 9 && memcmp(t, "/badproto", 9) == 0) {
    p->h->accept(c, "zeta", 4);
  } else if (len == 10 && memcmp(t, "/badstatus", 10) == 0) {
    p->h->reject(c, 200, "ok?", 3);
  }
}

static void on_open(void *u, wsuv_conn *c, const wsuv_request *r) {
  probe *p = u;
  size_t tlen, hlen;
  const char *t = p->h->request_target(r, &tlen);
  const char *v = p->h->request_header(r, "x-probe", &hlen);
  char buf[512];
  int n = snprintf(buf, sizeof buf, "open %.*s %.*s setuser=%d", (int)tlen, t, v ? (int)hlen : 1,
                   v ? v : "-", p->setuser_rc);
  conn_state *st = calloc(1, sizeof *st);
  p->h->set_user(c, st);
  p->h->send(c, WSUV_TEXT, buf, (size_t)n);
}

static void on_message(void *u, wsuv_conn *c, unsigned op, const char *d, size_t n) {
  probe *p = u;
  const wsuv_host *h = p->h;
  conn_state *st = h->get_user(c);
  if (op == WSUV_BINARY) {
    h->send(c, op, d, n);
  } else if (has_prefix(d, n, "close")) {
    /* Closing its own connection from its on_message: later sends fail. */
    int rc = h->close(c, 4000, "bye", 3);
    int send_rc = h->send(c, WSUV_TEXT, "after", 5);
    int again = h->close(c, 1000, NULL, 0);
    h->log(p->s, WSUV_LOG_WARNING, "closed: close=%d send=%d again=%d", rc, send_rc, again);
  } else if (has_prefix(d, n, "timer ")) {
    long ms = strtol(d + 6, NULL, 10);
    st->started = h->now_ms(p->s);
    st->timer = h->timer_start(p->s, (uint64_t)ms, c);
    reply(p, c, "timer started %ld %ld", ms, st->timer != 0);
  } else if (has_prefix(d, n, "pause")) {
    /* Stop reading this peer for 200 ms; on_timer resumes. */
    h->pause_reading(c);
    st->resume = 1;
    st->started = h->now_ms(p->s);
    st->timer = h->timer_start(p->s, 200, c);
    reply(p, c, "paused%.0ld%.0ld", 0L, 0L);
  } else if (has_prefix(d, n, "cancel")) {
    uint64_t t = h->timer_start(p->s, 50, c);
    int a = h->timer_cancel(p->s, t);
    int b = h->timer_cancel(p->s, t);
    reply(p, c, "cancel=%ld again=%ld", a, b);
  } else if (has_prefix(d, n, "broadcast ")) {
    size_t k = h->broadcast(p->s, WSUV_TEXT, d + 10, n - 10, NULL);
    reply(p, c, "broadcast to %ld%.0ld", (long)k, 0L);
  } else if (has_prefix(d, n, "count")) {
    reply(p, c, "count %ld%.0ld", (long)h->connection_count(p->s), 0L);
  } else if (has_prefix(d, n, "id")) {
    reply(p, c, "id %ld nonzero=%ld", (long)h->conn_id(c), h->conn_id(c) != 0);
  } else if (has_prefix(d, n, "peer")) {
    char peer[80], buf[100];
    size_t k = h->peer(c, peer, sizeof peer);
    int m = snprintf(buf, sizeof buf, "peer %.*s", (int)k, peer);
    h->send(c, WSUV_TEXT, buf, (size_t)m);
  } else if (has_prefix(d, n, "bad")) {
    char big[126] = {0};
    int s9 = h->send(c, 9, "x", 1);
    int c999 = h->close(c, 999, NULL, 0);
    int pbig = h->ping(c, big, sizeof big);
    int pok = h->ping(c, "p", 1);
    char buf[100];
    int m = snprintf(buf, sizeof buf, "send9=%d close999=%d ping126=%d ping=%d accept=%d", s9,
                     c999, pbig, pok, h->accept(c, NULL, 0));
    h->send(c, WSUV_TEXT, buf, (size_t)m);
  } else if (has_prefix(d, n, "flood")) {
    /* 128 messages of 64 KiB at once (8 MiB): more than the kernel takes, so
     * on_drain follows once the client has read them. */
    static char chunk[65536];
    size_t most = 0;
    for (int i = 0; i < 128; i++) {
      h->send(c, WSUV_BINARY, chunk, sizeof chunk);
      if (h->buffered(c) > most) most = h->buffered(c);
    }
    reply(p, c, "flooded, most buffered %ld%.0ld", (long)most, 0L);
  } else if (has_prefix(d, n, "overflow")) {
    /* 32 MiB at once, over write_limit: the connection is dropped inside
     * send, but its on_close waits until this callback returns, so st (freed
     * there) is still ours here. */
    size_t big = (size_t)32 << 20;
    char *buf = calloc(1, big);
    int rc = buf ? h->send(c, WSUV_BINARY, buf, big) : -99;
    free(buf);
    int after = h->send(c, WSUV_TEXT, "after", 5);
    h->log(p->s, WSUV_LOG_WARNING, "overflow: send=%d after=%d on_close_ran=%d", rc, after,
           st->closed);
  } else if (has_prefix(d, n, "stop")) {
    h->stop(p->s, 1);
  } else {
    h->send(c, op, d, n);
  }
}

static void on_timer(void *u, uint64_t timer, void *arg) {
  probe *p = u;
  wsuv_conn *c = arg; /* valid: on_close cancels a connection's timer */
  conn_state *st = p->h->get_user(c);
  if (st->timer != timer) return;
  st->timer = 0;
  if (st->resume) {
    st->resume = 0;
    reply(p, c, "resumed after %ld ms%.0ld", (long)(p->h->now_ms(p->s) - st->started), 0L);
    p->h->resume_reading(c);
    return;
  }
  reply(p, c, "timer fired after %ld ms%.0ld", (long)(p->h->now_ms(p->s) - st->started), 0L);
}

static void on_drain(void *u, wsuv_conn *c) {
  probe *p = u;
  reply(p, c, "drained %ld%.0ld", (long)p->h->buffered(c), 0L);
}

static void on_close(void *u, wsuv_conn *c, unsigned code, const char *reason, size_t len) {
  probe *p = u;
  conn_state *st = p->h->get_user(c);
  if (st && st->timer) p->h->timer_cancel(p->s, st->timer);
  if (st) st->closed = 1; /* seen by nobody, unless on_close ran too early */
  free(st);
  p->h->log(p->s, WSUV_LOG_INFO, "on_close %u %.*s", code, (int)len, reason);
}

static void on_shutdown(void *u) {
  probe *p = u;
  p->h->log(p->s, WSUV_LOG_INFO, "on_shutdown");
}

static void on_destroy(void *u) {
  probe *p = u;
  p->h->log(p->s, WSUV_LOG_INFO, "on_destroy reject-then-accept=%d", p->accept_again_rc);
  free(p);
}

static const wsuv_app app = {
    .abi_version = WSUV_APP_ABI_VERSION, .size = sizeof(wsuv_app), .name = "probe",
    .on_connect = on_connect, .on_open = on_open, .on_message = on_message,
    .on_drain = on_drain, .on_close = on_close, .on_timer = on_timer, .on_shutdown = on_shutdown,
    .on_destroy = on_destroy,
};

const wsuv_app *wsuv_app_init(const wsuv_host *h, wsuv_server *s, const char *arg,
                              void **app_user, char *err, size_t err_cap) {
  if (h->abi_version != WSUV_APP_ABI_VERSION || h->size != sizeof *h) {
    snprintf(err, err_cap, "host table mismatch");
    return NULL;
  }
  if (strcmp(arg, "refuse") == 0) {
    snprintf(err, err_cap, "told to refuse");
    return NULL;
  }
  if (strcmp(arg, "refuse-silently") == 0) return NULL;
  probe *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->h = h;
  p->s = s;
  *app_user = p;
  h->log(s, WSUV_LOG_INFO, "probe init arg=%s", arg);
  return &app;
}
