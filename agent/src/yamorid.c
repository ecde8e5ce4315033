/*
 * yamorid: the Yamori endpoint agent.
 *
 * Startup, in order: parse the command line, load the configuration (a
 * malformed file is refused with the key named), then run the agent on one
 * libuv loop until SIGTERM or SIGINT. SIGHUP reloads the configuration; a
 * bad file is refused and the running configuration stays.
 */
#include "agent.h"
#include "conf.h"
#include "rules.h"

#include "yamori/buf.h"
#include "yamori/event.h"
#include "yamori/log.h"
#include "yamori/version.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define EXIT_USAGE 64
#define EXIT_CONFIG 78

static void usage(FILE *f) {
  fputs("Usage: yamorid [OPTIONS]\n"
        "\n"
        "The Yamori agent: watches file and process activity on this PC.\n"
        "\n"
        "Options:\n"
        "  -c, --config PATH     configuration file (default " CONF_DEFAULT_PATH ";\n"
        "                        built-in defaults when the default file is missing)\n"
        "  -t, --check-config    check the configuration, print the result and exit\n"
        "  -f, --foreground      stay in the foreground (the only mode; for clarity)\n"
        "  -o, --output DEST     write events as NDJSON to DEST (- for stdout),\n"
        "                        overriding the configuration's output\n"
        "      --config-doc      print the configuration reference (Markdown) and exit\n"
        "      --events-doc      print the event field reference (Markdown) and exit\n"
        "  -h, --help            show this help and exit\n"
        "  -V, --version         show versions and exit\n",
        f);
}

typedef struct {
  const char *config_path;
  bool config_given;
  bool check_only;
  const char *output;
} opts_t;

static int parse_args(int argc, char **argv, opts_t *o) {
  enum { OPT_CONFIG_DOC = 256, OPT_EVENTS_DOC };
  static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                           {"check-config", no_argument, NULL, 't'},
                                           {"foreground", no_argument, NULL, 'f'},
                                           {"output", required_argument, NULL, 'o'},
                                           {"config-doc", no_argument, NULL, OPT_CONFIG_DOC},
                                           {"events-doc", no_argument, NULL, OPT_EVENTS_DOC},
                                           {"help", no_argument, NULL, 'h'},
                                           {"version", no_argument, NULL, 'V'},
                                           {NULL, 0, NULL, 0}};
  int c;
  ym_buf_t b;
  o->config_path = CONF_DEFAULT_PATH;
  while ((c = getopt_long(argc, argv, "c:tfo:hV", longopts, NULL)) != -1) {
    switch (c) {
    case 'c':
      o->config_path = optarg;
      o->config_given = true;
      break;
    case 't':
      o->check_only = true;
      break;
    case 'f':
      break;
    case 'o':
      o->output = optarg;
      break;
    case OPT_CONFIG_DOC:
      ym_buf_init(&b, 1 << 20);
      conf_doc(&b);
      fputs(b.data, stdout);
      ym_buf_free(&b);
      exit(0);
    case OPT_EVENTS_DOC:
      ym_buf_init(&b, 1 << 20);
      ym_schema_doc_markdown(&b);
      fputs(b.data, stdout);
      ym_buf_free(&b);
      exit(0);
    case 'h':
      usage(stdout);
      exit(0);
    case 'V':
      ym_buf_init(&b, 4096);
      ym_version_report(&b, "yamorid");
      fputs(b.data, stdout);
      ym_buf_free(&b);
      exit(0);
    default:
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "yamorid: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return EXIT_USAGE;
  }
  return 0;
}

/* Loads the configuration named by the options. The default path may be
 * missing (built-in defaults); an explicitly given one may not. */
static conf_t *load_conf(const opts_t *o, ym_cfg_error_t *err) {
  const char *path = o->config_path;
  if (!o->config_given && access(path, F_OK) != 0)
    path = NULL;
  return conf_load(path, err);
}

int main(int argc, char **argv) {
  opts_t o = {0};
  int rc = parse_args(argc, argv, &o);
  if (rc != 0)
    return rc;
  ym_log_init("yamorid", YM_LOG_INFO);

  ym_cfg_error_t err = {0};
  conf_t *conf = load_conf(&o, &err);
  if (conf == NULL) {
    fprintf(stderr, "yamorid: configuration refused: %s\n", err.msg);
    return EXIT_CONFIG;
  }
  if (o.check_only) {
    printf("configuration ok\n");
    conf_free(conf);
    return 0;
  }
  ym_log_init("yamorid", (ym_log_level_t)conf_log_level(conf));

  /* Output goes through our own buffer; stdio buffering would only delay
   * log lines. */
  setvbuf(stdout, NULL, _IONBF, 0);
  /* A control client that disconnects early must not kill the agent. */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  rules_global_init();
  agent_t agent;
  const char *reload_path =
      o.config_given || access(o.config_path, F_OK) == 0 ? o.config_path : NULL;
  rc = agent_init(&agent, &loop, conf, reload_path, o.output);
  if (rc == 0)
    rc = agent_start(&agent);
  if (rc == 0)
    uv_run(&loop, UV_RUN_DEFAULT);
  else
    agent_stop(&agent);
  agent_close(&agent);
  uv_loop_close(&loop);
  rules_global_free();
  return rc == 0 ? 0 : 1;
}
