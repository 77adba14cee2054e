/*
 * HTTP/1 request parser (userspace/http/parse.c) over a stream of pipelined requests.
 * Beyond memory safety it checks: the head length is within the input and ends with the
 * empty line; every span points into the head; framing matches the fields present;
 * parsing is restartable (every prefix is either incomplete or gives the same result);
 * a tighter limit never accepts what the default limit rejects.
 */
#include "fuzz/http_check.h"

#define MAX_MESSAGES 8

static int parse_copy(const char *buf, size_t len, const struct http_limits *lim,
		      struct http_request *req)
{
	char *copy = fuzz_dup((const uint8_t *)buf, len);
	int r = http_parse_request(copy, len, lim, req);

	free(copy);
	return r;
}

static void check_request(const char *buf, size_t len, int r, const struct http_request *req)
{
	FUZZ_CHECK((size_t)r <= len);
	fz_check_headers(buf, (size_t)r, req->headers, req->nheaders);
	FUZZ_CHECK(req->method_str.len > 0 &&
		   fuzz_within(req->method_str.p, req->method_str.len, buf, (size_t)r));
	FUZZ_CHECK(req->target.len > 0 &&
		   fuzz_within(req->target.p, req->target.len, buf, (size_t)r));
	FUZZ_CHECK(req->target.p > req->method_str.p);
	FUZZ_CHECK(req->path.len > 0);
	FUZZ_CHECK(fuzz_within(req->path.p, req->path.len, buf, (size_t)r) ||
		   (req->path.len == 1 && req->path.p[0] == '/'));
	FUZZ_CHECK(fuzz_within(req->query.p, req->query.len, buf, (size_t)r));
	FUZZ_CHECK(fuzz_within(req->host.p, req->host.len, buf, (size_t)r));
	FUZZ_CHECK(fuzz_within(req->connection.p, req->connection.len, buf, (size_t)r));
	FUZZ_CHECK(req->minor_version == 0 || req->minor_version == 1);
	FUZZ_CHECK(req->method >= HTTP_OTHER && req->method < HTTP_METHOD_COUNT);
	if (req->method != HTTP_OTHER)
		FUZZ_CHECK(
		    req->method_str.len == strlen(http_method_name(req->method)) &&
		    !memcmp(req->method_str.p, http_method_name(req->method), req->method_str.len));
	fz_check_framing(req->headers, req->nheaders, req->body, req->content_length);
	/* HTTP/1.1 needs exactly one Host; more than one is always rejected. */
	FUZZ_CHECK(fz_count(req->headers, req->nheaders, "host") <= 1);
	if (req->minor_version == 1)
		FUZZ_CHECK(fz_count(req->headers, req->nheaders, "host") == 1);
	if (req->body == HTTP_BODY_CHUNKED)
		FUZZ_CHECK(req->minor_version == 1);
	FUZZ_CHECK(req->body != HTTP_BODY_EOF);
	if (req->upgrade)
		FUZZ_CHECK(
		    req->minor_version == 1 && req->upgrade_proto.len > 0 &&
		    fuzz_within(req->upgrade_proto.p, req->upgrade_proto.len, buf, (size_t)r));
	if (req->expect_continue)
		FUZZ_CHECK(req->minor_version == 1);
}

/* Every prefix is incomplete or says the same as the whole buffer (restartable parsing). */
static void check_prefix(const char *buf, size_t len, int r, size_t k,
			 const struct http_limits *lim)
{
	struct http_request req;
	int pr = parse_copy(buf, k, lim, &req);

	if (r > 0 && k < (size_t)r)
		FUZZ_CHECK(pr == HTTP_INCOMPLETE);
	else
		FUZZ_CHECK(pr == HTTP_INCOMPLETE || pr == r);
}

/* Parses one message at buf; returns the bytes it occupies with its body, or -1 to stop. */
static ssize_t one_message(const char *buf, size_t len, uint64_t *seed)
{
	static const struct http_limits tight = {.max_request_line = 40, .max_header_bytes = 160};
	struct http_request req, again, small;
	int r = http_parse_request(buf, len, NULL, &req), rs;
	ssize_t body;

	check_prefix(buf, len, r, fuzz_next(seed) % (len + 1), NULL);
	rs = http_parse_request(buf, len, &tight, &small);
	if (rs > 0) {
		FUZZ_CHECK(rs == r);
		check_request(buf, len, rs, &small);
	}
	if (r <= 0)
		return -1;
	check_request(buf, len, r, &req);
	check_prefix(buf, len, r, (size_t)r - 1, NULL);
	/* The head alone parses to the same message. */
	FUZZ_CHECK(parse_copy(buf, (size_t)r, NULL, &again) == r);
	FUZZ_CHECK(again.nheaders == req.nheaders && again.body == req.body &&
		   again.content_length == req.content_length &&
		   again.keep_alive == req.keep_alive);
	if (req.upgrade || req.method == HTTP_CONNECT || !req.keep_alive)
		return -1;
	if (req.body == HTTP_BODY_LENGTH)
		return req.content_length > len - (size_t)r ? -1
							    : (ssize_t)(r + req.content_length);
	if (req.body != HTTP_BODY_CHUNKED)
		return r;
	body = fz_skip_chunked(buf + r, len - (size_t)r);
	return body < 0 ? -1 : r + body;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = fuzz_dup(data, size);
	uint64_t seed = fuzz_seed(data, size);
	size_t off = 0;

	for (int i = 0; i < MAX_MESSAGES && off < size; i++) {
		ssize_t n = one_message(buf + off, size - off, &seed);

		if (n <= 0)
			break;
		FUZZ_CHECK((size_t)n <= size - off);
		off += (size_t)n;
	}
	free(buf);
	return 0;
}
