/* wsframe.h - RFC 6455 frame writer, masking and close-code rules.
 *
 * No allocation: the caller owns every buffer. Header layout per RFC 6455 5.2;
 * payload lengths always use the minimal encoding.
 */
#ifndef WS_FRAME_H
#define WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Opcodes (RFC 6455 5.2, 11.8). */
enum ws_opcode {
  WS_OP_CONTINUATION = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA
};

/* Reserved bits as they sit in the first header byte. */
#define WS_RSV1 0x40
#define WS_RSV2 0x20
#define WS_RSV3 0x10

/* Largest header: 2 + 8 (64-bit length) + 4 (mask key). */
#define WS_FRAME_MAX_HEADER 14
/* Largest control-frame payload (RFC 6455 5.5). */
#define WS_FRAME_MAX_CONTROL 125

/* 1 for opcodes 0x8..0xF (control frames), else 0. */
#define WS_OP_IS_CONTROL(op) (((op) & 0x8) != 0)

/* Writes a frame header into out and returns its length (2..14).
 * rsv is any OR of WS_RSV1..3. mask is NULL for an unmasked (server) frame,
 * or the 4-byte key for a masked (client) frame; the caller masks the payload
 * with ws_frame_mask(). len must be < 2^63 (RFC 6455 5.2). */
size_t ws_frame_header(uint8_t out[WS_FRAME_MAX_HEADER], unsigned opcode, int fin,
                       unsigned rsv, uint64_t len, const uint8_t *mask);

/* XORs buf[0..len) in place with the mask key, starting at key byte
 * (phase & 3); returns the phase for the byte after the last one, so a
 * payload can be (un)masked in pieces. Word-at-a-time. */
size_t ws_frame_mask(uint8_t *buf, size_t len, const uint8_t key[4], size_t phase);

/* 1 if code may appear in a close frame on the wire (RFC 6455 7.4.1, 7.4.2):
 * 1000-1003, 1007-1011 (plus 1012-1014 registered with IANA), 3000-4999.
 * 1004, 1005, 1006, 1015 and everything else are 0. */
int ws_frame_close_code_valid(unsigned code);

/* Writes a close payload (2-byte code, then reason) into out and returns its
 * length, or 0 if it does not fit in cap or exceeds 125 bytes. code 0 means
 * "no status" and gives an empty payload. The reason is copied as given. */
size_t ws_frame_close_payload(uint8_t *out, size_t cap, unsigned code,
                              const char *reason, size_t reason_len);

#endif
