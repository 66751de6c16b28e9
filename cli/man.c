/* SPDX-License-Identifier: Apache-2.0 */
/* man.c - troff for the manual pages (man.h). */
#include "cli/man.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "pq_config.h"

void pq_man_text(FILE *f, const char *s, size_t len)
{
    bool bol = true;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (bol && (c == '.' || c == '\'')) fputs("\\&", f);
        if (c == '\\') fputs("\\e", f);
        else if (c == '-') fputs("\\-", f);
        else fputc(c, f);
        bol = c == '\n';
    }
}

void pq_man_puts(FILE *f, const char *s)
{
    pq_man_text(f, s, strlen(s));
}

void pq_man_header(FILE *f, const char *name, const char *summary)
{
    char up[64];
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof up; i++) up[i] = (char)toupper((unsigned char)name[i]);
    up[i] = '\0';
    fprintf(f, ".TH %s 1 \"\" \"proteus %s\" \"Proteus manual\"\n.SH NAME\n", up, PQ_VERSION);
    pq_man_puts(f, name);
    fputs(" \\- ", f);
    pq_man_puts(f, summary);
    fputc('\n', f);
}

void pq_man_paragraphs(FILE *f, const char *s)
{
    while (*s) {
        const char *blank = strstr(s, "\n\n");
        size_t len = blank ? (size_t)(blank - s) : strlen(s);
        pq_man_text(f, s, len);
        fputc('\n', f);
        if (!blank) break;
        s = blank + 2;
        while (*s == '\n') s++;
        if (*s) fputs(".PP\n", f);
    }
}
