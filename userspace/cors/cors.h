/*
 * CORS policy (Fetch standard, "CORS protocol"): which origins may read a route's
 * responses, which methods and request headers a preflight may announce, which response
 * headers scripts may see. Pure logic: the filter (filters/cors.c) applies it.
 *
 * Origins are matched exactly (scheme, host and port; case-insensitive), never reflected:
 * the value sent back is the configured origin the request's Origin equals. "*" (alone)
 * admits any origin and is answered with "*", which browsers ignore for credentialed
 * requests: a policy with credentials and "*" is a config error.
 */
#ifndef XGATE_CORS_CORS_H
#define XGATE_CORS_CORS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "http/http.h"

struct cors_policy {
	char **origins; /* lower-case "scheme://host[:port]" */
	int norigins;
	bool any_origin; /* origins is ["*"] */
	char **methods;	 /* case-sensitive tokens, as the Fetch standard compares them */
	int nmethods;
	char **headers; /* lower-case request header names a preflight may announce */
	int nheaders;
	char *methods_text, *headers_text, *expose_text; /* ", "-joined, for the responses */
	bool credentials;
	uint32_t max_age_s;
};

/* `o` is the route's "cors" object; path its JSON path. NULL with errors recorded. */
struct cors_policy *cors_policy_parse(json_t *o, const char *path, struct cfg_errs *errs);
void cors_policy_free(struct cors_policy *p);

/* The Access-Control-Allow-Origin value for this Origin, or NULL when it is not allowed. */
const char *cors_allow_origin(const struct cors_policy *p, struct http_str origin);

/* OPTIONS with Origin and Access-Control-Request-Method: a preflight, answered by us. */
bool cors_is_preflight(const struct http_request *req);

enum cors_verdict {
	CORS_OK,
	CORS_DENY_ORIGIN,
	CORS_DENY_METHOD,
	CORS_DENY_HEADERS,
};

/*
 * Checks a preflight. On CORS_OK writes the 204's header lines (each ending in CRLF) into
 * out; false when they do not fit (then treat it as denied).
 */
enum cors_verdict cors_preflight(const struct cors_policy *p, const struct http_request *req,
				 char *out, size_t cap, bool *fits);

#endif
