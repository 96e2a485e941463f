/* Built against this header, but returns a table claiming another ABI. */
#include <wsuv_app.h>

static const wsuv_app app = {.abi_version = WSUV_APP_ABI_VERSION + 1, .size = sizeof(wsuv_app)};

const wsuv_app *wsuv_app_init(const wsuv_host *h, wsuv_server *s, const char *arg,
                              void **app_user, char *err, size_t err_cap) {
  (void)h, (void)s, (void)arg, (void)app_user, (void)err, (void)err_cap;
  return &app;
}
