/*
 * Error codes shared by every Yamori module.
 *
 * Functions return 0 on success or one of the negative YM_E* codes below.
 * The table is the single source: the enum, ym_strerror() and ym_err_name()
 * are all generated from it. Library errors (errno, CURLcode, OpenSSL,
 * libyara, cJSON) are translated into these codes once, where they occur.
 */
#ifndef YAMORI_ERR_H
#define YAMORI_ERR_H

#define YM_ERR_MAP(XX)                                                                             \
  XX(ENOMEM, "out of memory")                                                                      \
  XX(EINVAL, "invalid argument")                                                                   \
  XX(ETOOBIG, "value exceeds its size limit")                                                      \
  XX(EIO, "input/output error")                                                                    \
  XX(ENOENT, "no such file or entry")                                                              \
  XX(EEXIST, "already exists")                                                                     \
  XX(EPERM, "operation not permitted")                                                             \
  XX(EAGAIN, "resource temporarily unavailable")                                                   \
  XX(EBUSY, "resource busy")                                                                       \
  XX(ETIMEDOUT, "timed out")                                                                       \
  XX(ECANCELED, "operation canceled")                                                              \
  XX(ENOTSUP, "not supported on this system")                                                      \
  XX(EPARSE, "malformed input")                                                                    \
  XX(ETYPE, "value has the wrong type")                                                            \
  XX(ERANGE, "value out of range")                                                                 \
  XX(EUNKNOWNKEY, "unknown key")                                                                   \
  XX(ECORRUPT, "data is corrupt")                                                                  \
  XX(ECRYPTO, "cryptographic operation failed")                                                    \
  XX(ESTALE, "object changed or disappeared")                                                      \
  XX(ECLOSED, "handle is closed")                                                                  \
  XX(ENOSPC, "no space left on the device")                                                        \
  XX(ESYS, "unexpected system error")

typedef enum {
  YM_OK = 0,
  YM_ERR_BASE_ = -2000,
#define YM_ERR_ENUM_(name, msg) YM_##name,
  YM_ERR_MAP(YM_ERR_ENUM_)
#undef YM_ERR_ENUM_
      YM_ERR_END_
} ym_err_t;

/* Returns a static, human-readable description of err ("success" for 0,
 * "unknown error" for values outside the table). Never NULL. */
const char *ym_strerror(int err);

/* Returns the symbolic name of err ("YM_ETOOBIG"), or "YM_UNKNOWN". */
const char *ym_err_name(int err);

/* Translates an errno value into the closest YM_E* code (YM_ESYS when there
 * is no closer one). ym_err_from_errno(0) is YM_ESYS: a caller translating
 * errno has seen a failure. */
int ym_err_from_errno(int errnum);

#endif
