/* The option table, one tunnel's settings, --help and the man page. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "app.h"
#include "metrics.h"
#include "opts.h"
#include "tunnel.h"
#include "workers.h"

#define CS (MODE_CLIENT | MODE_SERVER)
#define CSD (MODE_CLIENT | MODE_SERVER | MODE_DEMO)
#define ALL (MODE_CLIENT | MODE_SERVER | MODE_DEMO | MODE_PLUGIN | MODE_CONFIG)

/* clang-format off */
const opt_def opt_table[] = {
  {OPT_LISTEN, "listen", NULL, NULL, "listen", T_ADDR, 0, 0, CS, "HOST:PORT",
   "client: TCP address to accept connections on; server: UDP address for "
   "QUIC, or HOST:PORT1-PORT2 to accept on every port of the range (at most "
   "1024; for port-hopping quicmux clients, pointless with v2ray ones)"},
  {OPT_SERVER, "server", NULL, NULL, "server", T_ADDR, 0, 0, MODE_CLIENT,
   "HOST:PORT", "QUIC server to carry connections to; repeat it (config: a "
   "list) for several, up to 32: every address of a name is one server, new "
   "connections go to the one with the fewest, one whose handshakes fail is "
   "skipped for 1 s, doubling to 30 s. HOST:PORT1-PORT2 (a single server): "
   "a quicmux server listening on that port range, each session hopping "
   "between its ports (see --hop-interval)"},
  {OPT_TARGET, "target", NULL, NULL, "target", T_ADDR, 0, 0, MODE_SERVER,
   "HOST:PORT", "TCP address each stream is connected to"},
  {OPT_TAG, "tag", NULL, NULL, "tag", T_STR, 0, 0, CS, "NAME",
   "name of the tunnel in logs and stats"},
  {OPT_SECURITY, "security", NULL, NULL,
   "streamSettings.quicSettings.security", T_STR, 0, 0, CSD, "S",
   "packet encryption: none, aes-128-gcm, chacha20-poly1305 (default none; "
   "demo: aes-128-gcm)"},
  {OPT_KEY, "key", NULL, NULL, "streamSettings.quicSettings.key", T_STR, 0, 0,
   CSD, "K", "packet encryption key (default \"\")"},
  {OPT_HEADER, "header", NULL, NULL, "streamSettings.quicSettings.header.type",
   T_STR, 0, 0, CSD, "H",
   "fake packet header: none, srtp, utp, wechat-video, dtls, wireguard "
   "(default none)"},
  {OPT_SNI, "sni", NULL, NULL, "streamSettings.tlsSettings.serverName", T_STR,
   0, 0, MODE_CLIENT, "NAME",
   "TLS server name; verifies the certificate for it unless --insecure "
   "(default quic.internal.v2ray.com, unverified)"},
  {OPT_INSECURE, "insecure", NULL, NULL,
   "streamSettings.tlsSettings.allowInsecure", T_SWITCH, 0, 0, MODE_CLIENT,
   NULL, "do not verify the server certificate"},
  {OPT_CA, "ca", NULL, NULL,
   "streamSettings.tlsSettings.certificates[].certificateFile", T_STR, 0, 0,
   MODE_CLIENT, "FILE",
   "PEM file of extra trusted certificates (turns verification on)"},
  {OPT_NO_SYSTEM_ROOTS, "no-system-roots", NULL, NULL,
   "streamSettings.tlsSettings.disableSystemRoot", T_SWITCH, 0, 0,
   MODE_CLIENT, NULL, "trust only the --ca certificates, not the system's"},
  {OPT_ALPN, "alpn", NULL, NULL, "streamSettings.tlsSettings.alpn", T_STR, 0,
   0, CS, "LIST", "TLS ALPN protocols, comma separated (default h2,http/1.1)"},
  {OPT_TLS_CERT, "tls-cert", NULL, NULL,
   "streamSettings.tlsSettings.certificates[].certificateFile", T_STR, 0, 0,
   MODE_SERVER, "FILE",
   "certificate chain (PEM); default: a self-signed one made in memory"},
  {OPT_TLS_KEY, "tls-key", NULL, NULL,
   "streamSettings.tlsSettings.certificates[].keyFile", T_STR, 0, 0,
   MODE_SERVER, "FILE", "private key (PEM)"},
  {OPT_MAX_STREAMS, "max-streams", NULL, NULL, "maxStreams", T_NUM, 1, 65535,
   MODE_SERVER, "N",
   "concurrent streams per session, 1-65535 (default 32, as v2ray)"},
  {OPT_IDLE, "idle-timeout", NULL, NULL, "idleTimeout", T_NUM, 1, 3600, CS,
   "SEC", "QUIC idle timeout, 1-3600 (default 30 client, 45 server; v2ray "
   "peers treat values under 5 as 5)"},
  {OPT_HANDSHAKE_TIMEOUT, "handshake-timeout", NULL, NULL, "handshakeTimeout",
   T_NUM, 1, 60, CS, "SEC",
   "give up a QUIC handshake after SEC seconds, 1-60; a client then moves "
   "the waiting connections to another server (default 8)"},
  {OPT_KEEPALIVE, "keepalive", NULL, NULL, "keepAlive", T_NUM, 0, 3600,
   MODE_CLIENT, "SEC",
   "PING after SEC quiet seconds while a session carries connections, so a "
   "dead server is noticed; 0 = off (default 5)"},
  {OPT_SESSION_IDLE, "session-idle", NULL, NULL, "sessionIdle", T_NUM, 0,
   3600, MODE_CLIENT, "SEC",
   "close a session that carried no connection for SEC seconds, freeing its "
   "UDP socket; 0 = leave it to the idle timeout (default 25)"},
  {OPT_MAX_SESSIONS, "max-sessions", NULL, NULL, "maxSessions", T_NUM, 1,
   1000000, CS, "N",
   "client: sessions to all servers (default 1024); server: client sessions "
   "(default 4096); beyond it new connections are refused"},
  {OPT_MAX_SESSIONS_DEST, "max-sessions-per-server", NULL, NULL,
   "maxSessionsPerServer", T_NUM, 1, 1000000, MODE_CLIENT, "N",
   "sessions to one server address (default 64)"},
  {OPT_MAX_CONNS, "max-connections", NULL, NULL, "maxConnections", T_NUM, 1,
   10000000, MODE_CLIENT, "N",
   "connections (streams) open at once; more are refused (default 65536)"},
  {OPT_RETRY, "retry", NULL, NULL, "retry", T_STR, 0, 0, MODE_SERVER, "MODE",
   "QUIC Retry (client address validation): auto = only during a flood of "
   "new sessions, always, never = as v2ray (default auto)"},
  {OPT_STATE_DIR, "state-dir", NULL, "stateDir", "stateDir", T_STR, 0, 0,
   MODE_SERVER | MODE_PLUGIN, "DIR",
   "server: keep the secret behind stateless resets here, so that clients "
   "learn of a restart at once (default $STATE_DIRECTORY, else "
   "/var/lib/quicmux for root, ~/.local/state/quicmux for others)"},
  {OPT_CC, "cc", NULL, NULL, "congestion", T_STR, 0, 0, CSD, "ALGO",
   "congestion control: bbr, cubic, reno (default bbr; bbr2 = bbr)"},
  {OPT_DRAIN, "drain", NULL, NULL, "drain", T_NUM, 0, 600, CS, "SEC",
   "on SIGTERM/SIGINT stop accepting and give open connections SEC seconds "
   "to finish; a second signal stops at once (default 2)"},
  {OPT_WORKERS, "workers", NULL, NULL, "workers", T_STR, 0, 0, CS, "N|auto",
   "threads, each with its own event loop, sockets and sessions: a server "
   "spreads client sessions over them, a client its connections; auto = "
   "the CPUs the process may run on (at most 64; default 1)"},
  {OPT_FWMARK, "fwmark", "fwmark", "fwmark", "streamSettings.sockopt.mark",
   T_NUM, 0, 2147483647L, CS | MODE_PLUGIN, "MARK",
   "SO_MARK on the QUIC UDP sockets, for policy routing (default 0 = none)"},
  {OPT_LOG_LEVEL, "log-level", "loglevel", "loglevel", "log.level", T_STR, 0,
   0, ALL, "L",
   "debug, info, warning, error, none (default warning; demo: info)"},
  {OPT_LOG_FILE, "log-file", NULL, NULL, "log.file", T_STR, 0, 0,
   CS | MODE_PLUGIN | MODE_CONFIG, "FILE",
   "append log lines to FILE instead of stderr; SIGHUP reopens it"},
  {OPT_METRICS, "metrics", "metrics", "metrics", "metrics.listen", T_ADDR, 0,
   0, CS | MODE_PLUGIN | MODE_CONFIG, "HOST:PORT",
   "serve Prometheus metrics at http://HOST:PORT/metrics; a loopback "
   "address unless --metrics-public (default off)"},
  {OPT_METRICS_PUBLIC, "metrics-public", "metricsPublic", "metricsPublic",
   "metrics.public", T_SWITCH, 0, 0, CS | MODE_PLUGIN | MODE_CONFIG, NULL,
   "allow --metrics on any address: the metrics name peers and traffic, so "
   "firewall the port"},
  {OPT_QLOG_DIR, "qlog-dir", NULL, NULL, "qlogDir", T_STR, 0, 0, CS, "DIR",
   "write a qlog file (JSON-SEQ, for qvis) per QUIC session into the "
   "existing directory DIR (default off)"},
  {OPT_QLOG_MAX_FILES, "qlog-max-files", NULL, NULL, "qlogMaxFiles", T_NUM, 1,
   100000, CS, "N",
   "keep at most N qlog files in DIR: each new session deletes the oldest "
   "beyond it (default 100; a file stops at 64 MiB)"},
  {OPT_HOP_INTERVAL, "hop-interval", "hopInterval", "hopInterval",
   "hopInterval", T_NUM, 0, 86400, MODE_CLIENT | MODE_PLUGIN, "SEC",
   "with a server port range: each session moves to another port of it "
   "every SEC seconds (+-30 % jitter), on a new UDP socket, after checking "
   "that the port answers; 0 = stay on one port (default 30). Needs quicmux "
   "on both ends"},
  {OPT_HIDE_INITIAL, "hide-initial", "hideInitial", "hideInitial",
   "hideInitial", T_SWITCH, 0, 0, MODE_CLIENT | MODE_PLUGIN, NULL,
   "with --security none: keep the SNI out of the first packets an observer "
   "decrypts (a random decoy datagram first, the ClientHello padded over two "
   "Initials sent last first); v2ray and quicmux servers accept it. Nothing "
   "to do with a key: every packet is encrypted then (default off)"},
  {OPT_UDP, "udp", NULL, NULL, "udp", T_SWITCH, 0, 0, CS, NULL,
   "carry UDP too, in QUIC datagrams (quicmux on both ends: a v2ray peer "
   "refuses it, TCP goes on): the client also listens for UDP on --listen's "
   "address, one flow per local peer; the server sends each flow's "
   "datagrams to --target from a UDP socket of its own"},
  {OPT_UDP_IDLE, "udp-idle", NULL, NULL, "udpIdle", T_NUM, 1, 86400, CS,
   "SEC", "close a UDP flow after SEC seconds without a datagram either way "
   "(default 60)"},
  {OPT_UDP_MAX_FLOWS, "udp-max-flows", NULL, NULL, "udpMaxFlows", T_NUM, 1,
   1000000, CS, "N",
   "UDP flows open at once in all; more are refused (default 4096)"},
  {OPT_UDP_FLOWS_PER_SESSION, "udp-flows-per-session", NULL, NULL,
   "udpFlowsPerSession", T_NUM, 1, 65535, CS, "N",
   "UDP flows on one QUIC session (default 256; a client starts another "
   "session beyond it, a server drops new flows)"},
  {OPT_UDP_QUEUE, "udp-queue", NULL, NULL, "udpQueue", T_NUM, 16, 65536, CS,
   "KIB", "UDP datagrams waiting to be sent, per QUIC session, in KiB: more "
   "are dropped (and counted); a larger queue loses less in bursts and "
   "delays more on a slow path (default 1024)"},
  {OPT_ZERO_RTT, "0rtt", "0rtt", "0rtt", "zeroRtt", T_SWITCH, 0, 0,
   CS | MODE_PLUGIN, NULL,
   "0-RTT, one round trip less for a new session (give it on both ends): "
   "client: keep each server's session ticket and send a new session's "
   "first bytes with the handshake; server: issue tickets and accept early "
   "data. Early data can be replayed by an attacker on the path: only for "
   "idempotent traffic (default off)"},
  {OPT_ZERO_RTT_FILE, "0rtt-file", "0rttFile", "0rttFile", "zeroRttFile",
   T_STR, 0, 0, MODE_CLIENT | MODE_PLUGIN, "FILE",
   "client with --0rtt: also keep the session tickets in FILE (mode 0600), "
   "so a restarted client starts with 0-RTT; a bad file is ignored "
   "(default: memory only)"},
  {OPT_CONFIG, "config", NULL, NULL, NULL, T_STR, 0, 0, MODE_CONFIG, "FILE",
   "run the tunnels of a JSON config file (also -c FILE)"},
  {OPT_CHECK, "check", NULL, NULL, NULL, T_SWITCH, 0, 0,
   CS | MODE_PLUGIN | MODE_CONFIG, NULL,
   "check the options (or the config file) and exit: 0 if good, 2 if not"},
  {OPT_CONNECTIONS, "connections", NULL, NULL, NULL, T_NUM, 1, 1000,
   MODE_DEMO, "N", "demo: concurrent connections, 1-1000 (default 4)"},
  {OPT_MIB, "mib", NULL, NULL, NULL, T_NUM, 1, 4096, MODE_DEMO, "M",
   "demo: MiB each connection sends and gets back, 1-4096 (default 16)"},
  {OPT_HELP, "help", NULL, NULL, NULL, T_SWITCH, 0, 0, ALL, NULL,
   "show this help"},
  {OPT_VERSION, "version", NULL, NULL, NULL, T_SWITCH, 0, 0, ALL, NULL,
   "print the version"},
  {OPT_MAN, "man", NULL, NULL, NULL, T_SWITCH, 0, 0, MODE_HIDDEN, NULL,
   "print the man page (roff)"},

  {OPT_P_SERVER, NULL, "server", "server", NULL, T_SWITCH, 0, 0, MODE_PLUGIN,
   NULL, "run as the server end (the plugin of ss-server); as in "
   "ss-v2ray-plugin the key's value is not looked at"},
  {OPT_P_MODE, NULL, "mode", "mode", NULL, T_STR, 0, 0, MODE_PLUGIN, "MODE",
   "transport: only quic (default quic; ss-v2ray-plugin's default is "
   "websocket, so give it mode=quic)"},
  {OPT_P_HOST, NULL, "host", "host", NULL, T_STR, 0, 0, MODE_PLUGIN, "NAME",
   "TLS name: sent as SNI and checked against the server certificate; the "
   "server's default certificate paths use it (default cloudfront.com)"},
  {OPT_P_TLS, NULL, "tls", "tls", NULL, T_SWITCH, 0, 0, MODE_PLUGIN, NULL,
   "accepted: TLS is always on in quic mode"},
  {OPT_P_CERT, NULL, "cert", "cert", NULL, T_STR, 0, 0, MODE_PLUGIN, "FILE",
   "client: PEM certificate trusted besides the system roots; server: "
   "certificate chain (default ~/.acme.sh/HOST/fullchain.cer)"},
  {OPT_P_CERTRAW, NULL, "certRaw", "certRaw", NULL, T_STR, 0, 0, MODE_PLUGIN,
   "BASE64", "the certificate as the base64 text between the BEGIN and END "
   "lines of a PEM file; cert wins if both are given"},
  {OPT_P_KEY, NULL, "key", "key", NULL, T_STR, 0, 0, MODE_PLUGIN, "FILE",
   "server: private key (default ~/.acme.sh/HOST/HOST.key)"},
  {OPT_P_PATH, NULL, "path", "path", NULL, T_STR, 0, 0, MODE_PLUGIN, "PATH",
   "websocket only: accepted and ignored"},
  {OPT_P_MUX, NULL, "mux", "mux", NULL, T_NUM, -2147483647L, 2147483647L,
   MODE_PLUGIN, "N", "websocket only: accepted and ignored"},
  {OPT_P_FASTOPEN, NULL, "fast-open", "fastOpen", NULL, T_SWITCH, 0, 0,
   MODE_PLUGIN, NULL, "TCP fast open: accepted, no effect on QUIC"},
  {OPT_P_VPN, NULL, "V", "__android_vpn", NULL, T_SWITCH, 0, 0, MODE_PLUGIN,
   NULL, "Android VPN mode: accepted, no effect"},
  {OPT_P_LOCALADDR, NULL, "localAddr", "localAddr", NULL, T_STR, 0, 0,
   MODE_PLUGIN, "ADDR",
   "client: TCP listen address; server: UDP listen address(es), several "
   "separated by '|' (default 127.0.0.1; SIP003: from SS_LOCAL_HOST, or "
   "SS_REMOTE_HOST on the server)"},
  {OPT_P_LOCALPORT, NULL, "localPort", "localPort", NULL, T_NUM, 1, 65535,
   MODE_PLUGIN, "PORT", "port of localAddr (default 1984)"},
  {OPT_P_REMOTEADDR, NULL, "remoteAddr", "remoteAddr", NULL, T_STR, 0, 0,
   MODE_PLUGIN, "ADDR",
   "client: QUIC server; server: TCP target (default 127.0.0.1; SIP003: "
   "from SS_REMOTE_HOST, or SS_LOCAL_HOST on the server)"},
  {OPT_P_REMOTEPORT, NULL, "remotePort", "remotePort", NULL, T_NUM, 1, 65535,
   MODE_PLUGIN, "PORT", "port of remoteAddr (default 1080)"},
  {OPT_P_PORTS, NULL, "ports", "ports", NULL, T_STR, 0, 0, MODE_PLUGIN,
   "P1-P2", "server: accept on every UDP port from P1 to P2 (at most 1024), "
   "which must include the server port (SS_REMOTE_PORT), for port-hopping "
   "quicmux clients; client: the server's range (holding SS_REMOTE_PORT), "
   "each session hopping between its ports every hopInterval; quicmux's "
   "own, not ss-v2ray-plugin's (default: the server port alone)"},
};
/* clang-format on */
const size_t opt_count = sizeof(opt_table) / sizeof(opt_table[0]);

const opt_def *opt_by_id(opt_id id) {
  size_t i;
  for (i = 0; i < opt_count; i++)
    if (opt_table[i].id == id)
      return &opt_table[i];
  return NULL;
}

const opt_def *opt_by_flag(const char *name) {
  size_t i;
  for (i = 0; i < opt_count; i++)
    if (opt_table[i].flag && !strcmp(opt_table[i].flag, name))
      return &opt_table[i];
  return NULL;
}

const opt_def *opt_by_pflag(const char *name) {
  size_t i;
  for (i = 0; i < opt_count; i++)
    if (opt_table[i].pflag && !strcmp(opt_table[i].pflag, name))
      return &opt_table[i];
  return NULL;
}

const opt_def *opt_by_pkey(const char *key) {
  size_t i;
  for (i = 0; i < opt_count; i++)
    if (opt_table[i].pkey && !strcmp(opt_table[i].pkey, key))
      return &opt_table[i];
  return NULL;
}

const opt_def *opt_by_json_key(const char *key) {
  size_t i;
  for (i = 0; i < opt_count; i++) {
    const opt_def *o = &opt_table[i];
    if (o->json && !strchr(o->json, '.') && (o->modes & CS) &&
        !strcasecmp(o->json, key))
      return o;
  }
  return NULL;
}

int opt_num(const opt_def *o, const char *where, const char *v, long *out,
            char *err, size_t errlen) {
  char *end;
  long n;
  errno = 0;
  n = strtol(v, &end, 10);
  if (!*v || *end || errno || n < o->lo || n > o->hi) {
    snprintf(err, errlen, "%s '%s': want a whole number from %ld to %ld", where,
             v, o->lo, o->hi);
    return -1;
  }
  *out = n;
  return 0;
}

/* ---- one tunnel ---- */

void tunnel_cfg_init(tunnel_cfg *c, unsigned role, opt_style style,
                     const char *prefix) {
  memset(c, 0, sizeof(*c));
  c->role = role;
  c->style = style;
  c->drain_s = 2;
  c->workers = 1;
  qm_settings_default(&c->s);
  qm_flow_settings_default(&c->fs);
  if (prefix)
    c->prefix = tunnel_cfg_strdup(c, prefix);
}

void tunnel_cfg_free(tunnel_cfg *c) {
  size_t i;
  for (i = 0; i < c->nowned; i++)
    free(c->owned[i]);
  free(c->owned);
  c->owned = NULL;
  c->nowned = 0;
}

const char *tunnel_cfg_strdup(tunnel_cfg *c, const char *s) {
  char **v;
  char *d = strdup(s ? s : "");
  if (!d)
    return NULL;
  v = realloc(c->owned, (c->nowned + 1) * sizeof(*v));
  if (!v) {
    free(d);
    return NULL;
  }
  c->owned = v;
  c->owned[c->nowned++] = d;
  return d;
}

const char *tunnel_cfg_name(const tunnel_cfg *c, opt_id id, char *buf,
                            size_t len) {
  const opt_def *o = opt_by_id(id);
  if (c->where[id - OPT__FIRST])
    return c->where[id - OPT__FIRST];
  if (!o)
    return "?";
  if (c->style == STYLE_JSON && o->json)
    snprintf(buf, len, "%s.%s", c->prefix ? c->prefix : "tunnel", o->json);
  else if (c->style == STYLE_PLUGIN && o->pkey)
    snprintf(buf, len, "plugin option '%s'", o->pkey);
  else
    snprintf(buf, len, "--%s", o->flag ? o->flag : "?");
  return buf;
}

static int set_where(tunnel_cfg *c, opt_id id, const char *where) {
  const char *w = where ? tunnel_cfg_strdup(c, where) : NULL;
  if (where && !w)
    return -1;
  c->where[id - OPT__FIRST] = w;
  return 0;
}

int tunnel_cfg_set(tunnel_cfg *c, const opt_def *o, const char *where,
                   const char *value, char *err, size_t errlen) {
  const char *v = NULL;
  long n;
  char nbuf[128];
  if (!where)
    where = tunnel_cfg_name(c, o->id, nbuf, sizeof(nbuf));
  if (set_where(c, o->id, where) != 0)
    goto nomem;
  where = c->where[o->id - OPT__FIRST];
  if (value && o->type != T_NUM && o->type != T_SWITCH) {
    v = tunnel_cfg_strdup(c, value);
    if (!v)
      goto nomem;
  }
  if (o->type == T_NUM && opt_num(o, where, value, &n, err, errlen) != 0)
    return -1;
  switch (o->id) {
  case OPT_LISTEN:
    c->listen = v;
    break;
  case OPT_SERVER:
    if (c->nservers >= TUNNEL_MAX_SERVERS) {
      snprintf(err, errlen, "%s '%s': at most %d servers", where, v,
               TUNNEL_MAX_SERVERS);
      return -1;
    }
    c->server_where[c->nservers] = where;
    c->servers[c->nservers++] = v;
    c->remote = c->servers[0];
    break;
  case OPT_TARGET:
    c->remote = v;
    break;
  case OPT_TAG:
    c->tag = v;
    break;
  case OPT_SECURITY:
    if (qm_security_parse(v, &c->s.security) != 0) {
      snprintf(err, errlen,
               "%s '%s': want none, aes-128-gcm or chacha20-poly1305", where,
               v);
      return -1;
    }
    break;
  case OPT_KEY:
    c->s.key = v;
    break;
  case OPT_HEADER:
    if (qm_header_parse(v, &c->s.header) != 0) {
      snprintf(err, errlen,
               "%s '%s': want none, srtp, utp, wechat-video, dtls or "
               "wireguard",
               where, v);
      return -1;
    }
    break;
  case OPT_SNI:
    if (!*v) {
      snprintf(err, errlen, "%s: empty name", where);
      return -1;
    }
    c->s.server_name = v;
    c->sni_set = 1;
    break;
  case OPT_INSECURE:
    c->insecure_set = 1;
    break;
  case OPT_CA:
    c->s.ca_file = v;
    c->ca_set = 1;
    break;
  case OPT_NO_SYSTEM_ROOTS:
    c->s.no_system_roots = 1;
    break;
  case OPT_ALPN:
    c->s.alpn = v;
    break;
  case OPT_TLS_CERT:
    c->s.cert_file = v;
    break;
  case OPT_TLS_KEY:
    c->s.key_file = v;
    break;
  case OPT_MAX_STREAMS:
    c->s.max_streams_bidi = (uint32_t)n;
    break;
  case OPT_IDLE:
    c->s.idle_timeout_ms = 1000ull * (uint64_t)n;
    break;
  case OPT_HANDSHAKE_TIMEOUT:
    c->s.handshake_timeout_ms = 1000ull * (uint64_t)n;
    break;
  case OPT_KEEPALIVE:
    c->s.keepalive_ms = 1000ull * (uint64_t)n;
    break;
  case OPT_FWMARK:
    c->s.fwmark = (int)n;
    break;
  case OPT_SESSION_IDLE:
    c->s.session_idle_ms = 1000ull * (uint64_t)n;
    break;
  case OPT_MAX_SESSIONS:
    c->s.max_sessions = (uint32_t)n;
    break;
  case OPT_MAX_SESSIONS_DEST:
    c->s.max_sessions_per_dest = (uint32_t)n;
    break;
  case OPT_MAX_CONNS:
    c->s.max_streams = (uint32_t)n;
    break;
  case OPT_RETRY:
    if (!strcasecmp(v, "auto"))
      c->s.retry = QM_RETRY_AUTO;
    else if (!strcasecmp(v, "always"))
      c->s.retry = QM_RETRY_ALWAYS;
    else if (!strcasecmp(v, "never"))
      c->s.retry = QM_RETRY_NEVER;
    else {
      snprintf(err, errlen, "%s '%s': want auto, always or never", where, v);
      return -1;
    }
    break;
  case OPT_STATE_DIR:
    c->state_dir = v;
    break;
  case OPT_CC:
    if (qm_cc_parse(v) != 0) {
      snprintf(err, errlen, "%s '%s': want bbr, cubic or reno", where, v);
      return -1;
    }
    c->s.cc = v;
    break;
  case OPT_DRAIN:
    c->drain_s = (int)n;
    break;
  case OPT_WORKERS: {
    char *end;
    long w;
    if (!strcasecmp(v, "auto")) {
      c->workers = workers_auto();
      break;
    }
    errno = 0;
    w = strtol(v, &end, 10);
    if (!*v || *end || errno || w < 1 || w > QM_MAX_WORKERS) {
      snprintf(err, errlen, "%s '%s': want auto or a whole number from 1 to %d",
               where, v, QM_MAX_WORKERS);
      return -1;
    }
    c->workers = (unsigned)w;
    break;
  }
  case OPT_QLOG_DIR:
    if (!*v) {
      snprintf(err, errlen, "%s: empty directory name", where);
      return -1;
    }
    c->s.qlog_dir = v;
    break;
  case OPT_QLOG_MAX_FILES:
    c->s.qlog_max_files = (uint32_t)n;
    break;
  case OPT_HOP_INTERVAL:
    c->s.hop_interval_ms = 1000ull * (uint64_t)n;
    break;
  case OPT_HIDE_INITIAL:
    c->s.hide_initial = 1;
    break;
  case OPT_UDP:
    c->udp = 1;
    break;
  case OPT_UDP_IDLE:
    c->fs.idle_ms = 1000ull * (uint64_t)n;
    break;
  case OPT_UDP_MAX_FLOWS:
    c->fs.max_flows = (uint32_t)n;
    break;
  case OPT_UDP_FLOWS_PER_SESSION:
    c->fs.max_per_session = (uint32_t)n;
    break;
  case OPT_UDP_QUEUE:
    c->fs.queue_bytes = 1024 * (size_t)n;
    break;
  case OPT_ZERO_RTT:
    c->s.zero_rtt = 1;
    break;
  case OPT_ZERO_RTT_FILE:
    if (!*v) {
      snprintf(err, errlen, "%s: empty file name", where);
      return -1;
    }
    c->s.zero_rtt_file = v;
    break;
  default:
    snprintf(err, errlen, "%s: not a tunnel option", where);
    return -1;
  }
  return 0;
nomem:
  snprintf(err, errlen, "out of memory");
  return -1;
}

void tunnel_cfg_cli_finish(tunnel_cfg *c) {
  /* Verification: on when TLS settings are given, unless --insecure. */
  c->s.insecure = c->insecure_set || (!c->sni_set && !c->ca_set);
  c->warn_unverified =
      c->role == MODE_CLIENT && c->s.insecure && !c->insecure_set;
}

/* ---- checks before anything starts ---- */

int tls_check_pair(const char *cert, const char *key, char *err,
                   size_t errlen) {
  gnutls_certificate_credentials_t cred;
  int rv;
  if (gnutls_certificate_allocate_credentials(&cred) < 0) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  rv = gnutls_certificate_set_x509_key_file(cred, cert, key,
                                            GNUTLS_X509_FMT_PEM);
  gnutls_certificate_free_credentials(cred);
  if (rv < 0) {
    snprintf(err, errlen, "%s", gnutls_strerror(rv));
    return -1;
  }
  return 0;
}

int tls_check_ca(const char *file, char *err, size_t errlen) {
  gnutls_certificate_credentials_t cred;
  int rv;
  if (gnutls_certificate_allocate_credentials(&cred) < 0) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  rv = gnutls_certificate_set_x509_trust_file(cred, file, GNUTLS_X509_FMT_PEM);
  gnutls_certificate_free_credentials(cred);
  if (rv <= 0) {
    snprintf(err, errlen, "%s",
             rv < 0 ? gnutls_strerror(rv) : "no certificate in it");
    return -1;
  }
  return 0;
}

static int check_readable(const tunnel_cfg *c, opt_id id, const char *path,
                          char *err, size_t errlen) {
  char nb[160];
  if (access(path, R_OK) != 0) {
    snprintf(err, errlen, "%s '%s': %s", tunnel_cfg_name(c, id, nb, sizeof(nb)),
             path, strerror(errno));
    return -1;
  }
  return 0;
}

static int check_addr(tunnel_cfg *c, opt_id id, const char *v, char *host,
                      uint16_t *port, int port_zero_ok, int resolve,
                      struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                      size_t errlen) {
  char nb[160], e[300];
  const char *name = tunnel_cfg_name(c, id, nb, sizeof(nb));
  if (!v) {
    const opt_def *o = opt_by_id(id);
    if (c->style == STYLE_JSON)
      snprintf(err, errlen, "%s: missing (want \"%s\")", name, o->arg);
    else
      snprintf(err, errlen, "missing %s %s", name, o->arg);
    return -1;
  }
  if (qm_split_hostport(v, host, 256, port, e, sizeof(e)) != 0) {
    snprintf(err, errlen, "%s %s", name, e);
    return -1;
  }
  if (*port == 0 && !port_zero_ok) {
    snprintf(err, errlen, "%s '%s': port must be from 1 to 65535", name, v);
    return -1;
  }
  if (resolve && tunnel_resolve(host, *port, id == OPT_LISTEN, ss, sslen)) {
    snprintf(err, errlen, "%s '%s': cannot resolve '%s'", name, v, host);
    return -1;
  }
  return 0;
}

int opt_port_range(const char *name, const char *v, char *base, size_t baselen,
                   unsigned *count, char *err, size_t errlen) {
  const char *colon = strrchr(v, ':'), *dash;
  unsigned long p1, p2;
  char *end;

  *count = 1;
  dash = colon ? strchr(colon, '-') : NULL;
  if (!dash) {
    snprintf(base, baselen, "%s", v);
    return 0;
  }
  errno = 0;
  p1 = strtoul(colon + 1, &end, 10);
  if (end != dash || colon + 1 == dash || p1 < 1 || p1 > 65535) {
    snprintf(err, errlen,
             "%s '%s': want HOST:PORT1-PORT2 with ports from 1 to 65535", name,
             v);
    return -1;
  }
  p2 = strtoul(dash + 1, &end, 10);
  if (*end || !dash[1] || dash[1] < '0' || dash[1] > '9' || errno ||
      p2 > 65535 || p2 < p1) {
    snprintf(err, errlen,
             "%s '%s': want HOST:PORT1-PORT2 with PORT1 <= PORT2 <= 65535",
             name, v);
    return -1;
  }
  if (p2 - p1 + 1 > QM_MAX_PORT_RANGE) {
    snprintf(err, errlen,
             "%s '%s': %lu ports, at most %d in a range (one UDP socket "
             "each); redirect a wider range to one port with nftables "
             "(docs/config.md)",
             name, v, p2 - p1 + 1, QM_MAX_PORT_RANGE);
    return -1;
  }
  if ((size_t)(colon - v) + 8 > baselen) {
    snprintf(err, errlen, "%s '%s': too long", name, v);
    return -1;
  }
  snprintf(base, baselen, "%.*s:%lu", (int)(colon - v), v, p1);
  *count = (unsigned)(p2 - p1 + 1);
  return 0;
}

/* Client: every --server (the first one gives remote_host/remote_port);
 * a message names the entry that is wrong ("tunnels[0].server[2]"). */
static int check_servers(tunnel_cfg *c, char *err, size_t errlen) {
  const char **w = &c->where[OPT_SERVER - OPT__FIRST], *last = *w;
  size_t i, n = c->nservers ? c->nservers : 1;
  int rv = 0;
  for (i = 0; i < n && rv == 0; i++) {
    char host[256];
    uint16_t port;
    if (i < c->nservers && c->server_where[i])
      *w = c->server_where[i];
    rv = check_addr(c, OPT_SERVER, i ? c->servers[i] : c->remote,
                    i ? host : c->remote_host, i ? &port : &c->remote_port, 0,
                    0, NULL, NULL, err, errlen);
  }
  *w = last;
  return rv;
}

/* qlog: an existing directory this process may write in. */
static int check_qlog_dir(const tunnel_cfg *c, char *err, size_t errlen) {
  char nb[160];
  struct stat sb;
  const char *name = tunnel_cfg_name(c, OPT_QLOG_DIR, nb, sizeof(nb));
  int ok = stat(c->s.qlog_dir, &sb) == 0;
  if (ok && !S_ISDIR(sb.st_mode)) {
    snprintf(err, errlen, "%s '%s': not a directory", name, c->s.qlog_dir);
    return -1;
  }
  if (!ok || access(c->s.qlog_dir, W_OK | X_OK) != 0) {
    snprintf(err, errlen, "%s '%s': %s (want an existing, writable directory)",
             name, c->s.qlog_dir, strerror(errno));
    return -1;
  }
  return 0;
}

int app_metrics_check(app_metrics *m, const char *name, const char *public_name,
                      char *err, size_t errlen) {
  if (!m->listen)
    return 0;
  return metrics_parse_addr(m->listen, m->public_ok, name, public_name,
                            &m->addr, &m->addrlen, err, errlen);
}

/* A client's "HOST:PORT1-PORT2": *v becomes "HOST:PORT1" (owned by c) and
 * *hi PORT2; a plain HOST:PORT leaves both alone (*hi = 0). */
static int split_port_range(tunnel_cfg *c, opt_id id, const char **v,
                            uint16_t *hi, char *err, size_t errlen) {
  const char *colon, *dash;
  char nb[160], *end, *head;
  unsigned long p;
  *hi = 0;
  if (!*v || !(colon = strrchr(*v, ':')) || !(dash = strchr(colon, '-')))
    return 0;
  errno = 0;
  p = strtoul(dash + 1, &end, 10);
  if (!dash[1] || *end || errno || p < 1 || p > 65535) {
    snprintf(err, errlen,
             "%s '%s': want HOST:PORT or HOST:PORT1-PORT2 (ports 1-65535)",
             tunnel_cfg_name(c, id, nb, sizeof(nb)), *v);
    return -1;
  }
  head = strndup(*v, (size_t)(dash - *v));
  *v = head ? tunnel_cfg_strdup(c, head) : NULL;
  free(head);
  if (!*v) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  *hi = (uint16_t)p;
  return 0;
}

int tunnel_cfg_check(tunnel_cfg *c, char *err, size_t errlen) {
  char nb[160], nb2[160], e[256], base[300];
  const char *listen = c->listen;
  static const opt_id udp_opts[] = {OPT_UDP_IDLE, OPT_UDP_MAX_FLOWS,
                                    OPT_UDP_FLOWS_PER_SESSION, OPT_UDP_QUEUE};
  size_t i;
  for (i = 0; !c->udp && i < sizeof(udp_opts) / sizeof(udp_opts[0]); i++)
    if (c->where[udp_opts[i] - OPT__FIRST]) {
      snprintf(err, errlen, "%s needs %s",
               tunnel_cfg_name(c, udp_opts[i], nb, sizeof(nb)),
               tunnel_cfg_name(c, OPT_UDP, nb2, sizeof(nb2)));
      return -1;
    }
  c->listen_ports = 1;
  if (listen) {
    const char *name = tunnel_cfg_name(c, OPT_LISTEN, nb, sizeof(nb));
    if (opt_port_range(name, listen, base, sizeof(base), &c->listen_ports, err,
                       errlen) != 0)
      return -1;
    if (c->listen_ports > 1 && c->role != MODE_SERVER) {
      snprintf(err, errlen,
               "%s '%s': a port range is only for a server's UDP address", name,
               listen);
      return -1;
    }
    listen = base;
  }
  if (check_addr(c, OPT_LISTEN, listen, c->listen_host, &c->listen_port, 1, 1,
                 &c->listen_addr, &c->listen_len, err, errlen) != 0)
    return -1;
  if (c->role == MODE_CLIENT) {
    const char *server = c->remote, *whole = c->remote;
    int rv;
    if (split_port_range(c, OPT_SERVER, &server, &c->remote_port_hi, err,
                         errlen) != 0)
      return -1;
    if (c->remote_port_hi && c->nservers > 1) {
      snprintf(err, errlen,
               "%s '%s': a port range is for a single server (hopping "
               "between its ports), not with several",
               tunnel_cfg_name(c, OPT_SERVER, nb, sizeof(nb)), c->remote);
      return -1;
    }
    c->remote = server; /* "HOST:PORT1" for the checks */
    rv = check_servers(c, err, errlen);
    c->remote = whole;
    if (rv != 0)
      return -1;
    if (c->remote_port_hi && c->remote_port_hi <= c->remote_port) {
      snprintf(err, errlen,
               "%s '%s': a port range goes up (PORT1-PORT2 with PORT1 < "
               "PORT2)",
               tunnel_cfg_name(c, OPT_SERVER, nb, sizeof(nb)), c->remote);
      return -1;
    }
    if (c->s.ca_file) {
      if (check_readable(c, OPT_CA, c->s.ca_file, err, errlen) != 0)
        return -1;
      if (tls_check_ca(c->s.ca_file, e, sizeof(e)) != 0) {
        snprintf(err, errlen, "%s '%s': %s",
                 tunnel_cfg_name(c, OPT_CA, nb, sizeof(nb)), c->s.ca_file, e);
        return -1;
      }
    }
    if (!c->s.insecure && c->s.no_system_roots && !c->s.ca_file) {
      snprintf(err, errlen,
               "%s without %s: no certificate could ever be trusted",
               tunnel_cfg_name(c, OPT_NO_SYSTEM_ROOTS, nb, sizeof(nb)),
               tunnel_cfg_name(c, OPT_CA, nb2, sizeof(nb2)));
      return -1;
    }
  } else {
    if (check_addr(c, OPT_TARGET, c->remote, c->remote_host, &c->remote_port, 0,
                   1, &c->remote_addr, &c->remote_len, err, errlen) != 0)
      return -1;
    if ((c->s.cert_file != NULL) != (c->s.key_file != NULL)) {
      snprintf(err, errlen, "%s and %s go together",
               tunnel_cfg_name(c, OPT_TLS_CERT, nb, sizeof(nb)),
               tunnel_cfg_name(c, OPT_TLS_KEY, nb2, sizeof(nb2)));
      return -1;
    }
    if (c->s.cert_file) {
      if (check_readable(c, OPT_TLS_CERT, c->s.cert_file, err, errlen) != 0 ||
          check_readable(c, OPT_TLS_KEY, c->s.key_file, err, errlen) != 0)
        return -1;
      if (tls_check_pair(c->s.cert_file, c->s.key_file, e, sizeof(e)) != 0) {
        snprintf(err, errlen, "%s '%s' with %s '%s': %s",
                 tunnel_cfg_name(c, OPT_TLS_CERT, nb, sizeof(nb)),
                 c->s.cert_file,
                 tunnel_cfg_name(c, OPT_TLS_KEY, nb2, sizeof(nb2)),
                 c->s.key_file, e);
        return -1;
      }
    }
  }
  if (c->s.qlog_dir && check_qlog_dir(c, err, errlen) != 0)
    return -1;
  if (c->s.zero_rtt_file && !c->s.zero_rtt) {
    snprintf(err, errlen, "%s without %s: the file keeps 0-RTT tickets",
             tunnel_cfg_name(c, OPT_ZERO_RTT_FILE, nb, sizeof(nb)),
             tunnel_cfg_name(c, OPT_ZERO_RTT, nb2, sizeof(nb2)));
    return -1;
  }
  return 0;
}

void tunnel_cfg_describe(const tunnel_cfg *c, char *buf, size_t len) {
  char tls[300], remote[512];
  size_t i, off = 0;
  snprintf(remote, sizeof(remote), "%s", c->remote ? c->remote : "");
  for (i = 1; i < c->nservers && off < sizeof(remote); i++) {
    if (i == 1)
      off = strlen(remote);
    off += (size_t)snprintf(remote + off, sizeof(remote) - off, ", %s",
                            c->servers[i]);
  }
  if (c->role == MODE_SERVER)
    snprintf(tls, sizeof(tls), "certificate %s",
             c->s.cert_file ? c->s.cert_file : "self-signed");
  else if (c->s.insecure)
    snprintf(tls, sizeof(tls), "server certificate not verified");
  else
    snprintf(tls, sizeof(tls), "server certificate verified for %s",
             c->s.server_name ? c->s.server_name : "quic.internal.v2ray.com");
  snprintf(buf, len, "%s on %s %s, %s %s (security %s, header %s, TLS %s)%s",
           c->role == MODE_CLIENT ? "client" : "server",
           c->role == MODE_CLIENT ? (c->udp ? "tcp+udp" : "tcp") : "udp",
           c->listen,
           c->role == MODE_CLIENT ? (c->nservers > 1 ? "servers" : "server")
                                  : "target",
           remote, qm_security_name(c->s.security), qm_header_name(c->s.header),
           tls, c->udp ? ", UDP flows in QUIC datagrams" : "");
}

/* ---- temporary files ---- */

static char **tmp_paths;
static size_t ntmp;

const char *app_tmpfile(const char *what, const void *data, size_t len,
                        char *err, size_t errlen) {
  const char *dir = getenv("TMPDIR");
  char *path, **v;
  size_t plen, off = 0;
  int fd;
  if (!dir || !*dir)
    dir = "/tmp";
  plen = strlen(dir) + strlen(what) + 32;
  path = malloc(plen);
  v = realloc(tmp_paths, (ntmp + 1) * sizeof(*v));
  if (!path || !v) {
    free(path);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  tmp_paths = v;
  snprintf(path, plen, "%s/quicmux-%s-XXXXXX", dir, what);
  fd = mkstemp(path); /* mode 0600 */
  if (fd < 0) {
    snprintf(err, errlen, "cannot make a temporary file in %s: %s", dir,
             strerror(errno));
    free(path);
    return NULL;
  }
  if (ntmp == 0)
    atexit(app_tmpfiles_remove);
  tmp_paths[ntmp++] = path;
  while (off < len) {
    ssize_t n = write(fd, (const char *)data + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
      close(fd);
      return NULL;
    }
    off += (size_t)n;
  }
  close(fd);
  return path;
}

void app_tmpfiles_remove(void) {
  size_t i;
  for (i = 0; i < ntmp; i++) {
    unlink(tmp_paths[i]);
    free(tmp_paths[i]);
  }
  free(tmp_paths);
  tmp_paths = NULL;
  ntmp = 0;
}
