/*
 * The texts of notifications: every sentence a customer reads lives in
 * the template table of notify_text.c, in Japanese and English. Strings
 * that came from an endpoint (host names, paths, rule titles) are
 * untrusted: notify_text_clean() removes control characters (CR and LF
 * included), bidirectional overrides and invalid UTF-8 and bounds their
 * length before they go into any text; in e-mail the Subject is RFC 2047
 * encoded and the body base64, so nothing an endpoint sends can add a
 * header or an SMTP command.
 */
#ifndef YAMORI_CONSOLE_NOTIFY_TEXT_H
#define YAMORI_CONSOLE_NOTIFY_TEXT_H

#include "yamori/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits on what goes into a message. */
#define NOTIFY_BODY_MAX (32 * 1024) /* bytes of a rendered body */
#define NOTIFY_SUBJECT_MAX 600      /* bytes of a rendered subject */
#define NOTIFY_HOST_MAX 128         /* bytes of a host name in a message */
#define NOTIFY_TEXT_MAX 300         /* bytes of a title or rule */
#define NOTIFY_HELPDESK_MAX 500     /* bytes of the help desk contact (several lines) */
#define NOTIFY_PATH_MAX 512         /* bytes of a file path */
#define NOTIFY_RECIPIENTS_MAX 20    /* e-mail recipients per tenant */
#define NOTIFY_EMAIL_MAX 254        /* bytes of an e-mail address */
#define NOTIFY_URL_MAX 2048         /* bytes of a webhook or console URL */
#define NOTIFY_SECRET_MAX 256       /* bytes of a webhook secret */

/* What a message is about, with strings already cleaned. */
enum { NOTIFY_TEXT_FILE_UNKNOWN, NOTIFY_TEXT_FILE_ISOLATED, NOTIFY_TEXT_FILE_BLOCKED };
typedef struct {
  const char *lang;   /* "ja" (default for anything else) or "en" */
  const char *change; /* created, acknowledged, resolved, reopened, test */
  const char *kind;   /* malware or silent */
  const char *company, *host, *title, *rule, *severity, *file_path, *helpdesk, *link;
  int64_t first_ms, last_ms, last_seen_ms, count;
  int file_action; /* NOTIFY_TEXT_FILE_* */
  /* A behaviour incident (a Sigma rule's alert; kind is malware): the
   * message speaks of suspicious behaviour, title is the rule's title and
   * technique the ATT&CK ids ("T1053.003,T1059.004"), told in words from
   * technique.h. */
  bool behaviour;
  const char *technique;
} notify_text_msg_t;

/* Renders the subject (one line) and body (lines ended by "\n") of m from
 * the templates. A template line that names a value which is empty is
 * left out. Returns 0, YM_EINVAL (unknown change or kind) or YM_ETOOBIG /
 * YM_ENOMEM from the buffers. */
int notify_text_render(const notify_text_msg_t *m, ym_buf_t *subject, ym_buf_t *body);

/* Appends in[0..strlen) cleaned for a message: control characters (C0, DEL,
 * C1; CR and LF included) become a space, bidirectional controls are
 * dropped, invalid UTF-8 bytes become '?', runs of spaces collapse, and the
 * result is cut at a character boundary to at most max bytes (with "..."
 * when cut). NULL appends nothing. Returns 0 or YM_ETOOBIG / YM_ENOMEM. */
int notify_text_clean(const char *in, size_t max, ym_buf_t *out);

/* Appends "Subject: " and subject (UTF-8, already one line) as RFC 2047
 * "B" encoded words of at most 75 characters, folded with CRLF SP, then
 * CRLF. Words never split a UTF-8 character. */
int notify_text_subject(const char *subject, ym_buf_t *out);

/* True when addr is a plain e-mail address we send to: local@domain, at
 * most NOTIFY_EMAIL_MAX bytes, local part of atext and dots, domain of
 * letters, digits, '-' and '.'; nothing that could end a header or an SMTP
 * command. A recipient in the settings that fails this check gets an
 * outbox row in state failed ("not a valid e-mail address") instead of a
 * message. */
bool notify_text_email_valid(const char *addr);

/* Builds a complete RFC 5322 message (CRLF lines): From, To, Subject
 * (notify_text_subject), Date (date_ms, UTC), Message-ID, MIME headers,
 * and body (UTF-8 text, base64 encoded). from and to must pass
 * notify_text_email_valid(). */
int notify_text_mail(const char *from, const char *to, const char *subject, const char *body,
                     int64_t outbox_id, int64_t date_ms, ym_buf_t *out);

/* True for an http:// or https:// URL of printable ASCII without spaces,
 * at most NOTIFY_URL_MAX bytes. */
bool notify_text_url_valid(const char *url);

#endif
