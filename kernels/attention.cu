// attention.cu: FlashAttention-style fused attention, forward and backward, fp32.
//
//   S = scale · Q Kᵀ + bias        (Lq × Lk per batch and head; T5 uses scale = 1)
//   P = softmax(S) over keys, with masked keys removed (key padding mask, causal j > i)
//   O = P V,   lse_i = log Σ_j exp(S_ij)
//
// The naive way materializes S and P: O(Lq·Lk) memory per head, written to and read back from DRAM
// several times. Here S and P live only in on-chip memory, one tile at a time, and the forward
// stores nothing but O and one float per query row (the logsumexp). The backward recomputes P from
// the lse instead of reading it. (Dao et al., "FlashAttention" 2022 and "FlashAttention-2" 2023.)
//
// Tensors (contiguous, fp32): q, out, dq (B, H, Lq, D); k, v, dk, dv (B, H, Lk, D); lse (B, H, Lq).
// bias: (B, H, Lq, Lk), or (H, Lq, Lk) shared by the batch (bias_batch_stride = 0). key_mask:
// bytes (B, Lk), nonzero = attend. Null pointers mean "no bias" / "no mask". causal: key j is
// visible from query i only when j <= i (top-left aligned, like torch's is_causal).
//
// Fully masked rows (no visible key) give O = 0 and lse = +inf here, FlashAttention's convention: the
// backward's recomputed P = exp(S - lse) is then exactly 0 for every key, so the row's gradients are
// 0 and no NaN (-inf - -inf) can appear anywhere. The op that runs these kernels
// (minillm/fast/cuda_ops.py) then gives such a row the reference's answer, the mean of V (see
// kernels/README.md, "Fully masked rows").
//
// Work split. A block has 128 threads = 16 row groups × 8 column groups. For a tile of S with BR
// query rows and BC key columns, row group g owns rows g·RT .. g·RT+RT-1 and column group c owns
// the strided columns c, c+8, c+16, ...: each thread computes an RT×CT patch in registers (register
// blocking, as in matmul.cu version 3). The 8 threads of a row group are 8 consecutive lanes of one
// warp, so a row reduction is 3 warp shuffles.
//
// Shared-memory padding, D+4. The product loops read 4 consecutive floats of a row at once (one
// 128-bit load, float4). A warp's 128-bit loads are served a quarter-warp (8 lanes) at a time; in
// each quarter the 8 lanes are the 8 column groups of one row group, and they read 8 different K
// rows at the same d. With rows D floats apart (D a multiple of 32) all 8 would start in the same
// bank: an 8-way conflict. With rows D+4 apart, row r starts at bank 4r mod 32, so the 8 float4
// tile the 32 banks exactly: no conflict. (D+1 would also spread scalar reads, but breaks the
// 16-byte alignment a float4 needs, which is why the first version read one float at a time.)
//
// Compiled by nvcc, by NVRTC through cupy.RawModule and by g++ with kernels/emu/cuda_emu.h, so no
// headers. Shared memory is dynamic (most kernels need more than the 48 KB a block gets without
// opting in; attention_smem_floats below gives each one's size) and is declared with
// MINILLM_DYNAMIC_SHARED, which the emulator redefines. Each kernel exists for a few tile sizes
// (BR × BC): the launcher takes the largest that fits the GPU's per-block shared-memory limit.

#ifndef MINILLM_DYNAMIC_SHARED
#define MINILLM_DYNAMIC_SHARED(type, name)              \
    extern __shared__ __align__(16) unsigned char name##_bytes[]; \
    type* name = reinterpret_cast<type*>(name##_bytes)
#endif

constexpr int kThreads = 128;
constexpr int kRowGroups = 16;
constexpr int kColGroups = 8;

// Floats of dynamic shared memory each kernel uses; minillm/fast/cuda.py mirrors this (and the
// emulator's guard band and AddressSanitizer catch any disagreement). kind: 0 forward, 1 dq, 2 dkdv
// (and fa2, which has dkdv's layout).
__host__ __device__ constexpr int attention_smem_floats(int kind, int D, int BR, int BC) {
    return kind == 0 ? BR * (D + 4) + 2 * BC * (D + 4) + BR * (BC + 4)         // Q, K, V, P
         : kind == 1 ? 2 * BR * (D + 4) + 2 * BC * (D + 4) + BR * (BC + 4)     // Q, dO, K, V, dS
                     : 2 * BC * (D + 4) + 2 * BR * (D + 4) + BC * (BR + 4) + 2 * BR;  // K, V, Q, dO, Pᵀ/dSᵀ, lse, D
}

__device__ __forceinline__ float dot4(float4 a, float4 b) { return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w; }
__device__ __forceinline__ float4 load_float4(const float* p) { return *reinterpret_cast<const float4*>(p); }

__device__ __forceinline__ float positive_infinity() { return __int_as_float(0x7f800000); }

// Max / sum over the 8 lanes of a row group (lanes 8g .. 8g+7 of a warp); every lane gets the result.
__device__ __forceinline__ float row_group_max(float x) {
    #pragma unroll
    for (int offset = kColGroups / 2; offset > 0; offset /= 2)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}
__device__ __forceinline__ float row_group_sum(float x) {
    #pragma unroll
    for (int offset = kColGroups / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

// Copy rows row0 .. row0+ROWS-1 of a (len × D) matrix into shared memory with row stride D+4,
// writing zeros past len. Consecutive threads read consecutive addresses (coalesced).
template <int ROWS, int D>
__device__ __forceinline__ void load_rows(float* dst, const float* src, int row0, int len) {
    for (int e = threadIdx.x; e < ROWS * D; e += kThreads) {
        const int r = e / D, d = e % D;
        dst[r * (D + 4) + d] = (row0 + r < len) ? src[(long long)(row0 + r) * D + d] : 0.0f;
    }
}

// Everything that locates one (batch, head) problem in memory.
struct Head {
    const float* bias;                // (Lq, Lk) slice of this head, or null
    const unsigned char* key_mask;    // (Lk) of this batch row, or null
    int q_len, k_len, causal;
    float scale;

    // May query i see key j?
    __device__ __forceinline__ bool visible(int i, int j) const {
        return i < q_len && j < k_len && (key_mask == nullptr || key_mask[j] != 0) && !(causal && j > i);
    }
    // S_ij from the raw dot product q_i · k_j (only called when visible).
    __device__ __forceinline__ float score(float dot, int i, int j) const {
        return scale * dot + (bias != nullptr ? bias[(long long)i * k_len + j] : 0.0f);
    }
};

__device__ __forceinline__ Head make_head(const float* bias, long long bias_batch_stride,
                                          const unsigned char* key_mask, int heads, int q_len,
                                          int k_len, int causal, float scale) {
    const int h = blockIdx.y, b = blockIdx.z;
    Head head;
    head.bias = bias != nullptr ? bias + b * bias_batch_stride + (long long)h * q_len * k_len : nullptr;
    head.key_mask = key_mask != nullptr ? key_mask + (long long)b * k_len : nullptr;
    head.q_len = q_len;
    head.k_len = k_len;
    head.causal = causal;
    head.scale = scale;
    return head;
}

// ================================================================================================
// Forward. One block computes BR rows of O for one (batch, head), streaming K and V in tiles of BC.
//
// Online softmax. Keep for each row a running max m, a running sum l = Σ exp(s - m) and an
// unnormalized output o = Σ exp(s - m) v. A new tile with scores s_j arrives:
//     m_new = max(m, max_j s_j)
//     l     = l · e^(m - m_new) + Σ_j e^(s_j - m_new)
//     o     = o · e^(m - m_new) + Σ_j e^(s_j - m_new) v_j
// Multiplying by e^(m - m_new) re-expresses the old terms relative to the new max, so at the end
// o / l = Σ_j softmax_j v_j exactly, and lse = m + log l. Nothing but m, l and o is kept per row,
// and no exp ever overflows (its argument is ≤ 0).
// A row that has seen only masked keys has m = -inf; we then subtract 0 instead of m so that
// e^(-inf - -inf) = NaN never happens (all its p are e^-inf = 0 and l stays 0).
// Each thread keeps a partial l over its own columns: all 8 threads of a row rescale by the same
// e^(m - m_new), so the partial sums are only added together once, at the end.
// Causal: tiles whose first key is past the block's last query are fully masked and skipped.
// ================================================================================================
template <int D, int BR, int BC>
__device__ void attention_forward(const float* q, const float* k, const float* v, const float* bias,
                                  long long bias_batch_stride, const unsigned char* key_mask,
                                  float* out, float* lse, int heads, int q_len, int k_len,
                                  int causal, float scale) {
    constexpr int RT = BR / kRowGroups, CT = BC / kColGroups, DT = D / kColGroups;
    constexpr int LD = D + 4, LP = BC + 4;
    MINILLM_DYNAMIC_SHARED(float, smem);
    float* q_s = smem;           // [BR][LD]
    float* k_s = q_s + BR * LD;  // [BC][LD]
    float* v_s = k_s + BC * LD;  // [BC][LD]
    float* p_s = v_s + BC * LD;  // [BR][LP]  probabilities of this tile

    const Head head = make_head(bias, bias_batch_stride, key_mask, heads, q_len, k_len, causal, scale);
    const long long bh = (long long)blockIdx.z * heads + blockIdx.y;
    q += bh * q_len * D;
    k += bh * k_len * D;
    v += bh * k_len * D;
    out += bh * q_len * D;
    lse += bh * q_len;
    const int rg = threadIdx.x / kColGroups, cg = threadIdx.x % kColGroups;
    const int i0 = blockIdx.x * BR;

    load_rows<BR, D>(q_s, q, i0, q_len);
    float m[RT], l[RT], o[RT][DT];
    #pragma unroll
    for (int r = 0; r < RT; ++r) {
        m[r] = -positive_infinity();
        l[r] = 0.0f;
        #pragma unroll
        for (int dd = 0; dd < DT; ++dd) o[r][dd] = 0.0f;
    }

    const int kv_end = causal ? min(k_len, i0 + BR) : k_len;
    for (int j0 = 0; j0 < kv_end; j0 += BC) {
        __syncthreads();  // the previous tile is consumed (first pass: q_s is written)
        load_rows<BC, D>(k_s, k, j0, k_len);
        load_rows<BC, D>(v_s, v, j0, k_len);
        __syncthreads();

        // s = Q_tile K_tileᵀ for this thread's RT × CT patch.
        float s[RT][CT] = {};
        for (int d = 0; d < D; d += 4) {  // four d at a time: float4 reads, conflict-free with D+4
            float4 q_reg[RT], k_reg[CT];
            #pragma unroll
            for (int r = 0; r < RT; ++r) q_reg[r] = load_float4(&q_s[(rg * RT + r) * LD + d]);
            #pragma unroll
            for (int c = 0; c < CT; ++c) k_reg[c] = load_float4(&k_s[(cg + c * kColGroups) * LD + d]);
            #pragma unroll
            for (int r = 0; r < RT; ++r)
                #pragma unroll
                for (int c = 0; c < CT; ++c) s[r][c] += dot4(q_reg[r], k_reg[c]);
        }

        // Online softmax update, row by row.
        #pragma unroll
        for (int r = 0; r < RT; ++r) {
            const int i = i0 + rg * RT + r;
            float tile_max = -positive_infinity();
            #pragma unroll
            for (int c = 0; c < CT; ++c) {
                const int j = j0 + cg + c * kColGroups;
                s[r][c] = head.visible(i, j) ? head.score(s[r][c], i, j) : -positive_infinity();
                tile_max = fmaxf(tile_max, s[r][c]);
            }
            const float m_new = fmaxf(m[r], row_group_max(tile_max));
            const float m_ref = (m_new == -positive_infinity()) ? 0.0f : m_new;
            const float alpha = __expf(m[r] - m_ref);
            l[r] *= alpha;
            #pragma unroll
            for (int dd = 0; dd < DT; ++dd) o[r][dd] *= alpha;
            #pragma unroll
            for (int c = 0; c < CT; ++c) {
                const float p = __expf(s[r][c] - m_ref);
                l[r] += p;
                p_s[(rg * RT + r) * LP + cg + c * kColGroups] = p;
            }
            m[r] = m_new;
        }
        __syncthreads();  // P tile complete

        // o += P_tile V_tile: this thread's RT rows × its DT strided columns of O.
        for (int j = 0; j < BC; ++j) {
            float p_reg[RT], v_reg[DT];
            #pragma unroll
            for (int r = 0; r < RT; ++r) p_reg[r] = p_s[(rg * RT + r) * LP + j];
            #pragma unroll
            for (int dd = 0; dd < DT; ++dd) v_reg[dd] = v_s[j * LD + cg + dd * kColGroups];
            #pragma unroll
            for (int r = 0; r < RT; ++r)
                #pragma unroll
                for (int dd = 0; dd < DT; ++dd) o[r][dd] += p_reg[r] * v_reg[dd];
        }
    }

    #pragma unroll
    for (int r = 0; r < RT; ++r) {
        const float l_row = row_group_sum(l[r]);  // every lane calls the shuffle, then some skip
        const int i = i0 + rg * RT + r;
        if (i >= q_len) continue;
        const float inv_l = l_row > 0.0f ? 1.0f / l_row : 0.0f;  // fully masked row: O = 0
        #pragma unroll
        for (int dd = 0; dd < DT; ++dd) out[(long long)i * D + cg + dd * kColGroups] = o[r][dd] * inv_l;
        if (cg == 0) lse[i] = l_row > 0.0f ? m[r] + logf(l_row) : positive_infinity();
    }
}

// ================================================================================================
// Backward. With P = exp(S - lse) recomputed tile by tile, and dO the gradient of O:
//     dV = Pᵀ dO
//     dP = dO Vᵀ
//     dS = P ∘ (dP - D),   D_i = Σ_j P_ij dP_ij = Σ_j P_ij (dO_i · v_j) = dO_i · O_i
//     dQ = scale · dS K,   dK = scale · dSᵀ Q,   dbias = dS (summed over the batch if shared)
// (softmax's Jacobian: dS_ij = P_ij (dP_ij - Σ_k P_ik dP_ik); the rowsum is D_i, which is why the
// forward need not keep P.) Two kernels share the work without atomics on dQ/dK/dV:
//   backward_dq   one block per BR query rows: computes D for its rows, then loops over key tiles
//                 and accumulates dQ (and writes dbias, which has the layout of S);
//   backward_dkdv one block per BC key rows: loops over query tiles and accumulates dK and dV.
// Both recompute S and dP: more flops than FlashAttention-2's single pass with atomic dQ, but
// deterministic and simpler to read. dbias is written only for visited tiles, so the host zeroes
// it first; with a bias shared by the batch, the batch's contributions meet through atomicAdd.
// ================================================================================================
template <int D, int BR, int BC>
__device__ void attention_backward_dq(const float* q, const float* k, const float* v, const float* bias,
                                      long long bias_batch_stride, const unsigned char* key_mask,
                                      const float* out, const float* grad_out, const float* lse,
                                      float* delta, float* dq, float* dbias, int heads, int q_len,
                                      int k_len, int causal, float scale) {
    constexpr int RT = BR / kRowGroups, CT = BC / kColGroups, DT = D / kColGroups;
    constexpr int LD = D + 4, LP = BC + 4;
    MINILLM_DYNAMIC_SHARED(float, smem);
    float* q_s = smem;            // [BR][LD]
    float* do_s = q_s + BR * LD;  // [BR][LD]
    float* k_s = do_s + BR * LD;  // [BC][LD]
    float* v_s = k_s + BC * LD;   // [BC][LD]
    float* ds_s = v_s + BC * LD;  // [BR][LP]

    const Head head = make_head(bias, bias_batch_stride, key_mask, heads, q_len, k_len, causal, scale);
    float* dbias_bh = dbias != nullptr
        ? dbias + blockIdx.z * bias_batch_stride + (long long)blockIdx.y * q_len * k_len : nullptr;
    const bool dbias_shared_by_batch = bias_batch_stride == 0;
    const long long bh = (long long)blockIdx.z * heads + blockIdx.y;
    q += bh * q_len * D;
    k += bh * k_len * D;
    v += bh * k_len * D;
    out += bh * q_len * D;
    grad_out += bh * q_len * D;
    dq += bh * q_len * D;
    lse += bh * q_len;
    delta += bh * q_len;
    const int rg = threadIdx.x / kColGroups, cg = threadIdx.x % kColGroups;
    const int i0 = blockIdx.x * BR;

    load_rows<BR, D>(q_s, q, i0, q_len);
    load_rows<BR, D>(do_s, grad_out, i0, q_len);
    __syncthreads();

    // D_i = dO_i · O_i for this thread's rows (kept for the dkdv kernel too), and the rows' lse.
    float delta_r[RT], lse_r[RT], acc[RT][DT];
    #pragma unroll
    for (int r = 0; r < RT; ++r) {
        const int i = i0 + rg * RT + r;
        float partial = 0.0f;
        if (i < q_len)
            #pragma unroll
            for (int dd = 0; dd < DT; ++dd)
                partial += do_s[(rg * RT + r) * LD + cg + dd * kColGroups] *
                           out[(long long)i * D + cg + dd * kColGroups];
        delta_r[r] = row_group_sum(partial);
        lse_r[r] = i < q_len ? lse[i] : positive_infinity();
        if (i < q_len && cg == 0) delta[i] = delta_r[r];
        #pragma unroll
        for (int dd = 0; dd < DT; ++dd) acc[r][dd] = 0.0f;
    }

    const int kv_end = causal ? min(k_len, i0 + BR) : k_len;
    for (int j0 = 0; j0 < kv_end; j0 += BC) {
        __syncthreads();
        load_rows<BC, D>(k_s, k, j0, k_len);
        load_rows<BC, D>(v_s, v, j0, k_len);
        __syncthreads();

        float s[RT][CT] = {}, dp[RT][CT] = {};  // q_i · k_j and dO_i · v_j
        for (int d = 0; d < D; d += 4) {
            float4 q_reg[RT], do_reg[RT], k_reg[CT], v_reg[CT];
            #pragma unroll
            for (int r = 0; r < RT; ++r) {
                q_reg[r] = load_float4(&q_s[(rg * RT + r) * LD + d]);
                do_reg[r] = load_float4(&do_s[(rg * RT + r) * LD + d]);
            }
            #pragma unroll
            for (int c = 0; c < CT; ++c) {
                k_reg[c] = load_float4(&k_s[(cg + c * kColGroups) * LD + d]);
                v_reg[c] = load_float4(&v_s[(cg + c * kColGroups) * LD + d]);
            }
            #pragma unroll
            for (int r = 0; r < RT; ++r)
                #pragma unroll
                for (int c = 0; c < CT; ++c) {
                    s[r][c] += dot4(q_reg[r], k_reg[c]);
                    dp[r][c] += dot4(do_reg[r], v_reg[c]);
                }
        }
        #pragma unroll
        for (int r = 0; r < RT; ++r) {
            const int i = i0 + rg * RT + r;
            #pragma unroll
            for (int c = 0; c < CT; ++c) {
                const int j = j0 + cg + c * kColGroups;
                const bool vis = head.visible(i, j);
                const float p = vis ? __expf(head.score(s[r][c], i, j) - lse_r[r]) : 0.0f;
                const float ds = p * (dp[r][c] - delta_r[r]);
                ds_s[(rg * RT + r) * LP + cg + c * kColGroups] = ds;
                if (dbias_bh != nullptr && vis) {
                    float* dst = dbias_bh + (long long)i * k_len + j;
                    if (dbias_shared_by_batch) atomicAdd(dst, ds);
                    else *dst = ds;
                }
            }
        }
        __syncthreads();

        for (int j = 0; j < BC; ++j) {  // acc += dS_tile K_tile
            float ds_reg[RT], k_reg[DT];
            #pragma unroll
            for (int r = 0; r < RT; ++r) ds_reg[r] = ds_s[(rg * RT + r) * LP + j];
            #pragma unroll
            for (int dd = 0; dd < DT; ++dd) k_reg[dd] = k_s[j * LD + cg + dd * kColGroups];
            #pragma unroll
            for (int r = 0; r < RT; ++r)
                #pragma unroll
                for (int dd = 0; dd < DT; ++dd) acc[r][dd] += ds_reg[r] * k_reg[dd];
        }
    }

    #pragma unroll
    for (int r = 0; r < RT; ++r) {
        const int i = i0 + rg * RT + r;
        if (i >= q_len) continue;
        #pragma unroll
        for (int dd = 0; dd < DT; ++dd) dq[(long long)i * D + cg + dd * kColGroups] = scale * acc[r][dd];
    }
}

// One block per BC key rows. The roles of rows and columns swap: row group g owns key rows
// g·RJ .. g·RJ+RJ-1 and column group c owns the query columns c, c+8, ... of the transposed tile Sᵀ.
// Causal: query tiles that end before this block's first key see none of its keys and are skipped.
// Pᵀ and dSᵀ take turns in one shared buffer (two more barriers per tile): at D = 128 that saves
// BC·(BR+4) floats, 8.5 KB, and brings the kernel to 108 KB, so that two blocks fit an H100's
// 228 KB per SM (each block also costs 1 KB the driver reserves) instead of one.
//
// FUSED_DQ = true is FlashAttention-2's split of the backward (Dao 2023, Algorithm 2): this one
// kernel per key tile also adds its share of dQ, dQ_i += scale · Σ_{j in tile} dS_ij K_j, into
// dq with atomicAdd (the host zeroes dq, and computes D = rowsum(dO ∘ O) beforehand), and writes
// dbias from the dS it already has. S and dP are computed once per (query tile, key tile) pair
// instead of twice: five tile products instead of seven, paid for with atomics on dQ (whose
// summation order, and so its last bits, varies from run to run).
template <int D, int BR, int BC, bool FUSED_DQ>
__device__ void attention_backward_dkdv(const float* q, const float* k, const float* v, const float* bias,
                                        long long bias_batch_stride, const unsigned char* key_mask,
                                        const float* grad_out, const float* lse, const float* delta,
                                        float* dk, float* dv, float* dq, float* dbias, int heads, int q_len,
                                        int k_len, int causal, float scale) {
    constexpr int RJ = BC / kRowGroups, CI = BR / kColGroups, DT = D / kColGroups;
    constexpr int LD = D + 4, LP = BR + 4;
    MINILLM_DYNAMIC_SHARED(float, smem);
    float* k_s = smem;              // [BC][LD]
    float* v_s = k_s + BC * LD;     // [BC][LD]
    float* q_s = v_s + BC * LD;     // [BR][LD]
    float* do_s = q_s + BR * LD;    // [BR][LD]
    float* t_s = do_s + BR * LD;    // [BC][LP]  Pᵀ of this tile, then dSᵀ in the same buffer
    float* lse_s = t_s + BC * LP;   // [BR]
    float* delta_s = lse_s + BR;    // [BR]

    const Head head = make_head(bias, bias_batch_stride, key_mask, heads, q_len, k_len, causal, scale);
    const long long bh = (long long)blockIdx.z * heads + blockIdx.y;
    q += bh * q_len * D;
    k += bh * k_len * D;
    v += bh * k_len * D;
    grad_out += bh * q_len * D;
    lse += bh * q_len;
    delta += bh * q_len;
    dk += bh * k_len * D;
    dv += bh * k_len * D;
    if (FUSED_DQ) dq += bh * q_len * D;
    float* dbias_bh = FUSED_DQ && dbias != nullptr
        ? dbias + blockIdx.z * bias_batch_stride + (long long)blockIdx.y * q_len * k_len : nullptr;
    const int rg = threadIdx.x / kColGroups, cg = threadIdx.x % kColGroups;
    const int j0 = blockIdx.x * BC;

    load_rows<BC, D>(k_s, k, j0, k_len);
    load_rows<BC, D>(v_s, v, j0, k_len);
    float dk_acc[RJ][DT] = {}, dv_acc[RJ][DT] = {};

    const int q_begin = causal ? (j0 / BR) * BR : 0;
    for (int i0 = q_begin; i0 < q_len; i0 += BR) {
        __syncthreads();
        load_rows<BR, D>(q_s, q, i0, q_len);
        load_rows<BR, D>(do_s, grad_out, i0, q_len);
        for (int e = threadIdx.x; e < BR; e += kThreads) {
            lse_s[e] = i0 + e < q_len ? lse[i0 + e] : positive_infinity();
            delta_s[e] = i0 + e < q_len ? delta[i0 + e] : 0.0f;
        }
        __syncthreads();

        float s[RJ][CI] = {}, dp[RJ][CI] = {};  // k_j · q_i and v_j · dO_i
        for (int d = 0; d < D; d += 4) {
            float4 k_reg[RJ], v_reg[RJ], q_reg[CI], do_reg[CI];
            #pragma unroll
            for (int r = 0; r < RJ; ++r) {
                k_reg[r] = load_float4(&k_s[(rg * RJ + r) * LD + d]);
                v_reg[r] = load_float4(&v_s[(rg * RJ + r) * LD + d]);
            }
            #pragma unroll
            for (int c = 0; c < CI; ++c) {
                q_reg[c] = load_float4(&q_s[(cg + c * kColGroups) * LD + d]);
                do_reg[c] = load_float4(&do_s[(cg + c * kColGroups) * LD + d]);
            }
            #pragma unroll
            for (int r = 0; r < RJ; ++r)
                #pragma unroll
                for (int c = 0; c < CI; ++c) {
                    s[r][c] += dot4(k_reg[r], q_reg[c]);
                    dp[r][c] += dot4(v_reg[r], do_reg[c]);
                }
        }
        // Pᵀ into t_s (and kept in s, in registers, for dS below).
        #pragma unroll
        for (int r = 0; r < RJ; ++r) {
            const int j = j0 + rg * RJ + r;
            #pragma unroll
            for (int c = 0; c < CI; ++c) {
                const int ii = cg + c * kColGroups, i = i0 + ii;
                s[r][c] = head.visible(i, j) ? __expf(head.score(s[r][c], i, j) - lse_s[ii]) : 0.0f;
                t_s[(rg * RJ + r) * LP + ii] = s[r][c];
            }
        }
        __syncthreads();
        for (int ii = 0; ii < BR; ++ii) {  // dv += Pᵀ dO
            float p_reg[RJ], do_reg[DT];
            #pragma unroll
            for (int r = 0; r < RJ; ++r) p_reg[r] = t_s[(rg * RJ + r) * LP + ii];
            #pragma unroll
            for (int dd = 0; dd < DT; ++dd) do_reg[dd] = do_s[ii * LD + cg + dd * kColGroups];
            #pragma unroll
            for (int r = 0; r < RJ; ++r)
                #pragma unroll
                for (int dd = 0; dd < DT; ++dd) dv_acc[r][dd] += p_reg[r] * do_reg[dd];
        }
#ifndef MINILLM_BROKEN_ATTENTION_SYNC
        __syncthreads();  // everyone has read Pᵀ before dSᵀ overwrites it (test_tsan.py removes this)
#endif
        #pragma unroll
        for (int r = 0; r < RJ; ++r)
            #pragma unroll
            for (int c = 0; c < CI; ++c) {
                const int ii = cg + c * kColGroups;
                const float ds = s[r][c] * (dp[r][c] - delta_s[ii]);
                t_s[(rg * RJ + r) * LP + ii] = ds;
                const int i = i0 + ii, j = j0 + rg * RJ + r;
                if (dbias_bh != nullptr && head.visible(i, j)) {  // each (i, j) is one thread's, once
                    float* dst = dbias_bh + (long long)i * k_len + j;
                    if (bias_batch_stride == 0) atomicAdd(dst, ds);  // shared by the batch
                    else *dst = ds;
                }
            }
        __syncthreads();
        for (int ii = 0; ii < BR; ++ii) {  // dk += dSᵀ Q
            float ds_reg[RJ], q_reg[DT];
            #pragma unroll
            for (int r = 0; r < RJ; ++r) ds_reg[r] = t_s[(rg * RJ + r) * LP + ii];
            #pragma unroll
            for (int dd = 0; dd < DT; ++dd) q_reg[dd] = q_s[ii * LD + cg + dd * kColGroups];
            #pragma unroll
            for (int r = 0; r < RJ; ++r)
                #pragma unroll
                for (int dd = 0; dd < DT; ++dd) dk_acc[r][dd] += ds_reg[r] * q_reg[dd];
        }
        if (FUSED_DQ) {  // dq[i0 + ii] += scale · Σ_jj dSᵀ[jj][ii] K[jj]: rows rg·RI + r, columns cg + 8·dd
            constexpr int RI = BR / kRowGroups;
            #pragma unroll
            for (int r = 0; r < RI; ++r) {
                const int ii = rg * RI + r;
                float acc[DT] = {};
                for (int jj = 0; jj < BC; ++jj) {
                    const float ds = t_s[jj * LP + ii];
                    #pragma unroll
                    for (int dd = 0; dd < DT; ++dd) acc[dd] += ds * k_s[jj * LD + cg + dd * kColGroups];
                }
                if (i0 + ii < q_len)
                    #pragma unroll
                    for (int dd = 0; dd < DT; ++dd)
                        atomicAdd(&dq[(long long)(i0 + ii) * D + cg + dd * kColGroups], scale * acc[dd]);
            }
        }
    }

    #pragma unroll
    for (int r = 0; r < RJ; ++r) {
        const int j = j0 + rg * RJ + r;
        if (j >= k_len) continue;
        #pragma unroll
        for (int dd = 0; dd < DT; ++dd) {
            dk[(long long)j * D + cg + dd * kColGroups] = scale * dk_acc[r][dd];
            dv[(long long)j * D + cg + dd * kColGroups] = dv_acc[r][dd];
        }
    }
}

// ================================================================================================
// Entry points: attention_{forward,backward_dq,backward_dkdv,backward_fa2}_d<D>_<BR>x<BC>. The launcher
// (minillm/fast/cuda.py, _ATTENTION_TILES) takes, for each kernel, the first tile size in its list
// whose shared memory fits the device; the smaller tiles exist for GPUs with less shared memory per
// block (99 KB on sm_86/sm_89, 64 KB on sm_75). D = 128 halves BC to stay in registers.
// __launch_bounds__(128, 2): the compiler must leave room for two blocks per SM (≤ 255 registers,
// never binding at 128 threads, but it states the occupancy the D = 128 dK/dV sizes were cut for).
// ================================================================================================
#define MINILLM_ATTENTION_KERNELS(D, BR, BC)                                                            \
    extern "C" __global__ void __launch_bounds__(kThreads, 2) attention_forward_d##D##_##BR##x##BC(     \
        const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,          \
        const float* __restrict__ bias, long long bias_batch_stride,                                    \
        const unsigned char* __restrict__ key_mask, float* __restrict__ out, float* __restrict__ lse,   \
        int heads, int q_len, int k_len, int causal, float scale) {                                     \
        attention_forward<D, BR, BC>(q, k, v, bias, bias_batch_stride, key_mask, out, lse, heads,       \
                                     q_len, k_len, causal, scale);                                      \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(kThreads, 2) attention_backward_dq_d##D##_##BR##x##BC( \
        const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,          \
        const float* __restrict__ bias, long long bias_batch_stride,                                    \
        const unsigned char* __restrict__ key_mask, const float* __restrict__ out,                      \
        const float* __restrict__ grad_out, const float* __restrict__ lse, float* __restrict__ delta,   \
        float* __restrict__ dq, float* dbias, int heads, int q_len, int k_len, int causal,              \
        float scale) {                                                                                  \
        attention_backward_dq<D, BR, BC>(q, k, v, bias, bias_batch_stride, key_mask, out, grad_out,     \
                                         lse, delta, dq, dbias, heads, q_len, k_len, causal, scale);    \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(kThreads, 2) attention_backward_dkdv_d##D##_##BR##x##BC(\
        const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,          \
        const float* __restrict__ bias, long long bias_batch_stride,                                    \
        const unsigned char* __restrict__ key_mask, const float* __restrict__ grad_out,                 \
        const float* __restrict__ lse, const float* __restrict__ delta, float* __restrict__ dk,         \
        float* __restrict__ dv, int heads, int q_len, int k_len, int causal, float scale) {             \
        attention_backward_dkdv<D, BR, BC, false>(q, k, v, bias, bias_batch_stride, key_mask, grad_out, \
                                                  lse, delta, dk, dv, nullptr, nullptr, heads, q_len,   \
                                                  k_len, causal, scale);                                \
    }                                                                                                   \
    extern "C" __global__ void __launch_bounds__(kThreads, 2) attention_backward_fa2_d##D##_##BR##x##BC(\
        const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,          \
        const float* __restrict__ bias, long long bias_batch_stride,                                    \
        const unsigned char* __restrict__ key_mask, const float* __restrict__ grad_out,                 \
        const float* __restrict__ lse, const float* __restrict__ delta, float* __restrict__ dk,         \
        float* __restrict__ dv, float* dq, float* dbias, int heads, int q_len, int k_len, int causal,   \
        float scale) {                                                                                  \
        attention_backward_dkdv<D, BR, BC, true>(q, k, v, bias, bias_batch_stride, key_mask, grad_out,  \
                                                 lse, delta, dk, dv, dq, dbias, heads, q_len, k_len,    \
                                                 causal, scale);                                        \
    }

MINILLM_ATTENTION_KERNELS(32, 64, 64)
MINILLM_ATTENTION_KERNELS(32, 32, 32)
MINILLM_ATTENTION_KERNELS(64, 64, 64)
MINILLM_ATTENTION_KERNELS(64, 32, 32)
MINILLM_ATTENTION_KERNELS(128, 64, 32)
MINILLM_ATTENTION_KERNELS(128, 32, 32)
