/* redisseq.c - per (origin, channel) sequence tables (see redisseq.h).
 *
 * Two open-addressing tables (linear probing, load <= 1/2, deletion by
 * backward shift), keyed by the topic's bytes under a keyed SipHash. */
#include "redisseq.h"

#include <stdlib.h>
#include <string.h>

#include "topics.h"

typedef struct rseq_origin {
  uint8_t id[WS_REDIS_ORIGIN_LEN];
  uint32_t epoch;
  uint64_t last;
} rseq_origin;

typedef struct rseq_entry {
  char *key;            /* NULL: empty slot */
  uint32_t klen;
  uint32_t epoch;       /* publisher: epoch of seq */
  uint64_t hash;
  uint64_t seq;         /* publisher: last seq given */
  rseq_origin *orig;    /* receiver: the origins of this topic */
  uint32_t n, cap;
} rseq_entry;

typedef struct rseq_map {
  rseq_entry *slot;
  size_t cap, count;  /* cap: a power of two */
} rseq_map;

struct ws_rseq {
  uint8_t key[16];
  uint32_t max_pub, max_origins;
  uint32_t epoch;
  rseq_map pub, recv;
  ws_rseq_stats st;
};

static uint64_t rseq_hash(const ws_rseq *s, const char *k, size_t n) {
  return ws_topics_siphash(s->key, k, n);
}

static void entry_free(rseq_entry *e) {
  free(e->key);
  free(e->orig);
  memset(e, 0, sizeof *e);
}

static rseq_entry *map_find(const rseq_map *m, uint64_t h, const char *k, size_t n) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    rseq_entry *e = &m->slot[i];
    if (!e->key) return NULL;
    if (e->hash == h && e->klen == n && memcmp(e->key, k, n) == 0) return e;
  }
}

static int map_grow(rseq_map *m) {
  size_t ncap = m->cap ? m->cap * 2 : 16;
  rseq_entry *ns = calloc(ncap, sizeof *ns);
  if (!ns) return -1;
  for (size_t i = 0; i < m->cap; i++) {
    rseq_entry *e = &m->slot[i];
    if (!e->key) continue;
    size_t j = e->hash & (ncap - 1);
    while (ns[j].key) j = (j + 1) & (ncap - 1);
    ns[j] = *e;
  }
  free(m->slot);
  m->slot = ns;
  m->cap = ncap;
  return 0;
}

/* A new entry for k (not present). NULL on no memory. */
static rseq_entry *map_add(rseq_map *m, uint64_t h, const char *k, size_t n) {
  if ((m->count + 1) * 2 > m->cap && map_grow(m)) return NULL;
  char *key = malloc(n ? n : 1);
  if (!key) return NULL;
  memcpy(key, k, n);
  size_t mask = m->cap - 1, i = h & mask;
  while (m->slot[i].key) i = (i + 1) & mask;
  rseq_entry *e = &m->slot[i];
  memset(e, 0, sizeof *e);
  e->key = key;
  e->klen = (uint32_t)n;
  e->hash = h;
  m->count++;
  return e;
}

static void map_del(rseq_map *m, rseq_entry *e) {
  size_t mask = m->cap - 1, i = (size_t)(e - m->slot);
  entry_free(e);
  m->count--;
  for (size_t j = (i + 1) & mask; m->slot[j].key; j = (j + 1) & mask) {
    size_t home = m->slot[j].hash & mask;
    /* move j into the hole i unless its home lies cyclically in (i, j] */
    int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays) continue;
    m->slot[i] = m->slot[j];
    memset(&m->slot[j], 0, sizeof m->slot[j]);
    i = j;
  }
}

static void map_clear(rseq_map *m) {
  for (size_t i = 0; i < m->cap; i++)
    if (m->slot[i].key) entry_free(&m->slot[i]);
  free(m->slot);
  m->slot = NULL;
  m->cap = m->count = 0;
}

ws_rseq *ws_rseq_new(const uint8_t hash_key[16], uint32_t max_pub_topics,
                     uint32_t max_origins) {
  if (max_pub_topics < 1 || max_origins < 1) return NULL;
  ws_rseq *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  memcpy(s->key, hash_key, sizeof s->key);
  s->max_pub = max_pub_topics;
  s->max_origins = max_origins;
  s->epoch = 1;
  return s;
}

void ws_rseq_free(ws_rseq *s) {
  if (!s) return;
  map_clear(&s->pub);
  map_clear(&s->recv);
  free(s);
}

int ws_rseq_next(ws_rseq *s, const char *topic, size_t len, uint32_t *epoch, uint64_t *seq) {
  uint64_t h = rseq_hash(s, topic, len);
  rseq_entry *e = map_find(&s->pub, h, topic, len);
  if (!e) {
    if (s->pub.count >= s->max_pub) {
      map_clear(&s->pub);
      s->epoch++;
      s->st.resets++;
    }
    e = map_add(&s->pub, h, topic, len);
    if (!e) return WS_RSEQ_ENOMEM;
    e->epoch = s->epoch;
  }
  *epoch = e->epoch;
  *seq = ++e->seq;
  return WS_RSEQ_NEXT;
}

int ws_rseq_track(ws_rseq *s, const char *topic, size_t len,
                  const uint8_t origin[WS_REDIS_ORIGIN_LEN], uint32_t epoch, uint64_t seq,
                  uint64_t *lost) {
  *lost = 0;
  uint64_t h = rseq_hash(s, topic, len);
  rseq_entry *e = map_find(&s->recv, h, topic, len);
  if (!e && !(e = map_add(&s->recv, h, topic, len))) return WS_RSEQ_ENOMEM;
  for (uint32_t i = 0; i < e->n; i++) {
    rseq_origin *o = &e->orig[i];
    if (memcmp(o->id, origin, WS_REDIS_ORIGIN_LEN) != 0) continue;
    if (epoch == o->epoch && seq > o->last) {
      *lost = seq - o->last - 1;
    } else if (epoch > o->epoch) {
      *lost = seq - 1; /* the new epoch's first seq numbers */
    } else {
      return WS_RSEQ_STALE;
    }
    o->epoch = epoch;
    o->last = seq;
    return WS_RSEQ_NEXT;
  }
  if (e->n >= s->max_origins) {
    s->st.forgotten++;
    s->st.streams -= e->n;
    e->n = 0;
  }
  if (e->n == e->cap) {
    uint32_t ncap = e->cap ? e->cap * 2 : 2;
    if (ncap > s->max_origins) ncap = s->max_origins;
    rseq_origin *no = realloc(e->orig, (size_t)ncap * sizeof *no);
    if (!no) return WS_RSEQ_ENOMEM;
    e->orig = no;
    e->cap = ncap;
  }
  rseq_origin *o = &e->orig[e->n++];
  memcpy(o->id, origin, WS_REDIS_ORIGIN_LEN);
  o->epoch = epoch;
  o->last = seq;
  s->st.streams++;
  return WS_RSEQ_FIRST;
}

int ws_rseq_forget(ws_rseq *s, const char *topic, size_t len) {
  rseq_entry *e = map_find(&s->recv, rseq_hash(s, topic, len), topic, len);
  if (!e) return 0;
  s->st.streams -= e->n;
  map_del(&s->recv, e);
  return 1;
}

void ws_rseq_retain(ws_rseq *s, int (*keep)(void *arg, const char *topic, size_t len),
                    void *arg) {
  for (size_t i = 0; i < s->recv.cap;) {
    rseq_entry *e = &s->recv.slot[i];
    if (e->key && !keep(arg, e->key, e->klen)) {
      s->st.streams -= e->n;
      map_del(&s->recv, e); /* may shift a later entry into i: look at i again */
      continue;
    }
    i++;
  }
}

void ws_rseq_get_stats(const ws_rseq *s, ws_rseq_stats *out) {
  *out = s->st;
  out->pub_topics = s->pub.count;
  size_t mem = sizeof *s + (s->pub.cap + s->recv.cap) * sizeof(rseq_entry);
  for (size_t i = 0; i < s->pub.cap; i++)
    if (s->pub.slot[i].key) mem += s->pub.slot[i].klen;
  for (size_t i = 0; i < s->recv.cap; i++)
    if (s->recv.slot[i].key)
      mem += s->recv.slot[i].klen + (size_t)s->recv.slot[i].cap * sizeof(rseq_origin);
  out->memory = mem;
}
