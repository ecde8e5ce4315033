/*
 * The manifest parser and verifier: arbitrary bytes as a signed envelope
 * (opened with a fixed trusted key, then checked) and as a bare manifest.
 */
#include "yamori/manifest.h"
#include "yamori/sign.h"

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ym_sign_pub_t key;
  static int init;
  if (!init) {
    /* A fixed key: seed 32 x 0x07 (the corpus envelope is signed with
     * it, so inputs near it reach the manifest checks). */
    uint8_t priv[YM_SIGN_KEY_LEN];
    memset(priv, 7, sizeof(priv));
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, sizeof(priv));
    size_t n = YM_SIGN_KEY_LEN;
    if (k != NULL && EVP_PKEY_get_raw_public_key(k, key.raw, &n) == 1)
      ym_sign_key_id(key.raw, key.id);
    EVP_PKEY_free(k);
    init = 1;
  }
  ym_manifest_t m;
  const char *why;
  if (ym_manifest_open((const char *)data, size, &key, 1, &m, &why) == 0) {
    ym_manifest_expect_t e = {YM_MANIFEST_PRODUCT_AGENT, "linux", "x86_64", 0, 1u << 30, 1, "acme"};
    ym_manifest_check(&m, &e, &why);
  }
  if (ym_manifest_parse((const char *)data, size, &m, &why) == 0) {
    ym_buf_t b;
    ym_buf_init(&b, 1 << 16);
    ym_manifest_write(&m, &b);
    ym_manifest_t again;
    ym_manifest_parse(b.data, b.len, &again, &why);
    ym_buf_free(&b);
  }
  ym_buf_t b;
  ym_buf_init(&b, YM_SIGN_ENVELOPE_MAX);
  ym_sign_peek((const char *)data, size, &b);
  ym_buf_free(&b);
  uint8_t out[256];
  ym_sign_unb64((const char *)data, size, out, sizeof(out));
  return 0;
}
