/* The hidden Initial: the decoy datagram and the ClientHello's padding
 * extension (hide.h). The reordering of the first flight is the session's
 * (session_tx.c, with qm_endpoint_reverse). */
#include "hide.h"
#include "internal.h"

static int pad_send(gnutls_session_t s, gnutls_buffer_t ext) {
  uint8_t buf[QM_HIDE_PAD_MIN + QM_HIDE_PAD_SPAN];
  uint16_t r;
  size_t n;
  (void)s;
  qm_random(&r, sizeof(r));
  n = QM_HIDE_PAD_MIN + r % QM_HIDE_PAD_SPAN;
  qm_random(buf, n);
  if (gnutls_buffer_append_data(ext, buf, n) < 0)
    return GNUTLS_E_MEMORY_ERROR;
  return (int)n;
}

/* A server never answers with it; if one did, it would be ignored. */
static int pad_recv(gnutls_session_t s, const unsigned char *data, size_t len) {
  (void)s;
  (void)data;
  (void)len;
  return 0;
}

int qm_hide_pad_client_hello(gnutls_session_t s) {
  uint8_t r;
  int type;
  /* one of the 16 GREASE values 0x0a0a, 0x1a1a, ... 0xfafa, chosen anew
   * per session, so the extension's type is no fixed mark either */
  qm_random(&r, 1);
  type = 0x0a0a + 0x1010 * (r & 15);
  if (gnutls_session_ext_register(
          s, "padding", type, GNUTLS_EXT_TLS, pad_recv, pad_send, NULL, NULL,
          NULL, GNUTLS_EXT_FLAG_CLIENT_HELLO | GNUTLS_EXT_FLAG_TLS) < 0)
    return QM_ETLS;
  return 0;
}

void qm_hide_queue_decoy(qm_endpoint *ep, const struct sockaddr *dst,
                         socklen_t dstlen) {
  uint8_t *slot = qm_endpoint_slot(ep);
  uint8_t r;
  size_t n;
  if (!slot)
    return;
  qm_random(&r, 1);
  n = QM_HIDE_DECOY_MIN + r % (QM_HIDE_DECOY_MAX - QM_HIDE_DECOY_MIN + 1);
  qm_random(slot, n);
  qm_endpoint_commit(ep, n, dst, dstlen);
}
