/* TCP <-> stream splicing with backpressure both ways. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "tunnel.h"
#include "udp_relay.h"

/* Reads per readiness event, so one fast connection cannot starve others. */
#define READS_PER_EVENT 4

struct tunnel {
  struct ev_loop *loop;
  int server;
  /* client side */
  int lfd;
  ev_io accept_w;
  qm_dialer *dialer;
  char *server_host;
  uint16_t server_port, server_port_hi; /* hi: a port range, else 0 */
  int server_set;                       /* dial the dialer's server set */
  /* server side */
  qm_listener *listener;
  struct sockaddr_storage target;
  socklen_t targetlen;
  tunnel_stats stats;
  char *tag;          /* name in logs */
  uint64_t next_conn; /* connection ids for logs */
  int draining;       /* stopping: new connections/streams are refused */
  udp_relay *udp;     /* --udp, or NULL */
  /* workers: this tunnel is worker `worker` of `workers` (same config) */
  unsigned worker, workers;
  clockid_t cpu_clock; /* the worker thread's CPU clock */
  int has_cpu_clock;
  const char *steering; /* how datagrams reach their worker */
};

typedef struct conn_splice {
  tunnel *t;
  uint64_t id; /* per tunnel, for logs */
  int fd;
  ev_io rio, wio;
  qm_stream *st;
  unsigned connecting : 1, tcp_eof : 1, read_paused : 1, peer_fin : 1;
} conn_splice;

static const char *tag_of(const tunnel *t) {
  return t->tag ? t->tag : t->server ? "server" : "client";
}

int tunnel_resolve(const char *host, uint16_t port, int passive,
                   struct sockaddr_storage *ss, socklen_t *len) {
  struct addrinfo hints, *res = NULL;
  char portstr[8];
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  snprintf(portstr, sizeof(portstr), "%u", port);
  if (getaddrinfo(host, portstr, &hints, &res) != 0 || !res)
    return QM_ERESOLVE;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

static void splice_free(conn_splice *sp) {
  ev_io_stop(sp->t->loop, &sp->rio);
  ev_io_stop(sp->t->loop, &sp->wio);
  if (sp->fd >= 0)
    close(sp->fd);
  sp->t->stats.active--;
  free(sp);
}

/* ---- TCP -> stream ---- */

static void tcp_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  conn_splice *sp = w->data;
  int i;
  (void)revents;
  for (i = 0; i < READS_PER_EVENT; i++) {
    uint8_t *buf;
    size_t room;
    ssize_t n;
    if (qm_stream_write_space(sp->st, &buf, &room) < 0) {
      ev_io_stop(loop, &sp->rio);
      return;
    }
    if (room == 0) { /* stream buffer full: wait for on_send_ready */
      ev_io_stop(loop, &sp->rio);
      sp->read_paused = 1;
      return;
    }
    n = recv(sp->fd, buf, room, 0);
    if (n > 0) {
      qm_stream_write_commit(sp->st, (size_t)n);
      sp->t->stats.bytes_up += (uint64_t)n;
      if ((size_t)n < room)
        return;
      continue;
    }
    if (n == 0) { /* TCP EOF -> FIN */
      sp->tcp_eof = 1;
      ev_io_stop(loop, &sp->rio);
      qm_stream_shutdown_write(sp->st);
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    /* TCP reset -> RESET_STREAM + STOP_SENDING */
    ev_io_stop(loop, &sp->rio);
    sp->tcp_eof = 1;
    qm_stream_reset(sp->st, 0);
    return;
  }
}

static void st_on_send_ready(qm_stream *st, void *ud) {
  conn_splice *sp = ud;
  (void)st;
  if (sp->read_paused && !sp->tcp_eof && !sp->connecting) {
    sp->read_paused = 0;
    ev_io_start(sp->t->loop, &sp->rio);
  }
}

/* ---- stream -> TCP ---- */

static size_t st_on_recv(qm_stream *st, const uint8_t *data, size_t len,
                         void *ud) {
  conn_splice *sp = ud;
  ssize_t n;
  if (sp->connecting)
    return 0; /* kept in the stream until the target answers */
  n = send(sp->fd, data, len, MSG_NOSIGNAL);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      n = 0;
    } else {
      qm_stream_reset(st, 0);
      return len; /* the TCP side is gone: discard */
    }
  }
  sp->t->stats.bytes_down += (uint64_t)n;
  if ((size_t)n < len)
    ev_io_start(sp->t->loop, &sp->wio);
  return (size_t)n;
}

static void st_on_recv_fin(qm_stream *st, void *ud) {
  conn_splice *sp = ud;
  (void)st;
  if (sp->connecting)
    sp->peer_fin = 1; /* passed on once the target answers */
  else
    shutdown(sp->fd, SHUT_WR); /* FIN -> half-close */
}

static void tcp_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  conn_splice *sp = w->data;
  (void)revents;
  ev_io_stop(loop, &sp->wio);
  if (sp->connecting) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(sp->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    sp->connecting = 0;
    if (err) {
      app_logm(QM_LOG_INFO, "tunnel",
               "%s: conn %llu session %llu stream %lld: target: %s",
               tag_of(sp->t), (unsigned long long)sp->id,
               (unsigned long long)qm_stream_session_id(sp->st),
               (long long)qm_stream_id(sp->st), strerror(err));
      sp->t->stats.failed++;
      qm_stream_reset(sp->st, 0);
      return;
    }
    ev_io_start(loop, &sp->rio);
    qm_stream_resume_recv(sp->st);
    if (sp->peer_fin)
      shutdown(sp->fd, SHUT_WR);
    return;
  }
  qm_stream_resume_recv(sp->st);
}

static void st_on_close(qm_stream *st, int err, void *ud) {
  conn_splice *sp = ud;
  qm_log_level lvl = err && err != QM_ERESET ? QM_LOG_INFO : QM_LOG_DEBUG;
  if (qm_stream_id(st) < 0)
    app_logm(lvl, "tunnel", "%s: conn %llu closed before its stream opened%s%s",
             tag_of(sp->t), (unsigned long long)sp->id, err ? ": " : "",
             err ? qm_strerror(err) : "");
  else
    app_logm(lvl, "tunnel", "%s: conn %llu session %llu stream %lld closed%s%s",
             tag_of(sp->t), (unsigned long long)sp->id,
             (unsigned long long)qm_stream_session_id(st),
             (long long)qm_stream_id(st), err ? ": " : "",
             err ? qm_strerror(err) : "");
  sp->st = NULL;
  if (err) {
    /* abort the TCP side with RST, so the application sees the failure */
    struct linger lg = {1, 0};
    setsockopt(sp->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    if (err != QM_ERESET)
      sp->t->stats.failed++;
  }
  splice_free(sp);
}

static void st_on_open(qm_stream *st, void *ud) {
  conn_splice *sp = ud;
  app_logm(QM_LOG_DEBUG, "tunnel",
           "%s: conn %llu -> session %llu stream %lld open", tag_of(sp->t),
           (unsigned long long)sp->id,
           (unsigned long long)qm_stream_session_id(st),
           (long long)qm_stream_id(st));
}

static const qm_stream_cbs splice_cbs = {
    st_on_open, st_on_recv, st_on_recv_fin, st_on_send_ready, st_on_close,
};

static conn_splice *splice_new(tunnel *t, int fd) {
  conn_splice *sp = calloc(1, sizeof(*sp));
  int one = 1;
  if (!sp)
    return NULL;
  sp->t = t;
  sp->id = ++t->next_conn;
  sp->fd = fd;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ev_io_init(&sp->rio, tcp_read_cb, fd, EV_READ);
  sp->rio.data = sp;
  ev_io_init(&sp->wio, tcp_write_cb, fd, EV_WRITE);
  sp->wio.data = sp;
  t->stats.active++;
  return sp;
}

/* ---- client ---- */

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
  tunnel *t = w->data;
  int i;
  (void)revents;
  for (i = 0; i < 64; i++) {
    int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    conn_splice *sp;
    int rv;
    if (fd < 0)
      return;
    t->stats.accepted++;
    sp = splice_new(t, fd);
    if (!sp) {
      close(fd);
      continue;
    }
    if (t->server_set)
      rv = qm_dial(t->dialer, NULL, t->server_port, &splice_cbs, sp, &sp->st);
    else
      rv = qm_dial_range(t->dialer, t->server_host, t->server_port,
                         t->server_port_hi ? t->server_port_hi : t->server_port,
                         &splice_cbs, sp, &sp->st);
    if (rv != 0) {
      app_logm(QM_LOG_INFO, "tunnel", "%s: conn %llu: dial %s port %u: %s",
               tag_of(t), (unsigned long long)sp->id, t->server_host,
               t->server_port, qm_strerror(rv));
      /* a failed dial fails this one connection only */
      t->stats.failed++;
      splice_free(sp);
      continue;
    }
    ev_io_start(loop, &sp->rio);
  }
}

static int tcp_listen(const struct sockaddr *addr, socklen_t len, int shared,
                      char *err, size_t errlen) {
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0),
      one = 1;
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  /* client workers: one listening socket per loop on the same port, the
   * kernel spreads new connections over them */
  if (shared)
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (addr->sa_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, addr, len) != 0 || listen(fd, 1024) != 0) {
    snprintf(err, errlen, "listen: %s", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

int tunnel_client_new(tunnel **out, struct ev_loop *loop,
                      const struct sockaddr *listen_addr, socklen_t listenlen,
                      const char *server_host, uint16_t server_port,
                      uint16_t server_port_hi, const qm_settings *s, char *err,
                      size_t errlen) {
  tunnel *t = calloc(1, sizeof(*t));
  int rv;
  if (!t)
    return QM_ENOMEM;
  t->loop = loop;
  t->lfd = -1;
  t->server_host = strdup(server_host);
  t->server_port = server_port;
  t->server_port_hi = server_port_hi;
  if (!t->server_host) {
    tunnel_free(t);
    return QM_ENOMEM;
  }
  if ((rv = qm_dialer_new(&t->dialer, loop, s)) != 0) {
    snprintf(err, errlen, "client: %s", qm_strerror(rv));
    tunnel_free(t);
    return rv;
  }
  /* dialers on several loops share their caps (and this port) */
  t->lfd = tcp_listen(listen_addr, listenlen, s->caps != NULL, err, errlen);
  if (t->lfd < 0) {
    tunnel_free(t);
    return QM_EIO;
  }
  ev_io_init(&t->accept_w, accept_cb, t->lfd, EV_READ);
  t->accept_w.data = t;
  ev_io_start(loop, &t->accept_w);
  *out = t;
  return 0;
}

int tunnel_client_set_servers(tunnel *t, const char *const *servers, size_t n) {
  int rv = qm_dialer_set_servers(t->dialer, servers, n);
  if (rv == 0)
    t->server_set = n > 0;
  return rv;
}

/* ---- server ---- */

static void on_stream(qm_listener *l, qm_stream *st, void *ud) {
  tunnel *t = ud;
  conn_splice *sp;
  int fd;
  (void)l;
  t->stats.accepted++;
  if (t->draining) { /* stopping: refuse, the client may go elsewhere */
    t->stats.failed++;
    qm_stream_reset(st, 0);
    return;
  }
  fd = socket(t->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
              0);
  if (fd < 0 || !(sp = splice_new(t, fd))) {
    if (fd >= 0)
      close(fd);
    t->stats.failed++;
    qm_stream_reset(st, 0);
    return;
  }
  sp->st = st;
  qm_stream_set_callbacks(st, &splice_cbs, sp);
  app_logm(QM_LOG_DEBUG, "tunnel", "%s: conn %llu <- session %llu stream %lld",
           tag_of(t), (unsigned long long)sp->id,
           (unsigned long long)qm_stream_session_id(st),
           (long long)qm_stream_id(st));
  if (connect(fd, (struct sockaddr *)&t->target, t->targetlen) != 0) {
    if (errno != EINPROGRESS) {
      t->stats.failed++;
      qm_stream_reset(st, 0);
      return;
    }
    sp->connecting = 1;
    ev_io_start(t->loop, &sp->wio);
    return;
  }
  ev_io_start(t->loop, &sp->rio);
}

int tunnel_server_new(tunnel **out, struct ev_loop *loop,
                      const struct sockaddr *listen_addr, socklen_t listenlen,
                      unsigned nports, const struct sockaddr *target,
                      socklen_t targetlen, const qm_settings *s, char *err,
                      size_t errlen) {
  tunnel *t = calloc(1, sizeof(*t));
  int rv;
  if (!t)
    return QM_ENOMEM;
  t->loop = loop;
  t->server = 1;
  t->lfd = -1;
  memcpy(&t->target, target, targetlen);
  t->targetlen = targetlen;
  rv = qm_listener_new_range(&t->listener, loop, listen_addr, listenlen, nports,
                             s, on_stream, t);
  if (rv != 0) {
    snprintf(err, errlen, "cannot listen: %s", qm_strerror(rv));
    tunnel_free(t);
    return rv;
  }
  *out = t;
  return 0;
}

int tunnel_enable_udp(tunnel *t, const qm_flow_settings *fs, char *err,
                      size_t errlen) {
  struct sockaddr_storage ss;
  socklen_t len;
  if (t->server)
    return udp_relay_server_new(&t->udp, t->loop, t->listener,
                                (struct sockaddr *)&t->target, t->targetlen, fs,
                                tag_of(t), err, errlen);
  /* the TCP listener's address, its port included when it was 0 */
  if (tunnel_local_addr(t, &ss, &len) != 0) {
    snprintf(err, errlen, "UDP: no listen address");
    return QM_EIO;
  }
  /* with several servers, flows go to the dialer's set as streams do */
  return udp_relay_client_new(&t->udp, t->loop, t->dialer,
                              (struct sockaddr *)&ss, len,
                              t->server_set ? NULL : t->server_host,
                              t->server_port, fs, tag_of(t), err, errlen);
}

void tunnel_stop_accepting(tunnel *t) {
  t->draining = 1;
  if (t->lfd >= 0) {
    ev_io_stop(t->loop, &t->accept_w);
    close(t->lfd);
    t->lfd = -1;
  }
}

void tunnel_free(tunnel *t) {
  if (!t)
    return;
  tunnel_stop_accepting(t);
  /* Freeing the dialer/listener closes every stream; on_close frees the
   * splices. The UDP relay goes first: its flows die with them silently. */
  udp_relay_free(t->udp);
  qm_dialer_free(t->dialer);
  qm_listener_free(t->listener);
  free(t->server_host);
  free(t->tag);
  free(t);
}

void tunnel_get_stats(const tunnel *t, tunnel_stats *st) {
  *st = t->stats;
}

int tunnel_set_tag(tunnel *t, const char *tag) {
  char *d = tag ? strdup(tag) : NULL;
  if (tag && !d)
    return QM_ENOMEM;
  free(t->tag);
  t->tag = d;
  if (t->udp)
    udp_relay_set_tag(t->udp, tag_of(t));
  return 0;
}

void tunnel_get_udp_stats(const tunnel *t, tunnel_udp_stats *st) {
  udp_relay_stats us;
  qm_flow_stats fs;
  memset(st, 0, sizeof(*st));
  if (!t->udp)
    return;
  udp_relay_get_stats(t->udp, &us);
  if (t->dialer)
    qm_dialer_flow_stats(t->dialer, &fs);
  else
    qm_listener_flow_stats(t->listener, &fs);
  st->flows = fs.flows;
  st->flows_open = us.flows_open;
  st->datagrams_up = us.datagrams_up;
  st->datagrams_down = us.datagrams_down;
  st->dropped_queue = fs.dropped_queue;
  st->dropped_incomplete = fs.dropped_incomplete;
  st->dropped_refused = fs.dropped_refused + us.dropped_refused;
  st->dropped_local = us.dropped_local;
}

/* ", UDP: ..." after the line of tunnel_describe (n workers added up). */
static void describe_udp(const tunnel *const *ts, size_t nt, char *buf,
                         size_t len) {
  tunnel_udp_stats u, one;
  size_t n = strlen(buf), i;
  if (!ts[0]->udp || n >= len)
    return;
  memset(&u, 0, sizeof(u));
  for (i = 0; i < nt; i++) {
    tunnel_get_udp_stats(ts[i], &one);
    u.flows += one.flows;
    u.flows_open += one.flows_open;
    u.datagrams_up += one.datagrams_up;
    u.datagrams_down += one.datagrams_down;
    u.dropped_queue += one.dropped_queue;
    u.dropped_incomplete += one.dropped_incomplete;
    u.dropped_refused += one.dropped_refused;
    u.dropped_local += one.dropped_local;
  }
  snprintf(buf + n, len - n,
           "; UDP: %llu flows (%llu open), %llu datagrams up, %llu down, "
           "dropped: %llu queue full, %llu incomplete, %llu refused, %llu "
           "local",
           (unsigned long long)u.flows, (unsigned long long)u.flows_open,
           (unsigned long long)u.datagrams_up,
           (unsigned long long)u.datagrams_down,
           (unsigned long long)u.dropped_queue,
           (unsigned long long)u.dropped_incomplete,
           (unsigned long long)u.dropped_refused,
           (unsigned long long)u.dropped_local);
}

/* The sum of the stats of n tunnels (workers of one config). */
/* ", 0-RTT: ..." when resumption or 0-RTT happened at all. */
static void early_text(const qm_early_totals *e, int server, char *buf,
                       size_t len) {
  buf[0] = '\0';
  if (!e->tickets && !e->resumed && !e->attempts && !e->accepted)
    return;
  if (server)
    snprintf(buf, len,
             ", 0-RTT: %llu tickets sent, %llu sessions resumed, %llu with "
             "early data, %llu early bytes",
             (unsigned long long)e->tickets, (unsigned long long)e->resumed,
             (unsigned long long)e->accepted, (unsigned long long)e->bytes);
  else
    snprintf(buf, len,
             ", 0-RTT: %llu tickets, %llu sessions resumed, early data "
             "offered %llu, accepted %llu, refused %llu, %llu early bytes",
             (unsigned long long)e->tickets, (unsigned long long)e->resumed,
             (unsigned long long)e->attempts, (unsigned long long)e->accepted,
             (unsigned long long)e->rejected, (unsigned long long)e->bytes);
}

static void add_early(qm_early_totals *sum, const qm_early_totals *e) {
  sum->tickets += e->tickets;
  sum->resumed += e->resumed;
  sum->attempts += e->attempts;
  sum->accepted += e->accepted;
  sum->rejected += e->rejected;
  sum->bytes += e->bytes;
}

static void sum_stats(const tunnel *const *ts, size_t n, tunnel_stats *sum,
                      qm_dialer_stats *ds, qm_listener_stats *ls) {
  size_t i;
  memset(sum, 0, sizeof(*sum));
  memset(ds, 0, sizeof(*ds));
  memset(ls, 0, sizeof(*ls));
  for (i = 0; i < n; i++) {
    const tunnel *t = ts[i];
    sum->accepted += t->stats.accepted;
    sum->active += t->stats.active;
    sum->failed += t->stats.failed;
    sum->bytes_up += t->stats.bytes_up;
    sum->bytes_down += t->stats.bytes_down;
    if (t->dialer) {
      qm_dialer_stats d;
      qm_dialer_get_stats(t->dialer, &d);
      ds->sessions += d.sessions;
      ds->handshaking += d.handshaking;
      ds->streams += d.streams;
      ds->dropped_datagrams += d.dropped_datagrams;
      add_early(&ds->early, &d.early);
    } else {
      qm_listener_stats l;
      qm_listener_get_stats(t->listener, &l);
      ls->sessions += l.sessions;
      ls->accepted_sessions += l.accepted_sessions;
      ls->dropped_datagrams += l.dropped_datagrams;
      ls->bad_datagrams += l.bad_datagrams;
      ls->unroutable += l.unroutable;
      ls->bad_tokens += l.bad_tokens;
      ls->retries_sent += l.retries_sent;
      ls->refused_sessions += l.refused_sessions;
      ls->resets_sent += l.resets_sent;
      ls->handoffs_out += l.handoffs_out;
      ls->handoffs_in += l.handoffs_in;
      add_early(&ls->early, &l.early);
    }
  }
}

void tunnel_describe(const tunnel *t, char *buf, size_t len) {
  tunnel_describe_n(&t, 1, buf, len);
}

void tunnel_describe_n(const tunnel *const *ts, size_t n, char *buf,
                       size_t len) {
  const tunnel *t = ts[0];
  tunnel_stats sum;
  qm_dialer_stats ds;
  qm_listener_stats ls;
  char early[256];
  sum_stats(ts, n, &sum, &ds, &ls);
  if (t->dialer) {
    early_text(&ds.early, 0, early, sizeof(early));
    snprintf(buf, len,
             "%s: %llu connections (%llu open, %llu failed), "
             "%zu sessions (%zu handshaking), %zu streams, "
             "%llu bytes up, %llu bytes down, %llu bad datagrams%s",
             tag_of(t), (unsigned long long)sum.accepted,
             (unsigned long long)sum.active, (unsigned long long)sum.failed,
             ds.sessions, ds.handshaking, ds.streams,
             (unsigned long long)sum.bytes_up,
             (unsigned long long)sum.bytes_down,
             (unsigned long long)ds.dropped_datagrams, early);
  } else {
    early_text(&ls.early, 1, early, sizeof(early));
    snprintf(
        buf, len,
        "%s: %llu streams (%llu open, %llu failed), %zu sessions "
        "(%llu accepted), %llu bytes up, %llu bytes down, "
        "%llu bad datagrams (%llu undecryptable, %llu unroutable, "
        "%llu bad tokens), %llu retries sent, %llu sessions refused, "
        "%llu stateless resets sent%s",
        tag_of(t), (unsigned long long)sum.accepted,
        (unsigned long long)sum.active, (unsigned long long)sum.failed,
        ls.sessions, (unsigned long long)ls.accepted_sessions,
        (unsigned long long)sum.bytes_down, (unsigned long long)sum.bytes_up,
        (unsigned long long)ls.dropped_datagrams,
        (unsigned long long)ls.bad_datagrams, (unsigned long long)ls.unroutable,
        (unsigned long long)ls.bad_tokens, (unsigned long long)ls.retries_sent,
        (unsigned long long)ls.refused_sessions,
        (unsigned long long)ls.resets_sent, early);
  }
  describe_udp(ts, n, buf, len);
}

int tunnel_local_addr(const tunnel *t, struct sockaddr_storage *ss,
                      socklen_t *len) {
  if (t->listener)
    return qm_listener_get_addr(t->listener, ss, len);
  *len = sizeof(*ss);
  return getsockname(t->lfd, (struct sockaddr *)ss, len) == 0 ? 0 : QM_EIO;
}

typedef struct sess_line_arg {
  const tunnel *t;
  void (*line)(const char *, void *);
  void *ud;
} sess_line_arg;

static void server_line(const qm_server_info *in, void *ud) {
  sess_line_arg *a = ud;
  char buf[512], state[96];
  if (in->backing_off) {
    time_t until = time(NULL) + (time_t)((in->backoff_left_ms + 999) / 1000);
    struct tm tm;
    char hms[16];
    gmtime_r(&until, &tm);
    strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
    snprintf(state, sizeof(state), "backing off %.1f s (until %s UTC)",
             (double)in->backoff_left_ms / 1000.0, hms);
  } else {
    /* failed before, back-off over: one session tries it again */
    snprintf(state, sizeof(state), "%s",
             !in->failures     ? "up"
             : in->handshaking ? "on trial"
                               : "due for a retry");
  }
  /* "sessions N", not "N sessions": scripts read the summary line by it */
  snprintf(buf, sizeof(buf),
           "%s: server %s %s: sessions %zu (%zu handshaking), streams %zu, "
           "opened %llu, handshakes %llu ok / %llu failed (%u in a row)",
           tag_of(a->t), in->addr, state, in->sessions, in->handshaking,
           in->streams, (unsigned long long)in->sessions_opened,
           (unsigned long long)in->handshakes_ok,
           (unsigned long long)in->handshakes_failed, in->failures);
  a->line(buf, a->ud);
}

static void sess_line(const qm_session_info *in, void *ud) {
  sess_line_arg *a = ud;
  char buf[512];
  snprintf(buf, sizeof(buf),
           "%s: session %llu %s%s peer %s local port %u: %zu streams "
           "(%zu queued), rtt %.2f ms (min %.2f), cwnd %llu, in flight %llu, "
           "pto %zu, datagrams %llu in / %llu out / %llu bad, "
           "migrations=%llu hops=%llu",
           tag_of(a->t), (unsigned long long)in->id, in->state,
           in->suspect ? " (no answer)" : "", in->peer, in->local_port,
           in->streams, in->streams_pending,
           (double)in->smoothed_rtt_us / 1000.0,
           (double)in->min_rtt_us / 1000.0, (unsigned long long)in->cwnd,
           (unsigned long long)in->bytes_in_flight, in->pto_count,
           (unsigned long long)in->datagrams_rx,
           (unsigned long long)in->datagrams_tx,
           (unsigned long long)in->datagrams_dropped,
           (unsigned long long)in->migrations, (unsigned long long)in->hops);
  a->line(buf, a->ud);
}

void tunnel_describe_sessions(const tunnel *t,
                              void (*line)(const char *, void *), void *ud) {
  sess_line_arg a = {t, line, ud};
  if (t->dialer) {
    qm_dialer_foreach_server(t->dialer, server_line, &a);
    qm_dialer_foreach_session(t->dialer, sess_line, &a);
  } else
    qm_listener_foreach_session(t->listener, sess_line, &a);
}

const char *tunnel_tag(const tunnel *t) {
  return tag_of(t);
}
const qm_dialer *tunnel_dialer(const tunnel *t) {
  return t->dialer;
}
const qm_listener *tunnel_listener(const tunnel *t) {
  return t->listener;
}

void tunnel_foreach_session(const tunnel *t,
                            void (*fn)(const qm_session_info *, void *),
                            void *ud) {
  if (t->dialer)
    qm_dialer_foreach_session(t->dialer, fn, ud);
  else
    qm_listener_foreach_session(t->listener, fn, ud);
}

uint64_t tunnel_open_connections(const tunnel *t) {
  return t->stats.active;
}

qm_listener *tunnel_listener_mut(tunnel *t) {
  return t->listener;
}

void tunnel_set_worker(tunnel *t, unsigned worker, unsigned workers,
                       const clockid_t *cpu_clock, const char *steering) {
  t->worker = worker;
  t->workers = workers;
  t->has_cpu_clock = cpu_clock != NULL;
  if (cpu_clock)
    t->cpu_clock = *cpu_clock;
  t->steering = steering;
}

void tunnel_get_worker(const tunnel *t, tunnel_worker *w) {
  struct timespec ts;
  memset(w, 0, sizeof(*w));
  w->worker = t->worker;
  w->workers = t->workers ? t->workers : 1;
  w->steering = t->steering;
  if (t->has_cpu_clock && clock_gettime(t->cpu_clock, &ts) == 0)
    w->cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  if (t->listener) {
    qm_listener_stats ls;
    qm_listener_get_stats(t->listener, &ls);
    w->sessions = ls.sessions;
    w->sessions_opened = ls.accepted_sessions;
    w->datagrams_rx = ls.totals.datagrams_rx;
    w->datagrams_tx = ls.totals.datagrams_tx;
    w->handoffs_out = ls.handoffs_out;
    w->handoffs_in = ls.handoffs_in;
  } else {
    qm_dialer_stats ds;
    qm_dialer_get_stats(t->dialer, &ds);
    w->sessions = ds.sessions;
    w->sessions_opened = ds.totals.sessions_opened;
    w->datagrams_rx = ds.totals.datagrams_rx;
    w->datagrams_tx = ds.totals.datagrams_tx;
  }
  w->connections = t->stats.accepted;
  w->connections_open = t->stats.active;
}

void tunnel_describe_worker(const tunnel *t, char *buf, size_t len) {
  tunnel_worker w;
  tunnel_get_worker(t, &w);
  snprintf(
      buf, len,
      "%s: worker %u/%u: %zu sessions (%llu %s), %llu connections "
      "(%llu open), datagrams %llu in / %llu out, %llu handed to "
      "other workers, %llu taken from them, cpu %.3f s%s%s",
      tag_of(t), w.worker, w.workers, w.sessions,
      (unsigned long long)w.sessions_opened,
      t->listener ? "accepted" : "opened", (unsigned long long)w.connections,
      (unsigned long long)w.connections_open,
      (unsigned long long)w.datagrams_rx, (unsigned long long)w.datagrams_tx,
      (unsigned long long)w.handoffs_out, (unsigned long long)w.handoffs_in,
      (double)w.cpu_ns / 1e9, w.steering ? ", steering " : "",
      w.steering ? w.steering : "");
}
