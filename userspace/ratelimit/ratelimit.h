/*
 * Route rate limits ("rate_limit": {"per_s", "burst", "by"}): token buckets shared by all
 * workers (a client spread over workers must not get N times its rate), with the same
 * fixed-point bucket arithmetic the XDP shield uses (maps/token_bucket.h).
 *
 * Each policy's keys live in a bounded table split into stripes, each with its own lock
 * and least-recently-used list, so workers contend only when their keys share a stripe.
 * Tables are shared by name: a reload whose route keeps its name, per_s, burst and "by"
 * gets the same table back, so clients do not get a fresh burst on every reload.
 */
#ifndef XGATE_RATELIMIT_RATELIMIT_H
#define XGATE_RATELIMIT_RATELIMIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"

enum ratelimit_by { RL_BY_IP, RL_BY_CONSUMER, RL_BY_ROUTE };

struct ratelimit_policy;

/* Parses a route's "rate_limit" object; `route_name` keys the bucket table so buckets
 * survive reloads while per_s/burst are unchanged. */
struct ratelimit_policy *ratelimit_policy_parse(json_t *obj, const char *path,
						const char *route_name, struct cfg_errs *errs);
void ratelimit_policy_free(struct ratelimit_policy *p);
enum ratelimit_by ratelimit_policy_by(const struct ratelimit_policy *p);

/* Takes one token for key; false when limited, with the seconds until one is available
 * (at least 1). now_ns is CLOCK_MONOTONIC (any clock, as long as it is the same for all
 * calls). Keys longer than RATELIMIT_KEY_MAX bytes are truncated. Thread-safe. */
bool ratelimit_take(struct ratelimit_policy *p, const void *key, size_t keylen, uint64_t now_ns,
		    uint32_t *retry_after_s);

#define RATELIMIT_KEY_MAX 256

/*
 * The key a client address is counted under by "by": "ip": "ip:" and the IPv4 address, or
 * for IPv6 the /64 it belongs to ("ip:2001:db8:1:2::/64"), as the XDP buckets do: one
 * subscriber gets a whole /64 and could otherwise spread its requests over 2^64 buckets.
 * An IPv4-mapped IPv6 address counts as its IPv4 address. Text that is no address is
 * used as it is. Returns the key length (< cap; cap >= RATELIMIT_IP_KEY_LEN fits any).
 */
#define RATELIMIT_IP_KEY_LEN 64
size_t ratelimit_ip_key(const char *ip, char *out, size_t cap);
/* Keys tracked per policy; beyond it the least recently used key is forgotten (its next
 * request starts with a full bucket). */
#define RATELIMIT_MAX_KEYS 65536

/* As configured. */
uint64_t ratelimit_policy_per_s(const struct ratelimit_policy *p);
uint64_t ratelimit_policy_burst(const struct ratelimit_policy *p);
/* What ratelimit_take() enforces on this node (the local share for scope "cluster"). */
uint64_t ratelimit_policy_local_per_s(const struct ratelimit_policy *p);
uint64_t ratelimit_policy_local_burst(const struct ratelimit_policy *p);

/*
 * "scope": "cluster" — the limit is shared by every node through Redis (cluster/); this
 * policy's own buckets then hold the node's share (per_s / nodes, burst / nodes, at least
 * 1) for "on_redis_error": "local", set by ratelimit_policy_set_nodes() once the config's
 * "cluster" section is known. false on memory exhaustion.
 */
bool ratelimit_policy_cluster(const struct ratelimit_policy *p);
bool ratelimit_policy_set_nodes(struct ratelimit_policy *p, const char *route_name, int nodes);
/* Number of keys currently tracked (for tests and metrics). */
size_t ratelimit_policy_keys(const struct ratelimit_policy *p);

/*
 * Route throttle ("throttle": {"per_s", "burst", "delay_after", "queue_timeout_ms", "by"}):
 * NGINX limit_req burst/delay semantics, shared by all workers like rate limits. Excess
 * requests beyond delay_after are not refused but delayed to their slot at per_s; beyond
 * burst, or when the delay would exceed queue_timeout_ms, they are refused.
 */
struct throttle_policy;
enum throttle_verdict { THROTTLE_PASS, THROTTLE_DELAY, THROTTLE_REJECT };

struct throttle_policy *throttle_policy_parse(json_t *obj, const char *path,
					      const char *route_name, struct cfg_errs *errs);
void throttle_policy_free(struct throttle_policy *p);
enum ratelimit_by throttle_policy_by(const struct throttle_policy *p);
/* PASS: go now; DELAY: wait *delay_ns, then go (the slot is taken); REJECT: refuse, with the
 * seconds until a slot frees in *retry_after_s. Thread-safe. */
enum throttle_verdict throttle_admit(struct throttle_policy *p, const void *key, size_t keylen,
				     uint64_t now_ns, uint64_t *delay_ns, uint32_t *retry_after_s);

#endif
