/*
 * family_t.c: the linear Student-t expert family,
 *     y | x, expert k ~ t_{nu_k}(x' a_k, sigma2_k),
 * location x' a_k, scale sigma2_k (the variance is sigma2_k nu_k / (nu_k -
 * 2) for nu_k > 2) and nu_k degrees of freedom, estimated per expert or fixed
 * for all (t_family_info in moe.h). The scale-mixture form: y_i | u_i ~
 * N(x_i' a_k, sigma2_k / u_i), u_i ~ Gamma(nu_k / 2, rate nu_k / 2).
 *
 * Inputs: X (n x p, column-major) expert design, y (n), wt (n) case weights,
 * R (n x K) responsibilities; parameters alpha (npar x K: a_k in rows 0 ..
 * p - 1 and, when nu is estimated, nu_k in row p, so npar = p + 1; npar = p
 * when nu is fixed), sigma2 (K). Gibbs: the allocation counts N (K x n,
 * observation-major), the conjugate prior of moe_mcmc_prior (a_k | sigma2_k
 * ~ N(m_a, sigma2_k V_a), sigma2_k ~ InvGamma(c0, C0)) and the Gamma(shape
 * df_shape, rate df_rate) prior of nu_k, truncated to [T_DF_MIN, T_DF_MAX].
 * Kernels (moe_expert_family, moe.h):
 *  - mean: mu = X a (n x K); also records nu (info->df) for logdens;
 *  - logdens: log t_{nu_k}(y_i; mu_ik, sigma2_k), nu_k from info->df, i.e.
 *    from the last mean() or mstep() call: the drivers call one of them on
 *    the same parameters before every logdens();
 *  - mstep: ECME for the weighted t regression of expert k (weights v_i =
 *    wt_i R_ik; Liu and Rubin 1995): rounds of (1) latent precisions u_i =
 *    (nu + 1) / (nu + r_i^2 / sigma2) at the current parameters and (2)
 *    weighted least squares with weights v_i u_i and sigma2 = sum v_i u_i
 *    r_i^2 / sum v_i, until the expert's weighted log-likelihood settles
 *    (at most T_INNER rounds), then (3) nu by golden-section maximisation
 *    of that log-likelihood over log nu (kept only when it does not lower
 *    it). Each step raises the expert's weighted log-likelihood, so the EM
 *    log-likelihood never decreases;
 *  - draw: per expert, latent precisions U_i ~ Gamma(c (nu + 1) / 2, rate
 *    (nu + r_i^2 / sigma2) / 2) for the c = N_ki copies of observation i
 *    (the sum of their c precisions), the conjugate normal / inverse-gamma
 *    draw of (a_k, sigma2_k) given them (gaussian_conjugate_draw() on the
 *    precision-weighted sufficient statistics), then T_MH_STEPS random-walk
 *    Metropolis steps on log nu_k targeting p(nu_k | a_k, sigma2_k,
 *    allocations), the precisions integrated out (they are drawn afresh
 *    before they are used again, so this partially collapsed order keeps the
 *    posterior). state: K log step sizes, then K adaptation counts; the
 *    scales adapt in warm-up only (adapt = 1).
 */
#include "moe.h"

static const t_family_info *tinfo(const moe_expert_family *f)
{
  return (const t_family_info *) f->info;
}

/* The df of an EM start (alpha_k's df row still 0 before the first M-step). */
#define T_DF_START 10.0

static double t_df(const t_family_info *in, const double *alpha_k)
{
  if (!in->estimate) return in->df_fixed;
  return alpha_k[in->p] > 0.0 ? alpha_k[in->p] : T_DF_START;
}

/* log Gamma((nu + 1) / 2) - log Gamma(nu / 2) - log(nu pi) / 2, with its
 * asymptotic series for large nu (the difference of lgamma() loses digits). */
static double t_logc(double nu)
{
  if (nu > 1e5) return -0.5 * LOG_2PI - 0.25 / nu + 1.0 / (24.0 * nu * nu * nu);
  return lgammafn(0.5 * (nu + 1.0)) - lgammafn(0.5 * nu) - 0.5 * log(nu * M_PI);
}

/* log t_nu(y; mu, s2) from z = (y - mu)^2 / s2. */
static double t_logdens_z(double z, double s2, double nu, double lc)
{
  return lc - 0.5 * log(s2) - 0.5 * (nu + 1.0) * log1p(z / nu);
}

static void t_mean(const moe_expert_family *f, const moe_data *d,
                   const double *alpha, double *mu, double *work)
{
  (void) work;
  const t_family_info *in = tinfo(f);
  int n = d->n, p = d->p, K = d->K, np = f->npar;
  double one = 1.0, zero = 0.0;
  F77_CALL(dgemm)("N", "N", &n, &K, &p, &one, d->X, &n, alpha, &np, &zero, mu,
                  &n FCONE FCONE);
  for (int k = 0; k < K; k++) in->df[k] = t_df(in, alpha + (R_xlen_t) k * np);
}

static void t_logdens(const moe_expert_family *f, const moe_data *d,
                      const double *mu, const double *sigma2, double *lN,
                      R_xlen_t si, R_xlen_t sk)
{
  const t_family_info *in = tinfo(f);
  int n = d->n, K = d->K;
  for (int k = 0; k < K; k++) {
    double nu = in->df[k], lc = t_logc(nu), s2 = sigma2[k];
    const double *muk = mu + (R_xlen_t) k * n;
    for (int i = 0; i < n; i++) {
      double r = d->y[i] - muk[i];
      lN[i * si + k * sk] = t_logdens_z(r * r / s2, s2, nu, lc);
    }
  }
}

/* ---- EM ---- */

/* Weighted log-likelihood sum_i v_i log t_nu(y_i) up to the terms free of
 * nu, from z_i = r_i^2 / sigma2 (n). */
static double df_objective(int n, const double *v, const double *z, double nu)
{
  double lc = t_logc(nu), s = 0.0, sv = 0.0;
  for (int i = 0; i < n; i++) {
    if (v[i] <= 0.0) continue;
    sv += v[i];
    s += v[i] * log1p(z[i] / nu);
  }
  return sv * lc - 0.5 * (nu + 1.0) * s;
}

/* The maximiser of df_objective() over log nu in [log T_DF_MIN, log
 * T_DF_MAX] by golden-section search, or nu0 when that is at least as good. */
static double df_maximise(int n, const double *v, const double *z, double nu0)
{
  const double g = 0.3819660112501051;
  double a = log(T_DF_MIN), b = log(T_DF_MAX);
  double x1 = a + g * (b - a), x2 = b - g * (b - a);
  double f1 = df_objective(n, v, z, exp(x1)), f2 = df_objective(n, v, z, exp(x2));
  while (b - a > 1e-7) {
    if (f1 >= f2) {
      b = x2; x2 = x1; f2 = f1;
      x1 = a + g * (b - a);
      f1 = df_objective(n, v, z, exp(x1));
    } else {
      a = x1; x1 = x2; f1 = f2;
      x2 = b - g * (b - a);
      f2 = df_objective(n, v, z, exp(x2));
    }
  }
  double best = f1 >= f2 ? exp(x1) : exp(x2), fb = f1 >= f2 ? f1 : f2;
  if (nu0 >= T_DF_MIN && nu0 <= T_DF_MAX && df_objective(n, v, z, nu0) >= fb)
    return nu0;
  return best;
}

/* work: expert_wls() (2 p^2 + p + 2 n) then 4 n: v, u, z and the weights
 * wt_i u_i. */
static int t_mstep(const moe_expert_family *f, const moe_data *d,
                   const double *R, int k, double *alpha_k, double *sigma2_k,
                   double *mu_k, const moe_em_control *ctl, double *work)
{
  const t_family_info *in = tinfo(f);
  int n = d->n, p = d->p, status = MOE_OK;
  const double *Rk = R + (R_xlen_t) k * n, *y = d->y;
  double *wls = work;
  double *v = wls + 2 * (R_xlen_t) p * p + p + 2 * (R_xlen_t) n;
  double *u = v + n, *z = u + n, *wu = z + n;
  double nk = 0.0;
  for (int i = 0; i < n; i++) {
    v[i] = d->wt[i] * Rk[i];
    nk += v[i];
  }
  if (!(nk >= ctl->min_size)) return MOE_EMPTY;

  moe_data dw = *d;
  dw.wt = wu;
  moe_em_control cw = *ctl;
  cw.min_size = 0.0;
  cw.var_floor = 0.0;
  double nu = t_df(in, alpha_k), s2 = *sigma2_k;
  /* The current means (the M-step may start from any alpha_k). */
  for (int i = 0; i < n; i++) {
    double m = 0.0;
    for (int a = 0; a < p; a++) m += d->X[i + (R_xlen_t) a * n] * alpha_k[a];
    mu_k[i] = m;
  }
  if (!(s2 > 0.0)) s2 = 1.0;
  double obj_old = R_NegInf;
  for (int it = 0; it < T_INNER; it++) {
    double su = 0.0;
    for (int i = 0; i < n; i++) {
      double r = y[i] - mu_k[i];
      u[i] = (nu + 1.0) / (nu + r * r / s2);
      wu[i] = d->wt[i] * u[i];
      su += v[i] * u[i];
    }
    double s2w = 0.0;
    int st = expert_wls(&dw, R, k, alpha_k, &s2w, mu_k, &cw, wls);
    if (st & MOE_EMPTY) return status | st;
    status |= st;
    s2 = s2w * su / nk;
    if (!(s2 > ctl->var_floor)) {
      s2 = ctl->var_floor;
      status |= MOE_VAR_FLOOR;
    }
    for (int i = 0; i < n; i++) {
      double r = y[i] - mu_k[i];
      z[i] = r * r / s2;
    }
    double obj = df_objective(n, v, z, nu) - 0.5 * nk * log(s2);
    int last = it == T_INNER - 1 || fabs(obj - obj_old) <= 1e-10 * (1.0 + fabs(obj));
    if (last) {
      if (in->estimate) nu = df_maximise(n, v, z, nu);
      break;
    }
    obj_old = obj;
  }
  *sigma2_k = s2;
  if (in->estimate) alpha_k[p] = nu;
  in->df[k] = nu;
  return status;
}

/* ---- Gibbs ---- */

/* Log posterior of nu (up to a constant) on the log scale: the t
 * log-likelihood of the allocated observations (counts c_i, z_i = r_i^2 /
 * sigma2), the Gamma prior and the Jacobian nu. */
static double df_logpost(const t_family_info *in, int n, const double *c,
                         const double *z, double nu)
{
  if (!(nu >= T_DF_MIN && nu <= T_DF_MAX)) return R_NegInf;
  return df_objective(n, c, z, nu) + in->df_shape * log(nu) - in->df_rate * nu;
}

/* work: GAUSSIAN_DRAW_WORK(p) + p^2 + p, then 3 n: c, mu, z. */
static int t_draw(const moe_expert_family *f, const moe_data *d,
                  const moe_mcmc_prior *pr, const int *N, double *alpha,
                  double *sigma2, double *state, int adapt, int *accepted,
                  double *work)
{
  const t_family_info *in = tinfo(f);
  int n = d->n, p = d->p, K = d->K, np = f->npar, status = MOE_OK;
  const double *X = d->X, *y = d->y;
  double *S = work, *sy = S + (R_xlen_t) p * p, *dw = sy + p;
  double *c = dw + GAUSSIAN_DRAW_WORK(p), *mu = c + n, *z = mu + n;
  for (int k = 0; k < K; k++) {
    double *ak = alpha + (R_xlen_t) k * np;
    double nu = t_df(in, ak), s2 = sigma2[k];
    double nk = 0.0, yty = 0.0;
    for (int a = 0; a < p; a++) {
      sy[a] = 0.0;
      for (int e = 0; e <= a; e++) S[a + e * p] = 0.0;
    }
    for (int i = 0; i < n; i++) {
      c[i] = N[k + (R_xlen_t) i * K];
      if (c[i] == 0.0) continue;
      double m = 0.0;
      for (int a = 0; a < p; a++) m += X[i + (R_xlen_t) a * n] * ak[a];
      double r = y[i] - m;
      /* the sum of the c_i precisions of the copies of observation i */
      double U = rgamma(0.5 * c[i] * (nu + 1.0), 2.0 / (nu + r * r / s2));
      nk += c[i];
      double uy = U * y[i];
      yty += uy * y[i];
      for (int a = 0; a < p; a++) {
        double xa = X[i + (R_xlen_t) a * n], uxa = U * xa;
        sy[a] += uy * xa;
        for (int e = 0; e <= a; e++) S[a + e * p] += uxa * X[i + (R_xlen_t) e * n];
      }
    }
    status |= gaussian_conjugate_draw(p, S, sy, yty, nk, pr, ak, sigma2 + k, dw);
    if (status & MOE_NONFINITE) return status;
    if (!in->estimate) continue;
    s2 = sigma2[k];
    for (int i = 0; i < n; i++) {
      if (c[i] == 0.0) { z[i] = 0.0; continue; }
      double m = 0.0;
      for (int a = 0; a < p; a++) m += X[i + (R_xlen_t) a * n] * ak[a];
      double r = y[i] - m;
      z[i] = r * r / s2;
    }
    double lp = df_logpost(in, n, c, z, nu);
    for (int s = 0; s < T_MH_STEPS; s++) {
      double nup = nu * exp(exp(state[k]) * norm_rand());
      double lpp = df_logpost(in, n, c, z, nup);
      double la = lpp - lp;
      int acc = la >= 0.0 || log(unif_rand()) < la;
      if (acc) {
        nu = nup;
        lp = lpp;
        accepted[k]++;
      }
      if (adapt) {
        state[K + k] += 1.0;
        adapt_scale(state + k, la >= 0.0 ? 1.0 : exp(la), (int) state[K + k]);
      }
    }
    ak[p] = nu;
  }
  return status;
}

static R_xlen_t t_work_size(const moe_expert_family *f, const moe_data *d)
{
  (void) f;
  R_xlen_t p = d->p, n = d->n;
  R_xlen_t em = 2 * p * p + p + 2 * n + 4 * n;
  R_xlen_t gb = p * p + p + GAUSSIAN_DRAW_WORK(p) + 3 * n;
  return em > gb ? em : gb;
}

void moe_family_t(moe_expert_family *f, const t_family_info *info)
{
  /* type, npar, nstate, naccept, fused, info, then the kernels */
  int K = info->K;
  moe_expert_family fam = { FAMILY_STUDENT_T, info->p + (info->estimate ? 1 : 0),
    info->estimate ? 2 * K : 0, info->estimate ? K : 0, 0, info,
    t_mean, t_logdens, t_mstep, t_draw, t_work_size };
  *f = fam;
}
