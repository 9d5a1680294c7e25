/*
 * policy — the pool's decisions as pure functions of a session's state and
 * the time, so they are unit-tested in virtual time (tests/unit/test_policy.c)
 * and the session/dialer code only gathers the facts and acts.
 */
#ifndef QM_POLICY_H
#define QM_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* Streams a client queues on a handshaking session before it knows the
 * server's limit: v2ray's 32 (SPEC §2). */
#define QM_POLICY_EXPECTED_STREAMS 32
/* Probe timeouts in a row (no ack) after which a session looks dead. */
#define QM_POLICY_SUSPECT_PTO 3
/* How long a session may look dead before it is closed (ns). */
#define QM_POLICY_DEAD_AFTER_NS (8ull * 1000000000ull)

typedef enum {
  QM_POLICY_HANDSHAKING,
  QM_POLICY_ESTABLISHED,
  QM_POLICY_GONE, /* closing, draining or dead */
} qm_policy_state;

/* May one more stream go to this session now? */
int qm_policy_can_take(qm_policy_state st, int suspect, size_t npending,
                       uint64_t bidi_left);

typedef enum {
  QM_HEALTH_OK,      /* nothing to do */
  QM_HEALTH_SUSPECT, /* stop taking streams, move unanswered ones away */
  QM_HEALTH_RECOVER, /* answers again: take streams again */
  QM_HEALTH_DEAD,    /* close it: open streams fail instead of hanging */
} qm_health;

/* From loss recovery's consecutive probe timeouts. suspect_since is the time
 * the session became suspect (valid when suspect). */
qm_health qm_policy_health(qm_policy_state st, size_t pto_count, int suspect,
                           uint64_t suspect_since, uint64_t now);

/* Can a stream move to another session on a dead path without anything of
 * it having reached the peer's application? */
int qm_policy_can_retry(uint64_t bytes_acked, uint64_t bytes_received,
                        int fin_received, int reset);

/* Under the caps for a new session? */
int qm_policy_may_open_session(size_t sessions_here, size_t sessions_all,
                               uint32_t max_here, uint32_t max_all);

/* What a client session does with its timers when its stream count
 * changes: keep-alive on while it carries streams, idle close armed while
 * it carries none. */
typedef struct qm_policy_timers {
  uint64_t keepalive_ms; /* 0 = off */
  uint64_t idle_close_ms; /* 0 = not armed */
} qm_policy_timers;
qm_policy_timers qm_policy_on_streams(size_t nstreams, uint64_t keepalive_ms,
                                      uint64_t session_idle_ms);

#endif
