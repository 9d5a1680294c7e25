/* The transport registry: names to dial/listen functions. */
#include <strings.h>

#include "internal.h"

#define QM_MAX_TRANSPORTS 8

static const qm_transport quic_transport = {"quic", qm_dialer_new,
                                            qm_listener_new};
static const qm_transport *table[QM_MAX_TRANSPORTS] = {&quic_transport};
static size_t ntable = 1;

int qm_transport_register(const qm_transport *t) {
  if (!t || !t->name || !t->dialer_new || !t->listener_new)
    return QM_EINVAL;
  if (qm_transport_find(t->name))
    return QM_EINVAL;
  if (ntable == QM_MAX_TRANSPORTS)
    return QM_ELIMIT;
  table[ntable++] = t;
  return 0;
}

const qm_transport *qm_transport_find(const char *name) {
  size_t i;
  if (!name)
    return NULL;
  for (i = 0; i < ntable; i++)
    if (strcasecmp(table[i]->name, name) == 0)
      return table[i];
  return NULL;
}
