/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "hashmap.h"
#include "json-util.h"
#include "log.h"
#include "scheduler.h"
#include "strutil.h"
#include "strv.h"

typedef struct Batch Batch;
typedef struct Request Request;

typedef struct UidPending {
        uid_t uid;
        unsigned n;
} UidPending;

struct Broker {
        BrokerConfig config;
        BrokerStats stats;
        ResolverConfig resolver_config;
        Resolver *resolver;
        Loader *loader;
        Scheduler *scheduler;
        sd_event_source *scheduler_source;
        Hashmap *plan_cache; /* name + flags + parameters -> CachedPlan */
        Batch *batches;      /* calls being answered */
        unsigned n_batches;
        UidPending *uid_pending;
        size_t n_uid_pending;
};

/* One name of a call. */
struct Request {
        Batch *batch;
        size_t index;
        CachedPlan *plan;  /* a load's */
        Plan *unload_plan; /* an unload's (not cached: it depends on what the kernel has) */
        SchedJob *job;     /* while the scheduler carries it out */
        bool done;
};

/* One Load or Unload call. */
struct Batch {
        Broker *broker;
        Batch *prev, *next;
        VarlinkCall *call;
        bool unload;
        uid_t uid;
        pid_t pid;
        Outcome *outcomes;
        Request *requests;
        size_t n, n_pending;
        sd_event_source *timeout_source;
        bool answered; /* the caller has its reply (time ran out); the work goes on */
};

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

int broker_reload(Broker *b) {
        Resolver *r = NULL;
        int e;

        e = resolver_new(&r, &b->resolver_config);
        if (e < 0)
                return e;
        resolver_free(b->resolver);
        b->resolver = r;
        hashmap_clear(b->plan_cache);
        return 0;
}

/* A resolver that knows the module tree as it is now. */
static int broker_fresh_resolver(Broker *b) {
        int e;

        /* No module directory at start (an initrd before the root is mounted, say): try again now. */
        if (!b->resolver)
                return broker_reload(b);

        /* A depmod run or an edited modprobe.d makes what we know stale. */
        if (resolver_is_stale(b->resolver)) {
                e = broker_reload(b);
                if (e < 0)
                        log_warning_errno(e, "Failed to re-read module indexes, using the old ones: %m");
                else
                        log_info("Module indexes or configuration changed, re-read them.");
        }
        return 0;
}

int broker_resolve(Broker *b, const char *name, const char *parameters, ResolveFlags flags, CachedPlan **ret) {
        _cleanup_free_ char *key = NULL;
        CachedPlan *p;
        int e;

        e = broker_fresh_resolver(b);
        if (e < 0)
                return e;

        /* Plans are made as if nothing were loaded (the scheduler looks at the kernel), so they
         * keep: --first-time too, which is judged against the kernel at load time. */
        key = strdup_printf("%s%c%u%c%s", name, 0x1f, (unsigned) (flags & ~RESOLVE_FIRST_TIME), 0x1f, parameters ?: "");
        if (!key)
                return -ENOMEM;
        p = hashmap_get(b->plan_cache, key);
        if (p) {
                b->stats.resolve_cache_hits++;
                p->n_ref++;
                *ret = p;
                return 0;
        }

        p = calloc(1, sizeof(CachedPlan));
        if (!p)
                return -ENOMEM;
        p->n_ref = 1;
        e = resolver_plan_load(b->resolver, name, parameters, (flags & ~RESOLVE_FIRST_TIME) | RESOLVE_IGNORE_LOADED,
                               &p->plan);
        if (e == -ENOMEM) {
                free(p);
                return e;
        }
        p->error = e < 0 ? e : 0;

        if (hashmap_size(b->plan_cache) >= BROKER_RESOLVE_CACHE_MAX)
                hashmap_clear(b->plan_cache);
        if (hashmap_put(b->plan_cache, key, p) >= 0)
                p->n_ref++;
        *ret = p;
        return 0;
}

/* --- pending counts per UID ----------------------------------------------- */

static UidPending *uid_pending(Broker *b, uid_t uid, bool create) {
        for (size_t i = 0; i < b->n_uid_pending; i++)
                if (b->uid_pending[i].uid == uid)
                        return &b->uid_pending[i];
        if (!create)
                return NULL;
        UidPending *n = reallocarray(b->uid_pending, b->n_uid_pending + 1, sizeof(UidPending));
        if (!n)
                return NULL;
        b->uid_pending = n;
        b->uid_pending[b->n_uid_pending] = (UidPending){ .uid = uid };
        return &b->uid_pending[b->n_uid_pending++];
}

unsigned broker_n_pending(const Broker *b, uid_t uid) {
        for (size_t i = 0; i < b->n_uid_pending; i++)
                if (b->uid_pending[i].uid == uid)
                        return b->uid_pending[i].n;
        return 0;
}

static void uid_pending_release(Broker *b, uid_t uid, unsigned n) {
        UidPending *u = uid_pending(b, uid, false);
        if (!u)
                return;
        u->n -= MIN(u->n, n);
        if (u->n == 0)
                *u = b->uid_pending[--b->n_uid_pending];
}

/* --- events --------------------------------------------------------------- */

static void emit(Broker *b, const char *kind, const char *name, const char *module, const char *result, int error,
                 uint64_t duration_usec, int64_t uid, int64_t pid, int shared) {
        json_object *e;

        if (!b->config.emit || !b->config.want_events || !b->config.want_events(b->config.userdata))
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
        b->config.emit(e, b->config.userdata);
}

/* --- what the scheduler tells ---------------------------------------------- */

static void on_op_started(const SchedOpInfo *info, void *userdata) {
        Broker *b = userdata;

        if (IN_SET(info->kind, STEP_INSMOD, STEP_INSTALL))
                emit(b, "loadStarted", NULL, info->module, NULL, 0, 0, info->uid, info->pid, -1);
}

static void on_op_finished(const SchedOpInfo *info, void *userdata) {
        Broker *b = userdata;
        const char *what = info->kind == STEP_INSTALL ? "Ran install command for" : "Inserted";

        b->stats.kernel_calls += info->stats->kernel_calls;
        b->stats.kernel_eexist += info->stats->kernel_eexist;
        b->stats.bytes_decompressed += info->stats->bytes_decompressed;
        b->stats.bytes_to_kernel += info->stats->bytes_to_kernel;
        if (!IN_SET(info->kind, STEP_INSMOD, STEP_INSTALL))
                return;
        if (info->result > 0 && info->kind == STEP_INSMOD)
                b->stats.modules_inserted++;
        /* What every further caller would have handed to the kernel again. */
        if (info->n_waiters > 1)
                b->stats.bytes_avoided += info->stats->bytes_to_kernel * (info->n_waiters - 1);

        if (info->result > 0)
                log_info("%s %s in %" PRIu64 " ms for pid %d (uid %u), %zu caller(s) waiting, %" PRIu64
                         " bytes to the kernel.",
                         what, info->module, info->duration_usec / USEC_PER_MSEC, (int) info->pid, (unsigned) info->uid,
                         info->n_waiters, info->stats->bytes_to_kernel);
        else if (info->result < 0)
                /* No such device: a driver for hardware that is not there (udev asks for those). */
                log_full(info->optional || IN_SET(info->result, -ENODEV, -ENXIO) ? LOG_INFO : LOG_WARNING, "%s%s",
                         info->message ?: info->module, info->optional ? " (optional, ignored)" : "");
        emit(b, "loadFinished", NULL, info->module,
             info->result > 0    ? "inserted"
             : info->result == 0 ? "live"
                                 : "failed",
             info->result < 0 ? info->result : 0, info->duration_usec ?: 1, -1, -1, -1);
}

static int on_scheduler(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Broker *b = userdata;

        (void) scheduler_dispatch(b->scheduler);
        return 0;
}

/* --- batches -------------------------------------------------------------- */

static void batch_free(Batch *bt) {
        Broker *b = bt->broker;

        if (bt->prev)
                bt->prev->next = bt->next;
        else
                b->batches = bt->next;
        if (bt->next)
                bt->next->prev = bt->prev;
        b->n_batches--;

        for (size_t i = 0; i < bt->n; i++) {
                cached_plan_unref(bt->requests[i].plan);
                plan_free(bt->requests[i].unload_plan);
                outcome_done(&bt->outcomes[i]);
        }
        uid_pending_release(b, bt->uid, (unsigned) bt->n_pending);
        free(bt->requests);
        free(bt->outcomes);
        sd_event_source_disable_unref(bt->timeout_source);
        varlink_call_unref(bt->call);
        free(bt);
}

static void batch_send_reply(Batch *bt) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object(), *list = json_object_new_array();
        int e = -ENOMEM;

        bt->answered = true;
        bt->timeout_source = sd_event_source_disable_unref(bt->timeout_source);
        if (p && list) {
                e = 0;
                for (size_t i = 0; e >= 0 && i < bt->n; i++)
                        e = json_object_array_add(list, outcome_to_json(&bt->outcomes[i])) < 0 ? -ENOMEM : 0;
                if (e >= 0)
                        e = json_add(p, "outcomes", TAKE_PTR(list));
        }
        if (e >= 0)
                e = varlink_call_reply(bt->call, TAKE_PTR(p));
        if (e < 0)
                log_warning_errno(e, "Failed to answer a %s call: %m", bt->unload ? "Unload" : "Load");
}

/* The last request of the batch is done: answer (unless time ran out before) and forget it. */
static void batch_done(Batch *bt) {
        Broker *b = bt->broker;

        if (!bt->answered)
                batch_send_reply(bt);
        batch_free(bt);
        if (b->config.work_done)
                b->config.work_done(b->config.userdata);
}

/* Count a request's outcome once, when its caller learns it. */
static void outcome_account(Broker *b, const Outcome *o, uid_t uid, pid_t pid) {
        b->stats.requests++;
        if (o->shared)
                b->stats.shared_requests++;
        if (o->result == OUTCOME_NOT_FOUND)
                b->stats.not_found++;
        else if (!outcome_result_is_success(o->result) && o->result != OUTCOME_BLACKLISTED)
                b->stats.failures++;
        emit(b, "answered", o->name, NULL, outcome_result_to_string(o->result), o->error, 0, uid, pid, o->shared);
}

/* A request's outcome is complete; the batch is answered with its last one. */
static void request_finish(Request *req) {
        Batch *bt = req->batch;
        Outcome *o = &bt->outcomes[req->index];
        Broker *b = bt->broker;

        if (req->done)
                return;
        req->done = true;
        req->job = NULL;
        /* A caller told it timed out is not counted again. */
        if (!bt->answered)
                outcome_account(b, o, bt->uid, bt->pid);

        uid_pending_release(b, bt->uid, 1);
        if (--bt->n_pending == 0)
                batch_done(bt);
}

static void request_fail(Request *req, int error, const char *format, ...) _printf_(3, 4);
static void request_fail(Request *req, int error, const char *format, ...) {
        Outcome *o = &req->batch->outcomes[req->index];
        va_list ap;
        char *msg;

        va_start(ap, format);
        if (vasprintf(&msg, format, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!req->batch->answered) {
                o->result = OUTCOME_FAILED;
                o->error = error;
                free(o->message);
                o->message = msg;
        } else
                free(msg);
        request_finish(req);
}

/* The scheduler carried a request's plan out. */
static void request_on_job_done(SchedJob *job, SchedResult *r, void *userdata) {
        Request *req = userdata;
        Batch *bt = req->batch;
        Outcome *o = &bt->outcomes[req->index];

        if (bt->unload)
                emit(bt->broker, "unloadFinished", NULL, req->unload_plan->name, outcome_result_to_string(r->result),
                     r->error, 0, -1, -1, -1);
        if (!bt->answered) {
                o->result = r->result;
                o->error = r->error;
                o->shared = r->shared;
                free(o->message);
                o->message = TAKE_PTR(r->message);
        }
        request_finish(req);
}

static int batch_on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Batch *bt = userdata;
        Broker *b = bt->broker;
        uint64_t secs = b->config.load_timeout_usec / USEC_PER_SEC;

        /* The caller gets its answer now; the loads go on (a module whose init asks for itself
         * would otherwise hold the caller forever). */
        for (size_t i = 0; i < bt->n; i++) {
                Request *req = &bt->requests[i];
                Outcome *o = &bt->outcomes[i];
                const char *module;

                if (req->done)
                        continue;
                module = (req->job ? sched_job_waiting_for(req->job) : NULL) ?: o->name;
                o->result = OUTCOME_FAILED;
                o->error = -ETIMEDOUT;
                free(o->message);
                o->message =
                        strdup_printf("Gave up waiting for %s after %" PRIu64 " s; the load goes on", module, secs);
                outcome_account(b, o, bt->uid, bt->pid);
        }
        batch_send_reply(bt);
        return 0;
}

static int batch_new(Broker *b, VarlinkCall *call, char **names, bool unload, Batch **ret) {
        size_t n = strv_length(names);
        Batch *bt;
        UidPending *u;
        int e;

        bt = calloc(1, sizeof(Batch));
        if (!bt)
                return -ENOMEM;
        bt->broker = b;
        bt->call = varlink_call_ref(call);
        bt->unload = unload;
        bt->uid = varlink_call_peer_uid(call);
        bt->pid = varlink_call_peer_pid(call);
        bt->n = bt->n_pending = n;
        bt->outcomes = calloc(n, sizeof(Outcome));
        bt->requests = calloc(n, sizeof(Request));
        u = uid_pending(b, bt->uid, true);
        bt->next = b->batches;
        if (bt->next)
                bt->next->prev = bt;
        b->batches = bt;
        b->n_batches++;
        if (!bt->outcomes || !bt->requests || !u) {
                bt->n = bt->n_pending = 0;
                batch_free(bt);
                return -ENOMEM;
        }
        u->n += (unsigned) n;

        for (size_t i = 0; i < n; i++) {
                bt->requests[i] = (Request){ .batch = bt, .index = i };
                bt->outcomes[i].name = strdup(names[i]);
                bt->outcomes[i].modules = calloc(1, sizeof(char *));
                if (!bt->outcomes[i].name || !bt->outcomes[i].modules) {
                        batch_free(bt);
                        return -ENOMEM;
                }
        }
        e = sd_event_add_time_relative(b->config.event, &bt->timeout_source, CLOCK_MONOTONIC,
                                       b->config.load_timeout_usec, 0, batch_on_timeout, bt);
        if (e < 0) {
                batch_free(bt);
                return e;
        }
        *ret = bt;
        return 0;
}

/* The outcome load_prepare()/unload_prepare() made replaces the request's (name kept). */
static void request_set_outcome(Request *req, Outcome *o) {
        Outcome *dst = &req->batch->outcomes[req->index];

        outcome_done(dst);
        *dst = *o;
}

/* --- load ------------------------------------------------------------------ */

static void request_start(Request *req, const LoadRequest *options) {
        Batch *bt = req->batch;
        Broker *b = bt->broker;
        const char *name = bt->outcomes[req->index].name;
        LoadRequest lr = *options;
        Outcome o;
        int e;

        emit(b, "request", name, NULL, NULL, 0, 0, bt->uid, bt->pid, -1);
        lr.name = name;

        e = broker_resolve(b, name, options->parameters, options->resolve_flags, &req->plan);
        if (e < 0)
                return request_fail(req, e, "Cannot read the module indexes to resolve %s: %s", name, strerror(-e));

        e = load_prepare(b->resolver, &lr, req->plan->error, req->plan->plan, &o);
        if (e < 0)
                return request_fail(req, e, "Out of memory");
        request_set_outcome(req, &o);
        if (e == 0)
                return request_finish(req);

        e = scheduler_load(b->scheduler, req->plan->plan, options->load_flags,
                           options->resolve_flags & RESOLVE_FIRST_TIME, &(SchedCaller){ bt->uid, bt->pid },
                           request_on_job_done, req, &req->job);
        if (e < 0)
                request_fail(req, e, "Could not start loading %s: %s", name, strerror(-e));
}

int broker_load(Broker *b, VarlinkCall *call, char **names, const LoadRequest *options) {
        Batch *bt;
        int e;

        e = batch_new(b, call, names, false, &bt);
        if (e < 0)
                return e;
        /* The batch is freed when its last request finishes: nothing touches it after the last start. */
        for (size_t i = 0, n = bt->n; i < n; i++)
                request_start(&bt->requests[i], options);
        return 0;
}

/* --- unload ---------------------------------------------------------------- */

static void unload_start(Request *req, const UnloadRequest *options) {
        Batch *bt = req->batch;
        Broker *b = bt->broker;
        const char *name = bt->outcomes[req->index].name;
        UnloadRequest opts = *options;
        Outcome o;
        int e;

        emit(b, "request", name, NULL, NULL, 0, 0, bt->uid, bt->pid, -1);
        opts.name = name;

        if (broker_fresh_resolver(b) < 0)
                return request_fail(req, -ENOENT, "Cannot read the module indexes to resolve %s", name);
        e = resolver_plan_unload(b->resolver, name, unload_resolve_flags(&opts), &req->unload_plan);
        if (e == -ENOMEM)
                return request_fail(req, e, "Out of memory");
        e = unload_prepare(b->resolver, &opts, e, req->unload_plan, &o);
        if (e < 0)
                return request_fail(req, e, "Could not resolve %s: %s", name, strerror(-e));
        request_set_outcome(req, &o);
        if (e == 0)
                return request_finish(req);

        e = scheduler_unload(b->scheduler, req->unload_plan, &opts, &(SchedCaller){ bt->uid, bt->pid },
                             request_on_job_done, req, &req->job);
        if (e < 0)
                request_fail(req, e, "Could not start unloading %s: %s", name, strerror(-e));
}

int broker_unload(Broker *b, VarlinkCall *call, char **names, const UnloadRequest *options) {
        Batch *bt;
        int e;

        e = batch_new(b, call, names, true, &bt);
        if (e < 0)
                return e;
        /* The batch is freed when its last request finishes: nothing touches it after the last start. */
        for (size_t i = 0, n = bt->n; i < n; i++)
                unload_start(&bt->requests[i], options);
        return 0;
}

/* --- setup ---------------------------------------------------------------- */

bool broker_busy(const Broker *b) {
        return b->n_batches > 0 || (b->scheduler && scheduler_busy(b->scheduler));
}

const BrokerStats *broker_stats(const Broker *b) {
        return &b->stats;
}

int broker_new(Broker **ret, const BrokerConfig *config) {
        _cleanup_(broker_freep) Broker *b = NULL;
        unsigned n;
        int e;

        b = calloc(1, sizeof(Broker));
        if (!b)
                return -ENOMEM;
        b->config = *config;
        b->config.load_timeout_usec = config->load_timeout_usec ?: BROKER_LOAD_TIMEOUT_USEC;
        b->resolver_config.module_dir = config->module_dir;
        b->resolver_config.config_paths = config->config_paths;
        b->plan_cache = hashmap_new(cached_plan_unref_void);
        if (!b->plan_cache)
                return -ENOMEM;
        e = resolver_new(&b->resolver, &b->resolver_config);
        if (e < 0)
                log_warning_errno(e, "Cannot read the module directory %s, will try again on the first request: %m",
                                  config->module_dir ?: "of the running kernel");
        e = loader_new(&b->loader, config->policy, NULL);
        if (e < 0)
                return e;
        n = config->n_decompress ?: (unsigned) MAX(sysconf(_SC_NPROCESSORS_ONLN), 1L);
        loader_set_max_decompress(b->loader, n);

        e = scheduler_new(&b->scheduler, b->loader);
        if (e < 0)
                return e;
        scheduler_set_callbacks(b->scheduler, &(SchedulerCallbacks){
                                                      .op_started = on_op_started,
                                                      .op_finished = on_op_finished,
                                                      .userdata = b,
                                              });
        e = sd_event_add_io(config->event, &b->scheduler_source, scheduler_get_fd(b->scheduler), EPOLLIN, on_scheduler,
                            b);
        if (e < 0)
                return e;
        *ret = TAKE_PTR(b);
        return 0;
}

void broker_drain(Broker *b) {
        if (!b)
                return;
        /* Loads in flight finish and their callers are answered; nothing new starts. */
        b->scheduler = scheduler_free(b->scheduler);
        /* What still waits (cannot: every job was delivered) is answered as cancelled. */
        while (b->batches) {
                Batch *bt = b->batches;
                for (size_t i = 0; i < bt->n && b->batches == bt; i++)
                        if (!bt->requests[i].done)
                                request_fail(&bt->requests[i], -ECANCELED, "modloadd is shutting down");
                if (b->batches == bt)
                        batch_free(bt);
        }
}

Broker *broker_free(Broker *b) {
        if (!b)
                return NULL;
        broker_drain(b);
        sd_event_source_disable_unref(b->scheduler_source);
        hashmap_free(b->plan_cache);
        loader_free(b->loader);
        resolver_free(b->resolver);
        free(b->uid_pending);
        free(b);
        return NULL;
}
