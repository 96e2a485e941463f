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

ws_server *ws_server_new_on(ws_loop *loop, const ws_server_config *cfg,
                            const ws_server_callbacks *cb, void *user) {
  ws_loop *l = loop ? loop : ws_loop_new();
  if (!l) return NULL;
  ws_server *s = calloc(1, sizeof *s);
  if (!s) {
    if (!loop) ws_loop_free(l);
    return NULL;
  }
  if (cfg) s->cfg = *cfg;
  else ws_server_config_default(&s->cfg);
  if (cb) s->cb = *cb;
  s->user = user;
  s->read_len = read_len_for(&s->cfg);
  s->drain_at = s->cfg.write_low_water ? s->cfg.write_low_water : s->cfg.write_high_water / 2;
  if (s->drain_at > s->cfg.write_high_water) s->drain_at = s->cfg.write_high_water;
  ws_pmd_ctx_init(&s->pmd_ctx, &s->cfg.pmd);
  s->batching = s->cb.on_batch && !s->cfg.echo;
  atomic_init(&s->stop_request, 0);
  atomic_init(&s->wake_request, 0);
  if (ws_srv_loop_attach(l, s) != 0) {
    free(s);
    if (!loop) ws_loop_free(l);
    return NULL;
  }
  if (!loop) l->own = 1; /* freed by the last server's ws_server_free */
  uv_timer_init(&l->uv, &s->shutdown_timer);
  s->shutdown_timer.data = s;
  uv_unref((uv_handle_t *)&s->shutdown_timer);
  uv_timer_init(&l->uv, &s->trim_timer);
  s->trim_timer.data = s;
  uv_unref((uv_handle_t *)&s->trim_timer);
  s->handles = 2;
  return s;
}

ws_server *ws_server_new(const ws_server_config *cfg, const ws_server_callbacks *cb, void *user) {
  return ws_server_new_on(NULL, cfg, cb, user);
}

ws_loop *ws_server_loop(const ws_server *s) { return s->loop; }

void *ws_server_user(const ws_server *s) { return s->user; }

int ws_server_done(const ws_server *s) { return s->done; }

void ws_srv_handle_gone(ws_server *s) {
  if (--s->handles > 0 || !s->finished || s->done) return;
  s->done = 1;
  if (s->freeing) {
    s->released = 1;
    s->loop->zombies++;
  }
  ws_srv_loop_server_done(s->loop, s);
}

void ws_srv_on_server_handle_closed(uv_handle_t *h) { ws_srv_handle_gone(h->data); }

/* Application timers own their memory: their handle is their first member
 * and their data points at themselves. */
static void close_app_timers(uv_handle_t *h, void *arg) {
  if (uv_is_closing(h) || h->type != UV_TIMER || h->data != (void *)h) return;
  if (((ws_server_timer *)h)->server == arg) uv_close(h, ws_srv_on_app_timer_closed);
}

void ws_srv_close_server_handles(ws_server *s) {
  for (int i = 0; i < s->nlisteners; i++)
    if (!uv_is_closing(&s->listeners[i].handle))
      uv_close(&s->listeners[i].handle, ws_srv_on_server_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&s->shutdown_timer))
    uv_close((uv_handle_t *)&s->shutdown_timer, ws_srv_on_server_handle_closed);
  if (!uv_is_closing((uv_handle_t *)&s->trim_timer))
    uv_close((uv_handle_t *)&s->trim_timer, ws_srv_on_server_handle_closed);
  uv_walk(&s->loop->uv, close_app_timers, s);
}

void ws_srv_maybe_finish_shutdown(ws_server *s) {
  if (s->finished || s->nconns > 0) return;
  ws_srv_poll_phase_end(s->loop); /* the batch and the cork before the handles go */
  s->finished = 1;
  ws_srv_pubsub_close(s); /* its handles close its own way */
  ws_srv_close_server_handles(s);
}

void ws_server_stop(ws_server *s, int graceful) {
  if (s->finished) return;
  ws_loop *l = s->loop;
  int first = !s->stopping;
  if (first || !graceful) s->stopping = graceful ? 1 : 2;
  if (first) {
    for (int i = 0; i < s->nlisteners; i++)
      if (!uv_is_closing(&s->listeners[i].handle))
        uv_close(&s->listeners[i].handle, ws_srv_on_server_handle_closed);
    if (s->cb.on_shutdown && l->app_depth) {
      if (!s->shutdown_owed) { /* stopped from a callback: reported when it returns */
        s->shutdown_owed = 1;
        l->shutdown_owed++;
      }
    } else if (s->cb.on_shutdown) {
      ws_srv_app_turn(l);
      WS_SRV_APP_CALL(l, s->cb.on_shutdown(s));
    }
  }
  if (graceful && first) {
    ws_server_conn *c = s->conns, *next;
    for (; c; c = next) {
      next = c->next;
      if (c->phase == PH_HANDSHAKE) ws_srv_conn_destroy(c);
      else if (c->phase == PH_OPEN && c->ws.state == WS_CONN_OPEN) {
        ws_conn_close(&c->ws, 1001, "server shutting down", 20);
        c->closing_ms = uv_now(&l->uv);
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
  if (!s || s->freeing) return;
  ws_loop *l = s->loop;
  s->freeing = 1; /* no callbacks from here on */
  ws_srv_loop_forget(l, s);
  if (!s->finished) {
    s->finished = 1;
    ws_server_conn *c = s->conns, *next;
    for (; c; c = next) {
      next = c->next;
      c->opened = 0; /* no callbacks while freeing */
      ws_srv_conn_destroy(c);
    }
    ws_srv_pubsub_close(s); /* its handles close its own way */
    ws_srv_close_server_handles(s);
  }
  if (s->done) {
    s->released = 1;
    l->zombies++;
  }
  /* A loop of its own goes with the last of its servers (more may have been
   * attached to it through ws_server_loop): it runs until the handles have
   * closed, and reaps this server. */
  if (l->own) ws_loop_free(l);
}

/* The server and every handle of it are gone: what it owns goes too. */
void ws_srv_server_release(ws_server *s) {
  for (int i = 0; i < 16; i++) ws_pmd_free(s->bcast[i]);
  ws_srv_topics_free(s);
  ws_srv_tls_free(s);
  ws_csprng_free(s->csprng);
  free(s);
}

int ws_server_wakeup(ws_server *s) {
  atomic_store(&s->wake_request, 1);
  return uv_async_send(&s->loop->async);
}

int ws_server_request_stop(ws_server *s, int graceful) {
  int want = graceful ? 1 : 2, cur = atomic_load(&s->stop_request);
  if (want > cur) atomic_store(&s->stop_request, want);
  return uv_async_send(&s->loop->async);
}

size_t ws_server_connection_count(const ws_server *s) { return s->nconns; }

uint64_t ws_server_now(const ws_server *s) { return uv_now(&s->loop->uv); }
