/* One row times the 262144 x 1536 int8 LM head, three ways, 2 OpenMP threads (the
   ceiling bench/matvec_ceiling.py compares gemma4's one-row product with):
     f32   each int8 row converted to float32 and multiplied by float32 x (vpmovsxbd,
           vcvtdq2ps, vfmadd: what XLA CPU's fused loop does), four accumulators;
     vnni  x as uint8, int8 rows, vpdpbusd (AVX512-VNNI) into int32;
     read  the weight read and xor-ed, nothing else (the memory bound).
   Prints the median ms of 10 calls of each (one round; the caller alternates rounds). */
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define O 262144
#define K 1536

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void f32(const int8_t *w, const float *x, float *y) {
#pragma omp parallel for schedule(static)
  for (int o = 0; o < O; o++) {
    const int8_t *r = w + (size_t)o * K;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int k = 0; k < K; k += 64) {
#define STEP(a, j) a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32( \
    _mm_loadu_si128((const __m128i *)(r + k + j)))), _mm512_loadu_ps(x + k + j), a)
      STEP(a0, 0); STEP(a1, 16); STEP(a2, 32); STEP(a3, 48);
    }
    y[o] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  }
}

static void vnni(const int8_t *w, const uint8_t *xq, int32_t *y) {
#pragma omp parallel for schedule(static)
  for (int o = 0; o < O; o++) {
    const int8_t *r = w + (size_t)o * K;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0;
    for (int k = 0; k < K; k += 128) {
      a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(xq + k), _mm512_loadu_si512(r + k));
      a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(xq + k + 64), _mm512_loadu_si512(r + k + 64));
    }
    y[o] = _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1));
  }
}

static void readonly(const int8_t *w, int32_t *y) {
#pragma omp parallel for schedule(static)
  for (int o = 0; o < O; o++) {
    const int8_t *r = w + (size_t)o * K;
    __m512i a = _mm512_setzero_si512();
    for (int k = 0; k < K; k += 64) a = _mm512_xor_si512(a, _mm512_loadu_si512(r + k));
    y[o] = _mm512_reduce_add_epi32(a);
  }
}

static int cmp(const void *a, const void *b) {
  double d = *(const double *)a - *(const double *)b;
  return (d > 0) - (d < 0);
}

int main(void) {
  int8_t *w = aligned_alloc(64, (size_t)O * K);
  for (size_t i = 0; i < (size_t)O * K; i++) w[i] = (int8_t)rand();
  float *x = aligned_alloc(64, K * 4);
  uint8_t *xq = aligned_alloc(64, K);
  for (int k = 0; k < K; k++) { x[k] = rand() / (float)RAND_MAX; xq[k] = (uint8_t)rand(); }
  float *y = malloc(O * 4);
  int32_t *yi = malloc(O * 4);
  {
    double t[3][10];
    for (int i = 0; i < 10; i++) {
      double s = now(); f32(w, x, y); t[0][i] = now() - s;
      s = now(); vnni(w, xq, yi); t[1][i] = now() - s;
      s = now(); readonly(w, yi); t[2][i] = now() - s;
    }
    for (int j = 0; j < 3; j++) qsort(t[j], 10, sizeof(double), cmp);
    printf("%d %.3f %.3f %.3f\n", omp_get_max_threads(),
           (t[0][4] + t[0][5]) * 500, (t[1][4] + t[1][5]) * 500, (t[2][4] + t[2][5]) * 500);
  }
  return (int)y[0] + yi[0] == 12345;
}
