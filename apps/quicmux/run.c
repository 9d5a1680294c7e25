/* Run checked tunnels on one loop until a stop signal. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <ev.h>

#include "app.h"
#include "opts.h"
#include "tunnel.h"

static tunnel **running;
static size_t nrunning;
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
  for (i = 0; i < nrunning; i++) {
    tunnel_describe(running[i], line, sizeof(line));
    app_log_always("stats", "%s", line);
  }
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
  app_log_reopen();
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
  if (c->role == MODE_CLIENT)
    rv = tunnel_client_new(out, loop, (struct sockaddr *)&c->listen_addr,
                           c->listen_len, c->remote_host, c->remote_port, &c->s,
                           err, sizeof(err));
  else
    rv = tunnel_server_new(out, loop, (struct sockaddr *)&c->listen_addr,
                           c->listen_len, (struct sockaddr *)&c->remote_addr,
                           c->remote_len, &c->s, err, sizeof(err));
  if (rv != 0) {
    app_logm(QM_LOG_ERROR, "quicmux", "%s: %s", tag, err);
    fprintf(stderr, "quicmux: %s: %s\n", tag, err);
    return -1;
  }
  if (c->tag)
    tunnel_set_tag(*out, c->tag);
  tunnel_cfg_describe(c, err, sizeof(err));
  app_logm(QM_LOG_INFO, "quicmux", "%s: %s", tag, err);
  return 0;
}

int app_run(struct ev_loop *loop, tunnel_cfg *cfgs, size_t n) {
  ev_signal sigint_w, sigterm_w, sigusr1_w, sighup_w;
  size_t i;
  int rc = EXIT_OK;

  running = calloc(n ? n : 1, sizeof(*running));
  if (!running) {
    fprintf(stderr, "quicmux: out of memory\n");
    return EXIT_RUNTIME;
  }
  for (i = 0; i < n; i++) {
    if (start_one(loop, &cfgs[i], &running[i]) != 0) {
      rc = EXIT_RUNTIME;
      break;
    }
    nrunning++;
  }
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
  }
  for (i = nrunning; i-- > 0;)
    tunnel_free(running[i]);
  free(running);
  running = NULL;
  nrunning = 0;
  return rc;
}
