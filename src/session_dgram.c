/* A session's UDP flows (flow.h): the flows it carries, its bounded
 * datagram send queue (whole datagrams and fragments, ready-made DATAGRAM
 * frame payloads that qm_sess_write hands to ngtcp2), and the reassembly of
 * fragmented datagrams, bounded in slots, bytes and time. */
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

/* Reassembly: at most this many datagrams in pieces per session, this many
 * bytes of buffers, and this long to wait for the missing pieces. */
#define QM_REASM_SLOTS 16
#define QM_REASM_BYTES (2 * 1024 * 1024)
#define QM_REASM_TIMEOUT (3 * NGTCP2_SECONDS)

struct qm_reasm {
  uint64_t flow, dgram;
  unsigned cnt, got;
  ngtcp2_tstamp t0;
  size_t cap; /* cnt * QM_MAX_QUIC_DATAGRAM: piece i sits at i * that */
  uint16_t len[QM_DG_MAX_FRAGS];
  uint8_t *buf;
};

/* What one DATAGRAM frame may carry on the current path. */
static size_t frame_room(qm_session *s) {
  size_t path = ngtcp2_conn_get_path_max_tx_udp_payload_size(s->conn);
  return path > QM_DG_FRAME_OVERHEAD ? path - QM_DG_FRAME_OVERHEAD : 0;
}

int qm_session_dgram_state(const qm_session *s) {
  return s->dgram_peer;
}

size_t qm_session_flow_count(const qm_session *s) {
  return s->nflows;
}

void qm_session_flow_attach(qm_session *s, qm_flow *f) {
  size_t before = qm_sess_busy(s);
  f->sess = s;
  f->sprev = NULL;
  f->snext = s->flows;
  if (s->flows)
    s->flows->sprev = f;
  s->flows = f;
  s->nflows++;
  qm_sess_streams_changed(s, before);
}

void qm_session_flow_detach(qm_session *s, qm_flow *f) {
  size_t before = qm_sess_busy(s);
  if (f->sess != s)
    return;
  if (f->sprev)
    f->sprev->snext = f->snext;
  else
    s->flows = f->snext;
  if (f->snext)
    f->snext->sprev = f->sprev;
  f->snext = f->sprev = NULL;
  f->sess = NULL;
  s->nflows--;
  qm_sess_streams_changed(s, before);
}

static qm_flow *find_flow(qm_session *s, uint64_t id) {
  qm_flow *f;
  for (f = s->flows; f; f = f->snext)
    if (f->id == id) {
      if (f != s->flows) { /* move to front: busy flows are found first */
        f->sprev->snext = f->snext;
        if (f->snext)
          f->snext->sprev = f->sprev;
        f->sprev = NULL;
        f->snext = s->flows;
        s->flows->sprev = f;
        s->flows = f;
      }
      return f;
    }
  return NULL;
}

/* ---- the send queue ---- */

static qm_dq *dq_new(const qm_dg_hdr *h, const uint8_t *data, size_t len) {
  uint8_t hdr[QM_DG_HDR_MAX];
  size_t hl = qm_dg_hdr_write(hdr, h);
  qm_dq *e = malloc(sizeof(*e) + hl + len);
  if (!e)
    return NULL;
  e->next = NULL;
  e->len = hl + len;
  memcpy(e->data, hdr, hl);
  if (len)
    memcpy(e->data + hl, data, len);
  return e;
}

static void dq_append(qm_session *s, qm_dq *first, qm_dq *last, size_t bytes) {
  if (s->dq_tail)
    s->dq_tail->next = first;
  else
    s->dq_head = first;
  s->dq_tail = last;
  s->dq_bytes += bytes;
}

qm_dq *qm_sess_dq_pop(qm_session *s) {
  qm_dq *e = s->dq_head;
  if (e) {
    s->dq_head = e->next;
    if (!s->dq_head)
      s->dq_tail = NULL;
    s->dq_bytes -= e->len;
  }
  return e;
}

static void dq_clear(qm_session *s) {
  qm_dq *e;
  while ((e = qm_sess_dq_pop(s)))
    free(e);
}

int qm_session_dgram_send(qm_session *s, qm_flow *f, const uint8_t *data,
                          size_t len) {
  qm_dg_hdr h = {QM_DG_WHOLE, f->id, 0, 0, 0};
  qm_dq *first = NULL, *last = NULL, *e;
  size_t room, hl, piece, bytes = 0, off;
  unsigned i, cnt;

  if (s->dgram_peer < 0)
    return QM_EREFUSED;
  if (!qm_session_is_active(s) || !s->conn)
    return QM_ECLOSED;
  room = frame_room(s);
  hl = 1 + qm_varint_len(f->id);
  if (hl + len <= room) {
    if (s->dq_bytes + hl + len > s->fctx->fs.queue_bytes)
      return QM_EAGAIN;
    if (!(e = dq_new(&h, data, len)))
      return QM_EAGAIN;
    dq_append(s, e, e, e->len);
  } else {
    /* Fragments: all the same size but the last. */
    h.type = QM_DG_FRAG;
    h.dgram = f->next_dgram++;
    hl = 1 + qm_varint_len(f->id) + qm_varint_len(h.dgram) + 2;
    if (room <= hl)
      return QM_EAGAIN;
    piece = room - hl;
    cnt = (unsigned)((len + piece - 1) / piece);
    if (cnt > QM_DG_MAX_FRAGS)
      return QM_EINVAL;
    if (s->dq_bytes + len + cnt * hl > s->fctx->fs.queue_bytes)
      return QM_EAGAIN; /* all or nothing */
    h.cnt = cnt;
    for (i = 0, off = 0; i < cnt; i++, off += piece) {
      h.idx = i;
      e = dq_new(&h, data + off, QM_MIN(piece, len - off));
      if (!e) {
        while ((e = first)) {
          first = e->next;
          free(e);
        }
        return QM_EAGAIN;
      }
      if (last)
        last->next = e;
      else
        first = e;
      last = e;
      bytes += e->len;
    }
    dq_append(s, first, last, bytes);
  }
  if (s->dgram_peer > 0)
    qm_sess_schedule(s);
  return 0;
}

/* Tell the server the client closed flow id (best effort: a datagram). */
void qm_session_flow_closed(qm_session *s, uint64_t id) {
  qm_dg_hdr h = {QM_DG_CLOSE, id, 0, 0, 0};
  qm_dq *e;
  if (s->dgram_peer <= 0 || !qm_session_is_active(s) ||
      s->dq_bytes + QM_DG_HDR_MAX > s->fctx->fs.queue_bytes)
    return;
  if ((e = dq_new(&h, NULL, 0))) {
    dq_append(s, e, e, e->len);
    qm_sess_schedule(s);
  }
}

/* ---- the handshake tells whether the peer takes datagrams ---- */

/* One log line per session when UDP is refused on it. */
void qm_session_dgram_refused(qm_session *s) {
  if (s->dgram_logged)
    return;
  s->dgram_logged = 1;
  QM_WARN("flow",
          "session %llu: the server does not take QUIC datagrams (v2ray, or "
          "quicmux without --udp): UDP refused on this session, TCP goes on",
          (unsigned long long)s->id);
}

void qm_sess_dgram_handshake(qm_session *s) {
  const ngtcp2_transport_params *p;
  if (!s->fctx)
    return;
  p = ngtcp2_conn_get_remote_transport_params(s->conn);
  s->dgram_peer = p && p->max_datagram_frame_size > 0 ? 1 : -1;
  if (s->dgram_peer > 0) {
    if (s->dq_head)
      qm_sess_schedule(s);
    return;
  }
  dq_clear(s);
  if (s->flows)
    qm_session_dgram_refused(s);
  while (s->flows) {
    qm_flow *f = s->flows;
    f->st.dropped_refused++;
    qm_flow_fail(f, QM_EREFUSED); /* detaches it */
  }
}

/* ---- receiving ---- */

static void reasm_free(qm_session *s, size_t i, int incomplete) {
  qm_reasm *r = s->reasm[i];
  if (incomplete) {
    qm_flow *f = find_flow(s, r->flow);
    if (f)
      f->st.dropped_incomplete++;
  }
  s->reasm_bytes -= r->cap;
  free(r->buf);
  free(r);
  s->reasm[i] = NULL;
}

/* A free slot with room for cap bytes: datagrams that waited too long are
 * dropped, then the oldest ones until there is room. */
static int reasm_slot(qm_session *s, size_t cap, ngtcp2_tstamp now) {
  size_t i, oldest;
  for (i = 0; i < QM_REASM_SLOTS; i++)
    if (s->reasm[i] && now - s->reasm[i]->t0 > QM_REASM_TIMEOUT)
      reasm_free(s, i, 1);
  for (;;) {
    int free_slot = -1;
    oldest = QM_REASM_SLOTS;
    for (i = 0; i < QM_REASM_SLOTS; i++) {
      if (!s->reasm[i]) {
        if (free_slot < 0)
          free_slot = (int)i;
      } else if (oldest == QM_REASM_SLOTS ||
                 s->reasm[i]->t0 < s->reasm[oldest]->t0) {
        oldest = i;
      }
    }
    if (free_slot >= 0 && s->reasm_bytes + cap <= QM_REASM_BYTES)
      return free_slot;
    if (oldest == QM_REASM_SLOTS)
      return -1;
    reasm_free(s, oldest, 1);
  }
}

/* A fragment: 1 and the whole datagram in *out / *outlen when it is
 * complete (the slot is freed by the caller with reasm_free), else 0. */
static int reasm_add(qm_session *s, const qm_dg_hdr *h, const uint8_t *p,
                     size_t len, size_t *slot) {
  ngtcp2_tstamp now = qm_now_ns();
  qm_reasm *r = NULL;
  size_t i;
  int k;

  if (!len || len > QM_MAX_QUIC_DATAGRAM)
    return 0; /* the sender never makes empty pieces */
  for (i = 0; i < QM_REASM_SLOTS; i++)
    if (s->reasm[i] && s->reasm[i]->flow == h->flow &&
        s->reasm[i]->dgram == h->dgram) {
      r = s->reasm[i];
      break;
    }
  if (!r) {
    size_t cap = (size_t)h->cnt * QM_MAX_QUIC_DATAGRAM;
    if ((k = reasm_slot(s, cap, now)) < 0)
      return 0;
    i = (size_t)k;
    if (!(r = calloc(1, sizeof(*r))) || !(r->buf = malloc(cap))) {
      free(r);
      return 0;
    }
    r->flow = h->flow;
    r->dgram = h->dgram;
    r->cnt = h->cnt;
    r->t0 = now;
    r->cap = cap;
    s->reasm[i] = r;
    s->reasm_bytes += cap;
  }
  if (h->cnt != r->cnt || r->len[h->idx]) {
    if (h->cnt != r->cnt)
      reasm_free(s, i, 1);
    return 0; /* inconsistent, or a duplicate */
  }
  memcpy(r->buf + (size_t)h->idx * QM_MAX_QUIC_DATAGRAM, p, len);
  r->len[h->idx] = (uint16_t)len;
  if (++r->got < r->cnt)
    return 0;
  *slot = i;
  return 1;
}

static qm_flow *server_new_flow(qm_session *s, uint64_t id) {
  qm_flow_ctx *c = s->fctx;
  qm_flow *f;
  if (s->nflows >= c->fs.max_per_session || c->nflows >= c->fs.max_flows) {
    c->totals.dropped_refused++;
    if (!s->flow_cap_logged) {
      s->flow_cap_logged = 1;
      QM_WARN("flow",
              "session %llu: flow limit reached (%zu on this session, %zu in "
              "all; limits %u and %u): new flows dropped",
              (unsigned long long)s->id, s->nflows, c->nflows,
              c->fs.max_per_session, c->fs.max_flows);
    }
    return NULL;
  }
  if (!(f = qm_flow_new(c, 1, id)))
    return NULL;
  qm_session_flow_attach(s, f);
  f->in_cb = 1;
  if (c->on_flow)
    c->on_flow(c->listener, f, c->on_flow_ud);
  f->in_cb = 0;
  if (f->free_later || !c->on_flow) {
    qm_flow_close(f);
    return NULL;
  }
  return f;
}

void qm_sess_dgram_recv(qm_session *s, const uint8_t *data, size_t len) {
  qm_dg_hdr h;
  qm_flow *f;
  int hl;
  size_t slot;

  if (!s->fctx || (hl = qm_dg_hdr_parse(data, len, &h)) < 0) {
    s->dgram_malformed++;
    return;
  }
  data += hl;
  len -= (size_t)hl;
  f = find_flow(s, h.flow);
  if (h.type == QM_DG_CLOSE) {
    if (f && f->server)
      qm_flow_fail(f, 0);
    return;
  }
  if (!f) {
    if (!s->server || !(f = server_new_flow(s, h.flow)))
      return;
  }
  if (h.type == QM_DG_WHOLE) {
    qm_flow_deliver(f, data, len);
    return;
  }
  if (reasm_add(s, &h, data, len, &slot)) {
    qm_reasm *r = s->reasm[slot];
    size_t i, total = 0;
    for (i = 0; i < r->cnt; i++) { /* close the gaps, in place */
      memmove(r->buf + total, r->buf + i * QM_MAX_QUIC_DATAGRAM, r->len[i]);
      total += r->len[i];
    }
    if (total <= QM_FLOW_MAX_DATAGRAM)
      qm_flow_deliver(f, r->buf, total);
    /* the flow may be gone: its slot is still ours */
    s->reasm[slot] = NULL;
    s->reasm_bytes -= r->cap;
    free(r->buf);
    free(r);
  }
}

/* The session ends: a client's flows wait for another session, a server's
 * end with it. */
void qm_sess_dgram_free(qm_session *s) {
  size_t i;
  while (s->flows) {
    qm_flow *f = s->flows;
    if (f->server)
      qm_flow_fail(f, QM_ECLOSED);
    else
      qm_session_flow_detach(s, f);
  }
  dq_clear(s);
  for (i = 0; i < QM_REASM_SLOTS; i++)
    if (s->reasm[i])
      reasm_free(s, i, 0);
}
