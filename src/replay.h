/*
 * replay — the server's record of ClientHellos that carried early data,
 * behind GnuTLS's anti-replay window (gnutls_anti_replay_set_add_function):
 * a ClientHello seen before in the window is a replay, and its early data
 * is refused (the handshake goes on, in one round trip more). Bounded: when
 * full of live entries, early data is refused rather than remembered
 * without limit.
 */
#ifndef QM_REPLAY_H
#define QM_REPLAY_H

#include <gnutls/gnutls.h>

typedef struct qm_replay qm_replay;

/* Entries held at most (each ~100 bytes). */
#define QM_REPLAY_MAX 65536

int qm_replay_new(qm_replay **out);
void qm_replay_free(qm_replay *r);
/* gnutls_db_add_func: 0 if key is new (now recorded until exp_time),
 * GNUTLS_E_DB_ENTRY_EXISTS if seen, GNUTLS_E_DB_ERROR when full. */
int qm_replay_add(void *r, time_t exp_time, const gnutls_datum_t *key,
                  const gnutls_datum_t *data);
size_t qm_replay_count(const qm_replay *r);

#endif
