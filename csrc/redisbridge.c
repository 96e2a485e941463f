/* redisbridge.c - Redis pub/sub bridge (see redisbridge.h for the contract).
 *
 * Glue: each hiredis context gets a heap-allocated uv_poll_t (an fd is bound
 * to its poll handle, and a reconnect gets a new fd). hiredis' cleanup hook
 * closes the handle before hiredis closes the fd, so libuv never watches a
 * closed or reused descriptor. Poll errors and EOF drop the connection; the
 * shipped adapters/libuv.h ignores poll errors and hangs when Redis dies.
 *
 * Reentrancy: hiredis frees a context itself on EOF/error (calling our
 * reply callbacks with NULL, the cleanup hook, then onDisconnect), and
 * defers redisAsyncFree made inside one of its callbacks until that callback
 * returns. So every callback checks that the context is still the
 * connection's current one (c->ac == ac) before acting, and the bridge
 * outlives every context: it is freed only after its uv handles closed.
 */
#include "redisbridge.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "redisseq.h"
#include "topics.h"

enum { ROLE_SUB = 0, ROLE_PUB = 1 };
/* A connection's states. IDLE: waiting for deadline to (re)connect. */
enum { ST_IDLE = 0, ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_CLOSED };
/* Handshake steps (reply callback privdata). */
enum { HS_AUTH = 1, HS_SELECT = 2, HS_PING = 3 };

#define SUB_BATCH 256

typedef struct rconn rconn;

typedef struct rpoll {
  uv_poll_t h;
  rconn *c;
  redisAsyncContext *ac;  /* NULL once hiredis cleaned the context up */
  int events;
} rpoll;

struct rconn {
  ws_redis *r;
  int role;
  int state;
  redisAsyncContext *ac;  /* the current context, or NULL */
  rpoll *poll;            /* its poll handle */
  uv_timer_t timer;       /* deadlines of every state, re-armed lazily */
  uint64_t deadline;      /* IDLE: reconnect at; CONNECTING/HANDSHAKE: give up at */
  uint64_t outstanding;   /* replies awaited */
  uint64_t progress;      /* last reply, or when outstanding left 0 */
  uint64_t last_io;       /* last command or reply (heartbeat) */
  uint32_t attempt;       /* failures since the last READY (backoff) */
  int poll_failed;        /* uv_poll_start's error, handled by the timer */
};

struct ws_redis {
  uv_loop_t *loop;
  ws_redis_config cfg;  /* string members point at the owned copies below */
  char *host, *unix_path, *user, *password, *ns;
  ws_redis_callbacks cb;
  void *user_data;
  rconn conn[2];
  uint8_t origin[WS_REDIS_ORIGIN_LEN];
  ws_rseq *seqs;          /* sequences per (origin, channel): redisseq.h */
  ws_redis_stats st;
  int up, was_up, closing, handles;
  ws_topics *wanted_reg;  /* the wanted topics: one subscriber, `wanted` */
  ws_topics_sub wanted;
  char *prefix;           /* "wsuv:<ns>:" */
  size_t prefix_len;
  char *hb;               /* the heartbeat channel "wsuv-hb:<ns>:<origin hex>" */
  size_t hb_len;
  char *scratch;          /* PUBLISH command being formatted */
  size_t scratch_cap;
  uint64_t rng;
  char err[320];
};

static const char *const role_name[2] = {"subscribe", "publish"};

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t now_ms(const ws_redis *r) { return uv_now(r->loop); }

static uint64_t rng_next(ws_redis *r) {
  uint64_t z = (r->rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* n bytes from the OS (getrandom, else /dev/urandom). 0 or -1. */
static int os_random(void *out, size_t n) {
  uint8_t *p = out;
  size_t got = 0;
  while (got < n) {
    ssize_t k = getrandom(p + got, n - got, 0);
    if (k <= 0) break;
    got += (size_t)k;
  }
  if (got == n) return 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  while (got < n) {
    ssize_t k = read(fd, p + got, n - got);
    if (k <= 0) break;
    got += (size_t)k;
  }
  close(fd);
  return got == n ? 0 : -1;
}

static char *dup_or_null(const char *s) {
  if (!s || !*s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static void set_err(ws_redis *r, const char *fmt, ...) {
  char tmp[sizeof r->err];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  memcpy(r->err, tmp, sizeof tmp);
}

/* ---- state ------------------------------------------------------------------- */

static void conn_connect(rconn *c);
static void conn_arm(rconn *c);
static void on_timer(uv_timer_t *t);

static void update_up(ws_redis *r) {
  int up = r->conn[0].state == ST_READY && r->conn[1].state == ST_READY;
  if (up == r->up || r->closing) return;
  r->up = up;
  if (up) {
    if (r->was_up) r->st.reconnects++;
    r->was_up = 1;
  }
  if (r->cb.on_state) r->cb.on_state(r, up, up ? "connected" : r->err);
}

static uint32_t backoff(ws_redis *r, uint32_t attempt) {
  uint64_t base = r->cfg.backoff_min_ms;
  for (uint32_t i = 0; i < attempt && base < r->cfg.backoff_max_ms; i++) base *= 2;
  if (base > r->cfg.backoff_max_ms) base = r->cfg.backoff_max_ms;
  uint64_t half = base / 2;
  return (uint32_t)(base - half + (half ? rng_next(r) % (half + 1) : 0));
}

/* The connection is gone (its context detached already): wait, then retry. */
static int still_wanted(void *arg, const char *topic, size_t len) {
  ws_redis *r = arg;
  return ws_topics_is_subscribed(r->wanted_reg, &r->wanted, topic, len);
}

static void conn_down(rconn *c) {
  ws_redis *r = c->r;
  c->outstanding = 0;
  /* An UNSUBSCRIBE may have gone unanswered: forget those topics' streams.
   * The wanted ones keep theirs, so what the outage cost is counted. */
  if (c->role == ROLE_SUB && r->seqs) ws_rseq_retain(r->seqs, still_wanted, r);
  if (r->closing) {
    c->state = ST_CLOSED;
    return;
  }
  c->state = ST_IDLE;
  c->deadline = now_ms(r) + backoff(r, c->attempt);
  if (c->attempt < 64) c->attempt++;
  conn_arm(c);
  update_up(r);
}

/* Drops the current context on our initiative (timeout, error reply, poll
 * error). hiredis answers every pending callback with NULL. */
static void conn_fail(rconn *c, const char *reason) {
  redisAsyncContext *ac = c->ac;
  if (!ac) return;
  if (reason != c->r->err) set_err(c->r, "redis %s connection: %s", role_name[c->role], reason);
  c->ac = NULL;
  redisAsyncFree(ac);  /* deferred by hiredis when we are inside its callback */
  conn_down(c);
}

static void note_sent(rconn *c, uint64_t k) {
  uint64_t now = now_ms(c->r);
  if (c->outstanding == 0) c->progress = now;
  c->outstanding += k;
  c->last_io = now;
}

static void note_reply(rconn *c) {
  uint64_t now = now_ms(c->r);
  if (c->outstanding) c->outstanding--;
  c->progress = c->last_io = now;
}

/* ---- libuv glue ------------------------------------------------------------- */

/* Frees the bridge once closing and its last uv handle is closed. */
static void bridge_release(ws_redis *r) {
  if (!r->closing || r->handles != 0) return;
  ws_topics_unsubscribe_all(r->wanted_reg, &r->wanted);
  ws_topics_free(r->wanted_reg);
  ws_rseq_free(r->seqs);
  free(r->scratch);
  free(r->prefix);
  free(r->hb);
  free(r->host);
  free(r->unix_path);
  free(r->user);
  free(r->password);
  free(r->ns);
  free(r);
}

static void on_poll_closed(uv_handle_t *h) {
  rpoll *p = h->data;
  ws_redis *r = p->c->r;
  free(p);
  r->handles--;
  bridge_release(r);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  rpoll *p = h->data;
  if (!p->ac) return;
  if (status < 0) {
    /* libuv reports POLLERR as UV_EBADF and stops the handle. Let hiredis
     * read the socket's own error first (a refused connect, a reset), so
     * the sentence names it; if hiredis sees nothing, drop it ourselves. */
    rconn *c = p->c;
    redisAsyncContext *ac = p->ac;
    p->events = 0;
    if (c->state == ST_CONNECTING)
      redisAsyncHandleWrite(ac);
    else
      redisAsyncHandleRead(ac);
    if (p->ac && c->ac == ac) {
      char why[96];
      snprintf(why, sizeof why, "poll error: %s", uv_strerror(status));
      conn_fail(c, why);
    }
    return;
  }
  if (events & UV_READABLE) redisAsyncHandleRead(p->ac);
  if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void poll_update(rpoll *p, int add, int del) {
  if (!p->ac) return;
  int ev = (p->events | add) & ~del;
  if (ev == p->events) return;
  p->events = ev;
  int rc = ev ? uv_poll_start(&p->h, ev, on_poll) : uv_poll_stop(&p->h);
  if (rc < 0 && p->c->ac == p->ac) {
    /* Cannot watch the fd: drop the connection from its timer (we are
     * inside hiredis here, which must not free the context under itself). */
    p->c->poll_failed = rc;
    uv_timer_start(&p->c->timer, on_timer, 0, 0);
  }
}

static void hook_add_read(void *d) { poll_update(d, UV_READABLE, 0); }
static void hook_del_read(void *d) { poll_update(d, 0, UV_READABLE); }
static void hook_add_write(void *d) { poll_update(d, UV_WRITABLE, 0); }
static void hook_del_write(void *d) { poll_update(d, 0, UV_WRITABLE); }

/* hiredis is freeing the context (it closes the fd right after): stop
 * watching now and let the handle go. */
static void hook_cleanup(void *d) {
  rpoll *p = d;
  if (!p->ac) return;
  p->ac = NULL;
  if (p->c->poll == p) p->c->poll = NULL;
  uv_close((uv_handle_t *)&p->h, on_poll_closed);
}

/* ---- hiredis callbacks ------------------------------------------------------ */

static void conn_ready(rconn *c);

static void on_hs_reply(redisAsyncContext *ac, void *reply, void *priv) {
  rconn *c = ac->data;
  redisReply *rep = reply;
  if (!rep || c->ac != ac) return;
  note_reply(c);
  int step = (int)(uintptr_t)priv;
  static const char *const what[] = {"", "AUTH", "SELECT", "PING"};
  if (rep->type == REDIS_REPLY_ERROR) {
    set_err(c->r, "redis %s connection: Redis refused %s: %.*s", role_name[c->role],
            what[step], (int)(rep->len > 200 ? 200 : rep->len), rep->str);
    conn_fail(c, c->r->err);
    return;
  }
  if (step == HS_PING) conn_ready(c);
}

static void on_ping_reply(redisAsyncContext *ac, void *reply, void *priv) {
  (void)priv;
  rconn *c = ac->data;
  redisReply *rep = reply;
  if (!rep || c->ac != ac) return;
  note_reply(c);
  if (rep->type == REDIS_REPLY_ERROR) {
    set_err(c->r, "redis %s connection: heartbeat refused: %.*s", role_name[c->role],
            (int)(rep->len > 200 ? 200 : rep->len), rep->str);
    conn_fail(c, c->r->err);
  }
}

static void on_publish_reply(redisAsyncContext *ac, void *reply, void *priv) {
  rconn *c = ac->data;
  ws_redis *r = c->r;
  redisReply *rep = reply;
  size_t n = (size_t)(uintptr_t)priv;
  r->st.pending_bytes -= n;
  if (!rep) {
    r->st.unconfirmed++;
    return;
  }
  if (c->ac == ac) note_reply(c);
  if (rep->type == REDIS_REPLY_ERROR) {
    r->st.unconfirmed++;
    if (c->ac == ac) {
      set_err(r, "redis publish connection: Redis refused PUBLISH: %.*s",
              (int)(rep->len > 200 ? 200 : rep->len), rep->str);
      conn_fail(c, r->err);
    }
    return;
  }
  r->st.published++;
}

static void handle_message(ws_redis *r, const redisReply *chan, const redisReply *data) {
  if (chan->type != REDIS_REPLY_STRING || data->type != REDIS_REPLY_STRING) return;
  if (chan->len <= r->prefix_len || memcmp(chan->str, r->prefix, r->prefix_len) != 0) return;
  const char *topic = chan->str + r->prefix_len;
  size_t tlen = chan->len - r->prefix_len;
  if (!ws_topics_is_subscribed(r->wanted_reg, &r->wanted, topic, tlen)) return;
  ws_redis_envelope env;
  int erc = ws_redis_envelope_decode(data->str, data->len, &env);
  if (erc == WS_REDIS_ENV_BAD_VERSION) { /* another wsuv release: never misread it */
    r->st.bad_version++;
    return;
  }
  if (erc != WS_REDIS_ENV_OK) {
    r->st.malformed++;
    return;
  }
  if (memcmp(env.origin, r->origin, WS_REDIS_ORIGIN_LEN) == 0) {
    r->st.dropped_own++;
    return;
  }
  uint64_t lost = 0;
  int t = ws_rseq_track(r->seqs, topic, tlen, env.origin, env.epoch, env.seq, &lost);
  if (t == WS_RSEQ_STALE) r->st.out_of_order++;
  r->st.lost += lost;
  r->st.delivered++;
  if (r->cb.on_message) r->cb.on_message(r, topic, tlen, env.opcode, env.payload, env.len);
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv) {
  rconn *c = priv;
  redisReply *rep = reply;
  if (!rep || c->ac != ac) return;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
      rep->element[0]->type != REDIS_REPLY_STRING)
    return;
  const char *kind = rep->element[0]->str;
  if (strcasecmp(kind, "message") == 0) {
    c->progress = c->last_io = now_ms(c->r);
    handle_message(c->r, rep->element[1], rep->element[2]);
  } else if (strcasecmp(kind, "subscribe") == 0) {
    note_reply(c);
  } else if (strcasecmp(kind, "unsubscribe") == 0) {
    note_reply(c);
    /* Redis ended the subscription: what follows belongs to a new one */
    const redisReply *ch = rep->element[1];
    ws_redis *r = c->r;
    if (ch->type == REDIS_REPLY_STRING && ch->len > r->prefix_len &&
        memcmp(ch->str, r->prefix, r->prefix_len) == 0)
      ws_rseq_forget(r->seqs, ch->str + r->prefix_len, ch->len - r->prefix_len);
  }
}

static void on_connect(const redisAsyncContext *cac, int status) {
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  rconn *c = ac->data;
  if (c->ac != ac) return;
  if (status != REDIS_OK) {
    /* hiredis frees ac when we return */
    set_err(c->r, "redis %s connection: connect failed: %s", role_name[c->role],
            ac->errstr[0] ? ac->errstr : "unknown error");
    c->ac = NULL;
    conn_down(c);
    return;
  }
  ws_redis *r = c->r;
  c->state = ST_HANDSHAKE;
  if (r->password) {
    int ok = r->user
                 ? redisAsyncCommand(ac, on_hs_reply, (void *)(uintptr_t)HS_AUTH, "AUTH %s %s",
                                     r->user, r->password)
                 : redisAsyncCommand(ac, on_hs_reply, (void *)(uintptr_t)HS_AUTH, "AUTH %s",
                                     r->password);
    if (ok == REDIS_OK) note_sent(c, 1);
  }
  if (r->cfg.db && redisAsyncCommand(ac, on_hs_reply, (void *)(uintptr_t)HS_SELECT,
                                     "SELECT %d", r->cfg.db) == REDIS_OK)
    note_sent(c, 1);
  if (redisAsyncCommand(ac, on_hs_reply, (void *)(uintptr_t)HS_PING, "PING") == REDIS_OK)
    note_sent(c, 1);
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  rconn *c = ac->data;
  (void)status;
  if (c->ac != ac) return; /* we dropped it ourselves */
  set_err(c->r, "redis %s connection lost: %s", role_name[c->role],
          ac->errstr[0] ? ac->errstr : "closed by the server");
  c->ac = NULL;
  conn_down(c);
}

/* ---- commands ------------------------------------------------------------- */

/* SUBSCRIBE or UNSUBSCRIBE the channels of n topics (names[i], lens[i]). */
static int send_channels(rconn *c, const char *verb, const char *const *names,
                         const size_t *lens, size_t n) {
  ws_redis *r = c->r;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += r->prefix_len + lens[i];
  char *buf = malloc(total ? total : 1);
  const char **argv = malloc((n + 1) * sizeof *argv);
  size_t *argl = malloc((n + 1) * sizeof *argl);
  int rc = -1;
  if (buf && argv && argl) {
    argv[0] = verb;
    argl[0] = strlen(verb);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
      memcpy(buf + off, r->prefix, r->prefix_len);
      memcpy(buf + off + r->prefix_len, names[i], lens[i]);
      argv[i + 1] = buf + off;
      argl[i + 1] = r->prefix_len + lens[i];
      off += argl[i + 1];
    }
    if (redisAsyncCommandArgv(c->ac, on_sub_reply, c, (int)(n + 1), argv, argl) == REDIS_OK) {
      note_sent(c, n);
      rc = 0;
    }
  }
  free(buf);
  free(argv);
  free(argl);
  return rc;
}

static void subscribe_heartbeat(rconn *c) {
  const char *argv[2] = {"SUBSCRIBE", c->r->hb};
  size_t argl[2] = {9, c->r->hb_len};
  if (redisAsyncCommandArgv(c->ac, on_sub_reply, c, 2, argv, argl) == REDIS_OK) note_sent(c, 1);
}

static void conn_ready(rconn *c) {
  ws_redis *r = c->r;
  c->state = ST_READY;
  c->attempt = 0;
  if (c->role == ROLE_SUB) {
    subscribe_heartbeat(c); /* keeps the context in subscribe mode, and is the heartbeat */
    const char *names[SUB_BATCH];
    size_t lens[SUB_BATCH], k = 0, n = ws_topics_sub_count(&r->wanted);
    for (size_t i = 0; i < n && c->ac; i++) {
      ws_topics_sub_topic(&r->wanted, i, &names[k], &lens[k]);
      if (++k == SUB_BATCH || i + 1 == n) {
        if (send_channels(c, "SUBSCRIBE", names, lens, k)) {
          conn_fail(c, "could not queue the resubscription");
          return;
        }
        k = 0;
      }
    }
  }
  conn_arm(c);
  update_up(r);
}

static void send_heartbeat(rconn *c) {
  if (c->role == ROLE_SUB) {
    subscribe_heartbeat(c);
  } else if (redisAsyncCommand(c->ac, on_ping_reply, NULL, "PING") == REDIS_OK) {
    note_sent(c, 1);
  }
}

/* ---- timers and connecting -------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  rconn *c = t->data;
  ws_redis *r = c->r;
  uint64_t now = now_ms(r);
  if (c->poll_failed && c->ac) {
    char why[96];
    snprintf(why, sizeof why, "cannot watch the socket: %s", uv_strerror(c->poll_failed));
    c->poll_failed = 0;
    conn_fail(c, why);
    return;
  }
  c->poll_failed = 0;
  switch (c->state) {
  case ST_IDLE:
    if (now >= c->deadline) {
      conn_connect(c);
      return;
    }
    break;
  case ST_CONNECTING:
  case ST_HANDSHAKE:
    if (now >= c->deadline) {
      r->st.timeouts++;
      set_err(r, "redis %s connection: connect timeout (%u ms)", role_name[c->role],
              r->cfg.connect_timeout_ms);
      conn_fail(c, r->err);
      return;
    }
    break;
  case ST_READY:
    if (c->outstanding && now - c->progress >= r->cfg.command_timeout_ms) {
      r->st.timeouts++;
      set_err(r, "redis %s connection: command timeout (no reply for %u ms)",
              role_name[c->role], r->cfg.command_timeout_ms);
      conn_fail(c, r->err);
      return;
    }
    if (!c->outstanding && now - c->last_io >= r->cfg.heartbeat_ms) send_heartbeat(c);
    break;
  default:
    return;
  }
  conn_arm(c);
}

static void conn_arm(rconn *c) {
  ws_redis *r = c->r;
  uint64_t now = now_ms(r), at;
  switch (c->state) {
  case ST_IDLE:
  case ST_CONNECTING:
  case ST_HANDSHAKE: at = c->deadline; break;
  case ST_READY:
    at = c->outstanding ? c->progress + r->cfg.command_timeout_ms
                        : c->last_io + r->cfg.heartbeat_ms;
    break;
  default: return;
  }
  uv_timer_start(&c->timer, on_timer, at > now ? at - now : 0, 0);
}

static void conn_connect(rconn *c) {
  ws_redis *r = c->r;
  r->st.connects++;
  redisAsyncContext *ac = r->unix_path ? redisAsyncConnectUnix(r->unix_path)
                                       : redisAsyncConnect(r->host, r->cfg.port);
  if (!ac || ac->err) {
    set_err(r, "redis %s connection: connect failed: %s", role_name[c->role],
            ac ? ac->errstr : "out of memory");
    if (ac) redisAsyncFree(ac);
    conn_down(c);
    return;
  }
  rpoll *p = calloc(1, sizeof *p);
  if (!p || uv_poll_init(r->loop, &p->h, ac->c.fd) != 0) {
    free(p);
    set_err(r, "redis %s connection: cannot watch its socket", role_name[c->role]);
    redisAsyncFree(ac);
    conn_down(c);
    return;
  }
  r->handles++;
  p->h.data = p;
  p->c = c;
  p->ac = ac;
  c->poll = p;
  c->ac = ac;
  ac->data = c;
  ac->ev.data = p;
  ac->ev.addRead = hook_add_read;
  ac->ev.delRead = hook_del_read;
  ac->ev.addWrite = hook_add_write;
  ac->ev.delWrite = hook_del_write;
  ac->ev.cleanup = hook_cleanup;
  c->state = ST_CONNECTING;
  c->outstanding = 0;
  c->deadline = now_ms(r) + r->cfg.connect_timeout_ms;
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  redisAsyncSetConnectCallback(ac, on_connect); /* asks for the first write event */
  conn_arm(c);
}

/* ---- public ----------------------------------------------------------------- */

void ws_redis_config_default(ws_redis_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->host = "127.0.0.1";
  cfg->port = 6379;
  cfg->ns = "default";
  cfg->connect_timeout_ms = 2000;
  cfg->command_timeout_ms = 2000;
  cfg->heartbeat_ms = 1000;
  cfg->backoff_min_ms = 100;
  cfg->backoff_max_ms = 5000;
  cfg->max_pending_bytes = 16u << 20; /* measured: see redisbridge.h */
  cfg->max_topic_len = 256;
  cfg->max_origins = 1024;
  cfg->max_pub_topics = 65536;
}

void ws_redis_config_from_url(ws_redis_config *cfg, const ws_redis_url *url) {
  cfg->unix_path = url->is_unix ? url->path : NULL;
  cfg->host = url->is_unix ? NULL : url->host;
  cfg->port = url->port;
  cfg->user = url->user[0] ? url->user : NULL;
  cfg->password = url->password[0] ? url->password : NULL;
  cfg->db = url->db;
}

static int bad_config(const ws_redis_config *cfg, const char **why) {
  if (!cfg->unix_path && (!cfg->host || !*cfg->host)) *why = "no Redis host or unix path";
  else if (!cfg->unix_path && (cfg->port < 1 || cfg->port > 65535)) *why = "bad Redis port";
  else if (cfg->db < 0) *why = "bad Redis database number";
  else if (!cfg->ns || strlen(cfg->ns) > 64) *why = "namespace missing or over 64 bytes";
  else if (cfg->connect_timeout_ms == 0 || cfg->command_timeout_ms == 0 || cfg->heartbeat_ms == 0)
    *why = "Redis timeouts and heartbeat must be > 0 ms";
  else if (cfg->backoff_min_ms == 0 || cfg->backoff_max_ms < cfg->backoff_min_ms)
    *why = "bad Redis backoff (want 0 < backoff_min_ms <= backoff_max_ms)";
  else if (cfg->max_topic_len < 1 || cfg->max_topic_len > 65535) *why = "bad max_topic_len";
  else if (cfg->max_origins < 1 || cfg->max_origins > (1u << 20)) *why = "bad max_origins";
  else if (cfg->max_pub_topics < 1 || cfg->max_pub_topics > (1u << 24))
    *why = "bad max_pub_topics";
  else if (cfg->max_pending_bytes == 0) *why = "max_pending_bytes must be > 0";
  else return 0;
  return 1;
}

ws_redis *ws_redis_new(uv_loop_t *loop, const ws_redis_config *cfg,
                       const ws_redis_callbacks *cb, void *user, const char **err) {
  const char *ignored;
  if (!err) err = &ignored;
  if (bad_config(cfg, err)) return NULL;
  ws_redis *r = calloc(1, sizeof *r);
  if (!r) goto nomem;
  r->loop = loop;
  r->cfg = *cfg;
  if (cb) r->cb = *cb;
  r->user_data = user;
  r->host = dup_or_null(cfg->host);
  r->unix_path = dup_or_null(cfg->unix_path);
  r->user = dup_or_null(cfg->user);
  r->password = dup_or_null(cfg->password);
  r->ns = malloc(strlen(cfg->ns) + 1);
  if ((cfg->host && *cfg->host && !r->host) ||
      (cfg->unix_path && *cfg->unix_path && !r->unix_path) ||
      (cfg->user && *cfg->user && !r->user) ||
      (cfg->password && *cfg->password && !r->password) || !r->ns)
    goto fail;
  strcpy(r->ns, cfg->ns);
  r->cfg.host = r->host;
  r->cfg.unix_path = r->unix_path;
  r->cfg.user = r->user;
  r->cfg.password = r->password;
  r->cfg.ns = r->ns;
  if (os_random(r->origin, sizeof r->origin) || os_random(&r->rng, sizeof r->rng)) {
    *err = "no randomness from the OS for the origin id";
    goto fail_quiet;
  }
  size_t nl = strlen(r->ns);
  r->prefix_len = 5 + nl + 1;
  r->prefix = malloc(r->prefix_len + 1);
  r->hb_len = 8 + nl + 1 + 2 * WS_REDIS_ORIGIN_LEN;
  r->hb = malloc(r->hb_len + 1);
  ws_topics_config tc;
  ws_topics_config_default(&tc);
  tc.max_topic_len = cfg->max_topic_len;
  if (os_random(tc.hash_key, sizeof tc.hash_key)) {
    *err = "no randomness from the OS for the topic hash key";
    goto fail_quiet;
  }
  r->wanted_reg = ws_topics_new(&tc);
  r->seqs = ws_rseq_new(tc.hash_key, cfg->max_pub_topics, cfg->max_origins);
  if (!r->prefix || !r->hb || !r->seqs || !r->wanted_reg) goto fail;
  ws_topics_sub_init(&r->wanted, r);
  snprintf(r->prefix, r->prefix_len + 1, "wsuv:%s:", r->ns);
  int off = snprintf(r->hb, r->hb_len + 1, "wsuv-hb:%s:", r->ns);
  for (int i = 0; i < WS_REDIS_ORIGIN_LEN; i++)
    snprintf(r->hb + off + 2 * i, 3, "%02x", r->origin[i]);
  set_err(r, "connecting");
  for (int i = 0; i < 2; i++) {
    rconn *c = &r->conn[i];
    c->r = r;
    c->role = i;
    c->state = ST_IDLE;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    r->handles++;
    c->deadline = now_ms(r); /* connect on the first loop turn, not in here */
    conn_arm(c);
  }
  return r;
nomem:
  *err = "out of memory";
  return NULL;
fail:
  *err = "out of memory";
fail_quiet:
  if (r) {
    ws_topics_free(r->wanted_reg);
    ws_rseq_free(r->seqs);
    free(r->prefix);
    free(r->hb);
    free(r->host);
    free(r->unix_path);
    free(r->user);
    free(r->password);
    free(r->ns);
    free(r);
  }
  return NULL;
}

void *ws_redis_user(const ws_redis *r) { return r->user_data; }

static void on_timer_closed(uv_handle_t *h) {
  rconn *c = h->data;
  ws_redis *r = c->r;
  r->handles--;
  bridge_release(r);
}

void ws_redis_close(ws_redis *r) {
  if (!r || r->closing) return;
  r->closing = 1;
  r->cb.on_message = NULL;
  r->cb.on_state = NULL;
  for (int i = 0; i < 2; i++) {
    rconn *c = &r->conn[i];
    c->state = ST_CLOSED;
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    if (ac) redisAsyncFree(ac); /* its cleanup hook closes the poll handle */
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  }
}

static int topic_ok(const ws_redis *r, size_t len) {
  return len >= 1 && len <= r->cfg.max_topic_len;
}

int ws_redis_subscribe(ws_redis *r, const char *topic, size_t len) {
  if (!topic_ok(r, len) || r->closing) return WS_REDIS_EINVAL;
  int rc = ws_topics_subscribe(r->wanted_reg, &r->wanted, topic, len);
  if (rc < 0) return rc == WS_TOPICS_ENOMEM ? WS_REDIS_ENOMEM : WS_REDIS_EINVAL;
  rconn *c = &r->conn[ROLE_SUB];
  if (rc == 1 && c->state == ST_READY && send_channels(c, "SUBSCRIBE", &topic, &len, 1))
    conn_fail(c, "could not queue SUBSCRIBE");
  return rc;
}

int ws_redis_unsubscribe(ws_redis *r, const char *topic, size_t len) {
  if (!topic_ok(r, len) || r->closing) return 0;
  int rc = ws_topics_unsubscribe(r->wanted_reg, &r->wanted, topic, len);
  rconn *c = &r->conn[ROLE_SUB];
  if (rc == 1 && c->state == ST_READY && send_channels(c, "UNSUBSCRIBE", &topic, &len, 1))
    conn_fail(c, "could not queue UNSUBSCRIBE");
  return rc;
}

/* Appends "$<n>\r\n" to p; returns the new end. */
static char *bulk_len(char *p, size_t n) {
  char tmp[24];
  int k = 0;
  do {
    tmp[k++] = (char)('0' + n % 10);
    n /= 10;
  } while (n);
  *p++ = '$';
  while (k) *p++ = tmp[--k];
  *p++ = '\r';
  *p++ = '\n';
  return p;
}

int ws_redis_publish(ws_redis *r, const char *topic, size_t len, unsigned opcode,
                     const char *payload, size_t plen) {
  if (!topic_ok(r, len) || (opcode != 1 && opcode != 2) || (plen && !payload))
    return WS_REDIS_EINVAL;
  if (r->closing) return WS_REDIS_EDOWN;
  uint32_t epoch;
  uint64_t seq;
  if (ws_rseq_next(r->seqs, topic, len, &epoch, &seq) != WS_RSEQ_NEXT) {
    r->st.dropped_full++; /* no memory for the topic's counter: nothing was numbered */
    return WS_REDIS_ENOMEM;
  }
  rconn *c = &r->conn[ROLE_PUB];
  if (c->state != ST_READY || !c->ac) {
    r->st.dropped_down++;
    return WS_REDIS_EDOWN;
  }
  size_t chlen = r->prefix_len + len, vlen = WS_REDIS_ENVELOPE_HEADER + plen;
  size_t need = 17 + (1 + 20 + 2) * 2 + chlen + 2 + vlen + 2;
  if (r->st.pending_bytes + need > r->cfg.max_pending_bytes) {
    r->st.dropped_full++;
    return WS_REDIS_EFULL;
  }
  if (need > r->scratch_cap) {
    char *s = realloc(r->scratch, need);
    if (!s) {
      r->st.dropped_full++;
      return WS_REDIS_ENOMEM;
    }
    r->scratch = s;
    r->scratch_cap = need;
  }
  char *p = r->scratch;
  memcpy(p, "*3\r\n$7\r\nPUBLISH\r\n", 17);
  p = bulk_len(p + 17, chlen);
  memcpy(p, r->prefix, r->prefix_len);
  memcpy(p + r->prefix_len, topic, len);
  p += chlen;
  *p++ = '\r';
  *p++ = '\n';
  p = bulk_len(p, vlen);
  ws_redis_envelope_header((uint8_t *)p, r->origin, epoch, seq, opcode);
  p += WS_REDIS_ENVELOPE_HEADER;
  if (plen) memcpy(p, payload, plen);
  p += plen;
  *p++ = '\r';
  *p++ = '\n';
  size_t n = (size_t)(p - r->scratch);
  int rc = redisAsyncFormattedCommand(c->ac, on_publish_reply, (void *)(uintptr_t)n, r->scratch, n);
  if (r->scratch_cap > (256u << 10)) { /* a big message: do not keep its buffer */
    free(r->scratch);
    r->scratch = NULL;
    r->scratch_cap = 0;
  }
  if (rc != REDIS_OK) {
    r->st.dropped_down++;
    return WS_REDIS_EDOWN;
  }
  r->st.pending_bytes += n;
  note_sent(c, 1);
  return WS_REDIS_OK;
}

int ws_redis_is_up(const ws_redis *r) { return r->up; }

void ws_redis_get_stats(const ws_redis *r, ws_redis_stats *out) {
  *out = r->st;
  out->channels = ws_topics_sub_count(&r->wanted);
  ws_rseq_stats q;
  ws_rseq_get_stats(r->seqs, &q);
  out->seq_topics = q.pub_topics;
  out->seq_resets = q.resets;
  out->seq_streams = q.streams;
  out->seq_memory = q.memory;
}

const uint8_t *ws_redis_origin(const ws_redis *r) { return r->origin; }

const char *ws_redis_last_error(const ws_redis *r) { return r->err; }
