/*
 * Route rate limits ("rate_limit": {"per_s", "burst", "by"}): token buckets shared by all
 * workers (a client spread over workers must not get N times its rate), with the same
 * fixed-point bucket arithmetic the XDP shield uses (maps/token_bucket.h).
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

/* Takes one token for key; false when limited, with the seconds until one is available. */
bool ratelimit_take(struct ratelimit_policy *p, const void *key, size_t keylen, uint64_t now_ns,
		    uint32_t *retry_after_s);

#endif
