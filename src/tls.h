/*
 * tls — GnuTLS credentials and sessions for QUIC (TLS 1.3 only).
 * Client: SNI, ALPN, verification against system roots + a CA file, or none
 * (v2ray's insecure default). Server: certificate/key files, or a
 * self-signed ECDSA P-256 certificate made in memory.
 */
#ifndef QM_TLS_H
#define QM_TLS_H

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "quicmux/quicmux.h"

typedef struct qm_tls_ctx qm_tls_ctx;

int qm_tls_ctx_new(qm_tls_ctx **out, int server, const qm_settings *s,
                   char *err, size_t errlen);
void qm_tls_ctx_free(qm_tls_ctx *c);
/* A configured session whose ptr is ref (ngtcp2_crypto_conn_ref). */
int qm_tls_session_new(qm_tls_ctx *c, gnutls_session_t *out,
                       ngtcp2_crypto_conn_ref *ref);
/* Server: 0-RTT is on (tickets are issued, early data accepted). */
int qm_tls_ctx_zero_rtt(const qm_tls_ctx *c);
/* Server with 0-RTT: send one session ticket (after the handshake). */
int qm_tls_send_ticket(gnutls_session_t s);
/* The name the client verifies / sends as SNI. */
const char *qm_tls_ctx_server_name(const qm_tls_ctx *c);

#endif
