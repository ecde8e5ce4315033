/*
 * libFuzzer harness: the bodies agents send to the console's agent API,
 * the enrollment request and the check-in. Input: one byte choosing the
 * parser (even: enrollment, odd: check-in), then the body.
 */
#include "api.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks what a successful parse promises, so that the fuzzer also finds
 * wrong answers, not only crashes. */
static void check_enroll(const api_enroll_body_t *e) {
  if (e->json == NULL || e->host_json == NULL || strlen(e->host_json) > 16384 ||
      e->host_id == NULL || strlen(e->host_id) > 128 || e->host_name == NULL ||
      strlen(e->host_name) > 255 || e->version == NULL)
    abort();
  if (e->has_token && (strlen(e->token_id) != 16 || e->token_secret == NULL ||
                       strlen(e->token_secret) != 43 || strchr(e->token_id, '.') != NULL))
    abort();
  cJSON *host = cJSON_Parse(e->host_json);
  if (!cJSON_IsObject(host))
    abort();
  cJSON_Delete(host);
}

static void check_checkin(const api_checkin_body_t *c) {
  if (c->json == NULL || c->version == NULL || strlen(c->version) > 64 ||
      c->rules_version == NULL || strlen(c->rules_version) > 64 || c->status_json == NULL)
    abort();
  cJSON *st = cJSON_Parse(c->status_json);
  if (!cJSON_IsObject(st))
    abort();
  const cJSON *it;
  cJSON_ArrayForEach(it, st) {
    if ((strcmp(it->string, "status") != 0 && strcmp(it->string, "counters") != 0) ||
        !cJSON_IsObject(it))
      abort();
  }
  cJSON_Delete(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  const char *body = (const char *)data + 1;
  size_t len = size - 1;
  const char *why = NULL;
  if ((data[0] & 1) == 0) {
    api_enroll_body_t e;
    if (api_parse_enroll(body, len, &e, &why) == 0) {
      check_enroll(&e);
      api_enroll_body_free(&e);
    } else if (why == NULL || e.json != NULL || e.host_json != NULL) {
      abort();
    }
  } else {
    api_checkin_body_t c;
    if (api_parse_checkin(body, len, &c, &why) == 0) {
      check_checkin(&c);
      api_checkin_body_free(&c);
    } else if (why == NULL || c.json != NULL || c.status_json != NULL) {
      abort();
    }
  }
  return 0;
}
