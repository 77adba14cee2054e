#include "auth/auth_internal.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "metrics/metrics.h"

#define DEFAULT_MAX_TOKEN_BYTES 8192
#define DEFAULT_CACHE_SIZE 4096
#define MAX_PEM_FILES 64

static EVP_MD *auth_sha256_md;
static pthread_once_t auth_sha256_once = PTHREAD_ONCE_INIT;

static void auth_sha256_fetch(void)
{
	auth_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

bool auth_sha256(const void *data, size_t len, unsigned char out[AUTH_DIGEST_LEN])
{
	unsigned int n = 0;

	pthread_once(&auth_sha256_once, auth_sha256_fetch);
	return auth_sha256_md && EVP_Digest(data, len, out, &n, auth_sha256_md, NULL) == 1 &&
	       n == AUTH_DIGEST_LEN;
}

uint64_t auth_digest_prefix(const unsigned char digest[AUTH_DIGEST_LEN])
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | digest[i];
	return v;
}

static void string_list_free(struct string_list *l)
{
	cfg_strings_free(l->items, l->n);
	memset(l, 0, sizeof(*l));
}

static bool is_tchar(int c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool header_name_ok(const char *name)
{
	const char *p;

	if (!*name || strlen(name) >= sizeof(((struct auth_result *)0)->forward[0].name))
		return false;
	for (p = name; *p; p++)
		if (!is_tchar((unsigned char)*p))
			return false;
	return true;
}

/* Headers whose meaning belongs to HTTP framing or to the gateway itself. */
static bool header_reserved(const char *name)
{
	static const char *const reserved[] = {"host",
					       "content-length",
					       "transfer-encoding",
					       "connection",
					       "keep-alive",
					       "proxy-connection",
					       "te",
					       "trailer",
					       "upgrade",
					       "authorization",
					       "proxy-authorization",
					       "x-forwarded-for",
					       "x-forwarded-proto",
					       "x-request-id",
					       AUTH_CONSUMER_HEADER,
					       AUTH_CLIENT_CERT_HEADER,
					       NULL};
	int i;

	for (i = 0; reserved[i]; i++)
		if (!strcasecmp(reserved[i], name))
			return true;
	return false;
}

/* "forward_claims" of auth.jwt or auth.introspection into fw[*nfw] (AUTH_MAX_FORWARD). */
static void parse_forward_claims(struct forward_claim *fw, int *nfw, json_t *obj, const char *path,
				 struct cfg_errs *errs)
{
	json_t *fc = cfg_get_object(obj, "forward_claims", path, errs), *v;
	char p[CFG_PATH_MAX], kp[CFG_PATH_MAX];
	const char *claim;
	int i;

	if (!fc)
		return;
	cfg_path_key(p, path, "forward_claims");
	json_object_foreach(fc, claim, v)
	{
		const char *hdr = json_string_value(v);

		cfg_path_key(kp, p, claim);
		if (!hdr || !header_name_ok(hdr)) {
			cfg_err(errs, kp, "must be a header name (token characters, < 64 bytes)");
			continue;
		}
		if (header_reserved(hdr)) {
			cfg_err(errs, kp, "header \"%s\" is reserved", hdr);
			continue;
		}
		for (i = 0; i < *nfw; i++)
			if (!strcasecmp(fw[i].header, hdr))
				break;
		if (i < *nfw) {
			cfg_err(errs, kp, "header \"%s\" is already used", hdr);
			continue;
		}
		if (!*claim || *nfw == AUTH_MAX_FORWARD) {
			cfg_err(errs, kp,
				*claim ? "at most %d claims can be forwarded"
				       : "claim name must not be empty",
				AUTH_MAX_FORWARD);
			continue;
		}
		fw[*nfw].claim = strdup(claim);
		fw[*nfw].header = strdup(hdr);
		if (!fw[*nfw].claim || !fw[*nfw].header)
			cfg_err(errs, kp, "out of memory");
		(*nfw)++;
	}
}

static void parse_algorithms(struct jwt_settings *jwt, json_t *obj, const char *path,
			     struct cfg_errs *errs)
{
	json_t *arr = cfg_get_array(obj, "algorithms", path, errs), *v;
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	size_t i;

	/* Without a list: every public-key algorithm; HMAC must be asked for explicitly. */
	if (!json_object_get(obj, "algorithms")) {
		for (i = JWA_RS256; i < JWA_COUNT; i++)
			jwt->policy.algorithms |= 1u << i;
		return;
	}
	if (!arr)
		return;
	cfg_path_key(p, path, "algorithms");
	if (!json_array_size(arr))
		cfg_err(errs, p, "must list at least one algorithm");
	json_array_foreach(arr, i, v)
	{
		const char *name = json_string_value(v);
		enum jwa_alg alg = name ? jwa_from_name(name) : JWA_UNKNOWN;

		cfg_path_idx(ip, p, i);
		if (!name)
			cfg_err(errs, ip, "must be a string");
		else if (!strcasecmp(name, "none"))
			cfg_err(errs, ip, "algorithm \"none\" is never accepted");
		else if (alg == JWA_UNKNOWN)
			cfg_err(errs, ip, "unknown algorithm \"%s\"", name);
		else
			jwt->policy.algorithms |= 1u << alg;
	}
}

static void parse_pem_sources(struct key_sources *src, json_t *obj, const char *path,
			      struct cfg_errs *errs)
{
	json_t *arr = cfg_get_array(obj, "public_keys", path, errs), *v;
	static const char *const known[] = {"file", "kid", NULL};
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	size_t i;

	if (!arr)
		return;
	cfg_path_key(p, path, "public_keys");
	if (json_array_size(arr) > MAX_PEM_FILES) {
		cfg_err(errs, p, "at most %d files", MAX_PEM_FILES);
		return;
	}
	src->pems = calloc(json_array_size(arr) + 1, sizeof(*src->pems));
	if (!src->pems) {
		cfg_err(errs, p, "out of memory");
		return;
	}
	json_array_foreach(arr, i, v)
	{
		struct pem_source *pem = &src->pems[src->npems];
		char *file = NULL, *kid = NULL;

		cfg_path_idx(ip, p, i);
		if (json_is_string(v)) {
			file = strdup(json_string_value(v));
		} else if (json_is_object(v)) {
			cfg_check_keys(v, ip, known, errs);
			cfg_get_str(v, "file", ip, NULL, &file, errs);
			cfg_get_str(v, "kid", ip, NULL, &kid, errs);
		}
		if (!file || !*file) {
			cfg_err(errs, ip,
				"must be a PEM file name or {\"file\": ..., \"kid\": ...}");
			free(file);
			free(kid);
			continue;
		}
		pem->path = file;
		pem->kid = kid;
		src->npems++;
	}
}

static void load_keyset(struct jwt_settings *jwt, const char *path, struct cfg_errs *errs)
{
	char err[512], p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	int n = key_sources_count(&jwt->sources), bad;

	jwt->loaded_stamps = calloc(n + 1, sizeof(*jwt->loaded_stamps));
	jwt->failed_stamps = calloc(n + 1, sizeof(*jwt->failed_stamps));
	if (!jwt->loaded_stamps || !jwt->failed_stamps) {
		cfg_err(errs, path, "out of memory");
		return;
	}
	key_sources_stamp(&jwt->sources, jwt->loaded_stamps);
	jwt->keyset = keyset_load(&jwt->sources, &bad, err, sizeof(err));
	if (!jwt->keyset) {
		if (bad == 0 && jwt->sources.jwks_file)
			cfg_path_key(p, path, "jwks_file");
		else
			cfg_path_idx(p, cfg_path_key(ip, path, "public_keys"), bad - 1);
		cfg_err(errs, p, "%s", err);
		return;
	}
	atomic_store(&jwt->generation, jwt->keyset->generation);
}

static void parse_jwt(struct jwt_settings *jwt, json_t *obj, const char *path,
		      struct cfg_errs *errs)
{
	static const char *const known[] = {"jwks_file",       "public_keys",
					    "algorithms",      "issuer",
					    "audience",	       "leeway_s",
					    "roles_claim",     "roles_split",
					    "scopes_claim",    "forward_claims",
					    "max_token_bytes", "cache_size",
					    "require_exp",     NULL};
	long long leeway, max_bytes, cache_size;

	jwt->enabled = true;
	cfg_check_keys(obj, path, known, errs);
	cfg_get_str(obj, "jwks_file", path, NULL, &jwt->sources.jwks_file, errs);
	parse_pem_sources(&jwt->sources, obj, path, errs);
	parse_algorithms(jwt, obj, path, errs);
	cfg_get_str(obj, "issuer", path, NULL, &jwt->policy.issuer, errs);
	cfg_get_str(obj, "audience", path, NULL, &jwt->policy.audience, errs);
	cfg_get_int(obj, "leeway_s", path, 0, 0, 3600, &leeway, errs);
	cfg_get_int(obj, "max_token_bytes", path, DEFAULT_MAX_TOKEN_BYTES, 64, 65536, &max_bytes,
		    errs);
	cfg_get_int(obj, "cache_size", path, DEFAULT_CACHE_SIZE, 0, 1 << 20, &cache_size, errs);
	cfg_get_bool(obj, "require_exp", path, false, &jwt->policy.require_exp, errs);
	cfg_get_str(obj, "roles_claim", path, "roles", &jwt->roles_claim, errs);
	cfg_get_bool(obj, "roles_split", path, false, &jwt->roles_split, errs);
	cfg_get_str(obj, "scopes_claim", path, "scope", &jwt->scopes_claim, errs);
	jwt->policy.leeway_s = leeway;
	jwt->policy.max_token_bytes = max_bytes;
	jwt->cache_size = cache_size;
	parse_forward_claims(jwt->forward, &jwt->nforward, obj, path, errs);
	if (jwt->sources.jwks_file && !*jwt->sources.jwks_file) {
		char p[CFG_PATH_MAX];

		cfg_err(errs, cfg_path_key(p, path, "jwks_file"), "must not be empty");
		return;
	}
	if (!key_sources_count(&jwt->sources)) {
		cfg_err(errs, path, "needs \"jwks_file\" or \"public_keys\"");
		return;
	}
	load_keyset(jwt, path, errs);
}

static void parse_api_keys(struct auth_config *a, json_t *obj, const char *path,
			   struct cfg_errs *errs)
{
	static const char *const known[] = {"header", "query", NULL};
	char p[CFG_PATH_MAX];

	if (obj)
		cfg_check_keys(obj, path, known, errs);
	cfg_get_str(obj, "header", path, "X-API-Key", &a->api_key_header, errs);
	cfg_get_str(obj, "query", path, NULL, &a->api_key_query, errs);
	if (a->api_key_header &&
	    (!header_name_ok(a->api_key_header) || header_reserved(a->api_key_header)))
		cfg_err(errs, cfg_path_key(p, path, "header"), "invalid header name \"%s\"",
			a->api_key_header);
	if (a->api_key_query && !*a->api_key_query)
		cfg_err(errs, cfg_path_key(p, path, "query"), "must not be empty");
}

static bool consumer_name_ok(const char *name)
{
	const unsigned char *p;

	if (!*name || strlen(name) >= sizeof(((struct auth_result *)0)->consumer))
		return false;
	for (p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static void parse_consumer_keys(struct auth_config *a, json_t *keys, int ci, const char *path,
				struct cfg_errs *errs)
{
	char ip[CFG_PATH_MAX];
	json_t *v;
	size_t i;

	json_array_foreach(keys, i, v)
	{
		struct api_key *k = &a->keys[a->nkeys];

		cfg_path_idx(ip, path, i);
		if (!json_is_string(v) || !json_string_length(v)) {
			cfg_err(errs, ip, "must be a non-empty string");
			continue;
		}
		if (!auth_sha256(json_string_value(v), json_string_length(v), k->digest)) {
			cfg_err(errs, ip, "cannot hash the key");
			continue;
		}
		k->prefix = auth_digest_prefix(k->digest);
		k->consumer = ci;
		a->nkeys++;
	}
}

static void parse_consumer(struct auth_config *a, json_t *obj, const char *path,
			   struct cfg_errs *errs)
{
	static const char *const known[] = {"name", "api_keys", "roles", NULL};
	struct consumer *c = &a->consumers[a->nconsumers];
	struct string_list roles;
	char p[CFG_PATH_MAX];
	json_t *keys;
	int i;

	if (!json_is_object(obj)) {
		cfg_err(errs, path, "must be an object");
		return;
	}
	cfg_check_keys(obj, path, known, errs);
	cfg_get_str(obj, "name", path, NULL, &c->name, errs);
	cfg_path_key(p, path, "name");
	if (!c->name || !consumer_name_ok(c->name)) {
		cfg_err(errs, p, "must be a printable string of 1 to 127 bytes");
		free(c->name);
		c->name = NULL;
		return;
	}
	for (i = 0; i < a->nconsumers; i++) {
		if (!strcmp(a->consumers[i].name, c->name)) {
			cfg_err(errs, p, "duplicate consumer \"%s\"", c->name);
			free(c->name);
			c->name = NULL;
			return;
		}
	}
	c->metrics_slot = metrics_consumer_slot(c->name);
	cfg_get_strings(obj, "roles", path, false, &roles.items, &roles.n, errs);
	c->roles = roles.items;
	c->nroles = roles.n;
	keys = cfg_get_array(obj, "api_keys", path, errs);
	if (keys)
		parse_consumer_keys(a, keys, a->nconsumers, cfg_path_key(p, path, "api_keys"),
				    errs);
	a->nconsumers++;
}

static int api_key_cmp(const void *x, const void *y)
{
	return memcmp(((const struct api_key *)x)->digest, ((const struct api_key *)y)->digest,
		      AUTH_DIGEST_LEN);
}

static void parse_consumers(struct auth_config *a, json_t *arr, struct cfg_errs *errs)
{
	size_t i, nkeys = 0;
	char p[CFG_PATH_MAX];
	json_t *v;
	int k;

	if (!arr)
		return;
	if (!json_is_array(arr)) {
		cfg_err(errs, "consumers", "must be an array");
		return;
	}
	json_array_foreach(arr, i, v) nkeys += json_array_size(json_object_get(v, "api_keys"));
	a->consumers = calloc(json_array_size(arr) + 1, sizeof(*a->consumers));
	a->keys = calloc(nkeys + 1, sizeof(*a->keys));
	if (!a->consumers || !a->keys) {
		cfg_err(errs, "consumers", "out of memory");
		return;
	}
	json_array_foreach(arr, i, v) parse_consumer(a, v, cfg_path_idx(p, "consumers", i), errs);
	qsort(a->keys, a->nkeys, sizeof(*a->keys), api_key_cmp);
	for (k = 1; k < a->nkeys; k++)
		if (!api_key_cmp(&a->keys[k - 1], &a->keys[k]))
			cfg_err(errs, "consumers",
				"the same API key is configured for \"%s\" and \"%s\"",
				a->consumers[a->keys[k - 1].consumer].name,
				a->consumers[a->keys[k].consumer].name);
}

static void parse_introspection(struct auth_config *a, json_t *obj, const char *path,
				struct cfg_errs *errs)
{
	int before = errs->count;

	a->introspection = introspection_parse(obj, path, errs);
	if (!a->introspection)
		return;
	parse_forward_claims(a->introspection->forward, &a->introspection->nforward, obj, path,
			     errs);
	if (errs->count != before) {
		introspection_free(a->introspection);
		a->introspection = NULL;
	}
}

static struct auth_config *auth_config_alloc(void)
{
	struct auth_config *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	pthread_mutex_init(&a->jwt.lock, NULL);
	atomic_init(&a->jwt.generation, 0);
	return a;
}

struct auth_config *auth_config_parse(json_t *auth, json_t *consumers, struct cfg_errs *errs)
{
	static const char *const known[] = {"jwt", "api_keys", "introspection", NULL};
	struct auth_config *a = auth_config_alloc();
	int before = errs->count;
	json_t *jwt, *intro, *api_keys = NULL;

	if (!a) {
		cfg_err(errs, "auth", "out of memory");
		return NULL;
	}
	if (auth && !json_is_object(auth) && !json_is_null(auth)) {
		cfg_err(errs, "auth", "must be an object");
	} else if (auth) {
		cfg_check_keys(auth, "auth", known, errs);
		jwt = cfg_get_object(auth, "jwt", "auth", errs);
		if (jwt)
			parse_jwt(&a->jwt, jwt, "auth.jwt", errs);
		api_keys = cfg_get_object(auth, "api_keys", "auth", errs);
		intro = cfg_get_object(auth, "introspection", "auth", errs);
		if (intro)
			parse_introspection(a, intro, "auth.introspection", errs);
	}
	parse_api_keys(a, api_keys, "auth.api_keys", errs);
	parse_consumers(a, consumers, errs);
	if (errs->count != before) {
		auth_config_free(a);
		return NULL;
	}
	return a;
}

void auth_config_free(struct auth_config *a)
{
	int i;

	if (!a)
		return;
	free(a->jwt.policy.issuer);
	free(a->jwt.policy.audience);
	free(a->jwt.roles_claim);
	free(a->jwt.scopes_claim);
	for (i = 0; i < a->jwt.nforward; i++) {
		free(a->jwt.forward[i].claim);
		free(a->jwt.forward[i].header);
	}
	key_sources_free(&a->jwt.sources);
	free(a->jwt.loaded_stamps);
	free(a->jwt.failed_stamps);
	keyset_put(a->jwt.keyset);
	pthread_mutex_destroy(&a->jwt.lock);
	introspection_free(a->introspection);
	free(a->api_key_header);
	free(a->api_key_query);
	for (i = 0; i < a->nconsumers; i++) {
		struct string_list roles = {a->consumers[i].roles, a->consumers[i].nroles};

		free(a->consumers[i].name);
		string_list_free(&roles);
	}
	free(a->consumers);
	if (a->keys)
		OPENSSL_cleanse(a->keys, sizeof(*a->keys) * a->nkeys);
	free(a->keys);
	free(a);
}

static bool stamps_equal(const struct file_stamp *a, const struct file_stamp *b, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (!file_stamp_equal(&a[i], &b[i]))
			return false;
	return true;
}

void auth_config_tick(struct auth_config *a)
{
	struct jwt_settings *jwt;
	struct file_stamp now[1 + MAX_PEM_FILES];
	struct keyset *ks, *old;
	char err[512];
	int n, bad;

	if (!a || !a->jwt.enabled || !a->jwt.keyset)
		return;
	jwt = &a->jwt;
	n = key_sources_count(&jwt->sources);
	/* A missing file is a rename in progress or an operator error: keep the old keys. */
	if (!key_sources_stamp(&jwt->sources, now) || stamps_equal(now, jwt->loaded_stamps, n) ||
	    stamps_equal(now, jwt->failed_stamps, n))
		return;
	ks = keyset_load(&jwt->sources, &bad, err, sizeof(err));
	if (!ks) {
		memcpy(jwt->failed_stamps, now, n * sizeof(*now));
		log_error("auth", "JWT keys not reloaded, keeping %d old keys: %s",
			  jwt->keyset->nkeys, err);
		return;
	}
	memcpy(jwt->loaded_stamps, now, n * sizeof(*now));
	pthread_mutex_lock(&jwt->lock);
	old = jwt->keyset;
	jwt->keyset = ks;
	atomic_store(&jwt->generation, ks->generation);
	pthread_mutex_unlock(&jwt->lock);
	keyset_put(old);
	log_info("auth", "JWT keys reloaded: %d keys (keyset generation %llu)", ks->nkeys,
		 (unsigned long long)ks->generation);
}

size_t auth_cache_size(const struct auth_config *a)
{
	return a && a->jwt.enabled ? a->jwt.cache_size : 0;
}

uint64_t auth_keyset_generation(const struct auth_config *a)
{
	return a ? atomic_load(&((struct auth_config *)a)->jwt.generation) : 0;
}

const struct introspection_config *auth_introspection(const struct auth_config *a)
{
	return a ? a->introspection : NULL;
}
