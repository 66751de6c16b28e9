/* SPDX-License-Identifier: Apache-2.0 */
/* use_lib.c - a program outside the tree: quantize MODEL into OUT through the
 * installed libproteus and print the tensor count of its statistics. */
#include <stdio.h>
#include <proteus/proteus.h>

int main(int argc, char **argv)
{
    pq_config cfg;
    pq_manager *m = NULL;
    const pq_job_stats *s = NULL;
    if (argc != 3) return 2;
    pq_config_defaults(&cfg);
    pq_status st = pq_config_set(&cfg, "precision", "int4");
    if (!st) st = pq_config_set(&cfg, "group_size", "64");
    if (!st) st = pq_manager_create(&cfg, &m);
    if (!st) st = pq_quantize_model(m, argv[1], argv[2]);
    if (!st) st = pq_get_quantization_stats(m, &s);
    if (!st) printf("quantized %d tensors\n", s->n_quantized);
    else fprintf(stderr, "use_lib: %s: %s\n", pq_strerror(st), pq_err_detail());
    pq_manager_destroy(m);
    pq_config_free(&cfg);
    return st ? 1 : 0;
}
