/*
 * Sigma rule compiler: YAML rules in, compact JSON out (sigma_compile.h,
 * docs/behaviour.md).
 *
 * A rule file goes through four steps:
 *   1. the bytes are checked as UTF-8 (the line of the first bad byte is
 *      reported) and against the file size cap;
 *   2. libyaml's event parser builds a small tree of maps, lists and
 *      scalars with their line numbers, refusing anchors and aliases and
 *      enforcing the depth, node, list and scalar caps as it goes;
 *   3. each YAML document is compiled as one rule: metadata, log source,
 *      every search identifier into a match expression (field names mapped
 *      to ECS, modifiers applied to the values), then the condition string
 *      parsed with the search identifiers substituted in;
 *   4. the accepted rules are written as one JSON document.
 */
#include "sigma_compile.h"

#include "yamori/err.h"
#include "yamori/event.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define MAX_RULES 100000
#define MAX_INPUT_FILES 20000
#define MAX_DIR_DEPTH 8
/* Caps on one rule's compiled expression (the agent's loader has the
 * same: agent/src/sigma.h). */
#define MAX_RULE_NODES 10000
#define MAX_RULE_WEIGHT 200000
#define MAX_MATCHER_VALUES 4096

/* ---------------------------------------------------------------- */
/* Field mapping                                                      */

static const sigma_mapping_t mappings[] = {
    {"Image", NULL, "process.executable", NULL},
    {"CommandLine", NULL, "process.command_line", NULL},
    {"ParentImage", NULL, "process.parent.executable", NULL},
    {"ParentCommandLine", NULL, "process.parent.command_line", NULL},
    {"CurrentDirectory", NULL, "process.working_directory", NULL},
    {"User", NULL, "process.user.name", NULL},
    {"LogonId", NULL, "yamori.process.login_session", NULL},
    {"ProcessId", NULL, "process.pid", NULL},
    {"ParentProcessId", NULL, "process.parent.pid", NULL},
    {"ParentUser", NULL, "process.parent.user.name", NULL},
    {"OriginalFileName", NULL, "process.pe.original_file_name", NULL},
    {"Hashes", "process_creation", "process.hash.sha256", "SHA256=<hex> values only"},
    {"Hashes", "file_", "file.hash.sha256", "SHA256=<hex> values only"},
    {"TargetFilename", NULL, "file.path", NULL},
    {"SourceFilename", NULL, "yamori.file.original.path", NULL},
    {"DestinationIp", NULL, "destination.ip", NULL},
    {"DestinationPort", NULL, "destination.port", NULL},
    {"DestinationHostname", NULL, "destination.domain", NULL},
    {"SourceIp", NULL, "source.ip", NULL},
    {"SourcePort", NULL, "source.port", NULL},
    {"SourceHostname", NULL, "source.domain", NULL},
    {"Protocol", NULL, "network.transport", NULL},
    {"Initiated", NULL, "yamori.network.initiated", NULL},
};

const sigma_mapping_t *sigma_compile_mappings(size_t *n) {
  *n = sizeof mappings / sizeof mappings[0];
  return mappings;
}

bool sigma_compile_field_emitted(const char *ecs) {
  for (int f = 0; f < YM_F_COUNT; f++)
    if (strcmp(ym_schema_field((ym_field_t)f)->name, ecs) == 0)
      return true;
  return false;
}

/* The log source categories the agent produces (file_access not yet). */
static const char *const categories[] = {
    "process_creation", "process_termination", "file_event",  "file_change",
    "file_delete",      "file_rename",         "file_access", "network_connection",
};

static bool category_known(const char *c) {
  for (size_t i = 0; i < sizeof categories / sizeof categories[0]; i++)
    if (strcmp(categories[i], c) == 0)
      return true;
  return false;
}

/* ---------------------------------------------------------------- */
/* Compiler state and refusals                                        */

struct sigma_compiler {
  unsigned flags;
  cJSON *rules;
  cJSON *correlations;
  sigma_report_t *report;
  size_t nreport, capreport;
  size_t accepted;
};

/* Per-rule state while one document is compiled. */
typedef struct {
  sigma_compiler_t *c;
  const char *file;
  const char *category; /* "" when none */
  unsigned err_line;
  char err[320];
  char warn[320];
} rule_cx_t;

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
refuse(rule_cx_t *cx, unsigned line, const char *fmt, ...) {
  if (cx->err[0] == '\0') {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cx->err, sizeof cx->err, fmt, ap);
    va_end(ap);
    cx->err_line = line;
  }
  return YM_EPARSE;
}

static void warn(rule_cx_t *cx, const char *text) {
  size_t n = strlen(cx->warn);
  if (strstr(cx->warn, text) != NULL || n + strlen(text) + 3 >= sizeof cx->warn)
    return;
  snprintf(cx->warn + n, sizeof cx->warn - n, "%s%s", n ? "; " : "", text);
}

static int add_report(sigma_compiler_t *c, const char *file, unsigned line, const char *id,
                      const char *title, bool ok, bool corr, const char *reason) {
  if (c->nreport == c->capreport) {
    size_t cap = c->capreport ? c->capreport * 2 : 64;
    sigma_report_t *r = realloc(c->report, cap * sizeof *r);
    if (r == NULL)
      return YM_ENOMEM;
    c->report = r;
    c->capreport = cap;
  }
  sigma_report_t *r = &c->report[c->nreport++];
  memset(r, 0, sizeof *r);
  snprintf(r->file, sizeof r->file, "%s", file);
  r->line = line;
  snprintf(r->id, sizeof r->id, "%s", id ? id : "");
  snprintf(r->title, sizeof r->title, "%s", title ? title : "");
  r->accepted = ok;
  r->correlation = corr;
  snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
  return 0;
}

/* ---------------------------------------------------------------- */
/* UTF-8 check                                                        */

/* Returns 0 when s is valid UTF-8 (no overlongs, no surrogates, no NUL),
 * or the 1-based line of the first bad byte. */
static unsigned utf8_bad_line(const unsigned char *s, size_t n) {
  unsigned line = 1;
  size_t i = 0;
  while (i < n) {
    unsigned char b = s[i];
    if (b == '\n')
      line++;
    if (b == 0)
      return line;
    if (b < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint32_t cp;
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
      cp = b & 0x1Fu;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      cp = b & 0x0Fu;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      cp = b & 0x07u;
    } else {
      return line;
    }
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= n || (s[i + k] & 0xC0) != 0x80)
        return line;
      cp = (cp << 6) | (s[i + k] & 0x3Fu);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return line;
    i += need + 1;
  }
  return 0;
}

/* ---------------------------------------------------------------- */
/* YAML tree                                                          */

enum { Y_SCALAR, Y_MAP, Y_SEQ };

typedef struct ynode {
  int type;
  unsigned line;
  bool plain; /* scalar written without quotes */
  char *str;  /* scalar */
  size_t len;
  struct ynode **kid; /* map: key, value, key, value... */
  size_t n, cap;
} ynode_t;

static void ynode_free(ynode_t *y) {
  if (y == NULL)
    return;
  for (size_t i = 0; i < y->n; i++)
    ynode_free(y->kid[i]);
  free(y->kid);
  free(y->str);
  free(y);
}

static int ynode_push(ynode_t *p, ynode_t *k) {
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 8;
    ynode_t **v = realloc(p->kid, cap * sizeof *v);
    if (v == NULL)
      return YM_ENOMEM;
    p->kid = v;
    p->cap = cap;
  }
  p->kid[p->n++] = k;
  return 0;
}

/* Value of key in map m, or NULL. */
static const ynode_t *ymap_get(const ynode_t *m, const char *key) {
  if (m == NULL || m->type != Y_MAP)
    return NULL;
  for (size_t i = 0; i + 1 < m->n; i += 2)
    if (m->kid[i]->type == Y_SCALAR && strcmp(m->kid[i]->str, key) == 0)
      return m->kid[i + 1];
  return NULL;
}

/* Parses text into documents (each a ynode). On error fills cx's refusal. */
static int yaml_to_tree(rule_cx_t *cx, const char *text, size_t len, ynode_t ***docs_out,
                        size_t *ndocs_out) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p))
    return YM_ENOMEM;
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  ynode_t *stack[SIGMA_MAX_DEPTH + 2];
  size_t depth = 0;
  size_t nodes = 0;
  ynode_t **docs = NULL;
  size_t ndocs = 0;
  int rc = 0;
  bool done = false;
  while (!done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      rc = refuse(cx, (unsigned)p.problem_mark.line + 1, "YAML: %s",
                  p.problem ? p.problem : "parse error");
      break;
    }
    unsigned line = (unsigned)ev.start_mark.line + 1;
    ynode_t *n = NULL;
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = true;
      break;
    case YAML_ALIAS_EVENT:
      rc = refuse(cx, line, "YAML aliases are refused");
      break;
    case YAML_SCALAR_EVENT:
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
      const yaml_char_t *anchor = ev.type == YAML_SCALAR_EVENT ? ev.data.scalar.anchor
                                  : ev.type == YAML_SEQUENCE_START_EVENT
                                      ? ev.data.sequence_start.anchor
                                      : ev.data.mapping_start.anchor;
      if (anchor != NULL) {
        rc = refuse(cx, line, "YAML anchors are refused");
        break;
      }
      if (++nodes > SIGMA_MAX_NODES) {
        rc = refuse(cx, line, "more than %d YAML nodes", SIGMA_MAX_NODES);
        break;
      }
      n = calloc(1, sizeof *n);
      if (n == NULL) {
        rc = YM_ENOMEM;
        break;
      }
      n->line = line;
      if (ev.type == YAML_SCALAR_EVENT) {
        n->type = Y_SCALAR;
        if (ev.data.scalar.length > SIGMA_MAX_SCALAR) {
          free(n);
          rc = refuse(cx, line, "a string is longer than %d bytes", SIGMA_MAX_SCALAR);
          break;
        }
        n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->len = ev.data.scalar.length;
        n->str = malloc(n->len + 1);
        if (n->str == NULL) {
          free(n);
          rc = YM_ENOMEM;
          break;
        }
        memcpy(n->str, ev.data.scalar.value, n->len);
        n->str[n->len] = '\0';
        if (strlen(n->str) != n->len) {
          ynode_free(n);
          rc = refuse(cx, line, "a string holds a NUL byte");
          break;
        }
      } else {
        n->type = ev.type == YAML_MAPPING_START_EVENT ? Y_MAP : Y_SEQ;
      }
      if (depth > 0) {
        ynode_t *parent = stack[depth - 1];
        if (parent->n >= (parent->type == Y_MAP ? 2 * SIGMA_MAX_LIST : SIGMA_MAX_LIST)) {
          ynode_free(n);
          rc = refuse(cx, line, "a list or map has more than %d entries", SIGMA_MAX_LIST);
          break;
        }
        if (ynode_push(parent, n) != 0) {
          ynode_free(n);
          rc = YM_ENOMEM;
          break;
        }
      } else {
        ynode_t **d = realloc(docs, (ndocs + 1) * sizeof *d);
        if (d == NULL) {
          ynode_free(n);
          rc = YM_ENOMEM;
          break;
        }
        docs = d;
        docs[ndocs++] = n;
      }
      if (n->type != Y_SCALAR) {
        if (depth >= SIGMA_MAX_DEPTH) {
          rc = refuse(cx, line, "nesting deeper than %d", SIGMA_MAX_DEPTH);
          break;
        }
        stack[depth++] = n;
      }
      break;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      if (depth > 0)
        depth--;
      break;
    default:
      break;
    }
    yaml_event_delete(&ev);
    if (rc != 0)
      break;
  }
  yaml_parser_delete(&p);
  if (rc != 0) {
    for (size_t i = 0; i < ndocs; i++)
      ynode_free(docs[i]);
    free(docs);
    return rc;
  }
  *docs_out = docs;
  *ndocs_out = ndocs;
  return 0;
}

/* ---------------------------------------------------------------- */
/* Values: wildcards, escapes and modifiers                           */

/* A growable list of strings. */
typedef struct {
  char **v;
  size_t n, cap;
} strlist_t;

static void strlist_free(strlist_t *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static int strlist_addn(strlist_t *l, const char *s, size_t n) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    char **v = realloc(l->v, cap * sizeof *v);
    if (v == NULL)
      return YM_ENOMEM;
    l->v = v;
    l->cap = cap;
  }
  char *d = malloc(n + 1);
  if (d == NULL)
    return YM_ENOMEM;
  memcpy(d, s, n);
  d[n] = '\0';
  l->v[l->n++] = d;
  return 0;
}

static int strlist_add(strlist_t *l, const char *s) {
  return strlist_addn(l, s, strlen(s));
}

/* Sigma value → pattern in the compact glob encoding: '*' and '?' are
 * wildcards, a literal '*', '?' or '\' is written with a backslash before
 * it. In Sigma, "\*" "\?" "\\" are escapes and any other backslash is a
 * literal backslash. */
static char *sigma_to_glob(const char *s) {
  size_t n = strlen(s);
  char *o = malloc(2 * n + 1);
  if (o == NULL)
    return NULL;
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == '\\') {
      char nx = s[i + 1];
      if (nx == '*' || nx == '?' || nx == '\\') {
        o[j++] = '\\';
        o[j++] = nx;
        i++;
      } else {
        o[j++] = '\\';
        o[j++] = '\\';
      }
    } else {
      o[j++] = ch;
    }
  }
  o[j] = '\0';
  return o;
}

/* Literal text → glob encoding (every special escaped). */
static char *literal_to_glob(const char *s, size_t n) {
  char *o = malloc(2 * n + 1);
  if (o == NULL)
    return NULL;
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '*' || s[i] == '?' || s[i] == '\\')
      o[j++] = '\\';
    o[j++] = s[i];
  }
  o[j] = '\0';
  return o;
}

/* Glob → literal when it has no wildcard; returns NULL otherwise (or when
 * out of memory: *oom is set). */
static char *glob_literal(const char *g, size_t *len, bool *oom) {
  size_t n = strlen(g);
  char *o = malloc(n + 1);
  *oom = o == NULL;
  if (o == NULL)
    return NULL;
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    if (g[i] == '\\' && i + 1 < n) {
      o[j++] = g[++i];
    } else if (g[i] == '*' || g[i] == '?') {
      free(o);
      return NULL;
    } else {
      o[j++] = g[i];
    }
  }
  o[j] = '\0';
  *len = j;
  return o;
}

static const char b64tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const unsigned char *s, size_t n, size_t *outlen) {
  char *o = malloc(4 * ((n + 2) / 3) + 1);
  if (o == NULL)
    return NULL;
  size_t j = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)s[i + 1] << 8;
    if (i + 2 < n)
      v |= s[i + 2];
    o[j++] = b64tab[(v >> 18) & 63];
    o[j++] = b64tab[(v >> 12) & 63];
    o[j++] = i + 1 < n ? b64tab[(v >> 6) & 63] : '=';
    o[j++] = i + 2 < n ? b64tab[v & 63] : '=';
  }
  o[j] = '\0';
  *outlen = j;
  return o;
}

/* Text encodings applied before base64. */
enum { ENC_NONE, ENC_UTF16LE, ENC_UTF16BE, ENC_UTF16 };

/* UTF-8 → UTF-16 (LE, BE, or LE with a byte order mark). */
static unsigned char *encode_utf16(const char *s, size_t n, int enc, size_t *outlen) {
  unsigned char *o = malloc(4 * n + 2);
  if (o == NULL)
    return NULL;
  size_t j = 0;
  if (enc == ENC_UTF16) {
    o[j++] = 0xFF;
    o[j++] = 0xFE;
  }
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    if (u[i] < 0x80) {
      cp = u[i++];
    } else if (u[i] < 0xE0) {
      cp = ((u[i] & 0x1Fu) << 6) | (u[i + 1] & 0x3Fu);
      i += 2;
    } else if (u[i] < 0xF0) {
      cp = ((u[i] & 0x0Fu) << 12) | ((u[i + 1] & 0x3Fu) << 6) | (u[i + 2] & 0x3Fu);
      i += 3;
    } else {
      cp = ((u[i] & 0x07u) << 18) | ((u[i + 1] & 0x3Fu) << 12) | ((u[i + 2] & 0x3Fu) << 6) |
           (u[i + 3] & 0x3Fu);
      i += 4;
    }
    uint16_t units[2];
    int nu = 1;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      units[0] = (uint16_t)(0xD800 + (cp >> 10));
      units[1] = (uint16_t)(0xDC00 + (cp & 0x3FF));
      nu = 2;
    } else {
      units[0] = (uint16_t)cp;
    }
    for (int k = 0; k < nu; k++) {
      if (enc == ENC_UTF16BE) {
        o[j++] = (unsigned char)(units[k] >> 8);
        o[j++] = (unsigned char)(units[k] & 0xFF);
      } else {
        o[j++] = (unsigned char)(units[k] & 0xFF);
        o[j++] = (unsigned char)(units[k] >> 8);
      }
    }
  }
  *outlen = j;
  return o;
}

/* The base64 modifiers on a literal: base64 gives one pattern; base64offset
 * gives the three forms the text takes at the three offsets within a
 * longer base64 stream (the characters that depend on the unknown bytes
 * around it are cut off). */
static int apply_base64(rule_cx_t *cx, unsigned line, strlist_t *vals, bool offset, int enc) {
  strlist_t out = {0};
  for (size_t i = 0; i < vals->n; i++) {
    size_t litlen;
    bool oom;
    char *lit = glob_literal(vals->v[i], &litlen, &oom);
    if (lit == NULL) {
      strlist_free(&out);
      return oom ? YM_ENOMEM
                 : refuse(cx, line, "wildcards cannot be combined with the base64 modifiers");
    }
    size_t blen = litlen;
    unsigned char *bytes = (unsigned char *)lit;
    unsigned char *enc_bytes = NULL;
    if (enc != ENC_NONE) {
      enc_bytes = encode_utf16(lit, litlen, enc, &blen);
      if (enc_bytes == NULL) {
        free(lit);
        strlist_free(&out);
        return YM_ENOMEM;
      }
      bytes = enc_bytes;
    }
    int rc = 0;
    for (size_t off = 0; off < (offset ? 3u : 1u) && rc == 0; off++) {
      unsigned char *buf = malloc(blen + 2);
      if (buf == NULL) {
        rc = YM_ENOMEM;
        break;
      }
      memset(buf, ' ', off);
      memcpy(buf + off, bytes, blen);
      size_t elen;
      char *e = base64(buf, blen + off, &elen);
      free(buf);
      if (e == NULL) {
        rc = YM_ENOMEM;
        break;
      }
      size_t start = 0, end = elen;
      if (offset) {
        static const size_t starts[3] = {0, 2, 3};
        static const size_t ends[3] = {0, 3, 2};
        start = starts[off];
        size_t cut = ends[(blen + off) % 3];
        end = elen >= cut ? elen - cut : 0;
      } else {
        while (end > 0 && e[end - 1] == '=')
          end--;
      }
      if (end <= start) {
        free(e);
        rc = refuse(cx, line, "value too short for base64offset");
        break;
      }
      char *g = literal_to_glob(e + start, end - start);
      free(e);
      if (g == NULL || strlist_add(&out, g) != 0)
        rc = YM_ENOMEM;
      free(g);
    }
    free(enc_bytes);
    free(lit);
    if (rc != 0) {
      strlist_free(&out);
      return rc;
    }
  }
  strlist_free(vals);
  *vals = out;
  return 0;
}

/* windash: a '-' or '/' at the start of the value or after a space is any
 * of the dashes Windows programs accept for options. */
static int apply_windash(rule_cx_t *cx, unsigned line, strlist_t *vals) {
  static const char *const dashes[] = {"-", "/", "\xE2\x80\x93", "\xE2\x80\x94", "\xE2\x80\x95"};
  strlist_t out = {0};
  for (size_t i = 0; i < vals->n; i++) {
    const char *g = vals->v[i];
    size_t n = strlen(g);
    size_t pos[8];
    size_t np = 0;
    for (size_t k = 0; k < n; k++) {
      if (g[k] == '\\') {
        k++;
        continue;
      }
      if ((g[k] == '-' || g[k] == '/') && (k == 0 || g[k - 1] == ' ')) {
        if (np == 3) {
          strlist_free(&out);
          return refuse(cx, line, "windash on more than 3 dashes in one value");
        }
        pos[np++] = k;
      }
    }
    size_t combos = 1;
    for (size_t k = 0; k < np; k++)
      combos *= 5;
    if (out.n + combos > SIGMA_MAX_EXPANSION) {
      strlist_free(&out);
      return refuse(cx, line, "windash expands to more than %d values", SIGMA_MAX_EXPANSION);
    }
    for (size_t combo = 0; combo < combos; combo++) {
      char *o = malloc(n * 3 + 1);
      if (o == NULL) {
        strlist_free(&out);
        return YM_ENOMEM;
      }
      size_t j = 0, c = combo, p = 0;
      for (size_t k = 0; k < n; k++) {
        if (p < np && k == pos[p]) {
          const char *d = dashes[c % 5];
          c /= 5;
          p++;
          memcpy(o + j, d, strlen(d));
          j += strlen(d);
        } else {
          o[j++] = g[k];
        }
      }
      o[j] = '\0';
      int rc = strlist_add(&out, o);
      free(o);
      if (rc != 0) {
        strlist_free(&out);
        return rc;
      }
    }
  }
  strlist_free(vals);
  *vals = out;
  return 0;
}

/* Checks an IPv4 or IPv6 network written a.b.c.d/n or x::y/n. */
static bool cidr_valid(const char *s) {
  const char *slash = strchr(s, '/');
  char addr[64];
  size_t alen = slash ? (size_t)(slash - s) : strlen(s);
  if (alen == 0 || alen >= sizeof addr)
    return false;
  memcpy(addr, s, alen);
  addr[alen] = '\0';
  unsigned char buf[16];
  int max;
  if (inet_pton(AF_INET, addr, buf) == 1)
    max = 32;
  else if (inet_pton(AF_INET6, addr, buf) == 1)
    max = 128;
  else
    return false;
  if (slash == NULL)
    return true;
  char *end;
  errno = 0;
  long bits = strtol(slash + 1, &end, 10);
  return slash[1] != '\0' && *end == '\0' && errno == 0 && bits >= 0 && bits <= max;
}

static bool number_valid(const char *s, double *out) {
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || errno != 0 || d != d)
    return false;
  *out = d;
  return true;
}

/* PCRE2 options of a regex with its sub-modifiers (the evaluator uses the
 * same). */
static uint32_t re_options(const char *flags) {
  uint32_t o = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
  if (strchr(flags, 'i'))
    o |= PCRE2_CASELESS;
  if (strchr(flags, 'm'))
    o |= PCRE2_MULTILINE;
  if (strchr(flags, 's'))
    o |= PCRE2_DOTALL;
  return o;
}

static int regex_check(rule_cx_t *cx, unsigned line, const char *pat, const char *flags) {
  int err;
  PCRE2_SIZE off;
  pcre2_code *re =
      pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, re_options(flags), &err, &off, NULL);
  if (re == NULL) {
    PCRE2_UCHAR msg[160];
    pcre2_get_error_message(err, msg, sizeof msg);
    return refuse(cx, line, "regex refused at offset %zu: %s", (size_t)off, (char *)msg);
  }
  pcre2_code_free(re);
  return 0;
}

/* ---------------------------------------------------------------- */
/* Field items: "Field|mod|mod: value(s)"                             */

/* Maps a Sigma field name to the agent's ECS field; refuses it otherwise. */
static int map_field(rule_cx_t *cx, unsigned line, const char *name, const char **ecs,
                     const char **note) {
  *note = NULL;
  for (size_t i = 0; i < sizeof mappings / sizeof mappings[0]; i++) {
    const sigma_mapping_t *m = &mappings[i];
    if (strcmp(m->sigma, name) != 0)
      continue;
    if (m->category && strncmp(cx->category, m->category, strlen(m->category)) != 0)
      continue;
    *ecs = m->ecs;
    *note = m->note;
    if (!sigma_compile_field_emitted(m->ecs)) {
      if (cx->c->flags & SIGMA_STRICT)
        return refuse(cx, line, "field %s maps to %s, which the agent does not emit yet", name,
                      m->ecs);
      char w[160];
      snprintf(w, sizeof w, "%s (%s) not emitted yet", name, m->ecs);
      warn(cx, w);
    }
    return 0;
  }
  if (strchr(name, '.') != NULL && sigma_compile_field_emitted(name)) {
    *ecs = name;
    return 0;
  }
  return refuse(cx, line, "field %s has no ECS field in the agent's mapping", name);
}

enum {
  K_PLAIN,
  K_CONTAINS,
  K_STARTSWITH,
  K_ENDSWITH,
  K_RE,
  K_CIDR,
  K_EXISTS,
  K_GT,
  K_GTE,
  K_LT,
  K_LTE,
  K_FIELDREF
};

static const char *const kind_names[] = {"",    "contains", "startswith", "endswith",
                                         "re",  "cidr",     "exists",     "gt",
                                         "gte", "lt",       "lte",        "fieldref"};

/* Combines children under op ("and"/"or"); a single child is returned
 * as is. Takes ownership of the children array's items. */
static cJSON *combine(const char *op, cJSON *arr) {
  if (cJSON_GetArraySize(arr) == 1) {
    cJSON *one = cJSON_DetachItemFromArray(arr, 0);
    cJSON_Delete(arr);
    return one;
  }
  cJSON *o = cJSON_CreateObject();
  if (o == NULL) {
    cJSON_Delete(arr);
    return NULL;
  }
  cJSON_AddItemToObject(o, op, arr);
  return o;
}

/* Adds a matcher {"field", "match", "values", "all"?, "cased"?} to arr. */
static int add_matcher(cJSON *arr, const char *field, const char *match, strlist_t *vals, bool all,
                       bool cased) {
  if (vals->n == 0)
    return 0;
  if (vals->n > MAX_MATCHER_VALUES)
    return YM_ETOOBIG;
  cJSON *m = cJSON_CreateObject();
  if (m == NULL)
    return YM_ENOMEM;
  cJSON_AddStringToObject(m, "field", field);
  cJSON_AddStringToObject(m, "match", match);
  cJSON *v = cJSON_AddArrayToObject(m, "values");
  for (size_t i = 0; i < vals->n; i++)
    cJSON_AddItemToArray(v, cJSON_CreateString(vals->v[i]));
  if (all && vals->n > 1)
    cJSON_AddBoolToObject(m, "all", true);
  if (cased)
    cJSON_AddBoolToObject(m, "cased", true);
  cJSON_AddItemToArray(arr, m);
  return 0;
}

/* Splits glob patterns by shape (exact, prefix, suffix, contains literal,
 * or glob) and adds one matcher per shape. */
static int add_glob_matchers(cJSON *arr, const char *field, strlist_t *globs, bool all,
                             bool cased) {
  static const char *const shapes[] = {"exact", "prefix", "suffix", "contains", "glob"};
  strlist_t by[5] = {{0}};
  int rc = 0;
  for (size_t i = 0; i < globs->n && rc == 0; i++) {
    const char *g = globs->v[i];
    size_t n = strlen(g);
    size_t lead = 0;
    while (lead < n && g[lead] == '*')
      lead++;
    /* The trailing '*'s that are wildcards (not escaped). */
    size_t end = n, trail = 0;
    while (end > lead && g[end - 1] == '*') {
      size_t bs = 0;
      while (end - 1 - bs > lead && g[end - 2 - bs] == '\\')
        bs++;
      if (bs % 2 == 1)
        break;
      end--;
      trail++;
    }
    char *mid = strndup(g + lead, end - lead);
    if (mid == NULL)
      return YM_ENOMEM;
    size_t litlen;
    bool oom;
    char *lit = glob_literal(mid, &litlen, &oom);
    free(mid);
    if (oom) {
      rc = YM_ENOMEM;
      break;
    }
    int shape;
    if (lit == NULL)
      shape = 4;
    else if (lead == 0 && trail == 0)
      shape = 0;
    else if (lead == 0)
      shape = 1;
    else if (trail == 0)
      shape = 2;
    else
      shape = 3;
    rc = strlist_add(&by[shape], shape == 4 ? g : lit);
    free(lit);
  }
  cJSON *group = all ? cJSON_CreateArray() : arr;
  for (int s = 0; s < 5 && rc == 0; s++)
    rc = add_matcher(group, field, shapes[s], &by[s], all, cased);
  for (int s = 0; s < 5; s++)
    strlist_free(&by[s]);
  if (all) {
    if (rc != 0) {
      cJSON_Delete(group);
      return rc;
    }
    cJSON *c = combine("and", group);
    if (c == NULL)
      return YM_ENOMEM;
    cJSON_AddItemToArray(arr, c);
  }
  return rc;
}

/* Strips "SHA256=" from the values of the Hashes field; other hash kinds
 * are dropped (the agent computes SHA-256 only). */
static int hashes_values(rule_cx_t *cx, unsigned line, strlist_t *vals) {
  strlist_t out = {0};
  for (size_t i = 0; i < vals->n; i++) {
    const char *v = vals->v[i];
    while (*v == '*')
      v++;
    if (strncasecmp(v, "SHA256=", 7) != 0)
      continue;
    v += 7;
    size_t n = strlen(v);
    while (n > 0 && v[n - 1] == '*')
      n--;
    char *low = strndup(v, n);
    if (low == NULL) {
      strlist_free(&out);
      return YM_ENOMEM;
    }
    for (char *p = low; *p; p++)
      if (*p >= 'A' && *p <= 'Z')
        *p = (char)(*p - 'A' + 'a');
    int rc = strlist_add(&out, low);
    free(low);
    if (rc != 0) {
      strlist_free(&out);
      return rc;
    }
  }
  strlist_free(vals);
  *vals = out;
  if (out.n == 0)
    return refuse(cx, line, "Hashes: no SHA256= value (the agent records SHA-256 only)");
  return 0;
}

static bool scalar_is_null(const ynode_t *v) {
  return v == NULL || (v->type == Y_SCALAR && v->plain &&
                       (v->len == 0 || strcmp(v->str, "null") == 0 || strcmp(v->str, "~") == 0 ||
                        strcmp(v->str, "Null") == 0 || strcmp(v->str, "NULL") == 0));
}

/* Compiles one "key: value" of a selection map into arr. */
static int compile_item(rule_cx_t *cx, const ynode_t *key, const ynode_t *val, cJSON *arr) {
  char keybuf[SIGMA_MAX_SCALAR + 1];
  snprintf(keybuf, sizeof keybuf, "%s", key->str);
  unsigned line = key->line;
  char *save = NULL;
  char *fname = strtok_r(keybuf, "|", &save);
  if (fname == NULL || keybuf[0] == '|')
    return refuse(cx, line, "a field name is empty");
  int kind = K_PLAIN;
  bool all = false, cased = false, b64 = false, b64off = false, windash = false;
  int enc = ENC_NONE;
  char reflags[4] = "";
  unsigned step = 0, b64step = 0, windashstep = 0;
  for (char *mod = strtok_r(NULL, "|", &save); mod; mod = strtok_r(NULL, "|", &save)) {
    step++;
    int k = -1;
    for (int i = 1; i < (int)(sizeof kind_names / sizeof kind_names[0]); i++)
      if (strcmp(mod, kind_names[i]) == 0)
        k = i;
    if (k > 0) {
      if (kind != K_PLAIN)
        return refuse(cx, line, "modifiers %s and %s cannot be combined", kind_names[kind], mod);
      kind = k;
    } else if (strcmp(mod, "all") == 0) {
      all = true;
    } else if (strcmp(mod, "cased") == 0) {
      cased = true;
    } else if (strcmp(mod, "base64") == 0 || strcmp(mod, "base64offset") == 0) {
      if (b64 || b64off)
        return refuse(cx, line, "base64 modifier given twice");
      if (mod[6] == 'o')
        b64off = true;
      else
        b64 = true;
      b64step = step;
    } else if (strcmp(mod, "windash") == 0) {
      windash = true;
      windashstep = step;
    } else if (strcmp(mod, "wide") == 0 || strcmp(mod, "utf16le") == 0) {
      enc = ENC_UTF16LE;
    } else if (strcmp(mod, "utf16be") == 0) {
      enc = ENC_UTF16BE;
    } else if (strcmp(mod, "utf16") == 0) {
      enc = ENC_UTF16;
    } else if ((strcmp(mod, "i") == 0 || strcmp(mod, "m") == 0 || strcmp(mod, "s") == 0) &&
               kind == K_RE) {
      if (strchr(reflags, mod[0]) == NULL) {
        size_t l = strlen(reflags);
        reflags[l] = mod[0];
        reflags[l + 1] = '\0';
      }
    } else if (strcmp(mod, "expand") == 0) {
      return refuse(cx, line, "modifier expand (placeholders) is not supported");
    } else {
      return refuse(cx, line, "unknown modifier %s", mod);
    }
  }
  if (enc != ENC_NONE && !(b64 || b64off))
    return refuse(cx, line,
                  "wide/utf16 modifiers are supported only before base64 or base64offset "
                  "(event values are text)");
  if ((b64 || b64off || windash) && kind != K_PLAIN && kind != K_CONTAINS && kind != K_STARTSWITH &&
      kind != K_ENDSWITH)
    return refuse(cx, line, "base64 and windash combine only with contains/startswith/endswith");
  if (b64step && windashstep)
    return refuse(cx, line, "windash and base64 cannot be combined");
  if (cased && kind != K_PLAIN && kind != K_CONTAINS && kind != K_STARTSWITH && kind != K_ENDSWITH)
    return refuse(cx, line, "cased applies to string matching only");

  const char *ecs, *note;
  int rc = map_field(cx, line, fname, &ecs, &note);
  if (rc != 0)
    return rc;

  /* The values, as a list of scalars. */
  const ynode_t *const *items = &val;
  size_t nitems = 1;
  if (val != NULL && val->type == Y_SEQ) {
    items = (const ynode_t *const *)val->kid;
    nitems = val->n;
    if (nitems == 0)
      return refuse(cx, val->line, "field %s has an empty list of values", fname);
  } else if (val != NULL && val->type == Y_MAP) {
    return refuse(cx, val->line, "field %s has a map as its value", fname);
  }
  for (size_t i = 0; i < nitems; i++)
    if (items[i] != NULL && items[i]->type != Y_SCALAR)
      return refuse(cx, items[i]->line, "field %s: values must be strings or numbers", fname);

  if (kind == K_EXISTS) {
    if (nitems != 1 || items[0] == NULL || !items[0]->plain ||
        (strcmp(items[0]->str, "true") != 0 && strcmp(items[0]->str, "false") != 0))
      return refuse(cx, line, "exists takes true or false");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "field", ecs);
    cJSON_AddStringToObject(m, "match", "exists");
    cJSON_AddBoolToObject(m, "value", strcmp(items[0]->str, "true") == 0);
    cJSON_AddItemToArray(arr, m);
    return 0;
  }

  /* null: the field is absent or empty. */
  if (nitems == 1 && scalar_is_null(items[0])) {
    if (kind != K_PLAIN || b64 || b64off || windash)
      return refuse(cx, line, "null cannot be combined with modifiers");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "field", ecs);
    cJSON_AddStringToObject(m, "match", "null");
    cJSON_AddItemToArray(arr, m);
    return 0;
  }
  for (size_t i = 0; i < nitems; i++)
    if (scalar_is_null(items[i]))
      return refuse(cx, items[i] ? items[i]->line : line, "null inside a list of values");

  strlist_t vals = {0};
  for (size_t i = 0; i < nitems && rc == 0; i++)
    rc = strlist_add(&vals, items[i]->str);
  if (rc != 0)
    goto out;

  switch (kind) {
  case K_RE:
    for (size_t i = 0; i < vals.n && rc == 0; i++)
      rc = regex_check(cx, line, vals.v[i], reflags);
    if (rc == 0) {
      cJSON *m = cJSON_CreateObject();
      cJSON_AddStringToObject(m, "field", ecs);
      cJSON_AddStringToObject(m, "match", "re");
      cJSON *v = cJSON_AddArrayToObject(m, "values");
      for (size_t i = 0; i < vals.n; i++)
        cJSON_AddItemToArray(v, cJSON_CreateString(vals.v[i]));
      if (reflags[0])
        cJSON_AddStringToObject(m, "flags", reflags);
      if (all && vals.n > 1)
        cJSON_AddBoolToObject(m, "all", true);
      cJSON_AddItemToArray(arr, m);
    }
    goto out;
  case K_CIDR:
    for (size_t i = 0; i < vals.n; i++)
      if (!cidr_valid(vals.v[i])) {
        rc = refuse(cx, line, "cidr: %s is not an IP network", vals.v[i]);
        goto out;
      }
    rc = add_matcher(arr, ecs, "cidr", &vals, all, false);
    goto out;
  case K_GT:
  case K_GTE:
  case K_LT:
  case K_LTE: {
    double d;
    if (vals.n != 1 || !number_valid(vals.v[0], &d)) {
      rc = refuse(cx, line, "%s takes one number", kind_names[kind]);
      goto out;
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "field", ecs);
    cJSON_AddStringToObject(m, "match", kind_names[kind]);
    cJSON_AddNumberToObject(m, "value", d);
    cJSON_AddItemToArray(arr, m);
    goto out;
  }
  case K_FIELDREF: {
    strlist_t refs = {0};
    for (size_t i = 0; i < vals.n && rc == 0; i++) {
      const char *r, *rn;
      rc = map_field(cx, line, vals.v[i], &r, &rn);
      if (rc == 0)
        rc = strlist_add(&refs, r);
    }
    if (rc == 0)
      rc = add_matcher(arr, ecs, "fieldref", &refs, all, false);
    strlist_free(&refs);
    goto out;
  }
  default:
    break;
  }

  /* String matching: wildcards, then the transformations in order. */
  for (size_t i = 0; i < vals.n; i++) {
    char *g = sigma_to_glob(vals.v[i]);
    if (g == NULL) {
      rc = YM_ENOMEM;
      goto out;
    }
    free(vals.v[i]);
    vals.v[i] = g;
  }
  if (note != NULL) {
    rc = hashes_values(cx, line, &vals);
    if (rc != 0)
      goto out;
    kind = K_PLAIN;
  }
  if (b64 || b64off)
    rc = apply_base64(cx, line, &vals, b64off, enc);
  if (rc == 0 && windash)
    rc = apply_windash(cx, line, &vals);
  if (rc != 0)
    goto out;
  for (size_t i = 0; i < vals.n; i++) {
    const char *pre = kind == K_CONTAINS || kind == K_ENDSWITH ? "*" : "";
    const char *post = kind == K_CONTAINS || kind == K_STARTSWITH ? "*" : "";
    size_t n = strlen(pre) + strlen(vals.v[i]) + strlen(post) + 1;
    char *g = malloc(n);
    if (g == NULL) {
      rc = YM_ENOMEM;
      goto out;
    }
    snprintf(g, n, "%s%s%s", pre, vals.v[i], post);
    free(vals.v[i]);
    vals.v[i] = g;
  }
  rc = add_glob_matchers(arr, ecs, &vals, all, cased);
out:
  strlist_free(&vals);
  if (rc == YM_ETOOBIG)
    rc = refuse(cx, line, "more than %d values after expansion", MAX_MATCHER_VALUES);
  return rc;
}

/* A search identifier's value → match expression. */
static int compile_search(rule_cx_t *cx, const ynode_t *v, cJSON **out) {
  *out = NULL;
  if (v == NULL)
    return YM_EINVAL;
  if (v->type == Y_MAP) {
    if (v->n == 0)
      return refuse(cx, v->line, "an empty selection");
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i + 1 < v->n; i += 2) {
      if (v->kid[i]->type != Y_SCALAR) {
        cJSON_Delete(arr);
        return refuse(cx, v->kid[i]->line, "a selection key is not a string");
      }
      int rc = compile_item(cx, v->kid[i], v->kid[i + 1], arr);
      if (rc != 0) {
        cJSON_Delete(arr);
        return rc;
      }
    }
    *out = combine("and", arr);
    return *out ? 0 : YM_ENOMEM;
  }
  if (v->type == Y_SEQ) {
    if (v->n == 0)
      return refuse(cx, v->line, "an empty selection list");
    bool maps = v->kid[0]->type == Y_MAP;
    cJSON *arr = cJSON_CreateArray();
    strlist_t kw = {0};
    int rc = 0;
    for (size_t i = 0; i < v->n && rc == 0; i++) {
      const ynode_t *k = v->kid[i];
      if ((k->type == Y_MAP) != maps || k->type == Y_SEQ) {
        rc = refuse(cx, k->line, "a selection list mixes maps and keywords");
      } else if (maps) {
        cJSON *sub;
        rc = compile_search(cx, k, &sub);
        if (rc == 0)
          cJSON_AddItemToArray(arr, sub);
      } else {
        if (scalar_is_null(k)) {
          rc = refuse(cx, k->line, "null keyword");
          break;
        }
        /* Keywords are searched in every field, as text contained. */
        char *g = sigma_to_glob(k->str);
        if (g == NULL) {
          rc = YM_ENOMEM;
          break;
        }
        size_t n = strlen(g) + 3;
        char *w = malloc(n);
        if (w == NULL) {
          free(g);
          rc = YM_ENOMEM;
          break;
        }
        snprintf(w, n, "%s%s%s", g[0] == '*' ? "" : "*", g,
                 (g[0] && g[strlen(g) - 1] == '*') ? "" : "*");
        free(g);
        rc = strlist_add(&kw, w);
        free(w);
      }
    }
    if (rc == 0 && !maps)
      rc = add_glob_matchers(arr, "*", &kw, false, false);
    if (rc == YM_ETOOBIG)
      rc = refuse(cx, v->line, "more than %d keywords", MAX_MATCHER_VALUES);
    strlist_free(&kw);
    if (rc != 0) {
      cJSON_Delete(arr);
      return rc;
    }
    *out = combine("or", arr);
    return *out ? 0 : YM_ENOMEM;
  }
  return refuse(cx, v->line, "a selection must be a map or a list");
}

/* ---------------------------------------------------------------- */
/* Conditions                                                         */

typedef struct {
  const char *name;
  cJSON *expr;
  size_t weight; /* nodes and values of expr */
} ident_t;

/* Nodes (objects) and values in a compiled expression. */
static void expr_size(const cJSON *e, size_t *nodes, size_t *values) {
  if (cJSON_IsObject(e))
    (*nodes)++;
  else if (cJSON_IsString(e))
    (*values)++;
  const cJSON *k;
  cJSON_ArrayForEach(k, e) expr_size(k, nodes, values);
}

typedef struct {
  rule_cx_t *cx;
  unsigned line;
  const char *s;
  size_t pos;
  char tok[128];
  ident_t *ids;
  size_t nids;
  int depth;
  size_t weight; /* of the expression built so far */
} cond_t;

/* A copy of a search identifier's expression, counted against the cap. */
static cJSON *cond_copy(cond_t *c, const ident_t *id) {
  c->weight += id->weight;
  if (c->weight > MAX_RULE_WEIGHT) {
    refuse(c->cx, c->line, "condition expands to more than %d nodes and values", MAX_RULE_WEIGHT);
    return NULL;
  }
  return cJSON_Duplicate(id->expr, true);
}

static bool ident_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '_' || ch == '-' || ch == '.' || ch == '*';
}

/* Reads the next token into tok ("" at the end). */
static int cond_next(cond_t *c) {
  while (c->s[c->pos] == ' ' || c->s[c->pos] == '\t' || c->s[c->pos] == '\n')
    c->pos++;
  char ch = c->s[c->pos];
  if (ch == '\0') {
    c->tok[0] = '\0';
    return 0;
  }
  if (ch == '(' || ch == ')' || ch == '|') {
    c->tok[0] = ch;
    c->tok[1] = '\0';
    c->pos++;
    return 0;
  }
  size_t n = 0;
  while (ident_char(c->s[c->pos])) {
    if (n + 1 >= sizeof c->tok)
      return refuse(c->cx, c->line, "condition: a name is too long");
    c->tok[n++] = c->s[c->pos++];
  }
  if (n == 0)
    return refuse(c->cx, c->line, "condition: unexpected character '%c'", ch);
  c->tok[n] = '\0';
  return 0;
}

static bool tok_is(const cond_t *c, const char *w) {
  return strcmp(c->tok, w) == 0;
}

/* '*' wildcard match of identifier names ("selection_*"). */
static bool name_match(const char *pat, const char *s) {
  if (*pat == '\0')
    return *s == '\0';
  if (*pat == '*')
    return name_match(pat + 1, s) || (*s && name_match(pat, s + 1));
  return *s == *pat && name_match(pat + 1, s + 1);
}

static int cond_or(cond_t *c, cJSON **out);

static int cond_factor_(cond_t *c, cJSON **out);

/* One operand: a negation, a parenthesised expression, 'x of y', or a
 * search identifier. On error *out is NULL. */
static int cond_factor(cond_t *c, cJSON **out) {
  int rc = cond_factor_(c, out);
  if (rc != 0) {
    cJSON_Delete(*out);
    *out = NULL;
  }
  return rc;
}

static int cond_factor_(cond_t *c, cJSON **out) {
  *out = NULL;
  if (++c->depth > 32)
    return refuse(c->cx, c->line, "condition nested too deeply");
  int rc;
  if (tok_is(c, "not")) {
    if ((rc = cond_next(c)) != 0)
      return rc;
    cJSON *sub;
    if ((rc = cond_factor(c, &sub)) != 0)
      return rc;
    *out = cJSON_CreateObject();
    cJSON_AddItemToObject(*out, "not", sub);
  } else if (tok_is(c, "(")) {
    if ((rc = cond_next(c)) != 0 || (rc = cond_or(c, out)) != 0)
      return rc;
    if (!tok_is(c, ")"))
      return refuse(c->cx, c->line, "condition: missing ')'");
    if ((rc = cond_next(c)) != 0)
      return rc;
  } else if (tok_is(c, "1") || tok_is(c, "all") || tok_is(c, "any")) {
    bool every = tok_is(c, "all");
    if ((rc = cond_next(c)) != 0)
      return rc;
    if (!tok_is(c, "of"))
      return refuse(c->cx, c->line, "condition: expected 'of'");
    if ((rc = cond_next(c)) != 0)
      return rc;
    if (c->tok[0] == '\0' || tok_is(c, "(") || tok_is(c, ")") || tok_is(c, "|"))
      return refuse(c->cx, c->line, "condition: expected a name or 'them' after 'of'");
    bool them = tok_is(c, "them");
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < c->nids; i++) {
      if (them ? c->ids[i].name[0] == '_' : !name_match(c->tok, c->ids[i].name))
        continue;
      cJSON *copy = cond_copy(c, &c->ids[i]);
      if (copy == NULL) {
        cJSON_Delete(arr);
        return c->cx->err[0] ? YM_EPARSE : YM_ENOMEM;
      }
      cJSON_AddItemToArray(arr, copy);
    }
    if (cJSON_GetArraySize(arr) == 0) {
      cJSON_Delete(arr);
      return refuse(c->cx, c->line, "condition: '%s' names no search identifier", c->tok);
    }
    *out = combine(every ? "and" : "or", arr);
    if ((rc = cond_next(c)) != 0)
      return rc;
  } else if (tok_is(c, "|")) {
    return refuse(c->cx, c->line,
                  "condition: aggregations ('| count() ...') are deprecated; use a "
                  "correlation rule");
  } else if (tok_is(c, "near")) {
    return refuse(c->cx, c->line, "condition: 'near' is not supported");
  } else if (c->tok[0] == '\0' || tok_is(c, ")") || tok_is(c, "and") || tok_is(c, "or")) {
    return refuse(c->cx, c->line, "condition: expected a search identifier");
  } else if (strchr(c->tok, '*') != NULL) {
    return refuse(c->cx, c->line, "condition: a wildcard name needs '1 of' or 'all of'");
  } else {
    size_t i;
    for (i = 0; i < c->nids; i++)
      if (strcmp(c->ids[i].name, c->tok) == 0)
        break;
    if (i == c->nids)
      return refuse(c->cx, c->line, "condition: unknown search identifier %s", c->tok);
    if (tok_is(c, "them") || tok_is(c, "of"))
      return refuse(c->cx, c->line, "condition: unexpected '%s'", c->tok);
    if ((*out = cond_copy(c, &c->ids[i])) == NULL)
      return c->cx->err[0] ? YM_EPARSE : YM_ENOMEM;
    if ((rc = cond_next(c)) != 0)
      return rc;
  }
  c->depth--;
  return *out ? 0 : YM_ENOMEM;
}

static int cond_chain(cond_t *c, const char *op, cJSON **out) {
  cJSON *first;
  bool is_or = strcmp(op, "or") == 0;
  int rc = is_or ? cond_chain(c, "and", &first) : cond_factor(c, &first);
  if (rc != 0)
    return rc;
  if (!tok_is(c, op)) {
    *out = first;
    return 0;
  }
  cJSON *arr = cJSON_CreateArray();
  cJSON_AddItemToArray(arr, first);
  while (tok_is(c, op)) {
    cJSON *next;
    if ((rc = cond_next(c)) != 0 ||
        (rc = is_or ? cond_chain(c, "and", &next) : cond_factor(c, &next)) != 0) {
      cJSON_Delete(arr);
      return rc;
    }
    cJSON_AddItemToArray(arr, next);
  }
  *out = combine(op, arr);
  return 0;
}

static int cond_or(cond_t *c, cJSON **out) {
  return cond_chain(c, "or", out);
}

static int compile_condition(rule_cx_t *cx, const ynode_t *cn, ident_t *ids, size_t nids,
                             cJSON **out) {
  cond_t c = {.cx = cx, .line = cn->line, .s = cn->str, .ids = ids, .nids = nids};
  int rc = cond_next(&c);
  if (rc == 0)
    rc = cond_or(&c, out);
  if (rc == 0 && c.tok[0] != '\0') {
    cJSON_Delete(*out);
    *out = NULL;
    if (tok_is(&c, "|"))
      return refuse(cx, cn->line,
                    "condition: aggregations ('| count() ...') are deprecated; use a "
                    "correlation rule");
    if (tok_is(&c, "near"))
      return refuse(cx, cn->line, "condition: 'near' is not supported");
    return refuse(cx, cn->line, "condition: unexpected '%s'", c.tok);
  }
  return rc;
}

/* ---------------------------------------------------------------- */
/* Rules                                                              */

static const char *scalar(const ynode_t *m, const char *key) {
  const ynode_t *v = ymap_get(m, key);
  return v && v->type == Y_SCALAR ? v->str : NULL;
}

/* Copies a list of strings (key absent: nothing). */
static int copy_strings(rule_cx_t *cx, const ynode_t *doc, const char *key, cJSON *rule, bool lower,
                        size_t maxn, size_t maxlen) {
  const ynode_t *v = ymap_get(doc, key);
  if (v == NULL)
    return 0;
  if (v->type != Y_SEQ)
    return refuse(cx, v->line, "%s must be a list", key);
  if (v->n > maxn)
    return refuse(cx, v->line, "%s: more than %zu entries", key, maxn);
  for (size_t i = 0; i < v->n; i++)
    if (v->kid[i]->type == Y_SCALAR && v->kid[i]->len > maxlen)
      return refuse(cx, v->kid[i]->line, "%s: an entry is longer than %zu bytes", key, maxlen);
  cJSON *arr = cJSON_AddArrayToObject(rule, key);
  for (size_t i = 0; i < v->n; i++) {
    if (v->kid[i]->type != Y_SCALAR)
      return refuse(cx, v->kid[i]->line, "%s must be a list of strings", key);
    char *s = strdup(v->kid[i]->str);
    if (s == NULL)
      return YM_ENOMEM;
    if (lower)
      for (char *p = s; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
          *p = (char)(*p - 'A' + 'a');
    cJSON_AddItemToArray(arr, cJSON_CreateString(s));
    free(s);
  }
  return 0;
}

static bool id_valid(const char *s) {
  size_t n = strlen(s);
  return n > 0 && n < 80 &&
         strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == n;
}

static const char *const levels[] = {"informational", "low", "medium", "high", "critical"};

/* Seconds of a Sigma timespan ("30s", "5m", "1h", "1d"), or 0. */
static long timespan_s(const char *s) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || v <= 0 || v > 86400 || end == s || *end == '\0' || end[1] != '\0')
    return 0;
  switch (*end) {
  case 's':
    return v;
  case 'm':
    return v * 60;
  case 'h':
    return v * 3600;
  case 'd':
    return v * 86400;
  default:
    return 0;
  }
}

/* A correlation rule: only what the agent's evaluator can run (counts
 * that fire on gt/gte, docs/behaviour.md). The rules it names are checked
 * when the output is made. */
static int compile_correlation(rule_cx_t *cx, const ynode_t *doc, cJSON *rule) {
  const ynode_t *co = ymap_get(doc, "correlation");
  if (co->type != Y_MAP)
    return refuse(cx, co->line, "correlation must be a map");
  const char *type = scalar(co, "type");
  if (type == NULL || (strcmp(type, "event_count") != 0 && strcmp(type, "value_count") != 0 &&
                       strcmp(type, "temporal") != 0 && strcmp(type, "temporal_ordered") != 0))
    return refuse(cx, ymap_get(co, "type") ? ymap_get(co, "type")->line : co->line,
                  "correlation type must be event_count, value_count, temporal "
                  "or temporal_ordered");
  cJSON *c = cJSON_AddObjectToObject(rule, "correlation");
  cJSON_AddStringToObject(c, "type", type);
  const ynode_t *rules = ymap_get(co, "rules");
  if (rules == NULL || rules->type != Y_SEQ || rules->n == 0 || rules->n > 64)
    return refuse(cx, co->line, "correlation needs a list of 1 to 64 rules");
  cJSON *ra = cJSON_AddArrayToObject(c, "rules");
  for (size_t i = 0; i < rules->n; i++) {
    if (rules->kid[i]->type != Y_SCALAR || !id_valid(rules->kid[i]->str))
      return refuse(cx, rules->kid[i]->line, "correlation rules are rule ids or names");
    cJSON_AddItemToArray(ra, cJSON_CreateString(rules->kid[i]->str));
  }
  const ynode_t *gb = ymap_get(co, "group-by");
  cJSON *ga = cJSON_AddArrayToObject(c, "group_by");
  if (gb != NULL) {
    if (gb->type != Y_SEQ || gb->n > 16)
      return refuse(cx, gb->line, "group-by must be a list of at most 16 fields");
    for (size_t i = 0; i < gb->n; i++) {
      const char *ecs, *note;
      if (gb->kid[i]->type != Y_SCALAR)
        return refuse(cx, gb->kid[i]->line, "group-by must be a list of fields");
      int rc = map_field(cx, gb->kid[i]->line, gb->kid[i]->str, &ecs, &note);
      if (rc != 0)
        return rc;
      cJSON_AddItemToArray(ga, cJSON_CreateString(ecs));
    }
  }
  const ynode_t *tsn = ymap_get(co, "timespan");
  if (tsn == NULL)
    tsn = ymap_get(co, "timeframe");
  long secs = tsn && tsn->type == Y_SCALAR ? timespan_s(tsn->str) : 0;
  if (secs == 0)
    return refuse(cx, tsn ? tsn->line : co->line,
                  "correlation needs a timespan (1s to 1d: 30s, 5m, 1h, 1d)");
  cJSON_AddNumberToObject(c, "timespan_s", (double)secs);
  const ynode_t *cond = ymap_get(co, "condition");
  if (strcmp(type, "event_count") == 0 || strcmp(type, "value_count") == 0) {
    if (cond == NULL || cond->type != Y_MAP)
      return refuse(cx, co->line, "%s needs a condition map (gte: N ...)", type);
    cJSON *cc = cJSON_AddObjectToObject(c, "condition");
    for (size_t i = 0; i + 1 < cond->n; i += 2) {
      const char *k = cond->kid[i]->str;
      const ynode_t *v = cond->kid[i + 1];
      double d;
      if (strcmp(k, "field") == 0 && strcmp(type, "value_count") == 0 && v->type == Y_SCALAR) {
        const char *ecs, *note;
        int rc = map_field(cx, v->line, v->str, &ecs, &note);
        if (rc != 0)
          return rc;
        cJSON_AddStringToObject(cc, "field", ecs);
      } else if ((strcmp(k, "gt") == 0 || strcmp(k, "gte") == 0) && v->type == Y_SCALAR &&
                 number_valid(v->str, &d) && d >= 1 && d <= 1000 && d == (double)(long)d &&
                 cJSON_GetObjectItem(cc, "gt") == NULL && cJSON_GetObjectItem(cc, "gte") == NULL) {
        cJSON_AddNumberToObject(cc, k, d);
      } else if (strcmp(k, "lt") == 0 || strcmp(k, "lte") == 0 || strcmp(k, "eq") == 0) {
        /* An alert on "fewer than N" needs the window to close first. */
        return refuse(cx, cond->kid[i]->line,
                      "correlation condition %s: only gt and gte are evaluated", k);
      } else {
        return refuse(cx, cond->kid[i]->line,
                      "correlation condition %s: gt or gte with a whole number from 1 to 1000, or "
                      "field (value_count)",
                      k);
      }
    }
    if (strcmp(type, "value_count") == 0 && cJSON_GetObjectItem(cc, "field") == NULL)
      return refuse(cx, cond->line, "value_count needs condition.field");
    if (cJSON_GetObjectItem(cc, "gt") == NULL && cJSON_GetObjectItem(cc, "gte") == NULL)
      return refuse(cx, cond->line, "%s needs gt or gte: a whole number from 1 to 1000", type);
  } else if (cond != NULL) {
    return refuse(cx, cond->line, "temporal correlations take no condition");
  }
  return 0;
}

/* Compiles one YAML document as a rule and records its report line. */
static int compile_doc(sigma_compiler_t *c, const char *file, const ynode_t *doc) {
  rule_cx_t cx = {.c = c, .file = file, .category = ""};
  const char *id = NULL, *title = NULL;
  bool corr = false;
  cJSON *rule = cJSON_CreateObject();
  if (rule == NULL)
    return YM_ENOMEM;
  int rc = 0;
  ident_t *ids = NULL;
  size_t nids = 0;
  if (doc->type != Y_MAP) {
    rc = refuse(&cx, doc->line, "a rule must be a YAML map");
    goto done;
  }
  title = scalar(doc, "title");
  id = scalar(doc, "id");
  corr = ymap_get(doc, "correlation") != NULL;
  if (ymap_get(doc, "action") != NULL) {
    rc = refuse(&cx, ymap_get(doc, "action")->line,
                "rule collections (action: global/reset/repeat) are not supported");
    goto done;
  }
  if (title == NULL || strlen(title) == 0 || strlen(title) > 256) {
    rc = refuse(&cx, doc->line, "title missing or longer than 256 bytes");
    goto done;
  }
  if (id == NULL || !id_valid(id)) {
    rc = refuse(&cx, doc->line, "id missing or not made of letters, digits, '-', '_', '.'");
    goto done;
  }
  const char *status = scalar(doc, "status");
  if (status && (strcmp(status, "deprecated") == 0 || strcmp(status, "unsupported") == 0)) {
    rc = refuse(&cx, ymap_get(doc, "status")->line, "status %s", status);
    goto done;
  }
  const char *level = scalar(doc, "level");
  if (level == NULL) {
    level = "medium";
  } else {
    size_t i;
    for (i = 0; i < sizeof levels / sizeof levels[0]; i++)
      if (strcmp(levels[i], level) == 0)
        break;
    if (i == sizeof levels / sizeof levels[0]) {
      rc = refuse(&cx, ymap_get(doc, "level")->line, "unknown level %s", level);
      goto done;
    }
  }
  cJSON_AddStringToObject(rule, "id", id);
  const char *name = scalar(doc, "name");
  if (name && id_valid(name))
    cJSON_AddStringToObject(rule, "name", name);
  cJSON_AddStringToObject(rule, "title", title);
  cJSON_AddStringToObject(rule, "level", level);
  if (status)
    cJSON_AddStringToObject(rule, "status", status);
  const char *desc = scalar(doc, "description");
  if (desc)
    cJSON_AddStringToObject(rule, "description", desc);
  if ((rc = copy_strings(&cx, doc, "tags", rule, true, 64, 128)) != 0 ||
      (rc = copy_strings(&cx, doc, "references", rule, false, 32, 2048)) != 0 ||
      (rc = copy_strings(&cx, doc, "falsepositives", rule, false, 64, 2048)) != 0)
    goto done;
  char where[300];
  snprintf(where, sizeof where, "%s:%u", file, doc->line);
  cJSON_AddStringToObject(rule, "source", where);

  if (corr) {
    rc = compile_correlation(&cx, doc, rule);
    goto done;
  }

  const ynode_t *ls = ymap_get(doc, "logsource");
  if (ls == NULL || ls->type != Y_MAP) {
    rc = refuse(&cx, doc->line, "logsource missing");
    goto done;
  }
  const char *cat = scalar(ls, "category"), *prod = scalar(ls, "product"),
             *svc = scalar(ls, "service");
  if (cat == NULL && svc != NULL) {
    rc = refuse(&cx, ymap_get(ls, "service")->line,
                "log source service %s is not produced by the agent", svc);
    goto done;
  }
  if (cat == NULL) {
    rc = refuse(&cx, ls->line, "log source has no category");
    goto done;
  }
  if (!category_known(cat)) {
    rc = refuse(&cx, ymap_get(ls, "category")->line,
                "log source category %s is not produced by the agent", cat);
    goto done;
  }
  if ((prod && !id_valid(prod)) || (svc && !id_valid(svc)) || strlen(prod ? prod : "") > 64 ||
      strlen(svc ? svc : "") > 64) {
    rc = refuse(&cx, ls->line, "log source product and service are plain names");
    goto done;
  }
  cx.category = cat;
  cJSON *jls = cJSON_AddObjectToObject(rule, "logsource");
  cJSON_AddStringToObject(jls, "category", cat);
  if (prod)
    cJSON_AddStringToObject(jls, "product", prod);
  if (svc)
    cJSON_AddStringToObject(jls, "service", svc);

  const ynode_t *det = ymap_get(doc, "detection");
  if (det == NULL || det->type != Y_MAP) {
    rc = refuse(&cx, doc->line, "detection missing");
    goto done;
  }
  const ynode_t *cond = NULL;
  ids = calloc(det->n / 2 + 1, sizeof *ids);
  if (ids == NULL) {
    rc = YM_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i + 1 < det->n; i += 2) {
    const ynode_t *k = det->kid[i];
    if (k->type != Y_SCALAR) {
      rc = refuse(&cx, k->line, "detection keys must be names");
      goto done;
    }
    if (strcmp(k->str, "condition") == 0) {
      cond = det->kid[i + 1];
      continue;
    }
    if (strcmp(k->str, "timeframe") == 0) {
      rc = refuse(&cx, k->line,
                  "timeframe belongs to the deprecated aggregations; use a "
                  "correlation rule");
      goto done;
    }
    if (k->len == 0 || k->len > 64 || strchr(k->str, '*') != NULL ||
        strspn(k->str, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") !=
            k->len ||
        strcmp(k->str, "them") == 0 || strcmp(k->str, "and") == 0 || strcmp(k->str, "or") == 0 ||
        strcmp(k->str, "not") == 0) {
      rc = refuse(&cx, k->line, "search identifier '%s' is not a plain name", k->str);
      goto done;
    }
    cJSON *e;
    if ((rc = compile_search(&cx, det->kid[i + 1], &e)) != 0)
      goto done;
    size_t en = 0, ev = 0;
    expr_size(e, &en, &ev);
    ids[nids].name = k->str;
    ids[nids].weight = en + ev;
    ids[nids++].expr = e;
  }
  if (cond == NULL) {
    rc = refuse(&cx, det->line, "detection has no condition");
    goto done;
  }
  cJSON *expr = NULL;
  if (cond->type == Y_SCALAR) {
    rc = compile_condition(&cx, cond, ids, nids, &expr);
  } else if (cond->type == Y_SEQ && cond->n > 0) {
    /* A list of conditions: any of them. */
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < cond->n && rc == 0; i++) {
      cJSON *e = NULL;
      if (cond->kid[i]->type != Y_SCALAR)
        rc = refuse(&cx, cond->kid[i]->line, "condition must be a string");
      else
        rc = compile_condition(&cx, cond->kid[i], ids, nids, &e);
      if (rc == 0)
        cJSON_AddItemToArray(arr, e);
    }
    if (rc != 0)
      cJSON_Delete(arr);
    else
      expr = combine("or", arr);
  } else {
    rc = refuse(&cx, cond->line, "condition must be a string");
  }
  if (rc == 0) {
    size_t en = 0, ev = 0;
    expr_size(expr, &en, &ev);
    cJSON_AddItemToObject(rule, "match", expr);
    if (en > MAX_RULE_NODES)
      rc = refuse(&cx, cond->line, "the rule compiles to more than %d expression nodes",
                  MAX_RULE_NODES);
  }

done:
  for (size_t i = 0; i < nids; i++)
    cJSON_Delete(ids[i].expr);
  free(ids);
  if (rc == YM_ENOMEM) {
    cJSON_Delete(rule);
    return rc;
  }
  bool ok = rc == 0;
  if (ok && c->accepted >= MAX_RULES) {
    ok = false;
    refuse(&cx, doc->line, "more than %d rules", MAX_RULES);
  }
  /* A rule id may appear once in a compiled set. */
  if (ok) {
    cJSON *arr = corr ? c->correlations : c->rules, *r;
    cJSON_ArrayForEach(r, arr) {
      if (strcmp(cJSON_GetObjectItem(r, "id")->valuestring, id) == 0) {
        ok = false;
        refuse(&cx, doc->line, "id %s used by another rule", id);
        break;
      }
    }
  }
  if (ok) {
    cJSON_AddItemToArray(corr ? c->correlations : c->rules, rule);
    c->accepted++;
  } else {
    cJSON_Delete(rule);
  }
  int rr =
      add_report(c, file, ok ? doc->line : cx.err_line, id, title, ok, corr, ok ? cx.warn : cx.err);
  if (rr != 0)
    return rr;
  return ok ? 0 : YM_EPARSE;
}

/* ---------------------------------------------------------------- */
/* Files and output                                                   */

sigma_compiler_t *sigma_compiler_new(unsigned flags) {
  sigma_compiler_t *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->flags = flags;
  c->rules = cJSON_CreateArray();
  c->correlations = cJSON_CreateArray();
  if (c->rules == NULL || c->correlations == NULL) {
    sigma_compiler_free(c);
    return NULL;
  }
  return c;
}

void sigma_compiler_free(sigma_compiler_t *c) {
  if (c == NULL)
    return;
  cJSON_Delete(c->rules);
  cJSON_Delete(c->correlations);
  free(c->report);
  free(c);
}

int sigma_compile_text(sigma_compiler_t *c, const char *name, const char *text, size_t len) {
  rule_cx_t cx = {.c = c, .file = name, .category = ""};
  if (len > SIGMA_MAX_FILE_BYTES) {
    refuse(&cx, 1, "file larger than %d bytes", SIGMA_MAX_FILE_BYTES);
  } else {
    unsigned bad = utf8_bad_line((const unsigned char *)text, len);
    if (bad != 0)
      refuse(&cx, bad, "invalid UTF-8");
  }
  ynode_t **docs = NULL;
  size_t ndocs = 0;
  if (cx.err[0] == '\0') {
    int rc = yaml_to_tree(&cx, text, len, &docs, &ndocs);
    if (rc == YM_ENOMEM)
      return rc;
  }
  if (cx.err[0] == '\0' && ndocs == 0)
    refuse(&cx, 1, "no rule in the file");
  if (cx.err[0] != '\0') {
    int rr = add_report(c, name, cx.err_line, NULL, NULL, false, false, cx.err);
    return rr ? rr : YM_EPARSE;
  }
  int result = 0;
  for (size_t i = 0; i < ndocs; i++) {
    int rc = compile_doc(c, name, docs[i]);
    if (rc == YM_ENOMEM)
      result = rc;
    else if (rc != 0 && result == 0)
      result = rc;
  }
  for (size_t i = 0; i < ndocs; i++)
    ynode_free(docs[i]);
  free(docs);
  return result;
}

/* sigma_compile_file() with name as the file's name in the report and in
 * the rules' source. */
static int compile_file_named(sigma_compiler_t *c, const char *path, const char *name) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int rc = ym_err_from_errno(errno);
    char msg[128];
    snprintf(msg, sizeof msg, "cannot open: %s", strerror(errno));
    add_report(c, name, 0, NULL, NULL, false, false, msg);
    return rc;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > SIGMA_MAX_FILE_BYTES) {
    close(fd);
    add_report(c, name, 0, NULL, NULL, false, false,
               "not a regular file, or larger than the file size cap");
    return YM_ETOOBIG;
  }
  size_t size = (size_t)st.st_size;
  char *buf = malloc(size + 1);
  if (buf == NULL) {
    close(fd);
    return YM_ENOMEM;
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  close(fd);
  if (got != size) {
    free(buf);
    add_report(c, name, 0, NULL, NULL, false, false, "read error");
    return YM_EIO;
  }
  buf[size] = '\0';
  int rc = sigma_compile_text(c, name, buf, size);
  free(buf);
  return rc;
}

int sigma_compile_file(sigma_compiler_t *c, const char *path) {
  return compile_file_named(c, path, path);
}

size_t sigma_compiler_report_count(const sigma_compiler_t *c) {
  return c->nreport;
}

const sigma_report_t *sigma_compiler_report(const sigma_compiler_t *c, size_t i) {
  return i < c->nreport ? &c->report[i] : NULL;
}

size_t sigma_compiler_accepted(const sigma_compiler_t *c) {
  return c->accepted;
}

/* True when name is the id or name of an accepted rule. */
static bool rule_known(const sigma_compiler_t *c, const char *name) {
  const cJSON *r;
  cJSON_ArrayForEach(r, c->rules) {
    const cJSON *id = cJSON_GetObjectItem(r, "id"), *nm = cJSON_GetObjectItem(r, "name");
    if (strcmp(id->valuestring, name) == 0 || (nm && strcmp(nm->valuestring, name) == 0))
      return true;
  }
  return false;
}

/* Refuses the correlations whose rules were not accepted (they may come
 * from any file of the set, so this waits for the output). */
static void check_correlations(sigma_compiler_t *c) {
  cJSON *r = c->correlations ? c->correlations->child : NULL;
  while (r != NULL) {
    cJSON *next = r->next;
    const cJSON *ref, *refs = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "correlation"), "rules");
    const char *missing = NULL;
    cJSON_ArrayForEach(ref, refs) {
      if (!rule_known(c, ref->valuestring)) {
        missing = ref->valuestring;
        break;
      }
    }
    if (missing != NULL) {
      const char *id = cJSON_GetObjectItem(r, "id")->valuestring;
      for (size_t i = 0; i < c->nreport; i++) {
        sigma_report_t *rep = &c->report[i];
        if (rep->accepted && rep->correlation && strcmp(rep->id, id) == 0) {
          rep->accepted = false;
          snprintf(rep->reason, sizeof rep->reason,
                   "correlation names rule %.80s, which is not in the compiled set", missing);
        }
      }
      cJSON_Delete(cJSON_DetachItemViaPointer(c->correlations, r));
      c->accepted--;
    }
    r = next;
  }
}

char *sigma_compiler_output(sigma_compiler_t *c) {
  check_correlations(c);
  cJSON *o = cJSON_CreateObject();
  if (o == NULL)
    return NULL;
  cJSON_AddStringToObject(o, "format", "yamori-sigma");
  cJSON_AddNumberToObject(o, "version", 1);
  cJSON_AddItemReferenceToObject(o, "rules", c->rules);
  cJSON_AddItemReferenceToObject(o, "correlations", c->correlations);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

/* ---------------------------------------------------------------- */
/* Command line                                                       */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds path, or the .yml/.yaml files under it (sorted, no symlinks). */
static int collect(const char *path, int depth, strlist_t *files) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return strlist_add(files, path); /* compile_file reports the error */
  if (!S_ISDIR(st.st_mode))
    return depth == 0 || S_ISREG(st.st_mode) ? strlist_add(files, path) : 0;
  if (depth >= MAX_DIR_DEPTH)
    return 0;
  DIR *d = opendir(path);
  if (d == NULL)
    return strlist_add(files, path);
  strlist_t names = {0};
  struct dirent *de;
  int rc = 0;
  while (rc == 0 && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    size_t n = strlen(de->d_name);
    bool yml = (n > 4 && strcmp(de->d_name + n - 4, ".yml") == 0) ||
               (n > 5 && strcmp(de->d_name + n - 5, ".yaml") == 0);
    if (!yml && de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
      continue;
    char full[4096];
    if ((size_t)snprintf(full, sizeof full, "%s/%s", path, de->d_name) >= sizeof full)
      continue;
    if (!yml) {
      struct stat s2;
      if (lstat(full, &s2) != 0 || !S_ISDIR(s2.st_mode))
        continue;
    }
    rc = strlist_add(&names, full);
  }
  closedir(d);
  if (names.n > 0)
    qsort(names.v, names.n, sizeof names.v[0], cmp_str);
  for (size_t i = 0; i < names.n && rc == 0; i++) {
    if (files->n >= MAX_INPUT_FILES)
      break;
    rc = collect(names.v[i], depth + 1, files);
  }
  strlist_free(&names);
  return rc;
}

static int write_atomic(const char *out, const char *text) {
  char tmp[4096];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", out) >= sizeof tmp)
    return YM_ETOOBIG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0)
    return ym_err_from_errno(errno);
  size_t n = strlen(text), off = 0;
  while (off < n) {
    ssize_t w = write(fd, text + off, n - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      close(fd);
      unlink(tmp);
      return YM_EIO;
    }
    off += (size_t)w;
  }
  if (write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
    close(fd);
    unlink(tmp);
    return YM_EIO;
  }
  close(fd);
  if (rename(tmp, out) != 0) {
    int rc = ym_err_from_errno(errno);
    unlink(tmp);
    return rc;
  }
  return 0;
}

/* Prints one line per rule and the summary; returns the number refused. */
static size_t print_report(const sigma_compiler_t *c) {
  size_t refused = 0;
  for (size_t i = 0; i < c->nreport; i++) {
    const sigma_report_t *r = &c->report[i];
    if (r->accepted) {
      printf("accepted %s:%u %s %s%s%s%s\n", r->file, r->line, r->id,
             r->correlation ? "(correlation) " : "", r->title, r->reason[0] ? " — warning: " : "",
             r->reason);
    } else {
      refused++;
      printf("refused  %s:%u %s%s%s\n", r->file, r->line, r->id, r->id[0] ? ": " : "", r->reason);
    }
  }
  printf("%zu accepted, %zu refused\n", c->accepted, refused);
  return refused;
}

int sigma_compile_tree(sigma_compiler_t *c, const char *path, const char *base, size_t *files) {
  strlist_t list = {0};
  *files = 0;
  int rc = collect(path, 0, &list);
  int result = 0;
  size_t bl = base != NULL ? strlen(base) : 0;
  for (size_t i = 0; i < list.n && rc == 0; i++) {
    const char *name = list.v[i];
    if (bl > 0 && strncmp(name, base, bl) == 0 && name[bl] == '/' && name[bl + 1] != '\0')
      name += bl + 1;
    int r = compile_file_named(c, list.v[i], name);
    if (r == YM_ENOMEM)
      rc = r;
    else if (r != 0)
      result = YM_EPARSE;
  }
  *files = list.n;
  strlist_free(&list);
  return rc != 0 ? rc : result;
}

int sigma_compile_main(int argc, char **argv) {
  bool strict = false;
  const char *out = NULL;
  strlist_t inputs = {0};
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--strict") == 0) {
      strict = true;
    } else if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc) {
      out = argv[++i];
    } else if (argv[i][0] == '-') {
      strlist_free(&inputs);
      return 64;
    } else if (strlist_add(&inputs, argv[i]) != 0) {
      strlist_free(&inputs);
      return 1;
    }
  }
  if (out == NULL || inputs.n == 0) {
    fprintf(stderr, "usage: yamori-console rules compile-sigma [--strict] IN... -o OUT.json\n");
    strlist_free(&inputs);
    return 64;
  }
  strlist_t files = {0};
  int rc = 0;
  for (size_t i = 0; i < inputs.n && rc == 0; i++)
    rc = collect(inputs.v[i], 0, &files);
  strlist_free(&inputs);
  sigma_compiler_t *c = rc == 0 ? sigma_compiler_new(strict ? SIGMA_STRICT : 0) : NULL;
  if (c == NULL) {
    strlist_free(&files);
    fprintf(stderr, "yamori-console: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < files.n; i++) {
    if (sigma_compile_file(c, files.v[i]) == YM_ENOMEM) {
      fprintf(stderr, "yamori-console: out of memory\n");
      sigma_compiler_free(c);
      strlist_free(&files);
      return 1;
    }
  }
  strlist_free(&files);
  char *text = sigma_compiler_output(c); /* refuses dangling correlations first */
  size_t refused = print_report(c);
  if (strict && refused > 0) {
    fprintf(stderr, "yamori-console: --strict: %zu rules refused; %s not written\n", refused, out);
    sigma_compiler_free(c);
    free(text);
    return 1;
  }
  sigma_compiler_free(c);
  if (text == NULL) {
    fprintf(stderr, "yamori-console: out of memory\n");
    return 1;
  }
  rc = write_atomic(out, text);
  free(text);
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot write %s: %s\n", out, ym_strerror(rc));
    return 1;
  }
  return 0;
}

/* True when name is a safe file name component: 1-64 of A-Z a-z 0-9 . _ -
 * and not starting with a dot. */
static bool safe_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 64 || name[0] == '.')
    return false;
  for (size_t i = 0; i < n; i++) {
    char ch = name[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '.' || ch == '_' || ch == '-'))
      return false;
  }
  return true;
}

/* Creates path as a directory (mode 0755) unless it is one already; a
 * symbolic link is refused. */
static int ensure_dir(const char *path) {
  if (mkdir(path, 0755) != 0 && errno != EEXIST)
    return ym_err_from_errno(errno);
  struct stat st;
  if (lstat(path, &st) != 0)
    return ym_err_from_errno(errno);
  return S_ISDIR(st.st_mode) ? 0 : YM_EPERM;
}

int sigma_import_main(const char *data_dir, int argc, char **argv) {
  const char *tenant = NULL, *out = NULL, *in = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--tenant") == 0 && i + 1 < argc)
      tenant = argv[++i];
    else if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc)
      out = argv[++i];
    else if (argv[i][0] == '-' || in != NULL)
      return 64;
    else
      in = argv[i];
  }
  if (in == NULL || (out == NULL && tenant == NULL) || (tenant && !safe_name(tenant))) {
    fprintf(stderr, "usage: yamori-console rules import-sigma DIR [--tenant NAME] [-o OUT]\n"
                    "  (OUT, a rules directory for `rules publish`, defaults to "
                    "DATA_DIR/rules/NAME with --tenant)\n");
    return 64;
  }
  /* The output's name: import-<last component of DIR>.json. */
  char base[80], path[4096];
  size_t inl = strlen(in);
  while (inl > 1 && in[inl - 1] == '/')
    inl--;
  const char *b = in + inl;
  while (b > in && b[-1] != '/')
    b--;
  snprintf(base, sizeof base, "%.*s", (int)(in + inl - b), b);
  if (!safe_name(base))
    snprintf(base, sizeof base, "rules");
  int rc = 0;
  char dir[4096];
  if (out == NULL) {
    if ((size_t)snprintf(dir, sizeof dir, "%s/rules", data_dir) >= sizeof dir ||
        (rc = ensure_dir(dir)) != 0 ||
        (size_t)snprintf(dir, sizeof dir, "%s/rules/%s", data_dir, tenant) >= sizeof dir)
      rc = rc ? rc : YM_ETOOBIG;
  } else if ((size_t)snprintf(dir, sizeof dir, "%s", out) >= sizeof dir) {
    rc = YM_ETOOBIG;
  }
  if (rc == 0 && (rc = ensure_dir(dir)) == 0) {
    size_t dl = strlen(dir);
    if ((size_t)snprintf(dir + dl, sizeof dir - dl, "/sigma") >= sizeof dir - dl)
      rc = YM_ETOOBIG;
    else
      rc = ensure_dir(dir);
  }
  if (rc == 0 && (size_t)snprintf(path, sizeof path, "%s/import-%s.json", dir, base) >= sizeof path)
    rc = YM_ETOOBIG;
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot make the output directory %s: %s\n", dir,
            ym_strerror(rc));
    return 1;
  }
  sigma_compiler_t *c = sigma_compiler_new(0);
  size_t files = 0;
  rc = c ? sigma_compile_tree(c, in, NULL, &files) : YM_ENOMEM;
  char *text = rc == YM_ENOMEM ? NULL : sigma_compiler_output(c);
  if (text == NULL) {
    fprintf(stderr, "yamori-console: out of memory\n");
    sigma_compiler_free(c);
    return 1;
  }
  print_report(c);
  size_t accepted = c->accepted;
  sigma_compiler_free(c);
  if (files == 0 || accepted == 0) {
    fprintf(stderr, "yamori-console: %s: %s; nothing written\n", in,
            files == 0 ? "no .yml or .yaml rule files" : "no rule accepted");
    free(text);
    return 1;
  }
  rc = write_atomic(path, text);
  free(text);
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot write %s: %s\n", path, ym_strerror(rc));
    return 1;
  }
  printf("wrote %zu rules to %s\n", accepted, path);
  return 0;
}
