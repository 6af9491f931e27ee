// The libbpf peer for pybpf's benchmarks: open, load and (optionally) attach an object, then report
// CLOCK_MONOTONIC timestamps so the Python driver measures the same intervals for every peer.
//   loader OBJ load            -> loads, prints "loaded <ns>" and "openload <ns>" (open+load alone), exits
//   loader OBJ attach          -> loads+attaches all, prints "attached <ns>", waits for SIGINT/SIGTERM, exits
//   loader OBJ consume RB SECS -> attach, drain ring buffer RB for SECS seconds, print "events <n> dropped <d>"
//                                 (d: the program's u64 global `dropped`, failed reservations; -1 without one)
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static unsigned long long events;
static void on_sig(int s) { (void)s; stop = 1; }
static unsigned long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}
static int on_event(void *ctx, void *data, size_t len) { (void)ctx; (void)data; (void)len; events++; return 0; }
// The u64 global `name` of the object's .bss as the kernel holds it now, or -1 when there is none.
static long long bss_u64(struct bpf_object *obj, const char *name) {
    struct bpf_map *bss = bpf_object__find_map_by_name(obj, ".bss");
    struct btf *btf = bpf_object__btf(obj);
    int sec = btf ? btf__find_by_name_kind(btf, ".bss", BTF_KIND_DATASEC) : -1;
    if (!bss || sec < 0) return -1;
    const struct btf_type *t = btf__type_by_id(btf, sec);
    const struct btf_var_secinfo *v = btf_var_secinfos(t);
    for (int i = 0; i < btf_vlen(t); i++, v++) {
        if (v->size != 8 || strcmp(btf__name_by_offset(btf, btf__type_by_id(btf, v->type)->name_off), name)) continue;
        size_t size = bpf_map__value_size(bss);
        unsigned char *data = calloc(1, size);
        int zero = 0;
        long long value = -1;
        if (data && !bpf_map__lookup_elem(bss, &zero, sizeof zero, data, size, 0)) memcpy(&value, data + v->offset, 8);
        free(data);
        return value;
    }
    return -1;
}
static int quiet(enum libbpf_print_level l, const char *f, va_list a) { (void)f; (void)a; return l == LIBBPF_WARN ? 0 : 0; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: loader OBJ load|attach|consume [RB SECS]\n"); return 2; }
    libbpf_set_print(quiet);
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    unsigned long long t0 = now_ns();
    struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
    if (!obj) { perror("open"); return 1; }
    if (bpf_object__load(obj)) { perror("load"); return 1; }
    unsigned long long t1 = now_ns();
    if (!strcmp(argv[2], "load")) {
        printf("loaded %llu\n", t1);
        printf("openload %llu\n", t1 - t0);
        fflush(stdout);
        bpf_object__close(obj);
        return 0;
    }
    struct bpf_program *prog;
    int n = 0;
    struct bpf_link *links[64];
    bpf_object__for_each_program(prog, obj) {
        links[n] = bpf_program__attach(prog);
        if (!links[n]) { perror("attach"); return 1; }
        n++;
    }
    printf("attached %llu\n", now_ns());
    fflush(stdout);
    if (!strcmp(argv[2], "consume") && argc >= 5) {
        int map_fd = bpf_object__find_map_fd_by_name(obj, argv[3]);
        struct ring_buffer *rb = ring_buffer__new(map_fd, on_event, NULL, NULL);
        if (!rb) { perror("ring_buffer__new"); return 1; }
        unsigned long long end = now_ns() + (unsigned long long)(atof(argv[4]) * 1e9);
        while (!stop && now_ns() < end) ring_buffer__poll(rb, 100);
        ring_buffer__consume(rb);
        printf("events %llu dropped %lld\n", events, bss_u64(obj, "dropped"));
        ring_buffer__free(rb);
    } else {
        while (!stop) pause();
    }
    for (int i = 0; i < n; i++) bpf_link__destroy(links[i]);
    bpf_object__close(obj);
    return 0;
}
