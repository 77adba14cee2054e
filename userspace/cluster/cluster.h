/*
 * Cluster mode: several gateway nodes share route rate limits through Redis.
 *
 * Config: "cluster": {"redis": {"address", "password", "db", "timeout_ms", "key_prefix"},
 * "nodes": N, "on_redis_error": "local" | "open" | "closed"}. hiredis (Debian's 0.14)
 * has no TLS: the connection to Redis is plain TCP, for a Redis on the node or a trusted
 * network.
 *
 * Each worker has its own connection (redis.h) on its ring and its own batching of
 * rate-limit calls (cluster_rl below): a worker never blocks and never takes a lock for
 * a cluster-limited request.
 */
#ifndef XGATE_CLUSTER_CLUSTER_H
#define XGATE_CLUSTER_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"

enum cluster_on_error {
	CLUSTER_ON_ERROR_LOCAL,	 /* enforce per_s/nodes and burst/nodes on this node */
	CLUSTER_ON_ERROR_OPEN,	 /* let the request through */
	CLUSTER_ON_ERROR_CLOSED, /* 503 */
};

struct cluster_config {
	char *address_text;
	char host[64]; /* numeric address as hiredis takes it */
	int port;
	char *password; /* NULL: no AUTH */
	int db;
	uint32_t timeout_ms; /* connect, and each command's reply */
	char *key_prefix;
	int nodes;
	enum cluster_on_error on_error;
};

/* Parses the top-level "cluster" object (path "cluster"); NULL with errors in errs. */
struct cluster_config *cluster_config_parse(json_t *obj, const char *path, struct cfg_errs *errs);
void cluster_config_free(struct cluster_config *cc);
/* Whether two configs talk to Redis the same way (a reload keeps the connections). */
bool cluster_config_same_redis(const struct cluster_config *a, const struct cluster_config *b);

/*
 * Per-worker cluster rate limiting: GCRA in Redis, one EVALSHA per call. A busy key gets
 * a token lease (lease.h): requests take a token from it at once, and a call refilling it
 * goes out when it falls to half, so they do not wait for Redis. A request finding the
 * lease empty waits: the first one's call goes out at once (asking for the lease too),
 * those arriving while a call is in flight are counted and go out together as one call
 * asking for n tokens when it answers; a reply serves the waiters first, the lease gets
 * the rest. Single-threaded (the worker's).
 */
struct io_uring;
struct timer_heap;
struct cluster_rl;

/* Created once per worker, with or without a cluster config. NULL on memory exhaustion. */
struct cluster_rl *cluster_rl_new(struct io_uring *ring, struct timer_heap *timers, int worker_id);
/* Follows a config: keeps the connection when cluster_config_same_redis(), else closes it
 * (pending calls fall back) and, when cc is not NULL, opens one for cc. */
void cluster_rl_sync(struct cluster_rl *rl, const struct cluster_config *cc);
/* Worker shutdown, ring still running: closes the connection; then the worker runs its
 * ring while cluster_rl_busy() (polls of closed connections still to complete). */
void cluster_rl_close(struct cluster_rl *rl);
bool cluster_rl_busy(const struct cluster_rl *rl);
/* After the ring is gone. */
void cluster_rl_free(struct cluster_rl *rl);
/* The connection is ready (authenticated, db selected, script loaded). */
bool cluster_rl_up(const struct cluster_rl *rl);

enum cluster_verdict {
	CLUSTER_PENDING, /* waiting for Redis */
	CLUSTER_ALLOW,
	CLUSTER_DENY,	  /* retry_after_s set */
	CLUSTER_FALLBACK, /* Redis failed for this call: apply on_redis_error */
};

struct cluster_wlist;
/* One request's part in a call; embedded in the rate-limit filter's stream state. */
struct cluster_waiter {
	struct cluster_waiter *prev, *next;
	struct cluster_wlist *list; /* NULL: not linked */
	void (*wake)(struct cluster_waiter *w);
	enum cluster_verdict verdict;
	uint32_t retry_after_s;
};

/*
 * Asks for one token of `key` (already prefixed and namespaced) at per_s/burst, leasing
 * at most lease_max tokens ahead (cluster_lease_max(); 0: no lease). Returns
 * CLUSTER_PENDING when w was queued: w->wake runs (from a completion or timer, never from
 * inside this call) once w->verdict is set. Any other return value is the verdict now
 * (CLUSTER_ALLOW from the lease; CLUSTER_FALLBACK when the connection is not up or memory
 * ran out).
 */
enum cluster_verdict cluster_rl_take(struct cluster_rl *rl, struct cluster_waiter *w,
				     const char *key, size_t keylen, uint64_t per_s,
				     uint64_t burst, uint32_t lease_max);
/* Unlinks a waiter whose stream ends while it waits (its token may still be spent). */
void cluster_waiter_cancel(struct cluster_waiter *w);

/* The GCRA script (KEYS[1]; ARGV: emission interval µs, burst tolerance µs, n). */
extern const char cluster_gcra_script[];

/* xgate_cluster_redis_up: each worker's connection state (1 up, 0 down). */
void cluster_metrics_set_up(int worker_id, bool up);
void cluster_metrics_clear(int worker_id);
/* -1: no worker has a cluster connection; else 1 when every one is up, 0 otherwise. */
int cluster_metrics_up(void);
/* xgate_cluster_lease_hits_total / _waits_total: a cluster-limited request admitted from
 * its worker's lease at once (hit), or waiting for a Redis reply. */
void cluster_metrics_lease(int worker_id, bool hit);
void cluster_metrics_lease_totals(uint64_t *hits, uint64_t *waits);

#endif
