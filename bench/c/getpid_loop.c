// Benchmark producer: calls getpid() through syscall(2) in a tight loop for SECS seconds, prints the call count.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 5.0;
    unsigned long long calls = 0;
    double start = now(), end = start + secs, t = start;
    while (t < end) {
        for (int i = 0; i < 4096; i++) syscall(SYS_getpid);
        calls += 4096;
        t = now();
    }
    printf("calls %llu %.6f\n", calls, t - start);
    return 0;
}
