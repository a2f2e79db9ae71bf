/*
 * ls.c: the least-squares (regression) form of the mixture of experts,
 *
 *     f(x, z) = sum_k g_k(z) h(x; eta_k),   g = softmax(z' W),
 *
 * with linear experts h(x; a) = x'a or FFN experts (family_ffn.c), fitted by
 * minimising the weighted residual sum of squares sum_i wt_i (y_i - f_i)^2
 * with Levenberg-Marquardt (moe_lm() in family_ffn.c).
 *
 * Inputs (ls_model): data d (y n, X n x p, Z n x q, wt n; column-major),
 * the expert type (LS_LINEAR or LS_FFN) and for FFN experts the network
 * inputs net (X n x D, H hidden units). Parameter vector theta: the P_e
 * expert parameters of expert 1, ..., K (P_e = p for linear experts, the
 * FFN layout of family_ffn.c otherwise), then the free gating columns W[, 1..K-1]
 * (q each); W[, K] = 0 is the reference.
 * ls_model_eval() writes the regression function f (n) and, when asked, its
 * Jacobian d f / d theta (n x P). ls_run() minimises the weighted residual
 * sum of squares from a starting theta.
 * Preconditions: K >= 1, wt >= 0; work sizes from ls_work_size().
 */
#include "moe.h"

int ls_npar(const ls_model *m)
{
  int Pe = m->type == LS_FFN ? FFN_NPAR(m->net.D, m->net.H) : m->d.p;
  return Pe * m->d.K + m->d.q * (m->d.K - 1);
}

/* Scratch of ls_model_eval(): n K means, n K log gates, 2 n H features,
 * n P_e expert Jacobian. */
R_xlen_t ls_eval_work_size(const ls_model *m)
{
  R_xlen_t n = m->d.n, K = m->d.K;
  R_xlen_t Pe = m->type == LS_FFN ? FFN_NPAR(m->net.D, m->net.H) : m->d.p;
  R_xlen_t H = m->type == LS_FFN ? m->net.H : 0;
  return 2 * n * K + 2 * n * H + n * Pe;
}

void ls_model_eval(void *ctx, const double *theta, double *f, double *J)
{
  ls_model *m = (ls_model *) ctx;
  int n = m->d.n, p = m->d.p, q = m->d.q, K = m->d.K;
  int ffn = m->type == LS_FFN;
  int Pe = ffn ? FFN_NPAR(m->net.D, m->net.H) : p, H = ffn ? m->net.H : 0;
  R_xlen_t nK = (R_xlen_t) n * K;
  double *mu = m->work, *lg = mu + nK, *F = lg + nK, *Fp = F + (R_xlen_t) n * H;
  double *Je = Fp + (R_xlen_t) n * H;
  const double *Wf = theta + (R_xlen_t) Pe * K;
  const double *X = m->d.X, *Z = m->d.Z;

  /* gating: log-softmax of z'W with W[, K] = 0 */
  for (int i = 0; i < n; i++) {
    double mx = 0.0;
    for (int k = 0; k < K - 1; k++) {
      double e = 0.0;
      for (int a = 0; a < q; a++) e += Z[i + (R_xlen_t) a * n] * Wf[a + k * q];
      lg[i + (R_xlen_t) k * n] = e;
      if (e > mx) mx = e;
    }
    lg[i + (R_xlen_t) (K - 1) * n] = 0.0;
    double s = 0.0;
    for (int k = 0; k < K; k++) s += exp(lg[i + (R_xlen_t) k * n] - mx);
    double lse = mx + log(s);
    for (int k = 0; k < K; k++) lg[i + (R_xlen_t) k * n] = exp(lg[i + (R_xlen_t) k * n] - lse);
  }
  /* lg now holds the gating probabilities */
  for (int i = 0; i < n; i++) f[i] = 0.0;
  for (int k = 0; k < K; k++) {
    const double *th = theta + (R_xlen_t) k * Pe;
    double *mk = mu + (R_xlen_t) k * n;
    const double *gk = lg + (R_xlen_t) k * n;
    if (ffn) {
      ffn_forward(&m->net, th, mk, F, Fp);
      if (J) {
        ffn_jacobian(&m->net, th, F, Fp, Je);
        for (int a = 0; a < Pe; a++) {
          double *Jc = J + (R_xlen_t) (k * Pe + a) * n;
          const double *Ja = Je + (R_xlen_t) a * n;
          for (int i = 0; i < n; i++) Jc[i] = gk[i] * Ja[i];
        }
      }
    } else {
      for (int i = 0; i < n; i++) mk[i] = 0.0;
      for (int a = 0; a < p; a++) {
        const double *Xa = X + (R_xlen_t) a * n;
        for (int i = 0; i < n; i++) mk[i] += Xa[i] * th[a];
      }
      if (J) {
        for (int a = 0; a < p; a++) {
          double *Jc = J + (R_xlen_t) (k * Pe + a) * n;
          const double *Xa = X + (R_xlen_t) a * n;
          for (int i = 0; i < n; i++) Jc[i] = gk[i] * Xa[i];
        }
      }
    }
    for (int i = 0; i < n; i++) f[i] += gk[i] * mk[i];
  }
  if (J) {
    /* d f / d W[a, j] = z_ia g_ij (h_ij - f_i), j < K */
    for (int j = 0; j < K - 1; j++) {
      const double *gj = lg + (R_xlen_t) j * n, *mj = mu + (R_xlen_t) j * n;
      for (int a = 0; a < q; a++) {
        double *Jc = J + (R_xlen_t) (K * Pe + j * q + a) * n;
        const double *Za = Z + (R_xlen_t) a * n;
        for (int i = 0; i < n; i++) Jc[i] = Za[i] * gj[i] * (mj[i] - f[i]);
      }
    }
  }
}

R_xlen_t ls_work_size(const ls_model *m)
{
  R_xlen_t n = m->d.n, P = ls_npar(m);
  return ls_eval_work_size(m) + n * (P + 3) + 3 * P * P + 3 * P;
}

/*
 * Minimise sum_i wt_i (y_i - f_i(theta))^2 + sum_a pen_a theta_a^2 from
 * theta (length ls_npar(); pen of the same length, or NULL for plain least
 * squares): at most maxit Levenberg-Marquardt steps, stopping when a step
 * gains less than tol relative to the objective. m->work must hold
 * ls_eval_work_size() doubles; work the rest of ls_work_size(). Writes
 * theta, *rss (the residual sum of squares, without the penalty), *iter.
 * Returns MOE_OK, MOE_MAXIT or MOE_NONFINITE.
 */
int ls_run(ls_model *m, double *theta, const double *pen, int maxit,
           double tol, double *rss, int *iter, double *work)
{
  double lambda = 1e-3, obj;
  int n = m->d.n;
  int st = moe_lm(n, ls_npar(m), m->d.y, m->d.wt, pen, ls_model_eval, m,
                  theta, maxit, tol, &lambda, &obj, iter, work);
  double *f = work;
  ls_model_eval(m, theta, f, NULL);
  double s = 0.0;
  for (int i = 0; i < n; i++) {
    double r = m->d.y[i] - f[i];
    if (m->d.wt[i] > 0.0) s += m->d.wt[i] * r * r;
  }
  *rss = s;
  return st;
}
