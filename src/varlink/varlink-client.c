/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "json-util.h"
#include "strutil.h"
#include "timeutil.h"
#include "varlink-client.h"
#include "varlink-address.h"
#include "varlink-limits.h"

int varlink_address_to_path(const char *address, const char **ret_path) {
        const char *p;

        if (isempty(address))
                return -EINVAL;
        p = startswith(address, "unix:");
        if (!p)
                p = address;
        if (isempty(p) || strlen(p) >= sizeof_field(struct sockaddr_un, sun_path))
                return -EINVAL;
        *ret_path = p;
        return 0;
}

struct VarlinkClient {
        int fd;
        char *input;
        size_t input_size, input_alloc;
        json_tokener *tokener;
};

static uint64_t deadline_from_timeout(uint64_t timeout_usec) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        return timeout_usec == USEC_INFINITY || timeout_usec > USEC_INFINITY - now ? USEC_INFINITY : now + timeout_usec;
}

/* Wait for events on fd until deadline. Returns > 0 when ready, -ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                int ms = -1, r;

                if (deadline != USEC_INFINITY) {
                        uint64_t now = now_usec(CLOCK_MONOTONIC);
                        if (now >= deadline)
                                return -ETIMEDOUT;
                        ms = (int) MIN((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (uint64_t) INT32_MAX);
                }
                r = poll(&p, 1, ms);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r > 0)
                        return r;
        }
}

int varlink_client_new_from_fd(VarlinkClient **ret, int fd) {
        VarlinkClient *c;
        int flags;

        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        c = calloc(1, sizeof(VarlinkClient));
        if (!c)
                return -ENOMEM;
        c->fd = fd;
        *ret = c;
        return 0;
}

int varlink_client_connect(VarlinkClient **ret, const char *address, uint64_t timeout_usec) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        uint64_t deadline = deadline_from_timeout(timeout_usec);
        const char *path;
        int r;

        r = varlink_address_to_path(address, &path);
        if (r < 0)
                return r;
        memcpy(sa.sun_path, path, strlen(path));

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;

        for (;;) {
                if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) >= 0)
                        break;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN && errno != EINPROGRESS)
                        return -errno;
                /* The listener's backlog is full: try again until the deadline. */
                if (deadline != USEC_INFINITY && now_usec(CLOCK_MONOTONIC) >= deadline)
                        return -ETIMEDOUT;
                (void) nanosleep(&(struct timespec){ .tv_nsec = 5 * 1000 * 1000 }, NULL);
        }

        r = varlink_client_new_from_fd(ret, fd);
        if (r < 0)
                return r;
        TAKE_FD(fd);
        return 0;
}

VarlinkClient *varlink_client_free(VarlinkClient *c) {
        if (!c)
                return NULL;
        safe_close(c->fd);
        free(c->input);
        if (c->tokener)
                json_tokener_free(c->tokener);
        free(c);
        return NULL;
}

int varlink_client_send(VarlinkClient *c, const char *method, json_object *parameters, VarlinkCallFlags flags,
                        uint64_t timeout_usec) {
        _cleanup_(json_object_putp) json_object *m = json_object_new_object();
        uint64_t deadline = deadline_from_timeout(timeout_usec);
        const char *text;
        size_t len, done = 0;
        int r;

        if (!m)
                return -ENOMEM;
        if (json_add_string(m, "method", method) < 0 ||
            json_add(m, "parameters", parameters ? json_object_get(parameters) : json_object_new_object()) < 0)
                return -ENOMEM;
        if ((flags & VARLINK_CALL_MORE) && json_add_bool(m, "more", true) < 0)
                return -ENOMEM;
        if ((flags & VARLINK_CALL_ONEWAY) && json_add_bool(m, "oneway", true) < 0)
                return -ENOMEM;

        text = json_object_to_json_string_length(m, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!text)
                return -ENOMEM;
        len++; /* the NUL that ends the message */

        while (done < len) {
                ssize_t n = send(c->fd, text + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return errno == EPIPE ? -ECONNRESET : -errno;
                        r = wait_fd(c->fd, POLLOUT, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                done += (size_t) n;
        }
        return 0;
}

static int client_parse(VarlinkClient *c, size_t len, json_object **ret_parameters, char **ret_error,
                        bool *ret_continues) {
        _cleanup_(json_object_putp) json_object *m = NULL;
        json_object *p = NULL, *e = NULL, *k = NULL;
        _cleanup_free_ char *error = NULL;

        if (!c->tokener) {
                c->tokener = json_tokener_new_ex(VARLINK_JSON_DEPTH_MAX * 2);
                if (!c->tokener)
                        return -ENOMEM;
                json_tokener_set_flags(c->tokener, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        } else
                json_tokener_reset(c->tokener);

        m = json_tokener_parse_ex(c->tokener, c->input, (int) len);
        if (!m || json_tokener_get_error(c->tokener) != json_tokener_success ||
            !json_object_is_type(m, json_type_object))
                return -EBADMSG;

        if (json_object_object_get_ex(m, "parameters", &p) && !json_object_is_type(p, json_type_null) &&
            !json_object_is_type(p, json_type_object))
                return -EBADMSG;
        if (json_object_object_get_ex(m, "error", &e)) {
                if (!json_object_is_type(e, json_type_string))
                        return -EBADMSG;
                error = strdup(json_object_get_string(e));
                if (!error)
                        return -ENOMEM;
        }
        if (json_object_object_get_ex(m, "continues", &k) && !json_object_is_type(k, json_type_boolean))
                return -EBADMSG;

        *ret_parameters = p && json_object_is_type(p, json_type_object) ? json_object_get(p) : json_object_new_object();
        if (!*ret_parameters)
                return -ENOMEM;
        if (ret_error)
                *ret_error = TAKE_PTR(error);
        if (ret_continues)
                *ret_continues = k && json_object_get_boolean(k);
        return 0;
}

int varlink_client_read_reply(VarlinkClient *c, uint64_t timeout_usec, json_object **ret_parameters, char **ret_error,
                              bool *ret_continues) {
        uint64_t deadline = deadline_from_timeout(timeout_usec);
        size_t scanned = 0;
        int r;

        for (;;) {
                char *end = c->input_size > scanned ? memchr(c->input + scanned, 0, c->input_size - scanned) : NULL;
                if (end) {
                        size_t len = (size_t) (end - c->input);
                        r = client_parse(c, len, ret_parameters, ret_error, ret_continues);
                        memmove(c->input, end + 1, c->input_size - len - 1);
                        c->input_size -= len + 1;
                        return r;
                }
                scanned = c->input_size;
                if (c->input_size > VARLINK_CLIENT_REPLY_SIZE_MAX)
                        return -EMSGSIZE;

                if (c->input_alloc - c->input_size < 64 * 1024) {
                        size_t want = MAX(c->input_alloc * 2, c->input_size + 64 * 1024);
                        char *p = realloc(c->input, want);
                        if (!p)
                                return -ENOMEM;
                        c->input = p;
                        c->input_alloc = want;
                }

                ssize_t n = recv(c->fd, c->input + c->input_size, c->input_alloc - c->input_size, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        r = wait_fd(c->fd, POLLIN, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n == 0)
                        return -ECONNRESET;
                c->input_size += (size_t) n;
        }
}

int varlink_client_call(VarlinkClient *c, const char *method, json_object *parameters, uint64_t timeout_usec,
                        json_object **ret_parameters, char **ret_error) {
        uint64_t deadline = deadline_from_timeout(timeout_usec);
        int r;

        r = varlink_client_send(c, method, parameters, 0, timeout_usec);
        if (r < 0)
                return r;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        return varlink_client_read_reply(c,
                                         deadline == USEC_INFINITY ? USEC_INFINITY
                                         : deadline > now          ? deadline - now
                                                                   : 0,
                                         ret_parameters, ret_error, NULL);
}
