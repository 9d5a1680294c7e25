/* Non-blocking name resolution with c-ares on a libev loop. */
#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "resolve.h"

#define QM_MAX_WATCHERS 16
#define QM_CACHE_SIZE 32
#define QM_CACHE_TTL 60.0 /* seconds; c-ares 1.18 does not cache */

typedef struct cache_entry {
  char host[256];
  uint16_t port;
  ev_tstamp expires;
  qm_addrlist *list;
} cache_entry;

struct qm_resolver {
  struct ev_loop *loop;
  ares_channel channel;
  ev_io io[QM_MAX_WATCHERS];
  ev_timer timer;
  cache_entry cache[QM_CACHE_SIZE];
  unsigned next_slot;
  int freeing;
};

typedef struct lookup {
  qm_resolver *r;
  qm_resolve_cb cb;
  void *ud;
  uint16_t port;
  char host[256];
} lookup;

void qm_addrlist_ref(qm_addrlist *a) {
  a->refs++;
}
void qm_addrlist_unref(qm_addrlist *a) {
  if (a && --a->refs == 0)
    free(a);
}

static void process_timer(qm_resolver *r) {
  struct timeval tv, *tvp = ares_timeout(r->channel, NULL, &tv);
  ev_timer_stop(r->loop, &r->timer);
  if (tvp) {
    ev_timer_set(&r->timer, (double)tv.tv_sec + (double)tv.tv_usec / 1e6, 0.);
    ev_timer_start(r->loop, &r->timer);
  }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents) {
  qm_resolver *r = w->data;
  (void)loop;
  ares_process_fd(r->channel, (revents & EV_READ) ? w->fd : ARES_SOCKET_BAD,
                  (revents & EV_WRITE) ? w->fd : ARES_SOCKET_BAD);
  process_timer(r);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_resolver *r = w->data;
  (void)loop;
  (void)revents;
  ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  process_timer(r);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable,
                          int writable) {
  qm_resolver *r = data;
  int i, free_slot = -1;
  for (i = 0; i < QM_MAX_WATCHERS; i++) {
    if (ev_is_active(&r->io[i]) && r->io[i].fd == fd) {
      ev_io_stop(r->loop, &r->io[i]);
      break;
    }
    if (!ev_is_active(&r->io[i]) && free_slot < 0)
      free_slot = i;
  }
  if (i == QM_MAX_WATCHERS)
    i = free_slot;
  if (i < 0 || (!readable && !writable))
    return;
  ev_io_set(&r->io[i], fd,
            (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
  ev_io_start(r->loop, &r->io[i]);
}

int qm_resolver_new(qm_resolver **out, struct ev_loop *loop) {
  qm_resolver *r = calloc(1, sizeof(*r));
  struct ares_options opts;
  int i;
  if (!r)
    return QM_ENOMEM;
  if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
    free(r);
    return QM_ERESOLVE;
  }
  r->loop = loop;
  memset(&opts, 0, sizeof(opts));
  opts.sock_state_cb = sock_state_cb;
  opts.sock_state_cb_data = r;
  opts.timeout = 3000; /* ms per try */
  opts.tries = 2;
  if (ares_init_options(&r->channel, &opts,
                        ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                            ARES_OPT_TRIES) != ARES_SUCCESS) {
    ares_library_cleanup();
    free(r);
    return QM_ERESOLVE;
  }
  for (i = 0; i < QM_MAX_WATCHERS; i++) {
    ev_io_init(&r->io[i], io_cb, -1, EV_READ);
    r->io[i].data = r;
  }
  ev_timer_init(&r->timer, timer_cb, 0., 0.);
  r->timer.data = r;
  *out = r;
  return 0;
}

void qm_resolver_free(qm_resolver *r) {
  int i;
  if (!r)
    return;
  r->freeing = 1;
  ares_destroy(r->channel); /* answers pending lookups with ARES_EDESTRUCTION */
  for (i = 0; i < QM_MAX_WATCHERS; i++)
    ev_io_stop(r->loop, &r->io[i]);
  ev_timer_stop(r->loop, &r->timer);
  for (i = 0; i < QM_CACHE_SIZE; i++)
    qm_addrlist_unref(r->cache[i].list);
  ares_library_cleanup();
  free(r);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port) {
  if (ss->ss_family == AF_INET)
    ((struct sockaddr_in *)ss)->sin_port = htons(port);
  else
    ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static qm_addrlist *numeric(const char *host, uint16_t port) {
  struct in_addr a4;
  struct in6_addr a6;
  qm_addrlist *l;
  int v4 = inet_pton(AF_INET, host, &a4) == 1;
  if (!v4 && inet_pton(AF_INET6, host, &a6) != 1)
    return NULL;
  l = calloc(1, sizeof(*l));
  if (!l)
    return NULL;
  l->refs = 1;
  l->n = 1;
  if (v4) {
    struct sockaddr_in *s = (struct sockaddr_in *)&l->addr[0];
    s->sin_family = AF_INET;
    s->sin_addr = a4;
    l->len[0] = sizeof(*s);
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&l->addr[0];
    s->sin6_family = AF_INET6;
    s->sin6_addr = a6;
    l->len[0] = sizeof(*s);
  }
  set_port(&l->addr[0], port);
  return l;
}

static void addrinfo_cb(void *arg, int status, int timeouts,
                        struct ares_addrinfo *res) {
  lookup *lk = arg;
  qm_resolver *r = lk->r;
  qm_addrlist *l = NULL;
  int pass;
  (void)timeouts;

  if (status == ARES_SUCCESS && res && (l = calloc(1, sizeof(*l)))) {
    struct ares_addrinfo_node *nd;
    l->refs = 1;
    /* IPv4 first, then IPv6, each in the resolver's order */
    for (pass = 0; pass < 2; pass++)
      for (nd = res->nodes; nd && l->n < QM_MAX_ADDRS; nd = nd->ai_next) {
        if ((pass == 0) != (nd->ai_family == AF_INET))
          continue;
        if (nd->ai_family != AF_INET && nd->ai_family != AF_INET6)
          continue;
        memcpy(&l->addr[l->n], nd->ai_addr, (size_t)nd->ai_addrlen);
        l->len[l->n] = (socklen_t)nd->ai_addrlen;
        set_port(&l->addr[l->n], lk->port);
        l->n++;
      }
    if (l->n == 0) {
      free(l);
      l = NULL;
    }
  }
  if (res)
    ares_freeaddrinfo(res);
  if (l && !r->freeing) {
    cache_entry *e = &r->cache[r->next_slot++ % QM_CACHE_SIZE];
    qm_addrlist_unref(e->list);
    snprintf(e->host, sizeof(e->host), "%s", lk->host);
    e->port = lk->port;
    e->expires = ev_now(r->loop) + QM_CACHE_TTL;
    e->list = l;
    qm_addrlist_ref(l);
  }
  if (!l)
    QM_WARN("resolve", "cannot resolve '%s': %s", lk->host,
            status == ARES_SUCCESS ? "no IPv4 or IPv6 address"
                                   : ares_strerror(status));
  lk->cb(l, l ? 0 : QM_ERESOLVE, lk->ud);
  qm_addrlist_unref(l);
  free(lk);
}

int qm_resolve(qm_resolver *r, const char *host, uint16_t port,
               qm_addrlist **now, qm_resolve_cb cb, void *ud) {
  struct ares_addrinfo_hints hints;
  lookup *lk;
  int i;

  *now = numeric(host, port);
  if (*now)
    return 0;
  if (strlen(host) >= sizeof(lk->host))
    return QM_ERESOLVE;
  for (i = 0; i < QM_CACHE_SIZE; i++) {
    cache_entry *e = &r->cache[i];
    if (e->list && e->port == port && strcmp(e->host, host) == 0 &&
        e->expires > ev_now(r->loop)) {
      qm_addrlist_ref(e->list);
      *now = e->list;
      return 0;
    }
  }
  lk = calloc(1, sizeof(*lk));
  if (!lk)
    return QM_ENOMEM;
  lk->r = r;
  lk->cb = cb;
  lk->ud = ud;
  lk->port = port;
  snprintf(lk->host, sizeof(lk->host), "%s", host);
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  ares_getaddrinfo(r->channel, host, NULL, &hints, addrinfo_cb, lk);
  process_timer(r);
  return 0;
}
