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
	int route; /* index into config routes */
	/*
	 * Bytes of the path the matching prefix covered (for strip_prefix). A trailing '/' of
	 * the route path is not counted ("/api/" on "/api/x" gives 4) so the rest keeps its
	 * leading slash; an empty rest (exact match, or "/api" on "/api") means "/".
	 */
	size_t prefix_len;
	uint32_t allowed_methods; /* for 405: bitmask of 1 << enum http_method */
};

/*
 * Builds the trie. Paths were validated by the config parser (start with '/'). A path
 * ending in '/' ("/api/") matches only paths that continue below it ("/api/", "/api/x");
 * "/" is the catch-all. Hosts are exact lower-case names or "*.example.com" (any host
 * strictly below example.com, not example.com itself). Methods are strict: GET does not
 * imply HEAD.
 * A later route whose path, hosts and headers equal an earlier route's and whose methods
 * are all taken by it can never match: that is an error. Returns NULL with one line in
 * err ("routes[3].paths[0]: <message>": the JSON path, ": ", the message) on such a route,
 * on a path not starting with '/', or on allocation failure.
 */
struct router *router_build(const struct route_config *routes, int nroutes, char *err,
			    size_t errlen);
void router_free(struct router *r);

/*
 * Walks from the longest matching prefix to the shortest. At each prefix the routes whose
 * hosts and headers fit are candidates: routes naming the host exactly first, then those
 * matching it by wildcard, then those without hosts, config order within each; the first
 * whose methods fit wins. Path segments compare without regard to ASCII case.
 * If candidates exist but none allows the method: 405 with their union in Allow. If no
 * candidate fits hosts/headers at that prefix, shorter prefixes are tried.
 * `path` is the normalized path (http_path_normalize), `host` without port, lower-case.
 */
enum route_result router_match(const struct router *r, const struct route_config *routes,
			       const struct http_request *req, const char *path, size_t path_len,
			       const char *host, size_t host_len, struct route_match *out);

/*
 * Formats an Allow header value ("GET, HEAD, POST") from a method bitmask. Returns the
 * length of the whole value (like snprintf); out is always NUL-terminated when outlen > 0.
 */
size_t router_format_allow(uint32_t methods, char *out, size_t outlen);

#endif
