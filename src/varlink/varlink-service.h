/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Interface descriptions, embedded at build time from the .varlink files. */
extern const char varlink_service_interface[];
extern const char modloadd_manager_interface[];
