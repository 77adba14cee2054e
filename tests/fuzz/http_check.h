/*
 * Invariants shared by the HTTP request and response harnesses: every span the parser
 * returns lies inside the head it claims, names are tokens, values carry no line ends,
 * and the framing it chose agrees with the framing headers actually present.
 */
#ifndef XGATE_TESTS_FUZZ_HTTP_CHECK_H
#define XGATE_TESTS_FUZZ_HTTP_CHECK_H

#include <strings.h>

#include "fuzz.h"
#include "http/http.h"

static inline bool fz_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static inline bool fz_name_is(struct http_str n, const char *lit)
{
	return n.len == strlen(lit) && !strncasecmp(n.p, lit, n.len);
}

/* The head ends with the empty line and every header span lies inside it. */
static inline void fz_check_headers(const char *buf, size_t head, const struct http_header *h,
				    int n)
{
	FUZZ_CHECK(head >= 4 && !memcmp(buf + head - 4, "\r\n\r\n", 4));
	FUZZ_CHECK(n >= 0 && n <= HTTP_MAX_HEADERS);
	for (int i = 0; i < n; i++) {
		struct http_str name = h[i].name, v = h[i].value;

		FUZZ_CHECK(name.len > 0 && fuzz_within(name.p, name.len, buf, head));
		for (size_t j = 0; j < name.len; j++)
			FUZZ_CHECK(fz_tchar((unsigned char)name.p[j]));
		FUZZ_CHECK(fuzz_within(v.p, v.len, buf, head));
		for (size_t j = 0; j < v.len; j++)
			FUZZ_CHECK(v.p[j] != '\r' && v.p[j] != '\n' && v.p[j] != '\0');
		if (v.len) {
			FUZZ_CHECK(v.p[0] != ' ' && v.p[0] != '\t');
			FUZZ_CHECK(v.p[v.len - 1] != ' ' && v.p[v.len - 1] != '\t');
		}
	}
}

/* Counts fields by name, independently of the parser's own bookkeeping. */
static inline int fz_count(const struct http_header *h, int n, const char *name)
{
	int c = 0;

	for (int i = 0; i < n; i++)
		c += fz_name_is(h[i].name, name);
	return c;
}

/*
 * Framing agrees with the fields: chunked only with exactly one Transfer-Encoding, a length
 * only with Content-Length, never both (the smuggling classics).
 */
static inline void fz_check_framing(const struct http_header *h, int n, enum http_body body,
				    uint64_t content_length)
{
	int te = fz_count(h, n, "transfer-encoding"), cl = fz_count(h, n, "content-length");

	FUZZ_CHECK(!(te && cl));
	FUZZ_CHECK(te <= 1);
	if (body == HTTP_BODY_CHUNKED)
		FUZZ_CHECK(te == 1);
	if (body == HTTP_BODY_LENGTH) {
		const struct http_header *f = http_find_header(h, n, "content-length");
		uint64_t v = 0;

		FUZZ_CHECK(cl >= 1 && f);
		for (size_t i = 0; i < f->value.len; i++) {
			FUZZ_CHECK(f->value.p[i] >= '0' && f->value.p[i] <= '9');
			v = v * 10 + (uint64_t)(f->value.p[i] - '0');
		}
		FUZZ_CHECK(v == content_length && content_length <= INT64_MAX);
	}
	if (body != HTTP_BODY_LENGTH)
		FUZZ_CHECK(content_length == 0 || cl > 0);
}

/*
 * Feeds a chunked body from buf, checking the decoder's own invariants. Returns the bytes
 * the body occupies, or -1 when it is malformed or incomplete.
 */
static inline ssize_t fz_skip_chunked(const char *buf, size_t len)
{
	struct http_chunked c;
	struct http_span spans[8];
	size_t off = 0, decoded = 0;

	http_chunked_init(&c);
	while (off < len && !c.done) {
		size_t n = 8, prev = 0;
		ssize_t r = http_chunked_scan(&c, buf + off, len - off, spans, &n);

		if (r < 0)
			return -1;
		FUZZ_CHECK((size_t)r <= len - off && n <= 8);
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(spans[i].off >= prev && spans[i].len > 0);
			FUZZ_CHECK(spans[i].off + spans[i].len <= (size_t)r);
			prev = spans[i].off + spans[i].len;
			decoded += spans[i].len;
		}
		FUZZ_CHECK((size_t)r == len - off || c.done || n == 8);
		off += (size_t)r;
		FUZZ_CHECK(decoded <= off);
	}
	if (!c.done)
		return -1;
	FUZZ_CHECK(c.total == decoded);
	return (ssize_t)off;
}

#endif
