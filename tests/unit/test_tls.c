/*
 * TLS termination: the server side runs through the tls/ API on a real loopback TCP
 * connection, the client side is a plain OpenSSL client driven in the same thread.
 * Certificates are generated at test time.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "tls/tls.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

static char tmpdir[64];
static char default_crt[96], default_key[96], api_crt[96], api_key[96], other_key[96];

/* ---- fixtures ---- */

static bool write_key(EVP_PKEY *pkey, const char *path)
{
	FILE *f = fopen(path, "w");
	bool ok = f && PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1;

	if (f)
		fclose(f);
	return ok;
}

static bool add_san(X509 *x, const char *san)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	bool ok;

	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
	if (!ext)
		return false;
	ok = X509_add_ext(x, ext, -1) == 1;
	X509_EXTENSION_free(ext);
	return ok;
}

/* Self-signed P-256 certificate with CN=cn and, if given, "DNS:a,DNS:b" SANs. */
static bool make_cert(const char *cn, const char *san, const char *crt_path, const char *key_path)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	FILE *f = NULL;
	bool ok = false;

	if (!pkey || !x)
		goto out;
	ASN1_INTEGER_set(X509_get_serialNumber(x), rand());
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_version(x, 2);
	X509_set_pubkey(x, pkey);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (san && !add_san(x, san))
		goto out;
	if (!X509_sign(x, pkey, EVP_sha256()))
		goto out;
	f = fopen(crt_path, "w");
	ok = f && PEM_write_X509(f, x) == 1 && write_key(pkey, key_path);
out:
	if (f)
		fclose(f);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return ok;
}

static bool make_fixtures(void)
{
	EVP_PKEY *k;
	bool ok;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/xgate-test-tls-%d", getpid());
	if (mkdir(tmpdir, 0700) && errno != EEXIST)
		return false;
	snprintf(default_crt, sizeof(default_crt), "%.60s/default.crt", tmpdir);
	snprintf(default_key, sizeof(default_key), "%s/default.key", tmpdir);
	snprintf(api_crt, sizeof(api_crt), "%s/api.crt", tmpdir);
	snprintf(api_key, sizeof(api_key), "%s/api.key", tmpdir);
	snprintf(other_key, sizeof(other_key), "%s/other.key", tmpdir);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ok = k && write_key(k, other_key);
	EVP_PKEY_free(k);
	return ok && make_cert("default", NULL, default_crt, default_key) &&
	       make_cert("api", "DNS:api.test,DNS:*.wild.test", api_crt, api_key);
}

static void remove_fixtures(void)
{
	const char *files[] = {default_crt, default_key, api_crt, api_key, other_key};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	rmdir(tmpdir);
}

static struct tls_listener *parse_text(const char *text, struct cfg_errs *errs)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	struct tls_listener *t;

	if (!j) {
		fprintf(stderr, "bad test JSON: %s\n", jerr.text);
		return NULL;
	}
	t = tls_listener_parse(j, "listeners[1].tls", errs);
	json_decref(j);
	return t;
}

/* The standard listener: default cert first, then api.test / *.wild.test. */
static struct tls_listener *two_cert_listener(const char *extra)
{
	char text[2048];
	struct cfg_errs errs = {0};
	struct tls_listener *t;

	snprintf(text, sizeof(text),
		 "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\"},"
		 " {\"cert\": \"%s\", \"key\": \"%s\"}]%s}",
		 default_crt, default_key, api_crt, api_key, extra ? extra : "");
	t = parse_text(text, &errs);
	if (errs.count)
		fprintf(stderr, "unexpected config errors:\n%s", errs.text);
	cfg_errs_free(&errs);
	return t;
}

static bool tcp_pair(int *server, int *client)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t alen = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = lfd >= 0 && !bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) && !listen(lfd, 4) &&
	     !getsockname(lfd, (struct sockaddr *)&addr, &alen);
	*client = ok ? socket(AF_INET, SOCK_STREAM, 0) : -1;
	ok = ok && *client >= 0 && !connect(*client, (struct sockaddr *)&addr, sizeof(addr));
	*server = ok ? accept(lfd, NULL, NULL) : -1;
	ok = ok && *server >= 0;
	if (lfd >= 0)
		close(lfd);
	if (ok) {
		fcntl(*server, F_SETFL, O_NONBLOCK);
		fcntl(*client, F_SETFL, O_NONBLOCK);
	}
	return ok;
}

struct pair {
	int sfd, cfd;
	struct tls_conn *server;
	SSL_CTX *cctx;
	SSL *client;
	enum tls_io server_result;
	int client_result; /* 1 done, -1 failed, 0 in progress */
};

static SSL_CTX *client_ctx(int min_ver, int max_ver)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	SSL_CTX_set_min_proto_version(ctx, min_ver);
	SSL_CTX_set_max_proto_version(ctx, max_ver);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* No client cache: freeing a context would mark its cached sessions unresumable. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	return ctx;
}

static bool pair_open(struct pair *p, struct tls_listener *t, int max_ver, const char *sni,
		      SSL_SESSION *sess)
{
	memset(p, 0, sizeof(*p));
	p->server_result = TLS_WANT_READ;
	if (!tcp_pair(&p->sfd, &p->cfd))
		return false;
	p->server = tls_conn_new(t, p->sfd);
	p->cctx = client_ctx(TLS1_2_VERSION, max_ver);
	p->client = SSL_new(p->cctx);
	if (!p->server || !p->client)
		return false;
	SSL_set_fd(p->client, p->cfd);
	SSL_set_connect_state(p->client);
	if (sni)
		SSL_set_tlsext_host_name(p->client, sni);
	SSL_set_alpn_protos(p->client, (const unsigned char *)"\x02h2\x08http/1.1", 12);
	if (sess)
		SSL_set_session(p->client, sess);
	return true;
}

static void pair_close(struct pair *p)
{
	tls_conn_free(p->server);
	SSL_free(p->client);
	SSL_CTX_free(p->cctx);
	if (p->sfd > 0)
		close(p->sfd);
	if (p->cfd > 0)
		close(p->cfd);
}

/* Drives both handshakes to completion, polling like the worker would. */
static bool pair_handshake(struct pair *p)
{
	for (int rounds = 0; rounds < 2000; rounds++) {
		struct pollfd pfd[2] = {{.fd = p->sfd}, {.fd = p->cfd}};

		if (p->server_result == TLS_WANT_READ || p->server_result == TLS_WANT_WRITE)
			p->server_result = tls_handshake(p->server);
		if (!p->client_result) {
			int r = SSL_do_handshake(p->client);
			int e = SSL_get_error(p->client, r);

			if (r == 1)
				p->client_result = 1;
			else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				p->client_result = -1;
		}
		if (p->server_result == TLS_ERROR || p->client_result < 0)
			return false;
		if (p->server_result == TLS_OK && p->client_result == 1)
			return true;
		pfd[0].events = p->server_result == TLS_WANT_WRITE ? POLLOUT : POLLIN;
		pfd[1].events = POLLIN;
		poll(pfd, 2, 20);
	}
	return false;
}

static const char *peer_cn(SSL *ssl, char *buf, size_t len)
{
	X509 *x = SSL_get1_peer_certificate(ssl);

	buf[0] = '\0';
	if (x) {
		X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, len);
		X509_free(x);
	}
	return buf;
}

/* Client writes, server reads through tls_read; then the reverse. */
static bool exchange(struct pair *p, size_t len)
{
	unsigned char *out = malloc(len), *in = malloc(len);
	size_t got = 0, sent = 0, n;
	bool ok = out && in;

	for (size_t i = 0; ok && i < len; i++)
		out[i] = (unsigned char)(i * 7 + 3);
	for (int rounds = 0; ok && (got < len || sent < len) && rounds < 5000; rounds++) {
		struct pollfd pfd = {.fd = p->sfd, .events = POLLIN};

		if (sent < len) {
			size_t w;

			if (SSL_write_ex(p->client, out + sent, len - sent, &w))
				sent += w;
		}
		enum tls_io r = tls_read(p->server, in + got, len - got, &n);

		if (r == TLS_OK)
			got += n;
		else if (r != TLS_WANT_READ)
			ok = false;
		else
			poll(&pfd, 1, 10);
	}
	ok = ok && got == len && !memcmp(in, out, len);
	/* Reverse direction, server side through tls_write. */
	sent = got = 0;
	for (int rounds = 0; ok && (got < len || sent < len) && rounds < 5000; rounds++) {
		struct pollfd pfd = {.fd = p->cfd, .events = POLLIN};

		if (sent < len) {
			enum tls_io r = tls_write(p->server, out + sent, len - sent, &n);

			if (r == TLS_OK)
				sent += n;
			else if (r != TLS_WANT_WRITE)
				ok = false;
		}
		if (SSL_read_ex(p->client, in + got, len - got, &n))
			got += n;
		else
			poll(&pfd, 1, 10);
	}
	ok = ok && got == len && !memcmp(in, out, len);
	free(out);
	free(in);
	return ok;
}

/* ---- tests ---- */

static void handshake_version(int max_ver, const char *expect)
{
	struct tls_listener *t = two_cert_listener(NULL);
	struct tls_stats before, after;
	struct pair p;
	char alpn[32];

	CHECK(t != NULL);
	if (!t)
		return;
	tls_stats_get(&before);
	CHECK(pair_open(&p, t, max_ver, "api.test", NULL));
	CHECK(pair_handshake(&p));
	CHECK_STR(SSL_get_version(p.client), expect);
	CHECK_STR(tls_conn_version(p.server), expect);
	CHECK_STR(tls_conn_alpn(p.server, alpn, sizeof(alpn)), "http/1.1");
	CHECK(exchange(&p, 100000));
	CHECK(!tls_conn_ktls_tx(p.server) || tls_ktls_supported());
	CHECK(!tls_conn_ktls_rx(p.server) || tls_ktls_supported());
	tls_stats_get(&after);
	CHECK_EQ(after.handshakes, before.handshakes + 1);
	CHECK_EQ(after.handshake_failures, before.handshake_failures);
	tls_shutdown(p.server);
	pair_close(&p);
	tls_listener_free(t);
}

static void test_handshake_tls12(void)
{
	handshake_version(TLS1_2_VERSION, "TLSv1.2");
}

static void test_handshake_tls13(void)
{
	handshake_version(TLS1_3_VERSION, "TLSv1.3");
}

static void sni_case(struct tls_listener *t, const char *sni, const char *expect_cn)
{
	struct pair p;
	char cn[64];

	CHECK(pair_open(&p, t, TLS1_3_VERSION, sni, NULL));
	CHECK(pair_handshake(&p));
	if (strcmp(peer_cn(p.client, cn, sizeof(cn)), expect_cn))
		fprintf(stderr, "  SNI %s: got CN %s, want %s\n", sni ? sni : "(none)", cn,
			expect_cn);
	CHECK_STR(cn, expect_cn);
	if (sni)
		CHECK(tls_conn_sni(p.server) && !strcasecmp(tls_conn_sni(p.server), sni));
	else
		CHECK(tls_conn_sni(p.server) == NULL);
	pair_close(&p);
}

static void test_sni_selection(void)
{
	struct tls_listener *t = two_cert_listener(NULL);

	CHECK(t != NULL);
	if (!t)
		return;
	sni_case(t, "api.test", "api");
	sni_case(t, "API.Test", "api");
	sni_case(t, "x.wild.test", "api");
	sni_case(t, "a.b.wild.test", "default"); /* wildcard covers one label only */
	sni_case(t, "wild.test", "default");
	sni_case(t, "unknown.test", "default");
	sni_case(t, "default", "default"); /* CN used when there is no SAN */
	sni_case(t, NULL, "default");
	tls_listener_free(t);
}

static void test_sni_from_config(void)
{
	char text[2048];
	struct cfg_errs errs = {0};
	struct tls_listener *t;

	snprintf(
	    text, sizeof(text),
	    "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\"},"
	    " {\"cert\": \"%s\", \"key\": \"%s\", \"sni\": [\"override.test\", \"*.o.test\"]}]}",
	    default_crt, default_key, api_crt, api_key);
	t = parse_text(text, &errs);
	CHECK(t != NULL);
	CHECK_EQ(errs.count, 0);
	cfg_errs_free(&errs);
	if (!t)
		return;
	sni_case(t, "override.test", "api");
	sni_case(t, "q.o.test", "api");
	sni_case(t, "api.test", "default"); /* the explicit list replaces the SANs */
	tls_listener_free(t);
}

static SSL_SESSION *first_session(struct tls_listener *t, int max_ver)
{
	SSL_SESSION *sess = NULL;
	struct pair p;

	if (pair_open(&p, t, max_ver, "api.test", NULL) && pair_handshake(&p) &&
	    exchange(&p, 64)) { /* reading lets the TLS 1.3 client take its tickets */
		sess = SSL_get1_session(p.client);
		SSL_shutdown(p.client); /* freed without it, the session is marked unresumable */
		CHECK(SSL_SESSION_is_resumable(sess));
	}
	pair_close(&p);
	return sess;
}

static void resume(struct tls_listener *t1, struct tls_listener *t2, int max_ver)
{
	struct tls_stats before, after;
	SSL_SESSION *sess = first_session(t1, max_ver);
	struct pair p;

	CHECK(sess != NULL);
	if (!sess)
		return;
	tls_stats_get(&before);
	CHECK(pair_open(&p, t2, max_ver, "api.test", sess));
	CHECK(pair_handshake(&p));
	CHECK(SSL_session_reused(p.client));
	CHECK(tls_conn_resumed(p.server));
	CHECK(exchange(&p, 1000));
	tls_stats_get(&after);
	CHECK_EQ(after.resumed, before.resumed + 1);
	pair_close(&p);
	SSL_SESSION_free(sess);
}

static void test_resumption(void)
{
	struct tls_listener *t = two_cert_listener(NULL);

	CHECK(t != NULL);
	if (!t)
		return;
	resume(t, t, TLS1_2_VERSION);
	resume(t, t, TLS1_3_VERSION);
	tls_listener_free(t);
}

/* A reload builds new contexts; tickets from before it must still resume. */
static void test_resumption_across_reload(void)
{
	struct tls_listener *t1 = two_cert_listener(NULL), *t2 = two_cert_listener(NULL);

	CHECK(t1 && t2);
	if (t1 && t2) {
		resume(t1, t2, TLS1_2_VERSION);
		resume(t1, t2, TLS1_3_VERSION);
	}
	tls_listener_free(t1);
	tls_listener_free(t2);
}

static void test_garbage_handshake(void)
{
	struct tls_listener *t = two_cert_listener(NULL);
	struct tls_stats before, after;
	static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	enum tls_io r = TLS_WANT_READ;
	struct pair p;

	CHECK(t != NULL);
	if (!t)
		return;
	tls_stats_get(&before);
	CHECK(pair_open(&p, t, TLS1_3_VERSION, NULL, NULL));
	CHECK(write(p.cfd, junk, sizeof(junk) - 1) == (ssize_t)sizeof(junk) - 1);
	for (int i = 0; i < 100 && r == TLS_WANT_READ; i++) {
		struct pollfd pfd = {.fd = p.sfd, .events = POLLIN};

		poll(&pfd, 1, 20);
		r = tls_handshake(p.server);
	}
	CHECK_EQ(r, TLS_ERROR);
	CHECK_EQ(tls_handshake(p.server), TLS_ERROR); /* stays failed, counted once */
	pair_close(&p);
	tls_stats_get(&after);
	CHECK_EQ(after.handshake_failures, before.handshake_failures + 1);
	CHECK_EQ(after.handshakes, before.handshakes);
	tls_listener_free(t);
}

/* EOF mid-handshake and a connection abandoned (timeout) mid-handshake both count. */
static void test_incomplete_handshakes(void)
{
	struct tls_listener *t = two_cert_listener(NULL);
	struct tls_stats before, after;
	enum tls_io r = TLS_WANT_READ;
	struct pair p;

	CHECK(t != NULL);
	if (!t)
		return;
	tls_stats_get(&before);
	CHECK(pair_open(&p, t, TLS1_3_VERSION, NULL, NULL));
	CHECK_EQ(tls_handshake(p.server), TLS_WANT_READ);
	SSL_do_handshake(p.client); /* ClientHello out */
	shutdown(p.cfd, SHUT_WR);
	for (int i = 0; i < 100 && r == TLS_WANT_READ; i++) {
		struct pollfd pfd = {.fd = p.sfd, .events = POLLIN};

		poll(&pfd, 1, 20);
		r = tls_handshake(p.server);
	}
	CHECK_EQ(r, TLS_ERROR);
	pair_close(&p);
	CHECK(pair_open(&p, t, TLS1_3_VERSION, NULL, NULL));
	CHECK_EQ(tls_handshake(p.server), TLS_WANT_READ);
	pair_close(&p); /* the worker's header timeout frees it */
	tls_stats_get(&after);
	CHECK_EQ(after.handshake_failures, before.handshake_failures + 2);
	tls_listener_free(t);
}

static void test_min_version(void)
{
	struct tls_listener *t = two_cert_listener(", \"min_version\": \"1.3\"");
	struct pair p;

	CHECK(t != NULL);
	if (!t)
		return;
	CHECK(pair_open(&p, t, TLS1_2_VERSION, NULL, NULL));
	CHECK(!pair_handshake(&p));
	pair_close(&p);
	CHECK(pair_open(&p, t, TLS1_3_VERSION, NULL, NULL));
	CHECK(pair_handshake(&p));
	pair_close(&p);
	tls_listener_free(t);
}

static void test_pending(void)
{
	struct tls_listener *t = two_cert_listener(NULL);
	char big[40000], small[100];
	size_t n, total = 0;
	struct pair p;

	CHECK(t != NULL);
	if (!t)
		return;
	memset(big, 'z', sizeof(big));
	CHECK(pair_open(&p, t, TLS1_3_VERSION, NULL, NULL));
	CHECK(pair_handshake(&p));
	CHECK(SSL_write_ex(p.client, big, sizeof(big), &n) && n == sizeof(big));
	usleep(20000);
	CHECK_EQ(tls_read(p.server, small, sizeof(small), &n), TLS_OK);
	CHECK_EQ(n, sizeof(small));
	CHECK(tls_pending(p.server) > 0);
	total = n;
	/* Draining by tls_pending alone (no polling) must yield the rest of that record. */
	while (tls_pending(p.server) && tls_read(p.server, small, sizeof(small), &n) == TLS_OK)
		total += n;
	CHECK(total >= 16384 - 100);
	/* close_notify then EOF reads as TLS_CLOSED. */
	while (total < sizeof(big)) {
		struct pollfd pfd = {.fd = p.sfd, .events = POLLIN};
		enum tls_io r = tls_read(p.server, small, sizeof(small), &n);

		if (r == TLS_OK)
			total += n;
		else if (r == TLS_WANT_READ)
			poll(&pfd, 1, 20);
		else
			break;
	}
	CHECK_EQ(total, sizeof(big));
	SSL_shutdown(p.client);
	enum tls_io r = TLS_WANT_READ;

	for (int i = 0; i < 100 && r == TLS_WANT_READ; i++) {
		struct pollfd pfd = {.fd = p.sfd, .events = POLLIN};

		poll(&pfd, 1, 20);
		r = tls_read(p.server, small, sizeof(small), &n);
	}
	CHECK_EQ(r, TLS_CLOSED);
	pair_close(&p);
	tls_listener_free(t);
}

static void expect_error(const char *text, const char *want)
{
	struct cfg_errs errs = {0};
	struct tls_listener *t = parse_text(text, &errs);

	CHECK(t == NULL);
	CHECK(errs.count > 0);
	if (!errs.text || !strstr(errs.text, want)) {
		fprintf(stderr, "  want error containing: %s\n  got: %s", want,
			errs.text ? errs.text : "(none)\n");
		CHECK(0);
	}
	tls_listener_free(t);
	cfg_errs_free(&errs);
}

static void test_config_errors(void)
{
	char text[2048], want[1024];

	snprintf(text, sizeof(text),
		 "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s/x.key\"}]}", default_crt,
		 tmpdir);
	snprintf(want, sizeof(want),
		 "listeners[1].tls.certificates[0].key: cannot read \"%s/x.key\": No such file or "
		 "directory",
		 tmpdir);
	expect_error(text, want);

	snprintf(text, sizeof(text), "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\"}]}",
		 default_crt, other_key);
	snprintf(want, sizeof(want),
		 "listeners[1].tls.certificates[0].key: \"%s\" does not match certificate \"%s\"",
		 other_key, default_crt);
	expect_error(text, want);

	/* A key where the certificate should be. */
	snprintf(text, sizeof(text),
		 "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\"},"
		 " {\"cert\": \"%s\", \"key\": \"%s\"}]}",
		 default_crt, default_key, api_key, api_key);
	expect_error(text, "listeners[1].tls.certificates[1].cert: \"");

	expect_error("{\"certificates\": []}",
		     "listeners[1].tls.certificates: must be a non-empty");
	expect_error("{}", "listeners[1].tls.certificates: must be a non-empty");
	expect_error("[]", "listeners[1].tls: must be an object");
	expect_error("{\"certificates\": [{\"cert\": \"a\"}]}",
		     "listeners[1].tls.certificates[0].key: required");

	snprintf(text, sizeof(text),
		 "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\"}], \"ktls\": \"maybe\"}",
		 default_crt, default_key);
	expect_error(text, "listeners[1].tls.ktls: must be one of \"auto\", \"off\", \"on\"");
	snprintf(text, sizeof(text),
		 "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\"}], \"min_version\": "
		 "\"1.1\"}",
		 default_crt, default_key);
	expect_error(text, "listeners[1].tls.min_version: must be one of");
	snprintf(text, sizeof(text),
		 "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\"}], \"tickets\": 1}",
		 default_crt, default_key);
	expect_error(text, "listeners[1].tls.tickets: unknown key");
	snprintf(text, sizeof(text),
		 "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\", \"sni\": [\"a.*.b\"]}]}",
		 default_crt, default_key);
	expect_error(text, "listeners[1].tls.certificates[0].sni[0]: wildcard");
	snprintf(text, sizeof(text),
		 "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\"}], \"alpn\": [\"\"]}",
		 default_crt, default_key);
	expect_error(text, "listeners[1].tls.alpn[0]: must be a protocol name");
}

/* The same probe done by hand: it must agree with what the module reports. */
static bool direct_ulp_probe(int *err)
{
	int s, c, a;
	bool ok;

	if (!tcp_pair(&a, &c))
		return false;
	s = setsockopt(c, SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
	*err = s ? errno : 0;
	ok = s == 0;
	close(a);
	close(c);
	return ok;
}

static void test_ktls_probe(void)
{
	int err = 0;
	bool direct = direct_ulp_probe(&err);
	char text[2048];
	struct cfg_errs errs = {0};
	struct tls_listener *t;

	printf("kTLS probe: %s (direct setsockopt TCP_ULP: %s)\n",
	       tls_ktls_supported() ? "supported" : "unsupported", direct ? "ok" : strerror(err));
	CHECK_EQ(tls_ktls_supported(), direct);
	snprintf(text, sizeof(text),
		 "{\"certificates\": [{\"cert\": \"%s\", \"key\": \"%s\"}], \"ktls\": \"on\"}",
		 default_crt, default_key);
	t = parse_text(text, &errs);
	if (direct) {
		CHECK(t != NULL);
		CHECK_EQ(errs.count, 0);
	} else {
		CHECK(t == NULL);
		CHECK(errs.text &&
		      strstr(errs.text, "listeners[1].tls.ktls: \"on\" but this kernel "
					"has no TLS ULP"));
	}
	tls_listener_free(t);
	cfg_errs_free(&errs);
	/* "auto" and "off" load on any kernel; only auto may offload. */
	t = two_cert_listener(", \"ktls\": \"auto\"");
	CHECK(t && tls_listener_ktls_mode(t) == KTLS_AUTO);
	tls_listener_free(t);
	t = two_cert_listener(", \"ktls\": \"off\"");
	CHECK(t && tls_listener_ktls_mode(t) == KTLS_OFF);
	if (t) {
		struct pair p;

		CHECK(pair_open(&p, t, TLS1_3_VERSION, NULL, NULL));
		CHECK(pair_handshake(&p));
		CHECK(!tls_conn_ktls_tx(p.server) && !tls_conn_ktls_rx(p.server));
		pair_close(&p);
	}
	tls_listener_free(t);
}

/* Captures the raw ClientHello an OpenSSL client sends. */
static size_t capture_client_hello(const char *sni, unsigned char *buf, size_t cap)
{
	int s, c;
	SSL_CTX *ctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
	SSL *ssl = SSL_new(ctx);
	ssize_t n = 0;
	size_t got = 0;

	if (!tcp_pair(&s, &c))
		return 0;
	SSL_set_fd(ssl, c);
	if (sni)
		SSL_set_tlsext_host_name(ssl, sni);
	SSL_connect(ssl);
	for (int i = 0; i < 50; i++) {
		struct pollfd pfd = {.fd = s, .events = POLLIN};

		poll(&pfd, 1, 20);
		n = read(s, buf + got, cap - got);
		if (n > 0)
			got += n;
		else if (got)
			break;
	}
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(s);
	close(c);
	return got;
}

static void test_peek_sni(void)
{
	unsigned char hello[4096], mutated[4096];
	char host[256];
	size_t len = capture_client_hello("Api.Example.COM", hello, sizeof(hello)), reclen;

	CHECK(len > 100);
	if (len <= 100)
		return;
	reclen = 5 + ((size_t)hello[3] << 8 | hello[4]);
	CHECK(reclen <= len);
	CHECK_EQ(tls_peek_sni(hello, len, host, sizeof(host)), 1);
	CHECK_STR(host, "api.example.com");
	/* Every strict prefix of the record: need more bytes, never a misparse. */
	for (size_t i = 0; i < reclen; i++) {
		unsigned char *copy =
		    malloc(i ? i : 1); /* exact-size copy: ASan catches overreads */

		memcpy(copy, hello, i);
		if (tls_peek_sni(copy, i, host, sizeof(host)) != 0) {
			fprintf(stderr, "  prefix %zu not reported as incomplete\n", i);
			CHECK(0);
			free(copy);
			break;
		}
		free(copy);
	}
	CHECK_EQ(tls_peek_sni(hello, len, host, 8), -1); /* too small for the name */
	CHECK_EQ(tls_peek_sni((const unsigned char *)"GET / HTTP/1.1\r\n", 16, host, 256), -1);
	CHECK_EQ(tls_peek_sni((const unsigned char *)"\x16\x03\x01\x00\x02\x02\x00", 7, host, 256),
		 -1);
	CHECK_EQ(tls_peek_sni((const unsigned char *)"\x17", 1, host, 256), -1);

	len = capture_client_hello(NULL, hello, sizeof(hello));
	CHECK(len > 100);
	CHECK_EQ(tls_peek_sni(hello, len, host, sizeof(host)), -1);

	/* Corrupted lengths anywhere must be rejected or parsed within bounds (ASan run). */
	len = capture_client_hello("fuzz.test", hello, sizeof(hello));
	srand(1);
	for (int i = 0; i < 20000 && len > 10; i++) {
		size_t at = 5 + (size_t)rand() % (len - 5);
		int r;

		memcpy(mutated, hello, len);
		mutated[at] = rand();
		unsigned char *copy = malloc(len);

		memcpy(copy, mutated, len);
		r = tls_peek_sni(copy, len, host, sizeof(host));
		CHECK(r >= -1 && r <= 1);
		free(copy);
	}
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (!make_fixtures()) {
		fprintf(stderr, "cannot create test certificates in %s\n", tmpdir);
		remove_fixtures();
		return 1;
	}
	RUN(test_handshake_tls12);
	RUN(test_handshake_tls13);
	RUN(test_sni_selection);
	RUN(test_sni_from_config);
	RUN(test_resumption);
	RUN(test_resumption_across_reload);
	RUN(test_garbage_handshake);
	RUN(test_incomplete_handshakes);
	RUN(test_min_version);
	RUN(test_pending);
	RUN(test_config_errors);
	RUN(test_ktls_probe);
	RUN(test_peek_sni);
	remove_fixtures();
	return CHECK_DONE();
}
