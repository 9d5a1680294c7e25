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

uint64_t qm_policy_window_growth(uint64_t window, uint64_t max,
                                 uint64_t since_last_ns, uint64_t srtt_ns,
                                 int have_last) {
  if (!have_last || window >= max || since_last_ns >= 2 * srtt_ns)
    return 0;
  return window < max - window ? window : max - window;
}

int qm_policy_window_consumed(qm_window *w, uint64_t init, uint64_t n) {
  if (!w->size)
    w->size = init;
  w->epoch_bytes += n;
  return w->epoch_bytes * 2 >= w->size;
}

uint64_t qm_policy_window_check(qm_window *w, uint64_t max, uint64_t now,
                                uint64_t srtt_ns) {
  uint64_t extra = qm_policy_window_growth(w->size, max, now - w->epoch_ts,
                                           srtt_ns, w->epoch_ts != 0);
  w->size += extra;
  w->epoch_bytes = 0;
  w->epoch_ts = now;
  return extra;
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
