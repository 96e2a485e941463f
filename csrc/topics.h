/* topics.h - topic registry: topic name -> subscribers, subscriber -> topics.
 *
 * Sans-I/O and single-threaded: no locks, no loop, no global state; every
 * function must be called by the one thread that owns the registry.
 *
 * Names. A topic is a byte string of 1..max_topic_len bytes (not NUL
 * terminated; every name is passed with its length). The registry copies
 * names it keeps; the caller's buffer is never retained.
 *
 * Subscribers. A subscriber is a ws_topics_sub that the CALLER owns and
 * usually embeds in its connection struct (40 bytes on LP64, checked by a
 * static assertion). ws_topics_sub_init gives it an `owner` pointer (the
 * connection), which is what iteration hands back. The caller must call
 * ws_topics_unsubscribe_all before the ws_topics_sub's memory goes away or is
 * moved (the registry points at it), and must not touch its fields.
 * Cost: O(own topics) for unsubscribe_all.
 *
 * Memory. A subscription is two 16-byte entries: one in its topic's array,
 * one in its subscriber's array (the first one inline in ws_topics_sub, so a
 * subscriber with one topic allocates nothing of its own). Arrays grow by
 * 1.5x and shrink when a quarter full, so an entry costs at most 24 bytes
 * plus the topic's share (struct + name + hash slot, over all of its
 * subscribers). A topic with no subscribers is freed. Every byte the
 * registry allocates is counted (ws_topics_memory, requested sizes;
 * malloc's own headers come on top) and can be capped (max_bytes).
 *
 * Lookup. Topics live in an open-addressed hash table keyed with SipHash-1-3
 * under the caller's 16-byte key (pick it at random: names come from the
 * network, and a fixed key lets them collide on purpose). Subscribe and
 * unsubscribe find the pair by scanning the smaller of the two arrays
 * involved: O(min(subscriber's topics, topic's subscribers)). Transports
 * should bound topics per connection.
 *
 * Iteration. ws_topics_each calls fn for each subscriber of a topic; fn may
 * subscribe, unsubscribe and unsubscribe_all freely (any subscriber, any
 * topic, including the one being iterated; each nested iteration included).
 * The rule: every subscriber present when the iteration starts and still
 * subscribed when its turn comes is visited exactly once; one that leaves
 * before its turn is not visited; one that joins during the iteration is not
 * visited by it. A removal during iteration leaves a tombstone that is
 * swept when the outermost iteration of that topic ends (so the topic's
 * memory shrinks then, not before). ws_topics_free must not be called from
 * inside fn or a notification.
 *
 * Notifications. on_first(topic) when a topic gets its first subscriber,
 * on_last(topic) when its last one leaves (the Redis bridge subscribes the
 * topic's channel only in between). They run inside the call that caused
 * them, and must not modify the registry (reading it is fine).
 *
 * Errors are negative WS_TOPICS_E* values; ws_topics_strerror names them.
 */
#ifndef WS_TOPICS_H
#define WS_TOPICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_topics ws_topics;
typedef struct ws_topic ws_topic;

enum ws_topics_error {
  WS_TOPICS_OK = 0,
  WS_TOPICS_ENOMEM = -1,   /* allocation failed or max_bytes would be exceeded */
  WS_TOPICS_EINVAL = -2,   /* empty name or longer than max_topic_len */
};

/* One subscription as its subscriber sees it (private). */
typedef struct ws_topics_item {
  ws_topic *topic;
  uint32_t pos;  /* index of the matching entry in the topic's array */
  uint32_t pad_;
} ws_topics_item;

/* Per-subscriber state, owned and placed by the caller; fields are private. */
typedef struct ws_topics_sub {
  void *owner;           /* handed back by iteration; never dereferenced */
  ws_topics_item *heap;  /* the items when cap > 1 (registry-allocated) */
  ws_topics_item one;    /* the item when cap == 1 */
  uint32_t count, cap;
} ws_topics_sub;

typedef void (*ws_topics_notify_fn)(void *user, const char *topic, size_t len);

typedef struct ws_topics_config {
  uint32_t max_topic_len;        /* bytes; 1..65535: 256 */
  size_t max_bytes;              /* cap on ws_topics_memory; 0 = none: 0 */
  uint8_t hash_key[16];          /* SipHash key: zero (set it at random) */
  ws_topics_notify_fn on_first;  /* may be NULL */
  ws_topics_notify_fn on_last;   /* may be NULL */
  void *user;                    /* passed to the notifications */
} ws_topics_config;

void ws_topics_config_default(ws_topics_config *cfg);

/* A new, empty registry (the config is copied), or NULL if out of memory
 * or cfg->max_topic_len is out of range. */
ws_topics *ws_topics_new(const ws_topics_config *cfg);
/* Frees every topic and the registry. Subscribers still subscribed are left
 * with dangling state: unsubscribe_all them first, or drop them unused. */
void ws_topics_free(ws_topics *t);

/* Prepares caller-owned subscriber state; owner is what iteration returns. */
void ws_topics_sub_init(ws_topics_sub *s, void *owner);

/* 1 if newly subscribed, 0 if it already was, or a negative error (the
 * registry is then unchanged). May call on_first. */
int ws_topics_subscribe(ws_topics *t, ws_topics_sub *s, const char *topic, size_t len);
/* 1 if it was subscribed (and no longer is), 0 if not. May call on_last. */
int ws_topics_unsubscribe(ws_topics *t, ws_topics_sub *s, const char *topic, size_t len);
/* Drops every subscription of s; returns how many. May call on_last for
 * each topic it empties. s may then be freed, or reused. */
size_t ws_topics_unsubscribe_all(ws_topics *t, ws_topics_sub *s);

/* Subscribers of a topic (0 for unknown topics). */
size_t ws_topics_count(const ws_topics *t, const char *topic, size_t len);
/* 1 if s is subscribed to topic. */
int ws_topics_is_subscribed(const ws_topics *t, const ws_topics_sub *s, const char *topic,
                            size_t len);
/* Topics with at least one subscriber. */
size_t ws_topics_topic_count(const ws_topics *t);

/* Copies the owners of up to cap subscribers of topic into out and returns
 * the topic's subscriber count (more than cap: the array was too small).
 * Order is unspecified. */
size_t ws_topics_collect(const ws_topics *t, const char *topic, size_t len, void **out,
                         size_t cap);

/* fn returns 0 to go on, non-zero to stop. */
typedef int (*ws_topics_visit_fn)(void *arg, void *owner, ws_topics_sub *sub);
/* Calls fn (not NULL) for the topic's subscribers under the rule in the header comment;
 * returns how many were visited. */
size_t ws_topics_each(ws_topics *t, const char *topic, size_t len, ws_topics_visit_fn fn,
                      void *arg);

/* A subscriber's topics: how many, and the i-th (0 <= i < count; order
 * unspecified, and an unsubscribe may reorder them). The name stays valid
 * until that subscription ends. Returns 0, or WS_TOPICS_EINVAL for a bad i. */
size_t ws_topics_sub_count(const ws_topics_sub *s);
int ws_topics_sub_topic(const ws_topics_sub *s, size_t i, const char **name, size_t *len);

/* Bytes the registry has allocated now (requested sizes), and how many live
 * allocations that is. */
size_t ws_topics_memory(const ws_topics *t);
size_t ws_topics_allocations(const ws_topics *t);

const char *ws_topics_strerror(int err);

/* SipHash-1-3 of data under a 16-byte key (exposed for tests). */
uint64_t ws_topics_siphash(const uint8_t key[16], const void *data, size_t len);

#endif
