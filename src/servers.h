/*
 * servers — the dialer's table of servers: one row per server address
 * (IP + port) ever dialled, with its handshake health (policy.h) and
 * counters. The decisions are in policy.c; this only keeps the rows.
 */
#ifndef QM_SERVERS_H
#define QM_SERVERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "policy.h"

/* Rows kept at most; beyond it a row with nothing to remember (no failure)
 * is reused, else the server is not tracked (it is then always eligible). */
#define QM_SERVERS_MAX 256

typedef struct qm_server_row {
  char key[64];  /* the pool key: "IP|PORT" */
  char name[64]; /* "IP:PORT" ("[V6]:PORT") */
  qm_server_health health;
  uint64_t sessions_opened;
  uint64_t handshakes_ok, handshakes_failed;
} qm_server_row;

typedef struct qm_servers {
  qm_server_row *rows;
  size_t n;
} qm_servers;

/* The row of key, or NULL. */
qm_server_row *qm_servers_find(qm_servers *t, const char *key);
/* The row of key, made (named after addr) if missing; NULL if the table is
 * full of rows that remember failures, or on no memory. */
qm_server_row *qm_servers_get(qm_servers *t, const char *key,
                              const struct sockaddr *addr);
void qm_servers_clear(qm_servers *t);

#endif
