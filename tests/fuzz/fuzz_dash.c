/*
 * libFuzzer harness: the dashboard API's request parser (route and :id
 * segments, query string, JSON body) and the query parameter readers the
 * handlers use. Input: one byte choosing the method, then the path below
 * /api/ui/, a newline, the query string, a newline, and the body.
 */
#include "web.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const methods[] = {"GET", "POST", "HEAD", "PUT"};
static const char *const int_keys[] = {"limit", "offset",    "tenant",  "from_ms",
                                       "to_ms", "before_id", "incident"};
static const char *const str_keys[] = {"q", "state", "agent", "kind", "month", "x"};

/* Copies [p, p + n) into a new NUL-terminated string. */
static char *dup_n(const char *p, size_t n) {
  char *s = malloc(n + 1);
  if (s != NULL) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

/* Checks what a successful parse promises, so that the fuzzer also finds
 * wrong answers, not only crashes. */
static void check(web_req_t *q, const char *method) {
  if (q->route == NULL || q->n_params > WEB_MAX_PARAMS)
    abort();
  if ((strcmp(method, "POST") == 0) != (q->body != NULL) || (q->body && !cJSON_IsObject(q->body)))
    abort();
  for (size_t i = 0; i < 2; i++)
    if (memchr(q->id[i], '\0', sizeof(q->id[i])) == NULL || strchr(q->id[i], '/') != NULL)
      abort();
  for (size_t i = 0; i < q->n_params; i++) {
    const web_param_t *p = &q->params[i];
    if (memchr(p->key, '\0', sizeof(p->key)) == NULL ||
        memchr(p->value, '\0', sizeof(p->value)) == NULL)
      abort();
    for (const unsigned char *c = (const unsigned char *)p->value; *c; c++)
      if (*c < 0x20 || *c == 0x7f)
        abort();
  }
  for (size_t i = 0; i < sizeof(int_keys) / sizeof(int_keys[0]); i++) {
    int64_t v;
    q->status = 0;
    if (web_param_int(q, int_keys[i], 0, 1000000, 7, &v)) {
      if (v < 0 || v > 1000000 || q->status != 0)
        abort();
    } else if (q->status != 400) {
      abort();
    }
  }
  for (size_t i = 0; i < sizeof(str_keys) / sizeof(str_keys[0]); i++) {
    const char *v = web_param(q, str_keys[i]);
    if (v != NULL && (v[0] == '\0' || strlen(v) > WEB_PARAM_MAX))
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > WEB_BODY_MAX + 4096)
    return 0;
  const char *method = methods[data[0] % 4];
  const char *p = (const char *)data + 1, *end = (const char *)data + size;
  const char *nl1 = memchr(p, '\n', (size_t)(end - p));
  const char *nl2 = nl1 != NULL ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
  if (nl2 == NULL)
    return 0;
  char *sub = dup_n(p, (size_t)(nl1 - p));
  char *query = dup_n(nl1 + 1, (size_t)(nl2 - nl1 - 1));
  /* The server hands the body over with a NUL after it. */
  char *body = dup_n(nl2 + 1, (size_t)(end - nl2 - 1));
  web_req_t *q = calloc(1, sizeof(*q));
  if (sub != NULL && query != NULL && body != NULL && q != NULL) {
    const char *code = NULL, *why = NULL;
    int status = web_parse(q, method, sub, query, body, (size_t)(end - nl2 - 1), &code, &why);
    if (status == 0)
      check(q, method);
    else if (code == NULL || why == NULL || q->body != NULL || status < 400 || status > 500)
      abort();
    cJSON_Delete(q->body);
  }
  free(q);
  free(sub);
  free(query);
  free(body);
  return 0;
}
