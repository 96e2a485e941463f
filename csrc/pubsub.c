/* pubsub.c - topics on the transport. See pubsub.h.
 *
 * The registry (topics.h) is created on the first subscription and keeps
 * connection pointers as owners; publishing collects them into an array and
 * fans out through ws_server_send_many, so framing, compression and the cork
 * are shared with every other send.
 */
#include "pubsub.h"

#include <stdlib.h>
#include <string.h>

#include "redisbridge.h"
#include "server_int.h"
#include "topics.h"
#include "workerbus.h"

/* The node wants a topic's Redis channel (the worker its topic on the bus)
 * while it has local subscribers. */
static void topic_first(void *user, const char *topic, size_t len) {
  ws_server *s = user;
  if (s->bridge) ws_redis_subscribe(s->bridge, topic, len);
  if (s->bus) {
    ws_bus_subscribe(s->bus, topic, len);
    ws_srv_loop_touched(s->loop);
  }
}

static void topic_last(void *user, const char *topic, size_t len) {
  ws_server *s = user;
  if (s->bridge) ws_redis_unsubscribe(s->bridge, topic, len);
  if (s->bus) {
    ws_bus_unsubscribe(s->bus, topic, len);
    ws_srv_loop_touched(s->loop);
  }
}

static ws_topics *registry(ws_server *s) {
  if (s->topics) return s->topics;
  ws_topics_config cfg;
  ws_topics_config_default(&cfg);
  cfg.max_topic_len = WS_PUBSUB_MAX_TOPIC;
  cfg.on_first = topic_first;
  cfg.on_last = topic_last;
  cfg.user = s;
  /* The hash key keeps a peer from choosing topics that collide. */
  uv_random(NULL, NULL, cfg.hash_key, sizeof cfg.hash_key, 0, NULL);
  s->topics = ws_topics_new(&cfg);
  return s->topics;
}

int ws_server_conn_subscribe(ws_server_conn *c, const char *topic, size_t len) {
  if (c->phase != PH_OPEN || !c->opened || len == 0 || len > WS_PUBSUB_MAX_TOPIC) return -1;
  ws_topics *t = registry(c->server);
  if (!t) return -2;
  if (!c->subscribed) {
    ws_topics_sub_init(&c->sub, c);
    c->subscribed = 1;
  }
  int r = ws_topics_subscribe(t, &c->sub, topic, len);
  return r < 0 ? -2 : r;
}

int ws_server_conn_unsubscribe(ws_server_conn *c, const char *topic, size_t len) {
  if (!c->subscribed || !c->server->topics) return 0;
  return ws_topics_unsubscribe(c->server->topics, &c->sub, topic, len) == 1;
}

size_t ws_server_conn_topic_count(const ws_server_conn *c) {
  return c->subscribed ? ws_topics_sub_count(&c->sub) : 0;
}

int ws_server_conn_topic(const ws_server_conn *c, size_t i, const char **topic, size_t *len) {
  if (!c->subscribed) return -1;
  return ws_topics_sub_topic(&c->sub, i, topic, len);
}

void ws_srv_topics_drop(ws_server_conn *c) {
  if (!c->subscribed) return;
  c->subscribed = 0;
  if (c->server->topics) ws_topics_unsubscribe_all(c->server->topics, &c->sub);
}

/* Local subscribers only (a message from Redis, or the local half of a publish). */
static size_t publish_local(ws_server *s, const char *topic, size_t len, unsigned opcode,
                            const char *data, size_t data_len, const ws_server_conn *except) {
  if (!s->topics || len == 0 || len > WS_PUBSUB_MAX_TOPIC) return 0;
  void *stack[64];
  void **owners = stack;
  /* One lookup when the topic has up to 64 subscribers; a bigger one is
   * collected again into an array of its size. */
  size_t n = ws_topics_collect(s->topics, topic, len, stack, 64);
  if (n == 0) return 0;
  if (n > 64) {
    owners = malloc(n * sizeof *owners);
    if (!owners) return 0;
    n = ws_topics_collect(s->topics, topic, len, owners, n);
  }
  size_t got = n;
  size_t k = 0;
  for (size_t i = 0; i < got; i++)
    if (owners[i] != (const void *)except) owners[k++] = owners[i];
  size_t sent = ws_server_send_many(s, (ws_server_conn *const *)owners, k, opcode, data, data_len);
  if (owners != stack) free(owners);
  return sent;
}

size_t ws_server_publish(ws_server *s, const char *topic, size_t len, unsigned opcode,
                         const char *data, size_t data_len, const ws_server_conn *except) {
  if (len == 0 || len > WS_PUBSUB_MAX_TOPIC) return 0;
  /* Delivered here at once; PUBLISHed once for the other nodes (a failure
   * there is counted by the bridge, never waited for). */
  if (s->bridge) ws_redis_publish(s->bridge, topic, len, opcode, data, data_len);
  if (s->bus) {
    ws_bus_publish(s->bus, topic, len, opcode, data, data_len);
    ws_srv_loop_touched(s->loop);
  }
  return publish_local(s, topic, len, opcode, data, data_len, except);
}

static void bridge_message(ws_redis *r, const char *topic, size_t topic_len, unsigned opcode,
                           const char *payload, size_t len) {
  ws_server *s = ws_redis_user(r);
  publish_local(s, topic, topic_len, opcode, payload, len, NULL);
}

static const ws_redis_callbacks bridge_callbacks = {bridge_message, NULL};

/* Messages from the bus arrive in the poll phase as reads do, and are corked
 * the same way (one cork level held until the phase ends): every message of
 * one read from the hub leaves in one writev per subscriber, not one each
 * (measured with bench_pubsub.py pub1 under --workers 2: see
 * docs/ARCHITECTURE.md). */
static void bus_message(ws_bus *b, const char *topic, size_t topic_len, unsigned opcode,
                        const char *payload, size_t len) {
  ws_server *s = ws_bus_user(b);
  ws_loop *l = s->loop;
  ws_srv_cork_begin(l);
  if (l->poll_corked) ws_srv_cork_end(l);
  else l->poll_corked = 1;
  publish_local(s, topic, topic_len, opcode, payload, len, NULL);
}

static const ws_bus_callbacks bus_callbacks = {bus_message, NULL};

int ws_server_bus_connect(ws_server *s, const char *path, const char **err) {
  if (s->bus || s->bridge) {
    *err = s->bus ? "the server is already on a worker bus"
                  : "the Redis bridge already carries publishes across workers";
    return -1;
  }
  if (!registry(s)) {
    *err = "out of memory";
    return -1;
  }
  ws_bus_config cfg;
  ws_bus_config_default(&cfg);
  cfg.path = path;
  cfg.max_topic_len = WS_PUBSUB_MAX_TOPIC;
  s->bus = ws_bus_new(&s->loop->uv, &cfg, &bus_callbacks, s, err);
  return s->bus ? 0 : -1;
}

int ws_server_bus_stats(const ws_server *s, ws_bus_stats *out, int *up) {
  if (!s->bus) return 0;
  ws_bus_get_stats(s->bus, out);
  *up = ws_bus_is_up(s->bus);
  return 1;
}

int ws_server_bus_hub_stats(const ws_server *s, ws_bushub_stats *out, uint64_t *age_ms) {
  return s->bus ? ws_bus_get_hub_stats(s->bus, out, age_ms) : 0;
}

int ws_server_pubsub_connect(ws_server *s, const char *url, size_t url_len, const char *ns,
                             const char **err) {
  if (s->bus) {
    *err = "the server is on a worker bus: publishes already reach the other workers";
    return -1;
  }
  if (s->bridge) {
    *err = "a pub/sub bridge is already set";
    return -1;
  }
  ws_redis_url *u = calloc(1, sizeof *u);
  if (!u) {
    *err = "out of memory";
    return -1;
  }
  if (ws_redis_url_parse(url, url_len, u, err) != 0) {
    free(u);
    return -1;
  }
  ws_redis_config cfg;
  ws_redis_config_default(&cfg);
  ws_redis_config_from_url(&cfg, u);
  if (ns && *ns) cfg.ns = ns;
  cfg.max_topic_len = WS_PUBSUB_MAX_TOPIC;
  s->bridge = ws_redis_new(&s->loop->uv, &cfg, &bridge_callbacks, s, err);
  if (!s->bridge) {
    free(u);
    return -1;
  }
  s->bridge_url = u;
  if (!registry(s)) {
    *err = "out of memory";
    return -1;
  }
  return 0;
}

int ws_server_pubsub_stats(const ws_server *s, ws_redis_stats *out, int *up) {
  if (!s->bridge) return 0;
  ws_redis_get_stats(s->bridge, out);
  *up = ws_redis_is_up(s->bridge);
  return 1;
}

void ws_srv_pubsub_close(ws_server *s) {
  if (s->bus) {
    ws_bus_close(s->bus); /* as the bridge: freed once its handles have closed */
    s->bus = NULL;
  }
  if (!s->bridge) return;
  ws_redis_close(s->bridge); /* its memory goes when its handles have closed */
  s->bridge = NULL;
}

size_t ws_server_subscribers(const ws_server *s, const char *topic, size_t len) {
  return s->topics ? ws_topics_count(s->topics, topic, len) : 0;
}

size_t ws_server_topics_memory(const ws_server *s) {
  return s->topics ? ws_topics_memory(s->topics) : 0;
}

void ws_srv_topics_free(ws_server *s) {
  ws_srv_pubsub_close(s);
  ws_topics_free(s->topics);
  s->topics = NULL;
  free(s->bridge_url);
  s->bridge_url = NULL;
}
