/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What happened to one requested name: the Outcome of the varlink contract. */

#include <errno.h>
#include <stdbool.h>

#include "macro.h"

typedef enum OutcomeResult {
        OUTCOME_INSERTED,
        OUTCOME_LIVE,
        OUTCOME_BUILTIN,
        OUTCOME_BLACKLISTED,
        OUTCOME_NOT_FOUND,
        OUTCOME_FAILED,
        OUTCOME_DRY_RUN,
        OUTCOME_REMOVED,
        OUTCOME_NOT_LOADED,
        OUTCOME_IN_USE,
        _OUTCOME_RESULT_MAX,
        _OUTCOME_RESULT_INVALID = -EINVAL,
} OutcomeResult;

typedef struct Outcome {
        char *name;     /* as asked */
        char **modules; /* what it resolved to, dependencies first; NULL-terminated, never NULL */
        OutcomeResult result;
        int error;     /* negative errno behind a failure, else 0 */
        char *message; /* a sentence a person can act on, or NULL */
        bool shared;
} Outcome;

const char *outcome_result_to_string(OutcomeResult r); /* "inserted", "notFound", ... as in the interface */
OutcomeResult outcome_result_from_string(const char *s);
/* Whether a command-line tool should count this as success. */
bool outcome_result_is_success(OutcomeResult r);

void outcome_done(Outcome *o);
int outcome_set_message(Outcome *o, const char *format, ...) _printf_(2, 3);

/* The Outcome as the varlink interface spells it. */
#include <json-c/json.h>
json_object *outcome_to_json(const Outcome *o);
int outcome_from_json(json_object *j, Outcome *ret);
