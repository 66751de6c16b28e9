/* SPDX-License-Identifier: Apache-2.0 */
/* log.h - levelled logging with a replaceable sink and a rank prefix. */
#ifndef PQ_LOG_H
#define PQ_LOG_H

typedef enum pq_log_level {
    PQ_LOG_ERROR = 0, PQ_LOG_WARN, PQ_LOG_INFO, PQ_LOG_DEBUG, PQ_LOG_TRACE
} pq_log_level;

typedef void (*pq_log_sink)(pq_log_level lvl, const char *line, void *user);

extern pq_log_level pq_log_threshold;

void pq_log_set_level(pq_log_level lvl);
/* Replace the sink (default: stderr). NULL restores the default. */
void pq_log_set_sink(pq_log_sink sink, void *user);
/* Prefix every line with "[rN role]"; rank < 0 means no prefix. */
void pq_log_set_rank(int rank, const char *role);
void pq_log_write(pq_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The level is checked before the arguments are evaluated. */
#define PQ_LOG(lvl, ...) do { if ((lvl) <= pq_log_threshold) pq_log_write((lvl), __VA_ARGS__); } while (0)
#define PQ_LOG_ERROR(...) PQ_LOG(PQ_LOG_ERROR, __VA_ARGS__)
#define PQ_LOG_WARN(...)  PQ_LOG(PQ_LOG_WARN, __VA_ARGS__)
#define PQ_LOG_INFO(...)  PQ_LOG(PQ_LOG_INFO, __VA_ARGS__)
#define PQ_LOG_DEBUG(...) PQ_LOG(PQ_LOG_DEBUG, __VA_ARGS__)

#endif
