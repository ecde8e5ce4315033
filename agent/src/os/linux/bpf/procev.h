/*
 * The record format shared by the process-event BPF program
 * (procev.bpf.c) and its reader (../ebpf.c). Every record starts with
 * ym_bpf_procev_t; an exec record is followed by
 *   args_len bytes:  the argument vector as the kernel laid it out
 *                    (NUL-separated);
 *   exe_len bytes:   the path of the program file, and
 *   cwd_len bytes:   the path of the working directory, each as its
 *                    components from the last to the first, every one
 *                    followed by a NUL ("true\0bin\0usr\0" is /usr/bin/true;
 *                    nothing is /);
 *   env_len bytes:   the bindings of the watched environment variables
 *                    (LD_PRELOAD, LD_LIBRARY_PATH) that are set, each
 *                    followed by a NUL;
 *   fname_len bytes: the program name given to execve (without the NUL).
 *
 * Both sides include this file: the BPF side after vmlinux.h, user space
 * after <linux/types.h>.
 */
#ifndef YAMORI_BPF_PROCEV_H
#define YAMORI_BPF_PROCEV_H

/* Bytes of the argument vector and of the executable name kept per exec. */
#define YM_BPF_ARGS_MAX 16384
#define YM_BPF_FNAME_MAX 4096
/* Bytes of a path (its reversed components), and components walked. */
#define YM_BPF_PATH_MAX 4096
#define YM_BPF_PATH_DEPTH 64
/* Bytes of watched environment bindings kept, and environment strings
 * looked at, per exec. */
#define YM_BPF_ENV_MAX 2048
#define YM_BPF_ENV_SCAN 256
#define YM_BPF_ENV_STR_MAX 4096

enum {
  YM_BPF_FORK = 1,
  YM_BPF_EXEC = 2,
  YM_BPF_EXIT = 3,
  YM_BPF_UID = 4, /* a set*uid() call succeeded: uid and euid are the new ones */
};

/* flags */
#define YM_BPF_ARGS_TRUNCATED 1u /* the vector was longer than YM_BPF_ARGS_MAX */
#define YM_BPF_ARGS_FAULT 2u     /* the vector could not be read */
#define YM_BPF_NO_LOGINUID 4u    /* the kernel has no login uid (no audit) */
#define YM_BPF_EXE_PARTIAL 8u    /* the program's path is incomplete */
#define YM_BPF_CWD_PARTIAL 16u   /* the working directory's path is incomplete */
#define YM_BPF_ENV_PARTIAL 32u   /* not every environment string was looked at */

typedef struct {
  __u32 kind;
  __u32 pid;  /* thread-group id (the child's for a fork) */
  __u32 ppid; /* parent's thread-group id */
  __u32 uid;
  __u32 euid;
  __u32 gid;
  __u32 egid;
  __u32 loginuid;
  __u32 sessionid;
  __s32 exit_code; /* EXIT: status as wait() reports it */
  __u32 flags;
  __u32 args_len;
  __u32 fname_len;
  __u32 exe_len;
  __u32 cwd_len;
  __u32 env_len;
  __u64 ts_ns;          /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
  __u64 start_boottime; /* the task's start_boottime, as /proc/PID/stat's start time */
} ym_bpf_procev_t;

/* Records are queued without waking the reader until this many bytes wait;
 * the reader drains the ring on a timer as well. */
#define YM_BPF_WAKE_BYTES (64 * 1024)
#define YM_BPF_DRAIN_MS 20

/* Index of the drop counter in the per-CPU "drops" array. */
#define YM_BPF_DROPS_SLOT 0

#endif
