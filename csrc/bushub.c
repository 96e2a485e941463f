/* bushub.c - the worker bus hub (see bushub.h). */
#include "bushub.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "busproto.h"
#include "topics.h"

#define READ_SIZE (64 * 1024)

typedef struct hub hub;

typedef struct hlink {
  uv_pipe_t pipe;
  uv_write_t wreq;
  hub *h;
  struct hlink *prev, *next;
  ws_topics_sub sub;     /* its topics in h->reg */
  ws_bus_decoder dec;
  ws_bus_outq q;
  uint64_t seq;          /* PUBs meant for it so far */
  uint64_t origin;       /* from its HELLO */
  int dead;
} hlink;

struct hub {
  uv_loop_t loop;
  uv_pipe_t listener;
  uv_signal_t sigint, sigterm;
  uv_timer_t stats_timer;
  ws_bushub_config cfg;
  ws_topics *reg;
  hlink *links;
  ws_bushub_stats st;
  void **scratch;        /* a topic's subscribers, collected for a PUB (owned) */
  size_t scratch_cap;
  int stopping;
  char rbuf[READ_SIZE];
};

void ws_bushub_config_default(ws_bushub_config *cfg) {
  cfg->max_topic_len = 256;
  cfg->max_payload = 64u * 1024 * 1024;
  cfg->max_pending_bytes = 8u * 1024 * 1024;
  cfg->max_links = 1024;
  cfg->stats_interval_ms = 1000;
}

static void on_link_closed(uv_handle_t *h) {
  hlink *l = h->data;
  ws_bus_decoder_free(&l->dec);
  ws_bus_outq_free(&l->q);
  free(l);
}

static void link_drop(hlink *l) {
  if (l->dead) return;
  hub *h = l->h;
  l->dead = 1;
  ws_topics_unsubscribe_all(h->reg, &l->sub);
  if (l->prev) l->prev->next = l->next;
  else h->links = l->next;
  if (l->next) l->next->prev = l->prev;
  h->st.links--;
  uv_close((uv_handle_t *)&l->pipe, on_link_closed);
}

static void start_write(hlink *l);

static void on_write(uv_write_t *req, int status) {
  hlink *l = req->data;
  ws_bus_outq_done(&l->q);
  if (l->dead) return;
  if (status < 0) link_drop(l);
  else start_write(l);
}

static void start_write(hlink *l) {
  if (l->dead || !ws_bus_outq_take(&l->q)) return;
  uv_buf_t buf = uv_buf_init(l->q.out, (unsigned)l->q.out_len);
  l->wreq.data = l;
  if (uv_write(&l->wreq, (uv_stream_t *)&l->pipe, &buf, 1, on_write) != 0) {
    ws_bus_outq_done(&l->q);
    link_drop(l);
  }
}

static void forward(hub *h, hlink *from, const ws_bus_frame *f) {
  h->st.received++;
  size_t n = ws_topics_count(h->reg, f->topic, f->topic_len);
  if (n == 0) return;
  if (n > h->scratch_cap) {
    void **p = realloc(h->scratch, n * sizeof *p);
    if (!p) return; /* nothing queued for anyone: their sequences show no gap, */
    h->scratch = p; /* but this hub is out of memory anyway */
    h->scratch_cap = n;
  }
  size_t got = ws_topics_collect(h->reg, f->topic, f->topic_len, h->scratch, n);
  if (got > n) got = n;
  uint8_t hdr[WS_BUS_HEADER];
  ws_bus_header_encode(hdr, f);
  size_t total = WS_BUS_HEADER + f->topic_len + f->payload_len;
  for (size_t i = 0; i < got; i++) {
    hlink *d = h->scratch[i];
    if (d == from || d->dead) continue;
    d->seq++;
    if (ws_bus_outq_pending(&d->q) + total > h->cfg.max_pending_bytes) {
      h->st.dropped_full++; /* d sees the gap in its sequence */
      continue;
    }
    ws_bus_header_set_seq(hdr, d->seq);
    if (ws_bus_outq_append(&d->q, hdr, f->topic, f->topic_len, f->payload, f->payload_len) != 0) {
      link_drop(d);
      continue;
    }
    h->st.forwarded++;
  }
}

/* Queues the hub's counters to l (skipped while l is over its bound: the
 * next report brings them). */
static void send_stats(hub *h, hlink *l) {
  if (l->dead || ws_bus_outq_pending(&l->q) + WS_BUS_HEADER + WS_BUS_STATS_LEN >
                     h->cfg.max_pending_bytes)
    return;
  h->st.topics = ws_topics_topic_count(h->reg);
  const uint64_t v[WS_BUS_STATS_COUNT] = {h->st.links,        h->st.accepted, h->st.received,
                                          h->st.forwarded,    h->st.dropped_full,
                                          h->st.malformed,    h->st.topics};
  uint8_t payload[WS_BUS_STATS_LEN], hdr[WS_BUS_HEADER];
  ws_bus_stats_encode(payload, v);
  ws_bus_frame f = {WS_BUS_STATS, 0, 0, 0, NULL, 0, (const char *)payload, WS_BUS_STATS_LEN};
  ws_bus_header_encode(hdr, &f);
  if (ws_bus_outq_append(&l->q, hdr, NULL, 0, (const char *)payload, WS_BUS_STATS_LEN) != 0)
    link_drop(l);
}

static void on_stats_timer(uv_timer_t *t) {
  hub *h = t->data;
  for (hlink *l = h->links, *next; l; l = next) {
    next = l->next; /* a failed append drops l */
    send_stats(h, l);
    start_write(l);
  }
}

static int on_frame(void *arg, const ws_bus_frame *f) {
  hlink *l = arg;
  hub *h = l->h;
  switch (f->type) {
    case WS_BUS_HELLO:
      l->origin = f->origin;
      send_stats(h, l); /* written with what this read produced */
      break;
    case WS_BUS_STATS: /* the hub's own frame: no worker sends one */
      h->st.malformed++;
      link_drop(l);
      return 1;
    case WS_BUS_SUB:
      if (ws_topics_subscribe(h->reg, &l->sub, f->topic, f->topic_len) < 0) {
        link_drop(l); /* out of memory: the worker reconnects and resends its set */
        return 1;
      }
      break;
    case WS_BUS_UNSUB:
      ws_topics_unsubscribe(h->reg, &l->sub, f->topic, f->topic_len);
      break;
    default:
      forward(h, l, f);
      break;
  }
  return 0;
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  hlink *l = hd->data;
  *buf = uv_buf_init(l->h->rbuf, READ_SIZE);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  hlink *l = st->data;
  hub *h = l->h;
  if (l->dead) return;
  if (nread < 0) {
    link_drop(l);
    return;
  }
  int rc = ws_bus_decoder_feed(&l->dec, buf->base, (size_t)nread, on_frame, l);
  if (rc < 0 && !l->dead) {
    h->st.malformed++;
    link_drop(l);
  }
  /* Everything this read produced leaves in one write per destination. */
  for (hlink *d = h->links; d; d = d->next) start_write(d);
}

static void on_connection(uv_stream_t *server, int status) {
  hub *h = server->data;
  if (status < 0 || h->stopping) return;
  hlink *l = calloc(1, sizeof *l);
  if (!l) return;
  l->h = h;
  uv_pipe_init(&h->loop, &l->pipe, 0);
  l->pipe.data = l;
  if (uv_accept(server, (uv_stream_t *)&l->pipe) != 0 || h->st.links >= h->cfg.max_links) {
    l->dead = 1;
    uv_close((uv_handle_t *)&l->pipe, on_link_closed);
    return;
  }
  ws_bus_limits lim = {h->cfg.max_topic_len, h->cfg.max_payload};
  ws_bus_decoder_init(&l->dec, &lim);
  ws_bus_outq_init(&l->q);
  ws_topics_sub_init(&l->sub, l);
  l->next = h->links;
  if (h->links) h->links->prev = l;
  h->links = l;
  h->st.links++;
  h->st.accepted++;
  if (uv_read_start((uv_stream_t *)&l->pipe, on_alloc, on_read) != 0) link_drop(l);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  hub *h = sig->data;
  if (h->stopping) return;
  h->stopping = 1;
  uv_close((uv_handle_t *)&h->listener, NULL);
  /* Still caught (a second SIGTERM, as the supervisor sends when its workers
   * are gone, must not kill us before the final counters), but they no
   * longer keep the loop running; closed after it. */
  uv_unref((uv_handle_t *)&h->sigint);
  uv_unref((uv_handle_t *)&h->sigterm);
  uv_close((uv_handle_t *)&h->stats_timer, NULL);
  while (h->links) link_drop(h->links);
}

int ws_bushub_run(int listen_fd, const ws_bushub_config *cfg, ws_bushub_stats *stats,
                  char *err, size_t err_len) {
  hub *h = calloc(1, sizeof *h);
  int rc = UV_ENOMEM;
  if (!h) goto fail_alloc;
  h->cfg = *cfg;
  ws_topics_config tc;
  ws_topics_config_default(&tc);
  tc.max_topic_len = cfg->max_topic_len;
  uv_random(NULL, NULL, tc.hash_key, sizeof tc.hash_key, 0, NULL);
  h->reg = ws_topics_new(&tc);
  if (!h->reg) goto fail_reg;
  if ((rc = uv_loop_init(&h->loop)) != 0) goto fail_loop;
  uv_pipe_init(&h->loop, &h->listener, 0);
  h->listener.data = h;
  if ((rc = uv_pipe_open(&h->listener, listen_fd)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&h->listener, 128, on_connection)) != 0) {
    uv_close((uv_handle_t *)&h->listener, NULL);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    uv_loop_close(&h->loop);
    goto fail_loop;
  }
  uv_signal_init(&h->loop, &h->sigint);
  uv_signal_init(&h->loop, &h->sigterm);
  h->sigint.data = h->sigterm.data = h;
  uv_signal_start(&h->sigint, on_signal, SIGINT);
  uv_signal_start(&h->sigterm, on_signal, SIGTERM);
  uv_timer_init(&h->loop, &h->stats_timer);
  h->stats_timer.data = h;
  if (cfg->stats_interval_ms)
    uv_timer_start(&h->stats_timer, on_stats_timer, cfg->stats_interval_ms,
                   cfg->stats_interval_ms);
  uv_run(&h->loop, UV_RUN_DEFAULT); /* until a signal closed every other handle */
  uv_close((uv_handle_t *)&h->sigint, NULL);
  uv_close((uv_handle_t *)&h->sigterm, NULL);
  uv_run(&h->loop, UV_RUN_DEFAULT);
  uv_loop_close(&h->loop);
  h->st.topics = ws_topics_topic_count(h->reg);
  if (stats) *stats = h->st;
  ws_topics_free(h->reg);
  free(h->scratch);
  free(h);
  if (err_len) err[0] = 0;
  return 0;
fail_loop:
  ws_topics_free(h->reg);
fail_reg:
  free(h);
fail_alloc:
  if (err_len) snprintf(err, err_len, "worker bus hub: %s", uv_strerror(rc));
  return rc;
}
