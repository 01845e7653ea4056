/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "decompress.h"
#include "macro.h"

/* Not in older libc headers (Linux 6.3). */
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

/* The kernel refuses memfd names longer than this (NAME_MAX minus the "memfd:" prefix). */
#define MEMFD_NAME_MAX 249U

static const char *const compression_table[_COMPRESSION_MAX] = {
        [COMPRESSION_NONE] = "none",
        [COMPRESSION_XZ] = "xz",
        [COMPRESSION_ZSTD] = "zstd",
        [COMPRESSION_GZIP] = "gzip",
};

const char *compression_to_string(CompressionType t) {
        if (t < 0 || t >= _COMPRESSION_MAX)
                return NULL;
        return compression_table[t];
}

CompressionType compression_from_string(const char *s) {
        if (!s)
                return _COMPRESSION_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(compression_table); i++)
                if (streq(s, compression_table[i]))
                        return (CompressionType) i;
        if (streq(s, "gz"))
                return COMPRESSION_GZIP;
        return _COMPRESSION_INVALID;
}

CompressionType compression_detect(const void *buf, size_t size) {
        static const uint8_t xz_magic[] = { 0xfd, '7', 'z', 'X', 'Z', 0x00 };
        static const uint8_t zstd_magic[] = { 0x28, 0xb5, 0x2f, 0xfd };
        static const uint8_t gzip_magic[] = { 0x1f, 0x8b };
        const uint8_t *p = buf;

        if (!p)
                return COMPRESSION_NONE;

        if (size >= sizeof(xz_magic) && memcmp(p, xz_magic, sizeof(xz_magic)) == 0)
                return COMPRESSION_XZ;
        if (size >= sizeof(zstd_magic) && memcmp(p, zstd_magic, sizeof(zstd_magic)) == 0)
                return COMPRESSION_ZSTD;
        /* zstd skippable frame: little-endian 0x184D2A50..0x184D2A5F */
        if (size >= 4 && (p[0] & 0xf0) == 0x50 && p[1] == 0x2a && p[2] == 0x4d && p[3] == 0x18)
                return COMPRESSION_ZSTD;
        if (size >= sizeof(gzip_magic) && memcmp(p, gzip_magic, sizeof(gzip_magic)) == 0)
                return COMPRESSION_GZIP;

        return COMPRESSION_NONE;
}

/* Where decoded bytes go: counts them and enforces the size bound before anything is written. */
typedef struct Sink {
        int fd;
        uint64_t written;
        uint64_t max_size;
} Sink;

static ssize_t read_retry(int fd, void *buf, size_t size) {
        for (;;) {
                ssize_t n = read(fd, buf, size);
                if (n >= 0)
                        return n;
                if (errno != EINTR)
                        return negative_errno();
        }
}

static int sink_write(Sink *sink, const uint8_t *p, size_t size) {
        if (size == 0)
                return 0;
        if (size > sink->max_size - sink->written)
                return -EFBIG;

        sink->written += size;

        while (size > 0) {
                ssize_t k = write(sink->fd, p, size);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return -EIO;
                p += k;
                size -= (size_t) k;
        }

        return 0;
}

static int copy_plain(int in_fd, Sink *sink) {
        _cleanup_free_ uint8_t *buf = NULL;
        int r;

        buf = malloc(DECOMPRESS_CHUNK_SIZE);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                ssize_t n = read_retry(in_fd, buf, DECOMPRESS_CHUNK_SIZE);
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        return 0;

                r = sink_write(sink, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
}

static int xz_error(lzma_ret lr) {
        switch (lr) {
        case LZMA_MEM_ERROR:
        case LZMA_MEMLIMIT_ERROR:
                return -ENOMEM;
        case LZMA_PROG_ERROR:
                return -EINVAL;
        default:
                /* LZMA_FORMAT_ERROR, LZMA_OPTIONS_ERROR, LZMA_DATA_ERROR, LZMA_BUF_ERROR (input
                 * ended early), and anything newer. */
                return -EBADMSG;
        }
}

static void lzma_endp(lzma_stream *s) {
        lzma_end(s);
}

static int decompress_xz(int in_fd, Sink *sink) {
        _cleanup_(lzma_endp) lzma_stream s = LZMA_STREAM_INIT;
        _cleanup_free_ uint8_t *ibuf = NULL, *obuf = NULL;
        lzma_action action = LZMA_RUN;
        lzma_ret lr;
        int r;

        ibuf = malloc(DECOMPRESS_CHUNK_SIZE);
        obuf = malloc(DECOMPRESS_CHUNK_SIZE);
        if (!ibuf || !obuf)
                return -ENOMEM;

        /* LZMA_CONCATENATED: accept several streams back to back (as xz(1) does), and only report
         * the end once LZMA_FINISH tells the decoder no more input follows. Bytes after the last
         * stream that are neither stream padding nor another stream are an error. */
        lr = lzma_stream_decoder(&s, DECOMPRESS_XZ_MEMLIMIT, LZMA_CONCATENATED);
        if (lr != LZMA_OK)
                return xz_error(lr);

        s.next_out = obuf;
        s.avail_out = DECOMPRESS_CHUNK_SIZE;

        for (;;) {
                if (s.avail_in == 0 && action == LZMA_RUN) {
                        ssize_t n = read_retry(in_fd, ibuf, DECOMPRESS_CHUNK_SIZE);
                        if (n < 0)
                                return (int) n;
                        if (n == 0)
                                action = LZMA_FINISH;
                        s.next_in = ibuf;
                        s.avail_in = (size_t) n;
                }

                /* Returns LZMA_BUF_ERROR when called twice without progress, so a truncated
                 * stream cannot spin here. */
                lr = lzma_code(&s, action);

                if (s.avail_out == 0 || lr == LZMA_STREAM_END) {
                        r = sink_write(sink, obuf, DECOMPRESS_CHUNK_SIZE - s.avail_out);
                        if (r < 0)
                                return r;
                        s.next_out = obuf;
                        s.avail_out = DECOMPRESS_CHUNK_SIZE;
                }

                if (lr == LZMA_STREAM_END)
                        return 0;
                if (lr != LZMA_OK)
                        return xz_error(lr);
        }
}

static int zstd_error(size_t z) {
        switch (ZSTD_getErrorCode(z)) {
        case ZSTD_error_memory_allocation:
        case ZSTD_error_frameParameter_windowTooLarge:
                return -ENOMEM;
        default:
                return -EBADMSG;
        }
}

static void zstd_freep(ZSTD_DStream **d) {
        ZSTD_freeDStream(*d);
}

static int decompress_zstd(int in_fd, Sink *sink) {
        _cleanup_(zstd_freep) ZSTD_DStream *d = NULL;
        _cleanup_free_ uint8_t *ibuf = NULL, *obuf = NULL;
        ZSTD_outBuffer out;
        size_t hint;
        int r;

        ibuf = malloc(DECOMPRESS_CHUNK_SIZE);
        obuf = malloc(DECOMPRESS_CHUNK_SIZE);
        if (!ibuf || !obuf)
                return -ENOMEM;

        d = ZSTD_createDStream();
        if (!d)
                return -ENOMEM;
        /* From here on, hint != 0 means the decoder is inside a frame (or waiting for the first
         * one) and wants more input; 0 means the last frame ended cleanly. */
        hint = ZSTD_initDStream(d);
        if (ZSTD_isError(hint))
                return zstd_error(hint);
        if (hint == 0)
                hint = 1;

        out = (ZSTD_outBuffer){ .dst = obuf, .size = DECOMPRESS_CHUNK_SIZE };

        for (;;) {
                ZSTD_inBuffer in;
                ssize_t n;

                n = read_retry(in_fd, ibuf, DECOMPRESS_CHUNK_SIZE);
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        break;

                in = (ZSTD_inBuffer){ .src = ibuf, .size = (size_t) n };
                while (in.pos < in.size) {
                        /* 0 means a frame was completely decoded and flushed; a new frame starts
                         * with the next byte, so several frames in a row just work. Trailing
                         * bytes that are not a frame fail here with "unknown frame". */
                        hint = ZSTD_decompressStream(d, &out, &in);
                        if (ZSTD_isError(hint))
                                return zstd_error(hint);

                        if (out.pos == out.size) {
                                r = sink_write(sink, obuf, out.pos);
                                if (r < 0)
                                        return r;
                                out.pos = 0;
                        }
                }
        }

        /* End of input: let the decoder hand out whatever it still holds. If it keeps asking for
         * more input without producing anything, the last frame was cut short (this is also what
         * rejects empty input). */
        while (hint != 0) {
                ZSTD_inBuffer in = { .src = ibuf, .size = 0 };
                size_t before = out.pos;

                hint = ZSTD_decompressStream(d, &out, &in);
                if (ZSTD_isError(hint))
                        return zstd_error(hint);

                bool progress = out.pos > before;

                if (out.pos == out.size) {
                        r = sink_write(sink, obuf, out.pos);
                        if (r < 0)
                                return r;
                        out.pos = 0;
                }

                if (!progress)
                        break;
        }

        r = sink_write(sink, obuf, out.pos);
        if (r < 0)
                return r;

        return hint == 0 ? 0 : -EBADMSG;
}

static int inflate_stream(z_stream *z, int in_fd, Sink *sink, uint8_t *ibuf, uint8_t *obuf) {
        bool eof = false, member_done = false;
        int r;

        for (;;) {
                if (z->avail_in == 0 && !eof) {
                        ssize_t n = read_retry(in_fd, ibuf, DECOMPRESS_CHUNK_SIZE);
                        if (n < 0)
                                return (int) n;
                        if (n == 0)
                                eof = true;
                        z->next_in = ibuf;
                        z->avail_in = (uInt) n;
                }

                if (member_done) {
                        if (z->avail_in > 0) {
                                /* Another member follows (gzip -c a b > c). Anything that does not
                                 * start with a gzip header fails in inflate() below. */
                                if (inflateReset(z) != Z_OK)
                                        return -EINVAL;
                                member_done = false;
                        } else if (eof)
                                return 0;
                        else
                                continue;
                }

                z->next_out = obuf;
                z->avail_out = DECOMPRESS_CHUNK_SIZE;

                int zr = inflate(z, Z_NO_FLUSH);

                r = sink_write(sink, obuf, DECOMPRESS_CHUNK_SIZE - z->avail_out);
                if (r < 0)
                        return r;

                switch (zr) {
                case Z_OK:
                        break;
                case Z_STREAM_END:
                        member_done = true;
                        break;
                case Z_BUF_ERROR:
                        /* No progress possible: fine while more input may come, truncation at
                         * the end. */
                        if (eof)
                                return -EBADMSG;
                        break;
                case Z_MEM_ERROR:
                        return -ENOMEM;
                default:
                        /* Z_DATA_ERROR (corrupt data, bad header or CRC/length trailer),
                         * Z_NEED_DICT, Z_STREAM_ERROR */
                        return -EBADMSG;
                }
        }
}

static int decompress_gzip(int in_fd, Sink *sink) {
        _cleanup_free_ uint8_t *ibuf = NULL, *obuf = NULL;
        z_stream z = {};
        int r, zr;

        ibuf = malloc(DECOMPRESS_CHUNK_SIZE);
        obuf = malloc(DECOMPRESS_CHUNK_SIZE);
        if (!ibuf || !obuf)
                return -ENOMEM;

        /* 16 + MAX_WBITS: expect a gzip header and trailer, not raw zlib. */
        zr = inflateInit2(&z, 16 + MAX_WBITS);
        if (zr == Z_MEM_ERROR)
                return -ENOMEM;
        if (zr != Z_OK)
                return -EINVAL;

        r = inflate_stream(&z, in_fd, sink, ibuf, obuf);
        (void) inflateEnd(&z);
        return r;
}

int decompress_fd_to_fd(CompressionType type, int in_fd, int out_fd, uint64_t max_size, uint64_t *ret_size) {
        Sink sink = { .fd = out_fd, .max_size = max_size };
        int r;

        if (type < 0 || type >= _COMPRESSION_MAX)
                return -EOPNOTSUPP;
        if (in_fd < 0 || out_fd < 0)
                return -EBADF;

        switch (type) {
        case COMPRESSION_NONE:
                r = copy_plain(in_fd, &sink);
                break;
        case COMPRESSION_XZ:
                r = decompress_xz(in_fd, &sink);
                break;
        case COMPRESSION_ZSTD:
                r = decompress_zstd(in_fd, &sink);
                break;
        case COMPRESSION_GZIP:
                r = decompress_gzip(in_fd, &sink);
                break;
        default:
                return -EOPNOTSUPP;
        }
        if (r < 0)
                return r;

        if (ret_size)
                *ret_size = sink.written;
        return 0;
}

static int memfd_new(const char *name) {
        char buf[MEMFD_NAME_MAX + 1];
        size_t l;
        int fd;

        if (isempty(name))
                name = "module";
        l = strnlen(name, MEMFD_NAME_MAX);
        memcpy(buf, name, l);
        buf[l] = '\0';

        /* Ask for a non-executable memfd first: newer kernels complain about memfds created
         * without saying, and may be configured to refuse executable ones. Older kernels reject
         * the unknown flag with EINVAL. */
        fd = memfd_create(buf, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
        if (fd < 0 && errno == EINVAL)
                fd = memfd_create(buf, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return negative_errno();

        return fd;
}

int decompress_to_sealed_memfd(CompressionType type, int in_fd, const char *name, uint64_t max_size, int *ret_fd,
                               uint64_t *ret_size) {

        _cleanup_close_ int fd = -EBADF;
        uint64_t size;
        int r;

        if (type < 0 || type >= _COMPRESSION_MAX)
                return -EOPNOTSUPP;
        if (in_fd < 0)
                return -EBADF;
        if (!ret_fd)
                return -EINVAL;

        fd = memfd_new(name);
        if (fd < 0)
                return fd;

        r = decompress_fd_to_fd(type, in_fd, fd, max_size, &size);
        if (r < 0)
                return r;

        if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
                return negative_errno();

        if (lseek(fd, 0, SEEK_SET) < 0)
                return negative_errno();

        *ret_fd = TAKE_FD(fd);
        if (ret_size)
                *ret_size = size;
        return 0;
}
