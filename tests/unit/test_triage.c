/*
 * Tests of the triage bundle's parts that do not need root: the parser of
 * /proc/net lines (addresses in the kernel's host-order hex words), and a
 * whole bundle of this machine collected under a temporary persistence
 * root, decompressed and checked.
 */
#include "triage.h"

#include "yamori/err.h"

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

static void test_net_lines(void **state) {
  (void)state;
  char addr[64];
  unsigned port, st;
  uint64_t inode;
  int rzero;
  assert_int_equal(
      triage_parse_net_line("  sl  local_address rem_address   st tx_queue rx_queue tr "
                            "tm->when retrnsmt   uid  timeout inode",
                            0, addr, &port, &st, &inode, &rzero),
      YM_EPARSE);
  /* 127.0.0.1:8080 listening, as a little-endian kernel prints it. */
  uint32_t w = 0;
  unsigned char lo[4] = {127, 0, 0, 1};
  memcpy(&w, lo, 4);
  char line[256];
  snprintf(line, sizeof(line),
           "   0: %08X:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
           "4242 1 0000000000000000 100 0 0 10 0",
           w);
  assert_int_equal(triage_parse_net_line(line, 0, addr, &port, &st, &inode, &rzero), 0);
  assert_string_equal(addr, "127.0.0.1");
  assert_int_equal(port, 8080);
  assert_int_equal(st, 0x0A);
  assert_int_equal(inode, 4242);
  assert_int_equal(rzero, 1);
  /* ::1 port 53, UDP, connected to a peer. */
  uint32_t w6[4] = {0, 0, 0, 0};
  unsigned char one[4] = {0, 0, 0, 1};
  memcpy(&w6[3], one, 4);
  snprintf(line, sizeof(line),
           "  12: %08X%08X%08X%08X:0035 00000000000000000000000001000000:A0B1 07 00000000:00000000 "
           "00:00000000 00000000   102        0 99 2 0000000000000000 0",
           w6[0], w6[1], w6[2], w6[3]);
  assert_int_equal(triage_parse_net_line(line, 1, addr, &port, &st, &inode, &rzero), 0);
  assert_string_equal(addr, "::1");
  assert_int_equal(port, 53);
  assert_int_equal(st, 7);
  assert_int_equal(inode, 99);
  assert_int_equal(rzero, 0);
  /* Truncated and malformed lines. */
  assert_int_equal(
      triage_parse_net_line("   0: 0100007F:1F90", 0, addr, &port, &st, &inode, &rzero), YM_EPARSE);
  assert_int_equal(triage_parse_net_line("   0: ZZ00007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1", 0,
                                         addr, &port, &st, &inode, &rzero),
                   YM_EPARSE);
  assert_int_equal(triage_parse_net_line("", 0, addr, &port, &st, &inode, &rzero), YM_EPARSE);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_collect(void **state) {
  (void)state;
  char root[64] = "/tmp/ym-triage-XXXXXX", p[256];
  assert_non_null(mkdtemp(root));
  snprintf(p, sizeof(p), "%s/etc", root);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof(p), "%s/etc/cron.d", root);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof(p), "%s/etc/cron.d/job", root);
  write_file(p, "* * * * * root true\n");
  snprintf(p, sizeof(p), "%s/etc/rc.local", root);
  assert_int_equal(symlink("/etc/shadow", p), 0);
  char *starts[] = {"{\"event\":{\"action\":\"exec\"},\"process\":{\"pid\":1}}"};
  triage_opts_t o = {root, "boot", 100, 0, "agent", 5, starts, 1, NULL, 0};
  ym_buf_t gz;
  ym_buf_init(&gz, 8 * 1024 * 1024);
  triage_stats_t st;
  assert_int_equal(triage_collect(&o, &gz, &st), 0);
  assert_true(st.processes > 0);
  assert_int_equal(st.recent_starts, 1);
  assert_int_equal(st.persistence, 2);
  /* Decompress and read it back. */
  size_t cap = st.json_bytes + 1;
  char *json = malloc(cap);
  z_stream z;
  memset(&z, 0, sizeof(z));
  assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
  z.next_in = (Bytef *)gz.data;
  z.avail_in = (uInt)gz.len;
  z.next_out = (Bytef *)json;
  z.avail_out = (uInt)cap;
  assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
  assert_int_equal(z.total_out, st.json_bytes);
  inflateEnd(&z);
  json[st.json_bytes] = '\0';
  cJSON *doc = cJSON_Parse(json);
  assert_non_null(doc);
  /* This test's own process is listed with its parent. */
  int found = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(doc, "processes")) {
    if (cJSON_GetObjectItem(it, "pid")->valueint == getpid()) {
      found = 1;
      assert_int_equal(cJSON_GetObjectItem(it, "ppid")->valueint, getppid());
      assert_int_equal(strlen(cJSON_GetObjectItem(it, "entity_id")->valuestring), 32);
    }
  }
  assert_true(found);
  int cron = 0, link = 0;
  cJSON_ArrayForEach(it, cJSON_GetObjectItem(doc, "persistence")) {
    const char *path = cJSON_GetObjectItem(it, "path")->valuestring;
    if (strcmp(path, "/etc/cron.d/job") == 0) {
      cron = 1;
      assert_string_equal(cJSON_GetObjectItem(it, "content")->valuestring, "* * * * * root true\n");
    }
    if (strcmp(path, "/etc/rc.local") == 0) {
      link = 1;
      assert_string_equal(cJSON_GetObjectItem(it, "kind")->valuestring, "symlink");
      assert_null(cJSON_GetObjectItem(it, "content"));
    }
  }
  assert_true(cron && link);
  cJSON_Delete(doc);
  free(json);
  ym_buf_free(&gz);
  /* A bundle larger than the buffer's limit is refused. */
  ym_buf_init(&gz, 64);
  assert_int_equal(triage_collect(&o, &gz, &st), YM_ETOOBIG);
  ym_buf_free(&gz);
  unlink(p);
  snprintf(p, sizeof(p), "%s/etc/cron.d/job", root);
  unlink(p);
  snprintf(p, sizeof(p), "%s/etc/cron.d", root);
  rmdir(p);
  snprintf(p, sizeof(p), "%s/etc", root);
  rmdir(p);
  rmdir(root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_net_lines),
      cmocka_unit_test(test_collect),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
