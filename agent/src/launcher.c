/*
 * yamori-launcher: starts the active agent version and rolls back a new
 * version that does not prove itself healthy (docs/update.md).
 *
 * systemd starts the launcher; the launcher runs
 * <versions dir>/<version>/bin/yamorid with the arguments given after
 * "--", and forwards SIGTERM, SIGINT and SIGHUP to it. Which version runs
 * is decided by <update dir>/state.json (upstate.h):
 *  - no pending version: the active one runs; when it exits it is started
 *    again (1 s, doubling to 30 s between starts);
 *  - a pending version: it runs "on trial". The agent commits it (writes
 *    it as active) after its first healthy check-in. If it exits
 *    max-starts times, or has not committed within the window after its
 *    first start, the launcher stops it, records the failure (failed,
 *    reason) and clears pending: the active version runs again and reports
 *    the failure at its next check-in.
 * The agent asks for a switch by writing a pending version and sending the
 * launcher SIGUSR1; the launcher then stops the agent and starts the
 * pending version. The child gets SIGTERM if the launcher dies
 * (PR_SET_PDEATHSIG), so two agents never run at once.
 *
 * The launcher is small on purpose (no libuv, no libyara): it changes only
 * with the installer.
 */
#include "upstate.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MAX_S 30
#define STOP_GRACE_S 10

typedef struct {
  const char *versions_dir;
  const char *update_dir;
  long window_s;
  long max_starts;
  char **child_args; /* after "--" */
  int n_child_args;
} opts_t;

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool version_runnable(const opts_t *o, const char *v) {
  char path[2200];
  snprintf(path, sizeof(path), "%s/%s/bin/yamorid", o->versions_dir, v);
  struct stat st;
  return v[0] != '\0' && stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0100);
}

/* First start after installation: the highest installed version. */
static int initial_state(const opts_t *o, upstate_t *st) {
  DIR *d = opendir(o->versions_dir);
  if (d == NULL)
    return ym_err_from_errno(errno);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(st->active) ||
        !version_runnable(o, de->d_name))
      continue;
    if (st->active[0] == '\0' || upstate_version_cmp(de->d_name, st->active) > 0)
      memcpy(st->active, de->d_name, strlen(de->d_name) + 1);
  }
  closedir(d);
  return st->active[0] ? upstate_save(o->update_dir, st) : YM_ENOENT;
}

static void rollback(const opts_t *o, upstate_t *st, const char *reason) {
  ym_log(YM_LOG_WARN, 0, "rolling back from %s to %s: %s", st->pending, st->active, reason);
  snprintf(st->failed, sizeof(st->failed), "%s", st->pending);
  st->failed_serial = st->pending_serial;
  snprintf(st->reason, sizeof(st->reason), "%s", reason);
  st->pending[0] = '\0';
  st->pending_serial = 0;
  st->attempts = 0;
  st->trial_started = 0;
  int rc = upstate_save(o->update_dir, st);
  if (rc != 0)
    ym_log(YM_LOG_ERROR, rc, "cannot write the update state in %s", o->update_dir);
}

/* Decides which version to start: fills version and *trial. Returns 0 or
 * a negative code when nothing can run. */
static int choose(const opts_t *o, char version[64], bool *trial) {
  upstate_t st;
  int rc = upstate_load(o->update_dir, &st);
  if (rc == YM_ENOENT || (rc == 0 && st.active[0] == '\0'))
    rc = initial_state(o, &st);
  if (rc != 0)
    return rc;
  *trial = false;
  if (st.pending[0] != '\0' && strcmp(st.pending, st.active) != 0) {
    char why[160];
    int64_t now = (int64_t)time(NULL);
    if (!version_runnable(o, st.pending)) {
      rollback(o, &st, "the version's program is missing");
    } else if (st.attempts >= (unsigned)o->max_starts) {
      snprintf(why, sizeof(why), "exited %u times at start", st.attempts);
      rollback(o, &st, why);
    } else if (st.trial_started > 0 && now - st.trial_started >= o->window_s) {
      snprintf(why, sizeof(why), "no healthy check-in within %ld s", o->window_s);
      rollback(o, &st, why);
    } else {
      st.attempts++;
      if (st.trial_started == 0)
        st.trial_started = now;
      if ((rc = upstate_save(o->update_dir, &st)) != 0)
        return rc;
      snprintf(version, 64, "%s", st.pending);
      *trial = true;
      return 0;
    }
  } else if (st.pending[0] != '\0') {
    st.pending[0] = '\0'; /* pending equals active: nothing to try */
    upstate_save(o->update_dir, &st);
  }
  if (!version_runnable(o, st.active) && version_runnable(o, st.previous)) {
    ym_log(YM_LOG_ERROR, 0, "active version %s cannot run; starting %s", st.active, st.previous);
    snprintf(version, 64, "%s", st.previous);
    return 0;
  }
  snprintf(version, 64, "%s", st.active);
  return 0;
}

static pid_t start(const opts_t *o, const char *version, bool trial, const sigset_t *orig) {
  char path[2200], ppid[32];
  snprintf(path, sizeof(path), "%s/%s/bin/yamorid", o->versions_dir, version);
  snprintf(ppid, sizeof(ppid), "%ld", (long)getpid());
  pid_t launcher = getpid();
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  /* Child: dies with the launcher, gets the signals back, learns who it is. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != launcher)
    _exit(1);
  sigprocmask(SIG_SETMASK, orig, NULL);
  setenv("YAMORI_LAUNCHER_PID", ppid, 1);
  setenv("YAMORI_VERSION", version, 1);
  setenv("YAMORI_VERSIONS_DIR", o->versions_dir, 1);
  setenv("YAMORI_UPDATE_DIR", o->update_dir, 1);
  if (trial)
    setenv("YAMORI_TRIAL", "1", 1);
  else
    unsetenv("YAMORI_TRIAL");
  char **argv = calloc((size_t)o->n_child_args + 2, sizeof(char *));
  if (argv == NULL)
    _exit(1);
  argv[0] = path;
  for (int i = 0; i < o->n_child_args; i++)
    argv[i + 1] = o->child_args[i];
  execv(path, argv);
  _exit(127);
}

static void usage(FILE *f) {
  fputs("Usage: yamori-launcher [OPTIONS] [-- AGENT-ARGS...]\n"
        "\n"
        "Runs the active Yamori agent version and rolls back failed updates.\n"
        "\n"
        "  --versions-dir DIR  versions (default /opt/yamori/versions; env YAMORI_VERSIONS_DIR)\n"
        "  --update-dir DIR    update state (default /var/lib/yamori/update; env\n"
        "                      YAMORI_UPDATE_DIR)\n"
        "  --window SECONDS    time a new version has to check in healthy (default 60;\n"
        "                      env YAMORI_UPDATE_WINDOW)\n"
        "  --max-starts N      starts of a new version before it is rolled back (default 3)\n"
        "  -h, --help          show this help\n",
        f);
}

static int parse(int argc, char **argv, opts_t *o) {
  static const struct option longopts[] = {{"versions-dir", required_argument, NULL, 'v'},
                                           {"update-dir", required_argument, NULL, 'u'},
                                           {"window", required_argument, NULL, 'w'},
                                           {"max-starts", required_argument, NULL, 'm'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  const char *e;
  o->versions_dir = (e = getenv("YAMORI_VERSIONS_DIR")) ? e : "/opt/yamori/versions";
  o->update_dir = (e = getenv("YAMORI_UPDATE_DIR")) ? e : "/var/lib/yamori/update";
  o->window_s = (e = getenv("YAMORI_UPDATE_WINDOW")) ? strtol(e, NULL, 10) : 60;
  o->max_starts = 3;
  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'v':
      o->versions_dir = optarg;
      break;
    case 'u':
      o->update_dir = optarg;
      break;
    case 'w':
      o->window_s = strtol(optarg, NULL, 10);
      break;
    case 'm':
      o->max_starts = strtol(optarg, NULL, 10);
      break;
    case 'h':
      usage(stdout);
      exit(0);
    default:
      usage(stderr);
      return 64;
    }
  }
  if (o->window_s < 1 || o->window_s > 86400 || o->max_starts < 1 || o->max_starts > 100) {
    fprintf(stderr, "yamori-launcher: --window is 1..86400 s, --max-starts 1..100\n");
    return 64;
  }
  o->child_args = argv + optind;
  o->n_child_args = argc - optind;
  return 0;
}

int main(int argc, char **argv) {
  opts_t o;
  int rc = parse(argc, argv, &o);
  if (rc != 0)
    return rc;
  ym_log_init("yamori-launcher", YM_LOG_INFO);
  mkdir(o.update_dir, 0700);
  sigset_t set, orig;
  sigemptyset(&set);
  int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1};
  for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
    sigaddset(&set, sigs[i]);
  sigprocmask(SIG_BLOCK, &set, &orig);

  pid_t child = 0;
  char version[64] = "";
  bool trial = false, stopping = false, switching = false;
  char rollback_reason[160] = "";
  double next_start = 0, started_at = 0, kill_at = 0;
  unsigned backoff = 1;
  for (;;) {
    double now = mono();
    if (child == 0) {
      if (stopping)
        return 0;
      if (now >= next_start) {
        if ((rc = choose(&o, version, &trial)) != 0) {
          ym_log(YM_LOG_ERROR, rc, "no agent version to run in %s", o.versions_dir);
          next_start = now + BACKOFF_MAX_S;
        } else {
          ym_log(YM_LOG_NOTICE, 0, "starting version %s%s", version, trial ? " (on trial)" : "");
          child = start(&o, version, trial, &orig);
          if (child < 0) {
            ym_log(YM_LOG_ERROR, errno, "fork");
            child = 0;
            next_start = now + 1;
          }
          started_at = now;
          kill_at = 0;
        }
      }
    }
    struct timespec ts = {0, 250 * 1000 * 1000};
    siginfo_t si;
    int sig = sigtimedwait(&set, &si, &ts);
    now = mono();
    if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
      stopping = true;
      if (child > 0) {
        kill(child, sig);
        kill_at = now + STOP_GRACE_S * 2;
      }
    } else if (sig == SIGHUP && child > 0) {
      kill(child, SIGHUP);
    } else if (sig == SIGUSR1 && child > 0 && !trial && !stopping && !switching) {
      upstate_t st;
      if (upstate_load(o.update_dir, &st) == 0 && st.pending[0] != '\0' &&
          strcmp(st.pending, version) != 0) {
        ym_log(YM_LOG_NOTICE, 0, "switching from %s to %s", version, st.pending);
        switching = true;
        kill(child, SIGTERM);
        kill_at = now + STOP_GRACE_S;
      }
    }
    /* A trial ends well when the agent committed it, badly when its window
     * has passed. */
    if (child > 0 && trial && !stopping && !switching && rollback_reason[0] == '\0') {
      upstate_t st;
      if (upstate_load(o.update_dir, &st) == 0) {
        if (strcmp(st.active, version) == 0) {
          ym_log(YM_LOG_NOTICE, 0, "version %s committed", version);
          trial = false;
          backoff = 1;
        } else if (st.trial_started > 0 && (int64_t)time(NULL) - st.trial_started >= o.window_s) {
          snprintf(rollback_reason, sizeof(rollback_reason), "no healthy check-in within %ld s",
                   o.window_s);
          kill(child, SIGTERM);
          kill_at = now + 5;
        }
      }
    }
    if (child > 0 && kill_at > 0 && now >= kill_at) {
      kill(child, SIGKILL);
      kill_at = now + 3600;
    }
    int status;
    if (child > 0 && waitpid(child, &status, WNOHANG) == child) {
      child = 0;
      kill_at = 0;
      if (stopping)
        continue;
      upstate_t st;
      bool loaded = upstate_load(o.update_dir, &st) == 0;
      bool committed = loaded && strcmp(st.active, version) == 0;
      if (WIFSIGNALED(status))
        ym_log(YM_LOG_WARN, 0, "version %s ended by signal %d", version, WTERMSIG(status));
      else
        ym_log(YM_LOG_WARN, 0, "version %s exited with status %d", version, WEXITSTATUS(status));
      if (trial && rollback_reason[0] != '\0' && loaded && !committed) {
        rollback(&o, &st, rollback_reason);
        next_start = now;
      } else if (switching) {
        next_start = now;
      } else if (trial && !committed) {
        next_start = now + 1; /* choose() counts the attempts */
      } else {
        if (now - started_at > 60)
          backoff = 1;
        next_start = now + backoff;
        backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
      }
      rollback_reason[0] = '\0';
      switching = false;
      trial = false;
    }
  }
}
