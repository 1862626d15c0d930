// A standalone ThreadSanitizer run of the kernels on the CPU emulator (tests/kernels/test_tsan.py).
//
//   g++ -std=c++20 -fsanitize=thread -g -O1 -pthread tsan_check.cpp                 -> no race reported
//   ... -DMINILLM_BROKEN_SYNC (matmul.cu drops the tiled kernel's second barrier)  -> data race reported
//   ... -DMINILLM_BROKEN_DOUBLE_BUFFER (the double-buffered matmul loses its one barrier) -> race
//   ... -DMINILLM_BROKEN_ATTENTION_SYNC (attention.cu's dK/dV kernel writes dSᵀ over Pᵀ
//       without waiting for every thread to finish reading Pᵀ)                     -> data race reported
//
// It is an executable rather than a ctypes library because the TSan runtime must be loaded at
// startup. Every emulated CUDA thread is a real std::thread and every __syncthreads a std::barrier,
// so TSan's happens-before analysis sees exactly the ordering that the kernel's barriers create.
// Sizes are small but span several tiles, so that every barrier and shuffle is exercised.
#include "cuda_emu.h"
#include "../matmul.cu"
#if !defined(MINILLM_BROKEN_SYNC) && !defined(MINILLM_BROKEN_DOUBLE_BUFFER)
#include "../attention.cu"  // the broken matmul builds need only the matmul, and compile faster
#define MINILLM_RUN_ATTENTION
#endif

#include <cstdio>

static int check_tiled_matmul() {
    const int M = 20, N = 18, K = 40;  // 2 × 2 blocks of 16 × 16 threads, three K tiles
    std::vector<float> a(M * K), b(K * N), c(M * N, -1.0f);
    for (int i = 0; i < M * K; ++i) a[i] = float((i * 7) % 13) - 6.0f;
    for (int i = 0; i < K * N; ++i) b[i] = float((i * 5) % 11) - 5.0f;
    emu::launch(matmul_tiled_nn, dim3((N + kTile - 1) / kTile, (M + kTile - 1) / kTile, 1),
                dim3(kTile, kTile, 1), 0, a.data(), b.data(), c.data(), M, N, K, 0LL, 0LL, 0LL);
    int wrong = 0;
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float expected = 0.0f;
            for (int k = 0; k < K; ++k) expected += a[i * K + k] * b[k * N + j];
            wrong += c[i * N + j] != expected;  // small integers: exact in fp32
        }
    std::printf("matmul_tiled_nn %dx%dx%d: %d wrong elements\n", M, N, K, wrong);
    return wrong;
}

// The double-buffered matmul over five K steps: both buffers are written and read twice or more.
static int check_double_buffered_matmul() {
    const int M = 40, N = 36, K = 40;
    std::vector<float> a(M * K), b(N * K), c(M * N, -1.0f);
    for (int i = 0; i < M * K; ++i) a[i] = float((i * 7) % 13) - 6.0f;
    for (int i = 0; i < N * K; ++i) b[i] = float((i * 5) % 11) - 5.0f;
    emu::launch(matmul_double_buffered_nt, dim3(1, 1, 1), dim3(warp_tiled::THREADS, 1, 1), 0, a.data(), b.data(),
                c.data(), M, N, K, 0LL, 0LL, 0LL);  // B stored N×K: the transposing copy path
    int wrong = 0;
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float expected = 0.0f;
            for (int k = 0; k < K; ++k) expected += a[i * K + k] * b[j * K + k];
            wrong += c[i * N + j] != expected;
        }
    std::printf("matmul_double_buffered_nt %dx%dx%d: %d wrong elements\n", M, N, K, wrong);
    return wrong;
}

#ifdef MINILLM_RUN_ATTENTION
static void run_attention() {
    // D = 32 (BR = BC = 64): 2 query tiles × 2 key tiles, with bias, key mask and causal masking.
    const int B = 1, H = 1, L = 80, D = 32;
    const long long n = (long long)B * H * L * D;
    std::vector<float> q(n), k(n), v(n), out(n), grad(n), dq(n), dk(n), dv(n), lse(B * H * L), delta(B * H * L);
    std::vector<float> bias(H * L * L), dbias(H * L * L, 0.0f);
    std::vector<unsigned char> mask(B * L);
    for (long long i = 0; i < n; ++i) {
        q[i] = 0.01f * float(i % 17);
        k[i] = 0.02f * float(i % 13);
        v[i] = float(i % 7);
        grad[i] = float(i % 5) - 2.0f;
    }
    for (int i = 0; i < H * L * L; ++i) bias[i] = 0.1f * float(i % 3);
    for (int j = 0; j < B * L; ++j) mask[j] = j % 5 != 0;
    const dim3 block(kThreads), grid_q((L + 63) / 64, H, B), grid_k((L + 63) / 64, H, B);
    auto bytes = [](int kind) { return std::size_t(4) * attention_smem_floats(kind, D, 64, 64); };
    emu::launch(attention_forward_d32_64x64, grid_q, block, bytes(0), q.data(), k.data(), v.data(),
                bias.data(), 0LL, mask.data(), out.data(), lse.data(), H, L, L, 1, 1.0f);
    emu::launch(attention_backward_dq_d32_64x64, grid_q, block, bytes(1), q.data(), k.data(), v.data(),
                bias.data(), 0LL, mask.data(), out.data(), grad.data(), lse.data(), delta.data(), dq.data(),
                dbias.data(), H, L, L, 1, 1.0f);
    emu::launch(attention_backward_dkdv_d32_64x64, grid_k, block, bytes(2), q.data(), k.data(), v.data(),
                bias.data(), 0LL, mask.data(), grad.data(), lse.data(), delta.data(), dk.data(), dv.data(),
                H, L, L, 1, 1.0f);
    // FlashAttention-2's backward: the same, in one kernel that adds into dq with atomics.
    std::vector<float> dq2(n, 0.0f), dk2(n), dv2(n), dbias2(H * L * L, 0.0f);
    emu::launch(attention_backward_fa2_d32_64x64, grid_k, block, bytes(2), q.data(), k.data(), v.data(),
                bias.data(), 0LL, mask.data(), grad.data(), lse.data(), delta.data(), dk2.data(), dv2.data(),
                dq2.data(), dbias2.data(), H, L, L, 1, 1.0f);
    std::printf("attention d32 forward + backward ran, out[0] = %g\n", out[0]);
}
#endif

int main() {
    check_tiled_matmul();
    check_double_buffered_matmul();
#ifdef MINILLM_RUN_ATTENTION
    run_attention();
#endif
    return 0;
}
