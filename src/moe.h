/*
 * moe.h: shared types and kernel prototypes of bayesmoe's C core.
 *
 * Conventions used by every kernel:
 *  - matrices are column-major doubles, as R stores them: element (i, j) of an
 *    n x m matrix M is M[i + (R_xlen_t) j * n];
 *  - n observations, p expert covariates (columns of X), q gating covariates
 *    (columns of Z), K experts; expert K (index K - 1) is the gating reference,
 *    so column K - 1 of the gating matrix W is zero and stays zero;
 *  - kernels take plain C types and the structs below, never SEXPs, and report
 *    expected numerical outcomes through the bit flags of moe_status instead of
 *    calling Rf_error();
 *  - scratch memory comes from R_alloc() in src/ffi.c, so an R error or a user
 *    interrupt cannot leak it.
 */
#ifndef BAYESMOE_MOE_H
#define BAYESMOE_MOE_H

#define R_NO_REMAP
#define USE_FC_LEN_T
#include <R.h>
#include <Rinternals.h>
#include <Rmath.h>
#include <R_ext/BLAS.h>
#include <R_ext/Lapack.h>
#ifndef FCONE
#define FCONE
#endif

/* Status bit flags returned by kernels; R turns them into classed conditions
 * (see R/status.R). Keep the two lists in sync. */
typedef enum {
  MOE_OK = 0,
  MOE_MAXIT = 1,        /* iteration limit reached before convergence */
  MOE_EMPTY = 2,        /* an expert's effective size fell below the minimum */
  MOE_VAR_FLOOR = 4,    /* an expert's variance hit the floor (collapse) */
  MOE_NOT_PD = 8,       /* a cross-product matrix needed a ridge to factor */
  MOE_NONFINITE = 16,   /* a non-finite log-likelihood or parameter appeared */
  MOE_GATE_STEP = 32,   /* the gating Newton step found no ascent */
  MOE_DECREASE = 64     /* the EM log-likelihood decreased (beyond rounding) */
} moe_status;

/* Gating and expert families. Extended by the variants (top-k, temperature,
 * hierarchical gates; feed-forward experts). */
typedef enum { GATE_SOFTMAX = 0, GATE_TOPK = 1, GATE_TEMPERATURE = 2,
               GATE_HIER = 3 } moe_gate_type;

typedef struct {
  moe_gate_type type;
  int topk;          /* GATE_TOPK: number of experts kept at each z */
  double tau;        /* GATE_TEMPERATURE: logits are divided by tau */
  int G;             /* GATE_HIER: number of groups */
  const int *group;  /* GATE_HIER: group (0-based) of each expert, length K */
} moe_gate;

#define LOG_2PI 1.837877066409345483560659472811

/* Read-only view of the data. */
typedef struct {
  int n, p, q, K;
  const double *y;   /* n */
  const double *X;   /* n x p expert design */
  const double *Z;   /* n x q gating design */
  const double *wt;  /* n non-negative case weights */
} moe_data;

/* Parameters of a softmax-gated linear-Gaussian MoE. */
typedef struct {
  double *alpha;     /* p x K expert coefficients */
  double *sigma2;    /* K expert variances */
  double *W;         /* q x K gating coefficients, column K - 1 zero */
} moe_par;

/* EM controls (see moe_em_control() in R). */
typedef struct {
  int maxit;
  double tol;        /* relative log-likelihood change for convergence */
  double var_floor;  /* lower bound of every expert variance */
  double min_size;   /* minimum effective number of observations of an expert */
  int gate_steps;    /* Newton steps on the gating per M-step */
  double ridge;      /* ridge added to the gating Hessian (penalised ML) */
  int trace_len;     /* (harden) length of the trace buffer: only the first
                        trace_len log-likelihoods are recorded, so that a
                        huge maxit does not allocate maxit doubles */
} moe_em_control;

/* ---- linalg.c ---- */
double moe_lse(const double *v, int m);
int chol_solve(int m, double *A, double *b, int nrhs, double *work);
int chol_factor_ridge(int m, double *A, double *Acopy, double ridge0);
void chol_solve_factored(int m, const double *L, double *b, int nrhs);
void chol_inverse(int m, double *L);
double log_det_chol(int m, const double *L);
void mvn_draw_chol(int m, const double *L, const double *mean, double *out,
                   double *work);

/* ---- gating.c ---- */
void gate_logits(const moe_data *d, const double *W, double *eta);
void gate_logprob_softmax(int n, int K, const double *eta, double *logg);
double gate_expected_loglik(const moe_data *d, const double *R,
                            const double *logg);
int gate_newton_step(const moe_data *d, const double *R, double *W,
                     double *eta, double *logg, double ridge, double *work);

/* ---- experts.c ---- */
void expert_means(const moe_data *d, const double *alpha, double *mu);
double log_dnorm(double y, double mu, double sigma2);
int expert_wls(const moe_data *d, const double *R, int k, double *alpha_k,
               double *sigma2_k, double *mu_k, const moe_em_control *ctl,
               double *work);

/* ---- em.c ---- */
double moe_estep(const moe_data *d, const double *logg, const double *mu,
                 const double *sigma2, double *R, double *ll_i, double *kwork);
double moe_loglik(const moe_data *d, const moe_par *par, double *work);
int moe_em_run(const moe_data *d, moe_par *par, const double *R0,
               const moe_em_control *ctl, double *R, double *trace,
               int *iter, double *loglik, double *work);
R_xlen_t moe_em_work_size(const moe_data *d);

/* ---- loss.c (Voronoi and density losses; owner: losses/harness) ----
 * One parameter set with d covariates is a (2d + 3) x K column-major matrix
 * of atoms; column k = [beta0, beta1 (d), a (d), b, sigma2]. */
#define LOSS_ATOM_LEN(d) (2 * (d) + 3)
#define LOSS_BETA0 0
#define LOSS_BETA1 1
#define LOSS_A(d) (1 + (d))
#define LOSS_B(d) (1 + 2 * (d))
#define LOSS_SIGMA2(d) (2 + 2 * (d))
enum { LOSS_NORM_EUCLIDEAN = 0, LOSS_NORM_L1 = 1 };
enum { LOSS_HELLINGER = 0, LOSS_TV = 1, LOSS_HELLINGER_JOINT = 2 };
typedef struct {
  int d;               /* covariates */
  int kstar;           /* number of true atoms */
  const double *truth; /* (2d + 3) x kstar true atoms */
  int over;            /* 0: D1, 1: D2 */
  int norm;            /* LOSS_NORM_*: distance that assigns cells */
  const double *rbar;  /* rbar[M - 1]: D2 exponent for cells of M atoms */
  int nrbar;
} voronoi_spec;
typedef struct {
  int *cell;           /* K: cell (0-based true atom) of each fitted atom */
  int *count;          /* kstar: atoms per cell */
  double *wsum;        /* kstar: fitted weight per cell */
  double *tw;          /* kstar: true weights */
  double *shifted;     /* (2d + 3) x K: translated atoms */
  double *tvec;        /* d + 1: a translation (t0, t1) */
  double *t1;          /* d: a candidate gating-slope shift */
  double *tbest;       /* d + 1 */
} voronoi_work;
void voronoi_assign(int d, int K, const double *atoms, int kstar,
                    const double *truth, int norm, int *cell);
void voronoi_param_dist(int d, const double *u, const double *v, double *out);
void voronoi_translate(int d, int K, const double *atoms, const double *t,
                       double *out);
double voronoi_loss(const voronoi_spec *sp, int K, const double *atoms,
                    int *max_cell, voronoi_work *w);
double voronoi_loss_best(const voronoi_spec *sp, int K, const double *atoms,
                         double *shift, int *max_cell, voronoi_work *w);
double voronoi_loss_shift(const voronoi_spec *sp, int K, const double *atoms,
                          const double *t1, double *shift, int *max_cell,
                          voronoi_work *w);
double voronoi_loss_translated(const voronoi_spec *sp, int K,
                               const double *atoms, double *shift,
                               int *max_cell, voronoi_work *w);
R_xlen_t density_work_size(int K, int kstar);
double density_distance(int d, int K, const double *atoms, int kstar,
                        const double *truth, int nx, const double *x,
                        int type, int min_points, double *work);
/* ---- assign.c: the linear assignment problem (Hungarian, O(K^3)) ---- */
R_xlen_t lap_work_size(int K);
R_xlen_t lap_iwork_size(int K);
void lap_solve(int K, const double *C, int *perm, double *u, double *v,
               double *work, int *iwork);
/* ---- polyagamma.c ---- */
double rpg1(double z);          /* one PG(1, z) draw; caller holds GetRNGstate() */
/* PG(b, z) for an integer b >= 1: the exact sum of b PG(1, z) draws for
 * b <= PG_EXACT_MAX, an accurate approximation whose cost does not grow with
 * b above (series with a moment-matched tail; the normal law for b >=
 * PG_NORMAL_MIN). Caller holds GetRNGstate(). */
#define PG_EXACT_MAX 20
#define PG_NORMAL_MIN 268435456   /* 2^28 */
double rpg(int b, double z);
/* ---- gating.c: the Newton direction shared by gate_newton_step() and the
 * fused EM of em.c (bench helper) ---- */
int gate_newton_direction(int q, int K, const double *grad, const double *hess,
                          const double *W, double ridge, double *g,
                          double *delta, double *work);

/* ---- mcmc.c: the Gibbs sampler (one chain per call) ---- */

/* Prior on the internal (centred and scaled) scale; see moe_prior() in R. */
typedef struct {
  const double *m_a;      /* p: prior mean of every a_k */
  const double *Va_inv;   /* p x p: inverse of V_a, a_k | s2_k ~ N(m_a, s2_k V_a) */
  const double *Va_inv_m; /* p: Va_inv m_a */
  double m_Va_inv_m;      /* m_a' Va_inv m_a */
  double c0, C0;          /* sigma2_k ~ InvGamma(shape c0, scale C0) */
  const double *s_w2;     /* q: prior variances of the gating coefficients */
  int exchangeable;       /* 1: u_k iid N(0, diag(s_w2)), w_k = u_k - u_K;
                             0: w_k iid N(0, diag(s_w2)), k < K */
} moe_mcmc_prior;

/* What one call runs: `warmup` discarded sweeps, then `iter` sweeps of which
 * those with (offset + t) % thin == 0, t = 1..iter, are kept. `offset` is
 * the number of post-warm-up sweeps done by earlier calls, so a continued
 * chain keeps the thinning phase of one long run. */
typedef struct {
  int warmup, iter, thin, offset;
  int refresh;            /* print progress every `refresh` sweeps; 0: never */
  int chain;              /* chain number, for progress messages */
  int gate_mode;          /* gating update: 0 Polya-Gamma draws, 1 those and
                             a joint Metropolis-Hastings refresh, 2 the
                             refresh only, 3 the collapsed update */
  int gate_steps;         /* mode 3: Metropolis-Hastings steps per sweep */
  int pg_every;           /* modes 2 and 3: a Polya-Gamma draw of the gating
                             on every pg_every-th sweep after warm-up (0:
                             never), and on every warm-up sweep once
                             MOE_STALL_SWEEPS sweeps in a row accepted no
                             gating Metropolis-Hastings move; see
                             MOE_STALL_RATE */
} moe_mcmc_control;

/* Warm-up sweeps in a row without an accepted gating Metropolis-Hastings
 * move after which every warm-up sweep also makes a Polya-Gamma draw. */
#define MOE_STALL_SWEEPS 10
/* Acceptance rate of those moves in the second half of warm-up below which
 * every sweep after warm-up makes the Polya-Gamma draw (moe_mcmc_run()). */
#define MOE_STALL_RATE 0.05

/* Gating move counts of one chain (moe_mcmc_draws.accept), by index. */
enum {
  MOE_ACC_WARMUP = 0,     /* accepted Metropolis-Hastings moves, warm-up */
  MOE_PROP_WARMUP,        /* proposals made, warm-up */
  MOE_ACC_SAMPLING,       /* accepted, after warm-up */
  MOE_PROP_SAMPLING,      /* proposals, after warm-up */
  MOE_PG_WARMUP,          /* sweeps with a Polya-Gamma draw, warm-up */
  MOE_PG_SAMPLING,        /* the same after warm-up */
  MOE_NACC                /* length of the count vector */
};

/* Kept draws (internal scale), filled by moe_mcmc_run(). */
typedef struct {
  double *alpha;          /* p x K x nkeep */
  double *sigma2;         /* K x nkeep */
  double *W;              /* q x K x nkeep (reference column zero) */
  double *loglik;         /* nkeep: sum_i wt_i log p(y_i | x_i, z_i, draw) */
  int *accept;            /* MOE_NACC gating move counts (enum above) */
  int nkeep;              /* capacity; on return the number filled */
  int done;               /* sweeps done in this call */
  int pg_every;           /* on return: the schedule of Polya-Gamma draws
                             after warm-up (ctl->pg_every, or 1 when the
                             warm-up found the Metropolis-Hastings moves
                             stuck); a continuation passes it back */
} moe_mcmc_draws;

/* Sampler work space: carved by moe_mcmc_work_init() out of blocks of
 * moe_mcmc_work_size() doubles and ints allocated by the caller. */
typedef struct {
  double *Xr, *Zr;        /* p x n and q x n: X and Z by rows */
  int *wi;                /* n integer case weights (frequency weights) */
  double *eta;            /* K x n gating logits, observation-major */
  int *N;                 /* K x n allocation counts (sum_k N_ki = wi_i) */
  double *XtX, *Xty, *yty, *nk; /* per expert: p x p (lower), p, 1, 1 */
  double *lk, *cst, *hp;  /* K each */
  double *A, *Asave, *b, *m, *z, *zero; /* expert block: p x p, p x p, p, p, p, p */
  double *P, *Psave, *r, *mw, *zq, *zeroq; /* gating block: q x q, q x q, q, q, q, q */
  /* joint gating Metropolis-Hastings refresh, m = q (K - 1): */
  double *H0, *H1, *Hsave; /* m x m each */
  double *g, *mu, *tm;    /* m, m, m + 1 */
  double *Ws;             /* q x K proposal (reference column zero) */
  /* collapsed gating update: */
  double *F, *rA, *rB, *pA, *pB; /* K x n each: scaled expert densities;
                             responsibilities and gating probabilities at
                             the current point (A) and the proposal (B) */
  double *lmx;            /* n: log of the largest expert density */
  double *zz;             /* q (q + 1) / 2 */
  double *hg;             /* K (K - 1) / 2 packed q x q blocks */
  double *g1, *mu1;       /* m each: gradient and Newton point at the proposal */
} moe_mcmc_work;

void moe_mcmc_work_size(const moe_data *d, R_xlen_t *ndouble, R_xlen_t *nint);
void moe_mcmc_work_init(const moe_data *d, double *dbl, int *ints,
                        moe_mcmc_work *w);
int moe_mcmc_run(const moe_data *d, const moe_mcmc_prior *pr,
                 const moe_mcmc_control *ctl, moe_par *par,
                 moe_mcmc_draws *out, moe_mcmc_work *w);

/* ---- mtm.c (choosing the number of experts): Merge-Truncate-Merge of one
 * atom set; see the head of mtm.c ---- */
int mtm_one(int d, int K, const double *theta, const double *w,
            const int *order, double omega, double thr, double r,
            double *out_theta, double *out_w, int *assign, int *iwork,
            double *qw);

/* ---- marglik.c (marginal likelihood by bridge sampling): the symmetrised
 * complete-data mixture importance density; see the head of marglik.c ---- */
double log_permanent(int K, const double *L, double *f);
void mix_logdens(int N, int K, int p, int q, int M, const double *a,
                 const double *s2, const double *d, const double *em,
                 const double *E, const double *ec, const double *eC,
                 const double *ecst, const double *gm, const double *G,
                 const double *gcst, const double *cst, double *out,
                 double *L, double *f, double *lm, double *u);
/* ---- hardening: numerical safety bounds ---- */
/* Range of every expert variance on the internal scale (in units of the
 * variance of the response) allowed by the Gibbs sampler: draws outside are
 * rejected (mcmc.c, update_experts), so squares, inverses and logs of the
 * variances and the expert coefficients drawn with them stay finite. Keep
 * in sync with s2_bounds in R/prior.R. */
#define MOE_S2_MIN 1e-100
#define MOE_S2_MAX 1e100

/* ---- ffn.c and ls.c: feed-forward network experts and the least-squares
 * (regression) form of the mixture of experts (ffn helper) ---- */

typedef enum { FFN_TANH = 0, FFN_SIGMOID = 1, FFN_GELU = 2 } ffn_activation;

/* Number of parameters of one FFN expert with D inputs and H hidden units:
 * A (H x D), d (H), c (H), e. */
#define FFN_NPAR(D, H) ((H) * (D) + 2 * (H) + 1)

/* Read-only view of the network inputs. */
typedef struct {
  int n, D, H;
  int act;           /* ffn_activation */
  const double *X;   /* n x D inputs: the non-intercept columns of X */
} ffn_net;

/* Prior of one FFN expert on the internal scale: (A, d) ~ N(0, s_hid2 I);
 * (c, e) | sigma2 ~ N(m_a, sigma2 V_a) and sigma2 ~ InvGamma(c0, C0), the
 * conjugate expert prior of moe_prior() with H + 1 coefficients. */
typedef struct {
  const double *m_a, *Va_inv, *Va_inv_m; /* H + 1, (H + 1)^2, H + 1 */
  double m_Va_inv_m, c0, C0;
  double s_hid2;
} ffn_prior;

/* Model function of a least-squares fit: f (n) and, when J is not NULL,
 * its Jacobian d f / d theta (n x P). */
typedef void (*moe_lm_fn)(void *ctx, const double *theta, double *f, double *J);

typedef enum { LS_LINEAR = 0, LS_FFN = 1 } ls_expert_type;

typedef struct {
  moe_data d;        /* y, X, Z, wt (least-squares weights), K */
  int type;          /* ls_expert_type */
  ffn_net net;       /* FFN experts: the network inputs */
  double *work;      /* ls_eval_work_size() doubles of scratch */
} ls_model;

void ffn_forward(const ffn_net *net, const double *theta, double *mu,
                 double *F, double *Fp);
void ffn_jacobian(const ffn_net *net, const double *theta, const double *F,
                  const double *Fp, double *J);
void ffn_means(const ffn_net *net, int K, const double *theta, double *mu,
               double *work);
int moe_lm(int n, int P, const double *y, const double *v, const double *pen,
           moe_lm_fn fn, void *ctx, double *theta, int maxit, double tol,
           double *lambda, double *S, int *iter, double *work);
R_xlen_t ffn_mstep_work_size(int n, int D, int H);
int ffn_mstep(const ffn_net *net, const double *y, const double *v,
              double *theta, double *sigma2, double *mu, int steps,
              double var_floor, double min_size, double *lambda, double *work);
double ffn_loglik(const moe_data *d, const ffn_net *net, const double *theta,
                  const double *sigma2, const double *W, double *work);
R_xlen_t ffn_mh_work_size(int n, int D, int H);
int ffn_mh_expert(const ffn_net *net, const double *y, const double *v,
                  const ffn_prior *pr, double *theta, double *sigma2,
                  int steps, double *log_scale, double *adapt_count,
                  int *accepted, double *work);

int ls_npar(const ls_model *m);
R_xlen_t ls_eval_work_size(const ls_model *m);
void ls_model_eval(void *ctx, const double *theta, double *f, double *J);
R_xlen_t ls_work_size(const ls_model *m);
int ls_run(ls_model *m, double *theta, const double *pen, int maxit,
           double tol, double *rss, int *iter, double *work);
/* The FFN expert family of the generic variant paths (moe_expert_family,
 * defined in the variants block below): ffn_family_init() fills the table
 * from `info`, which must outlive it. State per chain: K log random-walk
 * scales of the hidden layers, then K counts of adaptation steps. */
typedef struct {
  ffn_net net;
  int lm_steps;      /* Levenberg-Marquardt steps per EM M-step */
  int mh_steps;      /* Metropolis steps per expert and sweep */
  ffn_prior prior;   /* prior of the Metropolis-within-Gibbs update */
} ffn_family_info;

struct moe_expert_family;
void ffn_family_init(struct moe_expert_family *f, const ffn_family_info *info,
                     int K);
R_xlen_t ffn_em_work_size(const moe_data *d, const struct moe_expert_family *f);
int ffn_em_run(const moe_data *d, const struct moe_expert_family *f,
               double *theta, double *sigma2, double *W, const double *R0,
               const moe_em_control *ctl, double *R, double *trace, int *iter,
               double *loglik, double *work);
void ffn_gibbs_work_size(const moe_data *d, const struct moe_expert_family *f,
                         R_xlen_t *ndouble, R_xlen_t *nint);
int ffn_gibbs_run(const moe_data *d, const struct moe_expert_family *f,
                  const double *s_w2, int exchangeable, int warmup, int iter,
                  int thin, int offset, int refresh, int chain, double *theta,
                  double *sigma2, double *W, double *state, double *th_out,
                  double *s2_out, double *W_out, double *ll_out, int nkeep,
                  int *accept, int *nkept, int *done, double *work, int *iwork);

/* loss_strong.c: the Voronoi loss for strongly identifiable experts */
int voronoi_strong(int d, int m, int K, const double *atoms, int kstar,
                   const double *truth, int mode, const double *t1_given,
                   double *loss, int *max_cell, double *shift, double *work,
                   int *iwork);
R_xlen_t voronoi_strong_work_size(int d, int m, int K, int kstar);
void voronoi_strong_cells(int d, int m, int K, const double *atoms, int kstar,
                          const double *truth, const double *shift, int *cell,
                          double *dist, double *work);
/* ---- end of the ffn helper's block ---- */

/* ==== Gating and expert variants (gates helper, issue 6) ====================
 * The generic paths of the variants: src/gate_variants.c evaluates every
 * gate, src/em_variants.c and src/mcmc_variants.c are the EM and the Gibbs
 * sampler for any gate (moe_gate above) and any expert family below. The
 * fused src/em.c and src/mcmc.c stay the softmax / linear fast paths.
 *
 * Parameters of a variant (moe_vpar): as moe_par, with alpha holding npar
 * rows per expert, plus V (q x G, hierarchical gates only, column G - 1
 * zero; NULL otherwise). The temperature lives in moe_gate.tau. For a
 * hierarchical gate, the last expert of each group is that group's
 * reference (its column of W is zero).
 */
typedef struct {
  double *alpha;     /* npar x K expert parameters */
  double *sigma2;    /* K expert variances */
  double *W;         /* q x K gating coefficients */
  double *V;         /* q x G group gating coefficients, or NULL */
} moe_vpar;

/*
 * An expert family for the generic paths: its number of parameters per
 * expert and a table of kernels, filled in src/ffi.c. `info` points to the
 * family's constants (NULL for linear experts). Every kernel takes its
 * scratch from `work`, of work_size(f, d) doubles.
 *  - mean: mu (n x K, column-major) <- the mean of every expert at alpha
 *    (npar x K);
 *  - mstep: EM M-step of expert k with weights wt_i R_ik (R n x K): updates
 *    alpha_k (npar), *sigma2_k (floored at ctl->var_floor) and mu_k (n, the
 *    new means); returns moe_status flags (MOE_EMPTY when the effective size
 *    is below ctl->min_size: nothing is updated);
 *  - draw: one Gibbs / Metropolis-within-Gibbs update of every expert given
 *    the allocation counts N (K x n, observation-major, as in mcmc.c) under
 *    the prior pr; `state` (nstate doubles) persists across sweeps and calls
 *    (e.g. adaptive proposal scales, adapted only when `adapt` is 1, i.e.
 *    during warm-up), accepted[naccept] counts accepted proposals; returns
 *    moe_status flags.
 */
typedef struct moe_expert_family moe_expert_family;
struct moe_expert_family {
  int npar;
  int nstate, naccept;
  const void *info;
  void (*mean)(const moe_expert_family *f, const moe_data *d,
               const double *alpha, double *mu, double *work);
  int (*mstep)(const moe_expert_family *f, const moe_data *d, const double *R,
               int k, double *alpha_k, double *sigma2_k, double *mu_k,
               const moe_em_control *ctl, double *work);
  int (*draw)(const moe_expert_family *f, const moe_data *d,
              const moe_mcmc_prior *pr, const int *N, double *alpha,
              double *sigma2, double *state, int adapt, int *accepted,
              double *work);
  R_xlen_t (*work_size)(const moe_expert_family *f, const moe_data *d);
};

/* Kept draws of a variant chain (internal scale), filled by moe_mcmcv_run(). */
typedef struct {
  double *alpha;     /* npar x K x nkeep */
  double *sigma2;    /* K x nkeep */
  double *W;         /* q x K x nkeep */
  double *V;         /* q x G x nkeep (hierarchical gates), else unused */
  double *tau;       /* nkeep temperatures (gate->tau, also when fixed) */
  double *loglik;    /* nkeep total log-likelihoods */
  int *accept;       /* nblocks: accepted proposals after warm-up per block */
  int nblocks;       /* gate blocks first, then the expert family's */
  int expert_slot;   /* index of the expert family's first block */
  int nkeep, done;   /* capacity, then the number filled; sweeps done */
} moe_mcmcv_draws;

/* ---- gate_variants.c ---- */
void gate_topk_active(int K, int k, const double *eta, R_xlen_t s, int *active);
void gate_logprob_obs(const moe_gate *g, int K, const double *eta, R_xlen_t se,
                      const double *etaV, R_xlen_t sv, double *logg,
                      R_xlen_t sl, int *active);
void gate_logprob(const moe_gate *g, int n, int K, const double *eta,
                  const double *etaV, double *logg, int *active);

/* ---- em_variants.c ---- */
void moe_expert_family_linear(moe_expert_family *f, int p);
R_xlen_t moe_em_variant_work_size(const moe_data *d, const moe_gate *g,
                                  const moe_expert_family *ef);
int moe_em_variant_run(const moe_data *d, moe_gate *g,
                       const moe_expert_family *ef, moe_vpar *par,
                       const double *tau_prior, const double *R0,
                       const moe_em_control *ctl, double *R, double *trace,
                       int *iter, double *loglik, double *work, int *iwork);

/* ---- mcmc_variants.c ---- */
int linear_expert_draw(const moe_expert_family *f, const moe_data *d,
                       const moe_mcmc_prior *pr, const int *N, double *alpha,
                       double *sigma2, double *state, int adapt, int *accepted,
                       double *work);
int moe_mcmcv_state_size(const moe_gate *g, int q, int K, int learn_tau);
void moe_mcmcv_work_size(const moe_data *d, const moe_gate *g,
                         const moe_expert_family *ef, int nblocks,
                         R_xlen_t *ndouble, R_xlen_t *nint);
int moe_mcmcv_run(const moe_data *d, moe_gate *g, const moe_expert_family *ef,
                  const moe_mcmc_prior *pr, const double *tau_prior,
                  const moe_mcmc_control *ctl, moe_vpar *par, double *state,
                  double *xstate, moe_mcmcv_draws *out, double *work, int *iwork);
/* ==== end of the variants block ============================================ */


#endif
