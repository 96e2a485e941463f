/* busproto.h - frames of the worker bus (sans-I/O): the header codec, a
 * streaming decoder and the byte queue a link writes from. No I/O, no
 * global state; the caller owns every buffer it passes in.
 *
 * The worker bus (workerbus.h, bushub.h) joins the processes of one
 * `wsuv-serve --workers N` through a hub: each worker holds one stream to
 * the hub. Every frame, either way, is a 28-byte header (big-endian) then
 * the topic, then the payload:
 *
 *   offset  size  field
 *   0       2     magic "wB"
 *   2       1     version (1)
 *   3       1     type: 1 HELLO, 2 SUB, 3 UNSUB, 4 PUB, 5 STATS
 *   4       1     opcode: PUB 1 (text) or 2 (binary); 0 otherwise
 *   5       1     reserved, 0
 *   6       2     topic length: HELLO, STATS 0; SUB, UNSUB, PUB 1..max_topic
 *   8       4     payload length: PUB 0..max_payload; STATS 56; 0 otherwise
 *   12      8     origin: the publishing worker's random id (HELLO: the
 *                 sender's own)
 *   20      8     sequence: worker -> hub, the worker's count of its frames;
 *                 hub -> worker, the hub's count of PUBs meant for that
 *                 link, sent or dropped (from 1): a gap is what the hub
 *                 dropped for it (the worker counts it as lost)
 *   28      t     topic bytes
 *   28+t    p     payload bytes
 *
 * STATS goes from the hub to each worker (once a second, and when a link
 * says HELLO): its payload is the hub's counters, WS_BUS_STATS_COUNT
 * big-endian u64 in bushub.h's ws_bushub_stats order; origin and sequence
 * are 0 (a STATS takes no number of the link's PUB sequence).
 *
 * The hub rewrites the sequence because it forwards each worker only the
 * topics it subscribed to: the publisher's own sequence would show a gap
 * for every topic filtered out.
 */
#ifndef WS_BUSPROTO_H
#define WS_BUSPROTO_H

#include <stddef.h>
#include <stdint.h>

#define WS_BUS_HEADER 28
#define WS_BUS_VERSION 1

enum ws_bus_type {
  WS_BUS_HELLO = 1, WS_BUS_SUB = 2, WS_BUS_UNSUB = 3, WS_BUS_PUB = 4, WS_BUS_STATS = 5
};
#define WS_BUS_STATS_COUNT 7
#define WS_BUS_STATS_LEN (8 * WS_BUS_STATS_COUNT)

enum ws_bus_error {
  WS_BUS_OK = 0,
  WS_BUS_E_MAGIC = -1,     /* not "wB" */
  WS_BUS_E_VERSION = -2,   /* a version we do not know */
  WS_BUS_E_TYPE = -3,      /* type not 1..5 */
  WS_BUS_E_OPCODE = -4,    /* PUB without 1/2, or another type with one */
  WS_BUS_E_RESERVED = -5,  /* byte 5 not 0 */
  WS_BUS_E_TOPIC = -6,     /* topic length against the type's rule or max_topic */
  WS_BUS_E_PAYLOAD = -7,   /* payload over max_payload, on a type that has none, or a
                              STATS not WS_BUS_STATS_LEN */
  WS_BUS_E_NOMEM = -8,
};

typedef struct ws_bus_frame {
  unsigned type, opcode;
  uint64_t origin, seq;
  const char *topic;    /* topic_len bytes (not NUL-terminated) */
  size_t topic_len;
  const char *payload;  /* payload_len bytes */
  size_t payload_len;
} ws_bus_frame;

typedef struct ws_bus_limits {
  uint32_t max_topic;   /* 1..65535 */
  uint32_t max_payload;
} ws_bus_limits;

/* Writes f's header (type, opcode, lengths, origin, seq) into out. */
void ws_bus_header_encode(uint8_t out[WS_BUS_HEADER], const ws_bus_frame *f);
/* Reads a header into f (lengths, not pointers) and checks it against lim.
 * Returns WS_BUS_OK or a negative ws_bus_error. */
int ws_bus_header_decode(const uint8_t in[WS_BUS_HEADER], const ws_bus_limits *lim,
                         ws_bus_frame *f);
/* A STATS payload: v[0..WS_BUS_STATS_COUNT) to and from big-endian bytes. */
void ws_bus_stats_encode(uint8_t out[WS_BUS_STATS_LEN], const uint64_t v[WS_BUS_STATS_COUNT]);
void ws_bus_stats_decode(const uint8_t in[WS_BUS_STATS_LEN], uint64_t v[WS_BUS_STATS_COUNT]);
/* Overwrites the sequence field of an encoded header. */
void ws_bus_header_set_seq(uint8_t hdr[WS_BUS_HEADER], uint64_t seq);
const char *ws_bus_strerror(int err);

/* ---- streaming decoder ---------------------------------------------------
 *
 * Bytes go in as they are read, split anywhere; each complete frame is
 * handed to fn, its topic and payload pointing either into the fed bytes
 * (a frame that lies whole in them: no copy) or into the decoder's buffer
 * (a frame split across feeds), valid during the call only. The buffer holds
 * at most one frame: WS_BUS_HEADER + max_topic + max_payload bytes (or a
 * STATS frame's WS_BUS_HEADER + WS_BUS_STATS_LEN). The first
 * error is sticky: feed returns it from then on and calls fn no more. */
typedef int (*ws_bus_frame_fn)(void *arg, const ws_bus_frame *f);

typedef struct ws_bus_decoder {
  ws_bus_limits lim;
  char *buf;           /* the partial frame (owned) */
  size_t len, cap;     /* bytes in buf, its size */
  size_t need;         /* the partial frame's whole size once its header is in */
  int error;
} ws_bus_decoder;

void ws_bus_decoder_init(ws_bus_decoder *d, const ws_bus_limits *lim);
void ws_bus_decoder_free(ws_bus_decoder *d);
/* Returns WS_BUS_OK when every byte was taken, 1 if fn returned non-zero
 * (the rest of data is dropped: the caller is closing), or a negative
 * error. */
int ws_bus_decoder_feed(ws_bus_decoder *d, const char *data, size_t len, ws_bus_frame_fn fn,
                        void *arg);

/* For tests and the Python reference model: frames decoded from one feed,
 * flattened. Topic and payload bytes are copied, one after another, into
 * bytes; record i's go from its off. */
typedef struct ws_bus_record {
  unsigned type, opcode;
  uint64_t origin, seq;
  size_t off, topic_len, payload_len;
} ws_bus_record;
/* Feeds data and records up to cap frames (and up to bytes_cap bytes of
 * their contents; further frames stop the feed: returns 1). *n and
 * *bytes_len are the counts recorded. Returns as ws_bus_decoder_feed. */
int ws_bus_decoder_collect(ws_bus_decoder *d, const char *data, size_t len, ws_bus_record *out,
                           size_t cap, size_t *n, char *bytes, size_t bytes_cap,
                           size_t *bytes_len);

/* ---- the byte queue of one link -------------------------------------------
 *
 * Frames are appended to `fill`; a write takes the whole of it (the two
 * buffers swap: `fill` goes out as `out`, and the next frames gather in the
 * other one), so one write carries every frame queued since the last. The
 * bytes queued and in flight are `pending`; a caller checks its bound
 * against ws_bus_outq_pending before it appends. */
typedef struct ws_bus_outq {
  char *fill, *out;     /* owned */
  size_t fill_len, fill_cap;
  size_t out_len, out_cap;
  int writing;          /* `out` is in flight */
} ws_bus_outq;

void ws_bus_outq_init(ws_bus_outq *q);
void ws_bus_outq_free(ws_bus_outq *q);
size_t ws_bus_outq_pending(const ws_bus_outq *q);
/* Appends a frame: header, then topic, then payload. 0 or WS_BUS_E_NOMEM. */
int ws_bus_outq_append(ws_bus_outq *q, const uint8_t hdr[WS_BUS_HEADER], const char *topic,
                       size_t topic_len, const char *payload, size_t payload_len);
/* Appends raw bytes (the rest of a frame a direct write did not take). */
int ws_bus_outq_append_raw(ws_bus_outq *q, const char *data, size_t len);
/* Starts a write: if nothing is in flight and bytes are queued, swaps them
 * into `out` and returns 1 (write out/out_len, then call ws_bus_outq_done);
 * else 0. */
int ws_bus_outq_take(ws_bus_outq *q);
void ws_bus_outq_done(ws_bus_outq *q);

#endif
