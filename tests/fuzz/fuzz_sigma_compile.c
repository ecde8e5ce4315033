/*
 * The console's Sigma compiler (console/src/sigma_compile.c): arbitrary
 * bytes as a rule file; what compiles must load in the agent's evaluator.
 */
#include "sigma.h"
#include "sigma_compile.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sigma_compiler_t *c = sigma_compiler_new(0);
  if (c == NULL)
    return 0;
  (void)sigma_compile_text(c, "fuzz.yml", (const char *)data, size);
  if (sigma_compiler_accepted(c) > 0) {
    char *json = sigma_compiler_output(c);
    if (json != NULL) {
      sigma_ruleset_t *rs = NULL;
      char err[256];
      /* The compiler's output is always loadable. */
      if (sigma_ruleset_load(json, strlen(json), &rs, err, sizeof err) != 0)
        abort();
      sigma_ruleset_free(rs);
      free(json);
    }
  }
  sigma_compiler_free(c);
  return 0;
}
