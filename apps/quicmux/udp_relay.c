/* UDP through the tunnel (--udp): local UDP peers <-> QUIC flows. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app.h"
#include "udp_relay.h"

#define PEER_BUCKETS 1024
/* Datagrams read per readiness event (recvmmsg batches of BATCH), so one
 * busy socket cannot starve the loop; the rest waits in the socket's
 * buffer. */
#define READS_PER_EVENT 64
#define BATCH 16
#define DGRAM_MAX 65536
/* After the server refused UDP, a peer's datagrams are dropped this long
 * before a new flow is tried. */
#define REFUSED_HOLD 10.0
#define SOCK_BUF (4 * 1024 * 1024)

typedef struct peer {
  udp_relay *u;
  struct peer *next; /* client: hash chain */
  struct peer *prev_all, *next_all;
  struct sockaddr_storage addr; /* client: the local peer */
  socklen_t addrlen;
  qm_flow *f;
  int fd; /* server: the flow's own socket, connected to the target */
  ev_io rio;
  ev_tstamp refused_until;
} peer;

struct udp_relay {
  struct ev_loop *loop;
  ev_tstamp last_warn; /* warnings about refused flows: one per 10 s */
  int server;
  const char *tag;
  int fd; /* client: the local UDP socket */
  ev_io rio;
  ev_timer sweep; /* client: forgets peers held off after a refusal */
  qm_dialer *d;
  char *server_host;
  uint16_t server_port;
  struct sockaddr_storage target;
  socklen_t targetlen;
  peer *buckets[PEER_BUCKETS];
  peer *all;
  udp_relay_stats st;
  /* one recvmmsg batch, shared by every socket of the relay */
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  struct sockaddr_storage from[BATCH];
  uint8_t *buf; /* BATCH x DGRAM_MAX */
};

/* Read up to BATCH datagrams from fd into the relay's batch: how many, 0
 * when there is nothing (or an error: ICMP errors are not UDP's end). */
static int read_batch(udp_relay *u, int fd) {
  int i, n;
  for (i = 0; i < BATCH; i++) {
    u->iov[i].iov_base = u->buf + (size_t)i * DGRAM_MAX;
    u->iov[i].iov_len = DGRAM_MAX;
    memset(&u->msgs[i].msg_hdr, 0, sizeof(u->msgs[i].msg_hdr));
    u->msgs[i].msg_hdr.msg_iov = &u->iov[i];
    u->msgs[i].msg_hdr.msg_iovlen = 1;
    u->msgs[i].msg_hdr.msg_name = &u->from[i];
    u->msgs[i].msg_hdr.msg_namelen = sizeof(u->from[i]);
  }
  n = recvmmsg(fd, u->msgs, BATCH, MSG_DONTWAIT, NULL);
  return n > 0 ? n : 0;
}

/* Warnings that a stream of datagrams could repeat: one per 10 s. */
static int warn_now(udp_relay *u) {
  ev_tstamp now = ev_now(u->loop);
  if (u->last_warn && now - u->last_warn < 10.0)
    return 0;
  u->last_warn = now;
  return 1;
}

static void set_bufs(int fd) {
  int n = SOCK_BUF;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &n, sizeof(n)) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof(n));
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &n, sizeof(n)) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
}

static unsigned addr_hash(const struct sockaddr_storage *a, socklen_t len) {
  const uint8_t *p = (const uint8_t *)a;
  unsigned h = 2166136261u;
  socklen_t i;
  for (i = 0; i < len; i++)
    h = (h ^ p[i]) * 16777619u;
  return h % PEER_BUCKETS;
}

static void peer_link(udp_relay *u, peer *p) {
  p->next_all = u->all;
  p->prev_all = NULL;
  if (u->all)
    u->all->prev_all = p;
  u->all = p;
  u->st.flows_open++;
}

static void peer_free(peer *p) {
  udp_relay *u = p->u;
  if (!u->server) {
    peer **pp = &u->buckets[addr_hash(&p->addr, p->addrlen)];
    while (*pp && *pp != p)
      pp = &(*pp)->next;
    if (*pp)
      *pp = p->next;
  }
  if (p->prev_all)
    p->prev_all->next_all = p->next_all;
  else
    u->all = p->next_all;
  if (p->next_all)
    p->next_all->prev_all = p->prev_all;
  u->st.flows_open--;
  if (p->fd >= 0) {
    ev_io_stop(u->loop, &p->rio);
    close(p->fd);
  }
  free(p);
}

/* ---- flow callbacks (both ends) ---- */

static void flow_recv(qm_flow *f, const uint8_t *data, size_t len, void *ud) {
  peer *p = ud;
  udp_relay *u = p->u;
  ssize_t n;
  (void)f;
  if (u->server)
    n = send(p->fd, data, len, 0);
  else
    n = sendto(u->fd, data, len, 0, (struct sockaddr *)&p->addr, p->addrlen);
  if (n < 0)
    u->st.dropped_local++; /* the local socket's buffer is full */
  else if (u->server)
    u->st.datagrams_up++;
  else
    u->st.datagrams_down++;
}

static void flow_close(qm_flow *f, int err, void *ud) {
  peer *p = ud;
  udp_relay *u = p->u;
  qm_flow_stats fs;
  qm_flow_get_stats(f, &fs);
  app_logm(QM_LOG_DEBUG, "udp",
           "%s: flow %llu closed (%s): %llu datagrams sent, %llu received, "
           "%llu dropped",
           u->tag, (unsigned long long)qm_flow_id(f),
           err ? qm_strerror(err) : "by the client",
           (unsigned long long)fs.datagrams_sent,
           (unsigned long long)fs.datagrams_received,
           (unsigned long long)(fs.dropped_queue + fs.dropped_incomplete +
                                fs.dropped_refused));
  p->f = NULL;
  if (!u->server && err != 0 && err != QM_ETIMEDOUT) {
    /* Refused (the server takes no datagrams: the library logged why,
     * once per session) or a cap: hold this peer off for a while instead
     * of a new flow per datagram. */
    p->refused_until =
        ev_now(u->loop) + (err == QM_EREFUSED ? REFUSED_HOLD : 1.0);
    u->st.refused++;
    return;
  }
  peer_free(p);
}

static const qm_flow_cbs flow_cbs = {flow_recv, flow_close};

/* ---- client: the local UDP socket ---- */

static peer *client_peer(udp_relay *u, const struct sockaddr_storage *a,
                         socklen_t len) {
  unsigned h = addr_hash(a, len);
  peer *p;
  int rv;
  for (p = u->buckets[h]; p; p = p->next)
    if (p->addrlen == len && !memcmp(&p->addr, a, len))
      break;
  if (p && (p->f || ev_now(u->loop) < p->refused_until))
    return p;
  if (!p) {
    if (!(p = calloc(1, sizeof(*p))))
      return NULL;
    p->u = u;
    p->fd = -1;
    memcpy(&p->addr, a, len);
    p->addrlen = len;
    p->next = u->buckets[h];
    u->buckets[h] = p;
    peer_link(u, p);
  }
  rv = qm_dial_flow(u->d, u->server_host, u->server_port, &flow_cbs, p, &p->f);
  if (rv != 0) {
    p->f = NULL;
    p->refused_until = ev_now(u->loop) + 1.0;
    u->st.refused++;
    if (warn_now(u))
      app_logm(QM_LOG_WARNING, "udp", "%s: new UDP flow refused: %s", u->tag,
               qm_strerror(rv));
  }
  return p;
}

/* Peers without a flow (refused) are forgotten once their hold is over, so
 * a stream of one-off source ports cannot grow the table. */
static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  udp_relay *u = w->data;
  peer *p, *next;
  (void)revents;
  for (p = u->all; p; p = next) {
    next = p->next_all;
    if (!p->f && ev_now(loop) >= p->refused_until)
      peer_free(p);
  }
}

static void client_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  udp_relay *u = w->data;
  int got = 0, n, i;
  (void)loop;
  (void)revents;
  while (got < READS_PER_EVENT && (n = read_batch(u, u->fd)) > 0) {
    got += n;
    for (i = 0; i < n; i++) {
      peer *p = client_peer(u, &u->from[i], u->msgs[i].msg_hdr.msg_namelen);
      if (!p || !p->f) {
        u->st.dropped_refused++;
        continue;
      }
      if (qm_flow_send(p->f, u->iov[i].iov_base, u->msgs[i].msg_len) == 0)
        u->st.datagrams_up++;
      /* else dropped and counted by the flow (queue full, refused:
       * on_close follows) */
    }
    if (n < BATCH)
      break;
  }
}

int udp_relay_client_new(udp_relay **out, struct ev_loop *loop, qm_dialer *d,
                         const struct sockaddr *listen, socklen_t listenlen,
                         const char *server_host, uint16_t server_port,
                         const qm_flow_settings *fs, const char *tag, char *err,
                         size_t errlen) {
  udp_relay *u = calloc(1, sizeof(*u));
  int one = 1, rv;
  if (!u)
    return QM_ENOMEM;
  u->loop = loop;
  u->tag = tag;
  u->d = d;
  u->fd = -1;
  u->server_port = server_port;
  if ((server_host && !(u->server_host = strdup(server_host))) ||
      !(u->buf = malloc((size_t)BATCH * DGRAM_MAX))) {
    udp_relay_free(u);
    return QM_ENOMEM;
  }
  if ((rv = qm_dialer_enable_flows(d, fs)) != 0) {
    snprintf(err, errlen, "UDP: %s", qm_strerror(rv));
    udp_relay_free(u);
    return rv;
  }
  u->fd =
      socket(listen->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (u->fd < 0) {
    snprintf(err, errlen, "UDP socket: %s", strerror(errno));
    udp_relay_free(u);
    return QM_EIO;
  }
  setsockopt(u->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  set_bufs(u->fd);
  if (bind(u->fd, listen, listenlen) != 0) {
    snprintf(err, errlen, "cannot listen for UDP: %s", strerror(errno));
    udp_relay_free(u);
    return QM_EIO;
  }
  ev_io_init(&u->rio, client_read_cb, u->fd, EV_READ);
  u->rio.data = u;
  ev_io_start(loop, &u->rio);
  ev_timer_init(&u->sweep, sweep_cb, REFUSED_HOLD, REFUSED_HOLD);
  u->sweep.data = u;
  ev_timer_start(loop, &u->sweep);
  *out = u;
  return 0;
}

/* ---- server: a socket of its own per flow ---- */

static void server_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  peer *p = w->data;
  udp_relay *u = p->u;
  int got = 0, n, i;
  (void)loop;
  (void)revents;
  /* ICMP errors (port unreachable) end a batch early: read on next time */
  while (got < READS_PER_EVENT && p->f && (n = read_batch(u, p->fd)) > 0) {
    got += n;
    for (i = 0; i < n && p->f; i++)
      if (qm_flow_send(p->f, u->iov[i].iov_base, u->msgs[i].msg_len) == 0)
        u->st.datagrams_down++;
    if (n < BATCH)
      break;
  }
}

static void on_flow(qm_listener *l, qm_flow *f, void *ud) {
  udp_relay *u = ud;
  peer *p;
  (void)l;
  p = calloc(1, sizeof(*p));
  if (!p) {
    qm_flow_close(f);
    return;
  }
  p->u = u;
  p->f = f;
  p->fd =
      socket(u->target.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p->fd < 0 ||
      connect(p->fd, (struct sockaddr *)&u->target, u->targetlen) != 0) {
    if (warn_now(u))
      app_logm(QM_LOG_WARNING, "udp", "%s: UDP socket to the target: %s",
               u->tag, strerror(errno));
    if (p->fd >= 0)
      close(p->fd);
    free(p);
    qm_flow_close(f);
    return;
  }
  set_bufs(p->fd);
  peer_link(u, p);
  u->st.flows++;
  ev_io_init(&p->rio, server_read_cb, p->fd, EV_READ);
  p->rio.data = p;
  ev_io_start(u->loop, &p->rio);
  qm_flow_set_callbacks(f, &flow_cbs, p);
  app_logm(QM_LOG_DEBUG, "udp", "%s: flow %llu <- session %llu", u->tag,
           (unsigned long long)qm_flow_id(f),
           (unsigned long long)qm_flow_session_id(f));
}

int udp_relay_server_new(udp_relay **out, struct ev_loop *loop, qm_listener *l,
                         const struct sockaddr *target, socklen_t targetlen,
                         const qm_flow_settings *fs, const char *tag, char *err,
                         size_t errlen) {
  udp_relay *u = calloc(1, sizeof(*u));
  int rv;
  if (!u)
    return QM_ENOMEM;
  u->loop = loop;
  u->server = 1;
  u->tag = tag;
  u->fd = -1;
  memcpy(&u->target, target, targetlen);
  u->targetlen = targetlen;
  if (!(u->buf = malloc((size_t)BATCH * DGRAM_MAX))) {
    free(u);
    return QM_ENOMEM;
  }
  if ((rv = qm_listener_enable_flows(l, fs, on_flow, u)) != 0) {
    snprintf(err, errlen, "UDP: %s", qm_strerror(rv));
    udp_relay_free(u);
    return rv;
  }
  *out = u;
  return 0;
}

void udp_relay_set_tag(udp_relay *u, const char *tag) {
  u->tag = tag;
}

void udp_relay_get_stats(const udp_relay *u, udp_relay_stats *st) {
  *st = u->st;
}

/* Before the dialer or listener is freed: their flows are freed with them,
 * without callbacks, so the peers go here. */
void udp_relay_free(udp_relay *u) {
  if (!u)
    return;
  while (u->all) {
    peer *p = u->all;
    if (p->f) {
      qm_flow_close(p->f);
      p->f = NULL;
    }
    peer_free(p);
  }
  if (u->fd >= 0) {
    ev_io_stop(u->loop, &u->rio);
    ev_timer_stop(u->loop, &u->sweep);
    close(u->fd);
  }
  free(u->server_host);
  free(u->buf);
  free(u);
}
