/* One QUIC connection over ngtcp2 1.x + GnuTLS (SPEC §1, §2, §7, §13, §14):
 * create, receive, close, free, settings, info. The rest of the session is
 * in session_tx.c, session_cb.c and session_health.c (session_int.h). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qlog.h"
#include "session_int.h"
#include "ticket.h"

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
int qm_session_died_handshaking(const qm_session *s) {
  return s->died_handshaking;
}
int qm_session_is_active(const qm_session *s) {
  return s->state == QM_SESS_HANDSHAKING || s->state == QM_SESS_ESTABLISHED;
}
uint64_t qm_session_dropped(const qm_session *s) {
  return s->server ? 0 : qm_sess_eps_dropped(s);
}
int qm_session_wants_retry(const qm_session *s) {
  return s->want_retry;
}

void qm_session_add_early(const qm_session *s, qm_early_totals *t) {
  t->tickets += s->early.tickets;
  t->resumed += s->early.resumed;
  t->attempts += s->early.attempts;
  t->accepted += s->early.accepted;
  t->rejected += s->early.rejected;
  t->bytes += s->early.bytes;
}

void qm_session_add_totals(const qm_session *s, qm_totals *t, int gone) {
  t->streams_opened += s->streams_opened;
  t->streams_closed += s->streams_closed;
  t->streams_reset += s->streams_reset;
  if (!s->server)
    qm_sess_eps_totals(s, t);
  if (gone && !s->want_retry)
    t->sessions_closed[s->state == QM_SESS_DEAD ? s->close_cause
                                                : QM_CLOSE_CLEAN]++;
}

int qm_session_can_take(const qm_session *s) {
  return qm_policy_can_take(qm_sess_policy_state(s), s->suspect, s->npending,
                            s->state == QM_SESS_ESTABLISHED
                                ? ngtcp2_conn_get_streams_bidi_left(s->conn)
                                : 0);
}

/* ---- going dead ---- */

/* Why a session ended, for the metrics (qm_totals.sessions_closed). */
static int close_cause(const qm_session *s, int err) {
  switch (err) {
  case QM_ECLOSED:
    return QM_CLOSE_CLEAN;
  case QM_ETIMEDOUT:
    return s->path_dead                      ? QM_CLOSE_PATH_DEAD
           : s->state == QM_SESS_HANDSHAKING ? QM_CLOSE_HANDSHAKE_TIMEOUT
                                             : QM_CLOSE_IDLE_TIMEOUT;
  case QM_EREFUSED:
    return QM_CLOSE_REFUSED;
  case QM_ETLS:
    return QM_CLOSE_TLS;
  default:
    return QM_CLOSE_PROTOCOL;
  }
}

void qm_sess_set_dead(qm_session *s, int err) {
  if (s->state == QM_SESS_DEAD)
    return;
  if (!s->close_err)
    s->close_err = err;
  s->close_cause = close_cause(s, s->close_err);
  if (s->state == QM_SESS_HANDSHAKING)
    s->died_handshaking = 1;
  s->state = QM_SESS_DEAD;
  ev_timer_stop(s->io->loop, &s->timer);
  ev_timer_stop(s->io->loop, &s->idle_timer);
  ev_timer_stop(s->io->loop, &s->health_timer);
  qm_sess_schedule(s);
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
    qm_sess_send_on_path(s, s->ep, slot, (size_t)n, &s->ps.path);
    qm_endpoint_flush(s->ep);
  }
}

/* A fatal ngtcp2 error: tell the peer and go dead. */
void qm_sess_fail(qm_session *s, int liberr) {
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
  qm_sess_set_dead(s, err);
}

void qm_session_close(qm_session *s) {
  ngtcp2_ccerr e;
  if (s->state == QM_SESS_DEAD)
    return;
  /* Flush what is due first (ACKs of the peer's FINs above all), so
   * streams that finished both ways end cleanly on the peer too. */
  if (!s->blocked)
    qm_sess_write(s);
  if (s->state == QM_SESS_DEAD)
    return;
  ngtcp2_ccerr_set_application_error(&e, 0, NULL, 0);
  write_close(s, &e);
  qm_sess_set_dead(s, QM_ECLOSED);
}

/* BBR is the default: on long lossy paths (200 ms, 1 % random loss) it
 * fills 80 % of the bottleneck where cubic, which takes random loss for
 * congestion, stays below 5 % (bench/longhaul.py, bench/RESULTS.md). */
void qm_session_reset_token(uint8_t *token, const uint8_t *secret,
                            const uint8_t *cid, size_t cidlen) {
  ngtcp2_cid c;
  c.datalen = cidlen;
  memcpy(c.data, cid, cidlen);
  if (!secret || ngtcp2_crypto_generate_stateless_reset_token(
                     token, secret, QM_RESET_SECRET_LEN, &c) != 0)
    qm_random(token, NGTCP2_STATELESS_RESET_TOKENLEN);
}

static ngtcp2_cc_algo cc_algo(const char *name) {
  if (name && !strcasecmp(name, "reno"))
    return NGTCP2_CC_ALGO_RENO;
  if (name && !strcasecmp(name, "cubic"))
    return NGTCP2_CC_ALGO_CUBIC;
  return NGTCP2_CC_ALGO_BBR;
}

/* The first is the default. "bbr2" is accepted for configs written for
 * ngtcp2 0.12: 1.x's BBR is the former BBRv2. */
static const char *cc_names[] = {"bbr", "cubic", "reno", "bbr2"};

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

static uint64_t stream_buffer(const qm_settings *s) {
  return s->stream_buffer ? s->stream_buffer : QM_DEFAULT_STREAM_BUFFER;
}

/* The largest receive window of a session, and of any one stream. */
static uint64_t max_window(const qm_settings *s) {
  return QM_MAX(s->conn_window ? s->conn_window : QM_DEFAULT_MAX_WINDOW,
                stream_buffer(s));
}

/* Initial receive windows: a stream's is 4 stream buffers (4 MiB), a
 * session's 16 (16 MiB), at most max_window. ngtcp2 grows a window only
 * when its reader consumed it within two round trips, and under random
 * loss the reader waits for every retransmission, so a window that starts
 * near the path's bandwidth-delay product hardly grows: at 200 ms and 3 %
 * loss a stream window of 1 MiB held a 40 Mbit/s path to 38 %, 4 MiB let
 * it reach 67 % (bench/longhaul.py). Credit is not memory: a session
 * buffers only what its readers do not take, at most its window. */
static uint64_t stream_window(const qm_settings *s) {
  return QM_MIN(4 * stream_buffer(s), max_window(s));
}
static uint64_t session_window(const qm_settings *s) {
  return QM_MIN(16 * stream_buffer(s), max_window(s));
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
  /* ngtcp2 doubles a receive window whenever its reader consumed it within
   * two round trips, up to max_window: a slow reader never makes it grow,
   * so what a session buffers stays below max_window (tests/unit/
   * test_flowctl.c: this tuning is free of 0.12's stale-limit bug). */
  st->max_window = max_window(s);
  st->max_stream_window = max_window(s);
  st->cc_algo = cc_algo(s->cc);

  ngtcp2_transport_params_default(p);
  p->initial_max_stream_data_bidi_local = stream_window(s);
  p->initial_max_stream_data_bidi_remote =
      p->initial_max_stream_data_bidi_local;
  p->initial_max_stream_data_uni = 0;
  p->initial_max_data = session_window(s);
  p->initial_max_streams_bidi = server ? s->max_streams_bidi : 0;
  p->initial_max_streams_uni = 0;
  p->max_idle_timeout = idle * NGTCP2_MILLISECONDS;
  p->max_udp_payload_size = QM_MAX_QUIC_DATAGRAM;
  p->active_connection_id_limit = 4;
  /* Clients may move (NAT rebinding needs no permission, an active
   * migration or a hop to another port of the server's range does): a
   * server that announced 1 would drop their packets on a new local
   * port (ngtcp2 checks both ends' values). quic-go never migrates. */
  p->disable_active_migration = 0;
}

/* RFC 9221: only a tunnel with UDP flows on advertises DATAGRAM frames, so
 * a quicmux without them looks exactly like v2ray on the wire (quic-go
 * parses the parameter but never sends such frames unless enabled). */
static void advertise_datagrams(const qm_session *x,
                                ngtcp2_transport_params *p) {
  if (x->fctx)
    p->max_datagram_frame_size = 65535;
}

/* ngtcp2 calls this with the connection's user data, the session. */
static void qlog_write_cb(void *ud, uint32_t flags, const void *data,
                          size_t len) {
  qm_session *s = ud;
  if (s->qlog)
    qm_qlog_write(s->qlog, &s->qlog_bytes, flags, data, len);
}

/* With qlog_dir set, the session's qlog file opens before its ngtcp2
 * connection, which writes the qlog header when it is made. */
static void qlog_start(qm_session *x, ngtcp2_settings *st, const qm_settings *s,
                       const ngtcp2_cid *odcid) {
  if (!s->qlog_dir)
    return;
  x->qlog = qm_qlog_open(s->qlog_dir, s->qlog_max_files, x->server, odcid);
  if (x->qlog)
    st->qlog_write = qlog_write_cb;
}

static void qlog_close(qm_session *s) {
  if (s->qlog)
    fclose(s->qlog);
  s->qlog = NULL;
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
  if (owner->flows && owner->flows->enabled)
    x->fctx = owner->flows;
  x->stream_limit_bytes = s->stream_buffer;
  x->max_window = max_window(s);
  x->keepalive_ms = s->keepalive_ms;
  x->session_idle_ms = s->session_idle_ms;
  /* With packet encryption every datagram is opaque already. */
  x->hide = !server && s->hide_initial && s->security == QM_SEC_NONE;
  x->hide_reverse = x->hide;
  ev_timer_init(&x->idle_timer, qm_sess_idle_cb, 0., 0.);
  x->idle_timer.data = x;
  ev_timer_init(&x->health_timer, qm_sess_health_cb, 0., QM_HEALTH_INTERVAL);
  x->last_rx = qm_now_ns();
  x->health_timer.data = x;
  memcpy(&x->remote, peer, peerlen);
  x->remotelen = peerlen;
  x->task.run = qm_sess_task_run;
  x->conn_ref.get_conn = qm_sess_get_conn;
  x->conn_ref.user_data = x;
  ev_timer_init(&x->timer, qm_sess_timer_cb, 0., 0.);
  x->timer.data = x;
  *out = x;
  return 0;
}

/* 0-RTT, client: resume with the server's last ticket and take its 0-RTT
 * transport parameters, so streams can open and send before the handshake
 * (qm_session_attach). GnuTLS then sends early data if the ticket allows
 * it; if the server refuses it, handshake_completed_cb starts the streams
 * over. A ticket GnuTLS or ngtcp2 will not take is forgotten. */
static void client_resume(qm_session *x) {
  const uint8_t *ticket, *tp;
  size_t tlen, tplen;
  gnutls_handshake_set_hook_function(x->tls_sess, GNUTLS_HANDSHAKE_ANY,
                                     GNUTLS_HOOK_POST, qm_sess_ticket_hook);
  if (!qm_ticket_get(x->owner.tickets, x->owner.ticket_key, &ticket, &tlen, &tp,
                     &tplen))
    return;
  if (gnutls_session_set_data(x->tls_sess, ticket, tlen) != 0) {
    QM_INFO("session", "session %llu: stored ticket unusable, forgotten",
            (unsigned long long)x->id);
    qm_ticket_forget(x->owner.tickets, x->owner.ticket_key);
    return;
  }
  if (ngtcp2_conn_decode_and_set_0rtt_transport_params(x->conn, tp, tplen) !=
      0) {
    QM_INFO("session",
            "session %llu: stored 0-RTT transport parameters unusable",
            (unsigned long long)x->id);
    return;
  }
  x->early_offered = 1;
  x->early.attempts = 1;
}

int qm_session_client_new(qm_session **out, qm_io *io, qm_tls_ctx *tls,
                          const qm_settings *s, const struct sockaddr *peer,
                          socklen_t peerlen, uint16_t port_lo, uint16_t port_hi,
                          const qm_session_owner *owner, char *err,
                          size_t errlen) {
  qm_session *x;
  ngtcp2_callbacks cb;
  ngtcp2_settings st;
  ngtcp2_transport_params p;
  ngtcp2_cid dcid, scid;
  int rv;

  if ((rv = session_alloc(&x, io, tls, s, peer, peerlen, owner, 0)) != 0)
    return rv;
  x->settings = s;
  x->port_lo = port_lo;
  x->port_hi = port_hi;
  x->hop_interval_ms = s->hop_interval_ms;
  rv = qm_sess_eps_open(x, peer, peerlen, err, errlen);
  if (rv != 0) {
    free(x);
    return rv;
  }
  /* DCID of 8..20 random bytes like quic-go; ≥ 8 is required (SPEC §13). */
  dcid.datalen = 16;
  qm_random(dcid.data, dcid.datalen);
  scid.datalen = QM_SCID_LEN;
  qm_random(scid.data, scid.datalen);
  qm_sess_callbacks(&cb, 0);
  fill_settings(&st, &p, s, x->ep, 0);
  advertise_datagrams(x, &p);
  qlog_start(x, &st, s, &dcid);
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
  if (owner->tickets)
    client_resume(x);
  QM_DEBUG("session", "session %llu: client, new UDP socket%s",
           (unsigned long long)x->id,
           x->early_offered ? ", 0-RTT offered" : "");
  qm_sess_hop_start(x);
  qm_sess_schedule(x); /* first flight goes out before the loop blocks */
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
  x->cid_worker = s->worker_id;
  x->cid_workers = s->worker_count;
  scid.datalen = QM_SCID_LEN;
  qm__cid_make(scid.data, scid.datalen, x->cid_worker, x->cid_workers);
  ngtcp2_path_storage_init(&x->ps, (struct sockaddr *)&ep->local, ep->locallen,
                           from, fromlen, NULL);
  qm_sess_callbacks(&cb, 1);
  fill_settings(&st, &p, s, ep, 1);
  advertise_datagrams(x, &p);
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
  qm_session_reset_token(p.stateless_reset_token, owner->reset_secret,
                         scid.data, scid.datalen);
  qlog_start(x, &st, s, &p.original_dcid);
  rv = ngtcp2_conn_server_new(&x->conn, &hd->scid, &scid, &x->ps.path,
                              hd->version, &cb, &st, &p, NULL, x);
  if (rv != 0) {
    qlog_close(x);
    free(x);
    return QM_EQUIC;
  }
  if (qm_tls_session_new(tls, &x->tls_sess, &x->conn_ref) != 0) {
    ngtcp2_conn_del(x->conn);
    qlog_close(x);
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

qm_endpoint *qm_sess_ep_for(qm_session *s, const ngtcp2_addr *local) {
  qm_endpoint *ep = NULL;
  if (local->addrlen == s->ep->locallen &&
      memcmp(local->addr, &s->ep->local, local->addrlen) == 0)
    return s->ep; /* nearly always: the current path's */
  if (s->server && s->owner.endpoint_for)
    ep = s->owner.endpoint_for(s, local->addr, local->addrlen, s->owner.ud);
  else if (!s->server)
    ep = qm_sess_client_ep_for(s, local);
  return ep ? ep : s->ep;
}

/* ngtcp2 moves its current path itself (RFC 9000 §9.3): at once when a
 * non-probing packet arrives from a new address, then validates it, and
 * falls back to the old path when validation fails. The session follows:
 * s->remote names the peer in logs and stats, s->ep is the socket most of
 * the packets now go out from. */
void qm_sess_sync_path(qm_session *s) {
  const ngtcp2_path *p;
  char was[80], now[80];
  if (!s->conn)
    return;
  p = ngtcp2_conn_get_path(s->conn);
  if (p->remote.addrlen == s->remotelen &&
      memcmp(p->remote.addr, &s->remote, s->remotelen) == 0 &&
      qm_sess_ep_for(s, &p->local) == s->ep)
    return;
  qm_addr_str((struct sockaddr *)&s->remote, was, sizeof(was));
  qm_addr_str(p->remote.addr, now, sizeof(now));
  memcpy(&s->remote, p->remote.addr, p->remote.addrlen);
  s->remotelen = (socklen_t)p->remote.addrlen;
  if (s->server)
    s->ep = qm_sess_ep_for(s, &p->local);
  s->path_changes++;
  QM_INFO("session", "session %llu: peer moved from %s to %s",
          (unsigned long long)s->id, was, now);
}

void qm_session_recv(qm_session *s, qm_endpoint *ep,
                     const struct sockaddr *from, socklen_t fromlen,
                     const uint8_t *pkt, size_t len) {
  ngtcp2_path path;
  ngtcp2_pkt_info pi = {0};
  int rv;

  if (s->state == QM_SESS_DEAD)
    return;
  s->rx++;
  path.local.addr = (struct sockaddr *)&ep->local;
  path.local.addrlen = ep->locallen;
  path.user_data = NULL;
  path.remote.addr = (struct sockaddr *)from;
  path.remote.addrlen = fromlen;
  rv = ngtcp2_conn_read_pkt(s->conn, &path, &pi, pkt, len, qm_now_ns());
  if (rv != 0) {
    switch (rv) {
    case NGTCP2_ERR_DRAINING:
      /* the peer closed (CONNECTION_CLOSE or stateless reset) */
      s->last_error = *ngtcp2_conn_get_ccerr(s->conn);
      if (s->got_reset) {
        /* The server lost the session (a restart): streams it cannot
         * have seen go to a new session at once. */
        QM_INFO("session",
                "session %llu: stateless reset from the server, which no "
                "longer knows the session (restarted?)",
                (unsigned long long)s->id);
        s->suspect = 1; /* takes no stream from here on */
        qm_sess_retry_unanswered(s);
      }
      QM_DEBUG("session", "session %llu: closed by peer (code 0x%llx)",
               (unsigned long long)s->id,
               (unsigned long long)s->last_error.error_code);
      qm_sess_set_dead(s, s->state == QM_SESS_HANDSHAKING ? QM_EREFUSED
                                                          : QM_ECLOSED);
      return;
    case NGTCP2_ERR_DROP_CONN:
      qm_sess_set_dead(s, QM_ECLOSED);
      return;
    case NGTCP2_ERR_RECV_VERSION_NEGOTIATION:
      qm_sess_set_dead(s, QM_EREFUSED);
      return;
    case NGTCP2_ERR_DISCARD_PKT:
      return;
    case NGTCP2_ERR_RETRY:
      /* server: nothing goes to the client, the owner sends a Retry */
      s->want_retry = 1;
      qm_sess_set_dead(s, QM_EREFUSED);
      return;
    default:
      /* ngtcp2: any other error ends the connection (CONNECTION_CLOSE) */
      qm_sess_fail(s, rv);
      return;
    }
  }
  s->last_rx = qm_now_ns();
  qm_sess_sync_path(s);
  {
    ngtcp2_conn_info cs;
    ngtcp2_conn_get_conn_info(s->conn, &cs);
    if (cs.bytes_in_flight == 0)
      s->owed_since = 0; /* everything acknowledged */
  }
  if (s->suspect)
    qm_sess_check_health(s);
  qm_sess_schedule(s);
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
  qm_sess_dgram_free(s);
  /* Streams still attached end here; their owners hear of it. */
  while ((st = s->streams)) {
    qm_sess_unlink_stream(s, st);
    st->sess = NULL;
    qm_sess_deliver_close(s, st, qm_sess_end_error(s, st, QM_ECLOSED));
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
  qlog_close(s);
  if (s->tls_sess)
    gnutls_deinit(s->tls_sess);
  if (!s->server)
    qm_sess_eps_close(s);
  free(s);
}

static const char *state_names[] = {"handshaking", "established", "closing",
                                    "closed"};

void qm_session_get_info(const qm_session *s, qm_session_info *in) {
  ngtcp2_conn_info cs;

  memset(in, 0, sizeof(*in));
  in->id = s->id;
  in->state = state_names[s->state];
  in->suspect = s->suspect;
  qm_addr_str((const struct sockaddr *)&s->remote, in->peer, sizeof(in->peer));
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
    in->pto_count = qm_sess_probe_timeouts(s, &cs, qm_now_ns());
  }
  in->datagrams_rx = s->rx;
  in->datagrams_tx = s->tx;
  in->datagrams_dropped = qm_session_dropped(s);
  in->migrations = s->migrations;
  in->hops = s->hops;
}

void qm_session_path_counts(const qm_session *s, uint64_t *m, uint64_t *h) {
  *m += s->migrations;
  *h += s->hops;
}
