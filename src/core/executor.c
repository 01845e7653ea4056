/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "executor.h"
#include "strutil.h"
#include "strv.h"

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

        r = posix_spawn(&pid, argv[0], NULL, NULL, argv, env);
        if (r != 0)
                return -r;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

static int insert_step(Loader *l, const Step *step, LoadFlags load_flags, LoadStats *stats, char **ret_message) {
        char state = loader_module_state(step->module);
        int e;

        if (IN_SET(state, 'L', 'C', 'B'))
                return 0;
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

int execute_load(Resolver *r, Loader *l, const LoadRequest *req, LoadStats *stats, Outcome *ret) {
        _cleanup_(plan_freep) Plan *p = NULL;
        Outcome o;
        bool changed = false;
        int e;

        if (!request_name_is_valid(req->name))
                return -EINVAL;

        e = resolver_plan_load(r, req->name, req->parameters, req->resolve_flags, &p);
        if (e == -ENOMEM || e == -EINVAL)
                return e;
        if (e < 0)
                return outcome_from_plan_error(ret, r, req->name, e, false);

        e = outcome_init(&o, req->name, p);
        if (e < 0)
                return e;

        if (p->result != PLAN_RESULT_STEPS) {
                o.result = plan_result_to_outcome(p->result);
                if (o.result == OUTCOME_BLACKLISTED)
                        (void) outcome_set_message(&o, "Module %s is blacklisted", req->name);
                *ret = o;
                return 0;
        }
        if (req->dry_run) {
                o.result = OUTCOME_DRY_RUN;
                *ret = o;
                return 0;
        }

        o.result = OUTCOME_LIVE;
        for (size_t i = 0; i < p->n_steps; i++) {
                _cleanup_free_ char *message = NULL;

                e = execute_step(l, &p->steps[i], req->load_flags, false, 0, stats, &message);
                if (e > 0)
                        changed = true;
                if (e >= 0 || p->steps[i].optional)
                        continue;
                o.result = OUTCOME_FAILED;
                o.error = e;
                o.message = TAKE_PTR(message);
                break;
        }
        if (o.result != OUTCOME_FAILED && changed)
                o.result = OUTCOME_INSERTED;
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

void execute_unload_steps(const Plan *p, const UnloadRequest *req, Outcome *o) {
        o->result = OUTCOME_REMOVED;
        for (size_t i = 0; i < p->n_steps; i++) {
                _cleanup_free_ char *message = NULL;
                int e = execute_step(NULL, &p->steps[i], 0, req->force, req->wait_usec, NULL, &message);

                if (e >= 0 || p->steps[i].optional || p->steps[i].if_unused)
                        continue;
                o->result = e == -EBUSY || e == -EAGAIN ? OUTCOME_IN_USE : OUTCOME_FAILED;
                o->error = e;
                free(o->message);
                o->message = TAKE_PTR(message);
                return;
        }
}

int execute_unload(Resolver *r, const UnloadRequest *req, Outcome *ret) {
        _cleanup_(plan_freep) Plan *p = NULL;
        int e;

        if (!request_name_is_valid(req->name))
                return -EINVAL;

        e = resolver_plan_unload(r, req->name, req->resolve_flags, &p);
        if (e == -ENOMEM || e == -EINVAL)
                return e;
        e = unload_prepare(r, req, e, p, ret);
        if (e <= 0)
                return e;
        execute_unload_steps(p, req, ret);
        return 0;
}
