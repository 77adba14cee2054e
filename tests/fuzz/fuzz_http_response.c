/*
 * HTTP/1 response parser (userspace/http/parse.c) over a stream of responses on one
 * upstream connection. Checks the head spans and framing like the request harness, plus
 * the bodiless rules (HEAD, 1xx, 204, 304, 2xx to CONNECT), that a close-delimited body
 * never keeps the connection, and restartability.
 */
#include "fuzz/http_check.h"

#define MAX_MESSAGES 8

static int parse_copy(const char *buf, size_t len, enum http_method m, struct http_response *resp)
{
	char *copy = fuzz_dup((const uint8_t *)buf, len);
	int r = http_parse_response(copy, len, NULL, m, resp);

	free(copy);
	return r;
}

static void check_response(const char *buf, size_t len, int r, enum http_method m,
			   const struct http_response *resp)
{
	int s = resp->status;

	FUZZ_CHECK((size_t)r <= len);
	fz_check_headers(buf, (size_t)r, resp->headers, resp->nheaders);
	FUZZ_CHECK(s >= 100 && s <= 599);
	FUZZ_CHECK(resp->minor_version == 0 || resp->minor_version == 1);
	FUZZ_CHECK(fuzz_within(resp->reason.p, resp->reason.len, buf, (size_t)r));
	for (size_t i = 0; i < resp->reason.len; i++)
		FUZZ_CHECK(resp->reason.p[i] != '\r' && resp->reason.p[i] != '\n');
	FUZZ_CHECK(fuzz_within(resp->connection.p, resp->connection.len, buf, (size_t)r));
	if (m == HTTP_HEAD || s < 200 || s == 204 || s == 304 || (m == HTTP_CONNECT && s < 300))
		FUZZ_CHECK(resp->body == HTTP_BODY_NONE);
	if (resp->body == HTTP_BODY_EOF)
		FUZZ_CHECK(!resp->keep_alive);
	/* Bodiless responses still report (and must not mis-frame) their fields. */
	if (resp->body != HTTP_BODY_NONE)
		fz_check_framing(resp->headers, resp->nheaders, resp->body, resp->content_length);
	FUZZ_CHECK(!(fz_count(resp->headers, resp->nheaders, "transfer-encoding") &&
		     fz_count(resp->headers, resp->nheaders, "content-length")));
}

static void check_prefix(const char *buf, size_t len, int r, size_t k, enum http_method m)
{
	struct http_response resp;
	int pr = parse_copy(buf, k, m, &resp);

	if (r > 0 && k < (size_t)r)
		FUZZ_CHECK(pr == HTTP_INCOMPLETE);
	else
		FUZZ_CHECK(pr == HTTP_INCOMPLETE || pr == r);
}

static ssize_t one_message(const char *buf, size_t len, uint64_t *seed)
{
	static const enum http_method methods[] = {HTTP_HEAD, HTTP_CONNECT, HTTP_POST};
	struct http_response resp, other;
	int r = http_parse_response(buf, len, NULL, HTTP_GET, &resp);
	ssize_t body;

	check_prefix(buf, len, r, fuzz_next(seed) % (len + 1), HTTP_GET);
	/* The request method changes only the body decision, never the head length. */
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		int ro = http_parse_response(buf, len, NULL, methods[i], &other);

		FUZZ_CHECK(ro == r);
		if (ro > 0)
			check_response(buf, len, ro, methods[i], &other);
	}
	if (r <= 0)
		return -1;
	check_response(buf, len, r, HTTP_GET, &resp);
	check_prefix(buf, len, r, (size_t)r - 1, HTTP_GET);
	if (!resp.keep_alive || resp.status == 101)
		return -1;
	if (resp.body == HTTP_BODY_NONE)
		return r;
	if (resp.body == HTTP_BODY_LENGTH)
		return resp.content_length > len - (size_t)r ? -1
							     : (ssize_t)(r + resp.content_length);
	if (resp.body != HTTP_BODY_CHUNKED)
		return -1;
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
