/* The metrics endpoint's HTTP/1.x server (metrics.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"
#include "quicmux/quicmux.h"

#define ACCEPTS_PER_EVENT 32
#define DRAIN_MAX (64 * 1024) /* bytes read and dropped after answering */

typedef enum { C_READ, C_WRITE, C_DRAIN } conn_state;

typedef struct mconn {
  struct mconn *prev, *next;
  metrics_server *m;
  int fd;
  conn_state state;
  ev_io io;
  ev_timer timer;
  size_t inlen, drained;
  char *out;
  size_t outlen, outoff;
  char in[METRICS_MAX_REQUEST];
} mconn;

struct metrics_server {
  struct ev_loop *loop;
  int fd;
  ev_io accept_w;
  ev_timer pause_w; /* out of file descriptors: accept again later */
  metrics_render_fn render;
  void *ud;
  mconn *conns;
  metrics_counts counts;
};

/* ---- address ---- */

static int is_loopback(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) ==
           127;
  if (ss->ss_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a))
      return a->s6_addr[12] == 127;
    return IN6_IS_ADDR_LOOPBACK(a);
  }
  return 0;
}

int metrics_parse_addr(const char *v, int public, const char *name,
                       const char *public_name, struct sockaddr_storage *ss,
                       socklen_t *len, char *err, size_t errlen) {
  char host[256], e[256], port_s[8];
  uint16_t port;
  struct addrinfo hints, *res = NULL;

  if (qm_split_hostport(v, host, sizeof(host), &port, e, sizeof(e)) != 0) {
    snprintf(err, errlen, "%s %s", name, e);
    return -1;
  }
  if (port == 0) {
    snprintf(err, errlen, "%s '%s': port must be from 1 to 65535", name, v);
    return -1;
  }
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
  snprintf(port_s, sizeof(port_s), "%u", port);
  if (getaddrinfo(host, port_s, &hints, &res) != 0 || !res) {
    snprintf(err, errlen, "%s '%s': cannot resolve '%s'", name, v, host);
    return -1;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  if (!public && !is_loopback(ss)) {
    snprintf(err, errlen,
             "%s '%s': not a loopback address; the metrics name peers and "
             "traffic, so serving them beyond this machine needs %s",
             name, v, public_name);
    return -1;
  }
  return 0;
}

/* ---- connections ---- */

static void conn_free(mconn *c) {
  metrics_server *m = c->m;
  ev_io_stop(m->loop, &c->io);
  ev_timer_stop(m->loop, &c->timer);
  close(c->fd);
  if (c->prev)
    c->prev->next = c->next;
  else
    m->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  m->counts.open--;
  free(c->out);
  free(c);
}

/* Everything answered: stop sending, read what the client still sends
 * (so closing does not reset the answer away) until it closes. */
static void conn_finish(mconn *c) {
  shutdown(c->fd, SHUT_WR);
  c->state = C_DRAIN;
  ev_io_stop(c->m->loop, &c->io);
  ev_io_set(&c->io, c->fd, EV_READ);
  ev_io_start(c->m->loop, &c->io);
}

static void conn_write(mconn *c) {
  while (c->outoff < c->outlen) {
    ssize_t n =
        send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return; /* the write watcher calls again */
    if (n <= 0) {
      conn_free(c);
      return;
    }
    c->outoff += (size_t)n;
  }
  conn_finish(c);
}

static void count(metrics_server *m, int code) {
  int k = code == 200   ? 0
          : code == 404 ? 1
          : code == 405 ? 2
          : code < 500  ? 3
                        : 4;
  m->counts.requests[k]++;
}

static const char *reason(int code) {
  switch (code) {
  case 200:
    return "OK";
  case 400:
    return "Bad Request";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 431:
    return "Request Header Fields Too Large";
  case 503:
    return "Service Unavailable";
  default:
    return "Internal Server Error";
  }
}

/* The header of an answer with a body of len bytes. */
static int head(char *buf, size_t size, int code, const char *ctype, size_t len,
                const char *extra) {
  return snprintf(buf, size,
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                  "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                  code, reason(code), ctype, len, extra);
}

/* Answer (body taken over, may be NULL for a short text) and close. */
static void respond(mconn *c, int code, const char *extra, char *body,
                    size_t len) {
  const char *text = "text/plain; charset=utf-8";
  char h[512], msg[160];
  int hl;
  count(c->m, code);
  if (!body) {
    snprintf(msg, sizeof(msg), "%d %s%s\n", code, reason(code),
             code == 404   ? ": the metrics are at /metrics"
             : code == 405 ? ": use GET"
                           : "");
    len = strlen(msg);
  }
  hl = head(h, sizeof(h), code,
            code == 200 ? "text/plain; version=0.0.4; charset=utf-8" : text,
            len, extra);
  c->out = malloc((size_t)hl + len);
  if (!c->out) {
    free(body);
    conn_free(c);
    return;
  }
  memcpy(c->out, h, (size_t)hl);
  memcpy(c->out + hl, body ? body : msg, len);
  free(body);
  c->outlen = (size_t)hl + len;
  c->state = C_WRITE;
  ev_io_stop(c->m->loop, &c->io);
  ev_io_set(&c->io, c->fd, EV_WRITE);
  ev_io_start(c->m->loop, &c->io);
  conn_write(c);
}

/* A whole request head is in c->in: "METHOD TARGET HTTP/1.x". */
static void handle(mconn *c) {
  char *sp1, *sp2, *eol = memchr(c->in, '\n', c->inlen);
  size_t mlen, plen;
  char *body = NULL;
  size_t blen = 0;
  if (!eol) {
    respond(c, 400, "", NULL, 0);
    return;
  }
  *eol = '\0';
  if (eol > c->in && eol[-1] == '\r')
    eol[-1] = '\0';
  sp1 = strchr(c->in, ' ');
  sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2 || sp1 == c->in || strncmp(sp2 + 1, "HTTP/1.", 7) ||
      sp1[1] != '/') {
    respond(c, 400, "", NULL, 0);
    return;
  }
  mlen = (size_t)(sp1 - c->in);
  plen = strcspn(sp1 + 1, "? ");
  if (plen != 8 || strncmp(sp1 + 1, "/metrics", 8)) {
    respond(c, 404, "", NULL, 0);
    return;
  }
  if (mlen != 3 || strncmp(c->in, "GET", 3)) {
    respond(c, 405, "Allow: GET\r\n", NULL, 0);
    return;
  }
  if (c->m->render(&body, &blen, c->m->ud) != 0) {
    respond(c, 500, "", NULL, 0);
    return;
  }
  respond(c, 200, "", body, blen);
}

static void conn_read(mconn *c) {
  for (;;) {
    ssize_t n;
    size_t from;
    if (c->state == C_DRAIN) {
      char junk[4096];
      n = recv(c->fd, junk, sizeof(junk), 0);
      if (n > 0 && (c->drained += (size_t)n) < DRAIN_MAX)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
      conn_free(c); /* EOF, error, or it keeps sending */
      return;
    }
    n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) { /* closed before a whole request */
      conn_free(c);
      return;
    }
    from = c->inlen > 2 ? c->inlen - 2 : 0; /* where a new end could start */
    c->inlen += (size_t)n;
    /* the head ends at an empty line */
    for (size_t i = from; i + 1 < c->inlen; i++)
      if (c->in[i] == '\n' &&
          (c->in[i + 1] == '\n' || (c->in[i + 1] == '\r' && i + 2 < c->inlen &&
                                    c->in[i + 2] == '\n'))) {
        handle(c);
        return;
      }
    if (c->inlen == sizeof(c->in)) {
      respond(c, 431, "", NULL, 0);
      return;
    }
  }
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents) {
  mconn *c = w->data;
  (void)loop;
  (void)revents;
  if (c->state == C_WRITE)
    conn_write(c);
  else
    conn_read(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  mconn *c = w->data;
  (void)loop;
  (void)revents;
  if (c->state == C_READ) { /* a slow client: tell it, best effort */
    char h[256];
    int hl = head(h, sizeof(h), 408, "text/plain", 0, "");
    count(c->m, 408);
    (void)!send(c->fd, h, (size_t)hl, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  c->m->counts.timed_out++;
  conn_free(c);
}

/* ---- accepting ---- */

static void reject(metrics_server *m, int fd) {
  char h[256];
  int hl = head(h, sizeof(h), 503, "text/plain", 0, "");
  m->counts.rejected++;
  count(m, 503);
  (void)!send(fd, h, (size_t)hl, MSG_NOSIGNAL | MSG_DONTWAIT);
  close(fd);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
  metrics_server *m = w->data;
  int i;
  (void)revents;
  for (i = 0; i < ACCEPTS_PER_EVENT; i++) {
    mconn *c;
    int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        /* the socket stays readable: do not spin, try again in a second */
        ev_io_stop(loop, &m->accept_w);
        ev_timer_set(&m->pause_w, 1.0, 0.);
        ev_timer_start(loop, &m->pause_w);
      }
      return;
    }
    if (m->counts.open >= METRICS_MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
      reject(m, fd);
      continue;
    }
    c->m = m;
    c->fd = fd;
    c->state = C_READ;
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    c->io.data = c;
    ev_timer_init(&c->timer, conn_timer_cb, METRICS_TIMEOUT, 0.);
    c->timer.data = c;
    ev_io_start(loop, &c->io);
    ev_timer_start(loop, &c->timer);
    c->next = m->conns;
    if (m->conns)
      m->conns->prev = c;
    m->conns = c;
    m->counts.open++;
  }
}

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  metrics_server *m = w->data;
  (void)revents;
  ev_io_start(loop, &m->accept_w);
}

int metrics_server_new(metrics_server **out, struct ev_loop *loop,
                       const struct sockaddr *addr, socklen_t addrlen,
                       metrics_render_fn render, void *ud, char *err,
                       size_t errlen) {
  metrics_server *m = calloc(1, sizeof(*m));
  int one = 1;
  if (!m) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  m->loop = loop;
  m->render = render;
  m->ud = ud;
  m->fd =
      socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (m->fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    free(m);
    return -1;
  }
  setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (addr->sa_family == AF_INET6)
    setsockopt(m->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(m->fd, addr, addrlen) != 0 ||
      listen(m->fd, METRICS_MAX_CONNS) != 0) {
    snprintf(err, errlen, "listen: %s", strerror(errno));
    close(m->fd);
    free(m);
    return -1;
  }
  ev_io_init(&m->accept_w, accept_cb, m->fd, EV_READ);
  m->accept_w.data = m;
  ev_timer_init(&m->pause_w, pause_cb, 1.0, 0.);
  m->pause_w.data = m;
  ev_io_start(loop, &m->accept_w);
  *out = m;
  return 0;
}

void metrics_server_free(metrics_server *m) {
  if (!m)
    return;
  while (m->conns)
    conn_free(m->conns);
  ev_io_stop(m->loop, &m->accept_w);
  ev_timer_stop(m->loop, &m->pause_w);
  close(m->fd);
  free(m);
}

void metrics_server_counts(const metrics_server *m, metrics_counts *c) {
  *c = m->counts;
}
