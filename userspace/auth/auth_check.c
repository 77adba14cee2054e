#include "auth/auth_internal.h"

#include <openssl/crypto.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/dn.h"
#include "auth/jwt_cache.h"

/* Longest API key accepted from the query string (decoded). */
#define API_KEY_QUERY_MAX 1024

static const char *const reason_names[AUTH_REASON_COUNT] = {
    [AUTH_OK] = "ok",
    [AUTH_MISSING] = "missing",
    [AUTH_MALFORMED] = "malformed",
    [AUTH_BAD_ALG] = "bad_alg",
    [AUTH_UNKNOWN_KID] = "unknown_kid",
    [AUTH_BAD_SIGNATURE] = "bad_signature",
    [AUTH_EXPIRED] = "expired",
    [AUTH_NOT_YET_VALID] = "not_yet_valid",
    [AUTH_BAD_ISSUER] = "bad_issuer",
    [AUTH_BAD_AUDIENCE] = "bad_audience",
    [AUTH_BAD_API_KEY] = "bad_api_key",
    [AUTH_FORBIDDEN_ROLE] = "forbidden_role",
    [AUTH_FORBIDDEN_SCOPE] = "forbidden_scope",
    [AUTH_FORBIDDEN_SCHEDULE] = "forbidden_schedule",
    [AUTH_TOKEN_TOO_LARGE] = "token_too_large",
    [AUTH_CRIT] = "crit",
    [AUTH_INACTIVE] = "inactive",
    [AUTH_IDP_UNAVAILABLE] = "introspection_unavailable",
    [AUTH_BAD_CLIENT_CERT] = "bad_client_cert",
    [AUTH_FORBIDDEN_SUBJECT] = "forbidden_subject",
};

const char *auth_reason_name(enum auth_reason r)
{
	return r >= 0 && r < AUTH_REASON_COUNT ? reason_names[r] : "unknown";
}

int auth_reason_status(enum auth_reason r)
{
	switch (r) {
	case AUTH_OK:
		return 0;
	case AUTH_FORBIDDEN_ROLE:
	case AUTH_FORBIDDEN_SCOPE:
	case AUTH_FORBIDDEN_SCHEDULE:
	case AUTH_FORBIDDEN_SUBJECT:
		return 403;
	case AUTH_IDP_UNAVAILABLE:
	case AUTH_PENDING:
		return 503;
	default:
		return 401;
	}
}

static bool str_eq_nocase(struct http_str s, const char *lit)
{
	return strlen(lit) == s.len && !strncasecmp(s.p, lit, s.len);
}

/* Number of headers called name; *val is the first. */
static int find_header(const struct http_request *req, const char *name, struct http_str *val)
{
	int i, n = 0;

	*val = (struct http_str){NULL, 0};
	for (i = 0; i < req->nheaders; i++) {
		if (!str_eq_nocase(req->headers[i].name, name))
			continue;
		if (!n++)
			*val = req->headers[i].value;
	}
	return n;
}

static const char *result_claim(const struct auth_result *r, const char *name)
{
	static __thread char number[32];
	json_t *v;

	if (!r->priv)
		return NULL;
	v = jwt_claim(r->priv, name);
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v)) {
		snprintf(number, sizeof(number), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return number;
	}
	return NULL;
}

static void result_init(struct auth_result *out)
{
	out->status = 0;
	out->reason = AUTH_OK;
	out->consumer[0] = '\0';
	out->consumer_slot = -1;
	out->identity[0] = '\0';
	out->nforward = 0;
	out->claim = result_claim;
	out->priv = NULL;
}

void auth_result_release(struct auth_result *r)
{
	json_decref(r->priv);
	r->priv = NULL;
}

static void result_clear(struct auth_result *out)
{
	auth_result_release(out);
	result_init(out);
}

/* True when item is in v: an array of strings, or a string that is the item itself or,
 * when split, a space-separated list holding it. */
static bool token_list_has(json_t *v, const char *item, bool split)
{
	size_t i, ilen = strlen(item);
	const char *p, *end;
	json_t *e;

	if (json_is_array(v)) {
		json_array_foreach(v, i, e) if (json_is_string(e) &&
						!strcmp(json_string_value(e), item)) return true;
		return false;
	}
	if (!json_is_string(v))
		return false;
	if (!split)
		return !strcmp(json_string_value(v), item);
	p = json_string_value(v);
	end = p + json_string_length(v);
	while (p < end) {
		const char *sp = memchr(p, ' ', end - p);
		size_t len = (sp ? sp : end) - p;

		if (len == ilen && !memcmp(p, item, len))
			return true;
		p += len + 1;
	}
	return false;
}

/*
 * Roles: a string claim is one role unless roles_split says the issuer writes a list that
 * way ("user admin" must not become "admin" for an issuer whose role names hold spaces).
 */
static bool any_role(json_t *have, const struct string_list *want, bool split)
{
	int i;

	for (i = 0; i < want->n; i++)
		if (token_list_has(have, want->items[i], split))
			return true;
	return !want->n;
}

static bool all_scopes(json_t *have, const struct string_list *want)
{
	int i;

	/* "scope" is a space-separated list by definition (RFC 8693 4.2) */
	for (i = 0; i < want->n; i++)
		if (!token_list_has(have, want->items[i], true))
			return false;
	return true;
}

static bool header_value_ok(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = s[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static bool append(char *out, size_t outlen, size_t *used, const char *s, size_t len)
{
	if (*used + len >= outlen)
		return false;
	memcpy(out + *used, s, len);
	*used += len;
	out[*used] = '\0';
	return true;
}

static bool format_scalar(json_t *v, char *out, size_t outlen, size_t *used)
{
	char num[48];
	int n;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return append(out, outlen, used, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return append(out, outlen, used, num, n);
	case JSON_REAL:
		n = snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		return append(out, outlen, used, num, n);
	case JSON_TRUE:
		return append(out, outlen, used, "true", 4);
	case JSON_FALSE:
		return append(out, outlen, used, "false", 5);
	default:
		n = json_dumpb(v, out + *used, outlen - *used - 1, JSON_COMPACT);
		if (n <= 0 || (size_t)n >= outlen - *used)
			return false;
		*used += n;
		out[*used] = '\0';
		return true;
	}
}

/*
 * A claim as a header value: scalars as text, arrays of scalars comma-joined, objects as
 * compact JSON. 1 ok, 0 nothing to forward (absent/null), -1 cannot be forwarded faithfully
 * (control characters, too long): the request is refused rather than the identity altered.
 */
static int format_claim(json_t *v, char *out, size_t outlen)
{
	size_t used = 0, i;
	json_t *e;

	out[0] = '\0';
	if (!v || json_is_null(v))
		return 0;
	if (json_is_array(v)) {
		json_array_foreach(v, i, e) if ((i && !append(out, outlen, &used, ",", 1)) ||
						!format_scalar(e, out, outlen, &used)) return -1;
	} else if (!format_scalar(v, out, outlen, &used)) {
		return -1;
	}
	return header_value_ok(out, used) ? 1 : -1;
}

static enum auth_reason forward_claims(const struct forward_claim *fw, int nfw, json_t *claims,
				       struct auth_result *out);

static enum auth_reason fill_jwt_result(const struct jwt_settings *jwt, json_t *claims,
					struct auth_result *out)
{
	json_t *sub = json_object_get(claims, "sub"), *iss = json_object_get(claims, "iss");
	const char *issuer = json_is_string(iss) ? json_string_value(iss) : "";
	int n;

	if (json_is_string(sub)) {
		snprintf(out->consumer, sizeof(out->consumer), "%s", json_string_value(sub));
		n = snprintf(out->identity, sizeof(out->identity), "jwt:%zu:%s%s", strlen(issuer),
			     issuer, json_string_value(sub));
		if (n < 0 || (size_t)n >= sizeof(out->identity))
			return AUTH_MALFORMED; /* a truncated identity could be someone else's */
	}
	if (forward_claims(jwt->forward, jwt->nforward, claims, out) != AUTH_OK)
		return AUTH_MALFORMED;
	out->priv = json_incref(claims);
	return AUTH_OK;
}

/* Claims the auth.jwt / auth.introspection forward_claims name, as request headers. */
static enum auth_reason forward_claims(const struct forward_claim *fw, int nfw, json_t *claims,
				       struct auth_result *out)
{
	int i, n;

	for (i = 0; i < nfw && out->nforward < AUTH_MAX_FORWARD; i++) {
		n = format_claim(jwt_claim(claims, fw[i].claim), out->forward[out->nforward].value,
				 sizeof(out->forward[0].value));
		if (n < 0)
			return AUTH_MALFORMED;
		if (!n)
			continue;
		snprintf(out->forward[out->nforward].name, sizeof(out->forward[0].name), "%s",
			 fw[i].header);
		out->nforward++;
	}
	return AUTH_OK;
}

static enum auth_reason bearer_token(const struct http_request *req, struct http_str *tok)
{
	struct http_str v;
	int n = find_header(req, "Authorization", &v);

	if (!n)
		return AUTH_MISSING;
	if (n > 1)
		return AUTH_MALFORMED; /* which one would the upstream believe? */
	if (v.len < 6 || strncasecmp(v.p, "Bearer", 6) || (v.len > 6 && v.p[6] != ' '))
		return AUTH_MISSING; /* another scheme: no bearer credentials */
	tok->p = v.p + 6;
	tok->len = v.len - 6;
	while (tok->len && *tok->p == ' ') {
		tok->p++;
		tok->len--;
	}
	return tok->len ? AUTH_OK : AUTH_MALFORMED;
}

static struct keyset *keyset_acquire(const struct auth_config *a)
{
	struct jwt_settings *jwt = (struct jwt_settings *)&a->jwt;
	struct keyset *ks;

	pthread_mutex_lock(&jwt->lock);
	ks = jwt->keyset ? keyset_get(jwt->keyset) : NULL;
	pthread_mutex_unlock(&jwt->lock);
	return ks;
}

/* Claims of a valid token, from the cache or by a full verification. */
static enum auth_reason jwt_claims(const struct auth_config *a, struct jwt_cache *cache,
				   struct http_str tok, time_t now, json_t **claims)
{
	unsigned char digest[JWT_CACHE_DIGEST_LEN];
	struct jwt_validity validity;
	bool cached = cache && a->jwt.cache_size;
	struct keyset *ks;
	enum auth_reason r;
	json_t *hit;

	if (tok.len > a->jwt.policy.max_token_bytes)
		return AUTH_TOKEN_TOO_LARGE;
	if (cached && !jwt_cache_digest(cache, tok.p, tok.len, digest))
		cached = false;
	if (cached) {
		hit = jwt_cache_lookup(cache, digest, auth_keyset_generation(a), now);
		if (hit) {
			*claims = json_incref(hit);
			return AUTH_OK;
		}
	}
	ks = keyset_acquire(a);
	if (!ks)
		return AUTH_UNKNOWN_KID;
	r = jwt_verify(&a->jwt.policy, ks, tok.p, tok.len, now, claims, &validity);
	jwt_cache_count_verification(cache);
	if (r == AUTH_OK && cached)
		jwt_cache_insert(cache, digest, ks->generation, &validity, *claims);
	keyset_put(ks);
	return r;
}

static enum auth_reason check_jwt(const struct auth_config *a, const struct auth_method *m,
				  struct jwt_cache *cache, const struct http_request *req,
				  time_t now, struct auth_result *out)
{
	struct http_str tok;
	enum auth_reason r;
	json_t *claims = NULL;

	if (!a->jwt.enabled)
		return AUTH_MISSING;
	r = bearer_token(req, &tok);
	if (r == AUTH_OK)
		r = jwt_claims(a, cache, tok, now, &claims);
	if (r != AUTH_OK)
		return r;
	if (!any_role(jwt_claim(claims, a->jwt.roles_claim), &m->roles, a->jwt.roles_split))
		r = AUTH_FORBIDDEN_ROLE;
	else if (!all_scopes(jwt_claim(claims, a->jwt.scopes_claim), &m->scopes))
		r = AUTH_FORBIDDEN_SCOPE;
	else
		r = fill_jwt_result(&a->jwt, claims, out);
	json_decref(claims);
	return r;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* 1 found (decoded into out), 0 absent, -1 malformed, repeated or too long. */
static int query_param(struct http_str q, const char *name, char *out, size_t outlen, size_t *len)
{
	const char *p = q.p, *end = q.p + q.len;
	size_t nlen = strlen(name);
	int found = 0;

	while (p < end) {
		const char *amp = memchr(p, '&', end - p), *pend = amp ? amp : end;

		if ((size_t)(pend - p) > nlen && !memcmp(p, name, nlen) && p[nlen] == '=') {
			const char *v = p + nlen + 1;

			if (found++)
				return -1;
			for (*len = 0; v < pend; (*len)++) {
				if (*len + 1 >= outlen)
					return -1;
				if (*v == '%') {
					if (pend - v < 3 || hexval(v[1]) < 0 || hexval(v[2]) < 0)
						return -1;
					out[*len] = (char)(hexval(v[1]) << 4 | hexval(v[2]));
					v += 3;
				} else {
					out[*len] = *v++;
				}
			}
		}
		p = pend + 1;
	}
	return found;
}

static const struct consumer *api_key_lookup(const struct auth_config *a, const char *key,
					     size_t len)
{
	unsigned char digest[AUTH_DIGEST_LEN];
	uint64_t prefix;
	int lo = 0, hi = a->nkeys, found = -1, i;

	if (!auth_sha256(key, len, digest))
		return NULL;
	prefix = auth_digest_prefix(digest);
	/* The search only sees digests; the final comparison is constant-time. */
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;

		if (a->keys[mid].prefix < prefix)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = lo; i < a->nkeys && a->keys[i].prefix == prefix; i++)
		if (!CRYPTO_memcmp(a->keys[i].digest, digest, AUTH_DIGEST_LEN))
			found = i;
	OPENSSL_cleanse(digest, sizeof(digest));
	return found >= 0 ? &a->consumers[a->keys[found].consumer] : NULL;
}

static enum auth_reason check_api_key(const struct auth_config *a, const struct auth_method *m,
				      const struct http_request *req, struct auth_result *out)
{
	char qbuf[API_KEY_QUERY_MAX + 1];
	const struct consumer *c;
	struct http_str key;
	size_t qlen;
	int n = find_header(req, a->api_key_header, &key), q;
	struct string_list roles;

	if (n > 1)
		return AUTH_MALFORMED;
	if (!n && a->api_key_query) {
		q = query_param(req->query, a->api_key_query, qbuf, sizeof(qbuf), &qlen);
		if (q < 0)
			return AUTH_MALFORMED;
		if (q) {
			n = 1;
			key.p = qbuf;
			key.len = qlen;
		}
	}
	if (!n)
		return AUTH_MISSING;
	c = key.len ? api_key_lookup(a, key.p, key.len) : NULL;
	OPENSSL_cleanse(qbuf, sizeof(qbuf));
	if (!c)
		return AUTH_BAD_API_KEY;
	roles.items = c->roles;
	roles.n = c->nroles;
	for (n = 0; n < m->roles.n; n++) {
		for (q = 0; q < roles.n; q++)
			if (!strcmp(m->roles.items[n], roles.items[q]))
				break;
		if (q < roles.n)
			break;
	}
	if (m->roles.n && n == m->roles.n)
		return AUTH_FORBIDDEN_ROLE;
	snprintf(out->consumer, sizeof(out->consumer), "%s", c->name);
	out->consumer_slot = c->metrics_slot;
	snprintf(out->identity, sizeof(out->identity), "key:%s", c->name);
	snprintf(out->forward[0].name, sizeof(out->forward[0].name), "%s", AUTH_CONSUMER_HEADER);
	snprintf(out->forward[0].value, sizeof(out->forward[0].value), "%s", c->name);
	out->nforward = 1;
	return AUTH_OK;
}

static bool subject_listed(const struct auth_method *m, const struct x509_st *cert)
{
	char *canon = dn_canon_x509(X509_get_subject_name(cert));
	bool found = false;

	for (int i = 0; canon && !found && i < m->subjects.n; i++)
		found = !strcmp(canon, m->subjects.items[i]);
	free(canon);
	return found;
}

/* A DNS name (case-insensitively) or URI (exactly) of the subjectAltName is listed. */
static bool san_listed(const struct auth_method *m, const struct x509_st *cert)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	bool found = false;

	for (int i = 0; sans && !found && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		const ASN1_STRING *v;
		size_t len;

		if (gn->type != GEN_DNS && gn->type != GEN_URI)
			continue;
		v = gn->type == GEN_DNS ? gn->d.dNSName : gn->d.uniformResourceIdentifier;
		len = (size_t)ASN1_STRING_length(v);
		for (int j = 0; !found && j < m->sans.n; j++)
			found = strlen(m->sans.items[j]) == len &&
				!(gn->type == GEN_DNS
				      ? strncasecmp(m->sans.items[j],
						    (const char *)ASN1_STRING_get0_data(v), len)
				      : memcmp(m->sans.items[j], ASN1_STRING_get0_data(v), len));
	}
	GENERAL_NAMES_free(sans);
	return found;
}

/* The identity is "mtls:" + subject, or its digest when that would not fit (never cut:
 * two subjects sharing a long prefix must stay two callers for caches and limits). */
static void mtls_identity(const char *subject, struct auth_result *out)
{
	unsigned char d[AUTH_DIGEST_LEN];
	int n = snprintf(out->identity, sizeof(out->identity), "mtls:%s", subject);

	if (n > 0 && (size_t)n < sizeof(out->identity))
		return;
	if (!auth_sha256(subject, strlen(subject), d)) {
		out->identity[0] = '\0';
		return;
	}
	n = snprintf(out->identity, sizeof(out->identity), "mtls#");
	for (int i = 0; i < AUTH_DIGEST_LEN; i++)
		n += snprintf(out->identity + n, sizeof(out->identity) - n, "%02x", d[i]);
}

static enum auth_reason check_mtls(const struct auth_method *m, const struct auth_peer *peer,
				   struct auth_result *out)
{
	if (!peer || !peer->cert)
		return AUTH_MISSING;
	if (!peer->verified || !peer->subject)
		return AUTH_BAD_CLIENT_CERT;
	if ((m->subjects.n && !subject_listed(m, peer->cert)) ||
	    (m->sans.n && !san_listed(m, peer->cert)))
		return AUTH_FORBIDDEN_SUBJECT;
	mtls_identity(peer->subject, out);
	if (!out->identity[0])
		return AUTH_BAD_CLIENT_CERT;
	snprintf(out->consumer, sizeof(out->consumer), "%s", peer->subject);
	out->consumer_slot = -1; /* subjects are unbounded: no counters of their own */
	return AUTH_OK;
}

/* When every method fails, report the most informative failure: 403 > IdP unavailable >
 * invalid > missing. */
static int failure_rank(enum auth_reason r)
{
	if (auth_reason_status(r) == 403)
		return 3;
	if (r == AUTH_IDP_UNAVAILABLE)
		return 2; /* the token may be good: say the gateway could not tell */
	return r == AUTH_MISSING ? 0 : 1;
}

/*
 * Consumer and identity of an introspected token: its sub, else the client_id it was
 * issued to. The identity is namespaced like a JWT's ("oauth:" + issuer length + issuer +
 * subject), so it never equals an API-key consumer's or a JWT subject's.
 */
static enum auth_reason fill_introspection_result(const struct introspection_config *ic,
						  json_t *claims, struct auth_result *out)
{
	json_t *sub = json_object_get(claims, "sub"), *cid = json_object_get(claims, "client_id");
	json_t *iss = json_object_get(claims, "iss");
	const char *who = json_is_string(sub)	? json_string_value(sub)
			  : json_is_string(cid) ? json_string_value(cid)
						: NULL;
	const char *issuer = json_is_string(iss) ? json_string_value(iss) : "";
	int n;

	if (who && *who) {
		snprintf(out->consumer, sizeof(out->consumer), "%s", who);
		n = snprintf(out->identity, sizeof(out->identity), "oauth:%zu:%s%s", strlen(issuer),
			     issuer, who);
		if (n < 0 || (size_t)n >= sizeof(out->identity))
			return AUTH_MALFORMED;
	}
	if (forward_claims(ic->forward, ic->nforward, claims, out) != AUTH_OK)
		return AUTH_MALFORMED;
	out->priv = json_incref(claims);
	return AUTH_OK;
}

static enum auth_reason check_introspection(const struct auth_config *a,
					    const struct auth_method *m,
					    const struct auth_introspector *intro,
					    const struct http_request *req, time_t now,
					    struct auth_result *out)
{
	const struct introspection_config *ic = a->introspection;
	json_t *claims = NULL, *exp;
	struct http_str tok;
	enum auth_reason r;

	if (!ic)
		return AUTH_MISSING;
	r = bearer_token(req, &tok);
	if (r != AUTH_OK)
		return r;
	if (tok.len > INTRO_MAX_TOKEN_BYTES)
		return AUTH_TOKEN_TOO_LARGE;
	r = intro ? intro->lookup(intro->ctx, tok.p, tok.len, &claims) : AUTH_IDP_UNAVAILABLE;
	if (r != AUTH_OK)
		return r;
	/* A cached answer outlives nothing past exp, but the clock is checked here too. */
	exp = json_object_get(claims, "exp");
	if (json_is_integer(exp) && json_integer_value(exp) <= (json_int_t)now)
		r = AUTH_EXPIRED;
	else if (!all_scopes(json_object_get(claims, "scope"), &m->scopes))
		r = AUTH_FORBIDDEN_SCOPE;
	else
		r = fill_introspection_result(ic, claims, out);
	json_decref(claims);
	return r;
}

static enum auth_reason check_method(const struct auth_config *a, const struct auth_method *m,
				     struct jwt_cache *cache, const struct auth_introspector *intro,
				     const struct http_request *req, const struct auth_peer *peer,
				     time_t now, struct auth_result *out)
{
	switch (m->kind) {
	case AUTH_METHOD_JWT:
		return check_jwt(a, m, cache, req, now, out);
	case AUTH_METHOD_API_KEY:
		return check_api_key(a, m, req, out);
	case AUTH_METHOD_MTLS:
		return check_mtls(m, peer, out);
	case AUTH_METHOD_INTROSPECTION:
		return check_introspection(a, m, intro, req, now, out);
	}
	return AUTH_MALFORMED;
}

void auth_check_ex(const struct auth_config *a, const struct route_auth *ra,
		   struct jwt_cache *cache, const struct auth_introspector *intro,
		   const struct http_request *req, const struct auth_peer *peer, time_t now,
		   struct auth_result *out)
{
	enum auth_reason r, best = AUTH_MISSING;
	bool ok, pending = false;
	int i;

	result_init(out);
	if (!ra)
		return;
	ok = !ra->nmethods;
	for (i = 0; i < ra->nmethods && a && !ok; i++) {
		const struct auth_method *m = &ra->methods[i];

		r = check_method(a, m, cache, intro, req, peer, now, out);
		ok = r == AUTH_OK;
		if (!ok) {
			result_clear(out);
			if (r == AUTH_PENDING)
				pending = true;
			else if (failure_rank(r) > failure_rank(best))
				best = r;
		}
	}
	if (!ok && pending)
		best = AUTH_PENDING; /* the IdP's answer may still let the request through */
	if (ok && ra->ndeny && auth_schedule_denies(ra, now)) {
		result_clear(out);
		ok = false;
		best = AUTH_FORBIDDEN_SCHEDULE;
	}
	if (!ok) {
		out->reason = best;
		out->status = auth_reason_status(best);
	}
}

void auth_check_peer(const struct auth_config *a, const struct route_auth *ra,
		     struct jwt_cache *cache, const struct http_request *req,
		     const struct auth_peer *peer, time_t now, struct auth_result *out)
{
	auth_check_ex(a, ra, cache, NULL, req, peer, now, out);
}

void auth_check(const struct auth_config *a, const struct route_auth *ra, struct jwt_cache *cache,
		const struct http_request *req, time_t now, struct auth_result *out)
{
	auth_check_ex(a, ra, cache, NULL, req, NULL, now, out);
}

bool auth_is_identity_header(const struct auth_config *a, struct http_str name)
{
	int i;

	if (str_eq_nocase(name, AUTH_CONSUMER_HEADER) ||
	    str_eq_nocase(name, AUTH_CLIENT_CERT_HEADER))
		return true;
	for (i = 0; a && i < a->jwt.nforward; i++)
		if (str_eq_nocase(name, a->jwt.forward[i].header))
			return true;
	for (i = 0; a && a->introspection && i < a->introspection->nforward; i++)
		if (str_eq_nocase(name, a->introspection->forward[i].header))
			return true;
	return false;
}

bool auth_is_credential_header(const struct auth_config *a, struct http_str name)
{
	return str_eq_nocase(name, "authorization") ||
	       (a && a->api_key_header && str_eq_nocase(name, a->api_key_header));
}

static bool route_uses(const struct route_auth *ra, enum auth_method_kind kind)
{
	for (int i = 0; ra && i < ra->nmethods; i++)
		if (ra->methods[i].kind == kind)
			return true;
	return false;
}

bool auth_route_uses_mtls(const struct route_auth *ra)
{
	return route_uses(ra, AUTH_METHOD_MTLS);
}

bool auth_route_has_credentials(const struct route_auth *ra)
{
	return route_uses(ra, AUTH_METHOD_JWT) || route_uses(ra, AUTH_METHOD_API_KEY) ||
	       route_uses(ra, AUTH_METHOD_INTROSPECTION);
}

bool auth_hidden_header(const struct auth_config *a, const struct route_auth *ra,
			struct http_str name)
{
	if ((route_uses(ra, AUTH_METHOD_JWT) || route_uses(ra, AUTH_METHOD_INTROSPECTION)) &&
	    str_eq_nocase(name, "authorization"))
		return true;
	return route_uses(ra, AUTH_METHOD_API_KEY) && a && a->api_key_header &&
	       str_eq_nocase(name, a->api_key_header);
}

bool auth_hidden_query_param(const struct auth_config *a, const struct route_auth *ra,
			     struct http_str raw_name)
{
	const char *want;
	size_t i = 0, j = 0, wlen;

	if (!route_uses(ra, AUTH_METHOD_API_KEY) || !a || !a->api_key_query)
		return false;
	want = a->api_key_query;
	wlen = strlen(want);
	while (i < raw_name.len) {
		char c = raw_name.p[i];

		if (c == '%' && i + 2 < raw_name.len && hexval(raw_name.p[i + 1]) >= 0 &&
		    hexval(raw_name.p[i + 2]) >= 0) {
			c = (char)(hexval(raw_name.p[i + 1]) << 4 | hexval(raw_name.p[i + 2]));
			i += 3;
		} else {
			i++;
		}
		if (j >= wlen || want[j++] != c)
			return false;
	}
	return j == wlen;
}
