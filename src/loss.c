/*
 * loss.c: Voronoi losses (D1, D2) and conditional-density distances between
 * a fitted and a true softmax-gated Gaussian mixture of experts with d
 * covariates x,
 *   p(y | x) = sum_k softmax_k(beta0 + beta1' x) N(y; b_k + a_k' x, sigma2_k).
 *
 * Atoms. One parameter set with K experts is a column-major (2d + 3) x K
 * matrix whose column k is
 *   [beta0_k, beta1_k (d), a_k (d), b_k, sigma2_k]
 * (gating intercept, gating slopes, expert slopes, expert intercept,
 * variance; see LOSS_* offsets in moe.h). The atom of expert k is
 * theta_k = (beta1_k, a_k, b_k, sigma2_k), its weight exp(beta0_k)
 * (unnormalised; the reference expert has beta0 = 0 and weight 1). The truth
 * is one such (2d + 3) x kstar matrix. Callers loop over parameter sets
 * (posterior draws), one kernel call each.
 *
 * Voronoi cells: atom i belongs to the cell A_j of the true atom theta*_j
 * nearest to it (Euclidean, or L1 distance over all 2d + 2 atom coordinates;
 * ties go to the lowest j). With w_i = exp(beta0_i), per-parameter distances
 * |d beta1| = ||beta1_i - beta1*_j||_2, |d a| = ||a_i - a*_j||_2, |d b|,
 * |d sigma2| and r = rbar[M - 1] for a cell of M atoms:
 *   D1 = sum_j |sum_{i in A_j} w_i - exp(beta0*_j)|
 *        + sum_j sum_{i in A_j} w_i (|d beta1| + |d a| + |d b| + |d sigma2|)
 *   D2 = sum_j |sum_{i in A_j} w_i - exp(beta0*_j)|
 *        + sum_{j: |A_j| = 1} w_i (|d beta1| + |d a| + |d b| + |d sigma2|)
 *        + sum_{j: |A_j| > 1} sum_{i in A_j} w_i (|d beta1|^r + |d b|^r
 *                                                 + |d a|^(r/2) + |d sigma2|^(r/2))
 * Every atom of every cell is summed; an empty cell contributes its full
 * true weight exp(beta0*_j). D2 is NA when a cell has more atoms than the
 * rbar table (length nrbar) covers, and both are NA when an atom is not
 * finite.
 *
 * The gating is identified only up to a translation t = (t0, t1) of every
 * gating vector (beta0_k + t0, beta1_k + t1), which multiplies the weights
 * by exp(t0); making expert r the reference is the translation -(beta0_r,
 * beta1_r). voronoi_loss() takes the fit as given; voronoi_loss_best() the
 * smallest loss over the K choices of the fitted reference;
 * voronoi_loss_translated() the infimum over translations of the fit (the
 * truth stays in its reference form), with t0 exact: for fixed t1 the loss
 * is sum_j |v S_j - T_j| + v P in v = exp(t0) (S_j the fitted and T_j the
 * true cell weights, P the parameter part), convex and piecewise linear; v
 * is restricted to v >= min_j T_j / S_j (translations that shrink every
 * fitted cell weight below its true weight are excluded), so the minimum is
 * at a breakpoint v = T_j / S_j. The last two are invariant to relabelling
 * the fitted experts.
 *
 * Density distances at one covariate value x: h^2(x) = 1/2 int (sqrt g -
 * sqrt g*)^2 dy (squared Hellinger) and V(x) = 1/2 int |g - g*| dy (total
 * variation) between the fitted and true conditional densities g, g*. The y
 * axis is cut at mu_c + sigma_c * {-8, -5, -3, -2, -1, 0, 1, 2, 3, 5, 8} for
 * every component c of both mixtures, and every piece between consecutive
 * cuts gets the same even number of composite Simpson panels, enough for at
 * least min_points nodes in all (so narrow components are resolved however
 * far apart the components are). For V the Simpson double panels in which
 * g - g* changes sign are split at its roots (Illinois regula falsi) and
 * integrated by 8-point Gauss-Legendre, since |g - g*| has kinks there.
 * density_distance() returns the mean of h(x) (LOSS_HELLINGER) or V(x)
 * (LOSS_TV) over nx covariate rows (x is nx x d, column-major), or the
 * square root of the mean of h^2(x) (LOSS_HELLINGER_JOINT, the Hellinger
 * distance between the joint densities of (x, y)).
 *
 * Preconditions: d >= 1, K >= 1, kstar >= 1, variances > 0 (a non-finite or
 * non-positive value gives NA), nrbar >= 1, min_points >= 2.
 */
#include "moe.h"

#define N_CUTS 11
static const double cut_offsets[N_CUTS] = {-8, -5, -3, -2, -1, 0, 1, 2, 3, 5, 8};

/* 8-point Gauss-Legendre nodes and weights on [-1, 1]. */
static const double gl_x[4] = {0.1834346424956498, 0.5255324099163290,
                               0.7966664774136267, 0.9602898564975363};
static const double gl_w[4] = {0.3626837833783620, 0.3137066458778873,
                               0.2223810344533745, 0.1012285362903763};

static int atoms_finite(int d, int K, const double *atoms)
{
  R_xlen_t len = (R_xlen_t) LOSS_ATOM_LEN(d) * K;
  for (R_xlen_t t = 0; t < len; t++)
    if (!R_FINITE(atoms[t])) return 0;
  for (int k = 0; k < K; k++)
    if (!(atoms[(R_xlen_t) k * LOSS_ATOM_LEN(d) + LOSS_SIGMA2(d)] > 0.0)) return 0;
  return 1;
}

/* Squared Euclidean or L1 distance between two atoms (beta0 excluded); both
 * order atoms as the norm itself does. */
static double atom_distance(int d, const double *u, const double *v, int norm)
{
  double s = 0.0;
  for (int c = LOSS_BETA1; c < LOSS_ATOM_LEN(d); c++) {
    double t = u[c] - v[c];
    s += norm == LOSS_NORM_L1 ? fabs(t) : t * t;
  }
  return s;
}

void voronoi_assign(int d, int K, const double *atoms, int kstar,
                    const double *truth, int norm, int *cell)
{
  int m = LOSS_ATOM_LEN(d);
  for (int i = 0; i < K; i++) {
    const double *u = atoms + (R_xlen_t) i * m;
    int best = 0;
    double bd = R_PosInf;
    for (int j = 0; j < kstar; j++) {
      double dist = atom_distance(d, u, truth + (R_xlen_t) j * m, norm);
      if (dist < bd) { /* strict: ties stay with the lowest j */
        bd = dist;
        best = j;
      }
    }
    cell[i] = best;
  }
}

void voronoi_param_dist(int d, const double *u, const double *v, double *out)
{
  double s1 = 0.0, sa = 0.0;
  for (int c = 0; c < d; c++) {
    double t1 = u[LOSS_BETA1 + c] - v[LOSS_BETA1 + c];
    double ta = u[LOSS_A(d) + c] - v[LOSS_A(d) + c];
    s1 += t1 * t1;
    sa += ta * ta;
  }
  out[0] = sqrt(s1);
  out[1] = sqrt(sa);
  out[2] = fabs(u[LOSS_B(d)] - v[LOSS_B(d)]);
  out[3] = fabs(u[LOSS_SIGMA2(d)] - v[LOSS_SIGMA2(d)]);
}

/* The parameter set translated by t = (t0, t1) (length d + 1): every beta0
 * plus t0 and every beta1 plus t1, which leaves the fitted model unchanged. */
void voronoi_translate(int d, int K, const double *atoms, const double *t,
                       double *out)
{
  int m = LOSS_ATOM_LEN(d);
  for (int k = 0; k < K; k++) {
    const double *u = atoms + (R_xlen_t) k * m;
    double *o = out + (R_xlen_t) k * m;
    for (int c = 0; c < m; c++) o[c] = c <= d ? u[c] + t[c] : u[c];
  }
}

/* Cells of the atoms and the two parts of the loss: w->wsum[j] = fitted
 * weight of cell j, *param = the parameter part (fitted weights times the
 * distances, with the D2 exponents when sp->over). Returns 0, or 1 when the
 * loss is NA (non-finite atom, or a cell beyond the rbar table). */
static int voronoi_terms(const voronoi_spec *sp, int K, const double *atoms,
                         double *param, int *max_cell, voronoi_work *w)
{
  int d = sp->d, kstar = sp->kstar, m = LOSS_ATOM_LEN(d);
  *max_cell = 0;
  *param = NA_REAL;
  if (!atoms_finite(d, K, atoms)) return 1;
  voronoi_assign(d, K, atoms, kstar, sp->truth, sp->norm, w->cell);
  for (int j = 0; j < kstar; j++) {
    w->count[j] = 0;
    w->wsum[j] = 0.0;
  }
  for (int i = 0; i < K; i++) {
    w->count[w->cell[i]]++;
    w->wsum[w->cell[i]] += exp(atoms[(R_xlen_t) i * m + LOSS_BETA0]);
  }
  for (int j = 0; j < kstar; j++)
    if (w->count[j] > *max_cell) *max_cell = w->count[j];
  double P = 0.0, dist[4];
  for (int i = 0; i < K; i++) {
    const double *u = atoms + (R_xlen_t) i * m;
    int j = w->cell[i], M = w->count[j];
    double wi = exp(u[LOSS_BETA0]);
    voronoi_param_dist(d, u, sp->truth + (R_xlen_t) j * m, dist);
    if (!sp->over || M == 1) {
      P += wi * (dist[0] + dist[1] + dist[2] + dist[3]);
    } else {
      if (M > sp->nrbar) return 1;
      double r = sp->rbar[M - 1];
      /* beta1 and b take rbar(M), a and sigma2 take rbar(M) / 2 */
      P += wi * (pow(dist[0], r) + pow(dist[2], r) + pow(dist[1], 0.5 * r) +
                 pow(dist[3], 0.5 * r));
    }
  }
  *param = P;
  return 0;
}

double voronoi_loss(const voronoi_spec *sp, int K, const double *atoms,
                    int *max_cell, voronoi_work *w)
{
  double P;
  if (voronoi_terms(sp, K, atoms, &P, max_cell, w)) return NA_REAL;
  int m = LOSS_ATOM_LEN(sp->d);
  double loss = P;
  for (int j = 0; j < sp->kstar; j++)
    loss += fabs(w->wsum[j] - exp(sp->truth[(R_xlen_t) j * m + LOSS_BETA0]));
  return loss;
}

/* A candidate translation t (len) with loss v and largest cell mc: kept in
 * shift when it beats *best; a NaN loss (a cell too large for the
 * exponents) only raises *mc_na, the largest such cell. */
static void keep_best(double v, int mc, const double *t, int len, double *best,
                      int *max_cell, int *mc_na, double *shift)
{
  if (ISNAN(v)) {
    if (mc > *mc_na) *mc_na = mc;
    return;
  }
  if (ISNAN(*best) || v < *best) {
    *best = v;
    *max_cell = mc;
    for (int c = 0; c < len; c++) shift[c] = t[c];
  }
}

/* The smallest loss over the K choices of the fitted reference expert (the
 * translations t = -(beta0_r, beta1_r)), trying the fit's own reference
 * (K - 1) first so that it wins ties. shift (d + 1) receives the chosen
 * translation, *max_cell its largest cell; NA when every choice gives NA
 * (then *max_cell is the largest cell met). */
double voronoi_loss_best(const voronoi_spec *sp, int K, const double *atoms,
                         double *shift, int *max_cell, voronoi_work *w)
{
  int d = sp->d, m = LOSS_ATOM_LEN(d), mc_na = 0;
  double best = NA_REAL;
  for (int c = 0; c <= d; c++) shift[c] = 0.0;
  *max_cell = 0;
  for (int t = 0; t < K; t++) {
    int r = t == 0 ? K - 1 : t - 1, mc;
    for (int c = 0; c <= d; c++) w->tvec[c] = -atoms[(R_xlen_t) r * m + c];
    voronoi_translate(d, K, atoms, w->tvec, w->shifted);
    double v = voronoi_loss(sp, K, w->shifted, &mc, w);
    keep_best(v, mc, w->tvec, d + 1, &best, max_cell, &mc_na, shift);
  }
  if (ISNAN(best)) *max_cell = mc_na;
  return best;
}

/* min of sum_j |v S_j - T_j| + v P over v >= min_j T_j / S_j (S_j > 0). The
 * function is convex and piecewise linear in v with breakpoints T_j / S_j
 * and increasing beyond the largest, so the minimum is at a breakpoint: the
 * scale at which the fitted weight of one cell equals its true weight.
 * (Below the smallest breakpoint every fitted cell weight is smaller than
 * its true weight; letting v -> 0 there would cap the loss at sum_j T_j.)
 * When every S_j is 0 (all fitted weights underflow) v = 0. */
static double weight_scale_min(int kstar, const double *S, const double *T,
                               double P, double *vbest)
{
  double best = R_PosInf;
  *vbest = 0.0;
  for (int j = 0; j < kstar; j++) {
    if (!(S[j] > 0.0)) continue;
    double v = T[j] / S[j], f = v * P;
    for (int l = 0; l < kstar; l++) f += fabs(v * S[l] - T[l]);
    if (f < best) {
      best = f;
      *vbest = v;
    }
  }
  if (!R_FINITE(best)) {
    best = 0.0;
    for (int j = 0; j < kstar; j++) best += T[j];
  }
  return best;
}

/* The loss of the fit translated by (t0, t1), minimised over t0 exactly for
 * the given gating-slope shift t1 (d). shift (d + 1) receives (t0, t1);
 * t0 = -Inf when the best fit weight scale is 0. */
double voronoi_loss_shift(const voronoi_spec *sp, int K, const double *atoms,
                          const double *t1, double *shift, int *max_cell,
                          voronoi_work *w)
{
  int d = sp->d, m = LOSS_ATOM_LEN(d);
  w->tvec[0] = 0.0;
  for (int c = 0; c < d; c++) w->tvec[1 + c] = t1[c];
  voronoi_translate(d, K, atoms, w->tvec, w->shifted);
  double P, v;
  for (int c = 0; c <= d; c++) shift[c] = w->tvec[c];
  if (voronoi_terms(sp, K, w->shifted, &P, max_cell, w)) return NA_REAL;
  for (int j = 0; j < sp->kstar; j++)
    w->tw[j] = exp(sp->truth[(R_xlen_t) j * m + LOSS_BETA0]);
  double loss = weight_scale_min(sp->kstar, w->wsum, w->tw, P, &v);
  shift[0] = log(v);
  return loss;
}

/* The infimum over translations t = (t0, t1) of the fit, with t0 exact and
 * t1 searched over the K kstar shifts that put the gating slope of a fitted
 * atom on that of a true atom (t1 = beta1*_j - beta1_i; this includes
 * t1 = 0 through the two references). For D1 with one covariate the
 * infimum is attained at one of them whenever the cells do not change;
 * otherwise the caller polishes t1 locally. */
double voronoi_loss_translated(const voronoi_spec *sp, int K,
                               const double *atoms, double *shift,
                               int *max_cell, voronoi_work *w)
{
  int d = sp->d, m = LOSS_ATOM_LEN(d), mc_na = 0;
  double best = NA_REAL;
  for (int c = 0; c <= d; c++) shift[c] = 0.0;
  *max_cell = 0;
  if (!atoms_finite(d, K, atoms)) return NA_REAL;
  for (int i = 0; i < K; i++) {
    for (int j = 0; j < sp->kstar; j++) {
      int mc;
      for (int c = 0; c < d; c++)
        w->t1[c] = sp->truth[(R_xlen_t) j * m + LOSS_BETA1 + c] -
                   atoms[(R_xlen_t) i * m + LOSS_BETA1 + c];
      double v = voronoi_loss_shift(sp, K, atoms, w->t1, w->tbest, &mc, w);
      keep_best(v, mc, w->tbest, d + 1, &best, max_cell, &mc_na, shift);
    }
  }
  if (ISNAN(best)) *max_cell = mc_na;
  return best;
}

/* ---- density distances ---- */

typedef struct {
  int nc;            /* number of components (K of one mixture) */
  double *lc;        /* log weight - log sd - log(2 pi) / 2 */
  double *mu, *isd, *sd;
} mixture_x;

/* The mixture at covariate row x (stride: distance between its d entries). */
static void mixture_at(int d, int K, const double *atoms, const double *x,
                       R_xlen_t stride, mixture_x *mx)
{
  int m = LOSS_ATOM_LEN(d);
  double emax = R_NegInf;
  mx->nc = K;
  for (int k = 0; k < K; k++) {
    const double *u = atoms + (R_xlen_t) k * m;
    double eta = u[LOSS_BETA0], mean = u[LOSS_B(d)];
    for (int c = 0; c < d; c++) {
      eta += u[LOSS_BETA1 + c] * x[c * stride];
      mean += u[LOSS_A(d) + c] * x[c * stride];
    }
    mx->lc[k] = eta;
    if (eta > emax) emax = eta;
    mx->mu[k] = mean;
    mx->sd[k] = sqrt(u[LOSS_SIGMA2(d)]);
    mx->isd[k] = 1.0 / mx->sd[k];
  }
  double s = 0.0;
  for (int k = 0; k < K; k++) s += exp(mx->lc[k] - emax);
  double lse = emax + log(s);
  for (int k = 0; k < K; k++)
    mx->lc[k] += -lse - log(mx->sd[k]) - 0.5 * LOG_2PI;
}

static double mixture_density(const mixture_x *mx, double y)
{
  double s = 0.0;
  for (int k = 0; k < mx->nc; k++) {
    double z = (y - mx->mu[k]) * mx->isd[k];
    s += exp(mx->lc[k] - 0.5 * z * z);
  }
  return s;
}

static double hellinger_integrand(const mixture_x *f, const mixture_x *t,
                                  double y)
{
  double r = sqrt(mixture_density(f, y)) - sqrt(mixture_density(t, y));
  return r * r;
}

static double diff_density(const mixture_x *f, const mixture_x *t, double y)
{
  return mixture_density(f, y) - mixture_density(t, y);
}

/* int_a^b |g - g*| dy by 8-point Gauss-Legendre (no sign change inside). */
static double abs_diff_gl(const mixture_x *f, const mixture_x *t, double a,
                          double b)
{
  double c = 0.5 * (a + b), h = 0.5 * (b - a), s = 0.0;
  for (int r = 0; r < 4; r++) {
    s += gl_w[r] * (fabs(diff_density(f, t, c - h * gl_x[r])) +
                    fabs(diff_density(f, t, c + h * gl_x[r])));
  }
  return s * h;
}

/* A root of g - g* in [a, b], where fa and fb have opposite signs. */
static double diff_root(const mixture_x *f, const mixture_x *t, double a,
                        double b, double fa, double fb)
{
  int side = 0;
  for (int it = 0; it < 200; it++) {
    double c = (a * fb - b * fa) / (fb - fa);
    if (!(c > a && c < b)) c = 0.5 * (a + b);
    double fc = diff_density(f, t, c);
    if (fc == 0.0 || b - a <= 4e-16 * (fabs(a) + fabs(b))) return c;
    if ((fc > 0) == (fb > 0)) {
      b = c;
      fb = fc;
      if (side == -1) fa *= 0.5; /* Illinois step */
      side = -1;
    } else {
      a = c;
      fa = fc;
      if (side == 1) fb *= 0.5;
      side = 1;
    }
  }
  return 0.5 * (a + b);
}

static int sgn(double v) { return (v > 0) - (v < 0); }

/* int_{y0}^{y2} |g - g*| dy over one Simpson double panel whose node values
 * f0, f1, f2 at y0, y1 = (y0 + y2) / 2, y2 do not share one sign. */
static double abs_diff_split(const mixture_x *f, const mixture_x *t, double y0,
                             double y2, double f0, double f1, double f2)
{
  double y1 = 0.5 * (y0 + y2), s = 0.0;
  double ya[2] = {y0, y1}, yb[2] = {y1, y2}, fa[2] = {f0, f1}, fb[2] = {f1, f2};
  for (int h = 0; h < 2; h++) {
    if (sgn(fa[h]) * sgn(fb[h]) < 0) {
      double r = diff_root(f, t, ya[h], yb[h], fa[h], fb[h]);
      s += abs_diff_gl(f, t, ya[h], r) + abs_diff_gl(f, t, r, yb[h]);
    } else {
      s += abs_diff_gl(f, t, ya[h], yb[h]);
    }
  }
  return s;
}

/* h^2(x) (type LOSS_HELLINGER or LOSS_HELLINGER_JOINT) or V(x) (LOSS_TV)
 * between two mixtures at one x. cuts: N_CUTS (K + kstar) doubles. */
static double distance_at(const mixture_x *f, const mixture_x *t, int type,
                          int min_points, double *cuts)
{
  int nb = 0;
  const mixture_x *mix[2] = {f, t};
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < mix[s]->nc; k++)
      for (int c = 0; c < N_CUTS; c++)
        cuts[nb++] = mix[s]->mu[k] + cut_offsets[c] * mix[s]->sd[k];
  R_rsort(cuts, nb);
  int npieces = 0;
  for (int b = 0; b + 1 < nb; b++)
    if (cuts[b + 1] > cuts[b]) npieces++;
  if (npieces == 0) return 0.0;
  int per = (min_points + npieces - 1) / npieces;
  int P = per < 16 ? 16 : per + (per % 2); /* even number of panels */

  double total = 0.0;
  for (int b = 0; b + 1 < nb; b++) {
    double lo = cuts[b], hi = cuts[b + 1];
    if (!(hi > lo)) continue;
    double h = (hi - lo) / P;
    if (type == LOSS_TV) {
      double y0 = lo, f0 = diff_density(f, t, y0);
      for (int i = 0; i < P; i += 2) {
        double y2 = (i + 2 == P) ? hi : lo + (i + 2) * h;
        double y1 = 0.5 * (y0 + y2);
        double f1 = diff_density(f, t, y1), f2 = diff_density(f, t, y2);
        int s0 = sgn(f0), s1 = sgn(f1), s2 = sgn(f2);
        if ((s0 >= 0 && s1 >= 0 && s2 >= 0) || (s0 <= 0 && s1 <= 0 && s2 <= 0))
          total += (y2 - y0) / 6.0 * (fabs(f0) + 4.0 * fabs(f1) + fabs(f2));
        else
          total += abs_diff_split(f, t, y0, y2, f0, f1, f2);
        y0 = y2;
        f0 = f2;
      }
    } else {
      double s = hellinger_integrand(f, t, lo) + hellinger_integrand(f, t, hi);
      for (int i = 1; i < P; i++)
        s += (i % 2 ? 4.0 : 2.0) * hellinger_integrand(f, t, lo + i * h);
      total += s * h / 3.0;
    }
  }
  return 0.5 * total;
}

R_xlen_t density_work_size(int K, int kstar)
{
  return 4 * (R_xlen_t) (K + kstar) + (R_xlen_t) N_CUTS * (K + kstar);
}

double density_distance(int d, int K, const double *atoms, int kstar,
                        const double *truth, int nx, const double *x,
                        int type, int min_points, double *work)
{
  if (!atoms_finite(d, K, atoms) || !atoms_finite(d, kstar, truth))
    return NA_REAL;
  mixture_x f, t;
  f.lc = work;
  f.mu = f.lc + K;
  f.isd = f.mu + K;
  f.sd = f.isd + K;
  t.lc = f.sd + K;
  t.mu = t.lc + kstar;
  t.isd = t.mu + kstar;
  t.sd = t.isd + kstar;
  double *cuts = t.sd + kstar;
  double acc = 0.0;
  for (int i = 0; i < nx; i++) {
    mixture_at(d, K, atoms, x + i, nx, &f);
    mixture_at(d, kstar, truth, x + i, nx, &t);
    double v = distance_at(&f, &t, type, min_points, cuts);
    if (v < 0.0) v = 0.0;
    acc += type == LOSS_HELLINGER ? sqrt(v) : v;
  }
  acc /= nx;
  return type == LOSS_HELLINGER_JOINT ? sqrt(acc) : acc;
}
