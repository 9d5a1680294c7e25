/* Client pool helpers of a session: keep-alive and idle close follow its
 * stream count; dead-path detection moves unanswered streams away and
 * closes a session whose peer stays silent (policy.h). */
#include "session_int.h"

/* ---- client pool helpers: keep-alive, idle close, dead paths ---- */

void qm_sess_idle_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_session *s = w->data;
  (void)loop;
  (void)revents;
  QM_DEBUG("session", "session %llu: idle with no stream, closing",
           (unsigned long long)s->id);
  qm_session_close(s);
}

/* Keep-alive only while the session carries streams; the idle timer only
 * while it carries none. */
void qm_sess_streams_changed(qm_session *s, size_t before) {
  qm_policy_timers t;
  if (s->server || !s->conn || s->state == QM_SESS_DEAD ||
      (before > 0) == (qm_sess_busy(s) > 0))
    return;
  t = qm_policy_on_streams(qm_sess_busy(s), s->keepalive_ms,
                           s->session_idle_ms);
  ngtcp2_conn_set_keep_alive_timeout(s->conn,
                                     t.keepalive_ms * NGTCP2_MILLISECONDS);
  ev_timer_stop(s->io->loop, &s->idle_timer);
  if (t.idle_close_ms) {
    ev_timer_set(&s->idle_timer, (double)t.idle_close_ms / 1000., 0.);
    ev_timer_start(s->io->loop, &s->idle_timer);
  }
  /* the path is watched only while connections depend on it */
  if (qm_sess_busy(s) > 0)
    ev_timer_again(s->io->loop, &s->health_timer);
  else
    ev_timer_stop(s->io->loop, &s->health_timer);
}

/* Move the streams that never heard from the peer and had nothing
 * acknowledged to another session: on a dead path (e.g. a restarted
 * server) they would otherwise fail; nothing of theirs reached the peer's
 * application. */
void qm_sess_retry_unanswered(qm_session *s) {
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
    qm_sess_wq_remove(s, st);
    qm_sess_ev_remove(s, st);
    qm_sess_unlink_stream(s, st);
    st->sess = NULL;
    qm_sess_link_stream(s, g);
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
size_t qm_sess_probe_timeouts(const qm_session *s, const ngtcp2_conn_info *cs,
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
void qm_sess_check_health(qm_session *s) {
  ngtcp2_conn_info cs;
  qm_health_facts f;
  ngtcp2_tstamp now = qm_now_ns();
  if (s->state != QM_SESS_ESTABLISHED)
    return;
  ngtcp2_conn_get_conn_info(s->conn, &cs);
  f.state = qm_sess_policy_state(s);
  f.bytes_in_flight = cs.bytes_in_flight;
  {
    /* silence counts from when the peer started to owe us an answer */
    ngtcp2_tstamp from = QM_MAX(s->last_rx, s->owed_since);
    f.silence = now > from ? now - from : 0;
  }
  f.pto = ngtcp2_conn_get_pto(s->conn);
  f.pto_count = qm_sess_probe_timeouts(s, &cs, now);
  f.suspect = s->suspect;
  f.suspect_since = s->suspect_since;
  f.now = now;
  switch (qm_policy_health(&f)) {
  case QM_HEALTH_SUSPECT:
    s->suspect = 1;
    s->suspect_since = now;
    /* Perhaps only this socket's path died (a new network, a NAT that
     * forgot us): the session moves to a fresh socket and keeps its
     * streams; the streams the peer cannot have seen go to another
     * session at once all the same (they lose nothing by it). If the new
     * path does not answer either, the rule below closes the session. */
    if (s->mig_ep || qm_sess_migrate(s, QM_MIG_DEAD, 0) == 0)
      QM_INFO("session",
              "session %llu: no answer for %.1f s, trying a new UDP socket",
              (unsigned long long)s->id, (double)f.silence / 1e9);
    else
      QM_INFO("session",
              "session %llu: no answer for %.1f s, taking it out of the pool",
              (unsigned long long)s->id, (double)f.silence / 1e9);
    qm_sess_retry_unanswered(s);
    break;
  case QM_HEALTH_DEAD:
    QM_INFO("session", "session %llu: path dead, closing",
            (unsigned long long)s->id);
    s->path_dead = 1;
    qm_sess_set_dead(s, QM_ETIMEDOUT);
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

void qm_sess_health_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_session *s = w->data;
  (void)loop;
  (void)revents;
  qm_sess_check_health(s);
}
