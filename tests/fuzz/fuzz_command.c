/*
 * Fuzzes what a remote response command is made of: the console's checks
 * of a command's arguments (JSON from a person's request) and of an
 * agent's result body, and the agent's parser of /proc/net lines.
 * Input: one byte choosing the kind, then the JSON text (or the line).
 */
#include "commands.h"
#include "triage.h"

#include "yamori/json.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const kinds[] = {"scan", "quarantine", "restore", "kill", "triage", "x"};
  if (size < 1 || size > 65536)
    return 0;
  const char *kind = kinds[data[0] % 6];
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  cJSON *j = NULL;
  if (ym_json_parse_lenient(text, len, 65536, &j) == 0) {
    char msg[128];
    commands_validate(kind, j, msg, sizeof(msg));
    cJSON *args = cJSON_GetObjectItemCaseSensitive(j, "args");
    commands_validate(kind, args, msg, sizeof(msg));
    cJSON_Delete(j);
  }
  char *line = malloc(len + 1);
  if (line == NULL)
    return 0;
  memcpy(line, text, len);
  line[len] = '\0';
  char addr[64];
  unsigned port, state;
  uint64_t inode;
  int rzero;
  triage_parse_net_line(line, data[0] & 1, addr, &port, &state, &inode, &rzero);
  free(line);
  return 0;
}
