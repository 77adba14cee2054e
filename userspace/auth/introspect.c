/* OAuth 2.0 token introspection: settings, IdP request and answer (see introspect.h). */
#include "auth/introspect.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/upstream.h"

#define DEFAULT_TIMEOUT_MS 500
#define DEFAULT_CACHE_TTL_S 60
#define INTRO_UPSTREAM_NAME "auth.introspection"

static atomic_uint_fast64_t intro_generation;

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '*';
}

long intro_form_encode(const char *s, size_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (n + 4 > cap)
			return -1;
		if (unreserved(c)) {
			out[n++] = c;
		} else if (c == ' ') {
			out[n++] = '+';
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	if (n >= cap)
		return -1;
	out[n] = '\0';
	return n;
}

/* Appends "&name=" + the encoded value (no '&' when *used is 0). */
static bool form_append(char *out, size_t cap, size_t *used, const char *name, const char *v,
			size_t vlen)
{
	int n = snprintf(out + *used, cap - *used, "%s%s=", *used ? "&" : "", name);
	long e;

	if (n < 0 || (size_t)n >= cap - *used)
		return false;
	*used += n;
	e = intro_form_encode(v, vlen, out + *used, cap - *used);
	if (e < 0)
		return false;
	*used += e;
	return true;
}

char *intro_request_body(const struct introspection_config *ic, const char *token, size_t len,
			 size_t *out_len)
{
	size_t cap = 3 * len + 64, used = 0;
	char *out;
	bool ok;

	if (ic->client_auth == INTRO_AUTH_POST)
		cap += 3 * (strlen(ic->client_id) + strlen(ic->client_secret)) + 32;
	out = malloc(cap);
	if (!out)
		return NULL;
	ok = form_append(out, cap, &used, "token", token, len) &&
	     form_append(out, cap, &used, "token_type_hint", "access_token", 12);
	if (ok && ic->client_auth == INTRO_AUTH_POST)
		ok = form_append(out, cap, &used, "client_id", ic->client_id,
				 strlen(ic->client_id)) &&
		     form_append(out, cap, &used, "client_secret", ic->client_secret,
				 strlen(ic->client_secret));
	if (!ok) {
		OPENSSL_cleanse(out, cap);
		free(out);
		return NULL;
	}
	*out_len = used;
	return out;
}

/* RFC 6749 2.3.1: id and secret are form-urlencoded, then joined and base64-encoded. */
static char *basic_header(const char *id, const char *secret)
{
	size_t il = strlen(id), sl = strlen(secret), cap = 3 * (il + sl) + 8;
	char *plain = malloc(cap), *hdr = NULL;
	unsigned char *b64 = malloc(4 * (cap / 3 + 1) + 1);
	long a, b;

	if (!plain || !b64)
		goto out;
	a = intro_form_encode(id, il, plain, cap);
	if (a < 0)
		goto out;
	plain[a] = ':';
	b = intro_form_encode(secret, sl, plain + a + 1, cap - a - 1);
	if (b < 0)
		goto out;
	EVP_EncodeBlock(b64, (unsigned char *)plain, a + 1 + b);
	if (asprintf(&hdr, "Authorization: Basic %s\r\n", b64) < 0)
		hdr = NULL;
out:
	if (plain)
		OPENSSL_cleanse(plain, cap);
	free(plain);
	free(b64);
	return hdr;
}

/* http(s)://IP[:port][/path]: the client resolves nothing. */
static bool parse_url(struct introspection_config *ic, const char *path, struct cfg_errs *errs)
{
	const char *u = ic->url, *auth, *slash;
	char p[CFG_PATH_MAX], hostport[300], msg[128];
	bool https = !strncasecmp(u, "https://", 8);
	size_t alen;

	cfg_path_key(p, path, "url");
	if (!https && strncasecmp(u, "http://", 7)) {
		cfg_err(errs, p, "must be an http:// or https:// URL");
		return false;
	}
	auth = u + (https ? 8 : 7);
	slash = strchr(auth, '/');
	alen = slash ? (size_t)(slash - auth) : strlen(auth);
	if (!alen || alen >= sizeof(hostport) - 4 || memchr(auth, '@', alen) || strchr(u, '#') ||
	    strpbrk(u, " \t\r\n")) {
		cfg_err(errs, p,
			"must be http(s)://ADDRESS[:PORT]/PATH (no user info or fragment)");
		return false;
	}
	ic->host = strndup(auth, alen);
	ic->path = strdup(slash ? slash : "/");
	if (!ic->host || !ic->path) {
		cfg_err(errs, p, "out of memory");
		return false;
	}
	/* A port is present when the text ends in ":digits" after any IPv6 bracket. */
	{
		const char *close = memchr(auth, ']', alen);
		const char *colon = memrchr(auth, ':', alen);
		bool has_port = colon && (!close || colon > close) &&
				(auth[0] == '[' || memchr(auth, ':', alen) == colon);

		snprintf(hostport, sizeof(hostport), "%.*s%s", (int)alen, auth,
			 has_port ? ""
			 : https  ? ":443"
				  : ":80");
	}
	ic->https = https;
	if (!cfg_parse_addr(hostport, &ic->target.addr, &ic->target.addrlen, msg, sizeof(msg))) {
		cfg_err(errs, p, "the host must be an IP address (nothing is resolved): %s", msg);
		return false;
	}
	ic->target.address_text = strdup(hostport);
	if (!ic->target.address_text) {
		cfg_err(errs, p, "out of memory");
		return false;
	}
	return true;
}

/*
 * https: verify the IdP's chain (ca_file, else the system store) and its name (server_name,
 * else the url's host: an IP literal is matched against the certificate's IP SANs).
 */
static void setup_tls(struct introspection_config *ic, json_t *obj, const char *path,
		      struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX];
	const char *host = ic->host;
	size_t hl;

	cfg_get_str(obj, "ca_file", path, NULL, &ic->ca_file, errs);
	cfg_get_str(obj, "server_name", path, NULL, &ic->server_name, errs);
	if (!ic->https) {
		if (ic->ca_file || ic->server_name)
			cfg_err(errs,
				cfg_path_key(p, path, ic->ca_file ? "ca_file" : "server_name"),
				"only for an https:// url");
		return;
	}
	if (!ic->server_name) {
		/* the host without port and IPv6 brackets */
		hl = host[0] == '[' ? strcspn(host, "]") : strcspn(host, ":");
		ic->server_name = host[0] == '[' ? strndup(host + 1, hl - 1) : strndup(host, hl);
	}
	ic->tls = SSL_CTX_new(TLS_client_method());
	if (!ic->server_name || !*ic->server_name || !ic->tls) {
		cfg_err(errs, cfg_path_key(p, path, "server_name"), "must not be empty");
		return;
	}
	SSL_CTX_set_min_proto_version(ic->tls, TLS1_2_VERSION);
	SSL_CTX_set_verify(ic->tls, SSL_VERIFY_PEER, NULL);
	if (ic->ca_file ? SSL_CTX_load_verify_locations(ic->tls, ic->ca_file, NULL) != 1
			: SSL_CTX_set_default_verify_paths(ic->tls) != 1)
		cfg_err(errs, cfg_path_key(p, path, "ca_file"), "cannot load CA certificates%s%s",
			ic->ca_file ? " from " : "", ic->ca_file ? ic->ca_file : "");
}

static void setup_upstream(struct introspection_config *ic)
{
	struct upstream_config *uc = &ic->upstream;
	char name[300];

	/* TLS connections are pooled apart from plain ones, and per verified name */
	snprintf(name, sizeof(name), "%s%s%s", INTRO_UPSTREAM_NAME, ic->tls ? " tls " : "",
		 ic->tls ? ic->server_name : "");
	ic->target.weight = 1;
	ic->target.state = target_state_get(name, ic->target.address_text);
	ic->target.metrics_slot = -1;
	uc->name = INTRO_UPSTREAM_NAME;
	uc->balance = BALANCE_ROUND_ROBIN;
	uc->targets = &ic->target;
	uc->ntargets = 1;
	uc->keepalive = 16;
	uc->connect_timeout_ms = ic->timeout_ms;
	uc->read_timeout_ms = ic->timeout_ms;
	uc->metrics_slot = -1;
}

struct introspection_config *introspection_parse(json_t *obj, const char *path,
						 struct cfg_errs *errs)
{
	static const char *const known[] = {
	    "url",	   "client_id",	     "client_secret", "client_auth", "timeout_ms",
	    "cache_ttl_s", "forward_claims", "ca_file",	      "server_name", NULL};
	static const char *const auths[] = {"basic", "post", NULL};
	struct introspection_config *ic = calloc(1, sizeof(*ic));
	int before = errs->count, mode = INTRO_AUTH_BASIC;
	char p[CFG_PATH_MAX];
	long long v;

	if (!ic) {
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	cfg_check_keys(obj, path, known, errs);
	cfg_get_str(obj, "url", path, NULL, &ic->url, errs);
	cfg_get_str(obj, "client_id", path, NULL, &ic->client_id, errs);
	cfg_get_str(obj, "client_secret", path, NULL, &ic->client_secret, errs);
	cfg_get_enum(obj, "client_auth", path, auths, INTRO_AUTH_BASIC, &mode, errs);
	ic->client_auth = mode;
	cfg_get_int(obj, "timeout_ms", path, DEFAULT_TIMEOUT_MS, 1, 60000, &v, errs);
	ic->timeout_ms = v;
	cfg_get_int(obj, "cache_ttl_s", path, DEFAULT_CACHE_TTL_S, 0, 86400, &v, errs);
	ic->cache_ttl_s = v;
	if (!ic->url)
		cfg_err(errs, cfg_path_key(p, path, "url"), "required");
	else if (parse_url(ic, path, errs))
		setup_tls(ic, obj, path, errs);
	if (!ic->client_id || !*ic->client_id)
		cfg_err(errs, cfg_path_key(p, path, "client_id"), "required (a non-empty string)");
	if (!ic->client_secret || !*ic->client_secret)
		cfg_err(errs, cfg_path_key(p, path, "client_secret"),
			"required (a non-empty string, e.g. \"${IDP_SECRET}\")");
	if (errs->count == before && ic->client_auth == INTRO_AUTH_BASIC) {
		ic->basic_header = basic_header(ic->client_id, ic->client_secret);
		if (!ic->basic_header)
			cfg_err(errs, path, "out of memory");
	}
	if (errs->count != before) {
		introspection_free(ic);
		return NULL;
	}
	setup_upstream(ic);
	ic->generation = atomic_fetch_add(&intro_generation, 1) + 1;
	return ic;
}

void introspection_free(struct introspection_config *ic)
{
	if (!ic)
		return;
	free(ic->url);
	free(ic->path);
	free(ic->host);
	free(ic->client_id);
	if (ic->client_secret)
		OPENSSL_cleanse(ic->client_secret, strlen(ic->client_secret));
	free(ic->client_secret);
	if (ic->basic_header)
		OPENSSL_cleanse(ic->basic_header, strlen(ic->basic_header));
	free(ic->basic_header);
	for (int i = 0; i < ic->nforward; i++) {
		free(ic->forward[i].claim);
		free(ic->forward[i].header);
	}
	free(ic->target.address_text);
	SSL_CTX_free(ic->tls);
	free(ic->server_name);
	free(ic->ca_file);
	free(ic);
}

enum intro_status intro_parse_response(int status, const char *body, size_t len, time_t now,
				       json_t **claims, int64_t *expires)
{
	json_t *doc, *active, *exp;

	*claims = NULL;
	*expires = 0;
	if (status != 200)
		return INTRO_ERROR;
	doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	active = json_object_get(doc, "active");
	if (!json_is_object(doc) || !json_is_boolean(active)) {
		json_decref(doc);
		return INTRO_ERROR;
	}
	exp = json_object_get(doc, "exp");
	if (json_is_false(active) || (exp && !json_is_integer(exp)) ||
	    (exp && json_integer_value(exp) <= (json_int_t)now)) {
		json_decref(doc);
		return INTRO_INACTIVE; /* a non-numeric exp cannot be honoured: not accepted */
	}
	*expires = exp ? json_integer_value(exp) : 0;
	*claims = doc;
	return INTRO_ACTIVE;
}

uint64_t intro_cache_until(const struct introspection_config *ic, enum intro_status status,
			   int64_t expires, time_t now, uint64_t now_ms)
{
	uint64_t ttl_s = ic->cache_ttl_s;

	if (status == INTRO_ERROR || !ttl_s)
		return 0;
	if (status == INTRO_INACTIVE)
		ttl_s = ttl_s < INTRO_NEGATIVE_TTL_S ? ttl_s : INTRO_NEGATIVE_TTL_S;
	/* exp is in whole seconds: the entry lives until the last ms before it at the latest */
	if (status == INTRO_ACTIVE && expires && (uint64_t)(expires - now) < ttl_s)
		return now_ms + (uint64_t)(expires - now) * 1000 - 1;
	return now_ms + ttl_s * 1000;
}
