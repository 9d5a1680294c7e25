/*
 * tunnel — TCP <-> QUIC stream splicing for the quicmux program.
 *
 * client tunnel: listen on TCP, carry each accepted connection as one stream
 *                through a qm_dialer to the server.
 * server tunnel: accept streams on a qm_listener, connect each to a TCP target.
 */
#ifndef QM_APP_TUNNEL_H
#define QM_APP_TUNNEL_H

#include <netinet/in.h>
#include <stdint.h>
#include <time.h>

#include <ev.h>

#include "quicmux/quicmux.h"

typedef struct tunnel tunnel;

typedef struct tunnel_stats {
  uint64_t accepted;   /* TCP connections (client) / streams (server) */
  uint64_t active;     /* splices alive now */
  uint64_t failed;     /* dial / connect failures and resets */
  uint64_t bytes_up;   /* TCP -> stream */
  uint64_t bytes_down; /* stream -> TCP */
} tunnel_stats;

/* Client: TCP listen address; streams go to server_host:server_port. */
int tunnel_client_new(tunnel **out, struct ev_loop *loop,
                      const struct sockaddr *listen_addr, socklen_t listenlen,
                      const char *server_host, uint16_t server_port,
                      uint16_t server_port_hi, const qm_settings *s, char *err,
                      size_t errlen);
/* Client: carry connections to several servers ("HOST:PORT" each) instead
 * of server_host:server_port (qm_dialer_set_servers). */
int tunnel_client_set_servers(tunnel *t, const char *const *servers, size_t n);
/* Server: QUIC (UDP) listen address, on nports ports from its port on;
 * streams go to the TCP target. */
int tunnel_server_new(tunnel **out, struct ev_loop *loop,
                      const struct sockaddr *listen_addr, socklen_t listenlen,
                      unsigned nports, const struct sockaddr *target,
                      socklen_t targetlen, const qm_settings *s, char *err,
                      size_t errlen);
/* --udp: carry UDP too (client: on the TCP listen address; server: to
 * the target). Call right after tunnel_client_new / tunnel_server_new. */
int tunnel_enable_udp(tunnel *t, const qm_flow_settings *fs, char *err,
                      size_t errlen);
/* The address the tunnel listens on (TCP for a client, UDP for a server). */
int tunnel_local_addr(const tunnel *t, struct sockaddr_storage *ss,
                      socklen_t *len);
/* Stop accepting new connections (a server refuses new streams); open ones
 * go on. */
void tunnel_stop_accepting(tunnel *t);
void tunnel_free(tunnel *t);
void tunnel_get_stats(const tunnel *t, tunnel_stats *st);
/* Name the tunnel in logs and stats (default "client" / "server"). */
int tunnel_set_tag(tunnel *t, const char *tag);
/* One line describing the tunnel's state (sessions, streams, datagrams). */
void tunnel_describe(const tunnel *t, char *buf, size_t len);
/* The same line for n workers of one config, their counts added up. */
void tunnel_describe_n(const tunnel *const *ts, size_t n, char *buf,
                       size_t len);
/* One line per server (client: its state, see qm_server_info), then one
 * per session (RTT, congestion window, streams, ...). */
void tunnel_describe_sessions(const tunnel *t,
                              void (*line)(const char *, void *), void *ud);
/* For the metrics: the tunnel's name (tag, or "client" / "server"), its
 * dialer (client) or listener (server; the other is NULL), and every
 * session of it. */
const char *tunnel_tag(const tunnel *t);
const qm_dialer *tunnel_dialer(const tunnel *t);
const qm_listener *tunnel_listener(const tunnel *t);
void tunnel_foreach_session(const tunnel *t,
                            void (*fn)(const qm_session_info *, void *),
                            void *ud);
/* --udp: the relay's counts and every flow's (zeros without --udp). */
typedef struct tunnel_udp_stats {
  uint64_t flows, flows_open;
  uint64_t datagrams_up, datagrams_down;
  uint64_t dropped_queue, dropped_incomplete, dropped_refused, dropped_local;
} tunnel_udp_stats;
void tunnel_get_udp_stats(const tunnel *t, tunnel_udp_stats *st);
/* TCP connections (client) or streams (server) still open. */
uint64_t tunnel_open_connections(const tunnel *t);
/* The listener of a server tunnel (NULL for a client), for its loop. */
qm_listener *tunnel_listener_mut(tunnel *t);

/* ---- workers (workers.c runs one tunnel per loop for one config) ---- */
/* This tunnel is worker `worker` of `workers`; cpu_clock: its thread's CPU
 * clock (NULL: none); steering: how datagrams reach their worker
 * ("ebpf", "handoff", a static string, or NULL). */
void tunnel_set_worker(tunnel *t, unsigned worker, unsigned workers,
                       const clockid_t *cpu_clock, const char *steering);
typedef struct tunnel_worker {
  unsigned worker, workers;
  const char *steering;
  uint64_t cpu_ns; /* the worker thread's CPU time (0 when unknown) */
  size_t sessions;
  uint64_t sessions_opened;
  uint64_t connections, connections_open;
  uint64_t datagrams_rx, datagrams_tx;
  uint64_t handoffs_out, handoffs_in;
} tunnel_worker;
void tunnel_get_worker(const tunnel *t, tunnel_worker *w);
/* One line for one worker (SIGUSR1). */
void tunnel_describe_worker(const tunnel *t, char *buf, size_t len);

/* Resolve "host" + port to an address (IP literal or name). 0 or < 0. */
int tunnel_resolve(const char *host, uint16_t port, int passive,
                   struct sockaddr_storage *ss, socklen_t *len);

#endif
