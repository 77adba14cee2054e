/* Compression: policy parsing with JSON paths, Accept-Encoding negotiation, media types,
 * and the streaming encoders round-tripping through tiny output buffers, flushes and
 * finish (decoded with zlib / libbrotli's decoder). */
#include <brotli/decode.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "compress/compress.h"
#include "unit/check.h"

static struct compress_policy *parse(const char *json, struct cfg_errs *errs)
{
	json_t *o = json_loads(json, 0, NULL);
	struct compress_policy *p;

	cfg_errs_free(errs);
	memset(errs, 0, sizeof(*errs));
	p = compress_policy_parse(o, "routes[1].compression", errs);
	json_decref(o);
	return p;
}

static enum compress_algo nego(const struct compress_policy *p, const char *ae)
{
	struct http_header h = {{"Accept-Encoding", 15}, {ae, strlen(ae)}};

	return compress_negotiate(p, &h, 1);
}

static void test_policy_defaults_and_errors(void)
{
	struct cfg_errs errs = {0};
	struct compress_policy *p = parse("{}", &errs);

	CHECK(p != NULL);
	CHECK_EQ(p->nalgos, 2);
	CHECK_EQ(p->algos[0], COMPRESS_BR);
	CHECK_EQ(p->min_bytes, 1024);
	CHECK_EQ(p->ntypes, 2);
	compress_policy_free(p);
	CHECK(!parse("{\"algorithms\": [\"zstd\"]}", &errs));
	CHECK(strstr(errs.text, "routes[1].compression.algorithms[0]: unknown algorithm"));
	CHECK(!parse("{\"algorithms\": []}", &errs));
	CHECK(strstr(errs.text, "routes[1].compression.algorithms: at least one"));
	CHECK(!parse("{\"algorithms\": [\"br\", \"BR\"]}", &errs));
	CHECK(strstr(errs.text, "routes[1].compression.algorithms[1]"));
	CHECK(!parse("{\"types\": [\"text/*\", \"*/json\", \"text\"]}", &errs));
	CHECK_EQ(errs.count, 2);
	CHECK(strstr(errs.text, "routes[1].compression.types[1]"));
	CHECK(strstr(errs.text, "routes[1].compression.types[2]"));
	CHECK(!parse("{\"min_bytes\": \"1k\"}", &errs));
	CHECK(strstr(errs.text, "routes[1].compression.min_bytes"));
	CHECK(!parse("{\"gzip\": true}", &errs));
	CHECK(strstr(errs.text, "routes[1].compression.gzip"));
	CHECK(!parse("true", &errs));
	CHECK(strstr(errs.text, "routes[1].compression: must be an object"));
	cfg_errs_free(&errs);
}

static void test_negotiation(void)
{
	struct cfg_errs errs = {0};
	struct compress_policy *p = parse("{\"algorithms\": [\"gzip\", \"br\"]}", &errs);
	struct http_header two[2] = {
	    {{"Accept-Encoding", 15}, {"br;q=0.4", 8}},
	    {{"accept-encoding", 15}, {"gzip;q=0.3", 10}},
	};

	CHECK_EQ(nego(p, "gzip"), COMPRESS_GZIP);
	CHECK_EQ(nego(p, "br"), COMPRESS_BR);
	CHECK_EQ(nego(p, "br, gzip"), COMPRESS_GZIP); /* tie: the policy's order */
	CHECK_EQ(nego(p, "gzip;q=0.5, br"), COMPRESS_BR);
	CHECK_EQ(nego(p, "GZIP ; Q=0.9 , br;q=0.899"), COMPRESS_GZIP);
	CHECK_EQ(nego(p, "x-gzip"), COMPRESS_GZIP);
	CHECK_EQ(nego(p, "*"), COMPRESS_GZIP);
	CHECK_EQ(nego(p, "*;q=0.1, gzip;q=0"), COMPRESS_BR);
	CHECK_EQ(nego(p, "gzip;q=0, br;q=0.000"), COMPRESS_NONE);
	CHECK_EQ(nego(p, "*;q=0"), COMPRESS_NONE);
	CHECK_EQ(nego(p, "identity"), COMPRESS_NONE);
	CHECK_EQ(nego(p, "identity;q=0.9, gzip;q=0.5"), COMPRESS_NONE);
	CHECK_EQ(nego(p, "identity;q=0.5, gzip;q=0.5"), COMPRESS_GZIP);
	CHECK_EQ(nego(p, "deflate, compress"), COMPRESS_NONE);
	/* Malformed q values make their element say nothing. */
	CHECK_EQ(nego(p, "gzip;q=1.5"), COMPRESS_NONE);
	CHECK_EQ(nego(p, "gzip;q=0.1234"), COMPRESS_NONE);
	CHECK_EQ(nego(p, "gzip;q=, br"), COMPRESS_BR);
	CHECK_EQ(nego(p, ", ,gzip,"), COMPRESS_GZIP);
	CHECK_EQ(nego(p, ""), COMPRESS_NONE);
	CHECK_EQ(compress_negotiate(p, two, 2), COMPRESS_BR); /* every field counts */
	CHECK_EQ(compress_negotiate(p, two, 0), COMPRESS_NONE);
	compress_policy_free(p);
	p = parse("{\"algorithms\": [\"gzip\"]}", &errs);
	CHECK_EQ(nego(p, "br"), COMPRESS_NONE); /* not configured */
	compress_policy_free(p);
	cfg_errs_free(&errs);
}

static bool listed(const struct compress_policy *p, const char *ct)
{
	struct http_str s = {ct, strlen(ct)};

	return compress_type_listed(p, s);
}

static void test_media_types(void)
{
	struct cfg_errs errs = {0};
	struct compress_policy *p =
	    parse("{\"types\": [\"application/json\", \"text/*\", \"image/svg+xml\"]}", &errs);

	CHECK(listed(p, "application/json"));
	CHECK(listed(p, "Application/JSON; charset=utf-8"));
	CHECK(listed(p, "text/html"));
	CHECK(listed(p, "text/plain;charset=x"));
	CHECK(listed(p, "image/svg+xml"));
	CHECK(!listed(p, "image/png"));
	CHECK(!listed(p, "application/jsonx"));
	CHECK(!listed(p, "application/json-seq"));
	CHECK(!listed(p, "texts/html"));
	CHECK(!listed(p, "text"));
	CHECK(!listed(p, ""));
	compress_policy_free(p);
	cfg_errs_free(&errs);
}

/* Pushes input through the encoder with an output buffer of `cap` bytes per call, taking at
 * most `feed` new input bytes per call and flushing after each feed: returns the encoded
 * stream (malloc'd) in *out. */
static size_t encode(enum compress_algo a, const char *in, size_t n, size_t cap, size_t feed,
		     char **out)
{
	struct compressor *z = compressor_new(a, 0);
	size_t off = 0, total = 0, room = 1 << 20, avail = 0;
	char *buf = malloc(room);
	bool done = false;
	int calls = 0;

	CHECK(z != NULL);
	while (!done && calls++ < 1000000) {
		size_t used, produced;
		bool fin = off + avail >= n && avail == n - off;
		enum compress_mode mode = fin ? COMPRESS_FINISH : COMPRESS_FLUSH;

		if (!avail && off < n)
			avail = n - off < feed ? n - off : feed;
		fin = off + avail == n;
		mode = fin ? COMPRESS_FINISH : COMPRESS_FLUSH;
		CHECK_EQ(compressor_step(z, in + off, avail, buf + total,
					 cap < room - total ? cap : room - total, mode, &used,
					 &produced, &done),
			 0);
		CHECK(used <= avail && produced <= cap);
		off += used;
		avail -= used;
		total += produced;
	}
	CHECK(done);
	CHECK_EQ(off, n);
	compressor_free(z);
	*out = buf;
	return total;
}

static void check_gunzip(const char *enc, size_t elen, const char *want, size_t n)
{
	z_stream zs = {0};
	char *out = malloc(n + 16);

	CHECK_EQ(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
	zs.next_in = (Bytef *)enc;
	zs.avail_in = elen;
	zs.next_out = (Bytef *)out;
	zs.avail_out = n + 16;
	CHECK_EQ(inflate(&zs, Z_FINISH), Z_STREAM_END);
	CHECK_EQ(zs.total_out, n);
	CHECK(!memcmp(out, want, n));
	inflateEnd(&zs);
	free(out);
}

static void check_unbrotli(const char *enc, size_t elen, const char *want, size_t n)
{
	size_t outlen = n + 16;
	char *out = malloc(outlen);

	CHECK_EQ(BrotliDecoderDecompress(elen, (const uint8_t *)enc, &outlen, (uint8_t *)out),
		 BROTLI_DECODER_RESULT_SUCCESS);
	CHECK_EQ(outlen, n);
	CHECK(!memcmp(out, want, n));
	free(out);
}

static void test_encoders_round_trip_through_small_buffers(void)
{
	size_t n = 300000;
	char *in = malloc(n), *enc;
	uint32_t x = 12345;

	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245 + 12345;
		/* half text-like, half noise: both paths of the encoders */
		in[i] = i < n / 2 ? "abcdefgh {}\":,"[(i / 7 + (i % 5)) % 14] : (char)(x >> 16);
	}
	for (int a = COMPRESS_GZIP; a <= COMPRESS_BR; a++) {
		size_t caps[] = {1, 7, 300, 65536};

		for (int c = 0; c < 4; c++) {
			size_t feed = c == 3 ? n : 16384, elen;

			if (caps[c] == 1 && a == COMPRESS_BR)
				feed =
				    4096; /* byte-at-a-time output, fewer flushes: keep it fast */
			elen = encode(a, in, n, caps[c], feed, &enc);
			CHECK(elen > 0 && elen < n);
			if (a == COMPRESS_GZIP)
				check_gunzip(enc, elen, in, n);
			else
				check_unbrotli(enc, elen, in, n);
			free(enc);
		}
	}
	free(in);
}

static void test_flush_emits_and_empty_flush_adds_nothing(void)
{
	for (int a = COMPRESS_GZIP; a <= COMPRESS_BR; a++) {
		struct compressor *z = compressor_new(a, 1000);
		char out[4096];
		size_t used, produced, first;
		bool done;
		int r;

		CHECK_EQ(compressor_step(z, "hello hello hello", 17, out, sizeof(out),
					 COMPRESS_PROCESS, &used, &produced, &done),
			 0);
		CHECK_EQ(used, 17);
		first = produced;
		/* A flush makes what was taken decodable now (a streaming client sees it). */
		CHECK_EQ(compressor_step(z, NULL, 0, out + first, sizeof(out) - first,
					 COMPRESS_FLUSH, &used, &produced, &done),
			 0);
		CHECK(produced > 0);
		first += produced;
		/* Flushing again with nothing new writes nothing. */
		r = compressor_step(z, NULL, 0, out + first, sizeof(out) - first, COMPRESS_FLUSH,
				    &used, &produced, &done);
		CHECK_EQ(r, 0);
		CHECK_EQ(produced, 0);
		CHECK_EQ(compressor_step(z, NULL, 0, out + first, sizeof(out) - first,
					 COMPRESS_FINISH, &used, &produced, &done),
			 0);
		CHECK(done);
		first += produced;
		if (a == COMPRESS_GZIP)
			check_gunzip(out, first, "hello hello hello", 17);
		else
			check_unbrotli(out, first, "hello hello hello", 17);
		compressor_free(z);
	}
}

int main(void)
{
	RUN(test_policy_defaults_and_errors);
	RUN(test_negotiation);
	RUN(test_media_types);
	RUN(test_encoders_round_trip_through_small_buffers);
	RUN(test_flush_emits_and_empty_flush_adds_nothing);
	return CHECK_DONE();
}
