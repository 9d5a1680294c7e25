/* Errors, version, logging, settings defaults and small shared helpers. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "internal.h"

#ifndef QM_VERSION_STRING
#define QM_VERSION_STRING "0.0.0"
#endif

const char *qm_version(void) {
  return QM_VERSION_STRING;
}

const char *qm_strerror(int err) {
  switch (err) {
  case QM_OK:
    return "success";
  case QM_EINVAL:
    return "invalid argument";
  case QM_ENOMEM:
    return "out of memory";
  case QM_EIO:
    return "socket error";
  case QM_EBADMSG:
    return "bad datagram";
  case QM_ERESOLVE:
    return "host name did not resolve";
  case QM_ETLS:
    return "TLS error";
  case QM_EQUIC:
    return "QUIC protocol error";
  case QM_ETIMEDOUT:
    return "timed out";
  case QM_ECLOSED:
    return "closed";
  case QM_ERESET:
    return "reset by peer";
  case QM_ELIMIT:
    return "limit reached";
  case QM_EAGAIN:
    return "try again";
  case QM_ENOENT:
    return "not found";
  case QM_EREFUSED:
    return "refused by peer";
  default:
    return "unknown error";
  }
}

static const char *const close_causes[QM_CLOSE__COUNT] = {
    "closed",  "idle_timeout", "handshake_timeout", "path_dead",
    "refused", "tls",          "protocol"};

const char *qm_close_cause_name(int cause) {
  return cause >= 0 && cause < QM_CLOSE__COUNT ? close_causes[cause] : NULL;
}

/* ---- logging ---- */

qm_log_level qm__log_min = QM_LOG_WARNING;
static qm_log_fn log_fn;
static void *log_ud;

void qm_set_log(qm_log_fn fn, qm_log_level min_level, void *ud) {
  log_fn = fn;
  log_ud = ud;
  qm__log_min = fn ? min_level : QM_LOG_NONE;
}

void qm__log(qm_log_level lvl, const char *module, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  if (!log_fn || lvl < qm__log_min)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  log_fn(lvl, module, msg, log_ud);
}

/* ---- misc ---- */

void qm_random(void *buf, size_t len) {
  if (gnutls_rnd(GNUTLS_RND_NONCE, buf, len) != 0)
    abort(); /* the generator failing is not recoverable */
}

void qm_wipe(void *buf, size_t len) {
  gnutls_memset(buf, 0, len);
}

void qm__cid_make(uint8_t *cid, size_t len, uint32_t worker, uint32_t count) {
  qm_random(cid, len);
  if (count > 1 && count <= QM_MAX_WORKERS && len == QM_SCID_LEN) {
    unsigned slots = 256 / count; /* values of the byte that name a worker */
    cid[0] = (uint8_t)((cid[0] % slots) * count + worker % count);
  }
}

int qm_cid_worker(const uint8_t *cid, size_t len, uint32_t count) {
  if (count <= 1 || count > QM_MAX_WORKERS || len != QM_SCID_LEN)
    return -1;
  return (int)(cid[0] % count);
}

uint64_t qm__next_session_id(void) {
  static uint64_t next = 1; /* one loop per thread; see ARCHITECTURE.md */
  return __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
}

void qm_settings_default(qm_settings *s) {
  memset(s, 0, sizeof(*s));
  s->security = QM_SEC_NONE;
  s->header = QM_HDR_NONE;
  s->insecure = 1;
  s->max_streams_bidi = 32;
  s->handshake_timeout_ms = 8000;
  s->stream_buffer = QM_DEFAULT_STREAM_BUFFER;
  s->conn_window = QM_DEFAULT_MAX_WINDOW;
  s->keepalive_ms = 5000;
  s->session_idle_ms = 25000;
  s->max_sessions_per_dest = 64;
  s->max_sessions = 0; /* role default: 1024 client, 4096 server */
  s->max_streams = 65536;
  s->hop_interval_ms = 30000;
}

int qm_split_hostport(const char *in, char *host, size_t hostlen,
                      uint16_t *port, char *err, size_t errlen) {
  const char *colon, *hs, *he;
  char *end;
  unsigned long p;

  if (!in || !*in) {
    snprintf(err, errlen, "empty address (want HOST:PORT or [IPv6]:PORT)");
    return QM_EINVAL;
  }
  if (in[0] == '[') {
    he = strchr(in, ']');
    if (!he || he[1] != ':') {
      snprintf(err, errlen, "'%s': want [IPv6]:PORT", in);
      return QM_EINVAL;
    }
    hs = in + 1;
    colon = he + 1;
  } else {
    colon = strrchr(in, ':');
    if (!colon) {
      snprintf(err, errlen, "'%s': missing port (want HOST:PORT)", in);
      return QM_EINVAL;
    }
    if (memchr(in, ':', (size_t)(colon - in))) {
      snprintf(err, errlen, "'%s': write IPv6 addresses as [IPv6]:PORT", in);
      return QM_EINVAL;
    }
    hs = in;
    he = colon;
  }
  if (he == hs) {
    snprintf(err, errlen, "'%s': empty host", in);
    return QM_EINVAL;
  }
  if ((size_t)(he - hs) >= hostlen) {
    snprintf(err, errlen, "'%s': host too long", in);
    return QM_EINVAL;
  }
  errno = 0;
  p = strtoul(colon + 1, &end, 10);
  if (!isdigit((unsigned char)colon[1]) || *end || errno || p > 65535) {
    snprintf(err, errlen, "'%s': port must be a number from 0 to 65535", in);
    return QM_EINVAL;
  }
  memcpy(host, hs, (size_t)(he - hs));
  host[he - hs] = '\0';
  *port = (uint16_t)p;
  return 0;
}

void qm_addr_str(const struct sockaddr *sa, char *out, size_t outlen) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    snprintf(out, outlen, "%s:%u", host, ntohs(a->sin_port));
  } else {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    snprintf(out, outlen, "[%s]:%u", host, ntohs(a->sin6_port));
  }
}
