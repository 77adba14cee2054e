/* Route trie: precedence, segment boundaries, exact paths, filters, 405, scale. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/router.h"
#include "unit/check.h"

struct route_spec {
	const char *paths[4];
	uint32_t methods;
	const char *hosts[3];
	const char *header_name, *header_value;
};

#define M(m) (1u << (m))

static struct route_config *routes_make(const struct route_spec *spec, int n)
{
	struct route_config *routes = calloc(n, sizeof(*routes));

	for (int i = 0; i < n; i++) {
		struct route_config *rc = &routes[i];

		rc->name = strdup("r");
		rc->paths = calloc(4, sizeof(char *));
		while (rc->npaths < 4 && spec[i].paths[rc->npaths]) {
			rc->paths[rc->npaths] = strdup(spec[i].paths[rc->npaths]);
			rc->npaths++;
		}
		rc->methods = spec[i].methods;
		rc->hosts = calloc(3, sizeof(char *));
		while (rc->nhosts < 3 && spec[i].hosts[rc->nhosts]) {
			rc->hosts[rc->nhosts] = strdup(spec[i].hosts[rc->nhosts]);
			rc->nhosts++;
		}
		if (spec[i].header_name) {
			rc->headers = calloc(1, sizeof(*rc->headers));
			rc->headers[0].name = strdup(spec[i].header_name);
			rc->headers[0].value =
			    spec[i].header_value ? strdup(spec[i].header_value) : NULL;
			rc->nheaders = 1;
		}
	}
	return routes;
}

static void routes_free(struct route_config *routes, int n)
{
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < routes[i].npaths; j++)
			free(routes[i].paths[j]);
		for (int j = 0; j < routes[i].nhosts; j++)
			free(routes[i].hosts[j]);
		for (int j = 0; j < routes[i].nheaders; j++) {
			free(routes[i].headers[j].name);
			free(routes[i].headers[j].value);
		}
		free(routes[i].paths);
		free(routes[i].hosts);
		free(routes[i].headers);
		free(routes[i].name);
	}
	free(routes);
}

struct fixture {
	struct route_config *routes;
	int n;
	struct router *r;
	char err[256];
};

static bool fixture_build(struct fixture *f, const struct route_spec *spec, int n)
{
	f->routes = routes_make(spec, n);
	f->n = n;
	f->r = router_build(f->routes, n, f->err, sizeof(f->err));
	if (!f->r)
		fprintf(stderr, "router_build: %s\n", f->err);
	return f->r != NULL;
}

static void fixture_free(struct fixture *f)
{
	router_free(f->r);
	routes_free(f->routes, f->n);
}

/* Route index on a match, -404 / -405 otherwise. */
static int match_full(struct fixture *f, enum http_method method, const char *path,
		      const char *host, const char *hname, const char *hvalue,
		      struct route_match *out)
{
	struct http_request req;
	enum route_result res;

	memset(&req, 0, sizeof(req));
	req.method = method;
	if (hname) {
		req.headers[0].name.p = hname;
		req.headers[0].name.len = strlen(hname);
		req.headers[0].value.p = hvalue;
		req.headers[0].value.len = strlen(hvalue);
		req.nheaders = 1;
	}
	res = router_match(f->r, f->routes, &req, path, strlen(path), host, host ? strlen(host) : 0,
			   out);
	if (res == ROUTE_MATCH)
		return out->route;
	return res == ROUTE_NOT_FOUND ? -404 : -405;
}

static int match(struct fixture *f, enum http_method method, const char *path)
{
	struct route_match out;

	return match_full(f, method, path, "example.com", NULL, NULL, &out);
}

static void test_precedence(void)
{
	static const struct route_spec spec[] = {
	    {.paths = {"/api"}},
	    {.paths = {"/api/users"}},
	    {.paths = {"/api/users$"}},
	    {.paths = {"/"}},
	    {.paths = {"/dup"}, .methods = M(HTTP_GET)},
	    {.paths = {"/dup"}},
	    {.paths = {"/api/users/admin"}},
	};
	struct fixture f;
	struct route_match out;

	if (!fixture_build(&f, spec, 7)) {
		CHECK(0);
		return;
	}
	CHECK_EQ(match_full(&f, HTTP_GET, "/api/users/7", NULL, NULL, NULL, &out), 1);
	CHECK_EQ(out.prefix_len, 10);
	CHECK_EQ(match_full(&f, HTTP_GET, "/api/users", NULL, NULL, NULL, &out), 2);
	CHECK_EQ(out.prefix_len, 10);
	CHECK_EQ(match(&f, HTTP_GET, "/api/users/admin/x"), 6);
	CHECK_EQ(match(&f, HTTP_GET, "/api/users/adminx"), 1);
	CHECK_EQ(match(&f, HTTP_GET, "/api/x"), 0);
	CHECK_EQ(match(&f, HTTP_GET, "/api"), 0);
	CHECK_EQ(match_full(&f, HTTP_GET, "/other/deep", NULL, NULL, NULL, &out), 3);
	CHECK_EQ(out.prefix_len, 0);
	CHECK_EQ(match(&f, HTTP_GET, "/"), 3);
	/* Same path: config order, methods decide. */
	CHECK_EQ(match(&f, HTTP_GET, "/dup/1"), 4);
	CHECK_EQ(match(&f, HTTP_POST, "/dup/1"), 5);
	fixture_free(&f);
}

static void test_boundaries(void)
{
	static const struct route_spec spec[] = {
	    {.paths = {"/api/users"}},
	    {.paths = {"/docs/"}},
	    {.paths = {"/a/b", "/c"}},
	};
	struct fixture f;
	struct route_match out;

	if (!fixture_build(&f, spec, 3)) {
		CHECK(0);
		return;
	}
	CHECK_EQ(match(&f, HTTP_GET, "/api/users"), 0);
	CHECK_EQ(match(&f, HTTP_GET, "/api/users/"), 0);
	CHECK_EQ(match(&f, HTTP_GET, "/api/users/7/x"), 0);
	CHECK_EQ(match(&f, HTTP_GET, "/api/usersX"), -404);
	CHECK_EQ(match(&f, HTTP_GET, "/api/user"), -404);
	CHECK_EQ(match(&f, HTTP_GET, "/api"), -404);
	CHECK_EQ(match(&f, HTTP_GET, "/"), -404);
	/* Trailing slash: only paths below it. */
	CHECK_EQ(match(&f, HTTP_GET, "/docs"), -404);
	CHECK_EQ(match_full(&f, HTTP_GET, "/docs/", NULL, NULL, NULL, &out), 1);
	CHECK_EQ(out.prefix_len, 5);
	CHECK_EQ(match_full(&f, HTTP_GET, "/docs/intro", NULL, NULL, NULL, &out), 1);
	CHECK_EQ(out.prefix_len, 5);
	CHECK_EQ(match(&f, HTTP_GET, "/docsx"), -404);
	/* Several paths per route. */
	CHECK_EQ(match(&f, HTTP_GET, "/a/b/c"), 2);
	CHECK_EQ(match(&f, HTTP_GET, "/c"), 2);
	CHECK_EQ(match(&f, HTTP_GET, "/a"), -404);
	/* Not origin-form. */
	CHECK_EQ(match(&f, HTTP_OPTIONS, "*"), -404);
	CHECK_EQ(match(&f, HTTP_GET, ""), -404);
	fixture_free(&f);
}

static void test_exact(void)
{
	static const struct route_spec spec[] = {
	    {.paths = {"/health$"}},
	    {.paths = {"/$"}},
	    {.paths = {"/e$"}, .methods = M(HTTP_GET)},
	    {.paths = {"/e"}, .methods = M(HTTP_POST)},
	    {.paths = {"/d/$"}},
	    {.paths = {"/d/"}},
	};
	struct fixture f;
	struct route_match out;

	if (!fixture_build(&f, spec, 6)) {
		CHECK(0);
		return;
	}
	CHECK_EQ(match_full(&f, HTTP_GET, "/health", NULL, NULL, NULL, &out), 0);
	CHECK_EQ(out.prefix_len, 7);
	CHECK_EQ(match(&f, HTTP_GET, "/health/x"), -404);
	CHECK_EQ(match(&f, HTTP_GET, "/health/"), -404);
	CHECK_EQ(match(&f, HTTP_GET, "/healthz"), -404);
	CHECK_EQ(match(&f, HTTP_GET, "/"), 1);
	CHECK_EQ(match(&f, HTTP_GET, "/x"), -404);
	/* Exact and prefix of one path share a level: the method picks. */
	CHECK_EQ(match(&f, HTTP_GET, "/e"), 2);
	CHECK_EQ(match(&f, HTTP_POST, "/e"), 3);
	CHECK_EQ(match(&f, HTTP_GET, "/e/1"), -405);
	CHECK_EQ(match(&f, HTTP_POST, "/e/1"), 3);
	CHECK_EQ(match(&f, HTTP_GET, "/d/"), 4);
	CHECK_EQ(match(&f, HTTP_GET, "/d/x"), 5);
	CHECK_EQ(match(&f, HTTP_GET, "/d"), -404);
	fixture_free(&f);
}

static void test_hosts(void)
{
	static const struct route_spec spec[] = {
	    {.paths = {"/api"}},
	    {.paths = {"/api/users"}, .hosts = {"a.example.com"}},
	    {.paths = {"/w"}, .hosts = {"*.example.com", "other.test"}},
	};
	struct fixture f;
	struct route_match out;

	if (!fixture_build(&f, spec, 3)) {
		CHECK(0);
		return;
	}
	CHECK_EQ(match_full(&f, HTTP_GET, "/api/users", "a.example.com", NULL, NULL, &out), 1);
	/* Host filter fails at the longer prefix: the shorter one answers. */
	CHECK_EQ(match_full(&f, HTTP_GET, "/api/users", "b.example.com", NULL, NULL, &out), 0);
	CHECK_EQ(out.prefix_len, 4);
	CHECK_EQ(match_full(&f, HTTP_GET, "/api/users", NULL, NULL, NULL, &out), 0);
	CHECK_EQ(match_full(&f, HTTP_GET, "/w", "x.example.com", NULL, NULL, &out), 2);
	CHECK_EQ(match_full(&f, HTTP_GET, "/w", "a.b.example.com", NULL, NULL, &out), 2);
	CHECK_EQ(match_full(&f, HTTP_GET, "/w", "other.test", NULL, NULL, &out), 2);
	CHECK_EQ(match_full(&f, HTTP_GET, "/w", "example.com", NULL, NULL, &out), -404);
	CHECK_EQ(match_full(&f, HTTP_GET, "/w", "xexample.com", NULL, NULL, &out), -404);
	CHECK_EQ(match_full(&f, HTTP_GET, "/w", "other.test.evil", NULL, NULL, &out), -404);
	CHECK_EQ(match_full(&f, HTTP_GET, "/w", "", NULL, NULL, &out), -404);
	fixture_free(&f);
}

/* A host's own route wins over a host-less (or wildcard) route of the same path, whatever
 * their order in the file. */
static void test_host_specific_first(void)
{
	static const struct route_spec spec[] = {
	    {.paths = {"/api"}},
	    {.paths = {"/api"}, .hosts = {"*.example.com"}},
	    {.paths = {"/api"}, .hosts = {"a.example.com"}},
	    {.paths = {"/x"}, .hosts = {"a.example.com"}, .methods = M(HTTP_GET)},
	    {.paths = {"/x"}},
	};
	struct fixture f;
	struct route_match out;

	if (!fixture_build(&f, spec, 5)) {
		CHECK(0);
		return;
	}
	CHECK_EQ(match_full(&f, HTTP_GET, "/api/1", "a.example.com", NULL, NULL, &out), 2);
	CHECK_EQ(match_full(&f, HTTP_GET, "/api/1", "b.example.com", NULL, NULL, &out), 1);
	CHECK_EQ(match_full(&f, HTTP_GET, "/api/1", "other.test", NULL, NULL, &out), 0);
	CHECK_EQ(match_full(&f, HTTP_GET, "/api/1", NULL, NULL, NULL, &out), 0);
	CHECK_EQ(match_full(&f, HTTP_GET, "/x", "a.example.com", NULL, NULL, &out), 3);
	/* the host's route does not allow the method: the host-less one of the path answers */
	CHECK_EQ(match_full(&f, HTTP_POST, "/x", "a.example.com", NULL, NULL, &out), 4);
	CHECK_EQ(match_full(&f, HTTP_GET, "/x", "b.example.com", NULL, NULL, &out), 4);
	/* host names compare without regard to case (the caller lower-cases, but be safe) */
	CHECK_EQ(match_full(&f, HTTP_GET, "/api", "A.Example.COM", NULL, NULL, &out), 2);
	fixture_free(&f);
}

/* Path segments match without regard to ASCII case. */
static void test_path_case(void)
{
	static const struct route_spec spec[] = {
	    {.paths = {"/"}},
	    {.paths = {"/admin"}},
	    {.paths = {"/Api/Users$"}},
	};
	struct fixture f;

	if (!fixture_build(&f, spec, 3)) {
		CHECK(0);
		return;
	}
	CHECK_EQ(match(&f, HTTP_GET, "/admin"), 1);
	CHECK_EQ(match(&f, HTTP_GET, "/ADMIN"), 1);
	CHECK_EQ(match(&f, HTTP_GET, "/AdMiN/x"), 1);
	CHECK_EQ(match(&f, HTTP_GET, "/api/users"), 2);
	CHECK_EQ(match(&f, HTTP_GET, "/API/USERS"), 2);
	CHECK_EQ(match(&f, HTTP_GET, "/adminx"), 0);
	CHECK_EQ(match(&f, HTTP_GET, "/api/users/1"), 0);
	fixture_free(&f);
}

static void test_headers(void)
{
	static const struct route_spec spec[] = {
	    {.paths = {"/h"}, .header_name = "X-Canary", .header_value = "1"},
	    {.paths = {"/h"}, .header_name = "X-Debug"},
	    {.paths = {"/h"}},
	};
	struct fixture f;
	struct route_match out;

	if (!fixture_build(&f, spec, 3)) {
		CHECK(0);
		return;
	}
	CHECK_EQ(match_full(&f, HTTP_GET, "/h", NULL, "x-canary", "1", &out), 0);
	CHECK_EQ(match_full(&f, HTTP_GET, "/h", NULL, "X-Canary", "2", &out), 2);
	CHECK_EQ(match_full(&f, HTTP_GET, "/h", NULL, "X-Canary", "10", &out), 2);
	CHECK_EQ(match_full(&f, HTTP_GET, "/h", NULL, "X-Debug", "", &out), 1);
	CHECK_EQ(match_full(&f, HTTP_GET, "/h", NULL, "X-Debugx", "1", &out), 2);
	CHECK_EQ(match_full(&f, HTTP_GET, "/h", NULL, NULL, NULL, &out), 2);
	fixture_free(&f);
}

static void test_method_not_allowed(void)
{
	static const struct route_spec spec[] = {
	    {.paths = {"/m"}, .methods = M(HTTP_GET) | M(HTTP_HEAD)},
	    {.paths = {"/m"}, .methods = M(HTTP_POST)},
	    {.paths = {"/m"}, .methods = M(HTTP_PUT), .header_name = "X-Admin"},
	    {.paths = {"/"}},
	};
	struct fixture f;
	struct route_match out;
	char allow[64];

	if (!fixture_build(&f, spec, 4)) {
		CHECK(0);
		return;
	}
	CHECK_EQ(match(&f, HTTP_HEAD, "/m"), 0);
	CHECK_EQ(match(&f, HTTP_POST, "/m/x"), 1);
	/* 405 at the longest prefix, not a fall back to the catch-all. */
	CHECK_EQ(match_full(&f, HTTP_DELETE, "/m", NULL, NULL, NULL, &out), -405);
	CHECK_EQ(out.allowed_methods, M(HTTP_GET) | M(HTTP_HEAD) | M(HTTP_POST));
	router_format_allow(out.allowed_methods, allow, sizeof(allow));
	CHECK_STR(allow, "GET, HEAD, POST");
	CHECK_EQ(match_full(&f, HTTP_DELETE, "/m", NULL, "X-Admin", "y", &out), -405);
	CHECK_EQ(out.allowed_methods, M(HTTP_GET) | M(HTTP_HEAD) | M(HTTP_POST) | M(HTTP_PUT));
	CHECK_EQ(match_full(&f, HTTP_PUT, "/m", NULL, "X-Admin", "y", &out), 2);
	CHECK_EQ(match(&f, HTTP_OTHER, "/m"), -405);
	CHECK_EQ(match(&f, HTTP_DELETE, "/mx"), 3);
	fixture_free(&f);
}

static void test_format_allow(void)
{
	char buf[128];
	size_t n;

	n = router_format_allow(0xffffffffu, buf, sizeof(buf));
	CHECK_STR(buf, "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE");
	CHECK_EQ(n, strlen(buf));
	n = router_format_allow(M(HTTP_OTHER), buf, sizeof(buf));
	CHECK_EQ(n, 0);
	CHECK_STR(buf, "");
	n = router_format_allow(M(HTTP_GET) | M(HTTP_POST), buf, 6);
	CHECK_EQ(n, strlen("GET, POST"));
	CHECK_EQ(strlen(buf), 5);
	CHECK_EQ(router_format_allow(M(HTTP_GET), NULL, 0), 3);
}

/* Found by fuzzing: a table whose segments are all empty had no text buffer (UB on match). */
static void test_only_empty_segments(void)
{
	static const struct route_spec spec[] = {
	    {.paths = {"/"}},
	    {.paths = {"//"}, .methods = M(HTTP_PUT)},
	};
	struct fixture f;

	if (!fixture_build(&f, spec, 2)) {
		CHECK(false);
		return;
	}
	CHECK_EQ(match(&f, HTTP_PUT, "//h"), 1);
	CHECK_EQ(match(&f, HTTP_GET, "//h"), -405);
	CHECK_EQ(match(&f, HTTP_GET, "/h"), 0);
	CHECK_EQ(match(&f, HTTP_GET, "/"), 0);
	fixture_free(&f);
}

static void test_build_errors(void)
{
	static const struct route_spec shadowed[] = {
	    {.paths = {"/a"}, .methods = M(HTTP_GET) | M(HTTP_POST), .hosts = {"x", "y"}},
	    {.paths = {"/b", "/a"}, .methods = M(HTTP_GET), .hosts = {"y", "x"}},
	};
	static const struct route_spec any_shadows[] = {
	    {.paths = {"/a$"}},
	    {.paths = {"/a$"}, .methods = M(HTTP_DELETE)},
	};
	static const struct route_spec distinct[] = {
	    {.paths = {"/a"}, .methods = M(HTTP_GET)},
	    {.paths = {"/a"}, .methods = M(HTTP_GET) | M(HTTP_POST)},
	    {.paths = {"/a"}, .hosts = {"x"}},
	    {.paths = {"/a"}, .header_name = "X-A", .header_value = "1"},
	    {.paths = {"/a"}, .header_name = "X-A"},
	    {.paths = {"/a$"}},
	    {.paths = {"/a/"}},
	};
	static const struct route_spec relative[] = {
	    {.paths = {"api"}},
	};
	static const struct route_spec dollar_only[] = {
	    {.paths = {"$"}},
	};
	struct fixture f;

	CHECK(!fixture_build(&f, shadowed, 2));
	CHECK(strstr(f.err, "routes[1].paths[1]") == f.err);
	CHECK(strstr(f.err, "routes[0]") != NULL);
	routes_free(f.routes, f.n);
	CHECK(!fixture_build(&f, any_shadows, 2));
	CHECK(strstr(f.err, "routes[1].paths[0]") == f.err);
	routes_free(f.routes, f.n);
	CHECK(fixture_build(&f, distinct, 7));
	fixture_free(&f);
	CHECK(!fixture_build(&f, relative, 1));
	CHECK(strstr(f.err, "routes[0].paths[0]: must start with '/'") != NULL);
	routes_free(f.routes, f.n);
	CHECK(!fixture_build(&f, dollar_only, 1));
	routes_free(f.routes, f.n);
}

static void test_many_routes(void)
{
	enum { N = 10000 };
	struct route_spec *spec = calloc(N + 1, sizeof(*spec));
	char(*paths)[2][48] = calloc(N, sizeof(*paths));
	struct fixture f;
	char path[96];
	int bad = 0;

	for (int i = 0; i < N; i++) {
		snprintf(paths[i][0], sizeof(paths[i][0]), "/svc%d/items", i);
		snprintf(paths[i][1], sizeof(paths[i][1]), "/t%d/u%d/v$", i % 100, i);
		spec[i].paths[0] = paths[i][0];
		spec[i].paths[1] = paths[i][1];
	}
	spec[N].paths[0] = "/svc1/items/special";
	if (!fixture_build(&f, spec, N + 1)) {
		CHECK(0);
		goto out;
	}
	for (int i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "/svc%d/items/%d", i, i * 7);
		bad += match(&f, HTTP_GET, path) != i;
		snprintf(path, sizeof(path), "/t%d/u%d/v", i % 100, i);
		bad += match(&f, HTTP_GET, path) != i;
		snprintf(path, sizeof(path), "/t%d/u%d/v/x", i % 100, i);
		bad += match(&f, HTTP_GET, path) != -404;
		snprintf(path, sizeof(path), "/svc%d/itemsx", i);
		bad += match(&f, HTTP_GET, path) != -404;
	}
	CHECK_EQ(bad, 0);
	CHECK_EQ(match(&f, HTTP_GET, "/svc1/items/special/1"), N);
	CHECK_EQ(match(&f, HTTP_GET, "/svc10000/items"), -404);
	fixture_free(&f);
out:
	free(paths);
	free(spec);
}

int main(void)
{
	RUN(test_precedence);
	RUN(test_boundaries);
	RUN(test_exact);
	RUN(test_hosts);
	RUN(test_host_specific_first);
	RUN(test_path_case);
	RUN(test_headers);
	RUN(test_method_not_allowed);
	RUN(test_format_allow);
	RUN(test_build_errors);
	RUN(test_only_empty_segments);
	RUN(test_many_routes);
	return CHECK_DONE();
}
