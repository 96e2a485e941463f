/* loop.h - the event loop that servers and client connections attach to.
 *
 * A ws_loop owns the libuv loop and what its servers share: the read buffer,
 * the cork (small writes of one turn leave in one writev per connection),
 * the message batch (small messages of one poll phase reach each server's
 * on_batch in one call), the poll-phase hook, wakeups and signals. Any number
 * of servers (ws_server_new_on, server.h), with their client connections
 * (client.h) and Redis bridges, attach to one loop; ws_server_new makes a
 * server with a loop of its own, as before.
 *
 * Driving it: ws_loop_run serves until every attached server has stopped;
 * ws_server_run(s) serves every attached server until s has stopped; or
 * from another event loop (asyncio): watch ws_loop_backend_fd for
 * readability and call ws_loop_run_nowait when it is readable and when the
 * timeout it returns (ms; -1 = none, 0 = at once) has passed. Calls made
 * between turns (a send from a task, a timer started) wake the backend fd
 * themselves. One thread: every function here runs on the loop's thread.
 */
#ifndef WS_LOOP_H
#define WS_LOOP_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_loop ws_loop;

/* A loop with nothing attached. NULL on failure. */
ws_loop *ws_loop_new(void);
/* Frees a loop whose servers have all been ws_server_free'd (it runs the
 * loop until their last handles have closed). Returns 0, or -1 (nothing
 * done) while a server that was not freed is attached. */
int ws_loop_free(ws_loop *l);

/* Runs until every attached server has stopped (ws_server_stop, a signal,
 * ws_server_request_stop); SIGINT/SIGTERM stop the servers whose
 * handle_signals is set. Returns 0, or -1 if the loop is already running. */
int ws_loop_run(ws_loop *l);

int ws_loop_backend_fd(const ws_loop *l);
int ws_loop_backend_timeout(const ws_loop *l);
/* One non-blocking turn (uv_run NOWAIT); stores the next timeout in
 * *timeout_ms (NULL: not wanted). Returns the number of attached servers
 * that have not yet stopped and closed every handle. Not from a callback. */
size_t ws_loop_run_nowait(ws_loop *l, int *timeout_ms);

/* Attached servers not yet freed. */
size_t ws_loop_server_count(const ws_loop *l);
/* Embedded: writes made between turns are corked until the next turn, and
 * the first one wakes the backend fd for it. A driver that will call
 * ws_loop_flush soon (say from asyncio's call_soon) says so first: those
 * writes then wake nothing, and ws_loop_flush sends them (one writev per
 * connection) without a turn. */
void ws_loop_flush_soon(ws_loop *l);
void ws_loop_flush(ws_loop *l);
/* Milliseconds of the loop clock. */
uint64_t ws_loop_now(const ws_loop *l);

#endif
