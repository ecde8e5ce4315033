/*
 * Yamori default rule set: web shells (PHP, JSP, ASP/ASPX).
 *
 * Every rule needs the page/script markers of its language together with a
 * construct that hands request data to a code or command interpreter (or an
 * encrypted class/assembly loader fed from the request). Ordinary web
 * applications that use eval(), exec() or Process.Start() on their own data
 * do not match.
 */

private rule Yamori_Helper_Webshells_Rule_Source
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

private rule Yamori_Helper_Webshells_PHP_Page
{
    meta:
        description = "Helper: the file is PHP source (an opening PHP tag, or a PHP file extension)."
        severity = "low"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "internal"

    strings:
        $tag_php = "<?php" nocase
        $tag_echo = "<?="
        $tag_short = /<\?[ \t\r\n]/

    condition:
        any of them or
        extension matches /^(php[0-9s]?|pht|phtml|phar|inc)$/
}

private rule Yamori_Helper_Webshells_JSP_Page
{
    meta:
        description = "Helper: the file is a Java Server Page (JSP directive or scriptlet markers, or a JSP file extension)."
        severity = "low"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "internal"

    strings:
        $directive = /<%@[ \t\r\n]*(page|include|taglib)\b/
        $scriptlet = /<%[!=]?[ \t\r\n]/
        $jspx = "<jsp:scriptlet>"

    condition:
        any of them or extension matches /^(jsp|jspx|jspf)$/
}

private rule Yamori_Helper_Webshells_ASP_Page
{
    meta:
        description = "Helper: the file is a classic ASP or ASP.NET page or handler (directive, script block or file extension)."
        severity = "low"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "internal"

    strings:
        $directive = /<%@[ \t\r\n]*(Page|WebHandler|WebService|Language|Assembly|Import)\b/ nocase
        $scriptlet = /<%[=]?[ \t\r\n]/
        $runat = /<script[ \t\r\n]+[^>]{0,80}runat[ \t]*=[ \t]*["']?server/ nocase

    condition:
        any of them or extension matches /^(asp|aspx|ashx|asmx|asa|cer|cdx|svc)$/
}

rule Yamori_Webshell_PHP_Request_Code_Exec : webshell php
{
    meta:
        description = "PHP web shell that evaluates code or calls a function taken directly from the HTTP request (eval/assert/create_function on request data, or a request value called as a function)."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        mitre_attack = "T1505.003"

    strings:
        // eval applied to a request superglobal value (POST, GET, REQUEST,
        // COOKIE, FILES), possibly through up to four wrapping calls such as base64_decode
        $eval_req = /\beval[ \t]*\([ \t]*(@[ \t]*)?([A-Za-z_][A-Za-z0-9_]{1,31}[ \t]*\([ \t]*){0,4}@?\$_(POST|GET|REQUEST|COOKIE|FILES)[ \t]*\[/ nocase
        $eval_hdr = /\beval[ \t]*\([ \t]*(@[ \t]*)?([A-Za-z_][A-Za-z0-9_]{1,31}[ \t]*\([ \t]*){0,4}@?\$_SERVER[ \t]*\[[ \t]*['"]HTTP_/ nocase
        // assert() runs a string argument as code (PHP < 8): the request value, at most
        // decoded, must be the whole argument; comparisons and is_numeric() checks are not
        $assert_req = /\bassert[ \t]*\([ \t]*(@[ \t]*)?((base64_decode|str_rot13|strrev|gzinflate|gzuncompress|gzdecode|urldecode|rawurldecode|stripslashes|hex2bin|trim)[ \t]*\([ \t]*@?){0,4}\$_(POST|GET|REQUEST|COOKIE)[ \t]*\[[^\]\r\n]{1,64}\][ \t]*\)/ nocase
        $create_fn = /\bcreate_function[ \t]*\([^;]{0,80}\$_(POST|GET|REQUEST|COOKIE)[ \t]*\[/ nocase
        // a request value used as the function name, called with another request value
        $req_call = /\$_(POST|GET|REQUEST|COOKIE)[ \t]*\[[^\]\n]{1,64}\][ \t]*\([ \t]*(@[ \t]*)?\$_(POST|GET|REQUEST|COOKIE)[ \t]*\[/ nocase
        // a request value passed as the callback of call_user_func, array_map, ...
        $cb_req = /\b(call_user_func|call_user_func_array|array_map|register_shutdown_function|register_tick_function)[ \t]*\([ \t]*(@[ \t]*)?\$_(POST|GET|REQUEST|COOKIE)[ \t]*\[/ nocase
        // preg_replace with the /e modifier on request data (PHP < 7)
        $preg_e = /\bpreg_replace[ \t]*\([ \t]*['"]\/[^\n'"]{0,64}\/[a-zA-Z]{0,5}e[a-zA-Z]{0,5}['"][ \t]*,[ \t]*(@[ \t]*)?\$_(POST|GET|REQUEST|COOKIE)[ \t]*\[/ nocase

    condition:
        filesize < 2MB and
        Yamori_Helper_Webshells_PHP_Page and
        not Yamori_Helper_Webshells_Rule_Source and
        any of them
}

rule Yamori_Webshell_PHP_Request_Command_Exec : webshell php
{
    meta:
        description = "PHP web shell that passes a value taken directly from the HTTP request to an operating-system command function (system, passthru, shell_exec, exec, popen, proc_open)."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        mitre_attack = "T1505.003"

    strings:
        // The leading class excludes method calls such as $pdo->exec(...) and Foo::exec(...).
        $cmd_req = /(^|[^A-Za-z0-9_>:$\\])(system|passthru|shell_exec|exec|popen|proc_open|pcntl_exec)[ \t]*\([ \t]*(@[ \t]*)?([A-Za-z_][A-Za-z0-9_]{1,31}[ \t]*\([ \t]*){0,3}@?\$_(POST|GET|REQUEST|COOKIE)[ \t]*\[/ nocase
        $cmd_hdr = /(^|[^A-Za-z0-9_>:$\\])(system|passthru|shell_exec|exec|popen|proc_open)[ \t]*\([ \t]*(@[ \t]*)?([A-Za-z_][A-Za-z0-9_]{1,31}[ \t]*\([ \t]*){0,3}@?\$_SERVER[ \t]*\[[ \t]*['"]HTTP_/ nocase

    condition:
        filesize < 2MB and
        Yamori_Helper_Webshells_PHP_Page and
        not Yamori_Helper_Webshells_Rule_Source and
        any of them
}

rule Yamori_Webshell_PHP_Packed_Eval_Loader : webshell php obfuscation
{
    meta:
        description = "PHP loader that evaluates a long embedded payload after base64 decoding and decompression or ROT13, the usual packing of PHP web shells and backdoors."
        severity = "high"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        mitre_attack = "T1505.003"

    strings:
        // eval of (gzinflate | gzuncompress | gzdecode | str_rot13 | strrev) and base64_decode,
        // in either order, of a quoted literal of 300 or more base64 characters
        $packed1 = /\b(eval|assert)[ \t]*\([ \t]*@?(gzinflate|gzuncompress|gzdecode|str_rot13|strrev)[ \t]*\([ \t]*@?base64_decode[ \t]*\([ \t]*['"][A-Za-z0-9+\/=\r\n\\]{300}/ nocase
        $packed2 = /\b(eval|assert)[ \t]*\([ \t]*@?base64_decode[ \t]*\([ \t]*@?(gzinflate|gzuncompress|gzdecode|str_rot13|strrev)[ \t]*\([ \t]*['"][A-Za-z0-9+\/=\r\n\\]{300}/ nocase

    condition:
        filesize < 5MB and
        Yamori_Helper_Webshells_PHP_Page and
        not Yamori_Helper_Webshells_Rule_Source and
        any of them
}

rule Yamori_Webshell_JSP_Request_Command_Exec : webshell jsp
{
    meta:
        description = "JSP web shell that runs an operating-system command taken from a request parameter and returns its output."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        mitre_attack = "T1505.003"

    strings:
        $rt_exec = /Runtime[ \t]*\.[ \t]*getRuntime[ \t]*\([ \t]*\)[ \t]*\.[ \t]*exec[ \t]*\(/
        $pb = /new[ \t]+ProcessBuilder[ \t]*\(/
        $param = /request[ \t]*\.[ \t]*getParameter[ \t]*\(/
        // the parameter is passed straight to exec()/ProcessBuilder, possibly inside a String[]
        $direct = /(\.exec|ProcessBuilder)[ \t]*\([ \t]*(new[ \t]+String[ \t]*\[[ \t]*\][ \t]*\{[^}]{0,80})?request[ \t]*\.[ \t]*getParameter[ \t]*\(/
        $stdout = /\.[ \t]*getInputStream[ \t]*\([ \t]*\)/
        $print = /\bout[ \t]*\.[ \t]*print(ln)?[ \t]*\(/

    condition:
        filesize < 1MB and
        Yamori_Helper_Webshells_JSP_Page and
        not Yamori_Helper_Webshells_Rule_Source and
        ($rt_exec or $pb) and $param and
        ($direct or ($stdout and $print))
}

rule Yamori_Webshell_JSP_Encrypted_Class_Loader : webshell jsp
{
    meta:
        description = "JSP web shell that decrypts a class sent in the request body and defines it with a custom class loader (memory-resident shells of the Behinder/Godzilla kind)."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        mitre_attack = "T1505.003"

    strings:
        $loader = /extends[ \t]+ClassLoader\b/
        $define = /\bdefineClass[ \t]*\(/
        $cipher = /Cipher[ \t]*\.[ \t]*getInstance[ \t]*\(/
        $b64 = /(Base64[ \t]*\.[ \t]*getDecoder|BASE64Decoder|Base64[ \t]*\.[ \t]*decodeBase64|DatatypeConverter[ \t]*\.[ \t]*parseBase64Binary)/
        $body = /request[ \t]*\.[ \t]*(getReader|getInputStream)[ \t]*\(/

    condition:
        filesize < 500KB and
        Yamori_Helper_Webshells_JSP_Page and
        not Yamori_Helper_Webshells_Rule_Source and
        $loader and $define and $body and ($cipher or $b64)
}

rule Yamori_Webshell_ASPX_Request_Command_Exec : webshell aspx
{
    meta:
        description = "ASP.NET web shell that starts cmd.exe or PowerShell with arguments from the request and returns the redirected output."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        mitre_attack = "T1505.003"

    strings:
        $psi = /ProcessStartInfo|Process[ \t]*\.[ \t]*Start[ \t]*\(/
        $shell = /(cmd|powershell)(\.exe)?["' \t]/ nocase
        $redirect = /RedirectStandardOutput|StandardOutput[ \t]*\.[ \t]*ReadToEnd/
        $req = /Request[ \t]*(\.[ \t]*(Form|QueryString|Params|Item))?[ \t]*[\[\(][ \t]*["']/

    condition:
        filesize < 1MB and
        Yamori_Helper_Webshells_ASP_Page and
        not Yamori_Helper_Webshells_Rule_Source and
        all of them
}

rule Yamori_Webshell_ASP_Request_Eval : webshell asp aspx
{
    meta:
        description = "ASP or ASP.NET (JScript) web shell that evaluates or executes code taken directly from the request, the one-line 'chopper' style."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        mitre_attack = "T1505.003"

    strings:
        $eval_unsafe = /\beval[ \t]*\([ \t]*Request[ \t]*(\.[ \t]*(Item|Form|QueryString))?[ \t]*[\[\(][^\]\)\n]{1,64}[\]\)][ \t]*,[ \t]*["']unsafe["']/ nocase
        $vb_exec = /\b(eval|execute|executeglobal)[ \t]*\(?[ \t]*Request[ \t]*(\.[ \t]*(Item|Form|QueryString))?[ \t]*[\(\[][ \t]*["'][^"'\n]{1,64}["'][ \t]*[\)\]]/ nocase

    condition:
        filesize < 1MB and
        Yamori_Helper_Webshells_ASP_Page and
        not Yamori_Helper_Webshells_Rule_Source and
        any of them
}

rule Yamori_Webshell_ASPX_Encrypted_Assembly_Loader : webshell aspx
{
    meta:
        description = "ASP.NET web shell that decrypts or decodes an assembly from the request and loads it in memory."
        severity = "critical"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://attack.mitre.org/techniques/T1505/003/"
        mitre_attack = "T1505.003"

    strings:
        $load = /Assembly[ \t]*\.[ \t]*Load[ \t]*\(/
        $req = /Request[ \t]*\.[ \t]*(BinaryRead|InputStream|Form|Params|Item|Cookies)|Request[ \t]*\[/
        $crypto = /RijndaelManaged|AesManaged|Aes[ \t]*\.[ \t]*Create[ \t]*\(|CreateDecryptor|Convert[ \t]*\.[ \t]*FromBase64String[ \t]*\(/
        $instance = /CreateInstance[ \t]*\(/

    condition:
        filesize < 1MB and
        Yamori_Helper_Webshells_ASP_Page and
        not Yamori_Helper_Webshells_Rule_Source and
        all of them
}
