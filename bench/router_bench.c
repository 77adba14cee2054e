/*
 * Router matching cost with 10 and with 10,000 routes. The request paths have the same
 * shape in both runs (three segments under a routed prefix) so only the table size differs.
 * Usage: router_bench [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router/router.h"

#define NPATHS 1024

struct table {
	struct route_config *routes;
	char (*text)[48];
	int n;
	struct router *router;
};

static int table_build(struct table *t, int n)
{
	char err[256];

	t->n = n;
	t->routes = calloc(n, sizeof(*t->routes));
	t->text = calloc(n, sizeof(*t->text));
	if (!t->routes || !t->text)
		return -1;
	for (int i = 0; i < n; i++) {
		snprintf(t->text[i], sizeof(t->text[i]), "/api/svc%d/items", i);
		t->routes[i].paths = malloc(sizeof(char *));
		if (!t->routes[i].paths)
			return -1;
		t->routes[i].paths[0] = t->text[i];
		t->routes[i].npaths = 1;
		t->routes[i].methods = 1u << HTTP_GET;
	}
	t->router = router_build(t->routes, n, err, sizeof(err));
	if (!t->router) {
		fprintf(stderr, "router_build: %s\n", err);
		return -1;
	}
	return 0;
}

static void table_free(struct table *t)
{
	router_free(t->router);
	for (int i = 0; i < t->n && t->routes; i++)
		free(t->routes[i].paths);
	free(t->routes);
	free(t->text);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/*
 * ns per match over `iters` lookups cycling through NPATHS request paths spread over
 * `spread` routes (fewer routes touched = smaller cache working set).
 */
static double measure(const struct table *t, int spread, long iters)
{
	static char paths[NPATHS][64];
	static size_t lens[NPATHS];
	struct http_request req;
	struct route_match m;
	double start;
	long hits = 0;

	memset(&req, 0, sizeof(req));
	req.method = HTTP_GET;
	for (int i = 0; i < NPATHS; i++) {
		int route = (int)(((unsigned)i * 2654435761u) % (unsigned)spread);

		lens[i] =
		    snprintf(paths[i], sizeof(paths[i]), "/api/svc%d/items/%d/detail", route, i);
	}
	start = now_ns();
	for (long i = 0; i < iters; i++) {
		int k = i & (NPATHS - 1);

		hits += router_match(t->router, t->routes, &req, paths[k], lens[k], "bench", 5,
				     &m) == ROUTE_MATCH;
	}
	if (hits != iters) {
		fprintf(stderr, "router_bench: %ld of %ld lookups did not match\n", iters - hits,
			iters);
		return -1;
	}
	return (now_ns() - start) / iters;
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 5000000;
	struct table small = {0}, large = {0};
	double ns_small, ns_large, ns_large_hot;
	int rc = 1;

	if (iters <= 0) {
		fprintf(stderr, "usage: %s [iterations]\n", argv[0]);
		return 2;
	}
	if (table_build(&small, 10) || table_build(&large, 10000))
		goto out;
	/* Warm both tables once, then measure interleaved to share the same machine state. */
	if (measure(&small, 10, iters / 10) < 0 || measure(&large, 10000, iters / 10) < 0)
		goto out;
	ns_small = measure(&small, 10, iters);
	ns_large = measure(&large, 10000, iters);
	ns_large_hot = measure(&large, 10, iters);
	if (ns_small < 0 || ns_large < 0 || ns_large_hot < 0)
		goto out;
	printf("router_match, 10 routes:                          %.1f ns/match\n", ns_small);
	printf("router_match, 10000 routes (requests on all):     %.1f ns/match\n", ns_large);
	printf("router_match, 10000 routes (requests on 10 only): %.1f ns/match\n", ns_large_hot);
	printf("ratio 10000/10 (all):     %.2f\n", ns_large / ns_small);
	printf("ratio 10000/10 (same 10): %.2f\n", ns_large_hot / ns_small);
	rc = 0;
out:
	table_free(&small);
	table_free(&large);
	return rc;
}
