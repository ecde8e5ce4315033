#include "yamori/err.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void every_code_has_name_and_text(void **state) {
  (void)state;
  for (int e = YM_ERR_BASE_ + 1; e < YM_ERR_END_; e++) {
    assert_string_not_equal(ym_err_name(e), "YM_UNKNOWN");
    assert_string_not_equal(ym_strerror(e), "unknown error");
    assert_true(e < 0);
  }
  assert_string_equal(ym_err_name(YM_ETOOBIG), "YM_ETOOBIG");
  assert_string_equal(ym_strerror(0), "success");
  assert_string_equal(ym_err_name(12345), "YM_UNKNOWN");
  assert_string_equal(ym_strerror(-1), "unknown error");
}

static void errno_translation(void **state) {
  (void)state;
  assert_int_equal(ym_err_from_errno(ENOENT), YM_ENOENT);
  assert_int_equal(ym_err_from_errno(EACCES), YM_EPERM);
  assert_int_equal(ym_err_from_errno(ENAMETOOLONG), YM_ETOOBIG);
  assert_int_equal(ym_err_from_errno(EXDEV), YM_ESYS);
  assert_int_equal(ym_err_from_errno(0), YM_ESYS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_code_has_name_and_text),
      cmocka_unit_test(errno_translation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
