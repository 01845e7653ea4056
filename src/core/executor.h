/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Carries out what the resolver planned: module by module in plan order,
 * through the loader, running install/remove commands as kmod runs them,
 * and turns the result into an Outcome. Used by the in-process client path
 * as a whole, and step by step by the daemon's scheduler. No logging. */

#include <stdint.h>

#include "loader.h"
#include "outcome.h"
#include "resolver.h"

typedef struct LoadRequest {
        const char *name;
        const char *parameters;     /* the caller's, appended to the configured options */
        ResolveFlags resolve_flags; /* RESOLVE_APPLY_BLACKLIST, RESOLVE_IGNORE_INSTALL, RESOLVE_FIRST_TIME */
        LoadFlags load_flags;
        bool dry_run;
} LoadRequest;

typedef struct UnloadRequest {
        const char *name;
        ResolveFlags resolve_flags; /* RESOLVE_IGNORE_INSTALL, RESOLVE_REMOVE_HOLDERS, RESOLVE_FIRST_TIME */
        bool force;
        uint64_t wait_usec;
        bool dry_run;
} UnloadRequest;

/* Carry out one step. Returns 1 when it changed something (inserted, ran a
 * command, removed), 0 when nothing was needed (already in the kernel,
 * builtin, unused-check failed), or a negative errno with *ret_message set
 * to a sentence in kmod's words. Touches no libkmod state: safe in worker
 * threads while the resolver is used elsewhere. */
int execute_step(Loader *l, const Step *step, LoadFlags load_flags, bool force, uint64_t wait_usec, LoadStats *stats,
                 char **ret_message);

/* Resolve and load one name. Failures of the module are described in *ret
 * (result, error, message); the return value is negative only for an
 * invalid name (-EINVAL) or lack of memory. */
int execute_load(Resolver *r, Loader *l, const LoadRequest *req, LoadStats *stats, Outcome *ret);
int execute_unload(Resolver *r, const UnloadRequest *req, Outcome *ret);
/* The two halves of execute_unload(), for callers that plan in one thread and
 * remove in another. unload_prepare() fills *ret from the plan (or the
 * planning error) and returns 1 when steps remain to be carried out by
 * execute_unload_steps(), 0 when the outcome is final. */
int unload_prepare(Resolver *r, const UnloadRequest *req, int plan_error, const Plan *p, Outcome *ret);
void execute_unload_steps(const Plan *p, const UnloadRequest *req, Outcome *o);

/* The modules a plan touches, in order, targets included: for Outcome.modules. */
char **plan_module_list(const Plan *p);

/* Whether the kernel command line's module_blacklist= names this module. */
bool kernel_cmdline_denies(const char *module);

/* Run an install/remove command with /bin/sh -c and MODPROBE_MODULE set.
 * Returns the exit status (0..255), or a negative errno if it could not run. */
int run_module_command(const char *command, const char *module);
