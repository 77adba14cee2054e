/*
 * The gateway's request filters (see stream/stream.h for the interface). A request's chain
 * starts with the route filter; once it has matched a route it appends the filters that
 * route needs, in the order they must run: WAF (attack traffic is refused before it costs
 * a credential check, an IdP call or a rate-limit token; preflights are inspected too),
 * CORS (a preflight needs no credentials), authentication, rate limit, throttle, split
 * (the upstream pool), compression, response cache (compression before the cache so that
 * cached responses are encoded per request when served), transform, compose (last: it
 * answers the request itself from its sub-requests).
 * A new filter goes into this folder, gets a `const struct filter`, and is appended by
 * filters_for_route() when its route config asks for it.
 */
#ifndef XGATE_FILTERS_FILTERS_H
#define XGATE_FILTERS_FILTERS_H

#include "ratelimit/ratelimit.h"
#include "stream/stream.h"

extern const struct filter filter_route;
extern const struct filter filter_auth;
extern const struct filter filter_rate_limit;
extern const struct filter filter_throttle;
extern const struct filter filter_cache;
extern const struct filter filter_cors;
extern const struct filter filter_compress;
extern const struct filter filter_split;
extern const struct filter filter_compose;
extern const struct filter filter_transform;
extern const struct filter filter_waf;
extern const struct filter filter_grpc_json;

/* The rate-limit / throttle key for "by" (filters/ratelimit.c); buf holds an address key. */
const char *filter_limit_key(const struct stream *st, enum ratelimit_by by, char *buf, size_t cap);

/* Puts the route filter at the head of a new stream's chain. */
bool filters_begin(struct stream *st);
/* Appends the filters the matched route needs; false when the chain is full. */
bool filters_for_route(struct stream *st);

#endif
