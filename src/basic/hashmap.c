/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"

typedef struct Entry {
        struct Entry *next;
        void *value;
        char key[];
} Entry;

struct Hashmap {
        Entry **buckets;
        size_t n_buckets, n_entries;
        HashmapFreeFunc free_value;
};

/* FNV-1a: short keys, no adversary we need to fear beyond bounded sizes. */
static size_t hash_string(const char *s) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * UINT64_C(0x100000001b3);
        return (size_t) h;
}

Hashmap *hashmap_new(HashmapFreeFunc free_value) {
        Hashmap *h = calloc(1, sizeof(Hashmap));

        if (!h)
                return NULL;
        h->n_buckets = 64;
        h->buckets = calloc(h->n_buckets, sizeof(Entry *));
        if (!h->buckets) {
                free(h);
                return NULL;
        }
        h->free_value = free_value;
        return h;
}

void hashmap_clear(Hashmap *h) {
        for (size_t i = 0; i < h->n_buckets; i++)
                while (h->buckets[i]) {
                        Entry *e = h->buckets[i];
                        h->buckets[i] = e->next;
                        if (h->free_value)
                                h->free_value(e->value);
                        free(e);
                }
        h->n_entries = 0;
}

Hashmap *hashmap_free(Hashmap *h) {
        if (!h)
                return NULL;
        hashmap_clear(h);
        free(h->buckets);
        free(h);
        return NULL;
}

static Entry **find(const Hashmap *h, const char *key) {
        Entry **e = &h->buckets[hash_string(key) % h->n_buckets];
        while (*e && !streq((*e)->key, key))
                e = &(*e)->next;
        return e;
}

void *hashmap_get(const Hashmap *h, const char *key) {
        Entry *e = *find(h, key);
        return e ? e->value : NULL;
}

static void grow(Hashmap *h) {
        size_t n = h->n_buckets * 2;
        Entry **b = calloc(n, sizeof(Entry *));

        if (!b)
                return; /* stay slower, still correct */
        for (size_t i = 0; i < h->n_buckets; i++)
                while (h->buckets[i]) {
                        Entry *e = h->buckets[i];
                        h->buckets[i] = e->next;
                        e->next = b[hash_string(e->key) % n];
                        b[hash_string(e->key) % n] = e;
                }
        free(h->buckets);
        h->buckets = b;
        h->n_buckets = n;
}

int hashmap_put(Hashmap *h, const char *key, void *value) {
        size_t l = strlen(key);
        Entry *e;

        if (*find(h, key))
                return -EEXIST;
        if (h->n_entries >= h->n_buckets)
                grow(h);
        e = malloc(sizeof(Entry) + l + 1);
        if (!e)
                return -ENOMEM;
        memcpy(e->key, key, l + 1);
        e->value = value;
        Entry **slot = &h->buckets[hash_string(key) % h->n_buckets];
        e->next = *slot;
        *slot = e;
        h->n_entries++;
        return 0;
}

void *hashmap_remove(Hashmap *h, const char *key) {
        Entry **p = find(h, key), *e = *p;
        void *v;

        if (!e)
                return NULL;
        *p = e->next;
        v = e->value;
        free(e);
        h->n_entries--;
        return v;
}

size_t hashmap_size(const Hashmap *h) {
        return h->n_entries;
}
