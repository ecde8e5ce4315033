/*
 * Signing, envelopes, manifests and the unpacker (common/), and the update
 * state file (agent/src/upstate.c): every refusal reason is produced by the
 * input that should produce it, and nothing lands outside the target.
 */
#include "upstate.h"

#include "yamori/err.h"
#include "yamori/manifest.h"
#include "yamori/sha256.h"
#include "yamori/sign.h"
#include "yamori/unpack.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

/* ---- helpers: a ustar archive, gzip'd ---- */

static void tar_entry(ym_buf_t *t, const char *name, char type, const void *data, size_t n) {
  char h[512];
  memset(h, 0, sizeof(h));
  memcpy(h, name, strlen(name) < 100 ? strlen(name) : 99);
  snprintf(h + 100, 8, "%07o", 0755);
  snprintf(h + 108, 8, "%07o", 0);
  snprintf(h + 116, 8, "%07o", 0);
  snprintf(h + 124, 12, "%011o", (unsigned)n);
  snprintf(h + 136, 12, "%011o", 0);
  memset(h + 148, ' ', 8);
  h[156] = type;
  memcpy(h + 257,
         "ustar\0"
         "00",
         8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++)
    sum += (unsigned char)h[i];
  snprintf(h + 148, 8, "%06o", sum);
  h[155] = ' ';
  assert_int_equal(ym_buf_append(t, h, 512), 0);
  if (n > 0) {
    static const char zero[512];
    assert_int_equal(ym_buf_append(t, data, n), 0);
    if (n % 512)
      assert_int_equal(ym_buf_append(t, zero, 512 - n % 512), 0);
  }
}

static void tar_end(ym_buf_t *t) {
  static const char zero[1024];
  assert_int_equal(ym_buf_append(t, zero, sizeof(zero)), 0);
}

static void gzip_of(const ym_buf_t *in, ym_buf_t *out) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
  uLong bound = deflateBound(&z, in->len);
  assert_int_equal(ym_buf_reserve(out, bound + 1), 0);
  z.next_in = (Bytef *)in->data;
  z.avail_in = (uInt)in->len;
  z.next_out = (Bytef *)out->data;
  z.avail_out = (uInt)bound;
  assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
  out->len = z.total_out;
  deflateEnd(&z);
}

/* Unpacks a one-entry (plus bin/yamorid) archive into a fresh directory
 * and returns the reason (NULL: success). */
static const char *unpack_one(const char *name, char type, const char *data, size_t n, char *dir,
                              int *dfd) {
  ym_buf_t t, gz;
  ym_buf_init(&t, 1 << 28);
  ym_buf_init(&gz, 1 << 28);
  tar_entry(&t, "bin/yamorid", '0', "#!/bin/sh\n", 10);
  tar_entry(&t, name, type, data, n);
  tar_end(&t);
  gzip_of(&t, &gz);
  snprintf(dir, 64, "/tmp/yamori-unpack-XXXXXX");
  assert_non_null(mkdtemp(dir));
  *dfd = open(dir, O_RDONLY | O_DIRECTORY);
  ym_unpack_limits_t lim;
  ym_unpack_result_t res;
  ym_unpack_default_limits(&lim);
  ym_unpack_mem(gz.data, gz.len, *dfd, &lim, &res);
  ym_buf_free(&t);
  ym_buf_free(&gz);
  return res.reason;
}

static void cleanup(const char *dir, int dfd) {
  close(dfd);
  int parent = open("/tmp", O_RDONLY | O_DIRECTORY);
  assert_int_equal(ym_unpack_remove_tree(parent, dir + 5), 0);
  close(parent);
  struct stat st;
  assert_int_not_equal(stat(dir, &st), 0);
}

static void unpack_good_and_hostile(void **state) {
  (void)state;
  char dir[64];
  int dfd;
  struct stat st;
  assert_null(unpack_one("rules/a.yar", '0', "rule a { condition: true }\n", 27, dir, &dfd));
  assert_int_equal(fstatat(dfd, "rules/a.yar", &st, AT_SYMLINK_NOFOLLOW), 0);
  assert_int_equal(st.st_size, 27);
  assert_int_equal(fstatat(dfd, "bin/yamorid", &st, AT_SYMLINK_NOFOLLOW), 0);
  assert_int_equal(st.st_mode & 0777, 0755);
  cleanup(dir, dfd);

  static const struct {
    const char *name;
    char type;
    const char *why;
  } bad[] = {
      {"../escape", '0', "dotdot_path"},
      {"a/../../escape", '0', "dotdot_path"},
      {"/tmp/abs-escape", '0', "absolute_path"},
      {"link", '2', "link_entry"},
      {"hard", '1', "link_entry"},
      {"dev", '3', "device_entry"},
      {"blk", '4', "device_entry"},
      {"fifo", '6', "device_entry"},
      {"pax", 'x', "unsupported_entry"},
      {"bin/yamorid", '0', "duplicate_entry"},
      {"bin/yamorid/x", '0', "duplicate_entry"},
      {"a\nb", '0', "bad_name"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *why = unpack_one(bad[i].name, bad[i].type, "x", 1, dir, &dfd);
    assert_non_null(why);
    if (strcmp(why, bad[i].why) != 0)
      fail_msg("%s: got %s, want %s", bad[i].name, why, bad[i].why);
    cleanup(dir, dfd);
  }
  assert_int_not_equal(stat("/tmp/escape", &st), 0);
  assert_int_not_equal(stat("/tmp/abs-escape", &st), 0);
}

/* A rules bundle's behaviour rules sit in sigma/ (console/src/release.c
 * packs sigma/NAME.json without a directory entry): they land in the
 * bundle directory as sigma/NAME.json, and a name that climbs out of
 * sigma/ or hides a link is refused as any other. */
static void unpack_rules_bundle_sigma(void **state) {
  (void)state;
  char dir[64];
  int dfd;
  struct stat st;
  static const char compiled[] = "{\"format\":\"yamori-sigma\",\"version\":1,\"rules\":[]}";
  assert_null(unpack_one("sigma/linux.json", '0', compiled, sizeof(compiled) - 1, dir, &dfd));
  assert_int_equal(fstatat(dfd, "sigma", &st, AT_SYMLINK_NOFOLLOW), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(fstatat(dfd, "sigma/linux.json", &st, AT_SYMLINK_NOFOLLOW), 0);
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_size, sizeof(compiled) - 1);
  cleanup(dir, dfd);
  assert_string_equal(unpack_one("sigma/../../x.json", '0', "{}", 2, dir, &dfd), "dotdot_path");
  cleanup(dir, dfd);
  assert_string_equal(unpack_one("sigma/l.json", '2', "", 0, dir, &dfd), "link_entry");
  cleanup(dir, dfd);
}

static void unpack_bomb_truncation_garbage(void **state) {
  (void)state;
  size_t n = 40 * 1024 * 1024;
  char *zeros = calloc(1, n);
  char dir[64];
  int dfd;
  assert_string_equal(unpack_one("zeros", '0', zeros, n, dir, &dfd), "decompression_bomb");
  cleanup(dir, dfd);
  free(zeros);

  /* A bomb behind 2 MiB of incompressible bytes: over the whole stream
   * the ratio stays low, within its file it does not. */
  {
    size_t nr = 2 * 1024 * 1024, nz = 64 * 1024 * 1024;
    char *rnd = malloc(nr), *z = calloc(1, nz);
    uint32_t x = 12345;
    for (size_t i = 0; i < nr; i++) {
      x = x * 1103515245u + 12345u;
      rnd[i] = (char)(x >> 24);
    }
    ym_buf_t bt, bg;
    ym_buf_init(&bt, 1 << 28);
    ym_buf_init(&bg, 1 << 28);
    tar_entry(&bt, "random", '0', rnd, nr);
    tar_entry(&bt, "zeros", '0', z, nz);
    tar_end(&bt);
    gzip_of(&bt, &bg);
    ym_unpack_limits_t l;
    ym_unpack_result_t r;
    ym_unpack_default_limits(&l);
    assert_int_not_equal(ym_unpack_mem(bg.data, bg.len, -1, &l, &r), 0);
    assert_string_equal(r.reason, "decompression_bomb");
    ym_buf_free(&bt);
    ym_buf_free(&bg);
    free(rnd);
    free(z);
  }

  ym_buf_t t, gz;
  ym_buf_init(&t, 1 << 20);
  ym_buf_init(&gz, 1 << 20);
  tar_entry(&t, "bin/yamorid", '0', "#!/bin/sh\n", 10);
  tar_end(&t);
  gzip_of(&t, &gz);
  ym_unpack_limits_t lim;
  ym_unpack_result_t res;
  ym_unpack_default_limits(&lim);
  assert_int_equal(ym_unpack_mem(gz.data, gz.len, -1, &lim, &res), 0);
  assert_int_equal(res.files, 1);
  assert_int_not_equal(ym_unpack_mem(gz.data, gz.len - 5, -1, &lim, &res), 0);
  assert_string_equal(res.reason, "truncated_archive");
  assert_int_equal(ym_buf_append(&gz, "junk", 4), 0);
  assert_int_not_equal(ym_unpack_mem(gz.data, gz.len, -1, &lim, &res), 0);
  assert_string_equal(res.reason, "bad_archive");
  assert_int_not_equal(ym_unpack_mem("not gzip at all", 15, -1, &lim, &res), 0);
  assert_string_equal(res.reason, "bad_archive");
  lim.max_entries = 1;
  ym_buf_reset(&t);
  ym_buf_reset(&gz);
  tar_entry(&t, "a", '0', "x", 1);
  tar_entry(&t, "b", '0', "x", 1);
  tar_end(&t);
  gzip_of(&t, &gz);
  assert_int_not_equal(ym_unpack_mem(gz.data, gz.len, -1, &lim, &res), 0);
  assert_string_equal(res.reason, "too_many_entries");
  ym_buf_free(&t);
  ym_buf_free(&gz);
}

/* ---- signatures and manifests ---- */

static void sign_verify(void **state) {
  (void)state;
  uint8_t priv[32], pub[32], sig[64];
  assert_int_equal(ym_sign_keygen(priv, pub), 0);
  assert_int_equal(ym_sign_sign(priv, "hello", 5, sig), 0);
  assert_int_equal(ym_sign_verify(pub, "hello", 5, sig), 0);
  assert_int_equal(ym_sign_verify(pub, "hellp", 5, sig), YM_ECRYPTO);
  sig[0] ^= 1;
  assert_int_equal(ym_sign_verify(pub, "hello", 5, sig), YM_ECRYPTO);
  uint8_t out[8];
  assert_int_equal(ym_sign_unb64("aGk=", 4, out, sizeof(out)), 2);
  assert_int_equal(ym_sign_unb64("aGk", 3, out, sizeof(out)), YM_EPARSE);
  assert_int_equal(ym_sign_unb64("a=Gk", 4, out, sizeof(out)), YM_EPARSE);
}

static void key_files(void **state) {
  (void)state;
  char dir[] = "/tmp/yamori-keys-XXXXXX", kp[128], pp[128];
  assert_non_null(mkdtemp(dir));
  snprintf(kp, sizeof(kp), "%s/release.key", dir);
  snprintf(pp, sizeof(pp), "%s/release.pub", dir);
  uint8_t priv[32], pub[32], back[32];
  assert_int_equal(ym_sign_keygen(priv, pub), 0);
  assert_int_equal(ym_sign_write_private(kp, priv), 0);
  assert_int_equal(ym_sign_write_public(pp, pub), 0);
  assert_int_equal(ym_sign_write_private(kp, priv), YM_EEXIST);
  assert_int_equal(ym_sign_read_private(kp, back), 0);
  assert_memory_equal(back, priv, 32);
  ym_sign_pub_t keys[4];
  assert_int_equal(ym_sign_load_keys(dir, keys, 4), 1);
  assert_memory_equal(keys[0].raw, pub, 32);
  chmod(kp, 0644);
  assert_int_equal(ym_sign_read_private(kp, back), YM_EPERM); /* readable by others */
  chmod(dir, 0777);
  assert_int_equal(ym_sign_load_keys(dir, keys, 4), YM_EPERM); /* others may plant keys */
  chmod(dir, 0755);
  assert_int_equal(ym_sign_load_keys(dir, keys, 4), 1);
  chmod(pp, 0666);
  assert_int_equal(ym_sign_load_keys(dir, keys, 4), 0); /* writable by others: not trusted */
  unlink(kp);
  unlink(pp);
  rmdir(dir);
}

static const char *manifest_text(char *buf, size_t cap, const char *product, const char *platform,
                                 long long serial, const char *expires) {
  snprintf(buf, cap,
           "{\"product\":\"%s\",\"platform\":\"%s\",\"architecture\":\"x86_64\","
           "\"version\":\"1.2.3\",\"serial\":%lld,\"channel\":\"stable\",\"size\":10,"
           "\"sha256\":\"%064d\",\"url\":\"/api/v1/releases/7/package\",\"expires\":\"%s\"}",
           product, platform, serial, 0, expires);
  return buf;
}

static const char *rules_text(char *buf, size_t cap, const char *scope, const char *tenant_member) {
  snprintf(buf, cap,
           "{\"product\":\"yamori-rules\",\"platform\":\"any\",\"architecture\":\"any\","
           "\"version\":\"r9\",\"serial\":9,\"scope\":\"%s\",%s\"size\":10,"
           "\"sha256\":\"%064d\",\"url\":\"/api/v1/rules/r9\","
           "\"expires\":\"2099-01-01T00:00:00Z\"}",
           scope, tenant_member, 0);
  return buf;
}

/* A rules bundle names its company inside the signed manifest; a receiver
 * that knows its company refuses another company's bundle and one that
 * names none. */
static void rules_tenant_scope(void **state) {
  (void)state;
  char text[1024];
  ym_manifest_t m, again;
  const char *why;
  ym_manifest_expect_t e = {"yamori-rules", "linux", NULL, (int64_t)time(NULL), 100, 0, "acme"};

  rules_text(text, sizeof(text), "tenant", "\"tenant\":\"acme\",");
  assert_int_equal(ym_manifest_parse(text, strlen(text), &m, &why), 0);
  assert_string_equal(m.tenant, "acme");
  assert_int_equal(ym_manifest_check(&m, &e, &why), 0);
  /* Written and read back: the company stays in the signed text. */
  ym_buf_t b;
  ym_buf_init(&b, 1 << 16);
  assert_int_equal(ym_manifest_write(&m, &b), 0);
  assert_non_null(strstr(b.data, "\"tenant\":\t\"acme\""));
  assert_int_equal(ym_manifest_parse(b.data, b.len, &again, &why), 0);
  assert_string_equal(again.tenant, "acme");
  ym_buf_free(&b);

  /* Another company's bundle. */
  e.tenant = "beta";
  assert_int_equal(ym_manifest_check(&m, &e, &why), YM_EPERM);
  assert_string_equal(why, "wrong_tenant");
  e.tenant = "";
  assert_int_equal(ym_manifest_check(&m, &e, &why), YM_EPERM);
  assert_string_equal(why, "wrong_tenant");

  /* For every company. */
  rules_text(text, sizeof(text), "default", "\"tenant\":\"*\",");
  assert_int_equal(ym_manifest_parse(text, strlen(text), &m, &why), 0);
  assert_string_equal(m.tenant, YM_MANIFEST_TENANT_ALL);
  e.tenant = "beta";
  assert_int_equal(ym_manifest_check(&m, &e, &why), 0);

  /* An older manifest without a company is refused by rules receivers and
   * stays acceptable where no company is expected (releases). */
  rules_text(text, sizeof(text), "default", "");
  assert_int_equal(ym_manifest_parse(text, strlen(text), &m, &why), 0);
  assert_string_equal(m.tenant, "");
  assert_int_equal(ym_manifest_check(&m, &e, &why), YM_EPERM);
  assert_string_equal(why, "no_tenant");
  e.tenant = NULL;
  assert_int_equal(ym_manifest_check(&m, &e, &why), 0);

  /* Malformed companies. */
  static const char *const bad[] = {"\"tenant\":\"\",",        "\"tenant\":\"Acme\",",
                                    "\"tenant\":\"../acme\",", "\"tenant\":\"-acme\",",
                                    "\"tenant\":\"ac me\",",   "\"tenant\":\"**\",",
                                    "\"tenant\":7,",           "\"tenant\":[\"acme\"],"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    rules_text(text, sizeof(text), "tenant", bad[i]);
    assert_int_equal(ym_manifest_parse(text, strlen(text), &m, &why), YM_EPARSE);
    assert_string_equal(why, "bad_manifest");
  }
  char longname[128];
  memset(longname, 'a', 64);
  longname[64] = '\0';
  char member[160];
  snprintf(member, sizeof(member), "\"tenant\":\"%s\",", longname);
  rules_text(text, sizeof(text), "tenant", member);
  assert_int_equal(ym_manifest_parse(text, strlen(text), &m, &why), YM_EPARSE);
  longname[63] = '\0';
  snprintf(member, sizeof(member), "\"tenant\":\"%s\",", longname);
  rules_text(text, sizeof(text), "tenant", member);
  assert_int_equal(ym_manifest_parse(text, strlen(text), &m, &why), 0);
}

static void envelope_and_checks(void **state) {
  (void)state;
  uint8_t priv[32], pub[32], priv2[32], pub2[32];
  assert_int_equal(ym_sign_keygen(priv, pub), 0);
  assert_int_equal(ym_sign_keygen(priv2, pub2), 0);
  ym_sign_pub_t key;
  memcpy(key.raw, pub, 32);
  ym_sign_key_id(pub, key.id);
  char text[1024];
  manifest_text(text, sizeof(text), "yamori-agent", "linux", 7, "2099-01-01T00:00:00Z");
  ym_buf_t env;
  ym_buf_init(&env, YM_SIGN_ENVELOPE_MAX);
  assert_int_equal(ym_sign_envelope(priv, text, strlen(text), &env), 0);
  ym_manifest_t m;
  const char *why;
  assert_int_equal(ym_manifest_open(env.data, env.len, &key, 1, &m, &why), 0);
  assert_string_equal(m.version, "1.2.3");
  assert_int_equal(m.serial, 7);
  assert_string_equal(m.key_id, key.id);
  ym_manifest_expect_t e = {"yamori-agent", "linux", "x86_64", (int64_t)time(NULL), 100, 6, NULL};
  assert_int_equal(ym_manifest_check(&m, &e, &why), 0);
  e.accepted = 7;
  assert_int_equal(ym_manifest_check(&m, &e, &why), YM_EPERM);
  assert_string_equal(why, "serial_replayed");
  e.accepted = 8;
  ym_manifest_check(&m, &e, &why);
  assert_string_equal(why, "serial_lower");
  e.accepted = 1;
  e.platform = "windows";
  ym_manifest_check(&m, &e, &why);
  assert_string_equal(why, "wrong_platform");
  e.platform = "linux";
  e.arch = "aarch64";
  ym_manifest_check(&m, &e, &why);
  assert_string_equal(why, "wrong_architecture");
  e.arch = "x86_64";
  e.max_size = 5;
  ym_manifest_check(&m, &e, &why);
  assert_string_equal(why, "too_large");
  e.max_size = 100;
  e.now = m.expires;
  ym_manifest_check(&m, &e, &why);
  assert_string_equal(why, "expired");
  e.product = "yamori-rules";
  ym_manifest_check(&m, &e, &why);
  assert_string_equal(why, "wrong_product");

  /* Another key, a tampered signature, a tampered manifest. */
  ym_buf_t env2;
  ym_buf_init(&env2, YM_SIGN_ENVELOPE_MAX);
  assert_int_equal(ym_sign_envelope(priv2, text, strlen(text), &env2), 0);
  assert_int_equal(ym_manifest_open(env2.data, env2.len, &key, 1, &m, &why), YM_ENOENT);
  assert_string_equal(why, "unknown_key");
  char *s = strstr(env.data, "\"sig\":\"") + 7;
  s[3] = s[3] == 'A' ? 'B' : 'A';
  assert_int_equal(ym_manifest_open(env.data, env.len, &key, 1, &m, &why), YM_ECRYPTO);
  assert_string_equal(why, "bad_signature");
  s[3] = s[3] == 'A' ? 'B' : 'A';
  char *mm = strstr(env.data, "\"manifest\":\"") + 12;
  mm[20] = mm[20] == 'A' ? 'B' : 'A';
  assert_int_equal(ym_manifest_open(env.data, env.len, &key, 1, &m, &why), YM_ECRYPTO);
  assert_string_equal(why, "bad_signature");
  assert_int_equal(ym_manifest_open("{}", 2, &key, 1, &m, &why), YM_EPARSE);
  assert_string_equal(why, "bad_envelope");
  ym_buf_free(&env);
  ym_buf_free(&env2);

  /* Malformed manifests. */
  static const char *const bad[] = {
      "{\"product\":\"x\"}",
      "{\"product\":\"yamori-agent\",\"platform\":\"linux\",\"architecture\":\"x86_64\","
      "\"version\":\"../x\",\"serial\":1,\"size\":1,\"sha256\":\"00\",\"url\":\"/api/v1/x\","
      "\"expires\":\"2099-01-01T00:00:00Z\"}",
  };
  for (size_t i = 0; i < 2; i++)
    assert_int_equal(ym_manifest_parse(bad[i], strlen(bad[i]), &m, &why), YM_EPARSE);
  manifest_text(text, sizeof(text), "yamori-agent", "linux", -3, "2099-01-01T00:00:00Z");
  assert_int_equal(ym_manifest_parse(text, strlen(text), &m, &why), YM_EPARSE);
  manifest_text(text, sizeof(text), "yamori-agent", "linux", 3, "tomorrow");
  assert_int_equal(ym_manifest_parse(text, strlen(text), &m, &why), YM_EPARSE);
  snprintf(text, sizeof(text),
           "{\"product\":\"a\",\"platform\":\"linux\",\"architecture\":\"x\",\"version\":"
           "\"1\",\"serial\":1,\"size\":1,\"sha256\":\"%064d\",\"url\":\"https://evil/\","
           "\"expires\":\"2099-01-01T00:00:00Z\"}",
           0);
  assert_int_equal(ym_manifest_parse(text, strlen(text), &m, &why), YM_EPARSE);
  assert_false(ym_manifest_version_ok(".hidden"));
  assert_false(ym_manifest_version_ok("a/b"));
  assert_true(ym_manifest_version_ok("1.2.3-rc1+build.5"));
}

static void state_file(void **state) {
  (void)state;
  char dir[] = "/tmp/yamori-upstate-XXXXXX";
  assert_non_null(mkdtemp(dir));
  upstate_t st, back;
  assert_int_equal(upstate_load(dir, &st), YM_ENOENT);
  memset(&st, 0, sizeof(st));
  snprintf(st.active, sizeof(st.active), "0.1.0");
  snprintf(st.pending, sizeof(st.pending), "0.2.0");
  st.pending_serial = 9;
  st.attempts = 2;
  st.trial_started = 1764125000;
  snprintf(st.reason, sizeof(st.reason), "exited 3 times at start");
  assert_int_equal(upstate_save(dir, &st), 0);
  assert_int_equal(upstate_load(dir, &back), 0);
  assert_memory_equal(&st, &back, sizeof(st));
  char p[128];
  snprintf(p, sizeof(p), "%s/state.json", dir);
  unlink(p);
  rmdir(dir);
  assert_true(upstate_version_cmp("0.10.0", "0.9.9") > 0);
  assert_true(upstate_version_cmp("1.2", "1.2") == 0);
  assert_true(upstate_version_cmp("1.2", "1.2.1") < 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(sign_verify),
      cmocka_unit_test(key_files),
      cmocka_unit_test(envelope_and_checks),
      cmocka_unit_test(rules_tenant_scope),
      cmocka_unit_test(unpack_good_and_hostile),
      cmocka_unit_test(unpack_rules_bundle_sigma),
      cmocka_unit_test(unpack_bomb_truncation_garbage),
      cmocka_unit_test(state_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
