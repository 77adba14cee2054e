/* Transformation policy parsing and the header, query and path edits of one message. */
#include <ctype.h>
#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transform/transform.h"

/* Stream edit slots one route may use (a remove or an add is one, a rename or a set two):
 * the rest of STREAM_MAX_RESP_EDITS stays for CORS and renames of repeated headers. */
#define TRANSFORM_MAX_OPS 16

static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

/* Printable (or tab) only: a CR or LF would let a value inject header lines. */
static bool is_field_value(const char *s)
{
	for (; *s; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return false;
	return true;
}

/* Request headers the gateway writes itself (framing, routing, forwarding): an edit of
 * them would be dropped when the head is built, so it is a config error instead. */
static bool gateway_header(const char *name)
{
	static const char *const names[] = {
		"host",		   "content-length",	"transfer-encoding", "connection",
		"keep-alive",	   "te",		"upgrade",	     "expect",
		"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",  "x-forwarded-port",
		"forwarded",	   "x-real-ip",		"x-request-id",	     "proxy-connection",
		"trailer",	   "http2-settings",	NULL};

	for (int i = 0; names[i]; i++)
		if (!strcasecmp(name, names[i]))
			return true;
	return false;
}

/* {"Name": "value"} for rename / set / add; rename values are header names. */
static void parse_pairs(json_t *h, const char *key, const char *path, bool value_is_name,
			bool templates, struct transform_pair **out, int *n, struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	json_t *o = cfg_get_object(h, key, path, errs), *v;
	const char *name;

	if (!o)
		return;
	cfg_path_key(p, path, key);
	*out = calloc(json_object_size(o) + 1, sizeof(**out));
	if (!*out) {
		cfg_err(errs, p, "out of memory");
		return;
	}
	json_object_foreach(o, name, v)
	{
		cfg_path_key(ip, p, name);
		if (!is_token(name)) {
			cfg_err(errs, ip, "is not a valid header name");
			continue;
		}
		if (!json_is_string(v)) {
			cfg_err(errs, ip, "must be a string");
			continue;
		}
		if (value_is_name ? !is_token(json_string_value(v))
				  : !is_field_value(json_string_value(v))) {
			cfg_err(errs, ip, "\"%s\" is not a valid header %s", json_string_value(v),
				value_is_name ? "name" : "value");
			continue;
		}
		/* Response templates ({consumer}, ...) are not expanded: refuse rather than
		 * send the braces literally and change meaning once they are. */
		if (!value_is_name && !templates && strchr(json_string_value(v), '{')) {
			cfg_err(errs, ip, "templates are not supported in response headers");
			continue;
		}
		if (!value_is_name && templates)
			compose_check_template(json_string_value(v), ip, errs);
		if (templates && (gateway_header(name) ||
				  (value_is_name && gateway_header(json_string_value(v))))) {
			cfg_err(errs, ip, "\"%s\" is set by the gateway",
				gateway_header(name) ? name : json_string_value(v));
			continue;
		}
		(*out)[*n].name = strdup(name);
		(*out)[*n].value = strdup(json_string_value(v));
		(*n)++;
	}
}

static void parse_headers(json_t *h, const char *path, bool request,
			  struct transform_headers *th, struct cfg_errs *errs)
{
	static const char *const keys[] = {"remove", "rename", "set", "add", NULL};
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];

	cfg_check_keys(h, path, keys, errs);
	if (cfg_get_strings(h, "remove", path, false, &th->remove, &th->nremove, errs))
		for (int i = 0; i < th->nremove; i++)
			if (!is_token(th->remove[i]))
				cfg_err(errs, cfg_path_idx(ip, cfg_path_key(p, path, "remove"), i),
					"is not a valid header name");
	parse_pairs(h, "rename", path, true, request, &th->rename, &th->nrename, errs);
	parse_pairs(h, "set", path, false, request, &th->set, &th->nset, errs);
	parse_pairs(h, "add", path, false, request, &th->add, &th->nadd, errs);
	if (th->nremove + 2 * th->nrename + 2 * th->nset + th->nadd > TRANSFORM_MAX_OPS)
		cfg_err(errs, path,
			"at most %d header edits (remove and add count 1, rename and set 2)",
			TRANSFORM_MAX_OPS);
}

/* Query parameter names and literal parts of values: unreserved characters only, so what
 * goes upstream never needs escaping the config did not do. */
static bool is_query_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-._~", *s))
			return false;
	return true;
}

static void parse_query(json_t *q, const char *path, struct transform_policy *tp,
			struct cfg_errs *errs)
{
	static const char *const keys[] = {"remove", "set", NULL};
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	json_t *o, *v;
	const char *name;

	cfg_check_keys(q, path, keys, errs);
	if (cfg_get_strings(q, "remove", path, false, &tp->qremove, &tp->nqremove, errs))
		for (int i = 0; i < tp->nqremove; i++)
			if (!is_query_name(tp->qremove[i]))
				cfg_err(errs, cfg_path_idx(ip, cfg_path_key(p, path, "remove"), i),
					"is not a plain query parameter name");
	o = cfg_get_object(q, "set", path, errs);
	if (!o)
		return;
	cfg_path_key(p, path, "set");
	tp->qset = calloc(json_object_size(o) + 1, sizeof(*tp->qset));
	if (!tp->qset) {
		cfg_err(errs, p, "out of memory");
		return;
	}
	json_object_foreach(o, name, v)
	{
		cfg_path_key(ip, p, name);
		if (!is_query_name(name)) {
			cfg_err(errs, ip, "is not a plain query parameter name");
			continue;
		}
		if (!json_is_string(v)) {
			cfg_err(errs, ip, "must be a string");
			continue;
		}
		compose_check_template(json_string_value(v), ip, errs);
		tp->qset[tp->nqset].name = strdup(name);
		tp->qset[tp->nqset].value = strdup(json_string_value(v));
		tp->nqset++;
	}
}

/* The highest $N / ${N} group `to` names (-1 on a '$' that is not one). */
static int max_group(const char *to)
{
	int max = 0;

	for (const char *s = to; (s = strchr(s, '$')); ) {
		bool brace = s[1] == '{';
		const char *d = s + 1 + brace;
		char *end;
		long n;

		if (s[1] == '$') {
			s += 2;
			continue;
		}
		if (!isdigit((unsigned char)*d))
			return -1;
		n = strtol(d, &end, 10);
		if (brace && *end != '}')
			return -1;
		if (n > max)
			max = n > 1000 ? 1000 : (int)n;
		s = end + brace;
	}
	return max;
}

static void parse_path(json_t *o, const char *path, struct transform_policy *tp,
		       struct cfg_errs *errs)
{
	static const char *const keys[] = {"from", "to", NULL};
	char p[CFG_PATH_MAX];
	char *from = NULL;
	PCRE2_UCHAR msg[160];
	PCRE2_SIZE off;
	uint32_t groups = 0;
	int code, mg;

	cfg_check_keys(o, path, keys, errs);
	if (!cfg_get_str(o, "from", path, NULL, &from, errs) || !from) {
		cfg_err(errs, cfg_path_key(p, path, "from"), "must be a regular expression");
		free(from);
		return;
	}
	tp->path_re = pcre2_compile((PCRE2_SPTR)from, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
	if (!tp->path_re) {
		pcre2_get_error_message(code, msg, sizeof(msg));
		cfg_err(errs, cfg_path_key(p, path, "from"), "invalid regular expression at %zu: %s",
			(size_t)off, (char *)msg);
	} else {
		pcre2_pattern_info(tp->path_re, PCRE2_INFO_CAPTURECOUNT, &groups);
	}
	free(from);
	if (!cfg_get_str(o, "to", path, NULL, &tp->path_to, errs) || !tp->path_to) {
		cfg_err(errs, cfg_path_key(p, path, "to"), "must be a string");
		return;
	}
	cfg_path_key(p, path, "to");
	mg = max_group(tp->path_to);
	if (tp->path_to[0] != '/')
		cfg_err(errs, p, "must start with \"/\"");
	else if (mg < 0)
		cfg_err(errs, p, "\"$\" must name a group ($1, ${1}) or be \"$$\"");
	else if (tp->path_re && (uint32_t)mg > groups)
		cfg_err(errs, p, "names group $%d but \"from\" has %u", mg, groups);
}

/* A dot path: non-empty segments. */
static bool is_dot_path(const char *s)
{
	if (!*s || *s == '.' || s[strlen(s) - 1] == '.' || strstr(s, ".."))
		return false;
	return true;
}

static void check_dot_paths(char **v, int n, const char *path, const char *key,
			    struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];

	for (int i = 0; i < n; i++)
		if (!is_dot_path(v[i]))
			cfg_err(errs, cfg_path_idx(ip, cfg_path_key(p, path, key), i),
				"is not a dot path");
}

static void parse_body(json_t *o, const char *path, bool response, struct transform_body *b,
		       struct cfg_errs *errs)
{
	static const char *const keys[] = {"remove", "rename", "set", NULL};
	static const char *const rkeys[] = {"target", "allow", "deny",
					    "remove", "rename", "set", NULL};
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	json_t *m, *v;
	const char *k;

	cfg_check_keys(o, path, response ? rkeys : keys, errs);
	b->active = true;
	if (response) {
		cfg_get_str(o, "target", path, NULL, &b->shape.target, errs);
		if (b->shape.target && !is_dot_path(b->shape.target))
			cfg_err(errs, cfg_path_key(p, path, "target"), "is not a dot path");
		cfg_get_strings(o, "allow", path, false, &b->shape.allow, &b->shape.nallow, errs);
		cfg_get_strings(o, "deny", path, false, &b->shape.deny, &b->shape.ndeny, errs);
		if (b->shape.nallow && b->shape.ndeny)
			cfg_err(errs, cfg_path_key(p, path, "deny"),
				"\"allow\" and \"deny\" exclude each other");
		check_dot_paths(b->shape.allow, b->shape.nallow, path, "allow", errs);
		check_dot_paths(b->shape.deny, b->shape.ndeny, path, "deny", errs);
	}
	cfg_get_strings(o, "remove", path, false, &b->remove, &b->nremove, errs);
	check_dot_paths(b->remove, b->nremove, path, "remove", errs);
	if ((m = cfg_get_object(o, "rename", path, errs))) {
		cfg_path_key(p, path, "rename");
		b->rename = calloc(json_object_size(m) + 1, sizeof(*b->rename));
		json_object_foreach(m, k, v)
		{
			cfg_path_key(ip, p, k);
			if (!is_dot_path(k) || !json_is_string(v) ||
			    !is_dot_path(json_string_value(v))) {
				cfg_err(errs, ip, "must map a dot path to a dot path");
				continue;
			}
			b->rename[b->nrename].name = strdup(k);
			b->rename[b->nrename].value = strdup(json_string_value(v));
			b->nrename++;
		}
	}
	if ((m = cfg_get_object(o, "set", path, errs))) {
		cfg_path_key(p, path, "set");
		b->set_path = calloc(json_object_size(m) + 1, sizeof(*b->set_path));
		b->set_value = calloc(json_object_size(m) + 1, sizeof(*b->set_value));
		json_object_foreach(m, k, v)
		{
			if (!is_dot_path(k)) {
				cfg_err(errs, cfg_path_key(ip, p, k), "is not a dot path");
				continue;
			}
			b->set_path[b->nset] = strdup(k);
			b->set_value[b->nset] = json_deep_copy(v);
			b->nset++;
		}
	}
}

static void parse_request(json_t *r, const char *path, struct transform_policy *tp,
			  struct cfg_errs *errs)
{
	static const char *const keys[] = {"headers", "query", "path", "body", "body_format", NULL};
	static const char *const formats[] = {"json", "xml", NULL};
	char p[CFG_PATH_MAX];
	int f = 0;
	json_t *o;

	cfg_check_keys(r, path, keys, errs);
	cfg_get_enum(r, "body_format", path, formats, 0, &f, errs);
	tp->req_format = f ? TRANSFORM_FORMAT_XML : TRANSFORM_FORMAT_JSON;
	if ((o = cfg_get_object(r, "headers", path, errs)))
		parse_headers(o, cfg_path_key(p, path, "headers"), true, &tp->req, errs);
	if ((o = cfg_get_object(r, "query", path, errs)))
		parse_query(o, cfg_path_key(p, path, "query"), tp, errs);
	if ((o = cfg_get_object(r, "path", path, errs)))
		parse_path(o, cfg_path_key(p, path, "path"), tp, errs);
	if ((o = cfg_get_object(r, "body", path, errs)))
		parse_body(o, cfg_path_key(p, path, "body"), false, &tp->req_body, errs);
}

static void parse_response(json_t *r, const char *path, struct transform_policy *tp,
			   struct cfg_errs *errs)
{
	static const char *const keys[] = {"headers", "body", "body_format", NULL};
	static const char *const formats[] = {"json", "negotiate", NULL};
	char p[CFG_PATH_MAX];
	int f = 0;
	json_t *o;

	cfg_check_keys(r, path, keys, errs);
	cfg_get_enum(r, "body_format", path, formats, 0, &f, errs);
	tp->resp_format = f ? TRANSFORM_FORMAT_NEGOTIATE : TRANSFORM_FORMAT_JSON;
	if ((o = cfg_get_object(r, "headers", path, errs)))
		parse_headers(o, cfg_path_key(p, path, "headers"), false, &tp->resp, errs);
	if ((o = cfg_get_object(r, "body", path, errs)))
		parse_body(o, cfg_path_key(p, path, "body"), true, &tp->resp_body, errs);
}

struct transform_policy *transform_policy_parse(json_t *o, const char *path, struct cfg_errs *errs)
{
	static const char *const keys[] = {"request", "response", NULL};
	char p[CFG_PATH_MAX];
	struct transform_policy *tp;
	size_t before = errs->len;
	json_t *r;

	if (!json_is_object(o)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	/* body_format: libxml2 sets its globals up once, here on the loading thread, before
	 * workers parse with it */
	xmlInitParser();
	cfg_check_keys(o, path, keys, errs);
	tp = calloc(1, sizeof(*tp));
	if (!tp) {
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	if ((r = cfg_get_object(o, "request", path, errs)))
		parse_request(r, cfg_path_key(p, path, "request"), tp, errs);
	if ((r = cfg_get_object(o, "response", path, errs)))
		parse_response(r, cfg_path_key(p, path, "response"), tp, errs);
	if (errs->len != before) {
		transform_policy_free(tp);
		return NULL;
	}
	return tp;
}

static void pairs_free(struct transform_pair *v, int n)
{
	for (int i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].value);
	}
	free(v);
}

static void headers_free(struct transform_headers *h)
{
	cfg_strings_free(h->remove, h->nremove);
	pairs_free(h->rename, h->nrename);
	pairs_free(h->set, h->nset);
	pairs_free(h->add, h->nadd);
}

static void body_free(struct transform_body *b)
{
	free(b->shape.target);
	cfg_strings_free(b->shape.allow, b->shape.nallow);
	cfg_strings_free(b->shape.deny, b->shape.ndeny);
	cfg_strings_free(b->remove, b->nremove);
	pairs_free(b->rename, b->nrename);
	for (int i = 0; i < b->nset; i++) {
		free(b->set_path[i]);
		json_decref(b->set_value[i]);
	}
	free(b->set_path);
	free(b->set_value);
}

void transform_policy_free(struct transform_policy *p)
{
	if (!p)
		return;
	headers_free(&p->req);
	headers_free(&p->resp);
	cfg_strings_free(p->qremove, p->nqremove);
	pairs_free(p->qset, p->nqset);
	pcre2_code_free(p->path_re);
	free(p->path_to);
	body_free(&p->req_body);
	body_free(&p->resp_body);
	free(p);
}

static bool dropped(const struct transform_edits *e, struct http_str name)
{
	for (int i = 0; i < e->ndrop; i++)
		if (http_str_eq_nocase(name, e->drop[i]))
			return true;
	return false;
}

/* A later remove / set also cancels lines an earlier op (a rename) was going to write. */
static void drop(struct transform_edits *e, const char *name)
{
	int k = 0;

	for (int i = 0; i < e->nadd; i++)
		if (strcasecmp(e->add[i].name, name))
			e->add[k++] = e->add[i];
	e->nadd = k;
	if (e->ndrop < TRANSFORM_MAX_EDITS)
		e->drop[e->ndrop++] = name;
}

static void add(struct transform_edits *e, const char *name, struct http_str value)
{
	if (e->nadd == TRANSFORM_MAX_EDITS)
		return;
	e->add[e->nadd].name = name;
	e->add[e->nadd].value = value;
	e->nadd++;
}

static struct http_str str(const char *s)
{
	return (struct http_str){s, strlen(s)};
}

static void rename_one(struct transform_edits *e, const struct transform_pair *r,
		       const struct http_header *hdrs, int nhdrs)
{
	struct transform_edits before = *e;

	drop(e, r->name);
	for (int i = 0; i < nhdrs; i++)
		if (http_str_eq_nocase(hdrs[i].name, r->name) && !dropped(&before, hdrs[i].name))
			add(e, r->value, hdrs[i].value);
}

void transform_resp_headers(const struct transform_headers *h, const struct http_header *hdrs,
			    int nhdrs, struct transform_edits *out)
{
	out->ndrop = 0;
	out->nadd = 0;
	for (int i = 0; i < h->nremove; i++)
		drop(out, h->remove[i]);
	for (int i = 0; i < h->nrename; i++)
		rename_one(out, &h->rename[i], hdrs, nhdrs);
	for (int i = 0; i < h->nset; i++) {
		drop(out, h->set[i].name);
		add(out, h->set[i].name, str(h->set[i].value));
	}
	for (int i = 0; i < h->nadd; i++)
		add(out, h->add[i].name, str(h->add[i].value));
}

/* A set / add template expanded into out->values; false when it cannot be filled. */
static bool expand_value(struct transform_edits *out, const char *tmpl,
			 const struct compose_vars *vars, struct http_str *val)
{
	char *dst = out->values + out->values_used;
	size_t room = sizeof(out->values) - out->values_used;

	if (!compose_expand_raw(tmpl, vars, dst, room) || !is_field_value(dst))
		return false;
	val->p = dst;
	val->len = strlen(dst);
	out->values_used += val->len + 1;
	return true;
}

void transform_req_headers(const struct transform_headers *h, const struct http_header *hdrs,
			   int nhdrs, const struct compose_vars *vars, struct transform_edits *out)
{
	struct http_str v;

	out->ndrop = 0;
	out->nadd = 0;
	out->values_used = 0;
	for (int i = 0; i < h->nremove; i++)
		drop(out, h->remove[i]);
	for (int i = 0; i < h->nrename; i++)
		rename_one(out, &h->rename[i], hdrs, nhdrs);
	for (int i = 0; i < h->nset; i++) {
		drop(out, h->set[i].name);
		if (expand_value(out, h->set[i].value, vars, &v))
			add(out, h->set[i].name, v);
	}
	for (int i = 0; i < h->nadd; i++)
		if (expand_value(out, h->add[i].value, vars, &v))
			add(out, h->add[i].name, v);
}

static bool put(char **o, const char *end, const char *s, size_t n)
{
	if ((size_t)(end - *o) < n)
		return false;
	memcpy(*o, s, n);
	*o += n;
	return true;
}

static bool named(const struct transform_policy *p, const char *name, size_t n)
{
	for (int i = 0; i < p->nqremove; i++)
		if (strlen(p->qremove[i]) == n && !memcmp(p->qremove[i], name, n))
			return true;
	for (int i = 0; i < p->nqset; i++)
		if (strlen(p->qset[i].name) == n && !memcmp(p->qset[i].name, name, n))
			return true;
	return false;
}

bool transform_query(const struct transform_policy *p, struct http_str query,
		     const struct compose_vars *vars, char *out, size_t cap, size_t *len)
{
	const char *s = query.p, *qend = query.p + query.len, *amp, *eq;
	char *o = out, *end = out + cap, val[1024];

	/* the client's parameters in order, without those removed or set */
	for (; query.len && s <= qend; s = amp + 1) {
		amp = memchr(s, '&', qend - s);
		if (!amp)
			amp = qend;
		eq = memchr(s, '=', amp - s);
		if (amp == s || named(p, s, (eq ? eq : amp) - s))
			continue;
		if ((o > out && !put(&o, end, "&", 1)) || !put(&o, end, s, amp - s))
			return false;
	}
	for (int i = 0; i < p->nqset; i++) {
		if (!compose_expand(p->qset[i].value, vars, val, sizeof(val)))
			continue; /* nothing to fill it with: the parameter is left out */
		if ((o > out && !put(&o, end, "&", 1)) ||
		    !put(&o, end, p->qset[i].name, strlen(p->qset[i].name)) ||
		    !put(&o, end, "=", 1) || !put(&o, end, val, strlen(val)))
			return false;
	}
	*len = o - out;
	return true;
}

int transform_path(const struct transform_policy *p, const char *path, size_t len, char *out,
		   size_t cap, size_t *out_len)
{
	PCRE2_SIZE n = cap;
	ssize_t k;
	int rc;

	rc = pcre2_substitute(p->path_re, (PCRE2_SPTR)path, len, 0, 0, NULL, NULL,
			      (PCRE2_SPTR)p->path_to, PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)out,
			      &n);
	if (rc == 0)
		return 1;
	if (rc < 0 || !n || out[0] != '/')
		return -1;
	/* The result goes on the request line: no byte that would end or split it, and
	 * it is normalised like a client path (no "..", no encoded '/'). */
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = out[i];

		if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#')
			return -1;
	}
	k = http_path_normalize(out, n);
	if (k <= 0)
		return -1;
	*out_len = k;
	return 0;
}
