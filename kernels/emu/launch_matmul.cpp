// The CPU-emulated matmul kernels, exported for ctypes (see cuda_emu.h and tests/kernels/emulator.py).
#include "cuda_emu.h"
#include "../matmul.cu"

#define EMU_EXPORT_MATMUL(version) \
    EMU_EXPORT(matmul_##version##_nn) EMU_EXPORT(matmul_##version##_nt) \
    EMU_EXPORT(matmul_##version##_tn) EMU_EXPORT(matmul_##version##_tt)

EMU_EXPORT_MATMUL(naive)
EMU_EXPORT_MATMUL(tiled)
EMU_EXPORT_MATMUL(blocked)
EMU_EXPORT_MATMUL(warptiled)
EMU_EXPORT_MATMUL(double_buffered)
