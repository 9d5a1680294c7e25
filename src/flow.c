/* UDP flows: the DATAGRAM frame header, the flow object, its idle timer and
 * the context that ends flows outside of ngtcp2's callbacks. */
#include <stdlib.h>
#include <string.h>

#include "flow.h"
#include "session.h"

/* ---- the header (QUIC varints, RFC 9000 §16) ---- */

size_t qm_varint_len(uint64_t v) {
  return v < 64 ? 1 : v < 16384 ? 2 : v < 1073741824 ? 4 : 8;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
  size_t n = qm_varint_len(v), i;
  static const uint8_t pfx[9] = {0, 0x00, 0x40, 0, 0x80, 0, 0, 0, 0xc0};
  for (i = 0; i < n; i++)
    p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
  p[0] |= pfx[n];
  return p + n;
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  size_t n, i;
  if (*p >= end)
    return -1;
  n = (size_t)1 << ((*p)[0] >> 6);
  if ((size_t)(end - *p) < n)
    return -1;
  *v = (*p)[0] & 0x3f;
  for (i = 1; i < n; i++)
    *v = (*v << 8) | (*p)[i];
  *p += n;
  return 0;
}

size_t qm_dg_hdr_write(uint8_t *buf, const qm_dg_hdr *h) {
  uint8_t *p = buf;
  *p++ = (uint8_t)h->type;
  p = put_varint(p, h->flow);
  if (h->type == QM_DG_FRAG) {
    p = put_varint(p, h->dgram);
    *p++ = (uint8_t)h->idx;
    *p++ = (uint8_t)h->cnt;
  }
  return (size_t)(p - buf);
}

int qm_dg_hdr_parse(const uint8_t *buf, size_t len, qm_dg_hdr *h) {
  const uint8_t *p = buf, *end = buf + len;
  memset(h, 0, sizeof(*h));
  if (len < 1)
    return -1;
  h->type = *p++;
  if (h->type > QM_DG_CLOSE || get_varint(&p, end, &h->flow) != 0)
    return -1;
  if (h->type == QM_DG_FRAG) {
    if (get_varint(&p, end, &h->dgram) != 0 || end - p < 2)
      return -1;
    h->idx = p[0];
    h->cnt = p[1];
    p += 2;
    if (h->cnt < 2 || h->idx >= h->cnt)
      return -1;
  }
  return (int)(p - buf);
}

/* ---- the context ---- */

void qm_flow_settings_default(qm_flow_settings *fs) {
  memset(fs, 0, sizeof(*fs));
  fs->idle_ms = 60000;
  fs->max_per_session = 256;
  fs->max_flows = 4096;
  fs->queue_bytes = 1024 * 1024;
}

static void flow_free(qm_flow *f);

static void ctx_task_run(qm_task *t) {
  qm_flow_ctx *c = (qm_flow_ctx *)((char *)t - offsetof(qm_flow_ctx, task));
  qm_flow *f;
  while ((f = c->dying)) {
    c->dying = f->dnext;
    f->dnext = NULL;
    f->in_cb = 1;
    if (f->cbs.on_close)
      f->cbs.on_close(f, f->close_err, f->ud);
    f->in_cb = 0;
    flow_free(f);
  }
}

void qm_flow_ctx_init(qm_flow_ctx *c, qm_io *io, const qm_flow_settings *fs) {
  qm_flow_settings d;
  if (!fs) {
    qm_flow_settings_default(&d);
    fs = &d;
  }
  c->enabled = 1;
  c->io = io;
  c->fs = *fs;
  qm_flow_settings_default(&d);
  if (!c->fs.idle_ms)
    c->fs.idle_ms = d.idle_ms;
  if (!c->fs.max_per_session)
    c->fs.max_per_session = d.max_per_session;
  if (!c->fs.max_flows)
    c->fs.max_flows = d.max_flows;
  if (!c->fs.queue_bytes)
    c->fs.queue_bytes = d.queue_bytes;
  c->task.run = ctx_task_run;
}

void qm_flow_ctx_clear(qm_flow_ctx *c) {
  qm_task **pp;
  while (c->flows) {
    c->flows->resolving = 0; /* the resolver is gone already */
    flow_free(c->flows);
  }
  c->dying = NULL;
  if (c->task.queued && c->io) /* unlink from the io task list */
    for (pp = &c->io->tasks; *pp; pp = &(*pp)->next)
      if (*pp == &c->task) {
        *pp = c->task.next;
        break;
      }
}

/* ---- flows ---- */

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  qm_flow *f = w->data;
  ev_tstamp left = f->last + (double)f->ctx->fs.idle_ms / 1000. - ev_now(loop);
  (void)revents;
  if (left > 0.001) {
    w->repeat = left;
    ev_timer_again(loop, w);
    return;
  }
  ev_timer_stop(loop, w);
  QM_DEBUG("flow", "flow %llu: idle, closing", (unsigned long long)f->id);
  if (!f->server && f->sess)
    qm_session_flow_closed(f->sess, f->id);
  qm_flow_fail(f, QM_ETIMEDOUT);
}

void qm_flow_touch(qm_flow *f) {
  f->last = ev_now(f->ctx->io->loop);
}

qm_flow *qm_flow_new(qm_flow_ctx *c, int server, uint64_t id) {
  qm_flow *f = calloc(1, sizeof(*f));
  double idle = (double)c->fs.idle_ms / 1000.;
  if (!f)
    return NULL;
  f->ctx = c;
  f->server = server;
  f->id = server ? id : c->next_id++;
  f->cnext = c->flows;
  if (c->flows)
    c->flows->cprev = f;
  c->flows = f;
  c->nflows++;
  c->totals.flows++;
  ev_timer_init(&f->idle, idle_cb, idle, idle);
  f->idle.data = f;
  qm_flow_touch(f);
  ev_timer_start(c->io->loop, &f->idle);
  return f;
}

static void add_stats(qm_flow_stats *t, const qm_flow_stats *s) {
  t->datagrams_sent += s->datagrams_sent;
  t->bytes_sent += s->bytes_sent;
  t->datagrams_received += s->datagrams_received;
  t->bytes_received += s->bytes_received;
  t->dropped_queue += s->dropped_queue;
  t->dropped_incomplete += s->dropped_incomplete;
  t->dropped_refused += s->dropped_refused;
}

static void flow_free(qm_flow *f) {
  qm_flow_ctx *c = f->ctx;
  qm_flow **pp;
  ev_timer_stop(c->io->loop, &f->idle);
  if (f->sess)
    qm_session_flow_detach(f->sess, f);
  if (f->dying) /* still on the dying list: take it off */
    for (pp = &c->dying; *pp; pp = &(*pp)->dnext)
      if (*pp == f) {
        *pp = f->dnext;
        break;
      }
  if (f->resolving) { /* the resolver still holds it: freed by its answer */
    f->free_later = 1;
    return;
  }
  if (f->cprev)
    f->cprev->cnext = f->cnext;
  else
    c->flows = f->cnext;
  if (f->cnext)
    f->cnext->cprev = f->cprev;
  c->nflows--;
  add_stats(&c->totals, &f->st);
  if (f->addrs)
    qm_addrlist_unref(f->addrs);
  free(f);
}

void qm_flow_fail(qm_flow *f, int err) {
  if (f->sess)
    qm_session_flow_detach(f->sess, f);
  if (f->dying || f->free_later)
    return;
  ev_timer_stop(f->ctx->io->loop, &f->idle);
  f->dying = 1;
  f->close_err = err;
  f->dnext = f->ctx->dying;
  f->ctx->dying = f;
  qm_io_defer(f->ctx->io, &f->ctx->task);
}

int qm_flow_deliver(qm_flow *f, const uint8_t *data, size_t len) {
  if (f->dying || f->free_later)
    return 0;
  f->st.datagrams_received++;
  f->st.bytes_received += len;
  qm_flow_touch(f);
  if (!f->cbs.on_recv)
    return 0;
  f->in_cb = 1;
  f->cbs.on_recv(f, data, len, f->ud);
  f->in_cb = 0;
  if (f->free_later) {
    flow_free(f);
    return 1;
  }
  return 0;
}

/* ---- public ---- */

int qm_flow_send(qm_flow *f, const uint8_t *data, size_t len) {
  int rv;
  if (f->dying || f->free_later)
    return QM_ECLOSED;
  if (len > QM_FLOW_MAX_DATAGRAM)
    return QM_EINVAL;
  /* A client's flow outlives its session: it moves to another one. */
  if (f->sess && !f->server && !qm_session_is_active(f->sess))
    qm_session_flow_detach(f->sess, f);
  if (!f->sess && !f->server && f->ctx->bind) {
    rv = f->ctx->bind(f->ctx, f);
    if (rv == QM_EAGAIN) { /* still resolving the server's name */
      f->st.dropped_queue++;
      return rv;
    }
    if (rv != 0) {
      f->st.dropped_refused++;
      qm_flow_fail(f, rv);
      return rv;
    }
  }
  if (!f->sess) {
    f->st.dropped_refused++;
    qm_flow_fail(f, QM_ECLOSED);
    return QM_ECLOSED;
  }
  rv = qm_session_dgram_send(f->sess, f, data, len);
  if (rv == 0) {
    f->st.datagrams_sent++;
    f->st.bytes_sent += len;
    qm_flow_touch(f);
  } else if (rv == QM_EAGAIN) {
    f->st.dropped_queue++;
  } else if (rv != QM_EINVAL) {
    f->st.dropped_refused++;
    qm_flow_fail(f, rv);
  }
  return rv;
}

void qm_flow_set_callbacks(qm_flow *f, const qm_flow_cbs *cbs, void *ud) {
  if (cbs)
    f->cbs = *cbs;
  else
    memset(&f->cbs, 0, sizeof(f->cbs));
  f->ud = ud;
}

void qm_flow_close(qm_flow *f) {
  if (!f)
    return;
  if (!f->server && f->sess && !f->dying)
    qm_session_flow_closed(f->sess, f->id);
  if (f->in_cb) {
    if (f->sess)
      qm_session_flow_detach(f->sess, f);
    ev_timer_stop(f->ctx->io->loop, &f->idle);
    f->free_later = 1;
    return;
  }
  flow_free(f);
}

uint64_t qm_flow_id(const qm_flow *f) {
  return f->id;
}

uint64_t qm_flow_session_id(const qm_flow *f) {
  return f->sess ? qm_session_id(f->sess) : 0;
}

void qm_flow_get_stats(const qm_flow *f, qm_flow_stats *st) {
  *st = f->st;
  st->flows = 1;
}

/* Totals: the flows gone plus the ones still open. */
void qm__flow_ctx_stats(const qm_flow_ctx *c, qm_flow_stats *st) {
  const qm_flow *f;
  *st = c->totals;
  for (f = c->flows; f; f = f->cnext)
    add_stats(st, &f->st);
}
