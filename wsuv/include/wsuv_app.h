/* wsuv_app.h - the ABI between wsuv and a WebSocket application written in C.
 *
 * An application is a shared library that exports one function,
 * wsuv_app_init (below). wsuv loads it with dlopen(RTLD_NOW | RTLD_LOCAL),
 * calls wsuv_app_init once with a table of host functions (wsuv_host), and
 * gets back a table of callbacks (wsuv_app). The two tables are the whole
 * interface: the application links against nothing of wsuv, and wsuv
 * resolves no symbol of the application but wsuv_app_init and
 * wsuv_app_abi_version (defined by this header, see the end).
 *
 *   wsuv-serve app.so [--app-arg STRING]   load a library built with
 *                                          cc -O2 -shared -fPIC -I"$(wsuv-serve --print-include-dir)"
 *   wsuv-serve app.c                       compile it like that (cached), then load it
 *   wsuv.Server(wsuv.load_c_app("app.so", arg="..."), port=...)   from Python
 *
 * Versions. WSUV_APP_ABI_VERSION changes whenever a table's layout or a
 * documented behaviour changes. Both tables start with {abi_version, size}.
 * wsuv refuses, with one sentence, a library whose wsuv_app_abi_version is
 * not its own (before wsuv_app_init runs), and a wsuv_app table of another
 * version or size (before any of its callbacks runs).
 *
 * Threads. Every callback runs on the server's loop thread, one at a time,
 * and every host function must be called on that thread from inside a
 * callback. The exceptions: wsuv_app_init and on_destroy run on the thread
 * that loads and unloads the application (they may call host->log only).
 * Callbacks must not block: the loop serves every connection.
 *
 * Lifetimes.
 *   - The host table and the wsuv_server pointer are valid from
 *     wsuv_app_init until on_destroy returns (keep the pointers).
 *   - A wsuv_conn pointer is valid from on_connect until on_close returns for
 *     that connection (or, for a connection that on_connect rejected or that
 *     never opened, until on_connect returns). Never use it afterwards: the
 *     memory is reused.
 *   - Callbacks do not nest: on_close never runs while another callback of
 *     the application is running. A connection that fails during one (a
 *     write to it failed, or passed write_limit, inside send or broadcast)
 *     gets its on_close right after that callback returns; until then host
 *     functions on it answer WSUV_ECLOSED, and its user data is still yours.
 *   - A wsuv_request pointer is valid during on_connect and on_open only.
 *   - Every `const char *data, size_t len` handed to a callback is valid
 *     during that callback only and is not NUL-terminated; copy what you keep.
 *   - Every buffer the application passes to a host function is copied (or
 *     written out) before the function returns.
 *   - The application owns what it allocates: per-connection user data is
 *     freed by the application in on_close, the app_user in on_destroy.
 *
 * Units: times in milliseconds of the loop's monotonic clock; lengths in
 * bytes; close codes as in RFC 6455 7.4; HTTP statuses as in RFC 9110.
 *
 * The server runs the application on the same transport as everything else:
 * size limits, write buffer limits, timeouts, keepalive pings, corked writes
 * and graceful shutdown (close 1001 to every connection) apply as for the
 * built-in echo. Pings are answered and close frames handled by wsuv.
 *
 * A library loaded twice in one process (two servers, same file) is mapped
 * once: its static variables are shared, so keep state behind app_user.
 * With `wsuv-serve --workers N`, wsuv_app_init runs once in the supervisor
 * before the workers fork; each worker then has its own copy of that state.
 */
#ifndef WSUV_APP_H
#define WSUV_APP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WSUV_APP_ABI_VERSION 1u

#if defined(__GNUC__)
#define WSUV_APP_EXPORT __attribute__((visibility("default")))
#define WSUV_APP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WSUV_APP_EXPORT
#define WSUV_APP_PRINTF(f, a)
#endif

/* Opaque handles: the server hosting the application, one connection, one
 * upgrade request. Only host functions look inside them. */
typedef struct wsuv_server wsuv_server;
typedef struct wsuv_conn wsuv_conn;
typedef struct wsuv_request wsuv_request;

/* Message opcodes (RFC 6455 5.2). */
#define WSUV_TEXT 1u   /* payload is UTF-8 */
#define WSUV_BINARY 2u

/* Levels for host->log: the numbers of Python's logging module. */
#define WSUV_LOG_DEBUG 10
#define WSUV_LOG_INFO 20
#define WSUV_LOG_WARNING 30
#define WSUV_LOG_ERROR 40

/* Results of host functions that return int: 0 or one of these. */
#define WSUV_OK 0
#define WSUV_ECLOSED (-1) /* the connection is closing or closed: nothing sent */
#define WSUV_EINVAL (-2)  /* a bad argument (opcode, close code, length): nothing done */
#define WSUV_ESTATE (-3)  /* not allowed now (e.g. accept outside on_connect) */
#define WSUV_ENOENT (-4)  /* no such timer (it fired or was cancelled) */
#define WSUV_ENOMEM (-5)  /* out of memory: nothing done */

/* The host functions. wsuv fills this table; the application only calls it. */
typedef struct wsuv_host {
  uint32_t abi_version; /* WSUV_APP_ABI_VERSION of the running wsuv */
  uint32_t size;        /* sizeof(wsuv_host) in the running wsuv */

  /* ---- one connection (an open one, unless said otherwise) ---- */

  /* Sends one message as a single frame: opcode WSUV_TEXT (data must be
   * UTF-8; wsuv does not check, a peer would close with 1007) or
   * WSUV_BINARY. Returns 0, WSUV_ECLOSED, or WSUV_EINVAL (bad opcode).
   * The bytes are written or queued in wsuv (small ones corked with the
   * others of this callback) before it returns; queueing past write_limit
   * drops the connection (on_close 1006 after this callback). */
  int (*send)(wsuv_conn *c, unsigned opcode, const char *data, size_t len);
  /* Starts the close handshake with code (1000-4999 except 1004-1006, 1015;
   * 0 = no code) and a UTF-8 reason of at most 123 bytes. on_close follows
   * when the peer answers (or close_timeout passes), never before the
   * current callback returns. Returns 0, WSUV_ECLOSED (already closing), or
   * WSUV_EINVAL. */
  int (*close)(wsuv_conn *c, unsigned code, const char *reason, size_t len);
  /* Sends a ping with at most 125 bytes of payload (the pong is not
   * reported). Returns 0, WSUV_ECLOSED or WSUV_EINVAL. */
  int (*ping)(wsuv_conn *c, const char *data, size_t len);
  /* Bytes sent by the application and not yet taken by the kernel. */
  size_t (*buffered)(const wsuv_conn *c);
  /* Stop / resume reading this peer (backpressure of your own making). */
  void (*pause_reading)(wsuv_conn *c);
  void (*resume_reading)(wsuv_conn *c);
  /* The application's pointer for this connection (NULL until set). wsuv
   * never reads or frees it. Settable from on_open on (WSUV_ESTATE in
   * on_connect: a connection may fail between the two, and nothing would
   * free it). */
  int (*set_user)(wsuv_conn *c, void *user);
  void *(*get_user)(const wsuv_conn *c);
  /* A number unique to this connection in this server (never 0). Valid
   * from on_connect on. */
  uint64_t (*conn_id)(const wsuv_conn *c);
  /* The peer's address, "ip:port", "[ip6]:port" or "unix", written to out
   * and NUL-terminated (truncated to cap - 1 bytes). Returns its length.
   * Valid from on_connect on. */
  size_t (*peer)(const wsuv_conn *c, char *out, size_t cap);

  /* ---- the upgrade request (valid in on_connect and on_open) ---- */

  /* The request target as sent ("/path?query"); *len receives its length. */
  const char *(*request_target)(const wsuv_request *r, size_t *len);
  /* The value of the first header called name (NUL-terminated, compared
   * without regard to case), surrounding whitespace trimmed; NULL if absent.
   * *len receives the value's length. */
  const char *(*request_header)(const wsuv_request *r, const char *name, size_t *len);

  /* ---- the decision (in on_connect only; neither = accept) ---- */

  /* Accepts, choosing subprotocol (one of the tokens the client offered in
   * Sec-WebSocket-Protocol; len 0 = none). A subprotocol the client did not
   * offer answers 500 instead and returns WSUV_EINVAL. WSUV_ESTATE if a
   * decision was already made or this is not on_connect. */
  int (*accept)(wsuv_conn *c, const char *subprotocol, size_t len);
  /* Rejects with an HTTP status 400-599 and a one-line reason sent as the
   * body (text/plain). Another status answers 500 instead and returns
   * WSUV_EINVAL. WSUV_ESTATE as for accept. */
  int (*reject)(wsuv_conn *c, int status, const char *reason, size_t len);

  /* ---- the server ---- */

  /* Sends one message to every open connection except `except` (may be
   * NULL); the frame is encoded once. Returns the number sent to. */
  size_t (*broadcast)(wsuv_server *s, unsigned opcode, const char *data, size_t len,
                      const wsuv_conn *except);
  /* Sends one message to conns[0..n) (NULL entries skipped); frame encoded
   * once. Returns the number sent to. */
  size_t (*send_many)(wsuv_server *s, wsuv_conn *const *conns, size_t n, unsigned opcode,
                      const char *data, size_t len);
  /* Open connections (and connections in their handshake). */
  size_t (*connection_count)(const wsuv_server *s);
  /* The loop's clock in milliseconds (monotonic, cached per loop turn). */
  uint64_t (*now_ms)(const wsuv_server *s);
  /* Calls on_timer(timer, arg) once after ms milliseconds. Returns the timer
   * (never 0), or 0 on failure (no memory, or the server is stopping for
   * good). A timer still pending when the server stops never fires: free
   * its arg yourself (on_destroy). */
  uint64_t (*timer_start)(wsuv_server *s, uint64_t ms, void *arg);
  /* Cancels a pending timer: 0, or WSUV_ENOENT if it fired or was cancelled
   * already. arg is not touched (it is yours). */
  int (*timer_cancel)(wsuv_server *s, uint64_t timer);
  /* Logs one line through the server's log (wsuv-serve: stderr or
   * --log-file, Python: the "wsuv.app" logger), printf-style; the line is
   * cut at 1023 bytes. Callable at any time, also in init and on_destroy. */
  void (*log)(wsuv_server *s, int level, const char *fmt, ...) WSUV_APP_PRINTF(3, 4);
  /* Asks the server to stop: graceful = 1 closes every connection with 1001
   * and waits for them (shutdown_timeout bounds it), 0 drops them. It
   * happens after the current callback returns. */
  void (*stop)(wsuv_server *s, int graceful);

  /* ---- topics (appended in ABI 1: check host->size before using them if
   * the library may run on an older wsuv) ---- */

  /* Subscribes an open connection to a topic (1 to 256 bytes, any content):
   * 1 if newly subscribed, 0 if it already was, WSUV_ECLOSED, WSUV_EINVAL
   * (empty or too long), WSUV_ENOMEM. Dropped when the connection closes. */
  int (*subscribe)(wsuv_conn *c, const char *topic, size_t len);
  /* 1 if it was subscribed, 0 if not. */
  int (*unsubscribe)(wsuv_conn *c, const char *topic, size_t len);
  /* Sends one message to every subscriber of topic but except (may be
   * NULL), the frame encoded once; with pubsub_url also to the other nodes'
   * subscribers (through Redis). Returns how many local connections it was
   * written to. */
  size_t (*publish)(wsuv_server *s, const char *topic, size_t len, unsigned opcode,
                    const char *data, size_t data_len, const wsuv_conn *except);
  /* Local subscribers of a topic (0 for one nobody is subscribed to). */
  size_t (*subscribers)(const wsuv_server *s, const char *topic, size_t len);
} wsuv_host;

/* The application's callbacks. Every member but the header may be NULL.
 * app_user is the pointer wsuv_app_init stored. */
typedef struct wsuv_app {
  uint32_t abi_version; /* set to WSUV_APP_ABI_VERSION */
  uint32_t size;        /* set to sizeof(wsuv_app) */
  const char *name;     /* for log lines; may be NULL */

  /* A valid upgrade request. Decide with host->accept or host->reject
   * before returning; no decision accepts with no subprotocol. No message
   * can be sent yet. */
  void (*on_connect)(void *app_user, wsuv_conn *c, const wsuv_request *r);
  /* The connection is open (the 101 response is written): send, set user
   * data, join rooms. The request is readable here too. */
  void (*on_open)(void *app_user, wsuv_conn *c, const wsuv_request *r);
  /* One whole message: opcode WSUV_TEXT (valid UTF-8, checked by wsuv) or
   * WSUV_BINARY; len is at most max_message_size. The application may send,
   * broadcast and close from here, including closing c itself. */
  void (*on_message)(void *app_user, wsuv_conn *c, unsigned opcode, const char *data,
                     size_t len);
  /* The write buffer went above write_high_water and has drained again. */
  void (*on_drain)(void *app_user, wsuv_conn *c);
  /* The connection is finished: exactly once for every connection that got
   * on_open. code is the peer's close code (1005 if its close frame had
   * none, 1006 if the connection dropped without one; the code wsuv sent if
   * it failed the connection); reason is UTF-8. Free the user data here;
   * after this returns c is invalid. Sends to c fail (WSUV_ECLOSED). Never
   * called while another callback runs (see Lifetimes). */
  void (*on_close)(void *app_user, wsuv_conn *c, unsigned code, const char *reason,
                   size_t len);
  /* A timer from host->timer_start fired (it is gone now). */
  void (*on_timer)(void *app_user, uint64_t timer, void *arg);
  /* The server began a graceful shutdown: connections are still open and
   * get close 1001 after this returns; then on_close for each. */
  void (*on_shutdown)(void *app_user);
  /* The application is being unloaded (after the last server using it
   * stopped): free app_user and everything else. No connection exists; only
   * host->log may be called. dlclose follows. */
  void (*on_destroy)(void *app_user);
} wsuv_app;

/* The entry point. host and s stay valid until on_destroy returns. arg is
 * the --app-arg string ("" when none; valid during the call only). Store the
 * application's state in *app_user (NULL before the call). Return a table
 * that stays valid until on_destroy returns (a static const one), or NULL to
 * refuse to start, having written a one-line reason to err (err_cap bytes,
 * NUL-terminated; err is "" on entry). Runs before the server listens; only
 * host->log may be called. */
WSUV_APP_EXPORT const wsuv_app *wsuv_app_init(const wsuv_host *host, wsuv_server *s,
                                              const char *arg, void **app_user, char *err,
                                              size_t err_cap);

/* The version this library was built for, read by wsuv before it calls
 * wsuv_app_init, so that a library built against another ABI is refused
 * before any of its code runs. Defined here as a weak symbol, so every file
 * that includes this header may define it and the linker keeps one. wsuv's
 * own build defines WSUV_APP_HOST and gets the declaration only. */
WSUV_APP_EXPORT extern const uint32_t wsuv_app_abi_version;
#if !defined(WSUV_APP_HOST) && defined(__GNUC__)
#ifdef __cplusplus
extern /* C++: a namespace-scope const is internal without it */
#endif
    __attribute__((weak)) WSUV_APP_EXPORT const uint32_t wsuv_app_abi_version =
        WSUV_APP_ABI_VERSION;
#endif

#ifdef __cplusplus
}
#endif

#endif
