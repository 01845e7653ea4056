/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "json-util.h"
#include "broker.h"
#include "log.h"
#include "manager.h"
#include "strutil.h"
#include "strv.h"
#include "timeutil.h"
#include "varlink-service.h"

/* --- Monitor -------------------------------------------------------------- */

static void manager_drop_subscriber(VarlinkCall *call, void *userdata) {
        Manager *m = userdata;

        for (size_t i = 0; i < m->n_subscribers; i++)
                if (m->subscribers[i] == call) {
                        m->subscribers[i] = m->subscribers[--m->n_subscribers];
                        varlink_call_unref(call);
                        return;
                }
}

static void manager_emit(Manager *m, json_object *event) {
        for (size_t i = 0; i < m->n_subscribers;) {
                _cleanup_(varlink_call_unrefp) VarlinkCall *call = varlink_call_ref(m->subscribers[i]);
                json_object *p = json_object_new_object();

                if (!p || json_add(p, "event", json_object_get(event)) < 0) {
                        json_object_put(p);
                        return;
                }
                /* A subscriber we cannot reach is dropped; its disconnect may have dropped it already. */
                if (varlink_call_notify(call, p) < 0 || !varlink_call_is_connected(call)) {
                        manager_drop_subscriber(call, m);
                        continue;
                }
                i++;
        }
}

static void manager_on_broker_event(json_object *event, void *userdata) {
        manager_emit(userdata, event);
        json_object_put(event);
}

static bool manager_want_events(void *userdata) {
        Manager *m = userdata;
        return m->n_subscribers > 0;
}

static void manager_on_call(VarlinkCall *call, void *userdata) {
        _cleanup_(json_object_putp) json_object *event = NULL;
        Manager *m = userdata;
        const char *method = varlink_call_method(call);

        if (m->n_subscribers == 0 || streq(method, "io.modloadd.Manager.Monitor"))
                return;

        event = json_object_new_object();
        if (!event || json_add_string(event, "kind", "call") < 0 || json_add_string(event, "method", method) < 0)
                return;
        if (varlink_call_peer_uid(call) != (uid_t) -1 && json_add_int(event, "uid", varlink_call_peer_uid(call)) < 0)
                return;
        if (varlink_call_peer_pid(call) > 0 && json_add_int(event, "pid", varlink_call_peer_pid(call)) < 0)
                return;
        manager_emit(m, event);
}

static int method_monitor(VarlinkCall *call, json_object *parameters, void *userdata) {
        Manager *m = userdata;
        VarlinkCall **n;
        json_object *p;

        if (m->n_subscribers >= MANAGER_SUBSCRIBERS_MAX) {
                p = json_object_new_object();
                if (!p || json_add_int(p, "max", MANAGER_SUBSCRIBERS_MAX) < 0) {
                        json_object_put(p);
                        return -ENOMEM;
                }
                return varlink_call_error(call, "io.modloadd.Manager.TooManySubscribers", p);
        }

        n = reallocarray(m->subscribers, m->n_subscribers + 1, sizeof(VarlinkCall *));
        if (!n)
                return -ENOMEM;
        m->subscribers = n;

        p = json_object_new_object();
        if (!p || json_add_bool(p, "ready", true) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        m->subscribers[m->n_subscribers++] = varlink_call_ref(call);
        varlink_call_set_disconnect_callback(call, manager_drop_subscriber, m);
        return varlink_call_notify(call, p);
}

/* --- GetStatistics -------------------------------------------------------- */

static int method_get_statistics(VarlinkCall *call, json_object *parameters, void *userdata) {
        _cleanup_(json_object_putp) json_object *p = json_object_new_object();
        Manager *m = userdata;
        const BrokerStats *st = broker_stats(m->broker);
        VarlinkServerStats vs;

        if (!p)
                return -ENOMEM;
        varlink_server_get_stats(m->server, &vs);

        const struct {
                const char *name;
                uint64_t value;
        } fields[] = {
                { "requests", st->requests },
                { "sharedRequests", st->shared_requests },
                { "modulesInserted", st->modules_inserted },
                { "kernelCalls", st->kernel_calls },
                { "kernelEEXIST", st->kernel_eexist },
                { "bytesDecompressed", st->bytes_decompressed },
                { "bytesToKernel", st->bytes_to_kernel },
                { "bytesAvoided", st->bytes_avoided },
                { "resolveCacheHits", st->resolve_cache_hits },
                { "failures", st->failures },
                { "notFound", st->not_found },
                { "uptimeSec", (now_usec(CLOCK_MONOTONIC) - m->start_usec) / USEC_PER_SEC },
                { "connections", varlink_server_n_connections(m->server) },
                { "connectionsTotal", vs.connections_total },
                { "connectionsRefused", vs.connections_refused },
                { "calls", vs.calls },
                { "protocolErrors", vs.protocol_errors },
        };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (json_add_int(p, fields[i].name, (int64_t) MIN(fields[i].value, (uint64_t) INT64_MAX)) < 0)
                        return -ENOMEM;
        return varlink_call_reply(call, TAKE_PTR(p));
}

/* --- Load, Unload ---------------------------------------------------------- */

static bool json_flag(json_object *params, const char *key) {
        json_object *v = json_object_object_get(params, key);
        return v && json_object_get_boolean(v);
}

static int reply_error_int(VarlinkCall *call, const char *error, const char *field, int64_t value) {
        json_object *p = json_object_new_object();
        if (!p || json_add_int(p, field, value) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        return varlink_call_error(call, error, p);
}

static int reply_error_string(VarlinkCall *call, const char *error, const char *field, const char *value) {
        json_object *p = json_object_new_object();
        if (!p || json_add_string(p, field, value) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        return varlink_call_error(call, error, p);
}

/* Check the names of a Load/Unload call; answers the call itself when they are not acceptable.
 * Returns 1 with *ret set when the call may go on. */
static int check_names(Manager *m, VarlinkCall *call, json_object *params, char ***ret) {
        json_object *names = json_object_object_get(params, "names");
        size_t n = json_object_array_length(names);
        _cleanup_(strv_freep) char **l = NULL;
        uid_t uid = varlink_call_peer_uid(call);

        if (n == 0) {
                /* Nothing asked, nothing to wait for: the answer is an empty list. */
                json_object *reply = json_object_new_object();
                if (!reply || json_add(reply, "outcomes", json_object_new_array()) < 0) {
                        json_object_put(reply);
                        return -ENOMEM;
                }
                return varlink_call_reply(call, reply);
        }
        if (n > BROKER_NAMES_MAX)
                return reply_error_int(call, "io.modloadd.Manager.TooManyNames", "max", BROKER_NAMES_MAX);
        if (broker_n_pending(m->broker, uid) + n > BROKER_PENDING_PER_UID_MAX)
                return reply_error_int(call, "io.modloadd.Manager.TooManyRequests", "max", BROKER_PENDING_PER_UID_MAX);
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *name = json_object_get_string(json_object_array_get_idx(names, i));
                if (!request_name_is_valid(name))
                        return reply_error_string(call, "io.modloadd.Manager.InvalidName", "name", name);
                l[i] = strdup(name);
                if (!l[i])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 1;
}

static int method_load(VarlinkCall *call, json_object *params, void *userdata) {
        Manager *m = userdata;
        _cleanup_(strv_freep) char **names = NULL;
        json_object *p = json_object_object_get(params, "parameters");
        int r;

        r = check_names(m, call, params, &names);
        if (r <= 0)
                return r;
        return broker_load(
                m->broker, call, names,
                &(LoadRequest){
                        .parameters = p ? json_object_get_string(p) : NULL,
                        .resolve_flags = (json_flag(params, "applyBlacklist") ? RESOLVE_APPLY_BLACKLIST : 0) |
                                         (json_flag(params, "ignoreInstall") ? RESOLVE_IGNORE_INSTALL : 0) |
                                         (json_flag(params, "firstTime") ? RESOLVE_FIRST_TIME : 0),
                        .load_flags = (json_flag(params, "forceVermagic") ? LOAD_FORCE_VERMAGIC : 0) |
                                      (json_flag(params, "forceModversion") ? LOAD_FORCE_MODVERSION : 0),
                        .dry_run = json_flag(params, "dryRun"),
                });
}

static int method_unload(VarlinkCall *call, json_object *params, void *userdata) {
        Manager *m = userdata;
        _cleanup_(strv_freep) char **names = NULL;
        json_object *w = json_object_object_get(params, "wait");
        int64_t wait_ms = w ? json_object_get_int64(w) : 0;
        int r;

        if (wait_ms < 0 || wait_ms > 3600 * 1000)
                return varlink_call_error_invalid_parameter(call, "wait");
        r = check_names(m, call, params, &names);
        if (r <= 0)
                return r;
        return broker_unload(
                m->broker, call, names,
                &(UnloadRequest){
                        .resolve_flags = (json_flag(params, "removeHolders") ? RESOLVE_REMOVE_HOLDERS : 0) |
                                         (json_flag(params, "ignoreRemove") ? RESOLVE_IGNORE_INSTALL : 0) |
                                         (json_flag(params, "firstTime") ? RESOLVE_FIRST_TIME : 0),
                        .force = json_flag(params, "force"),
                        .wait_usec = (uint64_t) wait_ms * USEC_PER_MSEC,
                        .dry_run = json_flag(params, "dryRun"),
                });
}

/* --- Describe, List, Reload ------------------------------------------------ */

static json_object *step_to_json(const Step *s) {
        _cleanup_(json_object_putp) json_object *j = json_object_new_object();
        _cleanup_free_ char *cmd = NULL;

        if (!j ||
            json_add_string(j, "kind",
                            s->kind == STEP_INSTALL   ? "install"
                            : s->kind == STEP_BUILTIN ? "builtin"
                                                      : "insmod") < 0 ||
            json_add_string(j, "module", s->module) < 0)
                return NULL;
        if (s->path && json_add_string(j, "path", s->path) < 0)
                return NULL;
        if (!isempty(s->options) && json_add_string(j, "parameters", s->options) < 0)
                return NULL;
        if (s->kind == STEP_INSTALL && (step_expand_command(s, &cmd) < 0 || json_add_string(j, "command", cmd) < 0))
                return NULL;
        if (s->after && s->after[0]) {
                json_object *a = json_object_new_array();
                if (!a || json_add(j, "after", a) < 0)
                        return NULL;
                for (char **i = s->after; *i; i++)
                        if (json_object_array_add(a, json_object_new_string(*i)) < 0)
                                return NULL;
        }
        return TAKE_PTR(j);
}

static int method_describe(VarlinkCall *call, json_object *params, void *userdata) {
        Manager *m = userdata;
        _cleanup_(cached_plan_unrefp) CachedPlan *cp = NULL;
        _cleanup_(json_object_putp) json_object *reply = json_object_new_object(), *mods = json_object_new_array(),
                                                *steps = json_object_new_array();
        _cleanup_(strv_freep) char **list = NULL;
        const char *name = json_object_get_string(json_object_object_get(params, "name"));
        json_object *p = json_object_object_get(params, "parameters");
        int r;

        if (!reply || !mods || !steps)
                return -ENOMEM;
        if (!request_name_is_valid(name))
                return reply_error_string(call, "io.modloadd.Manager.InvalidName", "name", name);

        r = broker_resolve(m->broker, name, p ? json_object_get_string(p) : NULL,
                           (json_flag(params, "applyBlacklist") ? RESOLVE_APPLY_BLACKLIST : 0) |
                                   (json_flag(params, "ignoreInstall") ? RESOLVE_IGNORE_INSTALL : 0),
                           &cp);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return reply_error_string(call, "io.modloadd.Manager.ModuleNotFound", "name", name);
        if (cp->error == -ENOENT)
                return reply_error_string(call, "io.modloadd.Manager.ModuleNotFound", "name", name);
        if (cp->error < 0)
                return reply_error_string(call, "io.modloadd.Manager.InvalidName", "name", name);

        list = plan_module_list(cp->plan);
        if (!list)
                return -ENOMEM;
        for (char **i = list; *i; i++)
                if (json_object_array_add(mods, json_object_new_string(*i)) < 0)
                        return -ENOMEM;
        for (size_t i = 0; i < cp->plan->n_steps; i++)
                if (json_object_array_add(steps, step_to_json(&cp->plan->steps[i])) < 0)
                        return -ENOMEM;
        if (json_add(reply, "modules", TAKE_PTR(mods)) < 0 || json_add(reply, "steps", TAKE_PTR(steps)) < 0)
                return -ENOMEM;
        if (cp->plan->result == PLAN_RESULT_BLACKLISTED && json_add_bool(reply, "blacklisted", true) < 0)
                return -ENOMEM;
        return varlink_call_reply(call, TAKE_PTR(reply));
}

/* One line of /proc/modules: "name size refcount holders, state address". */
static json_object *proc_modules_line_to_json(char *line) {
        _cleanup_(json_object_putp) json_object *j = json_object_new_object(), *holders = json_object_new_array();
        char *save = NULL, *name, *size, *ref, *deps, *state;

        name = strtok_r(line, " ", &save);
        size = strtok_r(NULL, " ", &save);
        ref = strtok_r(NULL, " ", &save);
        deps = strtok_r(NULL, " ", &save);
        state = strtok_r(NULL, " \n", &save);
        if (!j || !holders || !name || !size || !ref || !deps || !state)
                return NULL;
        for (char *h_save = NULL, *h = strtok_r(deps, ",", &h_save); h; h = strtok_r(NULL, ",", &h_save))
                if (!streq(h, "-") && json_object_array_add(holders, json_object_new_string(h)) < 0)
                        return NULL;
        if (json_add_string(j, "name", name) < 0 || json_add_int(j, "size", strtoll(size, NULL, 10)) < 0 ||
            json_add_int(j, "refcount", streq(ref, "-") ? 0 : strtoll(ref, NULL, 10)) < 0 ||
            json_add(j, "holders", TAKE_PTR(holders)) < 0 ||
            json_add_string(j, "state",
                            streq(state, "Loading")     ? "coming"
                            : streq(state, "Unloading") ? "going"
                                                        : "live") < 0)
                return NULL;
        return TAKE_PTR(j);
}

static int method_list(VarlinkCall *call, json_object *params, void *userdata) {
        _cleanup_(json_object_putp) json_object *reply = json_object_new_object(), *mods = json_object_new_array();
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        FILE *f;

        if (!reply || !mods)
                return -ENOMEM;
        /* A kernel without module support has no /proc/modules: nothing is loaded. */
        f = fopen("/proc/modules", "re");
        if (f) {
                while (getline(&line, &size, f) > 0) {
                        json_object *j = proc_modules_line_to_json(line);
                        if (j && json_object_array_add(mods, j) < 0) {
                                json_object_put(j);
                                fclose(f);
                                return -ENOMEM;
                        }
                }
                fclose(f);
        }
        if (json_add(reply, "modules", TAKE_PTR(mods)) < 0)
                return -ENOMEM;
        return varlink_call_reply(call, TAKE_PTR(reply));
}

static int method_reload(VarlinkCall *call, json_object *params, void *userdata) {
        Manager *m = userdata;
        int r;

        r = broker_reload(m->broker);
        if (r < 0) {
                log_warning_errno(r, "Reload: failed to re-read module indexes, keeping the old ones: %m");
                return reply_error_string(call, "io.modloadd.Manager.ReloadFailed", "message", strerror(-r));
        }
        log_info("Reloaded module indexes and configuration.");
        return varlink_call_reply(call, NULL);
}

static const VarlinkMethod manager_methods[] = {
        { "Load", method_load, VARLINK_METHOD_ROOT_ONLY },
        { "Unload", method_unload, VARLINK_METHOD_ROOT_ONLY },
        { "Describe", method_describe, 0 },
        { "List", method_list, 0 },
        { "GetStatistics", method_get_statistics, 0 },
        { "Monitor", method_monitor, VARLINK_METHOD_REQUIRES_MORE },
        { "Reload", method_reload, VARLINK_METHOD_ROOT_ONLY },
};

/* --- status --------------------------------------------------------------- */

void manager_notify_status(Manager *m, bool force) {
        const BrokerStats *st = broker_stats(m->broker);
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        char buf[256];

        if (!force && now < m->status_usec + USEC_PER_SEC)
                return;
        m->status_usec = now;
        snprintf(buf, sizeof buf,
                 "STATUS=%" PRIu64 " requests (%" PRIu64 " shared), %" PRIu64 " modules inserted, %" PRIu64
                 " kernel calls, %" PRIu64 " KiB not copied twice",
                 st->requests, st->shared_requests, st->modules_inserted, st->kernel_calls, st->bytes_avoided / 1024);
        (void) sd_notify(false, buf);
}

bool manager_busy(const Manager *m) {
        return m->broker && broker_busy(m->broker);
}

/* --- idle exit ------------------------------------------------------------ */

static int manager_on_idle(sd_event_source *source, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (varlink_server_n_connections(m->server) > 0)
                return 0;
        if (manager_busy(m)) {
                /* Loads in flight for callers that went away: look again later. */
                (void) sd_event_source_set_time_relative(source, m->idle_timeout_usec);
                return sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        }
        return sd_event_exit(m->event, 0);
}

static void manager_on_connections(VarlinkServer *server, unsigned n, void *userdata) {
        Manager *m = userdata;

        if (n > 0) {
                (void) sd_event_source_set_enabled(m->idle_source, SD_EVENT_OFF);
                return;
        }
        if (m->exit_on_last_connection && !manager_busy(m)) {
                (void) sd_event_exit(m->event, 0);
                return;
        }
        if (m->idle_timeout_usec == USEC_INFINITY)
                return;
        if (m->idle_source) {
                (void) sd_event_source_set_time_relative(m->idle_source, m->idle_timeout_usec);
                (void) sd_event_source_set_enabled(m->idle_source, SD_EVENT_ONESHOT);
        } else
                (void) sd_event_add_time_relative(m->event, &m->idle_source, CLOCK_MONOTONIC, m->idle_timeout_usec, 0,
                                                  manager_on_idle, m);
}

static void manager_on_work_done(void *userdata) {
        Manager *m = userdata;

        manager_notify_status(m, false);
        /* Work that outlived its callers was all that kept us: let idle exit look again. */
        if (!m->shutting_down && !manager_busy(m) && varlink_server_n_connections(m->server) == 0)
                manager_on_connections(m->server, 0, m);
}

int manager_set_idle_timeout(Manager *m, uint64_t usec) {
        m->idle_timeout_usec = usec;
        manager_on_connections(m->server, varlink_server_n_connections(m->server), m);
        return 0;
}

/* --- setup ---------------------------------------------------------------- */

int manager_listen_activation(Manager *m) {
        int n, r;

        n = sd_listen_fds(true);
        if (n <= 0)
                return n;

        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
                if (sd_is_socket(fd, AF_UNIX, SOCK_STREAM, 1) > 0)
                        r = varlink_server_listen_fd(m->server, fd);
                else if (sd_is_socket(fd, AF_UNIX, SOCK_STREAM, 0) > 0) {
                        /* A connected socket (varlinkctl exec:): serve it, then go. */
                        m->exit_on_last_connection = true;
                        r = varlink_server_add_connection(m->server, fd);
                } else
                        r = -ENOTSOCK;
                if (r < 0)
                        return r;
        }
        return n;
}

int manager_listen_address(Manager *m, const char *address) {
        return varlink_server_listen_address(m->server, address, 0666);
}

int manager_new(Manager **ret, sd_event *event, const ManagerConfig *config) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(Manager));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->start_usec = now_usec(CLOCK_MONOTONIC);
        m->idle_timeout_usec = USEC_INFINITY;

        r = broker_new(&m->broker, &(BrokerConfig){
                                           .event = event,
                                           .n_decompress = config->n_workers,
                                           .policy = config->policy,
                                           .load_timeout_usec = config->load_timeout_usec,
                                           .module_dir = config->module_dir,
                                           .config_paths = config->config_paths,
                                           .want_events = manager_want_events,
                                           .emit = manager_on_broker_event,
                                           .work_done = manager_on_work_done,
                                           .userdata = m,
                                   });
        if (r < 0)
                return r;

        r = varlink_server_new(&m->server, event,
                               &(VarlinkServerInfo){
                                       .vendor = PACKAGE_NAME,
                                       .product = "modloadd",
                                       .version = PACKAGE_VERSION,
                                       .url = PACKAGE_URL,
                               });
        if (r < 0)
                return r;
        r = varlink_server_add_interface(m->server, modloadd_manager_interface, manager_methods,
                                         ELEMENTSOF(manager_methods), m);
        if (r < 0)
                return r;
        varlink_server_set_observer(m->server, manager_on_call, m);
        varlink_server_set_connections_callback(m->server, manager_on_connections, m);

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        for (size_t i = 0; i < m->n_subscribers; i++) {
                varlink_call_set_disconnect_callback(m->subscribers[i], NULL, NULL);
                varlink_call_unref(m->subscribers[i]);
        }
        free(m->subscribers);
        m->n_subscribers = 0;
        /* Loads in flight end before we go: a module is never left half-asked-for. */
        m->shutting_down = true;
        broker_drain(m->broker);
        const BrokerStats *st = m->broker ? broker_stats(m->broker) : &(BrokerStats){};
        /* The counters go with us: leave them in the journal. */
        if (st->requests > 0)
                log_info("Served %" PRIu64 " requests (%" PRIu64 " shared, %" PRIu64 " not found, %" PRIu64
                         " failed), inserted %" PRIu64 " modules with %" PRIu64 " kernel calls, %" PRIu64
                         " bytes not handed to the kernel twice.",
                         st->requests, st->shared_requests, st->not_found, st->failures, st->modules_inserted,
                         st->kernel_calls, st->bytes_avoided);
        broker_free(m->broker);
        varlink_server_free(m->server);
        sd_event_source_disable_unref(m->idle_source);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}
