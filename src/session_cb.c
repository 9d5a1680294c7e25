/* The ngtcp2 callbacks of a session: TLS/crypto glue, connection ids,
 * handshake, and the stream events. */
#include <string.h>

#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "session_int.h"
#include "ticket.h"

/* ---- ngtcp2 callbacks ---- */

static void rand_cb(uint8_t *dest, size_t destlen, const ngtcp2_rand_ctx *c) {
  (void)c;
  qm_random(dest, destlen);
}

static int get_new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                          size_t cidlen, void *ud) {
  qm_session *s = ud;
  (void)conn;
  if (s->server) /* with workers, the id names this session's worker */
    qm__cid_make(cid->data, cidlen, s->cid_worker, s->cid_workers);
  else
    qm_random(cid->data, cidlen);
  cid->datalen = cidlen;
  if (s->server)
    qm_session_reset_token(token, s->owner.reset_secret, cid->data,
                           cid->datalen);
  else
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

/* ngtcp2 checked the token: the session ends with NGTCP2_ERR_DRAINING from
 * ngtcp2_conn_read_pkt (qm_session_recv). */
static int recv_stateless_reset_cb(ngtcp2_conn *conn,
                                   const ngtcp2_pkt_stateless_reset *sr,
                                   void *ud) {
  qm_session *s = ud;
  (void)conn;
  (void)sr;
  s->got_reset = 1;
  return 0;
}

/* Resumption and early data as TLS settled them. A client that opened
 * streams in 0-RTT must tell ngtcp2 when the server did not take the early
 * data (GnuTLS reports it only now); ngtcp2 then forgets those streams and
 * tls_early_data_rejected_cb starts them over. */
static int handshake_completed_cb(ngtcp2_conn *conn, void *ud) {
  qm_session *s = ud;
  int early =
      (gnutls_session_get_flags(s->tls_sess) & GNUTLS_SFLAGS_EARLY_DATA) != 0;
  if (s->state == QM_SESS_HANDSHAKING)
    s->state = QM_SESS_ESTABLISHED;
  if (gnutls_session_is_resumed(s->tls_sess))
    s->early.resumed++;
  if (early && (s->server || s->early_offered))
    s->early.accepted++;
  QM_DEBUG("session", "session %llu: handshake done%s%s",
           (unsigned long long)s->id,
           gnutls_session_is_resumed(s->tls_sess) ? ", resumed" : "",
           early              ? ", early data accepted"
           : s->early_offered ? ", early data refused"
                              : "");
  if (s->server) {
    if (qm_tls_ctx_zero_rtt(s->tls) && qm_tls_send_ticket(s->tls_sess) == 0)
      s->early.tickets++;
    qm_sess_dgram_handshake(s);
    return 0;
  }
  if (s->early_offered && !gnutls_session_is_resumed(s->tls_sess)) {
    /* The server no longer takes the ticket (new ticket key, 0-RTT off,
     * not quicmux): stop offering it; a new one replaces it if it comes. */
    qm_ticket_forget(s->owner.tickets, s->owner.ticket_key);
  }
  if (s->early_offered && !early) {
    s->early.rejected++;
    if (ngtcp2_conn_tls_early_data_rejected(conn) != 0)
      return NGTCP2_ERR_CALLBACK_FAILURE;
  } else if (s->early_offered) {
    qm_sess_announce_early(s);
  }
  if (s->owner.on_ready)
    s->owner.on_ready(s, s->owner.ud);
  qm_sess_open_pending(s);
  qm_sess_dgram_handshake(s);
  return 0;
}

static int tls_early_data_rejected_cb(ngtcp2_conn *conn, void *ud) {
  (void)conn;
  qm_sess_early_rejected(ud);
  return 0;
}

int qm_sess_ticket_hook(gnutls_session_t tls, unsigned htype, unsigned when,
                        unsigned incoming, const gnutls_datum_t *msg) {
  ngtcp2_crypto_conn_ref *ref = gnutls_session_get_ptr(tls);
  qm_session *s = ref->user_data;
  uint8_t tp[256];
  ngtcp2_ssize n;
  gnutls_datum_t d;
  (void)when;
  (void)msg;
  if (htype != GNUTLS_HANDSHAKE_NEW_SESSION_TICKET || !incoming ||
      !s->owner.tickets)
    return 0;
  s->early.tickets++;
  n = ngtcp2_conn_encode_0rtt_transport_params(s->conn, tp, sizeof(tp));
  if (n <= 0 || gnutls_session_get_data2(tls, &d) < 0)
    return 0;
  qm_ticket_put(s->owner.tickets, s->owner.ticket_key, d.data, d.size, tp,
                (size_t)n);
  gnutls_free(d.data);
  QM_DEBUG("session", "session %llu: session ticket kept",
           (unsigned long long)s->id);
  return 0;
}

static int recv_datagram_cb(ngtcp2_conn *conn, uint32_t flags,
                            const uint8_t *data, size_t datalen, void *ud) {
  (void)conn;
  (void)flags;
  qm_sess_dgram_recv(ud, data, datalen);
  return 0;
}

static int extend_max_local_streams_bidi_cb(ngtcp2_conn *conn,
                                            uint64_t max_streams, void *ud) {
  qm_session *s = ud;
  (void)conn;
  (void)max_streams;
  if (s->state == QM_SESS_ESTABLISHED)
    qm_sess_open_pending(s);
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
  s->streams_opened++;
  qm_sess_link_stream(s, st);
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
  if (s->server && !ngtcp2_conn_get_handshake_completed(conn))
    s->early.bytes += datalen; /* before the handshake: 0-RTT */
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
    qm_sess_wq_remove(s, st);
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
    qm_sess_wq_push(s, st);
  return 0;
}

/* Client: the path to a new UDP socket was validated (or not). */
static int path_validation_cb(ngtcp2_conn *conn, uint32_t flags,
                              const ngtcp2_path *path,
                              const ngtcp2_path *old_path,
                              ngtcp2_path_validation_result res, void *ud) {
  (void)conn;
  (void)flags;
  (void)old_path;
  if (res != NGTCP2_PATH_VALIDATION_RESULT_ABORTED)
    qm_sess_path_validated(ud, path,
                           res == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS);
  return 0;
}

ngtcp2_conn *qm_sess_get_conn(ngtcp2_crypto_conn_ref *ref) {
  qm_session *s = ref->user_data;
  return s->conn;
}

/* A Retry: the client sends its ClientHello again. With the hidden
 * Initial that flight goes out reversed too (hide.h); the server has a
 * token now, so ngtcp2 buffers the out-of-order part instead of asking
 * for another Retry. */
static int recv_retry_cb(ngtcp2_conn *conn, const ngtcp2_pkt_hd *hd, void *ud) {
  qm_session *s = ud;
  if (s->hide)
    s->hide_reverse = 1;
  return ngtcp2_crypto_recv_retry_cb(conn, hd, ud);
}

void qm__session_crypto_callbacks(ngtcp2_callbacks *cb, int server) {
  memset(cb, 0, sizeof(*cb));
  if (server) {
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  } else {
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = recv_retry_cb;
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

void qm_sess_callbacks(ngtcp2_callbacks *cb, int server) {
  qm__session_crypto_callbacks(cb, server);
  cb->rand = rand_cb;
  cb->get_new_connection_id = get_new_cid_cb;
  cb->remove_connection_id = remove_cid_cb;
  cb->handshake_completed = handshake_completed_cb;
  cb->recv_datagram = recv_datagram_cb;
  cb->recv_stateless_reset = recv_stateless_reset_cb;
  cb->extend_max_local_streams_bidi = extend_max_local_streams_bidi_cb;
  cb->stream_open = stream_open_cb;
  cb->recv_stream_data = recv_stream_data_cb;
  cb->acked_stream_data_offset = acked_stream_data_offset_cb;
  cb->stream_close = stream_close_cb;
  cb->stream_reset = stream_reset_cb;
  cb->stream_stop_sending = stream_stop_sending_cb;
  cb->extend_max_stream_data = extend_max_stream_data_cb;
  cb->tls_early_data_rejected = tls_early_data_rejected_cb;
  if (!server)
    cb->path_validation = path_validation_cb;
}
