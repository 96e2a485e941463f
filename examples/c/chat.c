/* chat.c - chat rooms by path: a message sent on ws://host/lobby reaches
 * everyone connected to /lobby (the sender too), and no one else.
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

typedef struct room {
  char name[33];
  wsuv_conn **members; /* send_many takes this array as it is */
  size_t n, cap;
  struct room *next;
} room;

typedef struct { const wsuv_host *host; wsuv_server *srv; room *rooms; size_t max; } chat;
typedef struct { room *room; size_t index; } member; /* a connection's user data */

static int room_name(const wsuv_host *h, const wsuv_request *r, char out[33]) {
  size_t len, i;
  const char *t = h->request_target(r, &len);
  if (!t || len < 2 || len > 33 || t[0] != '/') return -1;
  for (i = 1; i < len; i++)
    if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '-')) return -1;
  memcpy(out, t + 1, len - 1);
  out[len - 1] = 0;
  return 0;
}

static room *find_room(chat *ch, const char *name) {
  for (room *r = ch->rooms; r; r = r->next)
    if (strcmp(r->name, name) == 0) return r;
  return NULL;
}

static void on_connect(void *u, wsuv_conn *c, const wsuv_request *r) {
  chat *ch = u;
  char name[33];
  room *rm;
  if (room_name(ch->host, r, name) != 0) ch->host->reject(c, 404, "no such room", 12);
  else if ((rm = find_room(ch, name)) && rm->n >= ch->max) ch->host->reject(c, 503, "room full", 9);
}

static void on_open(void *u, wsuv_conn *c, const wsuv_request *r) {
  chat *ch = u;
  char name[33], hello[64];
  member *m = malloc(sizeof *m);
  room *rm = NULL;
  if (m && room_name(ch->host, r, name) == 0 && !(rm = find_room(ch, name)) &&
      (rm = calloc(1, sizeof *rm))) {
    memcpy(rm->name, name, sizeof name);
    rm->next = ch->rooms;
    ch->rooms = rm;
  }
  if (rm && rm->n == rm->cap) {
    size_t cap = rm->cap ? 2 * rm->cap : 8;
    wsuv_conn **p = realloc(rm->members, cap * sizeof *p);
    if (p) rm->members = p, rm->cap = cap;
  }
  if (!m || !rm || rm->n == rm->cap) { /* out of memory */
    free(m);
    ch->host->close(c, 1011, "out of memory", 13);
    return;
  }
  m->room = rm;
  m->index = rm->n;
  rm->members[rm->n++] = c;
  ch->host->set_user(c, m);
  int n = snprintf(hello, sizeof hello, "joined %s (%zu here)", rm->name, rm->n);
  ch->host->send(c, WSUV_TEXT, hello, (size_t)n);
}

static void on_message(void *u, wsuv_conn *c, unsigned op, const char *data, size_t len) {
  chat *ch = u;
  member *m = ch->host->get_user(c);
  if (m) ch->host->send_many(ch->srv, m->room->members, m->room->n, op, data, len);
}

static void on_close(void *u, wsuv_conn *c, unsigned code, const char *reason, size_t len) {
  chat *ch = u;
  member *m = ch->host->get_user(c);
  (void)code, (void)reason, (void)len;
  if (!m) return;
  room *rm = m->room; /* swap the last member into this one's place */
  wsuv_conn *last = rm->members[--rm->n];
  rm->members[m->index] = last;
  if (last != c) ((member *)ch->host->get_user(last))->index = m->index;
  free(m);
}

static void on_destroy(void *u) {
  chat *ch = u;
  while (ch->rooms) {
    room *r = ch->rooms;
    ch->rooms = r->next;
    free(r->members);
    free(r);
  }
  free(ch);
}

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
  chat *ch = calloc(1, sizeof *ch);
  if (!ch) return snprintf(err, err_cap, "out of memory"), NULL;
  ch->host = h, ch->srv = s, ch->max = max;
  *app_user = ch;
  h->log(s, WSUV_LOG_INFO, "chat rooms of at most %zu members", ch->max);
  return &app;
}
