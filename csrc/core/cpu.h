/*
 * cpu.h -- CPU features found at run time, and the instruction-set level
 * the kernels may use (the build is for the machine it runs on, but the
 * bf16 kernels are compiled for their own target and run only when the
 * CPU and the OS support them; every x86-64 runs the fp32 level).
 *
 * Levels, in order: AZR_ISA_FP32 (OpenBLAS sgemm and the compiler's own
 * vector code), AZR_ISA_AVX512_BF16 (vdpbf16ps: bf16 pairs, fp32
 * accumulation; Zen 4/5, Cooper Lake, Sapphire Rapids and later). AMX is
 * reported but has no kernel yet.
 */
#ifndef AZR_CPU_H
#define AZR_CPU_H

#include "azr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char brand[49];
    int avx2, fma, avx512f, avx512bw, avx512vl, avx512_bf16;
    int amx_tile, amx_bf16; /* hardware and OS state enabled (the kernel still asks per process) */
} azr_cpu_features;

enum { AZR_ISA_FP32 = 0, AZR_ISA_AVX512_BF16 = 1 };

/* The features, detected once (cpuid; AVX-512 and AMX only when the OS
 * saves their state, XCR0). */
const azr_cpu_features *azr_cpu_detect(void);
/* The highest level this machine supports. */
int azr_isa_available(void);
/* The level in use: the one set, else the highest available. */
int azr_isa_get(void);
/* Use at most `level` (< 0: back to the highest available). Errors: an
 * unknown level (INVALID); one this CPU lacks (UNSUPPORTED, naming it). */
azr_status azr_isa_set(int level);
const char *azr_isa_name(int level);

#ifdef __cplusplus
}
#endif
#endif /* AZR_CPU_H */
