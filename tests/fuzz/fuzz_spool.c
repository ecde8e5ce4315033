/* libFuzzer harness: the spool segment reader on arbitrary bytes. */
#include "spool.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_record(const spool_rec_hdr_t *h, size_t offset, const uint8_t *payload, bool ok,
                      void *d) {
  size_t *sum = d;
  /* Touch the payload the parser vouched for. */
  if (ok && h->gz_len > 0)
    *sum += payload[0] + payload[h->gz_len - 1] + offset;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t good = 0, sum = 0;
  spool_parse_segment(data, size, on_record, &sum, &good);
  if (good > size)
    __builtin_trap();
  return 0;
}
