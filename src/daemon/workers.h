/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A bounded pool of threads for the work that blocks: reading and
 * decompressing module files, the kernel calls, install commands. Work is
 * handed in and its completion handed back on the event loop's thread, so
 * everything else stays single-threaded. */

#include <systemd/sd-event.h>

#include "macro.h"

#define WORKERS_MAX 256U

typedef struct WorkItem WorkItem;
struct WorkItem {
        void (*run)(WorkItem *w);  /* in a worker thread */
        void (*done)(WorkItem *w); /* back on the event loop */
        WorkItem *next;
};

typedef struct Workers Workers;

int workers_new(Workers **ret, sd_event *event, unsigned n_threads);
/* Waits for the work in flight to finish; completions not yet delivered are delivered. */
Workers *workers_free(Workers *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(Workers *, workers_free);
void workers_submit(Workers *w, WorkItem *item);
/* Items submitted and not yet completed (their done() not yet called). */
unsigned workers_pending(const Workers *w);
