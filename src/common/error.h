// Errors with context: the public Error type and its helpers (str_cat, throw_error, the
// UCCL_EP_CHECK_* macros) live in include/uccl_ep/error.h.
#pragma once

#include "uccl_ep/error.h"
