/* Unit tests for qm_listener_new_range: the checks of a port range, one
 * socket per port, and nothing left open when a port cannot be bound. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "quicmux/quicmux.h"

static struct sockaddr_in addr_of(uint16_t port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

/* A plain UDP socket on port (no SO_REUSEPORT), or -1 if the port is taken. */
static int bind_plain(uint16_t port) {
  struct sockaddr_in a = addr_of(port);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0)
    return -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The first of n free ports in a row, below the ephemeral range. */
static uint16_t free_range(unsigned n) {
  unsigned tries;
  srand((unsigned)getpid());
  for (tries = 0; tries < 200; tries++) {
    uint16_t base = (uint16_t)(20000 + rand() % (12000 - (int)n));
    int fds[16];
    unsigned i, ok = 1;
    for (i = 0; i < n; i++)
      if ((fds[i] = bind_plain((uint16_t)(base + i))) < 0) {
        ok = 0;
        break;
      }
    while (i-- > 0)
      close(fds[i]);
    if (ok)
      return base;
  }
  fail_msg("no %u free UDP ports in a row", n);
  return 0;
}

static int new_range(struct ev_loop *loop, qm_listener **l, uint16_t port,
                     unsigned n) {
  struct sockaddr_in a = addr_of(port);
  qm_settings s;
  qm_settings_default(&s);
  return qm_listener_new_range(l, loop, (struct sockaddr *)&a, sizeof(a), n, &s,
                               NULL, NULL);
}

static void test_bad_ranges(void **state) {
  struct ev_loop *loop = ev_loop_new(0);
  qm_listener *l = NULL;
  (void)state;
  assert_int_equal(new_range(loop, &l, 20000, 0), QM_EINVAL);
  assert_int_equal(new_range(loop, &l, 20000, QM_MAX_PORT_RANGE + 1),
                   QM_EINVAL);
  assert_int_equal(new_range(loop, &l, 0, 2), QM_EINVAL); /* port 0 */
  assert_int_equal(new_range(loop, &l, 65535, 2), QM_EINVAL);
  assert_null(l);
  ev_loop_destroy(loop);
}

static void test_one_socket_per_port(void **state) {
  struct ev_loop *loop = ev_loop_new(0);
  qm_listener *l = NULL;
  struct sockaddr_storage ss;
  socklen_t len;
  qm_listener_stats st;
  uint16_t base = free_range(3);
  unsigned i;
  (void)state;
  assert_int_equal(new_range(loop, &l, base, 3), 0);
  assert_int_equal(qm_listener_get_addr(l, &ss, &len), 0);
  assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), base);
  for (i = 0; i < 3; i++)
    assert_int_equal(bind_plain((uint16_t)(base + i)), -1); /* taken */
  qm_listener_get_stats(l, &st);
  assert_int_equal(st.sessions, 0);
  assert_int_equal(st.totals.datagrams_rx, 0);
  qm_listener_free(l);
  for (i = 0; i < 3; i++) { /* all closed */
    int fd = bind_plain((uint16_t)(base + i));
    assert_true(fd >= 0);
    close(fd);
  }
  ev_loop_destroy(loop);
}

static void test_taken_port_leaves_nothing_open(void **state) {
  struct ev_loop *loop = ev_loop_new(0);
  qm_listener *l = NULL;
  uint16_t base = free_range(3);
  int blocker = bind_plain((uint16_t)(base + 2)), fd;
  (void)state;
  assert_true(blocker >= 0);
  assert_true(new_range(loop, &l, base, 3) < 0);
  assert_null(l);
  fd = bind_plain(base); /* the first port was opened, then closed again */
  assert_true(fd >= 0);
  close(fd);
  close(blocker);
  ev_loop_destroy(loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_ranges),
      cmocka_unit_test(test_one_socket_per_port),
      cmocka_unit_test(test_taken_port_leaves_nothing_open),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
