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
/* Silence from the peer, while it owes us an acknowledgement, after which
 * a session looks dead: the longer of this and 3 probe timeouts (ns). */
#define QM_POLICY_SILENCE_NS (1000000000ull)
#define QM_POLICY_SILENCE_PTOS 3
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

/* What the session knows about its path, all times in ns. */
typedef struct qm_health_facts {
  qm_policy_state state;
  size_t pto_count;         /* probe timeouts in a row (loss recovery) */
  uint64_t bytes_in_flight; /* ack-eliciting bytes not yet acknowledged */
  uint64_t silence;         /* since the last packet from the peer */
  uint64_t pto;             /* the current probe timeout */
  int suspect;
  uint64_t suspect_since; /* valid when suspect */
  uint64_t now;
} qm_health_facts;

/* A session looks dead when the peer owes an acknowledgement (bytes in
 * flight, or probes outstanding) and has been silent for the longer of
 * QM_POLICY_SILENCE_NS and QM_POLICY_SILENCE_PTOS probe timeouts; it
 * recovers when any packet arrives after that, and is dead after
 * QM_POLICY_DEAD_AFTER_NS more. */
qm_health qm_policy_health(const qm_health_facts *f);

/* Can a stream move to another session on a dead path without anything of
 * it having reached the peer's application? Only if nothing of it was
 * acknowledged or answered, and the peer has not been heard from since the
 * stream was opened (a live peer would have acknowledged its first bytes). */
int qm_policy_can_retry(uint64_t bytes_acked, uint64_t bytes_received,
                        int fin_received, int reset, int heard_since_open);

/* Under the caps for a new session? */
int qm_policy_may_open_session(size_t sessions_here, size_t sessions_all,
                               uint32_t max_here, uint32_t max_all);

/* What a client session does with its timers when its stream count
 * changes: keep-alive on while it carries streams, idle close armed while
 * it carries none. */
typedef struct qm_policy_timers {
  uint64_t keepalive_ms;  /* 0 = off */
  uint64_t idle_close_ms; /* 0 = not armed */
} qm_policy_timers;
qm_policy_timers qm_policy_on_streams(size_t nstreams, uint64_t keepalive_ms,
                                      uint64_t session_idle_ms);

#endif
