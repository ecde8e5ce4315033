/*
 * On-demand scans of files and directory trees.
 *
 * A walk runs on a thread of its own: it opens every regular file below
 * the given paths (never following symlinks, not descending into /proc,
 * /sys, /dev or /run), submits each to the scanner and keeps at most a
 * bounded number in flight. Each result goes to result_cb on a scanner
 * thread (the callback owns the request); finished_cb runs once, after the
 * last result, on whichever thread delivered it.
 */
#ifndef YAMORI_AGENT_SCANWALK_H
#define YAMORI_AGENT_SCANWALK_H

#include "scanner.h"

typedef void (*scanwalk_result_cb)(scan_req_t *r, void *data);
typedef void (*scanwalk_finished_cb)(void *data, uint64_t files, uint64_t open_errors);

typedef struct scanwalk scanwalk_t;

/* Starts walking paths (copied). Returns 0 or an error (no callback then). */
int scanwalk_start(scanner_t *sc, const char *const *paths, size_t n, scan_prio_t prio,
                   scanwalk_result_cb result_cb, scanwalk_finished_cb finished_cb, void *data,
                   scanwalk_t **out);
/* Asks the walk to stop submitting; results already queued still arrive. */
void scanwalk_cancel(scanwalk_t *w);
/* Waits for the walking thread to end and frees the walk. Call after
 * finished_cb has run (or from it is not allowed: use another thread). */
void scanwalk_free(scanwalk_t *w);

#endif
