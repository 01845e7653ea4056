/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The resolver: turns a requested name (module name, alias, modalias, "symbol:" name, builtin
 * module or absolute path) into a plan — the ordered steps modprobe would take — using libkmod and
 * kmod's own semantics. It never loads, unloads or runs anything and never logs; executing a plan
 * is the loader's job.
 *
 * A Resolver wraps one kmod context and is not thread-safe: use it from one thread at a time. */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* What /sys/module/<name>/initstate (or modules.builtin) says about a module. */
typedef enum ModuleState {
        MODULE_STATE_NOT_LOADED,
        MODULE_STATE_LIVE,
        MODULE_STATE_COMING,
        MODULE_STATE_GOING,
        MODULE_STATE_BUILTIN,
        _MODULE_STATE_MAX,
        _MODULE_STATE_INVALID = -EINVAL,
} ModuleState;

/* "notLoaded", "live", "coming", "going", "builtin"; NULL when out of range. */
const char *module_state_to_string(ModuleState s);

typedef struct ResolverConfig {
        /* The lib/modules/<release> directory; NULL: kmod's default for the running kernel. */
        const char *module_dir;
        /* NULL-terminated list of modprobe.d directories or single files, in kmod's precedence
         * (a file name seen in an earlier directory hides the same name in later ones); NULL:
         * kmod's defaults. modules.softdep of module_dir is read in addition, as kmod does. */
        const char *const *config_paths;
} ResolverConfig;

typedef struct Resolver Resolver;

/* Create a kmod context (with no log function: nothing is printed once it exists) and load the
 * indexes. Returns -ENOENT/-ENOTDIR/… when module_dir cannot be opened as a directory, -ENOMEM.
 * A missing or unreadable index is not an error (kmod then falls back to the text files, as
 * modprobe does). Note: libkmod parses the modprobe.d files inside kmod_new(), before a log
 * function can be installed, so libkmod itself may report malformed config lines on stderr. */
int resolver_new(Resolver **ret, const ResolverConfig *config);
Resolver *resolver_free(Resolver *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Resolver *, resolver_free);

/* The module directory in use: config->module_dir as given, or kmod's default. */
const char *resolver_module_dir(Resolver *r);

/* True when an index in the module directory or a config path (a directory's own mtime, or a
 * single file's) changed since resolver_new(): the caller should create a new Resolver. */
bool resolver_is_stale(Resolver *r);

typedef enum StepKind {
        STEP_INSMOD,  /* insert the module file `path` with `options` */
        STEP_BUILTIN, /* nothing to do: built into the kernel (only listed with RESOLVE_IGNORE_LOADED) */
        STEP_INSTALL, /* run modprobe.d's install `command` instead of inserting */
        STEP_RMMOD,   /* delete_module(`module`) */
        STEP_REMOVE,  /* run modprobe.d's remove `command` instead of deleting */
        _STEP_KIND_MAX,
        _STEP_KIND_INVALID = -EINVAL,
} StepKind;

/* "insmod", "builtin", "install", "rmmod", "remove"; NULL when out of range. */
const char *step_kind_to_string(StepKind k);

typedef struct Step {
        StepKind kind;
        char *module;   /* canonical name (underscores) */
        char *path;     /* STEP_INSMOD: the module file; NULL if kmod knows no file for it (executing
                         * the step then fails with -ENOENT, as kmod's insert does) */
        char *options;  /* parameters for the kernel, or for $CMDLINE_OPTS of a command; "" if none */
        char *command;  /* STEP_INSTALL/STEP_REMOVE: the command as written in modprobe.d, with
                         * $CMDLINE_OPTS unexpanded (see step_expand_command()); else NULL */
        char **depends; /* STEP_INSMOD/STEP_INSTALL: hard dependencies of this module (modules.dep),
                         * NULL-terminated, never NULL; they appear as earlier steps unless already
                         * in the kernel. */
        char **after;   /* modules of earlier steps of this plan that must be done before this one:
                         * its hard dependencies and pre-softdeps, and for a post-softdep the module
                         * that pulled it in (edges against the plan's order are left out, so they
                         * never form a cycle). NULL-terminated, never NULL. Steps that do not wait
                         * for each other may run at the same time. */
        bool softdep;   /* pulled in by a softdep of another module (and not a hard dependency of a
                         * target) */
        bool target;    /* the module the name resolved to, not a dependency */
        bool optional;  /* kmod ignores the failure of this step and goes on */
        bool if_unused; /* STEP_RMMOD: do it only if the module is loaded and its refcount is 0 at
                         * that moment (modprobe -r's "dependencies that became unused") */
} Step;

/* Substitute every "$CMDLINE_OPTS" in step->command by step->options, as kmod does before handing
 * the command to /bin/sh (with MODPROBE_MODULE=<module> in the environment). -EINVAL if the step
 * has no command. */
int step_expand_command(const Step *step, char **ret);

typedef enum PlanResult {
        PLAN_RESULT_STEPS,       /* something to do: see steps */
        PLAN_RESULT_LIVE,        /* load: already in the kernel as a loaded module, nothing to do */
        PLAN_RESULT_BUILTIN,     /* load: built in, nothing to do; unload: built in, cannot be removed
                                  * (modprobe -r reports -ENOENT "is builtin") */
        PLAN_RESULT_NOT_LOADED,  /* unload: not in the kernel, nothing to do (modprobe -r succeeds,
                                  * or reports -ENOENT with --first-time) */
        PLAN_RESULT_BLACKLISTED, /* load: stopped by a blacklist entry (modprobe exits 0) */
        _PLAN_RESULT_MAX,
        _PLAN_RESULT_INVALID = -EINVAL,
} PlanResult;

/* "steps", "live", "builtin", "notLoaded", "blacklisted"; NULL when out of range. */
const char *plan_result_to_string(PlanResult r);

typedef struct Plan {
        char *name;          /* as requested */
        char **modules;      /* what the name resolved to, in kmod's lookup order (an alias may match
                              * several modules); NULL-terminated */
        PlanResult *results; /* one per entry of modules */
        size_t n_modules;
        PlanResult result; /* overall: STEPS if any module has steps, else the first present of
                            * LIVE, NOT_LOADED, BUILTIN, BLACKLISTED */
        Step *steps;       /* in execution order; each module appears at most once */
        size_t n_steps;
} Plan;

Plan *plan_free(Plan *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Plan *, plan_free);

typedef enum ResolveFlags {
        RESOLVE_APPLY_BLACKLIST = 1 << 0, /* modprobe -b: the blacklist applies to module names too
                                           * (to aliases it always applies) */
        RESOLVE_IGNORE_INSTALL = 1 << 1,  /* -i: ignore the target's install/remove commands */
        RESOLVE_IGNORE_LOADED = 1 << 2,   /* plan as if nothing were in the kernel (--show-depends) */
        RESOLVE_FIRST_TIME = 1 << 3,      /* --first-time, load: a target already in the kernel is
                                           * -EEXIST. Unload: no effect here; kmod's -ENOENT for a
                                           * target that is not loaded is left to the caller, who sees
                                           * PLAN_RESULT_NOT_LOADED (so that it is not mistaken for
                                           * "no such module") */
        RESOLVE_REMOVE_HOLDERS = 1 << 4,  /* unload: --remove-holders */
        RESOLVE_UNLOAD_WAIT = 1 << 5,     /* unload: --wait; a module in use is planned anyway (kmod
                                           * skips the refcount check then: the removal waits) */
} ResolveFlags;

/* Plan what `modprobe [flags] name extra_options` does.
 *
 * Names: as modprobe looks them up (modprobe.d alias, module name, symbol:, install/remove command
 * name, modules.alias incl. wildcards, modules.builtin, modules.builtin.alias), or an absolute path
 * to a .ko[.xz|.zst|.gz] file: that is planned as insmod does it — one STEP_INSMOD with only
 * extra_options, no dependencies, no modprobe.d options, no blacklist.
 *
 * Options of a STEP_INSMOD/STEP_INSTALL: modprobe.d `options` for the module (and for the alias it
 * was found under) in config order, then `module.param=` from the kernel command line (libkmod
 * reads /proc/cmdline itself), then extra_options for the target only.
 *
 * Per module the name resolved to, as kmod does it: in the kernel (live or builtin) and no
 * RESOLVE_IGNORE_LOADED → LIVE/BUILTIN, no steps (-EEXIST with RESOLVE_FIRST_TIME); blacklisted →
 * BLACKLISTED; else its softdeps "pre:", hard dependencies (each preceded by its own pre-softdeps and
 * followed by its post-softdeps), itself, its post-softdeps; modules already in the kernel are left
 * out. A module with a matching install command gets STEP_INSTALL instead of STEP_INSMOD — unless, as
 * in kmod, it has a softdep line that resolves to at least one module (then the command is ignored),
 * or it is the target and RESOLVE_IGNORE_INSTALL is set (then its softdeps are skipped too).
 * Options are kmod's string verbatim: config options are followed by a space even when there are no
 * extra options. A module kmod would list twice (e.g. a post-softdep that depends on its module) is
 * listed once, at its first position; so is a module shared by several targets. Failures of steps
 * flagged optional are ignored by kmod; the first failing required step ends that target.
 *
 * Returns 0 and a plan, or: -EINVAL (request_name_is_valid() fails, or kmod rejects the alias
 * pattern), -ENOENT (nothing matches; for a path: the file does not exist), -EEXIST (FIRST_TIME),
 * -ENOMEM, or another negative errno from libkmod. *ret is untouched on failure. */
int resolver_plan_load(Resolver *r, const char *name, const char *extra_options, ResolveFlags flags, Plan **ret);

/* Plan what `modprobe -r [flags] name` does, per module the name resolved to: its post-softdeps
 * (reverse order, optional), with RESOLVE_REMOVE_HOLDERS the modules holding it (reverse order),
 * STEP_RMMOD (or STEP_REMOVE for a remove command), then its hard dependencies as optional
 * if_unused STEP_RMMOD (only after a STEP_RMMOD), then its pre-softdeps (reverse order, optional).
 * Softdeps are removed recursively by the same rules. RESOLVE_IGNORE_INSTALL ignores remove
 * commands and softdeps (as modprobe -r -i does). Reads /sys/module for state, holders, refcounts.
 *
 * Returns 0 and a plan, or -EINVAL, -ENOENT (nothing matches), -EBUSY (the module, or a holder,
 * has users other than the holders being removed, and RESOLVE_UNLOAD_WAIT is not set; like modprobe
 * without --wait), -ENOMEM. An
 * absolute path names the module after its file name, as rmmod does.
 * Differences from `modprobe -r --show-depends`: dependencies are listed (as if_unused steps) when
 * they are loaded now, or always with RESOLVE_IGNORE_LOADED, because whether they become unused can
 * only be known while executing; and nothing is listed twice. */
int resolver_plan_unload(Resolver *r, const char *name, ResolveFlags flags, Plan **ret);

/* The state of a module by name (normalised): BUILTIN per modules.builtin of the module directory,
 * else /sys/module/<name>/initstate (a directory without initstate counts as COMING, as in kmod),
 * NOT_LOADED when absent. Negative errno on other errors (-EINVAL for an invalid name). */
ModuleState resolver_module_state(Resolver *r, const char *name);

/* Longest request name accepted, in bytes (kmod works on PATH_MAX buffers including the NUL). */
#define REQUEST_NAME_MAX 4095U

/* Normalise a module name as kmod does: '-' becomes '_', and the name ends at the first '.'.
 * -EINVAL for NULL/empty names or names longer than REQUEST_NAME_MAX, -ENOMEM. */
int module_name_normalize(const char *name, char **ret);

/* A name a client may ask for: non-empty, at most REQUEST_NAME_MAX bytes, no control characters,
 * not starting with '-', not "." or ".."; a '/' only in an absolute path whose components are
 * neither "." nor ".." nor empty and that ends in ".ko", ".ko.xz", ".ko.zst" or ".ko.gz". */
bool request_name_is_valid(const char *name);
