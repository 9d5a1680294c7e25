/*
 * dialer — Dial(destination) through the session pool (SPEC §1).
 *
 * A new stream goes to the first active session of its destination that can
 * take one; when none can, inactive sessions of that destination are closed
 * with their sockets, and a new session on a new UDP socket is added. Dials
 * that arrive while a session is handshaking wait on it (up to v2ray's 32
 * streams) instead of starting sessions of their own. A cleanup every 60 s
 * drops inactive sessions. Everything runs on the dialer's loop: no locks.
 *
 * Several servers: every address of the name dialled, or of every entry of
 * the dialer's server set (qm_dialer_set_servers), is one server. Each
 * stream goes to the server qm_policy_pick_server chooses (fewest streams;
 * servers whose handshakes failed are skipped for a growing back-off), then
 * to that server's sessions as above. Streams queued on a handshake that
 * failed move to another server. With one address nothing of this shows.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow.h"
#include "internal.h"
#include "io.h"
#include "policy.h"
#include "pool.h"
#include "resolve.h"
#include "servers.h"
#include "session.h"
#include "ticket.h"
#include "tls.h"

#define QM_CLEANUP_INTERVAL 60.0

struct qm_dialer {
  struct ev_loop *loop;
  qm_io io;
  qm_settings settings;
  char *key_copy, *sni_copy, *ca_copy, *alpn_copy, *qlog_copy, *ticket_copy;
  qm_ticket_store *tickets; /* zero_rtt: each server's last ticket */
  qm_early_totals early;    /* of sessions already freed */
  qm_tls_ctx *tls;
  qm_pool *pool;
  qm_resolver *resolver;
  qm_stream *failing; /* streams whose on_close runs from the task */
  qm_task fail_task;
  ev_timer cleanup;
  uint64_t dropped_dead;     /* datagrams dropped by sessions already freed */
  qm_totals totals;          /* sessions started; counts of sessions freed */
  uint64_t migrations, hops; /* of sessions freed */
  size_t resolving;          /* streams waiting for a name */
  long caps_sessions;        /* of the shared caps' sessions, this dialer's */
  qm_servers servers;        /* health per server address */
  /* the server set of qm_dialer_set_servers */
  struct set_entry *set;
  size_t nset;
  unsigned set_gen;    /* lookups of an older set are ignored */
  qm_addrlist *merged; /* every address of the set, in order */
  qm_stream *waiting;  /* streams waiting for the set's first addresses */
  int freeing;
  qm_flow_ctx flows; /* UDP flows (qm_dialer_enable_flows) */
};

typedef struct set_entry {
  char host[256];
  uint16_t port;
  qm_addrlist *list; /* the last good answer, or NULL */
  int resolving;
  int numeric; /* an IP literal: list never changes */
} set_entry;

typedef struct set_lookup {
  qm_dialer *d;
  unsigned gen;
  size_t idx;
} set_lookup;

typedef struct sess_ref {
  qm_dialer *d;
  qm_session *s;
  char key[INET6_ADDRSTRLEN + 16];
  struct sockaddr_storage addr; /* the server */
  uint64_t started;             /* ns, for the back-off */
  int failure_noted;
  char ticket_key[INET6_ADDRSTRLEN + 8 + 256]; /* "server name/key" */
} sess_ref;

/* The counts of a session about to be freed. */
static void gone(qm_dialer *d, qm_session *s) {
  qm_session_path_counts(s, &d->migrations, &d->hops);
  d->dropped_dead += qm_session_dropped(s);
  qm_session_add_totals(s, &d->totals, 1);
  qm_session_add_early(s, &d->early);
}

static uint64_t now_ns(const qm_dialer *d) {
  return (uint64_t)(ev_now(d->loop) * 1e9);
}

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
  if (d->settings.caps) {
    qm__caps_add(&d->settings.caps->sessions, -1);
    d->caps_sessions--;
  }
  qm_session_close(r->s);
  gone(d, r->s);
  qm_session_free(r->s);
  free(r);
}
static const qm_pool_ops pool_ops = {op_is_active, op_can_take, op_destroy};

static void sess_on_dead(qm_session *s, void *ud);
static void sess_on_requeue(qm_session *s, qm_stream *st, int failed, void *ud);
static void sess_on_ready(qm_session *s, void *ud);

/* The pool key of a server: address and port, or address and port range
 * (port_hi above the address's port). */
static void range_key(const struct sockaddr_storage *ss, uint16_t port_hi,
                      char *key, size_t keylen) {
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
  if (port_hi > port)
    snprintf(key, keylen, "%s|%u-%u", ip, port, port_hi);
  else
    snprintf(key, keylen, "%s|%u", ip, port);
}

static void addr_key(const struct sockaddr_storage *ss, char *key,
                     size_t keylen) {
  range_key(ss, 0, key, keylen);
}

static void count_server(void *p, void *arg) {
  sess_ref *r = p;
  qm_server_facts *f = arg;
  f->streams += qm_session_stream_count(r->s);
  if (qm_session_state_of(r->s) == QM_SESS_HANDSHAKING)
    f->handshaking++;
  else if (qm_session_can_take(r->s))
    f->usable++;
}

/* Which of addrs (servers) a stream or flow goes to: one address is
 * always it; otherwise the policy's choice from each server's health and
 * load. */
/* port_hi: a port range above the addresses' port (their pool keys), or 0 */
static unsigned pick_server_of(qm_dialer *d, const qm_addrlist *addrs,
                               uint16_t port_hi) {
  qm_server_facts f[QM_MAX_ADDRS];
  size_t i, n = addrs->n;
  int k;
  if (n <= 1)
    return 0;
  memset(f, 0, n * sizeof(f[0]));
  for (i = 0; i < n; i++) {
    char key[INET6_ADDRSTRLEN + 16];
    qm_server_row *row;
    range_key(&addrs->addr[i], port_hi, key, sizeof(key));
    if ((row = qm_servers_find(&d->servers, key)))
      f[i].health = row->health;
    qm_pool_foreach_key(d->pool, key, count_server, &f[i]);
  }
  k = qm_policy_pick_server(f, n, now_ns(d));
  return k < 0 ? 0 : (unsigned)k;
}

static unsigned pick_server(qm_dialer *d, const qm_stream *st) {
  return pick_server_of(d, st->addrs, st->port_hi);
}

/* A new session to addr in the pool under key, within the caps. */
/* A new session to addr, or to a random port of addr's port .. port_hi (a
 * server port range, between whose ports it then hops). */
static int new_session(qm_dialer *d, const struct sockaddr_storage *addr,
                       socklen_t addrlen, uint16_t port_hi, const char *key,
                       sess_ref **out) {
  struct sockaddr_storage peer;
  uint16_t port_lo;
  qm_session_owner owner = {0};
  qm_server_row *row;
  char err[256];
  sess_ref *r;
  int rv;

  qm_pool_prune(d->pool, key);
  /* Caps: a clear error for this one connection, nothing else touched. */
  if (!qm_policy_may_open_session(
          qm_pool_count(d->pool, key),
          d->settings.caps ? (size_t)qm__caps_get(&d->settings.caps->sessions)
                           : qm_pool_count(d->pool, NULL),
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
  r->started = now_ns(d);
  memcpy(&r->addr, addr, sizeof(r->addr));
  snprintf(r->key, sizeof(r->key), "%s", key);
  owner.on_dead = sess_on_dead;
  owner.on_requeue = sess_on_requeue;
  owner.on_ready = sess_on_ready;
  owner.flows = &d->flows;
  if (d->tickets) {
    /* A ticket belongs to the server's address and TLS name. */
    snprintf(r->ticket_key, sizeof(r->ticket_key), "%s/%s",
             qm_tls_ctx_server_name(d->tls), key);
    owner.tickets = d->tickets;
    owner.ticket_key = r->ticket_key;
  }
  owner.ud = r;
  memcpy(&peer, addr, addrlen);
  port_lo = ntohs(peer.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&peer)->sin6_port
                      : ((struct sockaddr_in *)&peer)->sin_port);
  if (port_hi > port_lo) {
    uint32_t rnd;
    uint16_t p;
    qm_random((uint8_t *)&rnd, sizeof(rnd));
    p = (uint16_t)(port_lo + rnd % ((uint32_t)port_hi - port_lo + 1));
    if (peer.ss_family == AF_INET6)
      ((struct sockaddr_in6 *)&peer)->sin6_port = htons(p);
    else
      ((struct sockaddr_in *)&peer)->sin_port = htons(p);
  }
  rv = qm_session_client_new(
      &r->s, &d->io, d->tls, &d->settings, (const struct sockaddr *)&peer,
      addrlen, port_lo, QM_MAX(port_hi, port_lo), &owner, err, sizeof(err));
  if (rv != 0) {
    QM_WARN("dialer", "new session to %s: %s", key, err);
    free(r);
    return rv;
  }
  d->totals.sessions_opened++;
  if ((row = qm_servers_get(&d->servers, key, (const struct sockaddr *)addr)))
    row->sessions_opened++;
  if ((rv = qm_pool_add(d->pool, key, r)) != 0) {
    qm_session_free(r->s);
    free(r);
    return rv;
  }
  if (d->settings.caps) { /* shared with the dialers of other loops */
    qm__caps_add(&d->settings.caps->sessions, 1);
    d->caps_sessions++;
  }
  QM_DEBUG("dialer", "session %llu to %s (%zu in pool)",
           (unsigned long long)qm_session_id(r->s), key,
           qm_pool_count(d->pool, key));
  *out = r;
  return 0;
}

/* Put st on the server the policy picks: on its first session that can
 * take it, or on a new session. */
static int place_stream(qm_dialer *d, qm_stream *st) {
  const struct sockaddr_storage *addr;
  char key[INET6_ADDRSTRLEN + 16];
  sess_ref *r;
  int rv;

  st->addr_idx = pick_server(d, st);
  addr = &st->addrs->addr[st->addr_idx];
  range_key(addr, st->port_hi, key, sizeof(key));
  r = qm_pool_pick(d->pool, key);
  if (!r && (rv = new_session(d, addr, st->addrs->len[st->addr_idx],
                              st->port_hi, key, &r)) != 0)
    return rv;
  qm_session_attach(r->s, st);
  return 0;
}

/* ---- UDP flows ---- */

typedef struct flow_pick {
  uint32_t cap;
  sess_ref *ready, *handshaking, *refusing;
} flow_pick;

static void flow_pick_one(void *p, void *arg) {
  sess_ref *r = p;
  flow_pick *fp = arg;
  int dg;
  if (!qm_session_is_active(r->s))
    return;
  dg = qm_session_dgram_state(r->s);
  if (dg < 0) {
    if (!fp->refusing)
      fp->refusing = r;
    return;
  }
  if (qm_session_flow_count(r->s) >= fp->cap)
    return;
  if (dg > 0 && qm_session_state_of(r->s) == QM_SESS_ESTABLISHED) {
    if (!fp->ready)
      fp->ready = r;
  } else if (qm_session_state_of(r->s) == QM_SESS_HANDSHAKING &&
             !fp->handshaking) {
    fp->handshaking = r;
  }
}

/* Put a flow on its server (the policy's pick when there are several):
 * on the first session that negotiated datagrams, or one still
 * handshaking; when the server's sessions refuse them (a v2ray server),
 * the flow is refused; otherwise a new session starts. */
static int flow_bind(qm_flow_ctx *c, qm_flow *f) {
  qm_dialer *d = c->bind_ud;
  char key[INET6_ADDRSTRLEN + 8];
  flow_pick fp = {c->fs.max_per_session, NULL, NULL, NULL};
  unsigned idx;
  sess_ref *r;
  int rv;

  if (f->use_set && d->merged && d->merged->n && f->addrs != d->merged) {
    if (f->addrs)
      qm_addrlist_unref(f->addrs);
    qm_addrlist_ref(d->merged);
    f->addrs = d->merged; /* the set's addresses now */
  }
  if (f->resolving || !f->addrs || !f->addrs->n)
    return QM_EAGAIN;
  idx = pick_server_of(d, f->addrs, 0);
  addr_key(&f->addrs->addr[idx], key, sizeof(key));
  qm_pool_foreach_key(d->pool, key, flow_pick_one, &fp);
  r = fp.ready ? fp.ready : fp.handshaking;
  if (!r && fp.refusing) {
    qm_session_dgram_refused(fp.refusing->s);
    return QM_EREFUSED;
  }
  if (!r && (rv = new_session(d, &f->addrs->addr[idx], f->addrs->len[idx], 0,
                              key, &r)) != 0)
    return rv;
  qm_session_flow_attach(r->s, f);
  QM_DEBUG("dialer", "flow %llu on session %llu", (unsigned long long)f->id,
           (unsigned long long)qm_session_id(r->s));
  return 0;
}

static void flow_resolved(qm_addrlist *list, int err, void *ud) {
  qm_flow *f = ud;
  f->resolving = 0;
  if (f->free_later) { /* closed while the name was looked up */
    f->free_later = 0;
    qm_flow_close(f);
    return;
  }
  if (err) {
    qm_flow_fail(f, err);
    return;
  }
  qm_addrlist_ref(list);
  f->addrs = list;
}

int qm_dialer_enable_flows(qm_dialer *d, const qm_flow_settings *fs) {
  if (!d)
    return QM_EINVAL;
  qm_flow_ctx_init(&d->flows, &d->io, fs);
  d->flows.bind = flow_bind;
  d->flows.bind_ud = d;
  return 0;
}

int qm_dial_flow(qm_dialer *d, const char *host, uint16_t port,
                 const qm_flow_cbs *cbs, void *ud, qm_flow **out) {
  qm_addrlist *now = NULL;
  qm_flow *f;
  int rv;

  if (!d || !d->flows.enabled || (!host && !d->nset))
    return QM_EINVAL;
  if (d->flows.nflows >= d->flows.fs.max_flows) {
    d->flows.totals.dropped_refused++;
    return QM_ELIMIT;
  }
  if (!(f = qm_flow_new(&d->flows, 0, 0)))
    return QM_ENOMEM;
  qm_flow_set_callbacks(f, cbs, ud);
  if (!host) { /* the server set: its addresses when the flow binds */
    f->use_set = 1;
    *out = f;
    return 0;
  }
  f->resolving = 1;
  rv = qm_resolve(d->resolver, host, port, &now, flow_resolved, f);
  if (rv != 0) {
    f->resolving = 0;
    qm_flow_close(f);
    return rv;
  }
  if (now) {
    f->resolving = 0;
    f->addrs = now;
  }
  *out = f;
  return 0;
}

void qm_dialer_flow_stats(const qm_dialer *d, qm_flow_stats *st) {
  qm__flow_ctx_stats(&d->flows, st);
}

/* A handshake of r's session failed: its server backs off (once per
 * session; sessions of the same outage do not double the back-off). */
static void note_failure(qm_dialer *d, sess_ref *r, int err) {
  qm_server_row *row;
  if (r->failure_noted || err == QM_ECLOSED)
    return;
  r->failure_noted = 1;
  row = qm_servers_get(&d->servers, r->key, (const struct sockaddr *)&r->addr);
  if (!row)
    return;
  row->handshakes_failed++;
  if (qm_policy_server_failed(&row->health, r->started, now_ns(d)))
    QM_WARN("dialer",
            "server %s: handshake failed (%s), %u in a row: skipped for "
            "%.0f s",
            row->name, qm_strerror(err), row->health.fails,
            (double)qm_policy_backoff(row->health.fails) / 1e9);
}

static void sess_on_ready(qm_session *s, void *ud) {
  sess_ref *r = ud;
  qm_server_row *row =
      qm_servers_get(&r->d->servers, r->key, (const struct sockaddr *)&r->addr);
  (void)s;
  if (!row)
    return;
  row->handshakes_ok++;
  if (row->health.fails)
    QM_WARN("dialer", "server %s answers again after %u failed handshakes",
            row->name, row->health.fails);
  qm_policy_server_ok(&row->health);
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
  if (qm_session_died_handshaking(s))
    note_failure(d, r, qm_session_close_error(s));
  if (qm_pool_remove(d->pool, r) == 0) {
    if (d->settings.caps) {
      qm__caps_add(&d->settings.caps->sessions, -1);
      d->caps_sessions--;
    }
    gone(d, r->s);
    qm_session_free(r->s);
    free(r);
  }
}

static void sess_on_requeue(qm_session *s, qm_stream *st, int failed,
                            void *ud) {
  sess_ref *r = ud;
  int rv;
  if (failed) {
    /* The handshake to this server failed: it backs off, and the stream
     * moves to another server, at most once per server it may go to. */
    note_failure(r->d, r, qm_session_close_error(s));
    if (++st->addr_tries >= st->addrs->n) {
      QM_WARN("dialer", "no server answered (%u tried)", st->addr_tries);
      fail_stream(r->d, st, qm_session_close_error(s));
      return;
    }
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

/* ---- the server set ---- */

static void set_clear(qm_dialer *d) {
  size_t i;
  for (i = 0; i < d->nset; i++)
    qm_addrlist_unref(d->set[i].list);
  free(d->set);
  d->set = NULL;
  d->nset = 0;
  qm_addrlist_unref(d->merged);
  d->merged = NULL;
  d->set_gen++;
}

/* Every address of the set, in the set's order, each once. */
static void set_merge(qm_dialer *d) {
  qm_addrlist *m = calloc(1, sizeof(*m));
  size_t i, j, k;
  if (!m)
    return; /* keep the old one */
  m->refs = 1;
  for (i = 0; i < d->nset; i++) {
    const qm_addrlist *l = d->set[i].list;
    for (j = 0; l && j < l->n && m->n < QM_MAX_ADDRS; j++) {
      for (k = 0; k < m->n; k++)
        if (m->len[k] == l->len[j] &&
            !memcmp(&m->addr[k], &l->addr[j], l->len[j]))
          break;
      if (k < m->n)
        continue;
      m->addr[m->n] = l->addr[j];
      m->len[m->n++] = l->len[j];
    }
  }
  qm_addrlist_unref(d->merged);
  d->merged = m;
  /* a row per server, so that SIGUSR1 lists servers not dialled yet */
  for (k = 0; k < m->n; k++) {
    char key[INET6_ADDRSTRLEN + 8];
    addr_key(&m->addr[k], key, sizeof(key));
    qm_servers_get(&d->servers, key, (const struct sockaddr *)&m->addr[k]);
  }
}

static void set_entry_answer(qm_dialer *d, set_entry *e, qm_addrlist *l) {
  if (l == e->list) {
    qm_addrlist_unref(l);
    return;
  }
  qm_addrlist_unref(e->list);
  e->list = l; /* takes the caller's reference */
  set_merge(d);
}

/* Streams waiting for the set's addresses: place them once there are
 * some; fail them when no lookup is left that could bring any. */
static void flush_waiting(qm_dialer *d) {
  size_t i;
  int pending = 0, have;
  qm_stream *st;
  for (i = 0; i < d->nset; i++)
    pending |= d->set[i].resolving;
  have = d->merged && d->merged->n > 0 && !d->freeing;
  if (!have && pending && !d->freeing)
    return;
  while ((st = d->waiting)) {
    int rv;
    d->waiting = st->dnext;
    st->dnext = NULL;
    st->dialer = NULL;
    d->resolving--;
    if (!have || st->close_err) {
      fail_stream(d, st, st->close_err ? st->close_err : QM_ERESOLVE);
      continue;
    }
    qm_addrlist_ref(d->merged);
    st->addrs = d->merged;
    if ((rv = place_stream(d, st)) != 0)
      fail_stream(d, st, rv);
  }
}

static void set_resolved(qm_addrlist *list, int err, void *ud) {
  set_lookup *lk = ud;
  qm_dialer *d = lk->d;
  (void)err;
  if (lk->gen == d->set_gen && lk->idx < d->nset) {
    set_entry *e = &d->set[lk->idx];
    e->resolving = 0;
    if (list) {
      qm_addrlist_ref(list);
      set_entry_answer(d, e, list); /* a failed lookup keeps the old list */
    }
    flush_waiting(d);
  }
  free(lk);
}

static int is_ip(const char *host) {
  struct in6_addr a;
  return inet_pton(AF_INET, host, &a) == 1 ||
         inet_pton(AF_INET6, host, &a) == 1;
}

/* Bring the set's addresses up to date: IP literals once, names from the
 * resolver's cache or by a lookup (the old addresses serve meanwhile). */
static void set_refresh(qm_dialer *d) {
  size_t i;
  for (i = 0; i < d->nset; i++) {
    set_entry *e = &d->set[i];
    qm_addrlist *now = NULL;
    set_lookup *lk;
    if (e->resolving || (e->numeric && e->list))
      continue;
    if (!(lk = calloc(1, sizeof(*lk))))
      continue;
    lk->d = d;
    lk->gen = d->set_gen;
    lk->idx = i;
    if (qm_resolve(d->resolver, e->host, e->port, &now, set_resolved, lk) !=
        0) {
      free(lk);
      continue;
    }
    if (now) {
      free(lk);
      e->numeric = is_ip(e->host);
      set_entry_answer(d, e, now);
    } else {
      e->resolving = 1;
    }
  }
}

int qm_dialer_set_servers(qm_dialer *d, const char *const *servers, size_t n) {
  set_entry *v;
  size_t i;
  if (!d || (n && !servers) || n > QM_MAX_ADDRS)
    return QM_EINVAL;
  v = n ? calloc(n, sizeof(*v)) : NULL;
  if (n && !v)
    return QM_ENOMEM;
  for (i = 0; i < n; i++) {
    char err[128];
    if (!servers[i] ||
        qm_split_hostport(servers[i], v[i].host, sizeof(v[i].host), &v[i].port,
                          err, sizeof(err)) != 0 ||
        v[i].port == 0) {
      QM_ERROR("dialer", "server %zu '%s': want HOST:PORT", i + 1,
               servers[i] ? servers[i] : "(null)");
      free(v);
      return QM_EINVAL;
    }
  }
  set_clear(d);
  d->set = v;
  d->nset = n;
  set_refresh(d);
  flush_waiting(d);
  return 0;
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
  d->settings.zero_rtt_file = d->ticket_copy = dup_or_null(s->zero_rtt_file);
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
  if (s->zero_rtt &&
      (rv = qm_ticket_store_new(&d->tickets, s->zero_rtt_file)) != 0)
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

int qm_caps_new(qm_caps **out) {
  *out = calloc(1, sizeof(**out));
  return *out ? 0 : QM_ENOMEM;
}

void qm_caps_free(qm_caps *c) {
  free(c);
}

void qm_dialer_free(qm_dialer *d) {
  if (!d)
    return;
  if (ev_is_active(&d->cleanup)) {
    ev_ref(d->loop);
    ev_timer_stop(d->loop, &d->cleanup);
  }
  d->freeing = 1;
  if (d->resolver)
    qm_resolver_free(d->resolver); /* pending dials fail (QM_ERESOLVE) */
  flush_waiting(d);
  if (d->pool)
    qm_pool_free(d->pool);
  qm_flow_ctx_clear(&d->flows);
  /* every session went through op_destroy: none left counted */
  fail_task_run(&d->fail_task);
  set_clear(d);
  qm_servers_clear(&d->servers);
  qm_tls_ctx_free(d->tls);
  qm_ticket_store_free(d->tickets);
  if (d->io.loop)
    qm_io_clear(&d->io);
  if (d->key_copy)
    qm_wipe(d->key_copy, strlen(d->key_copy));
  free(d->key_copy);
  free(d->sni_copy);
  free(d->ca_copy);
  free(d->alpn_copy);
  free(d->qlog_copy);
  free(d->ticket_copy);
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

/* qm_dial with host NULL: one of the set's servers. */
static int dial_set(qm_dialer *d, qm_stream *st, qm_stream **out) {
  int rv;
  set_refresh(d);
  *out = st;
  if (d->merged && d->merged->n) {
    qm_addrlist_ref(d->merged);
    st->addrs = d->merged;
    if ((rv = place_stream(d, st)) != 0) {
      *out = NULL;
      qm_stream_destroy(st);
      return rv;
    }
    return 0;
  }
  /* no address yet: wait for the first answer */
  st->dialer = d;
  st->dnext = d->waiting;
  d->waiting = st;
  d->resolving++;
  flush_waiting(d); /* every lookup failed at once: fail it (deferred) */
  return 0;
}

int qm_dial(qm_dialer *d, const char *host, uint16_t port,
            const qm_stream_cbs *cbs, void *ud, qm_stream **out) {
  return qm_dial_range(d, host, port, port, cbs, ud, out);
}

int qm_dial_range(qm_dialer *d, const char *host, uint16_t port,
                  uint16_t port_hi, const qm_stream_cbs *cbs, void *ud,
                  qm_stream **out) {
  qm_addrlist *now = NULL;
  qm_dialer_stats ds;
  qm_stream *st;
  int rv;

  if (!host && !d->nset)
    return QM_EINVAL;
  if (port_hi < port) {
    QM_WARN("dialer", "port range %u-%u: the first port is the larger", port,
            port_hi);
    return QM_EINVAL;
  }
  qm_dialer_get_stats(d, &ds);
  if ((d->settings.caps
           ? (size_t)qm__caps_get(&d->settings.caps->streams)
           : ds.streams + d->resolving) >= d->settings.max_streams) {
    QM_WARN("dialer", "stream limit %u reached: connection refused",
            d->settings.max_streams);
    return QM_ELIMIT;
  }
  st = qm_stream_new(d->settings.stream_buffer);
  if (!st)
    return QM_ENOMEM;
  qm_stream_set_callbacks(st, cbs, ud);
  if (d->settings.caps) { /* counted until qm_stream_destroy */
    st->caps = d->settings.caps;
    qm__caps_add(&st->caps->streams, 1);
  }
  st->port_hi = host && port_hi > port ? port_hi : 0; /* 0: one port */
  if (!host)
    return dial_set(d, st, out);
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
  qm_session_add_early(r->s, &st->early);
  qm_session_path_counts(r->s, &st->migrations, &st->hops);
}

void qm_dialer_get_stats(const qm_dialer *d, qm_dialer_stats *st) {
  memset(st, 0, sizeof(*st));
  st->dropped_datagrams = d->dropped_dead;
  st->totals = d->totals;
  st->early = d->early;
  st->migrations = d->migrations;
  st->hops = d->hops;
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

void qm_dialer_foreach_server(const qm_dialer *d,
                              void (*fn)(const qm_server_info *, void *),
                              void *ud) {
  uint64_t now = now_ns(d);
  size_t i;
  for (i = 0; i < d->servers.n; i++) {
    const qm_server_row *row = &d->servers.rows[i];
    qm_server_facts f;
    qm_server_info in;
    memset(&f, 0, sizeof(f));
    memset(&in, 0, sizeof(in));
    qm_pool_foreach_key(d->pool, row->key, count_server, &f);
    snprintf(in.addr, sizeof(in.addr), "%s", row->name);
    in.backing_off = qm_policy_server_backing_off(&row->health, now);
    in.backoff_left_ms =
        in.backing_off ? (row->health.until - now + 999999) / 1000000 : 0;
    in.failures = row->health.fails;
    in.sessions = qm_pool_count(d->pool, row->key);
    in.handshaking = f.handshaking;
    in.streams = f.streams;
    in.sessions_opened = row->sessions_opened;
    in.handshakes_ok = row->handshakes_ok;
    in.handshakes_failed = row->handshakes_failed;
    fn(&in, ud);
  }
}
