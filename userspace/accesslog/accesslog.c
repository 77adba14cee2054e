/*
 * Per-worker single-producer/single-consumer byte rings of complete lines, drained by
 * one writer thread. A worker formats into its own scratch buffer and copies the line in
 * only when it fits whole, so the file only ever sees whole lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "accesslog/accesslog.h"
#include "common/log.h"

#define RING_SIZE (2u << 20) /* power of two */
#define SCRATCH_SIZE (128u << 10)
#define WRITER_PERIOD_MS 50
#define CACHELINE 64

struct ring {
	_Atomic size_t head __attribute__((aligned(CACHELINE))); /* worker */
	_Atomic uint64_t dropped;				 /* worker */
	_Atomic size_t tail __attribute__((aligned(CACHELINE))); /* writer */
	char *data;
	char *scratch;
};

static struct ring *_Atomic rings[ACCESSLOG_MAX_WORKERS];
static _Atomic uint64_t dropped_unbuffered; /* lines lost before a ring existed */

static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER; /* open/close */
static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;    /* writes vs fd swap */
static int log_fd = -1;
static char *log_path;
static pthread_t writer;
static atomic_bool writer_running;
static atomic_bool enabled, stopping;
static atomic_int reopen_requested;
static atomic_int wake_fd = -1;

static void wake_writer(void)
{
	uint64_t one = 1;
	int fd = atomic_load(&wake_fd);

	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0)
		return; /* counter saturated: the writer is awake anyway */
}

static struct ring *ring_new(void)
{
	struct ring *r = aligned_alloc(CACHELINE, sizeof(*r));

	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->data = malloc(RING_SIZE);
	r->scratch = malloc(SCRATCH_SIZE);
	if (!r->data || !r->scratch) {
		free(r->data);
		free(r->scratch);
		free(r);
		return NULL;
	}
	return r;
}

static struct ring *ring_get(int worker)
{
	struct ring *r;

	if (worker < 0 || worker >= ACCESSLOG_MAX_WORKERS)
		return NULL;
	r = atomic_load_explicit(&rings[worker], memory_order_acquire);
	if (r)
		return r;
	/* First line of this worker: a one-time allocation. */
	pthread_mutex_lock(&state_lock);
	r = atomic_load(&rings[worker]);
	if (!r) {
		r = ring_new();
		if (r)
			atomic_store_explicit(&rings[worker], r, memory_order_release);
	}
	pthread_mutex_unlock(&state_lock);
	return r;
}

void accesslog_write(int worker, const struct access_entry *e)
{
	struct ring *r;
	size_t len, head, tail, used, off, first;

	if (!atomic_load_explicit(&enabled, memory_order_relaxed))
		return;
	r = ring_get(worker);
	if (!r) {
		atomic_fetch_add(&dropped_unbuffered, 1);
		return;
	}
	len = accesslog_format(r->scratch, SCRATCH_SIZE, e);
	head = atomic_load_explicit(&r->head, memory_order_relaxed);
	tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	used = head - tail;
	if (len > RING_SIZE - used) {
		atomic_store_explicit(&r->dropped,
				      atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
				      memory_order_relaxed);
		return;
	}
	off = head & (RING_SIZE - 1);
	first = len < RING_SIZE - off ? len : RING_SIZE - off;
	memcpy(r->data + off, r->scratch, first);
	memcpy(r->data, r->scratch + first, len - first);
	atomic_store_explicit(&r->head, head + len, memory_order_release);
	/* Wake the writer early only when crossing half full; otherwise it polls. */
	if (used < RING_SIZE / 2 && used + len >= RING_SIZE / 2)
		wake_writer();
}

static void write_all(int fd, const char *p, size_t n)
{
	static bool reported;

	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			poll(&(struct pollfd){.fd = fd, .events = POLLOUT}, 1, 100);
			continue;
		}
		if (w <= 0) {
			if (!reported)
				log_error("accesslog", "write failed: %s (lines are discarded)",
					  w < 0 ? strerror(errno) : "short write");
			reported = true;
			return;
		}
		p += w;
		n -= w;
	}
	reported = false;
}

static void ring_drain(struct ring *r, int fd)
{
	size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	size_t off = tail & (RING_SIZE - 1), len = head - tail;
	size_t first = len < RING_SIZE - off ? len : RING_SIZE - off;

	if (!len)
		return;
	if (fd >= 0) {
		write_all(fd, r->data + off, first);
		write_all(fd, r->data, len - first);
	}
	atomic_store_explicit(&r->tail, head, memory_order_release);
}

static int open_path(const char *path)
{
	int fd;

	if (!strcmp(path, "-"))
		return STDERR_FILENO;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	return fd < 0 ? -errno : fd;
}

static void close_fd(int fd)
{
	if (fd >= 0 && fd != STDERR_FILENO)
		close(fd);
}

/* Called by the writer with fd_lock held. */
static void reopen_file(void)
{
	int fd;

	if (!log_path || !strcmp(log_path, "-"))
		return;
	fd = open_path(log_path);
	if (fd < 0) {
		log_error("accesslog", "reopening %s failed: %s (still writing to the old file)",
			  log_path, strerror(-fd));
		return;
	}
	close_fd(log_fd);
	log_fd = fd;
	log_info("accesslog", "reopened %s", log_path);
}

static void drain_all(void)
{
	pthread_mutex_lock(&fd_lock);
	if (atomic_exchange(&reopen_requested, 0))
		reopen_file();
	for (int w = 0; w < ACCESSLOG_MAX_WORKERS; w++) {
		struct ring *r = atomic_load_explicit(&rings[w], memory_order_acquire);

		if (r)
			ring_drain(r, log_fd);
	}
	pthread_mutex_unlock(&fd_lock);
}

static void *writer_main(void *arg)
{
	struct pollfd pfd = {.fd = atomic_load(&wake_fd), .events = POLLIN};
	uint64_t n;

	while (!atomic_load(&stopping)) {
		if (poll(&pfd, 1, WRITER_PERIOD_MS) > 0 && read(pfd.fd, &n, sizeof(n)) < 0 &&
		    errno != EAGAIN)
			log_warn("accesslog", "wakeup read: %s", strerror(errno));
		drain_all();
	}
	drain_all();
	return NULL;
}

static int writer_start(void)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), err;

	if (fd < 0)
		return -errno;
	atomic_store(&wake_fd, fd);
	atomic_store(&stopping, false);
	err = pthread_create(&writer, NULL, writer_main, NULL);
	if (err) {
		atomic_store(&wake_fd, -1);
		close(fd);
		return -err;
	}
	writer_running = true;
	return 0;
}

int accesslog_open(const char *path)
{
	char *copy = strdup(path);
	int fd, err = 0;

	if (!copy)
		return -ENOMEM;
	fd = open_path(path);
	if (fd < 0) {
		free(copy);
		return fd;
	}
	pthread_mutex_lock(&state_lock);
	if (!writer_running)
		err = writer_start();
	if (err) {
		pthread_mutex_unlock(&state_lock);
		close_fd(fd);
		free(copy);
		return err;
	}
	pthread_mutex_lock(&fd_lock);
	close_fd(log_fd);
	log_fd = fd;
	free(log_path);
	log_path = copy;
	pthread_mutex_unlock(&fd_lock);
	atomic_store(&enabled, true);
	pthread_mutex_unlock(&state_lock);
	return 0;
}

void accesslog_close(void)
{
	pthread_mutex_lock(&state_lock);
	atomic_store(&enabled, false);
	if (writer_running) {
		atomic_store(&stopping, true);
		wake_writer();
		pthread_join(writer, NULL);
		writer_running = false;
		close(atomic_exchange(&wake_fd, -1));
	}
	pthread_mutex_lock(&fd_lock);
	close_fd(log_fd);
	log_fd = -1;
	free(log_path);
	log_path = NULL;
	pthread_mutex_unlock(&fd_lock);
	pthread_mutex_unlock(&state_lock);
}

bool accesslog_enabled(void)
{
	return atomic_load_explicit(&enabled, memory_order_relaxed);
}

void accesslog_reopen(void)
{
	atomic_store(&reopen_requested, 1);
	wake_writer();
}

uint64_t accesslog_dropped(void)
{
	uint64_t total = atomic_load(&dropped_unbuffered);

	for (int w = 0; w < ACCESSLOG_MAX_WORKERS; w++) {
		struct ring *r = atomic_load_explicit(&rings[w], memory_order_acquire);

		if (r)
			total += atomic_load_explicit(&r->dropped, memory_order_relaxed);
	}
	return total;
}

static bool rings_empty(void)
{
	for (int w = 0; w < ACCESSLOG_MAX_WORKERS; w++) {
		struct ring *r = atomic_load_explicit(&rings[w], memory_order_acquire);

		if (r && atomic_load(&r->head) != atomic_load(&r->tail))
			return false;
	}
	return true;
}

int accesslog_flush(int timeout_ms)
{
	struct timespec pause = {0, 2000000};

	for (int waited = 0; !rings_empty(); waited += 2) {
		if (waited >= timeout_ms || !writer_running)
			return -ETIMEDOUT;
		wake_writer();
		nanosleep(&pause, NULL);
	}
	/* The last drained bytes were handed to write() under fd_lock; wait for that. */
	pthread_mutex_lock(&fd_lock);
	pthread_mutex_unlock(&fd_lock);
	return 0;
}
