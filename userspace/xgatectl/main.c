/*
 * xgatectl: operator CLI. status/reload/stats go through the admin API; deny/allow/top
 * and the XDP part of stats read and write the pinned maps, so they work on a running
 * gateway without restarting it (and deny/allow even while it restarts).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "admin/runtime.h"
#include "xgatectl/ctl.h"

#ifndef XGATE_VERSION
#define XGATE_VERSION "unknown"
#endif

#define DEFAULT_ADMIN "127.0.0.1:9901"
#define DEFAULT_PIN_DIR "/sys/fs/bpf/xgate"
#define DEFAULT_TIMEOUT_MS 5000

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: xgatectl [OPTIONS] COMMAND [ARGS]\n"
	    "\n"
	    "Operate a running xgate gateway.\n"
	    "\n"
	    "Commands (admin API):\n"
	    "  status                 version, uptime, workers, config generation and last\n"
	    "                         reload, kernel features in use, upstream target health\n"
	    "  reload                 validate and load the config file again (like SIGHUP);\n"
	    "                         prints every error and exits 1 when it is rejected\n"
	    "  stats                  gateway counters (requests, upstreams, auth, limits,\n"
	    "                         connections, TLS, splice) and the XDP counters by reason\n"
	    "  apply FILE             validate FILE (- = stdin) and swap it in (POST /config);\n"
	    "                         prints every error and exits 1 when it is refused\n"
	    "  rollback [N]           swap back to generation N (default: the one before)\n"
	    "  generations            the last 10 configs: generation, time, source, sha256\n"
	    "  deny add|del --cluster CIDR [--ttl 10m]\n"
	    "                         every node of the cluster drops the range in XDP (the\n"
	    "                         gateway at --admin writes it to Redis); --ttl: expiry\n"
	    "  deny list --cluster    the cluster deny list\n"
	    "\n"
	    "Commands (pinned XDP maps, need root or CAP_BPF):\n"
	    "  deny add|del CIDR      drop a source range in XDP (or stop dropping it)\n"
	    "  deny list              show denied ranges and whether config or operator added "
	    "them\n"
	    "  allow add|del CIDR     let a range bypass the per-source rate limits\n"
	    "  allow list             show allowed ranges\n"
	    "  top [N] [packets|drops]\n"
	    "                         the N (default 10) busiest source addresses (IPv4 /32,\n"
	    "                         IPv6 /64) by packets seen or by packets dropped\n"
	    "\n"
	    "CIDR is 198.18.0.0/15, 2001:db8::/32 or a bare address. Operator entries survive\n"
	    "config reloads; entries from the config follow the config.\n"
	    "\n"
	    "Options:\n"
	    "  -a, --admin HOST:PORT  admin API address (default: the one the running gateway\n"
	    "                         wrote to " XGATE_RUNTIME_DIR_DEFAULT "/admin, else " DEFAULT_ADMIN ";\n"
	    "                         XGATE_RUNTIME_DIR moves that directory)\n"
	    "  -p, --pin-dir DIR      pinned map directory (default " DEFAULT_PIN_DIR ")\n"
	    "  -j, --json             machine-readable JSON output instead of tables\n"
	    "  -t, --timeout-ms N     admin API connect+response timeout (default %d)\n"
	    "  -V, --version          print the version\n"
	    "  -h, --help             this help\n"
	    "\n"
	    "Environment:\n"
	    "  XGATE_ADMIN_TOKEN      sent as Authorization: Bearer (admin.token)\n"
	    "\n"
	    "Exit status:\n"
	    "  0  success\n"
	    "  1  the gateway refused (e.g. reload rejected) or the operation failed\n"
	    "  2  usage error (unknown command, bad CIDR, bad option)\n"
	    "  3  the gateway cannot be reached: admin API not answering, or no pinned maps\n"
	    "\n"
	    "Examples:\n"
	    "  xgatectl status\n"
	    "  xgatectl --admin 127.0.0.1:9901 reload\n"
	    "  xgatectl deny add 203.0.113.0/24\n"
	    "  xgatectl --json top 20 drops\n"
	    "\n"
	    "See xgatectl(8) and xgate(8).\n",
	    DEFAULT_TIMEOUT_MS);
}

struct command {
	const char *name;
	int (*fn)(const struct ctl_opts *o, int argc, char **argv);
};

static const struct command commands[] = {
    {"status", cmd_status}, {"reload", cmd_reload}, {"stats", cmd_stats}, {"deny", cmd_list},
    {"allow", cmd_list},    {"top", cmd_top},	    {"apply", cmd_apply},
    {"rollback", cmd_rollback}, {"generations", cmd_generations}, {NULL, NULL},
};

static int parse_opts(int argc, char **argv, struct ctl_opts *o)
{
	static const struct option longopts[] = {
	    {"admin", required_argument, NULL, 'a'},
	    {"pin-dir", required_argument, NULL, 'p'},
	    {"json", no_argument, NULL, 'j'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"cluster", no_argument, NULL, 'C'},
	    {"ttl", required_argument, NULL, 'T'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	int c;

	/* Options may follow the command too ("xgatectl stats --json"): getopt permutes. */
	while ((c = getopt_long(argc, argv, "a:p:jt:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			o->admin = optarg;
			break;
		case 'p':
			o->pin_dir = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 't':
			o->timeout_ms = (int)strtol(optarg, &end, 10);
			if (*end || o->timeout_ms < 1) {
				fprintf(stderr, "xgatectl: --timeout-ms wants a positive number\n");
				return EXIT_USAGE;
			}
			break;
		case 'C':
			o->cluster = true;
			break;
		case 'T':
			o->ttl = optarg;
			break;
		case 'V':
			printf("xgatectl %s\n", XGATE_VERSION);
			exit(EXIT_OK);
		case 'h':
			usage(stdout);
			exit(EXIT_OK);
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/* The admin address the running gateway wrote (admin/runtime.c), or the default. */
static const char *find_admin(char *buf, size_t len)
{
	char path[4096];
	FILE *f;

	if (!admin_runtime_path(path, sizeof(path)))
		return DEFAULT_ADMIN;
	f = fopen(path, "r");
	if (!f)
		return DEFAULT_ADMIN;
	if (!fgets(buf, (int)len, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? buf : DEFAULT_ADMIN;
}

int main(int argc, char **argv)
{
	static char found[256];
	struct ctl_opts o = {
	    .admin = NULL, .pin_dir = DEFAULT_PIN_DIR, .timeout_ms = DEFAULT_TIMEOUT_MS};
	int rc = parse_opts(argc, argv, &o);

	if (rc)
		return rc;
	if (!o.admin)
		o.admin = find_admin(found, sizeof(found));
	o.token = getenv("XGATE_ADMIN_TOKEN");
	if (o.token && !*o.token)
		o.token = NULL;
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (const struct command *c = commands; c->name; c++)
		if (!strcmp(argv[optind], c->name))
			return c->fn(&o, argc - optind, argv + optind);
	fprintf(stderr, "xgatectl: unknown command \"%s\" (see xgatectl --help)\n", argv[optind]);
	return EXIT_USAGE;
}
