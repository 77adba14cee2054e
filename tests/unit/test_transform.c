/* Transformation: config errors with JSON paths, the fixed header op order
 * remove → rename → set → add, renames of repeated headers, request header templates,
 * query ops, the regex path rewrite (normalised, never escaping the root) and JSON body
 * ops on dot paths. */
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

	CHECK(!parse("{\"request\": {\"cookies\": {}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.cookies"));
	CHECK(!parse("{\"request\": {\"path\": {\"from\": \"^/a/(\", \"to\": \"/b\"}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.path.from: invalid regular expression"));
	CHECK(!parse("{\"request\": {\"path\": {\"from\": \"^/a/(.*)$\", \"to\": \"/b/$2\"}}}",
		     &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.path.to: names group $2"));
	CHECK(!parse("{\"request\": {\"path\": {\"from\": \"^/a\", \"to\": \"b\"}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.path.to: must start with"));
	CHECK(!parse("{\"request\": {\"headers\": {\"set\": {\"X-A\": \"{nope}\"}}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.headers.set.X-A: unknown template"));
	CHECK(!parse("{\"request\": {\"headers\": {\"set\": {\"X-A\": \"{calls.a}\"}}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.headers.set.X-A: unknown template"));
	CHECK(!parse("{\"request\": {\"headers\": {\"set\": {\"Content-Length\": \"1\"}}}}",
		     &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.headers.set.Content-Length: "
				"\"Content-Length\" is set by the gateway"));
	CHECK(!parse("{\"request\": {\"headers\": {\"rename\": {\"X-A\": \"Host\"}}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.headers.rename.X-A"));
	CHECK(!parse("{\"request\": {\"query\": {\"set\": {\"a b\": \"1\"}}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.query.set.a b"));
	CHECK(!parse("{\"request\": {\"body\": {\"remove\": [\"a..b\"]}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.body.remove[0]: is not a dot path"));
	CHECK(!parse("{\"request\": {\"body\": {\"rename\": {\"a\": 1}}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.body.rename.a"));
	CHECK(parse_free("{\"request\": {\"headers\": {\"set\": {\"X-C\": \"{consumer}\"}}, "
			 "\"query\": {\"remove\": [\"d\"], \"set\": {\"v\": \"2\"}}, "
			 "\"path\": {\"from\": \"^/api/v1/(.*)$\", \"to\": \"/v2/$1\"}, "
			 "\"body\": {\"remove\": [\"password\"], \"set\": {\"a.b\": [1]}}}}",
			 &errs));
	CHECK(!parse("{\"response\": {\"body_format\": \"xml\"}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.body_format"));
	CHECK(!parse("{\"request\": {\"body_format\": \"negotiate\"}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.request.body_format"));
	CHECK(!parse("{\"response\": {\"body\": {\"group\": \"x\"}}}", &errs));
	CHECK(strstr(errs.text, "routes[1].transform.response.body.group"));
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

static struct http_request req_of(const char *head)
{
	struct http_request req;

	CHECK(http_parse_request(head, strlen(head), NULL, &req) > 0);
	return req;
}

static void test_request_headers_templates(void)
{
	struct cfg_errs errs = {0};
	struct transform_policy *p = parse(
	    "{\"request\": {\"headers\": {\"remove\": [\"X-Debug\"], "
	    "\"rename\": {\"X-Old\": \"X-New\"}, \"set\": {\"X-Client\": \"{consumer}\", "
	    "\"X-Seg\": \"{path.2}-{query.q}-{header.x-old}\"}, \"add\": {\"X-Via\": \"xgate\", "
	    "\"X-Missing\": \"{header.nope}\"}}}}",
	    &errs);
	static const char head[] = "GET /api/users/7?q=a%20b HTTP/1.1\r\nHost: h\r\n"
				   "X-Debug: 1\r\nX-Old: o\r\nX-Client: forged\r\n\r\n";
	struct http_request req = req_of(head);
	struct compose_vars v = {.consumer = "", .req = &req, .path = "/api/users/7",
				 .path_len = 12};
	struct transform_edits e;

	CHECK(p != NULL);
	transform_req_headers(&p->req, req.headers, req.nheaders, &v, &e);
	/* drops: X-Debug, X-Old (renamed), X-Client (set), X-Seg (set) */
	CHECK_EQ(e.ndrop, 4);
	CHECK_STR(e.drop[2], "X-Client");
	/* no consumer: the forged X-Client is dropped and nothing is written for it */
	CHECK_EQ(e.nadd, 3);
	CHECK_STR(e.add[0].name, "X-New");
	CHECK(e.add[0].value.len == 1 && e.add[0].value.p[0] == 'o');
	CHECK_STR(e.add[1].name, "X-Seg");
	CHECK(e.add[1].value.len == 11 && !memcmp(e.add[1].value.p, "users-a b-o", 11));
	CHECK_STR(e.add[2].name, "X-Via");
	v.consumer = "mobile-app";
	transform_req_headers(&p->req, req.headers, req.nheaders, &v, &e);
	CHECK_EQ(e.nadd, 4);
	CHECK_STR(e.add[1].name, "X-Client");
	CHECK(e.add[1].value.len == 10 && !memcmp(e.add[1].value.p, "mobile-app", 10));
	transform_policy_free(p);
	cfg_errs_free(&errs);
}

static void test_query_and_path(void)
{
	struct cfg_errs errs = {0};
	struct transform_policy *p = parse(
	    "{\"request\": {\"query\": {\"remove\": [\"debug\"], \"set\": {\"v\": \"2\", "
	    "\"who\": \"{consumer}\"}}, \"path\": {\"from\": \"^/api/v1/(.*)$\", \"to\": \"/v2/$1\"}}}",
	    &errs);
	struct compose_vars v = {.consumer = "a b"};
	char out[256];
	size_t n;

	CHECK(p != NULL);
	CHECK(transform_query(p, (struct http_str){"debug=1&x=1&v=9&&y", 18}, &v, out, sizeof(out),
			      &n));
	out[n] = '\0';
	CHECK_STR(out, "x=1&y&v=2&who=a%20b");
	v.consumer = "";
	CHECK(transform_query(p, (struct http_str){"", 0}, &v, out, sizeof(out), &n));
	out[n] = '\0';
	CHECK_STR(out, "v=2");
	CHECK(!transform_query(p, (struct http_str){"x=1", 3}, &v, out, 4, &n));

	CHECK_EQ(transform_path(p, "/api/v1/users/7", 15, out, sizeof(out), &n), 0);
	out[n] = '\0';
	CHECK_STR(out, "/v2/users/7");
	CHECK_EQ(transform_path(p, "/other", 6, out, sizeof(out), &n), 1);
	/* the captured part cannot climb out of /v2 nor add a line end */
	CHECK_EQ(transform_path(p, "/api/v1/../../etc", 17, out, sizeof(out), &n), -1);
	CHECK_EQ(transform_path(p, "/api/v1/a/../b", 14, out, sizeof(out), &n), 0);
	out[n] = '\0';
	CHECK_STR(out, "/v2/b");
	CHECK_EQ(transform_path(p, "/api/v1/a\tX: y", 14, out, sizeof(out), &n), -1);
	CHECK_EQ(transform_path(p, "/api/v1/a\r\nX: y", 16, out, sizeof(out), &n), 1); /* '.' */
	CHECK_EQ(transform_path(p, "/api/v1/a?b", 11, out, sizeof(out), &n), -1);
	CHECK_EQ(transform_path(p, "/api/v1/a", 9, out, 4, &n), -1); /* does not fit */
	transform_policy_free(p);
	cfg_errs_free(&errs);
}

static char *ops(const char *policy, const char *body)
{
	struct cfg_errs errs = {0};
	struct transform_policy *p = parse(policy, &errs);
	json_t *j = json_loads(body, 0, NULL);
	char *out;

	CHECK(p && j);
	transform_json_ops(&p->req_body, j);
	out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	transform_policy_free(p);
	cfg_errs_free(&errs);
	return out;
}

static void test_json_body_ops(void)
{
	char *s = ops("{\"request\": {\"body\": {\"remove\": [\"password\", \"a.secret\", "
		      "\"nope.x\"], \"rename\": {\"userName\": \"user_name\", \"a.k\": \"b.c.k\"}, "
		      "\"set\": {\"source\": \"gateway\", \"meta.v\": 2, \"userName\": null}}}}",
		      "{\"userName\": \"ann\", \"password\": \"x\", \"a\": {\"secret\": 1, \"k\": "
		      "[1]}, \"meta\": 5}");

	/* meta is not an object: set cannot go into it and leaves it */
	CHECK_STR(s, "{\"a\":{},\"b\":{\"c\":{\"k\":[1]}},\"meta\":5,\"source\":\"gateway\","
		     "\"userName\":null,\"user_name\":\"ann\"}");
	free(s);
	s = ops("{\"request\": {\"body\": {\"remove\": [\"a\"]}}}", "[1,2]");
	CHECK_STR(s, "[1,2]"); /* not an object: nothing to do */
	free(s);
}

static void test_json_response(void)
{
	struct cfg_errs errs = {0};
	struct transform_policy *p = parse(
	    "{\"response\": {\"body\": {\"target\": \"data\", \"allow\": [\"id\", \"a.b\"], "
	    "\"rename\": {\"id\": \"key\"}, \"set\": {\"x\": true}}}}",
	    &errs);
	json_t *j = json_loads("{\"data\": {\"id\": 1, \"a\": {\"b\": 2, \"c\": 3}, \"d\": 4}}", 0,
			       NULL);
	json_t *r;
	char *s;

	CHECK(p && j);
	r = transform_json_response(&p->resp_body, j);
	s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK_STR(s, "{\"a\":{\"b\":2},\"key\":1,\"x\":true}");
	free(s);
	json_decref(r);
	json_decref(j);
	j = json_loads("{\"other\": 1}", 0, NULL);
	CHECK(transform_json_response(&p->resp_body, j) == NULL); /* no target: 502 */
	json_decref(j);
	transform_policy_free(p);
	/* without shaping, the ops run on whatever JSON came */
	p = parse("{\"response\": {\"body\": {\"remove\": [\"a\"]}}}", &errs);
	j = json_loads("[1]", 0, NULL);
	r = transform_json_response(&p->resp_body, j);
	CHECK(r == j);
	json_decref(r);
	json_decref(j);
	transform_policy_free(p);
	cfg_errs_free(&errs);
}

static char *to_xml(const char *json)
{
	json_t *j = json_loads(json, 0, NULL);
	size_t n = 0;
	char *x;

	CHECK(j != NULL);
	x = transform_json_to_xml(j, &n);
	json_decref(j);
	CHECK(!x || strlen(x) == n);
	return x;
}

static char *to_json(const char *xml)
{
	json_t *j = transform_xml_to_json(xml, strlen(xml));
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return s;
}

#define XML_DECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"

static void test_xml_mapping(void)
{
	static const char spec_xml[] =
	    "<user id=\"7\"><name>Ann</name><role>a</role><role>b</role></user>";
	static const char spec_json[] =
	    "{\"user\":{\"@id\":\"7\",\"name\":\"Ann\",\"role\":[\"a\",\"b\"]}}";
	char *s;

	/* the SPEC example, both ways */
	s = to_json(spec_xml);
	CHECK_STR(s, spec_json);
	free(s);
	s = to_xml(spec_json);
	CHECK_STR(s, XML_DECL "<user id=\"7\"><name>Ann</name><role>a</role><role>b</role></user>");
	free(s);
	/* text beside attributes or children is #text; blank text between elements is not */
	s = to_json("<?xml version=\"1.0\"?>\n<a x=\"1\">hi<b/>\n  <c>  </c></a>");
	CHECK_STR(s, "{\"a\":{\"@x\":\"1\",\"b\":\"\",\"c\":\"  \",\"#text\":\"hi\"}}");
	free(s);
	s = to_xml("{\"a\": {\"@x\": 1, \"#text\": \"t<&>\\\"\", \"n\": null, \"b\": [true, 2.5]}}");
	CHECK_STR(s, XML_DECL "<a x=\"1\">t&lt;&amp;&gt;&quot;<n></n><b>true</b><b>2.5</b></a>");
	free(s);
	/* several top-level keys (or no object) are wrapped in <root> */
	s = to_xml("{\"a\": 1, \"b\": \"x\"}");
	CHECK_STR(s, XML_DECL "<root><a>1</a><b>x</b></root>");
	free(s);
	s = to_xml("[1, 2]");
	CHECK_STR(s, XML_DECL "<root><item>1</item><item>2</item></root>");
	free(s);
	/* keys that are no XML names, nested values as attributes, control characters */
	CHECK(to_xml("{\"a b\": 1}") == NULL);
	CHECK(to_xml("{\"a\": {\"@x\": [1]}}") == NULL);
	CHECK(to_xml("{\"a\": \"\\u0001\"}") == NULL);
	/* not well-formed; entities are not expanded from a DTD, nothing is fetched */
	CHECK(to_json("<a><b></a>") == NULL);
	CHECK(to_json("{\"a\": 1}") == NULL);
	s = to_json("<!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><a>&e;</a>");
	CHECK(!s || !strstr(s, "root:"));
	free(s);
}

static void test_prefers_xml(void)
{
	static const struct {
		const char *accept;
		bool xml;
	} cases[] = {
	    {"application/xml", true},
	    {"text/xml", true},
	    {"application/json", false},
	    {"application/json, application/xml;q=0.9", false},
	    {"application/json;q=0.5, application/xml", true},
	    {"*/*", false},
	    {"application/xml;q=0, */*", false},
	    {"*/*;q=0.1, application/xml", true},
	    {"", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(transform_prefers_xml((struct http_str){cases[i].accept,
							      strlen(cases[i].accept)}) ==
		      cases[i].xml);
}

int main(void)
{
	RUN(test_xml_mapping);
	RUN(test_prefers_xml);
	RUN(test_json_response);
	RUN(test_request_headers_templates);
	RUN(test_query_and_path);
	RUN(test_json_body_ops);
	RUN(test_config_errors);
	RUN(test_order);
	RUN(test_rename_repeated);
	return CHECK_DONE();
}
