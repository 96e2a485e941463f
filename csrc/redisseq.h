/* redisseq.h - the Redis bridge's sequence numbers, per origin AND channel.
 *
 * Why per channel: a node receives only the channels it subscribes to, so a
 * sequence shared by all of an origin's topics shows the other topics'
 * publishes as gaps. Here every (origin, topic) is its own stream, and Redis
 * delivers one publisher connection's messages to one subscriber connection
 * in order, losing them only when a connection is cut: a gap in a stream is
 * exactly the messages this node should have had and did not get. A gap
 * shows when the stream's next message arrives: messages lost at the end of
 * a stream are counted once the origin publishes on that channel again, and
 * a stream starts at the first message received after subscribing (what an
 * origin published before it, this node cannot know of).
 *
 * Publisher side: one counter per topic this node publishes to, in a table
 * of at most max_pub_topics: a 48-byte slot in a table kept at most half
 * full, plus a malloc'd copy of the topic. Measured (ws_rseq_stats.memory,
 * tests/core/test_redisseq.py::test_publisher_memory): 65,536 topics of
 * 16 B take 7,340,152 B, 112 B a topic, malloc's per-key overhead aside;
 * the default bound caps it there for short topics (256-byte topics: about
 * 23 MB). When the
 * table is full it is cleared and the epoch goes up by one: every topic
 * restarts at seq 1 under the new epoch (resets counts it). A receiver that
 * sees a stream's epoch rise counts the new epoch's seq numbers it missed,
 * but cannot know the tail of the old epoch it missed: this is the one
 * inexact case, and only when a node publishes to more than max_pub_topics
 * distinct topics in its life.
 *
 * Receiver side: per wanted topic, the (origin, epoch, last seq) of each
 * remote origin seen, at most max_origins per topic (beyond it that topic's
 * origins are forgotten: the next message of each is a fresh start).
 * ws_rseq_forget drops a topic when Redis confirms UNSUBSCRIBE (messages
 * after that belong to a new subscription: the unsubscribed time is no
 * loss). The bridge keeps the streams across a cut subscribe connection, so
 * what was published while it was down is counted as lost.
 *
 * No I/O, no global state. hash_key seeds the table hash (topics come from
 * clients). Functions return WS_RSEQ_ENOMEM when an allocation fails.
 */
#ifndef WS_REDISSEQ_H
#define WS_REDISSEQ_H

#include <stddef.h>
#include <stdint.h>

#include "redisproto.h"

typedef struct ws_rseq ws_rseq;

enum ws_rseq_result {
  WS_RSEQ_FIRST = 0,     /* first message of this stream since subscribing: no gap known */
  WS_RSEQ_NEXT = 1,      /* in order (*lost tells how many were skipped) */
  WS_RSEQ_STALE = 2,     /* seq (or epoch) not above the last: out of order */
  WS_RSEQ_ENOMEM = -1,
};

typedef struct ws_rseq_stats {
  uint64_t pub_topics;   /* topics with a publisher counter now */
  uint64_t resets;       /* publisher table clears (epoch rises) */
  uint64_t streams;      /* (topic, origin) streams tracked now */
  uint64_t forgotten;    /* topics whose origin list was full and forgotten */
  uint64_t memory;       /* bytes held by both tables */
} ws_rseq_stats;

ws_rseq *ws_rseq_new(const uint8_t hash_key[16], uint32_t max_pub_topics,
                     uint32_t max_origins);
void ws_rseq_free(ws_rseq *s);

/* The next (epoch, seq) to publish on topic; seq starts at 1. */
int ws_rseq_next(ws_rseq *s, const char *topic, size_t len, uint32_t *epoch, uint64_t *seq);

/* Accounts a received message; *lost gets the gap (0 unless WS_RSEQ_NEXT). */
int ws_rseq_track(ws_rseq *s, const char *topic, size_t len,
                  const uint8_t origin[WS_REDIS_ORIGIN_LEN], uint32_t epoch, uint64_t seq,
                  uint64_t *lost);

/* Forgets every stream of topic (1 if it had any, else 0). */
int ws_rseq_forget(ws_rseq *s, const char *topic, size_t len);

/* Calls keep(arg, topic, len) for each tracked receiving topic and forgets
 * those for which it returns 0. */
void ws_rseq_retain(ws_rseq *s, int (*keep)(void *arg, const char *topic, size_t len),
                    void *arg);

void ws_rseq_get_stats(const ws_rseq *s, ws_rseq_stats *out);

#endif
