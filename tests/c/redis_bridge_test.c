/* redis_bridge_test.c - drives ws_redis bridges on one libuv loop from line
 * commands on stdin, for tests/redis/test_bridge.py (which starts and stops
 * the redis-server instances, kills, freezes and restarts them).
 *
 * One command per line, tokens separated by single spaces; one reply line per
 * command (msgs: several, ending with "end"). Waits are bounded by their MS.
 *   new NAME URL [key=value...]   keys: ns cto cmd hb bmin bmax maxpend
 *                                 -> "ok" | "err <sentence>"
 *   sub NAME TOPIC / unsub NAME TOPIC     -> "ok <rc>"
 *   pub NAME TOPIC OPCODE PAYLOAD          -> "ok <rc>"
 *   pubn NAME TOPIC COUNT [SIZE]           -> text "NAME:<i>" i=1..COUNT (padded
 *                                             with 'x' to SIZE bytes, at most 4096)
 *                                             "ok sent=<n> dropped=<n>"
 *   wait NAME up|down MS                   -> "ok" | "timeout"
 *   waitmsgs NAME N MS                     -> "ok <n>" | "timeout <n>"
 *   sleep MS                               -> "ok" (the loop runs meanwhile)
 *   msgs NAME                              -> "msg TOPIC OPCODE HEXPAYLOAD"... "end"
 *   stats NAME                             -> "stats key=value ..." (+ rss_kb)
 *   states NAME                            -> "states <u/d sequence>"
 *   err NAME                               -> "err <last error>"
 *   close NAME                             -> "ok"
 *   quit                                   -> closes everything, "bye", exit 0
 *                                             (exit 3 if the loop kept a handle)
 */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "redisbridge.h"

#define MAX_BRIDGES 8

typedef struct tb_bridge {
  char name[32];
  ws_redis *r;
  ws_redis_url url;
  char *msgs;  /* reply lines not yet fetched */
  size_t msgs_len, msgs_cap;
  size_t nmsgs;  /* received since start */
  char states[256];
  size_t nstates;
  struct tb *tb;
} tb_bridge;

enum { W_NONE, W_STATE, W_MSGS, W_SLEEP };

typedef struct tb {
  uv_loop_t loop;
  uv_pipe_t in;
  uv_timer_t timer;
  char line[1 << 16];
  char buf[1 << 17];
  size_t buf_len;
  tb_bridge b[MAX_BRIDGES];
  int wait_kind;
  tb_bridge *wait_b;
  int wait_up;
  size_t wait_n;
  int quitting;
} tb;

static void pump(tb *t);

static tb_bridge *find(tb *t, const char *name) {
  for (int i = 0; i < MAX_BRIDGES; i++)
    if (t->b[i].r && strcmp(t->b[i].name, name) == 0) return &t->b[i];
  return NULL;
}

static void reply(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

static void append(tb_bridge *b, const char *s, size_t n) {
  if (b->msgs_len + n > b->msgs_cap) {
    size_t cap = b->msgs_cap ? b->msgs_cap : 4096;
    while (cap < b->msgs_len + n) cap *= 2;
    char *p = realloc(b->msgs, cap);
    if (!p) abort();
    b->msgs = p;
    b->msgs_cap = cap;
  }
  memcpy(b->msgs + b->msgs_len, s, n);
  b->msgs_len += n;
}

static void wait_done(tb *t, const char *fmt, size_t n) {
  uv_timer_stop(&t->timer);
  t->wait_kind = W_NONE;
  reply(fmt, n);
  pump(t);
}

static void check_wait(tb *t) {
  if (t->wait_kind == W_STATE && ws_redis_is_up(t->wait_b->r) == t->wait_up)
    wait_done(t, "ok", 0);
  else if (t->wait_kind == W_MSGS && t->wait_b->nmsgs >= t->wait_n)
    wait_done(t, "ok %zu", t->wait_b->nmsgs);
}

static void on_message(ws_redis *r, const char *topic, size_t tlen, unsigned opcode,
                       const char *payload, size_t len) {
  tb_bridge *b = ws_redis_user(r);
  char head[400];
  int k = snprintf(head, sizeof head, "msg %.*s %u ", (int)tlen, topic, opcode);
  append(b, head, (size_t)k);
  for (size_t i = 0; i < len; i++) {
    char hx[3];
    snprintf(hx, sizeof hx, "%02x", (unsigned char)payload[i]);
    append(b, hx, 2);
  }
  append(b, "\n", 1);
  b->nmsgs++;
  check_wait(b->tb);
}

static void on_state(ws_redis *r, int up, const char *reason) {
  tb_bridge *b = ws_redis_user(r);
  (void)reason;
  if (b->nstates + 1 < sizeof b->states) b->states[b->nstates++] = up ? 'u' : 'd';
  check_wait(b->tb);
}

static void on_timer(uv_timer_t *h) {
  tb *t = h->data;
  size_t n = t->wait_kind == W_MSGS ? t->wait_b->nmsgs : 0;
  const char *fmt = t->wait_kind == W_SLEEP ? "ok" : t->wait_kind == W_MSGS ? "timeout %zu"
                                                                             : "timeout";
  t->wait_kind = W_NONE;
  reply(fmt, n);
  pump(t);
}

static void start_wait(tb *t, int kind, uint64_t ms) {
  t->wait_kind = kind;
  uv_timer_start(&t->timer, on_timer, ms, 0);
}

static int cmd_new(tb *t, char **tok, int n) {
  if (n < 3) return reply("err usage: new NAME URL [key=value...]"), 0;
  if (find(t, tok[1])) return reply("err exists"), 0;
  tb_bridge *b = NULL;
  for (int i = 0; i < MAX_BRIDGES && !b; i++)
    if (!t->b[i].r) b = &t->b[i];
  if (!b) return reply("err too many bridges"), 0;
  memset(b, 0, sizeof *b);
  const char *err = NULL;
  if (ws_redis_url_parse(tok[2], strlen(tok[2]), &b->url, &err))
    return reply("err %s", err), 0;
  ws_redis_config cfg;
  ws_redis_config_default(&cfg);
  ws_redis_config_from_url(&cfg, &b->url);
  for (int i = 3; i < n; i++) {
    char *eq = strchr(tok[i], '=');
    if (!eq) return reply("err bad option %s", tok[i]), 0;
    *eq = '\0';
    const char *k = tok[i], *v = eq + 1;
    unsigned long x = strtoul(v, NULL, 10);
    if (!strcmp(k, "ns")) cfg.ns = v;
    else if (!strcmp(k, "cto")) cfg.connect_timeout_ms = (uint32_t)x;
    else if (!strcmp(k, "cmd")) cfg.command_timeout_ms = (uint32_t)x;
    else if (!strcmp(k, "hb")) cfg.heartbeat_ms = (uint32_t)x;
    else if (!strcmp(k, "bmin")) cfg.backoff_min_ms = (uint32_t)x;
    else if (!strcmp(k, "bmax")) cfg.backoff_max_ms = (uint32_t)x;
    else if (!strcmp(k, "maxpend")) cfg.max_pending_bytes = x;
    else return reply("err unknown option %s", k), 0;
  }
  ws_redis_callbacks cb = {.on_message = on_message, .on_state = on_state};
  b->tb = t;
  snprintf(b->name, sizeof b->name, "%s", tok[1]);
  b->r = ws_redis_new(&t->loop, &cfg, &cb, b, &err);
  if (!b->r) return reply("err %s", err), 0;
  reply("ok");
  return 0;
}

static void bridge_close(tb_bridge *b) {
  ws_redis_close(b->r);
  free(b->msgs);
  memset(b, 0, sizeof *b);
}

/* Runs one command; returns 1 when it started a wait. */
static int run(tb *t, char *line) {
  char *tok[16];
  int n = 0;
  for (char *s = strtok(line, " "); s && n < 16; s = strtok(NULL, " ")) tok[n++] = s;
  if (n == 0) return 0;
  const char *c = tok[0];
  if (!strcmp(c, "new")) return cmd_new(t, tok, n);
  if (!strcmp(c, "sleep") && n == 2) {
    start_wait(t, W_SLEEP, strtoull(tok[1], NULL, 10));
    return 1;
  }
  if (!strcmp(c, "quit")) {
    for (int i = 0; i < MAX_BRIDGES; i++)
      if (t->b[i].r) bridge_close(&t->b[i]);
    t->quitting = 1;
    uv_close((uv_handle_t *)&t->in, NULL);
    uv_close((uv_handle_t *)&t->timer, NULL);
    return 1;
  }
  tb_bridge *b = n >= 2 ? find(t, tok[1]) : NULL;
  if (!b) return reply("err no such bridge"), 0;
  ws_redis *r = b->r;
  if (!strcmp(c, "sub") && n == 3) {
    reply("ok %d", ws_redis_subscribe(r, tok[2], strlen(tok[2])));
  } else if (!strcmp(c, "unsub") && n == 3) {
    reply("ok %d", ws_redis_unsubscribe(r, tok[2], strlen(tok[2])));
  } else if (!strcmp(c, "pub") && n == 5) {
    reply("ok %d", ws_redis_publish(r, tok[2], strlen(tok[2]), (unsigned)atoi(tok[3]), tok[4],
                                    strlen(tok[4])));
  } else if (!strcmp(c, "pubn") && (n == 4 || n == 5)) {
    unsigned long count = strtoul(tok[3], NULL, 10), sent = 0, dropped = 0;
    size_t size = n == 5 ? strtoul(tok[4], NULL, 10) : 0;
    if (size > 4096) size = 4096;
    for (unsigned long i = 1; i <= count; i++) {
      char p[4160];
      int k = snprintf(p, sizeof p, "%s:%lu", b->name, i);
      if ((size_t)k < size) { /* padded to SIZE bytes */
        memset(p + k, 'x', size - (size_t)k);
        k = (int)size;
      }
      if (ws_redis_publish(r, tok[2], strlen(tok[2]), 1, p, (size_t)k) == WS_REDIS_OK) sent++;
      else dropped++;
    }
    reply("ok sent=%lu dropped=%lu", sent, dropped);
  } else if (!strcmp(c, "wait") && n == 4) {
    t->wait_b = b;
    t->wait_up = !strcmp(tok[2], "up");
    if (ws_redis_is_up(r) == t->wait_up) return reply("ok"), 0;
    start_wait(t, W_STATE, strtoull(tok[3], NULL, 10));
    return 1;
  } else if (!strcmp(c, "waitmsgs") && n == 4) {
    t->wait_b = b;
    t->wait_n = strtoul(tok[2], NULL, 10);
    if (b->nmsgs >= t->wait_n) return reply("ok %zu", b->nmsgs), 0;
    start_wait(t, W_MSGS, strtoull(tok[3], NULL, 10));
    return 1;
  } else if (!strcmp(c, "msgs")) {
    if (b->msgs_len) fwrite(b->msgs, 1, b->msgs_len, stdout);
    b->msgs_len = 0;
    reply("end");
  } else if (!strcmp(c, "stats")) {
    ws_redis_stats s;
    ws_redis_get_stats(r, &s);
    long rss = 0, pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
      if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
      fclose(f);
    }
    reply("stats published=%llu delivered=%llu dropped_own=%llu lost=%llu out_of_order=%llu "
          "dropped_down=%llu dropped_full=%llu unconfirmed=%llu malformed=%llu "
          "reconnects=%llu timeouts=%llu connects=%llu pending_bytes=%llu channels=%llu "
          "bad_version=%llu seq_topics=%llu seq_resets=%llu seq_streams=%llu "
          "seq_memory=%llu up=%d rss_kb=%ld",
          (unsigned long long)s.published, (unsigned long long)s.delivered,
          (unsigned long long)s.dropped_own, (unsigned long long)s.lost,
          (unsigned long long)s.out_of_order, (unsigned long long)s.dropped_down,
          (unsigned long long)s.dropped_full, (unsigned long long)s.unconfirmed,
          (unsigned long long)s.malformed, (unsigned long long)s.reconnects,
          (unsigned long long)s.timeouts, (unsigned long long)s.connects,
          (unsigned long long)s.pending_bytes,
          (unsigned long long)s.channels, (unsigned long long)s.bad_version,
          (unsigned long long)s.seq_topics, (unsigned long long)s.seq_resets,
          (unsigned long long)s.seq_streams, (unsigned long long)s.seq_memory,
          ws_redis_is_up(r), rss * 4);
  } else if (!strcmp(c, "states")) {
    reply("states %.*s", (int)b->nstates, b->states);
  } else if (!strcmp(c, "err")) {
    reply("err %s", ws_redis_last_error(r));
  } else if (!strcmp(c, "origin")) {
    const uint8_t *o = ws_redis_origin(r);
    char hx[33];
    for (int i = 0; i < 16; i++) snprintf(hx + 2 * i, 3, "%02x", o[i]);
    reply("origin %s", hx);
  } else if (!strcmp(c, "close")) {
    bridge_close(b);
    reply("ok");
  } else {
    reply("err unknown command");
  }
  return 0;
}

static void pump(tb *t) {
  while (t->wait_kind == W_NONE && !t->quitting) {
    char *nl = memchr(t->buf, '\n', t->buf_len);
    if (!nl) return;
    size_t n = (size_t)(nl - t->buf);
    if (n >= sizeof t->line) n = sizeof t->line - 1;
    memcpy(t->line, t->buf, n);
    t->line[n] = '\0';
    size_t used = (size_t)(nl - t->buf) + 1;
    memmove(t->buf, t->buf + used, t->buf_len - used);
    t->buf_len -= used;
    run(t, t->line);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  tb *t = h->data;
  (void)hint;
  buf->base = t->buf + t->buf_len;
  buf->len = sizeof t->buf - t->buf_len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tb *t = s->data;
  (void)buf;
  if (nread < 0) { /* EOF: as quit */
    if (!t->quitting) {
      memcpy(t->buf + (t->buf_len < sizeof t->buf - 6 ? t->buf_len : 0), "quit\n", 5);
      t->buf_len = (t->buf_len < sizeof t->buf - 6 ? t->buf_len : 0) + 5;
      uv_read_stop(s);
      pump(t);
    }
    return;
  }
  t->buf_len += (size_t)nread;
  if (t->buf_len == sizeof t->buf) t->buf_len = 0; /* a line over 128 KiB: dropped */
  pump(t);
}

int main(void) {
  tb *t = calloc(1, sizeof *t);
  if (!t) return 2;
  uv_loop_init(&t->loop);
  uv_pipe_init(&t->loop, &t->in, 0);
  if (uv_pipe_open(&t->in, 0) != 0) {
    fprintf(stderr, "stdin must be a pipe\n");
    return 2;
  }
  t->in.data = t;
  uv_timer_init(&t->loop, &t->timer);
  t->timer.data = t;
  uv_read_start((uv_stream_t *)&t->in, on_alloc, on_read);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&t->loop);
  reply("bye");
  free(t);
  return rc == 0 ? 0 : 3;
}
