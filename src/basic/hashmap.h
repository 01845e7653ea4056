/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A small hash table from strings to pointers. Keys are copied; values are
 * the caller's (hashmap_free() can free them with the function given). */

#include <stddef.h>

#include "macro.h"

typedef struct Hashmap Hashmap;
typedef void (*HashmapFreeFunc)(void *value);

Hashmap *hashmap_new(HashmapFreeFunc free_value);
Hashmap *hashmap_free(Hashmap *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(Hashmap *, hashmap_free);
void *hashmap_get(const Hashmap *h, const char *key);
/* -EEXIST if the key is there already. */
int hashmap_put(Hashmap *h, const char *key, void *value);
/* Returns the value that was stored, or NULL. */
void *hashmap_remove(Hashmap *h, const char *key);
/* Drop all entries (values freed with free_value). */
void hashmap_clear(Hashmap *h);
size_t hashmap_size(const Hashmap *h);
