/*
 * quicmux — v2ray's QUIC transport in C.
 *
 * One public header. Every object lives on one libev loop and is touched only
 * from that loop's thread; nothing here takes a lock. Functions return 0 (or a
 * non-negative count) on success and a negative QM_E* code on failure;
 * qm_strerror() names the code.
 *
 * Threads: the library is single-threaded per object, not per process. To
 * use several cores, run one loop per thread and give each its own dialer or
 * listener (never share one object between loops). Listeners of one address
 * on several loops are "workers" (qm_settings worker_id/worker_count): each
 * binds its own SO_REUSEPORT socket, the connection ids it issues name it,
 * and a datagram that reaches the wrong worker is handed to its owner
 * (qm_listener_set_handoff, qm_listener_inject) or steered there by the
 * kernel (qm_listener_steer). Dialers on several loops may share their caps
 * (qm_caps). examples/c/echo_workers.c runs N loops.
 */
#ifndef QUICMUX_H
#define QUICMUX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ev_loop;

#define QM_VERSION_MAJOR 0
#define QM_VERSION_MINOR 1
#define QM_VERSION_PATCH 0

/*
 * Conventions:
 *  - qm_dialer_new / qm_listener_new copy *settings, its strings included;
 *    the caller may free them after the call.
 *  - Inside stream callbacks it is safe to call qm_stream_write*,
 *    qm_stream_shutdown_write, qm_stream_reset and qm_stream_resume_recv (not
 *    from on_recv itself). Never free a dialer or listener from inside one
 *    of its callbacks: break the loop or defer it.
 *  - The settings/stats/info structs may grow at the end before 1.0; the
 *    SONAME changes when they do.
 */

/* ---- errors --------------------------------------------------------- */

enum {
  QM_OK = 0,
  QM_EINVAL = -1,    /* bad argument or setting */
  QM_ENOMEM = -2,    /* out of memory */
  QM_EIO = -3,       /* socket error */
  QM_EBADMSG = -4,   /* datagram failed to unwrap (too short, bad tag) */
  QM_ERESOLVE = -5,  /* host name did not resolve */
  QM_ETLS = -6,      /* TLS setup or handshake failed */
  QM_EQUIC = -7,     /* QUIC protocol error */
  QM_ETIMEDOUT = -8, /* handshake or idle timeout */
  QM_ECLOSED = -9,   /* session or stream closed */
  QM_ERESET = -10,   /* stream reset by the peer */
  QM_ELIMIT = -11,   /* a configured limit was hit */
  QM_EAGAIN = -12,   /* try again later (buffer full) */
  QM_ENOENT = -13,   /* file or entry not found */
  QM_EREFUSED = -14, /* peer refused (connection close from the peer) */
};

/* A short English name for an error code ("invalid argument", ...). */
const char *qm_strerror(int err);

/* The library version, "MAJOR.MINOR.PATCH". */
const char *qm_version(void);

/* ---- logging -------------------------------------------------------- */

typedef enum {
  QM_LOG_DEBUG = 0,
  QM_LOG_INFO = 1,
  QM_LOG_WARNING = 2,
  QM_LOG_ERROR = 3,
  QM_LOG_NONE = 4,
} qm_log_level;

/* The library never prints: it hands each line to this callback. */
typedef void (*qm_log_fn)(qm_log_level level, const char *module,
                          const char *msg, void *ud);
void qm_set_log(qm_log_fn fn, qm_log_level min_level, void *ud);

/* ---- transport settings (v2ray's quicSettings + TLS) ---------------- */

typedef enum {
  QM_SEC_NONE = 0,
  QM_SEC_AES_128_GCM = 1,
  QM_SEC_CHACHA20_POLY1305 = 2,
} qm_security;

typedef enum {
  QM_HDR_NONE = 0,
  QM_HDR_SRTP = 1,
  QM_HDR_UTP = 2,
  QM_HDR_WECHAT_VIDEO = 3,
  QM_HDR_DTLS = 4,
  QM_HDR_WIREGUARD = 5,
} qm_header;

/* Names as v2ray's JSON spells them ("aes-128-gcm", "wechat-video", ...).
 * Lookup is case-insensitive; QM_EINVAL for an unknown name. */
int qm_security_parse(const char *name, qm_security *out);
const char *qm_security_name(qm_security sec);
int qm_header_parse(const char *name, qm_header *out);
const char *qm_header_name(qm_header hdr);

typedef struct qm_settings {
  /* packet wrapping */
  qm_security security;
  const char *key; /* wrap key string; NULL = "" */
  qm_header header;
  /* TLS */
  const char *server_name; /* client SNI; NULL = "quic.internal.v2ray.com" */
  int insecure;            /* client: skip certificate verification */
  const char *ca_file;     /* client: extra trust root (PEM) */
  int no_system_roots;     /* client: trust only ca_file */
  const char *alpn;        /* comma list; NULL = "h2,http/1.1" */
  const char *cert_file;   /* server: cert chain (PEM); NULL = self-signed */
  const char *key_file;    /* server: private key (PEM) */
  /* QUIC */
  uint32_t max_streams_bidi; /* server: concurrent streams a client may open */
  uint64_t idle_timeout_ms;  /* 0 = role default (30 s client, 45 s server) */
  uint64_t handshake_timeout_ms; /* default 8000 */
  uint64_t keepalive_ms;         /* client: PING after this much silence on
                                    sessions that carry streams; 0 = off
                                    (default 5000) */
  size_t stream_buffer;          /* per-stream send buffer (default 1 MiB;
                                    grows with the congestion window); the
                                    initial receive windows are 4x (stream)
                                    and 16x (session), growing for fast
                                    readers up to conn_window */
  size_t conn_window;            /* largest receive window of a session and of
                                    a stream (default 32 MiB): what one
                                    session may buffer of received data */
  int fwmark;                    /* SO_MARK on UDP sockets, 0 = none */
  /* client pool */
  uint64_t session_idle_ms;       /* close a session with no stream for this
                                     long (CONNECTION_CLOSE, socket freed);
                                     0 = only the QUIC idle timeout
                                     (default 25000) */
  uint32_t max_sessions_per_dest; /* default 64 */
  uint32_t max_sessions;          /* client: all destinations; server: all
                                     clients (default 1024 / 4096) */
  uint32_t max_streams;           /* open streams over all sessions
                                     (default 65536) */
  /* server: address validation with Retry (costs the client one round
   * trip): QM_RETRY_AUTO sends Retry only while a flood of new sessions is
   * seen; QM_RETRY_ALWAYS for every new session; QM_RETRY_NEVER as v2ray. */
  int retry;
  /* congestion control: "bbr" (default), "cubic", "reno" ("bbr2" = "bbr") */
  const char *cc;
  /* server: a secret (16 bytes or more) from which the stateless-reset
   * tokens and Retry tokens are derived. Keep it across restarts (the
   * program keeps it in a file of its state directory): a restarted server
   * then tells clients of the sessions it lost at once, with a stateless
   * reset, instead of leaving them to time out. NULL: a random one per
   * listener. Copied by qm_listener_new. */
  const uint8_t *static_secret;
  size_t static_secret_len;
  /* qlog (SONAME 1 on): when set, every session writes ngtcp2's qlog (JSON
   * text sequences, the IETF qlog draft) to its own file in this existing
   * directory, "<UTC time>-<client|server>-<original DCID hex>.sqlog".
   * The directory keeps at most qlog_max_files of them (0 = 100): the
   * oldest are deleted when a session starts. A file stops growing at
   * 64 MiB. NULL = no qlog (default). */
  const char *qlog_dir;
  uint32_t qlog_max_files;
  /* client, security none only: hide the SNI of the first Initial from
   * observers that decrypt Initials (their keys are public) and look at the
   * first packet of a flow (the Great Firewall since 2024): a random decoy
   * datagram (8-21 bytes, below what a server answers) goes first, the
   * ClientHello is padded with an extension of a GREASE type (RFC 8701)
   * so that it spans two Initials with the SNI in the second, and those
   * two go out last first. Both quicmux and v2ray servers accept it. With
   * aes-128-gcm or chacha20-poly1305 every packet is encrypted anyway and
   * this does nothing. 0 = off (default). */
  int hide_initial;
  /* server workers: this listener is worker worker_id (0 ..
   * worker_count - 1) of worker_count listeners of the same address, one per
   * loop. The connection ids it issues carry worker_id, so a datagram for
   * another worker's session can be recognised (qm_cid_worker) and handed
   * on. worker_count 0 or 1: one listener, ids fully random (default). Give
   * every worker the same static_secret, so that Retry tokens and stateless
   * resets are valid on all of them. At most QM_MAX_WORKERS. */
  uint32_t worker_id;
  uint32_t worker_count;
  /* client: caps shared by several dialers (one per loop): max_sessions and
   * max_streams then count the sessions and streams of every dialer that
   * has the same caps object (max_sessions_per_dest stays per dialer).
   * NULL: the dialer's own counts (default). Not copied: it must outlive
   * the dialers. */
  struct qm_caps *caps;
  /* 0-RTT (early data), off by default on both ends. Early data can be
   * replayed by an attacker on the path (the anti-replay window below
   * catches copies that reach the same server process, not all others),
   * so turn it on only for traffic where a repeated first flight does no
   * harm (idempotent requests).
   * Client: remember each server's TLS session ticket and its 0-RTT
   * transport parameters (per server address and name), and on a new
   * session open the first streams and send their first bytes in 0-RTT,
   * one round trip sooner. If the server refuses the early data, the
   * streams are sent again after the handshake: nothing is lost.
   * Server: issue session tickets (their key is derived from
   * static_secret when set, so tickets survive a restart; random
   * otherwise) and accept early data, with GnuTLS's anti-replay window
   * (each ClientHello is accepted once; tickets issued before the server
   * started, or before the window last moved on, are resumed without
   * early data). Without zero_rtt a server issues no ticket and refuses
   * early data. */
  int zero_rtt;
  /* client, with zero_rtt: also keep the tickets in this file (written
   * mode 0600 on each new ticket, read when the dialer is made; a bad or
   * missing file is ignored with a log line). NULL = in memory only.
   * Copied by qm_dialer_new. */
  const char *zero_rtt_file;
  /* client, port hopping (qm_dial_range; needs quicmux on both ends): a
   * session moves to another port of the server's range, on a fresh UDP
   * socket, every hop_interval_ms ± 30 % (random jitter); the new path is
   * validated before it is used and the old socket stays open a moment
   * for what is in flight, so no byte is lost or sent twice. 0 = stay on
   * one port (default 30000). */
  uint64_t hop_interval_ms;
} qm_settings;

#define QM_MAX_WORKERS 64

enum { QM_RETRY_AUTO = 0, QM_RETRY_ALWAYS = 1, QM_RETRY_NEVER = 2 };

/* Check a congestion control name: 0 or QM_EINVAL. */
int qm_cc_parse(const char *name);

/* Fill with v2ray's defaults: security none, header none, insecure TLS with
 * SNI quic.internal.v2ray.com, 32 streams, 8 s handshake. */
void qm_settings_default(qm_settings *s);

/* ---- addresses ------------------------------------------------------ */

/* Parse "HOST:PORT", "[V6]:PORT" or "NAME:PORT". host gets the host part
 * (without brackets). QM_EINVAL with a reason in err on bad input. */
int qm_split_hostport(const char *in, char *host, size_t hostlen,
                      uint16_t *port, char *err, size_t errlen);

/* ---- streams -------------------------------------------------------- */

typedef struct qm_stream qm_stream;

typedef struct qm_stream_cbs {
  /* The stream is open on the wire (client: session ready and stream id
   * assigned; server: never called, streams arrive open). */
  void (*on_open)(qm_stream *s, void *ud);
  /* Bytes arrived. Return how many were consumed (0..len); the rest stays
   * in the stream (bounded by the flow-control window) and is offered again
   * after qm_stream_resume_recv(). Credit goes back only for consumed bytes. */
  size_t (*on_recv)(qm_stream *s, const uint8_t *data, size_t len, void *ud);
  /* The peer finished sending and every byte was consumed. */
  void (*on_recv_fin)(qm_stream *s, void *ud);
  /* Send buffer space came back after qm_stream_write returned short. */
  void (*on_send_ready)(qm_stream *s, void *ud);
  /* Final: the stream is done (err 0 = both directions finished cleanly,
   * or QM_ERESET / QM_ECLOSED / QM_ETIMEDOUT / ...). The stream is freed
   * right after this returns; do not touch it again. */
  void (*on_close)(qm_stream *s, int err, void *ud);
} qm_stream_cbs;

/* Where to write without a copy: a pointer into the stream's send buffer and
 * how many bytes fit there (0 when the buffer is full). */
int qm_stream_write_space(qm_stream *s, uint8_t **buf, size_t *len);
/* Commit n bytes written into the space from qm_stream_write_space. */
int qm_stream_write_commit(qm_stream *s, size_t n);
/* Copying write: returns bytes accepted (may be short), or < 0. */
ssize_t qm_stream_write(qm_stream *s, const uint8_t *data, size_t len);
/* Finish the send direction (FIN after the buffered bytes). */
int qm_stream_shutdown_write(qm_stream *s);
/* Abort both directions (RESET_STREAM + STOP_SENDING). on_close follows. */
int qm_stream_reset(qm_stream *s, uint64_t app_error);
/* Offer buffered received bytes to on_recv again. */
void qm_stream_resume_recv(qm_stream *s);
void qm_stream_set_callbacks(qm_stream *s, const qm_stream_cbs *cbs, void *ud);
int64_t qm_stream_id(const qm_stream *s);
/* Session id (for logs), unique in this process. */
uint64_t qm_stream_session_id(const qm_stream *s);
size_t qm_stream_send_buffered(const qm_stream *s);

/* ---- dialer (client) ------------------------------------------------ */

typedef struct qm_dialer qm_dialer;

int qm_dialer_new(qm_dialer **out, struct ev_loop *loop, const qm_settings *s);
/* Open one stream to host:port through the session pool (host NULL: to
 * the server set, see qm_dialer_set_servers). The stream is returned at
 * once; cbs->on_open fires when it is open on the wire, or
 * cbs->on_close with an error. Bytes written before that are buffered. */
int qm_dial(qm_dialer *d, const char *host, uint16_t port,
            const qm_stream_cbs *cbs, void *ud, qm_stream **out);
/* As qm_dial, to a server that listens on every port from port_lo to
 * port_hi (a quicmux server with a port range): each session starts on a
 * random port of the range and hops to another one every
 * settings.hop_interval_ms (port hopping: some networks throttle or cut a
 * UDP flow that stays on one port). port_lo == port_hi is qm_dial. A v2ray
 * server cannot take this: it listens on one port and refuses migration.
 * QM_EINVAL when port_lo > port_hi. */
int qm_dial_range(qm_dialer *d, const char *host, uint16_t port_lo,
                  uint16_t port_hi, const qm_stream_cbs *cbs, void *ud,
                  qm_stream **out);
/* Close every session; streams get on_close(QM_ECLOSED). */
void qm_dialer_free(qm_dialer *d);

/*
 * Several servers. Every address counts as one server: the addresses of
 * the name given to qm_dial, or of every entry of the set below. Each new
 * stream goes to the server with the fewest open streams (the first of
 * equals), then to that server's sessions as v2ray's pool does (first
 * usable session, else a new one on a new UDP socket). A server whose
 * handshake fails (qm_settings.handshake_timeout_ms runs out, ICMP
 * unreachable, refused, TLS) is skipped for 1 s, doubling with each failure
 * in a row up to 30 s; when that is over, the next stream goes to it and
 * its new session tries it again (one at a time). The streams that were
 * waiting on the failed handshake move to another server instead of failing
 * (a stream fails after as many failed handshakes as there are servers).
 * With one address all this is invisible.
 *
 * The set: up to 32 entries "HOST:PORT" ("[V6]:PORT", names resolved as
 * qm_dial resolves them, again when the resolver's 60 s cache runs out; at
 * most 32 addresses in all). qm_dial(d, NULL, 0, ...) then dials the set.
 * Calling it again replaces the set (the servers' health is kept); n = 0
 * removes it. QM_EINVAL (and a log line) on a bad entry.
 */
int qm_dialer_set_servers(qm_dialer *d, const char *const *servers, size_t n);

/* One server (address) as the dialer sees it. */
typedef struct qm_server_info {
  char addr[64];            /* "IP:PORT" or "[V6]:PORT" */
  int backing_off;          /* skipped by new streams now */
  uint64_t backoff_left_ms; /* until it is tried again (0 when up) */
  uint32_t failures;        /* handshakes failed in a row */
  size_t sessions;          /* in the pool now */
  size_t handshaking;       /* of those, still handshaking */
  size_t streams;           /* open or queued on its sessions */
  uint64_t sessions_opened; /* since the dialer was made */
  uint64_t handshakes_ok, handshakes_failed;
} qm_server_info;
/* Call fn for every server dialled or in the set, in the order first seen. */
void qm_dialer_foreach_server(const qm_dialer *d,
                              void (*fn)(const qm_server_info *, void *),
                              void *ud);

/* Why sessions ended: the index into qm_totals.sessions_closed. */
enum {
  QM_CLOSE_CLEAN = 0,             /* CONNECTION_CLOSE without an error, by
                                     either side, or an idle session closed */
  QM_CLOSE_IDLE_TIMEOUT = 1,      /* QUIC idle timeout (v2ray's peers end
                                     sessions this way) */
  QM_CLOSE_HANDSHAKE_TIMEOUT = 2, /* no handshake within the timeout */
  QM_CLOSE_PATH_DEAD = 3,         /* client: the peer stopped answering */
  QM_CLOSE_REFUSED = 4,           /* port unreachable, version negotiation, or a
                                     CONNECTION_CLOSE during the handshake */
  QM_CLOSE_TLS = 5,               /* TLS alert or failed verification */
  QM_CLOSE_PROTOCOL = 6,          /* any other QUIC error */
  QM_CLOSE__COUNT = 7
};
/* "closed", "idle_timeout", "handshake_timeout", "path_dead", "refused",
 * "tls", "protocol"; NULL for anything else. */
const char *qm_close_cause_name(int cause);

/* Counters since the dialer or listener was made, sessions already gone
 * included: they only grow (Prometheus counters). Datagram and byte counts
 * are UDP payloads as sent and received (wrapped). */
typedef struct qm_totals {
  uint64_t sessions_opened;    /* client: started; server: accepted */
  uint64_t sessions_closed[8]; /* by QM_CLOSE_* (room for new causes) */
  uint64_t streams_opened;     /* given a stream id */
  uint64_t streams_closed;     /* ended, for any reason */
  uint64_t streams_reset;      /* of those, reset by either side */
  uint64_t datagrams_rx, datagrams_tx;
  uint64_t bytes_rx, bytes_tx;
  /* datagrams dropped on receipt, by kind */
  uint64_t bad_short;     /* too short for the header, nonce and tag */
  uint64_t bad_auth;      /* failed to authenticate (wrong key, forged) */
  uint64_t bad_oversize;  /* larger than any peer may send */
  uint64_t bad_malformed; /* unwrapped, but no QUIC packet in it */
} qm_totals;

/* Session resumption and 0-RTT (settings zero_rtt), counters that only
 * grow, sessions already gone included. */
typedef struct qm_early_totals {
  uint64_t tickets;  /* client: session tickets received; server: sent */
  uint64_t resumed;  /* sessions resumed with a ticket (abbreviated
                        TLS handshake) */
  uint64_t attempts; /* client: sessions that offered early data */
  uint64_t accepted; /* sessions whose early data the server took */
  uint64_t rejected; /* client: early data refused; its streams were sent
                        again after the handshake */
  uint64_t bytes;    /* stream bytes in 0-RTT packets: client: sent (first
                        transmissions), server: received */
} qm_early_totals;

typedef struct qm_dialer_stats {
  size_t sessions;        /* sessions in the pool (any state) */
  size_t sessions_active; /* of those, not closed */
  size_t handshaking;
  size_t streams; /* open streams over all sessions */
  size_t udp_sockets;
  uint64_t dropped_datagrams; /* failed to unwrap */
  qm_totals totals;           /* SONAME 1 on */
  qm_early_totals early;
  /* sessions moved to a new UDP socket (network change, dead path, port
   * hop), and of those the port hops; sessions already gone included */
  uint64_t migrations, hops;
} qm_dialer_stats;
void qm_dialer_get_stats(const qm_dialer *d, qm_dialer_stats *st);

/* One session as the pool sees it (for logs, SIGUSR1, tests). */
typedef struct qm_session_info {
  uint64_t id;
  const char *state; /* "handshaking", "established", "closing", ... */
  int suspect;       /* no ack for several PTOs: takes no new stream */
  char peer[64];     /* "IP:PORT" */
  uint16_t local_port;
  size_t streams;
  size_t streams_pending; /* queued while handshaking */
  uint64_t smoothed_rtt_us, min_rtt_us;
  uint64_t cwnd, bytes_in_flight;
  size_t pto_count;
  uint64_t datagrams_rx, datagrams_tx, datagrams_dropped;
  /* client: moves to a new UDP socket so far (all causes), and of those the
   * hops to another server port; peer names the current port */
  uint64_t migrations, hops;
} qm_session_info;

/* Call fn for every session of the dialer / listener, in pool order. */
void qm_dialer_foreach_session(const qm_dialer *d,
                               void (*fn)(const qm_session_info *, void *),
                               void *ud);

/* ---- listener (server) ---------------------------------------------- */

typedef struct qm_listener qm_listener;

/* A stream arrived. Set its callbacks with qm_stream_set_callbacks. */
typedef void (*qm_accept_fn)(qm_listener *l, qm_stream *s, void *ud);

int qm_listener_new(qm_listener **out, struct ev_loop *loop,
                    const struct sockaddr *addr, socklen_t addrlen,
                    const qm_settings *s, qm_accept_fn on_stream, void *ud);
/* Like qm_listener_new, on nports UDP ports: one socket (SO_REUSEPORT) on
 * each port from addr's port to addr's port + nports - 1, all feeding one
 * connection-id table, so a session may move between them (a quicmux client
 * hopping ports) and every packet of a session leaves from the port its
 * client last sent to. nports from 1 (= qm_listener_new) to
 * QM_MAX_PORT_RANGE; addr's port must not be 0 when nports > 1. QM_EINVAL
 * for a bad range, QM_EIO when a port cannot be bound (nothing is left
 * open). Pointless with v2ray clients, which never change ports. */
#define QM_MAX_PORT_RANGE 1024
int qm_listener_new_range(qm_listener **out, struct ev_loop *loop,
                          const struct sockaddr *addr, socklen_t addrlen,
                          unsigned nports, const qm_settings *s,
                          qm_accept_fn on_stream, void *ud);
void qm_listener_free(qm_listener *l);
/* The UDP address the listener is bound to (useful after binding port 0);
 * the first port of a range. */
int qm_listener_get_addr(const qm_listener *l, struct sockaddr_storage *ss,
                         socklen_t *len);

typedef struct qm_listener_stats {
  size_t sessions;
  size_t streams;
  uint64_t dropped_datagrams; /* failed to unwrap or unroutable */
  uint64_t accepted_sessions;
  uint64_t bad_datagrams;    /* failed to unwrap (wrong key, short, ...) */
  uint64_t unroutable;       /* unknown connection id, not an Initial */
  uint64_t retries_sent;     /* Retry packets (address validation) */
  uint64_t bad_tokens;       /* Initials with an invalid Retry token */
  uint64_t refused_sessions; /* over the session cap */
  qm_totals totals;          /* SONAME 1 on */
  uint64_t resets_sent;      /* stateless resets for unknown sessions */
  /* workers (qm_settings worker_count > 1) */
  uint64_t handoffs_out; /* datagrams of another worker's session, handed
                            to the handoff callback */
  uint64_t handoffs_in;  /* datagrams injected with qm_listener_inject */
  qm_early_totals early;
} qm_listener_stats;
void qm_listener_get_stats(const qm_listener *l, qm_listener_stats *st);
void qm_listener_foreach_session(const qm_listener *l,
                                 void (*fn)(const qm_session_info *, void *),
                                 void *ud);

/* ---- UDP flows (QUIC datagrams, RFC 9221) --------------------------- */

/*
 * A flow carries UDP datagrams between a dialer and a listener in QUIC
 * DATAGRAM frames: unreliable, unordered, never retransmitted, like UDP
 * itself. Both ends must enable flows (qm_dialer_enable_flows,
 * qm_listener_enable_flows) before their first session: only then do they
 * advertise the max_datagram_frame_size transport parameter. A peer that
 * does not advertise it (v2ray, a quicmux without flows) never gets a
 * DATAGRAM frame: the flow is refused (on_close with QM_EREFUSED) and the
 * streams of the same session go on unharmed.
 *
 * A datagram of up to 65,507 bytes is carried whole: one that fits the
 * path goes in one frame, a larger one is split into fragments and put
 * together again on the other end; a lost fragment drops the whole
 * datagram. Each session has a bounded send queue: a datagram that does
 * not fit is dropped (qm_flow_send returns QM_EAGAIN and the flow counts
 * it), never buffered without limit.
 *
 * The client picks, for a new flow, the first session of the destination
 * that negotiated datagrams (a handshaking one will do), or starts a new
 * session; when its session ends, the flow moves to another one at its
 * next datagram. The server's flows end with their session.
 */
typedef struct qm_flow qm_flow;

/* 0 in a field means its default. Like the other settings structs, it may
 * grow at the end before 1.0. */
typedef struct qm_flow_settings {
  uint64_t idle_ms;         /* a flow with no datagram either way for this
                               long closes (default 60000) */
  uint32_t max_per_session; /* flows on one session (default 256) */
  uint32_t max_flows;       /* flows of the dialer / listener in all
                               (default 4096) */
  size_t queue_bytes;       /* a session's send queue (default 1 MiB) */
} qm_flow_settings;

/* Fill with the defaults above. */
void qm_flow_settings_default(qm_flow_settings *fs);

typedef struct qm_flow_cbs {
  /* One whole datagram arrived (never a part of one). */
  void (*on_recv)(qm_flow *f, const uint8_t *data, size_t len, void *ud);
  /* Final: the flow ended by itself (QM_ETIMEDOUT: idle; QM_EREFUSED: the
   * peer does not take datagrams; QM_ECLOSED: its session ended, server;
   * 0: the client closed it, server). The flow is freed right after this
   * returns. Not called after qm_flow_close. */
  void (*on_close)(qm_flow *f, int err, void *ud);
} qm_flow_cbs;

/* Counters of one flow (or, for qm_dialer/listener_flow_stats, of every
 * flow since the dialer or listener was made). */
typedef struct qm_flow_stats {
  uint64_t flows; /* flows opened (dialer/listener totals only) */
  uint64_t datagrams_sent, bytes_sent;         /* queued for the peer */
  uint64_t datagrams_received, bytes_received; /* delivered to on_recv */
  uint64_t dropped_queue;      /* send queue full, or no session yet */
  uint64_t dropped_incomplete; /* received in part: a fragment was lost */
  uint64_t dropped_refused;    /* over a flow cap, or the peer refuses */
} qm_flow_stats;

/* Client: advertise datagrams on every new session of this dialer and
 * allow qm_dial_flow. fs NULL = defaults. Call before the first qm_dial. */
int qm_dialer_enable_flows(qm_dialer *d, const qm_flow_settings *fs);
/* Client: a new flow to the server host:port (resolved as qm_dial does;
 * host NULL: the dialer's server set, as for qm_dial, where the flow goes
 * to the server a new stream would go to and stays until its session
 * ends). No packet is sent until qm_flow_send. QM_ELIMIT over max_flows,
 * QM_EINVAL if flows are not enabled. */
int qm_dial_flow(qm_dialer *d, const char *host, uint16_t port,
                 const qm_flow_cbs *cbs, void *ud, qm_flow **out);
void qm_dialer_flow_stats(const qm_dialer *d, qm_flow_stats *st);

/* Server: a client opened a flow (its first datagram follows at once).
 * Set the callbacks here with qm_flow_set_callbacks, or qm_flow_close it. */
typedef void (*qm_accept_flow_fn)(qm_listener *l, qm_flow *f, void *ud);
/* Server: advertise datagrams on every new session and hand new flows to
 * on_flow. fs NULL = defaults. Call right after qm_listener_new. */
int qm_listener_enable_flows(qm_listener *l, const qm_flow_settings *fs,
                             qm_accept_flow_fn on_flow, void *ud);
void qm_listener_flow_stats(const qm_listener *l, qm_flow_stats *st);

/* Queue one datagram (1..65507 bytes; 0 bytes is allowed too). 0 when
 * queued; QM_EAGAIN when dropped because the session's queue is full or no
 * session is ready yet (the name is still being resolved); QM_EINVAL over
 * 65,507 bytes; QM_EREFUSED / QM_ELIMIT / QM_ECLOSED when the flow cannot
 * carry it (on_close follows). May be called from on_recv. */
int qm_flow_send(qm_flow *f, const uint8_t *data, size_t len);
void qm_flow_set_callbacks(qm_flow *f, const qm_flow_cbs *cbs, void *ud);
/* Close and free the flow (tells the server when it can); no on_close.
 * Safe from inside the flow's own callbacks. */
void qm_flow_close(qm_flow *f);
/* The flow's id on the wire (chosen by the client). */
uint64_t qm_flow_id(const qm_flow *f);
/* The id of the session carrying the flow now, 0 if none. */
uint64_t qm_flow_session_id(const qm_flow *f);
void qm_flow_get_stats(const qm_flow *f, qm_flow_stats *st);

/* The largest datagram a flow carries. */
#define QM_FLOW_MAX_DATAGRAM 65507

/* ---- workers: one listener per loop, sessions spread over them ------ */

/* The worker a connection id names, among count workers (as issued by a
 * listener with that worker_count), or -1 when the id cannot be one of
 * ours (wrong length, or count <= 1). */
int qm_cid_worker(const uint8_t *cid, size_t len, uint32_t count);

/* A datagram arrived for a session of worker `worker` (another loop): pass
 * the QUIC datagram (already unwrapped; the pointer is valid only during the
 * call, copy it), the local address it was sent to and its source address
 * to that worker's loop, which feeds them to its listener with
 * qm_listener_inject. Called on this listener's loop. Without a handoff
 * callback such datagrams are dropped (counted as unroutable), and no
 * stateless reset is sent for them. */
typedef void (*qm_handoff_fn)(qm_listener *l, uint32_t worker,
                              const struct sockaddr *local, socklen_t locallen,
                              const struct sockaddr *from, socklen_t fromlen,
                              const uint8_t *pkt, size_t len, void *ud);
void qm_listener_set_handoff(qm_listener *l, qm_handoff_fn fn, void *ud);

/* Feed a QUIC datagram (unwrapped) that another worker received for this
 * listener's sessions. It is never handed off again; replies leave from
 * this listener's own socket (the same address, SO_REUSEPORT). Call on this
 * listener's loop. 0, or QM_EINVAL for an empty datagram. */
int qm_listener_inject(qm_listener *l, const struct sockaddr *local,
                       socklen_t locallen, const struct sockaddr *from,
                       socklen_t fromlen, const uint8_t *pkt, size_t len);

/* Ask the kernel to deliver short-header packets straight to the worker
 * their connection id names: an eBPF SO_ATTACH_REUSEPORT_EBPF program over
 * the sockets of ls[0..n-1], where ls[i] is worker i of n (same address and
 * port range, one program per port; call before their loops run, from one
 * thread). Needs CAP_BPF or root and no libbpf. Long-header packets and
 * anything it cannot read keep the kernel's 4-tuple hash. Only possible
 * without encryption (security none): the id is inside the sealed datagram
 * otherwise, and the handoff does the work. 0 when attached; QM_EINVAL when
 * the settings wrap with a key (nothing for the kernel to read); QM_EIO when
 * the kernel refuses (not root, no BPF) — the handoff still works. */
int qm_listener_steer(qm_listener *const *ls, size_t n);

/* ---- shared caps (client dialers on several loops) ------------------- */

typedef struct qm_caps qm_caps;
/* Counters (atomic) behind qm_settings.caps; free after every dialer that
 * uses them. */
int qm_caps_new(qm_caps **out);
void qm_caps_free(qm_caps *c);

/* ---- transport registry --------------------------------------------- */

/* A transport is a name with its dial and listen functions, as v2ray
 * registers its dialers. "quic" is built in. */
typedef struct qm_transport {
  const char *name;
  int (*dialer_new)(qm_dialer **out, struct ev_loop *loop,
                    const qm_settings *s);
  int (*listener_new)(qm_listener **out, struct ev_loop *loop,
                      const struct sockaddr *addr, socklen_t addrlen,
                      const qm_settings *s, qm_accept_fn on_stream, void *ud);
} qm_transport;

/* Register another transport (the table holds up to 8). 0, QM_ELIMIT or
 * QM_EINVAL (name taken). */
int qm_transport_register(const qm_transport *t);
/* Look a transport up by name; NULL if unknown. */
const qm_transport *qm_transport_find(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* QUICMUX_H */
