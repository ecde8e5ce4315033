#include "output.h"

#include "yamori/err.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define FLUSH_AT (64 * 1024)
#define BUF_MAX (8 * 1024 * 1024)
#define FLUSH_MS 100

static void on_timer(uv_timer_t *t) {
  output_flush(t->data);
}

int output_init(output_t *o, uv_loop_t *loop, const char *dest) {
  memset(o, 0, sizeof(*o));
  o->fd = -1;
  ym_buf_init(&o->buf, BUF_MAX);
  uv_timer_init(loop, &o->timer);
  o->timer.data = o;
  if (dest == NULL || dest[0] == '\0')
    return 0;
  if (strcmp(dest, "-") == 0) {
    o->fd = STDOUT_FILENO;
  } else {
    o->fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (o->fd < 0)
      return ym_err_from_errno(errno);
    o->own_fd = true;
  }
  uv_timer_start(&o->timer, on_timer, FLUSH_MS, FLUSH_MS);
  uv_unref((uv_handle_t *)&o->timer); /* never what keeps the agent running */
  return 0;
}

void output_flush(output_t *o) {
  size_t off = 0;
  while (off < o->buf.len && o->fd >= 0) {
    ssize_t n = write(o->fd, o->buf.data + off, o->buf.len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      o->write_errors++;
      break;
    }
    off += (size_t)n;
  }
  ym_buf_reset(&o->buf);
}

int output_write(output_t *o, const char *line, size_t len) {
  if (o->fd < 0)
    return 0;
  if (o->buf.len + len > FLUSH_AT)
    output_flush(o);
  int rc = ym_buf_append(&o->buf, line, len);
  if (rc == 0)
    o->lines++;
  return rc;
}

void output_close(output_t *o) {
  output_flush(o);
  if (o->own_fd && o->fd >= 0)
    close(o->fd);
  o->fd = -1;
  ym_buf_free(&o->buf);
  uv_timer_stop(&o->timer);
  if (!uv_is_closing((uv_handle_t *)&o->timer))
    uv_close((uv_handle_t *)&o->timer, NULL);
}
