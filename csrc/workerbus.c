/* workerbus.c - a worker's link to the bus hub (see workerbus.h).
 *
 * Each connection attempt gets its own heap `blink` (a closing pipe handle
 * lives until its close callback, and the next attempt must not wait for
 * it); the bus outlives every link and is freed after its timer and the
 * last link's pipe have closed. Writes go straight to the socket
 * (uv_try_write) while nothing is queued; what the kernel does not take is
 * queued (busproto.h's ws_bus_outq) and leaves in one uv_write per round.
 */
#include "workerbus.h"

#include <stdlib.h>
#include <string.h>

#include "busproto.h"
#include "topics.h"

#define READ_SIZE (64 * 1024)

typedef struct blink {
  uv_pipe_t pipe;
  uv_connect_t creq;
  uv_write_t wreq;
  ws_bus *b;
  ws_bus_decoder dec;
  ws_bus_outq q;
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
  uint32_t attempt;
  int was_up, closing, handles;
  char rbuf[READ_SIZE];
};

static void link_start(ws_bus *b);
static void link_drop(blink *l);
static void on_retry(uv_timer_t *t);

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

void ws_bus_get_stats(const ws_bus *b, ws_bus_stats *out) {
  *out = b->st;
  out->pending_bytes = b->link ? ws_bus_outq_pending(&b->link->q) : 0;
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
  uv_close((uv_handle_t *)&l->pipe, on_link_closed);
  if (b->closing) return;
  schedule_retry(b);
  if (was && b->cb.on_state) b->cb.on_state(b, 0);
}

static void start_write(blink *l);

static void on_write(uv_write_t *req, int status) {
  blink *l = req->data;
  ws_bus_outq_done(&l->q);
  if (l->dead) return;
  if (status < 0) link_drop(l);
  else start_write(l);
}

static void start_write(blink *l) {
  if (!ws_bus_outq_take(&l->q)) return;
  uv_buf_t buf = uv_buf_init(l->q.out, (unsigned)l->q.out_len);
  l->wreq.data = l;
  if (uv_write(&l->wreq, (uv_stream_t *)&l->pipe, &buf, 1, on_write) != 0) {
    ws_bus_outq_done(&l->q);
    link_drop(l);
  }
}

/* Sends one frame: straight to the socket when nothing is queued, else (and
 * whatever the kernel did not take) into the queue. `limit`: 1 for a PUB
 * (over the bound: dropped, -2), 2 for a SUB/UNSUB (over it: the link is
 * dropped, -1), 0 for the resubscription of a new link (unbounded: it is
 * the wanted set). Returns 0 when sent or queued. */
static int link_send(blink *l, const uint8_t hdr[WS_BUS_HEADER], const char *topic, size_t tl,
                     const char *payload, size_t pl, int limit) {
  size_t total = WS_BUS_HEADER + tl + pl;
  size_t pending = ws_bus_outq_pending(&l->q);
  if (limit && pending + total > l->b->cfg.max_pending_bytes) {
    if (limit == 1) return -2;
    link_drop(l);
    return -1;
  }
  if (pending == 0) {
    uv_buf_t bufs[3];
    unsigned nb = 0;
    bufs[nb++] = uv_buf_init((char *)hdr, WS_BUS_HEADER);
    if (tl) bufs[nb++] = uv_buf_init((char *)topic, (unsigned)tl);
    if (pl) bufs[nb++] = uv_buf_init((char *)payload, (unsigned)pl);
    int n = uv_try_write((uv_stream_t *)&l->pipe, bufs, nb);
    if (n < 0 && n != UV_EAGAIN) {
      link_drop(l);
      return -1;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    if (done == total) return 0;
    /* The rest, piece by piece. */
    for (unsigned i = 0; i < nb; i++) {
      size_t len = bufs[i].len;
      if (done >= len) {
        done -= len;
        continue;
      }
      if (ws_bus_outq_append_raw(&l->q, bufs[i].base + done, len - done) != 0) {
        link_drop(l);
        return -1;
      }
      done = 0;
    }
  } else if (ws_bus_outq_append(&l->q, hdr, topic, tl, payload, pl) != 0) {
    link_drop(l);
    return -1;
  }
  start_write(l);
  return l->dead ? -1 : 0;
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

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  blink *l = h->data;
  *buf = uv_buf_init(l->b->rbuf, READ_SIZE);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  blink *l = st->data;
  if (l->dead) return;
  if (nread < 0) {
    link_drop(l);
    return;
  }
  int rc = ws_bus_decoder_feed(&l->dec, buf->base, (size_t)nread, on_frame, l);
  if (rc < 0 && !l->dead) {
    l->b->st.malformed++;
    link_drop(l);
  }
}

static void on_connect(uv_connect_t *req, int status) {
  blink *l = req->data;
  ws_bus *b = l->b;
  if (l->dead) return;
  if (status < 0 || uv_read_start((uv_stream_t *)&l->pipe, on_alloc, on_read) != 0) {
    link_drop(l);
    return;
  }
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

static void link_start(ws_bus *b) {
  blink *l = calloc(1, sizeof *l);
  if (!l) {
    schedule_retry(b);
    return;
  }
  l->b = b;
  l->next_seq = 1;
  ws_bus_limits lim = {b->cfg.max_topic_len, b->cfg.max_payload};
  ws_bus_decoder_init(&l->dec, &lim);
  ws_bus_outq_init(&l->q);
  uv_pipe_init(b->loop, &l->pipe, 0);
  l->pipe.data = l;
  l->creq.data = l;
  b->handles++;
  b->link = l;
  b->st.connects++;
  uv_pipe_connect(&l->creq, &l->pipe, b->path, on_connect);
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
  if (len == 0 || len > b->cfg.max_topic_len || (opcode != 1 && opcode != 2) ||
      plen > b->cfg.max_payload)
    return WS_BUS_INVALID;
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
