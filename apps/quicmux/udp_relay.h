/*
 * udp_relay — UDP through a tunnel (--udp), over the library's flows.
 *
 * client: one UDP socket on the tunnel's listen address; each local peer
 *         address is one flow through the dialer to the server.
 * server: each flow the listener accepts gets a UDP socket of its own,
 *         connected to the target; replies go back on the flow.
 * Flows close after the idle time (the library's), and the flow caps
 * bound the sockets.
 */
#ifndef QM_APP_UDP_RELAY_H
#define QM_APP_UDP_RELAY_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "quicmux/quicmux.h"

typedef struct udp_relay udp_relay;

typedef struct udp_relay_stats {
  uint64_t flows;           /* server: flows accepted */
  uint64_t flows_open;      /* local peers (client) / sockets (server) now */
  uint64_t datagrams_up;    /* client: queued to the server; server: sent to
                               the target */
  uint64_t datagrams_down;  /* toward the client side */
  uint64_t dropped_local;   /* a local socket's send buffer was full */
  uint64_t dropped_refused; /* client: no flow for the peer (refused, cap) */
  uint64_t refused;         /* client: flows refused */
} udp_relay_stats;

int udp_relay_client_new(
    udp_relay **out, struct ev_loop *loop, qm_dialer *d,
    const struct sockaddr *listen, socklen_t listenlen,
    const char *server_host /* NULL: the dialer's server set */,
    uint16_t server_port, const qm_flow_settings *fs, const char *tag,
    char *err, size_t errlen);
int udp_relay_server_new(udp_relay **out, struct ev_loop *loop, qm_listener *l,
                         const struct sockaddr *target, socklen_t targetlen,
                         const qm_flow_settings *fs, const char *tag, char *err,
                         size_t errlen);
void udp_relay_set_tag(udp_relay *u, const char *tag);
void udp_relay_get_stats(const udp_relay *u, udp_relay_stats *st);
/* Free before the dialer / listener it uses. */
void udp_relay_free(udp_relay *u);

#endif
