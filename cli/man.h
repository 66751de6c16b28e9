/* SPDX-License-Identifier: Apache-2.0 */
/* man.h - the manual pages, written as troff by the program itself from its
 * own --help tables (`proteus --help=man`, `proteus CMD --help=man`), so the
 * pages and --help never disagree. The build runs these and installs the
 * output (cli/meson.build). */
#ifndef PQ_CLI_MAN_H
#define PQ_CLI_MAN_H

#include <stdio.h>

/* Text as troff: backslashes and dashes escaped, a leading '.' or '\''
 * guarded; each '\n' stays a line break of the source. */
void pq_man_text(FILE *f, const char *s, size_t len);
/* pq_man_text of a NUL-terminated string. */
void pq_man_puts(FILE *f, const char *s);

/* .TH and NAME of page `name` ("proteus-quantize") in section 1 with its
 * one-line summary. */
void pq_man_header(FILE *f, const char *name, const char *summary);

/* Text with blank lines as paragraph breaks (.PP). */
void pq_man_paragraphs(FILE *f, const char *s);

#endif
