/*
 * Behaviour rules: loader and evaluator of compiled Sigma rules (sigma.h).
 */
#include "sigma.h"

#include "yamori/err.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define MAX_ATOMS_PER_RULE 64
#define MAX_CATEGORIES 64
#define ANCHOR 4 /* bytes of an atom the prefilter hashes */

/* The text fields keyword searches ("*") look at. */
static const char *const keyword_fields[] = {
    "process.command_line",      "process.executable",        "process.parent.command_line",
    "process.parent.executable", "process.working_directory", "file.path",
    "yamori.file.original.path", "destination.domain",
};
#define NKEYWORD_FIELDS (sizeof keyword_fields / sizeof keyword_fields[0])

/* ---------------------------------------------------------------- */
/* Compiled form in memory                                            */

enum { N_AND, N_OR, N_NOT, N_MATCH };
enum {
  M_EXACT,
  M_PREFIX,
  M_SUFFIX,
  M_CONTAINS,
  M_GLOB,
  M_RE,
  M_CIDR,
  M_EXISTS,
  M_NULL,
  M_GT,
  M_GTE,
  M_LT,
  M_LTE,
  M_FIELDREF
};
static const char *const match_names[] = {"exact", "prefix", "suffix", "contains", "glob",
                                          "re",    "cidr",   "exists", "null",     "gt",
                                          "gte",   "lt",     "lte",    "fieldref"};

#define FIELD_KEYWORDS (-1)

typedef struct {
  char *s;
  size_t n;
} lit_t;

typedef struct {
  unsigned char addr[16];
  int family; /* 4 or 6 */
  int bits;
} cidr_t;

typedef struct node {
  int op;
  struct node **kid;
  size_t nkid;
  /* N_MATCH */
  int field; /* index, or FIELD_KEYWORDS */
  int match;
  bool all, cased, exists;
  double num;
  lit_t *val;
  size_t nval;
  pcre2_code **re;
  cidr_t *cidr;
  int *ref; /* fieldref: field indexes */
} node_t;

enum { C_EVENT_COUNT, C_VALUE_COUNT, C_TEMPORAL, C_TEMPORAL_ORDERED };

/* A correlation rule: what it counts, over which rules, per which group. */
typedef struct {
  int type;
  uint32_t *rules; /* indexes of the base rules */
  size_t nrules;
  int *group; /* group-by fields */
  size_t ngroup;
  int field; /* value_count: the field whose distinct values count */
  int64_t span_ns;
  uint32_t need; /* events or distinct values that fire it */
} corr_t;

typedef struct {
  char *id, *name, *title, *level, *description;
  int severity;
  char **tags, **techniques, **refs;
  size_t ntags, ntechniques, nrefs;
  int category;  /* index in rs->cats */
  char *product; /* NULL: any */
  node_t *root;
  corr_t *corr;     /* correlation rules only */
  uint32_t *incorr; /* base rules: correlation index * 64 + position in its list */
  size_t nincorr;
} rule_t;

/* A literal the prefilter looks for: one of a rule's atoms. */
typedef struct {
  int field;
  uint32_t rule;
  lit_t lit; /* lowercased; points into the rule's matcher */
} atom_t;

/* The rules of one log source category and their prefilter. */
typedef struct {
  char *name;
  uint32_t *always; /* rules without atoms */
  size_t nalways;
  atom_t *atoms;
  size_t natoms;
  /* Hash of (field, first ANCHOR bytes) → chain of atoms (atoms with at
   * least ANCHOR bytes); next[] links atoms of the same slot. */
  uint32_t *slot; /* 1-based atom index, 0 empty */
  uint32_t *next;
  size_t nslot;
  uint32_t *shorts; /* atoms shorter than ANCHOR */
  size_t nshorts;
  int *fields; /* fields with atoms */
  size_t nfields;
} bucket_t;

struct sigma_ruleset {
  int *ymf; /* per field: the agent's schema field, or -1 */
  rule_t *rules;
  size_t nrules;
  rule_t *corrs; /* correlation rules (corr set, root NULL) */
  size_t ncorrelations;
  char **fields;
  size_t nfields;
  int kwfields[NKEYWORD_FIELDS];
  bucket_t cats[MAX_CATEGORIES];
  size_t ncats;
  size_t unfiltered;
};

/* ---------------------------------------------------------------- */
/* Small helpers                                                      */

static void lower(char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] >= 'A' && s[i] <= 'Z')
      s[i] = (char)(s[i] - 'A' + 'a');
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d == NULL)
    return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static void node_free(node_t *n) {
  if (n == NULL)
    return;
  for (size_t i = 0; i < n->nkid; i++)
    node_free(n->kid[i]);
  free(n->kid);
  for (size_t i = 0; i < n->nval; i++) {
    free(n->val[i].s);
    if (n->re)
      pcre2_code_free(n->re[i]);
  }
  free(n->val);
  free(n->re);
  free(n->cidr);
  free(n->ref);
  free(n);
}

static void strv_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

void sigma_ruleset_free(sigma_ruleset_t *rs) {
  if (rs == NULL)
    return;
  for (size_t i = 0; i < rs->nrules + rs->ncorrelations; i++) {
    rule_t *r = i < rs->nrules ? &rs->rules[i] : &rs->corrs[i - rs->nrules];
    if (r->corr) {
      free(r->corr->rules);
      free(r->corr->group);
      free(r->corr);
    }
    free(r->incorr);
    free(r->name);
    free(r->id);
    free(r->title);
    free(r->level);
    free(r->description);
    free(r->product);
    strv_free(r->tags, r->ntags);
    strv_free(r->techniques, r->ntechniques);
    strv_free(r->refs, r->nrefs);
    node_free(r->root);
  }
  free(rs->rules);
  free(rs->corrs);
  free(rs->ymf);
  strv_free(rs->fields, rs->nfields);
  for (size_t i = 0; i < rs->ncats; i++) {
    bucket_t *b = &rs->cats[i];
    for (size_t k = 0; k < b->natoms; k++)
      free(b->atoms[k].lit.s);
    free(b->name);
    free(b->always);
    free(b->atoms);
    free(b->slot);
    free(b->next);
    free(b->shorts);
    free(b->fields);
  }
  free(rs);
}

/* ---------------------------------------------------------------- */
/* Loading                                                            */

typedef struct {
  sigma_ruleset_t *rs;
  char *err;
  size_t errlen;
  size_t rule;
  const char *id;
  size_t nodes;
} load_t;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
bad(load_t *l, const char *fmt, ...) {
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (l->err && l->errlen)
    snprintf(l->err, l->errlen, "rule %zu%s%s%s: %s", l->rule, l->id ? " (" : "",
             l->id ? l->id : "", l->id ? ")" : "", msg);
  return YM_EPARSE;
}

/* A string member of at most max bytes without NUL; NULL when absent or
 * not a string (*ok false when present but bad). */
static const char *get_str(const cJSON *o, const char *key, size_t max, bool *ok) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (v == NULL)
    return NULL;
  if (!cJSON_IsString(v) || v->valuestring == NULL || strlen(v->valuestring) > max) {
    *ok = false;
    return NULL;
  }
  return v->valuestring;
}

static bool name_ok(const char *s) {
  size_t n = strlen(s);
  return n > 0 && n <= 128 &&
         strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") == n;
}

static int intern_field(load_t *l, const char *name, int *out) {
  sigma_ruleset_t *rs = l->rs;
  for (size_t i = 0; i < rs->nfields; i++)
    if (strcmp(rs->fields[i], name) == 0) {
      *out = (int)i;
      return 0;
    }
  if (rs->nfields >= SIGMA_LOAD_MAX_FIELDS)
    return bad(l, "more than %d distinct fields", SIGMA_LOAD_MAX_FIELDS);
  char **v = realloc(rs->fields, (rs->nfields + 1) * sizeof *v);
  if (v == NULL)
    return YM_ENOMEM;
  rs->fields = v;
  if ((v[rs->nfields] = strdup(name)) == NULL)
    return YM_ENOMEM;
  *out = (int)rs->nfields++;
  return 0;
}

static bool cidr_parse(const char *s, size_t n, cidr_t *c) {
  char addr[64];
  const char *slash = memchr(s, '/', n);
  size_t alen = slash ? (size_t)(slash - s) : n;
  if (alen == 0 || alen >= sizeof addr)
    return false;
  memcpy(addr, s, alen);
  addr[alen] = '\0';
  memset(c, 0, sizeof *c);
  if (inet_pton(AF_INET, addr, c->addr) == 1) {
    c->family = 4;
    c->bits = 32;
  } else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
    c->family = 6;
    c->bits = 128;
  } else {
    return false;
  }
  if (slash) {
    size_t dn = n - alen - 1;
    if (dn == 0 || dn > 3)
      return false;
    int bits = 0;
    for (size_t i = 0; i < dn; i++) {
      char ch = slash[1 + i];
      if (ch < '0' || ch > '9')
        return false;
      bits = bits * 10 + (ch - '0');
    }
    if (bits > c->bits)
      return false;
    c->bits = bits;
  }
  return true;
}

/* The PCRE2 options of a regex with its flags (the compiler uses the
 * same). */
static uint32_t re_options(const char *flags) {
  uint32_t o = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
  if (flags && strchr(flags, 'i'))
    o |= PCRE2_CASELESS;
  if (flags && strchr(flags, 'm'))
    o |= PCRE2_MULTILINE;
  if (flags && strchr(flags, 's'))
    o |= PCRE2_DOTALL;
  return o;
}

static int load_node(load_t *l, const cJSON *j, int depth, node_t **out);

static int load_matcher(load_t *l, const cJSON *j, node_t *n) {
  bool ok = true;
  const char *field = get_str(j, "field", 128, &ok);
  const char *match = get_str(j, "match", 16, &ok);
  if (!ok || field == NULL || match == NULL)
    return bad(l, "a matcher needs field and match strings");
  n->match = -1;
  for (int i = 0; i < (int)(sizeof match_names / sizeof match_names[0]); i++)
    if (strcmp(match, match_names[i]) == 0)
      n->match = i;
  if (n->match < 0)
    return bad(l, "unknown match '%.16s'", match);
  if (strcmp(field, "*") == 0) {
    if (n->match > M_GLOB)
      return bad(l, "keyword search with match %s", match);
    n->field = FIELD_KEYWORDS;
  } else {
    if (!name_ok(field))
      return bad(l, "bad field name");
    int rc = intern_field(l, field, &n->field);
    if (rc != 0)
      return rc;
  }
  const cJSON *all = cJSON_GetObjectItemCaseSensitive(j, "all");
  const cJSON *cased = cJSON_GetObjectItemCaseSensitive(j, "cased");
  if ((all && !cJSON_IsBool(all)) || (cased && !cJSON_IsBool(cased)))
    return bad(l, "all and cased are booleans");
  n->all = cJSON_IsTrue(all);
  n->cased = cJSON_IsTrue(cased);
  if (n->cased && n->match > M_GLOB)
    return bad(l, "cased with match %s", match);

  if (n->match == M_EXISTS) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
    if (!cJSON_IsBool(v))
      return bad(l, "exists needs a boolean value");
    n->exists = cJSON_IsTrue(v);
    return 0;
  }
  if (n->match == M_NULL)
    return 0;
  if (n->match >= M_GT && n->match <= M_LTE) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
    if (!cJSON_IsNumber(v) || v->valuedouble != v->valuedouble)
      return bad(l, "%s needs a number", match);
    n->num = v->valuedouble;
    return 0;
  }
  const cJSON *vals = cJSON_GetObjectItemCaseSensitive(j, "values");
  int nv = cJSON_GetArraySize(vals);
  if (!cJSON_IsArray(vals) || nv < 1 || nv > SIGMA_LOAD_MAX_VALUES)
    return bad(l, "values must be a list of 1 to %d strings", SIGMA_LOAD_MAX_VALUES);
  n->val = calloc((size_t)nv, sizeof *n->val);
  if (n->val == NULL)
    return YM_ENOMEM;
  if (n->match == M_RE) {
    bool fok = true;
    const char *flags = get_str(j, "flags", 3, &fok);
    if (!fok || (flags && strspn(flags, "ims") != strlen(flags)))
      return bad(l, "regex flags are i, m, s");
    if ((n->re = calloc((size_t)nv, sizeof *n->re)) == NULL)
      return YM_ENOMEM;
  }
  if (n->match == M_CIDR && (n->cidr = calloc((size_t)nv, sizeof *n->cidr)) == NULL)
    return YM_ENOMEM;
  if (n->match == M_FIELDREF && (n->ref = calloc((size_t)nv, sizeof *n->ref)) == NULL)
    return YM_ENOMEM;
  const cJSON *v;
  cJSON_ArrayForEach(v, vals) {
    if (!cJSON_IsString(v) || v->valuestring == NULL)
      return bad(l, "values must be strings");
    size_t len = strlen(v->valuestring);
    if (len > SIGMA_LOAD_MAX_STRING)
      return bad(l, "a value is longer than %d bytes", SIGMA_LOAD_MAX_STRING);
    lit_t *lit = &n->val[n->nval];
    if ((lit->s = dupn(v->valuestring, len)) == NULL)
      return YM_ENOMEM;
    lit->n = len;
    n->nval++;
    if (n->match <= M_GLOB && !n->cased)
      lower(lit->s, len);
    if (n->match == M_RE) {
      int e;
      PCRE2_SIZE off;
      const char *flags = get_str(j, "flags", 3, &(bool){true});
      pcre2_code *re = pcre2_compile((PCRE2_SPTR)lit->s, len, re_options(flags), &e, &off, NULL);
      if (re == NULL)
        return bad(l, "regex does not compile (offset %zu)", (size_t)off);
      (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter if JIT fails */
      n->re[n->nval - 1] = re;
    } else if (n->match == M_CIDR) {
      if (!cidr_parse(lit->s, len, &n->cidr[n->nval - 1]))
        return bad(l, "bad cidr value");
    } else if (n->match == M_FIELDREF) {
      if (!name_ok(lit->s))
        return bad(l, "bad fieldref field name");
      int rc = intern_field(l, lit->s, &n->ref[n->nval - 1]);
      if (rc != 0)
        return rc;
    }
  }
  return 0;
}

static int load_node(load_t *l, const cJSON *j, int depth, node_t **out) {
  *out = NULL;
  if (depth > SIGMA_LOAD_MAX_DEPTH)
    return bad(l, "expression deeper than %d", SIGMA_LOAD_MAX_DEPTH);
  if (++l->nodes > SIGMA_LOAD_MAX_NODES)
    return bad(l, "more than %d expression nodes", SIGMA_LOAD_MAX_NODES);
  if (!cJSON_IsObject(j))
    return bad(l, "an expression must be an object");
  node_t *n = calloc(1, sizeof *n);
  if (n == NULL)
    return YM_ENOMEM;
  *out = n;
  const cJSON *a;
  if ((a = cJSON_GetObjectItemCaseSensitive(j, "and")) != NULL ||
      (a = cJSON_GetObjectItemCaseSensitive(j, "or")) != NULL) {
    n->op = strcmp(a->string, "and") == 0 ? N_AND : N_OR;
    int nk = cJSON_GetArraySize(a);
    if (!cJSON_IsArray(a) || nk < 1 || nk > SIGMA_LOAD_MAX_NODES)
      return bad(l, "and/or need a non-empty list");
    if ((n->kid = calloc((size_t)nk, sizeof *n->kid)) == NULL)
      return YM_ENOMEM;
    const cJSON *k;
    cJSON_ArrayForEach(k, a) {
      int rc = load_node(l, k, depth + 1, &n->kid[n->nkid]);
      if (n->kid[n->nkid] != NULL)
        n->nkid++;
      if (rc != 0)
        return rc;
    }
    return 0;
  }
  if ((a = cJSON_GetObjectItemCaseSensitive(j, "not")) != NULL) {
    n->op = N_NOT;
    if ((n->kid = calloc(1, sizeof *n->kid)) == NULL)
      return YM_ENOMEM;
    int rc = load_node(l, a, depth + 1, &n->kid[0]);
    if (n->kid[0] != NULL)
      n->nkid = 1;
    return rc;
  }
  n->op = N_MATCH;
  return load_matcher(l, j, n);
}

static int load_strings(load_t *l, const cJSON *o, const char *key, size_t maxn, size_t maxlen,
                        char ***out, size_t *nout) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
  *out = NULL;
  *nout = 0;
  if (a == NULL)
    return 0;
  int n = cJSON_GetArraySize(a);
  if (!cJSON_IsArray(a) || (size_t)n > maxn)
    return bad(l, "%s must be a list of at most %zu strings", key, maxn);
  if (n == 0)
    return 0;
  if ((*out = calloc((size_t)n, sizeof **out)) == NULL)
    return YM_ENOMEM;
  const cJSON *v;
  cJSON_ArrayForEach(v, a) {
    if (!cJSON_IsString(v) || v->valuestring == NULL || strlen(v->valuestring) > maxlen)
      return bad(l, "%s: strings of at most %zu bytes", key, maxlen);
    if (((*out)[*nout] = strdup(v->valuestring)) == NULL)
      return YM_ENOMEM;
    (*nout)++;
  }
  return 0;
}

static int category_index(load_t *l, const char *name, int *out) {
  sigma_ruleset_t *rs = l->rs;
  for (size_t i = 0; i < rs->ncats; i++)
    if (strcmp(rs->cats[i].name, name) == 0) {
      *out = (int)i;
      return 0;
    }
  if (rs->ncats >= MAX_CATEGORIES)
    return bad(l, "more than %d log source categories", MAX_CATEGORIES);
  if ((rs->cats[rs->ncats].name = strdup(name)) == NULL)
    return YM_ENOMEM;
  *out = (int)rs->ncats++;
  return 0;
}

static const char *const level_names[] = {"informational", "low", "medium", "high", "critical"};
static const int level_severity[] = {0, 21, 47, 73, 99};

/* The metadata rules and correlation rules share. */
static int load_meta(load_t *l, const cJSON *j, rule_t *r) {
  if (!cJSON_IsObject(j))
    return bad(l, "a rule must be an object");
  bool ok = true;
  const char *id = get_str(j, "id", 79, &ok);
  if (!ok || id == NULL || !name_ok(id))
    return bad(l, "id missing or malformed");
  l->id = id;
  const char *name = get_str(j, "name", 79, &ok);
  if (!ok || (name && !name_ok(name)))
    return bad(l, "name malformed");
  if (name && (r->name = strdup(name)) == NULL)
    return YM_ENOMEM;
  const char *title = get_str(j, "title", 256, &ok);
  const char *level = get_str(j, "level", 16, &ok);
  const char *desc = get_str(j, "description", SIGMA_LOAD_MAX_STRING, &ok);
  if (!ok || title == NULL || level == NULL)
    return bad(l, "title and level are required strings");
  r->severity = -1;
  for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
    if (strcmp(level, level_names[i]) == 0)
      r->severity = level_severity[i];
  if (r->severity < 0)
    return bad(l, "unknown level");
  if ((r->id = strdup(id)) == NULL || (r->title = strdup(title)) == NULL ||
      (r->level = strdup(level)) == NULL || (desc && (r->description = strdup(desc)) == NULL))
    return YM_ENOMEM;
  int rc;
  if ((rc = load_strings(l, j, "tags", 64, 128, &r->tags, &r->ntags)) != 0 ||
      (rc = load_strings(l, j, "references", 32, 2048, &r->refs, &r->nrefs)) != 0)
    return rc;
  /* ATT&CK techniques from attack.t1234 and attack.t1234.001 tags. */
  for (size_t i = 0; i < r->ntags; i++) {
    const char *t = r->tags[i];
    if (strncmp(t, "attack.t", 8) != 0 || t[8] < '0' || t[8] > '9')
      continue;
    char **v = realloc(r->techniques, (r->ntechniques + 1) * sizeof *v);
    if (v == NULL)
      return YM_ENOMEM;
    r->techniques = v;
    char *tech = strdup(t + 7);
    if (tech == NULL)
      return YM_ENOMEM;
    for (char *p = tech; *p; p++)
      if (*p >= 'a' && *p <= 'z')
        *p = (char)(*p - 'a' + 'A');
    v[r->ntechniques++] = tech;
  }
  return 0;
}

static int load_rule(load_t *l, const cJSON *j, rule_t *r) {
  int rc = load_meta(l, j, r);
  if (rc != 0)
    return rc;
  bool ok = true;
  const cJSON *ls = cJSON_GetObjectItemCaseSensitive(j, "logsource");
  const char *cat = cJSON_IsObject(ls) ? get_str(ls, "category", 64, &ok) : NULL;
  const char *prod = cJSON_IsObject(ls) ? get_str(ls, "product", 64, &ok) : NULL;
  if (!ok || cat == NULL || !name_ok(cat) || (prod && !name_ok(prod)))
    return bad(l, "logsource.category missing or malformed");
  if ((rc = category_index(l, cat, &r->category)) != 0)
    return rc;
  if (prod && (r->product = strdup(prod)) == NULL)
    return YM_ENOMEM;
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "match");
  if (m == NULL)
    return bad(l, "match missing");
  l->nodes = 0;
  return load_node(l, m, 0, &r->root);
}

/* A base rule by id or name, or -1. */
static long find_rule(const sigma_ruleset_t *rs, const char *name) {
  for (size_t i = 0; i < rs->nrules; i++)
    if (strcmp(rs->rules[i].id, name) == 0 ||
        (rs->rules[i].name && strcmp(rs->rules[i].name, name) == 0))
      return (long)i;
  return -1;
}

static int load_correlation(load_t *l, const cJSON *j, rule_t *r, size_t ci) {
  int rc = load_meta(l, j, r);
  if (rc != 0)
    return rc;
  bool ok = true;
  corr_t *co = r->corr = calloc(1, sizeof *co);
  if (co == NULL)
    return YM_ENOMEM;
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "correlation");
  const char *type = cJSON_IsObject(c) ? get_str(c, "type", 32, &ok) : NULL;
  static const char *const types[] = {"event_count", "value_count", "temporal", "temporal_ordered"};
  co->type = -1;
  for (int i = 0; ok && type && i < 4; i++)
    if (strcmp(type, types[i]) == 0)
      co->type = i;
  if (co->type < 0)
    return bad(l, "correlation type missing or unknown");
  const cJSON *rules = cJSON_GetObjectItemCaseSensitive(c, "rules");
  int nr = cJSON_GetArraySize(rules);
  if (!cJSON_IsArray(rules) || nr < 1 || nr > 64)
    return bad(l, "correlation rules: 1 to 64 rule ids");
  if ((co->rules = calloc((size_t)nr, sizeof *co->rules)) == NULL)
    return YM_ENOMEM;
  const cJSON *v;
  cJSON_ArrayForEach(v, rules) {
    if (!cJSON_IsString(v) || !name_ok(v->valuestring))
      return bad(l, "correlation rules are ids");
    long ri = find_rule(l->rs, v->valuestring);
    if (ri < 0)
      return bad(l, "correlation names a rule not in the set");
    rule_t *base = &l->rs->rules[ri];
    uint32_t *in = realloc(base->incorr, (base->nincorr + 1) * sizeof *in);
    if (in == NULL)
      return YM_ENOMEM;
    base->incorr = in;
    in[base->nincorr++] = (uint32_t)(ci * 64 + co->nrules);
    co->rules[co->nrules++] = (uint32_t)ri;
  }
  const cJSON *ts = cJSON_GetObjectItemCaseSensitive(c, "timespan_s");
  if (!cJSON_IsNumber(ts) || ts->valuedouble < 1 || ts->valuedouble > 86400)
    return bad(l, "correlation timespan_s: 1 to 86400");
  co->span_ns = (int64_t)ts->valuedouble * 1000000000;
  const cJSON *gb = cJSON_GetObjectItemCaseSensitive(c, "group_by");
  if (gb != NULL) {
    int ng = cJSON_GetArraySize(gb);
    if (!cJSON_IsArray(gb) || ng > 16)
      return bad(l, "correlation group_by: at most 16 fields");
    if (ng > 0 && (co->group = calloc((size_t)ng, sizeof *co->group)) == NULL)
      return YM_ENOMEM;
    cJSON_ArrayForEach(v, gb) {
      if (!cJSON_IsString(v) || !name_ok(v->valuestring))
        return bad(l, "correlation group_by: field names");
      if ((rc = intern_field(l, v->valuestring, &co->group[co->ngroup])) != 0)
        return rc;
      co->ngroup++;
    }
  }
  co->field = -1;
  if (co->type == C_EVENT_COUNT || co->type == C_VALUE_COUNT) {
    const cJSON *cond = cJSON_GetObjectItemCaseSensitive(c, "condition");
    const cJSON *gt = cJSON_GetObjectItemCaseSensitive(cond, "gt");
    const cJSON *gte = cJSON_GetObjectItemCaseSensitive(cond, "gte");
    const cJSON *n = gt ? gt : gte;
    if (!cJSON_IsObject(cond) || (gt && gte) || !cJSON_IsNumber(n) ||
        !(n->valuedouble >= 1 && n->valuedouble <= 1000) ||
        n->valuedouble != (double)(int)n->valuedouble)
      return bad(l, "correlation condition: gt or gte, a whole number from 1 to 1000");
    co->need = (uint32_t)n->valuedouble + (gt ? 1u : 0u);
    if (co->type == C_VALUE_COUNT) {
      const char *f = get_str(cond, "field", 128, &ok);
      if (!ok || f == NULL || !name_ok(f))
        return bad(l, "value_count needs condition.field");
      if ((rc = intern_field(l, f, &co->field)) != 0)
        return rc;
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- */
/* The prefilter                                                      */

/* The longest literal run of a glob (escapes resolved, wildcards cut);
 * stored into *out (malloc'd). */
static int glob_longest(const lit_t *g, lit_t *out) {
  char *buf = malloc(g->n + 1);
  if (buf == NULL)
    return YM_ENOMEM;
  size_t best_off = 0, best_n = 0, cur_off = 0, cur_n = 0, j = 0;
  for (size_t i = 0; i < g->n; i++) {
    char ch = g->s[i];
    if (ch == '*' || ch == '?') {
      cur_off = j;
      cur_n = 0;
      continue;
    }
    if (ch == '\\' && i + 1 < g->n)
      ch = g->s[++i];
    buf[j++] = ch;
    if (++cur_n > best_n) {
      best_n = cur_n;
      best_off = cur_off;
    }
  }
  out->s = buf;
  memmove(buf, buf + best_off, best_n);
  out->n = best_n;
  return 0;
}

typedef struct {
  int field;
  lit_t lit;
  bool owned;
} ratom_t;

typedef struct {
  ratom_t v[MAX_ATOMS_PER_RULE];
  size_t n;
  bool overflow;
} atomset_t;

static void atomset_clear(atomset_t *s) {
  for (size_t i = 0; i < s->n; i++)
    if (s->v[i].owned)
      free(s->v[i].lit.s);
  s->n = 0;
  s->overflow = false;
}

static size_t atomset_min(const atomset_t *s) {
  size_t m = SIZE_MAX;
  for (size_t i = 0; i < s->n; i++)
    if (s->v[i].lit.n < m)
      m = s->v[i].lit.n;
  return m;
}

/* Fills s with literals one of which occurs in the event whenever n is
 * true. Returns false when there is no such set (s left empty). */
static bool necessary(const node_t *n, atomset_t *s) {
  s->n = 0;
  s->overflow = false;
  switch (n->op) {
  case N_NOT:
    return false;
  case N_OR:
    for (size_t i = 0; i < n->nkid; i++) {
      atomset_t sub;
      if (!necessary(n->kid[i], &sub) || s->n + sub.n > MAX_ATOMS_PER_RULE) {
        if (s->n + sub.n > MAX_ATOMS_PER_RULE)
          atomset_clear(&sub);
        atomset_clear(s);
        return false;
      }
      memcpy(&s->v[s->n], sub.v, sub.n * sizeof sub.v[0]);
      s->n += sub.n;
    }
    return s->n > 0;
  case N_AND: {
    bool have = false;
    for (size_t i = 0; i < n->nkid; i++) {
      atomset_t sub;
      if (!necessary(n->kid[i], &sub))
        continue;
      /* Keep the child whose shortest literal is longest (fewest
       * false hits), then the one with fewer literals. */
      if (!have || atomset_min(&sub) > atomset_min(s) ||
          (atomset_min(&sub) == atomset_min(s) && sub.n < s->n)) {
        atomset_clear(s);
        *s = sub;
        have = true;
      } else {
        atomset_clear(&sub);
      }
    }
    return have;
  }
  default:
    break;
  }
  if (n->field == FIELD_KEYWORDS || n->match > M_GLOB)
    return false;
  size_t take = n->all ? 1 : n->nval;
  size_t pick = 0;
  if (n->all) /* every value must match: the longest alone is enough */
    for (size_t i = 1; i < n->nval; i++)
      if (n->val[i].n > n->val[pick].n)
        pick = i;
  if (take > MAX_ATOMS_PER_RULE)
    return false;
  for (size_t k = 0; k < take; k++) {
    const lit_t *v = &n->val[n->all ? pick : k];
    ratom_t *a = &s->v[s->n];
    a->field = n->field;
    if (n->match == M_GLOB) {
      if (glob_longest(v, &a->lit) != 0) {
        atomset_clear(s);
        return false;
      }
      a->owned = true;
    } else {
      a->lit = *v;
      a->owned = false;
    }
    s->n++;
    if (a->lit.n == 0) {
      atomset_clear(s);
      return false;
    }
    if (n->cased) {
      /* The prefilter looks at lowercased text. */
      if (!a->owned) {
        char *d = dupn(a->lit.s, a->lit.n);
        if (d == NULL) {
          atomset_clear(s);
          return false;
        }
        a->lit.s = d;
        a->owned = true;
      }
      lower(a->lit.s, a->lit.n);
    }
  }
  return true;
}

static uint32_t anchor_hash(int field, const char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  v ^= (uint32_t)field * 0x9E3779B1u;
  v *= 0x85EBCA6Bu;
  return v ^ (v >> 15);
}

static int bucket_build(sigma_ruleset_t *rs, size_t ci) {
  bucket_t *b = &rs->cats[ci];
  size_t cap = 0;
  for (size_t r = 0; r < rs->nrules; r++) {
    if ((size_t)rs->rules[r].category != ci)
      continue;
    atomset_t s;
    if (!necessary(rs->rules[r].root, &s)) {
      uint32_t *v = realloc(b->always, (b->nalways + 1) * sizeof *v);
      if (v == NULL)
        return YM_ENOMEM;
      b->always = v;
      v[b->nalways++] = (uint32_t)r;
      rs->unfiltered++;
      continue;
    }
    if (b->natoms + s.n > cap) {
      size_t nc = cap ? cap * 2 : 64;
      while (nc < b->natoms + s.n)
        nc *= 2;
      atom_t *v = realloc(b->atoms, nc * sizeof *v);
      if (v == NULL) {
        atomset_clear(&s);
        return YM_ENOMEM;
      }
      b->atoms = v;
      cap = nc;
    }
    for (size_t i = 0; i < s.n; i++) {
      atom_t *a = &b->atoms[b->natoms++];
      a->field = s.v[i].field;
      a->rule = (uint32_t)r;
      /* Atoms own a copy: the rule's literals may be freed first. */
      if (s.v[i].owned) {
        a->lit = s.v[i].lit;
        s.v[i].owned = false;
      } else {
        a->lit.n = s.v[i].lit.n;
        if ((a->lit.s = dupn(s.v[i].lit.s, s.v[i].lit.n)) == NULL) {
          b->natoms--;
          atomset_clear(&s);
          return YM_ENOMEM;
        }
      }
    }
    s.n = 0;
  }
  if (b->natoms == 0)
    return 0;
  b->nslot = 16;
  while (b->nslot < b->natoms * 2)
    b->nslot *= 2;
  b->slot = calloc(b->nslot, sizeof *b->slot);
  b->next = calloc(b->natoms, sizeof *b->next);
  b->shorts = calloc(b->natoms, sizeof *b->shorts);
  if (b->slot == NULL || b->next == NULL || b->shorts == NULL)
    return YM_ENOMEM;
  for (size_t i = 0; i < b->natoms; i++) {
    atom_t *a = &b->atoms[i];
    bool seen = false;
    for (size_t k = 0; k < b->nfields; k++)
      seen = seen || b->fields[k] == a->field;
    if (!seen) {
      int *v = realloc(b->fields, (b->nfields + 1) * sizeof *v);
      if (v == NULL)
        return YM_ENOMEM;
      b->fields = v;
      v[b->nfields++] = a->field;
    }
    if (a->lit.n < ANCHOR) {
      b->shorts[b->nshorts++] = (uint32_t)i;
      continue;
    }
    size_t h = anchor_hash(a->field, a->lit.s) & (b->nslot - 1);
    b->next[i] = b->slot[h];
    b->slot[h] = (uint32_t)i + 1;
  }
  return 0;
}

int sigma_ruleset_load(const char *json, size_t len, sigma_ruleset_t **out, char *err,
                       size_t errlen) {
  *out = NULL;
  if (err && errlen)
    err[0] = '\0';
  if (len > SIGMA_LOAD_MAX_BYTES) {
    if (err && errlen)
      snprintf(err, errlen, "compiled rules larger than %u bytes", SIGMA_LOAD_MAX_BYTES);
    return YM_ETOOBIG;
  }
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (root == NULL) {
    if (err && errlen)
      snprintf(err, errlen, "compiled rules are not JSON");
    return YM_EPARSE;
  }
  sigma_ruleset_t *rs = calloc(1, sizeof *rs);
  if (rs == NULL) {
    cJSON_Delete(root);
    return YM_ENOMEM;
  }
  load_t l = {.rs = rs, .err = err, .errlen = errlen};
  int rc = 0;
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
  const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
  const cJSON *rules = cJSON_GetObjectItemCaseSensitive(root, "rules");
  const cJSON *corrs = cJSON_GetObjectItemCaseSensitive(root, "correlations");
  if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "yamori-sigma") != 0 ||
      !cJSON_IsNumber(ver) || ver->valuedouble != 1 || !cJSON_IsArray(rules) ||
      (corrs && !cJSON_IsArray(corrs))) {
    rc = bad(&l, "not the yamori-sigma format, version 1");
    goto out;
  }
  int nr = cJSON_GetArraySize(rules);
  int nc = corrs ? cJSON_GetArraySize(corrs) : 0;
  if (nr + nc > SIGMA_LOAD_MAX_RULES) {
    rc = bad(&l, "more than %d rules", SIGMA_LOAD_MAX_RULES);
    goto out;
  }
  if (nr > 0 && (rs->rules = calloc((size_t)nr, sizeof *rs->rules)) == NULL) {
    rc = YM_ENOMEM;
    goto out;
  }
  const cJSON *r;
  cJSON_ArrayForEach(r, rules) {
    l.rule = rs->nrules;
    l.id = NULL;
    rc = load_rule(&l, r, &rs->rules[rs->nrules]);
    rs->nrules++; /* freed with the set even when half loaded */
    if (rc != 0)
      goto out;
    for (size_t i = 0; i + 1 < rs->nrules; i++)
      if (strcmp(rs->rules[i].id, rs->rules[rs->nrules - 1].id) == 0) {
        rc = bad(&l, "id used twice");
        goto out;
      }
  }
  if (nc > 0 && (rs->corrs = calloc((size_t)nc, sizeof *rs->corrs)) == NULL) {
    rc = YM_ENOMEM;
    goto out;
  }
  if (corrs) {
    cJSON_ArrayForEach(r, corrs) {
      l.rule = rs->nrules + rs->ncorrelations;
      l.id = NULL;
      rc = load_correlation(&l, r, &rs->corrs[rs->ncorrelations], rs->ncorrelations);
      rs->ncorrelations++;
      if (rc != 0)
        goto out;
    }
  }
  for (size_t i = 0; i < NKEYWORD_FIELDS; i++) {
    l.id = NULL;
    if ((rc = intern_field(&l, keyword_fields[i], &rs->kwfields[i])) != 0)
      goto out;
  }
  for (size_t i = 0; i < rs->ncats && rc == 0; i++)
    rc = bucket_build(rs, i);
  if (rc == 0 && (rs->ymf = malloc((rs->nfields + 1) * sizeof *rs->ymf)) == NULL)
    rc = YM_ENOMEM;
  for (size_t i = 0; rc == 0 && i < rs->nfields; i++) {
    rs->ymf[i] = -1;
    for (int f = 0; f < YM_F_COUNT; f++)
      if (strcmp(ym_schema_field((ym_field_t)f)->name, rs->fields[i]) == 0)
        rs->ymf[i] = f;
  }
out:
  cJSON_Delete(root);
  if (rc != 0) {
    sigma_ruleset_free(rs);
    if (rc == YM_ENOMEM && err && errlen)
      snprintf(err, errlen, "out of memory");
    return rc;
  }
  *out = rs;
  return 0;
}

size_t sigma_ruleset_rule_count(const sigma_ruleset_t *rs) {
  return rs->nrules;
}

size_t sigma_ruleset_correlation_count(const sigma_ruleset_t *rs) {
  return rs->ncorrelations;
}

size_t sigma_ruleset_unfiltered_count(const sigma_ruleset_t *rs) {
  return rs->unfiltered;
}

size_t sigma_ruleset_field_count(const sigma_ruleset_t *rs) {
  return rs->nfields;
}

const char *sigma_ruleset_field_name(const sigma_ruleset_t *rs, size_t f) {
  return f < rs->nfields ? rs->fields[f] : NULL;
}

/* ---------------------------------------------------------------- */
/* Evaluation                                                         */

/* The values of one field in the current event, fetched on first use. */
typedef struct {
  uint64_t epoch; /* == e->epoch when fetched */
  size_t n;
  size_t off[SIGMA_FIELD_MAX_VALUES]; /* original at off, lowercased at off + len + 1 */
  size_t len[SIGMA_FIELD_MAX_VALUES];
} fval_t;

/* The state of one correlation for one group (one set of group-by
 * values). */
typedef struct {
  uint64_t key; /* hash of the group-by values; 0: free */
  int64_t last; /* time of the group's last event */
  int64_t *t;   /* event_count: ring of times; value_count: time per value;
                   temporal: time per rule */
  uint64_t *v;  /* value_count: hash per value */
  uint32_t n, head;
  uint64_t seen; /* temporal: rules seen (bit per position) */
} group_t;

struct sigma_eval {
  const sigma_ruleset_t *rs;
  group_t *groups; /* SIGMA_CORR_MAX_GROUPS per correlation */
  size_t *ngroups;
  size_t maxmatches;
  const sigma_source_t *src;
  uint64_t epoch;
  fval_t *fv;
  char *arena;
  size_t arena_len, arena_cap;
  bool oom;
  uint64_t *mark; /* per rule: == epoch when a candidate */
  uint32_t *cand;
  size_t ncand;
  sigma_match_t *matches;
  size_t nmatches;
  const char *hitf[SIGMA_MATCH_MAX_FIELDS];
  size_t nhitf;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  uint64_t regex_limited;
};

sigma_eval_t *sigma_eval_new(const sigma_ruleset_t *rs) {
  sigma_eval_t *e = calloc(1, sizeof *e);
  if (e == NULL)
    return NULL;
  e->rs = rs;
  e->fv = calloc(rs->nfields + 1, sizeof *e->fv);
  e->mark = calloc(rs->nrules + 1, sizeof *e->mark);
  e->cand = calloc(rs->nrules + 1, sizeof *e->cand);
  e->maxmatches = rs->nrules + 2 * rs->ncorrelations + 1;
  e->matches = calloc(e->maxmatches, sizeof *e->matches);
  e->groups = calloc(rs->ncorrelations * SIGMA_CORR_MAX_GROUPS + 1, sizeof *e->groups);
  e->ngroups = calloc(rs->ncorrelations + 1, sizeof *e->ngroups);
  e->md = pcre2_match_data_create(1, NULL);
  e->mctx = pcre2_match_context_create(NULL);
  if (e->fv == NULL || e->mark == NULL || e->cand == NULL || e->matches == NULL || e->md == NULL ||
      e->mctx == NULL || e->groups == NULL || e->ngroups == NULL) {
    sigma_eval_free(e);
    return NULL;
  }
  pcre2_set_match_limit(e->mctx, SIGMA_REGEX_MATCH_LIMIT);
  pcre2_set_depth_limit(e->mctx, 10000);
  return e;
}

void sigma_eval_free(sigma_eval_t *e) {
  if (e == NULL)
    return;
  for (size_t ci = 0; e->groups && e->ngroups && ci < e->rs->ncorrelations; ci++)
    for (size_t g = 0; g < e->ngroups[ci]; g++) {
      free(e->groups[ci * SIGMA_CORR_MAX_GROUPS + g].t);
      free(e->groups[ci * SIGMA_CORR_MAX_GROUPS + g].v);
    }
  free(e->groups);
  free(e->ngroups);
  free(e->fv);
  free(e->mark);
  free(e->cand);
  free(e->matches);
  free(e->arena);
  pcre2_match_data_free(e->md);
  pcre2_match_context_free(e->mctx);
  free(e);
}

/* Fetches field f's values (original and lowercased) into the arena. */
static const fval_t *field_values(sigma_eval_t *e, int f) {
  fval_t *fv = &e->fv[f];
  if (fv->epoch == e->epoch)
    return fv;
  fv->epoch = e->epoch;
  fv->n = 0;
  sigma_str_t v[SIGMA_FIELD_MAX_VALUES];
  size_t n = e->src->get(e->src->ctx, (size_t)f, v, SIGMA_FIELD_MAX_VALUES);
  if (n > SIGMA_FIELD_MAX_VALUES)
    n = SIGMA_FIELD_MAX_VALUES;
  for (size_t i = 0; i < n; i++) {
    size_t need = 2 * v[i].n + 2;
    if (e->arena_len + need > e->arena_cap) {
      size_t cap = e->arena_cap ? e->arena_cap : 4096;
      while (cap < e->arena_len + need)
        cap *= 2;
      char *a = realloc(e->arena, cap);
      if (a == NULL) {
        e->oom = true;
        break;
      }
      e->arena = a;
      e->arena_cap = cap;
    }
    char *dst = e->arena + e->arena_len;
    if (v[i].n)
      memcpy(dst, v[i].p, v[i].n);
    dst[v[i].n] = '\0';
    char *low = dst + v[i].n + 1;
    for (size_t k = 0; k < v[i].n; k++) {
      char ch = dst[k];
      low[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    low[v[i].n] = '\0';
    fv->off[fv->n] = e->arena_len;
    fv->len[fv->n] = v[i].n;
    fv->n++;
    e->arena_len += need;
  }
  return fv;
}

static const char *fv_str(const sigma_eval_t *e, const fval_t *fv, size_t i, bool lowered) {
  return e->arena + fv->off[i] + (lowered ? fv->len[i] + 1 : 0);
}

/* '*' any run, '?' one character (UTF-8 aware), '\' escapes. */
static bool glob_match(const char *p, size_t pn, const char *s, size_t sn) {
  size_t pi = 0, si = 0, star_p = SIZE_MAX, star_s = 0;
  while (si < sn) {
    if (pi < pn) {
      char c = p[pi];
      if (c == '*') {
        star_p = ++pi;
        star_s = si;
        continue;
      }
      if (c == '?') {
        pi++;
        si++;
        while (si < sn && ((unsigned char)s[si] & 0xC0) == 0x80)
          si++;
        continue;
      }
      size_t adv = 1;
      if (c == '\\' && pi + 1 < pn) {
        c = p[pi + 1];
        adv = 2;
      }
      if (c == s[si]) {
        pi += adv;
        si++;
        continue;
      }
    }
    if (star_p == SIZE_MAX)
      return false;
    pi = star_p;
    si = ++star_s;
  }
  while (pi < pn && p[pi] == '*')
    pi++;
  return pi == pn;
}

static bool lit_match(int m, const lit_t *l, const char *s, size_t n) {
  switch (m) {
  case M_EXACT:
    return n == l->n && memcmp(s, l->s, n) == 0;
  case M_PREFIX:
    return n >= l->n && memcmp(s, l->s, l->n) == 0;
  case M_SUFFIX:
    return n >= l->n && memcmp(s + n - l->n, l->s, l->n) == 0;
  case M_CONTAINS:
    return l->n == 0 || memmem(s, n, l->s, l->n) != NULL;
  default:
    return glob_match(l->s, l->n, s, n);
  }
}

static bool cidr_match(const cidr_t *c, const char *s, size_t n) {
  char buf[64];
  unsigned char a[16];
  if (n == 0 || n >= sizeof buf)
    return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  if (inet_pton(c->family == 4 ? AF_INET : AF_INET6, buf, a) != 1)
    return false;
  int full = c->bits / 8, rest = c->bits % 8;
  if (memcmp(a, c->addr, (size_t)full) != 0)
    return false;
  if (rest == 0)
    return true;
  unsigned char mask = (unsigned char)(0xFF << (8 - rest));
  return (a[full] & mask) == (c->addr[full] & mask);
}

static bool num_of(const char *s, size_t n, double *out) {
  char buf[64];
  if (n == 0 || n >= sizeof buf)
    return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  char *end;
  double d = strtod(buf, &end);
  if (*end != '\0' || d != d)
    return false;
  *out = d;
  return true;
}

/* Does one value (index vi of the matcher) match any value of the field? */
static bool value_hits(sigma_eval_t *e, const node_t *n, const fval_t *fv, size_t vi) {
  for (size_t i = 0; i < fv->n; i++) {
    const char *s = fv_str(e, fv, i, !n->cased && n->match <= M_GLOB);
    size_t len = fv->len[i];
    switch (n->match) {
    case M_RE: {
      int rc = pcre2_match(n->re[vi], (PCRE2_SPTR)s, len, 0, 0, e->md, e->mctx);
      if (rc >= 0)
        return true;
      if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
          rc == PCRE2_ERROR_JIT_STACKLIMIT)
        e->regex_limited++;
      break;
    }
    case M_CIDR:
      if (cidr_match(&n->cidr[vi], s, len))
        return true;
      break;
    case M_FIELDREF: {
      const fval_t *other = field_values(e, n->ref[vi]);
      for (size_t k = 0; k < other->n; k++)
        if (other->len[k] == len &&
            memcmp(fv_str(e, other, k, true), fv_str(e, fv, i, true), len) == 0)
          return true;
      break;
    }
    default:
      if (lit_match(n->match, &n->val[vi], s, len))
        return true;
    }
  }
  return false;
}

static bool match_field(sigma_eval_t *e, const node_t *n, int field) {
  const fval_t *fv = field_values(e, field);
  switch (n->match) {
  case M_EXISTS:
    return (fv->n > 0) == n->exists;
  case M_NULL:
    return fv->n == 0 || (fv->n == 1 && fv->len[0] == 0);
  case M_GT:
  case M_GTE:
  case M_LT:
  case M_LTE:
    for (size_t i = 0; i < fv->n; i++) {
      double d;
      if (!num_of(fv_str(e, fv, i, false), fv->len[i], &d))
        continue;
      if ((n->match == M_GT && d > n->num) || (n->match == M_GTE && d >= n->num) ||
          (n->match == M_LT && d < n->num) || (n->match == M_LTE && d <= n->num))
        return true;
    }
    return false;
  default:
    break;
  }
  if (fv->n == 0)
    return false;
  for (size_t vi = 0; vi < n->nval; vi++) {
    bool hit = value_hits(e, n, fv, vi);
    if (n->all && !hit)
      return false;
    if (!n->all && hit)
      return true;
  }
  return n->all;
}

static void note_field(sigma_eval_t *e, int field) {
  const char *name = field < 0 ? "*" : e->rs->fields[field];
  for (size_t i = 0; i < e->nhitf; i++)
    if (e->hitf[i] == name)
      return;
  if (e->nhitf < SIGMA_MATCH_MAX_FIELDS)
    e->hitf[e->nhitf++] = name;
}

static bool eval_node(sigma_eval_t *e, const node_t *n, bool positive) {
  switch (n->op) {
  case N_AND:
    for (size_t i = 0; i < n->nkid; i++)
      if (!eval_node(e, n->kid[i], positive))
        return false;
    return true;
  case N_OR:
    for (size_t i = 0; i < n->nkid; i++)
      if (eval_node(e, n->kid[i], positive))
        return true;
    return false;
  case N_NOT:
    return !eval_node(e, n->kid[0], !positive);
  default:
    break;
  }
  bool hit;
  if (n->field == FIELD_KEYWORDS) {
    hit = false;
    for (size_t k = 0; k < NKEYWORD_FIELDS && !hit; k++) {
      hit = match_field(e, n, e->rs->kwfields[k]);
      if (hit && positive)
        note_field(e, e->rs->kwfields[k]);
    }
    return hit;
  }
  hit = match_field(e, n, n->field);
  if (hit && positive)
    note_field(e, n->field);
  return hit;
}

static void candidate(sigma_eval_t *e, uint32_t r) {
  if (e->mark[r] == e->epoch)
    return;
  e->mark[r] = e->epoch;
  e->cand[e->ncand++] = r;
}

/* Marks the rules whose atoms occur in the event. */
static void prefilter(sigma_eval_t *e, const bucket_t *b) {
  for (size_t fi = 0; fi < b->nfields; fi++) {
    int f = b->fields[fi];
    const fval_t *fv = field_values(e, f);
    for (size_t i = 0; i < fv->n; i++) {
      const char *s = fv_str(e, fv, i, true);
      size_t n = fv->len[i];
      for (size_t k = 0; k < b->nshorts; k++) {
        const atom_t *a = &b->atoms[b->shorts[k]];
        if (a->field == f && e->mark[a->rule] != e->epoch && memmem(s, n, a->lit.s, a->lit.n))
          candidate(e, a->rule);
      }
      for (size_t p = 0; p + ANCHOR <= n; p++) {
        uint32_t ai = b->slot[anchor_hash(f, s + p) & (b->nslot - 1)];
        while (ai != 0) {
          const atom_t *a = &b->atoms[ai - 1];
          if (a->field == f && e->mark[a->rule] != e->epoch && a->lit.n <= n - p &&
              memcmp(s + p, a->lit.s, a->lit.n) == 0)
            candidate(e, a->rule);
          ai = b->next[ai - 1];
        }
      }
    }
  }
}

/* ---------------------------------------------------------------- */
/* Correlations                                                       */

static sigma_match_t *add_match(sigma_eval_t *e, const rule_t *r, size_t index) {
  if (e->nmatches >= e->maxmatches)
    return NULL;
  sigma_match_t *m = &e->matches[e->nmatches++];
  memset(m, 0, sizeof *m);
  m->rule = index;
  m->correlation = r->corr != NULL;
  m->id = r->id;
  m->title = r->title;
  m->level = r->level;
  m->severity = r->severity;
  m->description = r->description;
  m->tags = (const char *const *)r->tags;
  m->ntags = r->ntags;
  m->techniques = (const char *const *)r->techniques;
  m->ntechniques = r->ntechniques;
  m->references = (const char *const *)r->refs;
  m->nreferences = r->nrefs;
  return m;
}

static uint64_t fnv(uint64_t h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)p[i];
    h *= 0x100000001B3ull;
  }
  return h;
}

#define FNV_BASIS 0xCBF29CE484222325ull

/* The group of the current event: a hash of its group-by values. */
static uint64_t group_key(sigma_eval_t *e, const corr_t *co) {
  uint64_t h = FNV_BASIS;
  for (size_t i = 0; i < co->ngroup; i++) {
    const fval_t *fv = field_values(e, co->group[i]);
    if (fv->n > 0)
      h = fnv(h, fv_str(e, fv, 0, false), fv->len[0]);
    else
      h = fnv(h, "\x01", 1); /* absent differs from empty */
    h = fnv(h, "\x1f", 1);
  }
  return h | 1;
}

/* Finds the group, or makes it, replacing the group idle longest when all
 * SIGMA_CORR_MAX_GROUPS are taken. */
static group_t *group_get(sigma_eval_t *e, size_t ci, uint64_t key, int64_t t) {
  group_t *gs = &e->groups[ci * SIGMA_CORR_MAX_GROUPS];
  size_t *n = &e->ngroups[ci];
  for (size_t i = 0; i < *n; i++)
    if (gs[i].key == key)
      return &gs[i];
  group_t *g;
  if (*n < SIGMA_CORR_MAX_GROUPS) {
    g = &gs[(*n)++];
  } else {
    g = &gs[0];
    for (size_t i = 1; i < *n; i++)
      if (gs[i].last < g->last)
        g = &gs[i];
    free(g->t);
    free(g->v);
  }
  memset(g, 0, sizeof *g);
  g->key = key;
  g->last = t;
  return g;
}

/* event_count: the last `need` times in a ring; fires when the oldest of
 * them is within the span. */
static bool count_event(group_t *g, const corr_t *co, int64_t t) {
  g->t[g->head] = t;
  g->head = (g->head + 1) % co->need;
  if (g->n < co->need)
    g->n++;
  return g->n == co->need && t - g->t[g->head] <= co->span_ns;
}

/* value_count: up to `need` distinct values with the time each was last
 * seen; fires when `need` of them are within the span. */
static bool count_value(sigma_eval_t *e, group_t *g, const corr_t *co, int64_t t) {
  const fval_t *fv = field_values(e, co->field);
  if (fv->n == 0)
    return false;
  uint64_t vh = fnv(FNV_BASIS, fv_str(e, fv, 0, false), fv->len[0]);
  size_t slot = SIZE_MAX, live = 0;
  for (size_t i = 0; i < g->n; i++)
    if (g->v[i] == vh)
      slot = i;
  if (slot == SIZE_MAX) {
    if (g->n < co->need) {
      slot = g->n++;
    } else {
      slot = 0; /* replace the value seen longest ago */
      for (size_t i = 1; i < g->n; i++)
        if (g->t[i] < g->t[slot])
          slot = i;
    }
    g->v[slot] = vh;
  }
  g->t[slot] = t;
  for (size_t i = 0; i < g->n; i++)
    if (t - g->t[i] <= co->span_ns)
      live++;
  return live >= co->need;
}

/* temporal: every rule of the list seen within the span (in list order
 * for temporal_ordered). */
static bool count_temporal(group_t *g, const corr_t *co, size_t pos, int64_t t) {
  g->t[pos] = t;
  g->seen |= (uint64_t)1 << pos;
  uint64_t all = co->nrules == 64 ? ~(uint64_t)0 : ((uint64_t)1 << co->nrules) - 1;
  if ((g->seen & all) != all)
    return false;
  for (size_t i = 0; i < co->nrules; i++) {
    if (t - g->t[i] > co->span_ns)
      return false;
    if (co->type == C_TEMPORAL_ORDERED && i > 0 && g->t[i] < g->t[i - 1])
      return false;
  }
  return true;
}

/* Feeds a match of base rule r into the correlations that name it. */
static void correlate(sigma_eval_t *e, const rule_t *r, int64_t t) {
  const sigma_ruleset_t *rs = e->rs;
  for (size_t k = 0; k < r->nincorr; k++) {
    size_t ci = r->incorr[k] / 64, pos = r->incorr[k] % 64;
    const rule_t *cr = &rs->corrs[ci];
    const corr_t *co = cr->corr;
    group_t *g = group_get(e, ci, group_key(e, co), t);
    g->last = t;
    size_t slots = co->type == C_EVENT_COUNT || co->type == C_VALUE_COUNT ? co->need : co->nrules;
    if (g->t == NULL && (g->t = calloc(slots, sizeof *g->t)) == NULL) {
      e->oom = true;
      continue;
    }
    if (co->type == C_VALUE_COUNT && g->v == NULL && (g->v = calloc(slots, sizeof *g->v)) == NULL) {
      e->oom = true;
      continue;
    }
    bool fire;
    switch (co->type) {
    case C_EVENT_COUNT:
      fire = count_event(g, co, t);
      break;
    case C_VALUE_COUNT:
      fire = count_value(e, g, co, t);
      break;
    default:
      fire = count_temporal(g, co, pos, t);
    }
    if (!fire)
      continue;
    /* Counting starts again after an alert. */
    g->n = 0;
    g->head = 0;
    g->seen = 0;
    sigma_match_t *m = add_match(e, cr, rs->nrules + ci);
    if (m == NULL)
      continue;
    for (size_t i = 0; i < co->ngroup && i < SIGMA_MATCH_MAX_FIELDS; i++)
      m->fields[m->nfields++] = rs->fields[co->group[i]];
  }
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

int sigma_eval_event(sigma_eval_t *e, const char *category, const char *product, int64_t time_ns,
                     const sigma_source_t *src) {
  const sigma_ruleset_t *rs = e->rs;
  e->nmatches = 0;
  e->ncand = 0;
  if (category == NULL || src == NULL)
    return 0;
  const bucket_t *b = NULL;
  for (size_t i = 0; i < rs->ncats; i++)
    if (strcmp(rs->cats[i].name, category) == 0)
      b = &rs->cats[i];
  if (b == NULL)
    return 0;
  /* A new epoch invalidates every cached field and candidate mark. */
  e->epoch++;
  e->src = src;
  e->arena_len = 0;
  e->oom = false;
  for (size_t i = 0; i < b->nalways; i++)
    candidate(e, b->always[i]);
  prefilter(e, b);
  qsort(e->cand, e->ncand, sizeof e->cand[0], cmp_u32);
  for (size_t c = 0; c < e->ncand; c++) {
    const rule_t *r = &rs->rules[e->cand[c]];
    if (r->product && (product == NULL || strcmp(r->product, product) != 0))
      continue;
    e->nhitf = 0;
    if (!eval_node(e, r->root, true))
      continue;
    sigma_match_t *m = add_match(e, r, e->cand[c]);
    if (m == NULL)
      continue;
    memcpy(m->fields, e->hitf, e->nhitf * sizeof e->hitf[0]);
    m->nfields = e->nhitf;
    if (r->nincorr > 0)
      correlate(e, r, time_ns);
  }
  e->src = NULL;
  if (e->oom)
    return YM_ENOMEM;
  return (int)e->nmatches;
}

const sigma_match_t *sigma_eval_match(const sigma_eval_t *e, size_t i) {
  return i < e->nmatches ? &e->matches[i] : NULL;
}

uint64_t sigma_eval_regex_limited(const sigma_eval_t *e) {
  return e->regex_limited;
}

size_t sigma_eval_last_candidates(const sigma_eval_t *e) {
  return e->ncand;
}

/* ---------------------------------------------------------------- */
/* cJSON events                                                       */

/* Finds a dotted path in nested objects, trying at each level the
 * longest dotted key first ("process" {"parent.name": ...} also works). */
static const cJSON *json_path(const cJSON *o, const char *path) {
  if (!cJSON_IsObject(o))
    return NULL;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, path);
  if (v != NULL)
    return v;
  const char *dot = strchr(path, '.');
  while (dot != NULL) {
    char head[160];
    size_t hn = (size_t)(dot - path);
    if (hn >= sizeof head)
      return NULL;
    memcpy(head, path, hn);
    head[hn] = '\0';
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(o, head);
    if (sub != NULL && (v = json_path(sub, dot + 1)) != NULL)
      return v;
    dot = strchr(dot + 1, '.');
  }
  return NULL;
}

static bool json_scalar(const cJSON *v, char *num, sigma_str_t *out) {
  if (cJSON_IsString(v) && v->valuestring) {
    out->p = v->valuestring;
    out->n = strlen(v->valuestring);
    return true;
  }
  if (cJSON_IsNumber(v)) {
    double d = v->valuedouble;
    int n;
    if (d == (double)(long long)d && d > -9e18 && d < 9e18)
      n = snprintf(num, 32, "%lld", (long long)d);
    else
      n = snprintf(num, 32, "%.17g", d);
    out->p = num;
    out->n = n > 0 ? (size_t)n : 0;
    return true;
  }
  if (cJSON_IsBool(v)) {
    out->p = cJSON_IsTrue(v) ? "true" : "false";
    out->n = strlen(out->p);
    return true;
  }
  return false;
}

static size_t cjson_get(void *ctx, size_t f, sigma_str_t *vals, size_t max) {
  sigma_cjson_t *c = ctx;
  const char *name = sigma_ruleset_field_name(c->rs, f);
  if (name == NULL)
    return 0;
  const cJSON *v = json_path(c->event, name);
  if (v == NULL)
    return 0;
  if (!cJSON_IsArray(v))
    return max > 0 && json_scalar(v, c->num[0], &vals[0]) ? 1 : 0;
  size_t n = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, v) {
    if (n >= max || n >= SIGMA_FIELD_MAX_VALUES)
      break;
    if (json_scalar(it, c->num[n], &vals[n]))
      n++;
  }
  return n;
}

void sigma_source_cjson(sigma_source_t *src, sigma_cjson_t *ctx, const sigma_ruleset_t *rs,
                        const cJSON *event) {
  ctx->rs = rs;
  ctx->event = event;
  src->get = cjson_get;
  src->ctx = ctx;
}

/* ---------------------------------------------------------------- */
/* The agent's events                                                 */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static bool hex4(const char *p, const char *end, uint32_t *out) {
  if (end - p < 4)
    return false;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(p[i]);
    if (h < 0)
      return false;
    v = (v << 4) | (uint32_t)h;
  }
  *out = v;
  return true;
}

static size_t put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Decodes the JSON array of strings the event stores ("[\"a\",\"b\"]")
 * into buf; items that do not fit are left out. */
static size_t decode_array(const char *p, size_t n, char *buf, size_t cap, sigma_str_t *vals,
                           size_t max) {
  const char *end = p + n;
  size_t used = 0, nv = 0;
  if (n < 2 || *p != '[')
    return 0;
  p++;
  while (p < end && nv < max) {
    while (p < end && (*p == ',' || *p == ' '))
      p++;
    if (p >= end || *p != '"')
      break;
    p++;
    size_t start = used;
    bool fits = true;
    while (p < end && *p != '"') {
      char tmp[4];
      size_t tn = 1;
      if (*p != '\\') {
        tmp[0] = *p++;
      } else {
        if (++p >= end)
          return nv;
        char e = *p++;
        uint32_t cp, lo;
        switch (e) {
        case 'n':
          tmp[0] = '\n';
          break;
        case 't':
          tmp[0] = '\t';
          break;
        case 'r':
          tmp[0] = '\r';
          break;
        case 'b':
          tmp[0] = '\b';
          break;
        case 'f':
          tmp[0] = '\f';
          break;
        case 'u':
          if (!hex4(p, end, &cp))
            return nv;
          p += 4;
          if (cp >= 0xDC80 && cp <= 0xDCFF) {
            tmp[0] = (char)(cp - 0xDC00); /* a byte that was not UTF-8 */
          } else if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
                     hex4(p + 2, end, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            p += 6;
            tn = put_utf8(tmp, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
          } else {
            tn = put_utf8(tmp, cp);
          }
          break;
        default:
          tmp[0] = e; /* \" \\ \/ */
        }
      }
      if (used + tn > cap)
        fits = false;
      if (fits) {
        memcpy(buf + used, tmp, tn);
        used += tn;
      }
    }
    if (p >= end)
      break;
    p++; /* closing quote */
    if (fits) {
      vals[nv].p = buf + start;
      vals[nv].n = used - start;
      nv++;
    } else {
      used = start;
    }
  }
  return nv;
}

static size_t event_get(void *ctx, size_t f, sigma_str_t *vals, size_t max) {
  sigma_event_src_t *c = ctx;
  if (f >= c->rs->nfields || c->rs->ymf[f] < 0 || max == 0)
    return 0;
  ym_field_t yf = (ym_field_t)c->rs->ymf[f];
  const ym_event_t *ev = c->ev;
  if (!ym_event_has(ev, yf))
    ev = ev->base;
  if (ev == NULL || !ym_event_has(ev, yf))
    return 0;
  switch (ym_schema_field(yf)->kind) {
  case YM_K_STR:
  case YM_K_DATE:
    vals[0].p = ym_event_get_str(ev, yf, &vals[0].n);
    return vals[0].p ? 1 : 0;
  case YM_K_INT: {
    int n = snprintf(c->buf, sizeof c->buf, "%lld", (long long)ev->val[yf].num);
    vals[0].p = c->buf;
    vals[0].n = n > 0 ? (size_t)n : 0;
    return 1;
  }
  case YM_K_BOOL:
    vals[0].p = ev->val[yf].num ? "true" : "false";
    vals[0].n = strlen(vals[0].p);
    return 1;
  case YM_K_ARR:
    return decode_array(ev->arena.data + ev->val[yf].off, ev->val[yf].len, c->buf, sizeof c->buf,
                        vals, max);
  default:
    return 0;
  }
}

void sigma_source_event(sigma_source_t *src, sigma_event_src_t *ctx, const sigma_ruleset_t *rs,
                        const ym_event_t *ev) {
  ctx->rs = rs;
  ctx->ev = ev;
  src->get = event_get;
  src->ctx = ctx;
}

size_t sigma_event_categories(const char *dataset, const char *action, const char **out,
                              size_t max) {
  static const struct {
    const char *dataset, *action, *cats[SIGMA_EVENT_MAX_CATEGORIES];
  } map[] = {
      {"yamori.process", "exec", {"process_creation", NULL}},
      {"yamori.process", "end", {"process_termination", NULL}},
      {"yamori.file", "creation", {"file_event", NULL}},
      {"yamori.file", "modification", {"file_event", "file_change"}},
      {"yamori.file", "rename", {"file_event", "file_rename"}},
      {"yamori.file", "deletion", {"file_delete", NULL}},
      {"yamori.network", "connection-attempted", {"network_connection", NULL}},
      {"yamori.network", "connection-failed", {"network_connection", NULL}},
      {"yamori.network", "connection-accepted", {"network_connection", NULL}},
  };
  if (dataset == NULL || action == NULL)
    return 0;
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (strcmp(map[i].dataset, dataset) != 0 || strcmp(map[i].action, action) != 0)
      continue;
    size_t n = 0;
    for (size_t k = 0; k < SIGMA_EVENT_MAX_CATEGORIES && map[i].cats[k] != NULL && n < max; k++)
      out[n++] = map[i].cats[k];
    return n;
  }
  return 0;
}
