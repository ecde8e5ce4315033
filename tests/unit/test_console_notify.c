/*
 * Tests of the notifications module without a network: cleaning of
 * untrusted text, the RFC 2047 Subject header, e-mail address checks, the
 * templates in both languages, the complete message, the webhook
 * signature, and the outbox on a real SQLite store (one row per recipient,
 * a second enqueue adds nothing, isolated / blocked file texts).
 */
#include "incidents.h"
#include "notify.h"
#include "store.h"
#include "technique.h"

#include "yamori/buf.h"
#include "yamori/err.h"

#include <dirent.h>
#include <openssl/evp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cmocka.h>

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static char *clean(const char *in, size_t max) {
  static char out[4096];
  ym_buf_t b;
  ym_buf_init(&b, sizeof(out) - 1);
  assert_int_equal(notify_text_clean(in, max, &b), 0);
  snprintf(out, sizeof(out), "%s", b.data != NULL ? b.data : "");
  ym_buf_free(&b);
  return out;
}

/* Decodes base64 text (no line breaks) into out; returns the length. */
static size_t b64_decode(const char *in, size_t n, unsigned char *out) {
  int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
  assert_true(len >= 0);
  while (n > 0 && in[n - 1] == '=')
    n--, len--;
  return (size_t)len;
}

static bool utf8_valid(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    size_t len = s[i] < 0x80 ? 1 : (s[i] & 0xe0) == 0xc0 ? 2 : (s[i] & 0xf0) == 0xe0 ? 3 : 4;
    if (i + len > n)
      return false;
    for (size_t k = 1; k < len; k++)
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
    i += len;
  }
  return true;
}

static notify_text_msg_t malware_msg(const char *lang, const char *change) {
  notify_text_msg_t m = {
      .lang = lang,
      .change = change,
      .kind = "malware",
      .company = "株式会社アクメ",
      .host = "pc-01",
      .title = "EICAR test file",
      .rule = "EICAR_Test",
      .severity = "high",
      .file_path = "/home/taro/eicar.com",
      .helpdesk = "ヤモリデスク 0120-000-000",
      .link = "https://console.example.jp/#/incidents/7",
      .first_ms = 1764124646000, /* 2025-11-26 02:37:26 UTC, 11:37 JST */
      .last_ms = 1764124646000,
      .count = 1,
      .file_action = NOTIFY_TEXT_FILE_UNKNOWN,
  };
  return m;
}

typedef struct {
  char subject[1024];
  char body[16384];
} rendered_t;

static int render(const notify_text_msg_t *m, rendered_t *r) {
  ym_buf_t s, b;
  ym_buf_init(&s, 1024);
  ym_buf_init(&b, 32768);
  int rc = notify_text_render(m, &s, &b);
  snprintf(r->subject, sizeof(r->subject), "%s", s.data != NULL ? s.data : "");
  snprintf(r->body, sizeof(r->body), "%s", b.data != NULL ? b.data : "");
  ym_buf_free(&s);
  ym_buf_free(&b);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Untrusted text                                                       */

static void test_clean(void **state) {
  (void)state;
  assert_string_equal(clean("pc-01", 100), "pc-01");
  assert_string_equal(clean("a\r\nBcc: x@y\r\n", 100), "a Bcc: x@y");
  assert_string_equal(clean("  tab\there\x1b[31m  red\x7f ", 100), "tab here [31m red");
  /* C1 controls, line separator, bidirectional overrides. */
  assert_string_equal(clean("a\xc2\x85"
                            "b\xe2\x80\xa8"
                            "c\xe2\x80\xae"
                            "d",
                            100),
                      "a b cd");
  /* Invalid UTF-8: stray continuation, overlong, surrogate, truncated. */
  assert_string_equal(clean("x\x80y\xc0\xafz\xed\xa0\x80w\xe3\x81", 100), "x?y??z???w??");
  assert_string_equal(clean("日本語のホスト", 100), "日本語のホスト");
  /* Cut at a character boundary, marked. */
  char *c = clean("あいうえおかきくけこ", 10);
  assert_true(strlen(c) <= 10);
  assert_string_equal(c, "あい...");
  assert_string_equal(clean("abcdef", 6), "abcdef");
  assert_string_equal(clean("abcdefg", 6), "abc...");
  assert_string_equal(clean(NULL, 10), "");
  assert_string_equal(clean("\r\n\r\n", 10), "");
}

static void test_header_subject(void **state) {
  (void)state;
  const char *subj =
      "【Yamori】PC「とても長い名前のパソコン-経理部-01」で危険なファイルを検知しました";
  ym_buf_t b;
  ym_buf_init(&b, 4096);
  assert_int_equal(notify_text_subject(subj, &b), 0);
  assert_true(strncmp(b.data, "Subject: =?UTF-8?B?", 19) == 0);
  assert_true(b.len >= 2 && strcmp(b.data + b.len - 2, "\r\n") == 0);
  /* ASCII only; every CR is part of CRLF followed by a space (a fold) or
   * the final CRLF; lines stay short; the words decode to the subject. */
  char decoded[1024] = "";
  size_t dlen = 0, words = 0;
  const char *p = b.data + strlen("Subject:");
  for (size_t i = 0; i < b.len; i++) {
    assert_true((unsigned char)b.data[i] < 0x80);
    if (b.data[i] == '\r') {
      assert_int_equal(b.data[i + 1], '\n');
      assert_true(i + 2 == b.len || b.data[i + 2] == ' ');
    }
  }
  while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
    p += 10;
    const char *end = strstr(p, "?=");
    assert_non_null(end);
    assert_true((size_t)(end - p) + 12 <= 75);
    unsigned char chunk[128];
    size_t n = b64_decode(p, (size_t)(end - p), chunk);
    assert_true(utf8_valid(chunk, n)); /* no character split between words */
    memcpy(decoded + dlen, chunk, n);
    dlen += n;
    words++;
    p = end + 2;
  }
  decoded[dlen] = '\0';
  assert_string_equal(decoded, subj);
  assert_true(words >= 3);
  ym_buf_free(&b);
}

static void test_email_valid(void **state) {
  (void)state;
  assert_true(notify_text_email_valid("owner@example.jp"));
  assert_true(notify_text_email_valid("first.last+tag@mail.example.co.jp"));
  assert_false(notify_text_email_valid(""));
  assert_false(notify_text_email_valid("no-at.example.jp"));
  assert_true(notify_text_email_valid("root@localhost"));
  assert_false(notify_text_email_valid("@example.jp"));
  assert_false(notify_text_email_valid("a@@example.jp"));
  assert_false(notify_text_email_valid("a@example.jp\r\nRCPT TO:<x@y.jp>"));
  assert_false(notify_text_email_valid("a@example.jp>"));
  assert_false(notify_text_email_valid("<a@example.jp"));
  assert_false(notify_text_email_valid("a b@example.jp"));
  assert_false(notify_text_email_valid(".a@example.jp"));
  assert_false(notify_text_email_valid("a@example..jp"));
  assert_false(notify_text_email_valid("a@-example.jp"));
  assert_false(notify_text_email_valid("日本@example.jp"));
  char longaddr[300];
  memset(longaddr, 'a', sizeof(longaddr));
  snprintf(longaddr + 250, 50, "@example.jp");
  assert_false(notify_text_email_valid(longaddr));
}

/* ------------------------------------------------------------------ */
/* Templates                                                            */

static void test_render_ja_malware(void **state) {
  (void)state;
  rendered_t r;
  notify_text_msg_t m = malware_msg("ja", "created");
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(r.subject, "【Yamori】PC「pc-01」で危険なファイルを検知しました");
  assert_true(
      strncmp(r.body, "株式会社アクメ ご担当者様\n", strlen("株式会社アクメ ご担当者様\n")) == 0);
  const char *want[] = {"■ 何が起きたか\n",
                        "検知した内容: EICAR test file\n",
                        "ファイルの場所: /home/taro/eicar.com\n",
                        "日時: 2025年11月26日 11:37（日本時間）\n",
                        "重要度: 高\n",
                        "■ どのPCか\nPC名: pc-01\n",
                        "■ 今すぐしてほしいこと\n1. このファイルは開かないでください。",
                        "電源は切らずに",
                        "■ 連絡先\n",
                        "ヤモリデスク 0120-000-000\n",
                        "詳しい情報（担当者向け）: https://console.example.jp/#/incidents/7\n"};
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    if (strstr(r.body, want[i]) == NULL)
      fail_msg("missing %s in:\n%s", want[i], r.body);
  }
  /* count 1: the line about repeated detections is left out. */
  assert_null(strstr(r.body, "同じ検知の回数"));
  assert_null(strstr(r.body, "{"));

  m.count = 12;
  m.file_action = NOTIFY_TEXT_FILE_ISOLATED;
  m.file_path = "";
  assert_int_equal(render(&m, &r), 0);
  assert_non_null(strstr(r.body, "同じ検知の回数: 12回\n"));
  assert_non_null(strstr(r.body, "1. 見つかったファイルは自動的に隔離しました"));
  assert_null(strstr(r.body, "ファイルの場所"));
  m.file_action = NOTIFY_TEXT_FILE_BLOCKED;
  assert_int_equal(render(&m, &r), 0);
  assert_non_null(strstr(r.body, "起動しようとしたところを止めました"));

  /* A help desk contact of several lines keeps them (cleaned, no empty
   * line). */
  m.helpdesk = "ヤモリデスク\n0120-000-000\n\n平日 9時〜18時\r\n";
  assert_int_equal(render(&m, &r), 0);
  assert_non_null(strstr(r.body, "\nヤモリデスク\n0120-000-000\n平日 9時〜18時\n\n"));

  /* No help desk configured: a general contact phrase, never an empty line. */
  m.helpdesk = "";
  assert_int_equal(render(&m, &r), 0);
  assert_non_null(strstr(r.body, "ご契約のセキュリティサービスの窓口"));

  m = malware_msg("ja", "reopened");
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(r.subject, "【Yamori】PC「pc-01」で危険なファイルを再び検知しました");
}

static void test_render_changes(void **state) {
  (void)state;
  rendered_t r;
  notify_text_msg_t m = malware_msg("ja", "acknowledged");
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(r.subject, "【Yamori】PC「pc-01」の件で担当者が対応を開始しました");
  assert_non_null(strstr(r.body, "担当者が対応を開始しました"));
  assert_non_null(strstr(r.body, "■ 対象の件\n内容: EICAR test file\n"));
  assert_non_null(strstr(r.body, "PC名: pc-01\n\n■ 今すぐしてほしいこと\n"));
  m.change = "resolved";
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(r.subject, "【Yamori】PC「pc-01」の件の対応が完了しました");
  assert_non_null(strstr(r.body, "ふだんどおりお使いいただけます"));

  m = malware_msg("ja", "created");
  m.kind = "silent";
  m.title = "";
  m.last_seen_ms = 1764124646000;
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(r.subject, "【Yamori】PC「pc-01」からの連絡が途絶えています");
  assert_non_null(strstr(r.body, "最後の連絡: 2025年11月26日 11:37（日本時間）\n"));
  assert_null(strstr(r.body, "EICAR")); /* no malware fields in a silent text */
  m.change = "acknowledged";
  assert_int_equal(render(&m, &r), 0);
  assert_non_null(strstr(r.body, "内容: PCからの連絡の途絶\n"));

  m = malware_msg("ja", "test");
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(r.subject, "【Yamori】通知のテストです");

  m.change = "deleted";
  assert_int_equal(render(&m, &r), YM_EINVAL);
  m.change = "created";
  m.kind = "other";
  assert_int_equal(render(&m, &r), YM_EINVAL);
}

/* A behaviour incident (a Sigma rule's alert): the subject and the lead
 * speak of suspicious behaviour, the technique's Japanese title leads, its
 * plain explanation and what to do follow, the rule's own title is named
 * as the rule. */
static notify_text_msg_t behaviour_msg(const char *lang, const char *technique) {
  notify_text_msg_t m = malware_msg(lang, "created");
  m.title = "Cron job file written outside a package installation";
  m.rule = "7c1b2a3d-0000-4000-8000-000000000001";
  m.severity = "medium";
  m.file_path = "/etc/cron.d/backdoor";
  m.behaviour = true;
  m.technique = technique;
  return m;
}

static void test_render_behaviour(void **state) {
  (void)state;
  rendered_t r;
  notify_text_msg_t m = behaviour_msg("ja", "T1053.003");
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(
      r.subject, "【Yamori】PC「pc-01」で不審な動きを検知しました（cron による自動実行の設定）");
  assert_non_null(strstr(r.body, "攻撃でよく使われる不審な動き"));
  assert_non_null(strstr(r.body, "検知した内容: cron による自動実行の設定\n"));
  assert_non_null(strstr(r.body, "定期的にコマンドを自動実行する設定（cron）"));
  assert_non_null(
      strstr(r.body, "検知ルール: Cron job file written outside a package installation\n"));
  assert_non_null(strstr(r.body, "手口の分類（MITRE ATT&CK）: T1053.003\n"));
  assert_non_null(strstr(r.body, "1. 追加された設定の内容を確認し"));
  assert_non_null(strstr(r.body, "関係するファイル: /etc/cron.d/backdoor\n"));
  assert_null(strstr(r.body, "危険なファイルを見つけました"));
  assert_null(strstr(r.body, m.rule)); /* the Sigma id is not for people */

  m = behaviour_msg("en", "T1053.003");
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(r.subject, "[Yamori] Suspicious behaviour detected on PC \"pc-01\" "
                                 "(Scheduled job added with cron)");
  assert_non_null(strstr(r.body, "Detected: Scheduled job added with cron\n"));
  assert_non_null(strstr(r.body, "A cron job (a command run automatically on a schedule)"));
  assert_non_null(strstr(r.body, "Technique (MITRE ATT&CK): T1053.003\n"));
  assert_non_null(strstr(r.body, "1. Look at the job that was added."));

  /* A sub-technique not in the table is told with its parent's text; the
   * first known id of the list leads. */
  m = behaviour_msg("ja", "T9999,T1059.999,T1053.003");
  assert_int_equal(render(&m, &r), 0);
  assert_non_null(strstr(r.subject, "（コマンドやスクリプトの不審な実行）"));
  /* Unknown techniques: the rule's title, and the general advice. */
  m = behaviour_msg("ja", "T9999");
  assert_int_equal(render(&m, &r), 0);
  assert_non_null(strstr(r.subject, "（Cron job file written outside a package installation）"));
  assert_non_null(strstr(r.body, "1. 心当たりのない操作であれば"));
  m = behaviour_msg("ja", NULL);
  assert_int_equal(render(&m, &r), 0);
  assert_null(strstr(r.body, "MITRE"));
  /* Resolved: the case names the technique and the rule. */
  m = behaviour_msg("ja", "T1053.003");
  m.change = "resolved";
  assert_int_equal(render(&m, &r), 0);
  assert_non_null(strstr(r.body, "内容: cron による自動実行の設定\n"));
  /* A YARA incident is unchanged by a stray technique. */
  m = malware_msg("ja", "created");
  m.technique = "T1053.003";
  assert_int_equal(render(&m, &r), 0);
  assert_non_null(strstr(r.subject, "危険なファイルを検知しました"));
}

/* Every ATT&CK technique of the default behaviour rules has a title, an
 * explanation and what to do in both languages. */
static void test_technique_table(void **state) {
  (void)state;
  const char *src = getenv("YAMORI_SOURCE_DIR");
  assert_non_null(src);
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s/rules/sigma/linux", src);
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *de;
  unsigned files = 0, tags = 0;
  while ((de = readdir(d)) != NULL) {
    size_t n = strlen(de->d_name);
    if (n < 5 || strcmp(de->d_name + n - 4, ".yml") != 0)
      continue;
    char path[8192], text[65536];
    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t len = fread(text, 1, sizeof(text) - 1, fp);
    fclose(fp);
    text[len] = '\0';
    files++;
    for (const char *p = strstr(text, "attack.t"); p != NULL; p = strstr(p + 1, "attack.t")) {
      char id[16] = "T";
      size_t k = 1;
      for (const char *q = p + 8; k < sizeof(id) - 1 && ((*q >= '0' && *q <= '9') || *q == '.');)
        id[k++] = *q++;
      id[k] = '\0';
      const technique_t *t = technique_find(id);
      if (t == NULL || strcmp(t->id, id) != 0)
        fail_msg("%s: technique %s has no entry of its own", de->d_name, id);
      for (int l = 0; l < 2; l++)
        assert_true(t->title[l][0] && t->text[l][0] && t->todo[l][0]);
      tags++;
    }
  }
  closedir(d);
  assert_true(files >= 40);
  assert_true(tags >= files);
  size_t n = 0;
  const technique_t *all = technique_table(&n);
  assert_true(n >= 60);
  for (size_t i = 1; i < n; i++)
    assert_true(strcmp(all[i - 1].id, all[i].id) < 0);
  assert_string_equal(technique_find("T1053.003")->title[TECHNIQUE_JA],
                      "cron による自動実行の設定");
  assert_string_equal(technique_find("T1059.999")->id, "T1059");
  assert_null(technique_find("T9999"));
  assert_null(technique_find(NULL));
  assert_string_equal(technique_first("T9999,T1486")->id, "T1486");
  assert_null(technique_first(""));
  assert_int_equal(technique_lang("en"), TECHNIQUE_EN);
  assert_int_equal(technique_lang("fr"), TECHNIQUE_JA);
}

static void test_render_en(void **state) {
  (void)state;
  rendered_t r;
  notify_text_msg_t m = malware_msg("en", "created");
  m.company = "Globex";
  m.helpdesk = "Yamori help desk +81-3-0000-0000";
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(r.subject, "[Yamori] Dangerous file detected on PC \"pc-01\"");
  assert_true(strncmp(r.body, "Dear Globex,\n", 13) == 0);
  assert_non_null(strstr(r.body, "When: 2025-11-26 11:37 JST\n"));
  assert_non_null(strstr(r.body, "## What to do now\n1. Do not open the file."));
  assert_non_null(strstr(r.body, "Severity: high\n"));
  for (const unsigned char *p = (const unsigned char *)r.body; *p; p++)
    assert_true(*p < 0x80); /* nothing Japanese left in */
  m.change = "resolved";
  assert_int_equal(render(&m, &r), 0);
  assert_string_equal(r.subject, "[Yamori] The case on PC \"pc-01\" is resolved");
}

static void test_render_hostile(void **state) {
  (void)state;
  rendered_t r;
  notify_text_msg_t m = malware_msg("ja", "created");
  m.host = "evil\r\nBcc: x@evil.example\r\n<script>alert(1)</script>\xe2\x80\xae";
  m.file_path = "/tmp/a\nb\x01";
  char long_rule[2000];
  memset(long_rule, 'R', sizeof(long_rule) - 1);
  long_rule[sizeof(long_rule) - 1] = '\0';
  m.rule = long_rule;
  assert_int_equal(render(&m, &r), 0);
  assert_null(strchr(r.subject, '\n'));
  assert_null(strchr(r.subject, '\r'));
  assert_non_null(strstr(r.subject, "evil Bcc: x@evil.example <script>alert(1)</script>」"));
  assert_non_null(strstr(r.body, "ファイルの場所: /tmp/a b\n"));
  /* The rule is bounded. */
  const char *rule = strstr(r.body, "検知ルール: ");
  assert_non_null(rule);
  assert_true(strcspn(rule, "\n") <= strlen("検知ルール: ") + NOTIFY_TEXT_MAX);
  assert_null(strchr(r.body, '\r'));
}

/* ------------------------------------------------------------------ */
/* Message and signature                                                */

static void test_mail_build(void **state) {
  (void)state;
  ym_buf_t b;
  ym_buf_init(&b, 65536);
  const char *body = "こんにちは\n.\nline two\n";
  assert_int_equal(notify_text_mail("alerts@provider.example.jp", "owner@example.jp",
                                    "件名\r\nBcc: x@y.example", body, 42, 1764124646000, &b),
                   0);
  char *sep = strstr(b.data, "\r\n\r\n");
  assert_non_null(sep);
  *sep = '\0';
  /* Exactly these header lines (folded lines start with a space). */
  const char *names[] = {
      "From:",          "To:",           "Subject:",      "Date:",
      "Message-ID:",    "MIME-Version:", "Content-Type:", "Content-Transfer-Encoding:",
      "Auto-Submitted:"};
  size_t i = 0;
  for (char *line = b.data; line != NULL && *line;) {
    char *next = strstr(line, "\r\n");
    if (line[0] != ' ') {
      assert_true(i < sizeof(names) / sizeof(names[0]));
      assert_true(strncmp(line, names[i], strlen(names[i])) == 0);
      i++;
    }
    line = next != NULL ? next + 2 : NULL;
  }
  assert_int_equal(i, sizeof(names) / sizeof(names[0]));
  assert_non_null(strstr(b.data, "From: Yamori <alerts@provider.example.jp>\r\n"));
  assert_non_null(strstr(b.data, "Date: Wed, 26 Nov 2025 02:37:26 +0000\r\n"));
  assert_non_null(strstr(b.data, "Message-ID: <yamori.42.1764124646000@provider.example.jp>"));
  assert_null(strstr(b.data, "Bcc"));
  /* The body is base64 of the text with CRLF line ends. */
  char *text = sep + 4;
  char joined[4096] = "";
  size_t jl = 0;
  for (char *p = text; *p; p++)
    if (*p != '\r' && *p != '\n')
      joined[jl++] = *p;
  unsigned char out[4096];
  size_t n = b64_decode(joined, jl, out);
  out[n] = '\0';
  assert_string_equal((char *)out, "こんにちは\r\n.\r\nline two\r\n");
  ym_buf_free(&b);

  ym_buf_init(&b, 65536);
  assert_int_equal(notify_text_mail("alerts@provider.example.jp", "x@y.jp\r\nRCPT TO:<z@w.jp>", "s",
                                    "b", 1, 0, &b),
                   YM_EINVAL);
  ym_buf_free(&b);
}

static void test_sign(void **state) {
  (void)state;
  /* RFC 4231, test case 2. */
  char hex[65];
  const char *data = "what do ya want for nothing?";
  assert_int_equal(notify_sign("Jefe", data, strlen(data), hex), 0);
  assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* ------------------------------------------------------------------ */
/* The outbox on a real store                                           */

typedef struct {
  char dir[64];
  store_t *s;
} db_fixture_t;

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char path[512];
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

static int exec_fn(sqlite3 *db, void *arg) {
  char *err = NULL;
  int rc = sqlite3_exec(db, arg, NULL, NULL, &err);
  if (rc != SQLITE_OK)
    fprintf(stderr, "sql: %s\n", err);
  sqlite3_free(err);
  return rc == SQLITE_OK ? 0 : YM_EIO;
}

static void exec_sql(db_fixture_t *f, const char *sql) {
  assert_int_equal(store_sync_call(f->s, exec_fn, (void *)sql), 0);
}

typedef struct {
  const char *sql;
  int64_t v;
  char text[8192];
} query_t;

static int query_fn(sqlite3 *db, void *arg) {
  query_t *q = arg;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, q->sql, -1, &st, NULL) != SQLITE_OK)
    return YM_EIO;
  int rc = sqlite3_step(st) == SQLITE_ROW ? 0 : YM_ENOENT;
  if (rc == 0) {
    q->v = sqlite3_column_int64(st, 0);
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(q->text, sizeof(q->text), "%s", t != NULL ? (const char *)t : "");
  }
  sqlite3_finalize(st);
  return rc;
}

static query_t query(db_fixture_t *f, const char *sql) {
  query_t q = {.sql = sql};
  assert_int_equal(store_sync_call(f->s, query_fn, &q), 0);
  return q;
}

typedef struct {
  int64_t id;
  const char *change;
} enq_t;

static int enq_fn(sqlite3 *db, void *arg) {
  enq_t *e = arg;
  return notify_enqueue_db(db, e->id, e->change);
}

typedef struct {
  const char *agent, *path;
} resp_t;

static int resp_fn(sqlite3 *db, void *arg) {
  resp_t *r = arg;
  return notify_response_db(db, r->agent, r->path);
}

static int enqueue(db_fixture_t *f, int64_t id, const char *change) {
  enq_t e = {id, change};
  return store_sync_call(f->s, enq_fn, &e);
}

static int db_setup(void **state) {
  db_fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  snprintf(f->dir, sizeof(f->dir), "/tmp/ym-notify-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(store_open(f->dir, NULL, &f->s), 0);
  assert_int_equal(incidents_schema(f->s), 0);
  assert_int_equal(notify_schema(f->s), 0);
  int64_t id;
  assert_int_equal(store_sync_tenant_add(f->s, "acme", "アクメ", &id), 0);
  assert_int_equal(store_sync_tenant_add(f->s, "quiet", "Quiet", &id), 0);
  exec_sql(
      f,
      "INSERT INTO agents(id, tenant_id, host_name, secret_hash, enrolled_at)"
      " VALUES('00000001-0000-4000-8000-000000000000', 1, 'pc-01', zeroblob(32), 0),"
      " ('00000002-0000-4000-8000-000000000000', 2, 'pc-q', zeroblob(32), 0);"
      "INSERT INTO tenant_settings(tenant_id, lang, emails, webhook_url)"
      " VALUES(1, 'ja', '[\"a@example.jp\", \"b@example.jp\", \"bad\\r\\n@x\","
      " \"a@example.jp\"]', 'https://hooks.example.jp/x?token=1');"
      "INSERT INTO incidents(tenant_id, agent_id, kind, rule, title, first_ms, last_ms,"
      " file_path, updated_ms, alert_json)"
      " VALUES(1, '00000001-0000-4000-8000-000000000000', 'malware', 'R', 'T',"
      " 1000000, 1000000, '/tmp/evil', 1000000, '{\"event\":{\"action\":\"malware-detected\"}}'),"
      " (1, '00000001-0000-4000-8000-000000000000', 'malware', 'R2', 'T2',"
      " 2000000, 2000000, '/usr/bin/evil', 2000000, '{\"event\":{\"action\":\"exec-denied\"}}'),"
      " (2, '00000002-0000-4000-8000-000000000000', 'silent', '', '',"
      " 3000000, 3000000, '', 3000000, '{}');");
  exec_sql(f, "INSERT INTO incidents(tenant_id, agent_id, kind, rule, title, first_ms, last_ms,"
              " file_path, updated_ms, alert_json, ruleset, technique)"
              " VALUES(1, '00000001-0000-4000-8000-000000000000', 'malware',"
              " '7c1b2a3d-0000-4000-8000-000000000001', 'Cron job file written', 4000000,"
              " 4000000, '/etc/cron.d/x', 4000000, '{}', 'sigma', 'T1053.003,T1059.004')");
  *state = f;
  return 0;
}

static int db_teardown(void **state) {
  db_fixture_t *f = *state;
  store_close(f->s);
  remove_dir(f->dir);
  free(f);
  return 0;
}

/* A behaviour incident's e-mail speaks Japanese about the technique; its
 * webhook names the ruleset and the techniques with their titles. */
static void test_enqueue_behaviour(void **state) {
  db_fixture_t *f = *state;
  assert_int_equal(enqueue(f, 4, "created"), 0);
  query_t q = query(f, "SELECT subject FROM notify_outbox WHERE incident_id = 4"
                       " AND channel = 'email' LIMIT 1");
  assert_string_equal(
      q.text, "【Yamori】PC「pc-01」で不審な動きを検知しました（cron による自動実行の設定）");
  q = query(f,
            "SELECT body FROM notify_outbox WHERE incident_id = 4 AND channel = 'email' LIMIT 1");
  assert_non_null(strstr(q.text, "検知ルール: Cron job file written\n"));
  assert_non_null(strstr(q.text, "T1053.003,T1059.004"));
  q = query(f, "SELECT json_extract(payload_json, '$.incident.ruleset') || ' ' ||"
               " json_extract(payload_json, '$.incident.techniques[1].id') || ' ' ||"
               " json_extract(payload_json, '$.incident.techniques[0].title')"
               " FROM notify_outbox WHERE incident_id = 4 AND channel = 'webhook'");
  assert_string_equal(q.text, "sigma T1059.004 cron による自動実行の設定");
}

static void test_enqueue(void **state) {
  db_fixture_t *f = *state;
  assert_int_equal(enqueue(f, 1, "created"), 0);
  /* Two valid distinct addresses (the repeated one once), the invalid one
   * recorded as failed without a message, and the webhook. */
  assert_int_equal(query(f, "SELECT count(*) FROM notify_outbox").v, 4);
  assert_int_equal(
      query(f, "SELECT count(*) FROM notify_outbox WHERE channel = 'email' AND state = 'pending'")
          .v,
      2);
  query_t bad = query(f, "SELECT recipient || '|' || last_error || '|' || body FROM notify_outbox"
                         " WHERE state = 'failed'");
  assert_string_equal(bad.text, "bad @x|not a valid e-mail address|");
  assert_int_equal(enqueue(f, 1, "created"), 0);
  assert_int_equal(query(f, "SELECT count(*) FROM notify_outbox").v, 4);
  assert_int_equal(enqueue(f, 1, "acknowledged"), 0);
  assert_int_equal(query(f, "SELECT count(*) FROM notify_outbox").v, 8);
  assert_int_equal(enqueue(f, 1, "bogus"), YM_EINVAL);
  assert_int_equal(enqueue(f, 99, "created"), YM_ENOENT);
  /* A tenant without recipients: nothing, and no error. */
  assert_int_equal(enqueue(f, 3, "created"), 0);
  assert_int_equal(query(f, "SELECT count(*) FROM notify_outbox WHERE tenant_id = 2").v, 0);

  query_t q = query(f, "SELECT subject FROM notify_outbox WHERE id = 1");
  assert_string_equal(q.text, "【Yamori】PC「pc-01」で危険なファイルを検知しました");
  q = query(f, "SELECT body FROM notify_outbox WHERE id = 1");
  assert_non_null(strstr(q.text, "このファイルは開かないでください"));
  q = query(f, "SELECT state || attempts FROM notify_outbox WHERE id = 1");
  assert_string_equal(q.text, "pending0");

  /* The webhook payload is stable JSON. */
  q = query(f, "SELECT json_extract(payload_json, '$.incident.id') || ' ' ||"
               " json_extract(payload_json, '$.host.name') || ' ' ||"
               " json_extract(payload_json, '$.change') FROM notify_outbox"
               " WHERE channel = 'webhook' AND change = 'created'");
  assert_string_equal(q.text, "1 pc-01 created");

  /* A quarantine of the file by the agent: the text says it was isolated. */
  exec_sql(f, "INSERT INTO events(tenant_id, agent_id, stream, seq, ts_ms, received_ms, kind,"
              " dataset, action, json) VALUES(1, '00000001-0000-4000-8000-000000000000',"
              " 'alerts', 1, 1000500, 1000500, 'event', 'yamori.response', 'quarantine',"
              " '{\"event\":{\"outcome\":\"success\"},\"file\":{\"path\":\"/tmp/evil\"}}')");
  assert_int_equal(enqueue(f, 1, "reopened"), 0);
  q = query(f, "SELECT body FROM notify_outbox WHERE change = 'reopened' AND channel = 'email'");
  assert_non_null(strstr(q.text, "自動的に隔離しました"));
  /* A quarantine reported after the alert: the waiting messages are
   * rendered again. */
  exec_sql(f, "DELETE FROM notify_outbox WHERE change = 'reopened';"
              "DELETE FROM events;"
              /* id 1 is being sent: claimed, due again in 20 minutes */
              "UPDATE notify_outbox SET next_at_ms = unixepoch() * 1000 + 1200000 WHERE id = 1");
  assert_int_equal(enqueue(f, 1, "reopened"), 0);
  q = query(f, "SELECT body FROM notify_outbox WHERE change = 'reopened' AND channel = 'email'");
  assert_non_null(strstr(q.text, "このファイルは開かないでください"));
  assert_true(query(f, "SELECT min(next_at_ms) FROM notify_outbox WHERE change = 'reopened'"
                       " AND state = 'pending'")
                  .v >
              query(f, "SELECT max(created_ms) FROM notify_outbox WHERE change = 'reopened'").v);
  exec_sql(
      f,
      "INSERT INTO events(tenant_id, agent_id, stream, seq, ts_ms, received_ms, kind,"
      " dataset, action, json) VALUES(1, '00000001-0000-4000-8000-000000000000',"
      " 'alerts', 1, 1000500, 1000500, 'event', 'yamori.response', 'quarantine',"
      " '{\"event\":{\"outcome\":\"success\"},\"file\":{\"path\":\"/tmp/evil\"}}');"
      "UPDATE notify_outbox SET state = 'sent' WHERE change = 'reopened' AND channel = 'webhook'");
  resp_t rsp = {"00000001-0000-4000-8000-000000000000", "/tmp/evil"};
  assert_int_equal(store_sync_call(f->s, resp_fn, &rsp), 0);
  q = query(f, "SELECT body FROM notify_outbox WHERE change = 'reopened' AND channel = 'email'");
  assert_non_null(strstr(q.text, "自動的に隔離しました"));
  q = query(f, "SELECT json_extract(payload_json, '$.incident.file_action') FROM notify_outbox"
               " WHERE change = 'reopened' AND channel = 'webhook'");
  assert_string_equal(q.text, "unknown"); /* already sent: left as it went */
  /* The other waiting message of the first detection too, but not the one
   * being sent (claimed: due much later). */
  q = query(f, "SELECT body FROM notify_outbox WHERE id = 2");
  assert_non_null(strstr(q.text, "自動的に隔離しました"));
  q = query(f, "SELECT body FROM notify_outbox WHERE id = 1");
  assert_non_null(strstr(q.text, "このファイルは開かないでください"));

  /* A denied program start: the text says it was stopped. */
  assert_int_equal(enqueue(f, 2, "created"), 0);
  q = query(f, "SELECT body FROM notify_outbox WHERE incident_id = 2 AND channel = 'email'");
  assert_non_null(strstr(q.text, "起動しようとしたところを止めました"));

  /* The link uses the console URL once it is known. */
  assert_int_equal(notify_sync_console_url(f->s, "https://console.example.jp:8443/"), 0);
  assert_int_equal(enqueue(f, 2, "resolved"), 0);
  q = query(f, "SELECT body FROM notify_outbox WHERE incident_id = 2 AND change = 'resolved'"
               " AND channel = 'email'");
  assert_non_null(strstr(q.text, "https://console.example.jp:8443/#/incidents/2\n"));
  assert_int_equal(notify_sync_console_url(f->s, "javascript:alert(1)"), YM_EINVAL);
}

static void test_settings(void **state) {
  db_fixture_t *f = *state;
  const char *bad = NULL;
  notify_settings_t set = {
      .lang = "en", .emails = " x@example.com ,y@example.com", .helpdesk = "HD"};
  assert_int_equal(notify_sync_settings(f->s, "quiet", &set, &bad), 0);
  query_t q = query(f, "SELECT lang || ' ' || emails FROM tenant_settings WHERE tenant_id = 2");
  assert_string_equal(q.text, "en [\"x@example.com\",\"y@example.com\"]");
  q = query(f, "SELECT helpdesk FROM tenants WHERE id = 2");
  assert_string_equal(q.text, "HD");
  notify_settings_t bad_set = {.emails = "x@example.com,evil\r\n@x"};
  assert_int_equal(notify_sync_settings(f->s, "quiet", &bad_set, &bad), YM_EINVAL);
  assert_string_equal(bad, "emails");
  notify_settings_t bad_lang = {.lang = "fr"};
  assert_int_equal(notify_sync_settings(f->s, "quiet", &bad_lang, &bad), YM_EINVAL);
  notify_settings_t bad_hook = {.webhook_url = "ftp://x"};
  assert_int_equal(notify_sync_settings(f->s, "quiet", &bad_hook, &bad), YM_EINVAL);
  assert_int_equal(notify_sync_settings(f->s, "nobody", &set, &bad), YM_ENOENT);
  int n = 0;
  assert_int_equal(notify_sync_test(f->s, "quiet", &n), 0);
  assert_int_equal(n, 2);
  q = query(f, "SELECT subject FROM notify_outbox WHERE change = 'test' LIMIT 1");
  assert_string_equal(q.text, "[Yamori] Test notification");
}

typedef struct {
  int64_t now;
  int deleted;
} prune_t;

static int prune_fn(sqlite3 *db, void *arg) {
  prune_t *p = arg;
  return notify_prune_db(db, p->now, &p->deleted);
}

/* Old sent and failed messages go after the tenant's retention; pending
 * ones stay. */
static void test_prune(void **state) {
  db_fixture_t *f = *state;
  assert_int_equal(enqueue(f, 1, "created"), 0); /* 2 pending, 1 failed, 1 webhook */
  exec_sql(f, "UPDATE notify_outbox SET created_ms = 1000;"
              "UPDATE notify_outbox SET state = 'sent' WHERE recipient = 'a@example.jp'");
  int64_t now = 1000 + 91LL * 86400000;
  exec_sql(f, "UPDATE tenant_settings SET retention_days = 200 WHERE tenant_id = 1");
  prune_t p = {now, -1};
  assert_int_equal(store_sync_call(f->s, prune_fn, &p), 0);
  assert_int_equal(p.deleted, 0); /* kept for 200 days */
  exec_sql(f, "UPDATE tenant_settings SET retention_days = 90 WHERE tenant_id = 1");
  assert_int_equal(store_sync_call(f->s, prune_fn, &p), 0);
  assert_int_equal(p.deleted, 2);
  assert_int_equal(query(f, "SELECT count(*) FROM notify_outbox WHERE state = 'pending'").v, 2);
  assert_int_equal(query(f, "SELECT count(*) FROM notify_outbox").v, 2);
}

/* Options are checked before anything starts; a sender stops cleanly. */
static void test_new_options(void **state) {
  (void)state;
  char dir[64];
  snprintf(dir, sizeof(dir), "/tmp/ym-notify-XXXXXX");
  assert_non_null(mkdtemp(dir));
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  store_t *s = NULL;
  assert_int_equal(store_open(dir, &loop, &s), 0);
  assert_int_equal(incidents_schema(s), 0);
  assert_int_equal(notify_schema(s), 0);
  notify_t *n = NULL;
  const notify_opts_t bad[] = {
      {.smtp_url = "http://mail.example.jp", .smtp_from = "a@example.jp"},
      {.smtp_url = "smtp://mail.example.jp"}, /* no sender */
      {.smtp_url = "smtp://user:secret@mail.example.jp", .smtp_from = "a@example.jp"},
      {.smtp_url = "smtp://mail.example.jp\r\nQUIT", .smtp_from = "a@example.jp"},
      {.smtp_url = "smtp://mail.example.jp", .smtp_from = "a@example.jp\r\nX: y"},
      {.console_url = "javascript:alert(1)"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(notify_new(&loop, s, &bad[i], &n), YM_EINVAL);
    assert_null(n);
  }
  notify_opts_t good = {.smtp_url = "smtps://mail.example.jp:465",
                        .smtp_from = "alerts@example.jp",
                        .smtp_user = "u",
                        .smtp_password = "p",
                        .console_url = "https://console.example.jp:8443"};
  assert_int_equal(notify_new(&loop, s, &good, &n), 0);
  assert_non_null(n);
  uv_run(&loop, UV_RUN_NOWAIT);
  notify_free(n);
  notify_free(NULL);
  uv_run(&loop, UV_RUN_DEFAULT); /* the sender's last callbacks */
  store_close(s);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  remove_dir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clean),
      cmocka_unit_test(test_header_subject),
      cmocka_unit_test(test_email_valid),
      cmocka_unit_test(test_render_ja_malware),
      cmocka_unit_test(test_render_changes),
      cmocka_unit_test(test_render_en),
      cmocka_unit_test(test_render_behaviour),
      cmocka_unit_test(test_technique_table),
      cmocka_unit_test(test_render_hostile),
      cmocka_unit_test(test_mail_build),
      cmocka_unit_test(test_sign),
      cmocka_unit_test_setup_teardown(test_enqueue, db_setup, db_teardown),
      cmocka_unit_test_setup_teardown(test_enqueue_behaviour, db_setup, db_teardown),
      cmocka_unit_test_setup_teardown(test_settings, db_setup, db_teardown),
      cmocka_unit_test_setup_teardown(test_prune, db_setup, db_teardown),
      cmocka_unit_test(test_new_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
