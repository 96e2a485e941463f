/* pubsub.h - topics on the transport: subscribe connections, publish to them.
 *
 * A connection subscribes to topics (bytes, 1..256 of them, any content);
 * ws_server_publish writes one message to every open subscriber of a topic:
 * the frame is encoded once (and compressed once per distinct negotiated
 * window, as ws_server_send_many does), through the same cork and write path
 * as a direct send, so a publish and a ws_server_conn_send to the same
 * connection keep their order. The registry is csrc/topics.h: a subscription
 * costs one 16-byte entry on each side plus the topic's share; each
 * connection embeds its 40-byte subscriber state; a topic nobody is
 * subscribed to costs nothing. A connection's subscriptions are dropped when
 * it closes (the close handshake done, or the socket gone).
 *
 * Threads: as every ws_server_* call, on the loop thread only.
 */
#ifndef WS_PUBSUB_H
#define WS_PUBSUB_H

#include <stddef.h>

#include "redisbridge.h"
#include "server.h"
#include "workerbus.h"

/* Longest topic, in bytes. */
#define WS_PUBSUB_MAX_TOPIC 256

/* 1 if newly subscribed, 0 if it already was; -1 if the connection is not
 * open or the topic is empty or too long; -2 out of memory. */
int ws_server_conn_subscribe(ws_server_conn *c, const char *topic, size_t len);
/* 1 if it was subscribed, 0 if not. */
int ws_server_conn_unsubscribe(ws_server_conn *c, const char *topic, size_t len);
/* The connection's topics: how many, and the i-th (0 <= i < count; the
 * pointer is valid until the next subscribe/unsubscribe of c). */
size_t ws_server_conn_topic_count(const ws_server_conn *c);
int ws_server_conn_topic(const ws_server_conn *c, size_t i, const char **topic, size_t *len);

/* Sends the message (WS_OP_TEXT/BINARY) to every open subscriber of topic
 * except `except` (may be NULL). Returns the number of connections written
 * to. */
size_t ws_server_publish(ws_server *s, const char *topic, size_t len, unsigned opcode,
                         const char *data, size_t data_len, const ws_server_conn *except);
/* Across processes and machines: a Redis pub/sub bridge (redisbridge.h) on
 * the server's loop. url is redis://[[user]:password@]host[:port][/db] or
 * unix:///path?db=N; ns namespaces the channels (wsuv:<ns>:<topic>). From
 * then on the node subscribes a topic's channel while it has local
 * subscribers, and every publish is also PUBLISHed once (remote subscribers
 * get exactly one copy; a node drops its own). Returns 0, or -1 with *err a
 * static sentence (a malformed URL, a bridge already set, no memory). Redis
 * being down is not an error: local delivery goes on, remote publishes are
 * dropped and counted, the bridge reconnects. */
int ws_server_pubsub_connect(ws_server *s, const char *url, size_t url_len, const char *ns,
                             const char **err);
/* Across the workers of one machine (`wsuv-serve --workers N`): a link to
 * the worker bus hub listening on the Unix socket path (workerbus.h), on
 * the server's loop. From then on the worker wants a topic on the bus while
 * it has local subscribers, and every publish is also sent to the hub once
 * (which forwards it to the other workers subscribed, never back). Call it
 * before connections subscribe. Returns 0, or -1 with *err a static sentence
 * (a bus or a Redis bridge already set: the two do not combine, since each
 * worker being a Redis node already reaches every worker exactly once; a bad
 * path; no memory). A hub that is not there yet is not an error: the link
 * retries with backoff, and publishes meanwhile are dropped and counted. */
int ws_server_bus_connect(ws_server *s, const char *path, const char **err);
/* The bus link's counters; 0 if the server is on no bus. */
int ws_server_bus_stats(const ws_server *s, struct ws_bus_stats *out, int *up);
/* The worker bus hub's counters as of its latest report and their age in
 * ms (workerbus.h); 0 if the server is on no bus or none came yet. */
int ws_server_bus_hub_stats(const ws_server *s, struct ws_bushub_stats *out, uint64_t *age_ms);
/* The bridge's counters (redisbridge.h); 0 if there is no bridge. */
int ws_server_pubsub_stats(const ws_server *s, struct ws_redis_stats *out, int *up);

/* Subscribers of a topic (0 for one nobody is subscribed to). */
size_t ws_server_subscribers(const ws_server *s, const char *topic, size_t len);
/* Bytes the registry holds (every allocation counted). */
size_t ws_server_topics_memory(const ws_server *s);

#endif
