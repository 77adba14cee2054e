/* Worker threads of the proxy: start, join, and the provided-buffer ring. */
#ifndef XGATE_PROXY_WORKER_H
#define XGATE_PROXY_WORKER_H

#include <stddef.h>

struct worker;
struct gateway;

int worker_start(struct worker *w, struct gateway *gw, int id, char *err, size_t errlen);
void worker_join(struct worker *w);
void worker_wake(struct worker *w);
void worker_buf_return(struct worker *w, int bid);
const char *worker_buf(struct worker *w, int bid);

#endif
