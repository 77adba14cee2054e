/*
 * Composition policy (a route's "compose"): several upstream calls whose JSON answers are
 * shaped per call and merged into one response. Parsing and the pure JSON work live here
 * so they can be tested without a worker; filters/compose.c runs the calls.
 */
#ifndef XGATE_COMPOSE_COMPOSE_H
#define XGATE_COMPOSE_COMPOSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

struct cfg_errs;
struct xg_config;

#define COMPOSE_MAX_CALLS 16

struct compose_call {
	char *name;
	int upstream;
	char *path;    /* template */
	uint32_t deps; /* bit i: the path names {calls.<calls[i].name>...} */
	bool required;
	char *target; /* dot path; NULL: the whole body */
	char **allow, **deny;
	int nallow, ndeny;
	json_t *mapping; /* object: old key -> new key; NULL: none */
	char *group;	 /* NULL: merged as it is */
	int metrics_slot;
	/* Its access-log entry up to the status, `{"name":…,"upstream":…,"status":`, made
	 * (escaped) at load so a request only appends numbers. */
	char *log_prefix;
};

struct compose_policy {
	uint32_t timeout_ms;
	bool deep;	      /* "merge": "deep" */
	bool fail_on_partial; /* "on_partial": "fail" */
	bool errors;
	struct compose_call calls[COMPOSE_MAX_CALLS];
	int ncalls;
};

/* NULL with the errors in errs (JSON paths under `path`). */
struct compose_policy *compose_policy_parse(json_t *obj, const char *path,
					    const struct xg_config *cfg, struct cfg_errs *errs);
void compose_policy_free(struct compose_policy *p);

/* What templates read. results[i]: call i's raw body, NULL when it has none. */
struct auth_result;

struct compose_vars {
	const char *consumer;
	const struct auth_result *auth; /* {jwt.CLAIM}; NULL when the request has none */
	const struct http_request *req;
	const char *path; /* normalised request path */
	size_t path_len;
	const struct compose_policy *pol;
	json_t *const *results;
};

/* Expands a call path; values percent-encoded. False when a value is missing or out fills. */
bool compose_expand(const char *tmpl, const struct compose_vars *v, char *out, size_t cap);
/* The same with values as they are (header values: the caller checks what it got).
 * pol may be NULL: {calls.…} then never expands. */
bool compose_expand_raw(const char *tmpl, const struct compose_vars *v, char *out, size_t cap);
/* Config check of a template outside compose: every {…} a request source (no calls). */
void compose_check_template(const char *tmpl, const char *jpath, struct cfg_errs *errs);
/* Follows a dot path ("a.b.c", len bytes); NULL when a step is missing. */
json_t *compose_dot_get(json_t *j, const char *path, size_t len);
/* target, allow|deny, mapping, group, in that order: a new reference, NULL when the target
 * is missing or the result is not an object. */
json_t *compose_shape(const struct compose_call *c, json_t *body);
/* Merges src's members into dst: shallow (later wins) or deep (objects recursively,
 * arrays concatenated). */
void compose_merge(json_t *dst, json_t *src, bool deep);

#endif
