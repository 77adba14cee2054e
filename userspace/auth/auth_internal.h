/* Shared between the auth config parser (auth_config.c) and the request path (auth_check.c). */
#ifndef XGATE_AUTH_AUTH_INTERNAL_H
#define XGATE_AUTH_AUTH_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "auth/auth.h"
#include "auth/introspect.h"
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "auth/tzone.h"

#define AUTH_CONSUMER_HEADER "X-Consumer"
#define AUTH_DIGEST_LEN 32

struct jwt_settings {
	bool enabled;
	struct jwt_policy policy;
	char *roles_claim;
	bool roles_split; /* a string roles claim is a space-separated list (else one role) */
	char *scopes_claim;
	struct forward_claim forward[AUTH_MAX_FORWARD];
	int nforward;
	size_t cache_size;
	struct key_sources sources;
	struct file_stamp *loaded_stamps; /* of the files the current keyset came from */
	struct file_stamp *failed_stamps; /* of the last contents that failed, logged once */
	/*
	 * Workers take a reference under the lock; the main thread swaps under it. The lock is
	 * held for a pointer copy and an increment only, never during a signature check.
	 */
	pthread_mutex_t lock;
	struct keyset *keyset;
	atomic_uint_fast64_t generation; /* keyset->generation, readable without the lock */
};

struct consumer {
	char *name;
	int metrics_slot; /* metrics_consumer_slot(name) */
	char **roles;
	int nroles;
};

struct api_key {
	unsigned char digest[AUTH_DIGEST_LEN]; /* SHA-256 of the key: the key itself is not kept */
	uint64_t prefix; /* first 8 digest bytes, big-endian, for the search */
	int consumer;
};

struct auth_config {
	struct jwt_settings jwt;
	char *api_key_header;
	char *api_key_query; /* NULL: keys are not accepted in the query string */
	struct consumer *consumers;
	int nconsumers;
	struct api_key *keys; /* sorted by digest */
	int nkeys;
	struct introspection_config *introspection; /* NULL: not configured */
};

enum auth_method_kind {
	AUTH_METHOD_JWT,
	AUTH_METHOD_API_KEY,
	AUTH_METHOD_MTLS,
	AUTH_METHOD_INTROSPECTION
};

struct string_list {
	char **items;
	int n;
};

struct auth_method {
	enum auth_method_kind kind;
	struct string_list roles;  /* any-of; empty: no requirement */
	struct string_list scopes; /* all-of; JWT and introspection */
	/* mTLS: any-of each, both when both are given; empty: any verified certificate. */
	struct string_list subjects; /* dn_canon_text() forms */
	struct string_list sans;     /* DNS (compared case-insensitively) or URI names */
};

struct deny_window {
	uint32_t from_s, to_s; /* seconds after local midnight; from > to wraps past midnight */
	struct tzone *zone;
};

struct route_auth {
	struct auth_method *methods; /* one, or several for any_of; none: schedule only */
	int nmethods;
	struct deny_window *deny;
	int ndeny;
};

/* SHA-256 through a pre-fetched EVP_MD; false on failure. */
bool auth_sha256(const void *data, size_t len, unsigned char out[AUTH_DIGEST_LEN]);
uint64_t auth_digest_prefix(const unsigned char digest[AUTH_DIGEST_LEN]);
bool auth_schedule_denies(const struct route_auth *ra, time_t now);

#endif
