/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>

#include "json-util.h"
#include "manager-client.h"

const char *manager_address(const char *address) {
        return address ?: getenv("MODLOADD_ADDRESS") ?: MODLOADD_SOCKET_PATH;
}

const char *manager_request_method(const ManagerRequest *req) {
        return req->unload ? "io.modloadd.Manager.Unload" : "io.modloadd.Manager.Load";
}

int manager_request_to_json(const ManagerRequest *req, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object(), *names = json_object_new_array();
        int r;

        if (!o || !names)
                return -ENOMEM;
        for (size_t i = 0; i < req->n_names; i++)
                if (json_object_array_add(names, json_object_new_string(req->names[i])) < 0)
                        return -ENOMEM;
        r = json_add(o, "names", TAKE_PTR(names));
        if (r >= 0 && req->unload) {
                if (req->remove_holders)
                        r = json_add_bool(o, "removeHolders", true);
                if (r >= 0 && req->ignore_commands)
                        r = json_add_bool(o, "ignoreRemove", true);
                if (r >= 0 && req->force)
                        r = json_add_bool(o, "force", true);
                if (r >= 0 && req->wait_msec > 0)
                        r = json_add_int(o, "wait", (int64_t) MIN(req->wait_msec, (uint64_t) INT64_MAX));
        } else if (r >= 0) {
                if (req->parameters)
                        r = json_add_string(o, "parameters", req->parameters);
                if (r >= 0 && req->apply_blacklist)
                        r = json_add_bool(o, "applyBlacklist", true);
                if (r >= 0 && req->ignore_commands)
                        r = json_add_bool(o, "ignoreInstall", true);
                if (r >= 0 && req->force_vermagic)
                        r = json_add_bool(o, "forceVermagic", true);
                if (r >= 0 && req->force_modversion)
                        r = json_add_bool(o, "forceModversion", true);
        }
        if (r >= 0 && req->first_time)
                r = json_add_bool(o, "firstTime", true);
        if (r >= 0 && req->dry_run)
                r = json_add_bool(o, "dryRun", true);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

int manager_reply_outcomes(json_object *reply, size_t n_names, Outcome **ret) {
        json_object *list = json_object_object_get(reply, "outcomes");
        _cleanup_free_ Outcome *outcomes = NULL;
        int r;

        if (!json_object_is_type(list, json_type_array) || json_object_array_length(list) != n_names)
                return -EBADMSG;
        outcomes = calloc(n_names + 1, sizeof(Outcome));
        if (!outcomes)
                return -ENOMEM;
        for (size_t i = 0; i < n_names; i++) {
                r = outcome_from_json(json_object_array_get_idx(list, i), &outcomes[i]);
                if (r < 0) {
                        for (size_t k = 0; k < i; k++)
                                outcome_done(&outcomes[k]);
                        return r;
                }
        }
        *ret = TAKE_PTR(outcomes);
        return 0;
}

void step_print(const Step *s) {
        switch (s->kind) {
        case STEP_INSMOD:
                if (s->path)
                        printf("insmod %s %s\n", s->path, s->options ?: "");
                break;
        case STEP_BUILTIN:
                printf("builtin %s\n", s->module);
                break;
        case STEP_INSTALL:
                printf("install %s %s\n", s->command, s->options ?: "");
                break;
        case STEP_REMOVE: {
                _cleanup_free_ char *cmd = NULL;
                if (step_expand_command(s, &cmd) >= 0)
                        printf("remove %s\n", cmd);
                break;
        }
        case STEP_RMMOD:
                printf("rmmod %s\n", s->module);
                break;
        default:
                break;
        }
        fflush(stdout);
}
