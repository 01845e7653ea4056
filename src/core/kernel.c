/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernel.h"
#include "macro.h"

int kernel_finit_module(int fd, const char *params, int flags) {
        return syscall(SYS_finit_module, fd, params ?: "", flags) < 0 ? negative_errno() : 0;
}

int kernel_init_module(const void *image, size_t size, const char *params) {
        return syscall(SYS_init_module, image, size, params ?: "") < 0 ? negative_errno() : 0;
}

int kernel_delete_module(const char *name, int flags) {
        return syscall(SYS_delete_module, name, flags) < 0 ? negative_errno() : 0;
}
