/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What modloadctl and the modprobe shim both say to the daemon, and how
 * they read its answers and print plans. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "outcome.h"
#include "resolver.h"

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
/* The method and the parameters of a Load or Unload call. */
const char *manager_request_method(const ManagerRequest *req);
int manager_request_to_json(const ManagerRequest *req, json_object **ret);
/* One outcome per name from a Load/Unload reply; -EBADMSG when it does not have them. */
int manager_reply_outcomes(json_object *reply, size_t n_names, Outcome **ret);

/* One step as modprobe --show-depends prints it. */
void step_print(const Step *s);
