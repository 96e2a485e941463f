/* server.h - the libuv transport: listeners, connections, writes, timers.
 *
 * The only layer that knows libuv. A ws_server is attached to a loop
 * (loop.h: its own, or one shared with other servers) and owns its
 * listeners and every connection. A connection goes through the opening
 * handshake (handshake.h), then runs a protocol engine (wsconn.h); the
 * application sees it through ws_server_callbacks. All ws_server_* functions
 * must be called on the loop's thread (from inside a callback, or before
 * ws_server_run), except ws_server_wakeup and ws_server_request_stop, which
 * any thread may call.
 *
 * Lifetimes: a connection's on_close is called exactly once for every
 * connection that got on_open; after it the application must not use that
 * ws_server_conn pointer again (the transport may still be flushing it).
 * A connection that never opened is never reported.
 */
#ifndef WS_SERVER_H
#define WS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "clienths.h"
#include "handshake.h"
#include "loop.h"
#include "wsconn.h"

typedef struct ws_server ws_server;
typedef struct ws_server_conn ws_server_conn;
typedef struct ws_server_timer ws_server_timer;

#define WS_SERVER_BATCH_WORDS 4

typedef struct ws_server_config {
  int backlog;                    /* listen(2) backlog: 511 */
  int tcp_nodelay;                /* disable Nagle: 1 (small messages go at once) */
  int tcp_keepalive;              /* TCP keepalive delay in s; 0 = off: 0 */
  int reuseport;                  /* SO_REUSEPORT on TCP listeners: 0 */
  uint32_t max_connections;       /* open sockets; beyond -> 503; 0 = none: 0 */
  ws_handshake_limits handshake;  /* URL/header limits (handshake.h defaults) */
  ws_conn_limits limits;          /* message size/fragments (wsconn.h defaults) */
  uint32_t handshake_timeout_ms;  /* request must arrive within: 10000 */
  uint32_t idle_timeout_ms;       /* close 1001 after no bytes read for: 0 = off */
  uint32_t ping_interval_ms;      /* ping after this long without reading: 20000 */
  uint32_t ping_timeout_ms;       /* drop if nothing arrives this long after a ping: 20000 */
  uint32_t close_timeout_ms;      /* wait for the peer's close / FIN: 5000 */
  uint32_t shutdown_timeout_ms;   /* graceful shutdown bound: 5000 */
  size_t write_high_water;        /* buffered bytes that make a conn "full": 1 MiB */
  size_t write_low_water;         /* a full conn drains (on_drain) at or below: 0 = half of
                                     write_high_water */
  size_t write_limit;             /* buffered bytes that close the conn: 16 MiB */
  uint64_t read_rate;             /* per-connection read limit in bytes/s; 0 = off */
  uint64_t write_rate;            /* per-connection write limit in bytes/s; 0 = off */
  int echo;                       /* built-in echo: messages sent back in C */
  int handle_signals;             /* SIGINT/SIGTERM start a graceful shutdown: 1 */
  int want_control;               /* report pings/pongs (on_control): 0 */
  uint32_t busy_poll_us;          /* after a read, poll without sleeping this long: 0 = off */
  int compression;                /* negotiate permessage-deflate (RFC 7692): 1 */
  ws_pmd_config pmd;              /* our side of it (pmdeflate.h defaults) */
  uint32_t compression_idle_ms;   /* a connection whose streams saw no message this
                                     long gives their memory back (ws_pmd_release;
                                     checked every period, so it happens after 1-2
                                     periods): 5000; 0 = never */
} ws_server_config;

void ws_server_config_default(ws_server_config *cfg);

typedef struct ws_server_callbacks {
  /* A valid upgrade request. Decide before returning with
   * ws_server_conn_accept or ws_server_conn_reject; no decision = accept. */
  void (*on_request)(ws_server *s, ws_server_conn *c, const ws_handshake *hs);
  /* A plain HTTP request (no Upgrade header). Answer with
   * ws_server_conn_http_response; no answer = 426. */
  void (*on_http)(ws_server *s, ws_server_conn *c, const ws_handshake *hs);
  void (*on_open)(ws_server *s, ws_server_conn *c);
  void (*on_message)(ws_server *s, ws_server_conn *c, unsigned opcode, const char *data,
                     size_t len);
  /* Optional: small messages (<= 16 KiB) read in one poll phase (from every
   * readable connection), in order, in one call when the phase ends. entries
   * holds n records of WS_SERVER_BATCH_WORDS words: {connection pointer,
   * opcode, offset in arena, length}. Valid during the call. When set,
   * on_message sees only the larger messages; every other callback is
   * preceded by the delivery of the batch, so order holds. */
  void (*on_batch)(ws_server *s, const uint64_t *entries, size_t n, const char *arena);
  void (*on_control)(ws_server *s, ws_server_conn *c, unsigned opcode, const uint8_t *data,
                     size_t len);
  /* The write buffer went above write_high_water and has now drained to
   * write_low_water. */
  void (*on_drain)(ws_server *s, ws_server_conn *c);
  void (*on_close)(ws_server *s, ws_server_conn *c, unsigned code, const char *reason,
                   size_t reason_len);
  /* ws_server_wakeup was called (from any thread). */
  void (*on_wakeup)(ws_server *s);
  /* An application timer fired; its ws_server_timer is already freed. */
  void (*on_timer)(ws_server *s, uint64_t id);
  /* The loop is about to stop (graceful shutdown started): once. */
  void (*on_shutdown)(ws_server *s);
  /* A connection whose decision on_request deferred (ws_server_conn_defer)
   * is gone before the decision (handshake timeout, shutdown): the
   * application must not use c again. Required with ws_server_conn_defer. */
  void (*on_cancel)(ws_server *s, ws_server_conn *c);
  /* A client connection (client.h) failed before it opened: err < 0 is a
   * libuv error (DNS, refused, reset, UV_ETIMEDOUT for the open timeout,
   * UV_ECANCELED when the server stopped) and hs is NULL; err > 0 is an
   * enum ws_client_failure and hs the response read (status, headers, a
   * bounded body, the reason of an INVALID). hs is valid during the call;
   * afterwards the application must not use c again. */
  void (*on_connect_failed)(ws_server *s, ws_server_conn *c, int err, const ws_client_hs *hs);
} ws_server_callbacks;

/* Allocates a server with its own loop. cb may have NULL members. Returns
 * NULL on failure. user is for the application. */
ws_server *ws_server_new(const ws_server_config *cfg, const ws_server_callbacks *cb, void *user);
/* The same, attached to loop (NULL: a loop of its own). Its callbacks see
 * only its own connections; the cork, the batch and the rule that no
 * callback runs inside a call the application makes span the loop. */
ws_server *ws_server_new_on(ws_loop *loop, const ws_server_config *cfg,
                            const ws_server_callbacks *cb, void *user);
ws_loop *ws_server_loop(const ws_server *s);
void *ws_server_user(const ws_server *s);
/* Frees a server whose ws_server_run has returned (or never ran), or, on a
 * shared loop, at any time outside its callbacks: it stops at once (no
 * callbacks), and the loop frees its memory once its handles have closed
 * (the loop must run for that; ws_loop_free does). A server with a loop of
 * its own frees the loop too. */
void ws_server_free(ws_server *s);
/* 1 once the server has stopped and every handle of it has closed. */
int ws_server_done(const ws_server *s);

/* Listeners; each returns 0 or a negative libuv error (ws_server_strerror).
 * host is a numeric IPv4/IPv6 address; *bound_port receives the port
 * actually bound (useful with port 0). */
int ws_server_listen_tcp(ws_server *s, const char *host, int port, int *bound_port);
/* A missing (or non-directory) parent of path is UV_ENOENT (UV_ENOTDIR),
 * not the UV_EACCES that uv_pipe_bind reports for it. */
int ws_server_listen_unix(ws_server *s, const char *path);
/* An inherited listening socket (TCP or Unix), e.g. from systemd. */
int ws_server_listen_fd(ws_server *s, int fd);
const char *ws_server_strerror(int err);

/* Runs the loop until the server stops (ws_server_stop, a signal, or
 * ws_server_request_stop); the other servers of its loop are served
 * meanwhile. Returns 0, or -1 if the loop is already running. */
int ws_server_run(ws_server *s);

/* Driving the server from another event loop (asyncio) instead of
 * ws_server_run: watch ws_server_backend_fd for readability, and call
 * ws_server_run_nowait when it is readable and when
 * ws_server_backend_timeout (ms; -1 = no timer, 0 = at once) has passed,
 * then ask for the timeout again. ws_server_run_nowait returns 1 while the
 * server lives and 0 once it has stopped and closed every handle (then
 * ws_server_free it). Calls made between turns (a send from a task, a timer
 * started) wake the backend fd themselves. Signals are the other loop's.
 * These drive the server's whole loop (loop.h has the same per loop). */
int ws_server_backend_fd(const ws_server *s);
int ws_server_backend_timeout(const ws_server *s);
int ws_server_run_nowait(ws_server *s, int *timeout_ms); /* also stores the next timeout
                                                            (NULL: not wanted) */
/* Runs the loop (uv_run ONCE at a time, so it blocks in the poll) until
 * *flag != 0 (set by a callback), or, with flag NULL, until no connection
 * is left; timeout_ms bounds the wait (-1 = none). Returns 1 when the
 * condition holds, 0 on timeout, -1 if the loop has stopped. For a thread
 * that owns the server and waits for it (the blocking client); not with
 * ws_server_run or ws_server_run_nowait, and not from a callback. */
int ws_server_run_until(ws_server *s, const volatile int *flag, int timeout_ms);
/* Starts a graceful shutdown (graceful = 1: stop accepting, close 1001 to
 * all, wait up to shutdown_timeout_ms) or stops now (graceful = 0). */
void ws_server_stop(ws_server *s, int graceful);
/* Thread-safe: wake the loop and call on_wakeup. Returns 0 or an error. */
int ws_server_wakeup(ws_server *s);
/* Thread-safe: ask for ws_server_stop(s, graceful) on the loop thread. */
int ws_server_request_stop(ws_server *s, int graceful);

size_t ws_server_connection_count(const ws_server *s);
/* Milliseconds of the loop clock. */
uint64_t ws_server_now(const ws_server *s);

/* Application timers: on_timer(id) after ms. Returns NULL on failure. The
 * handle is valid until on_timer runs or ws_server_timer_cancel. */
ws_server_timer *ws_server_timer_start(ws_server *s, uint64_t ms, uint64_t id);
void ws_server_timer_cancel(ws_server_timer *t);

/* Sends one message to every open connection (except `except`, may be NULL);
 * the frame header is encoded once. With compression, the message is
 * compressed once per distinct compressor window among the receivers that
 * negotiated it (without context, so it decodes whatever each receiver's
 * inflater holds), and each receiver's own compressor is then re-primed with
 * the message (ws_pmd_deflate_prime) so its next direct message refers to
 * the window the peer really has. Returns the number of connections sent to. */
size_t ws_server_broadcast(ws_server *s, unsigned opcode, const char *data, size_t len,
                           const ws_server_conn *except);
/* Sends one message to conns[0..n) (NULLs and closed ones skipped). */
size_t ws_server_send_many(ws_server *s, ws_server_conn *const *conns, size_t n,
                           unsigned opcode, const char *data, size_t len);

/* Per connection. */
void ws_server_conn_set_user(ws_server_conn *c, void *user);
void *ws_server_conn_user(const ws_server_conn *c);
uint64_t ws_server_conn_id(const ws_server_conn *c);
/* "ip:port" / "[ip6]:port" / "unix" into out (NUL-terminated); returns length. */
size_t ws_server_conn_peer(const ws_server_conn *c, char *out, size_t cap);

/* During on_request: accept (optionally choosing a subprotocol and adding
 * header lines, each ending in CRLF) or reject with an HTTP status. Accept
 * negotiates permessage-deflate from the request's Sec-WebSocket-Extensions
 * lines (all of them, joined) when the server's compression is on, the
 * application did not refuse it (ws_server_conn_set_compression) and its
 * headers carry no Sec-WebSocket-Extensions of their own. Or defer: the
 * connection waits (reading nothing, the handshake timeout running) for
 * ws_server_conn_accept / _reject from outside the callback; an accept then
 * calls on_open from inside it. If the connection goes first, on_cancel. */
int ws_server_conn_defer(ws_server_conn *c);
int ws_server_conn_accept(ws_server_conn *c, const char *subprotocol, size_t subprotocol_len,
                          const char *headers, size_t headers_len);
/* During on_request, before accepting: 0 declines compression for this
 * connection whatever the client offered (1 is the default). */
void ws_server_conn_set_compression(ws_server_conn *c, int on);
/* The Sec-WebSocket-Extensions value we answered (NUL-terminated, "" if
 * none) into out[0..cap), cap >= WS_PMD_HEADER_MAX; returns its length. Valid
 * from the accept on. */
size_t ws_server_conn_extensions(const ws_server_conn *c, char *out, size_t cap);
/* zlib and deflate buffer bytes every connection (and the broadcast
 * compressors) hold now, and the most held at once. */
size_t ws_server_deflate_memory(const ws_server *s, size_t *peak);
int ws_server_conn_reject(ws_server_conn *c, int status, const char *reason, size_t reason_len,
                          const char *headers, size_t headers_len);
/* During on_http: a full response (Content-Length and Connection: close are
 * added), then the connection is closed. */
int ws_server_conn_http_response(ws_server_conn *c, int status, const char *headers,
                                 size_t headers_len, const char *body, size_t body_len);

/* Messages and control. Each returns 0, or -1 when the connection cannot send
 * (closing/closed). */
int ws_server_conn_send(ws_server_conn *c, unsigned opcode, const char *data, size_t len);
/* ws_server_conn_send, and then 1 if the bytes not yet taken by the kernel
 * are at or above write_high_water (0 below it; -1 as send). */
int ws_server_conn_send_hw(ws_server_conn *c, unsigned opcode, const char *data, size_t len);
/* ws_server_conn_send_hw for a loop driven from another one (loop.h), called
 * between its turns: the message, and whatever the loop's tasks sent since
 * the last turn, leave now (one writev per connection) rather than at the
 * next ws_loop_flush or turn. Elsewhere the same as ws_server_conn_send_hw. */
int ws_server_conn_send_now(ws_server_conn *c, unsigned opcode, const char *data, size_t len);
int ws_server_conn_ping(ws_server_conn *c, const char *data, size_t len);
int ws_server_conn_close(ws_server_conn *c, unsigned code, const char *reason, size_t len);
/* Bytes written by the application but not yet taken by the kernel. */
size_t ws_server_conn_buffered(const ws_server_conn *c);
/* 1 while messages can be sent (open, no close frame sent or received). */
int ws_server_conn_can_send(const ws_server_conn *c);
void ws_server_conn_pause_reading(ws_server_conn *c);
void ws_server_conn_resume_reading(ws_server_conn *c);
/* A bound on the messages handed to the application and not yet consumed
 * (wsuv.aio's max_queue): each message delivered counts one; when the count
 * reaches high, reading from that connection stops at once (what the current
 * read holds is still delivered: the bound is high + one read's messages),
 * and it resumes once consumed() brings the count down to low. high = 0
 * (the default) counts nothing. */
void ws_server_conn_set_queue(ws_server_conn *c, uint32_t high, uint32_t low);
/* The application consumed n messages (n may be 0); returns 1 while reading
 * stays paused by the queue bound, else 0. */
int ws_server_conn_consumed(ws_server_conn *c, uint32_t n);

/* sizeof(struct ws_server_conn): the C memory one open connection costs. */
size_t ws_server_conn_size(void);

/* The server a connection belongs to (C applications, capp.h, find their
 * state through its user pointer). */
ws_server *ws_server_conn_server(const ws_server_conn *c);

#endif
