#include "yamori/err.h"
#include "yamori/event.h"
#include "yamori/json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Compares dotted names component by component. */
static int cmp_components(const char *a, const char *b) {
  for (;;) {
    size_t la = strcspn(a, "."), lb = strcspn(b, ".");
    size_t l = la < lb ? la : lb;
    int c = memcmp(a, b, l);
    if (c != 0)
      return c;
    if (la != lb)
      return la < lb ? -1 : 1;
    if (a[la] == '\0' || b[lb] == '\0')
      return a[la] == b[lb] ? 0 : (a[la] == '\0' ? -1 : 1);
    a += la + 1;
    b += lb + 1;
  }
}

static void schema_is_sorted_and_prefix_free(void **state) {
  (void)state;
  for (int f = 1; f < YM_F_COUNT; f++) {
    const char *a = ym_schema_field((ym_field_t)(f - 1))->name;
    const char *b = ym_schema_field((ym_field_t)f)->name;
    if (cmp_components(a, b) >= 0)
      fail_msg("schema out of order: %s before %s", a, b);
    size_t la = strlen(a);
    if (strncmp(a, b, la) == 0 && b[la] == '.')
      fail_msg("%s is both a value and an object", a);
  }
  for (int f = 0; f < YM_F_COUNT; f++) {
    const ym_field_info_t *fi = ym_schema_field((ym_field_t)f);
    assert_true(fi->doc[0] != '\0');
    assert_true(fi->kind >= YM_K_STR && fi->kind <= YM_K_RAW);
  }
}

static void writes_nested_objects(void **state) {
  (void)state;
  ym_event_t base, ev;
  ym_event_init(&base, NULL);
  ym_event_set_cstr(&base, YM_F_HOST_NAME, "pc1");
  ym_event_set_cstr(&base, YM_F_HOST_OS_TYPE, "linux");
  ym_event_set_cstr(&base, YM_F_ECS_VERSION, YM_ECS_VERSION);
  ym_event_init(&ev, &base);
  ym_event_set_int(&ev, YM_F_PROCESS_PID, 42);
  ym_event_set_int(&ev, YM_F_PROCESS_PARENT_PID, 1);
  ym_event_set_cstr(&ev, YM_F_PROCESS_HASH_SHA256, "ab");
  ym_event_set_bool(&ev, YM_F_YAMORI_PROCESS_ARGS_TRUNCATED, true);
  ym_event_set_one(&ev, YM_F_EVENT_TYPE, "start");
  ym_event_set_cstr(&ev, YM_F_HOST_NAME, "override");
  ym_event_set_time(&ev, YM_F_TIMESTAMP, 1700000000123456789LL);
  ym_buf_t out;
  ym_buf_init(&out, 1 << 16);
  assert_int_equal(ym_event_write(&ev, &out), 0);
  assert_string_equal(out.data, "{\"@timestamp\":\"2023-11-14T22:13:20.123456Z\","
                                "\"ecs\":{\"version\":\"9.4.0\"},"
                                "\"event\":{\"type\":[\"start\"]},"
                                "\"host\":{\"name\":\"override\",\"os\":{\"type\":\"linux\"}},"
                                "\"process\":{\"hash\":{\"sha256\":\"ab\"},"
                                "\"parent\":{\"pid\":1},\"pid\":42},"
                                "\"yamori\":{\"process\":{\"args_truncated\":true}}}\n");
  ym_buf_free(&out);
  ym_event_free(&ev);
  ym_event_free(&base);
}

static void hostile_strings_stay_valid_json(void **state) {
  (void)state;
  ym_event_t ev;
  ym_event_init(&ev, NULL);
  const char path[] = "/tmp/a\nb\tc\x1b[31m\xff\xfe-\"q\"";
  ym_event_set_str(&ev, YM_F_FILE_PATH, path, sizeof(path) - 1);
  const char args[] = "sh\0-c\0echo \"x\"\n\0";
  ym_event_set_nul_list(&ev, YM_F_PROCESS_ARGS, args, sizeof(args) - 1);
  ym_buf_t out;
  ym_buf_init(&out, 1 << 16);
  assert_int_equal(ym_event_write(&ev, &out), 0);
  assert_non_null(strstr(out.data, "\\udcff\\udcfe"));
  assert_non_null(strstr(out.data, "[\"sh\",\"-c\",\"echo \\\"x\\\"\\n\"]"));
  cJSON *j = NULL;
  /* cJSON refuses lone surrogates; check the structure with them replaced. */
  char *copy = strdup(out.data);
  for (char *p = copy; (p = strstr(p, "\\udc")) != NULL;)
    memcpy(p, "\\u00", 4);
  assert_int_equal(ym_json_parse(copy, strlen(copy), 1 << 16, &j, NULL), 0);
  const cJSON *argv = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "process"), "args");
  assert_int_equal(cJSON_GetArraySize(argv), 3);
  cJSON_Delete(j);
  free(copy);
  ym_buf_free(&out);
  ym_event_free(&ev);
}

static void type_mismatch_and_caps(void **state) {
  (void)state;
  ym_event_t ev;
  ym_event_init(&ev, NULL);
  assert_int_equal(ym_event_set_int(&ev, YM_F_FILE_PATH, 1), YM_ETYPE);
  assert_int_equal(ym_event_set_cstr(&ev, YM_F_PROCESS_PID, "1"), YM_ETYPE);
  assert_false(ym_event_has(&ev, YM_F_FILE_PATH));
  static char big[YM_EVENT_MAX_BYTES + 10];
  memset(big, 'a', sizeof(big));
  assert_int_equal(ym_event_set_str(&ev, YM_F_FILE_PATH, big, sizeof(big)), YM_ETOOBIG);
  assert_false(ym_event_has(&ev, YM_F_FILE_PATH));
  assert_int_equal(ym_event_set_cstr(&ev, YM_F_FILE_PATH, "/ok"), 0);
  size_t n;
  assert_string_equal(ym_event_get_str(&ev, YM_F_FILE_PATH, &n), "/ok");
  ym_event_reset(&ev);
  assert_false(ym_event_has(&ev, YM_F_FILE_PATH));
  ym_buf_t out;
  ym_buf_init(&out, 1 << 10);
  assert_int_equal(ym_event_write(&ev, &out), 0);
  assert_string_equal(out.data, "{}\n");
  ym_buf_free(&out);
  ym_event_free(&ev);
}

static void markdown_has_every_field(void **state) {
  (void)state;
  ym_buf_t b;
  ym_buf_init(&b, 1 << 20);
  assert_int_equal(ym_schema_doc_markdown(&b), 0);
  for (int f = 0; f < YM_F_COUNT; f++)
    assert_non_null(strstr(b.data, ym_schema_field((ym_field_t)f)->name));
  ym_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(schema_is_sorted_and_prefix_free), cmocka_unit_test(writes_nested_objects),
      cmocka_unit_test(hostile_strings_stay_valid_json),  cmocka_unit_test(type_mismatch_and_caps),
      cmocka_unit_test(markdown_has_every_field),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
