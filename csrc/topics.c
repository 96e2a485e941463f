/* topics.c - topic registry (see topics.h for the contract). */
#include "topics.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static_assert(sizeof(void *) != 8 || sizeof(ws_topics_sub) == 40,
              "ws_topics_sub is 40 bytes on LP64 (topics.h says so)");
static_assert(sizeof(void *) != 8 || sizeof(ws_topics_item) == 16, "16-byte items");

/* One subscription as its topic sees it; sub == NULL is a tombstone left by
 * a removal during an iteration of the topic. */
typedef struct ws_topics_entry {
  ws_topics_sub *sub;
  uint32_t pos;  /* index of the matching item in sub's array */
  uint32_t pad_;
} ws_topics_entry;

struct ws_topic {
  uint64_t hash;
  ws_topics_entry *subs;
  uint32_t count;  /* live subscribers */
  uint32_t used;   /* entries in subs[], tombstones included */
  uint32_t cap;    /* entries allocated */
  uint32_t depth;  /* iterations of this topic in progress */
  uint32_t tombs;  /* tombstones among the used entries */
  uint32_t len;
  char name[];
};

struct ws_topics {
  ws_topics_config cfg;
  ws_topic **table;  /* open addressing, linear probing, NULL = empty */
  size_t table_cap;  /* power of two */
  size_t ntopics;    /* topics in the table (live or being iterated) */
  size_t live;       /* topics with count > 0 */
  size_t bytes;      /* allocated now, requested sizes */
  size_t allocs;     /* live allocations */
};

#define TABLE_MIN 16

/* ---- accounted allocation ------------------------------------------------ */

static void *t_alloc(ws_topics *t, size_t n) {
  if (t->cfg.max_bytes && t->bytes + n > t->cfg.max_bytes) return NULL;
  void *p = malloc(n);
  if (p) {
    t->bytes += n;
    t->allocs++;
  }
  return p;
}

/* Resizes p (old bytes) to n bytes; NULL on failure with p unchanged. */
static void *t_realloc(ws_topics *t, void *p, size_t old, size_t n) {
  if (n > old && t->cfg.max_bytes && t->bytes + (n - old) > t->cfg.max_bytes) return NULL;
  void *q = realloc(p, n);
  if (q) {
    t->bytes = t->bytes - old + n;
    if (!p) t->allocs++;
  }
  return q;
}

static void t_free(ws_topics *t, void *p, size_t n) {
  if (!p) return;
  free(p);
  t->bytes -= n;
  t->allocs--;
}

/* ---- SipHash-1-3 ---------------------------------------------------------- */

static inline uint64_t rotl64(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static inline uint64_t load64le(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

#define SIPROUND                                                             \
  do {                                                                       \
    v0 += v1; v1 = rotl64(v1, 13); v1 ^= v0; v0 = rotl64(v0, 32);            \
    v2 += v3; v3 = rotl64(v3, 16); v3 ^= v2;                                 \
    v0 += v3; v3 = rotl64(v3, 21); v3 ^= v0;                                 \
    v2 += v1; v1 = rotl64(v1, 17); v1 ^= v2; v2 = rotl64(v2, 32);            \
  } while (0)

uint64_t ws_topics_siphash(const uint8_t key[16], const void *data, size_t len) {
  const uint8_t *p = data;
  uint64_t k0 = load64le(key), k1 = load64le(key + 8);
  uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
  size_t whole = len & ~(size_t)7;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = load64le(p + i);
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < (len & 7); i++) b |= (uint64_t)p[whole + i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the topic table ------------------------------------------------------ */

static size_t slot_of(const ws_topics *t, uint64_t h) { return (size_t)h & (t->table_cap - 1); }

static ws_topic *find(const ws_topics *t, const char *name, size_t len, uint64_t h) {
  for (size_t i = slot_of(t, h);; i = (i + 1) & (t->table_cap - 1)) {
    ws_topic *tp = t->table[i];
    if (!tp) return NULL;
    if (tp->hash == h && tp->len == len && memcmp(tp->name, name, len) == 0) return tp;
  }
}

static void table_put(ws_topic **table, size_t cap, ws_topic *tp) {
  size_t i = (size_t)tp->hash & (cap - 1);
  while (table[i]) i = (i + 1) & (cap - 1);
  table[i] = tp;
}

/* Rehashes into ncap slots; returns 0 or WS_TOPICS_ENOMEM (table unchanged). */
static int table_resize(ws_topics *t, size_t ncap) {
  ws_topic **nt = t_alloc(t, ncap * sizeof *nt);
  if (!nt) return WS_TOPICS_ENOMEM;
  memset(nt, 0, ncap * sizeof *nt);
  for (size_t i = 0; i < t->table_cap; i++)
    if (t->table[i]) table_put(nt, ncap, t->table[i]);
  t_free(t, t->table, t->table_cap * sizeof *t->table);
  t->table = nt;
  t->table_cap = ncap;
  return 0;
}

/* Removes tp from the table (backward-shift deletion: no tombstones). */
static void table_remove(ws_topics *t, ws_topic *tp) {
  size_t mask = t->table_cap - 1, i = slot_of(t, tp->hash);
  while (t->table[i] != tp) i = (i + 1) & mask;
  t->table[i] = NULL;
  for (size_t j = (i + 1) & mask; t->table[j]; j = (j + 1) & mask) {
    size_t home = slot_of(t, t->table[j]->hash);
    /* Move j back into the hole i if its home is not in (i, j]. */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      t->table[i] = t->table[j];
      t->table[j] = NULL;
      i = j;
    }
  }
  t->ntopics--;
  /* Give memory back when a quarter... an eighth full (the shrink may fail: harmless). */
  if (t->table_cap > TABLE_MIN && t->ntopics < t->table_cap / 8)
    (void)table_resize(t, t->table_cap / 2);
}

static void topic_destroy(ws_topics *t, ws_topic *tp) {
  table_remove(t, tp);
  t_free(t, tp->subs, (size_t)tp->cap * sizeof *tp->subs);
  t_free(t, tp, sizeof *tp + tp->len);
}

/* ---- arrays --------------------------------------------------------------- */

static inline ws_topics_item *items_of(ws_topics_sub *s) { return s->cap > 1 ? s->heap : &s->one; }
static inline const ws_topics_item *citems_of(const ws_topics_sub *s) {
  return s->cap > 1 ? s->heap : &s->one;
}

static uint32_t grown(uint32_t cap) { return cap + cap / 2 + 1; }

/* Room for one more item in s. */
static int sub_reserve(ws_topics *t, ws_topics_sub *s) {
  if (s->count < s->cap) return 0;
  if (s->cap >= UINT32_MAX / 2) return WS_TOPICS_ENOMEM;
  uint32_t ncap = grown(s->cap);
  if (s->cap <= 1) {
    ws_topics_item *h = t_alloc(t, (size_t)ncap * sizeof *h);
    if (!h) return WS_TOPICS_ENOMEM;
    if (s->count) h[0] = s->one;
    s->heap = h;
  } else {
    ws_topics_item *h = t_realloc(t, s->heap, (size_t)s->cap * sizeof *h, (size_t)ncap * sizeof *h);
    if (!h) return WS_TOPICS_ENOMEM;
    s->heap = h;
  }
  s->cap = ncap;
  return 0;
}

static void sub_shrink(ws_topics *t, ws_topics_sub *s) {
  if (s->cap <= 1 || s->count > s->cap / 4) return;
  if (s->count <= 1) {
    if (s->count) s->one = s->heap[0];
    t_free(t, s->heap, (size_t)s->cap * sizeof *s->heap);
    s->heap = NULL;
    s->cap = 1;
    return;
  }
  uint32_t ncap = s->cap / 2;
  ws_topics_item *h = t_realloc(t, s->heap, (size_t)s->cap * sizeof *h, (size_t)ncap * sizeof *h);
  if (h) {
    s->heap = h;
    s->cap = ncap;
  }
}

static int topic_reserve(ws_topics *t, ws_topic *tp) {
  if (tp->used < tp->cap) return 0;
  if (tp->cap >= UINT32_MAX / 2) return WS_TOPICS_ENOMEM;
  uint32_t ncap = tp->cap < 2 ? 2 : grown(tp->cap);
  ws_topics_entry *e =
      t_realloc(t, tp->subs, (size_t)tp->cap * sizeof *e, (size_t)ncap * sizeof *e);
  if (!e) return WS_TOPICS_ENOMEM;
  tp->subs = e;
  tp->cap = ncap;
  return 0;
}

static void topic_shrink(ws_topics *t, ws_topic *tp) {
  if (tp->used == 0) {
    t_free(t, tp->subs, (size_t)tp->cap * sizeof *tp->subs);
    tp->subs = NULL;
    tp->cap = 0;
    return;
  }
  if (tp->cap < 8 || tp->used > tp->cap / 4) return;
  uint32_t ncap = tp->cap / 2;
  ws_topics_entry *e =
      t_realloc(t, tp->subs, (size_t)tp->cap * sizeof *e, (size_t)ncap * sizeof *e);
  if (e) {
    tp->subs = e;
    tp->cap = ncap;
  }
}

/* Sweeps tombstones (outermost iteration over), then frees an empty topic. */
static void topic_settle(ws_topics *t, ws_topic *tp) {
  if (tp->tombs) {
    uint32_t i = 0;
    while (i < tp->used) {
      if (tp->subs[i].sub) {
        i++;
        continue;
      }
      tp->subs[i] = tp->subs[--tp->used];
      if (i < tp->used && tp->subs[i].sub) items_of(tp->subs[i].sub)[tp->subs[i].pos].pos = i;
    }
    tp->tombs = 0;
  }
  if (tp->count == 0) {
    topic_destroy(t, tp);
    return;
  }
  topic_shrink(t, tp);
}

/* ---- public --------------------------------------------------------------- */

void ws_topics_config_default(ws_topics_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->max_topic_len = 256;
}

ws_topics *ws_topics_new(const ws_topics_config *cfg) {
  if (!cfg || cfg->max_topic_len < 1 || cfg->max_topic_len > 65535) return NULL;
  size_t need = sizeof(ws_topics) + TABLE_MIN * sizeof(ws_topic *);
  if (cfg->max_bytes && cfg->max_bytes < need) return NULL;
  ws_topics *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->cfg = *cfg;
  t->bytes = sizeof *t;
  t->allocs = 1;
  t->table = t_alloc(t, TABLE_MIN * sizeof *t->table);
  if (!t->table) {
    free(t);
    return NULL;
  }
  memset(t->table, 0, TABLE_MIN * sizeof *t->table);
  t->table_cap = TABLE_MIN;
  return t;
}

void ws_topics_free(ws_topics *t) {
  if (!t) return;
  for (size_t i = 0; i < t->table_cap; i++) {
    ws_topic *tp = t->table[i];
    if (!tp) continue;
    for (uint32_t k = 0; k < tp->used; k++) {
      ws_topics_sub *s = tp->subs[k].sub;
      if (!s) continue;
      if (s->cap > 1) t_free(t, s->heap, (size_t)s->cap * sizeof *s->heap);
      s->heap = NULL;
      s->cap = 1;
      s->count = 0;
    }
    t_free(t, tp->subs, (size_t)tp->cap * sizeof *tp->subs);
    t_free(t, tp, sizeof *tp + tp->len);
  }
  t_free(t, t->table, t->table_cap * sizeof *t->table);
  free(t);
}

void ws_topics_sub_init(ws_topics_sub *s, void *owner) {
  memset(s, 0, sizeof *s);
  s->owner = owner;
  s->cap = 1;
}

/* Index of topic tp in s's items, or -1; scans the shorter side. */
static int64_t find_pair(const ws_topic *tp, const ws_topics_sub *s) {
  const ws_topics_item *it = citems_of(s);
  if (s->count <= tp->used) {
    for (uint32_t j = 0; j < s->count; j++)
      if (it[j].topic == tp) return j;
    return -1;
  }
  for (uint32_t i = 0; i < tp->used; i++)
    if (tp->subs[i].sub == s) return tp->subs[i].pos;
  return -1;
}

static int check_name(const ws_topics *t, const char *name, size_t len) {
  return (len >= 1 && len <= t->cfg.max_topic_len && name) ? 0 : WS_TOPICS_EINVAL;
}

int ws_topics_subscribe(ws_topics *t, ws_topics_sub *s, const char *name, size_t len) {
  int rc = check_name(t, name, len);
  if (rc) return rc;
  uint64_t h = ws_topics_siphash(t->cfg.hash_key, name, len);
  ws_topic *tp = find(t, name, len, h);
  int created = 0;
  if (tp) {
    if (find_pair(tp, s) >= 0) return 0;
  } else {
    if ((t->ntopics + 1) * 4 > t->table_cap * 3 && table_resize(t, t->table_cap * 2))
      return WS_TOPICS_ENOMEM;
    tp = t_alloc(t, sizeof *tp + len);
    if (!tp) return WS_TOPICS_ENOMEM;
    memset(tp, 0, sizeof *tp);
    tp->hash = h;
    tp->len = (uint32_t)len;
    memcpy(tp->name, name, len);
    table_put(t->table, t->table_cap, tp);
    t->ntopics++;
    created = 1;
  }
  if (topic_reserve(t, tp) || sub_reserve(t, s)) {
    if (created) topic_destroy(t, tp);
    return WS_TOPICS_ENOMEM;
  }
  ws_topics_item *it = items_of(s);
  it[s->count] = (ws_topics_item){.topic = tp, .pos = tp->used};
  tp->subs[tp->used] = (ws_topics_entry){.sub = s, .pos = s->count};
  tp->used++;
  s->count++;
  if (++tp->count == 1) {
    t->live++;
    if (t->cfg.on_first) t->cfg.on_first(t->cfg.user, tp->name, tp->len);
  }
  return 1;
}

/* Drops the j-th subscription of s. */
static void remove_at(ws_topics *t, ws_topics_sub *s, uint32_t j) {
  ws_topics_item *it = items_of(s);
  ws_topic *tp = it[j].topic;
  uint32_t i = it[j].pos;
  /* Subscriber side: the last item fills the hole. */
  uint32_t last = s->count - 1;
  if (j != last) {
    it[j] = it[last];
    it[j].topic->subs[it[j].pos].pos = j;
  }
  s->count--;
  sub_shrink(t, s);
  /* Topic side: a tombstone while iterated, else the last entry fills the hole. */
  if (tp->depth) {
    tp->subs[i].sub = NULL;
    tp->tombs++;
  } else {
    uint32_t tl = tp->used - 1;
    if (i != tl) {
      tp->subs[i] = tp->subs[tl];
      items_of(tp->subs[i].sub)[tp->subs[i].pos].pos = i;
    }
    tp->used--;
  }
  if (--tp->count == 0) {
    t->live--;
    if (t->cfg.on_last) t->cfg.on_last(t->cfg.user, tp->name, tp->len);
  }
  if (tp->depth == 0) {
    if (tp->count == 0)
      topic_destroy(t, tp);
    else
      topic_shrink(t, tp);
  }
}

int ws_topics_unsubscribe(ws_topics *t, ws_topics_sub *s, const char *name, size_t len) {
  if (check_name(t, name, len)) return 0;
  ws_topic *tp = find(t, name, len, ws_topics_siphash(t->cfg.hash_key, name, len));
  if (!tp) return 0;
  int64_t j = find_pair(tp, s);
  if (j < 0) return 0;
  remove_at(t, s, (uint32_t)j);
  return 1;
}

size_t ws_topics_unsubscribe_all(ws_topics *t, ws_topics_sub *s) {
  size_t n = 0;
  while (s->count) {
    remove_at(t, s, s->count - 1);
    n++;
  }
  return n;
}

static const ws_topic *lookup(const ws_topics *t, const char *name, size_t len) {
  if (check_name(t, name, len)) return NULL;
  return find(t, name, len, ws_topics_siphash(t->cfg.hash_key, name, len));
}

size_t ws_topics_count(const ws_topics *t, const char *name, size_t len) {
  const ws_topic *tp = lookup(t, name, len);
  return tp ? tp->count : 0;
}

int ws_topics_is_subscribed(const ws_topics *t, const ws_topics_sub *s, const char *name,
                            size_t len) {
  const ws_topic *tp = lookup(t, name, len);
  return tp && find_pair(tp, s) >= 0;
}

size_t ws_topics_topic_count(const ws_topics *t) { return t->live; }

size_t ws_topics_collect(const ws_topics *t, const char *name, size_t len, void **out,
                         size_t cap) {
  const ws_topic *tp = lookup(t, name, len);
  if (!tp) return 0;
  size_t n = 0;
  for (uint32_t i = 0; i < tp->used && n < cap; i++)
    if (tp->subs[i].sub) out[n++] = tp->subs[i].sub->owner;
  return tp->count;
}

size_t ws_topics_each(ws_topics *t, const char *name, size_t len, ws_topics_visit_fn fn,
                      void *arg) {
  ws_topic *tp = (ws_topic *)lookup(t, name, len);
  if (!tp) return 0;
  size_t visited = 0;
  uint32_t n = tp->used;  /* joiners land past n and are not visited */
  tp->depth++;
  for (uint32_t i = 0; i < n; i++) {
    ws_topics_sub *s = tp->subs[i].sub;  /* re-read: fn may have grown the array */
    if (!s) continue;
    visited++;
    if (fn(arg, s->owner, s)) break;
  }
  if (--tp->depth == 0) topic_settle(t, tp);
  return visited;
}

size_t ws_topics_sub_count(const ws_topics_sub *s) { return s->count; }

int ws_topics_sub_topic(const ws_topics_sub *s, size_t i, const char **name, size_t *len) {
  if (i >= s->count) return WS_TOPICS_EINVAL;
  const ws_topic *tp = citems_of(s)[i].topic;
  *name = tp->name;
  *len = tp->len;
  return 0;
}

size_t ws_topics_memory(const ws_topics *t) { return t->bytes; }
size_t ws_topics_allocations(const ws_topics *t) { return t->allocs; }

const char *ws_topics_strerror(int err) {
  switch (err) {
  case WS_TOPICS_OK: return "ok";
  case WS_TOPICS_ENOMEM: return "out of memory (or the registry's max_bytes reached)";
  case WS_TOPICS_EINVAL: return "topic name empty or longer than max_topic_len";
  default: return "unknown topics error";
  }
}
