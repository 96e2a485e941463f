/* srv_timer.c - timers: each connection's one timer, armed for the nearest
 * of its deadlines (handshake, idle, ping, pong, close, throttle, deflate
 * idle); reads only record a timestamp, and the timer re-arms itself lazily
 * when it finds the deadline has moved. Application timers. The deflate
 * heap trim.
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

/* ---------- timers ---------- */


/* After traffic: a connection whose deflate streams just came alive starts
 * its idle watch (the timer may be armed for a later deadline). */
void ws_srv_pmd_note(ws_server_conn *c) {
  if (c->pmd_watch || c->phase != PH_OPEN || !c->ws.pmd) return;
  if (!c->server->cfg.compression_idle_ms || !ws_pmd_live(c->ws.pmd)) return;
  c->pmd_watch = 1;
  c->pmd_check_ms = uv_now(&c->server->loop->uv);
  ws_pmd_take_used(c->ws.pmd);
  ws_srv_arm_timer(c);
}

static uint64_t min_deadline(uint64_t a, uint64_t b) { return a == 0 ? b : (b && b < a ? b : a); }

static uint64_t conn_deadline(const ws_server_conn *c) {
  const ws_server_config *cfg = &c->server->cfg;
  uint64_t d = 0;
  switch (c->phase) {
  case PH_HANDSHAKE:
    if (cfg->handshake_timeout_ms) d = c->started_ms + cfg->handshake_timeout_ms;
    break;
  case PH_OPEN:
    if (c->ws.state == WS_CONN_CLOSING && cfg->close_timeout_ms)
      d = min_deadline(d, c->closing_ms + cfg->close_timeout_ms);
    /* Idle and ping deadlines act only while open: once closing, the close
     * timeout rules (and a past idle deadline must not re-fire forever). */
    if (c->ws.state == WS_CONN_OPEN && cfg->idle_timeout_ms)
      d = min_deadline(d, c->last_read_ms + cfg->idle_timeout_ms);
    if (c->ping_sent_ms && cfg->ping_timeout_ms)
      d = min_deadline(d, c->ping_sent_ms + cfg->ping_timeout_ms);
    else if (c->ws.state == WS_CONN_OPEN && cfg->ping_interval_ms)
      d = min_deadline(d, c->last_read_ms + cfg->ping_interval_ms);
    if (c->throttled) d = min_deadline(d, c->window_ms + 1000);
    if (c->held) d = min_deadline(d, c->wwindow_ms + 1000);
    if (c->pmd_watch) d = min_deadline(d, c->pmd_check_ms + cfg->compression_idle_ms);
    break;
  case PH_FLUSHING:
    d = c->closing_ms + (cfg->close_timeout_ms ? cfg->close_timeout_ms : 5000);
    break;
  default:
    break;
  }
  return d;
}

static void on_conn_timer(uv_timer_t *t);

/* zlib's blocks (4-8 KiB each) sit among everything else in malloc's heap:
 * given back, they stay in the process (glibc returns only the heap's top)
 * until the heap is trimmed. Idle releases come in waves (connections that
 * went quiet together): the heap is trimmed once 256 KiB were given back,
 * at most once a second (a trim walks the heap); what the bound holds back
 * is trimmed by trim_timer when the second is over. */
static void pmd_trim(ws_server *s) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  s->pmd_released = 0;
  s->pmd_trim_ms = uv_now(&s->loop->uv);
}

static void on_trim_timer(uv_timer_t *t) { pmd_trim(t->data); }

static void pmd_released(ws_server *s, size_t bytes, uint64_t now) {
  s->pmd_released += bytes;
  if (s->pmd_released < 256 * 1024) return;
  if (now >= s->pmd_trim_ms + 1000) pmd_trim(s);
  else if (!uv_is_active((uv_handle_t *)&s->trim_timer))
    uv_timer_start(&s->trim_timer, on_trim_timer, s->pmd_trim_ms + 1000 - now, 0);
}

void ws_srv_arm_timer(ws_server_conn *c) {
  if (c->phase == PH_CLOSED) return;
  uint64_t d = conn_deadline(c);
  if (d == 0) {
    uv_timer_stop(&c->timer);
    return;
  }
  if (c->server->loop->embedded && !c->server->loop->in_run) uv_update_time(&c->server->loop->uv);
  uint64_t now = uv_now(&c->server->loop->uv);
  uv_timer_start(&c->timer, on_conn_timer, d > now ? d - now : 0, 0);
  ws_srv_timer_touched(c->server->loop);
}

static void on_conn_timer(uv_timer_t *t) {
  ws_server_conn *c = t->data;
  ws_server *s = c->server;
  const ws_server_config *cfg = &s->cfg;
  uint64_t now = uv_now(&s->loop->uv);
  switch (c->phase) {
  case PH_HANDSHAKE:
    if (cfg->handshake_timeout_ms && now >= c->started_ms + cfg->handshake_timeout_ms) {
      if (c->cl) ws_client_int_timeout(c); /* the open timeout */
      else ws_srv_conn_destroy(c);
      return;
    }
    break;
  case PH_OPEN:
    if (c->ws.state == WS_CONN_CLOSING && cfg->close_timeout_ms &&
        now >= c->closing_ms + cfg->close_timeout_ms) {
      ws_conn_abort(&c->ws, 1006, "close handshake timed out", 25);
      ws_srv_conn_destroy(c);
      return;
    }
    if (c->ping_sent_ms && cfg->ping_timeout_ms && now >= c->ping_sent_ms + cfg->ping_timeout_ms) {
      ws_conn_abort(&c->ws, 1006, "keepalive ping timed out", 24);
      ws_srv_conn_destroy(c);
      return;
    }
    if (cfg->idle_timeout_ms && now >= c->last_read_ms + cfg->idle_timeout_ms &&
        c->ws.state == WS_CONN_OPEN) {
      ws_conn_close(&c->ws, 1001, "idle timeout", 12);
      c->closing_ms = now;
    }
    if (!c->ping_sent_ms && cfg->ping_interval_ms && c->ws.state == WS_CONN_OPEN &&
        now >= c->last_read_ms + cfg->ping_interval_ms) {
      if (ws_conn_ping(&c->ws, (const uint8_t *)"wsuv", 4) == 0) c->ping_sent_ms = now;
    }
    if (c->pmd_watch && now >= c->pmd_check_ms + cfg->compression_idle_ms) {
      /* A whole period without a compressed or inflated message: give the
       * streams back (see ws_pmd_release for what is kept). */
      if (!ws_pmd_take_used(c->ws.pmd)) pmd_released(s, ws_pmd_release(c->ws.pmd), now);
      c->pmd_watch = (uint8_t)ws_pmd_live(c->ws.pmd);
      c->pmd_check_ms = now;
    }
    if (c->held && now >= c->wwindow_ms + 1000) ws_srv_release_held(c, 0);
    if (c->phase != PH_OPEN) return; /* a held write failed */
    if (c->throttled && now >= c->window_ms + 1000) {
      c->throttled = 0;
      c->window_ms = now;
      c->window_bytes = 0;
      ws_srv_conn_resume_if_allowed(c);
    }
    break;
  case PH_FLUSHING:
    ws_srv_conn_destroy(c);
    return;
  default:
    return;
  }
  ws_srv_arm_timer(c);
}

/* ---------- application timers ---------- */

/* Each is one of its server's handles (s->handles) until closed. */
void ws_srv_on_app_timer_closed(uv_handle_t *h) {
  ws_server_timer *t = h->data;
  ws_server *s = t->server;
  free(t);
  ws_srv_handle_gone(s);
}

static void on_app_timer(uv_timer_t *t) {
  ws_server_timer *at = t->data;
  ws_server *s = at->server;
  uint64_t id = at->id;
  uv_close((uv_handle_t *)t, ws_srv_on_app_timer_closed);
  if (s->cb.on_timer) {
    ws_srv_app_turn(s->loop);
    ws_srv_cork_begin(s->loop);
    WS_SRV_APP_CALL(s->loop, s->cb.on_timer(s, id));
    ws_srv_cork_end(s->loop);
  }
}

ws_server_timer *ws_server_timer_start(ws_server *s, uint64_t ms, uint64_t id) {
  if (s->finished) return NULL;
  ws_server_timer *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->server = s;
  t->id = id;
  uv_timer_init(&s->loop->uv, &t->timer);
  t->timer.data = t;
  s->handles++;
  if (s->loop->embedded && !s->loop->in_run) uv_update_time(&s->loop->uv);
  uv_timer_start(&t->timer, on_app_timer, ms, 0);
  ws_srv_timer_touched(s->loop);
  return t;
}

void ws_server_timer_cancel(ws_server_timer *t) {
  if (t && !uv_is_closing((uv_handle_t *)&t->timer))
    uv_close((uv_handle_t *)&t->timer, ws_srv_on_app_timer_closed);
}
