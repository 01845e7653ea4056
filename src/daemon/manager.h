/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "hashmap.h"
#include "loader.h"
#include "macro.h"
#include "resolver.h"
#include "timeutil.h"
#include "varlink.h"
#include "workers.h"

#define MANAGER_SUBSCRIBERS_MAX     64U
#define MANAGER_NAMES_MAX           1024U               /* names in one Load or Unload */
#define MANAGER_PENDING_PER_UID_MAX 4096U               /* names of one UID being worked on */
#define MANAGER_RESOLVE_CACHE_MAX   8192U               /* cached resolutions before the cache starts over */
#define MANAGER_LOAD_TIMEOUT_USEC   (60 * USEC_PER_SEC) /* a caller waits this long at most */

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
        uint64_t failures;  /* names that failed (not found and blacklisted are not failures) */
        uint64_t not_found; /* names no module matches */
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

        /* The broker: see broker.c. */
        ResolverConfig resolver_config;
        Resolver *resolver;
        Loader *loader;
        LoadPolicy policy;
        Workers *workers;
        unsigned n_workers;
        Hashmap *jobs;         /* module name -> Job in flight */
        Hashmap *plan_cache;   /* name + flags + parameters -> CachedPlan */
        struct Batch *batches; /* calls being answered */
        unsigned n_batches;
        struct UidPending *uid_pending;
        size_t n_uid_pending;
        uint64_t load_timeout_usec;
        uint64_t status_usec;
        bool shutting_down;
} Manager;

typedef struct ManagerConfig {
        unsigned n_workers; /* 0: online CPUs */
        LoadPolicy policy;
        uint64_t load_timeout_usec; /* 0: MANAGER_LOAD_TIMEOUT_USEC */
        const char *module_dir;     /* NULL: the running kernel's */
} ManagerConfig;

int manager_new(Manager **ret, sd_event *event, const ManagerConfig *config);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Take over the sockets systemd (or varlinkctl exec:) passed us. Returns how many. */
int manager_listen_activation(Manager *m);
int manager_listen_address(Manager *m, const char *address);
/* Start the idle timer logic; USEC_INFINITY disables it. */
int manager_set_idle_timeout(Manager *m, uint64_t usec);

/* Send an event to every Monitor subscriber (takes over event). */
void manager_emit_event(Manager *m, json_object *event);
/* Whether there is work in flight that idle exit must wait for. */
bool manager_busy(const Manager *m);
/* Called when a call's work is over: idle exit may go ahead now. */
void manager_work_done(Manager *m);
/* Summarise the counters for the service manager (rate-limited unless forced). */
void manager_notify_status(Manager *m, bool force);
