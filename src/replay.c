/* A hash set of ClientHello keys with expiry times (see replay.h). The keys
 * GnuTLS hands over end with the PSK binder, an HMAC: their bytes are
 * already uniform, so a simple FNV-1a hash spreads them. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "replay.h"

#define NBUCKETS 4096

typedef struct rentry {
  struct rentry *next;
  time_t exp;
  size_t len;
  unsigned char key[];
} rentry;

struct qm_replay {
  rentry *b[NBUCKETS];
  size_t n;
};

int qm_replay_new(qm_replay **out) {
  *out = calloc(1, sizeof(**out));
  return *out ? 0 : QM_ENOMEM;
}

void qm_replay_free(qm_replay *r) {
  size_t i;
  if (!r)
    return;
  for (i = 0; i < NBUCKETS; i++)
    while (r->b[i]) {
      rentry *e = r->b[i];
      r->b[i] = e->next;
      free(e);
    }
  free(r);
}

static size_t hash(const unsigned char *p, size_t n) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++)
    h = (h ^ p[i]) * 16777619u;
  return h % NBUCKETS;
}

/* Drop expired entries: of one bucket, or of all when full. */
static void sweep(qm_replay *r, size_t from, size_t to, time_t now) {
  size_t i;
  for (i = from; i < to; i++) {
    rentry **pp = &r->b[i];
    while (*pp) {
      if ((*pp)->exp < now) {
        rentry *e = *pp;
        *pp = e->next;
        free(e);
        r->n--;
      } else {
        pp = &(*pp)->next;
      }
    }
  }
}

int qm_replay_add(void *ud, time_t exp_time, const gnutls_datum_t *key,
                  const gnutls_datum_t *data) {
  qm_replay *r = ud;
  time_t now = time(NULL);
  size_t h = hash(key->data, key->size);
  rentry *e;
  (void)data;
  sweep(r, h, h + 1, now);
  for (e = r->b[h]; e; e = e->next)
    if (e->len == key->size && !memcmp(e->key, key->data, key->size)) {
      QM_INFO("replay", "a ClientHello seen before (a replay?): early data "
                        "refused");
      return GNUTLS_E_DB_ENTRY_EXISTS;
    }
  if (r->n >= QM_REPLAY_MAX) {
    sweep(r, 0, NBUCKETS, now);
    if (r->n >= QM_REPLAY_MAX)
      return GNUTLS_E_DB_ERROR;
  }
  e = malloc(sizeof(*e) + key->size);
  if (!e)
    return GNUTLS_E_MEMORY_ERROR;
  e->exp = exp_time;
  e->len = key->size;
  memcpy(e->key, key->data, key->size);
  e->next = r->b[h];
  r->b[h] = e;
  r->n++;
  return 0;
}

size_t qm_replay_count(const qm_replay *r) {
  return r->n;
}
