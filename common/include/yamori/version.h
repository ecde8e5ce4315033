/*
 * Version of Yamori and of the libraries a program runs with.
 */
#ifndef YAMORI_VERSION_H
#define YAMORI_VERSION_H

#include "yamori/buf.h"

/* The project version, "MAJOR.MINOR.PATCH". */
const char *ym_version(void);

/* Appends "<prog> <version>" and one line per library (libyara, OpenSSL,
 * libuv, libcurl, zlib, cJSON) with the version the program runs with
 * (libyara has no run-time query: the version built against is shown). */
int ym_version_report(ym_buf_t *b, const char *prog);

#endif
