/*
 * Unit tests for the hand-off ring between server workers
 * (apps/quicmux/ring.c) and the worker index in connection ids
 * (qm__cid_make / qm_cid_worker, src/common.c).
 *
 * The ring is checked single-threaded (order, wrap-around, full, sizes) and
 * with 4 producer threads against one consumer: every datagram arrives once,
 * intact, in each producer's order.
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <netinet/in.h>

#include "internal.h"
#include "ring.h"

static struct sockaddr_in addr(uint16_t port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  return a;
}

static int put(ring *r, uint16_t port, const uint8_t *d, size_t n) {
  struct sockaddr_in from = addr(port), local = addr(4433);
  return ring_put(r, (struct sockaddr *)&local, sizeof(local),
                  (struct sockaddr *)&from, sizeof(from), d, n);
}

static void test_ring_order_wrap_full(void **state) {
  ring r;
  uint8_t d[RING_DATAGRAM_MAX + 1];
  int lap, i;
  (void)state;
  assert_int_equal(ring_init(&r, 6), -1); /* not a power of two */
  assert_int_equal(ring_init(&r, 8), 0);
  assert_null(ring_peek(&r));
  for (lap = 0; lap < 5; lap++) { /* several laps: sequence numbers wrap */
    for (i = 0; i < 8; i++) {
      memset(d, lap * 8 + i, 100 + i);
      assert_int_equal(put(&r, (uint16_t)(1000 + i), d, 100 + (size_t)i), 0);
    }
    assert_int_equal(put(&r, 1, d, 10), -1); /* full */
    for (i = 0; i < 8; i++) {
      ring_slot *c = ring_peek(&r);
      struct sockaddr_in *f;
      assert_non_null(c);
      f = (struct sockaddr_in *)&c->from;
      assert_int_equal(c->len, 100 + i);
      assert_int_equal(ntohs(f->sin_port), 1000 + i);
      assert_int_equal(c->data[0], lap * 8 + i);
      assert_int_equal(c->data[c->len - 1], lap * 8 + i);
      ring_done(&r, c);
    }
    assert_null(ring_peek(&r));
  }
  assert_int_equal(ring_dropped(&r), 5);
  assert_int_equal(put(&r, 1, d, RING_DATAGRAM_MAX), 0);
  assert_int_equal(put(&r, 1, d, RING_DATAGRAM_MAX + 1), -1); /* too long */
  ring_clear(&r);
}

#define PRODUCERS 4
#define PER_PRODUCER 50000

static ring shared;

static void *producer(void *arg) {
  uint32_t id = (uint32_t)(uintptr_t)arg, i;
  uint8_t d[16];
  for (i = 0; i < PER_PRODUCER; i++) {
    memcpy(d, &id, 4);
    memcpy(d + 4, &i, 4);
    memset(d + 8, (int)(i & 0xff), 8);
    while (put(&shared, (uint16_t)id, d, sizeof(d)) != 0)
      sched_yield(); /* full: the consumer catches up */
  }
  return NULL;
}

static void test_ring_threads(void **state) {
  pthread_t th[PRODUCERS];
  uint32_t next[PRODUCERS] = {0}, got = 0, i;
  (void)state;
  assert_int_equal(ring_init(&shared, 64), 0);
  for (i = 0; i < PRODUCERS; i++)
    pthread_create(&th[i], NULL, producer, (void *)(uintptr_t)i);
  while (got < PRODUCERS * PER_PRODUCER) {
    ring_slot *c = ring_peek(&shared);
    uint32_t id, seq;
    if (!c) {
      sched_yield();
      continue;
    }
    assert_int_equal(c->len, 16);
    memcpy(&id, c->data, 4);
    memcpy(&seq, c->data + 4, 4);
    assert_true(id < PRODUCERS);
    assert_int_equal(seq, next[id]); /* each producer's order, none lost */
    assert_int_equal(c->data[15], seq & 0xff);
    assert_int_equal(ntohs(((struct sockaddr_in *)&c->from)->sin_port), id);
    next[id]++;
    got++;
    ring_done(&shared, c);
  }
  for (i = 0; i < PRODUCERS; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(next[i], PER_PRODUCER);
  }
  assert_null(ring_peek(&shared));
  ring_clear(&shared);
}

static void test_cid_worker(void **state) {
  uint8_t cid[QM_SCID_LEN];
  uint32_t count, w;
  int i;
  (void)state;
  for (count = 2; count <= QM_MAX_WORKERS; count++)
    for (w = 0; w < count; w++) {
      unsigned seen[256] = {0}, distinct = 0;
      for (i = 0; i < 200; i++) {
        qm__cid_make(cid, sizeof(cid), w, count);
        assert_int_equal(qm_cid_worker(cid, sizeof(cid), count), (int)w);
        distinct += !seen[cid[0]]++;
      }
      /* the worker byte still varies: (256 / count) values name a worker */
      assert_true(distinct >= (256 / count < 4 ? 256 / count : 4));
    }
  qm__cid_make(cid, sizeof(cid), 0, 1);
  assert_int_equal(qm_cid_worker(cid, sizeof(cid), 1), -1); /* one worker */
  assert_int_equal(qm_cid_worker(cid, sizeof(cid), 0), -1);
  assert_int_equal(qm_cid_worker(cid, 16, 4), -1); /* a client's id */
  assert_int_equal(qm_cid_worker(cid, sizeof(cid), QM_MAX_WORKERS + 1), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ring_order_wrap_full),
      cmocka_unit_test(test_ring_threads),
      cmocka_unit_test(test_cid_worker),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
