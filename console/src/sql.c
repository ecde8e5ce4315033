#include "sql.h"

#include "yamori/err.h"

#include <stddef.h>

sqlite3_stmt *sql_prep(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    sqlite3_finalize(st);
    return NULL;
  }
  return st;
}

int sql_done(sqlite3_stmt *st) {
  int r = st != NULL ? sqlite3_step(st) : SQLITE_ERROR;
  sqlite3_finalize(st);
  return r == SQLITE_DONE ? 0 : YM_EIO;
}

const char *sql_text(sqlite3_stmt *st, int c) {
  const unsigned char *v = sqlite3_column_text(st, c);
  return v != NULL ? (const char *)v : "";
}

int sql_begin(sqlite3 *db) {
  return sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : YM_EIO;
}

int sql_end(sqlite3 *db, int rc) {
  if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
    rc = YM_EIO;
  if (!sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}
