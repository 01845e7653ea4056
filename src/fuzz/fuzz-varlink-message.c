/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Feed arbitrary bytes to the daemon's varlink dispatcher, as a client on a
 * socket would: framing, JSON parsing, the message checks, parameter
 * validation against the interface description, and the method handlers.
 * The daemon gets no module tree, so nothing resolves and nothing is loaded;
 * the replay test also puts the fake kernel in front, in case. */
#include <sys/socket.h>

#include "fuzz.h"
#include "manager.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_close_ int client = -EBADF;
        int fds[2];
        size_t done = 0;

        if (sd_event_new(&e) < 0 || manager_new(&m, e,
                                                &(ManagerConfig){
                                                        .n_workers = 1,
                                                        /* No module tree: a fuzzed Load resolves nothing and
                                                         * never reaches the kernel. */
                                                        .module_dir = "/nonexistent/modloadd-fuzz",
                                                }) < 0)
                abort();
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0)
                abort();
        client = fds[0];
        if (varlink_server_add_connection(m->server, fds[1]) < 0)
                abort();

        /* Write what the socket takes, let the server read, repeat. Replies
         * are read and thrown away so the server never stalls on output. */
        for (unsigned rounds = 0; rounds < 100000 && varlink_server_n_connections(m->server) > 0; rounds++) {
                char sink[65536];

                if (done < size) {
                        ssize_t n = send(client, data + done, size - done, MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (n > 0)
                                done += (size_t) n;
                        else if (n < 0 && errno != EAGAIN)
                                break;
                        if (done == size)
                                (void) shutdown(client, SHUT_WR);
                } else if (size == 0 && rounds == 0)
                        (void) shutdown(client, SHUT_WR);

                while (recv(client, sink, sizeof sink, MSG_DONTWAIT) > 0)
                        ;
                if (sd_event_run(e, 0) < 0)
                        break;
                /* Done sending and nothing left to do: a pending Monitor keeps the connection; stop. */
                if (done == size && sd_event_run(e, 0) == 0)
                        break;
        }
        return 0;
}
