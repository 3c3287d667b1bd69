/* Recompute-instead-of-save kernels for the "recompute or save" experiment (benchmarks/experiments/recompute.py).

   Appended to neurodsl's generated C source of one neuron, after "#define EX_LIF" or "#define EX_ALIF"; the
   per-step math is the generated nd_step / nd_prev_state / nd_step_backward, so both schemes run the same
   expressions and give bit-identical results. Neuron-specific adapters (EX_NS states, EX_NP parameters in the
   order of the generated kernels, one learnable parameter: tau) give the kernels below one shape.

   ex_forward_kernel: the inference forward (reads x, writes spikes) plus the states at the start of every
   segment of C time steps (ckpt[k] for k >= 1, [nseg, EX_NS, N]; segment 0 starts from init) and the final states.
   ex_backward_kernel: per block of neurons, segments from last to first: re-run the forward over the segment
   from its checkpoint into a per-thread buffer of C x EX_NS x ND_BLOCK charged values (cache-resident), then the
   reverse sweep over the segment as the generated backward does (v[t-1] from H[t-1], the checkpoint at t0). */
#include <stdlib.h>
#include <string.h>

#if defined(EX_LIF)
#define EX_NS 1
#define EX_NP 4 /* v_th, v_reset, tau, _alpha */
ND_INLINE void ex_step(const nd_real* restrict v, nd_real x, const nd_real* restrict p, nd_real* restrict spike,
                       nd_real* restrict vn, nd_real* restrict h)
{
    nd_step(v[0], x, p[0], p[1], p[2], p[3], spike, &vn[0], &h[0]);
}
ND_INLINE nd_real ex_prev(const nd_real* restrict h, const nd_real* restrict p)
{
    nd_real v;
    nd_prev_state(h[0], p[0], p[1], p[2], p[3], &v);
    return v;
}
ND_INLINE void ex_bwd(const nd_real* restrict h, nd_real vprev, nd_real x, const nd_real* restrict p, nd_real gspike,
                      const nd_real* restrict gn, nd_real* restrict gv, nd_real* restrict gx, nd_real* restrict gtau)
{
    nd_step_backward(h[0], vprev, x, p[0], p[1], p[2], p[3], gspike, gn[0], &gv[0], gx, gtau);
}
#elif defined(EX_ALIF)
#define EX_NS 2
#define EX_NP 5 /* tau, tau_a, beta, v_th, _alpha */
ND_INLINE void ex_step(const nd_real* restrict v, nd_real x, const nd_real* restrict p, nd_real* restrict spike,
                       nd_real* restrict vn, nd_real* restrict h)
{
    nd_step(v[0], v[1], x, p[0], p[1], p[2], p[3], p[4], spike, &vn[0], &vn[1], &h[0], &h[1]);
}
ND_INLINE nd_real ex_prev(const nd_real* restrict h, const nd_real* restrict p)
{
    nd_real v;
    nd_prev_state(h[0], h[1], p[0], p[1], p[2], p[3], p[4], &v);
    return v;
}
ND_INLINE void ex_bwd(const nd_real* restrict h, nd_real vprev, nd_real x, const nd_real* restrict p, nd_real gspike,
                      const nd_real* restrict gn, nd_real* restrict gv, nd_real* restrict gx, nd_real* restrict gtau)
{
    nd_step_backward(h[0], h[1], vprev, x, p[0], p[1], p[2], p[3], p[4], gspike, gn[0], gn[1], &gv[0], &gv[1], gx,
                     gtau);
}
#else
#error "define EX_LIF or EX_ALIF"
#endif
#define EX_PREV 0 /* the state whose previous value the backward needs: v (first) in both neurons */

static void ex_forward_block(const nd_real* restrict x, const nd_real* restrict init, const nd_real* restrict pp,
                             nd_real* restrict spike, nd_real* restrict fin, nd_real* restrict ckpt, const int64_t n0,
                             const int64_t bn, const int64_t T, const int64_t N, const int64_t C)
{
    nd_real blk[EX_NS][ND_BLOCK], p[EX_NP];
    for (int k = 0; k < EX_NP; k++) p[k] = pp[k];
    for (int s = 0; s < EX_NS; s++)
        for (int64_t j = 0; j < bn; j++) blk[s][j] = init[s * N + n0 + j];
    for (int64_t t = 0; t < T; t++) {
        if (t > 0 && t % C == 0) {
            nd_real* restrict c = ckpt + (t / C) * EX_NS * N + n0;
            for (int s = 0; s < EX_NS; s++)
                for (int64_t j = 0; j < bn; j++) c[s * N + j] = blk[s][j];
        }
        const nd_real* restrict xr = x + t * N + n0;
        nd_real* restrict sr = spike + t * N + n0;
        for (int64_t j = 0; j < bn; j++) {
            nd_real v[EX_NS], vn[EX_NS], h[EX_NS], sp;
            for (int s = 0; s < EX_NS; s++) v[s] = blk[s][j];
            ex_step(v, xr[j], p, &sp, vn, h);
            sr[j] = sp;
            for (int s = 0; s < EX_NS; s++) blk[s][j] = vn[s];
        }
    }
    for (int s = 0; s < EX_NS; s++)
        for (int64_t j = 0; j < bn; j++) fin[s * N + n0 + j] = blk[s][j];
}

ND_EXPORT void ex_forward_kernel(const nd_real* restrict x, const nd_real* restrict init, const nd_real* restrict p,
                                 nd_real* restrict spike, nd_real* restrict fin, nd_real* restrict ckpt,
                                 const int64_t T, const int64_t N, const int64_t C, const int threads)
{
    const int64_t blocks = (N + ND_BLOCK - 1) / ND_BLOCK;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && blocks > 1)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t n0 = b * ND_BLOCK, bn = N - n0 < ND_BLOCK ? N - n0 : ND_BLOCK;
        ex_forward_block(x, init, p, spike, fin, ckpt, n0, bn, T, N, C);
    }
}

static void ex_backward_block(const nd_real* restrict gspike, const nd_real* restrict x, const nd_real* restrict init,
                              const nd_real* restrict ckpt, const nd_real* restrict pp, nd_real* restrict gx,
                              nd_real* restrict ginit, nd_real* restrict acc, const int64_t n0, const int64_t bn,
                              const int64_t T, const int64_t N, const int64_t C, nd_real* restrict buf)
{
    nd_real g[EX_NS][ND_BLOCK], st[EX_NS][ND_BLOCK], a[ND_BLOCK], p[EX_NP];
    for (int k = 0; k < EX_NP; k++) p[k] = pp[k];
    for (int64_t j = 0; j < bn; j++) a[j] = 0;
    for (int s = 0; s < EX_NS; s++)
        for (int64_t j = 0; j < bn; j++) g[s][j] = 0;
    const int64_t rowlen = EX_NS * ND_BLOCK; /* one time step of the buffer: [EX_NS][ND_BLOCK] */
    for (int64_t k = (T + C - 1) / C - 1; k >= 0; k--) {
        const int64_t t0 = k * C, t1 = t0 + C < T ? t0 + C : T;
        const nd_real* restrict s0 = (k ? ckpt + k * EX_NS * N : init) + n0; /* the states before step t0 */
        for (int s = 0; s < EX_NS; s++)
            for (int64_t j = 0; j < bn; j++) st[s][j] = s0[s * N + j];
        for (int64_t t = t0; t < t1; t++) { /* recompute H over the segment */
            const nd_real* restrict xr = x + t * N + n0;
            nd_real* restrict hb = buf + (t - t0) * rowlen;
            for (int64_t j = 0; j < bn; j++) {
                nd_real v[EX_NS], vn[EX_NS], h[EX_NS], sp;
                for (int s = 0; s < EX_NS; s++) v[s] = st[s][j];
                ex_step(v, xr[j], p, &sp, vn, h);
                for (int s = 0; s < EX_NS; s++) {
                    st[s][j] = vn[s];
                    hb[s * ND_BLOCK + j] = h[s];
                }
            }
        }
        for (int64_t t = t1 - 1; t >= t0; t--) { /* the reverse sweep over the segment */
            const int64_t row = t * N + n0;
            const int has_prev = t > t0;
            const nd_real* restrict hb = buf + (t - t0) * rowlen;
            const nd_real* restrict hp = has_prev ? hb - rowlen : hb;
            const nd_real* restrict vp0 = s0 + EX_PREV * N;
            const nd_real* restrict gsr = gspike + row;
            const nd_real* restrict xr = x + row;
            nd_real* restrict gxr = gx + row;
            for (int64_t j = 0; j < bn; j++) {
                nd_real h[EX_NS], hprev[EX_NS], gn[EX_NS], gv[EX_NS], gxv, gt;
                for (int s = 0; s < EX_NS; s++) {
                    h[s] = hb[s * ND_BLOCK + j];
                    hprev[s] = hp[s * ND_BLOCK + j];
                    gn[s] = g[s][j];
                }
                const nd_real rec = ex_prev(hprev, p);
                const nd_real vprev = has_prev ? rec : vp0[j];
                ex_bwd(h, vprev, xr[j], p, gsr[j], gn, gv, &gxv, &gt);
                gxr[j] = gxv;
                a[j] += gt;
                for (int s = 0; s < EX_NS; s++) g[s][j] = gv[s];
            }
        }
    }
    for (int s = 0; s < EX_NS; s++)
        for (int64_t j = 0; j < bn; j++) ginit[s * N + n0 + j] = g[s][j];
    for (int64_t j = 0; j < bn; j++) acc[n0 + j] = a[j];
}

ND_EXPORT int ex_backward_kernel(const nd_real* restrict gspike, const nd_real* restrict x,
                                 const nd_real* restrict init,
                                 const nd_real* restrict ckpt, const nd_real* restrict p, nd_real* restrict gx,
                                 nd_real* restrict ginit, nd_real* restrict acc, const int64_t T, const int64_t N,
                                 const int64_t C, const int threads)
{
    const int64_t blocks = (N + ND_BLOCK - 1) / ND_BLOCK;
    int failed = 0;
#pragma omp parallel num_threads(threads) if (threads > 1 && blocks > 1) reduction(| : failed)
    {
        nd_real* buf = aligned_alloc(64, (size_t)C * EX_NS * ND_BLOCK * sizeof(nd_real));
        failed = buf == NULL;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t n0 = b * ND_BLOCK, bn = N - n0 < ND_BLOCK ? N - n0 : ND_BLOCK;
            if (buf) ex_backward_block(gspike, x, init, ckpt, p, gx, ginit, acc, n0, bn, T, N, C, buf);
        }
        free(buf);
    }
    return failed;
}
