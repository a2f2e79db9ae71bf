/*
 * linalg.c: small dense linear algebra on top of R's LAPACK/BLAS, and the
 * log-sum-exp used everywhere.
 *
 * Matrices are m x m, column-major, symmetric positive (semi)definite where a
 * Cholesky factor is asked for; only the lower triangle is read or written by
 * the factorisation (LAPACK "L"). Work arrays are supplied by the caller.
 */
#include "moe.h"
#include "moe_exp.h"

/* log(sum(exp(v[0..m-1]))) without overflow; -Inf when every entry is -Inf. */
double moe_lse(const double *v, int m)
{
  double mx = R_NegInf;
  for (int k = 0; k < m; k++) if (v[k] > mx) mx = v[k];
  if (!R_FINITE(mx)) return mx;
  double s = 0.0;
  for (int k = 0; k < m; k++) s += exp(v[k] - mx);
  return mx + log(s);
}

/*
 * Cholesky factorisation A = L L' in place (lower triangle), adding a ridge
 * to the diagonal when A is not numerically positive definite. `save` (m * m)
 * receives a copy of A so the ridge can be retried from the original.
 * Returns 0 when no ridge was needed, the number of ridge attempts when one
 * was, and -1 when even the largest ridge failed (A holds garbage then).
 */
int chol_factor_ridge(int m, double *A, double *save, double ridge0)
{
  int info = 0;
  R_xlen_t mm = (R_xlen_t) m * m;
  for (R_xlen_t t = 0; t < mm; t++) save[t] = A[t];
  F77_CALL(dpotrf)("L", &m, A, &m, &info FCONE);
  if (info == 0) return 0;
  double dmax = 0.0;
  for (int j = 0; j < m; j++) {
    double a = fabs(save[j + (R_xlen_t) j * m]);
    if (R_FINITE(a) && a > dmax) dmax = a;
  }
  if (dmax == 0.0) dmax = 1.0;
  double ridge = (ridge0 > 0 ? ridge0 : 1e-10) * dmax;
  for (int attempt = 1; attempt <= 12; attempt++, ridge *= 10.0) {
    for (R_xlen_t t = 0; t < mm; t++) A[t] = save[t];
    for (int j = 0; j < m; j++) A[j + (R_xlen_t) j * m] += ridge;
    F77_CALL(dpotrf)("L", &m, A, &m, &info FCONE);
    if (info == 0) return attempt;
  }
  return -1;
}

/* Solve (L L') x = b for nrhs right-hand sides stored in b (m x nrhs). */
void chol_solve_factored(int m, const double *L, double *b, int nrhs)
{
  int info = 0;
  F77_CALL(dpotrs)("L", &m, &nrhs, L, &m, b, &m, &info FCONE);
}

/* Solve A x = b with A symmetric positive definite; A is overwritten by its
 * factor and `work` needs m * m doubles. Returns chol_factor_ridge()'s code. */
int chol_solve(int m, double *A, double *b, int nrhs, double *work)
{
  int rc = chol_factor_ridge(m, A, work, 0.0);
  if (rc >= 0) chol_solve_factored(m, A, b, nrhs);
  return rc;
}

/* Overwrite a Cholesky factor L (lower) with the full inverse of L L'. */
void chol_inverse(int m, double *L)
{
  int info = 0;
  F77_CALL(dpotri)("L", &m, L, &m, &info FCONE);
  for (int j = 0; j < m; j++)
    for (int i = 0; i < j; i++)
      L[i + (R_xlen_t) j * m] = L[j + (R_xlen_t) i * m];
}

/* log det(L L') from the lower Cholesky factor. */
double log_det_chol(int m, const double *L)
{
  double s = 0.0;
  for (int j = 0; j < m; j++) s += log(L[j + (R_xlen_t) j * m]);
  return 2.0 * s;
}

/*
 * Draw x ~ N(mean, P^{-1}) where P = L L' is a precision matrix given by its
 * lower Cholesky factor: x = mean + L'^{-1} e with e standard normal, since
 * Var(L'^{-1} e) = (L L')^{-1}. `work` needs m doubles. Uses norm_rand(), so
 * the caller holds GetRNGstate().
 */
void mvn_draw_chol(int m, const double *L, const double *mean, double *out,
                   double *work)
{
  int one = 1;
  for (int j = 0; j < m; j++) work[j] = norm_rand();
  F77_CALL(dtrsv)("L", "T", "N", &m, L, &m, work, &one FCONE FCONE FCONE);
  for (int j = 0; j < m; j++) out[j] = mean[j] + work[j];
}

/*
 * Canonical-link GLM helpers of the binomial and Poisson expert families
 * (family_binomial.c, family_poisson.c). With linear predictor eta = x'a + o
 * one observation contributes y eta - m b(eta) to the log-likelihood (up to
 * a constant): b(eta) = log(1 + e^eta) for the logit link (y successes out
 * of m trials), b(eta) = e^eta for the log link (y a count, m = 1).
 * glm_cumulant() returns b(eta) and writes b'(eta), b''(eta).
 */
/* log(1 + x) for x in [0, 1] to about 1 ulp with one log() (Goldberg's
 * correction: log(u) x / (u - 1), u = 1 + x rounded). */
static inline double log1p_unit(double x)
{
  double u = 1.0 + x;
  return u == 1.0 ? x : log(u) * x / (u - 1.0);
}

double glm_cumulant(int link, double eta, double *b1, double *b2)
{
  if (link == GLM_LOG) {
    double e = moe_exp(eta);
    *b1 = e;
    *b2 = e;
    return e;
  }
  /* logit: b = log(1 + e^eta) = max(eta, 0) + log1p(e^-|eta|) without
   * overflow, b' = plogis(eta) */
  double a = fabs(eta), e = moe_exp(-a), r = 1.0 / (1.0 + e);
  double p = eta > 0.0 ? r : e * r;
  *b1 = p;
  *b2 = e * r * r;
  return (eta > 0.0 ? eta : 0.0) + log1p_unit(e);
}

/* The weighted GLM objective sum_i v_i (y_i eta_i - m_i b(eta_i)) (v_i = 0
 * terms left out) minus, with a prior (Vinv not NULL), 1/2 (a - ma)' Vinv
 * (a - ma); eta (n) receives X a + off. */
double glm_objective(const glm_problem *g, const double *a, double *eta)
{
  int n = g->n, p = g->p;
  double f = 0.0, b1, b2;
  for (int i = 0; i < n; i++) {
    double e = g->off ? g->off[i] : 0.0;
    for (int j = 0; j < p; j++) e += g->X[i + (R_xlen_t) j * n] * a[j];
    eta[i] = e;
    if (!(g->v[i] > 0.0)) continue;
    double m = g->m ? g->m[i] : 1.0;
    f += g->v[i] * (g->y[i] * e - m * glm_cumulant(g->link, e, &b1, &b2));
  }
  if (g->Vinv) {
    for (int j = 0; j < p; j++) {
      double s = 0.0;
      for (int l = 0; l < p; l++) s += g->Vinv[j + l * p] * (a[l] - g->ma[l]);
      f -= 0.5 * (a[j] - g->ma[j]) * s;
    }
  }
  return f;
}

/* One pass at a: eta (n) = X a + off, the objective (returned), its
 * gradient grad (p) and the lower triangle of minus its Hessian, H (p x p). */
static double glm_derivs(const glm_problem *g, const double *a, double *eta,
                         double *grad, double *H)
{
  int n = g->n, p = g->p;
  double f = 0.0, b1, b2;
  for (int j = 0; j < p; j++) {
    grad[j] = 0.0;
    for (int l = 0; l <= j; l++) H[j + l * p] = 0.0;
  }
  for (int i = 0; i < n; i++) {
    double e = g->off ? g->off[i] : 0.0;
    for (int j = 0; j < p; j++) e += g->X[i + (R_xlen_t) j * n] * a[j];
    eta[i] = e;
    double v = g->v[i];
    if (!(v > 0.0)) continue;
    double m = g->m ? g->m[i] : 1.0;
    f += v * (g->y[i] * e - m * glm_cumulant(g->link, e, &b1, &b2));
    double r = v * (g->y[i] - m * b1), c = v * m * b2;
    for (int j = 0; j < p; j++) {
      double xj = g->X[i + (R_xlen_t) j * n];
      grad[j] += r * xj;
      double cx = c * xj;
      for (int l = 0; l <= j; l++) H[j + l * p] += cx * g->X[i + (R_xlen_t) l * n];
    }
  }
  if (g->Vinv) {
    for (int j = 0; j < p; j++) {
      double s = 0.0;
      for (int l = 0; l < p; l++) s += g->Vinv[j + l * p] * (a[l] - g->ma[l]);
      f -= 0.5 * (a[j] - g->ma[j]) * s;
      grad[j] -= s;
      for (int l = 0; l <= j; l++) H[j + l * p] += g->Vinv[j + l * p];
    }
  }
  return f;
}

/*
 * Newton (IRLS) ascent of glm_objective() from a (p), at most `steps`
 * steps, each halved (up to 40 times) until the objective does not
 * decrease, so the objective is monotone; stops early when a step gains
 * less than tol (1 + |f|). On return a holds the new coefficients, eta (n)
 * X a + off, *fval the objective and, when need_L, L (p x p) the lower
 * Cholesky factor of minus the Hessian at a (with a ridge when it was not
 * positive definite; otherwise L is scratch). Returns moe_status flags:
 * MOE_NOT_PD when a ridge was needed, MOE_NONFINITE when the objective is
 * not finite at the start. work: GLM_NEWTON_WORK(n, p) doubles.
 */
int glm_newton(const glm_problem *g, double *a, int steps, double tol,
               double *eta, double *L, double *fval, int need_L, double *work)
{
  int p = g->p, status = MOE_OK;
  R_xlen_t pp = (R_xlen_t) p * p;
  double *save = work, *grad = save + pp, *delta = grad + p, *anew = delta + p;
  double *etan = anew + p;
  /* f, grad and L at a; `fresh`: they are current */
  double f = glm_derivs(g, a, eta, grad, L);
  int fresh = 1;
  if (!R_FINITE(f)) {
    *fval = f;
    return MOE_NONFINITE;
  }
  for (int it = 0; it < steps; it++) {
    if (!fresh) glm_derivs(g, a, eta, grad, L);
    fresh = 1;
    int rc = chol_factor_ridge(p, L, save, 1e-10);
    if (rc < 0) { status |= MOE_NOT_PD; fresh = 0; break; }
    if (rc > 0) status |= MOE_NOT_PD;
    for (int j = 0; j < p; j++) delta[j] = grad[j];
    chol_solve_factored(p, L, delta, 1);
    double t = 1.0, fn = R_NegInf;
    int ok = 0;
    for (int h = 0; h < 40; h++, t *= 0.5) {
      for (int j = 0; j < p; j++) anew[j] = a[j] + t * delta[j];
      fn = glm_objective(g, anew, etan);
      if (R_FINITE(fn) && fn >= f) { ok = 1; break; }
    }
    /* L holds the factor at a (unchanged) */
    if (!ok) break;
    double gain = fn - f;
    for (int j = 0; j < p; j++) a[j] = anew[j];
    for (int i = 0; i < g->n; i++) eta[i] = etan[i];
    f = fn;
    fresh = 0;
    if (gain <= tol * (1.0 + fabs(f))) break;
  }
  if (need_L && !fresh) {
    glm_derivs(g, a, eta, grad, L);
    int rc = chol_factor_ridge(p, L, save, 1e-10);
    if (rc != 0) status |= MOE_NOT_PD;
  } else if (need_L && fresh) {
    /* the loop ended before factoring (steps = 0) or factored L in place */
    if (steps == 0) {
      int rc = chol_factor_ridge(p, L, save, 1e-10);
      if (rc != 0) status |= MOE_NOT_PD;
    }
  }
  *fval = f;
  return status;
}
