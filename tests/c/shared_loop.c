/* shared_loop.c - several servers and client connections on one ws_loop
 * (loop.h), for running under valgrind and ASan (make memcheck).
 *
 * One loop carries: servers A and B (both batch their messages: on_batch,
 * so one poll phase reads both servers' messages into the loop's one
 * batch), server D (listening, then freed while the loop runs), and server
 * C, which hosts the client connections: NCL to A, NCL to B, one to D.
 * A echoes, B echoes with the first byte turned into 'B'; every batch entry
 * must belong to the server whose on_batch sees it. Each client sends MSGS
 * messages, checks each echo and closes with 1000; the one on D is dropped
 * (1006) when D is freed from inside one of C's callbacks. When every
 * client is closed, A, B and C stop; ws_loop_run returns; the servers and
 * the loop are freed (ws_loop_free refuses while a live server is on it).
 *
 * Usage: shared_loop
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "loop.h"
#include "server.h"

#define NCL 8
#define MSGS 20

typedef struct ctx {
  ws_loop *loop;
  ws_server *a, *b, *c, *d;
  int port_a, port_b, port_d;
  int sent[2 * NCL], echoed[2 * NCL];
  int closed, closed_1006, opened, wrong, batches;
} ctx;

static ctx X;

static void bad(const char *what) {
  fprintf(stderr, "shared_loop: %s\n", what);
  X.wrong++;
}

/* ---- A and B: batched echo ---- */

static void srv_batch(ws_server *s, const uint64_t *e, size_t n, const char *arena) {
  X.batches++;
  if (e[2] != 0) bad("a batch call's arena does not start at its first message");
  for (size_t i = 0; i < n; i++) {
    const uint64_t *w = e + i * WS_SERVER_BATCH_WORDS;
    ws_server_conn *c = (ws_server_conn *)(uintptr_t)w[0];
    if (ws_server_conn_server(c) != s) bad("a batch entry of another server");
    char buf[64];
    size_t len = (size_t)w[3];
    if (len == 0 || len > sizeof buf) {
      bad("unexpected message length");
      continue;
    }
    memcpy(buf, arena + w[2], len);
    if (s == X.b) buf[0] = 'B';
    ws_server_conn_send(c, (unsigned)w[1], buf, len);
  }
}

/* ---- C: the client connections ---- */

static int index_of(ws_server_conn *c) { return (int)(intptr_t)ws_server_conn_user(c); }

static void send_next(ws_server_conn *c) {
  int k = index_of(c);
  char buf[32];
  int n = snprintf(buf, sizeof buf, "x%d-%d", k, X.sent[k]++);
  ws_server_conn_send(c, 1, buf, (size_t)n);
}

static void cl_open(ws_server *s, ws_server_conn *c) {
  (void)s;
  X.opened++;
  if (index_of(c) >= 0) send_next(c);
}

static void cl_message(ws_server *s, ws_server_conn *c, unsigned opcode, const char *data,
                       size_t len) {
  (void)s;
  (void)opcode;
  int k = index_of(c);
  if (k < 0) return;
  char want[32];
  int n = snprintf(want, sizeof want, "x%d-%d", k, X.echoed[k]);
  if (k >= NCL) want[0] = 'B';
  if ((size_t)n != len || memcmp(want, data, len) != 0) bad("wrong echo");
  X.echoed[k]++;
  /* The first echo: D goes, from inside this callback of another server. */
  if (X.d && X.echoed[0] + X.echoed[NCL] >= 1) {
    ws_server_free(X.d);
    X.d = NULL;
  }
  if (X.echoed[k] == MSGS) ws_server_conn_close(c, 1000, "", 0);
  else send_next(c);
}

static void cl_close(ws_server *s, ws_server_conn *c, unsigned code, const char *r, size_t n) {
  (void)s;
  (void)r;
  (void)n;
  X.closed++;
  if (index_of(c) < 0) {
    if (code != 1006) bad("the client on D: not 1006");
    X.closed_1006++;
  } else if (code != 1000) {
    bad("a client closed with another code than 1000");
  }
  if (X.closed == 2 * NCL + 1) {
    ws_server_stop(X.a, 1);
    ws_server_stop(X.b, 1);
    ws_server_stop(X.c, 1);
  }
}

static void cl_failed(ws_server *s, ws_server_conn *c, int err, const ws_client_hs *hs) {
  (void)s;
  (void)c;
  (void)hs;
  fprintf(stderr, "shared_loop: connect failed: %d\n", err);
  X.wrong++;
}

static int dial(int port, intptr_t k) {
  ws_client_options o;
  ws_client_options_default(&o);
  o.host = "127.0.0.1";
  o.host_len = 9;
  o.port = (uint16_t)port;
  o.target = "/";
  o.target_len = 1;
  ws_server_conn *c = NULL;
  long req_err = 0;
  if (ws_client_connect(X.c, &o, &c, &req_err) != 0) return -1;
  ws_server_conn_set_user(c, (void *)k);
  return 0;
}

int main(void) {
  ws_server_config cfg;
  ws_server_config_default(&cfg);
  cfg.handle_signals = 0;
  ws_server_callbacks scb;
  memset(&scb, 0, sizeof scb);
  scb.on_batch = srv_batch;
  ws_server_callbacks ccb;
  memset(&ccb, 0, sizeof ccb);
  ccb.on_open = cl_open;
  ccb.on_message = cl_message;
  ccb.on_close = cl_close;
  ccb.on_connect_failed = cl_failed;
  X.loop = ws_loop_new();
  if (!X.loop) return 1;
  X.a = ws_server_new_on(X.loop, &cfg, &scb, NULL);
  X.b = ws_server_new_on(X.loop, &cfg, &scb, NULL);
  X.d = ws_server_new_on(X.loop, &cfg, &scb, NULL);
  X.c = ws_server_new_on(X.loop, &cfg, &ccb, NULL);
  if (!X.a || !X.b || !X.c || !X.d || ws_server_loop(X.a) != X.loop ||
      ws_loop_server_count(X.loop) != 4 || ws_server_listen_tcp(X.a, "127.0.0.1", 0, &X.port_a) ||
      ws_server_listen_tcp(X.b, "127.0.0.1", 0, &X.port_b) ||
      ws_server_listen_tcp(X.d, "127.0.0.1", 0, &X.port_d)) {
    fprintf(stderr, "shared_loop: set-up failed\n");
    return 1;
  }
  if (ws_loop_free(X.loop) != -1) bad("ws_loop_free accepted a loop with live servers");
  for (int k = 0; k < NCL; k++) {
    if (dial(X.port_a, k) || dial(X.port_b, NCL + k)) bad("ws_client_connect");
  }
  if (dial(X.port_d, -1)) bad("ws_client_connect to D");
  if (ws_loop_run(X.loop) != 0) bad("ws_loop_run");
  if (X.d) bad("D was not freed");
  for (int k = 0; k < 2 * NCL; k++)
    if (X.echoed[k] != MSGS) bad("a client did not get all its echoes");
  if (X.opened != 2 * NCL + 1 || X.closed != 2 * NCL + 1 || X.closed_1006 != 1)
    bad("open/close counts");
  if (!ws_server_done(X.a) || !ws_server_done(X.b) || !ws_server_done(X.c)) bad("not done");
  ws_server_free(X.a);
  ws_server_free(X.b);
  if (ws_loop_server_count(X.loop) != 1) bad("server count after two frees");
  ws_server_free(X.c);
  if (ws_loop_free(X.loop) != 0) bad("ws_loop_free refused a loop whose servers are freed");
  if (X.wrong) return 1;
  printf("shared_loop: %d clients on 2 servers echoed %d messages each (%d batch calls); "
         "a third server freed while running\n", 2 * NCL, MSGS, X.batches);
  return 0;
}
