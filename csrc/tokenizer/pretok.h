/*
 * pretok.h -- pre-tokenizer scanners: hand-written equivalents of the split
 * regexes of Qwen2, Llama-3 and GPT-2 (HF ByteLevel) and of HF's Digits.
 *
 * Owns: splitting valid UTF-8 into pieces exactly as the regexes would with
 * leftmost-first alternation and backtracking (\s+(?!\S), contractions).
 * Must not: allocate, know vocabularies, print, abort or exit.
 */
#ifndef AZR_TOK_PRETOK_H
#define AZR_TOK_PRETOK_H

#include <stddef.h>
#include <stdint.h>

/* Returns the end (exclusive) of the piece that starts at byte i of s[0..n),
 * i < n, for the given stage (AZR_PRE_QWEN2, AZR_PRE_LLAMA3, AZR_PRE_GPT2,
 * AZR_PRE_DIGITS, AZR_PRE_DIGITS_EACH). Always > i. */
size_t azr_pretok_next(int stage, const uint8_t *s, size_t n, size_t i);

#endif
