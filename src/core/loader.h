/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Hands module files to the kernel, reading each file once.
 *
 * An uncompressed module, or one compressed in the format the kernel can
 * decompress itself (/sys/module/compression), goes to finit_module() as the
 * file itself, so the kernel sees the real inode (LoadPin, IMA). Anything
 * else is decompressed once, streaming, into a sealed memfd that goes to
 * finit_module(); init_module() is used only where finit_module() is
 * missing. No logging: errors come back as negative errno values, and
 * loader_strerror() words them the way kmod does. */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "decompress.h"
#include "macro.h"

/* The largest decompressed module accepted (the biggest in-tree modules are tens of MiB). */
#define LOADER_MODULE_SIZE_MAX (UINT64_C(1) << 30)

typedef enum LoadPolicy {
        LOAD_POLICY_AUTO,      /* the kernel decompresses what it can, we do the rest */
        LOAD_POLICY_USERSPACE, /* always decompress here */
        LOAD_POLICY_KERNEL,    /* always hand the file to the kernel */
        _LOAD_POLICY_MAX,
        _LOAD_POLICY_INVALID = -EINVAL,
} LoadPolicy;

const char *load_policy_to_string(LoadPolicy p);
LoadPolicy load_policy_from_string(const char *s);

typedef enum LoadFlags {
        LOAD_FORCE_VERMAGIC = 1 << 0,
        LOAD_FORCE_MODVERSION = 1 << 1,
} LoadFlags;

typedef struct LoadStats {
        uint64_t kernel_calls;       /* init_module/finit_module calls made */
        uint64_t kernel_eexist;      /* of those, answered EEXIST */
        uint64_t bytes_decompressed; /* decompressed here */
        uint64_t bytes_to_kernel;    /* bytes the kernel had to read */
} LoadStats;

typedef struct Loader Loader;

/* compression_sysfs: where the kernel says what it decompresses; NULL for /sys/module/compression. */
int loader_new(Loader **ret, LoadPolicy policy, const char *compression_sysfs);
Loader *loader_free(Loader *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(Loader *, loader_free);

/* Decompress at most n modules at once (0: no bound, the default). Kernel calls are never
 * bounded: a module's init may ask for another module while its own call has not returned. */
void loader_set_max_decompress(Loader *l, unsigned n);

/* The format the kernel decompresses itself, COMPRESSION_NONE if none. */
CompressionType loader_kernel_compression(const Loader *l);

/* Insert one module file with the given parameters. 0 when inserted,
 * -EEXIST when the kernel already has it, another negative errno on failure.
 * Counters are added to *stats (may be NULL). */
int loader_insert(Loader *l, const char *path, const char *params, LoadFlags flags, LoadStats *stats);

/* Remove a module: refuses while it is in use (-EBUSY) unless forced,
 * retrying for up to wait_usec while the kernel says it is busy. */
int loader_remove(const char *name, bool force, uint64_t wait_usec);

/* The kernel's view of a module, from /sys/module (no libkmod: safe in any thread).
 * Returns 'L'ive, 'C'oming, 'G'oing, 'B'uiltin (a sysfs entry without
 * initstate) or 0 when the kernel does not know it. */
char loader_module_state(const char *name);

/* A module's reference count from /sys/module, or a negative errno. */
int loader_module_refcount(const char *name);

/* A sentence for a failed insert or remove, in kmod's words where kmod has them. */
const char *loader_strerror(int error);
