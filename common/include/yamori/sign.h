/*
 * Ed25519 signatures (OpenSSL EVP_PKEY_ED25519) and the signed envelope
 * that carries release and rules manifests.
 *
 * Keys are stored as PEM files (PKCS#8 private key, SubjectPublicKeyInfo
 * public key), so `openssl pkey` reads them too. A key is named by its key
 * id: the first 8 bytes of SHA-256 over the raw 32-byte public key, in
 * lower-case hex (16 characters).
 *
 * The envelope is a JSON object (docs/protocol.md, "Signed manifests"):
 *   {"format": "yamori-signed-1", "key": "<key id>",
 *    "manifest": "<base64 of the manifest's exact bytes>",
 *    "sig": "<base64 of the 64-byte Ed25519 signature over those bytes>"}
 * The signature covers the manifest bytes as they are, so nothing is ever
 * canonicalised: the verifier checks the bytes, then parses them.
 */
#ifndef YAMORI_SIGN_H
#define YAMORI_SIGN_H

#include "yamori/buf.h"

#include <stddef.h>
#include <stdint.h>

#define YM_SIGN_KEY_LEN 32
#define YM_SIGN_SIG_LEN 64
#define YM_SIGN_ID_LEN 16
/* An envelope at most (its manifest at most 3/4 of it). */
#define YM_SIGN_ENVELOPE_MAX (64 * 1024)

typedef struct {
  uint8_t raw[YM_SIGN_KEY_LEN];
  char id[YM_SIGN_ID_LEN + 1];
} ym_sign_pub_t;

/* Makes a new key pair (raw 32-byte private seed and public key). Returns
 * 0 or YM_ECRYPTO. */
int ym_sign_keygen(uint8_t priv[YM_SIGN_KEY_LEN], uint8_t pub[YM_SIGN_KEY_LEN]);

/* Fills id (17 bytes with the NUL) with the key id of pub. */
void ym_sign_key_id(const uint8_t pub[YM_SIGN_KEY_LEN], char id[YM_SIGN_ID_LEN + 1]);

/* Signs msg[0..n) with the private key. Returns 0 or YM_ECRYPTO. */
int ym_sign_sign(const uint8_t priv[YM_SIGN_KEY_LEN], const void *msg, size_t n,
                 uint8_t sig[YM_SIGN_SIG_LEN]);

/* Returns 0 when sig is pub's signature of msg[0..n), YM_ECRYPTO
 * otherwise (a bad signature and an OpenSSL failure look the same: both
 * mean "not verified"). */
int ym_sign_verify(const uint8_t pub[YM_SIGN_KEY_LEN], const void *msg, size_t n,
                   const uint8_t sig[YM_SIGN_SIG_LEN]);

/* Writes a key as PEM to path, created with O_EXCL (an existing file is
 * never replaced: YM_EEXIST) and mode 0600 for the private key, 0644 for
 * the public one. Returns 0 or YM_E*. */
int ym_sign_write_private(const char *path, const uint8_t priv[YM_SIGN_KEY_LEN]);
int ym_sign_write_public(const char *path, const uint8_t pub[YM_SIGN_KEY_LEN]);

/* Reads a PEM key file (at most 16 KiB, no symlink followed). A private key
 * file whose mode lets group or others read it is refused (YM_EPERM).
 * Returns 0, YM_ENOENT, YM_EPERM, YM_EPARSE (not an Ed25519 key of that
 * kind) or YM_EIO. */
int ym_sign_read_private(const char *path, uint8_t priv[YM_SIGN_KEY_LEN]);
int ym_sign_read_public(const char *path, ym_sign_pub_t *out);

/* Reads every "*.pub" file directly in dir (at most max keys, sorted by
 * name; files that are not regular, not owned by root or by the caller's
 * user, or writable by group or others are skipped). Returns the number of
 * keys read (0 or more) or a negative YM_E* when dir cannot be read
 * (YM_EPERM when dir itself is writable by group or others or owned by
 * someone else: keys there could be planted). */
int ym_sign_load_keys(const char *dir, ym_sign_pub_t *keys, size_t max);

/* Builds the envelope of manifest[0..n) signed with priv. Returns 0,
 * YM_ECRYPTO, YM_ETOOBIG or YM_ENOMEM. */
int ym_sign_envelope(const uint8_t priv[YM_SIGN_KEY_LEN], const void *manifest, size_t n,
                     ym_buf_t *out);

/* Opens an envelope: checks its form, finds its key among keys[0..nkeys)
 * and verifies the signature. On success the manifest bytes are appended
 * to out (NUL-terminated by the buffer). On failure *reason (when not
 * NULL) is a static string: "bad_envelope", "unknown_key" or
 * "bad_signature", and the return value YM_EPARSE, YM_ENOENT or
 * YM_ECRYPTO respectively. */
int ym_sign_open(const char *envelope, size_t len, const ym_sign_pub_t *keys, size_t nkeys,
                 ym_buf_t *out, const char **reason);

/* Extracts the manifest bytes of an envelope WITHOUT verifying anything
 * (the console's `release import --unchecked`, and tools that show what
 * an envelope claims). Returns 0 or YM_EPARSE. */
int ym_sign_peek(const char *envelope, size_t len, ym_buf_t *out);

/* Base64 (RFC 4648, with padding) of p[0..n) appended to out. */
int ym_sign_b64(const void *p, size_t n, ym_buf_t *out);
/* Decodes strict base64 (padding required, no whitespace) into out, whose
 * room is cap bytes. Returns the decoded length, or YM_EPARSE / YM_ETOOBIG. */
long ym_sign_unb64(const char *s, size_t len, uint8_t *out, size_t cap);

#endif
