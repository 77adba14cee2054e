/*
 * GET /stats: the gateway's counters as one JSON document for the dashboard and scripts,
 * with the rates and windows a counter alone does not give. The admin thread keeps a few
 * per-second samples (requests/s) and an hour of per-minute samples (busiest routes and
 * consumers over 5 and 60 minutes); everything else is read from the metrics shards when
 * asked. Only the admin thread calls these.
 */
#ifndef XGATE_ADMIN_STATS_H
#define XGATE_ADMIN_STATS_H

#include <jansson.h>
#include <stdint.h>

struct xg_config;
struct admin_stats;

struct admin_stats *admin_stats_new(int64_t now_ms);
void admin_stats_free(struct admin_stats *s);
/* Takes the samples that are due (call at least once a second; cheap otherwise). */
void admin_stats_tick(struct admin_stats *s, int64_t now_ms);
/*
 * The "routes", "top_consumers" and "busiest" members of /stats, as of now_ms. Routes are
 * those of cfg (may be NULL) and any other route name that has requests.
 */
json_t *admin_stats_counters(struct admin_stats *s, const struct xg_config *cfg, int64_t now_ms);

#endif
