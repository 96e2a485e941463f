/* ref_ws.h - deliberately simple reference implementations for the harnesses.
 *
 * These are written straight from RFC 3629 and RFC 6455 section 5, for
 * clarity rather than speed: whole-buffer, byte at a time, no state carried
 * between calls. The harnesses compare the real (streaming, word-at-a-time,
 * table-driven) code against them.
 */
#ifndef WSUV_FUZZ_REF_WS_H
#define WSUV_FUZZ_REF_WS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wsparser.h"

/* ---- UTF-8 ------------------------------------------------------------ */

/* Fail-fast validation from RFC 3629's table of well-formed sequences.
 * Returns 1 if no byte is invalid (the text may still end inside a sequence:
 * *complete says whether it ends on a code point boundary), or 0 with *bad set
 * to the index of the first byte that cannot begin or continue a sequence. */
static inline int ref_utf8_table(const uint8_t *d, size_t n, size_t *bad, int *complete) {
  size_t i = 0;
  *complete = 1;
  *bad = 0;
  while (i < n) {
    uint8_t b = d[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    unsigned need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b == 0xE0) {
      need = 2;
      lo = 0xA0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
      need = 2;
    } else if (b == 0xED) {
      need = 2;
      hi = 0x9F;
    } else if (b == 0xF0) {
      need = 3;
      lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
      need = 3;
    } else if (b == 0xF4) {
      need = 3;
      hi = 0x8F;
    } else {
      *bad = i;
      return 0;
    }
    for (unsigned k = 1; k <= need; k++) {
      if (i + k >= n) {
        *complete = 0;
        return 1;
      }
      uint8_t c = d[i + k];
      uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (c < l || c > h) {
        *bad = i + k;
        return 0;
      }
    }
    i += need + 1;
  }
  return 1;
}

/* A second, independent formulation: decode code points arithmetically and
 * reject overlong forms, surrogates and values above U+10FFFF afterwards.
 * 1 if d[0..n) is complete, valid UTF-8. */
static inline int ref_utf8_decode(const uint8_t *d, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = d[i];
    unsigned len;
    uint32_t cp, min;
    if ((b & 0x80) == 0) {
      i++;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    if (n - i < len) return 0;
    for (unsigned k = 1; k < len; k++) {
      if ((d[i + k] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (d[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += len;
  }
  return 1;
}

/* ---- frames (RFC 6455 5.2) -------------------------------------------- */

typedef struct ref_cfg {
  int role;              /* enum ws_parser_role */
  uint64_t max_frame;    /* 0 = none */
  uint8_t rsv_allowed;   /* header-byte bits */
} ref_cfg;

typedef struct ref_header {
  unsigned opcode, fin, rsv, masked;
  uint64_t length;
  uint8_t key[4];
} ref_header;

typedef struct ref_sink {
  void (*header)(void *ctx, const ref_header *h);
  void (*data)(void *ctx, const uint8_t *p, size_t n);  /* unmasked, n > 0 */
  void (*complete)(void *ctx, const ref_header *h);
  void *ctx;
} ref_sink;

static inline int ref_known_opcode(unsigned op) { return op <= 2 || (op >= 8 && op <= 10); }

/* Parses all of d[0..n) (not modified). Returns the error (enum
 * ws_parser_error) and sets *consumed: n when no error, else the index just
 * past the byte that revealed it. A frame cut short by the end of the input
 * gets its header (if whole) and the payload bytes present. *at_boundary (may
 * be NULL) is 1 if no error occurred and the input ends between frames. */
static inline int ref_parse(const uint8_t *d, size_t n, const ref_cfg *cfg, const ref_sink *s,
                     size_t *consumed, int *at_boundary) {
  size_t i = 0;
  int boundary = 1;
  int in_message = 0;
  uint8_t *tmp = NULL;
  int err = WS_PE_OK;
#define REF_FAIL(e)  \
  do {               \
    err = (e);       \
    goto done;       \
  } while (0)
  while (i < n) {
    boundary = 0;
    ref_header h;
    memset(&h, 0, sizeof h);
    uint8_t b0 = d[i++];
    h.opcode = b0 & 0x0F;
    h.rsv = b0 & 0x70;
    h.fin = b0 >> 7;
    int control = (h.opcode & 8) != 0;
    if (!ref_known_opcode(h.opcode)) REF_FAIL(WS_PE_BAD_OPCODE);
    if (h.rsv & ~(unsigned)cfg->rsv_allowed) REF_FAIL(WS_PE_RESERVED_BITS);
    if (h.rsv && (h.opcode == 0 || control)) REF_FAIL(WS_PE_RESERVED_BITS);
    if (control && !h.fin) REF_FAIL(WS_PE_CONTROL_FRAGMENTED);
    if (h.opcode == 0 && !in_message) REF_FAIL(WS_PE_BAD_CONTINUATION);
    if ((h.opcode == 1 || h.opcode == 2) && in_message) REF_FAIL(WS_PE_EXPECTED_CONTINUATION);
    if (i == n) break;
    uint8_t b1 = d[i++];
    h.masked = b1 >> 7;
    unsigned len7 = b1 & 0x7F;
    if (cfg->role == WS_ROLE_SERVER && !h.masked) REF_FAIL(WS_PE_MASK_REQUIRED);
    if (cfg->role == WS_ROLE_CLIENT && h.masked) REF_FAIL(WS_PE_MASK_FORBIDDEN);
    if (control && len7 > 125) REF_FAIL(WS_PE_CONTROL_TOO_LONG);
    if (len7 < 126) {
      h.length = len7;
    } else {
      unsigned k = len7 == 126 ? 2 : 8;
      if (n - i < k) {
        i = n;
        break;
      }
      for (unsigned j = 0; j < k; j++) h.length = h.length << 8 | d[i++];
      if (len7 == 126 && h.length < 126) REF_FAIL(WS_PE_BAD_LENGTH);
      if (len7 == 127 && (h.length <= 0xFFFF || (h.length >> 63))) REF_FAIL(WS_PE_BAD_LENGTH);
    }
    if (cfg->max_frame && h.length > cfg->max_frame) REF_FAIL(WS_PE_TOO_BIG);
    if (h.masked) {
      if (n - i < 4) {
        i = n;
        break;
      }
      memcpy(h.key, d + i, 4);
      i += 4;
    }
    if (!control) in_message = !h.fin;
    if (s->header) s->header(s->ctx, &h);
    size_t avail = n - i;
    size_t take = (uint64_t)avail < h.length ? avail : (size_t)h.length;
    if (take) {
      free(tmp);
      tmp = malloc(take);
      if (!tmp) abort();
      for (size_t j = 0; j < take; j++) tmp[j] = d[i + j] ^ (h.masked ? h.key[j & 3] : 0);
      if (s->data) s->data(s->ctx, tmp, take);
      i += take;
    }
    if ((uint64_t)take < h.length) break;
    if (s->complete) s->complete(s->ctx, &h);
    boundary = 1;
  }
done:
  if (at_boundary) *at_boundary = boundary && err == WS_PE_OK;
#undef REF_FAIL
  free(tmp);
  *consumed = i;
  return err;
}

#endif
