/* srv_conn.c - a connection's lifecycle and its calls: teardown, the
 * decision on a request (accept / reject / HTTP answer, deflate
 * negotiation), send / ping / close, accessors. See server.h.
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

/* ---------- connection teardown ---------- */

static void conn_unlink(ws_server_conn *c) {
  ws_server *s = c->server;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->nconns--;
}


void ws_srv_on_conn_handle_closed(uv_handle_t *h) {
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
  if (s->stopping) ws_srv_maybe_finish_shutdown(s);
  ws_srv_handle_gone(s);
}

/* Closes the socket now, whatever is queued. */
void ws_srv_conn_destroy(ws_server_conn *c) {
  if (c->phase == PH_CLOSED) return;
  if (c->cl && c->phase == PH_HANDSHAKE) ws_client_int_gone(c); /* on_connect_failed */
  int was_open = c->phase == PH_OPEN;
  c->phase = PH_CLOSED; /* its cork entries are skipped at the flush */
  ws_srv_topics_drop(c);
  if (c->decision == DEC_PENDING) {
    c->decision = DEC_NONE;
    ws_srv_report_close(c->server, c, 1, 0, NULL, 0); /* the application holds c: let go */
  }
  if (was_open && c->ws.state != WS_CONN_CLOSED)
    ws_conn_abort(&c->ws, 1006, "connection dropped", 18); /* reports on_close */
  conn_unlink(c);
  /* A client retrying another address has its stream closing already
   * (client.c counts that close). */
  if (!uv_is_closing(&c->h.handle)) uv_close(&c->h.handle, ws_srv_on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, ws_srv_on_conn_handle_closed);
}

static void on_shutdown_done(uv_shutdown_t *req, int status) {
  (void)status;
  ws_server_conn *c = req->data;
  free(req);
  ws_srv_conn_destroy(c);
}

/* Closes after the queued writes are flushed (FIN after our last byte);
 * close_timeout bounds the wait. */
void ws_srv_conn_finish(ws_server_conn *c) {
  if (c->phase >= PH_FLUSHING) return;
  if (c->corked) ws_srv_cork_flush(c->server->loop); /* its bytes go before the FIN */
  if (c->held) ws_srv_release_held(c, 1);      /* closing: the rate no longer holds them */
  if (c->phase >= PH_FLUSHING) return;  /* the flush failed */
  if (c->tls) ws_srv_tls_close(c);      /* close_notify before the FIN */
  if (c->phase >= PH_FLUSHING) return;
  c->phase = PH_FLUSHING;
  c->closing_ms = uv_now(&c->server->loop->uv);
  if (c->reading) {
    uv_read_stop(&c->h.stream);
    c->reading = 0;
  }
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req || uv_shutdown(req, &c->h.stream, on_shutdown_done) != 0) {
    free(req);
    ws_srv_conn_destroy(c);
    return;
  }
  req->data = c;
  ws_srv_loop_touched(c->server->loop);
  ws_srv_arm_timer(c);
}

/* ---------- sending ---------- */

int ws_server_conn_can_send(const ws_server_conn *c) { return ws_srv_conn_can_send(c); }

int ws_server_conn_send(ws_server_conn *c, unsigned opcode, const char *data, size_t len) {
  if (!ws_srv_conn_can_send(c)) return -1;
  int r = ws_conn_send(&c->ws, opcode, (const uint8_t *)data, len);
  if (c->ws.pmd && !c->pmd_watch) ws_srv_pmd_note(c);
  return r;
}

int ws_server_conn_send_hw(ws_server_conn *c, unsigned opcode, const char *data, size_t len) {
  if (ws_server_conn_send(c, opcode, data, len) != 0) return -1;
  return c->queued >= c->server->cfg.write_high_water;
}

int ws_server_conn_send_now(ws_server_conn *c, unsigned opcode, const char *data, size_t len) {
  ws_loop *l = c->server->loop;
  uint8_t soon = l->flush_soon;
  l->flush_soon = 1; /* the flush is right below: no wake-up of the loop for it */
  int r = ws_server_conn_send(c, opcode, data, len);
  ws_loop_flush(l);
  l->flush_soon = soon;
  if (r != 0) return -1;
  return c->queued >= c->server->cfg.write_high_water;
}

int ws_server_conn_ping(ws_server_conn *c, const char *data, size_t len) {
  if (!ws_srv_conn_can_send(c)) return -1;
  return ws_conn_ping(&c->ws, (const uint8_t *)data, len);
}

int ws_server_conn_close(ws_server_conn *c, unsigned code, const char *reason, size_t len) {
  if (!c || c->phase != PH_OPEN || c->ws.state != WS_CONN_OPEN) return -1;
  int r = ws_conn_close(&c->ws, code, reason, len);
  if (r == 0 && c->phase == PH_OPEN) {
    c->closing_ms = uv_now(&c->server->loop->uv);
    ws_srv_arm_timer(c);
  }
  return r;
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
    ws_srv_conn_write_raw(c, out, n);
  } else {
    c->pmd_on = 0;
  }
  if (out != stackbuf) free(out);
  if (n && pending && c->phase == PH_HANDSHAKE) ws_srv_open_after_pending(c);
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
  if (n) ws_srv_conn_write_raw(c, out, n);
  if (out != stackbuf) free(out);
  ws_srv_conn_finish(c);
  return n ? 0 : -1;
}

void ws_srv_refuse_busy(ws_server_conn *c) {
  static const char msg[] = "too many connections";
  ws_server_conn_reject(c, 503, msg, sizeof msg - 1, NULL, 0);
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
  ws_srv_conn_write(c, b, 4);
  ws_srv_conn_finish(c);
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
  ws_srv_conn_resume_if_allowed(c);
}

void ws_server_conn_set_queue(ws_server_conn *c, uint32_t high, uint32_t low) {
  c->q_high = high;
  c->q_low = low < high ? low : (high ? high - 1 : 0);
  if (c->q_full && (!high || c->q_len <= c->q_low)) {
    c->q_full = 0;
    ws_srv_conn_resume_if_allowed(c);
  }
}

int ws_server_conn_consumed(ws_server_conn *c, uint32_t n) {
  c->q_len = n < c->q_len ? c->q_len - n : 0;
  if (c->q_full && c->q_len <= c->q_low) {
    c->q_full = 0;
    ws_srv_conn_resume_if_allowed(c);
  }
  return c->q_full;
}

size_t ws_server_conn_size(void) { return sizeof(ws_server_conn); }

ws_server *ws_server_conn_server(const ws_server_conn *c) { return c->server; }
