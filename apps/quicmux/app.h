/* Shared bits of the quicmux program. */
#ifndef QM_APP_H
#define QM_APP_H

#include <stddef.h>

#include <ev.h>

#include "quicmux/quicmux.h"

/* Exit status of the program (documented in --help and the man page). */
#define EXIT_OK 0      /* clean stop (SIGINT/SIGTERM), or --check passed */
#define EXIT_RUNTIME 1 /* a runtime failure (cannot bind, ...) */
#define EXIT_USAGE 2   /* bad command line, options or config file */

/* "quicmux: <message>" on stderr, then exit(EXIT_USAGE). */
void app_die_usage(const char *fmt, ...) __attribute__((noreturn))
__attribute__((format(printf, 1, 2)));

/* ---- logging (log.c) ----
 * One line per event: "2024-05-01T12:00:00.123Z info    [module] message",
 * time in UTC. Lines go to stderr or to the --log-file (reopened on SIGHUP).
 */
extern qm_log_level app_log_level;
/* "debug", "info", "warning", "error", "none" (any case); -1 if unknown. */
int app_log_level_parse(const char *name, qm_log_level *out);
const char *app_log_level_name(qm_log_level lvl);
/* Send lines to path (appending), or to stderr for NULL. -1 and err. */
int app_log_open(const char *path, char *err, size_t errlen);
/* Reopen the log file (after logrotate moved it); no-op on stderr. */
void app_log_reopen(void);
void app_log_close(void);
/* Set the level and hand the library its log callback. */
void app_log_setup(qm_log_level lvl);
void app_logm(qm_log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A line written whatever the level (except none): stats on SIGUSR1. */
void app_log_always(const char *module, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* app_logm with module "quicmux". */
void app_log(qm_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- temporary files (opts.c) ----
 * Private (0600) files in $TMPDIR for TLS material given inline (certRaw,
 * inline certificates); all removed at exit. Returns the path (owned by the
 * registry) or NULL with err. */
const char *app_tmpfile(const char *what, const void *data, size_t len,
                        char *err, size_t errlen);
void app_tmpfiles_remove(void);

const char *app_ngtcp2_version(void);
const char *app_gnutls_version(void);

/* Server + client + TCP echo on loopback in this process; push data through
 * and print what happened. Returns the exit status. */
int app_demo(struct ev_loop *loop, const qm_settings *s, int conns, int mib);

#endif
