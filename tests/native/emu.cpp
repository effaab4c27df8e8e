// A host emulation of the CUDA execution model, enough to run this project's .cu kernels unchanged on
// a CPU (built by g++ into the tests' native library; never part of the product). It lets the tests
// check the kernels themselves (indexing, grid-stride loops, shared-memory trees, warp shuffles) and the
// engine's CUDA backend end to end on machines without a GPU.
//
// Model: a launch runs its blocks one after another; the threads of a block are fibers (ucontext) on
// the calling thread, run round-robin. __syncthreads() parks a fiber until every live thread of the
// block has arrived; a warp shuffle parks it until every live lane of its warp has arrived. __shared__
// variables are function-local statics, which is exact because blocks do not overlap. A barrier that
// can never complete (threads of a block waiting at different barriers) is reported as an error.
#include <ucontext.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 { unsigned int x, y, z; };

// Not static: the kernels must re-read them after every call that may switch fibers.
dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

namespace emu
{
enum State { Runnable, AtBlockBarrier, AtWarpBarrier, Done };

struct Fiber
{
    ucontext_t ctx;
    State state;
};

const size_t StackBytes = 64 * 1024;
std::vector<Fiber> fibers;
std::vector<char*> stacks;
ucontext_t scheduler;
int current;
void (*body)(void**);
void** body_args;
unsigned long long shfl[32][32]; // [warp][lane], 8 bytes per lane

void park(State s)
{
    fibers[current].state = s;
    swapcontext(&fibers[current].ctx, &scheduler);
    threadIdx.x = (unsigned)current; // restored for the kernel (the scheduler sets it too)
}

void entry()
{
    body(body_args);
    fibers[current].state = Done;
}

template <typename T> T shuffle_xor(T v, int mask)
{
    static_assert(sizeof(T) <= 8, "8-byte lanes");
    unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned long long bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    shfl[warp][lane] = bits;
    park(AtWarpBarrier);
    lane = threadIdx.x & 31;
    warp = threadIdx.x >> 5;
    bits = shfl[warp][lane ^ (unsigned)mask];
    park(AtWarpBarrier); // nobody overwrites a slot before every lane has read
    T r;
    std::memcpy(&r, &bits, sizeof(T));
    return r;
}

// Runs one block of n fibers; returns 0, or 2 when the barriers cannot complete.
int run_block(unsigned n)
{
    while (stacks.size() < n) stacks.push_back(static_cast<char*>(std::malloc(StackBytes)));
    fibers.assign(n, Fiber{});
    for (unsigned i = 0; i < n; i++)
    {
        getcontext(&fibers[i].ctx);
        fibers[i].ctx.uc_stack.ss_sp = stacks[i];
        fibers[i].ctx.uc_stack.ss_size = StackBytes;
        fibers[i].ctx.uc_link = &scheduler;
        makecontext(&fibers[i].ctx, entry, 0);
        fibers[i].state = Runnable;
    }
    for (;;)
    {
        for (unsigned i = 0; i < n; i++)
        {
            if (fibers[i].state != Runnable) continue;
            current = (int)i;
            threadIdx.x = i;
            swapcontext(&scheduler, &fibers[i].ctx);
        }
        unsigned live = 0, atBlock = 0;
        for (unsigned i = 0; i < n; i++)
        {
            if (fibers[i].state != Done) live++;
            if (fibers[i].state == AtBlockBarrier) atBlock++;
        }
        if (live == 0) return 0;
        bool released = false;
        if (atBlock == live)
        {
            for (unsigned i = 0; i < n; i++) if (fibers[i].state == AtBlockBarrier) fibers[i].state = Runnable;
            released = true;
        }
        for (unsigned w = 0; w * 32 < n; w++)
        {
            unsigned wl = 0, wa = 0;
            for (unsigned i = w * 32; i < n && i < w * 32 + 32; i++)
            {
                if (fibers[i].state != Done) wl++;
                if (fibers[i].state == AtWarpBarrier) wa++;
            }
            if (wl > 0 && wa == wl)
            {
                for (unsigned i = w * 32; i < n && i < w * 32 + 32; i++) fibers[i].state = Runnable;
                released = true;
            }
        }
        if (!released) return 2;
    }
}
} // namespace emu

inline void __syncthreads() { emu::park(emu::AtBlockBarrier); }
inline float __shfl_xor_sync(unsigned, float v, int mask) { return emu::shuffle_xor(v, mask); }
inline int __shfl_xor_sync(unsigned, int v, int mask) { return emu::shuffle_xor(v, mask); }
inline double __shfl_xor_sync(unsigned, double v, int mask) { return emu::shuffle_xor(v, mask); }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline unsigned atomicAdd(unsigned* p, unsigned v) { unsigned old = *p; *p = old + v; return old; }
inline float atomicAdd(float* p, float v) { float old = *p; *p = old + v; return old; }

#include "activations.cu"
#include "convert.cu"
#include "dropout.cu"
#include "losses.cu"
#include "norms.cu"
#include "optim.cu"

namespace emu
{
template <typename A> char code()
{
    if (std::is_pointer<A>::value) return 'p';
    if (std::is_same<A, float>::value) return 'f';
    if (std::is_same<A, double>::value) return 'd';
    return sizeof(A) == 8 ? 'q' : 'i';
}

template <typename... A, size_t... I> void invoke(void (*f)(A...), void** args, std::index_sequence<I...>)
{
    f(*static_cast<typename std::remove_cv<A>::type*>(args[I])...);
}

struct Kernel
{
    const char* name;
    void (*trampoline)(void**);
    const char* signature;
};

template <typename... A> const char* signature_of(void (*)(A...))
{
    static const char s[] = { code<A>()..., '\0' };
    return s;
}

} // namespace emu

namespace emu
{
template <typename... A> void call(void (*f)(A...), void** args) { invoke(f, args, std::index_sequence_for<A...>{}); }

#define BP_K(k) Kernel{ #k, [](void** a) { call(k, a); }, signature_of(k) }
const Kernel kernels[] = {
    BP_K(bias_act_fwd), BP_K(act_bwd), BP_K(column_sums),
    BP_K(to_bf16),
    BP_K(dropout_apply),
    BP_K(layer_norm_fwd), BP_K(layer_norm_bwd_data), BP_K(layer_norm_param_grads),
    BP_K(batch_norm_stats), BP_K(batch_norm_apply), BP_K(batch_norm_param_grads), BP_K(batch_norm_bwd_data), BP_K(add_floats),
    BP_K(softmax_ce), BP_K(mse), BP_K(l1_loss), BP_K(huber), BP_K(bce_with_logits), BP_K(loss_reduce), BP_K(count_correct),
    BP_K(sumsq_partial), BP_K(sumsq_final), BP_K(grad_check), BP_K(add_into), BP_K(copy_floats), BP_K(adam_update), BP_K(sgd_update), BP_K(rmsprop_update), BP_K(adagrad_update),
};

std::mutex launch_lock;

const Kernel* find(const char* name)
{
    for (const auto& k : kernels) if (std::strcmp(k.name, name) == 0) return &k;
    return nullptr;
}
} // namespace emu

extern "C" {
// The parameter signature of a kernel ('p' pointer, 'i' 4-byte integer, 'q' 8-byte integer, 'f' float,
// 'd' double), or null when the emulator does not know the kernel.
const char* bp_emu_signature(const char* name)
{
    const emu::Kernel* k = emu::find(name);
    return k ? k->signature : nullptr;
}

// Runs kernel `name` over grid × block threads with cuLaunchKernel-style arguments.
// Returns 0, 1 (unknown kernel), 2 (barrier deadlock) or 3 (bad launch size); err gets a message.
int bp_emu_launch(const char* name, unsigned grid, unsigned block, void** args, char* err, int errlen)
{
    const emu::Kernel* k = emu::find(name);
    if (!k) { std::snprintf(err, (size_t)errlen, "no kernel named '%s'", name); return 1; }
    if (grid == 0 || block == 0 || block > 1024)
    {
        std::snprintf(err, (size_t)errlen, "%s: launch of %u blocks of %u threads (blocks must be 1..1024 threads, grid >= 1)", name, grid, block);
        return 3;
    }
    std::lock_guard<std::mutex> guard(emu::launch_lock);
    emu::body = k->trampoline;
    emu::body_args = args;
    gridDim = dim3{ grid, 1, 1 };
    blockDim = dim3{ block, 1, 1 };
    for (unsigned b = 0; b < grid; b++)
    {
        blockIdx = dim3{ b, 0, 0 };
        if (emu::run_block(block) != 0)
        {
            std::snprintf(err, (size_t)errlen, "%s: block %u deadlocked (threads wait at barriers that cannot complete)", name, b);
            return 2;
        }
    }
    return 0;
}
}
