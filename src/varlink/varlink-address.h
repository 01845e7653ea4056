/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Address syntax shared by servers and clients: "PATH" or "unix:PATH". */
int varlink_address_to_path(const char *address, const char **ret_path);
