/* libFuzzer harness: the typed configuration parser on arbitrary bytes. */
#include "yamori/config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  bool b;
  long long i;
  char *s;
  ym_strlist_t l;
  int e;
} fz_conf_t;

static const char *const choices[] = {"off", "detect", "block", NULL};

static const ym_cfg_field_t table[] = {
    {"flag", YM_CFG_BOOL, 0, 0, "false", offsetof(fz_conf_t, b), NULL, NULL, ""},
    {"a.b.num", YM_CFG_INT, -5, 1000, "1", offsetof(fz_conf_t, i), NULL, NULL, ""},
    {"a.name", YM_CFG_STRING, 0, 64, "\"x\"", offsetof(fz_conf_t, s), NULL, NULL, ""},
    {"list", YM_CFG_STRLIST, 0, 8, "[]", offsetof(fz_conf_t, l), NULL, NULL, ""},
    {"mode", YM_CFG_ENUM, 0, 0, "\"detect\"", offsetof(fz_conf_t, e), choices, NULL, ""},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_conf_t c;
  ym_cfg_error_t err;
  memset(&c, 0, sizeof(c));
  if (ym_config_parse(table, sizeof(table) / sizeof(table[0]), &c, (const char *)data, size,
                      &err) == 0)
    ym_config_free(table, sizeof(table) / sizeof(table[0]), &c);
  return 0;
}
