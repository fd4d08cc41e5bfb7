/*
 * keyport benchmark load generator: one thread, epoll, non-blocking sockets, loopback TCP.
 * Built by bench/run.mjs with the machine's gcc into bench/out/loadgen and pinned (taskset) to
 * the core the server under test does not use. Prints one JSON object on stdout.
 *
 *   loadgen echo     --port P [--host H] [--conns N] [--size B] [--duration S] [--warmup S]
 *   loadgen connrate --port P [--host H] [--inflight K] [--size B] [--duration S] [--warmup S]
 *   loadgen idle     --port P [--host H] [--conns N] [--inflight K] [--size B] [--hold S]
 *
 * echo:     N connections each ping-pong one B-byte message (send, wait for the full echo,
 *           verify the bytes, send the next). Reports round trips per second and the latency
 *           of each round trip (send of the first byte to receipt of the last) in microseconds.
 * connrate: keeps K connection attempts in flight; each one connects, sends B bytes, waits for
 *           them to come back, closes. Reports completed cycles per second, the latency of a
 *           cycle (connect start to the last byte of the echo), the cycles and the errors of
 *           every measured second, and every failure by kind. A cycle that does not finish in
 *           --stall seconds is a timeout (counted); a stall does not end this mode.
 * idle:     opens N connections (K connects in flight), echoes B bytes on each (so the server
 *           has really accepted it), prints {"event":"ready",...} and holds them until stdin is
 *           closed or a line arrives on it, or --hold seconds pass; then closes them all.
 *
 * Every mode reports its own CPU time (getrusage) over the measured window, so a reader can see
 * that the load generator was not the bottleneck. In echo and idle, any failure to make
 * progress (no connection, no echo) within --stall seconds ends the run with {"error": "..."}
 * and exit code 1: the harness must never hang on a server that accepts but does not answer.
 * connrate ends at its time whatever happens and counts what failed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIZE 65536
#define HIST_US 200000 /* 1 us buckets up to 200 ms */
#define HIST_MS 60000  /* then 1 ms buckets up to 60 s (a SYN retransmitted after 1 s, 3 s…) */

static const char *g_mode;
static const char *g_host = "127.0.0.1";
static int g_port = 0;
static int g_conns = 50;
static int g_inflight = 64;
static int g_size = 64;
static double g_duration = 5.0;
static double g_warmup = 1.0;
static double g_hold = 60.0;
static double g_stall = 5.0;
static double g_connect_timeout = 10.0;
static struct sockaddr_in g_addr;

static uint64_t *g_hist;
static uint64_t *g_hist_ms;
static uint64_t g_hist_over;
static uint64_t g_hist_n;
static double g_lat_sum_us;
static double g_lat_max_us;

/* error counters: refused (ECONNREFUSED), connect (any other connect failure), addrnotavail
 * (no local port left), reset (ECONNRESET / EPIPE on send or receive), eof (closed before the
 * whole echo came back: a short echo), corrupt (bytes differ), timeout (connrate: a cycle that
 * did not finish within --stall seconds) */
static uint64_t e_refused, e_connect, e_reset, e_eof, e_corrupt, e_addrnotavail, e_timeout;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void cpu_split(double *user, double *sys) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *user = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  *sys = (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* msg never contains quotes or backslashes from us, but be safe */
  for (char *p = msg; *p; p++)
    if (*p == '"' || *p == '\\') *p = '\'';
  printf("{\"mode\":\"%s\",\"error\":\"%s\"}\n", g_mode ? g_mode : "?", msg);
  fflush(stdout);
  exit(1);
}

static void hist_add(uint64_t ns) {
  double us = (double)ns / 1000.0;
  uint64_t b = ns / 1000;
  if (b < HIST_US)
    g_hist[b]++;
  else if (ns / 1000000 < HIST_MS)
    g_hist_ms[ns / 1000000]++;
  else
    g_hist_over++;
  g_hist_n++;
  g_lat_sum_us += us;
  if (us > g_lat_max_us) g_lat_max_us = us;
}

static double hist_pct(double q) {
  if (g_hist_n == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)g_hist_n);
  if (want >= g_hist_n) want = g_hist_n - 1;
  uint64_t seen = 0;
  for (uint64_t b = 0; b < HIST_US; b++) {
    seen += g_hist[b];
    if (seen > want) return (double)b + 0.5;
  }
  for (uint64_t m = 0; m < HIST_MS; m++) {
    seen += g_hist_ms[m];
    if (seen > want) return (double)m * 1000.0 + 500.0;
  }
  return g_lat_max_us;
}

static void print_lat(void) {
  printf(",\"lat_us\":{\"n\":%llu,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,"
         "\"max\":%.1f,\"mean\":%.1f}",
         (unsigned long long)g_hist_n, hist_pct(0.50), hist_pct(0.90), hist_pct(0.99),
         hist_pct(0.999), g_lat_max_us, g_hist_n ? g_lat_sum_us / (double)g_hist_n : 0.0);
}

static void print_errors(void) {
  printf(",\"errors\":{\"refused\":%llu,\"connect\":%llu,\"reset\":%llu,\"eof\":%llu,"
         "\"corrupt\":%llu,\"addrnotavail\":%llu,\"timeout\":%llu}",
         (unsigned long long)e_refused, (unsigned long long)e_connect,
         (unsigned long long)e_reset, (unsigned long long)e_eof,
         (unsigned long long)e_corrupt, (unsigned long long)e_addrnotavail,
         (unsigned long long)e_timeout);
}

static void print_cpu(double u0, double s0, double wall) {
  double u1, s1;
  cpu_split(&u1, &s1);
  printf(",\"cpu\":{\"user_s\":%.3f,\"sys_s\":%.3f,\"pct\":%.1f}", u1 - u0, s1 - s0,
         wall > 0 ? 100.0 * ((u1 - u0) + (s1 - s0)) / wall : 0.0);
}

static void raise_nofile(long need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if ((long)rl.rlim_cur >= need) return;
  rlim_t want = (rlim_t)need;
  if (rl.rlim_max < want) {
    rl.rlim_max = want; /* works as root (CAP_SYS_RESOURCE) */
  }
  rl.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((long)rl.rlim_cur < need)
      fail("need %ld file descriptors, the limit is %ld (raise ulimit -n)", need,
           (long)rl.rlim_cur);
  }
}

/* ---- connections ---------------------------------------------------------------------- */

enum { S_FREE = 0, S_CONNECTING, S_SENDING, S_WAITING, S_IDLE };

struct conn {
  int fd;
  int state;
  int id;
  uint32_t seq;
  int rpos; /* bytes of the echo received so far */
  int wpos; /* bytes of the request written so far */
  uint32_t events; /* the epoll interest set now registered (0: not registered) */
  uint64_t t_start; /* ns: send of this message (echo) / start of the connect (connrate) */
  uint64_t t_connect;
  unsigned char *out;
  unsigned char *in;
};

static int g_ep;
static struct conn *g_c;

static void fill(struct conn *c) {
  for (int i = 0; i < g_size; i++) c->out[i] = (unsigned char)(c->id * 31 + c->seq * 7 + i);
}

static int open_socket(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* Sets the interest set; a no-op (no syscall) when it is already that. */
static void ep_set(struct conn *c, uint32_t events, int op) {
  if (op == EPOLL_CTL_MOD && c->events == events) return;
  struct epoll_event ev = {.events = events, .data.ptr = c};
  if (epoll_ctl(g_ep, op, c->fd, &ev) != 0) fail("epoll_ctl: %s", strerror(errno));
  c->events = events;
}

/* Starts a non-blocking connect; returns 0, or -1 when it failed at once (counted). */
static int start_connect(struct conn *c) {
  c->fd = open_socket();
  c->rpos = c->wpos = 0;
  c->t_connect = now_ns();
  int r = connect(c->fd, (struct sockaddr *)&g_addr, sizeof g_addr);
  if (r != 0 && errno != EINPROGRESS) {
    if (errno == EADDRNOTAVAIL)
      e_addrnotavail++;
    else if (errno == ECONNREFUSED)
      e_refused++;
    else
      e_connect++;
    close(c->fd);
    c->fd = -1;
    c->state = S_FREE;
    return -1;
  }
  c->state = S_CONNECTING;
  ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
  return 0;
}

static void drop(struct conn *c) {
  if (c->fd >= 0) close(c->fd); /* close removes it from the epoll set */
  c->fd = -1;
  c->events = 0;
  c->state = S_FREE;
}

/* Writes the rest of the request; returns 0 when all written, 1 when it must wait for EPOLLOUT,
 * -1 on error (counted, connection dropped). */
static int send_rest(struct conn *c) {
  while (c->wpos < g_size) {
    ssize_t n = send(c->fd, c->out + c->wpos, (size_t)(g_size - c->wpos), MSG_NOSIGNAL);
    if (n > 0) {
      c->wpos += (int)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
    e_reset++;
    drop(c);
    return -1;
  }
  return 0;
}

/* Starts the next message on an open connection. */
static int send_msg(struct conn *c) {
  c->seq++;
  fill(c);
  c->wpos = c->rpos = 0;
  c->t_start = now_ns();
  int r = send_rest(c);
  if (r < 0) return -1;
  c->state = r == 1 ? S_SENDING : S_WAITING;
  ep_set(c, r == 1 ? EPOLLOUT : EPOLLIN, EPOLL_CTL_MOD);
  return 0;
}

/* Reads what is there of the echo; returns 1 when the full message arrived and matched,
 * 0 when more is needed, -1 on error (counted, connection dropped). */
static int recv_msg(struct conn *c) {
  for (;;) {
    ssize_t n = recv(c->fd, c->in + c->rpos, (size_t)(g_size - c->rpos), 0);
    if (n > 0) {
      c->rpos += (int)n;
      if (c->rpos < g_size) continue;
      if (memcmp(c->in, c->out, (size_t)g_size) != 0) {
        e_corrupt++;
        drop(c);
        return -1;
      }
      return 1;
    }
    if (n == 0) {
      e_eof++;
      drop(c);
      return -1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno == EINTR) continue;
    e_reset++;
    drop(c);
    return -1;
  }
}

/* Called on EPOLLOUT of a connecting socket: 0 connected, -1 failed (counted, dropped). */
static int finish_connect(struct conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    if (err == EADDRNOTAVAIL)
      e_addrnotavail++;
    else if (err == ECONNREFUSED)
      e_refused++;
    else if (err == ECONNRESET)
      e_reset++;
    else
      e_connect++;
    drop(c);
    return -1;
  }
  return 0;
}

static struct conn *alloc_conns(int n) {
  struct conn *c = calloc((size_t)n, sizeof *c);
  unsigned char *bufs = malloc((size_t)n * (size_t)g_size * 2);
  if (!c || !bufs) fail("out of memory for %d connections", n);
  for (int i = 0; i < n; i++) {
    c[i].fd = -1;
    c[i].id = i;
    c[i].out = bufs + (size_t)i * (size_t)g_size * 2;
    c[i].in = c[i].out + g_size;
  }
  return c;
}

/* Opens n connections, at most `inflight` connects at a time; with `echo_first`, also does one
 * echo on each (proof the server accepted it). Fails on a stall. Returns when all are up. */
static void open_all(int n, int inflight, int echo_first) {
  int next = 0, pending = 0, up = 0;
  double last_progress = now_s();
  double started = last_progress;
  struct epoll_event evs[256];
  while (up < n) {
    while (next < n && pending < inflight) {
      struct conn *c = &g_c[next];
      if (start_connect(c) != 0) {
        fail("connect to %s:%d failed at once (connection %d): %s", g_host, g_port, next,
             strerror(errno));
      }
      next++;
      pending++;
    }
    int k = epoll_wait(g_ep, evs, 256, 100);
    if (k < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < k; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c->state == S_CONNECTING) {
        if (finish_connect(c) != 0)
          fail("connect to %s:%d failed (connection %d of %d; %d up)", g_host, g_port, c->id, n,
               up);
        if (!echo_first) {
          c->state = S_IDLE;
          ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
          pending--;
          up++;
          last_progress = now_s();
          continue;
        }
        if (send_msg(c) != 0) fail("send failed on connection %d", c->id);
        last_progress = now_s();
      } else if (c->state == S_SENDING) {
        int r = send_rest(c);
        if (r < 0) fail("send failed on connection %d", c->id);
        if (r == 0) {
          c->state = S_WAITING;
          ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        }
      } else if (c->state == S_WAITING) {
        int r = recv_msg(c);
        if (r < 0)
          fail("connection %d ended before its echo came back (%s; %d of %d up)", c->id,
               e_corrupt ? "bytes differ" : e_eof ? "closed by server" : "reset", up, n);
        if (r == 1) {
          c->state = S_IDLE;
          pending--;
          up++;
          last_progress = now_s();
        }
      } else if (c->state == S_IDLE) {
        /* the server closed or sent something unexpected on an idle connection */
        char b[256];
        ssize_t m = recv(c->fd, b, sizeof b, 0);
        if (m == 0)
          fail("server closed idle connection %d (%d of %d up)", c->id, up, n);
        else if (m < 0 && errno != EAGAIN)
          fail("idle connection %d reset (%d of %d up)", c->id, up, n);
      }
    }
    double t = now_s();
    if (t - last_progress > g_stall)
      fail("no progress for %.0f s while opening connections: %d of %d up, %d %s (echo not "
           "answered?)",
           g_stall, up, n, pending, echo_first ? "connecting or waiting for their first echo" : "connecting");
    if (t - started > g_connect_timeout + (double)n / 500.0)
      fail("opening %d connections took longer than %.0f s (%d up)", n,
           g_connect_timeout + (double)n / 500.0, up);
  }
}

/* ---- modes ---------------------------------------------------------------------------- */

static void mode_echo(void) {
  raise_nofile(g_conns + 64);
  g_c = alloc_conns(g_conns);
  double t_open0 = now_s();
  open_all(g_conns, g_inflight, 1);
  double open_s = now_s() - t_open0;
  for (int i = 0; i < g_conns; i++)
    if (send_msg(&g_c[i]) != 0) fail("send failed on connection %d", i);

  double t0 = now_s();
  double t_measure = t0 + g_warmup, t_end = t_measure + g_duration;
  int measuring = 0;
  uint64_t rts = 0, rts_warm = 0;
  double u0 = 0, s0 = 0, last_progress = t0;
  int alive = g_conns;
  struct epoll_event evs[512];
  for (;;) {
    int k = epoll_wait(g_ep, evs, 512, 50);
    if (k < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
    uint64_t tn = now_ns();
    for (int i = 0; i < k; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c->state == S_SENDING) {
        int r = send_rest(c);
        if (r < 0) {
          alive--;
          continue;
        }
        if (r == 0) {
          c->state = S_WAITING;
          ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        }
        continue;
      }
      if (c->state != S_WAITING) continue;
      int r = recv_msg(c);
      if (r < 0) {
        alive--;
        continue;
      }
      if (r == 0) continue;
      if (measuring) {
        rts++;
        hist_add(tn - c->t_start);
      } else {
        rts_warm++;
      }
      if (send_msg(c) != 0) alive--;
    }
    double t = now_s();
    if (k > 0) last_progress = t;
    if (alive == 0) fail("every connection ended (eof %llu, reset %llu, corrupt %llu)",
                         (unsigned long long)e_eof, (unsigned long long)e_reset,
                         (unsigned long long)e_corrupt);
    if (t - last_progress > g_stall)
      fail("no echo reply for %.0f s (%llu round trips done)", g_stall,
           (unsigned long long)(rts + rts_warm));
    if (!measuring && t >= t_measure) {
      measuring = 1;
      t_measure = t;
      t_end = t + g_duration;
      cpu_split(&u0, &s0);
      printf("{\"event\":\"measure\"}\n"); /* the harness samples server CPU from here */
      fflush(stdout);
    }
    if (measuring && t >= t_end) {
      double wall = t - t_measure;
      printf("{\"mode\":\"echo\",\"conns\":%d,\"size\":%d,\"open_s\":%.3f,\"duration_s\":%.3f,"
             "\"round_trips\":%llu,\"rt_per_s\":%.1f,\"alive\":%d",
             g_conns, g_size, open_s, wall, (unsigned long long)rts, (double)rts / wall, alive);
      print_lat();
      print_errors();
      print_cpu(u0, s0, wall);
      printf("}\n");
      fflush(stdout);
      return;
    }
  }
}

static uint64_t errors_total(void) {
  return e_refused + e_connect + e_reset + e_eof + e_corrupt + e_addrnotavail + e_timeout;
}

/* Sustained connection cycles. Unlike the other modes a stall does not end the run: the run
 * ends at its time anyway, and a relay that stops answering shows as a rate that falls to 0
 * and as counted errors (timeouts, refused, resets…), second by second in "per_s" / "err_per_s". */
static void mode_connrate(void) {
  raise_nofile(g_inflight + 64);
  g_c = alloc_conns(g_inflight);
  double t0 = now_s();
  double t_measure = t0 + g_warmup, t_end = t_measure + g_duration;
  int measuring = 0;
  uint64_t done = 0, done_warm = 0, attempts = 0;
  double u0 = 0, s0 = 0, last_progress = t0, max_gap = 0;
  uint64_t attempt_timeout_ns = (uint64_t)(g_stall * 1e9);
  struct epoll_event evs[512];
  double last_sweep = t0;
  /* per measured second: cycles completed and errors counted */
  int secs = (int)g_duration + 2;
  uint64_t *per_s = calloc((size_t)secs, sizeof *per_s);
  uint64_t *err_s = calloc((size_t)secs, sizeof *err_s);
  if (!per_s || !err_s) fail("out of memory");
  uint64_t err_mark = 0, err_at_measure = 0;
  int cur_sec = 0;
  for (;;) {
    for (int i = 0; i < g_inflight; i++) {
      struct conn *c = &g_c[i];
      if (c->state != S_FREE) continue;
      attempts++;
      c->seq++;
      fill(c);
      start_connect(c);
    }
    int k = epoll_wait(g_ep, evs, 512, 50);
    if (k < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < k; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c->state == S_CONNECTING) {
        if (finish_connect(c) != 0) continue;
        int r = send_rest(c);
        if (r < 0) continue;
        c->state = r == 1 ? S_SENDING : S_WAITING;
        ep_set(c, r == 1 ? EPOLLOUT : EPOLLIN, EPOLL_CTL_MOD);
      } else if (c->state == S_SENDING) {
        int r = send_rest(c);
        if (r < 0) continue;
        if (r == 0) {
          c->state = S_WAITING;
          ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        }
      } else if (c->state == S_WAITING) {
        int r = recv_msg(c);
        if (r <= 0) continue;
        uint64_t tn = now_ns();
        double t = (double)tn / 1e9;
        if (measuring) {
          done++;
          hist_add(tn - c->t_connect);
          int sec = (int)(t - t_measure);
          if (sec >= 0 && sec < secs) per_s[sec]++;
        } else {
          done_warm++;
        }
        if (t - last_progress > max_gap) max_gap = t - last_progress;
        last_progress = t;
        drop(c);
      }
    }
    double t = now_s();
    if (t - last_sweep > 0.25) { /* time out attempts that hang (e.g. accepted, never echoed) */
      uint64_t tn = now_ns();
      for (int i = 0; i < g_inflight; i++) {
        struct conn *c = &g_c[i];
        if (c->state != S_FREE && tn - c->t_connect > attempt_timeout_ns) {
          e_timeout++;
          drop(c);
        }
      }
      last_sweep = t;
    }
    if (measuring) {
      int sec = (int)(t - t_measure);
      while (cur_sec < sec && cur_sec < secs) { /* a second ended: its errors */
        uint64_t e = errors_total();
        err_s[cur_sec++] = e - err_mark;
        err_mark = e;
      }
    }
    if (!measuring && t >= t_measure) {
      measuring = 1;
      t_measure = t;
      t_end = t + g_duration;
      err_mark = err_at_measure = errors_total();
      cpu_split(&u0, &s0);
      printf("{\"event\":\"measure\"}\n"); /* the harness samples server CPU from here */
      fflush(stdout);
    }
    if (measuring && t >= t_end) {
      double wall = t - t_measure;
      if (t - last_progress > max_gap) max_gap = t - last_progress;
      int inflight_end = 0;
      for (int i = 0; i < g_inflight; i++)
        if (g_c[i].state != S_FREE) inflight_end++;
      if (cur_sec < secs) err_s[cur_sec] = errors_total() - err_mark;
      int nsec = (int)wall; /* whole seconds only; the partial last one is left out */
      if (nsec > secs) nsec = secs;
      printf("{\"mode\":\"connrate\",\"inflight\":%d,\"size\":%d,\"duration_s\":%.3f,"
             "\"cycles\":%llu,\"warmup_cycles\":%llu,\"conn_per_s\":%.1f,\"attempts\":%llu,"
             "\"inflight_at_end\":%d,\"max_gap_s\":%.3f,\"errors_in_window\":%llu",
             g_inflight, g_size, wall, (unsigned long long)done, (unsigned long long)done_warm,
             (double)done / wall, (unsigned long long)attempts, inflight_end, max_gap,
             (unsigned long long)(errors_total() - err_at_measure));
      printf(",\"per_s\":[");
      for (int i = 0; i < nsec; i++) printf("%s%llu", i ? "," : "", (unsigned long long)per_s[i]);
      printf("],\"err_per_s\":[");
      for (int i = 0; i < nsec; i++) printf("%s%llu", i ? "," : "", (unsigned long long)err_s[i]);
      printf("]");
      print_lat();
      print_errors();
      print_cpu(u0, s0, wall);
      printf("}\n");
      fflush(stdout);
      return;
    }
  }
}

static void mode_idle(void) {
  raise_nofile(g_conns + 64);
  g_c = alloc_conns(g_conns);
  double u0, s0;
  cpu_split(&u0, &s0);
  double t0 = now_s();
  open_all(g_conns, g_inflight, g_size > 0);
  double open_s = now_s() - t0;
  printf("{\"event\":\"ready\",\"conns\":%d,\"open_s\":%.3f}\n", g_conns, open_s);
  fflush(stdout);

  /* hold: wait for stdin (EOF or a line), the hold time, or the server dropping connections */
  struct conn in = {.fd = 0, .id = -1};
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &in};
  (void)epoll_ctl(g_ep, EPOLL_CTL_ADD, 0, &ev); /* fails for /dev/null: then only --hold ends it */
  double t_hold_end = now_s() + g_hold;
  int dropped = 0;
  const char *why = "hold time over";
  struct epoll_event evs[256];
  for (int stop = 0; !stop;) {
    int k = epoll_wait(g_ep, evs, 256, 100);
    for (int i = 0; i < k; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c == &in) {
        why = "told to stop";
        stop = 1;
        continue;
      }
      char b[256];
      ssize_t m = recv(c->fd, b, sizeof b, 0);
      if (m == 0 || (m < 0 && errno != EAGAIN)) {
        dropped++;
        drop(c);
      }
    }
    if (now_s() >= t_hold_end) stop = 1;
  }
  double t_close = now_s();
  for (int i = 0; i < g_conns; i++)
    if (g_c[i].fd >= 0) drop(&g_c[i]);
  double close_s = now_s() - t_close;
  double wall = now_s() - t0;
  printf("{\"mode\":\"idle\",\"conns\":%d,\"open_s\":%.3f,\"close_s\":%.3f,\"dropped_by_server\":%d,"
         "\"stopped\":\"%s\"",
         g_conns, open_s, close_s, dropped, why);
  print_errors();
  print_cpu(u0, s0, wall);
  printf("}\n");
  fflush(stdout);
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen echo|connrate|idle --port P [--host H] [--conns N] [--inflight K]\n"
          "       [--size B] [--duration S] [--warmup S] [--hold S] [--stall S]\n"
          "       [--connect-timeout S]\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  g_mode = argv[1];
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--host")) g_host = v;
    else if (!strcmp(a, "--port")) g_port = atoi(v);
    else if (!strcmp(a, "--conns")) g_conns = atoi(v);
    else if (!strcmp(a, "--inflight")) g_inflight = atoi(v);
    else if (!strcmp(a, "--size")) g_size = atoi(v);
    else if (!strcmp(a, "--duration")) g_duration = atof(v);
    else if (!strcmp(a, "--warmup")) g_warmup = atof(v);
    else if (!strcmp(a, "--hold")) g_hold = atof(v);
    else if (!strcmp(a, "--stall")) g_stall = atof(v);
    else if (!strcmp(a, "--connect-timeout")) g_connect_timeout = atof(v);
    else usage();
  }
  if (g_port <= 0 || g_port > 65535) usage();
  if (g_size < 0 || g_size > MAX_SIZE) usage();
  if (g_conns < 1 || g_inflight < 1) usage();
  if (strcmp(g_mode, "idle") != 0 && g_size < 1) usage();
  signal(SIGPIPE, SIG_IGN);
  memset(&g_addr, 0, sizeof g_addr);
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons((uint16_t)g_port);
  if (inet_pton(AF_INET, g_host, &g_addr.sin_addr) != 1) fail("bad --host %s (IPv4 only)", g_host);
  g_hist = calloc(HIST_US, sizeof *g_hist);
  g_hist_ms = calloc(HIST_MS, sizeof *g_hist_ms);
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  if (!g_hist || !g_hist_ms || g_ep < 0) fail("setup failed");
  if (!strcmp(g_mode, "echo")) mode_echo();
  else if (!strcmp(g_mode, "connrate")) mode_connrate();
  else if (!strcmp(g_mode, "idle")) mode_idle();
  else usage();
  return 0;
}
