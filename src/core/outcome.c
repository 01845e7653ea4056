/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outcome.h"
#include "strv.h"

static const char *const result_names[_OUTCOME_RESULT_MAX] = {
        [OUTCOME_INSERTED] = "inserted",    [OUTCOME_LIVE] = "live",
        [OUTCOME_BUILTIN] = "builtin",      [OUTCOME_BLACKLISTED] = "blacklisted",
        [OUTCOME_NOT_FOUND] = "notFound",   [OUTCOME_FAILED] = "failed",
        [OUTCOME_DRY_RUN] = "dryRun",       [OUTCOME_REMOVED] = "removed",
        [OUTCOME_NOT_LOADED] = "notLoaded", [OUTCOME_IN_USE] = "inUse",
};

const char *outcome_result_to_string(OutcomeResult r) {
        return r >= 0 && r < _OUTCOME_RESULT_MAX ? result_names[r] : NULL;
}

bool outcome_result_is_success(OutcomeResult r) {
        return IN_SET(r, OUTCOME_INSERTED, OUTCOME_LIVE, OUTCOME_BUILTIN, OUTCOME_DRY_RUN, OUTCOME_REMOVED,
                      OUTCOME_NOT_LOADED);
}

void outcome_done(Outcome *o) {
        free(o->name);
        strv_free(o->modules);
        free(o->message);
        *o = (Outcome){};
}

int outcome_set_message(Outcome *o, const char *format, ...) {
        va_list ap;
        char *m;

        va_start(ap, format);
        if (vasprintf(&m, format, ap) < 0)
                m = NULL;
        va_end(ap);
        if (!m)
                return -ENOMEM;
        free(o->message);
        o->message = m;
        return 0;
}

OutcomeResult outcome_result_from_string(const char *s) {
        for (OutcomeResult r = 0; s && r < _OUTCOME_RESULT_MAX; r++)
                if (streq(s, result_names[r]))
                        return r;
        return _OUTCOME_RESULT_INVALID;
}

json_object *outcome_to_json(const Outcome *o) {
        json_object *j = json_object_new_object(), *mods = json_object_new_array();
        bool ok = j && mods;

        for (char **m = o->modules; ok && m && *m; m++)
                ok = json_object_array_add(mods, json_object_new_string(*m)) >= 0;
        ok = ok && json_object_object_add(j, "name", json_object_new_string(o->name)) >= 0;
        if (ok) {
                ok = json_object_object_add(j, "modules", mods) >= 0;
                if (ok)
                        mods = NULL;
        }
        ok = ok &&
             json_object_object_add(j, "result", json_object_new_string(outcome_result_to_string(o->result))) >= 0;
        if (ok && o->error != 0) {
                const char *n = strerrorname_np(-o->error);
                ok = json_object_object_add(j, "errno", json_object_new_int(-o->error)) >= 0 &&
                     (!n || json_object_object_add(j, "errnoName", json_object_new_string(n)) >= 0);
        }
        ok = ok && (!o->message || json_object_object_add(j, "message", json_object_new_string(o->message)) >= 0);
        ok = ok && json_object_object_add(j, "shared", json_object_new_boolean(o->shared)) >= 0;
        json_object_put(mods);
        if (!ok) {
                json_object_put(j);
                return NULL;
        }
        return j;
}

int outcome_from_json(json_object *j, Outcome *ret) {
        json_object *v, *mods;
        Outcome o = {};

        if (!json_object_is_type(j, json_type_object))
                return -EBADMSG;
        if (!json_object_object_get_ex(j, "name", &v) || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        o.name = strdup(json_object_get_string(v));
        o.modules = calloc(1, sizeof(char *));
        if (!o.name || !o.modules)
                goto nomem;
        if (json_object_object_get_ex(j, "modules", &mods) && json_object_is_type(mods, json_type_array))
                for (size_t i = 0; i < json_object_array_length(mods); i++) {
                        json_object *m = json_object_array_get_idx(mods, i);
                        if (json_object_is_type(m, json_type_string) &&
                            strv_extend(&o.modules, json_object_get_string(m)) < 0)
                                goto nomem;
                }
        o.result = json_object_object_get_ex(j, "result", &v) ? outcome_result_from_string(json_object_get_string(v))
                                                              : _OUTCOME_RESULT_INVALID;
        if (o.result < 0) {
                outcome_done(&o);
                return -EBADMSG;
        }
        if (json_object_object_get_ex(j, "errno", &v) && json_object_is_type(v, json_type_int))
                o.error = -abs(json_object_get_int(v));
        if (json_object_object_get_ex(j, "message", &v) && json_object_is_type(v, json_type_string)) {
                o.message = strdup(json_object_get_string(v));
                if (!o.message)
                        goto nomem;
        }
        o.shared = json_object_object_get_ex(j, "shared", &v) && json_object_get_boolean(v);
        *ret = o;
        return 0;
nomem:
        outcome_done(&o);
        return -ENOMEM;
}
