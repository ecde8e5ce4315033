/*
 * libFuzzer harness: endpoint strings on their way into a notification.
 * The input is split at NUL bytes into a host name, a file path and a rule
 * title; they are rendered into a message in both languages and built into
 * an e-mail. Checks what notify.h promises, so that the fuzzer also finds
 * wrong answers: cleaned text has no control character and stays within
 * its bound, the subject is one line, and the message headers are exactly
 * the nine the module writes (no endpoint string starts a header line).
 */
#include "notify.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_clean(const char *s, size_t max) {
  ym_buf_t b;
  ym_buf_init(&b, max + 8);
  if (notify_text_clean(s, max, &b) != 0)
    abort();
  if (b.len > max)
    abort();
  for (size_t i = 0; i < b.len; i++) {
    unsigned char c = (unsigned char)b.data[i];
    if (c < 0x20 || c == 0x7f)
      abort();
    if (c == 0xc2 && i + 1 < b.len && (unsigned char)b.data[i + 1] < 0xa0)
      abort(); /* C1 control */
  }
  ym_buf_free(&b);
}

static void check_mail(const char *subject, const char *body) {
  ym_buf_t m;
  ym_buf_init(&m, 1 << 20);
  if (notify_text_mail("alerts@provider.example.jp", "owner@example.jp", subject, body, 1,
                       1764124646000, &m) != 0)
    abort();
  char *end = strstr(m.data, "\r\n\r\n");
  if (end == NULL)
    abort();
  int headers = 0;
  for (char *p = m.data; p < end + 2;) {
    char *nl = strstr(p, "\r\n");
    for (char *q = p; q < nl; q++)
      if (*q == '\r' || *q == '\n' || (unsigned char)*q >= 0x80)
        abort(); /* a bare line break or raw UTF-8 in a header */
    if (p[0] != ' ')
      headers++;
    p = nl + 2;
  }
  if (headers != 9)
    abort();
  ym_buf_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 3);
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = text[size + 1] = text[size + 2] = '\0';
  const char *host = text;
  const char *path = host + strlen(host) + 1;
  if (path > text + size)
    path = text + size;
  const char *title = path + strlen(path) + 1;
  if (title > text + size)
    title = text + size;
  check_clean(host, NOTIFY_HOST_MAX);
  check_clean(path, 7);
  static const char *const langs[] = {"ja", "en"};
  static const char *const changes[] = {"created", "acknowledged", "resolved", "reopened"};
  for (size_t l = 0; l < 2; l++) {
    notify_text_msg_t msg = {.lang = langs[l],
                             .change = changes[size % 4],
                             .kind = size % 5 == 0 ? "silent" : "malware",
                             .company = title,
                             .host = host,
                             .title = title,
                             .rule = path,
                             .severity = "high",
                             .file_path = path,
                             .helpdesk = host,
                             .link = "https://console.example.jp/#/incidents/1",
                             .first_ms = 1764124646000,
                             .count = (int64_t)size};
    ym_buf_t subject, body;
    ym_buf_init(&subject, 4096);
    ym_buf_init(&body, 65536);
    if (notify_text_render(&msg, &subject, &body) != 0)
      abort();
    if (strchr(subject.data, '\n') != NULL || strchr(subject.data, '\r') != NULL)
      abort();
    check_mail(subject.data, body.data);
    ym_buf_free(&subject);
    ym_buf_free(&body);
  }
  free(text);
  return 0;
}
