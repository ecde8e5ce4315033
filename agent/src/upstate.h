/*
 * The update state file, shared by the launcher and the agent:
 * <update dir>/state.json (docs/update.md, "State machine").
 *
 *   {"active": "0.1.0", "previous": "0.0.9", "pending": "0.2.0",
 *    "pending_serial": 7, "attempts": 1, "trial_started": 1764125000,
 *    "failed": "0.1.5", "failed_serial": 6, "reason": "no healthy check-in within 60 s"}
 *
 * Writers never overlap by design: the agent writes it while it runs (to
 * make a version pending, or to commit itself after a healthy check-in);
 * the launcher writes it only while no agent runs (before starting a trial,
 * after the agent has exited). Every write goes to a temporary file that is
 * fsync'd and renamed over state.json, then the directory is fsync'd: a
 * crash leaves the old or the new state, never a mix.
 */
#ifndef YAMORI_AGENT_UPSTATE_H
#define YAMORI_AGENT_UPSTATE_H

#include <stdint.h>

typedef struct {
  char active[64];   /* the committed version */
  char previous[64]; /* the committed version before it ("" none) */
  char pending[64];  /* a version on trial or waiting for one ("" none) */
  uint64_t pending_serial;
  unsigned attempts;     /* starts of the pending version so far */
  int64_t trial_started; /* unix seconds of the trial's first start */
  char failed[64];       /* the last version refused or rolled back ("" none) */
  uint64_t failed_serial;
  char reason[160];
} upstate_t;

/* Reads dir/state.json into st (zeroed first). Returns 0, YM_ENOENT (no
 * file yet) or YM_EPARSE / YM_EIO. */
int upstate_load(const char *dir, upstate_t *st);

/* Writes st to dir/state.json atomically (see above). Returns 0 or YM_E*. */
int upstate_save(const char *dir, const upstate_t *st);

/* Compares two version strings: dot-separated numbers numerically, other
 * parts as text. Returns <0, 0 or >0. */
int upstate_version_cmp(const char *a, const char *b);

#endif
