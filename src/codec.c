/*
 * codec — v2ray's per-datagram packet wrapping (SPEC §3, §5), sans I/O.
 *
 * See codec.h for the wire layout. Everything happens in place in the
 * caller's buffer: no allocation, no copy besides the AEAD pass itself.
 */
#include "codec.h"

#include <limits.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

/* SPEC §3.2: K = SHA-256(key || "v2ray-quic-salt"). */
static const char kdf_salt[] = "v2ray-quic-salt";

/* qm_codec_clear() leaves this in c->security so that a wiped codec refuses
 * to seal or open (rather than silently working as "security none"). */
#define CODEC_CLEARED ((qm_security)0x7f)

/* ---- names ------------------------------------------------------------ */

static const char *const security_names[] = {
    [QM_SEC_NONE] = "none",
    [QM_SEC_AES_128_GCM] = "aes-128-gcm",
    [QM_SEC_CHACHA20_POLY1305] = "chacha20-poly1305",
};

static const char *const header_names[] = {
    [QM_HDR_NONE] = "none", [QM_HDR_SRTP] = "srtp",
    [QM_HDR_UTP] = "utp",   [QM_HDR_WECHAT_VIDEO] = "wechat-video",
    [QM_HDR_DTLS] = "dtls", [QM_HDR_WIREGUARD] = "wireguard",
};

#define N_SECURITY (sizeof security_names / sizeof security_names[0])
#define N_HEADER (sizeof header_names / sizeof header_names[0])

/* ASCII-only case-insensitive equality (independent of the C locale). */
static int ascii_caseeq(const char *a, const char *b) {
  for (;; a++, b++) {
    unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
    if (x >= 'A' && x <= 'Z')
      x = (unsigned char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z')
      y = (unsigned char)(y - 'A' + 'a');
    if (x != y)
      return 0;
    if (x == '\0')
      return 1;
  }
}

int qm_security_parse(const char *name, qm_security *out) {
  if (!name || !out)
    return QM_EINVAL;
  for (size_t i = 0; i < N_SECURITY; i++) {
    if (ascii_caseeq(name, security_names[i])) {
      *out = (qm_security)i;
      return QM_OK;
    }
  }
  return QM_EINVAL;
}

/* Out-of-range values give "unknown" (never NULL, so it is safe to log). */
const char *qm_security_name(qm_security sec) {
  if ((unsigned)sec >= N_SECURITY)
    return "unknown";
  return security_names[sec];
}

int qm_header_parse(const char *name, qm_header *out) {
  if (!name || !out)
    return QM_EINVAL;
  for (size_t i = 0; i < N_HEADER; i++) {
    if (ascii_caseeq(name, header_names[i])) {
      *out = (qm_header)i;
      return QM_OK;
    }
  }
  return QM_EINVAL;
}

const char *qm_header_name(qm_header hdr) {
  if ((unsigned)hdr >= N_HEADER)
    return "unknown";
  return header_names[hdr];
}

/* ---- setup ------------------------------------------------------------ */

static size_t header_size(qm_header hdr) {
  switch (hdr) {
  case QM_HDR_SRTP:
  case QM_HDR_UTP:
  case QM_HDR_WIREGUARD:
    return 4;
  case QM_HDR_WECHAT_VIDEO:
  case QM_HDR_DTLS:
    return 13;
  case QM_HDR_NONE:
  default:
    return 0;
  }
}

static int valid_security(qm_security sec) {
  return (unsigned)sec < N_SECURITY;
}

/* AES-128-GCM with GnuTLS: its one-pass AES-NI/PCLMUL code beats OpenSSL's
 * EVP per datagram (bench/RESULTS.md). */
static int aes_init(qm_codec *c, uint8_t *k) {
  gnutls_datum_t kd = {k, 16};
  if (gnutls_aead_cipher_init(&c->aead, GNUTLS_CIPHER_AES_128_GCM, &kd) < 0) {
    c->aead = NULL;
    return QM_EINVAL;
  }
  return QM_OK;
}

/* ChaCha20-Poly1305 (RFC 8439) with OpenSSL: the key is set once here; each
 * datagram then only sets the nonce and the direction (seal_chacha,
 * open_chacha). No allocation per datagram. */
static int chacha_init(qm_codec *c, const uint8_t *k) {
  EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
  size_t ivlen = QM_CODEC_NONCE_LEN;
  OSSL_PARAM p[2] = {
      OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen),
      OSSL_PARAM_construct_end()};
  c->evp = cipher ? EVP_CIPHER_CTX_new() : NULL;
  if (!c->evp || EVP_CipherInit_ex2(c->evp, cipher, k, NULL, 1, p) != 1) {
    EVP_CIPHER_CTX_free(c->evp); /* NULL is fine */
    c->evp = NULL;
    EVP_CIPHER_free(cipher);
    ERR_clear_error();
    return QM_EINVAL;
  }
  EVP_CIPHER_free(cipher); /* the context keeps its own reference */
  return QM_OK;
}

/*
 * The seed gives the header generator's random start values (SPEC §5):
 *   low 16 bits  (seed & 0xffff): srtp counter start (first value written is
 *                                 this + 1), wechat-video sequence start
 *                                 (likewise, first value this + 1);
 *   high 16 bits (seed >> 16):    utp connection id, dtls epoch.
 * The dtls sequence (0) and length (17) start values are not random.
 * Only one header type is active per codec, so sharing bits is harmless.
 */
int qm_codec_init_seeded(qm_codec *c, qm_security sec, const char *key,
                         size_t keylen, qm_header hdr, uint32_t seed) {
  if (!c || !valid_security(sec) || (unsigned)hdr >= N_HEADER ||
      (!key && keylen))
    return QM_EINVAL;

  memset(c, 0, sizeof *c);
  c->security = sec;
  c->header = hdr;
  c->header_len = header_size(hdr);

  uint16_t lo = (uint16_t)(seed & 0xffffu);
  uint16_t hi = (uint16_t)(seed >> 16);
  c->srtp_counter = lo;
  c->wechat_seq = lo;
  c->utp_conn_id = hi;
  c->dtls_epoch = hi;
  c->dtls_seq = 0;
  c->dtls_len = 17;

  if (sec != QM_SEC_NONE) {
    struct sha256_ctx h;
    uint8_t k[SHA256_DIGEST_SIZE];
    sha256_init(&h);
    if (keylen)
      sha256_update(&h, keylen, (const uint8_t *)key);
    sha256_update(&h, sizeof kdf_salt - 1, (const uint8_t *)kdf_salt);
    sha256_digest(&h, sizeof k, k);
    int rv = sec == QM_SEC_AES_128_GCM ? aes_init(c, k)     /* K[0..15] */
                                       : chacha_init(c, k); /* K[0..31] */
    gnutls_memset(k, 0, sizeof k);
    gnutls_memset(&h, 0, sizeof h);
    if (rv != QM_OK) {
      c->security = CODEC_CLEARED;
      return QM_EINVAL;
    }
  }
  return QM_OK;
}

int qm_codec_init(qm_codec *c, qm_security sec, const char *key, size_t keylen,
                  qm_header hdr) {
  uint32_t seed = 0;
  if (hdr != QM_HDR_NONE &&
      gnutls_rnd(GNUTLS_RND_RANDOM, &seed, sizeof seed) != 0)
    return QM_EINVAL;
  return qm_codec_init_seeded(c, sec, key, keylen, hdr, seed);
}

void qm_codec_clear(qm_codec *c) {
  if (!c)
    return;
  if (c->security != CODEC_CLEARED) {
    if (c->aead)
      gnutls_aead_cipher_deinit(c->aead);
    EVP_CIPHER_CTX_free(c->evp); /* wipes the key; NULL is fine */
  }
  gnutls_memset(c, 0, sizeof *c);
  c->security = CODEC_CLEARED;
}

size_t qm_codec_prefix(const qm_codec *c) {
  return c->header_len + (c->security != QM_SEC_NONE ? QM_CODEC_NONCE_LEN : 0);
}

size_t qm_codec_overhead(const qm_codec *c) {
  return c->header_len + (c->security != QM_SEC_NONE
                              ? QM_CODEC_NONCE_LEN + QM_CODEC_TAG_LEN
                              : 0);
}

/* ---- header generators (SPEC §5; all fields big-endian) --------------- */

static inline void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

void qm_codec_next_header(qm_codec *c, uint8_t *out) {
  switch (c->header) {
  case QM_HDR_SRTP:
    c->srtp_counter++; /* incremented before the write; wraps mod 2^16 */
    out[0] = 0xB5;
    out[1] = 0xE8;
    put16(out + 2, c->srtp_counter);
    break;
  case QM_HDR_UTP:
    put16(out, c->utp_conn_id);
    out[2] = 0x01;
    out[3] = 0x00;
    break;
  case QM_HDR_WECHAT_VIDEO: {
    static const uint8_t tail[7] = {0x00, 0x10, 0x11, 0x18, 0x30, 0x22, 0x30};
    c->wechat_seq++; /* incremented before the write; wraps mod 2^32 */
    out[0] = 0xA1;
    out[1] = 0x08;
    put32(out + 2, c->wechat_seq);
    memcpy(out + 6, tail, sizeof tail);
    break;
  }
  case QM_HDR_DTLS:
    out[0] = 0x17;
    out[1] = 0xFE;
    out[2] = 0xFD;
    put16(out + 3, c->dtls_epoch);
    out[5] = 0x00;
    out[6] = 0x00;
    put32(out + 7, c->dtls_seq);
    put16(out + 11, c->dtls_len);
    c->dtls_seq++;
    c->dtls_len = (uint16_t)(c->dtls_len + 17);
    if (c->dtls_len > 100)
      c->dtls_len = (uint16_t)(c->dtls_len - 50);
    break;
  case QM_HDR_WIREGUARD:
    out[0] = 0x04;
    out[1] = 0x00;
    out[2] = 0x00;
    out[3] = 0x00;
    break;
  case QM_HDR_NONE:
  default:
    break;
  }
}

/* ---- seal / open ------------------------------------------------------ */

/* Common checks for seal: a usable codec, and n + overhead fits in cap (and
 * in ssize_t). Sets *ov to the overhead; returns QM_OK or QM_EINVAL. */
static int seal_check(const qm_codec *c, const uint8_t *buf, size_t cap,
                      size_t n, size_t *ov) {
  if (!c || !buf || !valid_security(c->security))
    return QM_EINVAL;
  *ov = qm_codec_overhead(c);
  if (cap < *ov || n > cap - *ov || n > (size_t)SSIZE_MAX - *ov)
    return QM_EINVAL;
  if (c->security == QM_SEC_CHACHA20_POLY1305 && n > INT_MAX)
    return QM_EINVAL; /* EVP_CipherUpdate's length is an int */
  return QM_OK;
}

/* ChaCha20-Poly1305 in place: n bytes at data, the tag to data + n. Per
 * datagram: EVP_CipherInit_ex2 with only the nonce and the direction, the tag
 * through an OSSL_PARAM (as fast as EVP_CIPHER_CTX_ctrl, without the legacy
 * translation; bench/aead_bench.c). n is checked against INT_MAX by the
 * caller (EVP_CipherUpdate takes an int). */
static int seal_chacha(EVP_CIPHER_CTX *evp, const uint8_t *nonce, uint8_t *data,
                       size_t n) {
  OSSL_PARAM p[2] = {
      OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, data + n,
                                        QM_CODEC_TAG_LEN),
      OSSL_PARAM_construct_end()};
  int out = 0, fin = 0;
  if (EVP_CipherInit_ex2(evp, NULL, NULL, nonce, 1, NULL) != 1 ||
      (n && EVP_CipherUpdate(evp, data, &out, data, (int)n) != 1) ||
      EVP_CipherFinal_ex(evp, data + out, &fin) != 1 ||
      (size_t)out + (size_t)fin != n ||
      EVP_CIPHER_CTX_get_params(evp, p) != 1) {
    ERR_clear_error();
    return QM_EIO;
  }
  return QM_OK;
}

/* Open in place: the tag at data + n is handed to the init call, and
 * EVP_CipherFinal_ex compares it (in constant time). Returns QM_OK or
 * QM_EBADMSG; data then holds unauthenticated plaintext. */
static int open_chacha(EVP_CIPHER_CTX *evp, const uint8_t *nonce, uint8_t *data,
                       size_t n) {
  OSSL_PARAM p[2] = {
      OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, data + n,
                                        QM_CODEC_TAG_LEN),
      OSSL_PARAM_construct_end()};
  int out = 0, fin = 0;
  if (EVP_CipherInit_ex2(evp, NULL, NULL, nonce, 0, p) != 1 ||
      (n && EVP_CipherUpdate(evp, data, &out, data, (int)n) != 1) ||
      EVP_CipherFinal_ex(evp, data + out, &fin) != 1 ||
      (size_t)out + (size_t)fin != n) {
    ERR_clear_error(); /* nothing of a forged datagram stays behind */
    return QM_EBADMSG;
  }
  return QM_OK;
}

/* The nonce is already at buf + H. Writes the header, encrypts in place and
 * appends the tag. */
static ssize_t seal_finish(qm_codec *c, uint8_t *buf, size_t n, size_t ov) {
  size_t h = c->header_len;
  qm_codec_next_header(c, buf);
  if (c->security != QM_SEC_NONE) {
    const uint8_t *nonce = buf + h;
    uint8_t *data = buf + h + QM_CODEC_NONCE_LEN;
    if (c->security == QM_SEC_CHACHA20_POLY1305) {
      if (seal_chacha(c->evp, nonce, data, n) != QM_OK)
        return QM_EIO;
    } else {
      giovec_t iov = {data, n};
      size_t tag_len = QM_CODEC_TAG_LEN;
      if (gnutls_aead_cipher_encryptv2(c->aead, nonce, QM_CODEC_NONCE_LEN, NULL,
                                       0, &iov, n ? 1 : 0, data + n,
                                       &tag_len) < 0)
        return QM_EIO;
    }
  }
  c->sealed++;
  return (ssize_t)(n + ov);
}

ssize_t qm_codec_seal(qm_codec *c, uint8_t *buf, size_t cap, size_t n) {
  size_t ov = 0;
  if (seal_check(c, buf, cap, n, &ov) != QM_OK)
    return QM_EINVAL;
  if (c->security != QM_SEC_NONE) {
    if (c->nonce_left < QM_CODEC_NONCE_LEN) {
      if (gnutls_rnd(GNUTLS_RND_NONCE, c->nonce_pool, sizeof(c->nonce_pool)) !=
          0)
        return QM_EIO; /* RNG failure: never send with a non-random nonce */
      c->nonce_left = sizeof(c->nonce_pool);
    }
    c->nonce_left -= QM_CODEC_NONCE_LEN;
    memcpy(buf + c->header_len, c->nonce_pool + c->nonce_left,
           QM_CODEC_NONCE_LEN);
    /* each nonce is used once */
    memset(c->nonce_pool + c->nonce_left, 0, QM_CODEC_NONCE_LEN);
  }
  return seal_finish(c, buf, n, ov);
}

ssize_t qm_codec_seal_nonce(qm_codec *c, uint8_t *buf, size_t cap, size_t n,
                            const uint8_t *nonce) {
  size_t ov = 0;
  if (seal_check(c, buf, cap, n, &ov) != QM_OK)
    return QM_EINVAL;
  if (c->security != QM_SEC_NONE) {
    if (!nonce)
      return QM_EINVAL;
    memmove(buf + c->header_len, nonce, QM_CODEC_NONCE_LEN);
  }
  return seal_finish(c, buf, n, ov);
}

ssize_t qm_codec_open(qm_codec *c, uint8_t *buf, size_t len, uint8_t **quic) {
  if (!c || !buf || !quic || !valid_security(c->security) ||
      len > (size_t)SSIZE_MAX)
    return QM_EINVAL;

  size_t h = c->header_len;
  /* SPEC §3.3: with a header, length <= H is invalid; the header bytes are
   * skipped unchecked. (Header "none" has H = 0 and no check.) */
  if (c->header != QM_HDR_NONE && len <= h) {
    c->dropped_short++;
    return QM_EBADMSG;
  }
  if (c->security == QM_SEC_NONE) {
    *quic = buf + h;
    c->opened++;
    return (ssize_t)(len - h);
  }

  /* AEAD: need the nonce and the tag (v2ray: remaining <= 12 is invalid, and
   * anything shorter than nonce + tag cannot authenticate). */
  if (len - h < QM_CODEC_NONCE_LEN + QM_CODEC_TAG_LEN) {
    c->dropped_short++;
    return QM_EBADMSG;
  }
  const uint8_t *nonce = buf + h;
  uint8_t *data = buf + h + QM_CODEC_NONCE_LEN;
  size_t n = len - h - QM_CODEC_NONCE_LEN - QM_CODEC_TAG_LEN;
  int bad;
  if (c->security == QM_SEC_CHACHA20_POLY1305) {
    bad = n > INT_MAX || open_chacha(c->evp, nonce, data, n) != QM_OK;
  } else {
    giovec_t iov = {data, n};
    bad = gnutls_aead_cipher_decryptv2(c->aead, nonce, QM_CODEC_NONCE_LEN, NULL,
                                       0, &iov, n ? 1 : 0, data + n,
                                       QM_CODEC_TAG_LEN) < 0;
  }
  if (bad) {
    /* buf now holds unauthenticated plaintext; the caller drops it. */
    c->dropped_auth++;
    return QM_EBADMSG;
  }
  *quic = data;
  c->opened++;
  return (ssize_t)n;
}
