/*
 * Gateway counters. Each worker writes only its own shard (no locks, no shared cache
 * lines on the request path); the admin thread sums the shards when scraped.
 *
 * Label sets are interned into stable slots (metrics_*_slot) while a config is built,
 * by name, so counters survive reloads and a route/upstream keeps its series. Slot
 * storage is chunked: interning never moves memory a worker may be writing.
 */
#ifndef XGATE_METRICS_METRICS_H
#define XGATE_METRICS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"

#define METRICS_MAX_WORKERS 256

enum upstream_outcome {
	OUTCOME_SUCCESS,       /* response received (any status) */
	OUTCOME_CONNECT_ERROR, /* refused / unreachable */
	OUTCOME_TIMEOUT,       /* connect or read timeout */
	OUTCOME_RESET,	       /* closed/reset mid-response */
	/* A response the gateway cannot take as HTTP (unparseable or over-limit head, bad
	 * chunking, an unasked-for 101, bytes after a complete response, bytes while idle
	 * in the pool): the connection is closed, never reused. */
	OUTCOME_PROTOCOL_ERROR,
	OUTCOME_COUNT
};
const char *upstream_outcome_name(enum upstream_outcome o);

/*
 * Interning (main thread, at config build, before the config is published to workers).
 * Slot -1 means "no route" (rendered as route=""); -1 is also returned when the name is
 * empty or the slot space/memory is exhausted, which only loses that series.
 */
int metrics_route_slot(const char *route_name);
int metrics_listener_slot(const char *listener_name);
int metrics_target_slot(const char *upstream, const char *target);
/* A split entry: requests a split route sent to one of its pools. */
int metrics_split_slot(const char *route, const char *upstream);
/* An API-key consumer of the config (by name, so its counts survive reloads). */
int metrics_consumer_slot(const char *consumer);
/* One call of a compose route. */
int metrics_compose_slot(const char *route, const char *call);

enum compose_outcome {
	COMPOSE_OUTCOME_OK,
	COMPOSE_OUTCOME_FAILED,	 /* answered, but non-2xx, not JSON or not the call's shape */
	COMPOSE_OUTCOME_TIMEOUT, /* the composition's deadline passed */
	COMPOSE_OUTCOME_ERROR,	 /* no target, connect, reset, protocol, too large */
	COMPOSE_OUTCOME_SKIPPED, /* never sent: a dependency failed or a template value missing */
	COMPOSE_OUTCOME_COUNT,
};
const char *compose_outcome_name(enum compose_outcome o);

struct metrics_shard;
/* Created on first call for that worker (any thread); NULL when worker is out of range. */
struct metrics_shard *metrics_shard(int worker);

/* Request path: only the shard's own worker calls these. A NULL shard is ignored. */
void metrics_http_request(struct metrics_shard *m, int route_slot, int status,
			  uint64_t duration_ns);
void metrics_upstream_request(struct metrics_shard *m, int target_slot,
			      enum upstream_outcome outcome);
void metrics_connection(struct metrics_shard *m, int listener_slot, int delta);
void metrics_auth_failure(struct metrics_shard *m, enum auth_reason reason);
void metrics_rate_limited(struct metrics_shard *m, int route_slot);
/* A WAF intervention on a route: blocked, or only logged (detect mode). */
void metrics_waf(struct metrics_shard *m, int route_slot, bool detect);
/* A cluster rate limit decided by "on_redis_error" because Redis was not usable. */
void metrics_ratelimit_fallback(struct metrics_shard *m, int route_slot);
void metrics_split_request(struct metrics_shard *m, int split_slot);
/* A request answered for an authenticated API-key consumer (slot -1: not counted). */
void metrics_consumer_request(struct metrics_shard *m, int consumer_slot, int status);
void metrics_compose_call(struct metrics_shard *m, int compose_slot, enum compose_outcome o);

/* Label "outcome" of xgate_introspection_requests_total: one per introspected request
 * (cached: answered from the worker's cache, or by another request's IdP call). */
enum introspection_outcome {
	INTROSPECTION_ACTIVE,
	INTROSPECTION_INACTIVE,
	INTROSPECTION_ERROR,
	INTROSPECTION_TIMEOUT,
	INTROSPECTION_CACHED,
	INTROSPECTION_OUTCOME_COUNT
};
const char *metrics_introspection_outcome_name(enum introspection_outcome o);
void metrics_introspection(struct metrics_shard *m, enum introspection_outcome o);
uint64_t metrics_sum_introspection(enum introspection_outcome o);
/* xgate_http_requests_by_proto_total{proto="http/1.1"|"h2"}: every answered request. */
void metrics_http_proto(struct metrics_shard *m, bool h2);
uint64_t metrics_sum_proto(bool h2);

/* Process-wide values (main thread): call at startup and after every reload attempt. */
void metrics_set_config_generation(uint64_t generation, int64_t loaded_at, int last_reload_ok);

/* Histogram upper bounds of xgate_http_request_duration_seconds (+Inf implied). */
#define METRICS_DURATION_BUCKETS 14
extern const double metrics_duration_bounds[METRICS_DURATION_BUCKETS];

/*
 * Values owned by other modules, collected by the caller (admin thread) so rendering
 * itself needs nothing but this module. A family whose `have_*` is false is omitted.
 */
struct metrics_xdp_counter {
	char reason[48];
	uint64_t packets;
};

struct metrics_extra {
	bool have_tls;
	unsigned long tls_handshakes, tls_handshake_failures, ktls_tx, ktls_rx, ktls_tx_bytes;
	unsigned long tls_key_update_closes;
	bool have_splice;
	unsigned long splice_flows_total, splice_flows_active, splice_fallbacks;
	unsigned long splice_pipe_bytes;
	bool have_xdp; /* edge configured and its stats map readable */
	const struct metrics_xdp_counter *xdp;
	int nxdp;
	uint64_t access_log_dropped;
};

/*
 * Totals for /stats (admin thread). Entries are in slot order and slots only ever grow,
 * so an index names the same series in every call; names point into the label table
 * (stable for the process's life). Route index 0 is the "" (no route) series.
 */
struct metrics_route_totals {
	const char *name;
	uint64_t requests;
	uint64_t classes[6]; /* [0] other status, [1] 1xx ... [5] 5xx */
	uint64_t buckets[METRICS_DURATION_BUCKETS + 1]; /* per bucket, +Inf last, not cumulative */
	uint64_t sum_ns;
	uint64_t rate_limited;
};
struct metrics_consumer_totals {
	const char *name;
	uint64_t requests, errors; /* errors: status >= 400 */
};
/* Fill out[0..max) and return how many series exist (may exceed max). */
int metrics_route_totals(struct metrics_route_totals *out, int max);
int metrics_consumer_totals(struct metrics_consumer_totals *out, int max);

/*
 * Quantile q (0..1) of a duration histogram (per-bucket counts, +Inf last) in seconds,
 * interpolated linearly inside the bucket like Prometheus' histogram_quantile(); an
 * observation in +Inf counts as the largest finite bound. -1 when empty.
 */
double metrics_histogram_quantile(const uint64_t *buckets, double q);

/*
 * Renders the Prometheus text format into a malloc'd buffer: all counters above, plus
 * target health (from the target states of cfg, may be NULL) and the extra values.
 * Returns NULL on allocation failure.
 */
struct xg_config;
char *metrics_render(const struct xg_config *cfg, const struct metrics_extra *extra, size_t *len);

/* Prometheus label-value escaping (\\, \", \n) appended to a growable buffer. */
struct metrics_buf {
	char *p;
	size_t len, cap;
	bool oom;
};
void mbuf_printf(struct metrics_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mbuf_label_value(struct metrics_buf *b, const char *value);

#endif
