/*
 * pool — the dialer's session pool policy (SPEC §1.2, §1.5). See pool.h.
 *
 * Layout: a chained hash map from key string to a key entry. Each entry holds
 * the key (copied inline), a growable array of session pointers in insertion
 * order, and links into a list of all entries in key insertion order (used by
 * cleanup, remove, foreach and free). Entries are allocated one by one, so a
 * rehash never moves them.
 *
 * Re-entrancy: every session is unlinked before ops->destroy runs on it, and
 * the destroy callback may call qm_pool_count, qm_pool_keys, qm_pool_pick,
 * qm_pool_foreach, qm_pool_add, qm_pool_remove, qm_pool_prune and
 * qm_pool_cleanup on the same pool (a nested cleanup does not forget keys; the
 * next top-level one will). It must not call qm_pool_free. is_active and
 * can_take_stream must not modify the pool.
 */
#include "pool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quicmux/quicmux.h"

/* How many sessions prune unlinks before it calls destroy on them. */
#define QM_POOL_BATCH 64
#define QM_POOL_MIN_BUCKETS 16

typedef struct qm_pool_entry {
  struct qm_pool_entry *hnext; /* hash chain */
  struct qm_pool_entry *prev;  /* list of all entries, key insertion order */
  struct qm_pool_entry *next;
  uint64_t hash;
  void **sess;
  size_t n;
  size_t cap;
  char key[];
} qm_pool_entry;

struct qm_pool {
  qm_pool_ops ops;
  void *ud;
  qm_pool_entry **buckets;
  size_t nbuckets; /* power of two */
  size_t nkeys;
  size_t total; /* sessions held, all keys */
  qm_pool_entry *head;
  qm_pool_entry *tail;
  unsigned depth; /* > 0 while destroy callbacks run */
};

static uint64_t hash_key(const char *key) {
  /* FNV-1a, 64 bit. */
  uint64_t h = 14695981039346656037ULL;
  for (const unsigned char *s = (const unsigned char *)key; *s; s++) {
    h ^= *s;
    h *= 1099511628211ULL;
  }
  return h;
}

static qm_pool_entry *find_entry(const qm_pool *p, const char *key,
                                 uint64_t h) {
  qm_pool_entry *e = p->buckets[h & (p->nbuckets - 1)];
  for (; e; e = e->hnext)
    if (e->hash == h && strcmp(e->key, key) == 0)
      return e;
  return NULL;
}

/* Doubles the bucket array; on allocation failure keeps the old one. */
static void maybe_grow_buckets(qm_pool *p) {
  if (p->nkeys < p->nbuckets || p->nbuckets > SIZE_MAX / 2 / sizeof(void *))
    return;
  size_t nb = p->nbuckets * 2;
  qm_pool_entry **b = calloc(nb, sizeof *b);
  if (!b)
    return;
  for (qm_pool_entry *e = p->head; e; e = e->next) {
    size_t i = e->hash & (nb - 1);
    e->hnext = b[i];
    b[i] = e;
  }
  free(p->buckets);
  p->buckets = b;
  p->nbuckets = nb;
}

static qm_pool_entry *new_entry(qm_pool *p, const char *key, uint64_t h) {
  size_t len = strlen(key);
  qm_pool_entry *e = malloc(sizeof *e + len + 1);
  if (!e)
    return NULL;
  memcpy(e->key, key, len + 1);
  e->hash = h;
  e->sess = NULL;
  e->n = 0;
  e->cap = 0;
  maybe_grow_buckets(p);
  size_t i = h & (p->nbuckets - 1);
  e->hnext = p->buckets[i];
  p->buckets[i] = e;
  e->next = NULL;
  e->prev = p->tail;
  if (p->tail)
    p->tail->next = e;
  else
    p->head = e;
  p->tail = e;
  p->nkeys++;
  return e;
}

/* Unlinks e from the map and the list and frees it. Its sessions, if any,
 * must have been dealt with by the caller. */
static void free_entry(qm_pool *p, qm_pool_entry *e) {
  qm_pool_entry **pp = &p->buckets[e->hash & (p->nbuckets - 1)];
  while (*pp != e)
    pp = &(*pp)->hnext;
  *pp = e->hnext;
  if (e->prev)
    e->prev->next = e->next;
  else
    p->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    p->tail = e->prev;
  p->nkeys--;
  free(e->sess);
  free(e);
}

static void destroy_all(qm_pool *p, void **dead, size_t n) {
  p->depth++;
  for (size_t i = 0; i < n; i++)
    p->ops.destroy(dead[i], p->ud);
  p->depth--;
}

/* Destroys the inactive sessions of e, in insertion order. Sessions are
 * unlinked in batches; each batch is destroyed once the array is consistent
 * again. e stays valid meanwhile: entries are freed only by a top-level
 * cleanup or by qm_pool_free. */
static size_t prune_entry(qm_pool *p, qm_pool_entry *e) {
  size_t destroyed = 0;
  size_t start = 0;
  for (;;) {
    void *dead[QM_POOL_BATCH];
    size_t nd = 0;
    /* A destroy callback may have removed sessions; never scan past n. */
    size_t r = start < e->n ? start : e->n;
    size_t w = r;
    for (; r < e->n && nd < QM_POOL_BATCH; r++) {
      void *s = e->sess[r];
      if (p->ops.is_active(s, p->ud))
        e->sess[w++] = s;
      else
        dead[nd++] = s;
    }
    if (nd == 0)
      break;
    memmove(&e->sess[w], &e->sess[r], (e->n - r) * sizeof *e->sess);
    e->n -= nd;
    p->total -= nd;
    start = w;
    destroy_all(p, dead, nd);
    destroyed += nd;
    if (nd < QM_POOL_BATCH)
      break;
  }
  return destroyed;
}

int qm_pool_new(qm_pool **out, const qm_pool_ops *ops, void *ud) {
  if (!out || !ops || !ops->is_active || !ops->can_take_stream || !ops->destroy)
    return QM_EINVAL;
  *out = NULL;
  qm_pool *p = calloc(1, sizeof *p);
  if (!p)
    return QM_ENOMEM;
  p->buckets = calloc(QM_POOL_MIN_BUCKETS, sizeof *p->buckets);
  if (!p->buckets) {
    free(p);
    return QM_ENOMEM;
  }
  p->nbuckets = QM_POOL_MIN_BUCKETS;
  p->ops = *ops;
  p->ud = ud;
  *out = p;
  return 0;
}

void qm_pool_free(qm_pool *p) {
  if (!p)
    return;
  /* Detach each key's array before destroying its sessions, so callbacks see
   * them as gone. Loop in case a callback added sessions meanwhile. */
  while (p->total > 0) {
    for (qm_pool_entry *e = p->head; e; e = e->next) {
      void **arr = e->sess;
      size_t n = e->n;
      e->sess = NULL;
      e->n = 0;
      e->cap = 0;
      p->total -= n;
      destroy_all(p, arr, n);
      free(arr);
    }
  }
  while (p->head)
    free_entry(p, p->head);
  free(p->buckets);
  free(p);
}

void *qm_pool_pick(qm_pool *p, const char *key) {
  if (!p || !key)
    return NULL;
  qm_pool_entry *e = find_entry(p, key, hash_key(key));
  if (!e)
    return NULL;
  for (size_t i = 0; i < e->n; i++) {
    void *s = e->sess[i];
    if (p->ops.is_active(s, p->ud) && p->ops.can_take_stream(s, p->ud))
      return s;
  }
  return NULL;
}

int qm_pool_add(qm_pool *p, const char *key, void *sess) {
  if (!p || !key || !sess)
    return QM_EINVAL;
  uint64_t h = hash_key(key);
  qm_pool_entry *e = find_entry(p, key, h);
  int created = 0;
  if (!e) {
    e = new_entry(p, key, h);
    if (!e)
      return QM_ENOMEM;
    created = 1;
  }
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 4;
    void **a = NULL;
    if (cap > e->cap && cap <= SIZE_MAX / sizeof *a)
      a = realloc(e->sess, cap * sizeof *a);
    if (!a) {
      if (created)
        free_entry(p, e);
      return QM_ENOMEM;
    }
    e->sess = a;
    e->cap = cap;
  }
  e->sess[e->n++] = sess;
  p->total++;
  return 0;
}

size_t qm_pool_prune(qm_pool *p, const char *key) {
  if (!p || !key)
    return 0;
  qm_pool_entry *e = find_entry(p, key, hash_key(key));
  return e ? prune_entry(p, e) : 0;
}

int qm_pool_remove(qm_pool *p, void *sess) {
  if (!p)
    return QM_EINVAL;
  for (qm_pool_entry *e = p->head; e; e = e->next) {
    for (size_t i = 0; i < e->n; i++) {
      if (e->sess[i] == sess) {
        memmove(&e->sess[i], &e->sess[i + 1], (e->n - i - 1) * sizeof *e->sess);
        e->n--;
        p->total--;
        return 0;
      }
    }
  }
  return QM_ENOENT;
}

size_t qm_pool_cleanup(qm_pool *p) {
  if (!p)
    return 0;
  size_t destroyed = 0;
  qm_pool_entry *e = p->head;
  while (e) {
    destroyed += prune_entry(p, e);
    /* Read next only now: callbacks may have appended entries. */
    qm_pool_entry *next = e->next;
    if (e->n == 0 && p->depth == 0)
      free_entry(p, e);
    e = next;
  }
  return destroyed;
}

size_t qm_pool_count(const qm_pool *p, const char *key) {
  if (!p)
    return 0;
  if (!key)
    return p->total;
  const qm_pool_entry *e = find_entry(p, key, hash_key(key));
  return e ? e->n : 0;
}

size_t qm_pool_keys(const qm_pool *p) {
  return p ? p->nkeys : 0;
}

void qm_pool_foreach(const qm_pool *p, void (*fn)(void *sess, void *arg),
                     void *arg) {
  if (!p || !fn)
    return;
  for (const qm_pool_entry *e = p->head; e; e = e->next)
    for (size_t i = 0; i < e->n; i++)
      fn(e->sess[i], arg);
}

void qm_pool_foreach_key(const qm_pool *p, const char *key,
                         void (*fn)(void *sess, void *arg), void *arg) {
  if (!p || !key || !fn)
    return;
  const qm_pool_entry *e = find_entry(p, key, hash_key(key));
  for (size_t i = 0; e && i < e->n; i++)
    fn(e->sess[i], arg);
}
