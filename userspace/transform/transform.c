/* Response-header transformation: policy parsing and the edits of one response. */
#include <ctype.h>
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

/* {"Name": "value"} for rename / set / add; rename values are header names. */
static void parse_pairs(json_t *h, const char *key, const char *path, bool value_is_name,
			struct transform_pair **out, int *n, struct cfg_errs *errs)
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
		/* Templates ({consumer}, ...) are not expanded here: refuse rather than send
		 * the braces literally and change meaning once they are. */
		if (!value_is_name && strchr(json_string_value(v), '{')) {
			cfg_err(errs, ip, "templates are not supported in response headers");
			continue;
		}
		(*out)[*n].name = strdup(name);
		(*out)[*n].value = strdup(json_string_value(v));
		(*n)++;
	}
}

static void parse_headers(json_t *h, const char *path, struct transform_headers *th,
			  struct cfg_errs *errs)
{
	static const char *const keys[] = {"remove", "rename", "set", "add", NULL};
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];

	cfg_check_keys(h, path, keys, errs);
	if (cfg_get_strings(h, "remove", path, false, &th->remove, &th->nremove, errs))
		for (int i = 0; i < th->nremove; i++)
			if (!is_token(th->remove[i]))
				cfg_err(errs, cfg_path_idx(ip, cfg_path_key(p, path, "remove"), i),
					"is not a valid header name");
	parse_pairs(h, "rename", path, true, &th->rename, &th->nrename, errs);
	parse_pairs(h, "set", path, false, &th->set, &th->nset, errs);
	parse_pairs(h, "add", path, false, &th->add, &th->nadd, errs);
	if (th->nremove + 2 * th->nrename + 2 * th->nset + th->nadd > TRANSFORM_MAX_OPS)
		cfg_err(errs, path,
			"at most %d header edits (remove and add count 1, rename and set 2)",
			TRANSFORM_MAX_OPS);
}

struct transform_policy *transform_policy_parse(json_t *o, const char *path, struct cfg_errs *errs)
{
	static const char *const keys[] = {"response", NULL};
	static const char *const rkeys[] = {"headers", NULL};
	char p[CFG_PATH_MAX], hp[CFG_PATH_MAX];
	struct transform_policy *tp;
	size_t before = errs->len;
	json_t *resp, *h;

	if (!json_is_object(o)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	cfg_check_keys(o, path, keys, errs);
	tp = calloc(1, sizeof(*tp));
	if (!tp) {
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	resp = cfg_get_object(o, "response", path, errs);
	if (resp) {
		cfg_path_key(p, path, "response");
		cfg_check_keys(resp, p, rkeys, errs);
		h = cfg_get_object(resp, "headers", p, errs);
		if (h)
			parse_headers(h, cfg_path_key(hp, p, "headers"), &tp->resp, errs);
	}
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

void transform_policy_free(struct transform_policy *p)
{
	if (!p)
		return;
	cfg_strings_free(p->resp.remove, p->resp.nremove);
	pairs_free(p->resp.rename, p->resp.nrename);
	pairs_free(p->resp.set, p->resp.nset);
	pairs_free(p->resp.add, p->resp.nadd);
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
