/* client_direct.c - the blocking client's direct socket path. See client_direct.h.
 *
 * The socket stays blocking between waits once a direct wait made it so
 * (toggling it per wait would cost two ioctls a round trip); every place
 * that hands it to libuv again calls ws_client_direct_leave first: the
 * usual wait in ws_server_run_until, a write libuv must queue, the end.
 */
#include "server_int.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "client_direct.h"

static int conn_fd(const ws_server_conn *c) {
  uv_os_fd_t fd = -1;
  if (uv_fileno(&c->h.handle, &fd) != 0) return -1;
  return fd;
}

int ws_client_conn_set_direct(ws_server_conn *c, int on) {
  if (!c || !c->cl || c->tls) return -1;
  if (!on) ws_client_direct_leave(c);
  c->direct = on ? 1 : 0;
  return 0;
}

void ws_client_direct_leave(ws_server_conn *c) {
  if (!c->fd_blocking) return;
  c->fd_blocking = 0;
  int fd = conn_fd(c), yes = 1;
  if (fd >= 0) (void)ioctl(fd, FIONBIO, &yes);
}

/* Whether the one connection of s may be waited for directly now. */
static ws_server_conn *direct_conn(ws_server *s) {
  ws_loop *l = s->loop;
  if (!l->own || l->embedded || l->nservers != 1 || s->nconns != 1 || s->stopping) return NULL;
  ws_server_conn *c = s->conns;
  if (!c->direct || c->phase != PH_OPEN || c->tls || !c->reading || c->queued || c->held ||
      c->corked || s->cfg.read_rate || s->cfg.write_rate)
    return NULL;
  if (l->deferred || l->app_depth || l->batch_n || l->corking || l->poll_corked || l->zombies)
    return NULL;
  return c;
}

/* SO_RCVTIMEO for a wait of want ms (-1 = unbounded). A bound already set
 * that is not longer than want is kept (the wait may end early: the caller
 * loops); a new one is half of want (at most 65.5 s), so that a deadline
 * coming closer resets it a few times rather than on every wait. */
static int set_bound(ws_server_conn *c, int fd, int want) {
  if (want < 0 || (c->rcvtimeo_ms && (int)c->rcvtimeo_ms <= want)) return 0;
  int ms = want > 2 ? want / 2 : want;
  if (ms > UINT16_MAX) ms = UINT16_MAX; /* a longer wait just loops */
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return -1;
  c->rcvtimeo_ms = (uint16_t)ms;
  return 0;
}

int ws_client_direct_wait(ws_server *s, int wait_ms) {
  ws_server_conn *c = direct_conn(s);
  ws_loop *l = s->loop;
  uv_update_time(&l->uv); /* the caller may have spent long since the last wait */
  int due = uv_backend_timeout(&l->uv); /* -1: no timer; 0: libuv has work now */
  if (c && due != 0) {
    int want = due < 0 ? wait_ms : (wait_ms < 0 || due < wait_ms ? due : wait_ms);
    int fd = conn_fd(c), no = 0;
    if (want != 0 && fd >= 0 && (c->fd_blocking || ioctl(fd, FIONBIO, &no) == 0)) {
      c->fd_blocking = 1;
      if (set_bound(c, fd, want) == 0) {
        uv_buf_t buf;
        ws_srv_on_alloc(&c->h.handle, READ_BUF_SIZE, &buf);
        ssize_t r = recv(fd, buf.base, buf.len, 0);
        int err = r < 0 ? errno : 0;
        uv_update_time(&l->uv);
        if (r < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) return 1;
        if (r <= 0) ws_client_direct_leave(c); /* the end: libuv closes it */
        ws_srv_on_read(&c->h.stream, r > 0 ? r : r == 0 ? UV_EOF : -err, &buf);
        ws_srv_poll_phase_end(l);
        if (l->zombies && !l->app_depth) ws_srv_loop_reap(l);
        return 1;
      }
    }
  }
  if (s->nconns && s->conns->fd_blocking) ws_client_direct_leave(s->conns);
  return 0;
}
