/* One tunnel config on N loops (workers.h). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "ring.h"
#include "workers.h"

#define RING_SLOTS 512 /* per worker; a full ring drops (QUIC recovers) */
#define DRAIN_PER_WAKE 256

typedef struct worker {
  struct workers *g;
  unsigned idx;
  struct ev_loop *loop;
  int own_loop;
  pthread_t th;
  int started;
  tunnel *t;
  ring q;
  ev_async q_w;   /* datagrams in q */
  ev_async ctl_w; /* pause or stop asked */
} worker;

struct workers {
  worker *w;
  unsigned n;
  int server;
  qm_caps *caps;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int pause_req, stop_req;
  unsigned paused;
  const char *steering; /* server workers: "ebpf" or "handoff" */
};

unsigned workers_auto(void) {
  cpu_set_t set;
  int n;
  if (sched_getaffinity(0, sizeof(set), &set) != 0)
    return 1;
  n = CPU_COUNT(&set);
  if (n < 1)
    n = 1;
  return n > QM_MAX_WORKERS ? QM_MAX_WORKERS : (unsigned)n;
}

/* ---- hand-off between workers ---- */

/* On the receiving worker's loop: the datagram belongs to worker `to`. */
static void on_handoff(qm_listener *l, uint32_t to,
                       const struct sockaddr *local, socklen_t locallen,
                       const struct sockaddr *from, socklen_t fromlen,
                       const uint8_t *pkt, size_t len, void *ud) {
  worker *self = ud;
  worker *dst;
  (void)l;
  if (to >= self->g->n)
    return;
  dst = &self->g->w[to];
  if (ring_put(&dst->q, local, locallen, from, fromlen, pkt, len) == 0)
    ev_async_send(dst->loop, &dst->q_w); /* one wake-up per batch */
}

/* On the owner's loop: feed what other workers handed over. */
static void q_cb(struct ev_loop *loop, ev_async *a, int revents) {
  worker *w = a->data;
  qm_listener *l = tunnel_listener_mut(w->t);
  ring_slot *c;
  int i;
  (void)revents;
  for (i = 0; i < DRAIN_PER_WAKE && (c = ring_peek(&w->q)); i++) {
    if (l)
      qm_listener_inject(l, (struct sockaddr *)&c->local, c->locallen,
                         (struct sockaddr *)&c->from, c->fromlen, c->data,
                         c->len);
    ring_done(&w->q, c);
  }
  if (ring_peek(&w->q))
    ev_async_send(loop, &w->q_w); /* more: after the rest of the loop */
}

/* ---- pause and stop ---- */

static void ctl_cb(struct ev_loop *loop, ev_async *a, int revents) {
  worker *w = a->data;
  workers *g = w->g;
  (void)revents;
  pthread_mutex_lock(&g->mu);
  if (g->pause_req) {
    g->paused++;
    pthread_cond_broadcast(&g->cv);
    while (g->pause_req && !g->stop_req)
      pthread_cond_wait(&g->cv, &g->mu);
    g->paused--;
    pthread_cond_broadcast(&g->cv);
  }
  if (g->stop_req)
    ev_break(loop, EVBREAK_ALL);
  pthread_mutex_unlock(&g->mu);
}

void workers_pause(workers *g) {
  unsigned i;
  if (!g || g->n < 2)
    return;
  pthread_mutex_lock(&g->mu);
  g->pause_req = 1;
  for (i = 0; i < g->n; i++)
    ev_async_send(g->w[i].loop, &g->w[i].ctl_w);
  while (g->paused < g->n)
    pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

void workers_resume(workers *g) {
  if (!g || g->n < 2)
    return;
  pthread_mutex_lock(&g->mu);
  g->pause_req = 0;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  char name[16];
  /* /proc/PID/task/TID/comm: bench/load.py finds each worker's CPU there */
  snprintf(name, sizeof(name), "quicmux-w%u", w->idx);
  pthread_setname_np(pthread_self(), name);
  ev_run(w->loop, 0);
  return NULL;
}

/* ---- making them ---- */

static int port_of(const struct sockaddr_storage *ss) {
  return ss->ss_family == AF_INET6
             ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
             : ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

int workers_new(workers **out, struct ev_loop *loop, tunnel_cfg *c,
                const qm_settings *s, char *err, size_t errlen) {
  workers *g = calloc(1, sizeof(*g));
  unsigned n = c->workers ? c->workers : 1, i;
  struct sockaddr_storage addr = c->listen_addr;
  qm_settings ws = *s;
  const char *steering = NULL;

  if (!g) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  g->n = n;
  g->server = c->role == MODE_SERVER;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  g->w = calloc(n, sizeof(*g->w));
  if (!g->w || (n > 1 && !g->server && qm_caps_new(&g->caps) != 0)) {
    snprintf(err, errlen, "out of memory");
    workers_free(g);
    return -1;
  }
  if (n > 1 && g->server)
    ws.worker_count = n;
  if (g->caps)
    ws.caps = g->caps;
  for (i = 0; i < n; i++) {
    worker *w = &g->w[i];
    int rv;
    w->g = g;
    w->idx = i;
    if (n == 1) {
      w->loop = loop;
    } else {
      w->loop = ev_loop_new(EVFLAG_AUTO);
      w->own_loop = 1;
      if (!w->loop || ring_init(&w->q, RING_SLOTS) != 0) {
        snprintf(err, errlen, "worker %u: no event loop or memory", i);
        workers_free(g);
        return -1;
      }
      ev_async_init(&w->q_w, q_cb);
      w->q_w.data = w;
      ev_async_start(w->loop, &w->q_w);
      ev_async_init(&w->ctl_w, ctl_cb);
      w->ctl_w.data = w;
      ev_async_start(w->loop, &w->ctl_w);
    }
    ws.worker_id = g->server && n > 1 ? i : 0;
    if (c->role == MODE_CLIENT) {
      rv = tunnel_client_new(&w->t, w->loop, (struct sockaddr *)&addr,
                             c->listen_len, c->remote_host, c->remote_port,
                             c->remote_port_hi, &ws, err, errlen);
      /* several servers: the dialer's set (one stays a plain qm_dial) */
      if (rv == 0 && c->nservers > 1 &&
          (rv = tunnel_client_set_servers(w->t, c->servers, c->nservers)) !=
              0) {
        snprintf(err, errlen, "servers: %s", qm_strerror(rv));
        tunnel_free(w->t);
        w->t = NULL;
      }
    } else
      rv = tunnel_server_new(&w->t, w->loop, (struct sockaddr *)&addr,
                             c->listen_len, c->listen_ports,
                             (struct sockaddr *)&c->remote_addr, c->remote_len,
                             &ws, err, errlen);
    if (rv != 0) {
      if (n > 1) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l, " (worker %u)", i);
      }
      workers_free(g);
      return -1;
    }
    if (c->tag)
      tunnel_set_tag(w->t, c->tag);
    if (c->udp && tunnel_enable_udp(w->t, &c->fs, err, errlen) != 0) {
      workers_free(g);
      return -1;
    }
    /* port 0: every worker on the port the first one got */
    if (i == 0 && port_of(&addr) == 0) {
      struct sockaddr_storage got;
      socklen_t gl;
      if (tunnel_local_addr(w->t, &got, &gl) == 0)
        set_port(&addr, port_of(&got));
    }
    if (n > 1 && g->server)
      qm_listener_set_handoff(tunnel_listener_mut(w->t), on_handoff, w);
  }
  if (n > 1 && g->server) {
    qm_listener *ls[QM_MAX_WORKERS];
    for (i = 0; i < n; i++)
      ls[i] = tunnel_listener_mut(g->w[i].t);
    /* With a key the kernel cannot read the id: hand-off only. */
    steering = s->security == QM_SEC_NONE && qm_listener_steer(ls, n) == 0
                   ? "ebpf"
                   : "handoff";
    app_logm(QM_LOG_INFO, "workers", "%s: %u workers, %s",
             c->tag ? c->tag : "server", n,
             !strcmp(steering, "ebpf")
                 ? "the kernel steers packets by connection id (eBPF)"
                 : "workers hand datagrams of other workers' sessions over");
  }
  g->steering = steering;
  for (i = 0; i < n; i++)
    tunnel_set_worker(g->w[i].t, i, n, NULL, steering);
  *out = g;
  return 0;
}

int workers_start(workers *g, char *err, size_t errlen) {
  sigset_t all, old;
  unsigned i;
  if (g->n < 2)
    return 0;
  /* Signals go to the main thread's loop only. */
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  for (i = 0; i < g->n; i++) {
    worker *w = &g->w[i];
    int rv = pthread_create(&w->th, NULL, worker_main, w);
    if (rv != 0) {
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      snprintf(err, errlen, "worker %u: %s", i, strerror(rv));
      return -1;
    }
    w->started = 1;
    {
      clockid_t clk;
      if (pthread_getcpuclockid(w->th, &clk) == 0)
        tunnel_set_worker(w->t, i, g->n, &clk, g->steering);
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return 0;
}

size_t workers_count(const workers *g) {
  return g->n;
}

uint64_t workers_handoff_drops(const workers *g, size_t i) {
  return g->n > 1 ? ring_dropped(&g->w[i].q) : 0;
}

tunnel *workers_tunnel(const workers *g, size_t i) {
  return g->w[i].t;
}

void workers_free(workers *g) {
  unsigned i;
  if (!g)
    return;
  if (g->w) {
    pthread_mutex_lock(&g->mu);
    g->stop_req = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (i = 0; i < g->n; i++)
      if (g->w[i].started)
        ev_async_send(g->w[i].loop, &g->w[i].ctl_w);
    for (i = 0; i < g->n; i++)
      if (g->w[i].started)
        pthread_join(g->w[i].th, NULL);
    /* The threads are gone: everything is this thread's now. */
    for (i = g->n; i-- > 0;) {
      worker *w = &g->w[i];
      tunnel_free(w->t);
      if (w->own_loop && w->loop) {
        ev_async_stop(w->loop, &w->q_w);
        ev_async_stop(w->loop, &w->ctl_w);
        ev_loop_destroy(w->loop);
      }
      ring_clear(&w->q);
    }
  }
  qm_caps_free(g->caps);
  pthread_mutex_destroy(&g->mu);
  pthread_cond_destroy(&g->cv);
  free(g->w);
  free(g);
}
