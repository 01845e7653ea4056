/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* modloadctl started as "modprobe": kmod's modprobe command line, messages and exit statuses, with
 * loads and unloads handed to modloadd.
 *
 * Where the work happens:
 *   - plain loads and unloads go to the daemon (no libkmod in this process when it answers);
 *   - a call whose connection breaks before the answer (the daemon died) is asked again on a new
 *     connection, which socket activation hands to a new daemon (manager_call());
 *   - where the daemon cannot be reached (nobody listens, connect times out, it refuses the call,
 *     it died and nobody answers again) the same core code runs in this process, as
 *     "modloadctl --local" does; the module locks (executor.h) keep a module from being handed
 *     to the kernel by this process and the daemon (or another such process) both;
 *   - -d, -C, -S (another tree, config or kernel version) and any run inside an install/remove
 *     command ($MODPROBE_MODULE set: the daemon may be waiting for that very command) always
 *     work in this process;
 *   - the query options (-D, -R, -c, -n, --show-modversions, --show-exports) and the lines -v
 *     prints are answered here from the module indexes.
 *
 * Messages that a script may match keep kmod's exact wording and are never translated; only text
 * of the shim's own (help, daemon trouble) goes through gettext. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libkmod.h>
#include <limits.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <syslog.h>
#include <unistd.h>

#include "executor.h"
#include "scheduler.h"
#include "i18n.h"
#include "json-util.h"
#include "manager-client.h"
#include "modprobe.h"
#include "strutil.h"
#include "strv.h"
#include "timeutil.h"

/* Connecting fails at once when nobody listens; this bounds a listener whose queue is full. */
#define SHIM_CONNECT_TIMEOUT_USEC (3 * USEC_PER_SEC)
/* The daemon answers every caller within its load timeout (60 s by default); this bounds a daemon
 * that stopped answering altogether. */
#define SHIM_CALL_TIMEOUT_USEC    (90 * USEC_PER_SEC)

#define VERBOSE_DEFAULT LOG_WARNING

static int arg_verbose = VERBOSE_DEFAULT;
static bool arg_syslog = false;
static bool arg_all = false;
static bool arg_remove = false;
static bool arg_remove_holders = false;
static bool arg_first_time = false;
static bool arg_ignore_commands = false;
static bool arg_use_blacklist = false;
static bool arg_force = false;
static bool arg_force_modversion = false;
static bool arg_force_vermagic = false;
static bool arg_show_depends = false;
static bool arg_lookup_only = false;
static bool arg_show_config = false;
static bool arg_dry_run = false;
static bool arg_show_modversions = false;
static bool arg_show_exports = false;
static uint64_t arg_wait_msec = 0;
static char **arg_config = NULL;
static const char *arg_root = NULL;
static const char *arg_kversion = NULL;

/* Messages above this level are not printed; kmod raises it to the -q/-v level only once the
 * command line has been read. */
static int log_threshold = VERBOSE_DEFAULT;
/* The level of "module not found"-type messages: fatal (the program ends), or a warning with -a. */
static int notfound_level = LOG_CRIT;
/* lib/modules/<release> under -d ROOT and for -S VERSION; NULL: the running kernel's. */
static char *module_dir = NULL;

/* --- messages, as kmod words them ---------------------------------------------------------------- */

static const char *level_name(int level) {
        switch (level) {
        case LOG_CRIT:
                return "FATAL";
        case LOG_ERR:
                return "ERROR";
        case LOG_WARNING:
                return "WARNING";
        case LOG_NOTICE:
                return "NOTICE";
        case LOG_INFO:
                return "INFO";
        case LOG_DEBUG:
                return "DEBUG";
        default:
                return "LOG";
        }
}

static void say_va(int level, const char *format, va_list ap) {
        if (arg_syslog) {
                _cleanup_free_ char *text = NULL;
                if (vasprintf(&text, format, ap) >= 0)
                        syslog(level, "%s: %s", level_name(level), text);
        } else {
                fprintf(stderr, "%s: %s: ", program_invocation_short_name, level_name(level));
                vfprintf(stderr, format, ap);
        }
}

/* A fatal message ends the program with status 1 — but only when it is shown (kmod does the same:
 * with -q a "fatal" lookup failure returns and the run goes on to exit 1 anyway). */
_printf_(2, 3) static void say(int level, const char *format, ...) {
        va_list ap;

        if (level > log_threshold)
                return;
        va_start(ap, format);
        say_va(level, format, ap);
        va_end(ap);
        if (level <= LOG_CRIT) {
                fflush(stdout);
                exit(EXIT_FAILURE);
        }
}

/* libkmod's own complaints, printed the way kmod 30's modprobe prints them: with the place in
 * libkmod's source that raised them. */
_printf_(6, 0) static void kmod_log_fn(void *data, int priority, const char *file, int line, const char *fn,
                                       const char *format, va_list args) {
        _cleanup_free_ char *text = NULL;

        if (priority > log_threshold || vasprintf(&text, format, args) < 0)
                return;
        if (arg_syslog)
                syslog(priority, "%s: %s:%d %s() %s", level_name(priority), file, line, fn, text);
        else
                fprintf(stderr, "%s: %s: %s:%d %s() %s", program_invocation_short_name, level_name(priority), file,
                        line, fn, text);
}

/* kmod 30 reports a failed install command through libkmod's log, which names the place in
 * libkmod that ran it; scripts see exactly this text. */
#define KMOD30_COMMAND_DO "../libkmod/libkmod-module.c:1047 command_do() "

/* strerror() in English whatever the locale: kmod's messages are not translated. */
static const char *c_strerror(int error) {
        static locale_t c_locale = (locale_t) 0;

        if (!c_locale)
                c_locale = newlocale(LC_ALL_MASK, "C", (locale_t) 0);
        return c_locale ? strerror_l(abs(error), c_locale) : strerror(abs(error));
}

static void help(void) {
        printf(_("%1$s [OPTIONS...] NAME [PARAMETER=VALUE...]\n"
                 "%1$s [OPTIONS...] -a NAME...\n"
                 "%1$s [OPTIONS...] -r NAME...\n"
                 "%1$s [OPTIONS...] -c\n"
                 "%1$s [OPTIONS...] --show-modversions|--show-exports FILE\n"
                 "\n"
                 "Load or unload kernel modules through modloadd; kmod's modprobe command line.\n"
                 "\n"
                 "Loading and unloading:\n"
                 "  -a --all                 Every argument is a module name\n"
                 "  -r --remove              Unload instead of load\n"
                 "     --remove-holders     With -r: unload the modules using it first\n"
                 "  -w --wait=MSEC           With -r: wait this long for the module to become unused\n"
                 "     --first-time         Fail if the module is already loaded (or, with -r, not loaded)\n"
                 "  -i --ignore-install --ignore-remove\n"
                 "                           Do not run install or remove commands\n"
                 "  -b --use-blacklist       Apply the blacklist to module names too\n"
                 "  -f --force               Force loading or unloading (dangerous)\n"
                 "     --force-modversion   Load despite symbol version mismatches\n"
                 "     --force-vermagic     Load despite a version magic mismatch\n"
                 "\n"
                 "Queries:\n"
                 "  -R --resolve-alias       Print the modules a name resolves to\n"
                 "  -D --show-depends        Print what loading would do, as if nothing were loaded\n"
                 "  -c --show-config         Print the configuration and the alias and symbol indexes\n"
                 "     --show-modversions FILE, --show-exports FILE\n"
                 "                           Print a module file's symbol versions or exports\n"
                 "\n"
                 "General:\n"
                 "  -n --dry-run             Do nothing; with -v print what would be done\n"
                 "  -C --config=PATH         Use this modprobe.d file or directory instead\n"
                 "  -d --dirname=ROOT        Use ROOT/lib/modules\n"
                 "  -S --set-version=VERSION Use this kernel version instead of the running one\n"
                 "  -s --syslog              Report to syslog instead of stderr\n"
                 "  -q --quiet               Print no messages\n"
                 "  -v --verbose             Print each step\n"
                 "  -V --version             Show the version\n"
                 "  -h --help                Show this help\n"
                 "\n"
                 "-d, -C and -S work in this process; otherwise modloadd at %2$s does the work\n"
                 "(or this process, when modloadd cannot be reached).\n"),
               program_invocation_short_name, MODLOADD_SOCKET_PATH);
}

/* --- the command line ---------------------------------------------------------------------------- */

/* Split $MODPROBE_OPTIONS at spaces; single or double quotes group words and are dropped. */
static int split_options(const char *s, char ***ret) {
        _cleanup_(strv_freep) char **l = calloc(1, sizeof(char *));
        _cleanup_free_ char *word = malloc(strlen(s) + 1);
        size_t n = 0;
        bool have = false;
        char quote = 0;

        if (!l || !word)
                return -ENOMEM;
        for (const char *p = s;; p++) {
                if (*p == '\0' || (!quote && *p == ' ')) {
                        if (have) {
                                word[n] = '\0';
                                if (strv_extend(&l, word) < 0)
                                        return -ENOMEM;
                        }
                        n = 0;
                        have = false;
                        if (*p == '\0')
                                break;
                } else if (quote && *p == quote)
                        quote = 0;
                else if (!quote && (*p == '"' || *p == '\'')) {
                        quote = *p;
                        have = true;
                } else {
                        word[n++] = *p;
                        have = true;
                }
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* Children (install commands run here) see the options that concern them, as with kmod. */
static void options_env_append(const char *value) {
        const char *old = getenv("MODPROBE_OPTIONS");
        _cleanup_free_ char *v = NULL;

        if (!old) {
                (void) setenv("MODPROBE_OPTIONS", value, 1);
                return;
        }
        v = strdup_printf("%s %s", old, value);
        if (v)
                (void) setenv("MODPROBE_OPTIONS", v, 1);
}

static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_FORCE_VERMAGIC = 0x100,
                ARG_FORCE_MODVERSION,
                ARG_FIRST_TIME,
                ARG_SHOW_MODVERSIONS,
                ARG_REMOVE_HOLDERS,
                ARG_SHOW_EXPORTS,
        };
        static const struct option options[] = {
                { "all", no_argument, NULL, 'a' },
                { "remove", no_argument, NULL, 'r' },
                { "remove-dependencies", no_argument, NULL, ARG_REMOVE_HOLDERS },
                { "remove-holders", no_argument, NULL, ARG_REMOVE_HOLDERS },
                { "wait", required_argument, NULL, 'w' },
                { "resolve-alias", no_argument, NULL, 'R' },
                { "show-alias", no_argument, NULL, 'R' },
                { "first-time", no_argument, NULL, ARG_FIRST_TIME },
                { "ignore-install", no_argument, NULL, 'i' },
                { "ignore-remove", no_argument, NULL, 'i' },
                { "use-blacklist", no_argument, NULL, 'b' },
                { "force", no_argument, NULL, 'f' },
                { "force-modversion", no_argument, NULL, ARG_FORCE_MODVERSION },
                { "force-vermagic", no_argument, NULL, ARG_FORCE_VERMAGIC },
                { "show-depends", no_argument, NULL, 'D' },
                { "showconfig", no_argument, NULL, 'c' },
                { "show-config", no_argument, NULL, 'c' },
                { "show-modversions", no_argument, NULL, ARG_SHOW_MODVERSIONS },
                { "dump-modversions", no_argument, NULL, ARG_SHOW_MODVERSIONS },
                { "show-exports", no_argument, NULL, ARG_SHOW_EXPORTS },
                { "dry-run", no_argument, NULL, 'n' },
                { "show", no_argument, NULL, 'n' },
                { "config", required_argument, NULL, 'C' },
                { "dirname", required_argument, NULL, 'd' },
                { "set-version", required_argument, NULL, 'S' },
                { "syslog", no_argument, NULL, 's' },
                { "quiet", no_argument, NULL, 'q' },
                { "verbose", no_argument, NULL, 'v' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "arw:RibfDcnC:d:S:sqvVh", options, NULL)) >= 0)
                switch (c) {
                case 'a':
                        arg_all = true;
                        notfound_level = LOG_WARNING;
                        break;
                case 'r':
                        arg_remove = true;
                        break;
                case ARG_REMOVE_HOLDERS:
                        arg_remove_holders = true;
                        break;
                case 'w': {
                        char *end = NULL;
                        unsigned long long v;

                        errno = 0;
                        v = strtoull(optarg, &end, 0);
                        if (!*optarg || *end || errno != 0) {
                                say(LOG_ERR, "unexpected wait value '%s'.\n", optarg);
                                return -EINVAL;
                        }
                        arg_wait_msec = v;
                        break;
                }
                case ARG_FIRST_TIME:
                        arg_first_time = true;
                        break;
                case 'i':
                        arg_ignore_commands = true;
                        break;
                case 'b':
                        arg_use_blacklist = true;
                        break;
                case 'f':
                        arg_force = true;
                        break;
                case ARG_FORCE_MODVERSION:
                        arg_force_modversion = true;
                        break;
                case ARG_FORCE_VERMAGIC:
                        arg_force_vermagic = true;
                        break;
                case 'D':
                        arg_show_depends = true;
                        arg_dry_run = true;
                        break;
                case 'R':
                        arg_lookup_only = true;
                        break;
                case 'c':
                        arg_show_config = true;
                        break;
                case ARG_SHOW_MODVERSIONS:
                        arg_show_modversions = true;
                        break;
                case ARG_SHOW_EXPORTS:
                        arg_show_exports = true;
                        break;
                case 'n':
                        arg_dry_run = true;
                        break;
                case 'C':
                        if (strv_extend(&arg_config, optarg) < 0)
                                return -ENOMEM;
                        options_env_append("-C");
                        options_env_append(optarg);
                        break;
                case 'd':
                        arg_root = optarg;
                        break;
                case 'S':
                        arg_kversion = optarg;
                        break;
                case 's':
                        options_env_append("-s");
                        arg_syslog = true;
                        break;
                case 'q':
                        options_env_append("-q");
                        arg_verbose = LOG_EMERG;
                        break;
                case 'v':
                        options_env_append("-v");
                        arg_verbose++;
                        break;
                case 'V':
                        printf("%s version %s (modprobe)\n", PACKAGE_NAME, PACKAGE_VERSION);
                        puts("+ZSTD +XZ +ZLIB");
                        return 0;
                case 'h':
                        help();
                        return 0;
                default:
                        return -EINVAL; /* getopt_long() said why */
                }
        return 1;
}

/* kmod's way of turning "NAME a=1 b=two words" into one parameter string: values with a space
 * that are not quoted already get double quotes. */
static char *join_parameters(char **args, size_t n) {
        _cleanup_free_ char *s = strdup("");

        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                const char *eq = strchr(args[i], '='), *value = eq ? eq + 1 : NULL;
                char *t;

                if (value && *value != '"' && *value != '\'' && strchr(value, ' '))
                        t = strdup_printf("%s%s%.*s\"%s\"", s, i > 0 ? " " : "", (int) (value - args[i]), args[i],
                                          value);
                else
                        t = strdup_printf("%s%s%s", s, i > 0 ? " " : "", args[i]);
                if (!t)
                        return NULL;
                free(s);
                s = t;
        }
        return n > 0 ? TAKE_PTR(s) : NULL;
}

static bool name_is_path(const char *name) {
        return name[0] == '/' || startswith(name, "./");
}

/* What the core and the daemon accept for NAME: "./x.ko" becomes an absolute path. */
static char *request_name(const char *name) {
        char cwd[PATH_MAX];

        if (!startswith(name, "./"))
                return strdup(name);
        if (!getcwd(cwd, sizeof cwd))
                return strdup(name);
        return strdup_printf("%s/%s", streq(cwd, "/") ? "" : cwd, name + 2);
}

static const char *kernel_module_dir(void) {
        static char buf[sizeof("/lib/modules/") + sizeof(((struct utsname *) NULL)->release)];
        struct utsname u;

        if (module_dir)
                return module_dir;
        if (!buf[0]) {
                if (uname(&u) < 0)
                        return "/lib/modules";
                snprintf(buf, sizeof buf, "/lib/modules/%s", u.release);
        }
        return buf;
}

/* --- libkmod, for the queries -------------------------------------------------------------------- */

static struct kmod_ctx *kmod_open(void) {
        struct kmod_ctx *ctx = kmod_new(module_dir, (const char *const *) arg_config);

        if (!ctx) {
                say(LOG_ERR, "kmod_new() failed!\n");
                return NULL;
        }
        kmod_set_log_priority(ctx, arg_verbose);
        kmod_set_log_fn(ctx, kmod_log_fn, NULL);
        (void) kmod_load_resources(ctx);
        return ctx;
}

/* The module kmod names in its messages about NAME: the first one the name resolves to. */
static char *target_name(const char *name, const char *req) {
        struct kmod_ctx *ctx;
        struct kmod_list *list = NULL;
        struct kmod_module *mod = NULL;
        char *ret = NULL;

        ctx = kmod_new(module_dir, (const char *const *) arg_config);
        if (ctx) {
                kmod_set_log_priority(ctx, LOG_EMERG);
                if (name_is_path(name)) {
                        if (kmod_module_new_from_path(ctx, req, &mod) >= 0) {
                                ret = strdup(kmod_module_get_name(mod));
                                kmod_module_unref(mod);
                        }
                } else if (kmod_module_new_from_lookup(ctx, name, &list) >= 0 && list) {
                        mod = kmod_module_get_module(list);
                        ret = strdup(kmod_module_get_name(mod));
                        kmod_module_unref(mod);
                        kmod_module_unref_list(list);
                }
                kmod_unref(ctx);
        }
        if (!ret && module_name_normalize(name, &ret) < 0)
                ret = strdup(name);
        return ret;
}

static int show_config(void) {
        static const struct {
                const char *word;
                struct kmod_config_iter *(*iter)(const struct kmod_ctx *ctx);
        } kinds[] = {
                { "blacklist", kmod_config_get_blacklists },   { "install", kmod_config_get_install_commands },
                { "remove", kmod_config_get_remove_commands }, { "alias", kmod_config_get_aliases },
                { "options", kmod_config_get_options },        { "softdep", kmod_config_get_softdeps },
        };
        struct kmod_ctx *ctx = kmod_open();

        if (!ctx)
                return EXIT_FAILURE;
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                struct kmod_config_iter *it = kinds[i].iter(ctx);

                if (!it)
                        continue;
                while (kmod_config_iter_next(it)) {
                        const char *value = kmod_config_iter_get_value(it);

                        printf("%s %s", kinds[i].word, kmod_config_iter_get_key(it));
                        if (value)
                                printf(" %s\n", value);
                        else
                                putchar('\n');
                }
                kmod_config_iter_free_iter(it);
        }
        puts("\n# End of configuration files. Dumping indexes now:\n");
        fflush(stdout);
        (void) kmod_dump_index(ctx, KMOD_INDEX_MODULES_ALIAS, STDOUT_FILENO);
        (void) kmod_dump_index(ctx, KMOD_INDEX_MODULES_SYMBOL, STDOUT_FILENO);
        kmod_unref(ctx);
        return EXIT_SUCCESS;
}

/* --show-modversions / --show-exports FILE */
static int show_symbols(const char *file) {
        struct kmod_ctx *ctx = kmod_open();
        struct kmod_module *mod = NULL;
        struct kmod_list *list = NULL;
        int r;

        if (!ctx)
                return EXIT_FAILURE;
        r = kmod_module_new_from_path(ctx, file, &mod);
        if (r < 0) {
                say(LOG_CRIT, "Module %s not found.\n", file);
                kmod_unref(ctx);
                return EXIT_FAILURE;
        }
        r = arg_show_exports ? kmod_module_get_symbols(mod, &list) : kmod_module_get_versions(mod, &list);
        if (r < 0)
                say(LOG_CRIT, "could not get %s of %s: %s\n", arg_show_exports ? "symbols" : "modversions", file,
                    c_strerror(r));
        for (struct kmod_list *l = list; l; l = kmod_list_next(list, l))
                if (arg_show_exports)
                        printf("0x%08" PRIx64 "\t%s\n", kmod_module_symbol_get_crc(l),
                               kmod_module_symbol_get_symbol(l));
                else
                        printf("0x%08" PRIx64 "\t%s\n", kmod_module_version_get_crc(l),
                               kmod_module_version_get_symbol(l));
        if (arg_show_exports)
                kmod_module_symbols_free_list(list);
        else
                kmod_module_versions_free_list(list);
        kmod_module_unref(mod);
        kmod_unref(ctx);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* -R: the names NAME resolves to, one per line. */
static int resolve_alias(struct kmod_ctx *ctx, const char *name) {
        struct kmod_list *list = NULL;
        int r;

        if (name_is_path(name)) {
                struct kmod_module *mod = NULL;
                r = kmod_module_new_from_path(ctx, name, &mod);
                if (r < 0) {
                        say(notfound_level, "Failed to get module from path %s: %s\n", name, c_strerror(r));
                        return -ENOENT;
                }
                printf("%s\n", kmod_module_get_name(mod));
                kmod_module_unref(mod);
                return 0;
        }
        r = kmod_module_new_from_lookup(ctx, name, &list);
        if (r < 0 || !list) {
                say(notfound_level, "Module %s not found in directory %s\n", name, kernel_module_dir());
                return -ENOENT;
        }
        for (struct kmod_list *l = list; l; l = kmod_list_next(list, l)) {
                struct kmod_module *mod = kmod_module_get_module(l);
                printf("%s\n", kmod_module_get_name(mod));
                kmod_module_unref(mod);
        }
        kmod_module_unref_list(list);
        return 0;
}

/* --- reporting outcomes in kmod's words ---------------------------------------------------------- */

static int report_load(const char *name, const char *req, const Outcome *o) {
        _cleanup_free_ char *mod = NULL;
        int error = o->error ?: -EIO;

        /* --first-time: a module that was there already (live or built in) is kmod's EEXIST, whoever
         * answered "live" */
        if (arg_first_time && IN_SET(o->result, OUTCOME_LIVE, OUTCOME_BUILTIN))
                error = -EEXIST;
        else
                switch (o->result) {
                case OUTCOME_INSERTED:
                case OUTCOME_LIVE:
                case OUTCOME_BUILTIN:
                case OUTCOME_BLACKLISTED: /* kmod: an alias stopped by the blacklist loads nothing, silently */
                case OUTCOME_DRY_RUN:
                        return 0;
                case OUTCOME_NOT_FOUND:
                        if (name_is_path(name))
                                say(notfound_level, "Failed to get module from path %s: %s\n", name,
                                    c_strerror(ENOENT));
                        else
                                say(notfound_level, "Module %s not found in directory %s\n", name, kernel_module_dir());
                        return -ENOENT;
                default:
                        break;
                }

        mod = target_name(name, req);
        if (o->message && startswith(o->message, "Error running install command")) {
                /* kmod: the command's failure, then the insert's with EINVAL whatever the retcode */
                say(LOG_ERR, KMOD30_COMMAND_DO "%s\n", o->message);
                error = -EINVAL;
        }
        if (error == -EEXIST)
                say(LOG_ERR, "could not insert '%s': Module already in kernel\n", mod);
        else if (error == -ENOENT)
                say(LOG_ERR, "could not insert '%s': Unknown symbol in module, or unknown parameter (see dmesg)\n",
                    mod);
        else
                say(LOG_ERR, "could not insert '%s': %s\n", mod, c_strerror(error));
        return error;
}

/* "Module X is in use" -> X */
static char *busy_module(const Outcome *o) {
        const char *p = o->message ? startswith(o->message, "Module ") : NULL;
        const char *e = p ? strstr(p, " is in use") : NULL;
        return e ? strndup(p, (size_t) (e - p)) : NULL;
}

static int report_unload(const char *name, const char *req, const Outcome *o) {
        _cleanup_free_ char *mod = NULL;
        int error = o->error ?: -EIO;

        switch (o->result) {
        case OUTCOME_REMOVED:
        case OUTCOME_NOT_LOADED:
        case OUTCOME_DRY_RUN:
        case OUTCOME_LIVE:
                return 0;
        case OUTCOME_NOT_FOUND:
                say(notfound_level, "Module %s not found.\n", name);
                return -ENOENT;
        default:
                break;
        }

        mod = target_name(name, req);
        switch (o->result) {
        case OUTCOME_BUILTIN:
                say(notfound_level, "Module %s is builtin.\n", mod);
                return -ENOENT;
        case OUTCOME_IN_USE: {
                _cleanup_free_ char *busy = busy_module(o);
                const char *who = busy && !streq(busy, name) ? busy : mod;
                if (arg_wait_msec > 0) {
                        say(LOG_ERR, "could not remove '%s': %s\n", who, c_strerror(EAGAIN));
                        return -EAGAIN;
                }
                say(notfound_level, "Module %s is in use.\n", who);
                return -EBUSY;
        }
        default:
                break;
        }
        if (o->message && startswith(o->message, "Error running remove command")) {
                say(notfound_level, "Error running remove command for %s\n", mod);
                return error;
        }
        if (error == -ENOENT && o->message && strstr(o->message, "is not in kernel")) {
                say(notfound_level, "Module %s is not in kernel.\n", mod);
                return -ENOENT;
        }
        say(LOG_ERR, "could not remove '%s': %s\n", mod, c_strerror(error));
        return error;
}

/* --- what -v, -n and -D print -------------------------------------------------------------------- */

static ResolveFlags resolve_flags(void) {
        return (arg_use_blacklist ? RESOLVE_APPLY_BLACKLIST : 0) | (arg_ignore_commands ? RESOLVE_IGNORE_INSTALL : 0) |
               (arg_first_time ? RESOLVE_FIRST_TIME : 0) | (arg_remove_holders ? RESOLVE_REMOVE_HOLDERS : 0) |
               (arg_show_depends ? RESOLVE_IGNORE_LOADED : 0);
}

static Resolver *resolver_open(void) {
        Resolver *r = NULL;

        /* A missing module directory is no error of its own for kmod: every name is "not found". */
        if (resolver_new(&r, &(ResolverConfig){ .module_dir = module_dir,
                                                .config_paths = (const char *const *) arg_config }) < 0)
                return NULL;
        return r;
}

/* Plan NAME and print the steps (-D, -n -v, -v); with ret, turn a plan that stops early into the
 * outcome kmod would report. Returns the plan (NULL when there is none). */
static Plan *plan_name(Resolver *r, const char *req, const char *params, bool print, Outcome *ret) {
        Plan *p = NULL;
        int e;

        if (!r || !request_name_is_valid(req))
                e = -ENOENT;
        else if (arg_remove)
                e = resolver_plan_unload(r, req, resolve_flags(), &p);
        else
                e = resolver_plan_load(r, req, params, resolve_flags(), &p);

        if (ret) {
                *ret = (Outcome){ .result = arg_dry_run ? OUTCOME_DRY_RUN : OUTCOME_LIVE, .error = e < 0 ? e : 0 };
                if (e == -ENOENT)
                        ret->result = OUTCOME_NOT_FOUND;
                else if (e == -EBUSY)
                        ret->result = OUTCOME_IN_USE;
                else if (e < 0)
                        ret->result = OUTCOME_FAILED;
                else if (p->result == PLAN_RESULT_BUILTIN && arg_remove)
                        ret->result = OUTCOME_BUILTIN;
                else if (p->result == PLAN_RESULT_NOT_LOADED && arg_remove && arg_first_time) {
                        ret->result = OUTCOME_FAILED;
                        ret->error = -ENOENT;
                        ret->message = strdup("is not in kernel");
                }
        }
        if (print && p && p->result == PLAN_RESULT_STEPS)
                for (size_t i = 0; i < p->n_steps; i++) {
                        const Step *s = &p->steps[i];
                        if (s->kind == STEP_RMMOD && s->if_unused && loader_module_refcount(s->module) != 0)
                                continue;
                        step_print(s);
                }
        return p;
}

/* --- doing it: through the daemon, or here ------------------------------------------------------- */

/* 1: the daemon answered, outcomes filled; 0: it could not be asked, do the work here (nobody
 * listens, or the daemon died and none came back while asking again: manager_call());
 * negative: it was asked but did not answer in time (reported). */
static int forward(bool unload, char **reqs, size_t n, const char *params, Outcome *outs) {
        _cleanup_(json_object_putp) json_object *call = NULL, *reply = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_free_ Outcome *got = NULL;
        bool unreachable = false;
        int r;

        r = manager_request_to_json(
                &(ManagerRequest){
                        .unload = unload,
                        .names = reqs,
                        .n_names = n,
                        .parameters = params,
                        .apply_blacklist = arg_use_blacklist,
                        .force_vermagic = arg_force || arg_force_vermagic,
                        .force_modversion = arg_force || arg_force_modversion,
                        .remove_holders = arg_remove_holders,
                        .force = arg_force,
                        .wait_msec = arg_wait_msec,
                        .ignore_commands = arg_ignore_commands,
                        .first_time = arg_first_time,
                },
                &call);
        if (r < 0)
                return say(LOG_ERR, "%s\n", c_strerror(r)), r;
        r = manager_call(manager_address(NULL), unload ? "io.modloadd.Manager.Unload" : "io.modloadd.Manager.Load",
                         call, SHIM_CONNECT_TIMEOUT_USEC, SHIM_CALL_TIMEOUT_USEC, &reply, &error, &unreachable);
        if (r < 0 && unreachable)
                return 0;
        if (r < 0) {
                say(LOG_ERR, _("modloadd at %s did not answer: %s\n"), manager_address(NULL), c_strerror(r));
                return r;
        }
        if (error)
                /* Not allowed to (PermissionDenied), or a name it does not take: kmod's behaviour for
                 * such a caller is what this process gives. */
                return 0;
        r = manager_reply_outcomes(reply, n, &got);
        if (r < 0) {
                say(LOG_ERR, _("modloadd at %s sent an answer that cannot be read\n"), manager_address(NULL));
                return r;
        }
        memcpy(outs, got, n * sizeof(Outcome));
        return 1;
}

static void work_here(Resolver *r, Scheduler *sch, bool unload, const char *req, const char *params, Outcome *o) {
        int e;

        if (!r || !request_name_is_valid(req))
                e = -EINVAL;
        else if (unload)
                e = execute_unload(sch, r,
                                   &(UnloadRequest){
                                           .name = req,
                                           .resolve_flags = resolve_flags(),
                                           .force = arg_force,
                                           .wait_usec = arg_wait_msec * USEC_PER_MSEC,
                                   },
                                   o);
        else
                e = execute_load(sch, r,
                                 &(LoadRequest){
                                         .name = req,
                                         .parameters = params,
                                         .resolve_flags = resolve_flags(),
                                         .load_flags = (arg_force || arg_force_vermagic ? LOAD_FORCE_VERMAGIC : 0) |
                                                       (arg_force || arg_force_modversion ? LOAD_FORCE_MODVERSION : 0),
                                 },
                                 o);
        if (e < 0)
                *o = (Outcome){ .result = e == -EINVAL ? OUTCOME_NOT_FOUND : OUTCOME_FAILED, .error = e };
}

static bool must_work_here(void) {
        /* The daemon serves the running kernel's tree with the system's configuration. Inside an
         * install or remove command the daemon (or another modprobe) may be waiting for us. */
        return arg_root || arg_kversion || arg_config || getenv("MODPROBE_MODULE");
}

/* Load (or with -r unload) names[0..n); reqs are the same names as the core takes them. */
static int run_names(char **names, char **reqs, size_t n, const char *params) {
        _cleanup_(resolver_freep) Resolver *resolver = NULL;
        _cleanup_(loader_freep) Loader *loader = NULL;
        _cleanup_(scheduler_freep) Scheduler *sched = NULL;
        _cleanup_free_ Outcome *outs = calloc(n, sizeof(Outcome));
        _cleanup_free_ bool *valid = calloc(n, sizeof(bool));
        _cleanup_free_ char **fwd = calloc(n + 1, sizeof(char *));
        bool verbose = arg_verbose > VERBOSE_DEFAULT;
        size_t nfwd = 0;
        int ret = 0, r = 0;

        if (!outs || !valid || !fwd)
                return say(LOG_ERR, "%s\n", c_strerror(ENOMEM)), -ENOMEM;

        /* -v prints the steps before they are taken (unloads: after, see below) */
        if (verbose && !arg_remove) {
                resolver = resolver_open();
                for (size_t i = 0; i < n; i++)
                        plan_free(plan_name(resolver, reqs[i], params, true, NULL));
        }

        for (size_t i = 0; i < n; i++) {
                valid[i] = request_name_is_valid(reqs[i]);
                if (valid[i])
                        fwd[nfwd++] = reqs[i];
        }

        if (nfwd > 0 && !must_work_here()) {
                _cleanup_free_ Outcome *got = calloc(nfwd, sizeof(Outcome));
                if (!got)
                        return -ENOMEM;
                r = forward(arg_remove, fwd, nfwd, params, got);
                if (r < 0)
                        return r;
                for (size_t i = 0, k = 0; r > 0 && i < n; i++)
                        if (valid[i])
                                outs[i] = got[k++];
        }
        if (r == 0) { /* here */
                if (!resolver)
                        resolver = resolver_open();
                if (loader_new(&loader, LOAD_POLICY_AUTO, NULL) < 0 || scheduler_new(&sched, loader) < 0)
                        return say(LOG_ERR, "%s\n", c_strerror(ENOMEM)), -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        if (valid[i])
                                work_here(resolver, sched, arg_remove, reqs[i], params, &outs[i]);
        }
        for (size_t i = 0; i < n; i++) {
                int e;

                if (!valid[i])
                        outs[i] = (Outcome){ .result = OUTCOME_NOT_FOUND, .error = -ENOENT };
                e = arg_remove ? report_unload(names[i], reqs[i], &outs[i]) : report_load(names[i], reqs[i], &outs[i]);
                if (e < 0)
                        ret = e;
                outcome_done(&outs[i]);
        }
        return ret;
}

/* -r: one name after the other, as kmod goes: a fatal error ends the run before the next name. */
static int remove_names(char **names, size_t n) {
        int ret = 0;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *req = request_name(names[i]);
                _cleanup_(plan_freep) Plan *before = NULL;
                _cleanup_(resolver_freep) Resolver *resolver = NULL;
                char *one[] = { names[i], NULL }, *reqs[] = { req, NULL };
                int e;

                if (!req)
                        return -ENOMEM;
                if (arg_dry_run) {
                        Outcome o;
                        resolver = resolver_open();
                        before = plan_name(resolver, req, NULL, arg_show_depends || arg_verbose > VERBOSE_DEFAULT, &o);
                        e = report_unload(names[i], req, &o);
                        outcome_done(&o);
                } else {
                        if (arg_verbose > VERBOSE_DEFAULT) {
                                resolver = resolver_open();
                                before = plan_name(resolver, req, NULL, false, NULL);
                        }
                        e = run_names(one, reqs, 1, NULL);
                        /* what was removed, in the order kmod prints it */
                        if (e >= 0 && before && before->result == PLAN_RESULT_STEPS)
                                for (size_t k = 0; k < before->n_steps; k++) {
                                        const Step *s = &before->steps[k];
                                        if (s->kind == STEP_RMMOD && (s->if_unused || s->optional) &&
                                            loader_module_state(s->module) != 0)
                                                continue;
                                        step_print(s);
                                }
                }
                if (e < 0)
                        ret = e;
        }
        return ret;
}

static int insert_names(char **names, size_t n, const char *params) {
        _cleanup_(strv_freep) char **reqs = calloc(n + 1, sizeof(char *));
        int ret = 0;

        if (!reqs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(reqs[i] = request_name(names[i])))
                        return -ENOMEM;

        if (arg_lookup_only) {
                struct kmod_ctx *ctx = kmod_open();
                if (!ctx)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        if (resolve_alias(ctx, names[i]) < 0)
                                ret = -ENOENT;
                kmod_unref(ctx);
                return ret;
        }
        if (arg_dry_run) {
                _cleanup_(resolver_freep) Resolver *resolver = resolver_open();
                for (size_t i = 0; i < n; i++) {
                        Outcome o;
                        int e;

                        plan_free(plan_name(resolver, reqs[i], params,
                                            arg_show_depends || arg_verbose > VERBOSE_DEFAULT, &o));
                        e = report_load(names[i], reqs[i], &o);
                        outcome_done(&o);
                        if (e < 0)
                                ret = e;
                }
                return ret;
        }
        return run_names(names, reqs, n, params);
}

/* The kernel starts modprobe with no open files at all: keep stdin/stdout/stderr taken, so that
 * no socket or module file ends up on them. */
static void keep_std_fds(void) {
        for (int fd = 0; fd < 3; fd++)
                if (fcntl(fd, F_GETFD) < 0) {
                        int nfd = open("/dev/null", O_RDWR);
                        if (nfd >= 0 && nfd != fd)
                                (void) close(nfd);
                }
}

int modprobe_main(int argc, char *argv[]) {
        _cleanup_(strv_freep) char **env_words = NULL;
        _cleanup_free_ char **args = NULL;
        _cleanup_free_ char *params = NULL;
        const char *env = getenv("MODPROBE_OPTIONS");
        struct stat st;
        size_t n = 0, nargs;
        int r;

        /* No stderr to write to (the kernel's request_module): report to syslog, like kmod. */
        if (fstat(STDERR_FILENO, &st) < 0)
                arg_syslog = true;
        keep_std_fds();

        /* $MODPROBE_OPTIONS come first, then the command line. */
        if (env && split_options(env, &env_words) < 0)
                return EXIT_FAILURE;
        args = calloc(strv_length(env_words) + (size_t) argc + 1, sizeof(char *));
        if (!args)
                return EXIT_FAILURE;
        args[n++] = argv[0];
        for (char **w = env_words; w && *w; w++)
                args[n++] = *w;
        for (int i = 1; i < argc; i++)
                args[n++] = argv[i];

        r = parse_argv((int) n, args);
        if (r <= 0)
                goto finish;
        if (arg_syslog)
                openlog(program_invocation_short_name, LOG_CONS, LOG_DAEMON);

        nargs = n - (size_t) optind;
        if (!arg_show_config && nargs == 0) {
                say(LOG_ERR, "missing parameters. See -h.\n");
                r = -EINVAL;
                goto finish;
        }
        if (arg_root || arg_kversion) {
                struct utsname u;
                if (!arg_kversion && uname(&u) < 0) {
                        say(LOG_ERR, "uname() failed: %s\n", c_strerror(errno));
                        r = -errno;
                        goto finish;
                }
                module_dir = strdup_printf("%s/lib/modules/%s", arg_root ?: "", arg_kversion ?: u.release);
                if (!module_dir) {
                        r = -ENOMEM;
                        goto finish;
                }
        }
        log_threshold = arg_verbose;

        if (arg_show_config)
                r = show_config() == EXIT_SUCCESS ? 0 : -EIO;
        else if (arg_show_modversions || arg_show_exports)
                r = show_symbols(args[optind]) == EXIT_SUCCESS ? 0 : -EIO;
        else if (arg_remove)
                r = remove_names(args + optind, nargs);
        else if (arg_all)
                r = insert_names(args + optind, nargs, NULL);
        else {
                params = join_parameters(args + optind + 1, nargs - 1);
                if (nargs > 1 && !params)
                        r = -ENOMEM;
                else
                        r = insert_names(args + optind, 1, params);
        }

finish:
        if (arg_syslog)
                closelog();
        strv_free(arg_config);
        free(module_dir);
        return r >= 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
