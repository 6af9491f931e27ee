// Emits a known sequence of structs through a ring buffer and a perf buffer (tests/test_events.py, test_codec.py).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum color { RED = 0, GREEN = 1, BLUE = 2 };

struct inner {
    __u16 a;
    __s8 b;
};

struct event {
    __u64 seq;
    __s32 neg;
    enum color color;
    struct inner in;
    __u32 arr[3];
    unsigned int flag : 1, level : 3;
    int sbf : 4;
    char name[16];
    _Bool ok;
};

union num {
    __u32 u;
    float f;
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
} rb SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} small_rb SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, sizeof(__u32));
    __uint(value_size, sizeof(__u32));
} pb SEC(".maps");

const volatile __u32 count = 10;
const volatile __u32 discard_every = 0;
__u64 dropped = 0;
union num unused_num;
struct event unused_event;

static __always_inline void fill(struct event *e, __u32 i)
{
    e->seq = i;
    e->neg = -(int)i;
    e->color = (enum color)(i % 3);
    e->in.a = 1000 + i;
    e->in.b = -(signed char)(i & 0x7f);
    e->arr[0] = i;
    e->arr[1] = i * 2;
    e->arr[2] = i * 3;
    e->flag = i & 1;
    e->level = i & 7;
    e->sbf = (int)(i % 8) - 4;
    __builtin_memset(e->name, 0, sizeof(e->name));
    e->name[0] = 'e';
    e->name[1] = 'v';
    e->name[2] = '0' + (i % 10);
    e->ok = (i % 2) == 0;
}

SEC("raw_tp")
int emit_ringbuf(void *ctx)
{
    for (__u32 i = 0; i < count && i < 100000; i++) {
        struct event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
        if (!e) {
            __sync_fetch_and_add(&dropped, 1);
            continue;
        }
        fill(e, i);
        if (discard_every && i % discard_every == discard_every - 1)
            bpf_ringbuf_discard(e, 0);
        else
            bpf_ringbuf_submit(e, 0);
    }
    return 0;
}

SEC("raw_tp")
int emit_small(void *ctx)
{
    for (__u32 i = 0; i < count && i < 100000; i++) {
        struct event *e = bpf_ringbuf_reserve(&small_rb, sizeof(*e), 0);
        if (!e) {
            __sync_fetch_and_add(&dropped, 1);
            continue;
        }
        fill(e, i);
        bpf_ringbuf_submit(e, 0);
    }
    return 0;
}

// Records of three sizes in one ring: every 5th is cut to its first 16 bytes, every 7th (else) carries 8 extra
// bytes after the struct, the rest are plain events.  bpf_loop keeps verification independent of `count`.
static long emit_one_size(__u64 index, void *unused)
{
    struct {
        struct event e;
        __u64 extra;
    } rec = {};
    __u32 i = index;
    long err;

    fill(&rec.e, i);
    rec.extra = 0xabcdef00 + i;
    if (i % 5 == 4)
        err = bpf_ringbuf_output(&rb, &rec, 16, 0);
    else if (i % 7 == 6)
        err = bpf_ringbuf_output(&rb, &rec, sizeof(rec), 0);
    else
        err = bpf_ringbuf_output(&rb, &rec, sizeof(rec.e), 0);
    if (err)
        __sync_fetch_and_add(&dropped, 1);
    return 0;
}

SEC("raw_tp")
int emit_sizes(void *ctx)
{
    bpf_loop(count < 100000 ? count : 100000, emit_one_size, NULL, 0);
    return 0;
}

SEC("raw_tp")
int emit_perf(void *ctx)
{
    struct event e = {};
    for (__u32 i = 0; i < count && i < 100000; i++) {
        fill(&e, i);
        bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, &e, sizeof(e));
    }
    return 0;
}

SEC("raw_tp")
int emit_printk(void *ctx)
{
    bpf_printk("pybpf-trace-test %d", 4242);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
