/*
 * metrics — a small HTTP/1.x server on the program's libev loop (no
 * threads) that answers GET /metrics with the text a render callback
 * makes. Bounded on every side: at most METRICS_MAX_CONNS connections
 * (further ones get 503 and are closed), requests of at most
 * METRICS_MAX_REQUEST bytes (larger: 431), METRICS_TIMEOUT seconds per
 * connection from accept to the last byte of the answer; one request per
 * connection (Connection: close). Any other path is 404, any other method
 * on /metrics 405 with Allow: GET.
 */
#ifndef QM_APP_METRICS_H
#define QM_APP_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>

#define METRICS_MAX_CONNS 16
#define METRICS_MAX_REQUEST 8192
#define METRICS_TIMEOUT 5.0

typedef struct metrics_server metrics_server;

/* Make the body of GET /metrics: a malloc'd text in *body (the server
 * frees it) and its length; -1 on failure (the client gets 500). */
typedef int (*metrics_render_fn)(char **body, size_t *len, void *ud);

/* Parse HOST:PORT (an IP literal or a name) for the endpoint. Unless
 * public, only a loopback address is allowed: the metrics name peers and
 * traffic. name / public_name spell the options in messages ("--metrics",
 * "metrics.listen"). -1 with err. */
int metrics_parse_addr(const char *v, int public, const char *name,
                       const char *public_name, struct sockaddr_storage *ss,
                       socklen_t *len, char *err, size_t errlen);

int metrics_server_new(metrics_server **out, struct ev_loop *loop,
                       const struct sockaddr *addr, socklen_t addrlen,
                       metrics_render_fn render, void *ud, char *err,
                       size_t errlen);
/* Close the listening socket and every connection. */
void metrics_server_free(metrics_server *m);

/* The server's own counts, for the quicmux_metrics_* series. */
typedef struct metrics_counts {
  uint64_t requests[5]; /* answered: 200, 404, 405, 4xx else, 5xx */
  uint64_t rejected;    /* connections over METRICS_MAX_CONNS */
  uint64_t timed_out;   /* connections closed by METRICS_TIMEOUT */
  unsigned open;        /* connections now */
} metrics_counts;
void metrics_server_counts(const metrics_server *m, metrics_counts *c);

#endif
