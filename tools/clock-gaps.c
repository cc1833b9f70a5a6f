// How often a thread that never gives up its CPU loses it anyway: reads the
// clock in a loop for N seconds (default 5) and counts the gaps between two
// reads, by length. Run as a real-time thread on one CPU (`chrt -f 1`), no task
// of the fair class can take the CPU, so what remains is interrupts, real-time
// kernel threads and, on a VM, the host not running the vCPU (which steal time
// does not always show). The gaps of 50 ms and more are the kernel's real-time
// throttling (sched_rt_runtime_us), not the machine.
//
//   cc -O2 tools/clock-gaps.c -o /tmp/clock-gaps && taskset -c 1 chrt -f 1 /tmp/clock-gaps 5
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long nanoseconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5;
    static const long bounds[] = {20000, 50000, 100000, 200000, 500000, 10000000, 50000000};
    enum { kinds = sizeof bounds / sizeof bounds[0] };
    long over[kinds] = {0}, longest = 0;
    long end = nanoseconds() + (long)(seconds * 1e9), previous = nanoseconds();
    for (long now; (now = nanoseconds()) < end; previous = now) {
        long gap = now - previous;
        for (int k = 0; k < kinds; k++) over[k] += gap > bounds[k];
        if (gap > longest) longest = gap;
    }
    printf("gaps over %.0f s:", seconds);
    for (int k = 0; k < kinds; k++) printf(" >%ld us %ld;", bounds[k] / 1000, over[k]);
    printf(" longest %.0f us\n", longest / 1e3);
    return 0;
}
