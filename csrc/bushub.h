/* bushub.h - the worker bus hub: relays publishes between the workers of
 * one `wsuv-serve --workers N` (workerbus.h is the worker's side).
 *
 * The hub accepts worker links on a listening Unix socket it is given (the
 * supervisor binds it, so it outlives a hub that dies and is restarted:
 * workers connecting meanwhile wait in its backlog). Per link it keeps the
 * topics that worker subscribed to (a topics.h registry: topic -> links) and
 * forwards each PUB to the other links subscribed to its topic, never back
 * to the link it came from, with the sequence rewritten to the destination
 * link's own count (busproto.h). Frames read in one read are forwarded in
 * one write per destination.
 *
 * Bounds. Per destination, bytes queued and not taken by the kernel are
 * capped (max_pending_bytes): a worker that stops reading (SIGSTOP, a
 * stuck loop) has further PUBs dropped and counted, and the others are
 * not slowed; it sees the drop as a gap in its sequence when it reads
 * again. A malformed frame or EOF ends a link (its subscriptions go).
 *
 * Counters. The hub sends its ws_bushub_stats to every link as a STATS
 * frame (busproto.h) when the link says HELLO and every stats_interval_ms,
 * so a worker can read them while the hub runs (workerbus.h,
 * ws_bus_get_hub_stats). A STATS from a worker is a malformed frame.
 *
 * Threads: one loop, one thread. ws_bushub_run is the whole hub process:
 * its own loop, SIGINT/SIGTERM stop it.
 */
#ifndef WS_BUSHUB_H
#define WS_BUSHUB_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_bushub_config {
  uint32_t max_topic_len;    /* bytes: 256 */
  uint32_t max_payload;      /* bytes: 64 MiB */
  size_t max_pending_bytes;  /* per destination link: 8 MiB */
  uint32_t max_links;        /* links at once; more are closed at accept: 1024 */
  uint32_t stats_interval_ms; /* the counters to every link this often: 1000; 0 = never */
} ws_bushub_config;

void ws_bushub_config_default(ws_bushub_config *cfg);

typedef struct ws_bushub_stats {
  uint64_t links;         /* links now */
  uint64_t accepted;      /* links accepted */
  uint64_t received;      /* PUBs read */
  uint64_t forwarded;     /* PUB copies queued to a destination */
  uint64_t dropped_full;  /* PUB copies dropped: the destination was not reading */
  uint64_t malformed;     /* links ended by a bad frame */
  uint64_t topics;        /* topics with a subscribed link now */
} ws_bushub_stats;

/* Runs a hub on listen_fd (a listening Unix stream socket, taken over)
 * until SIGINT or SIGTERM. Returns 0, or a negative libuv error with a
 * sentence in err (err_len bytes, NUL-terminated). stats, if not NULL, gets
 * the final counters. */
int ws_bushub_run(int listen_fd, const ws_bushub_config *cfg, ws_bushub_stats *stats,
                  char *err, size_t err_len);

#endif
