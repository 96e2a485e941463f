/* fanout.c - one message to many connections (broadcast, send_many): the
 * frame is encoded once, compressed once per compressor window, and copied
 * into the cork once. See server.h.
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

#include "wsframe.h"

/* Sends one encoded frame (b[0] header, b[1] payload) to a connection. While
 * corking, small frames are copied into the cork once (*off) and every
 * connection's entry points at that copy. */
static size_t fan_out(ws_server *s, ws_server_conn *c, const uv_buf_t *b, uint32_t *off) {
  if (!ws_srv_conn_can_send(c)) return 0;
  size_t total = b[0].len + b[1].len;
  ws_loop *l = s->loop;
  if (l->corking && !l->flushing && total <= CORK_MAX_PIECE) {
    if (*off == UINT32_MAX) *off = ws_srv_cork_put_frame(l, b, 2, total);
    if (*off != UINT32_MAX && ws_srv_cork_add(l, c, *off, total) == 0) return 1;
    ws_srv_cork_flush(s->loop); /* full: start a fresh cork with this frame */
    *off = ws_srv_cork_put_frame(l, b, 2, total);
    if (*off != UINT32_MAX && ws_srv_cork_add(l, c, *off, total) == 0) return 1;
  }
  ws_srv_conn_write(c, b, b[1].len ? 2 : 1);
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
  if (!ws_srv_conn_can_send(c)) return 0;
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
  if (sent && ws_srv_conn_can_send(c)) ws_pmd_deflate_prime(m, (const uint8_t *)f->data, f->len);
  return sent;
}

size_t ws_server_broadcast(ws_server *s, unsigned opcode, const char *data, size_t len,
                           const ws_server_conn *except) {
  fan f;
  fan_init(&f, opcode, data, len);
  size_t sent = 0;
  ws_srv_cork_begin(s->loop); /* the frames leave together, one writev per connection */
  ws_server_conn *c = s->conns, *next;
  for (; c; c = next) {
    next = c->next; /* a write failure may destroy c */
    if (c != except) sent += fan_send(s, c, &f);
  }
  ws_srv_cork_end(s->loop);
  return sent;
}

size_t ws_server_send_many(ws_server *s, ws_server_conn *const *conns, size_t n,
                           unsigned opcode, const char *data, size_t len) {
  fan f;
  fan_init(&f, opcode, data, len);
  size_t sent = 0;
  ws_srv_cork_begin(s->loop);
  for (size_t i = 0; i < n; i++) sent += fan_send(s, conns[i], &f);
  ws_srv_cork_end(s->loop);
  return sent;
}
