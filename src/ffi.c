/*
 * ffi.c: every function that touches a SEXP. Each ffi_* entry point checks
 * types and lengths cheaply (a failure is a bug in the R workhorse, reported
 * as an internal error with file and line), allocates and protects its
 * outputs, fills the plain C structs of moe.h and calls the kernels.
 *
 * Data arguments, shared by the entry points:
 *   y  double n;  X double n x p;  Z double n x q;  wt double n.
 * Parameter arguments: alpha double p x K, sigma2 double K, W double q x K.
 */
#include "moe.h"
#include "moe_rng.h"
#include "moe_exp.h"
#include "moe_v2.h"
#include <string.h>

#define FFI_CHECK(cond)                                                      \
  do {                                                                       \
    if (!(cond))                                                             \
      Rf_error("internal error in bayesmoe (%s:%d): %s", __FILE__, __LINE__,  \
               #cond);                                                       \
  } while (0)

static int nrows(SEXP x) { return Rf_isMatrix(x) ? Rf_nrows(x) : Rf_length(x); }
static int ncols(SEXP x) { return Rf_isMatrix(x) ? Rf_ncols(x) : 1; }

static moe_data make_data(SEXP y, SEXP X, SEXP Z, SEXP wt, int K)
{
  FFI_CHECK(TYPEOF(y) == REALSXP && TYPEOF(X) == REALSXP);
  FFI_CHECK(TYPEOF(Z) == REALSXP && TYPEOF(wt) == REALSXP);
  FFI_CHECK(Rf_isMatrix(X) && Rf_isMatrix(Z));
  moe_data d;
  d.n = Rf_length(y);
  d.p = ncols(X);
  d.q = ncols(Z);
  d.K = K;
  FFI_CHECK(nrows(X) == d.n && nrows(Z) == d.n && Rf_length(wt) == d.n);
  FFI_CHECK(K >= 1 && d.p >= 1 && d.q >= 1);
  d.y = REAL(y);
  d.X = REAL(X);
  d.Z = REAL(Z);
  d.wt = REAL(wt);
  return d;
}

static void check_par(const moe_data *d, SEXP alpha, SEXP sigma2, SEXP W)
{
  FFI_CHECK(TYPEOF(alpha) == REALSXP && TYPEOF(sigma2) == REALSXP &&
            TYPEOF(W) == REALSXP);
  FFI_CHECK(Rf_length(alpha) == d->p * d->K);
  FFI_CHECK(Rf_length(sigma2) == d->K);
  FFI_CHECK(Rf_length(W) == d->q * d->K);
}

static double *alloc_work(R_xlen_t len)
{
  return (double *) R_alloc(len > 0 ? len : 1, sizeof(double));
}

static SEXP named_list(int n, const char **names)
{
  SEXP out = PROTECT(Rf_allocVector(VECSXP, n));
  SEXP nm = PROTECT(Rf_allocVector(STRSXP, n));
  for (int i = 0; i < n; i++) SET_STRING_ELT(nm, i, Rf_mkChar(names[i]));
  Rf_setAttrib(out, R_NamesSymbol, nm);
  UNPROTECT(2);
  return out;
}

static SEXP alloc_matrix(int nr, int nc)
{
  return Rf_allocMatrix(REALSXP, nr, nc);
}

/* moe_exp() of every element of x (tests only). */
SEXP ffi_moe_exp(SEXP x, SEXP pairs)
{
  FFI_CHECK(TYPEOF(x) == REALSXP);
  FFI_CHECK(TYPEOF(pairs) == LGLSXP && XLENGTH(pairs) == 1);
  R_xlen_t n = XLENGTH(x), i = 0;
  SEXP out = PROTECT(Rf_allocVector(REALSXP, n));
  const double *px = REAL(x);
  double *po = REAL(out);
#if MOE_HAVE_V2
  /* moe_exp_v2() of moe_v2.h, two arguments at a time */
  if (LOGICAL(pairs)[0] == TRUE) {
    for (; i + 1 < n; i += 2) {
      moe_v2 v = moe_exp_v2(moe_v2_set(px[i], px[i + 1]));
      po[i] = v[0];
      po[i + 1] = v[1];
    }
  }
#endif
  for (; i < n; i++) po[i] = moe_exp(px[i]);
  UNPROTECT(1);
  return out;
}

/* Tests only: whether new collapsed chains take observations in pairs in
 * vector lanes (mcmc_fused.c); returns the previous setting and whether
 * this build has the vector code at all. */
SEXP ffi_set_v2(SEXP on)
{
  FFI_CHECK(TYPEOF(on) == LGLSXP && XLENGTH(on) == 1 && LOGICAL(on)[0] != NA_LOGICAL);
  SEXP out = PROTECT(Rf_allocVector(LGLSXP, 2));
  LOGICAL(out)[0] = mcmc_fused_set_v2(LOGICAL(on)[0]);
  LOGICAL(out)[1] = MOE_HAVE_V2;
  UNPROTECT(1);
  return out;
}

/* Total log-likelihood (the C floor pass). */
SEXP ffi_loglik(SEXP y, SEXP X, SEXP Z, SEXP wt, SEXP alpha, SEXP sigma2,
                SEXP W)
{
  moe_data d = make_data(y, X, Z, wt, Rf_length(sigma2));
  check_par(&d, alpha, sigma2, W);
  moe_par par = { REAL(alpha), REAL(sigma2), REAL(W) };
  double *work = alloc_work(3 * (R_xlen_t) d.K);
  return Rf_ScalarReal(moe_loglik(&d, &par, work));
}

/* E-step at given parameters: responsibilities, per-observation
 * log-likelihood and log gating probabilities. */
SEXP ffi_estep(SEXP y, SEXP X, SEXP Z, SEXP wt, SEXP alpha, SEXP sigma2,
               SEXP W)
{
  moe_data d = make_data(y, X, Z, wt, Rf_length(sigma2));
  check_par(&d, alpha, sigma2, W);
  const char *names[] = {"resp", "loglik_i", "log_gate", "mean"};
  SEXP out = PROTECT(named_list(4, names));
  SEXP R = PROTECT(alloc_matrix(d.n, d.K));
  SEXP ll = PROTECT(Rf_allocVector(REALSXP, d.n));
  SEXP logg = PROTECT(alloc_matrix(d.n, d.K));
  SEXP mu = PROTECT(alloc_matrix(d.n, d.K));
  double *eta = alloc_work((R_xlen_t) d.n * d.K), *kw = alloc_work(2 * d.K);
  gate_logits(&d, REAL(W), eta);
  gate_logprob_softmax(d.n, d.K, eta, REAL(logg));
  expert_means(&d, REAL(alpha), REAL(mu));
  moe_estep(&d, REAL(logg), REAL(mu), REAL(sigma2), REAL(R), REAL(ll), kw);
  SET_VECTOR_ELT(out, 0, R);
  SET_VECTOR_ELT(out, 1, ll);
  SET_VECTOR_ELT(out, 2, logg);
  SET_VECTOR_ELT(out, 3, mu);
  UNPROTECT(5);
  return out;
}

/* One damped Newton step on the gating given responsibilities R. */
SEXP ffi_gate_newton(SEXP y, SEXP X, SEXP Z, SEXP wt, SEXP R, SEXP W,
                     SEXP ridge)
{
  int K = ncols(R);
  moe_data d = make_data(y, X, Z, wt, K);
  FFI_CHECK(TYPEOF(R) == REALSXP && Rf_length(R) == d.n * K);
  FFI_CHECK(TYPEOF(W) == REALSXP && Rf_length(W) == d.q * K);
  const char *names[] = {"W", "status"};
  SEXP out = PROTECT(named_list(2, names));
  SEXP Wn = PROTECT(Rf_duplicate(W));
  R_xlen_t nK = (R_xlen_t) d.n * K, m = (R_xlen_t) (K - 1) * d.q;
  double *eta = alloc_work(nK), *logg = alloc_work(nK);
  double *work = alloc_work(2 * m * m + 3 * m + 2 * (R_xlen_t) d.n + nK);
  gate_logits(&d, REAL(Wn), eta);
  gate_logprob_softmax(d.n, K, eta, logg);
  int st = gate_newton_step(&d, REAL(R), REAL(Wn), eta, logg,
                            Rf_asReal(ridge), work);
  SET_VECTOR_ELT(out, 0, Wn);
  SET_VECTOR_ELT(out, 1, Rf_ScalarInteger(st));
  UNPROTECT(2);
  return out;
}

/* ---- losses (loss.c) ----
 * atoms: double (2d + 3) x K x S, S parameter sets one after the other;
 * truth: double (2d + 3) x kstar; d, K: integer scalars. */

static int loss_dims(SEXP atoms, SEXP K, SEXP truth, SEXP d, int *kstar,
                     R_xlen_t *S)
{
  FFI_CHECK(TYPEOF(atoms) == REALSXP && TYPEOF(truth) == REALSXP);
  int dd = Rf_asInteger(d), KK = Rf_asInteger(K);
  FFI_CHECK(dd >= 1 && KK >= 1);
  R_xlen_t m = LOSS_ATOM_LEN(dd);
  FFI_CHECK(XLENGTH(truth) % m == 0 && XLENGTH(truth) > 0);
  FFI_CHECK(XLENGTH(atoms) % (m * KK) == 0);
  *kstar = (int) (XLENGTH(truth) / m);
  *S = XLENGTH(atoms) / (m * KK);
  return dd;
}

/* D1 (over = 0) or D2 (over = 1) of every parameter set, the size of its
 * largest Voronoi cell and the translation (t0, t1) of the fit it used,
 * (d + 1) x S. mode: 0 the fit as given; 1 the best fitted reference
 * expert; 2 the infimum over translations (t0 exact, t1 over candidates);
 * 3 the minimum over t0 at the gating-slope shifts t1 (double d x S).
 * norm: 0 Euclidean, 1 L1. rbar: double table. */
SEXP ffi_voronoi(SEXP atoms, SEXP K, SEXP truth, SEXP d, SEXP over,
                 SEXP norm, SEXP rbar, SEXP mode, SEXP t1)
{
  int kstar;
  R_xlen_t S;
  int dd = loss_dims(atoms, K, truth, d, &kstar, &S), KK = Rf_asInteger(K);
  FFI_CHECK(TYPEOF(rbar) == REALSXP && Rf_length(rbar) >= 1);
  voronoi_spec sp = { dd, kstar, REAL(truth), Rf_asInteger(over),
                      Rf_asInteger(norm), REAL(rbar), Rf_length(rbar) };
  int md = Rf_asInteger(mode);
  FFI_CHECK((sp.over == 0 || sp.over == 1) && md >= 0 && md <= 3);
  FFI_CHECK(sp.norm == LOSS_NORM_EUCLIDEAN || sp.norm == LOSS_NORM_L1);
  if (md == 3) FFI_CHECK(TYPEOF(t1) == REALSXP && XLENGTH(t1) == dd * S);
  const char *names[] = {"loss", "max_cell", "shift"};
  SEXP out = PROTECT(named_list(3, names));
  SEXP loss = PROTECT(Rf_allocVector(REALSXP, S));
  SEXP mc = PROTECT(Rf_allocVector(INTSXP, S));
  SEXP shift = PROTECT(alloc_matrix(dd + 1, (int) S));
  R_xlen_t step = (R_xlen_t) LOSS_ATOM_LEN(dd) * KK;
  voronoi_work w;
  w.cell = (int *) R_alloc(KK, sizeof(int));
  w.count = (int *) R_alloc(kstar, sizeof(int));
  w.wsum = alloc_work(kstar);
  w.tw = alloc_work(kstar);
  w.shifted = alloc_work(step);
  w.tvec = alloc_work(dd + 1);
  w.t1 = alloc_work(dd);
  w.tbest = alloc_work(dd + 1);
  for (R_xlen_t s = 0; s < S; s++) {
    if (s % 256 == 0) R_CheckUserInterrupt();
    const double *a = REAL(atoms) + s * step;
    double *sh = REAL(shift) + s * (dd + 1);
    int *m = INTEGER(mc) + s;
    double v;
    switch (md) {
    case 0:
      v = voronoi_loss(&sp, KK, a, m, &w);
      for (int c = 0; c <= dd; c++) sh[c] = 0.0;
      break;
    case 1:
      v = voronoi_loss_best(&sp, KK, a, sh, m, &w);
      break;
    case 2:
      v = voronoi_loss_translated(&sp, KK, a, sh, m, &w);
      break;
    default:
      v = voronoi_loss_shift(&sp, KK, a, REAL(t1) + s * dd, sh, m, &w);
    }
    REAL(loss)[s] = v;
  }
  SET_VECTOR_ELT(out, 0, loss);
  SET_VECTOR_ELT(out, 1, mc);
  SET_VECTOR_ELT(out, 2, shift);
  UNPROTECT(4);
  return out;
}

/* Voronoi cell (1-based true atom) of every fitted atom, K x S, and the
 * distances |d beta1|, |d a|, |d b|, |d sigma2| to it, 4 x K x S, after
 * translating parameter set s by shift[, s] ((d + 1) x S, as returned by
 * ffi_voronoi). */
SEXP ffi_voronoi_cells(SEXP atoms, SEXP K, SEXP truth, SEXP d, SEXP norm,
                       SEXP shift)
{
  int kstar;
  R_xlen_t S;
  int dd = loss_dims(atoms, K, truth, d, &kstar, &S), KK = Rf_asInteger(K);
  int nm = Rf_asInteger(norm);
  FFI_CHECK(nm == LOSS_NORM_EUCLIDEAN || nm == LOSS_NORM_L1);
  FFI_CHECK(TYPEOF(shift) == REALSXP && XLENGTH(shift) == (dd + 1) * S);
  const char *names[] = {"cell", "dist"};
  SEXP out = PROTECT(named_list(2, names));
  SEXP cell = PROTECT(Rf_allocVector(INTSXP, (R_xlen_t) KK * S));
  SEXP dist = PROTECT(Rf_allocVector(REALSXP, 4 * (R_xlen_t) KK * S));
  int m = LOSS_ATOM_LEN(dd);
  R_xlen_t step = (R_xlen_t) m * KK;
  double *shifted = alloc_work(step);
  for (R_xlen_t s = 0; s < S; s++) {
    if (s % 1024 == 0) R_CheckUserInterrupt();
    voronoi_translate(dd, KK, REAL(atoms) + s * step,
                      REAL(shift) + s * (dd + 1), shifted);
    int *c = INTEGER(cell) + s * KK;
    voronoi_assign(dd, KK, shifted, kstar, REAL(truth), nm, c);
    for (int i = 0; i < KK; i++) {
      double *dst = REAL(dist) + 4 * (s * KK + i);
      voronoi_param_dist(dd, shifted + (R_xlen_t) i * m,
                         REAL(truth) + (R_xlen_t) c[i] * m, dst);
      c[i] += 1;
    }
  }
  SET_VECTOR_ELT(out, 0, cell);
  SET_VECTOR_ELT(out, 1, dist);
  UNPROTECT(3);
  return out;
}

/* Covariate-averaged density distance of every parameter set. x: double
 * nx x d matrix; type: 0 E_X h, 1 E_X V, 2 sqrt(E_X h^2). */
SEXP ffi_density_loss(SEXP atoms, SEXP K, SEXP truth, SEXP d, SEXP x,
                      SEXP type, SEXP min_points)
{
  int kstar;
  R_xlen_t S;
  int dd = loss_dims(atoms, K, truth, d, &kstar, &S), KK = Rf_asInteger(K);
  FFI_CHECK(TYPEOF(x) == REALSXP && Rf_isMatrix(x) && ncols(x) == dd);
  int ty = Rf_asInteger(type), mp = Rf_asInteger(min_points), nx = nrows(x);
  FFI_CHECK(ty >= LOSS_HELLINGER && ty <= LOSS_HELLINGER_JOINT);
  FFI_CHECK(mp >= 2 && nx >= 1);
  SEXP out = PROTECT(Rf_allocVector(REALSXP, S));
  double *work = alloc_work(density_work_size(KK, kstar));
  R_xlen_t step = (R_xlen_t) LOSS_ATOM_LEN(dd) * KK;
  for (R_xlen_t s = 0; s < S; s++) {
    R_CheckUserInterrupt();
    REAL(out)[s] = density_distance(dd, KK, REAL(atoms) + s * step, kstar,
                                    REAL(truth), nx, REAL(x), ty, mp, work);
  }
  UNPROTECT(1);
  return out;
}
/* n draws of PG(1, z_i) (z recycled, every z_i finite) from one stream of
 * the fast generator of moe_rng.h seeded from R's generator, through the
 * pg_rng interface the fused sampler's chunked Polya-Gamma draws use
 * (internal: for the tests of that generator and of rpg1_rng()). */
SEXP ffi_rpg1_stream(SEXP n, SEXP z)
{
  FFI_CHECK(TYPEOF(n) == REALSXP && Rf_length(n) == 1 && TYPEOF(z) == REALSXP);
  double nd = REAL(n)[0];
  FFI_CHECK(R_FINITE(nd) && nd >= 0 && nd == floor(nd));
  R_xlen_t N = (R_xlen_t) nd, nz = XLENGTH(z);
  FFI_CHECK(N == 0 || nz >= 1);
  const double *zv = REAL(z);
  for (R_xlen_t j = 0; j < nz; j++) FFI_CHECK(R_FINITE(zv[j]));
  SEXP out = PROTECT(Rf_allocVector(REALSXP, N));
  double *x = REAL(out);
  moe_xrng rng;
  GetRNGstate();
  moe_xrng_seed(&rng, moe_xrng_base(), 0);
  PutRNGstate();
  pg_rng g = moe_xrng_pg(&rng);
  for (R_xlen_t i = 0, jz = 0; i < N; i++) {
    x[i] = rpg1_rng(zv[jz], &g);
    if (++jz == nz) jz = 0;
    if (i % 1024 == 1023) R_CheckUserInterrupt();
  }
  UNPROTECT(1);
  return out;
}

/* n draws of PG(b_i, z_i), b (int, length >= 1) and z (double, length >= 1)
 * recycled to length n; every b_i >= 1 and every z_i finite (checked by
 * rpolyagamma()). One draw costs at most about PG_EXACT_MAX PG(1, z) draws
 * whatever b_i (polyagamma.c), so the user can interrupt every 1024 draws. */
SEXP ffi_rpolyagamma(SEXP n, SEXP b, SEXP z)
{
  FFI_CHECK(TYPEOF(n) == REALSXP && Rf_length(n) == 1);
  FFI_CHECK(TYPEOF(b) == INTSXP && TYPEOF(z) == REALSXP);
  double nd = REAL(n)[0];
  FFI_CHECK(R_FINITE(nd) && nd >= 0 && nd == floor(nd));
  R_xlen_t N = (R_xlen_t) nd, nb = XLENGTH(b), nz = XLENGTH(z);
  FFI_CHECK(N == 0 || (nb >= 1 && nz >= 1));
  const int *bv = INTEGER(b);
  const double *zv = REAL(z);
  for (R_xlen_t j = 0; j < nb; j++) FFI_CHECK(bv[j] >= 1);
  for (R_xlen_t j = 0; j < nz; j++) FFI_CHECK(R_FINITE(zv[j]));
  SEXP out = PROTECT(Rf_allocVector(REALSXP, N));
  double *x = REAL(out);
  R_xlen_t jb = 0, jz = 0;
  GetRNGstate();
  for (R_xlen_t i = 0; i < N; i++) {
    x[i] = bv[jb] == 1 ? rpg1(zv[jz]) : rpg(bv[jb], zv[jz]);
    if (++jb == nb) jb = 0;
    if (++jz == nz) jz = 0;
    if (i % 1024 == 1023) R_CheckUserInterrupt();
  }
  PutRNGstate();
  UNPROTECT(1);
  return out;
}

/* Optimal assignment of every slice of cost, a double N x K x K array
 * (cost[n, k, j]: label k takes old expert j in problem n), all finite.
 * Returns list(perm = int N x K, 1-based, and, when duals is TRUE, the dual
 * potentials u = N x K (labels) and v = N x K (experts)). */
SEXP ffi_assign(SEXP cost, SEXP duals)
{
  FFI_CHECK(TYPEOF(cost) == REALSXP);
  SEXP dim = Rf_getAttrib(cost, R_DimSymbol);
  FFI_CHECK(TYPEOF(dim) == INTSXP && Rf_length(dim) == 3);
  int N = INTEGER(dim)[0], K = INTEGER(dim)[1], want = Rf_asLogical(duals) == TRUE;
  FFI_CHECK(INTEGER(dim)[2] == K && K >= 1);
  const double *C = REAL(cost);
  R_xlen_t NK = (R_xlen_t) N * K;
  for (R_xlen_t t = 0; t < NK * K; t++) FFI_CHECK(R_FINITE(C[t]));
  SEXP perm = PROTECT(Rf_allocMatrix(INTSXP, N, K));
  SEXP u = PROTECT(want ? Rf_allocMatrix(REALSXP, N, K) : R_NilValue);
  SEXP v = PROTECT(want ? Rf_allocMatrix(REALSXP, N, K) : R_NilValue);
  double *Cn = (double *) R_alloc((size_t) K * K, sizeof(double));
  double *work = (double *) R_alloc((size_t) lap_work_size(K), sizeof(double));
  int *iwork = (int *) R_alloc((size_t) lap_iwork_size(K), sizeof(int));
  int *pn = (int *) R_alloc((size_t) K, sizeof(int));
  double *un = (double *) R_alloc((size_t) K, sizeof(double));
  double *vn = (double *) R_alloc((size_t) K, sizeof(double));
  for (int n = 0; n < N; n++) {
    for (int j = 0; j < K; j++)
      for (int k = 0; k < K; k++)
        Cn[k + (R_xlen_t) j * K] = C[n + (R_xlen_t) k * N + (R_xlen_t) j * NK];
    lap_solve(K, Cn, pn, un, vn, work, iwork);
    for (int k = 0; k < K; k++) {
      INTEGER(perm)[n + (R_xlen_t) k * N] = pn[k] + 1;
      if (want) {
        REAL(u)[n + (R_xlen_t) k * N] = un[k];
        REAL(v)[n + (R_xlen_t) k * N] = vn[k];
      }
    }
    if (n % 1024 == 1023) R_CheckUserInterrupt();
  }
  SEXP out = PROTECT(Rf_allocVector(VECSXP, 3));
  SET_VECTOR_ELT(out, 0, perm);
  SET_VECTOR_ELT(out, 1, u);
  SET_VECTOR_ELT(out, 2, v);
  SEXP nm = PROTECT(Rf_allocVector(STRSXP, 3));
  SET_STRING_ELT(nm, 0, Rf_mkChar("perm"));
  SET_STRING_ELT(nm, 1, Rf_mkChar("u"));
  SET_STRING_ELT(nm, 2, Rf_mkChar("v"));
  Rf_setAttrib(out, R_NamesSymbol, nm);
  UNPROTECT(5);
  return out;
}

/* ---- list and length helpers ---- */

static SEXP list_get(SEXP list, const char *name)
{
  SEXP nm = Rf_getAttrib(list, R_NamesSymbol);
  for (int i = 0; i < Rf_length(list); i++)
    if (strcmp(CHAR(STRING_ELT(nm, i)), name) == 0) return VECTOR_ELT(list, i);
  Rf_error("internal error in bayesmoe (%s:%d): no element `%s`", __FILE__,
           __LINE__, name);
  return R_NilValue;
}

static const double *real_of_length(SEXP x, R_xlen_t len)
{
  FFI_CHECK(TYPEOF(x) == REALSXP && XLENGTH(x) == len);
  return REAL(x);
}

/* Merge-Truncate-Merge over S atom sets (src/mtm.c).
 *   theta   double d x Kmax x S: atom i of set s is column i of slice s;
 *   w       double Kmax x S: weights (normalised by the caller);
 *   natoms  int S: number of atoms of each set (1..Kmax); columns beyond it
 *           are ignored;
 *   order   int Kmax x S of 0-based visiting orders (the first natoms[s]
 *           entries of column s are a permutation of 0..natoms[s]-1;
 *           random orders are drawn in R, mtm_orders());
 *   dims    int c(d, Kmax);  par  double c(omega, thr, r).
 * Returns list(K = int S, theta = double d x Kmax x S, weights = double
 * Kmax x S, assign = int Kmax x S (1-based output column of each input atom);
 * unused entries are NA). */
SEXP ffi_mtm(SEXP theta, SEXP w, SEXP natoms, SEXP order, SEXP dims, SEXP par)
{
  FFI_CHECK(TYPEOF(theta) == REALSXP && TYPEOF(w) == REALSXP);
  FFI_CHECK(TYPEOF(natoms) == INTSXP && TYPEOF(dims) == INTSXP &&
            Rf_length(dims) == 2);
  FFI_CHECK(TYPEOF(par) == REALSXP && Rf_length(par) == 3);
  int d = INTEGER(dims)[0], Kmax = INTEGER(dims)[1], S = Rf_length(natoms);
  FFI_CHECK(d >= 0 && Kmax >= 1);
  FFI_CHECK(XLENGTH(theta) == (R_xlen_t) d * Kmax * S);
  FFI_CHECK(XLENGTH(w) == (R_xlen_t) Kmax * S);
  const int *na = INTEGER(natoms);
  for (int s = 0; s < S; s++) FFI_CHECK(na[s] >= 1 && na[s] <= Kmax);
  FFI_CHECK(TYPEOF(order) == INTSXP && XLENGTH(order) == (R_xlen_t) Kmax * S);
  double omega = REAL(par)[0], thr = REAL(par)[1], r = REAL(par)[2];
  FFI_CHECK(omega > 0 && thr > 0 && r >= 1);

  const char *names[] = {"K", "theta", "weights", "assign"};
  SEXP out = PROTECT(named_list(4, names));
  SEXP oK = Rf_allocVector(INTSXP, S);
  SET_VECTOR_ELT(out, 0, oK);
  SEXP otheta = Rf_allocVector(REALSXP, (R_xlen_t) d * Kmax * S);
  SET_VECTOR_ELT(out, 1, otheta);
  SEXP ow = Rf_allocMatrix(REALSXP, Kmax, S);
  SET_VECTOR_ELT(out, 2, ow);
  SEXP oa = Rf_allocMatrix(INTSXP, Kmax, S);
  SET_VECTOR_ELT(out, 3, oa);
  double *th = REAL(otheta), *wo = REAL(ow);
  int *ao = INTEGER(oa), *Ko = INTEGER(oK);
  for (R_xlen_t i = 0; i < XLENGTH(otheta); i++) th[i] = NA_REAL;
  for (R_xlen_t i = 0; i < XLENGTH(ow); i++) {
    wo[i] = NA_REAL;
    ao[i] = NA_INTEGER;
  }

  int *iwork = (int *) R_alloc(7 * (size_t) Kmax, sizeof(int));
  int *ord = iwork + 6 * Kmax;
  double *qw = alloc_work(Kmax);
  for (int s = 0; s < S; s++) {
    int K = na[s];
    const int *os = INTEGER(order) + (R_xlen_t) s * Kmax;
    for (int i = 0; i < K; i++) {
      FFI_CHECK(os[i] >= 0 && os[i] < K);
      ord[i] = os[i];
    }
    R_xlen_t off = (R_xlen_t) s * Kmax;
    Ko[s] = mtm_one(d, K, REAL(theta) + off * d, REAL(w) + off, ord, omega,
                    thr, r, th + off * d, wo + off, ao + off, iwork, qw);
    for (int i = 0; i < K; i++) ao[off + i] += 1;
    for (int i = Ko[s]; i < K; i++) wo[off + i] = NA_REAL;
    if (s % 1024 == 1023) R_CheckUserInterrupt();
  }
  UNPROTECT(1);
  return out;
}

/* Log density of the symmetrised complete-data mixture (src/marglik.c) at N
 * points. dims = int c(N, K, p, q, M); the array arguments are as in
 * mix_logdens(), q may be 0 (then d, gm, G and gcst are ignored). */
SEXP ffi_mix_logdens(SEXP a, SEXP s2, SEXP d, SEXP em, SEXP E, SEXP ec,
                     SEXP eC, SEXP ecst, SEXP gm, SEXP G, SEXP gcst, SEXP cst,
                     SEXP dims)
{
  FFI_CHECK(TYPEOF(dims) == INTSXP && Rf_length(dims) == 5);
  int N = INTEGER(dims)[0], K = INTEGER(dims)[1], p = INTEGER(dims)[2];
  int q = INTEGER(dims)[3], M = INTEGER(dims)[4];
  FFI_CHECK(N >= 0 && K >= 1 && K <= 20 && p >= 1 && q >= 0 && M >= 1);
  SEXP args[] = {a, s2, d, em, E, ec, eC, ecst, gm, G, gcst, cst};
  for (int i = 0; i < 12; i++) FFI_CHECK(TYPEOF(args[i]) == REALSXP);
  R_xlen_t NK = (R_xlen_t) N * K, MK = (R_xlen_t) M * K;
  FFI_CHECK(XLENGTH(a) == NK * p && XLENGTH(s2) == NK);
  FFI_CHECK(XLENGTH(em) == MK * p && XLENGTH(E) == MK * p * p);
  FFI_CHECK(XLENGTH(ec) == MK && XLENGTH(eC) == MK && XLENGTH(ecst) == MK);
  FFI_CHECK(XLENGTH(cst) == M);
  if (q > 0) {
    FFI_CHECK(XLENGTH(d) == NK * q && XLENGTH(gm) == MK * q);
    FFI_CHECK(XLENGTH(G) == MK * q * q && XLENGTH(gcst) == MK);
  }
  SEXP out = PROTECT(Rf_allocVector(REALSXP, N));
  double *L = alloc_work((R_xlen_t) K * K);
  double *f = alloc_work((R_xlen_t) 1 << K);
  double *lm = alloc_work(M);
  double *u = alloc_work(p > q ? p : q);
  mix_logdens(N, K, p, q, M, REAL(a), REAL(s2), REAL(d), REAL(em), REAL(E),
              REAL(ec), REAL(eC), REAL(ecst), REAL(gm), REAL(G), REAL(gcst),
              REAL(cst), REAL(out), L, f, lm, u);
  UNPROTECT(1);
  return out;
}

/* ---- FFN experts and the least-squares form ----
 * Network arguments: Xf double n x D (the network inputs: the non-intercept
 * columns of the expert design), H (int >= 1) hidden units, act (int:
 * 0 tanh, 1 sigmoid, 2 GELU); theta double P x K with P = H D + 2 H + 1. */

static ffn_net make_net(SEXP Xf, SEXP H, SEXP act)
{
  FFI_CHECK(TYPEOF(Xf) == REALSXP && Rf_isMatrix(Xf));
  ffn_net net;
  net.n = Rf_nrows(Xf);
  net.D = Rf_ncols(Xf);
  net.H = Rf_asInteger(H);
  net.act = Rf_asInteger(act);
  FFI_CHECK(net.D >= 1 && net.H >= 1 && net.act >= 0 && net.act <= 2);
  net.X = REAL(Xf);
  return net;
}

/* ---- the engine: EM (em.c) and Gibbs (mcmc.c) for any gate and family ----
 *
 * A gate comes from R (gate_c() in R/gate.R) as list(type = integer
 * code of moe_gate_type, k = integer, tau = double, G = integer, group =
 * integer vector of length K, 0-based); an expert family (expert_c()) as
 * list(type = integer code of moe_family_type, ...): FFN experts add H
 * (hidden units), act (activation code), lm_steps, mh_steps and s_hid2 (the
 * prior variance of the hidden layer); binomial and Poisson experts add
 * steps and tol (Newton steps of an M-step), trials (n, binomial), offset (n
 * or NULL) and lconst (n), on the rows of X (expert_c_data() in R). The
 * family's design is X: the expert design for linear and GLM experts, the
 * network inputs for FFN experts. */

/* Field names of the lists R sends (one source: these arrays, which
 * ffi_code_tables() exports and test-tables.R compares with gate_c(),
 * expert_c() and prior_internal()). */
enum { GF_TYPE, GF_NEXPERTS, GF_K, GF_TAU, GF_G, GF_GROUP, GF_N };
static const char *gate_fields[GF_N] = {"type", "K", "k", "tau", "G", "group"};
enum { FF_TYPE, FF_H, FF_ACT, FF_LM_STEPS, FF_MH_STEPS, FF_S_HID2,
       FF_STEPS, FF_TOL, FF_TRIALS, FF_OFFSET, FF_LCONST, FF_DF, FF_N };
static const char *family_fields[FF_N] = {"type", "H", "act", "lm_steps",
                                          "mh_steps", "s_hid2", "steps", "tol",
                                          "trials", "offset", "lconst", "df"};
enum { PF_M_A, PF_VA_INV, PF_VA_INV_M, PF_M_VA_INV_M, PF_C0, PF_CC0, PF_S_W2,
       PF_EXCH, PF_DF_SHAPE, PF_DF_RATE, PF_N };
static const char *prior_fields[PF_N] = {"m_a", "Va_inv", "Va_inv_m",
                                         "m_Va_inv_m", "c0", "C0", "s_w2",
                                         "exchangeable", "df_shape", "df_rate"};

/* The gate of a model (gate_c() in R), which also says the number of
 * experts K: every entry point takes K from it. */
static moe_gate make_gate(SEXP gate)
{
  FFI_CHECK(TYPEOF(gate) == VECSXP);
  moe_gate g;
  g.type = (moe_gate_type) Rf_asInteger(list_get(gate, gate_fields[GF_TYPE]));
  int K = g.K = Rf_asInteger(list_get(gate, gate_fields[GF_NEXPERTS]));
  FFI_CHECK(K >= 1 && K != NA_INTEGER);
  g.topk = Rf_asInteger(list_get(gate, gate_fields[GF_K]));
  g.tau = Rf_asReal(list_get(gate, gate_fields[GF_TAU]));
  g.G = Rf_asInteger(list_get(gate, gate_fields[GF_G]));
  SEXP grp = list_get(gate, gate_fields[GF_GROUP]);
  FFI_CHECK(g.type >= GATE_SOFTMAX && g.type < GATE_NTYPES);
  FFI_CHECK(g.topk >= 1 && g.topk <= K && R_FINITE(g.tau) && g.tau > 0);
  g.group = NULL;
  if (g.type == GATE_HIER) {
    FFI_CHECK(TYPEOF(grp) == INTSXP && Rf_length(grp) == K && g.G >= 1);
    g.group = INTEGER(grp);
    for (int k = 0; k < K; k++) FFI_CHECK(g.group[k] >= 0 && g.group[k] < g.G);
  }
  moe_gate_init(&g);
  return g;
}

/* The conjugate expert prior of prior_internal() in R (m_a, Va_inv,
 * Va_inv_m with np coefficients, m_Va_inv_m, c0, C0) into pr. */
static void make_expert_prior(SEXP prior, int np, moe_mcmc_prior *pr)
{
  FFI_CHECK(TYPEOF(prior) == VECSXP);
  pr->m_a = real_of_length(list_get(prior, prior_fields[PF_M_A]), np);
  pr->Va_inv = real_of_length(list_get(prior, prior_fields[PF_VA_INV]), (R_xlen_t) np * np);
  pr->Va_inv_m = real_of_length(list_get(prior, prior_fields[PF_VA_INV_M]), np);
  pr->m_Va_inv_m = Rf_asReal(list_get(prior, prior_fields[PF_M_VA_INV_M]));
  pr->c0 = Rf_asReal(list_get(prior, prior_fields[PF_C0]));
  pr->C0 = Rf_asReal(list_get(prior, prior_fields[PF_CC0]));
  FFI_CHECK(pr->c0 > 0 && pr->C0 > 0);
}

/* The prior list of prior_internal(): the expert prior and the gating
 * prior s_w2 (q), exchangeable. */
static moe_mcmc_prior make_prior(SEXP prior, int np, int q)
{
  moe_mcmc_prior pr;
  make_expert_prior(prior, np, &pr);
  pr.s_w2 = real_of_length(list_get(prior, prior_fields[PF_S_W2]), q);
  pr.exchangeable = Rf_asLogical(list_get(prior, prior_fields[PF_EXCH]));
  FFI_CHECK(pr.exchangeable != NA_LOGICAL);
  for (int a = 0; a < q; a++) FFI_CHECK(pr.s_w2[a] > 0);
  pr.df_shape = Rf_asReal(list_get(prior, prior_fields[PF_DF_SHAPE]));
  pr.df_rate = Rf_asReal(list_get(prior, prior_fields[PF_DF_RATE]));
  FFI_CHECK(pr.df_shape > 0 && pr.df_rate > 0);
  return pr;
}

/* The prior of one FFN expert: the output layer's conjugate prior pr and the
 * hidden layer's variance s_hid2. */
static ffn_prior ffn_prior_of(const moe_mcmc_prior *pr, double s_hid2)
{
  ffn_prior fp = { pr->m_a, pr->Va_inv, pr->Va_inv_m, pr->m_Va_inv_m, pr->c0,
                   pr->C0, s_hid2 };
  FFI_CHECK(s_hid2 > 0);
  return fp;
}

/* The family table of `expert` on the design X (n x p); `info` must outlive
 * `f`. For FFN experts with a prior list (Gibbs), its output-layer prior
 * comes from `prior` (moe_mcmc_prior, H + 1 coefficients). Student-t
 * experts keep their constants (t_family_info) in R_alloc() memory; their
 * df prior comes from `pr` (Gibbs). */
typedef struct {
  ffn_family_info ffn;
  glm_family_info glm;
} family_info;

/* The GLM family constants of `expert` on n rows (binomial: trials). */
static void make_glm_info(SEXP expert, int n, int binomial, glm_family_info *g)
{
  g->steps = Rf_asInteger(list_get(expert, family_fields[FF_STEPS]));
  g->tol = Rf_asReal(list_get(expert, family_fields[FF_TOL]));
  FFI_CHECK(g->steps >= 1 && g->tol > 0);
  g->trials = binomial ? real_of_length(list_get(expert, family_fields[FF_TRIALS]), n) : NULL;
  SEXP off = list_get(expert, family_fields[FF_OFFSET]);
  g->offset = Rf_isNull(off) ? NULL : real_of_length(off, n);
  g->lconst = real_of_length(list_get(expert, family_fields[FF_LCONST]), n);
}

static void make_family(SEXP expert, SEXP X, int K, const moe_mcmc_prior *pr,
                        family_info *fi, moe_expert_family *f)
{
  FFI_CHECK(TYPEOF(expert) == VECSXP);
  int type = Rf_asInteger(list_get(expert, family_fields[FF_TYPE]));
  ffn_family_info *info = &fi->ffn;
  switch (type) {
  case FAMILY_GAUSSIAN_LINEAR:
    moe_family_gaussian(f, ncols(X));
    break;
  case FAMILY_BINOMIAL:
    make_glm_info(expert, nrows(X), 1, &fi->glm);
    moe_family_binomial(f, &fi->glm, ncols(X));
    break;
  case FAMILY_POISSON:
    make_glm_info(expert, nrows(X), 0, &fi->glm);
    moe_family_poisson(f, &fi->glm, ncols(X), K);
    break;
  case FAMILY_FFN:
    info->net = make_net(X, list_get(expert, family_fields[FF_H]), list_get(expert, family_fields[FF_ACT]));
    info->lm_steps = Rf_asInteger(list_get(expert, family_fields[FF_LM_STEPS]));
    info->mh_steps = Rf_asInteger(list_get(expert, family_fields[FF_MH_STEPS]));
    FFI_CHECK(info->lm_steps >= 0 && info->mh_steps >= 1);
    memset(&info->prior, 0, sizeof(ffn_prior));
    if (pr) info->prior = ffn_prior_of(pr, Rf_asReal(list_get(expert, family_fields[FF_S_HID2])));
    moe_family_ffn(f, info, K);
    break;
  case FAMILY_STUDENT_T: {
    /* df: NA estimates nu per expert, a positive number fixes it */
    t_family_info *ti = (t_family_info *) R_alloc(1, sizeof(t_family_info));
    double df = Rf_asReal(list_get(expert, family_fields[FF_DF]));
    FFI_CHECK(ISNA(df) || df > 0);
    ti->p = ncols(X);
    ti->K = K;
    ti->estimate = ISNA(df);
    ti->df_fixed = ISNA(df) ? 0.0 : df;
    ti->df_shape = pr ? pr->df_shape : 0.0;
    ti->df_rate = pr ? pr->df_rate : 0.0;
    ti->df = (double *) R_alloc(K, sizeof(double));
    for (int k = 0; k < K; k++) ti->df[k] = ti->df_fixed;
    moe_family_t(f, ti);
    break;
  }
  default:
    FFI_CHECK(0 && "unknown expert family");
  }
}

/* Coefficients of one expert's conjugate prior: p (linear), H + 1 (FFN). */
static int family_prior_npar(SEXP expert, int p)
{
  int type = Rf_asInteger(list_get(expert, family_fields[FF_TYPE]));
  return type == FAMILY_FFN ? Rf_asInteger(list_get(expert, family_fields[FF_H])) + 1 : p;
}

static const double *tau_prior_of(SEXP tau_prior, const moe_gate *g)
{
  if (Rf_isNull(tau_prior)) return NULL;
  const double *tp = real_of_length(tau_prior, 2);
  FFI_CHECK(R_FINITE(tp[0]) && tp[1] > 0 && g->type == GATE_TEMPERATURE);
  return tp;
}

/*
 * One EM run (moe_em_run()) from starting responsibilities R0 (n x K) and
 * starting expert parameters alpha0 (npar x K; zeros for linear experts,
 * random hidden layers for FFN experts). control: double, the MOE_EMCTL_*
 * fields of moe.h (maxit, tol, var_floor, min_size, gate_steps, ridge,
 * sep_bound);
 * tau_prior: NULL or double (m, s). Returns list(alpha, sigma2, W, V (q x G
 * or NULL), tau, loglik, iter, status, trace, resp).
 */
#define EM_TRACE_MAX 100000
SEXP ffi_em(SEXP y, SEXP X, SEXP Z, SEXP wt, SEXP R0, SEXP alpha0,
            SEXP control, SEXP gate, SEXP expert, SEXP tau_prior)
{
  moe_gate g = make_gate(gate);
  int K = g.K;
  moe_data d = make_data(y, X, Z, wt, K);
  FFI_CHECK(TYPEOF(R0) == REALSXP && nrows(R0) == d.n && ncols(R0) == K);
  const double *cv = real_of_length(control, MOE_EMCTL_LEN);
  moe_em_control ctl;
  ctl.maxit = (int) cv[MOE_EMCTL_MAXIT];
  ctl.tol = cv[MOE_EMCTL_TOL];
  ctl.var_floor = cv[MOE_EMCTL_VAR_FLOOR];
  ctl.min_size = cv[MOE_EMCTL_MIN_SIZE];
  ctl.gate_steps = (int) cv[MOE_EMCTL_GATE_STEPS];
  ctl.ridge = cv[MOE_EMCTL_RIDGE];
  ctl.sep_bound = cv[MOE_EMCTL_SEP_BOUND];
  ctl.threads = (int) cv[MOE_EMCTL_THREADS];
  FFI_CHECK(ctl.maxit >= 1 && ctl.tol > 0 && ctl.var_floor > 0 && ctl.sep_bound > 0);
  FFI_CHECK(ctl.gate_steps >= 0 && ctl.ridge >= 0 && ctl.threads >= 1);
  /* the trace keeps at most EM_TRACE_MAX iterations (maxit may be huge) */
  ctl.trace_len = ctl.maxit < EM_TRACE_MAX ? ctl.maxit : EM_TRACE_MAX;
  family_info info;
  moe_expert_family f;
  make_family(expert, X, K, NULL, &info, &f);
  const double *tp = tau_prior_of(tau_prior, &g);
  FFI_CHECK(TYPEOF(alpha0) == REALSXP && XLENGTH(alpha0) == (R_xlen_t) f.npar * K);
  int G = g.type == GATE_HIER ? g.G : 0;

  const char *names[] = {"alpha", "sigma2", "W", "V", "tau", "loglik", "iter",
                         "status", "trace", "resp"};
  SEXP out = PROTECT(named_list(10, names));
  SEXP alpha = PROTECT(alloc_matrix(f.npar, K));
  memcpy(REAL(alpha), REAL(alpha0), sizeof(double) * (size_t) f.npar * K);
  SEXP sigma2 = PROTECT(Rf_allocVector(REALSXP, K));
  SEXP W = PROTECT(alloc_matrix(d.q, K));
  SEXP V = PROTECT(G ? alloc_matrix(d.q, G) : R_NilValue);
  SEXP R = PROTECT(alloc_matrix(d.n, K));
  moe_vpar par = { REAL(alpha), REAL(sigma2), REAL(W), G ? REAL(V) : NULL };
  double *trace = alloc_work(ctl.trace_len);
  double *work = alloc_work(moe_em_work_size(&d, &g, &f));
  int *iwork = (int *) R_alloc(K + 1, sizeof(int));
  int iter = 0;
  double ll = R_NegInf;
  int st = moe_em_run(&d, &g, &f, &par, tp, REAL(R0), &ctl, REAL(R), trace,
                      &iter, &ll, work, iwork);
  int ntr = iter < ctl.trace_len ? iter : ctl.trace_len;
  SEXP tr = PROTECT(Rf_allocVector(REALSXP, ntr));
  for (int t = 0; t < ntr; t++) REAL(tr)[t] = trace[t];
  SET_VECTOR_ELT(out, 0, alpha);
  SET_VECTOR_ELT(out, 1, sigma2);
  SET_VECTOR_ELT(out, 2, W);
  SET_VECTOR_ELT(out, 3, V);
  SET_VECTOR_ELT(out, 4, Rf_ScalarReal(g.tau));
  SET_VECTOR_ELT(out, 5, Rf_ScalarReal(ll));
  SET_VECTOR_ELT(out, 6, Rf_ScalarInteger(iter));
  SET_VECTOR_ELT(out, 7, Rf_ScalarInteger(st));
  SET_VECTOR_ELT(out, 8, tr);
  SET_VECTOR_ELT(out, 9, R);
  UNPROTECT(7);
  return out;
}

/*
 * One chain of the Gibbs sampler (moe_gibbs_run()) on internal-scale data
 * with whole case weights >= 1. Starting values alpha (npar x K), sigma2
 * (K), W (q x K), V (q x G or NULL), tau (1); gate, expert as above;
 * tau_prior NULL or (m, s); prior: the list of make_prior(); control:
 * integer, the MOE_MCTL_* fields of moe.h (warmup, iter, thin, offset,
 * refresh, chain, gate_mode, gate_steps, pg_every, threads, info_obs); state: double, the
 * gate's adaptation state (moe_gibbs_state_size()); xstate: double, the
 * family's state; nbg: the number of Metropolis blocks of the gate.
 * Returns list(alpha = npar x K x S, sigma2 = K x S, W = q x K x S, V =
 * q x G x S or NULL, tau = S, loglik = S, alpha_end, sigma2_end, W_end,
 * V_end, tau_end, state_end, xstate_end, status, done, accept (integer,
 * accepted proposals after warm-up per block: the gate's, then the
 * family's), moves (integer MOE_NACC: the gating move counts of moe.h),
 * pg_every (the schedule after warm-up, see moe_gibbs_draws)).
 */
SEXP ffi_gibbs(SEXP y, SEXP X, SEXP Z, SEXP wt, SEXP alpha, SEXP sigma2,
               SEXP W, SEXP V, SEXP tau, SEXP gate, SEXP expert,
               SEXP tau_prior, SEXP prior, SEXP control, SEXP state,
               SEXP xstate, SEXP nbg)
{
  moe_gate g = make_gate(gate);
  moe_data d = make_data(y, X, Z, wt, g.K);
  int q = d.q, K = d.K;
  FFI_CHECK(Rf_length(sigma2) == K);
  for (int i = 0; i < d.n; i++) FFI_CHECK(d.wt[i] >= 1.0 && d.wt[i] <= INT_MAX);
  g.tau = Rf_asReal(tau);
  FFI_CHECK(R_FINITE(g.tau) && g.tau > 0);
  moe_mcmc_prior pr = make_prior(prior, family_prior_npar(expert, d.p), q);
  family_info info;
  moe_expert_family f;
  make_family(expert, X, K, &pr, &info, &f);
  int np = f.npar, G = g.type == GATE_HIER ? g.G : 0;
  FFI_CHECK(TYPEOF(alpha) == REALSXP && Rf_length(alpha) == np * K);
  FFI_CHECK(TYPEOF(W) == REALSXP && Rf_length(W) == q * K);
  FFI_CHECK(TYPEOF(sigma2) == REALSXP);
  for (int k = 0; k < K; k++) FFI_CHECK(REAL(sigma2)[k] > 0);
  if (G) FFI_CHECK(TYPEOF(V) == REALSXP && Rf_length(V) == q * G);
  const double *tp = tau_prior_of(tau_prior, &g);

  FFI_CHECK(TYPEOF(control) == INTSXP && Rf_length(control) == MOE_MCTL_LEN);
  const int *ci = INTEGER(control);
  moe_mcmc_control ctl = {
    ci[MOE_MCTL_WARMUP], ci[MOE_MCTL_ITER], ci[MOE_MCTL_THIN],
    ci[MOE_MCTL_OFFSET], ci[MOE_MCTL_REFRESH], ci[MOE_MCTL_CHAIN],
    ci[MOE_MCTL_GATE_MODE], ci[MOE_MCTL_GATE_STEPS], ci[MOE_MCTL_PG_EVERY],
    ci[MOE_MCTL_THREADS], ci[MOE_MCTL_INFO_OBS] };
  int nbgate = Rf_asInteger(nbg);
  FFI_CHECK(ctl.warmup >= 0 && ctl.iter >= 0 && ctl.thin >= 1 &&
            ctl.offset >= 0 && ctl.refresh >= 0 && ctl.gate_mode >= 0 &&
            ctl.gate_mode <= 3 && ctl.gate_steps >= 1 && ctl.pg_every >= 0 && ctl.threads >= 1 &&
            ctl.info_obs >= 0 && nbgate >= 0);
  int ns = moe_gibbs_state_size(&g, q, K, tp != NULL);
  FFI_CHECK(TYPEOF(state) == REALSXP && Rf_length(state) == ns);
  FFI_CHECK(TYPEOF(xstate) == REALSXP && Rf_length(xstate) == f.nstate);
  int S = (ctl.offset + ctl.iter) / ctl.thin - ctl.offset / ctl.thin;

  const char *names[] = {"alpha", "sigma2", "W", "V", "tau", "loglik",
                         "alpha_end", "sigma2_end", "W_end", "V_end",
                         "tau_end", "state_end", "xstate_end", "status",
                         "done", "accept", "moves", "pg_every"};
  SEXP out = PROTECT(named_list(18, names));
  SEXP a_dr = PROTECT(Rf_allocVector(REALSXP, (R_xlen_t) np * K * S));
  SEXP s_dr = PROTECT(alloc_matrix(K, S));
  SEXP w_dr = PROTECT(Rf_allocVector(REALSXP, (R_xlen_t) q * K * S));
  SEXP v_dr = PROTECT(G ? Rf_allocVector(REALSXP, (R_xlen_t) q * G * S) : R_NilValue);
  SEXP t_dr = PROTECT(Rf_allocVector(REALSXP, S));
  SEXP ll = PROTECT(Rf_allocVector(REALSXP, S));
  SEXP a_end = PROTECT(Rf_duplicate(alpha));
  SEXP s_end = PROTECT(Rf_duplicate(sigma2));
  SEXP w_end = PROTECT(Rf_duplicate(W));
  SEXP v_end = PROTECT(G ? Rf_duplicate(V) : R_NilValue);
  SEXP st_end = PROTECT(Rf_duplicate(state));
  SEXP xs_end = PROTECT(Rf_duplicate(xstate));
  int nblocks = nbgate + f.naccept;
  SEXP acc = PROTECT(Rf_allocVector(INTSXP, nblocks));
  SEXP moves = PROTECT(Rf_allocVector(INTSXP, MOE_NACC));
  moe_vpar par = { REAL(a_end), REAL(s_end), REAL(w_end), G ? REAL(v_end) : NULL };
  moe_gibbs_draws dr;
  dr.alpha = REAL(a_dr);
  dr.sigma2 = REAL(s_dr);
  dr.W = REAL(w_dr);
  dr.V = G ? REAL(v_dr) : NULL;
  dr.tau = REAL(t_dr);
  dr.loglik = REAL(ll);
  dr.moves = INTEGER(moves);
  dr.accept = INTEGER(acc);
  dr.nblocks = nblocks;
  dr.expert_slot = nbgate;
  dr.nkeep = S;
  dr.done = 0;
  dr.pg_every = ctl.pg_every;
  R_xlen_t nd, ni;
  moe_gibbs_work_size(&d, &g, &f, nblocks, &nd, &ni);
  int st = moe_gibbs_run(&d, &g, &f, &pr, tp, &ctl, &par, REAL(st_end),
                         REAL(xs_end), &dr, alloc_work(nd),
                         (int *) R_alloc(ni, sizeof(int)));
  for (int s = dr.nkeep; s < S; s++) REAL(ll)[s] = NA_REAL;
  SEXP vals[] = {a_dr, s_dr, w_dr, v_dr, t_dr, ll, a_end, s_end, w_end, v_end};
  for (int i = 0; i < 10; i++) SET_VECTOR_ELT(out, i, vals[i]);
  SET_VECTOR_ELT(out, 10, Rf_ScalarReal(g.tau));
  SET_VECTOR_ELT(out, 11, st_end);
  SET_VECTOR_ELT(out, 12, xs_end);
  SET_VECTOR_ELT(out, 13, Rf_ScalarInteger(st));
  SET_VECTOR_ELT(out, 14, Rf_ScalarInteger(dr.done));
  SET_VECTOR_ELT(out, 15, acc);
  SET_VECTOR_ELT(out, 16, moves);
  SET_VECTOR_ELT(out, 17, Rf_ScalarInteger(dr.pg_every));
  UNPROTECT(15);
  return out;
}

/* Log gating probabilities (n x K) of a gate at W (q x K) and, for a
 * hierarchical gate, V (q x G; anything else otherwise). */
SEXP ffi_gate_logprob(SEXP Z, SEXP W, SEXP V, SEXP gate)
{
  FFI_CHECK(TYPEOF(Z) == REALSXP && Rf_isMatrix(Z) && TYPEOF(W) == REALSXP);
  int n = Rf_nrows(Z), q = Rf_ncols(Z);
  moe_gate g = make_gate(gate);
  int K = g.K;
  FFI_CHECK(q >= 1 && Rf_length(W) == q * K);
  moe_data d;
  d.n = n; d.p = 1; d.q = q; d.K = K;
  d.y = d.X = d.wt = NULL;
  d.Z = REAL(Z);
  SEXP out = PROTECT(alloc_matrix(n, K));
  double *eta = alloc_work((R_xlen_t) n * K), *etaV = NULL;
  gate_logits(&d, REAL(W), eta);
  if (g.type == GATE_HIER) {
    FFI_CHECK(TYPEOF(V) == REALSXP && Rf_length(V) == q * g.G);
    moe_data dv = d;
    dv.K = g.G;
    etaV = alloc_work((R_xlen_t) n * g.G);
    gate_logits(&dv, REAL(V), etaV);
  }
  int *active = (int *) R_alloc(K, sizeof(int));
  gate_logprob(&g, n, K, eta, etaV, REAL(out), active);
  UNPROTECT(1);
  return out;
}

/* Means of K FFN experts (n x K); with jac = TRUE and K = 1 also the
 * hidden features F, their derivatives Fp (n x H) and the Jacobian J
 * (n x P) of the mean. */
SEXP ffi_ffn_eval(SEXP Xf, SEXP theta, SEXP H, SEXP act, SEXP jac)
{
  ffn_net net = make_net(Xf, H, act);
  int P = FFN_NPAR(net.D, net.H), n = net.n;
  FFI_CHECK(TYPEOF(theta) == REALSXP && Rf_length(theta) % P == 0);
  int K = Rf_length(theta) / P, j = Rf_asLogical(jac);
  FFI_CHECK(K >= 1 && (j != 1 || K == 1));
  const char *names[] = {"mean", "F", "Fp", "J"};
  SEXP out = PROTECT(named_list(4, names));
  SEXP mu = PROTECT(alloc_matrix(n, K));
  if (j == 1) {
    SEXP F = PROTECT(alloc_matrix(n, net.H));
    SEXP Fp = PROTECT(alloc_matrix(n, net.H));
    SEXP J = PROTECT(alloc_matrix(n, P));
    ffn_forward(&net, REAL(theta), REAL(mu), REAL(F), REAL(Fp));
    ffn_jacobian(&net, REAL(theta), REAL(F), REAL(Fp), REAL(J));
    SET_VECTOR_ELT(out, 1, F);
    SET_VECTOR_ELT(out, 2, Fp);
    SET_VECTOR_ELT(out, 3, J);
    UNPROTECT(3);
  } else {
    ffn_means(&net, K, REAL(theta), REAL(mu),
              alloc_work(2 * (R_xlen_t) n * net.H));
  }
  SET_VECTOR_ELT(out, 0, mu);
  UNPROTECT(2);
  return out;
}

/* One M-step of one FFN expert with observation weights v (n);
 * control: double (steps, var_floor, min_size). */
SEXP ffi_ffn_mstep(SEXP y, SEXP Xf, SEXP v, SEXP theta, SEXP H, SEXP act,
                   SEXP control)
{
  ffn_net net = make_net(Xf, H, act);
  int P = FFN_NPAR(net.D, net.H);
  FFI_CHECK(TYPEOF(y) == REALSXP && Rf_length(y) == net.n);
  FFI_CHECK(TYPEOF(v) == REALSXP && Rf_length(v) == net.n);
  FFI_CHECK(TYPEOF(theta) == REALSXP && Rf_length(theta) == P);
  const double *ctl = real_of_length(control, 3);
  const char *names[] = {"theta", "sigma2", "mean", "status"};
  SEXP out = PROTECT(named_list(4, names));
  SEXP th = PROTECT(Rf_duplicate(theta));
  SEXP mu = PROTECT(Rf_allocVector(REALSXP, net.n));
  double s2 = NA_REAL, lambda = 1e-3;
  int st = ffn_mstep(&net, REAL(y), REAL(v), REAL(th), &s2, REAL(mu),
                     (int) ctl[0], ctl[1], ctl[2], &lambda,
                     alloc_work(ffn_mstep_work_size(net.n, net.D, net.H)));
  SET_VECTOR_ELT(out, 0, th);
  SET_VECTOR_ELT(out, 1, Rf_ScalarReal(s2));
  SET_VECTOR_ELT(out, 2, mu);
  SET_VECTOR_ELT(out, 3, Rf_ScalarInteger(st));
  UNPROTECT(3);
  return out;
}

/* The prior of one FFN expert (ffn_prior) from list(m_a, Va_inv, Va_inv_m,
 * m_Va_inv_m, c0, C0, s_hid2) with H + 1 output coefficients. */
static ffn_prior make_ffn_prior(SEXP prior, int H)
{
  moe_mcmc_prior pr;
  make_expert_prior(prior, H + 1, &pr);
  return ffn_prior_of(&pr, Rf_asReal(list_get(prior, "s_hid2")));
}

/* `iter` successive Metropolis-within-Gibbs updates of one FFN expert with
 * observation weights v (n) from theta (P) and sigma2; returns the draws
 * ((P + 1) x iter: theta then sigma2) and the number of accepted proposals.
 * prior: list(m_a, Va_inv, Va_inv_m, m_Va_inv_m, c0, C0, s_hid2). */
SEXP ffi_ffn_mh(SEXP y, SEXP Xf, SEXP v, SEXP theta, SEXP sigma2, SEXP H,
                SEXP act, SEXP prior, SEXP scale, SEXP iter)
{
  ffn_net net = make_net(Xf, H, act);
  int P = FFN_NPAR(net.D, net.H), S = Rf_asInteger(iter);
  FFI_CHECK(TYPEOF(y) == REALSXP && Rf_length(y) == net.n);
  FFI_CHECK(TYPEOF(v) == REALSXP && Rf_length(v) == net.n);
  FFI_CHECK(TYPEOF(theta) == REALSXP && Rf_length(theta) == P);
  FFI_CHECK(S >= 1 && TYPEOF(prior) == VECSXP);
  ffn_prior pr = make_ffn_prior(prior, net.H);
  double ls = log(Rf_asReal(scale)), s2 = Rf_asReal(sigma2);
  FFI_CHECK(R_FINITE(ls) && s2 > 0);
  const char *names[] = {"draws", "accepted", "status"};
  SEXP out = PROTECT(named_list(3, names));
  SEXP dr = PROTECT(alloc_matrix(P + 1, S));
  double *th = alloc_work(P), *work = alloc_work(ffn_mh_work_size(net.n, net.D,
                                                                  net.H));
  memcpy(th, REAL(theta), sizeof(double) * (size_t) P);
  int acc = 0, st = MOE_OK;
  GetRNGstate();
  for (int s = 0; s < S; s++) {
    int a = 0;
    st |= ffn_mh_expert(&net, REAL(y), REAL(v), &pr, th, &s2, 1, &ls, NULL, &a,
                        work);
    acc += a;
    memcpy(REAL(dr) + (R_xlen_t) s * (P + 1), th, sizeof(double) * (size_t) P);
    REAL(dr)[(R_xlen_t) s * (P + 1) + P] = s2;
    if (s % 100 == 0) R_CheckUserInterrupt();
  }
  PutRNGstate();
  SET_VECTOR_ELT(out, 0, dr);
  SET_VECTOR_ELT(out, 1, Rf_ScalarInteger(acc));
  SET_VECTOR_ELT(out, 2, Rf_ScalarInteger(st));
  UNPROTECT(2);
  return out;
}

static ls_model make_ls(SEXP y, SEXP X, SEXP Z, SEXP wt, SEXP Xf, SEXP K,
                        SEXP type, SEXP H, SEXP act)
{
  ls_model m;
  m.d = make_data(y, X, Z, wt, Rf_asInteger(K));
  m.type = Rf_asInteger(type);
  FFI_CHECK(m.type == LS_LINEAR || m.type == LS_FFN);
  if (m.type == LS_FFN) {
    m.net = make_net(Xf, H, act);
    FFI_CHECK(m.net.n == m.d.n);
  } else {
    m.net.n = m.d.n;
    m.net.D = 0;
    m.net.H = 0;
    m.net.act = 0;
    m.net.X = NULL;
  }
  m.work = alloc_work(ls_eval_work_size(&m));
  return m;
}

/* The regression function f (n) of the least-squares form at theta, and
 * its Jacobian (n x P) when jac is TRUE. type: 0 linear, 1 FFN experts. */
SEXP ffi_ls_eval(SEXP y, SEXP X, SEXP Z, SEXP wt, SEXP Xf, SEXP theta, SEXP K,
                 SEXP type, SEXP H, SEXP act, SEXP jac)
{
  ls_model m = make_ls(y, X, Z, wt, Xf, K, type, H, act);
  int P = ls_npar(&m), n = m.d.n;
  FFI_CHECK(TYPEOF(theta) == REALSXP && Rf_length(theta) == P);
  const char *names[] = {"f", "J"};
  SEXP out = PROTECT(named_list(2, names));
  SEXP f = PROTECT(Rf_allocVector(REALSXP, n));
  SEXP J = R_NilValue;
  if (Rf_asLogical(jac) == 1) J = alloc_matrix(n, P);
  PROTECT(J);
  ls_model_eval(&m, REAL(theta), REAL(f), J == R_NilValue ? NULL : REAL(J));
  SET_VECTOR_ELT(out, 0, f);
  SET_VECTOR_ELT(out, 1, J);
  UNPROTECT(3);
  return out;
}

/* Least-squares fit from theta; pen: P ridge weights (or NULL); control:
 * double (maxit, tol). */
SEXP ffi_ls(SEXP y, SEXP X, SEXP Z, SEXP wt, SEXP Xf, SEXP theta, SEXP K,
            SEXP type, SEXP H, SEXP act, SEXP pen, SEXP control)
{
  ls_model m = make_ls(y, X, Z, wt, Xf, K, type, H, act);
  int P = ls_npar(&m);
  FFI_CHECK(TYPEOF(theta) == REALSXP && Rf_length(theta) == P);
  const double *pv = pen == R_NilValue ? NULL : real_of_length(pen, P);
  const double *c = real_of_length(control, 2);
  FFI_CHECK(c[0] >= 1 && c[1] >= 0);
  const char *names[] = {"theta", "rss", "iter", "status"};
  SEXP out = PROTECT(named_list(4, names));
  SEXP th = PROTECT(Rf_duplicate(theta));
  double rss = NA_REAL;
  int iter = 0;
  int st = ls_run(&m, REAL(th), pv, (int) c[0], c[1], &rss, &iter,
                  alloc_work(ls_work_size(&m) - ls_eval_work_size(&m)));
  SET_VECTOR_ELT(out, 0, th);
  SET_VECTOR_ELT(out, 1, Rf_ScalarReal(rss));
  SET_VECTOR_ELT(out, 2, Rf_ScalarInteger(iter));
  SET_VECTOR_ELT(out, 3, Rf_ScalarInteger(st));
  UNPROTECT(2);
  return out;
}

/* Voronoi loss for strongly identifiable experts of S parameter sets:
 * atoms double L x K x S (L = 1 + d + m), truth L x kstar; mode 0..3 (see
 * loss_strong.c); t1 (d doubles, mode 3) or NULL. Returns list(loss (S),
 * max_cell (S), shift ((d + 1) x S)). */
SEXP ffi_voronoi_strong(SEXP atoms, SEXP K, SEXP truth, SEXP d, SEXP mode,
                        SEXP t1)
{
  int Kf = Rf_asInteger(K), dd = Rf_asInteger(d), md = Rf_asInteger(mode);
  FFI_CHECK(TYPEOF(atoms) == REALSXP && TYPEOF(truth) == REALSXP);
  FFI_CHECK(Rf_isMatrix(truth) && Kf >= 1 && dd >= 0 && md >= 0 && md <= 3);
  int L = Rf_nrows(truth), kstar = Rf_ncols(truth), m = L - 1 - dd;
  FFI_CHECK(m >= 1 && kstar >= 1 && XLENGTH(atoms) % ((R_xlen_t) L * Kf) == 0);
  R_xlen_t S = XLENGTH(atoms) / ((R_xlen_t) L * Kf);
  const double *t1v = NULL;
  if (md == 3) t1v = real_of_length(t1, dd);
  const char *names[] = {"loss", "max_cell", "shift"};
  SEXP out = PROTECT(named_list(3, names));
  SEXP loss = PROTECT(Rf_allocVector(REALSXP, S));
  SEXP mc = PROTECT(Rf_allocVector(INTSXP, S));
  SEXP sh = PROTECT(Rf_allocMatrix(REALSXP, dd + 1, (int) S));
  double *work = alloc_work(voronoi_strong_work_size(dd, m, Kf, kstar));
  int *iwork = (int *) R_alloc(Kf, sizeof(int));
  for (R_xlen_t s = 0; s < S; s++) {
    voronoi_strong(dd, m, Kf, REAL(atoms) + s * L * Kf, kstar, REAL(truth), md,
                   t1v, REAL(loss) + s, INTEGER(mc) + s,
                   REAL(sh) + s * (dd + 1), work, iwork);
    if (s % 1000 == 999) R_CheckUserInterrupt();
  }
  SET_VECTOR_ELT(out, 0, loss);
  SET_VECTOR_ELT(out, 1, mc);
  SET_VECTOR_ELT(out, 2, sh);
  UNPROTECT(4);
  return out;
}

/* ---- the R <-> C code tables ----
 * Every code or layout R and C share: codes as named integer vectors (names
 * as the R side spells them), list fields as character vectors;
 * test-tables.R compares them with the R side, so neither can drift alone. */
static SEXP named_ints(int n, const char **names, const int *vals)
{
  SEXP v = PROTECT(Rf_allocVector(INTSXP, n));
  SEXP nm = PROTECT(Rf_allocVector(STRSXP, n));
  for (int i = 0; i < n; i++) {
    INTEGER(v)[i] = vals[i];
    SET_STRING_ELT(nm, i, Rf_mkChar(names[i]));
  }
  Rf_setAttrib(v, R_NamesSymbol, nm);
  UNPROTECT(2);
  return v;
}

static SEXP strings(int n, const char **v)
{
  SEXP out = PROTECT(Rf_allocVector(STRSXP, n));
  for (int i = 0; i < n; i++) SET_STRING_ELT(out, i, Rf_mkChar(v[i]));
  UNPROTECT(1);
  return out;
}

SEXP ffi_code_tables(void)
{
  const char *tabs[] = {"status", "gate", "family", "activation", "em_control",
                        "mcmc_control", "moves", "gate_mode", "gate_fields",
                        "family_fields", "prior_fields"};
  SEXP out = PROTECT(named_list(11, tabs));
  const char *sn[] = {"maxit", "empty", "var_floor", "not_pd", "nonfinite",
                      "gate_step", "decrease", "separation"};
  const int sv[] = {MOE_MAXIT, MOE_EMPTY, MOE_VAR_FLOOR, MOE_NOT_PD,
                    MOE_NONFINITE, MOE_GATE_STEP, MOE_DECREASE, MOE_SEPARATION};
  SET_VECTOR_ELT(out, 0, named_ints(8, sn, sv));
  const char *gn[] = {"softmax", "topk", "temperature", "hierarchical"};
  const int gv[] = {GATE_SOFTMAX, GATE_TOPK, GATE_TEMPERATURE, GATE_HIER};
  SET_VECTOR_ELT(out, 1, named_ints(GATE_NTYPES, gn, gv));
  const char *fn[] = {"linear", "ffn", "binomial", "poisson", "t"};
  const int fv[] = {FAMILY_GAUSSIAN_LINEAR, FAMILY_FFN, FAMILY_BINOMIAL,
                    FAMILY_POISSON, FAMILY_STUDENT_T};
  SET_VECTOR_ELT(out, 2, named_ints(FAMILY_NTYPES, fn, fv));
  const char *an[] = {"tanh", "sigmoid", "gelu"};
  const int av[] = {FFN_TANH, FFN_SIGMOID, FFN_GELU};
  SET_VECTOR_ELT(out, 3, named_ints(3, an, av));
  const char *en[] = {"maxit", "tol", "var_floor", "min_size", "gate_steps",
                      "ridge", "sep_bound", "threads"};
  const int ev[] = {MOE_EMCTL_MAXIT, MOE_EMCTL_TOL, MOE_EMCTL_VAR_FLOOR,
                    MOE_EMCTL_MIN_SIZE, MOE_EMCTL_GATE_STEPS, MOE_EMCTL_RIDGE,
                    MOE_EMCTL_SEP_BOUND, MOE_EMCTL_THREADS};
  SET_VECTOR_ELT(out, 4, named_ints(MOE_EMCTL_LEN, en, ev));
  const char *mn[] = {"warmup", "iter", "thin", "offset", "refresh", "chain",
                      "gate_mode", "gate_steps", "pg_every", "threads", "info_obs"};
  const int mv[] = {MOE_MCTL_WARMUP, MOE_MCTL_ITER, MOE_MCTL_THIN,
                    MOE_MCTL_OFFSET, MOE_MCTL_REFRESH, MOE_MCTL_CHAIN,
                    MOE_MCTL_GATE_MODE, MOE_MCTL_GATE_STEPS, MOE_MCTL_PG_EVERY,
                    MOE_MCTL_THREADS, MOE_MCTL_INFO_OBS};
  SET_VECTOR_ELT(out, 5, named_ints(MOE_MCTL_LEN, mn, mv));
  const char *vn[] = {"accepted_warmup", "proposed_warmup", "accepted",
                      "proposed", "pg_warmup", "pg"};
  const int vv[] = {MOE_ACC_WARMUP, MOE_PROP_WARMUP, MOE_ACC_SAMPLING,
                    MOE_PROP_SAMPLING, MOE_PG_WARMUP, MOE_PG_SAMPLING};
  SET_VECTOR_ELT(out, 6, named_ints(MOE_NACC, vn, vv));
  const char *on[] = {"pg", "pg+mh", "mh", "collapsed"};
  const int ov[] = {0, 1, 2, 3};
  SET_VECTOR_ELT(out, 7, named_ints(4, on, ov));
  SET_VECTOR_ELT(out, 8, strings(GF_N, gate_fields));
  SET_VECTOR_ELT(out, 9, strings(FF_N, family_fields));
  SET_VECTOR_ELT(out, 10, strings(PF_N, prior_fields));
  UNPROTECT(1);
  return out;
}
