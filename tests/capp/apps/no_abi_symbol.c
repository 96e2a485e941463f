/* Exports wsuv_app_init but was not built with wsuv_app.h. */
#include <stdlib.h>

__attribute__((visibility("default"))) void *wsuv_app_init(void) {
  abort(); /* never called */
}
