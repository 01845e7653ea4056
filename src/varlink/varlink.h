/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A varlink server on sd-event: NUL-framed JSON over AF_UNIX stream sockets.
 *
 * The server owns listening sockets and connections. Each connection
 * dispatches one call at a time, in the order the calls arrived; a handler
 * may answer at once or keep the VarlinkCall (with a reference) and answer
 * later. Calls are checked against the interface description (method known,
 * caller allowed, parameters of the declared names and types) before a
 * handler runs. This is library code: it does not log. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "json-util.h"
#include "macro.h"

#include "varlink-address.h"
#include "varlink-limits.h"

#define VARLINK_ERROR_INTERFACE_NOT_FOUND    "org.varlink.service.InterfaceNotFound"
#define VARLINK_ERROR_METHOD_NOT_FOUND       "org.varlink.service.MethodNotFound"
#define VARLINK_ERROR_METHOD_NOT_IMPLEMENTED "org.varlink.service.MethodNotImplemented"
#define VARLINK_ERROR_INVALID_PARAMETER      "org.varlink.service.InvalidParameter"
#define VARLINK_ERROR_PERMISSION_DENIED      "org.varlink.service.PermissionDenied"
#define VARLINK_ERROR_EXPECTED_MORE          "org.varlink.service.ExpectedMore"

typedef struct VarlinkServer VarlinkServer;
typedef struct VarlinkConnection VarlinkConnection;
typedef struct VarlinkCall VarlinkCall;

/* A handler returns 0 when it has answered or kept the call to answer later,
 * or a negative errno, in which case the connection is closed (the client
 * gets no half-made answer). */
typedef int (*VarlinkMethodFunc)(VarlinkCall *call, json_object *parameters, void *userdata);
/* Called for every call that passed the checks, before its handler. */
typedef void (*VarlinkCallObserver)(VarlinkCall *call, void *userdata);
/* Called when the client of a pending call went away. */
typedef void (*VarlinkDisconnectFunc)(VarlinkCall *call, void *userdata);
/* Called when the number of open connections changed. */
typedef void (*VarlinkConnectionsFunc)(VarlinkServer *server, unsigned n_connections, void *userdata);

typedef enum VarlinkMethodFlags {
        VARLINK_METHOD_ROOT_ONLY = 1 << 0,     /* others get PermissionDenied */
        VARLINK_METHOD_REQUIRES_MORE = 1 << 1, /* a call without "more" gets ExpectedMore */
} VarlinkMethodFlags;

typedef struct VarlinkMethod {
        const char *name;       /* short name, as in the interface description */
        VarlinkMethodFunc func; /* NULL: answered with MethodNotImplemented */
        VarlinkMethodFlags flags;
} VarlinkMethod;

typedef struct VarlinkServerInfo {
        const char *vendor, *product, *version, *url;
} VarlinkServerInfo;

typedef struct VarlinkServerStats {
        uint64_t connections_total;   /* accepted since start */
        uint64_t connections_refused; /* closed at once: over a connection limit */
        uint64_t calls;               /* method calls received (oneway included) */
        uint64_t protocol_errors;     /* connections dropped for a protocol violation */
} VarlinkServerStats;

int varlink_server_new(VarlinkServer **ret, sd_event *event, const VarlinkServerInfo *info);
VarlinkServer *varlink_server_free(VarlinkServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkServer *, varlink_server_free);

/* Add an interface from its description; every method the description
 * declares must be in methods[] (func may be NULL), and vice versa. */
int varlink_server_add_interface(VarlinkServer *s, const char *description, const VarlinkMethod *methods,
                                 size_t n_methods, void *userdata);
void varlink_server_set_observer(VarlinkServer *s, VarlinkCallObserver func, void *userdata);
void varlink_server_set_connections_callback(VarlinkServer *s, VarlinkConnectionsFunc func, void *userdata);

/* Serve a listening socket (taken over; closed with the server). */
int varlink_server_listen_fd(VarlinkServer *s, int fd);
/* Serve one already-connected socket (taken over). */
int varlink_server_add_connection(VarlinkServer *s, int fd);

unsigned varlink_server_n_connections(const VarlinkServer *s);
void varlink_server_get_stats(const VarlinkServer *s, VarlinkServerStats *ret);

/* Calls. Reply functions take over `parameters` (may be NULL for {}).
 * varlink_call_reply() and varlink_call_error() end the call;
 * varlink_call_notify() sends an intermediate reply of a "more" call.
 * Replies to a oneway call, or to a client that is gone, are dropped
 * and still return 0. */
int varlink_call_reply(VarlinkCall *call, json_object *parameters);
int varlink_call_notify(VarlinkCall *call, json_object *parameters);
int varlink_call_error(VarlinkCall *call, const char *error, json_object *parameters);
int varlink_call_error_invalid_parameter(VarlinkCall *call, const char *parameter);

VarlinkCall *varlink_call_ref(VarlinkCall *call);
VarlinkCall *varlink_call_unref(VarlinkCall *call);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkCall *, varlink_call_unref);

const char *varlink_call_method(const VarlinkCall *call); /* full name */
bool varlink_call_wants_more(const VarlinkCall *call);
bool varlink_call_is_oneway(const VarlinkCall *call);
bool varlink_call_is_connected(const VarlinkCall *call);
bool varlink_call_is_done(const VarlinkCall *call);
uid_t varlink_call_peer_uid(const VarlinkCall *call); /* (uid_t) -1 when unknown */
pid_t varlink_call_peer_pid(const VarlinkCall *call); /* 0 when unknown */
void varlink_call_set_disconnect_callback(VarlinkCall *call, VarlinkDisconnectFunc func, void *userdata);

/* Bind and listen on a socket path ("PATH" or "unix:PATH"), creating the
 * parent directory (0755) and chmod'ing the socket to mode. A stale socket
 * file is replaced; -EADDRINUSE when a live server answers there. The file
 * is removed again when the server is freed. */
int varlink_server_listen_address(VarlinkServer *s, const char *address, mode_t mode);
