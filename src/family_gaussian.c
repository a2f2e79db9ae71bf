/*
 * family_gaussian.c: the linear Gaussian expert family,
 *     y | x, expert k ~ N(x' alpha_k, sigma2_k).
 *
 * Inputs: X (n x p, column-major) expert design, y (n), wt (n) case weights,
 * R (n x K) responsibilities, alpha (p x K) coefficients, sigma2 (K); for the
 * Gibbs update the allocation counts N (K x n, observation-major) and the
 * conjugate prior of moe_mcmc_prior: alpha_k | sigma2_k ~ N(m_a, sigma2_k
 * V_a), sigma2_k ~ InvGamma(c0, C0).
 * Kernels (moe_expert_family, moe.h):
 *  - mean: mu = X alpha (n x K);
 *  - logdens: log N(y_i; mu_ik, sigma2_k);
 *  - mstep: weighted least squares of one expert with weights wt_i R_ik and
 *    the weighted residual variance, floored at ctl->var_floor;
 *  - draw: the conjugate Normal / inverse-gamma draw of every expert given
 *    its allocated observations (an empty expert is drawn from its prior).
 * gaussian_conjugate_draw() is the draw from sufficient statistics, shared
 * with the fused sweep of mcmc_fused.c.
 */
#include "moe.h"

void expert_means(const moe_data *d, const double *alpha, double *mu)
{
  int n = d->n, p = d->p, K = d->K;
  double one = 1.0, zero = 0.0;
  F77_CALL(dgemm)("N", "N", &n, &K, &p, &one, d->X, &n, alpha, &p, &zero, mu,
                  &n FCONE FCONE);
}

double log_dnorm(double y, double mu, double sigma2)
{
  double r = y - mu;
  return -0.5 * (LOG_2PI + log(sigma2) + r * r / sigma2);
}

void gaussian_logdens(const moe_expert_family *f, const moe_data *d,
                      const double *mu, const double *sigma2, double *lN,
                      R_xlen_t si, R_xlen_t sk)
{
  (void) f;
  int n = d->n, K = d->K;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < K; k++)
      lN[i * si + k * sk] = log_dnorm(d->y[i], mu[i + (R_xlen_t) k * n], sigma2[k]);
}

/*
 * Weighted least squares for expert k with weights wt_i R_ik.
 * Writes alpha_k (p), sigma2_k and mu_k (n, the new fitted means). When the
 * effective size sum_i wt_i R_ik is below ctl->min_size nothing is updated and
 * MOE_EMPTY is returned. work: 2 p^2 + p + 2 n doubles.
 */
int expert_wls(const moe_data *d, const double *R, int k, double *alpha_k,
               double *sigma2_k, double *mu_k, const moe_em_control *ctl,
               double *work)
{
  int n = d->n, p = d->p, status = MOE_OK;
  const double *X = d->X, *y = d->y, *wt = d->wt, *Rk = R + (R_xlen_t) k * n;
  double *A = work, *save = A + (R_xlen_t) p * p, *b = save + (R_xlen_t) p * p;
  double *v = b + p, *vx = v + n;

  double nk = 0.0;
  for (int i = 0; i < n; i++) {
    v[i] = wt[i] * Rk[i];
    nk += v[i];
  }
  if (!(nk >= ctl->min_size)) return MOE_EMPTY;

  for (int a = 0; a < p; a++) {
    const double *Xa = X + (R_xlen_t) a * n;
    double s = 0.0;
    for (int i = 0; i < n; i++) {
      vx[i] = v[i] * Xa[i];
      s += vx[i] * y[i];
    }
    b[a] = s;
    for (int c = 0; c <= a; c++) {
      const double *Xc = X + (R_xlen_t) c * n;
      double t = 0.0;
      for (int i = 0; i < n; i++) t += vx[i] * Xc[i];
      A[a + (R_xlen_t) c * p] = t;
    }
  }
  int rc = chol_factor_ridge(p, A, save, 1e-10);
  if (rc < 0) return MOE_EMPTY | MOE_NOT_PD;
  if (rc > 0) status |= MOE_NOT_PD;
  chol_solve_factored(p, A, b, 1);
  for (int a = 0; a < p; a++) alpha_k[a] = b[a];

  double rss = 0.0;
  for (int i = 0; i < n; i++) {
    double m = 0.0;
    for (int a = 0; a < p; a++) m += X[i + (R_xlen_t) a * n] * b[a];
    mu_k[i] = m;
    double r = y[i] - m;
    rss += v[i] * r * r;
  }
  double s2 = rss / nk;
  if (!(s2 > ctl->var_floor)) {
    s2 = ctl->var_floor;
    status |= MOE_VAR_FLOOR;
  }
  *sigma2_k = s2;
  return status;
}

int gaussian_conjugate_draw(int p, const double *S, const double *sy,
                            double yty, double nk, const moe_mcmc_prior *pr,
                            double *alpha_k, double *sigma2_k, double *work)
{
  int status = MOE_OK;
  double *A = work, *Asave = A + (R_xlen_t) p * p, *b = Asave + (R_xlen_t) p * p;
  double *m = b + p, *z = m + p, *zero = z + p;
  for (int a = 0; a < p; a++) {
    for (int c = 0; c <= a; c++)
      A[a + c * p] = S[a + c * p] + pr->Va_inv[a + c * p];
    b[a] = sy[a] + pr->Va_inv_m[a];
    zero[a] = 0.0;
  }
  int rc = chol_factor_ridge(p, A, Asave, 1e-10);
  if (rc < 0) return status | MOE_NOT_PD | MOE_NONFINITE;
  if (rc > 0) status |= MOE_NOT_PD;
  for (int a = 0; a < p; a++) m[a] = b[a];
  chol_solve_factored(p, A, m, 1);
  double bm = 0.0;
  for (int a = 0; a < p; a++) bm += b[a] * m[a];
  double Q = yty + pr->m_Va_inv_m - bm;
  double shape = pr->c0 + 0.5 * nk, scale = pr->C0 + 0.5 * (Q > 0.0 ? Q : 0.0);
  double s2 = scale / rgamma(shape, 1.0);
  mvn_draw_chol(p, A, zero, z, b);
  /* A variance outside [MOE_S2_MIN, MOE_S2_MAX] is rejected and the expert
   * keeps its values: a Metropolis-Hastings step, with the untruncated
   * conditional as proposal, that is exact for the prior truncated to that
   * range. Only vague priors reach it, for empty experts: a draw from
   * InvGamma(0.01, 0.01) exceeds 1e100 with probability 0.1 and
   * overflows double precision with probability 0.0008. */
  if (!(s2 >= MOE_S2_MIN && s2 <= MOE_S2_MAX)) return status;
  double sd = sqrt(s2);
  for (int a = 0; a < p; a++) alpha_k[a] = m[a] + sd * z[a];
  *sigma2_k = s2;
  return status;
}

/* ---- the family table ---- */

static void linear_mean(const moe_expert_family *f, const moe_data *d,
                        const double *alpha, double *mu, double *work)
{
  (void) f;
  (void) work;
  expert_means(d, alpha, mu);
}

static int linear_mstep(const moe_expert_family *f, const moe_data *d,
                        const double *R, int k, double *alpha_k,
                        double *sigma2_k, double *mu_k,
                        const moe_em_control *ctl, double *work)
{
  (void) f;
  return expert_wls(d, R, k, alpha_k, sigma2_k, mu_k, ctl, work);
}

/* Every expert given the counts N: its sufficient statistics (lower
 * triangle of sum_i N_ki x_i x_i', sum N_ki y_i x_i, sum N_ki y_i^2, sum
 * N_ki), then gaussian_conjugate_draw(). work: 3 p^2 + 5 p + 2 doubles. */
static int linear_draw(const moe_expert_family *f, const moe_data *d,
                       const moe_mcmc_prior *pr, const int *N, double *alpha,
                       double *sigma2, double *state, int adapt, int *accepted,
                       double *work)
{
  (void) f; (void) state; (void) adapt; (void) accepted;
  int n = d->n, p = d->p, K = d->K, status = MOE_OK;
  double *S = work, *sy = S + (R_xlen_t) p * p, *dw = sy + p;
  for (int k = 0; k < K; k++) {
    double nk = 0.0, yty = 0.0;
    for (int a = 0; a < p; a++) {
      sy[a] = 0.0;
      for (int c = 0; c <= a; c++) S[a + c * p] = 0.0;
    }
    for (int i = 0; i < n; i++) {
      int c = N[k + (R_xlen_t) i * K];
      if (c == 0) continue;
      double yi = d->y[i], cy = c * yi;
      nk += c;
      yty += cy * yi;
      for (int a = 0; a < p; a++) {
        double xa = d->X[i + (R_xlen_t) a * n], cxa = c * xa;
        sy[a] += cy * xa;
        for (int e = 0; e <= a; e++) S[a + e * p] += cxa * d->X[i + (R_xlen_t) e * n];
      }
    }
    status |= gaussian_conjugate_draw(p, S, sy, yty, nk, pr,
                                      alpha + (R_xlen_t) k * p, sigma2 + k, dw);
    if (status & MOE_NONFINITE) return status;
  }
  return status;
}

static R_xlen_t linear_work_size(const moe_expert_family *f, const moe_data *d)
{
  (void) f;
  R_xlen_t p = d->p;
  /* expert_wls(): 2 p^2 + p + 2 n; linear_draw(): 3 p^2 + 5 p */
  return 3 * p * p + 5 * p + 2 * (R_xlen_t) d->n;
}

void moe_family_gaussian(moe_expert_family *f, int p)
{
  /* type, npar, nstate, naccept, fused, info, then the kernels */
  moe_expert_family fam = { FAMILY_GAUSSIAN_LINEAR, p, 0, 0, 1, NULL, linear_mean,
    gaussian_logdens, linear_mstep, linear_draw, linear_work_size };
  *f = fam;
}
