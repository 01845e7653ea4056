/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for the resolver against a real module tree (a lib/modules/<release> directory with depmod
 * output) named by $MODLOADD_TEST_MODULE_DIR, and the modprobe.d fixtures in
 * test/fixtures/resolver/ ($MODLOADD_RESOLVER_FIXTURES overrides where they are). Expectations are
 * derived from the tree's own modules.dep/alias/symbols/builtin wherever possible. Nothing is
 * loaded or unloaded. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "resolver.h"
#include "strutil.h"

static unsigned failures = 0;

#define check(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        failures++;                                                              \
                }                                                                                \
        } while (0)

static const char *module_dir = NULL;
static char fixtures[PATH_MAX];

/* ---- reading the tree's own files for expectations ---- */

/* First line of dir/file that starts with prefix, without the newline; NULL if none. */
static char *find_line(const char *file, const char *prefix) {
        char path[PATH_MAX], *line = NULL, *found = NULL;
        size_t sz = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", module_dir, file);
        f = fopen(path, "re");
        if (!f)
                return NULL;
        while (getline(&line, &sz, f) > 0) {
                line[strcspn(line, "\n")] = '\0';
                if (startswith(line, prefix)) {
                        found = strdup(line);
                        break;
                }
        }
        free(line);
        fclose(f);
        return found;
}

/* Module name from a path in modules.dep/modules.builtin: basename up to the first '.', '-' → '_'. */
static char *name_from_path(const char *p, size_t len) {
        _cleanup_free_ char *s = strndup(p, len);
        const char *base;
        char *n = NULL;

        if (!s)
                return NULL;
        base = strrchr(s, '/') ? strrchr(s, '/') + 1 : s;
        if (module_name_normalize(base, &n) < 0)
                return NULL;
        return n;
}

/* The modules.dep dependencies of `module` (given as its path prefix "kernel/…/name.ko") in load
 * order, i.e. the reverse of the line. Returns the count, fills names[] (caller frees). */
static size_t dep_load_order(const char *dep_prefix, char **names, size_t max, char **ret_path) {
        _cleanup_free_ char *line = find_line("modules.dep", dep_prefix);
        char *colon, *p;
        size_t n = 0;

        if (!line)
                return 0;
        colon = strchr(line, ':');
        if (!colon)
                return 0;
        if (ret_path)
                *ret_path = strndup(line, (size_t) (colon - line));
        for (p = colon + 1; *p;) {
                size_t k;

                p += strspn(p, " \t");
                k = strcspn(p, " \t");
                if (k == 0)
                        break;
                if (n < max)
                        names[n++] = name_from_path(p, k);
                p += k;
        }
        /* reverse: modprobe inserts the last listed dependency first */
        for (size_t i = 0; i < n / 2; i++) {
                char *t = names[i];
                names[i] = names[n - 1 - i];
                names[n - 1 - i] = t;
        }
        return n;
}

static ssize_t step_index(const Plan *p, const char *module) {
        for (size_t i = 0; i < p->n_steps; i++)
                if (streq(p->steps[i].module, module))
                        return (ssize_t) i;
        return -1;
}

static bool plan_has_module(const Plan *p, const char *module) {
        for (size_t i = 0; i < p->n_modules; i++)
                if (streq(p->modules[i], module))
                        return true;
        return false;
}

static bool endswith(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && streq(s + a - b, suffix);
}

static void dump_plan(const Plan *p) {
        fprintf(stderr, "plan for '%s' (%s):", p->name, plan_result_to_string(p->result));
        for (size_t i = 0; i < p->n_modules; i++)
                fprintf(stderr, " %s[%s]", p->modules[i], plan_result_to_string(p->results[i]));
        fputc('\n', stderr);
        for (size_t i = 0; i < p->n_steps; i++) {
                const Step *s = p->steps + i;
                fprintf(stderr, "  %-7s %-20s %s%s%s%s opts='%s' %s%s\n", step_kind_to_string(s->kind), s->module,
                        s->target ? "T" : "-", s->softdep ? "S" : "-", s->optional ? "O" : "-",
                        s->if_unused ? "U" : "-", s->options, s->path ?: "", s->command ?: "");
        }
}

static Resolver *new_resolver(const char *const *paths) {
        ResolverConfig c = { .module_dir = module_dir, .config_paths = paths };
        Resolver *r = NULL;
        int k = resolver_new(&r, &c);

        check(k == 0);
        check(r);
        return r;
}

/* ---- tests ---- */

static void test_names(void) {
        char *s = NULL;
        char big[REQUEST_NAME_MAX + 2];

        check(request_name_is_valid("btrfs"));
        check(request_name_is_valid("fs-btrfs"));
        check(request_name_is_valid("pci:v00008086d00001170sv*sd*bc*sc*i*"));
        check(request_name_is_valid("symbol:raid6_call"));
        check(request_name_is_valid("/lib/modules/x/kernel/a.ko"));
        check(request_name_is_valid("/lib/modules/x/kernel/a.ko.xz"));
        check(request_name_is_valid("/lib/modules/x/kernel/a.ko.zst"));
        check(request_name_is_valid("/lib/modules/x/kernel/a.ko.gz"));

        check(!request_name_is_valid(NULL));
        check(!request_name_is_valid(""));
        check(!request_name_is_valid("-b"));
        check(!request_name_is_valid(".."));
        check(!request_name_is_valid("."));
        check(!request_name_is_valid("a\nb"));
        check(!request_name_is_valid("a\tb"));
        check(!request_name_is_valid("a\x7f"));
        check(!request_name_is_valid("x/y"));
        check(!request_name_is_valid("../x.ko"));
        check(!request_name_is_valid("./x.ko"));
        check(!request_name_is_valid("/tmp/x.txt"));
        check(!request_name_is_valid("/tmp/x.ko.bz2"));
        check(!request_name_is_valid("/a/../b.ko"));
        check(!request_name_is_valid("/a/./b.ko"));
        check(!request_name_is_valid("/a//b.ko"));
        check(!request_name_is_valid("/a/.ko"));
        check(!request_name_is_valid("/a/b.ko/"));

        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        check(!request_name_is_valid(big));
        big[REQUEST_NAME_MAX] = '\0';
        check(request_name_is_valid(big));

        check(module_name_normalize("crc32c-intel", &s) == 0 && streq(s, "crc32c_intel"));
        free(s);
        check(module_name_normalize("btrfs.ko.xz", &s) == 0 && streq(s, "btrfs"));
        free(s);
        check(module_name_normalize("", &s) == -EINVAL);
        check(module_name_normalize(NULL, &s) == -EINVAL);

        check(streq(module_state_to_string(MODULE_STATE_NOT_LOADED), "notLoaded"));
        check(streq(module_state_to_string(MODULE_STATE_BUILTIN), "builtin"));
        check(module_state_to_string(_MODULE_STATE_MAX) == NULL);
        check(module_state_to_string(_MODULE_STATE_INVALID) == NULL);
        check(streq(step_kind_to_string(STEP_REMOVE), "remove"));
        check(streq(plan_result_to_string(PLAN_RESULT_BLACKLISTED), "blacklisted"));
}

static void test_new_errors(void) {
        ResolverConfig c = { .module_dir = "/nonexistent/lib/modules/0.0" };
        Resolver *r = (Resolver *) 0x1;

        check(resolver_new(&r, &c) == -ENOENT);
        check(r == (Resolver *) 0x1);
        c.module_dir = "/proc/self/cmdline";
        check(resolver_new(&r, &c) == -ENOTDIR);
}

static void test_btrfs(Resolver *r) {
        char *deps[64] = {};
        _cleanup_free_ char *btrfs_path = NULL;
        size_t n = dep_load_order("kernel/fs/btrfs/btrfs.ko", deps, ELEMENTSOF(deps), &btrfs_path);
        _cleanup_(plan_freep) Plan *p = NULL;
        ssize_t ib, prev = -1;

        check(n > 0);
        check(resolver_plan_load(r, "btrfs", "extra=1", 0, &p) == 0);
        if (!p)
                goto out;

        check(p->n_modules == 1 && streq(p->modules[0], "btrfs") && !p->modules[1]);
        check(p->result == PLAN_RESULT_STEPS && p->results[0] == PLAN_RESULT_STEPS);

        ib = step_index(p, "btrfs");
        check(ib >= 0);
        if (ib < 0)
                goto out;
        /* the target comes last, after everything else (its own post-softdeps: none) */
        check((size_t) ib == p->n_steps - 1);
        check(p->steps[ib].kind == STEP_INSMOD);
        check(p->steps[ib].target && !p->steps[ib].softdep && !p->steps[ib].optional);
        check(btrfs_path && p->steps[ib].path && endswith(p->steps[ib].path, btrfs_path));
        check(p->steps[ib].path && startswith(p->steps[ib].path, module_dir));
        /* modprobe.d options in file order, kernel command line (if any) in between, extra last */
        check(startswith(p->steps[ib].options, "fixture_a=1 fixture_b=\"two words\""));
        check(endswith(p->steps[ib].options, " extra=1"));
        check(!strstr(p->steps[ib].options, "fixture_via_alias"));

        /* hard dependencies: all present, in modules.dep load order, required, before btrfs */
        for (size_t i = 0; i < n; i++) {
                ssize_t j = step_index(p, deps[i]);

                check(j >= 0);
                if (j < 0)
                        continue;
                check(j > prev);
                prev = j;
                check(j < ib);
                check(p->steps[j].kind == STEP_INSMOD);
                check(!p->steps[j].softdep && !p->steps[j].target && !p->steps[j].optional);
                check(streq(p->steps[j].options, ""));
        }
        /* the scheduler's view of the target's dependencies */
        {
                size_t k = 0;
                for (char **d = p->steps[ib].depends; *d; d++)
                        k++;
                check(k == n);
        }

        /* everything else came through softdeps (modules.softdep: btrfs pre:, libcrc32c pre:) */
        for (size_t i = 0; i < p->n_steps; i++) {
                bool is_dep = streq(p->steps[i].module, "btrfs");

                for (size_t j = 0; j < n; j++)
                        if (streq(p->steps[i].module, deps[j]))
                                is_dep = true;
                if (!is_dep)
                        check(p->steps[i].softdep && p->steps[i].optional);
        }

        /* weakdep lines are never planned */
        check(step_index(p, "veth") < 0);

        /* --first-time is fine for a module that is not loaded */
        {
                _cleanup_(plan_freep) Plan *f = NULL;

                check(resolver_plan_load(r, "btrfs", NULL, RESOLVE_FIRST_TIME, &f) == 0);
                check(f && f->n_steps == p->n_steps);
        }
out:
        if (failures)
                dump_plan(p);
        for (size_t i = 0; i < n; i++)
                free(deps[i]);
}

static void test_aliases(Resolver *r) {
        _cleanup_(plan_freep) Plan *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        /* '-' and '_' are the same */
        check(resolver_plan_load(r, "raid6-pq", NULL, 0, &a) == 0);
        check(resolver_plan_load(r, "raid6_pq", NULL, 0, &b) == 0);
        if (a && b) {
                check(streq(a->modules[0], "raid6_pq") && streq(b->modules[0], "raid6_pq"));
                check(a->n_steps == b->n_steps);
                check(streq(a->name, "raid6-pq"));
        }

        /* modules.alias */
        check(resolver_plan_load(r, "fs-btrfs", NULL, 0, &c) == 0);
        if (c) {
                check(c->n_modules == 1 && streq(c->modules[0], "btrfs"));
                check(step_index(c, "btrfs") >= 0);
        }

        /* modprobe.d alias; options given for the alias apply too, in config order */
        check(resolver_plan_load(r, "my-fs", "extra=1", 0, &d) == 0);
        if (d) {
                ssize_t i = step_index(d, "btrfs");

                check(d->n_modules == 1 && streq(d->modules[0], "btrfs"));
                check(i >= 0);
                if (i >= 0) {
                        check(startswith(d->steps[i].options,
                                         "fixture_a=1 fixture_via_alias=1 fixture_b=\"two words\""));
                        check(endswith(d->steps[i].options, " extra=1"));
                }
        }
}

static void test_modalias_symbol(Resolver *r) {
        _cleanup_free_ char *line = find_line("modules.alias", "alias pci:v");
        _cleanup_free_ char *sym = find_line("modules.symbols", "alias symbol:");
        _cleanup_(plan_freep) Plan *p = NULL, *q = NULL;
        char modalias[512], *pattern, *module;
        size_t o = 0;

        check(line);
        check(sym);
        if (!line || !sym)
                return;

        /* "alias <pattern> <module>": make a concrete modalias the pattern matches */
        pattern = line + strlen("alias ");
        module = strchr(pattern, ' ');
        check(module);
        if (!module)
                return;
        *module++ = '\0';
        for (const char *c = pattern; *c && o < sizeof(modalias) - 9; c++) {
                if (*c == '*') {
                        memcpy(modalias + o, "00000000", 8);
                        o += 8;
                } else
                        modalias[o++] = *c;
        }
        modalias[o] = '\0';
        check(!strchr(modalias, '*'));

        check(resolver_plan_load(r, modalias, NULL, 0, &p) == 0);
        if (p) {
                char *m = NULL;

                check(module_name_normalize(module, &m) == 0);
                check(m && plan_has_module(p, m));
                check(m && step_index(p, m) >= 0 && p->steps[step_index(p, m)].target);
                free(m);
        }

        /* "alias symbol:<name> <module>" */
        pattern = sym + strlen("alias ");
        module = strchr(pattern, ' ');
        check(module);
        if (!module)
                return;
        *module++ = '\0';
        check(resolver_plan_load(r, pattern, NULL, 0, &q) == 0);
        if (q) {
                char *m = NULL;

                check(module_name_normalize(module, &m) == 0);
                check(m && plan_has_module(q, m));
                free(m);
        }
}

static void test_builtin(Resolver *r) {
        _cleanup_free_ char *line = find_line("modules.builtin", "kernel/");
        _cleanup_free_ char *name = NULL;
        _cleanup_(plan_freep) Plan *p = NULL, *q = NULL, *u = NULL;
        Plan *untouched = (Plan *) 0x1;

        check(line);
        if (!line)
                return;
        name = name_from_path(line, strlen(line));
        check(name);
        if (!name)
                return;

        check(resolver_module_state(r, name) == MODULE_STATE_BUILTIN);

        check(resolver_plan_load(r, name, NULL, 0, &p) == 0);
        if (p) {
                check(p->result == PLAN_RESULT_BUILTIN);
                check(p->n_steps == 0);
        }
        check(resolver_plan_load(r, name, NULL, RESOLVE_IGNORE_LOADED, &q) == 0);
        if (q) {
                check(q->n_steps == 1);
                check(q->n_steps == 1 && q->steps[0].kind == STEP_BUILTIN && q->steps[0].target && !q->steps[0].path &&
                      streq(q->steps[0].module, name));
        }
        /* --first-time: already in the kernel */
        check(resolver_plan_load(r, name, NULL, RESOLVE_FIRST_TIME, &untouched) == -EEXIST);
        check(untouched == (Plan *) 0x1);

        /* a builtin module cannot be removed */
        check(resolver_plan_unload(r, name, 0, &u) == 0);
        if (u) {
                check(u->result == PLAN_RESULT_BUILTIN);
                check(u->n_steps == 0);
        }
}

static void test_blacklist(Resolver *r) {
        _cleanup_(plan_freep) Plan *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        /* config alias → blacklisted module: filtered */
        check(resolver_plan_load(r, "fixture_net", NULL, 0, &a) == 0);
        if (a) {
                check(a->result == PLAN_RESULT_BLACKLISTED);
                check(a->n_steps == 0 && a->n_modules == 1 && streq(a->modules[0], "dummy"));
        }
        /* modules.alias → blacklisted module: filtered */
        check(resolver_plan_load(r, "rtnl-link-dummy", NULL, 0, &b) == 0);
        if (b)
                check(b->result == PLAN_RESULT_BLACKLISTED && b->n_steps == 0);
        /* the module name itself: allowed unless -b */
        check(resolver_plan_load(r, "dummy", NULL, 0, &c) == 0);
        if (c)
                check(c->result == PLAN_RESULT_STEPS && c->n_steps == 1 && c->steps[0].target);
        check(resolver_plan_load(r, "dummy", NULL, RESOLVE_APPLY_BLACKLIST, &d) == 0);
        if (d)
                check(d->result == PLAN_RESULT_BLACKLISTED && d->n_steps == 0);
}

static void test_softdep(Resolver *r) {
        _cleanup_(plan_freep) Plan *p = NULL, *q = NULL;

        /* softdep nbd pre: tun post: veth (the second softdep line for nbd is ignored, and nbd's
         * install command is ignored because it has softdeps — both as kmod does) */
        check(resolver_plan_load(r, "nbd", "extra=1", 0, &p) == 0);
        if (p) {
                check(p->n_steps == 3);
                if (p->n_steps == 3) {
                        check(streq(p->steps[0].module, "tun") && p->steps[0].softdep && p->steps[0].optional &&
                              !p->steps[0].target && streq(p->steps[0].options, ""));
                        check(streq(p->steps[1].module, "nbd") && p->steps[1].kind == STEP_INSMOD &&
                              p->steps[1].target && !p->steps[1].softdep && streq(p->steps[1].options, "extra=1"));
                        check(streq(p->steps[2].module, "veth") && p->steps[2].softdep);
                }
                check(step_index(p, "loop") < 0);
        }
        /* -i: the target's command and its softdeps are skipped (kmod's ignorecmd) */
        check(resolver_plan_load(r, "nbd", NULL, RESOLVE_IGNORE_INSTALL, &q) == 0);
        if (q)
                check(q->n_steps == 1 && streq(q->steps[0].module, "nbd") && q->steps[0].kind == STEP_INSMOD);
        if (failures) {
                if (p)
                        dump_plan(p);
                if (q)
                        dump_plan(q);
        }
}

static void test_install(Resolver *r) {
        char *deps[16] = {};
        size_t n = dep_load_order("kernel/drivers/net/vxlan/vxlan.ko", deps, ELEMENTSOF(deps), NULL);
        _cleanup_(plan_freep) Plan *p = NULL, *q = NULL;
        _cleanup_free_ char *cmd = NULL;

        check(n > 0);
        check(resolver_plan_load(r, "vxlan", "extra=1", 0, &p) == 0);
        if (p) {
                ssize_t i = step_index(p, "vxlan");

                check(i >= 0 && (size_t) i == p->n_steps - 1);
                if (i >= 0) {
                        const Step *s = p->steps + i;

                        check(s->kind == STEP_INSTALL && s->target && !s->path);
                        check(s->command &&
                              streq(s->command, "/sbin/modprobe --ignore-install vxlan $CMDLINE_OPTS && /bin/true"));
                        check(streq(s->options, "udp_port=4790 extra=1"));
                        check(step_expand_command(s, &cmd) == 0);
                        check(cmd &&
                              streq(cmd, "/sbin/modprobe --ignore-install vxlan udp_port=4790 extra=1 && /bin/true"));
                }
                /* dependencies are still inserted first */
                for (size_t j = 0; j < n; j++) {
                        ssize_t k = step_index(p, deps[j]);
                        check(k >= 0 && k < i && p->steps[k].kind == STEP_INSMOD);
                }
        }
        check(resolver_plan_load(r, "vxlan", NULL, RESOLVE_IGNORE_INSTALL, &q) == 0);
        if (q) {
                ssize_t i = step_index(q, "vxlan");
                check(i >= 0 && q->steps[i].kind == STEP_INSMOD && q->steps[i].path && !q->steps[i].command);
                /* kmod joins config options and (absent) extra options with a space regardless */
                check(i >= 0 && streq(q->steps[i].options, "udp_port=4790 "));
        }
        for (size_t j = 0; j < n; j++)
                free(deps[j]);
}

static void test_not_found_and_invalid(Resolver *r) {
        Plan *p = (Plan *) 0x1;

        check(resolver_plan_load(r, "no_such_module_for_sure", NULL, 0, &p) == -ENOENT);
        check(resolver_plan_load(r, "pci:v0000FFFFd0000FFFFsvFFFFFFFFsdFFFFFFFFbcFFscFFiFF", NULL, 0, &p) == -ENOENT);
        check(resolver_plan_load(r, "/nonexistent/dir/x.ko", NULL, 0, &p) == -ENOENT);
        check(resolver_plan_load(r, "", NULL, 0, &p) == -EINVAL);
        check(resolver_plan_load(r, "../btrfs", NULL, 0, &p) == -EINVAL);
        check(resolver_plan_load(r, "-btrfs", NULL, 0, &p) == -EINVAL);
        check(resolver_plan_load(r, "bt\nrfs", NULL, 0, &p) == -EINVAL);
        check(resolver_plan_load(r, "kernel/fs/btrfs/btrfs.ko", NULL, 0, &p) == -EINVAL);
        check(resolver_plan_unload(r, "no_such_module_for_sure", 0, &p) == -ENOENT);
        check(resolver_plan_unload(r, "a/b", 0, &p) == -EINVAL);
        check(p == (Plan *) 0x1);
        check(resolver_module_state(r, "") == _MODULE_STATE_INVALID);
}

static void test_path(Resolver *r) {
        _cleanup_free_ char *line = find_line("modules.dep", "kernel/fs/btrfs/btrfs.ko");
        _cleanup_(plan_freep) Plan *p = NULL;
        char path[PATH_MAX];

        check(line);
        if (!line)
                return;
        line[strcspn(line, ":")] = '\0';
        snprintf(path, sizeof(path), "%s/%s", module_dir, line);

        check(resolver_plan_load(r, path, "extra=1", 0, &p) == 0);
        if (p) {
                check(p->n_modules == 1 && streq(p->modules[0], "btrfs"));
                check(p->n_steps == 1);
                check(p->n_steps == 1 && p->steps[0].kind == STEP_INSMOD && p->steps[0].target && p->steps[0].path &&
                      streq(p->steps[0].path, path) && streq(p->steps[0].options, "extra=1"));
        }
}

static void test_unload(Resolver *r) {
        char *deps[64] = {};
        size_t n = dep_load_order("kernel/fs/btrfs/btrfs.ko", deps, ELEMENTSOF(deps), NULL);
        _cleanup_(plan_freep) Plan *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;

        /* nothing is loaded on a machine that builds: nothing to do */
        check(resolver_plan_unload(r, "btrfs", 0, &a) == 0);
        if (a)
                check(a->result == PLAN_RESULT_NOT_LOADED && a->n_steps == 0);

        /* as if loaded: the module, then its dependencies in modules.dep load order (each only if
         * unused by then), then its pre-softdeps */
        check(resolver_plan_unload(r, "btrfs", RESOLVE_IGNORE_LOADED, &b) == 0);
        if (b) {
                check(b->result == PLAN_RESULT_STEPS);
                check(b->n_steps >= n + 1);
                if (b->n_steps >= n + 1) {
                        check(streq(b->steps[0].module, "btrfs") && b->steps[0].kind == STEP_RMMOD &&
                              b->steps[0].target && !b->steps[0].optional && !b->steps[0].if_unused);
                        for (size_t i = 0; i < n; i++)
                                check(streq(b->steps[1 + i].module, deps[i]) && b->steps[1 + i].if_unused &&
                                      b->steps[1 + i].optional && b->steps[1 + i].kind == STEP_RMMOD);
                        for (size_t i = n + 1; i < b->n_steps; i++)
                                check(b->steps[i].softdep && b->steps[i].optional);
                }
        }

        /* softdeps: post first (reverse), the module, pre last (reverse) */
        check(resolver_plan_unload(r, "nbd", RESOLVE_IGNORE_LOADED, &c) == 0);
        if (c) {
                check(c->n_steps == 3);
                if (c->n_steps == 3) {
                        check(streq(c->steps[0].module, "veth") && c->steps[0].optional && c->steps[0].softdep);
                        check(streq(c->steps[1].module, "nbd") && c->steps[1].target);
                        check(streq(c->steps[2].module, "tun") && c->steps[2].optional);
                }
        }
        /* -i: no softdeps */
        check(resolver_plan_unload(r, "nbd", RESOLVE_IGNORE_LOADED | RESOLVE_IGNORE_INSTALL, &d) == 0);
        if (d)
                check(d->n_steps == 1 && streq(d->steps[0].module, "nbd"));

        /* a remove command replaces rmmod, and then dependencies are left alone; the command runs
         * even when the module is not loaded, as in kmod */
        check(resolver_plan_unload(r, "vxlan", 0, &e) == 0);
        if (e) {
                check(e->n_steps == 1);
                check(e->n_steps == 1 && e->steps[0].kind == STEP_REMOVE &&
                      streq(e->steps[0].command, "/bin/true removing $MODPROBE_MODULE") && e->steps[0].target);
        }
        if (failures) {
                if (b)
                        dump_plan(b);
                if (c)
                        dump_plan(c);
        }
        for (size_t i = 0; i < n; i++)
                free(deps[i]);
}

static int copy_file(const char *from, const char *to) {
        char buf[4096];
        ssize_t l;
        int in, out, r = 0;

        in = open(from, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return -errno;
        out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out < 0) {
                r = -errno;
                close(in);
                return r;
        }
        while ((l = read(in, buf, sizeof(buf))) > 0)
                if (write(out, buf, (size_t) l) != l) {
                        r = -EIO;
                        break;
                }
        close(in);
        close(out);
        return r;
}

static void test_stale(void) {
        char dir[] = "/tmp/test-resolver-XXXXXX", src[PATH_MAX + 32], file[PATH_MAX + 32], extra[PATH_MAX + 32];
        const struct timespec past[2] = { { .tv_sec = 1000000000 }, { .tv_sec = 1000000000 } };
        Resolver *r;

        check(mkdtemp(dir));
        snprintf(src, sizeof(src), "%s/20-options.conf", fixtures);
        snprintf(file, sizeof(file), "%s/20-options.conf", dir);
        check(copy_file(src, file) == 0);

        /* a single file as config path: its own mtime counts */
        {
                const char *paths[] = { file, NULL };

                r = new_resolver(paths);
                check(!resolver_is_stale(r));
                check(utimensat(AT_FDCWD, file, past, 0) == 0);
                check(resolver_is_stale(r));
                resolver_free(r);
        }
        /* a directory: adding a file changes the directory */
        {
                const char *paths[] = { dir, NULL };
                int fd;

                check(utimensat(AT_FDCWD, dir, past, 0) == 0);
                r = new_resolver(paths);
                check(!resolver_is_stale(r));
                snprintf(extra, sizeof(extra), "%s/90-new.conf", dir);
                fd = open(extra, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                check(fd >= 0);
                safe_close(fd);
                check(resolver_is_stale(r));
                resolver_free(r);
        }
        (void) unlink(extra);
        (void) unlink(file);
        (void) rmdir(dir);
}

static void test_state(Resolver *r) {
        ModuleState s = resolver_module_state(r, "nbd");

        /* nothing is loaded here; a directory in /sys/module without initstate reads as "coming" */
        check(s == MODULE_STATE_NOT_LOADED || s == MODULE_STATE_COMING);
        check(resolver_module_state(r, "-x") == _MODULE_STATE_INVALID);
        check(resolver_is_stale(NULL));
}

int main(void) {
        const char *e;
        Resolver *r;

        test_names();

        module_dir = getenv("MODLOADD_TEST_MODULE_DIR");
        if (isempty(module_dir)) {
                printf("SKIP: MODLOADD_TEST_MODULE_DIR is not set (a lib/modules/<release> directory)\n");
                return 77;
        }

        e = getenv("MODLOADD_RESOLVER_FIXTURES");
        if (!isempty(e))
                snprintf(fixtures, sizeof(fixtures), "%s", e);
        else {
                /* next to the sources: <top>/src/core/this.c → <top>/test/fixtures/resolver */
                const char *slash = strrchr(__FILE__, '/');
                int l = slash ? (int) (slash - __FILE__) : 1;

                snprintf(fixtures, sizeof(fixtures), "%.*s/../../test/fixtures/resolver", l, slash ? __FILE__ : ".");
        }

        /* libkmod 30 reports config lines it does not know (our weakdep fixture) on stderr from
         * inside kmod_new(), before any log function can be set; keep the test output quiet. */
        (void) setenv("KMOD_LOG", "0", 0);

        {
                char probe[PATH_MAX + 32];

                snprintf(probe, sizeof(probe), "%s/10-alias.conf", fixtures);
                if (access(probe, R_OK) < 0) {
                        fprintf(stderr, "fixtures not found at %s (set MODLOADD_RESOLVER_FIXTURES): %m\n", fixtures);
                        return EXIT_FAILURE;
                }
        }

        test_new_errors();

        {
                const char *paths[] = { fixtures, NULL };

                r = new_resolver(paths);
                if (!r)
                        return EXIT_FAILURE;
                check(resolver_module_dir(r) && streq(resolver_module_dir(r), module_dir));
                test_btrfs(r);
                test_aliases(r);
                test_modalias_symbol(r);
                test_builtin(r);
                test_blacklist(r);
                test_softdep(r);
                test_install(r);
                test_not_found_and_invalid(r);
                test_path(r);
                test_unload(r);
                test_state(r);
                resolver_free(r);
        }
        test_stale();

        if (failures) {
                fprintf(stderr, "%u check(s) failed\n", failures);
                return EXIT_FAILURE;
        }
        printf("OK\n");
        return EXIT_SUCCESS;
}
