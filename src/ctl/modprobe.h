/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The modprobe shim: modloadctl run as "modprobe" speaks kmod's modprobe
 * command line and output, and hands the work to modloadd (or does it in
 * this process where the daemon cannot be reached or must not be asked).
 * Returns the exit status. */
int modprobe_main(int argc, char *argv[]);
