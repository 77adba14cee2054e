/*
 * Who may talk to the admin API. A browser on the admin host can be made to send requests
 * to it (DNS rebinding, CSRF from any page); such requests carry the attacker's name in
 * Host, so only Host values naming the admin address itself are served. The bearer token
 * is for hosts where local users are not all trusted.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "admin/admin.h"

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

static bool is_wildcard(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* The literal names the bound address (or any literal when bound to the wildcard). */
static bool literal_matches(const char *name, const struct sockaddr *sa)
{
	unsigned char buf[16];

	if (inet_pton(AF_INET, name, buf) == 1)
		return is_wildcard(sa) ||
		       (sa->sa_family == AF_INET &&
			!memcmp(buf, &((const struct sockaddr_in *)sa)->sin_addr, 4));
	if (inet_pton(AF_INET6, name, buf) == 1)
		return is_wildcard(sa) ||
		       (sa->sa_family == AF_INET6 &&
			!memcmp(buf, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16));
	return false;
}

/* "port" part of a Host value: absent or exactly the bound port. */
static bool port_matches(const char *p, size_t len, int port)
{
	char *end;
	char tmp[8];
	long v;

	if (!len)
		return true;
	if (len >= sizeof(tmp))
		return false;
	memcpy(tmp, p, len);
	tmp[len] = '\0';
	v = strtol(tmp, &end, 10);
	return *end == '\0' && tmp[0] >= '0' && tmp[0] <= '9' && v == port;
}

bool admin_host_allowed(const char *host, size_t len, const struct sockaddr *bound, int port)
{
	char name[64];
	const char *port_part;
	size_t nlen;

	if (!host || !len)
		return false;
	if (host[0] == '[') {
		const char *close = memchr(host, ']', len);

		if (!close)
			return false;
		nlen = close - host - 1;
		port_part = close + 1;
		if (port_part < host + len && *port_part != ':')
			return false;
		if (nlen >= sizeof(name) || !nlen)
			return false;
		memcpy(name, host + 1, nlen);
		name[nlen] = '\0';
		if (inet_pton(AF_INET6, name, (unsigned char[16]){0}) != 1)
			return false;
	} else {
		const char *colon = memchr(host, ':', len);

		nlen = colon ? (size_t)(colon - host) : len;
		port_part = host + nlen;
		if (nlen >= sizeof(name) || !nlen)
			return false;
		memcpy(name, host, nlen);
		name[nlen] = '\0';
	}
	if (port_part < host + len)
		port_part++; /* the ':' */
	if (!port_matches(port_part, host + len - port_part, port))
		return false;
	if (!strcasecmp(name, "localhost"))
		return is_loopback(bound) || is_wildcard(bound);
	return literal_matches(name, bound);
}

bool admin_token_ok(const char *authorization, size_t len, const char *token)
{
	static const char scheme[] = "Bearer ";
	size_t tlen = strlen(token);

	if (!authorization || len != sizeof(scheme) - 1 + tlen ||
	    strncasecmp(authorization, scheme, sizeof(scheme) - 1))
		return false;
	return !CRYPTO_memcmp(authorization + sizeof(scheme) - 1, token, tlen);
}
