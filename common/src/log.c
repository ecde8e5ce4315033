#include "yamori/log.h"

#include "yamori/err.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Rate-limit slots, keyed by the call site's format string pointer. A small
 * direct-mapped table is enough: collisions only make limiting coarser. */
#define SLOTS 64

typedef struct {
  const char *site;
  time_t window_start;
  unsigned printed;
  unsigned suppressed;
} slot_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *prog = "yamori";
static ym_log_level_t max_level = YM_LOG_INFO;
static FILE *stream;
static int journal = -1; /* -1 unknown, 0 no, 1 yes */
static slot_t slots[SLOTS];

static const char *level_name(ym_log_level_t l) {
  switch (l) {
  case YM_LOG_ERROR:
    return "error";
  case YM_LOG_WARN:
    return "warn";
  case YM_LOG_NOTICE:
    return "notice";
  case YM_LOG_INFO:
    return "info";
  default:
    return "debug";
  }
}

/* The journal sets JOURNAL_STREAM=<dev>:<ino> for the stream it owns. */
static int stderr_is_journal(void) {
  const char *js = getenv("JOURNAL_STREAM");
  struct stat st;
  unsigned long long dev, ino;
  if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
    return 0;
  if (fstat(STDERR_FILENO, &st) != 0)
    return 0;
  return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void ym_log_init(const char *progname, ym_log_level_t level) {
  pthread_mutex_lock(&lock);
  prog = progname;
  max_level = level;
  journal = stderr_is_journal();
  pthread_mutex_unlock(&lock);
}

void ym_log_set_stream(FILE *f) {
  pthread_mutex_lock(&lock);
  stream = f;
  pthread_mutex_unlock(&lock);
}

int ym_log_level_parse(const char *s, ym_log_level_t *out) {
  static const struct {
    const char *name;
    ym_log_level_t level;
  } names[] = {{"error", YM_LOG_ERROR},
               {"warn", YM_LOG_WARN},
               {"notice", YM_LOG_NOTICE},
               {"info", YM_LOG_INFO},
               {"debug", YM_LOG_DEBUG}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (strcmp(s, names[i].name) == 0) {
      *out = names[i].level;
      return 0;
    }
  }
  return YM_EINVAL;
}

static void emit_prefix(FILE *f, ym_log_level_t level) {
  if (journal == 1) {
    fprintf(f, "<%d>", (int)level);
    return;
  }
  struct timespec ts;
  struct tm tm;
  char when[32];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(f, "%s.%03ldZ %s[%ld] %s: ", when, ts.tv_nsec / 1000000L, prog, (long)getpid(),
          level_name(level));
}

void ym_log(ym_log_level_t level, int errnum, const char *fmt, ...) {
  if (level > max_level)
    return;

  pthread_mutex_lock(&lock);
  if (journal < 0)
    journal = stderr_is_journal();
  FILE *f = stream ? stream : stderr;
  time_t now = time(NULL);
  slot_t *s = &slots[((uintptr_t)fmt >> 3) % SLOTS];
  if (s->site != fmt || now - s->window_start >= YM_LOG_WINDOW_S) {
    if (s->site != NULL && s->suppressed > 0) {
      emit_prefix(f, YM_LOG_NOTICE);
      fprintf(f, "suppressed %u similar messages\n", s->suppressed);
    }
    s->site = fmt;
    s->window_start = now;
    s->printed = 0;
    s->suppressed = 0;
  }
  if (s->printed >= YM_LOG_BURST) {
    s->suppressed++;
    pthread_mutex_unlock(&lock);
    return;
  }
  s->printed++;

  va_list ap;
  va_start(ap, fmt);
  emit_prefix(f, level);
  vfprintf(f, fmt, ap);
  va_end(ap);
  if (errnum > 0)
    fprintf(f, ": %s", strerror(errnum));
  else if (errnum < 0)
    fprintf(f, ": %s", ym_strerror(errnum));
  fputc('\n', f);
  fflush(f);
  pthread_mutex_unlock(&lock);
}
