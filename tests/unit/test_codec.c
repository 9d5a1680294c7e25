/*
 * Unit tests for the codec (SPEC §3 packet wrapping, §4 names, §5 headers).
 *
 * Expected ciphertexts: the "testkey" vectors are the SPEC §3.2 table; the
 * empty-key vectors were computed independently with Python `hashlib` +
 * `cryptography` (AESGCM / ChaCha20Poly1305, nonce 00..0b, no AD).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <nettle/chacha-poly1305.h>
#include <nettle/gcm.h>
#include <nettle/sha2.h>

#include "codec.h"

/* ---- helpers ---------------------------------------------------------- */

static const qm_security all_sec[] = {QM_SEC_NONE, QM_SEC_AES_128_GCM,
                                      QM_SEC_CHACHA20_POLY1305};
static const qm_header all_hdr[] = {QM_HDR_NONE, QM_HDR_SRTP,
                                    QM_HDR_UTP,  QM_HDR_WECHAT_VIDEO,
                                    QM_HDR_DTLS, QM_HDR_WIREGUARD};
#define N_SEC (sizeof all_sec / sizeof all_sec[0])
#define N_HDR (sizeof all_hdr / sizeof all_hdr[0])

static size_t expected_h(qm_header h) {
  switch (h) {
  case QM_HDR_SRTP:
  case QM_HDR_UTP:
  case QM_HDR_WIREGUARD:
    return 4;
  case QM_HDR_WECHAT_VIDEO:
  case QM_HDR_DTLS:
    return 13;
  default:
    return 0;
  }
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Decode hex (spaces allowed) into out; returns the byte count. */
static size_t unhex(const char *s, uint8_t *out, size_t cap) {
  size_t n = 0;
  while (*s) {
    if (*s == ' ') {
      s++;
      continue;
    }
    int hi = hexval(s[0]);
    assert_true(hi >= 0 && s[1] != '\0');
    int lo = hexval(s[1]);
    assert_true(lo >= 0);
    assert_true(n < cap);
    out[n++] = (uint8_t)(hi << 4 | lo);
    s += 2;
  }
  return n;
}

static void assert_hex(const uint8_t *got, const char *want_hex) {
  uint8_t want[256];
  size_t n = unhex(want_hex, want, sizeof want);
  if (memcmp(got, want, n) != 0) {
    char buf[2 * sizeof want + 1];
    for (size_t i = 0; i < n; i++)
      snprintf(buf + 2 * i, 3, "%02x", got[i]);
    fail_msg("got %s, want %s", buf, want_hex);
  }
}

/* Deterministic xorshift32 for reproducible "random" test data. */
static uint32_t rng_state = 0x12345678u;
static uint32_t rng(void) {
  uint32_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return rng_state = x;
}
static void rng_fill(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)rng();
}

/* An exact-size heap copy so that valgrind catches any access past the end. */
static uint8_t *exact_copy(const uint8_t *src, size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  if (n)
    memcpy(p, src, n);
  return p;
}

static const uint8_t nonce_0_11[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};

/* ---- key derivation and ciphertext vectors (SPEC §3.2) ---------------- */

/* K = SHA-256(key || "v2ray-quic-salt"), checked against the SPEC table. */
static void test_kdf_k_values(void **state) {
  (void)state;
  static const struct {
    const char *key;
    const char *k;
  } v[] = {
      {"", "445ac95fc8deb3099fd1a8ce3317f88739dce62f8a3eccdaa39f2c5407833361"},
      {"testkey",
       "e91439b223c1b28ff7b893b5ca75295540d081c8c14a410ec0387a1561f0ce0d"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    struct sha256_ctx h;
    uint8_t k[32];
    sha256_init(&h);
    sha256_update(&h, strlen(v[i].key), (const uint8_t *)v[i].key);
    sha256_update(&h, 15, (const uint8_t *)"v2ray-quic-salt");
    sha256_digest(&h, sizeof k, k);
    assert_hex(k, v[i].k);
  }
}

/* Seal "hello" with nonce 00..0b and header none; the wire must be
 * nonce || ciphertext || tag. Then open it again. */
static void check_hello_vector(qm_security sec, const char *key, size_t keylen,
                               const char *want_hex) {
  qm_codec c;
  assert_int_equal(qm_codec_init(&c, sec, key, keylen, QM_HDR_NONE), QM_OK);
  assert_int_equal(qm_codec_prefix(&c), 12);
  assert_int_equal(qm_codec_overhead(&c), 28);
  uint8_t *buf = malloc(5 + 28);
  assert_non_null(buf);
  memcpy(buf + 12, "hello", 5);
  assert_int_equal(qm_codec_seal_nonce(&c, buf, 5 + 28, 5, nonce_0_11), 33);
  assert_memory_equal(buf, nonce_0_11, 12);
  assert_hex(buf + 12, want_hex);
  assert_int_equal(c.sealed, 1);

  uint8_t *quic = NULL;
  assert_int_equal(qm_codec_open(&c, buf, 33, &quic), 5);
  assert_ptr_equal(quic, buf + 12);
  assert_memory_equal(quic, "hello", 5);
  assert_int_equal(c.opened, 1);
  free(buf);
  qm_codec_clear(&c);
}

static void test_vector_testkey(void **state) {
  (void)state;
  /* SPEC §3.2 */
  check_hello_vector(QM_SEC_AES_128_GCM, "testkey", 7,
                     "abd41d62c92ac71ee2610bcc4df1512c064c5bfc24");
  check_hello_vector(QM_SEC_CHACHA20_POLY1305, "testkey", 7,
                     "d0651279c87462b372f13db42da908c2d3ba8d364a");
  /* keylen is honoured: bytes after it are not part of the key */
  check_hello_vector(QM_SEC_AES_128_GCM, "testkeyXYZ", 7,
                     "abd41d62c92ac71ee2610bcc4df1512c064c5bfc24");
  check_hello_vector(QM_SEC_CHACHA20_POLY1305, "testkeyXYZ", 7,
                     "d0651279c87462b372f13db42da908c2d3ba8d364a");
}

static void test_vector_empty_key(void **state) {
  (void)state;
  /* K = SHA-256("v2ray-quic-salt"); vectors from Python `cryptography`. */
  static const char *aes = "91369316aeb038d34dbd81c5f89b7017b5fc9f59b6";
  static const char *cha = "36665244eb02e23b6292d0ddd2c228b7a74c359965";
  check_hello_vector(QM_SEC_AES_128_GCM, NULL, 0, aes);
  check_hello_vector(QM_SEC_AES_128_GCM, "", 0, aes);
  check_hello_vector(QM_SEC_AES_128_GCM, "ignored", 0, aes);
  check_hello_vector(QM_SEC_CHACHA20_POLY1305, NULL, 0, cha);
  check_hello_vector(QM_SEC_CHACHA20_POLY1305, "", 0, cha);
  check_hello_vector(QM_SEC_CHACHA20_POLY1305, "ignored", 0, cha);
}

/* Empty plaintext: the wire is nonce || tag only. */
static void test_vector_empty_plaintext(void **state) {
  (void)state;
  static const struct {
    qm_security sec;
    const char *key;
    const char *tag;
  } v[] = {
      {QM_SEC_AES_128_GCM, "testkey", "cb121cf24c87bb7a96e9afb1590e344b"},
      {QM_SEC_CHACHA20_POLY1305, "testkey", "99a531d41ad8d92de3b6757bddc1c155"},
      {QM_SEC_AES_128_GCM, "", "7a0a671fba08761401703b36ee980f14"},
      {QM_SEC_CHACHA20_POLY1305, "", "bd87483cf30b0604267a524b2af57123"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    qm_codec c;
    assert_int_equal(
        qm_codec_init(&c, v[i].sec, v[i].key, strlen(v[i].key), QM_HDR_NONE),
        QM_OK);
    uint8_t *buf = malloc(28);
    assert_non_null(buf);
    assert_int_equal(qm_codec_seal_nonce(&c, buf, 28, 0, nonce_0_11), 28);
    assert_memory_equal(buf, nonce_0_11, 12);
    assert_hex(buf + 12, v[i].tag);
    uint8_t *quic = NULL;
    assert_int_equal(qm_codec_open(&c, buf, 28, &quic), 0);
    assert_ptr_equal(quic, buf + 12);
    free(buf);
    qm_codec_clear(&c);
  }
}

/* With a header, the vector sits after the H header bytes. */
static void test_vector_with_header(void **state) {
  (void)state;
  qm_codec c;
  assert_int_equal(qm_codec_init_seeded(&c, QM_SEC_AES_128_GCM, "testkey", 7,
                                        QM_HDR_WECHAT_VIDEO, 0x0000678du),
                   QM_OK);
  assert_int_equal(qm_codec_prefix(&c), 25);
  assert_int_equal(qm_codec_overhead(&c), 41);
  uint8_t buf[5 + 41];
  memcpy(buf + 25, "hello", 5);
  assert_int_equal(qm_codec_seal_nonce(&c, buf, sizeof buf, 5, nonce_0_11), 46);
  assert_hex(buf, "a1080000678e00101118302230"
                  "000102030405060708090a0b"
                  "abd41d62c92ac71ee2610bcc4df1512c064c5bfc24");

  /* The nonce may alias its place in buf. */
  memcpy(buf + 25, "hello", 5);
  memcpy(buf + 13, nonce_0_11, 12);
  assert_int_equal(qm_codec_seal_nonce(&c, buf, sizeof buf, 5, buf + 13), 46);
  assert_hex(buf, "a1080000678f00101118302230"
                  "000102030405060708090a0b"
                  "abd41d62c92ac71ee2610bcc4df1512c064c5bfc24");
  qm_codec_clear(&c);
}

/* ---- sizes ------------------------------------------------------------- */

static void test_prefix_overhead(void **state) {
  (void)state;
  for (size_t s = 0; s < N_SEC; s++) {
    for (size_t h = 0; h < N_HDR; h++) {
      qm_codec c;
      assert_int_equal(qm_codec_init(&c, all_sec[s], "k", 1, all_hdr[h]),
                       QM_OK);
      size_t H = expected_h(all_hdr[h]);
      int aead = all_sec[s] != QM_SEC_NONE;
      assert_int_equal(c.header_len, H);
      assert_int_equal(qm_codec_prefix(&c), H + (aead ? 12 : 0));
      assert_int_equal(qm_codec_overhead(&c), H + (aead ? 28 : 0));
      assert_true(qm_codec_prefix(&c) <= QM_CODEC_MAX_PREFIX);
      assert_true(qm_codec_overhead(&c) <= QM_CODEC_MAX_OVERHEAD);
      qm_codec_clear(&c);
    }
  }
  assert_int_equal(QM_CODEC_MAX_OVERHEAD, 13 + 12 + 16);
}

/* ---- header patterns (SPEC §5) ------------------------------------------ */

/* Seal `count` empty-ish datagrams and check each header against want[i].
 * Runs once per security mode: the header must not depend on it. */
static void check_headers(qm_header hdr, uint32_t seed, const char *const *want,
                          size_t count) {
  for (size_t s = 0; s < N_SEC; s++) {
    qm_codec c;
    assert_int_equal(qm_codec_init_seeded(&c, all_sec[s], "k", 1, hdr, seed),
                     QM_OK);
    size_t ov = qm_codec_overhead(&c);
    for (size_t i = 0; i < count; i++) {
      uint8_t buf[QM_CODEC_MAX_OVERHEAD + 3];
      memset(buf, 0xee, sizeof buf);
      assert_int_equal(qm_codec_seal(&c, buf, ov + 3, 3), (ssize_t)(ov + 3));
      assert_hex(buf, want[i]);
    }
    qm_codec_clear(&c);
  }
  /* qm_codec_next_header gives the same sequence. */
  qm_codec c;
  assert_int_equal(qm_codec_init_seeded(&c, QM_SEC_NONE, NULL, 0, hdr, seed),
                   QM_OK);
  for (size_t i = 0; i < count; i++) {
    uint8_t out[QM_CODEC_MAX_HEADER];
    qm_codec_next_header(&c, out);
    assert_hex(out, want[i]);
  }
}

static void test_header_srtp(void **state) {
  (void)state;
  /* SPEC's captured b5e87ad2, …d3, …d4: counter start 0x7ad1. */
  static const char *const want[] = {
      "b5e87ad2", "b5e87ad3", "b5e87ad4", "b5e87ad5", "b5e87ad6",
      "b5e87ad7", "b5e87ad8", "b5e87ad9", "b5e87ada", "b5e87adb",
  };
  check_headers(QM_HDR_SRTP, 0x70df7ad1u, want, 10);
  /* wrap-around mod 2^16 */
  static const char *const wrap[] = {"b5e8fffe", "b5e8ffff", "b5e80000",
                                     "b5e80001", "b5e80002"};
  check_headers(QM_HDR_SRTP, 0xabcdfffdu, wrap, 5);
  static const char *const wrap2[] = {"b5e80000", "b5e80001"};
  check_headers(QM_HDR_SRTP, 0x0000ffffu, wrap2, 2);
}

static void test_header_utp(void **state) {
  (void)state;
  /* SPEC's captured 70df0100 on every datagram. */
  static const char *const want[] = {
      "70df0100", "70df0100", "70df0100", "70df0100", "70df0100",
      "70df0100", "70df0100", "70df0100", "70df0100", "70df0100",
  };
  check_headers(QM_HDR_UTP, 0x70df7ad1u, want, 10);
  static const char *const want2[] = {"ffff0100", "ffff0100", "ffff0100"};
  check_headers(QM_HDR_UTP, 0xffff0000u, want2, 3);
}

static void test_header_wechat(void **state) {
  (void)state;
  /* SPEC's captured a1080000678e00101118302230, …678f…, …6790… */
  static const char *const want[] = {
      "a1080000678e00101118302230", "a1080000678f00101118302230",
      "a1080000679000101118302230", "a1080000679100101118302230",
      "a1080000679200101118302230", "a1080000679300101118302230",
      "a1080000679400101118302230", "a1080000679500101118302230",
  };
  check_headers(QM_HDR_WECHAT_VIDEO, 0x1234678du, want, 8);
  /* The start value is a uint16 but the sequence is 32-bit: no 16-bit wrap. */
  static const char *const big[] = {
      "a1080000fffe00101118302230", "a1080000ffff00101118302230",
      "a1080001000000101118302230", "a1080001000100101118302230"};
  check_headers(QM_HDR_WECHAT_VIDEO, 0x0000fffdu, big, 4);

  /* 32-bit wrap-around at 0xffffffff (reachable only after ~4e9 packets). */
  qm_codec c;
  assert_int_equal(qm_codec_init_seeded(&c, QM_SEC_AES_128_GCM, "k", 1,
                                        QM_HDR_WECHAT_VIDEO, 0),
                   QM_OK);
  c.wechat_seq = 0xfffffffeu;
  static const char *const wrap[] = {"a108ffffffff00101118302230",
                                     "a1080000000000101118302230",
                                     "a1080000000100101118302230"};
  for (size_t i = 0; i < 3; i++) {
    uint8_t buf[41 + 1];
    assert_int_equal(qm_codec_seal(&c, buf, sizeof buf, 1), 42);
    assert_hex(buf, wrap[i]);
  }
  qm_codec_clear(&c);
}

static void test_header_dtls(void **state) {
  (void)state;
  /* SPEC: 17fefd6973 0000 00000000 0011, then …0001 0022, …0002 0033; the
   * length goes 17, 34, 51, 68, 85, 52, 69, 86, 53, 70, 87, 54, 71, … */
  static const char *const want[] = {
      "17fefd6973 0000 00000000 0011", "17fefd6973 0000 00000001 0022",
      "17fefd6973 0000 00000002 0033", "17fefd6973 0000 00000003 0044",
      "17fefd6973 0000 00000004 0055", "17fefd6973 0000 00000005 0034",
      "17fefd6973 0000 00000006 0045", "17fefd6973 0000 00000007 0056",
      "17fefd6973 0000 00000008 0035", "17fefd6973 0000 00000009 0046",
      "17fefd6973 0000 0000000a 0057", "17fefd6973 0000 0000000b 0036",
      "17fefd6973 0000 0000000c 0047",
  };
  check_headers(QM_HDR_DTLS, 0x69730000u, want, 13);

  /* The length field stays within 17..100 for a long run, and follows the
   * rule "add 17, subtract 50 if > 100". */
  qm_codec c;
  assert_int_equal(
      qm_codec_init_seeded(&c, QM_SEC_NONE, NULL, 0, QM_HDR_DTLS, 0xbeef0000u),
      QM_OK);
  unsigned len = 17;
  for (uint32_t i = 0; i < 1000; i++) {
    uint8_t out[13];
    qm_codec_next_header(&c, out);
    assert_int_equal(out[3], 0xbe);
    assert_int_equal(out[4], 0xef);
    assert_int_equal((uint32_t)out[7] << 24 | (uint32_t)out[8] << 16 |
                         (uint32_t)out[9] << 8 | out[10],
                     i);
    unsigned got = (unsigned)out[11] << 8 | out[12];
    assert_int_equal(got, len);
    assert_true(got >= 17 && got <= 100);
    len += 17;
    if (len > 100)
      len -= 50;
  }

  /* 32-bit sequence wrap-around. */
  c.dtls_seq = 0xffffffffu;
  c.dtls_len = 17;
  uint8_t out[13];
  qm_codec_next_header(&c, out);
  assert_hex(out, "17fefdbeef 0000 ffffffff 0011");
  qm_codec_next_header(&c, out);
  assert_hex(out, "17fefdbeef 0000 00000000 0022");
}

static void test_header_wireguard(void **state) {
  (void)state;
  static const char *const want[] = {"04000000", "04000000", "04000000",
                                     "04000000", "04000000", "04000000"};
  check_headers(QM_HDR_WIREGUARD, 0x12345678u, want, 6);
  check_headers(QM_HDR_WIREGUARD, 0, want, 6);
}

static void test_header_none(void **state) {
  (void)state;
  /* H = 0: the payload starts right at buf (no AEAD) or at the nonce. */
  qm_codec c;
  assert_int_equal(
      qm_codec_init_seeded(&c, QM_SEC_NONE, NULL, 0, QM_HDR_NONE, 1), QM_OK);
  uint8_t buf[3] = {1, 2, 3};
  assert_int_equal(qm_codec_seal(&c, buf, 3, 3), 3);
  assert_hex(buf, "010203");
  uint8_t marker = 0x5a;
  qm_codec_next_header(&c, &marker); /* writes nothing */
  assert_int_equal(marker, 0x5a);

  uint8_t nonce[12];
  memset(nonce, 0x77, sizeof nonce);
  assert_int_equal(
      qm_codec_init_seeded(&c, QM_SEC_AES_128_GCM, NULL, 0, QM_HDR_NONE, 1),
      QM_OK);
  uint8_t buf2[28 + 1];
  assert_int_equal(qm_codec_seal_nonce(&c, buf2, sizeof buf2, 1, nonce), 29);
  assert_memory_equal(buf2, nonce, 12);
  qm_codec_clear(&c);
}

/* qm_codec_init draws random start values; check the structure. */
static void test_header_random_init(void **state) {
  (void)state;
  for (int round = 0; round < 20; round++) {
    qm_codec c;
    uint8_t a[13], b[13];

    assert_int_equal(qm_codec_init(&c, QM_SEC_NONE, NULL, 0, QM_HDR_SRTP),
                     QM_OK);
    qm_codec_next_header(&c, a);
    qm_codec_next_header(&c, b);
    assert_int_equal(a[0], 0xb5);
    assert_int_equal(a[1], 0xe8);
    assert_int_equal((uint16_t)((a[2] << 8 | a[3]) + 1), b[2] << 8 | b[3]);

    assert_int_equal(qm_codec_init(&c, QM_SEC_NONE, NULL, 0, QM_HDR_UTP),
                     QM_OK);
    qm_codec_next_header(&c, a);
    qm_codec_next_header(&c, b);
    assert_memory_equal(a, b, 4);
    assert_int_equal(a[2], 0x01);
    assert_int_equal(a[3], 0x00);

    assert_int_equal(
        qm_codec_init(&c, QM_SEC_NONE, NULL, 0, QM_HDR_WECHAT_VIDEO), QM_OK);
    qm_codec_next_header(&c, a);
    qm_codec_next_header(&c, b);
    uint32_t sa = (uint32_t)a[2] << 24 | (uint32_t)a[3] << 16 |
                  (uint32_t)a[4] << 8 | a[5];
    uint32_t sb = (uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 |
                  (uint32_t)b[4] << 8 | b[5];
    assert_true(sa >= 1 && sa <= 65536); /* random 0..65535, then + 1 */
    assert_int_equal(sb, sa + 1);
    assert_hex(a + 6, "00101118302230");
    assert_int_equal(a[0], 0xa1);
    assert_int_equal(a[1], 0x08);

    assert_int_equal(qm_codec_init(&c, QM_SEC_NONE, NULL, 0, QM_HDR_DTLS),
                     QM_OK);
    qm_codec_next_header(&c, a);
    qm_codec_next_header(&c, b);
    assert_hex(a, "17fefd");
    assert_memory_equal(a + 3, b + 3, 2); /* epoch fixed */
    assert_hex(a + 5, "0000 00000000 0011");
    assert_hex(b + 5, "0000 00000001 0022");
  }
}

/* ---- round trips -------------------------------------------------------- */

static void test_round_trip_all(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 2, 15, 16, 17, 100, 1200, 1452};
  uint8_t plain[1452];
  rng_fill(plain, sizeof plain);
  for (size_t s = 0; s < N_SEC; s++) {
    for (size_t h = 0; h < N_HDR; h++) {
      qm_codec tx, rx;
      assert_int_equal(
          qm_codec_init(&tx, all_sec[s], "round trip key", 14, all_hdr[h]),
          QM_OK);
      /* the receiver's own header state is unrelated */
      assert_int_equal(qm_codec_init_seeded(&rx, all_sec[s], "round trip key",
                                            14, all_hdr[h], 0xdeadbeefu),
                       QM_OK);
      size_t pre = qm_codec_prefix(&tx), ov = qm_codec_overhead(&tx);
      uint64_t sealed = 0, opened = 0, shorts = 0;
      for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        size_t n = sizes[z];
        uint8_t *buf = malloc(n + ov ? n + ov : 1); /* exact size */
        assert_non_null(buf);
        memcpy(buf + pre, plain, n);
        ssize_t w = qm_codec_seal(&tx, buf, n + ov, n);
        assert_int_equal(w, (ssize_t)(n + ov));
        sealed++;
        assert_int_equal(tx.sealed, sealed);
        if (all_sec[s] != QM_SEC_NONE && n >= 16)
          assert_memory_not_equal(buf + pre, plain, n);

        uint8_t *quic = NULL;
        ssize_t r = qm_codec_open(&rx, buf, (size_t)w, &quic);
        if (all_sec[s] == QM_SEC_NONE && all_hdr[h] != QM_HDR_NONE && n == 0) {
          /* [header] alone: length <= H is invalid (SPEC §3.3) */
          assert_int_equal(r, QM_EBADMSG);
          shorts++;
        } else {
          assert_int_equal(r, (ssize_t)n);
          assert_ptr_equal(quic, buf + pre);
          if (n)
            assert_memory_equal(quic, plain, n);
          opened++;
        }
        assert_int_equal(rx.opened, opened);
        assert_int_equal(rx.dropped_short, shorts);
        assert_int_equal(rx.dropped_auth, 0);
        free(buf);
      }
      qm_codec_clear(&tx);
      qm_codec_clear(&rx);
    }
  }
}

/* The codec's AEADs (ChaCha20-Poly1305 from OpenSSL, AES-128-GCM from GnuTLS)
 * give the same bytes as Nettle's reference code at every length where the
 * vectorised code changes path (one block, 4/8/16 blocks, partial blocks,
 * up to 16 KiB), with a random key and nonce, and open what they seal. */
static void test_matches_nettle(void **state) {
  (void)state;
  static const size_t sizes[] = {1,    15,   16,   17,   63,   64,   65,
                                 127,  128,  129,  255,  256,  257,  511,
                                 512,  513,  767,  1023, 1024, 1025, 1200,
                                 1232, 1252, 1350, 1424, 1452, 2047, 16384};
  enum { MAXN = 16384 };
  uint8_t *plain = malloc(MAXN), *want = malloc(MAXN + 16);
  assert_non_null(plain);
  assert_non_null(want);
  for (size_t s = 1; s < N_SEC; s++) {
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
      size_t n = sizes[z];
      char key[9];
      uint8_t k[32], nonce[12];
      struct sha256_ctx h;
      rng_fill((uint8_t *)key, sizeof key);
      rng_fill(nonce, sizeof nonce);
      rng_fill(plain, n);
      sha256_init(&h);
      sha256_update(&h, sizeof key, (const uint8_t *)key);
      sha256_update(&h, 15, (const uint8_t *)"v2ray-quic-salt");
      sha256_digest(&h, sizeof k, k);
      if (all_sec[s] == QM_SEC_CHACHA20_POLY1305) {
        struct chacha_poly1305_ctx cp;
        chacha_poly1305_set_key(&cp, k);
        chacha_poly1305_set_nonce(&cp, nonce);
        chacha_poly1305_encrypt(&cp, n, want, plain);
        chacha_poly1305_digest(&cp, 16, want + n);
      } else {
        struct gcm_aes128_ctx g;
        gcm_aes128_set_key(&g, k);
        gcm_aes128_set_iv(&g, 12, nonce);
        gcm_aes128_encrypt(&g, n, want, plain);
        gcm_aes128_digest(&g, 16, want + n);
      }

      qm_codec c;
      assert_int_equal(
          qm_codec_init(&c, all_sec[s], key, sizeof key, QM_HDR_DTLS), QM_OK);
      size_t pre = qm_codec_prefix(&c), ov = qm_codec_overhead(&c);
      uint8_t *buf = malloc(n + ov); /* exact size */
      assert_non_null(buf);
      memcpy(buf + pre, plain, n);
      assert_int_equal(qm_codec_seal_nonce(&c, buf, n + ov, n, nonce),
                       (ssize_t)(n + ov));
      assert_memory_equal(buf + pre, want, n + 16);
      uint8_t *quic = NULL;
      assert_int_equal(qm_codec_open(&c, buf, n + ov, &quic), (ssize_t)n);
      assert_ptr_equal(quic, buf + pre);
      assert_memory_equal(quic, plain, n);
      /* a flipped bit in the last ciphertext byte, then in the tag */
      memcpy(buf + pre, want, n + 16);
      buf[pre + n - 1] ^= 0x80;
      assert_int_equal(qm_codec_open(&c, buf, n + ov, &quic), QM_EBADMSG);
      memcpy(buf + pre, want, n + 16);
      buf[pre + n + 15] ^= 0x01;
      assert_int_equal(qm_codec_open(&c, buf, n + ov, &quic), QM_EBADMSG);
      assert_int_equal(c.dropped_auth, 2);
      /* the codec still works after rejections */
      memcpy(buf + pre, want, n + 16);
      assert_int_equal(qm_codec_open(&c, buf, n + ov, &quic), (ssize_t)n);
      assert_memory_equal(quic, plain, n);
      free(buf);
      qm_codec_clear(&c);
    }
  }
  free(plain);
  free(want);
}

/* Each datagram gets a fresh random nonce. */
static void test_nonce_fresh(void **state) {
  (void)state;
  for (size_t s = 1; s < N_SEC; s++) {
    qm_codec c;
    assert_int_equal(qm_codec_init(&c, all_sec[s], "k", 1, QM_HDR_SRTP), QM_OK);
    uint8_t a[4 + 28 + 8] = {0}, b[4 + 28 + 8] = {0};
    assert_int_equal(qm_codec_seal(&c, a, sizeof a, 8), 40);
    assert_int_equal(qm_codec_seal(&c, b, sizeof b, 8), 40);
    assert_memory_not_equal(a + 4, b + 4, 12);
    assert_memory_not_equal(a + 16, b + 16, 8 + 16);
    qm_codec_clear(&c);
  }
}

/* ---- rejection ---------------------------------------------------------- */

static void test_reject_wrong_key(void **state) {
  (void)state;
  for (size_t s = 1; s < N_SEC; s++) {
    for (size_t h = 0; h < N_HDR; h++) {
      qm_codec tx, rx, rx_alg;
      assert_int_equal(qm_codec_init(&tx, all_sec[s], "right", 5, all_hdr[h]),
                       QM_OK);
      assert_int_equal(qm_codec_init(&rx, all_sec[s], "wrong", 5, all_hdr[h]),
                       QM_OK);
      /* right key, other algorithm */
      qm_security other = all_sec[s] == QM_SEC_AES_128_GCM
                              ? QM_SEC_CHACHA20_POLY1305
                              : QM_SEC_AES_128_GCM;
      assert_int_equal(qm_codec_init(&rx_alg, other, "right", 5, all_hdr[h]),
                       QM_OK);
      size_t ov = qm_codec_overhead(&tx);
      for (size_t n = 0; n < 64; n += 21) {
        uint8_t *buf = malloc(n + ov);
        assert_non_null(buf);
        rng_fill(buf + qm_codec_prefix(&tx), n);
        assert_int_equal(qm_codec_seal(&tx, buf, n + ov, n), (ssize_t)(n + ov));
        uint8_t *copy = exact_copy(buf, n + ov);
        uint8_t *quic = NULL;
        assert_int_equal(qm_codec_open(&rx, buf, n + ov, &quic), QM_EBADMSG);
        assert_null(quic);
        assert_int_equal(qm_codec_open(&rx_alg, copy, n + ov, &quic),
                         QM_EBADMSG);
        assert_null(quic);
        free(copy);
        free(buf);
      }
      assert_int_equal(rx.dropped_auth, 4);
      assert_int_equal(rx.dropped_short, 0);
      assert_int_equal(rx.opened, 0);
      assert_int_equal(rx_alg.dropped_auth, 4);
      assert_int_equal(rx_alg.dropped_short, 0);
      assert_int_equal(rx_alg.opened, 0);
      qm_codec_clear(&tx);
      qm_codec_clear(&rx);
      qm_codec_clear(&rx_alg);
    }
  }
}

/* Truncate a sealed datagram to every length from 0 to the overhead. */
static void test_reject_truncated(void **state) {
  (void)state;
  for (size_t s = 0; s < N_SEC; s++) {
    for (size_t h = 0; h < N_HDR; h++) {
      if (all_sec[s] == QM_SEC_NONE && all_hdr[h] == QM_HDR_NONE)
        continue; /* nothing to check: every length is a plain datagram */
      qm_codec tx, rx;
      assert_int_equal(qm_codec_init(&tx, all_sec[s], "k", 1, all_hdr[h]),
                       QM_OK);
      assert_int_equal(qm_codec_init(&rx, all_sec[s], "k", 1, all_hdr[h]),
                       QM_OK);
      int aead = all_sec[s] != QM_SEC_NONE;
      size_t ov = qm_codec_overhead(&tx), n = 100;
      uint8_t full[QM_CODEC_MAX_OVERHEAD + 100];
      rng_fill(full, sizeof full);
      assert_int_equal(qm_codec_seal(&tx, full, n + ov, n), (ssize_t)(n + ov));
      uint64_t shorts = 0, auths = 0;
      for (size_t len = 0; len <= ov; len++) {
        uint8_t *b = exact_copy(full, len);
        uint8_t *quic = NULL;
        assert_int_equal(qm_codec_open(&rx, b, len, &quic), QM_EBADMSG);
        assert_null(quic);
        if (len < ov || !aead)
          shorts++; /* not more than H, or shorter than H + nonce + tag */
        else
          auths++; /* exactly H + nonce + tag: the tag cannot match */
        assert_int_equal(rx.dropped_short, shorts);
        assert_int_equal(rx.dropped_auth, auths);
        assert_int_equal(rx.opened, 0);
        free(b);
      }
      if (aead) {
        /* longer but still truncated: authentication fails */
        for (size_t len = ov + 1; len < n + ov; len += 17) {
          uint8_t *b = exact_copy(full, len);
          uint8_t *quic = NULL;
          assert_int_equal(qm_codec_open(&rx, b, len, &quic), QM_EBADMSG);
          auths++;
          assert_int_equal(rx.dropped_auth, auths);
          free(b);
        }
      }
      /* the untouched datagram still opens */
      uint8_t *quic = NULL;
      assert_int_equal(qm_codec_open(&rx, full, n + ov, &quic), (ssize_t)n);
      assert_int_equal(rx.opened, 1);
      qm_codec_clear(&tx);
      qm_codec_clear(&rx);
    }
  }
}

/* Flip bits: anywhere in nonce, ciphertext or tag → auth failure; in the
 * header → still accepted (header contents are never checked). */
static void test_reject_flipped_bits(void **state) {
  (void)state;
  for (size_t s = 1; s < N_SEC; s++) {
    for (size_t h = 0; h < N_HDR; h++) {
      qm_codec tx, rx;
      assert_int_equal(qm_codec_init(&tx, all_sec[s], "k", 1, all_hdr[h]),
                       QM_OK);
      assert_int_equal(qm_codec_init(&rx, all_sec[s], "k", 1, all_hdr[h]),
                       QM_OK);
      size_t H = expected_h(all_hdr[h]);
      size_t ov = qm_codec_overhead(&tx), n = 40, len = n + ov;
      uint8_t full[QM_CODEC_MAX_OVERHEAD + 40], payload[40];
      rng_fill(payload, n);
      memcpy(full + qm_codec_prefix(&tx), payload, n);
      assert_int_equal(qm_codec_seal(&tx, full, len, n), (ssize_t)len);

      uint64_t auths = 0;
      for (size_t bit = 0; bit < len * 8; bit++) {
        int in_tag = bit >= (len - 16) * 8;
        /* every tag bit; every 7th bit elsewhere */
        if (!in_tag && bit % 7 != 0)
          continue;
        uint8_t *b = exact_copy(full, len);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        uint8_t *quic = NULL;
        ssize_t r = qm_codec_open(&rx, b, len, &quic);
        if (bit < H * 8) {
          assert_int_equal(r, (ssize_t)n);
          assert_memory_equal(quic, payload, n);
        } else {
          assert_int_equal(r, QM_EBADMSG);
          auths++;
        }
        assert_int_equal(rx.dropped_auth, auths);
        assert_int_equal(rx.dropped_short, 0);
        free(b);
      }
      assert_true(auths >= 128);
      qm_codec_clear(&tx);
      qm_codec_clear(&rx);
    }
  }
}

/* Random datagrams of random lengths never open. */
static void test_reject_random(void **state) {
  (void)state;
  for (size_t s = 1; s < N_SEC; s++) {
    for (size_t h = 0; h < N_HDR; h++) {
      qm_codec rx;
      assert_int_equal(qm_codec_init(&rx, all_sec[s], "k", 1, all_hdr[h]),
                       QM_OK);
      size_t ov = qm_codec_overhead(&rx);
      uint64_t shorts = 0, auths = 0;
      uint8_t src[2048];
      for (int i = 0; i < 300; i++) {
        size_t len = (i < 60) ? (size_t)i : rng() % sizeof src;
        rng_fill(src, len);
        uint8_t *b = exact_copy(src, len);
        uint8_t *quic = NULL;
        assert_int_equal(qm_codec_open(&rx, b, len, &quic), QM_EBADMSG);
        assert_null(quic);
        if (len < ov)
          shorts++;
        else
          auths++;
        assert_int_equal(rx.dropped_short, shorts);
        assert_int_equal(rx.dropped_auth, auths);
        free(b);
      }
      assert_int_equal(rx.opened, 0);
      qm_codec_clear(&rx);
    }
  }
}

/* ---- invalid arguments -------------------------------------------------- */

static void test_seal_does_not_fit(void **state) {
  (void)state;
  for (size_t s = 0; s < N_SEC; s++) {
    for (size_t h = 0; h < N_HDR; h++) {
      qm_codec c;
      assert_int_equal(
          qm_codec_init_seeded(&c, all_sec[s], "k", 1, all_hdr[h], 0x00010001u),
          QM_OK);
      size_t ov = qm_codec_overhead(&c);
      uint8_t buf[QM_CODEC_MAX_OVERHEAD + 100];
      memset(buf, 0xcc, sizeof buf);
      if (ov > 0)
        assert_int_equal(qm_codec_seal(&c, buf, ov - 1, 0), QM_EINVAL);
      assert_int_equal(qm_codec_seal(&c, buf, ov + 99, 100), QM_EINVAL);
      assert_int_equal(qm_codec_seal(&c, buf, 0, 1), QM_EINVAL);
      assert_int_equal(qm_codec_seal(&c, buf, sizeof buf, SIZE_MAX), QM_EINVAL);
      if (ov > 0)
        assert_int_equal(qm_codec_seal(&c, buf, sizeof buf, SIZE_MAX - ov + 1),
                         QM_EINVAL);
      assert_int_equal(qm_codec_seal(&c, buf, SIZE_MAX, SIZE_MAX - ov),
                       QM_EINVAL); /* would not fit in ssize_t */
      assert_int_equal(qm_codec_seal_nonce(&c, buf, ov + 99, 100, nonce_0_11),
                       QM_EINVAL);
      assert_int_equal(qm_codec_seal(&c, NULL, sizeof buf, 1), QM_EINVAL);
      assert_int_equal(qm_codec_seal(NULL, buf, sizeof buf, 1), QM_EINVAL);
      if (all_sec[s] != QM_SEC_NONE)
        assert_int_equal(qm_codec_seal_nonce(&c, buf, sizeof buf, 1, NULL),
                         QM_EINVAL);
      /* nothing was written and the header generator did not advance */
      for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xcc);
      assert_int_equal(c.sealed, 0);
      assert_int_equal(c.srtp_counter, 1);
      assert_int_equal(c.wechat_seq, 1);
      assert_int_equal(c.dtls_seq, 0);
      assert_int_equal(c.dtls_len, 17);
      /* exactly fitting works */
      assert_int_equal(qm_codec_seal(&c, buf, ov + 100, 100),
                       (ssize_t)(ov + 100));
      assert_int_equal(c.sealed, 1);
      qm_codec_clear(&c);
    }
  }
}

static void test_init_invalid(void **state) {
  (void)state;
  qm_codec c;
  assert_int_equal(qm_codec_init(NULL, QM_SEC_NONE, NULL, 0, QM_HDR_NONE),
                   QM_EINVAL);
  assert_int_equal(qm_codec_init(&c, (qm_security)3, "k", 1, QM_HDR_NONE),
                   QM_EINVAL);
  assert_int_equal(qm_codec_init(&c, (qm_security)-1, "k", 1, QM_HDR_NONE),
                   QM_EINVAL);
  assert_int_equal(qm_codec_init(&c, QM_SEC_NONE, "k", 1, (qm_header)6),
                   QM_EINVAL);
  assert_int_equal(
      qm_codec_init_seeded(&c, QM_SEC_AES_128_GCM, NULL, 5, QM_HDR_NONE, 0),
      QM_EINVAL);

  assert_int_equal(qm_codec_init(&c, QM_SEC_AES_128_GCM, "k", 1, QM_HDR_DTLS),
                   QM_OK);
  uint8_t buf[64] = {0}, *quic = NULL;
  assert_int_equal(qm_codec_open(&c, NULL, 10, &quic), QM_EINVAL);
  assert_int_equal(qm_codec_open(&c, buf, sizeof buf, NULL), QM_EINVAL);
  assert_int_equal(qm_codec_open(NULL, buf, sizeof buf, &quic), QM_EINVAL);
  assert_int_equal(c.dropped_short + c.dropped_auth, 0);
  qm_codec_clear(&c);
}

/* After qm_codec_clear the keys are gone and the codec refuses to work. */
static void test_clear(void **state) {
  (void)state;
  for (size_t s = 0; s < N_SEC; s++) {
    qm_codec c;
    assert_int_equal(qm_codec_init(&c, all_sec[s], "secret", 6, QM_HDR_SRTP),
                     QM_OK);
    qm_codec_clear(&c);
    const uint8_t *p = (const uint8_t *)&c.aead;
    for (size_t i = 0; i < sizeof c.aead; i++)
      assert_int_equal(p[i], 0);
    assert_null(c.evp);
    uint8_t buf[64] = {0}, *quic = NULL;
    assert_int_equal(qm_codec_seal(&c, buf, sizeof buf, 4), QM_EINVAL);
    assert_int_equal(qm_codec_seal_nonce(&c, buf, sizeof buf, 4, nonce_0_11),
                     QM_EINVAL);
    assert_int_equal(qm_codec_open(&c, buf, sizeof buf, &quic), QM_EINVAL);
    qm_codec_clear(&c); /* twice is fine */
  }
  qm_codec_clear(NULL);
}

/* ---- names (SPEC §4.2) -------------------------------------------------- */

static void test_security_names(void **state) {
  (void)state;
  static const struct {
    const char *name;
    qm_security sec;
  } ok[] = {
      {"none", QM_SEC_NONE},
      {"aes-128-gcm", QM_SEC_AES_128_GCM},
      {"chacha20-poly1305", QM_SEC_CHACHA20_POLY1305},
      {"NONE", QM_SEC_NONE},
      {"AES-128-GCM", QM_SEC_AES_128_GCM},
      {"Aes-128-Gcm", QM_SEC_AES_128_GCM},
      {"ChaCha20-Poly1305", QM_SEC_CHACHA20_POLY1305},
      {"CHACHA20-POLY1305", QM_SEC_CHACHA20_POLY1305},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    qm_security out = (qm_security)99;
    assert_int_equal(qm_security_parse(ok[i].name, &out), QM_OK);
    assert_int_equal(out, ok[i].sec);
  }
  for (size_t s = 0; s < N_SEC; s++) {
    const char *n = qm_security_name(all_sec[s]);
    assert_non_null(n);
    qm_security out = (qm_security)99;
    assert_int_equal(qm_security_parse(n, &out), QM_OK);
    assert_int_equal(out, all_sec[s]);
  }
  assert_string_equal(qm_security_name(QM_SEC_NONE), "none");
  assert_string_equal(qm_security_name(QM_SEC_AES_128_GCM), "aes-128-gcm");
  assert_string_equal(qm_security_name(QM_SEC_CHACHA20_POLY1305),
                      "chacha20-poly1305");
  assert_string_equal(qm_security_name((qm_security)3), "unknown");

  static const char *const bad[] = {
      "",         "auto",       "aes-128-gcm ",
      " none",    "aes128gcm",  "aes-256-gcm",
      "chacha20", "aes-128-gc", "aes-128-gcmx",
      "legacy",   "unknown",    "n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    qm_security out = (qm_security)99;
    assert_int_equal(qm_security_parse(bad[i], &out), QM_EINVAL);
    assert_int_equal(out, (qm_security)99); /* untouched */
  }
  qm_security out;
  assert_int_equal(qm_security_parse(NULL, &out), QM_EINVAL);
  assert_int_equal(qm_security_parse("none", NULL), QM_EINVAL);
}

static void test_header_names(void **state) {
  (void)state;
  static const struct {
    const char *name;
    qm_header hdr;
  } ok[] = {
      {"none", QM_HDR_NONE}, {"srtp", QM_HDR_SRTP},
      {"utp", QM_HDR_UTP},   {"wechat-video", QM_HDR_WECHAT_VIDEO},
      {"dtls", QM_HDR_DTLS}, {"wireguard", QM_HDR_WIREGUARD},
      {"None", QM_HDR_NONE}, {"SRTP", QM_HDR_SRTP},
      {"uTP", QM_HDR_UTP},   {"WeChat-Video", QM_HDR_WECHAT_VIDEO},
      {"DTLS", QM_HDR_DTLS}, {"WireGuard", QM_HDR_WIREGUARD},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    qm_header out = (qm_header)99;
    assert_int_equal(qm_header_parse(ok[i].name, &out), QM_OK);
    assert_int_equal(out, ok[i].hdr);
  }
  static const char *const canon[] = {"none",         "srtp", "utp",
                                      "wechat-video", "dtls", "wireguard"};
  for (size_t h = 0; h < N_HDR; h++) {
    assert_string_equal(qm_header_name(all_hdr[h]), canon[h]);
    qm_header out = (qm_header)99;
    assert_int_equal(qm_header_parse(qm_header_name(all_hdr[h]), &out), QM_OK);
    assert_int_equal(out, all_hdr[h]);
  }
  assert_string_equal(qm_header_name((qm_header)6), "unknown");

  static const char *const bad[] = {
      "",      "wechat", "wechat_video", "wechatvideo", "tls",   "noop",
      "dtls ", "srtp\n", "wire-guard",   "unknown",     "utp-x", "s",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    qm_header out = (qm_header)99;
    assert_int_equal(qm_header_parse(bad[i], &out), QM_EINVAL);
    assert_int_equal(out, (qm_header)99);
  }
  qm_header out;
  assert_int_equal(qm_header_parse(NULL, &out), QM_EINVAL);
  assert_int_equal(qm_header_parse("none", NULL), QM_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kdf_k_values),
      cmocka_unit_test(test_vector_testkey),
      cmocka_unit_test(test_vector_empty_key),
      cmocka_unit_test(test_vector_empty_plaintext),
      cmocka_unit_test(test_vector_with_header),
      cmocka_unit_test(test_prefix_overhead),
      cmocka_unit_test(test_header_srtp),
      cmocka_unit_test(test_header_utp),
      cmocka_unit_test(test_header_wechat),
      cmocka_unit_test(test_header_dtls),
      cmocka_unit_test(test_header_wireguard),
      cmocka_unit_test(test_header_none),
      cmocka_unit_test(test_header_random_init),
      cmocka_unit_test(test_round_trip_all),
      cmocka_unit_test(test_matches_nettle),
      cmocka_unit_test(test_nonce_fresh),
      cmocka_unit_test(test_reject_wrong_key),
      cmocka_unit_test(test_reject_truncated),
      cmocka_unit_test(test_reject_flipped_bits),
      cmocka_unit_test(test_reject_random),
      cmocka_unit_test(test_seal_does_not_fit),
      cmocka_unit_test(test_init_invalid),
      cmocka_unit_test(test_clear),
      cmocka_unit_test(test_security_names),
      cmocka_unit_test(test_header_names),
  };
  return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
