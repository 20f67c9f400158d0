/* SPDX-License-Identifier: MIT */
/*
 * The inline calls of include/iopool/inline.h compiled once more as the
 * library's exported functions of the same names (liburing's ffi.c): for
 * programs built with IOP_NO_INLINE, other languages, and dlsym(). Same
 * bodies, same behaviour, same checks.
 */
#define IOPINLINE __attribute__((visibility("default")))
#define IOP__EMIT_INLINE 1
#include "iopool.h"
