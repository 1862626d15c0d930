// The CPU-emulated attention kernels, exported for ctypes (see cuda_emu.h and tests/kernels/emulator.py).
#include "cuda_emu.h"
#include "../attention.cu"

#define EMU_EXPORT_ATTENTION(D) \
    EMU_EXPORT(attention_forward_d##D) EMU_EXPORT(attention_backward_dq_d##D) EMU_EXPORT(attention_backward_dkdv_d##D)

EMU_EXPORT_ATTENTION(32)
EMU_EXPORT_ATTENTION(64)
EMU_EXPORT_ATTENTION(128)
