/*
 * GET /config shows the raw config (before ${ENV} substitution) with literal secrets
 * replaced. Matching is by key name, deliberately broad: showing "<redacted>" for a value
 * that was not secret costs little, leaking one that was costs a lot.
 */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "admin/admin.h"

#define REDACTED "<redacted>"

/* Private members of a JWK (RFC 7518 section 6): the symmetric "k" and RSA/EC/OKP privates. */
static const char *const jwk_private[] = {"k", "d", "p", "q", "dp", "dq", "qi", "oth", NULL};
/* Substrings of key names whose values are secrets or point at private key material. */
static const char *const secret_words[] = {"secret", "password",   "passwd",  "token",
					   "key",    "credential", "private", NULL};

static bool contains_nocase(const char *hay, const char *needle)
{
	size_t n = strlen(needle);

	for (; *hay; hay++)
		if (!strncasecmp(hay, needle, n))
			return true;
	return false;
}

static bool is_secret_name(const char *key)
{
	for (int i = 0; secret_words[i]; i++)
		if (contains_nocase(key, secret_words[i]))
			return true;
	return false;
}

static bool is_jwk_private(const char *key)
{
	for (int i = 0; jwk_private[i]; i++)
		if (!strcmp(key, jwk_private[i]))
			return true;
	return false;
}

/* "${NAME}" alone names where the secret comes from; it is not the secret itself. */
static bool is_env_reference(const char *s)
{
	size_t n = strlen(s);

	if (n < 4 || strncmp(s, "${", 2) || s[n - 1] != '}')
		return false;
	for (size_t i = 2; i < n - 1; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

static json_t *redact_value(json_t *v, bool secret);

/* Every scalar below a secret name is replaced; objects below it keep their shape. */
static json_t *redact_scalar(json_t *v)
{
	if (json_is_string(v) && is_env_reference(json_string_value(v)))
		return json_incref(v);
	if (json_is_null(v) || json_is_boolean(v))
		return json_incref(v);
	return json_string(REDACTED);
}

static json_t *redact_object(json_t *obj)
{
	bool jwk = json_object_get(obj, "kty") != NULL;
	json_t *out = json_object(), *v;
	const char *key;

	if (!out)
		return NULL;
	json_object_foreach(obj, key, v)
	{
		bool secret = is_secret_name(key) || (jwk && is_jwk_private(key));
		json_t *copy = redact_value(v, secret);

		if (!copy || json_object_set_new(out, key, copy)) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

static json_t *redact_value(json_t *v, bool secret)
{
	if (json_is_object(v))
		return redact_object(v);
	if (json_is_array(v)) {
		json_t *out = json_array(), *item;
		size_t i;

		if (!out)
			return NULL;
		json_array_foreach(v, i, item)
		{
			json_t *copy = redact_value(item, secret);

			if (!copy || json_array_append_new(out, copy)) {
				json_decref(out);
				return NULL;
			}
		}
		return out;
	}
	return secret ? redact_scalar(v) : json_incref(v);
}

/*
 * Header-match values are often credentials ("X-Internal-Auth": "s3cr3t") whatever the
 * header is called: every string value of such an object is redacted.
 */
static void redact_header_match(json_t *headers)
{
	const char *name;
	json_t *v;

	if (!json_is_object(headers))
		return;
	json_object_foreach(headers, name, v)
	{
		if (json_is_string(v) && !is_env_reference(json_string_value(v)))
			json_object_set_new(headers, name, json_string(REDACTED));
	}
}

static void redact_routes(json_t *cfg)
{
	json_t *route, *entry;
	size_t i, j;

	json_array_foreach(json_object_get(cfg, "routes"), i, route)
	{
		redact_header_match(json_object_get(route, "headers"));
		json_array_foreach(json_object_get(route, "split"), j, entry)
			redact_header_match(json_object_get(json_object_get(entry, "match"), "headers"));
	}
}

json_t *config_redact(json_t *raw)
{
	json_t *out;

	if (!raw)
		return json_object();
	out = redact_value(raw, false);
	if (out)
		redact_routes(out);
	return out;
}
