/*
 * hide — the hidden Initial (qm_settings.hide_initial; a client with
 * security none): with it, the first packet of the flow is not a QUIC
 * Initial, and neither Initial holds the whole ClientHello: a random decoy
 * datagram goes first; the ClientHello carries an extension of a GREASE
 * type (RFC 8701, which servers ignore) large enough that the SNI falls
 * into the second Initial; the first flight then goes out last first.
 */
#ifndef QM_HIDE_H
#define QM_HIDE_H

#include <gnutls/gnutls.h>

#include "io.h"

/* Decoy size: every byte random. Nothing that short is answered: a
 * stateless reset must be smaller than its trigger and at least 21 bytes
 * (RFC 9000 §10.3; quicmux's listener and quic-go keep to it), Version
 * Negotiation answers only datagrams of 1200 bytes or more, and shorter
 * than an Initial is dropped by both. */
#define QM_HIDE_DECOY_MIN 8
#define QM_HIDE_DECOY_MAX 21

/* The padding extension's size: one Initial carries about 1150 bytes of
 * ClientHello and the extension comes before the SNI (GnuTLS sends
 * per-session extensions first), so the SNI starts past 1200 bytes. */
#define QM_HIDE_PAD_MIN 1100
#define QM_HIDE_PAD_SPAN 256

/* Add the padding extension to a client's TLS session (before its first
 * handshake call). 0 or QM_ETLS. */
int qm_hide_pad_client_hello(gnutls_session_t s);

/* Queue the decoy datagram for dst on ep (nothing if the queue is full).
 * It goes through the endpoint's codec like any datagram. */
void qm_hide_queue_decoy(qm_endpoint *ep, const struct sockaddr *dst,
                         socklen_t dstlen);

#endif
