/* Pure pool decisions (see policy.h). */
#include "policy.h"

int qm_policy_can_take(qm_policy_state st, int suspect, size_t npending,
                       uint64_t bidi_left) {
  if (suspect)
    return 0;
  if (st == QM_POLICY_HANDSHAKING)
    return npending < QM_POLICY_EXPECTED_STREAMS;
  if (st != QM_POLICY_ESTABLISHED)
    return 0;
  return bidi_left > npending;
}

qm_health qm_policy_health(const qm_health_facts *f) {
  uint64_t limit = QM_POLICY_SILENCE_PTOS * f->pto;
  int owed = f->bytes_in_flight > 0 || f->pto_count > 0;
  if (limit < QM_POLICY_SILENCE_NS)
    limit = QM_POLICY_SILENCE_NS;
  if (f->state != QM_POLICY_ESTABLISHED)
    return QM_HEALTH_OK;
  if (!f->suspect)
    return owed && f->silence >= limit ? QM_HEALTH_SUSPECT : QM_HEALTH_OK;
  /* heard from after it became suspect */
  if (f->now >= f->suspect_since && f->silence < f->now - f->suspect_since)
    return QM_HEALTH_RECOVER;
  if (f->now > f->suspect_since &&
      f->now - f->suspect_since > QM_POLICY_DEAD_AFTER_NS)
    return QM_HEALTH_DEAD;
  return QM_HEALTH_OK;
}

int qm_policy_can_retry(uint64_t bytes_acked, uint64_t bytes_received,
                        int fin_received, int reset, int heard_since_open) {
  return bytes_acked == 0 && bytes_received == 0 && !fin_received && !reset &&
         !heard_since_open;
}

int qm_policy_may_open_session(size_t sessions_here, size_t sessions_all,
                               uint32_t max_here, uint32_t max_all) {
  return sessions_here < max_here && sessions_all < max_all;
}

qm_policy_timers qm_policy_on_streams(size_t nstreams, uint64_t keepalive_ms,
                                      uint64_t session_idle_ms) {
  qm_policy_timers t;
  t.keepalive_ms = nstreams ? keepalive_ms : 0;
  t.idle_close_ms = nstreams ? 0 : session_idle_ms;
  return t;
}

uint64_t qm_policy_backoff(uint32_t n) {
  uint64_t b = QM_POLICY_BACKOFF_FIRST_NS;
  while (n > 1 && b < QM_POLICY_BACKOFF_MAX_NS) {
    b *= 2;
    n--;
  }
  return b < QM_POLICY_BACKOFF_MAX_NS ? b : QM_POLICY_BACKOFF_MAX_NS;
}

int qm_policy_server_failed(qm_server_health *h, uint64_t started,
                            uint64_t now) {
  if (h->fails && started < h->failed_at)
    return 0;
  if (h->fails < UINT32_MAX)
    h->fails++;
  h->failed_at = now;
  h->until = now + qm_policy_backoff(h->fails);
  return 1;
}

void qm_policy_server_ok(qm_server_health *h) {
  h->fails = 0;
  h->until = 0;
}

int qm_policy_server_backing_off(const qm_server_health *h, uint64_t now) {
  return h->fails && now < h->until;
}

int qm_policy_pick_server(const qm_server_facts *f, size_t n, uint64_t now) {
  int best = -1, soonest = -1, due = -1;
  size_t i;
  for (i = 0; i < n; i++) {
    const qm_server_facts *x = &f[i];
    if (soonest < 0 || x->health.until < f[soonest].health.until)
      soonest = (int)i;
    if (qm_policy_server_backing_off(&x->health, now))
      continue;
    if (x->health.fails && x->handshaking)
      continue; /* on trial: one probe at a time, it decides */
    if (x->health.fails && !x->usable) {
      /* back-off over: this stream's new session is the probe. (A server
       * with sessions that still work competes as any other: a stream put
       * on one of them would probe nothing.) */
      if (due < 0)
        due = (int)i;
      continue;
    }
    if (best < 0 || x->streams < f[best].streams)
      best = (int)i;
  }
  if (due >= 0)
    return due;
  return best >= 0 ? best : soonest;
}
