/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

static inline void json_object_putp(json_object **p) {
        if (*p)
                json_object_put(*p);
}

/* Add a member; takes over `value` even on failure. Returns 0 or -ENOMEM. */
int json_add(json_object *o, const char *key, json_object *value);
int json_add_string(json_object *o, const char *key, const char *value);
int json_add_int(json_object *o, const char *key, int64_t value);
int json_add_bool(json_object *o, const char *key, bool value);
