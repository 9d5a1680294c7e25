/*
 * pool — the dialer's session pool policy (SPEC §1.2, §1.5), sans I/O.
 *
 * Sessions are kept per key (destination address + port + the settings that
 * matter), in insertion order. The pool knows nothing of sockets or QUIC: it
 * sees a session only through qm_pool_ops, so it is unit-tested with fakes.
 *
 * Policy, as in v2ray's dialer:
 *  - pick: the first session of the key, in insertion order, that is active
 *    and can take one more stream;
 *  - when none can, the caller prunes the key (inactive sessions are
 *    destroyed, i.e. closed together with their UDP socket), makes a new
 *    session and adds it;
 *  - a periodic cleanup (every 60 s) prunes every key and forgets keys left
 *    with no session. Live idle sessions are never touched by cleanup.
 *
 * The pool owns the sessions it holds: it calls ops->destroy exactly once for
 * each session it drops (prune, cleanup, qm_pool_free), and never for a
 * session taken out with qm_pool_remove.
 */
#ifndef QM_POOL_H
#define QM_POOL_H

#include <stddef.h>

typedef struct qm_pool_ops {
  /* Nonzero while the session is usable: not closed, draining or failed. */
  int (*is_active)(void *sess, void *ud);
  /* Nonzero if one more stream may go to this session now (it has stream
   * credit, or it is still handshaking and below its expected limit). */
  int (*can_take_stream)(void *sess, void *ud);
  /* Close the session if still open and free it with its UDP socket. */
  void (*destroy)(void *sess, void *ud);
} qm_pool_ops;

typedef struct qm_pool qm_pool;

/* ud is passed to every op. Returns 0 or QM_ENOMEM. */
int qm_pool_new(qm_pool **out, const qm_pool_ops *ops, void *ud);
/* Destroys every session still held, then the pool. */
void qm_pool_free(qm_pool *p);

/* First active session of key that can take a stream, or NULL. */
void *qm_pool_pick(qm_pool *p, const char *key);
/* Append sess to key's list (key is copied). 0 or QM_ENOMEM. */
int qm_pool_add(qm_pool *p, const char *key, void *sess);
/* Destroy the inactive sessions of key; returns how many. */
size_t qm_pool_prune(qm_pool *p, const char *key);
/* Take sess out without destroying it. 0, or QM_ENOENT if not held. */
int qm_pool_remove(qm_pool *p, void *sess);
/* The periodic task: prune every key, forget empty keys. Returns how many
 * sessions were destroyed. */
size_t qm_pool_cleanup(qm_pool *p);

/* Sessions held for key (NULL = all keys), and number of keys. */
size_t qm_pool_count(const qm_pool *p, const char *key);
size_t qm_pool_keys(const qm_pool *p);
/* Call fn for every session held (any order of keys, insertion order within a
 * key). fn must not add or remove sessions. */
void qm_pool_foreach(const qm_pool *p, void (*fn)(void *sess, void *arg),
                     void *arg);
/* The same for the sessions of one key only, in insertion order. */
void qm_pool_foreach_key(const qm_pool *p, const char *key,
                         void (*fn)(void *sess, void *arg), void *arg);

#endif /* QM_POOL_H */
