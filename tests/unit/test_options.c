/* Unit tests for the SIP003 option-string parser (apps/quicmux/sip003.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sip003.h"

static void parse_ok(const char *s, sip003_opts *o) {
  char err[256] = "";
  int rv = sip003_parse(s, o, err, sizeof(err));
  if (rv != 0)
    fail_msg("'%s': %s", s, err);
}

static void parse_bad(const char *s, const char *needle) {
  sip003_opts o;
  char err[256] = "";
  assert_int_equal(sip003_parse(s, &o, err, sizeof(err)), -1);
  assert_non_null(strstr(err, needle));
  sip003_free(&o);
}

static void test_empty(void **state) {
  sip003_opts o;
  (void)state;
  parse_ok("", &o);
  assert_int_equal(o.n, 0);
  assert_null(sip003_get(&o, "mode"));
  sip003_free(&o);
}

static void test_pairs_and_flags(void **state) {
  sip003_opts o;
  (void)state;
  parse_ok("server;mode=quic;host=example.com;tls", &o);
  assert_int_equal(o.n, 4);
  assert_string_equal(sip003_get(&o, "server"), "1");
  assert_string_equal(sip003_get(&o, "mode"), "quic");
  assert_string_equal(sip003_get(&o, "host"), "example.com");
  assert_string_equal(sip003_get(&o, "tls"), "1");
  assert_null(sip003_get(&o, "cert"));
  sip003_free(&o);
}

static void test_escapes(void **state) {
  sip003_opts o;
  (void)state;
  /* \; \= \\ in a value, and an escaped '=' in a key */
  parse_ok("cert=/a\\;b\\=c\\\\d.pem;k\\=x=v;z=\\q", &o);
  assert_int_equal(o.n, 3);
  assert_string_equal(sip003_get(&o, "cert"), "/a;b=c\\d.pem");
  assert_string_equal(sip003_get(&o, "k=x"), "v");
  assert_string_equal(sip003_get(&o, "z"), "q"); /* any byte after '\' */
  sip003_free(&o);
}

static void test_value_edges(void **state) {
  sip003_opts o;
  (void)state;
  parse_ok("a=b=c;e=;last=1;", &o); /* '=' inside a value; empty value */
  assert_int_equal(o.n, 3);
  assert_string_equal(sip003_get(&o, "a"), "b=c");
  assert_string_equal(sip003_get(&o, "e"), "");
  assert_string_equal(sip003_get(&o, "last"), "1");
  sip003_free(&o);
}

static void test_first_value_wins(void **state) {
  sip003_opts o;
  (void)state;
  parse_ok("mode=quic;mode=websocket", &o);
  assert_int_equal(o.n, 2);
  assert_string_equal(sip003_get(&o, "mode"), "quic");
  sip003_free(&o);
}

static void test_errors(void **state) {
  (void)state;
  parse_bad(";a=1", "empty key");
  parse_bad("a=1;;b=2", "empty key");
  parse_bad("=v", "empty key");
  parse_bad("a=b\\", "final");
  parse_bad("a\\", "final");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_pairs_and_flags),
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_value_edges),
      cmocka_unit_test(test_first_value_wins),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
