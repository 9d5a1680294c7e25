/* Program logging: UTC timestamps, level, module; stderr or a file that
 * SIGHUP reopens. The library logs through the same sink (qm_set_log). */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "app.h"

qm_log_level app_log_level = QM_LOG_WARNING;

static const char *const level_names[] = {"debug", "info", "warning", "error",
                                          "none"};
static FILE *log_fp; /* NULL = stderr */
static char *log_path;
/* workers log from their threads: one line at a time, and SIGHUP's reopen
 * never swaps the file under a writer */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

int app_log_level_parse(const char *name, qm_log_level *out) {
  int i;
  for (i = 0; i <= (int)QM_LOG_NONE; i++)
    if (!strcasecmp(name, level_names[i])) {
      *out = (qm_log_level)i;
      return 0;
    }
  return -1;
}

const char *app_log_level_name(qm_log_level lvl) {
  return (unsigned)lvl <= QM_LOG_NONE ? level_names[lvl] : "?";
}

static FILE *sink(void) {
  return log_fp ? log_fp : stderr;
}

static void emit(const char *level, const char *module, const char *msg) {
  struct timeval tv;
  struct tm tm;
  char ts[32];
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  pthread_mutex_lock(&log_mu);
  fprintf(sink(), "%s.%03ldZ %-7s [%s] %s\n", ts, (long)(tv.tv_usec / 1000),
          level, module, msg);
  fflush(sink());
  pthread_mutex_unlock(&log_mu);
}

static void lib_cb(qm_log_level lvl, const char *module, const char *msg,
                   void *ud) {
  (void)ud;
  if (lvl >= app_log_level && lvl < QM_LOG_NONE)
    emit(level_names[lvl], module, msg);
}

void app_log_setup(qm_log_level lvl) {
  app_log_level = lvl;
  qm_set_log(lib_cb, lvl, NULL);
}

int app_log_open(const char *path, char *err, size_t errlen) {
  FILE *f;
  char *p;
  if (!path) {
    app_log_close();
    return 0;
  }
  f = fopen(path, "a");
  if (!f) {
    snprintf(err, errlen, "'%s': %s", path, strerror(errno));
    return -1;
  }
  p = strdup(path);
  if (!p) {
    fclose(f);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  app_log_close();
  log_fp = f;
  log_path = p;
  return 0;
}

void app_log_reopen(void) {
  FILE *f;
  if (!log_path)
    return;
  f = fopen(log_path, "a");
  if (!f) {
    app_logm(QM_LOG_ERROR, "log",
             "cannot reopen %s: %s; still writing to "
             "the old file",
             log_path, strerror(errno));
    return;
  }
  pthread_mutex_lock(&log_mu);
  fclose(log_fp);
  log_fp = f;
  pthread_mutex_unlock(&log_mu);
  app_logm(QM_LOG_INFO, "log", "log file reopened");
}

void app_log_close(void) {
  if (log_fp)
    fclose(log_fp);
  log_fp = NULL;
  free(log_path);
  log_path = NULL;
}

static void vlog(qm_log_level lvl, const char *module, const char *fmt,
                 va_list ap) {
  char msg[1024];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  emit(level_names[lvl], module, msg);
}

void app_logm(qm_log_level lvl, const char *module, const char *fmt, ...) {
  va_list ap;
  if (lvl < app_log_level || lvl >= QM_LOG_NONE)
    return;
  va_start(ap, fmt);
  vlog(lvl, module, fmt, ap);
  va_end(ap);
}

void app_log(qm_log_level lvl, const char *fmt, ...) {
  va_list ap;
  if (lvl < app_log_level || lvl >= QM_LOG_NONE)
    return;
  va_start(ap, fmt);
  vlog(lvl, "quicmux", fmt, ap);
  va_end(ap);
}

void app_log_always(const char *module, const char *fmt, ...) {
  va_list ap;
  if (app_log_level >= QM_LOG_NONE)
    return;
  va_start(ap, fmt);
  vlog(QM_LOG_INFO, module, fmt, ap);
  va_end(ap);
}
