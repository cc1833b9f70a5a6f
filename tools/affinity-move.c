// What it costs a thread to move itself to the other CPU of a 2-CPU machine:
// 300 times, sleep 1 ms (the other CPU goes idle; on a VM its vCPU halts), then
// sched_setaffinity to the other CPU alone (timed: the call returns once the
// thread runs there), then back to the allowed set it had (timed). Prints the
// medians, p90 and maxima in ns, and sched_getcpu's cost. With an argument, as a
// real-time (SCHED_FIFO 1) thread, as Ferry's worker sleeps and wakes.
//
//   cc -O2 tools/affinity-move.c -o /tmp/affinity-move && /tmp/affinity-move && /tmp/affinity-move rt
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { samples = 300 };

static long nanoseconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static int ascending(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        struct sched_param realtime = {1};
        if (sched_setscheduler(0, SCHED_FIFO, &realtime) != 0) { perror("sched_setscheduler"); return 1; }
    }
    cpu_set_t allowed;
    sched_getaffinity(0, sizeof allowed, &allowed);
    static long move[samples], restore[samples], getcpu[samples];
    int missed = 0;
    for (int i = 0; i < samples; i++) {
        usleep(1000);
        int there = sched_getcpu() ^ 1;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(there, &one);
        long t0 = nanoseconds();
        if (sched_setaffinity(0, sizeof one, &one) != 0) { perror("sched_setaffinity"); return 1; }
        long t1 = nanoseconds();
        sched_setaffinity(0, sizeof allowed, &allowed);
        long t2 = nanoseconds();
        int now = sched_getcpu();
        long t3 = nanoseconds();
        if (now != there) missed++;
        move[i] = t1 - t0;
        restore[i] = t2 - t1;
        getcpu[i] = t3 - t2;
    }
    qsort(move, samples, sizeof(long), ascending);
    qsort(restore, samples, sizeof(long), ascending);
    qsort(getcpu, samples, sizeof(long), ascending);
    printf("%s: move median %ld p90 %ld max %ld ns; restore median %ld p90 %ld ns; sched_getcpu median %ld ns; "
           "not on the new CPU after %d of %d\n", argc > 1 ? "SCHED_FIFO" : "SCHED_OTHER",
           move[samples / 2], move[samples * 9 / 10], move[samples - 1], restore[samples / 2],
           restore[samples * 9 / 10], getcpu[samples / 2], missed, samples);
    return 0;
}
