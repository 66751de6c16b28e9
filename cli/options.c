/* SPDX-License-Identifier: Apache-2.0 */
/* options.c - one parser for every command's option table, its error
 * messages and its --help. */
#include "cli/options.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/man.h"

#define MAX_OPTS 64

/* One option of the flattened table: groups opened, offsets absolute. */
typedef struct flat_opt {
    const pq_cli_opt *o;
    size_t offset;
} flat_opt;

static int flatten(const pq_cli_opt *t, size_t base, flat_opt *out, int n)
{
    for (; t && t->name; t++) {
        if (t->kind == PQ_CLI_GROUP) {
            n = flatten(t->group, base + t->offset, out, n);
        } else if (n < MAX_OPTS) {
            out[n].o = t;
            out[n++].offset = base + t->offset;
        }
    }
    return n;
}

static bool takes_value(const pq_cli_opt *o)
{
    return o->kind != PQ_CLI_FLAG && !(o->kind == PQ_CLI_CONFIG && o->value);
}

static double upper(const pq_cli_opt *o)
{
    return o->hi != 0 ? o->hi : o->kind == PQ_CLI_INT ? (double)INT_MAX : INFINITY;
}

/* "expected ..." for a value of o. */
static void expectation(const pq_cli_opt *o, char *buf, size_t n)
{
    switch (o->kind) {
    case PQ_CLI_I64:
    case PQ_CLI_INT:
        if (o->hi == 0) snprintf(buf, n, "expected an integer >= %.0f", o->lo);
        else snprintf(buf, n, "expected an integer in %.0f..%.0f", o->lo, o->hi);
        break;
    case PQ_CLI_U64: snprintf(buf, n, "expected an unsigned integer"); break;
    case PQ_CLI_BYTES:
        snprintf(buf, n, "expected a size of at least %.0f bytes like 65536 or 4M", o->lo);
        break;
    case PQ_CLI_F64:
        if (isinf(upper(o)))
            snprintf(buf, n, "expected a number %s %g", o->flags & PQ_CLI_LO_OPEN ? ">" : ">=", o->lo);
        else
            snprintf(buf, n, "expected a number in %c%g, %g%c", o->flags & PQ_CLI_LO_OPEN ? '(' : '[', o->lo,
                     o->hi, o->flags & PQ_CLI_HI_OPEN ? ')' : ']');
        break;
    case PQ_CLI_CHOICE: {
        size_t k = (size_t)snprintf(buf, n, "expected");
        for (int i = 0; o->choices[i] && k < n; i++)
            k += (size_t)snprintf(buf + k, n - k, "%s %s", i == 0 ? "" : o->choices[i + 1] ? "," : " or",
                                  o->choices[i]);
        break;
    }
    default: buf[0] = '\0';
    }
}

/* Bytes with an optional k/M/G (binary) suffix and an optional B or iB. */
static bool parse_bytes(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end), mul = 1;
    if (end == s) return false;
    if (*end == 'k' || *end == 'K') mul = 1024.0;
    else if (*end == 'M') mul = 1024.0 * 1024;
    else if (*end == 'G') mul = 1024.0 * 1024 * 1024;
    if (mul > 1) end++;
    if (*end == 'i') end++;
    if (*end == 'B') end++;
    *out = floor(v * mul);
    return !*end && isfinite(*out);
}

/* Store the value v of option o at p; false when v is not valid for it. */
static bool store(const pq_cli_opt *o, char *p, const char *v)
{
    char *end;
    errno = 0;
    switch (o->kind) {
    case PQ_CLI_FLAG: *(bool *)p = true; return true;
    case PQ_CLI_STR: *(const char **)p = v; return true;
    case PQ_CLI_I64:
    case PQ_CLI_INT: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end || (double)x < o->lo || (double)x > upper(o)) return false;
        if (o->kind == PQ_CLI_INT) *(int *)(void *)p = (int)x;
        else *(int64_t *)(void *)p = x;
        return true;
    }
    case PQ_CLI_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[strspn(v, " \t")] == '-') return false;
        *(uint64_t *)p = x;
        return true;
    }
    case PQ_CLI_BYTES: {
        double x;
        if (!parse_bytes(v, &x) || x < o->lo || x > (isinf(upper(o)) ? 1e15 : o->hi)) return false;
        *(int64_t *)p = (int64_t)x;
        return true;
    }
    case PQ_CLI_F64: {
        double x = strtod(v, &end);
        if (end == v || *end || isnan(x)) return false;
        if (x < o->lo || (x == o->lo && (o->flags & PQ_CLI_LO_OPEN))) return false;
        if (x > upper(o) || (x == o->hi && (o->flags & PQ_CLI_HI_OPEN))) return false;
        *(double *)p = x;
        return true;
    }
    case PQ_CLI_CHOICE:
        for (int i = 0; o->choices[i]; i++)
            if (!strcmp(v, o->choices[i])) { *(int *)p = i; return true; }
        return false;
    case PQ_CLI_CONFIG: {
        pq_cli_config *a = (pq_cli_config *)(void *)p;
        if (a->n == PQ_CLI_MAX_CONFIG) return false;
        a->key[a->n] = o->key;
        a->value[a->n++] = o->value ? o->value : v;
        return true;
    }
    default: return false;
    }
}

int pq_cli_parse(const pq_cli_cmd *c, int argc, char **argv, void *o)
{
    flat_opt t[MAX_OPTS];
    int n = flatten(c->opts, 0, t, 0);
    struct option lo[MAX_OPTS + 2];
    char shorts[3 * MAX_OPTS + 4] = ":h";
    size_t k = 2;
    for (int i = 0; i < n; i++) {
        bool val = takes_value(t[i].o);
        lo[i] = (struct option){t[i].o->name, val ? required_argument : no_argument, NULL, 256 + i};
        if (t[i].o->letter) {
            shorts[k++] = t[i].o->letter;
            if (val) shorts[k++] = ':';
        }
    }
    shorts[k] = '\0';
    lo[n] = (struct option){"help", optional_argument, NULL, 'h'};
    lo[n + 1] = (struct option){0, 0, 0, 0};
    char *base = o;
    int ch;
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        if (ch == 'h') {
            if (optarg && strcmp(optarg, "man"))
                return pq_cli_usage_error(c->name, "--help takes no value but 'man' (a manual page)");
            if (optarg) pq_cli_man(c, o, stdout);
            else pq_cli_help(c, o, stdout);
            return 0;
        }
        if (ch == ':') return pq_cli_usage_error(c->name, "option '%s' needs a value", argv[optind - 1]);
        int i = ch >= 256 ? ch - 256 : -1;
        for (int j = 0; i < 0 && j < n; j++)
            if (t[j].o->letter == ch) i = j;
        if (i < 0) return pq_cli_usage_error(c->name, "unknown option '%s'", argv[optind - 1]);
        const pq_cli_opt *op = t[i].o;
        if (!store(op, base + t[i].offset, optarg)) {
            if (op->kind == PQ_CLI_CONFIG) return pq_cli_usage_error(c->name, "too many options");
            char why[160];
            expectation(op, why, sizeof why);
            return pq_cli_usage_error(c->name, "--%s '%s': %s", op->name, optarg, why);
        }
    }
    if (c->operand) {
        if (argc - optind != 1) return pq_cli_usage_error(c->name, "%s", c->operand_error);
        *(const char **)(void *)(base + c->operand_offset) = argv[optind];
    } else if (optind < argc) {
        return pq_cli_usage_error(c->name, "unexpected argument '%s'", argv[optind]);
    }
    for (int i = 0; i < n; i++)
        if ((t[i].o->flags & PQ_CLI_REQUIRED) && !*(const char **)(void *)(base + t[i].offset))
            return pq_cli_usage_error(c->name, "--%s is required", t[i].o->name);
    return PQ_CLI_RUN;
}

/* " (default V)" from the target p, into buf; "" when it has none to show. */
static void default_text(const pq_cli_opt *o, const char *p, char *buf, size_t n)
{
    buf[0] = '\0';
    if (!(o->flags & PQ_CLI_SHOW_DEFAULT)) return;
    switch (o->kind) {
    case PQ_CLI_I64:
    case PQ_CLI_BYTES: snprintf(buf, n, " (default %lld)", (long long)*(const int64_t *)(const void *)p); break;
    case PQ_CLI_INT: snprintf(buf, n, " (default %d)", *(const int *)(const void *)p); break;
    case PQ_CLI_U64:
        snprintf(buf, n, " (default %llu)", (unsigned long long)*(const uint64_t *)(const void *)p);
        break;
    case PQ_CLI_F64: snprintf(buf, n, " (default %g)", *(const double *)(const void *)p); break;
    case PQ_CLI_STR: {
        const char *s = *(const char *const *)(const void *)p;
        if (s) snprintf(buf, n, " (default %s)", s);
        break;
    }
    case PQ_CLI_CHOICE: snprintf(buf, n, " (default %s)", o->choices[*(const int *)(const void *)p]); break;
    default: break;
    }
}

/* "-m, --model PATH": the option as --help shows it, into buf. */
static void left_text(const pq_cli_opt *op, char *buf, size_t n)
{
    char l[4] = "";
    if (op->letter) snprintf(l, sizeof l, "-%c,", op->letter);
    snprintf(buf, n, "%s%s--%s%s%s", l, *l ? " " : "", op->name,
             takes_value(op) ? " " : "", takes_value(op) ? (op->meta ? op->meta : "V") : "");
}

void pq_cli_help(const pq_cli_cmd *c, const void *o, FILE *f)
{
    flat_opt t[MAX_OPTS];
    int n = flatten(c->opts, 0, t, 0);
    char left[MAX_OPTS][64];
    int w = 10;
    for (int i = 0; i < n; i++) {
        left_text(t[i].o, left[i], sizeof left[i]);
        int len = (int)strlen(left[i]);
        if (len > w && len <= 26) w = len;
    }
    fprintf(f, "%s\n\n%s\n", c->usage, c->about);
    if (n) fputc('\n', f);
    for (int i = 0; i < n; i++) {
        const pq_cli_opt *op = t[i].o;
        char def[96];
        default_text(op, (const char *)o + t[i].offset, def, sizeof def);
        const char *h = op->help ? op->help : "";
        bool own_line = (int)strlen(left[i]) > w;
        fprintf(f, "  %-*s", w, left[i]);
        if (own_line) fprintf(f, "\n  %-*s", w, "");
        for (;;) {
            const char *nl = strchr(h, '\n');
            int len = nl ? (int)(nl - h) : (int)strlen(h);
            fprintf(f, " %.*s", len, h);
            if (!nl) break;
            fprintf(f, "\n  %-*s", w, "");
            h = nl + 1;
        }
        fprintf(f, "%s\n", def);
    }
    fprintf(f, "  %-*s %s\n", w, "-h, --help", "this text");
    if (c->epilog) fprintf(f, "\n%s\n", c->epilog);
    if (c->more_help) c->more_help(f);
}

void pq_cli_man(const pq_cli_cmd *c, const void *o, FILE *f)
{
    flat_opt t[MAX_OPTS];
    int n = flatten(c->opts, 0, t, 0);
    const char *u = c->usage;
    if (!strncmp(u, "usage: ", 7)) u += 7;
    fputs(".SH SYNOPSIS\n.nf\n", f);
    for (const char *line = u; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        for (int k = 0; k < 7 && len && *line == ' '; k++) { line++; len--; } /* under "usage: " */
        pq_man_text(f, line, len);
        fputc('\n', f);
        line += len + (nl != NULL);
    }
    fputs(".fi\n.SH DESCRIPTION\n", f);
    pq_man_paragraphs(f, c->about);
    fputs(".SH OPTIONS\n", f);
    for (int i = 0; i <= n; i++) {
        char left[64], def[96] = "";
        const char *h = "this text; --help=man: this manual page";
        if (i < n) {
            left_text(t[i].o, left, sizeof left);
            default_text(t[i].o, (const char *)o + t[i].offset, def, sizeof def);
            h = t[i].o->help ? t[i].o->help : "";
        } else {
            snprintf(left, sizeof left, "-h, --help");
        }
        fputs(".TP\n.B ", f);
        pq_man_puts(f, left);
        fputc('\n', f);
        pq_man_puts(f, h);
        pq_man_puts(f, def);
        fputc('\n', f);
    }
    if (c->epilog || c->more_help) {
        fputs(".SH NOTES\n.nf\n", f);
        if (c->epilog) {
            pq_man_puts(f, c->epilog);
            fputc('\n', f);
        }
        if (c->more_help) {
            /* lists known only at run time, as --help prints them */
            char *buf = NULL;
            size_t len = 0;
            FILE *m = open_memstream(&buf, &len);
            if (m) {
                c->more_help(m);
                fclose(m);
                pq_man_text(f, buf, len);
                free(buf);
            }
        }
        fputs(".fi\n", f);
    }
    fputs(".SH EXIT STATUS\n0 on success, else the status of the error class (see\n.BR proteus (1)).\n"
          ".SH SEE ALSO\n.BR proteus (1)\n", f);
}

pq_status pq_cli_config_load(const pq_cli_config *a, pq_config *cfg)
{
    pq_status st = PQ_OK;
    pq_config_defaults(cfg);
    if (a->file && (st = pq_config_load_json(cfg, a->file)) != PQ_OK) return st;
    for (int i = 0; i < a->n && st == PQ_OK; i++) st = pq_config_set(cfg, a->key[i], a->value[i]);
    return st;
}

bool pq_cli_config_has(const pq_cli_config *a, const char *key, const char *value)
{
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->key[i], key) && (!value || !strcmp(a->value[i], value))) return true;
    return false;
}
