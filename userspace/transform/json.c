/* JSON body ops of transform.*.body on dot paths (see transform.h). */
#include <string.h>

#include "transform/transform.h"

/* The object holding the last segment of path (created along the way when make), and
 * that segment. NULL when a step is not an object. */
static json_t *parent_of(json_t *j, const char *path, bool make, const char **last)
{
	const char *dot;
	json_t *next;

	while ((dot = strchr(path, '.'))) {
		if (!json_is_object(j))
			return NULL;
		next = json_object_getn(j, path, dot - path);
		if (!next && make) {
			next = json_object();
			json_object_setn_new(j, path, dot - path, next);
		}
		j = next;
		path = dot + 1;
	}
	*last = path;
	return json_is_object(j) ? j : NULL;
}

static void remove_path(json_t *j, const char *path)
{
	const char *last;
	json_t *o = parent_of(j, path, false, &last);

	if (o)
		json_object_del(o, last);
}

/* Sets a new reference at path, replacing what is there (objects made on the way). */
static void set_path(json_t *j, const char *path, json_t *v)
{
	const char *last;
	json_t *o = parent_of(j, path, true, &last);

	if (o)
		json_object_set_new(o, last, v);
	else
		json_decref(v);
}

static void rename_path(json_t *j, const char *from, const char *to)
{
	const char *last;
	json_t *o = parent_of(j, from, false, &last), *v;

	if (!o || !strcmp(from, to) || !(v = json_object_get(o, last)))
		return;
	json_incref(v);
	json_object_del(o, last);
	set_path(j, to, v);
}

void transform_json_ops(const struct transform_body *b, json_t *j)
{
	for (int i = 0; i < b->nremove; i++)
		remove_path(j, b->remove[i]);
	for (int i = 0; i < b->nrename; i++)
		rename_path(j, b->rename[i].name, b->rename[i].value);
	for (int i = 0; i < b->nset; i++)
		set_path(j, b->set_path[i], json_deep_copy(b->set_value[i]));
}

json_t *transform_json_response(const struct transform_body *b, json_t *j)
{
	const struct compose_call *c = &b->shape;
	json_t *r;

	/* compose's shaping: the same target / allow / deny as a composed call's */
	if (c->target || c->nallow || c->ndeny)
		r = compose_shape(c, j);
	else
		r = json_incref(j);
	if (!r)
		return NULL;
	transform_json_ops(b, r);
	return r;
}
