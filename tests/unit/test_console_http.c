/*
 * Tests of the console's certificates and HTTPS server with real TLS on
 * 127.0.0.1: certificates are made once in a temporary directory; each
 * server test starts its own server whose loop runs on the test's thread,
 * while a client thread talks to it with libcurl (pinned key, HTTP/1.1
 * and HTTP/2) or with raw sockets. The client thread records the first
 * failed check; the test thread asserts after joining it, and checks the
 * server's counters once the loop has stopped. Every wait is on an event
 * (a reply, a condition variable), never a fixed sleep.
 */
#include "certs.h"
#include "http.h"
#include "yamori/buf.h"
#include "yamori/err.h"
#include "yamori/json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cmocka.h>

#define BIG_BODY (1024 * 1024)
#define SMALL_MAX_BODY (64 * 1024)
#define WAIT_S 5

typedef struct {
  char dir[PATH_MAX];
  certs_t certs;
} group_t;

typedef struct server server_t;
typedef void (*client_fn)(server_t *s);

struct server {
  const group_t *g;
  uv_loop_t loop;
  http_t *h;
  int port;
  bool ipv6;
  uv_async_t done;
  client_fn client;
  char failure[512];

  /* Handler counts, touched on the loop thread. */
  int echo_calls, count_calls, delayed_calls;

  /* Signalled from the loop thread to the client thread. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int delayed_replies;
  int abandon_calls;
  bool late_reply_done;

  /* The dropped-reply test: a request whose client gave up, and the
   * client's signal that it did. */
  http_req_t *abandoned;
  uv_async_t kick;

  /* The reset test: a request answered just before its client's RST is
   * read. */
  http_req_t *prepared;
  int prepared_calls;
  atomic_bool rst_sent;
  bool prepared_replied;
  uv_idle_t spin;
  uv_prepare_t before_poll;

  /* The shutdown test. */
  http_req_t *held;
  uv_timer_t free_timer, late_timer;
};

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void rm_tree(const char *dir) {
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void join(char *out, const char *dir, const char *name) {
  int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
  assert_true(n > 0 && n < PATH_MAX);
}

static mode_t mode_of(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return st.st_mode & 07777;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static bool pin_well_formed(const char *pin) {
  if (strncmp(pin, "sha256//", 8) != 0 || strlen(pin) != 8 + 44 || pin[8 + 43] != '=')
    return false;
  for (size_t i = 8; i < 8 + 43; i++)
    if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", pin[i]) == NULL)
      return false;
  return true;
}

/* ------------------------------------------------------------------ */
/* Certificates                                                         */

static int group_setup(void **state) {
  group_t *g = calloc(1, sizeof(*g));
  char tmpl[] = "/tmp/ym-http-XXXXXX";
  assert_non_null(g);
  assert_non_null(mkdtemp(tmpl));
  join(g->dir, tmpl, "tls");
  const char *extra[] = {"console.example.com", "192.0.2.7", "2001:db8::7"};
  assert_int_equal(certs_ensure(g->dir, extra, 3, &g->certs), 0);
  *state = g;
  return 0;
}

static int group_teardown(void **state) {
  group_t *g = *state;
  char *slash = strrchr(g->dir, '/');
  *slash = '\0';
  rm_tree(g->dir);
  free(g);
  return 0;
}

static void certs_first_start(void **state) {
  const group_t *g = *state;
  char path[PATH_MAX];
  assert_true(g->certs.created);
  assert_int_equal(mode_of(g->dir), 0700);
  assert_int_equal(mode_of(g->certs.cert_file), 0600);
  assert_int_equal(mode_of(g->certs.key_file), 0600);
  assert_int_equal(mode_of(g->certs.ca_file), 0600);
  join(path, g->dir, "ca.key");
  assert_int_equal(mode_of(path), 0600);
  assert_true(pin_well_formed(g->certs.pin));

  /* A second start loads the same files. */
  certs_t again;
  assert_int_equal(certs_ensure(g->dir, NULL, 0, &again), 0);
  assert_false(again.created);
  assert_string_equal(again.pin, g->certs.pin);
  char pin[128];
  assert_int_equal(certs_pin_of(g->certs.cert_file, pin, sizeof(pin)), 0);
  assert_string_equal(pin, g->certs.pin);
  assert_int_equal(certs_pin_of(g->certs.ca_file, pin, sizeof(pin)), 0);
  assert_string_not_equal(pin, g->certs.pin);
  assert_int_equal(certs_pin_of(g->certs.cert_file, pin, 20), YM_ETOOBIG);
}

static void certs_contents(void **state) {
  const group_t *g = *state;
  FILE *f = fopen(g->certs.cert_file, "r");
  assert_non_null(f);
  X509 *leaf = PEM_read_X509(f, NULL, NULL, NULL);
  X509 *ca_in_chain = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  assert_non_null(leaf);
  assert_non_null(ca_in_chain);
  f = fopen(g->certs.ca_file, "r");
  assert_non_null(f);
  X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  assert_non_null(ca);
  assert_int_equal(X509_cmp(ca, ca_in_chain), 0);

  /* The CA: self-signed, a CA, P-256, ten years. */
  assert_int_equal(X509_check_ca(ca), 1);
  assert_int_equal(X509_verify(ca, X509_get0_pubkey(ca)), 1);
  assert_int_equal(EVP_PKEY_get_id(X509_get0_pubkey(ca)), EVP_PKEY_EC);
  assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(ca)), 256);
  int days, secs;
  assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(ca), X509_get0_notAfter(ca)),
                   1);
  assert_true(days >= 3650 && days <= 3651);

  /* The server: signed by the CA, not a CA, server auth, its names. */
  assert_int_equal(X509_verify(leaf, X509_get0_pubkey(ca)), 1);
  assert_int_equal(X509_check_ca(leaf), 0);
  assert_int_equal(X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0), 1);
  assert_true((X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER) != 0);
  assert_true((X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE) != 0);
  assert_int_equal(EVP_PKEY_get_id(X509_get0_pubkey(leaf)), EVP_PKEY_EC);
  assert_int_equal(X509_check_host(leaf, "localhost", 0, 0, NULL), 1);
  assert_int_equal(X509_check_host(leaf, "console.example.com", 0, 0, NULL), 1);
  assert_int_equal(X509_check_ip_asc(leaf, "127.0.0.1", 0), 1);
  assert_int_equal(X509_check_ip_asc(leaf, "::1", 0), 1);
  assert_int_equal(X509_check_ip_asc(leaf, "192.0.2.7", 0), 1);
  assert_int_equal(X509_check_ip_asc(leaf, "2001:db8::7", 0), 1);
  assert_int_equal(X509_check_host(leaf, "evil.example.com", 0, 0, NULL), 0);
  char host[256];
  if (gethostname(host, sizeof(host)) == 0 && strchr(host, '_') == NULL)
    assert_int_equal(X509_check_host(leaf, host, 0, 0, NULL), 1);
  assert_int_equal(
      ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(leaf), X509_get0_notAfter(leaf)), 1);
  assert_true(days >= 730 && days <= 731);
  /* notBefore is an hour in the past. */
  assert_true(X509_cmp_time(X509_get0_notBefore(leaf), NULL) < 0);
  time_t soon = time(NULL) - 3000;
  assert_true(X509_cmp_time(X509_get0_notBefore(leaf), &soon) < 0);
  const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
  assert_int_equal(serial->length, 16);
  assert_int_not_equal(ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(ca)), 0);

  X509_free(leaf);
  X509_free(ca_in_chain);
  X509_free(ca);
}

static void certs_refusals(void **state) {
  const group_t *g = *state;
  char base[PATH_MAX], dir[PATH_MAX], path[PATH_MAX];
  snprintf(base, sizeof(base), "%s", g->dir);
  *strrchr(base, '/') = '\0';
  certs_t c;

  /* Bad extra names are refused before anything is made. */
  join(dir, base, "bad");
  static const char *const bad[] = {"not a name!", "",     "-x.example", "a..b",
                                    "x_y.example", "[::1]"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(certs_ensure(dir, bad + i, 1, &c), YM_EINVAL);
  assert_int_equal(access(dir, F_OK), -1);

  /* An interrupted first start (a stray CA key) starts over. */
  join(dir, base, "interrupted");
  assert_int_equal(mkdir(dir, 0700), 0);
  join(path, dir, "ca.key");
  write_file(path, "half");
  assert_int_equal(certs_ensure(dir, NULL, 0, &c), 0);
  assert_true(c.created);
  char pin[128];
  snprintf(pin, sizeof(pin), "%s", c.pin);

  /* A damaged key is an error, not a reason to make new files. */
  join(path, dir, "server.key");
  write_file(path, "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n");
  assert_int_equal(certs_ensure(dir, NULL, 0, &c), YM_EPARSE);
  /* A missing key too. */
  assert_int_equal(unlink(path), 0);
  assert_int_equal(certs_ensure(dir, NULL, 0, &c), YM_ENOENT);
  /* The key of another pair does not match. */
  char other[PATH_MAX];
  join(other, g->dir, "server.key");
  FILE *in = fopen(other, "r"), *out = fopen(path, "w");
  assert_non_null(in);
  assert_non_null(out);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
    fwrite(buf, 1, n, out);
  fclose(in);
  fclose(out);
  assert_int_equal(certs_ensure(dir, NULL, 0, &c), YM_ECORRUPT);

  /* Without server.pem, the server pair is made again with the same CA. */
  join(path, dir, "server.pem");
  assert_int_equal(unlink(path), 0);
  assert_int_equal(certs_ensure(dir, NULL, 0, &c), 0);
  assert_true(c.created);
  assert_string_not_equal(c.pin, pin);
  assert_int_equal(certs_pin_of("/nonexistent/cert.pem", pin, sizeof(pin)), YM_ENOENT);
}

/* ------------------------------------------------------------------ */
/* Handlers (loop thread)                                               */

static void on_echo(http_req_t *r, void *data) {
  server_t *s = data;
  size_t len;
  const void *body = http_req_body(r, &len);
  s->echo_calls++;
  http_reply(r, 200, body, len, 0);
}

static void on_count(http_req_t *r, void *data) {
  server_t *s = data;
  s->count_calls++;
  http_reply(r, 200, "{\"counted\":true}", 16, 0);
}

static int add_field(ym_buf_t *b, const char *key, const char *value) {
  int rc = ym_buf_appendf(b, "%s\"%s\":", b->len > 1 ? "," : "", key);
  if (rc == 0)
    rc = value != NULL ? ym_json_append_string(b, value, strlen(value))
                       : ym_buf_append_str(b, "null");
  return rc;
}

/* Answers with what the server saw: headers, path, method and peer. */
static void on_show(http_req_t *r, void *data) {
  (void)data;
  ym_buf_t b;
  size_t plen;
  const char *path = http_req_path(r, &plen);
  ym_buf_init(&b, 65536);
  ym_buf_append_byte(&b, '{');
  add_field(&b, "authorization", http_req_header(r, "Authorization"));
  add_field(&b, "custom", http_req_header(r, "x-CUSTOM"));
  add_field(&b, "custom_again", http_req_header(r, "X-Custom"));
  add_field(&b, "long", http_req_header(r, "x-long"));
  add_field(&b, "missing", http_req_header(r, "x-missing"));
  add_field(&b, "path", path);
  add_field(&b, "method", http_req_method(r));
  add_field(&b, "peer", http_req_peer(r));
  ym_buf_append_byte(&b, '}');
  http_reply(r, 200, b.data, b.len, 0);
  ym_buf_free(&b);
}

typedef struct {
  uv_timer_t timer;
  http_req_t *r;
  server_t *s;
} delay_t;

static void free_handle(uv_handle_t *h) {
  free(h->data);
}

static void on_delay_timer(uv_timer_t *t) {
  delay_t *d = t->data;
  http_reply(d->r, 200, "{\"late\":true}", 13, 0);
  pthread_mutex_lock(&d->s->mu);
  d->s->delayed_replies++;
  pthread_cond_broadcast(&d->s->cv);
  pthread_mutex_unlock(&d->s->mu);
  uv_close((uv_handle_t *)t, free_handle);
}

static void delay_reply(server_t *s, http_req_t *r);

/* Replies 50 ms later, from a timer. */
static void on_delay(http_req_t *r, void *data) {
  server_t *s = data;
  s->delayed_calls++;
  delay_reply(s, r);
}

static void delay_reply(server_t *s, http_req_t *r) {
  delay_t *d = calloc(1, sizeof(*d));
  assert_non_null(d);
  d->r = r;
  d->s = s;
  d->timer.data = d;
  uv_timer_init(&s->loop, &d->timer);
  uv_timer_start(&d->timer, on_delay_timer, 50, 0);
}

/* Holds the request until the client has given up on it (on_kick). */
static void on_abandon(http_req_t *r, void *data) {
  server_t *s = data;
  s->abandoned = r;
  pthread_mutex_lock(&s->mu);
  s->abandon_calls++;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* The client has timed out and closed: reply 50 ms later, from a timer,
 * which leaves the server time to see the client go. */
static void on_kick(uv_async_t *a) {
  server_t *s = a->data;
  if (s->abandoned != NULL)
    delay_reply(s, s->abandoned);
  s->abandoned = NULL;
}

/* Runs before the loop polls for I/O: once the client has reset the
 * connection, the reply is queued here and the reset is read right after,
 * in the same loop iteration. */
static void on_before_poll(uv_prepare_t *p) {
  server_t *s = p->data;
  if (s->prepared == NULL || !atomic_load(&s->rst_sent))
    return;
  http_reply(s->prepared, 200, "{}", 2, 0);
  s->prepared = NULL;
  uv_idle_stop(&s->spin);
  uv_prepare_stop(&s->before_poll);
  pthread_mutex_lock(&s->mu);
  s->prepared_replied = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void on_spin(uv_idle_t *i) {
  (void)i;
}

static void on_prepared(http_req_t *r, void *data) {
  server_t *s = data;
  s->prepared = r;
  uv_idle_start(&s->spin, on_spin); /* poll without blocking meanwhile */
  uv_prepare_start(&s->before_poll, on_before_poll);
  pthread_mutex_lock(&s->mu);
  s->prepared_calls++;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void on_late_reply(uv_timer_t *t) {
  server_t *s = t->data;
  http_reply(s->held, 200, "{}", 2, 0);
  s->held = NULL;
  pthread_mutex_lock(&s->mu);
  s->late_reply_done = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* Frees the server from a loop callback while a request is pending. */
static void on_free_timer(uv_timer_t *t) {
  server_t *s = t->data;
  http_free(s->h);
  s->h = NULL;
  uv_timer_start(&s->late_timer, on_late_reply, 30, 0);
}

static void on_hold(http_req_t *r, void *data) {
  server_t *s = data;
  s->held = r;
  uv_timer_start(&s->free_timer, on_free_timer, 20, 0);
}

/* ------------------------------------------------------------------ */
/* Server and client thread                                             */

static void server_start(server_t *s, const group_t *g, size_t max_body, unsigned rate) {
  memset(s, 0, sizeof(*s));
  s->g = g;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  assert_int_equal(uv_loop_init(&s->loop), 0);
  http_opts_t o = {"127.0.0.1:0", g->certs.cert_file, g->certs.key_file, max_body, rate};
  assert_int_equal(http_new(&s->loop, &o, &s->h), 0);
  assert_int_equal(http_port(s->h), -1);
  assert_int_equal(http_route(s->h, "POST", "/echo", on_echo, s), 0);
  assert_int_equal(http_route(s->h, "POST", "/count", on_count, s), 0);
  assert_int_equal(http_route(s->h, "GET", "/show", on_show, s), 0);
  assert_int_equal(http_route(s->h, "GET", "/delay", on_delay, s), 0);
  assert_int_equal(http_route(s->h, "GET", "/abandon", on_abandon, s), 0);
  assert_int_equal(http_route(s->h, "GET", "/prepared", on_prepared, s), 0);
  assert_int_equal(http_route(s->h, "GET", "/hold", on_hold, s), 0);
  assert_int_equal(http_route(s->h, "GET", "/api/v1/events", on_show, s), 0);
  assert_int_equal(http_route(s->h, "PUT", "/api/v1/events", on_show, s), 0);
  assert_int_equal(http_route(s->h, "GET", "/api/v1/rules/", on_show, s), 0);
  assert_int_equal(http_route(s->h, "GET", "relative", on_show, s), YM_EINVAL);
  assert_int_equal(http_start(s->h), 0);
  assert_int_equal(http_start(s->h), YM_EBUSY);
  s->port = http_port(s->h);
  assert_true(s->port > 0);
}

static void on_drain_deadline(uv_timer_t *t) {
  *(bool *)t->data = true;
  uv_stop(t->loop);
}

/* Frees the server and runs the loop until it has let go of everything,
 * failing (instead of hanging) when that takes more than WAIT_S. */
static void server_stop(server_t *s) {
  bool late = false;
  uv_timer_t deadline;
  http_free(s->h);
  s->h = NULL;
  uv_timer_init(&s->loop, &deadline);
  deadline.data = &late;
  uv_timer_start(&deadline, on_drain_deadline, WAIT_S * 1000, 0);
  uv_unref((uv_handle_t *)&deadline);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&deadline, NULL);
  uv_run(&s->loop, UV_RUN_NOWAIT);
  assert_false(late);
  assert_int_equal(uv_loop_close(&s->loop), 0);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
}

static void on_done(uv_async_t *a) {
  uv_close((uv_handle_t *)a, NULL);
  uv_stop(a->loop);
}

static void *client_main(void *arg) {
  server_t *s = arg;
  s->client(s);
  uv_async_send(&s->done);
  return NULL;
}

/* Runs fn on a client thread while the server's loop runs here. */
static void run_client(server_t *s, client_fn fn) {
  pthread_t t;
  s->client = fn;
  s->failure[0] = '\0';
  assert_int_equal(uv_async_init(&s->loop, &s->done, on_done), 0);
  assert_int_equal(pthread_create(&t, NULL, client_main, s), 0);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  pthread_join(t, NULL);
  if (s->failure[0] != '\0')
    fail_msg("%s", s->failure);
}

static void client_fail(server_t *s, int line, const char *what) {
  if (s->failure[0] == '\0')
    snprintf(s->failure, sizeof(s->failure), "client check failed at line %d: %s", line, what);
}

#define CHECK(s, cond)                                                                             \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      client_fail((s), __LINE__, #cond);                                                           \
      return;                                                                                      \
    }                                                                                              \
  } while (0)

/* Waits (under s->mu) until *counter reaches want, or *flag is set when
 * counter is NULL. Returns false after WAIT_S seconds. */
static bool wait_for(server_t *s, const int *counter, const bool *flag, int want) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += WAIT_S;
  bool ok = true;
  pthread_mutex_lock(&s->mu);
  while (ok && (counter != NULL ? *counter < want : !*flag))
    ok = pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

/* ------------------------------------------------------------------ */
/* libcurl                                                              */

typedef struct {
  const char *method;
  const char *path;
  const void *body;
  size_t len;
  const char *const *headers; /* NULL-terminated */
  long version;               /* CURL_HTTP_VERSION_1_1 or CURL_HTTP_VERSION_2TLS */
  long timeout_ms;
  const char *pin;    /* NULL: the server's */
  const char *cainfo; /* verify by CA instead of pin */
} creq_t;

typedef struct {
  CURLcode rc;
  long status;
  long version;
  ym_buf_t body;
  ym_buf_t headers;
} cresp_t;

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
  return ym_buf_append(ud, p, size * n) == 0 ? size * n : 0;
}

static void resp_free(cresp_t *r) {
  ym_buf_free(&r->body);
  ym_buf_free(&r->headers);
}

static void perform(server_t *s, CURL *e, const creq_t *q, cresp_t *out) {
  char url[256];
  struct curl_slist *hl = NULL, *resolve = NULL;
  memset(out, 0, sizeof(*out));
  ym_buf_init(&out->body, 8 * 1024 * 1024);
  ym_buf_init(&out->headers, 1024 * 1024);
  /* libcurl reuses a kept-alive connection whatever HTTP version is asked
   * for: switching versions needs a new connection. */
  long want = q->version == CURL_HTTP_VERSION_2TLS ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_1_1;
  long last = 0;
  curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &last);
  curl_easy_reset(e);
  if (last != 0 && last != want)
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
  if (q->cainfo != NULL) {
    char entry[64];
    snprintf(entry, sizeof(entry), "localhost:%d:127.0.0.1", s->port);
    resolve = curl_slist_append(NULL, entry);
    snprintf(url, sizeof(url), "https://localhost:%d%s", s->port, q->path);
    curl_easy_setopt(e, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(e, CURLOPT_CAINFO, q->cainfo);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  } else {
    snprintf(url, sizeof(url), s->ipv6 ? "https://[::1]:%d%s" : "https://127.0.0.1:%d%s", s->port,
             q->path);
    curl_easy_setopt(e, CURLOPT_PINNEDPUBLICKEY, q->pin ? q->pin : s->g->certs.pin);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, q->version ? q->version : CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, q->timeout_ms ? q->timeout_ms : 10000L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &out->body);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &out->headers);
  if (strcmp(q->method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body ? q->body : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->len);
  } else if (strcmp(q->method, "GET") != 0) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
  }
  for (const char *const *h = q->headers; h != NULL && *h != NULL; h++)
    hl = curl_slist_append(hl, *h);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hl);
  char err[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
  out->rc = curl_easy_perform(e);
  if (out->rc != CURLE_OK && getenv("YM_TEST_VERBOSE") != NULL)
    fprintf(stderr, "curl %s %s: %d %s\n", q->method, q->path, (int)out->rc, err);
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
  curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &out->version);
  curl_slist_free_all(hl);
  curl_slist_free_all(resolve);
}

static bool has_header(const cresp_t *r, const char *line) {
  return r->headers.data != NULL && strcasestr(r->headers.data, line) != NULL;
}

/* True when the body is a JSON object whose key holds the string want
 * (want NULL: holds null). */
static bool json_field_is(const cresp_t *r, const char *key, const char *want) {
  cJSON *j = NULL;
  if (r->body.data == NULL || ym_json_parse(r->body.data, r->body.len, r->body.len, &j, NULL) != 0)
    return false;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  bool ok =
      want == NULL ? cJSON_IsNull(v) : (cJSON_IsString(v) && strcmp(v->valuestring, want) == 0);
  cJSON_Delete(j);
  return ok;
}

static bool api_headers_present(const cresp_t *r) {
  return has_header(r, "content-type: application/json\r\n") &&
         has_header(r, "cache-control: no-store\r\n") &&
         has_header(r, "x-content-type-options: nosniff\r\n") && !has_header(r, "\nlocation:") &&
         !has_header(r, "\nserver:");
}

/* ------------------------------------------------------------------ */
/* Server tests                                                         */

static unsigned char *pattern(size_t n) {
  unsigned char *p = malloc(n);
  for (size_t i = 0; i < n; i++)
    p[i] = i % 7 == 0 ? 0 : (unsigned char)(i * 31 % 251);
  return p;
}

static void client_echo(server_t *s) {
  CURL *e = curl_easy_init();
  unsigned char *body = pattern(BIG_BODY);
  cresp_t r;
  const long versions[] = {CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2TLS};
  const long expect[] = {CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2};
  for (size_t i = 0; i < 2; i++) {
    creq_t q = {
        .method = "POST", .path = "/echo", .body = body, .len = BIG_BODY, .version = versions[i]};
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_OK);
    CHECK(s, r.status == 200);
    CHECK(s, r.version == expect[i]);
    CHECK(s, r.body.len == BIG_BODY && memcmp(r.body.data, body, BIG_BODY) == 0);
    CHECK(s, api_headers_present(&r));
    resp_free(&r);
  }
  /* The CA file verifies the whole chain for the name localhost. */
  creq_t q = {
      .method = "POST", .path = "/echo", .body = "{}", .len = 2, .cainfo = s->g->certs.ca_file};
  perform(s, e, &q, &r);
  CHECK(s, r.rc == CURLE_OK && r.status == 200);
  resp_free(&r);
  free(body);
  curl_easy_cleanup(e);
}

static void echo_both_versions(void **state) {
  server_t s;
  server_start(&s, *state, 2 * BIG_BODY, 10000);
  run_client(&s, client_echo);
  http_stats_t st;
  http_stats(s.h, &st);
  assert_int_equal(s.echo_calls, 3);
  assert_int_equal(st.requests, 3);
  assert_int_equal(st.replies, 3);
  server_stop(&s);
}

static void client_headers(server_t *s) {
  CURL *e = curl_easy_init();
  char *long_header = malloc(9100);
  memcpy(long_header, "X-Long: ", 8);
  memset(long_header + 8, 'a', 9000);
  long_header[9008] = '\0';
  const char *headers[] = {"Authorization: Bearer 8c3e.mQ2", "X-Custom: one", "X-Custom: two",
                           long_header, NULL};
  const long versions[] = {CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2TLS};
  cresp_t r;
  for (size_t i = 0; i < 2; i++) {
    creq_t q = {.method = "GET",
                .path = "/show/x%2Fy/../z?q=1",
                .headers = headers,
                .version = versions[i]};
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_OK && r.status == 200);
    CHECK(s, json_field_is(&r, "authorization", "Bearer 8c3e.mQ2"));
    CHECK(s, json_field_is(&r, "custom", "one"));
    CHECK(s, json_field_is(&r, "custom_again", "one"));
    CHECK(s, json_field_is(&r, "long", NULL));
    CHECK(s, json_field_is(&r, "missing", NULL));
    CHECK(s, json_field_is(&r, "path", "/show/x/z"));
    CHECK(s, json_field_is(&r, "method", "GET"));
    CHECK(s, json_field_is(&r, "peer", s->ipv6 ? "::1" : "127.0.0.1"));
    resp_free(&r);
  }
  free(long_header);
  curl_easy_cleanup(e);
}

static void request_headers(void **state) {
  server_t s;
  server_start(&s, *state, 0, 10000);
  run_client(&s, client_headers);
  server_stop(&s);
}

static void client_routing(server_t *s) {
  CURL *e = curl_easy_init();
  cresp_t r;
  static const struct {
    const char *method, *path;
    long status;
    const char *error;
  } cases[] = {
      {"GET", "/nope", 404, "not_found"},           {"GET", "/", 404, "not_found"},
      {"POST", "/show", 405, "method_not_allowed"}, {"DELETE", "/echo", 405, "method_not_allowed"},
      {"GET", "/api/v1/events", 200, NULL},         {"GET", "/api/v1/events/", 200, NULL},
      {"GET", "/api/v1/events/123", 200, NULL},     {"GET", "/api/v1/eventsx", 404, "not_found"},
      {"GET", "/api/v1/rules/02615eba", 200, NULL}, {"GET", "/api/v1/rules", 404, "not_found"},
      {"GET", "/show/%01", 400, "bad_request"},     {"GET", "/api/v1/../../show", 200, NULL},
  };
  for (size_t v = 0; v < 2; v++) {
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
      creq_t q = {.method = cases[i].method,
                  .path = cases[i].path,
                  .version = v ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1};
      perform(s, e, &q, &r);
      CHECK(s, r.rc == CURLE_OK);
      CHECK(s, r.status == cases[i].status);
      CHECK(s, api_headers_present(&r));
      CHECK(s, cases[i].error == NULL || json_field_is(&r, "error", cases[i].error));
      resp_free(&r);
    }
  }
  /* 405 names the methods the path allows. */
  creq_t q = {.method = "POST", .path = "/api/v1/events/7"};
  perform(s, e, &q, &r);
  CHECK(s, r.status == 405 && has_header(&r, "allow: GET, PUT\r\n"));
  resp_free(&r);
  curl_easy_cleanup(e);
}

static void routing(void **state) {
  server_t s;
  server_start(&s, *state, 0, 10000);
  run_client(&s, client_routing);
  server_stop(&s);
}

static void client_too_large(server_t *s) {
  CURL *e = curl_easy_init();
  unsigned char *body = pattern(BIG_BODY);
  cresp_t r;
  /* At the limit: accepted. */
  creq_t q = {.method = "POST", .path = "/count", .body = body, .len = SMALL_MAX_BODY};
  perform(s, e, &q, &r);
  CHECK(s, r.rc == CURLE_OK && r.status == 200);
  resp_free(&r);
  /* Over it, on both versions: 413 with a JSON error. */
  for (size_t v = 0; v < 2; v++) {
    q = (creq_t){.method = "POST",
                 .path = "/count",
                 .body = body,
                 .len = SMALL_MAX_BODY + 1,
                 .version = v ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1};
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_OK && r.status == 413);
    CHECK(s, json_field_is(&r, "error", "too_large"));
    CHECK(s, api_headers_present(&r));
    resp_free(&r);
  }
  /* Far over it over HTTP/1.1: h2o refuses on Content-Length, before the
   * body is sent; the answer is still JSON. */
  const char *expect[] = {"Expect: 100-continue", NULL};
  q = (creq_t){
      .method = "POST", .path = "/count", .body = body, .len = BIG_BODY, .headers = expect};
  perform(s, e, &q, &r);
  CHECK(s, r.rc == CURLE_OK && r.status == 413);
  CHECK(s, json_field_is(&r, "error", "too_large"));
  CHECK(s, api_headers_present(&r));
  resp_free(&r);
  /* Far over it over HTTP/2: h2o resets the stream; the server lives on. */
  q = (creq_t){.method = "POST",
               .path = "/count",
               .body = body,
               .len = BIG_BODY,
               .version = CURL_HTTP_VERSION_2TLS};
  perform(s, e, &q, &r);
  CHECK(s, r.status != 200);
  resp_free(&r);
  q = (creq_t){.method = "POST", .path = "/count", .body = "{}", .len = 2};
  perform(s, e, &q, &r);
  CHECK(s, r.rc == CURLE_OK && r.status == 200);
  resp_free(&r);
  free(body);
  curl_easy_cleanup(e);
}

static void too_large(void **state) {
  server_t s;
  server_start(&s, *state, SMALL_MAX_BODY, 10000);
  run_client(&s, client_too_large);
  http_stats_t st;
  http_stats(s.h, &st);
  assert_int_equal(s.count_calls, 2);
  assert_int_equal(st.too_large, 3);
  server_stop(&s);
}

static int n_ok, n_limited;
static double rate_elapsed_s;

static void client_rate(server_t *s) {
  CURL *e[2] = {curl_easy_init(), curl_easy_init()};
  cresp_t r;
  n_ok = n_limited = 0;
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < 30; i++) {
    creq_t q = {.method = "POST",
                .path = "/count",
                .body = "{}",
                .len = 2,
                .version = i % 2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1};
    perform(s, e[i % 2], &q, &r);
    CHECK(s, r.rc == CURLE_OK);
    if (r.status == 200) {
      n_ok++;
    } else {
      CHECK(s, r.status == 429);
      CHECK(s, has_header(&r, "retry-after: 1\r\n"));
      CHECK(s, json_field_is(&r, "error", "rate_limited"));
      CHECK(s, api_headers_present(&r));
      n_limited++;
    }
    resp_free(&r);
  }
  rate_elapsed_s = (double)(uv_hrtime() - t0) / 1e9;
  curl_easy_cleanup(e[0]);
  curl_easy_cleanup(e[1]);
}

static void rate_limit(void **state) {
  server_t s;
  server_start(&s, *state, 0, 5);
  run_client(&s, client_rate);
  http_stats_t st;
  http_stats(s.h, &st);
  /* A burst of 10, then 5 a second (the bound allows for the time the 30
   * requests took on a busy machine). */
  assert_true(n_ok >= 10);
  assert_true(n_ok <= 10 + (int)(5 * rate_elapsed_s) + 1);
  assert_true(n_limited >= 1);
  assert_int_equal(n_ok + n_limited, 30);
  assert_int_equal(s.count_calls, n_ok);
  assert_int_equal(st.rate_limited, (uint64_t)n_limited);
  server_stop(&s);
}

static void client_pins(server_t *s) {
  CURL *e = curl_easy_init();
  cresp_t r;
  const long versions[] = {CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2TLS};
  for (size_t i = 0; i < 2; i++) {
    creq_t q = {.method = "GET",
                .path = "/show",
                .version = versions[i],
                .pin = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="};
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH);
    resp_free(&r);
    /* The CA's key is not the server's. */
    char ca_pin[128];
    CHECK(s, certs_pin_of(s->g->certs.ca_file, ca_pin, sizeof(ca_pin)) == 0);
    q.pin = ca_pin;
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_SSL_PINNEDPUBKEYNOTMATCH);
    resp_free(&r);
    q.pin = NULL;
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_OK && r.status == 200);
    resp_free(&r);
  }
  curl_easy_cleanup(e);
}

static void pins(void **state) {
  server_t s;
  server_start(&s, *state, 0, 10000);
  run_client(&s, client_pins);
  server_stop(&s);
}

static void client_dropped(server_t *s) {
  const long versions[] = {CURL_HTTP_VERSION_1_1, CURL_HTTP_VERSION_2TLS};
  cresp_t r;
  for (int i = 0; i < 2; i++) {
    CURL *e = curl_easy_init();
    /* Warm the connection so that the request goes out at once. */
    creq_t q = {.method = "GET", .path = "/show", .version = versions[i]};
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_OK && r.status == 200);
    resp_free(&r);
    /* The client gives up after 10 ms and closes; only then is the reply
     * made, from a timer, so that it always finds the client gone. */
    q = (creq_t){.method = "GET", .path = "/abandon", .version = versions[i], .timeout_ms = 10};
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_OPERATION_TIMEDOUT);
    resp_free(&r);
    curl_easy_cleanup(e);
    CHECK(s, wait_for(s, &s->abandon_calls, NULL, i + 1));
    uv_async_send(&s->kick);
    CHECK(s, wait_for(s, &s->delayed_replies, NULL, i + 1));
  }
  /* The server still answers, and a delayed reply reaches a patient client. */
  CURL *e = curl_easy_init();
  for (int i = 0; i < 2; i++) {
    creq_t q = {.method = "GET", .path = "/delay", .version = versions[i]};
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_OK && r.status == 200);
    CHECK(s, strcmp(r.body.data, "{\"late\":true}") == 0);
    resp_free(&r);
  }
  creq_t q = {.method = "GET", .path = "/show"};
  perform(s, e, &q, &r);
  CHECK(s, r.rc == CURLE_OK && r.status == 200);
  resp_free(&r);
  curl_easy_cleanup(e);
}

static void dropped_replies(void **state) {
  server_t s;
  server_start(&s, *state, 0, 10000);
  assert_int_equal(uv_async_init(&s.loop, &s.kick, on_kick), 0);
  s.kick.data = &s;
  run_client(&s, client_dropped);
  http_stats_t st;
  http_stats(s.h, &st);
  assert_int_equal(s.abandon_calls, 2);
  assert_int_equal(s.delayed_calls, 2);
  assert_int_equal(s.delayed_replies, 4);
  assert_int_equal(st.dropped_replies, 2);
  assert_int_equal(st.replies, 5);
  uv_close((uv_handle_t *)&s.kick, NULL);
  server_stop(&s);
}

static int connect_tcp(const server_t *s) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {WAIT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Sends bytes and waits until the server closes the connection (true) or
 * the wait times out (false). */
static bool send_and_wait_close(const server_t *s, const void *p, size_t n) {
  int fd = connect_tcp(s);
  if (fd < 0)
    return false;
  if (n > 0 && send(fd, p, n, MSG_NOSIGNAL) != (ssize_t)n) {
    close(fd);
    return false;
  }
  char buf[4096];
  ssize_t got;
  while ((got = recv(fd, buf, sizeof(buf), 0)) > 0)
    ;
  bool closed = got == 0 || (got < 0 && errno == ECONNRESET);
  close(fd);
  return closed;
}

/* Sends bytes and closes without waiting. */
static bool send_and_close(const server_t *s, const void *p, size_t n) {
  int fd = connect_tcp(s);
  if (fd < 0)
    return false;
  bool ok = n == 0 || send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n;
  close(fd);
  return ok;
}

/* Opens a TLS connection with the given ALPN, sends bytes and closes. */
static bool tls_send_and_close(const server_t *s, const unsigned char *alpn, unsigned alpn_len,
                               const char *p, size_t n) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_alpn_protos(ctx, alpn, alpn_len);
  SSL *ssl = SSL_new(ctx);
  int fd = connect_tcp(s);
  bool ok = fd >= 0;
  if (ok) {
    SSL_set_fd(ssl, fd);
    ok = SSL_connect(ssl) == 1 && SSL_write(ssl, p, (int)n) == (int)n;
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  if (fd >= 0)
    close(fd);
  return ok;
}

static void client_garbage(server_t *s) {
  unsigned char junk[600];
  for (size_t i = 0; i < sizeof(junk); i++)
    junk[i] = (unsigned char)(i * 7 + 3);
  CHECK(s, send_and_wait_close(s, junk, sizeof(junk)));
  const char *plain = "GET /show HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(s, send_and_wait_close(s, plain, strlen(plain)));
  /* A connection closed at once, and a record header cut short. */
  CHECK(s, send_and_close(s, NULL, 0));
  CHECK(s, send_and_close(s, "\x16\x03\x01\x02\x00\x01", 6));
  CHECK(s, send_and_wait_close(s,
                               "\x16\x03\x01\x00\x04"
                               "abcd",
                               9));
  /* A half request, and garbage instead of the HTTP/2 preface. */
  const char *half = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc";
  CHECK(s, tls_send_and_close(s, (const unsigned char *)"\x08http/1.1", 9, half, strlen(half)));
  CHECK(s, tls_send_and_close(s, (const unsigned char *)"\x02h2", 3, "PRI * garbage\r\n\r\n", 17));
  CHECK(s,
        tls_send_and_close(s, (const unsigned char *)"\x08http/1.1", 9, "\x01\x02\x03\r\n\r\n", 7));
  /* The server still answers. */
  CURL *e = curl_easy_init();
  cresp_t r;
  for (int v = 0; v < 2; v++) {
    creq_t q = {.method = "GET",
                .path = "/show",
                .version = v ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1};
    perform(s, e, &q, &r);
    CHECK(s, r.rc == CURLE_OK && r.status == 200);
    resp_free(&r);
  }
  curl_easy_cleanup(e);
}

static void malformed_input(void **state) {
  server_t s;
  server_start(&s, *state, 0, 10000);
  run_client(&s, client_garbage);
  http_stats_t st;
  http_stats(s.h, &st);
  assert_true(st.tls_failures >= 3);
  server_stop(&s);
}

/* Speaks just enough HTTP/2 to send GET /prepared, waits until the
 * server holds the request, then resets the TCP connection. */
static void client_rst(server_t *s) {
  static const unsigned char frames[] =
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
      "\x00\x00\x00\x04\x00\x00\x00\x00\x00" /* SETTINGS */
      "\x00\x00\x10\x01\x05\x00\x00\x00\x01" /* HEADERS, END_STREAM | END_HEADERS */
      "\x82\x87\x44\x09/prepared\x41\x01x";
  for (int round = 1; round <= 3; round++) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3);
    SSL *ssl = SSL_new(ctx);
    int fd = connect_tcp(s);
    CHECK(s, fd >= 0);
    SSL_set_fd(ssl, fd);
    CHECK(s, SSL_connect(ssl) == 1);
    CHECK(s, SSL_write(ssl, frames, sizeof(frames) - 1) == (int)sizeof(frames) - 1);
    CHECK(s, wait_for(s, &s->prepared_calls, NULL, round));
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    atomic_store(&s->rst_sent, true);
    CHECK(s, wait_for(s, NULL, &s->prepared_replied, 0));
    pthread_mutex_lock(&s->mu);
    s->prepared_replied = false;
    pthread_mutex_unlock(&s->mu);
    atomic_store(&s->rst_sent, false);
  }
  /* The server still answers. */
  CURL *e = curl_easy_init();
  cresp_t r;
  creq_t q = {.method = "GET", .path = "/show", .version = CURL_HTTP_VERSION_2TLS};
  perform(s, e, &q, &r);
  CHECK(s, r.rc == CURLE_OK && r.status == 200);
  resp_free(&r);
  curl_easy_cleanup(e);
}

/* A reply queued in the same loop iteration in which the client's RST is
 * read: the connection must still be closed and freed (libuv refuses the
 * write after the read error without calling back; see http.c). */
static void reset_during_reply(void **state) {
  server_t s;
  server_start(&s, *state, 0, 10000);
  uv_idle_init(&s.loop, &s.spin);
  uv_prepare_init(&s.loop, &s.before_poll);
  s.before_poll.data = &s;
  run_client(&s, client_rst);
  assert_int_equal(s.prepared_calls, 3);
  uv_close((uv_handle_t *)&s.spin, NULL);
  uv_close((uv_handle_t *)&s.before_poll, NULL);
  server_stop(&s);
}

static void client_shutdown(server_t *s) {
  cresp_t r;
  /* Idle keep-alive connections of both versions stay open meanwhile. */
  CURL *idle[2];
  for (int v = 0; v < 2; v++) {
    idle[v] = curl_easy_init();
    creq_t q = {.method = "GET",
                .path = "/show",
                .version = v ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1};
    perform(s, idle[v], &q, &r);
    CHECK(s, r.rc == CURLE_OK && r.status == 200);
    resp_free(&r);
  }
  CURL *e = curl_easy_init();
  creq_t q = {.method = "GET", .path = "/hold"};
  perform(s, e, &q, &r);
  /* The pending request is answered 503 when the server goes away. */
  CHECK(s, r.rc == CURLE_OK && r.status == 503);
  CHECK(s, json_field_is(&r, "error", "unavailable"));
  resp_free(&r);
  CHECK(s, wait_for(s, NULL, &s->late_reply_done, 0));
  curl_easy_cleanup(e);
  for (int v = 0; v < 2; v++)
    curl_easy_cleanup(idle[v]);
}

/* http_free() from a loop callback with a pending request and idle
 * connections; the handler replies after the server is gone. */
static void free_while_pending(void **state) {
  server_t s;
  server_start(&s, *state, 0, 10000);
  uv_timer_init(&s.loop, &s.free_timer);
  uv_timer_init(&s.loop, &s.late_timer);
  s.free_timer.data = s.late_timer.data = &s;
  run_client(&s, client_shutdown);
  assert_null(s.h);
  assert_null(s.held);
  uv_close((uv_handle_t *)&s.free_timer, NULL);
  uv_close((uv_handle_t *)&s.late_timer, NULL);
  server_stop(&s);
}

static void ipv6_listener(void **state) {
  const group_t *g = *state;
  int probe = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  bool have_v6 = probe >= 0 && bind(probe, (struct sockaddr *)&a, sizeof(a)) == 0;
  if (probe >= 0)
    close(probe);
  if (!have_v6)
    skip();
  server_t s;
  memset(&s, 0, sizeof(s));
  s.g = g;
  s.ipv6 = true;
  pthread_mutex_init(&s.mu, NULL);
  pthread_cond_init(&s.cv, NULL);
  assert_int_equal(uv_loop_init(&s.loop), 0);
  http_opts_t o = {"[::1]:0", g->certs.cert_file, g->certs.key_file, 0, 0};
  assert_int_equal(http_new(&s.loop, &o, &s.h), 0);
  assert_int_equal(http_route(s.h, "GET", "/show", on_show, &s), 0);
  assert_int_equal(http_start(s.h), 0);
  s.port = http_port(s.h);
  run_client(&s, client_headers);
  server_stop(&s);
}

static void bad_options(void **state) {
  const group_t *g = *state;
  uv_loop_t loop;
  http_t *h = NULL;
  assert_int_equal(uv_loop_init(&loop), 0);
  static const char *const bad[] = {
      "127.0.0.1",  "localhost:8443", "[::1]",    "[::1]8443", ":8443",        "1.2.3.4:99999",
      "1.2.3.4:-1", "1.2.3.4:",       "::1:8443", "[]:1",      "1.2.3.4.5:80", NULL};
  for (const char *const *l = bad; *l != NULL; l++) {
    http_opts_t o = {*l, g->certs.cert_file, g->certs.key_file, 0, 0};
    assert_int_equal(http_new(&loop, &o, &h), YM_EINVAL);
  }
  http_opts_t o = {"127.0.0.1:0", "/nonexistent.pem", g->certs.key_file, 0, 0};
  assert_int_equal(http_new(&loop, &o, &h), YM_ENOENT);
  o = (http_opts_t){"127.0.0.1:0", g->certs.cert_file, g->certs.ca_file, 0, 0};
  assert_int_equal(http_new(&loop, &o, &h), YM_ECRYPTO);
  o = (http_opts_t){"127.0.0.1:0", g->certs.cert_file, g->certs.key_file, 0, 2000000};
  assert_int_equal(http_new(&loop, &o, &h), YM_EINVAL);

  /* A port in use is an error of http_start(). */
  http_t *a = NULL, *b = NULL;
  o = (http_opts_t){"127.0.0.1:0", g->certs.cert_file, g->certs.key_file, 0, 0};
  assert_int_equal(http_new(&loop, &o, &a), 0);
  assert_int_equal(http_start(a), 0);
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", http_port(a));
  o.listen = listen;
  assert_int_equal(http_new(&loop, &o, &b), 0);
  assert_int_not_equal(http_start(b), 0);
  assert_int_equal(http_port(b), -1);
  http_free(a);
  http_free(b);
  /* Never started. */
  assert_int_equal(http_new(&loop, &o, &a), 0);
  http_free(a);
  http_free(NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(certs_first_start),
      cmocka_unit_test(certs_contents),
      cmocka_unit_test(certs_refusals),
      cmocka_unit_test(bad_options),
      cmocka_unit_test(echo_both_versions),
      cmocka_unit_test(request_headers),
      cmocka_unit_test(routing),
      cmocka_unit_test(too_large),
      cmocka_unit_test(rate_limit),
      cmocka_unit_test(pins),
      cmocka_unit_test(dropped_replies),
      cmocka_unit_test(malformed_input),
      cmocka_unit_test(free_while_pending),
      cmocka_unit_test(ipv6_listener),
      cmocka_unit_test(reset_during_reply),
  };
  int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
  curl_global_cleanup();
  return rc;
}
