/*
 * dialer — Dial(destination) through the session pool (SPEC §1).
 *
 * A new stream goes to the first active session of its destination that can
 * take one; when none can, inactive sessions of that destination are closed
 * with their sockets, and a new session on a new UDP socket is added. Dials
 * that arrive while a session is handshaking wait on it (up to v2ray's 32
 * streams) instead of starting sessions of their own. A cleanup every 60 s
 * drops inactive sessions. Everything runs on the dialer's loop: no locks.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "io.h"
#include "policy.h"
#include "pool.h"
#include "resolve.h"
#include "session.h"
#include "tls.h"

#define QM_CLEANUP_INTERVAL 60.0

struct qm_dialer {
  struct ev_loop *loop;
  qm_io io;
  qm_settings settings;
  char *key_copy, *sni_copy, *ca_copy, *alpn_copy, *qlog_copy;
  qm_tls_ctx *tls;
  qm_pool *pool;
  qm_resolver *resolver;
  qm_stream *failing; /* streams whose on_close runs from the task */
  qm_task fail_task;
  ev_timer cleanup;
  uint64_t dropped_dead; /* datagrams dropped by sessions already freed */
  qm_totals totals;      /* sessions started; counts of sessions freed */
  size_t resolving;      /* streams waiting for a name */
};

typedef struct sess_ref {
  qm_dialer *d;
  qm_session *s;
  char key[INET6_ADDRSTRLEN + 8];
} sess_ref;

/* The pool sees sessions through these; the pool's "session" is a sess_ref. */
static int op_is_active(void *p, void *ud) {
  (void)ud;
  return qm_session_is_active(((sess_ref *)p)->s);
}
static int op_can_take(void *p, void *ud) {
  (void)ud;
  return qm_session_can_take(((sess_ref *)p)->s);
}
static void op_destroy(void *p, void *ud) {
  sess_ref *r = p;
  qm_dialer *d = ud;
  qm_session_close(r->s);
  d->dropped_dead += qm_session_dropped(r->s);
  qm_session_add_totals(r->s, &d->totals, 1);
  qm_session_free(r->s);
  free(r);
}
static const qm_pool_ops pool_ops = {op_is_active, op_can_take, op_destroy};

static void sess_on_dead(qm_session *s, void *ud);
static void sess_on_requeue(qm_session *s, qm_stream *st, int failed, void *ud);

static void addr_key(const struct sockaddr_storage *ss, char *key,
                     size_t keylen) {
  char ip[INET6_ADDRSTRLEN];
  uint16_t port;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    port = ntohs(a->sin_port);
  } else {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
    port = ntohs(a->sin6_port);
  }
  /* One dialer has one set of settings, so address + port is the whole
   * pool key; two dialers never share sessions. */
  snprintf(key, keylen, "%s|%u", ip, port);
}

/* Put st on the first session of its current address that can take it, or
 * on a new session. */
static int place_stream(qm_dialer *d, qm_stream *st) {
  const struct sockaddr_storage *addr = &st->addrs->addr[st->addr_idx];
  socklen_t addrlen = st->addrs->len[st->addr_idx];
  char key[INET6_ADDRSTRLEN + 8], err[256];
  sess_ref *r;
  int rv;

  addr_key(addr, key, sizeof(key));
  r = qm_pool_pick(d->pool, key);
  if (!r) {
    qm_session_owner owner = {0};
    qm_pool_prune(d->pool, key);
    /* Caps: a clear error for this one connection, nothing else touched. */
    if (!qm_policy_may_open_session(
            qm_pool_count(d->pool, key), qm_pool_count(d->pool, NULL),
            d->settings.max_sessions_per_dest, d->settings.max_sessions)) {
      QM_WARN("dialer",
              "session limit reached for %s (%zu here, %zu in all; "
              "limits %u and %u): connection refused",
              key, qm_pool_count(d->pool, key), qm_pool_count(d->pool, NULL),
              d->settings.max_sessions_per_dest, d->settings.max_sessions);
      return QM_ELIMIT;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
      return QM_ENOMEM;
    r->d = d;
    snprintf(r->key, sizeof(r->key), "%s", key);
    owner.on_dead = sess_on_dead;
    owner.on_requeue = sess_on_requeue;
    owner.ud = r;
    rv = qm_session_client_new(&r->s, &d->io, d->tls, &d->settings,
                               (const struct sockaddr *)addr, addrlen, &owner,
                               err, sizeof(err));
    if (rv != 0) {
      QM_WARN("dialer", "new session to %s: %s", key, err);
      free(r);
      return rv;
    }
    d->totals.sessions_opened++;
    if ((rv = qm_pool_add(d->pool, key, r)) != 0) {
      qm_session_free(r->s);
      free(r);
      return rv;
    }
    QM_DEBUG("dialer", "session %llu to %s (%zu in pool)",
             (unsigned long long)qm_session_id(r->s), key,
             qm_pool_count(d->pool, key));
  }
  qm_session_attach(r->s, st);
  return 0;
}

/* on_close for a stream that never reached a session runs from the task,
 * never inside qm_dial. */
static void fail_stream(qm_dialer *d, qm_stream *st, int err) {
  st->close_err = err;
  st->dnext = d->failing;
  d->failing = st;
  qm_io_defer(&d->io, &d->fail_task);
}

static void fail_task_run(qm_task *t) {
  qm_dialer *d = (qm_dialer *)((char *)t - offsetof(qm_dialer, fail_task));
  qm_stream *st;
  while ((st = d->failing)) {
    d->failing = st->dnext;
    st->closed = 1;
    if (st->cbs.on_close)
      st->cbs.on_close(st, st->close_err, st->ud);
    qm_stream_destroy(st);
  }
}

/* A session died: take it out of the pool at once and free it with its
 * socket (v2ray waits for the next dial or the 60 s cleanup). */
static void sess_on_dead(qm_session *s, void *ud) {
  sess_ref *r = ud;
  qm_dialer *d = r->d;
  (void)s;
  if (qm_pool_remove(d->pool, r) == 0) {
    d->dropped_dead += qm_session_dropped(r->s);
    qm_session_add_totals(r->s, &d->totals, 1);
    qm_session_free(r->s);
    free(r);
  }
}

static void sess_on_requeue(qm_session *s, qm_stream *st, int failed,
                            void *ud) {
  sess_ref *r = ud;
  int rv;
  (void)s;
  if (failed) {
    /* The handshake to this address failed: try the next one, in order. */
    if (st->addr_idx + 1 >= st->addrs->n) {
      QM_WARN("dialer", "no address of the server answered (%zu tried)",
              st->addrs->n);
      fail_stream(r->d, st, qm_session_close_error(s));
      return;
    }
    st->addr_idx++;
  }
  if ((rv = place_stream(r->d, st)) != 0)
    fail_stream(r->d, st, rv);
}

static void cleanup_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_dialer *d = w->data;
  size_t n;
  (void)loop;
  (void)revents;
  n = qm_pool_cleanup(d->pool);
  if (n)
    QM_DEBUG("dialer", "cleanup closed %zu inactive sessions", n);
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

int qm_dialer_new(qm_dialer **out, struct ev_loop *loop, const qm_settings *s) {
  qm_dialer *d = calloc(1, sizeof(*d));
  char err[256];
  int rv;

  if (!d)
    return QM_ENOMEM;
  d->loop = loop;
  d->settings = *s;
  d->settings.key = d->key_copy = dup_or_null(s->key);
  d->settings.server_name = d->sni_copy = dup_or_null(s->server_name);
  d->settings.ca_file = d->ca_copy = dup_or_null(s->ca_file);
  d->settings.alpn = d->alpn_copy = dup_or_null(s->alpn);
  d->settings.qlog_dir = d->qlog_copy = dup_or_null(s->qlog_dir);
  if (s->cc && qm_cc_parse(s->cc) != 0) {
    QM_ERROR("dialer", "cc '%s': want bbr, cubic or reno", s->cc);
    rv = QM_EINVAL;
    goto fail;
  }
  d->settings.cc = qm__cc_static(s->cc);
  d->settings.cert_file = d->settings.key_file = NULL;
  if (!d->settings.max_sessions)
    d->settings.max_sessions = 1024;
  if (!d->settings.max_sessions_per_dest)
    d->settings.max_sessions_per_dest = 64;
  if (!d->settings.max_streams)
    d->settings.max_streams = 65536;
  if ((rv = qm_io_init(&d->io, loop)) != 0)
    goto fail;
  if ((rv = qm_tls_ctx_new(&d->tls, 0, &d->settings, err, sizeof(err))) != 0) {
    QM_ERROR("dialer", "%s", err);
    goto fail;
  }
  if ((rv = qm_pool_new(&d->pool, &pool_ops, d)) != 0)
    goto fail;
  if ((rv = qm_resolver_new(&d->resolver, loop)) != 0)
    goto fail;
  d->fail_task.run = fail_task_run;
  ev_timer_init(&d->cleanup, cleanup_cb, QM_CLEANUP_INTERVAL,
                QM_CLEANUP_INTERVAL);
  d->cleanup.data = d;
  ev_timer_start(loop, &d->cleanup);
  ev_unref(loop); /* the cleanup timer alone does not keep the loop alive */
  *out = d;
  return 0;
fail:
  qm_dialer_free(d);
  return rv;
}

void qm_dialer_free(qm_dialer *d) {
  if (!d)
    return;
  if (ev_is_active(&d->cleanup)) {
    ev_ref(d->loop);
    ev_timer_stop(d->loop, &d->cleanup);
  }
  if (d->resolver)
    qm_resolver_free(d->resolver); /* pending dials fail (QM_ERESOLVE) */
  if (d->pool)
    qm_pool_free(d->pool);
  fail_task_run(&d->fail_task);
  qm_tls_ctx_free(d->tls);
  if (d->io.loop)
    qm_io_clear(&d->io);
  if (d->key_copy)
    qm_wipe(d->key_copy, strlen(d->key_copy));
  free(d->key_copy);
  free(d->sni_copy);
  free(d->ca_copy);
  free(d->alpn_copy);
  free(d->qlog_copy);
  free(d);
}

static void resolved(qm_addrlist *list, int err, void *ud) {
  qm_stream *st = ud;
  qm_dialer *d = st->dialer;
  int rv;
  st->dialer = NULL;
  d->resolving--;
  if (err || st->close_err) {
    fail_stream(d, st, err ? err : st->close_err);
    return;
  }
  qm_addrlist_ref(list);
  st->addrs = list;
  if ((rv = place_stream(d, st)) != 0)
    fail_stream(d, st, rv);
}

int qm_dial(qm_dialer *d, const char *host, uint16_t port,
            const qm_stream_cbs *cbs, void *ud, qm_stream **out) {
  qm_addrlist *now = NULL;
  qm_dialer_stats ds;
  qm_stream *st;
  int rv;

  qm_dialer_get_stats(d, &ds);
  if (ds.streams + d->resolving >= d->settings.max_streams) {
    QM_WARN("dialer", "stream limit %u reached: connection refused",
            d->settings.max_streams);
    return QM_ELIMIT;
  }
  st = qm_stream_new(d->settings.stream_buffer);
  if (!st)
    return QM_ENOMEM;
  qm_stream_set_callbacks(st, cbs, ud);
  /* An IP is used as is; a name is resolved without blocking the loop. */
  st->dialer = d;
  d->resolving++;
  rv = qm_resolve(d->resolver, host, port, &now, resolved, st);
  if (rv != 0) {
    d->resolving--;
    qm_stream_destroy(st);
    return rv;
  }
  *out = st;
  if (now) {
    d->resolving--;
    st->dialer = NULL;
    st->addrs = now;
    if ((rv = place_stream(d, st)) != 0) {
      *out = NULL;
      qm_stream_destroy(st);
      return rv;
    }
  }
  return 0;
}

static void count_one(void *p, void *arg) {
  sess_ref *r = p;
  qm_dialer_stats *st = arg;
  qm_session_state state = qm_session_state_of(r->s);
  st->sessions++;
  st->udp_sockets++;
  if (qm_session_is_active(r->s))
    st->sessions_active++;
  if (state == QM_SESS_HANDSHAKING)
    st->handshaking++;
  st->streams += qm_session_stream_count(r->s);
  st->dropped_datagrams += qm_session_dropped(r->s);
  qm_session_add_totals(r->s, &st->totals, 0);
}

void qm_dialer_get_stats(const qm_dialer *d, qm_dialer_stats *st) {
  memset(st, 0, sizeof(*st));
  st->dropped_datagrams = d->dropped_dead;
  st->totals = d->totals;
  qm_pool_foreach(d->pool, count_one, st);
}

typedef struct foreach_arg {
  void (*fn)(const qm_session_info *, void *);
  void *ud;
} foreach_arg;

static void info_one(void *p, void *arg) {
  foreach_arg *a = arg;
  qm_session_info in;
  qm_session_get_info(((sess_ref *)p)->s, &in);
  a->fn(&in, a->ud);
}

void qm_dialer_foreach_session(const qm_dialer *d,
                               void (*fn)(const qm_session_info *, void *),
                               void *ud) {
  foreach_arg a = {fn, ud};
  qm_pool_foreach(d->pool, info_one, &a);
}
