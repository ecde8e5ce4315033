/*
 * The agent's identity with the console.
 *
 * An agent is known to one console by an agent id and a secret, which it
 * receives by enrolling with an enrollment token (docs/protocol.md). The
 * token also carries the console's URL and the pin of its public key, which
 * is the only trust anchor: the console's certificate is checked against
 * the pin, never against a certificate authority.
 *
 * The identity lives in state_dir/identity.json (mode 0600, owned by the
 * user the agent runs as, root), written atomically. The enrollment part
 * of the token ("<token id>.<token secret>") is kept in it so that the
 * agent can enroll again by itself when the console stops accepting its
 * secret.
 *
 * Secrets (the agent secret and the token) are never written into error
 * messages, logs or stdout; every message this module produces is safe to
 * show.
 */
#ifndef YAMORI_AGENT_IDENTITY_H
#define YAMORI_AGENT_IDENTITY_H

#include "yamori/buf.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#define IDENTITY_TOKEN_MAX 4096 /* the whole "ymt1." token */
#define IDENTITY_URL_MAX 256    /* the console's base URL */
#define IDENTITY_PIN_LEN 52     /* "sha256//" + 44 base64 characters */
#define IDENTITY_TOK_LEN 60     /* 16 hex + "." + 43 base64url characters */
#define IDENTITY_SECRET_LEN 43  /* the agent secret, base64url */
#define IDENTITY_AGENT_ID_MAX 64
#define IDENTITY_TENANT_MAX 128
#define IDENTITY_REPLY_MAX (64 * 1024) /* cap on a console's answer */
#define IDENTITY_CHECKIN_MIN 10
#define IDENTITY_CHECKIN_MAX 3600
#define IDENTITY_CHECKIN_DEFAULT 60

typedef struct {
  char url[IDENTITY_URL_MAX];           /* "https://host[:port][/path]", no trailing '/' */
  char pin[IDENTITY_PIN_LEN + 1];       /* "sha256//<base64>" (CURLOPT_PINNEDPUBLICKEY) */
  char tok[IDENTITY_TOK_LEN + 1];       /* enrollment "<id>.<secret>"; "" when not kept */
  char agent_id[IDENTITY_AGENT_ID_MAX]; /* "" before enrollment */
  char secret[IDENTITY_SECRET_LEN + 1]; /* "" before enrollment */
  char tenant[IDENTITY_TENANT_MAX];
  unsigned checkin_s; /* the console's check-in interval (bounded), 0 unknown */
} identity_t;

/* Decodes an enrollment token ("ymt1." + base64url of {"url","pin","tok"})
 * into out->url, out->pin and out->tok; the other fields are cleared. The
 * token is validated strictly: the URL must be https:// with a host, the
 * pin "sha256//" and the base64 of 32 bytes, tok 16 lower-case hex
 * characters, '.', 43 base64url characters; no other members. Returns 0,
 * or YM_EPARSE / YM_ETOOBIG / YM_EINVAL with a message in err that says
 * what is wrong and never contains the token or any part of it. */
int identity_parse_token(const char *token, identity_t *out, char *err, size_t errlen);

/* Reads state_dir/identity.json into out. Returns 0; YM_ENOENT when there
 * is no identity file (not enrolled); YM_EPERM when the file is a symbolic
 * link, not a regular file, not owned by the effective user (root) or not
 * mode 0600; YM_EPARSE / YM_ETOOBIG when its content is malformed. err
 * (may be NULL) receives a message for every error but YM_ENOENT. */
int identity_load(const char *state_dir, identity_t *out, char *err, size_t errlen);

/* Writes id to state_dir/identity.json (state_dir is created with mode
 * 0700 when missing): a temporary file of mode 0600 in the same directory,
 * fsync'd, renamed over the old file, and the directory fsync'd. A reader
 * sees either the old or the new identity, never a part. Blocking. */
int identity_save(const char *state_dir, const identity_t *id);

/* Enrolls this machine, synchronously (for yamorictl and the installer):
 * decodes token, sends POST {url}/api/v1/enroll with the host facts
 * (pinned TLS, no redirects, 10 s to connect, 30 s in all), and on success
 * fills out and saves it to state_dir. When state_dir already holds an
 * identity for the same console (URL and pin), its agent id and secret go
 * along (Authorization) as the proof that keeps the id: the console then
 * answers the same agent id with a new secret instead of making a second
 * record of this PC. Returns 0 or an error code with a
 * plain message in err (what went wrong and what to do; never the token
 * or a secret). */
int identity_enroll(const char *token, const char *state_dir, identity_t *out, char *err,
                    size_t errlen);

/* The pieces identity_enroll is made of, also used by the uplink to enroll
 * again through its own transfer machinery. */

/* Appends the JSON body of an enrollment request for id->tok with this
 * machine's host facts (os_host_facts()) and the agent version. Reads a few
 * small system files. Returns 0 or YM_ENOMEM / YM_ETOOBIG / YM_EINVAL (no
 * token kept). */
int identity_enroll_body(const identity_t *id, ym_buf_t *out);

/* Reads the console's answer to an enrollment (HTTP status and body). On
 * 200 with a well-formed answer, sets id->agent_id, id->secret, id->tenant
 * and id->checkin_s and returns 0; otherwise returns YM_EPERM (the token
 * was refused: 401/403), YM_EAGAIN (429/503: try later), YM_EPARSE (a
 * malformed answer) or YM_EIO (another status) with a plain message in
 * err, and leaves id unchanged. */
int identity_enroll_reply(identity_t *id, long status, const char *body, size_t len, char *err,
                          size_t errlen);

/* Sets the options every request to the console shares on easy handle e:
 * HTTPS only, TLS checked against id->pin and not against a CA (the
 * console's CA is private), no redirects, connect timeout 10 s, total
 * timeout total_s, TCP keep-alive, HTTP/2 when the console offers it.
 * Returns 0 or YM_ENOTSUP (the libcurl in use lacks an option) /
 * YM_EINVAL. */
int identity_curl_setup(CURL *e, const identity_t *id, long total_s);

/* Writes a plain message for a failed transfer (rc from libcurl) to the
 * console at url: pin mismatch, refused connection, DNS failure, timeout,
 * oversized answer. Returns the closest YM_E* code. */
int identity_curl_error(CURLcode rc, const char *url, char *err, size_t errlen);

/* Appends the header value "Bearer <agent_id>.<secret>" as a full
 * "Authorization: ..." header line for curl_slist_append. The result holds
 * the secret: never log it. Returns 0 or YM_ENOMEM / YM_ETOOBIG / YM_EINVAL
 * (not enrolled). */
int identity_auth_header(const identity_t *id, ym_buf_t *out);

/* True when a and b are the same enrollment (agent id and secret). */
bool identity_same(const identity_t *a, const identity_t *b);

/* Overwrites the secrets in id (token and agent secret) with zeros. */
void identity_wipe(identity_t *id);

#endif
