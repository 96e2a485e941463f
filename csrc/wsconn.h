/* wsconn.h - one WebSocket connection's protocol engine, sans-I/O.
 *
 * After the opening handshake, bytes read from the peer go in with
 * ws_conn_feed(); the engine parses frames, reassembles fragmented messages
 * (control frames may interleave), validates UTF-8 of text messages
 * incrementally (fail fast, 1007), enforces the message size and fragment
 * limits (1009), answers pings with pongs, and runs the close handshake.
 * What the application must see comes out through callbacks; bytes to send
 * come out through the write callback, as header + payload pieces so the
 * transport can write them vectored without copying.
 *
 * The engine knows nothing of sockets or timers: the transport owns those
 * and tells the engine when the peer vanished (ws_conn_abort).
 *
 * Ownership: the caller allocates ws_conn (its size is sizeof(ws_conn)) and
 * calls ws_conn_init / ws_conn_free. The engine owns one heap buffer for
 * message assembly, allocated only while a message that cannot be handed out
 * in place is being received, and released after it is delivered if it grew
 * past WS_CONN_KEEP_BUFFER bytes (and when the connection is closed).
 *
 * permessage-deflate (RFC 7692, pmdeflate.h), when the transport enables it
 * after the handshake (ws_conn_enable_deflate): RSV1 is then allowed on the
 * first frame of a data message (on a continuation or control frame it is
 * still 1002); a compressed message is inflated as its chunks arrive, into
 * the assembly buffer in bounded steps, with the size limit and UTF-8 checked
 * on the inflated bytes (a bomb stops at max_message_size with 1009 before
 * more memory is spent; corrupt data is 1007). A compressed frame itself may
 * be up to max_message_size + 1/16 + 1 KiB long (incompressible data grows
 * a little when deflated). ws_conn_send compresses
 * messages of at least the threshold. Uncompressed traffic keeps its paths
 * (in-place delivery included); compressed messages are always assembled.
 * The engine owns the ws_pmd (freed by ws_conn_free); its zlib memory is
 * counted by the ws_pmd_ctx the transport passed in.
 *
 * Re-entrancy: from inside a callback the application may call ws_conn_send,
 * ws_conn_send_frame, ws_conn_ping, ws_conn_pong, ws_conn_close and
 * ws_conn_abort (after an abort the engine stops at once); it must not call
 * ws_conn_feed, ws_conn_init or ws_conn_free, and the ws_conn itself must stay
 * allocated until the outermost engine call returns (free it later, e.g. from
 * the transport's socket close callback).
 *
 * sizeof(ws_conn) is 280 bytes on LP64 (checked by a static assertion).
 */
#ifndef WS_CONN_H
#define WS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "pmdeflate.h"
#include "utf8.h"
#include "wsparser.h"

/* Assembly buffers up to this size are kept between messages. */
#define WS_CONN_KEEP_BUFFER 4096

typedef struct ws_conn ws_conn;

/* One piece of outgoing bytes. */
typedef struct ws_conn_buf {
  const uint8_t *base;
  size_t len;
} ws_conn_buf;

typedef struct ws_conn_callbacks {
  /* Bytes to send, in order: bufs[0..n) (n is 1 or 2: header, then payload).
   * The transport must take all of them before returning (write what the
   * kernel accepts, copy the rest into its queue): the pointers are not valid
   * after the call. Required. */
  void (*write)(ws_conn *c, const ws_conn_buf *bufs, size_t n);
  /* A complete message: opcode WS_OP_TEXT (valid UTF-8) or WS_OP_BINARY.
   * data is valid only during the call. Required. */
  void (*message)(ws_conn *c, unsigned opcode, const uint8_t *data, size_t len);
  /* A ping (after the pong has been written) or pong arrived. Optional. */
  void (*control)(ws_conn *c, unsigned opcode, const uint8_t *data, size_t len);
  /* The connection is finished at the protocol level: the close handshake
   * completed (clean = 1), or the engine failed the connection after a
   * protocol error (it has written a close frame with `code`; clean = 0), or
   * ws_conn_abort was called (code 1006, clean = 0). The transport should
   * flush pending writes and close the socket. Called exactly once; after it
   * the engine emits nothing more and ws_conn_feed consumes nothing. code is
   * the code the peer sent (1005 if its close frame had none), or the code
   * we sent when we failed the connection. reason is valid during the call. */
  void (*closed)(ws_conn *c, unsigned code, const char *reason, size_t reason_len, int clean);
  /* Optional: the engine is about to write a frame of its own (pong or
   * close). A transport that delays message delivery (batches) delivers what
   * it holds now, so replies to earlier messages precede that frame. The
   * application may send, close or abort from here. */
  void (*flush)(ws_conn *c);
  /* Optional, both or neither: where the assembly buffer comes from and goes
   * back to (a transport's pool, so a large message does not cost a malloc,
   * a free and the allocator's heap trimming each time). take returns a
   * buffer of at least need bytes (NULL on failure) and stores its capacity;
   * give takes back a buffer the engine no longer uses. Without them the
   * engine uses malloc/realloc/free. */
  void *(*buf_take)(ws_conn *c, size_t need, size_t *cap);
  void (*buf_give)(ws_conn *c, void *buf, size_t cap);
  /* Optional, with buf_take/buf_give: grows a buffer they handed out (cap
   * bytes, the first len in use) to at least need bytes, in place when it
   * can (realloc), and stores the new capacity; NULL on failure (buf stays
   * the engine's). Without it growth is take + copy + give, which holds old
   * and new buffer at once: inflated messages grow step by step, and a bomb
   * would cost 1.5x the size limit at the last step. */
  void *(*buf_resize)(ws_conn *c, void *buf, size_t len, size_t need, size_t *cap);
  /* Client role only, and required there: a fresh, unpredictable mask key
   * for the next frame (RFC 6455 5.3: from a strong source of entropy). */
  void (*mask_key)(ws_conn *c, uint8_t key[4]);
} ws_conn_callbacks;

typedef struct ws_conn_limits {
  /* Bytes in one reassembled message (a single frame too); more fails the
   * connection with 1009, at the frame header that would pass it. 0 = none. */
  uint64_t max_message_size;
  /* Frames in one message; more fails the connection with 1009. 0 = none.
   * Bounds a flood of tiny (even empty) fragments that the size limit alone
   * would let run forever. */
  uint32_t max_fragments;
} ws_conn_limits;

/* Defaults: 16 MiB message, 100000 fragments (Autobahn 9.3.1 / 9.4.1 send a
 * 4 MiB message in 65536 fragments of 64 bytes). */
void ws_conn_limits_default(ws_conn_limits *l);

enum ws_conn_state {
  WS_CONN_OPEN = 0,      /* messages flow both ways */
  WS_CONN_CLOSING = 1,   /* we sent a close frame and wait for the peer's */
  WS_CONN_CLOSED = 2     /* closed callback done */
};

struct ws_conn {
  ws_parser parser;
  ws_utf8 utf8;                 /* text message validation state */
  const ws_conn_callbacks *cb;
  ws_conn_limits limits;
  uint8_t *msg;                 /* assembly buffer (owned), NULL when none */
  size_t msg_len, msg_cap;
  uint32_t msg_frames;          /* frames in the message being received */
  uint8_t msg_opcode;           /* WS_OP_TEXT/BINARY of that message, 0 if none */
  uint8_t state;                /* enum ws_conn_state */
  uint8_t close_sent;           /* 1 once our close frame was written */
  uint8_t want_control;         /* 1: report pings/pongs through cb->control */
  uint8_t send_open;            /* 1 while our fragmented message is unfinished,
                                   2 if that message is compressed */
  uint8_t busy;                 /* 1 during ws_conn_feed */
  uint8_t msg_deflate;          /* 1: the message being received is compressed */
  uint8_t client;               /* 1: the client role (ws_conn_init_client) */
  /* Control frame being received (<= 125 bytes, may arrive split). */
  uint8_t ctl_len;
  uint8_t ctl[125];
  /* A single-frame message lying whole in the caller's buffer is delivered
   * from there, without a copy. */
  const uint8_t *inplace;
  size_t inplace_len;
  ws_pmd *pmd;                  /* permessage-deflate streams (owned), NULL if
                                   not negotiated */
  void *data;                   /* for the transport; never touched, not even
                                   by ws_conn_init */
};

/* Initialises an open connection (handshake done) with the given callbacks
 * and limits (NULL = defaults). The engine acts as the server: client frames
 * must be masked, ours are not. */
void ws_conn_init(ws_conn *c, const ws_conn_callbacks *cb, const ws_conn_limits *limits);

/* Turns permessage-deflate on with the negotiated parameters (server
 * role), before the first ws_conn_feed; ctx (the transport's, for
 * configuration and memory accounting) must outlive c. Allocates only the
 * small ws_pmd; zlib streams come on first use. Returns 0, or -1 on
 * allocation failure (the connection then goes on uncompressed: the caller
 * must not have announced the extension, or should fail the connection). */
int ws_conn_enable_deflate(ws_conn *c, ws_pmd_ctx *ctx, const ws_pmd_params *params);

/* The same in the client role (RFC 6455 5.1): every frame we send is masked
 * with a key from cb->mask_key (the payload is masked into a copy: the
 * caller's bytes are never changed), and a masked frame from the server
 * fails the connection with 1002. cb->mask_key must be set. */
void ws_conn_init_client(ws_conn *c, const ws_conn_callbacks *cb, const ws_conn_limits *limits);

/* Releases the assembly buffer and the deflate streams. Safe in any state (not from a callback);
 * c may be reused after ws_conn_init. */
void ws_conn_free(ws_conn *c);

/* Feeds bytes read from the peer (writable: payloads are unmasked in place).
 * Returns the bytes consumed: len, or less when the connection closed on the
 * way (bytes after a close frame or an error are ignored). */
size_t ws_conn_feed(ws_conn *c, uint8_t *data, size_t len);

/* Sends one message (WS_OP_TEXT or WS_OP_BINARY) as a single frame,
 * compressed (RSV1) when deflate is on and len reaches the threshold. The
 * caller vouches that text is UTF-8. Returns 0, or -1 if the connection is
 * closing or closed, the opcode is not TEXT/BINARY, or a message sent with
 * ws_conn_send_frame is unfinished (nothing written). */
int ws_conn_send(ws_conn *c, unsigned opcode, const uint8_t *data, size_t len);

/* Sends a frame of a message in pieces: opcode TEXT/BINARY for the first,
 * WS_OP_CONTINUATION after; fin = 1 on the last. With deflate on, a message
 * whose first frame is not final, or reaches the threshold, is compressed
 * frame by frame (RSV1 on the first; each frame flushed so it decodes at
 * once). Returns 0, or -1 as above
 * and also for a CONTINUATION with no message open or a TEXT/BINARY frame
 * while one is open (RFC 6455 5.4). */
int ws_conn_send_frame(ws_conn *c, unsigned opcode, int fin, const uint8_t *data, size_t len);

/* Sends a ping or pong with up to 125 bytes of payload. Returns 0, or -1 if
 * closing/closed or len > 125. */
int ws_conn_ping(ws_conn *c, const uint8_t *data, size_t len);
int ws_conn_pong(ws_conn *c, const uint8_t *data, size_t len);

/* Starts the close handshake: writes a close frame with code (0 = no code)
 * and reason (at most 123 bytes, UTF-8) and enters CLOSING. Returns 0, or -1
 * if a close frame was already sent, the connection is closed, the code may
 * not be sent (see ws_frame_close_code_valid), a reason comes without a code,
 * or the reason is too long or not UTF-8. */
int ws_conn_close(ws_conn *c, unsigned code, const char *reason, size_t reason_len);

/* The transport lost the peer or gave up waiting (timeout): report closed
 * with code (1006 for a dropped connection) unless already closed. */
void ws_conn_abort(ws_conn *c, unsigned code, const char *reason, size_t reason_len);

#endif
