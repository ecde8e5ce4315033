#include "yamori/sign.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX (16 * 1024)
#define ENVELOPE_FORMAT "yamori-signed-1"

int ym_sign_keygen(uint8_t priv[YM_SIGN_KEY_LEN], uint8_t pub[YM_SIGN_KEY_LEN]) {
  if (RAND_priv_bytes(priv, YM_SIGN_KEY_LEN) != 1)
    return YM_ECRYPTO;
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, YM_SIGN_KEY_LEN);
  size_t n = YM_SIGN_KEY_LEN;
  int ok = k != NULL && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == YM_SIGN_KEY_LEN;
  EVP_PKEY_free(k);
  return ok ? 0 : YM_ECRYPTO;
}

void ym_sign_key_id(const uint8_t pub[YM_SIGN_KEY_LEN], char id[YM_SIGN_ID_LEN + 1]) {
  uint8_t d[YM_SHA256_LEN];
  if (ym_sha256_mem(pub, YM_SIGN_KEY_LEN, d) != 0)
    memset(d, 0, sizeof(d));
  ym_hex(d, YM_SIGN_ID_LEN / 2, id);
}

int ym_sign_sign(const uint8_t priv[YM_SIGN_KEY_LEN], const void *msg, size_t n,
                 uint8_t sig[YM_SIGN_SIG_LEN]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, YM_SIGN_KEY_LEN);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  size_t siglen = YM_SIGN_SIG_LEN;
  int ok = k != NULL && ctx != NULL && EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) == 1 &&
           EVP_DigestSign(ctx, sig, &siglen, msg, n) == 1 && siglen == YM_SIGN_SIG_LEN;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(k);
  return ok ? 0 : YM_ECRYPTO;
}

int ym_sign_verify(const uint8_t pub[YM_SIGN_KEY_LEN], const void *msg, size_t n,
                   const uint8_t sig[YM_SIGN_SIG_LEN]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, YM_SIGN_KEY_LEN);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = k != NULL && ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k) == 1 &&
           EVP_DigestVerify(ctx, sig, YM_SIGN_SIG_LEN, msg, n) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(k);
  return ok ? 0 : YM_ECRYPTO;
}

/* ---------------------------------------------------------------- */
/* Key files                                                          */

static int write_pem(const char *path, EVP_PKEY *k, bool priv) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, priv ? 0600 : 0644);
  if (fd < 0)
    return ym_err_from_errno(errno);
  BIO *b = BIO_new(BIO_s_mem());
  int rc = YM_ECRYPTO;
  if (b != NULL && (priv ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PUBKEY(b, k)) == 1) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    rc = n > 0 && write(fd, p, (size_t)n) == n && fsync(fd) == 0 ? 0 : YM_EIO;
  }
  BIO_free(b);
  close(fd);
  if (rc != 0)
    unlink(path);
  return rc;
}

int ym_sign_write_private(const char *path, const uint8_t priv[YM_SIGN_KEY_LEN]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, YM_SIGN_KEY_LEN);
  int rc = k ? write_pem(path, k, true) : YM_ECRYPTO;
  EVP_PKEY_free(k);
  return rc;
}

int ym_sign_write_public(const char *path, const uint8_t pub[YM_SIGN_KEY_LEN]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, YM_SIGN_KEY_LEN);
  int rc = k ? write_pem(path, k, false) : YM_ECRYPTO;
  EVP_PKEY_free(k);
  return rc;
}

/* Reads a small file without following a symlink; *st receives its
 * status. */
static int read_key_file(const char *path, ym_buf_t *b, struct stat *st) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return ym_err_from_errno(errno);
  int rc = 0;
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode))
    rc = YM_EPERM;
  else if (st->st_size > KEY_FILE_MAX)
    rc = YM_ETOOBIG;
  char chunk[4096];
  while (rc == 0) {
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      rc = YM_EIO;
    if (n <= 0)
      break;
    rc = ym_buf_append(b, chunk, (size_t)n);
  }
  close(fd);
  return rc;
}

static EVP_PKEY *parse_pem(const ym_buf_t *b, bool priv) {
  if (b->len == 0)
    return NULL;
  BIO *bio = BIO_new_mem_buf(b->data, (int)b->len);
  if (bio == NULL)
    return NULL;
  EVP_PKEY *k = priv ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                     : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (k != NULL && EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(k);
    k = NULL;
  }
  return k;
}

int ym_sign_read_private(const char *path, uint8_t priv[YM_SIGN_KEY_LEN]) {
  ym_buf_t b;
  struct stat st;
  ym_buf_init(&b, KEY_FILE_MAX);
  int rc = read_key_file(path, &b, &st);
  if (rc == 0 && (st.st_mode & 077) != 0)
    rc = YM_EPERM;
  if (rc == 0) {
    EVP_PKEY *k = parse_pem(&b, true);
    size_t n = YM_SIGN_KEY_LEN;
    if (k == NULL || EVP_PKEY_get_raw_private_key(k, priv, &n) != 1 || n != YM_SIGN_KEY_LEN)
      rc = YM_EPARSE;
    EVP_PKEY_free(k);
  }
  if (b.data != NULL)
    OPENSSL_cleanse(b.data, b.len);
  ym_buf_free(&b);
  return rc;
}

int ym_sign_read_public(const char *path, ym_sign_pub_t *out) {
  ym_buf_t b;
  struct stat st;
  ym_buf_init(&b, KEY_FILE_MAX);
  int rc = read_key_file(path, &b, &st);
  if (rc == 0) {
    EVP_PKEY *k = parse_pem(&b, false);
    size_t n = YM_SIGN_KEY_LEN;
    if (k == NULL || EVP_PKEY_get_raw_public_key(k, out->raw, &n) != 1 || n != YM_SIGN_KEY_LEN)
      rc = YM_EPARSE;
    else
      ym_sign_key_id(out->raw, out->id);
    EVP_PKEY_free(k);
  }
  ym_buf_free(&b);
  return rc;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int ym_sign_load_keys(const char *dir, ym_sign_pub_t *keys, size_t max) {
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return ym_err_from_errno(errno);
  struct stat dst;
  /* A directory others can add keys to is not a trust anchor. */
  if (fstat(dfd, &dst) != 0 || (dst.st_mode & 022) != 0 ||
      (dst.st_uid != 0 && dst.st_uid != getuid())) {
    close(dfd);
    return YM_EPERM;
  }
  DIR *d = fdopendir(dfd);
  if (d == NULL) {
    close(dfd);
    return ym_err_from_errno(errno);
  }
  char *names[64];
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL && n < 64) {
    size_t l = strlen(de->d_name);
    if (de->d_name[0] == '.' || l < 5 || strcmp(de->d_name + l - 4, ".pub") != 0)
      continue;
    names[n] = strdup(de->d_name);
    if (names[n] != NULL)
      n++;
  }
  closedir(d);
  qsort(names, n, sizeof(char *), cmp_str);
  size_t got = 0;
  for (size_t i = 0; i < n; i++) {
    char path[4352];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    free(names[i]);
    /* Only files nobody but their owner (root or us) can change. */
    if (got >= max || lstat(path, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 022) != 0 ||
        (st.st_uid != 0 && st.st_uid != getuid()))
      continue;
    if (ym_sign_read_public(path, &keys[got]) == 0)
      got++;
  }
  return (int)got;
}

/* ---------------------------------------------------------------- */
/* Base64                                                             */

int ym_sign_b64(const void *p, size_t n, ym_buf_t *out) {
  size_t need = 4 * ((n + 2) / 3);
  int rc = ym_buf_reserve(out, need + 1);
  if (rc != 0)
    return rc;
  int w = EVP_EncodeBlock((unsigned char *)out->data + out->len, p, (int)n);
  if (w < 0 || (size_t)w != need)
    return YM_ECRYPTO;
  out->len += need;
  out->data[out->len] = '\0';
  return 0;
}

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

long ym_sign_unb64(const char *s, size_t len, uint8_t *out, size_t cap) {
  if (len % 4 != 0)
    return YM_EPARSE;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; j++) {
      unsigned char c = (unsigned char)s[i + (size_t)j];
      if (c == '=' && i + 4 == len && j >= 2) {
        v[j] = 0;
        pad++;
        continue;
      }
      if (pad > 0 || (v[j] = b64val(c)) < 0)
        return YM_EPARSE;
    }
    uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    size_t k = (size_t)(3 - pad);
    if (o + k > cap)
      return YM_ETOOBIG;
    out[o++] = (uint8_t)(x >> 16);
    if (k > 1)
      out[o++] = (uint8_t)(x >> 8);
    if (k > 2)
      out[o++] = (uint8_t)x;
  }
  return (long)o;
}

/* ---------------------------------------------------------------- */
/* Envelope                                                           */

int ym_sign_envelope(const uint8_t priv[YM_SIGN_KEY_LEN], const void *manifest, size_t n,
                     ym_buf_t *out) {
  uint8_t pub[YM_SIGN_KEY_LEN], sig[YM_SIGN_SIG_LEN];
  char id[YM_SIGN_ID_LEN + 1];
  if (n > YM_SIGN_ENVELOPE_MAX / 2)
    return YM_ETOOBIG;
  EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, YM_SIGN_KEY_LEN);
  size_t pl = YM_SIGN_KEY_LEN;
  int ok = k != NULL && EVP_PKEY_get_raw_public_key(k, pub, &pl) == 1;
  EVP_PKEY_free(k);
  if (!ok || ym_sign_sign(priv, manifest, n, sig) != 0)
    return YM_ECRYPTO;
  ym_sign_key_id(pub, id);
  int rc =
      ym_buf_appendf(out, "{\"format\":\"%s\",\"key\":\"%s\",\"manifest\":\"", ENVELOPE_FORMAT, id);
  if (rc == 0)
    rc = ym_sign_b64(manifest, n, out);
  if (rc == 0)
    rc = ym_buf_append_str(out, "\",\"sig\":\"");
  if (rc == 0)
    rc = ym_sign_b64(sig, sizeof(sig), out);
  if (rc == 0)
    rc = ym_buf_append_str(out, "\"}\n");
  return rc;
}

int ym_sign_open(const char *envelope, size_t len, const ym_sign_pub_t *keys, size_t nkeys,
                 ym_buf_t *out, const char **reason) {
  const char *why = "bad_envelope";
  int rc = YM_EPARSE;
  cJSON *j = NULL;
  uint8_t *m = NULL;
  if (ym_json_parse(envelope, len, YM_SIGN_ENVELOPE_MAX, &j, NULL) != 0 || !cJSON_IsObject(j))
    goto out;
  const char *fmt = ym_json_get_str(j, "format");
  const char *key = ym_json_get_str(j, "key");
  const char *man = ym_json_get_str(j, "manifest");
  const char *sig = ym_json_get_str(j, "sig");
  if (fmt == NULL || strcmp(fmt, ENVELOPE_FORMAT) != 0 || key == NULL || man == NULL || sig == NULL)
    goto out;
  uint8_t s[YM_SIGN_SIG_LEN];
  if (ym_sign_unb64(sig, strlen(sig), s, sizeof(s)) != YM_SIGN_SIG_LEN)
    goto out;
  size_t mlen = strlen(man);
  m = malloc(mlen / 4 * 3 + 1);
  long n = m ? ym_sign_unb64(man, mlen, m, mlen / 4 * 3) : YM_ENOMEM;
  if (n <= 0)
    goto out;
  const ym_sign_pub_t *k = NULL;
  for (size_t i = 0; i < nkeys && k == NULL; i++)
    if (strcmp(keys[i].id, key) == 0)
      k = &keys[i];
  if (k == NULL) {
    why = "unknown_key";
    rc = YM_ENOENT;
    goto out;
  }
  if (ym_sign_verify(k->raw, m, (size_t)n, s) != 0) {
    why = "bad_signature";
    rc = YM_ECRYPTO;
    goto out;
  }
  rc = ym_buf_append(out, m, (size_t)n);
  why = rc == 0 ? NULL : "bad_envelope";
out:
  free(m);
  cJSON_Delete(j);
  if (reason != NULL)
    *reason = why;
  return rc;
}

int ym_sign_peek(const char *envelope, size_t len, ym_buf_t *out) {
  cJSON *j = NULL;
  int rc = YM_EPARSE;
  if (ym_json_parse(envelope, len, YM_SIGN_ENVELOPE_MAX, &j, NULL) == 0) {
    const char *man = ym_json_get_str(j, "manifest");
    size_t mlen = man ? strlen(man) : 0;
    uint8_t *m = man ? malloc(mlen / 4 * 3 + 1) : NULL;
    long n = m ? ym_sign_unb64(man, mlen, m, mlen / 4 * 3) : YM_EPARSE;
    if (n > 0)
      rc = ym_buf_append(out, m, (size_t)n);
    free(m);
  }
  cJSON_Delete(j);
  return rc;
}
