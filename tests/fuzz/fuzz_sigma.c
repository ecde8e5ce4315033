/*
 * The agent's loader of compiled Sigma rules (agent/src/sigma.c): arbitrary
 * bytes as the compact JSON; a set that loads is evaluated on a fixed event
 * of each log source category it may hold.
 */
#include "sigma.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char event_json[] =
    "{\"process\":{\"executable\":\"/usr/bin/bash\",\"command_line\":\"bash -c echo "
    "aGVsbG8= | base64 -d | sh\",\"pid\":4242,\"name\":\"bash\",\"working_directory\":\"/tmp\","
    "\"args\":[\"bash\",\"-c\",\"x\"],\"parent\":{\"executable\":\"/usr/bin/python3\",\"pid\":1},"
    "\"user\":{\"name\":\"alice\"},\"hash\":{\"sha256\":\"00ff\"}},"
    "\"file\":{\"path\":\"/etc/cron.d/x\"},\"destination\":{\"ip\":\"10.1.2.3\",\"port\":4444}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static cJSON *event;
  if (event == NULL)
    event = cJSON_Parse(event_json);
  sigma_ruleset_t *rs = NULL;
  char err[256];
  if (sigma_ruleset_load((const char *)data, size, &rs, err, sizeof err) != 0)
    return 0;
  sigma_eval_t *e = sigma_eval_new(rs);
  if (e != NULL) {
    sigma_source_t src;
    sigma_cjson_t ctx;
    sigma_source_cjson(&src, &ctx, rs, event);
    static const char *const cats[] = {"process_creation", "file_event", "network_connection", "x"};
    for (size_t i = 0; i < sizeof cats / sizeof cats[0]; i++) {
      int n = sigma_eval_event(e, cats[i], "linux", (int64_t)i * 1000000000, &src);
      for (int k = 0; k < n; k++)
        (void)sigma_eval_match(e, (size_t)k)->id;
    }
  }
  sigma_eval_free(e);
  sigma_ruleset_free(rs);
  return 0;
}
