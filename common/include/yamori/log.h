/*
 * Logging for the top layer of each program (library-like code returns
 * error codes and does not log).
 *
 * One call shape: ym_log(YM_LOG_WARN, errno, "open %s", path) prints the
 * message and, when errnum is not 0, ": <strerror(errnum)>". Negative
 * errnum values are taken as YM_E* codes and printed with ym_strerror().
 *
 * Output goes to stderr. When stderr is connected to the systemd journal
 * (JOURNAL_STREAM matches stderr) each line starts with a "<N>" syslog
 * priority prefix so the journal records the level; otherwise lines carry a
 * timestamp and the level name.
 *
 * Repeats are rate-limited per call site (format string): after
 * YM_LOG_BURST lines within YM_LOG_WINDOW_S seconds further lines from the
 * same site are counted and a single "suppressed N similar messages" line is
 * printed when the window ends. Thread-safe.
 */
#ifndef YAMORI_LOG_H
#define YAMORI_LOG_H

#include <stdio.h>

typedef enum {
  YM_LOG_ERROR = 3,
  YM_LOG_WARN = 4,
  YM_LOG_NOTICE = 5,
  YM_LOG_INFO = 6,
  YM_LOG_DEBUG = 7
} ym_log_level_t;

#define YM_LOG_BURST 5
#define YM_LOG_WINDOW_S 10

/* Sets the program name printed with each line and the highest level that is
 * printed. May be called again (SIGHUP reloads). */
void ym_log_init(const char *progname, ym_log_level_t max_level);

/* Redirects output to f (tests); NULL restores stderr. */
void ym_log_set_stream(FILE *f);

/* Parses "error", "warn", "notice", "info" or "debug". Returns 0 and sets
 * *out, or YM_EINVAL. */
int ym_log_level_parse(const char *s, ym_log_level_t *out);

void ym_log(ym_log_level_t level, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
