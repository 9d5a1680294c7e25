/* One QUIC connection over ngtcp2 0.12 + GnuTLS (SPEC §1, §2, §7, §13). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "internal.h"
#include "policy.h"
#include "session.h"

#define QM_SCID_LEN 12 /* v2ray's ConnectionIDLength (SPEC §1.4) */
#define QM_MAX_VEC 16
#define QM_BURST (32 * 1024)

struct qm_session {
  uint64_t id;
  int server;
  qm_session_state state;
  qm_io *io;
  qm_endpoint *ep; /* client: &own_ep; server: the listener's */
  qm_endpoint own_ep;
  qm_tls_ctx *tls;
  gnutls_session_t tls_sess;
  ngtcp2_conn *conn;
  ngtcp2_crypto_conn_ref conn_ref;
  struct sockaddr_storage remote;
  socklen_t remotelen;
  ngtcp2_path_storage ps;
  ev_timer timer;
  qm_task task;
  qm_session_owner owner;
  size_t stream_limit_bytes;
  uint64_t max_window; /* largest receive window (fill_settings) */
  /* streams */
  qm_stream *streams; /* all attached streams */
  size_t nstreams;
  qm_stream *pending_head, *pending_tail; /* client: waiting for an id */
  size_t npending;
  qm_stream *wq_head, *wq_tail; /* streams with something to send */
  qm_stream *ev_head;           /* streams with events to deliver */
  int close_err;                /* QM_E* reason once closing/dead */
  int dead_notified;
  int blocked; /* waiting for the endpoint to drain */
  int suspect; /* several PTOs without an ack: the path looks dead */
  ngtcp2_tstamp suspect_since;
  ngtcp2_tstamp last_rx;    /* last packet from the peer */
  ngtcp2_tstamp owed_since; /* first send while nothing was in flight */
  ev_timer health_timer; /* client: watches the path while carrying streams */
  int died_handshaking;
  ngtcp2_ccerr last_error;
  uint64_t keepalive_ms;
  uint64_t session_idle_ms;
  ev_timer idle_timer; /* client: no stream for session_idle_ms -> close */
  uint64_t rx, tx;     /* datagrams */
};

static void session_schedule(qm_session *s) {
  qm_io_defer(s->io, &s->task);
}

uint64_t qm_session_id(const qm_session *s) {
  return s->id;
}
int qm_session_close_error(const qm_session *s) {
  return s->close_err ? s->close_err : QM_ECLOSED;
}
qm_session_state qm_session_state_of(const qm_session *s) {
  return s->state;
}
size_t qm_session_stream_count(const qm_session *s) {
  return s->nstreams;
}
int qm_session_is_active(const qm_session *s) {
  return s->state == QM_SESS_HANDSHAKING || s->state == QM_SESS_ESTABLISHED;
}
uint64_t qm_session_dropped(const qm_session *s) {
  return s->server ? 0 : s->own_ep.rx_dropped;
}

static qm_policy_state policy_state(const qm_session *s) {
  return s->state == QM_SESS_HANDSHAKING   ? QM_POLICY_HANDSHAKING
         : s->state == QM_SESS_ESTABLISHED ? QM_POLICY_ESTABLISHED
                                           : QM_POLICY_GONE;
}

int qm_session_can_take(const qm_session *s) {
  return qm_policy_can_take(policy_state(s), s->suspect, s->npending,
                            s->state == QM_SESS_ESTABLISHED
                                ? ngtcp2_conn_get_streams_bidi_left(s->conn)
                                : 0);
}

/* ---- stream lists ---- */

static void streams_changed(qm_session *s, size_t before);

static void link_stream(qm_session *s, qm_stream *st) {
  size_t before = s->nstreams;
  st->sess = s;
  st->last_sess_id = s->id;
  st->prev = NULL;
  st->next = s->streams;
  if (s->streams)
    s->streams->prev = st;
  s->streams = st;
  s->nstreams++;
  streams_changed(s, before);
}

static void unlink_stream(qm_session *s, qm_stream *st) {
  if (st->prev)
    st->prev->next = st->next;
  else
    s->streams = st->next;
  if (st->next)
    st->next->prev = st->prev;
  st->prev = st->next = NULL;
  s->nstreams--;
  streams_changed(s, s->nstreams + 1);
}

static void wq_remove(qm_session *s, qm_stream *st) {
  qm_stream **pp = &s->wq_head, *prev = NULL;
  if (!st->in_wq)
    return;
  while (*pp && *pp != st) {
    prev = *pp;
    pp = &(*pp)->wnext;
  }
  if (*pp) {
    *pp = st->wnext;
    if (s->wq_tail == st)
      s->wq_tail = prev;
  }
  st->wnext = NULL;
  st->in_wq = 0;
}

static void wq_push(qm_session *s, qm_stream *st) {
  if (st->in_wq)
    return;
  st->in_wq = 1;
  st->wnext = NULL;
  if (s->wq_tail)
    s->wq_tail->wnext = st;
  else
    s->wq_head = st;
  s->wq_tail = st;
}

static qm_stream *wq_pop(qm_session *s) {
  qm_stream *st = s->wq_head;
  if (!st)
    return NULL;
  s->wq_head = st->wnext;
  if (!s->wq_head)
    s->wq_tail = NULL;
  st->wnext = NULL;
  st->in_wq = 0;
  return st;
}

void qm_session_stream_event(qm_session *s, qm_stream *st, unsigned ev) {
  if (st->events == 0) {
    st->enext = s->ev_head;
    s->ev_head = st;
  }
  st->events |= ev;
  session_schedule(s);
}

static void ev_remove(qm_session *s, qm_stream *st) {
  qm_stream **pp = &s->ev_head;
  if (!st->events)
    return;
  while (*pp && *pp != st)
    pp = &(*pp)->enext;
  if (*pp)
    *pp = st->enext;
  st->enext = NULL;
  st->events = 0;
}

void qm_session_stream_wants_write(qm_session *s, qm_stream *st) {
  if (st->id >= 0 && !st->wire_closed)
    wq_push(s, st);
  session_schedule(s);
}

void qm_session_stream_consumed(qm_session *s, qm_stream *st, size_t n) {
  if (n && s->conn && st->id >= 0 && !st->wire_closed) {
    ngtcp2_conn_extend_max_stream_offset(s->conn, st->id, n);
    ngtcp2_conn_extend_max_offset(s->conn, n);
  }
  if (n && s->conn && st->id >= 0 && st->wire_closed)
    ngtcp2_conn_extend_max_offset(s->conn, n);
  if (st->fin_rcvd && st->r_buffered == 0 && !st->fin_delivered) {
    st->fin_delivered = 1;
    if (st->cbs.on_recv_fin)
      st->cbs.on_recv_fin(st, st->ud);
  }
  if (st->wire_closed && qm_stream_recv_done(st))
    qm_session_stream_event(s, st, QM_SEV_CLOSE);
  session_schedule(s);
}

/* What one stream may hold unacknowledged: its own buffer, or its share of
 * twice the congestion window when that is more, so that a stream can fill
 * a long fat path and keep it full through loss recovery; never more than
 * max_window. A session's streams together hold at most about
 * max(nstreams x base, 2 x cwnd). */
size_t qm_session_send_limit(const qm_session *s, size_t base) {
  ngtcp2_conn_info ci;
  uint64_t lim;
  if (!s->conn || s->state != QM_SESS_ESTABLISHED)
    return base;
  ngtcp2_conn_get_conn_info(s->conn, &ci);
  lim = QM_MIN(2 * ci.cwnd, s->max_window) / (s->nstreams ? s->nstreams : 1);
  return lim > base ? (size_t)lim : base;
}

/* ---- going dead ---- */

static void session_set_dead(qm_session *s, int err) {
  if (s->state == QM_SESS_DEAD)
    return;
  if (!s->close_err)
    s->close_err = err;
  if (s->state == QM_SESS_HANDSHAKING)
    s->died_handshaking = 1;
  s->state = QM_SESS_DEAD;
  ev_timer_stop(s->io->loop, &s->timer);
  ev_timer_stop(s->io->loop, &s->idle_timer);
  ev_timer_stop(s->io->loop, &s->health_timer);
  session_schedule(s);
}

static void write_close(qm_session *s, const ngtcp2_ccerr *e) {
  ngtcp2_pkt_info pi;
  uint8_t *slot;
  ngtcp2_ssize n;

  if (!s->conn || ngtcp2_conn_in_closing_period(s->conn) ||
      ngtcp2_conn_in_draining_period(s->conn))
    return;
  slot = qm_endpoint_slot(s->ep);
  if (!slot) {
    qm_endpoint_flush(s->ep);
    if (!(slot = qm_endpoint_slot(s->ep)))
      return;
  }
  n = ngtcp2_conn_write_connection_close(
      s->conn, &s->ps.path, &pi, slot,
      QM_MIN(qm_endpoint_max_quic(s->ep), QM_MAX_QUIC_DATAGRAM), e,
      qm_now_ns());
  if (n > 0) {
    qm_endpoint_commit(s->ep, (size_t)n, (struct sockaddr *)&s->remote,
                       s->remotelen);
    qm_endpoint_flush(s->ep);
  }
}

/* A fatal ngtcp2 error: tell the peer and go dead. */
static void session_fail(qm_session *s, int liberr) {
  ngtcp2_ccerr e;
  int err = QM_EQUIC;

  if (liberr == NGTCP2_ERR_CRYPTO) {
    ngtcp2_ccerr_set_tls_alert(&e, ngtcp2_conn_get_tls_alert(s->conn), NULL, 0);
    err = QM_ETLS;
  } else {
    ngtcp2_ccerr_set_liberr(&e, liberr, NULL, 0);
  }
  if (s->state != QM_SESS_DEAD) {
    QM_WARN("session", "session %llu: closing on error: %s",
            (unsigned long long)s->id, ngtcp2_strerror(liberr));
    write_close(s, &e);
  }
  session_set_dead(s, err);
}

static void session_write(qm_session *s);

void qm_session_close(qm_session *s) {
  ngtcp2_ccerr e;
  if (s->state == QM_SESS_DEAD)
    return;
  /* Flush what is due first (ACKs of the peer's FINs above all), so
   * streams that finished both ways end cleanly on the peer too. */
  if (!s->blocked)
    session_write(s);
  if (s->state == QM_SESS_DEAD)
    return;
  ngtcp2_ccerr_set_application_error(&e, 0, NULL, 0);
  write_close(s, &e);
  session_set_dead(s, QM_ECLOSED);
}

/* ---- client pool helpers: keep-alive, idle close, dead paths ---- */

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_session *s = w->data;
  (void)loop;
  (void)revents;
  QM_DEBUG("session", "session %llu: idle with no stream, closing",
           (unsigned long long)s->id);
  qm_session_close(s);
}

/* Keep-alive only while the session carries streams; the idle timer only
 * while it carries none. */
static void streams_changed(qm_session *s, size_t before) {
  qm_policy_timers t;
  if (s->server || !s->conn || s->state == QM_SESS_DEAD ||
      (before > 0) == (s->nstreams > 0))
    return;
  t = qm_policy_on_streams(s->nstreams, s->keepalive_ms, s->session_idle_ms);
  ngtcp2_conn_set_keep_alive_timeout(s->conn,
                                     t.keepalive_ms * NGTCP2_MILLISECONDS);
  ev_timer_stop(s->io->loop, &s->idle_timer);
  if (t.idle_close_ms) {
    ev_timer_set(&s->idle_timer, (double)t.idle_close_ms / 1000., 0.);
    ev_timer_start(s->io->loop, &s->idle_timer);
  }
  /* the path is watched only while connections depend on it */
  if (s->nstreams > 0)
    ev_timer_again(s->io->loop, &s->health_timer);
  else
    ev_timer_stop(s->io->loop, &s->health_timer);
}

/* Move the streams that never heard from the peer and had nothing
 * acknowledged to another session: on a dead path (e.g. a restarted
 * server) they would otherwise fail; nothing of theirs reached the peer's
 * application. */
static void retry_unanswered(qm_session *s) {
  qm_stream *st, *next, *moved = NULL;

  if (s->server || !s->owner.on_requeue)
    return;
  for (st = s->streams; st; st = next) {
    qm_stream *g;
    next = st->next;
    if (st->ghost || st->id < 0 || st->closed || st->wire_closed ||
        !qm_policy_can_retry(st->s_acked, st->r_total, st->fin_rcvd,
                             (st->events & QM_SEV_RESET) != 0,
                             s->last_rx > st->open_ts))
      continue;
    if (!(g = qm_stream_split_for_retry(st)))
      continue;
    wq_remove(s, st);
    ev_remove(s, st);
    unlink_stream(s, st);
    st->sess = NULL;
    link_stream(s, g);
    ngtcp2_conn_set_stream_user_data(s->conn, g->id, g);
    ngtcp2_conn_shutdown_stream(s->conn, 0, g->id, 0);
    st->wnext = moved; /* requeue after the walk */
    moved = st;
  }
  while ((st = moved)) {
    moved = st->wnext;
    st->wnext = NULL;
    QM_DEBUG("session", "session %llu: moving an unanswered stream away",
             (unsigned long long)s->id);
    s->owner.on_requeue(s, st, 0, s->owner.ud);
  }
}

/* Probe timeouts in a row: ngtcp2 1.x no longer reports its PTO count, so
 * it is the number of whole PTOs the peer has been silent while it owes an
 * acknowledgement. */
static size_t probe_timeouts(const qm_session *s, const ngtcp2_conn_info *cs,
                             ngtcp2_tstamp now) {
  ngtcp2_tstamp from = QM_MAX(s->last_rx, s->owed_since);
  ngtcp2_duration pto = ngtcp2_conn_get_pto(s->conn);
  if (cs->bytes_in_flight == 0 || !s->owed_since || now <= from || !pto)
    return 0;
  return (size_t)((now - from) / pto);
}

/* Dead-path detection (policy.h): the peer owes an acknowledgement and has
 * been silent too long -> the session takes no new stream and moves the
 * streams it never heard about; still silent 8 s later -> closed, so open
 * connections fail instead of hanging until the idle timeout. */
static void check_health(qm_session *s) {
  ngtcp2_conn_info cs;
  qm_health_facts f;
  ngtcp2_tstamp now = qm_now_ns();
  if (s->state != QM_SESS_ESTABLISHED)
    return;
  ngtcp2_conn_get_conn_info(s->conn, &cs);
  f.state = policy_state(s);
  f.bytes_in_flight = cs.bytes_in_flight;
  {
    /* silence counts from when the peer started to owe us an answer */
    ngtcp2_tstamp from = QM_MAX(s->last_rx, s->owed_since);
    f.silence = now > from ? now - from : 0;
  }
  f.pto = ngtcp2_conn_get_pto(s->conn);
  f.pto_count = probe_timeouts(s, &cs, now);
  f.suspect = s->suspect;
  f.suspect_since = s->suspect_since;
  f.now = now;
  switch (qm_policy_health(&f)) {
  case QM_HEALTH_SUSPECT:
    s->suspect = 1;
    s->suspect_since = now;
    QM_INFO("session",
            "session %llu: no answer for %.1f s, taking it out of the pool",
            (unsigned long long)s->id, (double)f.silence / 1e9);
    retry_unanswered(s);
    break;
  case QM_HEALTH_DEAD:
    QM_INFO("session", "session %llu: path dead, closing",
            (unsigned long long)s->id);
    session_set_dead(s, QM_ETIMEDOUT);
    break;
  case QM_HEALTH_RECOVER:
    s->suspect = 0;
    QM_INFO("session", "session %llu: path answers again",
            (unsigned long long)s->id);
    break;
  case QM_HEALTH_OK:
    break;
  }
}

#define QM_HEALTH_INTERVAL 0.25 /* seconds */

static void health_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_session *s = w->data;
  (void)loop;
  (void)revents;
  check_health(s);
}

/* ---- timer ---- */

static void session_write(qm_session *s);

static void arm_timer(qm_session *s) {
  ngtcp2_tstamp exp, now;
  double t;
  if (s->state == QM_SESS_DEAD || !s->conn)
    return;
  exp = ngtcp2_conn_get_expiry(s->conn);
  now = qm_now_ns();
  t = exp > now ? (double)(exp - now) / 1e9 : 1e-9;
  ev_timer_stop(s->io->loop, &s->timer);
  ev_timer_set(&s->timer, t, 0.);
  ev_timer_start(s->io->loop, &s->timer);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_session *s = w->data;
  int rv;
  (void)loop;
  (void)revents;
  rv = ngtcp2_conn_handle_expiry(s->conn, qm_now_ns());
  if (rv != 0) {
    /* Idle close is silent, as in quic-go (SPEC §1.5). */
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
      QM_DEBUG("session", "session %llu: %s", (unsigned long long)s->id,
               rv == NGTCP2_ERR_IDLE_CLOSE ? "idle timeout"
                                           : "handshake timeout");
      session_set_dead(s, QM_ETIMEDOUT);
    } else {
      session_fail(s, rv);
    }
    return;
  }
  check_health(s);
  if (s->state == QM_SESS_DEAD)
    return;
  session_write(s);
}

/* ---- writing ---- */

static void session_write(qm_session *s) {
  ngtcp2_vec vec[QM_MAX_VEC];
  ngtcp2_pkt_info pi;
  ngtcp2_tstamp ts = qm_now_ns();
  size_t maxlen, burst = 0, quantum = SIZE_MAX;
  int wrote = 0, paced;

  if (s->state == QM_SESS_DEAD || !s->conn)
    return;
  if (ngtcp2_conn_in_closing_period(s->conn) ||
      ngtcp2_conn_in_draining_period(s->conn))
    return;
  maxlen = QM_MIN(qm_endpoint_max_quic(s->ep), QM_MAX_QUIC_DATAGRAM);
  /* Pacing from the default 333 ms initial RTT holds the handshake back by
   * a PTO; pace once the handshake is done (SPEC §13 item 5). Then at most
   * one send quantum (64 KiB with cubic) goes out at once, and the timer
   * (ngtcp2_conn_get_expiry includes the pacing time) sends the next: a
   * whole congestion window in one burst overflows the receive buffer of
   * a peer with default socket buffers (v2ray: ~208 KiB), and every such
   * loss halves the window. */
  paced = ngtcp2_conn_get_handshake_completed(s->conn);
  if (paced)
    quantum = ngtcp2_conn_get_send_quantum(s->conn);

  for (;;) {
    qm_stream *st = s->wq_head;
    size_t nvec = 0, total = 0;
    ngtcp2_ssize ndatalen = -1, nwrite;
    uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
    int64_t sid = -1;
    uint8_t *slot = qm_endpoint_slot(s->ep);

    if (!slot) {
      if (qm_endpoint_flush(s->ep) != 0) {
        s->blocked = 1;
        break;
      }
      slot = qm_endpoint_slot(s->ep);
      if (!slot)
        break;
    }
    if (st) {
      sid = st->id;
      nvec = qm_stream_unsent(st, vec, QM_MAX_VEC, &total);
      if (st->fin_wanted && !st->fin_sent && st->s_sent + total == st->s_end)
        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    nwrite = ngtcp2_conn_writev_stream(s->conn, &s->ps.path, &pi, slot, maxlen,
                                       &ndatalen, flags, sid, vec, nvec, ts);
    if (st && ndatalen >= 0) {
      st->announce = 0;
      qm_stream_mark_sent(st, (size_t)ndatalen);
      if ((flags & NGTCP2_WRITE_STREAM_FLAG_FIN) && (size_t)ndatalen == total)
        st->fin_sent = 1;
      /* Round robin in bursts: a stream keeps the turn for up to
       * QM_BURST bytes, so the receiver gets fewer, larger pieces per
       * stream (fewer writes to its TCP sockets) and streams still share. */
      st->burst += (size_t)ndatalen;
      if (!qm_stream_has_unsent(st)) {
        st->burst = 0;
        wq_pop(s);
      } else if (st->burst >= QM_BURST) {
        st->burst = 0;
        wq_pop(s);
        wq_push(s, st);
      }
    }
    if (nwrite < 0) {
      if (nwrite == NGTCP2_ERR_WRITE_MORE)
        continue;
      if (nwrite == NGTCP2_ERR_STREAM_DATA_BLOCKED ||
          nwrite == NGTCP2_ERR_STREAM_SHUT_WR ||
          nwrite == NGTCP2_ERR_STREAM_NOT_FOUND) {
        /* flow control: extend_max_stream_data puts it back */
        if (st && st == s->wq_head)
          wq_pop(s);
        continue;
      }
      session_fail(s, (int)nwrite);
      return;
    }
    if (nwrite == 0) {
      /* congestion- or pacing-limited, or nothing to send */
      if (st && ndatalen < 0 && st == s->wq_head && !qm_stream_has_unsent(st))
        wq_pop(s);
      break;
    }
    qm_endpoint_commit(s->ep, (size_t)nwrite, (struct sockaddr *)&s->remote,
                       s->remotelen);
    s->tx++;
    wrote = 1;
    burst += (size_t)nwrite;
    if (burst >= quantum)
      break;
  }
  if (wrote && qm_endpoint_flush(s->ep) != 0)
    s->blocked = 1;
  if (wrote && !s->owed_since) {
    ngtcp2_conn_info cs;
    ngtcp2_conn_get_conn_info(s->conn, &cs);
    if (cs.bytes_in_flight > 0)
      s->owed_since = ts;
  }
  if (paced)
    ngtcp2_conn_update_pkt_tx_time(s->conn, ts);
  arm_timer(s);
}

void qm_session_writable(qm_session *s) {
  if (s->blocked) {
    s->blocked = 0;
    session_schedule(s);
  }
}

/* ---- the deferred task: app callbacks, resets, writes, death ---- */

static void deliver_close(qm_stream *st, int err) {
  if (st->closed)
    return;
  st->closed = 1;
  if (st->cbs.on_close)
    st->cbs.on_close(st, err, st->ud);
}

static void open_pending(qm_session *s);

/* Why a stream still attached ends with its session: a stream that already
 * finished both ways (FIN sent and received, all read) ends cleanly when the
 * session closes without an error; only its last ACK was missing. */
static int end_error(const qm_session *s, const qm_stream *st, int err) {
  if (st->close_err)
    return st->close_err;
  if (st->fin_sent && st->fin_rcvd && qm_stream_recv_done(st) &&
      err == QM_ECLOSED && s->last_error.error_code == 0)
    return 0;
  return err;
}

static void session_finish(qm_session *s) {
  qm_stream *st;
  int err = s->close_err ? s->close_err : QM_ECLOSED;

  /* Streams waiting for an id: if the handshake failed, the owner may try
   * the next address; otherwise they fail with the session. */
  while ((st = s->pending_head)) {
    s->pending_head = st->wnext;
    st->wnext = NULL;
    st->in_wq = 0;
    s->npending--;
    ev_remove(s, st);
    unlink_stream(s, st);
    st->sess = NULL;
    if (s->died_handshaking && s->owner.on_requeue && !st->close_err) {
      s->owner.on_requeue(s, st, 1, s->owner.ud);
      continue;
    }
    deliver_close(st, err);
    qm_stream_destroy(st);
  }
  s->pending_tail = NULL;
  while ((st = s->streams)) {
    unlink_stream(s, st);
    st->sess = NULL;
    deliver_close(st, end_error(s, st, err));
    qm_stream_destroy(st);
  }
  s->ev_head = NULL;
  s->wq_head = s->wq_tail = NULL;
  if (!s->dead_notified) {
    s->dead_notified = 1;
    if (s->owner.on_dead)
      s->owner.on_dead(s, s->owner.ud); /* frees s */
  }
}

static void task_run(qm_task *t) {
  qm_session *s = (qm_session *)((char *)t - offsetof(qm_session, task));
  qm_stream *st;

  if (s->state == QM_SESS_DEAD) {
    session_finish(s);
    return;
  }
  /* events */
  while ((st = s->ev_head)) {
    unsigned ev = st->events;
    s->ev_head = st->enext;
    st->enext = NULL;
    st->events = 0;
    if ((ev & QM_SEV_RESET) && !st->closed) {
      if (st->id >= 0 && !st->wire_closed) {
        ngtcp2_conn_shutdown_stream(s->conn, 0, st->id, st->reset_code);
        st->close_err = QM_ERESET;
        wq_remove(s, st);
        /* stream_close from ngtcp2 finishes it */
      } else {
        st->close_err = QM_ERESET;
        ev |= QM_SEV_CLOSE;
      }
    }
    if ((ev & QM_SEV_OPEN) && !st->closed && !st->open_notified) {
      st->open_notified = 1;
      if (st->cbs.on_open)
        st->cbs.on_open(st, st->ud);
    }
    if ((ev & QM_SEV_READ) && !st->closed)
      qm_stream_resume_recv(st);
    if ((ev & QM_SEV_SEND_READY) && !st->closed && st->cbs.on_send_ready)
      st->cbs.on_send_ready(st, st->ud);
    if ((ev & QM_SEV_CLOSE) && !st->closed && (st->wire_closed || st->id < 0) &&
        (qm_stream_recv_done(st) || st->close_err)) {
      if (st->in_wq)
        wq_remove(s, st);
      ev_remove(s, st); /* events it re-queued while handling this batch */
      unlink_stream(s, st);
      deliver_close(st, st->close_err);
      st->sess = NULL;
      qm_stream_destroy(st);
    }
    if (s->state == QM_SESS_DEAD) {
      session_finish(s);
      return;
    }
  }
  if (!s->blocked)
    session_write(s);
  if (s->state == QM_SESS_DEAD)
    session_finish(s);
}

/* ---- ngtcp2 callbacks ---- */

static void rand_cb(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *c) {
  (void)c;
  qm_random(dest, destlen);
}

static int get_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                          size_t cidlen, void *ud) {
  qm_session *s = ud;
  (void)conn;
  qm_random(cid->data, cidlen);
  cid->datalen = cidlen;
  qm_random(token, NGTCP2_STATELESS_RESET_TOKENLEN);
  if (s->owner.add_cid &&
      s->owner.add_cid(s, cid->data, cid->datalen, s->owner.ud) != 0)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static int remove_cid_cb(ngtcp2_conn *conn, const ngtcp2_cid *cid, void *ud) {
  qm_session *s = ud;
  (void)conn;
  if (s->owner.remove_cid)
    s->owner.remove_cid(s, cid->data, cid->datalen, s->owner.ud);
  return 0;
}

static int handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
  qm_session *s = ud;
  (void)conn;
  if (s->state == QM_SESS_HANDSHAKING)
    s->state = QM_SESS_ESTABLISHED;
  QM_DEBUG("session", "session %llu: handshake done",
           (unsigned long long)s->id);
  if (!s->server)
    open_pending(s);
  return 0;
}

static int extend_max_local_streams_bidi_cb(ngtcp2_conn *conn,
                                            uint64_t max_streams, void *ud) {
  qm_session *s = ud;
  (void)conn;
  (void)max_streams;
  if (s->state == QM_SESS_ESTABLISHED)
    open_pending(s);
  return 0;
}

static int stream_open_cb(ngtcp2_conn *conn, int64_t stream_id, void *ud) {
  qm_session *s = ud;
  qm_stream *st;

  if (!s->server || !ngtcp2_is_bidi_stream(stream_id))
    return 0;
  st = qm_stream_new(s->stream_limit_bytes);
  if (!st)
    return NGTCP2_ERR_CALLBACK_FAILURE;
  st->id = stream_id;
  st->opened = 1;
  link_stream(s, st);
  ngtcp2_conn_set_stream_user_data(conn, stream_id, st);
  if (s->owner.on_stream)
    s->owner.on_stream(s, st, s->owner.ud);
  return 0;
}

static int recv_stream_data_cb(ngtcp2_conn *conn, uint32_t flags,
                               int64_t stream_id, uint64_t offset,
                               const uint8_t *data, size_t datalen, void *ud,
                               void *sud) {
  qm_session *s = ud;
  qm_stream *st = sud;
  size_t n;
  (void)offset;

  if (!st) {
    /* a stream we do not track (unidirectional): consume and ignore */
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, datalen);
    ngtcp2_conn_extend_max_offset(conn, datalen);
    return 0;
  }
  st->r_total += datalen;
  n = 0;
  if (st->closed || st->ghost) {
    n = datalen; /* the application is gone: discard */
  } else if (datalen) {
    /* Batched: delivered from the task, once per loop iteration. */
    if (qm_stream_buffer(st, data, datalen) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
    qm_session_stream_event(s, st, QM_SEV_READ);
  }
  if (n) {
    ngtcp2_conn_extend_max_stream_offset(conn, stream_id, n);
    ngtcp2_conn_extend_max_offset(conn, n);
  }
  if (flags & NGTCP2_STREAM_DATA_FLAG_FIN) {
    st->fin_rcvd = 1;
    if (st->r_buffered == 0 && !st->fin_delivered && !st->closed &&
        !st->ghost) {
      st->fin_delivered = 1;
      if (st->cbs.on_recv_fin)
        st->cbs.on_recv_fin(st, st->ud);
    }
  }
  return 0;
}

static int acked_stream_data_offset_cb(ngtcp2_conn *conn, int64_t stream_id,
                                       uint64_t offset, uint64_t datalen,
                                       void *ud, void *sud) {
  qm_stream *st = sud;
  (void)conn;
  (void)stream_id;
  (void)ud;
  if (st)
    qm_stream_acked(st, offset, datalen);
  return 0;
}

static int stream_close_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                           uint64_t app_error_code, void *ud, void *sud) {
  qm_session *s = ud;
  qm_stream *st = sud;
  (void)conn;

  /* Give the credit back at once, so the peer can reuse this session
   * (quic-go waits for both directions; so does this callback). */
  if (s->server && ngtcp2_is_bidi_stream(stream_id))
    ngtcp2_conn_extend_max_streams_bidi(s->conn, 1);
  if (!st)
    return 0;
  st->wire_closed = 1;
  if ((flags & NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) &&
      (!st->fin_rcvd || !st->fin_sent) && !st->close_err)
    st->close_err = QM_ERESET;
  if (st->in_wq)
    wq_remove(s, st);
  (void)app_error_code;
  qm_session_stream_event(s, st, QM_SEV_CLOSE);
  return 0;
}

static int stream_reset_cb(ngtcp2_conn *conn, int64_t stream_id,
                           uint64_t final_size, uint64_t app_error_code,
                           void *ud, void *sud) {
  qm_session *s = ud;
  qm_stream *st = sud;
  (void)final_size;
  (void)app_error_code;
  if (!st)
    return 0;
  st->close_err = QM_ERESET;
  /* The peer aborted its side: abort ours too, so the stream closes. */
  ngtcp2_conn_shutdown_stream(conn, 0, stream_id, 0);
  qm_session_stream_event(s, st, QM_SEV_CLOSE);
  return 0;
}

static int stream_stop_sending_cb(ngtcp2_conn *conn, int64_t stream_id,
                                  uint64_t app_error_code, void *ud,
                                  void *sud) {
  qm_stream *st = sud;
  (void)ud;
  (void)app_error_code;
  if (!st)
    return 0;
  st->close_err = QM_ERESET;
  ngtcp2_conn_shutdown_stream(conn, 0, stream_id, 0);
  return 0;
}

static int extend_max_stream_data_cb(ngtcp2_conn *conn, int64_t stream_id,
                                     uint64_t max_data, void *ud, void *sud) {
  qm_session *s = ud;
  qm_stream *st = sud;
  (void)conn;
  (void)stream_id;
  (void)max_data;
  if (st && qm_stream_has_unsent(st))
    wq_push(s, st);
  return 0;
}

static ngtcp2_conn *get_conn_cb(ngtcp2_crypto_conn_ref *ref) {
  qm_session *s = ref->user_data;
  return s->conn;
}

void qm__session_crypto_callbacks(ngtcp2_callbacks *cb, int server) {
  memset(cb, 0, sizeof(*cb));
  if (server) {
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  } else {
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
  }
  cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  cb->encrypt = ngtcp2_crypto_encrypt_cb;
  cb->decrypt = ngtcp2_crypto_decrypt_cb;
  cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb->update_key = ngtcp2_crypto_update_key_cb;
  cb->delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
  cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
}

static void fill_callbacks(ngtcp2_callbacks *cb, int server) {
  qm__session_crypto_callbacks(cb, server);
  cb->rand = rand_cb;
  cb->get_new_connection_id = get_new_cid_cb;
  cb->remove_connection_id = remove_cid_cb;
  cb->handshake_completed = handshake_completed_cb;
  cb->extend_max_local_streams_bidi = extend_max_local_streams_bidi_cb;
  cb->stream_open = stream_open_cb;
  cb->recv_stream_data = recv_stream_data_cb;
  cb->acked_stream_data_offset = acked_stream_data_offset_cb;
  cb->stream_close = stream_close_cb;
  cb->stream_reset = stream_reset_cb;
  cb->stream_stop_sending = stream_stop_sending_cb;
  cb->extend_max_stream_data = extend_max_stream_data_cb;
}

static ngtcp2_cc_algo cc_algo(const char *name) {
  if (name && !strcasecmp(name, "reno"))
    return NGTCP2_CC_ALGO_RENO;
  /* "bbr2": ngtcp2 1.x's BBR is the former BBRv2 (kept as a name so that
   * configs written for 0.12 still load) */
  if (name && (!strcasecmp(name, "bbr") || !strcasecmp(name, "bbr2")))
    return NGTCP2_CC_ALGO_BBR;
  return NGTCP2_CC_ALGO_CUBIC;
}

static const char *cc_names[] = {"cubic", "reno", "bbr", "bbr2"};

int qm_cc_parse(const char *name) {
  size_t i;
  for (i = 0; name && i < QM_ARRAY_LEN(cc_names); i++)
    if (!strcasecmp(name, cc_names[i]))
      return 0;
  return QM_EINVAL;
}

const char *qm__cc_static(const char *name) {
  size_t i;
  for (i = 0; name && i < QM_ARRAY_LEN(cc_names); i++)
    if (!strcasecmp(name, cc_names[i]))
      return cc_names[i];
  return cc_names[0];
}

/* A stream's initial receive window: its send buffer. */
static uint64_t stream_window(const qm_settings *s) {
  return s->stream_buffer ? s->stream_buffer : QM_DEFAULT_STREAM_BUFFER;
}

/* The largest receive window of a session, and of any one stream. */
static uint64_t max_window(const qm_settings *s) {
  return QM_MAX(s->conn_window ? s->conn_window : QM_DEFAULT_MAX_WINDOW,
                stream_window(s));
}

static void fill_settings(ngtcp2_settings *st, ngtcp2_transport_params *p,
                          const qm_settings *s, const qm_endpoint *ep,
                          int server) {
  size_t overhead = qm_codec_overhead(&ep->codec);
  uint64_t idle =
      s->idle_timeout_ms ? s->idle_timeout_ms : (server ? 45000 : 30000);

  ngtcp2_settings_default(st);
  st->initial_ts = qm_now_ns();
  st->rand_ctx.native_handle = NULL;
  st->handshake_timeout =
      (s->handshake_timeout_ms ? s->handshake_timeout_ms : 8000) *
      NGTCP2_MILLISECONDS;
  /* Never exceed quic-go's 1452-byte buffer once wrapped fits a 1500 MTU
   * (SPEC §3.3, §13 item 11). */
  st->max_tx_udp_payload_size = QM_MAX_QUIC_DATAGRAM - overhead;
  /* Receive windows start small and ngtcp2 doubles one whenever its reader
   * consumed it within two round trips, up to the path's bandwidth-delay
   * product at most max_window: a slow reader never makes it grow, so what
   * a session buffers stays below max_window (tests/unit/test_flowctl.c:
   * this tuning is free of 0.12's stale-limit bug). */
  st->max_window = max_window(s);
  st->max_stream_window = max_window(s);
  st->cc_algo = cc_algo(s->cc);

  ngtcp2_transport_params_default(p);
  p->initial_max_stream_data_bidi_local = stream_window(s);
  p->initial_max_stream_data_bidi_remote =
      p->initial_max_stream_data_bidi_local;
  p->initial_max_stream_data_uni = 0;
  p->initial_max_data = QM_MIN(max_window(s), 8 * stream_window(s));
  p->initial_max_streams_bidi = server ? s->max_streams_bidi : 0;
  p->initial_max_streams_uni = 0;
  p->max_idle_timeout = idle * NGTCP2_MILLISECONDS;
  p->max_udp_payload_size = QM_MAX_QUIC_DATAGRAM;
  p->active_connection_id_limit = 4;
  p->disable_active_migration = 1;
}

void qm__session_settings(ngtcp2_settings *st, ngtcp2_transport_params *p,
                          const qm_settings *s, const qm_endpoint *ep,
                          int server) {
  fill_settings(st, p, s, ep, server);
}

static int session_alloc(qm_session **out, qm_io *io, qm_tls_ctx *tls,
                         const qm_settings *s, const struct sockaddr *peer,
                         socklen_t peerlen, const qm_session_owner *owner,
                         int server) {
  qm_session *x = calloc(1, sizeof(*x));
  if (!x)
    return QM_ENOMEM;
  x->id = qm__next_session_id();
  x->server = server;
  x->io = io;
  x->tls = tls;
  x->owner = *owner;
  x->stream_limit_bytes = s->stream_buffer;
  x->max_window = max_window(s);
  x->keepalive_ms = s->keepalive_ms;
  x->session_idle_ms = s->session_idle_ms;
  ev_timer_init(&x->idle_timer, idle_cb, 0., 0.);
  x->idle_timer.data = x;
  ev_timer_init(&x->health_timer, health_cb, 0., QM_HEALTH_INTERVAL);
  x->last_rx = qm_now_ns();
  x->health_timer.data = x;
  memcpy(&x->remote, peer, peerlen);
  x->remotelen = peerlen;
  x->task.run = task_run;
  x->conn_ref.get_conn = get_conn_cb;
  x->conn_ref.user_data = x;
  ev_timer_init(&x->timer, timer_cb, 0., 0.);
  x->timer.data = x;
  *out = x;
  return 0;
}

static void client_ep_recv(qm_endpoint *ep, const struct sockaddr *from,
                           socklen_t fromlen, uint8_t *quic, size_t len,
                           void *ud) {
  (void)ep;
  qm_session_recv(ud, from, fromlen, quic, len);
}

static void client_ep_writable(qm_endpoint *ep, void *ud) {
  (void)ep;
  qm_session_writable(ud);
}

/* ICMP port unreachable while handshaking: nobody listens there, so fail
 * now and let the dialer try the next address instead of waiting 8 s. */
static void client_ep_refused(qm_endpoint *ep, void *ud) {
  qm_session *s = ud;
  (void)ep;
  if (s->state == QM_SESS_HANDSHAKING) {
    QM_DEBUG("session", "session %llu: port unreachable",
             (unsigned long long)s->id);
    session_set_dead(s, QM_EREFUSED);
  }
}

int qm_session_client_new(qm_session **out, qm_io *io, qm_tls_ctx *tls,
                          const qm_settings *s, const struct sockaddr *peer,
                          socklen_t peerlen, const qm_session_owner *owner,
                          char *err, size_t errlen) {
  qm_session *x;
  ngtcp2_callbacks cb;
  ngtcp2_settings st;
  ngtcp2_transport_params p;
  ngtcp2_cid dcid, scid;
  int rv;

  if ((rv = session_alloc(&x, io, tls, s, peer, peerlen, owner, 0)) != 0)
    return rv;
  x->ep = &x->own_ep;
  rv = qm_endpoint_open(x->ep, io, peer->sa_family, NULL, 0, peer, peerlen, s,
                        client_ep_recv, client_ep_writable, x, err, errlen);
  if (rv != 0) {
    free(x);
    return rv;
  }
  x->ep->on_refused = client_ep_refused;
  /* DCID of 8..20 random bytes like quic-go; ≥ 8 is required (SPEC §13). */
  dcid.datalen = 16;
  qm_random(dcid.data, dcid.datalen);
  scid.datalen = QM_SCID_LEN;
  qm_random(scid.data, scid.datalen);
  ngtcp2_path_storage_init(&x->ps, (struct sockaddr *)&x->ep->local,
                           x->ep->locallen, peer, peerlen, NULL);
  fill_callbacks(&cb, 0);
  fill_settings(&st, &p, s, x->ep, 0);
  rv = ngtcp2_conn_client_new(&x->conn, &dcid, &scid, &x->ps.path,
                              NGTCP2_PROTO_VER_V1, &cb, &st, &p, NULL, x);
  if (rv != 0) {
    snprintf(err, errlen, "ngtcp2: %s", ngtcp2_strerror(rv));
    qm_session_free(x);
    return QM_EQUIC;
  }
  if (qm_tls_session_new(tls, &x->tls_sess, &x->conn_ref) != 0) {
    snprintf(err, errlen, "TLS session setup failed");
    qm_session_free(x);
    return QM_ETLS;
  }
  ngtcp2_conn_set_tls_native_handle(x->conn, x->tls_sess);
  QM_DEBUG("session", "session %llu: client, new UDP socket",
           (unsigned long long)x->id);
  session_schedule(x); /* first flight goes out before the loop blocks */
  *out = x;
  return 0;
}

int qm_session_server_new(qm_session **out, qm_io *io, qm_endpoint *ep,
                          qm_tls_ctx *tls, const qm_settings *s,
                          const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                          const struct sockaddr *from, socklen_t fromlen,
                          const qm_session_owner *owner) {
  qm_session *x;
  ngtcp2_callbacks cb;
  ngtcp2_settings st;
  ngtcp2_transport_params p;
  ngtcp2_cid scid;
  int rv;

  if ((rv = session_alloc(&x, io, tls, s, from, fromlen, owner, 1)) != 0)
    return rv;
  x->ep = ep;
  scid.datalen = QM_SCID_LEN;
  qm_random(scid.data, scid.datalen);
  ngtcp2_path_storage_init(&x->ps, (struct sockaddr *)&ep->local, ep->locallen,
                           from, fromlen, NULL);
  fill_callbacks(&cb, 1);
  fill_settings(&st, &p, s, ep, 1);
  st.token = hd->token;
  st.tokenlen = hd->tokenlen;
  if (odcid)
    st.token_type = NGTCP2_TOKEN_TYPE_RETRY;
  if (odcid) { /* after Retry */
    p.original_dcid = *odcid;
    p.original_dcid_present = 1;
    p.retry_scid = hd->dcid;
    p.retry_scid_present = 1;
  } else {
    p.original_dcid = hd->dcid;
    p.original_dcid_present = 1;
  }
  p.stateless_reset_token_present = 1;
  qm_random(p.stateless_reset_token, sizeof(p.stateless_reset_token));
  rv = ngtcp2_conn_server_new(&x->conn, &hd->scid, &scid, &x->ps.path,
                              hd->version, &cb, &st, &p, NULL, x);
  if (rv != 0) {
    free(x);
    return QM_EQUIC;
  }
  if (qm_tls_session_new(tls, &x->tls_sess, &x->conn_ref) != 0) {
    ngtcp2_conn_del(x->conn);
    free(x);
    return QM_ETLS;
  }
  ngtcp2_conn_set_tls_native_handle(x->conn, x->tls_sess);
  if (owner->add_cid &&
      (owner->add_cid(x, scid.data, scid.datalen, owner->ud) != 0 ||
       owner->add_cid(x, hd->dcid.data, hd->dcid.datalen, owner->ud) != 0)) {
    qm_session_free(x);
    return QM_ENOMEM;
  }
  *out = x;
  return 0;
}

void qm_session_recv(qm_session *s, const struct sockaddr *from,
                     socklen_t fromlen, const uint8_t *pkt, size_t len) {
  ngtcp2_path path;
  ngtcp2_pkt_info pi = {0};
  int rv;

  if (s->state == QM_SESS_DEAD)
    return;
  s->rx++;
  path = s->ps.path;
  path.remote.addr = (struct sockaddr *)from;
  path.remote.addrlen = fromlen;
  rv = ngtcp2_conn_read_pkt(s->conn, &path, &pi, pkt, len, qm_now_ns());
  if (rv != 0) {
    switch (rv) {
    case NGTCP2_ERR_DRAINING:
      /* the peer closed (CONNECTION_CLOSE or stateless reset) */
      s->last_error = *ngtcp2_conn_get_ccerr(s->conn);
      QM_DEBUG("session", "session %llu: closed by peer (code 0x%llx)",
               (unsigned long long)s->id,
               (unsigned long long)s->last_error.error_code);
      session_set_dead(s, s->state == QM_SESS_HANDSHAKING ? QM_EREFUSED
                                                          : QM_ECLOSED);
      return;
    case NGTCP2_ERR_DROP_CONN:
      session_set_dead(s, QM_ECLOSED);
      return;
    case NGTCP2_ERR_RECV_VERSION_NEGOTIATION:
      session_set_dead(s, QM_EREFUSED);
      return;
    case NGTCP2_ERR_DISCARD_PKT:
      return;
    default:
      /* ngtcp2: any other error ends the connection (CONNECTION_CLOSE) */
      session_fail(s, rv);
      return;
    }
  }
  s->last_rx = qm_now_ns();
  {
    ngtcp2_conn_info cs;
    ngtcp2_conn_get_conn_info(s->conn, &cs);
    if (cs.bytes_in_flight == 0)
      s->owed_since = 0; /* everything acknowledged */
  }
  if (s->suspect)
    check_health(s);
  session_schedule(s);
}

/* ---- client streams ---- */

static int try_open(qm_session *s, qm_stream *st) {
  int64_t id;
  int rv = ngtcp2_conn_open_bidi_stream(s->conn, &id, st);
  if (rv != 0)
    return rv;
  st->id = id;
  st->opened = 1;
  st->open_ts = qm_now_ns();
  /* Send a STREAM frame at once, even an empty one, so the server learns of
   * the stream and connects its target: protocols where the server speaks
   * first (SMTP, SSH banners, MySQL) need it. */
  st->announce = 1;
  qm_session_stream_event(s, st, QM_SEV_OPEN);
  wq_push(s, st);
  return 0;
}

static void open_pending(qm_session *s) {
  while (s->pending_head) {
    qm_stream *st = s->pending_head;
    if (ngtcp2_conn_get_streams_bidi_left(s->conn) == 0)
      break;
    s->pending_head = st->wnext;
    if (!s->pending_head)
      s->pending_tail = NULL;
    st->wnext = NULL;
    st->in_wq = 0;
    s->npending--;
    if (try_open(s, st) != 0) {
      st->close_err = QM_EQUIC;
      qm_session_stream_event(s, st, QM_SEV_CLOSE);
    }
  }
  /* Overflow: the server allowed fewer streams than we queued. */
  while (s->pending_head && s->owner.on_requeue) {
    qm_stream *st = s->pending_head;
    s->pending_head = st->wnext;
    if (!s->pending_head)
      s->pending_tail = NULL;
    st->wnext = NULL;
    s->npending--;
    unlink_stream(s, st);
    st->sess = NULL;
    s->owner.on_requeue(s, st, 0, s->owner.ud);
  }
  session_schedule(s);
}

void qm_session_attach(qm_session *s, qm_stream *st) {
  link_stream(s, st);
  if (s->state == QM_SESS_ESTABLISHED &&
      ngtcp2_conn_get_streams_bidi_left(s->conn) > 0 && try_open(s, st) == 0) {
    session_schedule(s);
    return;
  }
  st->wnext = NULL;
  if (s->pending_tail)
    s->pending_tail->wnext = st;
  else
    s->pending_head = st;
  s->pending_tail = st;
  s->npending++;
}

void qm_session_free(qm_session *s) {
  qm_stream *st;
  if (!s)
    return;
  ev_timer_stop(s->io->loop, &s->timer);
  ev_timer_stop(s->io->loop, &s->idle_timer);
  ev_timer_stop(s->io->loop, &s->health_timer);
  if (s->task.queued) {
    /* unlink from the io task list */
    qm_task **pp = &s->io->tasks;
    while (*pp && *pp != &s->task)
      pp = &(*pp)->next;
    if (*pp)
      *pp = s->task.next;
  }
  /* Streams still attached end here; their owners hear of it. */
  while ((st = s->streams)) {
    unlink_stream(s, st);
    st->sess = NULL;
    deliver_close(st, end_error(s, st, QM_ECLOSED));
    qm_stream_destroy(st);
  }
  if (s->conn) {
    if (s->owner.remove_cid) {
      ngtcp2_cid cids[16];
      size_t i, n = ngtcp2_conn_get_scid(s->conn, NULL);
      if (n <= QM_ARRAY_LEN(cids)) {
        n = ngtcp2_conn_get_scid(s->conn, cids);
        for (i = 0; i < n; i++)
          s->owner.remove_cid(s, cids[i].data, cids[i].datalen, s->owner.ud);
      }
    }
    ngtcp2_conn_del(s->conn);
  }
  if (s->tls_sess)
    gnutls_deinit(s->tls_sess);
  if (!s->server)
    qm_endpoint_close(&s->own_ep);
  free(s);
}

static const char *state_names[] = {"handshaking", "established", "closing",
                                    "closed"};

void qm_session_get_info(const qm_session *s, qm_session_info *in) {
  ngtcp2_conn_info cs;
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;

  memset(in, 0, sizeof(*in));
  in->id = s->id;
  in->state = state_names[s->state];
  in->suspect = s->suspect;
  if (s->remote.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&s->remote;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
    snprintf(in->peer, sizeof(in->peer), "%s:%u", host, port);
  } else {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s->remote;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
    snprintf(in->peer, sizeof(in->peer), "[%s]:%u", host, port);
  }
  if (s->ep->local.ss_family == AF_INET)
    in->local_port =
        ntohs(((const struct sockaddr_in *)&s->ep->local)->sin_port);
  else
    in->local_port =
        ntohs(((const struct sockaddr_in6 *)&s->ep->local)->sin6_port);
  in->streams = s->nstreams - s->npending;
  in->streams_pending = s->npending;
  if (s->conn) {
    ngtcp2_conn_get_conn_info(s->conn, &cs);
    in->smoothed_rtt_us = cs.smoothed_rtt / 1000;
    in->min_rtt_us = cs.min_rtt == UINT64_MAX ? 0 : cs.min_rtt / 1000;
    in->cwnd = cs.cwnd;
    in->bytes_in_flight = cs.bytes_in_flight;
    in->pto_count = probe_timeouts(s, &cs, qm_now_ns());
  }
  in->datagrams_rx = s->rx;
  in->datagrams_tx = s->tx;
  in->datagrams_dropped = qm_session_dropped(s);
}
