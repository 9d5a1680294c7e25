/*
 * quicmux — the program: `client`, `server`, `demo`, `-c FILE` and SIP003
 * plugin mode. The option table in opts.c drives parsing and --help.
 */
#include <malloc.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "app.h"
#include "opts.h"
#include "tunnel.h"

void app_die_usage(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "quicmux: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  exit(EXIT_USAGE);
}

static const char *mode_name(unsigned m) {
  return m == MODE_CLIENT ? "client" : m == MODE_SERVER ? "server" : "demo";
}

static void print_version(void) {
  printf("quicmux %s (ngtcp2 %s, GnuTLS %s)\n", qm_version(),
         app_ngtcp2_version(), app_gnutls_version());
}

/* `quicmux client|server|demo [--options]` */
static int cli_main(unsigned mode, int argc, char **argv) {
  struct option lopts[64];
  tunnel_cfg cfg;
  size_t i, nl = 0;
  int c, conns = 4, mib = 16, security_given = 0, check = 0, rc;
  const char *level = NULL, *log_file = NULL;
  app_metrics metrics = {0};
  qm_log_level lvl = mode == MODE_DEMO ? QM_LOG_INFO : QM_LOG_WARNING;
  char err[512];
  struct ev_loop *loop;

  tunnel_cfg_init(&cfg, mode == MODE_SERVER ? MODE_SERVER : MODE_CLIENT,
                  STYLE_CLI, NULL);
  for (i = 0; i < opt_count && nl < 63; i++) {
    const opt_def *o = &opt_table[i];
    if (!o->flag)
      continue;
    lopts[nl].name = o->flag;
    lopts[nl].has_arg = o->type == T_SWITCH ? no_argument : required_argument;
    lopts[nl].flag = NULL;
    lopts[nl].val = (int)o->id;
    nl++;
  }
  memset(&lopts[nl], 0, sizeof(lopts[nl]));

  opterr = 0;
  optind = 2;
  while ((c = getopt_long(argc, argv, ":", lopts, NULL)) != -1) {
    const opt_def *o;
    char where[64];
    long n;
    if (c == '?')
      app_die_usage("unknown option '%s' (see --help)", argv[optind - 1]);
    if (c == ':')
      app_die_usage("option '%s' needs a value", argv[optind - 1]);
    o = opt_by_id((opt_id)c);
    if (!(o->modes & mode))
      app_die_usage("--%s does not apply to '%s'", o->flag, mode_name(mode));
    snprintf(where, sizeof(where), "--%s", o->flag);
    switch (o->id) {
    case OPT_LOG_LEVEL:
      level = optarg;
      break;
    case OPT_LOG_FILE:
      log_file = optarg;
      break;
    case OPT_CHECK:
      check = 1;
      break;
    case OPT_METRICS:
      metrics.listen = optarg;
      break;
    case OPT_METRICS_PUBLIC:
      metrics.public_ok = 1;
      break;
    case OPT_CONNECTIONS:
      if (opt_num(o, where, optarg, &n, err, sizeof(err)) != 0)
        app_die_usage("%s", err);
      conns = (int)n;
      break;
    case OPT_MIB:
      if (opt_num(o, where, optarg, &n, err, sizeof(err)) != 0)
        app_die_usage("%s", err);
      mib = (int)n;
      break;
    case OPT_HELP:
      opts_usage(stdout);
      return EXIT_OK;
    case OPT_VERSION:
      print_version();
      return EXIT_OK;
    case OPT_MAN:
      opts_man(stdout);
      return EXIT_OK;
    default:
      if (o->id == OPT_SECURITY)
        security_given = 1;
      if (tunnel_cfg_set(&cfg, o, where, optarg, err, sizeof(err)) != 0)
        app_die_usage("%s", err);
    }
  }
  if (optind < argc)
    app_die_usage("unexpected argument '%s' (see --help)", argv[optind]);
  if (level && app_log_level_parse(level, &lvl) != 0)
    app_die_usage("--log-level '%s': want debug, info, warning, error or none",
                  level);

  if (mode == MODE_DEMO) {
    app_log_setup(lvl);
    signal(SIGPIPE, SIG_IGN);
    loop = ev_default_loop(EVFLAG_AUTO);
    if (!security_given)
      cfg.s.security = QM_SEC_AES_128_GCM;
    rc = app_demo(loop, &cfg.s, conns, mib);
    tunnel_cfg_free(&cfg);
    return rc;
  }

  tunnel_cfg_cli_finish(&cfg);
  if (tunnel_cfg_check(&cfg, err, sizeof(err)) != 0)
    app_die_usage("%s", err);
  if (app_metrics_check(&metrics, "--metrics", "--metrics-public", err,
                        sizeof(err)) != 0)
    app_die_usage("%s", err);
  if (log_file && !check && app_log_open(log_file, err, sizeof(err)) != 0)
    app_die_usage("--log-file %s", err);
  if (check) {
    printf("quicmux: %s options OK\n", mode_name(mode));
    tunnel_cfg_free(&cfg);
    return EXIT_OK;
  }
  app_log_setup(lvl);
  signal(SIGPIPE, SIG_IGN);
  loop = ev_default_loop(EVFLAG_AUTO);
  rc = app_run(loop, &cfg, 1, &metrics);
  tunnel_cfg_free(&cfg);
  ev_loop_destroy(loop);
  app_log_close();
  return rc;
}

static int is_config_arg(const char *a) {
  return !strcmp(a, "-c") || !strncmp(a, "--config", 8) ||
         !strcmp(a, "--check") || !strncmp(a, "-c", 2);
}

int main(int argc, char **argv) {
  const char *a = argc >= 2 ? argv[1] : NULL;

  /* Stream buffers come and go in 64 KiB chunks; without this glibc gives
   * the top of the heap back and grows it again many times a second
   * (about a tenth of the server's CPU at full speed, bench/RESULTS.md). */
  mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);

  if (a && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
    opts_usage(stdout);
    return EXIT_OK;
  }
  if (a && !strcmp(a, "--man")) {
    opts_man(stdout);
    return EXIT_OK;
  }
  /* Started by shadowsocks: the SIP003 variables, no subcommand. Android
   * adds -V (and maybe -fast-open). */
  if (app_sip003_env_present() &&
      (!a || (a[0] == '-' && !is_config_arg(a) && strcmp(a, "--version"))))
    return app_plugin_main(argc - 1, argv + 1);
  if (a && (!strcmp(a, "--version") || !strcmp(a, "-V"))) {
    print_version();
    return EXIT_OK;
  }
  if (!a)
    app_die_usage("missing subcommand: client, server, plugin, demo or -c FILE "
                  "(see --help)");
  if (!strcmp(a, "client"))
    return cli_main(MODE_CLIENT, argc, argv);
  if (!strcmp(a, "server"))
    return cli_main(MODE_SERVER, argc, argv);
  if (!strcmp(a, "demo"))
    return cli_main(MODE_DEMO, argc, argv);
  if (!strcmp(a, "plugin"))
    return app_plugin_main(argc - 2, argv + 2);
  if (a[0] == '-')
    return app_config_main(argc, argv);
  app_die_usage("unknown subcommand '%s': want client, server, plugin, demo or "
                "-c FILE",
                a);
}
