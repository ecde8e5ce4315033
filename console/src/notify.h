/*
 * Notifications: e-mail (SMTP through libcurl) and webhook (JSON POST) to
 * each customer company, one message per incident, state change and
 * recipient, in the company's language (Japanese by default, English
 * selectable in tenant_settings.lang).
 *
 * It works in two halves joined by a table, the outbox:
 *   - notify_enqueue_db() runs on the database thread inside the caller's
 *     transaction (the incident code calls it when an incident is created
 *     or changes state). It renders the subject and body from the
 *     templates in notify_text.c and inserts one outbox row per e-mail
 *     recipient and one for the webhook. UNIQUE(incident_id, change,
 *     channel, recipient) makes a second call for the same change a no-op.
 *   - the sender (notify_new) polls the outbox from the libuv loop, sends
 *     due messages on a worker thread (blocking libcurl there, never on the
 *     loop), then marks each row sent, or schedules a retry with
 *     exponential backoff and jitter, or gives up (state failed with
 *     last_error) after max_attempts. Sent and failed messages are
 *     recorded in incident_log.
 * A message is sent at least once: a console that stops between sending
 * and recording sends it again after the claim expires.
 *
 * Tables (module "notify", docs/console.md):
 *   notify_outbox(id, tenant_id, incident_id, change, channel, recipient,
 *                 subject, body, payload_json, state, attempts, next_at_ms,
 *                 last_error, created_ms, sent_ms)
 *   notify_tenant(tenant_id, webhook_secret)   HMAC key of the webhook
 *   notify_config(key, value)                  console_url for the links
 *
 * What the messages say, and how endpoint strings are made safe for them,
 * is notify_text.h's part.
 */
#ifndef YAMORI_CONSOLE_NOTIFY_H
#define YAMORI_CONSOLE_NOTIFY_H

#include "notify_text.h"
#include "store.h"

#include "yamori/buf.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* How long the first message about a detection waits, by default, for the
 * agent to report what it did with the file (milliseconds). */
#define NOTIFY_GRACE_MS 5000

typedef struct notify notify_t;

typedef struct {
  const char *smtp_url;       /* smtp://host[:port] or smtps://...; NULL or "": no e-mail */
  const char *smtp_from;      /* envelope and From: address */
  const char *smtp_user;      /* NULL: no SMTP authentication */
  const char *smtp_password;  /* copied; never logged or stored */
  const char *smtp_ca_file;   /* CA bundle to trust for SMTP TLS; NULL: system CAs */
  bool smtp_plain;            /* smtp:// without STARTTLS (a local relay only) */
  const char *console_url;    /* base of the incident links, e.g. https://console:8443 */
  unsigned webhook_timeout_s; /* whole webhook request; 0: 10 s */
  unsigned poll_ms;           /* how often due messages are looked for; 0: 1000 */
  unsigned backoff_ms;        /* first retry delay; 0: 30 s */
  unsigned backoff_max_ms;    /* cap of the doubling delay; 0: 1 h */
  unsigned max_attempts;      /* then state failed; 0: 12 */
  unsigned grace_ms;          /* a detection's first message waits this long for the agent's
                                 quarantine report; 0: NOTIFY_GRACE_MS */
} notify_opts_t;

typedef struct {
  uint64_t polls, sent, retried, failed, in_flight;
} notify_stats_t;

/* Applies the module's schema (module "notify"). */
int notify_schema(store_t *s);

/* Records the console URL used in the links of messages enqueued from now
 * on (table notify_config). On any connection; url NULL or "" removes it.
 * Returns 0, YM_EINVAL (not http(s):// or too long) or YM_EIO. */
int notify_set_console_url_db(sqlite3 *db, const char *url);

/* Renders and enqueues the messages for incident_id and change (one of
 * "created", "acknowledged", "resolved", "reopened"): one per e-mail
 * recipient of the incident's tenant and one for its webhook. Runs on the
 * database thread inside the caller's transaction (it opens none). A
 * second call with the same incident and change inserts nothing. Returns
 * 0 (also when the tenant has no recipients), YM_EINVAL (unknown change),
 * YM_ENOENT (no such incident) or YM_EIO. */
int notify_enqueue_db(sqlite3 *db, int64_t incident_id, const char *change);

/* Deletes sent and failed messages older than their tenant's
 * retention_days (tenant_settings, default 90), at most 5,000 per call;
 * pending ones are kept. The incident's timeline (incident_log) keeps the
 * record that a message was sent. The sender calls it once an hour.
 * *deleted (may be NULL) is how many. Returns 0 or YM_EIO. */
int notify_prune_db(sqlite3 *db, int64_t now_ms, int *deleted);

/* The agent agent_id quarantined file_path: messages about its open
 * malware incident for that file that wait their grace (not yet claimed)
 * are rendered again, so that they say the file was isolated. On the
 * database thread, inside the transaction that stored the report (the
 * sender registers it as a store batch hook). Returns 0 or YM_E*. */
int notify_response_db(sqlite3 *db, const char *agent_id, const char *file_path);

/* Enqueues a test message to every recipient of tenant tenant_id (change
 * "test", no incident). Same conditions as notify_enqueue_db(); *n (may be
 * NULL) is the number of messages enqueued. */
int notify_enqueue_test_db(sqlite3 *db, int64_t tenant_id, int *n);

/* Starts the sender on loop. opts is copied. Returns 0, YM_EINVAL (a bad
 * option: URL scheme, a login inside smtp_url, missing smtp_from with
 * smtp_url, console_url not http(s)) or YM_ENOMEM. */
int notify_new(uv_loop_t *loop, store_t *store, const notify_opts_t *opts, notify_t **out);
/* Looks for due messages now instead of at the next poll (for example right
 * after an incident was enqueued). Loop thread. */
void notify_kick(notify_t *n);
/* Stops the sender: a send in progress is aborted, its message stays
 * pending. Loop thread; the loop must run on until the sender's last
 * callbacks are done (uv_run returns), and that must happen before
 * store_close(). notify_free(NULL) does nothing. */
void notify_free(notify_t *n);
/* Counters since notify_new(). */
void notify_stats(notify_t *n, notify_stats_t *out);

/* ---- Command line (synchronous, store opened without a loop) ---- */

/* Settings of one company; NULL members are left as they are. */
typedef struct {
  const char *lang;           /* "ja" or "en" */
  const char *emails;         /* comma-separated addresses; "" for none */
  const char *webhook_url;    /* http(s) URL; "" for none */
  const char *webhook_secret; /* HMAC key of the webhook; "" for none */
  const char *helpdesk;       /* the help desk contact shown in messages */
} notify_settings_t;

/* Writes the settings of tenant (its name) into tenant_settings,
 * tenants.helpdesk and notify_tenant, in one transaction. Returns 0,
 * YM_ENOENT (no such tenant) or YM_EINVAL with *bad naming the value
 * that was refused (nothing written). */
int notify_sync_settings(store_t *s, const char *tenant, const notify_settings_t *set,
                         const char **bad);
/* Enqueues a test message to the recipients of tenant (its name); *n is
 * how many. Returns 0 or YM_ENOENT. */
int notify_sync_test(store_t *s, const char *tenant, int *n);
/* notify_enqueue_db() in a transaction of its own. */
int notify_sync_enqueue(store_t *s, int64_t incident_id, const char *change);
/* notify_set_console_url_db() on the store's connection. */
int notify_sync_console_url(store_t *s, const char *url);

/* One outbox row for a listing; webhook recipients show only their
 * scheme and host. Strings are valid during the callback. */
typedef struct {
  int64_t id, incident_id, attempts, next_at_ms, created_ms, sent_ms;
  const char *tenant, *change, *channel, *recipient, *subject, *state, *last_error;
} notify_row_t;
/* Calls fn for the newest messages (at most limit), newest first, of the
 * tenant named tenant (NULL: of every tenant). */
int notify_sync_list(store_t *s, const char *tenant, int64_t limit,
                     void (*fn)(const notify_row_t *row, void *data), void *data);

/* ---- Parts exposed for tests ---- */

/* Hex HMAC-SHA256 of body under key (the X-Yamori-Signature value without
 * "sha256="). Returns 0 or YM_ECRYPTO. */
int notify_sign(const char *key, const char *body, size_t len, char hex[65]);

#endif
