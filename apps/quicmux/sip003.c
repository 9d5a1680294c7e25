/* SIP003 option strings; see sip003.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sip003.h"

/* Copy s up to the first unescaped byte of term (or the end) into a new
 * string, unescaping on the way. *used gets the bytes read. NULL on a bad
 * escape (err set) or no memory. */
static char *take_unescaped(const char *s, const char *term, size_t *used,
                            char *err, size_t errlen) {
  size_t i, o = 0, n = strlen(s);
  char *out = malloc(n + 1);
  if (!out) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (strchr(term, c))
      break;
    if (c == '\\') {
      if (++i >= n) {
        snprintf(err, errlen, "nothing follows the final '\\' in '%s'", s);
        free(out);
        return NULL;
      }
      c = s[i];
    }
    out[o++] = c;
  }
  out[o] = '\0';
  *used = i;
  return out;
}

static int add(sip003_opts *o, char *key, char *value, char *err,
               size_t errlen) {
  sip003_opt *v = realloc(o->v, (o->n + 1) * sizeof(*v));
  if (!v) {
    snprintf(err, errlen, "out of memory");
    free(key);
    free(value);
    return -1;
  }
  o->v = v;
  v[o->n].key = key;
  v[o->n].value = value;
  o->n++;
  return 0;
}

int sip003_parse(const char *s, sip003_opts *out, char *err, size_t errlen) {
  size_t i = 0, n = strlen(s), used;
  out->v = NULL;
  out->n = 0;
  while (i < n) {
    char *key, *value;
    size_t begin = i;
    key = take_unescaped(s + i, "=;", &used, err, errlen);
    if (!key)
      return -1;
    i += used;
    if (!*key) {
      free(key);
      snprintf(err, errlen, "empty key at offset %zu of '%s'", begin, s);
      return -1;
    }
    if (i >= n || s[i] != '=') {
      value = strdup("1");
      if (!value) {
        free(key);
        snprintf(err, errlen, "out of memory");
        return -1;
      }
    } else {
      i++; /* '=' */
      value = take_unescaped(s + i, ";", &used, err, errlen);
      if (!value) {
        free(key);
        return -1;
      }
      i += used;
    }
    if (add(out, key, value, err, errlen) != 0)
      return -1;
    i++; /* ';' */
  }
  return 0;
}

const char *sip003_get(const sip003_opts *o, const char *key) {
  size_t i;
  for (i = 0; i < o->n; i++)
    if (!strcmp(o->v[i].key, key))
      return o->v[i].value;
  return NULL;
}

void sip003_free(sip003_opts *o) {
  size_t i;
  for (i = 0; i < o->n; i++) {
    free(o->v[i].key);
    free(o->v[i].value);
  }
  free(o->v);
  o->v = NULL;
  o->n = 0;
}
