/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "executor.h"
#include "scheduler.h"
#include "strutil.h"
#include "strv.h"
#include "timeutil.h"

#define SETTLE_POLL_USEC (20 * USEC_PER_MSEC)

extern char **environ;

bool kernel_cmdline_denies(const char *module) {
        _cleanup_free_ char *line = NULL;
        _cleanup_close_ int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        size_t size = 0;
        char *word, *save = NULL;

        if (fd < 0)
                return false;
        line = malloc(4097);
        if (!line)
                return false;
        for (ssize_t n; size < 4096 && (n = read(fd, line + size, 4096 - size)) > 0;)
                size += (size_t) n;
        line[size] = '\0';

        for (word = strtok_r(line, " \t\n", &save); word; word = strtok_r(NULL, " \t\n", &save)) {
                const char *list = startswith(word, "module_blacklist=");
                if (!list)
                        continue;
                for (const char *p = list; *p;) {
                        size_t n = strcspn(p, ",");
                        bool same = n == strlen(module);
                        for (size_t i = 0; same && i < n; i++)
                                same = (p[i] == '-' ? '_' : p[i]) == module[i];
                        if (same)
                                return true;
                        p += n + (p[n] == ',');
                }
        }
        return false;
}

int run_module_command(const char *command, const char *module) {
        _cleanup_free_ char *env_module = NULL;
        _cleanup_free_ char **env = NULL;
        char *argv[] = { (char *) "/bin/sh", (char *) "-c", (char *) command, NULL };
        posix_spawnattr_t attr;
        sigset_t none, all;
        size_t n = 0, k = 0;
        pid_t pid;
        int status, r;

        env_module = strdup_printf("MODPROBE_MODULE=%s", module);
        if (!env_module)
                return -ENOMEM;
        while (environ[n])
                n++;
        env = calloc(n + 2, sizeof(char *));
        if (!env)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!startswith(environ[i], "MODPROBE_MODULE="))
                        env[k++] = environ[i];
        env[k] = env_module;

        /* The command starts as a shell from a terminal would: every signal at its default and
         * none blocked, whatever the thread that runs it has (a daemon blocks its signals). */
        r = posix_spawnattr_init(&attr);
        if (r != 0)
                return -r;
        sigemptyset(&none);
        sigfillset(&all);
        r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = posix_spawn(&pid, argv[0], NULL, &attr, argv, env);
        posix_spawnattr_destroy(&attr);
        if (r != 0)
                return -r;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

static void settle_sleep(void) {
        (void) nanosleep(&(struct timespec){ .tv_nsec = SETTLE_POLL_USEC * NSEC_PER_USEC }, NULL);
}

/* Wait while another loader has the module coming, or the kernel is taking it out, as kmod
 * (through the kernel) does, until deadline. Returns the state it settled in; 'C' or 'G' when
 * time ran out. */
static char module_state_settled(const char *module, uint64_t deadline) {
        char state;

        while (IN_SET(state = loader_module_state(module), 'C', 'G') && now_usec(CLOCK_MONOTONIC) < deadline)
                settle_sleep();
        return state;
}

/* Before a module goes in: 0 when the kernel has it (nothing to do), 1 when it must be loaded,
 * -ETIMEDOUT when it stays coming or going until deadline. */
static int module_needs_load(const char *module, uint64_t deadline, char **ret_message) {
        char state = module_state_settled(module, deadline);

        if (IN_SET(state, 'L', 'B'))
                return 0;
        if (IN_SET(state, 'C', 'G')) {
                *ret_message =
                        strdup_printf("Module %s is still %s in the kernel after %" PRIu64 " s", module,
                                      state == 'C' ? "coming" : "going", EXECUTOR_SETTLE_TIMEOUT_USEC / USEC_PER_SEC);
                return -ETIMEDOUT;
        }
        return 1;
}

/* The module's lock file, open; a negative errno when there is none to be had. */
static int module_lock_open(const char *module) {
        _cleanup_close_ int dfd = -EBADF;
        struct stat st;
        int fd;

        if (isempty(module) || strchr(module, '/') || streq(module, ".") || streq(module, "..") ||
            strlen(module) > NAME_MAX)
                return -EINVAL;
        if (mkdir(EXECUTOR_LOCK_DIR, 0755) < 0 && errno == ENOENT &&
            (mkdir(EXECUTOR_RUNTIME_DIR, 0755) >= 0 || errno == EEXIST))
                (void) mkdir(EXECUTOR_LOCK_DIR, 0755);
        dfd = open(EXECUTOR_LOCK_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0 || fstat(dfd, &st) < 0)
                return -errno;
        /* Nobody but root may hold a module's lock, or make one. */
        if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
                return -EPERM;
        fd = openat(dfd, module, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600);
        return fd < 0 ? -errno : fd;
}

/* Take the module's lock (see EXECUTOR_LOCK_DIR), waiting while another loader holds it, until
 * deadline. Returns 0 when the module came into the kernel meanwhile (nothing to do), 1 when the
 * step goes on: with the lock in *ret_fd, or without it (*ret_fd negative) when there is none to
 * be had or the holder did not finish in time. */
static int module_lock_take(const char *module, uint64_t deadline, int *ret_fd) {
        _cleanup_close_ int fd = module_lock_open(module);

        *ret_fd = -EBADF;
        while (fd >= 0) {
                if (flock(fd, LOCK_EX | LOCK_NB) >= 0) {
                        *ret_fd = TAKE_FD(fd);
                        break;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EWOULDBLOCK)
                        break;
                /* Its holder is at work: done when the kernel has the module. */
                if (IN_SET(loader_module_state(module), 'L', 'B'))
                        return 0;
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        break; /* a holder that does not finish, or our own outer load: bounded */
                settle_sleep();
        }
        return 1;
}

static int insert_step(Loader *l, const Step *step, LoadFlags load_flags, LoadStats *stats, char **ret_message) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + EXECUTOR_SETTLE_TIMEOUT_USEC;
        _cleanup_close_ int lock = -EBADF;
        int e;

        /* From the check to the end of the kernel call under the module's lock: a loader in
         * another process then finds the module in the kernel instead of handing it over again. */
        e = module_lock_take(step->module, deadline, &lock);
        if (e <= 0)
                return e;
        e = module_needs_load(step->module, deadline, ret_message);
        if (e <= 0)
                return e;
        if (!step->path) {
                *ret_message = strdup_printf("Module %s has no file to load", step->module);
                return -ENOENT;
        }

        e = loader_insert(l, step->path, step->options, load_flags, stats);
        if (e == -EEXIST)
                return 0; /* someone else was quicker: it is in the kernel, which is what was asked */
        if (e >= 0)
                return 1;

        if (e == -EPERM && kernel_cmdline_denies(step->module))
                *ret_message = strdup_printf(
                        "could not insert '%s': Module is deny-listed by the kernel (module_blacklist=)", step->module);
        else if (e == -ENOENT && access(step->path, F_OK) < 0)
                *ret_message = strdup_printf("could not open module file '%s': %s", step->path, strerror(ENOENT));
        else
                *ret_message = strdup_printf("could not insert '%s': %s", step->module, loader_strerror(e));
        return e;
}

static int command_step(const Step *step, char **ret_message) {
        _cleanup_free_ char *command = NULL;
        int e;

        /* kmod runs no install command for a module the kernel has. No module lock here: the
         * command commonly runs modprobe for this very module, whose insmod step takes it. */
        if (step->kind == STEP_INSTALL) {
                e = module_needs_load(step->module, now_usec(CLOCK_MONOTONIC) + EXECUTOR_SETTLE_TIMEOUT_USEC,
                                      ret_message);
                if (e <= 0)
                        return e;
        }
        e = step_expand_command(step, &command);
        if (e < 0)
                return e;
        e = run_module_command(command, step->module);
        if (e == 0)
                return 1;
        if (e > 0) {
                *ret_message =
                        strdup_printf("Error running %s command '%s' for module %s: retcode %d",
                                      step->kind == STEP_INSTALL ? "install" : "remove", command, step->module, e);
                return -EIO;
        }
        *ret_message = strdup_printf("Could not run %s command for module %s: %s",
                                     step->kind == STEP_INSTALL ? "install" : "remove", step->module, strerror(-e));
        return e;
}

static int remove_step(const Step *step, bool force, uint64_t wait_usec, char **ret_message) {
        char state = loader_module_state(step->module);
        int e;

        if (state == 0 || state == 'B')
                return 0;
        if (step->if_unused && loader_module_refcount(step->module) != 0)
                return 0;

        e = loader_remove(step->module, force, wait_usec);
        if (e == -ENOENT)
                return 0;
        if (e >= 0)
                return 1;
        if (e == -EBUSY || e == -EAGAIN)
                *ret_message = strdup_printf("Module %s is in use", step->module);
        else
                *ret_message = strdup_printf("could not remove '%s': %s", step->module, loader_strerror(e));
        return e;
}

int execute_step(Loader *l, const Step *step, LoadFlags load_flags, bool force, uint64_t wait_usec, LoadStats *stats,
                 char **ret_message) {
        switch (step->kind) {
        case STEP_INSMOD:
                return insert_step(l, step, load_flags, stats, ret_message);
        case STEP_BUILTIN:
                return 0;
        case STEP_INSTALL:
        case STEP_REMOVE:
                return command_step(step, ret_message);
        case STEP_RMMOD:
                return remove_step(step, force, wait_usec, ret_message);
        default:
                return -EINVAL;
        }
}

char **plan_module_list(const Plan *p) {
        _cleanup_(strv_freep) char **l = calloc(1, sizeof(char *));

        if (!l)
                return NULL;
        for (size_t i = 0; i < p->n_steps; i++)
                if (!strv_contains(l, p->steps[i].module) && strv_extend(&l, p->steps[i].module) < 0)
                        return NULL;
        for (size_t i = 0; i < p->n_modules; i++)
                if (!strv_contains(l, p->modules[i]) && strv_extend(&l, p->modules[i]) < 0)
                        return NULL;
        return TAKE_PTR(l);
}

/* Fill name and modules; the rest is up to the caller. */
static int outcome_init(Outcome *o, const char *name, const Plan *p) {
        *o = (Outcome){};
        o->name = strdup(name);
        o->modules = p ? plan_module_list(p) : calloc(1, sizeof(char *));
        if (!o->name || !o->modules) {
                outcome_done(o);
                return -ENOMEM;
        }
        return 0;
}

static OutcomeResult plan_result_to_outcome(PlanResult r) {
        switch (r) {
        case PLAN_RESULT_LIVE:
                return OUTCOME_LIVE;
        case PLAN_RESULT_BUILTIN:
                return OUTCOME_BUILTIN;
        case PLAN_RESULT_BLACKLISTED:
                return OUTCOME_BLACKLISTED;
        case PLAN_RESULT_NOT_LOADED:
                return OUTCOME_NOT_LOADED;
        default:
                return OUTCOME_FAILED;
        }
}

/* An outcome for a name that has no plan: not found, already there with --first-time, ... */
static int outcome_from_plan_error(Outcome *o, Resolver *r, const char *name, int error, bool unload) {
        int e = outcome_init(o, name, NULL);
        if (e < 0)
                return e;
        o->error = error;
        switch (error) {
        case -ENOENT:
                o->result = OUTCOME_NOT_FOUND;
                return outcome_set_message(o, "Module %s not found in directory %s", name, resolver_module_dir(r));
        case -EEXIST:
                o->result = OUTCOME_FAILED;
                return outcome_set_message(o, "Module %s already in kernel", name);
        case -EBUSY:
                o->result = OUTCOME_IN_USE;
                return outcome_set_message(o, "Module %s is in use", name);
        default:
                o->result = OUTCOME_FAILED;
                return outcome_set_message(o, "could not %s '%s': %s", unload ? "remove" : "resolve", name,
                                           strerror(-error));
        }
}

static bool in_kernel(const char *module) {
        return IN_SET(loader_module_state(module), 'L', 'B');
}

int load_prepare(Resolver *r, const LoadRequest *req, int plan_error, const Plan *p, Outcome *ret) {
        bool live = true;
        Outcome o;
        int e;

        if (plan_error < 0) {
                e = outcome_from_plan_error(ret, r, req->name, plan_error, false);
                return e < 0 ? e : 0;
        }
        e = outcome_init(&o, req->name, p);
        if (e < 0)
                return e;

        switch (p->result) {
        case PLAN_RESULT_BLACKLISTED:
                /* As kmod: what is in the kernel already is fine, blacklisted or not. */
                for (size_t i = 0; i < p->n_modules; i++)
                        live = live && in_kernel(p->modules[i]);
                if (live && p->n_modules > 0) {
                        o.result = OUTCOME_LIVE;
                        o.shared = true;
                } else {
                        o.result = OUTCOME_BLACKLISTED;
                        (void) outcome_set_message(&o, "Module %s is blacklisted", req->name);
                }
                break;
        case PLAN_RESULT_STEPS:
                /* As kmod: a target the kernel has is not loaded again, nor its softdeps. */
                for (size_t i = 0; i < p->n_modules && live; i++)
                        live = p->results[i] != PLAN_RESULT_STEPS || in_kernel(p->modules[i]);
                if (!live) {
                        o.result = req->dry_run ? OUTCOME_DRY_RUN : OUTCOME_LIVE;
                        *ret = o;
                        return !req->dry_run;
                }
                if (req->resolve_flags & RESOLVE_FIRST_TIME) {
                        o.result = OUTCOME_FAILED;
                        o.error = -EEXIST;
                        (void) outcome_set_message(&o, "Module %s already in kernel", req->name);
                } else {
                        o.result = OUTCOME_LIVE;
                        o.shared = true;
                }
                break;
        case PLAN_RESULT_LIVE:
                o.result = OUTCOME_LIVE;
                o.shared = true;
                break;
        default:
                o.result = plan_result_to_outcome(p->result);
        }
        *ret = o;
        return 0;
}

/* A scheduler's result into the outcome load_prepare() or unload_prepare() began. */
static void outcome_take_result(Outcome *o, SchedResult *sr) {
        o->result = sr->result;
        o->error = sr->error;
        o->shared = sr->shared;
        free(o->message);
        o->message = TAKE_PTR(sr->message);
}

int execute_load(Scheduler *s, Resolver *r, const LoadRequest *req, Outcome *ret) {
        _cleanup_(plan_freep) Plan *p = NULL;
        SchedResult sr;
        Outcome o;
        int e;

        if (!request_name_is_valid(req->name))
                return -EINVAL;

        e = resolver_plan_load(r, req->name, req->parameters, req->resolve_flags | RESOLVE_IGNORE_LOADED, &p);
        if (e == -ENOMEM || e == -EINVAL)
                return e;
        e = load_prepare(r, req, e, p, &o);
        if (e < 0)
                return e;
        if (e > 0) {
                e = scheduler_run_load(s, p, req->load_flags, req->resolve_flags & RESOLVE_FIRST_TIME, &sr);
                if (e < 0) {
                        outcome_done(&o);
                        return e;
                }
                outcome_take_result(&o, &sr);
        }
        *ret = o;
        return 0;
}

int unload_prepare(Resolver *r, const UnloadRequest *req, int plan_error, const Plan *p, Outcome *ret) {
        Outcome o;
        int e;

        if (plan_error < 0) {
                e = outcome_from_plan_error(ret, r, req->name, plan_error, true);
                return e < 0 ? e : 0;
        }
        e = outcome_init(&o, req->name, p);
        if (e < 0)
                return e;

        if (p->result != PLAN_RESULT_STEPS) {
                o.result = plan_result_to_outcome(p->result);
                if (o.result == OUTCOME_NOT_LOADED && (req->resolve_flags & RESOLVE_FIRST_TIME)) {
                        o.result = OUTCOME_FAILED;
                        o.error = -ENOENT;
                        (void) outcome_set_message(&o, "Module %s is not in kernel", req->name);
                } else if (o.result == OUTCOME_BUILTIN) {
                        o.error = -ENOENT;
                        (void) outcome_set_message(&o, "Module %s is builtin", req->name);
                }
                *ret = o;
                return 0;
        }
        o.result = req->dry_run ? OUTCOME_DRY_RUN : OUTCOME_REMOVED;
        *ret = o;
        return !req->dry_run;
}

int execute_unload(Scheduler *s, Resolver *r, const UnloadRequest *req, Outcome *ret) {
        _cleanup_(plan_freep) Plan *p = NULL;
        SchedResult sr;
        int e;

        if (!request_name_is_valid(req->name))
                return -EINVAL;

        e = resolver_plan_unload(r, req->name, unload_resolve_flags(req), &p);
        if (e == -ENOMEM || e == -EINVAL)
                return e;
        e = unload_prepare(r, req, e, p, ret);
        if (e <= 0)
                return e;
        e = scheduler_run_unload(s, p, req, &sr);
        if (e < 0) {
                outcome_done(ret);
                return e;
        }
        outcome_take_result(ret, &sr);
        return 0;
}

ResolveFlags unload_resolve_flags(const UnloadRequest *req) {
        return req->resolve_flags | (req->wait_usec > 0 ? RESOLVE_UNLOAD_WAIT : 0);
}
