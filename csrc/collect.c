/* collect.c - see collect.h. */
#include "collect.h"

#include <string.h>

static uint64_t info(const ws_parser *p, unsigned kind) {
  return (uint64_t)kind | (uint64_t)p->fin << 8 | (uint64_t)p->rsv << 8 |
         (uint64_t)p->opcode << 16;
}

/* Appends a record; pauses the parser once the array is full. */
static int emit(ws_collect *c, unsigned kind, uint64_t off, uint64_t len) {
  uint64_t *r = c->out + c->count * WS_COLLECT_WORDS;
  r[0] = info(&c->parser, kind);
  r[1] = off;
  r[2] = len;
  return ++c->count == c->out_cap ? WS_CB_PAUSE : WS_CB_OK;
}

static int on_header(ws_parser *p) {
  ws_collect *c = p->data;
  c->payload_start = 0;
  return c->events ? emit(c, WS_COLLECT_HEADER, 0, p->length) : WS_CB_OK;
}

static int on_chunk(ws_parser *p, const char *at, size_t len) {
  ws_collect *c = p->data;
  uint64_t off = (uint64_t)((const uint8_t *)at - c->base);
  if (c->events) return emit(c, WS_COLLECT_CHUNK, off, len);
  if (p->remaining + len == p->length) c->payload_start = off; /* first chunk */
  return WS_CB_OK;
}

static int on_complete(ws_parser *p) {
  ws_collect *c = p->data;
  if (c->events) return emit(c, WS_COLLECT_COMPLETE, 0, 0);
  return emit(c, WS_COLLECT_FRAME, p->length ? c->payload_start : 0, p->length);
}

static const ws_settings collect_settings = {on_header, on_chunk, on_complete};

void ws_collect_init(ws_collect *c, int events) {
  memset(c, 0, sizeof *c);
  ws_parser_init(&c->parser);
  c->parser.data = c;
  c->events = events;
}

size_t ws_collect_run(ws_collect *c, char *buf, size_t start, size_t len,
                      uint64_t *out, size_t cap) {
  c->out = out;
  c->out_cap = cap;
  c->count = 0;
  c->base = (const uint8_t *)buf;
  if (cap == 0 || start > len) return start;
  c->parser.data = c;
  return start + ws_parser_execute(&c->parser, &collect_settings, buf + start, len - start);
}

size_t ws_collect_retain(ws_collect *c, size_t end) {
  const ws_parser *p = &c->parser;
  int partial = !ws_parser_at_frame_boundary(p) && p->error == WS_PE_OK && !c->events &&
                p->remaining < p->length && p->remaining > 0;
  if (!partial) return end;
  size_t keep_from = (size_t)c->payload_start;
  c->payload_start = 0;
  return keep_from;
}
