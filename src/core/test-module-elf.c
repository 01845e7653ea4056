/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* module_elf_strip() on ELF32 and ELF64 images built here, on malformed ones (each handed over in
 * a buffer of exactly its size, so that ASan and valgrind see any access past the end), and on
 * the real modules of the tree named by $MODLOADD_TEST_MODULE_DIR (a lib/modules/<release>
 * directory of uncompressed .ko files; without it that part is skipped and the exit code is 77).
 * What changed is checked against a second, separate reading of the ELF done here. */
#include <elf.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "module-elf.h"

#define check(expr)                                                                              \
        do {                                                                                     \
                if (!(expr)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

#define check_r(expr, want)                                                                                          \
        do {                                                                                                         \
                int _r_ = (expr);                                                                                    \
                if (_r_ != (want)) {                                                                                 \
                        fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d\n", __FILE__, __LINE__, #expr, _r_, \
                                strerror(-_r_), (want));                                                             \
                        abort();                                                                                     \
                }                                                                                                    \
        } while (0)

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_DATA  ELFDATA2LSB
#define OTHER_DATA ELFDATA2MSB
#else
#define HOST_DATA  ELFDATA2MSB
#define OTHER_DATA ELFDATA2LSB
#endif

#define MAX_SECTIONS 16U

typedef struct Buf {
        uint8_t *data;
        size_t size;
} Buf;

static void buf_done(Buf *b) {
        free(b->data);
        *b = (Buf){};
}

/* A copy in a buffer of exactly n bytes (at least one byte allocated, so that n == 0 is a valid
 * pointer too). */
static uint8_t *dup_exact(const uint8_t *p, size_t n) {
        uint8_t *d = malloc(n > 0 ? n : 1);
        check(d);
        if (n > 0)
                memcpy(d, p, n);
        return d;
}

/* ---- a second reading of ELF headers, for building and checking ---- */

typedef struct Ehdr {
        uint64_t shoff;
        uint16_t shentsize, shnum, shstrndx;
} Ehdr;

typedef struct Shdr {
        uint32_t name, type;
        uint64_t flags, offset, size;
} Shdr;

static bool image_is64(const uint8_t *img) {
        return img[EI_CLASS] == ELFCLASS64;
}

static Ehdr ehdr_get(const uint8_t *img) {
        if (image_is64(img)) {
                Elf64_Ehdr h;
                memcpy(&h, img, sizeof h);
                return (Ehdr){ h.e_shoff, h.e_shentsize, h.e_shnum, h.e_shstrndx };
        }
        Elf32_Ehdr h;
        memcpy(&h, img, sizeof h);
        return (Ehdr){ h.e_shoff, h.e_shentsize, h.e_shnum, h.e_shstrndx };
}

static void ehdr_put(uint8_t *img, const Ehdr *e) {
        if (image_is64(img)) {
                Elf64_Ehdr h;
                memcpy(&h, img, sizeof h);
                h.e_shoff = e->shoff;
                h.e_shentsize = e->shentsize;
                h.e_shnum = e->shnum;
                h.e_shstrndx = e->shstrndx;
                memcpy(img, &h, sizeof h);
        } else {
                Elf32_Ehdr h;
                memcpy(&h, img, sizeof h);
                h.e_shoff = (Elf32_Off) e->shoff;
                h.e_shentsize = e->shentsize;
                h.e_shnum = e->shnum;
                h.e_shstrndx = e->shstrndx;
                memcpy(img, &h, sizeof h);
        }
}

static size_t shdr_size(const uint8_t *img) {
        return image_is64(img) ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
}

/* Offset of section idx's header; the caller knows the table is there. */
static size_t shdr_offset(const uint8_t *img, unsigned idx) {
        return (size_t) ehdr_get(img).shoff + idx * shdr_size(img);
}

static Shdr shdr_get(const uint8_t *img, unsigned idx) {
        size_t off = shdr_offset(img, idx);

        if (image_is64(img)) {
                Elf64_Shdr h;
                memcpy(&h, img + off, sizeof h);
                return (Shdr){ h.sh_name, h.sh_type, h.sh_flags, h.sh_offset, h.sh_size };
        }
        Elf32_Shdr h;
        memcpy(&h, img + off, sizeof h);
        return (Shdr){ h.sh_name, h.sh_type, h.sh_flags, h.sh_offset, h.sh_size };
}

static void shdr_put(uint8_t *img, unsigned idx, const Shdr *s) {
        size_t off = shdr_offset(img, idx);

        if (image_is64(img)) {
                Elf64_Shdr h;
                memcpy(&h, img + off, sizeof h);
                h.sh_name = s->name;
                h.sh_type = s->type;
                h.sh_flags = s->flags;
                h.sh_offset = s->offset;
                h.sh_size = s->size;
                memcpy(img + off, &h, sizeof h);
        } else {
                Elf32_Shdr h;
                memcpy(&h, img + off, sizeof h);
                h.sh_name = s->name;
                h.sh_type = s->type;
                h.sh_flags = (Elf32_Word) s->flags;
                h.sh_offset = (Elf32_Off) s->offset;
                h.sh_size = (Elf32_Word) s->size;
                memcpy(img + off, &h, sizeof h);
        }
}

/* Index of the first section called name, 0 if none. Only for well-formed images. */
static unsigned find_section(const uint8_t *img, size_t size, const char *name) {
        Ehdr e = ehdr_get(img);
        Shdr strtab;

        check(e.shstrndx < e.shnum && e.shoff + (uint64_t) e.shnum * e.shentsize <= size);
        strtab = shdr_get(img, e.shstrndx);
        check(strtab.offset + strtab.size <= size);
        for (unsigned i = 1; i < e.shnum; i++) {
                Shdr s = shdr_get(img, i);
                check(s.name < strtab.size);
                if (strcmp((const char *) img + strtab.offset + s.name, name) == 0)
                        return i;
        }
        return 0;
}

/* What module_elf_strip() should make of a well-formed image: exp gets the edited copy. Returns
 * what it should return. */
static int expect_strip(const uint8_t *orig, size_t size, bool modversions, bool vermagic, uint8_t *exp) {
        unsigned v = find_section(orig, size, "__versions"), m = find_section(orig, size, ".modinfo");

        memcpy(exp, orig, size);
        if (vermagic && m > 0) {
                Shdr s = shdr_get(orig, m);
                const char *p = (const char *) orig + s.offset, *end = p + s.size;
                bool strings = false;

                for (const char *q = p; q < end; q++)
                        if (*q != '\0')
                                strings = true;
                if (strings) {
                        check(end[-1] == '\0');
                        for (;;) {
                                while (p < end && *p == '\0')
                                        p++;
                                if (p == end)
                                        return -ENODATA;
                                if (strncmp(p, "vermagic=", 9) == 0)
                                        break;
                                p += strlen(p);
                        }
                        memset(exp + (p - (const char *) orig), 0, strlen(p));
                }
        }
        if (modversions && v > 0) {
                Shdr s = shdr_get(orig, v);
                s.flags &= ~(uint64_t) SHF_ALLOC;
                shdr_put(exp, v, &s);
        }
        return 0;
}

/* Strip a copy held in a buffer of exactly its size and compare with expect_strip(). */
static void check_strip(const uint8_t *orig, size_t size, bool modversions, bool vermagic) {
        uint8_t *img = dup_exact(orig, size), *exp = malloc(size);
        int want;

        check(exp);
        want = expect_strip(orig, size, modversions, vermagic, exp);
        check_r(module_elf_strip(img, size, modversions, vermagic), want);
        if (want == 0)
                check(memcmp(img, exp, size) == 0);
        else
                check(memcmp(img, orig, size) == 0);
        free(img);
        free(exp);
}

/* The result must be `want`, and a failure leaves the bytes alone. */
static void check_result(const uint8_t *orig, size_t size, bool modversions, bool vermagic, int want) {
        uint8_t *img = dup_exact(orig, size);

        check_r(module_elf_strip(img, size, modversions, vermagic), want);
        if (want < 0)
                check(memcmp(img, orig, size) == 0);
        free(img);
}

static void check_all_flags(const uint8_t *orig, size_t size, int want) {
        for (unsigned f = 0; f < 4; f++)
                check_result(orig, size, f & 1, f & 2, want);
}

/* ---- building synthetic images ---- */

typedef struct SectionSpec {
        const char *name;
        uint32_t type;
        uint64_t flags;
        const void *data;
        size_t size; /* of data; for SHT_NOBITS only sh_size */
} SectionSpec;

#define MODINFO(s) \
        { ".modinfo", SHT_PROGBITS, SHF_ALLOC, s, sizeof(s) }

static const char default_modinfo[] = "\0\0license=GPL\0name=synth\0vermagic=6.1.0 SMP mod_unload modversions \0"
                                      "intree=Y";
/* one entry: a CRC, then the symbol name, 64 bytes in all; twice */
static const char versions_data[128] = "\x12\x34\x56\x78\0\0\0\0module_layout";

/* An image with a null section, the given sections and .shstrtab, header table at the end. */
static Buf build(bool is64, const SectionSpec *specs, unsigned n) {
        size_t ehsize = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
        size_t shsize = is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
        Shdr sh[MAX_SECTIONS] = {};
        char names[512] = "";
        size_t names_len = 1, pos = ehsize;
        unsigned shnum = n + 2;
        Buf b = {};

        check(shnum <= MAX_SECTIONS);
        for (unsigned i = 0; i < n; i++) {
                sh[i + 1] = (Shdr){ (uint32_t) names_len, specs[i].type, specs[i].flags, 0, specs[i].size };
                check(names_len + strlen(specs[i].name) + 1 <= sizeof names);
                memcpy(names + names_len, specs[i].name, strlen(specs[i].name) + 1);
                names_len += strlen(specs[i].name) + 1;
        }
        sh[n + 1] = (Shdr){ (uint32_t) names_len, SHT_STRTAB, 0, 0, 0 };
        memcpy(names + names_len, ".shstrtab", sizeof ".shstrtab");
        names_len += sizeof ".shstrtab";
        sh[n + 1].size = names_len;

        for (unsigned i = 1; i < shnum; i++) {
                pos = (pos + 3) & ~(size_t) 3;
                sh[i].offset = pos;
                if (sh[i].type != SHT_NOBITS)
                        pos += sh[i].size;
        }
        pos = (pos + 7) & ~(size_t) 7;

        b.size = pos + shnum * shsize;
        b.data = calloc(1, b.size);
        check(b.data);
        memcpy(b.data, ELFMAG, SELFMAG);
        b.data[EI_CLASS] = is64 ? ELFCLASS64 : ELFCLASS32;
        b.data[EI_DATA] = HOST_DATA;
        b.data[EI_VERSION] = EV_CURRENT;
        if (is64) {
                Elf64_Ehdr h;
                memcpy(&h, b.data, sizeof h);
                h.e_type = ET_REL;
                h.e_machine = EM_X86_64;
                h.e_version = EV_CURRENT;
                h.e_ehsize = sizeof h;
                memcpy(b.data, &h, sizeof h);
        } else {
                Elf32_Ehdr h;
                memcpy(&h, b.data, sizeof h);
                h.e_type = ET_REL;
                h.e_machine = EM_386;
                h.e_version = EV_CURRENT;
                h.e_ehsize = sizeof h;
                memcpy(b.data, &h, sizeof h);
        }
        ehdr_put(b.data, &(Ehdr){ pos, (uint16_t) shsize, (uint16_t) shnum, (uint16_t) (n + 1) });

        for (unsigned i = 1; i < shnum; i++) {
                shdr_put(b.data, i, &sh[i]);
                if (i <= n && sh[i].type != SHT_NOBITS && sh[i].size > 0)
                        memcpy(b.data + sh[i].offset, specs[i - 1].data, sh[i].size);
        }
        memcpy(b.data + sh[n + 1].offset, names, names_len);
        return b;
}

static Buf build_default(bool is64) {
        const SectionSpec specs[] = {
                { ".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, "\xc3\x90\x90\x90", 4 },
                MODINFO(default_modinfo),
                { "__versions", SHT_PROGBITS, SHF_ALLOC, versions_data, sizeof versions_data },
                /* NOBITS: its bytes are not in the file, wherever it says they are */
                { ".bss", SHT_NOBITS, SHF_ALLOC | SHF_WRITE, NULL, 1U << 20 },
        };
        return build(is64, specs, ELEMENTSOF(specs));
}

/* The NUL-separated non-empty strings of a .modinfo, joined with '\n'. */
static char *modinfo_joined(const uint8_t *img, size_t size) {
        unsigned m = find_section(img, size, ".modinfo");
        Shdr s;
        char *out, *o;

        check(m > 0);
        s = shdr_get(img, m);
        out = o = calloc(1, s.size + 2);
        check(out);
        for (size_t i = 0; i < s.size; i++) {
                char c = (char) img[s.offset + i];
                if (c != '\0')
                        *o++ = c;
                else if (o > out && o[-1] != '\n')
                        *o++ = '\n';
        }
        if (o > out && o[-1] == '\n')
                o--;
        *o = '\0';
        return out;
}

/* Whether joined (from modinfo_joined()) has the line `entry`. */
static bool has_entry(const char *joined, const char *entry) {
        size_t l = strlen(entry);

        for (const char *p = joined; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
                if (strncmp(p, entry, l) == 0 && (p[l] == '\n' || p[l] == '\0'))
                        return true;
        return false;
}

/* ---- synthetic tests ---- */

static void test_valid(bool is64) {
        Buf b = build_default(is64);
        uint8_t *img = dup_exact(b.data, b.size);
        unsigned v = find_section(b.data, b.size, "__versions");
        Shdr before = shdr_get(b.data, v), after;
        _cleanup_free_ char *joined = NULL;

        check(v > 0 && (before.flags & SHF_ALLOC));
        for (unsigned f = 0; f < 4; f++)
                check_strip(b.data, b.size, f & 1, f & 2);

        check_r(module_elf_strip(img, b.size, true, true), 0);
        after = shdr_get(img, v);
        check(after.flags == (before.flags & ~(uint64_t) SHF_ALLOC));
        check(after.name == before.name && after.type == before.type && after.offset == before.offset &&
              after.size == before.size);
        joined = modinfo_joined(img, b.size);
        check(strcmp(joined, "license=GPL\nname=synth\nintree=Y") == 0);

        /* again: __versions is already stripped, .modinfo has strings but no vermagic= */
        check_r(module_elf_strip(img, b.size, true, false), 0);
        check_r(module_elf_strip(img, b.size, false, true), -ENODATA);
        free(img);

        /* the same image at an odd address: nothing assumes alignment */
        img = malloc(b.size + 1);
        check(img);
        memcpy(img + 1, b.data, b.size);
        check_r(module_elf_strip(img + 1, b.size, true, true), 0);
        free(img);
        buf_done(&b);
}

static void test_modinfo_variants(bool is64) {
        static const struct {
                const char *data;
                size_t size;
                const char *joined_after; /* NULL: the image must come back unchanged with `r` */
                int r;
        } cases[] = {
#define CASE(s, j, r) { s, sizeof(s) - 1, j, r }
                CASE("vermagic=1\0", "", 0),
                CASE("vermagic=\0", "", 0),
                CASE("\0\0\0\0vermagic=1\0name=x\0", "name=x", 0),
                CASE("name=x\0vermagic=1\0", "name=x", 0),
                CASE("xvermagic=1\0vermagic=2\0", "xvermagic=1", 0),
                CASE("name=vermagic=1\0vermagic=2\0", "name=vermagic=1", 0),
                CASE("vermagic=1\0vermagic=2\0", "vermagic=2", 0), /* only the first, as kmod */
                CASE("name=x\0vermagic=1\0\0\0\0", "name=x", 0),
                CASE("name=x\0license=GPL\0", NULL, -ENODATA),
                CASE("vermagic\0", NULL, -ENODATA),
                CASE("vermagi\0", NULL, -ENODATA),
                CASE("VERMAGIC=1\0", NULL, -ENODATA),
                CASE("", NULL, 0),
                CASE("\0", NULL, 0),
                CASE("\0\0\0\0\0\0\0\0", NULL, 0),
                /* not ending in NUL */
                CASE("vermagic=1", NULL, -ENOEXEC),
                CASE("name=x\0vermagic=1", NULL, -ENOEXEC),
                CASE("vermagic=1\0name=x", NULL, -ENOEXEC),
                CASE("x", NULL, -ENOEXEC),
                CASE("\0\0x", NULL, -ENOEXEC),
#undef CASE
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const SectionSpec specs[] = {
                        { "__versions", SHT_PROGBITS, SHF_ALLOC, versions_data, sizeof versions_data },
                        { ".modinfo", SHT_PROGBITS, SHF_ALLOC, cases[i].data, cases[i].size },
                };
                Buf b = build(is64, specs, ELEMENTSOF(specs));
                uint8_t *img = dup_exact(b.data, b.size);

                check_r(module_elf_strip(img, b.size, true, true), cases[i].r);
                if (cases[i].joined_after) {
                        _cleanup_free_ char *j = modinfo_joined(img, b.size);
                        if (strcmp(j, cases[i].joined_after) != 0) {
                                fprintf(stderr, "case %zu: got \"%s\"\n", i, j);
                                check(false);
                        }
                        check_strip(b.data, b.size, true, true);
                } else if (cases[i].r == 0) {
                        /* nothing to blank in .modinfo; __versions still stripped */
                        check(memcmp(img, b.data, b.size) != 0);
                        check_strip(b.data, b.size, true, true);
                        check_r(module_elf_strip(img, b.size, false, true), 0);
                } else
                        check(memcmp(img, b.data, b.size) == 0);

                /* .modinfo is not looked into without vermagic */
                check_result(b.data, b.size, true, false, 0);
                check_result(b.data, b.size, false, false, 0);
                free(img);
                buf_done(&b);
        }
}

static void test_missing_sections(bool is64) {
        const SectionSpec only_modinfo[] = { MODINFO(default_modinfo) };
        const SectionSpec only_versions[] = {
                { "__versions", SHT_PROGBITS, SHF_ALLOC, versions_data, sizeof versions_data },
        };
        const SectionSpec versionsx[] = {
                { "__versionsx", SHT_PROGBITS, SHF_ALLOC, versions_data, sizeof versions_data },
                { "__version", SHT_PROGBITS, SHF_ALLOC, versions_data, sizeof versions_data },
                { ".modinf", SHT_PROGBITS, SHF_ALLOC, default_modinfo, sizeof default_modinfo },
        };
        Buf b;

        /* no __versions: fine, only vermagic goes */
        b = build(is64, only_modinfo, ELEMENTSOF(only_modinfo));
        check_result(b.data, b.size, true, false, 0);
        check_strip(b.data, b.size, true, false);
        check_strip(b.data, b.size, true, true);
        {
                uint8_t *img = dup_exact(b.data, b.size);
                check_r(module_elf_strip(img, b.size, true, false), 0);
                check(memcmp(img, b.data, b.size) == 0);
                free(img);
        }
        buf_done(&b);

        /* no .modinfo: fine as well */
        b = build(is64, only_versions, ELEMENTSOF(only_versions));
        check_strip(b.data, b.size, false, true);
        check_strip(b.data, b.size, true, true);
        {
                uint8_t *img = dup_exact(b.data, b.size);
                check_r(module_elf_strip(img, b.size, false, true), 0);
                check(memcmp(img, b.data, b.size) == 0);
                free(img);
        }
        buf_done(&b);

        /* names must match exactly */
        b = build(is64, versionsx, ELEMENTSOF(versionsx));
        {
                uint8_t *img = dup_exact(b.data, b.size);
                check_r(module_elf_strip(img, b.size, true, true), 0);
                check(memcmp(img, b.data, b.size) == 0);
                free(img);
        }
        buf_done(&b);

        /* no sections but the name table */
        b = build(is64, NULL, 0);
        check_all_flags(b.data, b.size, 0);
        buf_done(&b);
}

static void test_duplicates(bool is64) {
        static const char second_modinfo[] = "vermagic=second\0";
        const SectionSpec specs[] = {
                { "__versions", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, versions_data, sizeof versions_data },
                MODINFO(default_modinfo),
                { "__versions", SHT_PROGBITS, SHF_ALLOC, versions_data, sizeof versions_data },
                MODINFO(second_modinfo),
        };
        Buf b = build(is64, specs, ELEMENTSOF(specs));
        uint8_t *img = dup_exact(b.data, b.size);

        check_r(module_elf_strip(img, b.size, true, true), 0);
        check(shdr_get(img, 1).flags == SHF_WRITE);
        check(shdr_get(img, 3).flags == SHF_ALLOC);
        check(memcmp(img + shdr_get(img, 4).offset, second_modinfo, sizeof second_modinfo) == 0);
        check_strip(b.data, b.size, true, true);
        free(img);
        buf_done(&b);
}

static void test_nobits_modinfo(bool is64) {
        const SectionSpec specs[] = {
                { "__versions", SHT_PROGBITS, SHF_ALLOC, versions_data, sizeof versions_data },
                { ".modinfo", SHT_NOBITS, SHF_ALLOC, NULL, 64 },
        };
        Buf b = build(is64, specs, ELEMENTSOF(specs));

        check_result(b.data, b.size, true, true, -ENOEXEC);
        check_result(b.data, b.size, false, true, -ENOEXEC);
        check_result(b.data, b.size, true, false, 0);
        buf_done(&b);
}

/* Every prefix of an image whose section header table is at its end is malformed. */
static void test_truncated(bool is64) {
        Buf b = build_default(is64);

        for (size_t n = 0; n < b.size; n++)
                check_all_flags(b.data, n, -ENOEXEC);
        check_r(module_elf_strip(NULL, 0, true, true), -EINVAL);
        check_r(module_elf_strip(NULL, 100, true, true), -EINVAL);
        buf_done(&b);
}

/* Apply one change to a copy of the default image and expect `want` for every flag combination. */
#define MUTATE(is64, want, ...)                              \
        do {                                                 \
                Buf _b_ = build_default(is64);               \
                uint8_t *img = _b_.data;                     \
                size_t size = _b_.size;                      \
                Ehdr e = ehdr_get(img);                      \
                (void) size;                                 \
                (void) e;                                    \
                __VA_ARGS__;                                 \
                check_all_flags(_b_.data, _b_.size, (want)); \
                buf_done(&_b_);                              \
        } while (0)

static void set_section(uint8_t *img, unsigned idx, int field, uint64_t value) {
        Shdr s = shdr_get(img, idx);
        switch (field) {
        case 0:
                s.name = (uint32_t) value;
                break;
        case 1:
                s.offset = value;
                break;
        case 2:
                s.size = value;
                break;
        default:
                s.type = (uint32_t) value;
        }
        shdr_put(img, idx, &s);
}

static void test_malformed(bool is64) {
        uint64_t max = is64 ? UINT64_MAX : UINT32_MAX;
        Buf def = build_default(is64);
        unsigned strndx = ehdr_get(def.data).shstrndx, v = find_section(def.data, def.size, "__versions"),
                 m = find_section(def.data, def.size, ".modinfo");

        /* identification */
        MUTATE(is64, -ENOEXEC, img[0] = 0x7e);
        MUTATE(is64, -ENOEXEC, img[3] = 'f');
        MUTATE(is64, -ENOEXEC, img[EI_DATA] = OTHER_DATA);
        MUTATE(is64, -ENOEXEC, img[EI_DATA] = ELFDATANONE);
        MUTATE(is64, -ENOEXEC, img[EI_CLASS] = ELFCLASSNONE);
        MUTATE(is64, -ENOEXEC, img[EI_CLASS] = 3);
        MUTATE(is64, -ENOEXEC, img[EI_CLASS] = is64 ? ELFCLASS32 : ELFCLASS64);

        /* the section header table */
        MUTATE(is64, -ENOEXEC, e.shoff = size; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shoff += 1; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shoff = max; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shoff = max - 63; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shnum = 0xffff; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shnum += 1; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shnum = 0; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shnum -= 1; ehdr_put(img, &e)); /* drops .shstrtab */
        MUTATE(is64, -ENOEXEC, e.shentsize += 8; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shentsize = 0; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shentsize = is64 ? sizeof(Elf32_Shdr) : sizeof(Elf64_Shdr); ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shstrndx = 0; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shstrndx = e.shnum; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shstrndx = SHN_XINDEX; ehdr_put(img, &e));
        MUTATE(is64, -ENOEXEC, e.shstrndx = 0xffff; ehdr_put(img, &e));
        /* a table that is all there, still: 0 */
        MUTATE(is64, 0, (void) 0);

        /* the section name table */
        MUTATE(is64, -ENOEXEC, set_section(img, strndx, 2, 0));
        MUTATE(is64, -ENOEXEC, set_section(img, strndx, 2, shdr_get(img, strndx).size - 1)); /* no final NUL */
        MUTATE(is64, -ENOEXEC, set_section(img, strndx, 1, size));
        MUTATE(is64, -ENOEXEC, set_section(img, strndx, 1, max));
        MUTATE(is64, -ENOEXEC, set_section(img, strndx, 1, max - 2));
        MUTATE(is64, -ENOEXEC, set_section(img, strndx, 2, max));
        MUTATE(is64, -ENOEXEC, set_section(img, strndx, 2, size));
        MUTATE(is64, -ENOEXEC, set_section(img, strndx, 3, SHT_NOBITS); set_section(img, strndx, 1, size));
        MUTATE(is64, -ENOEXEC, img[shdr_get(img, strndx).offset + shdr_get(img, strndx).size - 1] = 'x');

        /* section names */
        MUTATE(is64, -ENOEXEC, set_section(img, v, 0, shdr_get(img, strndx).size));
        MUTATE(is64, -ENOEXEC, set_section(img, 1, 0, UINT32_MAX));
        MUTATE(is64, 0, set_section(img, v, 0, shdr_get(img, strndx).size - 1)); /* "" */

        /* section contents outside the image, or wrapping around */
        for (unsigned idx = 1; idx < strndx; idx++) {
                if (shdr_get(def.data, idx).type == SHT_NOBITS)
                        continue;
                MUTATE(is64, -ENOEXEC, set_section(img, idx, 1, size));
                MUTATE(is64, -ENOEXEC, set_section(img, idx, 1, max));
                MUTATE(is64, -ENOEXEC, set_section(img, idx, 1, max - 4));
                MUTATE(is64, -ENOEXEC, set_section(img, idx, 2, max));
                MUTATE(is64, -ENOEXEC, set_section(img, idx, 2, max - 8));
                MUTATE(is64, -ENOEXEC, set_section(img, idx, 2, size));
                MUTATE(is64, -ENOEXEC, set_section(img, idx, 1, size + 1); set_section(img, idx, 2, 0));
                MUTATE(is64, -ENOEXEC, set_section(img, idx, 1, 8); set_section(img, idx, 2, size - 7));
                /* the very end, empty, or exactly up to the end: fine */
                MUTATE(is64, 0, set_section(img, idx, 1, size); set_section(img, idx, 2, 0));
                MUTATE(is64, 0, set_section(img, idx, 1, 0); set_section(img, idx, 2, idx == m ? 0 : size));
        }
        /* a section of no concern that is NOBITS may say anything */
        MUTATE(is64, 0, set_section(img, 1, 3, SHT_NOBITS); set_section(img, 1, 1, max); set_section(img, 1, 2, max));

        /* .modinfo without a final NUL: only looked at for vermagic */
        {
                Buf b = build_default(is64);
                set_section(b.data, m, 2, shdr_get(b.data, m).size - 1);
                check_result(b.data, b.size, false, true, -ENOEXEC);
                check_result(b.data, b.size, true, true, -ENOEXEC);
                check_result(b.data, b.size, true, false, 0);
                check_result(b.data, b.size, false, false, 0);
                buf_done(&b);
        }
        {
                /* and with its offset moved so that its last byte is the image's last */
                Buf b = build_default(is64);
                Shdr s = shdr_get(b.data, m);
                s.offset = b.size - s.size;
                shdr_put(b.data, m, &s);
                b.data[b.size - 1] = 'x';
                check_result(b.data, b.size, false, true, -ENOEXEC);
                check_result(b.data, b.size, true, true, -ENOEXEC);
                check_result(b.data, b.size, true, false, 0);
                buf_done(&b);
        }
        buf_done(&def);
}

/* Random damage to the header region: any result but a crash, and untouched bytes on failure. */
static void test_random(bool is64) {
        uint64_t x = is64 ? 0x9e3779b97f4a7c15ULL : 0x2545f4914f6cdd1dULL;
        Buf b = build_default(is64);
        size_t shoff = ehdr_get(b.data).shoff;

        for (unsigned iter = 0; iter < 20000; iter++) {
                uint8_t *img = dup_exact(b.data, b.size), *copy;
                unsigned changes = 1 + iter % 4;
                int r;

                for (unsigned c = 0; c < changes; c++) {
                        size_t pos;
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        switch (x % 3) {
                        case 0: /* ELF header */
                                pos = (x >> 8) % (is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr));
                                break;
                        case 1: /* section headers */
                                pos = shoff + (x >> 8) % (b.size - shoff);
                                break;
                        default:
                                pos = (x >> 8) % b.size;
                        }
                        img[pos] = (uint8_t) (x >> 40);
                }
                copy = dup_exact(img, b.size);
                r = module_elf_strip(img, b.size, x & 1, x & 2);
                check(r == 0 || r == -ENOEXEC || r == -ENODATA);
                if (r < 0)
                        check(memcmp(img, copy, b.size) == 0);
                free(copy);
                free(img);
        }
        buf_done(&b);
}

/* ---- real modules ---- */

static const char *module_dir = NULL;
static unsigned ko_count = 0, ko_with_versions = 0;

static Buf read_file(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        Buf b = {};

        check(fd >= 0);
        check(fstat(fd, &st) == 0);
        b.size = (size_t) st.st_size;
        b.data = malloc(b.size > 0 ? b.size : 1);
        check(b.data);
        for (size_t done = 0; done < b.size;) {
                ssize_t n = read(fd, b.data + done, b.size - done);
                check(n > 0);
                done += (size_t) n;
        }
        return b;
}

/* Checks on the stripped real module besides the byte-exact comparison. */
static void check_real(const Buf *orig, const char *path) {
        uint8_t *img = dup_exact(orig->data, orig->size);
        unsigned v = find_section(orig->data, orig->size, "__versions");
        _cleanup_free_ char *before = modinfo_joined(orig->data, orig->size), *after = NULL;
        const char *vm = strstr(before, "vermagic=");
        int r;

        check(vm && (vm == before || vm[-1] == '\n'));
        r = module_elf_strip(img, orig->size, true, true);
        if (r != 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                check(false);
        }
        if (v > 0) {
                Shdr a = shdr_get(orig->data, v), b = shdr_get(img, v);
                check(a.flags & SHF_ALLOC);
                check(b.flags == (a.flags & ~(uint64_t) SHF_ALLOC));
                ko_with_versions++;
        }
        after = modinfo_joined(img, orig->size);
        check(!strstr(after, "vermagic="));
        /* before, with the vermagic= line taken out, is after */
        {
                size_t head = (size_t) (vm - before), line = strcspn(vm, "\n");
                _cleanup_free_ char *want = strdup(before);

                check(want);
                if (vm[line] == '\n')
                        memmove(want + head, want + head + line + 1, strlen(want + head + line + 1) + 1);
                else
                        want[head > 0 ? head - 1 : 0] = '\0';
                check(strcmp(want, after) == 0);
        }
        free(img);
        check_strip(orig->data, orig->size, true, true);
}

static int ko_visit(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        size_t l = strlen(path);
        Buf b;

        if (type != FTW_F || l < 3 || strcmp(path + l - 3, ".ko") != 0)
                return 0;
        b = read_file(path);
        check_real(&b, path);
        buf_done(&b);
        ko_count++;
        return 0;
}

static void test_dummy(void) {
        char path[PATH_MAX];
        Buf b;
        _cleanup_free_ char *before = NULL, *after = NULL;
        uint8_t *img;
        size_t min_size;
        Ehdr e;

        snprintf(path, sizeof path, "%s/kernel/drivers/net/dummy.ko", module_dir);
        b = read_file(path);
        check(image_is64(b.data));

        for (unsigned f = 0; f < 4; f++)
                check_strip(b.data, b.size, f & 1, f & 2);

        img = dup_exact(b.data, b.size);
        check_r(module_elf_strip(img, b.size, true, true), 0);
        before = modinfo_joined(b.data, b.size);
        after = modinfo_joined(img, b.size);
        check(strstr(before, "vermagic="));
        check(!strstr(after, "vermagic="));
        check(has_entry(before, "name=dummy") && has_entry(before, "license=GPL"));
        check(has_entry(after, "name=dummy") && has_entry(after, "license=GPL") &&
              has_entry(after, "alias=rtnl-link-dummy") && has_entry(after, "intree=Y") &&
              has_entry(after, "parmtype=numdummies:int"));
        {
                unsigned v = find_section(b.data, b.size, "__versions");
                check(v > 0);
                check(shdr_get(b.data, v).flags & SHF_ALLOC);
                check(!(shdr_get(img, v).flags & SHF_ALLOC));
        }
        free(img);

        /* the shortest prefix that still holds the headers and every section with bytes in the file */
        e = ehdr_get(b.data);
        min_size = (size_t) e.shoff + (size_t) e.shnum * e.shentsize;
        for (unsigned i = 1; i < e.shnum; i++) {
                Shdr s = shdr_get(b.data, i);
                if (s.type != SHT_NOBITS)
                        min_size = MAX(min_size, (size_t) (s.offset + s.size));
        }
        check(min_size <= b.size);
        for (size_t n = 0; n <= b.size; n++) {
                uint8_t *t = dup_exact(b.data, n);
                check_r(module_elf_strip(t, n, true, true), n >= min_size ? 0 : -ENOEXEC);
                free(t);
        }
        printf("dummy.ko: %zu bytes, every prefix shorter than %zu refused\n", b.size, min_size);
        buf_done(&b);
}

int main(void) {
        for (int is64 = 0; is64 <= 1; is64++) {
                test_valid(is64);
                test_modinfo_variants(is64);
                test_missing_sections(is64);
                test_duplicates(is64);
                test_nobits_modinfo(is64);
                test_truncated(is64);
                test_malformed(is64);
                test_random(is64);
        }
        printf("synthetic images: OK\n");

        module_dir = getenv("MODLOADD_TEST_MODULE_DIR");
        if (isempty(module_dir)) {
                printf("SKIP: MODLOADD_TEST_MODULE_DIR is not set (a lib/modules/<release> directory)\n");
                return 77;
        }
        test_dummy();
        check(nftw(module_dir, ko_visit, 16, FTW_PHYS) == 0);
        check(ko_count > 0);
        printf("stripped %u modules from %s (%u with __versions)\n", ko_count, module_dir, ko_with_versions);
        printf("OK\n");
        return EXIT_SUCCESS;
}
