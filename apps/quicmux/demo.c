/*
 * `quicmux demo`: a server tunnel, a client tunnel and a TCP echo target on
 * loopback, all in this process on one loop. N connections each send M MiB
 * of pseudo-random bytes through client -> QUIC -> server -> echo and back,
 * checked byte for byte, then the numbers are printed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app.h"
#include "tunnel.h"

const char *app_ngtcp2_version(void) {
  const ngtcp2_info *i = ngtcp2_version(0);
  return i ? i->version_str : "?";
}
const char *app_gnutls_version(void) {
  return gnutls_check_version(NULL);
}

#define BUF 65536

/* ---- echo target ---- */

typedef struct echo_conn {
  int fd;
  ev_io rio, wio;
  uint8_t buf[BUF];
  size_t len, off;
  int eof;
} echo_conn;

static void echo_close(struct ev_loop *loop, echo_conn *e) {
  ev_io_stop(loop, &e->rio);
  ev_io_stop(loop, &e->wio);
  close(e->fd);
  free(e);
}

static void echo_flush(struct ev_loop *loop, echo_conn *e) {
  while (e->off < e->len) {
    ssize_t n = send(e->fd, e->buf + e->off, e->len - e->off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN) {
        ev_io_stop(loop, &e->rio);
        ev_io_start(loop, &e->wio);
        return;
      }
      echo_close(loop, e);
      return;
    }
    e->off += (size_t)n;
  }
  e->off = e->len = 0;
  ev_io_stop(loop, &e->wio);
  if (e->eof) {
    shutdown(e->fd, SHUT_WR);
    echo_close(loop, e);
    return;
  }
  ev_io_start(loop, &e->rio);
}

static void echo_read(struct ev_loop *loop, ev_io *w, int revents) {
  echo_conn *e = w->data;
  ssize_t n = recv(e->fd, e->buf, BUF, 0);
  (void)revents;
  if (n < 0 && errno == EAGAIN)
    return;
  if (n <= 0) {
    e->eof = 1;
    n = 0;
  }
  e->len = (size_t)n;
  e->off = 0;
  echo_flush(loop, e);
}

static void echo_write(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  echo_flush(loop, w->data);
}

static void echo_accept(struct ev_loop *loop, ev_io *w, int revents) {
  int fd;
  (void)revents;
  while ((fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
    echo_conn *e = calloc(1, sizeof(*e));
    if (!e) {
      close(fd);
      continue;
    }
    e->fd = fd;
    ev_io_init(&e->rio, echo_read, fd, EV_READ);
    ev_io_init(&e->wio, echo_write, fd, EV_WRITE);
    e->rio.data = e->wio.data = e;
    ev_io_start(loop, &e->rio);
  }
}

/* ---- driver ---- */

typedef struct driver driver;
typedef struct drv_conn {
  driver *d;
  int fd;
  ev_io rio, wio;
  uint64_t tx_rng, rx_rng;
  uint64_t sent, rcvd;
  int done, ok;
} drv_conn;

struct driver {
  uint64_t total; /* bytes each way per connection */
  int left;
  int failed;
  uint64_t bytes;
};

/* Byte o of connection stream seed: stateless, so partial sends and reads
 * anywhere in the stream are checked the same way. */
static uint8_t byte_at(uint64_t seed, uint64_t o) {
  uint64_t z = seed + (o >> 3) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (uint8_t)(z >> ((o & 7) * 8));
}

static void drv_finish(struct ev_loop *loop, drv_conn *c, int ok) {
  if (c->done)
    return;
  c->done = 1;
  c->ok = ok;
  ev_io_stop(loop, &c->rio);
  ev_io_stop(loop, &c->wio);
  close(c->fd);
  c->d->left--;
  if (!ok)
    c->d->failed++;
  if (c->d->left == 0)
    ev_break(loop, EVBREAK_ALL);
}

static void drv_write(struct ev_loop *loop, ev_io *w, int revents) {
  drv_conn *c = w->data;
  uint8_t buf[BUF];
  (void)revents;
  while (c->sent < c->d->total) {
    size_t n = c->d->total - c->sent < BUF ? (size_t)(c->d->total - c->sent)
                                           : BUF,
           i;
    ssize_t w2;
    for (i = 0; i < n; i++)
      buf[i] = byte_at(c->tx_rng, c->sent + i);
    w2 = send(c->fd, buf, n, MSG_NOSIGNAL);
    if (w2 < 0 && errno == EAGAIN)
      return;
    if (w2 < 0) {
      drv_finish(loop, c, 0);
      return;
    }
    c->sent += (uint64_t)w2;
    if ((size_t)w2 < n)
      return;
  }
  ev_io_stop(loop, &c->wio);
  shutdown(c->fd, SHUT_WR);
}

static void drv_read(struct ev_loop *loop, ev_io *w, int revents) {
  drv_conn *c = w->data;
  uint8_t buf[BUF];
  (void)revents;
  for (;;) {
    ssize_t n = recv(c->fd, buf, BUF, 0), i;
    if (n < 0 && errno == EAGAIN)
      return;
    if (n <= 0) {
      drv_finish(loop, c, n == 0 && c->rcvd == c->d->total);
      return;
    }
    for (i = 0; i < n; i++)
      if (buf[i] != byte_at(c->rx_rng, c->rcvd + (uint64_t)i)) {
        app_log(QM_LOG_ERROR, "demo: byte %llu differs",
                (unsigned long long)(c->rcvd + (uint64_t)i));
        drv_finish(loop, c, 0);
        return;
      }
    c->rcvd += (uint64_t)n;
    c->d->bytes += (uint64_t)n;
  }
}

static int listen_tcp_any(struct sockaddr_storage *ss, socklen_t *len) {
  struct sockaddr_in *a = (struct sockaddr_in *)ss;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  memset(ss, 0, sizeof(*ss));
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  *len = sizeof(*a);
  if (fd < 0 || bind(fd, (struct sockaddr *)a, *len) != 0 ||
      listen(fd, 128) != 0)
    return -1;
  getsockname(fd, (struct sockaddr *)ss, len);
  return fd;
}

int app_demo(struct ev_loop *loop, const qm_settings *s, int conns, int mib) {
  struct sockaddr_storage echo_addr, any, srv_addr, cli_addr;
  socklen_t echo_len, any_len, srv_len, cli_len;
  tunnel *srv = NULL, *cli = NULL;
  ev_io echo_w;
  drv_conn *cs;
  driver d = {0};
  char err[256], line[512], host[64];
  int efd, i, rc;
  ev_tstamp t0, t1;
  struct rusage ru;

  efd = listen_tcp_any(&echo_addr, &echo_len);
  if (efd < 0) {
    fprintf(stderr, "quicmux demo: cannot listen: %s\n", strerror(errno));
    return 1;
  }
  ev_io_init(&echo_w, echo_accept, efd, EV_READ);
  ev_io_start(loop, &echo_w);

  memset(&any, 0, sizeof(any));
  ((struct sockaddr_in *)&any)->sin_family = AF_INET;
  ((struct sockaddr_in *)&any)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  any_len = sizeof(struct sockaddr_in);
  if (tunnel_server_new(&srv, loop, (struct sockaddr *)&any, any_len, 1,
                        (struct sockaddr *)&echo_addr, echo_len, s, err,
                        sizeof(err)) != 0 ||
      tunnel_local_addr(srv, &srv_addr, &srv_len) != 0) {
    fprintf(stderr, "quicmux demo: %s\n", err);
    return 1;
  }
  inet_ntop(AF_INET, &((struct sockaddr_in *)&srv_addr)->sin_addr, host,
            sizeof(host));
  if (tunnel_client_new(&cli, loop, (struct sockaddr *)&any, any_len, host,
                        ntohs(((struct sockaddr_in *)&srv_addr)->sin_port), 0,
                        s, err, sizeof(err)) != 0 ||
      tunnel_local_addr(cli, &cli_addr, &cli_len) != 0) {
    fprintf(stderr, "quicmux demo: %s\n", err);
    return 1;
  }
  printf("quicmux demo: server on udp 127.0.0.1:%u (security %s, header %s), "
         "client on tcp 127.0.0.1:%u, echo target on tcp 127.0.0.1:%u\n",
         ntohs(((struct sockaddr_in *)&srv_addr)->sin_port),
         qm_security_name(s->security), qm_header_name(s->header),
         ntohs(((struct sockaddr_in *)&cli_addr)->sin_port),
         ntohs(((struct sockaddr_in *)&echo_addr)->sin_port));
  printf("quicmux demo: %d connections, each sends %d MiB and reads it "
         "back...\n",
         conns, mib);
  fflush(stdout);

  d.total = (uint64_t)mib << 20;
  d.left = conns;
  cs = calloc((size_t)conns, sizeof(*cs));
  if (!cs)
    return 1;
  t0 = ev_time();
  for (i = 0; i < conns; i++) {
    drv_conn *c = &cs[i];
    c->d = &d;
    c->tx_rng = c->rx_rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0 || (connect(c->fd, (struct sockaddr *)&cli_addr, cli_len) &&
                      errno != EINPROGRESS)) {
      fprintf(stderr, "quicmux demo: connect: %s\n", strerror(errno));
      return 1;
    }
    ev_io_init(&c->rio, drv_read, c->fd, EV_READ);
    ev_io_init(&c->wio, drv_write, c->fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(loop, &c->rio);
    ev_io_start(loop, &c->wio);
  }
  ev_run(loop, 0);
  t1 = ev_time();

  tunnel_describe(cli, line, sizeof(line));
  printf("quicmux demo: %s\n", line);
  tunnel_describe(srv, line, sizeof(line));
  printf("quicmux demo: %s\n", line);
  getrusage(RUSAGE_SELF, &ru);
  printf("quicmux demo: %d/%d connections byte-exact, %.1f MiB each way in "
         "%.2f s = %.1f MiB/s (%.0f Mbit/s) each way, peak RSS %ld KiB "
         "(whole process: client + server + echo)\n",
         conns - d.failed, conns, (double)d.bytes / 1048576.0, t1 - t0,
         (double)d.bytes / 1048576.0 / (t1 - t0),
         (double)d.bytes * 8 / 1e6 / (t1 - t0), ru.ru_maxrss);
  rc = d.failed ? 1 : 0;
  printf("quicmux demo: %s\n", rc ? "FAILED" : "OK");
  tunnel_free(cli);
  tunnel_free(srv);
  ev_io_stop(loop, &echo_w);
  close(efd);
  free(cs);
  return rc;
}
