/*
 * codec — v2ray's per-datagram packet wrapping (SPEC §3, §5), sans I/O.
 *
 * Wire layout of one UDP datagram:
 *   AEAD on:        [header, H bytes][12-byte nonce][AEAD(QUIC) + 16-byte tag]
 *   security none:  [header, H bytes][QUIC datagram]
 * Key K = SHA-256(key || "v2ray-quic-salt"); AES-128-GCM uses K[0..15],
 * ChaCha20-Poly1305 uses K[0..31]; associated data is empty.
 *
 * Sealing and opening happen in place. One qm_codec per UDP socket: it holds
 * the keys and the header generator's state (counters).
 */
#ifndef QM_CODEC_H
#define QM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <gnutls/crypto.h>
#include <openssl/types.h>

#include "quicmux/quicmux.h"

#define QM_CODEC_NONCE_LEN 12
#define QM_CODEC_TAG_LEN 16
#define QM_CODEC_MAX_HEADER 13
/* Largest prefix (header + nonce) and total overhead of any configuration. */
#define QM_CODEC_MAX_PREFIX (QM_CODEC_MAX_HEADER + QM_CODEC_NONCE_LEN)
#define QM_CODEC_MAX_OVERHEAD (QM_CODEC_MAX_PREFIX + QM_CODEC_TAG_LEN)

typedef struct qm_codec {
  qm_security security;
  qm_header header;
  size_t header_len; /* H: 0, 4 or 13 */
  /* AES-128-GCM: GnuTLS's AEAD, one pass, about twice as fast per datagram
   * as nettle's four passes (bench/aead_bench.c). NULL otherwise. */
  gnutls_aead_cipher_hd_t aead;
  /* ChaCha20-Poly1305: OpenSSL 3 libcrypto's EVP (AVX2/AVX-512 assembly),
   * about three times GnuTLS's (= Nettle's) speed per datagram
   * (bench/RESULTS.md). One context for the key, only the nonce and the
   * direction change per datagram. NULL otherwise. */
  EVP_CIPHER_CTX *evp;
  /* header generator state (SPEC §5) */
  uint16_t srtp_counter;
  uint16_t utp_conn_id;
  uint32_t wechat_seq;
  uint16_t dtls_epoch;
  uint32_t dtls_seq;
  uint16_t dtls_len;
  /* fresh random nonces, taken from the generator 1 KiB at a time: one
   * generator call per datagram costs more than the AEAD itself */
  uint8_t nonce_pool[QM_CODEC_NONCE_LEN * 85];
  size_t nonce_left; /* unused bytes at the end of nonce_pool */
  /* statistics */
  uint64_t sealed;
  uint64_t opened;
  uint64_t dropped_short; /* too short for header + nonce + tag */
  uint64_t dropped_auth;  /* authentication failed */
} qm_codec;

/* Set up keys and header state. key may be NULL (= ""). The header's random
 * start values come from gnutls_rnd. Returns 0 or QM_EINVAL. */
int qm_codec_init(qm_codec *c, qm_security sec, const char *key, size_t keylen,
                  qm_header hdr);
/* Same, with the header's random start values given (for tests). */
int qm_codec_init_seeded(qm_codec *c, qm_security sec, const char *key,
                         size_t keylen, qm_header hdr, uint32_t seed);
/* Wipe keys and free the cipher. Call it before initialising c again. */
void qm_codec_clear(qm_codec *c);

/* Bytes before the QUIC datagram (H + 12 with AEAD, H without). */
size_t qm_codec_prefix(const qm_codec *c);
/* Total bytes added (prefix + 16-byte tag with AEAD). */
size_t qm_codec_overhead(const qm_codec *c);

/* Seal in place. The QUIC datagram of n bytes is at buf + qm_codec_prefix(c);
 * cap is the size of buf (must be >= n + overhead). Writes the header, a
 * fresh random nonce and the tag. Returns the wire length (n + overhead) or
 * QM_EINVAL if it does not fit. */
ssize_t qm_codec_seal(qm_codec *c, uint8_t *buf, size_t cap, size_t n);
/* Same with a given nonce (for tests): 12 bytes, ignored without AEAD. */
ssize_t qm_codec_seal_nonce(qm_codec *c, uint8_t *buf, size_t cap, size_t n,
                            const uint8_t *nonce);

/* Open in place. On success *quic points into buf at the QUIC datagram and
 * the return value is its length. QM_EBADMSG for a datagram that is too short
 * or fails authentication (counted in the codec; never logged). */
ssize_t qm_codec_open(qm_codec *c, uint8_t *buf, size_t len, uint8_t **quic);

/* Write the next header (H bytes) into out and advance the generator. */
void qm_codec_next_header(qm_codec *c, uint8_t *out);

#endif /* QM_CODEC_H */
