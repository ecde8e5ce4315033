/*
 * Anonymised statistics for the scheme's reporting: counts over all
 * tenants for a period, without any company's name, PC name, path or
 * person (docs/console.md, "Statistics").
 */
#ifndef YAMORI_CONSOLE_STATS_H
#define YAMORI_CONSOLE_STATS_H

#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdint.h>

/* Fills out (an object) with the counts of [from_ms, to_ms). */
int stats_json(sqlite3 *db, int64_t from_ms, int64_t to_ms, cJSON *out);

#endif
