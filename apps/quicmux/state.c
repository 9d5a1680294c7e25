/*
 * state — the server's static secret, kept in a file of its state
 * directory so that stateless-reset and Retry tokens survive a restart.
 *
 * The directory is --state-dir, else systemd's $STATE_DIRECTORY, else
 * /var/lib/quicmux for root and $XDG_STATE_HOME/quicmux (or
 * ~/.local/state/quicmux) for anyone else. The file "static-secret" holds
 * 32 random bytes, mode 0600, made on first start.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>

#include "state.h"

#define SECRET_FILE "static-secret"

static int default_dir(char *buf, size_t len) {
  const char *d = getenv("STATE_DIRECTORY"), *home;
  if (d && *d) {
    /* systemd may list several, separated by ':' */
    size_t n = strcspn(d, ":");
    return snprintf(buf, len, "%.*s", (int)n, d) < (int)len ? 0 : -1;
  }
  if (geteuid() == 0)
    return snprintf(buf, len, "/var/lib/quicmux") < (int)len ? 0 : -1;
  if ((d = getenv("XDG_STATE_HOME")) && *d)
    return snprintf(buf, len, "%s/quicmux", d) < (int)len ? 0 : -1;
  if ((home = getenv("HOME")) && *home)
    return snprintf(buf, len, "%s/.local/state/quicmux", home) < (int)len ? 0
                                                                          : -1;
  return -1;
}

/* mkdir -p with mode 0700 for what it makes. */
static int make_dirs(const char *dir) {
  char p[4096];
  size_t i, n = strlen(dir);
  if (n == 0 || n >= sizeof(p))
    return -1;
  memcpy(p, dir, n + 1);
  for (i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != 0)
      continue;
    p[i] = 0;
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
      return -1;
    p[i] = i < n ? '/' : 0;
  }
  return 0;
}

static int read_secret(const char *path, uint8_t *out, char *err,
                       size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n;
  if (fd < 0)
    return errno == ENOENT ? 1 : -1;
  n = read(fd, out, STATE_SECRET_LEN);
  close(fd);
  if (n != STATE_SECRET_LEN) {
    snprintf(err, errlen,
             "%s: want %d bytes (delete it to make a new one; clients then "
             "lose their sessions once more at the next restart)",
             path, STATE_SECRET_LEN);
    return -2;
  }
  return 0;
}

static int write_secret(const char *path, uint8_t *out) {
  char tmp[4300];
  int fd;
  if (gnutls_rnd(GNUTLS_RND_KEY, out, STATE_SECRET_LEN) != 0)
    return -1;
  if (snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid()) >=
      (int)sizeof(tmp))
    return -1;
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return -1;
  if (write(fd, out, STATE_SECRET_LEN) != STATE_SECRET_LEN || fsync(fd) != 0) {
    close(fd);
    unlink(tmp);
    return -1;
  }
  close(fd);
  /* link, not rename: a second process starting at the same time keeps
   * the first one's secret instead of replacing it */
  if (link(tmp, path) != 0) {
    unlink(tmp);
    return errno == EEXIST ? 1 : -1;
  }
  unlink(tmp);
  return 0;
}

int state_secret(const char *dir, uint8_t *out, char *where, size_t wherelen,
                 char *err, size_t errlen) {
  char d[4096], path[4200];
  int rv, tries;

  if (dir) {
    snprintf(d, sizeof(d), "%s", dir);
  } else if (default_dir(d, sizeof(d)) != 0) {
    snprintf(err, errlen, "no state directory (no HOME)");
    return 1;
  }
  snprintf(where, wherelen, "%s", d);
  if (make_dirs(d) != 0) {
    snprintf(err, errlen, "state directory %s: %s", d, strerror(errno));
    return dir ? -1 : 1;
  }
  snprintf(path, sizeof(path), "%s/" SECRET_FILE, d);
  for (tries = 0; tries < 2; tries++) {
    rv = read_secret(path, out, err, errlen);
    if (rv == 0)
      return 0;
    if (rv == -2)
      return -1;
    if (rv == -1)
      break;
    rv = write_secret(path, out);
    if (rv == 0)
      return 0;
    if (rv < 0)
      break;
    /* rv == 1: made by someone else meanwhile: read theirs */
  }
  snprintf(err, errlen, "%s: %s", path, strerror(errno));
  return dir ? -1 : 1;
}
