/* Stream buffers and the application-facing stream API. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "session.h"
#include "stream.h"

qm_stream *qm_stream_new(size_t send_limit) {
  qm_stream *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->id = -1;
  s->s_limit = send_limit ? send_limit : 1024 * 1024;
  return s;
}

static void free_chain(qm_chunk *c) {
  while (c) {
    qm_chunk *n = c->next;
    free(c);
    c = n;
  }
}

void qm_stream_destroy(qm_stream *s) {
  if (!s)
    return;
  if (s->caps)
    qm__caps_add(&s->caps->streams, -1);
  free_chain(s->shead);
  free_chain(s->rhead);
  qm_addrlist_unref(s->addrs);
  free(s);
}

/* ---- send side ---- */

/* Bytes the stream may hold unacknowledged (its buffer grows with the
 * session's congestion window). */
static size_t send_limit(const qm_stream *s) {
  return s->sess ? qm_session_send_limit(s->sess, s->s_limit) : s->s_limit;
}

int qm_stream_write_space(qm_stream *s, uint8_t **buf, size_t *len) {
  size_t buffered, room, limit;
  qm_chunk *t;

  *buf = NULL;
  *len = 0;
  if (s->closed || s->fin_wanted || (s->events & QM_SEV_RESET) ||
      s->wire_closed)
    return QM_ECLOSED;
  buffered = (size_t)(s->s_end - s->s_acked);
  limit = send_limit(s);
  if (buffered >= limit) {
    s->send_blocked = 1;
    return 0;
  }
  t = s->stail;
  if (!t || t->len == QM_CHUNK_SIZE) {
    qm_chunk *c = malloc(sizeof(*c));
    if (!c)
      return QM_ENOMEM;
    c->next = NULL;
    c->off = s->s_end;
    c->len = 0;
    c->pos = 0;
    if (t)
      t->next = c;
    else
      s->shead = c;
    s->stail = c;
    if (!s->scur)
      s->scur = c;
    t = c;
  }
  room = QM_MIN(QM_CHUNK_SIZE - t->len, limit - buffered);
  *buf = t->data + t->len;
  *len = room;
  return 0;
}

int qm_stream_write_commit(qm_stream *s, size_t n) {
  if (n == 0)
    return 0;
  if (!s->stail || s->stail->len + n > QM_CHUNK_SIZE)
    return QM_EINVAL;
  s->stail->len += n;
  s->s_end += n;
  if (!s->scur)
    s->scur = s->stail;
  if (s->sess && s->id >= 0)
    qm_session_stream_wants_write(s->sess, s);
  return 0;
}

ssize_t qm_stream_write(qm_stream *s, const uint8_t *data, size_t len) {
  size_t done = 0;
  while (done < len) {
    uint8_t *buf;
    size_t room;
    int rv = qm_stream_write_space(s, &buf, &room);
    if (rv < 0)
      return done ? (ssize_t)done : rv;
    if (room == 0)
      break;
    room = QM_MIN(room, len - done);
    memcpy(buf, data + done, room);
    qm_stream_write_commit(s, room);
    done += room;
  }
  return (ssize_t)done;
}

int qm_stream_shutdown_write(qm_stream *s) {
  if (s->closed)
    return QM_ECLOSED;
  if (s->fin_wanted)
    return 0;
  s->fin_wanted = 1;
  if (s->sess && s->id >= 0)
    qm_session_stream_wants_write(s->sess, s);
  return 0;
}

int qm_stream_reset(qm_stream *s, uint64_t app_error) {
  if (s->closed)
    return QM_ECLOSED;
  s->reset_code = app_error;
  if (s->sess)
    qm_session_stream_event(s->sess, s, QM_SEV_RESET);
  else
    s->close_err = QM_ERESET; /* not placed yet: fails when it would be */
  return 0;
}

size_t qm_stream_unsent(qm_stream *s, ngtcp2_vec *vec, size_t maxvec,
                        size_t *total) {
  size_t n = 0;
  qm_chunk *c = s->scur;
  *total = 0;
  while (c && n < maxvec) {
    uint64_t start = s->s_sent > c->off ? s->s_sent - c->off : 0;
    if (start < c->len) {
      vec[n].base = c->data + start;
      vec[n].len = c->len - (size_t)start;
      *total += vec[n].len;
      n++;
    }
    c = c->next;
  }
  return n;
}

void qm_stream_mark_sent(qm_stream *s, size_t n) {
  s->s_sent += n;
  while (s->scur && s->s_sent >= s->scur->off + s->scur->len && s->scur->next)
    s->scur = s->scur->next;
}

int qm_stream_has_unsent(const qm_stream *s) {
  return s->s_sent < s->s_end || (s->fin_wanted && !s->fin_sent) || s->announce;
}

void qm_stream_acked(qm_stream *s, uint64_t off, uint64_t len) {
  uint64_t upto = off + len;
  if (upto > s->s_acked)
    s->s_acked = upto;
  while (s->shead && s->shead->off + s->shead->len <= s->s_acked &&
         (s->shead->len == QM_CHUNK_SIZE || s->shead->next ||
          s->s_acked == s->s_end)) {
    qm_chunk *c = s->shead;
    s->shead = c->next;
    if (s->stail == c)
      s->stail = NULL;
    if (s->scur == c)
      s->scur = c->next;
    free(c);
  }
  if (s->send_blocked && s->s_end - s->s_acked < send_limit(s)) {
    s->send_blocked = 0;
    if (s->sess)
      qm_session_stream_event(s->sess, s, QM_SEV_SEND_READY);
  }
}

void qm_stream_rewind(qm_stream *s) {
  s->s_sent = s->s_acked;
  s->scur = s->shead;
  s->id = -1;
  s->opened = 0;
  s->fin_sent = 0;
  s->burst = 0;
}

qm_stream *qm_stream_split_for_retry(qm_stream *s) {
  qm_stream *g = qm_stream_new(s->s_limit);
  qm_chunk *c, *head = NULL, *tail = NULL;

  if (!g)
    return NULL;
  for (c = s->shead; c; c = c->next) {
    qm_chunk *n = malloc(sizeof(*n));
    if (!n) {
      free_chain(head);
      free(g);
      return NULL;
    }
    memcpy(n, c, offsetof(qm_chunk, data) + c->len);
    n->next = NULL;
    if (tail)
      tail->next = n;
    else
      head = n;
    tail = n;
  }
  /* the ghost keeps the original memory and the wire identity */
  g->ghost = 1;
  g->id = s->id;
  g->opened = 1;
  g->shead = s->shead;
  g->stail = s->stail;
  g->scur = s->scur;
  g->s_acked = s->s_acked;
  g->s_sent = s->s_sent;
  g->s_end = s->s_end;
  g->fin_wanted = s->fin_wanted;
  g->fin_sent = s->fin_sent;
  /* the stream starts over with its own copy */
  s->shead = head;
  s->stail = tail;
  s->scur = head;
  s->s_sent = 0;
  s->id = -1;
  s->opened = 0;
  s->fin_sent = 0;
  return g;
}

/* ---- receive side ---- */

static int buffer_copy(qm_stream *s, const uint8_t *data, size_t len) {
  while (len) {
    qm_chunk *t = s->rtail;
    size_t n;
    if (!t || t->len == QM_CHUNK_SIZE) {
      qm_chunk *c = malloc(sizeof(*c));
      if (!c)
        return QM_ENOMEM;
      c->next = NULL;
      c->off = 0;
      c->len = 0;
      c->pos = 0;
      if (t)
        t->next = c;
      else
        s->rhead = c;
      s->rtail = c;
      t = c;
    }
    n = QM_MIN(len, QM_CHUNK_SIZE - t->len);
    memcpy(t->data + t->len, data, n);
    t->len += n;
    s->r_buffered += n;
    data += n;
    len -= n;
  }
  return 0;
}

int qm_stream_buffer(qm_stream *s, const uint8_t *data, size_t len) {
  return buffer_copy(s, data, len);
}

static size_t offer(qm_stream *s, const uint8_t *data, size_t len) {
  size_t n;
  if (!s->cbs.on_recv || s->closed)
    return 0;
  s->delivering = 1;
  n = s->cbs.on_recv(s, data, len, s->ud);
  s->delivering = 0;
  return n > len ? len : n;
}

size_t qm_stream_drain(qm_stream *s) {
  size_t total = 0;
  while (s->rhead && !s->closed) {
    qm_chunk *c = s->rhead;
    size_t avail = c->len - c->pos, n;
    if (avail) {
      n = offer(s, c->data + c->pos, avail);
      c->pos += n;
      s->r_buffered -= n;
      total += n;
      if (n < avail)
        break;
    }
    s->rhead = c->next;
    if (s->rtail == c)
      s->rtail = NULL;
    free(c);
  }
  return total;
}

int qm_stream_recv_done(const qm_stream *s) {
  return s->r_buffered == 0;
}

void qm_stream_resume_recv(qm_stream *s) {
  size_t n;
  if (s->delivering || s->closed)
    return;
  n = qm_stream_drain(s);
  if (s->sess && (n || (s->r_buffered == 0 && s->fin_rcvd)))
    qm_session_stream_consumed(s->sess, s, n);
}

void qm_stream_set_callbacks(qm_stream *s, const qm_stream_cbs *cbs, void *ud) {
  s->cbs = *cbs;
  s->ud = ud;
}

int64_t qm_stream_id(const qm_stream *s) {
  return s->id;
}

uint64_t qm_stream_session_id(const qm_stream *s) {
  return s->sess ? qm_session_id(s->sess) : s->last_sess_id;
}

size_t qm_stream_send_buffered(const qm_stream *s) {
  return (size_t)(s->s_end - s->s_acked);
}
