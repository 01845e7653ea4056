/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The request table and the scheduler: one load per module for all callers.
 *
 * Each name of a Load call becomes a Request that walks its plan (from the
 * resolution cache) step by step, in kmod's order. A step that needs the
 * kernel becomes a Job keyed by the module's canonical name; a Request that
 * reaches a module some Job is already loading joins that Job instead of
 * starting another, and gets the same result. Jobs run on the worker pool;
 * everything here runs on the event loop. A call is answered when all its
 * names are done, or when its time runs out — then the loads go on. */

#include "executor.h"
#include "manager.h"

typedef struct CachedPlan {
        unsigned n_ref;
        Plan *plan; /* NULL when error is set */
        int error;  /* negative errno: no plan (-ENOENT: nothing matches) */
} CachedPlan;

int broker_setup(Manager *m);
void broker_shutdown(Manager *m);

/* Take over a Load/Unload call: every name is valid and the count within limits. */
int broker_load(Manager *m, VarlinkCall *call, char **names, const LoadRequest *options);
int broker_unload(Manager *m, VarlinkCall *call, char **names, const UnloadRequest *options);

/* A plan for a name (cached); the caller owns a reference. */
int broker_resolve(Manager *m, const char *name, const char *parameters, ResolveFlags flags, CachedPlan **ret);
CachedPlan *cached_plan_unref(CachedPlan *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(CachedPlan *, cached_plan_unref);

/* Re-read indexes and configuration; forget cached resolutions. */
int broker_reload(Manager *m);
unsigned broker_n_pending(const Manager *m, uid_t uid);
