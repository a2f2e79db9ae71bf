/*
 * family_binomial.c: binomial (logistic regression) experts,
 *     y_i | x_i, expert k ~ Binomial(m_i, plogis(x_i' a_k + o_i)),
 * y_i successes out of m_i trials (m_i = 1 for 0/1 responses), o_i an
 * offset (0 without one). The experts have no dispersion: sigma2_k stays 1.
 *
 * Inputs: X (n x p, column-major) expert design, y (n) successes, wt (n)
 * case weights, R (n x K) responsibilities, alpha (p x K) coefficients; the
 * family's data in glm_family_info (trials m, offset, lconst_i = log
 * choose(m_i, y_i)); for the Gibbs update the allocation counts N (K x n,
 * observation-major) and the prior a_k ~ N(m_a, V_a) of moe_mcmc_prior.
 * Kernels (moe_expert_family, moe.h):
 *  - mean: the linear predictors eta = X a_k + o (the family's `mu`);
 *  - logdens: y eta - m log(1 + e^eta) + lconst, exact for any eta;
 *  - mstep: weighted IRLS of one expert with weights wt_i R_ik: up to
 *    info->steps Newton steps with step halving (glm_newton() in linalg.c),
 *    each one non-decreasing the weighted log-likelihood, so EM is monotone;
 *  - draw: Polya-Gamma augmentation (Polson, Scott and Windle 2013), the
 *    sampler the gating uses: omega_i ~ PG(N_ki m_i, eta_i) for the
 *    observations allocated to k, then the conjugate Gaussian draw
 *    a_k ~ N(P^{-1} b, P^{-1}), P = X' Omega X + V_a^{-1},
 *    b = X' (kappa - Omega o) + V_a^{-1} m_a, kappa_i = N_ki (y_i - m_i / 2).
 *    An exact Gibbs step: it always moves. An empty expert is drawn from
 *    its prior.
 * Preconditions: 0 <= y_i <= m_i, m_i whole, N_ki m_i <= INT_MAX.
 */
#include "moe.h"

void glm_linear_predictors(const moe_data *d, const glm_family_info *info,
                           const double *alpha, double *mu)
{
  int n = d->n, K = d->K;
  expert_means(d, alpha, mu);
  if (info->offset)
    for (int k = 0; k < K; k++)
      for (int i = 0; i < n; i++) mu[i + (R_xlen_t) k * n] += info->offset[i];
}

static void binomial_mean(const moe_expert_family *f, const moe_data *d,
                          const double *alpha, double *mu, double *work)
{
  (void) work;
  glm_linear_predictors(d, (const glm_family_info *) f->info, alpha, mu);
}

static void binomial_logdens(const moe_expert_family *f, const moe_data *d,
                             const double *mu, const double *sigma2, double *lN,
                             R_xlen_t si, R_xlen_t sk)
{
  (void) sigma2;
  const glm_family_info *info = (const glm_family_info *) f->info;
  int n = d->n, K = d->K;
  double b1, b2;
  for (int k = 0; k < K; k++) {
    const double *e = mu + (R_xlen_t) k * n;
    for (int i = 0; i < n; i++)
      lN[i * si + k * sk] = d->y[i] * e[i] -
        info->trials[i] * glm_cumulant(GLM_LOGIT, e[i], &b1, &b2) + info->lconst[i];
  }
}

/* The weighted IRLS M-step shared with family_poisson.c: weights wt_i R_ik,
 * link `link`, trials m (NULL: 1). work: GLM_MSTEP_WORK(n, p). */
int glm_mstep(const moe_data *d, const glm_family_info *info, int link,
              const double *R, int k, double *alpha_k, double *sigma2_k,
              double *mu_k, const moe_em_control *ctl, double *work)
{
  int n = d->n, p = d->p;
  const double *Rk = R + (R_xlen_t) k * n;
  double *v = work, *L = v + n, *nw = L + (R_xlen_t) p * p;
  double nk = 0.0;
  for (int i = 0; i < n; i++) {
    v[i] = d->wt[i] * Rk[i];
    nk += v[i];
  }
  *sigma2_k = 1.0;
  if (!(nk >= ctl->min_size)) return MOE_EMPTY;
  glm_problem g = { n, p, link, d->X, d->y, info->trials, info->offset, v, NULL, NULL };
  double fval;
  int status = glm_newton(&g, alpha_k, info->steps, info->tol, mu_k, L, &fval, 0, nw);
  return status;
}

static int binomial_mstep(const moe_expert_family *f, const moe_data *d,
                          const double *R, int k, double *alpha_k,
                          double *sigma2_k, double *mu_k,
                          const moe_em_control *ctl, double *work)
{
  return glm_mstep(d, (const glm_family_info *) f->info, GLM_LOGIT, R, k, alpha_k,
                   sigma2_k, mu_k, ctl, work);
}

/* The Polya-Gamma draw of every expert (see the head of the file). work:
 * n + 2 p^2 + 4 p doubles. */
static int binomial_draw(const moe_expert_family *f, const moe_data *d,
                         const moe_mcmc_prior *pr, const int *N, double *alpha,
                         double *sigma2, double *state, int adapt,
                         int *accepted, double *work)
{
  (void) state; (void) adapt; (void) accepted;
  const glm_family_info *info = (const glm_family_info *) f->info;
  int n = d->n, p = d->p, K = d->K, status = MOE_OK;
  double *eta = work, *P = eta + n, *Psave = P + (R_xlen_t) p * p;
  double *b = Psave + (R_xlen_t) p * p, *m = b + p, *z = m + p, *tmp = z + p;
  for (int k = 0; k < K; k++) {
    double *ak = alpha + (R_xlen_t) k * p;
    for (int j = 0; j < p; j++) {
      b[j] = pr->Va_inv_m[j];
      for (int l = 0; l <= j; l++) P[j + l * p] = pr->Va_inv[j + l * p];
    }
    for (int i = 0; i < n; i++) {
      int c = N[k + (R_xlen_t) i * K];
      if (c == 0) continue;
      double e = info->offset ? info->offset[i] : 0.0;
      for (int j = 0; j < p; j++) e += d->X[i + (R_xlen_t) j * n] * ak[j];
      int bi = c * (int) info->trials[i];
      double om = bi == 1 ? rpg1(e) : rpg(bi, e);
      double kap = c * (d->y[i] - 0.5 * info->trials[i]);
      double o = info->offset ? info->offset[i] : 0.0;
      double r = kap - om * o;
      for (int j = 0; j < p; j++) {
        double xj = d->X[i + (R_xlen_t) j * n], ox = om * xj;
        b[j] += r * xj;
        for (int l = 0; l <= j; l++) P[j + l * p] += ox * d->X[i + (R_xlen_t) l * n];
      }
    }
    int rc = chol_factor_ridge(p, P, Psave, 1e-10);
    if (rc < 0) return status | MOE_NOT_PD | MOE_NONFINITE;
    if (rc > 0) status |= MOE_NOT_PD;
    for (int j = 0; j < p; j++) m[j] = b[j];
    chol_solve_factored(p, P, m, 1);
    mvn_draw_chol(p, P, m, z, tmp);
    for (int j = 0; j < p; j++) {
      if (!R_FINITE(z[j])) return status | MOE_NONFINITE;
      ak[j] = z[j];
    }
    sigma2[k] = 1.0;
  }
  return status;
}

static R_xlen_t binomial_work_size(const moe_expert_family *f, const moe_data *d)
{
  (void) f;
  R_xlen_t n = d->n, p = d->p;
  R_xlen_t em = GLM_MSTEP_WORK(n, p), gibbs = n + 2 * p * p + 4 * p;
  return (em > gibbs ? em : gibbs) + 8;
}

void moe_family_binomial(moe_expert_family *f, const glm_family_info *info, int p)
{
  /* type, npar, nstate, naccept, fused, info, then the kernels */
  moe_expert_family fam = { FAMILY_BINOMIAL, p, 0, 0, 0, info, binomial_mean,
    binomial_logdens, binomial_mstep, binomial_draw, binomial_work_size };
  *f = fam;
}
