/*
 * echo_server — a minimal program embedding libquicmux as a server.
 *
 * It accepts v2ray QUIC sessions on a UDP address and echoes every stream
 * back to its sender byte for byte; when the client finishes its side of a
 * stream (FIN), the server finishes its side too. Everything runs on one
 * libev loop owned by this program: the library only adds watchers to it and
 * calls back on it, so there are no threads and no locks.
 *
 *   echo_server [-v] [-s SECURITY] [-k KEY] [-H HEADER] [HOST:PORT]
 *
 * HOST:PORT defaults to 127.0.0.1:0 (a free port); the bound address is
 * printed as "listening on HOST:PORT". SIGINT or SIGTERM stops the server,
 * which prints a summary and exits 0. -s/-k/-H must match the client's
 * (v2ray's quicSettings security, key and header).
 */
#define _POSIX_C_SOURCE 200809L
#include <ev.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <quicmux/quicmux.h>

typedef struct server {
  uint64_t streams, failed, bytes;
} server;

/* Per-stream state. The echo needs no buffer of its own: bytes we cannot
 * send yet simply stay unconsumed inside the stream. */
typedef struct echo_stream {
  server *srv;
  uint64_t bytes;
  int finished; /* got the client's FIN and echoed everything before it */
} echo_stream;

/* ---- stream callbacks ---- */

static size_t on_recv(qm_stream *s, const uint8_t *data, size_t len, void *ud) {
  echo_stream *es = ud;
  ssize_t n = qm_stream_write(s, data, len); /* copies into the send buffer */
  if (n < 0) {
    /* Our send side is gone: we cannot echo, so abort the stream. Consume
     * the bytes; on_close follows. */
    qm_stream_reset(s, 0);
    return len;
  }
  es->bytes += (uint64_t)n;
  /* Backpressure: a short write means the send buffer is full. Consume only
   * what was written; the library keeps the rest and offers it again after
   * qm_stream_resume_recv(). Unconsumed bytes give no flow-control credit
   * back, so a fast client is slowed down instead of filling our memory. */
  return (size_t)n;
}

/* Send buffer space came back (after a short write): offer the bytes we left
 * unconsumed to on_recv again. */
static void on_send_ready(qm_stream *s, void *ud) {
  (void)ud;
  qm_stream_resume_recv(s);
}

/* The client finished sending, and every byte was consumed, i.e. written to
 * our send buffer: finish our side after those bytes. */
static void on_recv_fin(qm_stream *s, void *ud) {
  echo_stream *es = ud;
  es->finished = 1;
  qm_stream_shutdown_write(s);
}

/* Final callback: the library frees the stream right after it. */
static void on_close(qm_stream *s, int err, void *ud) {
  echo_stream *es = ud;
  (void)s;
  es->srv->streams++;
  es->srv->bytes += es->bytes;
  /* err 0: both directions finished cleanly. QM_ECLOSED after `finished`
   * only means the client closed its session before acknowledging our FIN
   * (it exits as soon as it has read everything): the echo was complete. */
  if (err != 0 && !(err == QM_ECLOSED && es->finished)) {
    es->srv->failed++;
    fprintf(stderr, "echo_server: stream closed: %s\n", qm_strerror(err));
  }
  free(es);
}

static const qm_stream_cbs echo_cbs = {
    .on_open = NULL, /* server streams arrive already open */
    .on_recv = on_recv,
    .on_recv_fin = on_recv_fin,
    .on_send_ready = on_send_ready,
    .on_close = on_close,
};

/* A client opened a stream: attach our callbacks and state to it. */
static void on_stream(qm_listener *l, qm_stream *s, void *ud) {
  echo_stream *es = calloc(1, sizeof(*es));
  (void)l;
  if (!es) {
    qm_stream_reset(s, 0);
    return;
  }
  es->srv = ud;
  qm_stream_set_callbacks(s, &echo_cbs, es);
}

/* ---- plumbing ---- */

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(loop, EVBREAK_ALL);
}

/* The library never prints; it hands log lines to this callback. */
static void on_log(qm_log_level level, const char *module, const char *msg,
                   void *ud) {
  static const char *const names[] = {"debug", "info", "warning", "error"};
  (void)ud;
  fprintf(stderr, "[%s] %s: %s\n", level < 4 ? names[level] : "?", module, msg);
}

static int usage(void) {
  fprintf(stderr, "usage: echo_server [-v] [-s SECURITY] [-k KEY] "
                  "[-H HEADER] [HOST:PORT]\n");
  return 2;
}

int main(int argc, char **argv) {
  struct ev_loop *loop = ev_default_loop(0);
  const char *listen_at = "127.0.0.1:0";
  char host[256], err[256], ahost[64], aport[16];
  uint16_t port;
  struct addrinfo hints, *ai = NULL;
  struct sockaddr_storage bound;
  socklen_t boundlen = sizeof(bound);
  qm_settings settings;
  qm_listener *listener = NULL;
  server srv = {0};
  ev_signal sigint, sigterm;
  int opt, rv;

  /* v2ray's defaults: security none, header none, a self-signed certificate
   * (set cert_file/key_file for a real one). */
  qm_settings_default(&settings);
  while ((opt = getopt(argc, argv, "vs:k:H:")) != -1) {
    switch (opt) {
    case 'v':
      qm_set_log(on_log, QM_LOG_DEBUG, NULL);
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
  if (!loop) {
    fprintf(stderr, "echo_server: cannot create the event loop\n");
    return 1;
  }

  /* "HOST:PORT" or "[V6]:PORT" -> a socket address to listen on. */
  if (qm_split_hostport(listen_at, host, sizeof(host), &port, err,
                        sizeof(err)) != 0) {
    fprintf(stderr, "echo_server: %s\n", err);
    return 2;
  }
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(aport, sizeof(aport), "%u", (unsigned)port);
  if (getaddrinfo(host, aport, &hints, &ai) != 0) {
    fprintf(stderr, "echo_server: cannot resolve %s\n", host);
    return 2;
  }

  rv = qm_listener_new(&listener, loop, ai->ai_addr, ai->ai_addrlen, &settings,
                       on_stream, &srv);
  freeaddrinfo(ai);
  if (rv != 0) {
    fprintf(stderr, "echo_server: cannot listen on %s: %s\n", listen_at,
            qm_strerror(rv));
    return 1;
  }

  /* Print where we listen (the port is the kernel's choice for port 0). */
  qm_listener_get_addr(listener, &bound, &boundlen);
  getnameinfo((struct sockaddr *)&bound, boundlen, ahost, sizeof(ahost), aport,
              sizeof(aport), NI_NUMERICHOST | NI_NUMERICSERV);
  printf(bound.ss_family == AF_INET6 ? "listening on [%s]:%s\n"
                                     : "listening on %s:%s\n",
         ahost, aport);
  fflush(stdout);

  ev_signal_init(&sigint, on_signal, SIGINT);
  ev_signal_init(&sigterm, on_signal, SIGTERM);
  ev_signal_start(loop, &sigint);
  ev_signal_start(loop, &sigterm);

  ev_run(loop, 0); /* until SIGINT/SIGTERM */

  /* Closes every session; open streams get on_close(QM_ECLOSED). */
  qm_listener_free(listener);
  printf("echo_server: %llu streams echoed (%llu failed), %llu bytes\n",
         (unsigned long long)srv.streams, (unsigned long long)srv.failed,
         (unsigned long long)srv.bytes);
  ev_signal_stop(loop, &sigint);
  ev_signal_stop(loop, &sigterm);
  ev_loop_destroy(loop);
  return 0;
}
