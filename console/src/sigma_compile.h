/*
 * Sigma rule compiler (docs/behaviour.md).
 *
 * Reads Sigma rules (specification v2, YAML) and turns the ones it can run
 * into the compact JSON form the agent's evaluator (agent/src/sigma.h)
 * loads. The agent never parses YAML: everything the YAML could do wrong is
 * checked here, and again, more cheaply, by the agent's loader.
 *
 * Each rule is accepted or refused as a whole. A refusal names the rule
 * file and the line of the construct refused, with the reason: an unknown
 * modifier, a Sigma field the agent has no ECS field for, a log source the
 * agent does not produce, the deprecated aggregation syntax, a regex PCRE2
 * rejects. Hostile input is bounded: files, scalars, lists, nesting and
 * node counts have caps, YAML anchors and aliases are refused (no alias
 * expansion, so no "billion laughs"), invalid UTF-8 is refused with its line.
 *
 * Sigma field names are mapped to the ECS fields of docs/events.md through
 * one table (sigma_compile_mappings()); a rule may also name an ECS field
 * of the agent's schema directly. A mapped field the agent does not emit
 * yet is a warning, or a refusal with SIGMA_STRICT.
 *
 * Usage: sigma_compiler_new(), sigma_compile_text() or sigma_compile_file()
 * per rule file, then sigma_compiler_output() and the per-rule report.
 */
#ifndef YAMORI_SIGMA_COMPILE_H
#define YAMORI_SIGMA_COMPILE_H

#include <stdbool.h>
#include <stddef.h>

/* Refuse rules that use fields the agent does not emit yet. */
#define SIGMA_STRICT 1u

/* Caps on one rule file (hostile input). */
#define SIGMA_MAX_FILE_BYTES (1024 * 1024)
#define SIGMA_MAX_DEPTH 16
#define SIGMA_MAX_NODES 20000
#define SIGMA_MAX_LIST 4096
#define SIGMA_MAX_SCALAR 8192
#define SIGMA_MAX_EXPANSION 256 /* variants one value may expand to (windash) */

typedef struct sigma_compiler sigma_compiler_t;

/* One line of the report: a rule (or a file that held no rule). */
typedef struct {
  char file[256];
  unsigned line; /* of the construct refused, or of the rule's start */
  char id[80];
  char title[160];
  bool accepted;
  bool correlation;
  char reason[320]; /* why refused, or warnings of an accepted rule ("" when none) */
} sigma_report_t;

/* One row of the field-mapping table. */
typedef struct {
  const char *sigma;    /* Sigma field name */
  const char *category; /* log source category it applies to, NULL for all */
  const char *ecs;      /* ECS field of docs/events.md */
  const char *note;     /* value transformation, or NULL */
} sigma_mapping_t;

/* The mapping table; *n receives its length. */
const sigma_mapping_t *sigma_compile_mappings(size_t *n);

/* True when the agent's event schema has the field (it emits it today). */
bool sigma_compile_field_emitted(const char *ecs);

sigma_compiler_t *sigma_compiler_new(unsigned flags);
void sigma_compiler_free(sigma_compiler_t *c);

/* Compiles one rule file's text (len bytes, any number of YAML documents).
 * name is the file name used in the report. Accepted rules are added to the
 * output; every rule gets a report line. Returns 0 when every rule of the
 * file was accepted, YM_EPARSE when one or more were refused (or the file
 * as a whole was: bad UTF-8, bad YAML, over a cap), YM_ENOMEM. */
int sigma_compile_text(sigma_compiler_t *c, const char *name, const char *text, size_t len);

/* The same for a file read from path (at most SIGMA_MAX_FILE_BYTES;
 * O_NOFOLLOW). Returns also YM_ENOENT, YM_ETOOBIG, YM_EIO. */
int sigma_compile_file(sigma_compiler_t *c, const char *path);

/* Compiles path: a rule file, or every .yml/.yaml file below a directory
 * (sorted, at most 8 levels, symbolic links not followed). Files below
 * base (NULL: none) are named relative to it in the report and in the
 * rules' source, so that a compiled set does not carry the publishing
 * machine's directories. *files receives the number of rule files found.
 * Returns 0 when every rule was accepted, YM_EPARSE when one was refused,
 * YM_ENOMEM. */
int sigma_compile_tree(sigma_compiler_t *c, const char *path, const char *base, size_t *files);

size_t sigma_compiler_report_count(const sigma_compiler_t *c);
const sigma_report_t *sigma_compiler_report(const sigma_compiler_t *c, size_t i);
size_t sigma_compiler_accepted(const sigma_compiler_t *c);

/* The compact JSON of every accepted rule (caller frees with free()), or
 * NULL when out of memory. Correlations whose rules are not in the set are
 * refused here (their report lines change), so call it after the last
 * file. */
char *sigma_compiler_output(sigma_compiler_t *c);

/* `yamori-console rules compile-sigma [--strict] IN... -o OUT.json`:
 * argv[0] is "compile-sigma". Prints one line per rule, writes OUT
 * (mode 0644, replaced atomically). Returns the process exit code: 0 when
 * written, 1 when a rule was refused under --strict or nothing could be
 * written, 64 on usage errors. */
int sigma_compile_main(int argc, char **argv);

/* `yamori-console rules import-sigma DIR [--tenant NAME] [-o OUT]`: argv[0]
 * is "import-sigma". Compiles a provider's Sigma collection (used
 * unchanged), prints one line per rule, accepted or refused and why, and a
 * summary, and writes the accepted rules to OUT/sigma/import-NAME.json
 * (NAME: DIR's last component), where `rules publish OUT` packs them. OUT
 * defaults to DATA_DIR/rules/TENANT with --tenant. Returns 0 when written,
 * 1 when nothing was accepted or could be written, 64 on usage errors. */
int sigma_import_main(const char *data_dir, int argc, char **argv);

#endif
