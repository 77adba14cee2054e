/*
 * FileDescriptorSet reader: only the descriptor.proto fields transcoding needs, read
 * straight from the wire format (no generated code), then type names resolved across
 * every file of the set.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"
#include "grpc/wire.h"

#define HTTP_RULE_EXT 72295728u
#define MAX_DESC_BYTES (64u << 20)

struct loader {
	struct grpc_pool *pool;
	char *err;
	size_t errlen;
	bool oom;
};

static char *strndup_or(struct loader *l, const char *p, size_t n)
{
	char *s = strndup(p, n);

	if (!s)
		l->oom = true;
	return s;
}

static char *join_name(struct loader *l, const char *scope, const char *p, size_t n)
{
	size_t sl = scope && *scope ? strlen(scope) + 1 : 0;
	char *s = malloc(sl + n + 1);

	if (!s) {
		l->oom = true;
		return NULL;
	}
	if (sl) {
		memcpy(s, scope, sl - 1);
		s[sl - 1] = '.';
	}
	memcpy(s + sl, p, n);
	s[sl + n] = '\0';
	return s;
}

static void *grow(struct loader *l, void *arr, int n, size_t size)
{
	void *p = realloc(arr, (size_t)(n + 1) * size);

	if (!p) {
		l->oom = true;
		return NULL;
	}
	memset((char *)p + (size_t)n * size, 0, size);
	return p;
}

static bool field_submsg(const struct wire_field *f, struct wire *w)
{
	if (f->wt != WT_LEN)
		return false;
	w->p = (const unsigned char *)f->data;
	w->n = f->len;
	w->off = 0;
	return true;
}

static int wkt_of(const char *name)
{
	static const char *const wrappers[] = {
	    "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value",
	    "UInt32Value", "BoolValue",	 "StringValue", "BytesValue", NULL};

	if (strncmp(name, "google.protobuf.", 16))
		return WKT_NONE;
	name += 16;
	for (int i = 0; wrappers[i]; i++)
		if (!strcmp(name, wrappers[i]))
			return WKT_WRAPPER;
	if (!strcmp(name, "Timestamp"))
		return WKT_TIMESTAMP;
	if (!strcmp(name, "Duration"))
		return WKT_DURATION;
	if (!strcmp(name, "Struct"))
		return WKT_STRUCT;
	if (!strcmp(name, "Value"))
		return WKT_VALUE;
	if (!strcmp(name, "ListValue"))
		return WKT_LIST;
	if (!strcmp(name, "FieldMask"))
		return WKT_FIELD_MASK;
	if (!strcmp(name, "Any"))
		return WKT_ANY;
	return WKT_NONE;
}

/* lowerCamelCase as protoc derives json_name, for descriptors that lack it. */
static char *camel(struct loader *l, const char *name)
{
	char *s = malloc(strlen(name) + 1), *o = s;
	bool up = false;

	if (!s) {
		l->oom = true;
		return NULL;
	}
	for (; *name; name++) {
		if (*name == '_') {
			up = true;
			continue;
		}
		*o++ = up && *name >= 'a' && *name <= 'z' ? *name - 32 : *name;
		up = false;
	}
	*o = '\0';
	return s;
}

static bool is_packable(int type)
{
	return type != PB_STRING && type != PB_BYTES && type != PB_MESSAGE && type != PB_GROUP;
}

static bool read_field(struct loader *l, struct wire *w, struct pb_field *fd, bool proto3)
{
	struct wire_field f;
	struct wire sub;
	int label = 1, packed = -1, r;
	bool p3_optional = false;

	fd->oneof = -1;
	while ((r = wire_next(w, &f)) == 1) {
		switch (f.number) {
		case 1:
			if (f.wt == WT_LEN)
				fd->name = strndup_or(l, f.data, f.len);
			break;
		case 3:
			fd->number = f.v;
			break;
		case 4:
			label = f.v;
			break;
		case 5:
			fd->type = f.v;
			break;
		case 6:
			if (f.wt == WT_LEN)
				fd->type_name = strndup_or(l, f.data, f.len);
			break;
		case 9:
			fd->oneof = f.v;
			break;
		case 10:
			if (f.wt == WT_LEN)
				fd->json_name = strndup_or(l, f.data, f.len);
			break;
		case 8: /* FieldOptions */
			if (!field_submsg(&f, &sub))
				return false;
			while ((r = wire_next(&sub, &f)) == 1)
				if (f.number == 2 && f.wt == WT_VARINT)
					packed = f.v != 0;
			if (r < 0)
				return false;
			break;
		case 17:
			p3_optional = f.v != 0;
			break;
		}
	}
	if (r < 0 || !fd->name || !fd->number || fd->type < PB_DOUBLE || fd->type > PB_SINT64)
		return false;
	if (!fd->json_name)
		fd->json_name = camel(l, fd->name);
	fd->repeated = label == 3;
	fd->packed = fd->repeated && is_packable(fd->type) && (packed >= 0 ? packed : proto3);
	fd->has_presence = !fd->repeated && (!proto3 || p3_optional || fd->oneof >= 0 ||
					     fd->type == PB_MESSAGE || fd->type == PB_GROUP);
	return true;
}

static bool read_enum(struct loader *l, struct wire *w, const char *scope)
{
	struct wire_field f;
	struct wire sub;
	struct pb_enum *e = calloc(1, sizeof(*e));
	struct grpc_pool *pool = l->pool;
	int r;

	if (!e || !(pool->enums = grow(l, pool->enums, pool->nenums, sizeof(*pool->enums)))) {
		free(e);
		l->oom = true;
		return false;
	}
	pool->enums[pool->nenums++] = e;
	while ((r = wire_next(w, &f)) == 1) {
		if (f.number == 1 && f.wt == WT_LEN) {
			e->full_name = join_name(l, scope, f.data, f.len);
		} else if (f.number == 2 && field_submsg(&f, &sub)) {
			struct pb_enum_value *v;

			e->values = grow(l, e->values, e->nvalues, sizeof(*e->values));
			if (!e->values)
				return false;
			v = &e->values[e->nvalues++];
			while ((r = wire_next(&sub, &f)) == 1) {
				if (f.number == 1 && f.wt == WT_LEN)
					v->name = strndup_or(l, f.data, f.len);
				else if (f.number == 2)
					v->number = (int32_t)f.v;
			}
			if (r < 0 || !v->name)
				return false;
		}
	}
	return r == 0 && e->full_name;
}

static bool read_message(struct loader *l, struct wire *w, const char *scope, bool proto3,
			 int depth);

static bool read_message_part(struct loader *l, struct pb_message *m,
			      const struct wire_field *f, bool proto3, int depth)
{
	struct wire sub;
	struct wire_field o;
	int r;

	if (f->number == 1 || f->wt != WT_LEN)
		return true; /* the name was taken first */
	if (!field_submsg(f, &sub))
		return false;
	switch (f->number) {
	case 2:
		m->fields = grow(l, m->fields, m->nfields, sizeof(*m->fields));
		return m->fields && read_field(l, &sub, &m->fields[m->nfields++], proto3);
	case 3:
		return read_message(l, &sub, m->full_name, proto3, depth + 1);
	case 4:
		return read_enum(l, &sub, m->full_name);
	case 7: /* MessageOptions */
		while ((r = wire_next(&sub, &o)) == 1)
			if (o.number == 7 && o.wt == WT_VARINT)
				m->map_entry = o.v != 0;
		return r == 0;
	case 8:
		m->oneofs = grow(l, m->oneofs, m->noneofs, sizeof(*m->oneofs));
		if (!m->oneofs)
			return false;
		m->oneofs[m->noneofs] = strdup("");
		while ((r = wire_next(&sub, &o)) == 1)
			if (o.number == 1 && o.wt == WT_LEN) {
				free(m->oneofs[m->noneofs]);
				m->oneofs[m->noneofs] = strndup_or(l, o.data, o.len);
			}
		return m->oneofs[m->noneofs++] && r == 0;
	}
	return true;
}

static bool read_message(struct loader *l, struct wire *w, const char *scope, bool proto3,
			 int depth)
{
	struct grpc_pool *pool = l->pool;
	struct pb_message *m = calloc(1, sizeof(*m));
	struct wire_field f;
	struct wire first = *w;
	int r;

	if (depth > 32 || !m ||
	    !(pool->messages = grow(l, pool->messages, pool->nmessages, sizeof(*pool->messages)))) {
		free(m);
		return false;
	}
	pool->messages[pool->nmessages++] = m;
	m->proto3 = proto3;
	/* the name scopes nested types, so it is taken before anything else */
	while ((r = wire_next(&first, &f)) == 1)
		if (f.number == 1 && f.wt == WT_LEN && !m->full_name)
			m->full_name = join_name(l, scope, f.data, f.len);
	if (r < 0 || !m->full_name)
		return false;
	m->wkt = wkt_of(m->full_name);
	while ((r = wire_next(w, &f)) == 1)
		if (!read_message_part(l, m, &f, proto3, depth))
			return false;
	return r == 0;
}

static bool read_http_rule(struct loader *l, struct wire *w, struct grpc_service *s,
			   const struct grpc_method *meth, int depth)
{
	static const char *const verbs[] = {NULL, NULL, "GET", "PUT", "POST", "DELETE", "PATCH"};
	struct grpc_binding b = {.method = meth};
	struct wire_field f;
	struct wire sub;
	int r;

	while ((r = wire_next(w, &f)) == 1) {
		if (f.wt != WT_LEN)
			continue;
		if (f.number >= 2 && f.number <= 6) {
			free(b.method_name);
			free(b.tmpl);
			b.method_name = strdup(verbs[f.number]);
			b.tmpl = strndup_or(l, f.data, f.len);
		} else if (f.number == 8 && field_submsg(&f, &sub)) {
			struct wire_field c;

			while ((r = wire_next(&sub, &c)) == 1) {
				if (c.number == 1 && c.wt == WT_LEN) {
					free(b.method_name);
					b.method_name = strndup_or(l, c.data, c.len);
				} else if (c.number == 2 && c.wt == WT_LEN) {
					free(b.tmpl);
					b.tmpl = strndup_or(l, c.data, c.len);
				}
			}
		} else if (f.number == 7) {
			free(b.body);
			b.body = strndup_or(l, f.data, f.len);
		} else if (f.number == 12) {
			free(b.response_body);
			b.response_body = strndup_or(l, f.data, f.len);
		} else if (f.number == 11 && depth == 0 && field_submsg(&f, &sub)) {
			if (!read_http_rule(l, &sub, s, meth, 1))
				goto fail;
		}
	}
	if (r < 0 || !b.tmpl || !b.method_name)
		goto fail;
	if (b.body && !*b.body) {
		free(b.body);
		b.body = NULL;
	}
	if (b.response_body && !*b.response_body) {
		free(b.response_body);
		b.response_body = NULL;
	}
	s->rules = grow(l, s->rules, s->nrules, sizeof(*s->rules));
	if (!s->rules)
		goto fail;
	s->rules[s->nrules++] = b;
	return true;
fail:
	grpc_binding_clear(&b);
	return false;
}

static bool read_method(struct loader *l, struct wire *w, struct grpc_service *s,
			struct grpc_method *m)
{
	struct wire_field f, o;
	struct wire sub;
	int r, r2;

	while ((r = wire_next(w, &f)) == 1) {
		if (f.number == 1 && f.wt == WT_LEN)
			m->name = strndup_or(l, f.data, f.len);
		else if (f.number == 2 && f.wt == WT_LEN)
			m->in_name = strndup_or(l, f.data, f.len);
		else if (f.number == 3 && f.wt == WT_LEN)
			m->out_name = strndup_or(l, f.data, f.len);
		else if (f.number == 5)
			m->client_streaming = f.v != 0;
		else if (f.number == 6)
			m->server_streaming = f.v != 0;
	}
	if (r < 0 || !m->name || !m->in_name || !m->out_name)
		return false;
	m->path = malloc(strlen(s->full_name) + strlen(m->name) + 3);
	if (!m->path)
		return false;
	sprintf(m->path, "/%s/%s", s->full_name, m->name);
	/* options: the http rule, read once the name is known */
	w->off = 0;
	while ((r = wire_next(w, &f)) == 1) {
		if (f.number != 4 || !field_submsg(&f, &sub))
			continue;
		while ((r2 = wire_next(&sub, &o)) == 1) {
			struct wire rule;

			if (o.number == HTTP_RULE_EXT && field_submsg(&o, &rule) &&
			    !read_http_rule(l, &rule, s, m, 0))
				return false;
		}
		if (r2 < 0)
			return false;
	}
	return r == 0;
}

static bool read_service(struct loader *l, struct wire *w, const char *pkg)
{
	struct grpc_pool *pool = l->pool;
	struct grpc_service *s;
	struct wire_field f;
	struct wire sub, scan = *w;
	int r, n = 0;

	pool->services = grow(l, pool->services, pool->nservices, sizeof(*pool->services));
	if (!pool->services)
		return false;
	s = &pool->services[pool->nservices++];
	/* methods point at their service's array: size it first */
	while ((r = wire_next(&scan, &f)) == 1) {
		if (f.number == 1 && f.wt == WT_LEN && !s->full_name)
			s->full_name = join_name(l, pkg, f.data, f.len);
		else if (f.number == 2)
			n++;
	}
	if (r < 0 || !s->full_name)
		return false;
	s->methods = calloc(n ? n : 1, sizeof(*s->methods));
	if (!s->methods)
		return false;
	while ((r = wire_next(w, &f)) == 1)
		if (f.number == 2 && field_submsg(&f, &sub) &&
		    !read_method(l, &sub, s, &s->methods[s->nmethods++]))
			return false;
	return r == 0;
}

static bool read_file(struct loader *l, struct wire *w)
{
	struct wire_field f;
	struct wire scan = *w, sub;
	char *pkg = NULL;
	bool proto3 = false, ok = true;
	int r;

	while ((r = wire_next(&scan, &f)) == 1) {
		if (f.number == 2 && f.wt == WT_LEN && !pkg)
			pkg = strndup_or(l, f.data, f.len);
		else if (f.number == 12 && f.wt == WT_LEN)
			proto3 = f.len == 6 && !memcmp(f.data, "proto3", 6);
	}
	if (r < 0)
		ok = false;
	while (ok && (r = wire_next(w, &f)) == 1) {
		if (f.wt != WT_LEN || !field_submsg(&f, &sub))
			continue;
		if (f.number == 4)
			ok = read_message(l, &sub, pkg, proto3, 0);
		else if (f.number == 5)
			ok = read_enum(l, &sub, pkg);
		else if (f.number == 6)
			ok = read_service(l, &sub, pkg);
	}
	free(pkg);
	return ok && r == 0;
}

const struct pb_message *grpc_find_message(const struct grpc_pool *pool, const char *name)
{
	if (*name == '.')
		name++;
	for (int i = 0; i < pool->nmessages; i++)
		if (!strcmp(pool->messages[i]->full_name, name))
			return pool->messages[i];
	return NULL;
}

static const struct pb_enum *find_enum(const struct grpc_pool *pool, const char *name)
{
	if (*name == '.')
		name++;
	for (int i = 0; i < pool->nenums; i++)
		if (!strcmp(pool->enums[i]->full_name, name))
			return pool->enums[i];
	return NULL;
}

const struct grpc_service *grpc_find_service(const struct grpc_pool *pool, const char *name)
{
	for (int i = 0; i < pool->nservices; i++)
		if (!strcmp(pool->services[i].full_name, name))
			return &pool->services[i];
	return NULL;
}

static bool resolve(struct loader *l)
{
	struct grpc_pool *pool = l->pool;

	for (int i = 0; i < pool->nmessages; i++) {
		struct pb_message *m = pool->messages[i];

		for (int j = 0; j < m->nfields; j++) {
			struct pb_field *fd = &m->fields[j];

			if (fd->type == PB_MESSAGE || fd->type == PB_GROUP) {
				fd->msg = fd->type_name ? grpc_find_message(pool, fd->type_name) : NULL;
				if (!fd->msg)
					goto missing;
			} else if (fd->type == PB_ENUM) {
				fd->en = fd->type_name ? find_enum(pool, fd->type_name) : NULL;
				if (!fd->en)
					goto missing;
			}
			if (fd->oneof >= m->noneofs)
				fd->oneof = -1;
			continue;
missing:
			snprintf(l->err, l->errlen, "%s.%s: type %s is not in the set (protoc "
				 "--include_imports)", m->full_name, fd->name,
				 fd->type_name ? fd->type_name : "?");
			return false;
		}
	}
	for (int i = 0; i < pool->nservices; i++) {
		struct grpc_service *s = &pool->services[i];

		for (int j = 0; j < s->nmethods; j++) {
			struct grpc_method *m = &s->methods[j];

			m->in = grpc_find_message(pool, m->in_name);
			m->out = grpc_find_message(pool, m->out_name);
			if (!m->in || !m->out) {
				snprintf(l->err, l->errlen, "%s: type %s is not in the set (protoc "
					 "--include_imports)", m->path, m->in ? m->out_name : m->in_name);
				return false;
			}
		}
	}
	return true;
}

struct grpc_pool *grpc_pool_load(const void *data, size_t len, char *err, size_t errlen)
{
	struct grpc_pool *pool = calloc(1, sizeof(*pool));
	struct loader l = {.pool = pool, .err = err, .errlen = errlen};
	struct wire w = {.p = data, .n = len}, sub;
	struct wire_field f;
	int r, files = 0;

	if (!pool) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	err[0] = '\0';
	while ((r = wire_next(&w, &f)) == 1) {
		if (f.number != 1 || !field_submsg(&f, &sub))
			continue;
		files++;
		if (!read_file(&l, &sub)) {
			r = -1;
			break;
		}
	}
	if (r < 0 || l.oom || !files) {
		snprintf(err, errlen, l.oom ? "out of memory"
				      : !files && r == 0 ? "no files in the descriptor set"
							 : "not a FileDescriptorSet");
		grpc_pool_free(pool);
		return NULL;
	}
	if (!resolve(&l)) {
		grpc_pool_free(pool);
		return NULL;
	}
	return pool;
}

struct grpc_pool *grpc_pool_load_file(const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "rb");
	struct grpc_pool *pool = NULL;
	char *data = NULL;
	long n;

	if (!fp) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 || (size_t)n > MAX_DESC_BYTES ||
	    fseek(fp, 0, SEEK_SET) || !(data = malloc(n ? n : 1)) ||
	    fread(data, 1, n, fp) != (size_t)n) {
		snprintf(err, errlen, "cannot read %s", path);
	} else {
		pool = grpc_pool_load(data, n, err, errlen);
	}
	free(data);
	fclose(fp);
	return pool;
}

void grpc_binding_clear(struct grpc_binding *b)
{
	free(b->method_name);
	free(b->tmpl);
	for (int i = 0; i < b->nsegs; i++)
		free(b->segs[i].lit);
	free(b->segs);
	for (int i = 0; i < b->nvars; i++)
		free(b->vars[i].field_path);
	free(b->vars);
	free(b->verb);
	free(b->body);
	free(b->response_body);
	memset(b, 0, sizeof(*b));
}

static void message_free(struct pb_message *m)
{
	for (int j = 0; j < m->nfields; j++) {
		free(m->fields[j].name);
		free(m->fields[j].json_name);
		free(m->fields[j].type_name);
	}
	for (int j = 0; j < m->noneofs; j++)
		free(m->oneofs[j]);
	free(m->oneofs);
	free(m->fields);
	free(m->full_name);
	free(m);
}

void grpc_pool_free(struct grpc_pool *pool)
{
	if (!pool)
		return;
	for (int i = 0; i < pool->nmessages; i++)
		message_free(pool->messages[i]);
	free(pool->messages);
	for (int i = 0; i < pool->nenums; i++) {
		for (int j = 0; j < pool->enums[i]->nvalues; j++)
			free(pool->enums[i]->values[j].name);
		free(pool->enums[i]->values);
		free(pool->enums[i]->full_name);
		free(pool->enums[i]);
	}
	free(pool->enums);
	for (int i = 0; i < pool->nservices; i++) {
		struct grpc_service *s = &pool->services[i];

		for (int j = 0; j < s->nmethods; j++) {
			free(s->methods[j].name);
			free(s->methods[j].path);
			free(s->methods[j].in_name);
			free(s->methods[j].out_name);
		}
		for (int j = 0; j < s->nrules; j++)
			grpc_binding_clear(&s->rules[j]);
		free(s->rules);
		free(s->methods);
		free(s->full_name);
	}
	free(pool->services);
	for (int i = 0; i < pool->nbindings; i++)
		grpc_binding_clear(&pool->bindings[i]);
	free(pool->bindings);
	free(pool);
}
