/*
 * family_ffn.c: two-layer feed-forward network (FFN) experts with Gaussian
 * noise
 *
 *     h(x; theta) = sum_h c_h act(A_h' x + d_h) + e,   act = tanh, sigmoid or GELU,
 *
 * their Jacobian, a weighted Levenberg-Marquardt driver (moe_lm(), also used
 * by ls.c), the EM M-step and the Metropolis block of one FFN expert, and EM
 * and Gibbs sampling for FFN experts with softmax gating.
 *
 * Inputs (ffn_net, moe.h): X (n x D, column-major) the network inputs, i.e.
 * the non-intercept columns of the expert design; H hidden units. The
 * parameters of one expert are a vector theta of length P = H D + 2 H + 1:
 * theta[h + H j] = A[h, j] (A is H x D, column-major), theta[H D + h] = d_h,
 * theta[H D + H + h] = c_h, theta[H D + 2 H] = e. K experts are stored as a
 * P x K matrix. Other data (y, Z, wt, W, R) as in moe.h.
 *
 * Kernels:
 *  - ffn_forward(): the mean of one expert for every observation, and the
 *    hidden features F = act(U) and act'(U) (n x H each), U = X A' + 1 d';
 *  - ffn_jacobian(): d mean / d theta (n x P) from those features;
 *  - ffn_means(): the n x K means of all experts;
 *  - ffn_mstep(): given responsibilities, the weighted nonlinear least-squares
 *    update of one expert: the output layer (c, e) exactly by weighted least
 *    squares on [F, 1], then Levenberg-Marquardt steps on all of theta (each
 *    accepted only when the weighted residual sum of squares decreases), then
 *    the variance. The weighted residual sum of squares never increases, so
 *    the expected complete-data log-likelihood of the expert never decreases;
 *  - ffn_mh_expert(): one Metropolis-within-Gibbs update of an expert given
 *    its allocated observations: a random-walk proposal for the hidden layer
 *    (A, d) accepted with the output layer and variance integrated out (they
 *    are a conjugate linear regression on [F, 1]), then an exact draw of
 *    (c, e, sigma2) from their conditional;
 *  - the FFN expert family (moe_expert_family of moe.h, moe_family_ffn()):
 *    mean, Gaussian log-density, M-step and Metropolis-within-Gibbs update
 *    of all experts, in the form the EM and Gibbs drivers call.
 * Preconditions: n >= 1, D >= 1, H >= 1, finite inputs; weights >= 0.
 * Scratch memory is supplied by the caller (R_alloc in ffi.c).
 */
#include "moe.h"

/* act(u) and act'(u). */
static inline double act_fun(int act, double u, double *deriv)
{
  switch (act) {
  case FFN_SIGMOID: {
    double s = u >= 0 ? 1.0 / (1.0 + exp(-u)) : exp(u) / (1.0 + exp(u));
    *deriv = s * (1.0 - s);
    return s;
  }
  case FFN_GELU: {
    double Phi = Rf_pnorm5(u, 0.0, 1.0, 1, 0), phi = Rf_dnorm4(u, 0.0, 1.0, 0);
    *deriv = Phi + u * phi;
    return u * Phi;
  }
  default: {
    double t = tanh(u);
    *deriv = 1.0 - t * t;
    return t;
  }
  }
}

void ffn_forward(const ffn_net *net, const double *theta, double *mu,
                 double *F, double *Fp)
{
  int n = net->n, D = net->D, H = net->H;
  const double *A = theta, *dd = theta + H * D, *c = dd + H;
  double e = theta[H * D + 2 * H];
  for (int i = 0; i < n; i++) mu[i] = e;
  for (int h = 0; h < H; h++) {
    double *Fh = F + (R_xlen_t) h * n, *Fph = Fp + (R_xlen_t) h * n;
    for (int i = 0; i < n; i++) Fh[i] = dd[h];
    for (int j = 0; j < D; j++) {
      double a = A[h + H * j];
      const double *Xj = net->X + (R_xlen_t) j * n;
      for (int i = 0; i < n; i++) Fh[i] += a * Xj[i];
    }
    for (int i = 0; i < n; i++) {
      Fh[i] = act_fun(net->act, Fh[i], Fph + i);
      mu[i] += c[h] * Fh[i];
    }
  }
}

void ffn_jacobian(const ffn_net *net, const double *theta, const double *F,
                  const double *Fp, double *J)
{
  int n = net->n, D = net->D, H = net->H;
  const double *c = theta + H * D + H;
  for (int h = 0; h < H; h++) {
    const double *Fh = F + (R_xlen_t) h * n, *Fph = Fp + (R_xlen_t) h * n;
    double *Jd = J + (R_xlen_t) (H * D + h) * n;
    double *Jc = J + (R_xlen_t) (H * D + H + h) * n;
    for (int i = 0; i < n; i++) {
      Jd[i] = c[h] * Fph[i];
      Jc[i] = Fh[i];
    }
    for (int j = 0; j < D; j++) {
      const double *Xj = net->X + (R_xlen_t) j * n;
      double *Ja = J + (R_xlen_t) (h + H * j) * n;
      for (int i = 0; i < n; i++) Ja[i] = Jd[i] * Xj[i];
    }
  }
  double *Je = J + (R_xlen_t) (H * D + 2 * H) * n;
  for (int i = 0; i < n; i++) Je[i] = 1.0;
}

/* work: 2 n H doubles. */
void ffn_means(const ffn_net *net, int K, const double *theta, double *mu,
               double *work)
{
  int P = FFN_NPAR(net->D, net->H);
  double *F = work, *Fp = work + (R_xlen_t) net->n * net->H;
  for (int k = 0; k < K; k++)
    ffn_forward(net, theta + (R_xlen_t) k * P, mu + (R_xlen_t) k * net->n, F,
                Fp);
}

/* ---- weighted least squares on the features ---- */

/*
 * Cross-products of the features Phi = [F, 1] (n x m, m = H + 1) with
 * weights v: PtP (m x m, full) = Phi' V Phi, Pty (m) = Phi' V y, and
 * returns y' V y. Observations with v_i = 0 are skipped.
 */
static double feature_crossprod(int n, int H, const double *F, const double *y,
                                const double *v, double *PtP, double *Pty)
{
  int m = H + 1;
  double yty = 0.0;
  for (int a = 0; a < m * m; a++) PtP[a] = 0.0;
  for (int a = 0; a < m; a++) Pty[a] = 0.0;
  for (int i = 0; i < n; i++) {
    double w = v[i];
    if (!(w > 0.0)) continue;
    double wy = w * y[i];
    yty += wy * y[i];
    for (int a = 0; a < H; a++) {
      double fa = F[i + (R_xlen_t) a * n], wfa = w * fa;
      Pty[a] += wy * fa;
      for (int b = 0; b <= a; b++) PtP[a + b * m] += wfa * F[i + (R_xlen_t) b * n];
      PtP[H + a * m] += wfa;
    }
    Pty[H] += wy;
    PtP[H + H * m] += w;
  }
  for (int a = 0; a < m; a++)
    for (int b = a + 1; b < m; b++) PtP[a + b * m] = PtP[b + a * m];
  return yty;
}

/* Weighted residual sum of squares sum_i v_i (y_i - mu_i)^2. */
static double wrss(int n, const double *y, const double *mu, const double *v)
{
  double s = 0.0;
  for (int i = 0; i < n; i++) {
    if (!(v[i] > 0.0)) continue;
    double r = y[i] - mu[i];
    s += v[i] * r * r;
  }
  return s;
}

/* ---- Levenberg-Marquardt on a weighted sum of squares ---- */

/* sum_a pen_a theta_a^2 (0 without a penalty). */
static double penalty_of(int P, const double *pen, const double *theta)
{
  double s = 0.0;
  if (pen)
    for (int a = 0; a < P; a++) s += pen[a] * theta[a] * theta[a];
  return s;
}

/*
 * Minimise S(theta) = sum_i v_i (y_i - f_i(theta))^2 + sum_a pen_a theta_a^2
 * (pen: P non-negative ridge weights, or NULL for none) by
 * Levenberg-Marquardt with Marquardt's diagonal scaling: from theta solve
 * (J'VJ + D + lambda (diag(J'VJ + D) + eps)) delta = J'V r - D theta,
 * D = diag(pen), and accept theta + delta when S decreases (lambda / 10),
 * otherwise retry with 10 lambda. `fn(ctx, theta, f, J)` writes the model f
 * (n) and, when J is not NULL, its Jacobian (n x P). At most `maxit`
 * accepted steps; stops when a step decreases S by less than tol * S or no
 * step decreases it. On entry *lambda is the starting damping (<= 0: 1e-3),
 * on exit the current one. Writes theta, *S (the penalised objective),
 * *iter. work: n (P + 3) + 3 P^2 + 3 P doubles. Returns MOE_OK, MOE_MAXIT
 * or MOE_NONFINITE (S not finite at the start).
 */
int moe_lm(int n, int P, const double *y, const double *v, const double *pen,
           moe_lm_fn fn, void *ctx, double *theta, int maxit, double tol,
           double *lambda, double *S, int *iter, double *work)
{
  double *f = work, *J = f + n, *ft = J + (R_xlen_t) n * P, *sv = ft + n;
  double *JtJ = sv + n, *M = JtJ + (R_xlen_t) P * P, *save = M + (R_xlen_t) P * P;
  double *g = save + (R_xlen_t) P * P, *delta = g + P, *th = delta + P;
  double lam = *lambda > 0 ? *lambda : 1e-3, one = 1.0, zero = 0.0;
  int it = 0, status = MOE_MAXIT, ione = 1;

  for (int i = 0; i < n; i++) sv[i] = v[i] > 0.0 ? sqrt(v[i]) : 0.0;
  fn(ctx, theta, f, J);
  double Sc = wrss(n, y, f, v) + penalty_of(P, pen, theta);
  if (!R_FINITE(Sc)) {
    *S = Sc;
    *iter = 0;
    return MOE_NONFINITE;
  }
  while (it < maxit) {
    /* with Jw = V^(1/2) J and rw = V^(1/2) r: J'VJ = Jw'Jw (lower triangle
     * by dsyrk, then mirrored) and J'V r = Jw' rw */
    for (int a = 0; a < P; a++) {
      double *Ja = J + (R_xlen_t) a * n;
      for (int i = 0; i < n; i++) Ja[i] *= sv[i];
    }
    for (int i = 0; i < n; i++) ft[i] = sv[i] * (y[i] - f[i]);
    F77_CALL(dsyrk)("L", "T", &P, &n, &one, J, &n, &zero, JtJ, &P FCONE FCONE);
    F77_CALL(dgemv)("T", &n, &P, &one, J, &n, ft, &ione, &zero, g, &ione FCONE);
    if (pen) {
      for (int a = 0; a < P; a++) {
        JtJ[a + (R_xlen_t) a * P] += pen[a];
        g[a] -= pen[a] * theta[a];
      }
    }
    double dmax = 0.0;
    for (int a = 0; a < P; a++) {
      double t = JtJ[a + (R_xlen_t) a * P];
      if (t > dmax) dmax = t;
    }
    if (!(dmax > 0.0)) { status = MOE_OK; break; }
    int accepted = 0;
    double Sn = Sc;
    for (int tries = 0; tries < 30; tries++) {
      for (int a = 0; a < P; a++) {
        for (int b = 0; b <= a; b++)
          M[a + (R_xlen_t) b * P] = JtJ[a + (R_xlen_t) b * P];
        M[a + (R_xlen_t) a * P] += lam * (JtJ[a + (R_xlen_t) a * P] + 1e-9 * dmax);
        delta[a] = g[a];
      }
      int rc = chol_factor_ridge(P, M, save, 1e-12);
      if (rc >= 0) {
        chol_solve_factored(P, M, delta, 1);
        for (int a = 0; a < P; a++) th[a] = theta[a] + delta[a];
        fn(ctx, th, ft, NULL);
        Sn = wrss(n, y, ft, v) + penalty_of(P, pen, th);
        if (R_FINITE(Sn) && Sn < Sc) {
          accepted = 1;
          break;
        }
      }
      lam *= 10.0;
      if (lam > 1e16) break;
    }
    if (!accepted) { status = MOE_OK; break; }
    it++;
    for (int a = 0; a < P; a++) theta[a] = th[a];
    double gain = Sc - Sn;
    Sc = Sn;
    lam = lam / 10.0 > 1e-12 ? lam / 10.0 : 1e-12;
    if (gain <= tol * (Sc + 1e-300)) {
      status = MOE_OK;
      break;
    }
    fn(ctx, theta, f, J);
  }
  *lambda = lam;
  *S = Sc;
  *iter = it;
  return status;
}

/* ---- the M-step of one FFN expert ---- */

typedef struct {
  const ffn_net *net;
  double *F, *Fp;
} ffn_ctx;

static void ffn_model(void *ctx, const double *theta, double *f, double *J)
{
  ffn_ctx *c = (ffn_ctx *) ctx;
  ffn_forward(c->net, theta, f, c->F, c->Fp);
  if (J) ffn_jacobian(c->net, theta, c->F, c->Fp, J);
}

R_xlen_t ffn_mstep_work_size(int n, int D, int H)
{
  R_xlen_t P = FFN_NPAR(D, H), m = H + 1;
  R_xlen_t lm = (R_xlen_t) n * (P + 3) + 3 * P * P + 3 * P;
  R_xlen_t ls = 2 * m * m + m + P;
  return 2 * (R_xlen_t) n * H + n + (lm > ls ? lm : ls);
}

/*
 * M-step of one FFN expert with observation weights v (n; wt_i R_ik): first
 * the exact weighted least-squares output layer (c, e) given (A, d), then at
 * most `steps` Levenberg-Marquardt steps on theta, then sigma2 = weighted
 * residual sum of squares / sum(v), floored at var_floor. Each part is kept
 * only when it does not increase the weighted residual sum of squares, so
 * the expected complete-data log-likelihood of the expert does not decrease.
 * mu (n) receives the new means. When sum(v) < min_size nothing changes and
 * MOE_EMPTY is returned. *lambda carries the damping between calls.
 * work: ffn_mstep_work_size() doubles.
 */
int ffn_mstep(const ffn_net *net, const double *y, const double *v,
              double *theta, double *sigma2, double *mu, int steps,
              double var_floor, double min_size, double *lambda, double *work)
{
  int n = net->n, D = net->D, H = net->H, P = FFN_NPAR(D, H), m = H + 1;
  int status = MOE_OK;
  double *F = work, *Fp = F + (R_xlen_t) n * H, *mu0 = Fp + (R_xlen_t) n * H;
  double *rest = mu0 + n;
  double nk = 0.0;
  for (int i = 0; i < n; i++) nk += v[i];
  if (!(nk >= min_size)) return MOE_EMPTY;

  /* output layer by weighted least squares given the hidden layer */
  ffn_forward(net, theta, mu0, F, Fp);
  double S0 = wrss(n, y, mu0, v);
  double *PtP = rest, *save = PtP + m * m, *b = save + m * m, *th = b + m;
  feature_crossprod(n, H, F, y, v, PtP, b);
  int rc = chol_factor_ridge(m, PtP, save, 1e-10);
  if (rc >= 0) {
    chol_solve_factored(m, PtP, b, 1);
    for (int a = 0; a < P; a++) th[a] = theta[a];
    for (int h = 0; h < H; h++) th[H * D + H + h] = b[h];
    th[H * D + 2 * H] = b[H];
    int finite = 1;
    for (int a = 0; a < m; a++) if (!R_FINITE(b[a])) finite = 0;
    if (finite) {
      ffn_forward(net, th, mu, F, Fp);
      double S1 = wrss(n, y, mu, v);
      if (R_FINITE(S1) && S1 <= S0) {
        for (int a = 0; a < P; a++) theta[a] = th[a];
        S0 = S1;
      }
    }
  }
  if (rc > 0) status |= MOE_NOT_PD;

  /* Levenberg-Marquardt steps on all parameters */
  double S = S0;
  if (steps > 0) {
    ffn_ctx ctx = { net, F, Fp };
    int it = 0;
    int st = moe_lm(n, P, y, v, NULL, ffn_model, &ctx, theta, steps, 0.0,
                    lambda, &S, &it, rest);
    if (st & MOE_NONFINITE) status |= MOE_NONFINITE;
  }
  ffn_forward(net, theta, mu, F, Fp);
  S = wrss(n, y, mu, v);
  double s2 = S / nk;
  if (!(s2 > var_floor)) {
    s2 = var_floor;
    status |= MOE_VAR_FLOOR;
  }
  *sigma2 = s2;
  return status;
}

/* ---- the FFN expert family (moe_expert_family, moe.h) ---- */

static void fam_mean(const moe_expert_family *f, const moe_data *d,
                     const double *alpha, double *mu, double *work)
{
  const ffn_family_info *in = (const ffn_family_info *) f->info;
  ffn_means(&in->net, d->K, alpha, mu, work);
}

/* M-step of expert k with weights wt_i R_ik: ffn_mstep() with in->lm_steps
 * Levenberg-Marquardt steps (damping restarted at 1e-3). */
static int fam_mstep(const moe_expert_family *f, const moe_data *d,
                     const double *R, int k, double *alpha_k, double *sigma2_k,
                     double *mu_k, const moe_em_control *ctl, double *work)
{
  const ffn_family_info *in = (const ffn_family_info *) f->info;
  int n = d->n;
  double *v = work, lambda = 1e-3;
  const double *Rk = R + (R_xlen_t) k * n;
  for (int i = 0; i < n; i++) v[i] = d->wt[i] * Rk[i];
  return ffn_mstep(&in->net, d->y, v, alpha_k, sigma2_k, mu_k, in->lm_steps,
                   ctl->var_floor, ctl->min_size, &lambda, work + n);
}

/* Every expert by ffn_mh_expert() (in->mh_steps Metropolis steps) given the
 * allocation counts N (K x n, observation-major), under the FFN prior of
 * f->info (pr, the linear-expert prior, is not used). state: K log
 * random-walk scales, then K counts of adaptation steps; with adapt = 1 the
 * scales adapt (see ffn_mh_expert()), with adapt = 0 nothing in the state
 * changes, so the chain is then a fixed Markov kernel. accepted[k] grows by
 * the number of accepted steps of expert k, whatever adapt is. */
static int fam_draw(const moe_expert_family *f, const moe_data *d,
                    const moe_mcmc_prior *pr, const int *N, double *alpha,
                    double *sigma2, double *state, int adapt, int *accepted,
                    double *work)
{
  (void) pr;
  const ffn_family_info *in = (const ffn_family_info *) f->info;
  int n = d->n, K = d->K, P = f->npar, status = MOE_OK;
  double *v = work;
  for (int k = 0; k < K; k++) {
    for (int i = 0; i < n; i++) v[i] = N[k + (R_xlen_t) i * K];
    int a = 0;
    status |= ffn_mh_expert(&in->net, d->y, v, &in->prior,
                            alpha + (R_xlen_t) k * P, sigma2 + k, in->mh_steps,
                            state + k, adapt ? state + K + k : NULL, &a,
                            work + n);
    accepted[k] += a;
  }
  return status;
}

static R_xlen_t fam_work_size(const moe_expert_family *f, const moe_data *d)
{
  const ffn_family_info *in = (const ffn_family_info *) f->info;
  R_xlen_t a = ffn_mstep_work_size(d->n, in->net.D, in->net.H);
  R_xlen_t b = ffn_mh_work_size(d->n, in->net.D, in->net.H);
  R_xlen_t c = 2 * (R_xlen_t) d->n * in->net.H;
  R_xlen_t m = a > b ? a : b;
  return d->n + (m > c ? m : c);
}

/* Fill the kernel table of FFN experts for K experts; info must outlive f.
 * State: 2 K doubles (expert_state_init() in R). */
void moe_family_ffn(moe_expert_family *f, const ffn_family_info *info, int K)
{
  /* type, npar, nstate, naccept, fused, info, then the kernels (the noise is
   * Gaussian: gaussian_logdens() of family_gaussian.c) */
  moe_expert_family fam = { FAMILY_FFN, FFN_NPAR(info->net.D, info->net.H), 2 * K, K,
    0, info, fam_mean, gaussian_logdens, fam_mstep, fam_draw, fam_work_size };
  *f = fam;
}

/*
 * Conjugate posterior of the output layer b = (c, e) and sigma2 given the
 * features F of the hidden layer and weights v: with Phi = [F, 1],
 * b | sigma2 ~ N(m_a, sigma2 V_a), sigma2 ~ InvGamma(c0, C0),
 *   Lambda = Phi'V Phi + Va_inv (factored in place, lower Cholesky, into L),
 *   mean   = Lambda^{-1} (Phi'V y + Va_inv m_a)  (into mean),
 *   shape  = c0 + sum(v) / 2,
 *   rate   = C0 + (y'V y + m_a'Va_inv m_a - mean' Lambda mean) / 2.
 * Returns the part of the log marginal likelihood of (y, v) that depends on
 * F: -log|Lambda| / 2 - shape log(rate); -Inf when Lambda cannot be
 * factored. work: (H + 1)^2 doubles.
 */
static double ffn_conjugate(int n, int H, const double *F, const double *y,
                            const double *v, const ffn_prior *pr, double *L,
                            double *mean, double *shape, double *rate,
                            double *work)
{
  int m = H + 1;
  double nk = 0.0;
  for (int i = 0; i < n; i++) nk += v[i];
  double yty = feature_crossprod(n, H, F, y, v, L, mean);
  for (int a = 0; a < m * m; a++) L[a] += pr->Va_inv[a];
  for (int a = 0; a < m; a++) mean[a] += pr->Va_inv_m[a];
  double *bsave = work;
  if (chol_factor_ridge(m, L, bsave, 1e-10) < 0) return R_NegInf;
  for (int a = 0; a < m; a++) bsave[a] = mean[a];
  chol_solve_factored(m, L, mean, 1);
  double quad = 0.0;
  for (int a = 0; a < m; a++) quad += mean[a] * bsave[a];
  *shape = pr->c0 + 0.5 * nk;
  *rate = pr->C0 + 0.5 * (yty + pr->m_Va_inv_m - quad);
  if (!(*rate > 0.0)) *rate = pr->C0;
  return -0.5 * log_det_chol(m, L) - *shape * log(*rate);
}

R_xlen_t ffn_mh_work_size(int n, int D, int H)
{
  R_xlen_t m = H + 1, Ph = (R_xlen_t) H * (D + 1);
  return 2 * (R_xlen_t) n * H + 2 * (m * m + m) + m * m + Ph + 2 * m + n;
}

/*
 * One update of expert theta (P) and sigma2 given observation weights v (n,
 * the numbers of the observation's copies allocated to the expert): `steps`
 * Gaussian random-walk Metropolis steps of scale exp(*log_scale) on the
 * hidden layer (A, d), each accepted with probability min(1, ratio) of
 *   pi(A, d) = N(A, d; 0, s_hid2 I) x p(y | A, d, v)
 * where (c, e, sigma2) are integrated out of p; then (c, e, sigma2) are drawn
 * from their conjugate conditional given the final (A, d). When adapt_count
 * is not NULL the scale adapts after every step (Robbins-Monro towards an
 * acceptance rate of 0.3: log_scale += (accepted - 0.3) / sqrt(count + 1),
 * kept within [log(1e-3), log(2 s_hid)]) and *adapt_count grows by one per
 * step. *accepted receives the number of accepted steps. Uses the RNG: the
 * caller holds GetRNGstate(). work: ffn_mh_work_size() doubles. Returns
 * MOE_OK or MOE_NONFINITE.
 */
int ffn_mh_expert(const ffn_net *net, const double *y, const double *v,
                  const ffn_prior *pr, double *theta, double *sigma2,
                  int steps, double *log_scale, double *adapt_count,
                  int *accepted, double *work)
{
  int n = net->n, D = net->D, H = net->H, m = H + 1, Ph = H * (D + 1);
  double *F = work, *Fp = F + (R_xlen_t) n * H;
  double *L0 = Fp + (R_xlen_t) n * H, *mean0 = L0 + m * m;
  double *L1 = mean0 + m, *mean1 = L1 + m * m, *cw = mean1 + m;
  double *prop = cw + m * m, *z = prop + Ph, *zero = z + m, *mu = zero + m;
  double shape0, rate0, shape1, rate1;
  double hi = log(2.0 * sqrt(pr->s_hid2)), lo = log(1e-3);

  ffn_forward(net, theta, mu, F, Fp);
  double lp0 = 0.0;
  for (int a = 0; a < Ph; a++) lp0 -= 0.5 * theta[a] * theta[a] / pr->s_hid2;
  lp0 += ffn_conjugate(n, H, F, y, v, pr, L0, mean0, &shape0, &rate0, cw);
  *accepted = 0;
  for (int st = 0; st < steps; st++) {
    /* propose: theta's hidden layer becomes the proposal, prop keeps the
     * current one in case of rejection */
    double scale = exp(*log_scale), lp1 = 0.0;
    for (int a = 0; a < Ph; a++) {
      double t = theta[a];
      theta[a] = t + scale * norm_rand();
      prop[a] = t;
      lp1 -= 0.5 * theta[a] * theta[a] / pr->s_hid2;
    }
    ffn_forward(net, theta, mu, F, Fp);
    lp1 += ffn_conjugate(n, H, F, y, v, pr, L1, mean1, &shape1, &rate1, cw);
    int acc = R_FINITE(lp1) && log(unif_rand()) < lp1 - lp0;
    if (acc) {
      /* the proposal's posterior becomes the current one */
      double *tL = L0, *tm = mean0;
      L0 = L1;
      mean0 = mean1;
      L1 = tL;
      mean1 = tm;
      shape0 = shape1;
      rate0 = rate1;
      lp0 = lp1;
      (*accepted)++;
    } else {
      for (int a = 0; a < Ph; a++) theta[a] = prop[a];
    }
    if (adapt_count) {
      double ls = *log_scale + (acc - 0.3) / sqrt(*adapt_count + 1.0);
      *log_scale = ls > hi ? hi : (ls < lo ? lo : ls);
      *adapt_count += 1.0;
    }
  }
  if (!R_FINITE(rate0) || !R_FINITE(shape0) || !R_FINITE(lp0)) return MOE_NONFINITE;

  /* (c, e, sigma2) from their conjugate conditional */
  double s2 = 1.0 / Rf_rgamma(shape0, 1.0 / rate0);
  for (int a = 0; a < m; a++) zero[a] = 0.0;
  mvn_draw_chol(m, L0, zero, z, cw);
  double sd = sqrt(s2);
  for (int h = 0; h < H; h++) theta[Ph + h] = mean0[h] + sd * z[h];
  theta[Ph + H] = mean0[H] + sd * z[H];
  *sigma2 = s2;
  for (int a = 0; a < m; a++) if (!R_FINITE(theta[Ph + a])) return MOE_NONFINITE;
  return R_FINITE(s2) ? MOE_OK : MOE_NONFINITE;
}

