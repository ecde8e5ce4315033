/*
 * The agent's platform interface.
 *
 * Everything that talks to a particular kernel lives behind these
 * declarations; the Linux implementations are in os/linux/. Sensor, event
 * and process-table logic above this line is platform-neutral: it sees
 * plain records (os_fsev_t, os_procev_t, os_proc_info_t), never fanotify or
 * netlink structures.
 *
 * All functions return 0 or a negative YM_E* code unless said otherwise.
 * Handles are driven by the caller's libuv loop and call their callbacks on
 * the loop thread.
 */
#ifndef YAMORI_AGENT_OS_H
#define YAMORI_AGENT_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define OS_PATH_MAX 4096
/* Bytes of watched environment bindings kept per program start. */
#define OS_ENV_MAX 2048

/* ------------------------------------------------------------------ */
/* Process information from the OS (/proc on Linux)                     */

typedef struct {
  int pid;
  int ppid;
  uint64_t start_ticks; /* process start, clock ticks since boot */
  uint32_t uid;         /* real user id */
  uint32_t euid;        /* effective user id */
  /* Known only from the eBPF source (ids_ok): real group id, login uid
   * (audit; loginuid_ok false when unset or not kept by the kernel) and
   * audit session id. */
  bool ids_ok;
  bool loginuid_ok;
  uint32_t gid;
  uint32_t loginuid;
  uint32_t sessionid;
  /* The bindings of LD_PRELOAD and LD_LIBRARY_PATH set at the exec, each
   * followed by a NUL (eBPF source only; env_len 0: none, or unknown). */
  size_t env_len;
  char env[OS_ENV_MAX];
  /* Not every environment string could be looked at (too many, one too
   * long, or the bindings over OS_ENV_MAX): env may lack a binding. */
  bool env_partial;
  char comm[32]; /* kernel's short name (may be truncated to 15 bytes) */

  bool exe_ok;      /* false: exe[] unknown */
  bool exe_deleted; /* the executable was deleted after start */
  size_t exe_len;
  char exe[OS_PATH_MAX + 1];

  bool cwd_ok;
  size_t cwd_len;
  char cwd[OS_PATH_MAX + 1];

  /* Arguments as read: NUL-separated, args_len bytes, argc items, cut to the
   * limits given to os_proc_read() (then args_truncated is set). NULL when
   * not read (args_ok false), which includes a command line that reads
   * empty: a process exiting or a zombie, or a kernel thread. Owned by the
   * struct: os_proc_info_free(). */
  bool args_ok;
  bool args_truncated;
  int argc;
  size_t args_len;
  char *args;
} os_proc_info_t;

/* Reads what the OS knows about pid. Fields that could not be read have
 * their *_ok flag false; returns YM_ENOENT when the process is gone (nothing
 * useful read), 0 otherwise (even when some parts are missing). At most
 * max_args arguments and max_args_bytes bytes of them are kept. */
int os_proc_read(int pid, size_t max_args, size_t max_args_bytes, os_proc_info_t *out);
void os_proc_info_free(os_proc_info_t *info);
/* Copies src into dst (dst owns its own copy of the arguments). */
int os_proc_info_copy(os_proc_info_t *dst, const os_proc_info_t *src);

/* Fills the args fields of out from an argument vector as the kernel lays
 * it out: buf holds avail bytes (avail <= max_bytes) and has room for one
 * more; more tells that the source had more than that. The kept arguments
 * follow the rules of os_proc_read(): at most max_args of them, an argument
 * cut by the byte limit is kept up to it, a final argument without its NUL
 * gets one when it fits. Takes ownership of buf (a malloc()ed block). */
void os_proc_args_keep(char *buf, size_t avail, bool more, size_t max_args, size_t max_bytes,
                       os_proc_info_t *out);

/* Reads only the parent pid and the start time (cheap; for fork events). */
int os_proc_read_stat(int pid, int *ppid, uint64_t *start_ticks);

/* True when the program process pid runs is the very file path names in
 * the agent's own view of the file system: same device and inode. A path
 * a process reports comes from its own mount namespace, where anybody may
 * bind another file over a system path; this tells the two apart. False
 * when either cannot be looked at. */
bool os_proc_runs_file(int pid, const char *path);

/* Calls cb once per process (thread-group leader) currently running.
 * Stops early and returns cb's value when it returns non-zero. */
int os_proc_list(int (*cb)(int pid, void *data), void *data);

/* Clock ticks per second (sysconf(_SC_CLK_TCK)). */
long os_clock_ticks(void);

/* Wall-clock time, in nanoseconds since the epoch, at which the machine
 * booted (so that start_ticks can be turned into a date). */
int64_t os_boot_time_ns(void);

/* The kernel's boot id (a UUID string, 36 characters). */
int os_boot_id(char out[40]);

/* ------------------------------------------------------------------ */
/* Process events (netlink proc connector on Linux)                     */

typedef enum {
  OS_PROCEV_FORK, /* a new process (thread-group leader) was created */
  OS_PROCEV_EXEC, /* pid replaced its program */
  OS_PROCEV_EXIT, /* pid (thread-group leader) exited */
  OS_PROCEV_UID,  /* pid changed its real/effective user id */
  OS_PROCEV_LOST  /* events were lost; see lost and lost_known */
} os_procev_kind_t;

typedef struct {
  os_procev_kind_t kind;
  int pid;         /* the process (the child for FORK) */
  int ppid;        /* FORK: the parent's tgid */
  uint64_t ts_ns;  /* kernel timestamp, CLOCK_MONOTONIC nanoseconds */
  int exit_code;   /* EXIT: exit status as wait() reports it */
  uint32_t uid;    /* UID: new real uid */
  uint32_t euid;   /* UID: new effective uid */
  uint64_t lost;   /* LOST: how many events (when lost_known) */
  bool lost_known; /* LOST: false when the kernel could not say (ENOBUFS) */
  /* FORK, EXEC: the process's start time in clock ticks since boot, as
   * os_proc_read() reports it; 0 when the source does not know it. */
  uint64_t start_ticks;
  /* EXEC: what the source recorded at the exec itself (the eBPF source);
   * valid during the callback. NULL: read it with os_proc_read(). */
  const os_proc_info_t *info;
} os_procev_t;

typedef struct os_procwatch os_procwatch_t;
typedef void (*os_procev_cb)(const os_procev_t *ev, void *data);

/* Opens the process event source with a receive buffer of rcvbuf bytes and
 * subscribes; events are delivered to cb from the loop once started.
 * Thread events (non-leader clone/exit) are filtered out. Lost events are
 * reported as OS_PROCEV_LOST: on a receive buffer overrun (count unknown),
 * and from gaps in the kernel's per-CPU sequence numbers (exact count). */
int os_procwatch_new(uv_loop_t *loop, size_t rcvbuf, os_procev_cb cb, void *data,
                     os_procwatch_t **out);
int os_procwatch_start(os_procwatch_t *w);
/* Unsubscribes and closes; the handle is freed once libuv has closed it. */
void os_procwatch_free(os_procwatch_t *w);
/* Handles the process events queued now, as the readable callback would
 * (a no-op when called from inside a delivery). */
void os_procwatch_drain(os_procwatch_t *w);

/* ------------------------------------------------------------------ */
/* Process events from eBPF programs at the kernel's scheduler          */
/* tracepoints (os/linux/ebpf.c)                                         */

/*
 * The same records as os_procwatch, delivered the same way, but complete:
 * every EXEC carries the program's argument vector, executable and users as
 * the kernel had them at the exec (os_procev_t.info), so a process that
 * ends at once still has them. The working directory is read from /proc as
 * soon as the event arrives (cwd_ok false when the process is gone). FORK
 * and EXEC carry the start time. UID events come where the kernel has
 * syscall tracepoints and tracefs is mounted (stats.uid_events). Events the
 * kernel could not queue are counted there and reported as OS_PROCEV_LOST
 * with the exact count.
 */
typedef struct os_bpfwatch os_bpfwatch_t;

/* A TCP connection event from the same eBPF programs (the
 * sock:inet_sock_set_state tracepoint). */
typedef enum {
  OS_NETEV_CONNECT = 1,    /* an outgoing connection was established */
  OS_NETEV_CONNECT_FAILED, /* an outgoing connection failed (refused, reset, timed out) */
  OS_NETEV_ACCEPT,         /* an incoming connection was established */
  OS_NETEV_LISTEN,         /* a socket started listening */
  OS_NETEV_CLOSE           /* an established connection closed */
} os_netev_kind_t;

typedef struct {
  os_netev_kind_t kind;
  /* The acting process (0: unknown). CONNECT: the one that called
   * connect(); LISTEN: listen(); ACCEPT: the one that made the listening
   * socket on that port listen; CLOSE: the connection's process. */
  int pid;
  bool ingress;      /* the peer opened the connection */
  int family;        /* AF_INET or AF_INET6 */
  uint8_t laddr[16]; /* network order; IPv4 in the first 4 bytes */
  uint8_t raddr[16];
  uint16_t lport, rport;
  bool bytes_ok;           /* CLOSE: the counters below were read */
  uint64_t bytes_sent;     /* CLOSE: data bytes sent (retransmissions not counted) */
  uint64_t bytes_received; /* CLOSE: data bytes received */
  uint64_t ts_ns;          /* CLOCK_MONOTONIC nanoseconds */
} os_netev_t;

typedef void (*os_netev_cb)(const os_netev_t *ev, void *data);

typedef struct {
  size_t max_args;       /* arguments kept per exec */
  size_t max_args_bytes; /* bytes of arguments kept per exec */
  int self_pid;          /* events of this process are not reported */
  /* TCP connection events go to net_cb (with the callback's data); NULL:
   * the connection program is not attached. */
  os_netev_cb net_cb;
} os_bpfwatch_opts_t;

typedef struct {
  uint64_t events;     /* records read */
  uint64_t lost;       /* records the kernel could not queue */
  uint64_t truncated;  /* execs whose argument vector was cut in the kernel */
  bool uid_events;     /* user id changes are followed (syscall tracepoints) */
  uint64_t net_events; /* TCP connection records read */
  bool net;            /* the TCP connection program is attached */
  char net_why[96];    /* why it is not ("" when it is) */
} os_bpfwatch_stats_t;

/* Loads and attaches the programs. On failure returns the error and writes
 * why it failed (for the log and status) into why; YM_ENOTSUP when the
 * agent was built without the eBPF sensor. When the environment variable
 * YAMORI_TEST_DENY_BPF is set to 1 the load is refused with YM_EPERM, as a
 * kernel that forbids BPF would: the tests use it to check the fallback. */
int os_bpfwatch_new(uv_loop_t *loop, const os_bpfwatch_opts_t *opts, os_procev_cb cb, void *data,
                    os_bpfwatch_t **out, char *why, size_t whylen);
/* Starts delivering events from the loop. */
int os_bpfwatch_start(os_bpfwatch_t *w);
/* Detaches and closes; the handle is freed once libuv has closed it. The
 * callback is not called again. */
void os_bpfwatch_free(os_bpfwatch_t *w);
/* Handles the events queued now (a no-op from inside a delivery). */
void os_bpfwatch_drain(os_bpfwatch_t *w);
void os_bpfwatch_stats(const os_bpfwatch_t *w, os_bpfwatch_stats_t *out);

/* ------------------------------------------------------------------ */
/* File events (fanotify filesystem marks on Linux)                     */

typedef enum {
  OS_FSEV_CREATE,
  OS_FSEV_CHANGE, /* closed after being written */
  OS_FSEV_DELETE,
  OS_FSEV_RENAME,
  OS_FSEV_EXEC, /* opened for execution (a program or interpreter) */
  OS_FSEV_LOST  /* the kernel queue overflowed: events were lost */
} os_fsev_kind_t;

typedef struct {
  os_fsev_kind_t kind;
  bool is_dir;
  int pid;          /* acting process (thread-group id), 0 unknown */
  const char *path; /* absolute path; valid during the callback */
  size_t path_len;
  const char *old_path; /* RENAME: the previous path */
  size_t old_path_len;
  bool path_unresolved; /* the directory could not be found: path is "?/name" */
} os_fsev_t;

typedef struct os_fswatch os_fswatch_t;
typedef void (*os_fsev_cb)(const os_fsev_t *ev, void *data);
/* Called when filesystems are marked or skipped (for logs and status). */
typedef void (*os_fsmount_cb)(const char *mountpoint, const char *fstype, int err, void *data);

int os_fswatch_new(uv_loop_t *loop, os_fsev_cb cb, os_fsmount_cb mount_cb, void *data,
                   os_fswatch_t **out);
/* Marks every real filesystem now mounted and follows later mounts. */
int os_fswatch_start(os_fswatch_t *w);
void os_fswatch_free(os_fswatch_t *w);

/* Reads and delivers the events queued now (bounded), as the readable
 * callback would. The process sensor calls it before handling an exec so
 * that the exec notifications queued before it are seen first. */
void os_fswatch_drain(os_fswatch_t *w);

/* Counters of an fswatch, for status and tests. */
typedef struct {
  uint64_t events;
  uint64_t overflows;
  uint64_t unresolved;
  unsigned filesystems;
} os_fswatch_stats_t;
void os_fswatch_stats(const os_fswatch_t *w, os_fswatch_stats_t *out);

/* ------------------------------------------------------------------ */
/* Host facts                                                           */

typedef struct {
  char hostname[256];
  char machine_id[64]; /* "" when unknown */
  char architecture[64];
  char kernel[256];
  char os_type[16];     /* "linux" */
  char os_family[64];   /* ID_LIKE's first word, or ID */
  char os_platform[64]; /* ID */
  char os_name[128];    /* NAME */
  char os_version[128]; /* VERSION_ID */
  size_t n_ips;
  char ips[16][64]; /* interface addresses, loopback excluded */
} os_host_t;

/* Reads the host facts; fields that cannot be read are left empty. */
int os_host_facts(os_host_t *h);

/* ------------------------------------------------------------------ */
/* Program-start permission (fanotify FAN_OPEN_EXEC_PERM on Linux)      */

/* One pending decision: the program file being executed, opened by the
 * kernel for us, and the process executing it. The caller must answer
 * every request exactly once with os_execperm_answer(), then close fd. */
typedef struct {
  int fd;
  int pid;
} os_execreq_t;

typedef struct os_execperm os_execperm_t;

/* Creates the permission group and marks every real filesystem. Blocking
 * calls; meant for a dedicated thread. */
int os_execperm_open(os_execperm_t **out);
/* The descriptor to poll for requests (POLLIN), and one that signals
 * mount changes (POLLPRI); call os_execperm_remark() on the latter. */
int os_execperm_fd(const os_execperm_t *p);
int os_execperm_mounts_fd(const os_execperm_t *p);
void os_execperm_remark(os_execperm_t *p);
/* Reads up to max requests without blocking; *n may be 0. */
int os_execperm_read(os_execperm_t *p, os_execreq_t *reqs, size_t max, size_t *n);
/* Answers a request; safe from any thread. */
int os_execperm_answer(os_execperm_t *p, int fd, bool allow);
/* Closes the group: the kernel allows every request still unanswered. */
void os_execperm_close(os_execperm_t *p);

#endif
