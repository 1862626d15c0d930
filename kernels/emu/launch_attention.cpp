// The CPU-emulated attention kernels, exported for ctypes (see cuda_emu.h and tests/kernels/emulator.py).
#include "cuda_emu.h"
#include "../attention.cu"

// One line per MINILLM_ATTENTION_KERNELS line at the end of attention.cu.
#define EMU_EXPORT_ATTENTION(D, BR, BC)                                                   \
    EMU_EXPORT(attention_forward_d##D##_##BR##x##BC)                                      \
    EMU_EXPORT(attention_backward_dq_d##D##_##BR##x##BC)                                  \
    EMU_EXPORT(attention_backward_dkdv_d##D##_##BR##x##BC)                                \
    EMU_EXPORT(attention_backward_fa2_d##D##_##BR##x##BC)

EMU_EXPORT_ATTENTION(32, 64, 64)
EMU_EXPORT_ATTENTION(32, 32, 32)
EMU_EXPORT_ATTENTION(64, 64, 64)
EMU_EXPORT_ATTENTION(64, 32, 32)
EMU_EXPORT_ATTENTION(128, 64, 32)
EMU_EXPORT_ATTENTION(128, 32, 32)
