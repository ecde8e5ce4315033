/*
 * The agent's sensors: platform-neutral logic that turns OS records
 * (os.h) into ECS events. Each sensor is a handle the agent allocates
 * (_new/_free) and starts; both run on the loop thread.
 */
#ifndef YAMORI_AGENT_SENSORS_H
#define YAMORI_AGENT_SENSORS_H

#include "agent.h"
#include "os.h"

typedef struct psensor psensor_t;
typedef struct fsensor fsensor_t;
typedef struct nsensor nsensor_t;

/* Process sensor: seeds the process table from the OS, then follows
 * process events. */
int psensor_new(agent_t *a, psensor_t **out);
int psensor_start(psensor_t *p);
/* Stops listening; pending start events still complete. */
void psensor_stop(psensor_t *p);
void psensor_free(psensor_t *p);
/* Adds the process sensor's source ("ebpf" or "proc_connector"), why eBPF
 * is not used, and the eBPF counters to the JSON object k. */
void psensor_status_json(const psensor_t *p, cJSON *k);

/* Sets the process.* fields of ev from the table entry e (the program,
 * its arguments as the table keeps them, user and parent). */
void psensor_event_process(agent_t *a, ym_event_t *ev, const proc_entry_t *e);

/* Whether the eBPF source delivers TCP connection events; why not in why. */
bool psensor_net_state(const psensor_t *p, char *why, size_t whylen);

/* The table entry for pid, read from the OS when the table does not know
 * it yet (NULL when the process is gone and unknown, or the table is
 * full). Usable whether or not the process sensor runs. */
proc_entry_t *psensor_lookup(agent_t *a, int pid);

/* Seeds the process table from the OS (all running processes). */
void psensor_seed(agent_t *a);

/* The file sensor saw pid open path for execution. */
void psensor_note_exec(agent_t *a, int pid, const char *path, size_t len);

/* File sensor. */
int fsensor_new(agent_t *a, fsensor_t **out);
int fsensor_start(fsensor_t *f);
void fsensor_stop(fsensor_t *f);
/* Handles the file events queued now (see os_fswatch_drain). */
void fsensor_drain(fsensor_t *f);
void fsensor_free(fsensor_t *f);

/* Network sensor: TCP connection events from the eBPF source (delivered
 * through the process sensor, which owns it), summarised per flow. */
int nsensor_new(agent_t *a, nsensor_t **out);
/* One connection record (from the process sensor's eBPF source). */
void nsensor_event(nsensor_t *n, const os_netev_t *ev);
/* Writes the summaries still open and stops the timer. */
void nsensor_stop(nsensor_t *n);
void nsensor_free(nsensor_t *n);
/* Adds network_sensor ("on" or "off (why)") and the counters to k. */
void nsensor_status_json(const nsensor_t *n, cJSON *k);

#endif
