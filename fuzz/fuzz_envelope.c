/* fuzz_envelope.c - libFuzzer harness for csrc/redisproto.c.
 *
 * Input: byte 0 chooses the mode, the rest is the data.
 *   mode even: the data is a received Redis message. It is decoded from an
 *     exactly-sized heap copy (ASan catches any read past it); a success
 *     must satisfy the header rules checked here independently, and the
 *     payload must lie inside the data; re-encoding the header gives the same
 *     32 bytes. A failure must be one of the documented errors, and must
 *     match what the independent check says is wrong.
 *   mode odd: the data is origin (16) + epoch (4) + seq (8) + opcode (1) +
 *     payload; the
 *     envelope encoded from them decodes back to the same fields.
 * Then the data, as a string, goes through ws_redis_url_parse: on success
 * the fields are NUL-terminated within their arrays and in range; on failure
 * the error is a non-empty sentence.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "redisproto.h"

static int expected(const uint8_t *p, size_t n) {
  if (n < 32) return WS_REDIS_ENV_SHORT;
  if (p[0] != 'w' || p[1] != 'U') return WS_REDIS_ENV_BAD_MAGIC;
  if (p[2] != 2) return WS_REDIS_ENV_BAD_VERSION;
  if (p[3] != 1 && p[3] != 2) return WS_REDIS_ENV_BAD_OPCODE;
  return WS_REDIS_ENV_OK;
}

static void check_url(const uint8_t *d, size_t n) {
  char *s = (char *)fz_dup(d, n);
  ws_redis_url u;
  const char *err = NULL;
  int rc = ws_redis_url_parse(s, n, &u, &err);
  if (rc == 0) {
    CHECK(memchr(u.host, 0, sizeof u.host) && memchr(u.path, 0, sizeof u.path) &&
              memchr(u.user, 0, sizeof u.user) && memchr(u.password, 0, sizeof u.password),
          "unterminated field");
    CHECK(u.db >= 0 && u.db <= 65535, "db %d", u.db);
    if (u.is_unix)
      CHECK(u.path[0] == '/' && u.host[0] == 0, "unix URL without an absolute path");
    else
      CHECK(u.host[0] && u.port >= 1 && u.port <= 65535, "tcp URL host/port");
  } else {
    CHECK(rc == -1 && err && err[0], "failure without a sentence");
  }
  free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t *in = data + 1;
  size_t n = size - 1;
  if ((data[0] & 1) == 0) {
    uint8_t *copy = fz_dup(in, n);
    ws_redis_envelope env;
    int rc = ws_redis_envelope_decode((const char *)copy, n, &env);
    CHECK(rc == expected(in, n), "decode %d, expected %d", rc, expected(in, n));
    if (rc == WS_REDIS_ENV_OK) {
      CHECK(env.len == n - 32, "payload length %zu of %zu", env.len, n);
      CHECK(env.len == 0 ? env.payload == NULL : env.payload == (const char *)copy + 32,
            "payload pointer");
      uint8_t hdr[32];
      CHECK(ws_redis_envelope_header(hdr, env.origin, env.epoch, env.seq, env.opcode) == 32,
            "encode");
      CHECK(memcmp(hdr, in, 32) == 0, "re-encoded header differs");
    } else {
      CHECK(strlen(ws_redis_envelope_strerror(rc)) > 0, "no message");
    }
    free(copy);
  } else if (n >= 29) {
    uint32_t epoch = 0;
    for (int i = 0; i < 4; i++) epoch = (epoch << 8) | in[16 + i];
    uint64_t seq = 0;
    for (int i = 0; i < 8; i++) seq = (seq << 8) | in[20 + i];
    unsigned opcode = in[28] & 3;
    size_t pl = n - 29;
    uint8_t *buf = malloc(32 + pl);
    if (!buf) abort();
    int rc = ws_redis_envelope_header(buf, in, epoch, seq, opcode);
    if (opcode != 1 && opcode != 2) {
      CHECK(rc == WS_REDIS_ENV_BAD_OPCODE, "opcode %u accepted", opcode);
    } else {
      CHECK(rc == 32, "encode %d", rc);
      if (pl) memcpy(buf + 32, in + 29, pl);
      ws_redis_envelope env;
      CHECK(ws_redis_envelope_decode((const char *)buf, 32 + pl, &env) == 0, "round trip");
      CHECK(memcmp(env.origin, in, 16) == 0 && env.epoch == epoch && env.seq == seq &&
                env.opcode == opcode && env.len == pl &&
                (pl == 0 || memcmp(env.payload, in + 29, pl) == 0),
            "round trip fields");
    }
    free(buf);
  }
  check_url(in, n);
  return 0;
}
