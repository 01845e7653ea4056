/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/* Compression formats a kernel module file may come in. The string names are the ones the kernel
 * prints in /sys/module/compression for the formats it can decompress itself. */
typedef enum CompressionType {
        COMPRESSION_NONE,
        COMPRESSION_XZ,
        COMPRESSION_ZSTD,
        COMPRESSION_GZIP,
        _COMPRESSION_MAX,
        _COMPRESSION_INVALID = -EINVAL,
} CompressionType;

/* Size of the buffers the streaming decoders read into and write from. */
#define DECOMPRESS_CHUNK_SIZE (128U * 1024U)

/* Memory liblzma may use for one xz stream. xz -9 needs about 65 MiB to decode; the kernel's own
 * module compression uses a 1 MiB dictionary. */
#define DECOMPRESS_XZ_MEMLIMIT (256U * 1024U * 1024U)

/* Largest number of leading bytes compression_detect() ever looks at. */
#define COMPRESSION_MAGIC_MAX 6U

/* "none", "xz", "zstd", "gzip"; NULL for values out of range. */
const char *compression_to_string(CompressionType t);

/* Inverse of compression_to_string(); also accepts "gz". Returns -EINVAL for NULL or unknown
 * names. */
CompressionType compression_from_string(const char *s);

/* Identify the format from the first bytes of a file (never from its name). A buffer too short to
 * hold a complete magic is reported as COMPRESSION_NONE. zstd skippable frames count as zstd. */
CompressionType compression_detect(const void *buf, size_t size);

/* Read in_fd from its current offset to EOF, decode it as `type` and write the result to out_fd,
 * going through fixed-size buffers so the output is never held in memory as a whole. Short writes
 * and EINTR are handled. Concatenated xz streams (with stream padding), concatenated gzip members
 * and multiple zstd frames (including skippable ones) are accepted; anything after the last
 * complete stream/member/frame that is not another one is rejected as corrupt, as is empty input
 * for the compressed formats. COMPRESSION_NONE copies the bytes unchanged.
 *
 * Returns 0 and stores the number of bytes written in *ret_size (if non-NULL), or:
 *   -EOPNOTSUPP  type is not one of the formats above
 *   -EBADF       in_fd or out_fd is negative
 *   -EBADMSG     input is corrupt, truncated (truncation is not told apart from corruption),
 *                empty, or followed by trailing garbage
 *   -EFBIG       the output would exceed max_size bytes (exactly max_size is fine); whatever
 *                was written before noticing stays in out_fd
 *   -ENOMEM      allocation failed, or an xz stream needs more than DECOMPRESS_XZ_MEMLIMIT
 *   -EIO         write() made no progress
 *   other        the negative errno of a failed read() or write()
 * On failure out_fd may hold partial output. */
int decompress_fd_to_fd(CompressionType type, int in_fd, int out_fd, uint64_t max_size, uint64_t *ret_size);

/* Create a memfd named after `name` (truncated to what the kernel allows; NULL means "module"),
 * decompress in_fd into it as decompress_fd_to_fd() does, seal it against any change
 * (F_SEAL_WRITE|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL), rewind it and return it in *ret_fd. Where
 * the kernel supports it the memfd is also created non-executable (MFD_NOEXEC_SEAL). Same errors
 * as decompress_fd_to_fd(), plus those of memfd_create() and fcntl(F_ADD_SEALS). */
int decompress_to_sealed_memfd(CompressionType type, int in_fd, const char *name, uint64_t max_size, int *ret_fd,
                               uint64_t *ret_size);
