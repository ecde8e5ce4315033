/*
 * The local NDJSON event feed (--output / "output" in the configuration):
 * a debugging and SIEM feature, independent of the console link.
 *
 * Lines are collected in a buffer and written when it passes 64 KiB, on a
 * 100 ms timer, and on close, so a storm of events costs few write calls.
 * Writes go to the page cache (or a pipe); the feed is not fsync'd.
 */
#ifndef YAMORI_AGENT_OUTPUT_H
#define YAMORI_AGENT_OUTPUT_H

#include "yamori/buf.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct {
  int fd; /* -1: no output */
  bool own_fd;
  ym_buf_t buf;
  uv_timer_t timer;
  uint64_t lines;
  uint64_t write_errors;
} output_t;

/* Opens dest: "" for none, "-" for stdout, else a file opened for
 * appending (created 0600, O_NOFOLLOW). */
int output_init(output_t *o, uv_loop_t *loop, const char *dest);
/* Appends one serialized line (with its '\n'). Returns 0 or YM_ETOOBIG when
 * the buffer is full even after a flush (the line is dropped). */
int output_write(output_t *o, const char *line, size_t len);
void output_flush(output_t *o);
/* Flushes, closes the file and the timer (uv_close; storage must live until
 * the loop has run once more). */
void output_close(output_t *o);

#endif
