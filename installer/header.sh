#!/bin/sh
# Yamori installer (yamori-installer v1).
#
# This file is a POSIX shell script followed by a gzip-compressed tar
# archive (the payload) and, in a company's own copy, a short configuration
# block (the console's enrollment token and help desk contact). Run it as
# root: `sh yamori-installer.run` (or double-click it on a desktop).
# `sh yamori-installer.run --help` lists the options.
#
# The two numbers below are filled in when the file is built; they give the
# exact size of this script and of the archive, so the configuration block
# is whatever follows them.
YM_HEADER_SIZE=0000000000
YM_PAYLOAD_SIZE=0000000000
YM_VERSION="@VERSION@"
YM_ARCH="@ARCH@"
YM_DEPS="@DEPS@"
# Without their leading zeros (which sh would read as octal).
YM_HEADER_SIZE=${YM_HEADER_SIZE#"${YM_HEADER_SIZE%%[!0]*}"}
YM_PAYLOAD_SIZE=${YM_PAYLOAD_SIZE#"${YM_PAYLOAD_SIZE%%[!0]*}"}

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022

OPT=/opt/yamori
ETC=/etc/yamori
STATE=/var/lib/yamori
UNIT=/etc/systemd/system/yamori.service
CONF=$ETC/agent.json

# ------------------------------------------------------------------
# Words (English and Japanese by LANG)

LANG_JA=0
case "${LC_ALL:-${LC_MESSAGES:-${LANG:-}}}" in ja*) LANG_JA=1 ;; esac

# t KEY: the message KEY in the user's language.
t() {
  if [ "$LANG_JA" = 1 ]; then
    case "$1" in
    title) printf '%s' "Yamori インストーラー $YM_VERSION" ;;
    welcome) printf '%s' "このパソコンに Yamori（エンドポイント保護）をインストールします。パソコンのファイルとプログラムの動きを見守り、不審なものを止め、セキュリティ担当者のコンソール（$YM_URL）に知らせます。" ;;
    what) printf '%s' "インストールするもの:
  - 監視プログラム yamorid と管理コマンド yamorictl（/opt/yamori）
  - 検知ルール（YARA）
  - 自動起動の設定（systemd の yamori.service）
  - 設定 /etc/yamori と状態 /var/lib/yamori" ;;
    ask_continue) printf '%s' "続けますか？ [Y/n] " ;;
    ask_token) printf '%s' "登録トークン（ymt1. で始まる文字列）を貼り付けてください: " ;;
    cancelled) printf '%s' "中止しました。何も変更していません。" ;;
    step_check) printf '%s' "このパソコンと接続を確認しています" ;;
    step_deps) printf '%s' "必要なライブラリを追加しています（apt-get）" ;;
    step_files) printf '%s' "ファイルをインストールしています" ;;
    step_enroll) printf '%s' "コンソールに登録しています" ;;
    step_start) printf '%s' "保護を開始しています" ;;
    step_wait) printf '%s' "コンソールへの接続を待っています" ;;
    done) printf '%s' "このパソコンは保護されています。" ;;
    done_sub) printf '%s' "Yamori が動作し、コンソールに接続しました。" ;;
    helpdesk) printf '%s' "お問い合わせ先: " ;;
    failed) printf '%s' "インストールできませんでした: " ;;
    nochange) printf '%s' "このパソコンには何も変更していません。" ;;
    uninstalled) printf '%s' "Yamori をアンインストールしました。" ;;
    purged) printf '%s' "設定と状態（検疫したファイルを含む）も削除しました。" ;;
    kept) printf '%s' "設定（/etc/yamori）と状態（/var/lib/yamori）は残しています。削除するには --uninstall --purge を使ってください。" ;;
    ask_uninstall) printf '%s' "Yamori をアンインストールしますか？ このパソコンは保護されなくなります。 [y/N] " ;;
    not_root) printf '%s' "管理者（root）として実行してください（例: sudo sh $YM_SELF）。" ;;
    no_systemd) printf '%s' "このシステムは systemd で起動していません。Yamori は systemd が必要です。" ;;
    no_token) printf '%s' "登録トークンがありません。コンソールからこの会社専用のインストーラーをダウンロードするか、--token を指定してください。" ;;
    bad_token) printf '%s' "登録トークンの形式が正しくありません（ymt1. で始まる文字列全体をコピーしてください）。" ;;
    disk) printf '%s' "ディスクの空きが足りません" ;;
    no_tty) printf '%s' "対話に使える端末がありません。一括導入では --silent --token TOKEN を使ってください。" ;;
    arch) printf '%s' "このインストーラーは $YM_ARCH 用です。このパソコンは" ;;
    dns_fail) printf '%s' "コンソールの名前を引けません（DNS）: " ;;
    tcp_fail) printf '%s' "コンソールに接続できません（ファイアウォールまたはコンソール停止）: " ;;
    no_apt) printf '%s' "必要なライブラリがなく、apt-get もありません: " ;;
    apt_fail) printf '%s' "必要なライブラリを apt-get で追加できませんでした: " ;;
    start_fail) printf '%s' "サービス yamori を開始できませんでした（journalctl -u yamori を確認してください）。" ;;
    wait_fail) printf '%s' "エージェントは動いていますが、コンソールへの接続をまだ確認できません: " ;;
    enroll_fail) printf '%s' "コンソールへの登録に失敗しました: " ;;
    report) printf '%s' "診断結果" ;;
    check_ok) printf '%s' "問題は見つかりませんでした。インストールできます。" ;;
    check_bad) printf '%s' "インストールの前に解決が必要な問題があります。" ;;
    press_enter) printf '%s' "Enter キーで閉じます。" ;;
    *) printf '%s' "$1" ;;
    esac
  else
    case "$1" in
    title) printf '%s' "Yamori installer $YM_VERSION" ;;
    welcome) printf '%s' "This installs Yamori endpoint protection on this PC. It watches file and program activity, stops malicious programs and files, and reports to your security provider's console ($YM_URL)." ;;
    what) printf '%s' "What will be installed:
  - the agent yamorid and the command yamorictl (/opt/yamori)
  - the detection rules (YARA)
  - the start-up service (systemd: yamori.service)
  - configuration in /etc/yamori and state in /var/lib/yamori" ;;
    ask_continue) printf '%s' "Continue? [Y/n] " ;;
    ask_token) printf '%s' "Paste the enrollment token (it starts with ymt1.): " ;;
    cancelled) printf '%s' "Cancelled. Nothing was changed." ;;
    step_check) printf '%s' "Checking this PC and the connection" ;;
    step_deps) printf '%s' "Adding the libraries Yamori needs (apt-get)" ;;
    step_files) printf '%s' "Installing the files" ;;
    step_enroll) printf '%s' "Registering this PC with the console" ;;
    step_start) printf '%s' "Starting protection" ;;
    step_wait) printf '%s' "Waiting for the console to see this PC" ;;
    done) printf '%s' "This PC is protected." ;;
    done_sub) printf '%s' "Yamori is running and connected to the console." ;;
    helpdesk) printf '%s' "Help desk: " ;;
    failed) printf '%s' "Installation failed: " ;;
    nochange) printf '%s' "Nothing was changed on this PC." ;;
    uninstalled) printf '%s' "Yamori was uninstalled." ;;
    purged) printf '%s' "Its configuration and state (quarantined files too) were removed." ;;
    kept) printf '%s' "The configuration (/etc/yamori) and state (/var/lib/yamori) were kept; --uninstall --purge removes them." ;;
    ask_uninstall) printf '%s' "Uninstall Yamori? This PC will no longer be protected. [y/N] " ;;
    not_root) printf '%s' "Run the installer as root (for example: sudo sh $YM_SELF)." ;;
    no_systemd) printf '%s' "This system was not started by systemd; Yamori needs systemd." ;;
    no_token) printf '%s' "No enrollment token: download your company's installer from the console, or give --token." ;;
    bad_token) printf '%s' "The enrollment token is malformed (copy the whole text that starts with ymt1.)." ;;
    disk) printf '%s' "Not enough free disk space" ;;
    no_tty) printf '%s' "No terminal to ask questions on: for mass deployment use --silent --token TOKEN." ;;
    arch) printf '%s' "This installer is for $YM_ARCH; this PC is" ;;
    dns_fail) printf '%s' "Cannot find the console's address (DNS): " ;;
    tcp_fail) printf '%s' "Cannot connect to the console (a firewall blocks it, or the console is down): " ;;
    no_apt) printf '%s' "Libraries Yamori needs are missing and apt-get is not available: " ;;
    apt_fail) printf '%s' "Cannot add the libraries Yamori needs with apt-get: " ;;
    start_fail) printf '%s' "The yamori service did not start (see journalctl -u yamori)." ;;
    wait_fail) printf '%s' "The agent runs, but the console has not confirmed this PC yet: " ;;
    enroll_fail) printf '%s' "Registration with the console failed: " ;;
    report) printf '%s' "Diagnosis" ;;
    check_ok) printf '%s' "No problem found: Yamori can be installed." ;;
    check_bad) printf '%s' "Problems must be solved before installing." ;;
    press_enter) printf '%s' "Press Enter to close." ;;
    *) printf '%s' "$1" ;;
    esac
  fi
}

# ------------------------------------------------------------------
# Output: silent lines, a terminal wizard, or zenity dialogs

UI=text          # text, zenity or silent
YM_SELF=$0
TMP=""
PROGRESS_FD=""
STEP=0
STEPS=6

say() { printf '%s\n' "$*"; }
err() { printf '%s\n' "$*" >&2; }

# Closes the progress dialog, if one is open.
progress_close() {
  if [ -n "$PROGRESS_FD" ]; then
    exec 3>&-
    PROGRESS_FD=""
    [ -n "${PROGRESS_PID:-}" ] && wait "$PROGRESS_PID" 2>/dev/null
  fi
}

cleanup() {
  progress_close
  [ -n "$TMP" ] && rm -rf "$TMP"
  TMP=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# die MESSAGE: shows the failure and exits 1.
die() {
  progress_close
  if [ "$UI" = zenity ]; then
    zenity --error --title "$(t title)" --no-wrap --text "$(t failed)$1" 2>/dev/null
  fi
  err "yamori-installer: $(t failed)$1"
  exit 1
}

# refuse MESSAGE: a preflight failure (exit 2): nothing was changed.
refuse() {
  progress_close
  if [ "$UI" = zenity ]; then
    zenity --error --title "$(t title)" --no-wrap --text "$1

$(t nochange)" 2>/dev/null
  fi
  err "yamori-installer: $1"
  err "yamori-installer: $(t nochange)"
  exit 2
}

# step KEY: announces the next step of the installation.
step() {
  STEP=$((STEP + 1))
  case "$UI" in
  silent)
    el=""
    [ -n "${T0:-}" ] && el=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf " (%.1f s)", b - a}')
    say "yamori-installer: [$STEP/$STEPS]$el $(t "$1")"
    ;;
  text) say "[$STEP/$STEPS] $(t "$1") ..." ;;
  zenity)
    if [ -n "$PROGRESS_FD" ]; then
      printf '%s\n# %s\n' "$((STEP * 100 / (STEPS + 1)))" "$(t "$1")" >&3 2>/dev/null
    fi
    ;;
  esac
}

# ask_yes PROMPT DEFAULT(y|n): true for yes. Silent mode answers yes.
ask_yes() {
  case "$UI" in
  silent) return 0 ;;
  zenity)
    zenity --question --title "$(t title)" --width 480 --text "$1" 2>/dev/null
    return $?
    ;;
  esac
  printf '%s' "$1"
  read -r ans || ans=""
  case "$ans" in
  [yYjJ]*) return 0 ;;
  [nN]*) return 1 ;;
  "") [ "$2" = y ] ;;
  *) return 1 ;;
  esac
}

usage() {
  cat <<EOF
Usage: sh $YM_SELF [OPTIONS]

Installs Yamori endpoint protection $YM_VERSION on this PC, registers it with
the console and starts it. Run as root. A company's own installer from the
console needs no option at all.

Options:
  --silent          no questions (mass deployment); the token must be embedded
                    or given with --token / YAMORI_TOKEN
  --token TOKEN     the enrollment token (also: environment YAMORI_TOKEN)
  --server URL      the console's URL (also: YAMORI_SERVER); must match the
                    token's, which carries it
  --helpdesk TEXT   the help desk contact shown at the end
  --check           check this PC and the connection only, change nothing
  --uninstall       remove Yamori (configuration and state are kept)
  --purge           with --uninstall: also remove configuration and state,
                    quarantined files included
  --text            ask in the terminal even when a desktop is available
  --no-wait         do not wait for the console to see this PC
  --extract DIR     unpack the payload into DIR and exit
  -h, --help        show this help

Exit status: 0 done, 1 failed, 2 a check failed before any change, 64 usage.
EOF
}

# ------------------------------------------------------------------
# The file itself: payload and configuration block

# Prints the configuration block (the bytes after the payload), if any.
config_block() {
  total=$(wc -c <"$YM_SELF" 2>/dev/null) || return 1
  rest=$((total - YM_HEADER_SIZE - YM_PAYLOAD_SIZE))
  [ "$rest" -gt 0 ] && [ "$rest" -le 16384 ] || return 1
  tail -c "$rest" "$YM_SELF"
}

# config_get NAME: the value of NAME=... in the configuration block.
config_get() {
  config_block | sed -n "/^#yamori-config-v1\$/,/^#yamori-config-end\$/s/^$1=//p" | head -n 1
}

# extract DIR: unpacks the payload into DIR.
extract() {
  mkdir -p "$1" || return 1
  tail -c +"$((YM_HEADER_SIZE + 1))" "$YM_SELF" | head -c "$YM_PAYLOAD_SIZE" |
    gzip -dc | tar -x -C "$1" -f - || return 1
  [ -x "$1/bin/yamorid" ] && [ -x "$1/bin/yamorictl" ]
}

# token_url TOKEN: the console URL inside a token (the JSON's "url").
token_url() {
  b=${1#ymt1.}
  pad=$(((4 - ${#b} % 4) % 4))
  [ "$pad" = 3 ] && return 1
  p=""
  [ "$pad" -ge 1 ] && p="="
  [ "$pad" -ge 2 ] && p="=="
  printf '%s%s' "$b" "$p" | tr '_-' '/+' | base64 -d 2>/dev/null |
    sed -n 's/.*"url"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p'
}

valid_token() {
  case "$1" in
  ymt1.*) ;;
  *) return 1 ;;
  esac
  rest=${1#ymt1.}
  [ -n "$rest" ] && [ "${#1}" -le 4096 ] || return 1
  case "$rest" in *[!A-Za-z0-9_-]*) return 1 ;; esac
  [ -n "$(token_url "$1")" ]
}

# ------------------------------------------------------------------
# Preflight

PF_FAIL=0
PF_REPORT=""

# pf STATUS NAME MESSAGE: records one check.
pf() {
  PF_REPORT="$PF_REPORT$1	$2	$3
"
  [ "$1" = fail ] && PF_FAIL=$((PF_FAIL + 1))
  return 0
}

# Checks that need no payload: root, systemd, architecture, disk.
preflight_local() {
  if [ "$(id -u)" != 0 ]; then
    pf fail root "$(t not_root)"
  else
    pf ok root "running as root"
  fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    pf ok systemd "systemd $(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')"
  else
    pf fail systemd "$(t no_systemd)"
  fi
  m=$(uname -m)
  case "$m" in
  x86_64) m=amd64 ;;
  aarch64) m=arm64 ;;
  esac
  if [ "$m" = "$YM_ARCH" ]; then
    pf ok arch "$m"
  else
    pf fail arch "$(t arch) $m."
  fi
  for d in /opt /var/lib; do
    free=$(df -Pk "$d" 2>/dev/null | awk 'NR==2 {print $4}')
    if [ -n "$free" ] && [ "$free" -lt 102400 ]; then
      pf fail disk "$(t disk): $d $((free / 1024)) MB (100 MB)"
    else
      pf ok disk "$d: $((${free:-0} / 1024)) MB free"
    fi
  done
  kv=$(uname -r)
  if [ -d /proc/sys/fs/fanotify ] || [ -e /proc/sys/fs/fanotify/max_user_groups ]; then
    pf ok kernel "Linux $kv with fanotify"
  else
    pf warn kernel "Linux $kv: /proc/sys/fs/fanotify is missing (fanotify may be unavailable)"
  fi
}

# Other software using the same kernel interfaces (advice, never a failure).
preflight_compat() {
  found=""
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    comm=$(cat "$p/comm" 2>/dev/null) || continue
    case "$comm" in
    yamorid | yamori-launche*) continue ;;
    esac
    if grep -qs '^fanotify' "$p"/fdinfo/* 2>/dev/null; then
      case " $found " in *" $comm "*) ;; *) found="$found $comm" ;; esac
    fi
  done
  if [ -n "$found" ]; then
    pf warn fanotify_users "other programs watch files through fanotify:$found (both work; each adds cost to file access)"
  else
    pf ok fanotify_users "no other program watches files through fanotify"
  fi
  if grep -qsx clamonacc /proc/[0-9]*/comm; then
    pf warn clamav "ClamAV on-access scanning (clamonacc) runs: programs may be scanned twice; exclude /var/lib/yamori from it"
  fi
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet fapolicyd 2>/dev/null; then
    pf warn fapolicyd "fapolicyd runs: it also decides on program starts; allow /opt/yamori in its rules"
  fi
  if command -v auditctl >/dev/null 2>&1; then
    n=$(auditctl -l 2>/dev/null | grep -cv '^No rules')
    [ "${n:-0}" -gt 0 ] && pf warn audit "$n audit rules are loaded: their events add cost to the same activity Yamori watches"
  fi
  return 0
}

# Shell-level DNS and TCP checks, used before libraries are added (so a
# console that cannot be reached is found before anything is changed).
preflight_net_shell() {
  url=$1
  hp=${url#https://}
  hp=${hp%%/*}
  case "$hp" in
  \[*) host=${hp#[}; host=${host%%]*}; port=${hp##*]:}; [ "$port" = "$hp" ] && port=443 ;;
  *:*) host=${hp%%:*}; port=${hp##*:} ;;
  *) host=$hp; port=443 ;;
  esac
  addr=$(getent ahosts "$host" 2>/dev/null | awk 'NR==1 {print $1}')
  if [ -z "$addr" ]; then
    pf fail dns "$(t dns_fail)$host"
    return 1
  fi
  pf ok dns "$host is $addr"
  if command -v bash >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then
    if timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$addr" "$port" 2>/dev/null; then
      pf ok tcp "connected to $addr port $port"
    else
      pf fail tcp "$(t tcp_fail)$addr port $port"
      return 1
    fi
  fi
  return 0
}

# The libraries the programs need, added with apt-get when missing.
deps_missing() {
  ldd "$TMP/bin/yamorid" "$TMP/bin/yamorictl" 2>/dev/null | grep -q 'not found'
}

deps_install() {
  command -v apt-get >/dev/null 2>&1 || return 2
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  if ! apt-get install -y -q --no-install-recommends $YM_DEPS >"$TMP/apt.log" 2>&1; then
    apt-get update -q >>"$TMP/apt.log" 2>&1
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $YM_DEPS >>"$TMP/apt.log" 2>&1 || return 1
  fi
  ! deps_missing
}

# Runs the agent's own preflight (kernel interfaces, DNS, TCP, TLS with the
# pin, clock) and records its lines.
preflight_agent() {
  if [ -n "$TOKEN" ] && valid_token "$TOKEN"; then
    out=$(YAMORI_TOKEN="$TOKEN" "$TMP/bin/yamorictl" preflight 2>&1)
  elif [ -z "$TOKEN" ] && enrolled; then
    # Repair: the console this PC is enrolled with.
    out=$("$TMP/bin/yamorictl" preflight --server "$(identity_field url)" \
      --pin "$(identity_field pin)" 2>&1)
  else
    out=$("$TMP/bin/yamorictl" preflight 2>&1)
  fi
  rc=$?
  old_ifs=$IFS
  IFS='
'
  for line in $out; do
    IFS='	' read -r name status msg <<EOF
$line
EOF
    case "$status" in
    ok | warn | fail) pf "$status" "$name" "$msg" ;;
    *) pf fail preflight "$line" ;;
    esac
  done
  IFS=$old_ifs
  [ "$rc" = 0 ] || [ "$PF_FAIL" -gt 0 ] || pf fail preflight "yamorictl preflight exited $rc"
}

# Prints the recorded checks.
print_report() {
  printf '%s' "$PF_REPORT" | while IFS='	' read -r status name msg; do
    [ -n "$status" ] || continue
    case "$status" in
    ok) mark="  ok  " ;;
    warn) mark=" WARN " ;;
    *) mark=" FAIL " ;;
    esac
    printf '[%s] %-15s %s\n' "$mark" "$name" "$msg"
  done
}

# The first failure's message. In Japanese, the checks made by yamorictl
# (whose lines are English) get a Japanese summary in front.
first_failure() {
  line=$(printf '%s' "$PF_REPORT" | awk -F '	' '$1 == "fail" {print $2 "\t" $3; exit}')
  name=${line%%	*}
  msg=${line#*	}
  if [ "$LANG_JA" = 1 ]; then
    case "$name" in
    dns) msg="コンソールの名前を引けません（DNS）。ネットワークと DNS の設定を確認してください。 ($msg)" ;;
    tcp) msg="コンソールに接続できません。ファイアウォールで止められているか、コンソールが停止しています。 ($msg)" ;;
    tls) msg="コンソールとの暗号化通信を確認できません。証明書が一致しない場合は、社内のプロキシやセキュリティ機器が通信を検査（TLS-intercepting proxy）しています。コンソールの宛先を検査の対象外にしてください。 ($msg)" ;;
    clock) msg="このパソコンの時計がコンソールとずれています。日付と時刻を合わせてください。 ($msg)" ;;
    fanotify | proc_connector) msg="このパソコンの Linux カーネルには Yamori に必要な機能がありません。 ($msg)" ;;
    esac
  fi
  printf '%s\n' "$msg"
}

# ------------------------------------------------------------------
# Install

# The version that is installed now ("" none).
installed_version() {
  if [ -L "$OPT/current" ]; then
    v=$(readlink "$OPT/current")
    printf '%s' "${v##*/}"
  fi
}

# Writes the unit for this layout: through the launcher when there is one.
write_unit() {
  if [ -x "$OPT/bin/yamori-launcher" ]; then
    exec_line="$OPT/bin/yamori-launcher -- --config $CONF"
  else
    exec_line="$OPT/current/bin/yamorid --config $CONF"
  fi
  sed "s|@EXEC@|$exec_line|" "$TMP/yamori.service.in" >"$UNIT.tmp" &&
    chmod 0644 "$UNIT.tmp" && mv -f "$UNIT.tmp" "$UNIT"
}

# Writes the launcher's state so that version $1 runs (previous $2).
write_update_state() {
  mkdir -p "$STATE/update" && chmod 0700 "$STATE" "$STATE/update" || return 1
  if [ -n "$2" ] && [ "$2" != "$1" ]; then
    printf '{"active":"%s","previous":"%s"}\n' "$1" "$2" >"$STATE/update/state.json.tmp"
  else
    printf '{"active":"%s"}\n' "$1" >"$STATE/update/state.json.tmp"
  fi
  chmod 0600 "$STATE/update/state.json.tmp" && mv -f "$STATE/update/state.json.tmp" "$STATE/update/state.json"
}

install_files() {
  old=$(installed_version)
  vdir=$OPT/versions/$YM_VERSION
  mkdir -p "$OPT/versions" "$OPT/bin" || return 1
  rm -rf "$vdir.new"
  mkdir -p "$vdir.new/bin" &&
    cp "$TMP/bin/yamorid" "$TMP/bin/yamorictl" "$vdir.new/bin/" &&
    cp -R "$TMP/rules" "$vdir.new/rules" || return 1
  if [ -d "$TMP/keys" ]; then
    cp -R "$TMP/keys" "$vdir.new/keys" || return 1
  fi
  chmod -R go-w "$vdir.new"
  # The agent is stopped while its files change (repair and upgrade).
  if systemctl is-active --quiet yamori 2>/dev/null; then
    systemctl stop yamori || return 1
  fi
  rm -rf "$vdir" && mv "$vdir.new" "$vdir" || return 1
  if [ -x "$TMP/bin/yamori-launcher" ]; then
    cp "$TMP/bin/yamori-launcher" "$OPT/bin/yamori-launcher.new" &&
      mv -f "$OPT/bin/yamori-launcher.new" "$OPT/bin/yamori-launcher" || return 1
  fi
  ln -sfn "versions/$YM_VERSION" "$OPT/current.new" && mv -Tf "$OPT/current.new" "$OPT/current" || return 1
  ln -sfn current/rules "$OPT/rules"
  ln -sfn "$OPT/current/bin/yamorictl" /usr/bin/yamorictl
  # Versions older than the previous one are removed.
  for d in "$OPT"/versions/*; do
    [ -d "$d" ] || continue
    b=${d##*/}
    [ "$b" = "$YM_VERSION" ] || [ "$b" = "$old" ] || rm -rf "$d"
  done
  mkdir -p "$ETC" "$STATE" && chmod 0700 "$STATE" || return 1
  if [ ! -f "$CONF" ]; then
    # Inside a container the kernel gives no process events (preflight
    # said so): the process sensor is off, the rest works.
    sensors=""
    case "$PF_REPORT" in
    *"warn	proc_connector	"*) sensors=',\n  "sensors": {"process": false}' ;;
    esac
    printf '{\n  "rules": {"dirs": ["%s"]}'"$sensors"'\n}\n' "$OPT/current/rules" >"$CONF.tmp" &&
      chmod 0644 "$CONF.tmp" && mv -f "$CONF.tmp" "$CONF" || return 1
  fi
  if [ -n "$HELPDESK" ]; then
    printf '%s\n' "$HELPDESK" >"$ETC/helpdesk.txt"
  fi
  if [ -x "$OPT/bin/yamori-launcher" ]; then
    write_update_state "$YM_VERSION" "$old" || return 1
  fi
  write_unit || return 1
  systemctl daemon-reload && systemctl enable --quiet yamori.service
}

# identity_field NAME: a string member of the identity file.
identity_field() {
  sed -n "s/.*\"$1\":[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$STATE/identity.json" 2>/dev/null | head -n 1
}

# True when this PC is enrolled already (repair and upgrade keep it).
enrolled() {
  [ -f "$STATE/identity.json" ]
}

do_enroll() {
  out=$(YAMORI_TOKEN="$TOKEN" "$OPT/current/bin/yamorictl" --config "$CONF" enroll 2>&1) || {
    printf '%s' "$out" | sed 's/^yamorictl: enrollment failed: //'
    return 1
  }
}

# Waits until the agent reports its first check-in with the console.
wait_checkin() {
  i=0
  while [ "$i" -lt 600 ]; do
    st=$("$OPT/current/bin/yamorictl" --config "$CONF" --json status 2>/dev/null)
    case "$st" in
    *'"uplink_checkins":'[1-9]*) return 0 ;;
    esac
    sleep 0.1
    i=$((i + 1))
  done
  LAST_ERROR=$(printf '%s' "$st" | sed -n 's/.*"uplink_last_error":"\([^"]*\)".*/\1/p')
  return 1
}

# ------------------------------------------------------------------
# Uninstall

do_uninstall() {
  if [ "$(id -u)" != 0 ]; then
    refuse "$(t not_root)"
  fi
  if [ "$UI" != silent ]; then
    ask_yes "$(t ask_uninstall)" n || {
      say "$(t cancelled)"
      exit 0
    }
  fi
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now --quiet yamori.service 2>/dev/null
  fi
  rm -f "$UNIT" /lib/systemd/system/yamori.service
  command -v systemctl >/dev/null 2>&1 && systemctl daemon-reload 2>/dev/null
  if [ -L /usr/bin/yamorictl ]; then
    rm -f /usr/bin/yamorictl
  fi
  rm -rf "$OPT" /run/yamori
  if [ "$PURGE" = 1 ]; then
    rm -rf "$ETC" "$STATE"
  fi
  if [ "$UI" = zenity ]; then
    zenity --info --title "$(t title)" --text "$(t uninstalled)" 2>/dev/null
  fi
  say "$(t uninstalled)"
  if [ "$PURGE" = 1 ]; then say "$(t purged)"; else say "$(t kept)"; fi
  exit 0
}

# ------------------------------------------------------------------
# Main

SILENT=0
CHECK=0
UNINSTALL=0
PURGE=0
FORCE_TEXT=0
NO_WAIT=0
TOKEN=${YAMORI_TOKEN:-}
SERVER=${YAMORI_SERVER:-}
HELPDESK=""
EXTRACT=""
while [ $# -gt 0 ]; do
  case "$1" in
  --silent) SILENT=1 ;;
  --check) CHECK=1 ;;
  --uninstall) UNINSTALL=1 ;;
  --purge) PURGE=1 ;;
  --text) FORCE_TEXT=1 ;;
  --no-wait) NO_WAIT=1 ;;
  --token) [ $# -ge 2 ] || { usage >&2; exit 64; }; TOKEN=$2; shift ;;
  --token=*) TOKEN=${1#--token=} ;;
  --server) [ $# -ge 2 ] || { usage >&2; exit 64; }; SERVER=$2; shift ;;
  --server=*) SERVER=${1#--server=} ;;
  --helpdesk) [ $# -ge 2 ] || { usage >&2; exit 64; }; HELPDESK=$2; shift ;;
  --extract) [ $# -ge 2 ] || { usage >&2; exit 64; }; EXTRACT=$2; shift ;;
  -h | --help) usage; exit 0 ;;
  *) err "yamori-installer: unknown option $1"; usage >&2; exit 64 ;;
  esac
  shift
done
if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
  err "yamori-installer: --purge goes with --uninstall"
  exit 64
fi
if [ -n "$EXTRACT" ]; then
  extract "$EXTRACT" || die "cannot unpack into $EXTRACT"
  exit 0
fi

# The embedded configuration (a company's own installer).
[ -n "$TOKEN" ] || TOKEN=$(config_get YAMORI_TOKEN)
[ -n "$HELPDESK" ] || HELPDESK=$(config_get YAMORI_HELPDESK)
if [ -z "$HELPDESK" ] && [ -f "$ETC/helpdesk.txt" ]; then
  HELPDESK=$(head -n 1 "$ETC/helpdesk.txt")
fi

# How to talk to the person.
if [ "$SILENT" = 1 ] || [ "$CHECK" = 1 ]; then
  UI=silent
elif [ "$FORCE_TEXT" = 0 ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; } &&
  command -v zenity >/dev/null 2>&1; then
  UI=zenity
elif [ -t 0 ]; then
  UI=text
else
  err "yamori-installer: $(t no_tty)"
  exit 64
fi

if [ "$UNINSTALL" = 1 ]; then
  do_uninstall
fi

YM_URL=""
[ -n "$TOKEN" ] && YM_URL=$(token_url "$TOKEN")

# 1. Welcome and what will be installed.
if [ "$UI" = text ]; then
  say "== $(t title) =="
  say ""
  say "$(t welcome)"
  say ""
  say "$(t what)"
  say ""
  ask_yes "$(t ask_continue)" y || {
    say "$(t cancelled)"
    exit 0
  }
  if [ -z "$TOKEN" ] && ! enrolled; then
    printf '%s' "$(t ask_token)"
    read -r TOKEN || TOKEN=""
    [ -n "$TOKEN" ] && YM_URL=$(token_url "$TOKEN")
  fi
elif [ "$UI" = zenity ]; then
  zenity --question --title "$(t title)" --width 520 --ok-label OK \
    --text "$(t welcome)

$(t what)" 2>/dev/null || {
    say "$(t cancelled)"
    exit 0
  }
  if [ -z "$TOKEN" ] && ! enrolled; then
    TOKEN=$(zenity --entry --title "$(t title)" --width 520 --text "$(t ask_token)" 2>/dev/null)
    [ -n "$TOKEN" ] && YM_URL=$(token_url "$TOKEN")
  fi
fi

# 2. Preflight: nothing is changed before it has passed. On a desktop a
# progress dialog follows every step from here (through a FIFO, so that
# the steps run in this shell).
T0=$(date +%s.%N)
TMP=$(mktemp -d /tmp/yamori-install.XXXXXX) || die "mktemp"
if [ "$UI" = zenity ] && mkfifo "$TMP/progress"; then
  zenity --progress --title "$(t title)" --width 480 --auto-close --no-cancel \
    --text "$(t step_check)" <"$TMP/progress" 2>/dev/null &
  PROGRESS_PID=$!
  exec 3<>"$TMP/progress"
  PROGRESS_FD=3
fi
# The steps this run will show: check, [libraries], files, [enroll], start,
# [wait].
will_enroll() {
  [ -n "$TOKEN" ] && { ! enrolled || [ "$(identity_field url)" != "${YM_URL%/}" ]; }
}
STEPS=3
n_deps=$(printf '%s\n' $YM_DEPS | grep -c .)
n_have=$(dpkg-query -W -f='${Status}\n' $YM_DEPS 2>/dev/null | grep -c 'install ok installed')
[ "${n_have:-0}" -lt "$n_deps" ] && STEPS=$((STEPS + 1))
will_enroll && STEPS=$((STEPS + 1))
[ "$NO_WAIT" = 0 ] && STEPS=$((STEPS + 1))
step step_check
preflight_local
if [ -n "$TOKEN" ]; then
  valid_token "$TOKEN" || pf fail token "$(t bad_token)"
elif ! enrolled || [ "$CHECK" = 1 ]; then
  pf fail token "$(t no_token)"
fi
if [ -n "$SERVER" ] && [ -n "$YM_URL" ] && [ "${SERVER%/}" != "${YM_URL%/}" ]; then
  pf fail server "--server $SERVER differs from the console in the token ($YM_URL)"
fi
preflight_compat
if [ "$PF_FAIL" -gt 0 ] && [ "$CHECK" = 0 ]; then
  print_report >&2
  refuse "$(first_failure)"
fi
extract "$TMP" || die "the installer file is damaged (cannot unpack it): download it again"
NEED_DEPS=0
if deps_missing; then
  NEED_DEPS=1
  if [ -n "$YM_URL" ] && valid_token "$TOKEN"; then
    preflight_net_shell "$YM_URL"
  fi
  if [ "$CHECK" = 1 ]; then
    pf warn libraries "missing libraries will be added with apt-get: $YM_DEPS (the TLS and clock checks need them)"
  fi
fi
if [ "$PF_FAIL" -gt 0 ] && [ "$CHECK" = 0 ]; then
  print_report >&2
  refuse "$(first_failure)"
fi
if [ "$NEED_DEPS" = 1 ] && [ "$CHECK" = 0 ]; then
  step step_deps
  deps_install
  case $? in
  0) ;;
  2) refuse "$(t no_apt)$YM_DEPS" ;;
  *) refuse "$(t apt_fail)$YM_DEPS ($(tail -n 2 "$TMP/apt.log" | tr '\n' ' '))" ;;
  esac
fi
if ! deps_missing; then
  preflight_agent
fi
if [ "$CHECK" = 1 ]; then
  say "== $(t report): Yamori $YM_VERSION =="
  print_report
  if [ "$PF_FAIL" -gt 0 ]; then
    say "$(t check_bad)"
    exit 2
  fi
  say "$(t check_ok)"
  exit 0
fi
if [ "$PF_FAIL" -gt 0 ]; then
  print_report >&2
  refuse "$(first_failure)"
fi

# 3. Install, enroll, start, wait for the console.
run_install() {
  step step_files
  install_files || die "cannot write the files under $OPT, $ETC or $STATE"
  if will_enroll; then
    step step_enroll
    msg=$(do_enroll) || die "$(t enroll_fail)$msg"
  fi
  step step_start
  systemctl restart yamori.service || die "$(t start_fail)"
  if [ "$NO_WAIT" = 0 ]; then
    step step_wait
    wait_checkin || die "$(t wait_fail)${LAST_ERROR:-timeout}"
  fi
}

run_install
if [ "$UI" = zenity ]; then
  printf '100\n' >&3 2>/dev/null
  progress_close
  zenity --info --title "$(t title)" --width 480 --text "$(t "done")

$(t done_sub)${HELPDESK:+

$(t helpdesk)$HELPDESK}" 2>/dev/null
fi

T1=$(date +%s.%N)
ELAPSED=$(awk -v a="$T0" -v b="$T1" 'BEGIN {printf "%.1f", b - a}')
if [ "$UI" = silent ]; then
  say "yamori-installer: done in ${ELAPSED} s: $(t "done") $(t done_sub)"
  [ -n "$HELPDESK" ] && say "yamori-installer: $(t helpdesk)$HELPDESK"
elif [ "$UI" = text ]; then
  say ""
  say "*** $(t "done") ***"
  say "$(t done_sub) (${ELAPSED} s)"
  [ -n "$HELPDESK" ] && say "$(t helpdesk)$HELPDESK"
  say ""
  printf '%s' "$(t press_enter)"
  read -r _ || true
  say ""
fi
exit 0
