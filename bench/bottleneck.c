/* bench/bottleneck.c -- a user-space UDP bottleneck for the long-haul benchmark.
 *
 * Build (no third-party code; bench/longhaul.py runs this itself when needed):
 *   cc -std=c11 -O2 -Wall -Wextra -o /tmp/qm-longhaul/bottleneck bench/bottleneck.c
 *
 * This kernel has neither netem nor tbf (/work/shared/TESTING.md), so a long, narrow
 * path is made here.  The relay is NAT-like: each --map LISTEN=UPSTREAM is a UDP socket
 * bound to LISTEN; every client address that sends to it gets its own upstream socket
 * connected to UPSTREAM, and what comes back on that socket goes to that client.
 * "up" = client -> upstream, "down" = upstream -> client.
 *
 * Each direction is ONE link, shared by every map and every client (so two tunnels
 * through one relay share one queue per direction), and models, in this order:
 *   1. random loss with probability --loss (a fixed-seed generator per direction);
 *      a lost datagram takes no capacity;
 *   2. a drop-tail queue of --queue bytes (default: one bandwidth-delay product, rate x
 *      (one-way delay up + one-way delay down)); a datagram that does not fit behind the
 *      backlog is dropped;
 *   3. serialisation at --rate Mbit/s: each datagram occupies the link for
 *      (payload + --overhead) x 8 / rate seconds (overhead default 28 = IPv4 + UDP header),
 *      one after the other (FIFO);
 *   4. propagation: it leaves the relay --delay-ms after its last bit was serialised.
 * Release times are therefore monotonic per direction, so each direction is a plain FIFO
 * whose head is due next; epoll_pwait2's nanosecond timeout wakes the relay for the
 * earlier of the two heads (no timer to re-arm per datagram).  Reads are batched with
 * recvmmsg.  Needs Linux >= 5.11 and glibc >= 2.35 (epoll_pwait2).
 *
 * Counters (per direction, per map and per client session): datagrams/bytes in, lost
 * randomly, dropped at the queue, forwarded, send errors; the largest backlog; how late
 * datagrams left compared with their schedule (the relay's own lag); kernel drops on the
 * relay's sockets (SO_RXQ_OVFL); the relay's CPU time (getrusage).  Written as one JSON
 * object to --stats FILE (atomically: FILE.tmp then rename) or to stdout, on SIGUSR1 and
 * on exit (SIGTERM, SIGINT, --duration).  With --tick-ms the JSON also has a timeline:
 * every tick, the backlog of each direction and each session's bytes in / dropped /
 * forwarded so far, per direction.
 *
 * Usage:
 *   bottleneck --map 10.231.1.1:4000=10.231.2.2:4443 [--map ...] --rate 40 --delay-ms 100
 *              [--loss 0.01] [--queue BYTES] [--seed 1] [--stats FILE] [--tick-ms 100]
 *   Per direction: --rate-up/--rate-down, --delay-up-ms/--delay-down-ms,
 *   --loss-up/--loss-down, --queue-up/--queue-down.  --rate 0 = no rate limit (and then
 *   no queue).  --duration S exits after S seconds (a bound for stray runs).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_MAPS 16
#define MAX_SESS 1024
#define BATCH 64
#define BUFSZ 65536
#define SOCKBUF (8 << 20)
#define MAX_TICKS 200000

enum { UP = 0, DOWN = 1 };
static const char *const dname[2] = {"up", "down"};

typedef struct ctr {
  uint64_t dgrams, bytes;
} ctr;

typedef struct counters {
  ctr in, lost, qdrop, fwd, senderr;
} counters;

typedef struct pkt {
  struct pkt *next;
  uint64_t due; /* ns, CLOCK_MONOTONIC: when it leaves the relay */
  struct sess *s;
  size_t len;
  unsigned char data[];
} pkt;

typedef struct map {
  int fd;
  struct sockaddr_storage lis, up;
  socklen_t lislen, uplen;
  char lis_s[80], up_s[80];
  counters c[2];
} map;

typedef struct sess {
  map *m;
  int idx;
  int fd; /* upstream socket, connected */
  struct sockaddr_storage cli;
  socklen_t clilen;
  char cli_s[80];
  counters c[2];
} sess;

typedef struct lnk {
  double rate;       /* bit/s, 0 = unlimited */
  uint64_t delay;    /* ns */
  double loss;       /* 0..1 */
  uint64_t qlimit;   /* bytes (wire) */
  double free_at;    /* ns: when the link finishes serialising its backlog */
  uint64_t rng;
  pkt *head, *tail;
  size_t queued;     /* datagrams held (queued or in propagation) */
  uint64_t max_backlog;
  uint64_t late_max, late_sum, late_n;
  counters c;
} lnk;

static map maps[MAX_MAPS];
static int nmaps;
static sess *sessions[MAX_SESS];
static int nsess;
static lnk links[2];
static int epfd, sfd;
static unsigned overhead = 28;
static const char *stats_path;
static unsigned seq;
static uint64_t t_start;
static double t_start_unix; /* CLOCK_REALTIME at t_start, to align with logs */
static uint64_t rxq_ovfl; /* kernel drops on our sockets, summed over sockets */
static uint32_t *ovfl_seen; /* per fd: last SO_RXQ_OVFL value */
static int ovfl_cap;

/* timeline, one row per tick, rows stored back to back: [width, t_ms, backlog_up,
 * backlog_down, then per session TL_PER_SESS values (see tick())] */
#define TL_PER_SESS 6
static unsigned tick_ms;
static uint64_t *tl;
static size_t tl_len, tl_cap, tl_rows;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bottleneck: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64 */
static uint64_t rnd_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rnd_unit(uint64_t *s) {
  return (double)(rnd_next(s) >> 11) * 0x1p-53;
}

static void addr_str(const struct sockaddr_storage *ss, char *out, size_t n) {
  char h[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, h, sizeof(h));
    snprintf(out, n, "[%s]:%u", h, ntohs(a->sin6_port));
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, h, sizeof(h));
    snprintf(out, n, "%s:%u", h, ntohs(a->sin_port));
  }
}

/* HOST:PORT or [V6]:PORT, numeric only */
static void parse_addr(const char *s, struct sockaddr_storage *ss,
                       socklen_t *len) {
  char host[128];
  const char *port;
  memset(ss, 0, sizeof(*ss));
  if (s[0] == '[') {
    const char *e = strchr(s, ']');
    if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof(host))
      die("bad address '%s'", s);
    memcpy(host, s + 1, (size_t)(e - s - 1));
    host[e - s - 1] = 0;
    port = e + 2;
  } else {
    const char *c = strrchr(s, ':');
    if (!c || (size_t)(c - s) >= sizeof(host))
      die("bad address '%s'", s);
    memcpy(host, s, (size_t)(c - s));
    host[c - s] = 0;
    port = c + 1;
  }
  char *end;
  long p = strtol(port, &end, 10);
  if (*end || p < 0 || p > 65535)
    die("bad port in '%s'", s);
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)p);
    *len = sizeof(*a4);
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)p);
    *len = sizeof(*a6);
  } else {
    die("bad host in '%s' (numeric addresses only)", s);
  }
}

static int same_addr(const struct sockaddr_storage *a,
                     const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family)
    return 0;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port &&
           x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
  return x->sin6_port == y->sin6_port &&
         !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
}

static void tune_socket(int fd) {
  int v = SOCKBUF, one = 1;
  /* FORCE works as root and ignores rmem_max; fall back to the capped request */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
  setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (fd >= ovfl_cap) {
    int n = fd + 64;
    uint32_t *p = realloc(ovfl_seen, (size_t)n * sizeof(*p));
    if (!p)
      die("out of memory");
    memset(p + ovfl_cap, 0, (size_t)(n - ovfl_cap) * sizeof(*p));
    ovfl_seen = p;
    ovfl_cap = n;
  }
}

static void ep_add(int fd, uint32_t kind, uint32_t idx) {
  struct epoll_event ev = {.events = EPOLLIN,
                           .data.u64 = ((uint64_t)kind << 32) | idx};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
    die("epoll_ctl: %s", strerror(errno));
}

enum { K_MAP = 1, K_SESS, K_SIG };

static void cadd(ctr *c, size_t len) {
  c->dgrams++;
  c->bytes += len;
}

#define COUNT(field, d, s, len)                                                \
  do {                                                                         \
    cadd(&links[d].c.field, len);                                              \
    cadd(&(s)->m->c[d].field, len);                                            \
    cadd(&(s)->c[d].field, len);                                               \
  } while (0)

static sess *session_for(map *m, const struct sockaddr_storage *cli,
                         socklen_t clilen) {
  int i;
  for (i = nsess; i-- > 0;)
    if (sessions[i]->m == m && same_addr(&sessions[i]->cli, cli))
      return sessions[i];
  if (nsess == MAX_SESS)
    return NULL;
  sess *s = calloc(1, sizeof(*s));
  if (!s)
    die("out of memory");
  s->m = m;
  s->idx = nsess;
  s->cli = *cli;
  s->clilen = clilen;
  addr_str(cli, s->cli_s, sizeof(s->cli_s));
  s->fd = socket(m->up.ss_family, SOCK_DGRAM, 0);
  if (s->fd < 0)
    die("socket: %s", strerror(errno));
  tune_socket(s->fd);
  if (connect(s->fd, (struct sockaddr *)&m->up, m->uplen) < 0)
    die("connect %s: %s", m->up_s, strerror(errno));
  ep_add(s->fd, K_SESS, (uint32_t)nsess);
  sessions[nsess++] = s;
  return s;
}

static uint64_t backlog(const lnk *l, uint64_t now) {
  if (l->rate <= 0 || l->free_at <= (double)now)
    return 0;
  return (uint64_t)((l->free_at - (double)now) * l->rate / 8e9);
}

/* the earliest time something is due: a datagram's release or the next tick */
static uint64_t next_due(uint64_t next_tick) {
  uint64_t due = next_tick;
  int d;
  for (d = 0; d < 2; d++)
    if (links[d].head && (!due || links[d].head->due < due))
      due = links[d].head->due;
  return due;
}

static void arrive(int d, sess *s, const unsigned char *data, size_t len,
                   uint64_t now) {
  lnk *l = &links[d];
  COUNT(in, d, s, len);
  if (l->loss > 0 && rnd_unit(&l->rng) < l->loss) {
    COUNT(lost, d, s, len);
    return;
  }
  double wire = (double)(len + overhead);
  double start = (double)now;
  if (l->rate > 0) {
    uint64_t bl = backlog(l, now);
    if (bl + (uint64_t)wire > l->qlimit) {
      COUNT(qdrop, d, s, len);
      return;
    }
    if (bl + (uint64_t)wire > l->max_backlog)
      l->max_backlog = bl + (uint64_t)wire;
    if (l->free_at > start)
      start = l->free_at;
    l->free_at = start + wire * 8e9 / l->rate;
    start = l->free_at;
  }
  pkt *p = malloc(sizeof(*p) + len);
  if (!p)
    die("out of memory");
  p->next = NULL;
  p->due = (uint64_t)start + l->delay;
  p->s = s;
  p->len = len;
  memcpy(p->data, data, len);
  if (l->tail)
    l->tail->next = p;
  else
    l->head = p;
  l->tail = p;
  l->queued++;
}

static void release(uint64_t now) {
  int d;
  for (d = 0; d < 2; d++) {
    lnk *l = &links[d];
    while (l->head && l->head->due <= now) {
      pkt *p = l->head;
      ssize_t n;
      l->head = p->next;
      if (!l->head)
        l->tail = NULL;
      l->queued--;
      uint64_t late = now - p->due;
      if (late > l->late_max)
        l->late_max = late;
      l->late_sum += late;
      l->late_n++;
      if (d == UP)
        n = send(p->s->fd, p->data, p->len, 0);
      else
        n = sendto(p->s->m->fd, p->data, p->len, 0,
                   (struct sockaddr *)&p->s->cli, p->s->clilen);
      if (n < 0)
        COUNT(senderr, d, p->s, p->len);
      else
        COUNT(fwd, d, p->s, p->len);
      free(p);
    }
  }
}

static unsigned char bufs[BATCH][BUFSZ];
static struct sockaddr_storage froms[BATCH];
static char cbufs[BATCH][CMSG_SPACE(sizeof(uint32_t))];

static void read_socket(int fd, int d, map *m, sess *s) {
  struct mmsghdr mm[BATCH];
  struct iovec iov[BATCH];
  int i, n, rounds;
  for (rounds = 0; rounds < 16; rounds++) {
    memset(mm, 0, sizeof(mm));
    for (i = 0; i < BATCH; i++) {
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = BUFSZ;
      mm[i].msg_hdr.msg_iov = &iov[i];
      mm[i].msg_hdr.msg_iovlen = 1;
      mm[i].msg_hdr.msg_name = &froms[i];
      mm[i].msg_hdr.msg_namelen = sizeof(froms[i]);
      mm[i].msg_hdr.msg_control = cbufs[i];
      mm[i].msg_hdr.msg_controllen = sizeof(cbufs[i]);
    }
    n = recvmmsg(fd, mm, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0)
      return;
    uint64_t now = now_ns();
    for (i = 0; i < n; i++) {
      struct cmsghdr *c;
      for (c = CMSG_FIRSTHDR(&mm[i].msg_hdr); c;
           c = CMSG_NXTHDR(&mm[i].msg_hdr, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
          uint32_t v;
          memcpy(&v, CMSG_DATA(c), sizeof(v));
          if (fd < ovfl_cap && v != ovfl_seen[fd]) {
            rxq_ovfl += (uint32_t)(v - ovfl_seen[fd]);
            ovfl_seen[fd] = v;
          }
        }
      sess *t = s;
      if (d == UP) {
        t = session_for(m, &froms[i], mm[i].msg_hdr.msg_namelen);
        if (!t)
          continue;
      }
      arrive(d, t, bufs[i], mm[i].msg_len, now);
    }
    if (n < BATCH)
      return;
  }
}

/* ---------------------------------------------------------------- JSON out */

static void json_ctr(FILE *f, const char *name, const ctr *c, int comma) {
  fprintf(f, "\"%s_dgrams\":%llu,\"%s_bytes\":%llu%s", name,
          (unsigned long long)c->dgrams, name, (unsigned long long)c->bytes,
          comma ? "," : "");
}

static void json_counters(FILE *f, const counters *c) {
  json_ctr(f, "in", &c->in, 1);
  json_ctr(f, "lost", &c->lost, 1);
  json_ctr(f, "qdrop", &c->qdrop, 1);
  json_ctr(f, "fwd", &c->fwd, 1);
  json_ctr(f, "senderr", &c->senderr, 0);
}

static void write_stats(int final) {
  FILE *f = stdout;
  char tmp[4096];
  uint64_t now = now_ns();
  struct rusage ru;
  int d, i;
  size_t r, k;
  if (stats_path) {
    snprintf(tmp, sizeof(tmp), "%s.tmp", stats_path);
    f = fopen(tmp, "w");
    if (!f) {
      fprintf(stderr, "bottleneck: %s: %s\n", tmp, strerror(errno));
      return;
    }
  }
  getrusage(RUSAGE_SELF, &ru);
  fprintf(f,
          "{\"seq\":%u,\"final\":%s,\"start_unix_s\":%.6f,\"elapsed_s\":%.3f,"
          "\"cpu_user_s\":%.3f,"
          "\"cpu_sys_s\":%.3f,\"overhead_bytes\":%u,\"socket_rx_overflows\":"
          "%llu,",
          ++seq, final ? "true" : "false", t_start_unix,
          (double)(now - t_start) / 1e9,
          (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
          (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
          overhead, (unsigned long long)rxq_ovfl);
  for (d = 0; d < 2; d++) {
    lnk *l = &links[d];
    fprintf(f,
            "\"%s\":{\"rate_mbit\":%.3f,\"delay_ms\":%.3f,\"loss\":%.6f,"
            "\"queue_bytes\":%llu,\"max_backlog_bytes\":%llu,\"backlog_bytes\":"
            "%llu,\"held_dgrams\":%zu,\"late_max_us\":%.1f,\"late_mean_us\":"
            "%.1f,",
            dname[d], l->rate / 1e6, (double)l->delay / 1e6, l->loss,
            (unsigned long long)l->qlimit, (unsigned long long)l->max_backlog,
            (unsigned long long)backlog(l, now), l->queued,
            (double)l->late_max / 1e3,
            l->late_n ? (double)l->late_sum / (double)l->late_n / 1e3 : 0.0);
    json_counters(f, &l->c);
    fputs("},", f);
  }
  fputs("\"maps\":[", f);
  for (i = 0; i < nmaps; i++) {
    fprintf(f, "%s{\"listen\":\"%s\",\"upstream\":\"%s\"", i ? "," : "",
            maps[i].lis_s, maps[i].up_s);
    for (d = 0; d < 2; d++) {
      fprintf(f, ",\"%s\":{", dname[d]);
      json_counters(f, &maps[i].c[d]);
      fputc('}', f);
    }
    fputc('}', f);
  }
  fputs("],\"sessions\":[", f);
  for (i = 0; i < nsess; i++) {
    sess *s = sessions[i];
    fprintf(f, "%s{\"map\":%d,\"client\":\"%s\"", i ? "," : "",
            (int)(s->m - maps), s->cli_s);
    for (d = 0; d < 2; d++) {
      fprintf(f, ",\"%s\":{", dname[d]);
      json_counters(f, &s->c[d]);
      fputc('}', f);
    }
    fputc('}', f);
  }
  /* timeline rows: [t_ms, backlog_up, backlog_down, then per session: in_up,
   * dropped_up, fwd_up, in_down, dropped_down, fwd_down] (bytes so far) */
  fprintf(f,
          "],\"tick_ms\":%u,\"timeline_columns\":[\"t_ms\",\"backlog_up\","
          "\"backlog_down\",\"per session: in_up\",\"dropped_up\",\"fwd_up\","
          "\"in_down\",\"dropped_down\",\"fwd_down\"],\"timeline\":[",
          tick_ms);
  for (r = 0, k = 0; r < tl_rows; r++) {
    size_t w = (size_t)tl[k], j;
    fputs(r ? ",[" : "[", f);
    for (j = 1; j < w; j++)
      fprintf(f, "%s%llu", j > 1 ? "," : "", (unsigned long long)tl[k + j]);
    fputc(']', f);
    k += w;
  }
  fputs("]}\n", f);
  if (stats_path) {
    if (fclose(f) != 0 || rename(tmp, stats_path) != 0)
      fprintf(stderr, "bottleneck: writing %s: %s\n", stats_path,
              strerror(errno));
  } else {
    fflush(f);
  }
}

static void tick(uint64_t now) {
  size_t w = 4 + TL_PER_SESS * (size_t)nsess;
  int i, d;
  if (tl_rows == MAX_TICKS)
    return;
  if (tl_len + w > tl_cap) {
    size_t nc = tl_cap ? tl_cap * 2 : 16384;
    while (nc < tl_len + w)
      nc *= 2;
    uint64_t *p = realloc(tl, nc * sizeof(*p));
    if (!p)
      return;
    tl = p;
    tl_cap = nc;
  }
  uint64_t *row = tl + tl_len;
  row[0] = (uint64_t)w;
  row[1] = (now - t_start) / 1000000u;
  row[2] = backlog(&links[UP], now);
  row[3] = backlog(&links[DOWN], now);
  for (i = 0; i < nsess; i++)
    for (d = 0; d < 2; d++) {
      const counters *c = &sessions[i]->c[d];
      uint64_t *v = row + 4 + TL_PER_SESS * i + 3 * d;
      v[0] = c->in.bytes;
      v[1] = c->lost.bytes + c->qdrop.bytes;
      v[2] = c->fwd.bytes;
    }
  tl_len += w;
  tl_rows++;
}

/* ---------------------------------------------------------------- main */

static double num_arg(const char *flag, const char *v) {
  char *end;
  double x;
  if (!v)
    die("%s needs a value", flag);
  x = strtod(v, &end);
  if (*end || x < 0)
    die("bad value for %s: '%s'", flag, v);
  return x;
}

static void usage(void) {
  fputs("usage: bottleneck --map LISTEN=UPSTREAM [--map ...] [--rate MBIT] "
        "[--delay-ms MS] [--loss P] [--queue BYTES]\n"
        "       [--rate-up/--rate-down MBIT] [--delay-up-ms/--delay-down-ms MS] "
        "[--loss-up/--loss-down P]\n"
        "       [--queue-up/--queue-down BYTES] [--overhead BYTES] [--seed N] "
        "[--stats FILE] [--tick-ms MS] [--duration S]\n",
        stderr);
  exit(2);
}

int main(int argc, char **argv) {
  double rate[2] = {0, 0}, delay_ms[2] = {0, 0}, loss[2] = {0, 0};
  double queue[2] = {-1, -1}, duration = 0;
  uint64_t seed = 1;
  int i, d;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--map")) {
      char buf[256], *eq;
      if (!v || strlen(v) >= sizeof(buf))
        die("--map needs LISTEN=UPSTREAM");
      if (nmaps == MAX_MAPS)
        die("at most %d maps", MAX_MAPS);
      strcpy(buf, v);
      eq = strchr(buf, '=');
      if (!eq)
        die("--map needs LISTEN=UPSTREAM, got '%s'", v);
      *eq = 0;
      map *m = &maps[nmaps++];
      parse_addr(buf, &m->lis, &m->lislen);
      parse_addr(eq + 1, &m->up, &m->uplen);
      i++;
    } else if (!strcmp(a, "--rate")) {
      rate[UP] = rate[DOWN] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--rate-up")) {
      rate[UP] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--rate-down")) {
      rate[DOWN] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--delay-ms")) {
      delay_ms[UP] = delay_ms[DOWN] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--delay-up-ms")) {
      delay_ms[UP] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--delay-down-ms")) {
      delay_ms[DOWN] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--loss")) {
      loss[UP] = loss[DOWN] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--loss-up")) {
      loss[UP] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--loss-down")) {
      loss[DOWN] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--queue")) {
      queue[UP] = queue[DOWN] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--queue-up")) {
      queue[UP] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--queue-down")) {
      queue[DOWN] = num_arg(a, v), i++;
    } else if (!strcmp(a, "--overhead")) {
      overhead = (unsigned)num_arg(a, v), i++;
    } else if (!strcmp(a, "--seed")) {
      seed = (uint64_t)num_arg(a, v), i++;
    } else if (!strcmp(a, "--stats")) {
      if (!v)
        die("--stats needs a file");
      stats_path = v, i++;
    } else if (!strcmp(a, "--tick-ms")) {
      tick_ms = (unsigned)num_arg(a, v), i++;
    } else if (!strcmp(a, "--duration")) {
      duration = num_arg(a, v), i++;
    } else {
      usage();
    }
  }
  if (!nmaps)
    usage();
  for (d = 0; d < 2; d++) {
    lnk *l = &links[d];
    if (loss[d] > 1)
      die("loss is a probability (0..1)");
    l->rate = rate[d] * 1e6;
    l->delay = (uint64_t)(delay_ms[d] * 1e6);
    l->loss = loss[d];
    /* one bandwidth-delay product: this direction's rate x the propagation RTT */
    l->qlimit = queue[d] >= 0 ? (uint64_t)queue[d]
                              : (uint64_t)(l->rate / 8 *
                                           (delay_ms[UP] + delay_ms[DOWN]) / 1e3);
    if (l->rate > 0 && l->qlimit < 3000)
      l->qlimit = 3000; /* room for at least two full datagrams */
    l->rng = seed * 2 + (uint64_t)d + 0x5eed;
  }

  /* the default 50 us timer slack would delay every release by up to that much */
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  sigset_t ss;
  sigemptyset(&ss);
  sigaddset(&ss, SIGUSR1);
  sigaddset(&ss, SIGTERM);
  sigaddset(&ss, SIGINT);
  sigaddset(&ss, SIGHUP);
  sigprocmask(SIG_BLOCK, &ss, NULL);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
  if (epfd < 0 || sfd < 0)
    die("epoll/signalfd: %s", strerror(errno));
  ep_add(sfd, K_SIG, 0);
  for (i = 0; i < nmaps; i++) {
    map *m = &maps[i];
    m->fd = socket(m->lis.ss_family, SOCK_DGRAM, 0);
    if (m->fd < 0)
      die("socket: %s", strerror(errno));
    if (bind(m->fd, (struct sockaddr *)&m->lis, m->lislen) < 0)
      die("bind %s: %s", m->lis_s, strerror(errno));
    m->lislen = sizeof(m->lis);
    getsockname(m->fd, (struct sockaddr *)&m->lis, &m->lislen);
    addr_str(&m->lis, m->lis_s, sizeof(m->lis_s));
    addr_str(&m->up, m->up_s, sizeof(m->up_s));
    tune_socket(m->fd);
    ep_add(m->fd, K_MAP, (uint32_t)i);
  }
  t_start = now_ns();
  {
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    t_start_unix = (double)rt.tv_sec + (double)rt.tv_nsec / 1e9;
  }
  uint64_t next_tick = 0;
  if (tick_ms) {
    tick(t_start);
    next_tick = t_start + (uint64_t)tick_ms * 1000000u;
  }
  for (i = 0; i < nmaps; i++)
    fprintf(stderr,
            "bottleneck: %s -> %s; up %.1f Mbit/s %.1f ms loss %.4f queue %llu "
            "B; down %.1f Mbit/s %.1f ms loss %.4f queue %llu B\n",
            maps[i].lis_s, maps[i].up_s, rate[UP], delay_ms[UP], loss[UP],
            (unsigned long long)links[UP].qlimit, rate[DOWN], delay_ms[DOWN],
            loss[DOWN], (unsigned long long)links[DOWN].qlimit);
  fflush(stderr);

  uint64_t end = duration > 0 ? t_start + (uint64_t)(duration * 1e9) : 0;
  for (;;) {
    struct epoll_event evs[64];
    struct timespec ts, *tsp = NULL;
    uint64_t now = now_ns(), due = next_due(next_tick);
    if (end && (!due || end < due))
      due = end;
    if (due) { /* nanosecond timeout: no timerfd to arm per datagram */
      uint64_t wait = due > now ? due - now : 0;
      ts.tv_sec = (time_t)(wait / 1000000000u);
      ts.tv_nsec = (long)(wait % 1000000000u);
      tsp = &ts;
    }
    int n = epoll_pwait2(epfd, evs, 64, tsp, NULL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die("epoll_pwait2: %s", strerror(errno));
    }
    int stop = 0;
    for (i = 0; i < n; i++) {
      uint32_t kind = (uint32_t)(evs[i].data.u64 >> 32);
      uint32_t idx = (uint32_t)evs[i].data.u64;
      if (kind == K_MAP) {
        read_socket(maps[idx].fd, UP, &maps[idx], NULL);
      } else if (kind == K_SESS) {
        read_socket(sessions[idx]->fd, DOWN, sessions[idx]->m, sessions[idx]);
      } else if (kind == K_SIG) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
          if (si.ssi_signo == SIGUSR1)
            write_stats(0);
          else
            stop = 1;
        }
      }
    }
    now = now_ns();
    release(now);
    if (next_tick && now >= next_tick) {
      tick(now);
      while (next_tick <= now)
        next_tick += (uint64_t)tick_ms * 1000000u;
    }
    if (stop || (end && now >= end))
      break;
  }
  write_stats(1);
  return 0;
}
