/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "varlink.h"

#define MANAGER_SUBSCRIBERS_MAX 64U

/* Counters reported by GetStatistics. */
typedef struct ManagerStats {
        uint64_t requests;
        uint64_t shared_requests;
        uint64_t modules_inserted;
        uint64_t kernel_calls;
        uint64_t kernel_eexist;
        uint64_t bytes_decompressed;
        uint64_t bytes_to_kernel;
        uint64_t bytes_avoided;
        uint64_t resolve_cache_hits;
        uint64_t failures;
} ManagerStats;

typedef struct Manager {
        sd_event *event;
        VarlinkServer *server;
        uint64_t start_usec;
        ManagerStats stats;

        VarlinkCall **subscribers;
        size_t n_subscribers;

        uint64_t idle_timeout_usec;
        sd_event_source *idle_source;
        /* Serving one connection handed to us: exit when it closes. */
        bool exit_on_last_connection;
} Manager;

int manager_new(Manager **ret, sd_event *event);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Take over the sockets systemd (or varlinkctl exec:) passed us. Returns how many. */
int manager_listen_activation(Manager *m);
int manager_listen_address(Manager *m, const char *address);
/* Start the idle timer logic; USEC_INFINITY disables it. */
int manager_set_idle_timeout(Manager *m, uint64_t usec);
