/*
 * Per-company installers.
 *
 * The build makes one generic installer file (installer/mkinstaller.sh):
 * a shell header that states its own size and the size of the compressed
 * payload after it, then the payload. A company's copy is the same bytes
 * followed by a small configuration block that the header reads:
 *
 *   "\n#yamori-config-v1\n"
 *   "YAMORI_TOKEN=ymt1....\n"
 *   ["YAMORI_HELPDESK=text\n"]
 *   "#yamori-config-end\n"
 *
 * The token carries the console's URL and certificate pin, so the
 * customer runs the file with no option at all. Everything in the block is
 * validated here, so that what the header reads is one line of known
 * characters per value.
 */
#ifndef YAMORI_CONSOLE_DIST_H
#define YAMORI_CONSOLE_DIST_H

#include "yamori/buf.h"

#include <stddef.h>

#define DIST_TEMPLATE_MAX (64u * 1024 * 1024) /* largest generic installer read */
#define DIST_TOKEN_MAX 4096                   /* the whole "ymt1." token */
#define DIST_HELPDESK_MAX 512                 /* bytes of help desk text */
#define DIST_CONFIG_MAX 16384                 /* the header reads at most this block */

/* Appends to out the per-company installer: the generic installer at
 * template_path (its own configuration block, if it has one, is dropped)
 * followed by a configuration block holding token. token must be "ymt1."
 * and 1 or more base64url characters, at most DIST_TOKEN_MAX in all.
 * Returns 0; YM_EINVAL (token malformed); YM_EPARSE (the file is not a
 * Yamori installer or its sizes do not add up); YM_ETOOBIG (the file is
 * larger than DIST_TEMPLATE_MAX, or out's cap is reached); or the error of
 * open/read (YM_ENOENT when the file is missing; symbolic links are
 * refused). On error out is left as it was. */
int dist_installer(const char *template_path, const char *token, ym_buf_t *out);

/* The same with a help desk contact shown on the installer's last page
 * (NULL or "" for none): valid UTF-8 of at most DIST_HELPDESK_MAX bytes
 * without control characters, else YM_EINVAL. */
int dist_installer_ex(const char *template_path, const char *token, const char *helpdesk,
                      ym_buf_t *out);

/* Folds a tenant's help desk text (several lines, as the dashboard keeps
 * it) into one line for dist_installer_ex(): line breaks become " / ",
 * other control characters are dropped, invalid UTF-8 bytes become '?',
 * and the result is cut at a character boundary to fit cap (at most
 * DIST_HELPDESK_MAX + 1 bytes are used). in may be NULL. */
void dist_helpdesk_line(const char *in, char *out, size_t cap);

/* Finds the generic installer when none was named: $YAMORI_INSTALLER, then
 * next to the console's own program (<dir>/yamori-installer.run, then
 * <dir>/../installer/yamori-installer.run, which is the build tree's
 * layout), then /usr/share/yamori/yamori-installer.run. Writes the first
 * that exists to out. Returns 0 or YM_ENOENT (out holds the last path
 * tried) / YM_ETOOBIG. */
int dist_find_template(char *out, size_t cap);

#endif
