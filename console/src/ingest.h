/*
 * Decoding an event batch from an agent: bounded gunzip, bounded JSON
 * parse, and validation against protocol v1 (docs/protocol.md). Pure
 * function of its input; no I/O. Fuzzed (tests/fuzz/fuzz_batch.c).
 */
#ifndef YAMORI_CONSOLE_INGEST_H
#define YAMORI_CONSOLE_INGEST_H

#include "store.h"

#include "yamori/buf.h"

#include <stddef.h>
#include <stdint.h>

#define INGEST_MAX_DECOMPRESSED (32 * 1024 * 1024)
#define INGEST_MAX_EVENTS 10000
#define INGEST_MAX_EVENT_BYTES (256 * 1024)

typedef struct {
  char agent_id[64];
  char stream[16]; /* "alerts" or "bulk" */
  int64_t first_seq, last_seq;
  int64_t count;
  store_event_t *events; /* n events, json pointing at their lines in text */
  size_t n;
  char *text; /* decompressed body, owned */
  size_t text_len;
  char error[128]; /* on failure: what is wrong (no input echoed) */
} ingest_batch_t;

/* Decodes gz[0..len) (gzip). Returns 0, YM_ETOOBIG (decompressed size or
 * event count over the limits: 413), YM_EPARSE (not gzip, malformed JSON,
 * bad fields: 400). On success free with ingest_batch_free. */
int ingest_decode(const void *gz, size_t len, ingest_batch_t *out);
void ingest_batch_free(ingest_batch_t *b);

#endif
