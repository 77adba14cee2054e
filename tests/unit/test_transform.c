/* Response-header transformation: config errors with JSON paths, the fixed op order
 * remove → rename → set → add, and renames of repeated headers. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "transform/transform.h"
#include "unit/check.h"

static struct transform_policy *parse(const char *json, struct cfg_errs *errs)
{
	json_t *o = json_loads(json, 0, NULL);
	struct transform_policy *p;

	cfg_errs_free(errs);
	memset(errs, 0, sizeof(*errs));
	p = transform_policy_parse(o, "routes[1].transform", errs);
	json_decref(o);
	return p;
}

static bool parse_free(const char *json, struct cfg_errs *errs)
{
	struct transform_policy *p = parse(json, errs);

	transform_policy_free(p);
	return p != NULL;
}

static void test_config_errors(void)
{
	struct cfg_errs errs = {0};

	CHECK(!parse("{\"request\": {}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request"));
	CHECK(!parse("{\"response\": {\"body\": {}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.body"));
	CHECK(!parse("{\"response\": {\"headers\": {\"remove\": [\"bad name\"]}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.headers.remove[0]"));
	CHECK(!parse("{\"response\": {\"headers\": {\"set\": {\"X-A\": \"a\\r\\nX-B: b\"}}}}",
		     &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.headers.set.X-A"));
	CHECK(!parse("{\"response\": {\"headers\": {\"rename\": {\"X-A\": \"no good\"}}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.headers.rename.X-A"));
	CHECK(!parse("{\"response\": {\"headers\": {\"add\": {\"X-A\": 1}}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.headers.add.X-A: must be a string"));
	CHECK(!parse("{\"response\": {\"headers\": {\"add\": {\"X-A\": \"{consumer}\"}}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.headers.add.X-A"));
	CHECK(!parse("{\"response\": {\"headers\": {\"prepend\": {}}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.headers.prepend"));
	/* 8 sets are 16 edits and fit; a 9th op does not */
	CHECK(parse_free("{\"response\": {\"headers\": {\"set\": {\"A\": \"1\", \"B\": \"1\", "
			 "\"C\": \"1\", \"D\": \"1\", \"E\": \"1\", \"F\": \"1\", \"G\": \"1\", "
			 "\"H\": \"1\"}}}}",
			 &errs));
	CHECK(!parse("{\"response\": {\"headers\": {\"remove\": [\"X\"], \"set\": {\"A\": \"1\", "
		     "\"B\": \"1\", \"C\": \"1\", \"D\": \"1\", \"E\": \"1\", \"F\": \"1\", "
		     "\"G\": \"1\", \"H\": \"1\"}}}}",
		     &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.headers: at most 16 header edits"));
	CHECK(!parse("[]", &errs));
	CHECK(strstr(errs.text, "routes[1].transform: must be an object"));
	cfg_errs_free(&errs);
}

static struct http_header hdr(const char *n, const char *v)
{
	return (struct http_header){{n, strlen(n)}, {v, strlen(v)}};
}

static bool has_add(const struct transform_edits *e, const char *name, const char *value)
{
	for (int i = 0; i < e->nadd; i++)
		if (!strcasecmp(e->add[i].name, name) && e->add[i].value.len == strlen(value) &&
		    !memcmp(e->add[i].value.p, value, e->add[i].value.len))
			return true;
	return false;
}

static bool has_drop(const struct transform_edits *e, const char *name)
{
	for (int i = 0; i < e->ndrop; i++)
		if (!strcasecmp(e->drop[i], name))
			return true;
	return false;
}

static void test_order(void)
{
	struct cfg_errs errs = {0};
	struct http_header h[] = {hdr("Server", "nginx"), hdr("X-Old", "1"), hdr("X-Old", "2"),
				  hdr("X-Gone", "g")};
	struct transform_policy *p;
	struct transform_edits e;

	/* X-Gone is removed before the rename sees it; set replaces the renamed X-Set. */
	p = parse(
	    "{\"response\": {\"headers\": {\"remove\": [\"Server\", \"X-Gone\"],"
	    "\"rename\": {\"X-Old\": \"X-New\", \"X-Gone\": \"X-Back\", \"Server\": \"X-Set\"},"
	    "\"set\": {\"Cache-Control\": \"no-store\", \"X-New\": \"s\"},"
	    "\"add\": {\"X-New\": \"a\"}}}}",
	    &errs);
	CHECK(p);
	transform_resp_headers(&p->resp, h, 4, &e);
	CHECK(has_drop(&e, "server") && has_drop(&e, "x-gone") && has_drop(&e, "x-old"));
	CHECK(!has_add(&e, "X-Back", "g"));
	CHECK(!has_add(&e, "X-Set", "nginx"));
	/* the renamed lines were replaced by the set; the add appends after it */
	CHECK(!has_add(&e, "X-New", "1") && !has_add(&e, "X-New", "2"));
	CHECK(has_add(&e, "X-New", "s") && has_add(&e, "X-New", "a"));
	CHECK(has_add(&e, "Cache-Control", "no-store"));
	CHECK(e.nadd == 3);
	transform_policy_free(p);
	cfg_errs_free(&errs);
}

static void test_rename_repeated(void)
{
	struct cfg_errs errs = {0};
	struct http_header h[] = {hdr("x-old", "1"), hdr("X-Other", "o"), hdr("X-OLD", "2")};
	struct transform_policy *p;
	struct transform_edits e;

	p = parse("{\"response\": {\"headers\": {\"rename\": {\"X-Old\": \"X-New\"}}}}", &errs);
	CHECK(p);
	transform_resp_headers(&p->resp, h, 3, &e);
	CHECK(e.ndrop == 1 && has_drop(&e, "X-Old"));
	CHECK(e.nadd == 2 && has_add(&e, "X-New", "1") && has_add(&e, "X-New", "2"));
	CHECK(!strcmp(e.add[0].name, "X-New") && e.add[0].value.p[0] == '1');
	transform_policy_free(p);
	/* absent header: rename is a no-op apart from the (harmless) drop */
	p = parse("{\"response\": {\"headers\": {\"rename\": {\"X-None\": \"X-New\"}}}}", &errs);
	transform_resp_headers(&p->resp, h, 3, &e);
	CHECK(e.nadd == 0);
	transform_policy_free(p);
	cfg_errs_free(&errs);
}

int main(void)
{
	RUN(test_config_errors);
	RUN(test_order);
	RUN(test_rename_repeated);
	return CHECK_DONE();
}
