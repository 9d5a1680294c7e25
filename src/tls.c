/* GnuTLS setup for QUIC: priority, ALPN, credentials, in-memory cert. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include "hide.h"
#include "internal.h"
#include "replay.h"
#include "tls.h"

/* TLS 1.3 only is mandatory for QUIC with quic-go (SPEC §13 item 3). */
#define QM_TLS_PRIORITY                                                        \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"       \
  "+CHACHA20-POLY1305:+AES-128-CCM:-GROUP-ALL:+GROUP-X25519:"                  \
  "+GROUP-SECP256R1:+GROUP-SECP384R1:+GROUP-SECP521R1:"                        \
  "%DISABLE_TLS13_COMPAT_MODE"

#define QM_MAX_ALPN 8

/* 0-RTT on the server: GnuTLS records each ClientHello with early data for
 * this long and refuses early data from tickets issued before its record
 * last started over (RFC 8446 §8.2), so a ticket gives 0-RTT for one to
 * two windows after it was issued (clients get a new one per session). */
#define QM_ANTI_REPLAY_WINDOW_MS 300000

struct qm_tls_ctx {
  int server;
  int verify;
  int hide; /* client: pad the ClientHello (hide.h) */
  int sni_is_ip;
  char *server_name;
  char *alpn_store;
  gnutls_datum_t alpn[QM_MAX_ALPN];
  unsigned nalpn;
  gnutls_certificate_credentials_t cred;
  /* server with zero_rtt: session tickets and early data */
  int zero_rtt;
  gnutls_datum_t ticket_key;
  gnutls_anti_replay_t anti_replay;
  qm_replay *replay;
};

static int parse_alpn(qm_tls_ctx *c, const char *list, char *err,
                      size_t errlen) {
  char *p, *save = NULL, *tok;
  c->alpn_store = strdup(list);
  if (!c->alpn_store)
    return QM_ENOMEM;
  for (p = c->alpn_store; (tok = strtok_r(p, ",", &save)); p = NULL) {
    size_t n = strlen(tok);
    if (n == 0 || n > 255 || c->nalpn == QM_MAX_ALPN) {
      snprintf(err, errlen,
               "alpn: want a comma list of 1 to %d names of 1-255 bytes",
               QM_MAX_ALPN);
      return QM_EINVAL;
    }
    c->alpn[c->nalpn].data = (unsigned char *)tok;
    c->alpn[c->nalpn].size = (unsigned)n;
    c->nalpn++;
  }
  if (c->nalpn == 0) {
    snprintf(err, errlen, "alpn: empty list");
    return QM_EINVAL;
  }
  return 0;
}

/* v2ray's listener makes an ECDSA P-256 certificate for the internal domain
 * at listen time (SPEC §2). Ours lasts a year instead of v2ray's one hour. */
static int make_self_signed(qm_tls_ctx *c, const char *name, char *err,
                            size_t errlen) {
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  unsigned char serial[16];
  time_t now = time(NULL);
  int rv;

  if ((rv = gnutls_x509_privkey_init(&key)) < 0 ||
      (rv = gnutls_x509_privkey_generate(
           key, GNUTLS_PK_ECDSA,
           GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0)) < 0 ||
      (rv = gnutls_x509_crt_init(&crt)) < 0)
    goto fail;
  qm_random(serial, sizeof(serial));
  serial[0] &= 0x7f; /* positive */
  if ((rv = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
      (rv = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
      (rv = gnutls_x509_crt_set_activation_time(crt, now - 3600)) < 0 ||
      (rv = gnutls_x509_crt_set_expiration_time(crt, now + 365 * 86400)) < 0 ||
      (rv = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                          name, (unsigned)strlen(name))) < 0 ||
      (rv = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, name,
                                                 (unsigned)strlen(name),
                                                 GNUTLS_FSAN_SET)) < 0 ||
      (rv = gnutls_x509_crt_set_key_usage(
           crt, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_ENCIPHERMENT)) <
          0 ||
      (rv = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER,
                                                0)) < 0 ||
      (rv = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
      (rv = gnutls_x509_crt_set_key(crt, key)) < 0 ||
      (rv = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0 ||
      (rv = gnutls_certificate_set_x509_key(c->cred, &crt, 1, key)) < 0)
    goto fail;
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
  return 0;
fail:
  snprintf(err, errlen, "self-signed certificate: %s", gnutls_strerror(rv));
  if (crt)
    gnutls_x509_crt_deinit(crt);
  if (key)
    gnutls_x509_privkey_deinit(key);
  return QM_ETLS;
}

static int is_ip_literal(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The session ticket key: GnuTLS wants 64 bytes (name, cipher key, MAC
 * key), and rotates the keys it encrypts with from it by time. Derived from
 * the static secret, so tickets survive a restart; random without one. */
static int ticket_key(qm_tls_ctx *c, const qm_settings *s) {
  static const char l1[] = "quicmux session ticket key 1";
  static const char l2[] = "quicmux session ticket key 2";
  if (!s->static_secret || s->static_secret_len < 16)
    return gnutls_session_ticket_key_generate(&c->ticket_key);
  c->ticket_key.data = gnutls_malloc(64);
  if (!c->ticket_key.data)
    return GNUTLS_E_MEMORY_ERROR;
  c->ticket_key.size = 64;
  if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->static_secret,
                       s->static_secret_len, l1, sizeof(l1) - 1,
                       c->ticket_key.data) != 0 ||
      gnutls_hmac_fast(GNUTLS_MAC_SHA256, s->static_secret,
                       s->static_secret_len, l2, sizeof(l2) - 1,
                       c->ticket_key.data + 32) != 0)
    return GNUTLS_E_INTERNAL_ERROR;
  return 0;
}

static int zero_rtt_setup(qm_tls_ctx *c, const qm_settings *s, char *err,
                          size_t errlen) {
  int rv;
  c->zero_rtt = 1;
  if ((rv = ticket_key(c, s)) < 0 ||
      (rv = gnutls_anti_replay_init(&c->anti_replay)) < 0) {
    snprintf(err, errlen, "0-RTT setup: %s", gnutls_strerror(rv));
    return QM_ETLS;
  }
  if (qm_replay_new(&c->replay) != 0)
    return QM_ENOMEM;
  gnutls_anti_replay_set_window(c->anti_replay, QM_ANTI_REPLAY_WINDOW_MS);
  gnutls_anti_replay_set_add_function(c->anti_replay, qm_replay_add);
  gnutls_anti_replay_set_ptr(c->anti_replay, c->replay);
  return 0;
}

int qm_tls_ctx_new(qm_tls_ctx **out, int server, const qm_settings *s,
                   char *err, size_t errlen) {
  qm_tls_ctx *c = calloc(1, sizeof(*c));
  const char *name = s->server_name ? s->server_name : QM_DEFAULT_SNI;
  int rv;

  if (!c)
    return QM_ENOMEM;
  c->server = server;
  /* v2ray strips this experiment prefix from serverName (SPEC §6). */
  if (strncmp(name, "experiment:8357", 15) == 0)
    name += 15;
  c->server_name = strdup(name);
  if (!c->server_name) {
    rv = QM_ENOMEM;
    goto fail;
  }
  c->sni_is_ip = is_ip_literal(c->server_name);
  rv = parse_alpn(c, s->alpn ? s->alpn : QM_DEFAULT_ALPN, err, errlen);
  if (rv)
    goto fail;
  if ((rv = gnutls_certificate_allocate_credentials(&c->cred)) < 0) {
    snprintf(err, errlen, "gnutls: %s", gnutls_strerror(rv));
    rv = QM_ETLS;
    goto fail;
  }
  if (server) {
    if (s->cert_file || s->key_file) {
      if (!s->cert_file || !s->key_file) {
        snprintf(err, errlen, "tls: give both a certificate and a key file");
        rv = QM_EINVAL;
        goto fail;
      }
      rv = gnutls_certificate_set_x509_key_file(
          c->cred, s->cert_file, s->key_file, GNUTLS_X509_FMT_PEM);
      if (rv < 0) {
        snprintf(err, errlen, "tls: cannot load %s / %s: %s", s->cert_file,
                 s->key_file, gnutls_strerror(rv));
        rv = QM_ETLS;
        goto fail;
      }
    } else if ((rv = make_self_signed(c, c->server_name, err, errlen)) != 0) {
      goto fail;
    }
    if (s->zero_rtt && (rv = zero_rtt_setup(c, s, err, errlen)) != 0)
      goto fail;
  } else {
    c->verify = !s->insecure;
    c->hide = s->hide_initial && s->security == QM_SEC_NONE;
    if (c->verify) {
      if (!s->no_system_roots)
        (void)gnutls_certificate_set_x509_system_trust(c->cred);
      if (s->ca_file) {
        rv = gnutls_certificate_set_x509_trust_file(c->cred, s->ca_file,
                                                    GNUTLS_X509_FMT_PEM);
        if (rv <= 0) {
          snprintf(err, errlen, "tls: cannot load CA file %s: %s", s->ca_file,
                   rv < 0 ? gnutls_strerror(rv) : "no certificate in it");
          rv = QM_ETLS;
          goto fail;
        }
      }
    }
  }
  *out = c;
  return 0;
fail:
  qm_tls_ctx_free(c);
  return rv;
}

void qm_tls_ctx_free(qm_tls_ctx *c) {
  if (!c)
    return;
  if (c->cred)
    gnutls_certificate_free_credentials(c->cred);
  if (c->anti_replay)
    gnutls_anti_replay_deinit(c->anti_replay);
  qm_replay_free(c->replay);
  if (c->ticket_key.data) {
    qm_wipe(c->ticket_key.data, c->ticket_key.size);
    gnutls_free(c->ticket_key.data);
  }
  free(c->alpn_store);
  free(c->server_name);
  free(c);
}

const char *qm_tls_ctx_server_name(const qm_tls_ctx *c) {
  return c->server_name;
}

int qm_tls_session_new(qm_tls_ctx *c, gnutls_session_t *out,
                       ngtcp2_crypto_conn_ref *ref) {
  gnutls_session_t s;
  unsigned flags = (c->server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
                   GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA;
  int rv;

  /* With 0-RTT the server sends its ticket itself once the handshake is
   * done (qm_tls_send_ticket), at the 1-RTT level. */
  if (c->server && c->zero_rtt)
    flags |= GNUTLS_NO_AUTO_SEND_TICKET;
  if (gnutls_init(&s, flags) < 0)
    return QM_ENOMEM;
  rv = c->server ? ngtcp2_crypto_gnutls_configure_server_session(s)
                 : ngtcp2_crypto_gnutls_configure_client_session(s);
  if (rv != 0 || gnutls_priority_set_direct(s, QM_TLS_PRIORITY, NULL) < 0 ||
      gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->cred) < 0 ||
      gnutls_alpn_set_protocols(s, c->alpn, c->nalpn,
                                c->server ? GNUTLS_ALPN_SERVER_PRECEDENCE : 0) <
          0)
    goto fail;
  if (c->server && c->zero_rtt) {
    /* Early data needs the anti-replay record: without it GnuTLS refuses
     * early data. QUIC wants max_early_data_size 0xffffffff (RFC 9001
     * §4.6.1). */
    if (gnutls_session_ticket_enable_server(s, &c->ticket_key) < 0)
      goto fail;
    gnutls_anti_replay_enable(s, c->anti_replay);
    if (gnutls_record_set_max_early_data_size(s, 0xffffffffu) < 0)
      goto fail;
  }
  if (!c->server) {
    /* An IP literal as serverName sends no SNI, as Go does (SPEC §6). */
    if (!c->sni_is_ip &&
        gnutls_server_name_set(s, GNUTLS_NAME_DNS, c->server_name,
                               strlen(c->server_name)) < 0)
      goto fail;
    if (c->verify)
      gnutls_session_set_verify_cert(s, c->server_name, 0);
    /* after ngtcp2's transport parameters: per-session extensions are
     * sent in the order registered, before GnuTLS's own (the SNI) */
    if (c->hide && qm_hide_pad_client_hello(s) != 0)
      goto fail;
  }
  gnutls_session_set_ptr(s, ref);
  *out = s;
  return 0;
fail:
  gnutls_deinit(s);
  return QM_ETLS;
}

int qm_tls_ctx_zero_rtt(const qm_tls_ctx *c) {
  return c->zero_rtt;
}

int qm_tls_send_ticket(gnutls_session_t s) {
  return gnutls_session_ticket_send(s, 1, 0) < 0 ? QM_ETLS : 0;
}
