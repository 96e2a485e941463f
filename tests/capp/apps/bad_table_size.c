/* The right version, a table of another size (a header edited by hand). */
#include <wsuv_app.h>

static const wsuv_app app = {.abi_version = WSUV_APP_ABI_VERSION, .size = sizeof(wsuv_app) - 8};

const wsuv_app *wsuv_app_init(const wsuv_host *h, wsuv_server *s, const char *arg,
                              void **app_user, char *err, size_t err_cap) {
  (void)h, (void)s, (void)arg, (void)app_user, (void)err, (void)err_cap;
  return &app;
}
