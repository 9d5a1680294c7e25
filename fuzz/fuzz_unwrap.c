/*
 * fuzz_unwrap — the receive path's first steps on hostile bytes:
 *   byte 0 picks security (3) x header (6) and one of two keys;
 *   the rest is one UDP datagram, opened in place with qm_codec_open();
 *   whatever opens is handed to ngtcp2_pkt_decode_version_cid() (as the
 *   listener routes it, 12-byte short-header CIDs) and ngtcp2_accept()
 *   (as for a new session).
 * Also seals the datagram back with the same codec (the send path's
 * bounds) and checks that open(seal(x)) == x.
 *
 * An empty QUIC datagram (a zero-length UDP datagram with security none +
 * header none, or an AEAD of an empty plaintext) trips an assertion in
 * Debian's libngtcp2 (ngtcp2_pkt_decode_version_cid: `datalen'); the receive
 * path (io.c) drops it before ngtcp2, and so does this target, as io.c does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ngtcp2/ngtcp2.h>

#include "codec.h"

#define MAX_DGRAM 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t buf[MAX_DGRAM + QM_CODEC_MAX_OVERHEAD];
  static uint8_t copy[MAX_DGRAM];
  static const char *const keys[2] = {"", "fuzz-key"};
  qm_codec c;
  uint8_t *quic = NULL;
  ssize_t n;
  unsigned sel;

  if (size < 1 || size - 1 > MAX_DGRAM)
    return 0;
  sel = data[0];
  data++;
  size--;
  if (qm_codec_init_seeded(&c, (qm_security)(sel % 3), keys[(sel / 18) & 1],
                           strlen(keys[(sel / 18) & 1]),
                           (qm_header)((sel / 3) % 6), 0x12345678u) != 0)
    abort();

  memcpy(buf, data, size);
  n = qm_codec_open(&c, buf, size, &quic);
  if (n >= 0) {
    ngtcp2_version_cid vc;
    ngtcp2_pkt_hd hd;
    size_t len = (size_t)n;
    if (quic < buf || quic + len > buf + size)
      abort();     /* the plaintext must lie inside the datagram */
    if (len > 0) { /* io.c drops empty ones before any ngtcp2 call */
      (void)ngtcp2_pkt_decode_version_cid(&vc, quic, len, 12);
      (void)ngtcp2_accept(&hd, quic, len);
    }

    /* Round trip: seal the plaintext again and open it. */
    memcpy(copy, quic, len);
    {
      size_t pre = qm_codec_prefix(&c);
      ssize_t w;
      uint8_t *q2 = NULL;
      memmove(buf + pre, copy, len);
      w = qm_codec_seal(&c, buf, sizeof(buf), len);
      if (w < 0 || (size_t)w != len + qm_codec_overhead(&c))
        abort();
      n = qm_codec_open(&c, buf, (size_t)w, &q2);
      if (n < 0 || (size_t)n != len || memcmp(q2, copy, len) != 0)
        abort();
    }
  }
  qm_codec_clear(&c);
  return 0;
}
