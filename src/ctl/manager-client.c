/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "json-util.h"
#include "manager-client.h"
#include "varlink-client.h"

const char *manager_address(const char *address) {
        return address ?: getenv("MODLOADD_ADDRESS") ?: MODLOADD_SOCKET_PATH;
}

static uint64_t time_left(uint64_t deadline) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (deadline == USEC_INFINITY)
                return USEC_INFINITY;
        return deadline > now ? deadline - now : 0;
}

int manager_call(const char *address, const char *method, json_object *parameters, uint64_t connect_timeout_usec,
                 uint64_t timeout_usec, json_object **ret_reply, char **ret_error, bool *ret_unreachable) {
        uint64_t now = now_usec(CLOCK_MONOTONIC), delay = MANAGER_RETRY_DELAY_USEC;
        uint64_t deadline = timeout_usec == USEC_INFINITY || timeout_usec > USEC_INFINITY - now ? USEC_INFINITY
                                                                                                : now + timeout_usec;
        bool broken = false;
        int r;

        for (unsigned attempt = 1;; attempt++) {
                _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
                json_object *reply = NULL;
                char *error = NULL;

                r = varlink_client_connect(&c, address, MIN(connect_timeout_usec, time_left(deadline)));
                if (r >= 0) {
                        r = varlink_client_call(c, method, parameters, time_left(deadline), &reply, &error);
                        if (r >= 0) {
                                *ret_reply = reply;
                                *ret_error = error;
                                *ret_unreachable = false;
                                return 0;
                        }
                        if (!IN_SET(r, -ECONNRESET, -EPIPE)) {
                                /* Reached, and it did not answer in time or not readably. */
                                *ret_unreachable = false;
                                return r;
                        }
                        /* The daemon went away before it answered: ask again, the new one. */
                        broken = true;
                        if (attempt >= MANAGER_CALL_ATTEMPTS_MAX || time_left(deadline) == 0)
                                break;
                        continue;
                }
                /* Nobody listens: at once no daemon at all; after a break maybe one on its way. */
                if (!broken || attempt >= MANAGER_CALL_ATTEMPTS_MAX || time_left(deadline) <= delay)
                        break;
                (void) nanosleep(&(struct timespec){ .tv_sec = (time_t) (delay / USEC_PER_SEC),
                                                     .tv_nsec = (long) (delay % USEC_PER_SEC * NSEC_PER_USEC) },
                                 NULL);
                delay *= 2;
        }
        *ret_unreachable = true;
        return r;
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
