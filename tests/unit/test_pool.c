/*
 * Unit tests for the session pool policy (src/pool.h, SPEC §1.2, §1.5), with
 * fake sessions. Fake sessions are heap-allocated and freed by the destroy
 * op, so running under valgrind also checks "destroyed exactly once".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pool.h"
#include "quicmux/quicmux.h"

#define MAX_IDS 4096
#define STREAM_LIMIT 32

typedef struct fake_sess {
  int id;
  int active;
  int credit; /* streams it may still open */
} fake_sess;

typedef struct test_ctx {
  qm_pool *pool;
  int next_id;
  unsigned destroy_count[MAX_IDS];
  size_t ndestroyed;
  int order[MAX_IDS]; /* ids in the order destroy saw them */
  /* Re-entrancy checks run from inside destroy. */
  int check_reentry;
  size_t reentry_counts[MAX_IDS];
  int reentry_remove_rc[MAX_IDS];
  fake_sess *remove_in_destroy; /* a session destroy takes out (and frees) */
  int remove_in_destroy_rc;
} test_ctx;

static int fake_is_active(void *sess, void *ud) {
  (void)ud;
  return ((fake_sess *)sess)->active;
}

static int fake_can_take_stream(void *sess, void *ud) {
  (void)ud;
  return ((fake_sess *)sess)->credit > 0;
}

static void fake_destroy(void *sess, void *ud) {
  test_ctx *c = ud;
  fake_sess *s = sess;
  assert_true(s->id >= 0 && s->id < MAX_IDS);
  c->destroy_count[s->id]++;
  c->order[c->ndestroyed++] = s->id;
  if (c->check_reentry) {
    c->reentry_counts[s->id] = qm_pool_count(c->pool, NULL);
    c->reentry_remove_rc[s->id] = qm_pool_remove(c->pool, s);
  }
  if (c->remove_in_destroy) {
    fake_sess *o = c->remove_in_destroy;
    c->remove_in_destroy = NULL;
    c->remove_in_destroy_rc = qm_pool_remove(c->pool, o);
    free(o);
  }
  free(s);
}

static const qm_pool_ops fake_ops = {
    .is_active = fake_is_active,
    .can_take_stream = fake_can_take_stream,
    .destroy = fake_destroy,
};

static fake_sess *mk(test_ctx *c, int active, int credit) {
  fake_sess *s = malloc(sizeof *s);
  assert_non_null(s);
  assert_true(c->next_id < MAX_IDS);
  s->id = c->next_id++;
  s->active = active;
  s->credit = credit;
  return s;
}

static fake_sess *add(test_ctx *c, const char *key, int active, int credit) {
  fake_sess *s = mk(c, active, credit);
  assert_int_equal(qm_pool_add(c->pool, key, s), 0);
  return s;
}

static int setup(void **state) {
  test_ctx *c = calloc(1, sizeof *c);
  if (!c)
    return -1;
  if (qm_pool_new(&c->pool, &fake_ops, c) != 0) {
    free(c);
    return -1;
  }
  *state = c;
  return 0;
}

static int teardown(void **state) {
  test_ctx *c = *state;
  if (c->pool)
    qm_pool_free(c->pool);
  /* Every session ever made was destroyed at most once. */
  for (int i = 0; i < c->next_id; i++)
    assert_true(c->destroy_count[i] <= 1);
  free(c);
  return 0;
}

/* ---- tests ----------------------------------------------------------- */

static void test_new_rejects_bad_args(void **state) {
  (void)state;
  qm_pool *p = NULL;
  assert_int_equal(qm_pool_new(&p, NULL, NULL), QM_EINVAL);
  qm_pool_ops ops = fake_ops;
  ops.destroy = NULL;
  assert_int_equal(qm_pool_new(&p, &ops, NULL), QM_EINVAL);
  qm_pool_free(NULL); /* no-op */
}

static void test_pick_empty(void **state) {
  test_ctx *c = *state;
  assert_null(qm_pool_pick(c->pool, "1.2.3.4:443"));
  assert_int_equal(qm_pool_count(c->pool, NULL), 0);
  assert_int_equal(qm_pool_count(c->pool, "1.2.3.4:443"), 0);
  assert_int_equal(qm_pool_keys(c->pool), 0);
  add(c, "1.2.3.4:443", 1, 5);
  assert_null(qm_pool_pick(c->pool, "1.2.3.4:444"));
  assert_null(qm_pool_pick(c->pool, ""));
  assert_int_equal(qm_pool_prune(c->pool, "unknown"), 0);
}

static void test_pick_first_in_insertion_order(void **state) {
  test_ctx *c = *state;
  fake_sess *a = add(c, "k", 1, 1);
  fake_sess *b = add(c, "k", 1, 100);
  fake_sess *d = add(c, "k", 1, 50);
  assert_ptr_equal(qm_pool_pick(c->pool, "k"), a);
  a->credit = 0;
  assert_ptr_equal(qm_pool_pick(c->pool, "k"), b);
  b->credit = 0;
  assert_ptr_equal(qm_pool_pick(c->pool, "k"), d);
  a->credit = 1;
  assert_ptr_equal(qm_pool_pick(c->pool, "k"), a);
  assert_int_equal(qm_pool_count(c->pool, "k"), 3);
}

static void test_no_credit_then_new_session(void **state) {
  test_ctx *c = *state;
  fake_sess *a = add(c, "k", 1, 0);
  assert_null(qm_pool_pick(c->pool, "k"));
  /* Caller: prune (nothing inactive), then a new session. */
  assert_int_equal(qm_pool_prune(c->pool, "k"), 0);
  assert_int_equal(c->ndestroyed, 0);
  fake_sess *b = add(c, "k", 1, 1);
  assert_ptr_equal(qm_pool_pick(c->pool, "k"), b);
  assert_int_equal(qm_pool_count(c->pool, "k"), 2);
  /* The full one is kept, and wins again once it has credit. */
  a->credit = 1;
  assert_ptr_equal(qm_pool_pick(c->pool, "k"), a);
}

static void test_inactive_skipped(void **state) {
  test_ctx *c = *state;
  fake_sess *a = add(c, "k", 0, 10);
  assert_null(qm_pool_pick(c->pool, "k"));
  fake_sess *b = add(c, "k", 1, 10);
  assert_ptr_equal(qm_pool_pick(c->pool, "k"), b);
  (void)a;
  assert_int_equal(c->ndestroyed, 0); /* pick never destroys */
}

static void test_prune_only_inactive_of_key(void **state) {
  test_ctx *c = *state;
  fake_sess *k1[5];
  fake_sess *k2[3];
  for (int i = 0; i < 5; i++)
    k1[i] = add(c, "k1", i % 2 == 0 ? 0 : 1, 0); /* 0, 2, 4 dead */
  for (int i = 0; i < 3; i++)
    k2[i] = add(c, "k2", 0, 0);
  int dead1[3] = {k1[0]->id, k1[2]->id, k1[4]->id};
  int dead2[3] = {k2[0]->id, k2[1]->id, k2[2]->id};
  assert_int_equal(qm_pool_prune(c->pool, "k1"), 3);
  assert_int_equal(c->ndestroyed, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(c->order[i], dead1[i]); /* insertion order */
    assert_int_equal(c->destroy_count[dead1[i]], 1);
    assert_int_equal(c->destroy_count[dead2[i]], 0);
  }
  assert_int_equal(c->destroy_count[k1[1]->id], 0);
  assert_int_equal(c->destroy_count[k1[3]->id], 0);
  assert_int_equal(qm_pool_count(c->pool, "k1"), 2);
  assert_int_equal(qm_pool_count(c->pool, "k2"), 3);
  assert_int_equal(qm_pool_count(c->pool, NULL), 5);
  /* Survivors keep their order. */
  k1[1]->credit = 1;
  k1[3]->credit = 1;
  assert_ptr_equal(qm_pool_pick(c->pool, "k1"), k1[1]);
  /* Prune again: nothing more to do. */
  assert_int_equal(qm_pool_prune(c->pool, "k1"), 0);
  assert_int_equal(c->ndestroyed, 3);
  /* prune keeps the key even when it empties it; cleanup forgets it. */
  assert_int_equal(qm_pool_prune(c->pool, "k2"), 3);
  assert_int_equal(qm_pool_count(c->pool, "k2"), 0);
  assert_int_equal(qm_pool_keys(c->pool), 2);
  assert_int_equal(qm_pool_cleanup(c->pool), 0);
  assert_int_equal(qm_pool_keys(c->pool), 1);
}

static void test_prune_large_batch(void **state) {
  /* More dead sessions than one internal batch, interleaved with live ones. */
  test_ctx *c = *state;
  fake_sess *live[100];
  int nlive = 0;
  for (int i = 0; i < 300; i++) {
    fake_sess *s = add(c, "big", i % 3 == 1, 1);
    if (i % 3 == 1)
      live[nlive++] = s;
  }
  assert_int_equal(qm_pool_prune(c->pool, "big"), 200);
  assert_int_equal(c->ndestroyed, 200);
  for (int i = 0; i < 200; i++)
    assert_int_equal(c->order[i], (i / 2) * 3 + (i % 2 ? 2 : 0));
  assert_int_equal(qm_pool_count(c->pool, "big"), 100);
  for (int i = 0; i < nlive; i++) {
    assert_ptr_equal(qm_pool_pick(c->pool, "big"), live[i]);
    live[i]->credit = 0;
  }
  assert_null(qm_pool_pick(c->pool, "big"));
}

static void test_cleanup(void **state) {
  test_ctx *c = *state;
  fake_sess *idle = add(c, "a", 1, STREAM_LIMIT); /* live, idle */
  fake_sess *dead_a = add(c, "a", 0, 0);
  fake_sess *dead_b1 = add(c, "b", 0, 0);
  fake_sess *dead_b2 = add(c, "b", 0, 5);
  fake_sess *full = add(c, "c", 1, 0); /* live, no credit */
  int ida = dead_a->id, idb1 = dead_b1->id, idb2 = dead_b2->id;
  assert_int_equal(qm_pool_keys(c->pool), 3);
  assert_int_equal(qm_pool_cleanup(c->pool), 3);
  assert_int_equal(c->ndestroyed, 3);
  assert_int_equal(c->destroy_count[ida], 1);
  assert_int_equal(c->destroy_count[idb1], 1);
  assert_int_equal(c->destroy_count[idb2], 1);
  assert_int_equal(c->destroy_count[idle->id], 0);
  assert_int_equal(c->destroy_count[full->id], 0);
  assert_int_equal(qm_pool_keys(c->pool), 2); /* "b" forgotten */
  assert_int_equal(qm_pool_count(c->pool, "b"), 0);
  assert_int_equal(qm_pool_count(c->pool, NULL), 2);
  assert_ptr_equal(qm_pool_pick(c->pool, "a"), idle);
  /* Idle sessions survive any number of runs. */
  for (int i = 0; i < 5; i++)
    assert_int_equal(qm_pool_cleanup(c->pool), 0);
  assert_int_equal(qm_pool_keys(c->pool), 2);
  /* Once the idle timeout kills it, the next run drops it and its key. */
  idle->active = 0;
  assert_int_equal(qm_pool_cleanup(c->pool), 1);
  assert_int_equal(qm_pool_keys(c->pool), 1);
  /* A forgotten key can come back. */
  fake_sess *again = add(c, "b", 1, 1);
  assert_int_equal(qm_pool_keys(c->pool), 2);
  assert_ptr_equal(qm_pool_pick(c->pool, "b"), again);
}

static void test_remove(void **state) {
  test_ctx *c = *state;
  fake_sess *a = add(c, "k", 1, 1);
  fake_sess *b = add(c, "k", 1, 1);
  fake_sess *d = add(c, "other", 0, 1);
  assert_int_equal(qm_pool_remove(c->pool, a), 0);
  assert_int_equal(qm_pool_remove(c->pool, a), QM_ENOENT);
  assert_int_equal(c->ndestroyed, 0);
  assert_int_equal(qm_pool_count(c->pool, "k"), 1);
  assert_ptr_equal(qm_pool_pick(c->pool, "k"), b);
  /* A removed dead session is not destroyed by prune or cleanup either. */
  assert_int_equal(qm_pool_remove(c->pool, d), 0);
  assert_int_equal(qm_pool_cleanup(c->pool), 0);
  assert_int_equal(c->ndestroyed, 0);
  int never_added;
  assert_int_equal(qm_pool_remove(c->pool, &never_added), QM_ENOENT);
  free(a);
  free(d);
}

static void test_free_destroys_all_once(void **state) {
  test_ctx *c = *state;
  for (int i = 0; i < 10; i++)
    add(c, i % 2 ? "x" : "y", i % 3 != 0, i);
  fake_sess *r = add(c, "x", 1, 1);
  assert_int_equal(qm_pool_remove(c->pool, r), 0);
  qm_pool_prune(c->pool, "x");
  size_t before = c->ndestroyed;
  qm_pool_free(c->pool);
  c->pool = NULL;
  assert_int_equal(c->ndestroyed, 10);
  assert_true(before < 10);
  for (int i = 0; i < 10; i++)
    assert_int_equal(c->destroy_count[i], 1);
  assert_int_equal(c->destroy_count[r->id], 0);
  free(r);
}

static void test_keys_by_content(void **state) {
  test_ctx *c = *state;
  char k1[32], k2[32];
  snprintf(k1, sizeof k1, "%s:%d", "10.0.0.1", 443);
  fake_sess *a = add(c, k1, 1, 1);
  snprintf(k2, sizeof k2, "10.0.0.1:%d", 443);
  assert_ptr_not_equal(k1, k2);
  assert_ptr_equal(qm_pool_pick(c->pool, k2), a);
  /* The pool copied the key: the caller's buffer may change. */
  memset(k1, 'z', sizeof k1 - 1);
  assert_ptr_equal(qm_pool_pick(c->pool, k2), a);
  fake_sess *b = add(c, k2, 1, 1);
  assert_int_equal(qm_pool_keys(c->pool), 1);
  assert_int_equal(qm_pool_count(c->pool, "10.0.0.1:443"), 2);
  /* Prefixes and near misses are different keys. */
  assert_null(qm_pool_pick(c->pool, "10.0.0.1:44"));
  assert_null(qm_pool_pick(c->pool, "10.0.0.1:4430"));
  (void)b;
}

static void test_many_keys(void **state) {
  test_ctx *c = *state;
  enum { NK = 1000, PER = 3 };
  static fake_sess *s[NK][PER];
  char key[64];
  for (int r = 0; r < PER; r++) {
    for (int k = 0; k < NK; k++) {
      snprintf(key, sizeof key, "192.0.2.%d:%d", k % 250, 1000 + k);
      /* Session 0 of each key is full, 1 is dead on odd keys. */
      s[k][r] = add(c, key, !(r == 1 && k % 2), r == 0 ? 0 : 1);
    }
  }
  assert_int_equal(qm_pool_keys(c->pool), NK);
  assert_int_equal(qm_pool_count(c->pool, NULL), NK * PER);
  for (int k = 0; k < NK; k++) {
    snprintf(key, sizeof key, "192.0.2.%d:%d", k % 250, 1000 + k);
    assert_int_equal(qm_pool_count(c->pool, key), PER);
    assert_ptr_equal(qm_pool_pick(c->pool, key), s[k][k % 2 ? 2 : 1]);
  }
  assert_int_equal(qm_pool_cleanup(c->pool), NK / 2);
  assert_int_equal(qm_pool_count(c->pool, NULL), NK * PER - NK / 2);
  assert_int_equal(qm_pool_keys(c->pool), NK);
  /* Kill every session of the even keys: cleanup forgets those keys. */
  for (int k = 0; k < NK; k += 2)
    for (int r = 0; r < PER; r++)
      s[k][r]->active = 0;
  assert_int_equal(qm_pool_cleanup(c->pool), NK / 2 * PER);
  assert_int_equal(qm_pool_keys(c->pool), NK / 2);
  for (int k = 0; k < NK; k++) {
    snprintf(key, sizeof key, "192.0.2.%d:%d", k % 250, 1000 + k);
    assert_int_equal(qm_pool_count(c->pool, key), k % 2 ? 2 : 0);
  }
  assert_int_equal(c->ndestroyed, NK / 2 + NK / 2 * PER);
  /* Remove one from the middle of the map. */
  assert_int_equal(qm_pool_remove(c->pool, s[501][2]), 0);
  free(s[501][2]);
  assert_ptr_equal(qm_pool_pick(c->pool, "192.0.2.1:1501"), NULL);
}

static void collect(void *sess, void *arg) {
  int **out = arg;
  *(*out)++ = ((fake_sess *)sess)->id;
}

static void test_foreach(void **state) {
  test_ctx *c = *state;
  add(c, "a", 1, 1); /* 0 */
  add(c, "b", 1, 1); /* 1 */
  add(c, "a", 1, 1); /* 2 */
  add(c, "b", 1, 1); /* 3 */
  int ids[4];
  int *p = ids;
  qm_pool_foreach(c->pool, collect, &p);
  assert_int_equal(p - ids, 4);
  /* Insertion order within each key; keys in some order. */
  int a_first = ids[0] == 0;
  int expect_a[4] = {0, 2, 1, 3}, expect_b[4] = {1, 3, 0, 2};
  for (int i = 0; i < 4; i++)
    assert_int_equal(ids[i], a_first ? expect_a[i] : expect_b[i]);
}

static void test_destroy_reentry(void **state) {
  /* destroy runs after the session is unlinked: count does not include it,
   * and removing it reports it is not held. */
  test_ctx *c = *state;
  c->check_reentry = 1;
  add(c, "k", 0, 0); /* id 0 */
  add(c, "k", 1, 0); /* id 1 */
  add(c, "k", 0, 0); /* id 2 */
  add(c, "j", 0, 0); /* id 3 */
  assert_int_equal(qm_pool_prune(c->pool, "k"), 2);
  assert_int_equal(c->reentry_counts[0], 2);
  assert_int_equal(c->reentry_counts[2], 2);
  assert_int_equal(c->reentry_remove_rc[0], QM_ENOENT);
  assert_int_equal(c->reentry_remove_rc[2], QM_ENOENT);
  assert_int_equal(qm_pool_cleanup(c->pool), 1);
  assert_int_equal(c->reentry_counts[3], 1);
  assert_int_equal(c->reentry_remove_rc[3], QM_ENOENT);
  assert_int_equal(qm_pool_keys(c->pool), 1);
  assert_int_equal(qm_pool_count(c->pool, NULL), 1);
  qm_pool_free(c->pool);
  c->pool = NULL;
  assert_int_equal(c->reentry_counts[1], 0);
  assert_int_equal(c->reentry_remove_rc[1], QM_ENOENT);
  assert_int_equal(c->ndestroyed, 4);
}

static void test_destroy_removes_other(void **state) {
  /* A destroy callback takes other sessions out in the middle of prune and
   * cleanup: they are not destroyed, nothing dangles, counts stay right. */
  test_ctx *c = *state;
  add(c, "k", 0, 0);                   /* id 0: dead */
  add(c, "k", 0, 0);                   /* id 1: dead */
  fake_sess *live = add(c, "k", 1, 1); /* id 2 */
  fake_sess *z = add(c, "k", 1, 1);    /* id 3: taken out by a callback */
  fake_sess *y = add(c, "j", 0, 0);    /* id 4: taken out by a callback */
  /* Same key, while pruning it. */
  c->remove_in_destroy = z;
  assert_int_equal(qm_pool_prune(c->pool, "k"), 2);
  assert_int_equal(c->remove_in_destroy_rc, 0);
  assert_int_equal(qm_pool_count(c->pool, "k"), 1);
  assert_int_equal(qm_pool_count(c->pool, NULL), 2);
  assert_ptr_equal(qm_pool_pick(c->pool, "k"), live);
  /* Another key, while pruning "k". */
  add(c, "k", 0, 0); /* id 5 */
  c->remove_in_destroy = y;
  assert_int_equal(qm_pool_prune(c->pool, "k"), 1);
  assert_int_equal(c->remove_in_destroy_rc, 0);
  assert_int_equal(qm_pool_count(c->pool, "j"), 0);
  assert_int_equal(qm_pool_count(c->pool, NULL), 1);
  /* Cleanup whose destroy removes the last session of a key it has already
   * passed: that key goes at the next run. */
  add(c, "m", 0, 0); /* id 6 */
  c->remove_in_destroy = live;
  assert_int_equal(qm_pool_cleanup(c->pool), 1);
  assert_int_equal(c->remove_in_destroy_rc, 0);
  assert_int_equal(qm_pool_count(c->pool, NULL), 0);
  for (int i = 2; i <= 4; i++)
    assert_int_equal(c->destroy_count[i], 0);
  assert_int_equal(c->ndestroyed, 4);
  assert_int_equal(qm_pool_cleanup(c->pool), 0);
  assert_int_equal(qm_pool_keys(c->pool), 0);
}

/* ---- SPEC §1.2 dial sequence ----------------------------------------- */

/* openConnection: first usable session, else prune + new session + add. */
static fake_sess *open_stream(test_ctx *c, const char *key) {
  fake_sess *s = qm_pool_pick(c->pool, key);
  if (!s) {
    qm_pool_prune(c->pool, key);
    s = add(c, key, 1, STREAM_LIMIT);
  }
  assert_true(s->credit > 0);
  s->credit--;
  return s;
}

/* The server gives credit back when a stream is finished (MAX_STREAMS). */
static void close_stream(fake_sess *s) {
  s->credit++;
}

static void test_dial_sequence(void **state) {
  test_ctx *c = *state;
  const char *key = "127.0.0.1:10000";
  fake_sess *streams[40];
  for (int i = 0; i < 40; i++)
    streams[i] = open_stream(c, key);
  assert_int_equal(qm_pool_count(c->pool, key), 2);
  assert_int_equal(qm_pool_count(c->pool, NULL), 2);
  fake_sess *s1 = streams[0], *s2 = streams[39];
  assert_ptr_not_equal(s1, s2);
  for (int i = 0; i < 40; i++)
    assert_ptr_equal(streams[i], i < STREAM_LIMIT ? s1 : s2);
  assert_int_equal(s1->credit, 0);
  assert_int_equal(s2->credit, STREAM_LIMIT - 8);

  /* Close five of session 1's streams: new opens go back to session 1,
   * even though session 2 has more credit. */
  for (int i = 0; i < 5; i++)
    close_stream(streams[i]);
  for (int i = 0; i < 5; i++)
    assert_ptr_equal(open_stream(c, key), s1);
  /* Then session 1 is full again and session 2 takes the next. */
  assert_ptr_equal(open_stream(c, key), s2);
  assert_int_equal(qm_pool_count(c->pool, key), 2);
  assert_int_equal(c->ndestroyed, 0);

  /* Session 1 dies (idle timeout): it is skipped, and the next dial that
   * needs a new session prunes it before adding one. */
  s1->active = 0;
  while (s2->credit > 0)
    assert_ptr_equal(open_stream(c, key), s2);
  int id1 = s1->id;
  fake_sess *s3 = open_stream(c, key);
  assert_ptr_not_equal(s3, s2);
  assert_int_equal(c->ndestroyed, 1);
  assert_int_equal(c->destroy_count[id1], 1);
  assert_int_equal(qm_pool_count(c->pool, key), 2);
  close_stream(s2);
  assert_ptr_equal(open_stream(c, key), s2);
  assert_ptr_equal(open_stream(c, key), s3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_rejects_bad_args),
      cmocka_unit_test_setup_teardown(test_pick_empty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pick_first_in_insertion_order, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_no_credit_then_new_session, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_inactive_skipped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_prune_only_inactive_of_key, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_prune_large_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cleanup, setup, teardown),
      cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
      cmocka_unit_test_setup_teardown(test_free_destroys_all_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_keys_by_content, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_foreach, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_reentry, setup, teardown),
      cmocka_unit_test_setup_teardown(test_destroy_removes_other, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_dial_sequence, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
