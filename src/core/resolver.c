/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libkmod.h>

#include "macro.h"
#include "resolver.h"
#include "strutil.h"
#include "strv.h"

struct Resolver {
        struct kmod_ctx *ctx;
};

static const char *const module_state_table[_MODULE_STATE_MAX] = {
        [MODULE_STATE_NOT_LOADED] = "notLoaded", [MODULE_STATE_LIVE] = "live",       [MODULE_STATE_COMING] = "coming",
        [MODULE_STATE_GOING] = "going",          [MODULE_STATE_BUILTIN] = "builtin",
};

const char *module_state_to_string(ModuleState s) {
        if (s < 0 || s >= _MODULE_STATE_MAX)
                return NULL;
        return module_state_table[s];
}

static const char *const step_kind_table[_STEP_KIND_MAX] = {
        [STEP_INSMOD] = "insmod", [STEP_BUILTIN] = "builtin", [STEP_INSTALL] = "install",
        [STEP_RMMOD] = "rmmod",   [STEP_REMOVE] = "remove",
};

const char *step_kind_to_string(StepKind k) {
        if (k < 0 || k >= _STEP_KIND_MAX)
                return NULL;
        return step_kind_table[k];
}

static const char *const plan_result_table[_PLAN_RESULT_MAX] = {
        [PLAN_RESULT_STEPS] = "steps",
        [PLAN_RESULT_LIVE] = "live",
        [PLAN_RESULT_BUILTIN] = "builtin",
        [PLAN_RESULT_NOT_LOADED] = "notLoaded",
        [PLAN_RESULT_BLACKLISTED] = "blacklisted",
};

const char *plan_result_to_string(PlanResult r) {
        if (r < 0 || r >= _PLAN_RESULT_MAX)
                return NULL;
        return plan_result_table[r];
}

/* ---- small helpers ---- */

static void kmod_module_unrefp(struct kmod_module **m) {
        if (*m)
                kmod_module_unref(*m);
}

static void kmod_module_unref_listp(struct kmod_list **l) {
        if (*l)
                kmod_module_unref_list(*l);
}

#define FLAGS_SET_ANY(v, f) (((v) & (f)) != 0)

#define _cleanup_kmod_module_ _cleanup_(kmod_module_unrefp)
#define _cleanup_kmod_list_   _cleanup_(kmod_module_unref_listp)

/* Module names of a kmod module list, in list order; never NULL on success. */
static int module_list_names(struct kmod_list *list, char ***ret) {
        struct kmod_list *l;
        char **v;
        size_t n = 0, i = 0;

        kmod_list_foreach(l, list) n++;

        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;

        kmod_list_foreach(l, list) {
                struct kmod_module *m = kmod_module_get_module(l);

                v[i] = strdup(kmod_module_get_name(m));
                kmod_module_unref(m);
                if (!v[i]) {
                        strv_free(v);
                        return -ENOMEM;
                }
                i++;
        }

        *ret = v;
        return 0;
}

static ModuleState module_state_of(struct kmod_module *m) {
        int s = kmod_module_get_initstate(m);

        switch (s) {
        case KMOD_MODULE_BUILTIN:
                return MODULE_STATE_BUILTIN;
        case KMOD_MODULE_LIVE:
                return MODULE_STATE_LIVE;
        case KMOD_MODULE_COMING:
                return MODULE_STATE_COMING;
        case KMOD_MODULE_GOING:
                return MODULE_STATE_GOING;
        case -ENOENT:
                return MODULE_STATE_NOT_LOADED;
        default:
                return s < 0 ? (ModuleState) s : (ModuleState) -EIO;
        }
}

/* ---- names ---- */

int module_name_normalize(const char *name, char **ret) {
        size_t n;
        char *s;

        if (isempty(name))
                return -EINVAL;
        n = strcspn(name, ".");
        if (strnlen(name, REQUEST_NAME_MAX + 1) > REQUEST_NAME_MAX)
                return -EINVAL;

        s = strndup(name, n);
        if (!s)
                return -ENOMEM;
        for (char *p = s; *p; p++)
                if (*p == '-')
                        *p = '_';

        *ret = s;
        return 0;
}

static bool path_has_module_suffix(const char *path) {
        static const char *const suffixes[] = { ".ko", ".ko.xz", ".ko.zst", ".ko.gz" };
        size_t l = strlen(path);

        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                size_t k = strlen(suffixes[i]);

                if (l > k && streq(path + l - k, suffixes[i]))
                        return true;
        }
        return false;
}

static bool path_components_ok(const char *path) {
        /* Absolute, no empty, "." or ".." components, last component is not just the suffix. */
        const char *p = path;

        if (*p != '/')
                return false;

        while (*p == '/') {
                const char *e;
                size_t k;

                p++;
                e = strchrnul(p, '/');
                k = (size_t) (e - p);
                if (k == 0)
                        return false;
                if ((k == 1 && p[0] == '.') || (k == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                p = e;
        }
        return true;
}

bool request_name_is_valid(const char *name) {
        if (isempty(name))
                return false;
        if (strnlen(name, REQUEST_NAME_MAX + 1) > REQUEST_NAME_MAX)
                return false;
        if (string_has_cc(name))
                return false;
        if (name[0] == '-')
                return false;
        if (streq(name, ".") || streq(name, ".."))
                return false;

        if (!strchr(name, '/'))
                return true;

        if (!path_components_ok(name) || !path_has_module_suffix(name))
                return false;
        /* The file name must leave a module name in front of the suffix. */
        const char *base = strrchr(name, '/') + 1;
        return base[0] != '.';
}

/* ---- resolver ---- */

int resolver_new(Resolver **ret, const ResolverConfig *config) {
        _cleanup_free_ Resolver *r = NULL;
        const char *dir = config ? config->module_dir : NULL;

        if (!ret)
                return -EINVAL;

        if (dir) {
                struct stat st;

                if (isempty(dir))
                        return -EINVAL;
                if (stat(dir, &st) < 0)
                        return negative_errno();
                if (!S_ISDIR(st.st_mode))
                        return -ENOTDIR;
        }

        r = calloc(1, sizeof(Resolver));
        if (!r)
                return -ENOMEM;

        r->ctx = kmod_new(dir, config ? config->config_paths : NULL);
        if (!r->ctx)
                return -ENOMEM;

        kmod_set_log_fn(r->ctx, NULL, NULL);

        /* Like modprobe: a failure here only means kmod works from the text files instead. */
        (void) kmod_load_resources(r->ctx);

        *ret = TAKE_PTR(r);
        return 0;
}

Resolver *resolver_free(Resolver *r) {
        if (!r)
                return NULL;
        kmod_unref(r->ctx);
        free(r);
        return NULL;
}

const char *resolver_module_dir(Resolver *r) {
        return r ? kmod_get_dirname(r->ctx) : NULL;
}

bool resolver_is_stale(Resolver *r) {
        if (!r)
                return true;
        return kmod_validate_resources(r->ctx) != KMOD_RESOURCES_OK;
}

ModuleState resolver_module_state(Resolver *r, const char *name) {
        _cleanup_kmod_module_ struct kmod_module *m = NULL;
        int k;

        if (!r || !request_name_is_valid(name) || strchr(name, '/'))
                return _MODULE_STATE_INVALID;

        k = kmod_module_new_from_name(r->ctx, name, &m);
        if (k < 0)
                return (ModuleState) k;

        return module_state_of(m);
}

/* ---- plans ---- */

static void step_done(Step *s) {
        free(s->module);
        free(s->path);
        free(s->options);
        free(s->command);
        strv_free(s->depends);
        strv_free(s->after);
}

Plan *plan_free(Plan *p) {
        if (!p)
                return NULL;
        free(p->name);
        strv_free(p->modules);
        free(p->results);
        for (size_t i = 0; i < p->n_steps; i++)
                step_done(p->steps + i);
        free(p->steps);
        free(p);
        return NULL;
}

int step_expand_command(const Step *step, char **ret) {
        static const char var[] = "$CMDLINE_OPTS";
        const size_t varlen = sizeof(var) - 1;
        const char *opts, *p, *q;
        size_t n = 0, optlen;
        char *out, *o;

        if (!step || !step->command || !ret)
                return -EINVAL;

        opts = step->options ?: "";
        optlen = strlen(opts);

        for (p = step->command; (q = strstr(p, var)); p = q + varlen)
                n += (size_t) (q - p) + optlen;
        n += strlen(p);

        out = malloc(n + 1);
        if (!out)
                return -ENOMEM;

        o = out;
        for (p = step->command; (q = strstr(p, var)); p = q + varlen) {
                o = mempcpy(o, p, (size_t) (q - p));
                o = mempcpy(o, opts, optlen);
        }
        o = stpcpy(o, p);

        *ret = out;
        return 0;
}

static Step *plan_find_step(Plan *p, const char *module) {
        for (size_t i = 0; i < p->n_steps; i++)
                if (streq(p->steps[i].module, module))
                        return p->steps + i;
        return NULL;
}

/* Append a step; takes nothing, copies what it needs. */
static int plan_add_step(Plan *p, StepKind kind, const char *module, const char *path, const char *options,
                         const char *command, Step **ret) {
        Step *n, *s;

        if (p->n_steps >= SIZE_MAX / sizeof(Step) - 1)
                return -ENOMEM;

        n = reallocarray(p->steps, p->n_steps + 1, sizeof(Step));
        if (!n)
                return -ENOMEM;
        p->steps = n;

        s = p->steps + p->n_steps;
        *s = (Step){
                .kind = kind,
                .module = strdup(module),
                .path = path ? strdup(path) : NULL,
                .options = strdup(options ?: ""),
                .command = command ? strdup(command) : NULL,
                .depends = calloc(1, sizeof(char *)),
                .after = calloc(1, sizeof(char *)),
        };
        if (!s->module || (path && !s->path) || !s->options || (command && !s->command) || !s->depends || !s->after) {
                step_done(s);
                return -ENOMEM;
        }

        p->n_steps++;
        if (ret)
                *ret = s;
        return 0;
}

static int plan_add_module(Plan *p, const char *name) {
        char **m;
        PlanResult *r;
        char *s;

        s = strdup(name);
        if (!s)
                return -ENOMEM;

        m = reallocarray(p->modules, p->n_modules + 2, sizeof(char *));
        if (!m) {
                free(s);
                return -ENOMEM;
        }
        p->modules = m;

        r = reallocarray(p->results, p->n_modules + 1, sizeof(PlanResult));
        if (!r) {
                p->modules[p->n_modules] = NULL;
                free(s);
                return -ENOMEM;
        }
        p->results = r;

        p->modules[p->n_modules] = s;
        p->modules[p->n_modules + 1] = NULL;
        p->results[p->n_modules] = PLAN_RESULT_STEPS;
        p->n_modules++;
        return 0;
}

static void plan_finish(Plan *p) {
        static const PlanResult order[] = {
                PLAN_RESULT_STEPS,   PLAN_RESULT_LIVE,        PLAN_RESULT_NOT_LOADED,
                PLAN_RESULT_BUILTIN, PLAN_RESULT_BLACKLISTED,
        };

        for (size_t k = 0; k < ELEMENTSOF(order); k++)
                for (size_t i = 0; i < p->n_modules; i++)
                        if (p->results[i] == order[k]) {
                                p->result = order[k];
                                return;
                        }
        p->result = PLAN_RESULT_STEPS;
}

static int plan_new(const char *name, Plan **ret) {
        Plan *p;

        p = calloc(1, sizeof(Plan));
        if (!p)
                return -ENOMEM;
        p->name = strdup(name);
        p->modules = calloc(1, sizeof(char *));
        if (!p->name || !p->modules) {
                plan_free(p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

/* Look a request up the way modprobe does. For an absolute path, a single module from the file. */
static int lookup_targets(Resolver *r, const char *name, struct kmod_list **ret_list,
                          struct kmod_module **ret_path_mod) {
        struct kmod_list *list = NULL;
        int k;

        if (name[0] == '/') {
                struct kmod_module *m = NULL;

                k = kmod_module_new_from_path(r->ctx, name, &m);
                if (k < 0)
                        return k;
                *ret_path_mod = m;
                *ret_list = NULL;
                return 0;
        }

        k = kmod_module_new_from_lookup(r->ctx, name, &list);
        if (k < 0) {
                kmod_module_unref_list(list);
                return k;
        }
        if (!list)
                return -ENOENT;

        *ret_list = list;
        *ret_path_mod = NULL;
        return 0;
}

/* kmod's print_action callback carries no user data; the plan being built is passed through this
 * per-thread pointer for the duration of one kmod_module_probe_insert_module() call. */
typedef struct LoadCollector {
        Plan *plan;
        const char *target;
        char **required; /* target + its modules.dep dependencies: failures of these are fatal */
        int error;
} LoadCollector;

static _Thread_local LoadCollector *current_collector = NULL;

static int collect_action(LoadCollector *c, struct kmod_module *m, bool install, const char *options) {
        const char *name = kmod_module_get_name(m);
        _cleanup_kmod_list_ struct kmod_list *deps = NULL;
        bool required = strv_contains(c->required, name);
        Step *s;
        StepKind kind;
        const char *path = NULL, *command = NULL;
        int k;

        s = plan_find_step(c->plan, name);
        if (s) {
                /* Already planned (for an earlier target, or listed twice by kmod): a second insert
                 * would only hit EEXIST, which kmod ignores. Keep the stronger requirement. */
                if (required) {
                        s->softdep = false;
                        s->optional = false;
                }
                if (streq(name, c->target))
                        s->target = true;
                return 0;
        }

        if (install) {
                kind = STEP_INSTALL;
                command = kmod_module_get_install_commands(m);
                if (!command)
                        return -EIO;
        } else {
                path = kmod_module_get_path(m);
                if (!path && kmod_module_get_initstate(m) == KMOD_MODULE_BUILTIN)
                        kind = STEP_BUILTIN;
                else
                        kind = STEP_INSMOD;
        }

        k = plan_add_step(c->plan, kind, name, path, kind == STEP_BUILTIN ? "" : options, command, &s);
        if (k < 0)
                return k;

        s->target = streq(name, c->target);
        s->softdep = !required;
        s->optional = !required;

        if (kind != STEP_BUILTIN) {
                char **v;

                deps = kmod_module_get_dependencies(m);
                k = module_list_names(deps, &v);
                if (k < 0)
                        return k;
                strv_free(s->depends);
                s->depends = v;
        }
        return 0;
}

static void print_action_cb(struct kmod_module *m, bool install, const char *options) {
        LoadCollector *c = current_collector;
        int k;

        if (!c || c->error < 0)
                return;

        k = collect_action(c, m, install, options);
        if (k < 0)
                c->error = k;
}

static int plan_load_one(Resolver *r, Plan *p, struct kmod_module *mod, const char *extra_options, ResolveFlags flags,
                         PlanResult *ret_result) {
        _cleanup_kmod_list_ struct kmod_list *deps = NULL;
        LoadCollector c = {
                .plan = p,
                .target = kmod_module_get_name(mod),
        };
        unsigned kflags = KMOD_PROBE_DRY_RUN | KMOD_PROBE_APPLY_BLACKLIST_ALIAS_ONLY;
        ModuleState state;
        char **deps_names = NULL;
        int k;

        if (!FLAGS_SET_ANY(flags, RESOLVE_IGNORE_LOADED)) {
                state = module_state_of(mod);
                if (state == MODULE_STATE_LIVE || state == MODULE_STATE_BUILTIN) {
                        if (FLAGS_SET_ANY(flags, RESOLVE_FIRST_TIME))
                                return -EEXIST;
                        *ret_result = state == MODULE_STATE_LIVE ? PLAN_RESULT_LIVE : PLAN_RESULT_BUILTIN;
                        return 0;
                }
        }

        if (FLAGS_SET_ANY(flags, RESOLVE_APPLY_BLACKLIST))
                kflags |= KMOD_PROBE_APPLY_BLACKLIST;
        if (FLAGS_SET_ANY(flags, RESOLVE_IGNORE_INSTALL))
                kflags |= KMOD_PROBE_IGNORE_COMMAND;
        if (FLAGS_SET_ANY(flags, RESOLVE_IGNORE_LOADED))
                kflags |= KMOD_PROBE_IGNORE_LOADED;
        if (FLAGS_SET_ANY(flags, RESOLVE_FIRST_TIME))
                kflags |= KMOD_PROBE_FAIL_ON_LOADED;

        /* kmod treats the target and its modules.dep dependencies as required, everything else
         * it reaches only through softdeps as optional. */
        deps = kmod_module_get_dependencies(mod);
        k = module_list_names(deps, &deps_names);
        if (k < 0)
                return k;
        {
                size_t n = 0;
                char **v;

                while (deps_names[n])
                        n++;
                v = reallocarray(deps_names, n + 2, sizeof(char *));
                if (!v) {
                        strv_free(deps_names);
                        return -ENOMEM;
                }
                deps_names = v;
                deps_names[n] = strdup(c.target);
                deps_names[n + 1] = NULL;
                if (!deps_names[n]) {
                        strv_free(deps_names);
                        return -ENOMEM;
                }
        }
        c.required = deps_names;

        current_collector = &c;
        k = kmod_module_probe_insert_module(mod, kflags, extra_options, NULL, NULL, print_action_cb);
        current_collector = NULL;
        strv_free(deps_names);

        if (c.error < 0)
                return c.error;
        if (k < 0)
                return k;

        *ret_result = k > 0 ? PLAN_RESULT_BLACKLISTED : PLAN_RESULT_STEPS;
        return 0;
}

static ssize_t plan_step_index(const Plan *p, const char *module) {
        for (size_t i = 0; i < p->n_steps; i++)
                if (streq(p->steps[i].module, module))
                        return (ssize_t) i;
        return -1;
}

/* Make step `later` wait for the step of `module`, when that comes earlier in the plan. An edge
 * against kmod's order is left out: kmod's order is a valid one, so the edges never form a cycle. */
static int plan_order_after(Plan *p, size_t later, const char *module) {
        ssize_t k = plan_step_index(p, module);
        Step *s = p->steps + later;

        if (k < 0 || (size_t) k >= later || strv_contains(s->after, module))
                return 0;
        return strv_extend(&s->after, module);
}

static int plan_order_list(Plan *p, size_t later, struct kmod_list *list) {
        struct kmod_list *l;
        int k;

        kmod_list_foreach(l, list) {
                _cleanup_kmod_module_ struct kmod_module *m = kmod_module_get_module(l);

                k = plan_order_after(p, later, kmod_module_get_name(m));
                if (k < 0)
                        return k;
        }
        return 0;
}

/* What each step must wait for: its hard dependencies and its pre-softdeps; a post-softdep waits
 * for the module that pulled it in. Everything else may run at the same time. */
static int plan_order(Resolver *r, Plan *p) {
        int k;

        for (size_t i = 0; i < p->n_steps; i++) {
                _cleanup_kmod_module_ struct kmod_module *m = NULL;
                _cleanup_kmod_list_ struct kmod_list *pre = NULL, *post = NULL;
                Step *s = p->steps + i;

                if (s->kind == STEP_BUILTIN)
                        continue;
                for (char **d = s->depends; *d; d++) {
                        k = plan_order_after(p, i, *d);
                        if (k < 0)
                                return k;
                }
                if (kmod_module_new_from_name(r->ctx, s->module, &m) < 0 ||
                    kmod_module_get_softdeps(m, &pre, &post) < 0)
                        continue;
                k = plan_order_list(p, i, pre);
                if (k < 0)
                        return k;
                for (struct kmod_list *l = post; l; l = kmod_list_next(post, l)) {
                        _cleanup_kmod_module_ struct kmod_module *pm = kmod_module_get_module(l);
                        ssize_t j = plan_step_index(p, kmod_module_get_name(pm));

                        if (j > (ssize_t) i) {
                                k = plan_order_after(p, (size_t) j, s->module);
                                if (k < 0)
                                        return k;
                        }
                }
        }
        return 0;
}

int resolver_plan_load(Resolver *r, const char *name, const char *extra_options, ResolveFlags flags, Plan **ret) {
        _cleanup_kmod_list_ struct kmod_list *list = NULL;
        _cleanup_kmod_module_ struct kmod_module *path_mod = NULL;
        _cleanup_(plan_freep) Plan *p = NULL;
        struct kmod_list *l;
        int k;

        if (!r || !ret || !request_name_is_valid(name))
                return -EINVAL;

        k = lookup_targets(r, name, &list, &path_mod);
        if (k < 0)
                return k;

        k = plan_new(name, &p);
        if (k < 0)
                return k;

        if (path_mod) {
                /* insmod semantics: the file as given, the caller's options only, no dependencies. */
                const char *modname = kmod_module_get_name(path_mod);
                ModuleState state;
                Step *s;

                k = plan_add_module(p, modname);
                if (k < 0)
                        return k;

                state = FLAGS_SET_ANY(flags, RESOLVE_IGNORE_LOADED) ? MODULE_STATE_NOT_LOADED
                                                                    : module_state_of(path_mod);
                if (state == MODULE_STATE_LIVE || state == MODULE_STATE_BUILTIN) {
                        if (FLAGS_SET_ANY(flags, RESOLVE_FIRST_TIME))
                                return -EEXIST;
                        p->results[0] = state == MODULE_STATE_LIVE ? PLAN_RESULT_LIVE : PLAN_RESULT_BUILTIN;
                } else {
                        k = plan_add_step(p, STEP_INSMOD, modname, kmod_module_get_path(path_mod), extra_options, NULL,
                                          &s);
                        if (k < 0)
                                return k;
                        s->target = true;
                }
        } else
                kmod_list_foreach(l, list) {
                        _cleanup_kmod_module_ struct kmod_module *mod = kmod_module_get_module(l);
                        PlanResult result;

                        k = plan_add_module(p, kmod_module_get_name(mod));
                        if (k < 0)
                                return k;

                        k = plan_load_one(r, p, mod, extra_options, flags, &result);
                        if (k < 0)
                                return k;
                        p->results[p->n_modules - 1] = result;
                }

        k = plan_order(r, p);
        if (k < 0)
                return k;
        plan_finish(p);
        *ret = TAKE_PTR(p);
        return 0;
}

/* ---- unload ---- */

typedef struct UnloadWalk {
        Plan *plan;
        ResolveFlags flags;
        char **visited;
        size_t n_visited;
} UnloadWalk;

static bool walk_visited(UnloadWalk *w, const char *name) {
        for (size_t i = 0; i < w->n_visited; i++)
                if (streq(w->visited[i], name))
                        return true;
        return false;
}

static int walk_mark(UnloadWalk *w, const char *name) {
        char **v, *s;

        s = strdup(name);
        if (!s)
                return -ENOMEM;
        v = reallocarray(w->visited, w->n_visited + 1, sizeof(char *));
        if (!v) {
                free(s);
                return -ENOMEM;
        }
        w->visited = v;
        w->visited[w->n_visited++] = s;
        return 0;
}

static int unload_module(UnloadWalk *w, struct kmod_module *mod, bool top, bool optional, PlanResult *ret_result);

/* Walk a list last to first, as modprobe -r does with softdeps and holders. With stop_on_error
 * the first failure is returned; otherwise failures are ignored (except -ENOMEM). */
static int unload_list_reverse(UnloadWalk *w, struct kmod_list *list, bool stop_on_error, size_t *ret_count) {
        struct kmod_list *l;
        size_t count = 0;
        int k;

        kmod_list_foreach_reverse(l, list) {
                _cleanup_kmod_module_ struct kmod_module *m = kmod_module_get_module(l);
                size_t before = w->plan->n_steps;

                k = unload_module(w, m, false, !stop_on_error, NULL);
                if (k == -ENOMEM || (k < 0 && stop_on_error))
                        return k;
                if (w->plan->n_steps > before)
                        count++;
        }

        if (ret_count)
                *ret_count = count;
        return 0;
}

static int unload_module(UnloadWalk *w, struct kmod_module *mod, bool top, bool optional, PlanResult *ret_result) {
        _cleanup_kmod_list_ struct kmod_list *pre = NULL, *post = NULL, *holders = NULL, *deps = NULL;
        const char *name = kmod_module_get_name(mod);
        bool ignore_loaded = FLAGS_SET_ANY(w->flags, RESOLVE_IGNORE_LOADED);
        const char *cmd = NULL;
        size_t n_holders = 0;
        struct kmod_list *l;
        Step *s;
        int k;

        if (walk_visited(w, name))
                return 0;

        if (!FLAGS_SET_ANY(w->flags, RESOLVE_IGNORE_INSTALL)) {
                k = kmod_module_get_softdeps(mod, &pre, &post);
                if (k < 0)
                        return k;
                cmd = kmod_module_get_remove_commands(mod);
        }

        /* Without a remove command, a module that is not in the kernel needs nothing; a builtin one
         * cannot go (an error for the requested module, silently skipped for softdeps/holders). */
        if (!cmd && !ignore_loaded) {
                ModuleState state = module_state_of(mod);

                if (state == MODULE_STATE_BUILTIN || state < 0 || state == MODULE_STATE_NOT_LOADED) {
                        if (ret_result)
                                *ret_result =
                                        state == MODULE_STATE_BUILTIN ? PLAN_RESULT_BUILTIN : PLAN_RESULT_NOT_LOADED;
                        return 0;
                }
        }

        k = walk_mark(w, name);
        if (k < 0)
                return k;

        /* 1. post-softdeps, last first; failures do not matter */
        k = unload_list_reverse(w, post, false, NULL);
        if (k < 0)
                return k;

        /* 2. holders, only for the requested module and only when asked to */
        if (top && FLAGS_SET_ANY(w->flags, RESOLVE_REMOVE_HOLDERS)) {
                holders = kmod_module_get_holders(mod);
                k = unload_list_reverse(w, holders, true, &n_holders);
                if (k < 0)
                        return k;
        }

        /* 3. the module itself, unless someone besides the holders we remove still uses it */
        if (!cmd && !ignore_loaded && !FLAGS_SET_ANY(w->flags, RESOLVE_UNLOAD_WAIT)) {
                int refcnt = kmod_module_get_refcnt(mod);

                if (refcnt > 0 && (size_t) refcnt > n_holders)
                        return -EBUSY;
        }

        k = plan_add_step(w->plan, cmd ? STEP_REMOVE : STEP_RMMOD, name, NULL, "", cmd, &s);
        if (k < 0)
                return k;
        s->target = top;
        s->optional = optional;
        s->softdep = !top && optional;

        /* 4. its dependencies, each if nothing uses it any more by then; failures do not matter */
        if (!cmd) {
                deps = kmod_module_get_dependencies(mod);
                kmod_list_foreach(l, deps) {
                        _cleanup_kmod_module_ struct kmod_module *d = kmod_module_get_module(l);
                        const char *dn = kmod_module_get_name(d);

                        if (walk_visited(w, dn))
                                continue;
                        if (!ignore_loaded) {
                                ModuleState ds = module_state_of(d);

                                if (ds != MODULE_STATE_LIVE && ds != MODULE_STATE_COMING && ds != MODULE_STATE_GOING)
                                        continue;
                        }

                        k = walk_mark(w, dn);
                        if (k < 0)
                                return k;
                        k = plan_add_step(w->plan, STEP_RMMOD, dn, NULL, "", NULL, &s);
                        if (k < 0)
                                return k;
                        s->optional = true;
                        s->if_unused = true;
                }
        }

        /* 5. pre-softdeps, last first; failures do not matter */
        k = unload_list_reverse(w, pre, false, NULL);
        if (k < 0)
                return k;

        if (ret_result)
                *ret_result = PLAN_RESULT_STEPS;
        return 0;
}

static int plan_unload_target(UnloadWalk *w, struct kmod_module *mod) {
        PlanResult result = PLAN_RESULT_STEPS;
        int k;

        k = plan_add_module(w->plan, kmod_module_get_name(mod));
        if (k < 0)
                return k;

        k = unload_module(w, mod, true, false, &result);
        if (k < 0)
                return k;

        w->plan->results[w->plan->n_modules - 1] = result;
        return 0;
}

int resolver_plan_unload(Resolver *r, const char *name, ResolveFlags flags, Plan **ret) {
        _cleanup_kmod_list_ struct kmod_list *list = NULL;
        _cleanup_kmod_module_ struct kmod_module *path_mod = NULL;
        _cleanup_(plan_freep) Plan *p = NULL;
        UnloadWalk w = {};
        struct kmod_list *l;
        int k;

        if (!r || !ret || !request_name_is_valid(name))
                return -EINVAL;

        if (name[0] == '/') {
                /* As rmmod: the module named after the file; the file need not exist. */
                _cleanup_free_ char *modname = NULL;

                k = module_name_normalize(strrchr(name, '/') + 1, &modname);
                if (k < 0)
                        return k;
                k = kmod_module_new_from_name(r->ctx, modname, &path_mod);
                if (k < 0)
                        return k;
        } else {
                k = kmod_module_new_from_lookup(r->ctx, name, &list);
                if (k < 0)
                        return k;
                if (!list)
                        return -ENOENT;
        }

        k = plan_new(name, &p);
        if (k < 0)
                return k;

        w = (UnloadWalk){
                .plan = p,
                .flags = flags,
        };

        if (path_mod)
                k = plan_unload_target(&w, path_mod);
        else
                kmod_list_foreach(l, list) {
                        _cleanup_kmod_module_ struct kmod_module *mod = kmod_module_get_module(l);

                        k = plan_unload_target(&w, mod);
                        if (k < 0)
                                break;
                }

        for (size_t i = 0; i < w.n_visited; i++)
                free(w.visited[i]);
        free(w.visited);
        if (k < 0)
                return k;

        plan_finish(p);
        *ret = TAKE_PTR(p);
        return 0;
}
