/*
 * The console's HTTP server (see http.h): libh2o 2.2.5 built for libuv.
 *
 * Connections. The listener accepts each TCP connection into a conn_t (a
 * uv_tcp_t that h2o wraps in an h2o_socket_t), runs the TLS handshake under
 * a deadline and hands the socket to h2o's HTTP/2 or HTTP/1.1 code by the
 * ALPN result. This path is ours rather than h2o_accept() so that failed
 * and timed-out handshakes are counted and so that http_free() knows every
 * socket. The h2o socket's on_close hook tells the conn_t when h2o has
 * disposed of the socket; the uv close callback frees the conn_t.
 *
 * Requests. h2o parses the request and buffers its whole body, then calls
 * the one h2o handler, dispatch(), which in order: refuses over the rate
 * limit (429), refuses a body over max_body (413), refuses a path with
 * control characters (400), looks the route up (404, 405), copies method,
 * path and body into a new http_req_t, and calls the route's handler. A
 * filter adds the API's security headers to every response, and turns
 * h2o's own error responses (text/plain) into JSON ones.
 *
 * Request lifetime. The http_req_t is allocated by dispatch() and freed by
 * http_reply(), by nothing else, so a handler may keep it as long as it
 * needs. The h2o_req_t belongs to h2o and disappears whenever the client
 * resets the stream or closes the connection. A small link object lives in
 * the h2o request's memory pool and points back to the http_req_t; when h2o
 * clears the pool, the link's dispose callback clears http_req_t.req, which
 * means "the client has gone". http_reply() detaches the link before it
 * gives the response to h2o, so the callback never sees a freed http_req_t.
 * A reply to a request whose client has gone is freed and counted in
 * dropped_replies. h2o 2.2.5 stops reading an HTTP/1.1 connection while
 * its request is processed, so it notices a client that left only when the
 * reply fails to write; http_reply() therefore asks the kernel
 * (POLLRDHUP) whether the peer has closed, counts such a reply as dropped
 * and closes the connection after it.
 *
 * Shutdown. http_free() answers every pending request 503 and detaches it
 * (http_req_t.h = NULL: a later http_reply() only frees it), closes the
 * listener and shuts every socket down, so that h2o sees EOF or EPIPE and
 * closes the connection itself; meanwhile the stuck-write sweep (see
 * "Stuck writes") keeps the loop alive. When the last connection has gone,
 * the h2o context and configuration are disposed of and two idle handles
 * are closed one after the other; the second close callback frees the
 * http_t, after the loop has finished closing the timers of the h2o
 * context.
 */
#include "http.h"

#include "yamori/buf.h"
#include "yamori/err.h"
#include "yamori/json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <h2o.h>
#include <h2o/http1.h>
#include <h2o/http2.h>

#define DEFAULT_MAX_BODY ((size_t)4 * 1024 * 1024)
#define MAX_BODY_LIMIT ((size_t)256 * 1024 * 1024)
#define DEFAULT_RATE 100u
#define MAX_RATE 1000000u
#define HEADER_VALUE_MAX 8192
#define LISTEN_BACKLOG 511
/* HTTP/1.1: the whole request (headers and body) must arrive within this
 * time (h2o 2.2.5 does not restart the timer on progress); a 4 MiB batch
 * then needs about 600 kbit/s. */
#define HTTP1_REQ_TIMEOUT_MS 60000
#define HANDSHAKE_TIMEOUT_MS 10000

/* Rate limiter: RL_SETS sets of RL_WAYS buckets, least recently used
 * bucket replaced; tokens are counted in millionths of a request. */
#define RL_SETS 1024
#define RL_WAYS 4
#define RL_TOKEN 1000000u
#define RL_FULL_AFTER_NS (10ull * 1000 * 1000 * 1000)

#define ALLOW_MAX 128

/* Stuck-write sweep intervals (see "Stuck writes"). */
#define SWEEP_MS 1000
#define SWEEP_FREEING_MS 50

/* ---------------------------------------------------------------- */
/* Types                                                              */

typedef struct {
  char *method;
  size_t method_len;
  char *prefix;
  size_t prefix_len;
  http_handler_t fn;
  void *data;
} route_t;

typedef struct {
  uv_tcp_t tcp;
  http_t *h;
  h2o_socket_t *sock;            /* NULL once h2o has disposed of the socket */
  h2o_timeout_entry_t handshake; /* linked while the TLS handshake runs */
  struct timeval connected_at;
  bool stuck_seen;     /* the last sweep found a write that cannot complete */
  h2o_linklist_t link; /* in http_t.conns until the uv handle is closed */
} conn_t;

/* Allocated in the h2o request's pool; see "Request lifetime" above. */
typedef struct {
  http_req_t *r; /* NULL once the reply has been handed to h2o */
} req_link_t;

typedef struct header_copy {
  struct header_copy *next;
  char *name;   /* as the handler asked for it */
  char value[]; /* value, NUL, name, NUL */
} header_copy_t;

struct http_req {
  http_t *h;              /* NULL after http_free() */
  h2o_req_t *req;         /* NULL once the client has gone */
  req_link_t *link;       /* NULL with req */
  h2o_linklist_t pending; /* in http_t.pending while h is not NULL */
  uint64_t start_ns;
  const char *method;
  const char *path;
  size_t path_len;
  const char *body;
  size_t body_len;
  const char *query; /* after '?', "" when none */
  header_copy_t *headers;
  char peer[INET6_ADDRSTRLEN];
  char data[]; /* method, path and body, each followed by a NUL */
};

typedef struct {
  uint8_t key[16]; /* IPv4-mapped address, or the /64 of an IPv6 address */
  bool used;
  uint64_t seen_ns;
  uint64_t tokens;
} bucket_t;

typedef struct {
  h2o_handler_t super;
  http_t *h;
} dispatch_handler_t;

typedef struct {
  h2o_filter_t super;
  http_t *h;
} headers_filter_t;

/* Replaces the body of one of h2o's own error responses. */
typedef struct {
  h2o_ostream_t super;
  h2o_iovec_t body;
} error_ostream_t;

enum listener_state { LISTENER_NONE, LISTENER_OPEN, LISTENER_CLOSING, LISTENER_CLOSED };

struct http {
  uv_loop_t *loop;
  size_t max_body;
  unsigned rate;
  struct sockaddr_storage addr;
  SSL_CTX *ssl;
  h2o_globalconf_t config;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept;
  uv_tcp_t listener;
  enum listener_state listener_state;
  int port;
  uv_timer_t sweep;           /* see "Stuck writes" */
  uv_idle_t close_a, close_b; /* closed in turn to free the http_t */
  bool freeing, finished;
  route_t *routes;
  size_t n_routes, cap_routes;
  h2o_linklist_t conns;
  size_t n_conns;
  h2o_linklist_t pending;
  bucket_t *buckets;
  uint64_t seed[2];
  http_stats_t stats;
};

/* Server preference order: HTTP/2 first. */
static const h2o_iovec_t alpn_protocols[] = {{"h2", 2}, {"http/1.1", 8}, {NULL, 0}};

static void maybe_finish(http_t *h);

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (p == NULL)
    abort();
  return p;
}

/* ---------------------------------------------------------------- */
/* Responses                                                          */

static const char *reason_of(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 413:
    return "Payload Too Large";
  case 415:
    return "Unsupported Media Type";
  case 417:
    return "Expectation Failed";
  case 422:
    return "Unprocessable Content";
  case 429:
    return "Too Many Requests";
  case 500:
    return "Internal Server Error";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  default:
    return status < 400 ? "OK" : "Error";
  }
}

static bool status_allowed(int status) {
  return (status >= 200 && status <= 299 && status != 204 && status != 205) ||
         (status >= 400 && status <= 599);
}

static bool is_head(const h2o_req_t *req) {
  return h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"));
}

/* Sends a complete JSON response: the body is copied into the request's
 * pool first, so it may point into memory the caller frees right after.
 * h2o may dispose of req before this returns. */
static void send_body(h2o_req_t *req, int status, const char *type, const http_header_t *hdrs,
                      size_t n_hdrs, const char *body, size_t len, unsigned retry_after_s,
                      const char *allow) {
  static h2o_generator_t generator = {NULL, NULL};
  h2o_iovec_t buf = {NULL, 0};
  if ((body == NULL || len == 0) && strcmp(type, "application/json") == 0) {
    body = "{}";
    len = 2;
  } else if (body == NULL) {
    body = "";
    len = 0;
  }
  buf.base = h2o_mem_alloc_pool(&req->pool, len > 0 ? len : 1);
  if (len > 0)
    memcpy(buf.base, body, len);
  buf.len = len;

  req->res.status = status;
  req->res.reason = reason_of(status);
  req->res.content_length = len;
  h2o_iovec_t t = h2o_strdup(&req->pool, type, SIZE_MAX);
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, t.base, t.len);
  for (size_t i = 0; i < n_hdrs; i++) {
    h2o_iovec_t name = h2o_strdup(&req->pool, hdrs[i].name, SIZE_MAX);
    h2o_iovec_t value = h2o_strdup(&req->pool, hdrs[i].value, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, name.base, name.len, 0, NULL, value.base,
                          value.len);
  }
  if (retry_after_s > 0) {
    char *v = h2o_mem_alloc_pool(&req->pool, 16);
    int n = snprintf(v, 16, "%u", retry_after_s);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v, (size_t)n);
  }
  if (allow != NULL) {
    h2o_iovec_t a = h2o_strdup(&req->pool, allow, SIZE_MAX);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, a.base, a.len);
  }
  h2o_start_response(req, &generator);
  h2o_send(req, &buf, is_head(req) ? 0 : 1, H2O_SEND_STATE_FINAL);
}

static void send_json(h2o_req_t *req, int status, const char *body, size_t len,
                      unsigned retry_after_s, const char *allow) {
  send_body(req, status, "application/json", NULL, 0, body, len, retry_after_s, allow);
}

/* A response of the server itself (not of a handler). code and msg are
 * constants that need no JSON escaping. */
static void send_error(http_t *h, h2o_req_t *req, int status, const char *code, const char *msg,
                       unsigned retry_after_s, const char *allow) {
  char body[256];
  int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}", code, msg);
  if (n < 0 || (size_t)n >= sizeof(body))
    n = 0;
  h->stats.replies++;
  send_json(req, status, body, (size_t)n, retry_after_s, allow);
}

/* ---------------------------------------------------------------- */
/* Security headers, and JSON for h2o's own errors                    */

static void add_header(h2o_req_t *req, const char *name, const char *value) {
  h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, value,
                        strlen(value));
}

static bool response_is_json(h2o_req_t *req) {
  ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
  return i >= 0 && h2o_memis(req->res.headers.entries[i].value.base,
                             req->res.headers.entries[i].value.len, H2O_STRLIT("application/json"));
}

static void error_ostream_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n,
                               h2o_send_state_t state) {
  error_ostream_t *o = (error_ostream_t *)self;
  (void)bufs;
  (void)n;
  if (state == H2O_SEND_STATE_FINAL && !is_head(req))
    h2o_ostream_send_next(self, req, &o->body, 1, state);
  else
    h2o_ostream_send_next(self, req, NULL, 0, state);
}

/* h2o answers some malformed or oversized requests itself (400, 413, 417)
 * with a text body; the API promises JSON bodies, so such a response gets
 * one with the same status. */
static void rewrite_h2o_error(http_t *h, h2o_req_t *req, h2o_ostream_t ***slot) {
  const char *code = "http_error", *msg = "the request was refused";
  switch (req->res.status) {
  case 400:
    code = "bad_request";
    msg = "malformed request";
    break;
  case 413:
    code = "too_large";
    msg = "the request body exceeds the size limit";
    h->stats.too_large++;
    break;
  case 417:
    code = "expectation_failed";
    msg = "unsupported Expect header";
    break;
  default:
    break;
  }
  h->stats.requests++;
  h->stats.replies++;
  char *json = h2o_mem_alloc_pool(&req->pool, 256);
  int n = snprintf(json, 256, "{\"error\":\"%s\",\"message\":\"%s\"}", code, msg);
  h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                 H2O_STRLIT("application/json"), 1);
  req->res.content_length = (size_t)n;
  error_ostream_t *o = (error_ostream_t *)h2o_add_ostream(req, sizeof(*o), *slot);
  o->super.do_send = error_ostream_send;
  o->body = h2o_iovec_init(json, (size_t)n);
  *slot = &o->super.next;
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot) {
  http_t *h = ((headers_filter_t *)self)->h;
  if (req->res.status >= 400 && !response_is_json(req))
    rewrite_h2o_error(h, req, &slot);
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                 H2O_STRLIT("no-store"));
  add_header(req, "x-content-type-options", "nosniff");
  add_header(req, "x-frame-options", "DENY");
  if (h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("content-security-policy"), -1) < 0)
    add_header(req, "content-security-policy", "default-src 'none'; frame-ancestors 'none'");
  add_header(req, "referrer-policy", "no-referrer");
  add_header(req, "cross-origin-resource-policy", "same-origin");
  h2o_setup_next_ostream(req, slot);
}

/* ---------------------------------------------------------------- */
/* Rate limit                                                         */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

/* The set of a key, keyed with a random seed so that clients cannot aim
 * their addresses at one set. */
static bucket_t *bucket_set(http_t *h, const uint8_t key[16]) {
  uint64_t a, b;
  memcpy(&a, key, 8);
  memcpy(&b, key + 8, 8);
  uint64_t x = mix64(mix64(a ^ h->seed[0]) ^ b ^ h->seed[1]);
  return h->buckets + (size_t)(x % RL_SETS) * RL_WAYS;
}

/* Token bucket: rate tokens a second, at most 2 * rate; one per request. */
static bool rate_allow(http_t *h, const uint8_t key[16], uint64_t now) {
  bucket_t *set = bucket_set(h, key), *b = NULL, *victim = set;
  const uint64_t full = (uint64_t)h->rate * 2 * RL_TOKEN;
  for (size_t i = 0; i < RL_WAYS; i++) {
    bucket_t *c = set + i;
    if (c->used && memcmp(c->key, key, 16) == 0) {
      b = c;
      break;
    }
    if (victim->used && (!c->used || c->seen_ns < victim->seen_ns))
      victim = c;
  }
  if (b == NULL) {
    b = victim;
    memcpy(b->key, key, 16);
    b->used = true;
    b->tokens = full;
  } else {
    uint64_t elapsed = now > b->seen_ns ? now - b->seen_ns : 0;
    if (elapsed >= RL_FULL_AFTER_NS)
      b->tokens = full;
    else
      b->tokens += elapsed * h->rate / 1000; /* millionths of a token per ns */
    if (b->tokens > full)
      b->tokens = full;
  }
  b->seen_ns = now;
  if (b->tokens < RL_TOKEN)
    return false;
  b->tokens -= RL_TOKEN;
  return true;
}

/* The client's address as text and as rate-limit key. IPv4-mapped IPv6
 * addresses count as IPv4; other IPv6 addresses count per /64, the block
 * one client usually owns. */
static void peer_of(h2o_req_t *req, uint8_t key[16], char *text, size_t size) {
  struct sockaddr_storage ss;
  memset(key, 0, 16);
  snprintf(text, size, "unknown");
  socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
  if (len == 0)
    return;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &sin->sin_addr, 4);
    inet_ntop(AF_INET, &sin->sin_addr, text, (socklen_t)size);
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      memcpy(key, &sin6->sin6_addr, 16);
      inet_ntop(AF_INET, (const uint8_t *)&sin6->sin6_addr + 12, text, (socklen_t)size);
    } else {
      memcpy(key, &sin6->sin6_addr, 8);
      inet_ntop(AF_INET6, &sin6->sin6_addr, text, (socklen_t)size);
    }
  }
}

/* ---------------------------------------------------------------- */
/* Requests                                                           */

static void on_link_dispose(void *p) {
  req_link_t *link = p;
  if (link->r != NULL) {
    link->r->req = NULL;
    link->r->link = NULL;
  }
}

static bool path_acceptable(h2o_iovec_t path) {
  for (size_t i = 0; i < path.len; i++) {
    unsigned char c = (unsigned char)path.base[i];
    if (c < 0x20 || c == 0x7f)
      return false;
  }
  return path.len > 0 && path.base[0] == '/';
}

static bool route_matches_path(const route_t *rt, h2o_iovec_t path) {
  if (path.len < rt->prefix_len || memcmp(path.base, rt->prefix, rt->prefix_len) != 0)
    return false;
  return rt->prefix[rt->prefix_len - 1] == '/' || path.len == rt->prefix_len ||
         path.base[rt->prefix_len] == '/';
}

/* Finds the route for req, or NULL with the methods that the path allows
 * in allow (empty when none). */
static const route_t *find_route(const http_t *h, const h2o_req_t *req, h2o_iovec_t path,
                                 char allow[ALLOW_MAX]) {
  allow[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < h->n_routes; i++) {
    const route_t *rt = &h->routes[i];
    if (!route_matches_path(rt, path))
      continue;
    if (h2o_memis(req->method.base, req->method.len, rt->method, rt->method_len))
      return rt;
    /* Remember the method for Allow, once. */
    bool seen = false;
    for (size_t j = 0; j < i; j++)
      if (route_matches_path(&h->routes[j], path) && strcmp(h->routes[j].method, rt->method) == 0)
        seen = true;
    if (!seen && used + rt->method_len + 3 < ALLOW_MAX) {
      used +=
          (size_t)snprintf(allow + used, ALLOW_MAX - used, "%s%s", used ? ", " : "", rt->method);
    }
  }
  return NULL;
}

static http_req_t *req_new(http_t *h, h2o_req_t *req, h2o_iovec_t path, const char *peer,
                           uint64_t now) {
  size_t mlen = req->method.len, blen = req->entity.len, qlen = 0;
  const char *q = NULL;
  if (req->query_at != SIZE_MAX && req->query_at < req->path.len) {
    q = req->path.base + req->query_at + 1;
    qlen = req->path.len - req->query_at - 1;
  }
  http_req_t *r = malloc(sizeof(*r) + mlen + 1 + path.len + 1 + blen + 1 + qlen + 1);
  if (r == NULL)
    return NULL;
  memset(r, 0, sizeof(*r));
  char *p = r->data;
  memcpy(p, req->method.base, mlen);
  p[mlen] = '\0';
  r->method = p;
  p += mlen + 1;
  memcpy(p, path.base, path.len);
  p[path.len] = '\0';
  r->path = p;
  r->path_len = path.len;
  p += path.len + 1;
  if (blen > 0)
    memcpy(p, req->entity.base, blen);
  p[blen] = '\0';
  r->body = p;
  r->body_len = blen;
  p += blen + 1;
  if (qlen > 0)
    memcpy(p, q, qlen);
  p[qlen] = '\0';
  r->query = p;
  snprintf(r->peer, sizeof(r->peer), "%s", peer);
  r->start_ns = now;
  r->h = h;
  r->req = req;
  r->link = h2o_mem_alloc_shared(&req->pool, sizeof(req_link_t), on_link_dispose);
  r->link->r = r;
  h2o_linklist_insert(&h->pending, &r->pending);
  return r;
}

static void req_free(http_req_t *r) {
  while (r->headers != NULL) {
    header_copy_t *c = r->headers;
    r->headers = c->next;
    free(c);
  }
  free(r);
}

/* The h2o handler of every path: see "Requests" at the top. */
static int dispatch(h2o_handler_t *self, h2o_req_t *req) {
  http_t *h = ((dispatch_handler_t *)self)->h;
  h->stats.requests++;
  if (h->freeing) {
    req->http1_is_persistent = 0;
    send_error(h, req, 503, "unavailable", "the server is shutting down", 1, NULL);
    return 0;
  }
  uint8_t key[16];
  char peer[INET6_ADDRSTRLEN];
  peer_of(req, key, peer, sizeof(peer));
  uint64_t now = uv_hrtime();
  if (!rate_allow(h, key, now)) {
    h->stats.rate_limited++;
    send_error(h, req, 429, "rate_limited", "too many requests; retry later", 1, NULL);
    return 0;
  }
  if (req->entity.len > h->max_body) {
    h->stats.too_large++;
    send_error(h, req, 413, "too_large", "the request body exceeds the size limit", 0, NULL);
    return 0;
  }
  h2o_iovec_t path = req->path_normalized;
  if (!path_acceptable(path)) {
    send_error(h, req, 400, "bad_request", "malformed path", 0, NULL);
    return 0;
  }
  char allow[ALLOW_MAX];
  const route_t *rt = find_route(h, req, path, allow);
  if (rt == NULL) {
    if (allow[0] != '\0')
      send_error(h, req, 405, "method_not_allowed", "method not allowed for this path", 0, allow);
    else
      send_error(h, req, 404, "not_found", "no such path", 0, NULL);
    return 0;
  }
  http_req_t *r = req_new(h, req, path, peer, now);
  if (r == NULL) {
    send_error(h, req, 503, "unavailable", "out of memory", 1, NULL);
    return 0;
  }
  /* r may be freed by the time the handler returns. */
  rt->fn(r, rt->data);
  return 0;
}

/* True when the peer of an HTTP/1.1 request has closed its side of the
 * connection (h2o is not reading it while the request is processed). */
static bool http1_peer_closed(h2o_req_t *req) {
  h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
  int fd = sock != NULL ? h2o_socket_get_fd(sock) : -1;
  if (fd < 0)
    return false;
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

static void reply(http_req_t *r, int status, const char *type, const http_header_t *hdrs,
                  size_t n_hdrs, const char *body, size_t len, unsigned retry_after_s) {
  if (r == NULL)
    return;
  http_t *h = r->h;
  h2o_req_t *req = r->req;
  if (h == NULL) {
    req_free(r);
    return;
  }
  h2o_linklist_unlink(&r->pending);
  if (req == NULL) {
    h->stats.dropped_replies++;
    req_free(r);
    return;
  }
  r->link->r = NULL;
  r->link = NULL;
  r->req = NULL;
  if (req->version < 0x200 && http1_peer_closed(req)) {
    h->stats.dropped_replies++;
    req->http1_is_persistent = 0;
  } else {
    h->stats.replies++;
  }
  if (!status_allowed(status)) {
    status = 500;
    body = "{\"error\":\"internal\",\"message\":\"invalid response status\"}";
    len = strlen(body);
    type = "application/json";
    n_hdrs = 0;
  }
  send_body(req, status, type, hdrs, n_hdrs, body, len, retry_after_s, NULL);
  req_free(r);
}

void http_reply(http_req_t *r, int status, const char *body, size_t len, unsigned retry_after_s) {
  reply(r, status, "application/json", NULL, 0, body, len, retry_after_s);
}

void http_reply_ex(http_req_t *r, int status, const char *content_type, const http_header_t *hdrs,
                   size_t n_hdrs, const void *body, size_t len) {
  reply(r, status, content_type, hdrs, n_hdrs, body, len, 0);
}

const char *http_req_query(const http_req_t *r) {
  return r->query;
}

void http_reply_error(http_req_t *r, int status, const char *code, const char *msg) {
  ym_buf_t b;
  ym_buf_init(&b, 4096);
  int rc = ym_buf_append_str(&b, "{\"error\":");
  if (rc == 0)
    rc = ym_json_append_string(&b, code ? code : "error", code ? strlen(code) : 5);
  if (rc == 0)
    rc = ym_buf_append_str(&b, ",\"message\":");
  if (rc == 0)
    rc = ym_json_append_string(&b, msg ? msg : "", msg ? strlen(msg) : 0);
  if (rc == 0)
    rc = ym_buf_append_byte(&b, '}');
  if (rc == 0)
    http_reply(r, status, b.data, b.len, 0);
  else
    http_reply(r, status, "{\"error\":\"internal\"}", 20, 0);
  ym_buf_free(&b);
}

const char *http_req_method(const http_req_t *r) {
  return r->method;
}

const char *http_req_path(const http_req_t *r, size_t *len) {
  if (len != NULL)
    *len = r->path_len;
  return r->path;
}

const void *http_req_body(const http_req_t *r, size_t *len) {
  if (len != NULL)
    *len = r->body_len;
  return r->body;
}

const char *http_req_peer(const http_req_t *r) {
  return r->peer;
}

uint64_t http_req_start_ns(const http_req_t *r) {
  return r->start_ns;
}

const char *http_req_header(http_req_t *r, const char *name) {
  if (r == NULL || name == NULL)
    return NULL;
  for (header_copy_t *c = r->headers; c != NULL; c = c->next)
    if (strcasecmp(c->name, name) == 0)
      return c->value;
  h2o_req_t *req = r->req;
  if (req == NULL)
    return NULL;
  size_t nlen = strlen(name);
  h2o_iovec_t v = {NULL, 0};
  char num[32];
  /* h2o keeps these two out of the header list. */
  if (strcasecmp(name, "host") == 0) {
    v = req->input.authority;
  } else if (strcasecmp(name, "content-length") == 0) {
    if (req->entity.base != NULL)
      v = h2o_iovec_init(num, (size_t)snprintf(num, sizeof(num), "%zu", req->entity.len));
  } else {
    for (size_t i = 0; i < req->headers.size; i++) {
      const h2o_header_t *e = &req->headers.entries[i];
      if (e->name->len == nlen && strncasecmp(e->name->base, name, nlen) == 0) {
        v = e->value;
        break;
      }
    }
  }
  if (v.base == NULL || v.len > HEADER_VALUE_MAX || memchr(v.base, '\0', v.len) != NULL)
    return NULL;
  header_copy_t *c = malloc(sizeof(*c) + v.len + 1 + nlen + 1);
  if (c == NULL)
    return NULL;
  memcpy(c->value, v.base, v.len);
  c->value[v.len] = '\0';
  c->name = c->value + v.len + 1;
  memcpy(c->name, name, nlen + 1);
  c->next = r->headers;
  r->headers = c;
  return c->value;
}

/* ---------------------------------------------------------------- */
/* Connections                                                        */

static void on_tcp_closed(uv_handle_t *handle) {
  conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, tcp, (uv_tcp_t *)handle);
  http_t *h = c->h;
  h2o_linklist_unlink(&c->link);
  h->n_conns--;
  free(c);
  if (h->freeing)
    maybe_finish(h);
}

/* h2o's on_close hook: h2o has disposed of the socket (its uv handle is
 * closing). */
static void on_sock_disposed(void *data) {
  conn_t *c = data;
  c->sock = NULL;
  h2o_timeout_unlink(&c->handshake);
}

static void on_handshake(h2o_socket_t *sock, const char *err) {
  conn_t *c = sock->data;
  http_t *h = c->h;
  sock->data = NULL;
  h2o_timeout_unlink(&c->handshake);
  if (err != NULL || h->freeing) {
    if (err != NULL)
      h->stats.tls_failures++;
    h2o_socket_close(sock);
    return;
  }
  h2o_iovec_t proto = h2o_socket_ssl_get_selected_protocol(sock);
  if (h2o_memis(proto.base, proto.len, H2O_STRLIT("h2")))
    h2o_http2_accept(&h->accept, sock, c->connected_at);
  else
    h2o_http1_accept(&h->accept, sock, c->connected_at);
}

static void on_handshake_timeout(h2o_timeout_entry_t *entry) {
  conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, handshake, entry);
  h2o_socket_t *sock = c->sock;
  c->h->stats.tls_failures++;
  sock->data = NULL;
  h2o_socket_close(sock);
}

static void on_accept(uv_stream_t *server, int status) {
  http_t *h = H2O_STRUCT_FROM_MEMBER(http_t, listener, (uv_tcp_t *)server);
  if (status != 0)
    return;
  conn_t *c = xcalloc(1, sizeof(*c));
  c->h = h;
  if (uv_tcp_init(h->loop, &c->tcp) != 0)
    abort();
  h2o_linklist_insert(&h->conns, &c->link);
  h->n_conns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_tcp_closed);
  c->sock->data = c;
  c->sock->on_close.cb = on_sock_disposed;
  c->sock->on_close.data = c;
  c->connected_at = *h2o_get_timestamp(&h->ctx, NULL, NULL);
  c->handshake.cb = on_handshake_timeout;
  h2o_timeout_link(h->loop, &h->ctx.handshake_timeout, &c->handshake);
  h2o_socket_ssl_handshake(c->sock, h->ssl, NULL, on_handshake);
}

/* ---------------------------------------------------------------- */
/* Stuck writes                                                       */

/*
 * After a read error (a client's RST: ECONNRESET), libuv marks the stream
 * unwritable and from then on uv_write() fails at once, without calling
 * its callback. h2o 2.2.5 ignores uv_write()'s return value and waits for
 * that callback forever: the connection, its requests and its descriptor
 * would never be freed. Two things prevent it. The TLS context uses quiet
 * shutdown, so that closing a connection writes no close_notify (the
 * write h2o makes after most read errors). And a sweep finds the
 * remaining cases, an HTTP/2 frame h2o had scheduled just before the
 * error: a socket that h2o believes is writing, whose stream is
 * unwritable with nothing queued, on two sweeps in a row (a write that
 * completed normally has its callback run within one loop iteration). The
 * sweep completes that write with an error through the socket's own
 * uv_write_t, which h2o 2.2.5 keeps in the layout below; h2o then closes
 * the connection as after any failed write. The layout is checked
 * against what is known of the socket before it is used.
 */
struct h2o_225_uv_socket {
  h2o_socket_t super;
  struct {
    uv_stream_t *stream;
    uv_close_cb close_cb;
  } uv;
  union {
    uv_connect_t creq;
    uv_write_t wreq;
  } u;
};

static bool write_is_stuck(conn_t *c) {
  uv_stream_t *stream = (uv_stream_t *)&c->tcp;
  return c->sock != NULL && h2o_socket_is_writing(c->sock) && !uv_is_writable(stream) &&
         uv_stream_get_write_queue_size(stream) == 0 && !uv_is_closing((uv_handle_t *)stream);
}

static void complete_stuck_write(conn_t *c) {
  struct h2o_225_uv_socket *s = (struct h2o_225_uv_socket *)c->sock;
  uv_write_t *w = &s->u.wreq;
  uv_stream_t *stream = (uv_stream_t *)&c->tcp;
  if (s->uv.stream != stream || stream->data != c->sock || w->type != UV_WRITE ||
      w->handle != stream || w->cb == NULL)
    return;
  w->cb(w, UV_EPIPE);
}

static void on_sweep(uv_timer_t *t) {
  http_t *h = H2O_STRUCT_FROM_MEMBER(http_t, sweep, t);
  h2o_linklist_t *n = h->conns.next;
  while (n != &h->conns) {
    conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, link, n);
    n = n->next; /* c stays linked until its close callback, but be safe */
    bool stuck = write_is_stuck(c);
    if (stuck && c->stuck_seen) {
      c->stuck_seen = false;
      complete_stuck_write(c);
    } else {
      c->stuck_seen = stuck;
    }
  }
}

/* ---------------------------------------------------------------- */
/* Setup                                                              */

static int parse_port(const char *s, int *port) {
  if (*s == '\0' || strlen(s) > 5)
    return YM_EINVAL;
  int v = 0;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9')
      return YM_EINVAL;
    v = v * 10 + (*s - '0');
  }
  if (v > 65535)
    return YM_EINVAL;
  *port = v;
  return 0;
}

/* Parses "a.b.c.d:port" or "[v6]:port". */
static int parse_listen(const char *s, struct sockaddr_storage *out) {
  char host[INET6_ADDRSTRLEN + 16];
  const char *port_text;
  bool v6 = false;
  if (s == NULL)
    return YM_EINVAL;
  if (s[0] == '[') {
    const char *end = strchr(s, ']');
    if (end == NULL || end[1] != ':')
      return YM_EINVAL;
    size_t n = (size_t)(end - s - 1);
    if (n == 0 || n >= sizeof(host))
      return YM_EINVAL;
    memcpy(host, s + 1, n);
    host[n] = '\0';
    port_text = end + 2;
    v6 = true;
  } else {
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
      return YM_EINVAL;
    size_t n = (size_t)(colon - s);
    if (n == 0 || n >= sizeof(host))
      return YM_EINVAL;
    memcpy(host, s, n);
    host[n] = '\0';
    port_text = colon + 1;
  }
  int port;
  if (parse_port(port_text, &port) != 0)
    return YM_EINVAL;
  memset(out, 0, sizeof(*out));
  int rc = v6 ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)out)
              : uv_ip4_addr(host, port, (struct sockaddr_in *)out);
  return rc == 0 ? 0 : YM_EINVAL;
}

static int check_readable(const char *path) {
  if (path == NULL)
    return YM_EINVAL;
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return ym_err_from_errno(errno);
  fclose(f);
  return 0;
}

/* TLS 1.2 or 1.3; on 1.2 only ECDHE with AEAD ciphers. */
static int tls_new(const http_opts_t *o, SSL_CTX **out) {
  int rc;
  if ((rc = check_readable(o->cert_file)) != 0 || (rc = check_readable(o->key_file)) != 0)
    return rc;
  SSL_CTX *ssl = SSL_CTX_new(TLS_server_method());
  if (ssl == NULL)
    return YM_ENOMEM;
  if (SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ssl, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1 ||
      SSL_CTX_use_certificate_chain_file(ssl, o->cert_file) != 1 ||
      SSL_CTX_use_PrivateKey_file(ssl, o->key_file, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ssl) != 1) {
    ERR_clear_error();
    SSL_CTX_free(ssl);
    return YM_ECRYPTO;
  }
  SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* No close_notify on close: see "Stuck writes". */
  SSL_CTX_set_quiet_shutdown(ssl, 1);
  h2o_ssl_register_alpn_protocols(ssl, alpn_protocols);
  *out = ssl;
  return 0;
}

static void config_init(http_t *h) {
  h2o_config_init(&h->config);
  h->config.server_name = h2o_iovec_init("", 0);
  /* h2o reads up to twice max_body before it gives up on a request: over
   * HTTP/2 it resets the stream instead of answering 413, so bodies
   * somewhat over the limit still reach dispatch() and get a 413 there. */
  h->config.max_request_entity_size = h->max_body * 2;
  h->config.handshake_timeout = HANDSHAKE_TIMEOUT_MS;
  h->config.http1.req_timeout = HTTP1_REQ_TIMEOUT_MS;
  h->config.http1.upgrade_to_http2 = 0;

  h2o_hostconf_t *host =
      h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *paths[] = {h2o_config_register_path(host, "/", 0), &host->fallback_path};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    dispatch_handler_t *d =
        (dispatch_handler_t *)h2o_create_handler(paths[i], sizeof(dispatch_handler_t));
    d->super.on_req = dispatch;
    d->h = h;
    headers_filter_t *f = (headers_filter_t *)h2o_create_filter(paths[i], sizeof(headers_filter_t));
    f->super.on_setup_ostream = on_setup_ostream;
    f->h = h;
  }
}

int http_new(uv_loop_t *loop, const http_opts_t *opts, http_t **out) {
  if (loop == NULL || opts == NULL || out == NULL)
    return YM_EINVAL;
  size_t max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
  unsigned rate = opts->rate_per_ip ? opts->rate_per_ip : DEFAULT_RATE;
  if (max_body > MAX_BODY_LIMIT || rate > MAX_RATE)
    return YM_EINVAL;
  struct sockaddr_storage addr;
  int rc = parse_listen(opts->listen, &addr);
  if (rc != 0)
    return rc;
  SSL_CTX *ssl = NULL;
  if ((rc = tls_new(opts, &ssl)) != 0)
    return rc;

  http_t *h = xcalloc(1, sizeof(*h));
  h->loop = loop;
  h->max_body = max_body;
  h->rate = rate;
  h->addr = addr;
  h->ssl = ssl;
  h->port = -1;
  h2o_linklist_init_anchor(&h->conns);
  h2o_linklist_init_anchor(&h->pending);
  h->buckets = xcalloc((size_t)RL_SETS * RL_WAYS, sizeof(bucket_t));
  if (RAND_bytes((unsigned char *)h->seed, sizeof(h->seed)) != 1) {
    free(h->buckets);
    free(h);
    SSL_CTX_free(ssl);
    return YM_ECRYPTO;
  }
  config_init(h);
  h2o_context_init(&h->ctx, loop, &h->config);
  h->accept.ctx = &h->ctx;
  h->accept.hosts = h->config.hosts;
  h->accept.ssl_ctx = ssl;
  uv_idle_init(loop, &h->close_a);
  uv_idle_init(loop, &h->close_b);
  uv_timer_init(loop, &h->sweep);
  uv_timer_start(&h->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  uv_unref((uv_handle_t *)&h->sweep);
  *out = h;
  return 0;
}

int http_route(http_t *h, const char *method, const char *prefix, http_handler_t fn, void *data) {
  if (h == NULL || method == NULL || method[0] == '\0' || prefix == NULL || prefix[0] != '/' ||
      fn == NULL)
    return YM_EINVAL;
  if (h->n_routes == h->cap_routes) {
    size_t cap = h->cap_routes ? h->cap_routes * 2 : 8;
    route_t *p = realloc(h->routes, cap * sizeof(*p));
    if (p == NULL)
      return YM_ENOMEM;
    h->routes = p;
    h->cap_routes = cap;
  }
  route_t *rt = &h->routes[h->n_routes];
  rt->method = strdup(method);
  rt->prefix = strdup(prefix);
  if (rt->method == NULL || rt->prefix == NULL) {
    free(rt->method);
    free(rt->prefix);
    return YM_ENOMEM;
  }
  rt->method_len = strlen(method);
  rt->prefix_len = strlen(prefix);
  rt->fn = fn;
  rt->data = data;
  h->n_routes++;
  return 0;
}

static void on_listener_closed(uv_handle_t *handle) {
  http_t *h = H2O_STRUCT_FROM_MEMBER(http_t, listener, (uv_tcp_t *)handle);
  h->listener_state = LISTENER_CLOSED;
  if (h->freeing)
    maybe_finish(h);
}

int http_start(http_t *h) {
  if (h == NULL)
    return YM_EINVAL;
  if (h->listener_state != LISTENER_NONE || h->freeing)
    return YM_EBUSY;
  int rc = uv_tcp_init(h->loop, &h->listener);
  if (rc != 0)
    return ym_err_from_errno(-rc);
  h->listener_state = LISTENER_OPEN;
  rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&h->addr, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&h->listener, LISTEN_BACKLOG, on_accept);
  if (rc == 0) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    rc = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len);
    if (rc == 0)
      h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
  }
  if (rc != 0) {
    h->listener_state = LISTENER_CLOSING;
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
    return ym_err_from_errno(-rc);
  }
  return 0;
}

int http_port(const http_t *h) {
  return h != NULL && h->listener_state == LISTENER_OPEN ? h->port : -1;
}

void http_stats(const http_t *h, http_stats_t *out) {
  *out = h->stats;
}

/* ---------------------------------------------------------------- */
/* Shutdown                                                           */

static void on_close_b(uv_handle_t *handle) {
  free(H2O_STRUCT_FROM_MEMBER(http_t, close_b, (uv_idle_t *)handle));
}

/* Runs in the closing phase after the one that closed the context's
 * timers; close_b's callback therefore comes after all of them. */
static void on_close_a(uv_handle_t *handle) {
  http_t *h = H2O_STRUCT_FROM_MEMBER(http_t, close_a, (uv_idle_t *)handle);
  uv_close((uv_handle_t *)&h->close_b, on_close_b);
}

/* Disposes of h2o's context and configuration once nothing uses them. */
static void maybe_finish(http_t *h) {
  if (h->finished || h->n_conns > 0 || h->listener_state == LISTENER_CLOSING)
    return;
  h->finished = true;
  /* h2o_context_dispose() runs uv_run(UV_RUN_NOWAIT) to finish closing
   * its timers, which must not happen inside a loop callback. With the
   * stop flag set that call returns at once; the timers finish closing in
   * the caller's loop, before close_b's callback frees their memory. */
  unsigned stop_flag = h->loop->stop_flag;
  uv_stop(h->loop);
  h2o_context_dispose(&h->ctx);
  h->loop->stop_flag = stop_flag;
  h2o_config_dispose(&h->config);
  SSL_CTX_free(h->ssl);
  for (size_t i = 0; i < h->n_routes; i++) {
    free(h->routes[i].method);
    free(h->routes[i].prefix);
  }
  free(h->routes);
  free(h->buckets);
  uv_close((uv_handle_t *)&h->sweep, NULL);
  uv_close((uv_handle_t *)&h->close_a, on_close_a);
}

void http_free(http_t *h) {
  if (h == NULL || h->freeing)
    return;
  h->freeing = true;
  if (h->listener_state == LISTENER_OPEN) {
    h->listener_state = LISTENER_CLOSING;
    uv_close((uv_handle_t *)&h->listener, on_listener_closed);
  }
  while (!h2o_linklist_is_empty(&h->pending)) {
    http_req_t *r = H2O_STRUCT_FROM_MEMBER(http_req_t, pending, h->pending.next);
    h2o_linklist_unlink(&r->pending);
    r->h = NULL;
    h2o_req_t *req = r->req;
    if (req != NULL) {
      r->link->r = NULL;
      r->link = NULL;
      r->req = NULL;
      req->http1_is_persistent = 0;
      send_error(h, req, 503, "unavailable", "the server is shutting down", 1, NULL);
    }
  }
  for (h2o_linklist_t *n = h->conns.next; n != &h->conns; n = n->next) {
    conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, link, n);
    int fd = c->sock != NULL ? h2o_socket_get_fd(c->sock) : -1;
    if (fd >= 0)
      shutdown(fd, SHUT_RDWR);
  }
  /* Until the last connection has gone, the sweep keeps the loop alive
   * (a stuck socket has no active handle) and runs often. */
  uv_ref((uv_handle_t *)&h->sweep);
  uv_timer_start(&h->sweep, on_sweep, SWEEP_FREEING_MS, SWEEP_FREEING_MS);
  maybe_finish(h);
}
