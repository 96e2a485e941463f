/* server.c - libuv transport. See server.h.
 *
 * One read buffer per server, reused for every read (reads are processed
 * synchronously). Writes go out with uv_try_write first; only what the kernel
 * did not take is copied into a queued uv_write. Each connection has one
 * timer, armed for the nearest of its deadlines (handshake, idle, ping, pong,
 * close, throttle); reads only record a timestamp, and the timer re-arms
 * itself lazily when it finds the deadline has moved.
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

static const ws_conn_callbacks engine_callbacks;
static void pmd_note(ws_server_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* ---------- calls into the application ----------
 *
 * No application callback runs inside a call the application makes
 * (ws_server_conn_send, _close, broadcast, ...): every callback goes through
 * APP_CALL, and while one runs, what an application call causes (a peer
 * dropped at write_limit, a close completed) is queued and reported when
 * the outermost callback returns, in order. The held batch is not delivered
 * inside a callback either (app_turn). */
static void app_leave(ws_server *s);
static void report_close(ws_server *s, ws_server_conn *c, int cancel, unsigned code,
                         const char *reason, size_t reason_len);
#define APP_CALL(s, call) do { (s)->app_depth++; call; app_leave(s); } while (0)

/* Driven from another loop (ws_server_run_nowait), libuv registers new epoll
 * interest (a queued write, a read started) only at its next uv_run: inside a
 * run, ask for another turn (dirty); outside one (a call from an asyncio
 * task), wake the backend fd so the other loop runs us. */
static inline void loop_touched(ws_server *s) {
  if (!s->embedded) return;
  if (s->in_run) s->dirty = 1;
  else uv_async_send(&s->async);
}

void ws_srv_loop_touched(ws_server *s) { loop_touched(s); }

/* A timer started outside uv_run: the cached clock may be stale, and the
 * other loop's timeout must be recomputed. */
static inline void timer_touched(ws_server *s) {
  if (s->embedded && !s->in_run) uv_async_send(&s->async);
}

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

/* ---------- connection teardown ---------- */

static void conn_unlink(ws_server_conn *c) {
  ws_server *s = c->server;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->nconns--;
}

static void maybe_finish_shutdown(ws_server *s);

static void on_conn_handle_closed(uv_handle_t *h) {
  ws_server_conn *c = h->data;
  if (--c->handles_open) return;
  ws_server *s = c->server;
  ws_conn_free(&c->ws);
  if (c->hs) ws_handshake_free(c->hs);
  if (c->cl) ws_client_int_free(c->cl);
  ws_srv_tls_conn_free(c);
  free(c->early);
  while (c->held) { /* never submitted, so libuv does not own them */
    write_req *w = c->held;
    c->held = w->next;
    free(w);
  }
  free(c);
  if (s->stopping) maybe_finish_shutdown(s);
}

/* Closes the socket now, whatever is queued. */
static void conn_destroy(ws_server_conn *c) {
  if (c->phase == PH_CLOSED) return;
  if (c->cl && c->phase == PH_HANDSHAKE) ws_client_int_gone(c); /* on_connect_failed */
  int was_open = c->phase == PH_OPEN;
  c->phase = PH_CLOSED; /* its cork entries are skipped at the flush */
  ws_srv_topics_drop(c);
  if (c->decision == DEC_PENDING) {
    c->decision = DEC_NONE;
    report_close(c->server, c, 1, 0, NULL, 0); /* the application holds c: let go */
  }
  if (was_open && c->ws.state != WS_CONN_CLOSED)
    ws_conn_abort(&c->ws, 1006, "connection dropped", 18); /* reports on_close */
  conn_unlink(c);
  /* A client retrying another address has its stream closing already
   * (client.c counts that close). */
  if (!uv_is_closing(&c->h.handle)) uv_close(&c->h.handle, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_shutdown_done(uv_shutdown_t *req, int status) {
  (void)status;
  ws_server_conn *c = req->data;
  free(req);
  conn_destroy(c);
}

static void arm_timer(ws_server_conn *c);
static void cork_flush(ws_server *s);
static void cork_begin(ws_server *s);
static void cork_end(ws_server *s);
static void release_held(ws_server_conn *c, int all);
static inline void app_turn(ws_server *s);

/* Closes after the queued writes are flushed (FIN after our last byte);
 * close_timeout bounds the wait. */
static void conn_finish(ws_server_conn *c) {
  if (c->phase >= PH_FLUSHING) return;
  if (c->corked) cork_flush(c->server); /* its bytes go before the FIN */
  if (c->held) release_held(c, 1);      /* closing: the rate no longer holds them */
  if (c->phase >= PH_FLUSHING) return;  /* the flush failed */
  if (c->tls) ws_srv_tls_close(c);      /* close_notify before the FIN */
  if (c->phase >= PH_FLUSHING) return;
  c->phase = PH_FLUSHING;
  c->closing_ms = uv_now(&c->server->loop);
  if (c->reading) {
    uv_read_stop(&c->h.stream);
    c->reading = 0;
  }
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req || uv_shutdown(req, &c->h.stream, on_shutdown_done) != 0) {
    free(req);
    conn_destroy(c);
    return;
  }
  req->data = c;
  loop_touched(c->server);
  arm_timer(c);
}

/* ---------- writing ---------- */

static void conn_resume_if_allowed(ws_server_conn *c);

static void on_write_done(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  ws_server_conn *c = w->conn;
  c->queued -= w->len;
  free(w);
  if (status < 0) {
    conn_destroy(c);
    return;
  }
  if (c->full && c->queued <= c->server->drain_at) {
    c->full = 0;
    conn_resume_if_allowed(c);
    if (c->phase == PH_OPEN && c->opened && c->server->cb.on_drain) {
      app_turn(c->server);
      cork_begin(c->server);
      APP_CALL(c->server, c->server->cb.on_drain(c->server, c));
      cork_end(c->server);
    }
  }
}

/* Why a write failed, kept while a cork flush defers the consequences. */
enum doom { DOOM_NONE = 0, DOOM_WRITE_ERROR, DOOM_WRITE_LIMIT };

static const char *doom_reason(int doom) {
  return doom == DOOM_WRITE_LIMIT ? "write buffer limit exceeded" : "write failed";
}

/* A write failed: drop the connection, or mark it while a cork flush runs
 * (destroying reports on_close, and the application must not run then). */
static void conn_write_failed(ws_server_conn *c, int doom) {
  if (c->server->flushing) {
    if (!c->doomed) c->doomed = (uint8_t)doom;
    return;
  }
  const char *why = doom_reason(doom);
  if (c->phase == PH_OPEN && c->ws.state != WS_CONN_CLOSED)
    ws_conn_abort(&c->ws, 1006, why, strlen(why));
  conn_destroy(c);
}

/* After bytes were queued: crossing write_high_water makes the connection
 * "full" (on_drain once it empties). */
static void note_queued(ws_server_conn *c) {
  ws_server *s = c->server;
  if (!c->full && c->queued >= s->cfg.write_high_water) {
    c->full = 1;
    /* The built-in echo stops reading a peer that does not read its echoes. */
    if (s->cfg.echo && c->reading) {
      uv_read_stop(&c->h.stream);
      c->reading = 0;
    }
  }
}

/* write_rate: bytes beyond this second's budget are copied and held, in
 * order, until the connection's timer opens the next window. */
static int write_budget_ok(ws_server_conn *c, size_t len) {
  uint64_t rate = c->server->cfg.write_rate;
  uint64_t now = uv_now(&c->server->loop);
  if (now >= c->wwindow_ms + 1000) {
    c->wwindow_ms = now;
    c->wwindow_bytes = 0;
  }
  /* One write larger than a whole second's budget still goes, alone. */
  return c->wwindow_bytes == 0 || c->wwindow_bytes + len <= rate;
}

static void hold_write(ws_server_conn *c, const uv_buf_t *bufs, unsigned n, size_t total) {
  ws_server *s = c->server;
  if (s->cfg.write_limit && c->queued + total > s->cfg.write_limit) {
    conn_write_failed(c, DOOM_WRITE_LIMIT);
    return;
  }
  write_req *w = malloc(sizeof *w + total);
  if (!w) {
    conn_write_failed(c, DOOM_WRITE_ERROR);
    return;
  }
  w->conn = c;
  w->next = NULL;
  w->len = total;
  char *p = w->data;
  for (unsigned i = 0; i < n; i++) {
    if (bufs[i].len) memcpy(p, bufs[i].base, bufs[i].len);
    p += bufs[i].len;
  }
  if (c->held_tail) c->held_tail->next = w;
  else c->held = w;
  c->held_tail = w;
  c->queued += total;
  note_queued(c);
  arm_timer(c);
}

/* Submits held writes the budget allows (all of them when closing). */
static void release_held(ws_server_conn *c, int all) {
  while (c->held && c->phase < PH_CLOSED && (all || write_budget_ok(c, c->held->len))) {
    write_req *w = c->held;
    c->held = w->next;
    if (!c->held) c->held_tail = NULL;
    c->wwindow_bytes += w->len;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, &c->h.stream, &b, 1, on_write_done) != 0) {
      c->queued -= w->len;
      free(w);
      conn_write_failed(c, DOOM_WRITE_ERROR);
      return;
    }
    loop_touched(c->server);
  }
}

/* Writes bufs in order; queues what the kernel does not take now. */
static void conn_write_wire(ws_server_conn *c, const uv_buf_t *bufs, unsigned n) {
  if (c->phase >= PH_CLOSED) return;
  size_t total = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  if (total == 0) return;
  if (c->server->cfg.write_rate) {
    if (c->held || !write_budget_ok(c, total)) {
      hold_write(c, bufs, n, total);
      return;
    }
    c->wwindow_bytes += total;
  }
  size_t done = 0;
  int r = uv_try_write(&c->h.stream, bufs, n);
  if (r >= 0) {
    done = (size_t)r;
    if (done == total) return;
  } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
    conn_write_failed(c, DOOM_WRITE_ERROR);
    return;
  }
  size_t rest = total - done;
  ws_server *s = c->server;
  if (s->cfg.write_limit && c->queued + rest > s->cfg.write_limit) {
    /* The peer does not read: drop it rather than buffer without bound. */
    conn_write_failed(c, DOOM_WRITE_LIMIT);
    return;
  }
  write_req *w = malloc(sizeof *w + rest);
  if (!w) {
    conn_write_failed(c, DOOM_WRITE_ERROR);
    return;
  }
  w->conn = c;
  w->len = rest;
  char *p = w->data;
  size_t skip = done;
  for (unsigned i = 0; i < n; i++) {
    size_t len = bufs[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    memcpy(p, bufs[i].base + skip, len - skip);
    p += len - skip;
    skip = 0;
  }
  uv_buf_t b = uv_buf_init(w->data, (unsigned)rest);
  if (uv_write(&w->req, &c->h.stream, &b, 1, on_write_done) != 0) {
    free(w);
    conn_write_failed(c, DOOM_WRITE_ERROR);
    return;
  }
  c->queued += rest;
  loop_touched(s);
  note_queued(c);
}

/* The connection's bytes leave: encrypted first on a TLS connection. */
static void conn_write_now(ws_server_conn *c, const uv_buf_t *bufs, unsigned n) {
  if (c->phase >= PH_CLOSED) return;
  if (c->tls) ws_srv_tls_write(c, bufs, n);
  else conn_write_wire(c, bufs, n);
}

/* Sends everything the cork holds: one writev (of up to CORK_IOV pieces) per
 * connection, in the order the connections were first written to. */
static void cork_flush(ws_server *s) {
  if (s->cork_n == 0 || s->flushing) return;
  s->flushing = 1;
  uv_buf_t iov[CORK_IOV];
  for (size_t i = 0; i < s->cork_nconns; i++) {
    ws_server_conn *c = s->cork_conns[i];
    unsigned k = 0;
    for (uint32_t e = c->cork_head; e != CORK_NONE; e = s->cork_entries[e].next) {
      const cork_entry *ce = &s->cork_entries[e];
      iov[k++] = uv_buf_init(s->corkbuf + ce->off, ce->len);
      if (k == CORK_IOV) {
        conn_write_now(c, iov, k);
        k = 0;
      }
    }
    if (k) conn_write_now(c, iov, k);
    c->corked = 0;
  }
  size_t nconns = s->cork_nconns;
  s->cork_n = s->cork_len = s->cork_nconns = 0;
  s->flushing = 0;
  /* Now the application may hear of connections whose writes failed. The
   * list is walked from a copy: destroying one may write to others. */
  for (size_t i = 0; i < nconns; i++) {
    ws_server_conn *c = s->cork_conns[i];
    int doom = c->doomed;
    if (!doom) continue;
    c->doomed = DOOM_NONE;
    conn_write_failed(c, doom);
  }
}

static void cork_begin(ws_server *s) { s->corking++; }

static void cork_end(ws_server *s) {
  if (--s->corking == 0) cork_flush(s);
}

/* Copies bufs into the cork; returns the offset, or UINT32_MAX if full. */
static uint32_t cork_put(ws_server *s, const uv_buf_t *bufs, unsigned n, size_t total) {
  if (s->cork_len + total > CORK_SIZE || s->cork_n == CORK_ENTRIES) return UINT32_MAX;
  uint32_t off = (uint32_t)s->cork_len;
  for (unsigned i = 0; i < n; i++) {
    if (bufs[i].len) memcpy(s->corkbuf + s->cork_len, bufs[i].base, bufs[i].len);
    s->cork_len += bufs[i].len;
  }
  return off;
}

/* Appends an entry for c; 0, or -1 if the cork has no room (flush first). */
static int cork_add(ws_server *s, ws_server_conn *c, uint32_t off, size_t len) {
  if (s->cork_n == CORK_ENTRIES) return -1;
  if (!c->corked) {
    if (s->cork_nconns == s->cork_conns_cap) {
      size_t cap = s->cork_conns_cap ? s->cork_conns_cap * 2 : 64;
      ws_server_conn **p = realloc(s->cork_conns, cap * sizeof *p);
      if (!p) return -1;
      s->cork_conns = p;
      s->cork_conns_cap = cap;
    }
    s->cork_conns[s->cork_nconns++] = c;
  }
  uint32_t idx = (uint32_t)s->cork_n++;
  cork_entry *e = &s->cork_entries[idx];
  e->conn = c;
  e->off = off;
  e->len = (uint32_t)len;
  e->next = CORK_NONE;
  if (c->corked) s->cork_entries[c->cork_tail].next = idx;
  else c->cork_head = idx;
  c->cork_tail = idx;
  c->corked = 1;
  return 0;
}

/* Writes bufs in order: into the cork while corking (small pieces), else at
 * once (after what the cork holds, so the order on every connection holds). */
static void conn_write(ws_server_conn *c, const uv_buf_t *bufs, unsigned n) {
  ws_server *s = c->server;
  if (c->phase >= PH_CLOSED) return;
  if (s->embedded && !s->in_run && !s->ext_corked && !s->flushing) {
    /* Sends from asyncio tasks between turns gather like replies inside a
     * turn: one writev per connection when the next turn starts, which the
     * wake-up asks for at once. */
    s->ext_corked = 1;
    cork_begin(s);
    uv_async_send(&s->async);
  }
  if (s->corking && !s->flushing) {
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += bufs[i].len;
    if (total == 0) return;
    if (total <= CORK_MAX_PIECE) {
      uint32_t off = cork_put(s, bufs, n, total);
      if (off == UINT32_MAX) {
        cork_flush(s);
        off = cork_put(s, bufs, n, total);
      }
      if (off != UINT32_MAX && cork_add(s, c, off, total) == 0) return;
    }
    cork_flush(s);
  }
  conn_write_now(c, bufs, n);
}

static void conn_write_raw(ws_server_conn *c, const char *data, size_t len) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  conn_write(c, &b, 1);
}

/* ---------- engine callbacks ---------- */

static void eng_write(ws_conn *e, const ws_conn_buf *bufs, size_t n) {
  ws_server_conn *c = e->data;
  uv_buf_t b[2];
  unsigned k = 0;
  for (size_t i = 0; i < n && k < 2; i++) {
    if (bufs[i].len) b[k++] = uv_buf_init((char *)bufs[i].base, (unsigned)bufs[i].len);
  }
  conn_write(c, b, k);
}

/* Hands the gathered messages to the application (before any other event). */
static void batch_flush(ws_server *s) {
  size_t n = s->batch_n;
  if (n == 0) return;
  s->batch_n = 0;
  s->arena_len = 0;
  APP_CALL(s, s->cb.on_batch(s, s->batch, n, s->arena));
}

/* The application is about to see another event: messages first (unless
 * it is inside a callback: they wait for the next turn). */
static inline void app_turn(ws_server *s) {
  if (s->batch_n && !s->app_depth) batch_flush(s);
}

/* Reports on_close (or on_cancel) now, or queues it while a callback runs. */
static void report_close(ws_server *s, ws_server_conn *c, int cancel, unsigned code,
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
  app_turn(s);
  if (cancel) APP_CALL(s, s->cb.on_cancel(s, c));
  else APP_CALL(s, s->cb.on_close(s, c, code, reason, reason_len));
}

static void app_leave(ws_server *s) {
  if (--s->app_depth > 0) return;
  while (s->deferred) {
    deferred_close *d = s->deferred;
    s->deferred = d->next;
    if (!s->deferred) s->deferred_tail = NULL;
    app_turn(s);
    s->app_depth++;
    if (d->cancel) s->cb.on_cancel(s, d->conn);
    else s->cb.on_close(s, d->conn, d->code, d->reason, d->reason_len);
    free(d);
    s->app_depth--; /* the loop delivers what this callback queued */
  }
  if (s->shutdown_owed) {
    s->shutdown_owed = 0;
    app_turn(s);
    APP_CALL(s, s->cb.on_shutdown(s));
  }
}

/* The poll phase is over (uv_check), or the loop is closing: the messages
 * of every read go to the application in one call, then every reply leaves,
 * one writev per connection. */
static void poll_phase_end(ws_server *s) {
  app_turn(s);
  if (s->poll_corked) {
    s->poll_corked = 0;
    cork_end(s);
  }
}

static void on_poll_end(uv_check_t *h) { poll_phase_end(h->data); }

static void eng_message(ws_conn *e, unsigned opcode, const uint8_t *data, size_t len) {
  ws_server_conn *c = e->data;
  ws_server *s = c->server;
  if (s->cfg.echo) {
    ws_conn_send(e, opcode, data, len);
    return;
  }
  if (!c->opened) return;
  if (s->batch && len <= BATCH_MAX_MESSAGE) {
    if (s->batch_n == BATCH_MAX_ENTRIES || s->arena_len + len > BATCH_ARENA) batch_flush(s);
    uint64_t *w = s->batch + s->batch_n * WS_SERVER_BATCH_WORDS;
    w[0] = (uint64_t)(uintptr_t)c;
    w[1] = opcode;
    w[2] = s->arena_len;
    w[3] = len;
    if (len) memcpy(s->arena + s->arena_len, data, len);
    s->arena_len += len;
    s->batch_n++;
    return;
  }
  app_turn(s);
  if (s->cb.on_message) APP_CALL(s, s->cb.on_message(s, c, opcode, (const char *)data, len));
}

static void eng_control(ws_conn *e, unsigned opcode, const uint8_t *data, size_t len) {
  ws_server_conn *c = e->data;
  ws_server *s = c->server;
  if (s->cb.on_control && c->opened) {
    app_turn(s);
    APP_CALL(s, s->cb.on_control(s, c, opcode, data, len));
  }
}

/* A client whose close handshake completed waits for the server to close
 * TCP first (RFC 6455 7.1.1: the server keeps TIME_WAIT): its writes go on,
 * it reads (and drops) until EOF, and close_timeout bounds the wait; then
 * the socket is closed (PH_FLUSHING's timer or on_read's EOF). */
static void client_linger(ws_server_conn *c) {
  if (c->corked) cork_flush(c->server);
  if (c->held) release_held(c, 1);
  if (c->phase != PH_OPEN) return; /* the flush failed */
  if (c->tls) ws_srv_tls_close(c); /* close_notify after our close frame */
  if (c->phase != PH_OPEN) return;
  c->phase = PH_FLUSHING;
  c->closing_ms = uv_now(&c->server->loop);
  if (!c->reading && uv_read_start(&c->h.stream, on_alloc, on_read) == 0) {
    c->reading = 1;
    loop_touched(c->server);
  }
  arm_timer(c);
}

static void eng_closed(ws_conn *e, unsigned code, const char *reason, size_t reason_len,
                       int clean) {
  (void)clean;
  ws_server_conn *c = e->data;
  ws_server *s = c->server;
  ws_srv_topics_drop(c); /* closed: no more publishes to it */
  if (c->opened) {
    c->opened = 0;
    report_close(s, c, 0, code, reason, reason_len);
  }
  if (c->phase != PH_OPEN) return;
  if (c->cl && clean) client_linger(c);
  else conn_finish(c);
}

/* Assembly buffers: the smallest pooled one that fits, else a fresh one. */
static void *eng_buf_take(ws_conn *e, size_t need, size_t *cap) {
  ws_server *s = ((ws_server_conn *)e->data)->server;
  int best = -1;
  if (need >= POOL_MIN / 2) {
    for (int i = 0; i < POOL_SLOTS; i++)
      if (s->pool[i] && s->pool_cap[i] >= need && (best < 0 || s->pool_cap[i] < s->pool_cap[best]))
        best = i;
  }
  if (best >= 0) {
    void *p = s->pool[best];
    *cap = s->pool_cap[best];
    s->pool[best] = NULL;
    return p;
  }
  *cap = need;
  return malloc(need);
}

static void eng_buf_give(ws_conn *e, void *buf, size_t cap) {
  ws_server *s = ((ws_server_conn *)e->data)->server;
  if (cap >= POOL_MIN && cap <= POOL_MAX) {
    for (int i = 0; i < POOL_SLOTS; i++) {
      if (!s->pool[i]) {
        s->pool[i] = buf;
        s->pool_cap[i] = cap;
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
  app_turn(c->server);
}

static const ws_conn_callbacks engine_callbacks = {
    eng_write, eng_message, eng_control, eng_closed, eng_flush, eng_buf_take, eng_buf_give,
    eng_buf_resize, NULL};

/* The client role: the same, with mask keys from the server's CSPRNG pool. */
static const ws_conn_callbacks client_engine_callbacks = {
    eng_write, eng_message, eng_control, eng_closed, eng_flush, eng_buf_take, eng_buf_give,
    eng_buf_resize, ws_client_int_mask_key};

/* ---------- timers ---------- */

static void arm_timer(ws_server_conn *c);

/* After traffic: a connection whose deflate streams just came alive starts
 * its idle watch (the timer may be armed for a later deadline). */
static void pmd_note(ws_server_conn *c) {
  if (c->pmd_watch || c->phase != PH_OPEN || !c->ws.pmd) return;
  if (!c->server->cfg.compression_idle_ms || !ws_pmd_live(c->ws.pmd)) return;
  c->pmd_watch = 1;
  c->pmd_check_ms = uv_now(&c->server->loop);
  ws_pmd_take_used(c->ws.pmd);
  arm_timer(c);
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
  s->pmd_trim_ms = uv_now(&s->loop);
}

static void on_trim_timer(uv_timer_t *t) { pmd_trim(t->data); }

static void pmd_released(ws_server *s, size_t bytes, uint64_t now) {
  s->pmd_released += bytes;
  if (s->pmd_released < 256 * 1024) return;
  if (now >= s->pmd_trim_ms + 1000) pmd_trim(s);
  else if (!uv_is_active((uv_handle_t *)&s->trim_timer))
    uv_timer_start(&s->trim_timer, on_trim_timer, s->pmd_trim_ms + 1000 - now, 0);
}

static void arm_timer(ws_server_conn *c) {
  if (c->phase == PH_CLOSED) return;
  uint64_t d = conn_deadline(c);
  if (d == 0) {
    uv_timer_stop(&c->timer);
    return;
  }
  if (c->server->embedded && !c->server->in_run) uv_update_time(&c->server->loop);
  uint64_t now = uv_now(&c->server->loop);
  uv_timer_start(&c->timer, on_conn_timer, d > now ? d - now : 0, 0);
  timer_touched(c->server);
}

static void on_conn_timer(uv_timer_t *t) {
  ws_server_conn *c = t->data;
  ws_server *s = c->server;
  const ws_server_config *cfg = &s->cfg;
  uint64_t now = uv_now(&s->loop);
  switch (c->phase) {
  case PH_HANDSHAKE:
    if (cfg->handshake_timeout_ms && now >= c->started_ms + cfg->handshake_timeout_ms) {
      if (c->cl) ws_client_int_timeout(c); /* the open timeout */
      else conn_destroy(c);
      return;
    }
    break;
  case PH_OPEN:
    if (c->ws.state == WS_CONN_CLOSING && cfg->close_timeout_ms &&
        now >= c->closing_ms + cfg->close_timeout_ms) {
      ws_conn_abort(&c->ws, 1006, "close handshake timed out", 25);
      conn_destroy(c);
      return;
    }
    if (c->ping_sent_ms && cfg->ping_timeout_ms && now >= c->ping_sent_ms + cfg->ping_timeout_ms) {
      ws_conn_abort(&c->ws, 1006, "keepalive ping timed out", 24);
      conn_destroy(c);
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
    if (c->held && now >= c->wwindow_ms + 1000) release_held(c, 0);
    if (c->phase != PH_OPEN) return; /* a held write failed */
    if (c->throttled && now >= c->window_ms + 1000) {
      c->throttled = 0;
      c->window_ms = now;
      c->window_bytes = 0;
      conn_resume_if_allowed(c);
    }
    break;
  case PH_FLUSHING:
    conn_destroy(c);
    return;
  default:
    return;
  }
  arm_timer(c);
}

/* ---------- reading ---------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  ws_server_conn *c = h->data;
  ws_server *s = c->server;
  buf->base = s->readbuf;
  size_t len = s->read_len;
  if (s->cfg.read_rate && c->phase == PH_OPEN) { /* no more than this window's budget */
    uint64_t used = uv_now(&s->loop) >= c->window_ms + 1000 ? 0 : c->window_bytes;
    uint64_t left = used < s->cfg.read_rate ? s->cfg.read_rate - used : 0;
    if (left < len) len = left < READ_MIN ? READ_MIN : (size_t)left;
  }
  buf->len = len;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void conn_resume_if_allowed(ws_server_conn *c) {
  if (c->phase != PH_OPEN || c->reading || c->app_paused || c->throttled) return;
  if (c->full && c->server->cfg.echo) return;
  if (uv_read_start(&c->h.stream, on_alloc, on_read) == 0) {
    c->reading = 1;
    loop_touched(c->server);
  }
}

static void start_engine(ws_server_conn *c) {
  ws_server *s = c->server;
  if (c->cl) ws_conn_init_client(&c->ws, &client_engine_callbacks, &s->cfg.limits);
  else ws_conn_init(&c->ws, &engine_callbacks, &s->cfg.limits);
  c->ws.data = c;
  c->ws.want_control = s->cfg.want_control ? 1 : 0;
  int pmd_failed = c->pmd_on && ws_conn_enable_deflate(&c->ws, &s->pmd_ctx, &c->pmd_params) != 0;
  c->phase = PH_OPEN;
  c->last_read_ms = uv_now(&s->loop);
  ws_handshake_free(c->hs);
  c->hs = NULL;
  c->opened = 1;
  if (s->cb.on_open) {
    app_turn(s);
    APP_CALL(s, s->cb.on_open(s, c));
  }
  /* We announced the extension and cannot honour it. */
  if (pmd_failed && c->phase == PH_OPEN) ws_server_conn_close(c, 1011, "out of memory", 13);
  arm_timer(c);
}

static void handle_handshake(ws_server_conn *c, char *data, size_t len) {
  ws_server *s = c->server;
  size_t used = 0;
  int st = ws_handshake_execute(c->hs, data, len, &used);
  if (st == WS_HS_NEED_MORE) return;
  if (st == WS_HS_FAIL) {
    const char *reason = ws_handshake_fail_reason(c->hs);
    int status = ws_handshake_fail_status(c->hs);
    ws_server_conn_reject(c, status, reason, strlen(reason), NULL, 0);
    return;
  }
  if (st == WS_HS_HTTP) {
    c->decision = DEC_NONE;
    if (s->cb.on_http) {
      app_turn(s);
      APP_CALL(s, s->cb.on_http(s, c, c->hs));
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
    app_turn(s);
    APP_CALL(s, s->cb.on_request(s, c, c->hs));
  }
  if (c->phase != PH_HANDSHAKE) return; /* the app closed it */
  if (c->decision == DEC_PENDING) {
    /* Decided later (an awaited on_connect): keep the client's first frames
     * and read nothing more until then; the handshake timeout still runs. */
    if (used < len) {
      c->early = malloc(sizeof *c->early + (len - used));
      if (!c->early) {
        conn_destroy(c);
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
  start_engine(c);
  if (used < len && c->phase == PH_OPEN) ws_conn_feed(&c->ws, (uint8_t *)data + used, len - used);
  pmd_note(c);
}

/* A pending decision became an accept: open, feed the kept bytes, read on. */
static void open_after_pending(ws_server_conn *c) {
  ws_server *s = c->server;
  cork_begin(s);
  start_engine(c);
  struct early_bytes *early = c->early;
  c->early = NULL;
  if (early && c->phase == PH_OPEN) ws_conn_feed(&c->ws, (uint8_t *)early->data, early->len);
  free(early);
  conn_resume_if_allowed(c);
  cork_end(s);
}

static void read_end(ws_server_conn *c, int err) {
  if (c->cl && c->phase == PH_HANDSHAKE) {
    ws_client_int_read_end(c, err); /* a refusal's body may end at EOF */
    return;
  }
  /* EOF or error: a WebSocket that ends without a close frame is 1006. */
  if (c->phase == PH_OPEN && c->ws.state != WS_CONN_CLOSED)
    ws_conn_abort(&c->ws, 1006, "connection closed without a close frame", 39);
  conn_destroy(c);
}

/* Plaintext read: the handshake's, or the engine's. */
static void read_plain(ws_server_conn *c, char *data, size_t len) {
  if (c->phase == PH_HANDSHAKE) {
    if (c->cl) ws_client_int_read(c, data, len);
    else handle_handshake(c, data, len);
  } else if (c->phase == PH_OPEN) {
    ws_conn_feed(&c->ws, (uint8_t *)data, len);
    pmd_note(c);
  }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  ws_server_conn *c = st->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (c->tls) ws_srv_tls_read_end(c);
    read_end(c, (int)nread);
    return;
  }
  ws_server *s = c->server;
  s->reads++;
  c->last_read_ms = uv_now(&s->loop);
  /* A ping was answered (or anything read): the timer, armed for the pong
   * deadline, must move to the next ping (ping_timeout may exceed
   * ping_interval; reads otherwise re-arm lazily). */
  int pinged = c->ping_sent_ms != 0;
  c->ping_sent_ms = 0;
  cork_begin(s);
  if (c->tls) ws_srv_tls_read(c, buf->base, (size_t)nread); /* then read_plain */
  else read_plain(c, buf->base, (size_t)nread);
  /* The messages wait for the end of the poll phase (on_poll_end), and the
   * replies stay corked until then: one Python call and one writev per
   * connection for all the reads of one epoll wake-up. */
  if (s->poll_corked) cork_end(s);
  else s->poll_corked = 1;
  if (pinged && c->phase == PH_OPEN) arm_timer(c);
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
      arm_timer(c);
    }
  }
}

/* ---------- accepting ---------- */

static void set_socket_options(ws_server *s, ws_server_conn *c) {
  if (c->is_pipe) return;
  if (s->cfg.tcp_nodelay) uv_tcp_nodelay(&c->h.tcp, 1);
  if (s->cfg.tcp_keepalive > 0) uv_tcp_keepalive(&c->h.tcp, 1, (unsigned)s->cfg.tcp_keepalive);
}

void ws_srv_conn_link(ws_server *s, ws_server_conn *c) {
  c->id = ++s->next_id;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
}

static void on_connection(uv_stream_t *listener, int status) {
  ws_server *s = listener->data;
  if (status < 0 || s->stopping) return;
  ws_server_conn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->server = s;
  c->is_pipe = listener->type == UV_NAMED_PIPE;
  int r = c->is_pipe ? uv_pipe_init(&s->loop, &c->h.pipe, 0) : uv_tcp_init(&s->loop, &c->h.tcp);
  if (r != 0) {
    free(c);
    return;
  }
  uv_timer_init(&s->loop, &c->timer);
  c->h.handle.data = c;
  c->timer.data = c;
  c->handles_open = 2;
  ws_srv_conn_link(s, c);
  c->phase = PH_HANDSHAKE;
  if (uv_accept(listener, &c->h.stream) != 0) {
    conn_destroy(c);
    return;
  }
  set_socket_options(s, c);
  c->started_ms = uv_now(&s->loop);
  if (ws_srv_tls_accept(c) != 0) { /* TLS from the first byte, when configured */
    conn_destroy(c);
    return;
  }
  if (s->cfg.max_connections && s->nconns > s->cfg.max_connections) {
    static const char msg[] = "too many connections";
    ws_server_conn_reject(c, 503, msg, sizeof msg - 1, NULL, 0);
    return;
  }
  c->hs = ws_handshake_new(&s->cfg.handshake);
  if (!c->hs || uv_read_start(&c->h.stream, on_alloc, on_read) != 0) {
    conn_destroy(c);
    return;
  }
  c->reading = 1;
  loop_touched(s);
  arm_timer(c);
}

/* ---------- listeners ---------- */

static union stream_handle *new_listener(ws_server *s) {
  if (s->nlisteners >= MAX_LISTENERS) return NULL;
  return &s->listeners[s->nlisteners];
}

static int start_listener(ws_server *s, union stream_handle *l) {
  l->handle.data = s;
  int r = uv_listen(&l->stream, s->cfg.backlog, on_connection);
  if (r != 0) {
    uv_close(&l->handle, NULL);
    return r;
  }
  s->nlisteners++;
  return 0;
}

int ws_server_listen_tcp(ws_server *s, const char *host, int port, int *bound_port) {
  union stream_handle *l = new_listener(s);
  if (!l) return UV_ENOBUFS;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  int r = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (r != 0) r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  if (r != 0) return r;
  r = uv_tcp_init_ex(&s->loop, &l->tcp, ss.ss_family);
  if (r != 0) return r;
  if (s->cfg.reuseport) {
    /* libuv 1.44 has no UV_TCP_REUSEPORT: set it on the socket ourselves. */
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno(&l->handle, &fd) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      uv_close(&l->handle, NULL);
      return UV_EINVAL;
    }
  }
  r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
  if (r == 0) r = start_listener(s, l);
  else uv_close(&l->handle, NULL);
  if (r != 0) return r;
  if (bound_port) {
    struct sockaddr_storage got;
    int n = sizeof got;
    *bound_port = 0;
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&got, &n) == 0)
      *bound_port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                    : ((struct sockaddr_in *)&got)->sin_port);
  }
  return 0;
}

/* libuv turns bind(2)'s ENOENT into EACCES (for Windows' sake, in
 * src/unix/pipe.c), so a missing directory read "permission denied". When
 * the directory of path is missing or not a directory, return what stat(2)
 * says about it instead; a real EACCES (the directory exists) stays. */
static int unix_bind_error(const char *path, int r) {
  char dir[4096];
  size_t n = strlen(path);
  if (r != UV_EACCES || n >= sizeof dir) return r;
  memcpy(dir, path, n + 1);
  char *slash = strrchr(dir, '/');
  if (!slash) return r; /* relative to the cwd, which exists */
  if (slash == dir) slash[1] = '\0';
  else *slash = '\0';
  struct stat st;
  if (stat(dir, &st) != 0) return uv_translate_sys_error(errno);
  return S_ISDIR(st.st_mode) ? r : UV_ENOTDIR;
}

int ws_server_listen_unix(ws_server *s, const char *path) {
  union stream_handle *l = new_listener(s);
  if (!l) return UV_ENOBUFS;
  int r = uv_pipe_init(&s->loop, &l->pipe, 0);
  if (r != 0) return r;
  r = uv_pipe_bind(&l->pipe, path);
  if (r != 0) {
    uv_close(&l->handle, NULL);
    return unix_bind_error(path, r);
  }
  return start_listener(s, l);
}

int ws_server_listen_fd(ws_server *s, int fd) {
  union stream_handle *l = new_listener(s);
  if (!l) return UV_ENOBUFS;
  struct sockaddr_storage ss;
  socklen_t n = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &n) != 0) return uv_translate_sys_error(errno);
  int r;
  if (ss.ss_family == AF_UNIX) {
    r = uv_pipe_init(&s->loop, &l->pipe, 0);
    if (r == 0 && (r = uv_pipe_open(&l->pipe, fd)) != 0) uv_close(&l->handle, NULL);
  } else {
    r = uv_tcp_init(&s->loop, &l->tcp);
    if (r == 0 && (r = uv_tcp_open(&l->tcp, fd)) != 0) uv_close(&l->handle, NULL);
  }
  if (r != 0) return r;
  return start_listener(s, l);
}

/* ---------- lifecycle ---------- */

static void on_async(uv_async_t *a) {
  ws_server *s = a->data;
  int req = atomic_exchange(&s->stop_request, 0);
  if (req) ws_server_stop(s, req == 1);
  if (s->cb.on_wakeup && !s->finished) {
    app_turn(s);
    cork_begin(s);
    APP_CALL(s, s->cb.on_wakeup(s));
    cork_end(s);
  }
}

static void on_signal(uv_signal_t *h, int signum) {
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
  uv_check_start(&s->poll_end, on_poll_end);
  uv_unref((uv_handle_t *)&s->poll_end);
  uv_signal_init(&s->loop, &s->sigint);
  uv_signal_init(&s->loop, &s->sigterm);
  s->sigint.data = s->sigterm.data = s;
  return s;
}

void *ws_server_user(const ws_server *s) { return s->user; }

static void on_app_timer_closed(uv_handle_t *h) { free(h->data); }

static void close_all_walk(uv_handle_t *h, void *arg) {
  ws_server *s = arg;
  if (uv_is_closing(h)) return;
  /* Application timers own their memory: their handle is their first member
   * and their data points at themselves. */
  if (h->type == UV_TIMER && h->data == (void *)h && h != (uv_handle_t *)&s->shutdown_timer) {
    uv_close(h, on_app_timer_closed);
    return;
  }
  uv_close(h, NULL);
}

static void maybe_finish_shutdown(ws_server *s) {
  if (s->finished || s->nconns > 0) return;
  poll_phase_end(s); /* before its uv_check handle closes */
  s->finished = 1;
  ws_srv_pubsub_close(s); /* its handles close its own way */
    uv_walk(&s->loop, close_all_walk, s);
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
      app_turn(s);
      APP_CALL(s, s->cb.on_shutdown(s));
    }
  }
  if (graceful && first) {
    ws_server_conn *c = s->conns, *next;
    for (; c; c = next) {
      next = c->next;
      if (c->phase == PH_HANDSHAKE) conn_destroy(c);
      else if (c->phase == PH_OPEN && c->ws.state == WS_CONN_OPEN) {
        ws_conn_close(&c->ws, 1001, "server shutting down", 20);
        c->closing_ms = uv_now(&s->loop);
        arm_timer(c);
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
      conn_destroy(c);
    }
  }
  maybe_finish_shutdown(s);
}

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
    cork_end(s);
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
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  }
  if (s->cfg.busy_poll_us) run_busy(s);
  else uv_run(&s->loop, UV_RUN_DEFAULT);
  if (!s->finished) {
    poll_phase_end(s);
    s->finished = 1;
    ws_srv_pubsub_close(s); /* its handles close its own way */
    uv_walk(&s->loop, close_all_walk, s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
  }
  return 0;
}

void ws_server_free(ws_server *s) {
  if (!s) return;
  if (!s->finished) {
    s->finished = 1;
    ws_server_conn *c = s->conns, *next;
    for (; c; c = next) {
      next = c->next;
      c->opened = 0; /* no callbacks while freeing */
      conn_destroy(c);
    }
    ws_srv_pubsub_close(s); /* its handles close its own way */
    uv_walk(&s->loop, close_all_walk, s);
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
  ws_srv_tls_free(s);
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

/* ---------- application timers ---------- */

static void on_app_timer(uv_timer_t *t) {
  ws_server_timer *at = t->data;
  ws_server *s = at->server;
  uint64_t id = at->id;
  uv_close((uv_handle_t *)t, on_app_timer_closed);
  if (s->cb.on_timer) {
    app_turn(s);
    cork_begin(s);
    APP_CALL(s, s->cb.on_timer(s, id));
    cork_end(s);
  }
}

ws_server_timer *ws_server_timer_start(ws_server *s, uint64_t ms, uint64_t id) {
  if (s->finished) return NULL;
  ws_server_timer *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->server = s;
  t->id = id;
  uv_timer_init(&s->loop, &t->timer);
  t->timer.data = t;
  if (s->embedded && !s->in_run) uv_update_time(&s->loop);
  uv_timer_start(&t->timer, on_app_timer, ms, 0);
  timer_touched(s);
  return t;
}

void ws_server_timer_cancel(ws_server_timer *t) {
  if (t && !uv_is_closing((uv_handle_t *)&t->timer))
    uv_close((uv_handle_t *)&t->timer, on_app_timer_closed);
}

/* ---------- sending ---------- */

static int conn_can_send(const ws_server_conn *c) {
  return c && c->phase == PH_OPEN && c->ws.state == WS_CONN_OPEN;
}

int ws_server_conn_can_send(const ws_server_conn *c) { return conn_can_send(c); }

int ws_server_conn_send(ws_server_conn *c, unsigned opcode, const char *data, size_t len) {
  if (!conn_can_send(c)) return -1;
  int r = ws_conn_send(&c->ws, opcode, (const uint8_t *)data, len);
  if (c->ws.pmd && !c->pmd_watch) pmd_note(c);
  return r;
}

int ws_server_conn_ping(ws_server_conn *c, const char *data, size_t len) {
  if (!conn_can_send(c)) return -1;
  return ws_conn_ping(&c->ws, (const uint8_t *)data, len);
}

int ws_server_conn_close(ws_server_conn *c, unsigned code, const char *reason, size_t len) {
  if (!c || c->phase != PH_OPEN || c->ws.state != WS_CONN_OPEN) return -1;
  int r = ws_conn_close(&c->ws, code, reason, len);
  if (r == 0 && c->phase == PH_OPEN) {
    c->closing_ms = uv_now(&c->server->loop);
    arm_timer(c);
  }
  return r;
}

/* Sends one encoded frame (b[0] header, b[1] payload) to a connection. While
 * corking, small frames are copied into the cork once (*off) and every
 * connection's entry points at that copy. */
static size_t fan_out(ws_server *s, ws_server_conn *c, const uv_buf_t *b, uint32_t *off) {
  if (!conn_can_send(c)) return 0;
  size_t total = b[0].len + b[1].len;
  if (s->corking && !s->flushing && total <= CORK_MAX_PIECE) {
    if (*off == UINT32_MAX) *off = cork_put(s, b, 2, total);
    if (*off != UINT32_MAX && cork_add(s, c, *off, total) == 0) return 1;
    cork_flush(s); /* full: start a fresh cork with this frame */
    *off = cork_put(s, b, 2, total);
    if (*off != UINT32_MAX && cork_add(s, c, *off, total) == 0) return 1;
  }
  conn_write(c, b, b[1].len ? 2 : 1);
  return 1;
}

/* One unmasked final frame as header + payload pieces; hdr is the caller's. */
static void frame_bufs(uv_buf_t b[2], uint8_t hdr[WS_FRAME_MAX_HEADER], unsigned opcode,
                       const char *data, size_t len) {
  size_t hlen = ws_frame_header(hdr, opcode, 1, 0, len, NULL);
  b[0] = uv_buf_init((char *)hdr, (unsigned)hlen);
  b[1] = uv_buf_init((char *)data, (unsigned)len);
}

/* One broadcast: the raw frame, and the compressed ones made so far (one per
 * compressor window; NULL payload = not made yet, raw = compression did not
 * pay, use the raw frame). */
typedef struct fan {
  uv_buf_t raw[2];
  uint8_t raw_hdr[WS_FRAME_MAX_HEADER];
  uint32_t raw_off;
  const char *data;
  size_t len;
  unsigned opcode;
  struct {
    uint8_t made, raw;
    uint8_t hdr[WS_FRAME_MAX_HEADER];
    uv_buf_t b[2];
    uint32_t off;
  } z[16];
} fan;

static void fan_init(fan *f, unsigned opcode, const char *data, size_t len) {
  frame_bufs(f->raw, f->raw_hdr, opcode, data, len);
  f->raw_off = UINT32_MAX;
  f->data = data;
  f->len = len;
  f->opcode = opcode;
  for (int i = 0; i < 16; i++) f->z[i].made = 0;
}

/* The context-free compressor of a window (kept by the server). */
static ws_pmd *bcast_pmd(ws_server *s, unsigned bits) {
  if (!s->bcast[bits]) {
    ws_pmd_params p;
    memset(&p, 0, sizeof p);
    p.server_no_context_takeover = 1;
    p.server_max_window_bits = (uint8_t)bits;
    p.client_max_window_bits = 15;
    s->bcast[bits] = ws_pmd_new(&s->pmd_ctx, &p, WS_PMD_SERVER);
  }
  return s->bcast[bits];
}

/* Sends the broadcast to c: compressed once per window for the receivers
 * that negotiated deflate, then c's own compressor learns the message. */
static size_t fan_send(ws_server *s, ws_server_conn *c, fan *f) {
  if (!conn_can_send(c)) return 0;
  ws_pmd *m = c->ws.pmd;
  if (!m || !ws_pmd_compresses(m, f->len)) return fan_out(s, c, f->raw, &f->raw_off);
  unsigned w = ws_pmd_send_window(m) & 15;
  if (!f->z[w].made) {
    f->z[w].made = 1;
    f->z[w].raw = 1;
    f->z[w].off = UINT32_MAX;
    ws_pmd *enc = bcast_pmd(s, w);
    const uint8_t *z = NULL;
    size_t zlen = 0;
    if (enc && ws_pmd_deflate(enc, (const uint8_t *)f->data, f->len, 1, &z, &zlen) == WS_PMD_OK) {
      size_t hlen = ws_frame_header(f->z[w].hdr, f->opcode, 1, WS_RSV1, zlen, NULL);
      f->z[w].b[0] = uv_buf_init((char *)f->z[w].hdr, (unsigned)hlen);
      f->z[w].b[1] = uv_buf_init((char *)z, (unsigned)zlen);
      f->z[w].raw = 0;
    }
  }
  if (f->z[w].raw) return fan_out(s, c, f->raw, &f->raw_off);
  size_t sent = fan_out(s, c, f->z[w].b, &f->z[w].off);
  /* The peer's inflater now holds the message: so must c's compressor. */
  if (sent && conn_can_send(c)) ws_pmd_deflate_prime(m, (const uint8_t *)f->data, f->len);
  return sent;
}

size_t ws_server_broadcast(ws_server *s, unsigned opcode, const char *data, size_t len,
                           const ws_server_conn *except) {
  fan f;
  fan_init(&f, opcode, data, len);
  size_t sent = 0;
  cork_begin(s); /* the frames leave together, one writev per connection */
  ws_server_conn *c = s->conns, *next;
  for (; c; c = next) {
    next = c->next; /* a write failure may destroy c */
    if (c != except) sent += fan_send(s, c, &f);
  }
  cork_end(s);
  return sent;
}

size_t ws_server_send_many(ws_server *s, ws_server_conn *const *conns, size_t n,
                           unsigned opcode, const char *data, size_t len) {
  fan f;
  fan_init(&f, opcode, data, len);
  size_t sent = 0;
  cork_begin(s);
  for (size_t i = 0; i < n; i++) sent += fan_send(s, conns[i], &f);
  cork_end(s);
  return sent;
}

/* ---------- per-connection accessors ---------- */

void ws_server_conn_set_user(ws_server_conn *c, void *user) { c->user = user; }
void *ws_server_conn_user(const ws_server_conn *c) { return c->user; }
uint64_t ws_server_conn_id(const ws_server_conn *c) { return c->id; }

size_t ws_server_conn_peer(const ws_server_conn *c, char *out, size_t cap) {
  if (cap == 0) return 0;
  out[0] = 0;
  if (c->is_pipe) return (size_t)snprintf(out, cap, "unix");
  struct sockaddr_storage ss;
  int n = sizeof ss;
  if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &n) != 0) return 0;
  char ip[64];
  int r;
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, ip, sizeof ip);
    r = snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof ip);
    r = snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
  }
  return r < 0 ? 0 : ((size_t)r < cap ? (size_t)r : cap - 1);
}

/* Case-insensitive: does the block of header lines name this field? */
static int headers_name(const char *h, size_t len, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i + n <= len; i++) {
    if ((i == 0 || h[i - 1] == '\n') && strncasecmp(h + i, name, n) == 0) return 1;
  }
  return 0;
}

/* Negotiates permessage-deflate for c (during its accept): the answer's
 * header line into line (cap >= WS_PMD_HEADER_MAX + 32); its length, 0 if
 * none. */
static size_t negotiate_deflate(ws_server_conn *c, const char *app_headers, size_t app_len,
                                char *line, size_t cap) {
  ws_server *s = c->server;
  c->pmd_on = 0;
  if (!s->cfg.compression || c->pmd_refused) return 0;
  if (app_len && headers_name(app_headers, app_len, "sec-websocket-extensions:")) return 0;
  static const char name[] = "sec-websocket-extensions";
  size_t blen = 0, total = 0;
  const char *base = ws_handshake_buffer(c->hs, &blen);
  const ws_header_span *h = ws_handshake_headers(c->hs);
  size_t count = ws_handshake_header_count(c->hs);
  for (size_t i = 0; i < count; i++)
    if (h[i].name_len == sizeof name - 1 && strncasecmp(base + h[i].name_off, name, sizeof name - 1) == 0)
      total += h[i].value_len + 2;
  if (total == 0) return 0;
  char *joined = malloc(total);
  if (!joined) return 0;
  size_t jl = 0;
  for (size_t i = 0; i < count; i++) {
    if (h[i].name_len != sizeof name - 1 ||
        strncasecmp(base + h[i].name_off, name, sizeof name - 1) != 0)
      continue;
    if (jl) {
      joined[jl++] = ',';
      joined[jl++] = ' ';
    }
    memcpy(joined + jl, base + h[i].value_off, h[i].value_len);
    jl += h[i].value_len;
  }
  char answer[WS_PMD_HEADER_MAX];
  size_t alen = 0;
  int ok = ws_pmd_negotiate(&s->cfg.pmd, joined, jl, &c->pmd_params, answer, sizeof answer, &alen);
  free(joined);
  if (ok != 1) return 0;
  int n = snprintf(line, cap, "Sec-WebSocket-Extensions: %s\r\n", answer);
  if (n <= 0 || (size_t)n >= cap) return 0;
  c->pmd_on = 1;
  return (size_t)n;
}

void ws_server_conn_set_compression(ws_server_conn *c, int on) { c->pmd_refused = !on; }

size_t ws_server_conn_extensions(const ws_server_conn *c, char *out, size_t cap) {
  if (cap < WS_PMD_HEADER_MAX) return 0;
  out[0] = 0;
  if (c->ws.pmd && c->phase >= PH_OPEN) return ws_pmd_format_answer(ws_pmd_params_of(c->ws.pmd), out, cap);
  if (c->pmd_on) return ws_pmd_format_answer(&c->pmd_params, out, cap);
  return 0;
}

size_t ws_server_deflate_memory(const ws_server *s, size_t *peak) {
  if (peak) *peak = s->pmd_ctx.peak;
  return s->pmd_ctx.bytes;
}

int ws_server_conn_defer(ws_server_conn *c) {
  if (c->phase != PH_HANDSHAKE || !c->hs || c->decision != DEC_NONE) return -1;
  c->decision = DEC_PENDING;
  return 0;
}

int ws_server_conn_accept(ws_server_conn *c, const char *subprotocol, size_t subprotocol_len,
                          const char *headers, size_t headers_len) {
  if (c->phase != PH_HANDSHAKE || !c->hs) return -1;
  int pending = c->decision == DEC_PENDING;
  if (c->decision != DEC_NONE && !pending) return -1;
  char ext[WS_PMD_HEADER_MAX + 32];
  size_t ext_len = negotiate_deflate(c, headers, headers_len, ext, sizeof ext);
  size_t all_len = ext_len + headers_len;
  char *all = ext;
  if (ext_len && headers_len) {
    all = malloc(all_len);
    if (!all) return -1;
    memcpy(all, ext, ext_len);
    memcpy(all + ext_len, headers, headers_len);
  } else if (!ext_len) {
    all = (char *)headers;
  }
  size_t cap = 256 + subprotocol_len + all_len;
  char stackbuf[1024];
  char *out = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
  if (!out) {
    if (all != ext && all != headers) free(all);
    return -1;
  }
  size_t n = ws_handshake_accept_response(c->hs, subprotocol, subprotocol_len, all, all_len, out,
                                          cap);
  if (all != ext && all != headers) free(all);
  if (n) {
    c->decision = DEC_ACCEPT;
    conn_write_raw(c, out, n);
  } else {
    c->pmd_on = 0;
  }
  if (out != stackbuf) free(out);
  if (n && pending && c->phase == PH_HANDSHAKE) open_after_pending(c);
  return n ? 0 : -1;
}

int ws_server_conn_reject(ws_server_conn *c, int status, const char *reason, size_t reason_len,
                          const char *headers, size_t headers_len) {
  if (c->phase != PH_HANDSHAKE || (c->decision != DEC_NONE && c->decision != DEC_PENDING))
    return -1;
  size_t cap = 512 + reason_len + headers_len;
  char stackbuf[1024];
  char *out = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
  if (!out) return -1;
  size_t n = ws_handshake_error_response(status, reason, reason_len, headers, headers_len, out,
                                         cap);
  c->decision = DEC_REJECT;
  if (n) conn_write_raw(c, out, n);
  if (out != stackbuf) free(out);
  conn_finish(c);
  return n ? 0 : -1;
}

int ws_server_conn_http_response(ws_server_conn *c, int status, const char *headers,
                                 size_t headers_len, const char *body, size_t body_len) {
  if (c->phase != PH_HANDSHAKE || c->decision != DEC_NONE) return -1;
  char head[256];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n", status,
                   ws_handshake_status_phrase(status), body_len);
  if (n <= 0 || (size_t)n >= sizeof head) return -1;
  uv_buf_t b[4] = {uv_buf_init(head, (unsigned)n), uv_buf_init((char *)headers, (unsigned)headers_len),
                   uv_buf_init("\r\n", 2), uv_buf_init((char *)body, (unsigned)body_len)};
  c->decision = DEC_HTTP;
  conn_write(c, b, 4);
  conn_finish(c);
  return 0;
}

size_t ws_server_conn_buffered(const ws_server_conn *c) { return c->queued; }

void ws_server_conn_pause_reading(ws_server_conn *c) {
  c->app_paused = 1;
  if (c->reading && c->phase == PH_OPEN) {
    uv_read_stop(&c->h.stream);
    c->reading = 0;
  }
}

void ws_server_conn_resume_reading(ws_server_conn *c) {
  c->app_paused = 0;
  conn_resume_if_allowed(c);
}

size_t ws_server_conn_size(void) { return sizeof(ws_server_conn); }

ws_server *ws_server_conn_server(const ws_server_conn *c) { return c->server; }

/* ---------- for the transport's other files (server_int.h) ---------- */

void ws_srv_app_leave(ws_server *s) { app_leave(s); }
void ws_srv_app_turn(ws_server *s) { app_turn(s); }
void ws_srv_cork_begin(ws_server *s) { cork_begin(s); }
void ws_srv_cork_end(ws_server *s) { cork_end(s); }
void ws_srv_conn_destroy(ws_server_conn *c) { conn_destroy(c); }
void ws_srv_conn_write_raw(ws_server_conn *c, const char *data, size_t len) {
  conn_write_raw(c, data, len);
}
void ws_srv_arm_timer(ws_server_conn *c) { arm_timer(c); }
void ws_srv_start_engine(ws_server_conn *c) { start_engine(c); }
void ws_srv_pmd_note(ws_server_conn *c) { pmd_note(c); }
void ws_srv_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  on_alloc(h, suggested, buf);
}
void ws_srv_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  on_read(st, nread, buf);
}
void ws_srv_on_conn_handle_closed(uv_handle_t *h) { on_conn_handle_closed(h); }
void ws_srv_read_plain(ws_server_conn *c, char *data, size_t len) { read_plain(c, data, len); }
void ws_srv_read_end(ws_server_conn *c, int err) { read_end(c, err); }
void ws_srv_conn_write_wire(ws_server_conn *c, const uv_buf_t *bufs, unsigned n) {
  conn_write_wire(c, bufs, n);
}
