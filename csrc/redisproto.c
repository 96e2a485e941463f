/* redisproto.c - envelope codec and URL parser (see redisproto.h). */
#include "redisproto.h"

#include <string.h>

int ws_redis_envelope_header(uint8_t out[WS_REDIS_ENVELOPE_HEADER],
                             const uint8_t origin[WS_REDIS_ORIGIN_LEN], uint32_t epoch,
                             uint64_t seq, unsigned opcode) {
  if (opcode != 1 && opcode != 2) return WS_REDIS_ENV_BAD_OPCODE;
  out[0] = 'w';
  out[1] = 'U';
  out[2] = WS_REDIS_ENVELOPE_VERSION;
  out[3] = (uint8_t)opcode;
  memcpy(out + 4, origin, WS_REDIS_ORIGIN_LEN);
  for (int i = 0; i < 4; i++) out[20 + i] = (uint8_t)(epoch >> (24 - 8 * i));
  for (int i = 0; i < 8; i++) out[24 + i] = (uint8_t)(seq >> (56 - 8 * i));
  return WS_REDIS_ENVELOPE_HEADER;
}

int ws_redis_envelope_decode(const char *data, size_t len, ws_redis_envelope *env) {
  const uint8_t *p = (const uint8_t *)data;
  if (len < WS_REDIS_ENVELOPE_HEADER) return WS_REDIS_ENV_SHORT;
  if (p[0] != 'w' || p[1] != 'U') return WS_REDIS_ENV_BAD_MAGIC;
  if (p[2] != WS_REDIS_ENVELOPE_VERSION) return WS_REDIS_ENV_BAD_VERSION;
  if (p[3] != 1 && p[3] != 2) return WS_REDIS_ENV_BAD_OPCODE;
  env->opcode = p[3];
  memcpy(env->origin, p + 4, WS_REDIS_ORIGIN_LEN);
  uint32_t epoch = 0;
  for (int i = 0; i < 4; i++) epoch = (epoch << 8) | p[20 + i];
  env->epoch = epoch;
  uint64_t seq = 0;
  for (int i = 0; i < 8; i++) seq = (seq << 8) | p[24 + i];
  env->seq = seq;
  env->len = len - WS_REDIS_ENVELOPE_HEADER;
  env->payload = env->len ? data + WS_REDIS_ENVELOPE_HEADER : NULL;
  return WS_REDIS_ENV_OK;
}

const char *ws_redis_envelope_strerror(int err) {
  switch (err) {
  case WS_REDIS_ENV_OK: return "ok";
  case WS_REDIS_ENV_SHORT: return "envelope shorter than its 32-byte header";
  case WS_REDIS_ENV_BAD_MAGIC: return "not a wsuv envelope (bad magic)";
  case WS_REDIS_ENV_BAD_VERSION: return "unknown envelope version";
  case WS_REDIS_ENV_BAD_OPCODE: return "envelope opcode is neither text (1) nor binary (2)";
  default: return "unknown envelope error";
  }
}

/* ---- URLs ----------------------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* %-decodes s[0..n) into out (cap bytes with the NUL). 0, or -1 with *err. */
static int unescape(const char *s, size_t n, char *out, size_t cap, const char *what_long,
                    const char **err) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      if (n - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
        *err = "bad %-escape in the user or password (want %XX)";
        return -1;
      }
      c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      if (c == '\0') {
        *err = "%00 in the user or password";
        return -1;
      }
      i += 2;
    }
    if (o + 1 >= cap) {
      *err = what_long;
      return -1;
    }
    out[o++] = c;
  }
  out[o] = '\0';
  return 0;
}

/* Decimal in [lo, hi] from s[0..n); -1 if not. */
static long number(const char *s, size_t n, long lo, long hi) {
  if (n == 0 || n > 6) return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v < lo || v > hi ? -1 : v;
}

static int starts(const char *s, size_t n, const char *prefix) {
  size_t k = strlen(prefix);
  if (n < k) return 0;
  for (size_t i = 0; i < k; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != prefix[i]) return 0;
  }
  return 1;
}

static int parse_unix(const char *s, size_t n, ws_redis_url *out, const char **err) {
  size_t q = 0;
  while (q < n && s[q] != '?') q++;
  if (q == 0) {
    *err = "unix socket URL without a path (want unix:///path/to.sock)";
    return -1;
  }
  if (s[0] != '/') {
    *err = "unix socket path must be absolute (want unix:///path/to.sock)";
    return -1;
  }
  if (q > WS_REDIS_URL_PATH_MAX) {
    *err = "unix socket path longer than 107 bytes";
    return -1;
  }
  memcpy(out->path, s, q);
  out->path[q] = '\0';
  if (memchr(s, '\0', q)) {
    *err = "NUL byte in the unix socket path";
    return -1;
  }
  out->is_unix = 1;
  if (q == n) return 0;
  size_t i = q + 1;
  for (;;) {
    size_t e = i;
    while (e < n && s[e] != '&') e++;
    const char *kv = s + i;
    size_t kn = e - i;
    if (starts(kv, kn, "db=")) {
      long db = number(kv + 3, kn - 3, 0, 65535);
      if (db < 0) {
        *err = "bad database number (want db=0..65535)";
        return -1;
      }
      out->db = (int)db;
    } else if (starts(kv, kn, "password=")) {
      if (unescape(kv + 9, kn - 9, out->password, sizeof out->password,
                   "password longer than 255 bytes", err))
        return -1;
    } else if (starts(kv, kn, "user=")) {
      if (unescape(kv + 5, kn - 5, out->user, sizeof out->user, "user longer than 255 bytes",
                   err))
        return -1;
    } else {
      *err = "unknown query parameter (want db=, password= or user=)";
      return -1;
    }
    if (e >= n) break;
    i = e + 1;
  }
  return 0;
}

static int parse_tcp(const char *s, size_t n, ws_redis_url *out, const char **err) {
  /* userinfo: up to the last '@' before the first '/' */
  size_t slash = 0;
  while (slash < n && s[slash] != '/') slash++;
  size_t at = slash;
  for (size_t i = 0; i < slash; i++)
    if (s[i] == '@') at = i;
  size_t h = 0;
  if (at < slash) {
    size_t colon = at;
    for (size_t i = 0; i < at; i++)
      if (s[i] == ':') {
        colon = i;
        break;
      }
    if (colon == at) {
      *err = "user info without ':' (want redis://:password@host or redis://user:password@host)";
      return -1;
    }
    if (unescape(s, colon, out->user, sizeof out->user, "user longer than 255 bytes", err) ||
        unescape(s + colon + 1, at - colon - 1, out->password, sizeof out->password,
                 "password longer than 255 bytes", err))
      return -1;
    h = at + 1;
  }
  /* host[:port] in s[h..slash) */
  size_t hend, pstart;
  const char *host = s + h;
  size_t hn;
  if (h < slash && s[h] == '[') {
    size_t close = h;
    while (close < slash && s[close] != ']') close++;
    if (close == slash) {
      *err = "unterminated [IPv6] host (missing ']')";
      return -1;
    }
    host = s + h + 1;
    hn = close - h - 1;
    hend = close + 1;
    if (hend < slash && s[hend] != ':') {
      *err = "characters after the ']' of an IPv6 host (want [addr]:port)";
      return -1;
    }
  } else {
    hend = h;
    while (hend < slash && s[hend] != ':') hend++;
    hn = hend - h;
  }
  if (hn == 0) {
    *err = "missing host (want redis://host:port/db)";
    return -1;
  }
  if (hn > WS_REDIS_URL_HOST_MAX) {
    *err = "host longer than 255 bytes";
    return -1;
  }
  for (size_t i = 0; i < hn; i++) {
    unsigned char c = (unsigned char)host[i];
    if (c <= ' ' || c == '@' || c == '?' || c == '#' || c == '%' || c >= 0x7f) {
      *err = "bad character in the host";
      return -1;
    }
  }
  memcpy(out->host, host, hn);
  out->host[hn] = '\0';
  out->port = 6379;
  if (hend < slash) { /* ':' port */
    long port = number(s + hend + 1, slash - hend - 1, 1, 65535);
    if (port < 0) {
      *err = "bad port (want 1..65535)";
      return -1;
    }
    out->port = (int)port;
  }
  pstart = slash;
  if (pstart < n) { /* "/db" */
    const char *d = s + pstart + 1;
    size_t dn = n - pstart - 1;
    if (dn > 0) {
      long db = number(d, dn, 0, 65535);
      if (db < 0) {
        *err = "bad database number after '/' (want /0../65535, nothing after it)";
        return -1;
      }
      out->db = (int)db;
    }
  }
  return 0;
}

int ws_redis_url_parse(const char *url, size_t len, ws_redis_url *out, const char **err) {
  const char *ignored;
  if (!err) err = &ignored;
  memset(out, 0, sizeof *out);
  if (!url || len == 0) {
    *err = "empty pubsub URL";
    return -1;
  }
  if (memchr(url, '\0', len)) {
    *err = "NUL byte in the pubsub URL";
    return -1;
  }
  if (starts(url, len, "rediss://")) {
    *err = "rediss:// (Redis over TLS) is not supported; use redis:// or a unix socket";
    return -1;
  }
  if (starts(url, len, "redis+unix://")) return parse_unix(url + 13, len - 13, out, err);
  if (starts(url, len, "unix://")) return parse_unix(url + 7, len - 7, out, err);
  if (starts(url, len, "redis://")) return parse_tcp(url + 8, len - 8, out, err);
  *err = "unknown scheme (want redis://host:port/db, unix:///path or redis+unix:///path)";
  return -1;
}
