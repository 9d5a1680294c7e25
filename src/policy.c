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
