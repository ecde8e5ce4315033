#include "yamori/sha256.h"

#include "yamori/err.h"

#include <errno.h>
#include <openssl/evp.h>
#include <unistd.h>

#define CHUNK (128 * 1024)

int ym_sha256_fd(int fd, uint64_t max_bytes, uint8_t out[YM_SHA256_LEN], uint64_t *nread) {
  static _Thread_local unsigned char chunk[CHUNK];
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int rc = YM_ECRYPTO;
  uint64_t off = 0;
  if (ctx == NULL)
    return YM_ENOMEM;
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
    goto out_free;
  for (;;) {
    ssize_t n = pread(fd, chunk, sizeof(chunk), (off_t)off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = YM_EIO;
      goto out_free;
    }
    if (n == 0)
      break;
    if (max_bytes != 0 && off + (uint64_t)n > max_bytes) {
      rc = YM_ETOOBIG;
      goto out_free;
    }
    if (EVP_DigestUpdate(ctx, chunk, (size_t)n) != 1)
      goto out_free;
    off += (uint64_t)n;
  }
  if (EVP_DigestFinal_ex(ctx, out, NULL) != 1)
    goto out_free;
  rc = 0;
out_free:
  if (nread != NULL)
    *nread = off;
  EVP_MD_CTX_free(ctx);
  return rc;
}

int ym_sha256_mem(const void *p, size_t n, uint8_t out[YM_SHA256_LEN]) {
  return EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : YM_ECRYPTO;
}

void ym_hex(const uint8_t *p, size_t n, char *hex) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    hex[2 * i] = digits[p[i] >> 4];
    hex[2 * i + 1] = digits[p[i] & 15];
  }
  hex[2 * n] = '\0';
}
