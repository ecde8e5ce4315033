/*
 * Workload driver for the sensor benchmarks (bench/file_storm.py and
 * bench/exec_storm.py compile it on the fly with gcc -O2).
 *
 *   storm DIR COUNT
 *       File storm: for each of COUNT files in DIR, open(O_CREAT|O_WRONLY),
 *       write 4096 bytes, close, unlink. One file at a time, so that every
 *       file produces a creation, a modification and a deletion.
 *
 *   storm --exec PROGRAM COUNT PIDFILE
 *       Exec storm: COUNT times fork, execve(PROGRAM) in the child and
 *       waitpid in this process. The child pids are written to PIDFILE (one
 *       a line) after the timed loop.
 *
 * Both print "pid=<own pid> elapsed_ns=<wall time of the loop>" on stdout
 * and exit 0, or print a message on stderr and exit 1 on the first error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long parse_count(const char *s) {
  char *end = NULL;
  errno = 0;
  long n = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || n <= 0 || n > 100000000L) {
    fprintf(stderr, "storm: bad count '%s'\n", s);
    exit(1);
  }
  return n;
}

static int file_storm(const char *dir, long count) {
  static char data[4096];
  char path[4096];
  memset(data, 'y', sizeof(data));
  long long t0 = now_ns();
  for (long i = 0; i < count; i++) {
    snprintf(path, sizeof(path), "%s/f%08ld.dat", dir, i);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      fprintf(stderr, "storm: open %s: %s\n", path, strerror(errno));
      return 1;
    }
    if (write(fd, data, sizeof(data)) != (ssize_t)sizeof(data)) {
      fprintf(stderr, "storm: write %s: %s\n", path, strerror(errno));
      close(fd);
      return 1;
    }
    if (close(fd) != 0 || unlink(path) != 0) {
      fprintf(stderr, "storm: close/unlink %s: %s\n", path, strerror(errno));
      return 1;
    }
  }
  long long t1 = now_ns();
  printf("pid=%ld elapsed_ns=%lld\n", (long)getpid(), t1 - t0);
  return 0;
}

static int exec_storm(const char *prog, long count, const char *pidfile) {
  pid_t *pids = calloc((size_t)count, sizeof(*pids));
  if (pids == NULL) {
    fprintf(stderr, "storm: out of memory\n");
    return 1;
  }
  char *argv[] = {(char *)prog, NULL};
  long long t0 = now_ns();
  for (long i = 0; i < count; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "storm: fork: %s\n", strerror(errno));
      free(pids);
      return 1;
    }
    if (pid == 0) {
      execve(prog, argv, environ);
      _exit(127);
    }
    pids[i] = pid;
    int status;
    while (waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) {
        fprintf(stderr, "storm: waitpid: %s\n", strerror(errno));
        free(pids);
        return 1;
      }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "storm: %s did not exit 0 (status 0x%x)\n", prog, (unsigned)status);
      free(pids);
      return 1;
    }
  }
  long long t1 = now_ns();
  FILE *f = fopen(pidfile, "w");
  if (f == NULL) {
    fprintf(stderr, "storm: %s: %s\n", pidfile, strerror(errno));
    free(pids);
    return 1;
  }
  for (long i = 0; i < count; i++)
    fprintf(f, "%ld\n", (long)pids[i]);
  int rc = fclose(f) == 0 ? 0 : 1;
  free(pids);
  printf("pid=%ld elapsed_ns=%lld\n", (long)getpid(), t1 - t0);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 3)
    return file_storm(argv[1], parse_count(argv[2]));
  if (argc == 5 && strcmp(argv[1], "--exec") == 0)
    return exec_storm(argv[2], parse_count(argv[3]), argv[4]);
  fprintf(stderr, "usage: storm DIR COUNT | storm --exec PROGRAM COUNT PIDFILE\n");
  return 2;
}
