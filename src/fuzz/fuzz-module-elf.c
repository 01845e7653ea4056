/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* module_elf_strip() on arbitrary bytes, with each combination of what to strip, each time on a
 * fresh copy in a buffer of exactly the input's size. A failure must leave the bytes alone, and
 * stripping modversions alone changes nothing but one section header's flags. */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "module-elf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        for (unsigned f = 0; f < 4; f++) {
                _cleanup_free_ uint8_t *img = malloc(size > 0 ? size : 1);
                size_t first = SIZE_MAX, last = 0;
                int r;

                if (!img)
                        return 0;
                if (size > 0)
                        memcpy(img, data, size);

                r = module_elf_strip(img, size, f & 1, f & 2);
                if (r != 0 && r != -ENOEXEC && r != -ENODATA)
                        abort();

                for (size_t i = 0; i < size; i++)
                        if (img[i] != data[i]) {
                                first = MIN(first, i);
                                last = i;
                        }
                if (first == SIZE_MAX)
                        continue;
                /* something changed: only on success, only what was asked for */
                if (r != 0 || f == 0)
                        abort();
                if (f == 1 && last - first >= sizeof_field(Elf64_Shdr, sh_flags))
                        abort();
        }
        return 0;
}
