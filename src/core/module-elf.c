/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "module-elf.h"

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ELFDATA_HOST ELFDATA2LSB
#else
#define ELFDATA_HOST ELFDATA2MSB
#endif

#define VERMAGIC_PREFIX "vermagic="

/* The image with the fields of its ELF header that matter here, class-independent. All header
 * reads go through memcpy(): nothing says the buffer is aligned. */
typedef struct ElfImage {
        uint8_t *data;
        size_t size;
        bool is64;
        uint64_t shoff; /* section header table, already checked to lie inside the image */
        uint16_t shnum;
        size_t shstr_offset; /* section name table, inside the image, last byte NUL */
        size_t shstr_size;
} ElfImage;

/* One section header, class-independent. */
typedef struct ElfSection {
        size_t header_offset; /* where its header sits in the image */
        uint32_t name;
        uint32_t type;
        uint64_t flags;
        uint64_t offset;
        uint64_t size;
} ElfSection;

/* Whether [offset, offset + len) lies inside a buffer of `size` bytes, without overflow. */
static bool range_valid(size_t size, uint64_t offset, uint64_t len) {
        return offset <= size && len <= size - offset;
}

static void elf_section_read(const ElfImage *elf, uint16_t idx, ElfSection *ret) {
        size_t off = (size_t) elf->shoff + (size_t) idx * (elf->is64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr));

        if (elf->is64) {
                Elf64_Shdr h;

                memcpy(&h, elf->data + off, sizeof(h));
                *ret = (ElfSection){
                        .header_offset = off,
                        .name = h.sh_name,
                        .type = h.sh_type,
                        .flags = h.sh_flags,
                        .offset = h.sh_offset,
                        .size = h.sh_size,
                };
        } else {
                Elf32_Shdr h;

                memcpy(&h, elf->data + off, sizeof(h));
                *ret = (ElfSection){
                        .header_offset = off,
                        .name = h.sh_name,
                        .type = h.sh_type,
                        .flags = h.sh_flags,
                        .offset = h.sh_offset,
                        .size = h.sh_size,
                };
        }
}

static int elf_parse(ElfImage *elf, uint8_t *data, size_t size) {
        uint64_t shoff;
        uint16_t shentsize, shnum, shstrndx;
        size_t shdr_size;
        ElfSection strtab;

        if (size < EI_NIDENT || memcmp(data, ELFMAG, SELFMAG) != 0)
                return -ENOEXEC;
        if (data[EI_DATA] != ELFDATA_HOST)
                return -ENOEXEC;

        switch (data[EI_CLASS]) {
        case ELFCLASS64: {
                Elf64_Ehdr h;

                if (size < sizeof(h))
                        return -ENOEXEC;
                memcpy(&h, data, sizeof(h));
                shoff = h.e_shoff;
                shentsize = h.e_shentsize;
                shnum = h.e_shnum;
                shstrndx = h.e_shstrndx;
                shdr_size = sizeof(Elf64_Shdr);
                elf->is64 = true;
                break;
        }
        case ELFCLASS32: {
                Elf32_Ehdr h;

                if (size < sizeof(h))
                        return -ENOEXEC;
                memcpy(&h, data, sizeof(h));
                shoff = h.e_shoff;
                shentsize = h.e_shentsize;
                shnum = h.e_shnum;
                shstrndx = h.e_shstrndx;
                shdr_size = sizeof(Elf32_Shdr);
                elf->is64 = false;
                break;
        }
        default:
                return -ENOEXEC;
        }

        if (shentsize != shdr_size)
                return -ENOEXEC;
        /* shnum * shdr_size is at most 65535 * 64 and cannot overflow */
        if (!range_valid(size, shoff, (uint64_t) shnum * shdr_size))
                return -ENOEXEC;
        /* Extended numbering (e_shnum 0, e_shstrndx SHN_XINDEX) is not used by modules and is
         * refused here like any other index out of range. */
        if (shstrndx == SHN_UNDEF || shstrndx >= shnum)
                return -ENOEXEC;

        elf->data = data;
        elf->size = size;
        elf->shoff = shoff;
        elf->shnum = shnum;

        elf_section_read(elf, shstrndx, &strtab);
        if (strtab.size == 0 || !range_valid(size, strtab.offset, strtab.size))
                return -ENOEXEC;
        if (data[strtab.offset + strtab.size - 1] != '\0')
                return -ENOEXEC;
        elf->shstr_offset = (size_t) strtab.offset;
        elf->shstr_size = (size_t) strtab.size;

        return 0;
}

static bool elf_section_name_is(const ElfImage *elf, const ElfSection *s, const char *want) {
        size_t len = strlen(want);

        /* s->name < shstr_size was checked; compare including the terminating NUL */
        return elf->shstr_size - s->name > len && memcmp(elf->data + elf->shstr_offset + s->name, want, len + 1) == 0;
}

/* Where the first vermagic= string of a .modinfo section's bytes is: *ret_len is 0 when there is
 * nothing to strip. */
static int modinfo_find_vermagic(const uint8_t *p, size_t size, size_t *ret_offset, size_t *ret_len) {
        size_t i = 0;

        while (i < size && p[i] == '\0')
                i++;
        if (i == size) {
                /* empty, or zero padding only */
                *ret_offset = *ret_len = 0;
                return 0;
        }
        if (p[size - 1] != '\0')
                return -ENOEXEC;

        while (i < size) {
                const uint8_t *nul;
                size_t len;

                if (p[i] == '\0') {
                        i++;
                        continue;
                }
                nul = memchr(p + i, '\0', size - i); /* found: the last byte is NUL */
                len = (size_t) (nul - (p + i));
                if (len >= strlen(VERMAGIC_PREFIX) && memcmp(p + i, VERMAGIC_PREFIX, strlen(VERMAGIC_PREFIX)) == 0) {
                        *ret_offset = i;
                        *ret_len = len;
                        return 0;
                }
                i += len + 1;
        }

        return -ENODATA;
}

static void elf_section_clear_alloc(ElfImage *elf, const ElfSection *s) {
        if (elf->is64) {
                Elf64_Xword flags = s->flags & ~(Elf64_Xword) SHF_ALLOC;

                memcpy(elf->data + s->header_offset + offsetof(Elf64_Shdr, sh_flags), &flags, sizeof(flags));
        } else {
                Elf32_Word flags = (Elf32_Word) s->flags & ~(Elf32_Word) SHF_ALLOC;

                memcpy(elf->data + s->header_offset + offsetof(Elf32_Shdr, sh_flags), &flags, sizeof(flags));
        }
}

int module_elf_strip(void *image, size_t size, bool modversions, bool vermagic) {
        ElfImage elf = {};
        ElfSection versions = {}, modinfo = {};
        bool have_versions = false, have_modinfo = false;
        size_t vm_offset = 0, vm_len = 0;
        int r;

        if (!image)
                return -EINVAL;

        r = elf_parse(&elf, image, size);
        if (r < 0)
                return r;

        /* Check every section header, and find the first of each section we may edit. */
        for (uint16_t i = 1; i < elf.shnum; i++) {
                ElfSection s;

                elf_section_read(&elf, i, &s);
                if (s.name >= elf.shstr_size)
                        return -ENOEXEC;
                if (s.type != SHT_NOBITS && !range_valid(size, s.offset, s.size))
                        return -ENOEXEC;

                if (!have_versions && elf_section_name_is(&elf, &s, "__versions")) {
                        versions = s;
                        have_versions = true;
                } else if (!have_modinfo && elf_section_name_is(&elf, &s, ".modinfo")) {
                        modinfo = s;
                        have_modinfo = true;
                }
        }

        /* Find everything before changing anything, so that a failure leaves the image as it was. */
        if (vermagic && have_modinfo) {
                if (modinfo.type == SHT_NOBITS)
                        return -ENOEXEC;
                r = modinfo_find_vermagic(elf.data + modinfo.offset, (size_t) modinfo.size, &vm_offset, &vm_len);
                if (r < 0)
                        return r;
                vm_offset += (size_t) modinfo.offset;
        }

        if (modversions && have_versions)
                elf_section_clear_alloc(&elf, &versions);
        if (vm_len > 0)
                memset(elf.data + vm_offset, 0, vm_len);

        return 0;
}
