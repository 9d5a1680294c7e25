/* Run checked tunnels until a stop signal: each config on its workers
 * (workers.h; one worker = on this loop), signals and metrics here. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>

#include <ev.h>

#include "app.h"
#include "metrics.h"
#include "opts.h"
#include "state.h"
#include "tunnel.h"
#include "tunnel_metrics.h"
#include "workers.h"

static workers **running; /* one per config */
static size_t nrunning;
static tunnel **all; /* every worker's tunnel, config by config */
static size_t nall;
static int stopping;
static int drain_s;
static ev_timer drain_w; /* checks every 100 ms whether all are done */
static ev_tstamp drain_until;
static metrics_server *metrics;

static void pause_all(void) {
  size_t i;
  for (i = 0; i < nrunning; i++)
    workers_pause(running[i]);
}

static void resume_all(void) {
  size_t i;
  for (i = 0; i < nrunning; i++)
    workers_resume(running[i]);
}

/* GET /metrics: the running tunnels and the endpoint's own counts. */
static int render_metrics(char **body, size_t *len, void *ud) {
  metrics_counts mc;
  int rv;
  (void)ud;
  metrics_server_counts(metrics, &mc);
  pause_all();
  rv = tunnel_metrics_text(all, nall, &mc, body, len);
  resume_all();
  return rv;
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
  pause_all();
  for (i = 0; i < nall; i++)
    n += tunnel_open_connections(all[i]);
  resume_all();
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
  pause_all(); /* every worker drains */
  for (i = 0; i < nall; i++)
    tunnel_stop_accepting(all[i]);
  resume_all();
  drain_until = ev_now(loop) + drain_s;
  ev_timer_init(&drain_w, on_drain, 0.1, 0.1);
  ev_timer_start(loop, &drain_w);
}

static void stats_line(const char *line, void *ud) {
  (void)ud;
  app_log_always("stats", "%s", line);
}

/* One line per config (its workers added up), one per worker when there
 * are several, then one per session. */
static void on_usr1(struct ev_loop *loop, ev_signal *w, int revents) {
  size_t i, k, base = 0;
  char line[512];
  (void)loop;
  (void)w;
  (void)revents;
  pause_all();
  for (i = 0; i < nrunning; i++) {
    size_t n = workers_count(running[i]);
    tunnel_describe_n((const tunnel *const *)&all[base], n, line, sizeof(line));
    app_log_always("stats", "%s", line);
    for (k = 0; n > 1 && k < n; k++) {
      tunnel_describe_worker(all[base + k], line, sizeof(line));
      app_log_always("stats", "%s, %llu hand-offs lost (queue full)", line,
                     (unsigned long long)workers_handoff_drops(running[i], k));
    }
    for (k = 0; k < n; k++)
      tunnel_describe_sessions(all[base + k], stats_line, NULL);
    base += n;
  }
  resume_all();
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
    want += cfgs[i].listen_ports > 1
                ? (rlim_t)cfgs[i].listen_ports *
                      (cfgs[i].workers ? cfgs[i].workers : 1)
                : 0;
  if (want == 4096 || getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
    return;
  rl.rlim_cur =
      rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
  (void)setrlimit(RLIMIT_NOFILE, &rl);
}

static int start_one(struct ev_loop *loop, tunnel_cfg *c, workers **out) {
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
    rv = workers_new(out, loop, c, &c->s, err, sizeof(err));
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
      /* workers need one secret between them: Retry tokens and stateless
       * resets must be valid on every one */
      if (c->workers > 1 &&
          getrandom(secret, sizeof(secret), 0) == (ssize_t)sizeof(secret)) {
        c->s.static_secret = secret;
        c->s.static_secret_len = sizeof(secret);
      }
    }
    rv = workers_new(out, loop, c, &c->s, err, sizeof(err));
    c->s.static_secret = NULL; /* the listener derived what it needs */
    memset(secret, 0, sizeof(secret));
  }
  if (rv != 0) {
    app_logm(QM_LOG_ERROR, "quicmux", "%s: %s", tag, err);
    fprintf(stderr, "quicmux: %s: %s\n", tag, err);
    return -1;
  }
  tunnel_cfg_describe(c, err, sizeof(err));
  app_logm(QM_LOG_INFO, "quicmux", "%s: %s", tag, err);
  return 0;
}

int app_run(struct ev_loop *loop, tunnel_cfg *cfgs, size_t n,
            const app_metrics *m) {
  ev_signal sigint_w, sigterm_w, sigusr1_w, sighup_w;
  size_t i, k, total = 0;
  int rc = EXIT_OK;
  char err[256];

  for (i = 0; i < n; i++)
    total += cfgs[i].workers ? cfgs[i].workers : 1;
  raise_nofile(cfgs, n);
  running = calloc(n ? n : 1, sizeof(*running));
  all = calloc(total ? total : 1, sizeof(*all));
  if (!running || !all) {
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
    for (k = 0; k < workers_count(running[i]); k++)
      all[nall++] = workers_tunnel(running[i], k);
    nrunning++;
  }
  for (i = 0; rc == EXIT_OK && i < nrunning; i++)
    if (workers_start(running[i], err, sizeof(err)) != 0) {
      app_logm(QM_LOG_ERROR, "quicmux", "%s", err);
      fprintf(stderr, "quicmux: %s\n", err);
      rc = EXIT_RUNTIME;
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
    workers_free(running[i]);
  free(running);
  free(all);
  running = NULL;
  all = NULL;
  nrunning = nall = 0;
  return rc;
}
