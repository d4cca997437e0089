/* Weight gradient of a depthwise 2-D convolution on NHWC (channels_last) float32 tensors, for hwnas.supernet.depthwise.
 *
 *   dW[a][b][c] = sum_{n,i,j} x[n][i*s + a - ph][j*s + b - pw][c] * g[n][i][j][c]     (taps outside x read zero padding)
 *
 * Why hand-written: oneDNN's depthwise backward-weights pass for 5x5 and 7x7 kernels on the small feature maps of
 * mobile networks runs many times slower than its own forward pass (bench/results/depthwise.json). Here each thread
 * owns a k_h*k_w*C accumulator that stays in L1 while x and g are streamed once, and the innermost loop runs over
 * contiguous channels, which the compiler vectorizes. Rows (n, i) of the output gradient are split across threads. */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

int hwnas_dw_grad_weight_nhwc(const float *x, const float *g, float *out, int n_batch, int h, int w, int c, int ho,
                              int wo, int k_h, int k_w, int stride, int pad_h, int pad_w, int n_threads) {
    const long kkc = (long)k_h * k_w * c;
    if (n_threads < 1) n_threads = 1;
    float *partial = (float *)calloc((size_t)n_threads * (size_t)kkc, sizeof(float));
    if (partial == NULL) return 1;
    const long rows = (long)n_batch * ho;
#pragma omp parallel num_threads(n_threads)
    {
        int t = 0, nt = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        nt = omp_get_num_threads();
#endif
        float *acc = partial + (long)t * kkc;
        for (long r = t; r < rows; r += nt) {
            const long n = r / ho, i = r % ho;
            const float *g_row = g + r * (long)wo * c;
            for (int a = 0; a < k_h; a++) {
                const long hh = i * stride + a - pad_h;
                if (hh < 0 || hh >= h) continue;
                const float *x_row = x + (n * h + hh) * (long)w * c;
                float *acc_a = acc + (long)a * k_w * c;
                for (int j = 0; j < wo; j++) {
                    const float *gv = g_row + (long)j * c;
                    for (int b = 0; b < k_w; b++) {
                        const long ww = (long)j * stride + b - pad_w;
                        if (ww < 0 || ww >= w) continue;
                        const float *restrict xv = x_row + ww * c;
                        float *restrict av = acc_a + (long)b * c;
                        for (int ch = 0; ch < c; ch++) av[ch] += xv[ch] * gv[ch];
                    }
                }
            }
        }
    }
    memcpy(out, partial, (size_t)kkc * sizeof(float));
    for (int t = 1; t < n_threads; t++) {
        const float *p = partial + (long)t * kkc;
        for (long q = 0; q < kkc; q++) out[q] += p[q];
    }
    free(partial);
    return 0;
}
