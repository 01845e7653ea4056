/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include "i18n.h"
#include "log.h"
#include "manager.h"
#include "strv.h"
#include "strutil.h"
#include "timeutil.h"

#define IDLE_TIMEOUT_ACTIVATED_USEC (30 * USEC_PER_SEC)
#define NOFILE_WANTED               16384U

static const char *arg_listen = MODLOADD_SOCKET_PATH;
static uint64_t arg_idle_timeout_usec = 0; /* 0: not given, pick the default */
static unsigned arg_workers = 0;           /* 0: online CPUs */
static LoadPolicy arg_policy = LOAD_POLICY_AUTO;
static uint64_t arg_load_timeout_usec = 0; /* 0: the built-in default */
static const char *arg_module_dir = NULL;
static char **arg_config = NULL; /* NULL: kmod's modprobe.d directories */

static void help(void) {
        printf(_("%s [OPTIONS...]\n"
                 "\n"
                 "Broker kernel-module loads: one load per module for all callers.\n"
                 "\n"
                 "  -h --help               Show this help\n"
                 "     --version            Show the version\n"
                 "     --listen=PATH        Listen on this socket (default: %s)\n"
                 "     --idle-timeout=TIME  Exit after being idle this long (0 or infinity: never)\n"
                 "     --log-level=LEVEL    err, warning, notice, info or debug\n"
                 "     --workers=N          Decompress at most N modules at once (default: online CPUs)\n"
                 "     --policy=POLICY      Decompression: auto, userspace or kernel\n"
                 "     --load-timeout=TIME  Answer callers after this long even if a load goes on\n"
                 "     --module-dir=DIR     Module directory (default: /lib/modules/$(uname -r))\n"
                 "     --config=PATH        A modprobe.d file or directory instead of the system's (repeatable)\n"),
               program_invocation_short_name, MODLOADD_SOCKET_PATH);
}

static int parse_argv(int argc, char *argv[]) {
        enum {
                ARG_VERSION = 0x100,
                ARG_LISTEN,
                ARG_IDLE_TIMEOUT,
                ARG_LOG_LEVEL,
                ARG_WORKERS,
                ARG_POLICY,
                ARG_LOAD_TIMEOUT,
                ARG_MODULE_DIR,
                ARG_CONFIG,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "idle-timeout", required_argument, NULL, ARG_IDLE_TIMEOUT },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "workers", required_argument, NULL, ARG_WORKERS },
                { "policy", required_argument, NULL, ARG_POLICY },
                { "load-timeout", required_argument, NULL, ARG_LOAD_TIMEOUT },
                { "module-dir", required_argument, NULL, ARG_MODULE_DIR },
                { "config", required_argument, NULL, ARG_CONFIG },
                {},
        };
        uint64_t u;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
                        return 0;
                case ARG_LISTEN:
                        arg_listen = optarg;
                        break;
                case ARG_IDLE_TIMEOUT:
                        r = parse_timeout_usec(optarg, &arg_idle_timeout_usec);
                        if (r < 0)
                                return log_error_errno(r, _("Invalid idle timeout: %s"), optarg);
                        break;
                case ARG_LOG_LEVEL:
                        r = log_level_from_string(optarg);
                        if (r < 0)
                                return log_error_errno(r, _("Invalid log level: %s"), optarg);
                        log_set_max_level(r);
                        break;
                case ARG_WORKERS:
                        if (safe_atou64(optarg, &u) < 0 || u == 0 || u > BROKER_DECOMPRESS_MAX)
                                return log_error_errno(EINVAL, _("Invalid number of workers: %s (1-%u)"), optarg,
                                                       BROKER_DECOMPRESS_MAX);
                        arg_workers = (unsigned) u;
                        break;
                case ARG_POLICY:
                        arg_policy = load_policy_from_string(optarg);
                        if (arg_policy < 0)
                                return log_error_errno(EINVAL, _("Invalid policy: %s (auto, userspace or kernel)"),
                                                       optarg);
                        break;
                case ARG_LOAD_TIMEOUT:
                        r = parse_timeout_usec(optarg, &arg_load_timeout_usec);
                        if (r < 0 || arg_load_timeout_usec == USEC_INFINITY)
                                return log_error_errno(EINVAL, _("Invalid load timeout: %s"), optarg);
                        break;
                case ARG_MODULE_DIR:
                        arg_module_dir = optarg;
                        break;
                case ARG_CONFIG:
                        if (strv_extend(&arg_config, optarg) < 0)
                                return log_oom();
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }

        if (optind < argc)
                return log_error_errno(EINVAL, _("%s takes no arguments."), program_invocation_short_name);
        return 1;
}

/* One fd per connection: make room for the connection limit. */
static void raise_nofile(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= NOFILE_WANTED)
                return;
        rl.rlim_cur = MIN(rl.rlim_max, (rlim_t) NOFILE_WANTED);
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_debug_errno(errno, "Failed to raise RLIMIT_NOFILE, ignoring: %m");
}

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        int n, r;

        log_open();

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;

        raise_nofile();
        (void) signal(SIGPIPE, SIG_IGN);

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");

        r = sd_event_default(&event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m");
        r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to watch signals: %m");

        /* libkmod would print its own complaints while parsing modprobe.d; ours go to the journal. */
        (void) setenv("KMOD_LOG", "0", false);
        r = manager_new(&m, event,
                        &(ManagerConfig){
                                .n_workers = arg_workers,
                                .policy = arg_policy,
                                .load_timeout_usec = arg_load_timeout_usec,
                                .module_dir = arg_module_dir,
                                .config_paths = (const char *const *) arg_config,
                        });
        if (r < 0)
                return log_error_errno(r, "Failed to set up the manager: %m");

        n = manager_listen_activation(m);
        if (n < 0)
                return log_error_errno(n, "Failed to take over passed sockets: %m");
        if (n == 0) {
                r = manager_listen_address(m, arg_listen);
                if (r == -EADDRINUSE)
                        return log_error_errno(r, "Another daemon already answers on %s.", arg_listen);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on %s: %m", arg_listen);
                log_debug("Listening on %s.", arg_listen);
        } else
                log_debug("Serving %d socket(s) passed by the service manager.", n);

        /* Socket-activated: the socket stays with systemd, so exiting when idle costs nothing. */
        if (arg_idle_timeout_usec == 0)
                arg_idle_timeout_usec = n > 0 ? IDLE_TIMEOUT_ACTIVATED_USEC : USEC_INFINITY;
        manager_set_idle_timeout(m, arg_idle_timeout_usec);

        (void) sd_notify(false, "READY=1");
        manager_notify_status(m, true);

        r = sd_event_loop(event);
        (void) sd_notify(false, "STOPPING=1");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}

int main(int argc, char *argv[]) {
        int r = run(argc, argv);
        strv_free(arg_config);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
