#include "auth/auth_internal.h"
#include "auth/dn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void method_free(struct auth_method *m)
{
	int i;

	for (i = 0; i < m->roles.n; i++)
		free(m->roles.items[i]);
	free(m->roles.items);
	for (i = 0; i < m->scopes.n; i++)
		free(m->scopes.items[i]);
	free(m->scopes.items);
	cfg_strings_free(m->subjects.items, m->subjects.n);
	cfg_strings_free(m->sans.items, m->sans.n);
}

/* {"mtls": {"subjects": ["CN=partner-a,O=Bank"], "sans": ["partner-a.example"]}} */
static bool parse_mtls(json_t *body, const char *path, struct auth_method *m, struct cfg_errs *errs)
{
	static const char *const keys[] = {"subjects", "sans", NULL};
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX], err[160];

	cfg_check_keys(body, path, keys, errs);
	if (!cfg_get_strings(body, "subjects", path, false, &m->subjects.items, &m->subjects.n,
			     errs) ||
	    !cfg_get_strings(body, "sans", path, false, &m->sans.items, &m->sans.n, errs))
		return false;
	cfg_path_key(p, path, "subjects");
	if (json_object_get(body, "subjects") && !m->subjects.n) {
		cfg_err(errs, p,
			"must not be empty (leave it out to accept any verified certificate)");
		return false;
	}
	for (int i = 0; i < m->subjects.n; i++) {
		char *canon = dn_canon_text(m->subjects.items[i], err, sizeof(err));

		if (!canon) {
			cfg_err(errs, cfg_path_idx(ip, p, i), "not an RFC 4514 name: %s", err);
			return false;
		}
		free(m->subjects.items[i]);
		m->subjects.items[i] = canon;
	}
	if (json_object_get(body, "sans") && !m->sans.n) {
		cfg_err(errs, cfg_path_key(p, path, "sans"), "must not be empty");
		return false;
	}
	return true;
}

void route_auth_free(struct route_auth *ra)
{
	int i;

	if (!ra)
		return;
	for (i = 0; i < ra->nmethods; i++)
		method_free(&ra->methods[i]);
	free(ra->methods);
	for (i = 0; i < ra->ndeny; i++)
		tzone_free(ra->deny[i].zone);
	free(ra->deny);
	free(ra);
}

/* One {"jwt": {...}}, {"api_key": {...}}, {"mtls": {...}} or {"introspection": {...}}. */
static bool parse_method(json_t *obj, const char *path, const struct auth_config *a,
			 bool allow_any_of, struct auth_method *m, struct cfg_errs *errs)
{
	static const char *const jwt_keys[] = {"roles", "scopes", NULL};
	static const char *const key_keys[] = {"roles", NULL};
	static const char *const intro_keys[] = {"scopes", NULL};
	static const char *const names[] = {"jwt", "api_key", "mtls", "introspection"};
	static const char *const *const keys[] = {jwt_keys, key_keys, NULL, intro_keys};
	static const enum auth_method_kind kinds[] = {AUTH_METHOD_JWT, AUTH_METHOD_API_KEY,
						      AUTH_METHOD_MTLS, AUTH_METHOD_INTROSPECTION};
	json_t *found[] = {json_object_get(obj, "jwt"), json_object_get(obj, "api_key"),
			   json_object_get(obj, "mtls"), json_object_get(obj, "introspection")};
	char p[CFG_PATH_MAX];
	json_t *body = NULL;
	int kind;

	for (kind = 0; json_is_object(obj) && json_object_size(obj) == 1 && kind < 4; kind++)
		if ((body = found[kind]))
			break;
	if (!body) {
		cfg_err(errs, path, "must be %s",
			allow_any_of
			    ? "\"none\", {\"jwt\": {...}}, {\"api_key\": {...}}, "
			      "{\"mtls\": {...}}, {\"introspection\": {...}} or "
			      "{\"any_of\": [...]}"
			    : "{\"jwt\": {...}}, {\"api_key\": {...}}, {\"mtls\": {...}} or "
			      "{\"introspection\": {...}}");
		return false;
	}
	m->kind = kinds[kind];
	cfg_path_key(p, path, names[kind]);
	if (!json_is_object(body)) {
		cfg_err(errs, p, "must be an object");
		return false;
	}
	if (m->kind == AUTH_METHOD_MTLS)
		return parse_mtls(body, p, m, errs);
	cfg_check_keys(body, p, keys[kind], errs);
	if (!cfg_get_strings(body, "roles", p, false, &m->roles.items, &m->roles.n, errs) ||
	    !cfg_get_strings(body, "scopes", p, false, &m->scopes.items, &m->scopes.n, errs))
		return false;
	/* With a == NULL the global auth section itself failed; do not pile errors on top. */
	if (a && m->kind == AUTH_METHOD_JWT && !a->jwt.enabled) {
		cfg_err(errs, p, "auth.jwt is not configured");
		return false;
	}
	if (a && m->kind == AUTH_METHOD_API_KEY && !a->nkeys) {
		cfg_err(errs, p, "no consumer has api_keys");
		return false;
	}
	if (a && m->kind == AUTH_METHOD_INTROSPECTION && !a->introspection) {
		cfg_err(errs, p, "auth.introspection is not configured");
		return false;
	}
	return true;
}

static bool parse_auth(json_t *auth, const char *path, const struct auth_config *a,
		       struct route_auth *ra, struct cfg_errs *errs)
{
	json_t *any = json_object_get(auth, "any_of"), *v;
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	size_t i;

	if (!any || !json_is_object(auth) || json_object_size(auth) != 1) {
		ra->methods = calloc(1, sizeof(*ra->methods));
		if (!ra->methods) {
			cfg_err(errs, path, "out of memory");
			return false;
		}
		ra->nmethods = 1;
		return parse_method(auth, path, a, true, &ra->methods[0], errs);
	}
	cfg_path_key(p, path, "any_of");
	if (!json_is_array(any) || !json_array_size(any)) {
		cfg_err(errs, p,
			"must be a non-empty array of {\"jwt\": ...} / {\"api_key\": ...} / "
			"{\"mtls\": ...} / {\"introspection\": ...}");
		return false;
	}
	ra->methods = calloc(json_array_size(any), sizeof(*ra->methods));
	if (!ra->methods) {
		cfg_err(errs, p, "out of memory");
		return false;
	}
	json_array_foreach(any, i, v)
	{
		ra->nmethods++;
		if (!parse_method(v, cfg_path_idx(ip, p, i), a, false, &ra->methods[i], errs))
			return false;
	}
	return true;
}

/* "HH:MM", 00:00 .. 24:00. */
static bool parse_clock(json_t *obj, const char *key, const char *path, uint32_t *out,
			struct cfg_errs *errs)
{
	const char *s = json_string_value(json_object_get(obj, key));
	char p[CFG_PATH_MAX];
	unsigned h, m;
	int n = 0;

	cfg_path_key(p, path, key);
	if (!s || sscanf(s, "%2u:%2u%n", &h, &m, &n) != 2 || n != 5 || s[n] || s[2] != ':' ||
	    h > 24 || m > 59 || (h == 24 && m)) {
		cfg_err(errs, p, "must be a time \"HH:MM\" (00:00 to 24:00)");
		return false;
	}
	*out = h * 3600 + m * 60;
	return true;
}

static bool parse_window(json_t *obj, const char *path, struct deny_window *w,
			 struct cfg_errs *errs)
{
	static const char *const known[] = {"from", "to", "tz", NULL};
	char p[CFG_PATH_MAX], err[256];
	char *tz = NULL;

	if (!json_is_object(obj)) {
		cfg_err(errs, path,
			"must be {\"from\": \"HH:MM\", \"to\": \"HH:MM\", \"tz\": ...}");
		return false;
	}
	cfg_check_keys(obj, path, known, errs);
	if (!parse_clock(obj, "from", path, &w->from_s, errs) ||
	    !parse_clock(obj, "to", path, &w->to_s, errs) ||
	    !cfg_get_str(obj, "tz", path, "UTC", &tz, errs))
		return false;
	if (w->from_s == w->to_s || w->from_s == 86400) {
		cfg_err(errs, path,
			"\"from\" and \"to\" must differ and \"from\" cannot be "
			"24:00 (00:00 to 24:00 is the whole day)");
		free(tz);
		return false;
	}
	w->zone = tzone_load(tz, err, sizeof(err));
	if (!w->zone)
		cfg_err(errs, cfg_path_key(p, path, "tz"), "%s", err);
	free(tz);
	return w->zone != NULL;
}

static bool parse_schedule(json_t *sched, const char *path, struct route_auth *ra,
			   struct cfg_errs *errs)
{
	static const char *const known[] = {"deny", NULL};
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	json_t *deny, *v;
	size_t i;

	if (!json_is_object(sched)) {
		cfg_err(errs, path, "must be an object {\"deny\": [...]}");
		return false;
	}
	cfg_check_keys(sched, path, known, errs);
	deny = json_object_get(sched, "deny");
	cfg_path_key(p, path, "deny");
	if (!json_is_array(deny) || !json_array_size(deny)) {
		cfg_err(errs, p, "must be a non-empty array of windows");
		return false;
	}
	ra->deny = calloc(json_array_size(deny), sizeof(*ra->deny));
	if (!ra->deny) {
		cfg_err(errs, p, "out of memory");
		return false;
	}
	json_array_foreach(deny, i, v)
	{
		if (!parse_window(v, cfg_path_idx(ip, p, i), &ra->deny[i], errs))
			return false;
		ra->ndeny++;
	}
	return true;
}

struct route_auth *route_auth_parse(json_t *auth, json_t *schedule, const char *route_path,
				    const struct auth_config *a, struct cfg_errs *errs)
{
	bool open = !auth || json_is_null(auth) ||
		    (json_is_string(auth) && !strcmp(json_string_value(auth), "none"));
	bool has_schedule = schedule && !json_is_null(schedule);
	char p[CFG_PATH_MAX];
	struct route_auth *ra;
	int before = errs->count;

	if (open && !has_schedule)
		return NULL;
	ra = calloc(1, sizeof(*ra));
	if (!ra) {
		cfg_err(errs, route_path, "out of memory");
		return NULL;
	}
	if ((!open && !parse_auth(auth, cfg_path_key(p, route_path, "auth"), a, ra, errs)) ||
	    (has_schedule &&
	     !parse_schedule(schedule, cfg_path_key(p, route_path, "schedule"), ra, errs)) ||
	    errs->count != before) {
		route_auth_free(ra);
		return NULL;
	}
	return ra;
}

bool auth_schedule_denies(const struct route_auth *ra, time_t now)
{
	int i;

	for (i = 0; i < ra->ndeny; i++) {
		const struct deny_window *w = &ra->deny[i];
		int64_t local = (int64_t)now + tzone_offset(w->zone, now);
		uint32_t tod = (uint32_t)(((local % 86400) + 86400) % 86400);

		if (w->from_s < w->to_s ? tod >= w->from_s && tod < w->to_s
					: tod >= w->from_s || tod < w->to_s)
			return true;
	}
	return false;
}
