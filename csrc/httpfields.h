/* httpfields.h - the header fields of one HTTP head, collected as they arrive.
 *
 * http-parser hands a head's field names and values over in pieces (a field
 * can be split across reads and across callbacks). A ws_fields copies them
 * into one owned buffer and keeps one span per field, with a byte limit and
 * a field-count limit enforced where the bytes arrive. Both opening
 * handshakes use it: the server's for the upgrade request (handshake.c) and
 * the client's for the 101 (clienths.c); each keeps its own checks of what a
 * field must look like and its own failure codes. Also here: the
 * case-insensitive lookups both do on a complete head (RFC 7230 3.2, 7).
 */
#ifndef WS_HTTPFIELDS_H
#define WS_HTTPFIELDS_H

#include <stddef.h>
#include <stdint.h>

/* A header field as spans into the buffer (not NUL-terminated). */
typedef struct ws_header_span {
  uint32_t name_off, name_len;
  uint32_t value_off, value_len;   /* value with surrounding whitespace trimmed */
} ws_header_span;

/* What a collecting call can fail with (0 is success). */
enum ws_fields_err {
  WS_FIELDS_OK = 0,
  WS_FIELDS_TOO_LARGE = -1,  /* the buffer would pass max_bytes */
  WS_FIELDS_TOO_MANY = -2,   /* a field past max_fields */
  WS_FIELDS_NOMEM = -3,
  WS_FIELDS_NO_NAME = -4     /* a value with no field name before it */
};

typedef struct ws_fields {
  char *buf;                 /* owned: whatever the caller stores, then names and values */
  uint32_t len, cap;
  ws_header_span *spans;     /* owned: one per field */
  uint32_t n, spans_cap;
  uint32_t max_bytes;        /* the buffer never grows past this */
  uint32_t max_fields;
  uint32_t initial_buf;      /* first allocation sizes */
  uint32_t initial_spans;
  uint8_t last;              /* which piece came last: none, a name, a value */
} ws_fields;

/* An empty collector (nothing allocated until the first byte). */
void ws_fields_init(ws_fields *f, uint32_t max_bytes, uint32_t max_fields,
                    uint32_t initial_buf, uint32_t initial_spans);
void ws_fields_free(ws_fields *f);
/* Forgets what was collected (the allocations stay, for the next head). */
void ws_fields_clear(ws_fields *f);

/* Makes room for extra more bytes (within max_bytes). */
int ws_fields_reserve(ws_fields *f, size_t extra);
/* Appends bytes to the buffer (a request target, a reason phrase, ...). */
int ws_fields_append(ws_fields *f, const char *data, size_t len);

/* Whether the last piece was part of a field name: the next name piece
 * continues it, anything else first needs ws_fields_end(). */
int ws_fields_in_name(const ws_fields *f);
/* A piece of a field name; after a value (or at the start) it begins a new
 * field, so the caller calls ws_fields_end() before unless in a name. */
int ws_fields_name(ws_fields *f, const char *at, size_t len);
/* A piece of the current field's value. */
int ws_fields_value(ws_fields *f, const char *at, size_t len);
/* Closes the field being collected: its value ends at the buffer's end and
 * is trimmed of SP/HTAB; the name is left as it came, for the caller's own
 * check. Returns that field, or NULL when none was open. */
ws_header_span *ws_fields_end(ws_fields *f);

/* SP or HTAB (RFC 7230 3.2.3 OWS). */
int ws_fields_is_ws(char c);
/* Trims SP/HTAB around [*off, *off + *len) of buf. */
void ws_fields_trim(const char *buf, uint32_t *off, uint32_t *len);
/* ASCII case-insensitive equality of two byte strings. */
int ws_fields_ieq(const char *a, size_t alen, const char *b, size_t blen);

/* Number of fields named name; *first gets the first one (or NULL). */
uint32_t ws_fields_find(const ws_fields *f, const char *name, size_t name_len,
                        const ws_header_span **first);
/* The value of the next field named name at or after *pos (then *pos moves
 * past it), or NULL with *pos at the end. */
const char *ws_fields_next(const ws_fields *f, const char *name, size_t name_len,
                           size_t *pos, size_t *value_len);
/* Calls fn for each non-empty element of the comma-separated lists in every
 * field named name (repeated fields are one list, RFC 7230 3.2.2; empty
 * elements are ignored, 7); stops at the first nonzero fn and returns it. */
typedef int (*ws_fields_elem_fn)(void *ctx, const char *e, size_t n);
int ws_fields_each_elem(const ws_fields *f, const char *name, size_t name_len,
                        ws_fields_elem_fn fn, void *ctx);
/* Whether any field named name holds token in its list (case-insensitive). */
int ws_fields_any_has(const ws_fields *f, const char *name, size_t name_len,
                      const char *token, size_t tlen);

#endif
