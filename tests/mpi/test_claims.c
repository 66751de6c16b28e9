/* SPDX-License-Identifier: Apache-2.0 */
/* test_claims.c - worker/claims.c on 3 real MPI ranks: every unit is run
 * exactly once, by the rank that claimed it; a slowed rank's units are taken
 * over from the end of its list, so what it ran itself is a prefix of its
 * plan; a rank that does not share (another machine) keeps exactly its own
 * units and nobody takes them. Run under `mpiexec -n 3`. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/claims.h"

#define N_UNITS 600

static int g_rank;

#define CHECK(cond, ...)                                                                             \
    do {                                                                                             \
        if (!(cond)) {                                                                               \
            fprintf(stderr, "rank %d: %s:%d: %s: ", g_rank, __FILE__, __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                            \
            fprintf(stderr, "\n");                                                                   \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                            \
        }                                                                                            \
    } while (0)

static void nap_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

/* One round: every rank runs its own units (claimed) then steals; `slow`
 * naps 300 us per unit. ran[u] = 1 for the units this rank ran. */
static void round_trip(const bool *same_node, int slow, int *stolen)
{
    pq_plan p;
    memset(&p, 0, sizeof p);
    pq_unit *units = calloc(N_UNITS, sizeof *units);
    int *ran = calloc(N_UNITS, sizeof *ran), *count = calloc(N_UNITS, sizeof *count);
    CHECK(units && ran && count, "out of memory");
    for (int u = 0; u < N_UNITS; u++) units[u] = (pq_unit){.id = u, .rank = u % 3, .n_rows = 1, .cost = 1};
    p.n_units = N_UNITS;
    p.units = units;
    p.n_ranks = 3;
    pq_claims *c = NULL;
    CHECK(pq_claims_open(MPI_COMM_WORLD, &p, same_node, &c) == PQ_OK, "open failed");
    int sharing = same_node[0] + same_node[1] + same_node[2];
    CHECK((c != NULL) == (same_node[g_rank] && sharing > 1), "sharing %d but claims %p", same_node[g_rank],
          (void *)c);
    MPI_Barrier(MPI_COMM_WORLD);
    *stolen = 0;
    for (int u = 0; u < N_UNITS; u++) {
        if (units[u].rank != g_rank || !pq_claims_take(c, &p, u, g_rank)) continue;
        ran[u] = 1;
        if (g_rank == slow) nap_us(300);
    }
    for (int u; (u = pq_claims_steal(c, &p, g_rank)) >= 0;) {
        CHECK(units[u].rank != g_rank && same_node[units[u].rank], "stole unit %d of rank %d", u,
              units[u].rank);
        CHECK(!ran[u], "unit %d stolen twice", u);
        ran[u] = 1;
        ++*stolen;
    }
    for (int u = 0; u < N_UNITS; u++)
        if (ran[u])
            CHECK(pq_claims_holder(c, &p, u) == g_rank, "unit %d: holder %d", u, pq_claims_holder(c, &p, u));
    MPI_Barrier(MPI_COMM_WORLD); /* nobody closes while another still claims */
    pq_claims_close(c);
    /* exactly once over all ranks */
    MPI_Allreduce(ran, count, N_UNITS, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    for (int u = 0; u < N_UNITS; u++) CHECK(count[u] == 1, "unit %d ran %d times", u, count[u]);
    /* a rank runs its own from the front, thieves take from the back */
    int k = 0;
    while (k < N_UNITS && !(units[k].rank == g_rank && !ran[k])) k++;
    for (int u = k; u < N_UNITS; u++)
        if (units[u].rank == g_rank) CHECK(!ran[u], "own unit %d ran after a gap at %d", u, k);
    /* another machine's rank keeps exactly its own */
    for (int u = 0; u < N_UNITS; u++)
        if (!same_node[units[u].rank]) CHECK(ran[u] == (units[u].rank == g_rank), "remote unit %d", u);
    free(units);
    free(ran);
    free(count);
}

int main(int argc, char **argv)
{
    int n = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    CHECK(n == 3, "run with 3 ranks, not %d", n);
    int stolen = 0, total = 0;
    /* all on one machine, rank 1 slow: the others take over its tail */
    bool all[3] = {true, true, true};
    round_trip(all, 1, &stolen);
    MPI_Allreduce(&stolen, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    CHECK(total > 0, "nothing was taken over from the slowed rank");
    /* rank 2 elsewhere, rank 0 slow: only rank 1 may take rank 0's units */
    bool two[3] = {true, true, false};
    round_trip(two, 0, &stolen);
    if (g_rank == 2) CHECK(stolen == 0, "the remote rank stole %d", stolen);
    MPI_Allreduce(&stolen, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    CHECK(total > 0, "rank 1 took over none of rank 0's units");
    /* only one rank shares: no window, the plan as is */
    bool one[3] = {true, false, false};
    round_trip(one, -1, &stolen);
    CHECK(stolen == 0, "stole %d without sharing", stolen);
    if (g_rank == 0) printf("claims: ok\n");
    MPI_Finalize();
    return 0;
}
