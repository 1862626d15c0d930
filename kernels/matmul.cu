// matmul.cu: C = op(A) · op(B) in fp32, in five versions; each fixes what limited the one before.
//
// Shapes. op(A) is M×K, op(B) is K×N and C is M×N; every matrix is row-major and contiguous.
//   A is stored M×K (leading dimension K), or K×M when TRANS_A, so that op(A) = Aᵀ.
//   B is stored K×N (leading dimension N), or N×K when TRANS_B, so that op(B) = Bᵀ.
// A linear layer y = x·Wᵀ needs three products: y = x·Wᵀ (NT), dx = dy·W (NN), dW = dyᵀ·x (TN).
// Batches: blockIdx.z picks the matrix, and a batch stride of 0 broadcasts one operand.
// Every version accumulates in fp32 and works for any M, N, K (≥ 1): loads outside the matrix read
// 0, which adds nothing to a dot product, and stores outside it are skipped.
//
// The numbers that decide speed (H100: ~50 TFLOP/s fp32 FMA, ~3 TB/s HBM). A kernel that reads
// every operand from DRAM for every multiply-add moves 8 bytes per 2 flops. To feed the ALUs it
// must reuse each loaded value many times from faster memory: shared memory (version 2), then
// registers (version 3). See kernels/README.md for the story, and Simon Boehm's "How to Optimize a
// CUDA Matmul Kernel for cuBLAS-like Performance" for the same progression in more detail.
//
// Compiled three ways: nvcc (tests/kernels/test_compile.py), NVRTC through cupy.RawModule
// (minillm/kernels.py), and g++ with kernels/emu/cuda_emu.h (the CPU emulator), so this file
// includes no headers and uses nothing NVRTC lacks.

// Element (row, col) of op(X), where X is stored row-major with leading dimension ld.
template <bool TRANS>
__device__ __forceinline__ float load_op(const float* x, int row, int col, int ld) {
    return TRANS ? x[(long long)col * ld + row] : x[(long long)row * ld + col];
}

// ================================================================================================
// Version 1: naive. One thread computes one element of C.
//
// C[row][col] = Σ_k op(A)[row][k] · op(B)[k][col]. Each multiply-add loads two floats from global
// memory: 0.25 flop per byte, so the kernel waits on memory (the L1/L2 caches save it somewhat).
// Coalescing still matters: threadIdx.x runs along the columns of C, so a warp's 32 threads read
// 32 consecutive B[k][col] (one 128-byte transaction) and all read the same A[row][k] (a
// broadcast). Had threadIdx.x run along rows, a warp would touch 32 different rows of B per load.
// ================================================================================================
template <bool TRANS_A, bool TRANS_B>
__device__ void matmul_naive(const float* a, const float* b, float* c, int M, int N, int K,
                             long long batch_stride_a, long long batch_stride_b,
                             long long batch_stride_c) {
    a += blockIdx.z * batch_stride_a;
    b += blockIdx.z * batch_stride_b;
    c += blockIdx.z * batch_stride_c;
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= M || col >= N) return;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k)
        acc += load_op<TRANS_A>(a, row, k, TRANS_A ? M : K) * load_op<TRANS_B>(b, k, col, TRANS_B ? K : N);
    c[(long long)row * N + col] = acc;
}

// ================================================================================================
// Version 2: shared-memory tiling. A 16×16 block of threads computes a 16×16 tile of C.
//
// The block walks along K in steps of 16. At each step its 256 threads copy a 16×16 tile of op(A)
// and of op(B) into shared memory (one element each), wait at a barrier, and then every thread
// reads a row of the A tile and a column of the B tile from shared memory. Each value loaded from
// DRAM is now used 16 times, so global traffic drops 16× (arithmetic intensity 4 flop/byte).
//
// Two barriers per step, and both are needed:
//   1. after the copy: nobody may read the tile before all of it is written;
//   2. after the multiply: nobody may overwrite the tile for the next step while a slower thread
//      still reads it. tests/kernels/test_tsan.py removes this one (MINILLM_BROKEN_SYNC) and shows
//      that ThreadSanitizer, running this file on the CPU emulator, reports the race.
// Loads are coalesced in both layouts: the thread with consecutive threadIdx.x reads consecutive
// addresses of the matrix as stored, and a transposed operand is transposed on its way into shared
// memory. The +1 column of padding keeps that transposed store free of bank conflicts (a stride of
// 17 words puts the 16 threads of a half-warp in 16 different banks; a stride of 16 would not).
// Threads outside C do not return early: they still have to help copy tiles.
// ================================================================================================
constexpr int kTile = 16;

template <bool TRANS_A, bool TRANS_B>
__device__ void matmul_tiled(const float* a, const float* b, float* c, int M, int N, int K,
                             long long batch_stride_a, long long batch_stride_b,
                             long long batch_stride_c) {
    __shared__ float a_tile[kTile][kTile + 1];  // a_tile[r][k] = op(A)[row0 + r][k0 + k]
    __shared__ float b_tile[kTile][kTile + 1];  // b_tile[k][n] = op(B)[k0 + k][col0 + n]
    a += blockIdx.z * batch_stride_a;
    b += blockIdx.z * batch_stride_b;
    c += blockIdx.z * batch_stride_c;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row0 = blockIdx.y * kTile, col0 = blockIdx.x * kTile;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += kTile) {
        if (!TRANS_A)  // A is M×K: consecutive tx read consecutive k
            a_tile[ty][tx] = (row0 + ty < M && k0 + tx < K) ? a[(long long)(row0 + ty) * K + k0 + tx] : 0.0f;
        else           // A is K×M: consecutive tx read consecutive rows of op(A)
            a_tile[tx][ty] = (row0 + tx < M && k0 + ty < K) ? a[(long long)(k0 + ty) * M + row0 + tx] : 0.0f;
        if (!TRANS_B)  // B is K×N
            b_tile[ty][tx] = (k0 + ty < K && col0 + tx < N) ? b[(long long)(k0 + ty) * N + col0 + tx] : 0.0f;
        else           // B is N×K
            b_tile[tx][ty] = (col0 + ty < N && k0 + tx < K) ? b[(long long)(col0 + ty) * K + k0 + tx] : 0.0f;
        __syncthreads();  // 1: the tiles are complete
        for (int k = 0; k < kTile; ++k) acc += a_tile[ty][k] * b_tile[k][tx];
#ifndef MINILLM_BROKEN_SYNC
        __syncthreads();  // 2: everyone is done reading before the next copy overwrites the tiles
#endif
    }
    if (row0 + ty < M && col0 + tx < N) c[(long long)(row0 + ty) * N + col0 + tx] = acc;
}

// ================================================================================================
// Version 3: 2D register blocking with vectorized (float4) loads. 256 threads compute a 128×128
// tile of C; each thread owns an 8×8 patch held in 64 registers.
//
// Why: in version 2 every multiply-add still costs two shared-memory loads, and shared memory,
// though fast, is slower than the FMA units. Here, for each k, a thread loads 8 values of the A tile
// and 8 of the B tile into registers and does 8·8 = 64 multiply-adds with them: 16 loads per 64
// FMAs instead of 128. The block tile grows to 128×128 with a K step of 8, so each value brought
// from DRAM is reused 128 times (arithmetic intensity 32 flop/byte at the DRAM level).
//
// Details that each matter:
//   * float4 loads: a thread copies 4 consecutive floats with one 128-bit instruction (when the
//     leading dimension is a multiple of 4 and the pointer is 16-byte aligned; otherwise, and at the
//     ragged edges of the matrix, it falls back to guarded scalar loads).
//   * a_tile is stored K-major (a_tile[k][m]), so that for a fixed k the 8 values a thread needs
//     are contiguous and load as two float4. An untransposed A is transposed on the way in.
//   * Each thread's 8 rows are two groups of 4, tr·4 and 64 + tr·4 (same for columns). The 8
//     lanes that share a memory phase then read 8 consecutive float4 (conflict-free), and the final
//     float4 stores of a warp cover contiguous 256-byte runs of C.
//   * Rows are padded by 4 floats: the transposed stores then spread over banks, and rows stay
//     16-byte aligned for float4.
// Versions 4 and 5 below add warp tiling and double buffering; the step after them (not here) is
// TF32 tensor cores (mma.sync), as in Boehm's post and CUTLASS.
// ================================================================================================
namespace blocked {
constexpr int BM = 128, BN = 128, BK = 8;  // block tile of C, and K step
constexpr int TM = 8, TN = 8;              // per-thread patch of C
constexpr int THREADS = (BM / TM) * (BN / TN);  // 256
constexpr int PAD = 4;
}  // namespace blocked

// Four consecutive floats p[0..3], which are columns col .. col+3 of a matrix with `cols` columns;
// zeros for columns past the edge, or for the whole row when !row_ok.
__device__ __forceinline__ float4 load4(const float* p, bool row_ok, int col, int cols, bool vector_ok) {
    float4 v = {0.0f, 0.0f, 0.0f, 0.0f};
    if (!row_ok) return v;
    if (vector_ok && col + 3 < cols) return *reinterpret_cast<const float4*>(p);
    if (col + 0 < cols) v.x = p[0];
    if (col + 1 < cols) v.y = p[1];
    if (col + 2 < cols) v.z = p[2];
    if (col + 3 < cols) v.w = p[3];
    return v;
}

__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

template <bool TRANS_A, bool TRANS_B>
__device__ void matmul_blocked(const float* a, const float* b, float* c, int M, int N, int K,
                               long long batch_stride_a, long long batch_stride_b,
                               long long batch_stride_c) {
    using namespace blocked;
    __shared__ __align__(16) float a_tile[BK][BM + PAD];  // a_tile[k][m] = op(A)[row0 + m][k0 + k]
    __shared__ __align__(16) float b_tile[BK][BN + PAD];  // b_tile[k][n] = op(B)[k0 + k][col0 + n]
    a += blockIdx.z * batch_stride_a;
    b += blockIdx.z * batch_stride_b;
    c += blockIdx.z * batch_stride_c;
    const int t = threadIdx.x;
    const int tr = t / (BN / TN), tc = t % (BN / TN);  // this thread's patch: row group, column group
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    const int lda = TRANS_A ? M : K, ldb = TRANS_B ? K : N;
    const bool vec_a = lda % 4 == 0 && aligned16(a), vec_b = ldb % 4 == 0 && aligned16(b);

    // Which 4 floats of each tile this thread copies, as a pointer that advances by one tile per
    // step (hoisting the index arithmetic out of the loop saves registers).
    //   A stored M×K: row m of the tile, k offset kq (transposed into a_tile on the way in);
    //   A stored K×M: k row ka of the tile, m offset mq (already in a_tile's order). Same for B.
    const int m = t / 2, kq = (t % 2) * 4, ka = t / 32, mq = (t % 32) * 4;
    const float* a_src = TRANS_A ? a + (long long)ka * lda + row0 + mq : a + (long long)(row0 + m) * lda + kq;
    const float* b_src = TRANS_B ? b + (long long)(col0 + m) * ldb + kq : b + (long long)ka * ldb + col0 + mq;
    const long long a_step = TRANS_A ? (long long)BK * lda : BK, b_step = TRANS_B ? BK : (long long)BK * ldb;

    float acc[TM][TN] = {};
    for (int k0 = 0; k0 < K; k0 += BK, a_src += a_step, b_src += b_step) {
        // Copy the A tile: 128×8 floats = 256 float4, one per thread.
        if (!TRANS_A) {
            const float4 v = load4(a_src, row0 + m < M, k0 + kq, K, vec_a);
            a_tile[kq + 0][m] = v.x; a_tile[kq + 1][m] = v.y;
            a_tile[kq + 2][m] = v.z; a_tile[kq + 3][m] = v.w;
        } else {
            *reinterpret_cast<float4*>(&a_tile[ka][mq]) = load4(a_src, k0 + ka < K, row0 + mq, M, vec_a);
        }
        // Copy the B tile: 8×128 floats (n plays the role of m).
        if (!TRANS_B) {
            *reinterpret_cast<float4*>(&b_tile[ka][mq]) = load4(b_src, k0 + ka < K, col0 + mq, N, vec_b);
        } else {
            const float4 v = load4(b_src, col0 + m < N, k0 + kq, K, vec_b);
            b_tile[kq + 0][m] = v.x; b_tile[kq + 1][m] = v.y;
            b_tile[kq + 2][m] = v.z; b_tile[kq + 3][m] = v.w;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            // 16 shared-memory loads (four float4) feed 64 FMAs.
            const float4 a_lo = *reinterpret_cast<const float4*>(&a_tile[k][tr * 4]);
            const float4 a_hi = *reinterpret_cast<const float4*>(&a_tile[k][BM / 2 + tr * 4]);
            const float4 b_lo = *reinterpret_cast<const float4*>(&b_tile[k][tc * 4]);
            const float4 b_hi = *reinterpret_cast<const float4*>(&b_tile[k][BN / 2 + tc * 4]);
            const float a_reg[TM] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
            const float b_reg[TN] = {b_lo.x, b_lo.y, b_lo.z, b_lo.w, b_hi.x, b_hi.y, b_hi.z, b_hi.w};
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += a_reg[i] * b_reg[j];
        }
        __syncthreads();
    }

    // Write the 8×8 patch: rows {tr·4, 64 + tr·4} + 0..3, columns {tc·4, 64 + tc·4} + 0..3.
    const bool vec_c = N % 4 == 0 && aligned16(c);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = row0 + (i < 4 ? tr * 4 + i : BM / 2 + tr * 4 + i - 4);
        if (row >= M) continue;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int col = col0 + half * (BN / 2) + tc * 4;
            float* dst = c + (long long)row * N + col;
            if (vec_c && col + 3 < N) {
                *reinterpret_cast<float4*>(dst) = float4{acc[i][half * 4 + 0], acc[i][half * 4 + 1],
                                                         acc[i][half * 4 + 2], acc[i][half * 4 + 3]};
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (col + j < N) dst[j] = acc[i][half * 4 + j];
            }
        }
    }
}

// ================================================================================================
// Version 4: warp tiling. Same 128×128 block tile, 256 threads and 8×8 outputs per thread as
// version 3, but the threads are arranged by warp: each of the 8 warps owns a 64×32 warp tile of C
// (2 warps down, 4 across), made of 2×2 sub-tiles of 32×16; within a sub-tile the 32 lanes form an
// 8×4 grid and each lane computes 4×4 of it.
//
// Why: in version 3 a warp's 32 threads (row groups tr = t / 16: two of them; column groups
// tc = t % 16: all sixteen) cover a 16×128 strip of the block tile, so for each k the warp reads
// 2·2 = 4 distinct float4 of the A tile and 16·2 = 32 of the B tile: 36. A 64×32 warp tile needs
// 8·2 = 16 of A and 4·2 = 8 of B: 24, a third fewer shared-memory bytes for the same 64 FMAs per
// thread, because a square-ish warp tile reuses each value across more lanes. The warp tile is
// also the unit the next step (tensor cores: one mma.sync per warp-tile fragment) builds on: the
// hierarchy block tile → warp tile → thread tile of CUTLASS and of Simon Boehm's kernel 10.
// Bank conflicts: in a quarter-warp (the 8 lanes a 128-bit load serves at once) the lanes span 2
// lane rows × 4 lane columns: 2 distinct A float4 and 4 distinct B float4, each broadcast, with no
// two in the same bank.
// ================================================================================================
namespace warp_tiled {
constexpr int BM = 128, BN = 128, BK = 8, PAD = 4;
constexpr int THREADS = 256;                        // 8 warps
constexpr int WARPS_N = 4;                          // warps across a block tile (2 down)
constexpr int WM = 64, WN = 32;                     // warp tile
constexpr int SUB_M = 32, SUB_N = 16;               // sub-tile: 8 × 4 lanes of 4 × 4 each
constexpr int LANES_N = 4;                          // lanes across a sub-tile (8 down)
constexpr int TM = 8, TN = 8;                       // per-thread outputs: 2 × 2 sub-tiles of 4 × 4
}  // namespace warp_tiled

// The float4 of op(A) and the float4 of op(B) that one of 256 threads copies per K step of 8, held in
// registers between the global load and the shared-memory store (version 5 puts the multiply in
// between). The thread ↔ element mapping is version 3's.
template <bool TRANS_A, bool TRANS_B>
struct TileCopy {
    const float* a_src;
    const float* b_src;
    long long a_step, b_step;
    int m, kq, ka, mq, row0, col0, M, N, K;
    bool vec_a, vec_b;
    float4 a_val, b_val;

    __device__ __forceinline__ TileCopy(const float* a, const float* b, int row0_, int col0_, int M_, int N_,
                                        int K_) {
        using namespace warp_tiled;
        const int t = threadIdx.x;
        row0 = row0_, col0 = col0_, M = M_, N = N_, K = K_;
        const int lda = TRANS_A ? M : K, ldb = TRANS_B ? K : N;
        vec_a = lda % 4 == 0 && aligned16(a), vec_b = ldb % 4 == 0 && aligned16(b);
        m = t / 2, kq = (t % 2) * 4, ka = t / 32, mq = (t % 32) * 4;
        a_src = TRANS_A ? a + (long long)ka * lda + row0 + mq : a + (long long)(row0 + m) * lda + kq;
        b_src = TRANS_B ? b + (long long)(col0 + m) * ldb + kq : b + (long long)ka * ldb + col0 + mq;
        a_step = TRANS_A ? (long long)BK * lda : BK, b_step = TRANS_B ? BK : (long long)BK * ldb;
    }
    // Global memory → registers, for the K step starting at k0 (steps must come in order).
    __device__ __forceinline__ void load(int k0) {
        a_val = TRANS_A ? load4(a_src, k0 + ka < K, row0 + mq, M, vec_a) : load4(a_src, row0 + m < M, k0 + kq, K, vec_a);
        b_val = TRANS_B ? load4(b_src, col0 + m < N, k0 + kq, K, vec_b) : load4(b_src, k0 + ka < K, col0 + mq, N, vec_b);
        a_src += a_step;
        b_src += b_step;
    }
    // Registers → the shared tiles (a_tile[k][m], b_tile[k][n]), transposing where needed.
    __device__ __forceinline__ void store(float (*a_tile)[warp_tiled::BM + warp_tiled::PAD],
                                          float (*b_tile)[warp_tiled::BN + warp_tiled::PAD]) const {
        if (TRANS_A) {
            *reinterpret_cast<float4*>(&a_tile[ka][mq]) = a_val;
        } else {
            a_tile[kq + 0][m] = a_val.x; a_tile[kq + 1][m] = a_val.y;
            a_tile[kq + 2][m] = a_val.z; a_tile[kq + 3][m] = a_val.w;
        }
        if (TRANS_B) {
            b_tile[kq + 0][m] = b_val.x; b_tile[kq + 1][m] = b_val.y;
            b_tile[kq + 2][m] = b_val.z; b_tile[kq + 3][m] = b_val.w;
        } else {
            *reinterpret_cast<float4*>(&b_tile[ka][mq]) = b_val;
        }
    }
};

// Where this thread's outputs lie in the block tile: rows a0 + {0, 32} + 0..3, columns b0 + {0, 16} + 0..3.
__device__ __forceinline__ int warp_tile_row0() {
    using namespace warp_tiled;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    return (warp / WARPS_N) * WM + (lane / LANES_N) * 4;
}
__device__ __forceinline__ int warp_tile_col0() {
    using namespace warp_tiled;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    return (warp % WARPS_N) * WN + (lane % LANES_N) * 4;
}

// acc += this thread's share of one K step: for each k, two float4 of A and two of B feed 64 FMAs.
__device__ __forceinline__ void warp_tile_multiply(const float (*a_tile)[warp_tiled::BM + warp_tiled::PAD],
                                                   const float (*b_tile)[warp_tiled::BN + warp_tiled::PAD],
                                                   int a0, int b0, float (&acc)[warp_tiled::TM][warp_tiled::TN]) {
    using namespace warp_tiled;
#pragma unroll
    for (int k = 0; k < BK; ++k) {
        const float4 a_lo = *reinterpret_cast<const float4*>(&a_tile[k][a0]);
        const float4 a_hi = *reinterpret_cast<const float4*>(&a_tile[k][a0 + SUB_M]);
        const float4 b_lo = *reinterpret_cast<const float4*>(&b_tile[k][b0]);
        const float4 b_hi = *reinterpret_cast<const float4*>(&b_tile[k][b0 + SUB_N]);
        const float a_reg[TM] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
        const float b_reg[TN] = {b_lo.x, b_lo.y, b_lo.z, b_lo.w, b_hi.x, b_hi.y, b_hi.z, b_hi.w};
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] += a_reg[i] * b_reg[j];
    }
}

// Write the 8×8 outputs: rows row0 + a0 + {0..3, 32..35}, columns col0 + b0 + {0..3, 16..19}.
__device__ __forceinline__ void warp_tile_store(float* c, const float (&acc)[warp_tiled::TM][warp_tiled::TN],
                                                int row0, int col0, int M, int N) {
    using namespace warp_tiled;
    const int a0 = warp_tile_row0(), b0 = warp_tile_col0();
    const bool vec_c = N % 4 == 0 && aligned16(c);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int row = row0 + a0 + (i / 4) * SUB_M + i % 4;
        if (row >= M) continue;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int col = col0 + b0 + half * SUB_N;
            float* dst = c + (long long)row * N + col;
            if (vec_c && col + 3 < N) {
                *reinterpret_cast<float4*>(dst) = float4{acc[i][half * 4 + 0], acc[i][half * 4 + 1],
                                                         acc[i][half * 4 + 2], acc[i][half * 4 + 3]};
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (col + j < N) dst[j] = acc[i][half * 4 + j];
            }
        }
    }
}

template <bool TRANS_A, bool TRANS_B>
__device__ void matmul_warptiled(const float* a, const float* b, float* c, int M, int N, int K,
                                 long long batch_stride_a, long long batch_stride_b,
                                 long long batch_stride_c) {
    using namespace warp_tiled;
    __shared__ __align__(16) float a_tile[BK][BM + PAD];
    __shared__ __align__(16) float b_tile[BK][BN + PAD];
    a += blockIdx.z * batch_stride_a;
    b += blockIdx.z * batch_stride_b;
    c += blockIdx.z * batch_stride_c;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    TileCopy<TRANS_A, TRANS_B> copy(a, b, row0, col0, M, N, K);
    const int a0 = warp_tile_row0(), b0 = warp_tile_col0();
    float acc[TM][TN] = {};
    for (int k0 = 0; k0 < K; k0 += BK) {
        copy.load(k0);
        copy.store(a_tile, b_tile);
        __syncthreads();
        warp_tile_multiply(a_tile, b_tile, a0, b0, acc);
        __syncthreads();
    }
    warp_tile_store(c, acc, row0, col0, M, N);
}

// ================================================================================================
// Version 5: double buffering. Version 4 with two pairs of shared tiles: while the warps multiply
// the tiles of step t, the loads of step t+1 are already in flight into registers, and land in the
// other pair afterwards.
//
// Why: in version 4 every K step is load → barrier → multiply → barrier, so a warp waiting on its
// global load has nothing to do (the SM hides it only if other blocks are ready). Issuing the next
// load before the multiply lets its DRAM latency (hundreds of cycles) overlap 64 FMAs × 8 k per
// thread. One barrier per step is enough: a thread writes the other pair only after the barrier
// that ended the previous step, which every thread passes only once it finished reading that pair.
// tests/kernels/test_tsan.py removes this barrier (MINILLM_BROKEN_DOUBLE_BUFFER) and TSan reports
// the race. (The cp.async instructions of sm_80+ do the same copy without the register detour;
// they are not emulated here.)
// ================================================================================================
template <bool TRANS_A, bool TRANS_B>
__device__ void matmul_double_buffered(const float* a, const float* b, float* c, int M, int N, int K,
                                       long long batch_stride_a, long long batch_stride_b,
                                       long long batch_stride_c) {
    using namespace warp_tiled;
    __shared__ __align__(16) float a_tile[2][BK][BM + PAD];
    __shared__ __align__(16) float b_tile[2][BK][BN + PAD];
    a += blockIdx.z * batch_stride_a;
    b += blockIdx.z * batch_stride_b;
    c += blockIdx.z * batch_stride_c;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    TileCopy<TRANS_A, TRANS_B> copy(a, b, row0, col0, M, N, K);
    const int a0 = warp_tile_row0(), b0 = warp_tile_col0();
    float acc[TM][TN] = {};
    copy.load(0);
    copy.store(a_tile[0], b_tile[0]);
    __syncthreads();
    int buffer = 0;
    for (int k0 = 0; k0 < K; k0 += BK) {
        const bool more = k0 + BK < K;
        if (more) copy.load(k0 + BK);  // in flight during the multiply below
        warp_tile_multiply(a_tile[buffer], b_tile[buffer], a0, b0, acc);
        if (more) copy.store(a_tile[buffer ^ 1], b_tile[buffer ^ 1]);
#ifndef MINILLM_BROKEN_DOUBLE_BUFFER
        __syncthreads();  // step t+1's tiles are complete, and nobody reads step t's any more
#endif
        buffer ^= 1;
    }
    warp_tile_store(c, acc, row0, col0, M, N);
}

// ================================================================================================
// Entry points: one extern "C" kernel per version and transpose pair, so that cupy.RawModule finds
// them by plain names (matmul_<version>_<nn|nt|tn|tt>) without C++ name mangling.
// ================================================================================================
#define MINILLM_MATMUL_KERNEL(version, suffix, threads, blocks_per_sm, TRANS_A, TRANS_B)          \
    extern "C" __global__ void __launch_bounds__(threads, blocks_per_sm) matmul_##version##_##suffix( \
        const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ c, int M,   \
        int N, int K, long long batch_stride_a, long long batch_stride_b,                         \
        long long batch_stride_c) {                                                               \
        matmul_##version<TRANS_A, TRANS_B>(a, b, c, M, N, K, batch_stride_a, batch_stride_b,      \
                                           batch_stride_c);                                       \
    }
#define MINILLM_MATMUL_KERNELS(version, threads, blocks_per_sm)                  \
    MINILLM_MATMUL_KERNEL(version, nn, threads, blocks_per_sm, false, false)     \
    MINILLM_MATMUL_KERNEL(version, nt, threads, blocks_per_sm, false, true)      \
    MINILLM_MATMUL_KERNEL(version, tn, threads, blocks_per_sm, true, false)      \
    MINILLM_MATMUL_KERNEL(version, tt, threads, blocks_per_sm, true, true)

// __launch_bounds__(threads, blocks_per_sm) caps registers at 65536 / (threads · blocks_per_sm).
// The blocked kernel needs 127 of the 128 that two 256-thread blocks per SM allow; one more and
// the SM holds a single block (registers are allocated 8 at a time: 136 · 256 · 2 > 65536), half
// the warps to hide latency with. Asking for 2 turns that cliff into a compile-time guarantee
// (test_compile.py checks both the count and that nothing spills).
MINILLM_MATMUL_KERNELS(naive, 256, 1)                 // block (32, 8)
MINILLM_MATMUL_KERNELS(tiled, kTile * kTile, 1)       // block (16, 16)
MINILLM_MATMUL_KERNELS(blocked, blocked::THREADS, 2)  // block (256)
MINILLM_MATMUL_KERNELS(warptiled, warp_tiled::THREADS, 2)        // block (256)
MINILLM_MATMUL_KERNELS(double_buffered, warp_tiled::THREADS, 2)  // block (256)
