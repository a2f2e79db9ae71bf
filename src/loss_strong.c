/*
 * loss_strong.c: the Voronoi loss for strongly identifiable experts
 * (Nguyen, Ho and Rinaldo, 2024), e.g. feed-forward network experts:
 *
 *   D(G, G*) = sum_j | sum_{i in A_j} w_i - exp(beta0*_j) |
 *            + sum_{j: |A_j| > 1} sum_{i in A_j} w_i (||d beta1_ij||^2 + ||d eta_ij||^2)
 *            + sum_{j: |A_j| = 1} sum_{i in A_j} w_i (||d beta1_ij||   + ||d eta_ij||)
 *
 * with w_i = exp(beta0_i) and Euclidean norms. Atoms: one parameter set with
 * K experts is a column-major L x K matrix, L = 1 + d + m, column k =
 * [beta0_k, beta1_k (d), eta_k (m)]: gating intercept, gating slopes and the
 * m expert parameters (canonicalised by the caller, e.g. FFN sign flips and
 * hidden-unit order fixed). The truth is one L x kstar matrix. The cell A_j
 * of true atom j holds the fitted atoms nearest to it in Euclidean distance
 * over (beta1, eta) (ties: the lowest j); an empty cell contributes its full
 * true weight. The loss is NA when an atom is not finite.
 *
 * The gating is identified up to a translation t = (t0, t1) of every fitted
 * gating vector (beta0_k + t0, beta1_k + t1). Modes: 0 the fit as given;
 * 1 the smallest loss over the K choices of the fitted reference expert
 * (t = -(beta0_r, beta1_r)); 2 the infimum over translations, with t1 from
 * the candidates that put a fitted gating slope on a true one or make a
 * fitted expert the reference, and t0 exact for each (for fixed t1 the loss
 * is sum_j |v S_j - T_j| + v P in v = exp(t0), convex and piecewise linear;
 * v is restricted to v >= min_j T_j / S_j, so its minimum is at a breakpoint
 * T_j / S_j); 3 t1 given, t0 exact (for a local refinement of t1 in R).
 * Writes *loss, *max_cell (atoms in the largest cell) and shift (d + 1: the
 * translation used). work: 2 L K + 3 K + 2 kstar doubles, K ints.
 */
#include "moe.h"

static void translate(int L, int d, int K, const double *atoms, double t0,
                      const double *t1, double *out)
{
  for (int k = 0; k < K; k++) {
    const double *u = atoms + (R_xlen_t) k * L;
    double *o = out + (R_xlen_t) k * L;
    for (int c = 0; c < L; c++) o[c] = u[c];
    o[0] += t0;
    for (int c = 0; c < d; c++) o[1 + c] += t1[c];
  }
}

/* Cells, cell weights S (kstar), and per atom the weighted distance terms:
 * lin[i] = w_i (|d beta1| + |d eta|), sq[i] = w_i (|d beta1|^2 + |d eta|^2). */
static void cells(int L, int d, int K, const double *atoms, int kstar,
                  const double *truth, int *cell, double *S, double *lin,
                  double *sq)
{
  for (int j = 0; j < kstar; j++) S[j] = 0.0;
  for (int i = 0; i < K; i++) {
    const double *u = atoms + (R_xlen_t) i * L;
    int best = 0;
    double bd = R_PosInf;
    for (int j = 0; j < kstar; j++) {
      const double *v = truth + (R_xlen_t) j * L;
      double s = 0.0;
      for (int c = 1; c < L; c++) s += (u[c] - v[c]) * (u[c] - v[c]);
      if (s < bd) {
        bd = s;
        best = j;
      }
    }
    cell[i] = best;
    const double *v = truth + (R_xlen_t) best * L;
    double s1 = 0.0, se = 0.0;
    for (int c = 1; c <= d; c++) s1 += (u[c] - v[c]) * (u[c] - v[c]);
    for (int c = 1 + d; c < L; c++) se += (u[c] - v[c]) * (u[c] - v[c]);
    double w = exp(u[0]);
    S[best] += w;
    lin[i] = w * (sqrt(s1) + sqrt(se));
    sq[i] = w * (s1 + se);
  }
}

/* Loss at translation t1 with t0 = log(v): exact minimum over v when
 * exact_t0, else v = exp(t0_given). Returns the loss; *t0_out the t0 used. */
static double loss_at(int L, int d, int K, const double *atoms, int kstar,
                      const double *truth, double t0_given, const double *t1,
                      int exact_t0, double *t0_out, int *max_cell, double *work,
                      int *cell)
{
  double *tr = work, *S = tr + (R_xlen_t) L * K, *lin = S + kstar;
  double *sq = lin + K, *T = sq + K;
  translate(L, d, K, atoms, exact_t0 ? 0.0 : t0_given, t1, tr);
  cells(L, d, K, tr, kstar, truth, cell, S, lin, sq);
  /* parameter part P (at v = 1) and the cell sizes */
  double P = 0.0;
  int mc = 0;
  for (int j = 0; j < kstar; j++) T[j] = exp(truth[(R_xlen_t) j * L]);
  for (int j = 0; j < kstar; j++) {
    int M = 0;
    for (int i = 0; i < K; i++) if (cell[i] == j) M++;
    if (M > mc) mc = M;
    for (int i = 0; i < K; i++)
      if (cell[i] == j) P += M > 1 ? sq[i] : lin[i];
  }
  *max_cell = mc;
  double best_v = 1.0;
  if (exact_t0) {
    double vmin = R_PosInf;
    for (int j = 0; j < kstar; j++)
      if (S[j] > 0.0 && T[j] / S[j] < vmin) vmin = T[j] / S[j];
    double bestf = R_PosInf;
    for (int j = 0; j < kstar; j++) {
      if (!(S[j] > 0.0)) continue;
      double v = T[j] / S[j];
      if (v < vmin) continue;
      double f = v * P;
      for (int l = 0; l < kstar; l++) f += fabs(v * S[l] - T[l]);
      if (f < bestf) {
        bestf = f;
        best_v = v;
      }
    }
    *t0_out = log(best_v);
    return bestf;
  }
  *t0_out = t0_given;
  double f = P;
  for (int l = 0; l < kstar; l++) f += fabs(S[l] - T[l]);
  return f;
}

int voronoi_strong(int d, int m, int K, const double *atoms, int kstar,
                   const double *truth, int mode, const double *t1_given,
                   double *loss, int *max_cell, double *shift, double *work,
                   int *iwork)
{
  int L = 1 + d + m;
  R_xlen_t len = (R_xlen_t) L * K;
  for (R_xlen_t t = 0; t < len; t++)
    if (!R_FINITE(atoms[t])) {
      *loss = NA_REAL;
      *max_cell = 0;
      for (int c = 0; c <= d; c++) shift[c] = NA_REAL;
      return MOE_NONFINITE;
    }
  double *t1 = work, *rest = work + d;
  double best = R_PosInf, t0 = 0.0;
  int mc = 0;
  if (mode == 0 || mode == 3) {
    for (int c = 0; c < d; c++) t1[c] = mode == 3 ? t1_given[c] : 0.0;
    best = loss_at(L, d, K, atoms, kstar, truth, 0.0, t1, mode == 3, &t0, &mc,
                   rest, iwork);
    *loss = best;
    *max_cell = mc;
    shift[0] = t0;
    for (int c = 0; c < d; c++) shift[1 + c] = t1[c];
    return MOE_OK;
  }
  /* candidates: the K reference choices, then (mode 2) every fitted slope
   * moved onto every true slope */
  int ncand = K + (mode == 2 ? K * kstar : 0);
  for (int r = 0; r < ncand; r++) {
    double t0c;
    if (r < K) {
      const double *u = atoms + (R_xlen_t) r * L;
      t0c = -u[0];
      for (int c = 0; c < d; c++) t1[c] = -u[1 + c];
    } else {
      int i = (r - K) % K, j = (r - K) / K;
      const double *u = atoms + (R_xlen_t) i * L, *v = truth + (R_xlen_t) j * L;
      t0c = 0.0;
      for (int c = 0; c < d; c++) t1[c] = v[1 + c] - u[1 + c];
    }
    double t0u;
    int mcu;
    double f = loss_at(L, d, K, atoms, kstar, truth, t0c, t1, mode == 2, &t0u,
                       &mcu, rest, iwork);
    if (f < best) {
      best = f;
      mc = mcu;
      shift[0] = t0u;
      for (int c = 0; c < d; c++) shift[1 + c] = t1[c];
    }
  }
  *loss = best;
  *max_cell = mc;
  return MOE_OK;
}

R_xlen_t voronoi_strong_work_size(int d, int m, int K, int kstar)
{
  return d + 2 * (R_xlen_t) (1 + d + m) * K + 3 * (R_xlen_t) K + 2 * kstar;
}
