/* server.c - the server object: new, free, stop, wakeups, signals. See server.h.
 *
 * The transport is split by job (server_int.h lists the files); this one
 * creates a server, stops it (gracefully or at once) and frees it.
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
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "wsframe.h"


/* ---------- configuration ---------- */

void ws_server_config_default(ws_server_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->backlog = 511;
  cfg->tcp_nodelay = 1;
  ws_handshake_limits_default(&cfg->handshake);
  ws_conn_limits_default(&cfg->limits);
  cfg->handshake_timeout_ms = 10000;
  cfg->ping_interval_ms = 20000;
  cfg->ping_timeout_ms = 20000;
  cfg->close_timeout_ms = 5000;
  cfg->shutdown_timeout_ms = 5000;
  cfg->write_high_water = 1 << 20;
  cfg->write_limit = 16 << 20;
  cfg->handle_signals = 1;
  cfg->compression = 1;
  ws_pmd_config_default(&cfg->pmd);
  cfg->compression_idle_ms = 5000;
}

const char *ws_server_strerror(int err) { return uv_strerror(err); }

/* ---------- lifecycle ---------- */

static void on_async(uv_async_t *a) {
  ws_server *s = a->data;
  int req = atomic_exchange(&s->stop_request, 0);
  if (req) ws_server_stop(s, req == 1);
  if (s->cb.on_wakeup && !s->finished) {
    ws_srv_app_turn(s);
    ws_srv_cork_begin(s);
    WS_SRV_APP_CALL(s, s->cb.on_wakeup(s));
    ws_srv_cork_end(s);
  }
}

void ws_srv_on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  ws_server *s = h->data;
  /* The first signal drains gracefully; a second one stops at once. */
  ws_server_stop(s, s->stopping ? 0 : 1);
}

static void on_shutdown_timer(uv_timer_t *t) { ws_server_stop(t->data, 0); }

/* A peer that stops reading can leave write_high_water queued; the echo of
 * one more read then adds at most the read's size. Half the room between
 * the two keeps that under write_limit. */
static size_t read_len_for(const ws_server_config *cfg) {
  size_t len = READ_BUF_SIZE;
  if (cfg->write_limit) {
    size_t room = cfg->write_limit > cfg->write_high_water
                      ? (cfg->write_limit - cfg->write_high_water) / 2 : 0;
    if (room < len) len = room;
  }
  return len < READ_MIN ? READ_MIN : len;
}

ws_server *ws_server_new(const ws_server_config *cfg, const ws_server_callbacks *cb, void *user) {
  ws_server *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (cfg) s->cfg = *cfg;
  else ws_server_config_default(&s->cfg);
  if (cb) s->cb = *cb;
  s->user = user;
  s->read_len = read_len_for(&s->cfg);
  s->drain_at = s->cfg.write_low_water ? s->cfg.write_low_water : s->cfg.write_high_water / 2;
  if (s->drain_at > s->cfg.write_high_water) s->drain_at = s->cfg.write_high_water;
  ws_pmd_ctx_init(&s->pmd_ctx, &s->cfg.pmd);
  if (s->cb.on_batch && !s->cfg.echo) {
    s->batch = malloc(BATCH_MAX_ENTRIES * WS_SERVER_BATCH_WORDS * sizeof *s->batch);
    s->arena = malloc(BATCH_ARENA);
    if (!s->batch || !s->arena) {
      free(s->batch);
      free(s->arena);
      free(s);
      return NULL;
    }
  }
  atomic_init(&s->stop_request, 0);
  if (uv_loop_init(&s->loop) != 0) {
    free(s->batch);
    free(s->arena);
    free(s);
    return NULL;
  }
  s->loop.data = s;
  uv_async_init(&s->loop, &s->async, on_async);
  s->async.data = s;
  uv_timer_init(&s->loop, &s->shutdown_timer);
  s->shutdown_timer.data = s;
  uv_unref((uv_handle_t *)&s->shutdown_timer);
  uv_timer_init(&s->loop, &s->trim_timer);
  s->trim_timer.data = s;
  uv_unref((uv_handle_t *)&s->trim_timer);
  uv_timer_init(&s->loop, &s->wait_timer);
  s->wait_timer.data = s;
  uv_unref((uv_handle_t *)&s->wait_timer);
  uv_check_init(&s->loop, &s->poll_end);
  s->poll_end.data = s;
  uv_check_start(&s->poll_end, ws_srv_on_poll_end);
  uv_unref((uv_handle_t *)&s->poll_end);
  uv_signal_init(&s->loop, &s->sigint);
  uv_signal_init(&s->loop, &s->sigterm);
  s->sigint.data = s->sigterm.data = s;
  return s;
}

void *ws_server_user(const ws_server *s) { return s->user; }

void ws_srv_on_app_timer_closed(uv_handle_t *h) { free(h->data); }

void ws_srv_close_all_walk(uv_handle_t *h, void *arg) {
  ws_server *s = arg;
  if (uv_is_closing(h)) return;
  /* Application timers own their memory: their handle is their first member
   * and their data points at themselves. */
  if (h->type == UV_TIMER && h->data == (void *)h && h != (uv_handle_t *)&s->shutdown_timer) {
    uv_close(h, ws_srv_on_app_timer_closed);
    return;
  }
  uv_close(h, NULL);
}

void ws_srv_maybe_finish_shutdown(ws_server *s) {
  if (s->finished || s->nconns > 0) return;
  ws_srv_poll_phase_end(s); /* before its uv_check handle closes */
  s->finished = 1;
  ws_srv_pubsub_close(s); /* its handles close its own way */
    uv_walk(&s->loop, ws_srv_close_all_walk, s);
}

void ws_server_stop(ws_server *s, int graceful) {
  if (s->finished) return;
  int first = !s->stopping;
  if (first || !graceful) s->stopping = graceful ? 1 : 2;
  if (first) {
    for (int i = 0; i < s->nlisteners; i++)
      if (!uv_is_closing(&s->listeners[i].handle)) uv_close(&s->listeners[i].handle, NULL);
    if (s->cb.on_shutdown && s->app_depth) {
      s->shutdown_owed = 1; /* stopped from a callback: reported when it returns */
    } else if (s->cb.on_shutdown) {
      ws_srv_app_turn(s);
      WS_SRV_APP_CALL(s, s->cb.on_shutdown(s));
    }
  }
  if (graceful && first) {
    ws_server_conn *c = s->conns, *next;
    for (; c; c = next) {
      next = c->next;
      if (c->phase == PH_HANDSHAKE) ws_srv_conn_destroy(c);
      else if (c->phase == PH_OPEN && c->ws.state == WS_CONN_OPEN) {
        ws_conn_close(&c->ws, 1001, "server shutting down", 20);
        c->closing_ms = uv_now(&s->loop);
        ws_srv_arm_timer(c);
      }
    }
    if (s->cfg.shutdown_timeout_ms) {
      uv_ref((uv_handle_t *)&s->shutdown_timer);
      uv_timer_start(&s->shutdown_timer, on_shutdown_timer, s->cfg.shutdown_timeout_ms, 0);
    }
  } else if (!graceful) {
    ws_server_conn *c = s->conns, *next;
    for (; c; c = next) {
      next = c->next;
      if (c->phase == PH_OPEN && c->ws.state != WS_CONN_CLOSED)
        ws_conn_abort(&c->ws, 1001, "server stopped", 14);
      ws_srv_conn_destroy(c);
    }
  }
  ws_srv_maybe_finish_shutdown(s);
}

void ws_server_free(ws_server *s) {
  if (!s) return;
  if (!s->finished) {
    s->finished = 1;
    ws_server_conn *c = s->conns, *next;
    for (; c; c = next) {
      next = c->next;
      c->opened = 0; /* no callbacks while freeing */
      ws_srv_conn_destroy(c);
    }
    ws_srv_pubsub_close(s); /* its handles close its own way */
    uv_walk(&s->loop, ws_srv_close_all_walk, s);
  }
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
  while (s->deferred) { /* only if freed from inside a callback, which is not allowed */
    deferred_close *d = s->deferred;
    s->deferred = d->next;
    free(d);
  }
  free(s->batch);
  free(s->arena);
  free(s->cork_conns);
  for (int i = 0; i < POOL_SLOTS; i++) free(s->pool[i]);
  for (int i = 0; i < 16; i++) ws_pmd_free(s->bcast[i]);
  ws_srv_topics_free(s);
  ws_csprng_free(s->csprng);
  free(s);
}

int ws_server_wakeup(ws_server *s) { return uv_async_send(&s->async); }

int ws_server_request_stop(ws_server *s, int graceful) {
  int want = graceful ? 1 : 2, cur = atomic_load(&s->stop_request);
  if (want > cur) atomic_store(&s->stop_request, want);
  return uv_async_send(&s->async);
}

size_t ws_server_connection_count(const ws_server *s) { return s->nconns; }

uint64_t ws_server_now(const ws_server *s) { return uv_now(&s->loop); }
