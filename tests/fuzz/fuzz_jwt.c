/*
 * JWS/JWT verification (userspace/auth/jwt.c) against a fixed keyset (HMAC, P-256, RSA,
 * Ed25519 keys; the corpus tokens are signed with them). Two input forms:
 *   <compact token>                  verified as received;
 *   sign:<header JSON>\n<payload>    encoded and HMAC-signed here with the "hs" secret, so
 *                                    the fuzzer reaches the claim checks behind the
 *                                    signature.
 * Checks: the same token always gives the same answer; an accepted token has an object of
 * claims, a validity window holding now, and passes jwt_check_claims again; a signed token
 * that was accepted is refused once its signature changes; jwt_claim finds every member.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/b64url.h"
#include "auth/jwt.h"
#include "common/log.h"
#include "fuzz.h"

#define NOW 1700000000

/* Public keys only; the HMAC secret is bytes 1..64, as in the corpus generator. */
static const char jwks[] =
    "{\"keys\": [{\"kty\": \"oct\", \"kid\": \"hs\", \"k\": "
    "\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4_QA\"}, "
    "{\"kty\": \"EC\", \"kid\": \"ec\", \"crv\": \"P-256\", \"x\": "
    "\"4PUsISa1yRkzKsQgPoy08dxrsTJYgJVmjVp59pWERL8\", \"y\": "
    "\"iY6Pc18wBlIHxhuqD2l2r_GFohXLIwgU_0zSr71rYbc\", \"use\": \"sig\"}, {\"kty\": \"RSA\", "
    "\"kid\": \"rsa\", \"n\": "
    "\"1Us_JMkEGqjFE5kpnbdcmOlFeqtgny_-qLcS6ai-2eWcbuL9o-5J5n7y33ZpJ5yh-bmIX-"
    "uQ0rmNyDJ0Ab6l0n4tO04LItY8c4Er-B5nu_v_hEv3Pz-hH5IXzH-94qJz6XmzbyLBF6u17HG7opZK4ar8t2k68gh6e-"
    "ItZ063oGdht25vi3g7qmHt4Cyy52KjDPoCP4czu8aSJnvuK6WCywTvkp6St6SUVHDC6VYcB37aiFI4c7_"
    "HmyyoSVkvxY1Nj_nZ3s-TkBvKy86GSngGPa7pJr4gdnpWPgRQ0a8F1urT4g5UzCXy8jacc4DSAfKQWUGPqrennBtYUf_"
    "YbTItzw\", \"e\": \"AQAB\"}, {\"kty\": \"OKP\", \"kid\": \"ed\", \"crv\": \"Ed25519\", \"x\": "
    "\"aEZhZ3dJRUNA5tlQBADCYqxE8P6OBmvDIjrv3YJWhzA\", \"alg\": \"EdDSA\"}]}";

static struct keyset *ks;
static unsigned char secret[64];
static bool verbose; /* FUZZ_VERBOSE=1: print each verdict, to see what the seeds reach */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];

	log_set_level(LOG_ERROR);
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	FUZZ_CHECK(jwa_init());
	ks = keyset_from_jwks(jwks, sizeof(jwks) - 1, "fuzz-jwks", err, sizeof(err));
	if (!ks)
		fprintf(stderr, "keyset: %s\n", err);
	FUZZ_CHECK(ks && ks->nkeys == 4);
	for (int i = 0; i < 64; i++)
		secret[i] = (unsigned char)(i + 1);
	return 0;
}

static void policy_for(uint64_t h, struct jwt_policy *p)
{
	*p = (struct jwt_policy){
	    .algorithms = (1u << JWA_COUNT) - 1,
	    .max_token_bytes = 8192,
	    .leeway_s = (h & 1) ? 30 : 0,
	    .require_exp = h & 2,
	    .issuer = (h & 4) ? "https://issuer.example" : NULL,
	    .audience = (h & 8) ? "api" : NULL,
	};
	if (h & 16)
		p->algorithms = 1u << JWA_RS256 | 1u << JWA_ES256 | 1u << JWA_HS256;
}

/* "sign:" form: header and payload encoded, signed with HMAC of the header's HS size. */
static char *sign_token(const char *in, size_t n, size_t *len)
{
	const char *nl = memchr(in, '\n', n);
	const EVP_MD *md = EVP_sha256();
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t hl, pl, off;
	char *tok;

	if (!nl)
		return NULL;
	hl = (size_t)(nl - in);
	pl = n - hl - 1;
	if (memmem(in, hl, "HS384", 5))
		md = EVP_sha384();
	else if (memmem(in, hl, "HS512", 5))
		md = EVP_sha512();
	tok = malloc(4 * ((hl + 2) / 3) + 4 * ((pl + 2) / 3) + 4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 4);
	FUZZ_CHECK(tok);
	off = b64url_encode((const unsigned char *)in, hl, tok);
	tok[off++] = '.';
	off += b64url_encode((const unsigned char *)nl + 1, pl, tok + off);
	FUZZ_CHECK(HMAC(md, secret, sizeof(secret), (unsigned char *)tok, off, mac, &maclen));
	tok[off++] = '.';
	off += b64url_encode(mac, maclen, tok + off);
	*len = off;
	return tok;
}

static void check_accepted(const struct jwt_policy *p, json_t *claims, const struct jwt_validity *v)
{
	struct jwt_validity v2;
	const char *key;
	json_t *val;

	FUZZ_CHECK(json_is_object(claims));
	FUZZ_CHECK(v->valid_from <= NOW && NOW < v->valid_until);
	FUZZ_CHECK(jwt_check_claims(p, claims, NOW, &v2) == AUTH_OK);
	FUZZ_CHECK(v2.valid_from == v->valid_from && v2.valid_until == v->valid_until);
	/* an exact member name wins over any dotted reading of it */
	json_object_foreach(claims, key, val) FUZZ_CHECK(jwt_claim(claims, key) == val);
	(void)jwt_claim(claims, "realm_access.roles");
	(void)jwt_claim(claims, "a.b.c");
}

static void verify_under(const struct jwt_policy *p, char *tok, size_t len, bool signed_here)
{
	struct jwt_validity v = {0}, v2 = {0};
	json_t *claims = NULL, *claims2 = NULL;
	enum auth_reason r, r2;

	r = jwt_verify(p, ks, tok, len, NOW, &claims, &v);
	r2 = jwt_verify(p, ks, tok, len, NOW, &claims2, &v2);
	if (verbose)
		fprintf(stderr, "verdict %d\n", (int)r);
	FUZZ_CHECK(r == r2 && !claims == !claims2);
	FUZZ_CHECK((r == AUTH_OK) == (claims != NULL));
	if (len > p->max_token_bytes)
		FUZZ_CHECK(r == AUTH_TOKEN_TOO_LARGE);
	if (r == AUTH_OK) {
		FUZZ_CHECK(json_equal(claims, claims2));
		check_accepted(p, claims, &v);
		if (signed_here) {
			json_t *c3 = NULL;
			struct jwt_validity v3;
			char last = tok[len - 1];

			/* any other signature is refused (or is not canonical base64url) */
			tok[len - 1] = last == 'A' ? 'B' : 'A';
			FUZZ_CHECK(jwt_verify(p, ks, tok, len, NOW, &c3, &v3) != AUTH_OK && !c3);
			tok[len - 1] = last;
		}
	}
	json_decref(claims);
	json_decref(claims2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jwt_policy p, open_policy;
	bool signed_here = size >= 5 && !memcmp(data, "sign:", 5);
	size_t len = size;
	char *tok;

	policy_for(fuzz_seed(data, size), &p);
	policy_for(0, &open_policy);
	tok =
	    signed_here ? sign_token((const char *)data + 5, size - 5, &len) : fuzz_dup(data, size);
	if (!tok)
		return 0;
	/* every algorithm, no iss/aud, no leeway; then a policy picked by the input */
	verify_under(&open_policy, tok, len, signed_here);
	verify_under(&p, tok, len, signed_here);
	free(tok);
	return 0;
}
