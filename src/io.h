/*
 * io — the loop glue: a per-loop context (deferred work, shared batch
 * buffers) and the endpoint (one UDP socket + its codec + a send queue).
 *
 * A client session owns one endpoint (its own UDP socket, as in v2ray); a
 * listener owns one endpoint shared by all its sessions.
 */
#ifndef QM_IO_H
#define QM_IO_H

#include <ev.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "codec.h"
#include "internal.h"

#define QM_BATCH 32
/* Receive: fewer, larger buffers, so one GRO read can carry many datagrams */
#define QM_RX_MSGS 16
#define QM_RX_GRO_BUF 65536
/* Send: at most this many datagrams in one GSO send (kernel limit 64) */
#define QM_GSO_MAX 32

typedef struct qm_io qm_io;
typedef struct qm_endpoint qm_endpoint;

/* Something that wants work done once per loop iteration, before the loop
 * blocks: flushing writes, freeing closed objects. */
typedef struct qm_task {
  struct qm_task *next;
  int queued;
  void (*run)(struct qm_task *t);
} qm_task;

struct qm_io {
  struct ev_loop *loop;
  ev_prepare prepare;
  qm_task *tasks;
  /* receive batch, shared by every endpoint of this loop */
  struct mmsghdr *rx_msgs;
  struct iovec *rx_iov;
  struct sockaddr_storage *rx_addr;
  uint8_t *rx_buf;
  uint8_t *rx_ctrl; /* cmsg space per message (UDP_GRO segment size) */
};

int qm_io_init(qm_io *io, struct ev_loop *loop);
void qm_io_clear(qm_io *io);
/* Run t->run before the loop next blocks (once, however often queued). */
void qm_io_defer(qm_io *io, qm_task *t);

typedef void (*qm_endpoint_recv_fn)(qm_endpoint *ep,
                                    const struct sockaddr *from,
                                    socklen_t fromlen, uint8_t *quic,
                                    size_t len, void *ud);
typedef void (*qm_endpoint_writable_fn)(qm_endpoint *ep, void *ud);
/* The (connected) socket reported the peer's port unreachable. */
typedef void (*qm_endpoint_refused_fn)(qm_endpoint *ep, void *ud);

struct qm_endpoint {
  qm_io *io;
  int fd;
  int connected;
  ev_io rio;
  ev_io wio;
  qm_codec codec;
  struct sockaddr_storage local;
  socklen_t locallen;
  struct sockaddr_storage peer; /* a connected socket's peer */
  socklen_t peerlen;
  qm_endpoint_recv_fn on_recv;
  qm_endpoint_writable_fn on_writable;
  qm_endpoint_refused_fn on_refused; /* optional */
  void *ud;
  /* send queue: QM_BATCH slots of QM_RX_BUF bytes */
  uint8_t *tx_buf;
  struct mmsghdr tx_msgs[QM_BATCH];
  struct iovec tx_iov[QM_BATCH];
  struct sockaddr_storage tx_addr[QM_BATCH];
  unsigned tx_n;    /* slots filled */
  unsigned tx_sent; /* of those, already sent */
  int blocked;      /* waiting for the socket to become writable */
  int gso;          /* UDP_SEGMENT works on this socket */
  /* one send message per run of same-size datagrams to the same peer */
  struct mmsghdr gso_msgs[QM_BATCH];
  unsigned gso_count[QM_BATCH];
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } gso_ctrl[QM_BATCH];
  uint64_t rx_datagrams, tx_datagrams, rx_dropped;
  uint64_t rx_bytes, tx_bytes; /* UDP payload, wrapped */
  uint64_t rx_oversize;        /* of rx_dropped: too large or truncated */
  /* the last send error saying the local path is gone (ENETUNREACH,
   * EADDRNOTAVAIL, ...; 0 = none); whoever acts on it clears it */
  int path_err;
};

/* Open the socket (see qm_udp_open) and start reading. */
int qm_endpoint_open(qm_endpoint *ep, qm_io *io, int family,
                     const struct sockaddr *bind_addr, socklen_t bind_len,
                     const struct sockaddr *peer, socklen_t peer_len,
                     const qm_settings *s, qm_endpoint_recv_fn on_recv,
                     qm_endpoint_writable_fn on_writable, void *ud, char *err,
                     size_t errlen);
void qm_endpoint_close(qm_endpoint *ep);
/* Add the endpoint's datagram, byte and bad-datagram counts to t. */
void qm_endpoint_add_totals(const qm_endpoint *ep, qm_totals *t);

/* Largest QUIC datagram a slot can take (before wrapping). */
size_t qm_endpoint_max_quic(const qm_endpoint *ep);
/* The QUIC area of the next free send slot, or NULL when the queue is full
 * or blocked (flush first). */
uint8_t *qm_endpoint_slot(qm_endpoint *ep);
/* Wrap the n bytes written into the slot and queue them for dst (NULL on a
 * connected socket). */
void qm_endpoint_commit(qm_endpoint *ep, size_t n, const struct sockaddr *dst,
                        socklen_t dstlen);
/* Send what is queued. 0 when everything went out, QM_EAGAIN when the socket
 * is full (on_writable fires later), QM_EIO on a hard error. */
int qm_endpoint_flush(qm_endpoint *ep);
/* Reverse the order of the queued, unsent datagrams from index from on
 * (ep->tx_n before they were committed). */
void qm_endpoint_reverse(qm_endpoint *ep, unsigned from);

#endif
