/* SPDX-License-Identifier: MIT */
/*
 * Memory domains: which NUMA node a CPU belongs to, binding chunk memory to
 * a node, and IOPOOL_FAKE_NUMA, which pretends there are several so the
 * per-domain paths run (and are tested) on a one-node machine.
 *
 * Domains are numbered 0..n-1 over the nodes that have memory (a node with
 * CPUs and no memory lends its CPUs to domain 0). Without libnuma, or on
 * one node, there is one domain and nothing is bound.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "options.h"
#include "os/os.h"

/* CPUs beyond this share the domain of cpu % IOP_DOMAIN_CPUS. */
#define IOP_DOMAIN_CPUS 4096

unsigned _iop_ndomains = 1;
static uint8_t cpu_domain[IOP_DOMAIN_CPUS];
static int domain_node[IOP_MAX_DOMAINS]; /* NUMA node; -1: fake, no binding */
static pthread_once_t domains_once = PTHREAD_ONCE_INIT;
/* A worker's own domain, plus one (0: not a worker). */
static __thread unsigned tls_worker_domain;

static void fake(unsigned n)
{
	_iop_ndomains = n;
	for (unsigned c = 0; c < IOP_DOMAIN_CPUS; c++)
		cpu_domain[c] = (uint8_t)(c % n);
	for (unsigned d = 0; d < n; d++)
		domain_node[d] = -1;
}

static void real(void)
{
	int maxnode = _iop_os_numa_max_node();
	if (maxnode < 1)
		return;
	int node_dom[IOP_DOMAIN_CPUS];
	unsigned n = 0, k = 0; /* domains; nodes with memory */
	for (int node = 0; node <= maxnode && node < IOP_DOMAIN_CPUS; node++) {
		node_dom[node] = -1;
		if (!_iop_os_numa_has_memory(node))
			continue; /* no memory: no domain, no worker */
		if (n < IOP_MAX_DOMAINS)
			domain_node[n++] = node;
		node_dom[node] = (int)(k++ % IOP_MAX_DOMAINS); /* past 8: folded */
	}
	if (n < 2)
		return;
	for (unsigned c = 0; c < IOP_DOMAIN_CPUS; c++) {
		int node = _iop_os_numa_node_of_cpu((int)c);
		cpu_domain[c] = (uint8_t)(node >= 0 && node <= maxnode && node_dom[node] >= 0 ? node_dom[node] : 0);
	}
	_iop_ndomains = n;
}

static void domains_init(void)
{
	if (_iop_opt_given(IOP_OPT_FAKE_NUMA)) {
		fake((unsigned)_iop_opt_uint(IOP_OPT_FAKE_NUMA));
		return;
	}
	real();
}

void _iop_domains_init(void)
{
	pthread_once(&domains_once, domains_init);
}

unsigned _iop_domain_cpu(void)
{
	if (tls_worker_domain)
		return tls_worker_domain - 1;
	int cpu = _iop_os_cpu();
	return cpu < 0 ? 0 : cpu_domain[(unsigned)cpu % IOP_DOMAIN_CPUS];
}

void _iop_domain_bind(void *base, size_t len, unsigned d)
{
	if (_iop_ndomains > 1 && domain_node[d] >= 0)
		_iop_os_numa_bind(base, len, domain_node[d]);
}

void _iop_domain_enter(unsigned d)
{
	tls_worker_domain = d + 1;
	if (_iop_ndomains > 1 && domain_node[d] >= 0)
		_iop_os_numa_run_on(domain_node[d]);
}

/* ---- public queries ---------------------------------------------------------- */

unsigned iop_domain_count(void)
{
	_iop_domains_init();
	return _iop_ndomains;
}

unsigned iop_domain_current(void)
{
	_iop_domains_init();
	return _iop_domain_here();
}

int iop_domain_of(const void *p)
{
	struct iop_chunk *c = _iop_map_chunk_of(p);
	return c && c->pool ? c->domain : -EINVAL; /* a large heap block is in no pool */
}
