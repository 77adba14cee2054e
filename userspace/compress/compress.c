/* Compression policy, Accept-Encoding negotiation and the gzip / br encoders. */
#include <brotli/encode.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "compress/compress.h"

/* zlib's default level; brotli 4 is the usual choice for dynamic content: most of the
 * ratio of higher qualities at a fraction of their CPU. */
#define GZIP_LEVEL 6
#define BROTLI_QUALITY 4
#define BROTLI_MAX_LGWIN 18

static const char *const algo_names[] = {"identity", "gzip", "br", NULL};

const char *compress_algo_name(enum compress_algo a)
{
	return algo_names[a];
}

/* "type/subtype" or "type/" + "*", both tokens. */
static bool media_range_valid(const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/'))
		return false;
	for (const char *p = s; *p; p++)
		if (p != slash && !isalnum((unsigned char)*p) && !strchr("!#$&-^_.+", *p) &&
		    !(*p == '*' && p == slash + 1 && !p[1]))
			return false;
	return true;
}

static void parse_algorithms(json_t *o, const char *path, struct compress_policy *p,
			     struct cfg_errs *errs)
{
	char **names;
	int n;
	char ap[CFG_PATH_MAX], ip[CFG_PATH_MAX];

	cfg_path_key(ap, path, "algorithms");
	if (!json_object_get(o, "algorithms")) {
		p->algos[0] = COMPRESS_BR;
		p->algos[1] = COMPRESS_GZIP;
		p->nalgos = 2;
		return;
	}
	if (!cfg_get_strings(o, "algorithms", path, true, &names, &n, errs))
		return;
	if (!n)
		cfg_err(errs, ap, "at least one algorithm is required");
	for (int i = 0; i < n; i++) {
		enum compress_algo a = !strcmp(names[i], "gzip") ? COMPRESS_GZIP
				       : !strcmp(names[i], "br") ? COMPRESS_BR
								 : COMPRESS_NONE;
		bool dup = false;

		for (int j = 0; j < p->nalgos; j++)
			dup |= p->algos[j] == a;
		if (a == COMPRESS_NONE)
			cfg_err(errs, cfg_path_idx(ip, ap, i),
				"unknown algorithm \"%s\" (gzip or br)", names[i]);
		else if (dup)
			cfg_err(errs, cfg_path_idx(ip, ap, i), "\"%s\" is listed twice", names[i]);
		else
			p->algos[p->nalgos++] = a;
	}
	cfg_strings_free(names, n);
}

struct compress_policy *compress_policy_parse(json_t *o, const char *path, struct cfg_errs *errs)
{
	static const char *const keys[] = {"algorithms", "types", "min_bytes", NULL};
	static const char *const default_types[] = {"application/json", "text/*"};
	struct compress_policy *p;
	char tp[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	int before = errs->count;
	long long min;

	if (!json_is_object(o)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	cfg_check_keys(o, path, keys, errs);
	parse_algorithms(o, path, p, errs);
	cfg_path_key(tp, path, "types");
	if (json_object_get(o, "types")) {
		cfg_get_strings(o, "types", path, true, &p->types, &p->ntypes, errs);
		if (!p->ntypes && json_is_array(json_object_get(o, "types")))
			cfg_err(errs, tp, "at least one media type is required");
		for (int i = 0; i < p->ntypes; i++)
			if (!media_range_valid(p->types[i]))
				cfg_err(errs, cfg_path_idx(ip, tp, i),
					"\"%s\" is not a media type (type/subtype or type/*)",
					p->types[i]);
	} else {
		p->types = calloc(3, sizeof(char *));
		for (int i = 0; p->types && i < 2; i++)
			p->types[p->ntypes++] = strdup(default_types[i]);
	}
	cfg_get_int(o, "min_bytes", path, 1024, 0, (long long)1 << 40, &min, errs);
	p->min_bytes = min;
	if (errs->count > before) {
		compress_policy_free(p);
		return NULL;
	}
	return p;
}

void compress_policy_free(struct compress_policy *p)
{
	if (!p)
		return;
	cfg_strings_free(p->types, p->ntypes);
	free(p);
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths; -1 bad. */
static int parse_q(const char *s, size_t n)
{
	int q, scale = 100;
	size_t i = 2;

	if (!n || (s[0] != '0' && s[0] != '1'))
		return -1;
	q = s[0] == '1' ? 1000 : 0;
	if (n == 1)
		return q;
	if (s[1] != '.' || n > 5)
		return -1;
	for (; i < n; i++, scale /= 10) {
		if (!isdigit((unsigned char)s[i]) || (q == 1000 && s[i] != '0'))
			return -1;
		q += (s[i] - '0') * scale;
	}
	return q;
}

static size_t trim_ows(const char *s, size_t start, size_t *end)
{
	while (start < *end && (s[start] == ' ' || s[start] == '\t'))
		start++;
	while (*end > start && (s[*end - 1] == ' ' || s[*end - 1] == '\t'))
		(*end)--;
	return start;
}

/* One list element "coding *( OWS ; OWS param )": its q, or -1 when malformed. */
static int element_q(const char *s, size_t n, size_t *coding_len)
{
	const char *semi = memchr(s, ';', n);
	size_t end = semi ? (size_t)(semi - s) : n;
	int q = 1000;

	trim_ows(s, 0, &end);
	*coding_len = end;
	while (semi) {
		const char *p = semi + 1, *next;
		size_t plen, st;

		n -= p - s;
		s = p;
		next = memchr(s, ';', n);
		plen = next ? (size_t)(next - s) : n;
		st = trim_ows(s, 0, &plen);
		if (plen - st >= 2 && (s[st] == 'q' || s[st] == 'Q') && s[st + 1] == '=') {
			q = parse_q(s + st + 2, plen - st - 2);
			if (q < 0)
				return -1;
		}
		semi = next;
	}
	return q;
}

struct ae_prefs {
	int q[3]; /* identity, gzip, br: -1 not named */
	int star; /* -1 not present */
	bool any;
};

static void ae_field(struct http_str v, struct ae_prefs *ap)
{
	size_t i = 0;

	while (i < v.len) {
		const char *comma = memchr(v.p + i, ',', v.len - i);
		size_t elen = comma ? (size_t)(comma - (v.p + i)) : v.len - i, clen, st, end;
		const char *e = v.p + i;
		int q;

		i += elen + (comma ? 1 : 0);
		end = elen;
		st = trim_ows(e, 0, &end);
		if (st == end)
			continue;
		q = element_q(e + st, end - st, &clen);
		if (q < 0)
			continue; /* a malformed element says nothing */
		ap->any = true;
		for (int a = 0; algo_names[a]; a++) {
			struct http_str c = {e + st, clen};

			if (strlen(algo_names[a]) == clen && http_str_eq_nocase(c, algo_names[a]))
				ap->q[a] = q;
			else if (a == COMPRESS_GZIP && clen == 6 && http_str_eq_nocase(c, "x-gzip"))
				ap->q[a] = q;
		}
		if (clen == 1 && e[st] == '*')
			ap->star = q;
	}
}

enum compress_algo compress_negotiate(const struct compress_policy *p,
				      const struct http_header *headers, int nheaders)
{
	struct ae_prefs ap = {.q = {-1, -1, -1}, .star = -1};
	enum compress_algo best = COMPRESS_NONE;
	int best_q = 0;

	for (int i = 0; i < nheaders; i++)
		if (http_str_eq_nocase(headers[i].name, "accept-encoding"))
			ae_field(headers[i].value, &ap);
	if (!ap.any)
		return COMPRESS_NONE;
	for (int i = 0; i < p->nalgos; i++) {
		enum compress_algo a = p->algos[i];
		int q = ap.q[a] >= 0 ? ap.q[a] : ap.star >= 0 ? ap.star : 0;

		if (q > best_q) {
			best = a;
			best_q = q;
		}
	}
	/* Identity is the fallback; it wins only when the client explicitly prefers it. */
	if (best != COMPRESS_NONE && ap.q[COMPRESS_NONE] > best_q)
		return COMPRESS_NONE;
	return best;
}

bool compress_type_listed(const struct compress_policy *p, struct http_str ct)
{
	size_t n = 0, slash = 0;

	while (n < ct.len && ct.p[n] != ';' && ct.p[n] != ' ' && ct.p[n] != '\t')
		n++;
	while (slash < n && ct.p[slash] != '/')
		slash++;
	if (!n || slash == n)
		return false;
	for (int i = 0; i < p->ntypes; i++) {
		const char *t = p->types[i];
		size_t tl = strlen(t);

		if (tl >= 2 && !strcmp(t + tl - 2, "/*")) {
			if (slash == tl - 2 && !strncasecmp(ct.p, t, slash))
				return true;
		} else if (tl == n && !strncasecmp(ct.p, t, n)) {
			return true;
		}
	}
	return false;
}

struct compressor {
	enum compress_algo algo;
	bool dirty;	   /* input taken since the last completed flush */
	bool pending;	   /* the last call filled the output: the encoder holds more */
	bool flushing;	   /* br: a FLUSH is under way, its input may not grow */
	size_t flush_left; /* br: input of that flush not yet taken */
	z_stream zs;
	BrotliEncoderState *br;
};

struct compressor *compressor_new(enum compress_algo a, uint64_t size_hint)
{
	struct compressor *z = calloc(1, sizeof(*z));
	int wbits = 15;

	if (!z)
		return NULL;
	z->algo = a;
	/* A small body needs no bigger window than itself (as NGINX does). */
	if (a == COMPRESS_GZIP) {
		while (size_hint && wbits > 9 && size_hint < (1ull << (wbits - 1)))
			wbits--;
		if (deflateInit2(&z->zs, GZIP_LEVEL, Z_DEFLATED, wbits + 16,
				 wbits - 7 > 8	 ? 8
				 : wbits - 7 < 1 ? 1
						 : wbits - 7,
				 Z_DEFAULT_STRATEGY) != Z_OK) {
			free(z);
			return NULL;
		}
		return z;
	}
	z->br = BrotliEncoderCreateInstance(NULL, NULL, NULL);
	if (!z->br) {
		free(z);
		return NULL;
	}
	wbits = BROTLI_MAX_LGWIN;
	while (size_hint && wbits > BROTLI_MIN_WINDOW_BITS && size_hint < (1ull << (wbits - 1)))
		wbits--;
	BrotliEncoderSetParameter(z->br, BROTLI_PARAM_QUALITY, BROTLI_QUALITY);
	BrotliEncoderSetParameter(z->br, BROTLI_PARAM_LGWIN, wbits);
	if (size_hint && size_hint < (1u << 30))
		BrotliEncoderSetParameter(z->br, BROTLI_PARAM_SIZE_HINT, (uint32_t)size_hint);
	return z;
}

void compressor_free(struct compressor *z)
{
	if (!z)
		return;
	if (z->algo == COMPRESS_GZIP)
		deflateEnd(&z->zs);
	else
		BrotliEncoderDestroyInstance(z->br);
	free(z);
}

static int gzip_step(struct compressor *z, const char *in, size_t n, char *out, size_t cap,
		     enum compress_mode mode, size_t *used, size_t *produced, bool *done)
{
	int flush = mode == COMPRESS_FINISH  ? Z_FINISH
		    : mode == COMPRESS_FLUSH ? Z_SYNC_FLUSH
					     : Z_NO_FLUSH;
	int r;

	z->zs.next_in = (Bytef *)in;
	z->zs.avail_in = n > UINT32_MAX ? UINT32_MAX : n;
	z->zs.next_out = (Bytef *)out;
	z->zs.avail_out = cap > UINT32_MAX ? UINT32_MAX : cap;
	r = deflate(&z->zs, flush);
	if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
		return -1;
	*used = n - z->zs.avail_in;
	*produced = cap - z->zs.avail_out;
	*done = r == Z_STREAM_END;
	z->pending = z->zs.avail_out == 0;
	return 0;
}

static int br_step(struct compressor *z, const char *in, size_t n, char *out, size_t cap,
		   enum compress_mode mode, size_t *used, size_t *produced, bool *done)
{
	BrotliEncoderOperation op = mode == COMPRESS_FINISH  ? BROTLI_OPERATION_FINISH
				    : mode == COMPRESS_FLUSH ? BROTLI_OPERATION_FLUSH
							     : BROTLI_OPERATION_PROCESS;
	const uint8_t *next_in = (const uint8_t *)in;
	uint8_t *next_out = (uint8_t *)out;
	size_t avail_in, avail_out = cap;

	/* A flush under way must finish, on the input it started with, before anything else
	 * (even the finish: libbrotli refuses an operation changed midway). */
	if (z->flushing) {
		op = BROTLI_OPERATION_FLUSH;
		if (n > z->flush_left)
			n = z->flush_left;
	}
	avail_in = n;
	if (!BrotliEncoderCompressStream(z->br, op, &avail_in, &next_in, &avail_out, &next_out,
					 NULL))
		return -1;
	*used = n - avail_in;
	*produced = cap - avail_out;
	*done = op == BROTLI_OPERATION_FINISH && BrotliEncoderIsFinished(z->br);
	z->pending = BrotliEncoderHasMoreOutput(z->br);
	z->flushing = op == BROTLI_OPERATION_FLUSH && (avail_in || z->pending);
	z->flush_left = avail_in;
	return 0;
}

int compressor_step(struct compressor *z, const char *in, size_t n, char *out, size_t cap,
		    enum compress_mode mode, size_t *used, size_t *produced, bool *done)
{
	int r;

	*used = *produced = 0;
	*done = false;
	/* A flush with nothing new to flush would only add empty blocks. */
	if (mode == COMPRESS_FLUSH && !n && !z->dirty && !z->pending && !z->flushing)
		return 0;
	if (mode == COMPRESS_PROCESS && !n && !z->pending)
		return 0;
	if (!cap)
		return 0;
	r = z->algo == COMPRESS_GZIP ? gzip_step(z, in, n, out, cap, mode, used, produced, done)
				     : br_step(z, in, n, out, cap, mode, used, produced, done);
	if (r < 0)
		return -1;
	if (*used)
		z->dirty = true;
	if (mode == COMPRESS_FLUSH && *used == n && !z->pending && !z->flushing)
		z->dirty = false;
	return 0;
}
