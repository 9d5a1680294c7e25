/* The client's session tickets and 0-RTT transport parameters per server,
 * in memory and optionally in a file (see ticket.h). File format, text:
 *   quicmux-0rtt 1
 *   KEY TICKET-HEX PARAMS-HEX        (one line per server, oldest first)
 * KEY has no blanks ("name/ip|port"). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "ticket.h"

#define QM_TICKET_MAGIC "quicmux-0rtt 1"

typedef struct entry {
  struct entry *next;
  char *key;
  uint8_t *ticket, *tp;
  size_t ticketlen, tplen;
} entry;

struct qm_ticket_store {
  char *file;
  entry *head; /* oldest first */
  size_t n;
};

static void entry_free(entry *e) {
  if (!e)
    return;
  if (e->ticket)
    qm_wipe(e->ticket, e->ticketlen);
  free(e->ticket);
  free(e->tp);
  free(e->key);
  free(e);
}

static entry *find(const qm_ticket_store *t, const char *key, entry ***pp) {
  entry **p = (entry **)&t->head;
  for (; *p; p = &(*p)->next)
    if (!strcmp((*p)->key, key)) {
      if (pp)
        *pp = p;
      return *p;
    }
  return NULL;
}

static void unlink_entry(qm_ticket_store *t, const char *key) {
  entry **pp, *e = find(t, key, &pp);
  if (!e)
    return;
  *pp = e->next;
  t->n--;
  entry_free(e);
}

/* Append (newest last), dropping the oldest beyond the cap. Takes e. */
static void append(qm_ticket_store *t, entry *e) {
  entry **p = &t->head;
  unlink_entry(t, e->key);
  while (*p)
    p = &(*p)->next;
  e->next = NULL;
  *p = e;
  t->n++;
  while (t->n > QM_TICKET_MAX_SERVERS) {
    entry *old = t->head;
    t->head = old->next;
    t->n--;
    entry_free(old);
  }
}

static entry *entry_new(const char *key, const uint8_t *ticket,
                        size_t ticketlen, const uint8_t *tp, size_t tplen) {
  entry *e = calloc(1, sizeof(*e));
  if (!e)
    return NULL;
  e->key = strdup(key);
  e->ticket = malloc(ticketlen ? ticketlen : 1);
  e->tp = malloc(tplen ? tplen : 1);
  if (!e->key || !e->ticket || !e->tp) {
    entry_free(e);
    return NULL;
  }
  memcpy(e->ticket, ticket, ticketlen);
  memcpy(e->tp, tp, tplen);
  e->ticketlen = ticketlen;
  e->tplen = tplen;
  return e;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decode hex text of len characters into a new buffer. */
static uint8_t *unhex(const char *s, size_t len, size_t *out) {
  uint8_t *b;
  size_t i;
  if (len == 0 || len % 2 || len / 2 > QM_TICKET_MAX_DATA)
    return NULL;
  b = malloc(len / 2);
  if (!b)
    return NULL;
  for (i = 0; i < len / 2; i++) {
    int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      free(b);
      return NULL;
    }
    b[i] = (uint8_t)(hi << 4 | lo);
  }
  *out = len / 2;
  return b;
}

static int parse_line(qm_ticket_store *t, char *line) {
  char *save = NULL, *key = strtok_r(line, " \t\r\n", &save),
       *th = strtok_r(NULL, " \t\r\n", &save),
       *ph = strtok_r(NULL, " \t\r\n", &save);
  uint8_t *ticket, *tp;
  size_t tl = 0, pl = 0;
  entry *e;
  if (!key || !ph || strtok_r(NULL, " \t\r\n", &save))
    return -1;
  ticket = unhex(th, strlen(th), &tl);
  tp = unhex(ph, strlen(ph), &pl);
  e = ticket && tp ? entry_new(key, ticket, tl, tp, pl) : NULL;
  if (ticket)
    qm_wipe(ticket, tl);
  free(ticket);
  free(tp);
  if (!e)
    return -1;
  append(t, e);
  return 0;
}

static void load(qm_ticket_store *t) {
  FILE *f = fopen(t->file, "r");
  char *line = NULL;
  size_t cap = 0, lineno = 0;
  ssize_t n;
  if (!f) {
    if (errno != ENOENT)
      QM_WARN("ticket", "0-RTT file %s: %s (ignored)", t->file,
              strerror(errno));
    return;
  }
  while ((n = getline(&line, &cap, f)) > 0) {
    lineno++;
    if (n > 4 * QM_TICKET_MAX_DATA + 512)
      goto bad;
    if (lineno == 1) {
      if (strncmp(line, QM_TICKET_MAGIC, strlen(QM_TICKET_MAGIC)) != 0)
        goto bad;
      continue;
    }
    if (parse_line(t, line) != 0)
      goto bad;
  }
  QM_DEBUG("ticket", "0-RTT file %s: %zu servers", t->file, t->n);
  goto done;
bad:
  QM_WARN("ticket",
          "0-RTT file %s: not a quicmux 0-RTT file (line %zu); "
          "ignored, it is rewritten with the next ticket",
          t->file, lineno);
  while (t->head) {
    entry *e = t->head;
    t->head = e->next;
    entry_free(e);
  }
  t->n = 0;
done:
  if (line)
    qm_wipe(line, cap);
  free(line);
  fclose(f);
}

static void put_hex(FILE *f, const uint8_t *b, size_t n) {
  static const char digits[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < n; i++) {
    fputc(digits[b[i] >> 4], f);
    fputc(digits[b[i] & 15], f);
  }
}

/* Write to a temporary file next to it (mode 0600; its own name, as the
 * dialers of several workers may write at once) and rename it over the
 * file, so a crash leaves the old file or the new one. */
static void save(const qm_ticket_store *t) {
  size_t plen = strlen(t->file) + 16;
  char *tmp = malloc(plen);
  const entry *e;
  FILE *f = NULL;
  int fd = -1, ok;
  if (!tmp)
    return;
  snprintf(tmp, plen, "%s.XXXXXX", t->file);
  fd = mkstemp(tmp); /* mode 0600 */
  if (fd < 0 || fchmod(fd, 0600) != 0 || !(f = fdopen(fd, "w"))) {
    QM_WARN("ticket", "0-RTT file %s: %s", tmp, strerror(errno));
    if (fd >= 0)
      close(fd);
    unlink(tmp);
    free(tmp);
    return;
  }
  fprintf(f, "%s\n", QM_TICKET_MAGIC);
  for (e = t->head; e; e = e->next) {
    fprintf(f, "%s ", e->key);
    put_hex(f, e->ticket, e->ticketlen);
    fputc(' ', f);
    put_hex(f, e->tp, e->tplen);
    fputc('\n', f);
  }
  ok = fflush(f) == 0 && !ferror(f);
  if (fclose(f) != 0)
    ok = 0;
  if (!ok || rename(tmp, t->file) != 0) {
    QM_WARN("ticket", "0-RTT file %s: %s", t->file, strerror(errno));
    unlink(tmp);
  }
  free(tmp);
}

int qm_ticket_store_new(qm_ticket_store **out, const char *file) {
  qm_ticket_store *t = calloc(1, sizeof(*t));
  if (!t)
    return QM_ENOMEM;
  if (file && !(t->file = strdup(file))) {
    free(t);
    return QM_ENOMEM;
  }
  if (t->file)
    load(t);
  *out = t;
  return 0;
}

void qm_ticket_store_free(qm_ticket_store *t) {
  if (!t)
    return;
  while (t->head) {
    entry *e = t->head;
    t->head = e->next;
    entry_free(e);
  }
  free(t->file);
  free(t);
}

int qm_ticket_get(const qm_ticket_store *t, const char *key,
                  const uint8_t **ticket, size_t *ticketlen, const uint8_t **tp,
                  size_t *tplen) {
  const entry *e = find(t, key, NULL);
  if (!e)
    return 0;
  *ticket = e->ticket;
  *ticketlen = e->ticketlen;
  *tp = e->tp;
  *tplen = e->tplen;
  return 1;
}

void qm_ticket_put(qm_ticket_store *t, const char *key, const uint8_t *ticket,
                   size_t ticketlen, const uint8_t *tp, size_t tplen) {
  entry *e;
  if (!ticketlen || !tplen || ticketlen > QM_TICKET_MAX_DATA ||
      tplen > QM_TICKET_MAX_DATA || strpbrk(key, " \t\r\n"))
    return;
  if (!(e = entry_new(key, ticket, ticketlen, tp, tplen)))
    return;
  append(t, e);
  if (t->file)
    save(t);
}

void qm_ticket_forget(qm_ticket_store *t, const char *key) {
  unlink_entry(t, key);
  if (t->file)
    save(t);
}

size_t qm_ticket_count(const qm_ticket_store *t) {
  return t->n;
}
