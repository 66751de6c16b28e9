/* SPDX-License-Identifier: Apache-2.0 */
/* bundled.h - where the data shipped with Proteus (data/ in the source tree,
 * share/proteus once installed) is found at run time. */
#ifndef PQ_BUNDLED_H
#define PQ_BUNDLED_H

#include <stdbool.h>
#include <stddef.h>

/* Find the bundled file `rel` ("proteins/calib_sample.fasta") and write its
 * path into buf (n bytes). Places, in order:
 *   1. $PROTEUS_DATA_DIR when set and not empty: the only place then (an
 *      explicit choice is not second-guessed);
 *   2. ../share/proteus beside the executable (an install, also one moved
 *      to another prefix or staged with DESTDIR);
 *   3. the install's data folder compiled in (PREFIX/share/proteus);
 *   4. the data/ folder of the source tree the build came from, compiled in
 *      (a build folder anywhere, `meson setup /elsewhere/build`);
 *   5. ../data and ../../data beside the executable (a build folder inside
 *      a source tree that has moved since).
 * Returns false when none holds a readable file; tried (tn bytes, may be
 * NULL) then lists every place looked at, separated by ", ". */
bool pq_bundled_find(const char *rel, char *buf, size_t n, char *tried, size_t tn);

#endif
