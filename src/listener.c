/*
 * listener — accept QUIC sessions on one UDP socket, or one per port of a
 * range, and hand every stream on (SPEC §2). Datagrams from every socket are
 * routed to sessions by destination connection id; a session sends each
 * packet from the socket of its path's local port (endpoint_for).
 * With workers (several listeners of one address, one per loop), a datagram
 * whose id names another worker goes to the handoff callback, and datagrams
 * handed over by other workers come in through qm_listener_inject.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "internal.h"
#include "io.h"
#include "session.h"
#include "tls.h"

#define QM_CID_BUCKETS 1024
#define QM_MAX_SESSIONS 4096

typedef struct cid_entry {
  struct cid_entry *next;
  qm_session *s;
  size_t len;
  uint8_t cid[NGTCP2_MAX_CIDLEN];
} cid_entry;

typedef struct sess_node {
  struct sess_node *prev, *next;
  qm_session *s;
  struct qm_listener *l;
} sess_node;

struct qm_listener {
  struct ev_loop *loop;
  qm_io io;
  qm_endpoint *eps; /* one per port, eps[i] on port first_port + i */
  size_t neps;
  uint16_t first_port;
  qm_settings settings;
  char *key_copy, *alpn_copy, *qlog_copy;
  qm_tls_ctx *tls;
  qm_accept_fn on_stream;
  void *ud;
  qm_flow_ctx flows; /* UDP flows (qm_listener_enable_flows) */
  cid_entry *buckets[QM_CID_BUCKETS];
  sess_node *sessions;
  size_t nsessions;
  uint64_t accepted;
  uint64_t unroutable;
  uint64_t retries_sent, bad_tokens, refused;
  qm_totals gone; /* counts of the sessions already freed */
  qm_early_totals early_gone;
  /* secrets derived from settings.static_secret (or random): Retry tokens
   * and stateless-reset tokens stay valid across restarts */
  uint8_t retry_secret[32];
  uint8_t reset_secret[QM_RESET_SECRET_LEN];
  uint64_t resets_sent;
  ev_tstamp reset_window; /* rate limit of stateless resets */
  unsigned reset_count;
  ev_tstamp window_start;
  unsigned window_new;   /* new sessions in the current second */
  ev_tstamp retry_until; /* auto mode: validate addresses until then */
  qm_handoff_fn handoff; /* workers: datagrams of another worker's ids */
  void *handoff_ud;
  uint64_t handoffs_out, handoffs_in;
};

/* auto Retry: more new sessions than this in one second is a flood */
#define QM_FLOOD_PER_SEC 256
#define QM_RETRY_HOLD 10.0 /* seconds of Retry after a flood */
#define QM_RETRY_TOKEN_TIMEOUT (10 * NGTCP2_SECONDS)
/* stateless resets: at most this many a second; none in answer to a packet
 * too short to be answered by a smaller one (RFC 9000 §10.3.3) */
#define QM_RESETS_PER_SEC 100
#define QM_RESET_MIN 21 /* 5 random bytes + the 16-byte token */
#define QM_RESET_MAX 43

static size_t cid_hash(const uint8_t *cid, size_t len) {
  size_t h = 1469598103934665603ull, i; /* FNV-1a */
  for (i = 0; i < len; i++)
    h = (h ^ cid[i]) * 1099511628211ull;
  return h & (QM_CID_BUCKETS - 1);
}

static qm_session *cid_find(qm_listener *l, const uint8_t *cid, size_t len) {
  cid_entry *e;
  for (e = l->buckets[cid_hash(cid, len)]; e; e = e->next)
    if (e->len == len && memcmp(e->cid, cid, len) == 0)
      return e->s;
  return NULL;
}

static int add_cid(qm_session *s, const uint8_t *cid, size_t len, void *ud) {
  sess_node *n = ud;
  qm_listener *l = n->l;
  size_t h = cid_hash(cid, len);
  cid_entry *e;
  if (len > NGTCP2_MAX_CIDLEN)
    return QM_EINVAL;
  if (cid_find(l, cid, len))
    return 0;
  e = malloc(sizeof(*e));
  if (!e)
    return QM_ENOMEM;
  e->s = s;
  e->len = len;
  memcpy(e->cid, cid, len);
  e->next = l->buckets[h];
  l->buckets[h] = e;
  return 0;
}

static void remove_cid(qm_session *s, const uint8_t *cid, size_t len,
                       void *ud) {
  sess_node *n = ud;
  cid_entry **pp = &n->l->buckets[cid_hash(cid, len)];
  while (*pp) {
    cid_entry *e = *pp;
    if (e->s == s && e->len == len && memcmp(e->cid, cid, len) == 0) {
      *pp = e->next;
      free(e);
      return;
    }
    pp = &e->next;
  }
}

/* Drop every id of s (also the client's original DCID). */
static void remove_all_cids(qm_listener *l, qm_session *s) {
  size_t i;
  for (i = 0; i < QM_CID_BUCKETS; i++) {
    cid_entry **pp = &l->buckets[i];
    while (*pp) {
      cid_entry *e = *pp;
      if (e->s == s) {
        *pp = e->next;
        free(e);
      } else {
        pp = &e->next;
      }
    }
  }
}

static void node_unlink(qm_listener *l, sess_node *n) {
  if (n->prev)
    n->prev->next = n->next;
  else
    l->sessions = n->next;
  if (n->next)
    n->next->prev = n->prev;
  l->nsessions--;
}

static void sess_on_dead(qm_session *s, void *ud) {
  sess_node *n = ud;
  qm_listener *l = n->l;
  QM_DEBUG("listener", "session %llu gone",
           (unsigned long long)qm_session_id(s));
  remove_all_cids(l, s);
  node_unlink(l, n);
  qm_session_add_totals(s, &l->gone, 1);
  qm_session_add_early(s, &l->early_gone);
  qm_session_free(s);
  free(n);
}

static void sess_on_stream(qm_session *s, qm_stream *st, void *ud) {
  sess_node *n = ud;
  (void)s;
  if (n->l->on_stream)
    n->l->on_stream(n->l, st, n->l->ud);
}

static uint16_t port_of(const struct sockaddr *sa) {
  return ntohs(sa->sa_family == AF_INET6
                   ? ((const struct sockaddr_in6 *)sa)->sin6_port
                   : ((const struct sockaddr_in *)sa)->sin_port);
}

/* The endpoint bound to local: eps[port - first_port], checked in full. */
static qm_endpoint *ep_by_local(qm_listener *l, const struct sockaddr *local,
                                socklen_t len) {
  size_t i = (size_t)(uint16_t)(port_of(local) - l->first_port);
  if (i < l->neps && l->eps[i].locallen == len &&
      memcmp(&l->eps[i].local, local, len) == 0)
    return &l->eps[i];
  return NULL;
}

static qm_endpoint *endpoint_for(qm_session *s, const struct sockaddr *local,
                                 socklen_t len, void *ud) {
  sess_node *n = ud;
  (void)s;
  return ep_by_local(n->l, local, len);
}

/* The n bytes written into ep's slot go out to `to` now. */
static void send_slot(qm_endpoint *ep, ngtcp2_ssize n,
                      const struct sockaddr *to, socklen_t tolen) {
  if (n <= 0)
    return;
  qm_endpoint_commit(ep, (size_t)n, to, tolen);
  qm_endpoint_flush(ep);
}

static void send_version_negotiation(qm_endpoint *ep,
                                     const ngtcp2_version_cid *vc,
                                     const struct sockaddr *from,
                                     socklen_t fromlen) {
  uint8_t *slot = qm_endpoint_slot(ep);
  uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
  uint8_t unused;
  ngtcp2_ssize n;
  if (!slot)
    return;
  qm_random(&unused, 1);
  n = ngtcp2_pkt_write_version_negotiation(
      slot, qm_endpoint_max_quic(ep), unused, vc->scid, vc->scidlen, vc->dcid,
      vc->dcidlen, sv, QM_ARRAY_LEN(sv));
  send_slot(ep, n, from, fromlen);
}

static int want_retry(qm_listener *l) {
  ev_tstamp now = ev_now(l->loop);
  if (l->settings.retry == QM_RETRY_ALWAYS)
    return 1;
  if (l->settings.retry == QM_RETRY_NEVER)
    return 0;
  if (now - l->window_start >= 1.0) {
    l->window_start = now;
    l->window_new = 0;
  }
  if (++l->window_new > QM_FLOOD_PER_SEC && l->retry_until < now) {
    QM_WARN("listener",
            "more than %d new sessions a second: validating "
            "client addresses with Retry for %.0f s",
            QM_FLOOD_PER_SEC, QM_RETRY_HOLD);
    l->retry_until = now + QM_RETRY_HOLD;
  }
  return l->retry_until >= now;
}

static void send_retry(qm_listener *l, qm_endpoint *ep, const ngtcp2_pkt_hd *hd,
                       const struct sockaddr *from, socklen_t fromlen) {
  uint8_t token[NGTCP2_CRYPTO_MAX_RETRY_TOKENLEN];
  uint8_t *slot = qm_endpoint_slot(ep);
  ngtcp2_cid scid;
  ngtcp2_ssize tlen, n;

  if (!slot)
    return;
  /* the client's next Initial comes to the worker this id names */
  scid.datalen = QM_SCID_LEN;
  qm__cid_make(scid.data, scid.datalen, l->settings.worker_id,
               l->settings.worker_count);
  tlen = ngtcp2_crypto_generate_retry_token(
      token, l->retry_secret, sizeof(l->retry_secret), hd->version, from,
      fromlen, &scid, &hd->dcid, qm_now_ns());
  if (tlen < 0)
    return;
  n = ngtcp2_crypto_write_retry(slot, qm_endpoint_max_quic(ep), hd->version,
                                &hd->scid, &scid, &hd->dcid, token,
                                (size_t)tlen);
  if (n > 0) {
    send_slot(ep, n, from, fromlen);
    l->retries_sent++;
    QM_DEBUG("listener", "Retry sent (address validation)");
  }
}

/* A short-header packet of a session this listener does not know (a
 * restart lost it, or it timed out): a stateless reset tells the client at
 * once. Its token is derived from the connection id, as the one the session
 * announced was; smaller than the packet that triggered it, so two
 * endpoints cannot answer each other's resets forever; rate-limited. */
static void send_stateless_reset(qm_listener *l, qm_endpoint *ep,
                                 const ngtcp2_version_cid *vc, size_t pktlen,
                                 const struct sockaddr *from,
                                 socklen_t fromlen) {
  uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN], rnd[QM_RESET_MAX];
  size_t size = QM_MIN(pktlen - 1, (size_t)QM_RESET_MAX);
  ev_tstamp now = ev_now(l->loop);
  uint8_t *slot;

  if (pktlen <= QM_RESET_MIN || vc->dcidlen == 0)
    return;
  if (now - l->reset_window >= 1.0) {
    l->reset_window = now;
    l->reset_count = 0;
  }
  if (l->reset_count >= QM_RESETS_PER_SEC || !(slot = qm_endpoint_slot(ep)))
    return;
  l->reset_count++;
  qm_session_reset_token(token, l->reset_secret, vc->dcid, vc->dcidlen);
  qm_random(rnd, size - NGTCP2_STATELESS_RESET_TOKENLEN);
  send_slot(ep,
            ngtcp2_pkt_write_stateless_reset(
                slot, qm_endpoint_max_quic(ep), token, rnd,
                size - NGTCP2_STATELESS_RESET_TOKENLEN),
            from, fromlen);
  l->resets_sent++;
}

/* One unwrapped QUIC datagram, from the socket or (injected) from another
 * worker. */
static void route(qm_listener *l, qm_endpoint *ep, const struct sockaddr *from,
                  socklen_t fromlen, const uint8_t *pkt, size_t len,
                  int injected) {
  ngtcp2_version_cid vc;
  ngtcp2_pkt_hd hd;
  qm_session *s;
  sess_node *n;
  qm_session_owner owner = {0};
  ngtcp2_cid odcid, *podcid = NULL;
  int rv;

  rv = ngtcp2_pkt_decode_version_cid(&vc, pkt, len, 12);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    if (len >= 1200) /* as quic-go: only for packets that could be Initials */
      send_version_negotiation(ep, &vc, from, fromlen);
    else
      l->unroutable++; /* e.g. a hidden Initial's decoy (hide.h) */
    return;
  }
  if (rv != 0) {
    ep->rx_dropped++;
    return;
  }
  s = cid_find(l, vc.dcid, vc.dcidlen);
  if (s) {
    qm_session_recv(s, ep, from, fromlen, pkt, len);
    return;
  }
  /* Another worker's id (the 4-tuple hash brought it here: a NAT rebinding,
   * a migration, a client Initial whose random id names it): its owner
   * answers, resets included. Handed off once only. */
  if (!injected) {
    int w = qm_cid_worker(vc.dcid, vc.dcidlen, l->settings.worker_count);
    if (w >= 0 && (uint32_t)w != l->settings.worker_id) {
      if (l->handoff) {
        l->handoffs_out++;
        l->handoff(l, (uint32_t)w, (struct sockaddr *)&ep->local, ep->locallen,
                   from, fromlen, pkt, len, l->handoff_ud);
      } else {
        l->unroutable++;
      }
      return;
    }
  }
  /* Unknown id: only an Initial may start a session. */
  if (!(pkt[0] & 0x80)) { /* short header */
    l->unroutable++;
    send_stateless_reset(l, ep, &vc, len, from, fromlen);
    return;
  }
  if (ngtcp2_accept(&hd, pkt, len) != 0 || hd.type != NGTCP2_PKT_INITIAL) {
    l->unroutable++;
    return;
  }
  if (l->nsessions >= l->settings.max_sessions) {
    l->refused++;
    return;
  }
  if (hd.tokenlen > 0 && hd.token[0] == NGTCP2_CRYPTO_TOKEN_MAGIC_RETRY) {
    if (ngtcp2_crypto_verify_retry_token(
            &odcid, hd.token, hd.tokenlen, l->retry_secret,
            sizeof(l->retry_secret), hd.version, from, fromlen, &hd.dcid,
            QM_RETRY_TOKEN_TIMEOUT, qm_now_ns()) != 0) {
      l->bad_tokens++;
      return;
    }
    podcid = &odcid;
  } else if (want_retry(l)) {
    send_retry(l, ep, &hd, from, fromlen);
    return;
  }
  n = calloc(1, sizeof(*n));
  if (!n)
    return;
  n->l = l;
  owner.on_dead = sess_on_dead;
  owner.on_stream = sess_on_stream;
  owner.add_cid = add_cid;
  owner.remove_cid = remove_cid;
  owner.reset_secret = l->reset_secret;
  owner.flows = &l->flows;
  owner.endpoint_for = endpoint_for;
  owner.ud = n;
  if (qm_session_server_new(&s, &l->io, ep, l->tls, &l->settings, &hd, podcid,
                            from, fromlen, &owner) != 0) {
    free(n);
    return;
  }
  n->s = s;
  n->next = l->sessions;
  if (l->sessions)
    l->sessions->prev = n;
  l->sessions = n;
  l->nsessions++;
  l->accepted++;
  QM_DEBUG("listener", "session %llu accepted",
           (unsigned long long)qm_session_id(s));
  qm_session_recv(s, ep, from, fromlen, pkt, len);
  if (qm_session_wants_retry(s)) {
    l->accepted--; /* it starts again after the Retry */
    send_retry(l, ep, &hd, from, fromlen);
  }
}

static void ep_recv(qm_endpoint *ep, const struct sockaddr *from,
                    socklen_t fromlen, uint8_t *pkt, size_t len, void *ud) {
  route(ud, ep, from, fromlen, pkt, len, 0);
}

void qm_listener_set_handoff(qm_listener *l, qm_handoff_fn fn, void *ud) {
  l->handoff = fn;
  l->handoff_ud = ud;
}

int qm_listener_inject(qm_listener *l, const struct sockaddr *local,
                       socklen_t locallen, const struct sockaddr *from,
                       socklen_t fromlen, const uint8_t *pkt, size_t len) {
  qm_endpoint *ep;
  if (!len || len > QM_RX_BUF || fromlen > sizeof(struct sockaddr_storage))
    return QM_EINVAL;
  /* our socket on the port the client sent to: replies leave from it */
  ep = local ? ep_by_local(l, local, locallen) : NULL;
  l->handoffs_in++;
  route(l, ep ? ep : &l->eps[0], from, fromlen, pkt, len, 1);
  return 0;
}

int qm_listener_steer(qm_listener *const *ls, size_t n) {
  int fds[QM_MAX_WORKERS];
  char err[256] = "";
  size_t i, p;
  int rv = 0;
  if (n < 2 || n > QM_MAX_WORKERS)
    return QM_EINVAL;
  /* With a key, the id is sealed inside the datagram: nothing to read. */
  if (ls[0]->settings.security != QM_SEC_NONE)
    return QM_EINVAL;
  for (i = 0; i < n; i++)
    if (ls[i]->settings.worker_id != i || ls[i]->settings.worker_count != n ||
        ls[i]->neps != ls[0]->neps)
      return QM_EINVAL;
  /* every port of a range is a reuseport group of its own */
  for (p = 0; p < ls[0]->neps && rv == 0; p++) {
    for (i = 0; i < n; i++)
      fds[i] = ls[i]->eps[p].fd;
    rv = qm__steer_attach(fds, n, qm_codec_prefix(&ls[0]->eps[p].codec), err,
                          sizeof(err));
  }
  if (rv != 0)
    QM_INFO("listener",
            "no steering by the kernel (%s): workers hand "
            "datagrams to each other",
            err);
  return rv;
}

static void ep_writable(qm_endpoint *ep, void *ud) {
  qm_listener *l = ud;
  sess_node *n;
  (void)ep;
  for (n = l->sessions; n; n = n->next)
    qm_session_writable(n->s);
}

/* The Retry and stateless-reset secrets: HMAC-SHA256 of the static secret
 * with a label each, or random without one. */
static int derive_secrets(qm_listener *l, const qm_settings *s) {
  static const char retry_label[] = "quicmux retry token";
  static const char reset_label[] = "quicmux stateless reset";
  if (!s->static_secret) {
    qm_random(l->retry_secret, sizeof(l->retry_secret));
    qm_random(l->reset_secret, sizeof(l->reset_secret));
    return 0;
  }
  if (s->static_secret_len < 16) {
    QM_ERROR("listener", "static secret: want 16 bytes or more, got %zu",
             s->static_secret_len);
    return QM_EINVAL;
  }
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->static_secret,
                       s->static_secret_len, retry_label,
                       sizeof(retry_label) - 1, l->retry_secret) != 0 ||
      gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->static_secret,
                       s->static_secret_len, reset_label,
                       sizeof(reset_label) - 1, l->reset_secret) != 0)
    return QM_ETLS;
  return 0;
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

/* One endpoint per port of the range; every one routes into this listener. */
static int open_endpoints(qm_listener *l, const struct sockaddr *addr,
                          socklen_t addrlen, unsigned nports) {
  struct sockaddr_storage a;
  char err[256];
  size_t i;
  int rv;

  if (nports < 1 || nports > QM_MAX_PORT_RANGE || addrlen > sizeof(a) ||
      (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) ||
      (nports > 1 && port_of(addr) == 0) ||
      (unsigned)port_of(addr) + nports - 1 > 65535) {
    QM_ERROR("listener",
             "port range: want 1 to %d ports from a port other than 0, "
             "ending at 65535 at most (port %u, %u ports)",
             QM_MAX_PORT_RANGE, port_of(addr), nports);
    return QM_EINVAL;
  }
  l->eps = calloc(nports, sizeof(*l->eps));
  if (!l->eps)
    return QM_ENOMEM;
  for (i = 0; i < nports; i++)
    l->eps[i].fd = -1;
  memcpy(&a, addr, addrlen);
  for (i = 0; i < nports; i++) {
    uint16_t port = (uint16_t)htons((uint16_t)(port_of(addr) + i));
    if (a.ss_family == AF_INET6)
      ((struct sockaddr_in6 *)&a)->sin6_port = port;
    else
      ((struct sockaddr_in *)&a)->sin_port = port;
    rv = qm_endpoint_open(&l->eps[i], &l->io, a.ss_family,
                          (struct sockaddr *)&a, addrlen, NULL, 0, &l->settings,
                          ep_recv, ep_writable, l, err, sizeof(err));
    l->neps = i + 1; /* closed by qm_listener_free, also on failure */
    if (rv != 0) {
      QM_ERROR("listener", "%s", err);
      return rv;
    }
  }
  l->first_port = port_of((struct sockaddr *)&l->eps[0].local);
  return 0;
}

int qm_listener_new(qm_listener **out, struct ev_loop *loop,
                    const struct sockaddr *addr, socklen_t addrlen,
                    const qm_settings *s, qm_accept_fn on_stream, void *ud) {
  return qm_listener_new_range(out, loop, addr, addrlen, 1, s, on_stream, ud);
}

int qm_listener_new_range(qm_listener **out, struct ev_loop *loop,
                          const struct sockaddr *addr, socklen_t addrlen,
                          unsigned nports, const qm_settings *s,
                          qm_accept_fn on_stream, void *ud) {
  qm_listener *l = calloc(1, sizeof(*l));
  char err[256];
  int rv;

  if (!l)
    return QM_ENOMEM;
  l->loop = loop;
  l->on_stream = on_stream;
  l->ud = ud;
  l->settings = *s;
  l->settings.static_secret = NULL; /* only derive_secrets reads it */
  l->settings.key = l->key_copy = dup_or_null(s->key);
  l->settings.alpn = l->alpn_copy = dup_or_null(s->alpn);
  l->settings.qlog_dir = l->qlog_copy = dup_or_null(s->qlog_dir);
  if (s->cc && qm_cc_parse(s->cc) != 0) {
    QM_ERROR("listener", "cc '%s': want bbr, cubic or reno", s->cc);
    rv = QM_EINVAL;
    goto fail;
  }
  l->settings.cc = qm__cc_static(s->cc);
  if (!l->settings.max_streams_bidi)
    l->settings.max_streams_bidi = 32;
  if (!l->settings.max_sessions)
    l->settings.max_sessions = QM_MAX_SESSIONS;
  if (l->settings.worker_count > QM_MAX_WORKERS ||
      (l->settings.worker_count > 1 &&
       l->settings.worker_id >= l->settings.worker_count)) {
    QM_ERROR("listener", "worker %u of %u: want at most %d workers",
             l->settings.worker_id, l->settings.worker_count, QM_MAX_WORKERS);
    rv = QM_EINVAL;
    goto fail;
  }
  l->settings.caps = NULL;
  if ((rv = qm_io_init(&l->io, loop)) != 0)
    goto fail;
  if ((rv = derive_secrets(l, s)) != 0)
    goto fail;
  if ((rv = qm_tls_ctx_new(&l->tls, 1, s, err, sizeof(err))) != 0) {
    QM_ERROR("listener", "%s", err);
    goto fail;
  }
  if ((rv = open_endpoints(l, addr, addrlen, nports)) != 0)
    goto fail;
  *out = l;
  return 0;
fail:
  qm_listener_free(l);
  return rv;
}

void qm_listener_free(qm_listener *l) {
  size_t i;
  if (!l)
    return;
  while (l->sessions) {
    sess_node *n = l->sessions;
    node_unlink(l, n);
    qm_session_close(n->s);
    remove_all_cids(l, n->s);
    qm_session_free(n->s);
    free(n);
  }
  qm_flow_ctx_clear(&l->flows);
  for (i = 0; i < QM_CID_BUCKETS; i++)
    while (l->buckets[i]) {
      cid_entry *e = l->buckets[i];
      l->buckets[i] = e->next;
      free(e);
    }
  for (i = 0; i < l->neps; i++)
    if (l->eps[i].fd >= 0)
      qm_endpoint_close(&l->eps[i]);
  free(l->eps);
  qm_tls_ctx_free(l->tls);
  if (l->io.loop)
    qm_io_clear(&l->io);
  qm_wipe(l->retry_secret, sizeof(l->retry_secret));
  qm_wipe(l->reset_secret, sizeof(l->reset_secret));
  if (l->key_copy)
    qm_wipe(l->key_copy, strlen(l->key_copy));
  free(l->key_copy);
  free(l->alpn_copy);
  free(l->qlog_copy);
  free(l);
}

void qm_listener_get_stats(const qm_listener *l, qm_listener_stats *st) {
  sess_node *n;
  size_t i;
  memset(st, 0, sizeof(*st));
  st->sessions = l->nsessions;
  st->totals = l->gone;
  st->early = l->early_gone;
  for (n = l->sessions; n; n = n->next) {
    st->streams += qm_session_stream_count(n->s);
    qm_session_add_totals(n->s, &st->totals, 0);
    qm_session_add_early(n->s, &st->early);
  }
  for (i = 0; i < l->neps; i++) {
    qm_endpoint_add_totals(&l->eps[i], &st->totals);
    st->bad_datagrams += l->eps[i].rx_dropped;
  }
  st->totals.sessions_opened = l->accepted;
  st->dropped_datagrams = st->bad_datagrams + l->unroutable + l->bad_tokens;
  st->accepted_sessions = l->accepted;
  st->unroutable = l->unroutable;
  st->retries_sent = l->retries_sent;
  st->bad_tokens = l->bad_tokens;
  st->refused_sessions = l->refused;
  st->resets_sent = l->resets_sent;
  st->handoffs_out = l->handoffs_out;
  st->handoffs_in = l->handoffs_in;
}

int qm_listener_get_addr(const qm_listener *l, struct sockaddr_storage *ss,
                         socklen_t *len) {
  memcpy(ss, &l->eps[0].local, l->eps[0].locallen);
  *len = l->eps[0].locallen;
  return 0;
}

void qm_listener_foreach_session(const qm_listener *l,
                                 void (*fn)(const qm_session_info *, void *),
                                 void *ud) {
  sess_node *n;
  for (n = l->sessions; n; n = n->next) {
    qm_session_info in;
    qm_session_get_info(n->s, &in);
    fn(&in, ud);
  }
}

int qm_listener_enable_flows(qm_listener *l, const qm_flow_settings *fs,
                             qm_accept_flow_fn on_flow, void *ud) {
  if (!l || !on_flow)
    return QM_EINVAL;
  qm_flow_ctx_init(&l->flows, &l->io, fs);
  l->flows.on_flow = on_flow;
  l->flows.listener = l;
  l->flows.on_flow_ud = ud;
  return 0;
}

void qm_listener_flow_stats(const qm_listener *l, qm_flow_stats *st) {
  qm__flow_ctx_stats(&l->flows, st);
}
