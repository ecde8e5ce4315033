#include "proctab.h"

#include "yamori/err.h"
#include "yamori/sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t slot(const proctab_t *t, int pid) {
  uint32_t h = (uint32_t)pid * 2654435761u;
  return h & (t->nbuckets - 1);
}

int proctab_init(proctab_t *t, size_t max, const char *boot_id) {
  memset(t, 0, sizeof(*t));
  t->max = max;
  t->nbuckets = 1024;
  while (t->nbuckets < max / 2 && t->nbuckets < (1u << 20))
    t->nbuckets *= 2;
  t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
  if (t->buckets == NULL)
    return YM_ENOMEM;
  snprintf(t->boot_id, sizeof(t->boot_id), "%s", boot_id);
  return 0;
}

static void entry_free(proc_entry_t *e) {
  free(e->exe);
  free(e->args);
  free(e->exec_open);
  free(e);
}

void proctab_close(proctab_t *t) {
  for (size_t i = 0; i < t->nbuckets; i++) {
    proc_entry_t *e = t->buckets[i];
    while (e != NULL) {
      proc_entry_t *next = e->next;
      entry_free(e);
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = NULL;
  t->count = 0;
}

proc_entry_t *proctab_get(proctab_t *t, int pid) {
  for (proc_entry_t *e = t->buckets[slot(t, pid)]; e != NULL; e = e->next)
    if (e->pid == pid)
      return e;
  return NULL;
}

proc_entry_t *proctab_upsert(proctab_t *t, int pid) {
  proc_entry_t *e = proctab_get(t, pid);
  if (e != NULL)
    return e;
  if (t->count >= t->max)
    return NULL;
  e = calloc(1, sizeof(*e));
  if (e == NULL)
    return NULL;
  e->pid = pid;
  size_t s = slot(t, pid);
  e->next = t->buckets[s];
  t->buckets[s] = e;
  t->count++;
  return e;
}

void proctab_remove(proctab_t *t, int pid) {
  proc_entry_t **pp = &t->buckets[slot(t, pid)];
  for (; *pp != NULL; pp = &(*pp)->next) {
    if ((*pp)->pid == pid) {
      proc_entry_t *e = *pp;
      *pp = e->next;
      entry_free(e);
      t->count--;
      return;
    }
  }
}

void proctab_entity_id(const char *boot_id, int pid, uint64_t start_ticks,
                       char out[PROCTAB_ENTITY_LEN + 1]) {
  char key[96];
  uint8_t d[YM_SHA256_LEN];
  int n = snprintf(key, sizeof(key), "%s:%d:%llu", boot_id, pid, (unsigned long long)start_ticks);
  ym_sha256_mem(key, (size_t)n, d);
  ym_hex(d, PROCTAB_ENTITY_LEN / 2, out);
}

void proctab_set_start(proctab_t *t, proc_entry_t *e, uint64_t start_ticks) {
  e->start_ticks = start_ticks;
  proctab_entity_id(t->boot_id, e->pid, start_ticks, e->entity_id);
}

static int set_path(char **dst, size_t *dst_len, const char *s, size_t len) {
  char *p = malloc(len + 1);
  if (p == NULL)
    return YM_ENOMEM;
  memcpy(p, s, len);
  p[len] = '\0';
  free(*dst);
  *dst = p;
  *dst_len = len;
  return 0;
}

int proctab_set_exe(proc_entry_t *e, const char *exe, size_t len) {
  return set_path(&e->exe, &e->exe_len, exe, len);
}

int proctab_set_args(proc_entry_t *e, const char *args, size_t len) {
  if (len > PROCTAB_ARGS_MAX) {
    size_t cut = PROCTAB_ARGS_MAX;
    while (cut > 0 && args[cut - 1] != '\0')
      cut--;
    len = cut > 0 ? cut : PROCTAB_ARGS_MAX;
  }
  return set_path(&e->args, &e->args_len, args, len);
}

int proctab_set_exec_open(proc_entry_t *e, const char *path, size_t len) {
  return set_path(&e->exec_open, &e->exec_open_len, path, len);
}

void proctab_clear_exec_open(proc_entry_t *e) {
  free(e->exec_open);
  e->exec_open = NULL;
  e->exec_open_len = 0;
}

const char *proctab_name(const proc_entry_t *e) {
  if (e->exe == NULL)
    return "";
  const char *slash = strrchr(e->exe, '/');
  return slash ? slash + 1 : e->exe;
}

void proctab_foreach(proctab_t *t, void (*fn)(proc_entry_t *e, void *data), void *data) {
  for (size_t i = 0; i < t->nbuckets; i++)
    for (proc_entry_t *e = t->buckets[i]; e != NULL; e = e->next)
      fn(e, data);
}
