/*
 * flow — UDP flows in QUIC DATAGRAM frames: the frame header (pure, unit
 * tested), the flow object and the per-dialer/listener flow context. The
 * session's side (send queue, fragments, reassembly) is session_dgram.c.
 *
 * Wire format of a DATAGRAM frame's payload (quicmux to quicmux only):
 *
 *   type (1 byte)  0 = a whole datagram, 1 = a fragment, 2 = flow closed
 *   flow id        QUIC varint, chosen by the client
 *   type 1 only:   datagram id (varint, per flow), fragment index (1 byte),
 *                  fragment count (1 byte, 2..255)
 *   payload        the datagram, or this fragment of it
 *
 * Fragments of a datagram are all the same size but the last, and a
 * datagram is delivered only when every fragment arrived.
 */
#ifndef QM_FLOW_H
#define QM_FLOW_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "quicmux/quicmux.h"
#include "io.h"
#include "resolve.h"

enum { QM_DG_WHOLE = 0, QM_DG_FRAG = 1, QM_DG_CLOSE = 2 };

/* The largest header: type + flow id + datagram id (8-byte varints) + 2. */
#define QM_DG_HDR_MAX (1 + 8 + 8 + 2)
#define QM_DG_MAX_FRAGS 255

typedef struct qm_dg_hdr {
  unsigned type;
  uint64_t flow;
  uint64_t dgram; /* type 1 */
  unsigned idx, cnt;
} qm_dg_hdr;

/* Write h into buf (QM_DG_HDR_MAX bytes at least): the header length. */
size_t qm_dg_hdr_write(uint8_t *buf, const qm_dg_hdr *h);
/* Parse a frame payload: the header length, or -1 when malformed. */
int qm_dg_hdr_parse(const uint8_t *p, size_t len, qm_dg_hdr *h);
/* Bytes of a QUIC varint. */
size_t qm_varint_len(uint64_t v);

typedef struct qm_flow_ctx qm_flow_ctx;
typedef struct qm_session qm_session;

struct qm_flow {
  uint64_t id;
  qm_flow_ctx *ctx;
  int server;
  qm_session *sess;       /* the session carrying it, or NULL */
  qm_flow *snext, *sprev; /* the session's flow list */
  qm_flow *cnext, *cprev; /* the context's flow list */
  qm_flow *dnext;         /* the context's list of flows to end */
  qm_flow_cbs cbs;
  void *ud;
  ev_timer idle;
  ev_tstamp last;
  uint64_t next_dgram;
  qm_flow_stats st;
  /* client: where to */
  qm_addrlist *addrs;
  int resolving;
  int use_set; /* the dialer's server set (qm_dial_flow with host NULL) */
  int dying;   /* on_close is due from the context's task */
  int close_err;
  int in_cb;      /* inside one of its callbacks */
  int free_later; /* qm_flow_close from inside a callback */
};

/* A dialer's or listener's flows: settings, caps, totals, and the task that
 * delivers on_close outside of ngtcp2 callbacks. */
struct qm_flow_ctx {
  int enabled;
  qm_flow_settings fs;
  qm_io *io;
  qm_task task;
  qm_flow *flows; /* every flow */
  size_t nflows;
  qm_flow *dying;
  qm_flow_stats totals;
  uint64_t next_id;
  /* client: put a flow on a session (0, or a QM_E code) */
  int (*bind)(qm_flow_ctx *c, qm_flow *f);
  void *bind_ud;
  /* server: a new flow */
  qm_accept_flow_fn on_flow;
  qm_listener *listener;
  void *on_flow_ud;
};

/* Set up / tear down a context (every flow freed without callbacks). */
void qm_flow_ctx_init(qm_flow_ctx *c, qm_io *io, const qm_flow_settings *fs);
void qm_flow_ctx_clear(qm_flow_ctx *c);

/* Every flow's counters, gone and open. */
void qm__flow_ctx_stats(const qm_flow_ctx *c, qm_flow_stats *st);
/* A new flow in c (server: id from the wire; client: the next id). */
qm_flow *qm_flow_new(qm_flow_ctx *c, int server, uint64_t id);
/* End f with err: on_close runs from the context's task. */
void qm_flow_fail(qm_flow *f, int err);
/* A datagram for the application (f may be freed when this returns 1). */
int qm_flow_deliver(qm_flow *f, const uint8_t *data, size_t len);
/* Something was sent or received: the idle clock starts again. */
void qm_flow_touch(qm_flow *f);

#endif
