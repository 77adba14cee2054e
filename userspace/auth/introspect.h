/*
 * OAuth 2.0 token introspection (RFC 7662): the top-level "auth.introspection" settings,
 * the request the gateway sends the IdP, the reading of its answer, and the per-worker
 * cache of answers with its in-flight calls (pure code: the filter in filters/auth.c does
 * the I/O on the worker's client).
 *
 * Cache: keyed by the SHA-256 of the token (the token itself is never stored) and the
 * settings' generation (every config load makes a new one, so a reload with another IdP
 * or other credentials never serves an old answer). Active answers live min(exp - now,
 * cache_ttl_s), inactive ones min(cache_ttl_s, 5 s); failures are not cached. It is
 * 4-way set-associative (bounded; the least recently used way of a set is evicted).
 *
 * Flights: concurrent misses for one token share one IdP call. The first miss starts a
 * flight, later ones join it as waiters; intro_flight_complete() stores the answer,
 * hands it to every waiter and calls each one's wake(). A waiter that goes away leaves;
 * the owner cancels the call when the last one has left.
 */
#ifndef XGATE_AUTH_INTROSPECT_H
#define XGATE_AUTH_INTROSPECT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"

struct ssl_ctx_st;

#define INTRO_DIGEST_LEN 32
#define INTRO_NEGATIVE_TTL_S 5
#define INTRO_MAX_TOKEN_BYTES 8192
#define INTRO_CACHE_SIZE 4096
#define INTRO_MAX_FORWARD 16

enum intro_client_auth { INTRO_AUTH_BASIC, INTRO_AUTH_POST };

/* A claim forwarded upstream as a request header (JWT and introspection alike). */
struct forward_claim {
	char *claim;
	char *header;
};

struct introspection_config {
	char *url;
	char *path; /* origin-form target on the IdP */
	char *host; /* Host header value (authority of the url) */
	char *client_id, *client_secret;
	enum intro_client_auth client_auth;
	char *basic_header; /* "Authorization: Basic …\r\n" for basic, else NULL */
	/* https: a verifying client context and the name the certificate must carry (the
	 * url's host unless server_name says otherwise). NULL for http. */
	bool https;
	struct ssl_ctx_st *tls;
	char *server_name;
	char *ca_file;
	uint32_t timeout_ms, cache_ttl_s;
	struct forward_claim forward[INTRO_MAX_FORWARD];
	int nforward;
	uint64_t generation; /* unique per parse: cache entries of other configs never match */
	/* The IdP as a one-target upstream for client/client.h (not in cfg->upstreams). */
	struct upstream_config upstream;
	struct target_config target;
};

/* Parses "auth.introspection" (obj not NULL); NULL with errors in errs. `path` names obj. */
struct introspection_config *introspection_parse(json_t *obj, const char *path,
						 struct cfg_errs *errs);
void introspection_free(struct introspection_config *ic);

/* application/x-www-form-urlencoded (WHATWG): unreserved kept, space as '+', else %XX.
 * Returns the length written (without the NUL) or -1 when cap is too small. */
long intro_form_encode(const char *s, size_t len, char *out, size_t cap);

/* The POST body for a token: token=…&token_type_hint=access_token[&client_id=…&
 * client_secret=…]. malloc'd, NULL on memory exhaustion. */
char *intro_request_body(const struct introspection_config *ic, const char *token, size_t len,
			 size_t *out_len);

enum intro_status {
	INTRO_ACTIVE,
	INTRO_INACTIVE, /* active false, or already expired */
	INTRO_ERROR,	/* the answer was not a 200 with a JSON object holding "active" */
};

/*
 * Reads the IdP's answer. ACTIVE gives *claims (a new reference) and *expires (exp, or 0
 * when the answer has none); an answer whose exp is at or before now is INACTIVE.
 */
enum intro_status intro_parse_response(int status, const char *body, size_t len, time_t now,
				       json_t **claims, int64_t *expires);

/* ---- the per-worker cache ---- */

struct intro_cache;
struct intro_flight;

struct intro_waiter {
	struct intro_waiter *next, *prev;
	struct intro_flight *flight; /* NULL: not waiting */
	void (*wake)(struct intro_waiter *w);
	/* Set by intro_flight_complete() before wake(). */
	bool answered;
	enum intro_status status;
	json_t *claims; /* a reference the waiter owns (ACTIVE only) */
};

struct intro_cache_stats {
	uint64_t hits, misses, evictions, flights;
};

/* capacity 0 disables storing answers (flights still work). NULL on memory exhaustion. */
struct intro_cache *intro_cache_new(size_t capacity);
void intro_cache_free(struct intro_cache *c);
void intro_cache_get_stats(const struct intro_cache *c, struct intro_cache_stats *out);

/* SHA-256 of a token; false on failure. */
bool intro_digest(const char *token, size_t len, unsigned char out[INTRO_DIGEST_LEN]);

/* A live answer: true with *status (and *claims, a new reference, for ACTIVE). */
bool intro_cache_lookup(struct intro_cache *c, const unsigned char digest[INTRO_DIGEST_LEN],
			uint64_t generation, uint64_t now_ms, enum intro_status *status,
			json_t **claims);
/* Stores an answer until until_ms (nothing when until_ms <= now_ms). claims: borrowed. */
void intro_cache_insert(struct intro_cache *c, const unsigned char digest[INTRO_DIGEST_LEN],
			uint64_t generation, enum intro_status status, json_t *claims,
			uint64_t now_ms, uint64_t until_ms);

/* The flight for this token, NULL when none. */
struct intro_flight *intro_flight_find(struct intro_cache *c,
				       const unsigned char digest[INTRO_DIGEST_LEN],
				       uint64_t generation);
/* A new flight (the caller starts its call and sets it with intro_flight_set_call). */
struct intro_flight *intro_flight_start(struct intro_cache *c,
					const unsigned char digest[INTRO_DIGEST_LEN],
					uint64_t generation);
void intro_flight_set_call(struct intro_flight *f, void *call);
void *intro_flight_call(const struct intro_flight *f);
void intro_flight_join(struct intro_flight *f, struct intro_waiter *w);
/* The waiter goes away: true when the flight has no waiter left (the caller then cancels
 * its call and calls intro_flight_abandon). */
bool intro_waiter_leave(struct intro_waiter *w);
void intro_flight_abandon(struct intro_cache *c, struct intro_flight *f);
/*
 * The call answered: the answer is cached until until_ms (see intro_cache_insert), every
 * waiter gets it (and a claims reference) and is woken; the flight is freed.
 */
void intro_flight_complete(struct intro_cache *c, struct intro_flight *f, enum intro_status status,
			   json_t *claims, uint64_t now_ms, uint64_t until_ms);
/* How long an answer may be cached, in ms after now_ms (0: not at all). */
uint64_t intro_cache_until(const struct introspection_config *ic, enum intro_status status,
			   int64_t expires, time_t now, uint64_t now_ms);

#endif
