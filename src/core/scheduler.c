/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hashmap.h"
#include "scheduler.h"
#include "strutil.h"
#include "strv.h"
#include "timeutil.h"

typedef struct Entry Entry;
typedef struct Op Op;
typedef struct Node Node;

/* One thing done to one module, on a thread of its own. It copies what it needs from the step
 * that created it: the jobs waiting for it may end (and their plans go) before it does. */
struct Op {
        Scheduler *s;
        Entry *entry;
        Op *next;      /* behind it in its module's queue */
        Op *done_next; /* on the list of finished operations */

        Step step; /* own copies of the strings */
        LoadFlags load_flags;
        bool force;
        uint64_t wait_usec;
        bool unload;
        bool started;
        bool threaded; /* a thread runs it, to be joined */
        bool optional;
        SchedCaller caller;
        pthread_t thread;

        Node **waiters;
        size_t n_waiters;

        /* Written by the thread, read after it finished. */
        int result;
        char *message;
        LoadStats stats;
        uint64_t start_usec, duration_usec;
};

/* What is being done to one module: the operation at the head runs, the rest wait for it. */
struct Entry {
        char *name;
        Op *head, *tail;
        unsigned n_dependent_loads; /* load operations in flight of modules that depend on this one */
};

/* One step of one job. */
struct Node {
        SchedJob *job;
        const Step *step;
        size_t *dependents; /* nodes of the same job that wait for this one */
        size_t n_dependents;
        unsigned n_blockers; /* nodes this one still waits for */
        Op *op;              /* the operation it waits for */
        bool started, done;
};

struct SchedJob {
        Scheduler *s;
        SchedJob *prev, *next; /* all jobs */
        SchedJob *ready_next;  /* finished, callback not yet called */
        Node *nodes;
        size_t n_nodes, n_done;
        unsigned n_waiting; /* nodes joined to an operation */

        bool unload, first_time, all_builtin;
        LoadFlags load_flags;
        bool force;
        uint64_t wait_usec;

        bool failed, changed, shared, ready, delivered;
        OutcomeResult fail_result;
        int error;
        char *message;

        SchedCaller caller;
        SchedJobDone done;
        void *userdata;
};

struct Scheduler {
        Loader *loader;
        SchedulerCallbacks cb;
        Hashmap *entries; /* module name -> Entry */
        SchedJob *jobs;
        SchedJob *ready_head, *ready_tail;
        unsigned n_ops;
        bool cancelled;

        int event_fd;
        pthread_mutex_t lock;
        Op *done_head, *done_tail; /* finished by their threads; under lock */
};

static void node_start(Node *n);
static void entry_kick(Scheduler *s, Entry *e);

static void wake(Scheduler *s) {
        (void) eventfd_write(s->event_fd, 1);
}

/* --- module table --------------------------------------------------------- */

static Entry *entry_get(Scheduler *s, const char *name) {
        Entry *e = hashmap_get(s->entries, name);

        if (e)
                return e;
        e = calloc(1, sizeof(Entry));
        if (!e)
                return NULL;
        e->name = strdup(name);
        if (!e->name || hashmap_put(s->entries, name, e) < 0) {
                free(e->name);
                free(e);
                return NULL;
        }
        return e;
}

/* Forget a module nothing is done to any more. */
static void entry_gc(Scheduler *s, Entry *e) {
        if (e->head || e->n_dependent_loads > 0)
                return;
        hashmap_remove(s->entries, e->name);
        free(e->name);
        free(e);
}

/* --- operations ----------------------------------------------------------- */

static void op_free(Op *op) {
        free(op->step.module);
        free(op->step.path);
        free(op->step.options);
        free(op->step.command);
        strv_free(op->step.depends);
        strv_free(op->step.after);
        free(op->waiters);
        free(op->message);
        free(op);
}

static Op *op_new(Scheduler *s, const SchedJob *j, const Step *st) {
        Op *op = calloc(1, sizeof(Op));

        if (!op)
                return NULL;
        op->s = s;
        op->step = (Step){
                .kind = st->kind,
                .module = strdup(st->module),
                .path = st->path ? strdup(st->path) : NULL,
                .options = strdup(st->options ?: ""),
                .command = st->command ? strdup(st->command) : NULL,
                .depends = strv_copy(st->depends),
                .after = calloc(1, sizeof(char *)),
                .target = st->target,
                .optional = st->optional,
                .if_unused = st->if_unused,
        };
        op->load_flags = j->load_flags;
        op->force = j->force;
        op->wait_usec = j->wait_usec;
        op->unload = j->unload;
        op->optional = st->optional;
        op->caller = j->caller;
        if (!op->step.module || (st->path && !op->step.path) || !op->step.options ||
            (st->command && !op->step.command) || !op->step.depends || !op->step.after)
                return op_free(op), NULL;
        return op;
}

/* Whether a node may take the result of this operation as its own. */
static bool op_can_share(const Op *op, const SchedJob *j, const Step *st) {
        return !op->unload && !j->unload && op->step.kind == st->kind && op->load_flags == j->load_flags &&
               streq(op->step.options, st->options ?: "") && streq(op->step.path ?: "", st->path ?: "") &&
               streq(op->step.command ?: "", st->command ?: "");
}

static int op_join(Op *op, Node *n) {
        Node **w = reallocarray(op->waiters, op->n_waiters + 1, sizeof(Node *));

        if (!w)
                return -ENOMEM;
        op->waiters = w;
        op->waiters[op->n_waiters++] = n;
        n->op = op;
        n->job->n_waiting++;
        return 0;
}

static void op_info(const Op *op, SchedOpInfo *ret) {
        *ret = (SchedOpInfo){
                .module = op->step.module,
                .kind = op->step.kind,
                .result = op->result,
                .message = op->message,
                .stats = &op->stats,
                .duration_usec = op->duration_usec,
                .n_waiters = op->n_waiters,
                .optional = op->optional,
                .uid = op->caller.uid,
                .pid = op->caller.pid,
        };
}

static void op_finished_push(Op *op) {
        Scheduler *s = op->s;

        pthread_mutex_lock(&s->lock);
        op->done_next = NULL;
        if (s->done_tail)
                s->done_tail->done_next = op;
        else
                s->done_head = op;
        s->done_tail = op;
        pthread_mutex_unlock(&s->lock);
        wake(s);
}

static void *op_thread(void *userdata) {
        Op *op = userdata;

        op->result = execute_step(op->s->loader, &op->step, op->load_flags, op->force, op->wait_usec, &op->stats,
                                  &op->message);
        op->duration_usec = now_usec(CLOCK_MONOTONIC) - op->start_usec;
        op_finished_push(op);
        return NULL;
}

static void op_start(Scheduler *s, Op *op) {
        SchedOpInfo info;
        int r;

        op->started = true;
        op->start_usec = now_usec(CLOCK_MONOTONIC);
        if (s->cb.op_started) {
                op_info(op, &info);
                s->cb.op_started(&info, s->cb.userdata);
        }
        r = pthread_create(&op->thread, NULL, op_thread, op);
        if (r != 0) {
                op->result = -r;
                op->message = strdup_printf("Could not start a thread for %s: %s", op->step.module, strerror(r));
                op_finished_push(op);
                return;
        }
        op->threaded = true;
}

/* Load operations count as users of the modules they depend on: an unload of those waits. */
static void op_count_dependencies(Scheduler *s, Op *op, int delta) {
        if (op->unload)
                return;
        for (char **d = op->step.depends; *d; d++) {
                Entry *e = delta > 0 ? entry_get(s, *d) : hashmap_get(s->entries, *d);
                if (!e)
                        continue;
                if (delta > 0)
                        e->n_dependent_loads++;
                else {
                        e->n_dependent_loads--;
                        entry_kick(s, e);
                        entry_gc(s, e);
                }
        }
}

/* Start the operation at the head of a module's queue, when it may. */
static void entry_kick(Scheduler *s, Entry *e) {
        Op *op = e->head;

        if (!op || op->started || (op->unload && e->n_dependent_loads > 0))
                return;
        op_start(s, op);
}

/* --- jobs ----------------------------------------------------------------- */

static void job_free(SchedJob *j) {
        Scheduler *s = j->s;

        if (j->prev)
                j->prev->next = j->next;
        else
                s->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        for (size_t i = 0; i < j->n_nodes; i++)
                free(j->nodes[i].dependents);
        free(j->nodes);
        free(j->message);
        free(j);
}

static void job_check(SchedJob *j) {
        Scheduler *s = j->s;

        if (j->ready || j->n_done < j->n_nodes)
                return;
        /* Its caller learns it from scheduler_dispatch(), never from inside a call it made. */
        j->ready = true;
        j->ready_next = NULL;
        if (s->ready_tail)
                s->ready_tail->ready_next = j;
        else
                s->ready_head = j;
        s->ready_tail = j;
        wake(s);
}

static void job_fail(SchedJob *j, OutcomeResult result, int error, char *message) {
        if (j->failed) {
                free(message);
                return;
        }
        j->failed = true;
        j->fail_result = result;
        j->error = error;
        j->message = message;
}

static void job_deliver(SchedJob *j) {
        SchedResult r = { .shared = j->shared };

        if (j->failed) {
                r.result = j->fail_result;
                r.error = j->error;
                r.message = TAKE_PTR(j->message);
        } else if (j->unload)
                r.result = OUTCOME_REMOVED;
        else
                r.result = j->changed ? OUTCOME_INSERTED : j->all_builtin ? OUTCOME_BUILTIN : OUTCOME_LIVE;

        j->delivered = true;
        j->done(j, &r, j->userdata);
        free(r.message);
        if (j->n_waiting == 0)
                job_free(j);
}

/* A node that waits for a step that failed for good is not carried out. */
static void node_skip(Node *n) {
        SchedJob *j = n->job;

        if (n->started)
                return;
        n->started = n->done = true;
        j->n_done++;
        for (size_t i = 0; i < n->n_dependents; i++)
                node_skip(&j->nodes[n->dependents[i]]);
}

/* A node's step is over: judge the result by this node's own step. Takes message. */
static void node_finish(Node *n, int result, char *message) {
        SchedJob *j = n->job;
        const Step *st = n->step;
        bool fatal = false;

        n->done = true;
        j->n_done++;
        if (j->delivered) {
                /* Its caller has its answer already (the scheduler is going away). */
                free(message);
                if (j->n_waiting == 0)
                        job_free(j);
                return;
        }

        if (j->unload) {
                fatal = result < 0 && !st->optional && !st->if_unused;
                if (fatal)
                        job_fail(j, IN_SET(result, -EBUSY, -EAGAIN) ? OUTCOME_IN_USE : OUTCOME_FAILED, result,
                                 TAKE_PTR(message));
        } else if (result < 0 && !st->optional) {
                fatal = true;
                job_fail(j, OUTCOME_FAILED, result, TAKE_PTR(message));
        } else if (result == 0 && st->target && j->first_time && st->kind != STEP_BUILTIN) {
                fatal = true;
                job_fail(j, OUTCOME_FAILED, -EEXIST, strdup_printf("Module %s already in kernel", st->module));
        } else {
                if (result > 0)
                        j->changed = true;
                if (result == 0 && st->target && st->kind != STEP_BUILTIN)
                        j->shared = true; /* found in the kernel */
        }
        free(message);

        /* What waits for a step that failed for good is not carried out; the rest goes on, as kmod
         * goes on with the other modules an alias matches. The first failure is the answer. */
        for (size_t i = 0; i < n->n_dependents; i++) {
                Node *d = &j->nodes[n->dependents[i]];
                if (fatal)
                        node_skip(d);
                else if (--d->n_blockers == 0 && !d->started)
                        node_start(d);
        }
        job_check(j);
}

static void node_start(Node *n) {
        SchedJob *j = n->job;
        Scheduler *s = j->s;
        const Step *st = n->step;
        Entry *e;
        Op *op;
        char state;

        n->started = true;
        if (st->kind == STEP_BUILTIN)
                return node_finish(n, 0, NULL);

        e = hashmap_get(s->entries, st->module);
        if (!j->unload) {
                for (op = e ? e->head : NULL; op; op = op->next)
                        if (op_can_share(op, j, st)) {
                                /* Someone loads it this very way already: take that result. */
                                if (op_join(op, n) < 0)
                                        return node_finish(n, -ENOMEM, NULL);
                                if (st->target)
                                        j->shared = true;
                                return;
                        }
                /* Nothing is being done to it and the kernel has it: no operation needed (an
                 * install command does not run again either, as in kmod). */
                state = (!e || !e->head) ? loader_module_state(st->module) : 0;
                if (IN_SET(state, 'L', 'B'))
                        return node_finish(n, 0, NULL);
        }
        if (s->cancelled)
                return node_finish(n, -ECANCELED, strdup_printf("Not loading %s: shutting down", st->module));

        op = op_new(s, j, st);
        e = op ? entry_get(s, st->module) : NULL;
        if (!op || !e || op_join(op, n) < 0) {
                if (op)
                        op_free(op);
                if (e)
                        entry_gc(s, e);
                return node_finish(n, -ENOMEM, NULL);
        }
        op->entry = e;
        if (e->tail)
                e->tail->next = op;
        else
                e->head = op;
        e->tail = op;
        s->n_ops++;
        op_count_dependencies(s, op, +1);
        entry_kick(s, e);
}

static void op_finished(Scheduler *s, Op *op) {
        Entry *e = op->entry;
        SchedOpInfo info;

        if (op->threaded)
                (void) pthread_join(op->thread, NULL);
        if (s->cb.op_finished) {
                op_info(op, &info);
                s->cb.op_finished(&info, s->cb.userdata);
        }

        /* Out of the queue first: what its waiters start next finds the kernel as it is now. */
        e->head = op->next;
        if (!e->head)
                e->tail = NULL;
        s->n_ops--;

        for (size_t i = 0; i < op->n_waiters; i++) {
                Node *n = op->waiters[i];

                n->op = NULL;
                n->job->n_waiting--;
                node_finish(n, op->result, op->message ? strdup(op->message) : NULL);
        }
        op_count_dependencies(s, op, -1);
        entry_kick(s, e);
        entry_gc(s, e);
        op_free(op);
}

static int job_new(Scheduler *s, const Plan *p, bool unload, const SchedCaller *caller, SchedJobDone done,
                   void *userdata, SchedJob **ret) {
        SchedJob *j;

        if (!s || !p || !done)
                return -EINVAL;
        j = calloc(1, sizeof(SchedJob));
        if (!j)
                return -ENOMEM;
        j->nodes = calloc(MAX(p->n_steps, (size_t) 1), sizeof(Node));
        if (!j->nodes) {
                free(j);
                return -ENOMEM;
        }
        j->s = s;
        j->n_nodes = p->n_steps;
        j->unload = unload;
        j->done = done;
        j->userdata = userdata;
        j->caller = caller ? *caller : (SchedCaller){ .uid = (uid_t) -1 };
        j->all_builtin = true;
        for (size_t i = 0; i < p->n_steps; i++) {
                j->nodes[i] = (Node){ .job = j, .step = &p->steps[i] };
                if (p->steps[i].target && p->steps[i].kind != STEP_BUILTIN)
                        j->all_builtin = false;
        }
        j->next = s->jobs;
        if (j->next)
                j->next->prev = j;
        s->jobs = j;
        *ret = j;
        return 0;
}

static int node_add_edge(SchedJob *j, size_t before, size_t after) {
        Node *b = &j->nodes[before];
        size_t *d = reallocarray(b->dependents, b->n_dependents + 1, sizeof(size_t));

        if (!d)
                return -ENOMEM;
        b->dependents = d;
        b->dependents[b->n_dependents++] = after;
        j->nodes[after].n_blockers++;
        return 0;
}

static int job_run(SchedJob *j, const Plan *p, SchedJob **ret) {
        /* The first nodes start now; the rest as what they wait for is done. */
        for (size_t i = 0; i < j->n_nodes; i++)
                if (!j->nodes[i].started && j->nodes[i].n_blockers == 0)
                        node_start(&j->nodes[i]);
        job_check(j);
        if (ret)
                *ret = j;
        return 0;
}

int scheduler_load(Scheduler *s, const Plan *p, LoadFlags load_flags, bool first_time, const SchedCaller *caller,
                   SchedJobDone done, void *userdata, SchedJob **ret) {
        SchedJob *j;
        int r;

        r = job_new(s, p, false, caller, done, userdata, &j);
        if (r < 0)
                return r;
        j->load_flags = load_flags;
        j->first_time = first_time;

        for (size_t i = 0; i < p->n_steps; i++)
                for (char **a = p->steps[i].after; a && *a; a++)
                        for (size_t k = 0; k < i; k++)
                                if (streq(p->steps[k].module, *a)) {
                                        r = node_add_edge(j, k, i);
                                        if (r < 0)
                                                return job_free(j), r;
                                        break;
                                }
        return job_run(j, p, ret);
}

int scheduler_unload(Scheduler *s, const Plan *p, const UnloadRequest *req, const SchedCaller *caller,
                     SchedJobDone done, void *userdata, SchedJob **ret) {
        SchedJob *j;
        int r;

        r = job_new(s, p, true, caller, done, userdata, &j);
        if (r < 0)
                return r;
        j->force = req->force;
        j->wait_usec = req->wait_usec;

        /* modprobe -r's order matters (holders before the module, the module before what it
         * uses): one step after the other. */
        for (size_t i = 1; i < p->n_steps; i++) {
                r = node_add_edge(j, i - 1, i);
                if (r < 0)
                        return job_free(j), r;
        }
        return job_run(j, p, ret);
}

const char *sched_job_waiting_for(const SchedJob *j) {
        for (size_t i = 0; i < j->n_nodes; i++)
                if (j->nodes[i].op)
                        return j->nodes[i].op->step.module;
        return NULL;
}

/* --- the owner's side ----------------------------------------------------- */

int scheduler_dispatch(Scheduler *s) {
        eventfd_t v;
        Op *list;
        int n = 0;

        (void) eventfd_read(s->event_fd, &v);
        pthread_mutex_lock(&s->lock);
        list = s->done_head;
        s->done_head = s->done_tail = NULL;
        pthread_mutex_unlock(&s->lock);

        while (list) {
                Op *op = list;
                list = op->done_next;
                op->done_next = NULL;
                op_finished(s, op);
                n++;
        }
        while (s->ready_head) {
                SchedJob *j = s->ready_head;
                s->ready_head = j->ready_next;
                if (!s->ready_head)
                        s->ready_tail = NULL;
                job_deliver(j);
                n++;
        }
        return n;
}

int scheduler_wait(Scheduler *s, uint64_t timeout_usec) {
        struct pollfd p = { .fd = s->event_fd, .events = POLLIN };
        int ms = timeout_usec == USEC_INFINITY ? -1 : (int) MIN(timeout_usec / USEC_PER_MSEC, (uint64_t) INT32_MAX);

        if (!s->ready_head && poll(&p, 1, ms) < 0 && errno != EINTR)
                return -errno;
        return scheduler_dispatch(s);
}

int scheduler_get_fd(const Scheduler *s) {
        return s->event_fd;
}

void scheduler_cancel_new(Scheduler *s) {
        s->cancelled = true;
}

bool scheduler_busy(const Scheduler *s) {
        return s->n_ops > 0 || s->jobs;
}

void scheduler_set_callbacks(Scheduler *s, const SchedulerCallbacks *callbacks) {
        s->cb = callbacks ? *callbacks : (SchedulerCallbacks){};
}

int scheduler_new(Scheduler **ret, Loader *loader) {
        Scheduler *s = calloc(1, sizeof(Scheduler));

        if (!s)
                return -ENOMEM;
        s->loader = loader;
        s->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        s->entries = hashmap_new(NULL);
        if (s->event_fd < 0 || !s->entries) {
                int r = s->event_fd < 0 ? -errno : -ENOMEM;
                safe_close(s->event_fd);
                hashmap_free(s->entries);
                free(s);
                return r;
        }
        pthread_mutex_init(&s->lock, NULL);
        *ret = s;
        return 0;
}

Scheduler *scheduler_free(Scheduler *s) {
        if (!s)
                return NULL;
        /* Loads in flight finish and every job is answered; nothing new starts. */
        s->cancelled = true;
        while (s->n_ops > 0 || s->ready_head)
                if (scheduler_wait(s, USEC_INFINITY) < 0)
                        break;
        hashmap_free(s->entries);
        safe_close(s->event_fd);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
}

/* --- in-process ----------------------------------------------------------- */

typedef struct RunState {
        bool done;
        SchedResult result;
} RunState;

static void run_done(SchedJob *job, SchedResult *result, void *userdata) {
        RunState *st = userdata;

        st->result = *result;
        st->result.message = TAKE_PTR(result->message);
        st->done = true;
}

static int run_until_done(Scheduler *s, RunState *st, SchedResult *ret) {
        while (!st->done) {
                int r = scheduler_wait(s, USEC_INFINITY);
                if (r < 0)
                        return r;
        }
        *ret = st->result;
        return 0;
}

int scheduler_run_load(Scheduler *s, const Plan *p, LoadFlags load_flags, bool first_time, SchedResult *ret) {
        RunState st = {};
        int r = scheduler_load(s, p, load_flags, first_time, &(SchedCaller){ getuid(), getpid() }, run_done, &st, NULL);

        return r < 0 ? r : run_until_done(s, &st, ret);
}

int scheduler_run_unload(Scheduler *s, const Plan *p, const UnloadRequest *req, SchedResult *ret) {
        RunState st = {};
        int r = scheduler_unload(s, p, req, &(SchedCaller){ getuid(), getpid() }, run_done, &st, NULL);

        return r < 0 ? r : run_until_done(s, &st, ret);
}
