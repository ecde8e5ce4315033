/*
 * yamori-console: the provider's console.
 *
 *   yamori-console serve        run the console (agent API over HTTPS)
 *   yamori-console tenant ...   manage customer companies
 *   yamori-console token ...    manage enrollment tokens
 *   yamori-console settings ... a company's notification settings
 *   yamori-console notify ...   notifications: test, list, enqueue
 *   yamori-console installer    make a company's installer (dist.h)
 *   yamori-console rules compile-sigma  Sigma rules to the agent's form (sigma_compile.h)
 *
 * Everything lives in one data directory (default /var/lib/yamori-console,
 * --data-dir to choose): the SQLite database, the certificates, and the
 * console's public URL (written by serve, read by token create).
 */
#include "api.h"
#include "auth.h"
#include "certs.h"
#include "commands.h"
#include "dist.h"
#include "http.h"
#include "incidents.h"
#include "release.h"
#include "sigma_compile.h"
#include "notify.h"
#include "web.h"
#include "stats.h"
#include "store.h"

#include "yamori/buf.h"
#include "yamori/err.h"
#include "yamori/json.h"
#include "yamori/log.h"
#include "yamori/version.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 64
#define DEFAULT_DATA_DIR "/var/lib/yamori-console"
#define DEFAULT_LISTEN "127.0.0.1:8443"

typedef struct {
  const char *data_dir;
  const char *listen;
  const char *url;
  const char *tenant;
  const char *display;
  long long expires_days;
  long long max_uses;
  unsigned rate_per_ip;
  const char *web_dir;
  const char *installer; /* the generic installer file (serve, installer) */
  unsigned checkin_s;
  unsigned maintenance_s;
  notify_opts_t notify;       /* serve: the sender's options */
  notify_settings_t settings; /* settings set */
  long long incident;         /* notify enqueue */
  const char *change;         /* notify enqueue */
  const char *out;
  const char *helpdesk;
  commands_cli_t cmd; /* command ...: --agent, --kind, --args, --incident, --out, --user */
} opts_t;

static void usage(FILE *f) {
  fputs("Usage: yamori-console [OPTIONS] COMMAND [ARGS]\n"
        "\n"
        "The Yamori console: receives events from agents and shows them to people.\n"
        "\n"
        "Commands:\n"
        "  serve                       run the console\n"
        "  tenant add NAME             add a customer company\n"
        "  tenant list                 list customer companies\n"
        "  token create --tenant NAME  make an enrollment token (printed once)\n"
        "  token revoke ID             revoke a token\n"
        "  settings set --tenant NAME [--lang ja|en] [--emails A,B] [--webhook URL]\n"
        "               [--webhook-secret S] [--helpdesk TEXT]\n"
        "                              a company's notification settings\n"
        "  notify test --tenant NAME   send a test message to the company's recipients\n"
        "  notify list [--tenant NAME] show the newest messages of the outbox\n"
        "  notify enqueue --incident ID --change created|acknowledged|resolved|reopened\n"
        "                              enqueue the messages of an incident's change\n"
        "  installer --tenant NAME     make the company's installer: a new enrollment\n"
        "                              token inside the generic installer\n"
        "  stats [--month YYYY-MM]     anonymised counts over all companies (JSON)\n"
        "  command add --agent ID --kind KIND [--args JSON] [--incident N]\n"
        "                              queue a response command (scan, quarantine,\n"
        "                              restore, kill, triage) for an agent\n"
        "  command list [--agent ID]   list response commands (JSON)\n"
        "  command show ID             show a command and its result (JSON)\n"
        "  command bundle ID --out FILE  save a triage bundle (gzip JSON)\n"
        "  rules compile-sigma [--strict] IN... -o OUT.json\n"
        "                              compile Sigma rules (files or directories) for\n"
        "                              the agent; one line per rule, accepted or refused\n"
        "  rules import-sigma DIR [--tenant NAME] [-o OUT]\n"
        "                              compile a provider's Sigma collection into\n"
        "                              OUT/sigma/ for `rules publish OUT`\n"
        "\n"
        "Options:\n"
        "  -d, --data-dir DIR   data directory (default " DEFAULT_DATA_DIR ")\n"
        "  -l, --listen ADDR    serve: address and port (default " DEFAULT_LISTEN ")\n"
        "  -u, --url URL        serve: the URL agents use (default https://LISTEN);\n"
        "                       token create: override the stored URL\n"
        "      --display TEXT   tenant add: the company's display name\n"
        "      --expires DAYS   token create: valid for DAYS days (default 7; 0: never)\n"
        "      --max-uses N     token create: at most N enrollments (default 0: unlimited)\n"
        "      --smtp-url URL   serve: e-mail through smtp://HOST:PORT (STARTTLS required)\n"
        "                       or smtps://HOST:PORT; the password comes from the\n"
        "                       environment variable YAMORI_SMTP_PASSWORD\n"
        "      --smtp-from ADDR serve: the sender address of e-mail\n"
        "      --smtp-user NAME serve: SMTP login name\n"
        "      --smtp-ca FILE   serve: trust this CA for SMTP (default: system CAs)\n"
        "      --smtp-plain     serve: allow smtp:// without TLS (a local relay only)\n"
        "      --web-dir DIR    serve: the dashboard's files (default " YAMORI_WEB_DIR ")\n"
        "      --installer FILE serve, installer: the generic agent installer made into each\n"
        "                       company's own (default: $YAMORI_INSTALLER, then\n"
        "                       yamori-installer.run next to this program or in\n"
        "                       ../installer/, then /usr/share/yamori/yamori-installer.run)\n"
        "      --checkin-s N    serve: agents check in every N seconds (default 60)\n"
        "      --maintenance-s N  serve: silent PCs and retention checked every N s (default 60)\n"
        "      --out FILE       installer: where to write it (default\n"
        "                       yamori-installer-NAME.run)\n"
        "      --helpdesk TEXT  installer: help desk contact shown when installation ends;\n"
        "                       settings set: the company's help desk contact\n"
        "  -h, --help           show this help and exit\n"
        "  -V, --version        show versions and exit\n",
        f);
}

/* ---------------------------------------------------------------- */
/* Small files in the data directory                                  */

static int ensure_dir(const char *dir) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return ym_err_from_errno(errno);
  return 0;
}

static int write_small(const char *path, const char *text) {
  char tmp[1200];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return ym_err_from_errno(errno);
  size_t n = strlen(text);
  int rc = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0 ? 0 : YM_EIO;
  close(fd);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = ym_err_from_errno(errno);
  return rc;
}

static int read_small(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return ym_err_from_errno(errno);
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n < 0)
    return YM_EIO;
  buf[n] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  return 0;
}

/* base64url without padding. */
static void b64url(const unsigned char *in, size_t n, ym_buf_t *out) {
  size_t cap = 4 * ((n + 2) / 3) + 1;
  char *tmp = malloc(cap);
  if (tmp == NULL)
    return;
  int len = EVP_EncodeBlock((unsigned char *)tmp, in, (int)n);
  while (len > 0 && tmp[len - 1] == '=')
    len--;
  for (int i = 0; i < len; i++)
    tmp[i] = tmp[i] == '+' ? '-' : (tmp[i] == '/' ? '_' : tmp[i]);
  ym_buf_append(out, tmp, (size_t)len);
  free(tmp);
}

/* ---------------------------------------------------------------- */
/* serve                                                              */

typedef struct {
  uv_signal_t sigterm, sigint;
  http_t *http;
  notify_t *notify;
  bool stopping;
} serve_t;

static void on_signal(uv_signal_t *s, int signum) {
  serve_t *sv = s->data;
  (void)signum;
  if (sv->stopping)
    return;
  sv->stopping = true;
  ym_log(YM_LOG_NOTICE, 0, "stopping on signal %d", signum);
  http_free(sv->http);
  sv->http = NULL;
  notify_free(sv->notify);
  sv->notify = NULL;
  uv_close((uv_handle_t *)&sv->sigterm, NULL);
  uv_close((uv_handle_t *)&sv->sigint, NULL);
}

/* The tables of the console's modules, after the store's own. */
static int apply_schemas(store_t *s) {
  int rc = incidents_schema(s);
  if (rc == 0)
    rc = auth_schema(s);
  if (rc == 0)
    rc = release_ensure_schema(s);
  if (rc == 0)
    rc = commands_schema(s);
  if (rc == 0)
    rc = notify_schema(s);
  return rc;
}

static int cmd_serve(const opts_t *o) {
  int rc = ensure_dir(o->data_dir);
  if (rc != 0) {
    ym_log(YM_LOG_ERROR, rc, "cannot create the data directory %s", o->data_dir);
    return 1;
  }
  char certdir[1100], urlfile[1100], url[512];
  snprintf(certdir, sizeof(certdir), "%s/tls", o->data_dir);
  snprintf(urlfile, sizeof(urlfile), "%s/url", o->data_dir);
  if (o->url != NULL)
    snprintf(url, sizeof(url), "%s", o->url);
  else
    snprintf(url, sizeof(url), "https://%s", o->listen);
  /* The URL's host goes into the certificate too. */
  char host[256] = "";
  const char *h = strstr(url, "://");
  if (h != NULL) {
    h += 3;
    size_t n = h[0] == '[' ? strcspn(h + 1, "]") : strcspn(h, ":/");
    snprintf(host, sizeof(host), "%.*s", (int)n, h[0] == '[' ? h + 1 : h);
  }
  const char *extra[1] = {host};
  certs_t certs;
  rc = certs_ensure(certdir, extra, host[0] ? 1 : 0, &certs);
  if (rc != 0) {
    ym_log(YM_LOG_ERROR, rc, "cannot create or load the certificates in %s", certdir);
    return 1;
  }
  write_small(urlfile, url);

  uv_loop_t loop;
  uv_loop_init(&loop);
  store_t *store = NULL;
  rc = store_open(o->data_dir, &loop, &store);
  if (rc == 0)
    rc = apply_schemas(store);
  if (rc != 0) {
    ym_log(YM_LOG_ERROR, rc, "cannot open the database in %s", o->data_dir);
    return 1;
  }
  char password[33];
  if (store_sync_ensure_admin(store, password) == 1) {
    printf("first start: provider administrator \"admin\", password %s (shown once)\n", password);
    memset(password, 0, sizeof(password));
  }
  http_opts_t ho = {o->listen, certs.cert_file, certs.key_file, 4 * 1024 * 1024,
                    o->rate_per_ip ? o->rate_per_ip : 200};
  serve_t sv = {0};
  rc = http_new(&loop, &ho, &sv.http);
  api_t *api = NULL;
  api_opts_t ao = {o->checkin_s ? o->checkin_s : 60, 50};
  if (rc == 0)
    rc = api_new(&loop, sv.http, store, &ao, &api);
  /* Before the dashboard's catch-all route: the first match wins. */
  release_t *rel = NULL;
  if (rc == 0)
    rc = release_new(store, api, &rel);
  incidents_t *incidents = NULL;
  incidents_opts_t io = {o->maintenance_s, notify_enqueue_db};
  if (rc == 0)
    rc = incidents_new(&loop, store, &io, &incidents);
  if (rc == 0)
    rc = api_add_checkin(api, incidents_checkin, incidents);
  web_t *web = NULL;
  /* Without --installer, the generic installer next to this program (or
   * the build tree's) is offered when there is one. */
  static char found_installer[4096];
  const char *installer = o->installer;
  if (installer == NULL && dist_find_template(found_installer, sizeof(found_installer)) == 0)
    installer = found_installer;
  web_opts_t wo = {
      o->web_dir ? o->web_dir : YAMORI_WEB_DIR, url, certs.pin, installer, o->data_dir, incidents};
  if (rc == 0)
    rc = web_new(&loop, sv.http, store, &wo, &web);
  if (rc == 0)
    rc = commands_attach(api, store);
  if (rc == 0)
    rc = http_start(sv.http);
  if (rc == 0) {
    notify_opts_t no = o->notify;
    no.console_url = url;
    no.smtp_password = getenv("YAMORI_SMTP_PASSWORD");
    rc = notify_new(&loop, store, &no, &sv.notify);
    if (rc != 0)
      ym_log(YM_LOG_ERROR, rc,
             "bad notification options: --smtp-url smtp[s]://HOST[:PORT] (login in --smtp-user,"
             " password in YAMORI_SMTP_PASSWORD), --smtp-from ADDRESS");
    else if (no.smtp_url == NULL)
      ym_log(YM_LOG_NOTICE, 0, "e-mail notifications are off (no --smtp-url)");
    else
      ym_log(YM_LOG_INFO, 0, "e-mail notifications through %s%s", no.smtp_url,
             no.smtp_plain ? " without TLS" : "");
  }
  if (rc != 0) {
    ym_log(YM_LOG_ERROR, rc, "cannot serve on %s", o->listen);
    http_free(sv.http);
    release_free(rel);
    api_free(api);
    web_free(web);
    store_close(store);
    incidents_free(incidents);
    uv_run(&loop, UV_RUN_DEFAULT);
    return 1;
  }
  printf("console listening on %s (url %s)\ncertificate pin %s\n", o->listen, url, certs.pin);
  fflush(stdout);
  uv_signal_init(&loop, &sv.sigterm);
  uv_signal_init(&loop, &sv.sigint);
  sv.sigterm.data = sv.sigint.data = &sv;
  uv_signal_start(&sv.sigterm, on_signal, SIGTERM);
  uv_signal_start(&sv.sigint, on_signal, SIGINT);
  uv_run(&loop, UV_RUN_DEFAULT);
  release_free(rel);
  api_free(api);
  web_free(web);
  store_close(store);
  incidents_free(incidents);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return 0;
}

/* ---------------------------------------------------------------- */
/* tenants and tokens                                                 */

static void print_tenant(int64_t id, const char *name, const char *display, int64_t agents,
                         void *data) {
  (void)data;
  printf("%lld\t%s\t%s\t%lld agents\n", (long long)id, name, display ? display : "",
         (long long)agents);
}

static int open_store_sync(const opts_t *o, store_t **s) {
  int rc = ensure_dir(o->data_dir);
  if (rc == 0)
    rc = store_open(o->data_dir, NULL, s);
  if (rc == 0 && (rc = apply_schemas(*s)) != 0) {
    store_close(*s);
    *s = NULL;
  }
  if (rc != 0)
    fprintf(stderr, "yamori-console: cannot open the database in %s: %s\n", o->data_dir,
            ym_strerror(rc));
  return rc;
}

static int cmd_tenant(const opts_t *o, int argc, char **argv) {
  store_t *s = NULL;
  if (argc < 1)
    return EXIT_USAGE;
  if (strcmp(argv[0], "add") == 0 && argc == 2) {
    if (strlen(argv[1]) == 0 || strlen(argv[1]) > 64 ||
        strspn(argv[1], "abcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(argv[1])) {
      fprintf(stderr, "yamori-console: a tenant name is 1 to 64 of a-z 0-9 - _\n");
      return EXIT_USAGE;
    }
    if (open_store_sync(o, &s) != 0)
      return 1;
    int64_t id;
    int rc = store_sync_tenant_add(s, argv[1], o->display ? o->display : argv[1], &id);
    store_close(s);
    if (rc != 0) {
      fprintf(stderr, "yamori-console: cannot add tenant %s: %s\n", argv[1],
              rc == YM_EEXIST ? "it exists already" : ym_strerror(rc));
      return 1;
    }
    printf("tenant %s added (id %lld)\n", argv[1], (long long)id);
    return 0;
  }
  if (strcmp(argv[0], "list") == 0 && argc == 1) {
    if (open_store_sync(o, &s) != 0)
      return 1;
    int rc = store_sync_tenant_list(s, print_tenant, NULL);
    store_close(s);
    return rc == 0 ? 0 : 1;
  }
  return EXIT_USAGE;
}

/* Creates an enrollment token for o->tenant (with o->expires_days and
 * o->max_uses) and appends its "ymt1." form to out. Returns 0, 1 (an error,
 * already reported on stderr) or EXIT_USAGE. */
static int make_token(const opts_t *o, ym_buf_t *out) {
  store_t *s = NULL;
  if (o->tenant == NULL) {
    fprintf(stderr, "yamori-console: a token needs --tenant NAME\n");
    return EXIT_USAGE;
  }
  char url[512], urlfile[1100], certdir[1100];
  snprintf(urlfile, sizeof(urlfile), "%s/url", o->data_dir);
  snprintf(certdir, sizeof(certdir), "%s/tls", o->data_dir);
  if (o->url != NULL)
    snprintf(url, sizeof(url), "%s", o->url);
  else if (read_small(urlfile, url, sizeof(url)) != 0) {
    fprintf(stderr, "yamori-console: no console URL known yet: run serve once or give --url\n");
    return 1;
  }
  certs_t certs;
  if (certs_ensure(certdir, NULL, 0, &certs) != 0) {
    fprintf(stderr, "yamori-console: cannot load the certificates in %s\n", certdir);
    return 1;
  }
  if (open_store_sync(o, &s) != 0)
    return 1;
  char id[17], secret[44];
  int64_t expires = o->expires_days > 0 ? (int64_t)time(NULL) + o->expires_days * 86400 : 0;
  int rc = store_sync_token_create(s, o->tenant, expires, o->max_uses, id, secret);
  store_close(s);
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot create a token for tenant %s: %s\n", o->tenant,
            rc == YM_ENOENT ? "no such tenant" : ym_strerror(rc));
    return 1;
  }
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "url", url);
  cJSON_AddStringToObject(j, "pin", certs.pin);
  char tok[64];
  snprintf(tok, sizeof(tok), "%s.%s", id, secret);
  cJSON_AddStringToObject(j, "tok", tok);
  char *text = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  rc = text != NULL ? ym_buf_append_str(out, "ymt1.") : YM_ENOMEM;
  if (rc == 0)
    b64url((const unsigned char *)text, strlen(text), out);
  fprintf(stderr, "token %s for tenant %s%s\n", id, o->tenant, expires ? "" : " (no expiry)");
  explicit_bzero(secret, sizeof(secret));
  explicit_bzero(tok, sizeof(tok));
  if (text != NULL)
    explicit_bzero(text, strlen(text));
  free(text);
  return rc == 0 ? 0 : 1;
}

typedef struct {
  const char *tenant;
  char text[1024];
} helpdesk_q_t;

/* Reads the tenant's help desk text (store_fn). */
static int tenant_helpdesk(sqlite3 *db, void *arg) {
  helpdesk_q_t *q = arg;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "SELECT helpdesk FROM tenants WHERE name = ?1", -1, &st, NULL) !=
      SQLITE_OK)
    return YM_EIO;
  sqlite3_bind_text(st, 1, q->tenant, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
    snprintf(q->text, sizeof(q->text), "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  return 0;
}

/* installer --tenant T [--out FILE] [--installer FILE] [--helpdesk TEXT]:
 * a new enrollment token in a copy of the generic installer (dist.h). */
static int cmd_installer(const opts_t *o, int argc) {
  if (argc != 0)
    return EXIT_USAGE;
  char tmpl[4096];
  if (o->installer != NULL)
    snprintf(tmpl, sizeof(tmpl), "%s", o->installer);
  else if (dist_find_template(tmpl, sizeof(tmpl)) != 0) {
    fprintf(stderr, "yamori-console: the generic installer was not found (looked for "
                    "yamori-installer.run next to this program, in ../installer/ and in "
                    "/usr/share/yamori/): give --installer FILE\n");
    return 1;
  }
  char outname[600];
  if (o->out != NULL)
    snprintf(outname, sizeof(outname), "%s", o->out);
  else if (o->tenant != NULL)
    snprintf(outname, sizeof(outname), "yamori-installer-%s.run", o->tenant);
  ym_buf_t tok, file;
  ym_buf_init(&tok, 8192);
  ym_buf_init(&file, DIST_TEMPLATE_MAX + DIST_CONFIG_MAX);
  int rc = make_token(o, &tok);
  if (rc != 0)
    goto out;
  /* The help desk: --helpdesk, else the tenant's own (dashboard settings). */
  char helpdesk[DIST_HELPDESK_MAX + 1] = "";
  if (o->helpdesk == NULL) {
    store_t *s = NULL;
    helpdesk_q_t hq = {o->tenant, ""};
    if (open_store_sync(o, &s) == 0) {
      store_sync_call(s, tenant_helpdesk, &hq);
      store_close(s);
    }
    dist_helpdesk_line(hq.text, helpdesk, sizeof(helpdesk));
  }
  int drc = dist_installer_ex(tmpl, tok.data, o->helpdesk ? o->helpdesk : helpdesk, &file);
  if (drc != 0) {
    fprintf(stderr, "yamori-console: cannot make the installer from %s: %s\n", tmpl,
            drc == YM_EPARSE   ? "it is not a Yamori installer"
            : drc == YM_EINVAL ? "the help desk text is not one line of text (256 bytes at most)"
                               : ym_strerror(drc));
    rc = 1;
    goto out;
  }
  /* The file holds a live token: readable by its owner only. */
  char tmp[700];
  snprintf(tmp, sizeof(tmp), "%s.tmp", outname);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  size_t off = 0;
  while (fd >= 0 && off < file.len) {
    ssize_t w = write(fd, file.data + off, file.len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;
    off += (size_t)w;
  }
  if (fd < 0 || off != file.len || fsync(fd) != 0 || close(fd) != 0 || rename(tmp, outname) != 0) {
    fprintf(stderr, "yamori-console: cannot write %s: %s\n", outname, strerror(errno));
    if (fd >= 0)
      unlink(tmp);
    rc = 1;
    goto out;
  }
  printf("%s\n", outname);
  fprintf(stderr, "installer for tenant %s written to %s (%zu bytes); on the PC run: sudo sh %s\n",
          o->tenant, outname, file.len, outname);
out:
  if (tok.data != NULL)
    explicit_bzero(tok.data, tok.len);
  if (file.data != NULL)
    explicit_bzero(file.data, file.len);
  ym_buf_free(&tok);
  ym_buf_free(&file);
  return rc;
}

static int cmd_token(const opts_t *o, int argc, char **argv) {
  store_t *s = NULL;
  if (argc < 1)
    return EXIT_USAGE;
  if (strcmp(argv[0], "create") == 0 && argc == 1) {
    ym_buf_t tok;
    ym_buf_init(&tok, 8192);
    int rc = make_token(o, &tok);
    if (rc == 0)
      printf("%s\n", tok.data);
    if (tok.data != NULL)
      explicit_bzero(tok.data, tok.len);
    ym_buf_free(&tok);
    return rc;
  }
  if (strcmp(argv[0], "revoke") == 0 && argc == 2) {
    if (open_store_sync(o, &s) != 0)
      return 1;
    int rc = store_sync_token_revoke(s, argv[1]);
    store_close(s);
    if (rc != 0) {
      fprintf(stderr, "yamori-console: cannot revoke %s: %s\n", argv[1], ym_strerror(rc));
      return 1;
    }
    printf("token %s revoked\n", argv[1]);
    return 0;
  }
  return EXIT_USAGE;
}

/* ---------------------------------------------------------------- */
/* stats                                                              */

typedef struct {
  int64_t from, to;
  cJSON *out;
} stats_arg_t;

static int stats_fn(sqlite3 *db, void *arg) {
  stats_arg_t *a = arg;
  return stats_json(db, a->from, a->to, a->out);
}

static int cmd_stats(const opts_t *o, int argc, char **argv) {
  int y = 0, m = 0;
  if (argc == 2 && strcmp(argv[0], "--month") == 0) {
    if (strlen(argv[1]) != 7 || sscanf(argv[1], "%4d-%2d", &y, &m) != 2 || m < 1 || m > 12 ||
        y < 2000) {
      fprintf(stderr, "yamori-console: --month takes YYYY-MM\n");
      return EXIT_USAGE;
    }
  } else if (argc != 0) {
    return EXIT_USAGE;
  }
  stats_arg_t a = {0, INT64_MAX / 2, cJSON_CreateObject()};
  if (y != 0) {
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = 1};
    a.from = (int64_t)timegm(&tm) * 1000;
    tm = (struct tm){.tm_year = (m == 12 ? y + 1 : y) - 1900, .tm_mon = m % 12, .tm_mday = 1};
    a.to = (int64_t)timegm(&tm) * 1000;
  }
  store_t *s = NULL;
  if (open_store_sync(o, &s) != 0) {
    cJSON_Delete(a.out);
    return 1;
  }
  int rc = store_sync_call(s, stats_fn, &a);
  store_close(s);
  char *text = rc == 0 ? cJSON_Print(a.out) : NULL;
  cJSON_Delete(a.out);
  if (text == NULL) {
    fprintf(stderr, "yamori-console: cannot read the statistics: %s\n", ym_strerror(rc));
    return 1;
  }
  printf("%s\n", text);
  free(text);
  return 0;
}

/* The release, rollout and rules tools parse their own options: finds the
 * command word (after the global options) and runs them directly. */
static int maybe_release_main(int argc, char **argv, int *rc) {
  const char *data_dir = DEFAULT_DATA_DIR;
  for (int i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--data-dir") == 0) && i + 1 < argc) {
      data_dir = argv[++i];
      continue;
    }
    if (strncmp(argv[i], "--data-dir=", 11) == 0) {
      data_dir = argv[i] + 11;
      continue;
    }
    if (argv[i][0] == '-')
      return 0;
    if (strcmp(argv[i], "release") != 0 && strcmp(argv[i], "rollout") != 0 &&
        strcmp(argv[i], "rules") != 0)
      return 0;
    ym_log_init("yamori-console", YM_LOG_INFO);
    if (strcmp(argv[i], "rules") == 0 && i + 1 < argc &&
        strcmp(argv[i + 1], "compile-sigma") == 0) {
      *rc = sigma_compile_main(argc - i - 1, argv + i + 1);
      return 1;
    }
    if (strcmp(argv[i], "rules") == 0 && i + 1 < argc && strcmp(argv[i + 1], "import-sigma") == 0) {
      *rc = sigma_import_main(data_dir, argc - i - 1, argv + i + 1);
      return 1;
    }
    *rc = release_main(data_dir, argc - i, argv + i);
    if (*rc == EXIT_USAGE)
      fprintf(stderr, "yamori-console: unknown %s command or arguments (see docs/update.md)\n",
              argv[i]);
    return 1;
  }
  return 0;
}

/* ---------------------------------------------------------------- */
/* notification settings and the outbox                               */

static int cmd_settings(const opts_t *o, int argc, char **argv) {
  if (argc != 1 || strcmp(argv[0], "set") != 0)
    return EXIT_USAGE;
  if (o->tenant == NULL) {
    fprintf(stderr, "yamori-console: settings set needs --tenant NAME\n");
    return EXIT_USAGE;
  }
  store_t *s = NULL;
  if (open_store_sync(o, &s) != 0)
    return 1;
  const char *bad = NULL;
  int rc = notify_sync_settings(s, o->tenant, &o->settings, &bad);
  store_close(s);
  if (rc != 0) {
    fprintf(stderr, "yamori-console: cannot change the settings of %s: %s\n", o->tenant,
            rc == YM_ENOENT ? "no such tenant"
            : bad != NULL   ? bad
                            : ym_strerror(rc));
    return 1;
  }
  printf("settings of %s saved\n", o->tenant);
  return 0;
}

static void print_outbox(const notify_row_t *r, void *data) {
  (void)data;
  printf("%lld\t%s\tincident %lld\t%s\t%s %s\t%s (%lld attempts)%s%s\t%s\n", (long long)r->id,
         r->tenant, (long long)r->incident_id, r->change, r->channel, r->recipient, r->state,
         (long long)r->attempts, r->last_error[0] ? ": " : "", r->last_error, r->subject);
}

static int cmd_notify(const opts_t *o, int argc, char **argv) {
  store_t *s = NULL;
  int rc, n = 0;
  if (argc != 1)
    return EXIT_USAGE;
  if (strcmp(argv[0], "test") == 0) {
    if (o->tenant == NULL) {
      fprintf(stderr, "yamori-console: notify test needs --tenant NAME\n");
      return EXIT_USAGE;
    }
    if (open_store_sync(o, &s) != 0)
      return 1;
    rc = notify_sync_test(s, o->tenant, &n);
    store_close(s);
    if (rc != 0) {
      fprintf(stderr, "yamori-console: cannot enqueue a test message for %s: %s\n", o->tenant,
              rc == YM_ENOENT ? "no such tenant" : ym_strerror(rc));
      return 1;
    }
    printf("%d test message%s enqueued for %s%s\n", n, n == 1 ? "" : "s", o->tenant,
           n == 0 ? " (no recipients: see settings set)" : "");
    return 0;
  }
  if (strcmp(argv[0], "list") == 0) {
    if (open_store_sync(o, &s) != 0)
      return 1;
    rc = notify_sync_list(s, o->tenant, 100, print_outbox, NULL);
    store_close(s);
    return rc == 0 ? 0 : 1;
  }
  if (strcmp(argv[0], "enqueue") == 0) {
    if (o->incident <= 0 || o->change == NULL) {
      fprintf(stderr, "yamori-console: notify enqueue needs --incident ID and --change\n");
      return EXIT_USAGE;
    }
    if (open_store_sync(o, &s) != 0)
      return 1;
    rc = o->url != NULL ? notify_sync_console_url(s, o->url) : 0;
    if (rc == 0)
      rc = notify_sync_enqueue(s, o->incident, o->change);
    store_close(s);
    if (rc != 0) {
      fprintf(stderr, "yamori-console: cannot enqueue incident %lld %s: %s\n", o->incident,
              o->change, rc == YM_ENOENT ? "no such incident" : ym_strerror(rc));
      return 1;
    }
    printf("incident %lld %s enqueued\n", o->incident, o->change);
    return 0;
  }
  return EXIT_USAGE;
}

static int cmd_command(const opts_t *o, int argc, char **argv) {
  store_t *s = NULL;
  if (argc < 1)
    return EXIT_USAGE;
  if (open_store_sync(o, &s) != 0)
    return 1;
  int rc = commands_cli(s, &o->cmd, argc, argv);
  store_close(s);
  return rc;
}

int main(int argc, char **argv) {
  int release_rc;
  if (maybe_release_main(argc, argv, &release_rc))
    return release_rc;
  enum {
    OPT_DISPLAY = 256,
    OPT_EXPIRES,
    OPT_MAX_USES,
    OPT_TENANT,
    OPT_RATE,
    OPT_WEB_DIR,
    OPT_INSTALLER,
    OPT_CHECKIN_S,
    OPT_MAINTENANCE_S,
    OPT_SMTP_URL,
    OPT_SMTP_FROM,
    OPT_SMTP_USER,
    OPT_SMTP_CA,
    OPT_SMTP_PLAIN,
    OPT_LANG,
    OPT_EMAILS,
    OPT_HOOK,
    OPT_WHKEY,
    OPT_HELPDESK,
    OPT_INCIDENT,
    OPT_CHANGE,
    OPT_OUT,
    OPT_AGENT,
    OPT_KIND,
    OPT_ARGS,
    OPT_USER
  };
  static const struct option longopts[] = {
      {"data-dir", required_argument, NULL, 'd'},
      {"listen", required_argument, NULL, 'l'},
      {"url", required_argument, NULL, 'u'},
      {"tenant", required_argument, NULL, OPT_TENANT},
      {"display", required_argument, NULL, OPT_DISPLAY},
      {"expires", required_argument, NULL, OPT_EXPIRES},
      {"max-uses", required_argument, NULL, OPT_MAX_USES},
      {"rate-per-ip", required_argument, NULL, OPT_RATE},
      {"web-dir", required_argument, NULL, OPT_WEB_DIR},
      {"installer", required_argument, NULL, OPT_INSTALLER},
      {"checkin-s", required_argument, NULL, OPT_CHECKIN_S},
      {"maintenance-s", required_argument, NULL, OPT_MAINTENANCE_S},
      {"smtp-url", required_argument, NULL, OPT_SMTP_URL},
      {"smtp-from", required_argument, NULL, OPT_SMTP_FROM},
      {"smtp-user", required_argument, NULL, OPT_SMTP_USER},
      {"smtp-ca", required_argument, NULL, OPT_SMTP_CA},
      {"smtp-plain", no_argument, NULL, OPT_SMTP_PLAIN},
      {"lang", required_argument, NULL, OPT_LANG},
      {"emails", required_argument, NULL, OPT_EMAILS},
      {"webhook", required_argument, NULL, OPT_HOOK},
      {"webhook-secret", required_argument, NULL, OPT_WHKEY},
      {"helpdesk", required_argument, NULL, OPT_HELPDESK},
      {"incident", required_argument, NULL, OPT_INCIDENT},
      {"change", required_argument, NULL, OPT_CHANGE},
      {"out", required_argument, NULL, OPT_OUT},
      {"agent", required_argument, NULL, OPT_AGENT},
      {"kind", required_argument, NULL, OPT_KIND},
      {"args", required_argument, NULL, OPT_ARGS},
      {"user", required_argument, NULL, OPT_USER},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0}};
  opts_t o = {.data_dir = DEFAULT_DATA_DIR, .listen = DEFAULT_LISTEN, .expires_days = 7};
  /* Test hooks: short retry delays, polls and grace (milliseconds). */
  const char *env = getenv("YAMORI_NOTIFY_BACKOFF_MS");
  o.notify.backoff_ms = env != NULL ? (unsigned)strtoul(env, NULL, 10) : 0;
  env = getenv("YAMORI_NOTIFY_POLL_MS");
  o.notify.poll_ms = env != NULL ? (unsigned)strtoul(env, NULL, 10) : 0;
  env = getenv("YAMORI_NOTIFY_GRACE_MS");
  o.notify.grace_ms = env != NULL ? (unsigned)strtoul(env, NULL, 10) : 0;
  int c;
  char *end;
  while ((c = getopt_long(argc, argv, "d:l:u:hV", longopts, NULL)) != -1) {
    switch (c) {
    case 'd':
      o.data_dir = optarg;
      break;
    case 'l':
      o.listen = optarg;
      break;
    case 'u':
      o.url = optarg;
      break;
    case OPT_TENANT:
      o.tenant = optarg;
      break;
    case OPT_DISPLAY:
      o.display = optarg;
      break;
    case OPT_EXPIRES:
      o.expires_days = strtoll(optarg, &end, 10);
      if (*end == 'd')
        end++;
      if (*end != '\0' || o.expires_days < 0 || o.expires_days > 3650) {
        fprintf(stderr, "yamori-console: --expires takes a number of days (0 to 3650)\n");
        return EXIT_USAGE;
      }
      break;
    case OPT_MAX_USES:
      o.max_uses = strtoll(optarg, &end, 10);
      if (*end != '\0' || o.max_uses < 0) {
        fprintf(stderr, "yamori-console: --max-uses takes a number\n");
        return EXIT_USAGE;
      }
      break;
    case OPT_OUT:
      o.out = optarg;
      o.cmd.out = optarg;
      break;
    case OPT_HELPDESK:
      o.helpdesk = optarg; /* installer */
      o.settings.helpdesk = optarg;
      break;
    case OPT_RATE:
      o.rate_per_ip = (unsigned)strtoul(optarg, &end, 10);
      break;
    case OPT_SMTP_URL:
      o.notify.smtp_url = optarg;
      break;
    case OPT_SMTP_FROM:
      o.notify.smtp_from = optarg;
      break;
    case OPT_SMTP_USER:
      o.notify.smtp_user = optarg;
      break;
    case OPT_SMTP_CA:
      o.notify.smtp_ca_file = optarg;
      break;
    case OPT_SMTP_PLAIN:
      o.notify.smtp_plain = true;
      break;
    case OPT_LANG:
      o.settings.lang = optarg;
      break;
    case OPT_EMAILS:
      o.settings.emails = optarg;
      break;
    case OPT_HOOK:
      o.settings.webhook_url = optarg;
      break;
    case OPT_WHKEY:
      o.settings.webhook_secret = optarg;
      break;
    case OPT_CHANGE:
      o.change = optarg;
      break;
    case OPT_WEB_DIR:
      o.web_dir = optarg;
      break;
    case OPT_INSTALLER:
      o.installer = optarg;
      break;
    case OPT_CHECKIN_S:
    case OPT_MAINTENANCE_S: {
      unsigned long v = strtoul(optarg, &end, 10);
      if (*end != '\0' || v < 1 || v > 86400) {
        fprintf(stderr, "yamori-console: --%s takes seconds (1 to 86400)\n",
                c == OPT_CHECKIN_S ? "checkin-s" : "maintenance-s");
        return EXIT_USAGE;
      }
      if (c == OPT_CHECKIN_S)
        o.checkin_s = (unsigned)v;
      else
        o.maintenance_s = (unsigned)v;
      break;
    }
    case OPT_AGENT:
      o.cmd.agent = optarg;
      break;
    case OPT_KIND:
      o.cmd.kind = optarg;
      break;
    case OPT_ARGS:
      o.cmd.args = optarg;
      break;
    case OPT_INCIDENT:
      o.cmd.incident = strtoll(optarg, &end, 10);
      if (*end != '\0' || o.cmd.incident < 0) {
        fprintf(stderr, "yamori-console: --incident takes an incident id\n");
        return EXIT_USAGE;
      }
      o.incident = o.cmd.incident; /* notify enqueue */
      break;
    case OPT_USER:
      o.cmd.user = optarg;
      break;
    case 'h':
      usage(stdout);
      return 0;
    case 'V': {
      ym_buf_t b;
      ym_buf_init(&b, 4096);
      ym_version_report(&b, "yamori-console");
      fputs(b.data, stdout);
      ym_buf_free(&b);
      return 0;
    }
    default:
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return EXIT_USAGE;
  }
  ym_log_init("yamori-console", YM_LOG_INFO);
  signal(SIGPIPE, SIG_IGN);
  const char *cmd = argv[optind];
  int rc = EXIT_USAGE;
  if (strcmp(cmd, "serve") == 0 && optind + 1 == argc)
    rc = cmd_serve(&o);
  else if (strcmp(cmd, "tenant") == 0)
    rc = cmd_tenant(&o, argc - optind - 1, argv + optind + 1);
  else if (strcmp(cmd, "token") == 0)
    rc = cmd_token(&o, argc - optind - 1, argv + optind + 1);
  else if (strcmp(cmd, "installer") == 0)
    rc = cmd_installer(&o, argc - optind - 1);
  else if (strcmp(cmd, "stats") == 0)
    rc = cmd_stats(&o, argc - optind - 1, argv + optind + 1);
  else if (strcmp(cmd, "settings") == 0)
    rc = cmd_settings(&o, argc - optind - 1, argv + optind + 1);
  else if (strcmp(cmd, "notify") == 0)
    rc = cmd_notify(&o, argc - optind - 1, argv + optind + 1);
  else if (strcmp(cmd, "command") == 0)
    rc = cmd_command(&o, argc - optind - 1, argv + optind + 1);
  if (rc == EXIT_USAGE) {
    fprintf(stderr, "yamori-console: unknown command or arguments: %s\n", cmd);
    usage(stderr);
  }
  return rc;
}
