/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "strutil.h"
#include "timeutil.h"
#include "varlink-idl.h"
#include "varlink-service.h"
#include "varlink.h"

#define READ_CHUNK_SIZE   (64U * 1024U)
#define ACCEPT_BURST_MAX  64U
#define ACCEPT_RETRY_USEC (100 * USEC_PER_MSEC)

typedef struct Interface {
        VarlinkIdlInterface *idl;
        const char *description;
        const VarlinkMethod *methods;
        size_t n_methods;
        void *userdata;
} Interface;

typedef struct Listener {
        VarlinkServer *server;
        int fd;
        char *path; /* the socket file we made, removed when we go */
        sd_event_source *io_source;
        sd_event_source *retry_source;
} Listener;

typedef struct UidCount {
        uid_t uid;
        unsigned n;
} UidCount;

struct VarlinkServer {
        sd_event *event;
        VarlinkServerInfo info;

        Interface *interfaces;
        size_t n_interfaces;

        Listener **listeners;
        size_t n_listeners;

        VarlinkConnection *connections;
        unsigned n_connections;
        UidCount *uids;
        size_t n_uids;

        VarlinkServerStats stats;

        VarlinkCallObserver observer;
        void *observer_userdata;
        VarlinkConnectionsFunc connections_func;
        void *connections_userdata;
        bool freeing;
};

struct VarlinkConnection {
        unsigned n_ref;
        VarlinkServer *server; /* NULL once closed */
        VarlinkConnection *prev, *next;

        int fd;
        sd_event_source *io_source;
        sd_event_source *defer_source;
        uid_t uid;
        pid_t pid;

        char *input;
        size_t input_size, input_alloc, input_scanned;
        char *output;
        size_t output_size, output_alloc;

        bool read_eof;
        bool hangup;

        json_tokener *tokener;
        VarlinkCall *current; /* the call being answered; later calls wait for it */
};

struct VarlinkCall {
        unsigned n_ref;
        VarlinkConnection *connection; /* NULL when done or the client is gone */
        char *method;
        bool more, oneway, done;
        uid_t uid;
        pid_t pid;
        VarlinkDisconnectFunc disconnect_func;
        void *disconnect_userdata;
};

static void connection_close(VarlinkConnection *c);
static void connection_schedule(VarlinkConnection *c);

/* --- connections --------------------------------------------------------- */

static UidCount *server_uid_count(VarlinkServer *s, uid_t uid, bool create) {
        for (size_t i = 0; i < s->n_uids; i++)
                if (s->uids[i].uid == uid)
                        return &s->uids[i];
        if (!create)
                return NULL;

        UidCount *n = reallocarray(s->uids, s->n_uids + 1, sizeof(UidCount));
        if (!n)
                return NULL;
        s->uids = n;
        s->uids[s->n_uids] = (UidCount){ .uid = uid };
        return &s->uids[s->n_uids++];
}

static void server_uid_release(VarlinkServer *s, uid_t uid) {
        UidCount *u = server_uid_count(s, uid, false);

        if (!u)
                return;
        if (--u->n == 0)
                *u = s->uids[--s->n_uids];
}

static VarlinkConnection *connection_ref(VarlinkConnection *c) {
        c->n_ref++;
        return c;
}

static VarlinkConnection *connection_unref(VarlinkConnection *c) {
        if (!c || --c->n_ref > 0)
                return NULL;

        free(c->input);
        free(c->output);
        if (c->tokener)
                json_tokener_free(c->tokener);
        free(c);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkConnection *, connection_unref);

static bool connection_has_message(const VarlinkConnection *c) {
        return c->input_size > 0 && memchr(c->input, 0, c->input_size);
}

static void connection_update_events(VarlinkConnection *c) {
        uint32_t events = 0;
        bool want_read = !c->read_eof && c->input_size <= VARLINK_MESSAGE_SIZE_MAX;

        /* While a call is being answered, stop reading once the next call is
         * complete in the buffer: the client waits for us, not the reverse. */
        if (want_read && c->current && connection_has_message(c))
                want_read = false;
        /* Level-triggered: ask for the peer's half-close only while we read, or it fires without end. */
        if (want_read)
                events |= EPOLLIN | EPOLLRDHUP;
        if (c->output_size > 0)
                events |= EPOLLOUT;
        (void) sd_event_source_set_io_events(c->io_source, events);
}

static int connection_flush(VarlinkConnection *c) {
        while (c->output_size > 0) {
                ssize_t n = send(c->fd, c->output, c->output_size, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                memmove(c->output, c->output + n, c->output_size - (size_t) n);
                c->output_size -= (size_t) n;
        }
        return 0;
}

static int connection_enqueue(VarlinkConnection *c, json_object *message) {
        const char *text;
        size_t len;

        text = json_object_to_json_string_length(message, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                 &len);
        if (!text)
                return -ENOMEM;
        if (c->output_size + len + 1 > VARLINK_OUTPUT_BUFFER_MAX)
                return -ENOBUFS;
        if (c->output_size + len + 1 > c->output_alloc) {
                size_t want = MAX(c->output_alloc * 2, c->output_size + len + 1);
                char *n = realloc(c->output, want);
                if (!n)
                        return -ENOMEM;
                c->output = n;
                c->output_alloc = want;
        }
        memcpy(c->output + c->output_size, text, len + 1); /* with the NUL that ends the message */
        c->output_size += len + 1;
        return 0;
}

/* Drop everything the connection holds and forget it; callers may still hold references. */
static void connection_close(VarlinkConnection *c) {
        VarlinkServer *s = c->server;
        VarlinkCall *call;

        if (!s)
                return;

        c->server = NULL;
        if (c->prev)
                c->prev->next = c->next;
        else
                s->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_connections--;
        if (c->uid != 0)
                server_uid_release(s, c->uid);

        c->io_source = sd_event_source_disable_unref(c->io_source);
        c->defer_source = sd_event_source_disable_unref(c->defer_source);
        c->fd = safe_close(c->fd);

        call = TAKE_PTR(c->current);
        if (call) {
                call->connection = NULL;
                if (call->disconnect_func && !call->done)
                        call->disconnect_func(call, call->disconnect_userdata);
                varlink_call_unref(call);
        }

        if (s->connections_func && !s->freeing)
                s->connections_func(s, s->n_connections, s->connections_userdata);

        connection_unref(c);
}

static void connection_protocol_error(VarlinkConnection *c) {
        if (c->server)
                c->server->stats.protocol_errors++;
        /* Answers to the calls before the broken one are owed: send what the socket takes now. */
        (void) connection_flush(c);
        connection_close(c);
}

/* --- calls ---------------------------------------------------------------- */

VarlinkCall *varlink_call_ref(VarlinkCall *call) {
        if (call)
                call->n_ref++;
        return call;
}

VarlinkCall *varlink_call_unref(VarlinkCall *call) {
        if (!call || --call->n_ref > 0)
                return NULL;
        free(call->method);
        free(call);
        return NULL;
}

const char *varlink_call_method(const VarlinkCall *call) {
        return call->method;
}

bool varlink_call_wants_more(const VarlinkCall *call) {
        return call->more;
}

bool varlink_call_is_oneway(const VarlinkCall *call) {
        return call->oneway;
}

bool varlink_call_is_connected(const VarlinkCall *call) {
        return call->connection && call->connection->server;
}

bool varlink_call_is_done(const VarlinkCall *call) {
        return call->done;
}

uid_t varlink_call_peer_uid(const VarlinkCall *call) {
        return call->uid;
}

pid_t varlink_call_peer_pid(const VarlinkCall *call) {
        return call->pid;
}

void varlink_call_set_disconnect_callback(VarlinkCall *call, VarlinkDisconnectFunc func, void *userdata) {
        call->disconnect_func = func;
        call->disconnect_userdata = userdata;
}

/* The call is over for its connection: let the connection go on with the next one. */
static void call_detach(VarlinkCall *call) {
        VarlinkConnection *c = call->connection;

        if (!c)
                return;
        call->connection = NULL;
        if (c->current == call) {
                c->current = NULL;
                connection_schedule(c);
                varlink_call_unref(call);
        }
}

static int call_send(VarlinkCall *call, const char *error, json_object *parameters, bool continues) {
        _cleanup_(json_object_putp) json_object *params = parameters, *message = NULL;
        VarlinkConnection *c = call->connection;
        int r;

        if (call->done)
                return -ESTALE;
        if (continues && !call->more)
                return -EINVAL;
        if (!continues)
                call->done = true;

        if (!c || !c->server || call->oneway) {
                if (!continues)
                        call_detach(call);
                return 0;
        }

        if (!params) {
                params = json_object_new_object();
                if (!params)
                        return -ENOMEM;
        }
        message = json_object_new_object();
        if (!message)
                return -ENOMEM;
        if (json_object_object_add(message, "parameters", TAKE_PTR(params)) < 0)
                return -ENOMEM;
        if (continues && json_object_object_add(message, "continues", json_object_new_boolean(true)) < 0)
                return -ENOMEM;
        if (error && json_object_object_add(message, "error", json_object_new_string(error)) < 0)
                return -ENOMEM;

        r = connection_enqueue(c, message);
        if (!continues)
                call_detach(call);
        if (r == -ENOBUFS) {
                /* The client does not read its replies: let it go. */
                connection_close(c);
                return 0;
        }
        if (r < 0)
                return r;

        connection_schedule(c);
        return 0;
}

int varlink_call_reply(VarlinkCall *call, json_object *parameters) {
        return call_send(call, NULL, parameters, false);
}

int varlink_call_notify(VarlinkCall *call, json_object *parameters) {
        return call_send(call, NULL, parameters, true);
}

int varlink_call_error(VarlinkCall *call, const char *error, json_object *parameters) {
        return call_send(call, error, parameters, false);
}

/* Reply (error == NULL) or fail with parameters of one string field. */
static int call_send_string(VarlinkCall *call, const char *error, const char *field, const char *value) {
        json_object *p = json_object_new_object();

        if (!p || json_object_object_add(p, field, json_object_new_string(value)) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        return varlink_call_error(call, error, p);
}

int varlink_call_error_invalid_parameter(VarlinkCall *call, const char *parameter) {
        return call_send_string(call, VARLINK_ERROR_INVALID_PARAMETER, "parameter", parameter);
}

/* --- dispatch ------------------------------------------------------------- */

static const Interface *server_find_interface(const VarlinkServer *s, const char *name, size_t len) {
        for (size_t i = 0; i < s->n_interfaces; i++) {
                const char *n = varlink_idl_interface_name(s->interfaces[i].idl);
                if (strlen(n) == len && strneq(n, name, len))
                        return &s->interfaces[i];
        }
        return NULL;
}

static const VarlinkMethod *interface_find_method(const Interface *iface, const char *name) {
        for (size_t i = 0; i < iface->n_methods; i++)
                if (streq(iface->methods[i].name, name))
                        return &iface->methods[i];
        return NULL;
}

static int json_get_flag(json_object *message, const char *key, bool *ret) {
        json_object *v;

        if (!json_object_object_get_ex(message, key, &v) || json_object_is_type(v, json_type_null)) {
                *ret = false;
                return 0;
        }
        if (!json_object_is_type(v, json_type_boolean))
                return -EBADMSG;
        *ret = json_object_get_boolean(v);
        return 0;
}

/* Check one call and hand it to its handler. Returns < 0 only when the
 * connection must be dropped. */
static int connection_dispatch(VarlinkConnection *c, json_object *message) {
        VarlinkServer *s = c->server;
        _cleanup_(varlink_call_unrefp) VarlinkCall *call = NULL;
        _cleanup_(json_object_putp) json_object *empty = NULL;
        json_object *m, *params = NULL;
        const Interface *iface;
        const VarlinkMethod *method;
        const char *name, *dot, *bad = NULL;
        bool more, oneway, upgrade;
        int r;

        if (!json_object_is_type(message, json_type_object))
                return -EBADMSG;
        if (!json_object_object_get_ex(message, "method", &m) || !json_object_is_type(m, json_type_string))
                return -EBADMSG;
        if (json_object_object_get_ex(message, "parameters", &params) && !json_object_is_type(params, json_type_null) &&
            !json_object_is_type(params, json_type_object))
                return -EBADMSG;
        if (json_get_flag(message, "more", &more) < 0 || json_get_flag(message, "oneway", &oneway) < 0 ||
            json_get_flag(message, "upgrade", &upgrade) < 0)
                return -EBADMSG;
        if (more && oneway)
                return -EBADMSG;

        if (!params || json_object_is_type(params, json_type_null)) {
                params = empty = json_object_new_object();
                if (!params)
                        return -ENOMEM;
        }

        name = json_object_get_string(m);
        call = calloc(1, sizeof(VarlinkCall));
        if (!call)
                return -ENOMEM;
        call->n_ref = 1;
        call->method = strdup(name);
        if (!call->method)
                return -ENOMEM;
        call->more = more;
        call->oneway = oneway;
        call->uid = c->uid;
        call->pid = c->pid;
        call->connection = c;
        c->current = varlink_call_ref(call);
        s->stats.calls++;

        dot = strrchr(name, '.');
        if (!dot || dot == name || dot[1] == '\0')
                return call_send_string(call, VARLINK_ERROR_METHOD_NOT_FOUND, "method", name);

        iface = server_find_interface(s, name, (size_t) (dot - name));
        if (!iface) {
                _cleanup_free_ char *in = strndup(name, (size_t) (dot - name));
                if (!in)
                        return -ENOMEM;
                return call_send_string(call, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", in);
        }

        method = interface_find_method(iface, dot + 1);
        if (!method)
                return call_send_string(call, VARLINK_ERROR_METHOD_NOT_FOUND, "method", name);

        if (upgrade)
                return varlink_call_error_invalid_parameter(call, "upgrade");

        if ((method->flags & VARLINK_METHOD_ROOT_ONLY) && c->uid != 0)
                return varlink_call_error(call, VARLINK_ERROR_PERMISSION_DENIED, NULL);

        r = varlink_idl_validate_method_input(varlink_idl_interface_find_method(iface->idl, method->name), params,
                                              &bad);
        if (r < 0)
                return varlink_call_error_invalid_parameter(call, bad ?: "parameters");

        if ((method->flags & VARLINK_METHOD_REQUIRES_MORE) && !more)
                return varlink_call_error(call, VARLINK_ERROR_EXPECTED_MORE, NULL);

        if (s->observer && iface != &s->interfaces[0])
                s->observer(call, s->observer_userdata);

        if (!method->func)
                return call_send_string(call, VARLINK_ERROR_METHOD_NOT_IMPLEMENTED, "method", name);

        r = method->func(call, params, iface->userdata);
        if (r < 0)
                return r;

        /* Nobody waits for the answer of a oneway call: go on with the next one. */
        if (oneway && !call->done && call->connection)
                call_detach(call);
        return 0;
}

static int connection_parse_one(VarlinkConnection *c) {
        _cleanup_(json_object_putp) json_object *message = NULL;
        char *end;
        size_t len, parsed;
        int r;

        if (c->input_size == c->input_scanned)
                return 0;
        end = memchr(c->input + c->input_scanned, 0, c->input_size - c->input_scanned);
        if (!end) {
                c->input_scanned = c->input_size;
                if (c->input_size > VARLINK_MESSAGE_SIZE_MAX)
                        return -EMSGSIZE;
                return 0;
        }
        len = (size_t) (end - c->input);
        if (len > VARLINK_MESSAGE_SIZE_MAX)
                return -EMSGSIZE;

        if (!c->tokener) {
                c->tokener = json_tokener_new_ex(VARLINK_JSON_DEPTH_MAX);
                if (!c->tokener)
                        return -ENOMEM;
                json_tokener_set_flags(c->tokener, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        } else
                json_tokener_reset(c->tokener);

        message = json_tokener_parse_ex(c->tokener, c->input, (int) len);
        if (!message || json_tokener_get_error(c->tokener) != json_tokener_success)
                return -EBADMSG;
        parsed = json_tokener_get_parse_end(c->tokener);
        for (; parsed < len; parsed++)
                if (!strchr(" \t\r\n", c->input[parsed]))
                        return -EBADMSG;

        /* The message is consumed before dispatch: a handler may reply at once. */
        memmove(c->input, end + 1, c->input_size - len - 1);
        c->input_size -= len + 1;
        c->input_scanned = 0;

        r = connection_dispatch(c, message);
        return r < 0 ? r : 1;
}

static int connection_read(VarlinkConnection *c) {
        while (!c->read_eof && c->input_size <= VARLINK_MESSAGE_SIZE_MAX) {
                ssize_t n;

                if (c->input_alloc - c->input_size < READ_CHUNK_SIZE) {
                        size_t want = c->input_size + READ_CHUNK_SIZE;
                        char *p = realloc(c->input, want);
                        if (!p)
                                return -ENOMEM;
                        c->input = p;
                        c->input_alloc = want;
                }

                n = recv(c->fd, c->input + c->input_size, READ_CHUNK_SIZE, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                if (n == 0) {
                        c->read_eof = true;
                        break;
                }
                c->input_size += (size_t) n;
                if (c->current && connection_has_message(c))
                        break;
        }
        return 0;
}

/* Do all the connection can do now: answer buffered calls, write replies,
 * and close it when the client is gone or done. */
static void connection_process(VarlinkConnection *c) {
        _unused_ _cleanup_(connection_unrefp) VarlinkConnection *ref = connection_ref(c);
        int r;

        while (c->server && !c->current) {
                r = connection_parse_one(c);
                if (r < 0) {
                        if (r == -EBADMSG || r == -EMSGSIZE)
                                connection_protocol_error(c);
                        else
                                connection_close(c);
                        return;
                }
                if (r == 0)
                        break;
        }
        if (!c->server)
                return;

        r = connection_flush(c);
        if (r < 0 || c->hangup) {
                connection_close(c);
                return;
        }
        if (c->read_eof && !c->current && c->output_size == 0) {
                /* The client has said all it will. A part of a message left over is a broken message. */
                if (c->input_size > 0)
                        connection_protocol_error(c);
                else
                        connection_close(c);
                return;
        }
        connection_update_events(c);
}

static int connection_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        VarlinkConnection *c = userdata;

        if (revents & (EPOLLHUP | EPOLLERR))
                c->hangup = true;
        if (revents & (EPOLLIN | EPOLLRDHUP | EPOLLHUP) && connection_read(c) < 0) {
                connection_close(c);
                return 0;
        }
        connection_process(c);
        return 0;
}

static int connection_on_defer(sd_event_source *source, void *userdata) {
        connection_process(userdata);
        return 0;
}

static void connection_schedule(VarlinkConnection *c) {
        if (c->server && c->defer_source)
                (void) sd_event_source_set_enabled(c->defer_source, SD_EVENT_ONESHOT);
}

int varlink_server_add_connection(VarlinkServer *s, int fd) {
        _cleanup_close_ int cfd = fd;
        VarlinkConnection *c;
        struct ucred cred = { .uid = (uid_t) -1 };
        socklen_t l = sizeof(cred);
        int flags, r;

        flags = fcntl(cfd, F_GETFL);
        if (flags < 0 || fcntl(cfd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &l) < 0 || l != sizeof(cred))
                cred = (struct ucred){ .uid = (uid_t) -1 };

        if (s->n_connections >= VARLINK_CONNECTIONS_MAX) {
                s->stats.connections_refused++;
                return -EMFILE;
        }
        if (cred.uid != 0) {
                UidCount *u = server_uid_count(s, cred.uid, true);
                if (!u)
                        return -ENOMEM;
                if (u->n >= VARLINK_CONNECTIONS_PER_UID_MAX) {
                        s->stats.connections_refused++;
                        return -EUSERS;
                }
                u->n++;
        }

        c = calloc(1, sizeof(VarlinkConnection));
        if (!c) {
                if (cred.uid != 0)
                        server_uid_release(s, cred.uid);
                return -ENOMEM;
        }
        c->n_ref = 1;
        c->server = s;
        c->uid = cred.uid;
        c->pid = cred.pid;
        c->fd = TAKE_FD(cfd);
        c->next = s->connections;
        if (c->next)
                c->next->prev = c;
        s->connections = c;
        s->n_connections++;
        s->stats.connections_total++;

        r = sd_event_add_io(s->event, &c->io_source, c->fd, EPOLLIN | EPOLLRDHUP, connection_on_io, c);
        if (r >= 0)
                r = sd_event_add_defer(s->event, &c->defer_source, connection_on_defer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->defer_source, SD_EVENT_OFF);
        if (r < 0) {
                connection_close(c);
                return r;
        }

        if (s->connections_func)
                s->connections_func(s, s->n_connections, s->connections_userdata);
        return 0;
}

/* --- listeners ------------------------------------------------------------ */

static int listener_on_retry(sd_event_source *source, uint64_t usec, void *userdata) {
        Listener *l = userdata;

        l->retry_source = sd_event_source_disable_unref(l->retry_source);
        (void) sd_event_source_set_enabled(l->io_source, SD_EVENT_ON);
        return 0;
}

static int listener_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Listener *l = userdata;

        for (unsigned i = 0; i < ACCEPT_BURST_MAX; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (cfd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* Out of resources: pause accepting instead of spinning. */
                                (void) sd_event_source_set_enabled(l->io_source, SD_EVENT_OFF);
                                if (!l->retry_source)
                                        (void) sd_event_add_time_relative(l->server->event, &l->retry_source,
                                                                          CLOCK_MONOTONIC, ACCEPT_RETRY_USEC, 0,
                                                                          listener_on_retry, l);
                        }
                        return 0;
                }
                (void) varlink_server_add_connection(l->server, cfd);
        }
        return 0;
}

int varlink_server_listen_fd(VarlinkServer *s, int fd) {
        _cleanup_close_ int lfd = fd;
        _cleanup_free_ Listener *l = NULL;
        Listener **n;
        int flags, r;

        flags = fcntl(lfd, F_GETFL);
        if (flags < 0 || fcntl(lfd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;

        l = calloc(1, sizeof(Listener));
        if (!l)
                return -ENOMEM;
        n = reallocarray(s->listeners, s->n_listeners + 1, sizeof(Listener *));
        if (!n)
                return -ENOMEM;
        s->listeners = n;

        l->server = s;
        l->fd = lfd;
        r = sd_event_add_io(s->event, &l->io_source, lfd, EPOLLIN, listener_on_io, l);
        if (r < 0)
                return r;
        TAKE_FD(lfd);
        s->listeners[s->n_listeners++] = TAKE_PTR(l);
        return 0;
}

static int mkdir_parents(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *slash = strchr(p + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *slash = '/';
        }
        return 0;
}

int varlink_server_listen_address(VarlinkServer *s, const char *address, mode_t mode) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF, probe = -EBADF;
        _cleanup_free_ char *copy = NULL;
        const char *path;
        int r;

        r = varlink_address_to_path(address, &path);
        if (r < 0)
                return r;
        if (path[0] != '/')
                return -EINVAL;
        memcpy(sa.sun_path, path, strlen(path));
        copy = strdup(path);
        if (!copy)
                return -ENOMEM;

        r = mkdir_parents(path, 0755);
        if (r < 0)
                return r;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (errno != EADDRINUSE)
                        return -errno;
                /* Someone's socket file: take it over only if nobody answers there. */
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (probe < 0)
                        return -errno;
                if (connect(probe, (struct sockaddr *) &sa, sizeof(sa)) >= 0 || errno == EAGAIN)
                        return -EADDRINUSE;
                if (errno != ECONNREFUSED)
                        return -errno;
                if (unlink(path) < 0 && errno != ENOENT)
                        return -errno;
                if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        return -errno;
        }
        if (chmod(path, mode) < 0 || listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                (void) unlink(path);
                return r;
        }

        r = varlink_server_listen_fd(s, TAKE_FD(fd));
        if (r < 0) {
                (void) unlink(path);
                return r;
        }
        s->listeners[s->n_listeners - 1]->path = TAKE_PTR(copy);
        return 0;
}

/* --- org.varlink.service -------------------------------------------------- */

static int method_get_info(VarlinkCall *call, json_object *parameters, void *userdata) {
        VarlinkServer *s = userdata;
        _cleanup_(json_object_putp) json_object *p = json_object_new_object(), *ifaces = json_object_new_array();

        if (!p || !ifaces)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_interfaces; i++)
                if (json_object_array_add(ifaces,
                                          json_object_new_string(varlink_idl_interface_name(s->interfaces[i].idl))) < 0)
                        return -ENOMEM;

        if (json_object_object_add(p, "vendor", json_object_new_string(s->info.vendor)) < 0 ||
            json_object_object_add(p, "product", json_object_new_string(s->info.product)) < 0 ||
            json_object_object_add(p, "version", json_object_new_string(s->info.version)) < 0 ||
            json_object_object_add(p, "url", json_object_new_string(s->info.url)) < 0 ||
            json_object_object_add(p, "interfaces", TAKE_PTR(ifaces)) < 0)
                return -ENOMEM;
        return varlink_call_reply(call, TAKE_PTR(p));
}

static int method_get_interface_description(VarlinkCall *call, json_object *parameters, void *userdata) {
        VarlinkServer *s = userdata;
        const char *name = json_object_get_string(json_object_object_get(parameters, "interface"));
        const Interface *iface = server_find_interface(s, name, strlen(name));

        if (!iface)
                return call_send_string(call, VARLINK_ERROR_INTERFACE_NOT_FOUND, "interface", name);
        return call_send_string(call, NULL, "description", iface->description);
}

static const VarlinkMethod service_methods[] = {
        { "GetInfo", method_get_info, 0 },
        { "GetInterfaceDescription", method_get_interface_description, 0 },
};

/* --- server --------------------------------------------------------------- */

int varlink_server_add_interface(VarlinkServer *s, const char *description, const VarlinkMethod *methods,
                                 size_t n_methods, void *userdata) {
        _cleanup_(varlink_idl_interface_freep) VarlinkIdlInterface *idl = NULL;
        Interface *n;
        int r;

        r = varlink_idl_parse(description, &idl, NULL, NULL);
        if (r < 0)
                return r;
        if (server_find_interface(s, varlink_idl_interface_name(idl), strlen(varlink_idl_interface_name(idl))))
                return -EEXIST;
        /* The table and the description must name the same methods. */
        if (varlink_idl_interface_n_methods(idl) != n_methods)
                return -EINVAL;
        for (size_t i = 0; i < n_methods; i++)
                if (!varlink_idl_interface_find_method(idl, methods[i].name))
                        return -EINVAL;

        n = reallocarray(s->interfaces, s->n_interfaces + 1, sizeof(Interface));
        if (!n)
                return -ENOMEM;
        s->interfaces = n;
        s->interfaces[s->n_interfaces++] = (Interface){
                .idl = TAKE_PTR(idl),
                .description = description,
                .methods = methods,
                .n_methods = n_methods,
                .userdata = userdata,
        };
        return 0;
}

int varlink_server_new(VarlinkServer **ret, sd_event *event, const VarlinkServerInfo *info) {
        _cleanup_(varlink_server_freep) VarlinkServer *s = NULL;
        int r;

        s = calloc(1, sizeof(VarlinkServer));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->info = *info;

        r = varlink_server_add_interface(s, varlink_service_interface, service_methods, ELEMENTSOF(service_methods), s);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

VarlinkServer *varlink_server_free(VarlinkServer *s) {
        if (!s)
                return NULL;

        s->freeing = true;
        while (s->connections)
                connection_close(s->connections);
        for (size_t i = 0; i < s->n_listeners; i++) {
                sd_event_source_disable_unref(s->listeners[i]->io_source);
                sd_event_source_disable_unref(s->listeners[i]->retry_source);
                safe_close(s->listeners[i]->fd);
                if (s->listeners[i]->path)
                        (void) unlink(s->listeners[i]->path);
                free(s->listeners[i]->path);
                free(s->listeners[i]);
        }
        free(s->listeners);
        for (size_t i = 0; i < s->n_interfaces; i++)
                varlink_idl_interface_free(s->interfaces[i].idl);
        free(s->interfaces);
        free(s->uids);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

void varlink_server_set_observer(VarlinkServer *s, VarlinkCallObserver func, void *userdata) {
        s->observer = func;
        s->observer_userdata = userdata;
}

void varlink_server_set_connections_callback(VarlinkServer *s, VarlinkConnectionsFunc func, void *userdata) {
        s->connections_func = func;
        s->connections_userdata = userdata;
}

unsigned varlink_server_n_connections(const VarlinkServer *s) {
        return s->n_connections;
}

void varlink_server_get_stats(const VarlinkServer *s, VarlinkServerStats *ret) {
        *ret = s->stats;
}
