/*
 * prom — writing the Prometheus text exposition format, version 0.0.4:
 * a growing buffer, metric families (# HELP, # TYPE) and samples with
 * escaped label values. Knows nothing of tunnels or sockets.
 */
#ifndef QM_APP_PROM_H
#define QM_APP_PROM_H

#include <stddef.h>
#include <stdint.h>

typedef struct prom_buf {
  char *p;
  size_t len, cap;
  int oom; /* an allocation failed: the text is incomplete */
} prom_buf;

void prom_init(prom_buf *b);
void prom_free(prom_buf *b);
void prom_printf(prom_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "# HELP name help\n# TYPE name type\n"; type is "counter" or "gauge".
 * All samples of a family must follow it before the next family. */
void prom_family(prom_buf *b, const char *name, const char *type,
                 const char *help);

/* Labels of a sample: up to PROM_MAX_LABELS name/value pairs. */
#define PROM_MAX_LABELS 6
typedef struct prom_labels {
  const char *name[PROM_MAX_LABELS];
  const char *value[PROM_MAX_LABELS];
  int n;
} prom_labels;

/* Append name=value to l (both must outlive the sample); ignored when l
 * is full. Returns l. */
prom_labels *prom_label(prom_labels *l, const char *name, const char *value);

/* name{labels} value — labels may be NULL; the value is a whole number or,
 * with prom_sample_f, a float ("%.9g"). */
void prom_sample(prom_buf *b, const char *name, const prom_labels *l,
                 uint64_t v);
void prom_sample_f(prom_buf *b, const char *name, const prom_labels *l,
                   double v);

#endif
