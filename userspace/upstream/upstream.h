/*
 * Upstream target selection and shared target state.
 *
 * struct target_state lives in a process-wide registry keyed by (upstream name, target
 * address) so health, breaker and connection counts survive config reloads. Fields are
 * atomics: every worker and the health checker touch them without locks.
 */
#ifndef XGATE_UPSTREAM_UPSTREAM_H
#define XGATE_UPSTREAM_UPSTREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define UPSTREAM_MAX_TARGETS 64

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct target_state {
	atomic_bool up;		      /* health-check verdict (true when checks are off) */
	atomic_int active;	      /* in-flight requests, all workers (least_conn) */
	atomic_uint consecutive_fail; /* breaker input */
	atomic_int breaker;	      /* enum breaker_state */
	atomic_uint_least64_t open_until_ms;
	atomic_bool probe_in_flight; /* half-open: one request at a time */
	atomic_uint health_ok_streak, health_fail_streak;
};

/* Stable pointer for the life of the process; NULL on allocation failure. */
struct target_state *target_state_get(const char *upstream, const char *address);

/* An upstream's connection-slot queue (max_conns_per_target), summed over workers. */
struct upstream_queue_stats {
	atomic_long depth;		 /* requests waiting now */
	atomic_uint_least64_t dequeued;	 /* waits that ended with a slot */
	atomic_uint_least64_t wait_us;	 /* their summed wait */
	atomic_uint_least64_t timeouts; /* waits that ended in 503 */
};
/* Stable pointer by upstream name for the life of the process; NULL on allocation failure. */
struct upstream_queue_stats *upstream_queue_stats_get(const char *upstream);
/*
 * Claims one of t's in-flight slots: always when cap is 0, else only while fewer than
 * cap requests are in flight on t (all workers). The caller decrements t->active later.
 */
bool target_claim_slot(struct target_state *t, uint32_t cap);

/*
 * Breaker: CLOSED -> OPEN after `failures` consecutive failures -> after open_ms HALF_OPEN,
 * which admits exactly one probe request; its success closes, its failure re-opens for
 * open_ms. A probe that never reports is presumed lost after open_ms and replaced.
 * Targets start up (health checks are optimistic until they fail).
 */
/* Health and breaker both allow a request now (may claim the half-open probe slot). */
bool target_available(struct target_state *t, const struct breaker_config *b, uint64_t now_ms);
/*
 * Outcome of a request for the breaker: success closes, failures count towards opening.
 * Call it exactly once for every request a pick sent to a target (a half-open probe slot
 * stays taken until reported). Failure = connect error/timeout, read timeout, reset or
 * malformed response before the response head; success = a response head arrived
 * (whatever its status). No-op when the breaker is disabled.
 */
void target_report(struct target_state *t, const struct breaker_config *b, bool success,
		   uint64_t now_ms);

/* Consistent-hash ring (weighted virtual nodes): removing one of N targets remaps ~1/N keys. */
struct hash_ring *hash_ring_build(const struct target_config *targets, int ntargets);
void hash_ring_free(struct hash_ring *ring);

/* Per-worker, per-upstream smooth weighted round-robin state. */
struct balance_rr {
	int64_t current[UPSTREAM_MAX_TARGETS];
};

/*
 * Picks a target index or -1 when no available target is left (503). `skip_mask` has bit
 * i set for targets already tried for this request. Only the first UPSTREAM_MAX_TARGETS
 * targets are considered; weight 0 targets are never picked.
 * round_robin: nginx's smooth weighted round-robin over the available targets.
 * least_conn: fewest target_state.active per unit of weight; ties by smooth weighted
 *   round-robin (so idle targets share by weight). The proxy increments `active` when it
 *   sends a request to the target and decrements it when that request ends.
 * hash: `hash` is hash_key64 of the key; when the owner is unavailable or skipped, the
 *   next ring point of another target is used (= the owner were it removed). DNS pools
 *   (u->dns) use weighted rendezvous hashing over the live slots instead of the ring.
 * `rr` is the caller's per-worker state for this upstream in this config snapshot (zeroed
 * when the snapshot is new; indexes change across reloads); NULL is allowed for hash.
 */
int balance_pick(const struct upstream_config *u, struct balance_rr *rr, uint64_t hash,
		 uint64_t skip_mask, uint64_t now_ms);
/* XXH64 with seed 0. */
uint64_t hash_key64(const void *data, size_t len);

/*
 * Active health checks: one thread, HTTP GET health.path on each target every interval
 * (first check at once), 2xx/3xx within timeout_ms (0: min(interval, 2000)) passes;
 * marks targets down after unhealthy_after failures and up after healthy_after passes,
 * logged as "health" events. Targets of upstreams without checks are set up.
 * The checker holds a config reference (config_get/config_put) to the config it checks.
 * health_checker_update() swaps in the targets of a new config (on reload); schedules of
 * targets present in both are kept. Returns NULL on failure (logged).
 */
struct health_checker;
struct health_checker *health_checker_start(struct xg_config *cfg);
void health_checker_update(struct health_checker *hc, struct xg_config *cfg);
void health_checker_stop(struct health_checker *hc);

#endif
