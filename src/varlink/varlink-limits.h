/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

/* Limits on what a client controls. */
#define VARLINK_MESSAGE_SIZE_MAX        (UINT64_C(1) << 20)  /* bytes in one message, NUL excluded */
#define VARLINK_OUTPUT_BUFFER_MAX       (UINT64_C(16) << 20) /* unread replies queued for one client */
#define VARLINK_CONNECTIONS_MAX         4096U                /* open connections, all users */
#define VARLINK_CONNECTIONS_PER_UID_MAX 128U                 /* open connections of one non-root UID */
#define VARLINK_JSON_DEPTH_MAX          32                   /* nesting of arrays and objects */
