/*
 * The console's certificates: on first start a private CA and a server
 * certificate signed by it are created in the data directory; later starts
 * load them. Agents do not trust the CA: they pin the server key (SPKI
 * SHA-256), which the enrollment token carries.
 */
#ifndef YAMORI_CONSOLE_CERTS_H
#define YAMORI_CONSOLE_CERTS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char cert_file[1024]; /* server certificate + CA, PEM */
  char key_file[1024];  /* server private key, PEM, 0600 */
  char ca_file[1024];   /* CA certificate, PEM */
  char pin[128];        /* "sha256//" + base64 of SHA-256(SubjectPublicKeyInfo) */
  bool created;         /* made now (first start) */
} certs_t;

/* Loads dir's certificates, creating them when missing (CA: ECDSA P-256,
 * 10 years; server: ECDSA P-256, 2 years, SAN localhost, 127.0.0.1, ::1,
 * the host name and each of extra_names). Files are 0600, the directory
 * 0700. Returns 0 or a YM_E* code. */
int certs_ensure(const char *dir, const char *const *extra_names, size_t n_extra, certs_t *out);

/* The SPKI pin of the certificate in a PEM file (for configured files). */
int certs_pin_of(const char *cert_file, char *pin, size_t len);

#endif
