/*
 * The agent context: one agent_t owns all agent state and is passed
 * explicitly; it lives on the loop thread.
 *
 * Events flow: a sensor builds an event in agent_event()'s scratch event
 * (or in one of its own while waiting for enrichment) and hands it to
 * agent_emit(), which adds the common fields (event.created,
 * event.sequence, and host.* / agent.* / ecs.version from the base event),
 * serializes it once and writes it to the outputs.
 */
#ifndef YAMORI_AGENT_AGENT_H
#define YAMORI_AGENT_AGENT_H

#include "conf.h"
#include "hashcache.h"
#include "output.h"
#include "proctab.h"
#include "spool.h"

#include "yamori/event.h"

#include <cjson/cJSON.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct psensor;
struct fsensor;
struct nsensor;
struct detect;
struct control;
struct update;
struct respond;
struct behave;
struct agent;

typedef void (*agent_post_fn)(struct agent *a, void *arg);

/* A call waiting to run on the loop thread. */
typedef struct agent_post {
  struct agent_post *next;
  agent_post_fn fn;
  void *arg;
} agent_post_t;

typedef struct {
  uint64_t events; /* events written */
  uint64_t file_events;
  uint64_t process_events;
  uint64_t network_events;
  uint64_t gaps;                 /* gap records written */
  uint64_t lost_file;            /* fanotify overflows (count unknown each) */
  uint64_t lost_process;         /* process events known lost */
  uint64_t lost_process_unknown; /* receive overruns (count unknown) */
  uint64_t hash_skipped;         /* start events sent without a hash */
  uint64_t dropped;              /* events that could not be serialized */
} agent_counters_t;

typedef struct agent {
  uv_loop_t *loop;
  conf_t *conf;            /* current snapshot, swapped on reload */
  const char *config_path; /* NULL: built-in defaults */
  const char *output_override;
  output_t out;
  ym_event_t base;
  ym_event_t scratch;
  ym_buf_t line;
  uint64_t seq;
  pid_t self_pid;
  char agent_id[40];
  char boot_id[40];
  int64_t boot_ns;
  long clock_ticks;
  proctab_t procs;
  hashcache_t hashes;
  struct psensor *ps;
  struct fsensor *fs;
  struct nsensor *ns; /* network events (nsensor in sensors.h) */
  struct detect *det;
  spool_t *spool;    /* NULL when spool.enabled is false */
  struct uplink *up; /* NULL without a spool */
  ym_buf_t upline;   /* the event as uploaded (without host.* and agent.*) */
  struct control *ctl;
  struct update *upd;
  /* The rule directories when signed rules bundles are active (the update
   * module owns them); NULL: conf->rules_dirs. */
  const ym_strlist_t *rules_dirs;
  struct respond *resp; /* remote response commands; NULL when not started */
  struct behave *beh;   /* behaviour rules (behave.h); NULL when not started */
  uv_async_t post_async;
  uv_mutex_t post_lock;
  agent_post_t *post_head, *post_tail;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t watchdog; /* pings the service manager's watchdog (notify_sd.h) */
  bool stopping;
  agent_counters_t counters;
} agent_t;

/* Prepares the agent with the configuration snapshot conf (ownership
 * passes to the agent, even on error). config_path is kept for reloads. */
int agent_init(agent_t *a, uv_loop_t *loop, conf_t *conf, const char *config_path,
               const char *output_override);
/* Starts the sensors and signal handling. */
int agent_start(agent_t *a);
/* Stops sensors and closes handles; run the loop afterwards to finish. */
void agent_stop(agent_t *a);
/* Frees what agent_init allocated (after the loop has finished). */
void agent_close(agent_t *a);

/* The scratch event, reset (loop thread only; valid until the next call). */
ym_event_t *agent_event(agent_t *a);
/* Completes and writes ev. */
void agent_emit(agent_t *a, ym_event_t *ev);
/* Writes a gap record: source lost count events (known tells whether the
 * count is exact) for reason. */
void agent_emit_gap(agent_t *a, const char *source, const char *reason, uint64_t count, bool known);
/* The same for events lost from an upload stream (spool or uplink): the
 * record names the stream and travels in the alerts stream, which is shed
 * last, so that the account of what was lost is not lost itself. */
void agent_emit_stream_gap(agent_t *a, const char *source, const char *reason, int stream,
                           uint64_t count, bool known);

/* Runs fn(a, arg) on the loop thread soon; callable from any thread. After
 * the agent stopped, fn still runs (during agent_close) so that arg is
 * freed. */
void agent_post(agent_t *a, agent_post_fn fn, void *arg);

/* Adds every counter of the agent (sensors, detection, spool, uplink) to
 * the JSON object k: the status command and the check-in share it. */
void agent_counters_json(agent_t *a, cJSON *k);

/* Wall-clock nanoseconds now. */
int64_t agent_now_ns(void);

#endif
