/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "json-util.h"
#include "manager.h"
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
        VarlinkServerStats vs;

        if (!p)
                return -ENOMEM;
        varlink_server_get_stats(m->server, &vs);

        const struct {
                const char *name;
                uint64_t value;
        } fields[] = {
                { "requests", m->stats.requests },
                { "sharedRequests", m->stats.shared_requests },
                { "modulesInserted", m->stats.modules_inserted },
                { "kernelCalls", m->stats.kernel_calls },
                { "kernelEEXIST", m->stats.kernel_eexist },
                { "bytesDecompressed", m->stats.bytes_decompressed },
                { "bytesToKernel", m->stats.bytes_to_kernel },
                { "bytesAvoided", m->stats.bytes_avoided },
                { "resolveCacheHits", m->stats.resolve_cache_hits },
                { "failures", m->stats.failures },
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

/* Methods the load core (not yet part of this release) provides are declared
 * here without a handler: the server answers MethodNotImplemented. */
static const VarlinkMethod manager_methods[] = {
        { "Load", NULL, VARLINK_METHOD_ROOT_ONLY },
        { "Unload", NULL, VARLINK_METHOD_ROOT_ONLY },
        { "Describe", NULL, 0 },
        { "List", NULL, 0 },
        { "GetStatistics", method_get_statistics, 0 },
        { "Monitor", method_monitor, VARLINK_METHOD_REQUIRES_MORE },
        { "Reload", NULL, VARLINK_METHOD_ROOT_ONLY },
};

/* --- idle exit ------------------------------------------------------------ */

static int manager_on_idle(sd_event_source *source, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (varlink_server_n_connections(m->server) > 0)
                return 0;
        return sd_event_exit(m->event, 0);
}

static void manager_on_connections(VarlinkServer *server, unsigned n, void *userdata) {
        Manager *m = userdata;

        if (n > 0) {
                (void) sd_event_source_set_enabled(m->idle_source, SD_EVENT_OFF);
                return;
        }
        if (m->exit_on_last_connection) {
                (void) sd_event_exit(m->event, 0);
                return;
        }
        if (m->idle_timeout_usec == USEC_INFINITY)
                return;
        if (m->idle_source) {
                (void) sd_event_source_set_time_relative(m->idle_source, m->idle_timeout_usec);
                (void) sd_event_source_set_enabled(m->idle_source, SD_EVENT_ONESHOT);
        } else
                (void) sd_event_add_time_relative(m->event, &m->idle_source, CLOCK_MONOTONIC, m->idle_timeout_usec,
                                                  0, manager_on_idle, m);
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

int manager_new(Manager **ret, sd_event *event) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(Manager));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->start_usec = now_usec(CLOCK_MONOTONIC);
        m->idle_timeout_usec = USEC_INFINITY;

        r = varlink_server_new(&m->server, event,
                               &(VarlinkServerInfo) {
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
        varlink_server_free(m->server);
        sd_event_source_disable_unref(m->idle_source);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}
