/*
 * Yamori default rule set: ransomware notes, recovery-inhibition commands
 * and Linux/ESXi encryptors.
 *
 * Note rules need, in the same file: a statement that the victim's files were
 * encrypted, an offer to decrypt or restore them, a payment word, and a
 * concrete contact or payment artefact (a Tor .onion address, a Bitcoin or
 * Monero address, an anonymous mailbox or a Tox ID). News articles and
 * security awareness material about ransomware rarely carry the artefact;
 * real notes always do.
 */

private rule Yamori_Helper_Ransom_Rule_Source
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

private rule Yamori_Helper_Ransom_Runnable
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

private rule Yamori_Helper_Ransom_Executable
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

private rule Yamori_Helper_Ransom_Contact_Artefact
{
    meta:
        description = "Helper: the file carries a concrete ransom contact or payment artefact (Tor .onion address, Bitcoin or Monero address, anonymous mailbox, Tox ID)."
        severity = "low"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "internal"

    strings:
        $onion3 = /[a-z2-7]{56}\.onion\b/ nocase ascii wide
        $onion2 = /\b[a-z2-7]{16}\.onion\b/ nocase ascii wide
        $btc_bech32 = /\bbc1[qp][02-9ac-hj-np-z]{38,58}\b/ ascii wide
        $btc_legacy = /\b(bitcoin|btc|wallet|address)\b[^\n]{0,80}\b[13][1-9A-HJ-NP-Za-km-z]{25,34}\b/ nocase ascii wide
        $xmr = /\b(monero|xmr|wallet|address)\b[^\n]{0,80}\b4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}\b/ nocase ascii wide
        $mailbox = /\b[A-Za-z0-9._\-]{2,64}@(protonmail|proton|pm|tutanota|tutamail|tuta|onionmail|cock|airmail|mailfence|keemail|firemail|msgsafe|dnmx|cyberfear)\.[a-z]{2,4}\b/ nocase ascii wide
        $tox = /\btox\b[^\n]{0,60}\b[0-9A-Fa-f]{76}\b/ nocase ascii wide

    condition:
        any of them
}

rule Yamori_Ransom_Note_English : ransomware note
{
    meta:
        description = "English ransom note: claims the victim's files were encrypted, offers decryption, asks for payment and gives a Tor, cryptocurrency or anonymous-mail contact."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1486/"
        mitre_attack = "T1486"

    strings:
        $enc1 = /\b(files|data|documents|photos|databases|network|servers?|computers?|systems?)\b[^.\n]{0,60}\b(have|has|had|are|is|were|was|got)[ \t\r\n]+(been[ \t\r\n]+)?([a-z]+,?[ \t\r\n]+(and[ \t\r\n]+)?){0,3}encrypted\b/ nocase ascii wide
        $enc2 = /\b(we|i)[ \t\r\n]+(have[ \t\r\n]+)?(encrypted|locked)[ \t\r\n]+(all[ \t\r\n]+)?(of[ \t\r\n]+)?your[ \t\r\n]+(files|data|network|documents|servers|computers)/ nocase ascii wide
        $dec1 = /\b(decrypt|recover|restore|unlock|return|get[ \t\r\n]+back)[ \t\r\n]+((all|of|your|the|these|my)[ \t\r\n]+){0,3}(files|data|documents)\b/ nocase ascii wide
        $dec2 = /\b(decrypt(ion|or)?|recovery)[ \t\r\n]+(key|tool|software|program|application|utility)\b/ nocase ascii wide
        $pay = /\b(bitcoins?|btc|monero|xmr|ransom|payment|pay)\b/ nocase ascii wide

    condition:
        filesize < 256KB and
        not Yamori_Helper_Ransom_Executable and
        not Yamori_Helper_Ransom_Rule_Source and
        ($enc1 or $enc2) and ($dec1 or $dec2) and $pay and
        Yamori_Helper_Ransom_Contact_Artefact
}

rule Yamori_Ransom_Note_Japanese : ransomware note japanese
{
    meta:
        description = "Japanese ransom note (UTF-8, UTF-16LE or Shift_JIS): says files were encrypted, offers decryption or restoration, names a ransom or cryptocurrency and gives a Tor, cryptocurrency or anonymous-mail contact."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1486/"
        mitre_attack = "T1486"

    strings:
        // 暗号化され (encrypted)
        $enc_u8 = "暗号化され"
        $enc_u16 = { 97 66 F7 53 16 53 55 30 8C 30 }
        $enc_sj = { 88 C3 8D 86 89 BB 82 B3 82 EA }
        // 復号 (decrypt), 復元 (restore)
        $dec_u8a = "復号"
        $dec_u8b = "復元"
        $dec_u16 = { A9 5F ( F7 53 | 43 51 ) }
        $dec_sj = { 95 9C ( 8D 86 | 8C B3 ) }
        // ファイル (file), データ (data)
        $obj_u8a = "ファイル"
        $obj_u8b = "データ"
        $obj_u16 = { ( D5 30 A1 30 A4 30 EB 30 | C7 30 FC 30 BF 30 ) }
        $obj_sj = { ( 83 74 83 40 83 43 83 8B | 83 66 81 5B 83 5E ) }
        // ビットコイン, 身代金 (ransom), モネロ, 仮想通貨 / 暗号資産 (crypto-asset)
        $pay_u8a = "ビットコイン"
        $pay_u8b = "身代金"
        $pay_u8c = "モネロ"
        $pay_u8d = "仮想通貨"
        $pay_u8e = "暗号資産"
        $pay_u16 = { ( D3 30 C3 30 C8 30 B3 30 A4 30 F3 30 | AB 8E E3 4E D1 91 | E2 30 CD 30 ED 30 | EE 4E F3 60 1A 90 A8 8C | 97 66 F7 53 C7 8C 23 75 ) }
        $pay_sj = { ( 83 72 83 62 83 67 83 52 83 43 83 93 | 90 67 91 E3 8B E0 | 83 82 83 6C 83 8D | 89 BC 91 7A 92 CA 89 DD | 88 C3 8D 86 8E 91 8E 59 ) }
        $pay_ascii = /\b(bitcoin|btc|monero|xmr)\b/ nocase ascii wide

    condition:
        filesize < 256KB and
        not Yamori_Helper_Ransom_Executable and
        not Yamori_Helper_Ransom_Rule_Source and
        (
            ($enc_u8 and any of ($dec_u8*) and any of ($obj_u8*) and (any of ($pay_u8*) or $pay_ascii)) or
            ($enc_u16 and $dec_u16 and $obj_u16 and ($pay_u16 or $pay_ascii)) or
            ($enc_sj and $dec_sj and $obj_sj and ($pay_sj or $pay_ascii))
        ) and
        Yamori_Helper_Ransom_Contact_Artefact
}

rule Yamori_Ransom_Recovery_Inhibition : ransomware windows
{
    meta:
        description = "Two or more of the commands ransomware runs before encrypting to destroy Windows recovery options (shadow copy deletion, backup catalog deletion, boot recovery disabled)."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1490/"
        mitre_attack = "T1490"

    strings:
        $vss = /vssadmin(\.exe)?["']?[ \t]+delete[ \t]+shadows/ nocase ascii wide
        $wmic = /wmic(\.exe)?["']?[ \t]+(\/[a-z]+:[^ \t]+[ \t]+)*shadowcopy[ \t]+delete/ nocase ascii wide
        $wmi_ps = /Win32_ShadowCopy[^\r\n]{0,120}(\.Delete\(|Remove-(Wmi|Cim)Instance|Remove-WmiObject)/ nocase ascii wide
        $bcd_rec = /bcdedit(\.exe)?["']?[ \t]+\/set[ \t]+\{?(default|current)\}?[ \t]+recoveryenabled[ \t]+(no|off|0)/ nocase ascii wide
        $bcd_boot = /bcdedit(\.exe)?["']?[ \t]+\/set[ \t]+\{?(default|current)\}?[ \t]+bootstatuspolicy[ \t]+ignoreallfailures/ nocase ascii wide
        $wbadmin = /wbadmin(\.exe)?["']?[ \t]+delete[ \t]+(catalog|systemstatebackup|backup)/ nocase ascii wide
        $vss_resize = /vssadmin(\.exe)?["']?[ \t]+resize[ \t]+shadowstorage[ \t]+[^\r\n]{0,100}\/maxsize=[0-9]{1,3}(MB|KB)\b/ nocase ascii wide

    condition:
        filesize < 20MB and
        not Yamori_Helper_Ransom_Rule_Source and
        (Yamori_Helper_Ransom_Runnable or Yamori_Helper_Ransom_Executable) and
        2 of them
}

rule Yamori_Ransom_ESXi_Encryptor : ransomware linux esxi
{
    meta:
        description = "Linux ELF encryptor aimed at VMware ESXi: stops virtual machines with esxcli/vim-cmd, targets VM disk files and carries ransom-note or Tor contact strings."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1486/"
        mitre_attack = "T1486"

    strings:
        $vm_kill = /esxcli[ \t]+(--formatter=[a-z]+[ \t]+)?vm[ \t]+process[ \t]+(kill|list)/
        $vm_cmd = /vim-cmd[ \t]+vmsvc\/(power\.off|power\.shutdown|getallvms|snapshot\.removeall)/

        $ext_vmdk = ".vmdk"
        $ext_vmx = ".vmx"
        $ext_vmem = ".vmem"
        $ext_vswp = ".vswp"
        $ext_vmsn = ".vmsn"
        $ext_nvram = ".nvram"

        $enc = /encrypt/ nocase
        $onion = /[a-z2-7]{16}([a-z2-7]{40})?\.onion/
        $note = /(HOW[_\- ]TO[_\- ](DECRYPT|RESTORE|RECOVER)|RESTORE[_\-]FILES|DECRYPT[_\-](INSTRUCTIONS?|FILES)|README[_\-](TO[_\-])?(DECRYPT|RESTORE)|ransom[ _\-]?note|your[ \t]+files[ \t]+(are|have[ \t]+been)[ \t]+encrypted)/ nocase

    condition:
        filesize < 20MB and
        uint32(0) == 0x464C457F and
        ($vm_kill or $vm_cmd) and
        3 of ($ext_*) and
        $enc and ($onion or $note)
}
