/*
 * The texts of notifications (notify_text.h): what a customer reads, and
 * the e-mail it travels in.
 */
#include "notify_text.h"

#include "technique.h"

#include "yamori/err.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JST_OFFSET_S (9 * 3600)

/* ================================================================ */
/* Untrusted text                                                     */

/* Decodes one UTF-8 character at s[0..n): returns its length and sets
 * *cp, or 0 when the bytes are not valid UTF-8 (overlong forms,
 * surrogates, beyond U+10FFFF, truncated). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  size_t len;
  uint32_t v, min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xe0) == 0xc0) {
    len = 2, v = c & 0x1f, min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3, v = c & 0x0f, min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    v = (v << 6) | (s[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
    return 0;
  *cp = v;
  return len;
}

/* Characters that reorder or hide text: dropped. */
static bool is_bidi(uint32_t cp) {
  return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

int notify_text_clean(const char *in, size_t max, ym_buf_t *out) {
  if (in == NULL)
    return 0;
  const unsigned char *s = (const unsigned char *)in;
  size_t n = strlen(in), start = out->len;
  bool space = true; /* drops leading spaces */
  int rc = 0;
  /* Cleans until the text is known to fit or to be one byte too long. */
  for (size_t i = 0; i < n && rc == 0 && out->len - start <= max;) {
    uint32_t cp;
    size_t len = utf8_decode(s + i, n - i, &cp);
    const char *piece = (const char *)s + i;
    size_t plen = len;
    if (len == 0) {
      piece = "?", plen = 1, len = 1;
    } else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 ||
               cp == 0x2029 || cp == ' ') {
      piece = " ", plen = 1;
    } else if (is_bidi(cp)) {
      plen = 0;
    }
    i += len;
    if (plen == 0 || (piece[0] == ' ' && plen == 1 && space))
      continue;
    space = piece[0] == ' ' && plen == 1;
    rc = ym_buf_append(out, piece, plen);
  }
  if (rc == 0 && out->len - start > max) {
    /* Too long: cut at a character boundary and mark the cut. */
    size_t keep = max > 3 ? max - 3 : 0;
    while (keep > 0 && ((unsigned char)out->data[start + keep] & 0xc0) == 0x80)
      keep--;
    ym_buf_truncate(out, start + keep);
    while (out->len > start && out->data[out->len - 1] == ' ')
      ym_buf_truncate(out, out->len - 1);
    rc = ym_buf_append_str(out, max > 3 ? "..." : "");
    return rc;
  }
  while (rc == 0 && out->len > start && out->data[out->len - 1] == ' ')
    ym_buf_truncate(out, out->len - 1);
  return rc;
}

static int b64_append(ym_buf_t *out, const unsigned char *in, size_t n) {
  int rc = ym_buf_reserve(out, 4 * ((n + 2) / 3) + 1);
  if (rc != 0)
    return rc;
  int len = EVP_EncodeBlock((unsigned char *)out->data + out->len, in, (int)n);
  out->len += (size_t)len;
  out->data[out->len] = '\0';
  return 0;
}

int notify_text_subject(const char *subject, ym_buf_t *out) {
  const unsigned char *s = (const unsigned char *)subject;
  size_t n = strlen(subject);
  int rc = ym_buf_append_str(out, "Subject:");
  /* 45 bytes are 60 base64 characters: with "=?UTF-8?B?" and "?=" a word
   * is 72 characters, under RFC 2047's 75. */
  for (size_t i = 0; i < n && rc == 0;) {
    size_t take = n - i < 45 ? n - i : 45;
    while (take > 0 && i + take < n && (s[i + take] & 0xc0) == 0x80)
      take--;
    if (take == 0)
      take = n - i < 45 ? n - i : 45;
    rc = ym_buf_append_str(out, i == 0 ? " =?UTF-8?B?" : "\r\n =?UTF-8?B?");
    if (rc == 0)
      rc = b64_append(out, s + i, take);
    if (rc == 0)
      rc = ym_buf_append_str(out, "?=");
    i += take;
  }
  if (rc == 0)
    rc = ym_buf_append_str(out, "\r\n");
  return rc;
}

bool notify_text_email_valid(const char *addr) {
  static const char atext[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                              "!#$%&'*+/=?^_`{|}~-.";
  static const char dtext[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.";
  if (addr == NULL)
    return false;
  size_t n = strlen(addr);
  const char *at = strchr(addr, '@');
  if (n == 0 || n > NOTIFY_EMAIL_MAX || at == NULL || at == addr || at[1] == '\0')
    return false;
  size_t local = (size_t)(at - addr);
  if (local > 64 || strspn(addr, atext) != local || addr[0] == '.' || at[-1] == '.')
    return false;
  const char *dom = at + 1;
  return strspn(dom, dtext) == strlen(dom) && dom[0] != '.' && dom[0] != '-' &&
         dom[strlen(dom) - 1] != '.' && strstr(dom, "..") == NULL;
}

bool notify_text_url_valid(const char *url) {
  if (url == NULL)
    return false;
  size_t n = strlen(url);
  if (n > NOTIFY_URL_MAX || !(strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0))
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
      return false;
  return strlen(strstr(url, "://") + 3) > 0;
}

/* ================================================================ */
/* Templates                                                          */

/*
 * Every text a customer reads is here. A body is the lead paragraph, the
 * core of the case and the footer of the language. A line that names a
 * value which is empty ({file} of an incident without a file) is left
 * out. Values: {company} {host} {title} {rule} {severity} {file} {time}
 * {last_seen} {count} {file_action} {helpdesk} {link}.
 */
typedef struct {
  const char *change; /* NULL: any */
  const char *kind;   /* NULL: any */
  const char *subject, *lead, *core;
} tmpl_t;

typedef struct {
  const char *code;
  const char *greeting, *footer;
  const char *sev_high, *sev_medium, *sev_low;
  const char *file_isolated, *file_blocked, *file_unknown;
  const char *helpdesk_default, *title_malware, *title_silent;
  const char *behaviour_todo; /* what to do when the technique has no text */
  const tmpl_t *cases;
  size_t n_cases;
} lang_t;

/* ---- 日本語 ---- */

static const char ja_malware_core[] =
    "■ 何が起きたか\n"
    "検知した内容: {title}\n"
    "検知ルール: {rule}\n"
    "ファイルの場所: {file}\n"
    "日時: {time}\n"
    "同じ検知の回数: {count}回\n"
    "重要度: {severity}\n"
    "\n"
    "■ どのPCか\n"
    "PC名: {host}\n"
    "\n"
    "■ 今すぐしてほしいこと\n"
    "1. {file_action}\n"
    "2. PCの電源は切らずに、そのままにしておいてください。"
    "調べるための記録が消えてしまうことがあります。\n"
    "3. ヘルプデスクから案内があったときは、LANケーブルを抜くかWi-Fiを切って、"
    "PCをネットワークから外してください。\n"
    "4. 心当たりのないメールの添付ファイルやリンクは開かないでください。\n"
    "慌てる必要はありません。下記の連絡先からの案内をお待ちください。\n";

static const char ja_behaviour_core[] =
    "■ 何が起きたか\n"
    "検知した内容: {title}\n"
    "{technique_text}\n"
    "検知ルール: {rule}\n"
    "手口の分類（MITRE ATT&CK）: {technique}\n"
    "関係するファイル: {file}\n"
    "日時: {time}\n"
    "同じ検知の回数: {count}回\n"
    "重要度: {severity}\n"
    "\n"
    "■ どのPCか\n"
    "PC名: {host}\n"
    "\n"
    "■ 今すぐしてほしいこと\n"
    "1. {technique_todo}\n"
    "2. PCの電源は切らずに、そのままにしておいてください。"
    "調べるための記録が消えてしまうことがあります。\n"
    "3. ヘルプデスクから案内があったときは、LANケーブルを抜くかWi-Fiを切って、"
    "PCをネットワークから外してください。\n"
    "慌てる必要はありません。下記の連絡先からの案内をお待ちください。\n";

static const char ja_silent_core[] =
    "■ 何が起きたか\n"
    "PC「{host}」の見守りソフトから、監視センターへの連絡が止まっています。\n"
    "最後の連絡: {last_seen}\n"
    "PCの電源が切れている、ネットワークにつながっていない、"
    "または見守りソフトが止められた、のいずれかが考えられます。\n"
    "\n"
    "■ どのPCか\n"
    "PC名: {host}\n"
    "\n"
    "■ 今すぐしてほしいこと\n"
    "1. お休みなどで電源を切っているだけなら、対応は必要ありません。"
    "次に電源を入れたときに自動で連絡が戻ります。\n"
    "2. 使っているはずのPCなら、電源が入っていて、ネットワーク"
    "（LANケーブルやWi-Fi）につながっているか確かめてください。\n"
    "3. 電源もネットワークも問題ないのに連絡が戻らないときは、"
    "下記の連絡先までご連絡ください。\n";

static const char ja_case_core[] = "■ 対象の件\n"
                                   "内容: {title}\n"
                                   "検知ルール: {rule}\n"
                                   "ファイルの場所: {file}\n"
                                   "最初の検知: {time}\n"
                                   "PC名: {host}\n";

static const tmpl_t ja_cases[] = {
    {"created", "behaviour", "【Yamori】PC「{host}」で不審な動きを検知しました（{title}）",
     "お使いのPC「{host}」で、攻撃でよく使われる不審な動きを見つけました。\n", ja_behaviour_core},
    {"reopened", "behaviour", "【Yamori】PC「{host}」で不審な動きを再び検知しました（{title}）",
     "以前に対応が完了したPC「{host}」で、同じ不審な動きを再び見つけました。\n", ja_behaviour_core},
    {"created", "malware", "【Yamori】PC「{host}」で危険なファイルを検知しました",
     "お使いのPC「{host}」で、危険なファイルを見つけました。\n", ja_malware_core},
    {"reopened", "malware", "【Yamori】PC「{host}」で危険なファイルを再び検知しました",
     "以前に対応が完了したPC「{host}」で、同じ危険なファイルを再び見つけました。\n",
     ja_malware_core},
    {"created", "silent", "【Yamori】PC「{host}」からの連絡が途絶えています",
     "お使いのPC「{host}」から、しばらく連絡がありません。\n", ja_silent_core},
    {"reopened", "silent", "【Yamori】PC「{host}」からの連絡が再び途絶えています",
     "お使いのPC「{host}」から、再び連絡がなくなりました。\n", ja_silent_core},
    {"acknowledged", NULL, "【Yamori】PC「{host}」の件で担当者が対応を開始しました",
     "PC「{host}」についてお知らせした件で、担当者が対応を開始しました。\n",
     "{core}\n\n"
     "■ 今すぐしてほしいこと\n"
     "担当者からご連絡することがあります。案内があるまで、PCの電源は切らずにそのままお待ちください"
     "。\n"},
    {"resolved", NULL, "【Yamori】PC「{host}」の件の対応が完了しました",
     "PC「{host}」についてお知らせした件で、対応が完了しました。\n",
     "{core}\n\n"
     "■ これからのこと\n"
     "PCはふだんどおりお使いいただけます。ほかに気になることがあれば、"
     "下記の連絡先までお気軽にご相談ください。\n"},
    {"test", NULL, "【Yamori】通知のテストです", "これは Yamori の通知のテストです。\n",
     "このメールが届いていれば、このあて先への通知は正しく届きます。対応は必要ありません。\n"},
};

static const lang_t lang_ja = {
    "ja",
    "{company} ご担当者様\n",
    "■ 連絡先\n"
    "わからないことや心配なことがあれば、こちらまでご連絡ください。\n"
    "{helpdesk}\n"
    "\n"
    "詳しい情報（担当者向け）: {link}\n"
    "\n"
    "このメールは、セキュリティ見守りサービス Yamori が自動でお送りしています。\n",
    "高",
    "中",
    "低",
    "見つかったファイルは自動的に隔離しました（安全な場所に移して、動かないようにしました）。"
    "ファイルを探したり、元に戻したりしないでください。",
    "このファイルが起動しようとしたところを止めました。もう一度開いたり、実行したりしないでください"
    "。",
    "このファイルは開かないでください。削除や移動もせず、そのままにしておいてください。",
    "ご契約のセキュリティサービスの窓口",
    "危険なファイル",
    "PCからの連絡の途絶",
    "心当たりのない操作であれば、PCをそのままにして下記の連絡先までご連絡ください。",
    ja_cases,
    sizeof(ja_cases) / sizeof(ja_cases[0]),
};

/* ---- English ---- */

static const char en_malware_core[] =
    "## What happened\n"
    "Detected: {title}\n"
    "Rule: {rule}\n"
    "File: {file}\n"
    "When: {time}\n"
    "Detections so far: {count}\n"
    "Severity: {severity}\n"
    "\n"
    "## Which PC\n"
    "PC name: {host}\n"
    "\n"
    "## What to do now\n"
    "1. {file_action}\n"
    "2. Keep the PC switched on: turning it off can erase records "
    "needed to investigate.\n"
    "3. If the help desk asks you to, disconnect the PC from the "
    "network (unplug the network cable or turn Wi-Fi off).\n"
    "4. Do not open unexpected e-mail attachments or links.\n"
    "There is no need to panic: please wait for instructions from "
    "the contact below.\n";

static const char en_behaviour_core[] =
    "## What happened\n"
    "Detected: {title}\n"
    "{technique_text}\n"
    "Rule: {rule}\n"
    "Technique (MITRE ATT&CK): {technique}\n"
    "File: {file}\n"
    "When: {time}\n"
    "Detections so far: {count}\n"
    "Severity: {severity}\n"
    "\n"
    "## Which PC\n"
    "PC name: {host}\n"
    "\n"
    "## What to do now\n"
    "1. {technique_todo}\n"
    "2. Keep the PC switched on: turning it off can erase records "
    "needed to investigate.\n"
    "3. If the help desk asks you to, disconnect the PC from the "
    "network (unplug the network cable or turn Wi-Fi off).\n"
    "There is no need to panic: please wait for instructions from "
    "the contact below.\n";

static const char en_silent_core[] =
    "## What happened\n"
    "The protection on PC \"{host}\" has stopped reporting to the "
    "monitoring center.\n"
    "Last contact: {last_seen}\n"
    "The PC may be switched off or offline, or the protection may "
    "have been stopped.\n"
    "\n"
    "## Which PC\n"
    "PC name: {host}\n"
    "\n"
    "## What to do now\n"
    "1. If the PC is simply switched off (a holiday, for example), "
    "nothing needs to be done: it reports again when it starts.\n"
    "2. If the PC should be in use, check that it is on and connected "
    "to the network (cable or Wi-Fi).\n"
    "3. If it is on and connected but still silent, please call the "
    "contact below.\n";

static const char en_case_core[] = "## The case\n"
                                   "What: {title}\n"
                                   "Rule: {rule}\n"
                                   "File: {file}\n"
                                   "First detected: {time}\n"
                                   "PC name: {host}\n";

static const tmpl_t en_cases[] = {
    {"created", "behaviour", "[Yamori] Suspicious behaviour detected on PC \"{host}\" ({title})",
     "Behaviour that attacks often show was seen on your PC \"{host}\".\n", en_behaviour_core},
    {"reopened", "behaviour",
     "[Yamori] Suspicious behaviour detected again on PC \"{host}\" ({title})",
     "The suspicious behaviour seen earlier on PC \"{host}\" has been detected again.\n",
     en_behaviour_core},
    {"created", "malware", "[Yamori] Dangerous file detected on PC \"{host}\"",
     "A dangerous file was found on your PC \"{host}\".\n", en_malware_core},
    {"reopened", "malware", "[Yamori] Dangerous file detected again on PC \"{host}\"",
     "The dangerous file found earlier on PC \"{host}\" has been detected again.\n",
     en_malware_core},
    {"created", "silent", "[Yamori] PC \"{host}\" has stopped reporting",
     "Your PC \"{host}\" has not reported for a while.\n", en_silent_core},
    {"reopened", "silent", "[Yamori] PC \"{host}\" has stopped reporting again",
     "Your PC \"{host}\" has stopped reporting again.\n", en_silent_core},
    {"acknowledged", NULL, "[Yamori] Someone is now handling the case on PC \"{host}\"",
     "A member of the security team has started handling the case we reported on PC "
     "\"{host}\".\n",
     "{core}\n\n"
     "## What to do now\n"
     "We may contact you. Until then, please keep the PC switched on and as it is.\n"},
    {"resolved", NULL, "[Yamori] The case on PC \"{host}\" is resolved",
     "The case we reported on PC \"{host}\" has been resolved.\n",
     "{core}\n\n"
     "## What next\n"
     "You can use the PC as usual. If anything else worries you, please contact us below.\n"},
    {"test", NULL, "[Yamori] Test notification", "This is a test notification from Yamori.\n",
     "If you can read this, notifications to this address work. Nothing needs to be done.\n"},
};

static const lang_t lang_en = {
    "en",
    "Dear {company},\n",
    "## Contact\n"
    "If anything is unclear or worries you, please contact:\n"
    "{helpdesk}\n"
    "\n"
    "Details (for the security team): {link}\n"
    "\n"
    "This message was sent automatically by the Yamori security monitoring service.\n",
    "high",
    "medium",
    "low",
    "The file was isolated automatically (moved to a safe place where it cannot run). "
    "Do not look for it or try to restore it.",
    "The file was stopped when it tried to start. Do not open or run it again.",
    "Do not open the file. Do not delete or move it either: leave it as it is.",
    "your security service's help desk",
    "Dangerous file",
    "PC stopped reporting",
    "If nobody at your company did this on purpose, leave the PC as it is and contact us below.",
    en_cases,
    sizeof(en_cases) / sizeof(en_cases[0]),
};

typedef struct {
  const char *name;
  ym_buf_t val;
} var_t;

enum {
  V_COMPANY,
  V_HOST,
  V_TITLE,
  V_RULE,
  V_SEVERITY,
  V_FILE,
  V_TIME,
  V_LAST_SEEN,
  V_COUNT,
  V_FILE_ACTION,
  V_HELPDESK,
  V_LINK,
  V_TECHNIQUE,
  V_TECHNIQUE_TEXT,
  V_TECHNIQUE_TODO,
  V_N
};

static const char *const var_names[V_N] = {
    "company",  "host", "title",     "rule",           "severity",
    "file",     "time", "last_seen", "count",          "file_action",
    "helpdesk", "link", "technique", "technique_text", "technique_todo"};

/* Cleans text line by line (the help desk contact may have several:
 * a phone number, the hours, an address), dropping empty lines. */
static int clean_lines(const char *in, size_t max, ym_buf_t *out) {
  int rc = 0;
  size_t start = out->len;
  for (const char *p = in; p != NULL && *p != '\0' && rc == 0;) {
    size_t n = strcspn(p, "\n");
    char line[NOTIFY_HELPDESK_MAX + 1];
    snprintf(line, sizeof(line), "%.*s", (int)(n < NOTIFY_HELPDESK_MAX ? n : NOTIFY_HELPDESK_MAX),
             p);
    p += n + (p[n] == '\n');
    size_t mark = out->len, used = out->len - start;
    bool sep = used > 0;
    if (used + sep >= max)
      break;
    if (sep)
      rc = ym_buf_append_byte(out, '\n');
    if (rc == 0)
      rc = notify_text_clean(line, max - used - sep, out);
    if (rc == 0 && out->len == mark + sep)
      ym_buf_truncate(out, mark); /* an empty line */
  }
  return rc;
}

/* Appends the time ms (unix milliseconds) in Japan time. */
static int append_jst(ym_buf_t *b, int64_t ms, bool ja) {
  if (ms <= 0)
    return 0;
  time_t t = (time_t)(ms / 1000) + JST_OFFSET_S;
  struct tm tm;
  gmtime_r(&t, &tm);
  return ym_buf_appendf(
      b, ja ? "%04d年%d月%d日 %02d:%02d（日本時間）" : "%04d-%02d-%02d %02d:%02d JST",
      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
}

/* Expands placeholders of text into out, line by line; a line naming an
 * empty value is left out. {core} expands to core (itself expanded). */
static int expand(const char *text, const char *core, ym_buf_t *vars, ym_buf_t *out) {
  int rc = 0;
  while (*text != '\0' && rc == 0) {
    size_t line_len = strcspn(text, "\n");
    bool nl = text[line_len] == '\n';
    if (strncmp(text, "{core}", 6) == 0 && line_len == 6 && core != NULL) {
      rc = expand(core, NULL, vars, out);
      text += line_len + nl;
      continue;
    }
    size_t mark = out->len;
    bool keep = true;
    for (size_t i = 0; i < line_len && rc == 0;) {
      const char *close = text[i] == '{' ? memchr(text + i, '}', line_len - i) : NULL;
      size_t v = V_N;
      if (close != NULL)
        for (v = 0; v < V_N; v++)
          if ((size_t)(close - (text + i + 1)) == strlen(var_names[v]) &&
              strncmp(text + i + 1, var_names[v], strlen(var_names[v])) == 0)
            break;
      if (v == V_N) {
        rc = ym_buf_append_byte(out, text[i]);
        i++;
        continue;
      }
      if (vars[v].len == 0)
        keep = false;
      else
        rc = ym_buf_append(out, vars[v].data, vars[v].len);
      i = (size_t)(close - text) + 1;
    }
    if (!keep) {
      ym_buf_truncate(out, mark);
    } else if (nl && rc == 0) {
      rc = ym_buf_append_byte(out, '\n');
    }
    text += line_len + nl;
  }
  return rc;
}

int notify_text_render(const notify_text_msg_t *m, ym_buf_t *subject, ym_buf_t *body) {
  const lang_t *L = m->lang != NULL && strcmp(m->lang, "en") == 0 ? &lang_en : &lang_ja;
  const char *kind = m->kind != NULL ? m->kind : "malware";
  if (m->change == NULL || (strcmp(kind, "malware") != 0 && strcmp(kind, "silent") != 0))
    return YM_EINVAL;
  bool behaviour = m->behaviour && strcmp(kind, "malware") == 0;
  if (behaviour)
    kind = "behaviour";
  const tmpl_t *t = NULL;
  for (size_t i = 0; i < L->n_cases && t == NULL; i++)
    if (strcmp(L->cases[i].change, m->change) == 0 &&
        (L->cases[i].kind == NULL || strcmp(L->cases[i].kind, kind) == 0))
      t = &L->cases[i];
  if (t == NULL)
    return YM_EINVAL;
  bool silent = strcmp(kind, "silent") == 0;
  ym_buf_t v[V_N];
  for (size_t i = 0; i < V_N; i++)
    ym_buf_init(&v[i], 4096);
  int rc = notify_text_clean(m->company, NOTIFY_TEXT_MAX, &v[V_COMPANY]);
  rc = rc ? rc : notify_text_clean(m->host, NOTIFY_HOST_MAX, &v[V_HOST]);
  if (rc == 0 && v[V_HOST].len == 0)
    rc = ym_buf_append_str(&v[V_HOST], "?");
  const technique_t *tq = behaviour ? technique_first(m->technique) : NULL;
  int li = L == &lang_en ? TECHNIQUE_EN : TECHNIQUE_JA;
  if (behaviour) {
    /* The technique's title in the reader's language leads; the rule's
     * own title (an endpoint string) is named as the rule. */
    rc = rc ? rc : notify_text_clean(tq ? tq->title[li] : m->title, NOTIFY_TEXT_MAX, &v[V_TITLE]);
    rc = rc ? rc : notify_text_clean(m->technique, NOTIFY_TEXT_MAX, &v[V_TECHNIQUE]);
    if (rc == 0 && tq != NULL)
      rc = ym_buf_append_str(&v[V_TECHNIQUE_TEXT], tq->text[li]);
    rc = rc ? rc : ym_buf_append_str(&v[V_TECHNIQUE_TODO], tq ? tq->todo[li] : L->behaviour_todo);
  } else {
    rc = rc ? rc : notify_text_clean(m->title, NOTIFY_TEXT_MAX, &v[V_TITLE]);
  }
  if (rc == 0 && v[V_TITLE].len == 0)
    rc = ym_buf_append_str(&v[V_TITLE], silent ? L->title_silent : L->title_malware);
  if (!silent) {
    rc = rc ? rc : notify_text_clean(behaviour ? m->title : m->rule, NOTIFY_TEXT_MAX, &v[V_RULE]);
    rc = rc ? rc : notify_text_clean(m->file_path, NOTIFY_PATH_MAX, &v[V_FILE]);
    const char *sev = m->severity == NULL                  ? ""
                      : strcmp(m->severity, "high") == 0   ? L->sev_high
                      : strcmp(m->severity, "medium") == 0 ? L->sev_medium
                      : strcmp(m->severity, "low") == 0    ? L->sev_low
                                                           : "";
    rc = rc ? rc : ym_buf_append_str(&v[V_SEVERITY], sev);
    if (rc == 0 && m->count > 1)
      rc = ym_buf_appendf(&v[V_COUNT], "%lld", (long long)m->count);
  }
  rc = rc ? rc : append_jst(&v[V_TIME], m->first_ms, L == &lang_ja);
  rc = rc ? rc : append_jst(&v[V_LAST_SEEN], m->last_seen_ms, L == &lang_ja);
  const char *fa = m->file_action == NOTIFY_TEXT_FILE_ISOLATED  ? L->file_isolated
                   : m->file_action == NOTIFY_TEXT_FILE_BLOCKED ? L->file_blocked
                                                                : L->file_unknown;
  rc = rc ? rc : ym_buf_append_str(&v[V_FILE_ACTION], fa);
  rc = rc ? rc : clean_lines(m->helpdesk, NOTIFY_HELPDESK_MAX, &v[V_HELPDESK]);
  if (rc == 0 && v[V_HELPDESK].len == 0)
    rc = ym_buf_append_str(&v[V_HELPDESK], L->helpdesk_default);
  rc = rc ? rc : notify_text_clean(m->link, NOTIFY_URL_MAX, &v[V_LINK]);

  const char *core = t->core;
  const char *case_core = L == &lang_ja ? ja_case_core : en_case_core;
  if (rc == 0)
    rc = expand(t->subject, NULL, v, subject);
  if (rc == 0)
    rc = expand(L->greeting, NULL, v, body);
  if (rc == 0 && body->len > 0)
    rc = ym_buf_append_byte(body, '\n');
  if (rc == 0)
    rc = expand(t->lead, NULL, v, body);
  if (rc == 0)
    rc = ym_buf_append_byte(body, '\n');
  if (rc == 0)
    rc = expand(core, case_core, v, body);
  if (rc == 0)
    rc = ym_buf_append_byte(body, '\n');
  if (rc == 0)
    rc = expand(L->footer, NULL, v, body);
  for (size_t i = 0; i < V_N; i++)
    ym_buf_free(&v[i]);
  return rc;
}

/* ================================================================ */
/* E-mail                                                             */

int notify_text_mail(const char *from, const char *to, const char *subject, const char *body,
                     int64_t outbox_id, int64_t date_ms, ym_buf_t *out) {
  static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (!notify_text_email_valid(from) || !notify_text_email_valid(to))
    return YM_EINVAL;
  /* The subject was built from cleaned values; clean again so that no
   * caller can put a line break into the header. */
  ym_buf_t subj;
  ym_buf_init(&subj, NOTIFY_SUBJECT_MAX + 8);
  int rc = notify_text_clean(subject, NOTIFY_SUBJECT_MAX, &subj);
  time_t t = (time_t)(date_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  if (rc == 0)
    rc = ym_buf_appendf(out,
                        "From: Yamori <%s>\r\n"
                        "To: <%s>\r\n",
                        from, to);
  if (rc == 0)
    rc = notify_text_subject(subj.data != NULL ? subj.data : "", out);
  if (rc == 0)
    rc = ym_buf_appendf(out,
                        "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n"
                        "Message-ID: <yamori.%lld.%lld@%s>\r\n"
                        "MIME-Version: 1.0\r\n"
                        "Content-Type: text/plain; charset=UTF-8\r\n"
                        "Content-Transfer-Encoding: base64\r\n"
                        "Auto-Submitted: auto-generated\r\n"
                        "\r\n",
                        days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
                        tm.tm_hour, tm.tm_min, tm.tm_sec, (long long)outbox_id, (long long)date_ms,
                        strchr(from, '@') + 1);
  ym_buf_free(&subj);
  /* Body: lines end with CRLF, then base64 in lines of 76 characters. */
  ym_buf_t crlf;
  ym_buf_init(&crlf, 2 * NOTIFY_BODY_MAX + 4);
  for (const char *p = body; rc == 0 && *p != '\0'; p++)
    rc = *p == '\n' ? ym_buf_append(&crlf, "\r\n", 2) : ym_buf_append_byte(&crlf, *p);
  for (size_t i = 0; rc == 0 && i < crlf.len; i += 57) {
    size_t take = crlf.len - i < 57 ? crlf.len - i : 57;
    rc = b64_append(out, (const unsigned char *)crlf.data + i, take);
    if (rc == 0)
      rc = ym_buf_append(out, "\r\n", 2);
  }
  ym_buf_free(&crlf);
  return rc;
}
