/*
 * ATT&CK techniques in words a person acts on (console side).
 *
 * Behaviour alerts name the ATT&CK techniques of their rule
 * (threat.technique.id). Incidents, notifications and the dashboard show
 * each one with a short title, a plain explanation and what to do, in
 * Japanese (the default) or English. The table covers every technique of
 * the default behaviour rules (the YAML of rules/sigma/linux; a unit test checks
 * it); a sub-technique that is not in it is shown with its parent's text,
 * and a technique not in it at all with its id only.
 */
#ifndef YAMORI_CONSOLE_TECHNIQUE_H
#define YAMORI_CONSOLE_TECHNIQUE_H

#include <stddef.h>

/* Languages of the texts: index into the arrays below. */
#define TECHNIQUE_JA 0
#define TECHNIQUE_EN 1

typedef struct {
  const char *id;       /* "T1053.003" */
  const char *title[2]; /* short title */
  const char *text[2];  /* what happened, and why it matters */
  const char *todo[2];  /* what to do */
} technique_t;

/* The entry for id ("T1053.003"), else for its parent technique
 * ("T1053"), else NULL. */
const technique_t *technique_find(const char *id);

/* The entry of the first id of a comma-separated list that has one (an
 * incident's technique column), else NULL. */
const technique_t *technique_first(const char *ids);

/* TECHNIQUE_EN for "en", else TECHNIQUE_JA. */
int technique_lang(const char *lang);

/* The whole table; *n receives its length. */
const technique_t *technique_table(size_t *n);

#endif
