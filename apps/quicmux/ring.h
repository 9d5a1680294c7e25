/*
 * ring — the hand-off queue between server workers: a bounded
 * multi-producer, single-consumer ring of datagrams (Vyukov's sequence
 * numbers). A producer claims a slot with one compare-and-swap, fills it and
 * publishes it with a release store; the one consumer reads slots in order.
 * No lock; a full ring refuses (the datagram is lost, QUIC recovers).
 */
#ifndef QM_APP_RING_H
#define QM_APP_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Handed-off datagrams are unwrapped QUIC datagrams: at most this long
 * (the library's receive buffer). */
#define RING_DATAGRAM_MAX 2048

typedef struct ring_slot {
  size_t seq;
  socklen_t fromlen, locallen;
  uint16_t len;
  struct sockaddr_storage from, local;
  uint8_t data[RING_DATAGRAM_MAX];
} ring_slot;

typedef struct ring {
  ring_slot *slots;
  size_t mask;
  size_t head; /* producers (atomic) */
  char pad[64];
  size_t tail;      /* the consumer's */
  uint64_t dropped; /* refused because full (atomic) */
} ring;

/* n slots, a power of two. 0 or -1 (no memory). */
int ring_init(ring *r, size_t n);
void ring_clear(ring *r);
/* Any thread: copy one datagram in. 0, or -1 when full or too long. */
int ring_put(ring *r, const struct sockaddr *local, socklen_t locallen,
             const struct sockaddr *from, socklen_t fromlen, const uint8_t *pkt,
             size_t len);
/* The consumer: the next filled slot or NULL; ring_done gives it back. */
ring_slot *ring_peek(ring *r);
void ring_done(ring *r, ring_slot *c);
uint64_t ring_dropped(const ring *r);

#endif
