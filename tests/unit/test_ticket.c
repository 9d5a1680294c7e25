/*
 * Unit tests for the client's ticket store (src/ticket.h: memory, the file,
 * bad files, the cap) and the server's ClientHello record behind GnuTLS's
 * anti-replay window (src/replay.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "replay.h"
#include "ticket.h"

static char dir[] = "/tmp/qm-test-ticket-XXXXXX";

static void path_of(char *buf, size_t len, const char *name) {
  snprintf(buf, len, "%s/%s", dir, name);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_memory(void **state) {
  qm_ticket_store *t;
  const uint8_t *tk, *tp;
  size_t tl, pl;
  (void)state;
  assert_int_equal(qm_ticket_store_new(&t, NULL), 0);
  assert_int_equal(qm_ticket_get(t, "a/1.2.3.4|5", &tk, &tl, &tp, &pl), 0);
  qm_ticket_put(t, "a/1.2.3.4|5", (const uint8_t *)"TICKET", 6,
                (const uint8_t *)"TP", 2);
  assert_int_equal(qm_ticket_get(t, "a/1.2.3.4|5", &tk, &tl, &tp, &pl), 1);
  assert_int_equal(tl, 6);
  assert_memory_equal(tk, "TICKET", 6);
  assert_int_equal(pl, 2);
  assert_memory_equal(tp, "TP", 2);
  /* replaced, not added */
  qm_ticket_put(t, "a/1.2.3.4|5", (const uint8_t *)"T2", 2,
                (const uint8_t *)"P2", 2);
  assert_int_equal(qm_ticket_count(t), 1);
  assert_int_equal(qm_ticket_get(t, "a/1.2.3.4|5", &tk, &tl, &tp, &pl), 1);
  assert_memory_equal(tk, "T2", 2);
  /* keys with blanks and empty data are refused */
  qm_ticket_put(t, "a b", (const uint8_t *)"T", 1, (const uint8_t *)"P", 1);
  qm_ticket_put(t, "c", (const uint8_t *)"T", 0, (const uint8_t *)"P", 1);
  assert_int_equal(qm_ticket_count(t), 1);
  qm_ticket_forget(t, "a/1.2.3.4|5");
  assert_int_equal(qm_ticket_count(t), 0);
  qm_ticket_store_free(t);
}

static void test_cap_drops_oldest(void **state) {
  qm_ticket_store *t;
  const uint8_t *tk, *tp;
  size_t tl, pl, i;
  char key[32];
  (void)state;
  assert_int_equal(qm_ticket_store_new(&t, NULL), 0);
  for (i = 0; i < QM_TICKET_MAX_SERVERS + 5; i++) {
    snprintf(key, sizeof(key), "k%zu", i);
    qm_ticket_put(t, key, (const uint8_t *)"T", 1, (const uint8_t *)"P", 1);
  }
  assert_int_equal(qm_ticket_count(t), QM_TICKET_MAX_SERVERS);
  assert_int_equal(qm_ticket_get(t, "k0", &tk, &tl, &tp, &pl), 0);
  assert_int_equal(qm_ticket_get(t, "k4", &tk, &tl, &tp, &pl), 0);
  assert_int_equal(qm_ticket_get(t, "k5", &tk, &tl, &tp, &pl), 1);
  qm_ticket_store_free(t);
}

static void test_file_roundtrip_mode(void **state) {
  char path[256];
  qm_ticket_store *t;
  const uint8_t *tk, *tp;
  size_t tl, pl;
  struct stat sb;
  uint8_t bin[300];
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(bin); i++)
    bin[i] = (uint8_t)(i * 7);
  path_of(path, sizeof(path), "rt");
  write_text(path, "");
  chmod(path, 0644);
  assert_int_equal(qm_ticket_store_new(&t, path), 0);
  qm_ticket_put(t, "s/::1|443", bin, sizeof(bin), bin + 1, 100);
  qm_ticket_put(t, "s/10.0.0.1|443", bin, 10, bin, 20);
  qm_ticket_store_free(t);
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  assert_int_equal(qm_ticket_store_new(&t, path), 0);
  assert_int_equal(qm_ticket_count(t), 2);
  assert_int_equal(qm_ticket_get(t, "s/::1|443", &tk, &tl, &tp, &pl), 1);
  assert_int_equal(tl, sizeof(bin));
  assert_memory_equal(tk, bin, sizeof(bin));
  assert_int_equal(pl, 100);
  assert_memory_equal(tp, bin + 1, 100);
  qm_ticket_store_free(t);
}

static void test_bad_files_ignored(void **state) {
  static const char *bad[] = {
      "garbage\n",
      "quicmux-0rtt 1\nkey-without-data\n",
      "quicmux-0rtt 1\nk 0g 00\n",       /* not hex */
      "quicmux-0rtt 1\nk 001 00\n",      /* odd length */
      "quicmux-0rtt 1\nk 00 00 extra\n", /* a fourth field */
      "quicmux-0rtt 2\nk 00 00\n",       /* another version */
  };
  char path[256];
  qm_ticket_store *t;
  size_t i;
  (void)state;
  path_of(path, sizeof(path), "bad");
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_text(path, bad[i]);
    assert_int_equal(qm_ticket_store_new(&t, path), 0);
    assert_int_equal(qm_ticket_count(t), 0);
    qm_ticket_store_free(t);
  }
  /* missing: empty store, no file made until a ticket comes */
  path_of(path, sizeof(path), "missing");
  assert_int_equal(qm_ticket_store_new(&t, path), 0);
  assert_int_equal(qm_ticket_count(t), 0);
  assert_int_equal(access(path, F_OK), -1);
  qm_ticket_store_free(t);
  /* good */
  path_of(path, sizeof(path), "good");
  write_text(path, "quicmux-0rtt 1\nk abCD 00\n");
  assert_int_equal(qm_ticket_store_new(&t, path), 0);
  assert_int_equal(qm_ticket_count(t), 1);
  qm_ticket_store_free(t);
}

static void test_replay_record(void **state) {
  qm_replay *r;
  unsigned char k1[44] = {1}, k2[44] = {2};
  gnutls_datum_t d1 = {k1, sizeof(k1)}, d2 = {k2, sizeof(k2)}, e = {NULL, 0};
  time_t now = time(NULL);
  (void)state;
  assert_int_equal(qm_replay_new(&r), 0);
  assert_int_equal(qm_replay_add(r, now + 10, &d1, &e), 0);
  assert_int_equal(qm_replay_add(r, now + 10, &d1, &e),
                   GNUTLS_E_DB_ENTRY_EXISTS);
  assert_int_equal(qm_replay_add(r, now + 10, &d2, &e), 0);
  assert_int_equal(qm_replay_count(r), 2);
  /* an expired entry goes when its bucket is next looked at */
  k1[0] = 3;
  assert_int_equal(qm_replay_add(r, now - 1, &d1, &e), 0);
  assert_int_equal(qm_replay_add(r, now + 10, &d1, &e), 0);
  qm_replay_free(r);
}

static void test_replay_full(void **state) {
  qm_replay *r;
  unsigned char k[44];
  gnutls_datum_t d = {k, sizeof(k)}, e = {NULL, 0};
  time_t now = time(NULL);
  uint32_t i;
  (void)state;
  memset(k, 0, sizeof(k));
  assert_int_equal(qm_replay_new(&r), 0);
  for (i = 0; i < QM_REPLAY_MAX; i++) {
    memcpy(k + 40, &i, 4);
    assert_int_equal(qm_replay_add(r, now + 100, &d, &e), 0);
  }
  i = QM_REPLAY_MAX;
  memcpy(k + 40, &i, 4);
  /* full of live entries: refused (early data goes), nothing grows */
  assert_int_equal(qm_replay_add(r, now + 100, &d, &e), GNUTLS_E_DB_ERROR);
  assert_int_equal(qm_replay_count(r), QM_REPLAY_MAX);
  qm_replay_free(r);
}

static int setup(void **state) {
  (void)state;
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  char cmd[128];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_memory),
      cmocka_unit_test(test_cap_drops_oldest),
      cmocka_unit_test(test_file_roundtrip_mode),
      cmocka_unit_test(test_bad_files_ignored),
      cmocka_unit_test(test_replay_record),
      cmocka_unit_test(test_replay_full),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
