/* SPDX-License-Identifier: Apache-2.0 */
/* commands.h - the proteus subcommands. Each parses its own options (argv[0]
 * is the subcommand name), prints its own --help, and returns a process exit
 * status (pq_status_exit_code of the failure, 0 on success). */
#ifndef PQ_COMMANDS_H
#define PQ_COMMANDS_H

int pq_cmd_synth(int argc, char **argv);
int pq_cmd_quantize(int argc, char **argv);
int pq_cmd_inspect(int argc, char **argv);
int pq_cmd_monitor(int argc, char **argv);
int pq_cmd_embed(int argc, char **argv);
int pq_cmd_score(int argc, char **argv);
int pq_cmd_evaluate(int argc, char **argv);
int pq_cmd_bench(int argc, char **argv);
int pq_cmd_calibrate(int argc, char **argv);
int pq_cmd_export(int argc, char **argv);
int pq_cmd_qat(int argc, char **argv);
int pq_cmd_report(int argc, char **argv);
int pq_cmd_optimize(int argc, char **argv);

/* Print "proteus: <class>: <detail>" for a failed status to stderr and return
 * its exit code. */
int pq_cli_fail(int status);

#endif
