/* One qlog file per session (qlog.h). Blocking file I/O on the loop: qlog
 * is a debugging aid, buffered in 64 KiB, and off by default. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "qlog.h"

#define QLOG_SUFFIX ".sqlog"
#define QLOG_BUF (64 * 1024)

/* Ours: "YYYYmmddTHHMMSS.mmmZ-client-..." or "...-server-...", .sqlog. */
static int is_ours(const char *name) {
  size_t n = strlen(name), sl = strlen(QLOG_SUFFIX);
  return n > 21 + sl && name[0] >= '0' && name[0] <= '9' &&
         (!strncmp(name + 20, "-client-", 8) ||
          !strncmp(name + 20, "-server-", 8)) &&
         !strcmp(name + n - sl, QLOG_SUFFIX);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Leave the newest keep files of ours in dir. Names start with the time,
 * so name order is age order. */
static void prune(const char *dir, uint32_t keep) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char **names = NULL, path[4096];
  size_t n = 0, cap = 0, i;
  if (!d)
    return;
  while ((e = readdir(d))) {
    if (!is_ours(e->d_name))
      continue;
    if (n == cap) {
      char **v = realloc(names, (cap = cap ? 2 * cap : 128) * sizeof(*v));
      if (!v)
        break;
      names = v;
    }
    if (!(names[n] = strdup(e->d_name)))
      break;
    n++;
  }
  closedir(d);
  if (n > keep) {
    qsort(names, n, sizeof(*names), cmp_names);
    for (i = 0; i < n - keep; i++) {
      snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
      unlink(path);
    }
  }
  for (i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

FILE *qm_qlog_open(const char *dir, uint32_t max_files, int server,
                   const ngtcp2_cid *odcid) {
  char path[4096], hex[2 * NGTCP2_MAX_CIDLEN + 1], when[32];
  struct timeval tv;
  struct tm tm;
  FILE *f;
  size_t i;

  if (!max_files)
    max_files = QM_QLOG_DEFAULT_FILES;
  prune(dir, max_files - 1);
  for (i = 0; i < odcid->datalen && i < NGTCP2_MAX_CIDLEN; i++)
    snprintf(hex + 2 * i, 3, "%02x", odcid->data[i]);
  hex[2 * i] = '\0';
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  strftime(when, sizeof(when), "%Y%m%dT%H%M%S", &tm);
  snprintf(path, sizeof(path), "%s/%s.%03ldZ-%s-%s" QLOG_SUFFIX, dir, when,
           (long)(tv.tv_usec / 1000), server ? "server" : "client", hex);
  f = fopen(path, "we");
  if (!f) {
    QM_WARN("qlog", "cannot create %s: %s", path, strerror(errno));
    return NULL;
  }
  setvbuf(f, NULL, _IOFBF, QLOG_BUF);
  return f;
}

void qm_qlog_write(FILE *f, uint64_t *written, uint32_t flags, const void *data,
                   size_t len) {
  if (len && *written + len <= QM_QLOG_MAX_BYTES &&
      fwrite(data, 1, len, f) == len)
    *written += len;
  if (flags & NGTCP2_QLOG_WRITE_FLAG_FIN)
    fflush(f);
}
