/* chat.c - chat rooms by path: a message sent on ws://host/lobby reaches
 * everyone connected to /lobby (the sender too), and no one else. A room is
 * a topic: wsuv keeps its members, drops them when they close, and with
 * --pubsub-url reaches the room's members on every worker and machine.
 *
 *   wsuv-serve examples/c/chat.c --app-arg 100   # at most 100 per room
 *
 * Room names are 1-32 characters of [a-z0-9-]; another path is answered
 * 404, a full room 503. A member joining is told "joined ROOM (N here)".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wsuv_app.h>

typedef struct { const wsuv_host *host; wsuv_server *srv; size_t max; } chat;
typedef struct { char name[33]; size_t len; } room; /* a connection's user data */

static int room_name(const wsuv_host *h, const wsuv_request *r, room *out) {
  size_t len, i;
  const char *t = h->request_target(r, &len);
  if (!t || len < 2 || len > 33 || t[0] != '/') return -1;
  for (i = 1; i < len; i++)
    if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '-')) return -1;
  memcpy(out->name, t + 1, len - 1);
  out->name[len - 1] = 0;
  out->len = len - 1;
  return 0;
}

static void on_connect(void *u, wsuv_conn *c, const wsuv_request *r) {
  chat *ch = u;
  room rm;
  if (room_name(ch->host, r, &rm) != 0) ch->host->reject(c, 404, "no such room", 12);
  else if (ch->host->subscribers(ch->srv, rm.name, rm.len) >= ch->max)
    ch->host->reject(c, 503, "room full", 9);
}

static void on_open(void *u, wsuv_conn *c, const wsuv_request *r) {
  chat *ch = u;
  char hello[64];
  room *rm = malloc(sizeof *rm);
  if (!rm || room_name(ch->host, r, rm) != 0 || ch->host->subscribe(c, rm->name, rm->len) < 0) {
    free(rm);
    ch->host->close(c, 1011, "out of memory", 13);
    return;
  }
  ch->host->set_user(c, rm);
  int n = snprintf(hello, sizeof hello, "joined %s (%zu here)", rm->name,
                   ch->host->subscribers(ch->srv, rm->name, rm->len));
  ch->host->send(c, WSUV_TEXT, hello, (size_t)n);
}

static void on_message(void *u, wsuv_conn *c, unsigned op, const char *data, size_t len) {
  chat *ch = u;
  room *rm = ch->host->get_user(c);
  if (rm) ch->host->publish(ch->srv, rm->name, rm->len, op, data, len, NULL);
}

static void on_close(void *u, wsuv_conn *c, unsigned code, const char *reason, size_t len) {
  chat *ch = u;
  (void)code, (void)reason, (void)len;
  free(ch->host->get_user(c)); /* its subscription went with the connection */
}

static void on_destroy(void *u) { free(u); }

static const wsuv_app app = {
    .abi_version = WSUV_APP_ABI_VERSION, .size = sizeof(wsuv_app), .name = "chat",
    .on_connect = on_connect, .on_open = on_open, .on_message = on_message,
    .on_close = on_close, .on_destroy = on_destroy,
};

const wsuv_app *wsuv_app_init(const wsuv_host *h, wsuv_server *s, const char *arg,
                              void **app_user, char *err, size_t err_cap) {
  char *end;
  unsigned long max = *arg ? strtoul(arg, &end, 10) : 1000;
  if (*arg && (*end || max == 0)) {
    snprintf(err, err_cap, "--app-arg must be the most members per room (a number > 0), "
             "not '%s'", arg);
    return NULL;
  }
  if (h->size < sizeof(wsuv_host)) { /* the topic functions came later in ABI 1 */
    snprintf(err, err_cap, "this wsuv has no topics for C applications: upgrade it");
    return NULL;
  }
  chat *ch = calloc(1, sizeof *ch);
  if (!ch) return snprintf(err, err_cap, "out of memory"), NULL;
  ch->host = h, ch->srv = s, ch->max = max;
  *app_user = ch;
  h->log(s, WSUV_LOG_INFO, "chat rooms of at most %zu members", ch->max);
  return &app;
}
