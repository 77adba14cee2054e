/*
 * Router (userspace/router). The input is a small text program:
 *   R <path>[,<path>...] [h=<host>[,<host>...]] [m=<METHOD>[,...]] [H=<name>[:<value>]]...
 *   Q <METHOD> <path> [<host>] [<name>:<value>]...
 * Routes are built into a router; every query is matched with its raw and its normalised
 * path and compared with a direct reading of the matching rules (README, `routes[]`): the
 * longest covering route path (ASCII case ignored) among routes whose hosts and headers fit
 * decides; there candidates go by path kind, then host fit (exact, wildcard, none), then
 * file order, and the first allowing the method wins, else 405 with the union of their
 * methods; no fitting route is 404. Matching twice,
 * or on a router rebuilt from the same routes, gives the same answer.
 */
#include <ctype.h>
#include <strings.h>

#include "fuzz.h"
#include "router/router.h"

#define MAX_ROUTES 16
#define MAX_LIST 4
#define MAX_QUERIES 16
#define MAX_TOKENS 8
#define ALL_METHODS (((1u << HTTP_METHOD_COUNT) - 1) & ~1u)

struct tokens {
	char *t[MAX_TOKENS];
	int n;
};

static void split(char *line, struct tokens *tk)
{
	char *save = NULL, *t;

	tk->n = 0;
	for (t = strtok_r(line, " ", &save); t && tk->n < MAX_TOKENS;
	     t = strtok_r(NULL, " ", &save))
		tk->t[tk->n++] = t;
}

static enum http_method method_named(const char *s)
{
	for (int m = HTTP_GET; m < HTTP_METHOD_COUNT; m++)
		if (!strcmp(http_method_name(m), s))
			return m;
	return HTTP_OTHER;
}

static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Splits a comma list into at most MAX_LIST strdup'd items. */
static char **list(const char *s, int *n, bool lowercase)
{
	char **out = calloc(MAX_LIST, sizeof(*out)), *copy = strdup(s), *save = NULL, *t;

	FUZZ_CHECK(out && copy);
	*n = 0;
	for (t = strtok_r(copy, ",", &save); t && *n < MAX_LIST; t = strtok_r(NULL, ",", &save)) {
		out[*n] = strdup(t);
		FUZZ_CHECK(out[*n]);
		if (lowercase)
			lower(out[*n]);
		(*n)++;
	}
	free(copy);
	return out;
}

static void parse_route(struct tokens *tk, struct route_config *rc)
{
	memset(rc, 0, sizeof(*rc));
	rc->paths = list(tk->t[1], &rc->npaths, false);
	rc->headers = calloc(MAX_TOKENS, sizeof(*rc->headers));
	FUZZ_CHECK(rc->headers);
	for (int i = 2; i < tk->n; i++) {
		const char *t = tk->t[i];

		if (!strncmp(t, "h=", 2) && !rc->hosts) {
			rc->hosts = list(t + 2, &rc->nhosts, true);
		} else if (!strncmp(t, "m=", 2)) {
			int n;
			char **m = list(t + 2, &n, false);

			for (int j = 0; j < n; j++) {
				enum http_method mm = method_named(m[j]);

				if (mm != HTTP_OTHER)
					rc->methods |= 1u << mm;
				free(m[j]);
			}
			free(m);
		} else if (!strncmp(t, "H=", 2) && t[2]) {
			struct header_match *h = &rc->headers[rc->nheaders++];
			const char *colon = strchr(t + 2, ':');

			h->name = colon ? strndup(t + 2, colon - t - 2) : strdup(t + 2);
			h->value = colon ? strdup(colon + 1) : NULL;
			FUZZ_CHECK(h->name);
			lower(h->name);
		}
	}
}

static void free_route(struct route_config *rc)
{
	for (int i = 0; i < rc->npaths; i++)
		free(rc->paths[i]);
	for (int i = 0; i < rc->nhosts; i++)
		free(rc->hosts[i]);
	for (int i = 0; i < rc->nheaders; i++) {
		free(rc->headers[i].name);
		free(rc->headers[i].value);
	}
	free(rc->paths);
	free(rc->hosts);
	free(rc->headers);
}

/* --- the model: SPEC's matching rules, written out directly --- */

/* How the route's hosts fit: -1 not at all, 0 no hosts listed, 1 wildcard, 2 exact. */
static int model_host(const struct route_config *rc, const char *host, size_t hl)
{
	int fit = -1;

	if (!rc->nhosts)
		return 0;
	for (int i = 0; i < rc->nhosts; i++) {
		const char *h = rc->hosts[i];
		size_t n = strlen(h);

		if (h[0] == '*' && h[1] == '.') {
			/* strictly below: at least one label before ".example.com" */
			if (hl > n - 1 && !strncasecmp(host + hl - (n - 1), h + 1, n - 1))
				fit = 1;
		} else if (n == hl && !strncasecmp(h, host, n)) {
			return 2;
		}
	}
	return fit;
}

static bool model_headers(const struct route_config *rc, const struct http_request *req)
{
	for (int i = 0; i < rc->nheaders; i++) {
		const struct header_match *m = &rc->headers[i];
		bool found = false;

		for (int j = 0; j < req->nheaders; j++) {
			const struct http_header *h = &req->headers[j];

			if (h->name.len == strlen(m->name) &&
			    !strncasecmp(h->name.p, m->name, h->name.len) &&
			    (!m->value || (h->value.len == strlen(m->value) &&
					   !memcmp(h->value.p, m->value, h->value.len))))
				found = true;
		}
		if (!found)
			return false;
	}
	return true;
}

/*
 * Whether route path rp covers path (ASCII case ignored); *level orders coverage (longer
 * first; "/a/" sits one above "/a", with "/a/$"), *prefix is what strip_prefix removes.
 */
static bool model_covers(const char *rp, const char *path, size_t pl, size_t *level, size_t *prefix)
{
	size_t n = strlen(rp), b;

	if (!n || rp[0] != '/')
		return false;
	b = rp[n - 1] == '$' || rp[n - 1] == '/' ? n - 1 : n;
	*prefix = b;
	if (rp[n - 1] == '$') {
		*level = b;
		return pl == b && !strncasecmp(path, rp, b);
	}
	if (rp[n - 1] == '/') {
		*level = b + 1;
		return pl > b && !strncasecmp(path, rp, b) && path[b] == '/';
	}
	*level = b;
	return pl >= b && !strncasecmp(path, rp, b) && (pl == b || path[b] == '/');
}

static uint32_t methods_of(const struct route_config *rc)
{
	return rc->methods ? rc->methods : ALL_METHODS;
}

/* Order of route path kinds within one level: exact ("$"), prefix, directory ("/"). */
static int kind_rank(const char *rp)
{
	size_t n = strlen(rp);

	return rp[n - 1] == '$' ? 0 : rp[n - 1] == '/' ? 2 : 1;
}

/*
 * At the longest covering level, candidates are tried by path kind, then by host fit (exact
 * name, wildcard, no hosts: a host's own route wins whatever the file order), then in config
 * order; the first allowing the method wins, else 405 with the union of their methods.
 */
static void check_model(const struct route_config *routes, int nroutes,
			const struct http_request *req, const char *path, size_t pl,
			const char *host, size_t hl, enum route_result res,
			const struct route_match *m)
{
	size_t best = 0, level, prefix, want_prefix = 0;
	bool any = false;
	int want = -1;
	uint32_t allowed = 0, bit = 1u << req->method;

	for (int i = 0; i < nroutes; i++) {
		if (model_host(&routes[i], host, hl) < 0 || !model_headers(&routes[i], req))
			continue;
		for (int j = 0; j < routes[i].npaths; j++)
			if (model_covers(routes[i].paths[j], path, pl, &level, &prefix) &&
			    (!any || level > best)) {
				any = true;
				best = level;
			}
	}
	if (!any) {
		FUZZ_CHECK(res == ROUTE_NOT_FOUND);
		return;
	}
	for (int kind = 0; kind < 3; kind++) {
		for (int fit = 2; fit >= 0; fit--) {
			for (int i = 0; i < nroutes; i++) {
				if (model_host(&routes[i], host, hl) != fit ||
				    !model_headers(&routes[i], req))
					continue;
				for (int j = 0; j < routes[i].npaths; j++) {
					if (kind_rank(routes[i].paths[j]) != kind ||
					    !model_covers(routes[i].paths[j], path, pl, &level,
							  &prefix) ||
					    level != best)
						continue;
					allowed |= methods_of(&routes[i]);
					/* no methods means any, even one we have no name for */
					if (want < 0 &&
					    (!routes[i].methods || (routes[i].methods & bit))) {
						want = i;
						want_prefix = prefix;
					}
				}
			}
		}
	}
	if (want >= 0) {
		FUZZ_CHECK(res == ROUTE_MATCH && m->route == want && m->prefix_len == want_prefix);
		FUZZ_CHECK(m->prefix_len <= pl);
	} else {
		FUZZ_CHECK(res == ROUTE_METHOD_NOT_ALLOWED);
		FUZZ_CHECK(m->allowed_methods == allowed);
	}
}

static void check_allow(uint32_t methods)
{
	char big[128], small[8];
	size_t n = router_format_allow(methods, big, sizeof(big)), ns;

	FUZZ_CHECK(n == strlen(big) && n > 0);
	ns = router_format_allow(methods, small, sizeof(small));
	FUZZ_CHECK(ns == n && strlen(small) < sizeof(small) && !strncmp(small, big, strlen(small)));
}

static bool same_match(const struct route_match *a, const struct route_match *b)
{
	return a->route == b->route && a->prefix_len == b->prefix_len &&
	       a->allowed_methods == b->allowed_methods;
}

/* Host as the proxy passes it: lower case, no port, no trailing dot. */
static size_t canonical_host(char *h)
{
	char *colon = strrchr(h, ':');
	size_t n;

	if (colon && !strchr(colon, ']'))
		*colon = '\0';
	lower(h);
	n = strlen(h);
	while (n && h[n - 1] == '.')
		h[--n] = '\0';
	return n;
}

static void query(const struct router *r, const struct router *r2,
		  const struct route_config *routes, int nroutes, struct tokens *tk)
{
	struct http_request req = {0};
	struct route_match m, m2, m3;
	enum route_result res;
	char host[256] = "", *path;
	size_t hl = 0, pl = strlen(tk->t[2]);
	ssize_t nl;

	req.method = method_named(tk->t[1]);
	if (tk->n > 3) {
		snprintf(host, sizeof(host), "%s", tk->t[3]);
		hl = canonical_host(host);
	}
	for (int i = 4; i < tk->n && req.nheaders < HTTP_MAX_HEADERS; i++) {
		char *colon = strchr(tk->t[i], ':');

		if (!colon)
			continue;
		req.headers[req.nheaders].name = (struct http_str){tk->t[i], colon - tk->t[i]};
		req.headers[req.nheaders++].value = (struct http_str){colon + 1, strlen(colon + 1)};
	}
	path = fuzz_dup((const uint8_t *)tk->t[2], pl);
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			nl = http_path_normalize(path, pl);
			if (nl < 0)
				break;
			pl = (size_t)nl;
		}
		res = router_match(r, routes, &req, path, pl, host, hl, &m);
		FUZZ_CHECK(router_match(r, routes, &req, path, pl, host, hl, &m2) == res);
		FUZZ_CHECK(router_match(r2, routes, &req, path, pl, host, hl, &m3) == res);
		FUZZ_CHECK(same_match(&m, &m2) && same_match(&m, &m3));
		if (res == ROUTE_MATCH)
			FUZZ_CHECK(m.route >= 0 && m.route < nroutes && m.prefix_len <= pl);
		if (res == ROUTE_METHOD_NOT_ALLOWED)
			check_allow(m.allowed_methods);
		if (pl && path[0] == '/')
			check_model(routes, nroutes, &req, path, pl, host, hl, res, &m);
		else
			FUZZ_CHECK(res == ROUTE_NOT_FOUND);
	}
	free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct route_config routes[MAX_ROUTES];
	char *text = malloc(size + 1), *save = NULL, *line, err[256];
	char *queries[MAX_QUERIES];
	int nroutes = 0, nq = 0;
	struct router *r, *r2;
	struct tokens tk;

	FUZZ_CHECK(text);
	memcpy(text, data, size);
	text[size] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == 'R' && nroutes < MAX_ROUTES) {
			split(line, &tk);
			if (tk.n >= 2)
				parse_route(&tk, &routes[nroutes++]);
		} else if (line[0] == 'Q' && nq < MAX_QUERIES) {
			queries[nq++] = line;
		}
	}
	r = router_build(routes, nroutes, err, sizeof(err));
	r2 = router_build(routes, nroutes, err, sizeof(err));
	FUZZ_CHECK(!r == !r2);
	if (!r)
		FUZZ_CHECK(!strncmp(err, "routes", 6));
	for (int i = 0; r && i < nq; i++) {
		split(queries[i], &tk);
		if (tk.n >= 3)
			query(r, r2, routes, nroutes, &tk);
	}
	router_free(r);
	router_free(r2);
	for (int i = 0; i < nroutes; i++)
		free_route(&routes[i]);
	free(text);
	return 0;
}
