/* A library built against a wsuv_app.h of another ABI version: wsuv must
 * refuse it before calling its init (which would crash on the wrong layout). */
#include <stdint.h>
#include <stdlib.h>

__attribute__((visibility("default"))) const uint32_t wsuv_app_abi_version = 999;

__attribute__((visibility("default"))) void *wsuv_app_init(void) {
  abort(); /* never called */
}
