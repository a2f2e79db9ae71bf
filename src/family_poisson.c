/*
 * family_poisson.c: Poisson (log-linear) experts,
 *     y_i | x_i, expert k ~ Poisson(exp(x_i' a_k + o_i)),
 * y_i a count, o_i an offset (0 without one; log exposure as in glm()). The
 * experts have no dispersion: sigma2_k stays 1.
 *
 * Inputs: X (n x p, column-major) expert design, y (n) counts, wt (n) case
 * weights, R (n x K) responsibilities, alpha (p x K) coefficients; the
 * family's data in glm_family_info (offset, lconst_i = -log y_i!; no
 * trials); for the Gibbs update the allocation counts N (K x n,
 * observation-major) and the prior a_k ~ N(m_a, V_a) of moe_mcmc_prior.
 * Kernels (moe_expert_family, moe.h):
 *  - mean: the linear predictors eta = X a_k + o (the family's `mu`);
 *  - logdens: y eta - e^eta + lconst;
 *  - mstep: weighted IRLS with step halving (glm_mstep(), family_binomial.c),
 *    monotone;
 *  - draw: for each expert an independence Metropolis-Hastings step whose
 *    proposal is a multivariate t (POIS_T_DF degrees of freedom) centred at
 *    the mode of the expert's conditional posterior (the allocated counts,
 *    the prior) with scale the inverse of minus the Hessian there (a Laplace
 *    approximation with heavier tails). The mode is found afresh every sweep
 *    by Newton steps started from the prior mean m_a, so the proposal is a
 *    function of the allocations only, never of the current a_k: the step is
 *    an exact independence sampler. Why this proposal and not a random walk
 *    or a proposal built at the current point (Gamerman 1997): neither can
 *    freeze. The proposal follows the conditional wherever the allocations
 *    move it, and the Poisson log-likelihood is concave with tails no
 *    heavier than Gaussian (the prior) in every direction, so the t tails
 *    dominate the target and the importance ratio is bounded: the sampler
 *    is uniformly ergodic and its acceptance rate stays high (about 0.8 to
 *    0.95). An empty expert is drawn from its prior (always accepted).
 *    Accepted proposals are counted per expert (naccept = K blocks).
 * Preconditions: y_i whole >= 0.
 */
#include "moe.h"
#include "moe_exp.h"

/* Degrees of freedom of the t proposal of the Gibbs update. */
#define POIS_T_DF 4.0
/* Newton steps and tolerance of the conditional mode (from the prior mean). */
#define POIS_MODE_STEPS 100
#define POIS_MODE_TOL 1e-12

static void poisson_mean(const moe_expert_family *f, const moe_data *d,
                         const double *alpha, double *mu, double *work)
{
  (void) work;
  glm_linear_predictors(d, (const glm_family_info *) f->info, alpha, mu);
}

static void poisson_logdens(const moe_expert_family *f, const moe_data *d,
                            const double *mu, const double *sigma2, double *lN,
                            R_xlen_t si, R_xlen_t sk)
{
  (void) sigma2;
  const glm_family_info *info = (const glm_family_info *) f->info;
  int n = d->n, K = d->K;
  for (int k = 0; k < K; k++) {
    const double *e = mu + (R_xlen_t) k * n;
    for (int i = 0; i < n; i++) {
      /* y eta - e^eta; exp() overflows to Inf, so the density to -Inf */
      lN[i * si + k * sk] = d->y[i] * e[i] - moe_exp(e[i]) + info->lconst[i];
    }
  }
}

static int poisson_mstep(const moe_expert_family *f, const moe_data *d,
                         const double *R, int k, double *alpha_k,
                         double *sigma2_k, double *mu_k,
                         const moe_em_control *ctl, double *work)
{
  return glm_mstep(d, (const glm_family_info *) f->info, GLM_LOG, R, k, alpha_k,
                   sigma2_k, mu_k, ctl, work);
}

/* log of the t proposal density at a, up to its constant: -(nu + p) / 2
 * log(1 + Q / nu), Q = || L' (a - mode) ||^2 (L L' = minus the Hessian). */
static double t_logq(int p, const double *L, const double *mode, const double *a,
                     double *tmp)
{
  double Q = 0.0;
  for (int j = 0; j < p; j++) tmp[j] = a[j] - mode[j];
  for (int j = 0; j < p; j++) {
    double s = 0.0;  /* (L' u)_j = sum_{l >= j} L[l, j] u_l */
    for (int l = j; l < p; l++) s += L[l + (R_xlen_t) j * p] * tmp[l];
    Q += s * s;
  }
  return -0.5 * (POIS_T_DF + p) * log1p(Q / POIS_T_DF);
}

/* The Metropolis-Hastings update of every expert (see the head of the
 * file). work: 2 n + 3 p^2 + 6 p + GLM_NEWTON_WORK(n, p) doubles. */
static int poisson_draw(const moe_expert_family *f, const moe_data *d,
                        const moe_mcmc_prior *pr, const int *N, double *alpha,
                        double *sigma2, double *state, int adapt,
                        int *accepted, double *work)
{
  (void) state; (void) adapt;
  const glm_family_info *info = (const glm_family_info *) f->info;
  int n = d->n, p = d->p, K = d->K, status = MOE_OK;
  R_xlen_t pp = (R_xlen_t) p * p;
  double *v = work, *eta = v + n, *L = eta + n, *Lp = L + pp, *save = Lp + pp;
  double *mode = save + pp, *prop = mode + p, *z = prop + p, *tmp = z + p;
  double *mean0 = tmp + p, *nw = mean0 + p + 8;
  /* the prior's factor, for empty experts */
  for (R_xlen_t t = 0; t < pp; t++) Lp[t] = pr->Va_inv[t];
  int rcp = chol_factor_ridge(p, Lp, save, 1e-10);
  if (rcp < 0) return MOE_NOT_PD | MOE_NONFINITE;
  for (int k = 0; k < K; k++) {
    double *ak = alpha + (R_xlen_t) k * p;
    sigma2[k] = 1.0;
    double nk = 0.0;
    for (int i = 0; i < n; i++) {
      v[i] = N[k + (R_xlen_t) i * K];
      nk += v[i];
    }
    if (nk == 0.0) {
      for (int j = 0; j < p; j++) mean0[j] = pr->m_a[j];
      mvn_draw_chol(p, Lp, mean0, ak, tmp);
      accepted[k]++;
      continue;
    }
    glm_problem g = { n, p, GLM_LOG, d->X, d->y, NULL, info->offset, v,
                      pr->Va_inv, pr->m_a };
    for (int j = 0; j < p; j++) mode[j] = pr->m_a[j];
    double fmode;
    int st = glm_newton(&g, mode, POIS_MODE_STEPS, POIS_MODE_TOL, eta, L, &fmode, 1, nw);
    if (st & MOE_NONFINITE) return status | MOE_NONFINITE;
    if (st & MOE_NOT_PD) status |= MOE_NOT_PD;
    /* a' = mode + L'^{-1} e / sqrt(u), e ~ N(0, I), u ~ chi^2_nu / nu */
    for (int j = 0; j < p; j++) mean0[j] = 0.0;
    mvn_draw_chol(p, L, mean0, z, tmp);
    double s = sqrt(POIS_T_DF / rchisq(POIS_T_DF));
    for (int j = 0; j < p; j++) prop[j] = mode[j] + s * z[j];
    double fprop = glm_objective(&g, prop, eta);
    double fcur = glm_objective(&g, ak, eta);
    double lr = fprop - fcur + t_logq(p, L, mode, ak, tmp) - t_logq(p, L, mode, prop, tmp);
    if (!R_FINITE(fcur) || (R_FINITE(fprop) && log(unif_rand()) < lr)) {
      if (!R_FINITE(fprop)) continue;
      for (int j = 0; j < p; j++) ak[j] = prop[j];
      accepted[k]++;
    }
  }
  return status;
}

static R_xlen_t poisson_work_size(const moe_expert_family *f, const moe_data *d)
{
  (void) f;
  R_xlen_t n = d->n, p = d->p;
  R_xlen_t em = GLM_MSTEP_WORK(n, p);
  R_xlen_t gibbs = 2 * n + 3 * p * p + 6 * p + 8 + GLM_NEWTON_WORK(n, p);
  return (em > gibbs ? em : gibbs) + 8;
}

void moe_family_poisson(moe_expert_family *f, const glm_family_info *info, int p,
                        int K)
{
  /* type, npar, nstate, naccept, fused, info, then the kernels */
  moe_expert_family fam = { FAMILY_POISSON, p, 0, K, 0, info, poisson_mean,
    poisson_logdens, poisson_mstep, poisson_draw, poisson_work_size };
  *f = fam;
}
