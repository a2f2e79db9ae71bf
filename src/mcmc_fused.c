/*
 * mcmc_fused.c: the fused sweep kernel of the Gibbs driver (mcmc.c) for
 * the softmax-gated linear-Gaussian mixture of experts, which the driver
 * selects for that model: allocations, expert statistics, expert draws and
 * the gating updates in a few passes over row copies of the data, with
 * sized copies of the passes for the common small models.
 *
 * Data (moe_data, internal centred/scaled scale): y (n), X (n x p),
 * Z (n x q), column-major; wt (n) case weights that are whole numbers >= 1
 * (frequency weights: observation i stands for wt_i identical observations,
 * each with its own allocation; zero-weight rows are dropped by the caller).
 * Parameters (moe_par): alpha (p x K), sigma2 (K), W (q x K, column K - 1
 * zero); on entry the starting values, on exit the final state.
 * Prior (moe_mcmc_prior), controls (moe_mcmc_control): see moe.h.
 * The driver keeps the draws and their log-likelihoods, the schedule of
 * the Polya-Gamma draws (st->pg) and the move counts.
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
 *     (level_refresh() of gate.c: Gamerman's Fisher-scoring proposal), which speeds
 *     mixing of steep gates and of correlated gating vectors; with 2 only
 *     that step is made (no Polya-Gamma draws), with 0 only the Polya-Gamma
 *     draws.
 * With ctl->gate_mode 3 (the default in R, "collapsed") a sweep is instead
 *  1'. update_gating_alloc_marg: ctl->gate_steps Metropolis-Hastings steps
 *     on W targeting p(W | alpha, sigma2, y) (allocations summed out), with
 *     a Newton proposal (marg_pass(), marg_proposal()), then the
 *     allocations given the new W and the experts; the first pass gives
 *     the log-likelihood of the previous draw;
 *  2'. cond_refresh: the step of level_refresh() given the allocations; its
 *     log target, gradient and information at the current W come from the
 *     pass that drew the allocations (cond_logpost() with `draw`), so it
 *     makes one more pass, at its proposal;
 *  3'. update_experts as in 2.
 * With st->pg in modes 2 and 3 the Polya-Gamma draws of 3 are added (mode 3:
 * after 2', given the allocations of 1', made by chunks on the threads with
 * their own random number streams: update_gating_pg_chunks()).
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
 * variances > 0, Va_inv positive definite. The driver holds the RNG.
 * Status flags: MOE_NOT_PD when a conditional precision needed a ridge,
 * MOE_NONFINITE when a draw or log-likelihood was not finite (the driver
 * then stops the chain).
 */
#include "moe.h"
#include "moe_exp.h"
#include "moe_v2.h"
#include "moe_rng.h"
#include <stdint.h>

/* Work space of the fused sweep: carved by work_init() out of blocks of
 * mcmc_fused_work_size() doubles and ints allocated by the caller. */
typedef struct {
  double *Xr, *Zr;        /* p x n and q x n: X and Z by rows */
  int *wi;                /* n integer case weights (frequency weights) */
  double *eta;            /* K x n gating logits, observation-major */
  int *N;                 /* K x n allocation counts (sum_k N_ki = wi_i) */
  double *XtX, *Xty, *yty, *nk; /* per expert: p x p (lower), p, 1, 1 */
  double *lk, *cst, *hp;  /* K each */
  double *A;              /* expert draw: GAUSSIAN_DRAW_WORK(p) */
  double *P, *Psave, *r, *mw, *zq; /* gating block: q x q, q x q, q, q, q */
  /* joint gating Metropolis-Hastings refresh, m = q (K - 1): */
  double *H0, *H1, *Hsave; /* m x m each */
  double *g, *mu, *tm;    /* m, m, m + 1 */
  double *Ws;             /* q x K proposal (reference column zero) */
  /* collapsed gating update: */
  double *F, *rA, *rB, *pA, *pB; /* K x n each: scaled expert densities;
                             responsibilities and gating probabilities at
                             the current point (A) and the proposal (B) */
  double *lmx;            /* n: log of the largest expert density */
  double *zz;             /* q (q + 1) / 2 */
  double *hg;             /* K (K - 1) / 2 packed q x q blocks */
  double *g1, *mu1;       /* m each: gradient and Newton point at the proposal */
  /* the passes of the collapsed update over fixed chunks of MOE_CHUNK
   * observations (see "Threads" below): */
  int nchunk, threads;    /* number of chunks; threads of the passes */
  int v2;                 /* the passes take observations in pairs (moe_v2.h)
                             where they can: mcmc_fused_v2 when the chain
                             started */
  int anyw;               /* some case weight is > 1 (multinomial draws use
                             R's generator: those passes run in one thread) */
  int istride;            /* the information of the proposals from the
                             observations i with i % istride == 0 (info_obs
                             of moe_mcmc_control; set by mcmc_fused_init()) */
  double iscale;          /* its scale: sum of all weights / sum of theirs
                             (1 when istride is 1) */
  R_xlen_t pstride;       /* doubles per chunk in `part` */
  double *part;           /* nchunk x pstride: each chunk's partial sums
                             (chunk_layout()) and scratch */
  double *u;              /* n: the allocation uniforms of a pass */
  moe_gibbs_work view;    /* the refresh's arrays, as level_refresh() takes them */
} moe_mcmc_work;


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

/* The logit z_i' w_k of observation i (zi, q) for gating vector wk: the
 * only place the sampler computes a logit (eta_column(), gate_logits_obs(),
 * pg_chunk()), so every pass and a restarted chain see the same bits. */
MOE_INLINE double logit_obs(const double *zi, const double *wk, int q)
{
  double e = 0.0;
  MOE_UNROLL
  for (int a = 0; a < q; a++) e += zi[a] * wk[a];
  return e;
}

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
 * bulk of a chain's random numbers) come from the small fast generator of
 * moe_rng.h (xoshiro256+), seeded at the start of every allocation pass
 * from two draws of R's generator. The draws therefore stay a function of
 * R's random number stream alone: the same seed gives the same chain, and a
 * chain restarted from its stored R RNG state continues exactly. (R's
 * L'Ecuyer-CMRG unif_rand(), which the chains use, cost about 18% of a
 * collapsed chain here.) The Polya-Gamma draws of the collapsed mode use
 * one stream of it per chunk (update_gating_pg_chunks()).
 */
typedef moe_xrng alloc_rng;

static void alloc_rng_seed(alloc_rng *r)
{
  moe_xrng_seed(r, moe_xrng_base(), 0);
}

/* A uniform in (0, 1) (53 bits, never 0 or 1). */
static inline double alloc_unif(alloc_rng *r)
{
  return moe_xrng_unif(r);
}

/* Whether new chains compute observations in pairs in the vector lanes of
 * moe_v2.h (1, the default) or one at a time: the same bits either way;
 * switched off by tests only, to show that (ffi_set_v2()). */
static int mcmc_fused_v2 = 1;

int mcmc_fused_set_v2(int on)
{
  int old = mcmc_fused_v2;
  mcmc_fused_v2 = on != 0;
  return old;
}

/*
 * Threads. The passes of the collapsed update (marg_pass(), cond_logpost())
 * run over a fixed partition of the observations into chunks of MOE_CHUNK
 * (a multiple of MOE_BLOCK), whatever the number of threads: each chunk
 * forms its own partial sums (gradient, information blocks, log target,
 * expert statistics) in observation order, and the partial sums are added
 * in chunk order by one thread. The allocation uniforms of a pass are drawn
 * by one thread before it (alloc_rng, in observation order, as one loop
 * would draw them). So the draws are the same bits for any number of
 * threads; with one chunk (n <= MOE_CHUNK) every sum is formed in the order
 * of one plain loop. Multinomial draws (case weights > 1) call R's
 * generator, which is not thread-safe: passes that make them run in one
 * thread. OpenMP is optional (without it every pass runs in one thread).
 */
#define MOE_CHUNK 4096
#define MOE_BLOCK 64

/* Doubles per chunk in w->part: the gradient (m), the information blocks
 * (P Tq), three scalars (the log-likelihood or log target terms: a sum, a
 * sum of logs and a running product), the expert statistics (K (p p + p +
 * 2), as in moe_mcmc_work) and scratch (K + Tq, and MOE_BLOCK (P + Tq) for
 * pass_accumulate_block()). */
static R_xlen_t chunk_stride(R_xlen_t p, R_xlen_t q, R_xlen_t K)
{
  R_xlen_t m = q * (K - 1), Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  return m + P * Tq + 3 + K * (p * p + p + 2) + K + Tq + MOE_BLOCK * (P + Tq);
}

void mcmc_fused_work_size(const moe_data *d, R_xlen_t *ndouble, R_xlen_t *nint)
{
  R_xlen_t n = d->n, p = d->p, q = d->q, K = d->K;
  R_xlen_t m = q * (K - 1);
  R_xlen_t Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  R_xlen_t nchunk = (n + MOE_CHUNK - 1) / MOE_CHUNK;
  *ndouble = (p + q + K) * n + K * (p * p + p + 2) + 3 * K +
             2 * p * p + 4 * p + 2 * q * q + 4 * q + 3 * m * m + 3 * m + 1 + q * K +
             5 * K * n + n + Tq + P * Tq + 2 * m + n + nchunk * chunk_stride(p, q, K);
  *nint = n + K * n;
}

static void work_init(const moe_data *d, double *dbl, int *ints,
                      moe_mcmc_work *w)
{
  int n = d->n, p = d->p, q = d->q, K = d->K;
  double *t = dbl;
  R_xlen_t m = (R_xlen_t) q * (K - 1), nK = (R_xlen_t) K * n;
  R_xlen_t Tq = q * (q + 1) / 2;
  w->Xr = moe_take(&t, (R_xlen_t) p * n);  w->Zr = moe_take(&t, (R_xlen_t) q * n);
  w->eta = moe_take(&t, nK);
  w->XtX = moe_take(&t, (R_xlen_t) K * p * p);  w->Xty = moe_take(&t, (R_xlen_t) K * p);
  w->yty = moe_take(&t, K);  w->nk = moe_take(&t, K);  w->lk = moe_take(&t, K);
  w->cst = moe_take(&t, K);  w->hp = moe_take(&t, K);
  w->A = moe_take(&t, GAUSSIAN_DRAW_WORK(p));  /* gaussian_conjugate_draw() */
  w->P = moe_take(&t, (R_xlen_t) q * q);  w->Psave = moe_take(&t, (R_xlen_t) q * q);
  w->r = moe_take(&t, q);  w->mw = moe_take(&t, q);  w->zq = moe_take(&t, q);
  w->H0 = moe_take(&t, m * m);  w->H1 = moe_take(&t, m * m);  w->Hsave = moe_take(&t, m * m);
  w->g = moe_take(&t, m);  w->mu = moe_take(&t, m);  w->tm = moe_take(&t, m + 1);
  /* the proposal, reference column zero */
  w->Ws = moe_take(&t, (R_xlen_t) q * K);
  for (R_xlen_t u = 0; u < (R_xlen_t) q * K; u++) w->Ws[u] = 0.0;
  w->F = moe_take(&t, nK);  w->rA = moe_take(&t, nK);  w->rB = moe_take(&t, nK);
  w->lmx = moe_take(&t, n);  w->pA = moe_take(&t, nK);  w->pB = moe_take(&t, nK);
  w->zz = moe_take(&t, Tq);  w->hg = moe_take(&t, (R_xlen_t) K * (K - 1) / 2 * Tq);
  w->g1 = moe_take(&t, m);  w->mu1 = moe_take(&t, m);  w->u = moe_take(&t, n);
  w->nchunk = (n + MOE_CHUNK - 1) / MOE_CHUNK;
  w->pstride = chunk_stride(p, q, K);
  w->part = t;
  w->anyw = 0;
  w->view.H0 = w->H0; w->view.H1 = w->H1; w->view.Hsave = w->Hsave;
  w->view.g = w->g; w->view.mu2 = w->mu; w->view.tm = w->tm; w->view.Ws = w->Ws;
  w->view.pk = w->lk;
  w->wi = ints;
  w->N = ints + n;
  for (int i = 0; i < n; i++) {
    for (int a = 0; a < p; a++)
      w->Xr[a + (R_xlen_t) i * p] = d->X[i + (R_xlen_t) a * n];
    for (int a = 0; a < q; a++)
      w->Zr[a + (R_xlen_t) i * q] = d->Z[i + (R_xlen_t) a * n];
    w->wi[i] = (int) d->wt[i];
    if (w->wi[i] != 1) w->anyw = 1;
  }
}

/* eta_ik = z_i' w_k for every i (logit_obs()). */
static void eta_column(const moe_data *d, const moe_mcmc_work *w,
                       const double *W, int k)
{
  int n = d->n, q = d->q, K = d->K;
  const double *wk = W + (R_xlen_t) k * q;
  for (int i = 0; i < n; i++)
    w->eta[k + (R_xlen_t) i * K] = logit_obs(w->Zr + (R_xlen_t) i * q, wk, q);
}

/* Zero the per-expert sufficient statistics. */
static void stats_reset(moe_mcmc_work *w, int p, int K)
{
  for (R_xlen_t t = 0; t < (R_xlen_t) K * p * p; t++) w->XtX[t] = 0.0;
  for (R_xlen_t t = 0; t < (R_xlen_t) K * p; t++) w->Xty[t] = 0.0;
  for (int k = 0; k < K; k++) w->yty[k] = w->nk[k] = 0.0;
}

/* Counts Ni (K, zero on entry) ~ Multinomial(wi, pk / s), pk >= 0
 * unnormalised with sum s, by conditional binomials. */
void alloc_multinomial(int K, int wi, const double *pk, double s, int *Ni)
{
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
    alloc_multinomial(K, wi, pk, s, Ni);
  }
}

/* Add observation (xi, yi) with allocation counts Ni to the sufficient
 * statistics of the experts (K lower triangles of X'X, p x p each; X'y,
 * p each; y'y; counts). */
static void alloc_stats(double *XtX, double *Xty, double *yty, double *nk,
                        int p, int K, const double *xi, double yi, const int *Ni)
{
  for (int k = 0; k < K; k++) {
    if (Ni[k] == 0) continue;
    double c = Ni[k], cy = c * yi;
    double *S = XtX + (R_xlen_t) k * p * p, *sy = Xty + (R_xlen_t) k * p;
    nk[k] += c;
    yty[k] += cy * yi;
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
    alloc_stats(w->XtX, w->Xty, w->yty, w->nk, p, K, xi, yi, Ni);
  }
  return ll;
}

/* Conjugate draw of every (a_k, sigma2_k) given the sufficient statistics
 * (gaussian_conjugate_draw() of family_gaussian.c). */
static int update_experts(const moe_data *d, const moe_mcmc_prior *pr,
                          moe_mcmc_work *w, moe_par *par)
{
  int p = d->p, K = d->K, status = MOE_OK;
  for (int k = 0; k < K; k++) {
    status |= gaussian_conjugate_draw(p, w->XtX + (R_xlen_t) k * p * p,
                                      w->Xty + (R_xlen_t) k * p, w->yty[k],
                                      w->nk[k], pr, par->alpha + (R_xlen_t) k * p,
                                      par->sigma2 + k, w->A);
    if (status & MOE_NONFINITE) return status;
  }
  return status;
}




/* Gating update given the allocations: with `pg`, a Polya-Gamma draw of
 * each non-reference gating vector in turn (level_pg(); w->eta must hold the
 * logits at the current W; it is kept up to date); with `mh`, then the joint
 * Metropolis-Hastings refresh of all of them (level_refresh(): Gamerman's
 * Fisher-scoring proposal). *accepted and *proposed count the refreshes. */
static int update_gating(const moe_data *d, const moe_mcmc_prior *pr,
                         moe_mcmc_work *w, moe_par *par, int pg, int mh,
                         int *accepted, int *proposed)
{
  int n = d->n, q = d->q, K = d->K, status = MOE_OK;
  if (K < 2) return status;
  if (pg)
    status |= level_pg(n, q, pr, K, w->N, w->wi, w->Zr, par->W, w->eta, w->P,
                       w->Psave, w->r, w->mw, w->zq);
  if (mh && !(status & MOE_NONFINITE)) {
    (*proposed)++;
    int acc = level_refresh(n, q, pr, K, w->N, w->wi, w->Zr, par->W, &w->view);
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
 * Speed of the passes (they are nearly all of a collapsed chain's time;
 * bench/results/ has the timings):
 * - each pass runs over blocks of MOE_BLOCK observations in stages: the
 *   exp() calls first, then the probabilities and the log-likelihood, then
 *   the accumulation, which reads the stored probabilities in a separate
 *   loop (a load right after the scalar stores of the same values stalls);
 * - MOE_UNROLL (defined at the top) asks GCC to unroll the loops over
 *   experts and covariates completely in the sized instances (constant
 *   dimensions) before its loop optimisations, so that the accumulators of the gradient and of the
 *   information live in registers instead of being loaded and stored once
 *   per observation. In the generic instance it is a partial unrolling
 *   hint. Other compilers get no hint and the same results;
 * - models too large for the stack accumulators (MOE_NLOC) accumulate the
 *   information by blocks of observations in register tiles
 *   (pass_accumulate_block());
 * - the blocks belong to fixed chunks of MOE_CHUNK observations that
 *   threads share out (see "Threads" at the top);
 * - the work of each observation alone (expert densities, logits, exp(),
 *   probabilities and responsibilities: marg_obs(), gate_probs_obs()) is
 *   done for two observations at once in the lanes of a vector
 *   (marg_pair(), gate_pair(); moe_v2.h) where the compiler has vector
 *   extensions, the sums over observations stay in scalar loops in
 *   observation order (a chain at n = 1e6, K = 5, q = 4 took 0.79 of
 *   its CPU time, the builds run back to back; w->v2, set from mcmc_fused_v2,
 *   switches it off for the tests that compare the two);
 * - the categorical draw of an allocation counts the partial sums below
 *   its uniform instead of stopping at the first above (no branches to
 *   mispredict; the same expert).
 * None of this changes any operation or the order of any sum within a
 * chunk: with one chunk the draws are the same bits as with one plain loop
 * (moe_exp() is within one ulp of exp(), see moe_exp.h).
 */

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
    double e = logit_obs(zi, Wf + k * q, q);
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
 * pass_gradient(): the terms of the gradient alone.
 */
MOE_INLINE void pass_gradient(int q, int K, int collapsed, const double *zi, int wi,
                              const double *Gi, const double *ri, const int *Ni,
                              double *restrict ga)
{
  MOE_UNROLL
  for (int k = 0; k < K - 1; k++) {
    double v = collapsed ? wi * (ri[k] - Gi[k]) : Ni[k] - wi * Gi[k];
    MOE_UNROLL
    for (int a = 0; a < q; a++) ga[k * q + a] += v * zi[a];
  }
}

MOE_INLINE void pass_accumulate(int q, int K, int collapsed, const double *zi, int wi,
                                const double *Gi, const double *ri, const int *Ni,
                                double *restrict ga, double *restrict hg, double *restrict zz)
{
  int Tq = q * (q + 1) / 2;
  pass_gradient(q, K, collapsed, zi, wi, Gi, ri, Ni, ga);
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

/*
 * The information terms of pass_accumulate() for the observations
 * i0 <= i < i1 (at most MOE_BLOCK) at once, for models too large for the
 * stack accumulators: the terms of
 * the information are first written out (coefficients C, P x B, and the
 * products zz, B x Tq), then each block is accumulated over the
 * observations in tiles of 8 entries held in registers. Every entry still
 * receives its terms one observation after the other, in observation order,
 * by the same operations as in pass_accumulate(), so the sums are the same
 * bits; only the memory traffic changes (an entry is loaded and stored
 * once per MOE_BLOCK observations instead of once per observation).
 * scr: MOE_BLOCK (P + Tq) doubles, P = K (K - 1) / 2. collapsed = 1: the
 * information of the collapsed target (r used); 0 or 2: the complete-data
 * information (r unused). Only the observations i with i % stride == 0
 * (stride 1: all of them); the gradient is the callers' (pass_gradient()).
 */
static void pass_accumulate_block(int q, int K, int collapsed, int stride, int i0, int i1,
                                  const double *Zr, const int *wv, const double *G,
                                  const double *r, double *restrict hg, double *restrict scr)
{
  int Tq = q * (q + 1) / 2, P = K * (K - 1) / 2, B = 0;
  double *C = scr, *ZZ = scr + (R_xlen_t) MOE_BLOCK * P;
  /* the observations of the subsample (all when stride is 1) */
  for (int i = (i0 + stride - 1) / stride * stride; i < i1; i += stride) {
    int wi = wv[i], j = B++;
    const double *zi = Zr + (R_xlen_t) i * q, *Gi = G + (R_xlen_t) i * K;
    const double *ri = collapsed == 1 ? r + (R_xlen_t) i * K : NULL;
    double *zz = ZZ + (R_xlen_t) j * Tq;
    int t = 0;
    for (int b = 0; b < q; b++)
      for (int a = b; a < q; a++) zz[t++] = zi[a] * zi[b];
    for (int k = 0, blk = 0; k < K - 1; k++) {
      for (int l = 0; l <= k; l++, blk++) {
        double dl = k == l ? 1.0 : 0.0;
        C[blk * MOE_BLOCK + j] = collapsed == 1 ?
          wi * (Gi[k] * (dl - Gi[l]) - ri[k] * (dl - ri[l])) : wi * Gi[k] * (dl - Gi[l]);
      }
    }
  }
  /* two blocks at a time (16 running sums in 8 tiles of 8 entries: the
   * additions of different entries overlap), then the last block alone */
  int blk = 0;
  for (; blk + 2 <= P; blk += 2) {
    double *bh = hg + (R_xlen_t) blk * Tq, *bg = bh + Tq;
    const double *cb = C + (R_xlen_t) blk * MOE_BLOCK, *cc = cb + MOE_BLOCK;
    int u = 0;
    for (; u + 8 <= Tq; u += 8) {
      double a0 = bh[u], a1 = bh[u + 1], a2 = bh[u + 2], a3 = bh[u + 3];
      double a4 = bh[u + 4], a5 = bh[u + 5], a6 = bh[u + 6], a7 = bh[u + 7];
      double b0 = bg[u], b1 = bg[u + 1], b2 = bg[u + 2], b3 = bg[u + 3];
      double b4 = bg[u + 4], b5 = bg[u + 5], b6 = bg[u + 6], b7 = bg[u + 7];
      const double *z = ZZ + u;
      for (int j = 0; j < B; j++, z += Tq) {
        double c = cb[j], e = cc[j];
        a0 += c * z[0]; a1 += c * z[1]; a2 += c * z[2]; a3 += c * z[3];
        a4 += c * z[4]; a5 += c * z[5]; a6 += c * z[6]; a7 += c * z[7];
        b0 += e * z[0]; b1 += e * z[1]; b2 += e * z[2]; b3 += e * z[3];
        b4 += e * z[4]; b5 += e * z[5]; b6 += e * z[6]; b7 += e * z[7];
      }
      bh[u] = a0; bh[u + 1] = a1; bh[u + 2] = a2; bh[u + 3] = a3;
      bh[u + 4] = a4; bh[u + 5] = a5; bh[u + 6] = a6; bh[u + 7] = a7;
      bg[u] = b0; bg[u + 1] = b1; bg[u + 2] = b2; bg[u + 3] = b3;
      bg[u + 4] = b4; bg[u + 5] = b5; bg[u + 6] = b6; bg[u + 7] = b7;
    }
    for (; u + 2 <= Tq; u += 2) {
      double a0 = bh[u], a1 = bh[u + 1], b0 = bg[u], b1 = bg[u + 1];
      const double *z = ZZ + u;
      for (int j = 0; j < B; j++, z += Tq) {
        double c = cb[j], e = cc[j];
        a0 += c * z[0]; a1 += c * z[1];
        b0 += e * z[0]; b1 += e * z[1];
      }
      bh[u] = a0; bh[u + 1] = a1; bg[u] = b0; bg[u + 1] = b1;
    }
    for (; u < Tq; u++) {
      double a0 = bh[u], b0 = bg[u];
      const double *z = ZZ + u;
      for (int j = 0; j < B; j++, z += Tq) {
        a0 += cb[j] * z[0];
        b0 += cc[j] * z[0];
      }
      bh[u] = a0; bg[u] = b0;
    }
  }
  for (; blk < P; blk++) {
    double *bh = hg + (R_xlen_t) blk * Tq;
    const double *cb = C + (R_xlen_t) blk * MOE_BLOCK;
    int u = 0;
    for (; u + 8 <= Tq; u += 8) {
      double a0 = bh[u], a1 = bh[u + 1], a2 = bh[u + 2], a3 = bh[u + 3];
      double a4 = bh[u + 4], a5 = bh[u + 5], a6 = bh[u + 6], a7 = bh[u + 7];
      const double *z = ZZ + u;
      for (int j = 0; j < B; j++, z += Tq) {
        double c = cb[j];
        a0 += c * z[0]; a1 += c * z[1]; a2 += c * z[2]; a3 += c * z[3];
        a4 += c * z[4]; a5 += c * z[5]; a6 += c * z[6]; a7 += c * z[7];
      }
      bh[u] = a0; bh[u + 1] = a1; bh[u + 2] = a2; bh[u + 3] = a3;
      bh[u + 4] = a4; bh[u + 5] = a5; bh[u + 6] = a6; bh[u + 7] = a7;
    }
    for (; u < Tq; u++) {
      double a = bh[u];
      const double *z = ZZ + u;
      for (int j = 0; j < B; j++, z += Tq) a += cb[j] * z[0];
      bh[u] = a;
    }
  }
}

/* Arguments of one pass, shared by the chunks (see "Threads" at the top). */
typedef struct {
  const moe_data *d;
  moe_mcmc_work *w;
  const moe_par *par;
  const double *Wf;
  int fresh, known, draw;
  double *G, *r;
  int k;           /* update_gating_pg_chunks(): the gating vector */
  uint64_t seed;   /* and the base seed of its chunks' streams */
} pass_args;

typedef void (*pass_chunk_fn)(const pass_args *a, int c);

/* fn(a, c) for every chunk c, on at most `threads` threads. */
static void run_chunks(pass_chunk_fn fn, const pass_args *a, int nchunk, int threads)
{
#ifdef _OPENMP
  int nt = threads < nchunk ? threads : nchunk;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
  for (int c = 0; c < nchunk; c++) fn(a, c);
}

/* The partial sums of the chunks added in chunk order: the gradient into g
 * (m; not when g is NULL) and the information blocks into w->hg (scaled by
 * w->iscale when they come from a subsample). */
static void chunk_sum_gh(const moe_mcmc_work *w, int m, int nh, double *g)
{
  for (int t = 0; t < m && g != NULL; t++) {
    double s = 0.0;
    for (int c = 0; c < w->nchunk; c++) s += w->part[t + c * w->pstride];
    g[t] = s;
  }
  for (int t = 0; t < nh; t++) {
    double s = 0.0;
    for (int c = 0; c < w->nchunk; c++) s += w->part[m + t + c * w->pstride];
    /* the information of a subsample, scaled to all the observations (the
     * scale is exactly 1 without a subsample) */
    w->hg[t] = s * w->iscale;
  }
}

/* Stage 1 of marg_chunk_sized() for observation i: with `fresh`, its
 * scaled expert densities (w->F, w->lmx); unless `known`, its gating
 * probabilities at a->Wf (a->G); its responsibilities (a->r) and the ratio
 * p(y_i) / max_k f_ik (*rt). eta: K doubles of scratch. */
MOE_INLINE void marg_obs(const pass_args *a, int i, int p, int q, int K, double *eta,
                         double *rt)
{
  const moe_data *d = a->d;
  moe_mcmc_work *w = a->w;
  const moe_par *par = a->par;
  const double *cst = w->cst, *hp = w->hp;
  const double *zi = w->Zr + (R_xlen_t) i * q;
  double *Fi = w->F + (R_xlen_t) i * K, *Gi = a->G + (R_xlen_t) i * K;
  double *ri = a->r + (R_xlen_t) i * K;
  if (a->fresh) {
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
  /* sf = sum_k g_k f_ik / max_j f_ij, in (0, 1]; r_k = g_k f_ik / (...) */
  double sf = 0.0;
  if (!a->known) {
    /* gating probabilities, unnormalised */
    double emx, se = 0.0;
    int em = gate_logits_obs(zi, a->Wf, q, K, eta, &emx);
    MOE_UNROLL
    for (int k = 0; k < K; k++) Gi[k] = k == em ? 1.0 : moe_exp(eta[k] - emx);
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
    *rt = sf * ig;
  } else {
    MOE_UNROLL
    for (int k = 0; k < K; k++) {
      ri[k] = Gi[k] * Fi[k];
      sf += ri[k];
    }
    double ir = 1.0 / sf;
    MOE_UNROLL
    for (int k = 0; k < K; k++) ri[k] *= ir;
    *rt = sf;
  }
}

#if MOE_HAVE_V2
/* the largest K of the vector code (its arrays are on the stack) */
#define MOE_V2_KMAX 32
/* gate_logits_obs() for the observations z0 and z1 at once (g, K, the last
 * zero; *emx their largest, from 0 as there); returns 0 when a largest is
 * not finite. */
MOE_INLINE int logits_pair(const double *z0, const double *z1, const double *Wf, int q,
                           int K, moe_v2 *g, moe_v2 *emx)
{
  moe_v2 m = moe_v2_splat(0.0);
  MOE_UNROLL
  for (int k = 0; k < K - 1; k++) {
    moe_v2 e = moe_v2_splat(0.0);
    MOE_UNROLL
    for (int b = 0; b < q; b++) e += moe_v2_set(z0[b], z1[b]) * Wf[k * q + b];
    g[k] = e;
    m = moe_v2_max_gt(e, m);
  }
  g[K - 1] = moe_v2_splat(0.0);
  *emx = m;
  return moe_v2_finite(m);
}

/* marg_obs() for observations i and i + 1 at once, in the two lanes of
 * moe_v2 (moe_v2.h: every lane makes the operations of marg_obs(), so the
 * results are the same bits). Returns 0 when a largest log density or
 * logit is not finite: marg_obs() then takes both observations, as its
 * ties and infinities need (and writes again what was written). */
MOE_INLINE int marg_pair(const pass_args *a, int i, int p, int q, int K, double *rt)
{
  const moe_data *d = a->d;
  moe_mcmc_work *w = a->w;
  const moe_par *par = a->par;
  R_xlen_t o = (R_xlen_t) i * K;
  double *F0 = w->F + o, *F1 = F0 + K, *G0 = a->G + o, *G1 = G0 + K;
  double *r0 = a->r + o, *r1 = r0 + K;
  moe_v2 f[MOE_V2_KMAX], sf = moe_v2_splat(0.0), rr;
  if (a->fresh) {
    const double *x0 = w->Xr + (R_xlen_t) i * p, *x1 = x0 + p;
    moe_v2 y = moe_v2_set(d->y[i], d->y[i + 1]), mx = moe_v2_splat(R_NegInf);
    MOE_UNROLL
    for (int k = 0; k < K; k++) {
      const double *ak = par->alpha + (R_xlen_t) k * p;
      moe_v2 mu = moe_v2_splat(0.0);
      MOE_UNROLL
      for (int b = 0; b < p; b++) mu += moe_v2_set(x0[b], x1[b]) * ak[b];
      moe_v2 res = y - mu;
      moe_v2 l = w->cst[k] - res * res * w->hp[k];
      f[k] = l;
      mx = moe_v2_max_gt(l, mx);
    }
    if (!moe_v2_finite(mx)) return 0;
    /* the largest gives exp(0) = 1 exactly, as marg_obs() sets it */
    MOE_UNROLL
    for (int k = 0; k < K; k++) {
      f[k] = moe_exp_v2(f[k] - mx);
      F0[k] = f[k][0];
      F1[k] = f[k][1];
    }
    w->lmx[i] = mx[0];
    w->lmx[i + 1] = mx[1];
  } else {
    MOE_UNROLL
    for (int k = 0; k < K; k++) f[k] = moe_v2_set(F0[k], F1[k]);
  }
  if (!a->known) {
    /* (a return here leaves F as marg_obs() writes it again) */
    const double *z0 = w->Zr + (R_xlen_t) i * q, *z1 = z0 + q;
    moe_v2 g[MOE_V2_KMAX], emx, se = moe_v2_splat(0.0);
    if (!logits_pair(z0, z1, a->Wf, q, K, g, &emx)) return 0;
    MOE_UNROLL
    for (int k = 0; k < K; k++) {
      g[k] = moe_exp_v2(g[k] - emx);
      f[k] = g[k] * f[k]; /* now the unscaled responsibility */
      se += g[k];
      sf += f[k];
    }
    moe_v2 ig = 1.0 / se, ir = 1.0 / sf;
    MOE_UNROLL
    for (int k = 0; k < K; k++) {
      moe_v2 gk = g[k] * ig;
      rr = f[k] * ir;
      G0[k] = gk[0]; G1[k] = gk[1];
      r0[k] = rr[0]; r1[k] = rr[1];
    }
    rr = sf * ig;
  } else {
    MOE_UNROLL
    for (int k = 0; k < K; k++) {
      f[k] = moe_v2_set(G0[k], G1[k]) * f[k];
      sf += f[k];
    }
    moe_v2 ir = 1.0 / sf;
    MOE_UNROLL
    for (int k = 0; k < K; k++) {
      rr = f[k] * ir;
      r0[k] = rr[0]; r1[k] = rr[1];
    }
    rr = sf;
  }
  rt[0] = rr[0];
  rt[1] = rr[1];
  return 1;
}
#endif

/* Chunk c of marg_pass() (its observations in order, as one loop over all
 * of them would take them); writes the chunk's partial gradient,
 * information blocks and the log-likelihood terms (sum of wt_i log max_k
 * f_ik, sum of logs, running product) to its slot of w->part. */
MOE_INLINE void marg_chunk_sized(const pass_args *a, int c, int p, int q, int K)
{
  const moe_data *d = a->d;
  moe_mcmc_work *w = a->w;
  const moe_par *par = a->par;
  const double *Wf = a->Wf;
  double *G = a->G, *r = a->r;
  int n = d->n, m = q * (K - 1);
  int Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  double *part = w->part + (R_xlen_t) c * w->pstride;
  double *sc = part + m + P * Tq, *scr = sc + 3 + (R_xlen_t) K * (p * p + p + 2);
  /* the accumulators on the stack when they fit (always for the sized
   * models), so that the compiler can keep them in registers; the sums are
   * formed in the same order either way */
  double gl[MOE_NLOC], hl[MOE_NLOC], zl[MOE_NLOC], el[MOE_NLOC];
  int loc = m <= MOE_NLOC && P * Tq <= MOE_NLOC && Tq <= MOE_NLOC && K <= MOE_NLOC;
  int gloc = m <= MOE_NLOC, stride = w->istride;
  double *eta = loc ? el : scr, *zz = loc ? zl : scr + K, *hg = loc ? hl : part + m;
  double *ga = gloc ? gl : part;
  const double *cst = w->cst, *hp = w->hp;
  for (int t = 0; t < m; t++) ga[t] = 0.0;
  for (int t = 0; t < P * Tq; t++) hg[t] = 0.0;
  double lsum = 0.0, lacc = 0.0, prod = 1.0;
  double rt[MOE_BLOCK]; /* the ratios p(y_i) / max_k f_ik of a block */
  int c0 = c * MOE_CHUNK, c1 = n - c0 > MOE_CHUNK ? c0 + MOE_CHUNK : n;
  for (int i0 = c0; i0 < c1; i0 += MOE_BLOCK) {
    int i1 = c1 - i0 > MOE_BLOCK ? i0 + MOE_BLOCK : c1;
    /* stage 1: the exponentials, probabilities and responsibilities of a
     * block of observations, two at a time where the vector code can */
    int i = i0;
#if MOE_HAVE_V2
    if (w->v2 && K <= MOE_V2_KMAX) {
      for (; i + 1 < i1; i += 2) {
        if (!marg_pair(a, i, p, q, K, rt + (i - i0))) {
          marg_obs(a, i, p, q, K, eta, rt + (i - i0));
          marg_obs(a, i + 1, p, q, K, eta, rt + (i + 1 - i0));
        }
      }
    }
#endif
    for (; i < i1; i++) marg_obs(a, i, p, q, K, eta, rt + (i - i0));
    /* stage 2: the log-likelihood, in observation order */
    for (i = i0; i < i1; i++) {
      const double *zi = w->Zr + (R_xlen_t) i * q;
      double *ri = r + (R_xlen_t) i * K;
      int wi = w->wi[i];
      double ratio = rt[i - i0];
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
    if (loc && stride == 1) {
      for (int i = i0; i < i1; i++) {
        pass_accumulate(q, K, 1, w->Zr + (R_xlen_t) i * q, w->wi[i], G + (R_xlen_t) i * K,
                        r + (R_xlen_t) i * K, NULL, ga, hg, zz);
      }
    } else {
      /* the gradient of every observation; the information of those of
       * the subsample (see info_obs), by the blocked pass (a small share of
       * the work when stride > 1) */
      for (int i = i0; i < i1; i++) {
        pass_gradient(q, K, 1, w->Zr + (R_xlen_t) i * q, w->wi[i], G + (R_xlen_t) i * K,
                      r + (R_xlen_t) i * K, NULL, ga);
      }
      pass_accumulate_block(q, K, 1, stride, i0, i1, w->Zr, w->wi, G, r, hg, scr + K + Tq);
    }
  }
  if (gloc) {
    for (int t = 0; t < m; t++) part[t] = ga[t];
  }
  if (loc) {
    for (int t = 0; t < P * Tq; t++) part[m + t] = hg[t];
  }
  sc[0] = lsum;
  sc[1] = lacc;
  sc[2] = prod;
}

/* marg_chunk_sized() with the dimensions as constants for the common small
 * models, so that the compiler unrolls the loops over experts and
 * covariates (the results are the same: no operation is reordered), and
 * with the dimensions of the data otherwise. */
#define MARG_CHUNK(P_, Q_, K_)                                               \
  static void marg_chunk_##P_##_##Q_##_##K_(const pass_args *a, int c)      \
  { marg_chunk_sized(a, c, P_, Q_, K_); }
MARG_CHUNK(2, 2, 2) MARG_CHUNK(2, 2, 3) MARG_CHUNK(2, 2, 4)
MARG_CHUNK(3, 3, 2) MARG_CHUNK(3, 3, 3) MARG_CHUNK(3, 3, 4)
  MARG_CHUNK(2, 2, 5) MARG_CHUNK(3, 3, 5) MARG_CHUNK(4, 4, 2) MARG_CHUNK(4, 4, 3) MARG_CHUNK(4, 4, 4) MARG_CHUNK(4, 4, 5)
#undef MARG_CHUNK
static void marg_chunk_any(const pass_args *a, int c)
{
  marg_chunk_sized(a, c, a->d->p, a->d->q, a->d->K);
}

static double marg_pass(const moe_data *d, const moe_mcmc_prior *pr,
                        moe_mcmc_work *w, const moe_par *par, const double *Wf,
                        int fresh, int known, double *G, double *r,
                        double *g, double *ll)
{
  int p = d->p, q = d->q, K = d->K, m = q * (K - 1);
  int nh = K * (K - 1) / 2 * (q * (q + 1) / 2);
  if (fresh) {
    for (int k = 0; k < K; k++) {
      w->cst[k] = -0.5 * (LOG_2PI + log(par->sigma2[k]));
      w->hp[k] = 0.5 / par->sigma2[k];
    }
  }
  pass_args a = {d, w, par, Wf, fresh, known, 0, G, r, 0, 0};
  pass_chunk_fn fn = marg_chunk_any;
#define MARG_CASE(P_, Q_, K_)                                                \
  if (p == P_ && q == Q_ && K == K_) fn = marg_chunk_##P_##_##Q_##_##K_;
  MARG_CASE(2, 2, 2) MARG_CASE(2, 2, 3) MARG_CASE(2, 2, 4)
  MARG_CASE(3, 3, 2) MARG_CASE(3, 3, 3) MARG_CASE(3, 3, 4)
  MARG_CASE(2, 2, 5) MARG_CASE(3, 3, 5) MARG_CASE(4, 4, 2) MARG_CASE(4, 4, 3) MARG_CASE(4, 4, 4) MARG_CASE(4, 4, 5)
#undef MARG_CASE
  run_chunks(fn, &a, w->nchunk, w->threads);
  chunk_sum_gh(w, m, nh, g);
  double lsum = 0.0, lacc = 0.0;
  for (int c = 0; c < w->nchunk; c++) {
    const double *sc = w->part + (R_xlen_t) c * w->pstride + m + nh;
    lsum += sc[0];
    lacc += sc[1] + log(sc[2]);
  }
  *ll = lsum + lacc;
  double lp = *ll;
  gprior_grad(pr, q, K, Wf, g, &lp);
  return lp;
}

/* Chunk c of marg_fisher_blocks(): its partial information blocks. */
static void fisher_chunk(const pass_args *a, int c)
{
  const moe_data *d = a->d;
  moe_mcmc_work *w = a->w;
  int n = d->n, p = d->p, q = d->q, K = d->K, m = q * (K - 1);
  int Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  double *part = w->part + (R_xlen_t) c * w->pstride, *hg = part + m;
  double *scr = part + m + P * Tq + 3 + (R_xlen_t) K * (p * p + p + 2) + K + Tq;
  for (int t = 0; t < P * Tq; t++) hg[t] = 0.0;
  int c0 = c * MOE_CHUNK, c1 = n - c0 > MOE_CHUNK ? c0 + MOE_CHUNK : n;
  for (int i0 = c0; i0 < c1; i0 += MOE_BLOCK) {
    int i1 = c1 - i0 > MOE_BLOCK ? i0 + MOE_BLOCK : c1;
    pass_accumulate_block(q, K, 2, w->istride, i0, i1, w->Zr, w->wi, a->G, NULL, hg, scr);
  }
}

/* The blocks of sum_i wt_i G_i (x) z_i z_i' (the complete-data information)
 * into w->hg, from the gating probabilities G (K x n) saved by a pass (by
 * chunks, as the passes). */
static void marg_fisher_blocks(const moe_data *d, moe_mcmc_work *w, const double *G)
{
  int q = d->q, K = d->K, m = q * (K - 1);
  int nh = K * (K - 1) / 2 * (q * (q + 1) / 2);
  pass_args a = {d, w, NULL, NULL, 0, 1, 0, (double *) G, NULL, 0, 0};
  run_chunks(fisher_chunk, &a, w->nchunk, w->threads);
  chunk_sum_gh(w, m, nh, NULL);
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
  gprior_hess(pr, q, K, H);
}

/* The Newton point mu = Wf + (L L')^{-1} g (m) of a factorised precision. */
static void newton_point(int m, const double *L, const double *g,
                         const double *Wf, double *mu)
{
  for (int t = 0; t < m; t++) mu[t] = g[t];
  chol_solve_factored(m, L, mu, 1);
  for (int t = 0; t < m; t++) mu[t] += Wf[t];
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
  newton_point(m, L, g, Wf, mu);
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
 * Gibbs sampler; see fused_sweep(). Returns the log-likelihood at the
 * entry values (W, alpha, sigma2); *accepted and *proposed count accepted
 * and proposed steps; *status gets MOE_NOT_PD when no proposal precision
 * could be factorised.
 */
static double update_gating_alloc_marg(const moe_data *d, const moe_mcmc_prior *pr,
                                       moe_mcmc_work *w, moe_par *par, int steps,
                                       int warm, int *accepted, int *proposed,
                                       int *status, double *lp_cond)
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
  int acc0 = *accepted;
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
  if (warm && ok0 && *accepted == acc0) {
    /* warm-up only: every step was rejected, so move to the Newton point
     * (or halfway to it) when the target is higher there. From a start far
     * from the mode (a separated EM start, whose gate was capped) the
     * Newton proposal reaches the mode but its reverse density there is
     * negligible, so the chain would stay put, and the Polya-Gamma draws
     * move a steep gate by tiny steps. These moves are not Metropolis-
     * Hastings moves and are not counted as such; warm-up draws are
     * discarded, so they only choose where sampling starts. */
    for (int h = 0; h < 2; h++) {
      for (int a = 0; a < m; a++) Ws[a] = h == 0 ? mu0[a] : 0.5 * (W[a] + mu0[a]);
      double lp1 = marg_pass(d, pr, w, par, Ws, 0, 0, w->pB, w->rB, g1, &ll1);
      if (R_FINITE(lp1) && lp1 > lp0) {
        for (int a = 0; a < m; a++) W[a] = Ws[a];
        t = w->rA; w->rA = w->rB; w->rB = t;
        t = w->pA; w->pA = w->pB; w->pB = t;
        break;
      }
    }
  }
  /* the allocations, fused with the pass of the refresh at the same W */
  *lp_cond = cond_logpost(d, pr, w, W, w->pA, 1, 1, w->g);
  return ll0;
}

/*
 * The refresh given the allocations in the collapsed mode: the move of
 * level_refresh() (target p(W | allocations), proposal one Fisher-scoring
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

/* The gating probabilities of observation i (zi, q) at Wf into Gi (K) by
 * gate_probs_obs(), with its logits (et, K), their largest (*ex, the logit
 * of the expert em it returns) and the probability of em (*gm = Gi[em]). */
MOE_INLINE void gate_obs(const double *zi, const double *Wf, int q, int K, double *et,
                         double *ex, double *gm, double *Gi)
{
  int em = gate_probs_obs(zi, Wf, q, K, et, Gi);
  *ex = et[em];
  *gm = Gi[em];
}

#if MOE_HAVE_V2
/* gate_obs() for the observations z0 and z0 + q at once (rows of et, G0:
 * K apart), in the lanes of moe_v2: the same operations, so the same bits
 * (the largest logit gives exp(0) = 1, so its probability is 1 / sum).
 * Returns 0, having written nothing, when a largest logit is not finite. */
MOE_INLINE int gate_pair(const double *z0, const double *Wf, int q, int K, double *et,
                         double *ex, double *gm, double *G0)
{
  const double *z1 = z0 + q;
  double *G1 = G0 + K, *e1 = et + K;
  moe_v2 g[MOE_V2_KMAX], emx, se = moe_v2_splat(0.0);
  if (!logits_pair(z0, z1, Wf, q, K, g, &emx)) return 0;
  MOE_UNROLL
  for (int k = 0; k < K; k++) {
    et[k] = g[k][0];
    e1[k] = g[k][1];
    g[k] = moe_exp_v2(g[k] - emx);
    se += g[k];
  }
  moe_v2 ig = 1.0 / se;
  MOE_UNROLL
  for (int k = 0; k < K; k++) {
    moe_v2 gk = g[k] * ig;
    G0[k] = gk[0];
    G1[k] = gk[1];
  }
  ex[0] = emx[0]; ex[1] = emx[1];
  gm[0] = ig[0]; gm[1] = ig[1];
  return 1;
}
#endif

/* log p(W | allocations) up to a constant and its gradient g (m) at Wf,
 * and the blocks of the complete-data information sum_i wt_i G_i (x) z_i z_i'
 * into w->hg (as marg_fisher_blocks()); G (K x n) holds the gating
 * probabilities at Wf (known) or receives them. With `draw` (then known
 * must be 1 and G is w->pA, at the current W) each observation's
 * allocation is first drawn from the responsibilities in w->rA and added
 * to the sufficient statistics of the experts (the step that ends
 * update_gating_alloc_marg(), fused with this pass, which the refresh
 * makes next at the same W and allocations). */
MOE_INLINE void cond_chunk_sized(const pass_args *a, int c, int p, int q, int K)
{
  const moe_data *d = a->d;
  moe_mcmc_work *w = a->w;
  const double *Wf = a->Wf;
  double *G = a->G;
  int known = a->known, draw = a->draw;
  int n = d->n, m = q * (K - 1), Tq = q * (q + 1) / 2, P = K * (K - 1) / 2;
  double *part = w->part + (R_xlen_t) c * w->pstride;
  double *sc = part + m + P * Tq;
  /* the chunk's expert statistics, laid out as in moe_mcmc_work */
  double *sXX = sc + 3, *sXy = sXX + (R_xlen_t) K * p * p, *syy = sXy + (R_xlen_t) K * p;
  double *snk = syy + K, *scr = snk + K;
  /* the log g_i,em (each >= log(1 / K)) are summed as the log of their
   * product, taken every few observations: one log() per ~100 */
  double lp = 0.0, prod = 1.0;
  /* stack accumulators when they fit, as in marg_chunk_sized() */
  double gl[MOE_NLOC], hl[MOE_NLOC], zl[MOE_NLOC], el[MOE_NLOC];
  int loc = m <= MOE_NLOC && P * Tq <= MOE_NLOC && Tq <= MOE_NLOC && K <= MOE_NLOC;
  int gloc = m <= MOE_NLOC, stride = w->istride;
  double *eta = loc ? el : scr, *zz = loc ? zl : scr + K, *hg = loc ? hl : part + m;
  double *ga = gloc ? gl : part;
  for (int t = 0; t < m; t++) ga[t] = 0.0;
  for (int t = 0; t < P * Tq; t++) hg[t] = 0.0;
  if (draw) {
    for (R_xlen_t t = 0; t < (R_xlen_t) K * (p * p + p + 2); t++) sXX[t] = 0.0;
  }
  int c0 = c * MOE_CHUNK, c1 = n - c0 > MOE_CHUNK ? c0 + MOE_CHUNK : n;
#if MOE_HAVE_V2
  /* at a new Wf (!known), the logits of a block, their largest and the
   * largest probability (1 / sum_k exp(eta_k - max)) of each observation,
   * two observations at a time (gate_pair()) */
  double eb[MOE_BLOCK * MOE_V2_KMAX], ex[MOE_BLOCK], gm[MOE_BLOCK];
  int pre = !known && w->v2 && K <= MOE_V2_KMAX;
#else
  double *eb = NULL, *ex = NULL, *gm = NULL;
  int pre = 0;
#endif
  for (int i0 = c0; i0 < c1; i0 += MOE_BLOCK) {
    int i1 = c1 - i0 > MOE_BLOCK ? i0 + MOE_BLOCK : c1;
#if MOE_HAVE_V2
    if (pre) {
      int i = i0;
      for (; i + 1 < i1; i += 2) {
        int j = i - i0;
        if (!gate_pair(w->Zr + (R_xlen_t) i * q, Wf, q, K, eb + j * K, ex + j, gm + j,
                       G + (R_xlen_t) i * K)) {
          gate_obs(w->Zr + (R_xlen_t) i * q, Wf, q, K, eb + j * K, ex + j, gm + j,
                   G + (R_xlen_t) i * K);
          gate_obs(w->Zr + (R_xlen_t) (i + 1) * q, Wf, q, K, eb + (j + 1) * K, ex + j + 1,
                   gm + j + 1, G + (R_xlen_t) (i + 1) * K);
        }
      }
      for (; i < i1; i++) {
        int j = i - i0;
        gate_obs(w->Zr + (R_xlen_t) i * q, Wf, q, K, eb + j * K, ex + j, gm + j,
                 G + (R_xlen_t) i * K);
      }
    }
#endif
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
          /* categorical draw, and the observation added to its expert: the
           * expert is the first whose partial sum of ri reaches u, i.e. the
           * number of partial sums (increasing) below u, counted without
           * branches */
          double u = w->u[i], acc = 0.0;
          MOE_UNROLL
          for (int k = 0; k < K - 1; k++) {
            acc += ri[k];
            ci += acc < u;
          }
          MOE_UNROLL
          for (int j = 0; j < K; j++) Ni[j] = 0;
          Ni[ci] = 1;
          double *S = sXX + (R_xlen_t) ci * p * p, *sy = sXy + (R_xlen_t) ci * p;
          snk[ci] += 1.0;
          syy[ci] += yi * yi;
          MOE_UNROLL
          for (int a = 0; a < p; a++) {
            sy[a] += yi * xi[a];
            MOE_UNROLL
            for (int b = 0; b <= a; b++) S[a + b * p] += xi[a] * xi[b];
          }
        } else {
          /* Multinomial(wi, r_i.) (R's generator: one thread) */
          for (int j = 0; j < K; j++) Ni[j] = 0;
          alloc_multinomial(K, wi, ri, 1.0, Ni);
          alloc_stats(sXX, sXy, syy, snk, p, K, xi, yi, Ni);
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
        /* the logits, their largest and its probability: computed before
         * the block (pre) or here */
        const double *et = eta;
        double emx, gem;
        if (pre) {
          et = eb + (R_xlen_t) (i - i0) * K;
          emx = ex[i - i0];
          gem = gm[i - i0];
        } else {
          int em = gate_probs_obs(zi, Wf, q, K, eta, known ? NULL : Gi);
          emx = eta[em];
          gem = Gi[em];
        }
        if (wi == 1) {
          /* one count of 1, at the expert of the observation */
          int cj = 0;
          MOE_UNROLL
          for (int k = 0; k < K; k++) cj += k * Ni[k];
          lp += et[cj] - emx;
          if (prod < 1e-50) { lp += log(prod); prod = 1.0; }
          prod *= gem;
        } else {
          MOE_UNROLL
          for (int k = 0; k < K; k++) if (Ni[k]) lp += Ni[k] * (et[k] - emx);
          lp += wi * log(gem);
        }
      }
    }
    /* stage 2: the gradient and the information (a separate loop, as in
     * marg_pass_sized()) */
    if (loc && stride == 1) {
      for (int i = i0; i < i1; i++) {
        pass_accumulate(q, K, 0, w->Zr + (R_xlen_t) i * q, w->wi[i], G + (R_xlen_t) i * K,
                        NULL, w->N + (R_xlen_t) i * K, ga, hg, zz);
      }
    } else {
      for (int i = i0; i < i1; i++) {
        pass_gradient(q, K, 0, w->Zr + (R_xlen_t) i * q, w->wi[i], G + (R_xlen_t) i * K,
                      NULL, w->N + (R_xlen_t) i * K, ga);
      }
      pass_accumulate_block(q, K, 0, stride, i0, i1, w->Zr, w->wi, G, NULL, hg, scr + K + Tq);
    }
  }
  if (gloc) {
    for (int t = 0; t < m; t++) part[t] = ga[t];
  }
  if (loc) {
    for (int t = 0; t < P * Tq; t++) part[m + t] = hg[t];
  }
  sc[0] = lp;
  sc[2] = prod;
}

/* cond_chunk_sized() with constant dimensions for the common models (as
 * marg_pass()), and with the dimensions of the data otherwise. */
#define COND_CHUNK(P_, Q_, K_)                                               \
  static void cond_chunk_##P_##_##Q_##_##K_(const pass_args *a, int c)      \
  { cond_chunk_sized(a, c, P_, Q_, K_); }
COND_CHUNK(2, 2, 2) COND_CHUNK(2, 2, 3) COND_CHUNK(2, 2, 4)
COND_CHUNK(3, 3, 2) COND_CHUNK(3, 3, 3) COND_CHUNK(3, 3, 4)
  COND_CHUNK(2, 2, 5) COND_CHUNK(3, 3, 5) COND_CHUNK(4, 4, 2) COND_CHUNK(4, 4, 3) COND_CHUNK(4, 4, 4) COND_CHUNK(4, 4, 5)
#undef COND_CHUNK
static void cond_chunk_any(const pass_args *a, int c)
{
  cond_chunk_sized(a, c, a->d->p, a->d->q, a->d->K);
}

static double cond_logpost(const moe_data *d, const moe_mcmc_prior *pr,
                           moe_mcmc_work *w, const double *Wf, double *G,
                           int known, int draw, double *g)
{
  int n = d->n, p = d->p, q = d->q, K = d->K, m = q * (K - 1);
  int nh = K * (K - 1) / 2 * (q * (q + 1) / 2), threads = w->threads;
  if (draw) {
    /* the uniforms of the categorical draws, in observation order */
    alloc_rng rng;
    alloc_rng_seed(&rng);
    for (int i = 0; i < n; i++) if (w->wi[i] == 1) w->u[i] = alloc_unif(&rng);
    if (w->anyw) threads = 1;
  }
  pass_args a = {d, w, NULL, Wf, 0, known, draw, G, NULL, 0, 0};
  pass_chunk_fn fn = cond_chunk_any;
#define COND_CASE(P_, Q_, K_)                                                  \
  if (p == P_ && q == Q_ && K == K_) fn = cond_chunk_##P_##_##Q_##_##K_;
  COND_CASE(2, 2, 2) COND_CASE(2, 2, 3) COND_CASE(2, 2, 4)
  COND_CASE(3, 3, 2) COND_CASE(3, 3, 3) COND_CASE(3, 3, 4)
  COND_CASE(2, 2, 5) COND_CASE(3, 3, 5) COND_CASE(4, 4, 2) COND_CASE(4, 4, 3) COND_CASE(4, 4, 4) COND_CASE(4, 4, 5)
#undef COND_CASE
  run_chunks(fn, &a, w->nchunk, threads);
  chunk_sum_gh(w, m, nh, g);
  double lp = 0.0;
  for (int c = 0; c < w->nchunk; c++) {
    const double *sc = w->part + (R_xlen_t) c * w->pstride + m + nh;
    lp += sc[0] + log(sc[2]);
  }
  if (draw) {
    /* the expert statistics, in chunk order */
    double *dst[4] = {w->XtX, w->Xty, w->yty, w->nk};
    R_xlen_t len[4] = {(R_xlen_t) K * p * p, (R_xlen_t) K * p, K, K};
    R_xlen_t off = m + nh + 3;
    for (int v = 0; v < 4; off += len[v], v++) {
      for (R_xlen_t t = 0; t < len[v]; t++) {
        double s = 0.0;
        for (int c = 0; c < w->nchunk; c++) s += w->part[off + t + c * w->pstride];
        dst[v][t] = s;
      }
    }
  }
  gprior_grad(pr, q, K, Wf, g, &lp);
  return lp;
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
  newton_point(m, L, g, Wf, mu);
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


/*
 * The Polya-Gamma draw of the gating in the collapsed mode (st->pg), by
 * chunks on the threads: the draws of level_pg() (the same conditionals,
 * each gating vector in turn), with the omega_i of chunk c drawn from
 * stream c of a seed taken from R's generator for each vector (moe_rng.h),
 * and the partial sums of P = sum_i omega_i z_i z_i' and r of the chunks
 * added in chunk order. So the draws do not depend on the number of
 * threads. The logits are computed in the chunks (logit_obs(), as
 * eta_column()): all columns in the pass of the first vector, then column
 * k - 1 in the pass of vector k; a last pass updates column K - 2 and
 * writes the gating probabilities at the new W into w->pA
 * (gate_probs_obs(), as the next sweep's first pass expects).
 * For case weights > 1 (multinomial PG(b, z) draws, R's generator) the
 * serial level_pg() is used instead (update_gating()).
 */
/* Chunk c: the logits it needs, then (k < K - 1) the partial sums of
 * vector k into the chunk's slot of w->part (P, q x q lower, then r, q) or
 * (k = K - 1) the gating probabilities at the new W. */
static void pg_chunk(const pass_args *a, int c)
{
  const moe_data *d = a->d;
  moe_mcmc_work *w = a->w;
  const double *W = a->Wf;
  int n = d->n, q = d->q, K = d->K, k = a->k;
  double *part = w->part + (R_xlen_t) c * w->pstride;
  int c0 = c * MOE_CHUNK, c1 = n - c0 > MOE_CHUNK ? c0 + MOE_CHUNK : n;
  int j0 = k == 0 ? 0 : k - 1, j1 = k == 0 ? K - 1 : k;
  for (int i = c0; i < c1; i++) {
    const double *zi = w->Zr + (R_xlen_t) i * q;
    double *ei = w->eta + (R_xlen_t) i * K;
    for (int j = j0; j < j1; j++) ei[j] = logit_obs(zi, W + (R_xlen_t) j * q, q);
  }
  if (k == K - 1) {
    for (int i = c0; i < c1; i++)
      gate_probs_obs(w->Zr + (R_xlen_t) i * q, W, q, K, part, w->pA + (R_xlen_t) i * K);
    return;
  }
  double *P = part, *r = part + (R_xlen_t) q * q;
  for (int t = 0; t < q * q + q; t++) part[t] = 0.0;
  moe_xrng rng;
  moe_xrng_seed(&rng, a->seed, (uint64_t) c);
  pg_rng g = moe_xrng_pg(&rng);
  for (int i = c0; i < c1; i++) {
    const double *zi = w->Zr + (R_xlen_t) i * q, *ei = w->eta + (R_xlen_t) i * K;
    double psi, C = pg_offset(ei, K, k, 1, &psi);
    double om = rpg1_rng(psi, &g);
    double t = (w->N[k + (R_xlen_t) i * K] - 0.5) + om * C;
    for (int b = 0; b < q; b++) {
      double oz = om * zi[b];
      r[b] += t * zi[b];
      for (int e = 0; e <= b; e++) P[b + e * q] += oz * zi[e];
    }
  }
}

/* The draw (every case weight 1; see above). Returns the status flags. */
static int update_gating_pg_chunks(const moe_data *d, const moe_mcmc_prior *pr,
                                   moe_mcmc_work *w, moe_par *par)
{
  int q = d->q, K = d->K, status = MOE_OK;
  pass_args a = {d, w, NULL, par->W, 0, 0, 0, NULL, NULL, 0, 0};
  for (int k = 0; k < K - 1; k++) {
    a.k = k;
    a.seed = moe_xrng_base();
    run_chunks(pg_chunk, &a, w->nchunk, w->threads);
    for (int t = 0; t < q * q + q; t++) {
      double s = 0.0;
      for (int c = 0; c < w->nchunk; c++) s += w->part[t + c * w->pstride];
      if (t < q * q) w->P[t] = s; else w->r[t - q * q] = s;
    }
    status |= pg_column_draw(q, pr, K, par->W, k, w->P, w->Psave, w->r, w->mw, w->zq);
    if (status & MOE_NONFINITE) return status;
  }
  a.k = K - 1;
  run_chunks(pg_chunk, &a, w->nchunk, w->threads);
  return status;
}

/* ---- the kernel of the Gibbs driver (mcmc.c) ---- */

typedef struct {
  const moe_data *d;
  const moe_mcmc_prior *pr;
  moe_mcmc_work w;
  moe_par par;
  int collapsed, mh, gate_steps;
} mcmc_fused;

/*
 * One sweep (see the head of this file): st->pg asks for the Polya-Gamma
 * draw of the gating (always made in modes 0 and 1; in modes 2 and 3 when
 * the driver schedules it), st->acc / st->prop count the Metropolis-Hastings
 * moves of the gating. Returns the log-likelihood of the state the sweep
 * started from when need_ll.
 */
static double fused_sweep(void *ctx, const moe_gibbs_step *st, int need_ll,
                          int *status)
{
  mcmc_fused *f = (mcmc_fused *) ctx;
  const moe_data *d = f->d;
  const moe_mcmc_prior *pr = f->pr;
  moe_mcmc_work *w = &f->w;
  moe_par *par = &f->par;
  int n = d->n, q = d->q, K = d->K, pg = st->pg;
  double ll;
  if (f->collapsed) {
    double lpc = 0.0;
    ll = K > 1 ? update_gating_alloc_marg(d, pr, w, par, f->gate_steps, st->warm,
                                          st->acc, st->prop, status, &lpc)
               : update_alloc(d, w, par, 1, need_ll);
    /* the refresh given the allocations: the target of the collapsed
     * steps need not be log-concave; given the allocations it is */
    if (K > 1) {
      (*st->prop)++;
      int rc = cond_refresh(d, pr, w, par->W, lpc);
      if (rc > 0) (*st->acc)++;
      if (rc < 0) *status |= MOE_NOT_PD;
    }
  } else {
    ll = update_alloc(d, w, par, 1, need_ll);
  }
  if (need_ll && !R_FINITE(ll)) *status |= MOE_NONFINITE;
  if (f->collapsed && K > 1 && pg && !(*status & MOE_NONFINITE)) {
    /* the Polya-Gamma draw given the allocations just drawn, from the
     * logits at the current W; then the gating probabilities at the new W
     * that the next sweep's pass takes as known (gate_probs_obs() makes
     * the operations of the passes, so the bits are the same) */
    if (w->anyw) {
      for (int k = 0; k < K - 1; k++) eta_column(d, w, par->W, k);
      *status |= update_gating(d, pr, w, par, 1, 0, st->acc, st->prop);
      for (int i = 0; i < n; i++)
        gate_probs_obs(w->Zr + (R_xlen_t) i * q, par->W, q, K, w->lk,
                       w->pA + (R_xlen_t) i * K);
    } else {
      *status |= update_gating_pg_chunks(d, pr, w, par);
    }
  }
  *status |= update_experts(d, pr, w, par);
  if (!f->collapsed && !(*status & MOE_NONFINITE))
    *status |= update_gating(d, pr, w, par, pg, f->mh, st->acc, st->prop);
  return ll;
}

static void fused_store(void *ctx, moe_gibbs_draws *out, int slot)
{
  mcmc_fused *f = (mcmc_fused *) ctx;
  int p = f->d->p, q = f->d->q, K = f->d->K;
  R_xlen_t pa = (R_xlen_t) p * K, qa = (R_xlen_t) q * K;
  for (R_xlen_t t = 0; t < pa; t++) out->alpha[t + slot * pa] = f->par.alpha[t];
  for (int k = 0; k < K; k++) out->sigma2[k + (R_xlen_t) slot * K] = f->par.sigma2[k];
  for (R_xlen_t t = 0; t < qa; t++) out->W[t + slot * qa] = f->par.W[t];
  out->tau[slot] = 1.0;
}

static double fused_loglik(void *ctx)
{
  mcmc_fused *f = (mcmc_fused *) ctx;
  if (f->collapsed && f->d->K > 1) {
    double llf;
    marg_pass(f->d, f->pr, &f->w, &f->par, f->par.W, 1, 1, f->w.pA, f->w.rA,
              f->w.g, &llf);
    return llf;
  }
  return update_alloc(f->d, &f->w, &f->par, 0, 1);
}

/* Set up the kernel for one chain: the row copies of the data, the logits
 * at the starting W and, in the collapsed mode, the gating probabilities at
 * it, computed by the same code as in every later pass, so a continued
 * chain sees identical values. work, iwork: mcmc_fused_work_size(). */
void mcmc_fused_init(gibbs_kernel *k, const moe_data *d,
                      const moe_mcmc_prior *pr, const moe_mcmc_control *ctl,
                      moe_vpar *par, double *work, int *iwork)
{
  mcmc_fused *f = (mcmc_fused *) R_alloc(1, sizeof(mcmc_fused));
  int n = d->n, K = d->K;
  f->d = d;
  f->pr = pr;
  f->par.alpha = par->alpha;
  f->par.sigma2 = par->sigma2;
  f->par.W = par->W;
  f->collapsed = ctl->gate_mode == 3;
  f->mh = ctl->gate_mode >= 1;
  f->gate_steps = ctl->gate_steps;
  moe_mcmc_work *w = &f->w;
  work_init(d, work, iwork, w);
  /* the subsample of the information (all observations when n <= info_obs
   * or info_obs is 0): every istride-th observation, from the first */
  w->istride = ctl->info_obs > 0 && n > ctl->info_obs ?
    (int) (((R_xlen_t) n + ctl->info_obs - 1) / ctl->info_obs) : 1;
  w->iscale = 1.0;
  if (w->istride > 1) {
    double sall = 0.0, ssub = 0.0;
    for (int i = 0; i < n; i++) sall += w->wi[i];
    for (int i = 0; i < n; i += w->istride) ssub += w->wi[i];
    w->iscale = sall / ssub;
  }
  /* never more threads than asked for, nor than the machine has */
  w->threads = moe_thread_count(ctl->threads);
  w->v2 = MOE_HAVE_V2 && mcmc_fused_v2;
  for (int j = 0; j < K - 1; j++) eta_column(d, w, f->par.W, j);
  for (int i = 0; i < n; i++) w->eta[K - 1 + (R_xlen_t) i * K] = 0.0;
  if (f->collapsed && K > 1) {
    double ll0;
    marg_pass(d, pr, w, &f->par, f->par.W, 1, 0, w->pA, w->rA, w->g, &ll0);
  }
  k->ctx = f;
  k->sweep = fused_sweep;
  k->store = fused_store;
  k->loglik = fused_loglik;
}
