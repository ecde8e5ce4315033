/*
 * Process events for the agent's eBPF sensor: a new process (fork), a
 * program start (exec) with its complete argument vector, and a process end
 * (exit), read at BTF-typed tracepoints, and a change of user id (at the
 * exit of the set*uid system calls, syscall tracepoints), sent through one
 * ring buffer in the order they were reserved.
 *
 * Only tracepoints are used (no kprobes), and every kernel structure is read
 * through CO-RE relocations, so one object runs on any kernel with BTF.
 *
 * A record that does not fit into the ring buffer is counted in the per-CPU
 * "drops" array; the reader turns the growth of the sum into an exact gap
 * record.
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "procev.h"

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 8 * 1024 * 1024);
} events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} drops SEC(".maps");

/* An exec record is assembled here (too large for the BPF stack) and then
 * copied into the ring buffer with its real length. */
struct exec_buf {
  ym_bpf_procev_t h;
  char data[YM_BPF_ARGS_MAX + 2 * YM_BPF_PATH_MAX + YM_BPF_ENV_MAX + YM_BPF_FNAME_MAX];
};

/* Paths are walked into here first (a per-CPU value is at most 32 KiB). */
struct path_buf {
  char exe[YM_BPF_PATH_MAX];
  char cwd[YM_BPF_PATH_MAX];
  char env[YM_BPF_ENV_STR_MAX];  /* one environment string */
  char kept[2 * YM_BPF_ENV_MAX]; /* the watched bindings found (half used) */
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct exec_buf);
} heap SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct path_buf);
} paths SEC(".maps");

/* The agent's own thread-group id: its events are not reported. */
const volatile __u32 self_tgid = 0;

/*
 * Waking the reader costs more than recording an event (about 10 us per
 * record on a 2-core virtual machine), so records are submitted without a
 * wakeup until YM_BPF_WAKE_BYTES are waiting; the reader also drains the
 * ring every YM_BPF_DRAIN_MS on its own.
 */
static __always_inline __u64 wakeup(void) {
  return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= YM_BPF_WAKE_BYTES ? BPF_RB_FORCE_WAKEUP
                                                                            : BPF_RB_NO_WAKEUP;
}

static __always_inline void count_drop(void) {
  __u32 k = YM_BPF_DROPS_SLOT;
  __u64 *n = bpf_map_lookup_elem(&drops, &k);
  if (n != 0)
    __sync_fetch_and_add(n, 1);
}

static __always_inline void fill_task(ym_bpf_procev_t *h, struct task_struct *t) {
  h->pid = BPF_CORE_READ(t, tgid);
  h->ppid = BPF_CORE_READ(t, real_parent, tgid);
  h->uid = BPF_CORE_READ(t, real_cred, uid.val);
  h->euid = BPF_CORE_READ(t, real_cred, euid.val);
  h->gid = BPF_CORE_READ(t, real_cred, gid.val);
  h->egid = BPF_CORE_READ(t, real_cred, egid.val);
  if (bpf_core_field_exists(t->loginuid)) {
    h->loginuid = BPF_CORE_READ(t, loginuid.val);
    h->sessionid = BPF_CORE_READ(t, sessionid);
  } else {
    h->flags |= YM_BPF_NO_LOGINUID;
    h->loginuid = (__u32)-1;
    h->sessionid = (__u32)-1;
  }
  h->start_boottime = BPF_CORE_READ(t, start_boottime);
  h->ts_ns = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(ym_fork, struct task_struct *parent, struct task_struct *child) {
  if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
    return 0; /* a new thread */
  ym_bpf_procev_t *h = bpf_ringbuf_reserve(&events, sizeof(*h), 0);
  if (h == 0) {
    count_drop();
    return 0;
  }
  __builtin_memset(h, 0, sizeof(*h));
  h->kind = YM_BPF_FORK;
  fill_task(h, child);
  h->ppid = BPF_CORE_READ(parent, tgid);
  bpf_ringbuf_submit(h, wakeup());
  return 0;
}

#define NAME_MAX_ 255

/* State of a path walk (walk_step). */
struct walk {
  struct dentry *d;
  struct vfsmount *vm;
  struct mount *m;
  char *out; /* YM_BPF_PATH_MAX bytes */
  __u32 off;
  bool partial;
};

static __always_inline struct vfsmount *mount_vfs(struct mount *m) {
  return (struct vfsmount *)((char *)m + bpf_core_field_offset(struct mount, mnt));
}

/* One step up a path: records the name of w->d and moves to its parent, or
 * crosses a mount point. Returns 1 at the root (or when out is full). */
static long walk_step(__u32 i, void *ctx) {
  struct walk *w = ctx;
  (void)i;
  struct dentry *d = w->d;
  struct vfsmount *vm = w->vm;
  struct mount *m = w->m;
  struct dentry *parent = BPF_CORE_READ(d, d_parent);
  struct dentry *mroot = BPF_CORE_READ(vm, mnt_root);
  if (d == mroot || d == parent) {
    struct mount *mp = BPF_CORE_READ(m, mnt_parent);
    if (mp == m || d != mroot) {
      w->partial = false; /* the root */
      return 1;
    }
    w->d = BPF_CORE_READ(m, mnt_mountpoint);
    w->m = mp;
    w->vm = mount_vfs(mp);
    return 0;
  }
  __u32 off = w->off;
  if (off > YM_BPF_PATH_MAX - NAME_MAX_ - 1)
    return 1;
  const unsigned char *name = BPF_CORE_READ(d, d_name.name);
  long l = bpf_probe_read_kernel_str(&w->out[off & (YM_BPF_PATH_MAX - 1)], NAME_MAX_ + 1, name);
  if (l <= 1)
    return 1;
  w->off = off + (__u32)l;
  w->d = parent;
  return 0;
}

/*
 * Writes the components of path into out from the last to the first, each
 * followed by a NUL, crossing mount points up to the root of the task's
 * mount namespace (as d_path() would, without its lock). Returns the bytes
 * written; *partial is set when the path did not fit or was deeper than
 * YM_BPF_PATH_DEPTH.
 */
static __always_inline __u32 walk_path(const struct path *path, char *out, bool *partial) {
  struct walk w = {0};
  w.d = BPF_CORE_READ(path, dentry);
  w.vm = BPF_CORE_READ(path, mnt);
  w.m = (struct mount *)((char *)w.vm - bpf_core_field_offset(struct mount, mnt));
  w.out = out;
  w.partial = true;
  bpf_loop(YM_BPF_PATH_DEPTH, walk_step, &w, 0);
  *partial = w.partial;
  return w.off > YM_BPF_PATH_MAX ? 0 : w.off;
}

/* State of the environment scan (env_step). */
struct env_scan {
  __u64 pos, end; /* user addresses */
  struct path_buf *pb;
  __u32 kept;
  bool partial; /* the scan stopped before the end */
  bool dropped; /* a binding found had no room left */
};

static __always_inline bool has_prefix(const char *s, const char *p, int n) {
  for (int i = 0; i < n; i++)
    if (s[i] != p[i])
      return false;
  return true;
}

/* Looks at one environment string; keeps it when it binds a watched
 * variable. Returns 1 at the end of the environment. */
static long env_step(__u32 i, void *ctx) {
  struct env_scan *e = ctx;
  struct path_buf *pb = e->pb;
  (void)i;
  __u64 pos = e->pos;
  if (pos >= e->end) {
    e->partial = false;
    return 1;
  }
  long l = bpf_probe_read_user_str(pb->env, sizeof(pb->env), (const void *)pos);
  if (l <= 0 || l >= (long)sizeof(pb->env))
    return 1; /* unreadable, or a string longer than the buffer */
  e->pos = pos + (__u64)l;
  if (pb->env[0] != 'L' || pb->env[1] != 'D' || pb->env[2] != '_')
    return 0;
  if (!has_prefix(pb->env, "LD_PRELOAD=", 11) && !has_prefix(pb->env, "LD_LIBRARY_PATH=", 16))
    return 0;
  __u32 k = e->kept;
  if (k >= YM_BPF_ENV_MAX || (__u64)l >= YM_BPF_ENV_MAX - k) {
    e->dropped = true; /* no room: the binding is left out, and said so */
    return 0;
  }
  bpf_probe_read_kernel(&pb->kept[k & (YM_BPF_ENV_MAX - 1)], (__u32)l & (YM_BPF_ENV_MAX - 1),
                        pb->env);
  e->kept = k + (__u32)l;
  return 0;
}

/* Appends len bytes of src at data[*pos]; both are bounded for the verifier. */
static __always_inline void put(struct exec_buf *b, __u64 *pos, const void *src, __u64 len,
                                bool kernel) {
  __u64 p = *pos;
  if (p > YM_BPF_ARGS_MAX + 2 * YM_BPF_PATH_MAX || len > YM_BPF_PATH_MAX || len == 0)
    return;
  if (kernel)
    bpf_probe_read_kernel(&b->data[p], len, src);
  else
    bpf_probe_read_user(&b->data[p], len, src);
  *pos = p + len;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ym_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) {
  __u32 zero = 0;
  struct exec_buf *b = bpf_map_lookup_elem(&heap, &zero);
  struct path_buf *pb = bpf_map_lookup_elem(&paths, &zero);
  if (b == 0 || pb == 0)
    return 0;
  __builtin_memset(&b->h, 0, sizeof(b->h));
  b->h.kind = YM_BPF_EXEC;
  fill_task(&b->h, p);
  if (b->h.pid == self_tgid && self_tgid != 0)
    return 0;

  /* The new program's argument vector, as the kernel just copied it to the
   * top of the new stack: present in memory, so the read does not fault. */
  struct mm_struct *mm = BPF_CORE_READ(p, mm);
  __u64 start = BPF_CORE_READ(mm, arg_start);
  __u64 end = BPF_CORE_READ(mm, arg_end);
  __u64 n = end > start ? end - start : 0;
  if (n > YM_BPF_ARGS_MAX) {
    n = YM_BPF_ARGS_MAX;
    b->h.flags |= YM_BPF_ARGS_TRUNCATED;
  }
  n &= (2 * YM_BPF_ARGS_MAX - 1); /* keeps the bound visible to the verifier */
  if (n > YM_BPF_ARGS_MAX)
    n = 0;
  if (n > 0 && bpf_probe_read_user(b->data, n, (const void *)start) != 0) {
    b->h.flags |= YM_BPF_ARGS_FAULT;
    n = 0;
  }
  b->h.args_len = (__u32)n;
  __u64 pos = n;

  bool partial;
  struct file *f = BPF_CORE_READ(bprm, file);
  __u32 el = walk_path(&f->f_path, pb->exe, &partial);
  if (partial)
    b->h.flags |= YM_BPF_EXE_PARTIAL;
  __u64 before = pos;
  put(b, &pos, pb->exe, el, true);
  b->h.exe_len = (__u32)(pos - before);

  struct fs_struct *fs = BPF_CORE_READ(p, fs);
  __u32 cl = walk_path(&fs->pwd, pb->cwd, &partial);
  if (partial)
    b->h.flags |= YM_BPF_CWD_PARTIAL;
  before = pos;
  put(b, &pos, pb->cwd, cl, true);
  b->h.cwd_len = (__u32)(pos - before);

  struct env_scan es = {0};
  es.pos = BPF_CORE_READ(mm, env_start);
  es.end = BPF_CORE_READ(mm, env_end);
  es.pb = pb;
  es.partial = true;
  bpf_loop(YM_BPF_ENV_SCAN, env_step, &es, 0);
  if (es.partial || es.dropped)
    b->h.flags |= YM_BPF_ENV_PARTIAL;
  before = pos;
  if (es.kept <= YM_BPF_ENV_MAX)
    put(b, &pos, pb->kept, es.kept, true);
  b->h.env_len = (__u32)(pos - before);

  const char *fname = BPF_CORE_READ(bprm, filename);
  if (pos > YM_BPF_ARGS_MAX + 2 * YM_BPF_PATH_MAX + YM_BPF_ENV_MAX)
    return 0;
  long fl = bpf_probe_read_kernel_str(&b->data[pos], YM_BPF_FNAME_MAX, fname);
  if (fl < 1)
    fl = 1;
  fl -= 1; /* without the NUL */
  fl &= (YM_BPF_FNAME_MAX - 1);
  b->h.fname_len = (__u32)fl;

  __u64 size = sizeof(b->h) + pos + (__u64)fl;
  if (size > sizeof(b->h) + sizeof(b->data))
    return 0;
  if (bpf_ringbuf_output(&events, b, size, wakeup()) != 0)
    count_drop();
  return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ym_exit, struct task_struct *p) {
  if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
    return 0; /* a thread other than the leader */
  if (BPF_CORE_READ(p, tgid) == self_tgid && self_tgid != 0)
    return 0;
  ym_bpf_procev_t *h = bpf_ringbuf_reserve(&events, sizeof(*h), 0);
  if (h == 0) {
    count_drop();
    return 0;
  }
  __builtin_memset(h, 0, sizeof(*h));
  h->kind = YM_BPF_EXIT;
  fill_task(h, p);
  h->exit_code = BPF_CORE_READ(p, exit_code);
  bpf_ringbuf_submit(h, wakeup());
  return 0;
}

/* A successful set*uid(): the process's new users. These programs are
 * attached only where the kernel has syscall tracepoints and tracefs is
 * mounted; the reader attaches them one by one and goes on without them. */
static __always_inline int uid_changed(long ret) {
  if (ret != 0)
    return 0;
  struct task_struct *t = (struct task_struct *)bpf_get_current_task();
  if (BPF_CORE_READ(t, tgid) == self_tgid && self_tgid != 0)
    return 0;
  ym_bpf_procev_t *h = bpf_ringbuf_reserve(&events, sizeof(*h), 0);
  if (h == 0) {
    count_drop();
    return 0;
  }
  __builtin_memset(h, 0, sizeof(*h));
  h->kind = YM_BPF_UID;
  fill_task(h, t);
  bpf_ringbuf_submit(h, wakeup());
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int ym_setuid(struct trace_event_raw_sys_exit *ctx) {
  return uid_changed(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_setreuid")
int ym_setreuid(struct trace_event_raw_sys_exit *ctx) {
  return uid_changed(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_setresuid")
int ym_setresuid(struct trace_event_raw_sys_exit *ctx) {
  return uid_changed(ctx->ret);
}

/* ------------------------------------------------------------------ */
/* TCP connections (sock:inet_sock_set_state)                           */

#define AF_INET_ 2
#define AF_INET6_ 10
#define IPPROTO_TCP_ 6

/* TCP states as include/net/tcp_states.h numbers them. */
#define TCP_ESTABLISHED_ 1
#define TCP_SYN_SENT_ 2
#define TCP_SYN_RECV_ 3
#define TCP_CLOSE_ 7
#define TCP_LISTEN_ 10

/* Who a connection belongs to, from its SYN_SENT (connect) or its
 * establishment (accept) until it closes. Keyed by the socket's address;
 * least recently used entries make room when it is full. */
struct conn_owner {
  __u32 pid;
  __u32 flags; /* YM_BPF_NET_INGRESS, YM_BPF_NET_NO_PID */
  __u32 lport; /* the local port once established (released before the close) */
  __u32 pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, YM_BPF_NET_SOCKS);
  __type(key, __u64);
  __type(value, struct conn_owner);
} conns SEC(".maps");

/* The process that put a socket into LISTEN, by network namespace and
 * port: accepted connections are attributed to it. */
struct listen_key {
  __u64 net;
  __u32 port;
  __u32 pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, YM_BPF_NET_LISTENERS);
  __type(key, struct listen_key);
  __type(value, __u32);
} listeners SEC(".maps");

static __always_inline void listen_key_of(const struct sock *sk, struct listen_key *k) {
  __builtin_memset(k, 0, sizeof(*k));
  k->net = (__u64)BPF_CORE_READ(sk, __sk_common.skc_net.net);
  k->port = BPF_CORE_READ(sk, __sk_common.skc_num);
}

/* Bytes of data sent (retransmissions not counted) and received (the
 * peer's FIN, which takes one sequence number, not counted). */
static __always_inline void read_bytes(const struct sock *sk, ym_bpf_netev_t *n) {
  const struct tcp_sock *tp = (const struct tcp_sock *)sk;
  if (!bpf_core_field_exists(tp->bytes_sent) || !bpf_core_field_exists(tp->bytes_retrans) ||
      !bpf_core_field_exists(tp->bytes_received)) {
    n->flags |= YM_BPF_NET_NO_BYTES;
    return;
  }
  __u64 sent = BPF_CORE_READ(tp, bytes_sent);
  __u64 retrans = BPF_CORE_READ(tp, bytes_retrans);
  n->bytes_sent = sent > retrans ? sent - retrans : 0;
  __u64 received = BPF_CORE_READ(tp, bytes_received);
  unsigned long sflags = BPF_CORE_READ(sk, __sk_common.skc_flags);
  if (received > 0 && (sflags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE))))
    received--;
  n->bytes_received = received;
}

/* lport: the local port to report when the socket no longer holds it (0:
 * read it from the socket). */
static __always_inline void emit_net(const struct sock *sk, __u32 action, __u32 pid, __u32 flags,
                                     bool bytes, __u32 lport) {
  if (pid == self_tgid && self_tgid != 0)
    return;
  ym_bpf_netev_t *n = bpf_ringbuf_reserve(&events, sizeof(*n), 0);
  if (n == 0) {
    count_drop();
    return;
  }
  __builtin_memset(n, 0, sizeof(*n));
  n->kind = YM_BPF_NET;
  n->action = action;
  n->pid = pid;
  n->flags = flags | (pid == 0 ? YM_BPF_NET_NO_PID : 0);
  n->family = BPF_CORE_READ(sk, __sk_common.skc_family);
  n->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
  if (n->lport == 0)
    n->lport = (__u16)lport;
  n->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
  if (n->family == AF_INET6_) {
    BPF_CORE_READ_INTO(&n->laddr, sk, __sk_common.skc_v6_rcv_saddr);
    BPF_CORE_READ_INTO(&n->raddr, sk, __sk_common.skc_v6_daddr);
  } else {
    BPF_CORE_READ_INTO((__u32 *)n->laddr, sk, __sk_common.skc_rcv_saddr);
    BPF_CORE_READ_INTO((__u32 *)n->raddr, sk, __sk_common.skc_daddr);
  }
  if (bytes)
    read_bytes(sk, n);
  n->ts_ns = bpf_ktime_get_ns();
  bpf_ringbuf_submit(n, wakeup());
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ym_sock, const struct sock *sk, const int oldstate, const int newstate) {
  if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP_)
    return 0;
  __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
  if (family != AF_INET_ && family != AF_INET6_)
    return 0;
  __u64 key = (__u64)sk;
  __u32 tgid = (__u32)(bpf_get_current_pid_tgid() >> 32);

  if (newstate == TCP_SYN_SENT_) {
    /* connect(): runs in the calling process. */
    struct conn_owner o = {.pid = tgid, .flags = 0};
    bpf_map_update_elem(&conns, &key, &o, BPF_ANY);
    return 0;
  }
  if (newstate == TCP_LISTEN_) {
    /* listen(): runs in the calling process. */
    struct listen_key lk;
    listen_key_of(sk, &lk);
    bpf_map_update_elem(&listeners, &lk, &tgid, BPF_ANY);
    emit_net(sk, YM_BPF_NET_LISTEN, tgid, 0, false, 0);
    return 0;
  }
  if (oldstate == TCP_LISTEN_ && newstate == TCP_CLOSE_) {
    struct listen_key lk;
    listen_key_of(sk, &lk);
    __u32 *owner = bpf_map_lookup_elem(&listeners, &lk);
    if (owner != 0 && *owner == tgid)
      bpf_map_delete_elem(&listeners, &lk);
    return 0;
  }
  if (oldstate == TCP_SYN_SENT_) {
    struct conn_owner *o = bpf_map_lookup_elem(&conns, &key);
    __u32 pid = o != 0 ? o->pid : 0;
    if (newstate == TCP_ESTABLISHED_) {
      emit_net(sk, YM_BPF_NET_CONNECT, pid, 0, false, 0);
      struct conn_owner u = {.pid = pid, .flags = pid == 0 ? YM_BPF_NET_NO_PID : 0};
      u.lport = BPF_CORE_READ(sk, __sk_common.skc_num);
      bpf_map_update_elem(&conns, &key, &u, BPF_ANY);
    } else if (newstate == TCP_CLOSE_) {
      emit_net(sk, YM_BPF_NET_CONNECT_FAILED, pid, 0, false, 0);
      bpf_map_delete_elem(&conns, &key);
    }
    return 0;
  }
  if (oldstate == TCP_SYN_RECV_ && newstate == TCP_ESTABLISHED_) {
    /* The handshake completed in the receive path, not in the process
     * that will accept(): attributed to the listener's process. */
    struct listen_key lk;
    listen_key_of(sk, &lk);
    __u32 *owner = bpf_map_lookup_elem(&listeners, &lk);
    struct conn_owner o = {.pid = owner != 0 ? *owner : 0, .flags = YM_BPF_NET_INGRESS};
    o.lport = BPF_CORE_READ(sk, __sk_common.skc_num);
    bpf_map_update_elem(&conns, &key, &o, BPF_ANY);
    emit_net(sk, YM_BPF_NET_ACCEPT, o.pid, YM_BPF_NET_INGRESS, false, 0);
    return 0;
  }
  if (newstate == TCP_CLOSE_) {
    /* The end of a connection seen established (others are not reported:
     * they began before the sensor, or never completed). */
    struct conn_owner *o = bpf_map_lookup_elem(&conns, &key);
    if (o == 0)
      return 0;
    struct conn_owner c = *o;
    bpf_map_delete_elem(&conns, &key);
    if (oldstate == TCP_SYN_RECV_)
      return 0;
    emit_net(sk, YM_BPF_NET_CLOSE, c.pid, c.flags & YM_BPF_NET_INGRESS, true, c.lport);
  }
  return 0;
}
