/*
 * The agent context: identity, host facts, the event pipeline and signals.
 */
#include "agent.h"

#include "behave.h"
#include "control.h"
#include "detect.h"
#include "notify_sd.h"
#include "os.h"
#include "respond.h"
#include "sensors.h"
#include "update.h"
#include "uplink.h"

#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/log.h"
#include "yamori/version.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES (8 * 1024 * 1024)
#define HASH_SLOTS 4096
#define PROCTAB_MAX 65536

int64_t agent_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads the agent id from the state directory, creating it (a random UUID,
 * mode 0600) on first start. */
static int load_agent_id(const char *state_dir, char out[40]) {
  if (mkdir(state_dir, 0700) != 0 && errno != EEXIST)
    return ym_err_from_errno(errno);
  char path[1200], tmp[1200];
  snprintf(path, sizeof(path), "%s/agent-id", state_dir);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    char buf[40] = {0};
    ssize_t n = read(fd, buf, 36);
    close(fd);
    if (n == 36 && strspn(buf, "0123456789abcdef-") == 36) {
      memcpy(out, buf, 37);
      return 0;
    }
    /* Unreadable or malformed: make a new identity below. */
  }
  uint8_t r[16];
  if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
    return YM_ECRYPTO;
  r[6] = (uint8_t)((r[6] & 0x0f) | 0x40);
  r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
  snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
           r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14],
           r[15]);
  snprintf(tmp, sizeof(tmp), "%s/.agent-id.tmp", state_dir);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return ym_err_from_errno(errno);
  int rc = write(fd, out, 36) == 36 && fsync(fd) == 0 ? 0 : YM_EIO;
  close(fd);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = ym_err_from_errno(errno);
  return rc;
}

static void build_base(agent_t *a) {
  os_host_t h;
  os_host_facts(&h);
  ym_event_t *b = &a->base;
  ym_event_set_cstr(b, YM_F_AGENT_ID, a->agent_id);
  ym_event_set_cstr(b, YM_F_AGENT_TYPE, "yamori");
  ym_event_set_cstr(b, YM_F_AGENT_VERSION, ym_version());
  ym_event_set_cstr(b, YM_F_ECS_VERSION, YM_ECS_VERSION);
  ym_event_set_cstr(b, YM_F_EVENT_MODULE, "yamori");
  ym_event_set_cstr(b, YM_F_HOST_NAME, h.hostname);
  ym_event_set_cstr(b, YM_F_HOST_HOSTNAME, h.hostname);
  if (h.machine_id[0])
    ym_event_set_cstr(b, YM_F_HOST_ID, h.machine_id);
  ym_event_set_cstr(b, YM_F_HOST_ARCHITECTURE, h.architecture);
  ym_event_set_cstr(b, YM_F_HOST_OS_TYPE, h.os_type);
  ym_event_set_cstr(b, YM_F_HOST_OS_KERNEL, h.kernel);
  if (h.os_family[0])
    ym_event_set_cstr(b, YM_F_HOST_OS_FAMILY, h.os_family);
  if (h.os_platform[0])
    ym_event_set_cstr(b, YM_F_HOST_OS_PLATFORM, h.os_platform);
  if (h.os_name[0])
    ym_event_set_cstr(b, YM_F_HOST_OS_NAME, h.os_name);
  if (h.os_version[0])
    ym_event_set_cstr(b, YM_F_HOST_OS_VERSION, h.os_version);
  if (h.n_ips > 0) {
    const char *ips[16];
    size_t lens[16];
    for (size_t i = 0; i < h.n_ips; i++) {
      ips[i] = h.ips[i];
      lens[i] = strlen(h.ips[i]);
    }
    ym_event_set_strv(b, YM_F_HOST_IP, ips, lens, h.n_ips);
  }
}

static void run_posts(agent_t *a) {
  uv_mutex_lock(&a->post_lock);
  agent_post_t *p = a->post_head;
  a->post_head = a->post_tail = NULL;
  uv_mutex_unlock(&a->post_lock);
  while (p != NULL) {
    agent_post_t *next = p->next;
    p->fn(a, p->arg);
    free(p);
    p = next;
  }
}

static void on_post(uv_async_t *h) {
  run_posts(h->data);
}

void agent_post(agent_t *a, agent_post_fn fn, void *arg) {
  agent_post_t *p = malloc(sizeof(*p));
  if (p == NULL)
    abort(); /* a small control structure: out of memory here is fatal */
  p->next = NULL;
  p->fn = fn;
  p->arg = arg;
  uv_mutex_lock(&a->post_lock);
  if (a->post_tail != NULL)
    a->post_tail->next = p;
  else
    a->post_head = p;
  a->post_tail = p;
  uv_mutex_unlock(&a->post_lock);
  uv_async_send(&a->post_async);
}

static void on_spool_lost(spool_stream_t stream, const char *reason, uint64_t count,
                          bool count_known, int64_t first_ns, int64_t last_ns, void *data);
static void emit_gap(agent_t *a, const char *source, const char *reason, int stream, uint64_t count,
                     bool known, int64_t first_ns, int64_t last_ns);

static void on_spool_ready(void *data) {
  agent_t *a = data;
  if (a->up != NULL)
    uplink_kick(a->up);
}

static void on_uplink_lost(spool_stream_t stream, uint64_t count, void *data) {
  agent_emit_stream_gap(data, "uplink", "too_large", (int)stream, count, true);
}

/* The agent's part of a check-in (see uplink_status_fn). */
static char *checkin_status(void *data) {
  agent_t *a = data;
  cJSON *j = cJSON_CreateObject();
  detect_status_t ds;
  if (a->det != NULL) {
    detect_status(a->det, &ds);
    cJSON_AddStringToObject(j, "rules_version", ds.rules_version);
  }
  static const char *const exec_p[] = {"off", "detect", "block"};
  static const char *const file_p[] = {"detect", "quarantine"};
  cJSON *st = cJSON_AddObjectToObject(j, "status");
  cJSON *sen = cJSON_AddObjectToObject(st, "sensors");
  cJSON_AddBoolToObject(sen, "process", a->ps != NULL);
  cJSON_AddBoolToObject(sen, "file", a->fs != NULL);
  cJSON_AddBoolToObject(sen, "exec_guard", a->det != NULL && ds.guard_on);
  cJSON *pol = cJSON_AddObjectToObject(st, "policy");
  cJSON_AddStringToObject(pol, "exec", exec_p[a->conf->policy_exec]);
  cJSON_AddStringToObject(pol, "file", file_p[a->conf->policy_file]);
  cJSON *k = cJSON_AddObjectToObject(j, "counters");
  agent_counters_json(a, k);
  update_status_json(a->upd, j);
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return text;
}

void agent_counters_json(agent_t *a, cJSON *k) {
  const agent_counters_t *ac = &a->counters;
  cJSON_AddNumberToObject(k, "events", (double)ac->events);
  cJSON_AddNumberToObject(k, "file_events", (double)ac->file_events);
  cJSON_AddNumberToObject(k, "process_events", (double)ac->process_events);
  cJSON_AddNumberToObject(k, "gaps", (double)ac->gaps);
  cJSON_AddNumberToObject(k, "dropped", (double)ac->dropped);
  psensor_status_json(a->ps, k);
  nsensor_status_json(a->ns, k);
  if (a->det != NULL) {
    detect_status_t ds;
    detect_status(a->det, &ds);
    cJSON_AddNumberToObject(k, "alerts", (double)ds.alerts);
    cJSON_AddNumberToObject(k, "quarantined", (double)ds.quarantined);
    cJSON_AddNumberToObject(k, "quarantine_failed", (double)ds.quarantine_failed);
    cJSON_AddNumberToObject(k, "killed", (double)ds.killed);
    cJSON_AddNumberToObject(k, "files_scanned", (double)ds.scan.scanned);
    cJSON_AddNumberToObject(k, "scan_cache_hits", (double)ds.scan.cached);
    cJSON_AddNumberToObject(k, "scan_errors", (double)ds.scan.errors);
    cJSON_AddNumberToObject(k, "write_scans_dropped", (double)ds.write_scans_dropped);
    cJSON_AddNumberToObject(k, "exec_checked", (double)ds.guard.requests);
    cJSON_AddNumberToObject(k, "exec_denied", (double)ds.guard.denied);
    cJSON_AddNumberToObject(k, "exec_deadline_allowed", (double)ds.guard.timeouts);
  }
  if (a->beh != NULL) {
    behave_status_t bs;
    behave_status(a->beh, &bs);
    cJSON_AddBoolToObject(k, "behaviour_enabled", bs.enabled);
    cJSON_AddNumberToObject(k, "behaviour_rules", bs.rules);
    cJSON_AddNumberToObject(k, "behaviour_correlations", bs.correlations);
    cJSON_AddNumberToObject(k, "behaviour_files", bs.files);
    cJSON_AddStringToObject(k, "behaviour_version", bs.version);
    cJSON_AddNumberToObject(k, "behaviour_evaluated", (double)bs.evaluated);
    cJSON_AddNumberToObject(k, "behaviour_matches", (double)bs.matches);
    cJSON_AddNumberToObject(k, "behaviour_informational", (double)bs.informational);
    cJSON_AddNumberToObject(k, "behaviour_alerts", (double)bs.alerts);
    cJSON_AddNumberToObject(k, "behaviour_rate_limited", (double)bs.rate_limited);
    cJSON_AddNumberToObject(k, "behaviour_killed", (double)bs.killed);
    cJSON_AddNumberToObject(k, "behaviour_kill_failed", (double)bs.kill_failed);
    cJSON_AddNumberToObject(k, "behaviour_kill_refused", (double)bs.kill_refused);
    cJSON_AddNumberToObject(k, "behaviour_load_errors", (double)bs.load_errors);
    if (bs.load_error[0])
      cJSON_AddStringToObject(k, "behaviour_load_error", bs.load_error);
  }
  if (a->spool != NULL) {
    spool_stats_t ss;
    spool_stats(a->spool, &ss);
    cJSON_AddNumberToObject(k, "spool_queued", (double)ss.events_queued);
    cJSON_AddNumberToObject(k, "spool_spooled", (double)ss.events_spooled);
    cJSON_AddNumberToObject(k, "spool_acked", (double)ss.events_acked);
    cJSON_AddNumberToObject(k, "spool_shed", (double)ss.events_shed);
    cJSON_AddNumberToObject(k, "spool_corrupt", (double)ss.records_corrupt);
    cJSON_AddNumberToObject(k, "spool_bytes", (double)ss.bytes_on_disk);
    cJSON_AddNumberToObject(k, "spool_write_errors", (double)ss.write_errors);
    cJSON_AddNumberToObject(k, "spool_unwritten", (double)ss.events_unwritten);
    cJSON_AddNumberToObject(k, "spool_waiting_bytes", (double)ss.bytes_waiting);
    cJSON_AddBoolToObject(k, "spool_failing", ss.failing);
    cJSON_AddNumberToObject(
        k, "spool_pending",
        (double)(spool_pending(a->spool, SPOOL_ALERTS) + spool_pending(a->spool, SPOOL_BULK)));
    cJSON_AddNumberToObject(k, "spool_last_seq_alerts",
                            (double)spool_last_seq(a->spool, SPOOL_ALERTS));
    cJSON_AddNumberToObject(k, "spool_last_seq_bulk", (double)spool_last_seq(a->spool, SPOOL_BULK));
  }
  if (a->up != NULL) {
    uplink_stats_t us;
    uplink_stats(a->up, &us);
    cJSON_AddNumberToObject(k, "uplink_sent", (double)us.sent);
    cJSON_AddNumberToObject(k, "uplink_acked", (double)us.acked);
    cJSON_AddNumberToObject(k, "uplink_retries", (double)us.retries);
    cJSON_AddNumberToObject(k, "uplink_failures", (double)us.failures);
    cJSON_AddNumberToObject(k, "uplink_refused", (double)us.refused);
    cJSON_AddNumberToObject(k, "uplink_checkins", (double)us.checkins);
    cJSON_AddBoolToObject(k, "uplink_enrolled", us.enrolled);
    if (us.last_error[0])
      cJSON_AddStringToObject(k, "uplink_last_error", us.last_error);
  }
}

int agent_init(agent_t *a, uv_loop_t *loop, conf_t *conf, const char *config_path,
               const char *output_override) {
  memset(a, 0, sizeof(*a));
  a->loop = loop;
  a->conf = conf;
  a->config_path = config_path;
  a->output_override = output_override;
  a->self_pid = getpid();
  a->clock_ticks = os_clock_ticks();
  a->boot_ns = os_boot_time_ns();
  ym_event_init(&a->base, NULL);
  ym_event_init(&a->scratch, &a->base);
  ym_buf_init(&a->line, LINE_MAX_BYTES);
  ym_buf_init(&a->upline, LINE_MAX_BYTES);
  uv_mutex_init(&a->post_lock);
  uv_async_init(loop, &a->post_async, on_post);
  a->post_async.data = a;
  if (os_boot_id(a->boot_id) != 0)
    snprintf(a->boot_id, sizeof(a->boot_id), "unknown");
  int rc = load_agent_id(conf->state_dir, a->agent_id);
  if (rc != 0) {
    ym_log(YM_LOG_ERROR, rc, "cannot keep the agent identity in %s", conf->state_dir);
    return rc;
  }
  build_base(a);
  if ((rc = proctab_init(&a->procs, PROCTAB_MAX, a->boot_id)) != 0 ||
      (rc = hashcache_init(&a->hashes, loop, HASH_SLOTS, (uint64_t)conf->hash_max_bytes)) != 0)
    return rc;
  if (conf->spool_enabled) {
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/spool", conf->state_dir);
    spool_opts_t so = {dir, (uint64_t)conf->spool_max_bytes, (uint64_t)conf->spool_alert_reserve,
                       (unsigned)conf->spool_bulk_flush_ms};
    if ((rc = spool_new(loop, &so, on_spool_ready, on_spool_lost, a, &a->spool)) != 0) {
      ym_log(YM_LOG_ERROR, rc, "cannot open the spool in %s", dir);
      return rc;
    }
    spool_report_recovery(a->spool); /* damage found at start becomes gap events */
    if ((rc = uplink_new(loop, a->spool, conf->state_dir, checkin_status, on_uplink_lost, a,
                         &a->up)) != 0) {
      ym_log(YM_LOG_ERROR, rc, "cannot start the console link");
      return rc;
    }
  }
  const char *dest = output_override ? output_override : conf->output;
  rc = output_init(&a->out, loop, dest);
  if (rc != 0)
    ym_log(YM_LOG_ERROR, rc, "cannot open the event output %s", dest);
  return rc;
}

ym_event_t *agent_event(agent_t *a) {
  ym_event_reset(&a->scratch);
  return &a->scratch;
}

/* Alerts and the agent's responses go in their own stream, sent at once. */
static spool_stream_t stream_of(const ym_event_t *ev) {
  size_t n;
  if (ym_event_has(ev, YM_F_YAMORI_GAP_STREAM))
    return SPOOL_ALERTS;
  const char *kind = ym_event_get_str(ev, YM_F_EVENT_KIND, &n);
  if (kind != NULL && n == 5 && memcmp(kind, "alert", 5) == 0)
    return SPOOL_ALERTS;
  const char *ds = ym_event_get_str(ev, YM_F_EVENT_DATASET, &n);
  if (ds != NULL && n == 15 && memcmp(ds, "yamori.response", 15) == 0)
    return SPOOL_ALERTS;
  return SPOOL_BULK;
}

void agent_emit(agent_t *a, ym_event_t *ev) {
  ym_event_set_time(ev, YM_F_EVENT_CREATED, agent_now_ns());
  ym_event_set_int(ev, YM_F_EVENT_SEQUENCE, (int64_t)++a->seq);
  if (!ym_event_has(ev, YM_F_TIMESTAMP))
    ym_event_set_time(ev, YM_F_TIMESTAMP, agent_now_ns());
  spool_stream_t stream = stream_of(ev);
  if (a->spool != NULL)
    ym_event_set_int(ev, YM_F_YAMORI_STREAM_SEQ, (int64_t)spool_next_seq(a->spool, stream));
  a->counters.events++;
  if (a->out.fd >= 0) {
    ym_buf_reset(&a->line);
    if (ym_event_write(ev, &a->line) != 0 || output_write(&a->out, a->line.data, a->line.len) != 0)
      a->counters.dropped++;
  }
  if (a->spool != NULL) {
    /* Serialized once more without host.* and agent.*: the console knows
     * them from the agent's identity. */
    ym_buf_reset(&a->upline);
    if (ym_event_write_own(ev, &a->upline) != 0 || a->upline.len < 2 ||
        spool_append(a->spool, stream, a->upline.data, a->upline.len - 1) != 0)
      a->counters.dropped++;
  }
  /* Recent process starts and file events for triage bundles. */
  if (a->resp != NULL)
    respond_note_event(a->resp, ev, a->spool != NULL && a->upline.len >= 2 ? a->upline.data : NULL,
                       a->upline.len);
  /* Last: the alerts it raises are written through agent_emit again. */
  behave_event(a->beh, ev);
}

/* ---------------------------------------------------------------- */
/* Behaviour rules: the functions behave.h is given                   */

static void behave_emit(void *ctx, ym_event_t *ev) {
  agent_emit(ctx, ev);
}

static int behave_kill(void *ctx, int pid, const char *entity_id, behave_kill_done_fn done,
                       void *data) {
  agent_t *a = ctx;
  return respond_kill(a->resp, pid, entity_id, done, data);
}

static void behave_conf(const conf_t *c, behave_conf_t *out) {
  out->enabled = c->behaviour_enabled;
  for (int i = 0; i < 4; i++)
    out->response[i] = c->behaviour_response[i];
  out->rate_limit_ns = (int64_t)c->behaviour_rate_limit_s * 1000000000;
}

static int behave_start(agent_t *a) {
  behave_ops_t ops = {behave_emit, behave_kill, a, &a->base, &a->procs};
  behave_conf_t bc;
  behave_conf(a->conf, &bc);
  int rc = behave_new(&ops, &bc, &a->beh);
  if (rc == 0)
    behave_reload(a->beh, a->rules_dirs ? a->rules_dirs : &a->conf->rules_dirs,
                  a->rules_dirs ? &a->conf->rules_dirs : NULL);
  return rc;
}

static void on_spool_lost(spool_stream_t stream, const char *reason, uint64_t count,
                          bool count_known, int64_t first_ns, int64_t last_ns, void *data) {
  agent_t *a = data;
  emit_gap(a, "spool", reason, (int)stream, count, count_known, first_ns, last_ns);
}

void agent_emit_gap(agent_t *a, const char *source, const char *reason, uint64_t count,
                    bool known) {
  agent_emit_stream_gap(a, source, reason, -1, count, known);
}

void agent_emit_stream_gap(agent_t *a, const char *source, const char *reason, int stream,
                           uint64_t count, bool known) {
  emit_gap(a, source, reason, stream, count, known, 0, 0);
}

/* A gap record; first_ns and last_ns (0: unknown) bound when the lost
 * events happened. */
static void emit_gap(agent_t *a, const char *source, const char *reason, int stream, uint64_t count,
                     bool known, int64_t first_ns, int64_t last_ns) {
  ym_event_t *ev = agent_event(a);
  if (stream >= 0)
    ym_event_set_cstr(ev, YM_F_YAMORI_GAP_STREAM, stream == SPOOL_ALERTS ? "alerts" : "bulk");
  ym_event_set_cstr(ev, YM_F_EVENT_KIND, "event");
  ym_event_set_one(ev, YM_F_EVENT_CATEGORY, "host");
  ym_event_set_one(ev, YM_F_EVENT_TYPE, "info");
  ym_event_set_cstr(ev, YM_F_EVENT_ACTION, "gap");
  ym_event_set_cstr(ev, YM_F_EVENT_DATASET, "yamori.agent");
  ym_event_set_cstr(ev, YM_F_YAMORI_GAP_SOURCE, source);
  ym_event_set_cstr(ev, YM_F_YAMORI_GAP_REASON, reason);
  if (known)
    ym_event_set_int(ev, YM_F_YAMORI_GAP_COUNT, (int64_t)count);
  if (first_ns > 0 && last_ns > 0) {
    ym_event_set_time(ev, YM_F_EVENT_START, first_ns);
    ym_event_set_time(ev, YM_F_EVENT_END, last_ns);
  }
  a->counters.gaps++;
  agent_emit(a, ev);
  ym_log(YM_LOG_WARN, 0, "events lost: source %s, reason %s, count %s", source, reason,
         known ? "exact (see event)" : "unknown");
}

static void reload(agent_t *a) {
  ym_cfg_error_t err = {0};
  conf_t *c = conf_load(a->config_path, &err);
  if (c == NULL) {
    ym_log(YM_LOG_ERROR, 0, "configuration reload refused, keeping the running one: %s", err.msg);
    return;
  }
  const char *old_out = a->output_override ? a->output_override : a->conf->output;
  bool out_changed = a->output_override == NULL && strcmp(old_out, c->output) != 0;
  conf_t *old = a->conf;
  a->conf = c;
  ym_log_init("yamorid", (ym_log_level_t)conf_log_level(c));
  if (out_changed) {
    output_close(&a->out);
    int rc = output_init(&a->out, a->loop, c->output);
    if (rc != 0)
      ym_log(YM_LOG_ERROR, rc, "cannot open the event output %s", c->output);
  }
  if (a->det != NULL)
    detect_apply_conf(a->det);
  respond_reload(a->resp);
  if (a->beh != NULL) {
    behave_conf_t bc;
    behave_conf(c, &bc);
    behave_configure(a->beh, &bc);
    behave_reload(a->beh, a->rules_dirs ? a->rules_dirs : &c->rules_dirs,
                  a->rules_dirs ? &c->rules_dirs : NULL);
  }
  conf_free(old);
  ym_log(YM_LOG_NOTICE, 0, "configuration reloaded");
}

static void on_signal(uv_signal_t *s, int signum) {
  agent_t *a = s->data;
  if (signum == SIGHUP) {
    reload(a);
    return;
  }
  ym_log(YM_LOG_NOTICE, 0, "stopping on signal %d", signum);
  agent_stop(a);
}

/* The watchdog ping runs on the loop: if the loop hangs, the pings stop
 * and systemd restarts the agent. */
static void on_watchdog(uv_timer_t *t) {
  (void)t;
  notify_sd_send("WATCHDOG=1");
}

int agent_start(agent_t *a) {
  uv_signal_t *sigs[] = {&a->sig_term, &a->sig_int, &a->sig_hup};
  int nums[] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(a->loop, sigs[i]);
    sigs[i]->data = a;
    uv_signal_start(sigs[i], on_signal, nums[i]);
  }
  int rc;
  if (a->conf->process_sensor) {
    /* The network sensor first: the eBPF source delivers to it. */
    if ((rc = nsensor_new(a, &a->ns)) != 0) {
      ym_log(YM_LOG_ERROR, rc, "cannot start the network sensor");
      return rc;
    }
    if ((rc = psensor_new(a, &a->ps)) != 0 || (rc = psensor_start(a->ps)) != 0) {
      ym_log(YM_LOG_ERROR, rc, "cannot start the process sensor (netlink proc connector)");
      return rc;
    }
  }
  psensor_seed(a);
  if ((rc = update_new(a, &a->upd)) != 0)
    return rc;
  if ((rc = detect_new(a, &a->det)) != 0)
    return rc;
  if (a->conf->file_sensor) {
    if ((rc = fsensor_new(a, &a->fs)) != 0 || (rc = fsensor_start(a->fs)) != 0) {
      ym_log(YM_LOG_ERROR, rc, "cannot start the file sensor (fanotify)");
      return rc;
    }
  }
  if ((rc = control_new(a, &a->ctl)) != 0)
    ym_log(YM_LOG_ERROR, rc, "cannot open the control socket %s", a->conf->control_socket);
  if ((rc = respond_new(a, &a->resp)) != 0)
    ym_log(YM_LOG_ERROR, rc, "cannot take remote commands");
  if ((rc = behave_start(a)) != 0)
    return rc;
  char netwhy[192];
  bool net =
      a->ns != NULL && a->conf->network_enabled && psensor_net_state(a->ps, netwhy, sizeof(netwhy));
  ym_log(YM_LOG_NOTICE, 0,
         "sensors armed: process %s, file %s, network %s, exec guard %s; %zu processes known",
         a->ps ? "on" : "off", a->fs ? "on" : "off", net ? "on" : "off",
         a->conf->policy_exec == 0 ? "off" : (a->conf->policy_exec == 1 ? "detect" : "block"),
         a->procs.count);
  /* Readiness means protection is on: every sensor is armed. */
  notify_sd_send("READY=1");
  uint64_t wd_usec = notify_sd_watchdog_usec();
  uv_timer_init(a->loop, &a->watchdog);
  if (wd_usec >= 2000) {
    uint64_t ms = wd_usec / 2000; /* half the interval */
    uv_timer_start(&a->watchdog, on_watchdog, ms, ms);
  }
  return 0;
}

void agent_stop(agent_t *a) {
  if (a->stopping)
    return;
  a->stopping = true;
  notify_sd_send("STOPPING=1");
  if (a->watchdog.loop != NULL && !uv_is_closing((uv_handle_t *)&a->watchdog))
    uv_close((uv_handle_t *)&a->watchdog, NULL);
  psensor_stop(a->ps);
  nsensor_stop(a->ns); /* after the source: writes the open summaries */
  fsensor_stop(a->fs);
  detect_stop(a->det);
  uplink_free(a->up); /* its memory goes once the loop has run */
  a->up = NULL;
  update_free(a->upd); /* after the uplink: no download callback comes */
  a->upd = NULL;
  control_free(a->ctl);
  a->ctl = NULL;
  respond_stop(a->resp);
  /* Results of scans still running arrive through posts after the loop
   * ends; agent_close runs them. */
  uv_unref((uv_handle_t *)&a->post_async);
  uv_signal_t *sigs[] = {&a->sig_term, &a->sig_int, &a->sig_hup};
  for (int i = 0; i < 3; i++)
    if (sigs[i]->loop != NULL && !uv_is_closing((uv_handle_t *)sigs[i]))
      uv_close((uv_handle_t *)sigs[i], NULL);
}

void agent_close(agent_t *a) {
  if (!a->stopping)
    agent_stop(a);
  uv_run(a->loop, UV_RUN_DEFAULT);
  detect_drain(a->det); /* joins the scanner threads */
  run_posts(a);         /* their last results become events */
  detect_free(a->det);
  a->det = NULL;
  uv_close((uv_handle_t *)&a->post_async, NULL);
  spool_free(a->spool); /* writes what is batched */
  a->spool = NULL;
  output_close(&a->out);
  uv_run(a->loop, UV_RUN_DEFAULT); /* let the closed handles finish */
  respond_free(a->resp);
  a->resp = NULL;
  behave_free(a->beh); /* after the loop: its kills have finished */
  a->beh = NULL;
  uv_mutex_destroy(&a->post_lock);
  psensor_free(a->ps);
  nsensor_free(a->ns);
  fsensor_free(a->fs);
  hashcache_close(&a->hashes);
  proctab_close(&a->procs);
  ym_buf_free(&a->line);
  ym_buf_free(&a->upline);
  ym_event_free(&a->scratch);
  ym_event_free(&a->base);
  conf_free(a->conf);
  a->conf = NULL;
}
