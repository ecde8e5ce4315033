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
 * Loop thread only. The process must ignore SIGPIPE (libuv writes to
 * sockets with write(2)).
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
  const char *listen;    /* "127.0.0.1:8443", "[::]:8443", "0.0.0.0:8443" */
  const char *cert_file; /* PEM: the server certificate (and chain) */
  const char *key_file;  /* PEM: its private key */
  size_t max_body;       /* bytes on the wire, 0: 4 MiB; at most 256 MiB. Larger
                            bodies get 413; h2o reads at most twice this much
                            (over HTTP/2, a larger body gets a stream reset). */
  unsigned rate_per_ip;  /* requests per second per client address (burst 2x),
                            0: 100; at most 1,000,000. IPv6 clients count per /64. */
} http_opts_t;

/* A handler. Returns nothing: it must call http_reply(req, ...) once. */
typedef void (*http_handler_t)(http_req_t *req, void *data);

/* Loads the certificate chain and key and parses the listen address (an
 * IPv4 or bracketed IPv6 literal with a port; port 0 picks a free one).
 * Returns 0, YM_EINVAL, a file error (YM_ENOENT, YM_EPERM) or YM_ECRYPTO. */
int http_new(uv_loop_t *loop, const http_opts_t *opts, http_t **out);
/* Routes requests whose method is method ("POST", "GET") and whose
 * (normalized, percent-decoded) path starts with prefix at a segment
 * boundary: "/api/v1/events" matches itself and "/api/v1/events/x" but not
 * "/api/v1/eventsx"; "/api/v1/rules/" matches everything below it. First
 * match wins. A path that some route matches with another method gets 405,
 * any other path 404. */
int http_route(http_t *h, const char *method, const char *prefix, http_handler_t fn, void *data);
/* Starts listening. Returns 0, YM_EBUSY (already started) or the bind or
 * listen error. */
int http_start(http_t *h);
/* The bound TCP port after http_start() (useful with port 0), or -1. */
int http_port(const http_t *h);
/* Stops listening and closes connections; clients of replies still
 * pending get 503, and the handlers' later http_reply() calls only free
 * their requests. May be called from a loop callback (a signal handler).
 * The memory is released by close callbacks once every connection has
 * gone, as with uv_close(): run the loop before uv_loop_close(). */
void http_free(http_t *h);

/* Request accessors (valid until http_reply, whatever the client does:
 * method, path and body are copies). The path is h2o's normalized form:
 * without the query, percent-decoded, dot segments resolved; it contains
 * no control characters (such requests get 400). */
const char *http_req_method(const http_req_t *r);
const char *http_req_path(const http_req_t *r, size_t *len);
const void *http_req_body(const http_req_t *r, size_t *len);
/* The value of a request header (case-insensitive name; the first one when
 * repeated), NUL-terminated copy valid until the reply, or NULL: absent,
 * longer than 8 KiB, containing a NUL byte, or asked for the first time
 * after the client has gone. */
const char *http_req_header(http_req_t *r, const char *name);
/* The client's address as text ("127.0.0.1"). */
const char *http_req_peer(const http_req_t *r);
/* Monotonic time the request arrived (for latency accounting). */
uint64_t http_req_start_ns(const http_req_t *r);

/* Answers with status and a body (copied) of content type
 * application/json; retry_after_s > 0 adds Retry-After. Frees req. A
 * status outside 200-299 and 400-599 (or 204, 205) is sent as 500: the
 * server never redirects. */
void http_reply(http_req_t *r, int status, const char *body, size_t len, unsigned retry_after_s);
/* A response header for http_reply_ex(). */
typedef struct {
  const char *name, *value;
} http_header_t;
/* Answers with status, content type, extra headers (names in lower case;
 * a content-security-policy given here replaces the server's default one)
 * and a body (copied; an empty body is sent as "{}" only for JSON). Frees
 * req. The server's security headers are added as for http_reply. */
void http_reply_ex(http_req_t *r, int status, const char *content_type, const http_header_t *hdrs,
                   size_t n_hdrs, const void *body, size_t len);
/* The query string (after '?', not decoded), "" when none. */
const char *http_req_query(const http_req_t *r);

/* Shorthand: {"error": code, "message": msg}. */
void http_reply_error(http_req_t *r, int status, const char *code, const char *msg);

/* Counters for status and tests: requests that reached the server's
 * dispatcher (or that h2o refused itself), responses sent, replies whose
 * client had gone, 429s, 413s, and failed or timed-out TLS handshakes. */
typedef struct {
  uint64_t requests, replies, dropped_replies, rate_limited, too_large, tls_failures;
} http_stats_t;
void http_stats(const http_t *h, http_stats_t *out);

#endif
