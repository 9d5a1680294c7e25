/*
 * session — one QUIC connection over ngtcp2 (client or server role):
 * handshake, one timer, packet receive/send through an endpoint, the stream
 * table, flow control, close. Pool policy lives in the dialer, not here.
 */
#ifndef QM_SESSION_H
#define QM_SESSION_H

#include <ngtcp2/ngtcp2.h>

#include "flow.h"
#include "io.h"
#include "stream.h"
#include "tls.h"

typedef enum {
  QM_SESS_HANDSHAKING = 0,
  QM_SESS_ESTABLISHED,
  QM_SESS_CLOSING, /* CONNECTION_CLOSE sent or received */
  QM_SESS_DEAD,    /* gone: freed at the next deferred task */
} qm_session_state;

typedef struct qm_session_owner {
  /* The session stopped being usable; it is freed right after this returns
   * (the owner must drop every pointer to it). Called from a deferred task. */
  void (*on_dead)(qm_session *s, void *ud);
  /* Server: a stream opened by the peer; set its callbacks here. */
  void (*on_stream)(qm_session *s, qm_stream *st, void *ud);
  /* Client: a queued stream this session cannot open after all. The owner
   * places it on another session (or closes it). failed: the session's
   * handshake failed, so the next address may be worth a try. */
  void (*on_requeue)(qm_session *s, qm_stream *st, int failed, void *ud);
  /* Client: the handshake completed (the server answers). Optional. */
  void (*on_ready)(qm_session *s, void *ud);
  /* Server: connection ids to route to this session. */
  int (*add_cid)(qm_session *s, const uint8_t *cid, size_t len, void *ud);
  void (*remove_cid)(qm_session *s, const uint8_t *cid, size_t len, void *ud);
  /* Server: the secret (QM_RESET_SECRET_LEN bytes, owned by the owner) the
   * stateless-reset tokens of every connection id are derived from. */
  const uint8_t *reset_secret;
  /* UDP flows (NULL or not enabled: no datagrams advertised). */
  qm_flow_ctx *flows;
  /* Server: the listener's endpoint bound to local (one per port of a
   * range), or NULL for none; the session sends each packet from the
   * endpoint of the path ngtcp2 chose for it. NULL: always s->ep. */
  qm_endpoint *(*endpoint_for)(qm_session *s, const struct sockaddr *local,
                               socklen_t len, void *ud);
  /* Client with 0-RTT: the store of tickets and this server's key in it
   * (both outlive the session). NULL: no resumption, no early data. */
  struct qm_ticket_store *tickets;
  const char *ticket_key;
  void *ud;
} qm_session_owner;

#define QM_RESET_SECRET_LEN 32

/* The stateless-reset token of a server connection id: derived from the
 * secret, so that a restarted server (same secret) can still send it. */
void qm_session_reset_token(uint8_t *token, const uint8_t *secret,
                            const uint8_t *cid, size_t cidlen);

/* Client: a new session on a new UDP socket to peer. With port_lo <
 * port_hi the server listens on that whole port range (peer's port is one
 * of them) and the session hops between its ports every
 * s->hop_interval_ms (s must outlive the session). */
int qm_session_client_new(qm_session **out, qm_io *io, qm_tls_ctx *tls,
                          const qm_settings *s, const struct sockaddr *peer,
                          socklen_t peerlen, uint16_t port_lo, uint16_t port_hi,
                          const qm_session_owner *owner, char *err,
                          size_t errlen);
/* Server: a session for the Initial in pkt (already unwrapped) arriving on
 * the listener's shared endpoint. odcid: the original destination id from a
 * valid Retry token (the Initial's DCID is then our Retry SCID), or NULL. */
int qm_session_server_new(qm_session **out, qm_io *io, qm_endpoint *ep,
                          qm_tls_ctx *tls, const qm_settings *s,
                          const ngtcp2_pkt_hd *hd, const ngtcp2_cid *odcid,
                          const struct sockaddr *from, socklen_t fromlen,
                          const qm_session_owner *owner);
/* Feed one QUIC datagram that arrived on ep (server: routed here by the
 * listener) from `from`: the path is ep's address and `from`, so ngtcp2
 * sees a NAT rebinding or a migration of the peer. */
void qm_session_recv(qm_session *s, qm_endpoint *ep,
                     const struct sockaddr *from, socklen_t fromlen,
                     const uint8_t *pkt, size_t len);
/* The shared endpoint can take datagrams again. */
void qm_session_writable(qm_session *s);

/* Client: put a stream on this session (open now, or after the handshake). */
void qm_session_attach(qm_session *s, qm_stream *st);
int qm_session_is_active(const qm_session *s);
/* One more stream may go here now (credit, or handshaking below limit). */
int qm_session_can_take(const qm_session *s);
qm_session_state qm_session_state_of(const qm_session *s);
size_t qm_session_stream_count(const qm_session *s);
uint64_t qm_session_id(const qm_session *s);
/* Nonzero once the session died before its handshake completed. */
int qm_session_died_handshaking(const qm_session *s);
/* Why the session ended (QM_ETIMEDOUT, QM_EREFUSED, ...). */
int qm_session_close_error(const qm_session *s);
/* Send CONNECTION_CLOSE (application error 0) and go dead. */
void qm_session_close(qm_session *s);
/* Free now (no callbacks). Only the owner calls this. */
void qm_session_free(qm_session *s);
/* Datagrams dropped by this session's own endpoint (client). */
uint64_t qm_session_dropped(const qm_session *s);
/* Server: the first Initial held no start of the ClientHello (a client
 * that sends its first flight out of order: the hidden Initial). ngtcp2
 * then buffers only for a validated address, so the session is dead and
 * the owner answers with a Retry instead; the session is not counted. */
int qm_session_wants_retry(const qm_session *s);
/* Add the session's counts to t: its streams and (client) its own UDP
 * endpoint; gone: the owner is about to free it, so count how it ended. */
void qm_session_add_totals(const qm_session *s, qm_totals *t, int gone);

void qm_session_get_info(const qm_session *s, qm_session_info *in);
/* Add the session's resumption and 0-RTT counts to t. */
void qm_session_add_early(const qm_session *s, qm_early_totals *t);
/* Client: add its moves to a new UDP socket, and its port hops, to *m, *h. */
void qm_session_path_counts(const qm_session *s, uint64_t *m, uint64_t *h);

/* For stream.c: something changed on st (bytes or FIN to send, an event). */
void qm_session_stream_wants_write(qm_session *s, qm_stream *st);
void qm_session_stream_event(qm_session *s, qm_stream *st, unsigned ev);
void qm_session_stream_consumed(qm_session *s, qm_stream *st, size_t n);
/* How many bytes a stream with a base buffer of base may hold unacknowledged
 * now (grows with the congestion window). */
size_t qm_session_send_limit(const qm_session *s, size_t base);

/* UDP flows (session_dgram.c). Whether the peer takes datagrams: 1 yes, 0
 * not known yet (handshaking, or flows off), -1 no (v2ray). */
int qm_session_dgram_state(const qm_session *s);
size_t qm_session_flow_count(const qm_session *s);
void qm_session_flow_attach(qm_session *s, qm_flow *f);
void qm_session_flow_detach(qm_session *s, qm_flow *f);
/* Queue one datagram of f: 0, QM_EAGAIN (queue full: dropped), QM_EINVAL,
 * QM_EREFUSED (the peer takes no datagrams), QM_ECLOSED. */
int qm_session_dgram_send(qm_session *s, qm_flow *f, const uint8_t *data,
                          size_t len);
/* Log, once per session, that the peer refuses UDP. */
void qm_session_dgram_refused(qm_session *s);
/* Client: tell the server flow id is closed (best effort). */
void qm_session_flow_closed(qm_session *s, uint64_t id);

/* Internal, for tests: the ngtcp2 callbacks of the TLS/crypto glue (all
 * others zero), as every session gets them. */
void qm__session_crypto_callbacks(ngtcp2_callbacks *cb, int server);

/* Internal, for tests: the ngtcp2 settings and transport parameters a
 * session of this role gets (only ep's codec is read). */
void qm__session_settings(ngtcp2_settings *st, ngtcp2_transport_params *p,
                          const qm_settings *s, const qm_endpoint *ep,
                          int server);

#endif
