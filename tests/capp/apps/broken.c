/* Does not compile: the test expects the compiler's message on stderr. */
#include <wsuv_app.h>

const wsuv_app *wsuv_app_init(const wsuv_host *h) {
  return h->no_such_member;
}
