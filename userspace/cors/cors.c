/* CORS policy parsing and the checks of a preflight (see cors.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cors/cors.h"

static bool is_tchar(char ch)
{
	return isalnum((unsigned char)ch) || strchr("!#$%&'*+-.^_`|~", ch);
}

static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_tchar(*s))
			return false;
	return true;
}

/* "scheme://host[:port]": what a browser serialises into Origin; no path, no slash. */
static bool origin_valid(const char *s)
{
	const char *host = strstr(s, "://");

	if (!host || host == s || !host[3])
		return false;
	for (const char *p = s; p < host; p++)
		if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
			return false;
	for (const char *p = host + 3; *p; p++)
		if (*p == '/' || *p == '?' || *p == '#' || *p == '@' || *p == ' ' ||
		    (unsigned char)*p < 0x21 || (unsigned char)*p >= 0x7f)
			return false;
	return true;
}

static char *join(char **items, int n)
{
	size_t len = 1;
	char *s;

	for (int i = 0; i < n; i++)
		len += strlen(items[i]) + 2;
	s = malloc(len);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (i)
			strcat(s, ", ");
		strcat(s, items[i]);
	}
	return s;
}

static void check_tokens(char **items, int n, const char *base, const char *key,
			 struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];

	cfg_path_key(p, base, key);
	for (int i = 0; i < n; i++)
		if (!is_token(items[i]))
			cfg_err(errs, cfg_path_idx(ip, p, i), "\"%s\" is not a valid %s", items[i],
				!strcmp(key, "methods") ? "method" : "header name");
}

static void parse_origins(json_t *o, const char *path, struct cors_policy *p, struct cfg_errs *errs)
{
	char op[CFG_PATH_MAX], ip[CFG_PATH_MAX];

	cfg_path_key(op, path, "origins");
	if (!json_object_get(o, "origins")) {
		cfg_err(errs, op, "is required");
		return;
	}
	if (!cfg_get_strings(o, "origins", path, true, &p->origins, &p->norigins, errs))
		return;
	if (!p->norigins) {
		cfg_err(errs, op, "at least one origin is required");
		return;
	}
	for (int i = 0; i < p->norigins; i++) {
		if (!strcmp(p->origins[i], "*")) {
			if (p->norigins > 1)
				cfg_err(errs, cfg_path_idx(ip, op, i),
					"\"*\" must be the only origin");
			p->any_origin = true;
		} else if (!strcmp(p->origins[i], "null")) {
			/* Sandboxed documents and file: URLs all send "null": allowing it
			 * allows anyone who can make a page send it. */
			cfg_err(errs, cfg_path_idx(ip, op, i),
				"the \"null\" origin cannot be allowed");
		} else if (!origin_valid(p->origins[i])) {
			cfg_err(errs, cfg_path_idx(ip, op, i),
				"\"%s\" is not an origin (scheme://host[:port], no path)",
				p->origins[i]);
		}
	}
}

struct cors_policy *cors_policy_parse(json_t *o, const char *path, struct cfg_errs *errs)
{
	static const char *const keys[] = {"origins",	  "methods",   "headers", "expose",
					   "credentials", "max_age_s", NULL};
	static const char *const simple[] = {"GET", "HEAD", "POST"};
	struct cors_policy *p;
	char **expose = NULL;
	int nexpose = 0, before = errs->count;
	long long age;
	char kp[CFG_PATH_MAX];

	if (!json_is_object(o)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	cfg_check_keys(o, path, keys, errs);
	parse_origins(o, path, p, errs);
	cfg_get_strings(o, "methods", path, false, &p->methods, &p->nmethods, errs);
	if (!json_object_get(o, "methods")) {
		p->methods = calloc(4, sizeof(char *));
		for (int i = 0; p->methods && i < 3; i++)
			p->methods[p->nmethods++] = strdup(simple[i]);
	}
	check_tokens(p->methods, p->nmethods, path, "methods", errs);
	cfg_get_strings(o, "headers", path, true, &p->headers, &p->nheaders, errs);
	check_tokens(p->headers, p->nheaders, path, "headers", errs);
	cfg_get_strings(o, "expose", path, false, &expose, &nexpose, errs);
	check_tokens(expose, nexpose, path, "expose", errs);
	cfg_get_bool(o, "credentials", path, false, &p->credentials, errs);
	cfg_get_int(o, "max_age_s", path, 600, 0, 86400, &age, errs);
	p->max_age_s = age;
	if (p->credentials && p->any_origin)
		cfg_err(errs, cfg_path_key(kp, path, "credentials"),
			"credentials need explicit origins, not \"*\"");
	p->methods_text = join(p->methods, p->nmethods);
	p->headers_text = join(p->headers, p->nheaders);
	p->expose_text = join(expose, nexpose);
	cfg_strings_free(expose, nexpose);
	if (!p->methods_text || !p->headers_text || !p->expose_text)
		cfg_err(errs, path, "out of memory");
	if (errs->count > before) {
		cors_policy_free(p);
		return NULL;
	}
	return p;
}

void cors_policy_free(struct cors_policy *p)
{
	if (!p)
		return;
	cfg_strings_free(p->origins, p->norigins);
	cfg_strings_free(p->methods, p->nmethods);
	cfg_strings_free(p->headers, p->nheaders);
	free(p->methods_text);
	free(p->headers_text);
	free(p->expose_text);
	free(p);
}

const char *cors_allow_origin(const struct cors_policy *p, struct http_str origin)
{
	if (!origin.len)
		return NULL;
	if (p->any_origin)
		return "*";
	for (int i = 0; i < p->norigins; i++)
		if (strlen(p->origins[i]) == origin.len &&
		    http_str_eq_nocase(origin, p->origins[i]))
			return p->origins[i];
	return NULL;
}

static struct http_str header_value(const struct http_request *req, const char *name)
{
	const struct http_header *h = http_find_header(req->headers, req->nheaders, name);

	return h ? h->value : (struct http_str){NULL, 0};
}

bool cors_is_preflight(const struct http_request *req)
{
	return req->method == HTTP_OPTIONS && header_value(req, "origin").len &&
	       header_value(req, "access-control-request-method").len;
}

static bool method_allowed(const struct cors_policy *p, struct http_str m)
{
	for (int i = 0; i < p->nmethods; i++)
		if (strlen(p->methods[i]) == m.len && !memcmp(p->methods[i], m.p, m.len))
			return true;
	return false;
}

static bool header_allowed(const struct cors_policy *p, const char *name, size_t len)
{
	struct http_str s = {name, len};

	for (int i = 0; i < p->nheaders; i++)
		if (strlen(p->headers[i]) == len && http_str_eq_nocase(s, p->headers[i]))
			return true;
	return false;
}

/* Every name of the comma list (each Access-Control-Request-Headers field) is allowed. */
static bool headers_allowed(const struct cors_policy *p, const struct http_request *req)
{
	for (int h = 0; h < req->nheaders; h++) {
		const struct http_header *f = &req->headers[h];
		size_t i = 0;

		if (!http_str_eq_nocase(f->name, "access-control-request-headers"))
			continue;
		while (i < f->value.len) {
			size_t start, end;

			while (i < f->value.len && (f->value.p[i] == ' ' || f->value.p[i] == '\t' ||
						    f->value.p[i] == ','))
				i++;
			start = i;
			while (i < f->value.len && f->value.p[i] != ',')
				i++;
			end = i;
			while (end > start &&
			       (f->value.p[end - 1] == ' ' || f->value.p[end - 1] == '\t'))
				end--;
			if (end > start && !header_allowed(p, f->value.p + start, end - start))
				return false;
		}
	}
	return true;
}

enum cors_verdict cors_preflight(const struct cors_policy *p, const struct http_request *req,
				 char *out, size_t cap, bool *fits)
{
	const char *allow = cors_allow_origin(p, header_value(req, "origin"));
	int n;

	*fits = false;
	if (!allow)
		return CORS_DENY_ORIGIN;
	if (!method_allowed(p, header_value(req, "access-control-request-method")))
		return CORS_DENY_METHOD;
	if (!headers_allowed(p, req))
		return CORS_DENY_HEADERS;
	n = snprintf(out, cap,
		     "Access-Control-Allow-Origin: %s\r\n"
		     "Access-Control-Allow-Methods: %s\r\n"
		     "%s%s%s"
		     "Access-Control-Max-Age: %u\r\n"
		     "%s"
		     "Vary: %sAccess-Control-Request-Method, Access-Control-Request-Headers\r\n",
		     allow, p->methods_text, p->nheaders ? "Access-Control-Allow-Headers: " : "",
		     p->headers_text, p->nheaders ? "\r\n" : "", p->max_age_s,
		     p->credentials ? "Access-Control-Allow-Credentials: true\r\n" : "",
		     p->any_origin ? "" : "Origin, ");
	*fits = n > 0 && (size_t)n < cap;
	return CORS_OK;
}
