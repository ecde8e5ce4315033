#include "yamori/err.h"
#include "yamori/sha256.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static int temp_file_with(const void *p, size_t n) {
  char path[] = "/tmp/yamori-test-sha-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(fd, (const char *)p + off, n - off);
    assert_true(w > 0);
    off += (size_t)w;
  }
  return fd;
}

static void known_vectors(void **state) {
  (void)state;
  uint8_t d[YM_SHA256_LEN];
  char hex[YM_SHA256_HEX_LEN + 1];
  assert_int_equal(ym_sha256_mem("abc", 3, d), 0);
  ym_hex(d, sizeof(d), hex);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  int fd = temp_file_with("", 0);
  assert_int_equal(ym_sha256_fd(fd, 0, d, NULL), 0);
  ym_hex(d, sizeof(d), hex);
  assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  close(fd);
}

static void file_matches_memory_across_chunks(void **state) {
  (void)state;
  size_t n = 1000 * 1000 + 7; /* several read chunks and a ragged end */
  unsigned char *p = malloc(n);
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(i * 31 + 7);
  int fd = temp_file_with(p, n);
  /* The fd's own offset is at the end: hashing must not depend on it. */
  uint8_t a[YM_SHA256_LEN], b[YM_SHA256_LEN];
  uint64_t got = 0;
  assert_int_equal(ym_sha256_fd(fd, 0, a, &got), 0);
  assert_int_equal(got, n);
  assert_int_equal(ym_sha256_mem(p, n, b), 0);
  assert_memory_equal(a, b, sizeof(a));
  assert_int_equal(ym_sha256_fd(fd, 4096, a, &got), YM_ETOOBIG);
  close(fd);
  free(p);
}

static void unreadable_fd_is_io_error(void **state) {
  (void)state;
  uint8_t d[YM_SHA256_LEN];
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  assert_int_equal(ym_sha256_fd(fds[1], 0, d, NULL), YM_EIO);
  close(fds[0]);
  close(fds[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(known_vectors),
      cmocka_unit_test(file_matches_memory_across_chunks),
      cmocka_unit_test(unreadable_fd_is_io_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
