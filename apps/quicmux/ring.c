/* The hand-off ring between server workers (ring.h). */
#include <stdlib.h>
#include <string.h>

#include "ring.h"

int ring_init(ring *r, size_t n) {
  size_t i;
  memset(r, 0, sizeof(*r));
  if (n < 2 || (n & (n - 1)))
    return -1;
  r->slots = calloc(n, sizeof(*r->slots));
  if (!r->slots)
    return -1;
  r->mask = n - 1;
  for (i = 0; i < n; i++)
    r->slots[i].seq = i;
  return 0;
}

void ring_clear(ring *r) {
  free(r->slots);
  r->slots = NULL;
}

int ring_put(ring *r, const struct sockaddr *local, socklen_t locallen,
             const struct sockaddr *from, socklen_t fromlen, const uint8_t *pkt,
             size_t len) {
  size_t pos = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
  ring_slot *c;
  if (len > RING_DATAGRAM_MAX || fromlen > sizeof(c->from) ||
      locallen > sizeof(c->local))
    return -1;
  for (;;) {
    size_t seq;
    long dif;
    c = &r->slots[pos & r->mask];
    seq = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
    dif = (long)seq - (long)pos;
    if (dif == 0) { /* free for this position: claim it */
      if (__atomic_compare_exchange_n(&r->head, &pos, pos + 1, 1,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        break;
      /* another producer took it; pos now holds the new head */
    } else if (dif < 0) { /* the consumer has not freed it: full */
      __atomic_add_fetch(&r->dropped, 1, __ATOMIC_RELAXED);
      return -1;
    } else {
      pos = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
    }
  }
  memcpy(&c->from, from, fromlen);
  c->fromlen = fromlen;
  memcpy(&c->local, local, locallen);
  c->locallen = locallen;
  c->len = (uint16_t)len;
  memcpy(c->data, pkt, len);
  __atomic_store_n(&c->seq, pos + 1, __ATOMIC_RELEASE); /* publish */
  return 0;
}

ring_slot *ring_peek(ring *r) {
  ring_slot *c = &r->slots[r->tail & r->mask];
  if (__atomic_load_n(&c->seq, __ATOMIC_ACQUIRE) != r->tail + 1)
    return NULL;
  return c;
}

void ring_done(ring *r, ring_slot *c) {
  /* free for the producers one lap later */
  __atomic_store_n(&c->seq, r->tail + r->mask + 1, __ATOMIC_RELEASE);
  r->tail++;
}

uint64_t ring_dropped(const ring *r) {
  return __atomic_load_n(&r->dropped, __ATOMIC_RELAXED);
}
