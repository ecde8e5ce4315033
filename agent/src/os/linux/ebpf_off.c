/*
 * The eBPF process source when the agent was built without it (no clang,
 * bpftool, libbpf or kernel BTF on the build machine): it never loads, and
 * the process sensor uses the proc connector.
 */
#include "os.h"

#include "yamori/err.h"

#include <stdio.h>
#include <string.h>

int os_bpfwatch_new(uv_loop_t *loop, const os_bpfwatch_opts_t *opts, os_procev_cb cb, void *data,
                    os_bpfwatch_t **out, char *why, size_t whylen) {
  (void)loop;
  (void)opts;
  (void)cb;
  (void)data;
  if (out != NULL)
    *out = NULL;
  if (why != NULL && whylen > 0)
    snprintf(why, whylen, "this agent was built without the eBPF sensor");
  return YM_ENOTSUP;
}

int os_bpfwatch_start(os_bpfwatch_t *w) {
  (void)w;
  return YM_ENOTSUP;
}

void os_bpfwatch_free(os_bpfwatch_t *w) {
  (void)w;
}

void os_bpfwatch_drain(os_bpfwatch_t *w) {
  (void)w;
}

void os_bpfwatch_stats(const os_bpfwatch_t *w, os_bpfwatch_stats_t *out) {
  (void)w;
  memset(out, 0, sizeof(*out));
}
