/*
 * utf8_check.h -- a strict UTF-8 check for the file readers of csrc/io/.
 *
 * Names in safetensors headers and GGUF files (tensor names, metadata keys)
 * must be UTF-8: the binding hands them to Python as str, and the reference
 * readers (`safetensors`, `gguf`) refuse anything else. The tokenizer layer
 * has its own copy in unicode.c; io sits below it and must not call up.
 *
 * Owns: one inline predicate. Must not: allocate, print or abort.
 */
#ifndef AZR_IO_UTF8_CHECK_H
#define AZR_IO_UTF8_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* 1 if s[0..n) is well-formed UTF-8 (no overlongs, no surrogates, nothing
 * above U+10FFFF), else 0. */
static inline int azr_io_utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }
        else if (c >= 0xE1 && c <= 0xEC) need = 2;
        else if (c == 0xED) { need = 2; hi = 0x9F; }
        else if (c >= 0xEE && c <= 0xEF) need = 2;
        else if (c == 0xF0) { need = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) { need = 3; hi = 0x8F; }
        else return 0;
        if (n - i <= (size_t)need) return 0;
        for (int k = 1; k <= need; k++) {
            uint8_t b = s[i + (size_t)k];
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
        }
        i += (size_t)need + 1;
    }
    return 1;
}

#endif /* AZR_IO_UTF8_CHECK_H */
