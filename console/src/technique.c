/*
 * ATT&CK technique texts (technique.h).
 */
#include "technique.h"

#include <stdio.h>
#include <string.h>

/* Sorted by id. Written for people in a small company: what happened in
 * plain words, then what to do. Every technique of the default behaviour
 * rules, and the common ones of the community's Linux rules that a
 * provider imports. */
static const technique_t table[] = {
    {"T1003.008",
     {"パスワードのハッシュの読み取り", "Password hashes read"},
     {"/etc/shadow "
      "などパスワードのハッシュを保存したファイルが、普段それを読まないプログラムで読まれたかコピー"
      "されました。持ち出されると、時間をかけてパスワードを解読されるおそれがあります。",
      "A file holding password hashes (such as /etc/shadow) was read or copied by a program that "
      "normally never reads it. Copied hashes can be cracked offline."},
     {"誰が何のために実行したか確認してください。心当たりがなければ、このPCの全アカウントのパスワー"
      "ドを変更し、管理者に連絡してください。",
      "Find out who ran it and why. If nobody expected it, change the passwords of every account "
      "on this PC and tell your administrator."}},
    {"T1005",
     {"PC内のデータの収集", "Data collected from the PC"},
     {"PCに保存されているデータがまとめて集められました。外部へ持ち出す前の準備の可能性があります"
      "。",
      "Data stored on the PC was gathered, possibly to be taken out."},
     {"誰が何のために行ったか確認し、心当たりがなければ管理者に連絡してください。",
      "Find out who did it and why; if nobody expected it, tell your administrator."}},
    {"T1007",
     {"サービスの調査", "Service discovery"},
     {"PCで動いているサービスの一覧が調べられました。侵入者が次の手を決めるための調査でよく見られま"
      "す。",
      "The services running on the PC were listed, a common step when an intruder plans the next "
      "move."},
     {"単独では管理作業の場合も多いので、誰が実行したか確認してください。他の警告と一緒なら管理者に"
      "連絡してください。",
      "Often routine on its own: check who ran it. If it comes with other alerts, tell your "
      "administrator."}},
    {"T1014",
     {"ルートキット", "Rootkit"},
     {"OSの奥深くに入り込んで自分の存在を隠す仕組み（ルートキット）が仕込まれた疑いがあります。",
      "Something that hides itself deep inside the system, a rootkit, may have been installed."},
     {"PCをネットワークから外し、すぐに管理者に連絡してください。",
      "Disconnect the PC from the network and tell your administrator at once."}},
    {"T1016",
     {"ネットワーク設定の調査", "Network configuration discovery"},
     {"IPアドレスや経路などネットワークの設定を調べるコマンドが実行されました。侵入者が最初に周りの"
      "様子を調べるときの典型的な動きです。",
      "Commands that look up addresses, routes or other network settings were run. It is what an "
      "intruder does first to learn the surroundings."},
     {"単独では管理作業の場合も多いので、誰が実行したか確認してください。同じ時間帯に他の警告があれ"
      "ば、侵入を疑って管理者に連絡してください。",
      "On its own this is often routine administration: check who ran it. If other alerts appear "
      "around the same time, treat it as an intrusion and tell your administrator."}},
    {"T1018",
     {"ネットワーク上の他のPCの調査", "Other machines discovered"},
     {"同じネットワークにある他のPCやサーバーが調べられました。侵入を広げる相手を探す動きです。",
      "Other computers on the network were looked up, the way an intruder looks for the next "
      "target."},
     {"誰が実行したか確認し、心当たりがなければ管理者に連絡してください。",
      "Check who ran it; if nobody expected it, tell your administrator."}},
    {"T1027",
     {"内容の難読化", "Obfuscated content"},
     {"プログラムやコマンドの中身が読みにくく加工されていました。何をするかを隠すための手口です。",
      "A program or command was made hard to read on purpose, to hide what it does."},
     {"誰が実行したか確認し、心当たりがなければ管理者に連絡してください。",
      "Check who ran it; if nobody expected it, tell your administrator."}},
    {"T1033",
     {"ログイン中のユーザーの調査", "User discovery"},
     {"誰がログインしているか、自分がどのユーザーで動いているかを調べるコマンドが実行されました。侵"
      "入直後によく見られる動きです。",
      "Commands that show who is logged in, or which user the caller runs as, were run. Common "
      "right after an intrusion."},
     {"誰が実行したか確認してください。他の警告と一緒に出ている場合は管理者に連絡してください。",
      "Check who ran them. If they come with other alerts, tell your administrator."}},
    {"T1036",
     {"正体を隠すための偽装", "Masquerading"},
     {"普通のプログラムや場所に見せかけてプログラムが動かされました。ウイルスや侵入者が見つからない"
      "ようにする手口です。",
      "A program was run so that it looks like an ordinary program or location. Malware and "
      "intruders do this to avoid being noticed."},
     {"そのプログラムの場所と中身を確認し、心当たりがなければ隔離して管理者に連絡してください。",
      "Check where the program is and what it is. If you do not recognise it, quarantine it and "
      "tell your administrator."}},
    {"T1036.004",
     {"システムの処理に見せかけた偽装", "Disguised as a system task"},
     {"OSの内部処理（カーネルスレッド）と同じ名前でプログラムが動いています。本物のカーネルスレッド"
      "はファイルから起動されないため、隠れて動く不正なプログラムの可能性が高いです。",
      "A program runs under the name of a kernel thread. Real kernel threads never start from a "
      "file, so this is very likely a hidden malicious program such as a miner."},
     {"そのプロセスを停止し、起動元のファイルを隔離して、管理者に連絡してください。",
      "Stop the process, quarantine the file it started from and tell your administrator."}},
    {"T1037.004",
     {"起動スクリプトへの登録", "Boot script changed"},
     {"PCの起動時に自動で実行されるスクリプト（rc.local や "
      "init."
      "d）が、パッケージの更新以外で書き換えられました。再起動後も不正なプログラムが動き続けるよう"
      "に仕込む手口です。",
      "A script that runs at every boot (rc.local or init.d) was written by something other than a "
      "package update. Intruders use it to keep their program running after a restart."},
     {"書き換えられたファイルの内容を確認し、心当たりのない行があれば削除して管理者に連絡してくださ"
      "い。",
      "Look at the changed file. If it holds lines nobody added on purpose, remove them and tell "
      "your administrator."}},
    {"T1046",
     {"ネットワークのポートスキャン", "Network port scan"},
     {"他のPCやサーバーで開いている通信の入口（ポート）が調べられました。攻撃できる相手を探す動きで"
      "す。",
      "Other machines were scanned for open ports, the way attackers look for something to "
      "attack."},
     {"誰が実行したか確認し、心当たりがなければPCをネットワークから外して管理者に連絡してください"
      "。",
      "Check who ran it. If nobody expected it, disconnect the PC from the network and tell your "
      "administrator."}},
    {"T1048.003",
     {"暗号化されていない通信でのデータ持ち出し", "Data sent out unencrypted"},
     {"データが暗号化されていない通信（FTP など）で外部に送られた疑いがあります。",
      "Data may have been sent out over an unencrypted protocol such as FTP."},
     {"送り先と内容を確認し、心当たりがなければPCをネットワークから外して管理者に連絡してください"
      "。",
      "Check where it went and what it was. If nobody expected it, disconnect the PC from the "
      "network and tell your administrator."}},
    {"T1049",
     {"通信中の接続の調査", "Network connections listed"},
     {"PCがいまどこと通信しているかが調べられました。侵入者が周りの様子を調べる動きです。",
      "The PC's current network connections were listed, a way of learning the surroundings."},
     {"誰が実行したか確認し、他の警告と一緒なら管理者に連絡してください。",
      "Check who ran it; if it comes with other alerts, tell your administrator."}},
    {"T1053.003",
     {"cron による自動実行の設定", "Scheduled job added with cron"},
     {"定期的にコマンドを自動実行する設定（cron）が追加・変更されました。侵入者が不正なプログラムを"
      "繰り返し動かすためによく使う手口です。",
      "A cron job (a command run automatically on a schedule) was added or changed. Intruders use "
      "it to run their program again and again."},
     {"追加された設定の内容を確認し、心当たりがなければ削除して管理者に連絡してください。",
      "Look at the job that was added. If nobody expected it, remove it and tell your "
      "administrator."}},
    {"T1053.006",
     {"systemd タイマーによる自動実行の設定", "Scheduled job added with a systemd timer"},
     {"systemd "
      "のタイマー（決まった時刻にコマンドを動かす設定）が追加・変更されました。不正なプログラムを定"
      "期的に動かすために使われることがあります。",
      "A systemd timer (a command run on a schedule) was added or changed. It can be used to run a "
      "malicious program regularly."},
     {"追加されたタイマーとサービスの内容を確認し、心当たりがなければ無効にして管理者に連絡してくだ"
      "さい。",
      "Look at the timer and its service. If nobody expected them, disable them and tell your "
      "administrator."}},
    {"T1059",
     {"コマンドやスクリプトの不審な実行", "Suspicious command or script"},
     {"シェルやスクリプト言語で、普段とは違う形のコマンドが実行されました。",
      "A shell or script interpreter ran a command in an unusual way."},
     {"誰が何のために実行したか確認し、心当たりがなければ管理者に連絡してください。",
      "Find out who ran it and why; if nobody expected it, tell your administrator."}},
    {"T1059.004",
     {"シェルでの不審なコマンド実行", "Suspicious shell command"},
     {"シェル（bash "
      "など）で、ダウンロードした内容や暗号化・エンコードした内容をそのまま実行するなど、攻撃でよく"
      "使われる形のコマンドが実行されました。",
      "A shell (such as bash) ran a command in a shape attacks use, such as running downloaded or "
      "decoded text directly."},
     {"誰が実行したか確認してください。心当たりがなければ、PCをネットワークから外して管理者に連絡し"
      "てください。",
      "Check who ran it. If nobody expected it, disconnect the PC from the network and tell your "
      "administrator."}},
    {"T1059.006",
     {"Python からのシェルの起動", "Shell started from Python"},
     {"Python "
      "などのスクリプトからシェルが起動されました。侵入者が操作しやすい端末を手に入れるときの手口で"
      "す。",
      "A shell was started from Python or another script interpreter, the way intruders get a "
      "usable terminal."},
     {"誰が実行したか確認し、心当たりがなければPCをネットワークから外して管理者に連絡してください"
      "。",
      "Check who ran it. If nobody expected it, disconnect the PC from the network and tell your "
      "administrator."}},
    {"T1068",
     {"弱点を突いた権限の取得", "Privileges gained through a flaw"},
     {"ソフトウェアの弱点を突いて管理者の権限を得ようとした疑いがあります。",
      "A software flaw may have been used to gain root rights."},
     {"PCをネットワークから外し、管理者に連絡してください。ソフトウェアを最新の状態に更新してくださ"
      "い。",
      "Disconnect the PC from the network and tell your administrator. Bring the software up to "
      "date."}},
    {"T1069.001",
     {"グループの調査", "Group discovery"},
     {"PCのユーザーグループ（誰が管理者か など）が調べられました。",
      "The PC's user groups (who is an administrator, ...) were listed."},
     {"誰が実行したか確認し、他の警告と一緒なら管理者に連絡してください。",
      "Check who ran it; if it comes with other alerts, tell your administrator."}},
    {"T1070",
     {"痕跡の消去", "Traces removed"},
     {"ログやファイルなど、行動の痕跡が消されました。侵入者が見つからないようにするための手口です"
      "。",
      "Logs, files or other traces were removed so that actions go unnoticed."},
     {"誰が行ったか確認し、心当たりがなければ管理者に連絡してください。",
      "Check who did it; if nobody expected it, tell your administrator."}},
    {"T1070.002",
     {"システムログの削除", "System logs cleared"},
     {"システムのログ（記録）が削除または空にされました。侵入者が自分の行動の痕跡を消すための手口で"
      "す。",
      "System logs were deleted or emptied. Intruders do this to erase the traces of what they "
      "did."},
     {"誰が削除したか確認してください。心当たりがなければ、侵入を疑って管理者に連絡してください。",
      "Find out who did it. If nobody expected it, treat it as an intrusion and tell your "
      "administrator."}},
    {"T1070.003",
     {"コマンド履歴の削除", "Command history cleared"},
     {"シェルのコマンド履歴が削除されたか、記録しないように設定されました。実行したコマンドを隠すた"
      "めの手口です。",
      "The shell's command history was deleted or switched off, which hides the commands that were "
      "typed."},
     {"誰が行ったか確認し、心当たりがなければ管理者に連絡してください。",
      "Check who did it; if nobody expected it, tell your administrator."}},
    {"T1070.004",
     {"ファイルの削除による痕跡の消去", "Files deleted to hide traces"},
     {"使い終わったプログラムや記録のファイルが削除されました。侵入者が痕跡を消す手口です。",
      "Tools or records were deleted after use, a way to remove traces."},
     {"削除されたファイルと実行した人を確認し、心当たりがなければ管理者に連絡してください。",
      "Check what was deleted and by whom; if nobody expected it, tell your administrator."}},
    {"T1070.006",
     {"ファイルの日時の改ざん", "File times changed"},
     {"ファイルの作成・更新日時が手作業で書き換えられました。不正に置いたファイルを古いファイルに見"
      "せかける手口です。",
      "The dates of a file were set by hand, a way to make a planted file look old and harmless."},
     {"対象のファイルを確認し、心当たりがなければ管理者に連絡してください。",
      "Check the file; if nobody expected it, tell your administrator."}},
    {"T1071.001",
     {"Web の通信を使った遠隔操作", "Remote control over web traffic"},
     {"Web と同じ種類の通信で外部のサーバーとやりとりし、遠隔操作されている疑いがあります。",
      "The PC may be controlled from outside over web-like traffic."},
     {"通信先を確認し、心当たりがなければPCをネットワークから外して管理者に連絡してください。",
      "Check where it connects. If nobody expected it, disconnect the PC from the network and tell "
      "your administrator."}},
    {"T1082",
     {"システム情報の調査", "System information discovery"},
     {"OSの種類やバージョンなどPCの情報を調べるコマンドが実行されました。侵入者が次の手を決めるため"
      "に行う調査です。",
      "Commands that show the system's type and version were run; intruders do this to plan their "
      "next step."},
     {"単独では管理作業の場合も多いので、誰が実行したか確認してください。短時間に多数実行されている"
      "場合は管理者に連絡してください。",
      "Often routine on its own: check who ran them. If many ran within seconds, tell your "
      "administrator."}},
    {"T1083",
     {"ファイルやフォルダーの探索", "File and directory discovery"},
     {"特定のファイル（鍵や特別な権限のプログラムなど）を探すコマンドが実行されました。侵入者が価値"
      "のあるファイルを探すときの動きです。",
      "Commands searched for particular files (keys, privileged programs, ...), the way intruders "
      "look for something valuable."},
     {"誰が実行したか確認し、心当たりがなければ管理者に連絡してください。",
      "Check who ran them; if nobody expected it, tell your administrator."}},
    {"T1087.001",
     {"アカウントの調査", "Account discovery"},
     {"PCのユーザーアカウントの一覧を調べるコマンドが実行されました。",
      "Commands listed the user accounts of the PC."},
     {"誰が実行したか確認し、他の警告と一緒に出ている場合は管理者に連絡してください。",
      "Check who ran them; if they come with other alerts, tell your administrator."}},
    {"T1090",
     {"通信の中継（プロキシ）", "Traffic relayed (proxy)"},
     {"通信を別の場所へ中継する仕組みが動かされました。侵入者が通信先を隠したり、内部へ入り込むため"
      "に使います。",
      "Something was set up to relay traffic elsewhere, which intruders use to hide or to reach "
      "inside."},
     {"誰が設定したか確認し、心当たりがなければ停止して管理者に連絡してください。",
      "Check who set it up; if nobody expected it, stop it and tell your administrator."}},
    {"T1095",
     {"外部への不審な通信経路", "Shell wired to the network"},
     {"シェルがネットワークに直接つながれました（/dev/tcp や nc など）。外部から PC "
      "を遠隔操作される「リバースシェル」の典型です。",
      "A shell was connected straight to the network (/dev/tcp, nc, ...): the typical \"reverse "
      "shell\" that lets someone outside control the PC."},
     {"すぐにPCをネットワークから外し、管理者に連絡してください。",
      "Disconnect the PC from the network at once and tell your administrator."}},
    {"T1098",
     {"アカウントの不正な変更", "Account changed"},
     {"ユーザーアカウントに管理者と同じ権限を与えるなどの変更が行われました。",
      "An account was changed in a dangerous way, for example given the rights of root."},
     {"変更されたアカウントを確認し、心当たりがなければ元に戻して管理者に連絡してください。",
      "Check the account; if nobody expected the change, undo it and tell your administrator."}},
    {"T1098.004",
     {"SSH の鍵の追加", "SSH key added"},
     {"SSH "
      "でログインするための鍵（authorized_"
      "keys）が書き換えられました。侵入者がパスワードなしでいつでもログインできるようにする手口です"
      "。",
      "An SSH authorized_keys file was written. Intruders add their key to log in at any time "
      "without a password."},
     {"追加された鍵に心当たりがなければ削除し、管理者に連絡してください。",
      "If you do not recognise the key that was added, remove it and tell your administrator."}},
    {"T1105",
     {"外部からのファイルの取り込み", "Tool downloaded and run"},
     {"curl や wget などで外部からプログラムやスクリプトが取り込まれ、そのまま実行されました。",
      "A program or script was fetched with curl, wget or similar and run straight away."},
     {"取り込んだ元のアドレスと内容を確認し、心当たりがなければPCをネットワークから外して管理者に連"
      "絡してください。",
      "Check where it came from and what it did. If nobody expected it, disconnect the PC from the "
      "network and tell your administrator."}},
    {"T1136",
     {"アカウントの作成", "Account created"},
     {"新しいユーザーアカウントが作られました。侵入者が後から使う入口を作る手口です。",
      "A new account was created, possibly a door kept open for later."},
     {"作られたアカウントに心当たりがなければ無効にし、管理者に連絡してください。",
      "If you do not recognise the account, disable it and tell your administrator."}},
    {"T1136.001",
     {"アカウントの不正な作成", "Account created"},
     {"ユーザーアカウントが作られたか、アカウントの設定ファイルが直接書き換えられました。侵入者が後"
      "から使う入口を作る手口です。",
      "An account was created, or the account files were written directly: a way to keep a door "
      "open for later."},
     {"作られたアカウントに心当たりがなければ無効にし、管理者に連絡してください。",
      "If you do not recognise the account, disable it and tell your administrator."}},
    {"T1140",
     {"エンコードされた内容の復元と実行", "Decoded text run"},
     {"Base64 "
      "などで隠された内容が復元され、そのまま実行されました。中身を見えにくくして実行する、攻撃でよ"
      "く使われる手口です。",
      "Text hidden with Base64 or similar was decoded and run, a common way of hiding what is "
      "executed."},
     {"誰が実行したか確認し、心当たりがなければPCをネットワークから外して管理者に連絡してください"
      "。",
      "Check who ran it. If nobody expected it, disconnect the PC from the network and tell your "
      "administrator."}},
    {"T1204.002",
     {"一時フォルダーからのプログラムの実行", "Program run from a temporary directory"},
     {"/tmp "
      "など誰でも書き込める一時的な場所に置かれたプログラムが実行されました。ダウンロードした不正な"
      "プログラムがよく置かれる場所です。",
      "A program stored in a temporary, world-writable place such as /tmp was run. Downloaded "
      "malware is often put there."},
     {"プログラムの中身を確認し、心当たりがなければ隔離して管理者に連絡してください。",
      "Check the program; if you do not recognise it, quarantine it and tell your administrator."}},
    {"T1222.002",
     {"ファイルの権限の変更", "File permissions changed"},
     {"ファイルやフォルダーの権限（誰が読み書き・実行できるか）が変更されました。不正なプログラムを"
      "動かすための準備のことがあります。",
      "The permissions of a file or folder were changed, sometimes to prepare running a malicious "
      "program."},
     {"変更されたファイルを確認し、心当たりがなければ元に戻して管理者に連絡してください。",
      "Check the file; if nobody expected the change, undo it and tell your administrator."}},
    {"T1485",
     {"データの破壊", "Data destroyed"},
     {"ファイルやデータが消去・破壊されました。", "Files or data were wiped or destroyed."},
     {"すぐに管理者に連絡してください。データの復旧にはバックアップが必要です。",
      "Tell your administrator at once; restoring the data needs a backup."}},
    {"T1486",
     {"ランサムウェアによる暗号化の疑い", "Files encrypted for ransom (suspected)"},
     {"多くのファイルが短時間に別の拡張子に変えられたか、身代金を要求する文書が書かれました。ランサ"
      "ムウェアがファイルを暗号化している可能性があります。",
      "Many files were renamed with a new extension within seconds, or a ransom note was written: "
      "ransomware may be encrypting files."},
     {"すぐにPCの電源は切らずにネットワークから外し、管理者に連絡してください。バックアップには接続"
      "しないでください。",
      "Disconnect the PC from the network at once (do not switch it off) and tell your "
      "administrator. Do not connect backups to it."}},
    {"T1489",
     {"サービスの停止", "Service stopped"},
     {"業務やデータベースなどのサービスが停止されました。ランサムウェアが暗号化の前に行うことがあり"
      "ます。",
      "Services such as databases were stopped, something ransomware does before encrypting."},
     {"止められたサービスを確認し、心当たりがなければ管理者に連絡してください。",
      "Check which services stopped; if nobody expected it, tell your administrator."}},
    {"T1496",
     {"PCの処理能力の不正利用（マイニング）", "Computing power abused (mining)"},
     {"PCの処理能力が暗号資産の採掘（マイニング）などに勝手に使われている疑いがあります。",
      "The PC's computing power may be used without permission, for example to mine "
      "cryptocurrency."},
     {"そのプロセスを停止し、起動元のファイルを隔離して管理者に連絡してください。",
      "Stop the process, quarantine its file and tell your administrator."}},
    {"T1505.003",
     {"Web サーバーからのシェルの起動", "Shell started by a web server"},
     {"Web サーバーのプロセスからシェルが起動されました。Web サイトに不正なプログラム（Web "
      "シェル）を置かれた可能性があります。",
      "A web server process started a shell: someone may have planted a web shell on the site."},
     {"Web サーバーのファイルを確認し、管理者に連絡してください。",
      "Check the web server's files and tell your administrator."}},
    {"T1529",
     {"PCの停止・再起動", "PC shut down or restarted"},
     {"PCがシャットダウンまたは再起動されました。攻撃の最後に復旧を妨げるために行われることがありま"
      "す。",
      "The PC was shut down or restarted, which attacks sometimes do at the end to hinder "
      "recovery."},
     {"誰が行ったか確認し、心当たりがなければ管理者に連絡してください。",
      "Check who did it; if nobody expected it, tell your administrator."}},
    {"T1543.002",
     {"systemd サービスへの登録", "Systemd service added"},
     {"systemd "
      "のサービスが、パッケージの更新以外で追加・変更されました。PCの起動時に不正なプログラムを動か"
      "すために使われることがあります。",
      "A systemd unit was added or changed outside a package update; it can start a malicious "
      "program at every boot."},
     {"サービスの内容を確認し、心当たりがなければ無効にして管理者に連絡してください。",
      "Look at the unit; if nobody expected it, disable it and tell your administrator."}},
    {"T1546.004",
     {"ログイン時の自動実行の設定", "Login script changed"},
     {".bashrc や /etc/profile "
      "などログインのたびに実行される設定ファイルに書き込みがありました。侵入者がログインのたびに不"
      "正なコマンドを動かす手口です。",
      "A file run at every login (.bashrc, /etc/profile, ...) was written. Intruders add commands "
      "there to run them at each login."},
     {"ファイルに追加された行を確認し、心当たりがなければ削除して管理者に連絡してください。",
      "Look at the lines that were added; if nobody expected them, remove them and tell your "
      "administrator."}},
    {"T1548",
     {"権限の不正な取得", "Privileges granted"},
     {"プログラムに管理者と同等の強い権限（ケーパビリティ）が与えられました。誰でも管理者になれる抜"
      "け道になるおそれがあります。",
      "A program was given powerful capabilities that amount to root; it can become a way for "
      "anyone to become root."},
     {"対象のプログラムと権限を確認し、心当たりがなければ権限を外して管理者に連絡してください。",
      "Check the program and the capability; if nobody expected it, remove it and tell your "
      "administrator."}},
    {"T1548.001",
     {"特別な権限（SUID）の付与", "Set-user-ID bit set"},
     {"ファイルに SUID "
      "ビット（実行した人が持ち主の権限で動ける設定）が付けられました。シェルのコピーに付けると、誰"
      "でも管理者になれる裏口になります。",
      "A file was given the set-user-ID bit (it runs with its owner's rights). On a copy of a "
      "shell this is a root backdoor for anyone."},
     {"対象のファイルを確認し、心当たりがなければ削除して管理者に連絡してください。",
      "Check the file; if nobody expected it, delete it and tell your administrator."}},
    {"T1548.003",
     {"sudo の設定の変更", "Sudo settings changed"},
     {"sudo の設定が変更され、パスワードなしで管理者権限を使えるようになった可能性があります。",
      "The sudo configuration was changed, possibly allowing root rights without a password."},
     {"sudoers の内容を確認し、心当たりのない行があれば削除して管理者に連絡してください。",
      "Check the sudoers files; remove lines nobody added on purpose and tell your "
      "administrator."}},
    {"T1552",
     {"パスワードや鍵の探索", "Credentials searched"},
     {"パスワードや鍵などの認証情報が探されました。",
      "Passwords, keys or other credentials were searched for."},
     {"誰が行ったか確認し、心当たりがなければ関係するパスワードを変更して管理者に連絡してください"
      "。",
      "Check who did it. If nobody expected it, change the passwords concerned and tell your "
      "administrator."}},
    {"T1552.001",
     {"ファイル内のパスワードの探索", "Passwords searched in files"},
     {"設定ファイルなどの中からパスワードを探すコマンドが実行されました。",
      "Files were searched for passwords."},
     {"誰が実行したか確認し、心当たりがなければ管理者に連絡してください。",
      "Check who ran it; if nobody expected it, tell your administrator."}},
    {"T1552.004",
     {"秘密鍵の探索・読み取り", "Private keys searched or read"},
     {"SSH "
      "などの秘密鍵が探されたか、普段読まないプログラムで読まれました。持ち出されると他のサーバーに"
      "も不正にログインされるおそれがあります。",
      "SSH or other private keys were searched for, or read by a program that normally does not. "
      "With them an intruder can log in to other machines."},
     {"誰が行ったか確認してください。心当たりがなければ、その鍵を使えなくし（新しい鍵に交換し）、管"
      "理者に連絡してください。",
      "Check who did it. If nobody expected it, replace the keys and tell your administrator."}},
    {"T1560.001",
     {"データの圧縮と暗号化", "Data archived and encrypted"},
     {"データがまとめて圧縮され、暗号化されました。外部へ持ち出す前の準備でよく見られる動きです。",
      "Data was packed into an archive and encrypted, a common step before taking it out."},
     {"作られたファイルと送り先を確認し、心当たりがなければ管理者に連絡してください。",
      "Check the file that was made and where it went; if nobody expected it, tell your "
      "administrator."}},
    {"T1561.001",
     {"ディスクの消去", "Disk wiped"},
     {"ディスク装置に直接データが書き込まれ、中身が消されたおそれがあります。",
      "Data was written straight to a disk device, which may have wiped it."},
     {"すぐに管理者に連絡してください。データの復旧にはバックアップが必要です。",
      "Tell your administrator at once; restoring the data needs a backup."}},
    {"T1562.001",
     {"セキュリティ機能の停止", "Security service stopped"},
     {"セキュリティやログ記録のサービスが停止または無効にされました。侵入者が見つからないようにする"
      "ための手口です。",
      "A security or logging service was stopped or disabled so that actions go unnoticed."},
     {"停止されたサービスを確認して再開し、心当たりがなければ管理者に連絡してください。",
      "Check the service and start it again; if nobody expected it, tell your administrator."}},
    {"T1562.003",
     {"コマンド履歴の無効化", "Command history switched off"},
     {"シェルのコマンド履歴が残らないように設定されました。",
      "The shell was told not to record its command history."},
     {"誰が行ったか確認し、心当たりがなければ管理者に連絡してください。",
      "Check who did it; if nobody expected it, tell your administrator."}},
    {"T1564",
     {"隠れて動くための細工", "Hidden artefacts"},
     {"ファイルやプロセスを見えにくくする細工が行われました。不正なプログラムが見つからないようにす"
      "る手口です。",
      "Files or processes were made hard to see, a way for malware to stay unnoticed."},
     {"対象を確認し、心当たりがなければ管理者に連絡してください。",
      "Check what was hidden; if nobody expected it, tell your administrator."}},
    {"T1564.001",
     {"隠しファイルとしてのプログラム", "Hidden program"},
     {"名前が「."
      "」で始まる隠しファイルのプログラムが一時フォルダーから実行されました。不正なプログラムが見つ"
      "からないように隠れる手口です。",
      "A program with a hidden name (starting with a dot) was run from a temporary directory, a "
      "way for malware to stay unseen."},
     {"プログラムの中身を確認し、心当たりがなければ隔離して管理者に連絡してください。",
      "Check the program; if you do not recognise it, quarantine it and tell your administrator."}},
    {"T1571",
     {"普段使わないポートへの通信", "Connection to an unusual port"},
     {"スクリプトの実行環境（Python や Perl "
      "など）が、遠隔操作によく使われる番号のポートに接続しまし"
      "た。外部から PC を操作される「リバースシェル」の疑いがあります。",
      "A script interpreter (Python, Perl, ...) connected to a port often used to control a PC "
      "from outside: a possible \"reverse shell\"."},
     {"通信先に心当たりがなければ、PCをネットワークから外して管理者に連絡してください。",
      "If nobody expected the connection, disconnect the PC from the network and tell your "
      "administrator."}},
    {"T1572",
     {"通信のトンネル", "Traffic tunnelled"},
     {"別の通信の中に通信を通す「トンネル」が作られました。侵入者が監視を避けて外部とやりとりするた"
      "めに使います。",
      "A tunnel (traffic carried inside other traffic) was set up, which intruders use to talk to "
      "the outside unseen."},
     {"誰が作ったか確認し、心当たりがなければ停止して管理者に連絡してください。",
      "Check who set it up; if nobody expected it, stop it and tell your administrator."}},
    {"T1574.006",
     {"ライブラリの差し込み（ld.so.preload）", "Library preloading"},
     {"/etc/ld.so.preload "
      "が書き換えられました。すべてのプログラムに不正なライブラリを読み込ませ、隠れて動くための手口"
      "です。",
      "/etc/ld.so.preload was written: it makes every program load a library, a way for malware to "
      "hide inside them."},
     {"ファイルの内容を確認し、心当たりがなければ削除して管理者に連絡してください。",
      "Check the file; if nobody expected it, remove it and tell your administrator."}},
};

const technique_t *technique_table(size_t *n) {
  *n = sizeof(table) / sizeof(table[0]);
  return table;
}

static const technique_t *find_exact(const char *id, size_t len) {
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
    if (strlen(table[i].id) == len && strncmp(table[i].id, id, len) == 0)
      return &table[i];
  return NULL;
}

const technique_t *technique_find(const char *id) {
  if (id == NULL)
    return NULL;
  size_t len = strlen(id);
  const technique_t *t = find_exact(id, len);
  const char *dot = strchr(id, '.');
  if (t == NULL && dot != NULL)
    t = find_exact(id, (size_t)(dot - id));
  return t;
}

const technique_t *technique_first(const char *ids) {
  char one[16];
  while (ids != NULL && *ids != '\0') {
    size_t n = strcspn(ids, ",");
    if (n < sizeof(one)) {
      memcpy(one, ids, n);
      one[n] = '\0';
      const technique_t *t = technique_find(one);
      if (t != NULL)
        return t;
    }
    ids += n;
    if (*ids == ',')
      ids++;
  }
  return NULL;
}

int technique_lang(const char *lang) {
  return lang != NULL && strcmp(lang, "en") == 0 ? TECHNIQUE_EN : TECHNIQUE_JA;
}
