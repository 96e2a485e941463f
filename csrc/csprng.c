/* csprng.c - a pool of OS random bytes (see csprng.h for the contract).
 *
 * The pool is one struct in its own anonymous mapping so that
 * MADV_WIPEONFORK can zero it in a child; every field is chosen so that the
 * all-zero struct is a valid empty pool (avail 0, flags 0, guard WIPE).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syscall(), MADV_WIPEONFORK */
#endif
#include "csprng.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

struct ws_csprng {
  uint32_t avail;        /* unread bytes: pool[POOL_BYTES - avail ..] */
  uint8_t flags;         /* enum ws_csprng_flags */
  uint8_t guard;         /* enum ws_csprng_fork_guard */
  uint8_t source;        /* enum ws_csprng_source of the last refill */
  uint8_t no_getrandom;  /* getrandom said ENOSYS/EPERM once: skip it */
  pid_t pid;             /* FORK_PID: the process the bytes belong to */
  uint64_t refills;
  uint8_t pool[WS_CSPRNG_POOL_BYTES];
};

/* The mapping's size: the struct rounded up to whole pages. Recomputed in
 * ws_csprng_free() rather than stored, since a fork may wipe the struct. */
static size_t ws_csprng_map_size(void) {
  long page = sysconf(_SC_PAGESIZE);
  size_t p = page > 0 ? (size_t)page : 4096u;
  return (sizeof(struct ws_csprng) + p - 1) / p * p;
}

ws_csprng *ws_csprng_new(unsigned flags) {
  void *m = mmap(NULL, ws_csprng_map_size(), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return NULL;
  ws_csprng *r = m; /* anonymous pages are zero: an empty pool */
  r->flags = (uint8_t)(flags & (WS_CSPRNG_URANDOM | WS_CSPRNG_PID_CHECK));
  r->guard = WS_CSPRNG_FORK_PID;
#ifdef MADV_WIPEONFORK
  if (!(flags & WS_CSPRNG_PID_CHECK) &&
      madvise(m, ws_csprng_map_size(), MADV_WIPEONFORK) == 0)
    r->guard = WS_CSPRNG_FORK_WIPE;
#endif
  r->pid = getpid();
  return r;
}

void ws_csprng_free(ws_csprng *r) {
  if (r != NULL)
    munmap(r, ws_csprng_map_size());
}

/* getrandom(2) into buf[0..n): 0, -ENOSYS where there is none, or -errno. */
static int ws_csprng_getrandom(uint8_t *buf, size_t n) {
#if defined(__linux__) && defined(SYS_getrandom)
  size_t got = 0;
  while (got < n) {
    long k = syscall(SYS_getrandom, buf + got, n - got, 0);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (k == 0) /* never seen; refuse rather than spin */
      return -EIO;
    got += (size_t)k; /* short reads: up to 32 MiB per call, or a signal */
  }
  return 0;
#else
  (void)buf;
  (void)n;
  return -ENOSYS;
#endif
}

/* /dev/urandom into buf[0..n): 0 or -errno. Opened per refill (once per
 * 4 KiB) so that the pool holds no descriptor a fork or exec would inherit. */
static int ws_csprng_urandom(uint8_t *buf, size_t n) {
  int fd;
  do
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC | O_NOCTTY);
  while (fd < 0 && errno == EINTR);
  if (fd < 0)
    return -errno;
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) != 0)
    rc = -errno;
  else if (!S_ISCHR(st.st_mode)) /* not the device: refuse whatever it is */
    rc = -EIO;
  size_t got = 0;
  while (rc == 0 && got < n) {
    ssize_t k = read(fd, buf + got, n - got);
    if (k < 0) {
      if (errno != EINTR)
        rc = -errno;
    } else if (k == 0) {
      rc = -EIO;
    } else {
      got += (size_t)k;
    }
  }
  close(fd);
  return rc;
}

static int ws_csprng_refill(ws_csprng *r) {
  int rc = -ENOSYS;
  uint8_t source = WS_CSPRNG_SOURCE_GETRANDOM;
  if (!(r->flags & WS_CSPRNG_URANDOM) && !r->no_getrandom) {
    rc = ws_csprng_getrandom(r->pool, sizeof r->pool);
    /* Missing (old kernel) or refused by a seccomp filter: use the device
     * from now on. Any other error is the OS refusing randomness. */
    if (rc == -ENOSYS || rc == -EPERM)
      r->no_getrandom = 1;
  }
  if (rc == -ENOSYS || rc == -EPERM) {
    rc = ws_csprng_urandom(r->pool, sizeof r->pool);
    source = WS_CSPRNG_SOURCE_URANDOM;
  }
  if (rc != 0) {
    r->avail = 0;
    return rc;
  }
  r->avail = WS_CSPRNG_POOL_BYTES;
  r->source = source;
  r->refills++;
  return 0;
}

/* FORK_PID: a pool filled by another process (our parent) is discarded. */
static void ws_csprng_check_fork(ws_csprng *r) {
  if (r->guard == WS_CSPRNG_FORK_PID) {
    pid_t now = getpid();
    if (now != r->pid) {
      r->pid = now;
      r->avail = 0;
      r->refills = 0;
    }
  }
}

/* Copies n bytes with no fork check; n may exceed the pool. */
static int ws_csprng_take(ws_csprng *r, uint8_t *out, size_t n) {
  size_t done = 0;
  while (done < n) {
    if (r->avail == 0) {
      int rc = ws_csprng_refill(r);
      if (rc != 0) {
        memset(out, 0, n);
        return rc;
      }
    }
    size_t k = n - done < r->avail ? n - done : r->avail;
    memcpy(out + done, r->pool + (WS_CSPRNG_POOL_BYTES - r->avail), k);
    r->avail -= (uint32_t)k;
    done += k;
  }
  return 0;
}

int ws_csprng_bytes(ws_csprng *r, void *out, size_t n) {
  ws_csprng_check_fork(r);
  return ws_csprng_take(r, out, n);
}

int ws_csprng_mask_key(ws_csprng *r, uint8_t out[4]) {
  ws_csprng_check_fork(r);
  if (r->avail >= 4) { /* the per-frame path: no call, no branch on n */
    memcpy(out, r->pool + (WS_CSPRNG_POOL_BYTES - r->avail), 4);
    r->avail -= 4;
    return 0;
  }
  return ws_csprng_take(r, out, 4);
}

uint64_t ws_csprng_refills(const ws_csprng *r) { return r->refills; }

size_t ws_csprng_available(const ws_csprng *r) { return r->avail; }

int ws_csprng_source(const ws_csprng *r) { return r->source; }

int ws_csprng_fork_guard(const ws_csprng *r) { return r->guard; }
