/* The Prometheus text format (prom.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

void prom_init(prom_buf *b) {
  memset(b, 0, sizeof(*b));
}

void prom_free(prom_buf *b) {
  free(b->p);
  prom_init(b);
}

static int reserve(prom_buf *b, size_t more) {
  char *p;
  size_t cap;
  if (b->oom)
    return -1;
  if (b->len + more + 1 <= b->cap)
    return 0;
  cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more + 1)
    cap *= 2;
  if (!(p = realloc(b->p, cap))) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

void prom_printf(prom_buf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || reserve(b, (size_t)n) != 0)
    return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

static void putc_(prom_buf *b, char c) {
  if (reserve(b, 1) == 0) {
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
  }
}

void prom_family(prom_buf *b, const char *name, const char *type,
                 const char *help) {
  prom_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

prom_labels *prom_label(prom_labels *l, const char *name, const char *value) {
  if (l->n < PROM_MAX_LABELS) {
    l->name[l->n] = name;
    l->value[l->n] = value ? value : "";
    l->n++;
  }
  return l;
}

/* A label value: backslash, double quote and newline are escaped. */
static void put_value(prom_buf *b, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"') {
      putc_(b, '\\');
      putc_(b, *v);
    } else if (*v == '\n') {
      putc_(b, '\\');
      putc_(b, 'n');
    } else {
      putc_(b, *v);
    }
  }
}

static void put_name_labels(prom_buf *b, const char *name,
                            const prom_labels *l) {
  int i;
  prom_printf(b, "%s", name);
  if (!l || l->n == 0)
    return;
  putc_(b, '{');
  for (i = 0; i < l->n; i++) {
    prom_printf(b, "%s%s=\"", i ? "," : "", l->name[i]);
    put_value(b, l->value[i]);
    putc_(b, '"');
  }
  putc_(b, '}');
}

void prom_sample(prom_buf *b, const char *name, const prom_labels *l,
                 uint64_t v) {
  put_name_labels(b, name, l);
  prom_printf(b, " %llu\n", (unsigned long long)v);
}

void prom_sample_f(prom_buf *b, const char *name, const prom_labels *l,
                   double v) {
  put_name_labels(b, name, l);
  prom_printf(b, " %.9g\n", v);
}
