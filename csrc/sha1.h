/* sha1.h - SHA-1 (FIPS 180-4), base64 (RFC 4648) and the RFC 6455 accept key.
 *
 * Plain C11, no allocation: the caller owns every buffer. SHA-1 is here only
 * because RFC 6455 4.2.2 derives Sec-WebSocket-Accept from it; it is not used
 * for anything that needs collision resistance.
 */
#ifndef WS_SHA1_H
#define WS_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define WS_SHA1_DIGEST_LEN 20
/* Length of Sec-WebSocket-Accept: base64 of a 20-byte digest, no NUL. */
#define WS_ACCEPT_LEN 28

typedef struct ws_sha1_ctx {
  uint32_t h[5];
  uint64_t total_len;   /* bytes hashed so far */
  uint8_t block[64];    /* pending partial block */
  size_t block_len;     /* bytes used in block, 0..63 */
} ws_sha1_ctx;

void ws_sha1_init(ws_sha1_ctx *ctx);
void ws_sha1_update(ws_sha1_ctx *ctx, const void *data, size_t len);
/* Writes the 20-byte digest; ctx must be re-initialised before reuse. */
void ws_sha1_final(ws_sha1_ctx *ctx, uint8_t out[WS_SHA1_DIGEST_LEN]);
/* One-shot digest of data[0..len). */
void ws_sha1(const void *data, size_t len, uint8_t out[WS_SHA1_DIGEST_LEN]);

/* Bytes needed to base64-encode len bytes (with padding, no NUL). */
#define WS_BASE64_ENCODED_LEN(len) ((((len) + 2) / 3) * 4)

/* Encodes src[0..len) into dst (standard alphabet, '=' padding, no NUL).
 * Returns the number of bytes written, or 0 if cap is too small
 * (and len > 0). */
size_t ws_base64_encode(const uint8_t *src, size_t len, char *dst, size_t cap);

/* Decodes strict base64 (standard alphabet, padding required, no whitespace,
 * and the bits the padding discards must be zero, so only the canonical
 * encoding of a value is accepted: RFC 4648 3.5). Returns the number of bytes written to dst, or -1 if the input is not
 * valid base64 or the result does not fit in cap. */
long ws_base64_decode(const char *src, size_t len, uint8_t *dst, size_t cap);

/* Sec-WebSocket-Accept for a client key (RFC 6455 4.2.2 item 5.4):
 * base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
 * The key is used as given (the caller trims header whitespace).
 * Writes exactly WS_ACCEPT_LEN bytes, no NUL. */
void ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN]);

#endif
