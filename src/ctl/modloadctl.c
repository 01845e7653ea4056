/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "executor.h"
#include "scheduler.h"
#include "i18n.h"
#include "json-util.h"
#include "log.h"
#include "manager-client.h"
#include "modprobe.h"
#include "modules-load.h"
#include "strutil.h"
#include "strv.h"
#include "timeutil.h"
#include "varlink-client.h"

/* Exit statuses a shell can tell apart. */
#define EXIT_MODULE_FAILED 1 /* a module failed, was not found or is in use */
#define EXIT_USAGE         2 /* bad command line */
#define EXIT_NO_DAEMON     3 /* the daemon could not be reached or did not answer */

#define CALL_TIMEOUT_USEC    (120 * USEC_PER_SEC)
#define CONNECT_TIMEOUT_USEC (5 * USEC_PER_SEC)

static const char *arg_address = NULL;
static bool arg_local = false;
static bool arg_json = false;
static bool arg_quiet = false;
static const char *arg_parameters = NULL;
static bool arg_use_blacklist = false;
static bool arg_ignore_install = false;
static bool arg_dry_run = false;
static bool arg_first_time = false;
static bool arg_force_vermagic = false;
static bool arg_force_modversion = false;
static bool arg_force = false;
static bool arg_remove_holders = false;
static uint64_t arg_wait_usec = 0;
static LoadPolicy arg_policy = LOAD_POLICY_AUTO;
static const char *arg_module_dir = NULL;
static char **arg_config = NULL;

static void help(void) {
        printf(_("%s [OPTIONS...] COMMAND [NAME...]\n"
                 "\n"
                 "Load and unload kernel modules through modloadd.\n"
                 "\n"
                 "Commands:\n"
                 "  load NAME...           Load modules and what they depend on\n"
                 "  unload NAME...         Unload modules\n"
                 "  describe NAME          Show what loading NAME would do\n"
                 "  list                   List the modules in the kernel\n"
                 "  status                 Show the daemon's counters\n"
                 "  monitor                Follow requests and loads as they happen\n"
                 "  reload                 Make the daemon re-read indexes and configuration\n"
                 "  modules-load [FILE...] Load what modules-load.d and the kernel command line list\n"
                 "\n"
                 "Options:\n"
                 "  -h --help              Show this help\n"
                 "     --version          Show the version\n"
                 "     --address=ADDRESS  The daemon's socket (default: %s)\n"
                 "     --local            Do the work in this process, without the daemon\n"
                 "     --json             Print JSON\n"
                 "  -q --quiet             Print only failures; no module for a name is no failure\n"
                 "  -p --parameters=TEXT   Module parameters for the named modules\n"
                 "  -b --use-blacklist     Apply the blacklist to module names too\n"
                 "  -i --ignore-install    Ignore install and remove commands\n"
                 "  -n --dry-run           Resolve, but do not load or unload\n"
                 "     --first-time       Fail if the module is already (not) loaded\n"
                 "     --force-vermagic   Ignore the module's version magic\n"
                 "     --force-modversion Ignore the module's symbol versions\n"
                 "  -f --force             Unload even when in use (dangerous)\n"
                 "     --remove-holders   Unload the modules that use it first\n"
                 "  -w --wait=MSEC         Wait this long for a module to become unused\n"
                 "     --policy=POLICY    With --local: auto, userspace or kernel decompression\n"
                 "     --module-dir=DIR   With --local: the module directory (lib/modules/VERSION)\n"
                 "     --config=PATH      With --local: a modprobe.d file or directory (repeatable)\n"),
               program_invocation_short_name, MODLOADD_SOCKET_PATH);
}

static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_ADDRESS,
                ARG_LOCAL,
                ARG_JSON,
                ARG_FIRST_TIME,
                ARG_FORCE_VERMAGIC,
                ARG_FORCE_MODVERSION,
                ARG_REMOVE_HOLDERS,
                ARG_POLICY,
                ARG_MODULE_DIR,
                ARG_CONFIG,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "address", required_argument, NULL, ARG_ADDRESS },
                { "local", no_argument, NULL, ARG_LOCAL },
                { "json", no_argument, NULL, ARG_JSON },
                { "quiet", no_argument, NULL, 'q' },
                { "parameters", required_argument, NULL, 'p' },
                { "use-blacklist", no_argument, NULL, 'b' },
                { "ignore-install", no_argument, NULL, 'i' },
                { "dry-run", no_argument, NULL, 'n' },
                { "first-time", no_argument, NULL, ARG_FIRST_TIME },
                { "force-vermagic", no_argument, NULL, ARG_FORCE_VERMAGIC },
                { "force-modversion", no_argument, NULL, ARG_FORCE_MODVERSION },
                { "force", no_argument, NULL, 'f' },
                { "remove-holders", no_argument, NULL, ARG_REMOVE_HOLDERS },
                { "wait", required_argument, NULL, 'w' },
                { "policy", required_argument, NULL, ARG_POLICY },
                { "module-dir", required_argument, NULL, ARG_MODULE_DIR },
                { "config", required_argument, NULL, ARG_CONFIG },
                {},
        };
        uint64_t u;
        int c;

        while ((c = getopt_long(argc, argv, "hp:binfqw:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
                        return 0;
                case ARG_ADDRESS:
                        arg_address = optarg;
                        break;
                case ARG_LOCAL:
                        arg_local = true;
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case 'q':
                        arg_quiet = true;
                        break;
                case 'p':
                        arg_parameters = optarg;
                        break;
                case 'b':
                        arg_use_blacklist = true;
                        break;
                case 'i':
                        arg_ignore_install = true;
                        break;
                case 'n':
                        arg_dry_run = true;
                        break;
                case ARG_FIRST_TIME:
                        arg_first_time = true;
                        break;
                case ARG_FORCE_VERMAGIC:
                        arg_force_vermagic = true;
                        break;
                case ARG_FORCE_MODVERSION:
                        arg_force_modversion = true;
                        break;
                case 'f':
                        arg_force = true;
                        break;
                case ARG_REMOVE_HOLDERS:
                        arg_remove_holders = true;
                        break;
                case 'w':
                        if (safe_atou64(optarg, &u) < 0 || u > UINT64_MAX / USEC_PER_MSEC) {
                                log_error(_("Invalid wait time: %s"), optarg);
                                return -EINVAL;
                        }
                        arg_wait_usec = u * USEC_PER_MSEC;
                        break;
                case ARG_POLICY:
                        arg_policy = load_policy_from_string(optarg);
                        if (arg_policy < 0) {
                                log_error(_("Invalid policy: %s (auto, userspace or kernel)"), optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_MODULE_DIR:
                        arg_module_dir = optarg;
                        break;
                case ARG_CONFIG:
                        if (strv_extend(&arg_config, optarg) < 0)
                                return log_oom();
                        break;
                default:
                        return -EINVAL;
                }
        return 1;
}

/* --- output --------------------------------------------------------------- */

static void print_outcomes_json(const Outcome *outcomes, size_t n) {
        _cleanup_(json_object_putp) json_object *top = json_object_new_object(), *arr = json_object_new_array();

        if (!top || !arr)
                return (void) log_oom();
        for (size_t i = 0; i < n; i++)
                if (json_object_array_add(arr, outcome_to_json(&outcomes[i])) < 0)
                        return (void) log_oom();
        if (json_add(top, "outcomes", TAKE_PTR(arr)) < 0)
                return (void) log_oom();
        puts(json_object_to_json_string_ext(top, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* An aligned table for people: one row per name; messages of failures follow. */
static void print_outcomes_table(const Outcome *outcomes, size_t n) {
        int wn = (int) strlen(_("NAME")), wr = (int) strlen(_("RESULT")),
            ws = MAX((int) strlen(_("SHARED")), MAX((int) strlen(_("yes")), (int) strlen(_("no"))));

        for (size_t i = 0; i < n; i++) {
                wn = MAX(wn, (int) strlen(outcomes[i].name));
                wr = MAX(wr, (int) strlen(outcome_result_to_string(outcomes[i].result)));
        }
        printf("%-*s  %-*s  %-*s  %s\n", wn, _("NAME"), wr, _("RESULT"), ws, _("SHARED"), _("MODULES"));
        for (size_t i = 0; i < n; i++) {
                printf("%-*s  %-*s  %-*s  ", wn, outcomes[i].name, wr, outcome_result_to_string(outcomes[i].result), ws,
                       outcomes[i].shared ? _("yes") : _("no"));
                for (char **m = outcomes[i].modules; m && *m; m++)
                        printf("%s%s", m == outcomes[i].modules ? "" : " ", *m);
                putchar('\n');
        }
        for (size_t i = 0; i < n; i++)
                if (outcomes[i].message)
                        fprintf(stderr, "%s: %s\n", outcomes[i].name, outcomes[i].message);
}

/* With --quiet, what udev asks for constantly is no failure: a modalias without a module,
 * a blacklisted one, or a driver whose device is not there. */
static bool outcome_counts_as_failure(const Outcome *o) {
        if (arg_quiet && IN_SET(o->result, OUTCOME_NOT_FOUND, OUTCOME_BLACKLISTED))
                return false;
        /* A driver for a device that is not there: udev's own loader keeps quiet about it too. */
        if (arg_quiet && o->result == OUTCOME_FAILED && IN_SET(o->error, -ENODEV, -ENXIO))
                return false;
        return !outcome_result_is_success(o->result);
}

static int finish_outcomes(Outcome *outcomes, size_t n) {
        int ret = EXIT_SUCCESS;

        if (arg_json)
                print_outcomes_json(outcomes, n);
        else if (!arg_quiet)
                print_outcomes_table(outcomes, n);
        for (size_t i = 0; i < n; i++) {
                if (outcome_counts_as_failure(&outcomes[i])) {
                        ret = EXIT_MODULE_FAILED;
                        if (arg_quiet && !arg_json && outcomes[i].message)
                                fprintf(stderr, "%s: %s\n", outcomes[i].name, outcomes[i].message);
                }
                outcome_done(&outcomes[i]);
        }
        return ret;
}

/* --- in-process ----------------------------------------------------------- */

static ResolveFlags resolve_flags(void) {
        return (arg_use_blacklist ? RESOLVE_APPLY_BLACKLIST : 0) | (arg_ignore_install ? RESOLVE_IGNORE_INSTALL : 0) |
               (arg_first_time ? RESOLVE_FIRST_TIME : 0) | (arg_remove_holders ? RESOLVE_REMOVE_HOLDERS : 0);
}

static int local_setup(Resolver **ret_resolver, Loader **ret_loader, Scheduler **ret_scheduler) {
        int r;

        r = resolver_new(ret_resolver, &(ResolverConfig){
                                               .module_dir = arg_module_dir,
                                               .config_paths = (const char *const *) arg_config,
                                       });
        if (r < 0)
                return log_error_errno(r, _("Cannot read the module indexes: %m"));
        if (!ret_loader)
                return 0;
        r = loader_new(ret_loader, arg_policy, NULL);
        if (r >= 0)
                r = scheduler_new(ret_scheduler, *ret_loader);
        if (r < 0)
                return log_error_errno(r, _("Cannot set up the loader: %m"));
        return 0;
}

/* Do the work in this process; fills one outcome per name. Returns 0 or an exit status. */
static int local_outcomes(bool unload, ResolveFlags extra_flags, char **names, size_t n, Outcome **ret) {
        _cleanup_(resolver_freep) Resolver *resolver = NULL;
        _cleanup_(loader_freep) Loader *loader = NULL;
        _cleanup_(scheduler_freep) Scheduler *sched = NULL;
        _cleanup_free_ Outcome *outcomes = NULL;
        int r;

        r = local_setup(&resolver, &loader, &sched);
        if (r < 0)
                return EXIT_MODULE_FAILED;
        outcomes = calloc(n + 1, sizeof(Outcome));
        if (!outcomes)
                return log_oom(), EXIT_FAILURE;

        for (size_t i = 0; i < n; i++) {
                if (unload)
                        r = execute_unload(sched, resolver,
                                           &(UnloadRequest){
                                                   .name = names[i],
                                                   .resolve_flags = resolve_flags() | extra_flags,
                                                   .force = arg_force,
                                                   .wait_usec = arg_wait_usec,
                                                   .dry_run = arg_dry_run,
                                           },
                                           &outcomes[i]);
                else
                        r = execute_load(sched, resolver,
                                         &(LoadRequest){
                                                 .name = names[i],
                                                 .parameters = arg_parameters,
                                                 .resolve_flags = resolve_flags() | extra_flags,
                                                 .load_flags = (arg_force_vermagic ? LOAD_FORCE_VERMAGIC : 0) |
                                                               (arg_force_modversion ? LOAD_FORCE_MODVERSION : 0),
                                                 .dry_run = arg_dry_run,
                                         },
                                         &outcomes[i]);
                if (r == -EINVAL) {
                        /* The same answer the daemon gives: this is no name a module could have. */
                        outcomes[i] = (Outcome){ .name = strdup(names[i]),
                                                 .modules = calloc(1, sizeof(char *)),
                                                 .result = OUTCOME_FAILED,
                                                 .error = -EINVAL };
                        (void) outcome_set_message(&outcomes[i], _("Invalid module name"));
                } else if (r < 0) {
                        for (size_t k = 0; k < i; k++)
                                outcome_done(&outcomes[k]);
                        return log_error_errno(r, "%s: %m", names[i]), EXIT_FAILURE;
                }
        }
        *ret = TAKE_PTR(outcomes);
        return 0;
}

static int local_describe(const char *name) {
        _cleanup_(resolver_freep) Resolver *resolver = NULL;
        _cleanup_(plan_freep) Plan *plan = NULL;
        int r;

        if (local_setup(&resolver, NULL, NULL) < 0)
                return EXIT_MODULE_FAILED;
        if (!request_name_is_valid(name)) {
                log_error(_("Invalid module name: %s"), name);
                return EXIT_MODULE_FAILED;
        }
        r = resolver_plan_load(resolver, name, arg_parameters, resolve_flags() | RESOLVE_IGNORE_LOADED, &plan);
        if (r == -ENOENT) {
                log_error(_("Module %s not found in directory %s"), name, resolver_module_dir(resolver));
                return EXIT_MODULE_FAILED;
        }
        if (r < 0)
                return log_error_errno(r, "%s: %m", name), EXIT_MODULE_FAILED;
        if (plan->result == PLAN_RESULT_BLACKLISTED) {
                log_error(_("Module %s is blacklisted"), name);
                return EXIT_MODULE_FAILED;
        }
        for (size_t i = 0; i < plan->n_steps; i++)
                step_print(&plan->steps[i]);
        return EXIT_SUCCESS;
}

/* --- through the daemon --------------------------------------------------- */

static bool json_flag(json_object *o, const char *key) {
        json_object *v = json_object_object_get(o, key);
        return v && json_object_get_boolean(v);
}

/* No daemon could be asked at all: not an exit status, nor the negative of one. */
#define DAEMON_UNREACHABLE 256

/* The daemon's answer in *ret: 0, or -EXIT_* (said why). With may_fall_back, DAEMON_UNREACHABLE
 * when no daemon could be asked at all (nothing said: the caller goes on in-process). */
static int daemon_call(const char *method, json_object *params, bool may_fall_back, json_object **ret) {
        _cleanup_free_ char *error = NULL;
        json_object *reply = NULL;
        bool unreachable = false;
        int r;

        r = manager_call(manager_address(arg_address), method, params, CONNECT_TIMEOUT_USEC, CALL_TIMEOUT_USEC, &reply,
                         &error, &unreachable);
        if (r < 0 && unreachable && may_fall_back)
                return DAEMON_UNREACHABLE;
        if (r < 0 && unreachable) {
                log_error_errno(r, _("Cannot reach modloadd at %s: %m"), manager_address(arg_address));
                return -EXIT_NO_DAEMON;
        }
        if (r < 0) {
                log_error_errno(r, _("No answer from modloadd: %m"));
                return -EXIT_NO_DAEMON;
        }
        if (error) {
                bool empty = json_object_object_length(reply) == 0;
                log_error(_("modloadd refused %s: %s%s%s"), method, error, empty ? "" : " ",
                          empty ? "" : json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN));
                json_object_put(reply);
                /* About the module, not the daemon. */
                return streq(error, "io.modloadd.Manager.InvalidName") ||
                                       streq(error, "io.modloadd.Manager.ModuleNotFound")
                               ? -EXIT_MODULE_FAILED
                               : -EXIT_NO_DAEMON;
        }
        *ret = reply;
        return 0;
}

/* Send the names to the daemon; fills one outcome per name. Returns 0 or an exit status; with
 * may_fall_back DAEMON_UNREACHABLE when there is no daemon to ask (see daemon_call()). */
static int daemon_outcomes(bool unload, bool apply_blacklist, bool may_fall_back, char **names, size_t n,
                           Outcome **ret) {
        _cleanup_(json_object_putp) json_object *params = NULL, *reply = NULL;
        const ManagerRequest req = {
                .unload = unload,
                .names = names,
                .n_names = n,
                .parameters = arg_parameters,
                .apply_blacklist = arg_use_blacklist || apply_blacklist,
                .force_vermagic = arg_force_vermagic,
                .force_modversion = arg_force_modversion,
                .remove_holders = arg_remove_holders,
                .force = arg_force,
                .wait_msec = arg_wait_usec / USEC_PER_MSEC,
                .ignore_commands = arg_ignore_install,
                .first_time = arg_first_time,
                .dry_run = arg_dry_run,
        };
        int r;

        if (manager_request_to_json(&req, &params) < 0)
                return log_oom(), EXIT_FAILURE;
        r = daemon_call(manager_request_method(&req), params, may_fall_back, &reply);
        if (r == DAEMON_UNREACHABLE)
                return r;
        if (r < 0)
                return -r;
        if (manager_reply_outcomes(reply, n, ret) < 0) {
                log_error(_("modloadd sent an answer that cannot be read."));
                return EXIT_NO_DAEMON;
        }
        return 0;
}

static int run_load_unload(bool unload, char **names, size_t n) {
        _cleanup_free_ Outcome *outcomes = NULL;
        int r;

        /* A load goes on in this process where no daemon can be asked (udev's rules, early boot, a
         * daemon that died and was not started again), coordinated with any other loader by the
         * module locks. An unload is an administrator's: without the daemon it says so. */
        r = arg_local ? local_outcomes(unload, 0, names, n, &outcomes)
                      : daemon_outcomes(unload, false, !unload, names, n, &outcomes);
        if (r == DAEMON_UNREACHABLE) {
                if (!arg_quiet)
                        log_notice(_("modloadd cannot be reached at %s; loading in this process."),
                                   manager_address(arg_address));
                r = local_outcomes(false, 0, names, n, &outcomes);
        }
        if (r != 0)
                return r;
        return finish_outcomes(outcomes, n);
}

/* systemd-modules-load's job: what modules-load.d and the kernel command line
 * list, as one batch, with its log levels and exit status. */
static int run_modules_load(char **files, size_t n_files) {
        _cleanup_(strv_freep) char **names = calloc(1, sizeof(char *)), **conf = NULL;
        _cleanup_free_ Outcome *outcomes = NULL;
        int r, ret = EXIT_SUCCESS;
        size_t n;

        if (!names)
                return log_oom(), EXIT_FAILURE;
        if (n_files == 0) {
                _cleanup_free_ char *cmdline = NULL;
                size_t size = 0;
                FILE *f = fopen("/proc/cmdline", "re");

                if (f) {
                        if (getline(&cmdline, &size, f) < 0)
                                cmdline = NULL;
                        fclose(f);
                }
                if (cmdline && modules_load_from_cmdline(cmdline, access("/etc/initrd-release", F_OK) >= 0, &names) < 0)
                        return log_oom(), EXIT_FAILURE;
                r = modules_load_conf_files(NULL, modules_load_dirs, &conf);
                if (r < 0)
                        return log_error_errno(r, "Failed to list modules-load.d files: %m"), EXIT_FAILURE;
                files = conf;
                n_files = strv_length(conf);
        }
        for (size_t i = 0; i < n_files; i++) {
                _cleanup_free_ char *path = NULL;
                FILE *f;

                if (files[i][0] == '/')
                        path = strdup(files[i]);
                else
                        for (const char *const *d = modules_load_dirs; *d && !path; d++) {
                                path = strdup_printf("%s/%s", *d, files[i]);
                                if (path && access(path, F_OK) < 0)
                                        path = mfree(path);
                        }
                f = path ? fopen(path, "re") : NULL;
                if (!f) {
                        log_error_errno(path ? errno : ENOENT, "Failed to open %s: %m", files[i]);
                        ret = EXIT_FAILURE;
                        continue;
                }
                r = modules_load_read(f, &names);
                fclose(f);
                if (r < 0) {
                        log_error_errno(r, "Failed to read %s: %m", path);
                        ret = EXIT_FAILURE;
                }
        }

        n = strv_length(names);
        if (n == 0) {
                log_debug("No modules to load.");
                return ret;
        }

        /* All at once: the daemon loads them in parallel, each after what it depends on.
         * Without the daemon (it may not be up yet), the same work in this process. */
        r = arg_local ? DAEMON_UNREACHABLE : daemon_outcomes(false, true, true, names, n, &outcomes);
        if (r == DAEMON_UNREACHABLE)
                r = local_outcomes(false, RESOLVE_APPLY_BLACKLIST, names, n, &outcomes);
        if (r != 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                Outcome *o = &outcomes[i];
                switch (o->result) {
                case OUTCOME_INSERTED:
                        log_info("Inserted module '%s'", o->name);
                        break;
                case OUTCOME_LIVE:
                        log_debug("Module '%s' is already loaded", o->name);
                        break;
                case OUTCOME_BUILTIN:
                        log_info("Module '%s' is built in", o->name);
                        break;
                case OUTCOME_BLACKLISTED:
                        log_info("Module '%s' is deny-listed (by modprobe.d)", o->name);
                        break;
                case OUTCOME_NOT_FOUND:
                        /* Not fatal: the list may name modules of other kernels. */
                        log_error("Failed to find module '%s'", o->name);
                        break;
                default:
                        /* A device that is not there, or a symbol that is missing: logged, not fatal. */
                        log_full_errno(o->error == -ENODEV   ? LOG_NOTICE
                                       : o->error == -ENOENT ? LOG_WARNING
                                                             : LOG_ERR,
                                       o->error ?: EIO, "Failed to insert module '%s': %s", o->name,
                                       o->message ?: "unknown error");
                        if (!IN_SET(o->error, -ENODEV, -ENOENT))
                                ret = EXIT_FAILURE;
                }
                outcome_done(o);
        }
        return ret;
}

static void print_describe_reply(json_object *reply) {
        json_object *steps = json_object_object_get(reply, "steps");

        for (size_t i = 0; i < json_object_array_length(steps); i++) {
                json_object *st = json_object_array_get_idx(steps, i);
                const char *kind = json_object_get_string(json_object_object_get(st, "kind"));
                const char *module = json_object_get_string(json_object_object_get(st, "module"));
                json_object *path = json_object_object_get(st, "path"),
                            *params = json_object_object_get(st, "parameters"),
                            *cmd = json_object_object_get(st, "command");

                if (streq(kind, "insmod"))
                        printf("insmod %s %s\n", path ? json_object_get_string(path) : module,
                               params ? json_object_get_string(params) : "");
                else if (streq(kind, "install"))
                        printf("install %s\n", cmd ? json_object_get_string(cmd) : "");
                else
                        printf("%s %s\n", kind, module);
        }
}

static int daemon_describe(const char *name) {
        _cleanup_(json_object_putp) json_object *params = json_object_new_object(), *reply = NULL;
        int r;

        if (!params || json_add_string(params, "name", name) < 0 ||
            (arg_parameters && json_add_string(params, "parameters", arg_parameters) < 0) ||
            (arg_use_blacklist && json_add_bool(params, "applyBlacklist", true) < 0) ||
            (arg_ignore_install && json_add_bool(params, "ignoreInstall", true) < 0))
                return log_oom(), EXIT_FAILURE;
        r = daemon_call("io.modloadd.Manager.Describe", params, false, &reply);
        if (r < 0)
                return -r;
        if (arg_json)
                puts(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        else if (json_flag(reply, "blacklisted")) {
                log_error(_("Module %s is blacklisted"), name);
                return EXIT_MODULE_FAILED;
        } else
                print_describe_reply(reply);
        return EXIT_SUCCESS;
}

static int daemon_list(void) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        json_object *mods;
        int wn = (int) strlen(_("MODULE")), r;

        r = daemon_call("io.modloadd.Manager.List", NULL, false, &reply);
        if (r < 0)
                return -r;
        if (arg_json) {
                puts(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
                return EXIT_SUCCESS;
        }
        mods = json_object_object_get(reply, "modules");
        for (size_t i = 0; i < json_object_array_length(mods); i++)
                wn = MAX(wn, (int) strlen(json_object_get_string(
                                     json_object_object_get(json_object_array_get_idx(mods, i), "name"))));
        printf("%-*s  %10s  %5s  %-6s  %s\n", wn, _("MODULE"), _("SIZE"), _("USED"), _("STATE"), _("BY"));
        for (size_t i = 0; i < json_object_array_length(mods); i++) {
                json_object *mod = json_object_array_get_idx(mods, i), *h = json_object_object_get(mod, "holders");
                printf("%-*s  %10" PRId64 "  %5" PRId64 "  %-6s  ", wn,
                       json_object_get_string(json_object_object_get(mod, "name")),
                       json_object_get_int64(json_object_object_get(mod, "size")),
                       json_object_get_int64(json_object_object_get(mod, "refcount")),
                       json_object_get_string(json_object_object_get(mod, "state")));
                for (size_t k = 0; k < json_object_array_length(h); k++)
                        printf("%s%s", k ? "," : "", json_object_get_string(json_object_array_get_idx(h, k)));
                putchar('\n');
        }
        return EXIT_SUCCESS;
}

static int daemon_status(void) {
        static const struct {
                const char *key, *label;
        } rows[] = {
                { "requests", N_("Requests answered") },
                { "sharedRequests", N_("Shared with another caller") },
                { "modulesInserted", N_("Modules inserted") },
                { "kernelCalls", N_("Kernel calls") },
                { "kernelEEXIST", N_("Kernel calls answered EEXIST") },
                { "bytesDecompressed", N_("Bytes decompressed") },
                { "bytesToKernel", N_("Bytes handed to the kernel") },
                { "bytesAvoided", N_("Bytes not handed over twice") },
                { "resolveCacheHits", N_("Resolutions from cache") },
                { "failures", N_("Failed requests") },
                { "notFound", N_("Names without a module") },
                { "uptimeSec", N_("Up for (seconds)") },
                { "connections", N_("Connections open") },
                { "calls", N_("Method calls") },
                { "protocolErrors", N_("Protocol errors") },
        };
        _cleanup_(json_object_putp) json_object *reply = NULL;
        int w = 0, r;

        r = daemon_call("io.modloadd.Manager.GetStatistics", NULL, false, &reply);
        if (r < 0)
                return -r;
        if (arg_json) {
                puts(json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY));
                return EXIT_SUCCESS;
        }
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                w = MAX(w, (int) strlen(_(rows[i].label)));
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                printf("%*s: %" PRId64 "\n", w, _(rows[i].label),
                       json_object_get_int64(json_object_object_get(reply, rows[i].key)));
        return EXIT_SUCCESS;
}

static int daemon_reload(void) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        int r = daemon_call("io.modloadd.Manager.Reload", NULL, false, &reply);
        return r < 0 ? -r : EXIT_SUCCESS;
}

static void print_event(json_object *event) {
        static const char *const keys[] = { "method", "name", "module", "result", "uid", "pid" };
        json_object *v;

        printf("%-14s", json_object_get_string(json_object_object_get(event, "kind")));
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if ((v = json_object_object_get(event, keys[i])))
                        printf(" %s=%s", keys[i], json_object_get_string(v));
        if ((v = json_object_object_get(event, "durationUsec")))
                printf(" time=%" PRId64 "ms", json_object_get_int64(v) / 1000);
        if ((v = json_object_object_get(event, "shared")) && json_object_get_boolean(v))
                printf(" shared");
        putchar('\n');
}

static int daemon_monitor(void) {
        _cleanup_(varlink_client_freep) VarlinkClient *c = NULL;
        int r;

        r = varlink_client_connect(&c, manager_address(arg_address), CONNECT_TIMEOUT_USEC);
        if (r < 0)
                return log_error_errno(r, _("Cannot reach modloadd at %s: %m"), manager_address(arg_address)),
                       EXIT_NO_DAEMON;
        r = varlink_client_send(c, "io.modloadd.Manager.Monitor", NULL, VARLINK_CALL_MORE, CALL_TIMEOUT_USEC);
        if (r < 0)
                return log_error_errno(r, _("No answer from modloadd: %m")), EXIT_NO_DAEMON;

        for (;;) {
                _cleanup_(json_object_putp) json_object *reply = NULL;
                _cleanup_free_ char *error = NULL;
                bool continues = false;
                json_object *event;

                r = varlink_client_read_reply(c, USEC_INFINITY, &reply, &error, &continues);
                if (r == -ECONNRESET)
                        return EXIT_SUCCESS; /* the daemon went away */
                if (r < 0)
                        return log_error_errno(r, _("No answer from modloadd: %m")), EXIT_NO_DAEMON;
                if (error) {
                        log_error(_("modloadd refused %s: %s"), "io.modloadd.Manager.Monitor", error);
                        return EXIT_NO_DAEMON;
                }
                event = json_object_object_get(reply, "event");
                if (arg_json)
                        puts(json_object_to_json_string_ext(event ?: reply, JSON_C_TO_STRING_PLAIN));
                else if (event)
                        print_event(event);
                (void) fflush(stdout);
                if (!continues)
                        return EXIT_SUCCESS;
        }
}

/* --- main ----------------------------------------------------------------- */

static int run(int argc, char *argv[]) {
        const char *verb;
        char **names;
        size_t n;
        int r;

        log_open();
        /* libkmod would print its own complaints about config lines while parsing; ours are enough. */
        (void) setenv("KMOD_LOG", "0", false);
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_SUCCESS;

        if (optind >= argc) {
                log_error(_("A command is needed; see --help."));
                return EXIT_USAGE;
        }
        verb = argv[optind];
        names = argv + optind + 1;
        n = (size_t) (argc - optind - 1);

        if (streq(verb, "load") || streq(verb, "unload")) {
                if (n == 0) {
                        log_error(_("%s needs at least one module name."), verb);
                        return EXIT_USAGE;
                }
                return run_load_unload(streq(verb, "unload"), names, n);
        }
        if (streq(verb, "describe")) {
                if (n != 1) {
                        log_error(_("describe needs exactly one module name."));
                        return EXIT_USAGE;
                }
                return arg_local ? local_describe(names[0]) : daemon_describe(names[0]);
        }
        if (n > 0 &&
            (streq(verb, "list") || streq(verb, "status") || streq(verb, "monitor") || streq(verb, "reload"))) {
                log_error(_("%s takes no arguments."), verb);
                return EXIT_USAGE;
        }
        if (streq(verb, "modules-load"))
                return run_modules_load(names, n);
        if (streq(verb, "list"))
                return daemon_list();
        if (streq(verb, "status"))
                return daemon_status();
        if (streq(verb, "monitor"))
                return daemon_monitor();
        if (streq(verb, "reload"))
                return daemon_reload();
        log_error(_("Unknown command: %s"), verb);
        return EXIT_USAGE;
}

int main(int argc, char *argv[]) {
        int r;

        /* Run as "modprobe": kmod's command line, forwarded to the daemon. */
        if (streq(program_invocation_short_name, "modprobe"))
                return modprobe_main(argc, argv);
        r = run(argc, argv);
        strv_free(arg_config);
        return r;
}
