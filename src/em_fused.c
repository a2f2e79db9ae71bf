/*
 * em_fused.c: the log-likelihood pass and the fused EM kernel of the
 * softmax-gated linear-Gaussian mixture of experts, which the EM driver
 * (em.c) selects for that model.
 *
 * Data (moe_data): y (n), X (n x p), Z (n x q), wt (n), column-major.
 * Parameters (moe_par): alpha (p x K), sigma2 (K), W (q x K, last column 0).
 *
 * moe_loglik() is one fused pass over observations and experts: gating
 * logits, log-softmax, Gaussian log densities and log-sum-exp. It is the
 * cost floor that every EM iteration and Gibbs sweep is measured against.
 *
 * em_fused_init() sets up the EM kernel (em_kernel, moe.h) of this model
 * for the driver moe_em_run() of em.c: its M-step is weighted least squares
 * per expert and ctl->gate_steps damped Newton steps on the gating, each of
 * which cannot decrease the expected complete-data log-likelihood (penalised
 * by the ridge), so the objective never decreases (a generalised EM).
 * Preconditions: n >= 1, K >= 1, wt >= 0, alpha holds finite starting
 * coefficients (the first M-step solves for the change of alpha, so they do
 * not matter); sigma2 and W are set by the kernel.
 *
 * How an iteration is organised (the speed of the EM rests on it):
 *  - the data are copied once into row records (y_i, wt_i, x_i, z_i), so an
 *    observation is one contiguous read; when Z equals X it is stored once;
 *  - ONE pass over the records per iteration (em_pass()) computes for every
 *    observation the residuals of the experts and the gating log-softmax at
 *    the current parameters, the E-step (responsibilities, log-likelihood),
 *    and adds the observation to every sum the next M-step needs: per expert
 *    X'VX, X'V r and r'V r, with r = y - X alpha the residuals at the current
 *    alpha (the M-step solves for the change of alpha, so the new residual
 *    sum of squares is a small correction of r'V r and does not cancel), and
 *    for the gating the gradient and the K (K - 1) / 2 symmetric blocks of
 *    the negative Hessian. No n x K array of means, logits or probabilities
 *    is kept; only the responsibilities are, row-major, in two buffers;
 *  - with more than EM_CHUNK observations the pass runs over fixed chunks
 *    (on ctl->threads OpenMP threads), each forming its own sums, added in
 *    chunk order (em_pass()): the same results for any number of threads;
 *  - the M-step only solves small systems. The gating Newton step is checked
 *    (the expected gating log-likelihood at the new W with the previous
 *    responsibilities must not decrease) inside the next fused pass; when
 *    the check fails, which is rare, the step is halved with gating-only
 *    passes and the fused pass is repeated at the accepted W.
 */
#include "moe.h"
#include <string.h>

/* Observations per block of the fused pass: the block's coefficients and
 * cross-products (EM_BLOCK (3 K - 1 + P + Tp + Tq) doubles) stay in cache. */
#define EM_BLOCK 64
/* Observations per chunk of a pass: a fixed partition, whatever the number
 * of threads (see em_pass()). A multiple of EM_BLOCK. */
#define EM_CHUNK 8192

/* Doubles of one em_stats (stats_init()) and of a pass's scratch. */
static R_xlen_t stats_len(R_xlen_t p, R_xlen_t q, R_xlen_t K)
{
  R_xlen_t m = (K - 1) * q, Tp = p * (p + 1) / 2, Tq = q * (q + 1) / 2;
  return 2 * K + K * Tp + K * p + m + K * (K - 1) / 2 * Tq;
}

static R_xlen_t scratch_len(R_xlen_t p, R_xlen_t q, R_xlen_t K)
{
  R_xlen_t Tp = p * (p + 1) / 2, Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  return 6 * K + EM_BLOCK * (3 * K - 1 + P + Tp + Tq);
}

static R_xlen_t em_nchunk(R_xlen_t n)
{
  return (n + EM_CHUNK - 1) / EM_CHUNK;
}

R_xlen_t em_fused_work_size(const moe_data *d)
{
  R_xlen_t n = d->n, p = d->p, q = d->q, K = d->K, m = (K - 1) * q;
  R_xlen_t rec = n * (2 + p + q), resp = 2 * n * K;
  R_xlen_t stats = 2 * stats_len(p, q, K);
  R_xlen_t solve = 2 * p * p + p + 2 * K + 2 * m * m + 3 * m;
  R_xlen_t scratch = scratch_len(p, q, K);
  R_xlen_t nc = em_nchunk(n);
  R_xlen_t chunks = nc > 1 ? nc * (3 + stats_len(p, q, K) + scratch_len(p, q, K)) : 0;
  return rec + resp + stats + solve + scratch + chunks;
}

/*
 * E-step of one observation: r_k = g_k N(y; mu_k, sigma2_k) / sum_j (...) in
 * log space, from the K log gating probabilities logg[k * slg], the K means
 * mu[k * smu], cst_k = -log(2 pi sigma2_k) / 2 and half_prec_k = 1 / (2
 * sigma2_k). Writes r[k * sr] (may not alias the inputs) and returns the
 * observation's log-likelihood. When no term is finite the responsibilities
 * are 1 / K and the log-likelihood is that non-finite maximum. Shared by
 * moe_estep() (column-major arrays, strides n) and the fused EM pass.
 */
static inline double estep_obs(int K, double y, const double *mu, R_xlen_t smu,
                               const double *logg, R_xlen_t slg,
                               const double *cst, const double *half_prec,
                               double *r, R_xlen_t sr)
{
  double mx = R_NegInf;
  for (int k = 0; k < K; k++) {
    double res = y - mu[k * smu];
    double l = logg[k * slg] + cst[k] - res * res * half_prec[k];
    r[k * sr] = l;
    if (l > mx) mx = l;
  }
  if (!R_FINITE(mx)) {
    for (int k = 0; k < K; k++) r[k * sr] = 1.0 / K;
    return mx;
  }
  double s = 0.0;
  for (int k = 0; k < K; k++) {
    double e = exp(r[k * sr] - mx);
    r[k * sr] = e;
    s += e;
  }
  double inv = 1.0 / s;
  for (int k = 0; k < K; k++) r[k * sr] *= inv;
  return mx + log(s);
}

/*
 * E-step: R_ik = g_k(z_i) N(y_i; mu_ik, sigma2_k) / sum_j (...), in log space.
 * ll_i (length n, may be NULL) receives the per-observation log-likelihood.
 * kwork: 2 K doubles. Returns sum_i wt_i ll_i (observations of weight 0 are
 * left out, so that one of them cannot make the total -Inf).
 */
double moe_estep(const moe_data *d, const double *logg, const double *mu,
                 const double *sigma2, double *R, double *ll_i, double *kwork)
{
  int n = d->n, K = d->K;
  double total = 0.0, *cst = kwork, *half_prec = kwork + K;
  for (int k = 0; k < K; k++) {
    cst[k] = -0.5 * (LOG_2PI + log(sigma2[k]));
    half_prec[k] = 0.5 / sigma2[k];
  }
  for (int i = 0; i < n; i++) {
    double lli = estep_obs(K, d->y[i], mu + i, n, logg + i, n, cst, half_prec,
                           R + i, n);
    if (ll_i) ll_i[i] = lli;
    if (d->wt[i] > 0.0) total += d->wt[i] * lli;
  }
  return total;
}

/*
 * The log-likelihood sum_i wt_i log sum_k g_k(z_i) N(y_i; x_i'alpha_k,
 * sigma2_k), fused over observations. work: 3 K doubles.
 */
double moe_loglik(const moe_data *d, const moe_par *par, double *work)
{
  int n = d->n, p = d->p, q = d->q, K = d->K;
  const double *X = d->X, *Z = d->Z;
  double *eta = work, *lk = work + K, *cst = work + 2 * K;
  for (int k = 0; k < K; k++) cst[k] = -0.5 * (LOG_2PI + log(par->sigma2[k]));
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    double emax = R_NegInf;
    for (int k = 0; k < K; k++) {
      double e = 0.0, m = 0.0;
      for (int a = 0; a < q; a++) e += Z[i + (R_xlen_t) a * n] * par->W[a + k * q];
      for (int a = 0; a < p; a++) m += X[i + (R_xlen_t) a * n] * par->alpha[a + k * p];
      eta[k] = e;
      if (e > emax) emax = e;
      double r = d->y[i] - m;
      lk[k] = cst[k] - 0.5 * r * r / par->sigma2[k];
    }
    double se = 0.0, lmax = R_NegInf;
    for (int k = 0; k < K; k++) {
      se += exp(eta[k] - emax);
      lk[k] += eta[k];
      if (lk[k] > lmax) lmax = lk[k];
    }
    double sl = 0.0;
    for (int k = 0; k < K; k++) sl += exp(lk[k] - lmax);
    if (d->wt[i] > 0.0)
      total += d->wt[i] * (lmax + log(sl) - emax - log(se));
  }
  return total;
}

/* ---- the fused EM ---- */

typedef struct {
  int n, p, q, K;
  int S;            /* doubles per record */
  int Tp, Tq;       /* p (p + 1) / 2, q (q + 1) / 2 */
  int P, m;         /* K (K - 1) / 2 Hessian blocks, (K - 1) q gating unknowns */
  int same;         /* Z equals X: z_i is not stored, z z' is x x' */
  const double *rec; /* n records: y_i, wt_i, x_i (p), z_i (q, unless same) */
  int nchunk;       /* chunks of EM_CHUNK observations (see em_pass()) */
  int threads;      /* threads of the passes */
  R_xlen_t cstride; /* doubles per chunk in cpart */
  double *cpart;    /* nchunk x cstride: each chunk's sums and scratch */
} em_ctx;

/* Sums accumulated by one pass. */
typedef struct {
  double ll;   /* sum_i wt_i log p(y_i) at the pass's parameters (E-step) */
  double Qin;  /* sum_i wt_i sum_k Rin_ik log g_ik (PASS_QIN) */
  double Qout; /* the same with the responsibilities the sums below use */
  double *nk;  /* K: sum_i wt_i R_ik */
  double *s;   /* K: sum_i wt_i R_ik r_ik^2, r_ik = y_i - x_i'alpha_k */
  double *A;   /* Tp x K: sum_i wt_i R_ik x_i x_i', packed lower by columns */
  double *c;   /* p x K: sum_i wt_i R_ik r_ik x_i */
  double *G;   /* q x (K - 1): sum_i wt_i (R_ik - g_ik) z_i */
  double *H;   /* Tq x P: negative Hessian blocks (gate_newton_direction()) */
} em_stats;

enum { PASS_ESTEP = 1, PASS_XSTATS = 2, PASS_GSTATS = 4, PASS_QIN = 8 };

static double *stats_init(em_stats *st, const em_ctx *c, double *mem)
{
  st->nk = mem;
  st->s = st->nk + c->K;
  st->A = st->s + c->K;
  st->c = st->A + (R_xlen_t) c->K * c->Tp;
  st->G = st->c + (R_xlen_t) c->K * c->p;
  st->H = st->G + c->m;
  return st->H + (R_xlen_t) c->P * c->Tq;
}

/*
 * M (J x T, row-major) += co' pr, where row i of co (nb x J) starts at
 * co + i ldc and row i of pr (nb x T) at pr + i ldp: the sums over a block of observations
 * of coefficient times cross-product (or covariate), for J sums at once. Register tiles of 2 x 4 sums make it
 * bound by arithmetic rather than by loads and stores of M.
 */
static void block_accumulate(int nb, int J, int T, const double *co, int ldc,
                             const double *pr, int ldp, double *M)
{
  int j = 0;
  for (; j + 2 <= J; j += 2) {
    double *M0 = M + (R_xlen_t) j * T, *M1 = M0 + T;
    int t = 0;
    for (; t + 4 <= T; t += 4) {
      double s00 = 0.0, s01 = 0.0, s02 = 0.0, s03 = 0.0;
      double s10 = 0.0, s11 = 0.0, s12 = 0.0, s13 = 0.0;
      for (int i = 0; i < nb; i++) {
        const double c0 = co[i * ldc + j], c1 = co[i * ldc + j + 1];
        const double *pp = pr + i * ldp + t;
        s00 += c0 * pp[0]; s01 += c0 * pp[1]; s02 += c0 * pp[2]; s03 += c0 * pp[3];
        s10 += c1 * pp[0]; s11 += c1 * pp[1]; s12 += c1 * pp[2]; s13 += c1 * pp[3];
      }
      M0[t] += s00; M0[t + 1] += s01; M0[t + 2] += s02; M0[t + 3] += s03;
      M1[t] += s10; M1[t + 1] += s11; M1[t + 2] += s12; M1[t + 3] += s13;
    }
    for (; t < T; t++) {
      double s0 = 0.0, s1 = 0.0;
      for (int i = 0; i < nb; i++) {
        s0 += co[i * ldc + j] * pr[i * ldp + t];
        s1 += co[i * ldc + j + 1] * pr[i * ldp + t];
      }
      M0[t] += s0;
      M1[t] += s1;
    }
  }
  for (; j < J; j++) {
    double *M0 = M + (R_xlen_t) j * T;
    int t = 0;
    for (; t + 4 <= T; t += 4) {
      double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
      for (int i = 0; i < nb; i++) {
        const double c0 = co[i * ldc + j], *pp = pr + i * ldp + t;
        s0 += c0 * pp[0]; s1 += c0 * pp[1]; s2 += c0 * pp[2]; s3 += c0 * pp[3];
      }
      M0[t] += s0; M0[t + 1] += s1; M0[t + 2] += s2; M0[t + 3] += s3;
    }
    for (; t < T; t++) {
      double s0 = 0.0;
      for (int i = 0; i < nb; i++) s0 += co[i * ldc + j] * pr[i * ldp + t];
      M0[t] += s0;
    }
  }
}

/*
 * out[j] = sum_a v[a] M[a + j r], j < J (M is r x J, column-major): J dot
 * products computed side by side so that they do not wait on each other;
 * each is still summed in the order a = 0, 1, ...
 */
static inline void dots(int r, int J, const double *v, const double *M,
                        double *out)
{
  int j = 0;
  for (; j + 4 <= J; j += 4) {
    const double *M0 = M + (R_xlen_t) j * r, *M1 = M0 + r, *M2 = M1 + r, *M3 = M2 + r;
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    for (int a = 0; a < r; a++) {
      double va = v[a];
      s0 += va * M0[a]; s1 += va * M1[a]; s2 += va * M2[a]; s3 += va * M3[a];
    }
    out[j] = s0; out[j + 1] = s1; out[j + 2] = s2; out[j + 3] = s3;
  }
  for (; j + 2 <= J; j += 2) {
    const double *M0 = M + (R_xlen_t) j * r, *M1 = M0 + r;
    double s0 = 0.0, s1 = 0.0;
    for (int a = 0; a < r; a++) { s0 += v[a] * M0[a]; s1 += v[a] * M1[a]; }
    out[j] = s0; out[j + 1] = s1;
  }
  if (j < J) {
    const double *M0 = M + (R_xlen_t) j * r;
    double s0 = 0.0;
    for (int a = 0; a < r; a++) s0 += v[a] * M0[a];
    out[j] = s0;
  }
}

/* The products a_i a_j, j <= i, of a (length r), packed lower by columns. */
static inline void cross_products(int r, const double *a, double *out)
{
  int t = 0;
  for (int j = 0; j < r; j++) {
    double aj = a[j];
    for (int i = j; i < r; i++, t++) out[t] = a[i] * aj;
  }
}

/*
 * One pass over the observations at parameters par.
 * PASS_ESTEP: the E-step; writes Rout (K x n, row-major) and st->ll; the
 *   sums then use Rout, otherwise they use Rin (K x n, row-major).
 * PASS_XSTATS: the expert sums nk, s, A, c.
 * PASS_GSTATS: the gating gradient G and negative Hessian blocks H.
 * PASS_QIN: st->Qin, the expected gating log-likelihood with Rin.
 * st->Qout is always computed. The sums A, c, G and H are accumulated per
 * block of EM_BLOCK observations by block_accumulate() from per-observation
 * coefficients; nk and s observation by observation. scratch: 6 K + EM_BLOCK (3 K - 1 + P + Tp +
 * Tq) doubles.
 */
static void em_pass_range(const em_ctx *c, const moe_par *par, const double *Rin,
                          double *Rout, int flags, em_stats *st, double *scratch,
                          int ibeg, int iend)
{
  int p = c->p, q = c->q, K = c->K, S = c->S, Tp = c->Tp, Tq = c->Tq;
  int P = c->P;
  int estep = flags & PASS_ESTEP, xstats = flags & PASS_XSTATS;
  int gstats = (flags & PASS_GSTATS) && K > 1, qin = flags & PASS_QIN;
  const double *W = par->W, *alpha = par->alpha;
  double *res = scratch, *eta = res + K, *logg = eta + K, *pi = logg + K;
  double *cst = pi + K, *hp = cst + K;
  /* per block: coefficients of A (K), H (P), c and G (2 K - 1), and the
   * products x x' and z z' */
  double *coA = hp + K, *coH = coA + EM_BLOCK * K, *coV = coH + EM_BLOCK * P;
  double *xx = coV + EM_BLOCK * (2 * K - 1), *zz = c->same ? xx : xx + EM_BLOCK * Tp;
  double *nk = st->nk, *cs = st->c, *ss = st->s, *G = st->G;

  if (xstats) {
    for (int k = 0; k < K; k++) nk[k] = ss[k] = 0.0;
    for (R_xlen_t t = 0; t < (R_xlen_t) K * Tp; t++) st->A[t] = 0.0;
    for (R_xlen_t t = 0; t < (R_xlen_t) K * p; t++) cs[t] = 0.0;
  }
  if (gstats) {
    for (int t = 0; t < c->m; t++) G[t] = 0.0;
    for (R_xlen_t t = 0; t < (R_xlen_t) P * Tq; t++) st->H[t] = 0.0;
  }
  if (estep) {
    for (int k = 0; k < K; k++) {
      cst[k] = -0.5 * (LOG_2PI + log(par->sigma2[k]));
      hp[k] = 0.5 / par->sigma2[k];
    }
  }
  double ll = 0.0, Qin = 0.0, Qout = 0.0;

  for (int i0 = ibeg; i0 < iend; i0 += EM_BLOCK) {
    int nb = iend - i0 < EM_BLOCK ? iend - i0 : EM_BLOCK;
    for (int ib = 0; ib < nb; ib++) {
      int i = i0 + ib;
      const double *rc = c->rec + (R_xlen_t) i * S;
      const double y = rc[0], w = rc[1], *x = rc + 2, *z = c->same ? x : x + p;

      /* gating log-softmax; the reference logit eta_{K-1} is 0 */
      double emax = 0.0;
      dots(q, K - 1, z, W, eta);
      for (int k = 0; k < K - 1; k++) if (eta[k] > emax) emax = eta[k];
      eta[K - 1] = 0.0;
      double se = 0.0;
      for (int k = 0; k < K; k++) {
        pi[k] = exp(eta[k] - emax);
        se += pi[k];
      }
      double lse = emax + log(se), inv = 1.0 / se;
      for (int k = 0; k < K; k++) {
        logg[k] = eta[k] - lse;
        pi[k] *= inv;
      }
      const double *Ri = Rin ? Rin + (R_xlen_t) i * K : NULL;
      if (qin && w > 0.0)
        for (int k = 0; k < K; k++) if (Ri[k] > 0.0) Qin += w * Ri[k] * logg[k];

      if (estep || xstats) {
        dots(p, K, x, alpha, res);
        if (estep) {
          double *Ro = Rout + (R_xlen_t) i * K;
          double lli = estep_obs(K, y, res, 1, logg, 1, cst, hp, Ro, 1);
          if (w > 0.0) ll += w * lli;
          Ri = Ro;
        }
        for (int k = 0; k < K; k++) res[k] = y - res[k];
      }
      if (w > 0.0)
        for (int k = 0; k < K; k++) if (Ri[k] > 0.0) Qout += w * Ri[k] * logg[k];

      if (xstats || (gstats && c->same)) cross_products(p, x, xx + ib * Tp);
      if (gstats && !c->same) cross_products(q, z, zz + ib * Tq);
      /* coefficients of this observation in the block sums: v_k (X'VX),
       * v_k r_k (X'V r), wt (R_k - g_k) (gradient), the Hessian weights */
      double *cv = coV + ib * (2 * K - 1);
      if (xstats) {
        double *co = coA + ib * K;
        for (int k = 0; k < K; k++) {
          double v = w * Ri[k], vr = v * res[k];
          co[k] = v;
          cv[k] = vr;
          nk[k] += v;
          ss[k] += vr * res[k];
        }
      }
      if (gstats) {
        double *co = coH + ib * P;
        for (int k = 0; k < K - 1; k++) {
          double wp = w * pi[k];
          cv[K + k] = w * (Ri[k] - pi[k]);
          for (int l = 0; l < k; l++) *co++ = -wp * pi[l];
          *co++ = wp * (1.0 - pi[k]);
        }
      }
    }
    const double *xb = c->rec + (R_xlen_t) i0 * S + 2;
    if (xstats && gstats && c->same) {
      /* X'V r and the gradient are both sums of coefficient times x */
      block_accumulate(nb, 2 * K - 1, p, coV, 2 * K - 1, xb, S, cs);
    } else {
      if (xstats) block_accumulate(nb, K, p, coV, 2 * K - 1, xb, S, cs);
      if (gstats)
        block_accumulate(nb, K - 1, q, coV + K, 2 * K - 1,
                         c->same ? xb : xb + p, S, G);
    }
    if (xstats) block_accumulate(nb, K, Tp, coA, K, xx, Tp, st->A);
    if (gstats) block_accumulate(nb, P, Tq, coH, P, zz, Tq, st->H);
  }
  st->ll = ll;
  st->Qin = Qin;
  st->Qout = Qout;
}

/*
 * The pass over all observations. With more than EM_CHUNK observations they
 * are cut into fixed chunks of EM_CHUNK, each pass over a chunk forms its
 * own sums (in its slot of c->cpart) and the sums of the chunks are added
 * in chunk order by one thread: the results are the same for any number of
 * threads (c->threads, OpenMP; one without it). With one chunk the pass is
 * the plain loop. Only the sums the flags ask for are formed (the others
 * keep their values, as in em_pass_range()).
 */
static void em_pass(const em_ctx *c, const moe_par *par, const double *Rin,
                    double *Rout, int flags, em_stats *st, double *scratch)
{
  int nc = c->nchunk;
  if (nc <= 1) {
    em_pass_range(c, par, Rin, Rout, flags, st, scratch, 0, c->n);
    return;
  }
  R_xlen_t L = stats_len(c->p, c->q, c->K);
#ifdef _OPENMP
  int nt = c->threads < nc ? c->threads : nc;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (int ch = 0; ch < nc; ch++) {
    double *slot = c->cpart + (R_xlen_t) ch * c->cstride;
    em_stats cs;
    double *scr = stats_init(&cs, c, slot + 3);
    int i0 = ch * EM_CHUNK, i1 = c->n - i0 > EM_CHUNK ? i0 + EM_CHUNK : c->n;
    em_pass_range(c, par, Rin, Rout, flags, &cs, scr, i0, i1);
    slot[0] = cs.ll;
    slot[1] = cs.Qin;
    slot[2] = cs.Qout;
  }
  int xstats = flags & PASS_XSTATS, gstats = (flags & PASS_GSTATS) && c->K > 1;
  /* nk, s, A, c (the experts' sums) come first in em_stats, then G and H */
  R_xlen_t nx = 2 * c->K + (R_xlen_t) c->K * c->Tp + (R_xlen_t) c->K * c->p;
  double tot[3] = {0.0, 0.0, 0.0};
  for (int ch = 0; ch < nc; ch++)
    for (int v = 0; v < 3; v++) tot[v] += c->cpart[v + (R_xlen_t) ch * c->cstride];
  st->ll = tot[0];
  st->Qin = tot[1];
  st->Qout = tot[2];
  for (R_xlen_t t = xstats ? 0 : nx; t < (gstats ? L : nx); t++) {
    double sum = 0.0;
    for (int ch = 0; ch < nc; ch++) sum += c->cpart[3 + t + (R_xlen_t) ch * c->cstride];
    st->nk[t] = sum;
  }
}

/* rss[k] = sum_i wt_i R_ik (y_i - x_i'alpha_k)^2 for the experts with
 * todo[k] > 0 (the others are left alone); R is K x n, row-major. */
static void exact_rss(const em_ctx *c, const double *alpha, const double *R,
                      const int *todo, double *rss)
{
  int n = c->n, p = c->p, K = c->K, S = c->S;
  for (int k = 0; k < K; k++) if (todo[k] > 0) rss[k] = 0.0;
  for (int i = 0; i < n; i++) {
    const double *rc = c->rec + (R_xlen_t) i * S, *x = rc + 2;
    for (int k = 0; k < K; k++) {
      if (todo[k] <= 0) continue;
      const double *ak = alpha + (R_xlen_t) k * p;
      double m = 0.0;
      for (int a = 0; a < p; a++) m += x[a] * ak[a];
      double r = rc[0] - m;
      rss[k] += rc[1] * R[(R_xlen_t) i * K + k] * r * r;
    }
  }
}

/*
 * Expert M-step from the sums of a pass at alpha: weighted least squares
 * for the change b of alpha_k (the sums hold residuals at alpha), then the
 * weighted residual variance at alpha + b, floored at ctl->var_floor. An
 * expert whose effective size is below ctl->min_size is left unchanged
 * (MOE_EMPTY). R (K x n, row-major) are the responsibilities of the sums.
 * work: 2 p^2 + p + 2 K doubles.
 */
static int mstep_experts(const em_ctx *c, moe_par *par, const em_stats *st,
                         const double *R, const moe_em_control *ctl,
                         double *work)
{
  int p = c->p, K = c->K, Tp = c->Tp, status = MOE_OK, any_exact = 0;
  double *Af = work, *save = Af + (R_xlen_t) p * p, *b = save + (R_xlen_t) p * p;
  double *rss = b + p, *todo_d = rss + K;
  int *todo = (int *) todo_d; /* K ints fit in K doubles */
  for (int k = 0; k < K; k++) {
    todo[k] = -1; /* not updated */
    double nk = st->nk[k];
    if (!(nk >= ctl->min_size)) { status |= MOE_EMPTY; continue; }
    const double *Ak = st->A + (R_xlen_t) k * Tp, *ck = st->c + (R_xlen_t) k * p;
    int t = 0;
    for (int j = 0; j < p; j++)
      for (int a = j; a < p; a++, t++) Af[a + (R_xlen_t) j * p] = Ak[t];
    int rc = chol_factor_ridge(p, Af, save, 1e-10);
    if (rc < 0) { status |= MOE_EMPTY | MOE_NOT_PD; continue; }
    if (rc > 0) status |= MOE_NOT_PD;
    for (int a = 0; a < p; a++) b[a] = ck[a];
    chol_solve_factored(p, Af, b, 1);
    /* residual sum of squares at alpha + b: s - 2 b'c + b'A b */
    double bc = 0.0, bAb = 0.0;
    t = 0;
    for (int j = 0; j < p; j++) {
      bc += b[j] * ck[j];
      bAb += b[j] * b[j] * Ak[t++];
      for (int a = j + 1; a < p; a++, t++) bAb += 2.0 * b[a] * b[j] * Ak[t];
    }
    double *ak = par->alpha + (R_xlen_t) k * p;
    for (int a = 0; a < p; a++) ak[a] += b[a];
    double r = st->s[k] - 2.0 * bc + bAb;
    /* when the step removes nearly all of the old residual sum of squares
     * the difference has lost digits: recompute it from the data */
    todo[k] = 0;
    if (r > 1e-6 * st->s[k]) rss[k] = r;
    else { todo[k] = 1; any_exact = 1; }
  }
  if (any_exact) exact_rss(c, par->alpha, R, todo, rss);
  for (int k = 0; k < K; k++) {
    if (todo[k] < 0) continue;
    double s2 = rss[k] / st->nk[k];
    if (!(s2 > ctl->var_floor)) {
      s2 = ctl->var_floor;
      status |= MOE_VAR_FLOOR;
    }
    par->sigma2[k] = s2;
  }
  return status;
}

/* Work of the gating steps: g, delta, Wold (m each), then 2 m^2. */
typedef struct {
  double *g, *delta, *Wold, *work;
  double Q_old;  /* penalised expected gating log-likelihood at Wold */
  int pending;   /* W = Wold + delta awaits its check in the next pass */
} gate_state;

static double penalty(const double *W, int m, double ridge)
{
  double pen = 0.0;
  for (int j = 0; j < m; j++) pen += W[j] * W[j];
  return 0.5 * ridge * pen;
}

static int gate_accept(double Q_new, double Q_old)
{
  /* rounding in a sum of n terms must not reject a true ascent step */
  return R_FINITE(Q_new) && Q_new >= Q_old - 1e-13 * (1.0 + fabs(Q_old));
}

/*
 * Newton direction from the gating sums st (at W, with the responsibilities
 * whose expected gating log-likelihood is Q): sets gs->delta, gs->Wold and
 * gs->Q_old and returns 1 when a step should be tried, 0 at the optimum or
 * when the Hessian could not be factored (*status gets MOE_GATE_STEP).
 */
static int gate_direction(const em_ctx *c, const em_stats *st, double Q,
                          const double *W, double ridge, gate_state *gs,
                          int *status)
{
  int m = c->m;
  int rc = gate_newton_direction(c->q, c->K, st->G, st->H, W, ridge, gs->g,
                                 gs->delta, gs->work);
  if (rc == MOE_GATE_STEP) { *status |= MOE_GATE_STEP; return 0; }
  *status |= rc;
  for (int j = 0; j < m; j++) gs->Wold[j] = W[j];
  gs->Q_old = Q - penalty(W, m, ridge);
  double gain = 0.0;
  for (int j = 0; j < m; j++) gain += gs->g[j] * gs->delta[j];
  return gain > 1e-13 * (1.0 + fabs(gs->Q_old));
}

/*
 * Step halving after a rejected full step: tries W = Wold + t delta, t = 1/2,
 * 1/4, ..., with gating-only passes (Q with the responsibilities R). With
 * flags = PASS_GSTATS the sums at the accepted W are left in st. Returns 1
 * when a step was accepted; otherwise W = Wold and 0.
 */
static int gate_halve(const em_ctx *c, moe_par *par, const double *R,
                      double ridge, gate_state *gs, int flags, em_stats *st,
                      double *scratch)
{
  int m = c->m;
  double t = 0.5;
  for (int h = 1; h < 20; h++, t *= 0.5) {
    for (int j = 0; j < m; j++) par->W[j] = gs->Wold[j] + t * gs->delta[j];
    em_pass(c, par, R, NULL, flags, st, scratch);
    if (gate_accept(st->Qout - penalty(par->W, m, ridge), gs->Q_old)) return 1;
  }
  for (int j = 0; j < m; j++) par->W[j] = gs->Wold[j];
  return 0;
}

/*
 * Gating M-step with ctl->gate_steps Newton steps from the sums st of a pass
 * at the current W with responsibilities R (Q = their expected gating
 * log-likelihood). With one step the full step is left pending: W = Wold +
 * delta, checked by the caller's next fused pass. Further steps are checked
 * at once with gating-only passes (using gst for their sums).
 */
static int mstep_gate(const em_ctx *c, moe_par *par, const em_stats *st,
                      const double *R, const moe_em_control *ctl,
                      gate_state *gs, em_stats *gst, double *scratch)
{
  int m = c->m, status = MOE_OK, S = ctl->gate_steps;
  gs->pending = 0;
  if (c->K < 2 || S < 1) return status;
  const em_stats *cur = st;
  double Q = st->Qout;
  for (int s = 1; s <= S; s++) {
    if (!gate_direction(c, cur, Q, par->W, ctl->ridge, gs, &status)) break;
    for (int j = 0; j < m; j++) par->W[j] = gs->Wold[j] + gs->delta[j];
    if (S == 1) { gs->pending = 1; break; }
    int flags = s < S ? PASS_GSTATS : 0;
    em_pass(c, par, R, NULL, flags, gst, scratch);
    if (!gate_accept(gst->Qout - penalty(par->W, m, ctl->ridge), gs->Q_old) &&
        !gate_halve(c, par, R, ctl->ridge, gs, flags, gst, scratch)) {
      status |= MOE_GATE_STEP;
      break;
    }
    cur = gst;
    Q = gst->Qout;
  }
  return status;
}

/* ---- the kernel of the EM driver (em.c) ---- */

typedef struct {
  em_ctx c;
  moe_par par;
  const moe_em_control *ctl;
  double *Ra, *Rb;   /* responsibilities of the last M-step / the new ones */
  em_stats st, gst;
  gate_state gs;
  double *xwork, *scratch;
} em_fused;

/* First M-step from R0 (a pass for its sums first), or the M-step from the
 * sums of the E-step's pass. */
static int fused_mstep(void *ctx, int first)
{
  em_fused *e = (em_fused *) ctx;
  if (first) em_pass(&e->c, &e->par, e->Ra, NULL, PASS_XSTATS | PASS_GSTATS, &e->st,
                     e->scratch);
  int status = mstep_experts(&e->c, &e->par, &e->st, e->Ra, e->ctl, e->xwork);
  status |= mstep_gate(&e->c, &e->par, &e->st, e->Ra, e->ctl, &e->gs, &e->gst,
                       e->scratch);
  return status;
}

/* E-step at the new parameters and the sums of the next M-step, in one pass;
 * Ra holds the responsibilities of the last M-step, Rb receives the new.
 * A pending gating step is checked here (halved if it did not ascend). */
static double fused_estep(void *ctx, int *mstatus)
{
  em_fused *e = (em_fused *) ctx;
  const int all = PASS_XSTATS | PASS_GSTATS;
  em_pass(&e->c, &e->par, e->Ra, e->Rb,
          PASS_ESTEP | all | (e->gs.pending ? PASS_QIN : 0), &e->st, e->scratch);
  if (e->gs.pending) {
    e->gs.pending = 0;
    if (!gate_accept(e->st.Qin - penalty(e->par.W, e->c.m, e->ctl->ridge),
                     e->gs.Q_old)) {
      if (!gate_halve(&e->c, &e->par, e->Ra, e->ctl->ridge, &e->gs, 0, &e->gst,
                      e->scratch))
        *mstatus |= MOE_GATE_STEP;
      em_pass(&e->c, &e->par, e->Ra, e->Rb, PASS_ESTEP | all, &e->st, e->scratch);
    }
  }
  double *tmp = e->Ra;
  e->Ra = e->Rb;
  e->Rb = tmp;
  return e->st.ll;
}

static void fused_finish(void *ctx, double *R)
{
  em_fused *e = (em_fused *) ctx;
  int n = e->c.n, K = e->c.K;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < K; k++) R[i + (R_xlen_t) k * n] = e->Ra[(R_xlen_t) i * K + k];
}

/* Set up the kernel on the data d from responsibilities R0 (n x K): the row
 * records, sigma2 = 1 and W = 0 (the first M-step sets them; alpha holds
 * finite starting coefficients, zeros from ffi_em(): the M-step solves for
 * the change of alpha, so they do not matter). work: em_fused_work_size(). */
void em_fused_init(em_kernel *k, const moe_data *d, moe_vpar *vpar,
                   const double *R0, const moe_em_control *ctl, double *work)
{
  int n = d->n, p = d->p, q = d->q, K = d->K;
  em_fused *e = (em_fused *) R_alloc(1, sizeof(em_fused));
  em_ctx *c = &e->c;
  c->n = n; c->p = p; c->q = q; c->K = K;
  c->Tp = p * (p + 1) / 2;
  c->Tq = q * (q + 1) / 2;
  c->P = K * (K - 1) / 2;
  c->m = (K - 1) * q;
  c->same = p == q && (d->X == d->Z ||
                       memcmp(d->X, d->Z, sizeof(double) * (size_t) n * p) == 0);
  c->S = 2 + p + (c->same ? 0 : q);
  e->par.alpha = vpar->alpha;
  e->par.sigma2 = vpar->sigma2;
  e->par.W = vpar->W;
  e->ctl = ctl;

  /* carve the work array (em_fused_work_size() counts the same pieces) */
  double *rec = work;
  e->Ra = rec + (R_xlen_t) n * c->S;
  e->Rb = e->Ra + (R_xlen_t) n * K;
  double *next = stats_init(&e->st, c, e->Rb + (R_xlen_t) n * K);
  next = stats_init(&e->gst, c, next);
  e->gs.g = next;
  e->gs.delta = e->gs.g + c->m;
  e->gs.Wold = e->gs.delta + c->m;
  e->gs.work = e->gs.Wold + c->m;
  e->gs.pending = 0;
  e->xwork = e->gs.work + 2 * (R_xlen_t) c->m * c->m;
  e->scratch = e->xwork + 2 * (R_xlen_t) p * p + p + 2 * K;
  c->nchunk = (int) em_nchunk(n);
  c->cstride = 3 + stats_len(p, q, K) + scratch_len(p, q, K);
  c->cpart = c->nchunk > 1 ? e->scratch + scratch_len(p, q, K) : NULL;
  /* never more threads than asked for, nor than the machine has */
  c->threads = moe_thread_count(ctl->threads);

  for (int i = 0; i < n; i++) {
    double *r = rec + (R_xlen_t) i * c->S;
    r[0] = d->y[i];
    r[1] = d->wt[i];
    for (int a = 0; a < p; a++) r[2 + a] = d->X[i + (R_xlen_t) a * n];
    if (!c->same)
      for (int a = 0; a < q; a++) r[2 + p + a] = d->Z[i + (R_xlen_t) a * n];
    for (int k2 = 0; k2 < K; k2++) e->Ra[(R_xlen_t) i * K + k2] = R0[i + (R_xlen_t) k2 * n];
  }
  c->rec = rec;
  for (int k2 = 0; k2 < K; k2++) {
    e->par.sigma2[k2] = 1.0;
    for (int a = 0; a < q; a++) e->par.W[a + k2 * q] = 0.0;
  }
  k->ctx = e;
  k->mstep = fused_mstep;
  k->estep = fused_estep;
  k->finish = fused_finish;
}
