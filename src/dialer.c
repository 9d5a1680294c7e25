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
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "io.h"
#include "pool.h"
#include "session.h"
#include "tls.h"

#define QM_CLEANUP_INTERVAL 60.0

struct qm_dialer {
  struct ev_loop *loop;
  qm_io io;
  qm_settings settings;
  char *key_copy, *sni_copy, *ca_copy, *alpn_copy;
  qm_tls_ctx *tls;
  qm_pool *pool;
  ev_timer cleanup;
  uint64_t dropped_dead; /* datagrams dropped by sessions already freed */
};

typedef struct sess_ref {
  qm_dialer *d;
  qm_session *s;
  char key[INET6_ADDRSTRLEN + 8];
  struct sockaddr_storage addr;
  socklen_t addrlen;
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
  d->dropped_dead += qm_session_dropped(r->s);
  qm_session_close(r->s);
  qm_session_free(r->s);
  free(r);
}
static const qm_pool_ops pool_ops = {op_is_active, op_can_take, op_destroy};

static void sess_on_dead(qm_session *s, void *ud);
static void sess_on_requeue(qm_session *s, qm_stream *st, void *ud);

static int place_stream(qm_dialer *d, const char *key,
                        const struct sockaddr *addr, socklen_t addrlen,
                        qm_stream *st) {
  sess_ref *r = qm_pool_pick(d->pool, key);
  char err[256];
  int rv;

  if (!r) {
    qm_session_owner owner = {0};
    qm_pool_prune(d->pool, key);
    r = calloc(1, sizeof(*r));
    if (!r)
      return QM_ENOMEM;
    r->d = d;
    snprintf(r->key, sizeof(r->key), "%s", key);
    memcpy(&r->addr, addr, addrlen);
    r->addrlen = addrlen;
    owner.on_dead = sess_on_dead;
    owner.on_requeue = sess_on_requeue;
    owner.ud = r;
    rv = qm_session_client_new(&r->s, &d->io, d->tls, &d->settings, addr,
                               addrlen, &owner, err, sizeof(err));
    if (rv != 0) {
      QM_WARN("dialer", "new session to %s: %s", key, err);
      free(r);
      return rv;
    }
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

/* A session died: take it out of the pool at once and free it with its
 * socket (v2ray waits for the next dial or the 60 s cleanup). */
static void sess_on_dead(qm_session *s, void *ud) {
  sess_ref *r = ud;
  qm_dialer *d = r->d;
  (void)s;
  if (qm_pool_remove(d->pool, r) == 0) {
    d->dropped_dead += qm_session_dropped(r->s);
    qm_session_free(r->s);
    free(r);
  }
}

static void sess_on_requeue(qm_session *s, qm_stream *st, void *ud) {
  sess_ref *r = ud;
  (void)s;
  if (place_stream(r->d, r->key, (struct sockaddr *)&r->addr, r->addrlen,
                   st) != 0) {
    if (st->cbs.on_close)
      st->cbs.on_close(st, QM_ELIMIT, st->ud);
    qm_stream_destroy(st);
  }
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

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

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
  d->settings.cert_file = d->settings.key_file = NULL;
  if ((rv = qm_io_init(&d->io, loop)) != 0)
    goto fail;
  if ((rv = qm_tls_ctx_new(&d->tls, 0, &d->settings, err, sizeof(err))) != 0) {
    QM_ERROR("dialer", "%s", err);
    goto fail;
  }
  if ((rv = qm_pool_new(&d->pool, &pool_ops, d)) != 0)
    goto fail;
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
  if (d->pool)
    qm_pool_free(d->pool);
  qm_tls_ctx_free(d->tls);
  if (d->io.loop)
    qm_io_clear(&d->io);
  if (d->key_copy)
    qm_wipe(d->key_copy, strlen(d->key_copy));
  free(d->key_copy);
  free(d->sni_copy);
  free(d->ca_copy);
  free(d->alpn_copy);
  free(d);
}

/* Resolve host: an IP literal is used as is; a name goes to the system
 * resolver, IPv4 first as Go does (SPEC §1.1). */
static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss,
                   socklen_t *len) {
  struct addrinfo hints, *res = NULL, *ai, *pick = NULL;
  char portstr[8];
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(portstr, sizeof(portstr), "%u", port);
  if (getaddrinfo(host, portstr, &hints, &res) != 0 || !res)
    return QM_ERESOLVE;
  for (ai = res; ai; ai = ai->ai_next)
    if (ai->ai_family == AF_INET) {
      pick = ai;
      break;
    }
  if (!pick)
    pick = res;
  memcpy(ss, pick->ai_addr, pick->ai_addrlen);
  *len = pick->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

int qm_dial(qm_dialer *d, const char *host, uint16_t port,
            const qm_stream_cbs *cbs, void *ud, qm_stream **out) {
  struct sockaddr_storage ss;
  socklen_t len;
  char ip[INET6_ADDRSTRLEN], key[INET6_ADDRSTRLEN + 8];
  qm_stream *st;
  int rv;

  if ((rv = resolve(host, port, &ss, &len)) != 0) {
    QM_WARN("dialer", "cannot resolve %s", host);
    return rv;
  }
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
  else
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip,
              sizeof(ip));
  snprintf(key, sizeof(key), "%s|%u", ip, port);
  st = qm_stream_new(d->settings.stream_buffer);
  if (!st)
    return QM_ENOMEM;
  qm_stream_set_callbacks(st, cbs, ud);
  if ((rv = place_stream(d, key, (struct sockaddr *)&ss, len, st)) != 0) {
    qm_stream_destroy(st);
    return rv;
  }
  *out = st;
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
}

void qm_dialer_get_stats(const qm_dialer *d, qm_dialer_stats *st) {
  memset(st, 0, sizeof(*st));
  st->dropped_datagrams = d->dropped_dead;
  qm_pool_foreach(d->pool, count_one, st);
}
