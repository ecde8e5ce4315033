/*
 * The spool: events on disk until the console has committed them.
 *
 * Two streams, "alerts" and "bulk", each numbered by its own sequence
 * (yamori.stream_seq). Events are collected into batches in memory; a batch
 * is closed when it is full, when its timer fires (bulk: every few
 * seconds), or at once for an alert. A closed batch is compressed (gzip),
 * appended to the stream's current segment file as one record and fsync'd
 * off the loop thread; from then on it is "in the spool" and survives a
 * crash. The uplink reads records oldest first and tells the spool what the
 * console acknowledged; a segment is deleted when every record in it is
 * acknowledged.
 *
 * Disk format (docs/spool.md): segment files state_dir/spool/<stream>/
 * <first_seq as 16 hex>.seg, each a sequence of records: a 48-byte header
 * (magic "YMB1", version, stream, first/last sequence, count, sizes, CRC-32
 * of the payload, CRC-32 of the header) followed by the payload: gzip of the
 * batch's event lines (NDJSON). At start the segments are read back; a torn
 * record at the end of a segment is cut off; a record whose CRC does not
 * match is skipped and counted, and a segment whose structure is broken is
 * set aside (renamed *.corrupt) and counted; the rest is delivered.
 *
 * The spool has a size cap. Alerts may use all of it; bulk telemetry only
 * the cap minus a reserve for alerts. When bulk reaches its share, its oldest
 * segments are shed and a gap event in the bulk stream says exactly how many
 * events were shed.
 *
 * When a batch cannot be written (a full disk, a read-only remount, the
 * directory removed), the spool does not lose it at once and does not retry
 * at once: closed batches wait in memory, at most SPOOL_MEM_MAX bytes of
 * them (bulk telemetry goes first when that is exceeded, alerts last), and
 * one write is tried again after a delay that starts at SPOOL_RETRY_MIN_MS
 * and doubles up to SPOOL_RETRY_MAX_MS. Events that had to go are counted
 * per stream with the time range of their batches, and reported once,
 * through the lost callback (reason "spool_write_failed"), when a write
 * succeeds again; if the batch holding that report is itself lost, its
 * count goes back into the next report. So a failing disk costs a few
 * system calls per retry, never an event (or a log line) per failed write.
 * A missing stream directory is created again before a new segment.
 * Meanwhile spool_read_async() hands the uplink the batches waiting in
 * memory once everything on disk was sent, and spool_ack() drops those the
 * console acknowledged: alerts reach the console while the disk cannot be
 * written.
 *
 * Loop-thread handle (init/start/close), caller-owned storage.
 */
#ifndef YAMORI_AGENT_SPOOL_H
#define YAMORI_AGENT_SPOOL_H

#include "yamori/buf.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef enum { SPOOL_ALERTS = 0, SPOOL_BULK = 1 } spool_stream_t;
#define SPOOL_NSTREAMS 2

#define SPOOL_RECORD_HEADER 48
#define SPOOL_SEGMENT_MAX (4 * 1024 * 1024)
#define SPOOL_BATCH_MAX_EVENTS 2000
#define SPOOL_BATCH_MAX_RAW (1024 * 1024)
/* Batches waiting in memory while the disk cannot be written, in bytes. */
#define SPOOL_MEM_MAX (8 * 1024 * 1024)
/* Delays between write attempts while the disk cannot be written. */
#define SPOOL_RETRY_MIN_MS 1000
#define SPOOL_RETRY_MAX_MS 10000

typedef struct {
  uint64_t events_queued;  /* accepted into a batch */
  uint64_t events_spooled; /* written and fsync'd */
  uint64_t events_acked;
  uint64_t events_shed; /* removed by the cap (gap records say so) */
  uint64_t records_corrupt;
  uint64_t segments_corrupt;
  uint64_t bytes_on_disk;
  uint64_t batches_spooled;
  uint64_t write_errors;     /* writes that failed (each is retried or lost) */
  uint64_t events_unwritten; /* lost because they could not be written */
  uint64_t bytes_waiting;    /* closed batches in memory, not written yet */
  bool failing;              /* the last write failed; retrying with backoff */
} spool_stats_t;

/* One record ready to send: its sequence range and payload (gzip of the
 * event lines), read from disk. */
typedef struct {
  spool_stream_t stream;
  uint64_t first_seq, last_seq;
  uint32_t count;
  ym_buf_t payload;
} spool_batch_t;

typedef struct spool spool_t;

typedef struct {
  const char *dir;        /* state_dir/spool */
  uint64_t max_bytes;     /* cap on the spool's disk use */
  uint64_t alert_reserve; /* bytes bulk may never use */
  unsigned bulk_flush_ms; /* bulk batch timer */
} spool_opts_t;

/* Called (loop thread) when a batch has been spooled: the uplink may have
 * something new to send. */
typedef void (*spool_ready_cb)(void *data);
/* Called (loop thread) when events were shed (cap), found corrupt or
 * missing, or could not be written: the agent writes a gap event saying
 * so. count_known false: a broken segment whose event count could not be
 * read. first_ns and last_ns (wall clock; 0 when not known) bound when the
 * lost events were batched (reason "spool_write_failed"). */
typedef void (*spool_lost_cb)(spool_stream_t stream, const char *reason, uint64_t count,
                              bool count_known, int64_t first_ns, int64_t last_ns, void *data);

/* Opens dir (created 0700), recovers existing segments (see above) and
 * continues their sequences. */
int spool_new(uv_loop_t *loop, const spool_opts_t *opts, spool_ready_cb ready, spool_lost_cb lost,
              void *data, spool_t **out);
/* Reports, through the lost callback, the damage found while opening
 * (spool_new does not call it: the caller may not be ready yet). */
void spool_report_recovery(spool_t *s);

/* Writes what is batched, waits for writes in flight, frees. Loop thread;
 * runs the loop until the writes are done. While the disk cannot be
 * written it makes no new attempt: what waits in memory is lost (and
 * logged with its count), so stopping never waits for a disk. */
void spool_free(spool_t *s);

/* Appending an event is two steps: the caller takes the event's number in
 * the stream (and writes it into the event as yamori.stream_seq), then
 * hands over the serialized event. */
uint64_t spool_next_seq(spool_t *s, spool_stream_t stream);
/* Takes the serialized event (one JSON object, no newline) numbered with
 * the value spool_next_seq() just returned. Returns 0 or YM_ETOOBIG (an
 * event over 256 KiB: dropped and counted). */
int spool_append(spool_t *s, spool_stream_t stream, const char *line, size_t len);

/* Closes the open batches now (tests, shutdown). */
void spool_flush(spool_t *s);

/* The oldest record not acknowledged yet in stream, read from disk into b
 * (payload buffer owned by b: spool_batch_free). Returns 0, YM_ENOENT when
 * there is none, or an error. Blocking read: call from a worker thread
 * through spool_read_async. */
typedef void (*spool_read_cb)(int rc, spool_batch_t *b, void *data);
void spool_read_async(spool_t *s, spool_stream_t stream, spool_read_cb cb, void *data);
void spool_batch_free(spool_batch_t *b);

/* The console committed every event of stream up to and including seq. */
void spool_ack(spool_t *s, spool_stream_t stream, uint64_t seq);

/* True when stream has spooled records not acknowledged yet. */
bool spool_pending(const spool_t *s, spool_stream_t stream);

/* The last number stream has given to an event (0 before the first). It
 * survives restarts as the numbering does; once the spool is drained, the
 * console holds every number up to it except those a gap event accounts
 * for. */
uint64_t spool_last_seq(const spool_t *s, spool_stream_t stream);

void spool_stats(const spool_t *s, spool_stats_t *out);

/* A record header, decoded. */
typedef struct {
  spool_stream_t stream;
  uint64_t first_seq, last_seq;
  uint32_t count, raw_len, gz_len, crc;
} spool_rec_hdr_t;

/* Reads the records of one segment's bytes (a pure function, also the
 * fuzzed parser). Calls fn for each record whose header is well formed,
 * with payload_ok telling whether the payload's CRC-32 matches; stops at
 * the first malformed header or a record that runs past the end, and sets
 * *good_len to the end of the last well-formed record (the rest is a torn
 * write or damage). Returns the number of records whose payload did not
 * match its CRC. */
typedef void (*spool_record_fn)(const spool_rec_hdr_t *h, size_t offset, const uint8_t *payload,
                                bool payload_ok, void *data);
int spool_parse_segment(const uint8_t *buf, size_t len, spool_record_fn fn, void *data,
                        size_t *good_len);

/* Encodes a record header (for the writer and tests). */
void spool_encode_header(const spool_rec_hdr_t *h, uint8_t out[SPOOL_RECORD_HEADER]);

#endif
