#include "auth/jwt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "auth/b64url.h"

/* Seconds beyond which a NumericDate is treated as "forever" (year ~33658). */
#define JWT_TIME_MAX ((int64_t)1 << 40)

struct jws_parts {
	const char *seg[3];
	size_t len[3];
};

static bool jws_split(const char *token, size_t len, struct jws_parts *parts)
{
	const char *p = token, *end = token + len, *dot;
	int i;

	for (i = 0; i < 3; i++) {
		dot = i < 2 ? memchr(p, '.', end - p) : NULL;
		if (i < 2 && !dot)
			return false;
		parts->seg[i] = p;
		parts->len[i] = (i < 2 ? dot : end) - p;
		if (!parts->len[i])
			return false;
		p = i < 2 ? dot + 1 : end;
	}
	/* A fourth '.' would be a JWE or garbage; the signature segment has none. */
	return !memchr(parts->seg[2], '.', parts->len[2]);
}

/* Parses a JSON object; duplicate members are ambiguous and rejected. */
static json_t *parse_object(const unsigned char *buf, size_t n)
{
	json_t *obj = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);

	if (obj && !json_is_object(obj)) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

/* Header checks: everything that decides the key and algorithm before any crypto. */
static enum auth_reason check_header(const struct jwt_policy *p, const struct keyset *ks,
				     json_t *header, enum jwa_alg *alg, const struct jwk **key)
{
	json_t *jalg = json_object_get(header, "alg"), *jkid = json_object_get(header, "kid");

	if (!json_is_string(jalg) || (jkid && !json_is_string(jkid)))
		return AUTH_MALFORMED;
	*alg = jwa_from_name(json_string_value(jalg));
	if (*alg == JWA_UNKNOWN || !(p->algorithms & (1u << *alg)))
		return AUTH_BAD_ALG;
	/* RFC 7515 4.1.11: extensions we do not understand make the token invalid. */
	if (json_object_get(header, "crit"))
		return AUTH_CRIT;
	*key = keyset_find(ks, json_string_value(jkid));
	if (!*key)
		return AUTH_UNKNOWN_KID;
	if (!jwa_key_fits(*alg, *key))
		return AUTH_BAD_ALG;
	return AUTH_OK;
}

enum auth_reason jwt_verify(const struct jwt_policy *p, const struct keyset *ks, const char *token,
			    size_t len, time_t now, json_t **claims, struct jwt_validity *validity)
{
	struct jws_parts parts;
	json_t *header = NULL, *payload = NULL;
	unsigned char *buf, *dec[3];
	size_t declen[3], max;
	const struct jwk *key;
	enum auth_reason r;
	enum jwa_alg alg;
	int i;

	*claims = NULL;
	if (len > p->max_token_bytes)
		return AUTH_TOKEN_TOO_LARGE;
	if (!jws_split(token, len, &parts))
		return AUTH_MALFORMED;
	max = b64url_decoded_max(len);
	buf = malloc(3 * max);
	if (!buf)
		return AUTH_MALFORMED;
	/* Every segment must be canonical base64url before anything else is looked at. */
	for (i = 0; i < 3; i++) {
		dec[i] = buf + i * max;
		if (!b64url_decode(parts.seg[i], parts.len[i], dec[i], &declen[i])) {
			r = AUTH_MALFORMED;
			goto out;
		}
	}
	header = parse_object(dec[0], declen[0]);
	if (!header) {
		r = AUTH_MALFORMED;
		goto out;
	}
	r = check_header(p, ks, header, &alg, &key);
	if (r != AUTH_OK)
		goto out;
	if (!jwa_verify(alg, key, (const unsigned char *)token, parts.len[0] + 1 + parts.len[1],
			dec[2], declen[2])) {
		r = AUTH_BAD_SIGNATURE;
		goto out;
	}
	payload = parse_object(dec[1], declen[1]);
	if (!payload) {
		r = AUTH_MALFORMED;
		goto out;
	}
	r = jwt_check_claims(p, payload, now, validity);
	if (r == AUTH_OK) {
		*claims = payload;
		payload = NULL;
	}
out:
	json_decref(header);
	json_decref(payload);
	free(buf);
	return r;
}

/* NumericDate: a JSON number of seconds; absent is fine, anything else is malformed. */
static bool numeric_date(json_t *claims, const char *name, bool *present, double *out)
{
	json_t *v = json_object_get(claims, name);

	*present = v != NULL;
	if (!v)
		return true;
	if (!json_is_number(v))
		return false;
	*out = json_number_value(v);
	return isfinite(*out);
}

static int64_t clamp_time(double t)
{
	if (t > (double)JWT_TIME_MAX)
		return JWT_TIME_MAX;
	if (t < -(double)JWT_TIME_MAX)
		return -JWT_TIME_MAX;
	return (int64_t)t;
}

static enum auth_reason check_times(const struct jwt_policy *p, json_t *claims, time_t now,
				    struct jwt_validity *validity)
{
	bool has_exp, has_nbf, has_iat;
	double exp = 0, nbf = 0, iat = 0;
	int64_t leeway = p->leeway_s;

	if (!numeric_date(claims, "exp", &has_exp, &exp) ||
	    !numeric_date(claims, "nbf", &has_nbf, &nbf) ||
	    !numeric_date(claims, "iat", &has_iat, &iat))
		return AUTH_MALFORMED;
	if (!has_exp && p->require_exp)
		return AUTH_MALFORMED;
	validity->valid_from = -JWT_TIME_MAX;
	validity->valid_until = JWT_TIME_MAX;
	/* Accepted while now < exp + leeway; for integer now that is now < ceil(exp + leeway). */
	if (has_exp)
		validity->valid_until = clamp_time(ceil(exp)) + leeway;
	if (has_nbf)
		validity->valid_from = clamp_time(ceil(nbf)) - leeway;
	if (has_iat && clamp_time(ceil(iat)) - leeway > validity->valid_from)
		validity->valid_from = clamp_time(ceil(iat)) - leeway;
	if ((int64_t)now >= validity->valid_until)
		return AUTH_EXPIRED;
	if ((int64_t)now < validity->valid_from)
		return AUTH_NOT_YET_VALID;
	return AUTH_OK;
}

static bool audience_matches(json_t *aud, const char *want)
{
	json_t *v;
	size_t i;

	if (json_is_string(aud))
		return !strcmp(json_string_value(aud), want);
	json_array_foreach(aud, i, v) if (json_is_string(v) &&
					  !strcmp(json_string_value(v), want)) return true;
	return false;
}

enum auth_reason jwt_check_claims(const struct jwt_policy *p, json_t *claims, time_t now,
				  struct jwt_validity *validity)
{
	enum auth_reason r = check_times(p, claims, now, validity);
	json_t *iss;

	if (r != AUTH_OK)
		return r;
	if (p->issuer) {
		iss = json_object_get(claims, "iss");
		if (!json_is_string(iss) || strcmp(json_string_value(iss), p->issuer))
			return AUTH_BAD_ISSUER;
	}
	if (p->audience && !audience_matches(json_object_get(claims, "aud"), p->audience))
		return AUTH_BAD_AUDIENCE;
	return AUTH_OK;
}

json_t *jwt_claim(json_t *claims, const char *name)
{
	char part[256];
	const char *dot;
	json_t *v = json_object_get(claims, name);

	if (v)
		return v;
	v = claims;
	while ((dot = strchr(name, '.')) && json_is_object(v)) {
		if ((size_t)(dot - name) >= sizeof(part))
			return NULL;
		memcpy(part, name, dot - name);
		part[dot - name] = '\0';
		v = json_object_get(v, part);
		name = dot + 1;
	}
	return json_is_object(v) && v != claims ? json_object_get(v, name) : NULL;
}
