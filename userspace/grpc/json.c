/*
 * Proto3 JSON mapping: JSON -> wire format (grpc_json_to_pb) and back (grpc_pb_to_json),
 * directed by the message descriptors. Errors name the field path ("a.b[2]: ...").
 */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpc/grpc.h"
#include "grpc/wire.h"

#define MAX_DEPTH 64
#define PATH_CAP 256

struct enc {
	char *err;
	size_t errlen;
	bool failed;
};

static bool fail(struct enc *e, const char *path, const char *msg)
{
	if (!e->failed)
		snprintf(e->err, e->errlen, "%s: %s", *path ? path : "(message)", msg);
	e->failed = true;
	return false;
}

static const char *sub_path(char *out, const char *base, const char *key)
{
	if (snprintf(out, PATH_CAP, "%s%s%s", base, *base ? "." : "", key) >= PATH_CAP)
		out[PATH_CAP - 2] = '~'; /* a cut path still says where */
	return out;
}

static const char *idx_path(char *out, const char *base, size_t i)
{
	if (snprintf(out, PATH_CAP, "%s[%zu]", base, i) >= PATH_CAP)
		out[PATH_CAP - 2] = '~';
	return out;
}

static const struct pb_field *field_by_name(const struct pb_message *m, const char *name)
{
	for (int i = 0; i < m->nfields; i++)
		if (!strcmp(m->fields[i].json_name, name) || !strcmp(m->fields[i].name, name))
			return &m->fields[i];
	return NULL;
}

static const struct pb_field *field_by_number(const struct pb_message *m, uint32_t n)
{
	for (int i = 0; i < m->nfields; i++)
		if (m->fields[i].number == n)
			return &m->fields[i];
	return NULL;
}

static bool is_map(const struct pb_field *f)
{
	return f->repeated && f->type == PB_MESSAGE && f->msg->map_entry && f->msg->nfields == 2;
}

/* ---- JSON -> wire ---- */

static bool parse_i64(const char *s, int64_t *out)
{
	char *end;

	errno = 0;
	if (!*s || *s == ' ')
		return false;
	*out = strtoll(s, &end, 10);
	if (!errno && !*end)
		return true;
	/* "1e3" and "5.0" are accepted as long as they are whole */
	double d = strtod(s, &end);

	if (*end || d != floor(d) || fabs(d) > 9007199254740992.0)
		return false;
	*out = (int64_t)d;
	return true;
}

static bool json_i64(json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return true;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);

		if (d != floor(d) || fabs(d) > 9007199254740992.0)
			return false;
		*out = (int64_t)d;
		return true;
	}
	return json_is_string(v) && parse_i64(json_string_value(v), out);
}

static bool json_u64(json_t *v, uint64_t *out)
{
	int64_t i;

	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;

		if (*s >= '0' && *s <= '9') {
			errno = 0;
			*out = strtoull(s, &end, 10);
			if (!errno && !*end)
				return true;
		}
	}
	if (!json_i64(v, &i) || i < 0)
		return false;
	*out = i;
	return true;
}

static bool json_f64(json_t *v, double *out)
{
	const char *s;
	char *end;

	if (json_is_number(v)) {
		*out = json_number_value(v);
		return true;
	}
	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	if (!strcmp(s, "NaN"))
		*out = NAN;
	else if (!strcmp(s, "Infinity"))
		*out = INFINITY;
	else if (!strcmp(s, "-Infinity"))
		*out = -INFINITY;
	else {
		*out = strtod(s, &end);
		return *s && *s != ' ' && !*end && isfinite(*out);
	}
	return true;
}

static bool enum_value(const struct pb_enum *en, json_t *v, int32_t *out)
{
	int64_t i;

	if (json_is_string(v))
		for (int k = 0; k < en->nvalues; k++)
			if (!strcmp(en->values[k].name, json_string_value(v))) {
				*out = en->values[k].number;
				return true;
			}
	/* numbers are accepted, also for values this descriptor does not know (open enums) */
	if (!json_i64(v, &i) || i < INT32_MIN || i > INT32_MAX)
		return false;
	*out = i;
	return true;
}

static int wire_type_of(int type)
{
	switch (type) {
	case PB_DOUBLE:
	case PB_FIXED64:
	case PB_SFIXED64:
		return WT_I64;
	case PB_FLOAT:
	case PB_FIXED32:
	case PB_SFIXED32:
		return WT_I32;
	case PB_STRING:
	case PB_BYTES:
	case PB_MESSAGE:
		return WT_LEN;
	}
	return WT_VARINT;
}

static bool put_int(struct enc *e, struct buf *b, int type, json_t *v, const char *path)
{
	int64_t i;
	uint64_t u;

	switch (type) {
	case PB_INT32:
	case PB_SINT32:
	case PB_SFIXED32:
		if (!json_i64(v, &i) || i < INT32_MIN || i > INT32_MAX)
			return fail(e, path, "not a 32-bit integer");
		if (type == PB_SFIXED32)
			buf_fixed32(b, (uint32_t)(int32_t)i);
		else if (type == PB_SINT32)
			buf_varint(b, ((uint32_t)(int32_t)i << 1) ^ (uint32_t)((int32_t)i >> 31));
		else
			buf_varint(b, (uint64_t)i); /* negative int32: sign-extended, 10 bytes */
		return true;
	case PB_UINT32:
	case PB_FIXED32:
		if (!json_u64(v, &u) || u > UINT32_MAX)
			return fail(e, path, "not an unsigned 32-bit integer");
		if (type == PB_FIXED32)
			buf_fixed32(b, u);
		else
			buf_varint(b, u);
		return true;
	case PB_INT64:
	case PB_SINT64:
	case PB_SFIXED64:
		if (!json_i64(v, &i))
			return fail(e, path, "not a 64-bit integer");
		if (type == PB_SFIXED64)
			buf_fixed64(b, (uint64_t)i);
		else if (type == PB_SINT64)
			buf_varint(b, ((uint64_t)i << 1) ^ (uint64_t)(i >> 63));
		else
			buf_varint(b, (uint64_t)i);
		return true;
	case PB_UINT64:
	case PB_FIXED64:
		if (!json_u64(v, &u))
			return fail(e, path, "not an unsigned 64-bit integer");
		if (type == PB_FIXED64)
			buf_fixed64(b, u);
		else
			buf_varint(b, u);
		return true;
	}
	return fail(e, path, "unsupported type");
}

/* The value of one scalar field (no tag). */
static bool put_scalar(struct enc *e, struct buf *b, const struct pb_field *f, json_t *v,
		       const char *path)
{
	double d;
	int32_t ev;
	unsigned char *raw;
	size_t rawlen;
	union {
		float f;
		uint32_t u;
	} f32;
	union {
		double d;
		uint64_t u;
	} f64;

	switch (f->type) {
	case PB_DOUBLE:
	case PB_FLOAT:
		if (!json_f64(v, &d))
			return fail(e, path, "not a number");
		if (f->type == PB_DOUBLE) {
			f64.d = d;
			buf_fixed64(b, f64.u);
			return true;
		}
		if (isfinite(d) && fabs(d) > FLT_MAX)
			return fail(e, path, "out of range for a float");
		f32.f = (float)d;
		buf_fixed32(b, f32.u);
		return true;
	case PB_BOOL:
		if (!json_is_boolean(v))
			return fail(e, path, "not a boolean");
		buf_varint(b, json_is_true(v));
		return true;
	case PB_STRING:
		if (!json_is_string(v))
			return fail(e, path, "not a string");
		buf_varint(b, json_string_length(v));
		buf_put(b, json_string_value(v), json_string_length(v));
		return true;
	case PB_BYTES:
		if (!json_is_string(v) ||
		    !grpc_b64_decode(json_string_value(v), json_string_length(v), &raw, &rawlen))
			return fail(e, path, "not base64");
		buf_varint(b, rawlen);
		buf_put(b, raw, rawlen);
		free(raw);
		return true;
	case PB_ENUM:
		if (!enum_value(f->en, v, &ev))
			return fail(e, path, "not a value of the enum");
		buf_varint(b, (uint64_t)(int64_t)ev);
		return true;
	}
	return put_int(e, b, f->type, v, path);
}

static bool enc_message(struct enc *e, const struct pb_message *m, json_t *j, struct buf *b,
			const char *path, int depth);

/* Tag and value of one singular field or element. */
static bool put_single(struct enc *e, struct buf *b, const struct pb_field *f, json_t *v,
		       const char *path, int depth)
{
	size_t start;

	if (f->type == PB_GROUP)
		return fail(e, path, "groups are not supported");
	buf_tag(b, f->number, wire_type_of(f->type));
	if (f->type != PB_MESSAGE)
		return put_scalar(e, b, f, v, path);
	start = b->len;
	if (!enc_message(e, f->msg, v, b, path, depth + 1))
		return false;
	buf_close_len(b, start);
	return true;
}

static bool put_map(struct enc *e, struct buf *b, const struct pb_field *f, json_t *v,
		    const char *path, int depth)
{
	const struct pb_field *kf = field_by_number(f->msg, 1), *vf = field_by_number(f->msg, 2);
	const char *key;
	char p[PATH_CAP];
	json_t *val;

	if (!json_is_object(v))
		return fail(e, path, "not an object (a map)");
	if (!kf || !vf)
		return fail(e, path, "malformed map entry type");
	json_object_foreach(v, key, val) {
		json_t *k = kf->type == PB_BOOL ? (!strcmp(key, "true")	   ? json_true()
						   : !strcmp(key, "false") ? json_false()
									   : json_null())
						: json_string(key);
		size_t start;
		bool ok;

		sub_path(p, path, key);
		if (!k)
			return fail(e, p, "out of memory");
		buf_tag(b, f->number, WT_LEN);
		start = b->len;
		ok = put_single(e, b, kf, k, p, depth);
		json_decref(k);
		if (!ok)
			return fail(e, p, "not a valid map key");
		if (json_is_null(val))
			return fail(e, p, "null map value");
		if (!put_single(e, b, vf, val, p, depth))
			return false;
		buf_close_len(b, start);
	}
	return true;
}

static bool put_field(struct enc *e, struct buf *b, const struct pb_field *f, json_t *v,
		      const char *path, int depth)
{
	char p[PATH_CAP];
	size_t i, start;
	json_t *el;

	if (is_map(f))
		return put_map(e, b, f, v, path, depth);
	if (!f->repeated)
		return put_single(e, b, f, v, path, depth);
	if (!json_is_array(v))
		return fail(e, path, "not an array");
	if (f->packed && json_array_size(v)) {
		buf_tag(b, f->number, WT_LEN);
		start = b->len;
		json_array_foreach(v, i, el)
			if (!put_scalar(e, b, f, el, idx_path(p, path, i)))
				return false;
		buf_close_len(b, start);
		return true;
	}
	json_array_foreach(v, i, el) {
		if (json_is_null(el))
			return fail(e, idx_path(p, path, i), "null in an array");
		if (!put_single(e, b, f, el, idx_path(p, path, i), depth))
			return false;
	}
	return true;
}

/* "1972-01-01T10:00:20.021Z" or with an offset ("+01:00"). */
static bool parse_timestamp(const char *s, int64_t *sec, int32_t *nanos)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, se, n = 0, oh, om;
	int32_t ns = 0;
	time_t t;

	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 || n != 19)
		return false;
	s += 19;
	if (*s == '.') {
		int digits = 0;

		for (s++; *s >= '0' && *s <= '9'; s++, digits++)
			if (digits < 9)
				ns = ns * 10 + (*s - '0');
		if (!digits || digits > 9)
			return false;
		for (; digits < 9; digits++)
			ns *= 10;
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59 || y < 1)
		return false;
	t = timegm(&tm);
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if ((*s == '+' || *s == '-') && sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
		   n == 5) {
		int64_t off = (int64_t)oh * 3600 + om * 60;

		t -= *s == '+' ? off : -off;
		s += 6;
	} else {
		return false;
	}
	if (*s)
		return false;
	*sec = t;
	*nanos = ns;
	return *sec >= -62135596800LL && *sec <= 253402300799LL;
}

/* "1.5s", "-0.000001s". */
static bool parse_duration(const char *s, int64_t *sec, int32_t *nanos)
{
	bool neg = *s == '-';
	int64_t whole = 0;
	int32_t ns = 0;
	int digits = 0, wd = 0;

	if (neg)
		s++;
	for (; *s >= '0' && *s <= '9'; s++, wd++) {
		if (whole > 315576000000LL)
			return false;
		whole = whole * 10 + (*s - '0');
	}
	if (*s == '.') {
		for (s++; *s >= '0' && *s <= '9'; s++, digits++)
			if (digits < 9)
				ns = ns * 10 + (*s - '0');
		if (!digits || digits > 9)
			return false;
		for (; digits < 9; digits++)
			ns *= 10;
	}
	if (!wd && !ns)
		return false;
	if (s[0] != 's' || s[1] || whole > 315576000000LL)
		return false;
	*sec = neg ? -whole : whole;
	*nanos = neg ? -ns : ns;
	return true;
}

static void put_sec_nanos(struct buf *b, int64_t sec, int32_t nanos)
{
	if (sec) {
		buf_tag(b, 1, WT_VARINT);
		buf_varint(b, (uint64_t)sec);
	}
	if (nanos) {
		buf_tag(b, 2, WT_VARINT);
		buf_varint(b, (uint64_t)(int64_t)nanos);
	}
}

static bool enc_value(struct enc *e, json_t *v, struct buf *b, const char *path, int depth);

static bool enc_struct(struct enc *e, json_t *v, struct buf *b, const char *path, int depth)
{
	char p[PATH_CAP];
	const char *key;
	json_t *val;
	size_t start, vstart;

	if (!json_is_object(v))
		return fail(e, path, "not an object");
	json_object_foreach(v, key, val) {
		buf_tag(b, 1, WT_LEN);
		start = b->len;
		buf_tag(b, 1, WT_LEN);
		buf_varint(b, strlen(key));
		buf_put(b, key, strlen(key));
		buf_tag(b, 2, WT_LEN);
		vstart = b->len;
		if (!enc_value(e, val, b, sub_path(p, path, key), depth + 1))
			return false;
		buf_close_len(b, vstart);
		buf_close_len(b, start);
	}
	return true;
}

static bool enc_list(struct enc *e, json_t *v, struct buf *b, const char *path, int depth)
{
	char p[PATH_CAP];
	size_t i, start;
	json_t *el;

	if (!json_is_array(v))
		return fail(e, path, "not an array");
	json_array_foreach(v, i, el) {
		buf_tag(b, 1, WT_LEN);
		start = b->len;
		if (!enc_value(e, el, b, idx_path(p, path, i), depth + 1))
			return false;
		buf_close_len(b, start);
	}
	return true;
}

static bool enc_value(struct enc *e, json_t *v, struct buf *b, const char *path, int depth)
{
	union {
		double d;
		uint64_t u;
	} f64;
	size_t start;

	if (depth > MAX_DEPTH)
		return fail(e, path, "nested too deeply");
	switch (json_typeof(v)) {
	case JSON_NULL:
		buf_tag(b, 1, WT_VARINT);
		buf_varint(b, 0);
		return true;
	case JSON_INTEGER:
	case JSON_REAL:
		f64.d = json_number_value(v);
		buf_tag(b, 2, WT_I64);
		buf_fixed64(b, f64.u);
		return true;
	case JSON_STRING:
		buf_tag(b, 3, WT_LEN);
		buf_varint(b, json_string_length(v));
		buf_put(b, json_string_value(v), json_string_length(v));
		return true;
	case JSON_TRUE:
	case JSON_FALSE:
		buf_tag(b, 4, WT_VARINT);
		buf_varint(b, json_is_true(v));
		return true;
	case JSON_OBJECT:
	case JSON_ARRAY:
		buf_tag(b, json_is_object(v) ? 5 : 6, WT_LEN);
		start = b->len;
		if (!(json_is_object(v) ? enc_struct : enc_list)(e, v, b, path, depth))
			return false;
		buf_close_len(b, start);
		return true;
	}
	return fail(e, path, "not a JSON value");
}

/* "fooBar,baz.quxQuux" -> repeated string paths "foo_bar", "baz.qux_quux". */
static bool enc_field_mask(struct enc *e, json_t *v, struct buf *b, const char *path)
{
	const char *s, *end;

	if (!json_is_string(v))
		return fail(e, path, "not a string (a field mask)");
	for (s = json_string_value(v); *s; s = *end ? end + 1 : end) {
		char one[256];
		size_t n = 0;

		end = strchr(s, ',');
		if (!end)
			end = s + strlen(s);
		for (const char *c = s; c < end; c++) {
			if (n + 2 >= sizeof(one) || *c == '_')
				return fail(e, path, "not a field mask");
			if (*c >= 'A' && *c <= 'Z') {
				one[n++] = '_';
				one[n++] = *c + 32;
			} else {
				one[n++] = *c;
			}
		}
		buf_tag(b, 1, WT_LEN);
		buf_varint(b, n);
		buf_put(b, one, n);
	}
	return true;
}

static bool enc_wkt(struct enc *e, const struct pb_message *m, json_t *j, struct buf *b,
		    const char *path, int depth)
{
	int64_t sec;
	int32_t nanos;

	switch (m->wkt) {
	case WKT_TIMESTAMP:
		if (!json_is_string(j) || !parse_timestamp(json_string_value(j), &sec, &nanos))
			return fail(e, path, "not an RFC 3339 timestamp");
		put_sec_nanos(b, sec, nanos);
		return true;
	case WKT_DURATION:
		if (!json_is_string(j) || !parse_duration(json_string_value(j), &sec, &nanos))
			return fail(e, path, "not a duration (\"1.5s\")");
		put_sec_nanos(b, sec, nanos);
		return true;
	case WKT_WRAPPER:
		if (m->nfields != 1)
			return fail(e, path, "malformed wrapper type");
		return put_single(e, b, &m->fields[0], j, path, depth);
	case WKT_STRUCT:
		return enc_struct(e, j, b, path, depth);
	case WKT_VALUE:
		return enc_value(e, j, b, path, depth);
	case WKT_LIST:
		return enc_list(e, j, b, path, depth);
	case WKT_FIELD_MASK:
		return enc_field_mask(e, j, b, path);
	}
	return fail(e, path, "google.protobuf.Any is not supported");
}

static bool enc_message(struct enc *e, const struct pb_message *m, json_t *j, struct buf *b,
			const char *path, int depth)
{
	const struct pb_field *set_oneof[32] = {0};
	char p[PATH_CAP];
	const char *key;
	json_t *v;

	if (depth > MAX_DEPTH)
		return fail(e, path, "nested too deeply");
	if (m->wkt != WKT_NONE)
		return enc_wkt(e, m, j, b, path, depth);
	if (!json_is_object(j))
		return fail(e, path, "not an object");
	json_object_foreach(j, key, v) {
		const struct pb_field *f = field_by_name(m, key);

		sub_path(p, path, key);
		if (!f)
			return fail(e, p, "unknown field");
		if (json_is_null(v) && !(f->msg && f->msg->wkt == WKT_VALUE && !f->repeated))
			continue; /* null is the default */
		if (f->oneof >= 0 && f->oneof < 32) {
			if (set_oneof[f->oneof])
				return fail(e, p, "a second field of the same oneof");
			set_oneof[f->oneof] = f;
		}
		if (!put_field(e, b, f, v, p, depth))
			return false;
	}
	return true;
}

bool grpc_json_to_pb(const struct pb_message *m, json_t *j, char **out, size_t *out_len,
		     char *err, size_t errlen)
{
	struct enc e = {.err = err, .errlen = errlen};
	struct buf b = {0};

	if (!enc_message(&e, m, j, &b, "", 0) || b.oom) {
		if (!e.failed)
			snprintf(err, errlen, "out of memory");
		free(b.p);
		return false;
	}
	*out = b.p ? b.p : malloc(1);
	*out_len = b.len;
	return *out != NULL;
}

/* ---- wire -> JSON ---- */

static json_t *dec_message(struct enc *e, const struct pb_message *m, const char *p, size_t n,
			   const char *path, int depth);

static json_t *i64_json(int64_t v)
{
	char t[24];

	snprintf(t, sizeof(t), "%" PRId64, v);
	return json_string(t);
}

static json_t *u64_json(uint64_t v)
{
	char t[24];

	snprintf(t, sizeof(t), "%" PRIu64, v);
	return json_string(t);
}

static json_t *double_json(double d)
{
	if (isnan(d))
		return json_string("NaN");
	if (isinf(d))
		return json_string(d > 0 ? "Infinity" : "-Infinity");
	if (d == floor(d) && fabs(d) < 1e15)
		return json_integer((json_int_t)d); /* 2.0 prints as 2, as protobuf does */
	return json_real(d);
}

static json_t *float_json(float f)
{
	char t[32];

	if (isnan(f) || isinf(f))
		return double_json(f);
	/* the shortest text that reads back as the same float, not the double's digits */
	for (int prec = 6; prec <= 9; prec++) {
		snprintf(t, sizeof(t), "%.*g", prec, f);
		if (strtof(t, NULL) == f)
			break;
	}
	return double_json(strtod(t, NULL));
}

static json_t *enum_json(const struct pb_enum *en, int32_t v)
{
	for (int i = 0; i < en->nvalues; i++)
		if (en->values[i].number == v)
			return json_string(en->values[i].name);
	return json_integer(v);
}

/* A scalar value whose raw payload is v (varint or fixed) or data/len. */
static json_t *scalar_json(const struct pb_field *f, uint64_t v, const char *data, size_t len)
{
	union {
		uint32_t u;
		float f;
	} f32 = {.u = (uint32_t)v};
	union {
		uint64_t u;
		double d;
	} f64 = {.u = v};

	switch (f->type) {
	case PB_DOUBLE:
		return double_json(f64.d);
	case PB_FLOAT:
		return float_json(f32.f);
	case PB_INT64:
	case PB_SFIXED64:
		return i64_json((int64_t)v);
	case PB_SINT64:
		return i64_json((int64_t)(v >> 1) ^ -(int64_t)(v & 1));
	case PB_UINT64:
	case PB_FIXED64:
		return u64_json(v);
	case PB_INT32:
	case PB_SFIXED32:
		return json_integer((int32_t)v);
	case PB_SINT32:
		return json_integer((int32_t)((uint32_t)v >> 1) ^ -(int32_t)(v & 1));
	case PB_UINT32:
	case PB_FIXED32:
		return json_integer((uint32_t)v);
	case PB_BOOL:
		return json_boolean(v != 0);
	case PB_ENUM:
		return enum_json(f->en, (int32_t)v);
	case PB_STRING:
		return json_stringn(data ? data : "", len);
	case PB_BYTES: {
		char *s = grpc_b64_encode((const unsigned char *)data, len);
		json_t *j = s ? json_string(s) : NULL;

		free(s);
		return j;
	}
	}
	return NULL;
}

static json_t *single_json(struct enc *e, const struct pb_field *f, const struct wire_field *w,
			   const char *path, int depth)
{
	json_t *j;

	if (w->wt != wire_type_of(f->type)) {
		fail(e, path, "wrong wire type");
		return NULL;
	}
	if (f->type == PB_MESSAGE)
		return dec_message(e, f->msg, w->data, w->len, path, depth + 1);
	j = scalar_json(f, w->v, w->data, w->len);
	if (!j)
		fail(e, path, f->type == PB_STRING ? "not UTF-8" : "undecodable value");
	return j;
}

static json_t *default_json(const struct pb_field *f)
{
	if (f->type == PB_MESSAGE)
		return json_object();
	return scalar_json(f, 0, NULL, 0);
}

static bool dec_packed(struct enc *e, const struct pb_field *f, const struct wire_field *w,
		       json_t *arr, const char *path)
{
	struct wire in = {.p = (const unsigned char *)w->data, .n = w->len};
	int wt = wire_type_of(f->type);

	while (in.off < in.n) {
		uint64_t v = 0;

		if (wt == WT_VARINT) {
			if (!wire_varint(&in, &v))
				return fail(e, path, "malformed packed field");
		} else {
			size_t k = wt == WT_I32 ? 4 : 8;

			if (in.n - in.off < k)
				return fail(e, path, "malformed packed field");
			for (size_t i = 0; i < k; i++)
				v |= (uint64_t)in.p[in.off + i] << (8 * i);
			in.off += k;
		}
		if (json_array_append_new(arr, scalar_json(f, v, NULL, 0)))
			return fail(e, path, "out of memory");
	}
	return true;
}

static json_t *map_key_value(struct enc *e, const struct pb_field *f,
			     const struct wire_field *w, const char *path, int depth, char **key)
{
	const struct pb_field *kf = field_by_number(f->msg, 1), *vf = field_by_number(f->msg, 2);
	struct wire in = {.p = (const unsigned char *)w->data, .n = w->len};
	struct wire_field x;
	json_t *k = NULL, *v = NULL;
	int r;

	if (!kf || !vf || w->wt != WT_LEN) {
		fail(e, path, "malformed map entry");
		return NULL;
	}
	while ((r = wire_next(&in, &x)) == 1) {
		json_t **slot = x.number == 1 ? &k : x.number == 2 ? &v : NULL;

		if (!slot)
			continue;
		json_decref(*slot);
		*slot = single_json(e, x.number == 1 ? kf : vf, &x, path, depth);
		if (!*slot)
			goto out;
	}
	if (r < 0) {
		fail(e, path, "malformed map entry");
		goto out;
	}
	if (!k)
		k = default_json(kf);
	if (!v)
		v = default_json(vf);
	if (k && v) {
		char t[32];

		*key = strdup(json_is_string(k)	   ? json_string_value(k)
			      : json_is_boolean(k) ? (json_is_true(k) ? "true" : "false")
						   : (snprintf(t, sizeof(t), "%" JSON_INTEGER_FORMAT,
							       json_integer_value(k)),
						      t));
		if (*key) {
			json_decref(k);
			return v;
		}
	}
	fail(e, path, "out of memory");
out:
	json_decref(k);
	json_decref(v);
	return NULL;
}

static bool dec_field(struct enc *e, const struct pb_field *f, const struct wire_field *w,
		      json_t *obj, const char *path, int depth)
{
	json_t *v, *arr;
	char *key = NULL;

	if (!f->repeated) {
		if (!f->has_presence && w->wt == wire_type_of(f->type) &&
		    (w->wt == WT_LEN ? !w->len : !w->v)) {
			json_object_del(obj, f->json_name); /* the default: omitted */
			return true;
		}
		v = single_json(e, f, w, path, depth);
		if (!v)
			return false;
		return !json_object_set_new(obj, f->json_name, v) || fail(e, path, "out of memory");
	}
	arr = json_object_get(obj, f->json_name);
	if (!arr) {
		arr = is_map(f) ? json_object() : json_array();
		if (json_object_set_new(obj, f->json_name, arr))
			return fail(e, path, "out of memory");
	}
	if (is_map(f)) {
		v = map_key_value(e, f, w, path, depth, &key);
		if (!v)
			return false;
		json_object_set_new(arr, key, v);
		free(key);
		return true;
	}
	/* packed or not, whatever the descriptor says (parsers accept both) */
	if (w->wt == WT_LEN && wire_type_of(f->type) != WT_LEN)
		return dec_packed(e, f, w, arr, path);
	v = single_json(e, f, w, path, depth);
	return v && (!json_array_append_new(arr, v) || fail(e, path, "out of memory"));
}

static json_t *dec_value(struct enc *e, const char *p, size_t n, const char *path, int depth);

static json_t *dec_struct(struct enc *e, const char *p, size_t n, const char *path, int depth)
{
	struct wire in = {.p = (const unsigned char *)p, .n = n}, ent;
	struct wire_field x, y;
	json_t *obj = json_object();
	int r, r2;

	while (obj && (r = wire_next(&in, &x)) == 1) {
		char key[256] = "";
		json_t *v = NULL;

		if (x.number != 1 || x.wt != WT_LEN)
			continue;
		ent = (struct wire){.p = (const unsigned char *)x.data, .n = x.len};
		while ((r2 = wire_next(&ent, &y)) == 1) {
			if (y.number == 1 && y.wt == WT_LEN)
				snprintf(key, sizeof(key), "%.*s", (int)y.len, y.data);
			else if (y.number == 2 && y.wt == WT_LEN) {
				json_decref(v);
				v = dec_value(e, y.data, y.len, path, depth + 1);
				if (!v)
					break;
			}
		}
		if (r2 < 0 || e->failed) {
			json_decref(v);
			break;
		}
		json_object_set_new(obj, key, v ? v : json_null());
	}
	if (!obj || e->failed || r < 0) {
		fail(e, path, "malformed Struct");
		json_decref(obj);
		return NULL;
	}
	return obj;
}

static json_t *dec_list(struct enc *e, const char *p, size_t n, const char *path, int depth)
{
	struct wire in = {.p = (const unsigned char *)p, .n = n};
	struct wire_field x;
	json_t *arr = json_array(), *v;
	int r;

	while (arr && (r = wire_next(&in, &x)) == 1) {
		if (x.number != 1 || x.wt != WT_LEN)
			continue;
		v = dec_value(e, x.data, x.len, path, depth + 1);
		if (!v)
			break;
		json_array_append_new(arr, v);
	}
	if (!arr || e->failed || r < 0) {
		fail(e, path, "malformed ListValue");
		json_decref(arr);
		return NULL;
	}
	return arr;
}

static json_t *dec_value(struct enc *e, const char *p, size_t n, const char *path, int depth)
{
	struct wire in = {.p = (const unsigned char *)p, .n = n};
	struct wire_field x;
	json_t *v = NULL;
	union {
		uint64_t u;
		double d;
	} f64;
	int r;

	if (depth > MAX_DEPTH) {
		fail(e, path, "nested too deeply");
		return NULL;
	}
	while ((r = wire_next(&in, &x)) == 1) {
		json_decref(v);
		v = NULL;
		if (x.number == 1)
			v = json_null();
		else if (x.number == 2 && x.wt == WT_I64)
			f64.u = x.v, v = double_json(f64.d);
		else if (x.number == 3 && x.wt == WT_LEN)
			v = json_stringn(x.data, x.len);
		else if (x.number == 4)
			v = json_boolean(x.v);
		else if (x.number == 5 && x.wt == WT_LEN)
			v = dec_struct(e, x.data, x.len, path, depth);
		else if (x.number == 6 && x.wt == WT_LEN)
			v = dec_list(e, x.data, x.len, path, depth);
		if (!v && e->failed)
			return NULL;
	}
	if (r < 0) {
		json_decref(v);
		fail(e, path, "malformed Value");
		return NULL;
	}
	return v ? v : json_null();
}

static json_t *fraction_json(int64_t sec, int32_t nanos, bool ts)
{
	char t[64], frac[16] = "";
	struct tm tm;
	time_t tt = sec;
	int32_t an = nanos < 0 ? -nanos : nanos;

	if (an % 1000000 == 0 && an)
		snprintf(frac, sizeof(frac), ".%03d", an / 1000000);
	else if (an % 1000 == 0 && an)
		snprintf(frac, sizeof(frac), ".%06d", an / 1000);
	else if (an)
		snprintf(frac, sizeof(frac), ".%09d", an);
	if (!ts) {
		bool neg = sec < 0 || nanos < 0;

		snprintf(t, sizeof(t), "%s%" PRId64 "%ss", neg ? "-" : "",
			 sec < 0 ? -sec : sec, frac);
		return json_string(t);
	}
	if (sec < -62135596800LL || sec > 253402300799LL || nanos < 0 || !gmtime_r(&tt, &tm))
		return NULL;
	strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
	strcat(t, frac);
	strcat(t, "Z");
	return json_string(t);
}

static json_t *dec_wkt(struct enc *e, const struct pb_message *m, const char *p, size_t n,
		       const char *path, int depth)
{
	struct wire in = {.p = (const unsigned char *)p, .n = n};
	struct wire_field x;
	int64_t sec = 0;
	int32_t nanos = 0;
	json_t *v = NULL, *arr;
	int r;

	switch (m->wkt) {
	case WKT_TIMESTAMP:
	case WKT_DURATION:
		while ((r = wire_next(&in, &x)) == 1) {
			if (x.number == 1 && x.wt == WT_VARINT)
				sec = (int64_t)x.v;
			else if (x.number == 2 && x.wt == WT_VARINT)
				nanos = (int32_t)x.v;
		}
		if (r == 0 && (v = fraction_json(sec, nanos, m->wkt == WKT_TIMESTAMP)))
			return v;
		fail(e, path, m->wkt == WKT_TIMESTAMP ? "invalid Timestamp" : "invalid Duration");
		return NULL;
	case WKT_WRAPPER:
		while ((r = wire_next(&in, &x)) == 1)
			if (x.number == 1 && m->nfields == 1) {
				json_decref(v);
				v = single_json(e, &m->fields[0], &x, path, depth);
				if (!v)
					return NULL;
			}
		if (r < 0 || m->nfields != 1) {
			json_decref(v);
			fail(e, path, "malformed wrapper");
			return NULL;
		}
		return v ? v : default_json(&m->fields[0]);
	case WKT_STRUCT:
		return dec_struct(e, p, n, path, depth);
	case WKT_VALUE:
		return dec_value(e, p, n, path, depth);
	case WKT_LIST:
		return dec_list(e, p, n, path, depth);
	case WKT_FIELD_MASK: {
		struct buf b = {0};

		while ((r = wire_next(&in, &x)) == 1) {
			if (x.number != 1 || x.wt != WT_LEN)
				continue;
			if (b.len)
				buf_put(&b, ",", 1);
			for (size_t i = 0; i < x.len; i++) {
				char c = x.data[i];

				if (c == '_' && i + 1 < x.len && x.data[i + 1] >= 'a' &&
				    x.data[i + 1] <= 'z')
					c = x.data[++i] - 32;
				buf_put(&b, &c, 1);
			}
		}
		arr = r == 0 && !b.oom ? json_stringn(b.p ? b.p : "", b.len) : NULL;
		free(b.p);
		if (!arr)
			fail(e, path, "malformed FieldMask");
		return arr;
	}
	}
	fail(e, path, "google.protobuf.Any is not supported");
	return NULL;
}

static json_t *dec_message(struct enc *e, const struct pb_message *m, const char *p, size_t n,
			   const char *path, int depth)
{
	struct wire in = {.p = (const unsigned char *)p, .n = n};
	struct wire_field w;
	char fp[PATH_CAP];
	json_t *obj;
	int r;

	if (depth > MAX_DEPTH) {
		fail(e, path, "nested too deeply");
		return NULL;
	}
	if (m->wkt != WKT_NONE)
		return dec_wkt(e, m, p, n, path, depth);
	obj = json_object();
	if (!obj) {
		fail(e, path, "out of memory");
		return NULL;
	}
	while ((r = wire_next(&in, &w)) == 1) {
		const struct pb_field *f = field_by_number(m, w.number);

		if (!f || w.wt == WT_EGROUP || w.wt == WT_SGROUP)
			continue; /* unknown fields are dropped, as the JSON mapping does */
		if (!dec_field(e, f, &w, obj, sub_path(fp, path, f->json_name), depth)) {
			json_decref(obj);
			return NULL;
		}
	}
	if (r < 0) {
		fail(e, path, "malformed message");
		json_decref(obj);
		return NULL;
	}
	/* a oneof member at its default is still set; a packed field of no elements is not */
	for (int i = 0; i < m->nfields; i++) {
		json_t *a = json_object_get(obj, m->fields[i].json_name);

		if (m->fields[i].repeated && a && !json_array_size(a) && !json_object_size(a))
			json_object_del(obj, m->fields[i].json_name);
	}
	return obj;
}

json_t *grpc_pb_to_json(const struct pb_message *m, const char *p, size_t n, char *err,
			size_t errlen)
{
	struct enc e = {.err = err, .errlen = errlen};

	return dec_message(&e, m, p, n, "", 0);
}
