/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The modules-load.d parser and the kernel command line parser on arbitrary
 * bytes: the input is read as a configuration file and as a command line. */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "modules-load.h"
#include "strv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(strv_freep) char **names = calloc(1, sizeof(char *));
        _cleanup_free_ char *text = malloc(size + 1);
        FILE *f;

        if (!names || !text || size == 0)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';

        f = fmemopen(text, size, "r");
        if (f) {
                (void) modules_load_read(f, &names);
                fclose(f);
        }
        (void) modules_load_from_cmdline(text, true, &names);
        (void) modules_load_from_cmdline(text, false, &names);
        return 0;
}
