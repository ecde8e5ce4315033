/*
 * libFuzzer harness: the agent's control socket on arbitrary bytes. The
 * input is cut into lines as the server cuts what a client sends, and each
 * line goes through the request parser.
 */
#include "control.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks what a parsed request promises, so that the fuzzer also finds
 * wrong answers, not only crashes. */
static void check(const control_req_t *r) {
  if (r->json == NULL || (int)r->cmd < CONTROL_STATUS || r->cmd > CONTROL_ALERTS)
    abort();
  if (r->cmd == CONTROL_SCAN) {
    if (r->n_paths < 1 || r->n_paths > CONTROL_SCAN_PATHS_MAX)
      abort();
    for (size_t i = 0; i < r->n_paths; i++)
      if (r->paths[i] == NULL || r->paths[i][0] != '/' || strlen(r->paths[i]) > CONTROL_PATH_MAX)
        abort();
  } else if (r->n_paths != 0) {
    abort();
  }
  bool needs_id = r->cmd == CONTROL_QUARANTINE_RESTORE || r->cmd == CONTROL_QUARANTINE_DELETE;
  if (needs_id != (r->id != NULL) || (r->id != NULL && strlen(r->id) != CONTROL_ID_LEN))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  const char *end = p + size;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
    /* The server hands a line over NUL-terminated, as here. */
    char *line = malloc(len + 1);
    if (line == NULL)
      return 0;
    memcpy(line, p, len);
    line[len] = '\0';
    control_req_t r;
    const char *why = NULL;
    if (control_parse(line, len, &r, &why) == 0) {
      check(&r);
      control_req_free(&r);
    } else if (why == NULL || r.json != NULL) {
      abort();
    }
    free(line);
    p += len + 1;
  }
  return 0;
}
