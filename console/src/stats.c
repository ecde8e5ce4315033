#include "stats.h"

#include "yamori/err.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Runs a one-row, one-column count with ?1 = from and ?2 = to. */
static int64_t count(sqlite3 *db, const char *sql, int64_t from, int64_t to) {
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    if (sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return v;
}

static bool table_exists(sqlite3 *db, const char *name) {
  sqlite3_stmt *st = NULL;
  bool yes = false;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1,
                         &st, NULL) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    yes = sqlite3_step(st) == SQLITE_ROW;
  }
  sqlite3_finalize(st);
  return yes;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Median of (first notification - first alert) over the period's
 * incidents, in seconds; -1 when none was notified. */
static double median_notify_s(sqlite3 *db, int64_t from, int64_t to) {
  sqlite3_stmt *st = NULL;
  int64_t *v = NULL;
  size_t n = 0, cap = 0;
  if (sqlite3_prepare_v2(db,
                         "SELECT (SELECT MIN(at_ms) FROM incident_log l WHERE l.incident_id = i.id"
                         " AND l.what = 'notified') - i.first_ms FROM incidents i"
                         " WHERE i.first_ms >= ?1 AND i.first_ms < ?2",
                         -1, &st, NULL) != SQLITE_OK) {
    sqlite3_finalize(st);
    return -1;
  }
  sqlite3_bind_int64(st, 1, from);
  sqlite3_bind_int64(st, 2, to);
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (sqlite3_column_type(st, 0) == SQLITE_NULL)
      continue;
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      int64_t *nv = realloc(v, nc * sizeof(*v));
      if (nv == NULL)
        break;
      v = nv;
      cap = nc;
    }
    v[n++] = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  double m = -1;
  if (n > 0) {
    qsort(v, n, sizeof(*v), cmp_i64);
    m = (double)v[n / 2] / 1000.0;
  }
  free(v);
  return m;
}

int stats_json(sqlite3 *db, int64_t from, int64_t to, cJSON *out) {
  cJSON_AddNumberToObject(out, "from_ms", (double)from);
  cJSON_AddNumberToObject(out, "to_ms", (double)to);
  cJSON_AddNumberToObject(
      out, "companies",
      (double)count(db, "SELECT COUNT(DISTINCT tenant_id) FROM agents WHERE revoked = 0", from,
                    to));
  cJSON_AddNumberToObject(
      out, "pcs", (double)count(db, "SELECT COUNT(*) FROM agents WHERE revoked = 0", from, to));
  cJSON *alerts = cJSON_AddObjectToObject(out, "alerts");
  static const char *const sev[] = {"high", "medium", "low"};
  static const char *const sev_sql[] = {
      "SELECT COUNT(*) FROM events WHERE kind = 'alert' AND ts_ms >= ?1 AND ts_ms < ?2"
      " AND COALESCE(json_extract(json, '$.event.severity'), 73) >= 73",
      "SELECT COUNT(*) FROM events WHERE kind = 'alert' AND ts_ms >= ?1 AND ts_ms < ?2"
      " AND json_extract(json, '$.event.severity') BETWEEN 47 AND 72",
      "SELECT COUNT(*) FROM events WHERE kind = 'alert' AND ts_ms >= ?1 AND ts_ms < ?2"
      " AND json_extract(json, '$.event.severity') < 47",
  };
  for (int i = 0; i < 3; i++)
    cJSON_AddNumberToObject(alerts, sev[i], (double)count(db, sev_sql[i], from, to));
  cJSON *inc = cJSON_AddObjectToObject(out, "incidents");
  cJSON_AddNumberToObject(inc, "malware",
                          (double)count(db,
                                        "SELECT COUNT(*) FROM incidents WHERE kind = 'malware'"
                                        " AND first_ms >= ?1 AND first_ms < ?2",
                                        from, to));
  cJSON_AddNumberToObject(inc, "silent",
                          (double)count(db,
                                        "SELECT COUNT(*) FROM incidents WHERE kind = 'silent'"
                                        " AND first_ms >= ?1 AND first_ms < ?2",
                                        from, to));
  cJSON_AddNumberToObject(inc, "resolved",
                          (double)count(db,
                                        "SELECT COUNT(*) FROM incidents WHERE state = 'resolved'"
                                        " AND first_ms >= ?1 AND first_ms < ?2",
                                        from, to));
  double m = median_notify_s(db, from, to);
  if (m < 0)
    cJSON_AddNullToObject(out, "median_notify_s");
  else
    cJSON_AddNumberToObject(out, "median_notify_s", m);
  if (table_exists(db, "commands"))
    cJSON_AddNumberToObject(out, "remote_responses",
                            (double)count(db,
                                          "SELECT COUNT(*) FROM commands WHERE created_ms >= ?1"
                                          " AND created_ms < ?2",
                                          from, to));
  else
    cJSON_AddNumberToObject(out, "remote_responses", 0);
  return 0;
}
