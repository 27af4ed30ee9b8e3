/*
 * codec.h -- the literal-only result encoding shared by the child's encoder
 * (csrc/python/zygote/zygote_module.c) and the host's decoder
 * (csrc/python/py_sandbox.c). Tags are one byte; integers and floats are
 * host byte order (both ends run on the same machine); lengths are u32.
 *
 *   'N' None  'T' True  'F' False  'E' Ellipsis
 *   'i' int64            'I' u32 n + n bytes little-endian two's complement
 *   'f' double           'c' two doubles (real, imag)
 *   's' u32 n + UTF-8 (surrogatepass)      'b' u32 n + bytes
 *   'l' list, 't' tuple, 'S' set, 'Z' frozenset: u32 count + items
 *   'd' dict: u32 count + key, value pairs
 *
 * Must not: describe anything but builtin literal types.
 */
#ifndef AZR_SANDBOX_CODEC_H
#define AZR_SANDBOX_CODEC_H

#define AZR_ENC_NONE 'N'
#define AZR_ENC_ELLIPSIS 'E'
#define AZR_ENC_TRUE 'T'
#define AZR_ENC_FALSE 'F'
#define AZR_ENC_INT 'i'
#define AZR_ENC_BIGINT 'I'
#define AZR_ENC_FLOAT 'f'
#define AZR_ENC_COMPLEX 'c'
#define AZR_ENC_STR 's'
#define AZR_ENC_BYTES 'b'
#define AZR_ENC_LIST 'l'
#define AZR_ENC_TUPLE 't'
#define AZR_ENC_SET 'S'
#define AZR_ENC_FROZENSET 'Z'
#define AZR_ENC_DICT 'd'

/* Containers nested deeper than this are an error (both ends check). */
#define AZR_ENC_MAX_DEPTH 100
/* Integers with more decimal digits than CPython's default str() limit are
 * an error: their canonical text could not be produced anyway. */
#define AZR_ENC_MAX_DIGITS 4300

#endif
