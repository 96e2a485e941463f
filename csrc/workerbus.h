/* workerbus.h - a worker's link to the worker bus hub (bushub.h), on a libuv
 * loop: publish across the processes of `wsuv-serve --workers N` without an
 * external service.
 *
 * One bus = one worker's stream (a Unix socket) to the hub the supervisor
 * runs. The worker tells the hub which topics it has local subscribers for
 * (SUB when a topic gets its first, UNSUB after its last); a publish is
 * delivered locally by the caller and sent to the hub once (PUB), which
 * forwards it to every other worker subscribed to the topic, never back to
 * its origin: each subscriber gets exactly one copy, and frames of one
 * publisher arrive in its order (one stream in, one stream out per worker).
 * Frames are busproto.h's.
 *
 * Bounds. Bytes queued to the hub and not yet taken by the kernel are
 * capped (max_pending_bytes): past it a publish is dropped and counted
 * (dropped_full), so a frozen hub costs a bounded amount of memory and
 * never blocks the loop. A SUB/UNSUB that would pass the cap drops the
 * link instead (it must not be lost: the reconnect resends the whole set).
 * While the link is down, publishes are dropped and counted (dropped_down);
 * the hub counts what it drops for a worker that does not read, and the
 * worker sees it as a gap in the hub's sequence (lost).
 *
 * Reconnects. A refused or failed connect, EOF, a read or write error and
 * a malformed frame from the hub drop the link; it is retried after an
 * exponential backoff with jitter (backoff_min_ms doubling up to
 * backoff_max_ms, each delay drawn from its upper half), and a new link
 * starts with HELLO and a SUB for every wanted topic.
 *
 * The hub reports its own counters over the link (STATS, busproto.h): the
 * latest are kept for ws_bus_get_hub_stats.
 *
 * Threads: loop thread only; callbacks run there. ws_bus_close frees the
 * bus once its handles have closed (the loop must run); it may be called
 * from a callback, and no callback follows it.
 */
#ifndef WS_WORKERBUS_H
#define WS_WORKERBUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "bushub.h"

typedef struct ws_bus ws_bus;

typedef struct ws_bus_config {
  const char *path;            /* the hub's Unix socket (copied): required */
  uint32_t max_topic_len;      /* bytes: 256 */
  uint32_t max_payload;        /* bytes of one message: 64 MiB */
  size_t max_pending_bytes;    /* queued to the hub, not taken by the kernel: 8 MiB */
  uint32_t backoff_min_ms;     /* first retry delay: 50 */
  uint32_t backoff_max_ms;     /* retry delay cap: 2000 */
} ws_bus_config;

void ws_bus_config_default(ws_bus_config *cfg);

typedef struct ws_bus_callbacks {
  /* A message another worker published on a wanted topic; topic and payload
   * are valid during the call only. */
  void (*on_message)(ws_bus *b, const char *topic, size_t topic_len, unsigned opcode,
                     const char *payload, size_t len);
  /* The link came up (1) or went down (0); may be NULL. */
  void (*on_state)(ws_bus *b, int up);
} ws_bus_callbacks;

typedef struct ws_bus_stats {
  uint64_t published;     /* PUBs handed to the link */
  uint64_t delivered;     /* messages from other workers handed to on_message */
  uint64_t lost;          /* gaps in the hub's sequence: what it dropped for us */
  uint64_t dropped_down;  /* publishes while the link was down */
  uint64_t dropped_full;  /* publishes while max_pending_bytes were queued */
  uint64_t dropped_oversize; /* publishes over max_payload: not sent to the other workers */
  uint64_t malformed;     /* links dropped for a bad frame from the hub */
  uint64_t connects;      /* connection attempts */
  uint64_t reconnects;    /* times the link came back after being up */
  uint64_t pending_bytes; /* queued to the hub now */
  uint64_t channels;      /* topics wanted now */
} ws_bus_stats;

enum ws_bus_result {
  WS_BUS_SENT = 0,
  WS_BUS_DROPPED_DOWN = -1,
  WS_BUS_DROPPED_FULL = -2,
  WS_BUS_INVALID = -3,      /* empty or too long topic, bad opcode, payload too big */
  WS_BUS_NOMEM = -4,
};

/* A new bus on loop; it starts connecting at once. NULL with *err a static
 * sentence on a bad config (no path, a path longer than a Unix socket
 * name) or no memory. */
ws_bus *ws_bus_new(uv_loop_t *loop, const ws_bus_config *cfg, const ws_bus_callbacks *cb,
                   void *user, const char **err);
void *ws_bus_user(const ws_bus *b);
void ws_bus_close(ws_bus *b);

/* Wants a topic: 1 if newly wanted (SUB goes out if up), 0 if already, or
 * WS_BUS_INVALID / WS_BUS_NOMEM. */
int ws_bus_subscribe(ws_bus *b, const char *topic, size_t len);
/* 1 if it was wanted (UNSUB goes out if up), 0 if not. */
int ws_bus_unsubscribe(ws_bus *b, const char *topic, size_t len);
/* Sends one PUB; returns a ws_bus_result (drops are counted). */
int ws_bus_publish(ws_bus *b, const char *topic, size_t len, unsigned opcode,
                   const char *payload, size_t plen);

int ws_bus_is_up(const ws_bus *b);
uint64_t ws_bus_origin(const ws_bus *b);
void ws_bus_get_stats(const ws_bus *b, ws_bus_stats *out);
/* The hub's counters from its latest report (bushub.h: it sends them when
 * the link says HELLO and every second) and their age in loop milliseconds;
 * 1, or 0 before the first report. */
int ws_bus_get_hub_stats(const ws_bus *b, ws_bushub_stats *out, uint64_t *age_ms);

#endif
