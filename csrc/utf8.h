/* utf8.h - incremental UTF-8 validator (RFC 3629), streaming across fragments.
 *
 * Rejects overlong forms, UTF-16 surrogates (U+D800..U+DFFF) and code points
 * above U+10FFFF, and fails on the first byte that cannot begin or continue a
 * valid sequence ("fail fast", as RFC 6455 8.1 and the conformance suites
 * expect for text messages). State is carried between calls so a message may
 * be validated chunk by chunk as it arrives; pure ASCII runs take a
 * word-at-a-time fast path. No allocation.
 */
#ifndef WS_UTF8_H
#define WS_UTF8_H

#include <stddef.h>
#include <stdint.h>

enum ws_utf8_result {
  WS_UTF8_OK = 0,      /* every byte so far is valid (a sequence may be open) */
  WS_UTF8_INVALID = 1  /* an invalid byte was seen; the validator stays failed */
};

typedef struct ws_utf8 {
  uint32_t state;      /* DFA state; 0 = at a code point boundary, other
                          values are private to utf8.c */
} ws_utf8;

void ws_utf8_init(ws_utf8 *v);

/* Feeds data[0..len) (data may be NULL when len is 0). Returns WS_UTF8_OK or
 * WS_UTF8_INVALID. If bad_offset is not NULL and the result is INVALID,
 * *bad_offset is set to the index in data of the first offending byte: the
 * first byte that cannot begin or continue a well-formed sequence, so a
 * sequence cut short by a new lead byte or ASCII fails at that byte. Once
 * INVALID, later calls return INVALID and set *bad_offset to 0. */
int ws_utf8_feed(ws_utf8 *v, const uint8_t *data, size_t len, size_t *bad_offset);

/* 1 if everything fed so far is valid and ends on a code point boundary
 * (i.e. the text is complete), else 0. */
int ws_utf8_complete(const ws_utf8 *v);

/* 1 if data[0..len) is complete, valid UTF-8, else 0. */
int ws_utf8_valid(const uint8_t *data, size_t len);

#endif
