#include "yamori/err.h"

#include <errno.h>

const char *ym_strerror(int err) {
  switch (err) {
  case YM_OK:
    return "success";
#define YM_ERR_STR_(name, msg)                                                                     \
  case YM_##name:                                                                                  \
    return msg;
    YM_ERR_MAP(YM_ERR_STR_)
#undef YM_ERR_STR_
  default:
    return "unknown error";
  }
}

const char *ym_err_name(int err) {
  switch (err) {
  case YM_OK:
    return "YM_OK";
#define YM_ERR_NAME_(name, msg)                                                                    \
  case YM_##name:                                                                                  \
    return "YM_" #name;
    YM_ERR_MAP(YM_ERR_NAME_)
#undef YM_ERR_NAME_
  default:
    return "YM_UNKNOWN";
  }
}

int ym_err_from_errno(int errnum) {
  switch (errnum) {
  case ENOMEM:
    return YM_ENOMEM;
  case EINVAL:
    return YM_EINVAL;
  case E2BIG:
  case EFBIG:
  case ENAMETOOLONG:
  case EMSGSIZE:
  case EOVERFLOW:
    return YM_ETOOBIG;
  case EIO:
    return YM_EIO;
  case ENOENT:
  case ESRCH:
  case ENOTDIR:
    return YM_ENOENT;
  case EEXIST:
    return YM_EEXIST;
  case EPERM:
  case EACCES:
  case ELOOP:
    return YM_EPERM;
  case EAGAIN:
  case EINTR:
  case ENOBUFS:
    return YM_EAGAIN;
  case EBUSY:
    return YM_EBUSY;
  case ETIMEDOUT:
    return YM_ETIMEDOUT;
  case ECANCELED:
    return YM_ECANCELED;
  case ENOSYS:
  case EOPNOTSUPP:
  case EAFNOSUPPORT:
  case EPROTONOSUPPORT:
    return YM_ENOTSUP;
  case ESTALE:
    return YM_ESTALE;
  case EBADF:
    return YM_ECLOSED;
  case ENOSPC:
  case EDQUOT:
    return YM_ENOSPC;
  default:
    return YM_ESYS;
  }
}
