/*
 * Internal helpers shared by the library modules: logging, the clock,
 * randomness. Never part of the public API.
 */
#ifndef QM_INTERNAL_H
#define QM_INTERNAL_H

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "quicmux/quicmux.h"

#define QM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define QM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QM_MAX(a, b) ((a) > (b) ? (a) : (b))

#define QM_DEFAULT_SNI "quic.internal.v2ray.com"
#define QM_DEFAULT_ALPN "h2,http/1.1"
/* quic-go's largest datagram, and the largest it accepts (SPEC §3.3). */
#define QM_MAX_QUIC_DATAGRAM 1452
/* Default stream buffer (send buffer, initial receive window) and largest
 * receive window of a session or stream (qm_settings conn_window). */
#define QM_DEFAULT_STREAM_BUFFER (1024 * 1024)
#define QM_DEFAULT_MAX_WINDOW (32 * 1024 * 1024)
/* Server connection ids: v2ray's ConnectionIDLength (SPEC §1.4). */
#define QM_SCID_LEN 12
/* Receive buffers: wrapped probes reach 1493 bytes (SPEC §3.4). */
#define QM_RX_BUF 2048

extern qm_log_level qm__log_min;
void qm__log(qm_log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define QM_LOG(lvl, mod, ...)                                                  \
  do {                                                                         \
    if ((lvl) >= qm__log_min)                                                  \
      qm__log((lvl), (mod), __VA_ARGS__);                                      \
  } while (0)
#define QM_DEBUG(mod, ...) QM_LOG(QM_LOG_DEBUG, mod, __VA_ARGS__)
#define QM_INFO(mod, ...) QM_LOG(QM_LOG_INFO, mod, __VA_ARGS__)
#define QM_WARN(mod, ...) QM_LOG(QM_LOG_WARNING, mod, __VA_ARGS__)
#define QM_ERROR(mod, ...) QM_LOG(QM_LOG_ERROR, mod, __VA_ARGS__)

/* Monotonic time in nanoseconds (ngtcp2's timestamp unit). */
static inline uint64_t qm_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Random bytes from GnuTLS's generator. */
void qm_random(void *buf, size_t len);

/* Wipe memory that held a secret. */
void qm_wipe(void *buf, size_t len);

/* "IP:PORT" or "[IP6]:PORT" of an IPv4/IPv6 address, for logs and info. */
void qm_addr_str(const struct sockaddr *sa, char *out, size_t outlen);

/* The static spelling of a congestion control name (cubic if unknown). */
const char *qm__cc_static(const char *name);

/* A new server connection id of len bytes: random, and with workers
 * (count > 1) its first byte is a random value = worker (mod count), which
 * qm_cid_worker and the kernel's steering program read back. */
void qm__cid_make(uint8_t *cid, size_t len, uint32_t worker, uint32_t count);

/* Attach the reuseport steering program to the sockets fds[0..n-1] (fds[i]
 * = worker i); off: where the QUIC packet starts in the UDP payload. */
int qm__steer_attach(const int *fds, size_t n, size_t off, char *err,
                     size_t errlen);

/* Caps shared by dialers on several loops (qm_settings.caps): counted with
 * atomic operations, only when sessions and streams start and end. */
struct qm_caps {
  long sessions;
  long streams;
};
static inline long qm__caps_add(long *v, long d) {
  return __atomic_add_fetch(v, d, __ATOMIC_RELAXED);
}
static inline long qm__caps_get(const long *v) {
  return __atomic_load_n(v, __ATOMIC_RELAXED);
}

/* A process-wide increasing id for sessions (for logs). */
uint64_t qm__next_session_id(void);

#endif /* QM_INTERNAL_H */
