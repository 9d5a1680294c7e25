/*
 * Unit tests for the pool's decisions (src/policy.h) in VIRTUAL time.
 *
 * A small simulated dialer is built here on the real qm_pool (src/pool.c)
 * and the real policy functions, with fake sessions whose state is plain
 * data: {state, suspect, suspect_since, npending, bidi_left, pto_count,
 * nstreams, ...}. Time is a fake clock that only moves when a test advances
 * it, so handshakes, the 8 s dead-path rule, keep-alive and idle close are
 * checked to the millisecond without sleeping.
 *
 * The simulated dialer mirrors src/dialer.c + src/session.c:
 *   dial:      pick (first active session that qm_policy_can_take) or prune,
 *              check qm_policy_may_open_session, make a handshaking session;
 *   attach:    open at once on an established session with credit, else
 *              queue (npending);
 *   handshake: after hs_ns the session is established with the server's
 *              stream limit; queued streams open while credit lasts, the
 *              overflow is dialled again (requeue);
 *   health:    qm_policy_health on every step; SUSPECT moves the streams
 *              qm_policy_can_retry allows, DEAD closes the session;
 *   timers:    qm_policy_on_streams when the stream count goes 0 <-> >0.
 *
 * Build standalone:
 *   gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Isrc \
 *     src/policy.c src/pool.c tests/unit/test_policy.c \
 *     $(pkg-config --cflags --libs cmocka) -o /tmp/tp && /tmp/tp
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"
#include "pool.h"
#include "quicmux/quicmux.h"

#define MS 1000000ull /* ns per ms */
#define SEC 1000000000ull
#define MAX_SESS 2048
#define MAX_STREAMS 8192

typedef struct fsess fsess;

typedef struct fstream {
  int idx;
  fsess *sess; /* NULL: not placed (refused, failed or closed) */
  int opened;  /* has a stream id on sess (else queued) */
  uint64_t opened_at;
  uint64_t acked; /* bytes the peer acknowledged */
  uint64_t received;
  int fin, reset;
  int closed;       /* both directions finished */
  int failed;       /* ended with an error (dead session, refused) */
  int moves;        /* times moved away from a suspect session */
  uint64_t open_ts; /* when it was opened on a session */
} fstream;

struct fsess {
  int id;
  const char *key;
  qm_policy_state state;
  int suspect;
  uint64_t suspect_since;
  size_t npending;
  uint64_t bidi_left; /* server's stream credit left (established) */
  size_t pto_count;   /* > 0: the peer is silent and owes an ack */
  uint64_t last_rx;   /* last packet from the peer (ticks with pto_count 0) */
  size_t nstreams;    /* streams attached: open + queued */
  uint64_t created_at, hs_done_at, established_at;
  uint32_t server_limit;
  int destroyed;
  /* timers (from qm_policy_on_streams) */
  uint64_t keepalive_ms;
  uint64_t next_ping;     /* 0 = off */
  uint64_t idle_deadline; /* 0 = not armed */
  unsigned pings;
  int idle_closed;
};

typedef struct sim {
  qm_pool *pool;
  uint64_t now; /* virtual clock, ns */
  fsess *sess[MAX_SESS];
  int nsess;
  fstream *st[MAX_STREAMS];
  int nst;
  /* settings */
  uint64_t hs_ns;
  uint32_t server_limit;
  uint32_t max_here, max_all;
  uint64_t keepalive_ms, idle_ms;
  /* counters */
  int refused;
  int requeued;
  int destroyed;
} sim;

/* ---- pool ops on fake sessions ---------------------------------------- */

static int op_is_active(void *p, void *ud) {
  (void)ud;
  return ((fsess *)p)->state != QM_POLICY_GONE;
}

static int op_can_take(void *p, void *ud) {
  fsess *s = p;
  (void)ud;
  return qm_policy_can_take(s->state, s->suspect, s->npending,
                            s->state == QM_POLICY_ESTABLISHED ? s->bidi_left
                                                              : 0);
}

static void op_destroy(void *p, void *ud) {
  fsess *s = p;
  sim *m = ud;
  assert_false(s->destroyed); /* exactly once */
  s->destroyed = 1;
  s->state = QM_POLICY_GONE;
  m->destroyed++;
  /* memory is freed at teardown, so stale stream pointers stay readable */
}

static const qm_pool_ops ops = {op_is_active, op_can_take, op_destroy};

/* ---- the simulated dialer -------------------------------------------- */

static void streams_changed(sim *m, fsess *s, size_t before) {
  qm_policy_timers t;
  if (s->state == QM_POLICY_GONE || (before > 0) == (s->nstreams > 0))
    return;
  t = qm_policy_on_streams(s->nstreams, m->keepalive_ms, m->idle_ms);
  s->keepalive_ms = t.keepalive_ms;
  s->next_ping = t.keepalive_ms ? m->now + t.keepalive_ms * MS : 0;
  s->idle_deadline = t.idle_close_ms ? m->now + t.idle_close_ms * MS : 0;
}

static void link_st(sim *m, fsess *s, fstream *st) {
  size_t before = s->nstreams;
  st->sess = s;
  s->nstreams++;
  streams_changed(m, s, before);
}

static void unlink_st(sim *m, fsess *s, fstream *st) {
  size_t before = s->nstreams;
  assert_true(s->nstreams > 0);
  st->sess = NULL;
  s->nstreams--;
  streams_changed(m, s, before);
}

static void open_on(sim *m, fsess *s, fstream *st) {
  assert_true(s->bidi_left > 0);
  s->bidi_left--;
  st->opened = 1;
  st->open_ts = m->now;
  st->opened_at = m->now;
}

static void attach(sim *m, fsess *s, fstream *st) {
  link_st(m, s, st);
  st->opened = 0;
  if (s->state == QM_POLICY_ESTABLISHED && s->bidi_left > 0) {
    open_on(m, s, st);
    return;
  }
  s->npending++;
}

static fsess *new_session(sim *m, const char *key) {
  fsess *s = calloc(1, sizeof *s);
  assert_non_null(s);
  assert_true(m->nsess < MAX_SESS);
  s->id = m->nsess;
  s->key = key;
  s->state = QM_POLICY_HANDSHAKING;
  s->created_at = m->now;
  s->hs_done_at = m->now + m->hs_ns;
  s->server_limit = m->server_limit;
  m->sess[m->nsess++] = s;
  return s;
}

/* Place st: 0, or -1 when a cap refused it (st->failed). */
static int place(sim *m, const char *key, fstream *st) {
  fsess *s = qm_pool_pick(m->pool, key);
  if (!s) {
    qm_pool_prune(m->pool, key);
    if (!qm_policy_may_open_session(qm_pool_count(m->pool, key),
                                    qm_pool_count(m->pool, NULL), m->max_here,
                                    m->max_all)) {
      m->refused++;
      st->failed = 1;
      return -1;
    }
    s = new_session(m, key);
    assert_int_equal(qm_pool_add(m->pool, key, s), 0);
  }
  attach(m, s, st);
  return 0;
}

static fstream *new_stream(sim *m) {
  fstream *st = calloc(1, sizeof *st);
  assert_non_null(st);
  assert_true(m->nst < MAX_STREAMS);
  st->idx = m->nst;
  m->st[m->nst++] = st;
  return st;
}

static fstream *dial(sim *m, const char *key) {
  fstream *st = new_stream(m);
  place(m, key, st);
  return st;
}

/* Both directions finished: the server gives the credit back. */
static void close_stream(sim *m, fstream *st) {
  fsess *s = st->sess;
  assert_non_null(s);
  if (st->opened)
    s->bidi_left++;
  else
    s->npending--;
  st->closed = 1;
  unlink_st(m, s, st);
}

/* The session ends: its streams fail (as in qm_session_free). */
static void session_gone(sim *m, fsess *s) {
  s->state = QM_POLICY_GONE;
  for (int i = 0; i < m->nst; i++) {
    fstream *st = m->st[i];
    if (st->sess == s) {
      st->failed = 1;
      if (!st->opened)
        s->npending--;
      unlink_st(m, s, st);
    }
  }
}

static void establish(sim *m, fsess *s) {
  s->state = QM_POLICY_ESTABLISHED;
  s->established_at = m->now;
  s->bidi_left = s->server_limit;
  /* queued streams open in order while credit lasts ... */
  for (int i = 0; i < m->nst; i++) {
    fstream *st = m->st[i];
    if (st->sess == s && !st->opened && s->bidi_left > 0) {
      s->npending--;
      open_on(m, s, st);
    }
  }
  /* ... the overflow goes elsewhere (session.c open_pending) */
  for (int i = 0; i < m->nst; i++) {
    fstream *st = m->st[i];
    if (st->sess == s && !st->opened) {
      s->npending--;
      unlink_st(m, s, st);
      m->requeued++;
      place(m, s->key, st);
    }
  }
}

/* session.c retry_unanswered */
static int retry_unanswered(sim *m, fsess *s) {
  int moved = 0;
  for (int i = 0; i < m->nst; i++) {
    fstream *st = m->st[i];
    if (st->sess != s || !st->opened || st->closed ||
        !qm_policy_can_retry(st->acked, st->received, st->fin, st->reset,
                             s->last_rx > st->open_ts))
      continue;
    /* the stream id stays used on s (a ghost in session.c): no credit back */
    unlink_st(m, s, st);
    st->opened = 0;
    st->moves++;
    moved++;
    place(m, s->key, st);
  }
  return moved;
}

static qm_health check_health(sim *m, fsess *s) {
  qm_health_facts f;
  qm_health h;
  /* The model: a session whose pto_count is 0 hears from its peer on every
   * tick; one with pto_count > 0 owes an ack and hears nothing. */
  if (s->pto_count == 0)
    s->last_rx = m->now;
  f.state = s->state;
  f.pto_count = s->pto_count;
  f.bytes_in_flight = s->pto_count ? 1200 : 0;
  f.silence = m->now - s->last_rx;
  f.pto = 30 * MS; /* loopback-like: the 1 s floor rules */
  f.suspect = s->suspect;
  f.suspect_since = s->suspect_since;
  f.now = m->now;
  h = qm_policy_health(&f);
  switch (h) {
  case QM_HEALTH_SUSPECT:
    s->suspect = 1;
    s->suspect_since = m->now;
    retry_unanswered(m, s);
    break;
  case QM_HEALTH_DEAD:
    session_gone(m, s);
    break;
  case QM_HEALTH_RECOVER:
    s->suspect = 0;
    break;
  case QM_HEALTH_OK:
    break;
  }
  return h;
}

/* One step of every live session at the current time. */
static void tick(sim *m) {
  for (int i = 0; i < m->nsess; i++) {
    fsess *s = m->sess[i];
    if (s->state == QM_POLICY_GONE)
      continue;
    if (s->state == QM_POLICY_HANDSHAKING && m->now >= s->hs_done_at)
      establish(m, s);
    while (s->next_ping && m->now >= s->next_ping) {
      s->pings++;
      s->next_ping += s->keepalive_ms * MS;
    }
    if (s->idle_deadline && m->now >= s->idle_deadline) {
      s->idle_closed = 1;
      session_gone(m, s);
      continue;
    }
    check_health(m, s);
  }
}

/* Advance the clock by dt in steps of at most 1 ms, ticking each step. */
static void advance(sim *m, uint64_t dt) {
  uint64_t end = m->now + dt;
  while (m->now < end) {
    uint64_t step = end - m->now < MS ? end - m->now : MS;
    m->now += step;
    tick(m);
  }
}

static int count_state(sim *m, qm_policy_state st) {
  int n = 0;
  for (int i = 0; i < m->nsess; i++)
    if (!m->sess[i]->destroyed && m->sess[i]->state == st)
      n++;
  return n;
}

static int count_opened(sim *m) {
  int n = 0;
  for (int i = 0; i < m->nst; i++)
    if (m->st[i]->sess && m->st[i]->opened)
      n++;
  return n;
}

static int setup(void **state) {
  sim *m = calloc(1, sizeof *m);
  if (!m)
    return -1;
  if (qm_pool_new(&m->pool, &ops, m) != 0) {
    free(m);
    return -1;
  }
  m->now = 1000 * SEC; /* not 0: catches "0 means unset" mistakes */
  m->hs_ns = 200 * MS;
  m->server_limit = 32; /* a v2ray server */
  m->max_here = 64;
  m->max_all = 1024;
  m->keepalive_ms = 10000;
  m->idle_ms = 25000;
  *state = m;
  return 0;
}

static int teardown(void **state) {
  sim *m = *state;
  qm_pool_free(m->pool);
  for (int i = 0; i < m->nsess; i++) {
    assert_true(m->sess[i]->destroyed); /* pool freed every one it held */
    free(m->sess[i]);
  }
  for (int i = 0; i < m->nst; i++)
    free(m->st[i]);
  free(m);
  return 0;
}

static const char *K = "127.0.0.1|4433";
static const char *K2 = "::1|4433";

/* ---- pure rules -------------------------------------------------------- */

static void test_can_take_table(void **state) {
  (void)state;
  /* handshaking: up to 32 queued streams */
  assert_true(qm_policy_can_take(QM_POLICY_HANDSHAKING, 0, 0, 0));
  assert_true(qm_policy_can_take(QM_POLICY_HANDSHAKING, 0, 31, 0));
  assert_false(qm_policy_can_take(QM_POLICY_HANDSHAKING, 0, 32, 0));
  assert_false(qm_policy_can_take(QM_POLICY_HANDSHAKING, 0, 33, 0));
  assert_int_equal(QM_POLICY_EXPECTED_STREAMS, 32);
  /* established: while the server's credit lasts (beyond what is queued) */
  assert_true(qm_policy_can_take(QM_POLICY_ESTABLISHED, 0, 0, 1));
  assert_false(qm_policy_can_take(QM_POLICY_ESTABLISHED, 0, 0, 0));
  assert_false(qm_policy_can_take(QM_POLICY_ESTABLISHED, 0, 3, 3));
  assert_true(qm_policy_can_take(QM_POLICY_ESTABLISHED, 0, 3, 4));
  assert_true(qm_policy_can_take(QM_POLICY_ESTABLISHED, 0, 0, UINT64_MAX));
  /* suspect or gone: never */
  assert_false(qm_policy_can_take(QM_POLICY_ESTABLISHED, 1, 0, 32));
  assert_false(qm_policy_can_take(QM_POLICY_HANDSHAKING, 1, 0, 0));
  assert_false(qm_policy_can_take(QM_POLICY_GONE, 0, 0, 32));
}

static void test_can_retry_table(void **state) {
  (void)state;
  assert_true(qm_policy_can_retry(0, 0, 0, 0, 0));
  assert_false(qm_policy_can_retry(1, 0, 0, 0, 0)); /* something was acked */
  assert_false(qm_policy_can_retry(0, 1, 0, 0, 0)); /* the server answered */
  assert_false(qm_policy_can_retry(0, 0, 1, 0, 0)); /* FIN received */
  assert_false(qm_policy_can_retry(0, 0, 0, 1, 0)); /* reset */
  /* the peer spoke after the stream opened: it may have the bytes (a slow
   * path, not a dead one), so they must not go out twice */
  assert_false(qm_policy_can_retry(0, 0, 0, 0, 1));
  assert_false(qm_policy_can_retry(1000, 1000, 1, 1, 1));
}

static void test_caps_table(void **state) {
  (void)state;
  assert_true(qm_policy_may_open_session(0, 0, 64, 1024));
  assert_true(qm_policy_may_open_session(63, 63, 64, 1024));
  assert_false(qm_policy_may_open_session(64, 64, 64, 1024)); /* per dest */
  assert_true(qm_policy_may_open_session(10, 1023, 64, 1024));
  assert_false(qm_policy_may_open_session(10, 1024, 64, 1024)); /* total */
  assert_false(qm_policy_may_open_session(0, 0, 0, 1024));
  assert_true(qm_policy_may_open_session(0, 0, 1, 1));
  assert_false(qm_policy_may_open_session(1, 1, 1, 1));
}

static void test_timers_table(void **state) {
  (void)state;
  qm_policy_timers t = qm_policy_on_streams(0, 10000, 25000);
  assert_int_equal(t.keepalive_ms, 0);
  assert_int_equal(t.idle_close_ms, 25000);
  t = qm_policy_on_streams(1, 10000, 25000);
  assert_int_equal(t.keepalive_ms, 10000);
  assert_int_equal(t.idle_close_ms, 0);
  t = qm_policy_on_streams(1000, 10000, 25000);
  assert_int_equal(t.keepalive_ms, 10000);
  assert_int_equal(t.idle_close_ms, 0);
  /* keep-alive configured off stays off; idle close off stays off */
  t = qm_policy_on_streams(5, 0, 25000);
  assert_int_equal(t.keepalive_ms, 0);
  assert_int_equal(t.idle_close_ms, 0);
  t = qm_policy_on_streams(0, 10000, 0);
  assert_int_equal(t.keepalive_ms, 0);
  assert_int_equal(t.idle_close_ms, 0);
}

static qm_health H(qm_policy_state st, size_t pto, uint64_t in_flight,
                   uint64_t silence, uint64_t pto_ns, int suspect,
                   uint64_t since, uint64_t now) {
  qm_health_facts f = {st,     pto,     in_flight, silence,
                       pto_ns, suspect, since,     now};
  return qm_policy_health(&f);
}

static void test_health_table(void **state) {
  (void)state;
  uint64_t t0 = 5000 * SEC, p = 30 * MS;
  assert_int_equal(QM_POLICY_SILENCE_NS, SEC);
  assert_int_equal(QM_POLICY_DEAD_AFTER_NS, 8 * SEC);
  /* owed an ack (bytes in flight or probes out) and silent >= 1 s */
  assert_int_equal(H(QM_POLICY_ESTABLISHED, 0, 1200, 999 * MS, p, 0, 0, t0),
                   QM_HEALTH_OK);
  assert_int_equal(H(QM_POLICY_ESTABLISHED, 0, 1200, SEC, p, 0, 0, t0),
                   QM_HEALTH_SUSPECT);
  assert_int_equal(H(QM_POLICY_ESTABLISHED, 3, 0, SEC, p, 0, 0, t0),
                   QM_HEALTH_SUSPECT);
  /* silent but owed nothing (an idle peer): fine however long */
  assert_int_equal(H(QM_POLICY_ESTABLISHED, 0, 0, 60 * SEC, p, 0, 0, t0),
                   QM_HEALTH_OK);
  /* a slow path: the floor is 3 probe timeouts when they are longer */
  assert_int_equal(
      H(QM_POLICY_ESTABLISHED, 1, 1200, 2 * SEC, 800 * MS, 0, 0, t0),
      QM_HEALTH_OK);
  assert_int_equal(
      H(QM_POLICY_ESTABLISHED, 2, 1200, 2400 * MS, 800 * MS, 0, 0, t0),
      QM_HEALTH_SUSPECT);
  /* suspect and still silent: OK until 8 s, then DEAD */
  assert_int_equal(H(QM_POLICY_ESTABLISHED, 3, 1200, SEC, p, 1, t0, t0),
                   QM_HEALTH_OK);
  assert_int_equal(
      H(QM_POLICY_ESTABLISHED, 4, 1200, 8900 * MS, p, 1, t0, t0 + 7900 * MS),
      QM_HEALTH_OK);
  assert_int_equal(
      H(QM_POLICY_ESTABLISHED, 5, 1200, 9100 * MS, p, 1, t0, t0 + 8100 * MS),
      QM_HEALTH_DEAD);
  /* heard from after it became suspect: recover, even after 8 s */
  assert_int_equal(
      H(QM_POLICY_ESTABLISHED, 0, 0, 10 * MS, p, 1, t0, t0 + 2 * SEC),
      QM_HEALTH_RECOVER);
  assert_int_equal(
      H(QM_POLICY_ESTABLISHED, 3, 1200, 0, p, 1, t0, t0 + 20 * SEC),
      QM_HEALTH_RECOVER);
  /* handshaking and gone sessions are left to the handshake/idle timeout */
  assert_int_equal(H(QM_POLICY_HANDSHAKING, 9, 1200, 60 * SEC, p, 0, 0, t0),
                   QM_HEALTH_OK);
  assert_int_equal(
      H(QM_POLICY_GONE, 9, 1200, 60 * SEC, p, 1, t0, t0 + 60 * SEC),
      QM_HEALTH_OK);
}

/* ---- the simulated dialer ------------------------------------------- */

static void test_first_usable_session_wins(void **state) {
  sim *m = *state;
  m->server_limit = 2;
  fstream *a = dial(m, K);
  fstream *b = dial(m, K);
  advance(m, m->hs_ns);
  assert_int_equal(m->nsess, 1);
  assert_true(a->opened && b->opened);
  /* session 0 is full: the third goes to a new session 1 */
  fstream *c = dial(m, K);
  assert_int_equal(m->nsess, 2);
  assert_ptr_equal(c->sess, m->sess[1]);
  advance(m, m->hs_ns);
  fstream *d = dial(m, K);
  assert_ptr_equal(d->sess, m->sess[1]); /* 0 full, 1 has credit */
  /* credit comes back on session 0: insertion order, 0 wins again */
  close_stream(m, a);
  fstream *e = dial(m, K);
  assert_ptr_equal(e->sess, m->sess[0]);
  /* a gone session is skipped even if it had credit */
  close_stream(m, b);
  m->sess[0]->state = QM_POLICY_GONE;
  close_stream(m, d);
  fstream *f = dial(m, K);
  assert_ptr_equal(f->sess, m->sess[1]);
  /* another destination never shares */
  fstream *g = dial(m, K2);
  assert_int_equal(m->nsess, 3);
  assert_ptr_equal(g->sess, m->sess[2]);
}

static void test_handshaking_takes_32(void **state) {
  sim *m = *state;
  for (int i = 0; i < 32; i++)
    dial(m, K);
  assert_int_equal(m->nsess, 1);
  assert_int_equal(m->sess[0]->npending, 32);
  assert_int_equal(m->sess[0]->state, QM_POLICY_HANDSHAKING);
  dial(m, K); /* 33rd: a second session, also handshaking */
  assert_int_equal(m->nsess, 2);
  assert_int_equal(m->sess[1]->npending, 1);
  assert_int_equal(count_state(m, QM_POLICY_HANDSHAKING), 2);
  assert_int_equal(count_opened(m), 0);
}

static void check_parallel(sim *m, int n) {
  int want = (n + 31) / 32;
  uint64_t t0 = m->now;
  for (int i = 0; i < n; i++)
    dial(m, K);
  /* every session started at once, none waits for another's handshake */
  assert_int_equal(m->nsess, want);
  assert_int_equal(count_state(m, QM_POLICY_HANDSHAKING), want);
  for (int i = 0; i < want; i++) {
    assert_int_equal(m->sess[i]->created_at, t0);
    assert_int_equal(m->sess[i]->npending,
                     i < want - 1 || n % 32 == 0 ? 32 : n % 32);
  }
  advance(m, m->hs_ns - MS);
  assert_int_equal(count_opened(m), 0);
  advance(m, MS);
  /* one handshake time later all n are open, on `want` sessions */
  assert_int_equal(count_opened(m), n);
  assert_int_equal(count_state(m, QM_POLICY_ESTABLISHED), want);
  for (int i = 0; i < m->nst; i++)
    assert_int_equal(m->st[i]->opened_at - t0, m->hs_ns);
  assert_int_equal(m->requeued, 0);
}

static void test_parallel_handshakes_100(void **state) {
  check_parallel(*state, 100); /* ceil(100/32) = 4 */
}

static void test_parallel_handshakes_1000(void **state) {
  check_parallel(*state, 1000); /* 32 */
}

static void test_established_with_credit_takes(void **state) {
  sim *m = *state;
  for (int i = 0; i < 10; i++)
    dial(m, K);
  advance(m, m->hs_ns);
  assert_int_equal(m->sess[0]->bidi_left, 22);
  for (int i = 0; i < 22; i++) {
    fstream *st = dial(m, K);
    assert_ptr_equal(st->sess, m->sess[0]);
    assert_true(st->opened); /* opened at once, no queue */
  }
  assert_int_equal(m->nsess, 1);
  assert_int_equal(m->sess[0]->bidi_left, 0);
  /* no credit: a new session */
  fstream *st = dial(m, K);
  assert_int_equal(m->nsess, 2);
  assert_ptr_equal(st->sess, m->sess[1]);
  assert_false(st->opened);
}

static void wave_reuse(sim *m, int n) {
  int want = (n + 31) / 32;
  int first = m->nst;
  for (int i = 0; i < n; i++)
    dial(m, K);
  advance(m, m->hs_ns);
  assert_int_equal(m->nsess, want);
  assert_int_equal(count_opened(m), n);
  for (int i = first; i < m->nst; i++)
    close_stream(m, m->st[i]);
  /* second wave at once: credit is back, no new session */
  first = m->nst;
  for (int i = 0; i < n; i++)
    dial(m, K);
  assert_int_equal(m->nsess, want);
  assert_int_equal(count_opened(m), n);
  for (int i = first; i < m->nst; i++)
    assert_true(m->st[i]->opened && m->st[i]->sess);
  /* third wave after a while (within the idle period) */
  for (int i = first; i < m->nst; i++)
    close_stream(m, m->st[i]);
  advance(m, 5 * SEC);
  for (int i = 0; i < n; i++)
    dial(m, K);
  assert_int_equal(m->nsess, want);
  assert_int_equal(count_opened(m), n);
}

static void test_credit_returned_reuse_100(void **state) {
  wave_reuse(*state, 100);
}
static void test_credit_returned_reuse_1000(void **state) {
  wave_reuse(*state, 1000);
}
static void test_credit_returned_reuse_33(void **state) {
  wave_reuse(*state, 33);
}

/* The server allows fewer than the 32 we queue: the overflow goes on. */
static void test_server_limit_below_32(void **state) {
  sim *m = *state;
  m->server_limit = 2;
  for (int i = 0; i < 5; i++)
    dial(m, K);
  assert_int_equal(m->nsess, 1); /* all 5 queued on one handshake */
  advance(m, 3 * m->hs_ns);
  assert_int_equal(count_opened(m), 5);
  assert_int_equal(m->nsess, 3); /* ceil(5/2) */
  assert_int_equal(m->requeued, 3 + 1);
  for (int i = 0; i < m->nst; i++)
    assert_false(m->st[i]->failed);
}

/* A restarted server: 3 PTOs, the session becomes suspect, the streams
 * nothing of which reached the server move to a new session. */
static void test_suspect_skipped_and_retry(void **state) {
  sim *m = *state;
  fstream *s[6];
  for (int i = 0; i < 6; i++)
    s[i] = dial(m, K);
  advance(m, m->hs_ns);
  fsess *a = m->sess[0];
  s[1]->acked = 100;   /* the server's app may have it: no */
  s[2]->received = 10; /* the server answered: no */
  s[3]->fin = 1;       /* no */
  s[4]->reset = 1;     /* no */
  /* s[0] and s[5]: sent, nothing acked, nothing heard: may move */
  /* the server goes silent while it owes acks: not yet after 999 ms ... */
  a->pto_count = 2;
  advance(m, 999 * MS);
  assert_false(a->suspect);
  /* ... suspect once 1 s of silence is reached */
  a->pto_count = 3;
  advance(m, 2 * MS);
  assert_true(a->suspect);
  assert_int_equal(m->nsess, 2);
  fsess *b = m->sess[1];
  assert_ptr_equal(s[0]->sess, b);
  assert_ptr_equal(s[5]->sess, b);
  assert_int_equal(s[0]->moves, 1);
  for (int i = 1; i <= 4; i++) {
    assert_ptr_equal(s[i]->sess, a);
    assert_int_equal(s[i]->moves, 0);
  }
  /* the suspect session has credit but pick skips it */
  assert_true(a->bidi_left > 0);
  fstream *n = dial(m, K);
  assert_ptr_equal(n->sess, b);
  /* more PTOs while suspect: nothing moves twice */
  a->pto_count = 5;
  advance(m, 100 * MS);
  assert_int_equal(s[0]->moves, 1);
  /* moved streams open on b after its handshake */
  advance(m, m->hs_ns);
  assert_true(s[0]->opened && s[5]->opened && n->opened);
}

/* A peer that was heard from after a stream opened may have its bytes: a
 * later silence must not send them again on another session. */
static void test_heard_since_open_not_moved(void **state) {
  sim *m = *state;
  fstream *st = dial(m, K);
  advance(m, m->hs_ns);
  assert_true(st->opened);
  fsess *a = m->sess[0];
  advance(m, 10 * MS); /* the peer still answers (acks, say) */
  a->pto_count = 3;    /* then it goes silent */
  advance(m, 1100 * MS);
  assert_true(a->suspect);
  assert_ptr_equal(st->sess, a);
  assert_int_equal(st->moves, 0);
}

static void test_recover(void **state) {
  sim *m = *state;
  dial(m, K);
  advance(m, m->hs_ns);
  fsess *a = m->sess[0];
  a->pto_count = 3;
  advance(m, SEC + MS);
  assert_true(a->suspect);
  fstream *x = dial(m, K);
  assert_ptr_equal(x->sess, m->sess[1]);
  /* still probing (pto 1-2 never happens in ngtcp2, PTO resets on ack) */
  advance(m, 3 * SEC);
  assert_true(a->suspect);
  a->pto_count = 0; /* an ack came */
  advance(m, MS);
  assert_false(a->suspect);
  assert_int_equal(a->state, QM_POLICY_ESTABLISHED);
  fstream *y = dial(m, K);
  assert_ptr_equal(y->sess, a); /* first in order again */
  /* and it is not closed 8 s after it first became suspect */
  advance(m, 10 * SEC);
  assert_int_equal(a->state, QM_POLICY_ESTABLISHED);
}

static void test_dead_after_8s(void **state) {
  sim *m = *state;
  fstream *st = dial(m, K);
  advance(m, m->hs_ns);
  st->acked = 1; /* cannot move: it must fail, not hang */
  fsess *a = m->sess[0];
  a->pto_count = 3;
  advance(m, SEC + MS);
  assert_true(a->suspect);
  uint64_t t_suspect = a->suspect_since;
  assert_true(t_suspect <= m->now && m->now - t_suspect <= MS);
  advance(m, 7900 * MS);
  assert_int_equal(a->state, QM_POLICY_ESTABLISHED);
  assert_false(st->failed);
  advance(m, 200 * MS); /* 8.1 s */
  assert_int_equal(a->state, QM_POLICY_GONE);
  assert_true(st->failed);
  assert_null(st->sess);
  /* cleanup destroys it, and only it */
  fstream *other = dial(m, K2);
  advance(m, m->hs_ns);
  assert_int_equal(qm_pool_count(m->pool, NULL), 2);
  assert_int_equal(qm_pool_cleanup(m->pool), 1);
  assert_true(a->destroyed);
  assert_false(other->sess->destroyed);
  assert_int_equal(qm_pool_count(m->pool, NULL), 1);
  assert_int_equal(qm_pool_keys(m->pool), 1); /* K forgotten */
}

static void test_cleanup_only_inactive(void **state) {
  sim *m = *state;
  m->server_limit = 1;
  fstream *busy = dial(m, K); /* session 0: carries a stream */
  advance(m, m->hs_ns);
  fstream *idle = dial(m, K); /* session 1: will be idle but live */
  advance(m, m->hs_ns);
  fstream *gone = dial(m, K); /* session 2: closed */
  advance(m, m->hs_ns);
  fstream *hs = dial(m, K); /* session 3: handshaking */
  assert_int_equal(m->nsess, 4);
  close_stream(m, idle);
  close_stream(m, gone);
  m->sess[2]->state = QM_POLICY_GONE;
  assert_int_equal(qm_pool_cleanup(m->pool), 1);
  assert_false(m->sess[0]->destroyed);
  assert_false(m->sess[1]->destroyed);
  assert_true(m->sess[2]->destroyed);
  assert_false(m->sess[3]->destroyed);
  assert_int_equal(qm_pool_count(m->pool, K), 3);
  assert_int_equal(qm_pool_cleanup(m->pool), 0);
  (void)busy;
  (void)hs;
}

static void test_caps_per_destination(void **state) {
  sim *m = *state;
  m->max_here = 2;
  m->server_limit = 2;
  for (int i = 0; i < 4; i++)
    assert_false(dial(m, K)->failed);
  advance(m, 2 * m->hs_ns); /* 4 queued on one handshake, 2 overflow */
  assert_int_equal(m->nsess, 2);
  fstream *x = dial(m, K);
  assert_true(x->failed); /* 5th: over the cap, refused alone */
  assert_int_equal(m->refused, 1);
  assert_int_equal(count_opened(m), 4); /* the others are untouched */
  fstream *y = dial(m, K2); /* another destination has its own cap */
  assert_false(y->failed);
  /* a gone session is pruned before the cap check */
  m->sess[0]->state = QM_POLICY_GONE;
  fstream *z = dial(m, K);
  assert_false(z->failed);
  assert_true(m->sess[0]->destroyed);
}

static void test_caps_total(void **state) {
  sim *m = *state;
  m->max_all = 3;
  m->server_limit = 1;
  assert_false(dial(m, K)->failed);
  assert_false(dial(m, K2)->failed);
  advance(m, m->hs_ns);
  assert_false(dial(m, "10.0.0.1|1")->failed);
  advance(m, m->hs_ns);
  assert_true(dial(m, "10.0.0.2|1")->failed);
  assert_true(dial(m, K)->failed); /* K has 1 session, but 3 in all */
  assert_int_equal(m->refused, 2);
}

static void test_caps_default_1000(void **state) {
  sim *m = *state;
  /* the default caps (64 here) allow 1000 streams on 32 sessions, and stop
   * at 64 sessions = 2048 streams */
  for (int i = 0; i < 2048; i++)
    assert_false(dial(m, K)->failed);
  assert_int_equal(m->nsess, 64);
  assert_true(dial(m, K)->failed);
}

static void test_keepalive_and_idle_close(void **state) {
  sim *m = *state;
  fstream *st = dial(m, K);
  advance(m, m->hs_ns);
  fsess *a = m->sess[0];
  /* carrying a stream: keep-alive on, no idle close */
  assert_int_equal(a->keepalive_ms, 10000);
  assert_int_equal(a->idle_deadline, 0);
  advance(m, 35 * SEC);
  assert_int_equal(a->pings, 3); /* at 10, 20, 30 s after the stream came */
  close_stream(m, st);
  uint64_t t_idle = m->now;
  /* no stream: no PING, idle close armed for 25 s */
  assert_int_equal(a->keepalive_ms, 0);
  assert_int_equal(a->next_ping, 0);
  assert_int_equal(a->idle_deadline, t_idle + 25 * SEC);
  advance(m, 24900 * MS);
  assert_int_equal(a->state, QM_POLICY_ESTABLISHED);
  assert_int_equal(a->pings, 3);
  /* a stream in the idle period disarms it, and re-arms from its close */
  fstream *st2 = dial(m, K);
  assert_ptr_equal(st2->sess, a);
  assert_int_equal(a->idle_deadline, 0);
  advance(m, 5 * SEC);
  assert_int_equal(a->state, QM_POLICY_ESTABLISHED);
  close_stream(m, st2);
  advance(m, 24900 * MS);
  assert_int_equal(a->state, QM_POLICY_ESTABLISHED);
  advance(m, 200 * MS);
  assert_int_equal(a->state, QM_POLICY_GONE);
  assert_true(a->idle_closed);
  /* the next dial prunes it (socket freed) and makes a new session */
  fstream *st3 = dial(m, K);
  assert_true(a->destroyed);
  assert_ptr_equal(st3->sess, m->sess[1]);
}

static void test_timers_follow_count(void **state) {
  sim *m = *state;
  fstream *s[3];
  for (int i = 0; i < 3; i++)
    s[i] = dial(m, K);
  advance(m, m->hs_ns);
  fsess *a = m->sess[0];
  close_stream(m, s[0]);
  close_stream(m, s[1]);
  /* one stream left: still keep-alive, no idle timer */
  assert_int_equal(a->keepalive_ms, 10000);
  assert_int_equal(a->idle_deadline, 0);
  advance(m, 60 * SEC);
  assert_int_equal(a->state, QM_POLICY_ESTABLISHED);
  close_stream(m, s[2]);
  assert_int_equal(a->keepalive_ms, 0);
  assert_true(a->idle_deadline > 0);
  /* keep-alive configured off: no PINGs even with streams */
  m->keepalive_ms = 0;
  fstream *t = dial(m, K);
  assert_ptr_equal(t->sess, a);
  assert_int_equal(a->keepalive_ms, 0);
  unsigned p = a->pings;
  advance(m, 30 * SEC);
  assert_int_equal(a->pings, p);
}

/* ---- several servers: back-off and pick, in virtual time ---- */

static void test_backoff_sequence(void **state) {
  static const uint64_t want[] = {1, 2, 4, 8, 16, 30, 30, 30};
  uint32_t i;
  (void)state;
  for (i = 0; i < 8; i++)
    assert_int_equal(qm_policy_backoff(i + 1), want[i] * SEC);
  assert_int_equal(qm_policy_backoff(UINT32_MAX), 30 * SEC);
}

static void test_server_failed_and_ok(void **state) {
  qm_server_health h = {0};
  (void)state;
  assert_false(qm_policy_server_backing_off(&h, 0));
  /* first failure at 5 s: skipped until 6 s */
  assert_true(qm_policy_server_failed(&h, 4 * SEC, 5 * SEC));
  assert_true(qm_policy_server_backing_off(&h, 5 * SEC));
  assert_true(qm_policy_server_backing_off(&h, 6 * SEC - 1));
  assert_false(qm_policy_server_backing_off(&h, 6 * SEC));
  /* sessions started before that failure fail with it: no doubling */
  assert_false(qm_policy_server_failed(&h, 4 * SEC + 1, 5 * SEC + 100 * MS));
  assert_int_equal(h.until, 6 * SEC);
  /* a probe started after the back-off fails: 2 s */
  assert_true(qm_policy_server_failed(&h, 6 * SEC, 7 * SEC));
  assert_int_equal(h.until, 9 * SEC);
  assert_int_equal(h.fails, 2);
  qm_policy_server_ok(&h);
  assert_int_equal(h.fails, 0);
  assert_false(qm_policy_server_backing_off(&h, 7 * SEC));
  /* after a success the next failure starts again at 1 s */
  assert_true(qm_policy_server_failed(&h, 0, 10 * SEC));
  assert_int_equal(h.until, 11 * SEC);
}

static void test_pick_server_table(void **state) {
  qm_server_facts f[3];
  (void)state;
  memset(f, 0, sizeof(f));
  assert_int_equal(qm_policy_pick_server(f, 0, 0), -1);
  /* ties in order */
  assert_int_equal(qm_policy_pick_server(f, 3, 0), 0);
  /* fewest streams first */
  f[0].streams = 3;
  f[1].streams = 1;
  f[2].streams = 1;
  assert_int_equal(qm_policy_pick_server(f, 3, 0), 1);
  /* backing off: skipped even with fewer streams */
  f[1].health.fails = 1;
  f[1].health.until = 10 * SEC;
  assert_int_equal(qm_policy_pick_server(f, 3, 9 * SEC), 2);
  /* back-off over: tried again */
  assert_int_equal(qm_policy_pick_server(f, 3, 10 * SEC), 1);
  /* back-off over: tried at once, even with more streams than the others */
  f[1].streams = 9;
  assert_int_equal(qm_policy_pick_server(f, 3, 10 * SEC), 1);
  f[1].streams = 1;
  /* on trial (its probe handshaking): skipped */
  f[1].handshaking = 1;
  assert_int_equal(qm_policy_pick_server(f, 3, 10 * SEC), 2);
  /* failed once but still has a usable session: no probe priority, it
   * competes by streams (a stream on that session would probe nothing) */
  {
    qm_server_facts g[2];
    memset(g, 0, sizeof(g));
    g[1].health = (qm_server_health){1, 2 * SEC, 1 * SEC};
    g[1].usable = 1;
    g[1].streams = 3;
    assert_int_equal(qm_policy_pick_server(g, 2, 3 * SEC), 0);
    g[1].streams = 0;
    g[0].streams = 1;
    assert_int_equal(qm_policy_pick_server(g, 2, 3 * SEC), 1);
    /* still backing off: skipped whatever its sessions */
    assert_int_equal(qm_policy_pick_server(g, 2, 1 * SEC), 0);
  }
  /* two due for a retry: the first is probed; then (on trial) the next */
  {
    qm_server_facts g[3];
    memset(g, 0, sizeof(g));
    g[1].health = (qm_server_health){2, 5 * SEC, 3 * SEC};
    g[2].health = (qm_server_health){1, 4 * SEC, 3 * SEC};
    assert_int_equal(qm_policy_pick_server(g, 3, 4 * SEC), 2);
    assert_int_equal(qm_policy_pick_server(g, 3, 5 * SEC), 1);
    g[1].handshaking = 1;
    assert_int_equal(qm_policy_pick_server(g, 3, 5 * SEC), 2);
    g[2].handshaking = 1;
    assert_int_equal(qm_policy_pick_server(g, 3, 5 * SEC), 0);
  }
  /* every server backing off: the one whose back-off ends first */
  f[0].health = (qm_server_health){1, 20 * SEC, 19 * SEC};
  f[2].health = (qm_server_health){1, 15 * SEC, 14 * SEC};
  f[1].health.until = 12 * SEC;
  f[1].handshaking = 0;
  assert_int_equal(qm_policy_pick_server(f, 3, 11 * SEC), 1);
  /* one server: always it, whatever its state (v2ray's pool) */
  assert_int_equal(qm_policy_pick_server(&f[0], 1, 11 * SEC), 0);
  f[0].handshaking = 5;
  assert_int_equal(qm_policy_pick_server(&f[0], 1, 25 * SEC), 0);
}

/* Three servers, the third down: dials every 50 ms for 40 s, each
 * connection lasting 300 ms; a handshake to the dead server times out after
 * 1 s and moves its queued streams (as the dialer's requeue does). The dead
 * one comes back at 30 s. */
#define SV_N 3
typedef struct sv_sess {
  int server;
  uint64_t started, fails_at; /* fails_at 0: handshake succeeds */
  size_t queued;
} sv_sess;

static void test_three_servers_one_down(void **state) {
  qm_server_health h[SV_N];
  uint64_t ends[4096];
  int where[4096];
  size_t nconn = 0, failed = 0, moved = 0, on_dead_after = 0, i;
  sv_sess probe = {-1, 0, 0, 0};
  uint64_t now, back = 30 * SEC, reused = 0, probes = 0;
  size_t per[SV_N] = {0};
  (void)state;
  memset(h, 0, sizeof(h));
  for (now = 0; now < 40 * SEC; now += 50 * MS) {
    qm_server_facts f[SV_N];
    int k;
    int dead_alive = now >= back;
    /* the probe session to server 2 ends: fail (down) or succeed (back) */
    if (probe.server >= 0 && now >= probe.fails_at) {
      if (probe.started < back) {
        qm_policy_server_failed(&h[2], probe.started, now);
        /* its queued streams move to another server */
        for (i = 0; i < nconn; i++)
          if (where[i] == -2) {
            memset(f, 0, sizeof(f));
            for (k = 0; k < SV_N; k++) {
              size_t j;
              f[k].health = h[k];
              for (j = 0; j < nconn; j++)
                f[k].streams += where[j] == k && ends[j] > now;
            }
            k = qm_policy_pick_server(f, SV_N, now);
            if (k == 2) {
              failed++; /* would wait on the dead one again */
              where[i] = -1;
              continue;
            }
            where[i] = k;
            ends[i] = now + 300 * MS;
            moved++;
          }
      } else {
        qm_policy_server_ok(&h[2]);
        if (!reused)
          reused = now;
      }
      probe.server = -1;
    }
    memset(f, 0, sizeof(f));
    for (k = 0; k < SV_N; k++) {
      f[k].health = h[k];
      for (i = 0; i < nconn; i++)
        f[k].streams +=
            (where[i] == k && ends[i] > now) || (k == 2 && where[i] == -2);
    }
    f[2].handshaking = probe.server >= 0;
    k = qm_policy_pick_server(f, SV_N, now);
    assert_true(k >= 0 && k < SV_N);
    assert_true(nconn < 4096);
    if (k == 2 && !dead_alive) {
      /* queued on a handshake that will time out */
      where[nconn] = -2;
      ends[nconn] = 0;
      if (probe.server < 0) {
        probe = (sv_sess){2, now, now + 1 * SEC, 0};
        probes++;
      }
      if (now > 2 * SEC)
        on_dead_after++;
    } else {
      if (k == 2 && probe.server < 0 && h[2].fails)
        probe = (sv_sess){2, now, now + 20 * MS, 0}; /* handshake ok */
      where[nconn] = k;
      ends[nconn] = now + 300 * MS;
      per[k]++;
    }
    nconn++;
  }
  /* no connection failed: every one queued on the dead server moved */
  assert_int_equal(failed, 0);
  assert_true(moved > 0);
  for (i = 0; i < nconn; i++)
    assert_true(where[i] >= 0);
  /* the dead one was probed with growing back-offs (1+1, 2+1, 4+1, 8+1,
   * 16+1 s: 5 probes before 30 s), one connection each after the first */
  assert_true(probes >= 4 && probes <= 6);
  assert_true(on_dead_after <= probes);
  /* the live two shared the load */
  assert_true(per[0] > nconn / 4 && per[1] > nconn / 4);
  /* back at 30 s: used again within its back-off (at most 30 s) */
  assert_true(reused >= back);
  assert_true(reused - back <= QM_POLICY_BACKOFF_MAX_NS);
  assert_true(per[2] > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_can_take_table),
      cmocka_unit_test(test_can_retry_table),
      cmocka_unit_test(test_caps_table),
      cmocka_unit_test(test_timers_table),
      cmocka_unit_test(test_health_table),
      cmocka_unit_test_setup_teardown(test_first_usable_session_wins, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_handshaking_takes_32, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_parallel_handshakes_100, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_parallel_handshakes_1000, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_established_with_credit_takes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_credit_returned_reuse_33, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_credit_returned_reuse_100, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_credit_returned_reuse_1000, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_server_limit_below_32, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_suspect_skipped_and_retry, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_heard_since_open_not_moved, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dead_after_8s, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cleanup_only_inactive, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_caps_per_destination, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_caps_total, setup, teardown),
      cmocka_unit_test_setup_teardown(test_caps_default_1000, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keepalive_and_idle_close, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_timers_follow_count, setup,
                                      teardown),
      cmocka_unit_test(test_backoff_sequence),
      cmocka_unit_test(test_server_failed_and_ok),
      cmocka_unit_test(test_pick_server_table),
      cmocka_unit_test(test_three_servers_one_down),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
