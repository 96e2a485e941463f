/* capp.h - applications in C, loaded at run time (the host side of wsuv_app.h).
 *
 * A ws_capp is one loaded application: the library (dlopen'ed with
 * RTLD_NOW | RTLD_LOCAL, so nothing of it leaks into the process's symbol
 * namespace and nothing of ours is needed by it), its callback table, its
 * state pointer, and the host table it was given (wsuv_app.h). It adapts the
 * two ways: the ws_server_callbacks it installs call the application's
 * callbacks, and the host functions it hands out call ws_server_* (server.h).
 *
 * Ownership and lifetime:
 *   ws_capp_open     loads, checks the ABI, calls wsuv_app_init (or fails
 *                    with one sentence in err and frees everything)
 *   ws_capp_server_new   creates a server whose callbacks are the
 *                    application's, attaches the application to it
 *   ws_server_run ... (the application runs)
 *   ws_capp_detach   after ws_server_run returns, before ws_server_free:
 *                    forgets the server and its timers (the server frees them)
 *   ws_capp_free     calls on_destroy, dlclose, frees the ws_capp
 * One ws_capp serves at most one server at a time; after ws_capp_detach it
 * may serve another. There is no global state: two ws_capp of two libraries
 * (or of the same one) are independent, except that a library loaded twice
 * is mapped once by the dynamic loader (its static variables are shared).
 *
 * Threads: ws_capp_open and ws_capp_free on any one thread, with no server
 * running the application; everything else on the loop thread, as server.h.
 */
#ifndef WS_CAPP_H
#define WS_CAPP_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

typedef struct ws_capp ws_capp;

/* Where the application's log lines go (host->log): level as in
 * wsuv_app.h (Python's logging numbers), name the application's name (NULL
 * during wsuv_app_init or when it has none), msg[0..len) one line without a
 * newline, valid during the call. NULL in ws_capp_open = stderr. */
typedef void (*ws_capp_log_fn)(void *ctx, int level, const char *name, const char *msg,
                               size_t len);

/* Timer ids given to the application have this bit set; the server's other
 * timers (a hosting program's own, e.g. Python's call_later) must not, and
 * are passed on to the on_timer callback that was in the table before. */
#define WS_CAPP_TIMER_BIT (UINT64_C(1) << 63)

/* Loads the shared library at path (a path with a '/': dlopen does not
 * search for it), checks wsuv_app_abi_version, calls wsuv_app_init with arg
 * (NULL = "") and checks the table it returns. Returns the application, or
 * NULL with a one-line reason in err (err_cap bytes, NUL-terminated): not
 * loadable (dlerror's words: no such file, not a shared object, ...), no
 * wsuv_app_init, another ABI version, or init refused (its reason). */
ws_capp *ws_capp_open(const char *path, const char *arg, ws_capp_log_fn log, void *log_ctx,
                      char *err, size_t err_cap);

/* Calls on_destroy, closes the library and frees everything. a may be NULL.
 * Must not be attached to a running server (detach first). */
void ws_capp_free(ws_capp *a);

/* The application's name (wsuv_app.name), or "" if it gave none. */
const char *ws_capp_name(const ws_capp *a);

/* WSUV_APP_ABI_VERSION of this build (wsuv_app.h). */
unsigned ws_capp_abi_version(void);

/* 1 while attached to a server. */
int ws_capp_attached(const ws_capp *a);

/* Creates a server (ws_server_new) whose user pointer is a and whose
 * callbacks are cb with on_request, on_open, on_message, on_close, on_drain
 * replaced by the application's adapters and on_batch cleared (no batching:
 * each message goes to the application as it is parsed, replies are still
 * corked until the poll phase ends). cb's on_timer and on_shutdown are kept
 * and called after the application's (on_timer: for ids without
 * WS_CAPP_TIMER_BIT); on_http and on_wakeup are left as they are. cb is
 * updated in place (it is copied by ws_server_new). cfg->echo must be 0.
 * Returns NULL if a is already attached, cfg->echo is set, or memory ran out. */
ws_server *ws_capp_server_new(ws_capp *a, const ws_server_config *cfg, ws_server_callbacks *cb);

/* The server attached by ws_capp_server_new stopped (ws_server_run returned)
 * or will never run: forget it and its timers. Call before ws_server_free. */
void ws_capp_detach(ws_capp *a);

#endif
