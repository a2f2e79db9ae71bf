/*
 * mcmc.c: one chain of the Gibbs sampler for the softmax-gated
 * linear-Gaussian mixture of experts, with Polya-Gamma augmentation of the
 * gating network (Holmes-Held updates, one gating vector at a time).
 *
 * Data (moe_data, internal centred/scaled scale): y (n), X (n x p),
 * Z (n x q), column-major; wt (n) case weights that are whole numbers >= 1
 * (frequency weights: observation i stands for wt_i identical observations,
 * each with its own allocation; zero-weight rows are dropped by the caller).
 * Parameters (moe_par): alpha (p x K), sigma2 (K), W (q x K, column K - 1
 * zero); on entry the starting values, on exit the final state.
 * Prior (moe_mcmc_prior), controls (moe_mcmc_control): see moe.h.
 * Writes: the kept draws and the total log-likelihood of each kept draw
 * (moe_mcmc_draws), the final parameters into par.
 *
 * One sweep, in this order (a systematic-scan Gibbs sampler):
 *  1. update_alloc: allocation counts N_ki of every observation,
 *     Multinomial(wt_i, p_i.) with log p_ik = eta_ik + log N(y_i; x_i'a_k,
 *     sigma2_k) + const, normalised by log-sum-exp (a categorical draw when
 *     wt_i = 1), and the per-expert sufficient statistics; the same pass
 *     gives the log-likelihood of the parameters it conditions on, i.e. of
 *     the previous sweep's draw;
 *  2. update_experts: conjugate Normal / inverse-gamma draw of (a_k, s2_k)
 *     given the allocations (an empty expert is drawn from its prior);
 *  3. update_gating: for k < K, with C_ik = log sum_{j != k} exp(eta_ij),
 *     omega_i ~ PG(wt_i, eta_ik - C_ik), kappa_i = N_ki - wt_i / 2 and
 *     w_k ~ N(m_k, V_k), V_k^{-1} = Z' Omega Z + B0^{-1},
 *     m_k = V_k (Z'(kappa + Omega C_k) + B0^{-1} b0), where (b0, B0) is the
 *     conditional prior of w_k given the other gating vectors:
 *     exchangeable prior: b0 = (1 / (K - 1)) sum_{j < K, j != k} w_j,
 *     B0 = K / (K - 1) diag(s_w2); independent prior: b0 = 0, B0 = diag(s_w2);
 *     with ctl->gate_mode 1 the Polya-Gamma draws are
 *     followed by a joint Metropolis-Hastings step on p(W | N)
 *     (gate_mh_step(): Gamerman's Fisher-scoring proposal), which speeds
 *     mixing of steep gates and of correlated gating vectors; with 2 only
 *     that step is made (no Polya-Gamma draws), with 0 only the Polya-Gamma
 *     draws.
 * With ctl->gate_mode 3 (the default in R, "collapsed") a sweep is instead
 *  1'. update_gating_alloc_marg: ctl->gate_steps Metropolis-Hastings steps
 *     on W targeting p(W | alpha, sigma2, y) (allocations summed out), with
 *     a Newton proposal (marg_pass(), marg_proposal()), then the
 *     allocations given the new W and the experts; the first pass gives
 *     the log-likelihood of the previous draw;
 *  2'. cond_refresh: the step of gate_mh_step() given the allocations; its
 *     log target, gradient and information at the current W come from the
 *     pass that drew the allocations (cond_logpost() with `draw`), so it
 *     makes one more pass, at its proposal;
 *  3'. update_experts as in 2.
 * The gating probabilities at the current W (w->pA) are kept from sweep to
 * sweep; they depend on W alone and are computed by the same operations at
 * the start of a run, so this does not break exact continuation.
 * The state carried from sweep to sweep is (alpha, sigma2, W) only: the
 * logits eta are recomputed from W by eta_column(), the expert means on the
 * fly, so a chain restarted from a stored state and RNG state reproduces one
 * long run exactly.
 *
 * Expert variances are kept in [MOE_S2_MIN, MOE_S2_MAX] (moe.h) by
 * rejecting draws outside, so the prior is truncated to that range.
 * Preconditions: n >= 1, K >= 1, wt_i >= 1 whole, sigma2 > 0, prior
 * variances > 0, Va_inv positive definite. The caller does not hold the RNG:
 * moe_mcmc_run() calls GetRNGstate() / PutRNGstate() once around the loop.
 * Returns moe_status flags: MOE_NOT_PD when a conditional precision needed a
 * ridge, MOE_NONFINITE when a draw or log-likelihood was not finite (the
 * chain then stops; out->done and out->nkeep say how far it got).
 */
#include "moe.h"
#include "moe_exp.h"
#include <stdint.h>

#if defined(__GNUC__)
#define MOE_INLINE static inline __attribute__((always_inline))
#else
#define MOE_INLINE static inline
#endif
/* loop unrolling hint of the passes (see "Speed of the passes" below) */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define MOE_UNROLL _Pragma("GCC unroll 16")
#else
#define MOE_UNROLL
#endif

/* Residual y_i - x_i' a_k of observation i (xi, p) under expert k (ak). */
MOE_INLINE double expert_resid(const double *xi, const double *ak, int p, double yi)
{
  double mu = 0.0;
  MOE_UNROLL
  for (int a = 0; a < p; a++) mu += xi[a] * ak[a];
  return yi - mu;
}

/*
 * The uniforms of the allocation draws (one per observation per sweep, the
 * bulk of a chain's random numbers) come from a small fast generator,
 * xoshiro256+ (Blackman and Vigna 2018), seeded at the start of every
 * allocation pass from two draws of R's generator through splitmix64. The
 * draws therefore stay a function of R's random number stream alone: the
 * same seed gives the same chain, and a chain restarted from its stored R
 * RNG state continues exactly. (R's L'Ecuyer-CMRG unif_rand(), which the
 * chains use, cost about 18% of a collapsed chain here.)
 */
typedef struct { uint64_t s[4]; } alloc_rng;

static uint64_t splitmix64(uint64_t *x)
{
  uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static void alloc_rng_seed(alloc_rng *r)
{
  uint64_t a = (uint64_t) (unif_rand() * 4294967296.0);
  uint64_t b = (uint64_t) (unif_rand() * 4294967296.0);
  uint64_t x = (a << 32) ^ b;
  for (int k = 0; k < 4; k++) r->s[k] = splitmix64(&x);
}

/* A uniform in (0, 1) (53 bits, never 0 or 1). */
static inline double alloc_unif(alloc_rng *r)
{
  uint64_t *s = r->s, res = s[0] + s[3], t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = (s[3] << 45) | (s[3] >> 19);
  return ((double) (res >> 11) + 0.5) * 0x1.0p-53;
}

void moe_mcmc_work_size(const moe_data *d, R_xlen_t *ndouble, R_xlen_t *nint)
{
  R_xlen_t n = d->n, p = d->p, q = d->q, K = d->K;
  R_xlen_t m = q * (K - 1);
  R_xlen_t Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  *ndouble = (p + q + K) * n + K * (p * p + p + 2) + 3 * K +
             2 * p * p + 4 * p + 2 * q * q + 4 * q + 3 * m * m + 3 * m + 1 + q * K +
             5 * K * n + n + Tq + P * Tq + 2 * m;
  *nint = n + K * n;
}

void moe_mcmc_work_init(const moe_data *d, double *dbl, int *ints,
                        moe_mcmc_work *w)
{
  int n = d->n, p = d->p, q = d->q, K = d->K;
  double *t = dbl;
  w->Xr = t;    t += (R_xlen_t) p * n;
  w->Zr = t;    t += (R_xlen_t) q * n;
  w->eta = t;   t += (R_xlen_t) K * n;
  w->XtX = t;   t += (R_xlen_t) K * p * p;
  w->Xty = t;   t += (R_xlen_t) K * p;
  w->yty = t;   t += K;
  w->nk = t;    t += K;
  w->lk = t;    t += K;
  w->cst = t;   t += K;
  w->hp = t;    t += K;
  w->A = t;     t += (R_xlen_t) p * p;
  w->Asave = t; t += (R_xlen_t) p * p;
  w->b = t;     t += p;
  w->m = t;     t += p;
  w->z = t;     t += p;
  w->zero = t;  t += p;
  w->P = t;     t += (R_xlen_t) q * q;
  w->Psave = t; t += (R_xlen_t) q * q;
  w->r = t;     t += q;
  w->mw = t;    t += q;
  w->zq = t;    t += q;
  w->zeroq = t; t += q;
  R_xlen_t m = (R_xlen_t) q * (K - 1);
  w->H0 = t;    t += m * m;
  w->H1 = t;    t += m * m;
  w->Hsave = t; t += m * m;
  w->g = t;     t += m;
  w->mu = t;    t += m;
  w->tm = t;    t += m + 1;
  w->Ws = t;    t += (R_xlen_t) q * K; /* the proposal, reference column zero */
  for (R_xlen_t u = 0; u < (R_xlen_t) q * K; u++) w->Ws[u] = 0.0;
  w->F = t;     t += (R_xlen_t) K * n;
  w->rA = t;    t += (R_xlen_t) K * n;
  w->rB = t;    t += (R_xlen_t) K * n;
  w->lmx = t;   t += n;
  w->pA = t;    t += (R_xlen_t) K * n;
  w->pB = t;    t += (R_xlen_t) K * n;
  w->zz = t;    t += q * (q + 1) / 2;
  w->hg = t;    t += (R_xlen_t) K * (K - 1) / 2 * (q * (q + 1) / 2);
  w->g1 = t;    t += m;
  w->mu1 = t;
  w->wi = ints;
  w->N = ints + n;
  for (int i = 0; i < n; i++) {
    for (int a = 0; a < p; a++)
      w->Xr[a + (R_xlen_t) i * p] = d->X[i + (R_xlen_t) a * n];
    for (int a = 0; a < q; a++)
      w->Zr[a + (R_xlen_t) i * q] = d->Z[i + (R_xlen_t) a * n];
    w->wi[i] = (int) d->wt[i];
  }
  for (int a = 0; a < p; a++) w->zero[a] = 0.0;
  for (int a = 0; a < q; a++) w->zeroq[a] = 0.0;
}

/* eta_ik = z_i' w_k for every i; the only place logits are computed, so a
 * restarted chain sees bit-identical logits. */
static void eta_column(const moe_data *d, const moe_mcmc_work *w,
                       const double *W, int k)
{
  int n = d->n, q = d->q, K = d->K;
  const double *wk = W + (R_xlen_t) k * q;
  for (int i = 0; i < n; i++) {
    const double *zi = w->Zr + (R_xlen_t) i * q;
    double e = 0.0;
    for (int a = 0; a < q; a++) e += zi[a] * wk[a];
    w->eta[k + (R_xlen_t) i * K] = e;
  }
}

/* Zero the per-expert sufficient statistics. */
static void stats_reset(moe_mcmc_work *w, int p, int K)
{
  for (R_xlen_t t = 0; t < (R_xlen_t) K * p * p; t++) w->XtX[t] = 0.0;
  for (R_xlen_t t = 0; t < (R_xlen_t) K * p; t++) w->Xty[t] = 0.0;
  for (int k = 0; k < K; k++) w->yty[k] = w->nk[k] = 0.0;
}

/* Allocation counts Ni (K) of one observation of weight wi:
 * Multinomial(wi, pk / s), pk >= 0 unnormalised with sum s (a categorical
 * draw, one uniform, when wi = 1). */
static void alloc_draw(int K, int wi, const double *pk, double s, int *Ni,
                       alloc_rng *rng)
{
  for (int k = 0; k < K; k++) Ni[k] = 0;
  if (K == 1) {
    Ni[0] = wi;
  } else if (wi == 1) {
    double u = alloc_unif(rng) * s, acc = pk[0];
    int k = 0;
    while (acc < u && k < K - 1) acc += pk[++k];
    Ni[k] = 1;
  } else {
    /* multinomial by conditional binomials */
    int rem = wi;
    double rs = s;
    for (int k = 0; k < K - 1 && rem > 0; k++) {
      double pr = rs > 0.0 ? pk[k] / rs : 0.0;
      int c = pr >= 1.0 ? rem : (pr <= 0.0 ? 0 : (int) rbinom(rem, pr));
      Ni[k] = c;
      rem -= c;
      rs -= pk[k];
    }
    Ni[K - 1] += rem;
  }
}

/* Add observation (xi, yi) with allocation counts Ni to the sufficient
 * statistics of the experts (lower triangles of X'X). */
static void alloc_stats(moe_mcmc_work *w, int p, int K, const double *xi,
                        double yi, const int *Ni)
{
  for (int k = 0; k < K; k++) {
    if (Ni[k] == 0) continue;
    double c = Ni[k], cy = c * yi;
    double *S = w->XtX + (R_xlen_t) k * p * p, *sy = w->Xty + (R_xlen_t) k * p;
    w->nk[k] += c;
    w->yty[k] += cy * yi;
    for (int a = 0; a < p; a++) {
      double cxa = c * xi[a];
      sy[a] += cy * xi[a];
      for (int b = 0; b <= a; b++) S[a + b * p] += cxa * xi[b];
    }
  }
}

/*
 * Allocations and sufficient statistics (when `draw`), and the total
 * log-likelihood sum_i wt_i log p(y_i) at the current parameters (when
 * `need_ll`, else 0). With draw = 0 no random number is used.
 */
static double update_alloc(const moe_data *d, moe_mcmc_work *w,
                           const moe_par *par, int draw, int need_ll)
{
  int n = d->n, p = d->p, K = d->K;
  double *lk = w->lk, *cst = w->cst, *hp = w->hp;
  for (int k = 0; k < K; k++) {
    cst[k] = -0.5 * (LOG_2PI + log(par->sigma2[k]));
    hp[k] = 0.5 / par->sigma2[k];
  }
  alloc_rng rng;
  if (draw) {
    stats_reset(w, p, K);
    if (K > 1) alloc_rng_seed(&rng);
  }
  double ll = 0.0;
  for (int i = 0; i < n; i++) {
    const double *xi = w->Xr + (R_xlen_t) i * p, *ei = w->eta + (R_xlen_t) i * K;
    int *Ni = w->N + (R_xlen_t) i * K, wi = w->wi[i];
    double yi = d->y[i], mx = R_NegInf;
    int km = 0;
    for (int k = 0; k < K; k++) {
      double res = expert_resid(xi, par->alpha + (R_xlen_t) k * p, p, yi);
      double l = ei[k] + cst[k] - res * res * hp[k];
      lk[k] = l;
      if (l > mx) { mx = l; km = k; }
    }
    /* log-sum-exp; the largest term is exp(0) = 1, so one exp() is saved */
    double s = 0.0;
    for (int k = 0; k < K; k++) {
      lk[k] = k == km ? 1.0 : exp(lk[k] - mx);
      s += lk[k];
    }
    if (need_ll) {
      double emx = R_NegInf, se = 0.0;
      int em = 0;
      for (int k = 0; k < K; k++) if (ei[k] > emx) { emx = ei[k]; em = k; }
      for (int k = 0; k < K; k++) if (k != em) se += exp(ei[k] - emx);
      ll += wi * (mx + log(s) - emx - log1p(se));
    }
    if (!draw) continue;
    alloc_draw(K, wi, lk, s, Ni, &rng);
    alloc_stats(w, p, K, xi, yi, Ni);
  }
  return ll;
}

/* Conjugate draw of every (a_k, sigma2_k) given the sufficient statistics. */
static int update_experts(const moe_data *d, const moe_mcmc_prior *pr,
                          moe_mcmc_work *w, moe_par *par)
{
  int p = d->p, K = d->K, status = MOE_OK;
  double *A = w->A, *b = w->b, *m = w->m, *z = w->z;
  for (int k = 0; k < K; k++) {
    const double *S = w->XtX + (R_xlen_t) k * p * p, *sy = w->Xty + (R_xlen_t) k * p;
    for (int a = 0; a < p; a++) {
      for (int c = 0; c <= a; c++)
        A[a + c * p] = S[a + c * p] + pr->Va_inv[a + c * p];
      b[a] = sy[a] + pr->Va_inv_m[a];
    }
    int rc = chol_factor_ridge(p, A, w->Asave, 1e-10);
    if (rc < 0) return status | MOE_NOT_PD | MOE_NONFINITE;
    if (rc > 0) status |= MOE_NOT_PD;
    for (int a = 0; a < p; a++) m[a] = b[a];
    chol_solve_factored(p, A, m, 1);
    double bm = 0.0;
    for (int a = 0; a < p; a++) bm += b[a] * m[a];
    double Q = w->yty[k] + pr->m_Va_inv_m - bm;
    double shape = pr->c0 + 0.5 * w->nk[k], scale = pr->C0 + 0.5 * (Q > 0.0 ? Q : 0.0);
    double s2 = scale / rgamma(shape, 1.0);
    mvn_draw_chol(p, A, w->zero, z, b);
    /* A variance outside [MOE_S2_MIN, MOE_S2_MAX] is rejected and the expert
     * keeps its values: a Metropolis-Hastings step, with the untruncated
     * conditional as proposal, that is exact for the prior truncated to that
     * range. Only vague priors reach it, for empty experts: a draw from
     * InvGamma(0.01, 0.01) exceeds 1e100 with probability 0.1 and
     * overflows double precision with probability 0.0008. */
    if (!(s2 >= MOE_S2_MIN && s2 <= MOE_S2_MAX)) continue;
    double sd = sqrt(s2);
    double *ak = par->alpha + (R_xlen_t) k * p;
    for (int a = 0; a < p; a++) ak[a] = m[a] + sd * z[a];
    par->sigma2[k] = s2;
  }
  return status;
}

/*
 * Log density of p(W | allocations) up to a constant (a multinomial logistic
 * regression): sum_i sum_k N_ki eta_ik - wt_i log sum_k exp(eta_ik), eta = Z W,
 * plus the gating prior. Wf holds the m = q (K - 1) free coefficients,
 * column k of W at Wf + k q. Writes the gradient g (m) and the negative
 * Hessian H (m x m, lower triangle; the Fisher information, as the model is
 * a multinomial logit), rows and columns ordered (k, a) -> k q + a.
 * pk: K doubles of scratch.
 */
static double gate_joint_logpost(const moe_data *d, const moe_mcmc_prior *pr,
                                 const moe_mcmc_work *w, const double *Wf,
                                 double *g, double *H, double *pk)
{
  int n = d->n, q = d->q, K = d->K, m = q * (K - 1);
  double lp = 0.0;
  for (int t = 0; t < m; t++) g[t] = 0.0;
  for (R_xlen_t t = 0; t < (R_xlen_t) m * m; t++) H[t] = 0.0;
  for (int i = 0; i < n; i++) {
    const double *zi = w->Zr + (R_xlen_t) i * q;
    const int *Ni = w->N + (R_xlen_t) i * K;
    double wi = w->wi[i], mx = 0.0, s = 0.0;  /* the reference logit is 0 */
    int km = K - 1;
    for (int k = 0; k < K - 1; k++) {
      double e = 0.0;
      for (int a = 0; a < q; a++) e += zi[a] * Wf[a + k * q];
      pk[k] = e;
      lp += Ni[k] * e;
      if (e > mx) { mx = e; km = k; }
    }
    pk[K - 1] = 0.0;
    for (int k = 0; k < K; k++) {
      pk[k] = k == km ? 1.0 : exp(pk[k] - mx);
      s += pk[k];
    }
    lp -= wi * (mx + log(s));
    for (int k = 0; k < K - 1; k++) {
      pk[k] /= s;
      double r = Ni[k] - wi * pk[k];
      for (int a = 0; a < q; a++) g[k * q + a] += r * zi[a];
    }
    for (int k = 0; k < K - 1; k++) {
      for (int l = 0; l <= k; l++) {
        double h = wi * pk[k] * ((k == l ? 1.0 : 0.0) - pk[l]);
        for (int a = 0; a < q; a++) {
          double hz = h * zi[a];
          double *Hc = H + (R_xlen_t) (l * q) * m + k * q + a;
          int bmax = k == l ? a : q - 1;  /* lower triangle only */
          for (int b = 0; b <= bmax; b++) Hc[(R_xlen_t) b * m] += hz * zi[b];
        }
      }
    }
  }
  /* prior: per coordinate a, precision (I - 11'/K) / s_a^2 over the free
   * experts (exchangeable) or I / s_a^2 (independent) */
  double off = pr->exchangeable ? 1.0 / K : 0.0;
  for (int a = 0; a < q; a++) {
    double prec = 1.0 / pr->s_w2[a], sum = 0.0, ss = 0.0;
    for (int k = 0; k < K - 1; k++) {
      sum += Wf[a + k * q];
      ss += Wf[a + k * q] * Wf[a + k * q];
    }
    lp -= 0.5 * prec * (ss - off * sum * sum);
    for (int k = 0; k < K - 1; k++) {
      g[k * q + a] -= prec * (Wf[a + k * q] - off * sum);
      for (int l = 0; l <= k; l++)
        H[(k * q + a) + (R_xlen_t) (l * q + a) * m] += prec * ((k == l) - off);
    }
  }
  return lp;
}

/* (x - mu)' L L' (x - mu) for a lower Cholesky factor L (m x m); tmp: m. */
static double chol_quad(int m, const double *L, const double *x, const double *mu,
                        double *tmp)
{
  int one = 1;
  for (int a = 0; a < m; a++) tmp[a] = x[a] - mu[a];
  F77_CALL(dtrmv)("L", "T", "N", &m, L, &m, tmp, &one FCONE FCONE FCONE);
  double s = 0.0;
  for (int a = 0; a < m; a++) s += tmp[a] * tmp[a];
  return s;
}

/*
 * Metropolis-Hastings refresh of all gating vectors at once, targeting
 * p(W | allocations) with Gamerman's (1997) proposal: one Fisher-scoring
 * step from the current value, W* ~ N(W + H^{-1} g, H^{-1}) (g, H at W),
 * accepted with the Metropolis-Hastings ratio, whose reverse move uses the
 * step from W*. It leaves that conditional (and so the posterior) invariant.
 * It complements the one-vector-at-a-time Polya-Gamma steps where they mix
 * slowly: steep gates, whose augmented precision is dominated by the
 * observations far from the gating boundaries, and gating vectors that are
 * correlated a posteriori (the proposal uses the joint information).
 * Returns 1 when the proposal was accepted, -1 when a precision could not
 * be factorised (nothing changed), 0 otherwise.
 */
static int gate_mh_step(const moe_data *d, const moe_mcmc_prior *pr,
                        moe_mcmc_work *w, double *W)
{
  int q = d->q, K = d->K, m = q * (K - 1);
  double *H0 = w->H0, *H1 = w->H1, *g = w->g, *Ws = w->Ws, *mu = w->mu,
         *tm = w->tm, *pk = w->lk;
  double lp0 = gate_joint_logpost(d, pr, w, W, g, H0, pk);
  if (chol_factor_ridge(m, H0, w->Hsave, 0.0) != 0) return -1;
  for (int t = 0; t < m; t++) mu[t] = g[t];
  chol_solve_factored(m, H0, mu, 1);
  for (int t = 0; t < m; t++) mu[t] += W[t];
  mvn_draw_chol(m, H0, mu, Ws, tm);
  double lq_fwd = 0.5 * log_det_chol(m, H0) - 0.5 * chol_quad(m, H0, Ws, mu, tm);
  double lp1 = gate_joint_logpost(d, pr, w, Ws, g, H1, pk);
  if (!R_FINITE(lp1) || chol_factor_ridge(m, H1, w->Hsave, 0.0) != 0) return 0;
  for (int t = 0; t < m; t++) mu[t] = g[t];
  chol_solve_factored(m, H1, mu, 1);
  for (int t = 0; t < m; t++) mu[t] += Ws[t];
  double lq_rev = 0.5 * log_det_chol(m, H1) - 0.5 * chol_quad(m, H1, W, mu, tm);
  double log_ratio = lp1 - lp0 + lq_rev - lq_fwd;
  if (log(unif_rand()) < log_ratio) {
    for (int t = 0; t < m; t++) W[t] = Ws[t];
    return 1;
  }
  return 0;
}

/* Gating update given the allocations: with `pg`, a Polya-Gamma draw of
 * each non-reference gating vector in turn (w->eta must hold the logits at
 * the current W; it is kept up to date); with `mh`, then a joint
 * Metropolis-Hastings refresh of all of them. *accepted and *proposed count
 * the refreshes. */
static int update_gating(const moe_data *d, const moe_mcmc_prior *pr,
                         moe_mcmc_work *w, moe_par *par, int pg, int mh,
                         int *accepted, int *proposed)
{
  int n = d->n, q = d->q, K = d->K, status = MOE_OK;
  if (K < 2) return status;
  double *P = w->P, *r = w->r, *mw = w->mw;
  double vfac = pr->exchangeable ? (double) K / (K - 1) : 1.0;
  for (int k = 0; k < K - 1 && pg; k++) {
    for (int t = 0; t < q * q; t++) P[t] = 0.0;
    for (int a = 0; a < q; a++) r[a] = 0.0;
    for (int i = 0; i < n; i++) {
      const double *ei = w->eta + (R_xlen_t) i * K, *zi = w->Zr + (R_xlen_t) i * q;
      int wi = w->wi[i];
      /* C = log sum_{j != k} exp(eta_ij); its largest term is exp(0) = 1 */
      double mx = R_NegInf, s = 0.0;
      int jm = -1;
      for (int j = 0; j < K; j++) if (j != k && ei[j] > mx) { mx = ei[j]; jm = j; }
      for (int j = 0; j < K; j++) if (j != k && j != jm) s += exp(ei[j] - mx);
      double C = mx + log1p(s), psi = ei[k] - C;
      double om = wi == 1 ? rpg1(psi) : rpg(wi, psi);
      double t = (w->N[k + (R_xlen_t) i * K] - 0.5 * wi) + om * C;
      for (int a = 0; a < q; a++) {
        double oz = om * zi[a];
        r[a] += t * zi[a];
        for (int b = 0; b <= a; b++) P[a + b * q] += oz * zi[b];
      }
    }
    for (int a = 0; a < q; a++) {
      double b0 = 0.0, v = vfac * pr->s_w2[a];
      if (pr->exchangeable && K > 2) {
        for (int j = 0; j < K - 1; j++) if (j != k) b0 += par->W[a + j * q];
        b0 /= (K - 1);
      }
      P[a + a * q] += 1.0 / v;
      r[a] += b0 / v;
    }
    int rc = chol_factor_ridge(q, P, w->Psave, 1e-10);
    if (rc < 0) return status | MOE_NOT_PD | MOE_NONFINITE;
    if (rc > 0) status |= MOE_NOT_PD;
    for (int a = 0; a < q; a++) mw[a] = r[a];
    chol_solve_factored(q, P, mw, 1);
    double *wk = par->W + (R_xlen_t) k * q;
    mvn_draw_chol(q, P, mw, wk, w->zq);
    for (int a = 0; a < q; a++) if (!R_FINITE(wk[a])) status |= MOE_NONFINITE;
    eta_column(d, w, par->W, k);
  }
  if (mh && !(status & MOE_NONFINITE)) {
    (*proposed)++;
    int acc = gate_mh_step(d, pr, w, par->W);
    if (acc > 0) {
      (*accepted)++;
      for (int k = 0; k < K - 1; k++) eta_column(d, w, par->W, k);
    }
    if (acc < 0) status |= MOE_NOT_PD;
  }
  return status;
}

/*
 * ---- Collapsed gating update (ctl->gate_mode 3) ----
 *
 * Target: p(W | alpha, sigma2, y), the allocations integrated out,
 *   log pi(W) = log prior(W) + sum_i wt_i log sum_k g_k(z_i; W) f_ik,
 *   f_ik = N(y_i; x_i'a_k, sigma2_k),
 * with gradient sum_i wt_i (r_ik - g_ik) z_i (block k < K - 1; r the
 * responsibilities, g the gating probabilities at W) and negative Hessian
 * sum_i wt_i [G_i - R_i] (x) z_i z_i' + prior precision, where
 * G_i = diag(g_i) - g_i g_i' and R_i = diag(r_i) - r_i r_i' over the free
 * experts. G_i alone (plus the prior) is the complete-data (Fisher)
 * information of the gating; R_i is the information lost by not knowing the
 * allocations.
 */

/* Gating prior: adds log prior(W) (up to a constant) to *lp and its
 * gradient to g (m). Per coordinate a the precision over the free experts is
 * (I - 11'/K) / s_a^2 (exchangeable) or I / s_a^2 (independent). */
static void gate_prior_grad(const moe_mcmc_prior *pr, int q, int K,
                            const double *Wf, double *g, double *lp)
{
  double off = pr->exchangeable ? 1.0 / K : 0.0;
  for (int a = 0; a < q; a++) {
    double prec = 1.0 / pr->s_w2[a], sum = 0.0, ss = 0.0;
    for (int k = 0; k < K - 1; k++) {
      sum += Wf[a + k * q];
      ss += Wf[a + k * q] * Wf[a + k * q];
    }
    *lp -= 0.5 * prec * (ss - off * sum * sum);
    for (int k = 0; k < K - 1; k++) g[k * q + a] -= prec * (Wf[a + k * q] - off * sum);
  }
}

/*
 * One pass over the observations at gating coefficients Wf (m = q (K - 1)
 * free coefficients, column k at Wf + k q) and the experts in par.
 * With `fresh`, the expert densities are computed and saved first:
 * w->F[k + i K] = f_ik / max_j f_ij and w->lmx[i] = log max_j f_ij (they
 * depend on alpha and sigma2 only, so a pass at another W with fresh = 0
 * reuses them and computes no expert means). With `known`, G (K x n,
 * observation-major) holds the gating probabilities at Wf on entry, as a
 * pass at the same Wf (or cond_refresh()) left them; otherwise they are
 * computed, from Wf alone (gate_probs_obs() does the same operations), and
 * written to G. So a pass costs K - 1 exp() per observation, and no log():
 * the ratios p(y_i) / max_k f_ik, all in (1e-250, 1], are multiplied and
 * their product is logged every few observations.
 * Writes r (K x n, observation-major) the responsibilities, g (m) the
 * gradient of log pi, w->hg and w->hr the packed blocks of sum_i wt_i G_i
 * (x) z_i z_i' and sum_i wt_i R_i (x) z_i z_i' (block (k, l), l <= k < K -
 * 1, at (k (k + 1) / 2 + l) Tq, each q x q block packed lower by columns,
 * Tq = q (q + 1) / 2), and *ll = sum_i wt_i log p(y_i | x_i, z_i).
 * Returns log pi(W) up to a constant.
 */
/* size of the stack accumulators of the passes */
#define MOE_NLOC 32
/*
 * Speed of the passes (they are nearly all of a collapsed chain's time);
 * one chain of 2000 sweeps, n = 1000, K = 3, went 0.31 -> 0.28 s with the
 * stages, -> 0.18 s with the unrolling and -> 0.17 s with moe_exp():
 * - each pass runs over blocks of MOE_BLOCK observations in stages: the
 *   exp() calls first, then the probabilities and the log-likelihood, then
 *   the accumulation, which reads the stored probabilities in a separate
 *   loop (a load right after the scalar stores of the same values stalls);
 * - MOE_UNROLL (defined at the top) asks GCC to unroll the loops over
 *   experts and covariates completely in the sized instances (constant
 *   dimensions) before its loop optimisations, so that the accumulators of the gradient and of the
 *   information live in registers instead of being loaded and stored once
 *   per observation. In the generic instance it is a partial unrolling
 *   hint. Other compilers get no hint and the same results.
 * Neither changes any operation or the order of any sum: the draws are the
 * same bits as with one plain loop (moe_exp() is within one ulp of exp(),
 * see moe_exp.h).
 */
#define MOE_BLOCK 64

/* Logits of observation i (eta, K; the reference logit, the last, is 0),
 * z_i' w_k from the free coefficients Wf; returns the index of the largest
 * (the reference when none is positive) and its value in *max. The only
 * place the passes compute logits, so all of them see the same bits. */
MOE_INLINE int gate_logits_obs(const double *zi, const double *Wf, int q, int K, double *eta,
                               double *max)
{
  double emx = 0.0;
  int em = K - 1;
  MOE_UNROLL
  for (int k = 0; k < K - 1; k++) {
    double e = 0.0;
    MOE_UNROLL
    for (int a = 0; a < q; a++) e += zi[a] * Wf[a + k * q];
    eta[k] = e;
    if (e > emx) { emx = e; em = k; }
  }
  eta[K - 1] = 0.0;
  *max = emx;
  return em;
}

/*
 * One observation's terms of the gradient (ga, m) and of the information
 * blocks (hg, packed as in marg_pass_sized()) of the gating, from its
 * gating probabilities Gi (K) and weight wi: with `collapsed`, those of the
 * collapsed target log pi (responsibilities ri: gradient wi (r - g) (x) z,
 * information wi [G_i - R_i] (x) z z'); otherwise those of p(W |
 * allocations) (counts Ni: gradient (N - wi g) (x) z, information
 * wi G_i (x) z z'). zz: Tq doubles of scratch. `collapsed` is a constant
 * at every call, so each caller gets its own branch-free copy.
 */
MOE_INLINE void pass_accumulate(int q, int K, int collapsed, const double *zi, int wi,
                                const double *Gi, const double *ri, const int *Ni,
                                double *restrict ga, double *restrict hg, double *restrict zz)
{
  int Tq = q * (q + 1) / 2;
  MOE_UNROLL
  for (int k = 0; k < K - 1; k++) {
    double v = collapsed ? wi * (ri[k] - Gi[k]) : Ni[k] - wi * Gi[k];
    MOE_UNROLL
    for (int a = 0; a < q; a++) ga[k * q + a] += v * zi[a];
  }
  int t = 0;
  MOE_UNROLL
  for (int b = 0; b < q; b++)
    MOE_UNROLL
    for (int a = b; a < q; a++) zz[t++] = zi[a] * zi[b];
  MOE_UNROLL
  for (int k = 0, blk = 0; k < K - 1; k++) {
    MOE_UNROLL
    for (int l = 0; l <= k; l++, blk++) {
      double dl = k == l ? 1.0 : 0.0;
      double c = collapsed ? wi * (Gi[k] * (dl - Gi[l]) - ri[k] * (dl - ri[l]))
                           : wi * Gi[k] * (dl - Gi[l]);
      double *bh = hg + blk * Tq;
      MOE_UNROLL
      for (int u = 0; u < Tq; u++) bh[u] += c * zz[u];
    }
  }
}

MOE_INLINE double marg_pass_sized(const moe_data *d, const moe_mcmc_prior *pr,
                                  moe_mcmc_work *w, const moe_par *par,
                                  const double *Wf, int fresh, int known,
                                  double *G, double *r, double *g, double *ll,
                                  int p, int q, int K)
{
  int n = d->n, m = q * (K - 1);
  int Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  /* the accumulators on the stack when they fit (always for the sized
   * models), so that the compiler can keep them in registers; the sums are
   * formed in the same order either way */
  double gl[MOE_NLOC], hl[MOE_NLOC], zl[MOE_NLOC], el[MOE_NLOC];
  int loc = m <= MOE_NLOC && P * Tq <= MOE_NLOC && Tq <= MOE_NLOC && K <= MOE_NLOC;
  double *eta = loc ? el : w->lk, *zz = loc ? zl : w->zz, *hg = loc ? hl : w->hg;
  double *ga = loc ? gl : g;
  double *cst = w->cst, *hp = w->hp;
  if (fresh) {
    MOE_UNROLL
    for (int k = 0; k < K; k++) {
      cst[k] = -0.5 * (LOG_2PI + log(par->sigma2[k]));
      hp[k] = 0.5 / par->sigma2[k];
    }
  }
  for (int t = 0; t < m; t++) ga[t] = 0.0;
  for (int t = 0; t < P * Tq; t++) hg[t] = 0.0;
  double lsum = 0.0, lacc = 0.0, prod = 1.0;
  for (int i0 = 0; i0 < n; i0 += MOE_BLOCK) {
    int i1 = n - i0 > MOE_BLOCK ? i0 + MOE_BLOCK : n;
    /* stage 1: the exponentials of a block of observations (the only
     * library calls of the common path), apart from the later stages; the
     * operations of each observation are the same as in one loop */
    for (int i = i0; i < i1; i++) {
      const double *zi = w->Zr + (R_xlen_t) i * q;
      double *Fi = w->F + (R_xlen_t) i * K, *Gi = G + (R_xlen_t) i * K;
      if (fresh) {
        const double *xi = w->Xr + (R_xlen_t) i * p;
        double yi = d->y[i], mx = R_NegInf;
        int km = 0;
        MOE_UNROLL
        for (int k = 0; k < K; k++) {
          double res = expert_resid(xi, par->alpha + (R_xlen_t) k * p, p, yi);
          double l = cst[k] - res * res * hp[k];
          Fi[k] = l;
          if (l > mx) { mx = l; km = k; }
        }
        MOE_UNROLL
        for (int k = 0; k < K; k++) Fi[k] = k == km ? 1.0 : moe_exp(Fi[k] - mx);
        w->lmx[i] = mx;
      }
      if (!known) {
        /* gating probabilities, unnormalised */
        double emx;
        int em = gate_logits_obs(zi, Wf, q, K, eta, &emx);
        MOE_UNROLL
        for (int k = 0; k < K; k++) Gi[k] = k == em ? 1.0 : moe_exp(eta[k] - emx);
      }
    }
    /* stage 2: probabilities, responsibilities and the log-likelihood */
    for (int i = i0; i < i1; i++) {
      const double *zi = w->Zr + (R_xlen_t) i * q;
      double *Fi = w->F + (R_xlen_t) i * K, *ri = r + (R_xlen_t) i * K;
      double *Gi = G + (R_xlen_t) i * K;
      int wi = w->wi[i];
      /* sf = sum_k g_k f_ik / max_j f_ij, in (0, 1]; r_k = g_k f_ik / (...) */
      double sf = 0.0, ratio = 0.0;
      if (!known) {
        double se = 0.0;
        MOE_UNROLL
        for (int k = 0; k < K; k++) {
          double e = Gi[k];
          ri[k] = e * Fi[k];
          se += e;
          sf += ri[k];
        }
        /* G from W alone (no expert density enters its rounding), so that a
         * continued chain, which recomputes G at its starting W, sees the
         * same bits as one long run; se is in [1, K] */
        double ig = 1.0 / se, ir = 1.0 / sf;
        MOE_UNROLL
        for (int k = 0; k < K; k++) {
          Gi[k] *= ig;
          ri[k] *= ir;
        }
        ratio = sf * ig;
      } else {
        MOE_UNROLL
        for (int k = 0; k < K; k++) {
          ri[k] = Gi[k] * Fi[k];
          sf += ri[k];
        }
        double ir = 1.0 / sf;
        MOE_UNROLL
        for (int k = 0; k < K; k++) ri[k] *= ir;
        ratio = sf;
      }
      if (ratio > 1e-250) {
        lsum += wi * w->lmx[i];
        if (wi == 1) {
          if (prod < 1e-50) { lacc += log(prod); prod = 1.0; }
          prod *= ratio;
        } else {
          lacc += wi * log(ratio);
        }
      } else {
        /* the gate and the experts disagree so much that the products
         * underflowed: this observation again, in log space (rare) */
        const double *xi = w->Xr + (R_xlen_t) i * p;
        double emx, sg = 0.0, tm = R_NegInf, s = 0.0;
        gate_logits_obs(zi, Wf, q, K, eta, &emx);
        MOE_UNROLL
        for (int k = 0; k < K; k++) {
          double res = expert_resid(xi, par->alpha + (R_xlen_t) k * p, p, d->y[i]);
          sg += exp(eta[k] - emx);
          ri[k] = eta[k] - emx + cst[k] - res * res * hp[k];
          if (ri[k] > tm) tm = ri[k];
        }
        MOE_UNROLL
        for (int k = 0; k < K; k++) {
          ri[k] = exp(ri[k] - tm);
          s += ri[k];
        }
        MOE_UNROLL
        for (int k = 0; k < K; k++) ri[k] /= s;
        lacc += wi * (tm + log(s) - log(sg));
        /* G, computed above from W alone, is valid: se >= 1 */
      }
    }
    /* stage 3: the gradient and the information, from G and r as stored by
     * stage 2 (a separate loop, so that their loads do not wait on the
     * stores just made) */
    for (int i = i0; i < i1; i++) {
      pass_accumulate(q, K, 1, w->Zr + (R_xlen_t) i * q, w->wi[i], G + (R_xlen_t) i * K,
                      r + (R_xlen_t) i * K, NULL, ga, hg, zz);
    }
  }
  if (loc) {
    for (int t = 0; t < m; t++) g[t] = ga[t];
    for (int t = 0; t < P * Tq; t++) w->hg[t] = hg[t];
  }
  *ll = lsum + (lacc + log(prod));
  double lp = *ll;
  gate_prior_grad(pr, q, K, Wf, g, &lp);
  return lp;
}

/* marg_pass_sized() with the dimensions as constants for the common small
 * models, so that the compiler unrolls the loops over experts and
 * covariates (the results are the same: no operation is reordered). */
static double marg_pass(const moe_data *d, const moe_mcmc_prior *pr,
                        moe_mcmc_work *w, const moe_par *par, const double *Wf,
                        int fresh, int known, double *G, double *r,
                        double *g, double *ll)
{
  int p = d->p, q = d->q, K = d->K;
#define MARG_CASE(P_, Q_, K_)                                                \
  if (p == P_ && q == Q_ && K == K_)                                         \
    return marg_pass_sized(d, pr, w, par, Wf, fresh, known, G, r, g, ll, P_, \
                           Q_, K_);
  MARG_CASE(2, 2, 2) MARG_CASE(2, 2, 3) MARG_CASE(2, 2, 4)
  MARG_CASE(3, 3, 2) MARG_CASE(3, 3, 3) MARG_CASE(3, 3, 4)
#undef MARG_CASE
  return marg_pass_sized(d, pr, w, par, Wf, fresh, known, G, r, g, ll, p, q, K);
}

/* The blocks of sum_i wt_i G_i (x) z_i z_i' (the complete-data information)
 * into w->hg, from the gating probabilities G (K x n) saved by a pass. */
static void marg_fisher_blocks(const moe_data *d, moe_mcmc_work *w, const double *G)
{
  int n = d->n, q = d->q, K = d->K, Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  double *hg = w->hg, *zz = w->zz;
  for (int t = 0; t < P * Tq; t++) hg[t] = 0.0;
  for (int i = 0; i < n; i++) {
    const double *zi = w->Zr + (R_xlen_t) i * q, *Gi = G + (R_xlen_t) i * K;
    int wi = w->wi[i], t = 0;
    for (int b = 0; b < q; b++)
      for (int a = b; a < q; a++) zz[t++] = zi[a] * zi[b];
    for (int k = 0, blk = 0; k < K - 1; k++) {
      for (int l = 0; l <= k; l++, blk++) {
        double c = wi * Gi[k] * ((k == l ? 1.0 : 0.0) - Gi[l]);
        double *bh = hg + blk * Tq;
        for (int u = 0; u < Tq; u++) bh[u] += c * zz[u];
      }
    }
  }
}

/* H (m x m, lower triangle) = the blocks in w->hg + the prior precision. */
static void marg_hessian(const moe_mcmc_prior *pr, const moe_mcmc_work *w,
                         int q, int K, double *H)
{
  int m = q * (K - 1), Tq = q * (q + 1) / 2;
  for (int k = 0, blk = 0; k < K - 1; k++) {
    for (int l = 0; l <= k; l++, blk++) {
      const double *bh = w->hg + blk * Tq;
      int t = 0;
      for (int b = 0; b < q; b++) {
        for (int a = b; a < q; a++, t++) {
          H[(k * q + a) + (R_xlen_t) (l * q + b) * m] = bh[t];
          if (k > l) H[(k * q + b) + (R_xlen_t) (l * q + a) * m] = bh[t];
        }
      }
    }
  }
  double off = pr->exchangeable ? 1.0 / K : 0.0;
  for (int a = 0; a < q; a++) {
    double prec = 1.0 / pr->s_w2[a];
    for (int k = 0; k < K - 1; k++)
      for (int l = 0; l <= k; l++)
        H[(k * q + a) + (R_xlen_t) (l * q + a) * m] += prec * ((k == l) - off);
  }
}

/*
 * The proposal at a point, after marg_pass() there: the lower Cholesky
 * factor L (m x m) of the proposal precision and its mean mu = W + (L L')^{-1}
 * g (a Newton step on log pi). The precision is the negative Hessian of
 * log pi (htype 0; the pass accumulated it) when that is positive definite,
 * else, and always with htype 1, the complete-data information (positive
 * definite with the prior), so it is a deterministic function of the
 * point, as the Metropolis-Hastings ratio requires. G: the gating
 * probabilities at the point. Returns 0, or -1 when no precision could be
 * factorised.
 */
static int marg_proposal(const moe_data *d, const moe_mcmc_prior *pr,
                         moe_mcmc_work *w, const double *Wf, const double *G,
                         const double *g, double *L, double *mu)
{
  int q = d->q, K = d->K, m = q * (K - 1), info = 0;
  marg_hessian(pr, w, q, K, L);
  F77_CALL(dpotrf)("L", &m, L, &m, &info FCONE);
  if (info != 0) {
    marg_fisher_blocks(d, w, G);
    marg_hessian(pr, w, q, K, L);
    if (chol_factor_ridge(m, L, w->Hsave, 0.0) != 0) return -1;
  }
  for (int t = 0; t < m; t++) mu[t] = g[t];
  chol_solve_factored(m, L, mu, 1);
  for (int t = 0; t < m; t++) mu[t] += Wf[t];
  return 0;
}

static double cond_logpost(const moe_data *d, const moe_mcmc_prior *pr,
                           moe_mcmc_work *w, const double *Wf, double *G,
                           int known, int draw, double *g);

/*
 * The collapsed gating update and the allocation draw: `steps` Metropolis-
 * Hastings steps on W targeting log pi (proposal N(mu, (L L')^{-1}) from
 * marg_proposal() at the current point; Gamerman's scheme with the
 * collapsed target), then the allocations from p(c | W, alpha, sigma2, y)
 * (the responsibilities saved by the pass at the final W) and the
 * sufficient statistics, in the pass of cond_logpost() at the final W that
 * also gives the refresh its log target (*lp_cond), gradient (w->g) and
 * information (w->hg). (W, c) is thus drawn jointly given (alpha, sigma2)
 * (exactly, up to the Metropolis-Hastings step), a valid block of the
 * Gibbs sampler; see moe_mcmc_run(). Returns the log-likelihood at the
 * entry values (W, alpha, sigma2); *accepted and *proposed count accepted
 * and proposed steps; *status gets MOE_NOT_PD when no proposal precision
 * could be factorised.
 */
static double update_gating_alloc_marg(const moe_data *d, const moe_mcmc_prior *pr,
                                       moe_mcmc_work *w, moe_par *par, int steps,
                                       int *accepted, int *proposed, int *status,
                                       double *lp_cond)
{
  int q = d->q, K = d->K, m = q * (K - 1);
  double *W = par->W, *Ws = w->Ws, *tm = w->tm, *t;
  double *g0 = w->g, *L0 = w->H0, *mu0 = w->mu;
  double *g1 = w->g1, *L1 = w->H1, *mu1 = w->mu1;
  double ll0, ll1;
  /* w->pA holds the gating probabilities at W (see marg_pass()) */
  double lp0 = marg_pass(d, pr, w, par, W, 1, 1, w->pA, w->rA, g0, &ll0);
  int ok0 = marg_proposal(d, pr, w, W, w->pA, g0, L0, mu0) == 0;
  if (!ok0) *status |= MOE_NOT_PD;
  for (int s = 0; s < steps && ok0; s++) {
    (*proposed)++;
    mvn_draw_chol(m, L0, mu0, Ws, tm);
    double lq_fwd = 0.5 * log_det_chol(m, L0) - 0.5 * chol_quad(m, L0, Ws, mu0, tm);
    double lp1 = marg_pass(d, pr, w, par, Ws, 0, 0, w->pB, w->rB, g1, &ll1);
    double u = unif_rand();
    if (!R_FINITE(lp1) || marg_proposal(d, pr, w, Ws, w->pB, g1, L1, mu1) != 0)
      continue;
    double lq_rev = 0.5 * log_det_chol(m, L1) - 0.5 * chol_quad(m, L1, W, mu1, tm);
    if (log(u) < lp1 - lp0 + lq_rev - lq_fwd) {
      for (int a = 0; a < m; a++) W[a] = Ws[a];
      t = w->rA; w->rA = w->rB; w->rB = t;
      t = w->pA; w->pA = w->pB; w->pB = t;
      t = g0; g0 = g1; g1 = t;
      t = L0; L0 = L1; L1 = t;
      t = mu0; mu0 = mu1; mu1 = t;
      lp0 = lp1;
      (*accepted)++;
    }
  }
  /* the allocations, fused with the pass of the refresh at the same W */
  *lp_cond = cond_logpost(d, pr, w, W, w->pA, 1, 1, w->g);
  return ll0;
}

/*
 * The refresh given the allocations in the collapsed mode: the move of
 * gate_mh_step() (target p(W | allocations), proposal one Fisher-scoring
 * step), computed from the gating probabilities the collapsed update keeps
 * (w->pA, at the current W) so that only the proposal costs a pass with
 * exp(). The complete-data log-likelihood of observation i is written
 * sum_k N_ik (eta_ik - eta_i,em) + wt_i log g_i,em (em the largest logit,
 * whose probability is >= 1 / K), which is finite whatever the other
 * probabilities.
 */

/* Logits of observation i (eta, K) and, when G is not NULL, its gating
 * probabilities, by the operations of marg_pass() (so, the same bits).
 * Returns the index of the largest logit. */
MOE_INLINE int gate_probs_obs(const double *zi, const double *Wf, int q, int K,
                              double *eta, double *Gi)
{
  double emx, se = 0.0;
  int em = gate_logits_obs(zi, Wf, q, K, eta, &emx);
  if (Gi == NULL) return em;
  MOE_UNROLL
  for (int k = 0; k < K; k++) {
    double e = k == em ? 1.0 : moe_exp(eta[k] - emx);
    Gi[k] = e;
    se += e;
  }
  double ig = 1.0 / se;
  MOE_UNROLL
  for (int k = 0; k < K; k++) Gi[k] *= ig;
  return em;
}

/* log p(W | allocations) up to a constant and its gradient g (m) at Wf,
 * and the blocks of the complete-data information sum_i wt_i G_i (x) z_i z_i'
 * into w->hg (as marg_fisher_blocks()); G (K x n) holds the gating
 * probabilities at Wf (known) or receives them. With `draw` (then known
 * must be 1 and G is w->pA, at the current W) each observation's
 * allocation is first drawn from the responsibilities in w->rA and added
 * to the sufficient statistics of the experts (the step that ends
 * update_gating_alloc_marg(), fused with this pass, which the refresh
 * makes next at the same W and allocations). */
MOE_INLINE double cond_logpost_sized(const moe_data *d, const moe_mcmc_prior *pr,
                                     moe_mcmc_work *w, const double *Wf, double *G,
                                     int known, int draw, double *g, int p, int q,
                                     int K)
{
  int n = d->n, m = q * (K - 1), Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  /* the log g_i,em (each >= log(1 / K)) are summed as the log of their
   * product, taken every few observations: one log() per ~100 */
  double lp = 0.0, prod = 1.0;
  /* stack accumulators when they fit, as in marg_pass_sized() */
  double gl[MOE_NLOC], hl[MOE_NLOC], zl[MOE_NLOC], el[MOE_NLOC];
  int loc = m <= MOE_NLOC && P * Tq <= MOE_NLOC && Tq <= MOE_NLOC && K <= MOE_NLOC;
  double *eta = loc ? el : w->lk, *zz = loc ? zl : w->zz, *hg = loc ? hl : w->hg;
  double *ga = loc ? gl : g;
  for (int t = 0; t < m; t++) ga[t] = 0.0;
  for (int t = 0; t < P * Tq; t++) hg[t] = 0.0;
  alloc_rng rng;
  if (draw) {
    stats_reset(w, p, K);
    alloc_rng_seed(&rng);
  }
  for (int i0 = 0; i0 < n; i0 += MOE_BLOCK) {
    int i1 = n - i0 > MOE_BLOCK ? i0 + MOE_BLOCK : n;
    /* stage 1: allocations, gating probabilities and the log target of a
     * block of observations */
    for (int i = i0; i < i1; i++) {
      const double *zi = w->Zr + (R_xlen_t) i * q;
      int *Ni = w->N + (R_xlen_t) i * K;
      double *Gi = G + (R_xlen_t) i * K;
      int wi = w->wi[i], ci = 0;
      if (draw) {
        const double *ri = w->rA + (R_xlen_t) i * K, *xi = w->Xr + (R_xlen_t) i * p;
        double yi = d->y[i];
        if (wi == 1) {
          /* categorical draw, and the observation added to its expert */
          double u = alloc_unif(&rng), acc = ri[0];
          while (acc < u && ci < K - 1) acc += ri[++ci];
          MOE_UNROLL
          for (int j = 0; j < K; j++) Ni[j] = 0;
          Ni[ci] = 1;
          double *S = w->XtX + (R_xlen_t) ci * p * p, *sy = w->Xty + (R_xlen_t) ci * p;
          w->nk[ci] += 1.0;
          w->yty[ci] += yi * yi;
          MOE_UNROLL
          for (int a = 0; a < p; a++) {
            sy[a] += yi * xi[a];
            MOE_UNROLL
            for (int b = 0; b <= a; b++) S[a + b * p] += xi[a] * xi[b];
          }
        } else {
          alloc_draw(K, wi, ri, 1.0, Ni, &rng);
          alloc_stats(w, p, K, xi, yi, Ni);
        }
      } else if (known && wi == 1) {
        while (ci < K - 1 && !Ni[ci]) ci++;
      }
      if (known && wi == 1 && Gi[ci] > 1e-200) {
        /* the logits are not needed: the term is log g_ic (c the expert of
         * the observation), taken into the product (>= 1e-250, no underflow) */
        if (prod < 1e-50) { lp += log(prod); prod = 1.0; }
        prod *= Gi[ci];
      } else {
        int em = gate_probs_obs(zi, Wf, q, K, eta, known ? NULL : Gi);
        MOE_UNROLL
        for (int k = 0; k < K; k++) if (Ni[k]) lp += Ni[k] * (eta[k] - eta[em]);
        if (wi == 1) {
          if (prod < 1e-50) { lp += log(prod); prod = 1.0; }
          prod *= Gi[em];
        } else {
          lp += wi * log(Gi[em]);
        }
      }
    }
    /* stage 2: the gradient and the information (a separate loop, as in
     * marg_pass_sized()) */
    for (int i = i0; i < i1; i++) {
      pass_accumulate(q, K, 0, w->Zr + (R_xlen_t) i * q, w->wi[i], G + (R_xlen_t) i * K,
                      NULL, w->N + (R_xlen_t) i * K, ga, hg, zz);
    }
  }
  if (loc) {
    for (int t = 0; t < m; t++) g[t] = ga[t];
    for (int t = 0; t < P * Tq; t++) w->hg[t] = hg[t];
  }
  lp += log(prod);
  gate_prior_grad(pr, q, K, Wf, g, &lp);
  return lp;
}

/* cond_logpost_sized() with constant dimensions for the common models (as
 * marg_pass()). */
static double cond_logpost(const moe_data *d, const moe_mcmc_prior *pr,
                           moe_mcmc_work *w, const double *Wf, double *G,
                           int known, int draw, double *g)
{
  int p = d->p, q = d->q, K = d->K;
#define COND_CASE(P_, Q_, K_)                                                  \
  if (p == P_ && q == Q_ && K == K_)                                           \
    return cond_logpost_sized(d, pr, w, Wf, G, known, draw, g, P_, Q_, K_);
  COND_CASE(2, 2, 2) COND_CASE(2, 2, 3) COND_CASE(2, 2, 4)
  COND_CASE(3, 3, 2) COND_CASE(3, 3, 3) COND_CASE(3, 3, 4)
#undef COND_CASE
  return cond_logpost_sized(d, pr, w, Wf, G, known, draw, g, p, q, K);
}

/* Proposal at Wf for cond_refresh(), after cond_logpost() there: precision
 * L L' (the complete-data information and the prior), mean
 * Wf + (L L')^{-1} g. Returns 0 or -1. */
static int cond_proposal(const moe_data *d, const moe_mcmc_prior *pr,
                         moe_mcmc_work *w, const double *Wf, const double *g,
                         double *L, double *mu)
{
  int q = d->q, K = d->K, m = q * (K - 1);
  marg_hessian(pr, w, q, K, L);
  if (chol_factor_ridge(m, L, w->Hsave, 0.0) != 0) return -1;
  for (int t = 0; t < m; t++) mu[t] = g[t];
  chol_solve_factored(m, L, mu, 1);
  for (int t = 0; t < m; t++) mu[t] += Wf[t];
  return 0;
}

/* One Metropolis-Hastings step on W given the allocations (w->N), from the
 * gating probabilities at W in w->pA, which it keeps up to date, and
 * lp0, w->g, w->hg at W as cond_logpost() left them (the pass that drew the
 * allocations). Returns 1 when accepted, -1 when a precision could not be
 * factorised, else 0. */
static int cond_refresh(const moe_data *d, const moe_mcmc_prior *pr,
                        moe_mcmc_work *w, double *W, double lp0)
{
  int m = d->q * (d->K - 1);
  double *Ws = w->Ws, *tm = w->tm;
  if (cond_proposal(d, pr, w, W, w->g, w->H0, w->mu) != 0) return -1;
  mvn_draw_chol(m, w->H0, w->mu, Ws, tm);
  double lq_fwd = 0.5 * log_det_chol(m, w->H0) - 0.5 * chol_quad(m, w->H0, Ws, w->mu, tm);
  double lp1 = cond_logpost(d, pr, w, Ws, w->pB, 0, 0, w->g1);
  if (!R_FINITE(lp1) || cond_proposal(d, pr, w, Ws, w->g1, w->H1, w->mu1) != 0)
    return 0;
  double lq_rev = 0.5 * log_det_chol(m, w->H1) - 0.5 * chol_quad(m, w->H1, W, w->mu1, tm);
  if (log(unif_rand()) < lp1 - lp0 + lq_rev - lq_fwd) {
    for (int a = 0; a < m; a++) W[a] = Ws[a];
    double *t = w->pA; w->pA = w->pB; w->pB = t;
    return 1;
  }
  return 0;
}

static void store_draw(const moe_data *d, const moe_par *par,
                       moe_mcmc_draws *out, int slot)
{
  int p = d->p, q = d->q, K = d->K;
  R_xlen_t pa = (R_xlen_t) p * K, qa = (R_xlen_t) q * K;
  for (R_xlen_t t = 0; t < pa; t++) out->alpha[t + slot * pa] = par->alpha[t];
  for (int k = 0; k < K; k++) out->sigma2[k + (R_xlen_t) slot * K] = par->sigma2[k];
  for (R_xlen_t t = 0; t < qa; t++) out->W[t + slot * qa] = par->W[t];
}

int moe_mcmc_run(const moe_data *d, const moe_mcmc_prior *pr,
                 const moe_mcmc_control *ctl, moe_par *par,
                 moe_mcmc_draws *out, moe_mcmc_work *w)
{
  int n = d->n, q = d->q, K = d->K, status = MOE_OK;
  int total = ctl->warmup + ctl->iter, kept = 0, pending = -1, t;
  int collapsed = ctl->gate_mode == 3, stalled = 0;
  int pg_every = ctl->pg_every, acc_late = 0, prop_late = 0;
  int *cnt = out->accept;
  for (int a = 0; a < MOE_NACC; a++) cnt[a] = 0;
  for (int k = 0; k < K - 1; k++) eta_column(d, w, par->W, k);
  for (int i = 0; i < n; i++) w->eta[K - 1 + (R_xlen_t) i * K] = 0.0;
  if (collapsed && K > 1) {
    /* the gating probabilities at the starting W, computed by the same code
     * as in every later pass, so a continued chain sees identical values */
    double ll0;
    marg_pass(d, pr, w, par, par->W, 1, 0, w->pA, w->rA, w->g, &ll0);
  }

  GetRNGstate();
  for (t = 1; t <= total; t++) {
    R_CheckUserInterrupt();
    int warm = t <= ctl->warmup;
    int *acc = cnt + (warm ? MOE_ACC_WARMUP : MOE_ACC_SAMPLING);
    int *prop = cnt + (warm ? MOE_PROP_WARMUP : MOE_PROP_SAMPLING);
    int acc0 = *acc, prop0 = *prop;
    /* Polya-Gamma draw of the gating in this sweep (modes 2 and 3): on a
     * fixed schedule after warm-up, and in warm-up while the Metropolis-
     * Hastings moves are stuck (see below) */
    int pg = ctl->gate_mode <= 1 ||
      (K > 1 && (warm ? stalled >= MOE_STALL_SWEEPS :
                 pg_every > 0 && (ctl->offset + t - ctl->warmup) % pg_every == 0));
    double ll;
    if (collapsed) {
      double lpc = 0.0;
      ll = K > 1 ? update_gating_alloc_marg(d, pr, w, par, ctl->gate_steps, acc, prop,
                                            &status, &lpc)
                 : update_alloc(d, w, par, 1, pending >= 0);
      /* the refresh given the allocations: the target of the collapsed
       * steps need not be log-concave; given the allocations it is */
      if (K > 1) {
        (*prop)++;
        int rc = cond_refresh(d, pr, w, par->W, lpc);
        if (rc > 0) (*acc)++;
        if (rc < 0) status |= MOE_NOT_PD;
      }
    } else {
      ll = update_alloc(d, w, par, 1, pending >= 0);
    }
    if (pending >= 0) {
      out->loglik[pending] = ll;
      if (!R_FINITE(ll)) status |= MOE_NONFINITE;
      pending = -1;
    }
    if (collapsed && K > 1 && pg && !(status & MOE_NONFINITE)) {
      /* the Polya-Gamma draw given the allocations just drawn, from the
       * logits at the current W; then the gating probabilities at the new W
       * that the next sweep's pass takes as known (gate_probs_obs() makes
       * the operations of the passes, so the bits are the same) */
      for (int k = 0; k < K - 1; k++) eta_column(d, w, par->W, k);
      status |= update_gating(d, pr, w, par, 1, 0, acc, prop);
      for (int i = 0; i < n; i++)
        gate_probs_obs(w->Zr + (R_xlen_t) i * q, par->W, q, K, w->lk,
                       w->pA + (R_xlen_t) i * K);
    }
    status |= update_experts(d, pr, w, par);
    if (!collapsed && !(status & MOE_NONFINITE))
      status |= update_gating(d, pr, w, par, pg, ctl->gate_mode >= 1, acc, prop);
    if (K > 1 && pg && ctl->gate_mode >= 2) cnt[warm ? MOE_PG_WARMUP : MOE_PG_SAMPLING]++;
    /* A Metropolis-Hastings proposal built from the current point (a Newton
     * or Fisher-scoring step) can overshoot so far from a poor start that
     * the reverse move is never proposed, and the chain would stay there
     * for ever. Warm-up sweeps after MOE_STALL_SWEEPS sweeps in a row
     * without an accepted move therefore also make the Polya-Gamma draw, a
     * Gibbs step that always moves; warm-up draws are discarded, so this
     * history-dependent choice does not change the posterior. After warm-up
     * the schedule is fixed (every pg_every-th sweep), which keeps the
     * chain irreducible and the kernel invariant. */
    stalled = *acc > acc0 ? 0 : stalled + 1;
    /* Where the moves are stuck in the second half of warm-up (fewer than
     * MOE_STALL_RATE accepted), the chain sits where the proposals do not
     * fit the target (typically an expert with nearly no gate weight,
     * where the gating prior is flat up to a steep wall); its sampling
     * phase then makes the Polya-Gamma draw in every sweep. Chosen once,
     * at the end of warm-up, and kept by continuations. */
    if (warm && 2 * t > ctl->warmup) {
      acc_late += *acc - acc0;
      prop_late += *prop - prop0;
      if (t == ctl->warmup && K > 1 && ctl->gate_mode >= 2 && prop_late > 0 &&
          acc_late < MOE_STALL_RATE * prop_late)
        pg_every = 1;
    }
    if (status & MOE_NONFINITE) break;
    if (!warm && (ctl->offset + t - ctl->warmup) % ctl->thin == 0 &&
        kept < out->nkeep) {
      store_draw(d, par, out, kept);
      pending = kept++;
    }
    if (ctl->refresh > 0 && (t % ctl->refresh == 0 || t == total))
      Rprintf("chain %d: iteration %d / %d (%s)\n", ctl->chain, t, total,
              warm ? "warm-up" : "sampling");
  }
  PutRNGstate();
  if (pending >= 0) {
    if (collapsed && K > 1) {
      double llf;
      marg_pass(d, pr, w, par, par->W, 1, 1, w->pA, w->rA, w->g, &llf);
      out->loglik[pending] = llf;
    } else {
      out->loglik[pending] = update_alloc(d, w, par, 0, 1);
    }
    if (!R_FINITE(out->loglik[pending])) status |= MOE_NONFINITE;
  }
  out->nkeep = kept;
  out->done = t > total ? total : t;
  out->pg_every = pg_every;
  return status;
}
