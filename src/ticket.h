/*
 * ticket — the client's memory of servers for 0-RTT: per server (its
 * address and TLS name) the last TLS session ticket (GnuTLS session data)
 * and the server's 0-RTT transport parameters (ngtcp2's encoding). Kept in
 * memory, and in a file when one is named: read when the store is made
 * (a bad file is ignored with a log line), rewritten (mode 0600, through a
 * temporary file and rename) on each new ticket.
 */
#ifndef QM_TICKET_H
#define QM_TICKET_H

#include <stddef.h>
#include <stdint.h>

typedef struct qm_ticket_store qm_ticket_store;

/* Servers remembered at most; the least recently stored goes first. */
#define QM_TICKET_MAX_SERVERS 64
/* Larger tickets or parameters are not kept (GnuTLS session data is a few
 * hundred bytes, 0-RTT transport parameters under 256). */
#define QM_TICKET_MAX_DATA 8192

/* file may be NULL (memory only). Never fails on a bad file. */
int qm_ticket_store_new(qm_ticket_store **out, const char *file);
void qm_ticket_store_free(qm_ticket_store *t);

/* The ticket and parameters stored for key: 1, or 0 if none. The pointers
 * stay valid until the next qm_ticket_put. */
int qm_ticket_get(const qm_ticket_store *t, const char *key,
                  const uint8_t **ticket, size_t *ticketlen, const uint8_t **tp,
                  size_t *tplen);
/* Store (replace) key's ticket and parameters, and write the file. */
void qm_ticket_put(qm_ticket_store *t, const char *key, const uint8_t *ticket,
                   size_t ticketlen, const uint8_t *tp, size_t tplen);
/* Forget key (its ticket failed). */
void qm_ticket_forget(qm_ticket_store *t, const char *key);
size_t qm_ticket_count(const qm_ticket_store *t);

#endif
