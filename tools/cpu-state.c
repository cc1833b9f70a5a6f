/*
 * cpu-state: what state the two CPUs of this machine are in, as the benchmarks see it.
 *
 * The development VM is bimodal: whole stretches where every rate is lower, for DPDK
 * and Ferry alike. Two causes are measurable from inside the VM, and this prints both:
 *   - how long a cache line takes to move between CPU A and CPU B (two threads bounce
 *     one line; where the host placed our two vCPUs — same core, same socket, two
 *     sockets — sets this, and every frame between a guest and a back-end pays it);
 *   - the effective clock of each CPU (a chain of dependent multiplies, 3 cycles each):
 *     lower while the host runs something on the other hyperthread or lowers the clock.
 * Both are the minimum over many short chunks, so preemption by other work on the
 * machine does not count, only the state of the CPUs themselves.
 *
 * Build (tools/benchlib.py does this): cc -O2 -pthread -o cpu-state tools/cpu-state.c
 * Run:    cpu-state [CPU_A CPU_B]        (default 0 1)
 * Output: one line: "line_ns=N clock_a_ghz=X clock_b_ghz=Y"
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHUNKS 100
#define PER_CHUNK 1000

static _Alignas(64) _Atomic long line;
static int cpu_a, cpu_b;

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

/* The far end of the bounce: waits for each odd value, answers with the next even one. */
static void *answer(void *arg)
{
	(void)arg;
	pin(cpu_b);
	for (long i = 0; i < (long)CHUNKS * PER_CHUNK; i++) {
		while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 1)
			;
		atomic_store_explicit(&line, 2 * i + 2, memory_order_release);
	}
	return NULL;
}

/* Nanoseconds for one transfer of the line (half a round trip), best chunk. */
static double line_transfer_ns(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, answer, NULL) != 0)
		return -1;
	pin(cpu_a);
	double best = 1e18;
	long i = 0;
	for (int c = 0; c < CHUNKS; c++) {
		double start = now_ns();
		for (int k = 0; k < PER_CHUNK; k++, i++) {
			atomic_store_explicit(&line, 2 * i + 1, memory_order_release);
			while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i + 2)
				;
		}
		double each = (now_ns() - start) / PER_CHUNK / 2;
		if (each < best)
			best = each;
	}
	pthread_join(t, NULL);
	return best;
}

/* Effective GHz of `cpu`: 4 dependent 3-cycle multiplies per loop, best chunk. */
static double clock_ghz(int cpu)
{
	pin(cpu);
	double best = 1e18;
	unsigned long x = 3;
	for (int c = 0; c < 100; c++) {
		double start = now_ns();
		for (long i = 0; i < 200000; i++)
			__asm__ volatile("imul %0, %0\n\timul %0, %0\n\timul %0, %0\n\timul %0, %0" : "+r"(x));
		double took = now_ns() - start;
		if (took < best)
			best = took;
	}
	return 200000.0 * 4 * 3 / best;
}

int main(int argc, char **argv)
{
	cpu_a = argc > 2 ? atoi(argv[1]) : 0;
	cpu_b = argc > 2 ? atoi(argv[2]) : 1;
	double ns = line_transfer_ns();
	double ga = clock_ghz(cpu_a);
	double gb = clock_ghz(cpu_b);
	printf("line_ns=%.0f clock_a_ghz=%.2f clock_b_ghz=%.2f\n", ns, ga, gb);
	return 0;
}
