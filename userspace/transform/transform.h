/*
 * Route response-header transformation (SPEC "Transformation", transform.response.headers):
 * remove, rename, set (replace or add) and add (append), applied in that fixed order.
 * Pure logic: transform_resp_headers() turns a policy and the origin's header list into
 * the names to drop and the lines to write; the filter (filters/transform.c) hands them
 * to the stream's response-header edits.
 */
#ifndef XGATE_TRANSFORM_TRANSFORM_H
#define XGATE_TRANSFORM_TRANSFORM_H

#include <jansson.h>
#include <stdbool.h>

#include "common/cfg.h"
#include "http/http.h"

struct transform_pair {
	char *name;
	char *value; /* rename: the new name */
};

struct transform_headers {
	char **remove;
	int nremove;
	struct transform_pair *rename, *set, *add;
	int nrename, nset, nadd;
};

struct transform_policy {
	struct transform_headers resp;
};

/* Most edits one response may need: bounded by the stream's edit slots. */
#define TRANSFORM_MAX_EDITS 20

/* The outcome for one response: origin headers to drop, then lines to write. */
struct transform_edits {
	const char *drop[TRANSFORM_MAX_EDITS];
	int ndrop;
	struct {
		const char *name;
		struct http_str value;
	} add[TRANSFORM_MAX_EDITS];
	int nadd;
};

/* The route's "transform" object; path is its JSON path. NULL with errors in errs. */
struct transform_policy *transform_policy_parse(json_t *o, const char *path, struct cfg_errs *errs);
void transform_policy_free(struct transform_policy *p);

/* The edits for a response with these origin headers. Renamed values point into hdrs. */
void transform_resp_headers(const struct transform_headers *h, const struct http_header *hdrs,
			    int nhdrs, struct transform_edits *out);

#endif
