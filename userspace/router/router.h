/*
 * L7 route matching per SPEC: path prefixes on segment boundaries ("/api/users" matches
 * "/api/users" and "/api/users/7", not "/api/usersX"), "$" suffix = exact, longest prefix
 * first, then hosts/headers/methods filter. A trie over path segments keeps matching cost
 * independent of the number of routes.
 */
#ifndef XGATE_ROUTER_ROUTER_H
#define XGATE_ROUTER_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "http/http.h"

enum route_result {
	ROUTE_MATCH,
	ROUTE_NOT_FOUND,	  /* 404 */
	ROUTE_METHOD_NOT_ALLOWED, /* 405; allowed_methods says what to put in Allow */
};

struct route_match {
	int route;	   /* index into config routes */
	size_t prefix_len; /* bytes of the path the matching prefix covered (for strip_prefix) */
	uint32_t allowed_methods; /* for 405: bitmask of 1 << enum http_method */
};

/*
 * Builds the trie. Paths were validated by the config parser (start with '/'). Later
 * routes with an identical (path, hosts, headers, methods) set are shadowed: reported in err.
 */
struct router *router_build(const struct route_config *routes, int nroutes, char *err,
			    size_t errlen);
void router_free(struct router *r);

/*
 * Walks from the longest matching prefix to the shortest. At each prefix the routes whose
 * hosts and headers fit are candidates (config order); the first whose methods fit wins.
 * If candidates exist but none allows the method: 405 with their union in Allow. If no
 * candidate fits hosts/headers at that prefix, shorter prefixes are tried.
 * `path` is the normalized path (http_path_normalize), `host` without port, lower-case.
 */
enum route_result router_match(const struct router *r, const struct route_config *routes,
			       const struct http_request *req, const char *path, size_t path_len,
			       const char *host, size_t host_len, struct route_match *out);

/* Formats an Allow header value ("GET, HEAD, POST") from a method bitmask. */
size_t router_format_allow(uint32_t methods, char *out, size_t outlen);

#endif
