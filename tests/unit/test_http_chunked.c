/* Streaming chunked-body scanner: framing, extensions, trailers, limits, any input split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http/http.h"

struct scan_result {
	ssize_t consumed; /* total bytes consumed, or -1 */
	bool done;
	uint64_t total;
	char payload[8192];
	size_t payload_len;
};

/* Feeds `s` in pieces of `step` bytes (0: all at once), collecting payload via spans. */
static void scan_steps(const char *s, size_t n, size_t step, struct scan_result *out)
{
	struct http_chunked c;
	size_t off = 0;

	http_chunked_init(&c);
	memset(out, 0, sizeof(*out));
	while (off < n && !c.done) {
		size_t piece = step && n - off > step ? step : n - off;
		char *copy = malloc(piece);
		struct http_span spans[4];
		size_t nspans = 4;
		ssize_t r;

		memcpy(copy, s + off, piece);
		r = http_chunked_scan(&c, copy, piece, spans, &nspans);
		if (r < 0) {
			free(copy);
			out->consumed = -1;
			return;
		}
		for (size_t i = 0; i < nspans; i++) {
			if (out->payload_len + spans[i].len <= sizeof(out->payload))
				memcpy(out->payload + out->payload_len, copy + spans[i].off,
				       spans[i].len);
			out->payload_len += spans[i].len;
		}
		free(copy);
		off += (size_t)r;
		/* a short return without done means the spans were full: call again */
		if ((size_t)r < piece && !c.done && nspans < 4) {
			out->consumed = -2; /* contract violation */
			return;
		}
	}
	out->consumed = (ssize_t)off;
	out->done = c.done;
	out->total = c.total;
}

static ssize_t scan_all(const char *s)
{
	struct scan_result res;

	scan_steps(s, strlen(s), 0, &res);
	return res.consumed;
}

/* Whole, every two-way split, and byte-by-byte must agree. */
static void check_splits(const char *s, ssize_t want, const char *payload)
{
	size_t n = strlen(s);
	struct scan_result whole, part;

	scan_steps(s, n, 0, &whole);
	CHECK_EQ(whole.consumed, want);
	if (want >= 0) {
		CHECK(whole.done);
		CHECK_EQ(whole.payload_len, strlen(payload));
		CHECK(!memcmp(whole.payload, payload, whole.payload_len));
		CHECK_EQ(whole.total, strlen(payload));
	}
	for (size_t k = 1; k < n; k++) {
		struct http_chunked c;
		ssize_t r1, r2 = 0;

		http_chunked_init(&c);
		r1 = http_chunked_scan(&c, s, k, NULL, NULL);
		if (r1 >= 0 && !c.done) {
			if (r1 != (ssize_t)k) {
				fprintf(stderr, "  split %zu: first part consumed %zd\n", k, r1);
				CHECK(0);
				return;
			}
			r2 = http_chunked_scan(&c, s + k, n - k, NULL, NULL);
		}
		if (want < 0 ? (r1 >= 0 && r2 >= 0) : (r1 < 0 || r2 < 0 || r1 + r2 != want)) {
			fprintf(stderr, "  split %zu: %zd + %zd, want %zd\n", k, r1, r2, want);
			CHECK(0);
			return;
		}
	}
	scan_steps(s, n, 1, &part);
	CHECK_EQ(part.consumed, want);
	if (want >= 0) {
		CHECK_EQ(part.payload_len, whole.payload_len);
		CHECK(!memcmp(part.payload, whole.payload, whole.payload_len));
	}
}

static void test_simple(void)
{
	check_splits("5\r\nhello\r\n0\r\n\r\n", 15, "hello");
}

static void test_multiple_chunks(void)
{
	check_splits("3\r\nabc\r\nA\r\n0123456789\r\na\r\nabcdefghij\r\n1\r\nZ\r\n0\r\n\r\n", 49,
		     "abc0123456789abcdefghijZ");
}

static void test_leading_zeros(void)
{
	check_splits("0005\r\nhello\r\n000\r\n\r\n", 20, "hello");
	/* 16 digits is the bound */
	check_splits("0000000000000002\r\nhi\r\n0\r\n\r\n", 27, "hi");
}

static void test_extensions(void)
{
	check_splits("5;name=value\r\nhello\r\n0;last\r\n\r\n", 31, "hello");
	check_splits("5 ; a=\"q u o t e d\" ;b\r\nhello\r\n0\r\n\r\n", 36, "hello");
	check_splits("5\t;x\r\nhello\r\n0\r\n\r\n", 18, "hello");
}

static void test_trailers(void)
{
	check_splits("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\r\n\r\n", 42, "hello");
}

static void test_empty_body(void)
{
	check_splits("0\r\n\r\n", 5, "");
}

static void test_stops_at_end(void)
{
	const char *s = "1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
	struct http_chunked c;

	http_chunked_init(&c);
	CHECK_EQ(http_chunked_scan(&c, s, strlen(s), NULL, NULL), 11);
	CHECK(c.done);
	CHECK_EQ(http_chunked_scan(&c, s + 11, strlen(s) - 11, NULL, NULL), 0);
}

static void test_big_chunk_streamed(void)
{
	/* the size is accepted before the data arrives; data flows in any pieces */
	const char *head = "ffffffffffffffff\r\n";
	struct http_chunked c;
	char data[4096];
	struct http_span span;
	size_t nspan = 1;

	http_chunked_init(&c);
	CHECK_EQ(http_chunked_scan(&c, head, strlen(head), NULL, NULL), strlen(head));
	CHECK(c.remaining == UINT64_MAX);
	memset(data, 'x', sizeof(data));
	CHECK_EQ(http_chunked_scan(&c, data, sizeof(data), &span, &nspan), sizeof(data));
	CHECK_EQ(nspan, 1);
	CHECK_EQ(span.off, 0);
	CHECK_EQ(span.len, sizeof(data));
	CHECK(c.remaining == UINT64_MAX - sizeof(data));
	CHECK(!c.done);
}

static void test_span_capacity(void)
{
	const char *s = "2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n";
	struct http_chunked c;
	struct http_span span;
	size_t nspan = 1;
	ssize_t r1, r2;

	http_chunked_init(&c);
	r1 = http_chunked_scan(&c, s, strlen(s), &span, &nspan);
	CHECK_EQ(r1, 10); /* stops before the second chunk's data */
	CHECK_EQ(nspan, 1);
	CHECK_EQ(span.off, 3);
	CHECK_EQ(span.len, 2);
	CHECK(!c.done);
	nspan = 1;
	r2 = http_chunked_scan(&c, s + r1, strlen(s) - (size_t)r1, &span, &nspan);
	CHECK_EQ(r1 + r2, strlen(s));
	CHECK_EQ(nspan, 1);
	CHECK(!memcmp(s + r1 + span.off, "cd", 2));
	CHECK(c.done);
	CHECK_EQ(c.total, 4);
}

static void test_errors_sticky(void)
{
	struct http_chunked c;

	http_chunked_init(&c);
	CHECK_EQ(http_chunked_scan(&c, "z\r\n", 3, NULL, NULL), -1);
	CHECK_EQ(http_chunked_scan(&c, "0\r\n\r\n", 5, NULL, NULL), -1);
	CHECK(!c.done);
}

/* Result of feeding s[0..n) split at k (k == 0: whole; k == SIZE_MAX: byte by byte). */
static void scan_split(const char *s, size_t n, size_t k, ssize_t *consumed, bool *done,
		       uint64_t *total)
{
	struct http_chunked c;
	size_t off = 0;

	http_chunked_init(&c);
	while (off < n && !c.done) {
		size_t piece = k == SIZE_MAX ? 1 : off < k ? k - off : n - off;
		ssize_t r = http_chunked_scan(&c, s + off, piece, NULL, NULL);

		if (r < 0) {
			*consumed = -1;
			*done = false;
			*total = 0;
			return;
		}
		off += (size_t)r;
	}
	*consumed = (ssize_t)off;
	*done = c.done;
	*total = c.total;
}

/* Randomly corrupted bodies (fixed seed) give the same verdict however they are split. */
static void test_mutation_consistency(void)
{
	static const char *const bodies[] = {
	    "5\r\nhello\r\n0\r\n\r\n",
	    "3;a=b\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nGET",
	    "0\r\nA: b\r\nC:\r\n\r\n",
	};
	static const char bytes[] = "\r\n ;:\t=\"\x00\x7f\x80"
				    "0aAfFgx";
	unsigned seed = 4242;
	int bad = 0;

	for (int iter = 0; iter < 3000 && bad < 5; iter++) {
		const char *base = bodies[iter % 3];
		size_t n = strlen(base);
		char buf[128];
		ssize_t wc, sc;
		bool wd, sd;
		uint64_t wt, st;

		memcpy(buf, base, n);
		for (int m = 0; m < 1 + iter % 2; m++) {
			seed = seed * 1103515245 + 12345;
			buf[(seed >> 8) % n] = bytes[(seed >> 20) % (sizeof(bytes) - 1)];
		}
		scan_split(buf, n, 0, &wc, &wd, &wt);
		for (size_t k = 1; k <= n; k++) {
			scan_split(buf, n, k == n ? SIZE_MAX : k, &sc, &sd, &st);
			if (sc != wc || sd != wd || st != wt) {
				fprintf(stderr, "  iter %d split %zu: %zd/%d vs whole %zd/%d\n",
					iter, k, sc, sd, wc, wd);
				bad++;
				break;
			}
		}
	}
	CHECK_EQ(bad, 0);
}

#define BAD(name, text)                                                                            \
	static void name(void)                                                                     \
	{                                                                                          \
		CHECK_EQ(scan_all(text), -1);                                                      \
		check_splits(text, -1, NULL);                                                      \
	}

BAD(bad_hex, "g\r\nhello\r\n0\r\n\r\n")
BAD(bad_hex_prefix, "0x5\r\nhello\r\n0\r\n\r\n")
BAD(bad_negative, "-1\r\nx\r\n0\r\n\r\n")
BAD(bad_empty_size, "\r\nhello\r\n0\r\n\r\n")
BAD(bad_leading_space, " 5\r\nhello\r\n0\r\n\r\n")
BAD(bad_trailing_space_no_ext, "5 \r\nhello\r\n0\r\n\r\n")
BAD(bad_17_digits, "00000000000000005\r\nhello\r\n0\r\n\r\n")
BAD(bad_huge_size, "10000000000000000\r\nhello\r\n0\r\n\r\n")
BAD(bad_missing_crlf_after_data, "5\r\nhelloX\r\n0\r\n\r\n")
BAD(bad_data_too_long, "5\r\nhello!\r\n0\r\n\r\n")
BAD(bad_junk_then_lf_after_data, "5\r\nhello!\n0\r\n\r\n")
BAD(bad_lf_after_data, "5\r\nhello\n0\r\n\r\n")
BAD(bad_cr_only_after_data, "5\r\nhello\r0\r\n\r\n")
BAD(bad_bare_lf_size, "5\nhello\r\n0\r\n\r\n")
BAD(bad_bare_lf_last, "5\r\nhello\r\n0\n\r\n")
BAD(bad_bare_lf_final, "5\r\nhello\r\n0\r\n\n")
BAD(bad_bare_cr_size, "5\rhello\r\n0\r\n\r\n")
BAD(bad_lf_in_ext, "5;a\nb\r\nhello\r\n0\r\n\r\n")
BAD(bad_ctl_in_ext, "5;a\x01\r\nhello\r\n0\r\n\r\n")
BAD(bad_nul_after_size, "5;\x7f\r\nhello\r\n0\r\n\r\n")
BAD(bad_ws_then_garbage, "5 x\r\nhello\r\n0\r\n\r\n")
BAD(bad_trailer_obs_fold, "0\r\nX-A: 1\r\n continued\r\n\r\n")
BAD(bad_trailer_no_colon, "0\r\nnocolon\r\n\r\n")
BAD(bad_trailer_space_before_colon, "0\r\nX-A : 1\r\n\r\n")
BAD(bad_trailer_ctl, "0\r\nX-A: 1\x02\r\n\r\n")
BAD(bad_trailer_bare_lf, "0\r\nX-A: 1\n\r\n")
BAD(bad_final_not_crlf, "0\r\n\rX")

static void bad_size_line_too_long(void)
{
	char buf[HTTP_CHUNK_LINE_MAX + 64];
	size_t n = 0;

	n += (size_t)snprintf(buf, sizeof(buf), "5;");
	memset(buf + n, 'e', HTTP_CHUNK_LINE_MAX);
	n += HTTP_CHUNK_LINE_MAX;
	snprintf(buf + n, sizeof(buf) - n, "\r\nhello\r\n0\r\n\r\n");
	CHECK_EQ(scan_all(buf), -1);
	/* an extension that fits is fine */
	n = (size_t)snprintf(buf, sizeof(buf), "5;");
	memset(buf + n, 'e', HTTP_CHUNK_LINE_MAX - 4);
	n += HTTP_CHUNK_LINE_MAX - 4;
	snprintf(buf + n, sizeof(buf) - n, "\r\nhello\r\n0\r\n\r\n");
	CHECK_EQ(scan_all(buf), strlen(buf));
}

static void bad_trailers_too_large(void)
{
	size_t cap = HTTP_CHUNK_TRAILER_MAX + 256, n;
	char *buf = malloc(cap);
	struct http_chunked c;

	n = (size_t)snprintf(buf, cap, "0\r\n");
	while (n < HTTP_CHUNK_TRAILER_MAX + 16)
		n += (size_t)snprintf(buf + n, cap - n, "X-Pad: 0123456789abcdef\r\n");
	snprintf(buf + n, cap - n, "\r\n");
	http_chunked_init(&c);
	CHECK_EQ(http_chunked_scan(&c, buf, strlen(buf), NULL, NULL), -1);
	free(buf);
}

/* split_trailers: the scan stops after the last-chunk line, whatever the input split. */
static void test_split_trailers(void)
{
	static const char body[] = "3\r\nabc\r\n0\r\nX-A: 1\r\nContent-Digest: d\r\n\r\n";
	size_t n = sizeof(body) - 1, tstart = strlen("3\r\nabc\r\n0\r\n");

	for (size_t step = 1; step <= n; step++) {
		struct http_chunked c;
		size_t off = 0, split_at = 0;
		bool ok = true;

		http_chunked_init(&c);
		c.split_trailers = true;
		while (off < n && !c.done && ok) {
			size_t piece = n - off > step ? step : n - off;
			bool before = c.in_trailers;
			ssize_t r = http_chunked_scan(&c, body + off, piece, NULL, NULL);

			ok = r >= 0;
			off += r > 0 ? (size_t)r : 0;
			if (!before && c.in_trailers)
				split_at = off;
		}
		CHECK(ok);
		CHECK(c.done);
		CHECK_EQ(off, n);
		CHECK_EQ(split_at, tstart);
	}
}

static bool keep_digest(struct http_str name, void *arg)
{
	(void)arg;
	return http_trailer_allowed(name);
}

static const char *filter(const char *in)
{
	static char out[512];
	ssize_t r = http_trailers_filter(in, strlen(in), out, sizeof(out), keep_digest, NULL);

	if (r < 0)
		return NULL;
	out[r] = '\0';
	return out;
}

static void test_trailers_filter(void)
{
	char inplace[] = "Host: evil\r\nrepr-digest: x\r\nX-Consumer: root\r\n\r\n";
	ssize_t r;

	CHECK_STR(filter("\r\n"), "\r\n");
	CHECK_STR(filter("X-A: 1\r\n\r\n"), "\r\n");
	CHECK_STR(filter("Content-Digest: sha-256=:x=:\r\n\r\n"),
		  "Content-Digest: sha-256=:x=:\r\n\r\n");
	CHECK_STR(filter("Transfer-Encoding: chunked\r\nContent-Length: 5\r\nHost: evil\r\n"
			 "Authorization: Bearer x\r\nX-Forwarded-For: 1.2.3.4\r\ngrpc-status: 0\r\n"
			 "Cookie: a=b\r\nGRPC-Message: ok\r\n\r\n"),
		  "grpc-status: 0\r\nGRPC-Message: ok\r\n\r\n");
	/* not a complete section */
	CHECK(filter("X-A: 1\r\n") == NULL);
	CHECK(filter("") == NULL);
	CHECK(filter("X-A\r\n\r\n") == NULL);
	CHECK(filter("\r\n\r\n") == NULL);
	/* in place */
	r = http_trailers_filter(inplace, strlen(inplace), inplace, strlen(inplace), keep_digest,
				 NULL);
	CHECK_EQ(r, (ssize_t)strlen("repr-digest: x\r\n\r\n"));
	CHECK(!memcmp(inplace, "repr-digest: x\r\n\r\n", (size_t)r));
	/* a too small output */
	{
		char small[4];

		CHECK_EQ(http_trailers_filter("Digest: abc\r\n\r\n", 15, small, sizeof(small),
					      keep_digest, NULL),
			 -1);
	}
}

int main(void)
{
	RUN(test_simple);
	RUN(test_multiple_chunks);
	RUN(test_leading_zeros);
	RUN(test_extensions);
	RUN(test_trailers);
	RUN(test_split_trailers);
	RUN(test_trailers_filter);
	RUN(test_empty_body);
	RUN(test_stops_at_end);
	RUN(test_big_chunk_streamed);
	RUN(test_span_capacity);
	RUN(test_errors_sticky);
	RUN(test_mutation_consistency);
	RUN(bad_hex);
	RUN(bad_hex_prefix);
	RUN(bad_negative);
	RUN(bad_empty_size);
	RUN(bad_leading_space);
	RUN(bad_trailing_space_no_ext);
	RUN(bad_17_digits);
	RUN(bad_huge_size);
	RUN(bad_missing_crlf_after_data);
	RUN(bad_data_too_long);
	RUN(bad_junk_then_lf_after_data);
	RUN(bad_lf_after_data);
	RUN(bad_cr_only_after_data);
	RUN(bad_bare_lf_size);
	RUN(bad_bare_lf_last);
	RUN(bad_bare_lf_final);
	RUN(bad_bare_cr_size);
	RUN(bad_lf_in_ext);
	RUN(bad_ctl_in_ext);
	RUN(bad_nul_after_size);
	RUN(bad_ws_then_garbage);
	RUN(bad_trailer_obs_fold);
	RUN(bad_trailer_no_colon);
	RUN(bad_trailer_space_before_colon);
	RUN(bad_trailer_ctl);
	RUN(bad_trailer_bare_lf);
	RUN(bad_final_not_crlf);
	RUN(bad_size_line_too_long);
	RUN(bad_trailers_too_large);
	return CHECK_DONE();
}
