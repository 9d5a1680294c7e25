/* The /metrics text of the running tunnels (tunnel_metrics.h). Every
 * family is written whole (HELP, TYPE, then its samples for all tunnels),
 * as the exposition format wants. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "prom.h"
#include "tunnel_metrics.h"

enum { ST_HANDSHAKING, ST_ESTABLISHED, ST_CLOSING, ST__COUNT };
static const char *const state_names[ST__COUNT] = {"handshaking", "established",
                                                   "closing"};

/* One tunnel, read once per scrape. */
typedef struct snap {
  const char *tag, *role;
  int server;
  tunnel_stats ts;
  tunnel_udp_stats us;
  qm_totals tot;
  qm_early_totals early;
  size_t streams;
  uint64_t refused, unroutable, bad_tokens, retries, resets;
  uint64_t migrations, hops; /* client */
  uint64_t states[ST__COUNT];
  qm_session_info *sess;
  size_t nsess;
  tunnel_worker w;     /* which worker of its config this is */
  qm_server_info *srv; /* client: its servers */
  size_t nsrv;
} snap;

static void take_server(const qm_server_info *in, void *ud) {
  snap *s = ud;
  if (s->srv && s->nsrv < TUNNEL_METRICS_MAX_SERVERS)
    s->srv[s->nsrv++] = *in;
}

static void take_session(const qm_session_info *in, void *ud) {
  snap *s = ud;
  int st = !strcmp(in->state, "handshaking")   ? ST_HANDSHAKING
           : !strcmp(in->state, "established") ? ST_ESTABLISHED
                                               : ST_CLOSING;
  s->states[st]++;
  if (s->sess && s->nsess < TUNNEL_METRICS_MAX_SESSIONS)
    s->sess[s->nsess++] = *in;
}

static void take(snap *s, const tunnel *t) {
  memset(s, 0, sizeof(*s));
  s->tag = tunnel_tag(t);
  tunnel_get_stats(t, &s->ts);
  tunnel_get_udp_stats(t, &s->us);
  if (tunnel_listener(t)) {
    qm_listener_stats ls;
    qm_listener_get_stats(tunnel_listener(t), &ls);
    s->server = 1;
    s->tot = ls.totals;
    s->early = ls.early;
    s->streams = ls.streams;
    s->refused = ls.refused_sessions;
    s->unroutable = ls.unroutable;
    s->bad_tokens = ls.bad_tokens;
    s->retries = ls.retries_sent;
    s->resets = ls.resets_sent;
  } else {
    qm_dialer_stats ds;
    qm_dialer_get_stats(tunnel_dialer(t), &ds);
    s->tot = ds.totals;
    s->early = ds.early;
    s->streams = ds.streams;
    s->migrations = ds.migrations;
    s->hops = ds.hops;
    s->srv = calloc(TUNNEL_METRICS_MAX_SERVERS, sizeof(*s->srv));
    qm_dialer_foreach_server(tunnel_dialer(t), take_server, s);
  }
  s->role = s->server ? "server" : "client";
  s->sess = calloc(TUNNEL_METRICS_MAX_SESSIONS, sizeof(*s->sess));
  tunnel_foreach_session(t, take_session, s);
  tunnel_get_worker(t, &s->w);
}

static prom_labels *base(prom_labels *l, const snap *s);

/* Add worker snap b into a (the config's sum). */
static void merge(snap *a, const snap *b) {
  size_t k;
  const uint64_t *bt = (const uint64_t *)&b->tot;
  uint64_t *at = (uint64_t *)&a->tot;
  a->ts.accepted += b->ts.accepted;
  a->ts.active += b->ts.active;
  a->ts.failed += b->ts.failed;
  a->ts.bytes_up += b->ts.bytes_up;
  a->ts.bytes_down += b->ts.bytes_down;
  for (k = 0; k < sizeof(a->tot) / sizeof(uint64_t); k++) /* all uint64_t */
    at[k] += bt[k];
  a->early.tickets += b->early.tickets;
  a->early.resumed += b->early.resumed;
  a->early.attempts += b->early.attempts;
  a->early.accepted += b->early.accepted;
  a->early.rejected += b->early.rejected;
  a->early.bytes += b->early.bytes;
  a->streams += b->streams;
  a->refused += b->refused;
  a->unroutable += b->unroutable;
  a->bad_tokens += b->bad_tokens;
  a->retries += b->retries;
  a->resets += b->resets;
  for (k = 0; k < ST__COUNT; k++)
    a->states[k] += b->states[k];
  a->us.flows += b->us.flows;
  a->us.flows_open += b->us.flows_open;
  a->us.datagrams_up += b->us.datagrams_up;
  a->us.datagrams_down += b->us.datagrams_down;
  a->us.dropped_queue += b->us.dropped_queue;
  a->us.dropped_incomplete += b->us.dropped_incomplete;
  a->us.dropped_refused += b->us.dropped_refused;
  a->us.dropped_local += b->us.dropped_local;
  for (k = 0; k < b->nsess && a->sess && a->nsess < TUNNEL_METRICS_MAX_SESSIONS;
       k++)
    a->sess[a->nsess++] = b->sess[k];
  /* client workers: each has its own server set, the same servers */
  for (k = 0; k < b->nsrv && a->srv; k++) {
    const qm_server_info *bs = &b->srv[k];
    qm_server_info *as = NULL;
    size_t j;
    for (j = 0; j < a->nsrv && !as; j++)
      if (!strcmp(a->srv[j].addr, bs->addr))
        as = &a->srv[j];
    if (!as) {
      if (a->nsrv < TUNNEL_METRICS_MAX_SERVERS)
        a->srv[a->nsrv++] = *bs;
      continue;
    }
    /* down if any worker backs off from it */
    as->backing_off = as->backing_off || bs->backing_off;
    if (bs->backoff_left_ms > as->backoff_left_ms)
      as->backoff_left_ms = bs->backoff_left_ms;
    if (bs->failures > as->failures)
      as->failures = bs->failures;
    as->sessions += bs->sessions;
    as->handshaking += bs->handshaking;
    as->streams += bs->streams;
    as->sessions_opened += bs->sessions_opened;
    as->handshakes_ok += bs->handshakes_ok;
    as->handshakes_failed += bs->handshakes_failed;
  }
}

/* Per worker of the configs that have several (label worker). */
static void per_worker(prom_buf *b, const snap *w, size_t n, const char *name,
                       const char *type, const char *help, const char *label,
                       const char *const *values, size_t nvalues,
                       uint64_t (*what)(const snap *, size_t), int seconds) {
  prom_labels l;
  size_t i, k;
  char idx[16];
  prom_family(b, name, type, help);
  for (i = 0; i < n; i++) {
    if (w[i].w.workers < 2)
      continue;
    snprintf(idx, sizeof(idx), "%u", w[i].w.worker);
    for (k = 0; k < (values ? nvalues : 1); k++) {
      prom_label(base(&l, &w[i]), "worker", idx);
      if (values)
        prom_label(&l, label, values[k]);
      if (seconds)
        prom_sample_f(b, name, &l, (double)what(&w[i], k) / 1e9);
      else
        prom_sample(b, name, &l, what(&w[i], k));
    }
  }
}

static uint64_t w_sessions(const snap *s, size_t k) {
  (void)k;
  return s->w.sessions;
}
static uint64_t w_opened(const snap *s, size_t k) {
  (void)k;
  return s->w.sessions_opened;
}
static uint64_t w_conns(const snap *s, size_t k) {
  (void)k;
  return s->w.connections;
}
static uint64_t w_datagrams(const snap *s, size_t k) {
  return k ? s->w.datagrams_tx : s->w.datagrams_rx;
}
static const char *const dirs_handoff[] = {"out", "in"};
static uint64_t w_handoffs(const snap *s, size_t k) {
  return k ? s->w.handoffs_in : s->w.handoffs_out;
}
static uint64_t w_cpu(const snap *s, size_t k) {
  (void)k;
  return s->w.cpu_ns;
}

static prom_labels *base(prom_labels *l, const snap *s) {
  l->n = 0;
  prom_label(l, "tunnel", s->tag);
  return prom_label(l, "role", s->role);
}

/* A family with one sample per tunnel: what(s) gives the value; servers
 * only when server_only. */
typedef uint64_t (*value_fn)(const snap *s);

static void per_tunnel(prom_buf *b, const snap *v, size_t n, const char *name,
                       const char *type, const char *help, value_fn what,
                       int server_only) {
  prom_labels l;
  size_t i;
  prom_family(b, name, type, help);
  for (i = 0; i < n; i++)
    if (v[i].server || !server_only)
      prom_sample(b, name, base(&l, &v[i]), what(&v[i]));
}

static uint64_t v_tickets(const snap *s) {
  return s->early.tickets;
}
static uint64_t v_resumed(const snap *s) {
  return s->early.resumed;
}
static uint64_t v_early_offered(const snap *s) {
  return s->early.attempts;
}
static uint64_t v_early_accepted(const snap *s) {
  return s->early.accepted;
}
static uint64_t v_early_rejected(const snap *s) {
  return s->early.rejected;
}
static uint64_t v_early_bytes(const snap *s) {
  return s->early.bytes;
}
static uint64_t v_accepted(const snap *s) {
  return s->ts.accepted;
}
static uint64_t v_failed(const snap *s) {
  return s->ts.failed;
}
static uint64_t v_active(const snap *s) {
  return s->ts.active;
}
static uint64_t v_opened(const snap *s) {
  return s->tot.sessions_opened;
}
static uint64_t v_refused(const snap *s) {
  return s->refused;
}
static uint64_t v_streams(const snap *s) {
  return s->streams;
}
static uint64_t v_st_opened(const snap *s) {
  return s->tot.streams_opened;
}
static uint64_t v_st_closed(const snap *s) {
  return s->tot.streams_closed;
}
static uint64_t v_st_reset(const snap *s) {
  return s->tot.streams_reset;
}
static uint64_t v_retries(const snap *s) {
  return s->retries;
}
static uint64_t v_resets(const snap *s) {
  return s->resets;
}
static uint64_t v_migrations(const snap *s) {
  return s->migrations;
}
static uint64_t v_hops(const snap *s) {
  return s->hops;
}

/* Per tunnel, one sample for each value of one more label. */
static void per_label(prom_buf *b, const snap *v, size_t n, const char *name,
                      const char *type, const char *help, const char *label,
                      const char *const *values, size_t nvalues,
                      uint64_t (*what)(const snap *, size_t)) {
  prom_labels l;
  size_t i, k;
  prom_family(b, name, type, help);
  for (i = 0; i < n; i++)
    for (k = 0; k < nvalues; k++)
      if (values[k])
        prom_sample(b, name, prom_label(base(&l, &v[i]), label, values[k]),
                    what(&v[i], k));
}

static const char *const dirs_updown[] = {"up", "down"};
static uint64_t v_bytes(const snap *s, size_t k) {
  /* up = client to server: a client reads it from TCP, a server writes
   * it to TCP */
  int from_tcp = (k == 0) != s->server;
  return from_tcp ? s->ts.bytes_up : s->ts.bytes_down;
}
static uint64_t v_states(const snap *s, size_t k) {
  return s->states[k];
}
static uint64_t v_closed(const snap *s, size_t k) {
  return s->tot.sessions_closed[k];
}
static const char *const dirs_rxtx[] = {"received", "sent"};
static uint64_t v_datagrams(const snap *s, size_t k) {
  return k ? s->tot.datagrams_tx : s->tot.datagrams_rx;
}
static uint64_t v_udp_bytes(const snap *s, size_t k) {
  return k ? s->tot.bytes_tx : s->tot.bytes_rx;
}
static const char *const bad_kinds[] = {"short",     "auth",       "oversize",
                                        "malformed", "unroutable", "bad_token"};
static uint64_t v_bad(const snap *s, size_t k) {
  const uint64_t v[] = {s->tot.bad_short,    s->tot.bad_auth,
                        s->tot.bad_oversize, s->tot.bad_malformed,
                        s->unroutable,       s->bad_tokens};
  return v[k];
}

/* Per-server series of a client (label server = "IP:PORT"). */
static void per_server(prom_buf *b, const snap *v, size_t n, const char *name,
                       const char *type, const char *help,
                       uint64_t (*what)(const qm_server_info *), int ms) {
  prom_labels l;
  size_t i, k;
  prom_family(b, name, type, help);
  for (i = 0; i < n; i++)
    for (k = 0; k < v[i].nsrv; k++) {
      const qm_server_info *in = &v[i].srv[k];
      base(&l, &v[i]);
      prom_label(&l, "server", in->addr);
      if (ms)
        prom_sample_f(b, name, &l, (double)what(in) / 1e3);
      else
        prom_sample(b, name, &l, what(in));
    }
}
static uint64_t sv_up(const qm_server_info *in) {
  return !in->backing_off;
}
static uint64_t sv_backoff(const qm_server_info *in) {
  return in->backoff_left_ms;
}
static uint64_t sv_sessions(const qm_server_info *in) {
  return in->sessions;
}
static uint64_t sv_streams(const qm_server_info *in) {
  return in->streams;
}
static uint64_t sv_opened(const qm_server_info *in) {
  return in->sessions_opened;
}
static uint64_t sv_hs_ok(const qm_server_info *in) {
  return in->handshakes_ok;
}
static uint64_t sv_hs_failed(const qm_server_info *in) {
  return in->handshakes_failed;
}

static uint64_t v_flows(const snap *s) {
  return s->us.flows;
}
static uint64_t v_flows_open(const snap *s) {
  return s->us.flows_open;
}
static uint64_t v_flow_dgrams(const snap *s, size_t k) {
  return k ? s->us.datagrams_down : s->us.datagrams_up;
}
static const char *const flow_drops[] = {"queue_full", "incomplete", "refused",
                                         "local"};
static uint64_t v_flow_drops(const snap *s, size_t k) {
  const uint64_t v[] = {s->us.dropped_queue, s->us.dropped_incomplete,
                        s->us.dropped_refused, s->us.dropped_local};
  return v[k];
}

/* Per-session gauges. */
static void per_session(prom_buf *b, const snap *v, size_t n, const char *name,
                        const char *help, int seconds,
                        uint64_t (*what)(const qm_session_info *)) {
  prom_labels l;
  size_t i, k;
  char id[24];
  prom_family(b, name, "gauge", help);
  for (i = 0; i < n; i++)
    for (k = 0; k < v[i].nsess; k++) {
      const qm_session_info *in = &v[i].sess[k];
      snprintf(id, sizeof(id), "%llu", (unsigned long long)in->id);
      base(&l, &v[i]);
      prom_label(&l, "session", id);
      prom_label(&l, "peer", in->peer);
      if (seconds)
        prom_sample_f(b, name, &l, (double)what(in) / 1e6);
      else
        prom_sample(b, name, &l, what(in));
    }
}

static uint64_t s_rtt(const qm_session_info *in) {
  return in->smoothed_rtt_us;
}
static uint64_t s_min_rtt(const qm_session_info *in) {
  return in->min_rtt_us;
}
static uint64_t s_cwnd(const qm_session_info *in) {
  return in->cwnd;
}
static uint64_t s_flight(const qm_session_info *in) {
  return in->bytes_in_flight;
}
static uint64_t s_streams(const qm_session_info *in) {
  return in->streams;
}

static void endpoint_counts(prom_buf *b, const metrics_counts *mc) {
  static const char *const codes[] = {"200", "404", "405", "4xx", "5xx"};
  char name[] = "quicmux_metrics_requests_total";
  prom_labels l;
  size_t k;
  prom_family(b, name, "counter",
              "HTTP requests the metrics endpoint answered, by status");
  for (k = 0; k < 5; k++) {
    l.n = 0;
    prom_sample(b, name, prom_label(&l, "code", codes[k]), mc->requests[k]);
  }
  prom_family(b, "quicmux_metrics_connections_rejected_total", "counter",
              "connections to the metrics endpoint refused (503) because "
              "16 were open");
  prom_sample(b, "quicmux_metrics_connections_rejected_total", NULL,
              mc->rejected);
  prom_family(b, "quicmux_metrics_connections_timed_out_total", "counter",
              "connections to the metrics endpoint closed after 5 s");
  prom_sample(b, "quicmux_metrics_connections_timed_out_total", NULL,
              mc->timed_out);
  prom_family(b, "quicmux_metrics_connections", "gauge",
              "connections to the metrics endpoint open now");
  prom_sample(b, "quicmux_metrics_connections", NULL, mc->open);
}

int tunnel_metrics_text(tunnel *const *t, size_t n, const metrics_counts *mc,
                        char **body, size_t *len) {
  static const char *const roles[] = {"client", "server"};
  snap *v = calloc(n ? n : 1, sizeof(*v)), *w = calloc(n ? n : 1, sizeof(*w));
  const char *causes[QM_CLOSE__COUNT];
  prom_buf b;
  prom_labels l;
  size_t i, k, nw = n, per_role[2] = {0, 0};
  int rv = -1;

  if (!v || !w) {
    free(v);
    free(w);
    return -1;
  }
  prom_init(&b);
  /* w: one snap per worker; v: one per config, its workers added up */
  for (i = 0, n = 0; i < nw; i++) {
    take(&w[i], t[i]);
    if (w[i].w.worker == 0 || n == 0) {
      v[n] = w[i];
      v[n].sess = calloc(TUNNEL_METRICS_MAX_SESSIONS, sizeof(*v[n].sess));
      v[n].nsess = 0;
      v[n].srv = w[i].srv
                     ? calloc(TUNNEL_METRICS_MAX_SERVERS, sizeof(*v[n].srv))
                     : NULL;
      v[n].nsrv = 0;
      memset(&v[n].ts, 0, sizeof(v[n].ts));
      memset(&v[n].tot, 0, sizeof(v[n].tot));
      memset(&v[n].early, 0, sizeof(v[n].early));
      v[n].streams = v[n].refused = v[n].unroutable = v[n].bad_tokens = 0;
      v[n].retries = v[n].resets = 0;
      memset(v[n].states, 0, sizeof(v[n].states));
      memset(&v[n].us, 0, sizeof(v[n].us));
      per_role[v[n].server]++;
      n++;
    }
    merge(&v[n - 1], &w[i]);
  }
  for (k = 0; k < QM_CLOSE__COUNT; k++)
    causes[k] = qm_close_cause_name((int)k);

  prom_family(&b, "quicmux_build_info", "gauge",
              "always 1; the labels name the versions");
  l.n = 0;
  prom_label(&l, "version", qm_version());
  prom_label(&l, "ngtcp2", app_ngtcp2_version());
  prom_label(&l, "gnutls", app_gnutls_version());
  prom_sample(&b, "quicmux_build_info", &l, 1);
  prom_family(&b, "quicmux_tunnels", "gauge", "tunnels running, by role");
  for (k = 0; k < 2; k++) {
    l.n = 0;
    prom_sample(&b, "quicmux_tunnels", prom_label(&l, "role", roles[k]),
                per_role[k]);
  }

  per_tunnel(&b, v, n, "quicmux_connections_total", "counter",
             "TCP connections accepted (client) or streams accepted "
             "(server)",
             v_accepted, 0);
  per_tunnel(&b, v, n, "quicmux_connections_failed_total", "counter",
             "connections that failed: dial or target connect failed, "
             "refused, or ended with an error",
             v_failed, 0);
  per_tunnel(&b, v, n, "quicmux_connections_open", "gauge",
             "connections being carried now", v_active, 0);
  per_label(&b, v, n, "quicmux_tunnel_bytes_total", "counter",
            "bytes carried between TCP and streams; up = client to server",
            "direction", dirs_updown, 2, v_bytes);

  per_label(&b, v, n, "quicmux_sessions", "gauge",
            "QUIC sessions now, by state", "state", state_names, ST__COUNT,
            v_states);
  per_tunnel(&b, v, n, "quicmux_sessions_opened_total", "counter",
             "QUIC sessions started (client) or accepted (server)", v_opened,
             0);
  per_label(&b, v, n, "quicmux_sessions_closed_total", "counter",
            "QUIC sessions ended, by cause (closed = a clean close; the "
            "others are failures)",
            "cause", causes, QM_CLOSE__COUNT, v_closed);
  per_tunnel(&b, v, n, "quicmux_sessions_refused_total", "counter",
             "new client sessions refused over the session cap", v_refused, 1);

  per_tunnel(&b, v, n, "quicmux_streams", "gauge", "QUIC streams open now",
             v_streams, 0);
  per_tunnel(&b, v, n, "quicmux_streams_opened_total", "counter",
             "QUIC streams opened", v_st_opened, 0);
  per_tunnel(&b, v, n, "quicmux_streams_closed_total", "counter",
             "QUIC streams ended, for any reason", v_st_closed, 0);
  per_tunnel(&b, v, n, "quicmux_stream_resets_total", "counter",
             "QUIC streams ended by a reset from either side", v_st_reset, 0);

  per_label(&b, v, n, "quicmux_udp_datagrams_total", "counter",
            "UDP datagrams of the QUIC sessions", "direction", dirs_rxtx, 2,
            v_datagrams);
  per_label(&b, v, n, "quicmux_udp_bytes_total", "counter",
            "UDP payload bytes of the QUIC sessions (as on the wire, "
            "wrapped)",
            "direction", dirs_rxtx, 2, v_udp_bytes);
  per_label(&b, v, n, "quicmux_bad_datagrams_total", "counter",
            "datagrams dropped on receipt: short, auth (failed to "
            "authenticate: wrong key or forged), oversize, malformed, "
            "unroutable and bad_token (server)",
            "kind", bad_kinds, 6, v_bad);
  per_tunnel(&b, v, n, "quicmux_retries_sent_total", "counter",
             "QUIC Retry packets sent (address validation)", v_retries, 1);
  per_tunnel(&b, v, n, "quicmux_stateless_resets_sent_total", "counter",
             "stateless resets sent for packets of unknown sessions (a "
             "restart, or a session that ended)",
             v_resets, 1);
  per_tunnel(&b, v, n, "quicmux_session_tickets_total", "counter",
             "TLS session tickets received (client) or sent (server), "
             "with --0rtt",
             v_tickets, 0);
  per_tunnel(&b, v, n, "quicmux_sessions_resumed_total", "counter",
             "sessions resumed with a session ticket", v_resumed, 0);
  per_tunnel(&b, v, n, "quicmux_early_data_offered_total", "counter",
             "client: new sessions that opened streams in 0-RTT",
             v_early_offered, 0);
  per_tunnel(&b, v, n, "quicmux_early_data_accepted_total", "counter",
             "sessions whose 0-RTT data the server accepted", v_early_accepted,
             0);
  per_tunnel(&b, v, n, "quicmux_early_data_rejected_total", "counter",
             "client: sessions whose 0-RTT data the server refused (the "
             "streams were sent again after the handshake)",
             v_early_rejected, 0);
  per_tunnel(&b, v, n, "quicmux_early_data_bytes_total", "counter",
             "stream bytes in 0-RTT packets: client sent, server received",
             v_early_bytes, 0);
  per_tunnel(&b, v, n, "quicmux_migrations_total", "counter",
             "client: sessions moved to a new UDP socket (network change, "
             "dead path, port hop)",
             v_migrations, 0);
  per_tunnel(&b, v, n, "quicmux_hops_total", "counter",
             "client: of the migrations, hops to another port of the "
             "server's range",
             v_hops, 0);

  per_tunnel(&b, v, n, "quicmux_udp_flows_total", "counter",
             "UDP flows (--udp) opened: local peers (client) or flows "
             "accepted (server)",
             v_flows, 0);
  per_tunnel(&b, v, n, "quicmux_udp_flows_open", "gauge", "UDP flows open now",
             v_flows_open, 0);
  per_label(&b, v, n, "quicmux_udp_flow_datagrams_total", "counter",
            "UDP datagrams carried by flows; up = client to server",
            "direction", dirs_updown, 2, v_flow_dgrams);
  per_label(&b, v, n, "quicmux_udp_flow_dropped_total", "counter",
            "UDP datagrams of flows dropped: queue_full (sent faster than "
            "the path carries), incomplete (a fragment was lost), refused "
            "(flow cap, or a peer without datagrams), local (a local "
            "socket's buffer was full)",
            "reason", flow_drops, 4, v_flow_drops);

  per_session(&b, v, n, "quicmux_session_rtt_seconds",
              "smoothed round-trip time of a session (at most 256 sessions "
              "per tunnel are listed)",
              1, s_rtt);
  per_session(&b, v, n, "quicmux_session_min_rtt_seconds",
              "smallest round-trip time seen on a session", 1, s_min_rtt);
  per_session(&b, v, n, "quicmux_session_cwnd_bytes",
              "congestion window of a session", 0, s_cwnd);
  per_session(&b, v, n, "quicmux_session_bytes_in_flight",
              "bytes sent and not yet acknowledged on a session", 0, s_flight);
  per_session(&b, v, n, "quicmux_session_streams", "streams open on a session",
              0, s_streams);

  per_worker(&b, w, nw, "quicmux_worker_sessions", "gauge",
             "QUIC sessions now on each worker (--workers)", NULL, NULL, 0,
             w_sessions, 0);
  per_worker(&b, w, nw, "quicmux_worker_sessions_opened_total", "counter",
             "QUIC sessions started or accepted by each worker", NULL, NULL, 0,
             w_opened, 0);
  per_worker(&b, w, nw, "quicmux_worker_connections_total", "counter",
             "connections (client) or streams (server) each worker carried",
             NULL, NULL, 0, w_conns, 0);
  per_worker(&b, w, nw, "quicmux_worker_udp_datagrams_total", "counter",
             "UDP datagrams of each worker", "direction", dirs_rxtx, 2,
             w_datagrams, 0);
  per_worker(&b, w, nw, "quicmux_worker_handoffs_total", "counter",
             "server: datagrams of another worker's session handed to it "
             "(out), and taken from other workers (in)",
             "direction", dirs_handoff, 2, w_handoffs, 0);
  per_worker(&b, w, nw, "quicmux_worker_cpu_seconds_total", "counter",
             "CPU time of each worker thread", NULL, NULL, 0, w_cpu, 1);
  per_server(&b, v, n, "quicmux_server_up", "gauge",
             "client: 1 if new connections may go to this server, 0 while "
             "it backs off after failed handshakes",
             sv_up, 0);
  per_server(&b, v, n, "quicmux_server_backoff_seconds", "gauge",
             "client: time left until a backing-off server is tried again",
             sv_backoff, 1);
  per_server(&b, v, n, "quicmux_server_sessions", "gauge",
             "client: QUIC sessions to this server now", sv_sessions, 0);
  per_server(&b, v, n, "quicmux_server_streams", "gauge",
             "client: streams open or queued on this server's sessions",
             sv_streams, 0);
  per_server(&b, v, n, "quicmux_server_sessions_opened_total", "counter",
             "client: QUIC sessions started to this server", sv_opened, 0);
  per_server(&b, v, n, "quicmux_server_handshakes_ok_total", "counter",
             "client: handshakes with this server that completed", sv_hs_ok, 0);
  per_server(&b, v, n, "quicmux_server_handshakes_failed_total", "counter",
             "client: handshakes with this server that failed (timeout, "
             "refused, TLS)",
             sv_hs_failed, 0);
  if (mc)
    endpoint_counts(&b, mc);

  if (!b.oom) {
    *body = b.p;
    *len = b.len;
    b.p = NULL;
    rv = 0;
  }
  prom_free(&b);
  for (i = 0; i < n; i++) {
    free(v[i].sess);
    free(v[i].srv);
  }
  for (i = 0; i < nw; i++) {
    free(w[i].sess);
    free(w[i].srv);
  }
  free(v);
  free(w);
  return rv;
}
