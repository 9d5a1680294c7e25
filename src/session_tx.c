/* A session's stream lists, its send path and timer, the deferred task
 * (application callbacks, resets, writes, death) and opening client
 * streams. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "hide.h"
#include "session_int.h"

/* ---- stream lists ---- */

void qm_sess_link_stream(qm_session *s, qm_stream *st) {
  size_t before = qm_sess_busy(s);
  st->sess = s;
  st->last_sess_id = s->id;
  st->prev = NULL;
  st->next = s->streams;
  if (s->streams)
    s->streams->prev = st;
  s->streams = st;
  s->nstreams++;
  qm_sess_streams_changed(s, before);
}

void qm_sess_unlink_stream(qm_session *s, qm_stream *st) {
  if (st->prev)
    st->prev->next = st->next;
  else
    s->streams = st->next;
  if (st->next)
    st->next->prev = st->prev;
  st->prev = st->next = NULL;
  s->nstreams--;
  qm_sess_streams_changed(s, qm_sess_busy(s) + 1);
}

void qm_sess_wq_remove(qm_session *s, qm_stream *st) {
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

void qm_sess_wq_push(qm_session *s, qm_stream *st) {
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
  qm_sess_schedule(s);
}

void qm_sess_ev_remove(qm_session *s, qm_stream *st) {
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
    qm_sess_wq_push(s, st);
  qm_sess_schedule(s);
}

void qm_session_stream_consumed(qm_session *s, qm_stream *st, size_t n) {
  if (n && s->conn && st->id >= 0) {
    if (!st->wire_closed)
      ngtcp2_conn_extend_max_stream_offset(s->conn, st->id, n);
    ngtcp2_conn_extend_max_offset(s->conn, n);
  }
  if (st->fin_rcvd && st->r_buffered == 0 && !st->fin_delivered) {
    st->fin_delivered = 1;
    if (st->cbs.on_recv_fin)
      st->cbs.on_recv_fin(st, st->ud);
  }
  if (st->wire_closed && qm_stream_recv_done(st))
    qm_session_stream_event(s, st, QM_SEV_CLOSE);
  qm_sess_schedule(s);
}

/* What one stream may hold unacknowledged: its own buffer, or its share of
 * four times the largest congestion window the session has had, when that
 * is more. A lost packet holds everything sent after it in the buffer until
 * its retransmission is acknowledged (1.5 round trips and more), and BBR's
 * window dips in its probing cycles, so a stream that is to fill a long fat
 * path needs several windows of room; never more than max_window. A
 * session's streams together hold at most about
 * max(nstreams x base, 4 x cwnd_max). */
size_t qm_session_send_limit(const qm_session *s, size_t base) {
  uint64_t lim =
      QM_MIN(4 * s->cwnd_max, s->max_window) / (s->nstreams ? s->nstreams : 1);
  return lim > base ? (size_t)lim : base;
}

/* ---- timer ---- */

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

void qm_sess_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
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
      qm_sess_set_dead(s, QM_ETIMEDOUT);
    } else {
      qm_sess_fail(s, rv);
    }
    return;
  }
  qm_sess_sync_path(s); /* a path validation may have failed */
  qm_sess_check_health(s);
  if (s->state == QM_SESS_DEAD)
    return;
  qm_sess_write(s);
}

/* ---- writing ---- */

/* One DATAGRAM frame from the head of the queue into the packet being
 * built in slot: 1 to go on (the frame went in and the packet has room, or
 * the frame was dropped), 0 to stop (congestion or pacing), 2 when a
 * packet of *nwrite bytes is ready, -1 after a fatal error. */
static int write_dgram(qm_session *s, uint8_t *slot, size_t maxlen,
                       ngtcp2_pkt_info *pi, ngtcp2_tstamp ts,
                       ngtcp2_ssize *nwrite) {
  qm_dq *e = s->dq_head;
  ngtcp2_vec v;
  int accepted = 0;

  v.base = e->data;
  v.len = e->len;
  *nwrite = ngtcp2_conn_writev_datagram(
      s->conn, &s->ps.path, pi, slot, maxlen, &accepted,
      NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &v, 1, ts);
  if (accepted)
    free(qm_sess_dq_pop(s));
  if (*nwrite == NGTCP2_ERR_WRITE_MORE)
    return 1;
  if (*nwrite == NGTCP2_ERR_INVALID_ARGUMENT ||
      (*nwrite == 0 && !accepted && e == s->dq_head &&
       e->len + QM_DG_FRAME_OVERHEAD >
           ngtcp2_conn_get_path_max_tx_udp_payload_size(s->conn))) {
    /* larger than the peer takes, or than the path carries now (it
     * shrank): drop it, never stall the queue */
    free(qm_sess_dq_pop(s));
    s->dgram_dropped++;
    return 1;
  }
  if (*nwrite < 0) {
    qm_sess_fail(s, (int)*nwrite);
    return -1;
  }
  return *nwrite == 0 ? 0 : 2;
}

void qm_sess_send_on_path(qm_session *s, qm_endpoint *ep, uint8_t *slot,
                          size_t n, const ngtcp2_path *path) {
  qm_endpoint *to = qm_sess_ep_for(s, &path->local);
  if (to != ep) {
    /* Rare: a PATH_CHALLENGE or probe on a path whose local port is not
     * the current one (a client hopping between the ports of a range). */
    uint8_t *other = qm_endpoint_slot(to);
    if (!other && qm_endpoint_flush(to) == 0)
      other = qm_endpoint_slot(to);
    if (!other)
      return; /* lost as on the wire: ngtcp2 probes again */
    memcpy(other, slot, n);
    qm_endpoint_commit(to, n, path->remote.addr, path->remote.addrlen);
    qm_endpoint_flush(to);
    return;
  }
  qm_endpoint_commit(ep, n, path->remote.addr, path->remote.addrlen);
}

void qm_sess_write(qm_session *s) {
  ngtcp2_vec vec[QM_MAX_VEC];
  ngtcp2_pkt_info pi;
  ngtcp2_tstamp ts = qm_now_ns();
  size_t maxlen, burst = 0, quantum = SIZE_MAX;
  int wrote = 0, paced;
  unsigned first_flight = UINT_MAX;

  if (s->state == QM_SESS_DEAD || !s->conn)
    return;
  if (ngtcp2_conn_in_closing_period(s->conn) ||
      ngtcp2_conn_in_draining_period(s->conn))
    return;
  maxlen = QM_MIN(qm_endpoint_max_quic(s->ep), QM_MAX_QUIC_DATAGRAM);
  /* Pacing from the default 333 ms initial RTT holds the handshake back by
   * a PTO; pace once the handshake is done (SPEC §13 item 5). Then at most
   * one send quantum (64 KiB) goes out at once, and the timer
   * (ngtcp2_conn_get_expiry includes the pacing time) sends the next: a
   * whole congestion window in one burst overflows the receive buffer of
   * a peer with default socket buffers (v2ray: ~208 KiB), and every such
   * loss halves the window. */
  paced = ngtcp2_conn_get_handshake_completed(s->conn);
  if (paced)
    quantum = ngtcp2_conn_get_send_quantum(s->conn);
  if (s->hide && !s->hide_decoy_sent) {
    /* the hidden Initial (hide.h): the decoy first */
    s->hide_decoy_sent = 1;
    qm_hide_queue_decoy(s->ep, (struct sockaddr *)&s->remote, s->remotelen);
  }
  if (s->hide_reverse) {
    /* then the Initials of the flight, reversed below */
    s->hide_reverse = 0;
    first_flight = s->ep->tx_n;
  }

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
    /* 0-RTT, congestion window full (a probe timeout): no stream data.
     * Offered stream data makes ngtcp2 1.11 leave the Initial unpadded, to
     * pad the 0-RTT packet after it, which the window then does not let
     * out: a retransmitted Initial under 1200 bytes, which servers drop,
     * and the handshake never ends. Without data the Initial is padded. */
    if (st && s->early_offered &&
        !ngtcp2_conn_get_handshake_completed(s->conn) &&
        ngtcp2_conn_get_cwnd_left(s->conn) == 0)
      st = NULL;
    /* Datagrams and streams take turns, one frame each, so neither can
     * starve the other (both are congestion controlled). */
    if (s->dq_head && s->dgram_peer > 0 && (!st || s->dgram_turn)) {
      int r;
      s->dgram_turn = 0;
      r = write_dgram(s, slot, maxlen, &pi, ts, &nwrite);
      if (r < 0)
        return;
      if (r == 0)
        break;
      if (r == 1)
        continue;
      goto commit;
    }
    s->dgram_turn = 1;
    if (st) {
      sid = st->id;
      nvec = qm_stream_unsent(st, vec, QM_MAX_VEC, &total);
      if (st->fin_wanted && !st->fin_sent && st->s_sent + total == st->s_end)
        flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
    }
    nwrite = ngtcp2_conn_writev_stream(s->conn, &s->ps.path, &pi, slot, maxlen,
                                       &ndatalen, flags, sid, vec, nvec, ts);
    if (st && ndatalen >= 0) {
      if (s->early_offered && !ngtcp2_conn_get_handshake_completed(s->conn))
        s->early.bytes += (uint64_t)ndatalen; /* in 0-RTT packets */
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
        qm_sess_wq_push(s, st);
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
      qm_sess_fail(s, (int)nwrite);
      return;
    }
    if (nwrite == 0) {
      /* congestion- or pacing-limited, or nothing to send */
      if (st && ndatalen < 0 && st == s->wq_head && !qm_stream_has_unsent(st))
        wq_pop(s);
      break;
    }
  commit:
    qm_sess_send_on_path(s, s->ep, slot, (size_t)nwrite, &s->ps.path);
    s->tx++;
    wrote = 1;
    burst += (size_t)nwrite;
    if (burst >= quantum)
      break;
  }
  if (first_flight != UINT_MAX)
    qm_endpoint_reverse(s->ep, first_flight);
  if (wrote && qm_endpoint_flush(s->ep) != 0)
    s->blocked = 1;
  if (wrote) {
    ngtcp2_conn_info cs;
    ngtcp2_conn_get_conn_info(s->conn, &cs);
    if (!s->owed_since && cs.bytes_in_flight > 0)
      s->owed_since = ts;
    if (cs.cwnd > s->cwnd_max)
      s->cwnd_max = cs.cwnd;
  }
  if (paced)
    ngtcp2_conn_update_pkt_tx_time(s->conn, ts);
  arm_timer(s);
  /* last: a migration calls into ngtcp2 with a later timestamp than ts */
  qm_sess_check_path_error(s);
}

void qm_session_writable(qm_session *s) {
  if (s->blocked) {
    s->blocked = 0;
    qm_sess_schedule(s);
  }
}

/* ---- the deferred task: app callbacks, resets, writes, death ---- */

void qm_sess_deliver_close(qm_session *s, qm_stream *st, int err) {
  if (st->closed)
    return;
  st->closed = 1;
  if (st->opened) { /* streams that never got an id are the dialer's */
    s->streams_closed++;
    if (err == QM_ERESET)
      s->streams_reset++;
  }
  if (st->cbs.on_close)
    st->cbs.on_close(st, err, st->ud);
}

/* Why a stream still attached ends with its session: a stream that already
 * finished both ways (FIN sent and received, all read) ends cleanly when the
 * session closes without an error; only its last ACK was missing. */
int qm_sess_end_error(const qm_session *s, const qm_stream *st, int err) {
  if (st->close_err)
    return st->close_err;
  if (st->fin_sent && st->fin_rcvd && qm_stream_recv_done(st) &&
      err == QM_ECLOSED && s->last_error.error_code == 0)
    return 0;
  return err;
}

/* 0-RTT: the handshake failed after streams were opened in early data.
 * Those the server cannot have taken (nothing acknowledged, nothing heard
 * back) go to the owner like the streams still waiting for an id, so the
 * next address is tried. ngtcp2 is done with them: the session is dead. */
static void requeue_early_streams(qm_session *s) {
  qm_stream *st, *next;
  if (!s->early_offered || !s->died_handshaking || !s->owner.on_requeue)
    return;
  for (st = s->streams; st; st = next) {
    next = st->next;
    if (st->id < 0 || st->ghost || st->closed || st->close_err || st->s_acked ||
        st->r_total || st->fin_rcvd)
      continue;
    qm_sess_wq_remove(s, st);
    qm_sess_ev_remove(s, st);
    qm_sess_unlink_stream(s, st);
    st->sess = NULL;
    qm_stream_rewind(st);
    s->streams_opened--;
    s->owner.on_requeue(s, st, 1, s->owner.ud);
  }
}

static void session_finish(qm_session *s) {
  qm_stream *st;
  int err = s->close_err ? s->close_err : QM_ECLOSED;

  requeue_early_streams(s);
  /* Streams waiting for an id: if the handshake failed, the owner may try
   * the next address; otherwise they fail with the session. */
  while ((st = s->pending_head)) {
    s->pending_head = st->wnext;
    st->wnext = NULL;
    st->in_wq = 0;
    s->npending--;
    qm_sess_ev_remove(s, st);
    qm_sess_unlink_stream(s, st);
    st->sess = NULL;
    if (s->died_handshaking && s->owner.on_requeue && !st->close_err) {
      s->owner.on_requeue(s, st, 1, s->owner.ud);
      continue;
    }
    qm_sess_deliver_close(s, st, err);
    qm_stream_destroy(st);
  }
  s->pending_tail = NULL;
  while ((st = s->streams)) {
    qm_sess_unlink_stream(s, st);
    st->sess = NULL;
    qm_sess_deliver_close(s, st, qm_sess_end_error(s, st, err));
    qm_stream_destroy(st);
  }
  s->ev_head = NULL;
  s->wq_head = s->wq_tail = NULL;
  qm_sess_dgram_free(s);
  if (!s->dead_notified) {
    s->dead_notified = 1;
    if (s->owner.on_dead)
      s->owner.on_dead(s, s->owner.ud); /* frees s */
  }
}

void qm_sess_task_run(qm_task *t) {
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
        qm_sess_wq_remove(s, st);
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
        qm_sess_wq_remove(s, st);
      qm_sess_ev_remove(s,
                        st); /* events it re-queued while handling this batch */
      qm_sess_unlink_stream(s, st);
      qm_sess_deliver_close(s, st, st->close_err);
      st->sess = NULL;
      qm_stream_destroy(st);
    }
    if (s->state == QM_SESS_DEAD) {
      session_finish(s);
      return;
    }
  }
  if (!s->blocked)
    qm_sess_write(s);
  if (s->state == QM_SESS_DEAD)
    session_finish(s);
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
  s->streams_opened++;
  /* Send a STREAM frame at once, even an empty one, so the server learns of
   * the stream and connects its target: protocols where the server speaks
   * first (SMTP, SSH banners, MySQL) need it. Not in 0-RTT: if a Retry
   * takes back an empty frame and the first bytes (both at offset 0),
   * ngtcp2 1.11 cannot queue two frames of the same offset again (its
   * retransmission queue is keyed by offset) and leaves the Retry half
   * done, without its token; a stream that sent nothing in 0-RTT is
   * announced once the handshake is done (qm_sess_announce_early). */
  st->announce = s->state == QM_SESS_ESTABLISHED;
  qm_session_stream_event(s, st, QM_SEV_OPEN);
  if (qm_stream_has_unsent(st)) /* else ngtcp2 writes an empty frame */
    qm_sess_wq_push(s, st);
  return 0;
}

void qm_sess_open_pending(qm_session *s) {
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
    qm_sess_unlink_stream(s, st);
    st->sess = NULL;
    s->owner.on_requeue(s, st, 0, s->owner.ud);
  }
  qm_sess_schedule(s);
}

/* Streams opened in 0-RTT that the server did not read: ngtcp2 forgot them
 * (ngtcp2_conn_tls_early_data_rejected frees its stream state and starts
 * the stream ids over), so they go back, in their order, to the head of
 * the streams waiting for an id, with every byte unsent; the handshake
 * callback opens them again. Nothing was acknowledged: the server could
 * not decrypt them. A stream the application reset meanwhile just ends. */
void qm_sess_early_rejected(qm_session *s) {
  qm_stream *st, *back[64], **v = back;
  size_t n = 0, i, cap = QM_ARRAY_LEN(back);

  for (st = s->streams; st; st = st->next)
    if (st->id >= 0 && !st->ghost)
      n++;
  if (n > cap && !(v = malloc(n * sizeof(*v)))) {
    v = back; /* out of memory: those beyond the first 64 fail */
  } else if (n > cap) {
    cap = n;
  }
  n = 0;
  for (st = s->streams; st; st = st->next) {
    if (st->id < 0 || st->ghost)
      continue;
    qm_sess_wq_remove(s, st);
    if (st->close_err || st->closed || n == cap || st->s_acked) {
      st->wire_closed = 1;
      if (!st->close_err)
        st->close_err = QM_ECLOSED;
      qm_session_stream_event(s, st, QM_SEV_CLOSE);
      continue;
    }
    v[n++] = st;
  }
  /* The list is newest first: sort by old stream id, then rewind. */
  for (i = 1; i < n; i++) {
    qm_stream *x = v[i];
    size_t j = i;
    for (; j > 0 && v[j - 1]->id > x->id; j--)
      v[j] = v[j - 1];
    v[j] = x;
  }
  for (i = n; i-- > 0;) {
    st = v[i];
    qm_stream_rewind(st);
    s->streams_opened--;
    st->wnext = s->pending_head;
    s->pending_head = st;
    if (!s->pending_tail)
      s->pending_tail = st;
    s->npending++;
  }
  if (v != back)
    free(v);
  QM_INFO("session",
          "session %llu: the server refused the early data; %zu streams "
          "go again after the handshake",
          (unsigned long long)s->id, n);
}

void qm_sess_announce_early(qm_session *s) {
  qm_stream *st;
  for (st = s->streams; st; st = st->next)
    if (st->id >= 0 && !st->ghost && !st->wire_closed && st->s_sent == 0 &&
        !st->fin_sent) {
      st->announce = 1;
      qm_sess_wq_push(s, st);
    }
}

void qm_session_attach(qm_session *s, qm_stream *st) {
  qm_sess_link_stream(s, st);
  /* 0-RTT: with the server's remembered limits, streams open (and send)
   * before the handshake is done. */
  if ((s->state == QM_SESS_ESTABLISHED ||
       (s->state == QM_SESS_HANDSHAKING && s->early_offered &&
        !ngtcp2_conn_get_tls_early_data_rejected(s->conn))) &&
      ngtcp2_conn_get_streams_bidi_left(s->conn) > 0 && try_open(s, st) == 0) {
    qm_sess_schedule(s);
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
