/*
 * Triage bundles (see triage.h). The document is built with cJSON, every
 * string from the machine added through ym_json_add_bytes (bytes kept
 * exactly, escaped), then printed and compressed in one go.
 */
#include "triage.h"

#include "os.h"
#include "proctab.h"

#include "yamori/err.h"
#include "yamori/event.h"
#include "yamori/json.h"
#include "yamori/sha256.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <zlib.h>

#define PASSWD_MAX (1024 * 1024)
#define LINK_MAX_BYTES 1024

/* ---------------------------------------------------------------- */
/* Small helpers                                                      */

/* Adds s[0..n) as an escaped string item to an array. */
static void array_add_bytes(cJSON *arr, const char *s, size_t n) {
  ym_buf_t b;
  ym_buf_init(&b, n * 6 + 2);
  if (ym_json_append_string(&b, s, n) == 0) {
    cJSON *raw = cJSON_CreateRaw(b.data);
    if (raw != NULL)
      cJSON_AddItemToArray(arr, raw);
  }
  ym_buf_free(&b);
}

static void add_cstr(cJSON *o, const char *key, const char *s) {
  ym_json_add_bytes(o, key, s, strlen(s));
}

static void add_time(cJSON *o, const char *key, int64_t ns) {
  char t[32];
  ym_time_format(ns, t);
  cJSON_AddStringToObject(o, key, t);
}

/* Opens path below root without following any symbolic link on the way
 * (openat2 RESOLVE_NO_SYMLINKS). Returns the descriptor or -1 (errno). */
static int open_nolinks(const char *root, const char *path, int flags) {
  char full[OS_PATH_MAX + 1];
  int n = strcmp(root, "/") == 0 ? snprintf(full, sizeof(full), "%s", path)
                                 : snprintf(full, sizeof(full), "%s%s", root, path);
  if (n < 0 || (size_t)n >= sizeof(full)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return (int)syscall(SYS_openat2, AT_FDCWD, full, &how, sizeof(how));
}

/* ---------------------------------------------------------------- */
/* Users (from passwd below a root)                                   */

typedef struct {
  uint32_t uid;
  char name[64];
  char home[256];
} user_t;

typedef struct {
  user_t *v;
  size_t n;
} users_t;

static void users_load(const char *root, users_t *u) {
  memset(u, 0, sizeof(*u));
  int fd = open_nolinks(root, "/etc/passwd", O_RDONLY);
  if (fd < 0)
    return;
  ym_buf_t b;
  ym_buf_init(&b, PASSWD_MAX);
  char chunk[8192];
  ssize_t r;
  while ((r = read(fd, chunk, sizeof(chunk))) > 0)
    if (ym_buf_append(&b, chunk, (size_t)r) != 0)
      break;
  close(fd);
  u->v = calloc(TRIAGE_MAX_USERS, sizeof(user_t));
  for (char *line = b.data; u->v != NULL && line != NULL && *line && u->n < TRIAGE_MAX_USERS;) {
    char *nl = strchr(line, '\n');
    if (nl != NULL)
      *nl = '\0';
    /* name:pw:uid:gid:gecos:home:shell */
    char *f[7] = {0};
    size_t nf = 0;
    for (char *p = line; nf < 7;) {
      f[nf++] = p;
      char *c = strchr(p, ':');
      if (c == NULL)
        break;
      *c = '\0';
      p = c + 1;
    }
    if (nf >= 6 && f[0][0] && f[5][0] == '/') {
      user_t *x = &u->v[u->n++];
      x->uid = (uint32_t)strtoul(f[2], NULL, 10);
      snprintf(x->name, sizeof(x->name), "%s", f[0]);
      snprintf(x->home, sizeof(x->home), "%s", f[5]);
    }
    line = nl != NULL ? nl + 1 : NULL;
  }
  ym_buf_free(&b);
}

static const char *user_name(const users_t *u, uint32_t uid) {
  for (size_t i = 0; i < u->n; i++)
    if (u->v[i].uid == uid)
      return u->v[i].name;
  return NULL;
}

/* ---------------------------------------------------------------- */
/* Processes                                                          */

typedef struct {
  int *pids;
  size_t n, cap;
} pidlist_t;

static int collect_pid(int pid, void *data) {
  pidlist_t *l = data;
  if (l->n >= l->cap)
    return 1; /* stop: the limit */
  l->pids[l->n++] = pid;
  return 0;
}

static void collect_processes(const triage_opts_t *o, const users_t *users, cJSON *arr,
                              triage_stats_t *st) {
  pidlist_t l = {calloc(TRIAGE_MAX_PROCESSES, sizeof(int)), 0, TRIAGE_MAX_PROCESSES};
  if (l.pids == NULL)
    return;
  if (os_proc_list(collect_pid, &l) == 1)
    st->truncated = 1;
  os_proc_info_t *info = malloc(sizeof(*info));
  /* pid -> entity id, for the parents' ids. */
  char(*ent)[PROCTAB_ENTITY_LEN + 1] = calloc(l.n, sizeof(*ent));
  int *ppids = calloc(l.n, sizeof(int));
  cJSON **items = calloc(l.n, sizeof(cJSON *));
  if (info == NULL || ent == NULL || ppids == NULL || items == NULL)
    goto out;
  for (size_t i = 0; i < l.n; i++) {
    if (os_proc_read(l.pids[i], 64, 4096, info) != 0) {
      os_proc_info_free(info);
      continue;
    }
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "pid", info->pid);
    cJSON_AddNumberToObject(p, "ppid", info->ppid);
    ppids[i] = info->ppid;
    if (info->start_ticks > 0) {
      proctab_entity_id(o->boot_id, info->pid, info->start_ticks, ent[i]);
      cJSON_AddStringToObject(p, "entity_id", ent[i]);
      if (o->clock_ticks > 0)
        add_time(p, "start",
                 o->boot_ns +
                     (int64_t)(info->start_ticks * 1000000000ull / (uint64_t)o->clock_ticks));
    }
    add_cstr(p, "name", info->comm);
    if (info->exe_ok) {
      ym_json_add_bytes(p, "executable", info->exe, info->exe_len);
      if (info->exe_deleted)
        cJSON_AddTrueToObject(p, "executable_deleted");
    }
    if (info->args_ok) {
      cJSON *args = cJSON_AddArrayToObject(p, "args");
      size_t off = 0;
      for (int k = 0; k < info->argc && off < info->args_len; k++) {
        size_t len = strnlen(info->args + off, info->args_len - off);
        array_add_bytes(args, info->args + off, len);
        off += len + 1;
      }
      if (info->args_truncated)
        cJSON_AddTrueToObject(p, "args_truncated");
    }
    if (info->cwd_ok)
      ym_json_add_bytes(p, "working_directory", info->cwd, info->cwd_len);
    cJSON_AddNumberToObject(p, "uid", info->uid);
    cJSON_AddNumberToObject(p, "euid", info->euid);
    const char *un = user_name(users, info->uid);
    if (un != NULL)
      add_cstr(p, "user", un);
    items[i] = p;
    os_proc_info_free(info);
  }
  for (size_t i = 0; i < l.n; i++) {
    if (items[i] == NULL)
      continue;
    for (size_t k = 0; k < l.n && ppids[i] > 0; k++)
      if (l.pids[k] == ppids[i] && ent[k][0]) {
        cJSON_AddStringToObject(items[i], "parent_entity_id", ent[k]);
        break;
      }
    cJSON_AddItemToArray(arr, items[i]);
    st->processes++;
  }
out:
  free(items);
  free(ppids);
  free(ent);
  free(info);
  free(l.pids);
}

/* ---------------------------------------------------------------- */
/* Persistence                                                        */

typedef struct {
  const triage_opts_t *o;
  cJSON *arr;
  triage_stats_t *st;
} pers_t;

static bool is_text(const char *s, size_t n) {
  return memchr(s, '\0', n) == NULL && ym_json_utf8_valid(s, n);
}

/* Describes one entry (path as seen on the machine). */
static void pers_entry(pers_t *p, const char *path, const char *type, int depth);

static void pers_dir(pers_t *p, const char *path, const char *type, int fd, int depth) {
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return;
  }
  char **names = calloc(TRIAGE_MAX_DIR_ENTRIES, sizeof(char *));
  size_t n = 0;
  struct dirent *e;
  while (names != NULL && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    if (n >= TRIAGE_MAX_DIR_ENTRIES) {
      p->st->truncated = 1;
      break;
    }
    names[n] = strdup(e->d_name);
    if (names[n] != NULL)
      n++;
  }
  closedir(d);
  for (size_t i = 0; i < n; i++) {
    char child[OS_PATH_MAX + 1];
    int len = snprintf(child, sizeof(child), "%s/%s", path, names[i]);
    if (len > 0 && (size_t)len < sizeof(child))
      pers_entry(p, child, type, depth - 1);
    free(names[i]);
  }
  free(names);
}

static void pers_entry(pers_t *p, const char *path, const char *type, int depth) {
  if (cJSON_GetArraySize(p->arr) >= TRIAGE_MAX_PERSISTENCE) {
    p->st->truncated = 1;
    return;
  }
  int fd = open_nolinks(p->o->root, path, O_RDONLY | O_NONBLOCK);
  if (fd < 0 && errno == ELOOP) {
    /* A symbolic link (on the way or at the end): list it with its target
     * when it is the last component. */
    char full[OS_PATH_MAX + 1], target[LINK_MAX_BYTES + 1];
    snprintf(full, sizeof(full), "%s%s", strcmp(p->o->root, "/") == 0 ? "" : p->o->root, path);
    cJSON *x = cJSON_CreateObject();
    add_cstr(x, "path", path);
    cJSON_AddStringToObject(x, "type", type);
    cJSON_AddStringToObject(x, "kind", "symlink");
    ssize_t n = readlink(full, target, LINK_MAX_BYTES);
    if (n >= 0)
      ym_json_add_bytes(x, "target", target, (size_t)n);
    cJSON_AddItemToArray(p->arr, x);
    p->st->persistence++;
    return;
  }
  if (fd < 0)
    return; /* absent: nothing to report */
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    close(fd);
    return;
  }
  if (S_ISDIR(sb.st_mode)) {
    if (depth > 0)
      pers_dir(p, path, type, fd, depth); /* takes fd */
    else
      close(fd);
    return;
  }
  cJSON *x = cJSON_CreateObject();
  add_cstr(x, "path", path);
  cJSON_AddStringToObject(x, "type", type);
  cJSON_AddStringToObject(x, "kind", S_ISREG(sb.st_mode) ? "file" : "other");
  cJSON_AddNumberToObject(x, "size", (double)sb.st_size);
  cJSON_AddNumberToObject(x, "uid", sb.st_uid);
  cJSON_AddNumberToObject(x, "gid", sb.st_gid);
  char mode[8];
  snprintf(mode, sizeof(mode), "%04o", (unsigned)(sb.st_mode & 07777));
  cJSON_AddStringToObject(x, "mode", mode);
  add_time(x, "mtime", (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec);
  if (S_ISREG(sb.st_mode) && sb.st_size <= TRIAGE_HASH_MAX) {
    uint8_t d[YM_SHA256_LEN];
    char hex[2 * YM_SHA256_LEN + 1];
    uint64_t nread = 0;
    if (ym_sha256_fd(fd, TRIAGE_HASH_MAX, d, &nread) == 0) {
      ym_hex(d, YM_SHA256_LEN, hex);
      cJSON_AddStringToObject(x, "sha256", hex);
    }
    if (sb.st_size <= TRIAGE_CONTENT_MAX) {
      char buf[TRIAGE_CONTENT_MAX];
      ssize_t n = pread(fd, buf, sizeof(buf), 0);
      if (n >= 0 && is_text(buf, (size_t)n))
        ym_json_add_bytes(x, "content", buf, (size_t)n);
    }
  }
  close(fd);
  cJSON_AddItemToArray(p->arr, x);
  p->st->persistence++;
}

static void collect_persistence(const triage_opts_t *o, const users_t *users, cJSON *arr,
                                triage_stats_t *st) {
  static const struct {
    const char *path, *type;
    int depth;
  } sys[] = {
      {"/etc/crontab", "cron", 0},
      {"/etc/cron.d", "cron", 1},
      {"/etc/cron.hourly", "cron", 1},
      {"/etc/cron.daily", "cron", 1},
      {"/etc/cron.weekly", "cron", 1},
      {"/etc/cron.monthly", "cron", 1},
      {"/var/spool/cron", "cron", 3},
      {"/etc/anacrontab", "cron", 0},
      {"/etc/systemd/system", "systemd", 2},
      {"/etc/systemd/user", "systemd", 2},
      {"/etc/rc.local", "rc", 0},
      {"/etc/profile", "profile", 0},
      {"/etc/profile.d", "profile", 1},
      {"/etc/bash.bashrc", "profile", 0},
      {"/etc/environment", "profile", 0},
      {"/etc/ld.so.preload", "preload", 0},
      {"/root/.ssh/authorized_keys", "authorized_keys", 0},
  };
  static const struct {
    const char *rel, *type;
    int depth;
  } per_user[] = {
      {"/.bashrc", "shell_rc", 0},
      {"/.bash_profile", "shell_rc", 0},
      {"/.bash_login", "shell_rc", 0},
      {"/.profile", "shell_rc", 0},
      {"/.zshrc", "shell_rc", 0},
      {"/.bash_logout", "shell_rc", 0},
      {"/.config/autostart", "autostart", 1},
      {"/.config/systemd/user", "systemd", 2},
      {"/.ssh/authorized_keys", "authorized_keys", 0},
      {"/.ssh/authorized_keys2", "authorized_keys", 0},
  };
  pers_t p = {o, arr, st};
  for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++)
    pers_entry(&p, sys[i].path, sys[i].type, sys[i].depth);
  /* Each home once (several users may share one). */
  for (size_t u = 0; u < users->n; u++) {
    const char *home = users->v[u].home;
    if (strcmp(home, "/") == 0 || strcmp(home, "/root") == 0 || strncmp(home, "/proc", 5) == 0 ||
        strcmp(home, "/nonexistent") == 0)
      continue;
    bool seen = false;
    for (size_t k = 0; k < u && !seen; k++)
      seen = strcmp(users->v[k].home, home) == 0;
    if (seen)
      continue;
    for (size_t i = 0; i < sizeof(per_user) / sizeof(per_user[0]); i++) {
      char path[OS_PATH_MAX + 1];
      int n = snprintf(path, sizeof(path), "%s%s", home, per_user[i].rel);
      if (n > 0 && (size_t)n < sizeof(path))
        pers_entry(&p, path, per_user[i].type, per_user[i].depth);
    }
  }
  /* root's own shell files. */
  for (size_t i = 0; i < sizeof(per_user) / sizeof(per_user[0]); i++) {
    if (strcmp(per_user[i].type, "authorized_keys") == 0 &&
        strstr(per_user[i].rel, "keys2") == NULL)
      continue; /* listed above */
    char path[OS_PATH_MAX + 1];
    snprintf(path, sizeof(path), "/root%s", per_user[i].rel);
    pers_entry(&p, path, per_user[i].type, per_user[i].depth);
  }
}

/* ---------------------------------------------------------------- */
/* Listening sockets                                                  */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Parses n hex digits at s into a 32-bit value. */
static bool hex32(const char *s, size_t n, uint32_t *out) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; i++) {
    int h = hexval(s[i]);
    if (h < 0)
      return false;
    v = (v << 4) | (uint32_t)h;
  }
  *out = v;
  return true;
}

int triage_parse_net_line(const char *line, int v6, char addr[64], unsigned *port, unsigned *state,
                          uint64_t *inode, int *remote_zero) {
  /* "  0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0  0 12345 ..." */
  const char *p = line;
  while (*p == ' ')
    p++;
  const char *colon = strchr(p, ':');
  if (colon == NULL || colon == p || strspn(p, "0123456789") != (size_t)(colon - p))
    return YM_EPARSE;
  p = colon + 1;
  while (*p == ' ')
    p++;
  size_t alen = v6 ? 32 : 8;
  uint32_t w[4], pt;
  for (size_t i = 0; i < alen / 8; i++)
    if (!hex32(p + 8 * i, 8, &w[i]))
      return YM_EPARSE;
  if (p[alen] != ':' || !hex32(p + alen + 1, 4, &pt) || p[alen + 5] != ' ')
    return YM_EPARSE;
  /* The kernel prints each 32-bit word of the address in host order. */
  unsigned char raw[16];
  memcpy(raw, w, alen / 2);
  if (inet_ntop(v6 ? AF_INET6 : AF_INET, raw, addr, 64) == NULL)
    return YM_EPARSE;
  *port = pt;
  p += alen + 6;
  /* remote address */
  bool zero = true;
  for (size_t i = 0; i < alen + 5; i++) {
    if (p[i] == '\0')
      return YM_EPARSE;
    if (p[i] != '0' && p[i] != ':')
      zero = false;
  }
  *remote_zero = zero;
  p += alen + 5;
  while (*p == ' ')
    p++;
  uint32_t sv;
  if (!hex32(p, 2, &sv))
    return YM_EPARSE;
  *state = sv;
  /* Skip tx:rx, tr:when, retrnsmt, uid, timeout: then the inode. */
  for (int field = 0; field < 6; field++) {
    p += strcspn(p, " ");
    while (*p == ' ')
      p++;
    if (*p == '\0')
      return YM_EPARSE;
  }
  char *end;
  unsigned long long ino = strtoull(p, &end, 10);
  if (end == p)
    return YM_EPARSE;
  *inode = ino;
  return 0;
}

typedef struct {
  uint64_t inode;
  int pid;
  cJSON *item;
} sock_t;

static int cmp_sock(const void *a, const void *b) {
  uint64_t x = ((const sock_t *)a)->inode, y = ((const sock_t *)b)->inode;
  return x < y ? -1 : x > y;
}

typedef struct {
  sock_t *v;
  size_t n;
} socks_t;

/* Finds the owners of the sockets: /proc/PID/fd/N -> "socket:[inode]". */
static int owner_scan(int pid, void *data) {
  socks_t *s = data;
  char dir[64];
  snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
  DIR *d = opendir(dir);
  if (d == NULL)
    return 0;
  struct dirent *e;
  int count = 0;
  while ((e = readdir(d)) != NULL && count++ < 65536) {
    if (e->d_name[0] == '.')
      continue;
    char link[64];
    ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
    if (n < 9 || memcmp(link, "socket:[", 8) != 0)
      continue;
    link[n] = '\0';
    sock_t key = {strtoull(link + 8, NULL, 10), 0, NULL};
    sock_t *hit = bsearch(&key, s->v, s->n, sizeof(sock_t), cmp_sock);
    if (hit != NULL && hit->pid == 0)
      hit->pid = pid;
  }
  closedir(d);
  return 0;
}

static void collect_listening(cJSON *arr, triage_stats_t *st) {
  static const struct {
    const char *file, *proto;
    int v6, udp;
  } files[] = {{"/proc/net/tcp", "tcp", 0, 0},
               {"/proc/net/tcp6", "tcp6", 1, 0},
               {"/proc/net/udp", "udp", 0, 1},
               {"/proc/net/udp6", "udp6", 1, 1}};
  socks_t s = {calloc(TRIAGE_MAX_SOCKETS, sizeof(sock_t)), 0};
  if (s.v == NULL)
    return;
  for (size_t f = 0; f < 4; f++) {
    FILE *fp = fopen(files[f].file, "re");
    if (fp == NULL)
      continue;
    char line[512];
    while (fgets(line, sizeof(line), fp) != NULL) {
      char addr[64];
      unsigned port, state;
      uint64_t inode;
      int rzero;
      if (triage_parse_net_line(line, files[f].v6, addr, &port, &state, &inode, &rzero) != 0)
        continue;
      /* TCP: LISTEN (0x0A); UDP: bound and not connected (0x07, no peer). */
      if (files[f].udp ? !(state == 0x07 && rzero) : state != 0x0A)
        continue;
      if (s.n >= TRIAGE_MAX_SOCKETS) {
        st->truncated = 1;
        break;
      }
      cJSON *x = cJSON_CreateObject();
      cJSON_AddStringToObject(x, "proto", files[f].proto);
      cJSON_AddStringToObject(x, "address", addr);
      cJSON_AddNumberToObject(x, "port", port);
      cJSON_AddNumberToObject(x, "inode", (double)inode);
      s.v[s.n++] = (sock_t){inode, 0, x};
    }
    fclose(fp);
  }
  qsort(s.v, s.n, sizeof(sock_t), cmp_sock);
  if (s.n > 0)
    os_proc_list(owner_scan, &s);
  for (size_t i = 0; i < s.n; i++) {
    if (s.v[i].pid > 0) {
      cJSON_AddNumberToObject(s.v[i].item, "pid", s.v[i].pid);
      char comm[64], path[64];
      snprintf(path, sizeof(path), "/proc/%d/comm", s.v[i].pid);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        ssize_t n = read(fd, comm, sizeof(comm) - 1);
        close(fd);
        if (n > 0) {
          if (comm[n - 1] == '\n')
            n--;
          ym_json_add_bytes(s.v[i].item, "process", comm, (size_t)n);
        }
      }
    }
    cJSON_AddItemToArray(arr, s.v[i].item);
    st->listening++;
  }
  free(s.v);
}

/* ---------------------------------------------------------------- */
/* The document                                                       */

static void add_events(cJSON *arr, char *const *texts, size_t n, size_t *count) {
  for (size_t i = 0; i < n; i++) {
    cJSON *e = cJSON_CreateRaw(texts[i]); /* the agent's own serialization */
    if (e != NULL) {
      cJSON_AddItemToArray(arr, e);
      (*count)++;
    }
  }
}

static int gzip_into(const char *text, size_t len, ym_buf_t *gz) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return YM_ENOMEM;
  z.next_in = (Bytef *)(uintptr_t)text;
  z.avail_in = (uInt)len;
  int rc = 0, zr = Z_OK;
  while (zr != Z_STREAM_END && rc == 0) {
    if ((rc = ym_buf_reserve(gz, 65536)) != 0)
      break;
    z.next_out = (Bytef *)gz->data + gz->len;
    z.avail_out = (uInt)(gz->size - gz->len - 1 < 65536 ? gz->size - gz->len - 1 : 65536);
    uInt before = z.avail_out;
    zr = deflate(&z, Z_FINISH);
    if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
      rc = YM_EIO;
    gz->len += before - z.avail_out;
  }
  deflateEnd(&z);
  if (rc == 0)
    gz->data[gz->len] = '\0';
  return rc;
}

int triage_collect(const triage_opts_t *o, ym_buf_t *gz, triage_stats_t *st) {
  memset(st, 0, sizeof(*st));
  users_t sys_users, root_users;
  users_load("/", &sys_users);
  users_load(o->root, &root_users);
  cJSON *doc = cJSON_CreateObject();
  if (doc == NULL)
    return YM_ENOMEM;
  cJSON_AddNumberToObject(doc, "format", 1);
  cJSON_AddStringToObject(doc, "agent_id", o->agent_id ? o->agent_id : "");
  cJSON_AddNumberToObject(doc, "command_id", (double)o->command_id);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  add_time(doc, "collected_at", (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
  add_cstr(doc, "persistence_root", o->root);
  collect_processes(o, &sys_users, cJSON_AddArrayToObject(doc, "processes"), st);
  add_events(cJSON_AddArrayToObject(doc, "recent_process_starts"), o->recent_starts, o->n_starts,
             &st->recent_starts);
  add_events(cJSON_AddArrayToObject(doc, "recent_file_activity"), o->recent_files, o->n_files,
             &st->recent_files);
  collect_persistence(o, &root_users, cJSON_AddArrayToObject(doc, "persistence"), st);
  collect_listening(cJSON_AddArrayToObject(doc, "listening"), st);
  cJSON_AddBoolToObject(doc, "truncated", st->truncated != 0);
  free(sys_users.v);
  free(root_users.v);
  char *text = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  if (text == NULL)
    return YM_ENOMEM;
  size_t len = strlen(text);
  st->json_bytes = len;
  int rc = len > TRIAGE_JSON_MAX ? YM_ETOOBIG : gzip_into(text, len, gz);
  free(text);
  return rc;
}
