/*
 * The HTTP side of transcoding: google.api.http path templates, matching a request to a
 * method, assembling the request message from body, path variables and query parameters,
 * turning response frames into JSON, gRPC framing and status mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"

#define MAX_REQ_SEGS 64

static bool terr(char *err, size_t errlen, const char *tmpl, const char *msg)
{
	snprintf(err, errlen, "path template \"%s\": %s", tmpl, msg);
	return false;
}

static bool add_seg(struct grpc_binding *b, int kind, const char *p, size_t n)
{
	struct tseg *s = realloc(b->segs, (b->nsegs + 1) * sizeof(*s));

	if (!s)
		return false;
	b->segs = s;
	s[b->nsegs].kind = kind;
	s[b->nsegs].lit = kind == TSEG_LIT ? strndup(p, n) : NULL;
	if (kind == TSEG_LIT && !s[b->nsegs].lit)
		return false;
	b->nsegs++;
	return true;
}

/* One segment at *pp (up to '/', '}', ':' or the end). */
static bool parse_seg(struct grpc_binding *b, const char **pp, bool in_var)
{
	const char *p = *pp, *q = p;

	while (*q && *q != '/' && *q != '}' && *q != ':' && *q != '{' && *q != '=')
		q++;
	if (q == p || (!in_var && *q == '}') || *q == '{' || *q == '=')
		return false;
	*pp = q;
	if (q - p == 1 && *p == '*')
		return add_seg(b, TSEG_STAR, NULL, 0);
	if (q - p == 2 && p[0] == '*' && p[1] == '*')
		return add_seg(b, TSEG_DSTAR, NULL, 0);
	for (const char *c = p; c < q; c++)
		if (*c == '*')
			return false;
	return add_seg(b, TSEG_LIT, p, q - p);
}

static bool parse_var(struct grpc_binding *b, const char **pp)
{
	const char *p = *pp + 1, *q = p;
	struct tvar *v;

	while (*q && *q != '=' && *q != '}')
		q++;
	if (q == p || !*q)
		return false;
	v = realloc(b->vars, (b->nvars + 1) * sizeof(*v));
	if (!v)
		return false;
	b->vars = v;
	v = &b->vars[b->nvars++];
	v->field_path = strndup(p, q - p);
	v->start = b->nsegs;
	if (!v->field_path)
		return false;
	if (*q == '}') {
		if (!add_seg(b, TSEG_STAR, NULL, 0))
			return false;
	} else {
		q++;
		for (;;) {
			if (!parse_seg(b, &q, true))
				return false;
			if (*q == '}')
				break;
			if (*q != '/')
				return false;
			q++;
		}
	}
	v->end = b->nsegs;
	*pp = q + 1;
	return true;
}

bool grpc_template_compile(const char *tmpl, struct grpc_binding *b, char *err, size_t errlen)
{
	const char *p = tmpl;

	if (*p != '/')
		return terr(err, errlen, tmpl, "must start with \"/\"");
	p++;
	for (;;) {
		if (*p == '{' ? !parse_var(b, &p) : !parse_seg(b, &p, false))
			return terr(err, errlen, tmpl, "invalid segment");
		if (*p == '/') {
			p++;
			continue;
		}
		if (*p == ':') {
			if (!p[1] || strchr(p + 1, '/') || strchr(p + 1, '{'))
				return terr(err, errlen, tmpl, "invalid verb");
			b->verb = strdup(p + 1);
			if (!b->verb)
				return terr(err, errlen, tmpl, "out of memory");
		} else if (*p) {
			return terr(err, errlen, tmpl, "invalid segment");
		}
		break;
	}
	for (int i = 0; i + 1 < b->nsegs; i++)
		if (b->segs[i].kind == TSEG_DSTAR)
			return terr(err, errlen, tmpl, "\"**\" must be the last segment");
	for (int i = 0; i < b->nvars; i++)
		for (int j = 0; j < i; j++)
			if (!strcmp(b->vars[i].field_path, b->vars[j].field_path))
				return terr(err, errlen, tmpl, "a field bound twice");
	return true;
}

/* ---- field paths over a message's JSON object ---- */

static const struct pb_field *field_named(const struct pb_message *m, const char *name, size_t n)
{
	for (int i = 0; i < m->nfields; i++) {
		const struct pb_field *f = &m->fields[i];

		if ((strlen(f->name) == n && !memcmp(f->name, name, n)) ||
		    (strlen(f->json_name) == n && !memcmp(f->json_name, name, n)))
			return f;
	}
	return NULL;
}

/* Drops every spelling of f's key from obj but returns what was under one of them. */
static json_t *take_field(json_t *obj, const struct pb_field *f)
{
	json_t *v = json_object_get(obj, f->name);

	if (!v)
		v = json_object_get(obj, f->json_name);
	json_incref(v);
	json_object_del(obj, f->name);
	json_object_del(obj, f->json_name);
	return v;
}

/* Sets "a.b.c" of root (a JSON object of message m) from a text value; repeated fields
 * accumulate. */
static bool set_path_value(json_t *root, const struct pb_message *m, const char *fpath,
			   const char *value, char *err, size_t errlen)
{
	const char *p = fpath, *dot;
	const struct pb_field *f;
	json_t *obj = root, *v, *cur;

	for (;;) {
		dot = strchr(p, '.');
		f = field_named(m, p, dot ? (size_t)(dot - p) : strlen(p));
		if (!f) {
			snprintf(err, errlen, "%s: unknown field", fpath);
			return false;
		}
		if (!dot)
			break;
		if (f->type != PB_MESSAGE || f->repeated || f->msg->wkt != WKT_NONE) {
			snprintf(err, errlen, "%s: not a message field", fpath);
			return false;
		}
		cur = take_field(obj, f);
		if (!json_is_object(cur)) {
			json_decref(cur);
			cur = json_object();
		}
		json_object_set_new(obj, f->name, cur);
		obj = cur;
		m = f->msg;
		p = dot + 1;
	}
	if ((f->type == PB_MESSAGE && f->msg->wkt != WKT_WRAPPER && f->msg->wkt != WKT_TIMESTAMP &&
	     f->msg->wkt != WKT_DURATION && f->msg->wkt != WKT_FIELD_MASK) ||
	    (f->repeated && f->type == PB_MESSAGE && f->msg->map_entry)) {
		snprintf(err, errlen, "%s: not a scalar field", fpath);
		return false;
	}
	bool is_bool = f->type == PB_BOOL ||
		       (f->type == PB_MESSAGE && f->msg->nfields == 1 &&
			f->msg->wkt == WKT_WRAPPER && f->msg->fields[0].type == PB_BOOL);
	if (is_bool && strcmp(value, "true") && strcmp(value, "false")) {
		snprintf(err, errlen, "%s: not a boolean", fpath);
		return false;
	}
	v = is_bool ? json_boolean(!strcmp(value, "true")) : json_string(value);
	if (!v) {
		snprintf(err, errlen, "%s: not UTF-8", fpath);
		return false;
	}
	cur = take_field(obj, f);
	if (f->repeated) {
		if (!json_is_array(cur)) {
			json_decref(cur);
			cur = json_array();
		}
		json_array_append_new(cur, v);
		v = cur;
	} else {
		json_decref(cur);
	}
	return !json_object_set_new(obj, f->name, v);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 32) >= 'a' && (c | 32) <= 'f')
		return (c | 32) - 'a' + 10;
	return -1;
}

/* Percent-decodes n bytes into a new string; keep_slash leaves %2F encoded (multi-segment
 * variables); plus: '+' is a space (query strings). */
static char *pct_decode(const char *p, size_t n, bool keep_slash, bool plus)
{
	char *s = malloc(n + 1), *o = s;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (p[i] == '%' && i + 2 < n &&
		    (hi = hexval(p[i + 1])) >= 0 && (lo = hexval(p[i + 2])) >= 0 &&
		    !(keep_slash && hi == 2 && lo == 15)) {
			*o++ = hi << 4 | lo;
			i += 2;
		} else {
			*o++ = plus && p[i] == '+' ? ' ' : p[i];
		}
	}
	*o = '\0';
	return s;
}

/* ---- matching ---- */

static bool method_ok(const struct grpc_binding *b, const char *method)
{
	return !strcmp(b->method_name, "*") || !strcmp(b->method_name, method);
}

/* Splits path into segments (pointers into it); -1 when there are too many. */
static int split_path(const char *p, size_t n, const char **seg, size_t *len)
{
	int k = 0;
	size_t i = 1, start = 1;

	if (!n || p[0] != '/')
		return -1;
	if (n == 1)
		return 0;
	for (; i <= n; i++) {
		if (i < n && p[i] != '/')
			continue;
		if (k == MAX_REQ_SEGS)
			return -1;
		seg[k] = p + start;
		len[k++] = i - start;
		start = i + 1;
	}
	return k;
}

static bool match_binding(const struct grpc_binding *b, const char *path, size_t n,
			  struct grpc_match *m)
{
	const char *seg[MAX_REQ_SEGS];
	size_t len[MAX_REQ_SEGS];
	int k, i;

	if (b->verb) {
		size_t vl = strlen(b->verb);

		if (n < vl + 2 || path[n - vl - 1] != ':' || memcmp(path + n - vl, b->verb, vl))
			return false;
		n -= vl + 1;
	}
	k = split_path(path, n, seg, len);
	if (k < 0)
		return false;
	for (i = 0; i < b->nsegs; i++) {
		if (b->segs[i].kind == TSEG_DSTAR)
			break;
		if (i >= k)
			return false;
		if (b->segs[i].kind == TSEG_LIT &&
		    (strlen(b->segs[i].lit) != len[i] || memcmp(b->segs[i].lit, seg[i], len[i])))
			return false;
		if (b->segs[i].kind == TSEG_STAR && !len[i])
			return false;
	}
	if (i == b->nsegs && i != k)
		return false;
	if (!m)
		return true;
	m->b = b;
	m->nvalues = 0;
	for (int v = 0; v < b->nvars && v < 16; v++) {
		int s = b->vars[v].start, e = b->vars[v].end;
		bool multi;

		if (e == b->nsegs && b->segs[e - 1].kind == TSEG_DSTAR)
			e = k;
		multi = e - s != 1;
		if (s >= k) {
			m->values[m->nvalues++] = strdup("");
		} else {
			const char *from = seg[s];
			size_t l = e > s ? (size_t)(seg[e - 1] + len[e - 1] - from) : 0;

			m->values[m->nvalues++] = pct_decode(from, l, multi, false);
		}
		if (!m->values[m->nvalues - 1]) {
			grpc_match_clear(m);
			return false;
		}
	}
	return true;
}

enum grpc_match_result grpc_match(const struct grpc_pool *pool, const char *method,
				  const char *path, size_t path_len, struct grpc_match *m)
{
	bool other_method = false;

	memset(m, 0, sizeof(*m));
	for (int i = 0; i < pool->nbindings; i++) {
		const struct grpc_binding *b = &pool->bindings[i];

		if (!method_ok(b, method)) {
			other_method = other_method || match_binding(b, path, path_len, NULL);
			continue;
		}
		if (match_binding(b, path, path_len, m))
			return GRPC_MATCH;
	}
	return other_method ? GRPC_BAD_METHOD : GRPC_NO_MATCH;
}

void grpc_match_clear(struct grpc_match *m)
{
	for (int i = 0; i < m->nvalues; i++)
		free(m->values[i]);
	m->nvalues = 0;
}

/* ---- request and response messages ---- */

static bool apply_query(json_t *root, const struct pb_message *in, const char *q, char *err,
			size_t errlen)
{
	while (q && *q) {
		const char *amp = strchr(q, '&'), *eq;
		size_t n = amp ? (size_t)(amp - q) : strlen(q);
		char *key, *val;
		bool ok;

		eq = memchr(q, '=', n);
		if (n) {
			key = pct_decode(q, eq ? (size_t)(eq - q) : n, false, true);
			val = pct_decode(eq ? eq + 1 : q + n, eq ? n - (eq - q) - 1 : 0, false, true);
			ok = key && val && set_path_value(root, in, key, val, err, errlen);
			if (key && val && !ok) {
				char tmp[256];

				snprintf(tmp, sizeof(tmp), "query parameter %s", err);
				snprintf(err, errlen, "%s", tmp);
			} else if (!ok) {
				snprintf(err, errlen, "out of memory");
			}
			free(key);
			free(val);
			if (!ok)
				return false;
		}
		q = amp ? amp + 1 : NULL;
	}
	return true;
}

static json_t *request_root(const struct grpc_binding *b, const char *body, size_t body_len,
			    char *err, size_t errlen)
{
	const struct pb_message *in = b->method->in;
	json_error_t je;
	json_t *j, *root;
	const struct pb_field *f;

	if (!b->body || !body_len)
		return json_object();
	j = json_loadb(body, body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		snprintf(err, errlen, "body is not JSON: %s", je.text);
		return NULL;
	}
	if (!strcmp(b->body, "*")) {
		if (!json_is_object(j)) {
			snprintf(err, errlen, "body: not an object");
			json_decref(j);
			return NULL;
		}
		return j;
	}
	f = field_named(in, b->body, strlen(b->body));
	root = json_object();
	if (!f || !root) {
		snprintf(err, errlen, "body field %s: unknown", b->body);
		json_decref(j);
		json_decref(root);
		return NULL;
	}
	json_object_set_new(root, f->name, j);
	return root;
}

bool grpc_build_request(const struct grpc_match *m, const char *body, size_t body_len,
			const char *query, char **out, size_t *out_len, char *err,
			size_t errlen)
{
	const struct grpc_binding *b = m->b;
	json_t *root = request_root(b, body, body_len, err, errlen);
	bool ok = root != NULL;

	for (int i = 0; ok && i < m->nvalues; i++) {
		ok = set_path_value(root, b->method->in, b->vars[i].field_path, m->values[i], err,
				    errlen);
		if (!ok) {
			char tmp[256];

			snprintf(tmp, sizeof(tmp), "path variable %s", err);
			snprintf(err, errlen, "%s", tmp);
		}
	}
	if (ok)
		ok = apply_query(root, b->method->in, query, err, errlen);
	if (ok)
		ok = grpc_json_to_pb(b->method->in, root, out, out_len, err, errlen);
	json_decref(root);
	return ok;
}

static json_t *response_json(const struct grpc_binding *b, const char *msg, size_t n, char *err,
			     size_t errlen)
{
	const struct pb_message *out = b->method->out;
	const struct pb_field *f;
	json_t *j = grpc_pb_to_json(out, msg, n, err, errlen), *v;

	if (!j || !b->response_body)
		return j;
	f = field_named(out, b->response_body, strlen(b->response_body));
	v = f ? json_object_get(j, f->json_name) : NULL;
	if (v)
		json_incref(v);
	else if (f && f->repeated)
		v = f->msg && f->msg->map_entry ? json_object() : json_array();
	else if (f && f->type == PB_MESSAGE)
		v = json_object();
	else
		v = json_null();
	json_decref(j);
	return v;
}

char *grpc_build_response(const struct grpc_binding *b, const char *frames, size_t len,
			  char *err, size_t errlen)
{
	const char *msg;
	size_t off = 0, mlen;
	json_t *all = b->method->server_streaming ? json_array() : NULL, *one = NULL;
	char *text = NULL;
	int r, count = 0;

	while ((r = grpc_next_frame(frames, len, &off, &msg, &mlen)) == 1) {
		json_t *j = response_json(b, msg, mlen, err, errlen);

		if (!j)
			goto out;
		count++;
		if (all) {
			json_array_append_new(all, j);
		} else {
			json_decref(one);
			one = j;
		}
	}
	if (r < 0) {
		snprintf(err, errlen, "malformed or compressed gRPC frame");
		goto out;
	}
	if (!all && count != 1) {
		snprintf(err, errlen, "%d response messages for a unary call", count);
		goto out;
	}
	text = json_dumps(all ? all : one, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!text)
		snprintf(err, errlen, "out of memory");
out:
	json_decref(all);
	json_decref(one);
	return text;
}

/* ---- framing, status ---- */

char *grpc_frame(const char *msg, size_t len, size_t *out_len)
{
	char *f;

	if (len > UINT32_MAX || !(f = malloc(len + 5)))
		return NULL;
	f[0] = 0;
	f[1] = len >> 24;
	f[2] = len >> 16;
	f[3] = len >> 8;
	f[4] = len;
	memcpy(f + 5, msg, len);
	*out_len = len + 5;
	return f;
}

int grpc_next_frame(const char *p, size_t len, size_t *off, const char **msg, size_t *mlen)
{
	const unsigned char *u = (const unsigned char *)p + *off;
	size_t left = len - *off, n;

	if (!left)
		return 0;
	if (left < 5 || u[0] != 0)
		return -1;
	n = (size_t)u[1] << 24 | (size_t)u[2] << 16 | (size_t)u[3] << 8 | u[4];
	if (n > left - 5)
		return -1;
	*msg = (const char *)u + 5;
	*mlen = n;
	*off += 5 + n;
	return 1;
}

int grpc_status_to_http(int code)
{
	static const int map[] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
				  400, 409, 400, 501, 500, 503, 500, 401};

	return code >= 0 && code < (int)(sizeof(map) / sizeof(map[0])) ? map[code] : 500;
}

void grpc_message_decode(const char *p, size_t n, char *out, size_t cap)
{
	char *s = pct_decode(p, n, false, false);
	size_t i = 0;

	if (!cap)
		return;
	/* control bytes would break the JSON error body's single line */
	for (const char *c = s ? s : ""; *c && i + 1 < cap; c++)
		out[i++] = (unsigned char)*c < 0x20 ? ' ' : *c;
	out[i] = '\0';
	free(s);
}

/* ---- base64 ---- */

char *grpc_b64_encode(const unsigned char *p, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);

		*o++ = t[v >> 18];
		*o++ = t[(v >> 12) & 63];
		*o++ = i + 1 < n ? t[(v >> 6) & 63] : '=';
		*o++ = i + 2 < n ? t[v & 63] : '=';
	}
	*o = '\0';
	return s;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

bool grpc_b64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len)
{
	unsigned char *o = malloc(n / 4 * 3 + 3);
	uint32_t acc = 0;
	size_t k = 0;
	int bits = 0;

	if (!o)
		return false;
	while (n && s[n - 1] == '=')
		n--;
	for (size_t i = 0; i < n; i++) {
		int v = b64val(s[i]);

		if (v < 0) {
			free(o);
			return false;
		}
		acc = acc << 6 | v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[k++] = acc >> bits;
		}
	}
	if (n % 4 == 1) {
		free(o);
		return false;
	}
	*out = o;
	*out_len = k;
	return true;
}

/* ---- selecting services ---- */

static bool add_binding(struct grpc_pool *pool, const struct grpc_binding *src, char *err,
			size_t errlen)
{
	struct grpc_binding *arr = realloc(pool->bindings, (pool->nbindings + 1) * sizeof(*arr));
	struct grpc_binding *b;

	if (!arr) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	pool->bindings = arr;
	b = &arr[pool->nbindings++];
	memset(b, 0, sizeof(*b));
	b->method = src->method;
	b->method_name = strdup(src->method_name);
	b->tmpl = strdup(src->tmpl);
	b->body = src->body ? strdup(src->body) : NULL;
	b->response_body = src->response_body ? strdup(src->response_body) : NULL;
	if (!b->method_name || !b->tmpl || (src->body && !b->body) ||
	    (src->response_body && !b->response_body)) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (!grpc_template_compile(b->tmpl, b, err, errlen))
		return false;
	for (int i = 0; i < b->nvars; i++) {
		const struct pb_message *m = b->method->in;
		const char *p = b->vars[i].field_path, *dot;
		const struct pb_field *f = NULL;

		for (; m; p = dot + 1) {
			dot = strchr(p, '.');
			f = field_named(m, p, dot ? (size_t)(dot - p) : strlen(p));
			if (!f || !dot)
				break;
			m = f->type == PB_MESSAGE ? f->msg : NULL;
		}
		if (!f) {
			snprintf(err, errlen, "%s: path template \"%s\": %s is not a field of %s",
				 b->method->path, b->tmpl, b->vars[i].field_path,
				 b->method->in->full_name);
			return false;
		}
	}
	if (b->body && strcmp(b->body, "*") &&
	    !field_named(b->method->in, b->body, strlen(b->body))) {
		snprintf(err, errlen, "%s: body \"%s\" is not a field of %s", b->method->path,
			 b->body, b->method->in->full_name);
		return false;
	}
	return true;
}

bool grpc_pool_select(struct grpc_pool *pool, const char *const *services, int n, char *err,
		      size_t errlen)
{
	for (int i = 0; i < n; i++) {
		const struct grpc_service *s = grpc_find_service(pool, services[i]);

		if (!s) {
			snprintf(err, errlen, "service \"%s\" is not in the descriptor set",
				 services[i]);
			return false;
		}
		for (int j = 0; j < s->nrules; j++)
			if (!add_binding(pool, &s->rules[j], err, errlen))
				return false;
		for (int j = 0; j < s->nmethods; j++) {
			struct grpc_binding def = {.method = &s->methods[j],
						   .method_name = "POST",
						   .tmpl = s->methods[j].path,
						   .body = "*"};

			if (!add_binding(pool, &def, err, errlen))
				return false;
		}
	}
	return true;
}
