/*
 * tokenizer.h -- byte-level BPE (GPT-2 / Qwen2 / Llama-3 style) and
 * SentencePiece-style BPE (byte fallback, fuse_unk), giving the same ids as
 * Hugging Face `tokenizers` for the configurations listed in azr_tok_config.
 *
 * Owns: the vocabulary and merge tables, added/special token matching, the
 * normaliser steps (NFC, Prepend, Replace), the pre-tokenizer scanners
 * (hand-written equivalents of the regexes, over the generated Unicode tables),
 * BPE, decoding, and parallel batch encoding.
 * Must not: parse JSON or files (the Python layer reads tokenizer.json and passes
 * plain strings), print, abort or exit.
 *
 * Life cycle: azr_tok_create -> azr_tok_add_token* -> azr_tok_add_merge* ->
 * azr_tok_add_added* -> azr_tok_finalize -> encode/decode (thread-safe) ->
 * azr_tok_free.
 */
#ifndef AZR_TOKENIZER_H
#define AZR_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/azr_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { AZR_TOK_MODEL_BYTE_LEVEL = 0, AZR_TOK_MODEL_SPM = 1 } azr_tok_model_kind;

/* Pre-tokenizer stages, applied in order, each splitting every piece of the
 * previous stage (as HF's Sequence does). */
typedef enum {
    AZR_PRE_QWEN2 = 1,      /* Split(Qwen2 regex: \p{N} one per piece), Isolated */
    AZR_PRE_LLAMA3 = 2,     /* Split(Llama-3 regex: \p{N}{1,3}), Isolated        */
    AZR_PRE_GPT2 = 3,       /* ByteLevel(use_regex=true): the GPT-2 regex        */
    AZR_PRE_DIGITS = 4,     /* Digits(individual_digits=false)                   */
    AZR_PRE_DIGITS_EACH = 5,/* Digits(individual_digits=true)                    */
    AZR_PRE_PREFIX_SPACE = 6,/* ByteLevel add_prefix_space: prepend ' ' unless the piece starts with one */
    AZR_PRE_METASPACE = 7   /* Metaspace(U+2581): ' ' -> U+2581, prepend per metaspace_prepend, split if metaspace_split */
} azr_tok_pre_stage;

/* Normaliser steps, applied in order to each text segment between added tokens. */
typedef enum { AZR_NORM_NFC = 1, AZR_NORM_PREPEND = 2, AZR_NORM_REPLACE = 3 } azr_tok_norm_kind;

#define AZR_TOK_MAX_STAGES 8

typedef struct {
    int kind;                 /* azr_tok_norm_kind */
    const char *a; size_t a_len;   /* PREPEND: text; REPLACE: pattern (non-empty) */
    const char *b; size_t b_len;   /* REPLACE: replacement                      */
} azr_tok_norm_step;

typedef struct {
    azr_tok_model_kind model;
    int n_pre;                          /* number of pre-tokenizer stages (0: whole segment is one word) */
    int pre[AZR_TOK_MAX_STAGES];        /* azr_tok_pre_stage */
    int n_norm;
    azr_tok_norm_step norm[AZR_TOK_MAX_STAGES];
    int ignore_merges;                  /* a piece that is itself in the vocab is emitted as is */
    int byte_fallback;                  /* unknown characters -> <0xXX> tokens                  */
    int fuse_unk;                       /* consecutive unknown characters -> one unk token      */
    int32_t unk_id;                     /* -1: none (unknown characters are dropped, as HF does) */
    /* Decoder: byte-level (token text is mapped back to bytes) or a chain of
     * Replace(dec_replace_from -> dec_replace_to), ByteFallback, Fuse, Strip. */
    int dec_byte_level;
    const char *dec_replace_from; size_t dec_replace_from_len;   /* NULL: no Replace */
    const char *dec_replace_to; size_t dec_replace_to_len;
    int dec_byte_fallback;
    int dec_strip_start;                /* leading ' ' characters to strip from the fused text */
    int bpe_heap_threshold;             /* words with more symbols use the heap merger; 0 = default */
    int metaspace_prepend;              /* Metaspace prepend_scheme: 0 never, 1 first, 2 always */
    int metaspace_split;                /* Metaspace split: pieces start at each U+2581 (MergedWithNext) */
} azr_tok_config;

enum { AZR_ADDED_SPECIAL = 1, AZR_ADDED_LSTRIP = 2, AZR_ADDED_RSTRIP = 4,
       AZR_ADDED_SINGLE_WORD = 8, AZR_ADDED_NORMALIZED = 16 };

typedef struct azr_tokenizer azr_tokenizer;

/* Create an empty tokenizer with a copy of `cfg` (strings are copied). On
 * NULL arguments returns AZR_ERR_INVALID; on allocation failure AZR_ERR_NOMEM. */
azr_status azr_tok_create(azr_tokenizer **out, const azr_tok_config *cfg);

/* Add a vocabulary entry: `text` is the token as written in tokenizer.json
 * (byte-level tokens in the GPT-2 byte alphabet, SentencePiece tokens with U+2581).
 * Fails with AZR_ERR_FORMAT if id < 0, the id is already used, or the text is
 * empty/not UTF-8; the message names the token. */
azr_status azr_tok_add_token(azr_tokenizer *t, const char *text, size_t len, int32_t id);

/* Add the next merge (rank = number of merges added before). Fails with
 * AZR_ERR_FORMAT naming the merge if either side or their concatenation is not
 * in the vocabulary. */
azr_status azr_tok_add_merge(azr_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen);

/* Add an added/special token with AZR_ADDED_* flags. Empty content or a
 * negative id is AZR_ERR_FORMAT. */
azr_status azr_tok_add_added(azr_tokenizer *t, const char *content, size_t len, int32_t id, int flags);

/* Build the lookup structures. Must be called once after all adds; encode and
 * decode before it return AZR_ERR_STATE. AZR_ERR_FORMAT, naming the token and
 * the id, when an added token disagrees with the vocabulary (its id holds a
 * vocabulary token with other text, or its text is a vocabulary token with
 * another id) or with another added token (one id, two texts; one text, two
 * ids): Hugging Face `tokenizers` would renumber such a token. */
azr_status azr_tok_finalize(azr_tokenizer *t);

/* Free everything. NULL is a no-op. */
void azr_tok_free(azr_tokenizer *t);

/* Growable id list. Free ids with free(). */
typedef struct { int32_t *ids; size_t len, cap; } azr_tok_ids;

/* Encode UTF-8 text[0..n) (n == 0 gives no ids; text may be NULL then),
 * appending ids to *out. allow_special: whether special added tokens are
 * matched in the text (non-special added tokens always are, as in HF).
 * Fails with AZR_ERR_INVALID for invalid UTF-8, AZR_ERR_NOMEM, AZR_ERR_STATE
 * if not finalized. Thread-safe. */
azr_status azr_tok_encode(const azr_tokenizer *t, const char *text, size_t n, int allow_special,
                          azr_tok_ids *out);

/* Encode n_texts texts in parallel (OpenMP). outs[i] receives text i's ids
 * (zero-initialise them). On failure returns the first failing status; every
 * outs[i] must still be freed. */
azr_status azr_tok_encode_batch(const azr_tokenizer *t, const char *const *texts, const size_t *lens,
                                size_t n_texts, int allow_special, azr_tok_ids *outs);

/* Decode ids to UTF-8 bytes appended to the buffer (out, out_len, out_cap) (realloc'ed;
 * free with free()). Invalid UTF-8 from byte-level tokens is left as raw bytes
 * for the caller's lossy decoding (byte-level); ByteFallback groups that are
 * not valid UTF-8 become U+FFFD per byte, as HF does. An id outside the
 * vocabulary is AZR_ERR_INVALID naming it. skip_special: drop special tokens. */
azr_status azr_tok_decode(const azr_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                          uint8_t **out, size_t *out_len, size_t *out_cap);

/* Decoded bytes of one id (byte-level: its bytes; SentencePiece: Replace
 * applied), and whether it is a byte-fallback token (*byte_value = 0..255) or
 * not (-1). Returns NULL for an unknown id. */
const uint8_t *azr_tok_token_bytes(const azr_tokenizer *t, int32_t id, size_t *len, int *byte_value,
                                   int *is_special);

/* Number of ids (max id + 1). */
int32_t azr_tok_n_ids(const azr_tokenizer *t);

/* Split text into pre-tokenizer pieces (for tests): calls fn(ctx, start, end)
 * with byte offsets into the text for each piece, after running only the
 * pre-tokenizer stages (no normaliser, no added tokens). Stages that prepend a
 * space are skipped. Returns AZR_ERR_INVALID for invalid UTF-8. */
azr_status azr_tok_pretokenize(const azr_tokenizer *t, const char *text, size_t n,
                               void (*fn)(void *ctx, size_t start, size_t end), void *ctx);

/* The Unicode version of the generated tables (e.g. "14.0.0"). */
const char *azr_unicode_version_str(void);

#ifdef __cplusplus
}
#endif
#endif /* AZR_TOKENIZER_H */
