/* The dialer's table of servers (servers.h). */
#include "servers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

qm_server_row *qm_servers_find(qm_servers *t, const char *key) {
  size_t i;
  for (i = 0; i < t->n; i++)
    if (!strcmp(t->rows[i].key, key))
      return &t->rows[i];
  return NULL;
}

qm_server_row *qm_servers_get(qm_servers *t, const char *key,
                              const struct sockaddr *addr) {
  qm_server_row *r = qm_servers_find(t, key);
  size_t i;
  if (r)
    return r;
  if (t->n < QM_SERVERS_MAX) {
    r = realloc(t->rows, (t->n + 1) * sizeof(*r));
    if (!r)
      return NULL;
    t->rows = r;
    r = &t->rows[t->n++];
  } else {
    /* full: reuse a row that remembers no failure */
    for (i = 0; i < t->n && t->rows[i].health.fails; i++)
      ;
    if (i == t->n)
      return NULL;
    r = &t->rows[i];
  }
  memset(r, 0, sizeof(*r));
  snprintf(r->key, sizeof(r->key), "%s", key);
  qm_addr_str(addr, r->name, sizeof(r->name));
  return r;
}

void qm_servers_clear(qm_servers *t) {
  free(t->rows);
  t->rows = NULL;
  t->n = 0;
}
