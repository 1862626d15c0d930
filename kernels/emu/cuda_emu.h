// cuda_emu.h: run the CUDA kernels in kernels/*.cu on the CPU, under g++ -std=c++20.
//
// A test harness, never a runtime path. The .cu files are compiled unchanged: a translation unit
// includes this header first and then the .cu file (see launch_kernels.cpp).
//
// Design (one launch at a time, one block at a time, one real std::thread per CUDA thread):
//   * threadIdx / blockIdx are `thread_local`, so every emulated thread sees its own index;
//     blockDim / gridDim are plain globals written before the threads start.
//   * `__shared__` expands to `static`. A static local is one object for all threads, which is
//     exactly "shared by the threads of a block" because blocks run one after another (the
//     threads of block n are joined before block n+1 starts, so TSan sees that ordering too).
//     Dynamic shared memory goes through one macro, MINILLM_DYNAMIC_SHARED(type, name), which the
//     .cu defines as `extern __shared__` under nvcc and this header defines as a per-block arena
//     (filled with NaN at the start of every block so that reading unwritten smem shows up).
//   * __syncthreads() is std::barrier::arrive_and_wait on the block's barrier. A thread that
//     leaves the kernel (early `return` or normal exit) calls arrive_and_drop, as exited threads
//     stop counting on a GPU.
//   * Warps: threads 32k..32k+31 of a block form warp k with its own barrier. A shuffle writes its
//     value into the warp's exchange slots, waits on the warp barrier, and reads its partner's
//     slot. Two slot buffers alternate so that one barrier per shuffle is enough.
//   * atomicAdd/atomicMax use std::atomic_ref; __expf, __fdividef, rsqrtf, float4 ... are mapped
//     to <cmath> and small structs below.
// Because the threads are real, building with -fsanitize=thread makes ThreadSanitizer report a
// missing __syncthreads as a data race (tests/kernels/test_tsan.py proves it), and building with
// -fsanitize=address makes AddressSanitizer report every out-of-bounds read or write of global or
// dynamic shared memory (tests/kernels/test_asan.py).
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <math.h>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---- keywords ---------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __constant__ static const
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// __restrict__ is understood by g++ as is.

// ---- vector types -----------------------------------------------------------------------------
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

// ---- math intrinsics (exact versions; the GPU's fast ones differ in the last bits) ------------
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __int_as_float(int i) { return std::bit_cast<float>(i); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }
inline float __uint_as_float(unsigned i) { return std::bit_cast<float>(i); }
template <class T> inline T __ldg(const T* p) { return *p; }
// CUDA has device overloads of min/max for int and float; give g++ the same names.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
// expf, logf, fmaxf, fminf, sqrtf, exp2f, fabsf come from <math.h> in the global namespace.

namespace emu {

constexpr int kWarpSize = 32;

// Everything the threads of the block that is running now share.
struct Block {
    explicit Block(unsigned n_threads) : barrier(n_threads) {
        for (unsigned first = 0; first < n_threads; first += kWarpSize) {
            unsigned size = std::min<unsigned>(kWarpSize, n_threads - first);
            warp_barriers.push_back(std::make_unique<std::barrier<>>(size));
        }
        slots.resize(2 * warp_barriers.size() * kWarpSize);
    }
    std::barrier<> barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
    std::vector<std::uint64_t> slots;  // [2 buffers][warp][lane] shuffle exchange
    unsigned char* dynamic_shared = nullptr;
};

inline thread_local Block* tl_block = nullptr;
inline thread_local unsigned tl_linear_tid = 0;
inline thread_local unsigned tl_shuffle_parity = 0;

}  // namespace emu

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
constexpr int warpSize = emu::kWarpSize;

inline void __syncthreads() { emu::tl_block->barrier.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) {
    emu::tl_block->warp_barriers[emu::tl_linear_tid / emu::kWarpSize]->arrive_and_wait();
}

namespace emu {
// Every lane publishes `value`, the warp meets at its barrier, then each lane reads lane `src`.
// The two slot buffers alternate, so a fast lane's next write cannot clobber a slot that a slow
// lane has yet to read: that read happens before the slow lane arrives at the *next* barrier.
template <class T>
T exchange(T value, int src_lane) {
    static_assert(sizeof(T) <= sizeof(std::uint64_t) && std::is_trivially_copyable_v<T>);
    Block& b = *tl_block;
    unsigned warp = tl_linear_tid / kWarpSize, lane = tl_linear_tid % kWarpSize;
    std::uint64_t* buf = b.slots.data() + (tl_shuffle_parity * b.warp_barriers.size() + warp) * kWarpSize;
    tl_shuffle_parity ^= 1u;
    std::memcpy(&buf[lane], &value, sizeof(T));
    b.warp_barriers[warp]->arrive_and_wait();
    T out;
    std::memcpy(&out, &buf[src_lane & (kWarpSize - 1)], sizeof(T));
    return out;
}
inline int lane_id() { return int(tl_linear_tid % kWarpSize); }
}  // namespace emu

template <class T> T __shfl_sync(unsigned, T v, int src, int width = warpSize) {
    int lane = emu::lane_id();
    return emu::exchange(v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <class T> T __shfl_xor_sync(unsigned, T v, int mask, int width = warpSize) {
    int lane = emu::lane_id();
    int src = lane ^ mask;
    return emu::exchange(v, ((src & ~(width - 1)) == (lane & ~(width - 1))) ? src : lane);
}
template <class T> T __shfl_down_sync(unsigned, T v, unsigned delta, int width = warpSize) {
    int lane = emu::lane_id();
    int src = lane + int(delta);
    return emu::exchange(v, (src & ~(width - 1)) == (lane & ~(width - 1)) ? src : lane);
}

// ---- atomics ----------------------------------------------------------------------------------
template <class T> T atomicAdd(T* address, T value) { return std::atomic_ref<T>(*address).fetch_add(value); }
inline int atomicMax(int* address, int value) {
    std::atomic_ref<int> ref(*address);
    int old = ref.load();
    while (old < value && !ref.compare_exchange_weak(old, value)) {}
    return old;
}

// ---- dynamic shared memory --------------------------------------------------------------------
#define MINILLM_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::emu::tl_block->dynamic_shared)

// ---- launching --------------------------------------------------------------------------------
namespace emu {

inline std::mutex& launch_mutex() { static std::mutex m; return m; }

// Run kernel<<<grid, block, shared_bytes>>>(args...) to completion.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes, Args... args) {
    std::lock_guard<std::mutex> one_launch_at_a_time(launch_mutex());
    gridDim = grid;
    blockDim = block;
    const unsigned n_threads = block.x * block.y * block.z;
    // The dynamic shared-memory arena, followed by a guard band: a kernel that uses more than the
    // launch asked for (host and kernel disagree on the layout) overwrites it, and we abort. Under
    // AddressSanitizer there is no guard band: the arena ends where the launch said, so ASan reports
    // any read or write past it, not just writes that change the band.
#if defined(__SANITIZE_ADDRESS__)
    constexpr std::size_t kGuard = 0;
#else
    constexpr std::size_t kGuard = 64;
#endif
    const std::size_t n_vec = (shared_bytes + sizeof(float4) - 1) / sizeof(float4);
    std::vector<float4> arena(n_vec + kGuard);
    const float4 guard = make_float4(-1.5e38f, 2.5e38f, -3.5e37f, 4.5e37f);
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::fill_n(reinterpret_cast<float*>(arena.data()), n_vec * 4,
                            std::numeric_limits<float>::quiet_NaN());
                std::fill(arena.begin() + n_vec, arena.end(), guard);
                Block blk(n_threads);
                blk.dynamic_shared = reinterpret_cast<unsigned char*>(arena.data());
                std::vector<std::thread> threads;
                threads.reserve(n_threads);
                for (unsigned t = 0; t < n_threads; ++t)
                    threads.emplace_back([&, t] {
                        tl_block = &blk;
                        tl_linear_tid = t;
                        tl_shuffle_parity = 0;
                        threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
                        blockIdx = dim3(bx, by, bz);
                        kernel(args...);
                        // An exited thread no longer counts at the block's or its warp's barrier.
                        blk.barrier.arrive_and_drop();
                        blk.warp_barriers[t / kWarpSize]->arrive_and_drop();
                    });
                for (auto& th : threads) th.join();
                for (std::size_t i = n_vec; i < arena.size(); ++i)
                    if (std::memcmp(&arena[i], &guard, sizeof(float4)) != 0) {
                        std::fprintf(stderr, "emu: kernel wrote past its %zu bytes of dynamic shared memory\n",
                                     shared_bytes);
                        std::abort();
                    }
            }
}

// Unpack a cuLaunchKernel-style `void** args` (one pointer to each argument) by the kernel's
// parameter types, then launch.
template <class... Params, std::size_t... I>
void launch_packed_impl(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes,
                        void** args, std::index_sequence<I...>) {
    launch(kernel, grid, block, shared_bytes, *static_cast<std::remove_cv_t<Params>*>(args[I])...);
}
template <class... Params>
void launch_packed(void (*kernel)(Params...), const unsigned* grid, const unsigned* block,
                   std::size_t shared_bytes, void** args) {
    launch_packed_impl(kernel, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]),
                       shared_bytes, args, std::index_sequence_for<Params...>{});
}

// One letter per parameter, so Python can check it passes what the kernel expects:
// p = pointer, i = int, q = long long, f = float.
template <class T> constexpr char type_code() {
    if constexpr (std::is_pointer_v<T>) return 'p';
    else if constexpr (std::is_same_v<T, int>) return 'i';
    else if constexpr (std::is_same_v<T, long long>) return 'q';
    else if constexpr (std::is_same_v<T, float>) return 'f';
    else return '?';
}
template <class... Params> const char* signature(void (*)(Params...)) {
    static const char code[] = {type_code<std::remove_cv_t<Params>>()..., '\0'};
    return code;
}

}  // namespace emu

// One extern "C" launcher (and its signature) per kernel, for ctypes:
//   emu_<kernel>(grid[3], block[3], shared_bytes, args)   and   emu_<kernel>_signature()
#define EMU_EXPORT(kernel)                                                                         \
    extern "C" void emu_##kernel(const unsigned* grid, const unsigned* block, std::size_t shared, \
                                 void** args) {                                                    \
        ::emu::launch_packed(kernel, grid, block, shared, args);                                   \
    }                                                                                              \
    extern "C" const char* emu_##kernel##_signature() { return ::emu::signature(kernel); }
