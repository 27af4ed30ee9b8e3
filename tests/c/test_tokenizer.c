/* test_tokenizer.c -- the C tokenizer under sanitizers: hand-checked BPE merges
 * on a tiny byte-level vocabulary, heap merger == array merger on random text,
 * SentencePiece byte fallback / unk fusing / decoder strip, added tokens and
 * allow_special, NFC and UTF-8 helpers, batch encoding, and error messages. */
#include <string.h>

#include "azr_test.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

/* GPT-2 byte alphabet: byte -> UTF-8 of its stand-in character. */
static int byte_char(int b, char *out) {
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    uint32_t cp = (uint32_t)b;
    if (!printable) {
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) k++;
        cp = 256u + (uint32_t)k;
    }
    return azr_utf8_encode(cp, (uint8_t *)out);
}

static azr_tokenizer *byte_level(int heap_threshold, int pre) {
    azr_tok_config c;
    memset(&c, 0, sizeof(c));
    c.model = AZR_TOK_MODEL_BYTE_LEVEL;
    c.n_pre = 1;
    c.pre[0] = pre;
    c.unk_id = -1;
    c.dec_byte_level = 1;
    c.bpe_heap_threshold = heap_threshold;
    azr_tokenizer *t = NULL;
    if (azr_tok_create(&t, &c)) return NULL;
    char buf[8];
    for (int b = 0; b < 256; b++) {
        int n = byte_char(b, buf);
        if (azr_tok_add_token(t, buf, (size_t)n, b)) return NULL;
    }
    /* 256: he, 257: Ġt (U+0120 't'), 258: Ġthe, 259: ll, 260: llo, 261: aa, 262: aaaa */
    const char *toks[] = {"he", "\xC4\xA0t", "\xC4\xA0the", "ll", "llo", "aa", "aaaa"};
    for (int i = 0; i < 7; i++)
        if (azr_tok_add_token(t, toks[i], strlen(toks[i]), 256 + i)) return NULL;
    const char *m[][2] = {{"h", "e"}, {"\xC4\xA0", "t"}, {"\xC4\xA0t", "he"}, {"l", "l"}, {"ll", "o"},
                          {"a", "a"}, {"aa", "aa"}};
    for (int i = 0; i < 7; i++)
        if (azr_tok_add_merge(t, m[i][0], strlen(m[i][0]), m[i][1], strlen(m[i][1]))) return NULL;
    if (azr_tok_add_added(t, "<|x|>", 5, 300, AZR_ADDED_SPECIAL)) return NULL;
    if (azr_tok_add_added(t, "<y>", 3, 301, 0)) return NULL;
    if (azr_tok_finalize(t)) return NULL;
    return t;
}

static int ids_eq(const azr_tok_ids *a, const int32_t *want, size_t n) {
    if (a->len != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (a->ids[i] != want[i]) return 0;
    return 1;
}

static void enc(const azr_tokenizer *t, const char *s, int allow, azr_tok_ids *out) {
    out->len = 0;
    CHECK(azr_tok_encode(t, s, strlen(s), allow, out) == AZR_OK);
}

int main(void) {
    azr_tokenizer *t = byte_level(0, AZR_PRE_QWEN2);
    CHECK(t != NULL);
    if (!t) { fprintf(stderr, "%s\n", azr_last_error()); TEST_MAIN_END(); }
    azr_tok_ids ids = {0};

    /* "hello" -> h e l l o -> he l l o -> he ll o -> he llo ; " the" -> Ġ t he -> Ġt he -> Ġthe */
    enc(t, "hello the", 0, &ids);
    int32_t w1[] = {256, 260, 258};
    CHECK(ids_eq(&ids, w1, 3));
    /* leftmost-first among equal ranks: aaaaa -> aa a a a -> aa aa a -> aaaa a */
    enc(t, "aaaaa", 0, &ids);
    int32_t w2[] = {262, 'a'};
    CHECK(ids_eq(&ids, w2, 2));
    /* digits one per piece (Qwen2), spaces: "  1" -> " " " " "1"? \s+(?!\S) keeps one space back */
    enc(t, "12", 0, &ids);
    int32_t w3[] = {'1', '2'};
    CHECK(ids_eq(&ids, w3, 2));

    /* special tokens only with allow_special; non-special added tokens always */
    enc(t, "a<|x|>b", 0, &ids);
    CHECK(ids.len == 7 && ids.ids[0] == 'a');
    enc(t, "a<|x|>b", 1, &ids);
    int32_t w4[] = {'a', 300, 'b'};
    CHECK(ids_eq(&ids, w4, 3));
    enc(t, "a<y>b", 0, &ids);
    int32_t w5[] = {'a', 301, 'b'};
    CHECK(ids_eq(&ids, w5, 3));

    /* decode round trip, incl. a split UTF-8 character left as raw bytes */
    const char *text = "hello the \xE4\xB8\x96 aaaaa<y>";
    enc(t, text, 0, &ids);
    uint8_t *out = NULL;
    size_t olen = 0, ocap = 0;
    CHECK(azr_tok_decode(t, ids.ids, ids.len, 0, &out, &olen, &ocap) == AZR_OK);
    CHECK(olen == strlen(text) && memcmp(out, text, olen) == 0);
    int32_t bad_id = 5000;
    CHECK(azr_tok_decode(t, &bad_id, 1, 0, &out, &olen, &ocap) == AZR_ERR_INVALID);
    CHECK(strstr(azr_last_error(), "5000") != NULL);
    free(out);
    out = NULL;
    olen = ocap = 0;

    /* invalid UTF-8 is refused */
    CHECK(azr_tok_encode(t, "\xFF\xFE", 2, 0, &ids) == AZR_ERR_INVALID);

    /* heap merger == array merger on random text; batch == single */
    azr_tokenizer *th = byte_level(1, AZR_PRE_GPT2), *ta = byte_level(100000, AZR_PRE_GPT2);
    CHECK(th && ta);
    uint32_t x = 12345;
    char texts[64][200];
    const char *texts_p[64];
    size_t lens[64];
    azr_tok_ids outs[64];
    memset(outs, 0, sizeof(outs));
    const char alphabet[] = "aahello the ll  \n\t'sxyz12";
    for (int k = 0; k < 64; k++) {
        int n = 1 + k * 3;
        for (int i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            texts[k][i] = alphabet[(x >> 16) % (sizeof(alphabet) - 1)];
        }
        texts[k][n] = 0;
        texts_p[k] = texts[k];
        lens[k] = (size_t)n;
        azr_tok_ids a = {0}, b = {0};
        CHECK(azr_tok_encode(th, texts[k], (size_t)n, 0, &a) == AZR_OK);
        CHECK(azr_tok_encode(ta, texts[k], (size_t)n, 0, &b) == AZR_OK);
        CHECK(a.len == b.len && (a.len == 0 || memcmp(a.ids, b.ids, a.len * sizeof(int32_t)) == 0));
        free(a.ids);
        free(b.ids);
    }
    CHECK(azr_tok_encode_batch(ta, texts_p, lens, 64, 0, outs) == AZR_OK);
    for (int k = 0; k < 64; k++) {
        azr_tok_ids s = {0};
        CHECK(azr_tok_encode(ta, texts[k], lens[k], 0, &s) == AZR_OK);
        CHECK(s.len == outs[k].len && memcmp(s.ids, outs[k].ids, s.len * sizeof(int32_t)) == 0);
        free(s.ids);
        free(outs[k].ids);
    }
    azr_tok_free(th);
    azr_tok_free(ta);

    /* errors name the problem */
    {
        azr_tok_config c;
        memset(&c, 0, sizeof(c));
        c.unk_id = -1;
        azr_tokenizer *e = NULL;
        CHECK(azr_tok_create(&e, &c) == AZR_OK);
        CHECK(azr_tok_add_token(e, "a", 1, 0) == AZR_OK);
        CHECK(azr_tok_add_token(e, "b", 1, 0) == AZR_ERR_FORMAT);
        CHECK(strstr(azr_last_error(), "id 0 is used by two tokens") != NULL);
        CHECK(azr_tok_add_merge(e, "a", 1, "zz", 2) == AZR_ERR_FORMAT);
        CHECK(strstr(azr_last_error(), "token 'zz' is not in the vocabulary") != NULL);
        CHECK(azr_tok_add_merge(e, "a", 1, "a", 1) == AZR_ERR_FORMAT);
        CHECK(strstr(azr_last_error(), "merged token 'aa'") != NULL);
        CHECK(azr_tok_encode(e, "a", 1, 0, &ids) == AZR_ERR_STATE);
        azr_tok_free(e);
    }

    /* added tokens that disagree with the vocabulary or each other (issue #24) */
    {
        static const struct { const char *c1; int id1; const char *c2; int id2; const char *msg; } bad[] = {
            {"<x>", 0, NULL, 0, "token '<x>' has id 0, which the vocabulary gives to 'a'"},
            {"b", 2, NULL, 0, "token 'b' has id 2, but the vocabulary gives it id 1"},
            {"<x>", 5, "<y>", 5, "id 5 is given to two tokens"},
            {"<x>", 5, "<x>", 6, "token '<x>' appears twice, with ids 5 and 6"},
            {"a", 0, "<x>", 5, NULL}, /* fine: an added token on its own vocabulary entry */
            {"<x>", 5, "<x>", 5, NULL}, /* fine: an exact duplicate */
        };
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            azr_tok_config c;
            memset(&c, 0, sizeof(c));
            c.unk_id = -1;
            azr_tokenizer *e = NULL;
            CHECK(azr_tok_create(&e, &c) == AZR_OK);
            CHECK(azr_tok_add_token(e, "a", 1, 0) == AZR_OK && azr_tok_add_token(e, "b", 1, 1) == AZR_OK);
            CHECK(azr_tok_add_added(e, bad[k].c1, strlen(bad[k].c1), bad[k].id1, AZR_ADDED_SPECIAL) == AZR_OK);
            if (bad[k].c2)
                CHECK(azr_tok_add_added(e, bad[k].c2, strlen(bad[k].c2), bad[k].id2, 0) == AZR_OK);
            azr_status st = azr_tok_finalize(e);
            if (bad[k].msg)
                CHECK(st == AZR_ERR_FORMAT && strstr(azr_last_error(), bad[k].msg) != NULL);
            else
                CHECK(st == AZR_OK);
            azr_tok_free(e);
        }
    }

    /* SentencePiece-style: Prepend/Replace U+2581, byte fallback, unk fusing, Strip */
    {
        azr_tok_config c;
        memset(&c, 0, sizeof(c));
        c.model = AZR_TOK_MODEL_SPM;
        c.n_norm = 2;
        c.norm[0] = (azr_tok_norm_step){AZR_NORM_PREPEND, "\xE2\x96\x81", 3, NULL, 0};
        c.norm[1] = (azr_tok_norm_step){AZR_NORM_REPLACE, " ", 1, "\xE2\x96\x81", 3};
        c.byte_fallback = 1;
        c.fuse_unk = 1;
        c.unk_id = 0;
        c.dec_replace_from = "\xE2\x96\x81";
        c.dec_replace_from_len = 3;
        c.dec_replace_to = " ";
        c.dec_replace_to_len = 1;
        c.dec_byte_fallback = 1;
        c.dec_strip_start = 1;
        azr_tokenizer *s = NULL;
        CHECK(azr_tok_create(&s, &c) == AZR_OK);
        CHECK(azr_tok_add_token(s, "<unk>", 5, 0) == AZR_OK);
        char name[8];
        for (int b = 0; b < 256; b++) {
            snprintf(name, sizeof(name), "<0x%02X>", b);
            CHECK(azr_tok_add_token(s, name, 6, 1 + b) == AZR_OK);
        }
        CHECK(azr_tok_add_token(s, "\xE2\x96\x81", 3, 257) == AZR_OK);
        CHECK(azr_tok_add_token(s, "a", 1, 258) == AZR_OK);
        CHECK(azr_tok_add_token(s, "\xE2\x96\x81" "a", 4, 259) == AZR_OK);
        CHECK(azr_tok_add_merge(s, "\xE2\x96\x81", 3, "a", 1) == AZR_OK);
        CHECK(azr_tok_finalize(s) == AZR_OK);
        enc(s, "a c", 0, &ids);   /* ▁a ▁ <0x63> */
        int32_t w6[] = {259, 257, 1 + 'c'};
        CHECK(ids_eq(&ids, w6, 3));
        olen = 0;
        CHECK(azr_tok_decode(s, ids.ids, ids.len, 0, &out, &olen, &ocap) == AZR_OK);
        CHECK(olen == 3 && memcmp(out, "a c", 3) == 0);
        /* a lone continuation byte token decodes to U+FFFD */
        int32_t lone[] = {259, 1 + 0x80};
        olen = 0;
        CHECK(azr_tok_decode(s, lone, 2, 0, &out, &olen, &ocap) == AZR_OK);
        CHECK(olen == 4 && memcmp(out, "a\xEF\xBF\xBD", 4) == 0);
        free(out);
        out = NULL;
        olen = ocap = 0;
        azr_tok_free(s);
    }

    /* Unicode helpers */
    {
        const char *in = "e\xCC\x81\xCC\xA3 \xE1\x84\x80\xE1\x85\xA1";   /* e + U+0301 + U+0323, Hangul L V */
        uint8_t *nb = NULL;
        size_t cap = 0, len = 0;
        CHECK(!azr_nfc_quick_check((const uint8_t *)in, strlen(in)));
        CHECK(azr_nfc((const uint8_t *)in, strlen(in), &nb, &cap, &len) == AZR_OK);
        /* -> U+1EB9 (e with dot below) + U+0301, space, U+AC00 */
        const char *want = "\xE1\xBA\xB9\xCC\x81 \xEA\xB0\x80";
        CHECK(len == strlen(want) && memcmp(nb, want, len) == 0);
        free(nb);
        CHECK(azr_utf8_complete_prefix((const uint8_t *)"ab\xE4\xB8", 4) == 2);
        CHECK(azr_utf8_complete_prefix((const uint8_t *)"ab\xE4\xB8\x96", 5) == 5);
        CHECK(azr_utf8_valid((const uint8_t *)"\xED\xA0\x80", 3) == 0);   /* surrogate */
        CHECK(azr_utf8_valid((const uint8_t *)"\xC0\x80", 2) == 0);       /* overlong */
    }

    free(ids.ids);
    azr_tok_free(t);
    azr_tok_free(NULL);
    TEST_MAIN_END();
}
