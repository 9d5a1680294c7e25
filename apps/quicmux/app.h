/* Shared bits of the quicmux program. */
#ifndef QM_APP_H
#define QM_APP_H

#include <ev.h>

#include "quicmux/quicmux.h"

extern qm_log_level app_log_level;
void app_log(qm_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

const char *app_ngtcp2_version(void);
const char *app_gnutls_version(void);

/* Server + client + TCP echo on loopback in this process; push data through
 * and print what happened. Returns the exit status. */
int app_demo(struct ev_loop *loop, const qm_settings *s, int conns, int mib);

#endif
