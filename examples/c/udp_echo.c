/*
 * udp_echo — UDP flows (QUIC DATAGRAM frames) with libquicmux, both ends in
 * one program.
 *
 *   udp_echo server [-v] [HOST:PORT]
 *       accept sessions on HOST:PORT (default 127.0.0.1:0; the bound address
 *       is printed as "listening on HOST:PORT") and send every datagram of
 *       every flow back on its flow. SIGINT/SIGTERM stops it.
 *   udp_echo client [-v] [-n N] [-b SIZE] [-t SEC] HOST:PORT
 *       open one flow, send N datagrams of SIZE bytes (default 10 x 1200;
 *       up to 65507), one at a time, and check that each comes back byte
 *       for byte. Datagrams are unreliable: one lost is sent again after
 *       200 ms, at most 20 times. Exits 0 when all came back.
 *
 * Both ends must enable flows (qm_dialer_enable_flows,
 * qm_listener_enable_flows): only then do they advertise datagrams.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <ev.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <quicmux/quicmux.h>

static void log_cb(qm_log_level lvl, const char *mod, const char *msg,
                   void *ud) {
  (void)lvl;
  (void)ud;
  fprintf(stderr, "[%s] %s\n", mod, msg);
}

/* ---- server: echo every datagram on its own flow ---- */

static uint64_t echoed;

static void srv_recv(qm_flow *f, const uint8_t *data, size_t len, void *ud) {
  (void)ud;
  /* Queued, never sent from here: safe inside the callback. A full queue
   * drops it (QM_EAGAIN), as a full UDP socket buffer would. */
  if (qm_flow_send(f, data, len) == 0)
    echoed++;
}

static void srv_close(qm_flow *f, int err, void *ud) {
  (void)ud;
  fprintf(stderr, "udp_echo: flow %llu closed (%s)\n",
          (unsigned long long)qm_flow_id(f), err ? qm_strerror(err) : "ok");
}

static void on_flow(qm_listener *l, qm_flow *f, void *ud) {
  static const qm_flow_cbs cbs = {srv_recv, srv_close};
  (void)l;
  (void)ud;
  qm_flow_set_callbacks(f, &cbs, NULL);
}

static void on_stream(qm_listener *l, qm_stream *s, void *ud) {
  (void)l;
  (void)ud;
  qm_stream_reset(s, 0); /* this example carries datagrams only */
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(loop, EVBREAK_ALL);
}

static int run_server(struct ev_loop *loop, const char *addr) {
  char host[256], ip[INET6_ADDRSTRLEN];
  uint16_t port;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  struct addrinfo *ai = NULL, hints = {0};
  qm_settings s;
  qm_listener *l;
  ev_signal si, st;
  char err[128], pstr[8];

  if (qm_split_hostport(addr, host, sizeof(host), &port, err, sizeof(err))) {
    fprintf(stderr, "udp_echo: %s\n", err);
    return 2;
  }
  snprintf(pstr, sizeof(pstr), "%u", port);
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  if (getaddrinfo(host, pstr, &hints, &ai) != 0) {
    fprintf(stderr, "udp_echo: bad address %s\n", addr);
    return 2;
  }
  qm_settings_default(&s);
  if (qm_listener_new(&l, loop, ai->ai_addr, ai->ai_addrlen, &s, on_stream,
                      NULL) != 0) {
    freeaddrinfo(ai);
    fprintf(stderr, "udp_echo: cannot listen on %s\n", addr);
    return 1;
  }
  freeaddrinfo(ai);
  qm_listener_enable_flows(l, NULL, on_flow, NULL); /* before any session */
  qm_listener_get_addr(l, &ss, &sl);
  if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip,
              sizeof(ip));
  else
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
  printf(ss.ss_family == AF_INET6 ? "listening on [%s]:%u\n"
                                  : "listening on %s:%u\n",
         ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
  fflush(stdout);
  ev_signal_init(&si, on_signal, SIGINT);
  ev_signal_init(&st, on_signal, SIGTERM);
  ev_signal_start(loop, &si);
  ev_signal_start(loop, &st);
  ev_run(loop, 0);
  printf("udp_echo: server echoed %llu datagrams\n",
         (unsigned long long)echoed);
  qm_listener_free(l);
  return 0;
}

/* ---- client: one flow, N datagrams, each checked ---- */

typedef struct client {
  struct ev_loop *loop;
  qm_flow *f;
  uint8_t *buf;
  size_t size;
  int left, tries, rc;
  ev_timer again;
} client;

static void send_one(client *c) {
  c->buf[0] = (uint8_t)c->left; /* tells the datagrams apart */
  if (++c->tries > 20) {
    fprintf(stderr, "udp_echo: no echo after 20 tries\n");
    c->rc = 1;
    ev_break(c->loop, EVBREAK_ALL);
    return;
  }
  qm_flow_send(c->f, c->buf, c->size);
  ev_timer_again(c->loop, &c->again);
}

static void again_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  send_one(w->data);
}

static void cli_recv(qm_flow *f, const uint8_t *data, size_t len, void *ud) {
  client *c = ud;
  (void)f;
  if (len != c->size || memcmp(data, c->buf, len) != 0)
    return; /* a late echo of an earlier datagram */
  c->tries = 0;
  if (--c->left == 0) {
    c->rc = 0;
    ev_break(c->loop, EVBREAK_ALL);
    return;
  }
  send_one(c);
}

static void cli_close(qm_flow *f, int err, void *ud) {
  client *c = ud;
  (void)f;
  fprintf(stderr, "udp_echo: flow closed: %s\n", qm_strerror(err));
  c->f = NULL;
  c->rc = 1;
  ev_break(c->loop, EVBREAK_ALL);
}

static int run_client(struct ev_loop *loop, const char *addr, int n,
                      size_t size) {
  static const qm_flow_cbs cbs = {cli_recv, cli_close};
  char host[256], err[128];
  uint16_t port;
  qm_settings s;
  qm_dialer *d;
  client c = {0};
  size_t i;

  if (qm_split_hostport(addr, host, sizeof(host), &port, err, sizeof(err))) {
    fprintf(stderr, "udp_echo: %s\n", err);
    return 2;
  }
  qm_settings_default(&s);
  if (qm_dialer_new(&d, loop, &s) != 0)
    return 1;
  qm_dialer_enable_flows(d, NULL);
  c.loop = loop;
  c.left = n;
  c.size = size;
  c.rc = 1;
  c.buf = malloc(size ? size : 1);
  for (i = 0; i < size; i++)
    c.buf[i] = (uint8_t)(i * 31 + 7);
  if (qm_dial_flow(d, host, port, &cbs, &c, &c.f) != 0) {
    fprintf(stderr, "udp_echo: cannot open a flow to %s\n", addr);
    qm_dialer_free(d);
    free(c.buf);
    return 1;
  }
  ev_init(&c.again, again_cb);
  c.again.repeat = 0.2;
  c.again.data = &c;
  send_one(&c);
  ev_run(loop, 0);
  ev_timer_stop(loop, &c.again);
  if (c.rc == 0)
    printf("udp_echo: %d datagrams of %zu bytes echoed\n", n, size);
  if (c.f)
    qm_flow_close(c.f);
  qm_dialer_free(d);
  free(c.buf);
  return c.rc;
}

int main(int argc, char **argv) {
  struct ev_loop *loop = ev_default_loop(0);
  int opt, n = 10, server;
  long size = 1200;

  if (argc < 2 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
    fprintf(stderr, "usage: udp_echo server [-v] [HOST:PORT]\n"
                    "       udp_echo client [-v] [-n N] [-b SIZE] HOST:PORT\n");
    return 2;
  }
  server = !strcmp(argv[1], "server");
  argv++;
  argc--;
  while ((opt = getopt(argc, argv, "vn:b:")) != -1) {
    switch (opt) {
    case 'v':
      qm_set_log(log_cb, QM_LOG_DEBUG, NULL);
      break;
    case 'n':
      n = atoi(optarg);
      break;
    case 'b':
      size = atol(optarg);
      break;
    default:
      return 2;
    }
  }
  if (n < 1 || size < 1 || size > QM_FLOW_MAX_DATAGRAM) {
    fprintf(stderr, "udp_echo: -n from 1, -b from 1 to %d\n",
            QM_FLOW_MAX_DATAGRAM);
    return 2;
  }
  if (server)
    return run_server(loop, optind < argc ? argv[optind] : "127.0.0.1:0");
  if (optind >= argc) {
    fprintf(stderr, "udp_echo: client needs HOST:PORT\n");
    return 2;
  }
  return run_client(loop, argv[optind], n, (size_t)size);
}
