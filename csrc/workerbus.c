/* workerbus.c - a worker's link to the bus hub (see workerbus.h).
 *
 * Each connection gets its own heap `blink` (a closing poll handle lives
 * until its close callback, and the next attempt must not wait for it); the
 * bus outlives every link and is freed after its timer and the last link's
 * handle have closed. The socket is our own, non-blocking, under a uv_poll
 * handle rather than a uv_pipe: libuv's uv_try_write refuses while a
 * uv_write is in flight, so a burst of publishes inside one callback would
 * only queue until the loop ran again (8 MiB, then drops). Here every send
 * writes as far as the kernel takes it, the queue first.
 */
#include "workerbus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "busproto.h"
#include "topics.h"

#define READ_SIZE (64 * 1024)

typedef struct blink {
  uv_poll_t poll;
  int fd;              /* the connected socket (owned: closed after the poll handle) */
  int events;          /* what the poll handle watches */
  ws_bus *b;
  ws_bus_decoder dec;
  ws_bus_outq q;       /* only its `fill` buffer: bytes [sent, fill_len) are unsent */
  size_t sent;
  uint64_t next_seq;   /* the hub's next sequence number for us */
  int up, dead;
} blink;

struct ws_bus {
  uv_loop_t *loop;
  ws_bus_config cfg;
  char *path;          /* owned copy of cfg.path */
  ws_bus_callbacks cb;
  void *user;
  blink *link;         /* the current link, or NULL while waiting to retry */
  uv_timer_t timer;    /* the next connection attempt */
  uint64_t origin, seq, rng;
  ws_topics *wanted_reg;  /* the wanted topics: one subscriber, `wanted` */
  ws_topics_sub wanted;
  ws_bus_stats st;
  ws_bushub_stats hub;    /* the hub's counters from its last STATS */
  uint64_t hub_at;        /* uv_now when they came; 0: none yet */
  uint32_t attempt;
  int was_up, closing, handles;
  char rbuf[READ_SIZE];
};

static void link_start(ws_bus *b);
static void link_drop(blink *l);
static void on_retry(uv_timer_t *t);
static void on_poll(uv_poll_t *p, int status, int events);

void ws_bus_config_default(ws_bus_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->max_topic_len = 256;
  cfg->max_payload = 64u * 1024 * 1024;
  cfg->max_pending_bytes = 8u * 1024 * 1024;
  cfg->backoff_min_ms = 50;
  cfg->backoff_max_ms = 2000;
}

static uint64_t rng_next(ws_bus *b) {
  uint64_t z = (b->rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void maybe_free(ws_bus *b) {
  if (!b->closing || b->handles > 0) return;
  ws_topics_unsubscribe_all(b->wanted_reg, &b->wanted);
  ws_topics_free(b->wanted_reg);
  free(b->path);
  free(b);
}

static void on_timer_closed(uv_handle_t *h) {
  ws_bus *b = h->data;
  b->handles--;
  maybe_free(b);
}

ws_bus *ws_bus_new(uv_loop_t *loop, const ws_bus_config *cfg, const ws_bus_callbacks *cb,
                   void *user, const char **err) {
  if (!cfg->path || !*cfg->path) {
    *err = "the worker bus needs the hub's socket path";
    return NULL;
  }
  if (strlen(cfg->path) >= 108) {
    *err = "the worker bus socket path is longer than a Unix socket name may be";
    return NULL;
  }
  if (cfg->max_topic_len < 1 || cfg->max_topic_len > 65535) {
    *err = "the worker bus topic limit must be 1..65535";
    return NULL;
  }
  ws_bus *b = calloc(1, sizeof *b);
  if (!b) {
    *err = "out of memory";
    return NULL;
  }
  b->loop = loop;
  b->cfg = *cfg;
  b->cb = *cb;
  b->user = user;
  size_t n = strlen(cfg->path) + 1;
  b->path = malloc(n);
  ws_topics_config tc;
  ws_topics_config_default(&tc);
  tc.max_topic_len = cfg->max_topic_len;
  uv_random(NULL, NULL, tc.hash_key, sizeof tc.hash_key, 0, NULL);
  b->wanted_reg = b->path ? ws_topics_new(&tc) : NULL;
  if (!b->path || !b->wanted_reg) {
    free(b->path);
    free(b);
    *err = "out of memory";
    return NULL;
  }
  memcpy(b->path, cfg->path, n);
  b->cfg.path = b->path;
  ws_topics_sub_init(&b->wanted, b);
  uv_random(NULL, NULL, &b->origin, sizeof b->origin, 0, NULL);
  b->rng = b->origin ^ 0x5DEECE66Dull;
  uv_timer_init(loop, &b->timer);
  b->timer.data = b;
  uv_unref((uv_handle_t *)&b->timer); /* a retry alone does not keep the loop alive */
  b->handles = 1;
  link_start(b);
  return b;
}

void *ws_bus_user(const ws_bus *b) { return b->user; }
int ws_bus_is_up(const ws_bus *b) { return b->link && b->link->up; }
uint64_t ws_bus_origin(const ws_bus *b) { return b->origin; }

int ws_bus_get_hub_stats(const ws_bus *b, ws_bushub_stats *out, uint64_t *age_ms) {
  if (!b->hub_at) return 0;
  *out = b->hub;
  uint64_t now = uv_now(b->loop) + 1;
  *age_ms = now > b->hub_at ? now - b->hub_at : 0;
  return 1;
}

void ws_bus_get_stats(const ws_bus *b, ws_bus_stats *out) {
  *out = b->st;
  out->pending_bytes = b->link ? b->link->q.fill_len - b->link->sent : 0;
  out->channels = ws_topics_sub_count(&b->wanted);
}

void ws_bus_close(ws_bus *b) {
  if (!b || b->closing) return;
  b->closing = 1;
  if (b->link) link_drop(b->link);
  uv_timer_stop(&b->timer);
  uv_close((uv_handle_t *)&b->timer, on_timer_closed);
}

/* ---- links --------------------------------------------------------------- */

static void on_link_closed(uv_handle_t *h) {
  blink *l = h->data;
  ws_bus *b = l->b;
  close(l->fd);
  ws_bus_decoder_free(&l->dec);
  ws_bus_outq_free(&l->q);
  free(l);
  b->handles--;
  maybe_free(b);
}

static void schedule_retry(ws_bus *b) {
  uint64_t d = b->cfg.backoff_min_ms ? b->cfg.backoff_min_ms : 1;
  for (uint32_t i = 0; i < b->attempt && d < b->cfg.backoff_max_ms; i++) d *= 2;
  if (d > b->cfg.backoff_max_ms) d = b->cfg.backoff_max_ms;
  d = d / 2 + rng_next(b) % (d / 2 + 1); /* the upper half: workers don't retry in step */
  if (b->attempt < 32) b->attempt++;
  uv_timer_start(&b->timer, on_retry, d, 0);
}

static void on_retry(uv_timer_t *t) {
  ws_bus *b = t->data;
  if (!b->closing && !b->link) link_start(b);
}

/* The link is gone (or the bus closes): close it, and retry unless closing. */
static void link_drop(blink *l) {
  if (l->dead) return;
  ws_bus *b = l->b;
  l->dead = 1;
  int was = l->up;
  l->up = 0;
  if (b->link == l) b->link = NULL;
  uv_close((uv_handle_t *)&l->poll, on_link_closed);
  if (b->closing) return;
  schedule_retry(b);
  if (was && b->cb.on_state) b->cb.on_state(b, 0);
}

static void watch(blink *l) {
  int want = UV_READABLE | (l->q.fill_len > l->sent ? UV_WRITABLE : 0);
  if (want == l->events) return;
  l->events = want;
  if (uv_poll_start(&l->poll, want, on_poll) != 0) link_drop(l);
}

/* Writes what is queued until the kernel takes no more; 0, or -1 (dropped). */
static int flush(blink *l) {
  ws_bus_outq *q = &l->q;
  while (l->sent < q->fill_len) {
    ssize_t n = send(l->fd, q->fill + l->sent, q->fill_len - l->sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      link_drop(l);
      return -1;
    }
    l->sent += (size_t)n;
  }
  if (l->sent == q->fill_len) {
    q->fill_len = l->sent = 0;
    if (q->fill_cap > 64 * 1024) { /* a burst's buffer is not kept */
      free(q->fill);
      q->fill = NULL;
      q->fill_cap = 0;
    }
  } else if (l->sent > q->fill_len / 2) { /* keep the unsent tail at the front */
    memmove(q->fill, q->fill + l->sent, q->fill_len - l->sent);
    q->fill_len -= l->sent;
    l->sent = 0;
  }
  watch(l);
  return l->dead ? -1 : 0;
}

/* Sends one frame: straight to the socket when nothing is queued, else (and
 * whatever the kernel did not take) into the queue, which is then written as
 * far as the kernel takes it (a burst inside one callback drains while the
 * hub reads). `limit`: 1 for a PUB (over the bound: dropped, -2), 2 for a
 * SUB/UNSUB (over it: the link is dropped, -1), 0 for the resubscription of a
 * new link (unbounded: it is the wanted set). Returns 0 when sent or queued. */
static int link_send(blink *l, const uint8_t hdr[WS_BUS_HEADER], const char *topic, size_t tl,
                     const char *payload, size_t pl, int limit) {
  size_t total = WS_BUS_HEADER + tl + pl;
  size_t pending = l->q.fill_len - l->sent;
  if (limit && pending + total > l->b->cfg.max_pending_bytes) {
    if (flush(l) != 0) return -1; /* the hub may have read meanwhile */
    pending = l->q.fill_len - l->sent;
    if (pending + total > l->b->cfg.max_pending_bytes) {
      if (limit == 1) return -2;
      link_drop(l);
      return -1;
    }
  }
  if (pending == 0) {
    struct iovec iov[3];
    int nb = 0;
    iov[nb++] = (struct iovec){(void *)hdr, WS_BUS_HEADER};
    if (tl) iov[nb++] = (struct iovec){(void *)topic, tl};
    if (pl) iov[nb++] = (struct iovec){(void *)payload, pl};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)nb};
    ssize_t n;
    do n = sendmsg(l->fd, &m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      link_drop(l);
      return -1;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == total) return 0;
    for (int i = 0; i < nb; i++) { /* the rest, piece by piece */
      size_t len = iov[i].iov_len;
      if (done >= len) {
        done -= len;
        continue;
      }
      if (ws_bus_outq_append_raw(&l->q, (const char *)iov[i].iov_base + done, len - done)) {
        link_drop(l);
        return -1;
      }
      done = 0;
    }
    watch(l);
    return l->dead ? -1 : 0;
  }
  if (ws_bus_outq_append(&l->q, hdr, topic, tl, payload, pl) != 0) {
    link_drop(l);
    return -1;
  }
  return flush(l);
}

static int send_ctrl(blink *l, unsigned type, const char *topic, size_t tl, int limit) {
  ws_bus *b = l->b;
  ws_bus_frame f = {type, 0, b->origin, ++b->seq, topic, tl, NULL, 0};
  uint8_t hdr[WS_BUS_HEADER];
  ws_bus_header_encode(hdr, &f);
  return link_send(l, hdr, topic, tl, NULL, 0, limit);
}

static int on_frame(void *arg, const ws_bus_frame *f) {
  blink *l = arg;
  ws_bus *b = l->b;
  if (f->type == WS_BUS_STATS) {
    uint64_t v[WS_BUS_STATS_COUNT];
    ws_bus_stats_decode((const uint8_t *)f->payload, v);
    b->hub = (ws_bushub_stats){.links = v[0], .accepted = v[1], .received = v[2],
                               .forwarded = v[3], .dropped_full = v[4], .malformed = v[5],
                               .topics = v[6]};
    b->hub_at = uv_now(b->loop) + 1; /* + 1: a report at loop time 0 is still one */
    return 0;
  }
  if (f->type != WS_BUS_PUB) {
    b->st.malformed++;
    link_drop(l);
    return 1;
  }
  if (f->seq > l->next_seq) b->st.lost += f->seq - l->next_seq;
  if (f->seq >= l->next_seq) l->next_seq = f->seq + 1;
  b->st.delivered++;
  if (b->cb.on_message)
    b->cb.on_message(b, f->topic, f->topic_len, f->opcode, f->payload, f->payload_len);
  return l->dead || b->closing;
}

/* Readable: up to 16 reads per wake-up, so one busy hub cannot starve the
 * loop's other handles. */
static void read_some(blink *l) {
  for (int i = 0; i < 16 && !l->dead; i++) {
    ssize_t n = recv(l->fd, l->b->rbuf, READ_SIZE, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) { /* EOF: the hub is gone; or an error */
      link_drop(l);
      return;
    }
    int rc = ws_bus_decoder_feed(&l->dec, l->b->rbuf, (size_t)n, on_frame, l);
    if (rc < 0 && !l->dead) {
      l->b->st.malformed++;
      link_drop(l);
    }
    if ((size_t)n < READ_SIZE) return;
  }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  blink *l = p->data;
  if (l->dead) return;
  if (status < 0) {
    link_drop(l);
    return;
  }
  if (events & UV_WRITABLE) flush(l);
  if (!l->dead && (events & (UV_READABLE | UV_DISCONNECT))) read_some(l);
}

/* The connection is there: say who we are and what we want. */
static void link_ready(blink *l) {
  ws_bus *b = l->b;
  l->up = 1;
  b->attempt = 0;
  if (send_ctrl(l, WS_BUS_HELLO, NULL, 0, 0) != 0) return;
  size_t n = ws_topics_sub_count(&b->wanted);
  for (size_t i = 0; i < n; i++) {
    const char *t;
    size_t tl;
    if (ws_topics_sub_topic(&b->wanted, i, &t, &tl) == 0 && send_ctrl(l, WS_BUS_SUB, t, tl, 0))
      return;
  }
  if (b->was_up) b->st.reconnects++;
  b->was_up = 1;
  if (b->cb.on_state) b->cb.on_state(b, 1);
}

/* A Unix socket connect completes at once (or fails at once: no listener,
 * no room in its backlog), so there is no connecting state. */
static void link_start(ws_bus *b) {
  b->st.connects++;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    schedule_retry(b);
    return;
  }
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  memcpy(addr.sun_path, b->path, strlen(b->path) + 1); /* length checked in ws_bus_new */
  int rc;
  do rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (rc < 0 && errno == EINTR);
  blink *l = rc == 0 ? calloc(1, sizeof *l) : NULL;
  if (!l || uv_poll_init(b->loop, &l->poll, fd) != 0) {
    free(l);
    close(fd);
    schedule_retry(b);
    return;
  }
  l->b = b;
  l->fd = fd;
  l->next_seq = 1;
  l->poll.data = l;
  ws_bus_limits lim = {b->cfg.max_topic_len, b->cfg.max_payload};
  ws_bus_decoder_init(&l->dec, &lim);
  ws_bus_outq_init(&l->q);
  b->handles++;
  b->link = l;
  watch(l);
  if (!l->dead) link_ready(l);
}

/* ---- topics and publish -------------------------------------------------- */

int ws_bus_subscribe(ws_bus *b, const char *topic, size_t len) {
  if (len == 0 || len > b->cfg.max_topic_len) return WS_BUS_INVALID;
  int r = ws_topics_subscribe(b->wanted_reg, &b->wanted, topic, len);
  if (r < 0) return WS_BUS_NOMEM;
  if (r == 1 && b->link && b->link->up) send_ctrl(b->link, WS_BUS_SUB, topic, len, 2);
  return r;
}

int ws_bus_unsubscribe(ws_bus *b, const char *topic, size_t len) {
  if (ws_topics_unsubscribe(b->wanted_reg, &b->wanted, topic, len) != 1) return 0;
  if (b->link && b->link->up) send_ctrl(b->link, WS_BUS_UNSUB, topic, len, 2);
  return 1;
}

int ws_bus_publish(ws_bus *b, const char *topic, size_t len, unsigned opcode,
                   const char *payload, size_t plen) {
  if (len == 0 || len > b->cfg.max_topic_len || (opcode != 1 && opcode != 2))
    return WS_BUS_INVALID;
  if (plen > b->cfg.max_payload) { /* delivered in this worker only */
    b->st.dropped_oversize++;
    return WS_BUS_INVALID;
  }
  blink *l = b->link;
  if (!l || !l->up) {
    b->st.dropped_down++;
    return WS_BUS_DROPPED_DOWN;
  }
  ws_bus_frame f = {WS_BUS_PUB, opcode, b->origin, ++b->seq, topic, len, payload, plen};
  uint8_t hdr[WS_BUS_HEADER];
  ws_bus_header_encode(hdr, &f);
  int rc = link_send(l, hdr, topic, len, payload, plen, 1);
  if (rc == -2) {
    b->st.dropped_full++;
    return WS_BUS_DROPPED_FULL;
  }
  if (rc != 0) {
    b->st.dropped_down++;
    return WS_BUS_DROPPED_DOWN;
  }
  b->st.published++;
  return WS_BUS_SENT;
}
