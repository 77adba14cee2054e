#include "splice/splice.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "maps/splice_maps.h"
#include "splice.skel.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

struct splice {
	struct splice_bpf *skel;
	int socks_fd, states_fd, ctls_fd, stats_fd, prog_fd;
	atomic_ulong flows_active, flows_total;
};

static int socket_cookie(int fd, uint64_t *cookie)
{
	socklen_t len = sizeof(*cookie);

	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len))
		return -errno;
	return 0;
}

/* Bytes ever given to the socket's TCP send queue: acknowledged plus still queued. */
static int bytes_written(int fd, uint64_t *out)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int outq;

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) || ioctl(fd, SIOCOUTQ, &outq))
		return -errno;
	*out = ti.tcpi_bytes_acked + (uint64_t)outq;
	return 0;
}

struct splice *splice_open(void)
{
	struct splice *s = calloc(1, sizeof(*s));
	int err;

	if (!s) {
		log_warn("splice", "sockmap splice disabled: out of memory");
		return NULL;
	}
	s->skel = splice_bpf__open_and_load();
	if (!s->skel) {
		log_warn("splice", "sockmap splice disabled: cannot load BPF program: %s",
			 strerror(errno));
		free(s);
		return NULL;
	}
	s->socks_fd = bpf_map__fd(s->skel->maps.splice_socks);
	s->states_fd = bpf_map__fd(s->skel->maps.splice_states);
	s->ctls_fd = bpf_map__fd(s->skel->maps.splice_ctls);
	s->stats_fd = bpf_map__fd(s->skel->maps.splice_stats);
	s->prog_fd = bpf_program__fd(s->skel->progs.splice_verdict);
	if (bpf_prog_attach(s->prog_fd, s->socks_fd, BPF_SK_SKB_STREAM_VERDICT, 0)) {
		err = errno;
		log_warn("splice", "sockmap splice disabled: cannot attach verdict program: %s",
			 strerror(err));
		splice_bpf__destroy(s->skel);
		free(s);
		return NULL;
	}
	return s;
}

void splice_close(struct splice *s)
{
	if (!s)
		return;
	bpf_prog_detach2(s->prog_fd, s->socks_fd, BPF_SK_SKB_STREAM_VERDICT);
	splice_bpf__destroy(s->skel);
	free(s);
}

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static bool probe_result;

static void probe(void)
{
	struct splice *s = splice_open();

	probe_result = s != NULL;
	splice_close(s);
}

bool splice_supported(void)
{
	pthread_once(&probe_once, probe);
	return probe_result;
}

void splice_set_inflight_limit(struct splice *s, uint64_t bytes)
{
	/* .data is mmap'd: the program sees the store on its next verdict. */
	__atomic_store_n(&s->skel->data->inflight_limit, bytes, __ATOMIC_RELAXED);
}

static void forget(struct splice *s, uint64_t cookie)
{
	bpf_map_delete_elem(s->socks_fd, &cookie);
	bpf_map_delete_elem(s->states_fd, &cookie);
	bpf_map_delete_elem(s->ctls_fd, &cookie);
}

static int add_cookie(struct splice *s, int fd, uint64_t cookie)
{
	struct splice_state st = {0};
	struct splice_ctl ctl = {0};
	uint64_t sock = fd;

	/* State and control entries exist before the socket can reach the program. */
	if (bpf_map_update_elem(s->states_fd, &cookie, &st, BPF_NOEXIST))
		return errno == E2BIG ? -ENOSPC : -errno;
	if (bpf_map_update_elem(s->ctls_fd, &cookie, &ctl, BPF_NOEXIST) ||
	    bpf_map_update_elem(s->socks_fd, &cookie, &sock, BPF_NOEXIST)) {
		int err = errno == E2BIG ? -ENOSPC : -errno;

		forget(s, cookie);
		return err;
	}
	return 0;
}

int splice_add(struct splice *s, int fd)
{
	uint64_t cookie;
	int err = socket_cookie(fd, &cookie);

	return err ? err : add_cookie(s, fd, cookie);
}

void splice_remove(struct splice *s, int fd)
{
	uint64_t cookie;

	if (!socket_cookie(fd, &cookie))
		forget(s, cookie);
}

/* Enrols fd now unless it already is; only legal when nothing was read from it. */
static int ensure_enrolled(struct splice *s, int fd, uint64_t cookie, uint64_t handled)
{
	struct splice_state st;

	if (!bpf_map_lookup_elem(s->states_fd, &cookie, &st))
		return 0;
	if (handled)
		return -EINVAL;
	return add_cookie(s, fd, cookie);
}

static int set_ctl(struct splice *s, uint64_t cookie, uint64_t peer_cookie, uint64_t handled,
		   int peer_fd)
{
	struct splice_ctl ctl = {
	    .peer_cookie = peer_cookie, .handled = handled, .handled_base = handled};
	uint64_t base;
	int err = bytes_written(peer_fd, &base);

	if (err)
		return err;
	ctl.peer_written_base = base;
	if (bpf_map_update_elem(s->ctls_fd, &cookie, &ctl, BPF_EXIST))
		return -errno;
	return 0;
}

int splice_pair(struct splice *s, int fd_a, uint64_t handled_a, int fd_b, uint64_t handled_b)
{
	struct splice_ctl unpaired = {0};
	uint64_t ca, cb;
	int err;

	if ((err = socket_cookie(fd_a, &ca)) || (err = socket_cookie(fd_b, &cb)))
		return err;
	if (ca == cb)
		return -EINVAL;
	if ((err = ensure_enrolled(s, fd_a, ca, handled_a)) ||
	    (err = ensure_enrolled(s, fd_b, cb, handled_b)))
		return err;
	if ((err = set_ctl(s, ca, cb, handled_a, fd_b)))
		return err;
	if ((err = set_ctl(s, cb, ca, handled_b, fd_a))) {
		/* Nothing can have been redirected yet towards an unpaired b: undo a cleanly. */
		bpf_map_update_elem(s->ctls_fd, &ca, &unpaired, BPF_EXIST);
		return err;
	}
	atomic_fetch_add(&s->flows_active, 1);
	atomic_fetch_add(&s->flows_total, 1);
	return 0;
}

int splice_handled(struct splice *s, int fd, uint64_t handled_total)
{
	struct splice_ctl ctl;
	uint64_t cookie;
	int err = socket_cookie(fd, &cookie);

	if (err)
		return err;
	if (bpf_map_lookup_elem(s->ctls_fd, &cookie, &ctl))
		return -errno;
	if (handled_total < ctl.handled)
		return -EINVAL;
	ctl.handled = handled_total;
	if (bpf_map_update_elem(s->ctls_fd, &cookie, &ctl, BPF_EXIST))
		return -errno;
	return 0;
}

void splice_unpair(struct splice *s, int fd_a, int fd_b)
{
	int fds[2] = {fd_a, fd_b};
	bool paired = false;

	for (int i = 0; i < 2; i++) {
		struct splice_ctl ctl;
		uint64_t cookie;

		if (socket_cookie(fds[i], &cookie))
			continue;
		if (!bpf_map_lookup_elem(s->ctls_fd, &cookie, &ctl) && ctl.peer_cookie)
			paired = true;
		forget(s, cookie);
	}
	if (paired)
		atomic_fetch_sub(&s->flows_active, 1);
}

int splice_poll(struct splice *s, int fd, int peer_fd, struct splice_status *out)
{
	struct splice_state st;
	struct splice_ctl ctl;
	uint64_t cookie, written, taken;
	int err = socket_cookie(fd, &cookie);

	memset(out, 0, sizeof(*out));
	if (err)
		return err;
	if (bpf_map_lookup_elem(s->states_fd, &cookie, &st) ||
	    bpf_map_lookup_elem(s->ctls_fd, &cookie, &ctl))
		return -errno;
	out->passed = st.passed;
	out->redirected = st.redirected;
	if (ctl.peer_cookie && (err = bytes_written(peer_fd, &written)))
		return err;
	if (ctl.peer_cookie) {
		/* What the peer's TCP took since pairing, less the leftovers userspace wrote. */
		taken = written - ctl.peer_written_base - (ctl.handled - ctl.handled_base);
		out->queued = st.redirected > taken ? st.redirected - taken : 0;
	}
	if (!(st.flags & SPLICE_F_FALLBACK)) {
		out->state = SPLICE_KERNEL;
	} else if (!out->queued) {
		out->state = SPLICE_RELAY;
	} else {
		int outq = 0;

		/* Bytes still queued for a peer whose send queue is empty: the kernel is not
		 * pushing them (seen on 6.18 after the psock met a full send buffer). */
		if (ioctl(peer_fd, SIOCOUTQ, &outq))
			return -errno;
		out->state = outq ? SPLICE_DRAINING : SPLICE_STALLED;
	}
	return 0;
}

int splice_flow_stats(struct splice *s, int fd_a, struct splice_flow_stats *out)
{
	struct splice_state st;
	struct splice_ctl ctl;
	uint64_t cookie;
	int err = socket_cookie(fd_a, &cookie);

	memset(out, 0, sizeof(*out));
	if (err)
		return err;
	if (bpf_map_lookup_elem(s->states_fd, &cookie, &st) ||
	    bpf_map_lookup_elem(s->ctls_fd, &cookie, &ctl))
		return -errno;
	out->bytes_a_to_b = st.redirected;
	if (ctl.peer_cookie && !bpf_map_lookup_elem(s->states_fd, &ctl.peer_cookie, &st))
		out->bytes_b_to_a = st.redirected;
	return 0;
}

static uint64_t stat_sum(struct splice *s, uint32_t idx)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t sum = 0;

	if (ncpu <= 0)
		return 0;
	uint64_t vals[ncpu];

	if (bpf_map_lookup_elem(s->stats_fd, &idx, vals))
		return 0;
	for (int i = 0; i < ncpu; i++)
		sum += vals[i];
	return sum;
}

void splice_stats_get(struct splice *s, struct splice_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!s)
		return;
	out->flows_active = atomic_load(&s->flows_active);
	out->flows_total = atomic_load(&s->flows_total);
	out->bytes = stat_sum(s, SPLICE_STAT_REDIRECTED_BYTES);
	out->fallbacks = stat_sum(s, SPLICE_STAT_FALLBACKS);
	out->passed_bytes = stat_sum(s, SPLICE_STAT_PASSED_BYTES);
	out->redirect_errors = stat_sum(s, SPLICE_STAT_REDIRECT_ERRORS);
}
