/* pmdeflate.h - permessage-deflate (RFC 7692): negotiation and streams, sans-I/O.
 *
 * Two independent halves:
 *
 * 1. Negotiation (pure functions, no allocation). The server picks the first
 *    acceptable offer of a Sec-WebSocket-Extensions value and writes its
 *    answer (ws_pmd_negotiate); the client writes its offer and checks the
 *    server's answer against it (ws_pmd_client_offer, ws_pmd_client_accept).
 *    Parsing follows RFC 6455 9.1 (extension = token *(";" param), param =
 *    token ["=" (token | quoted-string)], elements separated by ",", optional
 *    whitespace around every separator) and RFC 7692 7: the four parameters,
 *    each at most once; the two *_no_context_takeover without a value; the
 *    two *_max_window_bits a decimal 8..15 without leading zeros (a
 *    quoted-string value is unquoted first); client_max_window_bits may come
 *    without a value in an offer. Extension and parameter names compare
 *    case-insensitively. An offer that breaks any rule is declined (the next
 *    one is tried); nothing here fails a handshake on the server side.
 *
 * 2. Streams (ws_pmd): one connection's compressor and decompressor. A
 *    ws_pmd is created when the extension is enabled on a connection (a
 *    ~100-byte struct holding the parameters); the zlib streams inside it are
 *    created on first use, not at the upgrade, and given back after an idle
 *    period (ws_pmd_release). Every byte of zlib memory, and every buffer a
 *    ws_pmd owns, is allocated through its ws_pmd_ctx, which counts them (one
 *    ctx per server: there is no global state).
 *
 * Windows: zlib refuses a raw deflate window of 8 bits, so a compressor for
 * which 8 was negotiated uses 9 (zlib never emits a distance past
 * window - 262 bytes, 250 for 9 bits, so an 8-bit inflater decodes it); an
 * inflater always uses at least 9 (a larger inflate window is always safe).
 *
 * Units: window bits are log2 of bytes; sizes are bytes; nothing here knows
 * time (the transport decides when a connection is idle).
 */
#ifndef WS_PMDEFLATE_H
#define WS_PMDEFLATE_H

#include <stddef.h>
#include <stdint.h>

/* Room for the largest answer or offer ws_pmd_* writes, with its NUL: the
 * longest answer (both no_context_takeover flags, both windows of two digits)
 * is 128 characters, the longest offer 125. */
#define WS_PMD_HEADER_MAX 160

/* Which end of the connection a ws_pmd is (same values as ws_parser's). */
enum ws_pmd_role { WS_PMD_SERVER = 0, WS_PMD_CLIENT = 1 };

/* What one connection negotiated (RFC 7692 7.1). "server_*" governs the
 * server-to-client direction (the server's compressor, the client's
 * inflater); "client_*" the other one. */
typedef struct ws_pmd_params {
  uint8_t server_no_context_takeover; /* 1: the server resets its compressor per message */
  uint8_t client_no_context_takeover; /* 1: the client resets its compressor per message */
  uint8_t server_max_window_bits;     /* 8..15: the server compresses within 2^n bytes */
  uint8_t client_max_window_bits;     /* 8..15: the client compresses within 2^n bytes */
  uint8_t answer_server_bits;         /* server role: the answer names server_max_window_bits */
  uint8_t answer_client_bits;         /* server role: the answer names client_max_window_bits */
} ws_pmd_params;

/* Our side's choices. Defaults (ws_pmd_config_default) in brackets. */
typedef struct ws_pmd_config {
  uint8_t window_bits;     /* our compressor's window, 9..15 [12]; never above what
                              the peer allows */
  uint8_t mem_level;       /* zlib memLevel of our compressor, 1..9 [5]: its hash
                              table is 2^(mem_level + 8) bytes, its pending buffer
                              2^(mem_level + 8) * 4 */
  uint8_t level;           /* zlib compression level, 1..9 [6] */
  uint8_t filtered;        /* 1: zlib's Z_FILTERED strategy (matches shorter than 6
                              bytes are sent as literals), 0: Z_DEFAULT_STRATEGY [1] */
  uint8_t peer_window_bits; /* window we ask the peer to compress within, when its
                              offer lets us (client_max_window_bits), 8..15 [14]:
                              our inflater's window is that many bits */
  uint8_t peer_no_context_takeover; /* ask the peer to reset its compressor per
                              message (client_no_context_takeover): our inflater then
                              keeps nothing between messages [0] */
  uint8_t no_context_takeover; /* reset our compressor per message (announced as
                              server_no_context_takeover) [0] */
  uint32_t threshold;      /* messages shorter than this many bytes are sent
                              uncompressed [64] */
} ws_pmd_config;

void ws_pmd_config_default(ws_pmd_config *cfg);

/* ---- negotiation --------------------------------------------------------- */

/* Server role. value[0..len) is the request's Sec-WebSocket-Extensions value,
 * every header line of that name joined with ", " in order (not NUL-ended).
 * Picks the first permessage-deflate offer that follows the rules above and
 * that cfg can honour, fills *out, and writes the answer's value (e.g.
 * "permessage-deflate; client_max_window_bits=12", NUL-terminated, no header
 * name, no CRLF) into resp[0..resp_cap) with its length in *resp_len.
 * Returns 1 if an offer was accepted; 0 if none was (send no header at all:
 * never an empty one); -1 if resp_cap < WS_PMD_HEADER_MAX.
 *
 * The answer: server_no_context_takeover if offered or cfg->no_context_takeover;
 * client_no_context_takeover if offered or cfg->peer_no_context_takeover;
 * server_max_window_bits only if offered, as min(offered, cfg->window_bits)
 * (never larger than offered); client_max_window_bits only if offered, as
 * min(offered value or 15, cfg->peer_window_bits), and 8 only if the offer
 * named 8 itself (zlib-based clients cannot compress within 8 bits). */
int ws_pmd_negotiate(const ws_pmd_config *cfg, const char *value, size_t len, ws_pmd_params *out,
                     char *resp, size_t resp_cap, size_t *resp_len);

/* Writes the server answer for p (as ws_pmd_negotiate did) into out; returns
 * its length, or 0 if cap < WS_PMD_HEADER_MAX. */
size_t ws_pmd_format_answer(const ws_pmd_params *p, char *out, size_t cap);

/* Client role: our offer (one element, NUL-terminated) into out; returns its
 * length, or 0 if cap < WS_PMD_HEADER_MAX. We always offer
 * client_max_window_bits (we can compress within any window the server asks);
 * server_max_window_bits=cfg->peer_window_bits if below 15, and
 * server_no_context_takeover if cfg->peer_no_context_takeover. */
size_t ws_pmd_client_offer(const ws_pmd_config *cfg, char *out, size_t cap);

/* Client role: checks the server's Sec-WebSocket-Extensions value against the
 * offer ws_pmd_client_offer(cfg) made. Returns 1 with *out filled if the
 * server accepted permessage-deflate validly; 0 if it answered no extension
 * (len 0); -1 if the answer must fail the connection (RFC 6455 4.1): a
 * syntax error, another extension, more than one element, an unknown or
 * repeated parameter, a value out of range, server_max_window_bits above what
 * we asked or missing although we asked, server_no_context_takeover missing
 * although we asked. */
int ws_pmd_client_accept(const ws_pmd_config *cfg, const char *value, size_t len,
                         ws_pmd_params *out);

/* ---- streams ------------------------------------------------------------- */

/* Allocation accounting shared by every ws_pmd of one owner (a server). The
 * owner embeds it, sets it up with ws_pmd_ctx_init, and may read the counters
 * at any time; it must outlive every ws_pmd created with it. Not thread-safe:
 * one ctx per loop. */
typedef struct ws_pmd_ctx {
  ws_pmd_config cfg;
  size_t bytes;        /* bytes held now (zlib states, windows, buffers, ws_pmd structs) */
  size_t peak;         /* the most ever held at once */
  uint64_t allocs;     /* allocations made so far */
} ws_pmd_ctx;

void ws_pmd_ctx_init(ws_pmd_ctx *ctx, const ws_pmd_config *cfg);

typedef struct ws_pmd ws_pmd;

/* Results. */
enum ws_pmd_result {
  WS_PMD_OK = 0,     /* done with this call's input */
  WS_PMD_MORE = 1,   /* the output is full: call again (same arguments, the
                        input advanced by *in_used) */
  WS_PMD_RAW = 2,    /* deflate: send this message uncompressed instead */
  WS_PMD_ERROR = -1, /* inflate: the compressed data is invalid (close 1007) */
  WS_PMD_NOMEM = -2  /* allocation failed (close 1011) */
};

/* A connection's streams for the negotiated p, in the given role. Returns
 * NULL on allocation failure. No zlib memory is allocated yet. */
ws_pmd *ws_pmd_new(ws_pmd_ctx *ctx, const ws_pmd_params *p, int role);
/* Frees everything m owns, then m. NULL is a no-op. */
void ws_pmd_free(ws_pmd *m);
const ws_pmd_params *ws_pmd_params_of(const ws_pmd *m);

/* Inflate, one message at a time: ws_pmd_inflate for every run of
 * compressed payload as it arrives (any split, across fragments), then
 * ws_pmd_inflate_end once at the message's end (it supplies the
 * 00 00 ff ff tail RFC 7692 7.2.2 strips). Output goes to out[0..out_cap),
 * its length in *out_len; *in_used says how much input was taken. Returns
 * WS_PMD_OK once all input is used and nothing more is pending (for
 * inflate_end: the message is complete), WS_PMD_MORE when out filled up
 * (call again with the rest of the input; out_cap must be > 0), or
 * WS_PMD_ERROR / WS_PMD_NOMEM. Output is bounded by out_cap per call, so the
 * caller can stop a bomb at its size limit before the memory is spent.
 * After an error the inflater must not be used again for that connection. */
int ws_pmd_inflate(ws_pmd *m, const uint8_t *in, size_t in_len, size_t *in_used, uint8_t *out,
                   size_t out_cap, size_t *out_len);
int ws_pmd_inflate_end(ws_pmd *m, uint8_t *out, size_t out_cap, size_t *out_len);

/* Deflates data[0..len) as one message (fin = 1) or as a fragment of one
 * (fin = 0: more follows, the stream is flushed to a byte boundary so the
 * fragment can be sent now). On WS_PMD_OK *out and *out_len hold the payload to
 * send with RSV1 on the message's first frame; the bytes are owned by m and
 * valid until the next call on m. WS_PMD_RAW (only for fin = 1 and only
 * without context takeover, where the compressor keeps nothing of it): the
 * compressed form would not be smaller, send data as is with RSV1 clear.
 * WS_PMD_NOMEM on allocation failure (the stream is then unusable). */
int ws_pmd_deflate(ws_pmd *m, const uint8_t *data, size_t len, int fin, const uint8_t **out,
                   size_t *out_len);

/* Tells m's compressor that the peer's inflater has just decoded data (a
 * message compressed elsewhere, e.g. once for a broadcast): with context
 * takeover and a live compressor, data is appended to its history
 * (deflateSetDictionary) so the next message it compresses refers to what the
 * peer really holds. Without a live compressor, or without context takeover,
 * nothing is needed. Call it only between messages. Returns 0 or
 * WS_PMD_NOMEM. */
int ws_pmd_deflate_prime(ws_pmd *m, const uint8_t *data, size_t len);

/* The window (bits) our compressor uses for m's sending direction: what a
 * message compressed elsewhere must stay within to be decodable by m's peer.
 * Two connections with the same value can share one context-free
 * compression of a message. */
unsigned ws_pmd_send_window(const ws_pmd *m);

/* Idle release: frees the compressor and its output buffer (a fresh
 * compressor is always decodable by the peer: history only helps the
 * ratio), and the inflater. What is kept when the peer uses context takeover:
 * the inflater's window, min(bytes it has inflated, 2^window) bytes, kept
 * deflated (one raw DEFLATE stream, level 1, through a compressor that lives
 * only for that call): JSON-like text keeps about a quarter of its size. The
 * next compressed message inflates it through a new inflater first, which
 * leaves that inflater holding exactly the window it had; without takeover
 * nothing is kept. Should the temporary compressor not be allocated, the
 * inflater is kept as it is. Does nothing in
 * the middle of a message in either direction. Returns the bytes given
 * back. */
size_t ws_pmd_release(ws_pmd *m);

/* 1 if m compressed or inflated anything since the previous call (then
 * cleared): the transport calls it from a timer to decide on ws_pmd_release. */
int ws_pmd_take_used(ws_pmd *m);

/* 1 while m holds a zlib stream or buffer that ws_pmd_release would free. */
int ws_pmd_live(const ws_pmd *m);

/* Bytes m holds now (its struct included). */
size_t ws_pmd_memory(const ws_pmd *m);

/* 1 if a whole message of len bytes should be compressed (len >= the
 * ctx's threshold); shorter ones go uncompressed, RSV1 clear. */
int ws_pmd_compresses(const ws_pmd *m, size_t len);

#endif
