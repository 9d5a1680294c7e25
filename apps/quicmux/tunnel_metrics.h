/*
 * tunnel_metrics — the program's Prometheus metrics: the running tunnels
 * (tunnel stats, the library's qm_totals and sessions) and the metrics
 * endpoint's own counts, as the text GET /metrics answers. Names follow
 * Prometheus' conventions: quicmux_ prefix, _total for counters, seconds
 * and bytes; labels tunnel (the tag) and role (client, server).
 */
#ifndef QM_APP_TUNNEL_METRICS_H
#define QM_APP_TUNNEL_METRICS_H

#include <stddef.h>

#include "metrics.h"
#include "tunnel.h"

/* Per-session series (RTT, congestion window, ...) for at most this many
 * sessions of each tunnel, so a server with thousands of clients stays
 * scrapable; the totals always cover every session. */
#define TUNNEL_METRICS_MAX_SESSIONS 256
/* Servers listed per client tunnel. */
#define TUNNEL_METRICS_MAX_SERVERS 64

/* The text for tunnels t[0..n) and the endpoint counts mc (may be NULL):
 * malloc'd into *body. 0, or -1 when out of memory. */
int tunnel_metrics_text(tunnel *const *t, size_t n, const metrics_counts *mc,
                        char **body, size_t *len);

#endif
