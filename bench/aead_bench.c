/*
 * Micro-benchmark for the per-datagram work of quicmux's packet wrapping (SPEC
 * §3): AEAD seal of one ~1424-byte QUIC datagram with Nettle (what src/codec.c
 * uses) versus GnuTLS's AEAD API (the accelerated code ngtcp2's packet
 * protection already uses), and the 12-byte random nonce per datagram
 * (gnutls_rnd per datagram vs. one bulk call), and GnuTLS's one-shot
 * encrypt/decrypt versus the in-place encryptv2/decryptv2 calls that
 * src/codec.c makes.
 *
 * Build and run (not part of the project build):
 *   cc -O2 -o /tmp/aead_bench bench/aead_bench.c -lgnutls -lnettle &&
 * /tmp/aead_bench
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nettle/chacha-poly1305.h>
#include <nettle/gcm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define PKT 1424
#define N 200000

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(const char *what, double t, size_t n, size_t bytes) {
  printf("%-46s %7.0f ns/datagram  %6.2f GB/s  (%.3f s/GB)\n", what,
         t / n * 1e9, bytes ? bytes / t / 1e9 : 0.0,
         bytes ? t / (bytes / 1e9) : 0.0);
}

int main(void) {
  static uint8_t buf[PKT + 16], key[32], nonce[12], rnd[12 * 4096];
  struct gcm_aes128_ctx gcm;
  struct chacha_poly1305_ctx cp;
  gnutls_aead_cipher_hd_t h_gcm, h_cp;
  gnutls_datum_t k128 = {key, 16}, k256 = {key, 32};
  size_t outlen;
  double t;
  int i;

  gnutls_global_init();
  memset(key, 7, sizeof key);
  memset(buf, 1, sizeof buf);

  gcm_aes128_set_key(&gcm, key);
  t = now();
  for (i = 0; i < N; i++) {
    nonce[0] = (uint8_t)i;
    gcm_aes128_set_iv(&gcm, 12, nonce);
    gcm_aes128_encrypt(&gcm, PKT, buf, buf);
    gcm_aes128_digest(&gcm, 16, buf + PKT);
  }
  report("nettle gcm_aes128 seal", now() - t, N, (size_t)N * PKT);

  gnutls_aead_cipher_init(&h_gcm, GNUTLS_CIPHER_AES_128_GCM, &k128);
  t = now();
  for (i = 0; i < N; i++) {
    nonce[0] = (uint8_t)i;
    outlen = sizeof buf;
    gnutls_aead_cipher_encrypt(h_gcm, nonce, 12, NULL, 0, 16, buf, PKT, buf,
                               &outlen);
  }
  report("gnutls_aead_cipher_encrypt AES-128-GCM", now() - t, N,
         (size_t)N * PKT);

  /* What src/codec.c does since 1074989: in place, one giovec, tag after the
   * data. */
  t = now();
  for (i = 0; i < N; i++) {
    giovec_t iov = {buf, PKT};
    size_t tag_len = 16;
    nonce[0] = (uint8_t)i;
    gnutls_aead_cipher_encryptv2(h_gcm, nonce, 12, NULL, 0, &iov, 1, buf + PKT,
                                 &tag_len);
  }
  report("gnutls_aead_cipher_encryptv2 AES-128-GCM", now() - t, N,
         (size_t)N * PKT);

  /* Open: one-shot decrypt (out of place) vs decryptv2 in place (codec.c). The
   * tag does not verify (the buffer is not a real ciphertext); both paths still
   * do all the work before the tag comparison. */
  {
    static uint8_t out[PKT + 16];
    t = now();
    for (i = 0; i < N; i++) {
      size_t olen = sizeof out;
      nonce[0] = (uint8_t)i;
      gnutls_aead_cipher_decrypt(h_gcm, nonce, 12, NULL, 0, 16, buf, PKT + 16,
                                 out, &olen);
    }
    report("gnutls_aead_cipher_decrypt AES-128-GCM", now() - t, N,
           (size_t)N * PKT);
    t = now();
    for (i = 0; i < N; i++) {
      giovec_t iov = {buf, PKT};
      nonce[0] = (uint8_t)i;
      gnutls_aead_cipher_decryptv2(h_gcm, nonce, 12, NULL, 0, &iov, 1,
                                   buf + PKT, 16);
    }
    report("gnutls_aead_cipher_decryptv2 AES-128-GCM", now() - t, N,
           (size_t)N * PKT);
  }

  chacha_poly1305_set_key(&cp, key);
  t = now();
  for (i = 0; i < N; i++) {
    nonce[0] = (uint8_t)i;
    chacha_poly1305_set_nonce(&cp, nonce);
    chacha_poly1305_encrypt(&cp, PKT, buf, buf);
    chacha_poly1305_digest(&cp, 16, buf + PKT);
  }
  report("nettle chacha_poly1305 seal", now() - t, N, (size_t)N * PKT);

  gnutls_aead_cipher_init(&h_cp, GNUTLS_CIPHER_CHACHA20_POLY1305, &k256);
  t = now();
  for (i = 0; i < N; i++) {
    nonce[0] = (uint8_t)i;
    outlen = sizeof buf;
    gnutls_aead_cipher_encrypt(h_cp, nonce, 12, NULL, 0, 16, buf, PKT, buf,
                               &outlen);
  }
  report("gnutls_aead_cipher_encrypt CHACHA20-POLY1305", now() - t, N,
         (size_t)N * PKT);

  t = now();
  for (i = 0; i < N; i++)
    gnutls_rnd(GNUTLS_RND_NONCE, nonce, 12);
  report("gnutls_rnd(NONCE, 12 bytes) per datagram", now() - t, N, 0);

  t = now();
  for (i = 0; i < N; i++) {
    if (i % 4096 == 0)
      gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd);
    memcpy(nonce, rnd + (i % 4096) * 12, 12);
  }
  report("gnutls_rnd(NONCE, 48 KiB) per 4096 datagrams", now() - t, N, 0);

  gnutls_aead_cipher_deinit(h_gcm);
  gnutls_aead_cipher_deinit(h_cp);
  gnutls_global_deinit();
  return 0;
}
