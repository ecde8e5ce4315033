#include "rules.h"

#include "yamori/err.h"
#include "yamori/sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int rules_global_init(void) {
  return yr_initialize() == ERROR_SUCCESS ? 0 : YM_ENOMEM;
}

void rules_global_free(void) {
  yr_finalize();
}

/* The first compile error: its line and message (the file is known to the
 * caller, since sources are added one file at a time). */
typedef struct {
  bool failed;
  int line;
  char msg[256];
} compile_ctx_t;

static void on_compile_msg(int level, const char *file, int line, const YR_RULE *rule,
                           const char *message, void *data) {
  compile_ctx_t *c = data;
  (void)rule;
  (void)file;
  if (level != YARA_ERROR_LEVEL_ERROR || c->failed)
    return;
  c->failed = true;
  c->line = line;
  snprintf(c->msg, sizeof(c->msg), "%s", message);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_rule_file(const char *name) {
  size_t n = strlen(name);
  return name[0] != '.' && ((n > 4 && strcmp(name + n - 4, ".yar") == 0) ||
                            (n > 5 && strcmp(name + n - 5, ".yara") == 0));
}

/* Lists the rule files of one directory, sorted. */
static int list_dir(const char *dir, char ***names, size_t *n) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return ym_err_from_errno(errno);
  size_t cap = 16;
  *names = calloc(cap, sizeof(char *));
  *n = 0;
  struct dirent *de;
  int rc = 0;
  while (*names != NULL && (de = readdir(d)) != NULL) {
    if (!is_rule_file(de->d_name))
      continue;
    if (*n >= RULES_MAX_FILES) {
      rc = YM_ETOOBIG;
      break;
    }
    if (*n == cap) {
      char **bigger = realloc(*names, cap * 2 * sizeof(char *));
      if (bigger == NULL) {
        rc = YM_ENOMEM;
        break;
      }
      *names = bigger;
      cap *= 2;
    }
    (*names)[(*n)++] = strdup(de->d_name);
  }
  closedir(d);
  if (*names == NULL)
    return YM_ENOMEM;
  qsort(*names, *n, sizeof(char *), cmp_names);
  return rc;
}

static void free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}

/* Reads a whole rule file (bounded) without following symlinks. */
static int read_rule_file(const char *path, ym_buf_t *src) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return ym_err_from_errno(errno);
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    rc = YM_EINVAL;
  else if (st.st_size > RULES_MAX_FILE_BYTES)
    rc = YM_ETOOBIG;
  char chunk[65536];
  while (rc == 0) {
    ssize_t r = read(fd, chunk, sizeof(chunk));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      rc = YM_EIO;
    if (r <= 0)
      break;
    rc = ym_buf_append(src, chunk, (size_t)r);
  }
  close(fd);
  return rc;
}

/* libyara's arena packs its records without alignment padding: reading
 * them is fine on the CPUs it supports, but the alignment sanitizer is off
 * here (see scanner.c). */
__attribute__((no_sanitize("alignment"))) static unsigned count_rules(YR_RULES *rules) {
  unsigned n = 0;
  YR_RULE *rule;
  yr_rules_foreach(rules, rule) {
    n++;
  }
  return n;
}

/* The external variables the scanner sets on every scan (docs/rules.md):
 * these strings, and the boolean is_executable. */
static const char *const externals[] = {"filename", "filepath", "extension", "filetype", "owner"};

int rules_compile(const ym_strlist_t *dirs, rules_t **out, char *err, size_t errlen) {
  YR_COMPILER *comp = NULL;
  compile_ctx_t ctx = {false, 0, ""};
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t total = 0;
  unsigned files = 0;
  int rc = 0;
  ym_buf_t src;
  ym_buf_init(&src, RULES_MAX_FILE_BYTES);
  err[0] = '\0';
  if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    rc = YM_ECRYPTO;
    goto out;
  }
  if (yr_compiler_create(&comp) != ERROR_SUCCESS) {
    rc = YM_ENOMEM;
    goto out;
  }
  yr_compiler_set_callback(comp, on_compile_msg, &ctx);
  /* No include statements: a rule set is exactly the files listed. */
  yr_compiler_set_include_callback(comp, NULL, NULL, NULL);
  for (size_t i = 0; i < sizeof(externals) / sizeof(externals[0]); i++)
    yr_compiler_define_string_variable(comp, externals[i], "");
  yr_compiler_define_boolean_variable(comp, "is_executable", 0);

  for (size_t d = 0; d < dirs->n && rc == 0; d++) {
    char **names = NULL;
    size_t n = 0;
    rc = list_dir(dirs->v[d], &names, &n);
    if (rc != 0) {
      snprintf(err, errlen, "%s: cannot list rule directory: %s", dirs->v[d], ym_strerror(rc));
      free_names(names, n);
      break;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
      char path[4200];
      snprintf(path, sizeof(path), "%s/%s", dirs->v[d], names[i]);
      ym_buf_reset(&src);
      rc = read_rule_file(path, &src);
      if (rc != 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, ym_strerror(rc));
        break;
      }
      total += src.len;
      if (++files > RULES_MAX_FILES || total > RULES_MAX_TOTAL_BYTES) {
        rc = YM_ETOOBIG;
        snprintf(err, errlen, "%s: rule sources exceed the limits (%d files, %d bytes)", path,
                 RULES_MAX_FILES, RULES_MAX_TOTAL_BYTES);
        break;
      }
      EVP_DigestUpdate(md, names[i], strlen(names[i]) + 1);
      EVP_DigestUpdate(md, src.data ? src.data : "", src.len);
      /* Namespace: the file name without its extension. */
      char ns[256];
      snprintf(ns, sizeof(ns), "%.*s", (int)(strrchr(names[i], '.') - names[i]), names[i]);
      if (yr_compiler_add_string(comp, src.data ? src.data : "", ns) != 0 || ctx.failed) {
        snprintf(err, errlen, "%s:%d: %s", path, ctx.line, ctx.msg);
        rc = YM_EPARSE;
      }
    }
    free_names(names, n);
  }
  if (rc == 0 && files == 0) {
    rc = YM_ENOENT;
    snprintf(err, errlen, "no rule files (*.yar, *.yara) found");
  }
  if (rc != 0)
    goto out;

  rules_t *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    rc = YM_ENOMEM;
    goto out;
  }
  if (yr_compiler_get_rules(comp, &r->yr) != ERROR_SUCCESS) {
    free(r);
    rc = YM_ENOMEM;
    goto out;
  }
  uint8_t dig[32];
  EVP_DigestFinal_ex(md, dig, NULL);
  ym_hex(dig, 8, r->version);
  r->count = count_rules(r->yr);
  r->files = files;
  atomic_init(&r->refs, 1);
  *out = r;
out:
  if (comp != NULL)
    yr_compiler_destroy(comp);
  EVP_MD_CTX_free(md);
  ym_buf_free(&src);
  return rc;
}

int rules_empty(rules_t **out) {
  YR_COMPILER *comp = NULL;
  rules_t *r = calloc(1, sizeof(*r));
  if (r == NULL || yr_compiler_create(&comp) != ERROR_SUCCESS) {
    free(r);
    return YM_ENOMEM;
  }
  for (size_t i = 0; i < sizeof(externals) / sizeof(externals[0]); i++)
    yr_compiler_define_string_variable(comp, externals[i], "");
  yr_compiler_define_boolean_variable(comp, "is_executable", 0);
  int rc = yr_compiler_get_rules(comp, &r->yr) == ERROR_SUCCESS ? 0 : YM_ENOMEM;
  yr_compiler_destroy(comp);
  if (rc != 0) {
    free(r);
    return rc;
  }
  snprintf(r->version, sizeof(r->version), "none");
  atomic_init(&r->refs, 1);
  *out = r;
  return 0;
}

void rules_ref(rules_t *r) {
  atomic_fetch_add(&r->refs, 1);
}

void rules_unref(rules_t *r) {
  if (r != NULL && atomic_fetch_sub(&r->refs, 1) == 1) {
    yr_rules_destroy(r->yr);
    free(r);
  }
}
