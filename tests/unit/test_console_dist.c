/*
 * Tests of per-company installers (dist.c) on files in a temporary
 * directory: the configuration block is appended exactly, an earlier block
 * is replaced, and every malformed token, help desk text or file is refused
 * with the output left as it was.
 */
#include "dist.h"
#include "yamori/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[64];
static char tmpl[128];
static size_t tmpl_len, tmpl_body; /* whole file, header + payload */

#define TOKEN "ymt1.eyJ1cmwiOiJodHRwczovLzEyNy4wLjAuMTo4NDQzIn0"

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, n, f), n);
  fclose(f);
}

/* A generic installer like mkinstaller.sh makes: a header stating its own
 * size and the payload's, then a payload of binary bytes. */
static void make_template(const char *path, size_t payload, const char *extra) {
  char head[512];
  int hn = snprintf(head, sizeof(head),
                    "#!/bin/sh\n# Yamori installer (yamori-installer v1).\n#\n"
                    "YM_HEADER_SIZE=%010d\nYM_PAYLOAD_SIZE=%010zu\nexit 0\n",
                    0, payload);
  /* The size field holds the header's own size (fixed width). */
  snprintf(head, sizeof(head),
           "#!/bin/sh\n# Yamori installer (yamori-installer v1).\n#\n"
           "YM_HEADER_SIZE=%010d\nYM_PAYLOAD_SIZE=%010zu\nexit 0\n",
           hn, payload);
  size_t extra_len = extra ? strlen(extra) : 0;
  size_t n = (size_t)hn + payload + extra_len;
  char *buf = malloc(n);
  assert_non_null(buf);
  memcpy(buf, head, (size_t)hn);
  for (size_t i = 0; i < payload; i++)
    buf[(size_t)hn + i] = (char)(i * 131 + 7); /* any bytes, NUL and newline too */
  if (extra_len)
    memcpy(buf + hn + payload, extra, extra_len);
  write_file(path, buf, n);
  free(buf);
  if (path == tmpl) {
    tmpl_len = n;
    tmpl_body = (size_t)hn + payload;
  }
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/yamori-dist-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(tmpl, sizeof(tmpl), "%s/generic.run", dir);
  make_template(tmpl, 5000, NULL);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[200];
  snprintf(cmd, sizeof(cmd), "%s/generic.run", dir);
  unlink(cmd);
  snprintf(cmd, sizeof(cmd), "%s/other", dir);
  unlink(cmd);
  snprintf(cmd, sizeof(cmd), "%s/link", dir);
  unlink(cmd);
  snprintf(cmd, sizeof(cmd), "%s/personal.run", dir);
  unlink(cmd);
  rmdir(dir);
  return 0;
}

static void test_appends_block(void **state) {
  (void)state;
  ym_buf_t out;
  ym_buf_init(&out, 1 << 20);
  assert_int_equal(dist_installer(tmpl, TOKEN, &out), 0);
  const char *block = "\n#yamori-config-v1\nYAMORI_TOKEN=" TOKEN "\n#yamori-config-end\n";
  assert_int_equal(out.len, tmpl_body + strlen(block));
  assert_memory_equal(out.data + tmpl_body, block, strlen(block));
  /* The generic bytes are unchanged. */
  FILE *f = fopen(tmpl, "rb");
  char *orig = malloc(tmpl_len);
  assert_int_equal(fread(orig, 1, tmpl_len, f), tmpl_len);
  fclose(f);
  assert_memory_equal(out.data, orig, tmpl_body);
  free(orig);
  ym_buf_free(&out);
}

static void test_replaces_block_and_helpdesk(void **state) {
  (void)state;
  ym_buf_t out, again;
  ym_buf_init(&out, 1 << 20);
  ym_buf_init(&again, 1 << 20);
  assert_int_equal(dist_installer_ex(tmpl, TOKEN, "\xe7\xaa\x93\xe5\x8f\xa3 03-1234-5678", &out),
                   0);
  assert_non_null(strstr(out.data + tmpl_body, "YAMORI_HELPDESK=\xe7\xaa\x93"));
  char personal[128];
  snprintf(personal, sizeof(personal), "%s/personal.run", dir);
  write_file(personal, out.data, out.len);
  /* A company's file used as the template: its block is replaced. */
  assert_int_equal(dist_installer(personal, "ymt1.AAAA", &again), 0);
  const char *block = "\n#yamori-config-v1\nYAMORI_TOKEN=ymt1.AAAA\n#yamori-config-end\n";
  assert_int_equal(again.len, tmpl_body + strlen(block));
  assert_memory_equal(again.data + tmpl_body, block, strlen(block));
  ym_buf_free(&out);
  ym_buf_free(&again);
}

static void test_bad_tokens(void **state) {
  (void)state;
  static const char *const bad[] = {"",          "ymt1.",    "ymt2.abcd",
                                    "ymt1.ab$c", "ymt1.ab=", "ymt1.ab\nYAMORI_HELPDESK=x",
                                    "YMT1.abcd", "ymt1.a b"};
  ym_buf_t out;
  ym_buf_init(&out, 1 << 20);
  ym_buf_append_str(&out, "kept");
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(dist_installer(tmpl, bad[i], &out), YM_EINVAL);
    assert_int_equal(out.len, 4);
  }
  assert_int_equal(dist_installer(tmpl, NULL, &out), YM_EINVAL);
  char *lng = malloc(DIST_TOKEN_MAX + 2);
  memcpy(lng, "ymt1.", 5);
  memset(lng + 5, 'A', DIST_TOKEN_MAX - 4);
  lng[DIST_TOKEN_MAX + 1] = '\0';
  assert_int_equal(dist_installer(tmpl, lng, &out), YM_EINVAL);
  lng[DIST_TOKEN_MAX] = '\0'; /* exactly the maximum */
  assert_int_equal(dist_installer(tmpl, lng, &out), 0);
  free(lng);
  ym_buf_free(&out);
}

static void test_bad_helpdesk(void **state) {
  (void)state;
  static const char *const bad[] = {"two\nlines", "tab\there", "bell\a", "\xff\xfe bad utf-8",
                                    "del\x7f"};
  ym_buf_t out;
  ym_buf_init(&out, 1 << 20);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(dist_installer_ex(tmpl, TOKEN, bad[i], &out), YM_EINVAL);
    assert_int_equal(out.len, 0);
  }
  char lng[DIST_HELPDESK_MAX + 2];
  memset(lng, 'x', sizeof(lng) - 1);
  lng[sizeof(lng) - 1] = '\0';
  assert_int_equal(dist_installer_ex(tmpl, TOKEN, lng, &out), YM_EINVAL);
  assert_int_equal(dist_installer_ex(tmpl, TOKEN, "", &out), 0); /* none */
  assert_null(strstr(out.data + tmpl_body, "HELPDESK"));
  ym_buf_free(&out);
}

static void test_bad_files(void **state) {
  (void)state;
  char other[128], link[128];
  snprintf(other, sizeof(other), "%s/other", dir);
  snprintf(link, sizeof(link), "%s/link", dir);
  ym_buf_t out;
  ym_buf_init(&out, 1 << 20);
  /* Not an installer at all. */
  write_file(other, "#!/bin/sh\necho hello\n", 21);
  assert_int_equal(dist_installer(other, TOKEN, &out), YM_EPARSE);
  /* Trailing bytes that are not a configuration block. */
  make_template(other, 100, "garbage after the payload");
  assert_int_equal(dist_installer(other, TOKEN, &out), YM_EPARSE);
  /* A payload size larger than the file (cut download). */
  make_template(other, 100, NULL);
  assert_int_equal(truncate(other, 150), 0);
  assert_int_equal(dist_installer(other, TOKEN, &out), YM_EPARSE);
  /* Missing, a directory, a symbolic link. */
  assert_int_equal(dist_installer("/nonexistent/yamori.run", TOKEN, &out), YM_ENOENT);
  assert_int_equal(dist_installer(dir, TOKEN, &out), YM_EPARSE);
  assert_int_equal(symlink(tmpl, link), 0);
  assert_int_equal(dist_installer(link, TOKEN, &out), YM_EPERM);
  assert_int_equal(out.len, 0);
  ym_buf_free(&out);
}

static void test_output_cap(void **state) {
  (void)state;
  ym_buf_t out;
  ym_buf_init(&out, tmpl_body + 10); /* room for the file, not the block */
  assert_int_equal(dist_installer(tmpl, TOKEN, &out), YM_ETOOBIG);
  assert_int_equal(out.len, 0);
  ym_buf_free(&out);
}

static void test_helpdesk_line(void **state) {
  (void)state;
  char out[DIST_HELPDESK_MAX + 1];
  dist_helpdesk_line("Yamori desk\r\n03-1234-5678\n\nmail: a@b.jp\t", out, sizeof(out));
  assert_string_equal(out, "Yamori desk / 03-1234-5678 / mail: a@b.jp");
  dist_helpdesk_line("\xe7\xaa\x93\xe5\x8f\xa3 \xff ok", out, sizeof(out));
  assert_string_equal(out, "\xe7\xaa\x93\xe5\x8f\xa3 ? ok");
  dist_helpdesk_line(NULL, out, sizeof(out));
  assert_string_equal(out, "");
  /* Cut at a character boundary: 5 bytes of room, 3-byte characters. */
  char small[6];
  dist_helpdesk_line("\xe7\xaa\x93\xe5\x8f\xa3", small, sizeof(small));
  assert_string_equal(small, "\xe7\xaa\x93");
  /* Whatever comes in, what comes out is accepted as help desk text. */
  char lng[2000];
  for (size_t i = 0; i < sizeof(lng) - 1; i++)
    lng[i] = (char)(i % 7 == 0 ? '\n' : 'a' + (char)(i % 26));
  lng[sizeof(lng) - 1] = '\0';
  dist_helpdesk_line(lng, out, sizeof(out));
  ym_buf_t b;
  ym_buf_init(&b, 1 << 20);
  assert_int_equal(dist_installer_ex(tmpl, TOKEN, out, &b), 0);
  ym_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_appends_block), cmocka_unit_test(test_replaces_block_and_helpdesk),
      cmocka_unit_test(test_bad_tokens),    cmocka_unit_test(test_bad_helpdesk),
      cmocka_unit_test(test_bad_files),     cmocka_unit_test(test_output_cap),
      cmocka_unit_test(test_helpdesk_line),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
