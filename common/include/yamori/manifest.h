/*
 * Release and rules-bundle manifests (docs/protocol.md, "Release
 * manifest"): parsing and the checks an agent makes before it downloads
 * anything.
 *
 * A manifest is a JSON object; it is trusted only after ym_sign_open() has
 * verified the envelope around it. Every check that fails names a distinct
 * reason (a static string) that the agent reports to the console.
 */
#ifndef YAMORI_MANIFEST_H
#define YAMORI_MANIFEST_H

#include "yamori/sign.h"

#include <stdbool.h>
#include <stdint.h>

#define YM_MANIFEST_PRODUCT_AGENT "yamori-agent"
#define YM_MANIFEST_PRODUCT_RULES "yamori-rules"
/* The company scope of a rules bundle made for every company. */
#define YM_MANIFEST_TENANT_ALL "*"

typedef struct {
  char product[32];  /* yamori-agent or yamori-rules */
  char platform[16]; /* linux */
  char arch[16];     /* x86_64, aarch64, any (rules) */
  char version[64];  /* [0-9A-Za-z._+-], not starting with '.': a directory name */
  uint64_t serial;   /* strictly increasing per product (and scope) */
  char channel[32];  /* stable, beta, ... */
  char scope[32];    /* rules: "default" or "tenant"; agent: "" */
  char tenant[64];   /* rules: the company (tenant name) or "*" for all; "" absent */
  uint64_t size;     /* package bytes */
  uint8_t sha256[32];
  char url[256];   /* path on the console, starts with /api/v1/ */
  int64_t expires; /* unix seconds */
  char key_id[YM_SIGN_ID_LEN + 1];
} ym_manifest_t;

/* Parses manifest JSON text (at most 16 KiB). Unknown members are ignored
 * (later versions may add some); every known one is checked for type and
 * bounds ("tenant": "*" or a tenant name of 1 to 63 characters of
 * [a-z0-9._-] starting with a letter or digit). Returns 0 or YM_EPARSE
 * with *reason "bad_manifest". */
int ym_manifest_parse(const char *text, size_t len, ym_manifest_t *m, const char **reason);

/* Writes manifest JSON text for m to out (pretty enough to read). */
int ym_manifest_write(const ym_manifest_t *m, ym_buf_t *out);

/* Opens a signed envelope with the trusted keys and parses its manifest
 * (ym_sign_open, then ym_manifest_parse; key_id is filled). Returns 0 or a
 * negative code with *reason one of "bad_envelope", "unknown_key",
 * "bad_signature", "bad_manifest". */
int ym_manifest_open(const char *envelope, size_t len, const ym_sign_pub_t *keys, size_t nkeys,
                     ym_manifest_t *m, const char **reason);

/* What the receiver expects. */
typedef struct {
  const char *product;
  const char *platform;
  const char *arch;   /* NULL: any */
  int64_t now;        /* unix seconds */
  uint64_t max_size;  /* largest package accepted */
  uint64_t accepted;  /* highest serial accepted so far (0: none) */
  const char *tenant; /* the receiver's company (rules); NULL: not checked */
} ym_manifest_expect_t;

/* Checks m against e, in this order: product ("wrong_product"), platform
 * ("wrong_platform"), architecture ("wrong_architecture"), company when
 * e->tenant is set (no "tenant" member: "no_tenant"; neither "*" nor
 * e->tenant: "wrong_tenant"), expiry ("expired"), size ("too_large"),
 * serial equal to the accepted one ("serial_replayed") or lower
 * ("serial_lower"). Returns 0 or YM_EPERM with *reason set. */
int ym_manifest_check(const ym_manifest_t *m, const ym_manifest_expect_t *e, const char **reason);

/* True when s is a usable version string (see ym_manifest_t.version). */
bool ym_manifest_version_ok(const char *s);

/* Parses "YYYY-MM-DDTHH:MM:SSZ" into unix seconds; -1 when malformed. */
int64_t ym_manifest_time(const char *s);

#endif
