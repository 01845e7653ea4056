/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The kernel's module system calls, as thin wrappers that return 0 or a
 * negative errno. Going through syscall(2) keeps one place where tests can
 * put a fake kernel from outside (LD_PRELOAD), as kmod's testsuite does. */

#include <stddef.h>

#ifndef MODULE_INIT_IGNORE_MODVERSIONS
#define MODULE_INIT_IGNORE_MODVERSIONS 1
#endif
#ifndef MODULE_INIT_IGNORE_VERMAGIC
#define MODULE_INIT_IGNORE_VERMAGIC 2
#endif
#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

int kernel_finit_module(int fd, const char *params, int flags);
int kernel_init_module(const void *image, size_t size, const char *params);
int kernel_delete_module(const char *name, int flags);
