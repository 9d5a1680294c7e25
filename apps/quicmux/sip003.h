/*
 * sip003 — the SIP003 plugin option string (SS_PLUGIN_OPTIONS).
 *
 * "key=value;key2;key3=a\;b": pairs separated by ';', key and value by the
 * first unescaped '='. A backslash takes the next byte literally (so "\;",
 * "\=" and "\\"); a backslash at the very end is an error. A key with no '='
 * gets the value "1"; an empty key is an error. As in ss-v2ray-plugin, the
 * first value of a repeated key wins. Pure: no I/O, no globals.
 */
#ifndef QM_APP_SIP003_H
#define QM_APP_SIP003_H

#include <stddef.h>

typedef struct sip003_opt {
  char *key;
  char *value;
} sip003_opt;

typedef struct sip003_opts {
  sip003_opt *v;
  size_t n;
} sip003_opts;

/* Parse s into out (which the caller frees with sip003_free, also after an
 * error). Returns 0, or -1 with a reason in err. */
int sip003_parse(const char *s, sip003_opts *out, char *err, size_t errlen);
/* The first value given for key, or NULL. */
const char *sip003_get(const sip003_opts *o, const char *key);
void sip003_free(sip003_opts *o);

#endif
