/*
 * fuzz_sip003 — the SIP003 plugin option parser (SS_PLUGIN_OPTIONS,
 * apps/quicmux/sip003.c) on arbitrary strings: parse, look every parsed key
 * up again (the first value of a repeated key wins), free.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sip003.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s, err[256];
  sip003_opts o;
  size_t i;

  if (size > 1 << 16)
    return 0;
  s = malloc(size + 1);
  if (!s)
    abort();
  memcpy(s, data, size);
  s[size] = '\0';
  memset(&o, 0, sizeof(o));
  if (sip003_parse(s, &o, err, sizeof(err)) == 0) {
    for (i = 0; i < o.n; i++) {
      const char *v;
      if (!o.v[i].key || !o.v[i].value || !*o.v[i].key)
        abort(); /* parsed options always have a non-empty key and a value */
      v = sip003_get(&o, o.v[i].key);
      if (!v)
        abort();
    }
  } else if (!memchr(err, '\0', sizeof(err))) {
    abort();
  }
  sip003_free(&o);
  free(s);
  return 0;
}
