/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The varlink interface definition language: a parser for interface
 * descriptions, and a checker of JSON parameters against the methods and
 * errors they declare.
 *
 * Grammar accepted (whitespace, newlines and "#" comments are free between
 * tokens):
 *
 *     interface reverse.domain.name
 *     type Name (field: type, ...)    or    type Name (value, ...)
 *     method Name (field: type, ...) -> (field: type, ...)
 *     error Name (field: type, ...)
 *
 * Types: bool, int, float, string, object, ?T (may be null or absent),
 * []T (array), [string]T (map), a type declared with "type" (anywhere in
 * the interface), or an inline struct or enum.
 *
 * This is library code: it does not log. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* Nesting bound for types in a description and for values being checked. */
#define VARLINK_IDL_DEPTH_MAX 64U

typedef struct VarlinkIdlInterface VarlinkIdlInterface;
typedef struct VarlinkIdlMethod VarlinkIdlMethod;

/* Parse a description. Returns 0 and the interface in *ret, -ENOMEM, or
 * -EBADMSG on a syntax or semantic error (duplicate or unknown names, too
 * deep nesting, ...); then *ret_line and *ret_column (each optional, 1-based,
 * column counted in bytes) say where. *ret is untouched on failure. */
int varlink_idl_parse(const char *text, VarlinkIdlInterface **ret, unsigned *ret_line, unsigned *ret_column);

/* Returns NULL; accepts NULL. */
VarlinkIdlInterface *varlink_idl_interface_free(VarlinkIdlInterface *iface);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkIdlInterface *, varlink_idl_interface_free);

/* The interface name, e.g. "io.modloadd.Manager". */
const char *varlink_idl_interface_name(const VarlinkIdlInterface *iface);

/* Look up a method by its short name, e.g. "Load"; NULL if absent. */
const VarlinkIdlMethod *varlink_idl_interface_find_method(const VarlinkIdlInterface *iface, const char *name);
/* Methods in the order they were declared: i < n_methods. */
size_t varlink_idl_interface_n_methods(const VarlinkIdlInterface *iface);
const VarlinkIdlMethod *varlink_idl_interface_method(const VarlinkIdlInterface *iface, size_t i);
/* The short name of a method. */
const char *varlink_idl_method_name(const VarlinkIdlMethod *m);

/* Whether the interface declares an error of this short name. */
bool varlink_idl_interface_has_error(const VarlinkIdlInterface *iface, const char *name);

/* Check a method's input (resp. output) parameters, or an error's.
 * `params` may be NULL, meaning {}.
 *
 * Returns 0 if valid, -EINVAL if not, and from the error variant -ENOENT if
 * the interface declares no such error. On -EINVAL, *ret_bad_field (optional)
 * is the top-level field at fault: an unknown key, a missing required field,
 * or the field whose value (or something nested in it) has the wrong type;
 * it is NULL if `params` itself is not an object. The string belongs to
 * `iface` or to `params` and lives as long as both do. On success and on
 * -ENOENT, *ret_bad_field is set to NULL.
 *
 * Rules: every key must be a declared field; a field not marked ?T must be
 * present and not null; bool takes a JSON boolean; int a JSON integer (not a
 * double, not a string); float an integer or a double; string a string;
 * object any object; []T an array of T; [string]T an object whose values
 * are T; an enum one of its values as a string; a struct an object checked
 * by these same rules. Values nested deeper than VARLINK_IDL_DEPTH_MAX are
 * invalid. */
int varlink_idl_validate_method_input(const VarlinkIdlMethod *m, json_object *params, const char **ret_bad_field);
int varlink_idl_validate_method_output(const VarlinkIdlMethod *m, json_object *params, const char **ret_bad_field);
int varlink_idl_validate_error(const VarlinkIdlInterface *iface, const char *error_name, json_object *params,
                               const char **ret_bad_field);
