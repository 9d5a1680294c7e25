/*
 * SIP003 plugin mode, compatible with ss-v2ray-plugin 1.3.1 in mode=quic
 * (SPEC §8): options from the command line (-flag value, Go flag style) and
 * from SS_PLUGIN_OPTIONS (which win), addresses from the SS_* variables.
 * Packets are not wrapped; TLS is always on, verified by the client.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ev.h>

#include "app.h"
#include "opts.h"
#include "sip003.h"

/* One plugin setting: its value and where it came from (for messages). */
typedef struct pval {
  const char *v;
  char where[96];
} pval;

typedef struct plugin_opts {
  int server, check;
  pval mode, host, cert, cert_raw, key, loglevel, fwmark, log_file;
  pval metrics, metrics_public, hide_initial, zero_rtt, zero_rtt_file;
  pval hop_interval;
  pval local_addr, local_port, remote_addr, remote_port;
  pval ports; /* server: P1-P2 */
} plugin_opts;

static void perr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void perr(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "quicmux plugin: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
}

static void pset(pval *p, const char *v, const char *fmt, const char *name) {
  p->v = v;
  snprintf(p->where, sizeof(p->where), fmt, name);
}

int app_sip003_env_present(void) {
  static const char *const vars[] = {"SS_REMOTE_HOST", "SS_REMOTE_PORT",
                                     "SS_LOCAL_HOST", "SS_LOCAL_PORT"};
  size_t i;
  for (i = 0; i < 4; i++) {
    const char *v = getenv(vars[i]);
    if (!v || !*v)
      return 0;
  }
  return 1;
}

/* Apply one option (a -flag or an SS_PLUGIN_OPTIONS key). value is NULL for
 * a switch given without one. 0, 1 (done: help/version printed) or -1. */
static int apply(plugin_opts *po, const opt_def *o, const char *value,
                 const char *fmt, const char *name) {
  pval *p = NULL;
  switch (o->id) {
  case OPT_P_SERVER:
    po->server = 1;
    return 0;
  case OPT_P_MODE:
    p = &po->mode;
    break;
  case OPT_P_HOST:
    p = &po->host;
    break;
  case OPT_P_CERT:
    p = &po->cert;
    break;
  case OPT_P_CERTRAW:
    p = &po->cert_raw;
    break;
  case OPT_P_KEY:
    p = &po->key;
    break;
  case OPT_LOG_LEVEL:
    p = &po->loglevel;
    break;
  case OPT_FWMARK:
    p = &po->fwmark;
    break;
  case OPT_LOG_FILE:
    p = &po->log_file;
    break;
  case OPT_METRICS:
    p = &po->metrics;
    break;
  case OPT_METRICS_PUBLIC:
    p = &po->metrics_public;
    break;
  case OPT_HOP_INTERVAL:
    p = &po->hop_interval;
    break;
  case OPT_HIDE_INITIAL:
    p = &po->hide_initial;
    break;
  case OPT_ZERO_RTT:
    p = &po->zero_rtt;
    break;
  case OPT_ZERO_RTT_FILE:
    p = &po->zero_rtt_file;
    break;
  case OPT_P_LOCALADDR:
    p = &po->local_addr;
    break;
  case OPT_P_LOCALPORT:
    p = &po->local_port;
    break;
  case OPT_P_REMOTEADDR:
    p = &po->remote_addr;
    break;
  case OPT_P_REMOTEPORT:
    p = &po->remote_port;
    break;
  case OPT_P_PORTS:
    p = &po->ports;
    break;
  case OPT_CHECK:
    po->check = 1;
    return 0;
  case OPT_HELP:
    opts_usage(stdout);
    return 1;
  case OPT_VERSION:
    printf("quicmux %s\n", qm_version());
    return 1;
  case OPT_P_MUX: {
    long n;
    char w[96], err[256];
    snprintf(w, sizeof(w), fmt, name);
    if (value && opt_num(o, w, value, &n, err, sizeof(err)) != 0) {
      perr("%s", err);
      return -1;
    }
    return 0; /* websocket only */
  }
  default:
    return 0; /* tls, path, fastOpen, V: accepted, no effect */
  }
  pset(p, value ? value : "1", fmt, name);
  return 0;
}

/* Go flag syntax: -name, --name, -name=value, -name value (not for
 * switches). Returns 0, 1 (help/version printed) or -1. */
static int parse_flags(plugin_opts *po, int argc, char **argv) {
  int i;
  for (i = 0; i < argc; i++) {
    const char *a = argv[i], *eq, *value = NULL;
    char name[64];
    const opt_def *o;
    size_t len;
    int rv;
    if (a[0] != '-' || !a[1]) {
      perr("unexpected argument '%s' (flags are -name value; see --help)", a);
      return -1;
    }
    a += a[1] == '-' ? 2 : 1;
    eq = strchr(a, '=');
    len = eq ? (size_t)(eq - a) : strlen(a);
    if (len == 0 || len >= sizeof(name)) {
      perr("bad flag '%s'", argv[i]);
      return -1;
    }
    memcpy(name, a, len);
    name[len] = '\0';
    o = opt_by_pflag(name);
    if (!o) {
      o = opt_by_flag(name);
      if (o && !(o->modes & MODE_PLUGIN))
        o = NULL;
    }
    if (!o) {
      perr("unknown flag '-%s' (see --help)", name);
      return -1;
    }
    if (o->type == T_SWITCH) {
      if (eq && strcasecmp(eq + 1, "true") && strcmp(eq + 1, "1") &&
          strcasecmp(eq + 1, "t")) {
        if (!strcasecmp(eq + 1, "false") || !strcmp(eq + 1, "0") ||
            !strcasecmp(eq + 1, "f")) {
          if (o->id == OPT_P_SERVER)
            po->server = 0;
          continue;
        }
        perr("-%s '%s': want true or false", name, eq + 1);
        return -1;
      }
    } else if (eq) {
      value = eq + 1;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      perr("flag needs a value: -%s", name);
      return -1;
    }
    rv = apply(po, o, value, "-%s", name);
    if (rv != 0)
      return rv;
  }
  return 0;
}

/* so keeps the strings po points to; the caller frees it. */
static int parse_env(plugin_opts *po, sip003_opts *so_out) {
  const char *env = getenv("SS_PLUGIN_OPTIONS");
  sip003_opts so;
  char err[512];
  size_t i;
  int rv = 0;
  const char *v;

  if (!app_sip003_env_present())
    return 0;
  if (sip003_parse(env ? env : "", &so, err, sizeof(err)) != 0) {
    perr("SS_PLUGIN_OPTIONS: %s", err);
    sip003_free(&so);
    return -1;
  }
  *so_out = so;
  /* Every key must be known; the first value of a key counts. */
  for (i = 0; i < so.n; i++) {
    const opt_def *o = opt_by_pkey(so.v[i].key);
    if (!o || (o->modes & MODE_PLUGIN) == 0) {
      perr(
          "SS_PLUGIN_OPTIONS: unknown key '%s' (known: server, mode, host, "
          "tls, cert, certRaw, key, loglevel, fwmark, metrics, "
          "metricsPublic, hideInitial, 0rtt, 0rttFile, path, mux, fastOpen, "
          "__android_vpn, localAddr, localPort, remoteAddr, remotePort, ports, "
          "hopInterval, stateDir)",
          so.v[i].key);
      return -1;
    }
  }
  /* "server" first: it decides how the address keys map (SPEC §8.1). */
  if (sip003_get(&so, "server"))
    po->server = 1;
  pset(&po->local_addr, getenv("SS_LOCAL_HOST"), "%s", "SS_LOCAL_HOST");
  pset(&po->local_port, getenv("SS_LOCAL_PORT"), "%s", "SS_LOCAL_PORT");
  pset(&po->remote_addr, getenv("SS_REMOTE_HOST"), "%s", "SS_REMOTE_HOST");
  pset(&po->remote_port, getenv("SS_REMOTE_PORT"), "%s", "SS_REMOTE_PORT");
  if ((v = sip003_get(&so, "localAddr")))
    pset(&po->local_addr, v, "%s", "SS_PLUGIN_OPTIONS key 'localAddr'");
  if ((v = sip003_get(&so, "localPort")))
    pset(&po->local_port, v, "%s", "SS_PLUGIN_OPTIONS key 'localPort'");
  if ((v = sip003_get(&so, "remoteAddr")))
    pset(&po->remote_addr, v, "%s", "SS_PLUGIN_OPTIONS key 'remoteAddr'");
  if ((v = sip003_get(&so, "remotePort")))
    pset(&po->remote_port, v, "%s", "SS_PLUGIN_OPTIONS key 'remotePort'");
  if (po->server) {
    /* The server listens where ss-server's clients connect (SS_REMOTE_*)
     * and forwards to ss-server (SS_LOCAL_*). */
    pval t = po->local_addr;
    po->local_addr = po->remote_addr;
    po->remote_addr = t;
    t = po->local_port;
    po->local_port = po->remote_port;
    po->remote_port = t;
  }
  for (i = 0; i < so.n && rv == 0; i++) {
    const opt_def *o = opt_by_pkey(so.v[i].key);
    if (o->id == OPT_P_LOCALADDR || o->id == OPT_P_LOCALPORT ||
        o->id == OPT_P_REMOTEADDR || o->id == OPT_P_REMOTEPORT ||
        sip003_get(&so, so.v[i].key) != so.v[i].value)
      continue;
    rv = apply(po, o, so.v[i].value, "SS_PLUGIN_OPTIONS key '%s'", so.v[i].key);
  }
  return rv;
}

static const char *home_dir(void) {
  const char *h = getenv("HOME");
  struct passwd *pw;
  if (h && *h)
    return h;
  pw = getpwuid(getuid());
  return pw && pw->pw_dir ? pw->pw_dir : ".";
}

static void hostport(char *buf, size_t len, const char *host,
                     const char *port) {
  if (strchr(host, ':') && host[0] != '[')
    snprintf(buf, len, "[%s]:%s", host, port);
  else
    snprintf(buf, len, "%s:%s", host, port);
}

/* ss-local (3.3) passes its servers as "a|b|c" in SS_REMOTE_HOST: each one
 * is a server of the client tunnel, as repeated --server options. */
static int add_servers(tunnel_cfg *c, const char *hosts, const char *port,
                       char *buf, size_t len) {
  char *dup = strdup(hosts), *save = NULL, *tok;
  int rv = 0;
  if (!dup)
    return -1;
  c->nservers = 0;
  for (tok = strtok_r(dup, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
    if (c->nservers >= TUNNEL_MAX_SERVERS) {
      rv = -1;
      break;
    }
    hostport(buf, len, tok, port);
    c->servers[c->nservers++] = tunnel_cfg_strdup(c, buf);
  }
  free(dup);
  if (c->nservers)
    c->remote = c->servers[0];
  return rv;
}

/* certRaw (base64 body) -> a PEM file, lines of 64. */
static const char *cert_raw_file(const char *raw, char *err, size_t errlen) {
  size_t n = strlen(raw), i, o = 0, col = 0;
  char *pem = malloc(n + n / 64 + 80);
  const char *path;
  if (!pem) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  o += (size_t)sprintf(pem, "-----BEGIN CERTIFICATE-----\n");
  for (i = 0; i < n; i++) {
    if (raw[i] == ' ' || raw[i] == '\n' || raw[i] == '\r' || raw[i] == '\t')
      continue;
    pem[o++] = raw[i];
    if (++col == 64) {
      pem[o++] = '\n';
      col = 0;
    }
  }
  if (col)
    pem[o++] = '\n';
  o += (size_t)sprintf(pem + o, "-----END CERTIFICATE-----\n");
  path = app_tmpfile("cert", pem, o, err, errlen);
  free(pem);
  return path;
}

static int port_ok(const pval *p) {
  const opt_def *o = opt_by_id(OPT_P_LOCALPORT);
  char err[256];
  long n;
  if (opt_num(o, p->where, p->v, &n, err, sizeof(err)) != 0) {
    perr("%s", err);
    return 0;
  }
  return 1;
}

/* ports=P1-P2 (server): the listen port becomes that range, which must
 * hold the server port ss-server's clients are given (SS_REMOTE_PORT). The
 * range is checked in full with the listen address (opt_port_range).
 * Client: the server's port range, holding SS_REMOTE_PORT; each session
 * hops between its ports (hopInterval). */
static int ports_ok(const plugin_opts *po, char *range, size_t len) {
  const pval *sp = po->server ? &po->local_port : &po->remote_port;
  unsigned long p1, p2, port = strtoul(sp->v, NULL, 10);
  char *end;
  const char *v = po->ports.v;
  p1 = strtoul(v, &end, 10);
  if (end == v || *end != '-' || !end[1]) {
    perr("%s '%s': want P1-P2, e.g. 20000-20099", po->ports.where, v);
    return 0;
  }
  p2 = strtoul(end + 1, &end, 10);
  if (*end) {
    perr("%s '%s': want P1-P2, e.g. 20000-20099", po->ports.where, v);
    return 0;
  }
  if (port < p1 || port > p2) {
    perr("%s '%s': does not include the server port %lu (%s)", po->ports.where,
         v, port, sp->where);
    return 0;
  }
  snprintf(range, len, "%lu-%lu", p1, p2);
  return 1;
}

static int build(plugin_opts *po, tunnel_cfg **out, size_t *nout) {
  char err[512], lbuf[300], rbuf[300], *addrs = NULL, *save = NULL, *tok;
  char range[64];
  const char *cert = po->cert.v && *po->cert.v ? po->cert.v : NULL;
  const char *cert_where = po->cert.where, *key = po->key.v;
  const char *host = po->host.v ? po->host.v : "cloudfront.com";
  static char defcert[1024], defkey[1024];
  tunnel_cfg *cfgs = NULL;
  size_t n = 0;
  long mark = 0;
  int hide = 0;

  if (po->mode.v && strcmp(po->mode.v, "quic")) {
    perr("%s '%s': not supported; want quic (quicmux implements only "
         "ss-v2ray-plugin's quic mode, not websocket)",
         po->mode.where, po->mode.v);
    return -1;
  }
  if (!*host) {
    perr("%s: empty host name", po->host.where);
    return -1;
  }
  if (po->fwmark.v) {
    char w[128];
    snprintf(w, sizeof(w), "%s", po->fwmark.where);
    if (opt_num(opt_by_id(OPT_FWMARK), w, po->fwmark.v, &mark, err,
                sizeof(err)) != 0) {
      perr("%s", err);
      return -1;
    }
  }
  if (!port_ok(&po->local_port) || !port_ok(&po->remote_port))
    return -1;
  if (po->ports.v && !ports_ok(po, range, sizeof(range)))
    return -1;
  if (po->hide_initial.v) {
    const char *v = po->hide_initial.v;
    if (!strcmp(v, "1") || !strcasecmp(v, "true"))
      hide = 1;
    else if (strcmp(v, "0") && strcasecmp(v, "false")) {
      perr("%s '%s': want true or false", po->hide_initial.where, v);
      return -1;
    }
  }
  if (!cert && po->cert_raw.v && *po->cert_raw.v) {
    cert = cert_raw_file(po->cert_raw.v, err, sizeof(err));
    cert_where = po->cert_raw.where;
    if (!cert) {
      perr("%s: %s", po->cert_raw.where, err);
      return -1;
    }
  }
  if (po->server) {
    if (!cert) {
      snprintf(defcert, sizeof(defcert), "%s/.acme.sh/%s/fullchain.cer",
               home_dir(), host);
      cert = defcert;
      cert_where = "default certificate (no cert given)";
    }
    if (!key || !*key) {
      snprintf(defkey, sizeof(defkey), "%s/.acme.sh/%s/%s.key", home_dir(),
               host, host);
      key = defkey;
      snprintf(po->key.where, sizeof(po->key.where),
               "default key (no key given)");
    }
    if (access(cert, R_OK) != 0) {
      perr("%s '%s': %s (give cert=FILE and key=FILE)", cert_where, cert,
           strerror(errno));
      return -1;
    }
    if (access(key, R_OK) != 0) {
      perr("%s '%s': %s (give key=FILE)", po->key.where, key, strerror(errno));
      return -1;
    }
    if (tls_check_pair(cert, key, err, sizeof(err)) != 0) {
      perr("certificate '%s' with key '%s': %s", cert, key, err);
      return -1;
    }
  } else if (cert) {
    if (access(cert, R_OK) != 0) {
      perr("%s '%s': %s", cert_where, cert, strerror(errno));
      return -1;
    }
    if (tls_check_ca(cert, err, sizeof(err)) != 0) {
      perr("%s '%s': %s", cert_where, cert, err);
      return -1;
    }
  }

  if (!*po->local_addr.v || !*po->remote_addr.v) {
    perr("%s: empty address",
         !*po->local_addr.v ? po->local_addr.where : po->remote_addr.where);
    return -1;
  }
  addrs = strdup(po->local_addr.v);
  if (!addrs)
    return -1;
  /* Several listen addresses (server): "a|b|c". */
  for (tok = strtok_r(addrs, po->server ? "|" : "", &save); tok;
       tok = strtok_r(NULL, po->server ? "|" : "", &save)) {
    tunnel_cfg *c, *v = realloc(cfgs, (n + 1) * sizeof(*v));
    if (!v)
      break;
    cfgs = v;
    c = &cfgs[n++];
    tunnel_cfg_init(c, po->server ? MODE_SERVER : MODE_CLIENT, STYLE_PLUGIN,
                    NULL);
    hostport(lbuf, sizeof(lbuf), tok,
             po->ports.v && po->server ? range : po->local_port.v);
    hostport(rbuf, sizeof(rbuf), po->remote_addr.v,
             po->ports.v && !po->server ? range : po->remote_port.v);
    c->listen = tunnel_cfg_strdup(c, lbuf);
    c->remote = tunnel_cfg_strdup(c, rbuf);
    if (!po->server && add_servers(c, po->remote_addr.v,
                                   po->ports.v ? range : po->remote_port.v,
                                   rbuf, sizeof(rbuf)) != 0) {
      perr("%s '%s': more than %d servers", po->remote_addr.where,
           po->remote_addr.v, TUNNEL_MAX_SERVERS);
      free(addrs);
      *out = cfgs;
      *nout = n;
      return -1;
    }
    c->where[OPT_LISTEN - OPT__FIRST] = tunnel_cfg_strdup(
        c, po->ports.v && po->server
               ? "SS_REMOTE_HOST with plugin option 'ports' (listen)"
           : po->server ? "SS_REMOTE_HOST/SS_REMOTE_PORT (listen)"
                        : "SS_LOCAL_HOST/SS_LOCAL_PORT (listen)");
    c->where[(po->server ? OPT_TARGET : OPT_SERVER) - OPT__FIRST] =
        tunnel_cfg_strdup(c, po->server ? "SS_LOCAL_HOST/SS_LOCAL_PORT"
                             : po->ports.v
                                 ? "SS_REMOTE_HOST with plugin option 'ports'"
                                 : "SS_REMOTE_HOST/SS_REMOTE_PORT");
    c->tag =
        tunnel_cfg_strdup(c, po->server ? "plugin-server" : "plugin-client");
    /* ss-v2ray-plugin's quic mode: no wrapping, TLS on, verified. */
    c->s.security = QM_SEC_NONE;
    c->s.header = QM_HDR_NONE;
    c->s.server_name = tunnel_cfg_strdup(c, host);
    c->s.insecure = 0;
    c->s.fwmark = (int)mark;
    c->s.hide_initial = hide && !po->server; /* a client's option */
    if (po->zero_rtt.v && strcmp(po->zero_rtt.v, "0") &&
        strcasecmp(po->zero_rtt.v, "false")) {
      c->s.zero_rtt = 1;
      c->where[OPT_ZERO_RTT - OPT__FIRST] =
          tunnel_cfg_strdup(c, po->zero_rtt.where);
    }
    if (po->zero_rtt_file.v) {
      if (po->server || !*po->zero_rtt_file.v) {
        perr("%s: %s", po->zero_rtt_file.where,
             po->server ? "client only" : "empty file name");
        free(addrs);
        *out = cfgs;
        *nout = n;
        return -1;
      }
      c->s.zero_rtt_file = tunnel_cfg_strdup(c, po->zero_rtt_file.v);
      c->where[OPT_ZERO_RTT_FILE - OPT__FIRST] =
          tunnel_cfg_strdup(c, po->zero_rtt_file.where);
    }
    if (po->server) {
      c->s.cert_file = tunnel_cfg_strdup(c, cert);
      c->s.key_file = tunnel_cfg_strdup(c, key);
    } else if (cert) {
      c->s.ca_file = tunnel_cfg_strdup(c, cert);
    }
    if ((po->hop_interval.v && !po->server &&
         tunnel_cfg_set(c, opt_by_id(OPT_HOP_INTERVAL), po->hop_interval.where,
                        po->hop_interval.v, err, sizeof(err)) != 0) ||
        tunnel_cfg_check(c, err, sizeof(err)) != 0) {
      perr("%s", err);
      free(addrs);
      *out = cfgs;
      *nout = n;
      return -1;
    }
  }
  free(addrs);
  *out = cfgs;
  *nout = n;
  return n ? 0 : -1;
}

int app_plugin_main(int argc, char **argv) {
  plugin_opts po;
  sip003_opts so = {NULL, 0};
  tunnel_cfg *cfgs = NULL;
  size_t n = 0, i;
  qm_log_level lvl = QM_LOG_WARNING;
  app_metrics metrics = {0};
  struct ev_loop *loop;
  char err[512];
  int rv;

  memset(&po, 0, sizeof(po));
  pset(&po.local_addr, "127.0.0.1", "%s", "-localAddr");
  pset(&po.local_port, "1984", "%s", "-localPort");
  pset(&po.remote_addr, "127.0.0.1", "%s", "-remoteAddr");
  pset(&po.remote_port, "1080", "%s", "-remotePort");
  pset(&po.host, "cloudfront.com", "%s", "-host");
  pset(&po.key, NULL, "%s", "-key");
  rv = parse_flags(&po, argc, argv);
  if (rv == 0)
    rv = parse_env(&po, &so);
  if (rv != 0) {
    sip003_free(&so);
    return rv > 0 ? EXIT_OK : EXIT_USAGE;
  }
  if (po.loglevel.v && *po.loglevel.v &&
      app_log_level_parse(po.loglevel.v, &lvl) != 0) {
    perr("%s '%s': want debug, info, warning, error or none", po.loglevel.where,
         po.loglevel.v);
    rv = EXIT_USAGE;
    goto done;
  }
  if (build(&po, &cfgs, &n) != 0) {
    rv = EXIT_USAGE;
    goto done;
  }
  metrics.listen = po.metrics.v;
  metrics.public_ok = po.metrics_public.v && strcmp(po.metrics_public.v, "0") &&
                      strcasecmp(po.metrics_public.v, "false");
  if (app_metrics_check(&metrics, po.metrics.where,
                        po.metrics.where[0] == '-'
                            ? "-metricsPublic"
                            : "plugin option 'metricsPublic'",
                        err, sizeof(err)) != 0) {
    perr("%s", err);
    rv = EXIT_USAGE;
    goto done;
  }
  if (po.check) {
    printf("quicmux plugin: options OK (%s, %zu tunnel%s)\n",
           po.server ? "server" : "client", n, n == 1 ? "" : "s");
    rv = EXIT_OK;
    goto done;
  }
  if (po.log_file.v && app_log_open(po.log_file.v, err, sizeof(err)) != 0) {
    perr("%s %s", po.log_file.where, err);
    rv = EXIT_USAGE;
    goto done;
  }
  app_log_setup(lvl);
  signal(SIGPIPE, SIG_IGN);
  loop = ev_default_loop(EVFLAG_AUTO);
  rv = app_run(loop, cfgs, n, &metrics);
  ev_loop_destroy(loop);
  app_log_close();
done:
  for (i = 0; i < n; i++)
    tunnel_cfg_free(&cfgs[i]);
  free(cfgs);
  sip003_free(&so);
  return rv;
}
