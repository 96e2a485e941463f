/* redisbridge.h - Redis pub/sub bridge on a libuv loop (hiredis async API,
 * with its own glue on libuv: not hiredis' adapters/libuv.h).
 *
 * One bridge = one node's view of Redis: a SUBSCRIBE-mode connection that
 * carries the channels of the topics this node has local subscribers for,
 * and a connection for PUBLISH. Topic t is channel "wsuv:<namespace>:<t>".
 * Every PUBLISH carries an envelope (redisproto.h): the bridge's random
 * origin id, a sequence number per origin and channel (redisseq.h: exact
 * loss counting, whichever topics each node subscribes to) and the opcode.
 * on_message sees messages of OTHER origins only (the node delivered its
 * own locally), and a jump in a remote origin's sequence on a channel is
 * counted as loss.
 *
 * Threads: every function must be called on the loop's thread; callbacks
 * run there. Nothing here blocks: connects, commands and timeouts are all
 * asynchronous. Local delivery never waits for Redis.
 *
 * When Redis is away (refused, killed, frozen, wrong password): publishes
 * are dropped at once and counted (dropped_down); nothing is queued across
 * an outage, since Redis pub/sub is at-most-once anyway and receivers see
 * the gap in the sequence. While connected, commands not yet answered are
 * bounded by max_pending_bytes; beyond it publishes are dropped (dropped_full).
 * Bytes count until Redis answers, so a burst larger than max_pending_bytes
 * within one round trip (or one loop turn: hiredis writes when the socket
 * polls writable) is cut too; size the bound for the bursts you expect.
 * The default, 16 MiB, is measured (benchmarks/bench_redis_pending.py: 20
 * bursts of 5,000 publishes of 200 B, 1 ms apart, Redis 7.0 on loopback):
 * 4 MiB dropped 20,029 and 52,142 in two runs, 8 MiB none but peaked at
 * 3.5 MB, 16 MiB none with peaks of 12.8 and 14.6 MB. Much more buys
 * little: a subscriber that far behind is cut by Redis itself
 * (client-output-buffer-limit pubsub: 32 MB hard, 8 MB for 60 s), and with
 * 512 B payloads the subscriber lost more to that than the publisher
 * dropped at any bound.
 * A connect that does not finish (TCP + AUTH + SELECT + PING) within
 * connect_timeout_ms, or any command unanswered for command_timeout_ms
 * (a frozen Redis; a heartbeat keeps an idle connection checked every
 * heartbeat_ms), drops that connection; poll errors and EOF drop it too.
 * A dropped connection is retried after an exponential backoff with jitter
 * (backoff_min_ms doubling up to backoff_max_ms, each delay drawn uniformly
 * from its upper half); the subscribe connection resubscribes every wanted
 * channel in batches of up to 256 once it is back.
 *
 * Lifetimes: ws_redis_new copies the config strings. ws_redis_close stops
 * everything and frees the bridge once its libuv handles have closed (the
 * loop must run for that); after it no callback is made and r must not be
 * used. It may be called from inside a callback.
 */
#ifndef WS_REDISBRIDGE_H
#define WS_REDISBRIDGE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redisproto.h"

typedef struct ws_redis ws_redis;

typedef struct ws_redis_config {
  const char *host;              /* TCP host: "127.0.0.1". Give an address: hiredis
                                    resolves a name with a blocking getaddrinfo on
                                    every connect attempt, on the loop thread */
  int port;                      /* 6379 */
  const char *unix_path;         /* if set, a Unix socket instead of host/port: NULL */
  const char *user;              /* ACL user for AUTH; NULL/"" = AUTH password only */
  const char *password;          /* NULL/"" = no AUTH */
  int db;                        /* SELECTed on both connections (pub/sub itself
                                    ignores databases; it checks the db exists): 0 */
  const char *ns;                /* channel namespace, "wsuv:<ns>:<topic>": "default" */
  uint32_t connect_timeout_ms;   /* TCP connect through PING reply: 2000 */
  uint32_t command_timeout_ms;   /* oldest unanswered command: 2000 */
  uint32_t heartbeat_ms;         /* check an idle connection this often: 1000 */
  uint32_t backoff_min_ms;       /* first retry delay: 100 */
  uint32_t backoff_max_ms;       /* retry delay cap: 5000 */
  size_t max_pending_bytes;      /* PUBLISH bytes sent but not answered: 16 MiB */
  uint32_t max_topic_len;        /* bytes: 256 */
  uint32_t max_origins;          /* remote origins tracked per wanted topic; when
                                    full that topic's are forgotten (no gap counted
                                    for each origin's next message): 1024 */
  uint32_t max_pub_topics;       /* topics with a publish counter; when full all
                                    restart under a new epoch (redisseq.h): 65536 */
} ws_redis_config;

void ws_redis_config_default(ws_redis_config *cfg);
/* Fills host/port/unix_path/user/password/db of cfg from a parsed URL; the
 * strings point into url, which must outlive ws_redis_new. */
void ws_redis_config_from_url(ws_redis_config *cfg, const ws_redis_url *url);

typedef struct ws_redis_callbacks {
  /* A message from another origin on a wanted topic. topic/payload are
   * valid during the call only; opcode is 1 (text) or 2 (binary). */
  void (*on_message)(ws_redis *r, const char *topic, size_t topic_len, unsigned opcode,
                     const char *payload, size_t len);
  /* Both connections ready (up = 1) or not any more (up = 0; reason is a
   * static or bridge-owned sentence, valid during the call). Called on
   * each change only; the bridge starts down. */
  void (*on_state)(ws_redis *r, int up, const char *reason);
} ws_redis_callbacks;

typedef struct ws_redis_stats {
  uint64_t published;     /* PUBLISHes Redis confirmed */
  uint64_t delivered;     /* remote messages handed to on_message */
  uint64_t dropped_own;   /* our own messages coming back (dropped) */
  uint64_t lost;          /* missing sequence numbers per remote origin and channel */
  uint64_t out_of_order;  /* remote messages with a sequence not above the last */
  uint64_t dropped_down;  /* publishes while the publish connection was not ready */
  uint64_t dropped_full;  /* publishes while max_pending_bytes were unanswered */
  uint64_t unconfirmed;   /* sent, but the connection died before the reply */
  uint64_t malformed;     /* messages on our channels that are no envelope */
  uint64_t bad_version;   /* envelopes of a version we do not know (dropped) */
  uint64_t reconnects;    /* times the bridge came back up after being up */
  uint64_t timeouts;      /* connect and command timeouts */
  uint64_t connects;      /* connection attempts started (both connections) */
  uint64_t pending_bytes; /* PUBLISH bytes unanswered now */
  uint64_t channels;      /* topics wanted now */
  uint64_t seq_topics;    /* topics with a publish sequence counter now */
  uint64_t seq_resets;    /* times that table was full and restarted (epoch) */
  uint64_t seq_streams;   /* (topic, remote origin) sequences tracked now */
  uint64_t seq_memory;    /* bytes of both sequence tables */
} ws_redis_stats;

enum ws_redis_error {
  WS_REDIS_OK = 0,
  WS_REDIS_EDOWN = -1,     /* publish dropped: not connected (counted) */
  WS_REDIS_EFULL = -2,     /* publish dropped: max_pending_bytes (counted) */
  WS_REDIS_EINVAL = -3,    /* bad topic (empty, too long) or opcode */
  WS_REDIS_ENOMEM = -4,
};

/* A new bridge on loop; it starts connecting at once. Returns NULL with
 * *err set to a static sentence on bad config or no memory. user is for
 * the caller (ws_redis_user). */
ws_redis *ws_redis_new(uv_loop_t *loop, const ws_redis_config *cfg,
                       const ws_redis_callbacks *cb, void *user, const char **err);
void *ws_redis_user(const ws_redis *r);
void ws_redis_close(ws_redis *r);

/* Wants topic's channel: 1 if newly wanted, 0 if already, or WS_REDIS_EINVAL /
 * ENOMEM. SUBSCRIBE goes out now if connected, else on (re)connect. */
int ws_redis_subscribe(ws_redis *r, const char *topic, size_t len);
/* 1 if it was wanted (UNSUBSCRIBE goes out if connected), 0 if not. */
int ws_redis_unsubscribe(ws_redis *r, const char *topic, size_t len);
/* PUBLISHes an envelope with topic's next sequence number (taken even when
 * the message is dropped, so receivers see the drop as a gap). Returns
 * WS_REDIS_OK (sent to hiredis), WS_REDIS_EDOWN / EFULL (dropped, counted)
 * or WS_REDIS_EINVAL. payload is copied. */
int ws_redis_publish(ws_redis *r, const char *topic, size_t len, unsigned opcode,
                     const char *payload, size_t plen);

int ws_redis_is_up(const ws_redis *r);
void ws_redis_get_stats(const ws_redis *r, ws_redis_stats *out);
/* This bridge's origin id. */
const uint8_t *ws_redis_origin(const ws_redis *r);
/* The last connection error as a sentence ("" if none); bridge-owned, valid
 * until the next call into the bridge or callback. */
const char *ws_redis_last_error(const ws_redis *r);

#endif
