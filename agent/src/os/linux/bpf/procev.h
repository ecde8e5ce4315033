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
  YM_BPF_NET = 5, /* a TCP socket changed state: ym_bpf_netev_t */
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

/*
 * A TCP connection event, from the sock:inet_sock_set_state tracepoint.
 * The first field is kind (YM_BPF_NET), as in ym_bpf_procev_t, so that the
 * reader can tell the two records apart.
 *
 * The acting process: for CONNECT and CONNECT_FAILED the one that called
 * connect() (remembered when the socket entered SYN_SENT, which runs in
 * its context); for LISTEN the one that called listen(); for ACCEPT the
 * one that put the listening socket on that port into LISTEN (the state
 * change itself runs in the kernel's receive path); for CLOSE the one the
 * connection was attributed to when it was established. pid 0: unknown
 * (YM_BPF_NET_NO_PID).
 */
enum {
  YM_BPF_NET_CONNECT = 1,        /* SYN_SENT -> ESTABLISHED */
  YM_BPF_NET_CONNECT_FAILED = 2, /* SYN_SENT -> CLOSE (refused, reset, timed out) */
  YM_BPF_NET_ACCEPT = 3,         /* SYN_RECV -> ESTABLISHED */
  YM_BPF_NET_LISTEN = 4,         /* -> LISTEN */
  YM_BPF_NET_CLOSE = 5,          /* an established connection -> CLOSE */
};

/* net flags */
#define YM_BPF_NET_NO_PID 1u   /* the acting process is unknown */
#define YM_BPF_NET_INGRESS 2u  /* the peer opened the connection */
#define YM_BPF_NET_NO_BYTES 4u /* the byte counters could not be read */

typedef struct {
  __u32 kind; /* YM_BPF_NET */
  __u32 pid;  /* thread-group id, 0 unknown */
  __u32 action;
  __u32 flags;
  __u16 family; /* AF_INET or AF_INET6 */
  __u16 lport;  /* local port, host order */
  __u16 rport;  /* remote port, host order */
  __u16 pad;
  __u8 laddr[16]; /* IPv4: the first 4 bytes */
  __u8 raddr[16];
  __u64 bytes_sent;     /* CLOSE: data bytes sent (retransmissions not counted) */
  __u64 bytes_received; /* CLOSE: data bytes received */
  __u64 ts_ns;          /* bpf_ktime_get_ns() */
} ym_bpf_netev_t;

/* Connections and listening sockets remembered for attribution. */
#define YM_BPF_NET_SOCKS 65536
#define YM_BPF_NET_LISTENERS 4096

/* Records are queued without waking the reader until this many bytes wait;
 * the reader drains the ring on a timer as well. */
#define YM_BPF_WAKE_BYTES (64 * 1024)
#define YM_BPF_DRAIN_MS 20

/* Index of the drop counter in the per-CPU "drops" array. */
#define YM_BPF_DROPS_SLOT 0

#endif
