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

/* ---- several servers (every address of every --server is one) ---- */

/* A server whose handshakes fail is skipped for a back-off: 1 s after the
 * first failure, doubling with each failure in a row, at most 30 s. */
#define QM_POLICY_BACKOFF_FIRST_NS (1000000000ull)
#define QM_POLICY_BACKOFF_MAX_NS (30ull * 1000000000ull)

/* What the dialer remembers of one server's handshakes (ns). */
typedef struct qm_server_health {
  uint32_t fails;     /* handshakes failed in a row */
  uint64_t until;     /* skipped before this (0 = never failed) */
  uint64_t failed_at; /* when the last counted failure was noted */
} qm_server_health;

/* The back-off after n failures in a row (n >= 1). */
uint64_t qm_policy_backoff(uint32_t n);

/* A handshake to the server failed at now; the session had started at
 * started. Sessions that started before the last counted failure fail for
 * the same reason (they were sent into the same outage), so they do not
 * double the back-off again. Returns 1 if the failure was counted. */
int qm_policy_server_failed(qm_server_health *h, uint64_t started,
                            uint64_t now);
/* A handshake to the server succeeded: it is usable again at once. */
void qm_policy_server_ok(qm_server_health *h);

/* Is the server backing off at now? */
int qm_policy_server_backing_off(const qm_server_health *h, uint64_t now);

/* One server as the next dial sees it. */
typedef struct qm_server_facts {
  qm_server_health health;
  size_t streams;     /* streams open or queued on its sessions */
  size_t handshaking; /* of its sessions, those still handshaking */
  size_t usable;      /* of its sessions, established ones that take streams */
} qm_server_facts;

/* Which server the next stream goes to (an index into f), -1 if n == 0.
 * A server whose back-off is over, that no session is probing yet and that
 * has no usable session is tried again at once: the stream goes to it (the
 * first such one) and its new session is the probe. Else, among the other
 * servers, the one with the fewest streams, the first of equals; a server
 * that backs off or is on trial (failed before, a session of it
 * handshaking) is skipped. When none qualifies, the one whose back-off ends
 * first (a stream is never refused for it). One server is always picked:
 * one server behaves as v2ray's pool. */
int qm_policy_pick_server(const qm_server_facts *f, size_t n, uint64_t now);

#endif
