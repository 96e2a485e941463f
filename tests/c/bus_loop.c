/* bus_loop.c - the worker bus end to end in C, for valgrind (make memcheck):
 * a hub process (this program exec'd, ws_bushub_run) and two links (ws_bus) on one loop.
 *
 *   1. b subscribes "t"; a publishes 200 messages; b gets them all, in order,
 *      and a gets none of its own.
 *   2. The hub is SIGKILLed: both links go down; a publish is dropped_down.
 *   3. A new hub on the same listening socket: both links come back, b's
 *      subscription is resent, a's next publish reaches b.
 *   4. Everything is closed and the loop ends with no handle left; the
 *      hub stops on SIGTERM and frees everything (valgrind checks both).
 * Exit 0 on success, 1 with a message otherwise. Bounded: about 30 s in all (the waits are bounded).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "bushub.h"
#include "workerbus.h"

typedef struct {
  int got, order_ok, own, ups, downs, probes;
} tally;

static tally ta, tb;
static uv_loop_t loop;
static uv_timer_t keep; /* the bus's retry timer is unref'd: a server's listeners keep its loop alive */

static void on_keep(uv_timer_t *t) { (void)t; }

static void on_msg(ws_bus *b, const char *topic, size_t tl, unsigned op, const char *p,
                   size_t n) {
  tally *t = ws_bus_user(b);
  if (n == 5 && !memcmp(p, "probe", 5)) {
    t->probes++;
    return;
  }
  char want[32];
  int k = snprintf(want, sizeof want, "m%d", t->got);
  if (tl != 1 || topic[0] != 't' || op != 1 || n != (size_t)k || memcmp(p, want, n) != 0)
    t->order_ok = 0;
  t->got++;
}

static void on_state(ws_bus *b, int up) {
  tally *t = ws_bus_user(b);
  if (up) t->ups++;
  else t->downs++;
}

static const ws_bus_callbacks cbs = {on_msg, on_state};

static const char *self;

/* The hub is this program again (exec'd: it starts with nothing of ours). */
static pid_t start_hub(int fd) {
  pid_t pid = fork();
  if (pid == 0) {
    char arg[16];
    snprintf(arg, sizeof arg, "%d", fd);
    execl(self, self, "hub", arg, (char *)NULL);
    _exit(127);
  }
  return pid;
}

static int run_hub(int fd) {
  ws_bushub_config cfg;
  ws_bushub_config_default(&cfg);
  char err[128];
  ws_bushub_stats st;
  int rc = ws_bushub_run(fd, &cfg, &st, err, sizeof err);
  if (rc != 0) fprintf(stderr, "bus_loop hub: %s\n", err);
  return rc == 0 ? 0 : 2;
}

/* Runs the loop until cond() or ms pass. */
static int run_until(int (*cond)(void), int ms) {
  uint64_t end = uv_now(&loop) + (uint64_t)ms;
  while (!cond()) {
    if (uv_now(&loop) >= end) return 0;
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
    uv_update_time(&loop);
  }
  return 1;
}

static ws_bus *a, *b;
static int both_up(void) { return ws_bus_is_up(a) && ws_bus_is_up(b); }
static int both_down(void) { return !ws_bus_is_up(a) && !ws_bus_is_up(b); }
static int b_probed(void) { return tb.probes > 0; }

/* Until the hub has b's subscription: a probes every 50 ms (the hub may still
 * be starting: under valgrind that takes seconds). */
static int wait_route(void) {
  for (int i = 0; i < 200; i++) {
    ws_bus_publish(a, "t", 1, 1, "probe", 5);
    if (run_until(b_probed, 50)) {
      int seen = tb.probes;
      for (int j = 0; j < 20; j++) { /* the probes still in flight */
        run_until(both_up, 10);
        usleep(10000);
        if (tb.probes != seen) seen = tb.probes, j = 0;
      }
      return 1;
    }
  }
  return 0;
}

static int b_has_200(void) { return tb.got >= 200; }

/* The new hub's report (STATS, once a second) counts m200: it forwarded to b
 * exactly the probes b got from it and m200 (a's probes before b's SUB
 * arrived were received and not forwarded). */
static ws_bushub_stats hub_seen;
static int hub_counted_m200(void) {
  uint64_t age;
  return ws_bus_get_hub_stats(a, &hub_seen, &age) &&
         hub_seen.forwarded == (uint64_t)tb.probes + 1 && hub_seen.received >= hub_seen.forwarded;
}
static int b_has_201(void) { return tb.got >= 201; }

#define FAIL(...) do { fprintf(stderr, "bus_loop: " __VA_ARGS__); fputc('\n', stderr); \
                       return 1; } while (0)

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "hub")) return run_hub(atoi(argv[2]));
  self = argv[0];
  char dir[] = "/tmp/wsuv-busloop-XXXXXX";
  if (!mkdtemp(dir)) FAIL("mkdtemp");
  char path[128];
  snprintf(path, sizeof path, "%s/hub.sock", dir);
  int lfd = socket(AF_UNIX, SOCK_STREAM, 0); /* inherited by the hub */
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strcpy(addr.sun_path, path);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 16)) FAIL("bind");
  pid_t hub = start_hub(lfd);
  uv_loop_init(&loop);
  uv_timer_init(&loop, &keep);
  uv_timer_start(&keep, on_keep, 1000, 1000);
  ws_bus_config cfg;
  ws_bus_config_default(&cfg);
  cfg.path = path;
  cfg.backoff_min_ms = 20;
  cfg.backoff_max_ms = 100;
  const char *err = NULL;
  ta.order_ok = tb.order_ok = 1;
  a = ws_bus_new(&loop, &cfg, &cbs, &ta, &err);
  b = ws_bus_new(&loop, &cfg, &cbs, &tb, &err);
  if (!a || !b) FAIL("ws_bus_new: %s", err);
  if (!run_until(both_up, 3000)) FAIL("links not up");
  ws_bus_subscribe(b, "t", 1);
  if (!wait_route()) FAIL("b's subscription never reached the hub");
  for (int i = 0; i < 200; i++) {
    char m[16];
    int k = snprintf(m, sizeof m, "m%d", i);
    if (ws_bus_publish(a, "t", 1, 1, m, (size_t)k) != WS_BUS_SENT) FAIL("publish %d", i);
  }
  if (!run_until(b_has_200, 3000)) FAIL("b got %d of 200", tb.got);
  if (!tb.order_ok || ta.got) FAIL("order %d, a got %d", tb.order_ok, ta.got);

  kill(hub, SIGKILL);
  waitpid(hub, NULL, 0);
  if (!run_until(both_down, 3000)) FAIL("links did not see the hub go");
  if (ws_bus_publish(a, "t", 1, 1, "lost", 4) != WS_BUS_DROPPED_DOWN) FAIL("publish while down");

  hub = start_hub(lfd);
  if (!run_until(both_up, 3000)) FAIL("links did not come back");
  tb.probes = 0;
  if (!wait_route()) FAIL("b's subscription was not resent to the new hub");
  if (ws_bus_publish(a, "t", 1, 1, "m200", 4) != WS_BUS_SENT) FAIL("publish after");
  if (!run_until(b_has_201, 3000)) FAIL("resubscription: b got %d", tb.got);
  if (!run_until(hub_counted_m200, 5000))
    FAIL("hub report: received %lu forwarded %lu", (unsigned long)hub_seen.received,
         (unsigned long)hub_seen.forwarded);
  if (hub_seen.links != 2 || hub_seen.accepted != 2 || hub_seen.topics != 1 ||
      hub_seen.malformed != 0 || hub_seen.dropped_full != 0)
    FAIL("hub report: links %lu accepted %lu topics %lu malformed %lu",
         (unsigned long)hub_seen.links, (unsigned long)hub_seen.accepted,
         (unsigned long)hub_seen.topics, (unsigned long)hub_seen.malformed);
  ws_bus_stats st;
  ws_bus_get_stats(a, &st);
  if (st.dropped_down != 1 || st.published < 201 || st.reconnects != 1)
    FAIL("a's stats: down %lu published %lu reconnects %lu", (unsigned long)st.dropped_down,
         (unsigned long)st.published, (unsigned long)st.reconnects);

  ws_bus_close(a);
  ws_bus_close(b);
  uv_close((uv_handle_t *)&keep, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0) FAIL("a handle was left open");
  kill(hub, SIGTERM);
  int status = 0;
  waitpid(hub, &status, 0);
  close(lfd);
  unlink(path);
  rmdir(dir);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) FAIL("hub exit status %d", status);
  printf("bus_loop: ok (%d messages, %d ups, %d downs)\n", tb.got, ta.ups + tb.ups,
         ta.downs + tb.downs);
  return 0;
}
