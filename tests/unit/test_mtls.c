/* mTLS: RFC 4514 names compared canonically, the route "mtls" method, tls.client_* parsing. */
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <time.h>

#include "auth/auth_internal.h"
#include "auth/dn.h"
#include "check.h"
#include "test_auth_util.h"
#include "tls/tls.h"

static struct auth_config *A;
static EVP_PKEY *key;

static bool same_dn(const char *a, const char *b)
{
	char err[160];
	char *ca = dn_canon_text(a, err, sizeof(err)), *cb = dn_canon_text(b, err, sizeof(err));
	bool eq = ca && cb && !strcmp(ca, cb);

	free(ca);
	free(cb);
	return eq;
}

static void dn_text_forms(void)
{
	char err[160], *c;

	CHECK(same_dn("CN=partner-a,O=Bank", "CN=partner-a,O=Bank"));
	CHECK(same_dn("CN=partner-a,O=Bank", "cn=Partner-A, o = bank"));
	CHECK(same_dn("CN=partner-a,O=Bank", "commonName=partner-a,organizationName=Bank"));
	CHECK(same_dn("CN=partner-a,O=Bank", "2.5.4.3=partner-a,2.5.4.10=Bank"));
	CHECK(same_dn("CN=a  b,O=Bank", "CN= a b ,O=Bank"));
	CHECK(same_dn("CN=a\\2cb,O=Bank", "CN=a\\,b,O=Bank"));
	CHECK(same_dn("CN=x+UID=1,O=Bank", "UID=1+CN=x,O=Bank"));
	CHECK(!same_dn("CN=partner-a,O=Bank", "O=Bank,CN=partner-a"));
	CHECK(!same_dn("CN=partner-a,O=Bank", "CN=partner-b,O=Bank"));
	CHECK(!same_dn("CN=partner-a,O=Bank", "CN=partner-a"));
	CHECK(!same_dn("CN=a\\,O=Bank", "CN=a,O=Bank"));
	CHECK(!same_dn("CN=x+UID=1,O=Bank", "CN=x,UID=1,O=Bank"));
	CHECK((c = dn_canon_text("CN=x,O=Bank,", err, sizeof(err))) == NULL);
	CHECK(strstr(err, "separator") != NULL);
	CHECK((c = dn_canon_text("Bank", err, sizeof(err))) == NULL);
	CHECK(strstr(err, "type=value") != NULL);
	CHECK((c = dn_canon_text("XYZ=1", err, sizeof(err))) == NULL);
	CHECK(strstr(err, "unknown attribute type") != NULL);
	CHECK((c = dn_canon_text("CN=#0403616263", err, sizeof(err))) == NULL);
	CHECK((c = dn_canon_text("CN=a\\q", err, sizeof(err))) == NULL);
	CHECK(strstr(err, "bad escape") != NULL);
	CHECK((c = dn_canon_text("CN=a\\00", err, sizeof(err))) == NULL);
}

/* A self-signed certificate with this subject (ASN.1 order: most significant first). */
static X509 *make_cert(const char *const *rdns, int n, const char *dns, const char *uri)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();

	for (int i = 0; i < n; i += 2)
		X509_NAME_add_entry_by_txt(name, rdns[i], MBSTRING_UTF8,
					   (const unsigned char *)rdns[i + 1], -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, name);
	X509_NAME_free(name);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	if (dns || uri) {
		char san[256];
		X509_EXTENSION *ext;

		snprintf(san, sizeof(san), "%s%s%s%s%s", dns ? "DNS:" : "", dns ? dns : "",
			 dns && uri ? "," : "", uri ? "URI:" : "", uri ? uri : "");
		ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	X509_sign(x, key, EVP_sha256());
	return x;
}

static void dn_cert_forms(void)
{
	static const char *const bank_a[] = {"O", "Bank", "CN", "partner-a"};
	static const char *const multi[] = {"O", "Bank", "CN", "x"};
	X509 *x = make_cert(bank_a, 4, NULL, NULL);
	char err[160], *ct = dn_canon_text("CN=Partner-A, O=BANK", err, sizeof(err));
	char *cx = dn_canon_x509(X509_get_subject_name(x)), *text;

	CHECK(ct && cx && !strcmp(ct, cx));
	text = tls_name_text(X509_get_subject_name(x));
	CHECK_STR(text, "CN=partner-a,O=Bank");
	free(text);
	free(ct);
	free(cx);
	X509_free(x);
	x = make_cert(multi, 4, NULL, NULL);
	/* Add a second AVA to the CN's RDN: CN=x+UID=1,O=Bank. */
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "UID", MBSTRING_UTF8,
				   (const unsigned char *)"1", -1, -1, -1);
	cx = dn_canon_x509(X509_get_subject_name(x));
	ct = dn_canon_text("UID=1+CN=x,O=Bank", err, sizeof(err));
	CHECK(ct && cx && !strcmp(ct, cx));
	free(ct);
	free(cx);
	X509_free(x);
}

static struct route_auth *route(const char *text, struct cfg_errs *errs)
{
	json_t *j = json_loads(text, 0, NULL);
	struct route_auth *ra = route_auth_parse(j, NULL, "routes[0]", A, errs);

	json_decref(j);
	return ra;
}

static void expect_route_error(const char *text, const char *line)
{
	struct cfg_errs errs = {0};
	struct route_auth *ra = route(text, &errs);

	CHECK(ra == NULL);
	if (!errs.text || !strstr(errs.text, line))
		fprintf(stderr, "  expected \"%s\" in:\n%s", line, errs.text ? errs.text : "");
	CHECK(errs.text && strstr(errs.text, line));
	cfg_errs_free(&errs);
}

static enum auth_reason run(const struct route_auth *ra, X509 *x, bool verified,
			    struct auth_result *res, const char *api_key)
{
	char *subject = x ? tls_name_text(X509_get_subject_name(x)) : NULL;
	struct auth_peer peer = {
	    .cert = x, .verified = verified, .subject = verified ? subject : NULL};
	struct tu_req r;

	tu_req_init(&r, NULL);
	if (api_key)
		tu_req_add(&r, "X-API-Key", api_key);
	auth_check_peer(A, ra, NULL, &r.req, &peer, 1700000000, res);
	tu_req_free(&r);
	free(subject);
	CHECK_EQ(res->status, auth_reason_status(res->reason));
	return res->reason;
}

static void route_method(void)
{
	static const char *const a[] = {"O", "Bank", "CN", "partner-a"};
	static const char *const b[] = {"O", "Bank", "CN", "partner-b"};
	struct cfg_errs errs = {0};
	struct route_auth *ra =
	    route("{\"mtls\": {\"subjects\": [\"cn=partner-a, o=bank\"]}}", &errs);
	X509 *xa = make_cert(a, 4, NULL, NULL), *xb = make_cert(b, 4, NULL, NULL);
	struct auth_result res;

	CHECK(ra != NULL);
	CHECK_EQ(run(ra, xa, true, &res, NULL), AUTH_OK);
	CHECK_STR(res.consumer, "CN=partner-a,O=Bank");
	CHECK_STR(res.identity, "mtls:CN=partner-a,O=Bank");
	CHECK_EQ(res.consumer_slot, -1);
	auth_result_release(&res);
	CHECK_EQ(run(ra, xb, true, &res, NULL), AUTH_FORBIDDEN_SUBJECT);
	CHECK_EQ(res.status, 403);
	CHECK_EQ(run(ra, xa, false, &res, NULL), AUTH_BAD_CLIENT_CERT);
	CHECK_EQ(res.status, 401);
	CHECK_EQ(run(ra, NULL, false, &res, NULL), AUTH_MISSING);
	CHECK_EQ(res.status, 401);
	/* Without a peer at all (plain auth_check): no certificate. */
	route_auth_free(ra);

	/* any_of with an API key: either credential lets the request in. */
	ra = route("{\"any_of\": [{\"mtls\": {\"subjects\": [\"CN=partner-a,O=Bank\"]}}, "
		   "{\"api_key\": {}}]}",
		   &errs);
	CHECK(ra != NULL);
	CHECK_EQ(run(ra, xa, true, &res, NULL), AUTH_OK);
	CHECK_EQ(run(ra, NULL, false, &res, "k-1"), AUTH_OK);
	CHECK_STR(res.consumer, "app");
	CHECK_EQ(run(ra, xb, true, &res, "k-1"), AUTH_OK);
	CHECK_STR(res.consumer, "app");
	CHECK_EQ(run(ra, xb, true, &res, NULL), AUTH_FORBIDDEN_SUBJECT);
	CHECK_EQ(run(ra, NULL, false, &res, "wrong"), AUTH_BAD_API_KEY);
	CHECK_EQ(run(ra, NULL, false, &res, NULL), AUTH_MISSING);
	route_auth_free(ra);

	/* Any verified certificate. */
	ra = route("{\"mtls\": {}}", &errs);
	CHECK(ra != NULL);
	CHECK_EQ(run(ra, xb, true, &res, NULL), AUTH_OK);
	CHECK_EQ(run(ra, xb, false, &res, NULL), AUTH_BAD_CLIENT_CERT);
	route_auth_free(ra);
	CHECK_EQ(errs.count, 0);
	X509_free(xa);
	X509_free(xb);
}

static void route_sans(void)
{
	static const char *const a[] = {"O", "Bank", "CN", "partner-a"};
	struct cfg_errs errs = {0};
	struct route_auth *ra =
	    route("{\"mtls\": {\"sans\": [\"partner-a.example\", \"spiffe://bank/b\"]}}", &errs);
	X509 *dns = make_cert(a, 4, "Partner-A.example", NULL);
	X509 *uri = make_cert(a, 4, NULL, "spiffe://bank/b");
	X509 *other = make_cert(a, 4, "partner-c.example", "spiffe://bank/B");
	X509 *none = make_cert(a, 4, NULL, NULL);
	struct auth_result res;

	CHECK(ra != NULL);
	CHECK_EQ(run(ra, dns, true, &res, NULL), AUTH_OK);
	CHECK_EQ(run(ra, uri, true, &res, NULL), AUTH_OK);
	CHECK_EQ(run(ra, other, true, &res, NULL), AUTH_FORBIDDEN_SUBJECT);
	CHECK_EQ(run(ra, none, true, &res, NULL), AUTH_FORBIDDEN_SUBJECT);
	route_auth_free(ra);
	/* Both lists: both must match. */
	ra = route("{\"mtls\": {\"subjects\": [\"CN=partner-a,O=Bank\"], "
		   "\"sans\": [\"partner-a.example\"]}}",
		   &errs);
	CHECK(ra != NULL);
	CHECK_EQ(run(ra, dns, true, &res, NULL), AUTH_OK);
	CHECK_EQ(run(ra, none, true, &res, NULL), AUTH_FORBIDDEN_SUBJECT);
	route_auth_free(ra);
	CHECK_EQ(errs.count, 0);
	X509_free(dns);
	X509_free(uri);
	X509_free(other);
	X509_free(none);
}

static void route_errors(void)
{
	expect_route_error("{\"mtls\": {\"subjects\": [\"Bank\"]}}",
			   "routes[0].auth.mtls.subjects[0]: not an RFC 4514 name");
	expect_route_error("{\"mtls\": {\"subjects\": []}}",
			   "routes[0].auth.mtls.subjects: must not be empty");
	expect_route_error("{\"mtls\": {\"sans\": []}}",
			   "routes[0].auth.mtls.sans: must not be empty");
	expect_route_error("{\"mtls\": {\"subject\": [\"CN=a\"]}}", "routes[0].auth.mtls.subject");
	expect_route_error("{\"mtls\": true}", "routes[0].auth.mtls: must be an object");
	expect_route_error("{\"any_of\": [{\"mtls\": {\"subjects\": [\"CN=a\", 3]}}]}",
			   "routes[0].auth.any_of[0].mtls.subjects");
}

static void identity_header(void)
{
	struct http_str h = {"x-client-cert-SUBJECT", 21};

	CHECK(auth_is_identity_header(A, h));
	CHECK(auth_is_identity_header(NULL, h));
}

int main(void)
{
	struct cfg_errs errs = {0};
	json_t *root =
	    json_loads("{\"consumers\": [{\"name\": \"app\", \"api_keys\": [\"k-1\"]}]}", 0, NULL);

	key = EVP_EC_gen("P-256");
	A = auth_config_parse(NULL, json_object_get(root, "consumers"), &errs);
	if (!A || !key) {
		fprintf(stderr, "setup: %s\n", errs.text ? errs.text : "no key");
		return 1;
	}
	RUN(dn_text_forms);
	RUN(dn_cert_forms);
	RUN(route_method);
	RUN(route_sans);
	RUN(route_errors);
	RUN(identity_header);
	auth_config_free(A);
	json_decref(root);
	EVP_PKEY_free(key);
	cfg_errs_free(&errs);
	return CHECK_DONE();
}
