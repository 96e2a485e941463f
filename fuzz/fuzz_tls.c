/* fuzz_tls.c - libFuzzer harness for csrc/tls.c, server role.
 *
 * At start-up the harness makes a key and a self-signed certificate (P-256)
 * with OpenSSL's API, writes them to a temporary directory, and builds one
 * server context and one client context (insecure_no_verify: the harness
 * checks the layer, not the certificate).
 *
 * Input: byte 0 = mode, byte 1 = PRNG seed (split points), rest = data.
 *   mode % 3 == 0: data is what a peer sends to a fresh server connection;
 *   mode % 3 == 1: a real client completes the handshake first, then data
 *                  arrives as the peer's records;
 *   mode % 3 == 2: the real client's first flight, with data as edits
 *                  (pairs: position, xor mask) applied to it; then the two
 *                  ends pump to each other until quiet.
 * Data is fed in random pieces. Invariants: every call returns a documented
 * value; no plaintext comes out before the handshake completed (modes 0, 2)
 * or from records nobody encrypted (mode 1); after WS_TLS_ERR the connection
 * stays failed; when the handshake completes in mode 2 a message crosses
 * intact both ways.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "fuzz_common.h"
#include "tls.h"

static ws_tls_ctx *server_ctx, *client_ctx;

static void make_identity(const char *dir, char *cert_path, char *key_path) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  CHECK(key != NULL, "EVP_EC_gen");
  X509 *x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
  X509_set_pubkey(x, key);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                             -1, 0);
  X509_set_issuer_name(x, name);
  CHECK(X509_sign(x, key, EVP_sha256()) > 0, "X509_sign");
  snprintf(cert_path, 512, "%s/cert.pem", dir);
  snprintf(key_path, 512, "%s/key.pem", dir);
  FILE *f = fopen(cert_path, "w");
  CHECK(f && PEM_write_X509(f, x), "write cert");
  fclose(f);
  f = fopen(key_path, "w");
  CHECK(f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), "write key");
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  char dir[] = "/tmp/wsuv-fuzz-tls-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char cert[512], key[512], err[WS_TLS_ERRBUF];
  make_identity(dir, cert, key);
  ws_tls_config cfg;
  ws_tls_config_default(&cfg);
  cfg.role = WS_TLS_SERVER;
  cfg.certfile = cert;
  cfg.keyfile = key;
  server_ctx = ws_tls_ctx_new(&cfg, err, sizeof err);
  CHECK(server_ctx != NULL, "server context: %s", err);
  ws_tls_config_default(&cfg);
  cfg.role = WS_TLS_CLIENT;
  cfg.insecure_no_verify = 1;
  client_ctx = ws_tls_ctx_new(&cfg, err, sizeof err);
  CHECK(client_ctx != NULL, "client context: %s", err);
  unlink(cert);
  unlink(key);
  rmdir(dir);
  return 0;
}

typedef struct side {
  ws_tls *t;
  size_t plain;      /* plaintext bytes received */
  char got[64];      /* their first bytes */
  int status;        /* last negative result, 0 if none */
} side;

static char plain_buf[65536];

/* Feeds data in pieces chosen by rng; reads every piece dry. */
static void feed(side *s, const uint8_t *data, size_t len, fz_rng *rng) {
  size_t off = 0;
  while (off < len) {
    size_t n = 1 + (size_t)(fz_next(rng) % 512);
    if (n > len - off) n = len - off;
    int r = ws_tls_feed(s->t, (const char *)data + off, n);
    CHECK(r == WS_TLS_OK, "feed returned %d", r);
    for (int guard = 0;; guard++) {
      CHECK(guard < 100000, "read did not run dry");
      size_t cap = 1 + (size_t)(fz_next(rng) % sizeof plain_buf);
      long got = ws_tls_read(s->t, plain_buf, cap);
      CHECK(got >= WS_TLS_NOMEM && got <= (long)cap, "read returned %ld", got);
      if (got <= 0) {
        if (got < 0) {
          CHECK(s->status == 0 || s->status == got, "status moved %d -> %ld", s->status, got);
          s->status = (int)got;
          CHECK(ws_tls_read(s->t, plain_buf, cap) == got, "failure did not stick");
          CHECK(ws_tls_failed(s->t), "failed flag");
        }
        break;
      }
      CHECK(ws_tls_handshake_done(s->t), "plaintext before the handshake completed");
      size_t keep = s->plain < sizeof s->got ? sizeof s->got - s->plain : 0;
      if (keep > (size_t)got) keep = (size_t)got;
      memcpy(s->got + s->plain, plain_buf, keep);
      s->plain += (size_t)got;
    }
    off += n;
    if (s->status) return;
  }
}

/* Takes what a side has to send (copied: taking frees it). */
static uint8_t *take(side *s, size_t *len) {
  const char *p = ws_tls_out(s->t, len);
  if (*len == 0) return NULL;
  uint8_t *copy = malloc(*len);
  CHECK(copy != NULL, "malloc");
  memcpy(copy, p, *len);
  ws_tls_out_done(s->t, *len);
  return copy;
}

/* Pumps both ways until quiet (bounded). */
static void pump(side *a, side *b, fz_rng *rng) {
  for (int round = 0; round < 50; round++) {
    int moved = 0;
    side *pair[2][2] = {{a, b}, {b, a}};
    for (int i = 0; i < 2; i++) {
      size_t n;
      uint8_t *data = take(pair[i][0], &n);
      if (data == NULL) continue;
      moved = 1;
      if (!pair[i][1]->status) feed(pair[i][1], data, n, rng);
      free(data);
    }
    if (!moved) return;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int mode = data[0] % 3;
  fz_rng rng;
  fz_rng_seed(&rng, data, 2);
  data += 2;
  size -= 2;
  side server = {ws_tls_new(server_ctx, NULL), 0, {0}, 0};
  side client = {NULL, 0, {0}, 0};
  CHECK(server.t != NULL, "ws_tls_new");
  if (mode == 0) {
    feed(&server, data, size, &rng);
    CHECK(server.plain == 0, "plaintext from a peer that never handshook");
  } else {
    client.t = ws_tls_new(client_ctx, "localhost");
    CHECK(client.t != NULL, "ws_tls_new client");
    CHECK(ws_tls_start(client.t) == WS_TLS_OK, "start");
    if (mode == 1) {
      pump(&client, &server, &rng);
      CHECK(ws_tls_handshake_done(server.t) && ws_tls_handshake_done(client.t),
            "clean handshake failed: %s / %s", ws_tls_error(server.t), ws_tls_error(client.t));
      feed(&server, data, size, &rng);
      CHECK(server.plain == 0, "plaintext from records nobody encrypted");
    } else {
      size_t n;
      uint8_t *hello = take(&client, &n);
      CHECK(hello != NULL, "no ClientHello");
      for (size_t i = 0; i + 1 < size; i += 2) hello[((size_t)data[i] * 7 + i) % n] ^= data[i + 1];
      feed(&server, hello, n, &rng);
      free(hello);
      pump(&client, &server, &rng);
      if (ws_tls_handshake_done(server.t) && ws_tls_handshake_done(client.t) &&
          !server.status && !client.status) {
        CHECK(ws_tls_write(client.t, "ping", 4) == WS_TLS_OK, "client write");
        CHECK(ws_tls_write(server.t, "pong", 4) == WS_TLS_OK, "server write");
        pump(&client, &server, &rng);
        CHECK(server.plain == 4 && memcmp(server.got, "ping", 4) == 0, "ping lost");
        CHECK(client.plain == 4 && memcmp(client.got, "pong", 4) == 0, "pong lost");
      }
    }
  }
  ws_tls_free(client.t);
  ws_tls_free(server.t);
  return 0;
}
