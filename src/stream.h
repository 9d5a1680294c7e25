/*
 * stream — one bidirectional QUIC stream as a byte stream: bounded send
 * buffer (chunks that ngtcp2 sends from until acknowledged), bounded receive
 * buffer (what the application has not consumed yet), FIN and reset.
 *
 * The session drives the wire side; the application sees qm_stream_* from
 * quicmux.h. Callbacks to the application that could re-enter the session
 * (open, close, send-ready) are delivered from the session's deferred task.
 */
#ifndef QM_STREAM_H
#define QM_STREAM_H

#include <ngtcp2/ngtcp2.h>

#include "policy.h"
#include "quicmux/quicmux.h"
#include "resolve.h"

#define QM_CHUNK_SIZE (65536 - 64)

typedef struct qm_session qm_session;

typedef struct qm_chunk {
  struct qm_chunk *next;
  uint64_t off; /* stream offset of data[0] (send side) */
  size_t len;   /* bytes filled */
  size_t pos;   /* receive side: bytes already consumed */
  uint8_t data[QM_CHUNK_SIZE];
} qm_chunk;

enum {
  QM_SEV_OPEN = 1u << 0,
  QM_SEV_SEND_READY = 1u << 1,
  QM_SEV_CLOSE = 1u << 2,
  QM_SEV_RESET = 1u << 3, /* application asked for a reset */
  QM_SEV_READ = 1u << 4,  /* received bytes wait for the application */
};

struct qm_stream {
  qm_session *sess;
  int64_t id;           /* -1 until open on the wire */
  struct qm_caps *caps; /* client: counted in these shared caps */
  qm_stream_cbs cbs;
  void *ud;
  /* session's list of all its streams */
  struct qm_stream *prev, *next;
  /* session's write queue (streams with bytes or a FIN to send) */
  struct qm_stream *wnext;
  int in_wq;
  size_t burst;          /* bytes sent in its current turn */
  uint64_t last_sess_id; /* for logs after the session let go of it */
  /* session's list of streams with pending events */
  struct qm_stream *enext;
  unsigned events;
  /* send side */
  qm_chunk *shead, *stail, *scur;
  uint64_t s_acked; /* bytes acknowledged and freed */
  uint64_t s_sent;  /* bytes handed to ngtcp2 */
  uint64_t s_end;   /* bytes committed by the application */
  size_t s_limit;
  unsigned fin_wanted : 1, fin_sent : 1, send_blocked : 1;
  /* receive side */
  qm_chunk *rhead, *rtail;
  size_t r_buffered;
  unsigned fin_rcvd : 1, fin_delivered : 1, delivering : 1;
  /* lifetime */
  unsigned wire_closed : 1, closed : 1, opened : 1, open_notified : 1;
  unsigned ghost : 1;    /* left behind on a dead path after a retry */
  unsigned announce : 1; /* client: tell the peer the stream exists */
  uint64_t r_total;      /* bytes received from the peer */
  uint64_t open_ts;      /* when it was opened on the wire (ns) */
  /* dialer: where this stream may go, and which address it is on */
  qm_addrlist *addrs;
  unsigned addr_idx;
  uint16_t port_hi;         /* > the addresses' port: a server port range */
  unsigned addr_tries;      /* handshakes that failed under it */
  struct qm_stream *dnext;  /* dialer's list of streams to fail */
  struct qm_dialer *dialer; /* set while the name is being resolved */
  int close_err;
  uint64_t reset_code;
};

qm_stream *qm_stream_new(size_t send_limit);
/* Free buffers and the struct (no callbacks). */
void qm_stream_destroy(qm_stream *s);

/* Send side, for the session. Fill vec with unsent bytes from s_sent;
 * returns the vector count. */
size_t qm_stream_unsent(qm_stream *s, ngtcp2_vec *vec, size_t maxvec,
                        size_t *total);
void qm_stream_mark_sent(qm_stream *s, size_t n);
/* Bytes [s_acked, off+len) acknowledged: free what is done. */
void qm_stream_acked(qm_stream *s, uint64_t off, uint64_t len);
int qm_stream_has_unsent(const qm_stream *s);

/* Early data refused (the server could not read it): ngtcp2 forgot the
 * stream, so it starts over, not open, every byte unsent. */
void qm_stream_rewind(qm_stream *s);

/* Retry on another session: returns a "ghost" that keeps the bytes ngtcp2
 * may still point at (it stays on the old session until ngtcp2 closes it);
 * s gets a private copy of every byte and goes back to "not open". Only for
 * streams with nothing acknowledged yet. NULL on ENOMEM. */
qm_stream *qm_stream_split_for_retry(qm_stream *s);

/* Keep received bytes for delivery from the session's task (one batch per
 * loop iteration: one write to the application's socket per chunk rather
 * than one per QUIC packet). 0 or QM_ENOMEM. */
int qm_stream_buffer(qm_stream *s, const uint8_t *data, size_t len);
/* Deliver buffered bytes (and FIN); returns bytes consumed. */
size_t qm_stream_drain(qm_stream *s);
/* Nothing left for the application to read. */
int qm_stream_recv_done(const qm_stream *s);

#endif
