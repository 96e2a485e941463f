/* srv_read.c - the transport's read path: the engine's callbacks, reads,
 * the opening handshake of accepted connections. See server_int.h.
 *
 * One read buffer per server, reused for every read (reads are processed
 * synchronously). Messages go to the batch or to on_message; what the
 * engine writes goes to the write path (srv_write.c).
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

static void eng_message(ws_conn *e, unsigned opcode, const uint8_t *data, size_t len) {
  ws_server_conn *c = e->data;
  ws_server *s = c->server;
  if (s->cfg.echo) {
    ws_conn_send(e, opcode, data, len);
    return;
  }
  if (!c->opened) return;
  /* max_queue: the read path stops here, before libuv's next read. */
  if (c->q_high && ++c->q_len >= c->q_high && !c->q_full) {
    c->q_full = 1;
    if (c->reading) {
      uv_read_stop(&c->h.stream);
      c->reading = 0;
    }
  }
  ws_loop *l = s->loop;
  if (s->batching && len <= BATCH_MAX_MESSAGE) {
    if (l->batch_n == BATCH_MAX_ENTRIES || l->arena_len + len > BATCH_ARENA) ws_srv_batch_flush(l);
    if (l->batch_n == 0) l->batch_server = s;
    else if (l->batch_server != s) l->batch_mixed = 1;
    uint64_t *w = l->batch + l->batch_n * WS_SERVER_BATCH_WORDS;
    w[0] = (uint64_t)(uintptr_t)c;
    w[1] = opcode;
    w[2] = l->arena_len;
    w[3] = len;
    if (len) memcpy(l->arena + l->arena_len, data, len);
    l->arena_len += len;
    l->batch_n++;
    return;
  }
  ws_srv_app_turn(l);
  if (s->cb.on_message) WS_SRV_APP_CALL(l, s->cb.on_message(s, c, opcode, (const char *)data, len));
}

static void eng_control(ws_conn *e, unsigned opcode, const uint8_t *data, size_t len) {
  ws_server_conn *c = e->data;
  ws_server *s = c->server;
  if (s->cb.on_control && c->opened) {
    ws_srv_app_turn(s->loop);
    WS_SRV_APP_CALL(s->loop, s->cb.on_control(s, c, opcode, data, len));
  }
}

/* A client whose close handshake completed waits for the server to close
 * TCP first (RFC 6455 7.1.1: the server keeps TIME_WAIT): its writes go on,
 * it reads (and drops) until EOF, and close_timeout bounds the wait; then
 * the socket is closed (PH_FLUSHING's timer or ws_srv_on_read's EOF). */
static void client_linger(ws_server_conn *c) {
  if (c->corked) ws_srv_cork_flush(c->server->loop);
  if (c->held) ws_srv_release_held(c, 1);
  if (c->phase != PH_OPEN) return; /* the flush failed */
  if (c->tls) ws_srv_tls_close(c); /* close_notify after our close frame */
  if (c->phase != PH_OPEN) return;
  c->phase = PH_FLUSHING;
  c->closing_ms = uv_now(&c->server->loop->uv);
  if (!c->reading && uv_read_start(&c->h.stream, ws_srv_on_alloc, ws_srv_on_read) == 0) {
    c->reading = 1;
    ws_srv_loop_touched(c->server->loop);
  }
  ws_srv_arm_timer(c);
}

static void eng_closed(ws_conn *e, unsigned code, const char *reason, size_t reason_len,
                       int clean) {
  (void)clean;
  ws_server_conn *c = e->data;
  ws_server *s = c->server;
  ws_srv_topics_drop(c); /* closed: no more publishes to it */
  if (c->opened) {
    c->opened = 0;
    ws_srv_report_close(s, c, 0, code, reason, reason_len);
  }
  if (c->phase != PH_OPEN) return;
  if (c->cl && clean) client_linger(c);
  else ws_srv_conn_finish(c);
}

/* Assembly buffers: the smallest pooled one that fits, else a fresh one. */
static void *eng_buf_take(ws_conn *e, size_t need, size_t *cap) {
  ws_loop *l = ((ws_server_conn *)e->data)->server->loop;
  int best = -1;
  if (need >= POOL_MIN / 2) {
    for (int i = 0; i < POOL_SLOTS; i++)
      if (l->pool[i] && l->pool_cap[i] >= need && (best < 0 || l->pool_cap[i] < l->pool_cap[best]))
        best = i;
  }
  if (best >= 0) {
    void *p = l->pool[best];
    *cap = l->pool_cap[best];
    l->pool[best] = NULL;
    return p;
  }
  *cap = need;
  return malloc(need);
}

static void eng_buf_give(ws_conn *e, void *buf, size_t cap) {
  ws_loop *l = ((ws_server_conn *)e->data)->server->loop;
  if (cap >= POOL_MIN && cap <= POOL_MAX) {
    for (int i = 0; i < POOL_SLOTS; i++) {
      if (!l->pool[i]) {
        l->pool[i] = buf;
        l->pool_cap[i] = cap;
        return;
      }
    }
  }
  free(buf);
}

/* Assembly buffers are plain malloc blocks (pooled or not): grow in place
 * when the allocator can, so an inflating message never holds two copies. */
static void *eng_buf_resize(ws_conn *e, void *buf, size_t len, size_t need, size_t *cap) {
  (void)e;
  (void)len;
  void *p = realloc(buf, need);
  if (p) *cap = need;
  return p;
}

/* The engine is about to write a pong or close: deliver held messages first. */
static void eng_flush(ws_conn *e) {
  ws_server_conn *c = e->data;
  ws_srv_app_turn(c->server->loop);
}

static const ws_conn_callbacks engine_callbacks = {
    ws_srv_eng_write, eng_message, eng_control, eng_closed, eng_flush, eng_buf_take, eng_buf_give,
    eng_buf_resize, NULL};

/* The client role: the same, with mask keys from the server's CSPRNG pool. */
static const ws_conn_callbacks client_engine_callbacks = {
    ws_srv_eng_write, eng_message, eng_control, eng_closed, eng_flush, eng_buf_take, eng_buf_give,
    eng_buf_resize, ws_client_int_mask_key};

/* ---------- reading ---------- */

void ws_srv_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  ws_server_conn *c = h->data;
  ws_server *s = c->server;
  buf->base = s->loop->readbuf;
  size_t len = s->read_len;
  if (s->cfg.read_rate && c->phase == PH_OPEN) { /* no more than this window's budget */
    uint64_t used = uv_now(&s->loop->uv) >= c->window_ms + 1000 ? 0 : c->window_bytes;
    uint64_t left = used < s->cfg.read_rate ? s->cfg.read_rate - used : 0;
    if (left < len) len = left < READ_MIN ? READ_MIN : (size_t)left;
  }
  buf->len = len;
}


void ws_srv_conn_resume_if_allowed(ws_server_conn *c) {
  if (c->phase != PH_OPEN || c->reading || c->app_paused || c->throttled || c->q_full) return;
  if (c->full && c->server->cfg.echo) return;
  if (uv_read_start(&c->h.stream, ws_srv_on_alloc, ws_srv_on_read) == 0) {
    c->reading = 1;
    ws_srv_loop_touched(c->server->loop);
  }
}

void ws_srv_start_engine(ws_server_conn *c) {
  ws_server *s = c->server;
  if (c->cl) ws_conn_init_client(&c->ws, &client_engine_callbacks, &s->cfg.limits);
  else ws_conn_init(&c->ws, &engine_callbacks, &s->cfg.limits);
  c->ws.data = c;
  c->ws.want_control = s->cfg.want_control ? 1 : 0;
  int pmd_failed = c->pmd_on && ws_conn_enable_deflate(&c->ws, &s->pmd_ctx, &c->pmd_params) != 0;
  c->phase = PH_OPEN;
  c->last_read_ms = uv_now(&s->loop->uv);
  ws_handshake_free(c->hs);
  c->hs = NULL;
  c->opened = 1;
  if (s->cb.on_open) {
    ws_srv_app_turn(s->loop);
    WS_SRV_APP_CALL(s->loop, s->cb.on_open(s, c));
  }
  /* We announced the extension and cannot honour it. */
  if (pmd_failed && c->phase == PH_OPEN) ws_server_conn_close(c, 1011, "out of memory", 13);
  ws_srv_arm_timer(c);
}

static void handle_handshake(ws_server_conn *c, char *data, size_t len) {
  ws_server *s = c->server;
  size_t used = 0;
  int st = ws_handshake_execute(c->hs, data, len, &used);
  if (st == WS_HS_NEED_MORE) return;
  if (c->over_limit) {
    /* Past max_connections: answered once its request is read, as an HTTP
     * client expects (srv_listen.c). */
    ws_srv_refuse_busy(c);
    return;
  }
  if (st == WS_HS_FAIL) {
    const char *reason = ws_handshake_fail_reason(c->hs);
    int status = ws_handshake_fail_status(c->hs);
    ws_server_conn_reject(c, status, reason, strlen(reason), NULL, 0);
    return;
  }
  if (st == WS_HS_HTTP) {
    c->decision = DEC_NONE;
    if (s->cb.on_http) {
      ws_srv_app_turn(s->loop);
      WS_SRV_APP_CALL(s->loop, s->cb.on_http(s, c, c->hs));
    }
    if (c->phase == PH_HANDSHAKE && c->decision == DEC_NONE) {
      static const char msg[] = "this is a WebSocket server: send an Upgrade request";
      ws_server_conn_reject(c, 426, msg, sizeof msg - 1, NULL, 0);
    }
    return;
  }
  /* WS_HS_UPGRADE */
  c->decision = DEC_NONE;
  if (s->cb.on_request) {
    ws_srv_app_turn(s->loop);
    WS_SRV_APP_CALL(s->loop, s->cb.on_request(s, c, c->hs));
  }
  if (c->phase != PH_HANDSHAKE) return; /* the app closed it */
  if (c->decision == DEC_PENDING) {
    /* Decided later (an awaited on_connect): keep the client's first frames
     * and read nothing more until then; the handshake timeout still runs. */
    if (used < len) {
      c->early = malloc(sizeof *c->early + (len - used));
      if (!c->early) {
        ws_srv_conn_destroy(c);
        return;
      }
      memcpy(c->early->data, data + used, len - used);
      c->early->len = len - used;
    }
    if (c->reading) {
      uv_read_stop(&c->h.stream);
      c->reading = 0;
    }
    return;
  }
  if (c->decision == DEC_NONE) ws_server_conn_accept(c, NULL, 0, NULL, 0);
  if (c->decision != DEC_ACCEPT || c->phase != PH_HANDSHAKE) return;
  ws_srv_start_engine(c);
  if (used < len && c->phase == PH_OPEN) ws_conn_feed(&c->ws, (uint8_t *)data + used, len - used);
  ws_srv_pmd_note(c);
}

/* A pending decision became an accept: open, feed the kept bytes, read on. */
void ws_srv_open_after_pending(ws_server_conn *c) {
  ws_server *s = c->server;
  ws_srv_cork_begin(s->loop);
  ws_srv_start_engine(c);
  struct early_bytes *early = c->early;
  c->early = NULL;
  if (early && c->phase == PH_OPEN) ws_conn_feed(&c->ws, (uint8_t *)early->data, early->len);
  free(early);
  ws_srv_conn_resume_if_allowed(c);
  ws_srv_cork_end(s->loop);
}

void ws_srv_read_end(ws_server_conn *c, int err) {
  if (c->cl && c->phase == PH_HANDSHAKE) {
    ws_client_int_read_end(c, err); /* a refusal's body may end at EOF */
    return;
  }
  /* EOF or error: a WebSocket that ends without a close frame is 1006. */
  if (c->phase == PH_OPEN && c->ws.state != WS_CONN_CLOSED)
    ws_conn_abort(&c->ws, 1006, "connection closed without a close frame", 39);
  ws_srv_conn_destroy(c);
}

/* Plaintext read: the handshake's, or the engine's. */
void ws_srv_read_plain(ws_server_conn *c, char *data, size_t len) {
  if (c->phase == PH_HANDSHAKE) {
    if (c->cl) ws_client_int_read(c, data, len);
    else handle_handshake(c, data, len);
  } else if (c->phase == PH_OPEN) {
    ws_conn_feed(&c->ws, (uint8_t *)data, len);
    ws_srv_pmd_note(c);
  }
}

void ws_srv_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  ws_server_conn *c = st->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (c->tls) ws_srv_tls_read_end(c);
    ws_srv_read_end(c, (int)nread);
    return;
  }
  ws_server *s = c->server;
  ws_loop *l = s->loop;
  l->reads++;
  c->last_read_ms = uv_now(&s->loop->uv);
  /* A ping was answered (or anything read): the timer, armed for the pong
   * deadline, must move to the next ping (ping_timeout may exceed
   * ping_interval; reads otherwise re-arm lazily). */
  int pinged = c->ping_sent_ms != 0;
  c->ping_sent_ms = 0;
  ws_srv_cork_begin(s->loop);
  if (c->tls) ws_srv_tls_read(c, buf->base, (size_t)nread); /* then ws_srv_read_plain */
  else ws_srv_read_plain(c, buf->base, (size_t)nread);
  /* The messages wait for the end of the poll phase (on_poll_end), and the
   * replies stay corked until then: one Python call and one writev per
   * connection for all the reads of one epoll wake-up. */
  if (l->poll_corked) ws_srv_cork_end(l);
  else l->poll_corked = 1;
  if (pinged && c->phase == PH_OPEN) ws_srv_arm_timer(c);
  if (s->cfg.read_rate && c->phase == PH_OPEN) {
    uint64_t now = c->last_read_ms;
    if (now >= c->window_ms + 1000) {
      c->window_ms = now;
      c->window_bytes = 0;
    }
    c->window_bytes += (uint64_t)nread;
    if (c->window_bytes >= s->cfg.read_rate && c->reading) {
      c->throttled = 1;
      uv_read_stop(&c->h.stream);
      c->reading = 0;
      ws_srv_arm_timer(c);
    }
  }
}
