/*
 * mtm.c: Merge-Truncate-Merge (Guha, Ho and Nguyen 2021, Algorithm 1) of one
 * discrete mixing measure G = sum_{i=1}^{K} w_i delta_{theta_i}, the
 * post-processing that turns a draw of an over-fitted mixture (of experts)
 * into an estimate of the number of components.
 *
 * Computes, with the Euclidean distance d and threshold thr = (c omega)^r:
 *  Stage 1 (merge). Atoms are visited in the order `order`. An atom j whose
 *    distance to an atom kept earlier is < omega is merged into the nearest
 *    such atom (ties: the one kept first): its weight is added there and the
 *    atom keeps the location of the earlier one. Otherwise j is kept. The
 *    kept atoms are then sorted by decreasing weight (a stable sort: equal
 *    weights stay in visiting order), giving G' = sum_j q_j delta_{phi_j}.
 *  Stage 2 (truncate and merge). A = { j : q_j > thr }, N = the others. For
 *    j in A in sorted order, j moves to N when some earlier atom i still in
 *    A has q_j d(phi_j, phi_i)^r <= thr. Then the weight q_i of every i in N
 *    is added to the nearest atom of A (ties: the earlier one in sorted
 *    order). The result is sum_{j in A} q~_j delta_{phi_j} and K~ = |A|.
 *  When every q_j <= thr (only possible if thr >= max_j q_j, i.e. a huge c)
 *  A would be empty; the heaviest atom is then kept in A so that K~ >= 1.
 *
 * Inputs (mtm_one):
 *   d       dimension of an atom;
 *   K       number of atoms (>= 1);
 *   theta   d x K, column-major: atom i is theta[0..d-1 + i d];
 *   w       K non-negative weights (the caller normalises them);
 *   order   K distinct 0-based atom indices: the visiting order of stage 1;
 *   omega   merge radius (> 0); thr = (c omega)^r (> 0); r >= 1;
 *   iwork   6 K ints of scratch;  qw  K doubles of scratch.
 * Writes:
 *   out_theta  d x K: the first K~ columns are the kept atoms, heaviest
 *              (after stage 1) first; the other columns are left untouched;
 *   out_w      K: the first K~ entries are their final weights;
 *   assign     K: for each input atom i, the 0-based column of out_theta
 *              its weight ended up in.
 * Returns K~. Preconditions: finite theta and w (checked in R).
 */
#include "moe.h"

static double atom_dist(int d, const double *a, const double *b)
{
  double s = 0.0;
  for (int l = 0; l < d; l++) {
    double e = a[l] - b[l];
    s += e * e;
  }
  return sqrt(s);
}

int mtm_one(int d, int K, const double *theta, const double *w,
            const int *order, double omega, double thr, double r,
            double *out_theta, double *out_w, int *assign, int *iwork,
            double *qw)
{
  int *kept = iwork;          /* stage-1 slot m -> input atom index */
  int *slot = iwork + K;      /* input atom -> stage-1 slot it went to */
  int *rank = iwork + 2 * K;  /* sorted position s -> stage-1 slot */
  int *pos = iwork + 3 * K;   /* stage-1 slot -> sorted position */
  int *inA = iwork + 4 * K;   /* sorted position -> 1 if in A */
  int *dest = iwork + 5 * K;  /* sorted position -> output column */

  /* Stage 1: merge in visiting order. */
  int m = 0;
  for (int t = 0; t < K; t++) {
    int j = order[t];
    const double *tj = theta + (R_xlen_t) j * d;
    int best = -1;
    double bd = 0.0;
    for (int s = 0; s < m; s++) {
      double dd = atom_dist(d, theta + (R_xlen_t) kept[s] * d, tj);
      if (dd < omega && (best < 0 || dd < bd)) {
        best = s;
        bd = dd;
      }
    }
    if (best >= 0) {
      qw[best] += w[j];
      slot[j] = best;
    } else {
      kept[m] = j;
      qw[m] = w[j];
      slot[j] = m;
      m++;
    }
  }

  /* Stable insertion sort of the slots by decreasing weight (m is small). */
  for (int s = 0; s < m; s++) rank[s] = s;
  for (int s = 1; s < m; s++) {
    int key = rank[s], u = s - 1;
    while (u >= 0 && qw[rank[u]] < qw[key]) {
      rank[u + 1] = rank[u];
      u--;
    }
    rank[u + 1] = key;
  }
  for (int s = 0; s < m; s++) pos[rank[s]] = s;

  /* Stage 2: truncate light atoms, then atoms whose weight times distance^r
   * to a heavier kept atom is small. */
  int nA = 0;
  for (int s = 0; s < m; s++) {
    inA[s] = qw[rank[s]] > thr;
    nA += inA[s];
  }
  if (nA == 0) inA[0] = 1;
  for (int s = 1; s < m; s++) {
    if (!inA[s]) continue;
    const double *ps = theta + (R_xlen_t) kept[rank[s]] * d;
    for (int u = 0; u < s; u++) {
      if (!inA[u]) continue;
      double dd = atom_dist(d, theta + (R_xlen_t) kept[rank[u]] * d, ps);
      if (qw[rank[s]] * pow(dd, r) <= thr) {
        inA[s] = 0;
        break;
      }
    }
  }

  int k = 0;
  for (int s = 0; s < m; s++) {
    if (!inA[s]) continue;
    const double *ps = theta + (R_xlen_t) kept[rank[s]] * d;
    for (int l = 0; l < d; l++) out_theta[l + (R_xlen_t) k * d] = ps[l];
    out_w[k] = qw[rank[s]];
    dest[s] = k++;
  }
  /* Every atom of N goes to its nearest atom of A. */
  for (int s = 0; s < m; s++) {
    if (inA[s]) continue;
    const double *ps = theta + (R_xlen_t) kept[rank[s]] * d;
    int best = -1;
    double bd = 0.0;
    for (int u = 0; u < m; u++) {
      if (!inA[u]) continue;
      double dd = atom_dist(d, theta + (R_xlen_t) kept[rank[u]] * d, ps);
      if (best < 0 || dd < bd) {
        best = u;
        bd = dd;
      }
    }
    dest[s] = dest[best];
    out_w[dest[best]] += qw[rank[s]];
  }
  for (int i = 0; i < K; i++) assign[i] = dest[pos[slot[i]]];
  return k;
}
