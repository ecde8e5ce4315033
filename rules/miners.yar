/*
 * Yamori default rule set: cryptocurrency miners dropped for resource
 * hijacking (miner binaries, their JSON configurations, launch lines in
 * scripts and cron/systemd files, and the "kill the competition" scripts
 * that usually install them).
 */

private rule Yamori_Helper_Miners_Rule_Source
{
    meta:
        description = "Helper: the file looks like YARA rule source (rule, strings/meta and condition sections), so text rules do not fire on rule sets."
        severity = "low"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "internal"

    strings:
        $rule = /(^|\n)[ \t]*(private[ \t]+|global[ \t]+){0,2}rule[ \t]+[A-Za-z_][A-Za-z0-9_]{0,127}[ \t\r\n]*(:[^{\n]{0,200})?\{/
        $cond = /\n[ \t]*condition[ \t]*:/
        $sect = /\n[ \t]*(strings|meta)[ \t]*:/

    condition:
        $rule and $cond and $sect
}

private rule Yamori_Helper_Miners_Runnable
{
    meta:
        description = "Helper: the file can run or is run by the system as commands: it starts with #!, has an execute bit, has a script extension, or is a shell start-up file, shell history, cron table or start-up script. Documents that quote commands (detection rules, advisories, notes) are not."
        severity = "low"
        author = "Yamori project"
        date = "2026-12-06"
        reference = "internal"

    condition:
        uint16(0) == 0x2123 or
        is_executable or
        extension matches /^(sh|bash|zsh|ksh|mksh|dash|csh|tcsh|fish|command|run|py|pyw|pl|pm|cgi|php[0-9]?|phtml|phar|rb|lua|tcl|ps1|psm1|bat|cmd|vbs|vbe|js|jse|wsf|hta|service|desktop)$/ or
        filename matches /^\.(bash_?rc|bash_profile|bash_login|bash_logout|profile|zshrc|zprofile|zshenv|zlogin|kshrc|cshrc|tcshrc|[a-z]{0,8}sh_history)$/ or
        filepath startswith "/etc/cron" or
        filepath startswith "/var/spool/cron/" or
        filepath startswith "/etc/init.d/" or
        filepath startswith "/etc/profile.d/" or
        filepath == "/etc/rc.local" or
        filepath == "/etc/profile" or
        filepath == "/etc/bash.bashrc"
}

private rule Yamori_Helper_Miners_Executable
{
    meta:
        description = "Helper: the file is an ELF, PE or Mach-O executable image."
        severity = "low"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "internal"

    condition:
        uint32(0) == 0x464C457F or                               // ELF
        (uint16(0) == 0x5A4D and uint32(0x3C) < filesize and
         uint32(uint32(0x3C)) == 0x00004550) or                  // MZ + PE
        uint32(0) == 0xFEEDFACE or uint32(0) == 0xFEEDFACF or    // Mach-O
        uint32(0) == 0xCEFAEDFE or uint32(0) == 0xCFFAEDFE
}

rule Yamori_Miner_Config_Pool_JSON : miner config
{
    meta:
        description = "XMRig-style JSON miner configuration: a pools array with a mining pool URL, wallet user and password, together with miner-specific tuning keys."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1496/"
        mitre_attack = "T1496"

    strings:
        $pools = /"pools"[ \t\r\n]*:[ \t\r\n]*\[/
        $url = /"url"[ \t\r\n]*:[ \t\r\n]*"(stratum\+(tcp|ssl|tls):\/\/)?[A-Za-z0-9][A-Za-z0-9.\-]{1,253}:[0-9]{2,5}"/ nocase
        $user = /"user"[ \t\r\n]*:[ \t\r\n]*"[^"\n]{8,}"/
        $pass = /"pass"[ \t\r\n]*:/

        $k_donate = /"donate-level"[ \t\r\n]*:/
        $k_randomx = /"randomx"[ \t\r\n]*:[ \t\r\n]*\{/
        $k_rigid = /"rig-id"[ \t\r\n]*:/
        $k_nicehash = /"nicehash"[ \t\r\n]*:/
        $k_hugepages = /"huge-pages"[ \t\r\n]*:/
        $k_algo = /"algo"[ \t\r\n]*:[ \t\r\n]*("(rx|cn|cn-lite|cn-heavy|cn-pico|argon2|astrobwt|kawpow|ghostrider)\/|null)/
        $k_coin = /"coin"[ \t\r\n]*:[ \t\r\n]*("(monero|xmr|wownero|ravencoin|zephyr)"|null)/ nocase
        $k_cpu = /"cpu"[ \t\r\n]*:[ \t\r\n]*\{[^}]{0,400}"(max-threads-hint|priority|asm|yield)"/

    condition:
        filesize < 512KB and
        not Yamori_Helper_Miners_Executable and
        not Yamori_Helper_Miners_Rule_Source and
        $pools and $url and $user and $pass and
        2 of ($k_*)
}

rule Yamori_Miner_Launch_Command_Line : miner script
{
    meta:
        description = "Script, cron or service file that launches a cryptocurrency miner: a stratum pool URL with pool/user options and a miner name, algorithm or donate-level option."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1496/"
        mitre_attack = "T1496"

    strings:
        $stratum = /stratum\+(tcp|ssl|tls|udp):\/\/[A-Za-z0-9][A-Za-z0-9.\-]{1,253}:[0-9]{2,5}/ nocase
        $opt_url = /[ \t](-o|--url[= ]|--pool[= ])[ \t]*['"]?stratum\+/ nocase
        $opt_user = /[ \t](-u|--user[= ]|--wallet[= ]|-w)[ \t]*['"]?[A-Za-z0-9]{12,}/

        $name = /\b(xmrig|xmr-stak|minerd|cpuminer|ccminer|nbminer|t-rex|lolminer|phoenixminer|srbminer|teamredminer|gminer|nanominer)\b/ nocase
        $donate = /--donate-level[= ][ \t]*[0-9]/
        $algo = /[ \t](-a|--algo[= ])[ \t]*['"]?(rx\/0|rx\/wow|cn\/r|cn\/0|cryptonight|randomx|kawpow|ethash|etchash|ghostrider|argon2\/chukwa|yespower)/ nocase

    condition:
        filesize < 1MB and
        not Yamori_Helper_Miners_Executable and
        not Yamori_Helper_Miners_Rule_Source and
        Yamori_Helper_Miners_Runnable and
        $stratum and ($opt_url or $opt_user) and
        ($name or $donate or $algo)
}

rule Yamori_Miner_Binary_Stratum_Client : miner binary
{
    meta:
        description = "Executable cryptocurrency miner: stratum pool protocol strings together with miner option, algorithm and banner strings."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1496/"
        mitre_attack = "T1496"

    strings:
        $proto_tcp = "stratum+tcp://" ascii wide
        $proto_ssl = "stratum+ssl://" ascii wide
        $proto_subscribe = "mining.subscribe" ascii wide
        $proto_authorize = "mining.authorize" ascii wide

        $m_donate = "--donate-level" ascii wide
        $m_url_help = /URL of mining server/ ascii wide
        $m_rigid = "--rig-id" ascii wide
        $m_nicehash = "--nicehash" ascii wide
        $m_cn = "cryptonight" nocase ascii wide
        $m_rx = "randomx" nocase ascii wide
        $m_xmrig = /xmrig\.com|XMRig\/%s|XMRIG_VERSION/ ascii wide
        $m_hashrate = /speed[ \t]+10s\/60s\/15m/ nocase ascii wide
        $m_donate_host = /donate\.(v2\.)?xmrig\.com/ ascii wide

    condition:
        filesize < 40MB and
        Yamori_Helper_Miners_Executable and
        (1 of ($proto_*)) and
        4 of ($proto_*, $m_*)
}

rule Yamori_Miner_Dropper_Competitor_Killer : miner script
{
    meta:
        description = "Cryptojacking installer script that kills competing miners by name and downloads and starts its own payload."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1496/"
        mitre_attack = "T1496"

    strings:
        $kill1 = /\b(pkill|killall)[ \t]+(-9[ \t]+)?(-f[ \t]+)?['"]?[A-Za-z0-9.\/_\-]{3,}/
        $kill2 = /ps[ \t]+(aux|-ef|axf)[^\n]{0,120}grep[^\n]{0,200}(awk|cut)[^\n]{0,120}(xargs[ \t]+)?kill[ \t]+-9/

        $n_xmrig = "xmrig" nocase
        $n_minerd = "minerd" fullword
        $n_cpuminer = "cpuminer"
        $n_kdev = "kdevtmpfsi"
        $n_kinsing = "kinsing"
        $n_xmrstak = "xmr-stak"
        $n_cn = "cryptonight" nocase
        $n_stratum = "stratum" fullword
        $n_kthreaddi = "kthreaddi"
        $n_sysupdate = "sysupdate" fullword
        $n_watchbog = "watchbog"
        $n_dbused = "dbused" fullword
        $n_ddgs = /\bddgs\.[0-9]+/
        $n_monero = "monero" nocase
        $n_nanopool = "nanopool"
        $n_supportxmr = "supportxmr"

        $dl = /(curl|wget)[ \t]+[^\n]{0,200}(https?:\/\/|[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})/
        $run = /chmod[ \t]+(\+x|[0-7]?7[0-7][0-7])[ \t]|nohup[ \t]|\|[ \t]*(ba)?sh\b|crontab[ \t]+-/

    condition:
        filesize < 1MB and
        not Yamori_Helper_Miners_Executable and
        not Yamori_Helper_Miners_Rule_Source and
        Yamori_Helper_Miners_Runnable and
        (#kill1 + #kill2) >= 4 and
        5 of ($n_*) and
        $dl and $run
}
