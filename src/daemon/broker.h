/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The broker: the varlink-facing half of loading. It takes Load and Unload calls, resolves each
 * name (through a cache of plans), hands the plans to the scheduler (scheduler.h: one table of
 * modules, one load per module for every caller), and answers each call when all its names are
 * done, or when its time runs out — then the loads go on. It keeps the counters and sends the
 * events Monitor subscribers see. Everything here runs on the event loop; the scheduler's
 * operations run on threads of their own. */

#include <json-c/json.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "executor.h"
#include "loader.h"
#include "resolver.h"
#include "timeutil.h"
#include "varlink.h"

#define BROKER_NAMES_MAX           1024U               /* names in one Load or Unload */
#define BROKER_PENDING_PER_UID_MAX 4096U               /* names of one UID being worked on */
#define BROKER_RESOLVE_CACHE_MAX   8192U               /* cached resolutions before the cache starts over */
#define BROKER_LOAD_TIMEOUT_USEC   (60 * USEC_PER_SEC) /* a caller waits this long at most */
#define BROKER_DECOMPRESS_MAX      256U                /* the largest --workers */

/* Counters reported by GetStatistics. */
typedef struct BrokerStats {
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
} BrokerStats;

typedef struct BrokerConfig {
        sd_event *event;
        unsigned n_decompress; /* modules decompressed at once; 0: online CPUs */
        LoadPolicy policy;
        uint64_t load_timeout_usec;      /* 0: BROKER_LOAD_TIMEOUT_USEC */
        const char *module_dir;          /* NULL: the running kernel's */
        const char *const *config_paths; /* NULL: kmod's modprobe.d directories */

        /* Whether anyone wants events; emit() takes over each event. */
        bool (*want_events)(void *userdata);
        void (*emit)(json_object *event, void *userdata);
        /* A call's work is over (the counters changed; idle exit may go ahead). */
        void (*work_done)(void *userdata);
        void *userdata;
} BrokerConfig;

typedef struct Broker Broker;

typedef struct CachedPlan {
        unsigned n_ref;
        Plan *plan; /* NULL when error is set */
        int error;  /* negative errno: no plan (-ENOENT: nothing matches) */
} CachedPlan;

int broker_new(Broker **ret, const BrokerConfig *config);
/* Loads in flight finish and their callers are answered; after that nothing starts. */
void broker_drain(Broker *b);
/* Drains first. */
Broker *broker_free(Broker *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(Broker *, broker_free);

/* Take over a Load/Unload call: every name is valid and the count within limits. */
int broker_load(Broker *b, VarlinkCall *call, char **names, const LoadRequest *options);
int broker_unload(Broker *b, VarlinkCall *call, char **names, const UnloadRequest *options);

/* A plan for a name (cached); the caller owns a reference. */
int broker_resolve(Broker *b, const char *name, const char *parameters, ResolveFlags flags, CachedPlan **ret);
CachedPlan *cached_plan_unref(CachedPlan *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(CachedPlan *, cached_plan_unref);

/* Re-read indexes and configuration; forget cached resolutions. */
int broker_reload(Broker *b);
unsigned broker_n_pending(const Broker *b, uid_t uid);
/* Calls being answered or loads in flight. */
bool broker_busy(const Broker *b);
const BrokerStats *broker_stats(const Broker *b);
