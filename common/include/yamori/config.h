/*
 * Typed configuration tables.
 *
 * A program describes its configuration once, as an array of ym_cfg_field_t
 * (name, type, bounds, default, offset into its config struct, optional
 * check function, documentation). That one table drives parsing from JSON,
 * validation, defaults, and the generated docs/config.md table.
 *
 * Names are dotted paths ("exclude.paths") that match nested JSON objects
 * ({"exclude": {"paths": [...]}}). Unknown keys, duplicate keys, wrong types
 * and out-of-range values are errors that name the key.
 *
 * Storage by type: YM_CFG_BOOL bool, YM_CFG_INT long long, YM_CFG_STRING
 * char * (owned), YM_CFG_STRLIST ym_strlist_t (owned), YM_CFG_ENUM int (the
 * index into choices).
 */
#ifndef YAMORI_CONFIG_H
#define YAMORI_CONFIG_H

#include "yamori/buf.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum { YM_CFG_BOOL, YM_CFG_INT, YM_CFG_STRING, YM_CFG_STRLIST, YM_CFG_ENUM } ym_cfg_type_t;

typedef struct {
  char **v;
  size_t n;
} ym_strlist_t;

typedef struct ym_cfg_field {
  const char *name;
  ym_cfg_type_t type;
  /* INT: allowed values; STRING: allowed length in bytes; STRLIST: max
   * number of items (min unused) and each item at most 4096 bytes. */
  long long min, max;
  const char *def; /* default, as JSON text: "250", "true", "\"-\"", "[]" */
  size_t offset;
  const char *const *choices; /* ENUM: NULL-terminated list */
  /* Optional extra check on the parsed value (a pointer to the storage).
   * Returns 0, or writes a reason into msg and returns YM_EINVAL. */
  int (*check)(const void *value, char *msg, size_t msglen);
  const char *doc;
} ym_cfg_field_t;

typedef struct {
  int code;      /* the YM_E* code */
  char key[128]; /* the dotted key at fault, "" for the document itself */
  char msg[256]; /* one line, names the key and what is wrong */
} ym_cfg_error_t;

#define YM_CFG_MAX_FILE (1024 * 1024)
#define YM_CFG_MAX_ITEM 4096

/* Fills out (a zeroed struct) with the defaults of every field. */
int ym_config_defaults(const ym_cfg_field_t *t, size_t n, void *out, ym_cfg_error_t *err);

/* Applies the defaults, then the JSON document text[0..len). On success out
 * holds a complete configuration the caller frees with ym_config_free(). On
 * error everything is freed, out is zeroed, err says what and where: the
 * caller's previous configuration (in another struct) is untouched. */
int ym_config_parse(const ym_cfg_field_t *t, size_t n, void *out, const char *text, size_t len,
                    ym_cfg_error_t *err);

/* Reads path (at most YM_CFG_MAX_FILE bytes, regular file) and parses it. */
int ym_config_load_file(const ym_cfg_field_t *t, size_t n, void *out, const char *path,
                        ym_cfg_error_t *err);

/* Frees the owned strings and lists of out and zeroes them. */
void ym_config_free(const ym_cfg_field_t *t, size_t n, void *out);

/* Appends a Markdown table (key, type, default, bounds, description). */
int ym_config_doc_markdown(const ym_cfg_field_t *t, size_t n, ym_buf_t *b);

/* Returns true when s starts with one of list's items followed by '/' or the
 * end of s (path-prefix matching used for exclusions). */
bool ym_strlist_has_path_prefix(const ym_strlist_t *list, const char *s);

#endif
