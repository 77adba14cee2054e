/*
 * xgate: the gateway daemon. Runs in the foreground, logs to stderr.
 *   xgate -c FILE        run
 *   xgate -t -c FILE     check the config and exit
 *   xgate --version      version and detected kernel features
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "accesslog/accesslog.h"
#include "admin/admin.h"
#include "auth/auth.h"
#include "cluster/deny.h"
#include "common/log.h"
#include "config/config.h"
#include "edge/edge.h"
#include "metrics/metrics.h"
#include "proxy/gateway.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"
#include "splice/splice.h"
#include "tls/tls.h"
#include "upstream/dns.h"
#include "upstream/upstream.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: xgate -c FILE [-t] [-v]\n"
		"       xgate --version\n"
		"\n"
		"  -c, --config FILE   configuration file (JSON; see docs/configuration.md)\n"
		"  -t, --test          check the configuration and exit: 0 and \"configuration OK\",\n"
		"                      or 1 and one line per error naming its JSON path\n"
		"  -v, --verbose       debug logging\n"
		"  -V, --version       print the version and the detected kernel features\n"
		"  -h, --help          this help\n"
		"\n"
		"Signals: SIGHUP reloads the configuration (a bad one is rejected and the old one\n"
		"keeps serving), SIGUSR1 reopens the access log, SIGTERM/SIGINT drain and exit.\n");
}

static bool io_uring_probe(bool *defer_taskrun)
{
	struct io_uring ring;
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER |
					      IORING_SETUP_DEFER_TASKRUN };

	*defer_taskrun = io_uring_queue_init_params(4, &ring, &p) == 0;
	if (*defer_taskrun) {
		io_uring_queue_exit(&ring);
		return true;
	}
	if (io_uring_queue_init(4, &ring, 0))
		return false;
	io_uring_queue_exit(&ring);
	return true;
}

static int print_version(void)
{
	bool defer;
	bool uring = io_uring_probe(&defer);

	printf("xgate %s\n", XGATE_VERSION);
	printf("kernel features:\n");
	printf("  xdp: %s\n", "native where the driver supports it, generic otherwise "
			  "(mode per interface is chosen at attach; see /status)");
	printf("  ktls: %s\n", tls_ktls_supported() ? "available (TLS ULP present)"
						    : "unavailable (kernel has no TLS ULP; "
						      "OpenSSL userspace crypto is used)");
	printf("  sockmap: %s\n", splice_supported() ? "available" : "unavailable");
	printf("  io_uring: %s\n", !uring ? "unavailable"
				   : defer ? "available (SINGLE_ISSUER, DEFER_TASKRUN)"
					   : "available");
	return 0;
}

static int check_config(const char *path)
{
	struct cfg_errs errs = { 0 };
	struct xg_config *cfg = config_load_file(path, &errs);

	if (!cfg) {
		fputs(errs.text ? errs.text : "configuration invalid\n", stderr);
		cfg_errs_free(&errs);
		return 1;
	}
	config_put(cfg);
	cfg_errs_free(&errs);
	printf("configuration OK\n");
	return 0;
}

static int setup_signals(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	/* Blocked before any thread starts, so only the signalfd sees them. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static bool wants_splice(const struct xg_config *cfg)
{
	for (int i = 0; i < cfg->nlisteners; i++)
		if (cfg->listeners[i].splice == SPLICE_SOCKMAP)
			return true;
	return false;
}

static void tick_auth(struct gateway *gw)
{
	struct xg_config *cfg = gateway_config(gw);

	if (cfg->auth)
		auth_config_tick(cfg->auth);
	config_put(cfg);
}

static void main_loop(struct gateway *gw, int sfd)
{
	struct pollfd pfd = { .fd = sfd, .events = POLLIN };
	struct signalfd_siginfo si;

	for (;;) {
		if (poll(&pfd, 1, 1000) <= 0) {
			tick_auth(gw);
			continue;
		}
		while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
			struct cfg_errs errs = { 0 };

			switch (si.ssi_signo) {
			case SIGHUP:
				log_info("main", "SIGHUP: reloading %s", gw->config_path);
				gateway_reload(gw, &errs);
				cfg_errs_free(&errs);
				break;
			case SIGUSR1:
				accesslog_reopen();
				break;
			default:
				log_info("main", "%s: draining and stopping",
					 strsignal(si.ssi_signo));
				return;
			}
		}
	}
}

static struct xg_config *deny_config(void *arg)
{
	return gateway_config(arg);
}

static int start_workers(struct gateway *gw)
{
	char err[512];

	gw->workers = calloc(gw->nworkers, sizeof(*gw->workers));
	if (!gw->workers)
		return -1;
	for (int i = 0; i < gw->nworkers; i++) {
		if (worker_start(&gw->workers[i], gw, i, err, sizeof(err))) {
			log_error("main", "%s", err);
			atomic_store(&gw->stopping, true);
			for (int j = 0; j <= i; j++)
				worker_join(&gw->workers[j]);
			return -1;
		}
	}
	return 0;
}

static int run(const char *path)
{
	struct gateway gw = { 0 };
	struct cfg_errs errs = { 0 };
	struct xg_config *cfg;
	struct admin *admin = NULL;
	struct cluster_deny *deny = NULL;
	char err[512];
	int sfd, rc = 1;

	sfd = setup_signals();
	cfg = config_load_file(path, &errs);
	if (!cfg) {
		fputs(errs.text ? errs.text : "configuration invalid\n", stderr);
		cfg_errs_free(&errs);
		return 1;
	}
	gw.config_path = path;
	gw.started_at = time(NULL);
	gw.nworkers = cfg->workers;
	gw.last_reload_ok = 1;
	cfg->generation = 1;
	gw.features.ktls = tls_ktls_supported();
	if (gateway_apply(&gw, cfg, &errs)) {
		fputs(errs.text, stderr);
		goto out;
	}
	log_info("main", "xgate %s: %d workers, XDP %s, kTLS %s", XGATE_VERSION, gw.nworkers,
		 gw.features.xdp, gw.features.ktls ? "available" : "unavailable (no TLS ULP)");
	if (wants_splice(cfg)) {
		gw.splice = splice_open();
		gw.features.sockmap = gw.splice != NULL;
		if (gw.splice)
			splice_set_inflight_limit(gw.splice, cfg->limits.splice_max_inflight_bytes);
	}
	gateway_record_initial(&gw, cfg);
	gateway_publish(&gw, cfg);
	cfg = NULL;
	metrics_set_config_generation(1, time(NULL), 1);
	/* Bounded: a name still unresolved after the wait answers 503 until it resolves. */
	gw.dns = dns_resolver_start(gw.config, gateway_dns_changed, &gw);
	if (gw.dns && !dns_resolver_wait(gw.dns, DNS_STARTUP_WAIT_MS))
		log_warn("main", "DNS: some upstream names are not resolved yet");
	if (start_workers(&gw))
		goto out;
	gateway_set_health(&gw, health_checker_start(gw.config));
	cfg = gateway_config(&gw);
	if (cfg->admin.enabled) {
		admin = admin_start(&gw, err, sizeof(err));
		if (!admin) {
			log_error("main", "admin API: %s", err);
			atomic_store(&gw.stopping, true);
			for (int i = 0; i < gw.nworkers; i++)
				worker_join(&gw.workers[i]);
			goto out;
		}
	}
	config_put(cfg);
	cfg = NULL;
	/* Idles while the config has no "cluster" and "edge": a reload may add them. */
	deny = cluster_deny_start(deny_config, &gw);
	if (!deny)
		log_warn("main", "cannot start the cluster deny list thread");
	log_info("main", "serving");
	main_loop(&gw, sfd);
	atomic_store(&gw.stopping, true);
	gateway_wake_workers(&gw);
	for (int i = 0; i < gw.nworkers; i++)
		worker_join(&gw.workers[i]);
	rc = 0;
	log_info("main", "stopped");
out:
	cluster_deny_stop(deny);
	if (admin)
		admin_stop(admin);
	dns_resolver_stop(gw.dns);
	if (gw.health)
		health_checker_stop(gw.health);
	if (gw.edge)
		edge_stop(gw.edge);
	if (gw.splice)
		splice_close(gw.splice);
	accesslog_close();
	config_put(cfg);
	gateway_publish(&gw, NULL);
	gateway_generations_free(&gw);
	free(gw.workers);
	cfg_errs_free(&errs);
	close(sfd);
	return rc;
}

/*
 * Connection buffers (tens of KiB) are allocated per exchange and freed when a keep-alive
 * connection goes idle. With glibc's defaults the freed top of a worker's arena is trimmed
 * and the next request faults the same pages in again; keeping freed memory in the arenas
 * turns that into a plain freelist reuse. Memory still returns to the system when a
 * worker's arena holds more than the trim threshold.
 */
static void tune_malloc(void)
{
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' }, { "test", no_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },	     { "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },	     { NULL, 0, NULL, 0 },
	};
	const char *path = NULL;
	bool test = false;
	int c;

	tune_malloc();
	while ((c = getopt_long(argc, argv, "c:tvVh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 't':
			test = true;
			break;
		case 'v':
			log_set_level(LOG_DEBUG);
			break;
		case 'V':
			return print_version();
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	return test ? check_config(path) : run(path);
}
