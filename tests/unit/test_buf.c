#include "yamori/buf.h"
#include "yamori/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void appends_and_terminates(void **state) {
  (void)state;
  ym_buf_t b;
  ym_buf_init(&b, 1024);
  assert_int_equal(ym_buf_append_str(&b, "abc"), 0);
  assert_int_equal(ym_buf_appendf(&b, "-%d-", 42), 0);
  assert_int_equal(ym_buf_append_byte(&b, 'z'), 0);
  assert_int_equal(b.len, 8);
  assert_string_equal(b.data, "abc-42-z");
  ym_buf_truncate(&b, 3);
  assert_string_equal(b.data, "abc");
  ym_buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  ym_buf_free(&b);
  assert_null(b.data);
}

static void refuses_to_grow_past_cap(void **state) {
  (void)state;
  ym_buf_t b;
  ym_buf_init(&b, 10);
  assert_int_equal(ym_buf_append(&b, "0123456789", 10), 0);
  assert_int_equal(ym_buf_append_byte(&b, 'x'), YM_ETOOBIG);
  assert_int_equal(b.len, 10);
  assert_memory_equal(b.data, "0123456789", 10);
  ym_buf_reset(&b);
  assert_int_equal(ym_buf_appendf(&b, "%s", "this is longer than ten"), YM_ETOOBIG);
  assert_int_equal(b.len, 0);
  /* A huge request must not overflow the size computation. */
  assert_int_equal(ym_buf_reserve(&b, SIZE_MAX), YM_ETOOBIG);
  ym_buf_free(&b);
}

static void grows_in_steps(void **state) {
  (void)state;
  ym_buf_t b;
  ym_buf_init(&b, 1 << 20);
  for (int i = 0; i < 10000; i++)
    assert_int_equal(ym_buf_append(&b, "0123456789", 10), 0);
  assert_int_equal(b.len, 100000);
  assert_true(b.size >= b.len + 1);
  assert_true(b.size <= (1 << 20) + 1);
  size_t len;
  char *p = ym_buf_detach(&b, &len);
  assert_int_equal(len, 100000);
  assert_null(b.data);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(appends_and_terminates),
      cmocka_unit_test(refuses_to_grow_past_cap),
      cmocka_unit_test(grows_in_steps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
