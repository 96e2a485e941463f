/* loadgen.c - WebSocket load generator on libuv, built on wsuv's own C core.
 *
 * It speaks RFC 6455 as a client with csrc/sha1.c (key and accept check),
 * csrc/wsframe.c (masked frame headers, masking) and csrc/wsparser.c (the
 * server's frames), and measures one server process:
 *
 *   echo       N connections, K messages of S bytes in flight on each (K=1 is
 *              request/response). Every echoed byte is checked against what
 *              was sent, in order.
 *   broadcast  1 sender and R receivers; the sender keeps K messages in
 *              flight, a message completes when every receiver has it. Counts
 *              deliveries (messages received by receivers).
 *   idle       opens N connections (bounded concurrency), reports upgrades/s,
 *              and the server's RSS before and with all of them open (after
 *              --settle seconds). With --deflate each connection first sends
 *              one message and waits for its echo (both compressed).
 *
 * After a warm-up W, counters reset and a window of D seconds is measured:
 * messages/s, MB/s (payload bytes received), latency percentiles (send to
 * receipt), the client's own CPU time (getrusage) and, with --server-pid, the
 * server's CPU time over the same window (/proc/PID/stat utime+stime).
 * The result is one JSON object on stdout; any protocol or verification error
 * is fatal (exit 1, message on stderr). Every run is bounded by --timeout.
 *
 * With --deflate every connection offers permessage-deflate the way Chrome
 * does ("permessage-deflate; client_max_window_bits") and requires the
 * server to accept it: messages are compressed and inflated with wsuv's own
 * csrc/pmdeflate.c in the client role, checked after inflation, and the
 * bytes on the wire are counted both ways (wire_rx_bytes / wire_tx_bytes).
 * --json makes text payloads JSON-like (what compression is for) instead of
 * random letters.
 *
 * With --tls every connection speaks TLS through csrc/tls.c in the client
 * role (no certificate verification: a benchmark of the server's TLS cost,
 * not of a PKI): what the connection writes in one loop turn is encrypted in
 * one ws_tls_write, what it reads is decrypted before the WebSocket code sees
 * it. Payload counts are plaintext; wire_rx_bytes counts ciphertext read,
 * wire_tx_bytes the frames before encryption.
 *
 * Build: gcc -O3 -Icsrc benchmarks/loadgen.c csrc/{wsparser,wsframe,sha1,pmdeflate,tls}.c \
 *        $(pkg-config --cflags --libs libuv) -lz -lssl -lcrypto   (make bench-servers does this)
 */
#define _GNU_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "pmdeflate.h"
#include "sha1.h"
#include "tls.h"
#include "wsframe.h"
#include "wsparser.h"

/* ------------------------------------------------------------------------- */
/* options                                                                   */

enum mode { MODE_ECHO, MODE_BROADCAST, MODE_IDLE };

static struct {
  const char *host;
  int port;
  const char *path;
  enum mode mode;
  int conns;             /* echo/idle: connections; broadcast: receivers */
  int inflight;          /* K */
  size_t size;           /* S */
  double warmup, duration, timeout, settle;
  int text;              /* 1: text frames, else binary */
  int concurrency;       /* handshakes in progress at once */
  int server_pid;        /* 0: no server accounting */
  int deflate;           /* offer (and require) permessage-deflate */
  int json;              /* JSON-like text payloads */
  int tls;               /* speak TLS (csrc/tls.c, client role, no verification) */
} opt = {"127.0.0.1", 0, "/", MODE_ECHO, 1, 1, 64, 1.0, 3.0, 0, 1.0, 0, 64, 0, 0, 0, 0};

/* ------------------------------------------------------------------------- */
/* small helpers                                                             */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "loadgen: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* CPU time of a process (all its threads) from /proc/PID/stat, seconds. */
typedef struct cpu_sample {
  double user, sys;  /* -1 if unreadable */
  long long syscr, syscw; /* read-like / write-like syscalls (/proc/PID/io), -1 if unreadable */
} cpu_sample;

static void proc_io(int pid, cpu_sample *s) {
  char path[64], line[128];
  s->syscr = s->syscw = -1;
  snprintf(path, sizeof path, "/proc/%d/io", pid);
  FILE *f = fopen(path, "r");
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "syscr:", 6) == 0) s->syscr = strtoll(line + 6, NULL, 10);
    if (strncmp(line, "syscw:", 6) == 0) s->syscw = strtoll(line + 6, NULL, 10);
  }
  fclose(f);
}

static double proc_cpu_split(int pid, double *user, double *sys);

static void proc_sample(int pid, cpu_sample *s) {
  s->user = s->sys = -1;
  s->syscr = s->syscw = -1;
  if (pid <= 0) return;
  proc_cpu_split(pid, &s->user, &s->sys);
  proc_io(pid, s);
}

/* utime+stime of a process (all its threads), seconds; -1 if unreadable. */
static double proc_cpu_seconds(int pid) {
  double u, s;
  return proc_cpu_split(pid, &u, &s);
}

static double proc_cpu_split(int pid, double *user, double *sys) {
  if (pid <= 0) return -1;
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  /* after ") " come fields 3.. ; utime is field 14, stime 15 */
  unsigned long ut = 0, st = 0;
  int field = 2;
  for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
    field++;
    if (field == 14) ut = strtoul(tok, NULL, 10);
    if (field == 15) { st = strtoul(tok, NULL, 10); break; }
  }
  double tck = (double)sysconf(_SC_CLK_TCK);
  *user = (double)ut / tck;
  *sys = (double)st / tck;
  return (double)(ut + st) / tck;
}

/* Busy and total jiffies of each CPU from /proc/stat (busy = all but idle
 * and iowait), so the harness can see load from other processes. */
#define MAX_CPUS 64
typedef struct cpu_times {
  int n;
  unsigned long long busy[MAX_CPUS], total[MAX_CPUS];
} cpu_times;

static void read_cpu_times(cpu_times *t) {
  t->n = 0;
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') continue;
    int id;
    unsigned long long v[10] = {0};
    int got = sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &id, &v[0],
                     &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    if (got < 5 || id < 0 || id >= MAX_CPUS) continue;
    unsigned long long total = 0;
    for (int i = 0; i < 8; i++) total += v[i]; /* guest time is inside user */
    t->total[id] = total;
    t->busy[id] = total - v[3] - v[4];
    if (id + 1 > t->n) t->n = id + 1;
  }
  fclose(f);
}

/* VmRSS of a process in KiB; -1 if unreadable. */
static long proc_rss_kib(int pid) {
  if (pid <= 0) return -1;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) { kib = strtol(line + 6, NULL, 10); break; }
  fclose(f);
  return kib;
}

/* ------------------------------------------------------------------------- */
/* latency histogram: 64 sub-buckets per power of two (~1.5% resolution)     */

#define HIST_SUB 64
#define HIST_LINEAR 128
#define HIST_BUCKETS (HIST_LINEAR + 58 * HIST_SUB)
static uint64_t hist[HIST_BUCKETS];
static uint64_t hist_count, hist_max;

static void hist_add(uint64_t ns) {
  size_t idx;
  if (ns < HIST_LINEAR) {
    idx = (size_t)ns;
  } else {
    int e = 63 - __builtin_clzll(ns); /* >= 7 */
    idx = HIST_LINEAR + (size_t)(e - 7) * HIST_SUB + ((ns >> (e - 6)) & (HIST_SUB - 1));
  }
  if (idx >= HIST_BUCKETS) idx = HIST_BUCKETS - 1;
  hist[idx]++;
  hist_count++;
  if (ns > hist_max) hist_max = ns;
}

/* Midpoint of a bucket, ns. */
static double hist_value(size_t idx) {
  if (idx < HIST_LINEAR) return (double)idx;
  size_t k = idx - HIST_LINEAR;
  int e = (int)(k / HIST_SUB) + 7;
  double lo = (double)(((uint64_t)1 << e) + ((uint64_t)(k % HIST_SUB) << (e - 6)));
  return lo + (double)((uint64_t)1 << (e - 6)) / 2;
}

static double hist_quantile(double q) {
  if (!hist_count) return 0;
  uint64_t want = (uint64_t)(q * (double)hist_count);
  if (want >= hist_count) want = hist_count - 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < HIST_BUCKETS; i++) {
    seen += hist[i];
    if (seen > want) return hist_value(i);
  }
  return (double)hist_max;
}

/* ------------------------------------------------------------------------- */
/* payloads: 16 hex digits of the sequence number, then a pattern            */
/* (ASCII for text, random bytes for binary) starting at offset seq & 255     */

#define SEQ_DIGITS 16
static uint8_t *pattern; /* size + 256 bytes */
static const char hexd[] = "0123456789abcdef";

static size_t pattern_len; /* bytes in pattern */

/* Where message seq's payload starts in the pattern: seq & 255, or with
 * --json anywhere in a 1 MiB pattern, so that consecutive messages share
 * keys and structure (as JSON does) but not whole values, and a compressor
 * cannot just point back at the previous message. */
static size_t pat_off(uint64_t seq) {
  if (!opt.json) return (size_t)(seq & 255);
  return (size_t)((seq * 2654435761u) % (uint64_t)(pattern_len - opt.size));
}

static void put_seq(uint8_t *out, uint64_t seq) {
  for (int i = SEQ_DIGITS - 1; i >= 0; i--, seq >>= 4) out[i] = (uint8_t)hexd[seq & 15];
}

/* ------------------------------------------------------------------------- */
/* connections                                                               */

enum role { R_ECHO, R_SENDER, R_RECEIVER, R_IDLE };
enum cstate { C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSING, C_CLOSED };

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  int id;
  uint8_t role, state, closed_clean;
  /* handshake */
  char key[32];
  char accept[WS_ACCEPT_LEN];
  char *hs_buf;
  size_t hs_len;
  /* receive */
  ws_parser parser;
  uint8_t msg_op;          /* opcode of the message being received */
  uint8_t ctl_len;         /* control payload collected so far */
  uint8_t ctl[WS_FRAME_MAX_CONTROL];
  uint8_t seq_hdr[SEQ_DIGITS];
  uint64_t rx_pos;         /* bytes of the current message received */
  uint64_t rx_seq;         /* sequence of the current (echo) / next expected message */
  uint64_t msg_seq;        /* broadcast: sequence named by the current message */
  /* send */
  uint64_t tx_seq;         /* next sequence to send */
  int inflight;
  uint64_t *sent_at;       /* ring of K send times (echo, sender) */
  uint8_t *out;            /* frames waiting to be written */
  size_t out_len, out_cap;
  int writing;             /* a uv_write is pending */
  /* permessage-deflate (--deflate) */
  ws_pmd *pmd;
  uint8_t rx_z;            /* the message being received is compressed */
  uint8_t primed;          /* idle + deflate: its one message went and came back */
  ws_tls *tls;             /* --tls */
} conn;

typedef struct wreq {
  uv_write_t req;
  conn *c;
  size_t len;
  char data[];
} wreq;

static uv_loop_t *loop;
static conn *conns;
static int nconns;           /* all connections incl. the broadcast sender */
static int nreceivers;       /* broadcast */
static int started, opened, closed_count;
static struct sockaddr_storage server_addr;
static uv_timer_t phase_timer, deadline_timer, close_timer;
static ws_settings settings;

enum phase { P_CONNECT, P_SETTLE, P_WARMUP, P_MEASURE, P_STOP };
static int phase = P_CONNECT;
static uint64_t now_ns;

/* results */
static uint64_t t_conn_start, t_conn_end, t_start, t_end;
static double cpu_start, cpu_end, srv_conn_start = -1, srv_conn_end = -1;
static cpu_sample srv_start, srv_end;
static cpu_times cpus_start, cpus_end;
static long rss_start = -1, rss_conns = -1;
static uint64_t cnt_msgs, cnt_bytes, cnt_sent, cnt_missed, cnt_missed_total, cnt_pings;
static uint64_t cnt_wire_rx, cnt_wire_tx; /* bytes read / queued for writing in the window */
static ws_pmd_ctx pmd_ctx;
static ws_pmd_config pmd_cfg;
static uint8_t *plain;      /* one message before compression (--deflate) */
static uint8_t zout[64 * 1024]; /* inflated bytes, a piece at a time */
static uint64_t *bc_count; /* broadcast: receivers that have each in-flight seq */
static uint64_t bc_done;   /* broadcast: sequences completed (all receivers) */
static ws_tls_ctx *tls_ctx; /* --tls: client role, no verification */
static char tls_plain[(1 << 18) + (20 << 10)]; /* one read's plaintext */

static void start_connect(int i);
static void begin_phase(void);
static void conn_close(conn *c);
static void conn_opened(conn *c);

static void out_reserve(conn *c, size_t extra) {
  if (c->out_len + extra <= c->out_cap) return;
  size_t cap = c->out_cap ? c->out_cap : 256;
  while (cap < c->out_len + extra) cap *= 2;
  c->out = realloc(c->out, cap);
  if (!c->out) die("out of memory");
  c->out_cap = cap;
}

/* Appends one masked frame; payload may be NULL (then `len` bytes are
 * already at the write position, e.g. a message built in place). */
static uint8_t *out_frame_rsv(conn *c, unsigned op, unsigned rsv, const uint8_t *payload,
                              size_t len) {
  out_reserve(c, len + WS_FRAME_MAX_HEADER);
  uint64_t r = rng();
  uint8_t key[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), (uint8_t)(r >> 24)};
  uint8_t *h = c->out + c->out_len;
  size_t hl = ws_frame_header(h, op, 1, rsv, len, key);
  uint8_t *p = h + hl;
  if (payload) memcpy(p, payload, len);
  c->out_len += hl + len;
  if (phase == P_MEASURE) cnt_wire_tx += hl + len;
  return p; /* caller masks after filling */
}

static uint8_t *out_frame(conn *c, unsigned op, const uint8_t *payload, size_t len) {
  return out_frame_rsv(c, op, 0, payload, len);
}

/* dst = src ^ key, in one pass (copying, then masking in place, reads and
 * writes every byte twice: the client's largest cost with 64 KiB messages).
 * The key's phase is 0 at dst[0]. */
static void copy_masked(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4]) {
  uint32_t k32;
  memcpy(&k32, key, 4);
  const uint64_t k = (uint64_t)k32 << 32 | k32;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= k;
    memcpy(dst + i, &v, 8);
  }
  for (; i < len; i++) dst[i] = src[i] ^ key[i & 3];
}

static void send_message(conn *c) {
  if (c->pmd) {
    /* The message as it would go plain, then compressed into the frame. */
    uint64_t seq = c->tx_seq++;
    put_seq(plain, seq);
    memcpy(plain + SEQ_DIGITS, pattern + pat_off(seq) + SEQ_DIGITS, opt.size - SEQ_DIGITS);
    const uint8_t *z = plain;
    size_t zlen = opt.size;
    unsigned rsv = 0;
    int r = ws_pmd_compresses(c->pmd, opt.size)
                ? ws_pmd_deflate(c->pmd, plain, opt.size, 1, &z, &zlen) : WS_PMD_RAW;
    if (r == WS_PMD_OK) rsv = WS_RSV1;
    else if (r == WS_PMD_RAW) z = plain, zlen = opt.size;
    else die("conn %d: deflate failed", c->id);
    uint8_t *p = out_frame_rsv(c, opt.text ? WS_OP_TEXT : WS_OP_BINARY, rsv, z, zlen);
    ws_frame_mask(p, zlen, p - 4, 0);
    c->sent_at[seq % (uint64_t)opt.inflight] = now_ns;
    c->inflight++;
    cnt_sent++;
    return;
  }
  uint64_t seq = c->tx_seq++;
  uint8_t *p = out_frame(c, opt.text ? WS_OP_TEXT : WS_OP_BINARY, NULL, opt.size);
  put_seq(p, seq);
  ws_frame_mask(p, SEQ_DIGITS, p - 4, 0);
  _Static_assert(SEQ_DIGITS % 4 == 0, "the mask's phase restarts after the sequence digits");
  copy_masked(p + SEQ_DIGITS, pattern + pat_off(seq) + SEQ_DIGITS, opt.size - SEQ_DIGITS, p - 4);
  c->sent_at[seq % (uint64_t)opt.inflight] = now_ns;
  c->inflight++;
  cnt_sent++;
}

static void on_write(uv_write_t *req, int status);

static void wire_write(conn *c, const char *data, size_t len);

/* TLS: what was gathered in c->out is encrypted in one go and leaves with
 * whatever the layer has for the wire (handshake flights included). */
static void flush_tls(conn *c) {
  if (c->state == C_CLOSED) return;
  if (c->out_len) {
    if (ws_tls_write(c->tls, (const char *)c->out, c->out_len) != WS_TLS_OK)
      die("conn %d: TLS write: %s", c->id, ws_tls_error(c->tls));
    c->out_len = 0;
  }
  size_t n;
  const char *p = ws_tls_out(c->tls, &n);
  if (n) {
    wire_write(c, p, n);
    ws_tls_out_done(c->tls, n);
  }
}

static void flush(conn *c) {
  if (c->tls) {
    flush_tls(c);
    return;
  }
  if (c->writing || !c->out_len || c->state == C_CLOSED) return;
  wire_write(c, (const char *)c->out, c->out_len);
  c->out_len = 0;
}

/* Bytes for the socket: what the kernel does not take now is queued. */
static void wire_write(conn *c, const char *data, size_t len) {
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) {
    if (phase == P_STOP) { conn_close(c); return; }
    die("conn %d: write failed: %s", c->id, uv_strerror(n));
  }
  size_t rest = len - (size_t)n;
  if (rest) {
    wreq *w = malloc(sizeof *w + rest);
    if (!w) die("out of memory");
    memcpy(w->data, data + n, rest);
    w->c = c;
    w->len = rest;
    uv_buf_t wb = uv_buf_init(w->data, (unsigned)rest);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &wb, 1, on_write);
    if (rc) die("conn %d: uv_write: %s", c->id, uv_strerror(rc));
    c->writing++;
  }
}

static void on_write(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  conn *c = w->c;
  free(w);
  c->writing--;
  if (status < 0) {
    if (phase == P_STOP || status == UV_ECANCELED) return;
    die("conn %d: write failed: %s", c->id, uv_strerror(status));
  }
  flush(c);
}

static void on_closed(uv_handle_t *h) {
  conn *c = h->data;
  c->state = C_CLOSED;
  ws_pmd_free(c->pmd);
  c->pmd = NULL;
  free(c->out);
  c->out = NULL;
  c->out_cap = c->out_len = 0;
  free(c->hs_buf);
  c->hs_buf = NULL;
  ws_tls_free(c->tls);
  c->tls = NULL;
  if (++closed_count == nconns) {
    uv_close((uv_handle_t *)&phase_timer, NULL);
    uv_close((uv_handle_t *)&deadline_timer, NULL);
    uv_close((uv_handle_t *)&close_timer, NULL);
  }
}

static void conn_close(conn *c) {
  if (c->state == C_CLOSED || uv_is_closing((uv_handle_t *)&c->tcp)) return;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ------------------------------------------------------------------------- */
/* frames from the server                                                    */

static int fail_conn(conn *c, const char *what) {
  die("conn %d: %s (received %" PRIu64 " bytes into message %" PRIu64 ")", c->id, what, c->rx_pos,
      c->rx_seq);
  return WS_CB_ABORT;
}

static int on_header(ws_parser *p) {
  conn *c = p->data;
  if (WS_OP_IS_CONTROL(p->opcode)) {
    c->ctl_len = 0;
    return WS_CB_OK;
  }
  if (c->role == R_IDLE && phase != P_STOP && (c->primed || !opt.deflate))
    return fail_conn(c, "data frame on an idle connection");
  if (p->opcode != WS_OP_CONTINUATION) {
    unsigned want = opt.text ? WS_OP_TEXT : WS_OP_BINARY;
    if (p->opcode != want && c->role != R_IDLE)
      return fail_conn(c, opt.text ? "expected a text frame" : "expected a binary frame");
    c->msg_op = p->opcode;
    c->rx_pos = 0;
    c->rx_z = (p->rsv & WS_RSV1) != 0;
    if (c->rx_z && !c->pmd) return fail_conn(c, "compressed frame without deflate");
  } else if (p->rsv & WS_RSV1) {
    return fail_conn(c, "RSV1 on a continuation frame");
  }
  if (!c->rx_z && c->rx_pos + p->length > opt.size) return fail_conn(c, "message longer than sent");
  return WS_CB_OK;
}

/* Checks bytes [pos, pos+len) of a message against the expected payload of seq. */
static int check_bytes(conn *c, uint64_t seq, uint64_t pos, const uint8_t *at, size_t len) {
  if (pos < SEQ_DIGITS) {
    size_t n = SEQ_DIGITS - (size_t)pos < len ? SEQ_DIGITS - (size_t)pos : len;
    uint8_t want[SEQ_DIGITS];
    put_seq(want, seq);
    if (memcmp(at, want + pos, n)) return fail_conn(c, "echoed sequence number differs");
    at += n;
    pos += n;
    len -= n;
  }
  if (len && memcmp(at, pattern + pat_off(seq) + pos, len))
    return fail_conn(c, "echoed payload differs from what was sent");
  return WS_CB_OK;
}

static int rx_data(conn *c, const uint8_t *u, size_t len);

/* Inflates compressed payload (end = 1: the message's end) and checks it. */
static int rx_inflate(conn *c, const uint8_t *in, size_t len, int end) {
  for (;;) {
    size_t used = 0, got = 0;
    int r = end ? ws_pmd_inflate_end(c->pmd, zout, sizeof zout, &got)
                : ws_pmd_inflate(c->pmd, in, len, &used, zout, sizeof zout, &got);
    if (r < 0) return fail_conn(c, "compressed data from the server does not inflate");
    if (got && c->rx_pos + got > opt.size) return fail_conn(c, "message longer than sent");
    if (got && rx_data(c, zout, got) != WS_CB_OK) return WS_CB_ABORT;
    if (used) {
      in += used;
      len -= used;
    }
    if (r == WS_PMD_OK) return WS_CB_OK;
  }
}

static int on_chunk(ws_parser *p, const char *at, size_t len) {
  conn *c = p->data;
  const uint8_t *u = (const uint8_t *)at;
  if (WS_OP_IS_CONTROL(p->opcode)) {
    memcpy(c->ctl + c->ctl_len, u, len);
    c->ctl_len = (uint8_t)(c->ctl_len + len);
    return WS_CB_OK;
  }
  if (c->role == R_IDLE && (c->primed || phase == P_STOP)) return WS_CB_OK;
  if (c->rx_z) return rx_inflate(c, u, len, 0);
  return rx_data(c, u, len);
}

/* Message bytes (inflated), in order: checked against what was sent. */
static int rx_data(conn *c, const uint8_t *u, size_t len) {
  if (c->role == R_RECEIVER || c->role == R_SENDER) {
    /* broadcast: the sequence is in the first 16 bytes */
    if (c->rx_pos < SEQ_DIGITS) {
      size_t n = SEQ_DIGITS - (size_t)c->rx_pos < len ? SEQ_DIGITS - (size_t)c->rx_pos : len;
      memcpy(c->seq_hdr + c->rx_pos, u, n);
      c->rx_pos += n;
      u += n;
      len -= n;
      if (c->rx_pos == SEQ_DIGITS) {
        uint64_t s = 0;
        for (int i = 0; i < SEQ_DIGITS; i++) {
          const char *d = memchr(hexd, c->seq_hdr[i], 16);
          if (!d || !c->seq_hdr[i]) return fail_conn(c, "bad sequence number in broadcast");
          s = s << 4 | (uint64_t)(d - hexd);
        }
        c->msg_seq = s;
      }
      if (!len) return WS_CB_OK;
    }
    int rc = check_bytes(c, c->msg_seq, c->rx_pos, u, len);
    c->rx_pos += len;
    return rc;
  }
  int rc = check_bytes(c, c->rx_seq, c->rx_pos, u, len);
  c->rx_pos += len;
  return rc;
}

static void message_done(conn *c) {
  if (c->role == R_ECHO) {
    uint64_t seq = c->rx_seq++;
    if (c->inflight <= 0) { fail_conn(c, "echo of a message never sent"); return; }
    c->inflight--;
    if (phase == P_MEASURE) {
      cnt_msgs++;
      cnt_bytes += opt.size;
      hist_add(now_ns - c->sent_at[seq % (uint64_t)opt.inflight]);
    }
    if (phase == P_WARMUP || phase == P_MEASURE) send_message(c);
    return;
  }
  if (c->role == R_SENDER) {
    /* its own copy of the broadcast: checked, not counted */
    if (c->msg_seq != c->rx_seq) fail_conn(c, "sender's copies out of order");
    c->rx_seq++;
    return;
  }
  /* receiver */
  uint64_t s = c->msg_seq;
  if (s < c->rx_seq) { fail_conn(c, "broadcast out of order or repeated"); return; }
  conn *snd = &conns[0];
  if (s >= snd->tx_seq) { fail_conn(c, "broadcast of a message never sent"); return; }
  if (s > c->rx_seq) {
    cnt_missed_total += s - c->rx_seq;
    if (phase == P_MEASURE) cnt_missed += s - c->rx_seq;
  }
  for (uint64_t q = c->rx_seq; q <= s; q++) {
    if (q < bc_done) continue; /* already completed (cannot happen in order) */
    if (++bc_count[q % (uint64_t)opt.inflight] == (uint64_t)nreceivers) {
      /* every receiver has q: complete, in order */
      bc_count[q % (uint64_t)opt.inflight] = 0;
      bc_done = q + 1;
      snd->inflight--;
      if (phase == P_MEASURE) hist_add(now_ns - snd->sent_at[q % (uint64_t)opt.inflight]);
      if (phase == P_WARMUP || phase == P_MEASURE) {
        send_message(snd);
        flush(snd);
      }
    }
  }
  c->rx_seq = s + 1;
  if (phase == P_MEASURE) {
    cnt_msgs++;
    cnt_bytes += opt.size;
  }
}

static int on_complete(ws_parser *p) {
  conn *c = p->data;
  switch (p->opcode) {
    case WS_OP_PING:
      cnt_pings++;
      if (c->state == C_OPEN) {
        uint8_t *q = out_frame(c, WS_OP_PONG, c->ctl, c->ctl_len);
        ws_frame_mask(q, c->ctl_len, q - 4, 0);
      }
      return WS_CB_OK;
    case WS_OP_PONG:
      return WS_CB_OK;
    case WS_OP_CLOSE:
      if (c->state == C_CLOSING) {
        c->closed_clean = 1;
        conn_close(c);
        return WS_CB_PAUSE;
      }
      {
        char why[160];
        unsigned code = c->ctl_len >= 2 ? (unsigned)(c->ctl[0] << 8 | c->ctl[1]) : 1005;
        snprintf(why, sizeof why, "server closed the connection (code %u, \"%.*s\")", code,
                 c->ctl_len > 2 ? c->ctl_len - 2 : 0, (const char *)c->ctl + 2);
        return fail_conn(c, why);
      }
    default:
      break;
  }
  if (!p->fin) return WS_CB_OK;
  if (c->role == R_IDLE && (c->primed || phase == P_STOP)) return WS_CB_OK;
  if (c->rx_z && rx_inflate(c, NULL, 0, 1) != WS_CB_OK) return WS_CB_ABORT;
  if (c->role == R_IDLE) { /* idle + deflate: the one message is back */
    if (c->rx_pos != opt.size) return fail_conn(c, "message shorter than sent");
    c->primed = 1;
    c->inflight--;
    conn_opened(c);
    return WS_CB_OK;
  }
  if (c->rx_pos != opt.size) return fail_conn(c, "message shorter than sent");
  message_done(c);
  return WS_CB_OK;
}

/* ------------------------------------------------------------------------- */
/* reading, handshake                                                        */

static char rbuf[1 << 18];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h;
  (void)suggested;
  *b = uv_buf_init(rbuf, sizeof rbuf);
}

static void feed_frames(conn *c, char *data, size_t len) {
  ws_parser *p = &c->parser;
  while (len && c->state != C_CLOSED && !uv_is_closing((uv_handle_t *)&c->tcp)) {
    size_t n = ws_parser_execute(p, &settings, data, len);
    if (p->error != WS_PE_OK) die("conn %d: bad frame from server: %s", c->id, ws_parser_strerror(p->error));
    data += n;
    len -= n;
  }
}

/* Looks for `name:` (case-insensitive) in a response head; returns the
 * trimmed value and its length, or NULL. */
static const char *find_header(const char *head, size_t len, const char *name, size_t *vlen) {
  size_t nl = strlen(name);
  const char *end = head + len;
  const char *line = memchr(head, '\n', len);
  while (line && line + 1 < end) {
    line++;
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol) break;
    if ((size_t)(eol - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
      const char *v = line + nl + 1, *ve = eol;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      *vlen = (size_t)(ve - v);
      return v;
    }
    line = eol;
  }
  return NULL;
}

static void handshake_bytes(conn *c, char *data, size_t len) {
  enum { HS_MAX = 4096 };
  if (!c->hs_buf) c->hs_buf = malloc(HS_MAX);
  size_t take = HS_MAX - c->hs_len < len ? HS_MAX - c->hs_len : len;
  memcpy(c->hs_buf + c->hs_len, data, take);
  size_t old = c->hs_len;
  c->hs_len += take;
  char *end = memmem(c->hs_buf, c->hs_len, "\r\n\r\n", 4);
  if (!end) {
    if (c->hs_len == HS_MAX) die("conn %d: handshake response over %d bytes", c->id, HS_MAX);
    return;
  }
  size_t head = (size_t)(end - c->hs_buf) + 4;
  if (strncmp(c->hs_buf, "HTTP/1.1 101", 12) != 0) {
    char *eol = memchr(c->hs_buf, '\r', head);
    die("conn %d: upgrade refused: %.*s", c->id, (int)(eol - c->hs_buf), c->hs_buf);
  }
  size_t vl;
  const char *v = find_header(c->hs_buf, head, "sec-websocket-accept", &vl);
  if (!v || vl != WS_ACCEPT_LEN || memcmp(v, c->accept, WS_ACCEPT_LEN))
    die("conn %d: missing or wrong Sec-WebSocket-Accept", c->id);
  v = find_header(c->hs_buf, head, "sec-websocket-extensions", &vl);
  if (v && !opt.deflate) die("conn %d: server negotiated an extension we did not offer", c->id);
  if (opt.deflate) {
    ws_pmd_params params;
    if (!v || ws_pmd_client_accept(&pmd_cfg, v, vl, &params) != 1)
      die("conn %d: server did not accept permessage-deflate validly (%.*s)", c->id,
          v ? (int)vl : 4, v ? v : "none");
    c->pmd = ws_pmd_new(&pmd_ctx, &params, WS_PMD_CLIENT);
    if (!c->pmd) die("out of memory");
    c->parser.rsv_allowed = WS_RSV1;
  }
  c->state = C_OPEN;
  free(c->hs_buf);
  c->hs_buf = NULL;
  /* bytes of `data` past the head are frames */
  size_t used = head - old;
  conn_opened(c);
  if (used < len) feed_frames(c, data + used, len - used);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  conn *c = s->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (phase == P_STOP) { conn_close(c); return; }
    die("conn %d: connection lost: %s", c->id, uv_strerror((int)nread));
  }
  now_ns = uv_hrtime();
  if (phase == P_MEASURE) cnt_wire_rx += (uint64_t)nread;
  if (c->tls) {
    if (ws_tls_feed(c->tls, b->base, (size_t)nread) != WS_TLS_OK) die("out of memory");
    long n;
    while ((n = ws_tls_read(c->tls, tls_plain, sizeof tls_plain)) > 0) {
      if (c->state == C_HANDSHAKE) handshake_bytes(c, tls_plain, (size_t)n);
      else feed_frames(c, tls_plain, (size_t)n);
      if (c->state == C_CLOSED || uv_is_closing((uv_handle_t *)&c->tcp)) break;
    }
    if (n < 0) {
      if (phase == P_STOP) { conn_close(c); return; }
      die("conn %d: TLS: %s", c->id, n == WS_TLS_EOF ? "close_notify" : ws_tls_error(c->tls));
    }
    ws_tls_discard_input(c->tls);
  } else if (c->state == C_HANDSHAKE) {
    handshake_bytes(c, b->base, (size_t)nread);
  } else {
    feed_frames(c, b->base, (size_t)nread);
  }
  flush(c);
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->data;
  if (status < 0) die("conn %d: connect failed: %s", c->id, uv_strerror(status));
  uv_tcp_nodelay(&c->tcp, 1);
  c->state = C_HANDSHAKE;
  uint8_t raw[16];
  for (int i = 0; i < 16; i += 8) {
    uint64_t r = rng();
    memcpy(raw + i, &r, 8);
  }
  size_t kl = ws_base64_encode(raw, 16, c->key, sizeof c->key);
  ws_accept_key(c->key, kl, c->accept);
  out_reserve(c, 512);
  char offer[WS_PMD_HEADER_MAX] = "";
  if (opt.deflate) ws_pmd_client_offer(&pmd_cfg, offer, sizeof offer);
  int n = snprintf((char *)c->out, c->out_cap,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %.*s\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                   opt.path, opt.host, opt.port, (int)kl, c->key,
                   opt.deflate ? "Sec-WebSocket-Extensions: " : "", offer,
                   opt.deflate ? "\r\n" : "");
  c->out_len = (size_t)n;
  if (opt.tls) { /* the request waits in the layer until the handshake is done */
    c->tls = ws_tls_new(tls_ctx, NULL);
    if (!c->tls || ws_tls_start(c->tls) != WS_TLS_OK) die("conn %d: TLS start failed", c->id);
  }
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc) die("conn %d: read_start: %s", c->id, uv_strerror(rc));
  flush(c);
}

static void start_connect(int i) {
  conn *c = &conns[i];
  c->id = i;
  c->state = C_CONNECTING;
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  c->creq.data = c;
  ws_parser_init(&c->parser);
  c->parser.role = WS_ROLE_CLIENT;
  c->parser.data = c;
  int rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&server_addr, on_connect);
  if (rc) die("conn %d: connect: %s", i, uv_strerror(rc));
  started++;
}

static void conn_opened(conn *c) {
  /* idle + deflate: a connection counts as open once one message (compressed
   * both ways) has gone to the server and come back. */
  if (c->role == R_IDLE && opt.deflate && !c->primed) {
    send_message(c);
    flush(c);
    return;
  }
  opened++;
  if (started < nconns) start_connect(started);
  if (opened == nconns) {
    t_conn_end = uv_hrtime();
    srv_conn_end = proc_cpu_seconds(opt.server_pid);
    begin_phase();
  }
}

/* ------------------------------------------------------------------------- */
/* phases                                                                    */

static void on_close_timer(uv_timer_t *t) {
  (void)t;
  for (int i = 0; i < nconns; i++) conn_close(&conns[i]);
}

static void stop_all(void) {
  phase = P_STOP;
  for (int i = 0; i < nconns; i++) {
    conn *c = &conns[i];
    if (c->state != C_OPEN) { conn_close(c); continue; }
    c->state = C_CLOSING;
    uint8_t cp[2] = {0x03, 0xE8}; /* 1000 */
    uint8_t *q = out_frame(c, WS_OP_CLOSE, cp, 2);
    ws_frame_mask(q, 2, q - 4, 0);
    flush(c);
  }
  uv_timer_start(&close_timer, on_close_timer, 2000, 0);
}

static void on_phase_timer(uv_timer_t *t) {
  (void)t;
  now_ns = uv_hrtime();
  switch (phase) {
    case P_SETTLE:
      if (opt.mode == MODE_IDLE) {
        rss_conns = proc_rss_kib(opt.server_pid);
        stop_all();
        return;
      }
      phase = P_WARMUP;
      if (opt.mode == MODE_ECHO) {
        for (int i = 0; i < nconns; i++) {
          for (int k = 0; k < opt.inflight; k++) send_message(&conns[i]);
          flush(&conns[i]);
        }
      } else {
        for (int k = 0; k < opt.inflight; k++) send_message(&conns[0]);
        flush(&conns[0]);
      }
      uv_timer_start(&phase_timer, on_phase_timer, (uint64_t)(opt.warmup * 1000), 0);
      return;
    case P_WARMUP:
      phase = P_MEASURE;
      cnt_msgs = cnt_bytes = cnt_missed = 0;
      memset(hist, 0, sizeof hist);
      hist_count = hist_max = 0;
      t_start = uv_hrtime();
      cpu_start = cpu_seconds();
      proc_sample(opt.server_pid, &srv_start);
      read_cpu_times(&cpus_start);
      uv_timer_start(&phase_timer, on_phase_timer, (uint64_t)(opt.duration * 1000), 0);
      return;
    case P_MEASURE:
      t_end = uv_hrtime();
      cpu_end = cpu_seconds();
      proc_sample(opt.server_pid, &srv_end);
      read_cpu_times(&cpus_end);
      stop_all();
      return;
    default:
      return;
  }
}

static void begin_phase(void) {
  /* every connection is upgraded; give the server a moment to register them
   * (broadcast sets are filled after the 101 is written), then start */
  phase = P_SETTLE;
  uint64_t ms = opt.mode == MODE_ECHO ? 0 : (uint64_t)(opt.settle * 1000);
  uv_timer_start(&phase_timer, on_phase_timer, ms, 0);
}

static void on_deadline(uv_timer_t *t) {
  (void)t;
  die("timed out after %.1f s (phase %d, %d/%d connections open)", opt.timeout, phase, opened,
      nconns);
}

/* ------------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --port P [--host H] [--path /] [--mode echo|broadcast|idle]\n"
          "  [--conns N] [--inflight K] [--size S] [--warmup W] [--duration D]\n"
          "  [--text] [--concurrency C] [--settle SEC] [--server-pid PID] [--timeout SEC]\n"
          "  [--deflate] [--json] [--tls]\n"
          "  echo: N connections with K messages of S bytes in flight each\n"
          "  broadcast: 1 sender + N receivers, K messages in flight\n"
          "  idle: open N connections, report upgrades/s and the server's RSS\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (i++, 1))
    if (ARG("--host")) opt.host = v;
    else if (ARG("--port")) opt.port = atoi(v);
    else if (ARG("--path")) opt.path = v;
    else if (ARG("--mode")) {
      if (!strcmp(v, "echo")) opt.mode = MODE_ECHO;
      else if (!strcmp(v, "broadcast")) opt.mode = MODE_BROADCAST;
      else if (!strcmp(v, "idle")) opt.mode = MODE_IDLE;
      else usage();
    } else if (ARG("--conns")) opt.conns = atoi(v);
    else if (ARG("--inflight")) opt.inflight = atoi(v);
    else if (ARG("--size")) opt.size = (size_t)strtoull(v, NULL, 10);
    else if (ARG("--warmup")) opt.warmup = atof(v);
    else if (ARG("--duration")) opt.duration = atof(v);
    else if (ARG("--timeout")) opt.timeout = atof(v);
    else if (ARG("--settle")) opt.settle = atof(v);
    else if (ARG("--concurrency")) opt.concurrency = atoi(v);
    else if (ARG("--server-pid")) opt.server_pid = atoi(v);
    else if (!strcmp(a, "--text")) opt.text = 1;
    else if (!strcmp(a, "--deflate")) opt.deflate = 1;
    else if (!strcmp(a, "--tls")) opt.tls = 1;
    else if (!strcmp(a, "--json")) opt.json = opt.text = 1;
    else if (!strcmp(a, "--binary")) opt.text = 0;
    else usage();
#undef ARG
  }
  if (opt.port <= 0 || opt.conns <= 0 || opt.inflight <= 0 || opt.concurrency <= 0) usage();
  if (opt.size < SEQ_DIGITS) die("--size must be at least %d", SEQ_DIGITS);
  if (opt.timeout <= 0) opt.timeout = opt.warmup + opt.duration + opt.settle + 60;

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  rng_state ^= (uint64_t)getpid() * 0x100000001B3ull ^ uv_hrtime();
  if (!rng_state) rng_state = 1;

  pattern_len = opt.size + 256;
  if (opt.json && pattern_len < (1u << 20) + opt.size) pattern_len = (1u << 20) + opt.size;
  pattern = malloc(pattern_len);
  if (!pattern) die("out of memory");
  for (size_t i = 0; i < opt.size + 256; i++) {
    uint64_t r = rng();
    pattern[i] = opt.text ? (uint8_t)("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -"[r & 63])
                          : (uint8_t)(r >> 24);
  }
  if (opt.json) { /* records like {"id":123456,"name":"item-07","price":12.34,"ok":true}, */
    static const char *names[] = {"alpha", "beta", "gamma", "delta", "omega"};
    size_t at = 0, cap = pattern_len;
    while (at < cap) {
      char rec[128];
      uint64_t r = rng();
      int n = snprintf(rec, sizeof rec, "{\"id\":%u,\"name\":\"%s-%02u\",\"price\":%u.%02u,"
                       "\"ok\":%s},", (unsigned)(r % 1000000), names[(r >> 20) % 5],
                       (unsigned)((r >> 24) % 100), (unsigned)((r >> 32) % 1000),
                       (unsigned)((r >> 42) % 100), (r >> 50) & 1 ? "true" : "false");
      size_t take = (size_t)n < cap - at ? (size_t)n : cap - at;
      memcpy(pattern + at, rec, take);
      at += take;
    }
  }
  if (opt.deflate) {
    ws_pmd_config_default(&pmd_cfg);
    /* Like a browser: our compressor at 15 bits, and no request to shrink
     * the server's window (the offer is Chrome's). */
    pmd_cfg.window_bits = 15;
    pmd_cfg.mem_level = 8;
    pmd_cfg.peer_window_bits = 15;
    pmd_cfg.filtered = 0; /* zlib's default strategy, as browsers use */
    pmd_cfg.threshold = 0;
    ws_pmd_ctx_init(&pmd_ctx, &pmd_cfg);
    plain = malloc(opt.size);
    if (!plain) die("out of memory");
  }

  if (opt.tls) {
    ws_tls_config tc;
    ws_tls_config_default(&tc);
    tc.role = WS_TLS_CLIENT;
    tc.insecure_no_verify = 1;
    char err[WS_TLS_ERRBUF];
    tls_ctx = ws_tls_ctx_new(&tc, err, sizeof err);
    if (!tls_ctx) die("TLS context: %s", err);
  }

  nconns = opt.mode == MODE_BROADCAST ? opt.conns + 1 : opt.conns;
  nreceivers = opt.conns;
  conns = calloc((size_t)nconns, sizeof *conns);
  if (!conns) die("out of memory");
  for (int i = 0; i < nconns; i++) {
    conn *c = &conns[i];
    c->role = opt.mode == MODE_IDLE ? R_IDLE
              : opt.mode == MODE_ECHO ? R_ECHO
              : i == 0 ? R_SENDER
                       : R_RECEIVER;
    if (c->role == R_ECHO || c->role == R_SENDER || (c->role == R_IDLE && opt.deflate)) {
      c->sent_at = calloc((size_t)opt.inflight, sizeof *c->sent_at);
      if (!c->sent_at) die("out of memory");
    }
  }
  bc_count = calloc((size_t)opt.inflight, sizeof *bc_count);

  settings.on_header = on_header;
  settings.on_chunk = on_chunk;
  settings.on_complete = on_complete;

  struct sockaddr_in *sin = (struct sockaddr_in *)&server_addr;
  if (uv_ip4_addr(opt.host, opt.port, sin) != 0 &&
      uv_ip6_addr(opt.host, opt.port, (struct sockaddr_in6 *)&server_addr) != 0)
    die("bad host %s", opt.host);

  loop = uv_default_loop();
  uv_timer_init(loop, &phase_timer);
  uv_timer_init(loop, &deadline_timer);
  uv_timer_init(loop, &close_timer);
  uv_timer_start(&deadline_timer, on_deadline, (uint64_t)(opt.timeout * 1000), 0);
  uv_unref((uv_handle_t *)&deadline_timer);

  rss_start = proc_rss_kib(opt.server_pid);
  srv_conn_start = proc_cpu_seconds(opt.server_pid);
  t_conn_start = uv_hrtime();
  int first = nconns < opt.concurrency ? nconns : opt.concurrency;
  for (int i = 0; i < first; i++) start_connect(i);

  uv_run(loop, UV_RUN_DEFAULT);

  int unclean = 0;
  for (int i = 0; i < nconns; i++) unclean += !conns[i].closed_clean;

  double conn_secs = (double)(t_conn_end - t_conn_start) / 1e9;
  printf("{\"mode\": \"%s\", \"conns\": %d, \"inflight\": %d, \"size\": %zu, \"text\": %s",
         opt.mode == MODE_ECHO ? "echo" : opt.mode == MODE_BROADCAST ? "broadcast" : "idle",
         opt.conns, opt.inflight, opt.size, opt.text ? "true" : "false");
  printf(", \"connect_s\": %.6f, \"conns_per_s\": %.1f", conn_secs,
         conn_secs > 0 ? nconns / conn_secs : 0.0);
  if (srv_conn_start >= 0 && srv_conn_end >= 0)
    printf(", \"server_cpu_connect_s\": %.3f", srv_conn_end - srv_conn_start);
  if (opt.mode == MODE_IDLE) {
    printf(", \"rss_start_kib\": %ld, \"rss_conns_kib\": %ld", rss_start, rss_conns);
    if (rss_start >= 0 && rss_conns >= 0)
      printf(", \"kib_per_conn\": %.3f", (double)(rss_conns - rss_start) / nconns);
  } else {
    double secs = (double)(t_end - t_start) / 1e9;
    double ccpu = cpu_end - cpu_start;
    printf(", \"seconds\": %.6f, \"messages\": %" PRIu64 ", \"msgs_per_s\": %.1f", secs, cnt_msgs,
           cnt_msgs / secs);
    printf(", \"mb_per_s\": %.3f", (double)cnt_bytes / secs / 1e6);
    printf(", \"lat_p50_us\": %.2f, \"lat_p99_us\": %.2f, \"lat_max_us\": %.2f",
           hist_quantile(0.50) / 1e3, hist_quantile(0.99) / 1e3, (double)hist_max / 1e3);
    printf(", \"client_cpu_s\": %.3f, \"client_cpu_pct\": %.1f", ccpu, 100 * ccpu / secs);
    if (srv_start.user >= 0 && srv_end.user >= 0) {
      double su = srv_end.user - srv_start.user, ss = srv_end.sys - srv_start.sys;
      double scpu = su + ss;
      printf(", \"server_cpu_s\": %.3f, \"server_user_s\": %.3f, \"server_sys_s\": %.3f"
             ", \"server_cpu_pct\": %.1f", scpu, su, ss, 100 * scpu / secs);
      if (scpu > 0) printf(", \"msgs_per_server_cpu_s\": %.1f", cnt_msgs / scpu);
    }
    if (cpus_start.n && cpus_start.n == cpus_end.n) {
      printf(", \"cpu_busy_pct\": [");
      for (int i = 0; i < cpus_end.n; i++) {
        unsigned long long tot = cpus_end.total[i] - cpus_start.total[i];
        unsigned long long busy = cpus_end.busy[i] - cpus_start.busy[i];
        printf("%s%.1f", i ? ", " : "", tot ? 100.0 * (double)busy / (double)tot : 0.0);
      }
      printf("]");
    }
    if (srv_start.syscr >= 0 && srv_end.syscr >= 0 && cnt_msgs)
      printf(", \"server_reads_per_msg\": %.3f, \"server_writes_per_msg\": %.3f",
             (double)(srv_end.syscr - srv_start.syscr) / (double)cnt_msgs,
             (double)(srv_end.syscw - srv_start.syscw) / (double)cnt_msgs);
    if (opt.mode == MODE_BROADCAST)
      printf(", \"broadcasts_completed\": %" PRIu64 ", \"missed\": %" PRIu64
             ", \"missed_before_window\": %" PRIu64,
             bc_done, cnt_missed, cnt_missed_total - cnt_missed);
  }
  if (opt.mode != MODE_IDLE) {
    printf(", \"deflate\": %s, \"wire_rx_bytes\": %" PRIu64 ", \"wire_tx_bytes\": %" PRIu64,
           opt.deflate ? "true" : "false", cnt_wire_rx, cnt_wire_tx);
    if (cnt_msgs) printf(", \"wire_bytes_per_msg\": %.1f", (double)(cnt_wire_rx + cnt_wire_tx) /
                         (double)cnt_msgs);
  }
  printf(", \"pings\": %" PRIu64 ", \"unclean_closes\": %d}\n", cnt_pings, unclean);
  if (opt.mode == MODE_BROADCAST && cnt_missed) {
    fprintf(stderr, "loadgen: %" PRIu64 " broadcast deliveries missed in the window\n", cnt_missed);
    return 1;
  }
  return 0;
}
