/*
 * Chunked body decoder (userspace/http/chunked.c). The input is fed once whole and once
 * in pseudo-random pieces with a tiny span array (so the decoder must stop early and be
 * called again); both runs must agree on error, length, completion and decoded bytes.
 * Decoded bytes never exceed the input, spans stay inside what was consumed, and a
 * shorter return than offered happens only when done or when the span array is full.
 */
#include "fuzz.h"
#include "http/http.h"

struct run {
	bool error, done;
	size_t consumed, decoded_len;
	uint64_t total;
	char *decoded;
};

/* One call's spans appended to r->decoded after checking they lie inside [0, ret). */
static void collect(struct run *r, const char *buf, ssize_t ret, const struct http_span *spans,
		    size_t n)
{
	size_t prev = 0;

	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(spans[i].len > 0 && spans[i].off >= prev);
		FUZZ_CHECK(spans[i].off + spans[i].len <= (size_t)ret);
		memcpy(r->decoded + r->decoded_len, buf + spans[i].off, spans[i].len);
		r->decoded_len += spans[i].len;
		prev = spans[i].off + spans[i].len;
	}
}

static void run_whole(const char *buf, size_t len, struct run *r)
{
	struct http_chunked c;
	struct http_span *spans = malloc((len + 1) * sizeof(*spans));
	size_t n = len + 1;
	ssize_t ret;

	FUZZ_CHECK(spans != NULL);
	http_chunked_init(&c);
	ret = http_chunked_scan(&c, buf, len, spans, &n);
	r->error = ret < 0;
	if (!r->error) {
		FUZZ_CHECK((size_t)ret <= len && n <= len + 1);
		collect(r, buf, ret, spans, n);
		r->consumed = (size_t)ret;
		/* with room for every span, only the end of the body stops it early */
		FUZZ_CHECK(r->consumed == len || c.done);
		/* after the end, nothing more belongs to this body */
		FUZZ_CHECK(!c.done || http_chunked_scan(&c, buf, len, NULL, NULL) == 0);
	} else {
		FUZZ_CHECK(http_chunked_scan(&c, buf, len, NULL, NULL) == -1);
	}
	r->done = c.done;
	r->total = c.total;
	free(spans);
}

static void run_pieces(const char *buf, size_t len, uint64_t seed, struct run *r)
{
	struct http_chunked c;
	struct http_span spans[3];
	size_t off = 0;

	http_chunked_init(&c);
	while (off < len && !c.done) {
		size_t piece = 1 + fuzz_next(&seed) % (len - off < 64 ? len - off : 64);
		char *copy = fuzz_dup((const uint8_t *)buf + off, piece);
		size_t done_here = 0;

		while (done_here < piece && !c.done) {
			size_t cap = 1 + fuzz_next(&seed) % 3, n = cap;
			ssize_t ret =
			    http_chunked_scan(&c, copy + done_here, piece - done_here, spans, &n);

			if (ret < 0) {
				r->error = true;
				free(copy);
				return;
			}
			FUZZ_CHECK((size_t)ret <= piece - done_here && n <= cap);
			FUZZ_CHECK((size_t)ret == piece - done_here || c.done || n == cap);
			collect(r, copy + done_here, ret, spans, n);
			done_here += (size_t)ret;
		}
		free(copy);
		off += done_here;
	}
	r->consumed = off;
	r->done = c.done;
	r->total = c.total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = fuzz_dup(data, size);
	struct run whole = {.decoded = malloc(size + 1)}, pieces = {.decoded = malloc(size + 1)};

	FUZZ_CHECK(whole.decoded && pieces.decoded);
	run_whole(buf, size, &whole);
	run_pieces(buf, size, fuzz_seed(data, size), &pieces);
	FUZZ_CHECK(whole.error == pieces.error);
	if (!whole.error) {
		FUZZ_CHECK(whole.consumed == pieces.consumed && whole.done == pieces.done);
		FUZZ_CHECK(whole.decoded_len <= whole.consumed);
		FUZZ_CHECK(whole.decoded_len == pieces.decoded_len);
		FUZZ_CHECK(!memcmp(whole.decoded, pieces.decoded, whole.decoded_len));
		FUZZ_CHECK(whole.total == pieces.total);
		/* sizes are counted when announced; once done, all of them were delivered */
		FUZZ_CHECK(whole.total >= whole.decoded_len);
		if (whole.done)
			FUZZ_CHECK(whole.total == whole.decoded_len);
	}
	free(whole.decoded);
	free(pieces.decoded);
	free(buf);
	return 0;
}
