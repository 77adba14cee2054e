/*
 * Route transformation (SPEC "Transformation"): header ops (remove, rename, set, add, in
 * that fixed order) on requests and responses, query ops, a regex path rewrite and JSON
 * body ops on dot paths. Pure logic, testable without a worker: the policy is parsed and
 * compiled at config load; transform_header_edits() turns a policy and a header list into
 * the names to drop and the lines to write; the body functions work on jansson values.
 * filters/transform.c hands the results to the stream (stream/stream.h).
 */
#ifndef XGATE_TRANSFORM_TRANSFORM_H
#define XGATE_TRANSFORM_TRANSFORM_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>

#include "common/cfg.h"
#include "compose/compose.h"
#include "http/http.h"

struct transform_pair {
	char *name;
	char *value; /* rename: the new name; request set/add: a template */
};

struct transform_headers {
	char **remove;
	int nremove;
	struct transform_pair *rename, *set, *add;
	int nrename, nset, nadd;
};

/* transform.*.body: JSON ops on dot paths; the response also shapes (compose's code). */
struct transform_body {
	bool active;
	struct compose_call shape; /* target, allow | deny; the rest unused */
	char **remove;
	int nremove;
	struct transform_pair *rename; /* dot path -> dot path */
	int nrename;
	char **set_path;
	json_t **set_value;
	int nset;
};

enum transform_format {
	TRANSFORM_FORMAT_JSON, /* absent: bodies stay what they are */
	TRANSFORM_FORMAT_XML,
	TRANSFORM_FORMAT_NEGOTIATE,
};

struct transform_policy {
	struct transform_headers req, resp;
	/* request.query */
	char **qremove;
	int nqremove;
	struct transform_pair *qset;
	int nqset;
	/* request.path: compiled at load; NULL when absent */
	pcre2_code *path_re;
	char *path_to;
	struct transform_body req_body, resp_body;
	enum transform_format req_format, resp_format;
};

/* Most edits one message may need: bounded by the stream's edit slots. */
#define TRANSFORM_MAX_EDITS 20
/* Room for the values set / add templates expand to (one message). */
#define TRANSFORM_EXPAND_BYTES 4096

/* The outcome for one message: headers to drop, then lines to write. */
struct transform_edits {
	const char *drop[TRANSFORM_MAX_EDITS];
	int ndrop;
	struct {
		const char *name;
		struct http_str value;
	} add[TRANSFORM_MAX_EDITS];
	int nadd;
	char values[TRANSFORM_EXPAND_BYTES]; /* expanded template values */
	size_t values_used;
};

/* The route's "transform" object; path is its JSON path. NULL with errors in errs. */
struct transform_policy *transform_policy_parse(json_t *o, const char *path, struct cfg_errs *errs);
void transform_policy_free(struct transform_policy *p);

/* The edits for a response with these origin headers. Renamed values point into hdrs. */
void transform_resp_headers(const struct transform_headers *h, const struct http_header *hdrs,
			    int nhdrs, struct transform_edits *out);
/*
 * The edits for a request: set / add values are templates expanded from vars (as compose
 * does, values not encoded). A set whose template cannot be filled (no consumer, no such
 * claim) or fills to something that is not a valid field value still removes the client's
 * header, so a client cannot supply it; an add is then skipped.
 */
void transform_req_headers(const struct transform_headers *h, const struct http_header *hdrs,
			   int nhdrs, const struct compose_vars *vars, struct transform_edits *out);
/* The query after request.query: false when it does not fit cap. */
bool transform_query(const struct transform_policy *p, struct http_str query,
		     const struct compose_vars *vars, char *out, size_t cap, size_t *len);
/*
 * request.path: the rewritten, normalised path in out. 0: rewritten; 1: the pattern did not
 * match (path unchanged); -1: the result is not a valid path (does not start with '/',
 * holds a control character, space, '?', '#', escapes the root, ...).
 */
int transform_path(const struct transform_policy *p, const char *path, size_t len, char *out,
		   size_t cap, size_t *out_len);
/* Body ops in place on a JSON value (request: remove, rename, set). */
void transform_json_ops(const struct transform_body *b, json_t *j);
/* Response: target, allow | deny, then the ops. A new reference; NULL when the target is
 * missing or the result is not an object. */
json_t *transform_json_response(const struct transform_body *b, json_t *j);

/* body_format (transform/xml.c). JSON to an XML document (malloc'd); NULL when a key is no
 * XML name or a value has no XML form. */
char *transform_json_to_xml(json_t *j, size_t *len);
/* A well-formed XML document to JSON; NULL when it is not one. */
json_t *transform_xml_to_json(const char *p, size_t n);
/* The client's Accept ranks application/xml (or text/xml) above application/json. */
bool transform_prefers_xml(struct http_str accept);

#endif
