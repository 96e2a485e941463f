/* srv_write.c - the transport's write path. See server_int.h.
 *
 * Writes go out with one sendmsg first (uv_try_write's contract); only what
 * the kernel did not take is copied into a queued uv_write. While corking, small writes gather in
 * the cork and leave in one writev per connection. write_rate holds what is
 * over a connection's budget; write_high_water / write_limit bound what is
 * queued.
 */
#include "server_int.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "client_direct.h"

/* ---------- writing ---------- */


static void on_write_done(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  ws_server_conn *c = w->conn;
  c->queued -= w->len;
  free(w);
  if (status < 0) {
    ws_srv_conn_destroy(c);
    return;
  }
  if (c->full && c->queued <= c->server->drain_at) {
    c->full = 0;
    ws_srv_conn_resume_if_allowed(c);
    if (c->phase == PH_OPEN && c->opened && c->server->cb.on_drain) {
      ws_srv_app_turn(c->server->loop);
      ws_srv_cork_begin(c->server->loop);
      WS_SRV_APP_CALL(c->server->loop, c->server->cb.on_drain(c->server, c));
      ws_srv_cork_end(c->server->loop);
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
  if (c->server->loop->flushing) {
    if (!c->doomed) c->doomed = (uint8_t)doom;
    return;
  }
  const char *why = doom_reason(doom);
  if (c->phase == PH_OPEN && c->ws.state != WS_CONN_CLOSED)
    ws_conn_abort(&c->ws, 1006, why, strlen(why));
  ws_srv_conn_destroy(c);
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
  uint64_t now = uv_now(&c->server->loop->uv);
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
  ws_srv_arm_timer(c);
}

/* Submits held writes the budget allows (all of them when closing). */
void ws_srv_release_held(ws_server_conn *c, int all) {
  while (c->held && c->phase < PH_CLOSED && (all || write_budget_ok(c, c->held->len))) {
    write_req *w = c->held;
    c->held = w->next;
    if (!c->held) c->held_tail = NULL;
    c->wwindow_bytes += w->len;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    ws_client_direct_leave(c);
    if (uv_write(&w->req, &c->h.stream, &b, 1, on_write_done) != 0) {
      c->queued -= w->len;
      free(w);
      conn_write_failed(c, DOOM_WRITE_ERROR);
      return;
    }
    ws_srv_loop_touched(c->server->loop);
  }
}

/* uv_buf_t is laid out as struct iovec on Unix (libuv says so): the pieces
 * go to sendmsg as they are. */
static_assert(sizeof(uv_buf_t) == sizeof(struct iovec) &&
                  offsetof(uv_buf_t, base) == offsetof(struct iovec, iov_base) &&
                  offsetof(uv_buf_t, len) == offsetof(struct iovec, iov_len),
              "uv_buf_t matches struct iovec");

/* uv_try_write's contract (bytes taken, UV_EAGAIN, or an error) with one
 * sendmsg on the socket: a socket write without writev's VFS layer (file
 * position lock, iterator dispatch), a measurable share of the kernel's cost
 * per delivery when a publish writes to a thousand sockets. */
static int try_send(uv_stream_t *st, const uv_buf_t *bufs, unsigned n) {
  uv_os_fd_t fd;
  if (st->write_queue_size || uv_fileno((const uv_handle_t *)st, &fd) != 0)
    return uv_try_write(st, bufs, n);
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = (struct iovec *)(void *)bufs;
  m.msg_iovlen = n < IOV_MAX ? n : IOV_MAX; /* a short write: the rest is queued */
  ssize_t r;
  do r = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r >= 0) return (int)r;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return UV_EAGAIN;
  return -errno;
}

/* Writes bufs in order; queues what the kernel does not take now. */
void ws_srv_conn_write_wire(ws_server_conn *c, const uv_buf_t *bufs, unsigned n) {
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
  /* sendmsg(MSG_DONTWAIT): also right while the direct client path keeps
   * the socket blocking (client_direct.c); nothing is queued then. */
  int r = try_send(&c->h.stream, bufs, n);
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
  ws_client_direct_leave(c); /* libuv writes it: a non-blocking socket again */
  if (uv_write(&w->req, &c->h.stream, &b, 1, on_write_done) != 0) {
    free(w);
    conn_write_failed(c, DOOM_WRITE_ERROR);
    return;
  }
  c->queued += rest;
  ws_srv_loop_touched(s->loop);
  note_queued(c);
}

/* The connection's bytes leave: encrypted first on a TLS connection. */
static void conn_write_now(ws_server_conn *c, const uv_buf_t *bufs, unsigned n) {
  if (c->phase >= PH_CLOSED) return;
  if (c->tls) ws_srv_tls_write(c, bufs, n);
  else ws_srv_conn_write_wire(c, bufs, n);
}

/* Sends everything the cork holds: one writev (of up to CORK_IOV pieces) per
 * connection, in the order the connections were first written to. */
void ws_srv_cork_flush(ws_loop *l) {
  if (l->cork_n == 0 || l->flushing) return;
  l->flushing = 1;
  uv_buf_t iov[CORK_IOV];
  for (size_t i = 0; i < l->cork_nconns; i++) {
    ws_server_conn *c = l->cork_conns[i];
    unsigned k = 0;
    for (uint32_t e = c->cork_head; e != CORK_NONE; e = l->cork_entries[e].next) {
      const cork_entry *ce = &l->cork_entries[e];
      iov[k++] = uv_buf_init(l->corkbuf + ce->off, ce->len);
      if (k == CORK_IOV) {
        conn_write_now(c, iov, k);
        k = 0;
      }
    }
    if (k) conn_write_now(c, iov, k);
    c->corked = 0;
  }
  size_t nconns = l->cork_nconns;
  l->cork_n = l->cork_len = l->cork_nconns = 0;
  l->cork_frame_len = 0;
  l->flushing = 0;
  /* Now the application may hear of connections whose writes failed. The
   * list is walked from a copy: destroying one may write to others. */
  for (size_t i = 0; i < nconns; i++) {
    ws_server_conn *c = l->cork_conns[i];
    int doom = c->doomed;
    if (!doom) continue;
    c->doomed = DOOM_NONE;
    conn_write_failed(c, doom);
  }
}

/* Copies bufs into the cork; returns the offset, or UINT32_MAX if full.
 * (Static here, so that the write path inlines it; fanout.c calls the
 * ws_srv_ wrapper below.) */
static uint32_t cork_put(ws_loop *l, const uv_buf_t *bufs, unsigned n, size_t total) {
  if (l->cork_len + total > CORK_SIZE || l->cork_n == CORK_ENTRIES) return UINT32_MAX;
  uint32_t off = (uint32_t)l->cork_len;
  for (unsigned i = 0; i < n; i++) {
    if (bufs[i].len) memcpy(l->corkbuf + l->cork_len, bufs[i].base, bufs[i].len);
    l->cork_len += bufs[i].len;
  }
  return off;
}

/* Appends an entry for c; 0, or -1 if the cork has no room (flush first).
 * Bytes that follow c's last entry in the cork extend it instead: the
 * frames of successive publishes to one topic are copied into the cork one
 * after another, so each subscriber's turn stays one entry and one iovec
 * however many messages it gets. */
int ws_srv_cork_add(ws_loop *l, ws_server_conn *c, uint32_t off, size_t len) {
  if (c->corked) {
    cork_entry *t = &l->cork_entries[c->cork_tail];
    if ((size_t)t->off + t->len == off && (size_t)t->len + len <= UINT32_MAX) {
      t->len += (uint32_t)len;
      return 0;
    }
  }
  if (l->cork_n == CORK_ENTRIES) return -1;
  if (!c->corked) {
    if (l->cork_nconns == l->cork_conns_cap) {
      size_t cap = l->cork_conns_cap ? l->cork_conns_cap * 2 : 64;
      ws_server_conn **p = realloc(l->cork_conns, cap * sizeof *p);
      if (!p) return -1;
      l->cork_conns = p;
      l->cork_conns_cap = cap;
    }
    l->cork_conns[l->cork_nconns++] = c;
  }
  uint32_t idx = (uint32_t)l->cork_n++;
  cork_entry *e = &l->cork_entries[idx];
  e->conn = c;
  e->off = off;
  e->len = (uint32_t)len;
  e->next = CORK_NONE;
  if (c->corked) l->cork_entries[c->cork_tail].next = idx;
  else c->cork_head = idx;
  c->cork_tail = idx;
  c->corked = 1;
  return 0;
}

uint32_t ws_srv_cork_put(ws_loop *l, const uv_buf_t *bufs, unsigned n, size_t total) {
  return cork_put(l, bufs, n, total);
}

/* Byte-equal to the n pieces of bufs (total bytes)? */
static int cork_equal(const char *p, const uv_buf_t *bufs, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    if (bufs[i].len && memcmp(p, bufs[i].base, bufs[i].len) != 0) return 0;
    p += bufs[i].len;
  }
  return 1;
}

uint32_t ws_srv_cork_put_frame(ws_loop *l, const uv_buf_t *bufs, unsigned n, size_t total) {
  if (l->cork_frame_len == total &&
      cork_equal(l->corkbuf + l->cork_frame_off, bufs, n))
    return l->cork_frame_off;
  uint32_t off = cork_put(l, bufs, n, total);
  if (off != UINT32_MAX) {
    l->cork_frame_off = off;
    l->cork_frame_len = (uint32_t)total;
  }
  return off;
}

/* Writes bufs in order: into the cork while corking (small pieces), else at
 * once (after what the cork holds, so the order on every connection holds).
 * Static for the same reason as cork_put: the engine's writes inline it. */
static void conn_write(ws_server_conn *c, const uv_buf_t *bufs, unsigned n) {
  ws_loop *l = c->server->loop;
  if (c->phase >= PH_CLOSED) return;
  if (l->embedded && !l->in_run && !l->ext_corked && !l->flushing) {
    /* Sends from asyncio tasks between turns gather like replies inside a
     * turn: one writev per connection when the next turn starts, which the
     * wake-up asks for at once. */
    l->ext_corked = 1;
    ws_srv_cork_begin(l);
    if (!l->flush_soon) uv_async_send(&l->async);
  }
  if (l->corking && !l->flushing) {
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += bufs[i].len;
    if (total == 0) return;
    if (total <= CORK_MAX_PIECE) {
      uint32_t off = cork_put(l, bufs, n, total);
      if (off == UINT32_MAX) {
        ws_srv_cork_flush(l);
        off = cork_put(l, bufs, n, total);
      }
      if (off != UINT32_MAX && ws_srv_cork_add(l, c, off, total) == 0) return;
    }
    ws_srv_cork_flush(l);
  }
  conn_write_now(c, bufs, n);
}

void ws_srv_conn_write(ws_server_conn *c, const uv_buf_t *bufs, unsigned n) {
  conn_write(c, bufs, n);
}

void ws_srv_conn_write_raw(ws_server_conn *c, const char *data, size_t len) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  conn_write(c, &b, 1);
}

/* ---------- engine callbacks ---------- */

void ws_srv_eng_write(ws_conn *e, const ws_conn_buf *bufs, size_t n) {
  ws_server_conn *c = e->data;
  uv_buf_t b[2];
  unsigned k = 0;
  for (size_t i = 0; i < n && k < 2; i++) {
    if (bufs[i].len) b[k++] = uv_buf_init((char *)bufs[i].base, (unsigned)bufs[i].len);
  }
  conn_write(c, b, k);
}
