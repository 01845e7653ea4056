/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What modloadctl and the modprobe shim both say to the daemon, and how
 * they read its answers and print plans. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "outcome.h"
#include "resolver.h"
#include "timeutil.h"

typedef struct ManagerRequest {
        bool unload;
        char **names;
        size_t n_names;
        /* Load */
        const char *parameters;
        bool apply_blacklist;
        bool force_vermagic;
        bool force_modversion;
        /* Unload */
        bool remove_holders;
        bool force;
        uint64_t wait_msec;
        /* both */
        bool ignore_commands; /* ignoreInstall / ignoreRemove */
        bool first_time;
        bool dry_run;
} ManagerRequest;

/* The daemon's socket: the given address, else $MODLOADD_ADDRESS, else the default. */
const char *manager_address(const char *address);

/* A connection that breaks before the answer (the daemon died: EOF, ECONNRESET, EPIPE) is made
 * again and the call asked again, MANAGER_CALL_ATTEMPTS_MAX calls in all, within the call's
 * timeout: a load is idempotent, and the socket unit keeps the socket while systemd starts the
 * daemon again. A connect that finds nobody after a break is tried again after
 * MANAGER_RETRY_DELAY_USEC, doubling each time (a daemon restarted on the path, not through its
 * socket, needs a moment to listen). */
#define MANAGER_CALL_ATTEMPTS_MAX 5U
#define MANAGER_RETRY_DELAY_USEC  (50 * USEC_PER_MSEC)

/* Connect to the daemon at address and make one call, as above. Returns 0 when the daemon
 * answered: *ret_reply, and *ret_error (NULL unless it refused the call). Otherwise a negative
 * errno, with *ret_unreachable true when no daemon could be asked at all: the first connect
 * failed (nobody listens, or its queue stayed full for connect_timeout_usec), or every
 * connection broke, or after a break nobody listened any more. False for a daemon that was
 * reached and did not answer in time (-ETIMEDOUT) or answered what cannot be read. */
int manager_call(const char *address, const char *method, json_object *parameters, uint64_t connect_timeout_usec,
                 uint64_t timeout_usec, json_object **ret_reply, char **ret_error, bool *ret_unreachable);
/* The method and the parameters of a Load or Unload call. */
const char *manager_request_method(const ManagerRequest *req);
int manager_request_to_json(const ManagerRequest *req, json_object **ret);
/* One outcome per name from a Load/Unload reply; -EBADMSG when it does not have them. */
int manager_reply_outcomes(json_object *reply, size_t n_names, Outcome **ret);

/* One step as modprobe --show-depends prints it. */
void step_print(const Step *s);
