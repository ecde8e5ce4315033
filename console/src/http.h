/*
 * The console's HTTP server: libh2o on a libuv loop, TLS by OpenSSL,
 * HTTP/1.1 and HTTP/2 (ALPN), routes registered by path prefix.
 *
 * A handler gets an http_req_t with the whole request body (bounded by
 * max_body before the handler runs: 413 otherwise) and answers it exactly
 * once with http_reply(), now or later (after a database write). A reply to
 * a request whose client has gone is dropped safely: the http_req_t stays
 * valid until http_reply() is called, whatever the connection does.
 *
 * Before any handler runs, requests are counted per client address; over
 * the rate limit the server answers 429 with Retry-After itself.
 * Loop thread only.
 */
#ifndef YAMORI_CONSOLE_HTTP_H
#define YAMORI_CONSOLE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct http http_t;
typedef struct http_req http_req_t;

typedef struct {
  const char *listen;      /* "127.0.0.1:8443", "[::]:8443", "0.0.0.0:8443" */
  const char *cert_file;   /* PEM: the server certificate (and chain) */
  const char *key_file;    /* PEM: its private key */
  size_t max_body;         /* bytes on the wire, default 4 MiB */
  unsigned rate_per_ip;    /* requests per second per client address (burst 2x) */
} http_opts_t;

/* A handler. Returns nothing: it must call http_reply(req, ...) once. */
typedef void (*http_handler_t)(http_req_t *req, void *data);

int http_new(uv_loop_t *loop, const http_opts_t *opts, http_t **out);
/* Routes requests whose method is method ("POST", "GET") and whose path
 * starts with prefix ("/api/v1/events", "/api/v1/rules/"). First match wins. */
int http_route(http_t *h, const char *method, const char *prefix, http_handler_t fn, void *data);
/* Starts listening. */
int http_start(http_t *h);
/* Stops listening and closes connections; replies still pending are
 * dropped. */
void http_free(http_t *h);

/* Request accessors (valid until http_reply). */
const char *http_req_method(const http_req_t *r);
const char *http_req_path(const http_req_t *r, size_t *len);
const void *http_req_body(const http_req_t *r, size_t *len);
/* The value of a request header (case-insensitive name), NUL-terminated
 * copy valid until the reply, or NULL. */
const char *http_req_header(http_req_t *r, const char *name);
/* The client's address as text ("127.0.0.1"). */
const char *http_req_peer(const http_req_t *r);
/* Monotonic time the request arrived (for latency accounting). */
uint64_t http_req_start_ns(const http_req_t *r);

/* Answers with status and a body (copied) of content type
 * application/json; retry_after_s > 0 adds Retry-After. Frees req. */
void http_reply(http_req_t *r, int status, const char *body, size_t len, unsigned retry_after_s);
/* Shorthand: {"error": code, "message": msg}. */
void http_reply_error(http_req_t *r, int status, const char *code, const char *msg);

/* Counters for status and tests. */
typedef struct {
  uint64_t requests, replies, dropped_replies, rate_limited, too_large, tls_failures;
} http_stats_t;
void http_stats(const http_t *h, http_stats_t *out);

#endif
