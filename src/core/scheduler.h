/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The scheduler: every load and unload goes through one, in the daemon and in-process alike.
 *
 * A table keyed by canonical module name holds what is being done to each module. A job (one
 * requested name and its plan) turns its steps into the nodes of a dependency graph
 * (Step.after): a node starts as soon as the nodes it waits for are done, so independent modules
 * load at the same time. A node that reaches a module which another node is loading the same way
 * (same kind of step, options, file and force flags) joins that operation instead of starting
 * another; anything else done to the module — a step of another kind, other options, an unload —
 * waits behind it and then runs against what the kernel has by then. An unload also waits for
 * the loads in flight of the modules that depend on it. A module is never handed to the kernel
 * twice at once, whoever asks.
 *
 * Each operation runs on a thread started for it and ended with it: their number is bounded by
 * the distinct modules in flight, never by the number of callers, and a kernel call or an install
 * command never waits for a slot that a request it causes needs (a module's init that asks the
 * kernel for another module, which comes back through the modprobe path while the outer call
 * has not returned).
 *
 * Everything else runs on the owner's thread: it polls scheduler_get_fd() and calls
 * scheduler_dispatch(), which delivers finished operations and calls the jobs' callbacks. A
 * callback is never called from inside scheduler_load()/scheduler_unload(). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "executor.h"
#include "loader.h"
#include "outcome.h"
#include "resolver.h"

typedef struct Scheduler Scheduler;
typedef struct SchedJob SchedJob;

/* How a job ended. The callback may take message (TAKE_PTR). */
typedef struct SchedResult {
        OutcomeResult result; /* inserted, live, builtin, failed; removed, inUse, failed */
        int error;            /* negative errno behind a failure */
        char *message;
        bool shared; /* a target was loaded by an operation another job started, or was in the kernel */
} SchedResult;

typedef void (*SchedJobDone)(SchedJob *job, SchedResult *result, void *userdata);

/* One operation on one module, for logs, counters and events. */
typedef struct SchedOpInfo {
        const char *module;
        StepKind kind;
        int result; /* when finished: 1 done, 0 nothing was needed, negative errno */
        const char *message;
        const LoadStats *stats;
        uint64_t duration_usec;
        size_t n_waiters; /* nodes (of as many jobs) that took this result */
        bool optional;    /* the first of them could do without it */
        uid_t uid;        /* who asked first */
        pid_t pid;
} SchedOpInfo;

/* Who a job is for, and how. */
typedef struct SchedCaller {
        uid_t uid;
        pid_t pid;
} SchedCaller;

typedef struct SchedulerCallbacks {
        void (*op_started)(const SchedOpInfo *info, void *userdata);
        void (*op_finished)(const SchedOpInfo *info, void *userdata);
        void *userdata;
} SchedulerCallbacks;

int scheduler_new(Scheduler **ret, Loader *loader);
/* Stops starting operations, waits for those in flight, and delivers every job's callback. */
Scheduler *scheduler_free(Scheduler *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Scheduler *, scheduler_free);

void scheduler_set_callbacks(Scheduler *s, const SchedulerCallbacks *callbacks);

/* Readable when scheduler_dispatch() has something to deliver. */
int scheduler_get_fd(const Scheduler *s);
/* Deliver what finished. Returns the number of operations and jobs delivered. */
int scheduler_dispatch(Scheduler *s);
/* Wait up to timeout_usec (USEC_INFINITY: no bound) for something to deliver, and deliver it. */
int scheduler_wait(Scheduler *s, uint64_t timeout_usec);

/* From now on a node that would start an operation fails with -ECANCELED instead. */
void scheduler_cancel_new(Scheduler *s);
/* Operations in flight or waiting for their module, and jobs not yet delivered. */
bool scheduler_busy(const Scheduler *s);

/* Carry out a load plan (PLAN_RESULT_STEPS, planned with RESOLVE_IGNORE_LOADED or not): each
 * node checks the kernel's state of its module first — live or builtin: nothing to do; coming or
 * going: wait (bounded) until it settles. first_time: a target the kernel has already fails with
 * -EEXIST. A required step that fails (or such a target) fails the job, and the steps that wait
 * for it are not carried out; the others go on, as kmod goes on with the other modules an alias
 * matches. The callback comes when every step is done or skipped, with the first failure. The
 * plan must stay valid until the callback has run. */
int scheduler_load(Scheduler *s, const Plan *p, LoadFlags load_flags, bool first_time, const SchedCaller *caller,
                   SchedJobDone done, void *userdata, SchedJob **ret);
/* Carry out an unload plan in its order (each step after the one before), with req's force and
 * wait. The plan must stay valid until the callback has run. */
int scheduler_unload(Scheduler *s, const Plan *p, const UnloadRequest *req, const SchedCaller *caller,
                     SchedJobDone done, void *userdata, SchedJob **ret);

/* The module one of the job's nodes is waiting for now, or NULL: for messages. */
const char *sched_job_waiting_for(const SchedJob *j);

/* Run one job in this process to its end: for the in-process paths, which have nothing else to do
 * meanwhile. Fills *ret (name and modules are the caller's). */
int scheduler_run_load(Scheduler *s, const Plan *p, LoadFlags load_flags, bool first_time, SchedResult *ret);
int scheduler_run_unload(Scheduler *s, const Plan *p, const UnloadRequest *req, SchedResult *ret);
