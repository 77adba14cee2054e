#include "admin/runtime.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *runtime_dir(void)
{
	const char *dir = getenv("XGATE_RUNTIME_DIR");

	return dir && *dir ? dir : XGATE_RUNTIME_DIR_DEFAULT;
}

bool admin_runtime_path(char *out, size_t len)
{
	int n = snprintf(out, len, "%s/admin", runtime_dir());

	return n > 0 && (size_t)n < len;
}

void admin_runtime_address(const struct sockaddr *bound, int port, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "127.0.0.1";

	if (bound->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)bound)->sin6_addr;

		if (IN6_IS_ADDR_UNSPECIFIED(a))
			snprintf(ip, sizeof(ip), "::1");
		else
			inet_ntop(AF_INET6, a, ip, sizeof(ip));
		snprintf(out, len, "[%s]:%d", ip, port);
		return;
	}
	if (((const struct sockaddr_in *)bound)->sin_addr.s_addr != htonl(INADDR_ANY))
		inet_ntop(AF_INET, &((const struct sockaddr_in *)bound)->sin_addr, ip, sizeof(ip));
	snprintf(out, len, "%s:%d", ip, port);
}

int admin_runtime_write(const char *address)
{
	char path[4096], tmp[4200];
	FILE *f;

	if (!admin_runtime_path(path, sizeof(path)))
		return -ENAMETOOLONG;
	if (mkdir(runtime_dir(), 0755) < 0 && errno != EEXIST)
		return -errno;
	snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid());
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "%s\n", address);
	if (fclose(f) || rename(tmp, path) < 0) {
		int err = -errno;

		unlink(tmp);
		return err;
	}
	return 0;
}

void admin_runtime_remove(const char *address)
{
	char path[4096], line[256] = "";
	FILE *f;

	if (!admin_runtime_path(path, sizeof(path)))
		return;
	f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	line[strcspn(line, "\n")] = '\0';
	/* Another gateway started since and wrote its own address: leave it. */
	if (!strcmp(line, address))
		unlink(path);
}
