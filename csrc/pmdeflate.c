/* pmdeflate.c - permessage-deflate negotiation and streams. See pmdeflate.h.
 *
 * The extension header is parsed element by element: a syntax error inside
 * one element skips to the next top-level comma (outside quoted strings), so
 * a malformed offer is declined without hiding the offers after it.
 */
#include "pmdeflate.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define PMD_NAME "permessage-deflate"
/* Parameters kept per element; more means a duplicate or unknown one for
 * permessage-deflate (it has four), so the element is declined anyway. */
#define MAX_PARAMS 8
/* Longest parameter value kept (a window size is 1-2 digits). */
#define MAX_VALUE 15
/* Output buffers larger than this are not kept between messages. */
#define OBUF_KEEP (64 * 1024)
/* zlib's avail_in/avail_out are 32-bit: feed at most this per call. */
#define ZCHUNK ((size_t)1 << 30)

void ws_pmd_config_default(ws_pmd_config *cfg) {
  cfg->window_bits = 12;
  cfg->mem_level = 5;
  cfg->level = 6;
  cfg->filtered = 1;
  cfg->peer_window_bits = 14;
  cfg->peer_no_context_takeover = 0;
  cfg->no_context_takeover = 0;
  cfg->threshold = 64;
}

/* ---- header syntax (RFC 6455 9.1, RFC 7230 3.2.6) ------------------------ */

typedef struct param {
  const char *name;
  size_t name_len;
  char value[MAX_VALUE + 1]; /* unquoted, NUL-terminated */
  size_t value_len;
  uint8_t has_value;
  uint8_t value_too_long;
} param;

typedef struct element {
  const char *name;
  size_t name_len;
  param params[MAX_PARAMS];
  int nparams;
  uint8_t bad;      /* syntax error somewhere in the element */
  uint8_t overflow; /* more than MAX_PARAMS parameters */
} element;

static int is_tchar(unsigned char ch) {
  if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) return 1;
  return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int is_ows(char ch) { return ch == ' ' || ch == '\t'; }

static void skip_ows(const char **p, const char *end) {
  while (*p < end && is_ows(**p)) (*p)++;
}

static size_t token_len(const char *p, const char *end) {
  size_t n = 0;
  while (p + n < end && is_tchar((unsigned char)p[n])) n++;
  return n;
}

/* Skips to the next top-level comma (or the end), past quoted strings. */
static void skip_element(const char **p, const char *end) {
  while (*p < end && **p != ',') {
    if (**p == '"') {
      (*p)++;
      while (*p < end && **p != '"') {
        if (**p == '\\' && *p + 1 < end) (*p)++;
        (*p)++;
      }
      if (*p < end) (*p)++;
    } else {
      (*p)++;
    }
  }
}

/* A quoted-string at *p (which is '"'): unescapes into v. 0, or -1. */
static int parse_quoted(const char **p, const char *end, param *v) {
  const char *s = *p + 1;
  v->value_len = 0;
  while (s < end && *s != '"') {
    unsigned char ch = (unsigned char)*s;
    if (ch == '\\') {
      if (++s >= end) return -1;
      ch = (unsigned char)*s;
    }
    /* qdtext / quoted-pair: HTAB, SP, VCHAR, obs-text; never CTLs. */
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return -1;
    if (v->value_len < MAX_VALUE) v->value[v->value_len++] = (char)ch;
    else v->value_too_long = 1;
    s++;
  }
  if (s >= end) return -1;
  v->value[v->value_len] = 0;
  *p = s + 1;
  return 0;
}

/* Parses one element at *p up to the next top-level comma, which is left in
 * place. Returns 0 for an empty element (RFC 7230 7: ignored), 1 otherwise
 * (check e->bad). */
static int parse_element(const char **p, const char *end, element *e) {
  memset(e, 0, sizeof *e);
  skip_ows(p, end);
  if (*p >= end || **p == ',') return 0;
  size_t n = token_len(*p, end);
  if (n == 0) goto bad;
  e->name = *p;
  e->name_len = n;
  *p += n;
  for (;;) {
    skip_ows(p, end);
    if (*p >= end || **p == ',') return 1;
    if (**p != ';') goto bad;
    (*p)++;
    skip_ows(p, end);
    n = token_len(*p, end);
    if (n == 0) goto bad;
    param tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.name = *p;
    tmp.name_len = n;
    *p += n;
    skip_ows(p, end);
    if (*p < end && **p == '=') {
      (*p)++;
      skip_ows(p, end);
      tmp.has_value = 1;
      if (*p < end && **p == '"') {
        if (parse_quoted(p, end, &tmp) != 0) goto bad;
        /* RFC 6455 9.1: an unquoted value must be a token. */
        if (tmp.value_len == 0 || token_len(tmp.value, tmp.value + tmp.value_len) != tmp.value_len)
          e->bad = 1;
      } else {
        n = token_len(*p, end);
        if (n == 0) goto bad;
        if (n > MAX_VALUE) tmp.value_too_long = 1;
        size_t keep = n > MAX_VALUE ? MAX_VALUE : n;
        memcpy(tmp.value, *p, keep);
        tmp.value[keep] = 0;
        tmp.value_len = keep;
        *p += n;
      }
    }
    if (e->nparams == MAX_PARAMS) e->overflow = 1;
    else e->params[e->nparams++] = tmp;
  }
bad:
  e->bad = 1;
  skip_element(p, end);
  return 1;
}

static int name_is(const char *s, size_t n, const char *lit) {
  size_t m = strlen(lit);
  if (n != m) return 0;
  for (size_t i = 0; i < n; i++) {
    char a = s[i];
    if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
    if (a != lit[i]) return 0;
  }
  return 1;
}

/* RFC 7692 7.1.2: a decimal 8..15 without leading zeros; -1 otherwise. */
static int window_value(const param *v) {
  if (!v->has_value || v->value_too_long) return -1;
  const char *s = v->value;
  size_t n = v->value_len;
  if (n == 1 && (s[0] == '8' || s[0] == '9')) return s[0] - '0';
  if (n == 2 && s[0] == '1' && s[1] >= '0' && s[1] <= '5') return 10 + (s[1] - '0');
  return -1;
}

/* The permessage-deflate parameters of one element, checked once each. */
typedef struct pmd_ask {
  uint8_t snct, cnct;          /* *_no_context_takeover present */
  uint8_t has_sbits, has_cbits; /* *_max_window_bits present */
  int sbits, cbits;            /* their values, 0 when given without one */
} pmd_ask;

static int read_params(const element *e, pmd_ask *a, int response) {
  memset(a, 0, sizeof *a);
  if (e->bad || e->overflow || !name_is(e->name, e->name_len, PMD_NAME)) return -1;
  for (int i = 0; i < e->nparams; i++) {
    const param *v = &e->params[i];
    if (name_is(v->name, v->name_len, "server_no_context_takeover")) {
      if (a->snct || v->has_value) return -1;
      a->snct = 1;
    } else if (name_is(v->name, v->name_len, "client_no_context_takeover")) {
      if (a->cnct || v->has_value) return -1;
      a->cnct = 1;
    } else if (name_is(v->name, v->name_len, "server_max_window_bits")) {
      if (a->has_sbits || (a->sbits = window_value(v)) < 0) return -1;
      a->has_sbits = 1;
    } else if (name_is(v->name, v->name_len, "client_max_window_bits")) {
      if (a->has_cbits) return -1;
      a->has_cbits = 1;
      /* An offer may name it without a value; a response must give one. */
      if (v->has_value || response) {
        if ((a->cbits = window_value(v)) < 0) return -1;
      }
    } else {
      return -1; /* unknown parameter */
    }
  }
  return 0;
}

static int min_int(int a, int b) { return a < b ? a : b; }

size_t ws_pmd_format_answer(const ws_pmd_params *p, char *out, size_t cap) {
  if (cap < WS_PMD_HEADER_MAX) return 0;
  int n = snprintf(out, cap, "%s%s%s", PMD_NAME,
                   p->server_no_context_takeover ? "; server_no_context_takeover" : "",
                   p->client_no_context_takeover ? "; client_no_context_takeover" : "");
  if (p->answer_server_bits)
    n += snprintf(out + n, cap - (size_t)n, "; server_max_window_bits=%u",
                  (unsigned)p->server_max_window_bits);
  if (p->answer_client_bits)
    n += snprintf(out + n, cap - (size_t)n, "; client_max_window_bits=%u",
                  (unsigned)p->client_max_window_bits);
  return (size_t)n;
}

int ws_pmd_negotiate(const ws_pmd_config *cfg, const char *value, size_t len, ws_pmd_params *out,
                     char *resp, size_t resp_cap, size_t *resp_len) {
  if (resp_cap < WS_PMD_HEADER_MAX) return -1;
  const char *p = value, *end = value + len;
  element e;
  while (p < end) {
    int got = parse_element(&p, end, &e);
    if (p < end) p++; /* the comma */
    pmd_ask a;
    if (!got || read_params(&e, &a, 0) != 0) continue;
    ws_pmd_params r;
    memset(&r, 0, sizeof r);
    r.server_no_context_takeover = (uint8_t)(a.snct || cfg->no_context_takeover);
    r.client_no_context_takeover = (uint8_t)(a.cnct || cfg->peer_no_context_takeover);
    r.server_max_window_bits = 15;
    if (a.has_sbits) {
      r.server_max_window_bits = (uint8_t)min_int(a.sbits, cfg->window_bits);
      r.answer_server_bits = 1;
    }
    r.client_max_window_bits = 15;
    if (a.has_cbits) {
      r.client_max_window_bits = (uint8_t)min_int(a.cbits ? a.cbits : 15, cfg->peer_window_bits);
      /* 8 only to a client that offered 8 itself: zlib cannot compress raw
       * deflate within 8 bits, and zlib-based clients (websockets) fail the
       * connection on an answer of 8 they did not offer. */
      if (a.cbits != 8 && r.client_max_window_bits < 9) r.client_max_window_bits = 9;
      r.answer_client_bits = 1;
    }
    *out = r;
    *resp_len = ws_pmd_format_answer(&r, resp, resp_cap);
    return 1;
  }
  resp[0] = 0;
  *resp_len = 0;
  return 0;
}

size_t ws_pmd_client_offer(const ws_pmd_config *cfg, char *out, size_t cap) {
  if (cap < WS_PMD_HEADER_MAX) return 0;
  int n = snprintf(out, cap, "%s; client_max_window_bits", PMD_NAME);
  if (cfg->peer_window_bits < 15)
    n += snprintf(out + n, cap - (size_t)n, "; server_max_window_bits=%u",
                  (unsigned)cfg->peer_window_bits);
  if (cfg->peer_no_context_takeover)
    n += snprintf(out + n, cap - (size_t)n, "; server_no_context_takeover");
  if (cfg->no_context_takeover)
    n += snprintf(out + n, cap - (size_t)n, "; client_no_context_takeover");
  return (size_t)n;
}

int ws_pmd_client_accept(const ws_pmd_config *cfg, const char *value, size_t len,
                         ws_pmd_params *out) {
  const char *p = value, *end = value + len;
  element e, first;
  int count = 0;
  while (p < end) {
    int got = parse_element(&p, end, &e);
    if (p < end) p++;
    if (!got) continue;
    if (++count > 1) return -1;
    first = e;
  }
  if (count == 0) return 0;
  pmd_ask a;
  if (read_params(&first, &a, 1) != 0) return -1;
  int asked_sbits = cfg->peer_window_bits < 15;
  if (asked_sbits && (!a.has_sbits || a.sbits > cfg->peer_window_bits)) return -1;
  if (cfg->peer_no_context_takeover && !a.snct) return -1;
  memset(out, 0, sizeof *out);
  out->server_no_context_takeover = a.snct;
  out->client_no_context_takeover = (uint8_t)(a.cnct || cfg->no_context_takeover);
  out->server_max_window_bits = (uint8_t)(a.has_sbits ? a.sbits : 15);
  out->client_max_window_bits = (uint8_t)(a.has_cbits ? a.cbits : 15);
  out->answer_server_bits = a.has_sbits;
  out->answer_client_bits = a.has_cbits;
  return 1;
}

/* ---- accounted allocation -------------------------------------------------- */

struct ws_pmd {
  ws_pmd_ctx *ctx;
  ws_pmd_params params;
  uint8_t role;
  uint8_t send_bits, recv_bits;   /* zlib windowBits of our compressor / inflater, 9..15 */
  uint8_t send_reset, recv_reset; /* no context takeover in that direction */
  uint8_t used;                   /* activity since ws_pmd_take_used */
  uint8_t in_msg;                 /* inflating a message (between first input and end) */
  uint8_t out_msg;                /* a fragmented compressed message is being sent */
  uint8_t tail_left;              /* inflate_end: bytes of the 00 00 ff ff tail not yet fed */
  uint8_t broken;                 /* the inflater failed: refuse further input */
  uint8_t ended;                  /* the message's DEFLATE stream ended (BFINAL): the
                                     rest of the message, tail included, is ignored */
  z_stream *def, *inf;            /* NULL until first use and after a release */
  uint8_t *obuf;                  /* deflate output (owned) */
  size_t ocap;
  uint8_t *dict;                  /* inflater window kept while released, deflated (owned) */
  size_t dict_len;                /* its deflated length */
  size_t dict_raw;                /* the window's own length */
  size_t bytes;                   /* what this ws_pmd holds, struct included */
};

/* Each block carries its size in front, so frees are counted exactly. */
typedef union alloc_head {
  size_t n;
  max_align_t align;
} alloc_head;

static void *pmd_alloc(ws_pmd_ctx *ctx, size_t *mine, size_t n) {
  if (n > SIZE_MAX - sizeof(alloc_head)) return NULL;
  alloc_head *h = malloc(sizeof *h + n);
  if (!h) return NULL;
  h->n = sizeof *h + n;
  ctx->bytes += h->n;
  ctx->allocs++;
  if (ctx->bytes > ctx->peak) ctx->peak = ctx->bytes;
  if (mine) *mine += h->n;
  return h + 1;
}

static void pmd_free(ws_pmd_ctx *ctx, size_t *mine, void *p) {
  if (!p) return;
  alloc_head *h = (alloc_head *)p - 1;
  ctx->bytes -= h->n;
  if (mine) *mine -= h->n;
  free(h);
}

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  ws_pmd *m = opaque;
  if (size && items > SIZE_MAX / size) return Z_NULL;
  return pmd_alloc(m->ctx, &m->bytes, (size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p) {
  ws_pmd *m = opaque;
  pmd_free(m->ctx, &m->bytes, p);
}

void ws_pmd_ctx_init(ws_pmd_ctx *ctx, const ws_pmd_config *cfg) {
  memset(ctx, 0, sizeof *ctx);
  if (cfg) ctx->cfg = *cfg;
  else ws_pmd_config_default(&ctx->cfg);
}

/* ---- streams --------------------------------------------------------------- */

static uint8_t zbits(int bits) { return (uint8_t)(bits < 9 ? 9 : bits > 15 ? 15 : bits); }

ws_pmd *ws_pmd_new(ws_pmd_ctx *ctx, const ws_pmd_params *p, int role) {
  size_t bytes = 0;
  ws_pmd *m = pmd_alloc(ctx, &bytes, sizeof *m);
  if (!m) return NULL;
  memset(m, 0, sizeof *m);
  m->ctx = ctx;
  m->bytes = bytes;
  m->params = *p;
  m->role = (uint8_t)role;
  int server = role == WS_PMD_SERVER;
  int send_max = server ? p->server_max_window_bits : p->client_max_window_bits;
  int recv_max = server ? p->client_max_window_bits : p->server_max_window_bits;
  m->send_bits = zbits(min_int(send_max, ctx->cfg.window_bits));
  m->recv_bits = zbits(recv_max);
  m->send_reset = (uint8_t)((server ? p->server_no_context_takeover : p->client_no_context_takeover) ||
                            ctx->cfg.no_context_takeover);
  m->recv_reset = server ? p->client_no_context_takeover : p->server_no_context_takeover;
  return m;
}

static void def_drop(ws_pmd *m) {
  if (m->def) {
    deflateEnd(m->def);
    pmd_free(m->ctx, &m->bytes, m->def);
    m->def = NULL;
  }
  pmd_free(m->ctx, &m->bytes, m->obuf);
  m->obuf = NULL;
  m->ocap = 0;
}

static void inf_drop(ws_pmd *m) {
  if (m->inf) {
    inflateEnd(m->inf);
    pmd_free(m->ctx, &m->bytes, m->inf);
    m->inf = NULL;
  }
}

void ws_pmd_free(ws_pmd *m) {
  if (!m) return;
  def_drop(m);
  inf_drop(m);
  pmd_free(m->ctx, &m->bytes, m->dict);
  pmd_free(m->ctx, NULL, m);
}

const ws_pmd_params *ws_pmd_params_of(const ws_pmd *m) { return &m->params; }

unsigned ws_pmd_send_window(const ws_pmd *m) { return m->send_bits; }

static z_stream *new_zstream(ws_pmd *m) {
  z_stream *z = pmd_alloc(m->ctx, &m->bytes, sizeof *z);
  if (!z) return NULL;
  memset(z, 0, sizeof *z);
  z->zalloc = z_alloc;
  z->zfree = z_free;
  z->opaque = m;
  return z;
}

/* Feeds the deflated window through z (a fresh inflater), output discarded.
 * 0, or -1 if it does not give back dict_raw bytes. */
static int dict_unpack(ws_pmd *m, z_stream *z) {
  uint8_t scratch[1024];
  size_t out = 0;
  z->next_in = m->dict;
  z->avail_in = (uInt)m->dict_len;
  for (;;) {
    z->next_out = scratch;
    z->avail_out = sizeof scratch;
    int zr = inflate(z, Z_SYNC_FLUSH);
    out += sizeof scratch - z->avail_out;
    if (zr != Z_OK && zr != Z_BUF_ERROR) return -1;
    if (z->avail_in == 0 && z->avail_out != 0) break;
    if (zr == Z_BUF_ERROR) return -1;
  }
  return out == m->dict_raw ? 0 : -1;
}

/* Deflates raw[0..n) (the inflater's window) into m->dict, exactly sized,
 * with a compressor that lives only for this call. 0, or WS_PMD_NOMEM. */
static int dict_pack(ws_pmd *m, const uint8_t *raw, size_t n) {
  z_stream *z = new_zstream(m);
  if (!z) return WS_PMD_NOMEM;
  if (deflateInit2(z, 1, Z_DEFLATED, -(int)m->recv_bits, 5, Z_DEFAULT_STRATEGY) != Z_OK) {
    pmd_free(m->ctx, &m->bytes, z);
    return WS_PMD_NOMEM;
  }
  int r = WS_PMD_NOMEM;
  /* The bound of a finished stream, plus the sync flush's empty block. */
  size_t cap = deflateBound(z, (uLong)n) + 16;
  uint8_t *tmp = pmd_alloc(m->ctx, &m->bytes, cap);
  if (tmp) {
    z->next_in = (Bytef *)(uintptr_t)raw;
    z->avail_in = (uInt)n;
    z->next_out = tmp;
    z->avail_out = (uInt)cap;
    int zr = deflate(z, Z_SYNC_FLUSH);
    size_t len = cap - z->avail_out;
    uint8_t *d = NULL;
    if (zr == Z_OK && z->avail_in == 0 && z->avail_out != 0)
      d = pmd_alloc(m->ctx, &m->bytes, len);
    if (d) {
      memcpy(d, tmp, len);
      pmd_free(m->ctx, &m->bytes, m->dict);
      m->dict = d;
      m->dict_len = len;
      m->dict_raw = n;
      r = 0;
    }
    pmd_free(m->ctx, &m->bytes, tmp);
  }
  deflateEnd(z);
  pmd_free(m->ctx, &m->bytes, z);
  return r;
}

static int inf_ready(ws_pmd *m) {
  if (m->inf) return 0;
  z_stream *z = new_zstream(m);
  if (!z) return WS_PMD_NOMEM;
  if (inflateInit2(z, -(int)m->recv_bits) != Z_OK) {
    pmd_free(m->ctx, &m->bytes, z);
    return WS_PMD_NOMEM;
  }
  if (m->dict) {
    /* The window the peer's compressor still refers to, kept deflated:
     * inflating it leaves exactly that window in the new inflater. */
    if (dict_unpack(m, z) != 0) {
      inflateEnd(z);
      pmd_free(m->ctx, &m->bytes, z);
      return WS_PMD_NOMEM; /* our own data: not the peer's fault */
    }
    pmd_free(m->ctx, &m->bytes, m->dict);
    m->dict = NULL;
    m->dict_len = m->dict_raw = 0;
  }
  m->inf = z;
  return 0;
}

/* After a block with BFINAL set the stream has ended (RFC 7692 7.2.3.4 lets
 * a sender end a message that way): whatever follows in that message, the
 * appended tail included, is not DEFLATE data and is ignored. The next
 * message starts a new stream that keeps the window under context takeover. */
static int inf_restart(ws_pmd *m) {
  z_stream *z = m->inf;
  if (m->recv_reset) return inflateReset(z) == Z_OK ? 0 : WS_PMD_ERROR;
  size_t cap = (size_t)1 << m->recv_bits;
  uint8_t *win = pmd_alloc(m->ctx, &m->bytes, cap);
  if (!win) return WS_PMD_NOMEM;
  uInt n = 0;
  int r = inflateGetDictionary(z, win, &n);
  if (r == Z_OK) r = inflateReset(z);
  if (r == Z_OK && n) r = inflateSetDictionary(z, win, n);
  pmd_free(m->ctx, &m->bytes, win);
  return r == Z_OK ? 0 : WS_PMD_ERROR;
}

static int inf_run(ws_pmd *m, const uint8_t *in, size_t in_len, size_t *in_used, uint8_t *out,
                   size_t out_cap, size_t *out_len) {
  *in_used = 0;
  *out_len = 0;
  if (m->broken) return WS_PMD_ERROR;
  int r = inf_ready(m);
  if (r != 0) return r;
  z_stream *z = m->inf;
  m->used = 1;
  if (m->ended) {
    *in_used = in_len;
    return WS_PMD_OK;
  }
  for (;;) {
    size_t in_left = in_len - *in_used, out_left = out_cap - *out_len;
    uInt ia = (uInt)(in_left > ZCHUNK ? ZCHUNK : in_left);
    uInt oa = (uInt)(out_left > ZCHUNK ? ZCHUNK : out_left);
    z->next_in = (Bytef *)(uintptr_t)(in + *in_used);
    z->avail_in = ia;
    z->next_out = out + *out_len;
    z->avail_out = oa;
    int zr = inflate(z, Z_SYNC_FLUSH);
    *in_used += ia - z->avail_in;
    *out_len += oa - z->avail_out;
    if (zr == Z_STREAM_END) {
      if ((r = inf_restart(m)) != 0) goto failed;
      m->ended = 1;
      *in_used = in_len;
      return WS_PMD_OK;
    }
    if (zr == Z_MEM_ERROR) {
      r = WS_PMD_NOMEM;
      goto failed;
    }
    if (zr != Z_OK && zr != Z_BUF_ERROR) {
      r = WS_PMD_ERROR; /* Z_DATA_ERROR, Z_NEED_DICT, Z_STREAM_ERROR */
      goto failed;
    }
    if (*out_len == out_cap) return WS_PMD_MORE;
    if (*in_used == in_len) return WS_PMD_OK;
    if (zr == Z_BUF_ERROR) { /* no progress with input and room left: cannot happen */
      r = WS_PMD_ERROR;
      goto failed;
    }
  }
failed:
  m->broken = 1;
  return r;
}

int ws_pmd_inflate(ws_pmd *m, const uint8_t *in, size_t in_len, size_t *in_used, uint8_t *out,
                   size_t out_cap, size_t *out_len) {
  if (!m->in_msg) {
    m->in_msg = 1;
    m->tail_left = 4;
  }
  if (out_cap == 0) {
    *in_used = *out_len = 0;
    return in_len ? WS_PMD_MORE : WS_PMD_OK;
  }
  return inf_run(m, in, in_len, in_used, out, out_cap, out_len);
}

int ws_pmd_inflate_end(ws_pmd *m, uint8_t *out, size_t out_cap, size_t *out_len) {
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  if (!m->in_msg) {
    m->in_msg = 1;
    m->tail_left = 4;
  }
  *out_len = 0;
  if (out_cap == 0) return WS_PMD_MORE;
  size_t used = 0;
  int r = inf_run(m, tail + (4 - m->tail_left), m->tail_left, &used, out, out_cap, out_len);
  m->tail_left = (uint8_t)(m->tail_left - used);
  if (r != WS_PMD_OK) return r;
  /* The tail is an empty stored block: once it is in and the output was not
   * full, everything the message holds has come out. */
  m->in_msg = 0;
  m->ended = 0;
  if (m->recv_reset && inflateReset(m->inf) != Z_OK) {
    m->broken = 1;
    return WS_PMD_ERROR;
  }
  return WS_PMD_OK;
}

static int def_ready(ws_pmd *m) {
  if (m->def) return 0;
  z_stream *z = new_zstream(m);
  if (!z) return WS_PMD_NOMEM;
  const ws_pmd_config *cfg = &m->ctx->cfg;
  if (deflateInit2(z, cfg->level, Z_DEFLATED, -(int)m->send_bits, cfg->mem_level,
                   cfg->filtered ? Z_FILTERED : Z_DEFAULT_STRATEGY) != Z_OK) {
    pmd_free(m->ctx, &m->bytes, z);
    return WS_PMD_NOMEM;
  }
  m->def = z;
  return 0;
}

static int obuf_grow(ws_pmd *m, size_t used, size_t want) {
  size_t cap = m->ocap ? m->ocap : 256;
  while (cap < want) {
    if (cap > SIZE_MAX / 2) return WS_PMD_NOMEM;
    cap *= 2;
  }
  uint8_t *p = pmd_alloc(m->ctx, &m->bytes, cap);
  if (!p) return WS_PMD_NOMEM;
  if (used) memcpy(p, m->obuf, used);
  pmd_free(m->ctx, &m->bytes, m->obuf);
  m->obuf = p;
  m->ocap = cap;
  return 0;
}

int ws_pmd_deflate(ws_pmd *m, const uint8_t *data, size_t len, int fin, const uint8_t **out,
                   size_t *out_len) {
  m->used = 1;
  int r = def_ready(m);
  if (r != 0) return r;
  int single = !m->out_msg && fin;
  if (m->ocap > OBUF_KEEP && len < OBUF_KEEP / 2) { /* last message was large */
    pmd_free(m->ctx, &m->bytes, m->obuf);
    m->obuf = NULL;
    m->ocap = 0;
  }
  z_stream *z = m->def;
  size_t n = 0, given = 0;
  for (;;) {
    /* Room for what is left plus a little: text shrinks, and stored blocks
     * cost 5 bytes per 16 KiB of incompressible input. */
    size_t left = len - given;
    if (!m->obuf || m->ocap - n < 64) {
      size_t want = n + (left < 1024 ? left : left / 4) + 64;
      if (want < m->ocap * 2) want = m->ocap * 2;
      if (obuf_grow(m, n, want) != 0) goto nomem;
    }
    uInt ia = (uInt)(left > ZCHUNK ? ZCHUNK : left);
    size_t room = m->ocap - n;
    uInt oa = (uInt)(room > ZCHUNK ? ZCHUNK : room);
    z->next_in = (Bytef *)(uintptr_t)(data + given);
    z->avail_in = ia;
    z->next_out = m->obuf + n;
    z->avail_out = oa;
    int last = given + ia == len;
    int zr = deflate(z, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
    given += ia - z->avail_in;
    n += oa - z->avail_out;
    if (zr == Z_STREAM_ERROR) goto nomem;
    /* Done when every byte was given with the flush and the flush fit. */
    if (last && z->avail_in == 0 && z->avail_out != 0) break;
  }
  if (fin) {
    /* RFC 7692 7.2.1: drop the 00 00 ff ff that the sync flush ends with.
     * zlib writes nothing for a flush right after a flush (an empty message,
     * or an empty last fragment): then the message ends with the one byte
     * that, with the receiver's tail, makes an empty stored block. */
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (n >= 4 && memcmp(m->obuf + n - 4, tail, 4) == 0) {
      n -= 4;
    } else if (n == 0) {
      m->obuf[n++] = 0x00;
    }
    m->out_msg = 0;
    if (m->send_reset && deflateReset(z) != Z_OK) goto nomem;
    if (single && m->send_reset && n >= len) return WS_PMD_RAW;
  } else {
    m->out_msg = 1;
  }
  *out = m->obuf;
  *out_len = n;
  return WS_PMD_OK;
nomem:
  def_drop(m);
  m->out_msg = 0;
  return WS_PMD_NOMEM;
}

int ws_pmd_deflate_prime(ws_pmd *m, const uint8_t *data, size_t len) {
  if (!m->def || m->send_reset || m->out_msg || len == 0) return 0;
  size_t w = (size_t)1 << m->send_bits;
  if (len > w) {
    data += len - w;
    len = w;
  }
  if (deflateSetDictionary(m->def, data, (uInt)len) != Z_OK) {
    /* Not at a block boundary (should not happen between messages): a fresh
     * compressor refers to nothing, which is always right. */
    def_drop(m);
  }
  return 0;
}

size_t ws_pmd_release(ws_pmd *m) {
  if (m->in_msg || m->out_msg) return 0;
  size_t before = m->bytes;
  def_drop(m);
  if (m->inf) {
    if (!m->recv_reset && !m->broken) {
      uInt n = 0;
      inflateGetDictionary(m->inf, NULL, &n);
      if (n) {
        uint8_t *raw = pmd_alloc(m->ctx, &m->bytes, n);
        int r = raw ? 0 : WS_PMD_NOMEM;
        if (raw) {
          inflateGetDictionary(m->inf, raw, &n);
          r = dict_pack(m, raw, n);
          pmd_free(m->ctx, &m->bytes, raw);
        }
        if (r != 0) return before > m->bytes ? before - m->bytes : 0; /* keep the inflater */
      }
    }
    inf_drop(m);
  }
  return before > m->bytes ? before - m->bytes : 0;
}

int ws_pmd_take_used(ws_pmd *m) {
  int u = m->used;
  m->used = 0;
  return u;
}

int ws_pmd_live(const ws_pmd *m) { return m->def != NULL || m->inf != NULL || m->obuf != NULL; }

size_t ws_pmd_memory(const ws_pmd *m) { return m->bytes; }

int ws_pmd_compresses(const ws_pmd *m, size_t len) { return len >= m->ctx->cfg.threshold; }
