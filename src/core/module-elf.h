/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Editing a module image in memory for a forced load through init_module(), the way kmod's
 * modprobe --force-modversion / --force-vermagic does when finit_module() is missing (and so the
 * kernel cannot be asked with MODULE_INIT_IGNORE_MODVERSIONS / MODULE_INIT_IGNORE_VERMAGIC):
 * the kernel then finds no symbol versions to check, or no vermagic string to compare.
 *
 * The image is untrusted bytes: every offset, size and count in it is checked against the
 * buffer, and nothing outside [image, image + size) is ever read or written. No logging. */

#include <stdbool.h>
#include <stddef.h>

/* Edit the ELF module image in place:
 *   modversions  clear SHF_ALLOC in the section header flags of the first "__versions" section,
 *                so the kernel does not keep it and checks no symbol CRCs. A module without
 *                __versions is left alone (as kmod does).
 *   vermagic     overwrite with NULs the first "vermagic=..." string of the first ".modinfo"
 *                section (the key included, not its terminating NUL). A module with no
 *                .modinfo, or one holding only NULs, is left alone (as kmod does); a .modinfo
 *                with strings none of which is vermagic= is an error (as in kmod).
 * With neither, the image is only checked.
 *
 * Accepted are ELFCLASS32 and ELFCLASS64 images in the host's byte order, with section headers
 * of the class's size, a section name table ending in NUL, every name inside it, and every
 * section other than SHT_NOBITS lying inside the image (the checks the kernel makes too).
 *
 * Returns 0 on success, or:
 *   -EINVAL   image is NULL
 *   -ENOEXEC  not such an ELF image, or malformed (including a .modinfo that does not end in a
 *             NUL, or one that is SHT_NOBITS, when vermagic is asked for)
 *   -ENODATA  vermagic asked for and .modinfo has strings but no vermagic=
 * On failure the image is unchanged. */
int module_elf_strip(void *image, size_t size, bool modversions, bool vermagic);
