/*
 * Micro-benchmark for the per-datagram work of quicmux's packet wrapping (SPEC
 * §3): AEAD seal and open of one QUIC datagram, for every library that could
 * do it, and the 12-byte random nonce per datagram.
 *
 * AEADs (key, nonce and tag as in SPEC §3.2: 12-byte nonce, 16-byte tag, no
 * associated data), each at 64, 1200, 1350, 1424, 1452 and 16384 bytes:
 *   AES-128-GCM:       GnuTLS encryptv2/decryptv2 in place (what src/codec.c
 *                      calls), GnuTLS one-shot encrypt/decrypt, Nettle
 *                      gcm_aes128, OpenSSL 3 EVP, libgcrypt;
 *   ChaCha20-Poly1305: GnuTLS encryptv2/decryptv2 (Nettle inside; what
 *                      src/codec.c called before it moved to OpenSSL), Nettle
 *                      chacha_poly1305, libsodium
 *                      crypto_aead_chacha20poly1305_ietf_*_detached, OpenSSL 3
 *                      EVP, libgcrypt.
 * OpenSSL twice: the textbook sequence (EVP_CipherInit_ex with the nonce,
 * Update, Final, EVP_CIPHER_CTX_ctrl for the tag) and the one src/codec.c
 * uses for ChaCha20-Poly1305 (EVP_CipherInit_ex2, the tag through an
 * OSSL_PARAM). Every library keeps one context per key: no allocation and no
 * key schedule per datagram.
 * Seal: in place, tag after the data, a different nonce per datagram.
 * Open: a valid datagram (libsodium checks the tag before it decrypts, so a
 * bad tag would skip the work) is copied into the buffer and opened in place,
 * as the receive path does after recvmmsg; the copy alone is reported as
 * "memcpy only" (subtract it to get the open itself).
 * Before timing, every implementation's output is checked against the SPEC
 * §3.2 vectors and against each other at every size.
 *
 * Each figure is the median of R interleaved repetitions (default 5; the
 * machine is shared and noisy), each repetition about 40 MB of data (2000 to
 * 300000 datagrams).
 *
 * Build and run (not part of the project build):
 *   cc -O2 -o /tmp/aead_bench bench/aead_bench.c -lgnutls -lnettle -lsodium \
 *     -lcrypto -lgcrypt && /tmp/aead_bench [R]
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nettle/chacha-poly1305.h>
#include <nettle/gcm.h>
#include <nettle/memops.h>
#include <nettle/sha2.h>
#include <nettle/version.h>
#include <gcrypt.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXPKT 16384
#define TAG 16
#define MAXR 31

static const size_t sizes[] = {64, 1200, 1350, 1424, 1452, 16384};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static uint8_t key[32];

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "aead_bench: %s\n", what);
  exit(1);
}

/* ---- implementations --------------------------------------------------- */

typedef struct impl {
  const char *name;
  int chacha; /* 0: AES-128-GCM (K[0..15]), 1: ChaCha20-Poly1305 (K) */
  void (*init)(struct impl *);
  /* in place: n bytes at buf, tag to buf + n */
  void (*seal)(struct impl *, const uint8_t *nonce, uint8_t *buf, size_t n);
  /* in place; returns 0 when the tag verifies */
  int (*open)(struct impl *, const uint8_t *nonce, uint8_t *buf, size_t n);
  void *state;
} impl;

/* GnuTLS, as src/codec.c: encryptv2/decryptv2, one giovec, in place. */
static void gtv2_init(impl *m) {
  gnutls_aead_cipher_hd_t h;
  gnutls_datum_t k = {key, m->chacha ? 32 : 16};
  if (gnutls_aead_cipher_init(&h,
                              m->chacha ? GNUTLS_CIPHER_CHACHA20_POLY1305
                                        : GNUTLS_CIPHER_AES_128_GCM,
                              &k) < 0)
    die("gnutls_aead_cipher_init");
  m->state = h;
}
static void gtv2_seal(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  giovec_t iov = {buf, n};
  size_t tl = TAG;
  if (gnutls_aead_cipher_encryptv2(m->state, nonce, 12, NULL, 0, &iov, 1,
                                   buf + n, &tl) < 0)
    die("encryptv2");
}
static int gtv2_open(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  giovec_t iov = {buf, n};
  return gnutls_aead_cipher_decryptv2(m->state, nonce, 12, NULL, 0, &iov, 1,
                                      buf + n, TAG) < 0;
}

/* GnuTLS one-shot encrypt/decrypt (what ngtcp2's crypto_gnutls calls). */
static int gt1_open(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  size_t ol = n;
  return gnutls_aead_cipher_decrypt(m->state, nonce, 12, NULL, 0, TAG, buf,
                                    n + TAG, buf, &ol) < 0;
}
static void gt1_seal(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  size_t ol = n + TAG;
  if (gnutls_aead_cipher_encrypt(m->state, nonce, 12, NULL, 0, TAG, buf, n, buf,
                                 &ol) < 0)
    die("encrypt");
}

/* Nettle directly. */
static union {
  struct gcm_aes128_ctx gcm;
  struct chacha_poly1305_ctx cp;
} nettle_ctx[2];
static void nt_init(impl *m) {
  m->state = &nettle_ctx[m->chacha];
  if (m->chacha)
    chacha_poly1305_set_key(&nettle_ctx[1].cp, key);
  else
    gcm_aes128_set_key(&nettle_ctx[0].gcm, key);
}
static void nt_seal(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  if (m->chacha) {
    chacha_poly1305_set_nonce(&nettle_ctx[1].cp, nonce);
    chacha_poly1305_encrypt(&nettle_ctx[1].cp, n, buf, buf);
    chacha_poly1305_digest(&nettle_ctx[1].cp, TAG, buf + n);
  } else {
    gcm_aes128_set_iv(&nettle_ctx[0].gcm, 12, nonce);
    gcm_aes128_encrypt(&nettle_ctx[0].gcm, n, buf, buf);
    gcm_aes128_digest(&nettle_ctx[0].gcm, TAG, buf + n);
  }
}
static int nt_open(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  uint8_t t[TAG];
  if (m->chacha) {
    chacha_poly1305_set_nonce(&nettle_ctx[1].cp, nonce);
    chacha_poly1305_decrypt(&nettle_ctx[1].cp, n, buf, buf);
    chacha_poly1305_digest(&nettle_ctx[1].cp, TAG, t);
  } else {
    gcm_aes128_set_iv(&nettle_ctx[0].gcm, 12, nonce);
    gcm_aes128_decrypt(&nettle_ctx[0].gcm, n, buf, buf);
    gcm_aes128_digest(&nettle_ctx[0].gcm, TAG, t);
  }
  return !memeql_sec(t, buf + n, TAG);
}

/* libsodium (ChaCha20-Poly1305 IETF only; its AES-GCM is AES-256 only). */
static void na_init(impl *m) {
  if (sodium_init() < 0)
    die("sodium_init");
  m->state = key;
}
static void na_seal(impl *m __attribute__((unused)), const uint8_t *nonce,
                    uint8_t *buf, size_t n) {
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(buf, buf + n, NULL, buf, n,
                                                     NULL, 0, NULL, nonce, key);
}
static int na_open(impl *m __attribute__((unused)), const uint8_t *nonce,
                   uint8_t *buf, size_t n) {
  return crypto_aead_chacha20poly1305_ietf_decrypt_detached(
             buf, NULL, buf, n, buf + n, NULL, 0, nonce, key) != 0;
}

/* OpenSSL 3.0 EVP: one context per key, set up once; per datagram only the
 * nonce is set (EVP_*Init_ex with cipher and key NULL). */
static void os_init(impl *m) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  EVP_CIPHER *ciph = EVP_CIPHER_fetch(
      NULL, m->chacha ? "ChaCha20-Poly1305" : "AES-128-GCM", NULL);
  if (!c || !ciph || EVP_CipherInit_ex(c, ciph, NULL, NULL, NULL, -1) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) != 1 ||
      EVP_CipherInit_ex(c, NULL, NULL, key, NULL, -1) != 1)
    die("EVP init");
  EVP_CIPHER_free(ciph);
  m->state = c;
}
static void os_seal(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  int l = 0;
  if (EVP_CipherInit_ex(m->state, NULL, NULL, NULL, nonce, 1) != 1 ||
      EVP_CipherUpdate(m->state, buf, &l, buf, (int)n) != 1 ||
      EVP_CipherFinal_ex(m->state, buf + l, &l) != 1 ||
      EVP_CIPHER_CTX_ctrl(m->state, EVP_CTRL_AEAD_GET_TAG, TAG, buf + n) != 1)
    die("EVP seal");
}
static int os_open(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  int l = 0;
  if (EVP_CipherInit_ex(m->state, NULL, NULL, NULL, nonce, 0) != 1 ||
      EVP_CipherUpdate(m->state, buf, &l, buf, (int)n) != 1 ||
      EVP_CIPHER_CTX_ctrl(m->state, EVP_CTRL_AEAD_SET_TAG, TAG, buf + n) != 1)
    return 1;
  return EVP_CipherFinal_ex(m->state, buf + l, &l) != 1;
}

/* What src/codec.c does: EVP_CipherInit_ex2 (fewer checks per call than
 * EVP_CipherInit_ex) with only the nonce and the direction, the tag read and
 * set through an OSSL_PARAM (for open: given to the init call) rather than
 * through EVP_CIPHER_CTX_ctrl's translation; one context per key for both
 * directions. */
static void os2_init(impl *m) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  EVP_CIPHER *ciph = EVP_CIPHER_fetch(
      NULL, m->chacha ? "ChaCha20-Poly1305" : "AES-128-GCM", NULL);
  size_t ivlen = 12;
  OSSL_PARAM p[2] = {
      OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen),
      OSSL_PARAM_construct_end()};
  if (!c || !ciph || EVP_CipherInit_ex2(c, ciph, key, NULL, 1, p) != 1)
    die("EVP init");
  EVP_CIPHER_free(ciph);
  m->state = c;
}
static void os2_seal(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  OSSL_PARAM p[2] = {OSSL_PARAM_construct_octet_string(
                         OSSL_CIPHER_PARAM_AEAD_TAG, buf + n, TAG),
                     OSSL_PARAM_construct_end()};
  int l = 0, f = 0;
  if (EVP_CipherInit_ex2(m->state, NULL, NULL, nonce, 1, NULL) != 1 ||
      EVP_CipherUpdate(m->state, buf, &l, buf, (int)n) != 1 ||
      EVP_CipherFinal_ex(m->state, buf + l, &f) != 1 ||
      EVP_CIPHER_CTX_get_params(m->state, p) != 1)
    die("EVP seal");
}
static int os2_open(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  OSSL_PARAM p[2] = {OSSL_PARAM_construct_octet_string(
                         OSSL_CIPHER_PARAM_AEAD_TAG, buf + n, TAG),
                     OSSL_PARAM_construct_end()};
  int l = 0, f = 0;
  return EVP_CipherInit_ex2(m->state, NULL, NULL, nonce, 0, p) != 1 ||
         EVP_CipherUpdate(m->state, buf, &l, buf, (int)n) != 1 ||
         EVP_CipherFinal_ex(m->state, buf + l, &f) != 1;
}

/* libgcrypt 1.10 (installed as libgcrypt20-dev; GnuPG's library): one handle
 * per key, setiv resets it per datagram. */
static void gc_init(impl *m) {
  gcry_cipher_hd_t h;
  if (!gcry_check_version(NULL) ||
      gcry_cipher_open(
          &h, m->chacha ? GCRY_CIPHER_CHACHA20 : GCRY_CIPHER_AES128,
          m->chacha ? GCRY_CIPHER_MODE_POLY1305 : GCRY_CIPHER_MODE_GCM, 0) ||
      gcry_cipher_setkey(h, key, m->chacha ? 32 : 16))
    die("gcry init");
  m->state = h;
}
static void gc_seal(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  if (gcry_cipher_setiv(m->state, nonce, 12) || gcry_cipher_final(m->state) ||
      gcry_cipher_encrypt(m->state, buf, n, NULL, 0) ||
      gcry_cipher_gettag(m->state, buf + n, TAG))
    die("gcry seal");
}
static int gc_open(impl *m, const uint8_t *nonce, uint8_t *buf, size_t n) {
  return gcry_cipher_setiv(m->state, nonce, 12) ||
         gcry_cipher_final(m->state) ||
         gcry_cipher_decrypt(m->state, buf, n, NULL, 0) ||
         gcry_cipher_checktag(m->state, buf + n, TAG);
}

static impl impls[] = {
    {"gnutls encryptv2/decryptv2", 0, gtv2_init, gtv2_seal, gtv2_open, NULL},
    {"gnutls one-shot", 0, gtv2_init, gt1_seal, gt1_open, NULL},
    {"nettle", 0, nt_init, nt_seal, nt_open, NULL},
    {"openssl EVP init_ex+ctrl", 0, os_init, os_seal, os_open, NULL},
    {"openssl EVP init_ex2+param", 0, os2_init, os2_seal, os2_open, NULL},
    {"libgcrypt", 0, gc_init, gc_seal, gc_open, NULL},
    {"gnutls encryptv2/decryptv2", 1, gtv2_init, gtv2_seal, gtv2_open, NULL},
    {"nettle", 1, nt_init, nt_seal, nt_open, NULL},
    {"libsodium ietf detached", 1, na_init, na_seal, na_open, NULL},
    {"openssl EVP init_ex+ctrl", 1, os_init, os_seal, os_open, NULL},
    {"openssl EVP init_ex2+param", 1, os2_init, os2_seal, os2_open, NULL},
    {"libgcrypt", 1, gc_init, gc_seal, gc_open, NULL},
};
#define NIMPL (sizeof impls / sizeof impls[0])

/* ---- correctness ------------------------------------------------------- */

static size_t unhex(const char *s, uint8_t *out) {
  size_t n = 0;
  for (; s[0] && s[1]; s += 2) {
    unsigned v;
    sscanf(s, "%2x", &v);
    out[n++] = (uint8_t)v;
  }
  return n;
}

/* SPEC §3.2: key "testkey", nonce 00..0b, plaintext "hello". */
static void check_vectors(void) {
  static const char *const want[2] = {
      "abd41d62c92ac71ee2610bcc4df1512c064c5bfc24",
      "d0651279c87462b372f13db42da908c2d3ba8d364a"};
  uint8_t k[32], nonce[12], buf[64], exp[64];
  struct sha256_ctx h;
  sha256_init(&h);
  sha256_update(&h, 7, (const uint8_t *)"testkey");
  sha256_update(&h, 15, (const uint8_t *)"v2ray-quic-salt");
  sha256_digest(&h, 32, k);
  memcpy(key, k, 32);
  for (int i = 0; i < 12; i++)
    nonce[i] = (uint8_t)i;
  for (size_t i = 0; i < NIMPL; i++) {
    impl *m = &impls[i];
    m->init(m);
    memcpy(buf, "hello", 5);
    m->seal(m, nonce, buf, 5);
    unhex(want[m->chacha], exp);
    if (memcmp(buf, exp, 21) != 0)
      die("SPEC vector mismatch");
    if (m->open(m, nonce, buf, 5) != 0 || memcmp(buf, "hello", 5) != 0)
      die("SPEC vector does not open");
    buf[0] ^= 1;
    m->seal(m, nonce, buf, 5);
    buf[5] ^= 1;
    if (m->open(m, nonce, buf, 5) == 0)
      die("forged tag accepted");
  }
}

/* ---- timing ------------------------------------------------------------ */

static uint8_t buf[MAXPKT + TAG], ct[MAXPKT + TAG], ref[2][MAXPKT + TAG];
static uint8_t nonce0[12] = {1, 2, 3};

static size_t iters_for(size_t n) {
  size_t it = 40000000 / n;
  return it < 2000 ? 2000 : it > 300000 ? 300000 : it;
}

static double time_seal(impl *m, size_t n) {
  size_t it = iters_for(n);
  uint8_t nonce[12];
  memcpy(nonce, nonce0, 12);
  double t = now();
  for (size_t i = 0; i < it; i++) {
    memcpy(nonce + 4, &i, sizeof i);
    m->seal(m, nonce, buf, n);
  }
  return (now() - t) / it;
}

/* ct holds a valid datagram under nonce0 */
static double time_open(impl *m, size_t n) {
  size_t it = iters_for(n);
  int bad = 0;
  double t = now();
  for (size_t i = 0; i < it; i++) {
    memcpy(buf, ct, n + TAG);
    bad |= m->open(m, nonce0, buf, n);
  }
  t = (now() - t) / it;
  if (bad)
    die("open failed during timing");
  return t;
}

static double time_copy(size_t n) {
  size_t it = iters_for(n);
  double t = now();
  for (size_t i = 0; i < it; i++) {
    memcpy(buf, ct, n + TAG);
    __asm__ __volatile__("" : : "r"(buf) : "memory");
  }
  return (now() - t) / it;
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int r) {
  qsort(v, (size_t)r, sizeof *v, cmpd);
  return r % 2 ? v[r / 2] : (v[r / 2 - 1] + v[r / 2]) / 2;
}

static void row(const char *alg, const char *name, const char *op, size_t n,
                double t) {
  printf("%-17s %-28s %-4s %6zu B %9.0f ns %6.2f GB/s %6.3f s/GB\n", alg, name,
         op, n, t * 1e9, n / t / 1e9, t / n * 1e9);
}

int main(int argc, char **argv) {
  int r = argc > 1 ? atoi(argv[1]) : 5;
  static double ts[NIMPL][2][MAXR], tc[MAXR];
  static uint8_t rnd[12 * 4096], nonce[12];

  if (r < 1 || r > MAXR)
    die("repetitions: 1..31");
  gnutls_global_init();
  check_vectors();
  printf("# GnuTLS %s, Nettle %d.%d, libsodium %s, %s, libgcrypt %s; "
         "median of %d repetitions\n",
         gnutls_check_version(NULL), NETTLE_VERSION_MAJOR, NETTLE_VERSION_MINOR,
         sodium_version_string(), OpenSSL_version(OPENSSL_VERSION),
         gcry_check_version(NULL), r);
  /* now a benchmark key; each implementation sets up again with it */
  memset(key, 7, sizeof key);
  for (size_t i = 0; i < NIMPL; i++) {
    impl *m = &impls[i];
    if (m->init == os_init || m->init == os2_init)
      EVP_CIPHER_CTX_free(m->state);
    else if (m->init == gtv2_init)
      gnutls_aead_cipher_deinit(m->state);
    else if (m->init == gc_init)
      gcry_cipher_close(m->state);
    m->init(m);
  }

  for (size_t s = 0; s < NSIZES; s++) {
    size_t n = sizes[s];
    /* cross-check: every implementation seals the same bytes */
    for (int a = 0; a < 2; a++) {
      int first = 1;
      for (size_t i = 0; i < NIMPL; i++) {
        impl *m = &impls[i];
        if (m->chacha != a)
          continue;
        for (size_t j = 0; j < n; j++)
          buf[j] = (uint8_t)(j * 31 + 7);
        m->seal(m, nonce0, buf, n);
        if (first)
          memcpy(ref[a], buf, n + TAG), first = 0;
        else if (memcmp(ref[a], buf, n + TAG) != 0)
          die("implementations disagree");
        if (m->open(m, nonce0, buf, n) != 0 ||
            buf[n - 1] != (uint8_t)((n - 1) * 31 + 7))
          die("round trip failed");
      }
    }
    for (int k = 0; k < r; k++) {
      for (size_t i = 0; i < NIMPL; i++) {
        impl *m = &impls[i];
        memcpy(ct, ref[m->chacha], n + TAG);
        ts[i][0][k] = time_seal(m, n);
        memcpy(ct, ref[m->chacha], n + TAG);
        ts[i][1][k] = time_open(m, n);
      }
      tc[k] = time_copy(n);
    }
    for (size_t i = 0; i < NIMPL; i++) {
      const char *alg = impls[i].chacha ? "chacha20-poly1305" : "aes-128-gcm";
      row(alg, impls[i].name, "seal", n, median(ts[i][0], r));
      row(alg, impls[i].name, "open", n, median(ts[i][1], r));
    }
    row("-", "memcpy only (open includes it)", "copy", n, median(tc, r));
    fflush(stdout);
  }

  {
    size_t it = 200000;
    double t = now();
    for (size_t i = 0; i < it; i++)
      gnutls_rnd(GNUTLS_RND_NONCE, nonce, 12);
    printf("gnutls_rnd(NONCE, 12 bytes) per datagram: %.0f ns\n",
           (now() - t) / it * 1e9);
    t = now();
    for (size_t i = 0; i < it; i++) {
      if (i % 4096 == 0)
        gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd);
      memcpy(nonce, rnd + (i % 4096) * 12, 12);
    }
    printf("gnutls_rnd(NONCE, 48 KiB) per 4096 datagrams: %.0f ns/datagram\n",
           (now() - t) / it * 1e9);
  }
  gnutls_global_deinit();
  return 0;
}
