/*
 * The session's private parts, shared by its four files (none of this is
 * seen outside src/session*.c):
 *   session.c         lifecycle: create, receive, close, free, settings, info
 *   session_tx.c      the stream lists, the send path and its timer, the
 *                     deferred task, opening client streams
 *   session_cb.c      the ngtcp2 callbacks
 *   session_health.c  client pool helpers: keep-alive, idle close, dead paths
 *   session_path.c    client endpoints: migration to a new UDP socket
 *                     (network change, dead path, port hopping)
 */
#ifndef QM_SESSION_INT_H
#define QM_SESSION_INT_H

#include <stdio.h>

#include <ngtcp2/ngtcp2_crypto.h>

#include "internal.h"
#include "policy.h"
#include "session.h"

#define QM_MAX_VEC 16
#define QM_BURST (32 * 1024)
#define QM_HEALTH_INTERVAL 0.1 /* seconds: the silence rule's resolution */
#define QM_CLIENT_EPS 3        /* current, one being validated, one draining */

/* Why a client session moves to a new UDP socket (session_path.c). */
enum { QM_MIG_HOP = 1, QM_MIG_NETWORK, QM_MIG_DEAD };

/* What a DATAGRAM frame needs besides its payload in a 1-RTT packet: a
 * short header (1 + DCID up to 20 + packet number up to 4), the AEAD tag
 * (16) and the frame's type and length (3). */
#define QM_DG_FRAME_OVERHEAD 44

/* One DATAGRAM frame payload waiting to be sent (session_dgram.c). */
typedef struct qm_dq {
  struct qm_dq *next;
  size_t len;
  uint8_t data[];
} qm_dq;
typedef struct qm_reasm qm_reasm;

struct qm_session {
  uint64_t id;
  int server;
  qm_session_state state;
  qm_io *io;
  /* client: one of eps[]; server: the listener's endpoint of the current
   * path */
  qm_endpoint *ep;
  /* client: its own endpoints (fd < 0 when unused). Migrating opens one,
   * validates the path through it, then makes it current; the one before
   * stays open for a while to read what is still in flight (session_path.c) */
  qm_endpoint eps[QM_CLIENT_EPS];
  ngtcp2_tstamp ep_close_at[QM_CLIENT_EPS]; /* draining: close then */
  ev_timer drain_timer;
  const qm_settings *settings; /* client: the dialer's (outlives us) */
  qm_endpoint *mig_ep;         /* being validated, or NULL */
  int mig_reason;              /* QM_MIG_* of the migration under way */
  ngtcp2_tstamp mig_last_try;
  int mig_refused_logged;    /* the server does not follow migrations */
  uint16_t port_lo, port_hi; /* client: the server's port range (hopping) */
  uint64_t hop_interval_ms;
  ev_timer hop_timer;
  uint64_t hops, migrations, migrations_failed;
  qm_totals gone_eps; /* counts of endpoints already closed */
  uint64_t gone_dropped;
  qm_tls_ctx *tls;
  gnutls_session_t tls_sess;
  ngtcp2_conn *conn;
  ngtcp2_crypto_conn_ref conn_ref;
  struct sockaddr_storage remote; /* the peer on the current path */
  socklen_t remotelen;
  uint64_t path_changes; /* the peer moved (NAT rebinding, migration) */
  ngtcp2_path_storage ps;
  ev_timer timer;
  qm_task task;
  qm_session_owner owner;
  size_t stream_limit_bytes;
  uint64_t max_window; /* largest receive window (fill_settings) */
  uint64_t cwnd_max;   /* largest congestion window so far (send limit) */
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
  int got_reset;       /* client: a valid stateless reset arrived */
  /* for qm_totals (the owner adds them up) */
  uint64_t streams_opened, streams_closed, streams_reset;
  int close_cause; /* QM_CLOSE_*, set when the session goes dead */
  int path_dead;   /* session_health: the dead path ended it */
  /* qlog: the session's file (settings qlog_dir), NULL when off */
  FILE *qlog;
  uint64_t qlog_bytes;
  /* server workers: the ids this session issues name its worker */
  uint32_t cid_worker, cid_workers;
  /* client: the hidden Initial (hide.h): on; the decoy went out; the next
   * flight (the first, or the one after a Retry) goes out reversed */
  int hide, hide_decoy_sent, hide_reverse;
  int want_retry; /* server: see qm_session_wants_retry */
  /* UDP flows (session_dgram.c) */
  qm_flow_ctx *fctx; /* the owner's, NULL when flows are off */
  qm_flow *flows;    /* flows on this session */
  size_t nflows;
  int dgram_peer;           /* 1 the peer takes datagrams, -1 not, 0 unknown */
  int dgram_logged;         /* the refusal was logged */
  int flow_cap_logged;      /* the flow cap was logged */
  int dgram_turn;           /* the send loop alternates datagrams and streams */
  qm_dq *dq_head, *dq_tail; /* DATAGRAM frame payloads to send */
  size_t dq_bytes;
  qm_reasm *reasm[16]; /* datagrams arriving in pieces */
  size_t reasm_bytes;
  uint64_t dgram_malformed, dgram_dropped;
  /* 0-RTT: early_offered (client): a ticket and the server's 0-RTT
   * transport parameters were set, so streams open before the handshake */
  int early_offered;
  qm_early_totals early;
};

/* Streams and flows: a session that carries either is in use. */
static inline size_t qm_sess_busy(const qm_session *s) {
  return s->nstreams + s->nflows;
}

static inline void qm_sess_schedule(qm_session *s) {
  qm_io_defer(s->io, &s->task);
}

static inline qm_policy_state qm_sess_policy_state(const qm_session *s) {
  return s->state == QM_SESS_HANDSHAKING   ? QM_POLICY_HANDSHAKING
         : s->state == QM_SESS_ESTABLISHED ? QM_POLICY_ESTABLISHED
                                           : QM_POLICY_GONE;
}

/* session.c: a fatal ngtcp2 error (CONNECTION_CLOSE, then dead), and going
 * dead (the deferred task then ends the streams and tells the owner). */
void qm_sess_fail(qm_session *s, int liberr);
void qm_sess_set_dead(qm_session *s, int err);
/* The endpoint bound to local (server: one of the listener's; client: its
 * own), and following ngtcp2's current path: remote and ep after the peer
 * moved, or after ngtcp2 fell back because the new path failed. */
qm_endpoint *qm_sess_ep_for(qm_session *s, const ngtcp2_addr *local);
void qm_sess_sync_path(qm_session *s);
/* The n-byte packet ngtcp2 wrote into ep's send slot for path goes out from
 * the endpoint of path->local to path->remote (copied into that
 * endpoint's slot when it is not ep: a probe on another path). */
void qm_sess_send_on_path(qm_session *s, qm_endpoint *ep, uint8_t *slot,
                          size_t n, const ngtcp2_path *path);

/* session_tx.c: the stream list, the write queue and the event list; the
 * send path (qm_sess_write) and the ngtcp2 timer; the deferred task; the
 * streams still waiting for an id (client); how a stream ends. */
void qm_sess_deliver_close(qm_session *s, qm_stream *st, int err);
int qm_sess_end_error(const qm_session *s, const qm_stream *st, int err);
void qm_sess_ev_remove(qm_session *s, qm_stream *st);
void qm_sess_link_stream(qm_session *s, qm_stream *st);
void qm_sess_open_pending(qm_session *s);
void qm_sess_task_run(qm_task *t);
void qm_sess_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
void qm_sess_unlink_stream(qm_session *s, qm_stream *st);
/* Client: the server refused the early data; streams opened in 0-RTT start
 * over and wait for the handshake. */
void qm_sess_early_rejected(qm_session *s);
/* Client: the handshake is done; streams opened in 0-RTT that sent nothing
 * yet announce themselves now (try_open). */
void qm_sess_announce_early(qm_session *s);
void qm_sess_wq_push(qm_session *s, qm_stream *st);
void qm_sess_wq_remove(qm_session *s, qm_stream *st);
void qm_sess_write(qm_session *s);

/* session_cb.c: every ngtcp2 callback a session sets. */
void qm_sess_callbacks(ngtcp2_callbacks *cb, int server);
/* The TLS glue's way from a GnuTLS session to its ngtcp2 connection. */
ngtcp2_conn *qm_sess_get_conn(ngtcp2_crypto_conn_ref *ref);
/* Client with 0-RTT: keep each session ticket the server sends. */
int qm_sess_ticket_hook(gnutls_session_t tls, unsigned htype, unsigned when,
                        unsigned incoming, const gnutls_datum_t *msg);

/* session_health.c: timers that follow the stream count, dead-path checks,
 * and the probe timeouts in a row (ngtcp2 1.x does not report them). */
void qm_sess_check_health(qm_session *s);
/* Move the streams the peer cannot have seen to another session. */
void qm_sess_retry_unanswered(qm_session *s);
void qm_sess_health_cb(struct ev_loop *loop, ev_timer *w, int revents);
void qm_sess_idle_cb(struct ev_loop *loop, ev_timer *w, int revents);
size_t qm_sess_probe_timeouts(const qm_session *s, const ngtcp2_conn_info *cs,
                              ngtcp2_tstamp now);
void qm_sess_streams_changed(qm_session *s, size_t before);

/* session_path.c: the client's endpoints and migration. */
/* The client endpoint bound to local, or NULL. */
qm_endpoint *qm_sess_client_ep_for(qm_session *s, const ngtcp2_addr *local);
/* After a write: act on a send error saying the local path is gone. */
void qm_sess_check_path_error(qm_session *s);
/* Try to move to a new UDP socket (reason QM_MIG_*), to port (0 = the
 * current one). 0 when a validation started. */
int qm_sess_migrate(qm_session *s, int reason, uint16_t port);
/* ngtcp2's path_validation callback (client). */
void qm_sess_path_validated(qm_session *s, const ngtcp2_path *path,
                            int success);
/* Open the first endpoint (client_new) and close them all (free). */
int qm_sess_eps_open(qm_session *s, const struct sockaddr *peer,
                     socklen_t peerlen, char *err, size_t errlen);
void qm_sess_eps_close(qm_session *s);
/* Dropped datagrams and totals of every endpoint the session had. */
uint64_t qm_sess_eps_dropped(const qm_session *s);
void qm_sess_eps_totals(const qm_session *s, qm_totals *t);
void qm_sess_hop_start(qm_session *s);

/* session_dgram.c: flows, the datagram queue, reassembly. */
qm_dq *qm_sess_dq_pop(qm_session *s);
void qm_sess_dgram_handshake(qm_session *s);
void qm_sess_dgram_recv(qm_session *s, const uint8_t *data, size_t len);
void qm_sess_dgram_free(qm_session *s);

#endif
