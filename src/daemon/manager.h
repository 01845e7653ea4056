/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "broker.h"
#include "loader.h"
#include "macro.h"
#include "resolver.h"
#include "timeutil.h"
#include "varlink.h"

#define MANAGER_SUBSCRIBERS_MAX 64U

typedef struct Manager {
        sd_event *event;
        VarlinkServer *server;
        uint64_t start_usec;
        Broker *broker;

        VarlinkCall **subscribers;
        size_t n_subscribers;

        uint64_t idle_timeout_usec;
        sd_event_source *idle_source;
        /* Serving one connection handed to us: exit when it closes. */
        bool exit_on_last_connection;
        bool shutting_down;
        uint64_t status_usec;
} Manager;

typedef struct ManagerConfig {
        unsigned n_workers; /* modules decompressed at once; 0: online CPUs */
        LoadPolicy policy;
        uint64_t load_timeout_usec;      /* 0: BROKER_LOAD_TIMEOUT_USEC */
        const char *module_dir;          /* NULL: the running kernel's */
        const char *const *config_paths; /* NULL: kmod's modprobe.d directories */
} ManagerConfig;

int manager_new(Manager **ret, sd_event *event, const ManagerConfig *config);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Take over the sockets systemd (or varlinkctl exec:) passed us. Returns how many. */
int manager_listen_activation(Manager *m);
int manager_listen_address(Manager *m, const char *address);
/* Start the idle timer logic; USEC_INFINITY disables it. */
int manager_set_idle_timeout(Manager *m, uint64_t usec);

/* Whether there is work in flight that idle exit must wait for. */
bool manager_busy(const Manager *m);
/* Summarise the counters for the service manager (rate-limited unless forced). */
void manager_notify_status(Manager *m, bool force);
