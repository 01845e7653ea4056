/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "json-util.h"
#include "log.h"
#include "strutil.h"
#include "strv.h"

typedef struct Batch Batch;
typedef struct Request Request;
typedef struct Job Job;
typedef struct UnloadJob UnloadJob;

typedef struct UidPending {
        uid_t uid;
        unsigned n;
} UidPending;

/* One name of a call, walking its plan. */
struct Request {
        Batch *batch;
        size_t index;
        CachedPlan *plan;
        size_t next_step;
        Job *waiting;    /* the Job this request waits for */
        bool changed;    /* a step did something for it */
        bool shared;     /* it joined another's load, or found its target in the kernel */
        bool first_time; /* --first-time: a target already in the kernel is a failure */
        bool done;
};

/* One Load or Unload call. */
struct Batch {
        Manager *manager;
        Batch *prev, *next;
        VarlinkCall *call;
        bool unload;
        uid_t uid;
        pid_t pid;
        LoadFlags load_flags;
        Outcome *outcomes;
        Request *requests;
        size_t n, n_pending;
        sd_event_source *timeout_source;
        bool answered; /* the caller has its reply (time ran out); the work goes on */
};

/* One step in flight in a worker: a module load keyed by its name, or the
 * whole of one unload. */
struct Job {
        WorkItem work;
        Manager *manager;
        char *key;        /* module name in m->jobs; NULL for unload jobs */
        const Step *step; /* of plan (kept alive by the reference below) */
        CachedPlan *plan;
        LoadFlags load_flags;
        Request **waiters;
        size_t n_waiters;
        pid_t pid; /* who asked first */
        uid_t uid;
        uint64_t start_usec;
        /* Filled in by the worker. */
        int result;
        char *message;
        LoadStats stats;
        uint64_t duration_usec;
};

/* The whole of one unload, in a worker. */
struct UnloadJob {
        WorkItem work;
        Request *req;
        Manager *manager;
        Plan *plan;
        UnloadRequest options;
        Outcome outcome;
};

static void request_advance(Request *req);

/* --- resolution cache ----------------------------------------------------- */

CachedPlan *cached_plan_unref(CachedPlan *p) {
        if (!p || --p->n_ref > 0)
                return NULL;
        plan_free(p->plan);
        free(p);
        return NULL;
}

static void cached_plan_unref_void(void *p) {
        cached_plan_unref(p);
}

int broker_reload(Manager *m) {
        Resolver *r = NULL;
        int e;

        e = resolver_new(&r, &m->resolver_config);
        if (e < 0)
                return e;
        resolver_free(m->resolver);
        m->resolver = r;
        hashmap_clear(m->plan_cache);
        return 0;
}

int broker_resolve(Manager *m, const char *name, const char *parameters, ResolveFlags flags, CachedPlan **ret) {
        _cleanup_free_ char *key = NULL;
        CachedPlan *p;
        int e;

        /* No module directory at start (an initrd before the root is mounted, say): try again now. */
        if (!m->resolver) {
                e = broker_reload(m);
                if (e < 0)
                        return e;
        }

        /* A depmod run or an edited modprobe.d makes what we know stale. */
        if (resolver_is_stale(m->resolver)) {
                e = broker_reload(m);
                if (e < 0)
                        log_warning_errno(e, "Failed to re-read module indexes, using the old ones: %m");
                else
                        log_info("Module indexes or configuration changed, re-read them.");
        }

        /* --first-time depends on what the kernel has now: never cached. */
        if (!(flags & RESOLVE_FIRST_TIME)) {
                key = strdup_printf("%s%c%u%c%s", name, 0x1f, (unsigned) flags, 0x1f, parameters ?: "");
                if (!key)
                        return -ENOMEM;
                p = hashmap_get(m->plan_cache, key);
                if (p) {
                        m->stats.resolve_cache_hits++;
                        p->n_ref++;
                        *ret = p;
                        return 0;
                }
        }

        p = calloc(1, sizeof(CachedPlan));
        if (!p)
                return -ENOMEM;
        p->n_ref = 1;
        e = resolver_plan_load(m->resolver, name, parameters, flags | RESOLVE_IGNORE_LOADED, &p->plan);
        if (e == -ENOMEM) {
                free(p);
                return e;
        }
        p->error = e < 0 ? e : 0;

        if (key) {
                if (hashmap_size(m->plan_cache) >= MANAGER_RESOLVE_CACHE_MAX)
                        hashmap_clear(m->plan_cache);
                if (hashmap_put(m->plan_cache, key, p) >= 0)
                        p->n_ref++;
        }
        *ret = p;
        return 0;
}

/* --- pending counts per UID ----------------------------------------------- */

static UidPending *uid_pending(Manager *m, uid_t uid, bool create) {
        for (size_t i = 0; i < m->n_uid_pending; i++)
                if (m->uid_pending[i].uid == uid)
                        return &m->uid_pending[i];
        if (!create)
                return NULL;
        UidPending *n = reallocarray(m->uid_pending, m->n_uid_pending + 1, sizeof(UidPending));
        if (!n)
                return NULL;
        m->uid_pending = n;
        m->uid_pending[m->n_uid_pending] = (UidPending){ .uid = uid };
        return &m->uid_pending[m->n_uid_pending++];
}

unsigned broker_n_pending(const Manager *m, uid_t uid) {
        for (size_t i = 0; i < m->n_uid_pending; i++)
                if (m->uid_pending[i].uid == uid)
                        return m->uid_pending[i].n;
        return 0;
}

static void uid_pending_release(Manager *m, uid_t uid, unsigned n) {
        UidPending *u = uid_pending(m, uid, false);
        if (!u)
                return;
        u->n -= MIN(u->n, n);
        if (u->n == 0)
                *u = m->uid_pending[--m->n_uid_pending];
}

/* --- events --------------------------------------------------------------- */

static void emit(Manager *m, const char *kind, const char *name, const char *module, const char *result, int error,
                 uint64_t duration_usec, int64_t uid, int64_t pid, int shared) {
        json_object *e;

        if (m->n_subscribers == 0)
                return;
        e = json_object_new_object();
        if (!e || json_add_string(e, "kind", kind) < 0 || (name && json_add_string(e, "name", name) < 0) ||
            (module && json_add_string(e, "module", module) < 0) ||
            (result && json_add_string(e, "result", result) < 0) || (error && json_add_int(e, "errno", -error) < 0) ||
            (duration_usec && json_add_int(e, "durationUsec", (int64_t) duration_usec) < 0) ||
            (uid >= 0 && json_add_int(e, "uid", uid) < 0) || (pid > 0 && json_add_int(e, "pid", pid) < 0) ||
            (shared >= 0 && json_add_bool(e, "shared", shared) < 0)) {
                json_object_put(e);
                return;
        }
        manager_emit_event(m, e);
}

/* --- batches -------------------------------------------------------------- */

static void batch_free(Batch *b) {
        Manager *m = b->manager;

        if (b->prev)
                b->prev->next = b->next;
        else
                m->batches = b->next;
        if (b->next)
                b->next->prev = b->prev;
        m->n_batches--;

        for (size_t i = 0; i < b->n; i++) {
                cached_plan_unref(b->requests[i].plan);
                outcome_done(&b->outcomes[i]);
        }
        uid_pending_release(m, b->uid, (unsigned) b->n_pending);
        free(b->requests);
        free(b->outcomes);
        sd_event_source_disable_unref(b->timeout_source);
        varlink_call_unref(b->call);
        free(b);
}

static void batch_send_reply(Batch *b) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object(), *list = json_object_new_array();
        int e = -ENOMEM;

        b->answered = true;
        b->timeout_source = sd_event_source_disable_unref(b->timeout_source);
        if (p && list) {
                e = 0;
                for (size_t i = 0; e >= 0 && i < b->n; i++)
                        e = json_object_array_add(list, outcome_to_json(&b->outcomes[i])) < 0 ? -ENOMEM : 0;
                if (e >= 0)
                        e = json_add(p, "outcomes", TAKE_PTR(list));
        }
        if (e >= 0)
                e = varlink_call_reply(b->call, TAKE_PTR(p));
        if (e < 0)
                log_warning_errno(e, "Failed to answer a %s call: %m", b->unload ? "Unload" : "Load");
}

/* The last request of the batch is done: answer (unless time ran out before) and forget it. */
static void batch_done(Batch *b) {
        Manager *m = b->manager;

        if (!b->answered)
                batch_send_reply(b);
        batch_free(b);
        manager_notify_status(m, false);
        manager_work_done(m);
}

/* Count a request's outcome once, when its caller learns it. */
static void outcome_account(Manager *m, const Outcome *o, uid_t uid, pid_t pid) {
        m->stats.requests++;
        if (o->shared)
                m->stats.shared_requests++;
        if (o->result == OUTCOME_NOT_FOUND)
                m->stats.not_found++;
        else if (!outcome_result_is_success(o->result) && o->result != OUTCOME_BLACKLISTED)
                m->stats.failures++;
        emit(m, "answered", o->name, NULL, outcome_result_to_string(o->result), o->error, 0, uid, pid, o->shared);
}

/* Fill in a request's outcome from how its plan went; the batch is answered with its last one. */
static void request_finish(Request *req, OutcomeResult result, int error, char *message) {
        Batch *b = req->batch;
        Outcome *o = &b->outcomes[req->index];
        Manager *m = b->manager;

        if (req->done) {
                free(message);
                return;
        }
        req->done = true;
        if (b->answered)
                /* Its caller was told it timed out; the work is done now, nobody to tell. */
                free(message);
        else {
                o->result = result;
                o->error = error;
                free(o->message);
                o->message = message;
                o->shared = req->shared;
                outcome_account(m, o, b->uid, b->pid);
        }

        uid_pending_release(m, b->uid, 1);
        if (--b->n_pending == 0)
                batch_done(b);
}

static void request_fail(Request *req, int error, const char *format, ...) _printf_(3, 4);
static void request_fail(Request *req, int error, const char *format, ...) {
        va_list ap;
        char *msg;

        va_start(ap, format);
        if (vasprintf(&msg, format, ap) < 0)
                msg = NULL;
        va_end(ap);
        request_finish(req, OUTCOME_FAILED, error, msg);
}

static int batch_on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Batch *b = userdata;
        Manager *m = b->manager;
        uint64_t secs = m->load_timeout_usec / USEC_PER_SEC;

        /* The caller gets its answer now; the loads go on, and so do the requests behind them
         * (a module whose init asks for itself would otherwise hold the caller forever). */
        for (size_t i = 0; i < b->n; i++) {
                Request *req = &b->requests[i];
                Outcome *o = &b->outcomes[i];
                const char *module;

                if (req->done)
                        continue;
                module = req->waiting && req->waiting->key ? req->waiting->key : o->name;
                o->result = OUTCOME_FAILED;
                o->error = -ETIMEDOUT;
                o->shared = req->shared;
                free(o->message);
                o->message =
                        strdup_printf("Gave up waiting for %s after %" PRIu64 " s; the load goes on", module, secs);
                outcome_account(m, o, b->uid, b->pid);
        }
        batch_send_reply(b);
        return 0;
}

static int batch_new(Manager *m, VarlinkCall *call, char **names, bool unload, Batch **ret) {
        size_t n = strv_length(names);
        Batch *b;
        UidPending *u;
        int e;

        b = calloc(1, sizeof(Batch));
        if (!b)
                return -ENOMEM;
        b->manager = m;
        b->call = varlink_call_ref(call);
        b->unload = unload;
        b->uid = varlink_call_peer_uid(call);
        b->pid = varlink_call_peer_pid(call);
        b->n = b->n_pending = n;
        b->outcomes = calloc(n, sizeof(Outcome));
        b->requests = calloc(n, sizeof(Request));
        u = uid_pending(m, b->uid, true);
        b->next = m->batches;
        if (b->next)
                b->next->prev = b;
        m->batches = b;
        m->n_batches++;
        if (!b->outcomes || !b->requests || !u) {
                b->n = b->n_pending = 0;
                batch_free(b);
                return -ENOMEM;
        }
        u->n += (unsigned) n;

        for (size_t i = 0; i < n; i++) {
                b->requests[i] = (Request){ .batch = b, .index = i };
                b->outcomes[i].name = strdup(names[i]);
                b->outcomes[i].modules = calloc(1, sizeof(char *));
                if (!b->outcomes[i].name || !b->outcomes[i].modules) {
                        batch_free(b);
                        return -ENOMEM;
                }
        }
        e = sd_event_add_time_relative(m->event, &b->timeout_source, CLOCK_MONOTONIC, m->load_timeout_usec, 0,
                                       batch_on_timeout, b);
        if (e < 0) {
                batch_free(b);
                return e;
        }
        *ret = b;
        return 0;
}

/* --- jobs ----------------------------------------------------------------- */

static void job_free(Job *j) {
        free(j->key);
        free(j->waiters);
        free(j->message);
        cached_plan_unref(j->plan);
        free(j);
}

static void job_run(WorkItem *w) {
        Job *j = (Job *) w;
        uint64_t start = now_usec(CLOCK_MONOTONIC);

        j->result = execute_step(j->manager->loader, j->step, j->load_flags, false, 0, &j->stats, &j->message);
        j->duration_usec = now_usec(CLOCK_MONOTONIC) - start;
}

static void job_done(WorkItem *w) {
        Job *j = (Job *) w;
        Manager *m = j->manager;
        const char *what = j->step->kind == STEP_INSTALL ? "Ran install command for" : "Inserted";

        hashmap_remove(m->jobs, j->key);

        m->stats.kernel_calls += j->stats.kernel_calls;
        m->stats.kernel_eexist += j->stats.kernel_eexist;
        m->stats.bytes_decompressed += j->stats.bytes_decompressed;
        m->stats.bytes_to_kernel += j->stats.bytes_to_kernel;
        if (j->result > 0 && j->step->kind == STEP_INSMOD)
                m->stats.modules_inserted++;

        if (j->result > 0)
                log_info("%s %s in %" PRIu64 " ms for pid %d (uid %u), %zu caller(s) waiting, %" PRIu64
                         " bytes to the kernel.",
                         what, j->key, j->duration_usec / USEC_PER_MSEC, (int) j->pid, (unsigned) j->uid, j->n_waiters,
                         j->stats.bytes_to_kernel);
        else if (j->result < 0)
                /* No such device: a driver for hardware that is not there (udev asks for those). */
                log_full(j->step->optional || IN_SET(j->result, -ENODEV, -ENXIO) ? LOG_INFO : LOG_WARNING, "%s%s",
                         j->message ?: j->key, j->step->optional ? " (optional, ignored)" : "");
        emit(m, "loadFinished", NULL, j->key,
             j->result > 0    ? "inserted"
             : j->result == 0 ? "live"
                              : "failed",
             j->result < 0 ? j->result : 0, j->duration_usec ?: 1, -1, -1, -1);

        /* Every waiter gets the same result; each moves on (which may start or join other jobs).
         * What the result means is up to each waiter's own step: the module one request needs
         * may be an optional softdep of the request that started the load. */
        for (size_t i = 0; i < j->n_waiters; i++) {
                Request *req = j->waiters[i];
                const Step *own = &req->plan->plan->steps[req->next_step];

                req->waiting = NULL;
                if (i > 0)
                        m->stats.bytes_avoided += j->stats.bytes_to_kernel;
                if (j->result < 0 && !own->optional) {
                        request_finish(req, OUTCOME_FAILED, j->result, j->message ? strdup(j->message) : NULL);
                        continue;
                }
                if (j->result == 0 && own->target && req->first_time) {
                        request_fail(req, -EEXIST, "Module %s already in kernel", j->key);
                        continue;
                }
                if (j->result > 0)
                        req->changed = true;
                req->next_step++;
                request_advance(req);
        }
        job_free(j);
        manager_work_done(m);
}

static int job_start(Request *req, const Step *step) {
        Batch *b = req->batch;
        Manager *m = b->manager;
        Job *j;
        int e;

        j = calloc(1, sizeof(Job));
        if (!j)
                return -ENOMEM;
        j->work.run = job_run;
        j->work.done = job_done;
        j->manager = m;
        j->key = strdup(step->module);
        j->waiters = calloc(1, sizeof(Request *));
        if (!j->key || !j->waiters) {
                job_free(j);
                return -ENOMEM;
        }
        j->step = step;
        j->plan = req->plan;
        j->plan->n_ref++;
        j->load_flags = b->load_flags;
        j->pid = b->pid;
        j->uid = b->uid;
        j->start_usec = now_usec(CLOCK_MONOTONIC);
        j->waiters[j->n_waiters++] = req;

        e = hashmap_put(m->jobs, j->key, j);
        if (e < 0) {
                job_free(j);
                return e;
        }
        req->waiting = j;
        emit(m, "loadStarted", NULL, j->key, NULL, 0, 0, j->uid, j->pid, -1);
        workers_submit(m->workers, &j->work);
        return 0;
}

static int job_join(Job *j, Request *req) {
        Request **n = reallocarray(j->waiters, j->n_waiters + 1, sizeof(Request *));

        if (!n)
                return -ENOMEM;
        j->waiters = n;
        j->waiters[j->n_waiters++] = req;
        req->waiting = j;
        return 0;
}

/* --- requests ------------------------------------------------------------- */

static OutcomeResult request_final_result(Request *req) {
        const Plan *p = req->plan->plan;
        bool all_builtin = true;

        if (req->changed)
                return OUTCOME_INSERTED;
        for (size_t i = 0; i < p->n_steps; i++)
                if (p->steps[i].target && p->steps[i].kind != STEP_BUILTIN)
                        all_builtin = false;
        return all_builtin ? OUTCOME_BUILTIN : OUTCOME_LIVE;
}

/* Move a request along its plan until it must wait for a job, or is done. */
static void request_advance(Request *req) {
        Manager *m = req->batch->manager;
        const Plan *p = req->plan->plan;
        int e;

        while (!req->done && req->next_step < p->n_steps) {
                const Step *s = &p->steps[req->next_step];
                Job *j;

                if (s->kind == STEP_BUILTIN) {
                        req->next_step++;
                        continue;
                }
                j = hashmap_get(m->jobs, s->module);
                if (j) {
                        /* Someone is loading it already: wait for that load, do not start another. */
                        if (s->target)
                                req->shared = true;
                        e = job_join(j, req);
                        if (e < 0)
                                request_fail(req, e, "Out of memory");
                        return;
                }
                if (s->kind == STEP_INSMOD && IN_SET(loader_module_state(s->module), 'L', 'C', 'B')) {
                        /* In the kernel already: answered without a kernel call. */
                        if (s->target && req->first_time) {
                                request_fail(req, -EEXIST, "Module %s already in kernel", s->module);
                                return;
                        }
                        if (s->target)
                                req->shared = true;
                        req->next_step++;
                        continue;
                }
                if (m->shutting_down) {
                        request_fail(req, -ECANCELED, "modloadd is shutting down");
                        return;
                }
                e = job_start(req, s);
                if (e < 0)
                        request_fail(req, e, "Could not start loading %s: %s", s->module, strerror(-e));
                return;
        }
        if (!req->done)
                request_finish(req, request_final_result(req), 0, NULL);
}

static void request_start(Request *req, const LoadRequest *options) {
        Batch *b = req->batch;
        Manager *m = b->manager;
        Outcome *o = &b->outcomes[req->index];
        const Plan *p;
        int e;

        emit(m, "request", o->name, NULL, NULL, 0, 0, b->uid, b->pid, -1);
        req->first_time = options->resolve_flags & RESOLVE_FIRST_TIME;

        e = broker_resolve(m, o->name, options->parameters, options->resolve_flags, &req->plan);
        if (e < 0)
                return request_fail(req, e, "Cannot read the module indexes to resolve %s: %s", o->name, strerror(-e));

        if (req->plan->error < 0) {
                e = req->plan->error;
                if (e == -ENOENT)
                        return request_finish(req, OUTCOME_NOT_FOUND, e,
                                              strdup_printf("Module %s not found in directory %s", o->name,
                                                            resolver_module_dir(m->resolver)));
                if (e == -EEXIST)
                        return request_fail(req, e, "Module %s already in kernel", o->name);
                return request_fail(req, e, "Could not resolve %s: %s", o->name, strerror(-e));
        }
        p = req->plan->plan;
        strv_free(o->modules);
        o->modules = plan_module_list(p);
        if (!o->modules) {
                o->modules = calloc(1, sizeof(char *));
                return request_fail(req, -ENOMEM, "Out of memory");
        }

        if (p->result == PLAN_RESULT_BLACKLISTED) {
                /* As kmod: what is in the kernel already is fine, blacklisted or not. */
                bool live = p->n_modules > 0;
                for (size_t i = 0; i < p->n_modules; i++)
                        live = live && IN_SET(loader_module_state(p->modules[i]), 'L', 'B');
                if (live) {
                        req->shared = true;
                        return request_finish(req, OUTCOME_LIVE, 0, NULL);
                }
                return request_finish(req, OUTCOME_BLACKLISTED, 0, strdup_printf("Module %s is blacklisted", o->name));
        }
        if (p->result == PLAN_RESULT_BUILTIN)
                return request_finish(req, OUTCOME_BUILTIN, 0, NULL);
        if (p->result != PLAN_RESULT_STEPS) {
                req->shared = true;
                return request_finish(req, OUTCOME_LIVE, 0, NULL);
        }
        if (options->dry_run)
                return request_finish(req, OUTCOME_DRY_RUN, 0, NULL);

        request_advance(req);
}

int broker_load(Manager *m, VarlinkCall *call, char **names, const LoadRequest *options) {
        Batch *b;
        int e;

        e = batch_new(m, call, names, false, &b);
        if (e < 0)
                return e;
        b->load_flags = options->load_flags;

        /* The batch is freed when its last request finishes: nothing touches it after the last start. */
        for (size_t i = 0, n = b->n; i < n; i++)
                request_start(&b->requests[i], options);
        return 0;
}

/* --- unload --------------------------------------------------------------- */

static void unload_run(WorkItem *w) {
        UnloadJob *u = (UnloadJob *) w;
        execute_unload_steps(u->plan, &u->options, &u->outcome);
}

static void unload_done(WorkItem *w) {
        UnloadJob *u = (UnloadJob *) w;
        Manager *m = u->manager;

        emit(m, "unloadFinished", NULL, u->plan->name, outcome_result_to_string(u->outcome.result), u->outcome.error, 0,
             -1, -1, -1);
        request_finish(u->req, u->outcome.result, u->outcome.error, TAKE_PTR(u->outcome.message));
        plan_free(u->plan);
        outcome_done(&u->outcome);
        free(u);
        manager_work_done(m);
}

static void unload_start(Request *req, const UnloadRequest *options) {
        Batch *b = req->batch;
        Manager *m = b->manager;
        Outcome *o = &b->outcomes[req->index];
        UnloadRequest opts = *options;
        _cleanup_(plan_freep) Plan *p = NULL;
        UnloadJob *u;
        Outcome planned;
        int e;

        emit(m, "request", o->name, NULL, NULL, 0, 0, b->uid, b->pid, -1);
        opts.name = o->name;

        /* Planning needs libkmod (this thread); removing may wait (a worker). */
        if (!m->resolver && broker_reload(m) < 0)
                return request_fail(req, -ENOENT, "Cannot read the module indexes to resolve %s", o->name);
        e = resolver_plan_unload(m->resolver, o->name, opts.resolve_flags, &p);
        if (e == -ENOMEM)
                return request_fail(req, e, "Out of memory");
        e = unload_prepare(m->resolver, &opts, e, p, &planned);
        if (e < 0)
                return request_fail(req, e, "Could not resolve %s: %s", o->name, strerror(-e));
        strv_free(o->modules);
        o->modules = TAKE_PTR(planned.modules);
        if (e == 0) {
                request_finish(req, planned.result, planned.error, TAKE_PTR(planned.message));
                outcome_done(&planned);
                return;
        }

        u = calloc(1, sizeof(UnloadJob));
        if (!u) {
                outcome_done(&planned);
                return request_fail(req, -ENOMEM, "Out of memory");
        }
        u->work.run = unload_run;
        u->work.done = unload_done;
        u->req = req;
        u->manager = m;
        u->plan = TAKE_PTR(p);
        u->options = opts;
        u->outcome = planned;
        workers_submit(m->workers, &u->work);
}

int broker_unload(Manager *m, VarlinkCall *call, char **names, const UnloadRequest *options) {
        Batch *b;
        int e;

        e = batch_new(m, call, names, true, &b);
        if (e < 0)
                return e;
        /* The batch is freed when its last request finishes: nothing touches it after the last start. */
        for (size_t i = 0, n = b->n; i < n; i++)
                unload_start(&b->requests[i], options);
        return 0;
}

/* --- setup ---------------------------------------------------------------- */

int broker_setup(Manager *m) {
        int e;

        m->jobs = hashmap_new(NULL);
        m->plan_cache = hashmap_new(cached_plan_unref_void);
        if (!m->jobs || !m->plan_cache)
                return -ENOMEM;
        e = resolver_new(&m->resolver, &m->resolver_config);
        if (e < 0)
                log_warning_errno(e, "Cannot read the module directory %s, will try again on the first request: %m",
                                  m->resolver_config.module_dir ?: "of the running kernel");
        e = loader_new(&m->loader, m->policy, NULL);
        if (e < 0)
                return e;
        return workers_new(&m->workers, m->event, m->n_workers);
}

void broker_shutdown(Manager *m) {
        m->shutting_down = true;
        /* Loads in flight finish; their callers are answered. */
        m->workers = workers_free(m->workers);
        /* What still waits (cannot: every job was delivered) is answered as cancelled. */
        while (m->batches) {
                Batch *b = m->batches;
                for (size_t i = 0; i < b->n && m->batches == b; i++)
                        if (!b->requests[i].done)
                                request_fail(&b->requests[i], -ECANCELED, "modloadd is shutting down");
                if (m->batches == b)
                        batch_free(b);
        }
        hashmap_free(m->jobs);
        m->jobs = NULL;
        hashmap_free(m->plan_cache);
        m->plan_cache = NULL;
        m->loader = loader_free(m->loader);
        m->resolver = resolver_free(m->resolver);
}
