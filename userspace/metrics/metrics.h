/*
 * Gateway counters. Each worker writes only its own shard (no locks, no shared cache
 * lines on the request path); the admin thread sums the shards when scraped.
 *
 * Label sets are interned into stable slots (metrics_*_slot) while a config is built,
 * by name, so counters survive reloads and a route/upstream keeps its series.
 */
#ifndef XGATE_METRICS_METRICS_H
#define XGATE_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"

#define METRICS_MAX_WORKERS 256

enum upstream_outcome {
	OUTCOME_SUCCESS,       /* response received (any status) */
	OUTCOME_CONNECT_ERROR, /* refused / unreachable */
	OUTCOME_TIMEOUT,       /* connect or read timeout */
	OUTCOME_RESET,	       /* closed/reset mid-response, or a bad response */
	OUTCOME_COUNT
};

/* Interning (main thread, at config build). Slot -1 means "no route". */
int metrics_route_slot(const char *route_name);
int metrics_listener_slot(const char *listener_name);
int metrics_target_slot(const char *upstream, const char *target);

struct metrics_shard;
struct metrics_shard *metrics_shard(int worker); /* created on first call for that worker */

void metrics_http_request(struct metrics_shard *m, int route_slot, int status,
			  uint64_t duration_ns);
void metrics_upstream_request(struct metrics_shard *m, int target_slot,
			      enum upstream_outcome outcome);
void metrics_connection(struct metrics_shard *m, int listener_slot, int delta);
void metrics_auth_failure(struct metrics_shard *m, enum auth_reason reason);
void metrics_rate_limited(struct metrics_shard *m, int route_slot);

/* Process-wide values (main thread). */
void metrics_set_config_generation(uint64_t generation, int64_t loaded_at, int last_reload_ok);

/*
 * Renders the Prometheus text format into a malloc'd buffer: all counters above, plus
 * target health (from target states of cfg), XDP counters (pinned stats map, when present),
 * TLS and splice counters. Returns NULL on allocation failure.
 */
struct xg_config;
char *metrics_render(struct xg_config *cfg, size_t *len);

#endif
