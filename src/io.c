/* Loop glue: deferred tasks, shared receive batch, endpoints. */
#include <errno.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io.h"
#include "udp.h"

static void io_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
  qm_io *io = w->data;
  (void)loop;
  (void)revents;
  /* Tasks may queue more tasks; run until the list is empty. */
  while (io->tasks) {
    qm_task *t = io->tasks;
    io->tasks = t->next;
    t->next = NULL;
    t->queued = 0;
    t->run(t);
  }
}

int qm_io_init(qm_io *io, struct ev_loop *loop) {
  unsigned i;
  memset(io, 0, sizeof(*io));
  io->loop = loop;
  io->rx_msgs = calloc(QM_RX_MSGS, sizeof(*io->rx_msgs));
  io->rx_iov = calloc(QM_RX_MSGS, sizeof(*io->rx_iov));
  io->rx_addr = calloc(QM_RX_MSGS, sizeof(*io->rx_addr));
  io->rx_buf = malloc((size_t)QM_RX_MSGS * QM_RX_GRO_BUF);
  io->rx_ctrl = calloc(QM_RX_MSGS, CMSG_SPACE(sizeof(int)));
  if (!io->rx_msgs || !io->rx_iov || !io->rx_addr || !io->rx_buf ||
      !io->rx_ctrl) {
    qm_io_clear(io);
    return QM_ENOMEM;
  }
  for (i = 0; i < QM_RX_MSGS; i++)
    io->rx_iov[i].iov_base = io->rx_buf + (size_t)i * QM_RX_GRO_BUF;
  ev_prepare_init(&io->prepare, io_prepare_cb);
  io->prepare.data = io;
  ev_prepare_start(loop, &io->prepare);
  ev_unref(loop); /* the prepare watcher alone must not keep the loop alive */
  return 0;
}

void qm_io_clear(qm_io *io) {
  if (io->loop && ev_is_active(&io->prepare)) {
    ev_ref(io->loop);
    ev_prepare_stop(io->loop, &io->prepare);
  }
  free(io->rx_msgs);
  free(io->rx_iov);
  free(io->rx_addr);
  free(io->rx_buf);
  free(io->rx_ctrl);
  memset(io, 0, sizeof(*io));
}

void qm_io_defer(qm_io *io, qm_task *t) {
  if (t->queued)
    return;
  t->queued = 1;
  t->next = io->tasks;
  io->tasks = t;
}

/* The segment size of a GRO read, or 0 for a single datagram. */
static size_t gro_size(struct msghdr *h) {
  struct cmsghdr *c;
  for (c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c))
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int v;
      memcpy(&v, CMSG_DATA(c), sizeof(v));
      return v > 0 ? (size_t)v : 0;
    }
  return 0;
}

static void ep_deliver(qm_endpoint *ep, struct sockaddr *from,
                       socklen_t fromlen, uint8_t *buf, size_t len) {
  uint8_t *quic;
  ssize_t qlen;
  ep->rx_datagrams++;
  ep->rx_bytes += len;
  if (len > QM_RX_BUF) { /* larger than any peer may send (SPEC §3.4) */
    ep->rx_dropped++;
    ep->rx_oversize++;
    return;
  }
  qlen = qm_codec_open(&ep->codec, buf, len, &quic);
  /* Silently, as v2ray does (SPEC §3.3). An empty QUIC datagram is dropped
   * too: ngtcp2_pkt_decode_version_cid() asserts on one (1.11 still does). */
  if (qlen <= 0) {
    ep->rx_dropped++;
    return;
  }
  ep->on_recv(ep, from, fromlen, quic, (size_t)qlen, ep->ud);
}

static void ep_read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  qm_endpoint *ep = w->data;
  qm_io *io = ep->io;
  int n, i, rounds;
  (void)loop;
  (void)revents;

  /* Bounded: a flood on one socket must not starve the rest of the loop. */
  for (rounds = 0; rounds < 8 && ep->fd >= 0; rounds++) {
    for (i = 0; i < QM_RX_MSGS; i++) {
      struct msghdr *h = &io->rx_msgs[i].msg_hdr;
      memset(h, 0, sizeof(*h));
      io->rx_iov[i].iov_len = QM_RX_GRO_BUF;
      h->msg_iov = &io->rx_iov[i];
      h->msg_iovlen = 1;
      h->msg_name = &io->rx_addr[i];
      h->msg_namelen = sizeof(io->rx_addr[i]);
      h->msg_control = io->rx_ctrl + (size_t)i * CMSG_SPACE(sizeof(int));
      h->msg_controllen = CMSG_SPACE(sizeof(int));
    }
    n = qm_udp_recv(ep->fd, io->rx_msgs, QM_RX_MSGS);
    if (n == QM_EREFUSED && ep->on_refused) {
      ep->on_refused(ep, ep->ud);
      return;
    }
    if (n <= 0)
      return;
    for (i = 0; i < n && ep->fd >= 0; i++) {
      struct msghdr *h = &io->rx_msgs[i].msg_hdr;
      uint8_t *buf = io->rx_iov[i].iov_base;
      size_t len = io->rx_msgs[i].msg_len, seg = gro_size(h), off;
      if (h->msg_flags & MSG_TRUNC) {
        ep->rx_datagrams++;
        ep->rx_bytes += len;
        ep->rx_dropped++;
        ep->rx_oversize++;
        continue;
      }
      if (!seg)
        seg = len ? len : 1;
      /* A GRO read is several datagrams of seg bytes (the last may be
       * shorter), each wrapped on its own. */
      for (off = 0; off < len && ep->fd >= 0; off += seg)
        ep_deliver(ep, (struct sockaddr *)&io->rx_addr[i], h->msg_namelen,
                   buf + off, QM_MIN(seg, len - off));
      if (len == 0)
        ep_deliver(ep, (struct sockaddr *)&io->rx_addr[i], h->msg_namelen, buf,
                   0);
    }
    if (n < QM_RX_MSGS)
      return;
  }
}

static void ep_write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  qm_endpoint *ep = w->data;
  (void)revents;
  ev_io_stop(loop, &ep->wio);
  ep->blocked = 0;
  if (qm_endpoint_flush(ep) == 0 && ep->on_writable)
    ep->on_writable(ep, ep->ud);
}

int qm_endpoint_open(qm_endpoint *ep, qm_io *io, int family,
                     const struct sockaddr *bind_addr, socklen_t bind_len,
                     const struct sockaddr *peer, socklen_t peer_len,
                     const qm_settings *s, qm_endpoint_recv_fn on_recv,
                     qm_endpoint_writable_fn on_writable, void *ud, char *err,
                     size_t errlen) {
  int rv;
  const char *key = s->key ? s->key : "";

  memset(ep, 0, sizeof(*ep));
  ep->fd = -1;
  ep->io = io;
  rv = qm_codec_init(&ep->codec, s->security, key, strlen(key), s->header);
  if (rv != 0) {
    snprintf(err, errlen, "bad packet wrapping settings");
    return rv;
  }
  ep->tx_buf = malloc((size_t)QM_BATCH * QM_RX_BUF);
  if (!ep->tx_buf) {
    qm_codec_clear(&ep->codec);
    return QM_ENOMEM;
  }
  rv = qm_udp_open(family, bind_addr, bind_len, peer, peer_len, s->fwmark, err,
                   errlen);
  if (rv < 0) {
    free(ep->tx_buf);
    ep->tx_buf = NULL;
    qm_codec_clear(&ep->codec);
    return rv;
  }
  ep->fd = rv;
  ep->connected = peer != NULL;
  if (peer) {
    memcpy(&ep->peer, peer, peer_len);
    ep->peerlen = peer_len;
  }
  {
    int one = 1;
    /* Kernel segmentation offload, when the kernel has it (Linux >= 4.18
     * for GSO, 5.0 for GRO); without it we fall back to sendmmsg. */
    ep->gso = getenv("QUICMUX_NO_GSO") ? 0 : 1; /* for A/B runs */
    (void)setsockopt(ep->fd, SOL_UDP, UDP_GRO, &one, sizeof(one));
  }
  ep->locallen = sizeof(ep->local);
  getsockname(ep->fd, (struct sockaddr *)&ep->local, &ep->locallen);
  ep->on_recv = on_recv;
  ep->on_writable = on_writable;
  ep->ud = ud;
  ev_io_init(&ep->rio, ep_read_cb, ep->fd, EV_READ);
  ep->rio.data = ep;
  ev_io_init(&ep->wio, ep_write_cb, ep->fd, EV_WRITE);
  ep->wio.data = ep;
  ev_io_start(io->loop, &ep->rio);
  return 0;
}

void qm_endpoint_close(qm_endpoint *ep) {
  if (ep->fd >= 0) {
    ev_io_stop(ep->io->loop, &ep->rio);
    ev_io_stop(ep->io->loop, &ep->wio);
    close(ep->fd);
    ep->fd = -1;
  }
  free(ep->tx_buf);
  ep->tx_buf = NULL;
  qm_codec_clear(&ep->codec);
}

size_t qm_endpoint_max_quic(const qm_endpoint *ep) {
  return QM_RX_BUF - qm_codec_overhead(&ep->codec);
}

uint8_t *qm_endpoint_slot(qm_endpoint *ep) {
  if (ep->blocked || ep->tx_n >= QM_BATCH || ep->fd < 0)
    return NULL;
  return ep->tx_buf + (size_t)ep->tx_n * QM_RX_BUF +
         qm_codec_prefix(&ep->codec);
}

void qm_endpoint_commit(qm_endpoint *ep, size_t n, const struct sockaddr *dst,
                        socklen_t dstlen) {
  unsigned i = ep->tx_n;
  uint8_t *slot = ep->tx_buf + (size_t)i * QM_RX_BUF;
  ssize_t wire = qm_codec_seal(&ep->codec, slot, QM_RX_BUF, n);
  struct msghdr *h = &ep->tx_msgs[i].msg_hdr;

  if (wire < 0)
    return; /* cannot happen: the slot is sized for the overhead */
  ep->tx_iov[i].iov_base = slot;
  ep->tx_iov[i].iov_len = (size_t)wire;
  memset(h, 0, sizeof(*h));
  h->msg_iov = &ep->tx_iov[i];
  h->msg_iovlen = 1;
  if (dst && !ep->connected) {
    memcpy(&ep->tx_addr[i], dst, dstlen);
    h->msg_name = &ep->tx_addr[i];
    h->msg_namelen = dstlen;
  }
  ep->tx_n++;
}

static int same_dst(const struct msghdr *a, const struct msghdr *b) {
  return a->msg_namelen == b->msg_namelen &&
         (a->msg_namelen == 0 ||
          memcmp(a->msg_name, b->msg_name, a->msg_namelen) == 0);
}

/* Group the queued datagrams from tx_sent on: runs of the same size to the
 * same peer (the last of a run may be shorter) become one GSO send. */
static unsigned build_groups(qm_endpoint *ep) {
  unsigned g = 0, i = ep->tx_sent;
  while (i < ep->tx_n) {
    struct msghdr *h = &ep->gso_msgs[g].msg_hdr;
    size_t seg = ep->tx_iov[i].iov_len, total = seg;
    unsigned k = 1;
    if (ep->gso)
      while (i + k < ep->tx_n && k < QM_GSO_MAX &&
             ep->tx_iov[i + k].iov_len <= seg &&
             ep->tx_iov[i + k - 1].iov_len == seg &&
             total + ep->tx_iov[i + k].iov_len <= 65000 &&
             same_dst(&ep->tx_msgs[i].msg_hdr, &ep->tx_msgs[i + k].msg_hdr)) {
        total += ep->tx_iov[i + k].iov_len;
        k++;
      }
    *h = ep->tx_msgs[i].msg_hdr;
    h->msg_iov = &ep->tx_iov[i];
    h->msg_iovlen = k;
    h->msg_control = NULL;
    h->msg_controllen = 0;
    if (k > 1) {
      struct cmsghdr *c;
      uint16_t s16 = (uint16_t)seg;
      h->msg_control = ep->gso_ctrl[g].buf;
      h->msg_controllen = sizeof(ep->gso_ctrl[g].buf);
      c = CMSG_FIRSTHDR(h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      memcpy(CMSG_DATA(c), &s16, sizeof(s16));
    }
    ep->gso_count[g] = k;
    g++;
    i += k;
  }
  return g;
}

int qm_endpoint_flush(qm_endpoint *ep) {
  while (ep->tx_sent < ep->tx_n) {
    unsigned g, j;
    int r;
    if (ep->blocked)
      return QM_EAGAIN;
    g = build_groups(ep);
    r = qm_udp_send(ep->fd, ep->gso_msgs, g, &ep->path_err);
    if (r < 0) {
      if (ep->gso) {
        /* no GSO here (EIO/EINVAL from the kernel): plain batches */
        ep->gso = 0;
        continue;
      }
      /* Hard error: drop the batch; QUIC's loss recovery takes over. */
      ep->tx_n = ep->tx_sent = 0;
      return QM_EIO;
    }
    if (r == 0) {
      ep->blocked = 1;
      ev_io_start(ep->io->loop, &ep->wio);
      return QM_EAGAIN;
    }
    for (j = 0; j < (unsigned)r; j++) {
      unsigned k;
      for (k = 0; k < ep->gso_count[j]; k++)
        ep->tx_bytes += ep->tx_iov[ep->tx_sent + k].iov_len;
      ep->tx_sent += ep->gso_count[j];
      ep->tx_datagrams += ep->gso_count[j];
    }
  }
  ep->tx_n = ep->tx_sent = 0;
  return 0;
}

void qm_endpoint_reverse(qm_endpoint *ep, unsigned from) {
  unsigned i, j;
  if (from < ep->tx_sent)
    from = ep->tx_sent;
  if (ep->tx_n == 0)
    return;
  /* Swap what each message points at: the slot (iov) and the address. A
   * slot's memory is found again through its iov until the queue empties. */
  for (i = from, j = ep->tx_n - 1; i < j; i++, j--) {
    struct iovec iv = ep->tx_iov[i];
    struct sockaddr_storage a = ep->tx_addr[i];
    socklen_t al = ep->tx_msgs[i].msg_hdr.msg_namelen;
    ep->tx_iov[i] = ep->tx_iov[j];
    ep->tx_iov[j] = iv;
    ep->tx_addr[i] = ep->tx_addr[j];
    ep->tx_addr[j] = a;
    ep->tx_msgs[i].msg_hdr.msg_namelen = ep->tx_msgs[j].msg_hdr.msg_namelen;
    ep->tx_msgs[j].msg_hdr.msg_namelen = al;
    ep->tx_msgs[i].msg_hdr.msg_name =
        ep->tx_msgs[i].msg_hdr.msg_namelen ? &ep->tx_addr[i] : NULL;
    ep->tx_msgs[j].msg_hdr.msg_name =
        ep->tx_msgs[j].msg_hdr.msg_namelen ? &ep->tx_addr[j] : NULL;
  }
}

void qm_endpoint_add_totals(const qm_endpoint *ep, qm_totals *t) {
  uint64_t known =
      ep->codec.dropped_short + ep->codec.dropped_auth + ep->rx_oversize;
  t->datagrams_rx += ep->rx_datagrams;
  t->datagrams_tx += ep->tx_datagrams;
  t->bytes_rx += ep->rx_bytes;
  t->bytes_tx += ep->tx_bytes;
  t->bad_short += ep->codec.dropped_short;
  t->bad_auth += ep->codec.dropped_auth;
  t->bad_oversize += ep->rx_oversize;
  /* the rest of the drops: empty after unwrapping, or no QUIC header */
  t->bad_malformed += ep->rx_dropped > known ? ep->rx_dropped - known : 0;
}
