/*
 * assign.c: the linear assignment problem, solved exactly in O(K^3).
 *
 * Computes
 *   lap_solve()  for a K x K cost matrix C, the permutation perm minimising
 *                sum_k C[k, perm[k]], with dual potentials u, v such that
 *                u[k] + v[j] <= C[k, j] for every k, j (up to rounding) and
 *                sum_k u[k] + sum_j v[j] = sum_k C[k, perm[k]]: a
 *                certificate of optimality (linear programming duality).
 * Inputs: K >= 1; C, double K x K, column-major (C[k + j K] is the cost of
 *   giving label k the old expert j), every entry finite.
 * Writes: perm (int K, 0-based: label k takes old expert perm[k]); u, v
 *   (double K each; either may be NULL when not wanted).
 * Work: work (double, lap_work_size(K)), iwork (int, lap_iwork_size(K)),
 *   from R_alloc() by the caller.
 * Preconditions: finite costs (the R callers map non-finite ones to a large
 *   finite cost).
 *
 * The method: the Hungarian algorithm in its shortest augmenting path form
 * (Jonker & Volgenant 1987; Burkard, Dell'Amico & Martello 2012,
 * "Assignment Problems", section 4.4): the labels are inserted one at a
 * time, each by a Dijkstra-like search for the cheapest augmenting path in
 * the reduced costs C[k, j] - u[k] - v[j] >= 0, then the potentials are
 * updated. K insertions of O(K^2) each. Among optimal permutations the
 * identity is returned when it is one, as the exhaustive search over the
 * permutations in lexicographic order did; other ties are broken by the
 * search order.
 */
#include "moe.h"

R_xlen_t lap_work_size(int K) { return 3 * (R_xlen_t) (K + 1); }
R_xlen_t lap_iwork_size(int K) { return 3 * (R_xlen_t) (K + 1); }

void lap_solve(int K, const double *C, int *perm, double *u_out, double *v_out,
               double *work, int *iwork)
{
  /* 1-based arrays with a dummy column 0: row_of[j] is the label holding
   * column j (0: free), way[j] the previous column on the search path. */
  double *u = work, *v = u + (K + 1), *minv = v + (K + 1);
  int *row_of = iwork, *way = row_of + (K + 1), *used = way + (K + 1);
  for (int j = 0; j <= K; j++) {
    u[j] = 0.0;
    v[j] = 0.0;
    row_of[j] = 0;
    way[j] = 0;
  }
  for (int i = 1; i <= K; i++) {
    row_of[0] = i;
    int j0 = 0;
    for (int j = 0; j <= K; j++) {
      minv[j] = R_PosInf;
      used[j] = 0;
    }
    do {
      used[j0] = 1;
      int i0 = row_of[j0], j1 = 0;
      double delta = R_PosInf;
      for (int j = 1; j <= K; j++) {
        if (used[j]) continue;
        double cur = C[(i0 - 1) + (R_xlen_t) (j - 1) * K] - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      /* finite costs always leave a free column with finite minv */
      if (j1 == 0) break;
      for (int j = 0; j <= K; j++) {
        if (used[j]) {
          u[row_of[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (row_of[j0] != 0);
    /* augment along the path back to the dummy column */
    while (j0) {
      int j1 = way[j0];
      row_of[j0] = row_of[j1];
      j0 = j1;
    }
  }
  for (int j = 1; j <= K; j++) perm[row_of[j] - 1] = j - 1;
  /* prefer the identity among optimal permutations */
  double best = 0.0, id = 0.0;
  for (int k = 0; k < K; k++) {
    best += C[k + (R_xlen_t) perm[k] * K];
    id += C[k + (R_xlen_t) k * K];
  }
  if (id <= best)
    for (int k = 0; k < K; k++) perm[k] = k;
  if (u_out)
    for (int k = 0; k < K; k++) u_out[k] = u[k + 1];
  if (v_out)
    for (int j = 0; j < K; j++) v_out[j] = v[j + 1];
}
