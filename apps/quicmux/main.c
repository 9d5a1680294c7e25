/*
 * quicmux — the program: `client`, `server` and `demo` subcommands.
 * One option table drives parsing, validation and --help.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "app.h"
#include "tunnel.h"

#define EXIT_USAGE 2

enum { MODE_CLIENT = 1, MODE_SERVER = 2, MODE_DEMO = 4, MODE_ALL = 7 };

typedef enum {
  OPT_LISTEN = 256, OPT_SERVER, OPT_TARGET, OPT_SECURITY, OPT_KEY, OPT_HEADER,
  OPT_SNI, OPT_INSECURE, OPT_CA, OPT_ALPN, OPT_TLS_CERT, OPT_TLS_KEY,
  OPT_MAX_STREAMS, OPT_IDLE, OPT_KEEPALIVE, OPT_LOG_LEVEL, OPT_CONNECTIONS,
  OPT_MIB, OPT_HELP, OPT_VERSION,
} opt_id;

typedef struct opt_def {
  const char *name;
  int has_arg;
  opt_id id;
  unsigned modes;
  const char *arg;
  const char *help;
} opt_def;

static const opt_def options[] = {
    {"listen", 1, OPT_LISTEN, MODE_CLIENT | MODE_SERVER, "HOST:PORT",
     "client: TCP address to accept connections on; server: UDP address for "
     "QUIC"},
    {"server", 1, OPT_SERVER, MODE_CLIENT, "HOST:PORT",
     "QUIC server to carry connections to"},
    {"target", 1, OPT_TARGET, MODE_SERVER, "HOST:PORT",
     "TCP address each stream is connected to"},
    {"security", 1, OPT_SECURITY, MODE_ALL, "S",
     "packet encryption: none, aes-128-gcm, chacha20-poly1305 (default none; "
     "demo: aes-128-gcm)"},
    {"key", 1, OPT_KEY, MODE_ALL, "K", "packet encryption key (default \"\")"},
    {"header", 1, OPT_HEADER, MODE_ALL, "H",
     "fake packet header: none, srtp, utp, wechat-video, dtls, wireguard "
     "(default none)"},
    {"sni", 1, OPT_SNI, MODE_CLIENT, "NAME",
     "TLS server name; verifies the certificate for it unless --insecure "
     "(default quic.internal.v2ray.com, unverified)"},
    {"insecure", 0, OPT_INSECURE, MODE_CLIENT, NULL,
     "do not verify the server certificate"},
    {"ca", 1, OPT_CA, MODE_CLIENT, "FILE",
     "PEM file of extra trusted certificates (turns verification on)"},
    {"alpn", 1, OPT_ALPN, MODE_CLIENT | MODE_SERVER, "LIST",
     "TLS ALPN protocols, comma separated (default h2,http/1.1)"},
    {"tls-cert", 1, OPT_TLS_CERT, MODE_SERVER, "FILE",
     "certificate chain (PEM); default: a self-signed one made in memory"},
    {"tls-key", 1, OPT_TLS_KEY, MODE_SERVER, "FILE", "private key (PEM)"},
    {"max-streams", 1, OPT_MAX_STREAMS, MODE_SERVER, "N",
     "concurrent streams per session, 1-65535 (default 32, as v2ray)"},
    {"idle-timeout", 1, OPT_IDLE, MODE_CLIENT | MODE_SERVER, "SEC",
     "session idle timeout, 1-3600 (default 30 client, 45 server)"},
    {"keepalive", 1, OPT_KEEPALIVE, MODE_CLIENT, "SEC",
     "send PINGs after SEC idle seconds, 0-3600 (default 0 = off)"},
    {"log-level", 1, OPT_LOG_LEVEL, MODE_ALL, "L",
     "debug, info, warning, error, none (default warning; demo: info)"},
    {"connections", 1, OPT_CONNECTIONS, MODE_DEMO, "N",
     "demo: concurrent connections, 1-1000 (default 4)"},
    {"mib", 1, OPT_MIB, MODE_DEMO, "M",
     "demo: MiB each connection sends and gets back, 1-4096 (default 16)"},
    {"help", 0, OPT_HELP, MODE_ALL, NULL, "show this help"},
    {"version", 0, OPT_VERSION, MODE_ALL, NULL, "print the version"},
};

static const char *mode_name(unsigned m) {
  return m == MODE_CLIENT ? "client" : m == MODE_SERVER ? "server" : "demo";
}

static void usage(FILE *f) {
  size_t i;
  fprintf(f,
          "quicmux %s: v2ray's QUIC transport, in C\n\n"
          "usage:\n"
          "  quicmux client --listen HOST:PORT --server HOST:PORT [options]\n"
          "  quicmux server --listen HOST:PORT --target HOST:PORT [options]\n"
          "  quicmux demo   [options]   (server + client + echo on loopback)\n"
          "  quicmux --help | --version\n\n"
          "HOST is an IPv4 address, [IPv6] or a host name.\n\noptions:\n",
          qm_version());
  for (i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
    const opt_def *o = &options[i];
    char left[48];
    snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "",
             o->arg ? o->arg : "");
    fprintf(f, "  %-24s %s%s%s%s]\n", left, o->help,
            " [", (o->modes & MODE_CLIENT) ? "client " : "",
            (o->modes & MODE_SERVER) ? ((o->modes & MODE_DEMO) ? "server demo"
                                                               : "server")
                                     : "demo");
  }
  fprintf(f, "\nExit status: 0 on a clean stop (SIGINT/SIGTERM), 1 on a "
             "runtime failure, 2 on bad input.\n");
}

static void die_usage(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "quicmux: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  exit(EXIT_USAGE);
}

/* ---- logging ---- */

static const char *level_names[] = {"debug", "info", "warning", "error",
                                    "none"};

static void log_cb(qm_log_level lvl, const char *module, const char *msg,
                   void *ud) {
  struct timeval tv;
  struct tm tm;
  char ts[32];
  (void)ud;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "%s.%03ldZ %-7s [%s] %s\n", ts, (long)(tv.tv_usec / 1000),
          level_names[lvl], module, msg);
}

void app_log(qm_log_level lvl, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (lvl >= app_log_level)
    log_cb(lvl, "quicmux", msg, NULL);
}

qm_log_level app_log_level = QM_LOG_WARNING;

/* ---- parsing helpers ---- */

static long parse_num(const char *opt, const char *v, long lo, long hi) {
  char *end;
  long n;
  errno = 0;
  n = strtol(v, &end, 10);
  if (!*v || *end || errno || n < lo || n > hi)
    die_usage("--%s '%s': want a whole number from %ld to %ld", opt, v, lo,
              hi);
  return n;
}

static void parse_addr(const char *opt, const char *v, char *host,
                       size_t hostlen, uint16_t *port, int port_zero_ok) {
  char err[256];
  if (qm_split_hostport(v, host, hostlen, port, err, sizeof(err)) != 0)
    die_usage("--%s %s", opt, err);
  if (*port == 0 && !port_zero_ok)
    die_usage("--%s '%s': port must be from 1 to 65535", opt, v);
}

static void check_file(const char *opt, const char *path) {
  if (access(path, R_OK) != 0)
    die_usage("--%s '%s': %s", opt, path, strerror(errno));
}

/* ---- signals ---- */

static tunnel *tunnels[3];
static int stopping;

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)revents;
  app_log(QM_LOG_INFO, "signal %d: stopping", w->signum);
  stopping = 1;
  ev_break(loop, EVBREAK_ALL);
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents) {
  size_t i;
  char line[512];
  (void)loop;
  (void)w;
  (void)revents;
  for (i = 0; i < 3; i++)
    if (tunnels[i]) {
      tunnel_describe(tunnels[i], line, sizeof(line));
      fprintf(stderr, "quicmux stats: %s\n", line);
    }
}

int main(int argc, char **argv) {
  struct option lopts[sizeof(options) / sizeof(options[0]) + 1];
  const char *listen = NULL, *server = NULL, *target = NULL;
  qm_settings s;
  unsigned mode;
  size_t i;
  int c, sni_given = 0, ca_given = 0, insecure = 0, conns = 4, mib = 16;
  int security_given = 0;
  const char *level = NULL;
  struct ev_loop *loop;
  ev_signal sigint_w, sigterm_w, sigusr1_w;
  char err[256];
  int rc = 0;

  qm_settings_default(&s);
  if (argc < 2)
    die_usage("missing subcommand: client, server or demo (see --help)");
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
    printf("quicmux %s (ngtcp2 %s, GnuTLS %s)\n", qm_version(),
           app_ngtcp2_version(), app_gnutls_version());
    return 0;
  }
  if (!strcmp(argv[1], "client"))
    mode = MODE_CLIENT;
  else if (!strcmp(argv[1], "server"))
    mode = MODE_SERVER;
  else if (!strcmp(argv[1], "demo"))
    mode = MODE_DEMO;
  else
    die_usage("unknown subcommand '%s': want client, server or demo",
              argv[1]);

  for (i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
    lopts[i].name = options[i].name;
    lopts[i].has_arg = options[i].has_arg ? required_argument : no_argument;
    lopts[i].flag = NULL;
    lopts[i].val = (int)options[i].id;
  }
  memset(&lopts[i], 0, sizeof(lopts[i]));

  opterr = 0;
  optind = 2;
  while ((c = getopt_long(argc, argv, ":", lopts, NULL)) != -1) {
    const opt_def *o = NULL;
    if (c == '?')
      die_usage("unknown option '%s' (see --help)", argv[optind - 1]);
    if (c == ':')
      die_usage("option '%s' needs a value", argv[optind - 1]);
    for (i = 0; i < sizeof(options) / sizeof(options[0]); i++)
      if ((int)options[i].id == c)
        o = &options[i];
    if (!(o->modes & mode))
      die_usage("--%s does not apply to '%s'", o->name, mode_name(mode));
    switch ((opt_id)c) {
    case OPT_LISTEN: listen = optarg; break;
    case OPT_SERVER: server = optarg; break;
    case OPT_TARGET: target = optarg; break;
    case OPT_SECURITY:
      if (qm_security_parse(optarg, &s.security) != 0)
        die_usage("--security '%s': want none, aes-128-gcm or "
                  "chacha20-poly1305", optarg);
      security_given = 1;
      break;
    case OPT_KEY: s.key = optarg; break;
    case OPT_HEADER:
      if (qm_header_parse(optarg, &s.header) != 0)
        die_usage("--header '%s': want none, srtp, utp, wechat-video, dtls "
                  "or wireguard", optarg);
      break;
    case OPT_SNI:
      if (!*optarg)
        die_usage("--sni: empty name");
      s.server_name = optarg;
      sni_given = 1;
      break;
    case OPT_INSECURE: insecure = 1; break;
    case OPT_CA:
      check_file("ca", optarg);
      s.ca_file = optarg;
      ca_given = 1;
      break;
    case OPT_ALPN: s.alpn = optarg; break;
    case OPT_TLS_CERT: check_file("tls-cert", optarg); s.cert_file = optarg; break;
    case OPT_TLS_KEY: check_file("tls-key", optarg); s.key_file = optarg; break;
    case OPT_MAX_STREAMS:
      s.max_streams_bidi = (uint32_t)parse_num("max-streams", optarg, 1, 65535);
      break;
    case OPT_IDLE:
      s.idle_timeout_ms = 1000ull * (uint64_t)parse_num("idle-timeout", optarg, 1, 3600);
      break;
    case OPT_KEEPALIVE:
      s.keepalive_ms = 1000ull * (uint64_t)parse_num("keepalive", optarg, 0, 3600);
      break;
    case OPT_LOG_LEVEL: level = optarg; break;
    case OPT_CONNECTIONS: conns = (int)parse_num("connections", optarg, 1, 1000); break;
    case OPT_MIB: mib = (int)parse_num("mib", optarg, 1, 4096); break;
    case OPT_HELP: usage(stdout); return 0;
    case OPT_VERSION: printf("quicmux %s\n", qm_version()); return 0;
    }
  }
  if (optind < argc)
    die_usage("unexpected argument '%s' (see --help)", argv[optind]);

  app_log_level = mode == MODE_DEMO ? QM_LOG_INFO : QM_LOG_WARNING;
  if (level) {
    for (i = 0; i < 5; i++)
      if (!strcasecmp(level, level_names[i]))
        break;
    if (i == 5)
      die_usage("--log-level '%s': want debug, info, warning, error or none",
                level);
    app_log_level = (qm_log_level)i;
  }
  qm_set_log(log_cb, app_log_level, NULL);

  if ((s.cert_file != NULL) != (s.key_file != NULL))
    die_usage("--tls-cert and --tls-key go together");
  /* Verification: on when TLS settings are given, unless --insecure. */
  s.insecure = insecure || (!sni_given && !ca_given);

  signal(SIGPIPE, SIG_IGN);
  loop = ev_default_loop(EVFLAG_AUTO);

  if (mode == MODE_DEMO) {
    if (!security_given)
      s.security = QM_SEC_AES_128_GCM;
    return app_demo(loop, &s, conns, mib);
  }

  if (!listen)
    die_usage("missing --listen HOST:PORT");
  if (mode == MODE_CLIENT) {
    char lhost[256], shost[256];
    uint16_t lport, sport;
    struct sockaddr_storage la;
    socklen_t lalen;
    if (!server)
      die_usage("missing --server HOST:PORT");
    parse_addr("listen", listen, lhost, sizeof(lhost), &lport, 1);
    parse_addr("server", server, shost, sizeof(shost), &sport, 0);
    if (tunnel_resolve(lhost, lport, 1, &la, &lalen) != 0)
      die_usage("--listen '%s': cannot resolve '%s'", listen, lhost);
    if (s.insecure && !insecure)
      app_log(QM_LOG_WARNING,
              "the server certificate is not verified (v2ray's default); an "
              "active attacker can read and change the traffic. Give --sni "
              "and/or --ca to verify it");
    if (tunnel_client_new(&tunnels[0], loop, (struct sockaddr *)&la, lalen,
                          shost, sport, &s, err, sizeof(err)) != 0) {
      fprintf(stderr, "quicmux: %s\n", err);
      return 1;
    }
    app_log(QM_LOG_INFO, "client listening on tcp %s, server %s", listen,
            server);
  } else {
    char lhost[256], thost[256];
    uint16_t lport, tport;
    struct sockaddr_storage la, ta;
    socklen_t lalen, talen;
    if (!target)
      die_usage("missing --target HOST:PORT");
    parse_addr("listen", listen, lhost, sizeof(lhost), &lport, 1);
    parse_addr("target", target, thost, sizeof(thost), &tport, 0);
    if (tunnel_resolve(lhost, lport, 1, &la, &lalen) != 0)
      die_usage("--listen '%s': cannot resolve '%s'", listen, lhost);
    if (tunnel_resolve(thost, tport, 0, &ta, &talen) != 0)
      die_usage("--target '%s': cannot resolve '%s'", target, thost);
    if (tunnel_server_new(&tunnels[0], loop, (struct sockaddr *)&la, lalen,
                          (struct sockaddr *)&ta, talen, &s, err,
                          sizeof(err)) != 0) {
      fprintf(stderr, "quicmux: %s\n", err);
      return 1;
    }
    app_log(QM_LOG_INFO, "server listening on udp %s, target %s", listen,
            target);
  }

  ev_signal_init(&sigint_w, on_stop, SIGINT);
  ev_signal_init(&sigterm_w, on_stop, SIGTERM);
  ev_signal_init(&sigusr1_w, on_usr1, SIGUSR1);
  ev_signal_start(loop, &sigint_w);
  ev_signal_start(loop, &sigterm_w);
  ev_signal_start(loop, &sigusr1_w);
  ev_run(loop, 0);
  if (!stopping)
    rc = 1;
  tunnel_free(tunnels[0]);
  tunnels[0] = NULL;
  ev_loop_destroy(loop);
  return rc;
}
