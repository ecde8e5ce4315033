/*
 * Tests of the console's parsers of request bodies and queries: the
 * enrollment and check-in bodies of the agent API and the dashboard API's
 * route, query string and body, each with good input and each refusal.
 */
#include "api.h"
#include "web.h"

#include "yamori/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define TOKEN "abcdefghijklmnop.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"

static int enroll(const char *body, api_enroll_body_t *e, const char **why) {
  return api_parse_enroll(body, strlen(body), e, why);
}

static void enroll_body(void **state) {
  (void)state;
  api_enroll_body_t e;
  const char *why = NULL;
  assert_int_equal(enroll("{\"token\":\"" TOKEN "\",\"host\":{\"id\":\"m1\",\"name\":\"pc\"},"
                          "\"agent\":{\"version\":\"0.1.0\"}}",
                          &e, &why),
                   0);
  assert_true(e.has_token);
  assert_string_equal(e.token_id, "abcdefghijklmnop");
  assert_string_equal(e.token_secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq");
  assert_string_equal(e.host_id, "m1");
  assert_string_equal(e.host_name, "pc");
  assert_string_equal(e.version, "0.1.0");
  assert_string_equal(e.host_json, "{\"id\":\"m1\",\"name\":\"pc\"}");
  api_enroll_body_free(&e);

  /* Without a token: parsed; the handler decides. */
  assert_int_equal(enroll("{\"host\":{}}", &e, &why), 0);
  assert_false(e.has_token);
  assert_string_equal(e.host_id, "");
  api_enroll_body_free(&e);

  static const struct {
    const char *body, *why;
  } bad[] = {
      {"", "the body must be a JSON object"},
      {"[]", "the body must be a JSON object"},
      {"{\"token\":\"" TOKEN "\"}", "token and host are required"},
      {"{\"token\":\"" TOKEN "\",\"host\":[]}", "token and host are required"},
      {"{\"token\":5,\"host\":{}}", "token and host are required"},
      {"{\"token\":\"abc.def\",\"host\":{}}", "token and host are required"},
      {"{\"token\":\"" TOKEN "x\",\"host\":{}}", "token and host are required"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    why = NULL;
    assert_int_equal(enroll(bad[i].body, &e, &why), YM_EINVAL);
    assert_string_equal(why, bad[i].why);
    assert_null(e.json);
  }
  /* A host name of 256 bytes is refused. */
  char body[512];
  char name[257];
  memset(name, 'n', 256);
  name[256] = '\0';
  snprintf(body, sizeof(body), "{\"host\":{\"name\":\"%s\"}}", name);
  assert_int_equal(enroll(body, &e, &why), YM_EINVAL);
  assert_string_equal(why, "host facts too large");
}

static void checkin_body(void **state) {
  (void)state;
  api_checkin_body_t c;
  const char *why = NULL;
  const char *ok = "{\"agent_id\":\"a1\",\"version\":\"0.1.0\",\"rules_version\":\"r\","
                   "\"status\":{\"sensors\":{}},\"counters\":{\"events\":3},\"other\":1}";
  assert_int_equal(api_parse_checkin(ok, strlen(ok), &c, &why), 0);
  assert_string_equal(c.agent_id, "a1");
  assert_string_equal(c.version, "0.1.0");
  assert_string_equal(c.rules_version, "r");
  assert_string_equal(c.status_json, "{\"status\":{\"sensors\":{}},\"counters\":{\"events\":3}}");
  assert_non_null(cJSON_GetObjectItem(c.json, "other"));
  api_checkin_body_free(&c);

  assert_int_equal(api_parse_checkin("{}", 2, &c, &why), 0);
  assert_null(c.agent_id);
  assert_string_equal(c.version, "");
  assert_string_equal(c.status_json, "{}");
  api_checkin_body_free(&c);

  assert_int_equal(api_parse_checkin("7", 1, &c, &why), YM_EINVAL);
  assert_string_equal(why, "the body must be a JSON object");
  char big[128];
  snprintf(big, sizeof(big), "{\"version\":\"%065d\"}", 0);
  assert_int_equal(api_parse_checkin(big, strlen(big), &c, &why), YM_EINVAL);
  assert_string_equal(why, "check-in fields too large");
  assert_null(c.json);
}

static int dash(web_req_t *q, const char *method, const char *sub, const char *query,
                const char *body, const char **why) {
  const char *code = NULL;
  memset(q, 0, sizeof(*q));
  return web_parse(q, method, sub, query, body, strlen(body), &code, why);
}

static void dashboard_request(void **state) {
  (void)state;
  web_req_t *q = calloc(1, sizeof(*q));
  assert_non_null(q);
  const char *why = NULL;
  assert_int_equal(dash(q, "GET", "agents", "limit=20&q=pc%2D01+x&empty=", "", &why), 0);
  assert_null(q->body);
  assert_string_equal(web_param(q, "q"), "pc-01 x");
  assert_null(web_param(q, "empty"));
  int64_t v;
  assert_true(web_param_int(q, "limit", 1, 100, 50, &v));
  assert_int_equal(v, 20);
  assert_true(web_param_int(q, "offset", 0, 100, 7, &v));
  assert_int_equal(v, 7);

  assert_int_equal(dash(q, "POST", "incidents/12", "", "{\"state\":\"resolved\"}", &why), 0);
  assert_string_equal(q->id[0], "12");
  assert_string_equal(ym_json_get_str(q->body, "state"), "resolved");
  cJSON_Delete(q->body);
  assert_int_equal(dash(q, "POST", "tokens/abc/revoke", "", "", &why), 0);
  assert_string_equal(q->id[0], "abc");
  assert_true(cJSON_IsObject(q->body) && q->body->child == NULL);
  cJSON_Delete(q->body);
  assert_int_equal(dash(q, "HEAD", "agents", "", "", &why), 0);

  assert_int_equal(dash(q, "GET", "nowhere", "", "", &why), 404);
  assert_int_equal(dash(q, "PUT", "agents", "", "", &why), 405);
  assert_int_equal(dash(q, "GET", "agents", "q=%zz", "", &why), 400);
  assert_string_equal(why, "malformed query string");
  assert_int_equal(dash(q, "GET", "agents", "q=%0a", "", &why), 400);
  assert_int_equal(dash(q, "POST", "incidents/12", "", "[1]", &why), 400);
  assert_string_equal(why, "the body must be a JSON object");
  assert_null(q->body);
  char query[17 * 4 + 1] = "";
  for (int i = 0; i < 17; i++)
    strncat(query, "a=1&", sizeof(query) - strlen(query) - 1);
  assert_int_equal(dash(q, "GET", "agents", query, "", &why), 400);
  assert_int_equal(dash(q, "GET", "agents", "limit=x", "", &why), 0);
  assert_false(web_param_int(q, "limit", 1, 100, 50, &v));
  assert_int_equal(q->status, 400);
  free(q);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(enroll_body),
      cmocka_unit_test(checkin_body),
      cmocka_unit_test(dashboard_request),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
