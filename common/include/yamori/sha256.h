/*
 * SHA-256 through OpenSSL's EVP interface, streaming.
 */
#ifndef YAMORI_SHA256_H
#define YAMORI_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define YM_SHA256_LEN 32
#define YM_SHA256_HEX_LEN 64

/* Hashes the file open as fd from offset 0 to its end, reading it in
 * chunks with pread() (the fd's offset is not moved, nothing is mapped and
 * the whole file is never held in memory). Stops with YM_ETOOBIG after
 * max_bytes (0: no limit). *nread, when not NULL, receives the number of
 * bytes hashed. Returns 0, YM_EIO (read error), YM_ETOOBIG or YM_ECRYPTO. */
int ym_sha256_fd(int fd, uint64_t max_bytes, uint8_t out[YM_SHA256_LEN], uint64_t *nread);

/* Hashes a memory block. Returns 0 or YM_ECRYPTO. */
int ym_sha256_mem(const void *p, size_t n, uint8_t out[YM_SHA256_LEN]);

/* Writes the lower-case hex form of n bytes to hex (2n+1 bytes with NUL). */
void ym_hex(const uint8_t *p, size_t n, char *hex);

#endif
