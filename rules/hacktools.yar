/*
 * Yamori default rule set: tools commonly dropped after an intrusion
 * (credential dumpers, privilege-escalation enumerators, process snoopers,
 * tunnelling tools). Legitimate administrators rarely keep these on small
 * business PCs and servers; where a tool also has honest uses (FRP, chisel,
 * Impacket) the severity is lower.
 */

private rule Yamori_Helper_Hacktools_Rule_Source
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

private rule Yamori_Helper_Hacktools_Runnable
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

private rule Yamori_Helper_Hacktools_Executable
{
    meta:
        description = "Helper: the file is an ELF, PE or Mach-O executable image."
        severity = "low"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "internal"

    condition:
        uint32(0) == 0x464C457F or
        (uint16(0) == 0x5A4D and uint32(0x3C) < filesize and
         uint32(uint32(0x3C)) == 0x00004550) or
        uint32(0) == 0xFEEDFACE or uint32(0) == 0xFEEDFACF or
        uint32(0) == 0xCEFAEDFE or uint32(0) == 0xCFFAEDFE
}

rule Yamori_Hacktool_Mimikatz_Binary : hacktool credential_access windows
{
    meta:
        description = "Mimikatz-like credential dumper executable: the tool's name and author banner together with its sekurlsa/lsadump/kerberos module and logonPasswords strings."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/software/S0002/"
        mitre_attack = "T1003.001"

    strings:
        $name = "mimikatz" nocase ascii wide
        $b_author = /gentilkiwi|Benjamin[ \t]+DELPY/ nocase ascii wide
        $b_motto = "A La Vie, A L'Amour" ascii wide
        $m_sekurlsa = "sekurlsa" nocase ascii wide
        $m_lsadump = "lsadump" nocase ascii wide
        $m_kerberos = /kerberos::(golden|ptt|list)/ nocase ascii wide
        $m_logon = "logonPasswords" nocase ascii wide
        $m_kuhl = "kuhl_m_" ascii wide
        $m_dcsync = "dcsync" nocase ascii wide

    condition:
        filesize < 20MB and
        Yamori_Helper_Hacktools_Executable and
        $name and
        (1 of ($b_*)) and
        3 of ($m_*)
}

rule Yamori_Hacktool_Mimikatz_Command_Script : hacktool credential_access windows
{
    meta:
        description = "Script or batch file that runs Mimikatz-style credential dumping commands (debug privilege followed by sekurlsa or lsadump commands)."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/software/S0002/"
        mitre_attack = "T1003.001"

    strings:
        $priv = /privilege::[ \t]*debug/ nocase ascii wide
        $dump = /(sekurlsa::[ \t]*(logonpasswords|wdigest|msv|ekeys|pth|tickets)|lsadump::[ \t]*(sam|secrets|cache|dcsync|lsa))/ nocase ascii wide
        $runner = /\b(mimikatz(\.exe)?|Invoke-Mimikatz|mimi(32|64)?\.exe)\b/ nocase ascii wide
        $exit = /["' \t]exit["' \t\r\n]/ nocase ascii wide

    condition:
        filesize < 10MB and
        not Yamori_Helper_Hacktools_Rule_Source and
        Yamori_Helper_Hacktools_Runnable and
        $priv and $dump and $runner and $exit
}

rule Yamori_Hacktool_LSASS_Dump_Commands : hacktool credential_access windows
{
    meta:
        description = "Script or command file that dumps LSASS memory or the SAM/SYSTEM hives or NTDS.dit (comsvcs MiniDump, procdump full dumps of lsass, reg save of both hives, ntdsutil IFM)."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1003/001/"
        mitre_attack = "T1003.001"

    strings:
        $comsvcs = /comsvcs(\.dll)?["']?[ \t]*,[ \t]*#?(MiniDump|MiniDumpW|24)\b/ nocase ascii wide
        $lsass = /lsass(\.exe|\.dmp)?\b/ nocase ascii wide
        $procdump = /procdump(64)?(\.exe)?[ \t]+(-[a-z]+[ \t]+){0,3}-ma[ \t]+(-[a-z]+[ \t]+){0,2}lsass/ nocase ascii wide
        $reg_sam = /reg(\.exe)?[ \t]+save[ \t]+(HKLM|HKEY_LOCAL_MACHINE)\\SAM[ \t]/ nocase ascii wide
        $reg_system = /reg(\.exe)?[ \t]+save[ \t]+(HKLM|HKEY_LOCAL_MACHINE)\\SYSTEM[ \t]/ nocase ascii wide
        $ntdsutil = /ntdsutil(\.exe)?[ \t]+[^\r\n]{0,60}(ac[ \t]+i|activate[ \t]+instance)[ \t]+ntds[^\r\n]{0,40}\bifm\b[^\r\n]{0,40}create[ \t]+full/ nocase ascii wide

    condition:
        filesize < 5MB and
        not Yamori_Helper_Hacktools_Rule_Source and
        (Yamori_Helper_Hacktools_Runnable or Yamori_Helper_Hacktools_Executable) and
        (($comsvcs and $lsass) or $procdump or ($reg_sam and $reg_system) or $ntdsutil)
}

rule Yamori_Hacktool_LaZagne_Like : hacktool credential_access
{
    meta:
        description = "LaZagne-like password recovery tool: a frozen or packed executable carrying several of its browser, mail, Wi-Fi, sysadmin and Windows credential module names."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/software/S0349/"
        mitre_attack = "T1555"

    strings:
        $m_browsers = "lazagne.softwares.browsers" nocase
        $m_windows = "lazagne.softwares.windows" nocase
        $m_sysadmin = "lazagne.softwares.sysadmin" nocase
        $m_wifi = "lazagne.softwares.wifi" nocase
        $m_mails = "lazagne.softwares.mails" nocase
        $m_memory = "lazagne.softwares.memory" nocase
        $m_chats = "lazagne.softwares.chats" nocase
        $m_config = "lazagne.config" nocase

    condition:
        filesize < 60MB and
        Yamori_Helper_Hacktools_Executable and
        3 of them
}

rule Yamori_Hacktool_Secretsdump_Like : hacktool credential_access
{
    meta:
        description = "Impacket secretsdump-like tool: status messages for dumping local SAM hashes, cached domain logons, LSA secrets and NTDS credentials, together with the Impacket name."
        severity = "medium"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/software/S0357/"
        mitre_attack = "T1003.002"

    strings:
        $d_sam = /Dumping[ \t]+local[ \t]+SAM[ \t]+hashes/ ascii wide
        $d_cached = /Dumping[ \t]+cached[ \t]+domain[ \t]+logon[ \t]+information/ ascii wide
        $d_lsa = /Dumping[ \t]+LSA[ \t]+Secrets/ ascii wide
        $d_ntds = /Dumping[ \t]+Domain[ \t]+Credentials/ ascii wide
        $d_format = /uid:rid:lmhash:nthash/ ascii wide
        $impacket = "impacket" nocase ascii wide

    condition:
        filesize < 60MB and
        not Yamori_Helper_Hacktools_Rule_Source and
        (Yamori_Helper_Hacktools_Runnable or Yamori_Helper_Hacktools_Executable) and
        $impacket and 3 of ($d_*)
}

rule Yamori_Hacktool_Linux_PrivEsc_Enumerator : hacktool discovery linux
{
    meta:
        description = "LinPEAS/LinEnum-like Linux privilege-escalation enumeration script: the tool's name together with many checks for SUID files, sudo rights, capabilities, writable services, credentials and container escapes."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1082/"
        mitre_attack = "T1082"

    strings:
        $n_peas = /lin[_\-]?peas|PEASS(-ng)?\b/ nocase
        $n_linenum = /\bLinEnum\b/
        $n_les = /linux[_\-]exploit[_\-]suggester|linux[_\-]smart[_\-]enumeration/ nocase

        $e_suid = /find[ \t]+\/[ \t]+[^\n]{0,60}-perm[ \t]+(-4000|\/4000|-u=s|\/u=s|-u\+s)/
        $e_sudo = /sudo[ \t]+-l\b/
        $e_caps = /getcap[ \t]+-r[ \t]+\//
        $e_shadow = "/etc/shadow"
        $e_sudoers = "/etc/sudoers"
        $e_docker = "docker.sock"
        $e_nfs = "no_root_squash"
        $e_cron = /crontab[ \t]+-l|\/etc\/cron\.d/
        $e_ssh = /\.ssh\/(id_rsa|id_dsa|id_ecdsa|id_ed25519|authorized_keys)/
        $e_kernel = /uname[ \t]+-a|\/proc\/version/
        $e_writable = /-writable|-perm[ \t]+-o\+w|-perm[ \t]+-2/
        $e_history = /\.(bash|zsh|mysql|psql)_history/

    condition:
        filesize > 4KB and filesize < 10MB and
        not Yamori_Helper_Hacktools_Executable and
        not Yamori_Helper_Hacktools_Rule_Source and
        Yamori_Helper_Hacktools_Runnable and
        1 of ($n_*) and
        8 of ($e_*)
}

rule Yamori_Hacktool_Pspy_Like : hacktool discovery linux
{
    meta:
        description = "pspy-like unprivileged process snooper ELF (watches /proc and inotify events to spy on other users' commands and cron jobs)."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1057/"
        mitre_attack = "T1057"

    strings:
        $module = "github.com/dominicbreuker/pspy" nocase
        $h_monitor = /pspy monitors the system for file system events and new processes/
        $h_scan = /Processes are monitored by scanning \/proc/
        $h_short = /pspy can watch your system for new processes/
        $h_root = /pspy does not require root/

    condition:
        filesize < 30MB and
        uint32(0) == 0x464C457F and
        $module and 1 of ($h_*)
}

rule Yamori_Hacktool_Chisel_Like : hacktool tunnel
{
    meta:
        description = "chisel-like TCP/UDP tunnel over HTTP/WebSocket executable (its Go module path together with its protocol version or environment variable names)."
        severity = "medium"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1572/"
        mitre_attack = "T1572"

    strings:
        $module = "github.com/jpillora/chisel"
        $proto = "chisel-v3"
        $env_key = "CHISEL_KEY"
        $env_auth = /CHISEL_(AUTH|KEY_FILE|HOST|PORT)/
        $ssh = "SSH-chisel-"

    condition:
        filesize < 40MB and
        Yamori_Helper_Hacktools_Executable and
        #module >= 3 and
        2 of ($proto, $env_key, $env_auth, $ssh)
}

rule Yamori_Hacktool_FRP_Binary : hacktool tunnel
{
    meta:
        description = "FRP (fast reverse proxy) client or server executable, often dropped to expose an internal host to the attacker."
        severity = "medium"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1572/"
        mitre_attack = "T1572"

    strings:
        $module = "github.com/fatedier/frp"
        $s_client = /frp\/(client|cmd\/frpc)/
        $s_server = /frp\/(server|cmd\/frps)/
        $s_proxy = /frp\/pkg\/(msg|proto|config)/
        $s_login = /"(run_id|privilege_key|proxy_name|remote_port)"/

    condition:
        filesize < 60MB and
        Yamori_Helper_Hacktools_Executable and
        #module >= 5 and
        2 of ($s_*)
}

rule Yamori_Hacktool_FRP_Tunnel_Config : hacktool tunnel config
{
    meta:
        description = "FRP client configuration (INI or TOML) that forwards a local port to a remote FRP server."
        severity = "medium"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1572/"
        mitre_attack = "T1572"

    strings:
        $i_common = /(^|\n)[ \t]*\[common\][ \t]*\r?\n/
        $i_addr = /(^|\n)[ \t]*server_addr[ \t]*=[ \t]*[^ \t\r\n]+/
        $i_port = /(^|\n)[ \t]*server_port[ \t]*=[ \t]*[0-9]{2,5}/
        $i_remote = /(^|\n)[ \t]*remote_port[ \t]*=[ \t]*[0-9]{1,5}/
        $i_local = /(^|\n)[ \t]*local_(port|ip)[ \t]*=[ \t]*[^ \t\r\n]+/
        $i_type = /(^|\n)[ \t]*type[ \t]*=[ \t]*(tcp|udp|stcp|xtcp|sudp)[ \t]*\r?\n/

        $t_addr = /(^|\n)[ \t]*serverAddr[ \t]*=[ \t]*["']/
        $t_port = /(^|\n)[ \t]*serverPort[ \t]*=[ \t]*[0-9]{2,5}/
        $t_proxies = /(^|\n)[ \t]*\[\[proxies\]\]/
        $t_remote = /(^|\n)[ \t]*remotePort[ \t]*=[ \t]*[0-9]{1,5}/
        $t_local = /(^|\n)[ \t]*local(Port|IP)[ \t]*=[ \t]*/
        $t_type = /(^|\n)[ \t]*type[ \t]*=[ \t]*["'](tcp|udp|stcp|xtcp|sudp)["']/

    condition:
        filesize < 64KB and
        not Yamori_Helper_Hacktools_Executable and
        not Yamori_Helper_Hacktools_Rule_Source and
        (all of ($i_*) or all of ($t_*))
}
