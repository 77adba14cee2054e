/*
 * grpc/: descriptor sets (compiled from tests/grpc/kinds.proto with protoc at test time),
 * JSON <-> wire round trips for every field kind, errors naming fields, path templates,
 * request assembly from path/query/body, response JSON, framing and status mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grpc/grpc.h"
#include "unit/check.h"

static struct grpc_pool *pool;
static const struct pb_message *kinds;
static char err[512];

static bool load_pool(void)
{
	char path[] = "/tmp/xgate-test-grpc-XXXXXX", cmd[512];
	int fd = mkstemp(path);

	if (fd < 0)
		return false;
	close(fd);
	snprintf(cmd, sizeof(cmd),
		 "protoc -Itests/grpc -I/usr/include --include_imports --descriptor_set_out=%s "
		 "tests/grpc/kinds.proto",
		 path);
	if (system(cmd) == 0)
		pool = grpc_pool_load_file(path, err, sizeof(err));
	unlink(path);
	if (!pool)
		fprintf(stderr, "load: %s\n", err);
	return pool != NULL;
}

/* JSON text -> wire -> JSON text (compact, sorted keys). */
static char *round_trip(const struct pb_message *m, const char *in)
{
	json_t *j = json_loads(in, 0, NULL), *out;
	char *pb = NULL, *text;
	size_t n;

	if (!j)
		return strdup("(bad test json)");
	if (!grpc_json_to_pb(m, j, &pb, &n, err, sizeof(err))) {
		json_decref(j);
		return strdup(err);
	}
	json_decref(j);
	out = grpc_pb_to_json(m, pb, n, err, sizeof(err));
	free(pb);
	if (!out)
		return strdup(err);
	text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(out);
	return text;
}

#define RT(in, want)                                                                              \
	do {                                                                                       \
		char *_got = round_trip(kinds, in);                                               \
		CHECK_STR(_got, want);                                                             \
		free(_got);                                                                        \
	} while (0)

static void test_load(void)
{
	const struct grpc_service *s = grpc_find_service(pool, "test.v1.Kitchen");

	CHECK(kinds != NULL);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_EQ(s->nmethods, 8);
	CHECK_STR(s->methods[1].path, "/test.v1.Kitchen/GetUser");
	CHECK(s->methods[7].server_streaming);
	CHECK_EQ(s->nrules, 8); /* 7 rules + 1 additional binding */
	CHECK(grpc_find_message(pool, ".google.protobuf.Timestamp") != NULL);
	CHECK(grpc_pool_load("\x0a\x05zzzzz", 7, err, sizeof(err)) == NULL);
	CHECK(grpc_pool_load_file("/nonexistent.pb", err, sizeof(err)) == NULL);
	CHECK(strstr(err, "/nonexistent.pb") != NULL);
}

static void test_scalars(void)
{
	RT("{\"fDouble\": 1.5, \"fFloat\": 0.25, \"fInt64\": \"-9007199254740993\", "
	   "\"fUint64\": \"18446744073709551615\", \"fInt32\": -7, \"fFixed64\": 5, "
	   "\"fFixed32\": 4294967295, \"fBool\": true, \"fString\": \"h\\u00e9\", "
	   "\"fBytes\": \"AAEC/w==\", \"fUint32\": 3, \"fEnum\": \"GREEN\", \"fSfixed32\": -2, "
	   "\"fSfixed64\": \"-3\", \"fSint32\": -100, \"fSint64\": \"-200\"}",
	   "{\"fBool\":true,\"fBytes\":\"AAEC/w==\",\"fDouble\":1.5,\"fEnum\":\"GREEN\","
	   "\"fFixed32\":4294967295,\"fFixed64\":\"5\",\"fFloat\":0.25,\"fInt32\":-7,"
	   "\"fInt64\":\"-9007199254740993\",\"fSfixed32\":-2,\"fSfixed64\":\"-3\","
	   "\"fSint32\":-100,\"fSint64\":\"-200\",\"fString\":\"h\xc3\xa9\",\"fUint32\":3,"
	   "\"fUint64\":\"18446744073709551615\"}");
	/* original names, numbers as strings, enum numbers, NaN/Infinity, url-safe base64 */
	RT("{\"f_int32\": \"12\", \"f_enum\": 1, \"f_double\": \"NaN\", \"f_float\": "
	   "\"-Infinity\", \"f_bytes\": \"_-8\"}",
	   "{\"fBytes\":\"/+8=\",\"fDouble\":\"NaN\",\"fEnum\":\"RED\",\"fFloat\":\"-Infinity\","
	   "\"fInt32\":12}");
	/* defaults are omitted; proto3 optional keeps its presence */
	RT("{\"fInt32\": 0, \"fString\": \"\", \"fBool\": false, \"fEnum\": "
	   "\"COLOR_UNSPECIFIED\", \"optInt32\": 0}",
	   "{\"optInt32\":0}");
	RT("{\"fEnum\": 7}", "{\"fEnum\":7}");
}

static void test_composites(void)
{
	RT("{\"inner\": {\"label\": \"x\", \"n\": 2}, \"rInt32\": [1, -2, 3], \"rString\": "
	   "[\"a\", \"b\"], \"rInner\": [{\"n\": 1}, {}], \"mStr\": {\"k\": 5, \"z\": 0}, "
	   "\"mInt\": {\"-4\": {\"label\": \"m\"}}, \"rEnum\": [\"RED\", 2], \"rDouble\": [0.5]}",
	   "{\"inner\":{\"label\":\"x\",\"n\":2},\"mInt\":{\"-4\":{\"label\":\"m\"}},"
	   "\"mStr\":{\"k\":5,\"z\":0},\"rDouble\":[0.5],\"rEnum\":[\"RED\",\"GREEN\"],"
	   "\"rInner\":[{\"n\":1},{}],\"rInt32\":[1,-2,3],\"rString\":[\"a\",\"b\"]}");
	RT("{\"oNum\": 0}", "{\"oNum\":0}");
	RT("{\"oText\": \"t\", \"inner\": null}", "{\"oText\":\"t\"}");
}

static void test_wkt(void)
{
	RT("{\"ts\": \"1972-01-01T10:00:20.021Z\", \"dur\": \"-1.5s\", \"wInt32\": 0, "
	   "\"wString\": \"s\", \"wBool\": false, \"wBytes\": \"AQ==\", \"wInt64\": \"9\", "
	   "\"wDouble\": 2.5, \"mask\": \"fooBar,baz.quxQuux\"}",
	   "{\"dur\":\"-1.500s\",\"mask\":\"fooBar,baz.quxQuux\",\"ts\":\"1972-01-01T10:00:20."
	   "021Z\",\"wBool\":false,\"wBytes\":\"AQ==\",\"wDouble\":2.5,\"wInt32\":0,\"wInt64\":"
	   "\"9\",\"wString\":\"s\"}");
	RT("{\"ts\": \"2020-05-06T07:08:09+02:00\", \"dur\": \"3s\"}",
	   "{\"dur\":\"3s\",\"ts\":\"2020-05-06T05:08:09Z\"}");
	RT("{\"st\": {\"a\": [1, \"x\", null, true, {\"b\": {}}]}, \"val\": null}",
	   "{\"st\":{\"a\":[1,\"x\",null,true,{\"b\":{}}]},\"val\":null}");
}

#define BAD(in, want_sub)                                                                         \
	do {                                                                                       \
		char *_got = round_trip(kinds, in);                                               \
		if (!strstr(_got, want_sub))                                                       \
			fprintf(stderr, "  got: %s\n", _got);                                      \
		CHECK(strstr(_got, want_sub) != NULL);                                             \
		free(_got);                                                                        \
	} while (0)

static void test_errors(void)
{
	BAD("{\"nope\": 1}", "nope: unknown field");
	BAD("{\"fInt32\": \"x\"}", "fInt32: not a 32-bit integer");
	BAD("{\"fInt32\": 3000000000}", "fInt32: not a 32-bit integer");
	BAD("{\"fInt32\": 1.5}", "fInt32: not a 32-bit integer");
	BAD("{\"fUint64\": -1}", "fUint64: not an unsigned");
	BAD("{\"fBool\": \"true\"}", "fBool: not a boolean");
	BAD("{\"fString\": 5}", "fString: not a string");
	BAD("{\"fBytes\": \"!!\"}", "fBytes: not base64");
	BAD("{\"fEnum\": \"BLUE\"}", "fEnum: not a value of the enum");
	BAD("{\"inner\": {\"n\": \"q\"}}", "inner.n: not a 32-bit integer");
	BAD("{\"rInt32\": [1, \"z\"]}", "rInt32[1]: not a 32-bit integer");
	BAD("{\"rInt32\": 1}", "rInt32: not an array");
	BAD("{\"mStr\": {\"k\": \"v\"}}", "mStr.k: not a 32-bit integer");
	BAD("{\"oText\": \"a\", \"oNum\": 1}", "a second field of the same oneof");
	BAD("{\"ts\": \"yesterday\"}", "ts: not an RFC 3339 timestamp");
	BAD("{\"dur\": \"5m\"}", "dur: not a duration");
	BAD("{\"fFloat\": 1e300}", "fFloat: out of range");
	BAD("[1]", "not an object");
}

static void test_wire_decode(void)
{
	/* unpacked encoding of a packed field, and unknown fields, are accepted */
	const char unpacked[] = {0x90, 0x01, 0x05, 0x90, 0x01, 0x06, 0xf8, 0x07, 0x01};
	json_t *j = grpc_pb_to_json(kinds, unpacked, sizeof(unpacked), err, sizeof(err));
	char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;

	CHECK_STR(t, "{\"rInt32\":[5,6]}");
	free(t);
	json_decref(j);
	CHECK(grpc_pb_to_json(kinds, "\x0a\x05" "ab", 4, err, sizeof(err)) == NULL);
	/* a string field with a bytes that is no UTF-8 */
	CHECK(grpc_pb_to_json(kinds, "\x4a\x01\xff", 3, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "fString") != NULL);
}

static void test_templates(void)
{
	struct grpc_binding b = {0};

	CHECK(grpc_template_compile("/v1/{name=shelves/*/books/*}:get", &b, err, sizeof(err)));
	CHECK_EQ(b.nsegs, 5);
	CHECK_EQ(b.nvars, 1);
	CHECK_EQ(b.vars[0].start, 1);
	CHECK_EQ(b.vars[0].end, 5);
	CHECK_STR(b.verb, "get");
	grpc_binding_clear(&b);
	CHECK(!grpc_template_compile("v1/x", &b, err, sizeof(err)));
	grpc_binding_clear(&b);
	CHECK(!grpc_template_compile("/v1/**/x", &b, err, sizeof(err)));
	grpc_binding_clear(&b);
	CHECK(!grpc_template_compile("/v1/{a", &b, err, sizeof(err)));
	grpc_binding_clear(&b);
	CHECK(!grpc_template_compile("/v1//x", &b, err, sizeof(err)));
	grpc_binding_clear(&b);
}

static char *request_json(const char *method, const char *path, const char *query,
			  const char *body, const char **meth_path)
{
	struct grpc_match m;
	enum grpc_match_result r = grpc_match(pool, method, path, strlen(path), &m);
	char *pb, *text;
	size_t n;
	json_t *j;

	if (r != GRPC_MATCH)
		return strdup(r == GRPC_BAD_METHOD ? "bad method" : "no match");
	*meth_path = m.b->method->path;
	if (!grpc_build_request(&m, body, body ? strlen(body) : 0, query, &pb, &n, err,
				sizeof(err))) {
		grpc_match_clear(&m);
		return strdup(err);
	}
	j = grpc_pb_to_json(m.b->method->in, pb, n, err, sizeof(err));
	free(pb);
	grpc_match_clear(&m);
	text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : strdup(err);
	json_decref(j);
	return text;
}

#define REQ(method, path, query, body, want_method, want)                                        \
	do {                                                                                       \
		const char *_mp = "";                                                              \
		char *_got = request_json(method, path, query, body, &_mp);                       \
		CHECK_STR(_got, want);                                                             \
		CHECK_STR(_mp, want_method);                                                       \
		free(_got);                                                                        \
	} while (0)

static void test_requests(void)
{
	REQ("GET", "/v1/users/u%2F1", "verbose=true&filter.label=a+b&tags=x&tags=y", NULL,
	    "/test.v1.Kitchen/GetUser",
	    "{\"filter\":{\"label\":\"a b\"},\"id\":\"u/1\",\"tags\":[\"x\",\"y\"],\"verbose\":true}");
	REQ("GET", "/v1/people/p7", NULL, NULL, "/test.v1.Kitchen/GetUser", "{\"id\":\"p7\"}");
	REQ("POST", "/v1/users", NULL, "{\"id\":\"n\",\"displayName\":\"N\",\"age\":\"3\"}",
	    "/test.v1.Kitchen/CreateUser", "{\"age\":\"3\",\"displayName\":\"N\",\"id\":\"n\"}");
	REQ("PATCH", "/v1/users/9", NULL, "{\"display_name\":\"D\"}", "/test.v1.Kitchen/UpdateUser",
	    "{\"id\":\"9\",\"user\":{\"displayName\":\"D\"}}");
	REQ("GET", "/v1/shelves/s1/books/b%2F2", NULL, NULL, "/test.v1.Kitchen/GetBook",
	    "{\"name\":\"shelves/s1/books/b%2F2\"}");
	REQ("GET", "/v1/files/a/b/c.txt", NULL, NULL, "/test.v1.Kitchen/GetFile",
	    "{\"path\":\"a/b/c.txt\"}");
	REQ("POST", "/v1/ops/42:cancel", NULL, NULL, "/test.v1.Kitchen/Cancel",
	    "{\"name\":\"ops/42\"}");
	REQ("POST", "/test.v1.Kitchen/Echo", NULL, "{\"fInt32\": 4}", "/test.v1.Kitchen/Echo",
	    "{\"fInt32\":4}");
	REQ("POST", "/test.v1.Kitchen/Echo", NULL, "", "/test.v1.Kitchen/Echo", "{}");
	REQ("DELETE", "/v1/users/1", NULL, NULL, "", "bad method");
	REQ("GET", "/v1/shelves/s1", NULL, NULL, "", "no match");
	REQ("GET", "/v1/ops/42", NULL, NULL, "", "no match");
	REQ("GET", "/v1/users/1", "nope=1", NULL, "/test.v1.Kitchen/GetUser",
	    "query parameter nope: unknown field");
	REQ("GET", "/v1/users/1", "verbose=maybe", NULL, "/test.v1.Kitchen/GetUser",
	    "query parameter verbose: not a boolean");
	REQ("POST", "/v1/users", NULL, "{\"age\":\"old\"}", "/test.v1.Kitchen/CreateUser",
	    "age: not a 64-bit integer");
	REQ("POST", "/v1/users", NULL, "{bad", "/test.v1.Kitchen/CreateUser",
	    "body is not JSON: string or '}' expected near 'bad'");
}

static void test_select_errors(void)
{
	const char *const unknown[] = {"test.v1.Nope"};
	struct grpc_pool *p2 = NULL;
	char path[] = "/tmp/xgate-test-grpc-XXXXXX", cmd[512];
	int fd = mkstemp(path);

	close(fd);
	snprintf(cmd, sizeof(cmd),
		 "protoc -Itests/grpc -I/usr/include --include_imports --descriptor_set_out=%s "
		 "tests/grpc/kinds.proto",
		 path);
	if (system(cmd) == 0)
		p2 = grpc_pool_load_file(path, err, sizeof(err));
	unlink(path);
	CHECK(p2 != NULL);
	if (!p2)
		return;
	CHECK(!grpc_pool_select(p2, unknown, 1, err, sizeof(err)));
	CHECK(strstr(err, "test.v1.Nope") != NULL);
	grpc_pool_free(p2);
}

static void test_response(void)
{
	const struct grpc_binding *upd = NULL, *list = NULL;
	char *frame, *text, two[64];
	size_t n;

	for (int i = 0; i < pool->nbindings; i++) {
		if (pool->bindings[i].response_body)
			upd = &pool->bindings[i];
		if (pool->bindings[i].method->server_streaming && !list)
			list = &pool->bindings[i];
	}
	CHECK(upd && list);
	if (!upd || !list)
		return;
	/* User{id: "a", display_name: "D"} */
	frame = grpc_frame("\x0a\x01" "a\x12\x01" "D", 6, &n);
	text = grpc_build_response(upd, frame, n, err, sizeof(err));
	CHECK_STR(text, "\"D\"");
	free(text);
	memcpy(two, frame, n);
	memcpy(two + n, frame, n);
	text = grpc_build_response(list, two, 2 * n, err, sizeof(err));
	CHECK_STR(text, "[{\"id\":\"a\",\"displayName\":\"D\"},{\"id\":\"a\",\"displayName\":\"D\"}]");
	free(text);
	text = grpc_build_response(list, "", 0, err, sizeof(err));
	CHECK_STR(text, "[]");
	free(text);
	CHECK(grpc_build_response(upd, two, 2 * n, err, sizeof(err)) == NULL);
	CHECK(grpc_build_response(upd, frame, n - 1, err, sizeof(err)) == NULL);
	two[0] = 1; /* compressed */
	CHECK(grpc_build_response(upd, two, n, err, sizeof(err)) == NULL);
	free(frame);
}

static void test_status(void)
{
	static const int want[] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
				   400, 409, 400, 501, 500, 503, 500, 401};
	char msg[64];

	for (int i = 0; i < 17; i++)
		CHECK_EQ(grpc_status_to_http(i), want[i]);
	CHECK_EQ(grpc_status_to_http(99), 500);
	CHECK_EQ(grpc_status_to_http(-1), 500);
	grpc_message_decode("no%20such%0Auser", 16, msg, sizeof(msg));
	CHECK_STR(msg, "no such user");
}

static void test_b64(void)
{
	unsigned char *out;
	size_t n;
	char *s = grpc_b64_encode((const unsigned char *)"hello", 5);

	CHECK_STR(s, "aGVsbG8=");
	free(s);
	CHECK(grpc_b64_decode("aGVsbG8", 7, &out, &n));
	CHECK_EQ(n, 5);
	CHECK(!memcmp(out, "hello", 5));
	free(out);
	CHECK(!grpc_b64_decode("a", 1, &out, &n));
}

int main(void)
{
	const char *const svc[] = {"test.v1.Kitchen"};

	if (!load_pool() || !grpc_pool_select(pool, svc, 1, err, sizeof(err))) {
		fprintf(stderr, "setup: %s\n", err);
		return 1;
	}
	kinds = grpc_find_message(pool, "test.v1.Kinds");
	RUN(test_load);
	RUN(test_scalars);
	RUN(test_composites);
	RUN(test_wkt);
	RUN(test_errors);
	RUN(test_wire_decode);
	RUN(test_templates);
	RUN(test_requests);
	RUN(test_select_errors);
	RUN(test_response);
	RUN(test_status);
	RUN(test_b64);
	grpc_pool_free(pool);
	return CHECK_DONE();
}
