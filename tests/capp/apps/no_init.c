/* A shared object, but not a wsuv application. */
__attribute__((visibility("default"))) int something_else(void) { return 42; }
