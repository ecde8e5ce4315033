/*
 * The console's certificates (see certs.h).
 *
 * On first start certs_ensure() creates, in this order: ca.key, ca.pem,
 * server.key and server.pem (the server certificate followed by the CA
 * certificate). Each file is written under a temporary name, synced, given
 * mode 0600 and renamed into place, and the directory is synced, so a crash
 * leaves every file either complete or absent. server.pem is written last:
 * when it exists the set is complete, and later starts load it as it is
 * (the server key must be there too and must match). When server.pem is
 * missing, the server pair is (re)made, signed by the existing CA when both
 * ca.pem and ca.key are present, by a new CA when ca.pem is missing (a first
 * start that was interrupted before any pin could be handed out).
 *
 * Keys are ECDSA P-256, signatures SHA-256, serial numbers 127 random bits,
 * notBefore one hour in the past to tolerate clock skew between the
 * console and its agents.
 */
#include "certs.h"

#include "yamori/err.h"
#include "yamori/sha256.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CA_DAYS 3650
#define SERVER_DAYS 730
#define CLOCK_SKEW_S 3600
#define SERIAL_BYTES 16
#define DNS_NAME_MAX 253
#define CN_MAX 64
/* Subject alternative names at most (the fixed four plus extra names). */
#define SAN_MAX 64

/* ---------------------------------------------------------------- */
/* Files                                                              */

static int join(char *out, size_t size, const char *dir, const char *name) {
  int n = snprintf(out, size, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= size)
    return YM_ETOOBIG;
  return 0;
}

/* Returns 1 when path exists, 0 when it does not, or a YM_E* code when it
 * cannot be checked. */
static int file_exists(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0)
    return S_ISREG(st.st_mode) ? 1 : YM_EINVAL;
  return errno == ENOENT ? 0 : ym_err_from_errno(errno);
}

typedef int (*emit_fn)(FILE *f, const void *arg);

/* Writes path atomically with mode 0600: emit() fills a temporary file in
 * the same directory, which is synced and renamed over path; then the
 * directory is synced. On error the temporary file is removed and path is
 * untouched. */
static int write_atomic(const char *dir, const char *path, emit_fn emit, const void *arg) {
  char tmp[PATH_MAX];
  int n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
  if (n < 0 || (size_t)n >= sizeof(tmp))
    return YM_ETOOBIG;
  int fd = mkstemp(tmp);
  if (fd < 0)
    return ym_err_from_errno(errno);
  int rc = 0;
  FILE *f = NULL;
  if (fchmod(fd, 0600) != 0) {
    rc = ym_err_from_errno(errno);
    close(fd);
    goto out_unlink;
  }
  f = fdopen(fd, "w");
  if (f == NULL) {
    rc = ym_err_from_errno(errno);
    close(fd);
    goto out_unlink;
  }
  rc = emit(f, arg);
  if (rc == 0 && fflush(f) != 0)
    rc = ym_err_from_errno(errno);
  if (rc == 0 && fsync(fileno(f)) != 0)
    rc = ym_err_from_errno(errno);
  if (fclose(f) != 0 && rc == 0)
    rc = ym_err_from_errno(errno);
  if (rc != 0)
    goto out_unlink;
  if (rename(tmp, path) != 0) {
    rc = ym_err_from_errno(errno);
    goto out_unlink;
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync(dfd) != 0)
      rc = ym_err_from_errno(errno);
    close(dfd);
  }
  return rc;

out_unlink:
  unlink(tmp);
  return rc;
}

static int emit_key(FILE *f, const void *arg) {
  EVP_PKEY *key = (EVP_PKEY *)arg;
  return PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1 ? 0 : YM_ECRYPTO;
}

static int emit_cert(FILE *f, const void *arg) {
  return PEM_write_X509(f, (X509 *)arg) == 1 ? 0 : YM_ECRYPTO;
}

typedef struct {
  X509 *leaf;
  X509 *ca;
} chain_t;

static int emit_chain(FILE *f, const void *arg) {
  const chain_t *c = arg;
  if (PEM_write_X509(f, c->leaf) != 1 || PEM_write_X509(f, c->ca) != 1)
    return YM_ECRYPTO;
  return 0;
}

/* Refuses to prompt for a pass phrase: the console's keys are not
 * encrypted, and a console must never wait on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return -1;
}

/* Loads the first certificate of a PEM file. Returns 0, a code from the
 * file error (YM_ENOENT, YM_EPERM, ...) or YM_EPARSE. */
static int load_cert(const char *path, X509 **out) {
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return ym_err_from_errno(errno);
  *out = PEM_read_X509(f, NULL, no_passphrase, NULL);
  fclose(f);
  ERR_clear_error();
  return *out != NULL ? 0 : YM_EPARSE;
}

static int load_key(const char *path, EVP_PKEY **out) {
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return ym_err_from_errno(errno);
  *out = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
  fclose(f);
  ERR_clear_error();
  return *out != NULL ? 0 : YM_EPARSE;
}

/* ---------------------------------------------------------------- */
/* Names                                                              */

/* Returns true for a host name that may go into a dNSName: dot-separated
 * labels of letters, digits and inner hyphens, 1..63 bytes each, at most
 * 253 bytes in all. */
static bool dns_name_valid(const char *s) {
  size_t len = strlen(s);
  if (len == 0 || len > DNS_NAME_MAX)
    return false;
  size_t label = 0;
  for (size_t i = 0; i <= len; i++) {
    char c = s[i];
    if (c == '.' || c == '\0') {
      if (label == 0 || label > 63 || s[i - 1] == '-')
        return false;
      label = 0;
      continue;
    }
    if (!(isalnum((unsigned char)c) || (c == '-' && label > 0)))
      return false;
    label++;
  }
  return true;
}

typedef struct {
  GENERAL_NAMES *gens;
  char *seen[SAN_MAX]; /* canonical forms already added */
  size_t n;
} san_t;

/* Adds name once: an IPv4 or IPv6 literal as iPAddress, anything else as
 * a lower-cased dNSName (which must be valid). */
static int san_add(san_t *san, const char *name) {
  unsigned char ip[16];
  char canon[DNS_NAME_MAX + 1];
  int ip_len = 0;
  if (inet_pton(AF_INET, name, ip) == 1)
    ip_len = 4;
  else if (inet_pton(AF_INET6, name, ip) == 1)
    ip_len = 16;
  if (ip_len != 0) {
    char text[INET6_ADDRSTRLEN];
    if (inet_ntop(ip_len == 4 ? AF_INET : AF_INET6, ip, text, sizeof(text)) == NULL)
      return YM_EINVAL;
    snprintf(canon, sizeof(canon), "ip:%s", text);
  } else {
    if (!dns_name_valid(name))
      return YM_EINVAL;
    size_t i = 0;
    for (; name[i] != '\0'; i++)
      canon[i] = (char)tolower((unsigned char)name[i]);
    canon[i] = '\0';
  }
  for (size_t i = 0; i < san->n; i++)
    if (strcmp(san->seen[i], canon) == 0)
      return 0;
  if (san->n == SAN_MAX)
    return YM_ETOOBIG;

  GENERAL_NAME *g = GENERAL_NAME_new();
  ASN1_STRING *v = ip_len != 0 ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
  char *copy = strdup(canon);
  if (g == NULL || v == NULL || copy == NULL)
    goto out_nomem;
  if (ip_len != 0) {
    if (ASN1_OCTET_STRING_set(v, ip, ip_len) != 1)
      goto out_nomem;
    GENERAL_NAME_set0_value(g, GEN_IPADD, v);
  } else {
    if (ASN1_STRING_set(v, canon, -1) != 1)
      goto out_nomem;
    GENERAL_NAME_set0_value(g, GEN_DNS, v);
  }
  v = NULL;
  if (sk_GENERAL_NAME_push(san->gens, g) <= 0)
    goto out_nomem;
  san->seen[san->n++] = copy;
  return 0;

out_nomem:
  GENERAL_NAME_free(g);
  ASN1_STRING_free(v);
  free(copy);
  return YM_ENOMEM;
}

static void san_free(san_t *san) {
  GENERAL_NAMES_free(san->gens);
  for (size_t i = 0; i < san->n; i++)
    free(san->seen[i]);
}

/* True for an IP literal or a valid DNS name. */
static bool name_valid(const char *name) {
  unsigned char ip[16];
  return name != NULL && (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1 ||
                          dns_name_valid(name));
}

/* The machine's host name when it is a valid DNS name, else NULL. */
static const char *host_name(char *buf, size_t size) {
  if (gethostname(buf, size) != 0)
    return NULL;
  buf[size - 1] = '\0';
  return dns_name_valid(buf) ? buf : NULL;
}

/* ---------------------------------------------------------------- */
/* Certificates                                                       */

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
  if (ext == NULL)
    return YM_ECRYPTO;
  int ok = X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1 ? 0 : YM_ECRYPTO;
}

static int set_serial(X509 *x) {
  unsigned char b[SERIAL_BYTES];
  if (RAND_bytes(b, sizeof(b)) != 1)
    return YM_ECRYPTO;
  b[0] &= 0x7f; /* positive */
  b[0] |= 0x40; /* and never shorter than the other certificates' */
  BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
  if (bn == NULL)
    return YM_ENOMEM;
  int ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
  BN_free(bn);
  return ok ? 0 : YM_ECRYPTO;
}

static int set_name(X509_NAME *n, const char *cn) {
  if (X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Yamori", -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) != 1)
    return YM_ECRYPTO;
  return 0;
}

/* Starts a version 3 certificate for key valid from an hour ago for days
 * days, with a random serial and the given subject common name. */
static int cert_begin(EVP_PKEY *key, long days, const char *cn, X509 **out) {
  X509 *x = X509_new();
  if (x == NULL)
    return YM_ENOMEM;
  int rc = YM_ECRYPTO;
  if (X509_set_version(x, X509_VERSION_3) != 1)
    goto out_free;
  if ((rc = set_serial(x)) != 0)
    goto out_free;
  rc = YM_ECRYPTO;
  if (X509_gmtime_adj(X509_getm_notBefore(x), -CLOCK_SKEW_S) == NULL ||
      X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) == NULL)
    goto out_free;
  if (X509_set_pubkey(x, key) != 1)
    goto out_free;
  if ((rc = set_name(X509_get_subject_name(x), cn)) != 0)
    goto out_free;
  *out = x;
  return 0;

out_free:
  X509_free(x);
  return rc;
}

static int make_key(EVP_PKEY **out) {
  *out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  return *out != NULL ? 0 : YM_ECRYPTO;
}

static int make_ca(EVP_PKEY *key, X509 **out) {
  unsigned char r[4];
  char cn[CN_MAX];
  if (RAND_bytes(r, sizeof(r)) != 1)
    return YM_ECRYPTO;
  snprintf(cn, sizeof(cn), "Yamori Console CA %02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
  X509 *x = NULL;
  int rc = cert_begin(key, CA_DAYS, cn, &x);
  if (rc != 0)
    return rc;
  rc = YM_ECRYPTO;
  if (X509_set_issuer_name(x, X509_get_subject_name(x)) != 1)
    goto out_free;
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
  if ((rc = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE")) != 0 ||
      (rc = add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign")) != 0 ||
      (rc = add_ext(x, &ctx, NID_subject_key_identifier, "hash")) != 0 ||
      (rc = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always")) != 0)
    goto out_free;
  rc = YM_ECRYPTO;
  if (X509_sign(x, key, EVP_sha256()) <= 0)
    goto out_free;
  *out = x;
  return 0;

out_free:
  X509_free(x);
  return rc;
}

static int make_server(EVP_PKEY *key, X509 *ca, EVP_PKEY *ca_key, const char *const *extra,
                       size_t n_extra, X509 **out) {
  char host[DNS_NAME_MAX + 2];
  const char *hn = host_name(host, sizeof(host));
  san_t san = {.gens = sk_GENERAL_NAME_new_null()};
  if (san.gens == NULL)
    return YM_ENOMEM;
  int rc;
  if ((rc = san_add(&san, "localhost")) != 0 || (rc = san_add(&san, "127.0.0.1")) != 0 ||
      (rc = san_add(&san, "::1")) != 0 || (hn != NULL && (rc = san_add(&san, hn)) != 0))
    goto out_san;
  for (size_t i = 0; i < n_extra; i++) {
    if (extra[i] == NULL || (rc = san_add(&san, extra[i])) != 0) {
      rc = rc != 0 ? rc : YM_EINVAL;
      goto out_san;
    }
  }

  X509 *x = NULL;
  const char *cn = hn != NULL && strlen(hn) < CN_MAX ? hn : "localhost";
  if ((rc = cert_begin(key, SERVER_DAYS, cn, &x)) != 0)
    goto out_san;
  rc = YM_ECRYPTO;
  if (X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1)
    goto out_free;
  /* A server certificate never outlives its CA. */
  if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0 &&
      X509_set1_notAfter(x, X509_get0_notAfter(ca)) != 1)
    goto out_free;
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca, x, NULL, NULL, 0);
  if ((rc = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE")) != 0 ||
      (rc = add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature")) != 0 ||
      (rc = add_ext(x, &ctx, NID_ext_key_usage, "serverAuth")) != 0 ||
      (rc = add_ext(x, &ctx, NID_subject_key_identifier, "hash")) != 0 ||
      (rc = add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always")) != 0)
    goto out_free;
  rc = YM_ECRYPTO;
  if (X509_add1_ext_i2d(x, NID_subject_alt_name, san.gens, 0, X509V3_ADD_DEFAULT) != 1)
    goto out_free;
  if (X509_sign(x, ca_key, EVP_sha256()) <= 0)
    goto out_free;
  *out = x;
  san_free(&san);
  return 0;

out_free:
  X509_free(x);
out_san:
  san_free(&san);
  return rc;
}

/* ---------------------------------------------------------------- */
/* Pins                                                               */

static int pin_of_x509(X509 *x, char *pin, size_t len) {
  EVP_PKEY *pub = X509_get0_pubkey(x);
  unsigned char *der = NULL;
  int n = pub != NULL ? i2d_PUBKEY(pub, &der) : -1;
  if (n <= 0)
    return YM_ECRYPTO;
  uint8_t md[YM_SHA256_LEN];
  int rc = ym_sha256_mem(der, (size_t)n, md);
  OPENSSL_free(der);
  if (rc != 0)
    return rc;
  unsigned char b64[((YM_SHA256_LEN + 2) / 3) * 4 + 1];
  EVP_EncodeBlock(b64, md, YM_SHA256_LEN);
  int w = snprintf(pin, len, "sha256//%s", (const char *)b64);
  if (w < 0 || (size_t)w >= len)
    return YM_ETOOBIG;
  return 0;
}

int certs_pin_of(const char *cert_file, char *pin, size_t len) {
  if (cert_file == NULL || pin == NULL || len == 0)
    return YM_EINVAL;
  X509 *x = NULL;
  int rc = load_cert(cert_file, &x);
  if (rc != 0)
    return rc;
  rc = pin_of_x509(x, pin, len);
  X509_free(x);
  return rc;
}

/* ---------------------------------------------------------------- */
/* certs_ensure                                                       */

/* Loads the existing server pair and checks that the key belongs to the
 * certificate. */
static int load_server(const certs_t *c) {
  X509 *x = NULL;
  EVP_PKEY *key = NULL;
  int rc = load_cert(c->cert_file, &x);
  if (rc != 0)
    return rc;
  if ((rc = load_key(c->key_file, &key)) != 0)
    goto out;
  if (X509_check_private_key(x, key) != 1) {
    ERR_clear_error();
    rc = YM_ECORRUPT;
  }
out:
  EVP_PKEY_free(key);
  X509_free(x);
  return rc;
}

/* Loads the CA pair when ca.pem exists, or makes and writes a new one. */
static int ensure_ca(const char *dir, const char *ca_key_file, const certs_t *c, X509 **ca,
                     EVP_PKEY **ca_key) {
  int rc = file_exists(c->ca_file);
  if (rc < 0)
    return rc;
  if (rc == 1) {
    if ((rc = load_cert(c->ca_file, ca)) != 0)
      return rc;
    if ((rc = load_key(ca_key_file, ca_key)) != 0)
      return rc;
    if (X509_check_private_key(*ca, *ca_key) != 1) {
      ERR_clear_error();
      return YM_ECORRUPT;
    }
    return 0;
  }
  if ((rc = make_key(ca_key)) != 0 || (rc = make_ca(*ca_key, ca)) != 0)
    return rc;
  if ((rc = write_atomic(dir, ca_key_file, emit_key, *ca_key)) != 0)
    return rc;
  return write_atomic(dir, c->ca_file, emit_cert, *ca);
}

int certs_ensure(const char *dir, const char *const *extra_names, size_t n_extra, certs_t *out) {
  if (dir == NULL || out == NULL || (n_extra > 0 && extra_names == NULL) || n_extra > SAN_MAX - 4)
    return YM_EINVAL;
  for (size_t i = 0; i < n_extra; i++)
    if (!name_valid(extra_names[i]))
      return YM_EINVAL;
  certs_t c;
  memset(&c, 0, sizeof(c));
  char ca_key_file[sizeof(c.ca_file)];
  int rc;
  if ((rc = join(c.cert_file, sizeof(c.cert_file), dir, "server.pem")) != 0 ||
      (rc = join(c.key_file, sizeof(c.key_file), dir, "server.key")) != 0 ||
      (rc = join(c.ca_file, sizeof(c.ca_file), dir, "ca.pem")) != 0 ||
      (rc = join(ca_key_file, sizeof(ca_key_file), dir, "ca.key")) != 0)
    return rc;

  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return ym_err_from_errno(errno);
  struct stat st;
  if (stat(dir, &st) != 0)
    return ym_err_from_errno(errno);
  if (!S_ISDIR(st.st_mode))
    return YM_EINVAL;

  rc = file_exists(c.cert_file);
  if (rc < 0)
    return rc;
  if (rc == 1) {
    if ((rc = load_server(&c)) != 0)
      return rc;
  } else {
    X509 *ca = NULL, *leaf = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    chain_t chain;
    if ((rc = ensure_ca(dir, ca_key_file, &c, &ca, &ca_key)) != 0 || (rc = make_key(&key)) != 0 ||
        (rc = make_server(key, ca, ca_key, extra_names, n_extra, &leaf)) != 0 ||
        (rc = write_atomic(dir, c.key_file, emit_key, key)) != 0)
      goto out_free;
    chain = (chain_t){leaf, ca};
    rc = write_atomic(dir, c.cert_file, emit_chain, &chain);
    c.created = rc == 0;
  out_free:
    X509_free(leaf);
    EVP_PKEY_free(key);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    ERR_clear_error();
    if (rc != 0)
      return rc;
  }
  if ((rc = certs_pin_of(c.cert_file, c.pin, sizeof(c.pin))) != 0)
    return rc;
  *out = c;
  return 0;
}
