/*
 * Traffic split (canary / blue-green): a route's requests divided between upstream pools.
 *
 * An entry with `match` takes every request that matches it (first such entry in config
 * order). The others are split by weight over all entries (those with `match` included)
 * with weighted rendezvous hashing: each entry scores the request's key as
 * weight / -ln(u), u uniform in (0,1) from hash(key, entry); the highest score wins. The
 * chance of an entry is its share of the weights, and changing one entry's weight moves
 * only requests to or from that entry: keys never shuffle between the entries left alone.
 * The entry's identity in the hash is its upstream's name, so reordering entries or
 * reloading the config keeps every key where it was.
 *
 * The key is the sticky value (a cookie, a header, the client address or the consumer)
 * or, without stickiness or when the request has no such value, a random number.
 */
#ifndef XGATE_SPLIT_SPLIT_H
#define XGATE_SPLIT_SPLIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/cfg.h"
#include "http/http.h"

struct xg_config;
struct header_match; /* config/config.h */

enum split_sticky {
	SPLIT_STICKY_NONE,
	SPLIT_STICKY_COOKIE,
	SPLIT_STICKY_HEADER,
	SPLIT_STICKY_IP,
	SPLIT_STICKY_CONSUMER,
};

struct split_entry {
	int upstream; /* index into the config's upstreams */
	uint32_t weight;
	uint64_t id;		    /* hash of the upstream name */
	struct header_match *match; /* every one must hold; NULL/0: no match */
	int nmatch;
	int metrics_slot; /* xgate_split_requests_total{route, upstream} */
};

struct split_policy {
	struct split_entry *entries;
	int n;
	enum split_sticky sticky;
	char *sticky_name; /* cookie name (as sent) or lower-case header name */
};

/*
 * `arr` is the route's "split" array, `sticky` its "sticky" value (may be NULL); upstreams
 * are resolved in cfg (already parsed). Errors name routes[i].split[j].upstream etc.
 */
struct split_policy *split_policy_parse(json_t *arr, json_t *sticky, const char *route_path,
					const char *route_name, const struct xg_config *cfg,
					struct cfg_errs *errs);
void split_policy_free(struct split_policy *p);

/* The entry whose match the request satisfies, or -1. */
int split_match(const struct split_policy *p, const struct http_request *req);
/* The weighted choice for a key (hash_key64 of the sticky value, or random). */
int split_pick(const struct split_policy *p, uint64_t key);
/* The sticky value of a request: false when the request has none (then split at random). */
bool split_sticky_value(const struct split_policy *p, const struct http_request *req,
			const char *peer_ip, const char *consumer, struct http_str *out);

#endif
