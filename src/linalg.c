/*
 * linalg.c: small dense linear algebra on top of R's LAPACK/BLAS, and the
 * log-sum-exp used everywhere.
 *
 * Matrices are m x m, column-major, symmetric positive (semi)definite where a
 * Cholesky factor is asked for; only the lower triangle is read or written by
 * the factorisation (LAPACK "L"). Work arrays are supplied by the caller.
 */
#include "moe.h"

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
