/* A client session's UDP endpoints and connection migration (RFC 9000 §9).
 *
 * A client session sends through one connected UDP socket at a time (its
 * current endpoint). It moves to a fresh socket when the local network
 * changed (a send error: no route, source address gone), when the path
 * looks dead (session_health.c) and, towards a server port range, every hop
 * interval. For a hop ngtcp2 validates the new path first (PATH_CHALLENGE
 * through the new socket, ngtcp2_conn_initiate_migration); only when the
 * PATH_RESPONSE is back does everything go there, so a port that does not
 * answer costs nothing. After a network change or on a dead path the old
 * path is of no use, so the session moves at once and validates on the way
 * (ngtcp2_conn_initiate_immediate_migration: a validation held back behind
 * a full congestion window would expire first). The socket before stays open
 * for three probe timeouts (0.5-3 s) to read what is still in flight (ngtcp2
 * accepts packets on a retired path for a while), then closes. A server that
 * forbids migration (disable_active_migration, as v2ray's quic-go does) is
 * never asked: the session falls back at once to what the pool does without
 * migration. */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "session_int.h"

#define QM_DRAIN_MIN_NS (500 * NGTCP2_MILLISECONDS)
#define QM_DRAIN_MAX_NS (3 * NGTCP2_SECONDS)
/* at most one migration attempt per this long on send errors */
#define QM_MIG_RETRY_NS (500 * NGTCP2_MILLISECONDS)
/* hop jitter: the interval times 0.7 .. 1.3 */
#define QM_HOP_JITTER_PCT 30

static const char *mig_names[] = {"?", "port hop", "network change",
                                  "dead path"};

static uint16_t addr_port(const struct sockaddr_storage *a) {
  return ntohs(a->ss_family == AF_INET6
                   ? ((const struct sockaddr_in6 *)a)->sin6_port
                   : ((const struct sockaddr_in *)a)->sin_port);
}

static void set_port(struct sockaddr_storage *a, uint16_t port) {
  if (a->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)a)->sin6_port = htons(port);
  else
    ((struct sockaddr_in *)a)->sin_port = htons(port);
}

/* ---- endpoints ---- */

static void ep_recv(qm_endpoint *ep, const struct sockaddr *from,
                    socklen_t fromlen, uint8_t *quic, size_t len, void *ud) {
  qm_session_recv(ud, ep, from, fromlen, quic, len);
}

static void ep_writable(qm_endpoint *ep, void *ud) {
  (void)ep;
  qm_session_writable(ud);
}

/* ICMP port unreachable while handshaking: nobody listens there, so fail
 * now and let the dialer try the next address instead of waiting 8 s. On a
 * hop target it only means that port is closed: the validation fails. */
static void ep_refused(qm_endpoint *ep, void *ud) {
  qm_session *s = ud;
  if (ep == s->ep && s->state == QM_SESS_HANDSHAKING) {
    QM_DEBUG("session", "session %llu: port unreachable",
             (unsigned long long)s->id);
    qm_sess_set_dead(s, QM_EREFUSED);
  }
}

static int ep_open(qm_session *s, qm_endpoint *ep, const struct sockaddr *peer,
                   socklen_t peerlen, char *err, size_t errlen) {
  int rv = qm_endpoint_open(ep, s->io, peer->sa_family, NULL, 0, peer, peerlen,
                            s->settings, ep_recv, ep_writable, s, err, errlen);
  if (rv != 0) {
    ep->fd = -1;
    return rv;
  }
  ep->on_refused = ep_refused;
  return 0;
}

/* Close an endpoint, keeping its counts for the session's totals. */
static void ep_retire(qm_session *s, qm_endpoint *ep) {
  if (ep->fd < 0)
    return;
  qm_endpoint_add_totals(ep, &s->gone_eps);
  s->gone_dropped += ep->rx_dropped;
  qm_endpoint_close(ep);
  ep->fd = -1;
  s->ep_close_at[ep - s->eps] = 0;
}

static void drain_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_session *s = w->data;
  ngtcp2_tstamp now = qm_now_ns();
  int i, left = 0;
  (void)revents;
  for (i = 0; i < QM_CLIENT_EPS; i++) {
    if (!s->ep_close_at[i])
      continue;
    if (now >= s->ep_close_at[i] && &s->eps[i] != s->ep &&
        &s->eps[i] != s->mig_ep)
      ep_retire(s, &s->eps[i]);
    else
      left = 1;
  }
  if (!left)
    ev_timer_stop(loop, w);
}

/* Keep ep open for a while (what is in flight still arrives), then close. */
static void ep_drain(qm_session *s, qm_endpoint *ep, ngtcp2_duration d) {
  if (ep->fd < 0)
    return;
  s->ep_close_at[ep - s->eps] = qm_now_ns() + d;
  if (!ev_is_active(&s->drain_timer)) {
    ev_timer_set(&s->drain_timer, 0.1, 0.1);
    ev_timer_start(s->io->loop, &s->drain_timer);
  }
}

static ngtcp2_duration drain_time(const qm_session *s) {
  ngtcp2_duration d = 3 * ngtcp2_conn_get_pto(s->conn);
  return QM_MIN(QM_MAX(d, QM_DRAIN_MIN_NS), QM_DRAIN_MAX_NS);
}

/* An unused slot; if there is none, the draining endpoint closes early. */
static qm_endpoint *free_slot(qm_session *s) {
  int i;
  for (i = 0; i < QM_CLIENT_EPS; i++)
    if (s->eps[i].fd < 0)
      return &s->eps[i];
  for (i = 0; i < QM_CLIENT_EPS; i++)
    if (&s->eps[i] != s->ep && &s->eps[i] != s->mig_ep) {
      ep_retire(s, &s->eps[i]);
      return &s->eps[i];
    }
  return NULL;
}

static void ep_path(qm_endpoint *ep, ngtcp2_path *p) {
  p->local.addr = (struct sockaddr *)&ep->local;
  p->local.addrlen = ep->locallen;
  p->remote.addr = (struct sockaddr *)&ep->peer;
  p->remote.addrlen = ep->peerlen;
  p->user_data = NULL;
}

int qm_sess_eps_open(qm_session *s, const struct sockaddr *peer,
                     socklen_t peerlen, char *err, size_t errlen) {
  int i, rv;
  for (i = 0; i < QM_CLIENT_EPS; i++)
    s->eps[i].fd = -1;
  ev_timer_init(&s->drain_timer, drain_cb, 0., 0.);
  s->drain_timer.data = s;
  s->ep = &s->eps[0];
  if ((rv = ep_open(s, s->ep, peer, peerlen, err, errlen)) != 0)
    return rv;
  ngtcp2_path_storage_init(&s->ps, (struct sockaddr *)&s->ep->local,
                           s->ep->locallen, peer, peerlen, NULL);
  return 0;
}

void qm_sess_eps_close(qm_session *s) {
  int i;
  ev_timer_stop(s->io->loop, &s->drain_timer);
  ev_timer_stop(s->io->loop, &s->hop_timer);
  for (i = 0; i < QM_CLIENT_EPS; i++)
    ep_retire(s, &s->eps[i]);
  s->mig_ep = NULL;
}

qm_endpoint *qm_sess_client_ep_for(qm_session *s, const ngtcp2_addr *local) {
  int i;
  for (i = 0; i < QM_CLIENT_EPS; i++) {
    qm_endpoint *ep = &s->eps[i];
    if (ep->fd >= 0 && (socklen_t)local->addrlen == ep->locallen &&
        memcmp(local->addr, &ep->local, ep->locallen) == 0)
      return ep;
  }
  return NULL;
}

uint64_t qm_sess_eps_dropped(const qm_session *s) {
  uint64_t n = s->gone_dropped;
  int i;
  for (i = 0; i < QM_CLIENT_EPS; i++)
    if (s->eps[i].fd >= 0)
      n += s->eps[i].rx_dropped;
  return n;
}

void qm_sess_eps_totals(const qm_session *s, qm_totals *t) {
  const qm_totals *g = &s->gone_eps;
  int i;
  for (i = 0; i < QM_CLIENT_EPS; i++)
    if (s->eps[i].fd >= 0)
      qm_endpoint_add_totals(&s->eps[i], t);
  t->datagrams_rx += g->datagrams_rx;
  t->datagrams_tx += g->datagrams_tx;
  t->bytes_rx += g->bytes_rx;
  t->bytes_tx += g->bytes_tx;
  t->bad_short += g->bad_short;
  t->bad_auth += g->bad_auth;
  t->bad_oversize += g->bad_oversize;
  t->bad_malformed += g->bad_malformed;
}

/* ---- migration ---- */

/* What the pool did before migration existed: take no new stream, move the
 * streams the server cannot have seen to another session; the dead-path
 * rule closes this one if the peer stays silent. */
static void fall_back(qm_session *s) {
  if (!s->suspect) {
    s->suspect = 1;
    s->suspect_since = qm_now_ns();
  }
  qm_sess_retry_unanswered(s);
}

int qm_sess_migrate(qm_session *s, int reason, uint16_t port) {
  const ngtcp2_transport_params *tp;
  struct sockaddr_storage peer;
  socklen_t peerlen = s->remotelen;
  qm_endpoint *ep;
  ngtcp2_path path;
  char err[256];
  int rv;

  if (s->server || s->state != QM_SESS_ESTABLISHED || !s->conn)
    return QM_EAGAIN;
  if (s->mig_ep)
    return QM_EAGAIN; /* one at a time */
  tp = ngtcp2_conn_get_remote_transport_params(s->conn);
  if (!tp || tp->disable_active_migration) {
    if (!s->mig_refused_logged) {
      s->mig_refused_logged = 1;
      QM_INFO("session",
              "session %llu: the server does not follow migrations (it sets "
              "disable_active_migration, as v2ray does): a new session takes "
              "over instead",
              (unsigned long long)s->id);
    }
    return QM_EREFUSED;
  }
  memcpy(&peer, &s->remote, peerlen);
  if (port)
    set_port(&peer, port);
  if (!(ep = free_slot(s)))
    return QM_EAGAIN;
  s->mig_last_try = qm_now_ns();
  if ((rv = ep_open(s, ep, (struct sockaddr *)&peer, peerlen, err,
                    sizeof(err))) != 0) {
    QM_DEBUG("session", "session %llu: %s: no new socket: %s",
             (unsigned long long)s->id, mig_names[reason], err);
    return QM_EIO;
  }
  ep_path(ep, &path);
  /* A hop leaves a working path: validate first, switch after. When the
   * path is gone (network change, dead path) switch at once: ngtcp2 then
   * resets the congestion state, so the PATH_CHALLENGE and the data
   * waiting for the dead path go out now instead of after the next probe
   * timeout (a full congestion window blocks the challenge). */
  rv = reason == QM_MIG_HOP
           ? ngtcp2_conn_initiate_migration(s->conn, &path, qm_now_ns())
           : ngtcp2_conn_initiate_immediate_migration(s->conn, &path,
                                                      qm_now_ns());
  if (rv != 0) {
    ep_retire(s, ep);
    QM_DEBUG("session", "session %llu: %s: cannot migrate: %s",
             (unsigned long long)s->id, mig_names[reason], ngtcp2_strerror(rv));
    return rv == NGTCP2_ERR_CONN_ID_BLOCKED ? QM_EAGAIN : QM_EQUIC;
  }
  s->mig_ep = ep;
  s->mig_reason = reason;
  if (reason != QM_MIG_HOP) {
    qm_endpoint *old = s->ep;
    s->ep = ep;
    memcpy(&s->remote, &ep->peer, ep->peerlen);
    s->remotelen = ep->peerlen;
    ep_drain(s, old, drain_time(s));
  }
  QM_DEBUG("session", "session %llu: %s: validating a path from port %u to %u",
           (unsigned long long)s->id, mig_names[reason], addr_port(&ep->local),
           addr_port(&ep->peer));
  qm_sess_schedule(s); /* the PATH_CHALLENGE goes out */
  return 0;
}

void qm_sess_path_validated(qm_session *s, const ngtcp2_path *path,
                            int success) {
  qm_endpoint *ep = qm_sess_client_ep_for(s, &path->local), *old = s->ep;
  if (s->server || !ep || ep != s->mig_ep)
    return;
  s->mig_ep = NULL;
  if (success) {
    if (old != ep) { /* validated first: switch now */
      s->ep = ep;
      memcpy(&s->remote, &ep->peer, ep->peerlen);
      s->remotelen = ep->peerlen;
      ep_drain(s, old, drain_time(s));
    }
    s->migrations++;
    if (s->mig_reason == QM_MIG_HOP)
      s->hops++;
    if (s->mig_reason == QM_MIG_HOP)
      QM_DEBUG("session", "session %llu: hopped to server port %u (%llu hops)",
               (unsigned long long)s->id, addr_port(&ep->peer),
               (unsigned long long)s->hops);
    else
      QM_INFO("session",
              "session %llu: %s: moved to a new UDP socket (local port %u)",
              (unsigned long long)s->id, mig_names[s->mig_reason],
              addr_port(&ep->local));
  } else {
    s->migrations_failed++;
    if (ep != s->ep)      /* an immediate move keeps its socket: nothing else */
      ep_drain(s, ep, 0); /* closed by the drain timer, not from in here */
    QM_INFO("session",
            "session %llu: %s: the new path to port %u did not "
            "answer%s",
            (unsigned long long)s->id, mig_names[s->mig_reason],
            addr_port(&ep->peer),
            s->mig_reason == QM_MIG_HOP ? ", staying on this port"
                                        : ": a new session takes over");
    if (s->mig_reason != QM_MIG_HOP || s->suspect)
      fall_back(s);
  }
  qm_sess_schedule(s);
}

void qm_sess_check_path_error(qm_session *s) {
  ngtcp2_tstamp now;
  int e = s->ep->path_err;
  if (!e || s->server)
    return;
  s->ep->path_err = 0;
  if (s->state != QM_SESS_ESTABLISHED || s->mig_ep)
    return;
  now = qm_now_ns();
  if (s->mig_last_try && now - s->mig_last_try < QM_MIG_RETRY_NS)
    return;
  QM_INFO("session",
          "session %llu: sending failed (%s): moving to a new UDP "
          "socket",
          (unsigned long long)s->id, strerror(e));
  /* No socket to be had yet (no network at all): the next send error or
   * the dead-path rule tries again. */
  if (qm_sess_migrate(s, QM_MIG_NETWORK, 0) == QM_EREFUSED)
    fall_back(s);
}

/* ---- port hopping ---- */

static void hop_arm(qm_session *s, double secs) {
  ev_timer_stop(s->io->loop, &s->hop_timer);
  ev_timer_set(&s->hop_timer, secs, 0.);
  ev_timer_start(s->io->loop, &s->hop_timer);
}

static double hop_next(const qm_session *s) {
  uint32_t r;
  double f;
  qm_random((uint8_t *)&r, sizeof(r));
  f = 1.0 +
      (double)((int)(r % (2 * QM_HOP_JITTER_PCT + 1)) - QM_HOP_JITTER_PCT) /
          100.0;
  return (double)s->hop_interval_ms / 1000.0 * f;
}

static void hop_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_session *s = w->data;
  uint16_t cur = addr_port(&s->remote), port;
  uint32_t span = (uint32_t)s->port_hi - s->port_lo, r;
  int rv;
  (void)loop;
  (void)revents;
  if (s->state == QM_SESS_HANDSHAKING || s->mig_ep) {
    hop_arm(s, 0.5);
    return;
  }
  if (s->state != QM_SESS_ESTABLISHED)
    return;
  /* a random port of the range other than the current one */
  qm_random((uint8_t *)&r, sizeof(r));
  port = (uint16_t)(s->port_lo + r % span);
  if (port >= cur)
    port++;
  rv = qm_sess_migrate(s, QM_MIG_HOP, port);
  if (rv == QM_EREFUSED)
    return; /* logged once; never again on this session */
  hop_arm(s, rv == QM_EAGAIN ? 0.5 : hop_next(s));
}

void qm_sess_hop_start(qm_session *s) {
  ev_timer_init(&s->hop_timer, hop_cb, 0., 0.);
  s->hop_timer.data = s;
  if (s->port_hi > s->port_lo && s->hop_interval_ms)
    hop_arm(s, hop_next(s));
}
