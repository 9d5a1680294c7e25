/* Run checked tunnels on one loop until a stop signal. */
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "app.h"
#include "metrics.h"
#include "opts.h"
#include "state.h"
#include "tunnel.h"
#include "tunnel_metrics.h"

static tunnel **running;
static size_t nrunning;
static int stopping;
static int drain_s;
static ev_timer drain_w; /* checks every 100 ms whether all are done */
static ev_tstamp drain_until;
static metrics_server *metrics;

/* GET /metrics: the running tunnels and the endpoint's own counts. */
static int render_metrics(char **body, size_t *len, void *ud) {
  metrics_counts mc;
  (void)ud;
  metrics_server_counts(metrics, &mc);
  return tunnel_metrics_text(running, nrunning, &mc, body, len);
}

static int start_metrics(struct ev_loop *loop, const app_metrics *m) {
  char err[300];
  if (metrics_server_new(&metrics, loop, (const struct sockaddr *)&m->addr,
                         m->addrlen, render_metrics, NULL, err,
                         sizeof(err)) != 0) {
    app_logm(QM_LOG_ERROR, "metrics", "%s: %s", m->listen, err);
    fprintf(stderr, "quicmux: metrics %s: %s\n", m->listen, err);
    return -1;
  }
  app_logm(QM_LOG_INFO, "metrics", "serving http://%s/metrics", m->listen);
  return 0;
}

static uint64_t open_connections(void) {
  uint64_t n = 0;
  size_t i;
  for (i = 0; i < nrunning; i++)
    n += tunnel_open_connections(running[i]);
  return n;
}

static void on_drain(struct ev_loop *loop, ev_timer *w, int revents) {
  uint64_t n = open_connections();
  (void)revents;
  if (n == 0 || ev_now(loop) >= drain_until) {
    if (n)
      app_log(QM_LOG_WARNING, "drain time over: closing %llu open connections",
              (unsigned long long)n);
    ev_timer_stop(loop, w);
    ev_break(loop, EVBREAK_ALL);
  }
}

/* First signal: stop accepting and let open connections finish for up to
 * drain_s seconds; a second signal (or nothing left open) ends it. */
static void on_stop(struct ev_loop *loop, ev_signal *w, int revents) {
  size_t i;
  uint64_t n = open_connections();
  (void)revents;
  if (stopping || drain_s == 0 || n == 0) {
    app_log(QM_LOG_INFO, "signal %d: stopping", w->signum);
    stopping = 1;
    ev_break(loop, EVBREAK_ALL);
    return;
  }
  stopping = 1;
  app_log(QM_LOG_INFO,
          "signal %d: no new connections; %llu open ones get "
          "up to %d s to finish (signal again to stop now)",
          w->signum, (unsigned long long)n, drain_s);
  for (i = 0; i < nrunning; i++)
    tunnel_stop_accepting(running[i]);
  drain_until = ev_now(loop) + drain_s;
  ev_timer_init(&drain_w, on_drain, 0.1, 0.1);
  ev_timer_start(loop, &drain_w);
}

static void stats_line(const char *line, void *ud) {
  (void)ud;
  app_log_always("stats", "%s", line);
}

static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents) {
  size_t i;
  char line[512];
  (void)loop;
  (void)w;
  (void)revents;
  for (i = 0; i < nrunning; i++) {
    tunnel_describe(running[i], line, sizeof(line));
    app_log_always("stats", "%s", line);
    tunnel_describe_sessions(running[i], stats_line, NULL);
  }
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  app_log_reopen();
}

/* A port range takes a UDP socket per port: raise the soft limit on open
 * files towards the hard one (often 1024 soft, far more hard) so that a
 * 1024-port range still leaves room for the TCP connections. */
static void raise_nofile(const tunnel_cfg *cfgs, size_t n) {
  struct rlimit rl;
  rlim_t want = 4096;
  size_t i;
  for (i = 0; i < n; i++)
    want += cfgs[i].listen_ports > 1 ? cfgs[i].listen_ports : 0;
  if (want == 4096 || getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
    return;
  rl.rlim_cur =
      rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
  (void)setrlimit(RLIMIT_NOFILE, &rl);
}

static int start_one(struct ev_loop *loop, tunnel_cfg *c, tunnel **out) {
  char err[512], tagbuf[32];
  const char *tag = c->tag;
  int rv;
  if (!tag) {
    snprintf(tagbuf, sizeof(tagbuf), "%s",
             c->role == MODE_CLIENT ? "client" : "server");
    tag = tagbuf;
  }
  if (c->warn_unverified)
    app_logm(QM_LOG_WARNING, "quicmux",
             "%s: the server certificate is not verified (v2ray's default); "
             "an active attacker can read and change the traffic. %s",
             tag,
             c->style == STYLE_JSON
                 ? "Set streamSettings.security \"tls\" with a serverName to "
                   "verify it"
                 : "Give --sni and/or --ca to verify it");
  if (c->role == MODE_CLIENT && c->s.hide_initial &&
      c->s.security != QM_SEC_NONE)
    app_logm(QM_LOG_INFO, "quicmux",
             "%s: hideInitial has nothing to do: with %s every packet, the "
             "Initial included, is encrypted with the key",
             tag, qm_security_name(c->s.security));
  if (c->role == MODE_CLIENT) {
    rv = tunnel_client_new(out, loop, (struct sockaddr *)&c->listen_addr,
                           c->listen_len, c->remote_host, c->remote_port, &c->s,
                           err, sizeof(err));
    /* several servers: the dialer's set (one stays a plain qm_dial) */
    if (rv == 0 && c->nservers > 1 &&
        (rv = tunnel_client_set_servers(*out, c->servers, c->nservers)) != 0) {
      snprintf(err, sizeof(err), "servers: %s", qm_strerror(rv));
      tunnel_free(*out);
      *out = NULL;
    }
  } else {
    uint8_t secret[STATE_SECRET_LEN];
    char dir[256];
    rv = state_secret(c->state_dir, secret, dir, sizeof(dir), err, sizeof(err));
    if (rv < 0) {
      app_logm(QM_LOG_ERROR, "quicmux", "%s: %s", tag, err);
      fprintf(stderr, "quicmux: %s: %s\n", tag, err);
      return -1;
    }
    if (rv == 0) {
      c->s.static_secret = secret;
      c->s.static_secret_len = sizeof(secret);
    } else {
      app_logm(QM_LOG_WARNING, "quicmux",
               "%s: %s; clients learn of a restart only by silence (give "
               "--state-dir)",
               tag, err);
    }
    rv = tunnel_server_new(out, loop, (struct sockaddr *)&c->listen_addr,
                           c->listen_len, c->listen_ports,
                           (struct sockaddr *)&c->remote_addr, c->remote_len,
                           &c->s, err, sizeof(err));
    c->s.static_secret = NULL; /* the listener derived what it needs */
    memset(secret, 0, sizeof(secret));
  }
  if (rv != 0) {
    app_logm(QM_LOG_ERROR, "quicmux", "%s: %s", tag, err);
    fprintf(stderr, "quicmux: %s: %s\n", tag, err);
    return -1;
  }
  if (c->tag)
    tunnel_set_tag(*out, c->tag);
  if (c->udp && tunnel_enable_udp(*out, &c->fs, err, sizeof(err)) != 0) {
    app_logm(QM_LOG_ERROR, "quicmux", "%s: %s", tag, err);
    fprintf(stderr, "quicmux: %s: %s\n", tag, err);
    tunnel_free(*out);
    *out = NULL;
    return -1;
  }
  tunnel_cfg_describe(c, err, sizeof(err));
  app_logm(QM_LOG_INFO, "quicmux", "%s: %s", tag, err);
  return 0;
}

int app_run(struct ev_loop *loop, tunnel_cfg *cfgs, size_t n,
            const app_metrics *m) {
  ev_signal sigint_w, sigterm_w, sigusr1_w, sighup_w;
  size_t i;
  int rc = EXIT_OK;

  raise_nofile(cfgs, n);
  running = calloc(n ? n : 1, sizeof(*running));
  if (!running) {
    fprintf(stderr, "quicmux: out of memory\n");
    return EXIT_RUNTIME;
  }
  for (i = 0; i < n; i++) {
    if (cfgs[i].drain_s > drain_s)
      drain_s = cfgs[i].drain_s;
    if (start_one(loop, &cfgs[i], &running[i]) != 0) {
      rc = EXIT_RUNTIME;
      break;
    }
    nrunning++;
  }
  if (rc == EXIT_OK && m && m->listen && start_metrics(loop, m) != 0)
    rc = EXIT_RUNTIME;
  if (rc == EXIT_OK) {
    ev_signal_init(&sigint_w, on_stop, SIGINT);
    ev_signal_init(&sigterm_w, on_stop, SIGTERM);
    ev_signal_init(&sigusr1_w, on_usr1, SIGUSR1);
    ev_signal_init(&sighup_w, on_hup, SIGHUP);
    ev_signal_start(loop, &sigint_w);
    ev_signal_start(loop, &sigterm_w);
    ev_signal_start(loop, &sigusr1_w);
    ev_signal_start(loop, &sighup_w);
    ev_run(loop, 0);
    if (!stopping)
      rc = EXIT_RUNTIME;
    ev_signal_stop(loop, &sigint_w);
    ev_signal_stop(loop, &sigterm_w);
    ev_signal_stop(loop, &sigusr1_w);
    ev_signal_stop(loop, &sighup_w);
    ev_timer_stop(loop, &drain_w);
  }
  metrics_server_free(metrics);
  metrics = NULL;
  for (i = nrunning; i-- > 0;)
    tunnel_free(running[i]);
  free(running);
  running = NULL;
  nrunning = 0;
  return rc;
}
