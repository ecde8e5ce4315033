/*
 * Tests of the agent's identity: enrollment tokens (a valid one, and every
 * malformed form refused with a message that never contains the token or
 * its secret), the identity file (round trip, mode 0600, atomic
 * replacement, refusal of symbolic links, loose modes and damaged
 * content), the console's answers to an enrollment, and enrollment
 * failures on this machine's real network stack (a closed port, a name
 * that does not resolve).
 */
#include "identity.h"

#include "yamori/err.h"
#include "yamori/json.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* Distinctive secrets: no message may contain them. */
#define TOK_ID "0123456789abcdef"
#define TOK_SECRET "Zx81qQ3k_p9-SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtX"
#define AGENT_SECRET "mQ2aGeNtSeCrEt_aGeNtSeCrEt-aGeNtSeCrEt01234"
#define PIN "sha256//NH4mZALxHHBGIyvcBumbJm02hzLNg6+XgymtmXgObtw="
#define AGENT_ID "8c3e6a0e-2b7f-4a4e-9d0a-7f4c1b2d9e11"

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static void b64url(const char *in, size_t n, char *out, size_t cap) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)(uint8_t)in[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)(uint8_t)in[i + 1] << 8;
    if (i + 2 < n)
      v |= (uint8_t)in[i + 2];
    size_t chars = n - i >= 3 ? 4 : n - i + 1;
    for (size_t k = 0; k < chars; k++) {
      assert_true(o + 1 < cap);
      out[o++] = a[(v >> (18 - 6 * k)) & 63];
    }
  }
  out[o] = '\0';
}

/* Makes "ymt1." + base64url(json). */
static char *make_token(const char *json) {
  size_t cap = strlen(json) * 2 + 16;
  char *t = malloc(cap);
  assert_non_null(t);
  memcpy(t, "ymt1.", 5);
  b64url(json, strlen(json), t + 5, cap - 5);
  return t;
}

static char *token_of(const char *url, const char *pin, const char *tok) {
  char json[2048];
  snprintf(json, sizeof(json), "{\"url\":\"%s\",\"pin\":\"%s\",\"tok\":\"%s\"}", url, pin, tok);
  return make_token(json);
}

/* Asserts that token is refused and that the message is useful and free
 * of the secret and of the token. */
static void refused(const char *token, const char *expect_in_msg) {
  identity_t id;
  char err[512] = "";
  int rc = identity_parse_token(token, &id, err, sizeof(err));
  if (rc == 0)
    fail_msg("token accepted: expected a refusal mentioning \"%s\"", expect_in_msg);
  assert_true(strlen(err) > 10);
  if (strstr(err, expect_in_msg) == NULL)
    fail_msg("message \"%s\" does not mention \"%s\"", err, expect_in_msg);
  assert_null(strstr(err, TOK_SECRET));
  assert_null(strstr(err, "Zx81"));
  if (token != NULL && strlen(token) > 8)
    assert_null(strstr(err, token + 5));
  /* Nothing of the token is left in the output. */
  assert_string_equal(id.tok, "");
  assert_string_equal(id.secret, "");
}

static void refused_json(const char *json, const char *expect_in_msg) {
  char *t = make_token(json);
  refused(t, expect_in_msg);
  free(t);
}

static void refused_fields(const char *url, const char *pin, const char *tok, const char *expect) {
  char *t = token_of(url, pin, tok);
  refused(t, expect);
  free(t);
}

typedef struct {
  char dir[PATH_MAX];
  char path[PATH_MAX]; /* dir/identity.json */
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  char tmpl[] = "/tmp/ym-identity-XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  snprintf(f->dir, sizeof(f->dir), "%s", tmpl);
  snprintf(f->path, sizeof(f->path), "%s/identity.json", tmpl);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  DIR *d = opendir(f->dir);
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      char p[PATH_MAX * 2];
      snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

static identity_t sample(void) {
  identity_t id;
  memset(&id, 0, sizeof(id));
  snprintf(id.url, sizeof(id.url), "https://console.example:8443");
  snprintf(id.pin, sizeof(id.pin), "%s", PIN);
  snprintf(id.tok, sizeof(id.tok), "%s.%s", TOK_ID, TOK_SECRET);
  snprintf(id.agent_id, sizeof(id.agent_id), "%s", AGENT_ID);
  snprintf(id.secret, sizeof(id.secret), "%s", AGENT_SECRET);
  snprintf(id.tenant, sizeof(id.tenant), "acme 株式会社");
  id.checkin_s = 60;
  return id;
}

static void write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  assert_int_equal(fchmod(fd, mode), 0);
  close(fd);
}

static size_t count_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

/* ------------------------------------------------------------------ */
/* Tokens                                                               */

static void token_valid(void **state) {
  (void)state;
  char *t = token_of("https://console.example:8443/", PIN, TOK_ID "." TOK_SECRET);
  identity_t id;
  char err[256] = "";
  assert_int_equal(identity_parse_token(t, &id, err, sizeof(err)), 0);
  assert_string_equal(id.url, "https://console.example:8443"); /* trailing '/' removed */
  assert_string_equal(id.pin, PIN);
  assert_string_equal(id.tok, TOK_ID "." TOK_SECRET);
  assert_string_equal(id.agent_id, "");
  assert_string_equal(id.secret, "");
  free(t);

  /* Other accepted URL forms: IPv4, bracketed IPv6, a path, no port. */
  const char *urls[] = {"https://192.0.2.10:8443", "https://[2001:db8::1]:8443",
                        "https://console.example/yamori", "https://console.example"};
  for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
    t = token_of(urls[i], PIN, TOK_ID "." TOK_SECRET);
    assert_int_equal(identity_parse_token(t, &id, err, sizeof(err)), 0);
    assert_string_equal(id.url, urls[i]);
    free(t);
  }
}

static void token_malformed_envelope(void **state) {
  (void)state;
  refused(NULL, "empty");
  refused("", "empty");
  char *longt = malloc(IDENTITY_TOKEN_MAX + 100);
  assert_non_null(longt);
  memcpy(longt, "ymt1.", 5);
  memset(longt + 5, 'A', IDENTITY_TOKEN_MAX + 50);
  longt[IDENTITY_TOKEN_MAX + 55] = '\0';
  refused(longt, "too long");
  free(longt);

  char *t = token_of("https://console.example", PIN, TOK_ID "." TOK_SECRET);
  t[3] = '2'; /* ymt2. */
  refused(t, "ymt1.");
  t[3] = '1';
  t[4] = ':';
  refused(t, "ymt1.");
  t[4] = '.';
  /* A character outside base64url, and padding. */
  char *bad = strdup(t);
  bad[20] = '+';
  refused(bad, "base64url");
  bad[20] = t[20];
  size_t n = strlen(bad);
  bad[n - 1] = '=';
  refused(bad, "base64url");
  /* Cut when copied: one character too many or too few for base64. */
  bad[n - 1] = t[n - 1];
  n = strlen(bad);
  while ((n - 5) % 4 != 1)
    bad[--n] = '\0';
  refused(bad, "base64url");
  free(bad);
  free(t);
  refused("ymt1.", "base64url");
  refused("ymt1.bm90IGpzb24", "JSON object");     /* "not json" */
  refused_json("[1,2,3]", "JSON object");         /* not an object */
  refused_json("{\"url\":\"https://a\"", "JSON"); /* truncated */
}

static void token_malformed_fields(void **state) {
  (void)state;
  const char *tok = TOK_ID "." TOK_SECRET;
  refused_json("{\"pin\":\"" PIN "\",\"tok\":\"" TOK_ID "." TOK_SECRET "\"}", "url");
  refused_json("{\"url\":\"https://a.example\",\"tok\":\"" TOK_ID "." TOK_SECRET "\"}", "pin");
  refused_json("{\"url\":\"https://a.example\",\"pin\":\"" PIN "\"}", "tok");
  refused_json("{\"url\":42,\"pin\":\"" PIN "\",\"tok\":\"" TOK_ID "." TOK_SECRET "\"}", "url");
  refused_json("{\"url\":\"https://a.example\",\"pin\":\"" PIN "\",\"tok\":\"" TOK_ID "." TOK_SECRET
               "\",\"x\":1}",
               "other than");
  refused_json("{\"url\":\"https://a.example\",\"pin\":\"" PIN "\",\"tok\":\"" TOK_ID "." TOK_SECRET
               "\",\"tok\":\"" TOK_ID "." TOK_SECRET "\"}",
               "other than");

  /* URLs. */
  refused_fields("http://console.example", PIN, tok, "https://");
  refused_fields("ftp://console.example", PIN, tok, "https://");
  refused_fields("https://", PIN, tok, "malformed");
  refused_fields("https://user:pw@console.example", PIN, tok, "malformed");
  refused_fields("https://console.example/?q=1", PIN, tok, "malformed");
  refused_fields("https://console.example/#frag", PIN, tok, "malformed");
  refused_fields("https://console.example:0", PIN, tok, "malformed");
  refused_fields("https://console.example:65536", PIN, tok, "malformed");
  refused_fields("https://console.example:123456", PIN, tok, "malformed");
  refused_fields("https://console.example:", PIN, tok, "malformed");
  refused_fields("https://con sole.example", PIN, tok, "malformed");
  refused_fields("https://console.example/a b", PIN, tok, "malformed");
  refused_fields("https://[::1", PIN, tok, "malformed");
  refused_fields("https://-bad.example", PIN, tok, "malformed");
  refused_fields("https://console.example\\r\\nX: y", PIN, tok, "malformed");
  char longurl[400];
  memset(longurl, 'a', sizeof(longurl));
  memcpy(longurl, "https://", 8);
  longurl[sizeof(longurl) - 1] = '\0';
  refused_fields(longurl, PIN, tok, "malformed");

  /* Pins. */
  refused_fields("https://a.example", "sha1//NH4mZALxHHBGIyvcBumbJm02hzLNg6+XgymtmXgObtw=", tok,
                 "pin");
  refused_fields("https://a.example", "sha256//NH4mZALxHHBGIyvcBumbJm02hzLNg6+XgymtmXgObt=", tok,
                 "pin");
  refused_fields("https://a.example", "sha256//NH4mZALxHHBGIyvcBumbJm02hzLNg6+XgymtmXgObtw", tok,
                 "pin");
  refused_fields("https://a.example", "sha256//NH4mZALxHHBGIyvcBumbJm02hzLNg6-XgymtmXgObtw=", tok,
                 "pin");
  refused_fields("https://a.example", "sha256//NH4mZALxHHBGIyvcBumbJm02hzLNg6+XgymtmXgObtw==", tok,
                 "pin");
  refused_fields("https://a.example", "", tok, "pin");

  /* The token part. */
  refused_fields("https://a.example", PIN, "0123456789ABCDEF." TOK_SECRET, "tok");
  refused_fields("https://a.example", PIN, "0123456789abcde." TOK_SECRET, "tok");
  refused_fields("https://a.example", PIN, "0123456789abcdef" TOK_SECRET, "tok");
  refused_fields("https://a.example", PIN, "0123456789abcdef:" TOK_SECRET, "tok");
  refused_fields("https://a.example", PIN, TOK_ID "." TOK_SECRET "x", "tok");
  refused_fields("https://a.example", PIN, TOK_ID ".Zx81qQ3k_p9-SeCrEtSeCrEtSeCrEtSeCrEtSeCrEt",
                 "tok");
  refused_fields("https://a.example", PIN, TOK_ID ".Zx81qQ3k+p9-SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtX",
                 "tok");
  refused_fields("https://a.example", PIN, "", "tok");
}

/* ------------------------------------------------------------------ */
/* Identity file                                                        */

static void file_round_trip(void **state) {
  fixture_t *f = *state;
  identity_t id = sample(), back;
  char err[512] = "";
  assert_int_equal(identity_load(f->dir, &back, err, sizeof(err)), YM_ENOENT);
  assert_int_equal(identity_save(f->dir, &id), 0);
  struct stat st;
  assert_int_equal(lstat(f->path, &st), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(st.st_uid, geteuid());
  assert_int_equal(count_entries(f->dir), 1); /* no temporary file left */

  assert_int_equal(identity_load(f->dir, &back, err, sizeof(err)), 0);
  assert_string_equal(back.url, id.url);
  assert_string_equal(back.pin, id.pin);
  assert_string_equal(back.tok, id.tok);
  assert_string_equal(back.agent_id, id.agent_id);
  assert_string_equal(back.secret, id.secret);
  assert_string_equal(back.tenant, id.tenant);
  assert_int_equal(back.checkin_s, 60);
  assert_true(identity_same(&id, &back));

  /* Replaced atomically by a new enrollment; still 0600, still one file. */
  snprintf(id.secret, sizeof(id.secret), "%s", "NeWsEcReT_NeWsEcReT_NeWsEcReT_NeWsEcReT-123");
  id.tok[0] = '\0';
  mode_t old = umask(0);
  assert_int_equal(identity_save(f->dir, &id), 0);
  umask(old);
  assert_int_equal(lstat(f->path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(count_entries(f->dir), 1);
  assert_int_equal(identity_load(f->dir, &back, err, sizeof(err)), 0);
  assert_string_equal(back.secret, id.secret);
  assert_string_equal(back.tok, ""); /* no token kept */
  assert_false(identity_same(&back, &(identity_t){0}));

  /* Not enrolled: nothing to save. */
  identity_t empty;
  memset(&empty, 0, sizeof(empty));
  assert_int_equal(identity_save(f->dir, &empty), YM_EINVAL);
}

static void file_creates_state_dir(void **state) {
  fixture_t *f = *state;
  char sub[PATH_MAX + 8];
  snprintf(sub, sizeof(sub), "%s/state", f->dir);
  identity_t id = sample(), back;
  assert_int_equal(identity_save(sub, &id), 0);
  struct stat st;
  assert_int_equal(stat(sub, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0700);
  assert_int_equal(identity_load(sub, &back, NULL, 0), 0);
  char p[PATH_MAX * 2];
  snprintf(p, sizeof(p), "%s/identity.json", sub);
  unlink(p);
  rmdir(sub);
}

static void file_refuses_symlink(void **state) {
  fixture_t *f = *state;
  identity_t id = sample(), back;
  /* A valid identity file elsewhere, and identity.json pointing at it. */
  char elsewhere[PATH_MAX + 16];
  snprintf(elsewhere, sizeof(elsewhere), "%s/other", f->dir);
  assert_int_equal(mkdir(elsewhere, 0700), 0);
  assert_int_equal(identity_save(elsewhere, &id), 0);
  char target[PATH_MAX * 2];
  snprintf(target, sizeof(target), "%s/identity.json", elsewhere);
  assert_int_equal(symlink(target, f->path), 0);
  char err[512] = "";
  assert_int_equal(identity_load(f->dir, &back, err, sizeof(err)), YM_EPERM);
  assert_non_null(strstr(err, "symbolic link"));
  assert_null(strstr(err, AGENT_SECRET));
  assert_string_equal(back.secret, "");
  unlink(target);
  rmdir(elsewhere);
}

static void file_refuses_loose_mode(void **state) {
  fixture_t *f = *state;
  identity_t id = sample(), back;
  char err[512] = "";
  assert_int_equal(identity_save(f->dir, &id), 0);
  const mode_t modes[] = {0644, 0640, 0604, 0400, 0700, 04600};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    assert_int_equal(chmod(f->path, modes[i]), 0);
    err[0] = '\0';
    assert_int_equal(identity_load(f->dir, &back, err, sizeof(err)), YM_EPERM);
    assert_non_null(strstr(err, "0600"));
    assert_null(strstr(err, AGENT_SECRET));
    assert_string_equal(back.secret, "");
  }
  /* A directory in its place. */
  unlink(f->path);
  assert_int_equal(mkdir(f->path, 0600), 0);
  assert_int_equal(identity_load(f->dir, &back, err, sizeof(err)), YM_EPERM);
  assert_non_null(strstr(err, "regular file"));
  rmdir(f->path);
  /* Owned by someone else (needs root to arrange). */
  if (geteuid() == 0) {
    assert_int_equal(identity_save(f->dir, &id), 0);
    assert_int_equal(chown(f->path, 1, 1), 0);
    assert_int_equal(identity_load(f->dir, &back, err, sizeof(err)), YM_EPERM);
    assert_non_null(strstr(err, "owned"));
  }
}

static void file_refuses_bad_content(void **state) {
  fixture_t *f = *state;
  identity_t back;
  char err[512];
  static const struct {
    const char *text;
    const char *msg;
  } cases[] = {
      {"", "JSON object"},
      {"[]", "JSON object"},
      {"{\"url\":\"https://a.example\"", "JSON object"},
      {"{\"pin\":\"" PIN "\",\"agent_id\":\"" AGENT_ID "\",\"secret\":\"" AGENT_SECRET
       "\",\"tenant\":\"t\"}",
       "\"url\""},
      {"{\"url\":\"http://a.example\",\"pin\":\"" PIN "\",\"agent_id\":\"" AGENT_ID
       "\",\"secret\":\"" AGENT_SECRET "\",\"tenant\":\"t\"}",
       "\"url\""},
      {"{\"url\":\"https://a.example\",\"pin\":\"x\",\"agent_id\":\"" AGENT_ID
       "\",\"secret\":\"" AGENT_SECRET "\",\"tenant\":\"t\"}",
       "\"pin\""},
      {"{\"url\":\"https://a.example\",\"pin\":\"" PIN "\",\"agent_id\":\"a\\r\\nX: y\","
       "\"secret\":\"" AGENT_SECRET "\",\"tenant\":\"t\"}",
       "\"agent_id\""},
      {"{\"url\":\"https://a.example\",\"pin\":\"" PIN "\",\"agent_id\":\"" AGENT_ID
       "\",\"secret\":\"" AGENT_SECRET "x\",\"tenant\":\"t\"}",
       "\"secret\""},
      {"{\"url\":\"https://a.example\",\"pin\":\"" PIN "\",\"agent_id\":\"" AGENT_ID
       "\",\"secret\":\"" AGENT_SECRET "\",\"tenant\":\"a\\u0007b\"}",
       "\"tenant\""},
      {"{\"url\":\"https://a.example\",\"pin\":\"" PIN "\",\"agent_id\":\"" AGENT_ID
       "\",\"secret\":\"" AGENT_SECRET "\",\"tenant\":\"t\",\"tok\":\"bad\"}",
       "\"tok\""},
      {"{\"url\":\"https://a.example\",\"pin\":\"" PIN "\",\"agent_id\":\"" AGENT_ID
       "\",\"secret\":\"" AGENT_SECRET "\",\"tenant\":\"t\",\"checkin_s\":\"x\"}",
       "\"checkin_s\""},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    write_file(f->path, cases[i].text, 0600);
    err[0] = '\0';
    int rc = identity_load(f->dir, &back, err, sizeof(err));
    if (rc != YM_EPARSE)
      fail_msg("case %zu: rc %s, message \"%s\"", i, ym_err_name(rc), err);
    if (strstr(err, cases[i].msg) == NULL)
      fail_msg("case %zu: message \"%s\" does not mention %s", i, err, cases[i].msg);
    assert_null(strstr(err, AGENT_SECRET));
    assert_string_equal(back.secret, "");
  }
  /* Larger than any identity file. */
  char *big = malloc(40000);
  assert_non_null(big);
  memset(big, ' ', 39999);
  big[39999] = '\0';
  big[0] = '{';
  big[39998] = '}';
  write_file(f->path, big, 0600);
  assert_int_equal(identity_load(f->dir, &back, err, sizeof(err)), YM_ETOOBIG);
  free(big);
  /* Well-formed, with the check-in interval bounded. */
  write_file(f->path,
             "{\"url\":\"https://a.example\",\"pin\":\"" PIN "\",\"agent_id\":\"" AGENT_ID
             "\",\"secret\":\"" AGENT_SECRET "\",\"tenant\":\"t\",\"checkin_s\":1}",
             0600);
  assert_int_equal(identity_load(f->dir, &back, err, sizeof(err)), 0);
  assert_int_equal(back.checkin_s, IDENTITY_CHECKIN_MIN);
  assert_string_equal(back.tok, "");
}

/* ------------------------------------------------------------------ */
/* Enrollment                                                           */

static void enroll_body_shape(void **state) {
  (void)state;
  identity_t id = sample();
  ym_buf_t b;
  ym_buf_init(&b, 65536);
  assert_int_equal(identity_enroll_body(&id, &b), 0);
  cJSON *j = NULL;
  assert_int_equal(ym_json_parse(b.data, b.len, 65536, &j, NULL), 0);
  assert_string_equal(ym_json_get_str(j, "token"), TOK_ID "." TOK_SECRET);
  const cJSON *host = cJSON_GetObjectItem(j, "host");
  assert_non_null(ym_json_get_str(host, "name"));
  assert_non_null(ym_json_get_str(host, "id"));
  assert_non_null(ym_json_get_str(host, "architecture"));
  assert_true(cJSON_IsArray(cJSON_GetObjectItem(host, "ip")));
  const cJSON *os = cJSON_GetObjectItem(host, "os");
  assert_non_null(ym_json_get_str(os, "name"));
  assert_non_null(ym_json_get_str(os, "kernel"));
  assert_non_null(ym_json_get_str(os, "platform"));
  assert_non_null(ym_json_get_str(os, "version"));
  assert_non_null(ym_json_get_str(cJSON_GetObjectItem(j, "agent"), "version"));
  cJSON_Delete(j);
  ym_buf_free(&b);
  /* No token kept: nothing to enroll with. */
  id.tok[0] = '\0';
  ym_buf_init(&b, 65536);
  assert_int_equal(identity_enroll_body(&id, &b), YM_EINVAL);
  ym_buf_free(&b);
}

static void enroll_replies(void **state) {
  (void)state;
  identity_t id;
  char err[512];
  const char *ok = "{\"agent_id\":\"" AGENT_ID "\",\"secret\":\"" AGENT_SECRET
                   "\",\"tenant\":\"acme\",\"checkin_s\":7200}";
  memset(&id, 0, sizeof(id));
  assert_int_equal(identity_enroll_reply(&id, 200, ok, strlen(ok), err, sizeof(err)), 0);
  assert_string_equal(id.agent_id, AGENT_ID);
  assert_string_equal(id.secret, AGENT_SECRET);
  assert_string_equal(id.tenant, "acme");
  assert_int_equal(id.checkin_s, IDENTITY_CHECKIN_MAX);

  static const struct {
    long status;
    const char *body;
    int rc;
    const char *msg;
  } cases[] = {
      {200, "{\"agent_id\":\"" AGENT_ID "\",\"tenant\":\"acme\"}", YM_EPARSE, "malformed"},
      {200, "{\"agent_id\":\"" AGENT_ID "\",\"secret\":\"short\",\"tenant\":\"acme\"}", YM_EPARSE,
       "malformed"},
      {200, "not json", YM_EPARSE, "malformed"},
      {401, "{\"error\":\"token_invalid\"}", YM_EPERM, "token_invalid"},
      {401, "{\"error\":\"token_expired\"}", YM_EPERM, "expired"},
      {401, "{\"error\":\"token_revoked\"}", YM_EPERM, "revoked"},
      {401, "{\"error\":\"token_exhausted\"}", YM_EPERM, "token_exhausted"},
      {401, "", YM_EPERM, "HTTP 401"},
      {400, "{\"error\":\"bad_request\",\"message\":\"host.id\\u001b[2J missing\"}", YM_EIO,
       "host.id?[2J missing"},
      {429, "{\"error\":\"rate_limited\"}", YM_EAGAIN, "busy"},
      {503, "", YM_EAGAIN, "busy"},
      {302, "", YM_EIO, "redirect"},
      {500, "", YM_EIO, "HTTP 500"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    identity_t before = sample(), t = sample();
    err[0] = '\0';
    int rc = identity_enroll_reply(&t, cases[i].status, cases[i].body, strlen(cases[i].body), err,
                                   sizeof(err));
    if (rc != cases[i].rc || strstr(err, cases[i].msg) == NULL)
      fail_msg("case %zu: rc %s, message \"%s\"", i, ym_err_name(rc), err);
    /* Unchanged. */
    assert_true(identity_same(&t, &before));
    assert_string_equal(t.tenant, before.tenant);
    assert_int_equal(t.checkin_s, before.checkin_s);
    assert_null(strstr(err, AGENT_SECRET));
  }
}

static void curl_errors(void **state) {
  (void)state;
  char err[512];
  assert_int_equal(
      identity_curl_error(CURLE_SSL_PINNEDPUBKEYNOTMATCH, "https://a.example", err, sizeof(err)),
      YM_ECRYPTO);
  assert_string_equal(
      err, "the console's certificate does not match the pin in the token (TLS interception?)");
  assert_int_equal(
      identity_curl_error(CURLE_COULDNT_CONNECT, "https://a.example", err, sizeof(err)), YM_EIO);
  assert_non_null(strstr(err, "connection refused"));
  assert_int_equal(
      identity_curl_error(CURLE_COULDNT_RESOLVE_HOST, "https://a.example", err, sizeof(err)),
      YM_ENOENT);
  assert_non_null(strstr(err, "DNS"));
  assert_int_equal(
      identity_curl_error(CURLE_OPERATION_TIMEDOUT, "https://a.example", err, sizeof(err)),
      YM_ETIMEDOUT);
  assert_non_null(strstr(err, "timeout"));
  assert_int_equal(identity_curl_error(CURLE_WRITE_ERROR, "https://a.example", err, sizeof(err)),
                   YM_ETOOBIG);
  assert_non_null(strstr(err, "64 KiB"));
}

static void auth_header(void **state) {
  (void)state;
  identity_t id = sample();
  ym_buf_t b;
  ym_buf_init(&b, 256);
  assert_int_equal(identity_auth_header(&id, &b), 0);
  assert_string_equal(b.data, "Authorization: Bearer " AGENT_ID "." AGENT_SECRET);
  ym_buf_free(&b);
  id.secret[0] = '\0';
  ym_buf_init(&b, 256);
  assert_int_equal(identity_auth_header(&id, &b), YM_EINVAL);
  ym_buf_free(&b);
}

/* A port on 127.0.0.1 that nothing listens on. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  socklen_t sl = sizeof(sa);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
  close(fd);
  return ntohs(sa.sin_port);
}

static void enroll_unreachable(void **state) {
  fixture_t *f = *state;
  char url[64];
  snprintf(url, sizeof(url), "https://127.0.0.1:%d", closed_port());
  char *t = token_of(url, PIN, TOK_ID "." TOK_SECRET);
  identity_t id;
  char err[512] = "";
  assert_int_equal(identity_enroll(t, f->dir, &id, err, sizeof(err)), YM_EIO);
  assert_non_null(strstr(err, "cannot connect"));
  assert_non_null(strstr(err, url));
  assert_null(strstr(err, TOK_SECRET));
  assert_null(strstr(err, t + 5));
  assert_int_equal(count_entries(f->dir), 0); /* nothing written */
  free(t);

  t = token_of("https://no-such-host.invalid:8443", PIN, TOK_ID "." TOK_SECRET);
  assert_int_equal(identity_enroll(t, f->dir, &id, err, sizeof(err)), YM_ENOENT);
  assert_non_null(strstr(err, "DNS"));
  assert_null(strstr(err, TOK_SECRET));
  free(t);

  /* A malformed token never reaches the network. */
  assert_int_equal(identity_enroll("ymt1.AAAA", f->dir, &id, err, sizeof(err)), YM_EPARSE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(token_valid),
      cmocka_unit_test(token_malformed_envelope),
      cmocka_unit_test(token_malformed_fields),
      cmocka_unit_test_setup_teardown(file_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(file_creates_state_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(file_refuses_symlink, setup, teardown),
      cmocka_unit_test_setup_teardown(file_refuses_loose_mode, setup, teardown),
      cmocka_unit_test_setup_teardown(file_refuses_bad_content, setup, teardown),
      cmocka_unit_test(enroll_body_shape),
      cmocka_unit_test(enroll_replies),
      cmocka_unit_test(curl_errors),
      cmocka_unit_test(auth_header),
      cmocka_unit_test_setup_teardown(enroll_unreachable, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
