#include "yamori/err.h"
#include "yamori/json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void check_escape(const char *in, size_t n, const char *want) {
  ym_buf_t b;
  ym_buf_init(&b, 1 << 16);
  assert_int_equal(ym_json_append_string(&b, in, n), 0);
  assert_string_equal(b.data, want);
  ym_buf_free(&b);
}

static void escapes_controls_and_quotes(void **state) {
  (void)state;
  check_escape("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
  check_escape("l1\nl2\tx\x1b[0m", 11, "\"l1\\nl2\\tx\\u001b[0m\"");
  check_escape("\0x", 2, "\"\\u0000x\"");
  check_escape("", 0, "\"\"");
}

static void keeps_valid_utf8(void **state) {
  (void)state;
  const char *ja = "\xe5\xae\xb6\xe5\xae\x88"; /* 家守 */
  check_escape(ja, strlen(ja), "\"\xe5\xae\xb6\xe5\xae\x88\"");
  check_escape("\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\"");
}

static void escapes_invalid_utf8_as_surrogates(void **state) {
  (void)state;
  check_escape("a\xff", 2, "\"a\\udcff\"");
  check_escape("\xc0\xaf", 2, "\"\\udcc0\\udcaf\"");                       /* overlong '/' */
  check_escape("\xed\xa0\x80", 3, "\"\\udced\\udca0\\udc80\"");            /* encoded surrogate */
  check_escape("\xe5\xae", 2, "\"\\udce5\\udcae\"");                       /* truncated */
  check_escape("\xf4\x90\x80\x80", 4, "\"\\udcf4\\udc90\\udc80\\udc80\""); /* > U+10FFFF */
  assert_false(ym_json_utf8_valid("\x80", 1));
  assert_true(ym_json_utf8_valid("\xe5\xae\xb6", 3));
}

static void output_parses_back(void **state) {
  (void)state;
  ym_buf_t b;
  ym_buf_init(&b, 1 << 16);
  const char in[] = "tab\there \"q\" \x01 \xe5\xae\xb6";
  assert_int_equal(ym_json_append_string(&b, in, sizeof(in) - 1), 0);
  cJSON *j = NULL;
  assert_int_equal(ym_json_parse(b.data, b.len, 1 << 16, &j, NULL), 0);
  assert_true(cJSON_IsString(j));
  assert_string_equal(j->valuestring, in);
  cJSON_Delete(j);
  ym_buf_free(&b);
}

static void append_is_bounded_and_atomic(void **state) {
  (void)state;
  ym_buf_t b;
  ym_buf_init(&b, 8);
  assert_int_equal(ym_buf_append_str(&b, "ab"), 0);
  assert_int_equal(ym_json_append_string(&b, "0123456789", 10), YM_ETOOBIG);
  assert_int_equal(b.len, 2);
  assert_string_equal(b.data, "ab");
  ym_buf_free(&b);
}

static void parse_is_bounded(void **state) {
  (void)state;
  cJSON *j = NULL;
  size_t at = 0;
  assert_int_equal(ym_json_parse("{\"a\":1}", 7, 6, &j, NULL), YM_ETOOBIG);
  assert_null(j);
  assert_int_equal(ym_json_parse("{\"a\":1} x", 9, 100, &j, &at), YM_EPARSE);
  assert_int_equal(at, 8);
  assert_int_equal(ym_json_parse("{\"a\":", 5, 100, &j, NULL), YM_EPARSE);
  assert_int_equal(ym_json_parse("{\"a\":7,\"s\":\"v\"}", 15, 100, &j, NULL), 0);
  long long v = 0;
  assert_true(ym_json_get_int(j, "a", &v));
  assert_int_equal(v, 7);
  assert_false(ym_json_get_int(j, "s", &v));
  assert_string_equal(ym_json_get_str(j, "s"), "v");
  assert_null(ym_json_get_str(j, "a"));
  cJSON_Delete(j);
}

static void add_bytes_escapes_inside_cjson(void **state) {
  (void)state;
  cJSON *o = cJSON_CreateObject();
  assert_int_equal(ym_json_add_bytes(o, "p", "x\xffy", 3), 0);
  char *s = cJSON_PrintUnformatted(o);
  assert_string_equal(s, "{\"p\":\"x\\udcffy\"}");
  cJSON_free(s);
  cJSON_Delete(o);
}

/* Parses text leniently and checks that it is an object whose member "s"
 * is the string want[0..n). */
static void check_lenient(const char *text, const char *want, size_t n) {
  cJSON *j = NULL;
  assert_int_equal(ym_json_parse_lenient(text, strlen(text), 1 << 16, &j), 0);
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "s");
  assert_true(cJSON_IsString(s));
  assert_int_equal(strlen(s->valuestring), n);
  assert_memory_equal(s->valuestring, want, n);
  cJSON_Delete(j);
}

static void lenient_parse_restores_bytes(void **state) {
  (void)state;
  /* Every byte that ym_json_append_string escapes comes back exactly. */
  char in[256];
  for (int i = 0; i < 255; i++)
    in[i] = (char)(i + 1);
  in[255] = '\xc0';
  ym_buf_t b;
  ym_buf_init(&b, 1 << 16);
  assert_int_equal(ym_buf_append_str(&b, "{\"s\":"), 0);
  assert_int_equal(ym_json_append_string(&b, in, sizeof(in)), 0);
  assert_int_equal(ym_buf_append_byte(&b, '}'), 0);
  check_lenient(b.data, in, sizeof(in));
  ym_buf_free(&b);

  check_lenient("{\"s\":\"a\\udcffb\"}",
                "a\xff"
                "b",
                3);
  check_lenient("{\"s\":\"\\uDC80\"}", "\x80", 1); /* upper-case hex */
  /* A pair is a character, not bytes. */
  check_lenient("{\"s\":\"\\ud83d\\ude00\"}", "\xf0\x9f\x98\x80", 4);
  check_lenient("{\"s\":\"\\ud800\\udc80\"}", "\xf0\x90\x82\x80", 4);
  /* An escaped backslash followed by "udc80" is text. */
  check_lenient("{\"s\":\"\\\\udc80\"}", "\\udc80", 6);
  /* An escaped quote does not end the string. */
  check_lenient("{\"s\":\"\\\"\\udc99\"}", "\"\x99", 2);
  /* Text without escapes is parsed in place and gives the same result. */
  check_lenient("{\"s\":\"plain\"}", "plain", 5);
}

static void lenient_parse_refuses_like_strict(void **state) {
  (void)state;
  cJSON *j = NULL;
  const char *bad[] = {
      "{\"s\":\"\\udc7f\"}", /* a low surrogate that is not a byte */
      "{\"s\":\"\\udc8\"}",  /* short escape */
      "{\"s\":\"\\ud800\"}", /* lone high surrogate */
      "{\"s\":\"\\ud800\\u0041\"}",
      "{\"s\":\"\\udc80}", /* unterminated string */
      "{\"s\":1} \\udc80", /* text after the value */
      "\\udc80",           /* a byte escape outside a string */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(ym_json_parse_lenient(bad[i], strlen(bad[i]), 1 << 16, &j), YM_EPARSE);
    assert_null(j);
  }
  const char *t = "{\"s\":\"\\udc80\"}";
  assert_int_equal(ym_json_parse_lenient(t, strlen(t), strlen(t) - 1, &j), YM_ETOOBIG);
  assert_null(j);
  /* Only len bytes are read: the text need not be NUL-terminated. */
  assert_int_equal(ym_json_parse_lenient("{\"s\":\"\\udc80\"}xyz", 14, 100, &j), 0);
  cJSON_Delete(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(escapes_controls_and_quotes),
      cmocka_unit_test(keeps_valid_utf8),
      cmocka_unit_test(escapes_invalid_utf8_as_surrogates),
      cmocka_unit_test(output_parses_back),
      cmocka_unit_test(append_is_bounded_and_atomic),
      cmocka_unit_test(parse_is_bounded),
      cmocka_unit_test(add_bytes_escapes_inside_cjson),
      cmocka_unit_test(lenient_parse_restores_bytes),
      cmocka_unit_test(lenient_parse_refuses_like_strict),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
