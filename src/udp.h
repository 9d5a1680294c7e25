/*
 * udp — non-blocking UDP sockets, IPv4 and IPv6, batched receive and send.
 * Knows nothing of QUIC or obfuscation.
 */
#ifndef QM_UDP_H
#define QM_UDP_H

#include <stddef.h>
#include <sys/socket.h>

struct mmsghdr;

/* Open a non-blocking UDP socket of addr's family. If bind_addr is given the
 * socket is bound there (SO_REUSEPORT on, like v2ray); if peer is given it is
 * connect()ed to it. Socket buffers are enlarged (SO_*BUFFORCE when
 * permitted). fwmark != 0 sets SO_MARK. Returns the fd or a QM_E* code, with
 * a reason in err. */
int qm_udp_open(int family, const struct sockaddr *bind_addr,
                socklen_t bind_len, const struct sockaddr *peer,
                socklen_t peer_len, int fwmark, char *err, size_t errlen);

/* recvmmsg wrapper: returns datagrams read (0 when none), QM_EREFUSED when
 * a connected socket got ICMP port unreachable, or QM_EIO. */
int qm_udp_recv(int fd, struct mmsghdr *msgs, unsigned n);
/* sendmmsg wrapper: returns datagrams sent (may be fewer than n; 0 when the
 * socket is full), or QM_EIO on a hard error. A datagram the local network
 * cannot carry (no route, source address gone) counts as sent, as a loss
 * on the wire would, and *path_err gets the errno (else it is left alone):
 * the socket's path is gone, a new socket may find another. */
int qm_udp_send(int fd, struct mmsghdr *msgs, unsigned n, int *path_err);

#endif
