/* client_direct.h - the blocking client's direct socket path.
 *
 * A blocking client (wsuv.sync) is one connection on a loop of its own,
 * owned by the one thread that waits for it in ws_server_run_until. For that
 * case the wait need not go through epoll: once ws_client_conn_set_direct
 * has marked the connection, each wait of ws_server_run_until that finds it
 * open, with nothing queued and no libuv work due, reads the socket itself
 * with one blocking recv (SO_RCVTIMEO bounds it by the caller's timeout and
 * the loop's next timer), and feeds the bytes to the same read path libuv's
 * callback would (srv_read.c): same engine, limits, pongs, close handshake.
 * Writes made while the socket is in that mode go out with one
 * sendmsg(MSG_DONTWAIT); what the kernel does not take is queued through
 * libuv as usual, after the socket went back to non-blocking. Whenever
 * libuv must run (a timer due, a queued write, the close, the handshake),
 * the socket is non-blocking again first, and the wait is libuv's.
 *
 * So a request/response round trip costs two syscalls (sendmsg, recvfrom)
 * instead of three (writev, epoll_wait, read), without an epoll wake-up.
 *
 * Not for TLS connections (their reads and writes go through ws_tls: the
 * usual path stays), for loops shared with other servers, for servers with
 * read_rate or write_rate, or for connections other threads may touch
 * (wake-ups from other threads go through the loop's async handle, which a
 * blocking recv does not watch): wsuv.Client keeps the usual path.
 */
#ifndef WS_CLIENT_DIRECT_H
#define WS_CLIENT_DIRECT_H

#include <uv.h>

#include "server.h"

/* Marks (on = 1) or unmarks an open client connection for the direct path.
 * 0, or -1 if c is not a client connection without TLS. */
int ws_client_conn_set_direct(ws_server_conn *c, int on);

/* ---- for the transport (loop.c, srv_write.c) ---------------------------- */

/* One wait of ws_server_run_until on s, at most wait_ms (-1 = no bound of
 * the caller's): 1 if it waited directly (bytes read and processed, EOF or
 * an error reported, or the bound reached), 0 if the usual uv_run must run
 * (the socket is non-blocking again then). */
int ws_client_direct_wait(ws_server *s, int wait_ms);

/* The socket of c back to non-blocking before libuv does I/O on it. */
void ws_client_direct_leave(ws_server_conn *c);

#endif
