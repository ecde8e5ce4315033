/*
 * libFuzzer harness: the console's batch decoder on arbitrary bytes, twice
 * per input: once as the gzip body itself (the inflater, member and
 * trailer handling), and once compressed here, so that the fuzzer reaches
 * the NDJSON validation behind the gzip layer.
 */
#include "ingest.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks what a successful decode promises, so that the fuzzer also finds
 * wrong answers, not only crashes. */
static void check(const ingest_batch_t *b) {
  if (b->n != (size_t)b->count || b->n == 0 || b->events[0].seq != b->first_seq ||
      b->events[b->n - 1].seq != b->last_seq)
    abort();
  for (size_t i = 0; i < b->n; i++) {
    const store_event_t *e = &b->events[i];
    if (e->json < b->text || e->json + e->json_len > b->text + b->text_len)
      abort();
    if (i > 0 && e->seq <= b->events[i - 1].seq)
      abort();
    if ((e->kind != NULL && strlen(e->kind) > 64) || (e->action != NULL && strlen(e->action) > 64))
      abort();
  }
}

static void decode(const void *p, size_t n) {
  ingest_batch_t b;
  if (ingest_decode(p, n, &b) == 0) {
    check(&b);
    ingest_batch_free(&b);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  decode(data, size);

  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return 0;
  size_t cap = deflateBound(&zs, (uLong)size);
  unsigned char *gz = malloc(cap);
  if (gz != NULL) {
    zs.next_in = (unsigned char *)(uintptr_t)data;
    zs.avail_in = (uInt)size;
    zs.next_out = gz;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) == Z_STREAM_END)
      decode(gz, zs.total_out);
    free(gz);
  }
  deflateEnd(&zs);
  return 0;
}
