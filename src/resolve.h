/*
 * resolve — host names to addresses without blocking the loop (c-ares on
 * libev), with a small cache. IP literals are answered at once.
 */
#ifndef QM_RESOLVE_H
#define QM_RESOLVE_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

/* Addresses of one name, and servers (addresses) of a dialer's set. */
#define QM_MAX_ADDRS 32

/* A shared, reference-counted list of addresses in the order to try them
 * (IPv4 first, as Go's resolver does for v2ray; SPEC §1.1). */
typedef struct qm_addrlist {
  unsigned refs;
  size_t n;
  struct sockaddr_storage addr[QM_MAX_ADDRS];
  socklen_t len[QM_MAX_ADDRS];
} qm_addrlist;

void qm_addrlist_ref(qm_addrlist *a);
void qm_addrlist_unref(qm_addrlist *a);

typedef struct qm_resolver qm_resolver;
/* err is 0 or QM_ERESOLVE; list is NULL on error (take a ref to keep it). */
typedef void (*qm_resolve_cb)(qm_addrlist *list, int err, void *ud);

int qm_resolver_new(qm_resolver **out, struct ev_loop *loop);
/* Pending lookups are answered with QM_ERESOLVE first. */
void qm_resolver_free(qm_resolver *r);
/* Numeric hosts and cached names: *now gets the list (one ref for the
 * caller) and 0 is returned without calling cb. Otherwise the lookup starts
 * and cb runs later from the loop. */
int qm_resolve(qm_resolver *r, const char *host, uint16_t port,
               qm_addrlist **now, qm_resolve_cb cb, void *ud);

#endif
