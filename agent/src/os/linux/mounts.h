/*
 * The mount table of this mount namespace, for the fanotify users in
 * os/linux/ (private to the Linux platform code).
 */
#ifndef YAMORI_OS_LINUX_MOUNTS_H
#define YAMORI_OS_LINUX_MOUNTS_H

#include <stdbool.h>
#include <sys/types.h>

/* Called once per mount of a real filesystem (pseudo filesystems such as
 * proc, sysfs, cgroup are skipped); mountpoint is unescaped. */
typedef void (*mounts_cb)(const char *mountpoint, const char *fstype, dev_t dev, void *data);

/* Reads the mount table from mnt_fd (an open /proc/self/mountinfo, read
 * from offset 0; at most 16 MiB) and calls cb for each real mount. Returns
 * 0 or a negative YM_E* code. */
int mounts_read(int mnt_fd, mounts_cb cb, void *data);

/* True for filesystem types that hold no user files worth watching. */
bool mounts_pseudo_fs(const char *type);

#endif
