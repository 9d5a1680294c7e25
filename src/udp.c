/* Non-blocking UDP sockets with batched I/O (recvmmsg/sendmmsg). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "udp.h"

#define QM_UDP_SOCKBUF (4 * 1024 * 1024)

static void set_buffers(int fd) {
  int sz = QM_UDP_SOCKBUF;
  /* FORCE works as root and ignores rmem_max; fall back to the plain one. */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) != 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) != 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
}

int qm_udp_open(int family, const struct sockaddr *bind_addr,
                socklen_t bind_len, const struct sockaddr *peer,
                socklen_t peer_len, int fwmark, char *err, size_t errlen) {
  int fd, one = 1;

  fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return QM_EIO;
  }
  set_buffers(fd);
  if (fwmark &&
      setsockopt(fd, SOL_SOCKET, SO_MARK, &fwmark, sizeof(fwmark)) != 0) {
    snprintf(err, errlen, "SO_MARK %d: %s", fwmark, strerror(errno));
    close(fd);
    return QM_EIO;
  }
  if (bind_addr) {
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (family == AF_INET6)
      (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, bind_addr, bind_len) != 0) {
      snprintf(err, errlen, "bind: %s", strerror(errno));
      close(fd);
      return QM_EIO;
    }
  }
  if (peer && connect(fd, peer, peer_len) != 0) {
    snprintf(err, errlen, "connect: %s", strerror(errno));
    close(fd);
    return QM_EIO;
  }
  return fd;
}

int qm_udp_recv(int fd, struct mmsghdr *msgs, unsigned n) {
  int r;
  do {
    r = recvmmsg(fd, msgs, n, 0, NULL);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return 0;
    /* ICMP errors on a connected socket surface here. */
    if (errno == ECONNREFUSED)
      return QM_EREFUSED;
    if (errno == EHOSTUNREACH || errno == ENETUNREACH)
      return 0;
    return QM_EIO;
  }
  return r;
}

int qm_udp_send(int fd, struct mmsghdr *msgs, unsigned n, int *path_err) {
  int r;
  do {
    r = sendmmsg(fd, msgs, n, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
      return 0;
    /* The local network lost its route or the socket's source address
     * (a client that changed networks): gone, and worth telling. */
    if (errno == ENETUNREACH || errno == EHOSTUNREACH ||
        errno == EADDRNOTAVAIL || errno == ENETDOWN) {
      *path_err = errno;
      return 1;
    }
    /* A refused peer or too large: the datagram is gone, as on the wire. */
    if (errno == ECONNREFUSED || errno == EMSGSIZE)
      return 1;
    return QM_EIO;
  }
  return r;
}
