/* httpfields.c - the header fields of one HTTP head (see httpfields.h). */
#include "httpfields.h"

#include <stdlib.h>
#include <string.h>

enum ws_fields_last { WS_FIELDS_LAST_NONE = 0, WS_FIELDS_LAST_NAME, WS_FIELDS_LAST_VALUE };

void ws_fields_init(ws_fields *f, uint32_t max_bytes, uint32_t max_fields,
                    uint32_t initial_buf, uint32_t initial_spans) {
  memset(f, 0, sizeof *f);
  f->max_bytes = max_bytes;
  f->max_fields = max_fields;
  f->initial_buf = initial_buf ? initial_buf : 1;
  f->initial_spans = initial_spans ? initial_spans : 1;
}

void ws_fields_free(ws_fields *f) {
  free(f->buf);
  free(f->spans);
  f->buf = NULL;
  f->spans = NULL;
  f->len = f->cap = f->n = f->spans_cap = 0;
}

void ws_fields_clear(ws_fields *f) {
  f->len = 0;
  f->n = 0;
  f->last = WS_FIELDS_LAST_NONE;
}

/* ---- collecting ------------------------------------------------------------ */

int ws_fields_reserve(ws_fields *f, size_t extra) {
  if (extra > (size_t)(f->max_bytes - f->len))
    return WS_FIELDS_TOO_LARGE;
  uint32_t need = f->len + (uint32_t)extra;
  if (need <= f->cap)
    return WS_FIELDS_OK;
  uint64_t cap = f->cap ? f->cap : f->initial_buf;
  while (cap < need)
    cap *= 2;
  if (cap > f->max_bytes)
    cap = f->max_bytes;
  char *nb = realloc(f->buf, (size_t)cap);
  if (nb == NULL)
    return WS_FIELDS_NOMEM;
  f->buf = nb;
  f->cap = (uint32_t)cap;
  return WS_FIELDS_OK;
}

int ws_fields_append(ws_fields *f, const char *data, size_t len) {
  int rc = ws_fields_reserve(f, len);
  if (rc != WS_FIELDS_OK)
    return rc;
  if (len > 0)
    memcpy(f->buf + f->len, data, len);
  f->len += (uint32_t)len;
  return WS_FIELDS_OK;
}

int ws_fields_in_name(const ws_fields *f) { return f->last == WS_FIELDS_LAST_NAME; }

int ws_fields_name(ws_fields *f, const char *at, size_t len) {
  if (f->last != WS_FIELDS_LAST_NAME) { /* a new field starts */
    if (f->n >= f->max_fields)
      return WS_FIELDS_TOO_MANY;
    if (f->n == f->spans_cap) {
      uint32_t cap = f->spans_cap ? f->spans_cap * 2 : f->initial_spans;
      if (cap > f->max_fields)
        cap = f->max_fields;
      ws_header_span *ns = realloc(f->spans, (size_t)cap * sizeof *ns);
      if (ns == NULL)
        return WS_FIELDS_NOMEM;
      f->spans = ns;
      f->spans_cap = cap;
    }
    ws_header_span *s = &f->spans[f->n++];
    s->name_off = f->len;
    s->name_len = 0;
    s->value_off = 0;
    s->value_len = 0;
    f->last = WS_FIELDS_LAST_NAME;
  }
  int rc = ws_fields_append(f, at, len);
  if (rc != WS_FIELDS_OK)
    return rc;
  f->spans[f->n - 1].name_len += (uint32_t)len;
  return WS_FIELDS_OK;
}

int ws_fields_value(ws_fields *f, const char *at, size_t len) {
  if (f->n == 0) /* http-parser never sends a value before a name */
    return WS_FIELDS_NO_NAME;
  if (f->last != WS_FIELDS_LAST_VALUE) {
    f->spans[f->n - 1].value_off = f->len;
    f->last = WS_FIELDS_LAST_VALUE;
  }
  return ws_fields_append(f, at, len);
}

ws_header_span *ws_fields_end(ws_fields *f) {
  if (f->n == 0 || f->last == WS_FIELDS_LAST_NONE)
    return NULL;
  ws_header_span *s = &f->spans[f->n - 1];
  if (f->last == WS_FIELDS_LAST_NAME) /* a name with no value piece */
    s->value_off = f->len;
  s->value_len = f->len - s->value_off;
  ws_fields_trim(f->buf, &s->value_off, &s->value_len);
  f->last = WS_FIELDS_LAST_NONE;
  return s;
}

/* ---- bytes ----------------------------------------------------------------- */

int ws_fields_is_ws(char c) { return c == ' ' || c == '\t'; }

void ws_fields_trim(const char *buf, uint32_t *off, uint32_t *len) {
  uint32_t o = *off, n = *len;
  while (n > 0 && ws_fields_is_ws(buf[o])) {
    o++;
    n--;
  }
  while (n > 0 && ws_fields_is_ws(buf[o + n - 1]))
    n--;
  *off = o;
  *len = n;
}

static char ws_fields_lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

int ws_fields_ieq(const char *a, size_t alen, const char *b, size_t blen) {
  if (alen != blen)
    return 0;
  for (size_t i = 0; i < alen; i++)
    if (ws_fields_lower(a[i]) != ws_fields_lower(b[i]))
      return 0;
  return 1;
}

/* ---- lookups --------------------------------------------------------------- */

static int ws_fields_named(const ws_fields *f, const ws_header_span *s, const char *name,
                           size_t name_len) {
  return ws_fields_ieq(f->buf + s->name_off, s->name_len, name, name_len);
}

uint32_t ws_fields_find(const ws_fields *f, const char *name, size_t name_len,
                        const ws_header_span **first) {
  uint32_t n = 0;
  *first = NULL;
  for (uint32_t i = 0; i < f->n; i++)
    if (ws_fields_named(f, &f->spans[i], name, name_len) && n++ == 0)
      *first = &f->spans[i];
  return n;
}

const char *ws_fields_next(const ws_fields *f, const char *name, size_t name_len,
                           size_t *pos, size_t *value_len) {
  *value_len = 0;
  for (size_t i = *pos; i < f->n; i++) {
    const ws_header_span *s = &f->spans[i];
    if (ws_fields_named(f, s, name, name_len)) {
      *pos = i + 1;
      *value_len = s->value_len;
      return f->buf + s->value_off;
    }
  }
  *pos = f->n;
  return NULL;
}

int ws_fields_each_elem(const ws_fields *f, const char *name, size_t name_len,
                        ws_fields_elem_fn fn, void *ctx) {
  for (uint32_t i = 0; i < f->n; i++) {
    const ws_header_span *s = &f->spans[i];
    if (!ws_fields_named(f, s, name, name_len))
      continue;
    const char *v = f->buf + s->value_off;
    size_t len = s->value_len, j = 0;
    while (j <= len) {
      size_t start = j;
      while (j < len && v[j] != ',')
        j++;
      size_t end = j;
      while (start < end && ws_fields_is_ws(v[start]))
        start++;
      while (end > start && ws_fields_is_ws(v[end - 1]))
        end--;
      if (end > start) {
        int rc = fn(ctx, v + start, end - start);
        if (rc != 0)
          return rc;
      }
      j++; /* past the comma (or the end) */
    }
  }
  return 0;
}

typedef struct ws_fields_token {
  const char *token;
  size_t len;
} ws_fields_token;

static int ws_fields_is_token_elem(void *ctx, const char *e, size_t n) {
  const ws_fields_token *t = ctx;
  return ws_fields_ieq(e, n, t->token, t->len);
}

int ws_fields_any_has(const ws_fields *f, const char *name, size_t name_len,
                      const char *token, size_t tlen) {
  ws_fields_token t = {token, tlen};
  return ws_fields_each_elem(f, name, name_len, ws_fields_is_token_elem, &t);
}
