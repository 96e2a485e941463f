/* sha1.c - SHA-1 (FIPS 180-4 section 6.1), base64 (RFC 4648 section 4) and
 * the RFC 6455 Sec-WebSocket-Accept value. See sha1.h for the contract. */
#include "sha1.h"

#include <limits.h>
#include <string.h>

/* ---- SHA-1 ------------------------------------------------------------ */

static inline uint32_t rol32(uint32_t x, unsigned n) {
  return (x << n) | (x >> (32u - n));
}

static inline uint32_t load_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void store_be32(uint8_t *p, uint32_t x) {
  p[0] = (uint8_t)(x >> 24);
  p[1] = (uint8_t)(x >> 16);
  p[2] = (uint8_t)(x >> 8);
  p[3] = (uint8_t)x;
}

/* The message schedule is kept as a 16-word ring: W[t] for t >= 16 only ever
 * needs W[t-3], W[t-8], W[t-14] and W[t-16] (FIPS 180-4 6.1.2 step 1). */
#define W_AT(t) w[(t) & 15]
#define W_NEXT(t) \
  (W_AT(t) = rol32(W_AT((t) + 13) ^ W_AT((t) + 8) ^ W_AT((t) + 2) ^ W_AT(t), 1))

#define F_CH(b, c, d) (((c ^ d) & b) ^ d)
#define F_PARITY(b, c, d) (b ^ c ^ d)
#define F_MAJ(b, c, d) (((b | c) & d) | (b & c))

/* One round; the caller rotates the roles of a..e instead of moving values. */
#define ROUND(a, b, c, d, e, f, k, wt)                   \
  do {                                                   \
    e += rol32(a, 5) + f(b, c, d) + (uint32_t)(k) + (wt); \
    b = rol32(b, 30);                                    \
  } while (0)

#define R0(a, b, c, d, e, t) ROUND(a, b, c, d, e, F_CH, 0x5a827999u, W_AT(t))
#define R1(a, b, c, d, e, t) ROUND(a, b, c, d, e, F_CH, 0x5a827999u, W_NEXT(t))
#define R2(a, b, c, d, e, t) ROUND(a, b, c, d, e, F_PARITY, 0x6ed9eba1u, W_NEXT(t))
#define R3(a, b, c, d, e, t) ROUND(a, b, c, d, e, F_MAJ, 0x8f1bbcdcu, W_NEXT(t))
#define R4(a, b, c, d, e, t) ROUND(a, b, c, d, e, F_PARITY, 0xca62c1d6u, W_NEXT(t))

/* Five rounds starting at t, after which a..e are back in their roles. */
#define FIVE(R, t)               \
  do {                           \
    R(a, b, c, d, e, (t));       \
    R(e, a, b, c, d, (t) + 1);   \
    R(d, e, a, b, c, (t) + 2);   \
    R(c, d, e, a, b, (t) + 3);   \
    R(b, c, d, e, a, (t) + 4);   \
  } while (0)

static void sha1_blocks(uint32_t h[5], const uint8_t *p, size_t nblocks) {
  uint32_t w[16];
  while (nblocks--) {
    for (unsigned i = 0; i < 16; i++) w[i] = load_be32(p + 4 * i);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    FIVE(R0, 0);  FIVE(R0, 5);  FIVE(R0, 10);
    R0(a, b, c, d, e, 15);
    R1(e, a, b, c, d, 16); R1(d, e, a, b, c, 17);
    R1(c, d, e, a, b, 18); R1(b, c, d, e, a, 19);
    FIVE(R2, 20); FIVE(R2, 25); FIVE(R2, 30); FIVE(R2, 35);
    FIVE(R3, 40); FIVE(R3, 45); FIVE(R3, 50); FIVE(R3, 55);
    FIVE(R4, 60); FIVE(R4, 65); FIVE(R4, 70); FIVE(R4, 75);
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    p += 64;
  }
}

void ws_sha1_init(ws_sha1_ctx *ctx) {
  ctx->h[0] = 0x67452301u;
  ctx->h[1] = 0xefcdab89u;
  ctx->h[2] = 0x98badcfeu;
  ctx->h[3] = 0x10325476u;
  ctx->h[4] = 0xc3d2e1f0u;
  ctx->total_len = 0;
  ctx->block_len = 0;
}

void ws_sha1_update(ws_sha1_ctx *ctx, const void *data, size_t len) {
  const uint8_t *p = data;
  if (len == 0) return; /* data may be NULL then */
  ctx->total_len += len;
  if (ctx->block_len > 0) {
    size_t take = 64 - ctx->block_len;
    if (take > len) take = len;
    memcpy(ctx->block + ctx->block_len, p, take);
    ctx->block_len += take;
    p += take;
    len -= take;
    if (ctx->block_len < 64) return;
    sha1_blocks(ctx->h, ctx->block, 1);
    ctx->block_len = 0;
  }
  /* Whole blocks are hashed straight from the caller's buffer. */
  if (len >= 64) {
    size_t n = len / 64;
    sha1_blocks(ctx->h, p, n);
    p += n * 64;
    len -= n * 64;
  }
  if (len > 0) {
    memcpy(ctx->block, p, len);
    ctx->block_len = len;
  }
}

void ws_sha1_final(ws_sha1_ctx *ctx, uint8_t out[WS_SHA1_DIGEST_LEN]) {
  uint64_t bits = ctx->total_len << 3; /* the length is mod 2^64 bits */
  size_t n = ctx->block_len;
  ctx->block[n++] = 0x80;
  if (n > 56) {
    memset(ctx->block + n, 0, 64 - n);
    sha1_blocks(ctx->h, ctx->block, 1);
    n = 0;
  }
  memset(ctx->block + n, 0, 56 - n);
  store_be32(ctx->block + 56, (uint32_t)(bits >> 32));
  store_be32(ctx->block + 60, (uint32_t)bits);
  sha1_blocks(ctx->h, ctx->block, 1);
  for (unsigned i = 0; i < 5; i++) store_be32(out + 4 * i, ctx->h[i]);
  ctx->block_len = 0;
}

void ws_sha1(const void *data, size_t len, uint8_t out[WS_SHA1_DIGEST_LEN]) {
  ws_sha1_ctx ctx;
  ws_sha1_init(&ctx);
  ws_sha1_update(&ctx, data, len);
  ws_sha1_final(&ctx, out);
}

/* ---- base64 ----------------------------------------------------------- */

static const char b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ws_base64_encode(const uint8_t *src, size_t len, char *dst, size_t cap) {
  if (len == 0) return 0;
  /* WS_BASE64_ENCODED_LEN would overflow for len near SIZE_MAX. */
  if (len / 3 >= SIZE_MAX / 4) return 0;
  size_t need = (len / 3 + (len % 3 != 0)) * 4;
  if (cap < need) return 0;
  char *o = dst;
  size_t i = 0;
  for (; len - i >= 3; i += 3) {
    uint32_t v = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8) | src[i + 2];
    o[0] = b64_alphabet[v >> 18];
    o[1] = b64_alphabet[(v >> 12) & 63];
    o[2] = b64_alphabet[(v >> 6) & 63];
    o[3] = b64_alphabet[v & 63];
    o += 4;
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)src[i] << 16;
    o[0] = b64_alphabet[v >> 18];
    o[1] = b64_alphabet[(v >> 12) & 63];
    o[2] = '=';
    o[3] = '=';
    o += 4;
  } else if (len - i == 2) {
    uint32_t v = ((uint32_t)src[i] << 16) | ((uint32_t)src[i + 1] << 8);
    o[0] = b64_alphabet[v >> 18];
    o[1] = b64_alphabet[(v >> 12) & 63];
    o[2] = b64_alphabet[(v >> 6) & 63];
    o[3] = '=';
    o += 4;
  }
  return (size_t)(o - dst);
}

/* Sextet value of a base64 character, or -1 for anything outside the
 * alphabet (including '=', which the decoder handles by position). */
static inline int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

long ws_base64_decode(const char *src, size_t len, uint8_t *dst, size_t cap) {
  const unsigned char *s = (const unsigned char *)src;
  if (len % 4 != 0) return -1;
  if (len == 0) return 0;
  size_t pad = (s[len - 1] == '=') + (s[len - 1] == '=' && s[len - 2] == '=');
  size_t out_len = len / 4 * 3 - pad;
  if (out_len > cap || out_len > (size_t)LONG_MAX) return -1;
  size_t body = len - 4; /* every quad but the last has no padding */
  size_t o = 0;
  for (size_t i = 0; i < body; i += 4) {
    int a = b64_value(s[i]), b = b64_value(s[i + 1]);
    int c = b64_value(s[i + 2]), d = b64_value(s[i + 3]);
    if ((a | b | c | d) < 0) return -1;
    uint32_t v = ((uint32_t)a << 18) | ((uint32_t)b << 12) | ((uint32_t)c << 6) | (uint32_t)d;
    dst[o++] = (uint8_t)(v >> 16);
    dst[o++] = (uint8_t)(v >> 8);
    dst[o++] = (uint8_t)v;
  }
  const unsigned char *q = s + body;
  int a = b64_value(q[0]), b = b64_value(q[1]);
  int c = pad < 2 ? b64_value(q[2]) : 0;
  int d = pad < 1 ? b64_value(q[3]) : 0;
  if ((a | b | c | d) < 0) return -1;
  uint32_t v = ((uint32_t)a << 18) | ((uint32_t)b << 12) | ((uint32_t)c << 6) | (uint32_t)d;
  /* Reject non-canonical encodings whose discarded bits are not zero
   * (RFC 4648 3.5 allows it; an encoder never produces them). */
  if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))) return -1;
  dst[o++] = (uint8_t)(v >> 16);
  if (pad < 2) dst[o++] = (uint8_t)(v >> 8);
  if (pad < 1) dst[o++] = (uint8_t)v;
  return (long)o;
}

/* ---- Sec-WebSocket-Accept --------------------------------------------- */

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN]) {
  ws_sha1_ctx ctx;
  uint8_t digest[WS_SHA1_DIGEST_LEN];
  ws_sha1_init(&ctx);
  ws_sha1_update(&ctx, key, key_len);
  ws_sha1_update(&ctx, ws_guid, sizeof ws_guid - 1);
  ws_sha1_final(&ctx, digest);
  (void)ws_base64_encode(digest, sizeof digest, out, WS_ACCEPT_LEN);
}
