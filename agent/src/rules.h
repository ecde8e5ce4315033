/*
 * YARA rule sets: compiled from source files, shared read-only by the
 * scanner threads, reference counted so a reload can swap them while scans
 * run.
 *
 * Only YARA source (.yar / .yara) is ever compiled; compiled rule files are
 * never loaded. Each source file gets its own namespace (the file name
 * without extension). The external variables filename, filepath,
 * extension, filetype and owner are declared for every rule set.
 */
#ifndef YAMORI_AGENT_RULES_H
#define YAMORI_AGENT_RULES_H

#include "yamori/buf.h"
#include "yamori/config.h"

#include <stdatomic.h>
#include <yara.h>

#define RULES_MAX_FILES 1000
#define RULES_MAX_FILE_BYTES (4 * 1024 * 1024)
#define RULES_MAX_TOTAL_BYTES (32 * 1024 * 1024)

typedef struct {
  YR_RULES *yr;
  char version[17]; /* first 16 hex chars of SHA-256 over names and sources */
  unsigned count;   /* rules */
  unsigned files;
  atomic_int refs;
} rules_t;

/* Process-wide libyara setup; call once before anything else here. */
int rules_global_init(void);
void rules_global_free(void);

/* Compiles every *.yar / *.yara file directly in each directory of dirs
 * (sorted by name; subdirectories are not read). On error returns a
 * negative code and writes one line naming the file and line into err
 * (e.g. "rules/x.yar:12: syntax error, unexpected ..."); nothing is
 * returned then. The new set has one reference. */
int rules_compile(const ym_strlist_t *dirs, rules_t **out, char *err, size_t errlen);

/* An empty rule set (version "none"): what the agent scans with when its
 * rules cannot be compiled at start, so that monitoring still runs and a
 * later reload can bring rules in. */
int rules_empty(rules_t **out);

void rules_ref(rules_t *r);
/* Drops a reference; the last one frees the set. rules_unref(NULL) does
 * nothing. */
void rules_unref(rules_t *r);

#endif
