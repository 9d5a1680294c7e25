/*
 * echo_workers — the echo server of echo_server.c on N threads.
 *
 * libquicmux is single-threaded per object: a listener lives on one libev
 * loop and is touched only from that loop's thread. To use N cores, run N
 * loops, each on its own thread with its own listener on the same address
 * ("workers"): every listener binds its own SO_REUSEPORT socket, and the
 * kernel spreads client sessions over them by their 4-tuple. The settings
 * tell each listener it is worker i of N, so the connection ids it issues
 * name it. When a client's address changes (a NAT re-mapped its port), its
 * packets may reach another worker: that listener calls our handoff
 * callback with the (unwrapped) datagram, we queue it to the owner's thread
 * and wake its loop, and the owner feeds it in with qm_listener_inject.
 *
 *   echo_workers [-n WORKERS] [-s SECURITY] [-k KEY] [-H HEADER] [HOST:PORT]
 *
 * Prints "listening on HOST:PORT" (one port for all workers); SIGINT or
 * SIGTERM stops every worker and prints how many streams each one echoed.
 * The queue here is a short list under a mutex, to keep the example small;
 * the quicmux program uses a lock-free ring (apps/quicmux/workers.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <ev.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <quicmux/quicmux.h>

#define MAX_WORKERS 16

/* A datagram on its way to its owner. */
typedef struct pkt {
  struct pkt *next;
  struct sockaddr_storage local, from;
  socklen_t locallen, fromlen;
  size_t len;
  uint8_t data[];
} pkt;

typedef struct worker {
  unsigned idx;
  struct ev_loop *loop;
  pthread_t th;
  qm_listener *listener;
  ev_async wake; /* datagrams queued, or stop */
  pthread_mutex_t mu;
  pkt *head, **tail; /* handed over by other workers */
  int stop;
  uint64_t streams; /* only this worker's thread writes it */
} worker;

static worker workers[MAX_WORKERS];
static unsigned nworkers = 2;

/* ---- the echo, as in echo_server.c (backpressure through the stream) ---- */

static size_t on_recv(qm_stream *s, const uint8_t *data, size_t len, void *ud) {
  ssize_t n = qm_stream_write(s, data, len);
  (void)ud;
  if (n < 0) {
    qm_stream_reset(s, 0);
    return len;
  }
  return (size_t)n; /* the rest is offered again after on_send_ready */
}
static void on_send_ready(qm_stream *s, void *ud) {
  (void)ud;
  qm_stream_resume_recv(s);
}
static void on_recv_fin(qm_stream *s, void *ud) {
  (void)ud;
  qm_stream_shutdown_write(s);
}
static void on_close(qm_stream *s, int err, void *ud) {
  worker *w = ud;
  (void)s;
  (void)err;
  w->streams++;
}
static const qm_stream_cbs echo_cbs = {NULL, on_recv, on_recv_fin,
                                       on_send_ready, on_close};

static void on_stream(qm_listener *l, qm_stream *s, void *ud) {
  (void)l;
  qm_stream_set_callbacks(s, &echo_cbs, ud); /* ud: this worker */
}

/* ---- workers ---- */

/* Called on worker `from`'s thread: the datagram is worker `to`'s. */
static void on_handoff(qm_listener *l, uint32_t to,
                       const struct sockaddr *local, socklen_t locallen,
                       const struct sockaddr *src, socklen_t srclen,
                       const uint8_t *data, size_t len, void *ud) {
  worker *dst;
  pkt *p;
  (void)l;
  (void)ud;
  if (to >= nworkers || !(p = malloc(sizeof(*p) + len)))
    return; /* dropped: QUIC retransmits */
  dst = &workers[to];
  p->next = NULL;
  memcpy(&p->local, local, locallen);
  memcpy(&p->from, src, srclen);
  p->locallen = locallen;
  p->fromlen = srclen;
  p->len = len;
  memcpy(p->data, data, len);
  pthread_mutex_lock(&dst->mu);
  *dst->tail = p;
  dst->tail = &p->next;
  pthread_mutex_unlock(&dst->mu);
  ev_async_send(dst->loop, &dst->wake); /* thread-safe */
}

/* On the owner's thread: inject what others handed over, or stop. */
static void on_wake(struct ev_loop *loop, ev_async *a, int revents) {
  worker *w = a->data;
  pkt *p;
  (void)revents;
  pthread_mutex_lock(&w->mu);
  p = w->head;
  w->head = NULL;
  w->tail = &w->head;
  pthread_mutex_unlock(&w->mu);
  while (p) {
    pkt *next = p->next;
    qm_listener_inject(w->listener, (struct sockaddr *)&p->local, p->locallen,
                       (struct sockaddr *)&p->from, p->fromlen, p->data,
                       p->len);
    free(p);
    p = next;
  }
  if (__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE))
    ev_break(loop, EVBREAK_ALL);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  ev_run(w->loop, 0);
  return NULL;
}

static int usage(void) {
  fprintf(stderr, "usage: echo_workers [-n WORKERS] [-s SECURITY] [-k KEY] "
                  "[-H HEADER] [HOST:PORT]\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *listen_at = "127.0.0.1:0";
  char host[256], err[256], aport[16];
  uint16_t port;
  struct addrinfo hints, *ai = NULL;
  struct sockaddr_storage addr;
  socklen_t addrlen;
  qm_settings settings;
  qm_listener *ls[MAX_WORKERS];
  sigset_t sigs;
  unsigned i;
  int opt, sig;

  qm_settings_default(&settings);
  while ((opt = getopt(argc, argv, "n:s:k:H:")) != -1) {
    switch (opt) {
    case 'n':
      nworkers = (unsigned)atoi(optarg);
      if (nworkers < 1 || nworkers > MAX_WORKERS)
        return usage();
      break;
    case 's':
      if (qm_security_parse(optarg, &settings.security) != 0)
        return usage();
      break;
    case 'k':
      settings.key = optarg;
      break;
    case 'H':
      if (qm_header_parse(optarg, &settings.header) != 0)
        return usage();
      break;
    default:
      return usage();
    }
  }
  if (optind < argc)
    listen_at = argv[optind++];
  if (optind != argc)
    return usage();
  if (qm_split_hostport(listen_at, host, sizeof(host), &port, err,
                        sizeof(err)) != 0) {
    fprintf(stderr, "echo_workers: %s\n", err);
    return 2;
  }
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(aport, sizeof(aport), "%u", (unsigned)port);
  if (getaddrinfo(host, aport, &hints, &ai) != 0) {
    fprintf(stderr, "echo_workers: cannot resolve %s\n", host);
    return 2;
  }
  memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
  addrlen = ai->ai_addrlen;
  freeaddrinfo(ai);

  /* Every worker must derive the same Retry and stateless-reset secrets. */
  {
    static uint8_t secret[32];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(secret, 1, sizeof(secret), f) != sizeof(secret)) {
      fprintf(stderr, "echo_workers: no random secret\n");
      return 1;
    }
    fclose(f);
    settings.static_secret = secret;
    settings.static_secret_len = sizeof(secret);
  }
  settings.worker_count = nworkers;

  /* Make the loops and listeners here, before any thread runs them. */
  for (i = 0; i < nworkers; i++) {
    worker *w = &workers[i];
    int rv;
    w->idx = i;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    pthread_mutex_init(&w->mu, NULL);
    w->tail = &w->head;
    ev_async_init(&w->wake, on_wake);
    w->wake.data = w;
    ev_async_start(w->loop, &w->wake);
    settings.worker_id = i;
    rv = qm_listener_new(&w->listener, w->loop, (struct sockaddr *)&addr,
                         addrlen, &settings, on_stream, w);
    if (rv != 0) {
      fprintf(stderr, "echo_workers: worker %u: %s\n", i, qm_strerror(rv));
      return 1;
    }
    qm_listener_set_handoff(w->listener, on_handoff, w);
    ls[i] = w->listener;
    if (i == 0) /* port 0: the others bind the port the first one got */
      qm_listener_get_addr(w->listener, &addr, &addrlen);
  }
  /* Without a key the kernel can deliver packets to their worker itself. */
  if (nworkers > 1 && qm_listener_steer(ls, nworkers) == 0)
    fprintf(stderr, "echo_workers: the kernel steers by connection id\n");

  getnameinfo((struct sockaddr *)&addr, addrlen, host, sizeof(host), aport,
              sizeof(aport), NI_NUMERICHOST | NI_NUMERICSERV);
  printf(addr.ss_family == AF_INET6 ? "listening on [%s]:%s\n"
                                    : "listening on %s:%s\n",
         host, aport);
  fflush(stdout);

  /* Workers never see SIGINT/SIGTERM: this thread waits for them. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  for (i = 0; i < nworkers; i++)
    pthread_create(&workers[i].th, NULL, worker_main, &workers[i]);
  sigwait(&sigs, &sig);

  for (i = 0; i < nworkers; i++) {
    __atomic_store_n(&workers[i].stop, 1, __ATOMIC_RELEASE);
    ev_async_send(workers[i].loop, &workers[i].wake);
  }
  for (i = 0; i < nworkers; i++) {
    worker *w = &workers[i];
    pthread_join(w->th, NULL);
    qm_listener_free(w->listener); /* its thread is gone: ours now */
    printf("echo_workers: worker %u echoed %llu streams\n", i,
           (unsigned long long)w->streams);
    ev_async_stop(w->loop, &w->wake);
    ev_loop_destroy(w->loop);
    while (w->head) {
      pkt *p = w->head;
      w->head = p->next;
      free(p);
    }
  }
  return 0;
}
