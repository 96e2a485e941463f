/* redisproto.h - the Redis bridge's sans-I/O parts: the message envelope and
 * the pubsub URL parser. No I/O, no allocation, no global state; the caller
 * owns every buffer.
 *
 * Envelope (the value of every PUBLISH the bridge makes), big-endian:
 *
 *   offset  size  field
 *   0       2     magic "wU"
 *   2       1     version (2)
 *   3       1     opcode: 1 text, 2 binary (the WebSocket opcodes)
 *   4       16    origin id (random per bridge)
 *   20      4     epoch of the sequence (redisseq.h), from 1
 *   24      8     sequence number, per origin and channel, from 1, +1 per publish
 *   32      n     payload
 *
 * A receiver drops envelopes carrying its own origin (each subscriber then
 * gets exactly one copy: the local one) and counts a jump in a remote
 * origin's sequence on that channel as loss (redisseq.h). The channel name
 * carries the topic, so the envelope does not. Version 1 (a 28-byte header
 * whose sequence ran across all of an origin's channels) is refused as an
 * unknown version, like any other: a node counts it and never misreads it.
 */
#ifndef WS_REDISPROTO_H
#define WS_REDISPROTO_H

#include <stddef.h>
#include <stdint.h>

#define WS_REDIS_ORIGIN_LEN 16
#define WS_REDIS_ENVELOPE_HEADER 32
#define WS_REDIS_ENVELOPE_VERSION 2

enum ws_redis_envelope_error {
  WS_REDIS_ENV_OK = 0,
  WS_REDIS_ENV_SHORT = -1,       /* fewer than WS_REDIS_ENVELOPE_HEADER bytes */
  WS_REDIS_ENV_BAD_MAGIC = -2,   /* not a wsuv envelope */
  WS_REDIS_ENV_BAD_VERSION = -3, /* an envelope version we do not know */
  WS_REDIS_ENV_BAD_OPCODE = -4,  /* opcode other than 1 (text) or 2 (binary) */
};

typedef struct ws_redis_envelope {
  uint8_t origin[WS_REDIS_ORIGIN_LEN];
  uint32_t epoch;
  uint64_t seq;
  unsigned opcode;      /* 1 or 2 */
  const char *payload;  /* points into the decoded buffer; NULL when len is 0 */
  size_t len;
} ws_redis_envelope;

/* Writes the 32-byte header into out; the payload follows it on the wire.
 * Returns WS_REDIS_ENVELOPE_HEADER, or WS_REDIS_ENV_BAD_OPCODE. */
int ws_redis_envelope_header(uint8_t out[WS_REDIS_ENVELOPE_HEADER],
                             const uint8_t origin[WS_REDIS_ORIGIN_LEN], uint32_t epoch,
                             uint64_t seq, unsigned opcode);

/* Decodes data[0..len) (reads nothing outside it). On success fills *env
 * (payload points into data) and returns WS_REDIS_ENV_OK; otherwise returns
 * a negative WS_REDIS_ENV_* and leaves *env unspecified. */
int ws_redis_envelope_decode(const char *data, size_t len, ws_redis_envelope *env);

const char *ws_redis_envelope_strerror(int err);

/* ---- URLs ----------------------------------------------------------------
 *
 *   redis://[[user]:password@]host[:port][/db]     host: name, IPv4, [IPv6]
 *   unix:///path/to.sock[?db=N][&password=P][&user=U]
 *   redis+unix:///path/to.sock[?...]               (the same)
 *
 * Port defaults to 6379, db to 0 (0..65535). user and password may be
 * %-escaped. rediss:// (TLS) is refused with its own message.
 */
#define WS_REDIS_URL_HOST_MAX 255
#define WS_REDIS_URL_PATH_MAX 107  /* sun_path holds 108 bytes with the NUL */
#define WS_REDIS_URL_SECRET_MAX 255

typedef struct ws_redis_url {
  int is_unix;                                /* 1: path is set, host is empty */
  char host[WS_REDIS_URL_HOST_MAX + 1];       /* NUL-terminated, no brackets */
  int port;
  char path[WS_REDIS_URL_PATH_MAX + 1];
  char user[WS_REDIS_URL_SECRET_MAX + 1];     /* empty: none (AUTH password) */
  char password[WS_REDIS_URL_SECRET_MAX + 1]; /* empty: no AUTH */
  int db;
} ws_redis_url;

/* Parses url[0..len). Returns 0 and fills *out, or -1 and sets *err to a
 * static sentence saying what is wrong (out is then unspecified). */
int ws_redis_url_parse(const char *url, size_t len, ws_redis_url *out, const char **err);

#endif
