/*
 * Response compression: the policy (which algorithms, which media types, from what size),
 * Accept-Encoding negotiation (RFC 9110 12.5.3) and streaming encoders over zlib (gzip)
 * and libbrotli (br). Pure logic: filters/compress.c applies it to a stream.
 *
 * Encoders are streaming: each call consumes what fits and writes at most `cap` bytes, so
 * memory is the encoder's state (gzip: up to 256 KiB, br: window of 2^18 at quality 4),
 * never the body. Windows shrink for bodies known to be small.
 */
#ifndef XGATE_COMPRESS_COMPRESS_H
#define XGATE_COMPRESS_COMPRESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cfg.h"
#include "http/http.h"

enum compress_algo {
	COMPRESS_NONE,
	COMPRESS_GZIP,
	COMPRESS_BR,
};

#define COMPRESS_MAX_ALGOS 2

struct compress_policy {
	enum compress_algo algos[COMPRESS_MAX_ALGOS]; /* server preference, first wins ties */
	int nalgos;
	char **types; /* lower-case "type/subtype" or "type/" + "*" */
	int ntypes;
	uint64_t min_bytes;
};

/* The "compression" object; path its JSON path. NULL with errors recorded. */
struct compress_policy *compress_policy_parse(json_t *o, const char *path, struct cfg_errs *errs);
void compress_policy_free(struct compress_policy *p);

const char *compress_algo_name(enum compress_algo a);

/*
 * The algorithm for a request's Accept-Encoding fields (all of them): the listed one with
 * the highest q (q=0 excludes; "*" stands for those not named; ties go to the policy's
 * order); COMPRESS_NONE when none is acceptable, when there is no Accept-Encoding, or
 * when "identity" is explicitly preferred.
 */
enum compress_algo compress_negotiate(const struct compress_policy *p,
				      const struct http_header *headers, int nheaders);

/* The media type of a Content-Type value (parameters ignored) is in the policy's types. */
bool compress_type_listed(const struct compress_policy *p, struct http_str content_type);

enum compress_mode {
	COMPRESS_PROCESS, /* encode as buffers fill */
	COMPRESS_FLUSH,	  /* emit everything consumed so far (no more input for now) */
	COMPRESS_FINISH,  /* the input is the last: end the stream */
};

struct compressor;

/* size_hint: the body's length when known (0: unknown). NULL on allocation failure. */
struct compressor *compressor_new(enum compress_algo a, uint64_t size_hint);
void compressor_free(struct compressor *z);
/*
 * Encodes in[0..n) into out[0..cap): *used input bytes taken, *produced written. *done once
 * FINISH has written the end of the stream. With FLUSH or FINISH the caller passes the
 * same remaining input on the next call (it may only grow when the mode was PROCESS or a
 * FLUSH completed). -1 on an encoder error.
 */
int compressor_step(struct compressor *z, const char *in, size_t n, char *out, size_t cap,
		    enum compress_mode mode, size_t *used, size_t *produced, bool *done);

#endif
