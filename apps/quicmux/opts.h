/*
 * opts — the one option table of the program, and the settings of one
 * tunnel built from it.
 *
 * Every row names an option once: its --flag (client, server, demo and -c
 * command lines), its plugin -flag and SIP003 key (ss-v2ray-plugin's names),
 * and its place in a JSON config file. The table drives command-line parsing,
 * the SIP003 keys, the tunnel-level JSON keys, --help and the man page.
 */
#ifndef QM_APP_OPTS_H
#define QM_APP_OPTS_H

#include <stdio.h>
#include <sys/socket.h>

#include "quicmux/quicmux.h"

/* Where an option applies. */
enum {
  MODE_CLIENT = 1,
  MODE_SERVER = 2,
  MODE_DEMO = 4,
  MODE_PLUGIN = 8,
  MODE_CONFIG = 16, /* quicmux -c FILE */
  MODE_HIDDEN = 32, /* not in --help nor the man page */
};

typedef enum {
  OPT__FIRST = 256,
  OPT_LISTEN = OPT__FIRST,
  OPT_SERVER,
  OPT_TARGET,
  OPT_TAG,
  OPT_SECURITY,
  OPT_KEY,
  OPT_HEADER,
  OPT_SNI,
  OPT_INSECURE,
  OPT_CA,
  OPT_NO_SYSTEM_ROOTS,
  OPT_ALPN,
  OPT_TLS_CERT,
  OPT_TLS_KEY,
  OPT_MAX_STREAMS,
  OPT_IDLE,
  OPT_HANDSHAKE_TIMEOUT,
  OPT_KEEPALIVE,
  OPT_FWMARK,
  OPT_SESSION_IDLE,
  OPT_MAX_SESSIONS,
  OPT_MAX_SESSIONS_DEST,
  OPT_MAX_CONNS,
  OPT_RETRY,
  OPT_STATE_DIR,
  OPT_CC,
  OPT_DRAIN,
  OPT_WORKERS,
  OPT_LOG_LEVEL,
  OPT_LOG_FILE,
  OPT_METRICS,
  OPT_METRICS_PUBLIC,
  OPT_QLOG_DIR,
  OPT_QLOG_MAX_FILES,
  OPT_HOP_INTERVAL,
  OPT_HIDE_INITIAL,
  OPT_UDP,
  OPT_UDP_IDLE,
  OPT_UDP_MAX_FLOWS,
  OPT_UDP_FLOWS_PER_SESSION,
  OPT_UDP_QUEUE,
  OPT_ZERO_RTT,
  OPT_ZERO_RTT_FILE,
  OPT_CONFIG,
  OPT_CHECK,
  OPT_CONNECTIONS,
  OPT_MIB,
  OPT_HELP,
  OPT_VERSION,
  OPT_MAN,
  /* ss-v2ray-plugin's own options */
  OPT_P_SERVER,
  OPT_P_MODE,
  OPT_P_HOST,
  OPT_P_TLS,
  OPT_P_CERT,
  OPT_P_CERTRAW,
  OPT_P_KEY,
  OPT_P_PATH,
  OPT_P_MUX,
  OPT_P_FASTOPEN,
  OPT_P_VPN,
  OPT_P_LOCALADDR,
  OPT_P_LOCALPORT,
  OPT_P_REMOTEADDR,
  OPT_P_REMOTEPORT,
  OPT_P_PORTS, /* quicmux's: the server's port range */
  OPT__END
} opt_id;

#define OPT__COUNT (OPT__END - OPT__FIRST)

typedef enum {
  T_SWITCH, /* no value on the command line; JSON true/false */
  T_STR,
  T_NUM, /* whole number from lo to hi */
  T_ADDR /* HOST:PORT */
} opt_type;

typedef struct opt_def {
  opt_id id;
  const char *flag;  /* --flag, or NULL */
  const char *pflag; /* plugin command line: -pflag, or NULL */
  const char *pkey;  /* SIP003 SS_PLUGIN_OPTIONS key, or NULL */
  const char *json;  /* config file: a tunnel's key ("maxStreams") or a
                        path ("log.level", "streamSettings.…"), or NULL */
  opt_type type;
  long lo, hi;
  unsigned modes;
  const char *arg; /* value placeholder for help, e.g. "HOST:PORT" */
  const char *help;
} opt_def;

extern const opt_def opt_table[];
extern const size_t opt_count;

const opt_def *opt_by_id(opt_id id);
const opt_def *opt_by_flag(const char *name);
const opt_def *opt_by_pflag(const char *name);
const opt_def *opt_by_pkey(const char *key);
/* A key of a tunnel object in a config file (case-insensitive, as Go's
 * encoding/json matches keys). */
const opt_def *opt_by_json_key(const char *key);

/* Parse a T_NUM value; -1 with "WHERE 'v': want a whole number from lo to
 * hi" in err. */
int opt_num(const opt_def *o, const char *where, const char *v, long *out,
            char *err, size_t errlen);

/* How option names are spelled in messages about a tunnel. */
typedef enum { STYLE_CLI, STYLE_JSON, STYLE_PLUGIN } opt_style;

/* --server given several times (or a list): at most this many. */
#define TUNNEL_MAX_SERVERS 32

/* The settings of one tunnel, whatever front end made them. */
typedef struct tunnel_cfg {
  unsigned role; /* MODE_CLIENT or MODE_SERVER */
  opt_style style;
  const char *prefix; /* JSON: "tunnels[1]" */
  const char *tag;
  const char *listen; /* HOST:PORT; server: also HOST:PORT1-PORT2 */
  const char *remote; /* client: the (first) QUIC server, HOST:PORT or
                         HOST:PORT1-PORT2; server: the TCP target */
  const char *servers[TUNNEL_MAX_SERVERS];      /* client: every --server */
  const char *server_where[TUNNEL_MAX_SERVERS]; /* for messages about one */
  size_t nservers;
  qm_settings s;
  int insecure_set;      /* --insecure / allowInsecure given */
  int sni_set;           /* --sni given */
  int ca_set;            /* --ca given */
  int warn_unverified;   /* v2ray's default TLS: the certificate is unchecked */
  int drain_s;           /* seconds open connections get on SIGTERM */
  unsigned workers;      /* threads, each with its loop and tunnel */
  const char *state_dir; /* server: where the static secret is kept */
  int udp;               /* --udp: carry UDP flows too */
  qm_flow_settings fs;   /* their limits */
  /* after tunnel_cfg_check */
  char listen_host[256], remote_host[256];
  uint16_t listen_port, remote_port; /* listen: the first of a range */
  unsigned listen_ports;             /* server: ports in the range (1) */
  uint16_t remote_port_hi; /* client: --server HOST:P1-P2 gives P2, else 0 */
  struct sockaddr_storage listen_addr, remote_addr;
  socklen_t listen_len, remote_len;
  /* where each option came from, for messages (NULL = default name) */
  const char *where[OPT__COUNT];
  char **owned;
  size_t nowned;
} tunnel_cfg;

void tunnel_cfg_init(tunnel_cfg *c, unsigned role, opt_style style,
                     const char *prefix);
void tunnel_cfg_free(tunnel_cfg *c);
/* A copy of s owned by c (NULL on no memory). */
const char *tunnel_cfg_strdup(tunnel_cfg *c, const char *s);
/* The name of option id in messages: where it was given, else "--flag",
 * "tunnels[1].json.path" or "plugin option 'key'". */
const char *tunnel_cfg_name(const tunnel_cfg *c, opt_id id, char *buf,
                            size_t len);
/* Apply one tunnel option (value NULL for a switch). where names it for
 * messages. -1 and err on a bad value. */
int tunnel_cfg_set(tunnel_cfg *c, const opt_def *o, const char *where,
                   const char *value, char *err, size_t errlen);
/* Command line only: TLS verification is on when --sni or --ca is given,
 * unless --insecure. */
void tunnel_cfg_cli_finish(tunnel_cfg *c);
/* Everything that can be checked before starting: required options,
 * addresses (resolved), TLS files readable and loadable. -1 and err. */
int tunnel_cfg_check(tunnel_cfg *c, char *err, size_t errlen);
/* One line: role, addresses, wrapping, TLS. */
void tunnel_cfg_describe(const tunnel_cfg *c, char *buf, size_t len);
/* Load-test TLS material with GnuTLS (used by tunnel_cfg_check). */
int tls_check_pair(const char *cert, const char *key, char *err, size_t errlen);
int tls_check_ca(const char *file, char *err, size_t errlen);

/* "HOST:P1-P2" (a range after the last ':'): base gets "HOST:P1" and *count
 * P2 - P1 + 1, from 1 to QM_MAX_PORT_RANGE; any other value is copied as it
 * is, count 1. -1 and "NAME 'v': ..." in err for a bad range. */
int opt_port_range(const char *name, const char *v, char *base, size_t baselen,
                   unsigned *count, char *err, size_t errlen);

/* --help and the man page, from the table. */
void opts_usage(FILE *f);
void opts_man(FILE *f);

/* ---- the metrics endpoint (process-wide: --metrics, metrics.listen) ---- */
typedef struct app_metrics {
  const char *listen; /* HOST:PORT, NULL = off */
  int public_ok;      /* --metrics-public: any address, not only loopback */
  /* after app_metrics_check */
  struct sockaddr_storage addr;
  socklen_t addrlen;
} app_metrics;
/* Resolve and check listen (loopback unless public_ok); name and
 * public_name spell the two options in the message. 0 (also when off) or
 * -1 with err. */
int app_metrics_check(app_metrics *m, const char *name, const char *public_name,
                      char *err, size_t errlen);

/* ---- running (run.c) ---- */
struct ev_loop;
/* Start a tunnel per cfg (all were checked) and the metrics endpoint (m
 * checked; NULL or m->listen NULL = none), then run until SIGINT/SIGTERM
 * (0) or a failure (1). SIGUSR1 logs stats, SIGHUP reopens the log file. */
int app_run(struct ev_loop *loop, tunnel_cfg *cfgs, size_t n,
            const app_metrics *m);

/* ---- front ends ---- */
/* plugin.c: argv = the flags after "plugin" (or after the program name
 * when started by shadowsocks). Returns the exit status. */
int app_plugin_main(int argc, char **argv);
/* Are the four SIP003 variables set? */
int app_sip003_env_present(void);
/* config.c: argv = the arguments after the program name. */
int app_config_main(int argc, char **argv);
#endif
