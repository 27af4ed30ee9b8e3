/*
 * cpu.c -- what the CPU can do, found at run time (cpuid and the OS's
 * saved-state mask), and which instruction-set level the kernels use.
 *
 * Owns: azr_cpu_detect, the ISA level (azr_isa_get / azr_isa_set).
 * Must not: run any instruction the detection has not proven available.
 */
#include "cpu.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define AZR_X86 1
#endif

static azr_cpu_features g_cpu;
static int g_detected;
static int g_isa = -1; /* -1: not chosen yet (the best available) */

#ifdef AZR_X86
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static void detect(void) {
    memset(&g_cpu, 0, sizeof g_cpu);
    strcpy(g_cpu.brand, "unknown");
#ifdef AZR_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    unsigned max_leaf = a;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1;
    g_cpu.fma = (c >> 12) & 1;
    int avx = (c >> 28) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int os_ymm = (xcr0 & 0x6) == 0x6;
    int os_zmm = os_ymm && (xcr0 & 0xE0) == 0xE0;      /* opmask, ZMM_Hi256, Hi16_ZMM */
    int os_tile = (xcr0 & 0x60000) == 0x60000;          /* XTILECFG, XTILEDATA */
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        g_cpu.avx2 = avx && os_ymm && ((b >> 5) & 1);
        g_cpu.avx512f = os_zmm && ((b >> 16) & 1);
        g_cpu.avx512bw = os_zmm && ((b >> 30) & 1);
        g_cpu.avx512vl = os_zmm && ((b >> 31) & 1);
        g_cpu.amx_bf16 = os_tile && ((d >> 22) & 1);
        g_cpu.amx_tile = os_tile && ((d >> 24) & 1);
        unsigned sub = a;
        if (sub >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            g_cpu.avx512_bf16 = os_zmm && ((a >> 5) & 1);
        }
    }
    g_cpu.fma = g_cpu.fma && os_ymm;
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
        unsigned regs[12];
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                        &regs[4 * i + 3]);
        memcpy(g_cpu.brand, regs, 48);
        g_cpu.brand[48] = 0;
        /* trim the padding some vendors put around the name */
        char *s = g_cpu.brand;
        while (*s == ' ') s++;
        memmove(g_cpu.brand, s, strlen(s) + 1);
        size_t n = strlen(g_cpu.brand);
        while (n && g_cpu.brand[n - 1] == ' ') g_cpu.brand[--n] = 0;
    }
#endif
}

const azr_cpu_features *azr_cpu_detect(void) {
    if (!g_detected) { /* idempotent: a race writes the same values */
        detect();
        g_detected = 1;
    }
    return &g_cpu;
}

int azr_isa_available(void) {
    const azr_cpu_features *f = azr_cpu_detect();
    if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512_bf16) return AZR_ISA_AVX512_BF16;
    return AZR_ISA_FP32;
}

int azr_isa_get(void) { return g_isa < 0 ? azr_isa_available() : g_isa; }

azr_status azr_isa_set(int level) {
    if (level < 0) {
        g_isa = -1;
        return AZR_OK;
    }
    if (level > AZR_ISA_AVX512_BF16)
        return azr_set_error(AZR_ERR_INVALID, "unknown instruction-set level %d", level);
    if (level > azr_isa_available())
        return azr_set_error(AZR_ERR_UNSUPPORTED,
                             "this CPU (%s) does not have %s; the best level here is %s",
                             azr_cpu_detect()->brand, azr_isa_name(level),
                             azr_isa_name(azr_isa_available()));
    g_isa = level;
    return AZR_OK;
}

const char *azr_isa_name(int level) {
    switch (level) {
    case AZR_ISA_FP32: return "fp32";
    case AZR_ISA_AVX512_BF16: return "avx512_bf16";
    default: return "unknown";
    }
}
