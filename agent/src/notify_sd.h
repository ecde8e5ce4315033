/*
 * Service manager notifications (the sd_notify protocol), without
 * libsystemd.
 *
 * Under systemd with Type=notify, $NOTIFY_SOCKET names a datagram socket
 * (a path, or an abstract name written with a leading '@'); the service
 * sends "READY=1" once it serves, "WATCHDOG=1" at least every
 * $WATCHDOG_USEC microseconds, and "STOPPING=1" when it begins to stop.
 * Outside systemd (no $NOTIFY_SOCKET) every call does nothing and returns
 * 0, so the agent runs the same in a terminal, in tests and in a
 * container without systemd.
 */
#ifndef YAMORI_AGENT_NOTIFY_SD_H
#define YAMORI_AGENT_NOTIFY_SD_H

#include <stdint.h>

/* Sends state (e.g. "READY=1", newline-separated assignments) to the
 * socket named by $NOTIFY_SOCKET. Returns 0 (also when there is no such
 * variable), YM_EINVAL for a malformed socket name, or the error of the
 * send. Never blocks: the datagram is sent with MSG_DONTWAIT. */
int notify_sd_send(const char *state);

/* The watchdog interval asked for by the service manager, in
 * microseconds: $WATCHDOG_USEC when it is set, well-formed and, if
 * $WATCHDOG_PID is set too, names this process or its parent (the
 * launcher, which runs the agent as its child). 0 when there is no
 * watchdog for this process. */
uint64_t notify_sd_watchdog_usec(void);

#endif
