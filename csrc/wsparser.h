/* wsparser.h - streaming RFC 6455 frame parser (the seed's ws_parser API).
 *
 * Bytes go in with ws_parser_execute(); the parser calls on_header once a
 * frame header is complete, on_chunk for each run of payload (already
 * unmasked, in place, in the caller's buffer), and on_complete at the end of
 * the frame. It never allocates and never buffers payload: a frame split
 * across any number of calls yields the same header, the same payload bytes
 * (in possibly different chunks) and the same completion.
 *
 * A callback returns WS_CB_OK to go on, WS_CB_PAUSE to make execute return
 * right after the current event (call execute again with the remaining bytes
 * to resume), or WS_CB_ABORT to stop with error WS_PE_ABORTED.
 *
 * Validation (each error names the close code it calls for, see
 * ws_parser_close_code): reserved bits not allowed by rsv_allowed, unknown
 * opcodes, control frames longer than 125 bytes or not final, continuation
 * frames with no message open or a new data frame while one is open,
 * non-minimal or >= 2^63 lengths, frames over max_frame_size (1009), and a
 * mask bit that the role forbids or requires.
 *
 * sizeof(ws_parser) is 48 bytes on LP64 (checked by a static assertion).
 */
#ifndef WS_PARSER_H
#define WS_PARSER_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_parser ws_parser;

typedef int (*ws_parser_cb)(ws_parser *p);
typedef int (*ws_parser_data_cb)(ws_parser *p, const char *at, size_t len);

typedef struct ws_settings {
  ws_parser_cb on_header;      /* may be NULL */
  ws_parser_data_cb on_chunk;  /* may be NULL; never called with len 0 */
  ws_parser_cb on_complete;    /* may be NULL */
} ws_settings;

enum ws_cb_result { WS_CB_OK = 0, WS_CB_PAUSE = 1, WS_CB_ABORT = 2 };

enum ws_parser_error {
  WS_PE_OK = 0,
  WS_PE_RESERVED_BITS,      /* 1002: RSV bit set without a negotiated extension */
  WS_PE_BAD_OPCODE,         /* 1002: reserved opcode 3-7 or B-F */
  WS_PE_CONTROL_TOO_LONG,   /* 1002: control frame payload > 125 */
  WS_PE_CONTROL_FRAGMENTED, /* 1002: control frame without FIN */
  WS_PE_BAD_CONTINUATION,   /* 1002: continuation with no message open */
  WS_PE_EXPECTED_CONTINUATION, /* 1002: new text/binary frame inside a message */
  WS_PE_BAD_LENGTH,         /* 1002: 64-bit length with MSB set, or non-minimal */
  WS_PE_TOO_BIG,            /* 1009: frame longer than max_frame_size */
  WS_PE_MASK_REQUIRED,      /* 1002: unmasked frame from a client */
  WS_PE_MASK_FORBIDDEN,     /* 1002: masked frame from a server */
  WS_PE_ABORTED             /* a callback returned WS_CB_ABORT (close code 0) */
};

/* Roles: which mask bit the peer must send (RFC 6455 5.1). */
enum ws_parser_role {
  WS_ROLE_SERVER = 0, /* we are the server: client frames must be masked */
  WS_ROLE_CLIENT = 1, /* we are the client: server frames must not be masked */
  WS_ROLE_ANY = 2     /* accept either (tooling, tests) */
};

struct ws_parser {
  /* Current frame, valid from on_header until on_complete returns. */
  uint64_t length;          /* payload length */
  uint64_t remaining;       /* payload bytes not yet delivered */
  uint8_t mask_key[4];
  uint8_t fin;              /* 1 or 0 */
  uint8_t rsv;              /* the RSV bits as in byte 0 (WS_RSV1..3) */
  uint8_t opcode;
  uint8_t masked;           /* 1 if the frame carried a mask key */
  /* Configuration, set after ws_parser_init. */
  uint64_t max_frame_size;  /* 0 = no limit (beyond 2^63-1) */
  uint8_t rsv_allowed;      /* RSV bits a negotiated extension allows */
  uint8_t role;             /* enum ws_parser_role */
  /* Private state. */
  uint8_t state;            /* where in the frame the next byte belongs */
  uint8_t need;             /* header bytes still wanted in this state */
  uint8_t mask_phase;       /* key index for the next payload byte */
  uint8_t in_message;       /* 1 while a fragmented data message is open */
  uint8_t error;            /* enum ws_parser_error; sticky until reset */
  void *data;               /* for the caller; the parser never touches it */
};

/* Clears all state and configuration: role server, no RSV bits, no size
 * limit. Call before first use; the seed called this ws_init. */
void ws_parser_init(ws_parser *p);

/* Forgets any partial frame and error, keeping configuration and data: ready
 * for a new stream (the seed's ws_reset). */
void ws_parser_reset(ws_parser *p);

/* Parses buf[0..len) and returns how many bytes were consumed. Payload bytes
 * are unmasked in place, so buf must be writable. The return value is less
 * than len only when a callback paused (p->error == WS_PE_OK, call again with
 * buf + ret) or an error stopped the parser (p->error != WS_PE_OK; further
 * calls consume nothing until ws_parser_reset). Bytes after the offending
 * header byte are never consumed. */
size_t ws_parser_execute(ws_parser *p, const ws_settings *s, char *buf, size_t len);

/* 1 if the parser sits between frames (no partial header or payload). */
int ws_parser_at_frame_boundary(const ws_parser *p);

/* The close code an error calls for (1002, 1009; 0 for OK and ABORTED). */
unsigned ws_parser_close_code(int error);

/* A static, human-readable sentence for an error. */
const char *ws_parser_strerror(int error);

/* The seed's names, for code written against it. */
#ifndef WS_PARSER_NO_SEED_NAMES
#define ws_init ws_parser_init
#define ws_reset ws_parser_reset
#define ws_execute ws_parser_execute
#endif

#endif
