/*
 * The record format shared by the process-event BPF program
 * (procev.bpf.c) and its reader (../ebpf.c). Every record starts with
 * ym_bpf_procev_t; an exec record is followed by args_len bytes of the
 * argument vector as the kernel laid it out (NUL-separated) and then
 * fname_len bytes of the executable name given to execve (without the NUL).
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

enum {
  YM_BPF_FORK = 1,
  YM_BPF_EXEC = 2,
  YM_BPF_EXIT = 3,
};

/* flags */
#define YM_BPF_ARGS_TRUNCATED 1u /* the vector was longer than YM_BPF_ARGS_MAX */
#define YM_BPF_ARGS_FAULT 2u     /* the vector could not be read */
#define YM_BPF_NO_LOGINUID 4u    /* the kernel has no login uid (no audit) */
#define YM_BPF_EXE_PARTIAL 8u    /* the program's path is incomplete */
#define YM_BPF_CWD_PARTIAL 16u   /* the working directory's path is incomplete */

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
  __u32 pad;
  __u64 ts_ns;          /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
  __u64 start_boottime; /* the task's start_boottime, as /proc/PID/stat's start time */
} ym_bpf_procev_t;

/* Index of the drop counter in the per-CPU "drops" array. */
#define YM_BPF_DROPS_SLOT 0

#endif
