/* wsparser.c - streaming RFC 6455 frame parser. See wsparser.h.
 *
 * The header is taken byte by byte through a small state machine, so a frame
 * may be split anywhere; payload runs are unmasked in place and handed out as
 * they arrive. Validation happens at the byte that reveals a problem.
 */
#include "wsparser.h"

#include <assert.h>
#include <string.h>

#include "wsframe.h"

static_assert(sizeof(void *) != 8 || sizeof(ws_parser) == 48,
              "ws_parser is documented as 48 bytes on LP64");

enum ws_parser_state {
  S_HEAD0 = 0, /* FIN, RSV, opcode */
  S_HEAD1,     /* MASK, 7-bit length */
  S_LENGTH16,  /* 16-bit extended length, `need` bytes to go */
  S_LENGTH64,  /* 64-bit extended length, `need` bytes to go */
  S_MASK_KEY,  /* masking key, `need` bytes to go */
  S_PAYLOAD    /* `remaining` payload bytes to go, then on_complete */
};

void ws_parser_init(ws_parser *p) {
  memset(p, 0, sizeof *p);
  p->role = WS_ROLE_SERVER;
}

void ws_parser_reset(ws_parser *p) {
  uint64_t max = p->max_frame_size;
  uint8_t rsv = p->rsv_allowed, role = p->role;
  void *data = p->data;
  memset(p, 0, sizeof *p);
  p->max_frame_size = max;
  p->rsv_allowed = rsv;
  p->role = role;
  p->data = data;
}

int ws_parser_at_frame_boundary(const ws_parser *p) {
  return p->state == S_HEAD0 && p->error == WS_PE_OK;
}

static int is_known_opcode(unsigned op) {
  return op <= WS_OP_BINARY || (op >= WS_OP_CLOSE && op <= WS_OP_PONG);
}

/* Rules that the first header byte alone decides (RFC 6455 5.2, 5.4, 5.5). */
static int check_head0(const ws_parser *p, uint8_t b) {
  unsigned op = b & 0x0F, rsv = b & 0x70, fin = b >> 7;
  if (!is_known_opcode(op)) return WS_PE_BAD_OPCODE;
  /* An extension's RSV bit is meaningful on a message's first frame only
   * (permessage-deflate, RFC 7692 6), never on control frames. */
  if (rsv & ~(unsigned)p->rsv_allowed) return WS_PE_RESERVED_BITS;
  if (rsv && (op == WS_OP_CONTINUATION || WS_OP_IS_CONTROL(op))) return WS_PE_RESERVED_BITS;
  if (WS_OP_IS_CONTROL(op)) return fin ? WS_PE_OK : WS_PE_CONTROL_FRAGMENTED;
  if (op == WS_OP_CONTINUATION) return p->in_message ? WS_PE_OK : WS_PE_BAD_CONTINUATION;
  return p->in_message ? WS_PE_EXPECTED_CONTINUATION : WS_PE_OK;
}

/* Rules on the decoded length (RFC 6455 5.2: minimal encoding, MSB clear). */
static int check_length(const ws_parser *p, unsigned len7) {
  if (len7 == 126 && p->length < 126) return WS_PE_BAD_LENGTH;
  if (len7 == 127 && (p->length <= 0xFFFF || (p->length >> 63))) return WS_PE_BAD_LENGTH;
  if (p->max_frame_size && p->length > p->max_frame_size) return WS_PE_TOO_BIG;
  return WS_PE_OK;
}

/* Stops the parser with an error; returns the count to report as consumed. */
static size_t fail(ws_parser *p, int err, size_t consumed) {
  p->error = (uint8_t)err;
  return consumed;
}

size_t ws_parser_execute(ws_parser *p, const ws_settings *s, char *buf, size_t len) {
  if (p->error != WS_PE_OK) return 0;
  uint8_t *in = (uint8_t *)buf;
  size_t i = 0;
  int rc;
  for (;;) {
    switch (p->state) {
    case S_HEAD0: {
      if (i == len) return i;
      uint8_t b = in[i++];
      int err = check_head0(p, b);
      if (err) return fail(p, err, i);
      p->fin = b >> 7;
      p->rsv = b & 0x70;
      p->opcode = b & 0x0F;
      p->state = S_HEAD1;
    }
    /* fall through */
    case S_HEAD1: {
      if (i == len) return i;
      uint8_t b = in[i++];
      unsigned len7 = b & 0x7F;
      p->masked = b >> 7;
      if (p->role == WS_ROLE_SERVER && !p->masked) return fail(p, WS_PE_MASK_REQUIRED, i);
      if (p->role == WS_ROLE_CLIENT && p->masked) return fail(p, WS_PE_MASK_FORBIDDEN, i);
      if (WS_OP_IS_CONTROL(p->opcode) && len7 > WS_FRAME_MAX_CONTROL)
        return fail(p, WS_PE_CONTROL_TOO_LONG, i);
      if (len7 < 126) {
        p->length = len7;
        int err = check_length(p, len7);
        if (err) return fail(p, err, i);
        p->need = p->masked ? 4 : 0;
        p->state = S_MASK_KEY;
        break;
      }
      p->length = 0;
      p->need = len7 == 126 ? 2 : 8;
      p->state = len7 == 126 ? S_LENGTH16 : S_LENGTH64;
    }
    /* fall through */
    case S_LENGTH16:
    case S_LENGTH64: {
      while (p->need && i < len) {
        p->length = (p->length << 8) | in[i++];
        p->need--;
      }
      if (p->need) return i;
      int err = check_length(p, p->state == S_LENGTH16 ? 126 : 127);
      if (err) return fail(p, err, i);
      p->need = p->masked ? 4 : 0;
      p->state = S_MASK_KEY;
      break;
    }
    case S_MASK_KEY: {
      while (p->need && i < len) {
        p->mask_key[4 - p->need] = in[i++];
        p->need--;
      }
      if (p->need) return i;
      if (!p->masked) memset(p->mask_key, 0, sizeof p->mask_key);
      p->remaining = p->length;
      p->mask_phase = 0;
      if (!WS_OP_IS_CONTROL(p->opcode)) p->in_message = !p->fin;
      p->state = S_PAYLOAD;
      if (s->on_header && (rc = s->on_header(p)) != WS_CB_OK)
        return rc == WS_CB_PAUSE ? i : fail(p, WS_PE_ABORTED, i);
      break;
    }
    case S_PAYLOAD: {
      if (p->remaining == 0) {
        p->state = S_HEAD0;
        if (s->on_complete && (rc = s->on_complete(p)) != WS_CB_OK)
          return rc == WS_CB_PAUSE ? i : fail(p, WS_PE_ABORTED, i);
        break;
      }
      if (i == len) return i;
      size_t n = len - i;
      if ((uint64_t)n > p->remaining) n = (size_t)p->remaining;
      uint8_t *at = in + i;
      if (p->masked) p->mask_phase = (uint8_t)ws_frame_mask(at, n, p->mask_key, p->mask_phase);
      p->remaining -= n;
      i += n;
      if (s->on_chunk && (rc = s->on_chunk(p, (const char *)at, n)) != WS_CB_OK)
        return rc == WS_CB_PAUSE ? i : fail(p, WS_PE_ABORTED, i);
      break;
    }
    default:
      return fail(p, WS_PE_ABORTED, i);
    }
  }
}

unsigned ws_parser_close_code(int error) {
  switch (error) {
  case WS_PE_OK:
  case WS_PE_ABORTED:
    return 0;
  case WS_PE_TOO_BIG:
    return 1009;
  default:
    return 1002;
  }
}

const char *ws_parser_strerror(int error) {
  switch (error) {
  case WS_PE_OK: return "no error";
  case WS_PE_RESERVED_BITS: return "reserved bits set without a negotiated extension";
  case WS_PE_BAD_OPCODE: return "unknown opcode";
  case WS_PE_CONTROL_TOO_LONG: return "control frame payload longer than 125 bytes";
  case WS_PE_CONTROL_FRAGMENTED: return "fragmented control frame";
  case WS_PE_BAD_CONTINUATION: return "continuation frame with no message to continue";
  case WS_PE_EXPECTED_CONTINUATION: return "new data frame before the previous message ended";
  case WS_PE_BAD_LENGTH: return "invalid payload length encoding";
  case WS_PE_TOO_BIG: return "frame larger than the size limit";
  case WS_PE_MASK_REQUIRED: return "client frame not masked";
  case WS_PE_MASK_FORBIDDEN: return "server frame masked";
  case WS_PE_ABORTED: return "parsing aborted by a callback";
  default: return "unknown parser error";
  }
}
