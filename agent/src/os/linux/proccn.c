/*
 * Process events from the netlink proc connector.
 *
 * A NETLINK_CONNECTOR socket joins the CN_IDX_PROC multicast group and asks
 * the kernel to report process events (PROC_CN_MCAST_LISTEN). Each datagram
 * carries one nlmsghdr, one cn_msg and one struct proc_event; they are
 * checked for size, decoded into os_procev_t records and handed to the
 * caller's callback from a uv_poll_t on the caller's loop. Only datagrams
 * sent by the kernel (sender port 0) are accepted: another process may send
 * to this socket's port.
 *
 * Loss is reported two ways. When the socket's receive buffer overflows the
 * kernel drops the datagram and the next recv() fails with ENOBUFS: that
 * becomes OS_PROCEV_LOST with lost_known false. And the kernel numbers its
 * messages with a per-CPU counter (cn_msg.seq, with proc_event.cpu naming
 * the CPU), incremented for every message it tries to send while anyone
 * listens, so a jump in a CPU's sequence is an exact count of messages that
 * never arrived; that becomes OS_PROCEV_LOST with lost_known true, delivered
 * before the message that revealed the gap. The two overlap: the messages
 * dropped by an overflow show up again later as gaps, with their count.
 * A gap is measured from the last message received from the same CPU, so
 * messages dropped on a CPU before the first one received from it, and
 * those after the last one, are covered only by the ENOBUFS report.
 *
 * The subscription ack (what == PROC_EVENT_NONE) is part of that numbering
 * on current kernels: cn_proc_ack() goes through the same send path as
 * events, which overwrites the requester's seq with the CPU's counter and
 * sets the real CPU; the requester's cookie survives only as cn_msg.ack
 * (its ack + 1). This was checked on Linux 6.18: the ack to a
 * LISTEN sent with seq 1000, ack 2000 arrived as seq 0, ack 2001, cpu 1,
 * and the next event on CPU 1 had seq 1. Acks are also multicast, so every
 * listener sees every other listener's ack in its sequence. Older kernels
 * sent the ack with the requester's seq and cpu = (u32)-1; a cpu outside
 * the tracked range is left out of the sequence logic, which covers both.
 */
#include "os.h"

#include "yamori/err.h"

#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

/* Datagrams read per poll callback, so that a flood of process events does
 * not starve the rest of the loop; the poll fires again while data is
 * queued. */
#define RECV_BATCH 64
/* Bounds on the per-CPU sequence table. */
#define MAX_CPUS 4096
/* How long start waits for the kernel's answer to the subscription. The
 * kernel answers from within sendto(), so this is only a safety margin. */
#define ACK_WAIT_MS 500
/* Datagrams start reads while looking for its ack before giving up. */
#define ACK_SCAN_MAX 4096
/* One proc connector datagram is under 100 bytes; anything longer than this
 * buffer is not one and is dropped. */
#define RECV_BUF_SIZE 4096

typedef struct {
  uint32_t last;
  bool seen;
} cpu_seq_t;

struct os_procwatch {
  uv_poll_t poll;
  int fd;
  os_procev_cb cb;
  void *data;
  bool listening;  /* The kernel acknowledged PROC_CN_MCAST_LISTEN. */
  bool closing;    /* os_procwatch_free() was called: no more callbacks. */
  bool draining;   /* os_procwatch_drain() is running */
  bool in_read;    /* the receive loop is running */
  uint32_t cookie; /* Our ack number in requests; the kernel answers cookie + 1. */
  size_t ncpu;
  cpu_seq_t *cpus;
};

/* What decode() found besides events. */
typedef struct {
  bool ack_seen; /* The answer to our own request (cn_msg.ack == cookie + 1). */
  uint32_t ack_err;
} decode_result_t;

/* Sends a PROC_CN_MCAST_* request to the kernel. Returns 0 or a YM_E* code. */
static int send_op(os_procwatch_t *w, uint32_t op) {
  union {
    struct nlmsghdr align;
    char bytes[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(uint32_t))];
  } msg;
  memset(&msg, 0, sizeof(msg));
  struct nlmsghdr nh = {
      .nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(uint32_t)),
      .nlmsg_type = NLMSG_DONE,
  };
  struct cn_msg cn = {
      .id = {.idx = CN_IDX_PROC, .val = CN_VAL_PROC},
      .seq = w->cookie,
      .ack = w->cookie,
      .len = (uint16_t)sizeof(uint32_t),
  };
  memcpy(msg.bytes, &nh, sizeof(nh));
  memcpy(msg.bytes + NLMSG_HDRLEN, &cn, sizeof(cn));
  memcpy(msg.bytes + NLMSG_HDRLEN + sizeof(cn), &op, sizeof(op));
  struct sockaddr_nl to = {.nl_family = AF_NETLINK, .nl_pid = 0};
  for (;;) {
    ssize_t n = sendto(w->fd, msg.bytes, nh.nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to));
    if (n >= 0)
      return 0;
    if (errno != EINTR)
      return ym_err_from_errno(errno);
  }
}

/* Records seq for cpu and returns how many messages are missing before it
 * (0 for the first message of a CPU, which only sets the baseline). A seq
 * that is not ahead of the last one (a duplicate, or something older) is
 * not a gap and leaves the baseline alone; seq arithmetic wraps at 2^32. */
static uint32_t track_seq(os_procwatch_t *w, uint32_t cpu, uint32_t seq) {
  if (cpu >= w->ncpu)
    return 0;
  cpu_seq_t *c = &w->cpus[cpu];
  if (!c->seen) {
    c->seen = true;
    c->last = seq;
    return 0;
  }
  uint32_t d = seq - c->last;
  if (d == 0 || d > UINT32_MAX / 2)
    return 0;
  c->last = seq;
  return d - 1;
}

/* The kernel stamps events with ktime_get_ns(), CLOCK_MONOTONIC. */
static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void deliver(os_procwatch_t *w, const os_procev_t *ev) {
  if (!w->closing)
    w->cb(ev, w->data);
}

/* Turns a proc_event into a record; returns false for events that are not
 * reported (threads, acks and kinds the interface does not carry). len is
 * how many bytes of ev the kernel filled. */
static bool map_event(const struct proc_event *ev, size_t len, os_procev_t *out) {
  size_t head = offsetof(struct proc_event, event_data);
  memset(out, 0, sizeof(*out));
  out->ts_ns = ev->timestamp_ns;
  switch (ev->what) {
  case PROC_EVENT_FORK:
    if (len < head + sizeof(ev->event_data.fork))
      return false;
    if (ev->event_data.fork.child_pid != ev->event_data.fork.child_tgid)
      return false; /* A new thread. */
    out->kind = OS_PROCEV_FORK;
    out->pid = ev->event_data.fork.child_tgid;
    out->ppid = ev->event_data.fork.parent_tgid;
    return true;
  case PROC_EVENT_EXEC:
    if (len < head + sizeof(ev->event_data.exec))
      return false;
    out->kind = OS_PROCEV_EXEC;
    out->pid = ev->event_data.exec.process_tgid;
    return true;
  case PROC_EVENT_EXIT:
    /* exit_code and exit_signal are needed; the parent fields are newer. */
    if (len < head + offsetof(struct exit_proc_event, parent_pid))
      return false;
    if (ev->event_data.exit.process_pid != ev->event_data.exit.process_tgid)
      return false; /* A thread other than the leader. */
    out->kind = OS_PROCEV_EXIT;
    out->pid = ev->event_data.exit.process_tgid;
    out->exit_code = (int)ev->event_data.exit.exit_code;
    return true;
  case PROC_EVENT_UID:
    if (len < head + sizeof(ev->event_data.id))
      return false;
    out->kind = OS_PROCEV_UID;
    out->pid = ev->event_data.id.process_tgid;
    out->uid = ev->event_data.id.r.ruid;
    out->euid = ev->event_data.id.e.euid;
    return true;
  default:
    return false;
  }
}

/*
 * Decodes one datagram of len bytes. For every proc connector message in
 * it: checks the sizes, runs the sequence logic (reporting a gap as LOST
 * first when deliver_events is set), then reports the event itself when it
 * maps to a record. Messages that do not fit their stated sizes end the
 * datagram. Stops delivering as soon as the watch is being freed.
 */
static void decode(os_procwatch_t *w, const char *buf, size_t len, bool deliver_events,
                   decode_result_t *res) {
  size_t off = 0;
  while (len - off >= sizeof(struct nlmsghdr) && !w->closing) {
    struct nlmsghdr nh;
    memcpy(&nh, buf + off, sizeof(nh));
    if (nh.nlmsg_len < NLMSG_HDRLEN || nh.nlmsg_len > len - off)
      return;
    const char *payload = buf + off + NLMSG_HDRLEN;
    size_t plen = nh.nlmsg_len - NLMSG_HDRLEN;
    size_t step = NLMSG_ALIGN(nh.nlmsg_len);
    off = step < len - off ? off + step : len;

    /* The connector sends each message as NLMSG_DONE; control messages
     * (NOOP, ERROR, OVERRUN) carry nothing for us. */
    if (nh.nlmsg_type != NLMSG_DONE || plen < sizeof(struct cn_msg))
      continue;
    struct cn_msg cn;
    memcpy(&cn, payload, sizeof(cn));
    if (cn.id.idx != CN_IDX_PROC || cn.id.val != CN_VAL_PROC)
      continue;
    size_t evlen = cn.len;
    if (evlen > plen - sizeof(cn) || evlen < offsetof(struct proc_event, event_data))
      continue;
    struct proc_event ev;
    memset(&ev, 0, sizeof(ev));
    memcpy(&ev, payload + sizeof(cn), evlen < sizeof(ev) ? evlen : sizeof(ev));

    uint32_t lost = track_seq(w, ev.cpu, cn.seq);
    if (lost > 0 && deliver_events) {
      os_procev_t l = {
          .kind = OS_PROCEV_LOST, .lost = lost, .lost_known = true, .ts_ns = ev.timestamp_ns};
      deliver(w, &l);
    }
    if (ev.what == PROC_EVENT_NONE) {
      if (cn.ack == w->cookie + 1 &&
          evlen >= offsetof(struct proc_event, event_data) + sizeof(ev.event_data.ack)) {
        res->ack_seen = true;
        res->ack_err = ev.event_data.ack.err;
      }
      continue;
    }
    os_procev_t out;
    if (deliver_events && map_event(&ev, evlen, &out))
      deliver(w, &out);
  }
}

/* Receives one datagram into buf. Returns its length, or -1 with errno set;
 * datagrams that are too long or not from the kernel are skipped (returned
 * as length 0). */
static ssize_t recv_one(os_procwatch_t *w, char *buf, size_t size) {
  struct sockaddr_nl from;
  socklen_t fromlen = sizeof(from);
  memset(&from, 0, sizeof(from));
  /* MSG_TRUNC makes netlink return the real length of a longer datagram. */
  ssize_t n =
      recvfrom(w->fd, buf, size, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fromlen);
  if (n < 0)
    return -1;
  if ((size_t)n > size || fromlen < sizeof(from) || from.nl_family != AF_NETLINK ||
      from.nl_pid != 0)
    return 0;
  return n;
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  os_procwatch_t *w = handle->data;
  if (w->in_read)
    return; /* reached again from inside a delivery: the outer loop goes on */
  w->in_read = true;
  union {
    struct nlmsghdr align;
    char bytes[RECV_BUF_SIZE];
  } buf;
  bool progress = false;
  for (int i = 0; i < RECV_BATCH && !w->closing; i++) {
    ssize_t n = recv_one(w, buf.bytes, sizeof(buf.bytes));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == ENOBUFS) {
        /* The receive buffer overflowed; the kernel clears the error by
         * reporting it once, and queued datagrams follow. */
        progress = true;
        os_procev_t l = {.kind = OS_PROCEV_LOST, .lost_known = false, .ts_ns = mono_ns()};
        deliver(w, &l);
        continue;
      }
      break; /* EAGAIN: drained. */
    }
    progress = true;
    decode_result_t res = {0};
    decode(w, buf.bytes, (size_t)n, true, &res);
  }
  /* libuv stops a poll handle whose descriptor reports an error (EPOLLERR)
   * and calls back with a negative status. A netlink socket reports its
   * ENOBUFS overrun exactly that way, and the recv() above has cleared it,
   * so the handle is started again. An error that recv() did not reveal is
   * not expected; the handle then stays stopped and the loss is reported. */
  w->in_read = false;
  if (status < 0 && !w->closing) {
    if (progress && uv_poll_start(&w->poll, UV_READABLE, on_readable) == 0)
      return;
    os_procev_t l = {.kind = OS_PROCEV_LOST, .lost_known = false, .ts_ns = mono_ns()};
    deliver(w, &l);
  }
}

void os_procwatch_drain(os_procwatch_t *w) {
  /* Not from inside its own delivery: the receive loop is not reentrant. */
  if (w == NULL || w->closing || w->draining)
    return;
  w->draining = true;
  on_readable(&w->poll, 0, UV_READABLE);
  w->draining = false;
}

int os_procwatch_new(uv_loop_t *loop, size_t rcvbuf, os_procev_cb cb, void *data,
                     os_procwatch_t **out) {
  if (loop == NULL || cb == NULL || out == NULL)
    return YM_EINVAL;
  *out = NULL;
  os_procwatch_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return YM_ENOMEM;
  int rc;
  int nconf = get_nprocs_conf();
  if (nconf < 1)
    nconf = 1;
  if (nconf > MAX_CPUS)
    nconf = MAX_CPUS;
  w->ncpu = (size_t)nconf;
  w->cpus = calloc(w->ncpu, sizeof(*w->cpus));
  if (w->cpus == NULL) {
    rc = YM_ENOMEM;
    goto out_free;
  }
  w->cb = cb;
  w->data = data;
  w->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_CONNECTOR);
  if (w->fd < 0) {
    rc = ym_err_from_errno(errno);
    goto out_free;
  }
  if (rcvbuf > 0) {
    /* The kernel doubles the value for its bookkeeping; keep the double in
     * an int. SO_RCVBUFFORCE passes net.core.rmem_max (root only). */
    int v = rcvbuf > (size_t)(INT32_MAX / 2) ? INT32_MAX / 2 : (int)rcvbuf;
    if (setsockopt(w->fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0 &&
        setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) != 0) {
      rc = ym_err_from_errno(errno);
      goto out_close_fd;
    }
  }
  rc = uv_poll_init(loop, &w->poll, w->fd);
  if (rc < 0) {
    rc = ym_err_from_errno(-rc);
    goto out_close_fd;
  }
  w->poll.data = w;
  *out = w;
  return 0;

out_close_fd:
  close(w->fd);
out_free:
  free(w->cpus);
  free(w);
  return rc;
}

/* Waits for the kernel's answer to our LISTEN. Messages read before it are
 * fed to the sequence logic but not delivered: they predate the
 * subscription. Returns 0, the error the kernel answered with, or
 * YM_ETIMEDOUT when no answer came (the kernel ignores requests from
 * processes outside the initial user and PID namespaces). */
static int wait_ack(os_procwatch_t *w) {
  union {
    struct nlmsghdr align;
    char bytes[RECV_BUF_SIZE];
  } buf;
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int scanned = 0; scanned < ACK_SCAN_MAX;) {
    ssize_t n = recv_one(w, buf.bytes, sizeof(buf.bytes));
    if (n < 0) {
      if (errno == EINTR || errno == ENOBUFS)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        return ym_err_from_errno(errno);
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long waited =
          (long)(now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
      if (waited >= ACK_WAIT_MS)
        return YM_ETIMEDOUT;
      struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
      if (poll(&pfd, 1, (int)(ACK_WAIT_MS - waited)) < 0 && errno != EINTR)
        return ym_err_from_errno(errno);
      continue;
    }
    scanned++;
    decode_result_t res = {0};
    decode(w, buf.bytes, (size_t)n, false, &res);
    if (res.ack_seen)
      return res.ack_err == 0 ? 0 : ym_err_from_errno((int)res.ack_err);
  }
  return YM_ETIMEDOUT;
}

/*
 * Joins the proc connector group, subscribes and starts polling. Binding
 * happens here rather than in os_procwatch_new() so that nothing queues up
 * before the loop can read it. Returns 0 once the kernel has confirmed the
 * subscription; on an error nothing stays subscribed.
 */
int os_procwatch_start(os_procwatch_t *w) {
  if (w == NULL || w->closing)
    return YM_EINVAL;
  if (w->listening)
    return YM_EBUSY;
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_pid = 0, .nl_groups = CN_IDX_PROC};
  if (bind(w->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINVAL)
    return ym_err_from_errno(errno);
  socklen_t salen = sizeof(sa);
  if (getsockname(w->fd, (struct sockaddr *)&sa, &salen) != 0)
    return ym_err_from_errno(errno);
  /* The port id is unique per netlink socket, which makes our ack
   * recognisable among other listeners' acks. */
  w->cookie = sa.nl_pid;
  int rc = send_op(w, PROC_CN_MCAST_LISTEN);
  if (rc < 0)
    return rc;
  rc = wait_ack(w);
  if (rc == YM_ETIMEDOUT)
    (void)send_op(w, PROC_CN_MCAST_IGNORE); /* In case only the answer was lost. */
  if (rc < 0)
    return rc;
  w->listening = true;
  rc = uv_poll_start(&w->poll, UV_READABLE, on_readable);
  if (rc < 0) {
    (void)send_op(w, PROC_CN_MCAST_IGNORE);
    w->listening = false;
    return ym_err_from_errno(-rc);
  }
  return 0;
}

static void on_close(uv_handle_t *handle) {
  os_procwatch_t *w = handle->data;
  close(w->fd);
  free(w->cpus);
  free(w);
}

/* Unsubscribes (so the kernel's listener count stays right) and closes. The
 * callback is not called again, even from a poll callback that is running
 * now (os_procwatch_free() may be called from the callback). */
void os_procwatch_free(os_procwatch_t *w) {
  if (w == NULL || w->closing)
    return;
  w->closing = true;
  if (w->listening) {
    (void)send_op(w, PROC_CN_MCAST_IGNORE);
    w->listening = false;
  }
  uv_close((uv_handle_t *)&w->poll, on_close);
}
