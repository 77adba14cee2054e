/*
 * Composition policy parsing, call-path templates and the JSON shaping and merging of
 * call answers (see compose.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "common/cfg.h"
#include "compose/compose.h"
#include "config/config.h"

static int call_index(const struct compose_policy *p, const char *name, size_t len)
{
	for (int i = 0; i < p->ncalls; i++)
		if (p->calls[i].name && strlen(p->calls[i].name) == len &&
		    !memcmp(p->calls[i].name, name, len))
			return i;
	return -1;
}

/* One {…} reference's source: what follows "calls." is NAME then an optional dot path. */
static bool check_ref(struct compose_policy *p, struct compose_call *c, const char *ref, size_t len,
		      const char *jpath, struct cfg_errs *errs)
{
	const char *dot;
	int i;

	if (len == 8 && !memcmp(ref, "consumer", 8))
		return true;
	if (len > 4 && !memcmp(ref, "jwt.", 4))
		return true;
	if ((len > 7 && !memcmp(ref, "header.", 7)) || (len > 6 && !memcmp(ref, "query.", 6)))
		return true;
	if (len > 5 && !memcmp(ref, "path.", 5)) {
		for (size_t k = 5; k < len; k++)
			if (!isdigit((unsigned char)ref[k]))
				goto bad;
		return true;
	}
	if (p && len > 6 && !memcmp(ref, "calls.", 6)) {
		dot = memchr(ref + 6, '.', len - 6);
		i = call_index(p, ref + 6, dot ? (size_t)(dot - ref - 6) : len - 6);
		if (i < 0) {
			cfg_err(errs, jpath, "{%.*s} names an unknown call", (int)len, ref);
			return false;
		}
		c->deps |= 1u << i;
		return true;
	}
bad:
	cfg_err(errs, jpath, "unknown template {%.*s}", (int)len, ref);
	return false;
}

/* Every {…} of s is a known source; p NULL: {calls.…} is not one. */
static void check_refs(struct compose_policy *p, struct compose_call *c, const char *s,
		       const char *jpath, struct cfg_errs *errs)
{
	const char *end;

	while ((s = strchr(s, '{'))) {
		end = strchr(s, '}');
		if (!end) {
			cfg_err(errs, jpath, "unterminated \"{\"");
			return;
		}
		check_ref(p, c, s + 1, end - s - 1, jpath, errs);
		s = end + 1;
	}
}

static void check_template(struct compose_policy *p, struct compose_call *c, const char *jpath,
			   struct cfg_errs *errs)
{
	if (c->path[0] != '/') {
		cfg_err(errs, jpath, "must start with \"/\"");
		return;
	}
	check_refs(p, c, c->path, jpath, errs);
}

void compose_check_template(const char *tmpl, const char *jpath, struct cfg_errs *errs)
{
	check_refs(NULL, NULL, tmpl, jpath, errs);
}

/* Depth-first: a call reached again while on the current path closes a cycle. */
static bool has_cycle(const struct compose_policy *p, int i, uint32_t *on_path, uint32_t *seen)
{
	if (*on_path & (1u << i))
		return true;
	if (*seen & (1u << i))
		return false;
	*seen |= 1u << i;
	*on_path |= 1u << i;
	for (int j = 0; j < p->ncalls; j++)
		if ((p->calls[i].deps & (1u << j)) && has_cycle(p, j, on_path, seen))
			return true;
	*on_path &= ~(1u << i);
	return false;
}

static void parse_call_shape(json_t *o, const char *path, struct compose_call *c,
			     struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX];
	json_t *m, *v;
	const char *k;

	cfg_get_str(o, "target", path, NULL, &c->target, errs);
	cfg_get_strings(o, "allow", path, false, &c->allow, &c->nallow, errs);
	cfg_get_strings(o, "deny", path, false, &c->deny, &c->ndeny, errs);
	if (c->nallow && c->ndeny)
		cfg_err(errs, cfg_path_key(p, path, "deny"),
			"\"allow\" and \"deny\" exclude each other");
	cfg_get_str(o, "group", path, NULL, &c->group, errs);
	m = cfg_get_object(o, "mapping", path, errs);
	if (!m)
		return;
	json_object_foreach(m, k, v)
	{
		if (!json_is_string(v) || !json_string_length(v))
			cfg_err(errs, cfg_path_key(p, cfg_path_key(p, path, "mapping"), k),
				"must be a non-empty string");
	}
	c->mapping = json_incref(m);
}

/* `{"name":"N","upstream":"U","status":` with both strings JSON-escaped. */
static char *call_log_prefix(const char *name, const char *upstream)
{
	json_t *o = json_pack("{s:s,s:s}", "name", name, "upstream", upstream ? upstream : "");
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	char *out = NULL;
	size_t n;

	json_decref(o);
	if (text && (n = strlen(text)) > 1) {
		out = malloc(n + sizeof(",\"status\":"));
		if (out) {
			memcpy(out, text, n - 1); /* without the closing brace */
			strcpy(out + n - 1, ",\"status\":");
		}
	}
	free(text);
	return out;
}

static void parse_call(json_t *o, const char *path, struct compose_policy *pol, int idx,
		       const struct xg_config *cfg, struct cfg_errs *errs)
{
	static const char *const keys[] = {"name",  "upstream", "path",	   "required", "target",
					   "allow", "deny",	"mapping", "group",    NULL};
	struct compose_call *c = &pol->calls[idx];
	char p[CFG_PATH_MAX];

	c->upstream = -1;
	if (!json_is_object(o)) {
		cfg_err(errs, path, "must be an object");
		return;
	}
	cfg_check_keys(o, path, keys, errs);
	if (!json_is_string(json_object_get(o, "name")) ||
	    !json_string_length(json_object_get(o, "name")))
		cfg_err(errs, cfg_path_key(p, path, "name"), "must be a non-empty string");
	else
		c->name = strdup(json_string_value(json_object_get(o, "name")));
	if (c->name && call_index(pol, c->name, strlen(c->name)) != idx)
		cfg_err(errs, cfg_path_key(p, path, "name"), "duplicate call \"%s\"", c->name);
	if (!json_is_string(json_object_get(o, "upstream")))
		cfg_err(errs, cfg_path_key(p, path, "upstream"), "must be a string");
	else if ((c->upstream = config_upstream_index(
		      cfg, json_string_value(json_object_get(o, "upstream")))) < 0)
		cfg_err(errs, cfg_path_key(p, path, "upstream"), "unknown upstream \"%s\"",
			json_string_value(json_object_get(o, "upstream")));
	cfg_get_bool(o, "required", path, false, &c->required, errs);
	parse_call_shape(o, path, c, errs);
	if (c->name && c->upstream >= 0)
		c->log_prefix = call_log_prefix(c->name, cfg->upstreams[c->upstream].name);
}

struct compose_policy *compose_policy_parse(json_t *obj, const char *path,
					    const struct xg_config *cfg, struct cfg_errs *errs)
{
	static const char *const keys[] = {"timeout_ms", "merge", "on_partial",
					   "errors",	 "calls", NULL};
	static const char *const merges[] = {"shallow", "deep", NULL};
	static const char *const partials[] = {"partial", "fail", NULL};
	struct compose_policy *pol;
	char p[CFG_PATH_MAX], cp[CFG_PATH_MAX];
	json_t *calls, *c;
	long long v;
	int merge = 0, partial = 0, nerr = errs->count;
	size_t i;

	if (!json_is_object(obj)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	pol = calloc(1, sizeof(*pol));
	if (!pol)
		return NULL;
	cfg_check_keys(obj, path, keys, errs);
	cfg_get_int(obj, "timeout_ms", path, 5000, 1, 600000, &v, errs);
	pol->timeout_ms = v;
	cfg_get_enum(obj, "merge", path, merges, 0, &merge, errs);
	cfg_get_enum(obj, "on_partial", path, partials, 0, &partial, errs);
	pol->deep = merge == 1;
	pol->fail_on_partial = partial == 1;
	cfg_get_bool(obj, "errors", path, false, &pol->errors, errs);
	calls = cfg_get_array(obj, "calls", path, errs);
	cfg_path_key(p, path, "calls");
	if (!calls || !json_array_size(calls) || json_array_size(calls) > COMPOSE_MAX_CALLS) {
		cfg_err(errs, p, "needs 1 to %d calls", COMPOSE_MAX_CALLS);
		goto out;
	}
	pol->ncalls = json_array_size(calls);
	json_array_foreach(calls, i, c) parse_call(c, cfg_path_idx(cp, p, i), pol, i, cfg, errs);
	json_array_foreach(calls, i, c)
	{
		char pp[CFG_PATH_MAX];

		if (!json_is_string(json_object_get(c, "path"))) {
			cfg_err(errs, cfg_path_key(pp, cfg_path_idx(cp, p, i), "path"),
				"must be a string");
			continue;
		}
		pol->calls[i].path = strdup(json_string_value(json_object_get(c, "path")));
		check_template(pol, &pol->calls[i],
			       cfg_path_key(pp, cfg_path_idx(cp, p, i), "path"), errs);
	}
	for (int k = 0; k < pol->ncalls; k++) {
		uint32_t on_path = 0, seen = 0;

		if (has_cycle(pol, k, &on_path, &seen)) {
			cfg_err(errs, cfg_path_idx(cp, p, k),
				"calls depend on each other in a cycle");
			break;
		}
	}
out:
	if (errs->count != nerr) {
		compose_policy_free(pol);
		return NULL;
	}
	return pol;
}

void compose_policy_free(struct compose_policy *p)
{
	if (!p)
		return;
	for (int i = 0; i < COMPOSE_MAX_CALLS; i++) {
		struct compose_call *c = &p->calls[i];

		free(c->name);
		free(c->log_prefix);
		free(c->path);
		free(c->target);
		free(c->group);
		cfg_strings_free(c->allow, c->nallow);
		cfg_strings_free(c->deny, c->ndeny);
		json_decref(c->mapping);
	}
	free(p);
}

/* Follows a dot path ("a.b.c", len bytes); NULL when a step is missing. */
json_t *compose_dot_get(json_t *j, const char *path, size_t len)
{
	const char *end = path + len, *dot;

	while (j && path < end) {
		dot = memchr(path, '.', end - path);
		if (!dot)
			dot = end;
		j = json_is_object(j) ? json_object_getn(j, path, dot - path) : NULL;
		path = dot + 1;
	}
	return j;
}

static bool put_encoded(const char *s, size_t n, char **o, const char *end, bool encode)
{
	static const char hex[] = "0123456789ABCDEF";

	if (!encode) {
		if ((size_t)(end - *o) < n)
			return false;
		memcpy(*o, s, n);
		*o += n;
		return true;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = s[i];

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			if (*o + 1 > end)
				return false;
			*(*o)++ = ch;
		} else {
			if (*o + 3 > end)
				return false;
			*(*o)++ = '%';
			*(*o)++ = hex[ch >> 4];
			*(*o)++ = hex[ch & 15];
		}
	}
	return true;
}

static int unhex(char ch)
{
	return isdigit((unsigned char)ch) ? ch - '0' : (tolower((unsigned char)ch) - 'a' + 10);
}

/* The raw query value of `name` decoded into buf; false when absent. */
static bool query_value(struct http_str q, const char *name, size_t nlen, char *buf, size_t cap,
			size_t *out_len)
{
	const char *s = q.p, *end = q.p + q.len, *amp, *eq;
	size_t n;

	for (; s < end; s = amp + 1) {
		amp = memchr(s, '&', end - s);
		if (!amp)
			amp = end;
		eq = memchr(s, '=', amp - s);
		if (!eq || (size_t)(eq - s) != nlen || memcmp(s, name, nlen))
			continue;
		n = 0;
		for (const char *c = eq + 1; c < amp && n < cap; c++) {
			if (*c == '%' && amp - c > 2 && isxdigit((unsigned char)c[1]) &&
			    isxdigit((unsigned char)c[2])) {
				buf[n++] = unhex(c[1]) << 4 | unhex(c[2]);
				c += 2;
			} else {
				buf[n++] = *c == '+' ? ' ' : *c;
			}
		}
		*out_len = n;
		return true;
	}
	return false;
}

/* The N-th (1-based) segment of the path. */
static bool path_segment(const char *p, size_t len, long n, const char **seg, size_t *seg_len)
{
	const char *end = p + len, *slash;

	for (long i = 0; p < end; i++) {
		while (p < end && *p == '/')
			p++;
		slash = memchr(p, '/', end - p);
		if (!slash)
			slash = end;
		if (i + 1 == n && slash > p) {
			*seg = p;
			*seg_len = slash - p;
			return true;
		}
		p = slash;
	}
	return false;
}

/* A claim of the request's verified JWT (strings and numbers; absent for API keys). */
static bool claim_value(const struct auth_result *auth, const char *name, size_t len,
			const char **val, size_t *val_len)
{
	char key[128];

	if (!auth || !auth->claim || len >= sizeof(key))
		return false;
	memcpy(key, name, len);
	key[len] = '\0';
	*val = auth->claim(auth, key);
	if (!*val)
		return false;
	*val_len = strlen(*val);
	return *val_len > 0;
}

static bool ref_value(const char *ref, size_t len, const struct compose_vars *v, char *buf,
		      size_t cap, const char **val, size_t *val_len)
{
	const char *dot;
	json_t *j;
	int i;

	if (len == 8 && !memcmp(ref, "consumer", 8)) {
		*val = v->consumer;
		*val_len = strlen(v->consumer);
		return *val_len > 0;
	}
	if (len > 7 && !memcmp(ref, "header.", 7)) {
		for (int k = 0; k < v->req->nheaders; k++) {
			const struct http_header *h = &v->req->headers[k];

			if (h->name.len == len - 7 && !strncasecmp(h->name.p, ref + 7, len - 7)) {
				*val = h->value.p;
				*val_len = h->value.len;
				return true;
			}
		}
		return false;
	}
	if (len > 6 && !memcmp(ref, "query.", 6)) {
		*val = buf;
		return query_value(v->req->query, ref + 6, len - 6, buf, cap, val_len);
	}
	if (len > 5 && !memcmp(ref, "path.", 5))
		return path_segment(v->path, v->path_len, strtol(ref + 5, NULL, 10), val, val_len);
	if (len > 4 && !memcmp(ref, "jwt.", 4))
		return claim_value(v->auth, ref + 4, len - 4, val, val_len);
	/* calls.NAME[.dot.path], checked at load */
	if (!v->pol || len <= 6)
		return false;
	dot = memchr(ref + 6, '.', len - 6);
	i = call_index(v->pol, ref + 6, dot ? (size_t)(dot - ref - 6) : len - 6);
	if (i < 0 || !v->results[i])
		return false;
	j = dot ? compose_dot_get(v->results[i], dot + 1, ref + len - dot - 1) : v->results[i];
	*val = buf;
	if (json_is_string(j)) {
		*val = json_string_value(j);
		*val_len = json_string_length(j);
	} else if (json_is_integer(j)) {
		*val_len = snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
	} else if (json_is_real(j)) {
		*val_len = snprintf(buf, cap, "%.17g", json_real_value(j));
	} else if (json_is_boolean(j)) {
		*val_len = snprintf(buf, cap, "%s", json_is_true(j) ? "true" : "false");
	} else {
		return false;
	}
	return *val_len < cap;
}

static bool expand(const char *tmpl, const struct compose_vars *v, char *out, size_t cap,
		   bool encode)
{
	char buf[512], *o = out;
	const char *end = out + cap - 1, *s = tmpl, *close, *val;
	size_t n;

	if (!cap)
		return false;
	while (*s) {
		if (*s != '{') {
			if (o >= end)
				return false;
			*o++ = *s++;
			continue;
		}
		close = strchr(s, '}');
		if (!close || !ref_value(s + 1, close - s - 1, v, buf, sizeof(buf), &val, &n) ||
		    !put_encoded(val, n, &o, end, encode))
			return false;
		s = close + 1;
	}
	*o = '\0';
	return true;
}

bool compose_expand(const char *tmpl, const struct compose_vars *v, char *out, size_t cap)
{
	return expand(tmpl, v, out, cap, true);
}

bool compose_expand_raw(const char *tmpl, const struct compose_vars *v, char *out, size_t cap)
{
	return expand(tmpl, v, out, cap, false);
}

/* Copies the value at `path` in src into dst under the same path (creating objects). */
static void allow_path(json_t *dst, json_t *src, const char *path)
{
	const char *dot = strchr(path, '.');
	size_t n = dot ? (size_t)(dot - path) : strlen(path);
	json_t *sv = json_object_getn(src, path, n), *dv;

	if (!sv)
		return;
	if (!dot || !json_is_object(sv)) {
		if (!dot)
			json_object_setn_new(dst, path, n, json_deep_copy(sv));
		return;
	}
	dv = json_object_getn(dst, path, n);
	if (!json_is_object(dv)) {
		dv = json_object();
		json_object_setn_new(dst, path, n, dv);
	}
	allow_path(dv, sv, dot + 1);
}

static void deny_path(json_t *j, const char *path)
{
	const char *dot = strrchr(path, '.');

	if (dot)
		j = compose_dot_get(j, path, dot - path);
	if (json_is_object(j))
		json_object_del(j, dot ? dot + 1 : path);
}

json_t *compose_shape(const struct compose_call *c, json_t *body)
{
	json_t *j = c->target ? compose_dot_get(body, c->target, strlen(c->target)) : body, *r, *v;
	const char *k, *to;

	if (!j)
		return NULL;
	if (c->nallow && json_is_object(j)) {
		r = json_object();
		for (int i = 0; i < c->nallow; i++)
			allow_path(r, j, c->allow[i]);
	} else {
		r = json_deep_copy(j);
	}
	for (int i = 0; i < c->ndeny && json_is_object(r); i++)
		deny_path(r, c->deny[i]);
	if (c->mapping && json_is_object(r)) {
		json_object_foreach(c->mapping, k, v)
		{
			json_t *val = json_object_get(r, k);

			to = json_string_value(v);
			if (val && strcmp(k, to)) {
				json_object_set(r, to, val);
				json_object_del(r, k);
			}
		}
	}
	if (c->group) {
		json_t *g = json_object();

		json_object_set_new(g, c->group, r);
		r = g;
	}
	if (!json_is_object(r)) {
		json_decref(r);
		return NULL;
	}
	return r;
}

void compose_merge(json_t *dst, json_t *src, bool deep)
{
	const char *k;
	json_t *v, *d;

	json_object_foreach(src, k, v)
	{
		d = json_object_get(dst, k);
		if (deep && json_is_object(d) && json_is_object(v))
			compose_merge(d, v, true);
		else if (deep && json_is_array(d) && json_is_array(v))
			json_array_extend(d, v);
		else
			json_object_set(dst, k, v);
	}
}
