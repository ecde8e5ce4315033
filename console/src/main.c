/*
 * yamori-console: the provider's console (agent API, dashboard, store).
 */
#include "yamori/buf.h"
#include "yamori/version.h"

#include <getopt.h>
#include <stdio.h>

#define EXIT_USAGE 64

static void usage(FILE *f) {
  fputs("Usage: yamori-console [--help] [--version] [COMMAND]\n"
        "\n"
        "The Yamori console: receives events from agents and shows them to people.\n"
        "\n"
        "Options:\n"
        "  -h, --help       show this help and exit\n"
        "  -V, --version    show versions and exit\n",
        f);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
    switch (c) {
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
  if (optind < argc) {
    fprintf(stderr, "yamori-console: unknown command '%s'\n", argv[optind]);
    return EXIT_USAGE;
  }
  fputs("yamori-console: the console server is not built yet (see README.md)\n", stderr);
  return 1;
}
