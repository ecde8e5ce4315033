/*
 * Small helpers for the console modules' own SQL (constant text, bound
 * values), used inside store_fn functions.
 */
#ifndef YAMORI_CONSOLE_SQL_H
#define YAMORI_CONSOLE_SQL_H

#include <sqlite3.h>

/* Prepares constant SQL; NULL on error (a bug, or the database is gone). */
sqlite3_stmt *sql_prep(sqlite3 *db, const char *sql);
/* Steps a statement that returns no row and finalizes it (NULL allowed).
 * Returns 0 or YM_EIO. */
int sql_done(sqlite3_stmt *st);
/* Column c as text, "" for NULL. */
const char *sql_text(sqlite3_stmt *st, int c);
/* BEGIN IMMEDIATE. Returns 0 or YM_EIO. */
int sql_begin(sqlite3 *db);
/* Commits when rc is 0 (YM_EIO if that fails), and rolls back whatever
 * is still open. Returns the final rc. */
int sql_end(sqlite3 *db, int rc);

#endif
