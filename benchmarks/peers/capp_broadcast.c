/* capp_broadcast.c - the broadcast scenario as a wsuv C application: every
 * message goes to every connection (the sender too), as wsuv_echo.py's
 * server.broadcast does, but with no Python per message. */
#include <stdio.h>
#include <stdlib.h>
#include <wsuv_app.h>

typedef struct { const wsuv_host *h; wsuv_server *s; } bcast;

static void on_message(void *u, wsuv_conn *c, unsigned opcode, const char *data, size_t len) {
  bcast *b = u;
  (void)c;
  b->h->broadcast(b->s, opcode, data, len, NULL);
}

static void on_destroy(void *u) { free(u); }

static const wsuv_app app = {.abi_version = WSUV_APP_ABI_VERSION, .size = sizeof(wsuv_app),
                             .name = "broadcast", .on_message = on_message,
                             .on_destroy = on_destroy};

const wsuv_app *wsuv_app_init(const wsuv_host *h, wsuv_server *s, const char *arg,
                              void **app_user, char *err, size_t err_cap) {
  (void)arg;
  bcast *b = calloc(1, sizeof *b);
  if (!b) {
    snprintf(err, err_cap, "out of memory");
    return NULL;
  }
  b->h = h;
  b->s = s;
  *app_user = b;
  return &app;
}
