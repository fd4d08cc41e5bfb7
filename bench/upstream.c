/*
 * keyport benchmark upstream: the fast echo server behind every relay in the relay workloads
 * (relay-rtt, relay-connrate, relay-idle). One thread, level-triggered epoll, non-blocking
 * sockets with TCP_NODELAY; it echoes whatever arrives and closes a connection on EOF, so that
 * the relay, not the upstream, is what a relay workload measures. Built by bench/run.mjs with
 * the machine's gcc into bench/out/upstream and pinned (taskset) to the load core, next to the
 * load generator; the harness reports its CPU % so that one can see it was never the limit.
 *
 *   upstream --port P [--host 127.0.0.1] [--backlog N]
 *
 * Prints {"event":"listening",...} once it listens. On SIGINT / SIGTERM it prints its counters
 * ({"accepted":…,"eof":…,"resets":…,"accept_errors":…,"emfile":…,"max_open":…,"open":…})
 * and exits 0. Per message it costs one read() and one write() (a read that fills less than
 * the buffer is not followed by a read that would only say EAGAIN).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536

/* What is left to write back on a connection whose socket buffer was full (rare: bulk data). */
struct pend {
  unsigned char *buf;
  uint32_t len, off;
};

static volatile sig_atomic_t g_stop;
static struct pend *g_pend;
static size_t g_pend_n;
static int g_ep;
static unsigned long long n_accepted, n_eof, n_resets, n_accept_errors, n_emfile;
static long n_open, n_max_open;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void die(const char *what) {
  printf("{\"mode\":\"upstream\",\"error\":\"%s: %s\"}\n", what, strerror(errno));
  fflush(stdout);
  exit(1);
}

static size_t raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return (size_t)rl.rlim_cur;
}

static void set_events(int fd, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  epoll_ctl(g_ep, EPOLL_CTL_MOD, fd, &ev);
}

static void close_conn(int fd) {
  if ((size_t)fd < g_pend_n && g_pend[fd].buf) {
    free(g_pend[fd].buf);
    g_pend[fd].buf = NULL;
  }
  close(fd); /* also removes it from the epoll set */
  n_open--;
}

/* Writes buf[0..len) back; keeps what the socket does not take and waits for EPOLLOUT.
 * Returns -1 when the connection was closed (reset). */
static int echo_back(int fd, const unsigned char *buf, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, buf + off, len - off);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    n_resets++;
    close_conn(fd);
    return -1;
  }
  if (off == len) return 0;
  if ((size_t)fd >= g_pend_n) { /* cannot happen: fds are below the limit the array has */
    close_conn(fd);
    return -1;
  }
  struct pend *p = &g_pend[fd];
  p->buf = malloc(len - off);
  if (!p->buf) {
    close_conn(fd);
    return -1;
  }
  memcpy(p->buf, buf + off, len - off);
  p->len = (uint32_t)(len - off);
  p->off = 0;
  set_events(fd, EPOLLOUT); /* stop reading until it is written: backpressure */
  return 0;
}

static void flush_pending(int fd) {
  struct pend *p = &g_pend[fd];
  while (p->off < p->len) {
    ssize_t w = write(fd, p->buf + p->off, p->len - p->off);
    if (w > 0) {
      p->off += (uint32_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    n_resets++;
    close_conn(fd);
    return;
  }
  free(p->buf);
  p->buf = NULL;
  set_events(fd, EPOLLIN);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, backlog = 65535;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--backlog")) backlog = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: upstream --port P [--host H] [--backlog N]\n");
      return 2;
    }
  }
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "usage: upstream --port P [--host H] [--backlog N]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: epoll_wait returns EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  g_pend_n = raise_nofile();
  g_pend = calloc(g_pend_n, sizeof *g_pend); /* pages are touched only for fds in use */
  if (!g_pend) die("calloc");
  /* a spare descriptor: when accept() fails with EMFILE, close it, accept and close the
   * connection (counted), reopen it — else the level-triggered listener would spin */
  int spare = open("/dev/null", O_RDONLY | O_CLOEXEC);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    errno = EINVAL;
    die("bad --host");
  }
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
  if (listen(lfd, backlog) != 0) die("listen");
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  if (g_ep < 0) die("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, lfd, &lev) != 0) die("epoll_ctl");
  printf("{\"event\":\"listening\",\"listen\":\"%s:%d\",\"pid\":%d,\"nofile\":%zu}\n", host, port,
         (int)getpid(), g_pend_n);
  fflush(stdout);

  static unsigned char buf[BUF];
  struct epoll_event evs[1024];
  while (!g_stop) {
    int k = epoll_wait(g_ep, evs, 1024, 500);
    if (k < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < k; i++) {
      int fd = evs[i].data.fd;
      uint32_t e = evs[i].events;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            n_accept_errors++;
            if ((errno == EMFILE || errno == ENFILE) && spare >= 0) {
              n_emfile++;
              close(spare);
              int x = accept(lfd, NULL, NULL);
              if (x >= 0) close(x);
              spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
              continue;
            }
            if (errno == ECONNABORTED) continue;
            break;
          }
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
          if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c, &cev) != 0) {
            close(c);
            n_accept_errors++;
            continue;
          }
          n_accepted++;
          if (++n_open > n_max_open) n_max_open = n_open;
        }
        continue;
      }
      if ((size_t)fd < g_pend_n && g_pend[fd].buf) {
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) flush_pending(fd);
        continue;
      }
      if (!(e & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
      ssize_t n = read(fd, buf, BUF);
      if (n > 0) {
        echo_back(fd, buf, (size_t)n);
      } else if (n == 0) {
        n_eof++;
        close_conn(fd);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        n_resets++;
        close_conn(fd);
      }
    }
  }
  printf("{\"mode\":\"upstream\",\"accepted\":%llu,\"eof\":%llu,\"resets\":%llu,"
         "\"accept_errors\":%llu,\"emfile\":%llu,\"max_open\":%ld,\"open\":%ld}\n",
         n_accepted, n_eof, n_resets, n_accept_errors, n_emfile, n_max_open, n_open);
  fflush(stdout);
  return 0;
}
