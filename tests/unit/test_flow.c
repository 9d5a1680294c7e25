/*
 * Unit tests for the DATAGRAM frame header of UDP flows (src/flow.h): round
 * trips at every varint length, and malformed headers refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "flow.h"

static void roundtrip(const qm_dg_hdr *h, size_t want_len) {
  uint8_t buf[QM_DG_HDR_MAX + 4];
  qm_dg_hdr out;
  size_t n = qm_dg_hdr_write(buf, h);
  assert_int_equal(n, want_len);
  assert_true(n <= QM_DG_HDR_MAX);
  assert_int_equal(qm_dg_hdr_parse(buf, n, &out), (int)n);
  assert_int_equal(out.type, h->type);
  assert_true(out.flow == h->flow);
  if (h->type == QM_DG_FRAG) {
    assert_true(out.dgram == h->dgram);
    assert_int_equal(out.idx, h->idx);
    assert_int_equal(out.cnt, h->cnt);
  }
  /* every shorter prefix is malformed */
  while (n-- > 0)
    assert_int_equal(qm_dg_hdr_parse(buf, n, &out), -1);
}

static void test_whole(void **state) {
  static const uint64_t ids[] = {
      0, 63, 64, 16383, 16384, 1073741823, 1073741824, 4611686018427387903ull};
  static const size_t lens[] = {1, 1, 2, 2, 4, 4, 8, 8};
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
    qm_dg_hdr h = {QM_DG_WHOLE, ids[i], 0, 0, 0};
    roundtrip(&h, 1 + lens[i]);
    h.type = QM_DG_CLOSE;
    roundtrip(&h, 1 + lens[i]);
  }
}

static void test_fragment(void **state) {
  qm_dg_hdr h = {QM_DG_FRAG, 5, 70000, 0, 2};
  (void)state;
  roundtrip(&h, 1 + 1 + 4 + 2);
  h.idx = 254;
  h.cnt = 255;
  h.flow = 1ull << 40;
  h.dgram = 0;
  roundtrip(&h, 1 + 8 + 1 + 2);
}

static void test_malformed(void **state) {
  qm_dg_hdr h;
  static const uint8_t bad_type[] = {3, 0};
  static const uint8_t one_piece[] = {1, 0, 0, 0, 1}; /* count 1 */
  static const uint8_t idx_over[] = {1, 0, 0, 2, 2};  /* index 2 of 2 */
  static const uint8_t short_varint[] = {0, 0x40};    /* 2-byte varint cut */
  (void)state;
  assert_int_equal(qm_dg_hdr_parse(bad_type, sizeof(bad_type), &h), -1);
  assert_int_equal(qm_dg_hdr_parse(one_piece, sizeof(one_piece), &h), -1);
  assert_int_equal(qm_dg_hdr_parse(idx_over, sizeof(idx_over), &h), -1);
  assert_int_equal(qm_dg_hdr_parse(short_varint, sizeof(short_varint), &h), -1);
  assert_int_equal(qm_dg_hdr_parse(bad_type, 0, &h), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_whole),
      cmocka_unit_test(test_fragment),
      cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
