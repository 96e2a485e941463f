/* loop.c - the loop (ws_loop, loop.h): the libuv loop and what the servers
 * attached to it share: calls into the application (depth, deferred
 * closes), the message batch, the poll-phase hook, wakeups, signals, the run
 * modes (own run, busy polling, driven from another loop, run until a
 * condition). See server_int.h for the fields.
 */
#include "server_int.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "client_direct.h"

/* ---------- calls into the application ----------
 *
 * No application callback runs inside a call the application makes
 * (ws_server_conn_send, _close, broadcast, ...): every callback goes through
 * WS_SRV_APP_CALL, and while one runs, what an application call causes (a peer
 * dropped at write_limit, a close completed) is queued and reported when
 * the outermost callback returns, in order. The held batch is not delivered
 * inside a callback either (ws_srv_app_turn). The depth is the loop's: a
 * callback of one server calling into another defers that one's reports too. */

static ws_server *entry_server(const uint64_t *batch, size_t i) {
  const ws_server_conn *c = (const ws_server_conn *)(uintptr_t)batch[i * WS_SERVER_BATCH_WORDS];
  return c->server;
}

/* Hands the gathered messages to the application (before any other event):
 * one call per server, in arrival order (one call in all when a single server
 * read them, the usual case: no per-message look-up then). */
void ws_srv_batch_flush(ws_loop *l) {
  size_t n = l->batch_n;
  if (n == 0) return;
  l->batch_n = 0;
  l->arena_len = 0;
  ws_server *s = l->batch_server;
  if (!l->batch_mixed) {
    WS_SRV_APP_CALL(l, s->cb.on_batch(s, l->batch, n, l->arena));
    return;
  }
  l->batch_mixed = 0;
  l->app_depth++;
  for (size_t i = 0, j; i < n; i = j) {
    s = entry_server(l->batch, i);
    for (j = i + 1; j < n && entry_server(l->batch, j) == s; j++) continue;
    /* Each call's arena starts at its first message, as a lone server's does. */
    uint64_t *run = l->batch + i * WS_SERVER_BATCH_WORDS;
    uint64_t base = run[2];
    for (size_t k = 0; k < j - i; k++) run[k * WS_SERVER_BATCH_WORDS + 2] -= base;
    s->cb.on_batch(s, run, j - i, l->arena + base);
  }
  ws_srv_app_leave(l);
}

/* A server being freed: its messages leave the batch (nobody may hear them). */
static void batch_forget(ws_loop *l, const ws_server *s) {
  size_t k = 0;
  for (size_t i = 0; i < l->batch_n; i++) {
    if (entry_server(l->batch, i) == s) continue;
    if (k != i)
      memcpy(l->batch + k * WS_SERVER_BATCH_WORDS, l->batch + i * WS_SERVER_BATCH_WORDS,
             WS_SERVER_BATCH_WORDS * sizeof *l->batch);
    k++;
  }
  l->batch_n = k;
  if (k) l->batch_server = entry_server(l->batch, 0);
  else l->arena_len = 0;
}

static void defer_push(ws_loop *l, deferred_close *d) {
  d->next = NULL;
  if (l->deferred_tail) l->deferred_tail->next = d;
  else l->deferred = d;
  l->deferred_tail = d;
}

/* Reports on_close (or on_cancel) now, or queues it while a callback runs. */
void ws_srv_report_close(ws_server *s, ws_server_conn *c, int cancel, unsigned code,
                         const char *reason, size_t reason_len) {
  if (cancel ? !s->cb.on_cancel : !s->cb.on_close) return;
  ws_loop *l = s->loop;
  if (l->app_depth) {
    deferred_close *d = malloc(sizeof *d + reason_len);
    if (d) {
      d->conn = c;
      d->cancel = cancel;
      d->err = 0;
      d->code = code;
      d->reason_len = reason_len;
      if (reason_len) memcpy(d->reason, reason, reason_len);
      defer_push(l, d);
      return;
    }
    /* Out of memory: reporting now beats never reporting. */
  }
  ws_srv_app_turn(l);
  if (cancel) WS_SRV_APP_CALL(l, s->cb.on_cancel(s, c));
  else WS_SRV_APP_CALL(l, s->cb.on_close(s, c, code, reason, reason_len));
}

void ws_srv_report_connect_failed(ws_server *s, ws_server_conn *c, int err) {
  ws_loop *l = s->loop;
  if (l->app_depth) {
    deferred_close *d = calloc(1, sizeof *d);
    if (d) {
      d->conn = c;
      d->cancel = 2;
      d->err = err;
      defer_push(l, d);
      return;
    }
  }
  ws_srv_app_turn(l);
  WS_SRV_APP_CALL(l, ws_client_int_report_failed(s, c, err));
}

static void shutdowns_owed(ws_loop *l) {
  ws_server *s = l->servers, *next;
  for (; s && l->shutdown_owed; s = next) {
    next = s->loop_next;
    if (!s->shutdown_owed) continue;
    s->shutdown_owed = 0;
    l->shutdown_owed--;
    if (s->freeing) continue;
    ws_srv_app_turn(l);
    WS_SRV_APP_CALL(l, s->cb.on_shutdown(s));
  }
}

void ws_srv_app_leave(ws_loop *l) {
  if (--l->app_depth > 0) return;
  while (l->deferred) {
    deferred_close *d = l->deferred;
    l->deferred = d->next;
    if (!l->deferred) l->deferred_tail = NULL;
    ws_server *s = d->conn->server;
    if (!s->freeing) {
      ws_srv_app_turn(l);
      l->app_depth++;
      if (d->cancel == 2) ws_client_int_report_failed(s, d->conn, d->err);
      else if (d->cancel) s->cb.on_cancel(s, d->conn);
      else s->cb.on_close(s, d->conn, d->code, d->reason, d->reason_len);
      l->app_depth--; /* the loop delivers what this callback queued */
    }
    free(d);
  }
  if (l->shutdown_owed) shutdowns_owed(l);
}

/* The poll phase is over (uv_check), or the loop is closing: the messages
 * of every read go to the application in one call, then every reply leaves,
 * one writev per connection. */
void ws_srv_poll_phase_end(ws_loop *l) {
  ws_srv_app_turn(l);
  if (l->poll_corked) {
    l->poll_corked = 0;
    ws_srv_cork_end(l);
  }
}

void ws_srv_on_poll_end(uv_check_t *h) {
  ws_loop *l = h->data;
  ws_srv_poll_phase_end(l);
  if (l->zombies && !l->app_depth) ws_srv_loop_reap(l);
}

/* ---------- wakeups and signals ---------- */

static void on_async(uv_async_t *a) {
  ws_loop *l = a->data;
  ws_server *s = l->servers, *next;
  for (; s; s = next) {
    next = s->loop_next; /* freed servers stay listed until the next reap */
    if (s->released) continue;
    int req = atomic_exchange(&s->stop_request, 0);
    if (req) ws_server_stop(s, req == 1);
    if (atomic_exchange(&s->wake_request, 0) && s->cb.on_wakeup && !s->finished) {
      ws_srv_app_turn(l);
      ws_srv_cork_begin(l);
      WS_SRV_APP_CALL(l, s->cb.on_wakeup(s));
      ws_srv_cork_end(l);
    }
  }
}

/* The first signal drains gracefully; a second one stops at once. */
static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  ws_loop *l = h->data;
  ws_server *s = l->servers, *next;
  for (; s; s = next) {
    next = s->loop_next;
    if (!s->released && !s->freeing && s->cfg.handle_signals)
      ws_server_stop(s, s->stopping ? 0 : 1);
  }
}

void ws_srv_loop_signals(ws_loop *l) {
  if (!l->signals_on) {
    uv_signal_init(&l->uv, &l->sigint);
    uv_signal_init(&l->uv, &l->sigterm);
    l->sigint.data = l->sigterm.data = l;
    l->signals_on = 1;
  }
  uv_signal_start(&l->sigint, on_signal, SIGINT);
  uv_signal_start(&l->sigterm, on_signal, SIGTERM);
}

/* ---------- the loop object ---------- */

ws_loop *ws_loop_new(void) {
  ws_loop *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  if (uv_loop_init(&l->uv) != 0) {
    free(l);
    return NULL;
  }
  l->uv.data = l;
  uv_async_init(&l->uv, &l->async, on_async);
  l->async.data = l;
  uv_timer_init(&l->uv, &l->wait_timer);
  l->wait_timer.data = l;
  uv_unref((uv_handle_t *)&l->wait_timer);
  uv_check_init(&l->uv, &l->poll_end);
  l->poll_end.data = l;
  uv_check_start(&l->poll_end, ws_srv_on_poll_end);
  uv_unref((uv_handle_t *)&l->poll_end);
  return l;
}

int ws_srv_loop_attach(ws_loop *l, ws_server *s) {
  if (l->closing) return -1;
  if (s->batching && !l->batch) {
    l->batch = malloc(BATCH_MAX_ENTRIES * WS_SERVER_BATCH_WORDS * sizeof *l->batch);
    l->arena = malloc(BATCH_ARENA);
    if (!l->batch || !l->arena) {
      free(l->batch);
      free(l->arena);
      l->batch = NULL;
      l->arena = NULL;
      return -1;
    }
  }
  s->loop = l;
  s->loop_prev = NULL;
  s->loop_next = l->servers;
  if (l->servers) l->servers->loop_prev = s;
  l->servers = s;
  l->nservers++;
  return 0;
}

/* The run in progress ends with this server, or with the last of them. */
static int run_over(const ws_loop *l) {
  if (l->run_for) return l->run_for->done;
  for (const ws_server *s = l->servers; s; s = s->loop_next)
    if (!s->done) return 0;
  return 1;
}

void ws_srv_loop_server_done(ws_loop *l, ws_server *s) {
  (void)s;
  if (l->running && run_over(l)) uv_stop(&l->uv);
}

/* A server being freed on a shared loop: no callbacks any more, its batch
 * entries gone. */
void ws_srv_loop_forget(ws_loop *l, ws_server *s) {
  if (l->batch_n) batch_forget(l, s);
  if (s->shutdown_owed) {
    s->shutdown_owed = 0;
    l->shutdown_owed--;
  }
}

void ws_srv_loop_reap(ws_loop *l) {
  ws_server *s = l->servers, *next;
  for (; s && l->zombies; s = next) {
    next = s->loop_next;
    if (!s->released) continue;
    if (s->loop_prev) s->loop_prev->loop_next = s->loop_next;
    else l->servers = s->loop_next;
    if (s->loop_next) s->loop_next->loop_prev = s->loop_prev;
    l->nservers--;
    l->zombies--;
    ws_srv_server_release(s);
  }
}

size_t ws_loop_server_count(const ws_loop *l) {
  size_t n = 0;
  for (const ws_server *s = l->servers; s; s = s->loop_next) n += !s->freeing;
  return n;
}

uint64_t ws_loop_now(const ws_loop *l) { return uv_now(&l->uv); }

static void close_left(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int ws_loop_free(ws_loop *l) {
  if (!l) return 0;
  for (const ws_server *s = l->servers; s; s = s->loop_next)
    if (!s->freeing) return -1;
  l->closing = 1;
  ws_srv_poll_phase_end(l);
  uv_close((uv_handle_t *)&l->async, NULL);
  uv_close((uv_handle_t *)&l->wait_timer, NULL);
  uv_close((uv_handle_t *)&l->poll_end, NULL);
  if (l->signals_on) {
    uv_close((uv_handle_t *)&l->sigint, NULL);
    uv_close((uv_handle_t *)&l->sigterm, NULL);
  }
  /* The freed servers' handles close; then whatever is left (nothing, unless
   * an application timer outlived its server's close). */
  uv_run(&l->uv, UV_RUN_DEFAULT);
  uv_walk(&l->uv, close_left, NULL);
  uv_run(&l->uv, UV_RUN_DEFAULT);
  ws_srv_loop_reap(l);
  uv_loop_close(&l->uv);
  while (l->deferred) { /* only if freed from inside a callback, which is not allowed */
    deferred_close *d = l->deferred;
    l->deferred = d->next;
    free(d);
  }
  free(l->batch);
  free(l->arena);
  free(l->cork_conns);
  for (int i = 0; i < POOL_SLOTS; i++) free(l->pool[i]);
  free(l);
  return 0;
}

/* ---------- run modes ---------- */

/* busy_poll_us: while reads keep coming, poll without blocking (a spinning
 * CPU, but no sleep and wake-up between a request and the next); once none
 * came for busy_poll_us, block in epoll again. */
static void run_busy(ws_loop *l, uint32_t busy_poll_us) {
  const uint64_t window_ns = (uint64_t)busy_poll_us * 1000;
  uint64_t seen = l->reads, last = uv_hrtime();
  for (;;) {
    if (!uv_run(&l->uv, UV_RUN_NOWAIT) || run_over(l)) return;
    uint64_t now = uv_hrtime();
    if (l->reads != seen) {
      seen = l->reads;
      last = now;
    } else if (now - last >= window_ns) {
      if (!uv_run(&l->uv, UV_RUN_ONCE) || run_over(l)) return;
      seen = l->reads;
      last = uv_hrtime();
    }
  }
}

int ws_loop_backend_fd(const ws_loop *l) { return uv_backend_fd(&l->uv); }

int ws_loop_backend_timeout(const ws_loop *l) {
  return l->dirty ? 0 : uv_backend_timeout(&l->uv);
}

static size_t servers_alive(const ws_loop *l) {
  size_t n = 0;
  for (const ws_server *s = l->servers; s; s = s->loop_next) n += !s->done;
  return n;
}

size_t ws_loop_run_nowait(ws_loop *l, int *timeout_ms) {
  if (l->zombies) ws_srv_loop_reap(l);
  l->embedded = 1;
  l->in_run = 1;
  l->dirty = 0;
  if (l->ext_corked) { /* what tasks sent since the last turn leaves now */
    l->ext_corked = 0;
    ws_srv_cork_end(l);
  }
  int alive = uv_run(&l->uv, UV_RUN_NOWAIT);
  l->in_run = 0;
  if (l->zombies && !l->app_depth) ws_srv_loop_reap(l);
  if (timeout_ms) *timeout_ms = alive ? ws_loop_backend_timeout(l) : -1;
  return servers_alive(l);
}

void ws_loop_flush_soon(ws_loop *l) { l->flush_soon = 1; }

void ws_loop_flush(ws_loop *l) {
  l->flush_soon = 0;
  if (l->ext_corked && !l->in_run) {
    l->ext_corked = 0;
    ws_srv_cork_end(l);
  }
}

int ws_server_backend_fd(const ws_server *s) { return ws_loop_backend_fd(s->loop); }

int ws_server_backend_timeout(const ws_server *s) { return ws_loop_backend_timeout(s->loop); }

int ws_server_run_nowait(ws_server *s, int *timeout_ms) {
  ws_loop_run_nowait(s->loop, timeout_ms);
  if (s->done && timeout_ms) *timeout_ms = -1;
  return !s->done;
}

static void on_wait_timer(uv_timer_t *t) { (void)t; /* uv_run(ONCE) returns */ }

int ws_server_run_until(ws_server *s, const volatile int *flag, int timeout_ms) {
  if (s->finished) return -1;
  ws_loop *l = s->loop;
  uint64_t deadline = 0;
  if (timeout_ms >= 0) {
    uv_update_time(&l->uv);
    deadline = uv_now(&l->uv) + (uint64_t)timeout_ms;
  }
  int r = 0;
  for (;;) {
    if (flag ? *flag != 0 : s->nconns == 0) {
      r = 1;
      break;
    }
    uint64_t left = 0;
    if (timeout_ms >= 0) {
      uv_update_time(&l->uv);
      uint64_t now = uv_now(&l->uv);
      if (now >= deadline) break;
      left = deadline - now;
    }
    /* The blocking client's own read, when nothing else needs libuv. */
    if (ws_client_direct_wait(s, timeout_ms >= 0 ? (int)left : -1)) {
      if (s->finished) {
        r = flag && *flag ? 1 : -1;
        break;
      }
      continue;
    }
    if (timeout_ms >= 0) uv_timer_start(&l->wait_timer, on_wait_timer, left, 0);
    l->in_run = 1;
    int alive = uv_run(&l->uv, UV_RUN_ONCE);
    l->in_run = 0;
    if (!alive || s->finished) {
      r = flag && *flag ? 1 : -1;
      break;
    }
  }
  uv_timer_stop(&l->wait_timer);
  if (l->zombies) ws_srv_loop_reap(l);
  return r;
}

/* Runs until run_over (uv_stop from ws_srv_loop_server_done). */
static void run_loop(ws_loop *l, uint32_t busy_poll_us) {
  l->running = 1;
  l->in_run = 1;
  if (!run_over(l)) {
    if (busy_poll_us) run_busy(l, busy_poll_us);
    else uv_run(&l->uv, UV_RUN_DEFAULT);
  }
  l->running = 0;
  l->in_run = 0;
}

int ws_server_run(ws_server *s) {
  ws_loop *l = s->loop;
  if (l->running || l->in_run) return -1;
  if (s->cfg.handle_signals) ws_srv_loop_signals(l);
  l->run_for = s;
  run_loop(l, s->cfg.busy_poll_us);
  l->run_for = NULL;
  if (!s->finished) {
    ws_srv_poll_phase_end(l);
    s->finished = 1;
    ws_srv_pubsub_close(s); /* its handles close its own way */
    ws_srv_close_server_handles(s);
  }
  while (!s->done && uv_run(&l->uv, UV_RUN_ONCE)) continue; /* its close callbacks */
  if (l->zombies) ws_srv_loop_reap(l);
  return 0;
}

int ws_loop_run(ws_loop *l) {
  if (l->running || l->in_run) return -1;
  int signals = 0;
  uint32_t busy = 0;
  for (const ws_server *s = l->servers; s; s = s->loop_next) {
    if (s->freeing) continue;
    signals |= s->cfg.handle_signals;
    if (s->cfg.busy_poll_us > busy) busy = s->cfg.busy_poll_us;
  }
  if (signals) ws_srv_loop_signals(l);
  l->run_for = NULL;
  run_loop(l, busy);
  if (l->zombies) ws_srv_loop_reap(l);
  return 0;
}
