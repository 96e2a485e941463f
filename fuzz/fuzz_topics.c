/* fuzz_topics.c - libFuzzer harness for csrc/topics.c.
 *
 * Input: byte 0 picks max_bytes (0 = unlimited, else a small cap so that
 * ENOMEM paths run), then each byte is one operation on 8 subscribers and 6
 * topics (one of them 256 bytes, one 257 = invalid), checked against a
 * boolean matrix:
 *   bits 0-1: 0 subscribe, 1 unsubscribe, 2 unsubscribe_all, 3 iterate
 *   bits 2-4: subscriber, bits 5-7: topic (6, 7 map to 0, 1)
 * An iteration's callbacks take their actions (unsubscribe self or another,
 * subscribe another, unsubscribe_all, a nested iteration, stop) from the
 * PRNG seeded by the input. After each op: counts, membership, each
 * subscriber's topic list and first/last notifications match the matrix;
 * at the end, after unsubscribe_all of everyone, the registry's memory is
 * back to its empty size.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "topics.h"

#define NS 8
#define NT 6

typedef struct fz_iter fz_iter;

typedef struct fz_ctx {
  ws_topics *reg;
  ws_topics_sub subs[NS];
  int ref[NS][NT];
  int live[NT];  /* notifications say: topic has subscribers */
  char names[NT][260];
  size_t lens[NT];
  fz_rng rng;
  int depth;
  fz_iter *stack[8];  /* iterations in progress, innermost last */
} fz_ctx;

struct fz_iter {
  fz_ctx *c;
  int t;
  int initial[NS], visited[NS], removed[NS];
  int stopped;
};

/* s leaves t: every iteration of t in progress must not expect it any more. */
static void mark_removed(fz_ctx *c, int s, int t) {
  if (!c->ref[s][t]) return;
  for (int i = 0; i < c->depth; i++)
    if (c->stack[i]->t == t) c->stack[i]->removed[s] = 1;
}

static int topic_index(fz_ctx *c, const char *name, size_t len) {
  for (int t = 0; t < NT; t++)
    if (c->lens[t] == len && memcmp(c->names[t], name, len) == 0) return t;
  CHECK(0, "notification for a topic nobody used");
  return -1;
}

static void on_first(void *user, const char *name, size_t len) {
  fz_ctx *c = user;
  int t = topic_index(c, name, len);
  CHECK(!c->live[t], "on_first twice for topic %d", t);
  c->live[t] = 1;
}

static void on_last(void *user, const char *name, size_t len) {
  fz_ctx *c = user;
  int t = topic_index(c, name, len);
  CHECK(c->live[t], "on_last without on_first for topic %d", t);
  c->live[t] = 0;
}

static int ref_count(const fz_ctx *c, int t) {
  int n = 0;
  for (int s = 0; s < NS; s++) n += c->ref[s][t];
  return n;
}

static void do_sub(fz_ctx *c, int s, int t) {
  int rc = ws_topics_subscribe(c->reg, &c->subs[s], c->names[t], c->lens[t]);
  if (c->lens[t] > 256) {
    CHECK(rc == WS_TOPICS_EINVAL, "long name accepted: %d", rc);
    return;
  }
  if (rc == WS_TOPICS_ENOMEM) return; /* unchanged: checked by the next comparison */
  CHECK(rc == !c->ref[s][t], "subscribe(%d,%d) = %d, ref %d", s, t, rc, c->ref[s][t]);
  c->ref[s][t] = 1;
}

static void do_unsub(fz_ctx *c, int s, int t) {
  int rc = ws_topics_unsubscribe(c->reg, &c->subs[s], c->names[t], c->lens[t]);
  CHECK(rc == c->ref[s][t], "unsubscribe(%d,%d) = %d, ref %d", s, t, rc, c->ref[s][t]);
  mark_removed(c, s, t);
  c->ref[s][t] = 0;
}

static void do_unsub_all(fz_ctx *c, int s) {
  int n = 0;
  for (int t = 0; t < NT; t++) {
    n += c->ref[s][t];
    mark_removed(c, s, t);
    c->ref[s][t] = 0;
  }
  size_t rc = ws_topics_unsubscribe_all(c->reg, &c->subs[s]);
  CHECK(rc == (size_t)n, "unsubscribe_all(%d) = %zu, ref %d", s, rc, n);
}


static void do_each(fz_ctx *c, int t);

static int visit(void *arg, void *owner, ws_topics_sub *sub) {
  fz_iter *it = arg;
  fz_ctx *c = it->c;
  int s = (int)((uintptr_t)owner - 1);
  CHECK(s >= 0 && s < NS && sub == &c->subs[s], "bad owner %d", s);
  CHECK(it->initial[s], "joiner %d visited", s);
  CHECK(!it->visited[s], "%d visited twice", s);
  CHECK(c->ref[s][it->t], "%d visited after leaving", s);
  it->visited[s] = 1;
  int o = (int)fz_below(&c->rng, NS), u = (int)fz_below(&c->rng, NT);
  switch (fz_below(&c->rng, 8)) {
  case 0: do_unsub(c, s, it->t); break;
  case 1: do_unsub(c, o, it->t); break;
  case 2: do_unsub_all(c, o); break;
  case 3: do_sub(c, o, u); break;
  case 4: do_sub(c, o, it->t); break;
  case 5: if (c->depth < 3) do_each(c, u); break;
  case 6: it->stopped = 1; return 1;
  default: break;
  }
  return 0;
}

static void do_each(fz_ctx *c, int t) {
  fz_iter it;
  memset(&it, 0, sizeof it);
  it.c = c;
  it.t = t;
  for (int s = 0; s < NS; s++) it.initial[s] = c->ref[s][t];
  c->stack[c->depth++] = &it;
  size_t n = ws_topics_each(c->reg, c->names[t], c->lens[t], visit, &it);
  c->depth--;
  size_t v = 0;
  for (int s = 0; s < NS; s++) {
    v += (size_t)it.visited[s];
    if (!it.stopped && it.initial[s] && !it.removed[s])
      CHECK(it.visited[s], "subscriber %d of topic %d skipped", s, t);
  }
  CHECK(n == v, "each returned %zu, visited %zu", n, v);
}

static void compare(fz_ctx *c) {
  size_t live = 0;
  for (int t = 0; t < NT; t++) {
    int n = ref_count(c, t);
    live += n > 0;
    CHECK(ws_topics_count(c->reg, c->names[t], c->lens[t]) == (size_t)n, "count(%d)", t);
    CHECK(c->live[t] == (n > 0), "notifications for topic %d say %d, count %d", t, c->live[t], n);
    void *out[NS];
    CHECK(ws_topics_collect(c->reg, c->names[t], c->lens[t], out, NS) == (size_t)n, "collect");
    int seen[NS] = {0};
    for (int i = 0; i < n; i++) {
      int s = (int)((uintptr_t)out[i] - 1);
      CHECK(s >= 0 && s < NS && c->ref[s][t] && !seen[s], "collect gave %d", s);
      seen[s] = 1;
    }
    for (int s = 0; s < NS; s++)
      CHECK(ws_topics_is_subscribed(c->reg, &c->subs[s], c->names[t], c->lens[t]) ==
                c->ref[s][t], "is_subscribed(%d,%d)", s, t);
  }
  CHECK(ws_topics_topic_count(c->reg) == live, "topic_count");
  for (int s = 0; s < NS; s++) {
    size_t k = ws_topics_sub_count(&c->subs[s]), want = 0;
    for (int t = 0; t < NT; t++) want += (size_t)c->ref[s][t];
    CHECK(k == want, "sub_count(%d) %zu, ref %zu", s, k, want);
    for (size_t i = 0; i < k; i++) {
      const char *name;
      size_t len;
      CHECK(ws_topics_sub_topic(&c->subs[s], i, &name, &len) == 0, "sub_topic");
      CHECK(c->ref[s][topic_index(c, name, len)], "sub %d lists a topic it lacks", s);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  fz_ctx *c = calloc(1, sizeof *c);
  if (!c) abort();
  fz_rng_seed(&c->rng, data, size);
  static const char *base[NT] = {"a", "b", "room:1", "", "\x00z", ""};
  for (int t = 0; t < NT; t++) {
    c->lens[t] = strlen(base[t]);
    memcpy(c->names[t], base[t], c->lens[t]);
  }
  c->lens[4] = 2;
  memset(c->names[3], 'x', 256), c->lens[3] = 256;
  memset(c->names[5], 'y', 257), c->lens[5] = 257;

  ws_topics_config cfg;
  ws_topics_config_default(&cfg);
  cfg.max_bytes = data[0] < 128 ? 0 : 200 + (size_t)data[0] * 8;
  for (int i = 0; i < 16; i++) cfg.hash_key[i] = (uint8_t)fz_next(&c->rng);
  cfg.on_first = on_first;
  cfg.on_last = on_last;
  cfg.user = c;
  c->reg = ws_topics_new(&cfg);
  CHECK(c->reg, "ws_topics_new failed");
  for (int s = 0; s < NS; s++) ws_topics_sub_init(&c->subs[s], (void *)(uintptr_t)(s + 1));
  size_t empty = ws_topics_memory(c->reg);

  for (size_t i = 1; i < size; i++) {
    int kind = data[i] & 3, s = (data[i] >> 2) & 7, t = (data[i] >> 5) % NT;
    switch (kind) {
    case 0: do_sub(c, s, t); break;
    case 1: do_unsub(c, s, t); break;
    case 2: do_unsub_all(c, s); break;
    default: do_each(c, t); break;
    }
    compare(c);
    if (cfg.max_bytes) CHECK(ws_topics_memory(c->reg) <= cfg.max_bytes, "over max_bytes");
  }
  for (int s = 0; s < NS; s++) do_unsub_all(c, s);
  compare(c);
  CHECK(ws_topics_memory(c->reg) == empty, "memory %zu after everything left, empty %zu",
        ws_topics_memory(c->reg), empty);
  CHECK(ws_topics_allocations(c->reg) == 2, "allocations %zu", ws_topics_allocations(c->reg));
  ws_topics_free(c->reg);
  free(c);
  return 0;
}
