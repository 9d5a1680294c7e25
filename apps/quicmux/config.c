/*
 * `quicmux -c FILE.json`: several tunnels from one JSON file, each with
 * v2ray's streamSettings exactly as users write them (SPEC §4, §6), with
 * v2ray's defaults and traps. Every problem is reported as one line naming
 * the JSON path, before anything starts. See docs/config.md.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ev.h>
#include <jansson.h>

#include "app.h"
#include "opts.h"

#define MAX_FILE (16u << 20)

typedef struct cfgctx {
  char err[1024];
  char **warn;
  size_t nwarn;
  json_t *global_quic; /* transport.quicSettings, v2ray's global default */
} cfgctx;

static int fail(cfgctx *x, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(cfgctx *x, const char *path, const char *fmt, ...) {
  va_list ap;
  int n = snprintf(x->err, sizeof(x->err), "%s: ", path);
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof(x->err))
    vsnprintf(x->err + n, sizeof(x->err) - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

static void warn(cfgctx *x, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void warn(cfgctx *x, const char *path, const char *fmt, ...) {
  char buf[1024], **v;
  va_list ap;
  int n = snprintf(buf, sizeof(buf), "%s: ", path);
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof(buf))
    vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
  va_end(ap);
  v = realloc(x->warn, (x->nwarn + 1) * sizeof(*v));
  if (!v)
    return;
  x->warn = v;
  if ((x->warn[x->nwarn] = strdup(buf)))
    x->nwarn++;
}

static const char *jtype(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  default:
    return "null";
  }
}

/* buf = base.key (or key), cut to fit. */
static void pjoin(char *buf, size_t len, const char *base, const char *key) {
  size_t bl = base ? strlen(base) : 0, kl = strlen(key), o = 0;
  if (bl) {
    if (bl > len - 2)
      bl = len - 2;
    memcpy(buf, base, bl);
    o = bl;
    buf[o++] = '.';
  }
  if (kl > len - 1 - o)
    kl = len - 1 - o;
  memcpy(buf + o, key, kl);
  buf[o + kl] = '\0';
}

/* buf = base[i], cut to fit. */
static void pindex(char *buf, size_t len, const char *base, size_t i) {
  char idx[32];
  size_t bl = strlen(base), il;
  il = (size_t)snprintf(idx, sizeof(idx), "[%zu]", i);
  if (bl > len - 1 - il)
    bl = len - 1 - il;
  memcpy(buf, base, bl);
  memcpy(buf + bl, idx, il + 1);
}

/* A key, matched without regard to case as Go's encoding/json does; a null
 * value counts as absent (Go leaves the field unset). */
static json_t *jget(json_t *obj, const char *name, const char **real) {
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    if (!strcasecmp(k, name)) {
      if (real)
        *real = k;
      return json_is_null(v) ? NULL : v;
    }
  }
  return NULL;
}

/* Every key of obj must be one of allowed (NULL-terminated), once. */
static int check_keys(cfgctx *x, json_t *obj, const char *path,
                      const char *const *allowed) {
  const char *k;
  json_t *v;
  unsigned seen = 0;
  json_object_foreach(obj, k, v) {
    char p[512], list[512] = "";
    size_t i, o = 0;
    (void)v;
    for (i = 0; allowed[i]; i++)
      if (!strcasecmp(k, allowed[i]))
        break;
    pjoin(p, sizeof(p), path, k);
    if (allowed[i]) {
      if (seen & (1u << i))
        return fail(x, p,
                    "given twice (keys match whatever their case, as in "
                    "v2ray)");
      seen |= 1u << i;
      continue;
    }
    for (i = 0; allowed[i] && o < sizeof(list); i++)
      o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "",
                            allowed[i]);
    return fail(x, p, "unknown key (allowed here: %s)", list);
  }
  return 0;
}

/* Typed getters: 0 with *out set (NULL/unchanged if absent), -1 on a wrong
 * type. */
static int jstr(cfgctx *x, json_t *obj, const char *name, const char *path,
                const char **out) {
  char p[512];
  const char *real = name;
  json_t *v = jget(obj, name, &real);
  *out = NULL;
  if (!v)
    return 0;
  pjoin(p, sizeof(p), path, real);
  if (!json_is_string(v))
    return fail(x, p, "want a string, got %s", jtype(v));
  *out = json_string_value(v);
  return 0;
}

static int jbool(cfgctx *x, json_t *obj, const char *name, const char *path,
                 int *out) {
  char p[512];
  const char *real = name;
  json_t *v = jget(obj, name, &real);
  if (!v)
    return 0;
  pjoin(p, sizeof(p), path, real);
  if (!json_is_boolean(v))
    return fail(x, p, "want true or false, got %s", jtype(v));
  *out = json_is_true(v);
  return 0;
}

static int jobj(cfgctx *x, json_t *obj, const char *name, const char *path,
                json_t **out) {
  char p[512];
  const char *real = name;
  json_t *v = jget(obj, name, &real);
  *out = NULL;
  if (!v)
    return 0;
  pjoin(p, sizeof(p), path, real);
  if (!json_is_object(v))
    return fail(x, p, "want an object, got %s", jtype(v));
  *out = v;
  return 0;
}

/* A string or an array of strings (v2ray's certificate/key lines), joined
 * with sep. Returns a malloc'd string or NULL (absent); -1 on error. */
static int jlines(cfgctx *x, json_t *obj, const char *name, const char *path,
                  const char *sep, char **out) {
  char p[512];
  const char *real = name;
  json_t *v = jget(obj, name, &real), *e;
  size_t i, len = 0;
  *out = NULL;
  if (!v)
    return 0;
  pjoin(p, sizeof(p), path, real);
  if (json_is_string(v)) {
    *out = strdup(json_string_value(v));
    return *out ? 0 : fail(x, p, "out of memory");
  }
  if (!json_is_array(v))
    return fail(x, p, "want a string or an array of strings, got %s", jtype(v));
  json_array_foreach(v, i, e) {
    if (!json_is_string(e))
      return fail(x, p, "element %zu: want a string, got %s", i, jtype(e));
    len += strlen(json_string_value(e)) + strlen(sep);
  }
  *out = calloc(1, len + 1);
  if (!*out)
    return fail(x, p, "out of memory");
  json_array_foreach(v, i, e) {
    if (i)
      strcat(*out, sep);
    strcat(*out, json_string_value(e));
  }
  return 0;
}

/* ---- quicSettings ---- */

static int parse_quic(cfgctx *x, json_t *q, const char *path, tunnel_cfg *c) {
  static const char *const keys[] = {"security", "key", "header", NULL};
  static const char *const hkeys[] = {"type", NULL};
  const char *sec, *key, *type;
  json_t *h;
  char p[512], hp[512];

  if (check_keys(x, q, path, keys) != 0 ||
      jstr(x, q, "security", path, &sec) != 0 ||
      jstr(x, q, "key", path, &key) != 0 || jobj(x, q, "header", path, &h))
    return -1;
  /* v2ray: case-insensitive; anything but the two AEADs is none (§4.2). */
  c->s.security = QM_SEC_NONE;
  if (sec && !strcasecmp(sec, "aes-128-gcm"))
    c->s.security = QM_SEC_AES_128_GCM;
  else if (sec && !strcasecmp(sec, "chacha20-poly1305"))
    c->s.security = QM_SEC_CHACHA20_POLY1305;
  else if (sec && *sec && strcasecmp(sec, "none")) {
    pjoin(p, sizeof(p), path, "security");
    warn(x, p,
         "'%s' means no packet encryption (v2ray treats every value but "
         "aes-128-gcm and chacha20-poly1305 as none)",
         sec);
  }
  c->s.key = tunnel_cfg_strdup(c, key ? key : "");
  c->s.header = QM_HDR_NONE;
  if (h) {
    pjoin(hp, sizeof(hp), path, "header");
    if (check_keys(x, h, hp, hkeys) != 0 || jstr(x, h, "type", hp, &type))
      return -1;
    pjoin(p, sizeof(p), hp, "type");
    if (!type)
      return fail(x, p,
                  "missing: a header needs a type (v2ray refuses it: \"type "
                  "not found\")");
    if (qm_header_parse(type, &c->s.header) != 0)
      return fail(x, p,
                  "'%s' is not one of none, srtp, utp, wechat-video, dtls, "
                  "wireguard",
                  type);
  }
  return 0;
}

/* ---- tlsSettings ---- */

typedef struct cert_ent {
  char *cert_file, *key_file; /* paths (own copy) */
  char *cert_pem, *key_pem;   /* inline text */
  int usage;                  /* 0 encipherment, 1 verify, 2 issue */
  char path[512];
} cert_ent;

static void certs_free(cert_ent *v, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    free(v[i].cert_file);
    free(v[i].key_file);
    free(v[i].cert_pem);
    free(v[i].key_pem);
  }
  free(v);
}

static int parse_certs(cfgctx *x, json_t *arr, const char *path, cert_ent **out,
                       size_t *nout) {
  static const char *const keys[] = {
      "certificateFile", "certificate", "keyFile", "key", "usage", NULL};
  size_t i;
  json_t *e;
  cert_ent *v;
  *out = NULL;
  *nout = 0;
  if (!json_is_array(arr))
    return fail(x, path, "want an array, got %s", jtype(arr));
  v = calloc(json_array_size(arr) + 1, sizeof(*v));
  if (!v)
    return fail(x, path, "out of memory");
  *out = v;
  json_array_foreach(arr, i, e) {
    cert_ent *ce = &v[i];
    const char *cf, *kf, *usage;
    *nout = i + 1;
    pindex(ce->path, sizeof(ce->path), path, i);
    if (!json_is_object(e))
      return fail(x, ce->path, "want an object, got %s", jtype(e));
    if (check_keys(x, e, ce->path, keys) != 0 ||
        jstr(x, e, "certificateFile", ce->path, &cf) != 0 ||
        jstr(x, e, "keyFile", ce->path, &kf) != 0 ||
        jstr(x, e, "usage", ce->path, &usage) != 0 ||
        jlines(x, e, "certificate", ce->path, "\n", &ce->cert_pem) != 0 ||
        jlines(x, e, "key", ce->path, "\n", &ce->key_pem) != 0)
      return -1;
    if (cf && *cf && !(ce->cert_file = strdup(cf)))
      return fail(x, ce->path, "out of memory");
    if (kf && *kf && !(ce->key_file = strdup(kf)))
      return fail(x, ce->path, "out of memory");
    if (!ce->cert_file && !(ce->cert_pem && *ce->cert_pem))
      return fail(x, ce->path,
                  "give certificateFile or certificate (v2ray: \"both file "
                  "and bytes are empty\")");
    if (!usage || !*usage || !strcasecmp(usage, "encipherment"))
      ce->usage = 0;
    else if (!strcasecmp(usage, "verify"))
      ce->usage = 1;
    else if (!strcasecmp(usage, "issue"))
      ce->usage = 2;
    else {
      char p[600];
      pjoin(p, sizeof(p), ce->path, "usage");
      return fail(x, p, "'%s' is not one of encipherment, verify, issue",
                  usage);
    }
  }
  return 0;
}

/* The PEM text of a certificate entry's certificate (file or inline) goes
 * to a file: the file itself, or a private temporary one. */
static const char *ent_file(cfgctx *x, tunnel_cfg *c, const char *path,
                            const char *file, const char *pem,
                            const char *what) {
  char err[256];
  const char *t;
  if (file)
    return tunnel_cfg_strdup(c, file);
  t = app_tmpfile(what, pem, strlen(pem), err, sizeof(err));
  if (!t) {
    fail(x, path, "%s", err);
    return NULL;
  }
  return tunnel_cfg_strdup(c, t);
}

static int slurp(const char *file, char **out, size_t *len) {
  FILE *f = fopen(file, "rb");
  char *buf = NULL;
  size_t n = 0, cap = 0, r;
  if (!f)
    return -1;
  do {
    if (n + 4096 > cap) {
      char *nb;
      cap = cap ? cap * 2 : 8192;
      if (cap > MAX_FILE || !(nb = realloc(buf, cap + 1))) {
        free(buf);
        fclose(f);
        errno = EFBIG;
        return -1;
      }
      buf = nb;
    }
    r = fread(buf + n, 1, cap - n, f);
    n += r;
  } while (r > 0);
  fclose(f);
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

static int set_where(tunnel_cfg *c, opt_id id, const char *where) {
  c->where[id - OPT__FIRST] = tunnel_cfg_strdup(c, where);
  return 0;
}

static int parse_tls(cfgctx *x, json_t *t, const char *path, tunnel_cfg *c,
                     int tls_on) {
  static const char *const keys[] = {"serverName",
                                     "allowInsecure",
                                     "alpn",
                                     "certificates",
                                     "disableSystemRoot",
                                     "enableSessionResumption",
                                     "pinnedPeerCertificateChainSha256",
                                     NULL};
  const char *sni = NULL, *real;
  int insecure = 0, no_sys = 0, resume = 0;
  json_t *alpn = NULL, *certs_j = NULL, *empty = NULL;
  cert_ent *certs = NULL;
  size_t ncerts = 0, i;
  char p[512], ap[512];
  int rv = -1;

  if (!t)
    t = empty = json_object();
  if (check_keys(x, t, path, keys) != 0)
    goto out;
  if (jget(t, "pinnedPeerCertificateChainSha256", &real)) {
    pjoin(p, sizeof(p), path, real);
    fail(x, p,
         "not supported by quicmux (trust the certificate with certificates "
         "and disableSystemRoot instead)");
    goto out;
  }
  if (jstr(x, t, "serverName", path, &sni) != 0 ||
      jbool(x, t, "allowInsecure", path, &insecure) != 0 ||
      jbool(x, t, "disableSystemRoot", path, &no_sys) != 0 ||
      jbool(x, t, "enableSessionResumption", path, &resume) != 0)
    goto out;
  real = "alpn";
  alpn = jget(t, "alpn", &real);
  pjoin(ap, sizeof(ap), path, real);
  if (alpn) {
    /* v2ray's StringList: an array, or one string split at commas. */
    char list[512] = "";
    size_t o = 0;
    json_t *e;
    if (json_is_string(alpn)) {
      snprintf(list, sizeof(list), "%s", json_string_value(alpn));
    } else if (json_is_array(alpn)) {
      json_array_foreach(alpn, i, e) {
        if (!json_is_string(e) || !*json_string_value(e) ||
            strchr(json_string_value(e), ',')) {
          fail(x, ap, "element %zu: want a non-empty protocol name", i);
          goto out;
        }
        o += (size_t)snprintf(list + o, o < sizeof(list) ? sizeof(list) - o : 0,
                              "%s%s", i ? "," : "", json_string_value(e));
      }
    } else {
      fail(x, ap, "want an array of strings, got %s", jtype(alpn));
      goto out;
    }
    if (*list)
      c->s.alpn = tunnel_cfg_strdup(c, list);
  }
  real = "certificates";
  certs_j = jget(t, "certificates", &real);
  pjoin(p, sizeof(p), path, real);
  if (certs_j && parse_certs(x, certs_j, p, &certs, &ncerts) != 0)
    goto out;

  if (!tls_on) {
    if (!empty)
      warn(x, path,
           "ignored: v2ray uses tlsSettings only with \"security\": \"tls\"; "
           "this tunnel uses v2ray's default TLS");
    c->s.server_name = NULL;
    c->s.alpn = NULL; /* the ignored tlsSettings' alpn too */
    c->s.insecure = 1;
    c->warn_unverified = c->role == MODE_CLIENT;
    rv = 0;
    goto out;
  }

  if (c->role == MODE_CLIENT) {
    const char *cafile = NULL;
    pjoin(p, sizeof(p), path, "serverName");
    if ((!sni || !*sni) && !insecure) {
      fail(x, p,
           "missing: with security \"tls\" and allowInsecure false v2ray "
           "fails every dial (\"either ServerName or InsecureSkipVerify "
           "must be specified\"); set serverName, or allowInsecure true");
      goto out;
    }
    /* No serverName (allowInsecure): Go sends no SNI, as for an IP. */
    c->s.server_name = tunnel_cfg_strdup(c, sni && *sni ? sni : "0.0.0.0");
    c->s.insecure = insecure;
    c->s.no_system_roots = no_sys;
    c->insecure_set = insecure;
    /* Trust: the system roots plus every certificate, whatever its usage. */
    if (ncerts == 1 && certs[0].cert_file) {
      cafile = tunnel_cfg_strdup(c, certs[0].cert_file);
      pjoin(p, sizeof(p), certs[0].path, "certificateFile");
      set_where(c, OPT_CA, p);
    } else if (ncerts > 0) {
      /* Concatenate them into one private file. */
      char *all = NULL, err[256];
      size_t len = 0;
      for (i = 0; i < ncerts; i++) {
        char *text = certs[i].cert_pem, *buf = NULL, *nb;
        size_t tl;
        if (certs[i].cert_file) {
          if (slurp(certs[i].cert_file, &buf, &tl) != 0) {
            pjoin(p, sizeof(p), certs[i].path, "certificateFile");
            fail(x, p, "'%s': %s", certs[i].cert_file, strerror(errno));
            free(all);
            goto out;
          }
          text = buf;
        }
        tl = strlen(text);
        nb = realloc(all, len + tl + 2);
        if (!nb) {
          free(buf);
          free(all);
          fail(x, path, "out of memory");
          goto out;
        }
        all = nb;
        memcpy(all + len, text, tl);
        len += tl;
        all[len++] = '\n';
        free(buf);
      }
      cafile = app_tmpfile("ca", all, len, err, sizeof(err));
      free(all);
      if (!cafile) {
        fail(x, path, "%s", err);
        goto out;
      }
      cafile = tunnel_cfg_strdup(c, cafile);
      pjoin(p, sizeof(p), path, "certificates");
      set_where(c, OPT_CA, p);
    }
    c->s.ca_file = cafile;
    if (!insecure && no_sys && !cafile) {
      pjoin(p, sizeof(p), path, "disableSystemRoot");
      fail(x, p, "true without certificates: no server could be trusted");
      goto out;
    }
  } else {
    cert_ent *enc = NULL;
    size_t nenc = 0;
    for (i = 0; i < ncerts; i++) {
      if (certs[i].usage == 2) {
        pjoin(p, sizeof(p), certs[i].path, "usage");
        fail(x, p,
             "\"issue\" (certificates made on the fly by a CA) is not "
             "supported by quicmux");
        goto out;
      }
      if (certs[i].usage == 0) {
        enc = &certs[i];
        nenc++;
      }
    }
    pjoin(p, sizeof(p), path, "certificates");
    if (nenc == 0) {
      fail(x, p,
           "a server with security \"tls\" needs a certificate with usage "
           "\"encipherment\" and its key (certificateFile and keyFile)");
      goto out;
    }
    if (nenc > 1) {
      fail(x, p,
           "%zu certificates have usage \"encipherment\"; quicmux serves "
           "one",
           nenc);
      goto out;
    }
    if (!enc->key_file && !(enc->key_pem && *enc->key_pem)) {
      fail(x, enc->path, "give keyFile or key for this certificate");
      goto out;
    }
    pjoin(p, sizeof(p), enc->path,
          enc->cert_file ? "certificateFile" : "certificate");
    set_where(c, OPT_TLS_CERT, p);
    if (!(c->s.cert_file =
              ent_file(x, c, p, enc->cert_file, enc->cert_pem, "cert")))
      goto out;
    pjoin(p, sizeof(p), enc->path, enc->key_file ? "keyFile" : "key");
    set_where(c, OPT_TLS_KEY, p);
    if (!(c->s.key_file =
              ent_file(x, c, p, enc->key_file, enc->key_pem, "key")))
      goto out;
    if (sni && *sni)
      c->s.server_name = tunnel_cfg_strdup(c, sni);
  }
  rv = 0;
out:
  certs_free(certs, ncerts);
  if (empty)
    json_decref(empty);
  return rv;
}

/* ---- streamSettings ---- */

static int parse_stream(cfgctx *x, json_t *ss, const char *path,
                        tunnel_cfg *c) {
  static const char *const keys[] = {
      "network",      "security",    "tlsSettings", "quicSettings",
      "sockopt",      "tcpSettings", "kcpSettings", "wsSettings",
      "httpSettings", "dsSettings",  NULL};
  static const char *const other[] = {"tcpSettings", "kcpSettings",
                                      "wsSettings",  "httpSettings",
                                      "dsSettings",  NULL};
  static const char *const sokeys[] = {"mark", "tcpFastOpen", "tproxy", NULL};
  const char *network, *security, *real;
  json_t *tls, *quic, *so, *v;
  char p[512];
  int tls_on = 0;
  size_t i;

  if (check_keys(x, ss, path, keys) != 0 ||
      jstr(x, ss, "network", path, &network) != 0 ||
      jstr(x, ss, "security", path, &security) != 0 ||
      jobj(x, ss, "tlsSettings", path, &tls) != 0 ||
      jobj(x, ss, "quicSettings", path, &quic) != 0 ||
      jobj(x, ss, "sockopt", path, &so) != 0)
    return -1;
  pjoin(p, sizeof(p), path, "network");
  if (!network)
    return fail(x, p,
                "missing: want \"quic\" (v2ray's default is tcp, which "
                "quicmux does not speak)");
  if (strcasecmp(network, "quic"))
    return fail(x, p,
                "'%s' is not one of quic (quicmux is v2ray's quic transport "
                "only)",
                network);
  pjoin(p, sizeof(p), path, "security");
  if (security && !strcasecmp(security, "tls"))
    tls_on = 1;
  else if (security && *security && strcasecmp(security, "none"))
    return fail(x, p, "'%s' is not one of none, tls", security);

  pjoin(p, sizeof(p), path, "quicSettings");
  if (quic) {
    if (parse_quic(x, quic, p, c) != 0)
      return -1;
  } else if (x->global_quic) {
    if (parse_quic(x, x->global_quic, "transport.quicSettings", c) != 0)
      return -1;
  } else {
    /* The trap (SPEC §4.2): no quicSettings at all is v2ray's proto
     * default, security AUTO = AES-128-GCM on 64-bit x86/ARM and s390x,
     * ChaCha20-Poly1305 elsewhere, with key "". */
#if defined(__x86_64__) || defined(__aarch64__) || defined(__s390x__)
    c->s.security = QM_SEC_AES_128_GCM;
#else
    c->s.security = QM_SEC_CHACHA20_POLY1305;
#endif
    c->s.key = tunnel_cfg_strdup(c, "");
    c->s.header = QM_HDR_NONE;
    warn(x, p,
         "absent: v2ray's default applies: %s with key \"\" (write "
         "\"quicSettings\": {} for no encryption)",
         qm_security_name(c->s.security));
  }

  pjoin(p, sizeof(p), path, "tlsSettings");
  if (parse_tls(x, tls, p, c, tls_on) != 0)
    return -1;

  if (so) {
    json_t *mark;
    int tfo = 0;
    const char *tproxy;
    pjoin(p, sizeof(p), path, "sockopt");
    if (check_keys(x, so, p, sokeys) != 0 ||
        jbool(x, so, "tcpFastOpen", p, &tfo) != 0 ||
        jstr(x, so, "tproxy", p, &tproxy) != 0)
      return -1;
    real = "mark";
    if ((mark = jget(so, "mark", &real))) {
      char mp[600];
      pjoin(mp, sizeof(mp), p, real);
      if (!json_is_integer(mark) || json_integer_value(mark) < 0 ||
          json_integer_value(mark) > 2147483647)
        return fail(x, mp, "want a whole number from 0 to 2147483647");
      c->s.fwmark = (int)json_integer_value(mark);
      set_where(c, OPT_FWMARK, mp);
    }
    if (tproxy && *tproxy && strcasecmp(tproxy, "off")) {
      char tp[600];
      pjoin(tp, sizeof(tp), p, "tproxy");
      return fail(x, tp, "'%s' is not supported by quicmux (want off)", tproxy);
    }
  }
  for (i = 0; other[i]; i++) {
    real = other[i];
    if ((v = jget(ss, other[i], &real))) {
      pjoin(p, sizeof(p), path, real);
      if (!json_is_object(v))
        return fail(x, p, "want an object, got %s", jtype(v));
      warn(x, p, "ignored: it is for another network than quic");
    }
  }
  return 0;
}

/* ---- one tunnel ---- */

static int parse_tunnel(cfgctx *x, json_t *t, size_t idx, tunnel_cfg *c) {
  char path[64], p[512], tag[64];
  const char *k, *role;
  json_t *v, *ss;
  unsigned r;

  snprintf(path, sizeof(path), "tunnels[%zu]", idx);
  if (!json_is_object(t))
    return fail(x, path, "want an object, got %s", jtype(t));
  if (jstr(x, t, "role", path, &role) != 0)
    return -1;
  pjoin(p, sizeof(p), path, "role");
  if (!role)
    return fail(x, p, "missing: want \"client\" or \"server\"");
  if (!strcasecmp(role, "client"))
    r = MODE_CLIENT;
  else if (!strcasecmp(role, "server"))
    r = MODE_SERVER;
  else
    return fail(x, p, "'%s' is not one of client, server", role);
  tunnel_cfg_init(c, r, STYLE_JSON, path);
  snprintf(tag, sizeof(tag), "%s", path);
  c->tag = tunnel_cfg_strdup(c, tag);

  json_object_foreach(t, k, v) {
    const opt_def *o;
    char err[512], num[32];
    const char *val;
    pjoin(p, sizeof(p), path, k);
    if (!strcasecmp(k, "role") || !strcasecmp(k, "streamSettings"))
      continue;
    o = opt_by_json_key(k);
    if (!o)
      return fail(
          x, p,
          "unknown key (allowed here: role, tag, listen, server, "
          "target, streamSettings, maxStreams, idleTimeout, "
          "handshakeTimeout, keepAlive, sessionIdle, maxSessions, "
          "maxSessionsPerServer, maxConnections, retry, congestion, "
          "drain, workers, qlogDir, qlogMaxFiles, hideInitial, udp, "
          "udpIdle, udpMaxFlows, udpFlowsPerSession, udpQueue, zeroRtt, "
          "zeroRttFile)");
    if (json_is_null(v))
      continue;
    if (!(o->modes & r))
      return fail(x, p, "does not apply to role %s%s",
                  r == MODE_CLIENT ? "client" : "server",
                  o->id == OPT_SERVER   ? " (a server tunnel has \"target\")"
                  : o->id == OPT_TARGET ? " (a client tunnel has \"server\")"
                                        : "");
    if (o->id == OPT_SERVER && json_is_array(v)) {
      /* several servers: ["a:443", "b:443"] */
      size_t i;
      json_t *e;
      if (json_array_size(v) == 0)
        return fail(x, p, "empty list: want \"HOST:PORT\" or a list of them");
      json_array_foreach(v, i, e) {
        char pi[540];
        snprintf(pi, sizeof(pi), "%s[%zu]", p, i);
        if (!json_is_string(e))
          return fail(x, pi, "want a string \"HOST:PORT\", got %s", jtype(e));
        if (tunnel_cfg_set(c, o, pi, json_string_value(e), err, sizeof(err)) !=
            0) {
          snprintf(x->err, sizeof(x->err), "%s", err);
          return -1;
        }
      }
      continue;
    }
    if (o->id == OPT_WORKERS && json_is_integer(v)) { /* 4 or "auto" */
      snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
      val = num;
    } else if (o->type == T_SWITCH) {
      if (!json_is_boolean(v))
        return fail(x, p, "want true or false, got %s", jtype(v));
      if (!json_is_true(v))
        continue;
      val = NULL;
    } else if (o->type == T_NUM) {
      if (!json_is_integer(v))
        return fail(x, p, "want a whole number from %ld to %ld, got %s", o->lo,
                    o->hi, jtype(v));
      snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
      val = num;
    } else {
      if (!json_is_string(v))
        return fail(x, p, "want a string%s, got %s",
                    o->id == OPT_SERVER ? " \"HOST:PORT\" or a list of them"
                    : o->type == T_ADDR ? " \"HOST:PORT\""
                                        : "",
                    jtype(v));
      val = json_string_value(v);
    }
    if (tunnel_cfg_set(c, o, p, val, err, sizeof(err)) != 0) {
      snprintf(x->err, sizeof(x->err), "%s", err);
      return -1;
    }
  }
  if (jobj(x, t, "streamSettings", path, &ss) != 0)
    return -1;
  pjoin(p, sizeof(p), path, "streamSettings");
  if (!ss)
    return fail(x, p, "missing: want {\"network\": \"quic\", ...}");
  return parse_stream(x, ss, p, c);
}

/* ---- the file ---- */

typedef struct app_config {
  tunnel_cfg *t;
  size_t n;
  const char *level; /* NULL = default */
  char *log_file;
  char *metrics_listen; /* metrics.listen */
  int metrics_public;   /* metrics.public */
} app_config;

/* Blank out comments as v2ray's JSON reader skips them: // and # to the end
 * of the line, and block comments. Newlines stay, so line numbers hold. */
static void strip_comments(char *s, size_t n) {
  size_t i;
  int in_str = 0;
  for (i = 0; i < n; i++) {
    if (in_str) {
      if (s[i] == '\\' && i + 1 < n)
        i++;
      else if (s[i] == '"')
        in_str = 0;
      continue;
    }
    if (s[i] == '"') {
      in_str = 1;
    } else if (s[i] == '#' || (s[i] == '/' && i + 1 < n && s[i + 1] == '/')) {
      while (i < n && s[i] != '\n')
        s[i++] = ' ';
    } else if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
      s[i] = s[i + 1] = ' ';
      for (i += 2; i < n && !(s[i] == '*' && i + 1 < n && s[i + 1] == '/'); i++)
        if (s[i] != '\n')
          s[i] = ' ';
      if (i < n)
        s[i] = s[i + 1] = ' ';
      i++;
    }
  }
}

static int load(cfgctx *x, const char *file, app_config *cfg) {
  static const char *const top[] = {"log", "transport", "tunnels", "metrics",
                                    NULL};
  static const char *const mk[] = {"listen", "public", NULL};
  static const char *const logk[] = {"level", "loglevel", "file", NULL};
  static const char *const tk[] = {
      "quicSettings", "tcpSettings", "kcpSettings", "wsSettings",
      "httpSettings", "dsSettings",  NULL};
  char *text;
  size_t len, i;
  json_error_t je;
  json_t *root, *log, *tr, *tun, *e, *met;
  const char *lvl = NULL, *lvl2 = NULL, *lf = NULL;
  qm_log_level dummy;
  int rv = -1;

  if (slurp(file, &text, &len) != 0) {
    snprintf(x->err, sizeof(x->err), "cannot read it: %s", strerror(errno));
    return -1;
  }
  strip_comments(text, len);
  root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  free(text);
  if (!root) {
    snprintf(x->err, sizeof(x->err), "line %d, column %d: %s", je.line,
             je.column, je.text);
    return -1;
  }
  if (!json_is_object(root)) {
    fail(x, "(top level)", "want an object, got %s", jtype(root));
    goto out;
  }
  if (check_keys(x, root, "", top) != 0 || jobj(x, root, "log", "", &log) ||
      jobj(x, root, "transport", "", &tr))
    goto out;
  if (log) {
    if (check_keys(x, log, "log", logk) != 0 ||
        jstr(x, log, "level", "log", &lvl) != 0 ||
        jstr(x, log, "loglevel", "log", &lvl2) != 0 ||
        jstr(x, log, "file", "log", &lf) != 0)
      goto out;
    if (!lvl)
      lvl = lvl2;
    if (lvl && app_log_level_parse(lvl, &dummy) != 0) {
      fail(x, lvl2 && lvl == lvl2 ? "log.loglevel" : "log.level",
           "'%s' is not one of debug, info, warning, error, none", lvl);
      goto out;
    }
    if (lvl)
      cfg->level = strdup(lvl);
    if (lf && *lf)
      cfg->log_file = strdup(lf);
  }
  if (jobj(x, root, "metrics", "", &met) != 0)
    goto out;
  if (met) {
    const char *ml = NULL;
    if (check_keys(x, met, "metrics", mk) != 0 ||
        jstr(x, met, "listen", "metrics", &ml) != 0 ||
        jbool(x, met, "public", "metrics", &cfg->metrics_public) != 0)
      goto out;
    if (!ml) {
      fail(x, "metrics.listen", "missing: want \"HOST:PORT\"");
      goto out;
    }
    if (!(cfg->metrics_listen = strdup(ml))) {
      fail(x, "metrics.listen", "out of memory");
      goto out;
    }
  }
  if (tr) {
    if (check_keys(x, tr, "transport", tk) != 0 ||
        jobj(x, tr, "quicSettings", "transport", &x->global_quic) != 0)
      goto out;
  }
  tun = jget(root, "tunnels", NULL);
  if (!tun) {
    fail(x, "tunnels", "missing: want an array of tunnels");
    goto out;
  }
  if (!json_is_array(tun) || json_array_size(tun) == 0) {
    fail(x, "tunnels", "want a non-empty array, got %s",
         json_is_array(tun) ? "an empty one" : jtype(tun));
    goto out;
  }
  cfg->t = calloc(json_array_size(tun), sizeof(*cfg->t));
  if (!cfg->t) {
    fail(x, "tunnels", "out of memory");
    goto out;
  }
  json_array_foreach(tun, i, e) {
    cfg->n = i + 1;
    if (parse_tunnel(x, e, i, &cfg->t[i]) != 0)
      goto out;
  }
  rv = 0;
out:
  json_decref(root);
  return rv;
}

static void config_free(app_config *cfg) {
  size_t i;
  for (i = 0; i < cfg->n; i++)
    tunnel_cfg_free(&cfg->t[i]);
  free(cfg->t);
  free((char *)cfg->level);
  free(cfg->log_file);
  free(cfg->metrics_listen);
  memset(cfg, 0, sizeof(*cfg));
}

int app_config_main(int argc, char **argv) {
  static const struct option lopts[] = {
      {"config", required_argument, NULL, 'c'},
      {"check", no_argument, NULL, 'k'},
      {"log-level", required_argument, NULL, 'l'},
      {"log-file", required_argument, NULL, 'f'},
      {"metrics", required_argument, NULL, 'm'},
      {"metrics-public", no_argument, NULL, 'p'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'v'},
      {NULL, 0, NULL, 0}};
  const char *file = NULL, *level = NULL, *log_file = NULL, *metrics_cli = NULL;
  int metrics_public_cli = 0;
  app_metrics metrics = {0};
  int c, check = 0, rc;
  cfgctx x;
  app_config cfg;
  qm_log_level lvl = QM_LOG_WARNING;
  struct ev_loop *loop;
  char err[512];
  size_t i;

  memset(&x, 0, sizeof(x));
  memset(&cfg, 0, sizeof(cfg));
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":c:", lopts, NULL)) != -1) {
    switch (c) {
    case 'c':
      file = optarg;
      break;
    case 'k':
      check = 1;
      break;
    case 'l':
      level = optarg;
      break;
    case 'f':
      log_file = optarg;
      break;
    case 'm':
      metrics_cli = optarg;
      break;
    case 'p':
      metrics_public_cli = 1;
      break;
    case 'h':
      opts_usage(stdout);
      return EXIT_OK;
    case 'v':
      printf("quicmux %s\n", qm_version());
      return EXIT_OK;
    case ':':
      app_die_usage("option '%s' needs a value", argv[optind - 1]);
    default:
      app_die_usage("unknown option '%s' here (with -c: --check, --log-level, "
                    "--log-file, --metrics, --metrics-public; see --help)",
                    argv[optind - 1]);
    }
  }
  if (optind < argc)
    app_die_usage("unexpected argument '%s' (see --help)", argv[optind]);
  if (!file)
    app_die_usage(
        "missing -c FILE (or a subcommand: client, server, plugin, demo)");
  if (level && app_log_level_parse(level, &lvl) != 0)
    app_die_usage("--log-level '%s': want debug, info, warning, error or none",
                  level);

  if (load(&x, file, &cfg) != 0) {
    fprintf(stderr, "quicmux: %s: %s\n", file, x.err);
    rc = EXIT_USAGE;
    goto done;
  }
  for (i = 0; i < cfg.n; i++)
    if (tunnel_cfg_check(&cfg.t[i], err, sizeof(err)) != 0) {
      fprintf(stderr, "quicmux: %s: %s\n", file, err);
      rc = EXIT_USAGE;
      goto done;
    }
  /* the command line wins over the file */
  metrics.listen = metrics_cli ? metrics_cli : cfg.metrics_listen;
  metrics.public_ok = metrics_public_cli || cfg.metrics_public;
  if (app_metrics_check(&metrics, metrics_cli ? "--metrics" : "metrics.listen",
                        metrics_cli ? "--metrics-public"
                                    : "metrics.public true",
                        err, sizeof(err)) != 0) {
    fprintf(stderr, "quicmux: %s: %s\n", file, err);
    rc = EXIT_USAGE;
    goto done;
  }
  if (!level && cfg.level)
    app_log_level_parse(cfg.level, &lvl);
  if (!log_file)
    log_file = cfg.log_file;
  if (!check && log_file && app_log_open(log_file, err, sizeof(err)) != 0) {
    fprintf(stderr, "quicmux: %s: log.file %s\n", file, err);
    rc = EXIT_USAGE;
    goto done;
  }
  app_log_setup(lvl);
  for (i = 0; i < x.nwarn; i++)
    app_logm(QM_LOG_WARNING, "config", "%s", x.warn[i]);
  if (check) {
    fflush(stderr);
    printf("quicmux: %s: OK, %zu tunnel%s\n", file, cfg.n,
           cfg.n == 1 ? "" : "s");
    for (i = 0; i < cfg.n; i++) {
      tunnel_cfg_describe(&cfg.t[i], err, sizeof(err));
      printf("  %s: %s\n", cfg.t[i].tag, err);
    }
    rc = EXIT_OK;
    goto done;
  }
  signal(SIGPIPE, SIG_IGN);
  loop = ev_default_loop(EVFLAG_AUTO);
  rc = app_run(loop, cfg.t, cfg.n, &metrics);
  ev_loop_destroy(loop);
  app_log_close();
done:
  for (i = 0; i < x.nwarn; i++)
    free(x.warn[i]);
  free(x.warn);
  config_free(&cfg);
  return rc;
}
