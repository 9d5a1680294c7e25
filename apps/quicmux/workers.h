/*
 * workers — one tunnel config on N threads, each with its own libev loop
 * and its own tunnel (its own listener or dialer): the library stays
 * single-threaded per object.
 *
 * Server: N listeners on the same UDP address (SO_REUSEPORT). The
 * connection ids a listener issues name its worker; a datagram the kernel
 * brings to another worker (after a NAT rebinding, a migration) is unwrapped
 * there and handed to its owner through a lock-free queue (one
 * multi-producer ring per worker, woken with ev_async). Without a key the
 * kernel steers short-header packets itself (eBPF, when allowed).
 * Client: N TCP listeners on one port (SO_REUSEPORT), N dialers sharing
 * their caps.
 *
 * N = 1 runs on the caller's loop without a thread, exactly as before.
 * Everything that reads or changes a running worker's objects from the main
 * thread (stats, metrics, drain) does so between workers_pause() and
 * workers_resume(): the workers then wait in a callback, so their loops are
 * not running. That lock is never taken on the data path.
 */
#ifndef QM_APP_WORKERS_H
#define QM_APP_WORKERS_H

#include <ev.h>

#include "opts.h"
#include "tunnel.h"

typedef struct workers workers;

/* Make the tunnels of config c (checked; c->workers of them) with settings
 * s; worker 0 uses `loop` when there is only one. Threads are not started
 * yet. 0, or -1 with err. */
int workers_new(workers **out, struct ev_loop *loop, tunnel_cfg *c,
                const qm_settings *s, char *err, size_t errlen);
/* Start the threads (nothing to do for one worker). 0 or -1 with err. */
int workers_start(workers *g, char *err, size_t errlen);
size_t workers_count(const workers *g);
tunnel *workers_tunnel(const workers *g, size_t i);
/* Stop the world: every worker waits until workers_resume. */
void workers_pause(workers *g);
void workers_resume(workers *g);
/* Datagrams handed to worker i that its full queue refused. */
uint64_t workers_handoff_drops(const workers *g, size_t i);
/* Stop and join the threads, free every tunnel and loop. */
void workers_free(workers *g);

/* "auto": the CPUs this process may run on (sched_getaffinity), at most
 * QM_MAX_WORKERS. */
unsigned workers_auto(void);

#endif
