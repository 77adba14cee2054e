/*
 * Authentication and authorization: JWT (compact JWS, every JOSE algorithm through OpenSSL 3
 * EVP, keys from a JWKS file that is re-read when it changes), API keys identifying
 * consumers, route roles/scopes, route schedules (time windows in a tz zone).
 */
#ifndef XGATE_AUTH_AUTH_H
#define XGATE_AUTH_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/cfg.h"
#include "http/http.h"

struct auth_config; /* global "auth" + "consumers" */
struct route_auth;  /* a route's "auth" (+ "schedule") */
struct jwt_cache;   /* per-worker verified-token cache */
struct x509_st;

/* Why a request was refused: the label of xgate_auth_failures_total{reason}. */
enum auth_reason {
	AUTH_OK = 0,
	AUTH_MISSING,	/* no credentials */
	AUTH_MALFORMED, /* not a parseable token / bad base64url / bad JSON */
	AUTH_BAD_ALG,	/* none, not allowed, key type mismatch */
	AUTH_UNKNOWN_KID,
	AUTH_BAD_SIGNATURE,
	AUTH_EXPIRED,
	AUTH_NOT_YET_VALID, /* nbf / iat in the future */
	AUTH_BAD_ISSUER,
	AUTH_BAD_AUDIENCE,
	AUTH_BAD_API_KEY,
	AUTH_FORBIDDEN_ROLE,	 /* 403 */
	AUTH_FORBIDDEN_SCOPE,	 /* 403 */
	AUTH_FORBIDDEN_SCHEDULE, /* 403 */
	AUTH_TOKEN_TOO_LARGE,	 /* over auth.jwt.max_token_bytes */
	AUTH_CRIT,		 /* "crit" header: we implement no JWS extensions */
	AUTH_BAD_CLIENT_CERT,	 /* a client certificate that did not verify (optional mTLS) */
	AUTH_FORBIDDEN_SUBJECT,	 /* 403: a verified certificate the route does not list */
	AUTH_INACTIVE,		 /* introspection: "active": false (or expired) */
	AUTH_IDP_UNAVAILABLE,	 /* 503: the introspection IdP did not answer usably */
	AUTH_REASON_COUNT,
	/* Not a failure: the answer needs an IdP call first (status 503 so that a caller
	 * unaware of it fails closed). Never counted. */
	AUTH_PENDING = AUTH_REASON_COUNT + 1,
};
const char *auth_reason_name(enum auth_reason r);
/* 0 for AUTH_OK, 403 for the AUTH_FORBIDDEN_* reasons, 503 for AUTH_IDP_UNAVAILABLE and
 * AUTH_PENDING, 401 for all others. */
int auth_reason_status(enum auth_reason r);

/* Header value for every 401 the gateway makes (SPEC). */
#define AUTH_WWW_AUTHENTICATE "Bearer error=\"invalid_token\""

#define AUTH_MAX_FORWARD 16
#define AUTH_IDENTITY_MAX 400

struct auth_result {
	int status; /* 0 allowed, 401 or 403 */
	enum auth_reason reason;
	char consumer[128]; /* API-key consumer name or JWT sub; "" when anonymous */
	/* metrics_consumer_slot() of an API-key consumer; -1 for JWT subjects (unbounded,
	 * so not given counters of their own) and anonymous callers. */
	int consumer_slot;
	/*
	 * Who the caller is, namespaced by the kind of credential, for keys (rate limits,
	 * cache): "key:" + consumer name, or "jwt:" + issuer length + ":" + issuer + sub, so
	 * a JWT whose sub is "mobile-app" is not the API-key consumer "mobile-app", nor the
	 * same sub from another issuer. "" when anonymous.
	 */
	char identity[AUTH_IDENTITY_MAX];
	/* Headers to add upstream (forward_claims, X-Consumer); strings owned by the result. */
	int nforward;
	struct {
		char name[64];
		char value[512];
	} forward[AUTH_MAX_FORWARD];
	/*
	 * For "hash_on": "claim:NAME" (JWT only; NULL for API keys and absent claims). Strings
	 * live until auth_result_release(); integers are rendered into a per-thread buffer
	 * that the next call on the same thread reuses.
	 */
	const char *(*claim)(const struct auth_result *r, const char *name);
	void *priv;
};

/*
 * Parses top-level "auth" and "consumers" (either may be NULL; both NULL gives an empty,
 * valid config). Loads the JWT keys (relative paths are relative to the working directory).
 * NULL when anything was wrong, with every error in errs.
 */
struct auth_config *auth_config_parse(json_t *auth, json_t *consumers, struct cfg_errs *errs);
void auth_config_free(struct auth_config *a);
/*
 * Re-reads the JWKS/PEM files if they changed on disk (stat: inode, size, mtime, ctime) and
 * swaps the keyset while workers keep verifying; a file that fails to load keeps the old
 * keys (logged once per change). Called about once a second by the main thread only.
 */
void auth_config_tick(struct auth_config *a);

/*
 * Parses a route's "auth" and optional "schedule" (NULL when absent or "none" and no
 * schedule, and NULL on error). With a == NULL (the global section failed) only the syntax
 * is checked, so one mistake does not show up twice.
 */
struct route_auth *route_auth_parse(json_t *auth, json_t *schedule, const char *route_path,
				    const struct auth_config *a, struct cfg_errs *errs);
void route_auth_free(struct route_auth *ra);

/* Per-worker cache entries to create (auth.jwt.cache_size; 0 = the cache is disabled). */
size_t auth_cache_size(const struct auth_config *a);
/* Generation of the keyset in use; changes on every successful JWKS/PEM re-read. */
uint64_t auth_keyset_generation(const struct auth_config *a);

/* NULL on allocation failure or capacity 0 (auth_check then verifies every token). */
struct jwt_cache *jwt_cache_new(size_t capacity);
void jwt_cache_free(struct jwt_cache *c);

struct jwt_cache_stats {
	uint64_t hits;		/* tokens accepted from the cache */
	uint64_t verifications; /* tokens whose signature was checked (cache misses) */
	uint64_t evictions;	/* live entries dropped to make room */
};
void jwt_cache_get_stats(const struct jwt_cache *c, struct jwt_cache_stats *out);

/*
 * Evaluates a route's policy for a parsed request. `now` is wall-clock time. `ra` NULL means
 * an open route (out->status 0). `cache` may be NULL. Call auth_result_release() after the
 * request is done with out (out->claim stays valid until then).
 */
void auth_check(const struct auth_config *a, const struct route_auth *ra, struct jwt_cache *cache,
		const struct http_request *req, time_t now, struct auth_result *out);

/* The client's TLS certificate as the listener's handshake left it (route "mtls"). */
struct auth_peer {
	const struct x509_st *cert; /* NULL: no certificate (or no TLS) */
	bool verified;		    /* chained to tls.client_ca, not revoked by tls.crl */
	const char *subject;	    /* RFC 4514 text when verified */
};
/* auth_check() with the connection's certificate (peer may be NULL: none). */
void auth_check_peer(const struct auth_config *a, const struct route_auth *ra,
		     struct jwt_cache *cache, const struct http_request *req,
		     const struct auth_peer *peer, time_t now, struct auth_result *out);

/* Request header carrying the verified client certificate's subject upstream; a client's
 * own copy is always dropped (auth_is_identity_header). */
#define AUTH_CLIENT_CERT_HEADER "X-Client-Cert-Subject"

/*
 * Introspection answers for auth_check_ex(). lookup() gets the bearer token and returns
 * AUTH_OK with *claims (a reference auth_check takes over: the IdP's answer, active and
 * not expired), AUTH_INACTIVE, AUTH_IDP_UNAVAILABLE, or AUTH_PENDING when the IdP has to
 * be asked first (the caller then asks, waits and checks again).
 */
struct auth_introspector {
	enum auth_reason (*lookup)(void *ctx, const char *token, size_t len, json_t **claims);
	void *ctx;
};
/* The top-level auth.introspection settings (auth/introspect.h); NULL when absent. */
const struct introspection_config *auth_introspection(const struct auth_config *a);
/*
 * auth_check_peer() with introspection methods answered by `intro` (NULL: they fail as
 * AUTH_IDP_UNAVAILABLE). Methods are tried in order; one that is pending does not stop a
 * later one from succeeding. When none succeeded and one is pending, out->reason is
 * AUTH_PENDING.
 */
void auth_check_ex(const struct auth_config *a, const struct route_auth *ra,
		   struct jwt_cache *cache, const struct auth_introspector *intro,
		   const struct http_request *req, const struct auth_peer *peer, time_t now,
		   struct auth_result *out);
void auth_result_release(struct auth_result *r);

/* True for headers clients must never supply themselves (forward_claims targets, X-Consumer). */
bool auth_is_identity_header(const struct auth_config *a, struct http_str name);
/* True for headers that carry credentials the gateway checks (Authorization, the API-key
 * header). */
bool auth_is_credential_header(const struct auth_config *a, struct http_str name);

/*
 * Route "hide_credentials": whether a request header / a query parameter (its raw name, as
 * in the query string) carries a credential one of the route's methods reads, so it is
 * not forwarded: Authorization for JWT, the API-key header and query parameter for API
 * keys. A parameter name is compared percent-decoded: the upstream may decode it.
 */
bool auth_hidden_header(const struct auth_config *a, const struct route_auth *ra,
			struct http_str name);
bool auth_hidden_query_param(const struct auth_config *a, const struct route_auth *ra,
			     struct http_str raw_name);
/* Whether one of the route's methods is "mtls" (false for NULL). */
bool auth_route_uses_mtls(const struct route_auth *ra);
/* Whether the route has a method whose credential hide_credentials can remove. */
bool auth_route_has_credentials(const struct route_auth *ra);

#endif
