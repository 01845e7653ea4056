/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "macro.h"

/* Return the rest of s after prefix, or NULL if s does not start with it. */
static inline const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}

int safe_atou64(const char *s, uint64_t *ret);
int parse_timeout_usec(const char *s, uint64_t *ret);
bool string_has_cc(const char *s);

/* A newly allocated formatted string, or NULL when out of memory. */
char *strdup_printf(const char *format, ...) _printf_(1, 2);
