/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Carries out one step of what the resolver planned, through the loader,
 * running install/remove commands as kmod runs them; turns plans and their
 * results into Outcomes. The scheduler (scheduler.h) calls execute_step()
 * for every step of every path; execute_load()/execute_unload() run one
 * name in-process through a scheduler. No logging. */

#include <stdint.h>

#include "loader.h"
#include "outcome.h"
#include "resolver.h"
#include "timeutil.h"

typedef struct Scheduler Scheduler;

/* How long a step waits for a module another loader has coming (or the kernel is taking out)
 * to settle before it gives up with -ETIMEDOUT. */
#define EXECUTOR_SETTLE_TIMEOUT_USEC (60 * USEC_PER_SEC)

/* Loaders in different processes (the daemon, and modloadctl or the modprobe shim loading
 * in-process where they find no daemon) hand a module to the kernel once: an insmod step holds
 * an flock() on EXECUTOR_LOCK_DIR/MODULE from its check of the kernel's state of the module to
 * the end of its kernel call, and nothing else. The directory is made 0755 (the files 0600) and
 * used only when it is root's and nobody else may write to it; where it cannot be had
 * (unprivileged, a read-only /run) a step goes on without the lock. A step that finds the lock
 * taken waits, polling, until the holder is done (the module is in the kernel then: nothing to
 * do) or EXECUTOR_SETTLE_TIMEOUT_USEC passed, which bounds a module whose init asks the kernel
 * for that very module (the nested loader waits for a lock its own outer load holds); it then
 * goes on without the lock. The empty files stay, one per module name loaded since boot. */
#define EXECUTOR_RUNTIME_DIR "/run/modloadd"
#define EXECUTOR_LOCK_DIR    EXECUTOR_RUNTIME_DIR "/lock"

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
 * to a sentence in kmod's words. An insmod or install step first waits
 * (EXECUTOR_SETTLE_TIMEOUT_USEC at most) while the module is coming or
 * going, and does nothing when the kernel then has it; an insmod step does
 * that and its kernel call under the module's lock (EXECUTOR_LOCK_DIR),
 * one bound for both waits. Touches no libkmod state: safe in any thread
 * while the resolver is used elsewhere. */
int execute_step(Loader *l, const Step *step, LoadFlags load_flags, bool force, uint64_t wait_usec, LoadStats *stats,
                 char **ret_message);

/* Turn a load plan (or the planning error) into the start of an Outcome, as kmod decides before
 * it loads anything: not found, blacklisted (unless in the kernel), builtin, every target in the
 * kernel already (live; -EEXIST with RESOLVE_FIRST_TIME), dry run. Returns 1 when the plan's steps
 * must be carried out (the outcome then says live until they are), 0 when *ret is final, or
 * -ENOMEM. The plan may be made with RESOLVE_IGNORE_LOADED (then it can be cached). */
int load_prepare(Resolver *r, const LoadRequest *req, int plan_error, const Plan *p, Outcome *ret);
/* The same for an unload plan: 1 when steps remain to be carried out, 0 when *ret is final. */
int unload_prepare(Resolver *r, const UnloadRequest *req, int plan_error, const Plan *p, Outcome *ret);
/* The flags to plan an unload with (a wait adds RESOLVE_UNLOAD_WAIT). */
ResolveFlags unload_resolve_flags(const UnloadRequest *req);

/* Resolve one name and carry it out in this process through the scheduler. Failures of the
 * module are described in *ret (result, error, message); the return value is negative only for
 * an invalid name (-EINVAL) or lack of memory. */
int execute_load(Scheduler *s, Resolver *r, const LoadRequest *req, Outcome *ret);
int execute_unload(Scheduler *s, Resolver *r, const UnloadRequest *req, Outcome *ret);

/* The modules a plan touches, in order, targets included: for Outcome.modules. */
char **plan_module_list(const Plan *p);

/* Whether the kernel command line's module_blacklist= names this module. */
bool kernel_cmdline_denies(const char *module);

/* Run an install/remove command with /bin/sh -c and MODPROBE_MODULE set.
 * Returns the exit status (0..255), or a negative errno if it could not run. */
int run_module_command(const char *command, const char *module);
