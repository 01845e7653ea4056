/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A blocking varlink client with timeouts, for command-line tools. */

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

typedef struct VarlinkClient VarlinkClient;

typedef enum VarlinkCallFlags {
        VARLINK_CALL_MORE = 1 << 0,
        VARLINK_CALL_ONEWAY = 1 << 1,
} VarlinkCallFlags;

/* The largest reply a client accepts. */
#define VARLINK_CLIENT_REPLY_SIZE_MAX (UINT64_C(16) << 20)

/* Connect to "PATH" or "unix:PATH". Fails at once when nobody listens
 * (-ENOENT, -ECONNREFUSED); waits up to timeout when the listener's queue is full. */
int varlink_client_connect(VarlinkClient **ret, const char *address, uint64_t timeout_usec);
/* Use an already-connected socket (taken over). */
int varlink_client_new_from_fd(VarlinkClient **ret, int fd);
VarlinkClient *varlink_client_free(VarlinkClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(VarlinkClient *, varlink_client_free);

/* Send a call; parameters are borrowed, NULL means {}. */
int varlink_client_send(VarlinkClient *c, const char *method, json_object *parameters, VarlinkCallFlags flags,
                        uint64_t timeout_usec);
/* Read the next reply. On success the caller owns *ret_parameters (never NULL)
 * and *ret_error (NULL unless the reply is an error). -ETIMEDOUT, -ECONNRESET
 * (the server closed the connection), -EBADMSG, -EMSGSIZE on failure. */
int varlink_client_read_reply(VarlinkClient *c, uint64_t timeout_usec, json_object **ret_parameters, char **ret_error,
                              bool *ret_continues);
/* Send one call and read its single reply. */
int varlink_client_call(VarlinkClient *c, const char *method, json_object *parameters, uint64_t timeout_usec,
                        json_object **ret_parameters, char **ret_error);
