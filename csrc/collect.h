/* collect.h - the frame parser run into a flat array of records.
 *
 * For callers that want whole frames (or header/chunk/complete events) back
 * from one call instead of one callback each: Python's FrameParser makes one
 * C call per feed and reads all frames from the array. Payloads are not
 * copied: records give offsets into the caller's buffer, where the parser has
 * unmasked them in place.
 *
 * A record is three uint64_t words:
 *   w0 = kind | fin << 8 | rsv << 8 (WS_RSV1..3 land at bits 12..14) | opcode << 16
 *   w1 = payload offset in the buffer (CHUNK, FRAME), else 0
 *   w2 = length (HEADER: the frame's payload length; CHUNK, FRAME: bytes)
 */
#ifndef WS_COLLECT_H
#define WS_COLLECT_H

#include <stddef.h>
#include <stdint.h>

#include "wsparser.h"

enum ws_collect_kind {
  WS_COLLECT_HEADER = 1,   /* events mode: a frame header */
  WS_COLLECT_CHUNK = 2,    /* events mode: a run of payload */
  WS_COLLECT_COMPLETE = 3, /* events mode: end of the frame */
  WS_COLLECT_FRAME = 4     /* frames mode: one whole frame */
};

#define WS_COLLECT_WORDS 3

typedef struct ws_collect {
  ws_parser parser;         /* configure role, limits through this */
  uint64_t *out;            /* caller-owned record array (set by run) */
  size_t out_cap;           /* records that fit in out */
  size_t count;             /* records written by the last run */
  const uint8_t *base;      /* the buffer of the current run */
  uint64_t payload_start;   /* offset in the buffer of the current frame's payload */
  int events;               /* 1: HEADER/CHUNK/COMPLETE records; 0: FRAME records */
} ws_collect;

void ws_collect_init(ws_collect *c, int events);

/* Parses buf[start..len) and writes records to out (capacity cap records).
 * buf[0..start) holds payload retained from earlier runs (frames mode), so a
 * frame split across runs ends up contiguous in buf. Returns the index in buf
 * where parsing stopped: len, or less when out filled up (call again from
 * there after reading the records) or on error (c->parser.error). */
size_t ws_collect_run(ws_collect *c, char *buf, size_t start, size_t len,
                      uint64_t *out, size_t cap);

/* After a run that consumed up to end: how many leading bytes of the buffer
 * the caller may drop. Bytes from there on (a frame's partial payload) must be
 * kept at the front of the next run's buffer. Rebases the internal offsets on
 * the assumption the caller drops exactly that many. */
size_t ws_collect_retain(ws_collect *c, size_t end);

#endif
