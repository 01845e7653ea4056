/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include "workers.h"

struct Workers {
        sd_event_source *source;
        int event_fd;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        WorkItem *queue_head, *queue_tail; /* waiting for a thread */
        WorkItem *done_head, *done_tail;   /* finished, waiting for the event loop */
        bool quit;

        pthread_t *threads;
        unsigned n_threads;
        unsigned pending; /* main thread only */
};

static void list_append(WorkItem **head, WorkItem **tail, WorkItem *item) {
        item->next = NULL;
        if (*tail)
                (*tail)->next = item;
        else
                *head = item;
        *tail = item;
}

static void *worker_main(void *userdata) {
        Workers *w = userdata;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                WorkItem *item;

                while (!w->queue_head && !w->quit)
                        pthread_cond_wait(&w->cond, &w->lock);
                if (!w->queue_head)
                        break;
                item = w->queue_head;
                w->queue_head = item->next;
                if (!w->queue_head)
                        w->queue_tail = NULL;
                pthread_mutex_unlock(&w->lock);

                item->run(item);

                pthread_mutex_lock(&w->lock);
                list_append(&w->done_head, &w->done_tail, item);
                (void) eventfd_write(w->event_fd, 1);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

static void workers_deliver(Workers *w) {
        WorkItem *list;

        pthread_mutex_lock(&w->lock);
        list = w->done_head;
        w->done_head = w->done_tail = NULL;
        pthread_mutex_unlock(&w->lock);

        while (list) {
                WorkItem *item = list;
                list = item->next;
                w->pending--;
                item->done(item);
        }
}

static int workers_on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        eventfd_t v;

        (void) eventfd_read(fd, &v);
        workers_deliver(userdata);
        return 0;
}

int workers_new(Workers **ret, sd_event *event, unsigned n_threads) {
        _cleanup_(workers_freep) Workers *w = NULL;
        int r;

        if (n_threads == 0 || n_threads > WORKERS_MAX)
                return -EINVAL;
        w = calloc(1, sizeof(Workers));
        if (!w)
                return -ENOMEM;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->event_fd < 0)
                return -errno;
        r = sd_event_add_io(event, &w->source, w->event_fd, EPOLLIN, workers_on_event, w);
        if (r < 0)
                return r;

        w->threads = calloc(n_threads, sizeof(pthread_t));
        if (!w->threads)
                return -ENOMEM;
        for (; w->n_threads < n_threads; w->n_threads++) {
                r = pthread_create(&w->threads[w->n_threads], NULL, worker_main, w);
                if (r != 0)
                        return -r;
        }
        *ret = TAKE_PTR(w);
        return 0;
}

Workers *workers_free(Workers *w) {
        if (!w)
                return NULL;

        pthread_mutex_lock(&w->lock);
        w->quit = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        for (unsigned i = 0; i < w->n_threads; i++)
                pthread_join(w->threads[i], NULL);
        workers_deliver(w);

        free(w->threads);
        sd_event_source_disable_unref(w->source);
        safe_close(w->event_fd);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
}

void workers_submit(Workers *w, WorkItem *item) {
        w->pending++;
        pthread_mutex_lock(&w->lock);
        list_append(&w->queue_head, &w->queue_tail, item);
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

unsigned workers_pending(const Workers *w) {
        return w->pending;
}
