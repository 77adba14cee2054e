#include "tls/tls.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* Mozilla "intermediate": AEAD + forward secrecy only, for TLS 1.2 clients. */
#define TLS12_DEFAULT_CIPHERS                                                                      \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tls_cert {
	SSL_CTX *ctx;
	char **names; /* lower-case; "*.example.com" matches exactly one extra label */
	int nnames;
};

struct tls_listener {
	struct tls_cert *certs; /* certs[0] is the default */
	int ncerts;
	enum ktls_mode ktls;
	bool ktls_enabled; /* SSL_OP_ENABLE_KTLS set on the contexts */
	int min_version;
	unsigned char *alpn; /* wire format: length-prefixed protocol names */
	size_t alpn_len;
	bool alpn_default; /* no "alpn" in the config */
	enum tls_client_auth client_auth;
};

struct tls_conn {
	SSL *ssl;
	struct tls_listener *listener;
	bool handshake_done, outcome_counted;
	bool ktls_tx, ktls_rx;
	bool key_update_refused; /* ended by a KeyUpdate kTLS TX cannot follow */
	bool peer_verified;
	char *peer_subject; /* of a verified client certificate */
	char sni[256];
};

static atomic_ulong stat_handshakes, stat_failures, stat_ktls_tx, stat_ktls_rx, stat_resumed;
static atomic_ulong stat_ktls_tx_bytes, stat_ktls_spliced_responses, stat_ktls_spliced_bytes;
static atomic_ulong stat_key_update_closes;

static pthread_once_t ticket_key_once = PTHREAD_ONCE_INIT;
/* One key per process, shared by every context and every reload, so tickets issued before a
 * SIGHUP still resume after it. Layout required by OpenSSL: name(16) | HMAC(32) | AES(32). */
static unsigned char ticket_key[80];
static bool ticket_key_ok;

static int conn_ex_index = -1;
static pthread_once_t conn_ex_once = PTHREAD_ONCE_INIT;

static void ticket_key_init(void)
{
	ticket_key_ok = RAND_bytes(ticket_key, sizeof(ticket_key)) == 1;
}

static void conn_ex_init(void)
{
	conn_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- kTLS probe ---- */

static bool probe_tls_ulp(void)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t alen = sizeof(addr);
	int lfd, cfd = -1, afd = -1;
	bool ok = false;

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return false;
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen))
		goto out;
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&addr, sizeof(addr)))
		goto out;
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (afd < 0)
		goto out;
	/* The ULP can only be attached to an established socket, hence the real connection. */
	ok = setsockopt(cfd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) == 0;
	if (!ok)
		log_debug("tls", "kTLS probe: TCP_ULP \"tls\": %s", strerror(errno));
out:
	if (afd >= 0)
		close(afd);
	if (cfd >= 0)
		close(cfd);
	close(lfd);
	return ok;
}

static pthread_once_t ktls_once = PTHREAD_ONCE_INIT;
static bool ktls_result;

static void ktls_probe_once(void)
{
	ktls_result = probe_tls_ulp();
}

bool tls_ktls_supported(void)
{
	pthread_once(&ktls_once, ktls_probe_once);
	return ktls_result;
}

/* ---- names and SNI selection ---- */

/* Lower-cases and strips one trailing dot; false when the name cannot be a DNS name. */
static bool normalize_host(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);

	if (n && in[n - 1] == '.')
		n--;
	if (!n || n >= outlen)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = in[i];

		if (!isalnum(ch) && ch != '-' && ch != '.' && ch != '_' && ch != '*')
			return false;
		out[i] = tolower(ch);
	}
	out[n] = '\0';
	return true;
}

static bool name_matches(const char *pattern, const char *host)
{
	const char *dot;

	if (pattern[0] != '*')
		return !strcmp(pattern, host);
	if (pattern[1] != '.')
		return false;
	/* "*.example.com" covers exactly one label: a.example.com, not example.com or
	 * a.b.example.com. */
	dot = strchr(host, '.');
	return dot && dot != host && !strcmp(dot, pattern + 1);
}

static int select_cert(const struct tls_listener *t, const char *host)
{
	for (int i = 0; i < t->ncerts; i++)
		for (int j = 0; j < t->certs[i].nnames; j++)
			if (t->certs[i].names[j][0] != '*' && !strcmp(t->certs[i].names[j], host))
				return i;
	for (int i = 0; i < t->ncerts; i++)
		for (int j = 0; j < t->certs[i].nnames; j++)
			if (t->certs[i].names[j][0] == '*' &&
			    name_matches(t->certs[i].names[j], host))
				return i;
	return 0;
}

static int servername_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_conn *c = SSL_get_ex_data(ssl, conn_ex_index);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	int idx;

	if (!c || !name)
		return SSL_TLSEXT_ERR_OK;
	if (!normalize_host(name, c->sni, sizeof(c->sni))) {
		c->sni[0] = '\0';
		return SSL_TLSEXT_ERR_OK;
	}
	idx = select_cert(c->listener, c->sni);
	if (idx && !SSL_set_SSL_CTX(ssl, c->listener->certs[idx].ctx))
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	const struct tls_listener *t = arg;
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, t->alpn, t->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* no overlap: carry on without ALPN */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* Never prompt on the terminal for an encrypted key: the load fails instead. */
static int no_password_cb(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* ---- config parsing ---- */

static bool add_name(struct tls_cert *cert, const char *raw)
{
	char name[256], **names;

	if (!normalize_host(raw, name, sizeof(name)))
		return true; /* not a DNS name (e.g. an IP in CN): not usable for SNI */
	names = realloc(cert->names, (cert->nnames + 1) * sizeof(*names));
	if (!names)
		return false;
	cert->names = names;
	if (!(names[cert->nnames] = strdup(name)))
		return false;
	cert->nnames++;
	return true;
}

static bool names_from_x509(struct tls_cert *cert, X509 *x)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool ok = true;
	int dns = 0;

	for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
		const unsigned char *s;
		int len;

		if (gn->type != GEN_DNS)
			continue;
		s = ASN1_STRING_get0_data(gn->d.dNSName);
		len = ASN1_STRING_length(gn->d.dNSName);
		if (len <= 0 || memchr(s, '\0', len))
			continue;
		char *tmp = strndup((const char *)s, len);

		ok = tmp && add_name(cert, tmp);
		free(tmp);
		if (!ok)
			break;
		dns++;
	}
	GENERAL_NAMES_free(sans);
	if (ok && !dns) {
		char cn[256];

		if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
					      sizeof(cn)) > 0)
			ok = add_name(cert, cn);
	}
	return ok;
}

static bool names_from_config(struct tls_cert *cert, json_t *sni, const char *path,
			      struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX];
	size_t i;
	json_t *v;

	json_array_foreach(sni, i, v)
	{
		char name[256];

		cfg_path_idx(p, path, i);
		if (!json_is_string(v) ||
		    !normalize_host(json_string_value(v), name, sizeof(name))) {
			cfg_err(errs, p, "must be a host name string");
			return false;
		}
		if (strchr(name, '*') &&
		    (name[0] != '*' || name[1] != '.' || strchr(name + 1, '*'))) {
			cfg_err(errs, p, "wildcard must be a leading \"*.\" label");
			return false;
		}
		if (!add_name(cert, name)) {
			cfg_err(errs, p, "out of memory");
			return false;
		}
	}
	return true;
}

static bool file_readable(const char *file, const char *path, struct cfg_errs *errs)
{
	FILE *f = fopen(file, "r");

	if (!f) {
		cfg_err(errs, path, "cannot read \"%s\": %s", file, strerror(errno));
		return false;
	}
	fclose(f);
	return true;
}

/*
 * mTLS: one store with tls.client_ca (and tls.crl) shared by every SNI context, since the
 * chain is checked against the context the servername callback switched to.
 */
struct client_auth_opts {
	enum tls_client_auth mode;
	int depth;
	X509_STORE *store;
	STACK_OF(X509_NAME) *ca_names; /* sent in the CertificateRequest */
	unsigned char sid_ctx[SHA256_DIGEST_LENGTH];
};

struct tls_opts {
	int min_version;
	const char *ciphers, *ciphersuites;
	struct client_auth_opts client;
};

/* Optional mode: any certificate (or none) completes the handshake; the verdict stays in
 * SSL_get_verify_result() for the route's auth to act on. */
static int verify_keep_going(int ok, X509_STORE_CTX *x)
{
	return 1;
}

static bool apply_client_auth(SSL_CTX *ctx, const struct client_auth_opts *c)
{
	STACK_OF(X509_NAME) *names = SSL_dup_CA_list(c->ca_names);

	if (!names)
		return false;
	SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set1_cert_store(ctx, c->store);
	SSL_CTX_set_verify_depth(ctx, c->depth);
	if (c->mode == TLS_CLIENT_AUTH_REQUIRED)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_keep_going);
	/* Tickets name the trust they were verified under: after a reload with another CA
	 * or CRL, an old session no longer resumes and the certificate is checked again. */
	return SSL_CTX_set_session_id_context(ctx, c->sid_ctx, sizeof(c->sid_ctx)) == 1;
}

static SSL_CTX *new_ctx(struct tls_listener *t, const struct tls_opts *o, const char *path,
			struct cfg_errs *errs)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	static const unsigned char sid_ctx[] = "xgate";
	uint64_t opts =
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION;

	if (!ctx) {
		cfg_err(errs, path, "cannot create TLS context");
		return NULL;
	}
	if (t->ktls_enabled)
		opts |= SSL_OP_ENABLE_KTLS;
	SSL_CTX_set_options(ctx, opts);
	/* Partial writes and a moving buffer let the worker retry from its own queue. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				  SSL_MODE_RELEASE_BUFFERS);
	/* Without kTLS, read whole socket buffers into OpenSSL's record buffer: one read(2)
	 * per batch of records instead of two (header, then body) per record. kTLS RX needs
	 * OpenSSL to hold no bytes past the handshake, so it keeps reading record by record. */
	if (!t->ktls_enabled)
		SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_min_proto_version(ctx, o->min_version);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	/* Stateless tickets only: nothing per-context to lose on reload, no cross-thread lock. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	if (o->client.mode != TLS_CLIENT_AUTH_NONE && !apply_client_auth(ctx, &o->client)) {
		cfg_err(errs, path, "cannot set up client certificate verification");
		goto fail;
	}
	SSL_CTX_set_default_passwd_cb(ctx, no_password_cb);
	SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, t);
	if (!ticket_key_ok ||
	    SSL_CTX_set_tlsext_ticket_keys(ctx, ticket_key, sizeof(ticket_key)) != 1) {
		cfg_err(errs, path, "cannot set session ticket key");
		goto fail;
	}
	if (SSL_CTX_set_cipher_list(ctx, o->ciphers ? o->ciphers : TLS12_DEFAULT_CIPHERS) != 1) {
		cfg_err(errs, path, "ciphers: no usable cipher in \"%s\"", o->ciphers);
		goto fail;
	}
	if (o->ciphersuites && SSL_CTX_set_ciphersuites(ctx, o->ciphersuites) != 1) {
		cfg_err(errs, path, "ciphersuites: no usable suite in \"%s\"", o->ciphersuites);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static bool load_cert(struct tls_listener *t, struct tls_cert *cert, json_t *obj,
		      const struct tls_opts *o, const char *path, struct cfg_errs *errs)
{
	static const char *const keys[] = {"cert", "key", "sni", NULL};
	char p[CFG_PATH_MAX], *certfile = NULL, *keyfile = NULL;
	json_t *sni;
	bool ok = false;

	if (!json_is_object(obj)) {
		cfg_err(errs, path, "must be an object with \"cert\" and \"key\"");
		return false;
	}
	cfg_check_keys(obj, path, keys, errs);
	if (!cfg_get_str(obj, "cert", path, NULL, &certfile, errs) ||
	    !cfg_get_str(obj, "key", path, NULL, &keyfile, errs))
		goto out;
	if (!certfile || !keyfile) {
		cfg_err(errs, cfg_path_key(p, path, certfile ? "key" : "cert"), "required");
		goto out;
	}
	sni = json_object_get(obj, "sni");
	if (sni && !json_is_array(sni)) {
		cfg_err(errs, cfg_path_key(p, path, "sni"), "must be an array of host names");
		goto out;
	}
	ok = file_readable(certfile, cfg_path_key(p, path, "cert"), errs);
	if (!file_readable(keyfile, cfg_path_key(p, path, "key"), errs) || !ok) {
		ok = false;
		goto out;
	}
	ok = false;
	if (!(cert->ctx = new_ctx(t, o, path, errs)))
		goto out;
	if (SSL_CTX_use_certificate_chain_file(cert->ctx, certfile) != 1) {
		cfg_err(errs, cfg_path_key(p, path, "cert"),
			"\"%s\" is not a PEM certificate (chain)", certfile);
		goto out;
	}
	/* Name the file only: OpenSSL's own reason might quote parts of the input. */
	if (SSL_CTX_use_PrivateKey_file(cert->ctx, keyfile, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
			cfg_err(errs, cfg_path_key(p, path, "key"),
				"\"%s\" does not match certificate \"%s\"", keyfile, certfile);
		else
			cfg_err(errs, cfg_path_key(p, path, "key"),
				"\"%s\" is not an unencrypted PEM private key", keyfile);
		goto out;
	}
	if (SSL_CTX_check_private_key(cert->ctx) != 1) {
		cfg_err(errs, cfg_path_key(p, path, "key"),
			"\"%s\" does not match certificate \"%s\"", keyfile, certfile);
		goto out;
	}
	if (sni)
		ok = names_from_config(cert, sni, cfg_path_key(p, path, "sni"), errs);
	else if (!(ok = names_from_x509(cert, SSL_CTX_get0_certificate(cert->ctx))))
		cfg_err(errs, path, "out of memory");
out:
	ERR_clear_error();
	free(certfile);
	free(keyfile);
	return ok;
}

static bool parse_alpn(struct tls_listener *t, json_t *tls, const char *path, struct cfg_errs *errs)
{
	json_t *arr = json_object_get(tls, "alpn"), *v;
	char p[CFG_PATH_MAX];
	size_t i, total = 0;

	if (!arr) {
		static const unsigned char def[] = "\x08http/1.1";

		t->alpn_default = true;
		t->alpn_len = sizeof(def) - 1;
		t->alpn = malloc(t->alpn_len);
		if (t->alpn)
			memcpy(t->alpn, def, t->alpn_len);
		return t->alpn != NULL;
	}
	cfg_path_key(p, path, "alpn");
	if (!json_is_array(arr) || !json_array_size(arr)) {
		cfg_err(errs, p, "must be a non-empty array of protocol names");
		return false;
	}
	json_array_foreach(arr, i, v)
	{
		size_t n = json_is_string(v) ? strlen(json_string_value(v)) : 0;

		if (!n || n > 255) {
			char q[CFG_PATH_MAX];

			cfg_err(errs, cfg_path_idx(q, p, i),
				"must be a protocol name (1-255 bytes)");
			return false;
		}
		total += n + 1;
	}
	if (!(t->alpn = malloc(total)))
		return false;
	json_array_foreach(arr, i, v)
	{
		size_t n = strlen(json_string_value(v));

		t->alpn[t->alpn_len++] = n;
		memcpy(t->alpn + t->alpn_len, json_string_value(v), n);
		t->alpn_len += n;
	}
	return true;
}

void tls_listener_offer_h2(struct tls_listener *t)
{
	static const unsigned char h2[] = "\x02h2\x08http/1.1";
	unsigned char *p;

	if (!t || !t->alpn_default || !(p = malloc(sizeof(h2) - 1)))
		return;
	memcpy(p, h2, sizeof(h2) - 1);
	free(t->alpn);
	t->alpn = p;
	t->alpn_len = sizeof(h2) - 1;
}

static bool parse_ktls(struct tls_listener *t, json_t *tls, const char *path, struct cfg_errs *errs)
{
	static const char *const modes[] = {"auto", "off", "on", NULL};
	char p[CFG_PATH_MAX];
	int mode;

	if (!cfg_get_enum(tls, "ktls", path, modes, KTLS_AUTO, &mode, errs))
		return false;
	t->ktls = mode;
	if (mode == KTLS_ON && !tls_ktls_supported()) {
		cfg_err(errs, cfg_path_key(p, path, "ktls"),
			"\"on\" but this kernel has no TLS ULP (setsockopt TCP_ULP \"tls\" failed; "
			"try modprobe tls), use \"auto\" or \"off\"");
		return false;
	}
	t->ktls_enabled = mode != KTLS_OFF && tls_ktls_supported();
	return true;
}

/* ---- mTLS: tls.client_ca, client_auth, verify_depth, crl ---- */

#define CLIENT_PEM_MAX (16u << 20)

static unsigned char *slurp(const char *file, size_t *len, const char *path, struct cfg_errs *errs)
{
	FILE *f = fopen(file, "r");
	unsigned char *buf = NULL, *nb;
	size_t cap = 0, n = 0, r;

	if (!f) {
		cfg_err(errs, path, "cannot read \"%s\": %s", file, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (n == cap) {
			if (cap >= CLIENT_PEM_MAX) {
				cfg_err(errs, path, "\"%s\" is larger than 16 MiB", file);
				goto fail;
			}
			cap = cap ? cap * 2 : 65536;
			if (!(nb = realloc(buf, cap))) {
				cfg_err(errs, path, "out of memory");
				goto fail;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r)
			continue;
		if (ferror(f)) {
			cfg_err(errs, path, "cannot read \"%s\": %s", file, strerror(errno));
			goto fail;
		}
		break;
	}
	fclose(f);
	*len = n;
	return buf;
fail:
	fclose(f);
	free(buf);
	return NULL;
}

/* After a PEM read loop: the end of the input, or a broken object? */
static bool pem_clean_end(void)
{
	unsigned long e = ERR_peek_last_error();

	ERR_clear_error();
	return !e || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE);
}

/* Certificates added to the store and their subjects to names; -1 on a broken PEM. */
static int load_ca_pem(struct client_auth_opts *c, const unsigned char *pem, size_t len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *x;
	int n = 0;

	if (!bio)
		return -1;
	while ((x = PEM_read_bio_X509(bio, NULL, no_password_cb, NULL))) {
		X509_NAME *name = X509_NAME_dup(X509_get_subject_name(x));
		bool ok = X509_STORE_add_cert(c->store, x) == 1 && name &&
			  sk_X509_NAME_push(c->ca_names, name) > 0;

		if (!ok)
			X509_NAME_free(name);
		X509_free(x);
		if (!ok) {
			n = -1;
			break;
		}
		n++;
	}
	BIO_free(bio);
	return pem_clean_end() ? n : -1;
}

static int load_crl_pem(struct client_auth_opts *c, const unsigned char *pem, size_t len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509_CRL *crl;
	int n = 0;

	if (!bio)
		return -1;
	while ((crl = PEM_read_bio_X509_CRL(bio, NULL, no_password_cb, NULL))) {
		bool ok = X509_STORE_add_crl(c->store, crl) == 1;

		X509_CRL_free(crl);
		if (!ok) {
			n = -1;
			break;
		}
		n++;
	}
	BIO_free(bio);
	return pem_clean_end() ? n : -1;
}

static bool load_client_ca(struct client_auth_opts *c, const char *file, EVP_MD_CTX *md,
			   const char *path, struct cfg_errs *errs)
{
	size_t len;
	unsigned char *pem = slurp(file, &len, path, errs);
	int n;

	if (!pem)
		return false;
	EVP_DigestUpdate(md, pem, len);
	n = load_ca_pem(c, pem, len);
	free(pem);
	if (n <= 0)
		cfg_err(errs, path, "\"%s\" holds no PEM certificate%s", file,
			n < 0 ? " (or a broken one)" : "");
	return n > 0;
}

static bool load_crl(struct client_auth_opts *c, const char *file, EVP_MD_CTX *md,
		     const char *path, struct cfg_errs *errs)
{
	size_t len;
	unsigned char *pem = slurp(file, &len, path, errs);
	int n;

	if (!pem)
		return false;
	EVP_DigestUpdate(md, "\0crl\0", 5);
	EVP_DigestUpdate(md, pem, len);
	n = load_crl_pem(c, pem, len);
	free(pem);
	if (n <= 0) {
		cfg_err(errs, path, "\"%s\" holds no PEM CRL%s", file,
			n < 0 ? " (or a broken one)" : "");
		return false;
	}
	/* The client's certificate must be covered by a CRL of its issuer (fail closed). */
	X509_STORE_set_flags(c->store, X509_V_FLAG_CRL_CHECK);
	return true;
}

static bool client_keys_need_ca(json_t *tls, const char *path, struct cfg_errs *errs)
{
	static const char *const keys[] = {"client_auth", "verify_depth", "crl", NULL};
	char p[CFG_PATH_MAX];
	bool ok = true;

	for (int i = 0; keys[i]; i++)
		if (json_object_get(tls, keys[i])) {
			cfg_err(errs, cfg_path_key(p, path, keys[i]), "needs \"client_ca\"");
			ok = false;
		}
	return ok;
}

static bool parse_client_auth(json_t *tls, const char *path, struct client_auth_opts *c,
			      struct cfg_errs *errs)
{
	static const char *const modes[] = {"optional", "required", NULL};
	char p[CFG_PATH_MAX], *ca = NULL, *crl = NULL;
	unsigned char tag[2];
	EVP_MD_CTX *md = NULL;
	long long depth;
	int mode;
	bool ok;

	ok = cfg_get_str(tls, "client_ca", path, NULL, &ca, errs);
	ok &= cfg_get_str(tls, "crl", path, NULL, &crl, errs);
	ok &= cfg_get_int(tls, "verify_depth", path, 3, 0, 16, &depth, errs);
	ok &= cfg_get_enum(tls, "client_auth", path, modes, 1, &mode, errs);
	if (!ok || !ca) {
		ok = ok && client_keys_need_ca(tls, path, errs);
		goto out;
	}
	c->mode = mode ? TLS_CLIENT_AUTH_REQUIRED : TLS_CLIENT_AUTH_OPTIONAL;
	c->depth = (int)depth;
	c->store = X509_STORE_new();
	c->ca_names = sk_X509_NAME_new_null();
	md = EVP_MD_CTX_new();
	if (!c->store || !c->ca_names || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		cfg_err(errs, path, "out of memory");
		ok = false;
		goto out;
	}
	tag[0] = (unsigned char)c->mode;
	tag[1] = (unsigned char)c->depth;
	EVP_DigestUpdate(md, "xgate-mtls", 10);
	EVP_DigestUpdate(md, tag, sizeof(tag));
	ok = load_client_ca(c, ca, md, cfg_path_key(p, path, "client_ca"), errs) &&
	     (!crl || load_crl(c, crl, md, cfg_path_key(p, path, "crl"), errs)) &&
	     EVP_DigestFinal_ex(md, c->sid_ctx, NULL);
out:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	free(ca);
	free(crl);
	return ok;
}

static void client_auth_opts_free(struct client_auth_opts *c)
{
	X509_STORE_free(c->store);
	sk_X509_NAME_pop_free(c->ca_names, X509_NAME_free);
}

static bool parse_options(struct tls_listener *t, json_t *tls, const char *path, struct tls_opts *o,
			  char **ciphers, char **suites, struct cfg_errs *errs)
{
	static const char *const versions[] = {"1.2", "1.3", NULL};
	int ver;
	bool ok = true;

	ok &= cfg_get_enum(tls, "min_version", path, versions, 0, &ver, errs);
	o->min_version = ver == 1 ? TLS1_3_VERSION : TLS1_2_VERSION;
	t->min_version = o->min_version;
	ok &= cfg_get_str(tls, "ciphers", path, NULL, ciphers, errs);
	ok &= cfg_get_str(tls, "ciphersuites", path, NULL, suites, errs);
	o->ciphers = *ciphers;
	o->ciphersuites = *suites;
	ok &= parse_ktls(t, tls, path, errs);
	ok &= parse_alpn(t, tls, path, errs);
	ok &= parse_client_auth(tls, path, &o->client, errs);
	t->client_auth = o->client.mode;
	return ok;
}

struct tls_listener *tls_listener_parse(json_t *tls, const char *path, struct cfg_errs *errs)
{
	static const char *const keys[] = {
	    "certificates", "ktls",	 "min_version",	 "alpn", "ciphers", "ciphersuites",
	    "client_ca",    "client_auth", "verify_depth", "crl",	 NULL};
	char p[CFG_PATH_MAX], q[CFG_PATH_MAX], *ciphers = NULL, *suites = NULL;
	struct tls_listener *t;
	struct tls_opts o = {0};
	json_t *certs, *v;
	size_t i;
	int errs_before = errs->count;
	bool ok;

	if (!json_is_object(tls)) {
		cfg_err(errs, path, "must be an object");
		return NULL;
	}
	pthread_once(&ticket_key_once, ticket_key_init);
	pthread_once(&conn_ex_once, conn_ex_init);
	cfg_check_keys(tls, path, keys, errs);
	if (!(t = calloc(1, sizeof(*t)))) {
		cfg_err(errs, path, "out of memory");
		return NULL;
	}
	ok = parse_options(t, tls, path, &o, &ciphers, &suites, errs);
	certs = json_object_get(tls, "certificates");
	cfg_path_key(p, path, "certificates");
	if (!json_is_array(certs) || !json_array_size(certs)) {
		cfg_err(errs, p, "must be a non-empty array of {\"cert\", \"key\"}");
		ok = false;
	} else if (ok && !(t->certs = calloc(json_array_size(certs), sizeof(*t->certs)))) {
		cfg_err(errs, p, "out of memory");
		ok = false;
	}
	for (i = 0; ok && i < json_array_size(certs); i++) {
		v = json_array_get(certs, i);
		t->ncerts++;
		ok = load_cert(t, &t->certs[i], v, &o, cfg_path_idx(q, p, i), errs);
	}
	free(ciphers);
	free(suites);
	client_auth_opts_free(&o.client); /* the contexts hold their own references */
	if (!ok || errs->count > errs_before || conn_ex_index < 0) {
		tls_listener_free(t);
		return NULL;
	}
	return t;
}

void tls_listener_free(struct tls_listener *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->ncerts; i++) {
		SSL_CTX_free(t->certs[i].ctx);
		for (int j = 0; j < t->certs[i].nnames; j++)
			free(t->certs[i].names[j]);
		free(t->certs[i].names);
	}
	free(t->certs);
	free(t->alpn);
	free(t);
}

enum ktls_mode tls_listener_ktls_mode(const struct tls_listener *t)
{
	return t->ktls;
}

/* ---- connections ---- */

struct tls_conn *tls_conn_new(struct tls_listener *t, int fd)
{
	struct tls_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->listener = t;
	c->ssl = SSL_new(t->certs[0].ctx);
	if (!c->ssl || !SSL_set_ex_data(c->ssl, conn_ex_index, c) || !SSL_set_fd(c->ssl, fd)) {
		SSL_free(c->ssl);
		free(c);
		ERR_clear_error();
		return NULL;
	}
	SSL_set_accept_state(c->ssl);
	return c;
}

static void count_failure(struct tls_conn *c)
{
	if (!c->outcome_counted) {
		c->outcome_counted = true;
		atomic_fetch_add_explicit(&stat_failures, 1, memory_order_relaxed);
	}
}

void tls_conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	if (!c->handshake_done)
		count_failure(c); /* timed out or abandoned mid-handshake */
	/* The connection may already be reset: never let a close_notify write raise SIGPIPE
	 * or block; SSL_free alone sends nothing. */
	SSL_free(c->ssl);
	free(c->peer_subject);
	free(c);
}

static enum tls_io map_error(struct tls_conn *c, int ret)
{
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_CLOSED;
	case SSL_ERROR_SYSCALL:
		/* EAGAIN cannot happen here (reported as WANT_*); errno 0 is a plain EOF. */
		if (errno == 0 && !ERR_peek_error())
			return TLS_CLOSED;
		return TLS_ERROR;
	default:
		return TLS_ERROR;
	}
}

/* RFC 4514 text (OpenSSL's RFC 2253 form: non-ASCII and control bytes \-escaped). */
char *tls_name_text(const X509_NAME *name)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *out = NULL, *p;
	long n;

	if (!bio)
		return NULL;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0 &&
	    (n = BIO_get_mem_data(bio, &p)) >= 0)
		out = strndup(p, n);
	BIO_free(bio);
	return out;
}

static void peer_finished(struct tls_conn *c)
{
	X509 *x = SSL_get0_peer_certificate(c->ssl);

	/* X509_V_OK is also the result when no certificate was sent. */
	c->peer_verified = x && SSL_get_verify_result(c->ssl) == X509_V_OK;
	if (c->peer_verified && !(c->peer_subject = tls_name_text(X509_get_subject_name(x))))
		c->peer_verified = false;
}

static void handshake_finished(struct tls_conn *c)
{
	if (c->listener->client_auth != TLS_CLIENT_AUTH_NONE)
		peer_finished(c);
	c->handshake_done = c->outcome_counted = true;
	c->ktls_tx = BIO_get_ktls_send(SSL_get_wbio(c->ssl));
	c->ktls_rx = BIO_get_ktls_recv(SSL_get_rbio(c->ssl));
	atomic_fetch_add_explicit(&stat_handshakes, 1, memory_order_relaxed);
	if (c->ktls_tx)
		atomic_fetch_add_explicit(&stat_ktls_tx, 1, memory_order_relaxed);
	if (c->ktls_rx)
		atomic_fetch_add_explicit(&stat_ktls_rx, 1, memory_order_relaxed);
	if (SSL_session_reused(c->ssl))
		atomic_fetch_add_explicit(&stat_resumed, 1, memory_order_relaxed);
}

enum tls_io tls_handshake(struct tls_conn *c)
{
	enum tls_io r;
	int ret;

	if (c->handshake_done)
		return TLS_OK;
	ERR_clear_error();
	errno = 0;
	ret = SSL_do_handshake(c->ssl);
	if (ret == 1) {
		handshake_finished(c);
		return TLS_OK;
	}
	r = map_error(c, ret);
	if (r == TLS_CLOSED || r == TLS_ERROR) {
		long v = SSL_get_verify_result(c->ssl);

		/* Debug only: a scanner must not be able to flood the log. */
		if (c->listener->client_auth != TLS_CLIENT_AUTH_NONE && v != X509_V_OK)
			log_debug("tls", "client certificate refused: %s",
				  X509_verify_cert_error_string(v));
		count_failure(c);
		r = TLS_ERROR;
		ERR_clear_error();
	}
	return r;
}

/*
 * A TLS 1.3 peer's KeyUpdate with update_requested obliges us to send our own KeyUpdate
 * before any more application data and to encrypt under a new key from then on (RFC 8446
 * 4.6.3). With kTLS TX the kernel holds the TX key and takes no new one (TLS_TX can be set
 * once; OpenSSL 3.0 would go on writing under the old key and the peer would reject every
 * record), so the connection ends instead, like a peer's close: what it read with the
 * KeyUpdate is dropped, no close_notify is sent, and a client retries on a new connection.
 */
static bool ktls_refuses_key_update(struct tls_conn *c)
{
	if (!c->ktls_tx || SSL_get_key_update_type(c->ssl) == SSL_KEY_UPDATE_NONE)
		return false;
	if (!c->key_update_refused) {
		c->key_update_refused = true;
		atomic_fetch_add_explicit(&stat_key_update_closes, 1, memory_order_relaxed);
	}
	return true;
}

enum tls_io tls_read(struct tls_conn *c, void *buf, size_t len, size_t *n)
{
	enum tls_io r;
	int ret;

	*n = 0;
	if (c->key_update_refused)
		return TLS_CLOSED;
	ERR_clear_error();
	errno = 0;
	ret = SSL_read_ex(c->ssl, buf, len, n);
	if (ktls_refuses_key_update(c)) {
		*n = 0;
		ERR_clear_error();
		return TLS_CLOSED;
	}
	if (ret == 1)
		return TLS_OK;
	r = map_error(c, ret);
	ERR_clear_error();
	return r;
}

enum tls_io tls_write(struct tls_conn *c, const void *buf, size_t len, size_t *n)
{
	enum tls_io r;
	int ret;

	*n = 0;
	if (!len)
		return TLS_OK;
	ERR_clear_error();
	errno = 0;
	ret = SSL_write_ex(c->ssl, buf, len, n);
	if (ret == 1)
		return TLS_OK;
	r = map_error(c, ret);
	ERR_clear_error();
	return r == TLS_CLOSED ? TLS_ERROR : r;
}

void tls_shutdown(struct tls_conn *c)
{
	if (!c->handshake_done || c->key_update_refused)
		return;
	ERR_clear_error();
	/* One attempt: the peer's close_notify is not waited for. */
	SSL_shutdown(c->ssl);
	ERR_clear_error();
}

bool tls_conn_ktls_tx(const struct tls_conn *c)
{
	return c->ktls_tx;
}

bool tls_conn_ktls_rx(const struct tls_conn *c)
{
	return c->ktls_rx;
}

const char *tls_conn_sni(const struct tls_conn *c)
{
	return c->sni[0] ? c->sni : NULL;
}

const char *tls_conn_alpn(const struct tls_conn *c, char *out, size_t outlen)
{
	const unsigned char *p;
	unsigned int len;

	SSL_get0_alpn_selected(c->ssl, &p, &len);
	if (!len || len >= outlen)
		return NULL;
	memcpy(out, p, len);
	out[len] = '\0';
	return out;
}

bool tls_conn_resumed(const struct tls_conn *c)
{
	return c->handshake_done && SSL_session_reused(c->ssl);
}

const char *tls_conn_version(const struct tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const struct x509_st *tls_conn_peer_cert(const struct tls_conn *c)
{
	return c->handshake_done ? SSL_get0_peer_certificate(c->ssl) : NULL;
}

bool tls_conn_peer_verified(const struct tls_conn *c)
{
	return c->peer_verified;
}

const char *tls_conn_peer_subject(const struct tls_conn *c)
{
	return c->peer_subject;
}

size_t tls_pending(const struct tls_conn *c)
{
	int n = SSL_pending(c->ssl);

	if (n > 0)
		return n;
	/* A whole record may sit unprocessed in OpenSSL's buffer: the socket will not
	 * become readable for it, so the caller must call tls_read again. */
	return SSL_has_pending(c->ssl) ? 1 : 0;
}

void tls_stats_get(struct tls_stats *out)
{
	out->handshakes = atomic_load_explicit(&stat_handshakes, memory_order_relaxed);
	out->handshake_failures = atomic_load_explicit(&stat_failures, memory_order_relaxed);
	out->ktls_tx = atomic_load_explicit(&stat_ktls_tx, memory_order_relaxed);
	out->ktls_rx = atomic_load_explicit(&stat_ktls_rx, memory_order_relaxed);
	out->ktls_tx_bytes = atomic_load_explicit(&stat_ktls_tx_bytes, memory_order_relaxed);
	out->ktls_spliced_responses =
	    atomic_load_explicit(&stat_ktls_spliced_responses, memory_order_relaxed);
	out->ktls_spliced_bytes = atomic_load_explicit(&stat_ktls_spliced_bytes, memory_order_relaxed);
	out->resumed = atomic_load_explicit(&stat_resumed, memory_order_relaxed);
	out->key_update_closes = atomic_load_explicit(&stat_key_update_closes, memory_order_relaxed);
}

/* ---- ClientHello SNI peek ---- */

struct reader {
	const unsigned char *p;
	size_t left;
};

static bool rd_skip(struct reader *r, size_t n)
{
	if (r->left < n)
		return false;
	r->p += n;
	r->left -= n;
	return true;
}

static bool rd_u8(struct reader *r, size_t *v)
{
	if (r->left < 1)
		return false;
	*v = r->p[0];
	return rd_skip(r, 1);
}

static bool rd_u16(struct reader *r, size_t *v)
{
	if (r->left < 2)
		return false;
	*v = (size_t)r->p[0] << 8 | r->p[1];
	return rd_skip(r, 2);
}

/* Carves a length-prefixed sub-reader of width 1 or 2 bytes. */
static bool rd_vec(struct reader *r, int width, struct reader *sub)
{
	size_t n;

	if (!(width == 1 ? rd_u8(r, &n) : rd_u16(r, &n)) || r->left < n)
		return false;
	sub->p = r->p;
	sub->left = n;
	return rd_skip(r, n);
}

static int sni_from_server_name_ext(struct reader *ext, char *host, size_t hostlen)
{
	struct reader list, name;
	size_t type;
	char tmp[256];

	if (!rd_vec(ext, 2, &list))
		return -1;
	while (list.left) {
		if (!rd_u8(&list, &type) || !rd_vec(&list, 2, &name))
			return -1;
		if (type != 0)
			continue;
		if (!name.left || name.left >= sizeof(tmp))
			return -1;
		memcpy(tmp, name.p, name.left);
		tmp[name.left] = '\0';
		if (memchr(tmp, '\0', name.left) || strchr(tmp, '*') ||
		    !normalize_host(tmp, host, hostlen))
			return -1;
		return 1;
	}
	return -1;
}

int tls_peek_sni(const unsigned char *buf, size_t len, char *host, size_t hostlen)
{
	struct reader rec, hs, exts, ext;
	size_t reclen, hslen, type;

	if (len >= 1 && buf[0] != 0x16)
		return -1;
	if (len >= 2 && buf[1] != 0x03)
		return -1;
	if (len < 5)
		return 0;
	reclen = (size_t)buf[3] << 8 | buf[4];
	if (reclen < 4 || reclen > 16384 + 2048)
		return -1;
	if (len >= 6 && buf[5] != 0x01)
		return -1;
	if (len < 5 + reclen)
		return 0;
	rec.p = buf + 5;
	rec.left = reclen;
	if (!rd_u8(&rec, &type) || rec.left < 3)
		return -1;
	hslen = (size_t)rec.p[0] << 16 | (size_t)rec.p[1] << 8 | rec.p[2];
	rd_skip(&rec, 3);
	/* A ClientHello fragmented across records: parse what the first record holds. */
	hs.p = rec.p;
	hs.left = hslen < rec.left ? hslen : rec.left;
	if (!rd_skip(&hs, 2 + 32) || !rd_vec(&hs, 1, &ext) || !rd_vec(&hs, 2, &ext) ||
	    !rd_vec(&hs, 1, &ext) || !rd_vec(&hs, 2, &exts))
		return -1;
	while (exts.left) {
		size_t etype;

		if (!rd_u16(&exts, &etype) || !rd_vec(&exts, 2, &ext))
			return -1;
		if (etype == 0)
			return sni_from_server_name_ext(&ext, host, hostlen);
	}
	return -1;
}

void tls_count_ktls_tx_bytes(size_t n)
{
	atomic_fetch_add_explicit(&stat_ktls_tx_bytes, n, memory_order_relaxed);
}

void tls_count_ktls_spliced_response(void)
{
	atomic_fetch_add_explicit(&stat_ktls_spliced_responses, 1, memory_order_relaxed);
}

void tls_count_ktls_spliced_bytes(size_t n)
{
	atomic_fetch_add_explicit(&stat_ktls_spliced_bytes, n, memory_order_relaxed);
}
