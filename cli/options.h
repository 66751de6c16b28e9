/* SPDX-License-Identifier: Apache-2.0 */
/* options.h - the command line of every command, as data: one typed table
 * per command (long name, letter, kind, range, target), parsed by one
 * function with one set of error messages (exit status 2), and --help
 * generated from the same table (as Redis describes its commands in one
 * table). A command declares its table and calls pq_cli_parse. */
#ifndef PQ_CLI_OPTIONS_H
#define PQ_CLI_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/pq_err.h"
#include "pipeline/config.h"

typedef enum pq_cli_kind {
    PQ_CLI_FLAG,   /* no value: the bool target becomes true */
    PQ_CLI_STR,    /* const char * target: the value, borrowed from argv */
    PQ_CLI_I64,    /* int64_t target: an integer in [lo, hi] */
    PQ_CLI_INT,    /* int target: an integer in [lo, hi] (hi 0: INT_MAX) */
    PQ_CLI_U64,    /* uint64_t target: any unsigned 64-bit integer */
    PQ_CLI_F64,    /* double target: a number between lo and hi (ends per flags) */
    PQ_CLI_BYTES,  /* int64_t target: bytes, with an optional k, M or G suffix, in [lo, hi] */
    PQ_CLI_CHOICE, /* int target: the index of the value in choices */
    PQ_CLI_CONFIG, /* pq_cli_config target: sets the configuration key `key` to the value, or
                      to `value` when that is set (then the option takes none); applied in
                      order after the --config file, so the command line wins */
    PQ_CLI_GROUP,  /* the options of `group`, their targets relative to offset */
} pq_cli_kind;

enum {
    PQ_CLI_REQUIRED = 1u,     /* PQ_CLI_STR: "--NAME is required" when absent */
    PQ_CLI_LO_OPEN = 2u,      /* PQ_CLI_F64: lo itself is refused */
    PQ_CLI_HI_OPEN = 4u,      /* PQ_CLI_F64: hi itself is refused */
    PQ_CLI_SHOW_DEFAULT = 8u, /* --help appends "(default V)" from the target's value */
};

typedef struct pq_cli_opt {
    const char *name;    /* long name without the dashes; NULL ends a table */
    char letter;         /* short form (-q), 0 for none */
    pq_cli_kind kind;
    size_t offset;       /* of the target in the command's options struct */
    double lo, hi;       /* range of PQ_CLI_I64, _INT, _F64, _BYTES (hi 0: no upper bound) */
    unsigned flags;
    const char *meta;    /* the value's name in --help: "N", "PATH" */
    const char *help;    /* one line; '\n' starts another */
    const char *const *choices;       /* PQ_CLI_CHOICE: names, NULL-terminated */
    const char *key, *value;          /* PQ_CLI_CONFIG */
    const struct pq_cli_opt *group;   /* PQ_CLI_GROUP */
} pq_cli_opt;

/* Configuration keys given on the command line, and the --config file
 * (point a PQ_CLI_STR option at .file). */
#define PQ_CLI_MAX_CONFIG 64
typedef struct pq_cli_config {
    const char *file;
    int n;
    const char *key[PQ_CLI_MAX_CONFIG], *value[PQ_CLI_MAX_CONFIG];
} pq_cli_config;

/* Defaults, then the --config file, then the keys in command-line order,
 * into *cfg (pq_config_free it, also after a failure). PQ_ERR_CONFIG
 * naming the file or key on a bad one. */
pq_status pq_cli_config_load(const pq_cli_config *a, pq_config *cfg);

/* Whether the command line set `key` to `value`. */
bool pq_cli_config_has(const pq_cli_config *a, const char *key, const char *value);

typedef struct pq_cli_cmd {
    const char *name;          /* "embed" */
    const char *usage;         /* "usage: proteus embed ..." lines */
    const char *about;         /* what it does, before the options */
    const pq_cli_opt *opts;
    const char *epilog;        /* after the options; NULL for none */
    void (*more_help)(FILE *f); /* printed last when set (lists known only at run time) */
    const char *operand;       /* exactly one operand (its name) expected, else none */
    size_t operand_offset;     /* const char * target of the operand */
    const char *operand_error; /* the message when there is not exactly one */
} pq_cli_cmd;

/* What pq_cli_parse returns when the command is to run. */
#define PQ_CLI_RUN (-1)

/* Parse argv[1..argc) (argv[0] is the command) into the struct o, whose
 * fields hold the defaults. PQ_CLI_RUN when the command is to run;
 * otherwise the exit status to return: 0 after --help (to stdout), 2 after
 * a usage error ("proteus CMD: config error: ..." on stderr, one line). */
int pq_cli_parse(const pq_cli_cmd *c, int argc, char **argv, void *o);

/* The --help text of c, defaults taken from o (the untouched struct). */
void pq_cli_help(const pq_cli_cmd *c, const void *o, FILE *f);
/* The same as the body of a troff manual page (SYNOPSIS onwards; the caller
 * writes .TH and NAME, cli/man.h): what `--help=man` prints. */
void pq_cli_man(const pq_cli_cmd *c, const void *o, FILE *f);

#endif
