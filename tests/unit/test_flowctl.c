/*
 * Stream flow control between two real ngtcp2 connections (client and
 * server, TLS 1.3 through ngtcp2_crypto_gnutls) run in memory: datagrams
 * are byte buffers handed from one ngtcp2_conn to the other, every hop
 * takes DELAY of simulated time, nothing sleeps and no socket is opened.
 *
 * The client sends TOTAL bytes on each of NSTREAMS streams; the server
 * consumes what arrives at once. In one round (the trap) the server's first
 * packet is written into a buffer of only trap_len bytes, so that a
 * MAX_STREAM_DATA frame it decides to send may not fit (NGTCP2_ERR_NOBUF)
 * and goes out in the next packet instead.
 *
 * libngtcp2 0.12.1 with stream-window auto-tuning then kept enforcing the
 * old limit while the client had the new one, and refused data within the
 * announced credit for good (NGTCP2_ERR_FLOW_CONTROL); quicmux had to turn
 * the tuning off. libngtcp2 >= 0.19 raises the limit before it writes the
 * frame. quicmux now uses ngtcp2's tuning (session.c, fill_settings): this
 * test runs quicmux's own settings through every trap and checks that all
 * data arrives, that frames really were deferred by the trap, and that the
 * windows did grow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <netinet/in.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include "session.h"
#include "tls.h"

#define NSTREAMS 3
#define TOTAL (48 * 1024)                 /* bytes per stream */
#define STREAM_BUFFER 4096                /* quicmux: stream buffer 4 KiB */
#define STREAM_WINDOW (4 * STREAM_BUFFER) /* its initial receive window */
#define DELAY (10 * NGTCP2_MILLISECONDS)
#define MAX_ROUNDS 200
#define MAX_PKTS 512
#define PKT_SIZE 1500

enum {
  MODE_FIXED,   /* reference: no stream-window tuning, plain credit */
  MODE_QUICMUX, /* quicmux's settings: ngtcp2's own tuning */
};

typedef struct peer {
  ngtcp2_conn *conn;
  gnutls_session_t tls;
  ngtcp2_crypto_conn_ref ref;
  ngtcp2_path_storage ps;
  uint64_t unread[NSTREAMS]; /* server: received, not yet consumed */
  uint64_t got[NSTREAMS];    /* server: received in all */
  uint64_t sent[NSTREAMS];   /* client: written into packets */
} peer;

typedef struct net {
  peer c, s;
  ngtcp2_tstamp now;
  int mode;                      /* MODE_* */
  uint8_t q[MAX_PKTS][PKT_SIZE]; /* datagrams in flight */
  size_t qlen[MAX_PKTS], nq;
} net;

typedef struct outcome {
  int flow_control_error; /* the server refused the client's data */
  int complete;           /* all data of all streams arrived */
  uint64_t credit[NSTREAMS], got[NSTREAMS]; /* at the end */
  uint64_t window; /* the largest credit any stream got beyond its data */
} outcome;

static qm_settings qs;
static qm_tls_ctx *client_tls, *server_tls;
static struct sockaddr_in client_addr, server_addr;
static uint8_t zeros[PKT_SIZE];
static uint8_t cid_counter;
/* The server's log, during the trap round: did the short packet carry a
 * MAX_STREAM_DATA frame, did the packets after it? A frame in the packets
 * right after and none in the short one is a frame the trap deferred. */
enum { TRAP_OFF, TRAP_SHORT, TRAP_AFTER };
static int trap_phase, msd_short, msd_after;
static int deferred; /* trap rounds that deferred a MAX_STREAM_DATA frame */

static void log_cb(void *ud, const char *fmt, ...) {
  char line[256], *frm;
  va_list ap;
  (void)ud;
  if (trap_phase == TRAP_OFF)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  frm = strstr(line, "frm tx ");
  if (!frm || !strstr(frm, "MAX_STREAM_DATA"))
    return;
  if (trap_phase == TRAP_SHORT)
    msd_short = 1;
  else
    msd_after = 1;
}

static ngtcp2_conn *get_conn_cb(ngtcp2_crypto_conn_ref *ref) {
  return ((peer *)ref->user_data)->conn;
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx) {
  (void)ctx;
  memset(dest, 0x5a, len);
}

static void make_cid(ngtcp2_cid *cid, size_t len) {
  memset(cid->data, ++cid_counter, len);
  cid->datalen = len;
}

static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token,
                      size_t cidlen, void *ud) {
  (void)conn;
  (void)ud;
  make_cid(cid, cidlen);
  memset(token, cid_counter, NGTCP2_STATELESS_RESET_TOKENLEN);
  return 0;
}

static int recv_data_cb(ngtcp2_conn *conn, uint32_t flags, int64_t stream_id,
                        uint64_t offset, const uint8_t *data, size_t datalen,
                        void *ud, void *sud) {
  peer *p = ud;
  (void)conn, (void)flags, (void)offset, (void)data, (void)sud;
  assert_true(stream_id >= 0 && stream_id / 4 < NSTREAMS);
  p->unread[stream_id / 4] += datalen;
  p->got[stream_id / 4] += datalen;
  return 0;
}

static void fill_callbacks(ngtcp2_callbacks *cb, int server) {
  qm__session_crypto_callbacks(cb, server); /* quicmux's own TLS glue */
  cb->rand = rand_cb;
  cb->get_new_connection_id = new_cid_cb;
  cb->recv_stream_data = recv_data_cb;
}

/* quicmux's own settings (fill_settings in session.c), at simulated time. */
static void fill_settings(net *n, ngtcp2_settings *st,
                          ngtcp2_transport_params *p, int server) {
  qm_endpoint ep;
  memset(&ep, 0, sizeof(ep)); /* no packet wrapping: codec overhead 0 */
  qm__session_settings(st, p, &qs, &ep, server);
  st->initial_ts = n->now;
  if (server)
    st->log_printf = log_cb;
  if (n->mode == MODE_FIXED)
    st->max_stream_window = 0;
}

static void peer_init(peer *p, int server) {
  const struct sockaddr_in *l = server ? &server_addr : &client_addr;
  const struct sockaddr_in *r = server ? &client_addr : &server_addr;
  memset(p, 0, sizeof(*p));
  p->ref.get_conn = get_conn_cb;
  p->ref.user_data = p;
  ngtcp2_path_storage_init(&p->ps, (const struct sockaddr *)l, sizeof(*l),
                           (const struct sockaddr *)r, sizeof(*r), NULL);
  assert_int_equal(
      qm_tls_session_new(server ? server_tls : client_tls, &p->tls, &p->ref),
      0);
}

static void client_new(net *n) {
  ngtcp2_callbacks cb;
  ngtcp2_settings st;
  ngtcp2_transport_params p;
  ngtcp2_cid dcid, scid;
  peer_init(&n->c, 0);
  make_cid(&dcid, 16);
  make_cid(&scid, 8);
  fill_callbacks(&cb, 0);
  fill_settings(n, &st, &p, 0);
  assert_int_equal(ngtcp2_conn_client_new(&n->c.conn, &dcid, &scid,
                                          &n->c.ps.path, NGTCP2_PROTO_VER_V1,
                                          &cb, &st, &p, NULL, &n->c),
                   0);
  ngtcp2_conn_set_tls_native_handle(n->c.conn, n->c.tls);
}

static void server_new(net *n, const uint8_t *pkt, size_t len) {
  ngtcp2_callbacks cb;
  ngtcp2_settings st;
  ngtcp2_transport_params p;
  ngtcp2_pkt_hd hd;
  ngtcp2_cid scid;
  assert_int_equal(ngtcp2_accept(&hd, pkt, len), 0);
  peer_init(&n->s, 1);
  make_cid(&scid, 8);
  fill_callbacks(&cb, 1);
  fill_settings(n, &st, &p, 1);
  p.original_dcid = hd.dcid;
  p.original_dcid_present = 1;
  p.stateless_reset_token_present = 1;
  memset(p.stateless_reset_token, 1, sizeof(p.stateless_reset_token));
  assert_int_equal(ngtcp2_conn_server_new(&n->s.conn, &hd.scid, &scid,
                                          &n->s.ps.path, hd.version, &cb, &st,
                                          &p, NULL, &n->s),
                   0);
  ngtcp2_conn_set_tls_native_handle(n->s.conn, n->s.tls);
}

/* One datagram from p into the network; 0 when there was nothing to send. */
static ngtcp2_ssize write_one(net *n, peer *p, size_t destlen, int64_t sid,
                              ngtcp2_ssize *ndata) {
  ngtcp2_vec v = {zeros, 0};
  ngtcp2_ssize rv;
  if (sid >= 0) {
    uint64_t left = TOTAL - p->sent[sid / 4];
    v.len = left < sizeof(zeros) ? (size_t)left : sizeof(zeros);
  }
  assert_true(n->nq < MAX_PKTS);
  rv = ngtcp2_conn_writev_stream(p->conn, NULL, NULL, n->q[n->nq], destlen,
                                 ndata, NGTCP2_WRITE_STREAM_FLAG_NONE, sid, &v,
                                 sid >= 0, n->now);
  if (rv == NGTCP2_ERR_STREAM_DATA_BLOCKED || rv == NGTCP2_ERR_NOBUF)
    return 0;
  assert_true(rv >= 0);
  if (rv > 0)
    n->qlen[n->nq++] = (size_t)rv;
  return rv;
}

/* Everything p may send now. The first control packet gets only firstlen
 * bytes of buffer. */
static void flush(net *n, peer *p, size_t firstlen) {
  ngtcp2_ssize ndata;
  int i;
  for (i = 0; p == &n->c && i < NSTREAMS; i++) {
    while (ngtcp2_conn_get_handshake_completed(p->conn) && p->sent[i] < TOTAL) {
      ndata = -1;
      if (write_one(n, p, PKT_SIZE, i * 4, &ndata) == 0)
        break;
      if (ndata <= 0)
        break;
      p->sent[i] += (uint64_t)ndata;
    }
  }
  msd_short = msd_after = 0;
  trap_phase = firstlen < PKT_SIZE ? TRAP_SHORT : TRAP_OFF;
  write_one(n, p, firstlen, -1, &ndata);
  if (trap_phase == TRAP_SHORT)
    trap_phase = TRAP_AFTER;
  while (write_one(n, p, PKT_SIZE, -1, &ndata) > 0)
    ;
  deferred += trap_phase == TRAP_AFTER && !msd_short && msd_after;
  trap_phase = TRAP_OFF;
}

/* The datagrams in flight arrive at `to`, DELAY later. */
static int deliver(net *n, peer *to) {
  ngtcp2_pkt_info pi = {0};
  size_t i;
  int rv = 0;
  n->now += DELAY;
  for (i = 0; i < n->nq && rv == 0; i++) {
    if (!to->conn)
      server_new(n, n->q[i], n->qlen[i]);
    rv = ngtcp2_conn_read_pkt(to->conn, &to->ps.path, &pi, n->q[i], n->qlen[i],
                              n->now);
  }
  n->nq = 0;
  return rv;
}

static outcome run(int mode, int trap_round, size_t trap_len) {
  static net n;
  outcome o = {0};
  int round, i, opened = 0, rv;
  int64_t sid;

  memset(&n, 0, sizeof(n));
  n.mode = mode;
  n.now = NGTCP2_SECONDS;
  cid_counter = 0;
  client_new(&n);
  for (round = 0; round < MAX_ROUNDS && !o.complete; round++) {
    flush(&n, &n.c, PKT_SIZE);
    rv = deliver(&n, &n.s);
    if (rv == NGTCP2_ERR_FLOW_CONTROL) {
      o.flow_control_error = 1;
      break;
    }
    assert_int_equal(rv, 0);
    for (i = 0; i < NSTREAMS; i++) { /* the application reads at once */
      ngtcp2_conn_extend_max_stream_offset(n.s.conn, i * 4, n.s.unread[i]);
      ngtcp2_conn_extend_max_offset(n.s.conn, n.s.unread[i]);
      n.s.unread[i] = 0;
    }
    flush(&n, &n.s, round == trap_round ? trap_len : PKT_SIZE);
    assert_int_equal(deliver(&n, &n.c), 0);
    if (!opened && ngtcp2_conn_get_handshake_completed(n.c.conn)) {
      for (i = 0; i < NSTREAMS; i++) {
        assert_int_equal(ngtcp2_conn_open_bidi_stream(n.c.conn, &sid, NULL), 0);
        assert_int_equal(sid, i * 4);
      }
      opened = 1;
    }
    for (o.complete = opened, i = 0; i < NSTREAMS; i++)
      o.complete &= n.s.got[i] == TOTAL;
  }
  for (i = 0; opened && i < NSTREAMS; i++) {
    o.credit[i] =
        n.c.sent[i] + ngtcp2_conn_get_max_stream_data_left(n.c.conn, i * 4);
    o.got[i] = n.s.got[i];
    if (o.credit[i] - o.got[i] > o.window)
      o.window = o.credit[i] - o.got[i];
  }
  ngtcp2_conn_del(n.c.conn);
  ngtcp2_conn_del(n.s.conn);
  gnutls_deinit(n.c.tls);
  gnutls_deinit(n.s.tls);
  return o;
}

#define TRAP_ROUNDS 15 /* transfers take 5-15 rounds */
#define TRAP_LEN_MIN 20
#define TRAP_LEN_MAX 80

/* Every trap round and length: no data within the credit refused, all data
 * delivered, and some traps did defer a MAX_STREAM_DATA frame. With
 * quicmux's settings the windows grow past the initial one too. */
static void no_gap(int mode) {
  int round;
  size_t len;
  outcome o;
  uint64_t window = 0;
  deferred = 0;
  for (round = 1; round < TRAP_ROUNDS; round++) {
    for (len = TRAP_LEN_MIN; len <= TRAP_LEN_MAX; len++) {
      o = run(mode, round, len);
      if (o.flow_control_error)
        print_error("trap round %d, destlen %zu: data within the credit "
                    "refused\n",
                    round, len);
      assert_false(o.flow_control_error);
      assert_true(o.complete);
      if (o.window > window)
        window = o.window;
    }
  }
  print_message("%d trap rounds deferred a MAX_STREAM_DATA frame; largest "
                "credit beyond the data %llu\n",
                deferred, (unsigned long long)window);
  assert_true(deferred > 0);
  if (mode == MODE_QUICMUX)
    assert_true(window > STREAM_WINDOW);
  else
    assert_true(window <= STREAM_WINDOW);
}

/* quicmux's settings: ngtcp2's stream-window tuning, free of the gap. */
static void quicmux_tuning_no_gap(void **state) {
  (void)state;
  no_gap(MODE_QUICMUX);
}

/* Reference: plain credit without tuning. */
static void fixed_window_no_gap(void **state) {
  (void)state;
  no_gap(MODE_FIXED);
}

static int setup(void **state) {
  char err[256];
  (void)state;
  qm_settings_default(&qs);
  qs.stream_buffer = STREAM_BUFFER;
  qs.insecure = 1;
  client_addr.sin_family = server_addr.sin_family = AF_INET;
  client_addr.sin_addr.s_addr = server_addr.sin_addr.s_addr =
      htonl(INADDR_LOOPBACK);
  client_addr.sin_port = htons(40000);
  server_addr.sin_port = htons(443);
  if (qm_tls_ctx_new(&client_tls, 0, &qs, err, sizeof(err)) != 0 ||
      qm_tls_ctx_new(&server_tls, 1, &qs, err, sizeof(err)) != 0) {
    print_error("%s\n", err);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  qm_tls_ctx_free(client_tls);
  qm_tls_ctx_free(server_tls);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(quicmux_tuning_no_gap),
      cmocka_unit_test(fixed_window_no_gap),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
