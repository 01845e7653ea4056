/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "varlink-idl.h"

typedef enum IdlKind {
        IDL_BOOL,
        IDL_INT,
        IDL_FLOAT,
        IDL_STRING,
        IDL_OBJECT,
        IDL_NAMED, /* a reference to a "type" member, resolved after parsing */
        IDL_STRUCT,
        IDL_ENUM,
        IDL_ARRAY,
        IDL_MAP,
        _IDL_KIND_MAX,
        _IDL_KIND_INVALID = -EINVAL,
} IdlKind;

typedef struct IdlType IdlType;

/* A name bound to a type: a struct field, an enum value (type NULL), a
 * "type" member or an "error" member (the type being its parameters). */
typedef struct IdlField {
        char *name;
        IdlType *type;
} IdlField;

struct IdlType {
        IdlKind kind;
        bool nullable;

        /* IDL_NAMED: the name, where it was written, and what it refers to
         * (owned by the interface). */
        char *name;
        unsigned line, column;
        const IdlType *target;

        /* IDL_ARRAY, IDL_MAP */
        IdlType *element;

        /* IDL_STRUCT: the fields; IDL_ENUM: the values */
        IdlField *fields;
        size_t n_fields, n_fields_allocated;
};

struct VarlinkIdlMethod {
        char *name;
        IdlType *input;
        IdlType *output;
};

struct VarlinkIdlInterface {
        char *name;

        IdlField *types;
        size_t n_types, n_types_allocated;

        VarlinkIdlMethod *methods;
        size_t n_methods, n_methods_allocated;

        IdlField *errors;
        size_t n_errors, n_errors_allocated;
};

/* Make room for `need` elements of `size` bytes. Returns the (possibly moved)
 * array, or NULL on allocation failure, leaving the old one untouched. */
static void *array_grow(void *array, size_t *allocated, size_t need, size_t size) {
        size_t n;
        void *p;

        if (need <= *allocated)
                return array;

        n = MAX(need, *allocated * 2);
        n = MAX(n, (size_t) 4);
        if (n > SIZE_MAX / size)
                return NULL;

        p = realloc(array, n * size);
        if (!p)
                return NULL;

        *allocated = n;
        return p;
}

static IdlType *idl_type_free(IdlType *t) {
        if (!t)
                return NULL;

        free(t->name);
        idl_type_free(t->element);
        for (size_t i = 0; i < t->n_fields; i++) {
                free(t->fields[i].name);
                idl_type_free(t->fields[i].type);
        }
        free(t->fields);
        free(t);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(IdlType *, idl_type_free);

static IdlType *idl_type_new(IdlKind kind) {
        IdlType *t;

        t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;

        t->kind = kind;
        return t;
}

static void idl_fields_free(IdlField *fields, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(fields[i].name);
                idl_type_free(fields[i].type);
        }
        free(fields);
}

VarlinkIdlInterface *varlink_idl_interface_free(VarlinkIdlInterface *iface) {
        if (!iface)
                return NULL;

        idl_fields_free(iface->types, iface->n_types);
        idl_fields_free(iface->errors, iface->n_errors);
        for (size_t i = 0; i < iface->n_methods; i++) {
                free(iface->methods[i].name);
                idl_type_free(iface->methods[i].input);
                idl_type_free(iface->methods[i].output);
        }
        free(iface->methods);
        free(iface->name);
        free(iface);
        return NULL;
}

/* Names */

static bool char_is_lower(char c) {
        return c >= 'a' && c <= 'z';
}

static bool char_is_upper(char c) {
        return c >= 'A' && c <= 'Z';
}

static bool char_is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool char_is_alnum(char c) {
        return char_is_lower(c) || char_is_upper(c) || char_is_digit(c);
}

/* [A-Z][A-Za-z0-9]* */
static bool member_name_is_valid(const char *s, size_t n) {
        if (n == 0 || !char_is_upper(s[0]))
                return false;

        for (size_t i = 1; i < n; i++)
                if (!char_is_alnum(s[i]))
                        return false;

        return true;
}

/* [A-Za-z](_?[A-Za-z0-9])* */
static bool field_name_is_valid(const char *s, size_t n) {
        if (n == 0 || !(char_is_lower(s[0]) || char_is_upper(s[0])))
                return false;

        for (size_t i = 1; i < n; i++) {
                if (char_is_alnum(s[i]))
                        continue;
                /* An underscore must sit between two letters or digits. */
                if (s[i] != '_' || i + 1 >= n || !char_is_alnum(s[i + 1]))
                        return false;
        }

        return true;
}

/* Dot-separated segments, at least two: the first is [A-Za-z]([-]*[A-Za-z0-9])*,
 * the others [A-Za-z0-9]([-]*[A-Za-z0-9])*. The varlink.org grammar allows
 * lowercase only, but names like "io.systemd.Hostname" are common practice
 * (and what systemd accepts), so uppercase letters are let through. */
static bool interface_name_is_valid(const char *s, size_t n) {
        const char *end = s + n;
        size_t segments = 0;

        for (;;) {
                const char *e = memchr(s, '.', end - s);
                if (!e)
                        e = end;

                if (e == s)
                        return false;
                if (segments == 0 && char_is_digit(s[0]))
                        return false;
                if (s[0] == '-' || e[-1] == '-')
                        return false;
                for (const char *c = s; c < e; c++)
                        if (!char_is_alnum(*c) && *c != '-')
                                return false;

                segments++;
                if (e == end)
                        break;
                s = e + 1;
        }

        return segments >= 2;
}

/* Parser */

typedef struct Parser {
        const char *p;
        unsigned line, column; /* of *p, 1-based */
        unsigned error_line, error_column;
} Parser;

/* A word of the text, not copied. */
typedef struct Token {
        const char *s;
        size_t n;
        unsigned line, column;
} Token;

static int parser_fail_at(Parser *P, unsigned line, unsigned column) {
        P->error_line = line;
        P->error_column = column;
        return -EBADMSG;
}

static int parser_fail(Parser *P) {
        return parser_fail_at(P, P->line, P->column);
}

static void parser_advance(Parser *P) {
        if (*P->p == '\0')
                return;

        if (*P->p == '\n') {
                P->line++;
                P->column = 1;
        } else
                P->column++;
        P->p++;
}

/* Skip whitespace and comments. */
static void parser_skip(Parser *P) {
        for (;;) {
                char c = *P->p;

                if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
                        parser_advance(P);
                else if (c == '#')
                        while (*P->p != '\0' && *P->p != '\n')
                                parser_advance(P);
                else
                        return;
        }
}

static bool parser_consume(Parser *P, char c) {
        parser_skip(P);
        if (*P->p != c)
                return false;
        parser_advance(P);
        return true;
}

static int parser_expect(Parser *P, char c) {
        if (!parser_consume(P, c))
                return parser_fail(P);
        return 0;
}

/* Read a word of letters, digits and underscores (plus dots and dashes if
 * `dotted`); fails where the word should have started if there is none. */
static int parser_word(Parser *P, bool dotted, Token *ret) {
        Token t;

        parser_skip(P);
        t = (Token){
                .s = P->p,
                .line = P->line,
                .column = P->column,
        };

        for (;;) {
                char c = *P->p;

                if (char_is_alnum(c) || c == '_' || (dotted && (c == '.' || c == '-')))
                        parser_advance(P);
                else
                        break;
        }

        t.n = P->p - t.s;
        if (t.n == 0)
                return parser_fail(P);

        *ret = t;
        return 0;
}

static bool token_is(const Token *t, const char *word) {
        return strlen(word) == t->n && strneq(t->s, word, t->n);
}

static char *token_dup(const Token *t) {
        return strndup(t->s, t->n);
}

static int parse_type(Parser *P, unsigned depth, IdlType **ret);

static bool fields_contain(const IdlField *fields, size_t n, const Token *name) {
        for (size_t i = 0; i < n; i++)
                if (token_is(name, fields[i].name))
                        return true;
        return false;
}

/* "(" [ name ":" type { "," name ":" type } ] ")" or, if `allow_enum`,
 * "(" name { "," name } ")". Fills in `t`, which is a fresh IdlType. */
static int parse_struct_or_enum(Parser *P, unsigned depth, bool allow_enum, IdlType *t) {
        int r;

        if (depth > VARLINK_IDL_DEPTH_MAX)
                return parser_fail(P);

        r = parser_expect(P, '(');
        if (r < 0)
                return r;

        t->kind = IDL_STRUCT;
        if (parser_consume(P, ')'))
                return 0;

        for (;;) {
                _cleanup_(idl_type_freep) IdlType *field_type = NULL;
                _cleanup_free_ char *name = NULL;
                IdlField *fields;
                Token tok;

                r = parser_word(P, false, &tok);
                if (r < 0)
                        return r;
                if (!field_name_is_valid(tok.s, tok.n))
                        return parser_fail_at(P, tok.line, tok.column);
                if (fields_contain(t->fields, t->n_fields, &tok))
                        return parser_fail_at(P, tok.line, tok.column);

                if (t->n_fields == 0) {
                        /* The first entry decides between struct and enum. */
                        parser_skip(P);
                        if (*P->p != ':') {
                                if (!allow_enum)
                                        return parser_fail(P);
                                t->kind = IDL_ENUM;
                        }
                }

                if (t->kind == IDL_STRUCT) {
                        r = parser_expect(P, ':');
                        if (r < 0)
                                return r;

                        r = parse_type(P, depth + 1, &field_type);
                        if (r < 0)
                                return r;
                }

                name = token_dup(&tok);
                if (!name)
                        return -ENOMEM;

                fields = array_grow(t->fields, &t->n_fields_allocated, t->n_fields + 1, sizeof(IdlField));
                if (!fields)
                        return -ENOMEM;
                t->fields = fields;
                t->fields[t->n_fields++] = (IdlField){
                        .name = TAKE_PTR(name),
                        .type = TAKE_PTR(field_type),
                };

                if (parser_consume(P, ')'))
                        return 0;
                r = parser_expect(P, ',');
                if (r < 0)
                        return r;
        }
}

static int parse_type(Parser *P, unsigned depth, IdlType **ret) {
        _cleanup_(idl_type_freep) IdlType *t = NULL;
        bool nullable = false;
        int r;

        parser_skip(P);
        if (depth > VARLINK_IDL_DEPTH_MAX)
                return parser_fail(P);

        if (*P->p == '?') {
                nullable = true;
                parser_advance(P);
                parser_skip(P);
                if (*P->p == '?')
                        return parser_fail(P);
        }

        t = idl_type_new(_IDL_KIND_INVALID);
        if (!t)
                return -ENOMEM;

        if (*P->p == '[') {
                parser_advance(P);
                if (parser_consume(P, ']'))
                        t->kind = IDL_ARRAY;
                else {
                        Token tok;

                        r = parser_word(P, false, &tok);
                        if (r < 0)
                                return r;
                        if (!token_is(&tok, "string"))
                                return parser_fail_at(P, tok.line, tok.column);

                        r = parser_expect(P, ']');
                        if (r < 0)
                                return r;

                        t->kind = IDL_MAP;
                }

                r = parse_type(P, depth + 1, &t->element);
                if (r < 0)
                        return r;

        } else if (*P->p == '(') {
                r = parse_struct_or_enum(P, depth + 1, true, t);
                if (r < 0)
                        return r;

        } else {
                static const struct {
                        const char *word;
                        IdlKind kind;
                } builtins[] = {
                        { "bool", IDL_BOOL },     { "int", IDL_INT },       { "float", IDL_FLOAT },
                        { "string", IDL_STRING }, { "object", IDL_OBJECT },
                };
                Token tok;

                r = parser_word(P, false, &tok);
                if (r < 0)
                        return r;

                for (size_t i = 0; i < ELEMENTSOF(builtins); i++)
                        if (token_is(&tok, builtins[i].word)) {
                                t->kind = builtins[i].kind;
                                break;
                        }

                if (t->kind == _IDL_KIND_INVALID) {
                        if (!member_name_is_valid(tok.s, tok.n))
                                return parser_fail_at(P, tok.line, tok.column);

                        t->kind = IDL_NAMED;
                        t->name = token_dup(&tok);
                        if (!t->name)
                                return -ENOMEM;
                        t->line = tok.line;
                        t->column = tok.column;
                }
        }

        t->nullable = nullable;
        *ret = TAKE_PTR(t);
        return 0;
}

static bool interface_has_member(const VarlinkIdlInterface *iface, const Token *name) {
        if (fields_contain(iface->types, iface->n_types, name) || fields_contain(iface->errors, iface->n_errors, name))
                return true;

        for (size_t i = 0; i < iface->n_methods; i++)
                if (token_is(name, iface->methods[i].name))
                        return true;

        return false;
}

static const IdlType *interface_find_type(const VarlinkIdlInterface *iface, const char *name) {
        for (size_t i = 0; i < iface->n_types; i++)
                if (streq(iface->types[i].name, name))
                        return iface->types[i].type;
        return NULL;
}

/* Point every named reference in `t` at its declaration. */
static int resolve_type(Parser *P, const VarlinkIdlInterface *iface, IdlType *t) {
        int r;

        if (!t)
                return 0;

        if (t->kind == IDL_NAMED) {
                t->target = interface_find_type(iface, t->name);
                if (!t->target)
                        return parser_fail_at(P, t->line, t->column);
        }

        r = resolve_type(P, iface, t->element);
        if (r < 0)
                return r;

        for (size_t i = 0; i < t->n_fields; i++) {
                r = resolve_type(P, iface, t->fields[i].type);
                if (r < 0)
                        return r;
        }

        return 0;
}

static int resolve_interface(Parser *P, VarlinkIdlInterface *iface) {
        int r;

        for (size_t i = 0; i < iface->n_types; i++) {
                r = resolve_type(P, iface, iface->types[i].type);
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < iface->n_methods; i++) {
                r = resolve_type(P, iface, iface->methods[i].input);
                if (r < 0)
                        return r;
                r = resolve_type(P, iface, iface->methods[i].output);
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < iface->n_errors; i++) {
                r = resolve_type(P, iface, iface->errors[i].type);
                if (r < 0)
                        return r;
        }

        return 0;
}

/* A "type" or "error" member, after its keyword and name. */
static int parse_named_member(Parser *P, bool allow_enum, const Token *name, IdlField **array, size_t *n,
                              size_t *allocated) {
        _cleanup_(idl_type_freep) IdlType *t = NULL;
        _cleanup_free_ char *s = NULL;
        IdlField *a;
        int r;

        t = idl_type_new(IDL_STRUCT);
        if (!t)
                return -ENOMEM;

        r = parse_struct_or_enum(P, 1, allow_enum, t);
        if (r < 0)
                return r;

        s = token_dup(name);
        if (!s)
                return -ENOMEM;

        a = array_grow(*array, allocated, *n + 1, sizeof(IdlField));
        if (!a)
                return -ENOMEM;
        *array = a;
        a[(*n)++] = (IdlField){
                .name = TAKE_PTR(s),
                .type = TAKE_PTR(t),
        };

        return 0;
}

static int parse_method(Parser *P, VarlinkIdlInterface *iface, const Token *name) {
        _cleanup_(idl_type_freep) IdlType *input = NULL, *output = NULL;
        _cleanup_free_ char *s = NULL;
        VarlinkIdlMethod *a;
        int r;

        input = idl_type_new(IDL_STRUCT);
        output = idl_type_new(IDL_STRUCT);
        if (!input || !output)
                return -ENOMEM;

        r = parse_struct_or_enum(P, 1, false, input);
        if (r < 0)
                return r;

        parser_skip(P);
        if (P->p[0] != '-' || P->p[1] != '>')
                return parser_fail(P);
        parser_advance(P);
        parser_advance(P);

        r = parse_struct_or_enum(P, 1, false, output);
        if (r < 0)
                return r;

        s = token_dup(name);
        if (!s)
                return -ENOMEM;

        a = array_grow(iface->methods, &iface->n_methods_allocated, iface->n_methods + 1, sizeof(VarlinkIdlMethod));
        if (!a)
                return -ENOMEM;
        iface->methods = a;
        iface->methods[iface->n_methods++] = (VarlinkIdlMethod){
                .name = TAKE_PTR(s),
                .input = TAKE_PTR(input),
                .output = TAKE_PTR(output),
        };

        return 0;
}

static int parse_interface(Parser *P, VarlinkIdlInterface *iface) {
        Token tok;
        int r;

        r = parser_word(P, false, &tok);
        if (r < 0)
                return r;
        if (!token_is(&tok, "interface"))
                return parser_fail_at(P, tok.line, tok.column);

        r = parser_word(P, true, &tok);
        if (r < 0)
                return r;
        if (!interface_name_is_valid(tok.s, tok.n))
                return parser_fail_at(P, tok.line, tok.column);

        iface->name = token_dup(&tok);
        if (!iface->name)
                return -ENOMEM;

        for (;;) {
                Token keyword, name;

                parser_skip(P);
                if (*P->p == '\0')
                        break;

                r = parser_word(P, false, &keyword);
                if (r < 0)
                        return r;
                if (!token_is(&keyword, "type") && !token_is(&keyword, "method") && !token_is(&keyword, "error"))
                        return parser_fail_at(P, keyword.line, keyword.column);

                r = parser_word(P, false, &name);
                if (r < 0)
                        return r;
                if (!member_name_is_valid(name.s, name.n))
                        return parser_fail_at(P, name.line, name.column);
                if (interface_has_member(iface, &name))
                        return parser_fail_at(P, name.line, name.column);

                if (token_is(&keyword, "type"))
                        r = parse_named_member(P, true, &name, &iface->types, &iface->n_types,
                                               &iface->n_types_allocated);
                else if (token_is(&keyword, "error"))
                        r = parse_named_member(P, false, &name, &iface->errors, &iface->n_errors,
                                               &iface->n_errors_allocated);
                else
                        r = parse_method(P, iface, &name);
                if (r < 0)
                        return r;
        }

        /* An interface declares at least one member. */
        if (iface->n_types + iface->n_methods + iface->n_errors == 0)
                return parser_fail(P);

        return resolve_interface(P, iface);
}

int varlink_idl_parse(const char *text, VarlinkIdlInterface **ret, unsigned *ret_line, unsigned *ret_column) {
        _cleanup_(varlink_idl_interface_freep) VarlinkIdlInterface *iface = NULL;
        Parser P;
        int r;

        if (!text || !ret)
                return -EINVAL;

        iface = calloc(1, sizeof(*iface));
        if (!iface)
                return -ENOMEM;

        P = (Parser){
                .p = text,
                .line = 1,
                .column = 1,
        };

        r = parse_interface(&P, iface);
        if (r == -EBADMSG) {
                if (ret_line)
                        *ret_line = P.error_line;
                if (ret_column)
                        *ret_column = P.error_column;
        }
        if (r < 0)
                return r;

        *ret = TAKE_PTR(iface);
        return 0;
}

const char *varlink_idl_interface_name(const VarlinkIdlInterface *iface) {
        return iface ? iface->name : NULL;
}

const VarlinkIdlMethod *varlink_idl_interface_find_method(const VarlinkIdlInterface *iface, const char *name) {
        if (!iface || !name)
                return NULL;

        for (size_t i = 0; i < iface->n_methods; i++)
                if (streq(iface->methods[i].name, name))
                        return iface->methods + i;

        return NULL;
}

size_t varlink_idl_interface_n_methods(const VarlinkIdlInterface *iface) {
        return iface ? iface->n_methods : 0;
}

const VarlinkIdlMethod *varlink_idl_interface_method(const VarlinkIdlInterface *iface, size_t i) {
        if (!iface || i >= iface->n_methods)
                return NULL;

        return iface->methods + i;
}

const char *varlink_idl_method_name(const VarlinkIdlMethod *m) {
        return m ? m->name : NULL;
}

static const IdlType *interface_find_error(const VarlinkIdlInterface *iface, const char *name) {
        for (size_t i = 0; i < iface->n_errors; i++)
                if (streq(iface->errors[i].name, name))
                        return iface->errors[i].type;
        return NULL;
}

bool varlink_idl_interface_has_error(const VarlinkIdlInterface *iface, const char *name) {
        if (!iface || !name)
                return false;

        return interface_find_error(iface, name);
}

/* Validation */

static int validate_struct(const IdlType *t, json_object *v, unsigned depth, const char **ret_bad_field);

static int validate_value(const IdlType *t, json_object *v, unsigned depth) {
        if (depth > VARLINK_IDL_DEPTH_MAX)
                return -EINVAL;

        /* json-c represents JSON null as a NULL pointer. */
        if (json_object_get_type(v) == json_type_null)
                return t->nullable ? 0 : -EINVAL;

        if (t->kind == IDL_NAMED)
                t = t->target;

        switch (t->kind) {

        case IDL_BOOL:
                return json_object_is_type(v, json_type_boolean) ? 0 : -EINVAL;

        case IDL_INT:
                return json_object_is_type(v, json_type_int) ? 0 : -EINVAL;

        case IDL_FLOAT:
                return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double) ? 0 : -EINVAL;

        case IDL_STRING:
                return json_object_is_type(v, json_type_string) ? 0 : -EINVAL;

        case IDL_OBJECT:
                return json_object_is_type(v, json_type_object) ? 0 : -EINVAL;

        case IDL_ENUM: {
                const char *s;

                if (!json_object_is_type(v, json_type_string))
                        return -EINVAL;

                s = json_object_get_string(v);
                for (size_t i = 0; i < t->n_fields; i++)
                        if (streq(t->fields[i].name, s))
                                return 0;

                return -EINVAL;
        }

        case IDL_STRUCT:
                return validate_struct(t, v, depth, NULL);

        case IDL_ARRAY: {
                size_t n;

                if (!json_object_is_type(v, json_type_array))
                        return -EINVAL;

                n = json_object_array_length(v);
                for (size_t i = 0; i < n; i++) {
                        int r;

                        r = validate_value(t->element, json_object_array_get_idx(v, i), depth + 1);
                        if (r < 0)
                                return r;
                }

                return 0;
        }

        case IDL_MAP: {
                struct json_object_iterator it, end;

                if (!json_object_is_type(v, json_type_object))
                        return -EINVAL;

                end = json_object_iter_end(v);
                for (it = json_object_iter_begin(v); !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
                        int r;

                        r = validate_value(t->element, json_object_iter_peek_value(&it), depth + 1);
                        if (r < 0)
                                return r;
                }

                return 0;
        }

        default:
                return -EINVAL;
        }
}

static bool struct_has_field(const IdlType *t, const char *name) {
        for (size_t i = 0; i < t->n_fields; i++)
                if (streq(t->fields[i].name, name))
                        return true;
        return false;
}

/* Check an object (NULL: {}) against a struct type. */
static int validate_struct(const IdlType *t, json_object *v, unsigned depth, const char **ret_bad_field) {
        size_t n_present = 0;

        if (ret_bad_field)
                *ret_bad_field = NULL;

        if (depth > VARLINK_IDL_DEPTH_MAX)
                return -EINVAL;

        /* NULL (JSON null, or no parameters at all) is taken as {}; callers
         * have already refused null where a struct is required. */
        if (v && !json_object_is_type(v, json_type_object))
                return -EINVAL;

        /* Unknown keys first: if every key is a declared field, the number
         * of declared fields present equals the number of keys. */
        if (v) {
                for (size_t i = 0; i < t->n_fields; i++)
                        if (json_object_object_get_ex(v, t->fields[i].name, NULL))
                                n_present++;

                if (n_present != (size_t) json_object_object_length(v)) {
                        struct json_object_iterator it, end;

                        end = json_object_iter_end(v);
                        for (it = json_object_iter_begin(v); !json_object_iter_equal(&it, &end);
                             json_object_iter_next(&it)) {
                                const char *key = json_object_iter_peek_name(&it);

                                if (!struct_has_field(t, key)) {
                                        if (ret_bad_field)
                                                *ret_bad_field = key;
                                        return -EINVAL;
                                }
                        }
                }
        }

        for (size_t i = 0; i < t->n_fields; i++) {
                json_object *f = NULL;
                int r;

                if (v)
                        (void) json_object_object_get_ex(v, t->fields[i].name, &f);

                r = validate_value(t->fields[i].type, f, depth + 1);
                if (r < 0) {
                        if (ret_bad_field)
                                *ret_bad_field = t->fields[i].name;
                        return r;
                }
        }

        return 0;
}

int varlink_idl_validate_method_input(const VarlinkIdlMethod *m, json_object *params, const char **ret_bad_field) {
        if (!m) {
                if (ret_bad_field)
                        *ret_bad_field = NULL;
                return -EINVAL;
        }

        return validate_struct(m->input, params, 0, ret_bad_field);
}

int varlink_idl_validate_method_output(const VarlinkIdlMethod *m, json_object *params, const char **ret_bad_field) {
        if (!m) {
                if (ret_bad_field)
                        *ret_bad_field = NULL;
                return -EINVAL;
        }

        return validate_struct(m->output, params, 0, ret_bad_field);
}

int varlink_idl_validate_error(const VarlinkIdlInterface *iface, const char *error_name, json_object *params,
                               const char **ret_bad_field) {
        const IdlType *t;

        if (ret_bad_field)
                *ret_bad_field = NULL;

        if (!iface || !error_name)
                return -EINVAL;

        t = interface_find_error(iface, error_name);
        if (!t)
                return -ENOENT;

        return validate_struct(t, params, 0, ret_bad_field);
}
