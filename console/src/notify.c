#include "notify.h"

#include "technique.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/version.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_MAX 64                   /* messages claimed per poll */
#define CLAIM_MS (15 * 60 * 1000LL)    /* a claimed message is retried after this */
#define PRUNE_EVERY_MS (3600 * 1000LL) /* old messages deleted this often */
#define PRUNE_MAX 5000                 /* at most this many at a time */
#define PAYLOAD_MAX (64 * 1024)        /* webhook JSON */
#define ANSWER_MAX (64 * 1024)         /* webhook answer read at most */
#define EMAILS_JSON_MAX (16 * 1024)    /* tenant_settings.emails */
#define ERROR_MAX 300                  /* last_error */

/* ================================================================ */
/* Schema                                                             */

static const char *const schema[] = {
    /* 1: the outbox, per-tenant webhook secrets, settings of the module. */
    "CREATE TABLE notify_outbox("
    " id INTEGER PRIMARY KEY,"
    " tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
    " incident_id INTEGER," /* NULL: a test message */
    " change TEXT NOT NULL"
    "  CHECK(change IN ('created', 'acknowledged', 'resolved', 'reopened', 'test')),"
    " channel TEXT NOT NULL CHECK(channel IN ('email', 'webhook')),"
    " recipient TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " body TEXT NOT NULL,"
    " payload_json TEXT NOT NULL DEFAULT '',"
    " state TEXT NOT NULL DEFAULT 'pending' CHECK(state IN ('pending', 'sent', 'failed')),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " next_at_ms INTEGER NOT NULL,"
    " last_error TEXT NOT NULL DEFAULT '',"
    " created_ms INTEGER NOT NULL,"
    " sent_ms INTEGER,"
    " UNIQUE(incident_id, change, channel, recipient)"
    ") STRICT;"
    "CREATE INDEX notify_outbox_due ON notify_outbox(next_at_ms) WHERE state = 'pending';"
    "CREATE INDEX notify_outbox_tenant ON notify_outbox(tenant_id, created_ms);"
    "CREATE TABLE notify_tenant("
    " tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id),"
    " webhook_secret TEXT NOT NULL DEFAULT ''"
    ") STRICT;"
    "CREATE TABLE notify_config("
    " key TEXT PRIMARY KEY,"
    " value TEXT NOT NULL"
    ") STRICT;",
};

int notify_schema(store_t *s) {
  return store_ensure_schema(s, "notify", schema, sizeof(schema) / sizeof(schema[0]));
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ================================================================ */
/* Webhook URLs and signature                                         */

/* Writes scheme://host of url (what a log may show: a webhook URL's
 * user, path or query often holds a token). */
static void url_origin(const char *url, char *out, size_t cap) {
  const char *h = strstr(url, "://");
  if (h == NULL) {
    snprintf(out, cap, "?");
    return;
  }
  const char *host = h + 3;
  size_t n = strcspn(host, "/?#");
  for (size_t i = n; i > 0; i--)
    if (host[i - 1] == '@') {
      n -= i;
      host += i;
      break;
    }
  snprintf(out, cap, "%.*s%.*s", (int)(h + 3 - url), url, (int)n, host);
}

int notify_sign(const char *key, const char *body, size_t len, char hex[65]) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mlen = 0;
  if (HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)body, len, mac, &mlen) ==
          NULL ||
      mlen != 32)
    return YM_ECRYPTO;
  for (unsigned i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", mac[i]);
  return 0;
}

/* ================================================================ */
/* Enqueue (database thread)                                          */

static const char sql_incident[] =
    "SELECT i.tenant_id, i.kind, i.rule, i.title, i.severity, i.file_path, i.first_ms,"
    " i.last_ms, i.count, i.state, i.agent_id, coalesce(a.host_name, ''),"
    " coalesce(a.last_seen, 0), t.name, t.display, t.helpdesk, coalesce(s.lang, 'ja'),"
    " coalesce(s.emails, '[]'), coalesce(s.webhook_url, ''),"
    " CASE WHEN json_valid(i.alert_json)"
    "  THEN coalesce(json_extract(i.alert_json, '$.event.action'), '') ELSE '' END,"
    " i.ruleset, i.technique"
    " FROM incidents i JOIN tenants t ON t.id = i.tenant_id"
    " LEFT JOIN agents a ON a.id = i.agent_id"
    " LEFT JOIN tenant_settings s ON s.tenant_id = i.tenant_id"
    " WHERE i.id = ?1";

static const char sql_tenant[] =
    "SELECT t.id, t.name, t.display, t.helpdesk, coalesce(s.lang, 'ja'),"
    " coalesce(s.emails, '[]'), coalesce(s.webhook_url, '')"
    " FROM tenants t LEFT JOIN tenant_settings s ON s.tenant_id = t.id WHERE t.id = ?1";

/* A successful quarantine of the incident's file by its agent, around the
 * incident's time. */
static const char sql_quarantined[] =
    "SELECT 1 FROM events WHERE agent_id = ?1 AND ts_ms BETWEEN ?2 AND ?3"
    " AND dataset = 'yamori.response' AND action = 'quarantine' AND json_valid(json)"
    " AND json_extract(json, '$.event.outcome') = 'success'"
    " AND json_extract(json, '$.file.path') = ?4 LIMIT 1";

static const char sql_insert[] =
    "INSERT INTO notify_outbox(tenant_id, incident_id, change, channel, recipient, subject,"
    " body, payload_json, created_ms, next_at_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    " ON CONFLICT DO NOTHING";

/* An address that cannot be sent to: recorded, so that it shows. */
static const char sql_insert_bad[] =
    "INSERT INTO notify_outbox(tenant_id, incident_id, change, channel, recipient, subject,"
    " body, state, last_error, next_at_ms, created_ms) VALUES(?1, ?2, ?3, 'email', ?4, ?5, '',"
    " 'failed', 'not a valid e-mail address', ?6, ?6) ON CONFLICT DO NOTHING";

static const char sql_config_get[] = "SELECT value FROM notify_config WHERE key = ?1";

static const char *col(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t != NULL ? (const char *)t : "";
}

static char *dup_col(sqlite3_stmt *st, int i) {
  return strdup(col(st, i));
}

int notify_set_console_url_db(sqlite3 *db, const char *url) {
  bool del = url == NULL || url[0] == '\0';
  if (!del && !notify_text_url_valid(url))
    return YM_EINVAL;
  sqlite3_stmt *st = NULL;
  const char *sql = del ? "DELETE FROM notify_config WHERE key = 'console_url'"
                        : "INSERT INTO notify_config(key, value) VALUES('console_url', ?1)"
                          " ON CONFLICT(key) DO UPDATE SET value = excluded.value";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  if (!del)
    sqlite3_bind_text(st, 1, url, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  sqlite3_finalize(st);
  return rc;
}

/* Everything a message is rendered from, owned copies. */
typedef struct {
  int64_t tenant_id, incident_id;
  char *kind, *rule, *title, *severity, *file_path, *state, *agent_id, *host, *tenant_name,
      *company, *helpdesk, *lang, *emails, *webhook, *alert_action, *ruleset, *technique;
  int64_t first_ms, last_ms, count, last_seen_ms;
  int file_action;
  int64_t grace_ms; /* notify_config grace_ms */
  char link[NOTIFY_URL_MAX + 64];
} facts_t;

static void facts_free(facts_t *f) {
  char **s[] = {&f->kind,     &f->rule,    &f->title,        &f->severity, &f->file_path, &f->state,
                &f->agent_id, &f->host,    &f->tenant_name,  &f->company,  &f->helpdesk,  &f->lang,
                &f->emails,   &f->webhook, &f->alert_action, &f->ruleset,  &f->technique};
  for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
    free(*s[i]);
    *s[i] = NULL;
  }
}

/* Reads the module's settings from notify_config: the console's URL (the
 * incident link) and the grace before a detection's first message. */
static void load_config(sqlite3 *db, facts_t *f) {
  sqlite3_stmt *st = NULL;
  f->link[0] = '\0';
  f->grace_ms = NOTIFY_GRACE_MS;
  if (sqlite3_prepare_v2(db, sql_config_get, -1, &st, NULL) != SQLITE_OK)
    return;
  sqlite3_bind_text(st, 1, "grace_ms", -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW) {
    long long v = strtoll(col(st, 0), NULL, 10);
    f->grace_ms = v >= 0 && v <= 600000 ? v : NOTIFY_GRACE_MS;
  }
  sqlite3_reset(st);
  sqlite3_bind_text(st, 1, "console_url", -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW && notify_text_url_valid(col(st, 0))) {
    const char *base = col(st, 0);
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
      n--;
    if (f->incident_id > 0)
      snprintf(f->link, sizeof(f->link), "%.*s/#/incidents/%lld", (int)n, base,
               (long long)f->incident_id);
    else
      snprintf(f->link, sizeof(f->link), "%.*s/", (int)n, base);
  }
  sqlite3_finalize(st);
}

static int load_incident(sqlite3 *db, int64_t id, facts_t *f) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql_incident, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, id);
  int step = sqlite3_step(st), rc = 0;
  if (step == SQLITE_ROW) {
    f->incident_id = id;
    f->tenant_id = sqlite3_column_int64(st, 0);
    f->kind = dup_col(st, 1);
    f->rule = dup_col(st, 2);
    f->title = dup_col(st, 3);
    f->severity = dup_col(st, 4);
    f->file_path = dup_col(st, 5);
    f->first_ms = sqlite3_column_int64(st, 6);
    f->last_ms = sqlite3_column_int64(st, 7);
    f->count = sqlite3_column_int64(st, 8);
    f->state = dup_col(st, 9);
    f->agent_id = dup_col(st, 10);
    f->host = strdup(col(st, 11)[0] ? col(st, 11) : col(st, 10));
    f->last_seen_ms = sqlite3_column_int64(st, 12);
    f->tenant_name = dup_col(st, 13);
    f->company = dup_col(st, 14);
    f->helpdesk = dup_col(st, 15);
    f->lang = dup_col(st, 16);
    f->emails = dup_col(st, 17);
    f->webhook = dup_col(st, 18);
    f->alert_action = dup_col(st, 19);
    f->ruleset = dup_col(st, 20);
    f->technique = dup_col(st, 21);
  } else {
    rc = step == SQLITE_DONE ? YM_ENOENT : YM_EIO;
  }
  sqlite3_finalize(st);
  if (rc != 0)
    return rc;
  if (f->kind == NULL || f->alert_action == NULL || f->ruleset == NULL || f->technique == NULL)
    return YM_ENOMEM;
  f->file_action = NOTIFY_TEXT_FILE_UNKNOWN;
  if (strcmp(f->alert_action, "exec-denied") == 0) {
    f->file_action = NOTIFY_TEXT_FILE_BLOCKED;
  } else if (strcmp(f->kind, "malware") == 0 && f->file_path[0] != '\0' &&
             sqlite3_prepare_v2(db, sql_quarantined, -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, f->agent_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, f->first_ms - 60 * 1000);
    sqlite3_bind_int64(st, 3, f->last_ms + 10 * 60 * 1000);
    sqlite3_bind_text(st, 4, f->file_path, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
      f->file_action = NOTIFY_TEXT_FILE_ISOLATED;
    sqlite3_finalize(st);
  }
  load_config(db, f);
  return 0;
}

static int load_tenant(sqlite3 *db, int64_t tenant_id, facts_t *f) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql_tenant, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, tenant_id);
  int step = sqlite3_step(st), rc = 0;
  if (step == SQLITE_ROW) {
    f->tenant_id = tenant_id;
    f->tenant_name = dup_col(st, 1);
    f->company = dup_col(st, 2);
    f->helpdesk = dup_col(st, 3);
    f->lang = dup_col(st, 4);
    f->emails = dup_col(st, 5);
    f->webhook = dup_col(st, 6);
    f->kind = strdup("malware");
    if (f->webhook == NULL || f->kind == NULL)
      rc = YM_ENOMEM;
  } else {
    rc = step == SQLITE_DONE ? YM_ENOENT : YM_EIO;
  }
  sqlite3_finalize(st);
  if (rc == 0)
    load_config(db, f);
  return rc;
}

static void iso_time(int64_t ms, char out[64]) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* Adds key: the cleaned form of s. */
static void add_clean(cJSON *o, const char *key, const char *s, size_t max) {
  ym_buf_t b;
  ym_buf_init(&b, max + 8);
  notify_text_clean(s, max, &b);
  cJSON_AddStringToObject(o, key, b.data != NULL ? b.data : "");
  ym_buf_free(&b);
}

/* True for an incident of a behaviour rule (its alerts name ruleset sigma). */
static bool behaviour(const facts_t *f) {
  return f->ruleset != NULL && strcmp(f->ruleset, "sigma") == 0 && f->technique != NULL;
}

/* The webhook's JSON: a stable shape (docs/console.md). */
static char *build_payload(const facts_t *f, const char *change, const char *subject,
                           const char *body) {
  cJSON *j = cJSON_CreateObject();
  char t1[64], t2[64];
  cJSON_AddNumberToObject(j, "version", 1);
  cJSON_AddStringToObject(j, "type", f->incident_id > 0 ? "incident" : "test");
  cJSON_AddStringToObject(j, "change", change);
  cJSON *t = cJSON_AddObjectToObject(j, "tenant");
  cJSON_AddNumberToObject(t, "id", (double)f->tenant_id);
  cJSON_AddStringToObject(t, "name", f->tenant_name != NULL ? f->tenant_name : "");
  add_clean(t, "display", f->company, NOTIFY_TEXT_MAX);
  if (f->incident_id > 0) {
    cJSON *i = cJSON_AddObjectToObject(j, "incident");
    cJSON_AddNumberToObject(i, "id", (double)f->incident_id);
    cJSON_AddStringToObject(i, "kind", f->kind);
    cJSON_AddStringToObject(i, "state", f->state);
    add_clean(i, "title", f->title, NOTIFY_TEXT_MAX);
    add_clean(i, "rule", f->rule, NOTIFY_TEXT_MAX);
    cJSON_AddStringToObject(i, "severity", f->severity);
    add_clean(i, "file_path", f->file_path, NOTIFY_PATH_MAX);
    cJSON_AddNumberToObject(i, "count", (double)f->count);
    iso_time(f->first_ms, t1);
    iso_time(f->last_ms, t2);
    cJSON_AddStringToObject(i, "first_seen", t1);
    cJSON_AddStringToObject(i, "last_seen", t2);
    cJSON_AddStringToObject(i, "file_action",
                            f->file_action == NOTIFY_TEXT_FILE_ISOLATED  ? "isolated"
                            : f->file_action == NOTIFY_TEXT_FILE_BLOCKED ? "blocked"
                                                                         : "unknown");
    cJSON_AddStringToObject(i, "url", f->link);
    if (behaviour(f)) {
      /* Behaviour incidents: the Sigma id is the rule, and the ATT&CK
       * techniques come with their titles in the tenant's language. */
      cJSON_AddStringToObject(i, "ruleset", "sigma");
      cJSON *ts = cJSON_AddArrayToObject(i, "techniques");
      int li = technique_lang(f->lang);
      for (const char *p = f->technique; *p != '\0';) {
        size_t n = strcspn(p, ",");
        char id[16];
        if (n > 0 && n < sizeof(id)) {
          memcpy(id, p, n);
          id[n] = '\0';
          const technique_t *tq = technique_find(id);
          cJSON *o = cJSON_CreateObject();
          cJSON_AddStringToObject(o, "id", id);
          cJSON_AddStringToObject(o, "title", tq ? tq->title[li] : "");
          cJSON_AddItemToArray(ts, o);
        }
        p += n + (p[n] == ',');
      }
    }
    cJSON *h = cJSON_AddObjectToObject(j, "host");
    add_clean(h, "name", f->host, NOTIFY_HOST_MAX);
    cJSON_AddStringToObject(h, "agent_id", f->agent_id);
  } else {
    cJSON_AddNullToObject(j, "incident");
    cJSON_AddNullToObject(j, "host");
  }
  cJSON *m = cJSON_AddObjectToObject(j, "message");
  cJSON_AddStringToObject(m, "lang", strcmp(f->lang, "en") == 0 ? "en" : "ja");
  cJSON_AddStringToObject(m, "subject", subject);
  cJSON_AddStringToObject(m, "text", body);
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return text;
}

static int insert_row(sqlite3_stmt *st, const facts_t *f, const char *change, const char *channel,
                      const char *recipient, const char *subject, const char *body,
                      const char *payload, int64_t now, int64_t due, int *n) {
  sqlite3_reset(st);
  sqlite3_bind_int64(st, 1, f->tenant_id);
  if (f->incident_id > 0)
    sqlite3_bind_int64(st, 2, f->incident_id);
  else
    sqlite3_bind_null(st, 2);
  sqlite3_bind_text(st, 3, change, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, channel, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, recipient, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, subject, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 7, body, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 8, payload, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 9, now);
  sqlite3_bind_int64(st, 10, due);
  if (sqlite3_step(st) != SQLITE_DONE)
    return YM_EIO;
  if (n != NULL)
    *n += sqlite3_changes(sqlite3_db_handle(st));
  return 0;
}

static int insert_bad(sqlite3 *db, const facts_t *f, const char *change, const char *addr,
                      const char *subject, int64_t now, int *n) {
  ym_buf_t shown;
  ym_buf_init(&shown, NOTIFY_EMAIL_MAX + 8);
  int rc = notify_text_clean(addr, NOTIFY_EMAIL_MAX, &shown);
  sqlite3_stmt *st = NULL;
  if (rc == 0 && sqlite3_prepare_v2(db, sql_insert_bad, -1, &st, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, f->tenant_id);
    if (f->incident_id > 0)
      sqlite3_bind_int64(st, 2, f->incident_id);
    else
      sqlite3_bind_null(st, 2);
    sqlite3_bind_text(st, 3, change, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, shown.data != NULL ? shown.data : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, subject, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
    if (rc == 0 && n != NULL)
      *n += sqlite3_changes(db);
  }
  sqlite3_finalize(st);
  ym_buf_free(&shown);
  return rc;
}

/* True when the first message about a detection should wait a moment: the
 * agent reports what it did with the file (quarantine) just after the
 * alert, often in the next batch, and the message should say so. */
static bool wait_for_response(const facts_t *f, const char *change) {
  return f->incident_id > 0 && strcmp(f->kind, "malware") == 0 &&
         f->file_action == NOTIFY_TEXT_FILE_UNKNOWN &&
         (strcmp(change, "created") == 0 || strcmp(change, "reopened") == 0);
}

/* Renders f for change and inserts the rows. */
static int enqueue_facts(sqlite3 *db, facts_t *f, const char *change, int *n) {
  notify_text_msg_t m = {f->lang,        change,       f->kind,     f->company,      f->host,
                         f->title,       f->rule,      f->severity, f->file_path,    f->helpdesk,
                         f->link,        f->first_ms,  f->last_ms,  f->last_seen_ms, f->count,
                         f->file_action, behaviour(f), f->technique};
  ym_buf_t subject, body;
  ym_buf_init(&subject, NOTIFY_SUBJECT_MAX);
  ym_buf_init(&body, NOTIFY_BODY_MAX);
  int rc = notify_text_render(&m, &subject, &body);
  cJSON *emails = NULL;
  if (rc == 0 && ym_json_parse(f->emails, strlen(f->emails), EMAILS_JSON_MAX, &emails, NULL) != 0)
    emails = NULL; /* unreadable settings: no e-mail, the webhook still goes */
  bool hook = notify_text_url_valid(f->webhook);
  char *payload = NULL;
  if (rc == 0 && hook && (payload = build_payload(f, change, subject.data, body.data)) == NULL)
    rc = YM_ENOMEM;
  sqlite3_stmt *st = NULL;
  if (rc == 0 && sqlite3_prepare_v2(db, sql_insert, -1, &st, NULL) != SQLITE_OK)
    rc = YM_EIO;
  int64_t now = now_ms();
  int64_t due = now + (wait_for_response(f, change) ? f->grace_ms : 0);
  int count = 0;
  const cJSON *e;
  if (rc == 0 && cJSON_IsArray(emails)) {
    cJSON_ArrayForEach(e, emails) {
      if (count >= NOTIFY_RECIPIENTS_MAX || rc != 0)
        break;
      if (!cJSON_IsString(e))
        continue;
      count++;
      if (!notify_text_email_valid(e->valuestring)) {
        rc = insert_bad(db, f, change, e->valuestring, subject.data, now, n);
        continue;
      }
      rc = insert_row(st, f, change, "email", e->valuestring, subject.data, body.data, "", now, due,
                      n);
    }
  }
  if (rc == 0 && hook)
    rc = insert_row(st, f, change, "webhook", f->webhook, subject.data, body.data, payload, now,
                    due, n);
  sqlite3_finalize(st);
  cJSON_Delete(emails);
  free(payload);
  ym_buf_free(&subject);
  ym_buf_free(&body);
  return rc;
}

/* ---- A quarantine reported after the alert ---- */

static const char sql_waiting[] =
    "SELECT DISTINCT o.incident_id, o.change FROM notify_outbox o"
    " JOIN incidents i ON i.id = o.incident_id"
    " WHERE i.agent_id = ?1 AND i.kind = 'malware' AND i.file_path = ?2"
    " AND o.state = 'pending' AND o.attempts = 0 AND o.next_at_ms <= ?3"
    " AND o.change IN ('created', 'reopened')";
/* Rows not claimed by the sender (a claim moves next_at_ms CLAIM_MS on). */
static const char sql_refresh[] =
    "UPDATE notify_outbox SET subject = ?3, body = ?4,"
    " payload_json = CASE channel WHEN 'webhook' THEN ?5 ELSE payload_json END"
    " WHERE incident_id = ?1 AND change = ?2 AND state = 'pending' AND attempts = 0"
    " AND next_at_ms <= ?6";

/* Renders the waiting messages of incident and change again (the facts
 * changed: the file was isolated). */
static int refresh(sqlite3 *db, int64_t incident, const char *change, int64_t before) {
  facts_t f = {0};
  int rc = load_incident(db, incident, &f);
  if (rc != 0 || f.file_action == NOTIFY_TEXT_FILE_UNKNOWN) {
    facts_free(&f);
    return rc;
  }
  notify_text_msg_t m = {f.lang,        change,        f.kind,     f.company,      f.host,
                         f.title,       f.rule,        f.severity, f.file_path,    f.helpdesk,
                         f.link,        f.first_ms,    f.last_ms,  f.last_seen_ms, f.count,
                         f.file_action, behaviour(&f), f.technique};
  ym_buf_t subject, body;
  ym_buf_init(&subject, NOTIFY_SUBJECT_MAX);
  ym_buf_init(&body, NOTIFY_BODY_MAX);
  rc = notify_text_render(&m, &subject, &body);
  char *payload = rc == 0 ? build_payload(&f, change, subject.data, body.data) : NULL;
  sqlite3_stmt *st = NULL;
  if (rc == 0 && payload == NULL)
    rc = YM_ENOMEM;
  if (rc == 0 && sqlite3_prepare_v2(db, sql_refresh, -1, &st, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, incident);
    sqlite3_bind_text(st, 2, change, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, subject.data, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, body.data, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, payload, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, before);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  }
  sqlite3_finalize(st);
  free(payload);
  ym_buf_free(&subject);
  ym_buf_free(&body);
  facts_free(&f);
  return rc;
}

int notify_response_db(sqlite3 *db, const char *agent_id, const char *file_path) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql_waiting, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  /* Messages waiting their grace are due at most this late; claimed ones
   * are later. */
  int64_t before = now_ms() + 600000;
  sqlite3_bind_text(st, 1, agent_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, file_path, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, before);
  int64_t ids[8];
  char changes[8][16];
  size_t k = 0;
  while (k < 8 && sqlite3_step(st) == SQLITE_ROW) {
    ids[k] = sqlite3_column_int64(st, 0);
    snprintf(changes[k], sizeof(changes[k]), "%s", col(st, 1));
    k++;
  }
  sqlite3_finalize(st);
  int rc = 0;
  for (size_t i = 0; i < k && rc == 0; i++)
    rc = refresh(db, ids[i], changes[i], before);
  return rc;
}

/* The store's batch hook: a successful quarantine in the batch. Never
 * fails the batch: a message that cannot be rendered again goes as it
 * is. */
static int on_batch(sqlite3 *db, int64_t tenant_id, const char *agent_id, const char *stream,
                    const store_event_t *events, const int64_t *row_ids, size_t n, void *data) {
  (void)tenant_id, (void)stream, (void)data;
  for (size_t i = 0; i < n; i++) {
    const store_event_t *e = &events[i];
    if (row_ids[i] == 0 || e->dataset == NULL || e->action == NULL ||
        strcmp(e->dataset, "yamori.response") != 0 || strcmp(e->action, "quarantine") != 0)
      continue;
    cJSON *j = NULL;
    if (ym_json_parse_lenient(e->json, e->json_len, 1 << 20, &j) != 0)
      continue;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "event");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(j, "file");
    const char *outcome = ym_json_get_str(ev, "outcome");
    const char *path = ym_json_get_str(file, "path");
    if (outcome != NULL && strcmp(outcome, "success") == 0 && path != NULL)
      notify_response_db(db, agent_id, path);
    cJSON_Delete(j);
  }
  return 0;
}

static bool change_valid(const char *change) {
  static const char *const ok[] = {"created", "acknowledged", "resolved", "reopened"};
  for (size_t i = 0; change != NULL && i < sizeof(ok) / sizeof(ok[0]); i++)
    if (strcmp(change, ok[i]) == 0)
      return true;
  return false;
}

int notify_enqueue_db(sqlite3 *db, int64_t incident_id, const char *change) {
  if (!change_valid(change))
    return YM_EINVAL;
  facts_t f = {0};
  int rc = load_incident(db, incident_id, &f);
  if (rc == 0)
    rc = enqueue_facts(db, &f, change, NULL);
  facts_free(&f);
  return rc;
}

int notify_enqueue_test_db(sqlite3 *db, int64_t tenant_id, int *n) {
  facts_t f = {0};
  int count = 0;
  int rc = load_tenant(db, tenant_id, &f);
  if (rc == 0)
    rc = enqueue_facts(db, &f, "test", &count);
  facts_free(&f);
  if (n != NULL)
    *n = count;
  return rc;
}

/* ================================================================ */
/* Sender                                                             */

typedef struct {
  int64_t id, tenant_id, incident_id;
  int64_t attempts; /* before this one */
  bool webhook;
  char *recipient, *subject, *body, *payload, *secret, *change;
  int rc; /* 0 sent, YM_ECANCELED not tried, other: failed this time */
  bool permanent;
  bool server_down; /* the failure was the server's, not this message's */
  char error[ERROR_MAX];
} msg_t;

typedef struct job job_t;

struct notify {
  uv_loop_t *loop;
  store_t *store;
  notify_opts_t o;
  char *smtp_url, *smtp_from, *smtp_user, *smtp_password, *smtp_ca_file;
  uv_timer_t timer;
  job_t *job; /* the batch in progress, or NULL */
  bool again; /* poll once more when the batch is done */
  bool closing, timer_closed;
  int64_t pruned_ms; /* when old messages were last deleted */
  atomic_int abort;
  notify_stats_t stats;
};

struct job {
  notify_t *n;
  uv_work_t work;
  int64_t now;
  bool prune; /* also delete old messages (notify_prune_db) */
  size_t count;
  msg_t m[BATCH_MAX];
};

static const char sql_due[] =
    "SELECT o.id, o.tenant_id, coalesce(o.incident_id, 0), o.channel, o.recipient, o.subject,"
    " o.body, o.payload_json, o.attempts, coalesce(k.webhook_secret, ''), o.change"
    " FROM notify_outbox o LEFT JOIN notify_tenant k ON k.tenant_id = o.tenant_id"
    " WHERE o.state = 'pending' AND o.next_at_ms <= ?1 ORDER BY o.next_at_ms LIMIT ?2";
static const char sql_claim[] = "UPDATE notify_outbox SET next_at_ms = ?2 WHERE id = ?1";
static const char sql_sent[] = "UPDATE notify_outbox SET state = 'sent', attempts = attempts + 1,"
                               " sent_ms = ?2, last_error = '' WHERE id = ?1";
static const char sql_retry[] = "UPDATE notify_outbox SET attempts = attempts + 1,"
                                " next_at_ms = ?2, last_error = ?3 WHERE id = ?1";
static const char sql_failed[] = "UPDATE notify_outbox SET state = 'failed',"
                                 " attempts = attempts + 1, last_error = ?3 WHERE id = ?1";
static const char sql_release[] = "UPDATE notify_outbox SET next_at_ms = ?2 WHERE id = ?1";
static const char sql_log[] =
    "INSERT INTO incident_log(incident_id, at_ms, what, detail) VALUES(?1, ?2, ?3, ?4)";

static void msg_free(msg_t *m) {
  if (m->secret != NULL)
    OPENSSL_cleanse(m->secret, strlen(m->secret));
  free(m->recipient);
  free(m->subject);
  free(m->body);
  free(m->payload);
  free(m->secret);
  free(m->change);
  memset(m, 0, sizeof(*m));
}

static void job_free(job_t *j) {
  for (size_t i = 0; i < j->count; i++)
    msg_free(&j->m[i]);
  free(j);
}

static const char sql_prune[] =
    "DELETE FROM notify_outbox WHERE id IN (SELECT o.id FROM notify_outbox o"
    " LEFT JOIN tenant_settings s ON s.tenant_id = o.tenant_id"
    " WHERE o.state != 'pending' AND o.created_ms < ?1 - coalesce(s.retention_days, 90) * 86400000"
    " LIMIT ?2)";

int notify_prune_db(sqlite3 *db, int64_t now, int *deleted) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql_prune, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int(st, 2, PRUNE_MAX);
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  if (deleted != NULL)
    *deleted = rc == 0 ? sqlite3_changes(db) : 0;
  sqlite3_finalize(st);
  return rc;
}

/* Database thread: picks due messages and claims them for CLAIM_MS. */
static int claim_fn(sqlite3 *db, void *arg) {
  job_t *j = arg;
  sqlite3_stmt *st = NULL;
  if (j->prune)
    notify_prune_db(db, j->now, NULL); /* a failure waits for the next hour */
  if (sqlite3_prepare_v2(db, sql_due, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, j->now);
  sqlite3_bind_int(st, 2, BATCH_MAX);
  int step;
  while (j->count < BATCH_MAX && (step = sqlite3_step(st)) == SQLITE_ROW) {
    msg_t *m = &j->m[j->count++];
    m->id = sqlite3_column_int64(st, 0);
    m->tenant_id = sqlite3_column_int64(st, 1);
    m->incident_id = sqlite3_column_int64(st, 2);
    m->webhook = strcmp(col(st, 3), "webhook") == 0;
    m->recipient = dup_col(st, 4);
    m->subject = dup_col(st, 5);
    m->body = dup_col(st, 6);
    m->payload = dup_col(st, 7);
    m->attempts = sqlite3_column_int64(st, 8);
    m->secret = dup_col(st, 9);
    m->change = dup_col(st, 10);
    m->rc = YM_ECANCELED;
    if (m->recipient == NULL || m->subject == NULL || m->body == NULL || m->payload == NULL ||
        m->secret == NULL || m->change == NULL) {
      sqlite3_finalize(st);
      return YM_ENOMEM;
    }
  }
  sqlite3_finalize(st);
  if (j->count == 0)
    return 0;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return YM_EIO;
  int rc = sqlite3_prepare_v2(db, sql_claim, -1, &st, NULL) == SQLITE_OK ? 0 : YM_EIO;
  for (size_t i = 0; rc == 0 && i < j->count; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, j->m[i].id);
    sqlite3_bind_int64(st, 2, j->now + CLAIM_MS);
    if (sqlite3_step(st) != SQLITE_DONE)
      rc = YM_EIO;
  }
  sqlite3_finalize(st);
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc != 0)
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* The delay before the next attempt after attempts failures: base doubling
 * up to max, then +-25 % of jitter so that messages do not retry in step. */
static int64_t backoff(const notify_opts_t *o, int64_t attempts) {
  int64_t d = o->backoff_ms;
  for (int64_t i = 1; i < attempts && d < (int64_t)o->backoff_max_ms; i++)
    d *= 2;
  if (d > (int64_t)o->backoff_max_ms)
    d = o->backoff_max_ms;
  uint32_t r = 0;
  RAND_bytes((unsigned char *)&r, sizeof(r));
  return d * 3 / 4 + (int64_t)(r % (uint32_t)(d / 2 + 1));
}

static int log_row(sqlite3 *db, const msg_t *m, const char *what, int64_t now) {
  if (m->incident_id <= 0)
    return 0;
  char detail[NOTIFY_URL_MAX + ERROR_MAX + 32], origin[NOTIFY_URL_MAX];
  if (m->webhook)
    url_origin(m->recipient, origin, sizeof(origin));
  if (m->rc == 0)
    snprintf(detail, sizeof(detail), "%s %s (%s)", m->webhook ? "webhook" : "email",
             m->webhook ? origin : m->recipient, m->change);
  else
    snprintf(detail, sizeof(detail), "%s %s (%s): %s", m->webhook ? "webhook" : "email",
             m->webhook ? origin : m->recipient, m->change, m->error);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql_log, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, m->incident_id);
  sqlite3_bind_int64(st, 2, now);
  sqlite3_bind_text(st, 3, what, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, detail, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  sqlite3_finalize(st);
  return rc;
}

/* Database thread: records the results of a batch. */
static int finish_fn(sqlite3 *db, void *arg) {
  job_t *j = arg;
  notify_t *n = j->n;
  int64_t now = now_ms();
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return YM_EIO;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < j->count; i++) {
    msg_t *m = &j->m[i];
    const char *sql;
    int64_t at = now;
    const char *what = NULL;
    if (m->rc == YM_ECANCELED) {
      sql = sql_release;
    } else if (m->rc == 0) {
      sql = sql_sent;
      what = "notified";
    } else if (m->permanent || m->attempts + 1 >= n->o.max_attempts) {
      sql = sql_failed;
      what = "notify_failed";
      at = 1;
    } else {
      sql = sql_retry;
      at = now + backoff(&n->o, m->attempts + 1);
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
      rc = YM_EIO;
      break;
    }
    sqlite3_bind_int64(st, 1, m->id);
    sqlite3_bind_int64(st, 2, at);
    if (sqlite3_bind_parameter_count(st) >= 3)
      sqlite3_bind_text(st, 3, m->error, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
      rc = YM_EIO;
    sqlite3_finalize(st);
    if (rc == 0 && what != NULL)
      rc = log_row(db, m, what, now);
  }
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc != 0)
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* ---- libcurl on the worker thread ---- */

typedef struct {
  const char *data;
  size_t len, off;
} reader_t;

static size_t on_read(char *buf, size_t size, size_t nmemb, void *userp) {
  reader_t *r = userp;
  size_t n = size * nmemb;
  if (n > r->len - r->off)
    n = r->len - r->off;
  memcpy(buf, r->data + r->off, n);
  r->off += n;
  return n;
}

typedef struct {
  size_t total;
  char head[200];
} answer_t;

static size_t on_write(char *buf, size_t size, size_t nmemb, void *userp) {
  answer_t *a = userp;
  size_t n = size * nmemb;
  if (a->total < sizeof(a->head) - 1) {
    size_t k = sizeof(a->head) - 1 - a->total < n ? sizeof(a->head) - 1 - a->total : n;
    memcpy(a->head + a->total, buf, k);
  }
  a->total += n;
  return a->total > ANSWER_MAX ? 0 : n; /* a larger answer is cut short */
}

static int on_progress(void *userp, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
  notify_t *n = userp;
  (void)dt, (void)dn, (void)ut, (void)un;
  return atomic_load(&n->abort) ? 1 : 0;
}

static void curl_common(notify_t *n, CURL *e, char *errbuf) {
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, n);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 15L);
}

/* Keeps a printable, one-line error. */
static void set_error(msg_t *m, const char *what, CURLcode res, const char *errbuf) {
  char raw[ERROR_MAX];
  snprintf(raw, sizeof(raw), "%s: %s", what, errbuf[0] ? errbuf : curl_easy_strerror(res));
  ym_buf_t b;
  ym_buf_init(&b, ERROR_MAX + 8);
  notify_text_clean(raw, ERROR_MAX - 1, &b);
  snprintf(m->error, sizeof(m->error), "%s", b.data != NULL ? b.data : what);
  ym_buf_free(&b);
}

/* Sends one e-mail with *ep, the batch's SMTP handle (created on first
 * use, reset between messages): libcurl keeps its connection, so a batch
 * to one server pays for one connection and one TLS handshake. */
static void send_email(notify_t *n, msg_t *m, int64_t now, CURL **ep) {
  ym_buf_t mail;
  ym_buf_init(&mail, 4 * NOTIFY_BODY_MAX);
  if (n->smtp_url == NULL) {
    m->rc = YM_ENOTSUP;
    snprintf(m->error, sizeof(m->error), "no SMTP server configured (--smtp-url)");
    return;
  }
  if (notify_text_mail(n->smtp_from, m->recipient, m->subject, m->body, m->id, now, &mail) != 0) {
    m->rc = YM_EINVAL, m->permanent = true;
    snprintf(m->error, sizeof(m->error), "cannot build the message");
    ym_buf_free(&mail);
    return;
  }
  if (*ep == NULL)
    *ep = curl_easy_init();
  else
    curl_easy_reset(*ep);
  CURL *e = *ep;
  if (e == NULL) {
    m->rc = YM_ENOMEM;
    snprintf(m->error, sizeof(m->error), "out of memory");
    ym_buf_free(&mail);
    return;
  }
  char errbuf[CURL_ERROR_SIZE] = "", from[NOTIFY_EMAIL_MAX + 3], to[NOTIFY_EMAIL_MAX + 3];
  snprintf(from, sizeof(from), "<%s>", n->smtp_from);
  snprintf(to, sizeof(to), "<%s>", m->recipient);
  struct curl_slist *rcpt = curl_slist_append(NULL, to);
  reader_t r = {mail.data, mail.len, 0};
  curl_common(n, e, errbuf);
  curl_easy_setopt(e, CURLOPT_URL, n->smtp_url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  if (strncmp(n->smtp_url, "smtp://", 7) == 0)
    curl_easy_setopt(e, CURLOPT_USE_SSL,
                     n->o.smtp_plain ? (long)CURLUSESSL_NONE : (long)CURLUSESSL_ALL);
  if (n->smtp_ca_file != NULL)
    curl_easy_setopt(e, CURLOPT_CAINFO, n->smtp_ca_file);
  if (n->smtp_user != NULL) {
    curl_easy_setopt(e, CURLOPT_USERNAME, n->smtp_user);
    curl_easy_setopt(e, CURLOPT_PASSWORD, n->smtp_password != NULL ? n->smtp_password : "");
  }
  curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
  curl_easy_setopt(e, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
  curl_easy_setopt(e, CURLOPT_READDATA, &r);
  curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)mail.len);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, 120L);
  CURLcode res = rcpt == NULL ? CURLE_OUT_OF_MEMORY : curl_easy_perform(e);
  /* The handle outlives this frame: drop the pointers into it. */
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
  curl_easy_setopt(e, CURLOPT_MAIL_RCPT, NULL);
  curl_easy_setopt(e, CURLOPT_READDATA, NULL);
  if (res == CURLE_OK) {
    m->rc = 0;
  } else if (res == CURLE_ABORTED_BY_CALLBACK) {
    m->rc = YM_ECANCELED;
  } else {
    m->rc = YM_EIO;
    set_error(m, "smtp", res, errbuf);
    m->server_down = res == CURLE_COULDNT_RESOLVE_HOST || res == CURLE_COULDNT_CONNECT ||
                     res == CURLE_OPERATION_TIMEDOUT || res == CURLE_SSL_CONNECT_ERROR ||
                     res == CURLE_PEER_FAILED_VERIFICATION || res == CURLE_USE_SSL_FAILED ||
                     res == CURLE_LOGIN_DENIED || res == CURLE_GOT_NOTHING ||
                     res == CURLE_WEIRD_SERVER_REPLY || res == CURLE_SSL_CACERT_BADFILE;
  }
  curl_slist_free_all(rcpt);
  /* After a failure the connection may be in any state: start afresh. */
  if (m->rc != 0) {
    curl_easy_cleanup(e);
    *ep = NULL;
  }
  ym_buf_free(&mail);
}

static void send_webhook(notify_t *n, msg_t *m) {
  CURL *e = curl_easy_init();
  struct curl_slist *h = NULL;
  char line[160], hex[65], errbuf[CURL_ERROR_SIZE] = "";
  answer_t a = {0};
  if (e == NULL) {
    m->rc = YM_ENOMEM;
    snprintf(m->error, sizeof(m->error), "out of memory");
    return;
  }
  h = curl_slist_append(h, "Content-Type: application/json; charset=utf-8");
  h = curl_slist_append(h, "Expect:");
  snprintf(line, sizeof(line), "X-Yamori-Event: incident.%s", m->change);
  h = curl_slist_append(h, line);
  snprintf(line, sizeof(line), "X-Yamori-Delivery: %lld", (long long)m->id);
  h = curl_slist_append(h, line);
  if (m->secret[0] != '\0' && notify_sign(m->secret, m->payload, strlen(m->payload), hex) == 0) {
    snprintf(line, sizeof(line), "X-Yamori-Signature: sha256=%s", hex);
    h = curl_slist_append(h, line);
  }
  curl_common(n, e, errbuf);
  curl_easy_setopt(e, CURLOPT_URL, m->recipient);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  snprintf(line, sizeof(line), "yamori-console/%s", ym_version());
  curl_easy_setopt(e, CURLOPT_USERAGENT, line);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, m->payload);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(m->payload));
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &a);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)n->o.webhook_timeout_s);
  CURLcode res = curl_easy_perform(e);
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (res == CURLE_ABORTED_BY_CALLBACK) {
    m->rc = YM_ECANCELED;
  } else if ((res == CURLE_OK || res == CURLE_WRITE_ERROR) && status >= 200 && status < 300) {
    m->rc = 0;
  } else if (res != CURLE_OK) {
    m->rc = YM_EIO;
    set_error(m, "webhook", res, errbuf);
  } else {
    m->rc = YM_EIO;
    /* Redirects are not followed and 4xx answers (but 408 and 429) will
     * not change by themselves: the settings are wrong. */
    m->permanent = (status >= 300 && status < 500 && status != 408 && status != 429);
    char what[64];
    snprintf(what, sizeof(what), "webhook answered %ld", status);
    snprintf(errbuf, sizeof(errbuf), "%s", a.head);
    set_error(m, what, res, errbuf[0] ? errbuf : "(no body)");
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(e);
}

static void send_work(uv_work_t *w) {
  job_t *j = w->data;
  CURL *mail = NULL;
  const msg_t *down = NULL; /* the mail server failed: the batch's other e-mails wait */
  for (size_t i = 0; i < j->count && !atomic_load(&j->n->abort); i++) {
    msg_t *m = &j->m[i];
    if (m->webhook) {
      send_webhook(j->n, m);
    } else if (down != NULL) {
      m->rc = YM_EIO;
      snprintf(m->error, sizeof(m->error), "%s", down->error);
    } else {
      send_email(j->n, m, now_ms(), &mail);
      if (m->rc != 0 && m->server_down)
        down = m;
    }
  }
  if (mail != NULL)
    curl_easy_cleanup(mail);
}

static void poll_now(notify_t *n);
static void maybe_free(notify_t *n);

static void finish_done(int rc, void *data) {
  job_t *j = data;
  notify_t *n = j->n;
  bool full = j->count == BATCH_MAX;
  (void)rc;
  for (size_t i = 0; i < j->count; i++) {
    if (j->m[i].rc == 0)
      n->stats.sent++;
    else if (j->m[i].rc != YM_ECANCELED &&
             (j->m[i].permanent || j->m[i].attempts + 1 >= n->o.max_attempts))
      n->stats.failed++;
    else if (j->m[i].rc != YM_ECANCELED)
      n->stats.retried++;
  }
  n->stats.in_flight = 0;
  n->job = NULL;
  job_free(j);
  if (n->closing) {
    maybe_free(n);
    return;
  }
  if (full || n->again) {
    n->again = false;
    poll_now(n);
  }
}

static void send_done(uv_work_t *w, int status) {
  job_t *j = w->data;
  (void)status;
  store_call(j->n->store, finish_fn, j, finish_done, j);
}

static void claim_done(int rc, void *data) {
  job_t *j = data;
  notify_t *n = j->n;
  if (rc == 0 && j->count > 0 && n->closing) {
    send_done(&j->work, 0); /* stopping: the claimed messages are released */
    return;
  }
  if (rc != 0 || j->count == 0 || n->closing) {
    n->job = NULL;
    job_free(j);
    if (n->closing)
      maybe_free(n);
    else if (n->again) {
      n->again = false;
      poll_now(n);
    }
    return;
  }
  n->stats.in_flight = j->count;
  if (uv_queue_work(n->loop, &j->work, send_work, send_done) != 0)
    send_done(&j->work, 0); /* nothing tried: every message is released */
}

static void poll_now(notify_t *n) {
  if (n->closing)
    return;
  if (n->job != NULL) {
    n->again = true;
    return;
  }
  job_t *j = calloc(1, sizeof(*j));
  if (j == NULL)
    return;
  j->n = n;
  j->work.data = j;
  j->now = now_ms();
  if (j->now - n->pruned_ms >= PRUNE_EVERY_MS) {
    j->prune = true;
    n->pruned_ms = j->now;
  }
  n->job = j;
  n->stats.polls++;
  store_call(n->store, claim_fn, j, claim_done, j);
}

static void on_timer(uv_timer_t *t) {
  poll_now(t->data);
}

static void scrub_free(char *s) {
  if (s != NULL)
    OPENSSL_cleanse(s, strlen(s));
  free(s);
}

static void maybe_free(notify_t *n) {
  if (!n->timer_closed || n->job != NULL)
    return;
  free(n->smtp_url);
  free(n->smtp_from);
  free(n->smtp_user);
  scrub_free(n->smtp_password);
  free(n->smtp_ca_file);
  free(n);
}

static void on_timer_closed(uv_handle_t *h) {
  notify_t *n = h->data;
  n->timer_closed = true;
  maybe_free(n);
}

static int set_url_fn(sqlite3 *db, void *arg) {
  return notify_set_console_url_db(db, arg);
}

static int set_grace_fn(sqlite3 *db, void *arg) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "INSERT INTO notify_config(key, value) VALUES('grace_ms', ?1)"
                         " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  sqlite3_finalize(st);
  return rc;
}

static void set_url_done(int rc, void *data) {
  (void)rc;
  free(data);
}

static char *dup_opt(const char *s) {
  return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

int notify_new(uv_loop_t *loop, store_t *store, const notify_opts_t *opts, notify_t **out) {
  *out = NULL;
  const char *url = opts->smtp_url;
  bool mail = url != NULL && url[0] != '\0';
  /* A login inside the URL would put the password on the command line:
   * it belongs in smtp_user and smtp_password. */
  const char *auth = mail ? strstr(url, "://") : NULL;
  if (mail && ((strncmp(url, "smtp://", 7) != 0 && strncmp(url, "smtps://", 8) != 0) ||
               !notify_text_email_valid(opts->smtp_from) || strpbrk(url, " \r\n") != NULL ||
               auth == NULL || memchr(auth + 3, '@', strcspn(auth + 3, "/?#")) != NULL))
    return YM_EINVAL;
  if (opts->console_url != NULL && opts->console_url[0] != '\0' &&
      !notify_text_url_valid(opts->console_url))
    return YM_EINVAL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return YM_ENOMEM;
  notify_t *n = calloc(1, sizeof(*n));
  if (n == NULL)
    return YM_ENOMEM;
  n->loop = loop;
  n->store = store;
  n->o = *opts;
  if (n->o.webhook_timeout_s == 0)
    n->o.webhook_timeout_s = 10;
  if (n->o.poll_ms == 0)
    n->o.poll_ms = 1000;
  if (n->o.backoff_ms == 0)
    n->o.backoff_ms = 30 * 1000;
  if (n->o.backoff_max_ms == 0)
    n->o.backoff_max_ms = 3600 * 1000;
  if (n->o.backoff_max_ms < n->o.backoff_ms)
    n->o.backoff_max_ms = n->o.backoff_ms;
  if (n->o.max_attempts == 0)
    n->o.max_attempts = 12;
  if (n->o.grace_ms == 0)
    n->o.grace_ms = NOTIFY_GRACE_MS;
  n->smtp_url = mail ? strdup(url) : NULL;
  n->smtp_from = dup_opt(opts->smtp_from);
  n->smtp_user = dup_opt(opts->smtp_user);
  n->smtp_password = dup_opt(opts->smtp_password);
  n->smtp_ca_file = dup_opt(opts->smtp_ca_file);
  /* The strings of the copy belong to the caller. */
  n->o.smtp_url = n->o.smtp_from = n->o.smtp_user = n->o.smtp_password = NULL;
  n->o.smtp_ca_file = n->o.console_url = NULL;
  /* The links of messages enqueued from now on (by any thread) use it. */
  char *link = dup_opt(opts->console_url);
  if (link != NULL)
    store_call(store, set_url_fn, link, set_url_done, link);
  char *grace = malloc(24);
  if (grace != NULL) {
    snprintf(grace, 24, "%u", n->o.grace_ms);
    store_call(store, set_grace_fn, grace, set_url_done, grace);
  }
  store_on_batch(store, on_batch, NULL);
  uv_timer_init(loop, &n->timer);
  n->timer.data = n;
  uv_timer_start(&n->timer, on_timer, 200, n->o.poll_ms);
  *out = n;
  return 0;
}

void notify_kick(notify_t *n) {
  if (n != NULL)
    poll_now(n);
}

void notify_free(notify_t *n) {
  if (n == NULL || n->closing)
    return;
  n->closing = true;
  atomic_store(&n->abort, 1);
  uv_timer_stop(&n->timer);
  uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}

void notify_stats(notify_t *n, notify_stats_t *out) {
  *out = n->stats;
}

/* ================================================================ */
/* Command line                                                       */

static int tenant_id_by_name(sqlite3 *db, const char *name, int64_t *id) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT id FROM tenants WHERE name = ?1", -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int step = sqlite3_step(st);
  if (step == SQLITE_ROW)
    *id = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return step == SQLITE_ROW ? 0 : step == SQLITE_DONE ? YM_ENOENT : YM_EIO;
}

typedef struct {
  const char *tenant;
  const notify_settings_t *set;
  const char **bad;
  char *emails_json;
} settings_arg_t;

/* Runs one statement with ?1 tenant id and ?2 text. */
static int exec_bind(sqlite3 *db, const char *sql, int64_t id, const char *text) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, id);
  if (text != NULL)
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : YM_EIO;
  sqlite3_finalize(st);
  return rc;
}

static int settings_fn(sqlite3 *db, void *arg) {
  settings_arg_t *a = arg;
  const notify_settings_t *set = a->set;
  int64_t id;
  int rc = tenant_id_by_name(db, a->tenant, &id);
  if (rc != 0)
    return rc;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return YM_EIO;
  rc = exec_bind(db, "INSERT INTO tenant_settings(tenant_id) VALUES(?1) ON CONFLICT DO NOTHING", id,
                 NULL);
  if (rc == 0 && set->lang != NULL)
    rc = exec_bind(db, "UPDATE tenant_settings SET lang = ?2 WHERE tenant_id = ?1", id, set->lang);
  if (rc == 0 && a->emails_json != NULL)
    rc = exec_bind(db, "UPDATE tenant_settings SET emails = ?2 WHERE tenant_id = ?1", id,
                   a->emails_json);
  if (rc == 0 && set->webhook_url != NULL)
    rc = exec_bind(db, "UPDATE tenant_settings SET webhook_url = ?2 WHERE tenant_id = ?1", id,
                   set->webhook_url);
  if (rc == 0 && set->helpdesk != NULL)
    rc = exec_bind(db, "UPDATE tenants SET helpdesk = ?2 WHERE id = ?1", id, set->helpdesk);
  if (rc == 0 && set->webhook_secret != NULL)
    rc = exec_bind(db,
                   "INSERT INTO notify_tenant(tenant_id, webhook_secret) VALUES(?1, ?2)"
                   " ON CONFLICT(tenant_id) DO UPDATE SET webhook_secret = excluded.webhook_secret",
                   id, set->webhook_secret);
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc != 0)
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* Turns "a@b, c@d" into a JSON array, checking each address. */
static int emails_to_json(const char *list, char **out) {
  cJSON *arr = cJSON_CreateArray();
  int rc = 0, count = 0;
  for (const char *p = list; *p != '\0' && rc == 0;) {
    size_t n = strcspn(p, ",");
    char addr[NOTIFY_EMAIL_MAX + 1];
    while (n > 0 && *p == ' ')
      p++, n--;
    while (n > 0 && p[n - 1] == ' ')
      n--;
    if (n > 0) {
      if (n > NOTIFY_EMAIL_MAX || ++count > NOTIFY_RECIPIENTS_MAX)
        rc = YM_EINVAL;
      else {
        snprintf(addr, sizeof(addr), "%.*s", (int)n, p);
        if (!notify_text_email_valid(addr))
          rc = YM_EINVAL;
        else
          cJSON_AddItemToArray(arr, cJSON_CreateString(addr));
      }
    }
    p += strcspn(p, ",");
    if (*p == ',')
      p++;
  }
  *out = rc == 0 ? cJSON_PrintUnformatted(arr) : NULL;
  cJSON_Delete(arr);
  return rc == 0 && *out == NULL ? YM_ENOMEM : rc;
}

int notify_sync_settings(store_t *s, const char *tenant, const notify_settings_t *set,
                         const char **bad) {
  settings_arg_t a = {tenant, set, bad, NULL};
  *bad = NULL;
  if (set->lang != NULL && strcmp(set->lang, "ja") != 0 && strcmp(set->lang, "en") != 0)
    *bad = "lang";
  else if (set->webhook_url != NULL && set->webhook_url[0] != '\0' &&
           !notify_text_url_valid(set->webhook_url))
    *bad = "webhook";
  else if (set->webhook_secret != NULL && strlen(set->webhook_secret) > NOTIFY_SECRET_MAX)
    *bad = "webhook-secret";
  else if (set->helpdesk != NULL && (strlen(set->helpdesk) > NOTIFY_HELPDESK_MAX ||
                                     !ym_json_utf8_valid(set->helpdesk, strlen(set->helpdesk))))
    *bad = "helpdesk";
  else if (set->emails != NULL && emails_to_json(set->emails, &a.emails_json) != 0)
    *bad = "emails";
  if (*bad != NULL)
    return YM_EINVAL;
  int rc = store_sync_call(s, settings_fn, &a);
  free(a.emails_json);
  return rc;
}

typedef struct {
  const char *tenant;
  int n;
} test_arg_t;

static int test_fn(sqlite3 *db, void *arg) {
  test_arg_t *a = arg;
  int64_t id;
  int rc = tenant_id_by_name(db, a->tenant, &id);
  if (rc != 0)
    return rc;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return YM_EIO;
  rc = notify_enqueue_test_db(db, id, &a->n);
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc != 0)
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int notify_sync_test(store_t *s, const char *tenant, int *n) {
  test_arg_t a = {tenant, 0};
  int rc = store_sync_call(s, test_fn, &a);
  *n = a.n;
  return rc;
}

typedef struct {
  int64_t id;
  const char *change;
} enqueue_arg_t;

static int enqueue_fn(sqlite3 *db, void *arg) {
  enqueue_arg_t *a = arg;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return YM_EIO;
  int rc = notify_enqueue_db(db, a->id, a->change);
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (rc != 0)
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int notify_sync_enqueue(store_t *s, int64_t incident_id, const char *change) {
  enqueue_arg_t a = {incident_id, change};
  return store_sync_call(s, enqueue_fn, &a);
}

int notify_sync_console_url(store_t *s, const char *url) {
  return store_sync_call(s, set_url_fn, (void *)url);
}

typedef struct {
  int64_t limit;
  const char *tenant;
  void (*fn)(const notify_row_t *row, void *data);
  void *data;
} list_arg_t;

static int list_fn(sqlite3 *db, void *arg) {
  list_arg_t *a = arg;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT o.id, coalesce(o.incident_id, 0), o.attempts, o.next_at_ms,"
                         " o.created_ms, coalesce(o.sent_ms, 0), t.name, o.change, o.channel,"
                         " o.recipient, o.subject, o.state, o.last_error"
                         " FROM notify_outbox o JOIN tenants t ON t.id = o.tenant_id"
                         " WHERE ?2 IS NULL OR t.name = ?2 ORDER BY o.id DESC LIMIT ?1",
                         -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_int64(st, 1, a->limit);
  if (a->tenant != NULL)
    sqlite3_bind_text(st, 2, a->tenant, -1, SQLITE_STATIC);
  int step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW) {
    char origin[NOTIFY_URL_MAX];
    notify_row_t r = {sqlite3_column_int64(st, 0),
                      sqlite3_column_int64(st, 1),
                      sqlite3_column_int64(st, 2),
                      sqlite3_column_int64(st, 3),
                      sqlite3_column_int64(st, 4),
                      sqlite3_column_int64(st, 5),
                      col(st, 6),
                      col(st, 7),
                      col(st, 8),
                      col(st, 9),
                      col(st, 10),
                      col(st, 11),
                      col(st, 12)};
    if (strcmp(r.channel, "webhook") == 0) {
      url_origin(r.recipient, origin, sizeof(origin));
      r.recipient = origin;
    }
    a->fn(&r, a->data);
  }
  sqlite3_finalize(st);
  return step == SQLITE_DONE ? 0 : YM_EIO;
}

int notify_sync_list(store_t *s, const char *tenant, int64_t limit,
                     void (*fn)(const notify_row_t *row, void *data), void *data) {
  list_arg_t a = {limit, tenant, fn, data};
  return store_sync_call(s, list_fn, &a);
}
