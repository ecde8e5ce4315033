/*
 * Yamori default rule set: EICAR anti-virus test file.
 *
 * The EICAR definition: a file that starts with the 68-byte test string,
 * optionally followed by white space (space, tab, LF, CR, CTRL-Z), and is
 * at most 128 bytes long. A file that merely contains the string somewhere
 * (a log, a mail archive, a rule file, this file) is not a test file.
 */

rule Yamori_EICAR_Test_File : test eicar
{
    meta:
        description = "Standard EICAR anti-virus test file, used to prove that detection, alerting and response work end to end."
        severity = "low"
        author = "Yamori project"
        date = "2026-11-25"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"

    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

    condition:
        filesize >= 68 and filesize <= 128 and
        $eicar at 0 and
        (
            filesize == 68 or
            for all i in (68 .. filesize - 1) : (
                uint8(i) == 0x20 or uint8(i) == 0x09 or uint8(i) == 0x0A or
                uint8(i) == 0x0D or uint8(i) == 0x1A
            )
        )
}
