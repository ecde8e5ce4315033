/*
 * Remote updates of the agent and its rules (docs/update.md).
 *
 * A loop-thread module fed by the uplink's check-in answers:
 *  - "release": a signed manifest the console wants this PC to run. Unless
 *    it is the running version, a version already pending, or one that
 *    failed before, the manifest is verified (trusted keys, product,
 *    platform, architecture, expiry, size, serial above every accepted
 *    one), the package is downloaded into update_dir/download/<serial>.part
 *    (resumed with Range after an interruption, never more than the
 *    manifest's size), hashed, unpacked into
 *    versions_dir/.staging-<version> and renamed to versions_dir/<version>,
 *    then made pending in the state file; the launcher (its parent) is told
 *    with SIGUSR1 and starts it on trial.
 *  - A version on trial (YAMORI_TRIAL=1 from the launcher) commits itself
 *    after its first successful check-in.
 *  - "rules": signed bundles of YARA source, "default" (every tenant) and
 *    "tenant" (the tenant's own rules on top). Verified the same way, and
 *    signed for this PC's company (the identity's tenant) or for all,
 *    unpacked under state_dir/rules-bundles/, compiled off the loop with
 *    the other active bundles, and swapped in only when they compile;
 *    otherwise refused and the previous rules keep scanning.
 * Every refusal has a reason (a short word, e.g. "bad_signature") that is
 * reported in the check-in member "update" and at once with
 * POST /api/v1/update/report.
 */
#ifndef YAMORI_AGENT_UPDATE_H
#define YAMORI_AGENT_UPDATE_H

#include "agent.h"

#include <cjson/cJSON.h>

typedef struct update update_t;

/* Loads the trusted keys and the update state, removes what an interrupted
 * update left, and hooks into the uplink (when there is one). Sets
 * a->rules_dirs when rules bundles are active, so the detector compiles
 * those. Returns 0 or YM_ENOMEM; a missing key directory only disables
 * updates (logged). */
int update_new(agent_t *a, update_t **out);

/* Closes the module after the uplink was freed (no more callbacks); work
 * still running on the thread pool finishes first, then the memory goes.
 * update_free(NULL) does nothing. */
void update_free(update_t *u);

/* Adds the member "update" (running, pending, failed, reason, serial,
 * platform, architecture, rules) to the check-in status object j. */
void update_status_json(update_t *u, cJSON *j);

#endif
