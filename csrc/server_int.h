/* server_int.h - the transport's own types, shared by its files (private).
 *
 * Not part of the public contract (server.h is): the structures behind the
 * opaque ws_server and ws_server_conn, the sizes of the shared buffers, and
 * the few functions the transport's files call across (prefix ws_srv_).
 * Only the transport's files include this header (it includes uv.h).
 */
#ifndef WS_SERVER_INT_H
#define WS_SERVER_INT_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "clienths.h"
#include "csprng.h"
#include "loop.h"
#include "pmdeflate.h"
#include "server.h"
#include "srv_tls.h"
#include "tls.h"
#include "topics.h"

/* One read takes up to 256 KiB: a 64 KiB message arrives whole, in one
 * syscall, and is delivered in place. The read length is lowered for small
 * write limits so that what one read can make the built-in echo write (at
 * most its size) stays under write_limit (see read_len_for). */
#define READ_BUF_SIZE (256 * 1024)
#define READ_MIN (4 * 1024)
/* The cork: small writes made while the application or the engine runs (a
 * read being processed, a timer, a wakeup) are gathered per connection and
 * leave in one writev per connection when that callback ends. Pipelined
 * replies to one peer, and several broadcasts to many peers, then cost one
 * syscall per connection instead of one per message. A broadcast copies its
 * frame into the cork once and points every connection's entry at it. */
#define CORK_SIZE (64 * 1024)
#define CORK_ENTRIES 8192
/* Larger pieces are not copied: the cork is flushed and they go vectored. */
#define CORK_MAX_PIECE (8 * 1024)
/* iovecs per writev when a connection's entries are flushed. */
#define CORK_IOV 64
#define CORK_NONE UINT32_MAX
/* Message batching (on_batch): small messages from every read of one poll
 * phase (all connections) are gathered (copied into an arena) and handed over
 * in one call when the phase ends; larger ones, and any other event, flush
 * the batch first so the application sees the order the peers sent. */
#define BATCH_MAX_MESSAGE (16 * 1024)
#define BATCH_MAX_ENTRIES 512
#define BATCH_ARENA (256 * 1024)
/* Assembly buffers given back by connections are kept for the next large
 * message (saves malloc, free and glibc's heap trimming per message): only
 * sizes worth keeping, a few of them. */
#define POOL_SLOTS 8
#define POOL_MIN (16 * 1024)
#define POOL_MAX (1024 * 1024)
#define MAX_LISTENERS 8

enum conn_phase {
  PH_HANDSHAKE = 0, /* reading the upgrade request */
  PH_OPEN,          /* WebSocket engine running */
  PH_FLUSHING,      /* closing: writes draining, then shutdown + close */
  PH_CLOSED         /* uv_close called */
};

enum decision { DEC_NONE = 0, DEC_ACCEPT, DEC_REJECT, DEC_HTTP, DEC_PENDING };

/* A client's first frames, read with its request while the decision waits. */
struct early_bytes {
  size_t len;
  char data[];
};

union stream_handle {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
};

struct ws_server_conn {
  union stream_handle h;
  uv_timer_t timer;
  ws_conn ws;
  ws_topics_sub sub;          /* its topics (pubsub.c), valid while subscribed */
  ws_server *server;
  ws_server_conn *prev, *next;
  ws_handshake *hs;           /* during the handshake only */
  struct early_bytes *early;  /* bytes after the head while a decision is pending (owned) */
  void *user;
  uint64_t id;
  uint64_t started_ms;        /* accept time */
  uint64_t last_read_ms;
  uint64_t ping_sent_ms;      /* 0 = no ping outstanding */
  uint64_t closing_ms;        /* when the close began (0 = not closing) */
  uint64_t window_ms;         /* throttle window start */
  uint64_t window_bytes;      /* bytes read in the throttle window */
  uint64_t wwindow_ms;        /* write throttle window start */
  uint64_t wwindow_bytes;     /* bytes written in that window */
  struct write_req *held, *held_tail; /* writes waiting for the write_rate budget */
  size_t queued;              /* bytes in uv_write requests in flight */
  uint32_t q_len;             /* messages delivered, not yet consumed (with q_high) */
  uint32_t q_high, q_low;     /* ws_server_conn_set_queue; q_high 0 = not counted */
  uint8_t phase;
  uint8_t decision;           /* enum decision */
  uint8_t opened;             /* on_open was called (so on_close is owed) */
  uint8_t subscribed;         /* sub is initialised (pubsub.c) */
  uint8_t full;               /* above write_high_water, drain owed */
  uint8_t app_paused;         /* the application paused reading */
  uint8_t q_full;             /* reading paused: q_len reached q_high */
  uint8_t throttled;          /* reading paused by the read rate limit */
  uint8_t reading;            /* uv_read_start is in effect */
  uint8_t handles_open;       /* stream + timer not yet closed */
  uint8_t is_pipe;
  uint8_t corked;             /* has entries in the loop's cork */
  uint8_t doomed;             /* a write failed during a cork flush (enum doom): destroy after it */
  uint8_t direct;             /* marked for the direct path (client_direct.h) */
  uint16_t rcvtimeo_ms;       /* SO_RCVTIMEO set on it (0 = none; client_direct.c) */
  uint32_t cork_head, cork_tail; /* its entries, chained through cork_entry.next */
  uint8_t pmd_refused;        /* the application declined compression */
  uint8_t pmd_on;             /* permessage-deflate accepted (pmd_params) */
  uint8_t pmd_watch;          /* its streams are live: the idle check is armed */
  uint8_t fd_blocking;        /* its socket is blocking now (client_direct.c) */
  ws_pmd_params pmd_params;   /* what was negotiated, until the engine starts */
  uint64_t pmd_check_ms;      /* start of the current idle period */
  struct ws_client_state *cl; /* client connections only (owned; client.c) */
  ws_tls *tls;                /* TLS connections only (owned; srv_tls.c) */
  uint8_t over_limit;         /* accepted past max_connections: told 503 once
                                 its request head is read (srv_read.c) */
};

typedef struct cork_entry {
  ws_server_conn *conn;
  uint32_t off, len;          /* bytes in corkbuf */
  uint32_t next;              /* the connection's next entry, or CORK_NONE */
} cork_entry;

struct ws_server_timer {
  uv_timer_t timer;
  ws_server *server;
  uint64_t id;
};

typedef struct write_req {
  uv_write_t req;
  ws_server_conn *conn;
  struct write_req *next;     /* held (write_rate) requests, not yet submitted */
  size_t len;
  char data[];
} write_req;

/* A close to report once the application callback that caused it returns. */
typedef struct deferred_close {
  struct deferred_close *next;
  ws_server_conn *conn;       /* still allocated: freed only by a uv close callback */
  int cancel;                 /* 1: on_cancel (a pending decision), 0: on_close,
                                 2: on_connect_failed (client.c) with err */
  int err;
  unsigned code;
  size_t reason_len;
  char reason[];
} deferred_close;

/* The loop (loop.c): what every server and client connection on it shares.
 * Reads are processed synchronously, so one read buffer serves them all; the
 * cork, the batch, the application-call depth and the deferred closes span
 * the servers, so no callback of any of them runs inside a call another's
 * application makes, and the order of events holds across them. */
struct ws_loop {
  uv_loop_t uv;
  ws_server *servers;         /* attached servers, through loop_next (not owned) */
  size_t nservers;            /* in that list, released ones included */
  size_t zombies;             /* released servers waiting for ws_srv_loop_reap */
  ws_server *run_for;         /* ws_server_run: the server whose end ends the run */
  uint8_t own;                /* made by ws_server_new for its one server, freed with it */
  uint8_t running;            /* inside ws_server_run / ws_loop_run (uv_stop ends it) */
  uint8_t signals_on;         /* sigint / sigterm initialised */
  uint8_t closing;            /* ws_loop_free has begun */
  uint8_t embedded;           /* driven by ws_loop_run_nowait from another loop */
  uint8_t in_run;             /* inside uv_run */
  uint8_t dirty;              /* embedded: epoll changes wait for the next uv_run */
  uint8_t ext_corked;         /* embedded: writes between turns hold a cork level */
  uint8_t flush_soon;         /* embedded: the driver calls ws_loop_flush soon */
  uint8_t batch_mixed;        /* the batch holds messages of more than one server */
  uv_async_t async;           /* wakeups, stop requests, embedded nudges */
  uv_signal_t sigint, sigterm;
  uv_check_t poll_end;        /* after each poll phase: deliver the batch, flush the cork */
  uv_timer_t wait_timer;      /* bounds ws_server_run_until (unref'd) */
  int poll_corked;            /* reads of this poll phase hold one cork level */
  int corking;                /* > 0 while writes are gathered (nesting depth) */
  int flushing;               /* a cork flush is running: no callbacks into the app */
  int app_depth;              /* > 0 while an application callback runs */
  size_t shutdown_owed;       /* servers owed an on_shutdown when it returns */
  struct deferred_close *deferred, *deferred_tail; /* closes owed when it returns (owned) */
  uint64_t *batch;            /* BATCH_MAX_ENTRIES * WS_SERVER_BATCH_WORDS (owned; lazy) */
  char *arena;                /* BATCH_ARENA bytes of message payloads (owned; lazy) */
  size_t batch_n, arena_len;
  ws_server *batch_server;    /* the server of the batch's first message */
  uint64_t reads;             /* reads so far (busy polling watches it) */
  void *pool[POOL_SLOTS];     /* idle assembly buffers (owned) */
  size_t pool_cap[POOL_SLOTS];
  size_t cork_len, cork_n;    /* bytes in corkbuf, entries in cork_entries */
  uint32_t cork_frame_off, cork_frame_len; /* the last fan-out frame copied (len 0: none) */
  ws_server_conn **cork_conns; /* connections with entries, in first-write order (owned) */
  size_t cork_nconns, cork_conns_cap;
  cork_entry cork_entries[CORK_ENTRIES];
  char readbuf[READ_BUF_SIZE];
  char corkbuf[CORK_SIZE];
};

struct ws_server {
  ws_loop *loop;              /* the loop it is attached to (owned if loop->own) */
  ws_server *loop_prev, *loop_next; /* the loop's list of servers */
  ws_topics *topics;          /* pubsub.c's registry (owned), NULL until a subscribe */
  struct ws_redis *bridge;    /* pubsub.c's Redis bridge (owned), NULL without one */
  struct ws_redis_url *bridge_url; /* what it connects to (owned; the bridge points in) */
  struct ws_bus *bus;         /* pubsub.c's link to the worker bus (owned), NULL without one */
  ws_server_config cfg;
  ws_server_callbacks cb;
  void *user;
  union stream_handle listeners[MAX_LISTENERS];
  int nlisteners;
  uv_timer_t shutdown_timer;
  ws_server_conn *conns;      /* doubly linked list of live connections */
  size_t nconns;
  size_t handles;             /* its handles and connections not yet closed (it lives on
                                 until they are: their memory or callbacks refer to it) */
  uint64_t next_id;
  int stopping;               /* 0, 1 graceful, 2 immediate */
  int finished;               /* its handles are closing (or closed) */
  uint8_t done;               /* finished and every handle closed */
  uint8_t freeing;            /* ws_server_free was called: released once done */
  uint8_t released;           /* done and freed by the application: the loop reaps it */
  uint8_t batching;           /* small messages go to the loop's batch (on_batch) */
  int shutdown_owed;          /* on_shutdown owed when the application callback returns */
  atomic_int stop_request;    /* 0 none, 1 graceful, 2 immediate (any thread) */
  atomic_int wake_request;    /* ws_server_wakeup was called (any thread) */
  size_t drain_at;            /* write_low_water, resolved */
  ws_pmd_ctx pmd_ctx;          /* deflate configuration and memory accounting */
  ws_pmd *bcast[16];           /* context-free compressors for broadcasts, by window bits (owned) */
  size_t pmd_released;         /* deflate bytes given back since the last heap trim */
  uint64_t pmd_trim_ms;        /* when the heap was last trimmed */
  uv_timer_t trim_timer;       /* a trim deferred by the once-a-second bound */
  ws_csprng *csprng;           /* mask keys and nonces of client connections (owned; lazy) */
  size_t read_len;             /* bytes offered to each read, <= READ_BUF_SIZE */
  ws_tls_ctx *tls_ctx;         /* server-role TLS for accepted connections (owned; srv_tls.c) */
  ws_server_tls_log_fn tls_log; /* hears each connection that failed TLS (may be NULL) */
  char *tls_plain;             /* decrypted bytes of one read (owned, with tls_ctx) */
};

/* pubsub.c: a closing connection's subscriptions go; the registry with the server. */
void ws_srv_topics_drop(ws_server_conn *c);
void ws_srv_topics_free(ws_server *s);
/* Before the loop's handles are closed: the Redis bridge and the bus close their own. */
void ws_srv_pubsub_close(ws_server *s);

/* ---- calls across the transport's files ------------------------------------
 *
 * server.c    the server object: new, free, stop, wakeup and stop requests
 * loop.c      the loop (ws_loop): calls into the application, the batch, the
 *             poll phase, wakeups, signals, run modes
 * srv_listen.c listeners and accepting
 * srv_read.c  the engine's callbacks, reads, the handshake of accepted conns
 * srv_write.c the write path: try_write, queued writes, write_rate, the cork
 * srv_timer.c each connection's timer, application timers, the heap trim
 * srv_conn.c  a connection's teardown, its decision, send/ping/close
 * fanout.c    broadcast and send_many
 * srv_tls.c   TLS on connections (tls.h): decrypt before reads, encrypt where
 *             bytes leave for the socket, close_notify before the FIN
 * client.c    client connections
 * client_direct.c the blocking client's own reads and writes (client_direct.h)
 */

/* loop.c: every application callback goes through WS_SRV_APP_CALL: while one
 * runs, closes are queued and the batch waits (see loop.c). */
#define WS_SRV_APP_CALL(l, call) do { (l)->app_depth++; call; ws_srv_app_leave(l); } while (0)
void ws_srv_app_leave(ws_loop *l);
void ws_srv_batch_flush(ws_loop *l);
/* Reports on_close (or on_cancel) now, or queues it while a callback runs. */
void ws_srv_report_close(ws_server *s, ws_server_conn *c, int cancel, unsigned code,
                         const char *reason, size_t reason_len);
/* The poll phase is over (or the loop is closing): batch, then cork. */
void ws_srv_poll_phase_end(ws_loop *l);
void ws_srv_on_poll_end(uv_check_t *h);

/* The application is about to see another event: messages first (unless
 * it is inside a callback: they wait for the next turn). */
static inline void ws_srv_app_turn(ws_loop *l) {
  if (l->batch_n && !l->app_depth) ws_srv_batch_flush(l);
}

/* Driven from another loop (ws_server_run_nowait), libuv registers new epoll
 * interest (a queued write, a read started) only at its next uv_run: inside a
 * run, ask for another turn (dirty); outside one (a call from an asyncio
 * task), wake the backend fd so the other loop runs us. */
static inline void ws_srv_loop_touched(ws_loop *l) {
  if (!l->embedded) return;
  if (l->in_run) l->dirty = 1;
  else uv_async_send(&l->async);
}

/* A timer started outside uv_run: the cached clock may be stale, and the
 * other loop's timeout must be recomputed. */
static inline void ws_srv_timer_touched(ws_loop *l) {
  if (l->embedded && !l->in_run) uv_async_send(&l->async);
}
/* loop.c: attaching and leaving. */
int ws_srv_loop_attach(ws_loop *l, ws_server *s);
/* A server's last handle closed after it finished: ends a run waiting for it. */
void ws_srv_loop_server_done(ws_loop *l, ws_server *s);
/* A server being freed: its batch entries and owed reports go. */
void ws_srv_loop_forget(ws_loop *l, ws_server *s);
/* Frees released servers (never while their list is being walked). */
void ws_srv_loop_reap(ws_loop *l);
/* Starts SIGINT / SIGTERM handling (a graceful stop of the servers asking for it). */
void ws_srv_loop_signals(ws_loop *l);

/* server.c */
void ws_srv_maybe_finish_shutdown(ws_server *s);
/* Finishing: the server's own handles close (each counted in s->handles). */
void ws_srv_close_server_handles(ws_server *s);
/* The close callback of a server's handles (data = the server). */
void ws_srv_on_server_handle_closed(uv_handle_t *h);
/* One of s->handles closed (a handle, or a connection freed). */
void ws_srv_handle_gone(ws_server *s);
/* Frees what the server owns (its handles all closed). */
void ws_srv_server_release(ws_server *s);

/* srv_write.c */
static inline void ws_srv_cork_begin(ws_loop *l) { l->corking++; }
void ws_srv_cork_flush(ws_loop *l);
static inline void ws_srv_cork_end(ws_loop *l) {
  if (--l->corking == 0) ws_srv_cork_flush(l);
}
/* Copies bufs into the cork; returns the offset, or UINT32_MAX if full. */
uint32_t ws_srv_cork_put(ws_loop *l, const uv_buf_t *bufs, unsigned n, size_t total);
/* The same for a fan-out frame, but a frame byte-equal to the last one put
 * this way since the flush is not copied again: its offset is returned (one
 * message published to 100 topics is one copy, and each subscriber's frames
 * of successive messages stay adjacent, one cork entry). */
uint32_t ws_srv_cork_put_frame(ws_loop *l, const uv_buf_t *bufs, unsigned n, size_t total);
/* Appends an entry for c; 0, or -1 if the cork has no room (flush first). */
int ws_srv_cork_add(ws_loop *l, ws_server_conn *c, uint32_t off, size_t len);
/* Writes bufs in order (into the cork while corking). */
void ws_srv_conn_write(ws_server_conn *c, const uv_buf_t *bufs, unsigned n);
void ws_srv_conn_write_raw(ws_server_conn *c, const char *data, size_t len);
/* Submits held writes the budget allows (all of them when closing). */
void ws_srv_release_held(ws_server_conn *c, int all);
/* The engine's write callback. */
void ws_srv_eng_write(ws_conn *e, const ws_conn_buf *bufs, size_t n);

/* srv_read.c */
void ws_srv_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void ws_srv_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
void ws_srv_conn_resume_if_allowed(ws_server_conn *c);
/* The handshake is done: the engine starts (client role if c->cl), on_open. */
void ws_srv_start_engine(ws_server_conn *c);
/* A pending decision became an accept: open, feed the kept bytes, read on. */
void ws_srv_open_after_pending(ws_server_conn *c);

/* srv_timer.c */
void ws_srv_arm_timer(ws_server_conn *c);
void ws_srv_pmd_note(ws_server_conn *c);
void ws_srv_on_app_timer_closed(uv_handle_t *h);

/* srv_listen.c: adds a fresh connection to the server's list (id assigned). */
void ws_srv_conn_link(ws_server *s, ws_server_conn *c);

/* srv_conn.c */
/* Closes the socket now, whatever is queued (reports what is owed). */
void ws_srv_conn_destroy(ws_server_conn *c);
/* Closes after the queued writes are flushed (FIN after our last byte). */
void ws_srv_conn_finish(ws_server_conn *c);
/* The 503 of a connection past max_connections, then the close. */
void ws_srv_refuse_busy(ws_server_conn *c);
/* How many connections past max_connections are carried at a time until
 * their request head is read, to be told 503 (each holds its handshake and
 * TLS state until then, at most handshake_timeout); more are closed at once. */
#define WS_SRV_REFUSING_MAX 64u
/* The close callback of a connection's handles (frees it after the last). */
void ws_srv_on_conn_handle_closed(uv_handle_t *h);
/* A client connection's failure before open: reported now, or queued like a
 * close while an application callback runs (the connection's memory lives
 * until libuv's close callback, a later loop phase). */
void ws_srv_report_connect_failed(ws_server *s, ws_server_conn *c, int err);
static inline int ws_srv_conn_can_send(const ws_server_conn *c) {
  return c && c->phase == PH_OPEN && c->ws.state == WS_CONN_OPEN;
}

/* srv_read.c: plaintext bytes read (after TLS, if any): the handshake or the
 * engine; EOF or a read error (err < 0): the connection ends. */
void ws_srv_read_plain(ws_server_conn *c, char *data, size_t len);
void ws_srv_read_end(ws_server_conn *c, int err);
/* srv_write.c: bytes for the socket itself (already encrypted, if TLS),
 * written in order; what the kernel does not take is copied and queued. */
void ws_srv_conn_write_wire(ws_server_conn *c, const uv_buf_t *bufs, unsigned n);

/* srv_tls.c: the TLS hooks (each only for c->tls != NULL unless stated). */
/* Every accepted connection: starts TLS when the server has a context.
 * Returns 0, or -1 (out of memory: drop it). */
int ws_srv_tls_accept(ws_server_conn *c);
/* Client connections (client.c): the connection speaks TLS through t (a
 * client-role ws_tls made for the host, owned from now on); the ClientHello
 * leaves at once. Call when the socket has connected, before writing the
 * upgrade request (written before the handshake ends, it is kept and sent
 * encrypted after). Returns 0 or -1. */
int ws_srv_tls_attach(ws_server_conn *c, ws_tls *t);
/* Ciphertext read: decrypted, then ws_srv_read_plain (or the connection ends). */
void ws_srv_tls_read(ws_server_conn *c, char *data, size_t len);
/* EOF on the socket (logged when the TLS handshake had not completed). */
void ws_srv_tls_read_end(ws_server_conn *c);
/* Plaintext for the socket: encrypted (gathered into records), then written. */
void ws_srv_tls_write(ws_server_conn *c, const uv_buf_t *bufs, unsigned n);
/* Before the FIN: close_notify. */
void ws_srv_tls_close(ws_server_conn *c);
/* The connection is freed (any connection; c->tls may be NULL). */
void ws_srv_tls_conn_free(ws_server_conn *c);
/* The server is freed: its context and buffer. */
void ws_srv_tls_free(ws_server *s);

/* client.c's side (client connections, c->cl != NULL). */
/* Response bytes during the client handshake (inside a cork). */
void ws_client_int_read(ws_server_conn *c, char *data, size_t len);
/* EOF or a read error during the client handshake. */
void ws_client_int_read_end(ws_server_conn *c, int err);
/* The open timeout passed. */
void ws_client_int_timeout(ws_server_conn *c);
/* conn_destroy of a client connection still in its handshake: reports
 * on_connect_failed (once, unless the server is being freed). */
void ws_client_int_gone(ws_server_conn *c);
/* Calls on_connect_failed for c (from ws_srv_report_connect_failed, now or
 * when the outermost callback returns). */
void ws_client_int_report_failed(ws_server *s, ws_server_conn *c, int err);
/* Frees the client state (the connection's handles are closed). */
void ws_client_int_free(struct ws_client_state *cl);
/* The engine's mask_key callback for client connections. */
void ws_client_int_mask_key(ws_conn *e, uint8_t key[4]);

#endif
