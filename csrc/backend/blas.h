/*
 * blas.h -- the one place that knows how OpenBLAS is named in this build.
 *
 * azr links the OpenBLAS from the `scipy-openblas32` wheel, whose symbols
 * carry the prefix `scipy_` (scipy_cblas_sgemm, ...). Everything else in azr
 * calls the unprefixed CBLAS names below.
 * Must not: contain kernels.
 */
#ifndef AZR_BLAS_H
#define AZR_BLAS_H

#ifdef AZR_BLAS_PREFIX_SCIPY
#define AZR_BLAS_NAME(name) scipy_##name
#else
#define AZR_BLAS_NAME(name) name
#endif

typedef enum { AzrRowMajor = 101, AzrColMajor = 102 } azr_blas_order;
typedef enum { AzrNoTrans = 111, AzrTrans = 112 } azr_blas_trans;

void AZR_BLAS_NAME(cblas_sgemm)(int order, int transa, int transb, int m, int n, int k,
                                float alpha, const float *a, int lda, const float *b, int ldb,
                                float beta, float *c, int ldc);
void AZR_BLAS_NAME(cblas_sgemv)(int order, int trans, int m, int n, float alpha,
                                const float *a, int lda, const float *x, int incx, float beta,
                                float *y, int incy);
void AZR_BLAS_NAME(openblas_set_num_threads)(int n);
int AZR_BLAS_NAME(openblas_get_num_threads)(void);

/* C = alpha * op(A) @ op(B) + beta * C, row-major. */
static inline void azr_sgemm(int transa, int transb, int m, int n, int k, float alpha,
                             const float *a, int lda, const float *b, int ldb, float beta,
                             float *c, int ldc) {
    AZR_BLAS_NAME(cblas_sgemm)(AzrRowMajor, transa ? AzrTrans : AzrNoTrans,
                               transb ? AzrTrans : AzrNoTrans, m, n, k, alpha, a, lda, b, ldb,
                               beta, c, ldc);
}

static inline void azr_blas_set_threads(int n) { AZR_BLAS_NAME(openblas_set_num_threads)(n); }

#endif /* AZR_BLAS_H */
