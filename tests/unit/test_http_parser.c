/* HTTP/1.1 request/response head parser: valid forms, every rejection, byte-split input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http/http.h"

static const struct http_limits limits = {.max_request_line = 8192, .max_header_bytes = 16384};

/* Parses from an exact-size heap copy so ASan sees any read past the end. */
static int parse_n(const char *s, size_t n, const struct http_limits *lim, struct http_request *req)
{
	char *copy = malloc(n ? n : 1);
	int r;

	memcpy(copy, s, n);
	r = http_parse_request(copy, n, lim, req);
	free(copy);
	return r;
}

static int parse(const char *s, struct http_request *req)
{
	return http_parse_request(s, strlen(s), &limits, req);
}

static int parse_resp(const char *s, enum http_method m, struct http_response *resp)
{
	return http_parse_response(s, strlen(s), &limits, m, resp);
}

static int reject(const char *s)
{
	struct http_request req;

	return parse(s, &req);
}

static bool str_is(struct http_str s, const char *lit)
{
	return s.len == strlen(lit) && !memcmp(s.p, lit, s.len);
}

/*
 * Every proper prefix of a request must give INCOMPLETE or (for a request that is bad as
 * a whole) the same error; the whole must give `want`.
 */
static void check_prefixes(const char *s, int want)
{
	struct http_request req;
	size_t n = strlen(s);

	for (size_t k = 0; k < n; k++) {
		int r = parse_n(s, k, &limits, &req);

		if (r != HTTP_INCOMPLETE && (want > 0 || r != want)) {
			fprintf(stderr, "  prefix %zu of %zu: %d (whole wants %d)\n", k, n, r,
				want);
			CHECK(0);
			return;
		}
	}
	CHECK_EQ(parse_n(s, n, &limits, &req), want);
}

static void check_resp_prefixes(const char *s, enum http_method m)
{
	struct http_response resp;
	size_t n = strlen(s);

	for (size_t k = 0; k < n; k++) {
		char *copy = malloc(k ? k : 1);
		int r;

		memcpy(copy, s, k);
		r = http_parse_response(copy, k, &limits, m, &resp);
		free(copy);
		if (r != HTTP_INCOMPLETE) {
			fprintf(stderr, "  response prefix %zu of %zu: %d\n", k, n, r);
			CHECK(0);
			return;
		}
	}
	CHECK_EQ(http_parse_response(s, n, &limits, m, &resp), (int)n);
}

static void test_simple_get(void)
{
	const char *s = "GET /users/42?full=1&x=%20 HTTP/1.1\r\nHost: api.example.com\r\n"
			"User-Agent: curl/8.0\r\nAccept: */*\r\n\r\n";
	struct http_request req;

	CHECK_EQ(parse(s, &req), strlen(s));
	CHECK_EQ(req.method, HTTP_GET);
	CHECK(str_is(req.method_str, "GET"));
	CHECK(str_is(req.target, "/users/42?full=1&x=%20"));
	CHECK(str_is(req.path, "/users/42"));
	CHECK(str_is(req.query, "full=1&x=%20"));
	CHECK(str_is(req.host, "api.example.com"));
	CHECK_EQ(req.minor_version, 1);
	CHECK_EQ(req.nheaders, 3);
	CHECK(str_is(req.headers[1].name, "User-Agent"));
	CHECK(str_is(req.headers[1].value, "curl/8.0"));
	CHECK_EQ(req.body, HTTP_BODY_NONE);
	CHECK(req.keep_alive);
	CHECK(!req.expect_continue);
	CHECK(!req.upgrade);
	CHECK_EQ(req.connection.len, 0);
}

static void test_post_content_length(void)
{
	const char *s =
	    "POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\n\r\n{\"id\": 1234}";
	struct http_request req;
	int r = parse(s, &req);

	CHECK_EQ(r, strlen(s) - 12);
	CHECK_EQ(req.method, HTTP_POST);
	CHECK_EQ(req.body, HTTP_BODY_LENGTH);
	CHECK_EQ(req.content_length, 13);
	CHECK_EQ(req.query.len, 0);
}

static void test_post_chunked(void)
{
	struct http_request req;

	CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", &req) > 0);
	CHECK_EQ(req.body, HTTP_BODY_CHUNKED);
	CHECK_EQ(req.content_length, 0);
}

static void test_content_length_edges(void)
{
	struct http_request req;

	CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", &req) > 0);
	CHECK_EQ(req.body, HTTP_BODY_LENGTH);
	CHECK_EQ(req.content_length, 0);
	CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n",
		    &req) > 0);
	CHECK(req.content_length == INT64_MAX);
	CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  7 \t\r\n\r\n", &req) > 0);
	CHECK_EQ(req.content_length, 7);
	/* identical duplicates collapse */
	CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
		    &req) > 0);
	CHECK_EQ(req.content_length, 5);
}

static void test_absolute_form(void)
{
	struct http_request req;

	CHECK(
	    parse("GET http://Example.com:8080/a/b?q=1 HTTP/1.1\r\nHost: example.COM:8080\r\n\r\n",
		  &req) > 0);
	CHECK(str_is(req.host, "Example.com:8080"));
	CHECK(str_is(req.path, "/a/b"));
	CHECK(str_is(req.query, "q=1"));
	CHECK(str_is(req.target, "http://Example.com:8080/a/b?q=1"));
	CHECK(parse("GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", &req) > 0);
	CHECK(str_is(req.path, "/"));
	CHECK_EQ(req.query.len, 0);
	CHECK(parse("GET http://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n", &req) > 0);
	CHECK(str_is(req.path, "/"));
	CHECK(str_is(req.query, "x"));
	/* RFC 9112 3.2.2: a Host that names another origin is ignored, the authority wins */
	CHECK(parse("GET http://internal.test/a HTTP/1.1\r\nHost: public.test\r\n\r\n", &req) > 0);
	CHECK(str_is(req.host, "internal.test"));
	CHECK(str_is(req.path, "/a"));
	/* but it must still be there in HTTP/1.1, once, and valid */
	CHECK_EQ(parse("GET http://a.test/ HTTP/1.1\r\n\r\n", &req), HTTP_ERR_BAD);
	CHECK_EQ(parse("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b\r\n\r\n", &req),
		 HTTP_ERR_BAD);
	CHECK_EQ(parse("GET http://a.test/ HTTP/1.1\r\nHost: u@b\r\n\r\n", &req), HTTP_ERR_BAD);
	/* HTTP/1.0 may omit Host: the authority is the host */
	CHECK(parse("GET http://h.test/ HTTP/1.0\r\n\r\n", &req) > 0);
	CHECK(str_is(req.host, "h.test"));
}

static void test_asterisk_and_connect(void)
{
	struct http_request req;

	CHECK(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &req) > 0);
	CHECK_EQ(req.method, HTTP_OPTIONS);
	CHECK(str_is(req.path, "*"));
	CHECK(parse("CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n", &req) >
	      0);
	CHECK_EQ(req.method, HTTP_CONNECT);
	CHECK(str_is(req.path, "db.internal:5432"));
	CHECK(parse("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n", &req) >
	      0);
}

static void test_methods(void)
{
	static const char *const names[] = {"GET",    "HEAD",  "POST",	  "PUT",
					    "DELETE", "PATCH", "OPTIONS", "TRACE"};
	static const enum http_method ms[] = {HTTP_GET,	   HTTP_HEAD,  HTTP_POST,    HTTP_PUT,
					      HTTP_DELETE, HTTP_PATCH, HTTP_OPTIONS, HTTP_TRACE};
	struct http_request req;
	char buf[128];

	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", names[i]);
		CHECK(parse(buf, &req) > 0);
		CHECK_EQ(req.method, ms[i]);
		CHECK_STR(http_method_name(ms[i]), names[i]);
	}
	CHECK(parse("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n", &req) > 0);
	CHECK_EQ(req.method, HTTP_OTHER);
	CHECK(str_is(req.method_str, "PURGE"));
	/* methods are case-sensitive: "get" is some other token */
	CHECK(parse("get / HTTP/1.1\r\nHost: a\r\n\r\n", &req) > 0);
	CHECK_EQ(req.method, HTTP_OTHER);
	CHECK_STR(http_method_name(HTTP_CONNECT), "CONNECT");
	CHECK_STR(http_method_name(HTTP_OTHER), "OTHER");
	CHECK_STR(http_method_name((enum http_method)99), "OTHER");
}

static void test_header_values(void)
{
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Pad: \t v a l \t \r\n"
			"X-Latin: caf\xc3\xa9\r\nX-Tab:a\tb\r\n\r\n";
	struct http_request req;
	const struct http_header *h;

	CHECK_EQ(parse(s, &req), strlen(s));
	CHECK_EQ(req.nheaders, 5);
	h = http_find_header(req.headers, req.nheaders, "x-empty");
	CHECK(h && h->value.len == 0);
	h = http_find_header(req.headers, req.nheaders, "X-PAD");
	CHECK(h && str_is(h->value, "v a l"));
	h = http_find_header(req.headers, req.nheaders, "x-latin");
	CHECK(h && str_is(h->value, "caf\xc3\xa9"));
	h = http_find_header(req.headers, req.nheaders, "x-tab");
	CHECK(h && str_is(h->value, "a\tb"));
	CHECK(http_find_header(req.headers, req.nheaders, "x-missing") == NULL);
	CHECK(http_find_header(req.headers, req.nheaders, "x-ta") == NULL);
}

static void test_many_headers(void)
{
	char buf[8192];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
	struct http_request req;

	for (int i = 1; i < HTTP_MAX_HEADERS; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-H%d: v%d\r\n", i, i);
	snprintf(buf + n, sizeof(buf) - n, "\r\n");
	CHECK_EQ(parse(buf, &req), n + 2);
	CHECK_EQ(req.nheaders, HTTP_MAX_HEADERS);
	CHECK(str_is(req.headers[99].value, "v99"));
	snprintf(buf + n, sizeof(buf) - n, "X-Extra: 1\r\n\r\n");
	CHECK_EQ(parse(buf, &req), HTTP_ERR_HEADERS_TOO_LARGE);
}

static void test_pipelined(void)
{
	const char *s = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
			"GET /b?x HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
	size_t n = strlen(s);
	struct http_request req;
	int r1, r2;

	r1 = http_parse_request(s, n, &limits, &req);
	CHECK(r1 > 0);
	CHECK(str_is(req.path, "/a"));
	CHECK_EQ(req.content_length, 3);
	r2 = http_parse_request(s + r1 + 3, n - (size_t)r1 - 3, &limits, &req);
	CHECK_EQ(r2, n - (size_t)r1 - 3);
	CHECK(str_is(req.path, "/b"));
	CHECK(str_is(req.host, "b"));
	CHECK(!req.keep_alive);
}

static void test_leading_empty_lines(void)
{
	const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
	struct http_request req;

	CHECK_EQ(parse(s, &req), strlen(s));
	CHECK(req.method_str.p == s + 4);
	CHECK_EQ(reject("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD);
}

static void test_keep_alive(void)
{
	struct http_request req;

	CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", &req) > 0);
	CHECK(!req.keep_alive);
	CHECK(str_is(req.connection, "Close"));
	CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x-foo\r\n\r\n", &req) >
	      0);
	CHECK(req.keep_alive);
	CHECK(parse("GET / HTTP/1.0\r\n\r\n", &req) > 0);
	CHECK(!req.keep_alive);
	CHECK_EQ(req.minor_version, 0);
	CHECK_EQ(req.host.len, 0);
	CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req) > 0);
	CHECK(req.keep_alive);
	CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", &req) > 0);
	CHECK(!req.keep_alive);
}

static void test_expect(void)
{
	struct http_request req;

	CHECK(
	    parse(
		"PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-Continue\r\n\r\n",
		&req) > 0);
	CHECK(req.expect_continue);
	CHECK(parse("PUT /f HTTP/1.0\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n", &req) >
	      0);
	CHECK(!req.expect_continue);
	CHECK_EQ(reject("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), HTTP_ERR_BAD);
	CHECK_EQ(reject("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
			"Expect: 100-continue\r\n\r\n"),
		 HTTP_ERR_BAD);
}

static void test_upgrade(void)
{
	struct http_request req;

	CHECK(parse("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
		    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
		    &req) > 0);
	CHECK(req.upgrade);
	CHECK(str_is(req.upgrade_proto, "websocket"));
	CHECK(parse("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &req) > 0);
	CHECK(!req.upgrade);
	CHECK(parse("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n", &req) > 0);
	CHECK(!req.upgrade);
}

static void test_limits(void)
{
	struct http_limits lim = {.max_request_line = 32, .max_header_bytes = 64};
	struct http_request req;
	/* request line of exactly 32 bytes */
	const char *line32 = "GET /aaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n";
	const char *line33 = "GET /aaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n";
	char head[128];

	CHECK_EQ(strchr(line32, '\r') - line32, 32);
	CHECK_EQ(parse_n(line32, strlen(line32), &lim, &req), strlen(line32));
	CHECK_EQ(parse_n(line33, strlen(line33), &lim, &req), HTTP_ERR_URI_TOO_LONG);
	/* 34 bytes without a line end cannot be a line of 32 + CRLF */
	CHECK_EQ(parse_n(line33, 34, &lim, &req), HTTP_ERR_URI_TOO_LONG);
	CHECK_EQ(parse_n(line33, 33, &lim, &req), HTTP_INCOMPLETE);
	CHECK_EQ(parse_n("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 40, &lim, &req),
		 HTTP_ERR_URI_TOO_LONG);

	/* head of exactly 64 bytes, then 65 */
	snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\nX: %s\r\n\r\n",
		 "01234567890123456789012345678901");
	CHECK_EQ(strlen(head), 64);
	CHECK_EQ(parse_n(head, 64, &lim, &req), 64);
	snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\nX: %s\r\n\r\n",
		 "012345678901234567890123456789012");
	CHECK_EQ(parse_n(head, strlen(head), &lim, &req), HTTP_ERR_HEADERS_TOO_LARGE);
	/* detected while incomplete: 64 bytes in without the end of the head */
	CHECK_EQ(parse_n(head, 64, &lim, &req), HTTP_ERR_HEADERS_TOO_LARGE);
	CHECK_EQ(parse_n(head, 63, &lim, &req), HTTP_INCOMPLETE);
	/* defaults apply with NULL limits */
	CHECK(http_parse_request(line33, strlen(line33), NULL, &req) > 0);
}

static void test_default_limit_large_head(void)
{
	size_t n = HTTP_DEFAULT_MAX_HEADER_BYTES + 100;
	char *buf = malloc(n + 1);
	struct http_request req;
	int len = snprintf(buf, n, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");

	memset(buf + len, 'b', n - (size_t)len);
	CHECK_EQ(http_parse_request(buf, n, NULL, &req), HTTP_ERR_HEADERS_TOO_LARGE);
	free(buf);
}

/* Each rejection as its own case; also checks that no prefix gives another verdict. */
#define REJECT(name, want, text)                                                                   \
	static void name(void)                                                                     \
	{                                                                                          \
		CHECK_EQ(reject(text), want);                                                      \
		check_prefixes(text, want);                                                        \
	}

REJECT(rej_bare_lf_request_line, HTTP_ERR_BAD, "GET / HTTP/1.1\nHost: a\r\n\r\n")
REJECT(rej_bare_lf_header, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n")
REJECT(rej_bare_lf_end, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\n\n")
REJECT(rej_lf_lf_end, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\n\n")
REJECT(rej_ctl_before_lf, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\x01\n\r\n")
REJECT(rej_bare_cr_value, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n")
REJECT(rej_bare_cr_end, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n")
REJECT(rej_bare_cr_request_line, HTTP_ERR_BAD, "GET / HTTP/1.1\rHost: a\r\n\r\n")
REJECT(rej_ctl_value, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\nX: b\x01\r\n\r\n")
REJECT(rej_del_value, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\nX: b\x7f\r\n\r\n")
REJECT(rej_esc_value, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n")
REJECT(rej_obs_fold, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n")
REJECT(rej_obs_fold_tab, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n")
REJECT(rej_ws_before_colon, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost : a\r\n\r\n")
REJECT(rej_tab_before_colon, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n")
REJECT(rej_ws_before_first_header, HTTP_ERR_BAD, "GET / HTTP/1.1\r\n Host: a\r\n\r\n")
REJECT(rej_garbage_header_line, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n")
REJECT(rej_empty_header_name, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n")
REJECT(rej_bad_header_name, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\nX(y): v\r\n\r\n")
REJECT(rej_cl_and_te, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
REJECT(rej_te_and_cl, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n")
REJECT(rej_cl_differs, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
REJECT(rej_cl_list, HTTP_ERR_BAD, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n")
REJECT(rej_cl_alpha, HTTP_ERR_BAD, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n")
REJECT(rej_cl_negative, HTTP_ERR_BAD, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n")
REJECT(rej_cl_plus, HTTP_ERR_BAD, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n")
REJECT(rej_cl_inner_space, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n")
REJECT(rej_cl_empty, HTTP_ERR_BAD, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n")
REJECT(rej_cl_hex, HTTP_ERR_BAD, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n")
REJECT(rej_cl_overflow, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551617\r\n\r\n")
REJECT(rej_cl_over_int64, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n")
REJECT(rej_te_gzip, HTTP_ERR_BAD, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n")
REJECT(rej_te_gzip_chunked, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
REJECT(rej_te_chunked_chunked, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n")
REJECT(rej_te_twice, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "chunked\r\n\r\n")
REJECT(rej_te_param, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n")
REJECT(rej_te_empty, HTTP_ERR_BAD, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n")
REJECT(rej_te_vertical_tab, HTTP_ERR_BAD,
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0b"
       "chunked\r\n\r\n")
REJECT(rej_te_http10, HTTP_ERR_BAD, "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n")
REJECT(rej_missing_host, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")
REJECT(rej_two_hosts, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n")
REJECT(rej_host_userinfo, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n")
REJECT(rej_host_space, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
REJECT(rej_host_slash, HTTP_ERR_BAD, "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n")
REJECT(rej_two_connection, HTTP_ERR_BAD,
       "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nConnection: x-a\r\n\r\n")
REJECT(rej_two_upgrade, HTTP_ERR_BAD,
       "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n")
REJECT(rej_target_space, HTTP_ERR_BAD, "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_fragment, HTTP_ERR_BAD, "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_backslash, HTTP_ERR_BAD, "GET /a\\..\\b HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_quote, HTTP_ERR_BAD, "GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_ctl, HTTP_ERR_BAD, "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_obs_text, HTTP_ERR_BAD, "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_bad_pct, HTTP_ERR_BAD, "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_short_pct, HTTP_ERR_BAD, "GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_empty, HTTP_ERR_BAD, "GET  HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_relative, HTTP_ERR_BAD, "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_star_get, HTTP_ERR_BAD, "GET * HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_target_authority_get, HTTP_ERR_BAD, "GET a.test:443 HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_connect_origin_form, HTTP_ERR_BAD, "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_connect_no_port, HTTP_ERR_BAD, "CONNECT a.test HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_absolute_userinfo, HTTP_ERR_BAD, "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_absolute_ftp, HTTP_ERR_BAD, "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_absolute_empty_authority, HTTP_ERR_BAD, "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_method_bad_char, HTTP_ERR_BAD, "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_method_empty, HTTP_ERR_BAD, " / HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_double_space, HTTP_ERR_BAD, "GET  / HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_tab_separator, HTTP_ERR_BAD, "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_trailing_space_version, HTTP_ERR_BAD, "GET / HTTP/1.1 \r\nHost: a\r\n\r\n")
REJECT(rej_version_lower, HTTP_ERR_BAD, "GET / http/1.1\r\nHost: a\r\n\r\n")
REJECT(rej_version_two_digits, HTTP_ERR_BAD, "GET / HTTP/1.10\r\nHost: a\r\n\r\n")
REJECT(rej_version_missing, HTTP_ERR_BAD, "GET /\r\nHost: a\r\n\r\n")
REJECT(rej_version_short, HTTP_ERR_BAD, "GET / HTTP/1\r\nHost: a\r\n\r\n")
REJECT(rej_version_1_2, HTTP_ERR_VERSION, "GET / HTTP/1.2\r\nHost: a\r\n\r\n")
REJECT(rej_version_2_0, HTTP_ERR_VERSION, "GET / HTTP/2.0\r\nHost: a\r\n\r\n")
REJECT(rej_version_0_9, HTTP_ERR_VERSION, "GET / HTTP/0.9\r\nHost: a\r\n\r\n")
REJECT(rej_tls_hello, HTTP_ERR_BAD, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")

/* NUL cannot go through strlen(): explicit lengths */
static void rej_nul_bytes(void)
{
	static const char target[] = "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n";
	static const char value[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
	static const char name[] = "GET / HTTP/1.1\r\nHost: a\r\nX\0: ab\r\n\r\n";
	struct http_request req;

	CHECK_EQ(parse_n(target, sizeof(target) - 1, &limits, &req), HTTP_ERR_BAD);
	CHECK_EQ(parse_n(value, sizeof(value) - 1, &limits, &req), HTTP_ERR_BAD);
	CHECK_EQ(parse_n(name, sizeof(name) - 1, &limits, &req), HTTP_ERR_BAD);
}

/* Reference predicates written independently of the parser's tables. */
static bool ref_value_byte(int c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool ref_tchar(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool ref_path_byte(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("-._~!$&'()*+,;=:@/?", c));
}

/* Every byte value at every position of a long field value (exercises the 8-byte path). */
static void test_value_byte_sweep(void)
{
	static const char pre[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: ";
	static const char post[] = "\r\nX-B: c\r\n\r\n";
	char value[] = "abcdefghijklmnopqrstuvwxyz0123";
	size_t vlen = sizeof(value) - 1, n = sizeof(pre) - 1 + vlen + sizeof(post) - 1;
	char buf[128];
	struct http_request req;
	int bad = 0;

	for (size_t pos = 0; pos < vlen; pos++) {
		for (int c = 0; c < 256; c++) {
			int r;

			memcpy(buf, pre, sizeof(pre) - 1);
			memcpy(buf + sizeof(pre) - 1, value, vlen);
			memcpy(buf + sizeof(pre) - 1 + vlen, post, sizeof(post) - 1);
			buf[sizeof(pre) - 1 + pos] = (char)c;
			r = parse_n(buf, n, &limits, &req);
			if (ref_value_byte(c) ? r != (int)n : r != HTTP_ERR_BAD) {
				if (bad++ < 5)
					fprintf(stderr, "  byte 0x%02x at %zu: %d\n", c, pos, r);
			}
		}
	}
	CHECK_EQ(bad, 0);
}

static void test_name_byte_sweep(void)
{
	char buf[128];
	struct http_request req;
	int bad = 0;

	for (int pos = 0; pos < 12; pos++) {
		for (int c = 0; c < 256; c++) {
			int n = snprintf(buf, sizeof(buf),
					 "GET / HTTP/1.1\r\nHost: a\r\nX-Long-Header: v\r\n\r\n");
			int r;
			bool ok = ref_tchar(c) || (c == ':' && pos > 0);

			buf[25 + pos] = (char)c;
			r = parse_n(buf, (size_t)n, &limits, &req);
			if (ok ? r != n : r != HTTP_ERR_BAD) {
				if (bad++ < 5)
					fprintf(stderr, "  byte 0x%02x at %d: %d\n", c, pos, r);
			}
		}
	}
	CHECK_EQ(bad, 0);
}

static void test_path_byte_sweep(void)
{
	char buf[128];
	struct http_request req;
	int bad = 0;

	for (int pos = 1; pos < 17; pos++) {
		for (int c = 0; c < 256; c++) {
			int n = snprintf(buf, sizeof(buf),
					 "GET /ghijklmnopqrstuv HTTP/1.1\r\nHost: a\r\n\r\n");
			int r;

			buf[4 + pos] = (char)c;
			r = parse_n(buf, (size_t)n, &limits, &req);
			if (ref_path_byte(c) ? r != n : r != HTTP_ERR_BAD) {
				if (bad++ < 5)
					fprintf(stderr, "  byte 0x%02x at %d: %d\n", c, pos, r);
			}
		}
	}
	CHECK_EQ(bad, 0);
}

static const char *const valid_requests[] = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /users/42?full=1 HTTP/1.1\r\nHost: api.example.com:8080\r\nAccept: */*\r\n"
    "X-Empty:\r\nX-Pad:  v  \r\n\r\n",
    "POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\n",
    "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET http://h.test:81/p?q HTTP/1.1\r\nHost: h.test:81\r\n\r\n",
    "GET https://h.test HTTP/1.1\r\nHost: h.test\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    "CONNECT h.test:443 HTTP/1.1\r\nHost: h.test:443\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "\r\nGET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "DELETE /a/b/c HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\nX-Latin: caf\xc3\xa9\r\n\r\n",
};

static void test_split_every_byte(void)
{
	for (size_t i = 0; i < sizeof(valid_requests) / sizeof(valid_requests[0]); i++)
		check_prefixes(valid_requests[i], (int)strlen(valid_requests[i]));
}

/*
 * Randomly corrupted requests (fixed seed): whatever the verdict on the whole buffer, a
 * prefix must give INCOMPLETE or that same verdict, so splitting never changes framing.
 */
static void test_mutation_consistency(void)
{
	static const char bytes[] = "\r\n :\t,;/?%\x00\x7f\x80"
				    "aZ09-.Cc";
	unsigned seed = 12345;
	int bad = 0;

	for (int iter = 0; iter < 3000 && bad < 5; iter++) {
		const char *base =
		    valid_requests[iter % (sizeof(valid_requests) / sizeof(valid_requests[0]))];
		size_t n = strlen(base);
		char buf[512];
		struct http_request req;
		int whole;

		memcpy(buf, base, n);
		for (int m = 0; m < 1 + iter % 3; m++) {
			seed = seed * 1103515245 + 12345;
			buf[(seed >> 8) % n] = bytes[(seed >> 20) % (sizeof(bytes) - 1)];
		}
		whole = parse_n(buf, n, &limits, &req);
		for (size_t k = 0; k < n; k++) {
			int r = parse_n(buf, k, &limits, &req);
			int want = whole > 0 && k >= (size_t)whole ? whole : HTTP_INCOMPLETE;

			if (r != want && (whole > 0 || r != whole)) {
				fprintf(stderr, "  iter %d prefix %zu: %d, whole %d\n", iter, k, r,
					whole);
				bad++;
				break;
			}
		}
	}
	CHECK_EQ(bad, 0);
}

static void test_responses(void)
{
	struct http_response resp;
	const char *s =
	    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";

	CHECK_EQ(parse_resp(s, HTTP_GET, &resp), strlen(s) - 5);
	CHECK_EQ(resp.status, 200);
	CHECK_EQ(resp.minor_version, 1);
	CHECK(str_is(resp.reason, "OK"));
	CHECK_EQ(resp.body, HTTP_BODY_LENGTH);
	CHECK_EQ(resp.content_length, 5);
	CHECK(resp.keep_alive);
	CHECK_EQ(resp.nheaders, 2);

	CHECK(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_GET, &resp) >
	      0);
	CHECK_EQ(resp.body, HTTP_BODY_CHUNKED);
	CHECK(parse_resp("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", HTTP_GET, &resp) > 0);
	CHECK_EQ(resp.body, HTTP_BODY_EOF);
	CHECK(!resp.keep_alive);
	CHECK(parse_resp("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", HTTP_GET, &resp) >
	      0);
	CHECK_EQ(resp.body, HTTP_BODY_NONE);
	CHECK(resp.keep_alive);
	CHECK(parse_resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", HTTP_GET,
			 &resp) > 0);
	CHECK_EQ(resp.body, HTTP_BODY_NONE);
	CHECK(parse_resp("HTTP/1.1 100 Continue\r\n\r\n", HTTP_POST, &resp) > 0);
	CHECK_EQ(resp.body, HTTP_BODY_NONE);
	CHECK_EQ(resp.status, 100);
	CHECK(parse_resp("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
			 "Upgrade: websocket\r\n\r\n",
			 HTTP_GET, &resp) > 0);
	CHECK_EQ(resp.body, HTTP_BODY_NONE);
	CHECK(str_is(resp.connection, "Upgrade"));
	CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", HTTP_HEAD, &resp) > 0);
	CHECK_EQ(resp.body, HTTP_BODY_NONE);
	CHECK_EQ(resp.content_length, 1234);
	CHECK(parse_resp("HTTP/1.1 200 Connection established\r\n\r\n", HTTP_CONNECT, &resp) > 0);
	CHECK_EQ(resp.body, HTTP_BODY_NONE);
	CHECK(parse_resp("HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n", HTTP_CONNECT, &resp) >
	      0);
	CHECK_EQ(resp.body, HTTP_BODY_LENGTH);
	CHECK(parse_resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", HTTP_GET, &resp) > 0);
	CHECK(!resp.keep_alive);
	CHECK(parse_resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
			 HTTP_GET, &resp) > 0);
	CHECK(resp.keep_alive);
	CHECK(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
			 HTTP_GET, &resp) > 0);
	CHECK(!resp.keep_alive);
	CHECK(parse_resp("HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", HTTP_GET, &resp) > 0);
	CHECK_EQ(resp.reason.len, 0);
	CHECK(parse_resp("HTTP/1.1 599 \r\nContent-Length: 1\r\n\r\n", HTTP_GET, &resp) > 0);
	CHECK_EQ(resp.reason.len, 0);
	CHECK(parse_resp("HTTP/1.1 404 Nicht \xc3\xbc gefunden\t!\r\n\r\n", HTTP_GET, &resp) > 0);
	CHECK_EQ(resp.status, 404);
}

static void test_response_rejections(void)
{
	struct http_response resp;

	CHECK_EQ(
	    parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		       HTTP_GET, &resp),
	    HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n",
			    HTTP_GET, &resp),
		 HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HTTP_GET,
			    &resp),
		 HTTP_ERR_BAD);
	CHECK_EQ(
	    parse_resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", HTTP_GET, &resp),
	    HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 099 Low\r\n\r\n", HTTP_GET, &resp), HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 600 High\r\n\r\n", HTTP_GET, &resp), HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 2000 OK\r\n\r\n", HTTP_GET, &resp), HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 20 OK\r\n\r\n", HTTP_GET, &resp), HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 200 O\x01K\r\n\r\n", HTTP_GET, &resp), HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n", HTTP_GET, &resp),
		 HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", HTTP_GET, &resp),
		 HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", HTTP_GET, &resp), HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/2.0 200 OK\r\n\r\n", HTTP_GET, &resp), HTTP_ERR_VERSION);
	CHECK_EQ(parse_resp("HTTX/1.1 200 OK\r\n\r\n", HTTP_GET, &resp), HTTP_ERR_BAD);
	CHECK_EQ(parse_resp("HTTP/1.1 200 OK\r\n", HTTP_GET, &resp), HTTP_INCOMPLETE);
}

static void test_response_split_every_byte(void)
{
	check_resp_prefixes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\n", HTTP_GET);
	check_resp_prefixes("HTTP/1.1 204\r\n\r\n", HTTP_DELETE);
	check_resp_prefixes("HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", HTTP_GET);
}

static void test_response_limits(void)
{
	struct http_limits lim = {.max_header_bytes = 32};
	struct http_response resp;
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";

	CHECK_EQ(http_parse_response(s, strlen(s), &lim, HTTP_GET, &resp),
		 HTTP_ERR_HEADERS_TOO_LARGE);
	CHECK_EQ(http_parse_response(s, 31, &lim, HTTP_GET, &resp), HTTP_INCOMPLETE);
	CHECK_EQ(http_parse_response(s, 32, &lim, HTTP_GET, &resp), HTTP_ERR_HEADERS_TOO_LARGE);
}

static struct http_str S(const char *s) {
	return (struct http_str){s, strlen(s)};
}

static void
test_list_has_token(void)
{
	CHECK(http_list_has_token(S("close"), "close", 5));
	CHECK(http_list_has_token(S("keep-alive, Upgrade"), "upgrade", 7));
	CHECK(http_list_has_token(S(" a ,\tUPGRADE\t, b"), "upgrade", 7));
	CHECK(http_list_has_token(S(",,x,,"), "x", 1));
	CHECK(!http_list_has_token(S("upgrades"), "upgrade", 7));
	CHECK(!http_list_has_token(S("xupgrade"), "upgrade", 7));
	CHECK(!http_list_has_token(S(""), "upgrade", 7));
	CHECK(!http_list_has_token(S("up grade"), "upgrade", 7));
}

static void test_hop_by_hop(void)
{
	struct http_str none = S(""), conn = S("close, X-Internal-Secret , keep-alive");

	CHECK(http_is_hop_by_hop(S("Connection"), none));
	CHECK(http_is_hop_by_hop(S("keep-alive"), none));
	CHECK(http_is_hop_by_hop(S("Proxy-Connection"), none));
	CHECK(http_is_hop_by_hop(S("TE"), none));
	CHECK(http_is_hop_by_hop(S("Trailer"), none));
	CHECK(http_is_hop_by_hop(S("Transfer-Encoding"), none));
	CHECK(http_is_hop_by_hop(S("UPGRADE"), none));
	CHECK(http_is_hop_by_hop(S("Proxy-Authenticate"), none));
	CHECK(http_is_hop_by_hop(S("proxy-authorization"), none));
	CHECK(!http_is_hop_by_hop(S("Content-Length"), none));
	CHECK(!http_is_hop_by_hop(S("Host"), none));
	CHECK(!http_is_hop_by_hop(S("Authorization"), none));
	CHECK(!http_is_hop_by_hop(S("X-Internal-Secret"), none));
	CHECK(http_is_hop_by_hop(S("x-internal-secret"), conn));
	CHECK(!http_is_hop_by_hop(S("X-Internal"), conn));
	CHECK(!http_is_hop_by_hop(S("Accept"), conn));
}

static void test_status_reason(void)
{
	CHECK_STR(http_status_reason(200), "OK");
	CHECK_STR(http_status_reason(404), "Not Found");
	CHECK_STR(http_status_reason(431), "Request Header Fields Too Large");
	CHECK_STR(http_status_reason(504), "Gateway Timeout");
	CHECK_STR(http_status_reason(299), "Success");
	CHECK_STR(http_status_reason(499), "Client Error");
	CHECK_STR(http_status_reason(42), "Unknown");
}

static void test_request_id(void)
{
	char long_id[130];

	CHECK(http_request_id_valid(S("a")));
	CHECK(http_request_id_valid(S("01HZX3K-9f.a_b:c")));
	CHECK(!http_request_id_valid(S("")));
	CHECK(!http_request_id_valid(S("a b")));
	CHECK(!http_request_id_valid(S("a/b")));
	CHECK(!http_request_id_valid(S("a\r\nX: y")));
	memset(long_id, 'x', sizeof(long_id));
	CHECK(http_request_id_valid((struct http_str){long_id, 128}));
	CHECK(!http_request_id_valid((struct http_str){long_id, 129}));
}

static void test_name_dashed(void)
{
	char out[16];
	struct http_str d = {0};

	CHECK(http_name_dashed(S("X_Consumer"), out, sizeof(out), &d));
	CHECK(http_str_eq_nocase(d, "x-consumer"));
	CHECK(http_name_dashed(S("X-Forwarded_For"), out, sizeof(out), &d));
	CHECK(http_str_eq_nocase(d, "x-forwarded-for"));
	CHECK(http_name_dashed(S("__"), out, sizeof(out), &d));
	CHECK(d.len == 2 && !memcmp(d.p, "--", 2));
	/* no underscore: nothing to do; too long for out: refused */
	CHECK(!http_name_dashed(S("X-Consumer"), out, sizeof(out), &d));
	CHECK(!http_name_dashed(S("X_Very_Long_Header_Name"), out, sizeof(out), &d));
	CHECK(http_name_dashed(S("A_234567890123456"), out, 16, &d) == false);
	CHECK(http_name_dashed(S("A_23456789012345"), out, 16, &d));
}

static void test_str_eq_nocase(void)
{
	CHECK(http_str_eq_nocase(S("Content-Length"), "content-length"));
	CHECK(!http_str_eq_nocase(S("Content-Lengt"), "content-length"));
	CHECK(!http_str_eq_nocase(S("Content_Length"), "content-length"));
	CHECK(http_str_eq_nocase(S(""), ""));
}

int main(void)
{
	RUN(test_simple_get);
	RUN(test_post_content_length);
	RUN(test_post_chunked);
	RUN(test_content_length_edges);
	RUN(test_absolute_form);
	RUN(test_asterisk_and_connect);
	RUN(test_methods);
	RUN(test_header_values);
	RUN(test_many_headers);
	RUN(test_pipelined);
	RUN(test_leading_empty_lines);
	RUN(test_keep_alive);
	RUN(test_expect);
	RUN(test_upgrade);
	RUN(test_limits);
	RUN(test_default_limit_large_head);
	RUN(rej_bare_lf_request_line);
	RUN(rej_bare_lf_header);
	RUN(rej_bare_lf_end);
	RUN(rej_lf_lf_end);
	RUN(rej_ctl_before_lf);
	RUN(rej_bare_cr_value);
	RUN(rej_bare_cr_end);
	RUN(rej_bare_cr_request_line);
	RUN(rej_ctl_value);
	RUN(rej_del_value);
	RUN(rej_esc_value);
	RUN(rej_obs_fold);
	RUN(rej_obs_fold_tab);
	RUN(rej_ws_before_colon);
	RUN(rej_tab_before_colon);
	RUN(rej_ws_before_first_header);
	RUN(rej_garbage_header_line);
	RUN(rej_empty_header_name);
	RUN(rej_bad_header_name);
	RUN(rej_cl_and_te);
	RUN(rej_te_and_cl);
	RUN(rej_cl_differs);
	RUN(rej_cl_list);
	RUN(rej_cl_alpha);
	RUN(rej_cl_negative);
	RUN(rej_cl_plus);
	RUN(rej_cl_inner_space);
	RUN(rej_cl_empty);
	RUN(rej_cl_hex);
	RUN(rej_cl_overflow);
	RUN(rej_cl_over_int64);
	RUN(rej_te_gzip);
	RUN(rej_te_gzip_chunked);
	RUN(rej_te_chunked_chunked);
	RUN(rej_te_twice);
	RUN(rej_te_param);
	RUN(rej_te_empty);
	RUN(rej_te_vertical_tab);
	RUN(rej_te_http10);
	RUN(rej_missing_host);
	RUN(rej_two_hosts);
	RUN(rej_host_userinfo);
	RUN(rej_host_space);
	RUN(rej_host_slash);
	RUN(rej_two_connection);
	RUN(rej_two_upgrade);
	RUN(rej_target_space);
	RUN(rej_target_fragment);
	RUN(rej_target_backslash);
	RUN(rej_target_quote);
	RUN(rej_target_ctl);
	RUN(rej_nul_bytes);
	RUN(rej_target_obs_text);
	RUN(rej_target_bad_pct);
	RUN(rej_target_short_pct);
	RUN(rej_target_empty);
	RUN(rej_target_relative);
	RUN(rej_target_star_get);
	RUN(rej_target_authority_get);
	RUN(rej_connect_origin_form);
	RUN(rej_connect_no_port);
	RUN(rej_absolute_userinfo);
	RUN(rej_absolute_ftp);
	RUN(rej_absolute_empty_authority);
	RUN(rej_method_bad_char);
	RUN(rej_method_empty);
	RUN(rej_double_space);
	RUN(rej_tab_separator);
	RUN(rej_trailing_space_version);
	RUN(rej_version_lower);
	RUN(rej_version_two_digits);
	RUN(rej_version_missing);
	RUN(rej_version_short);
	RUN(rej_version_1_2);
	RUN(rej_version_2_0);
	RUN(rej_version_0_9);
	RUN(rej_tls_hello);
	RUN(test_value_byte_sweep);
	RUN(test_name_byte_sweep);
	RUN(test_path_byte_sweep);
	RUN(test_split_every_byte);
	RUN(test_mutation_consistency);
	RUN(test_responses);
	RUN(test_response_rejections);
	RUN(test_response_split_every_byte);
	RUN(test_response_limits);
	RUN(test_list_has_token);
	RUN(test_hop_by_hop);
	RUN(test_status_reason);
	RUN(test_request_id);
	RUN(test_name_dashed);
	RUN(test_str_eq_nocase);
	return CHECK_DONE();
}
