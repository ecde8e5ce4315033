/*
 * The network sensor: TCP connection records of the eBPF source (os.h,
 * os_netev_t) to ECS network events.
 *
 * Per record, in order:
 *   - dropped while network.enabled is false (the programs stay attached,
 *     so that a reload can turn the events on again);
 *   - a listening socket is reported at once;
 *   - a connection (attempted, failed, accepted, closed) is looked up in
 *     the summary table by flow: process, kind, direction, peer address
 *     and service port (the peer's port for outgoing connections, ours
 *     for incoming ones: a client's source ports change every time). The
 *     first of a flow is reported at once and opens a window of
 *     network.summary_window_s; the repeats within it are counted (bytes
 *     summed) and reported as one event when the window ends, with
 *     yamori.network.count saying how many connections it stands for.
 *     A full table reports connections one by one (counted).
 *
 * The process of a summary is copied from the process table when its first
 * repeat arrives, so that a client that ended before the window closed is
 * still named.
 */
#include "sensors.h"

#include "yamori/err.h"
#include "yamori/log.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define FLUSH_MS 1000

typedef struct {
  os_netev_kind_t kind;
  int pid;
  bool ingress;
  int family;
  uint8_t peer[16];
  uint16_t port; /* the service port */
} flow_key_t;

typedef struct {
  bool used;
  flow_key_t key;
  int64_t opened_mono; /* when the first connection was reported */
  uint64_t repeats;    /* connections since then, not reported yet */
  os_netev_t first;    /* the first repeat (its addresses and ports) */
  uint64_t last_ts_ns; /* the last repeat */
  uint64_t sent, received;
  bool bytes_ok;
  proc_entry_t *proc; /* copy of the table entry (owns exe and args), or NULL */
} flow_t;

struct nsensor {
  agent_t *a;
  flow_t *flows; /* open addressing (linear probing), cap slots */
  size_t cap;    /* power of two, at least twice max */
  size_t count;
  size_t max; /* network.summary_max at start: a reload lowers the use, not the size */
  uv_timer_t timer;
  bool timer_on;
  uint64_t events;        /* events written */
  uint64_t summarised;    /* connections counted into summaries */
  uint64_t unsummarised;  /* reported one by one because the table was full */
  uint64_t disabled_drop; /* records dropped while network.enabled is false */
};

static int64_t mono_now(void) {
  struct timespec m;
  clock_gettime(CLOCK_MONOTONIC, &m);
  return (int64_t)m.tv_sec * 1000000000 + m.tv_nsec;
}

static int64_t mono_to_real(uint64_t mono_ns) {
  struct timespec m, r;
  clock_gettime(CLOCK_MONOTONIC, &m);
  clock_gettime(CLOCK_REALTIME, &r);
  int64_t now_m = (int64_t)m.tv_sec * 1000000000 + m.tv_nsec;
  int64_t now_r = (int64_t)r.tv_sec * 1000000000 + r.tv_nsec;
  return now_r - (now_m - (int64_t)mono_ns);
}

static void proc_copy_free(flow_t *f) {
  if (f->proc == NULL)
    return;
  free(f->proc->exe);
  free(f->proc->args);
  free(f->proc);
  f->proc = NULL;
}

/* Copies the table entry of pid into f (exe and args duplicated). */
static void proc_copy(agent_t *a, flow_t *f, int pid) {
  proc_entry_t *e = pid > 0 ? psensor_lookup(a, pid) : NULL;
  if (e == NULL)
    return;
  proc_entry_t *c = malloc(sizeof(*c));
  if (c == NULL)
    return;
  *c = *e;
  c->next = NULL;
  c->exec_open = NULL;
  c->exec_open_len = 0;
  c->exe = NULL;
  c->args = NULL;
  if (e->exe != NULL)
    proctab_set_exe(c, e->exe, e->exe_len);
  if (e->args != NULL)
    proctab_set_args(c, e->args, e->args_len);
  f->proc = c;
}

static bool is_v4_mapped(const uint8_t *a) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(a, prefix, sizeof(prefix)) == 0;
}

/* Writes addr as text; IPv4-mapped IPv6 addresses as IPv4. */
static void addr_text(int family, const uint8_t *addr, char out[INET6_ADDRSTRLEN]) {
  if (family == AF_INET6 && is_v4_mapped(addr))
    inet_ntop(AF_INET, addr + 12, out, INET6_ADDRSTRLEN);
  else if (family == AF_INET6)
    inet_ntop(AF_INET6, addr, out, INET6_ADDRSTRLEN);
  else
    inet_ntop(AF_INET, addr, out, INET6_ADDRSTRLEN);
}

static const char *action_of(os_netev_kind_t k) {
  switch (k) {
  case OS_NETEV_CONNECT:
    return "connection-attempted";
  case OS_NETEV_CONNECT_FAILED:
    return "connection-failed";
  case OS_NETEV_ACCEPT:
    return "connection-accepted";
  case OS_NETEV_LISTEN:
    return "listening";
  case OS_NETEV_CLOSE:
    return "disconnect-received";
  }
  return "unknown";
}

/*
 * Writes one event for ne: the connection itself (count 1), or a summary
 * (count repeats, bytes summed, event.start/end the first and last repeat).
 * proc is the process to name (NULL: looked up now by ne->pid).
 */
static void emit(nsensor_t *n, const os_netev_t *ne, uint64_t count, uint64_t sent,
                 uint64_t received, bool bytes_ok, uint64_t last_ts_ns, const proc_entry_t *proc) {
  agent_t *a = n->a;
  /* Looked up before the event is built: a lookup may read the process
   * sensor's waiting records, which emits through the one scratch event. */
  if (proc == NULL && ne->pid > 0)
    proc = psensor_lookup(a, ne->pid);
  ym_event_t *ev = agent_event(a);
  ym_event_set_cstr(ev, YM_F_EVENT_KIND, "event");
  ym_event_set_one(ev, YM_F_EVENT_CATEGORY, "network");
  const char *types[2];
  size_t lens[2];
  size_t nt = 0;
  if (ne->kind == OS_NETEV_LISTEN) {
    types[nt++] = "start";
  } else {
    types[nt++] = "connection";
    types[nt++] = ne->kind == OS_NETEV_CLOSE ? "end" : "start";
  }
  for (size_t i = 0; i < nt; i++)
    lens[i] = strlen(types[i]);
  ym_event_set_strv(ev, YM_F_EVENT_TYPE, types, lens, nt);
  ym_event_set_cstr(ev, YM_F_EVENT_ACTION, action_of(ne->kind));
  ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.network");
  if (ne->kind == OS_NETEV_CONNECT_FAILED)
    ym_event_set_cstr(ev, YM_F_EVENT_OUTCOME, "failure");
  else if (ne->kind != OS_NETEV_LISTEN)
    ym_event_set_cstr(ev, YM_F_EVENT_OUTCOME, "success");
  ym_event_set_time(ev, YM_F_TIMESTAMP, mono_to_real(ne->ts_ns));
  if (count > 1) {
    ym_event_set_time(ev, YM_F_EVENT_START, mono_to_real(ne->ts_ns));
    ym_event_set_time(ev, YM_F_EVENT_END, mono_to_real(last_ts_ns));
  }

  ym_event_set_cstr(ev, YM_F_NETWORK_TRANSPORT, "tcp");
  bool v4 = ne->family == AF_INET || is_v4_mapped(ne->laddr);
  ym_event_set_cstr(ev, YM_F_NETWORK_TYPE, v4 ? "ipv4" : "ipv6");
  char local[INET6_ADDRSTRLEN], remote[INET6_ADDRSTRLEN];
  addr_text(ne->family, ne->laddr, local);
  addr_text(ne->family, ne->raddr, remote);
  if (ne->kind == OS_NETEV_LISTEN) {
    ym_event_set_cstr(ev, YM_F_SOURCE_IP, local);
    ym_event_set_int(ev, YM_F_SOURCE_PORT, ne->lport);
  } else {
    /* The source is the side that opened the connection. */
    bool in = ne->ingress;
    ym_event_set_cstr(ev, YM_F_NETWORK_DIRECTION, in ? "ingress" : "egress");
    ym_event_set_bool(ev, YM_F_YAMORI_NETWORK_INITIATED, !in);
    ym_event_set_cstr(ev, YM_F_SOURCE_IP, in ? remote : local);
    ym_event_set_int(ev, YM_F_SOURCE_PORT, in ? ne->rport : ne->lport);
    ym_event_set_cstr(ev, YM_F_DESTINATION_IP, in ? local : remote);
    ym_event_set_int(ev, YM_F_DESTINATION_PORT, in ? ne->lport : ne->rport);
    if (ne->kind == OS_NETEV_CLOSE && bytes_ok) {
      ym_event_set_int(ev, YM_F_SOURCE_BYTES, (int64_t)(in ? received : sent));
      ym_event_set_int(ev, YM_F_DESTINATION_BYTES, (int64_t)(in ? sent : received));
    }
    ym_event_set_int(ev, YM_F_YAMORI_NETWORK_COUNT, (int64_t)count);
  }

  const char *missing[3];
  size_t nm = 0;
  if (proc != NULL) {
    psensor_event_process(a, ev, proc);
    if (proc->exe == NULL)
      missing[nm++] = "process.executable";
  } else {
    if (ne->pid > 0)
      ym_event_set_int(ev, YM_F_PROCESS_PID, ne->pid);
    else
      missing[nm++] = "process.pid";
    missing[nm++] = "process.executable";
    missing[nm++] = "process.entity_id";
  }
  if (ne->kind == OS_NETEV_CLOSE && !bytes_ok && nm < 3)
    missing[nm++] = "source.bytes";
  if (nm > 0) {
    size_t ml[3];
    for (size_t i = 0; i < nm; i++)
      ml[i] = strlen(missing[i]);
    ym_event_set_strv(ev, YM_F_YAMORI_MISSING, missing, ml, nm);
  }
  n->events++;
  a->counters.network_events++;
  agent_emit(a, ev);
}

static uint64_t key_hash(const flow_key_t *k) {
  /* FNV-1a over the fields. */
  uint64_t h = 1469598103934665603ULL;
  const uint8_t *parts[] = {(const uint8_t *)&k->kind, (const uint8_t *)&k->pid,
                            (const uint8_t *)&k->ingress, k->peer, (const uint8_t *)&k->port};
  const size_t sizes[] = {sizeof(k->kind), sizeof(k->pid), sizeof(k->ingress), sizeof(k->peer),
                          sizeof(k->port)};
  for (size_t p = 0; p < 5; p++)
    for (size_t i = 0; i < sizes[p]; i++)
      h = (h ^ parts[p][i]) * 1099511628211ULL;
  return h;
}

static bool key_eq(const flow_key_t *x, const flow_key_t *y) {
  return x->kind == y->kind && x->pid == y->pid && x->ingress == y->ingress &&
         x->family == y->family && x->port == y->port && memcmp(x->peer, y->peer, 16) == 0;
}

/* The slot of k, or the empty slot where it would go. */
static flow_t *slot_of(nsensor_t *n, const flow_key_t *k) {
  size_t i = (size_t)key_hash(k) & (n->cap - 1);
  for (;;) {
    flow_t *f = &n->flows[i];
    if (!f->used || key_eq(&f->key, k))
      return f;
    i = (i + 1) & (n->cap - 1);
  }
}

/* Empties slot i and moves later entries of its probe run back, so that
 * lookups need no tombstones. */
static void remove_slot(nsensor_t *n, size_t i) {
  size_t mask = n->cap - 1;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    flow_t *f = &n->flows[j];
    if (!f->used)
      break;
    size_t home = (size_t)key_hash(&f->key) & mask;
    /* f may move to i when its home is not in (i, j] (cyclically). */
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      n->flows[i] = *f;
      i = j;
    }
  }
  memset(&n->flows[i], 0, sizeof(n->flows[i]));
  n->count--;
}

/* Writes the summary of the flow in slot i if it has repeats, then removes
 * it. */
static void close_flow(nsensor_t *n, size_t i) {
  flow_t *f = &n->flows[i];
  if (f->repeats > 0)
    emit(n, &f->first, f->repeats, f->sent, f->received, f->bytes_ok, f->last_ts_ns, f->proc);
  proc_copy_free(f);
  remove_slot(n, i);
}

/* Closes the flows whose window has ended (all of them when all is true).
 * An entry moved backwards past the scan by a removal waits for the next
 * flush. */
static void flush(nsensor_t *n, bool all) {
  int64_t now = mono_now();
  int64_t window = (int64_t)n->a->conf->network_window_s * 1000000000;
  for (size_t i = 0; i < n->cap && n->count > 0; i++) {
    flow_t *f = &n->flows[i];
    while (f->used && (all || now - f->opened_mono >= window))
      close_flow(n, i); /* the slot may now hold a moved entry */
  }
}

static void on_timer(uv_timer_t *t) {
  flush(t->data, false);
}

void nsensor_event(nsensor_t *n, const os_netev_t *ne) {
  if (n == NULL)
    return;
  agent_t *a = n->a;
  if (!a->conf->network_enabled) {
    n->disabled_drop++;
    return;
  }
  if (ne->kind == OS_NETEV_LISTEN || a->conf->network_window_s == 0) {
    emit(n, ne, 1, ne->bytes_sent, ne->bytes_received, ne->bytes_ok, ne->ts_ns, NULL);
    return;
  }
  flow_key_t k;
  memset(&k, 0, sizeof(k));
  k.kind = ne->kind;
  k.pid = ne->pid;
  k.ingress = ne->ingress;
  k.family = ne->family;
  memcpy(k.peer, ne->raddr, sizeof(k.peer));
  k.port = ne->ingress ? ne->lport : ne->rport;
  flow_t *f = slot_of(n, &k);
  int64_t now = mono_now();
  if (f->used && now - f->opened_mono < a->conf->network_window_s * 1000000000) {
    if (f->repeats == 0) {
      f->first = *ne;
      f->bytes_ok = true;
      proc_copy(a, f, ne->pid);
    }
    f->repeats++;
    f->last_ts_ns = ne->ts_ns;
    f->sent += ne->bytes_sent;
    f->received += ne->bytes_received;
    f->bytes_ok = f->bytes_ok && ne->bytes_ok;
    n->summarised++;
    return;
  }
  if (f->used)
    close_flow(n, (size_t)(f - n->flows)); /* its window ended before the timer came */
  emit(n, ne, 1, ne->bytes_sent, ne->bytes_received, ne->bytes_ok, ne->ts_ns, NULL);
  if (n->count >= n->max || (size_t)a->conf->network_summary_max <= n->count) {
    n->unsummarised++;
    return;
  }
  f = slot_of(n, &k); /* the removal may have moved entries */
  memset(f, 0, sizeof(*f));
  f->used = true;
  f->key = k;
  f->opened_mono = now;
  n->count++;
}

int nsensor_new(agent_t *a, nsensor_t **out) {
  nsensor_t *n = calloc(1, sizeof(*n));
  if (n == NULL)
    return YM_ENOMEM;
  n->a = a;
  n->max = (size_t)a->conf->network_summary_max;
  n->cap = 32;
  while (n->cap < 2 * n->max)
    n->cap *= 2;
  n->flows = calloc(n->cap, sizeof(*n->flows));
  if (n->flows == NULL) {
    free(n);
    return YM_ENOMEM;
  }
  uv_timer_init(a->loop, &n->timer);
  n->timer.data = n;
  uv_timer_start(&n->timer, on_timer, FLUSH_MS, FLUSH_MS);
  uv_unref((uv_handle_t *)&n->timer);
  n->timer_on = true;
  *out = n;
  return 0;
}

void nsensor_stop(nsensor_t *n) {
  if (n == NULL)
    return;
  flush(n, true);
  if (n->timer_on) {
    uv_close((uv_handle_t *)&n->timer, NULL);
    n->timer_on = false;
  }
}

void nsensor_free(nsensor_t *n) {
  if (n == NULL)
    return;
  for (size_t i = 0; i < n->cap; i++)
    proc_copy_free(&n->flows[i]);
  free(n->flows);
  free(n);
}

void nsensor_status_json(const nsensor_t *n, cJSON *k) {
  agent_t *a = n != NULL ? n->a : NULL;
  char why[192];
  char state[224];
  if (n == NULL) {
    snprintf(state, sizeof(state), "off (the process sensor is off)");
  } else if (!a->conf->network_enabled) {
    snprintf(state, sizeof(state), "off (network.enabled is false)");
  } else if (!psensor_net_state(a->ps, why, sizeof(why))) {
    snprintf(state, sizeof(state), "off (%s)", why);
  } else {
    snprintf(state, sizeof(state), "on");
  }
  cJSON_AddStringToObject(k, "network_sensor", state);
  if (n == NULL)
    return;
  cJSON_AddNumberToObject(k, "network_events", (double)n->events);
  cJSON_AddNumberToObject(k, "network_summarised", (double)n->summarised);
  cJSON_AddNumberToObject(k, "network_unsummarised", (double)n->unsummarised);
  cJSON_AddNumberToObject(k, "network_flows", (double)n->count);
}
