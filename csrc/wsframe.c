/* wsframe.c - frame headers, masking, close codes. See wsframe.h. */
#include "wsframe.h"

#include <string.h>

size_t ws_frame_header(uint8_t out[WS_FRAME_MAX_HEADER], unsigned opcode, int fin,
                       unsigned rsv, uint64_t len, const uint8_t *mask) {
  size_t n = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 0x70) | (opcode & 0x0F));
  uint8_t mask_bit = mask ? 0x80 : 0;
  if (len < 126) {
    out[1] = (uint8_t)(mask_bit | len);
  } else if (len <= 0xFFFF) {
    out[1] = (uint8_t)(mask_bit | 126);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = (uint8_t)(mask_bit | 127);
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

size_t ws_frame_mask(uint8_t *buf, size_t len, const uint8_t key[4], size_t phase) {
  uint8_t k[8];
  for (size_t j = 0; j < 8; j++) k[j] = key[(phase + j) & 3];
  uint64_t m;
  memcpy(&m, k, sizeof m);
  size_t i = 0;
  /* memcpy loads/stores compile to plain unaligned moves and keep strict
   * aliasing intact; the compiler vectorises the 32-byte body. */
  for (; i + 32 <= len; i += 32) {
    uint64_t w[4];
    memcpy(w, buf + i, sizeof w);
    w[0] ^= m;
    w[1] ^= m;
    w[2] ^= m;
    w[3] ^= m;
    memcpy(buf + i, w, sizeof w);
  }
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, buf + i, sizeof w);
    w ^= m;
    memcpy(buf + i, &w, sizeof w);
  }
  for (; i < len; i++) buf[i] ^= k[i & 7];
  return (phase + len) & 3;
}

int ws_frame_close_code_valid(unsigned code) {
  if (code >= 1000 && code <= 1003) return 1;
  if (code >= 1007 && code <= 1014) return 1;
  return code >= 3000 && code <= 4999;
}

size_t ws_frame_close_payload(uint8_t *out, size_t cap, unsigned code,
                              const char *reason, size_t reason_len) {
  if (code == 0) return 0;
  size_t n = 2 + reason_len;
  if (n > WS_FRAME_MAX_CONTROL || n > cap) return 0;
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  if (reason_len) memcpy(out + 2, reason, reason_len);
  return n;
}
