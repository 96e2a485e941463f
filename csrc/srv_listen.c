/* srv_listen.c - listeners (TCP, Unix, inherited fds) and accepting
 * connections. See server.h.
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
  s->handles++; /* until its memory is freed (ws_srv_on_conn_handle_closed) */
}

static void on_connection(uv_stream_t *listener, int status) {
  ws_server *s = listener->data;
  if (status < 0 || s->stopping) return;
  ws_server_conn *c = calloc(1, sizeof *c);
  if (!c) return;
  c->server = s;
  c->is_pipe = listener->type == UV_NAMED_PIPE;
  int r = c->is_pipe ? uv_pipe_init(&s->loop->uv, &c->h.pipe, 0) : uv_tcp_init(&s->loop->uv, &c->h.tcp);
  if (r != 0) {
    free(c);
    return;
  }
  uv_timer_init(&s->loop->uv, &c->timer);
  c->h.handle.data = c;
  c->timer.data = c;
  c->handles_open = 2;
  ws_srv_conn_link(s, c);
  c->phase = PH_HANDSHAKE;
  if (uv_accept(listener, &c->h.stream) != 0) {
    ws_srv_conn_destroy(c);
    return;
  }
  set_socket_options(s, c);
  c->started_ms = uv_now(&s->loop->uv);
  if (ws_srv_tls_accept(c) != 0) { /* TLS from the first byte, when configured */
    ws_srv_conn_destroy(c);
    return;
  }
  if (s->cfg.max_connections && s->nconns > s->cfg.max_connections) {
    /* The 503 is sent once the request head is read (over TLS, it could
     * not be read before the TLS handshake either): an HTTP client that
     * finds an answer before its request takes it for a dropped
     * connection. It is carried that far, a bounded number at a time (past
     * that it is closed at once; the handshake timeout bounds a silent one). */
    if (s->nconns > s->cfg.max_connections + WS_SRV_REFUSING_MAX) {
      ws_srv_conn_destroy(c);
      return;
    }
    c->over_limit = 1;
  }
  c->hs = ws_handshake_new(&s->cfg.handshake);
  if (!c->hs || uv_read_start(&c->h.stream, ws_srv_on_alloc, ws_srv_on_read) != 0) {
    ws_srv_conn_destroy(c);
    return;
  }
  c->reading = 1;
  ws_srv_loop_touched(s->loop);
  ws_srv_arm_timer(c);
}

/* ---------- listeners ---------- */

static union stream_handle *new_listener(ws_server *s) {
  if (s->nlisteners >= MAX_LISTENERS) return NULL;
  return &s->listeners[s->nlisteners];
}

/* A listener's handle, once initialised, is one of the server's handles. */
static int counted(ws_server *s, union stream_handle *l, int r) {
  if (r == 0) {
    l->handle.data = s;
    s->handles++;
  }
  return r;
}

static int start_listener(ws_server *s, union stream_handle *l) {
  l->handle.data = s;
  int r = uv_listen(&l->stream, s->cfg.backlog, on_connection);
  if (r != 0) {
    uv_close(&l->handle, ws_srv_on_server_handle_closed);
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
  r = counted(s, l, uv_tcp_init_ex(&s->loop->uv, &l->tcp, ss.ss_family));
  if (r != 0) return r;
  if (s->cfg.reuseport) {
    /* libuv 1.44 has no UV_TCP_REUSEPORT: set it on the socket ourselves. */
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno(&l->handle, &fd) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      uv_close(&l->handle, ws_srv_on_server_handle_closed);
      return UV_EINVAL;
    }
  }
  r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
  if (r == 0) r = start_listener(s, l);
  else uv_close(&l->handle, ws_srv_on_server_handle_closed);
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
  int r = counted(s, l, uv_pipe_init(&s->loop->uv, &l->pipe, 0));
  if (r != 0) return r;
  r = uv_pipe_bind(&l->pipe, path);
  if (r != 0) {
    uv_close(&l->handle, ws_srv_on_server_handle_closed);
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
    r = counted(s, l, uv_pipe_init(&s->loop->uv, &l->pipe, 0));
    if (r == 0 && (r = uv_pipe_open(&l->pipe, fd)) != 0) uv_close(&l->handle, ws_srv_on_server_handle_closed);
  } else {
    r = counted(s, l, uv_tcp_init(&s->loop->uv, &l->tcp));
    if (r == 0 && (r = uv_tcp_open(&l->tcp, fd)) != 0) uv_close(&l->handle, ws_srv_on_server_handle_closed);
  }
  if (r != 0) return r;
  return start_listener(s, l);
}
