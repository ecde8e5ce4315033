/*
 * The package unpacker on arbitrary bytes: checked without writing
 * (dir_fd -1), with small limits so that size and ratio checks are hit.
 */
#include "yamori/unpack.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ym_unpack_limits_t lim = {4 * 1024 * 1024, 1024 * 1024, 64, 100};
  ym_unpack_result_t res;
  ym_unpack_mem(data, size, -1, &lim, &res);
  return 0;
}
