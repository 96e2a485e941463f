/* loop.c - the loop: calls into the application (depth, deferred closes),
 * the message batch, the poll-phase hook, the run modes (own run, busy
 * polling, driven from another loop, run until a condition). See
 * server_int.h.
 */
#include "server_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

/* ---------- calls into the application ----------
 *
 * No application callback runs inside a call the application makes
 * (ws_server_conn_send, _close, broadcast, ...): every callback goes through
 * WS_SRV_APP_CALL, and while one runs, what an application call causes (a peer
 * dropped at write_limit, a close completed) is queued and reported when
 * the outermost callback returns, in order. The held batch is not delivered
 * inside a callback either (ws_srv_app_turn). */
/* Hands the gathered messages to the application (before any other event). */
void ws_srv_batch_flush(ws_server *s) {
  size_t n = s->batch_n;
  if (n == 0) return;
  s->batch_n = 0;
  s->arena_len = 0;
  WS_SRV_APP_CALL(s, s->cb.on_batch(s, s->batch, n, s->arena));
}

/* Reports on_close (or on_cancel) now, or queues it while a callback runs. */
void ws_srv_report_close(ws_server *s, ws_server_conn *c, int cancel, unsigned code,
                         const char *reason, size_t reason_len) {
  if (cancel ? !s->cb.on_cancel : !s->cb.on_close) return;
  if (s->app_depth) {
    deferred_close *d = malloc(sizeof *d + reason_len);
    if (d) {
      d->next = NULL;
      d->conn = c;
      d->cancel = cancel;
      d->code = code;
      d->reason_len = reason_len;
      if (reason_len) memcpy(d->reason, reason, reason_len);
      if (s->deferred_tail) s->deferred_tail->next = d;
      else s->deferred = d;
      s->deferred_tail = d;
      return;
    }
    /* Out of memory: reporting now beats never reporting. */
  }
  ws_srv_app_turn(s);
  if (cancel) WS_SRV_APP_CALL(s, s->cb.on_cancel(s, c));
  else WS_SRV_APP_CALL(s, s->cb.on_close(s, c, code, reason, reason_len));
}

void ws_srv_app_leave(ws_server *s) {
  if (--s->app_depth > 0) return;
  while (s->deferred) {
    deferred_close *d = s->deferred;
    s->deferred = d->next;
    if (!s->deferred) s->deferred_tail = NULL;
    ws_srv_app_turn(s);
    s->app_depth++;
    if (d->cancel) s->cb.on_cancel(s, d->conn);
    else s->cb.on_close(s, d->conn, d->code, d->reason, d->reason_len);
    free(d);
    s->app_depth--; /* the loop delivers what this callback queued */
  }
  if (s->shutdown_owed) {
    s->shutdown_owed = 0;
    ws_srv_app_turn(s);
    WS_SRV_APP_CALL(s, s->cb.on_shutdown(s));
  }
}

/* The poll phase is over (uv_check), or the loop is closing: the messages
 * of every read go to the application in one call, then every reply leaves,
 * one writev per connection. */
void ws_srv_poll_phase_end(ws_server *s) {
  ws_srv_app_turn(s);
  if (s->poll_corked) {
    s->poll_corked = 0;
    ws_srv_cork_end(s);
  }
}

void ws_srv_on_poll_end(uv_check_t *h) { ws_srv_poll_phase_end(h->data); }

/* busy_poll_us: while reads keep coming, poll without blocking (a spinning
 * CPU, but no sleep and wake-up between a request and the next); once none
 * came for busy_poll_us, block in epoll again. */
static void run_busy(ws_server *s) {
  const uint64_t window_ns = (uint64_t)s->cfg.busy_poll_us * 1000;
  uint64_t seen = s->reads, last = uv_hrtime();
  for (;;) {
    if (!uv_run(&s->loop, UV_RUN_NOWAIT)) return;
    uint64_t now = uv_hrtime();
    if (s->reads != seen) {
      seen = s->reads;
      last = now;
    } else if (now - last >= window_ns) {
      if (!uv_run(&s->loop, UV_RUN_ONCE)) return;
      seen = s->reads;
      last = uv_hrtime();
    }
  }
}

int ws_server_backend_fd(const ws_server *s) { return uv_backend_fd(&s->loop); }

int ws_server_backend_timeout(const ws_server *s) {
  return s->dirty ? 0 : uv_backend_timeout(&s->loop);
}

int ws_server_run_nowait(ws_server *s, int *timeout_ms) {
  s->embedded = 1;
  s->in_run = 1;
  s->dirty = 0;
  if (s->ext_corked) { /* what tasks sent since the last turn leaves now */
    s->ext_corked = 0;
    ws_srv_cork_end(s);
  }
  int alive = uv_run(&s->loop, UV_RUN_NOWAIT);
  s->in_run = 0;
  if (timeout_ms) *timeout_ms = alive ? ws_server_backend_timeout(s) : -1;
  return alive != 0;
}

static void on_wait_timer(uv_timer_t *t) { (void)t; /* uv_run(ONCE) returns */ }

int ws_server_run_until(ws_server *s, const volatile int *flag, int timeout_ms) {
  if (s->finished) return -1;
  uint64_t deadline = 0;
  if (timeout_ms >= 0) {
    uv_update_time(&s->loop);
    deadline = uv_now(&s->loop) + (uint64_t)timeout_ms;
  }
  int r = 0;
  for (;;) {
    if (flag ? *flag != 0 : s->nconns == 0) {
      r = 1;
      break;
    }
    if (timeout_ms >= 0) {
      uv_update_time(&s->loop);
      uint64_t now = uv_now(&s->loop);
      if (now >= deadline) break;
      uv_timer_start(&s->wait_timer, on_wait_timer, deadline - now, 0);
    }
    s->in_run = 1;
    int alive = uv_run(&s->loop, UV_RUN_ONCE);
    s->in_run = 0;
    if (!alive || s->finished) {
      r = flag && *flag ? 1 : -1;
      break;
    }
  }
  uv_timer_stop(&s->wait_timer);
  return r;
}

int ws_server_run(ws_server *s) {
  s->in_run = 1;
  if (s->cfg.handle_signals) {
    uv_signal_start(&s->sigint, ws_srv_on_signal, SIGINT);
    uv_signal_start(&s->sigterm, ws_srv_on_signal, SIGTERM);
  }
  if (s->cfg.busy_poll_us) run_busy(s);
  else uv_run(&s->loop, UV_RUN_DEFAULT);
  if (!s->finished) {
    ws_srv_poll_phase_end(s);
    s->finished = 1;
    ws_srv_pubsub_close(s); /* its handles close its own way */
    uv_walk(&s->loop, ws_srv_close_all_walk, s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
  }
  return 0;
}
