/* echo.c - the smallest wsuv C application: every message comes back.
 *
 *   wsuv-serve examples/c/echo.c --port 8765
 *
 * No Python runs per message: wsuv parses the frame, calls on_message here,
 * and host->send queues the reply on the same corked write as the built-in
 * echo's.
 */
#include <wsuv_app.h>

static void on_message(void *app_user, wsuv_conn *c, unsigned opcode, const char *data,
                       size_t len) {
  const wsuv_host *host = app_user; /* what init stored */
  host->send(c, opcode, data, len);
}

static const wsuv_app app = {
    .abi_version = WSUV_APP_ABI_VERSION,
    .size = sizeof(wsuv_app),
    .name = "echo",
    .on_message = on_message,
};

const wsuv_app *wsuv_app_init(const wsuv_host *h, wsuv_server *s, const char *arg,
                              void **app_user, char *err, size_t err_cap) {
  (void)s, (void)arg, (void)err, (void)err_cap;
  *app_user = (void *)h; /* no state of our own: keep the host table */
  return &app;
}
