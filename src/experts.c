/*
 * experts.c: linear-Gaussian experts.
 *
 * Inputs: X (n x p, column-major) expert design, y (n), wt (n) case weights,
 * R (n x K) responsibilities, alpha (p x K) coefficients, sigma2 (K).
 * Computes: the expert means mu = X alpha (n x K), Gaussian log densities and
 * the weighted least-squares M-step of one expert (coefficients and
 * weighted residual variance, floored at ctl->var_floor).
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
