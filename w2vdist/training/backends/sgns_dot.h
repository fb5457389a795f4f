/*
 * The dot product of sgns_cpu.c's inner loop, per instruction set (included by it).
 *
 * GCC adds up the lanes of a vectorised reduction one at a time, which costs more than the
 * products at word2vec sizes, so x86 gets explicit vectors and a tree sum.
 */
#ifndef W2VDIST_SGNS_DOT_H
#define W2VDIST_SGNS_DOT_H

#include <stdint.h>

#if defined(__AVX512F__)
#include <immintrin.h>
static inline float dot(const float *a, const float *b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + c), _mm512_loadu_ps(b + c), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + c + 16), _mm512_loadu_ps(b + c + 16), s1);
  }
  for (; c < n; c += 16) {
    const __mmask16 m = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + c), _mm512_maskz_loadu_ps(m, b + c), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static inline float dot(const float *a, const float *b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 8), _mm256_loadu_ps(b + c + 8), s1);
  }
  for (; c + 8 <= n; c += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
  const __m256 s = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float f = _mm_cvtss_f32(h);
  for (; c < n; c++) f += a[c] * b[c];
  return f;
}
#else
static inline float dot(const float *a, const float *b, int64_t n) {
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  int64_t c = 0;
  for (; c + 4 <= n; c += 4) {
    s0 += a[c] * b[c];
    s1 += a[c + 1] * b[c + 1];
    s2 += a[c + 2] * b[c + 2];
    s3 += a[c + 3] * b[c + 3];
  }
  for (; c < n; c++) s0 += a[c] * b[c];
  return (s0 + s1) + (s2 + s3);
}
#endif

#endif
