/* csprng.h - a pool of OS random bytes for masking keys and handshake nonces.
 *
 * RFC 6455 5.3 wants every client frame masked with a fresh key "derived
 * from a strong source of entropy", and 4.1 a nonce "randomly selected" for
 * every opening handshake. Asking the kernel for 4 bytes per frame costs a
 * syscall per frame; a pool asks it for WS_CSPRNG_POOL_BYTES at a time
 * (getrandom(2), or /dev/urandom where getrandom is missing or refused) and
 * hands the bytes out in order, each byte once. The bytes are the kernel's,
 * unmodified: there is no user-space generator to seed or to get wrong.
 *
 * Ownership: the caller owns each pool (ws_csprng_new / ws_csprng_free);
 * nothing here is process-wide. A pool is not thread-safe: one owner (a
 * client loop) uses it from one thread at a time.
 *
 * Fork: a child must never hand out the bytes its parent also hands out. By
 * default the pool lives in its own mapping marked MADV_WIPEONFORK, so a
 * child sees an empty, fresh pool (counters and flags at 0) and refills
 * from the kernel. Where the kernel lacks MADV_WIPEONFORK (Linux < 4.14, other
 * systems), or with WS_CSPRNG_PID_CHECK, the pool remembers the pid that
 * filled it and discards its bytes when getpid() differs; that costs a
 * getpid() per call, only on those systems.
 */
#ifndef WS_CSPRNG_H
#define WS_CSPRNG_H

#include <stddef.h>
#include <stdint.h>

/* Bytes fetched from the OS per refill: 1024 masking keys. */
#define WS_CSPRNG_POOL_BYTES 4096

typedef struct ws_csprng ws_csprng;

/* Flags for ws_csprng_new(); 0 is the right choice outside tests. */
enum ws_csprng_flags {
  WS_CSPRNG_URANDOM = 1,   /* read /dev/urandom, never getrandom(2) */
  WS_CSPRNG_PID_CHECK = 2  /* detect fork by pid, not by MADV_WIPEONFORK */
};

/* Where the last refill came from (ws_csprng_source). */
enum ws_csprng_source {
  WS_CSPRNG_SOURCE_NONE = 0,      /* no refill yet */
  WS_CSPRNG_SOURCE_GETRANDOM = 1,
  WS_CSPRNG_SOURCE_URANDOM = 2
};

/* How a child process is kept from reusing the parent's bytes. */
enum ws_csprng_fork_guard {
  WS_CSPRNG_FORK_WIPE = 0,  /* MADV_WIPEONFORK: the child's pool is zeroed */
  WS_CSPRNG_FORK_PID = 1    /* getpid() compared on every call */
};

/* Allocates an empty pool (its own page-aligned mapping; no OS random read
 * yet: the first draw refills). Returns NULL if the mapping fails. */
ws_csprng *ws_csprng_new(unsigned flags);

/* Unmaps the pool. NULL is a no-op. */
void ws_csprng_free(ws_csprng *r);

/* Writes n random bytes to out, refilling from the OS whenever the pool runs
 * dry (so any n works; n > WS_CSPRNG_POOL_BYTES takes several refills).
 * Returns 0, or a negative errno if the OS refused (getrandom and
 * /dev/urandom both failed: e.g. -EMFILE, -EACCES, -EIO); then out[0..n) is
 * zeroed and must not be used, and the pool is empty. EINTR and short reads
 * are retried inside; getrandom blocks only until the kernel's generator is
 * first initialised after boot. */
int ws_csprng_bytes(ws_csprng *r, void *out, size_t n);

/* A fresh 4-byte masking key (RFC 6455 5.3): a memcpy from the pool, a
 * syscall only once per 1024 keys. Returns 0 or a negative errno as
 * ws_csprng_bytes. */
int ws_csprng_mask_key(ws_csprng *r, uint8_t out[4]);

/* Successful refills since the pool was created (or since a fork wiped it):
 * how tests see that keys cost no syscall each. */
uint64_t ws_csprng_refills(const ws_csprng *r);

/* Unread bytes in the pool, 0..WS_CSPRNG_POOL_BYTES. */
size_t ws_csprng_available(const ws_csprng *r);

/* enum ws_csprng_source of the last refill. */
int ws_csprng_source(const ws_csprng *r);

/* enum ws_csprng_fork_guard in effect for this pool. */
int ws_csprng_fork_guard(const ws_csprng *r);

#endif
