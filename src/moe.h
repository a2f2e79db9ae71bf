/*
 * moe.h: shared types and kernel prototypes of bayesmoe's C core.
 *
 * The engine: ONE EM driver (em.c, moe_em_run()) and ONE Gibbs driver
 * (mcmc.c, moe_gibbs_run()) serve every model. What varies is plugged in:
 *  - a gate (moe_gate with its table of operations moe_gate_ops: log
 *    probabilities, EM M-step, Gibbs update, adaptation state, penalty):
 *    gate.c (softmax, and the softmax-level machinery every gate reuses),
 *    gate_temperature.c, gate_hier.c, gate_topk.c;
 *  - an expert family (moe_expert_family: mean, log-density, weighted
 *    M-step, Gibbs update, work size): family_gaussian.c (linear Gaussian
 *    experts), family_ffn.c (feed-forward network experts), family_t.c
 *    (linear Student-t experts);
 *  - the gating prior (moe_mcmc_prior; prior.c: log density, gradient,
 *    Hessian, conditional of one column), which every sampler and update
 *    calls.
 * Speed lives in specialised kernels the drivers select, never in a second
 * driver: the fused softmax x linear-Gaussian EM pass (em_fused.c) and the
 * fused, sized sweep of the same model (mcmc_fused.c).
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
#ifdef _OPENMP
#include <omp.h>
#endif

/* The OpenMP threads a pass may use (em_fused.c, mcmc_fused.c): `asked`,
 * never more than the machine has nor than the thread limit, at least 1;
 * always 1 without OpenMP. */
static inline int moe_thread_count(int asked)
{
  int t = 1;
#ifdef _OPENMP
  int avail = omp_get_num_procs(), lim = omp_get_thread_limit();
  if (lim < avail) avail = lim;
  t = asked < avail ? asked : avail;
  if (t < 1) t = 1;
#else
  (void) asked;
#endif
  return t;
}
#ifndef FCONE
#define FCONE
#endif

/* Status bit flags returned by kernels; R turns them into classed conditions
 * (R/status.R). ffi_code_tables() exports them and test-tables.R fails when
 * the R list drifts. */
typedef enum {
  MOE_OK = 0,
  MOE_MAXIT = 1,        /* iteration limit reached before convergence */
  MOE_EMPTY = 2,        /* an expert's effective size fell below the minimum */
  MOE_VAR_FLOOR = 4,    /* an expert's variance hit the floor (collapse) */
  MOE_NOT_PD = 8,       /* a cross-product matrix needed a ridge to factor */
  MOE_NONFINITE = 16,   /* a non-finite log-likelihood or parameter appeared */
  MOE_GATE_STEP = 32,   /* the gating Newton step found no ascent */
  MOE_DECREASE = 64,    /* the EM log-likelihood decreased (beyond rounding) */
  MOE_SEPARATION = 128  /* gating coefficients ran away (separation): EM stopped */
} moe_status;

/* Gate type codes (gate_c() in R/gate.R sends them; exported by
 * ffi_code_tables()). */
typedef enum { GATE_SOFTMAX = 0, GATE_TOPK = 1, GATE_TEMPERATURE = 2,
               GATE_HIER = 3, GATE_NTYPES = 4 } moe_gate_type;

/* Expert family codes (expert_c() in R). */
typedef enum { FAMILY_GAUSSIAN_LINEAR = 0, FAMILY_FFN = 1,
               FAMILY_BINOMIAL = 2, FAMILY_POISSON = 3,
               FAMILY_STUDENT_T = 4, FAMILY_NTYPES = 5 } moe_family_type;

struct moe_gate_ops;
typedef struct {
  moe_gate_type type;
  int K;             /* number of experts */
  int topk;          /* GATE_TOPK: number of experts kept at each z */
  double tau;        /* GATE_TEMPERATURE: logits are divided by tau */
  int G;             /* GATE_HIER: number of groups */
  const int *group;  /* GATE_HIER: group (0-based) of each expert, length K */
  const struct moe_gate_ops *ops; /* the gate's operations (moe_gate_init()) */
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

/* The next `len` doubles of a work block *t (which moves past them). */
static inline double *moe_take(double **t, R_xlen_t len)
{
  double *p = *t;
  *t += len;
  return p;
}

/* ---- linalg.c ---- */
double moe_lse(const double *v, int m);
int chol_solve(int m, double *A, double *b, int nrhs, double *work);
int chol_factor_ridge(int m, double *A, double *Acopy, double ridge0);
void chol_solve_factored(int m, const double *L, double *b, int nrhs);
void chol_inverse(int m, double *L);
double log_det_chol(int m, const double *L);
void mvn_draw_chol(int m, const double *L, const double *mean, double *out,
                   double *work);
/* Canonical-link GLM problems of the binomial and Poisson experts: maximise
 * sum_i v_i (y_i eta_i - m_i b(eta_i)) - 1/2 (a - ma)' Vinv (a - ma) over a,
 * eta = X a + off (see glm_cumulant()). m, off and Vinv may be NULL (m_i =
 * 1, no offset, no prior). */
typedef enum { GLM_LOGIT = 0, GLM_LOG = 1 } glm_link;
typedef struct {
  int n, p, link;
  const double *X, *y, *m, *off, *v;   /* n x p, n, n, n, n */
  const double *Vinv, *ma;             /* p x p, p */
} glm_problem;
#define GLM_NEWTON_WORK(n, p) (2 * (R_xlen_t) (p) * (p) + 3 * (R_xlen_t) (p) + (n))
double glm_cumulant(int link, double eta, double *b1, double *b2);
double glm_objective(const glm_problem *g, const double *a, double *eta);
int glm_newton(const glm_problem *g, double *a, int steps, double tol,
               double *eta, double *L, double *fval, int need_L, double *work);

/* ---- polyagamma.c ---- */
double rpg1(double z);          /* one PG(1, z) draw; caller holds GetRNGstate() */
/* PG(b, z) for an integer b >= 1: the exact sum of b PG(1, z) draws for
 * b <= PG_EXACT_MAX, an accurate approximation whose cost does not grow with
 * b above (series with a moment-matched tail; the normal law for b >=
 * PG_NORMAL_MIN). Caller holds GetRNGstate(). */
#define PG_EXACT_MAX 20
#define PG_NORMAL_MIN 268435456   /* 2^28 */
double rpg(int b, double z);
/* The random variates a PG(1, z) draw takes: uniform on (0, 1), standard
 * exponential and standard normal, from `state`. rpg1() and rpg() use R's
 * generator; rpg1_rng() another one, e.g. a thread's own stream
 * (moe_rng.h), so that draws can be made by threads. */
typedef struct {
  double (*unif)(void *state);
  double (*expo)(void *state);
  double (*norm)(void *state);
  void *state;
} pg_rng;
double rpg1_rng(double z, const pg_rng *g);
/* ---- loss.c (Voronoi and density losses) ----
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
/* ---- numerical safety bounds ---- */
/* Range of every expert variance on the internal scale (in units of the
 * variance of the response) allowed by the Gibbs sampler: draws outside are
 * rejected (gaussian_conjugate_draw()), so squares, inverses and logs of the
 * variances and the expert coefficients drawn with them stay finite. Keep
 * in sync with s2_bounds in R/prior.R. */
#define MOE_S2_MIN 1e-100
#define MOE_S2_MAX 1e100


/* ==== the engine ========================================================= */

/* Parameters of a fitted model: expert parameters (npar rows per expert,
 * the family's layout), dispersions, gating coefficients and, for a
 * hierarchical gate, the group coefficients V (q x G, column G - 1 zero;
 * NULL otherwise). The temperature lives in moe_gate.tau. Reference
 * columns: column K - 1 of W for the softmax, top-k and temperature gates;
 * for a hierarchical gate, in W the column of the last expert of each group.
 * moe_par is the softmax x linear-Gaussian view the fused kernels take (the
 * same arrays). */
typedef struct {
  double *alpha;     /* npar x K expert parameters */
  double *sigma2;    /* K expert variances (dispersions) */
  double *W;         /* q x K gating coefficients */
  double *V;         /* q x G group gating coefficients, or NULL */
} moe_vpar;

typedef struct {
  double *alpha;     /* p x K expert coefficients */
  double *sigma2;    /* K expert variances */
  double *W;         /* q x K gating coefficients, column K - 1 zero */
} moe_par;

/* EM controls (moe_em_control() in R; the packed form of ffi_em() is
 * MOE_EMCTL_*). */
typedef struct {
  int maxit;
  double tol;        /* relative change of the objective for convergence */
  double var_floor;  /* lower bound of every expert variance */
  double min_size;   /* minimum effective number of observations of an expert */
  int gate_steps;    /* Newton steps on the gating per M-step */
  double ridge;      /* ridge added to the gating Hessian (penalised ML) */
  double sep_bound;  /* separation: a growing |W| above it stops the run */
  int trace_len;     /* only the first trace_len objectives are recorded */
  int threads;       /* OpenMP threads of the fused passes (em_fused.c) */
} moe_em_control;
enum { MOE_EMCTL_MAXIT = 0, MOE_EMCTL_TOL, MOE_EMCTL_VAR_FLOOR,
       MOE_EMCTL_MIN_SIZE, MOE_EMCTL_GATE_STEPS, MOE_EMCTL_RIDGE,
       MOE_EMCTL_SEP_BOUND, MOE_EMCTL_THREADS, MOE_EMCTL_LEN };

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
  double df_shape, df_rate; /* Student-t experts: nu_k ~ Gamma(shape, rate) */
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
                             refresh only, 3 the collapsed update (fused
                             kernel only; the generic sweep runs it as 1) */
  int gate_steps;         /* mode 3: Metropolis-Hastings steps per sweep */
  int pg_every;           /* modes 2 and 3: a Polya-Gamma draw of the gating
                             on every pg_every-th sweep after warm-up (0:
                             never), and on every warm-up sweep once
                             MOE_STALL_SWEEPS sweeps in a row accepted no
                             gating Metropolis-Hastings move; see
                             MOE_STALL_RATE */
  int threads;            /* OpenMP threads of the fused kernel's passes
                             (>= 1; the draws do not depend on it) */
  int info_obs;           /* mode 3: the precisions of the Newton proposals
                             from a systematic subsample of about info_obs
                             observations when n > info_obs (0: all) */
} moe_mcmc_control;

/* Warm-up sweeps in a row without an accepted gating Metropolis-Hastings
 * move after which every warm-up sweep also makes a Polya-Gamma draw. */
#define MOE_STALL_SWEEPS 10
/* Acceptance rate of those moves in the second half of warm-up below which
 * every sweep after warm-up makes the Polya-Gamma draw (moe_gibbs_run()). */
#define MOE_STALL_RATE 0.05

/* Gating move counts of one chain (moe_gibbs_draws.moves), by index. */
enum {
  MOE_ACC_WARMUP = 0,     /* accepted Metropolis-Hastings moves, warm-up */
  MOE_PROP_WARMUP,        /* proposals made, warm-up */
  MOE_ACC_SAMPLING,       /* accepted, after warm-up */
  MOE_PROP_SAMPLING,      /* proposals, after warm-up */
  MOE_PG_WARMUP,          /* sweeps with a Polya-Gamma draw, warm-up */
  MOE_PG_SAMPLING,        /* the same after warm-up */
  MOE_NACC                /* length of the count vector */
};

/* The packed MCMC control vector of ffi_gibbs(): integer, these indices. */
enum { MOE_MCTL_WARMUP = 0, MOE_MCTL_ITER, MOE_MCTL_THIN, MOE_MCTL_OFFSET,
       MOE_MCTL_REFRESH, MOE_MCTL_CHAIN, MOE_MCTL_GATE_MODE,
       MOE_MCTL_GATE_STEPS, MOE_MCTL_PG_EVERY, MOE_MCTL_THREADS, MOE_MCTL_INFO_OBS,
       MOE_MCTL_LEN };

/* ---- expert families ---- */

/*
 * An expert family: its number of parameters per expert and its kernels.
 * `info` points to the family's constants (NULL for linear experts). Every
 * kernel takes its scratch from `work`, of work_size(f, d) doubles.
 *  - mean: mu (n x K, column-major) <- the mean of every expert at alpha
 *    (npar x K);
 *  - logdens: lN[i si + k sk] <- log density of y_i under expert k with mean
 *    mu (n x K, column-major) and dispersion sigma2[k] (the noise model is
 *    the family's, not the driver's);
 *  - mstep: EM M-step of expert k with weights wt_i R_ik (R n x K): updates
 *    alpha_k (npar), *sigma2_k (floored at ctl->var_floor) and mu_k (n, the
 *    new means); returns moe_status flags (MOE_EMPTY when the effective size
 *    is below ctl->min_size: nothing is updated);
 *  - draw: one Gibbs / Metropolis-within-Gibbs update of every expert given
 *    the allocation counts N (K x n, observation-major) under the prior pr;
 *    `state` (nstate doubles) persists across sweeps and calls (adaptive
 *    proposal scales, adapted only when `adapt` is 1, i.e. in warm-up),
 *    accepted[naccept] counts accepted proposals; returns moe_status flags.
 * `fused` is 1 for the linear Gaussian family, which the fused kernels
 * (em_fused.c, mcmc_fused.c) serve when the gate is the softmax.
 */
typedef struct moe_expert_family moe_expert_family;
struct moe_expert_family {
  moe_family_type type;
  int npar;
  int nstate, naccept;
  int fused;
  const void *info;
  void (*mean)(const moe_expert_family *f, const moe_data *d,
               const double *alpha, double *mu, double *work);
  void (*logdens)(const moe_expert_family *f, const moe_data *d,
                  const double *mu, const double *sigma2, double *lN,
                  R_xlen_t si, R_xlen_t sk);
  int (*mstep)(const moe_expert_family *f, const moe_data *d, const double *R,
               int k, double *alpha_k, double *sigma2_k, double *mu_k,
               const moe_em_control *ctl, double *work);
  int (*draw)(const moe_expert_family *f, const moe_data *d,
              const moe_mcmc_prior *pr, const int *N, double *alpha,
              double *sigma2, double *state, int adapt, int *accepted,
              double *work);
  R_xlen_t (*work_size)(const moe_expert_family *f, const moe_data *d);
};

/* ---- family_gaussian.c: linear experts with Gaussian noise ---- */
void moe_family_gaussian(moe_expert_family *f, int p);
void expert_means(const moe_data *d, const double *alpha, double *mu);
double log_dnorm(double y, double mu, double sigma2);
void gaussian_logdens(const moe_expert_family *f, const moe_data *d,
                      const double *mu, const double *sigma2, double *lN,
                      R_xlen_t si, R_xlen_t sk);
int expert_wls(const moe_data *d, const double *R, int k, double *alpha_k,
               double *sigma2_k, double *mu_k, const moe_em_control *ctl,
               double *work);
/* The conjugate draw of one linear expert from its sufficient statistics
 * S (p x p, lower triangle of sum N x x'), sy (p), yty, nk; work: 2 p^2 +
 * 4 p. Returns moe_status flags; a variance outside [MOE_S2_MIN,
 * MOE_S2_MAX] is rejected (the expert keeps its values). */
int gaussian_conjugate_draw(int p, const double *S, const double *sy,
                            double yty, double nk, const moe_mcmc_prior *pr,
                            double *alpha_k, double *sigma2_k, double *work);
#define GAUSSIAN_DRAW_WORK(p) (2 * (R_xlen_t) (p) * (p) + 4 * (R_xlen_t) (p))

/* ---- family_binomial.c, family_poisson.c: GLM experts (logit and log
 * links). Their `mu` is the linear predictor eta = X a_k + offset (the
 * log densities are computed from it without loss of precision); they have
 * no dispersion (sigma2 stays 1). Data beyond moe_data: the trials m (n,
 * binomial; NULL for Poisson), the offset (n or NULL) and the constant of
 * each log density, lconst (n: log choose(m, y) or -log y!). ---- */
typedef struct {
  const double *trials, *offset, *lconst;
  int steps;          /* Newton steps per EM M-step (each monotone) */
  double tol;         /* their relative tolerance */
} glm_family_info;
/* The linear predictors mu = X alpha + offset (n x K) of GLM experts. */
void glm_linear_predictors(const moe_data *d, const glm_family_info *info,
                           const double *alpha, double *mu);
/* EM M-step of GLM expert k (weighted IRLS, family_binomial.c); work:
 * GLM_MSTEP_WORK(n, p) doubles. */
int glm_mstep(const moe_data *d, const glm_family_info *info, int link,
              const double *R, int k, double *alpha_k, double *sigma2_k,
              double *mu_k, const moe_em_control *ctl, double *work);
#define GLM_MSTEP_WORK(n, p) (GLM_NEWTON_WORK(n, p) + (R_xlen_t) (p) * (p) + (n))
void moe_family_binomial(moe_expert_family *f, const glm_family_info *info, int p);
void moe_family_poisson(moe_expert_family *f, const glm_family_info *info, int p,
                        int K);
/* Gibbs prior of GLM experts: a_k ~ N(m_a, V_a) (moe_mcmc_prior's m_a,
 * Va_inv, Va_inv_m; sigma2 is fixed at 1). */

/* ---- family_t.c: linear experts with Student-t noise ----
 * nu_k in [T_DF_MIN, T_DF_MAX] when estimated (EM search range; the Gibbs
 * sampler's prior is truncated to it: keep in sync with t_df_bounds in
 * R/family-t.R). T_INNER: ECME rounds per EM M-step; T_MH_STEPS: Metropolis
 * steps on log nu_k per sweep. */
#define T_DF_MIN 0.1
#define T_DF_MAX 1e4
#define T_INNER 25
#define T_MH_STEPS 3
typedef struct {
  int p, K;
  int estimate;          /* 1: nu_k is row p of alpha; 0: nu fixed */
  double df_fixed;       /* the fixed nu (estimate = 0) */
  double df_shape, df_rate; /* Gamma prior of nu_k (Gibbs) */
  double *df;            /* K scratch: nu of the last mean() / mstep() */
} t_family_info;
void moe_family_t(moe_expert_family *f, const t_family_info *info);

/* ---- prior.c: the gating prior ----
 * On a softmax level of Kl categories with free coefficients Wf (q x (Kl -
 * 1)), per coordinate a the precision (I - 11'/Kl) / s_a^2 (exchangeable)
 * or I / s_a^2 (independent). */
double gprior_logdens(const moe_mcmc_prior *pr, int q, int Kl, const double *Wf);
void gprior_grad(const moe_mcmc_prior *pr, int q, int Kl, const double *Wf,
                 double *g, double *lp);
void gprior_hess(const moe_mcmc_prior *pr, int q, int Kl, double *H);
void gprior_cond(const moe_mcmc_prior *pr, int q, int Kl, const double *Wl,
                 int k, int a, double *b0, double *v);

/* ---- family_ffn.c and ls.c: feed-forward network experts and the
 * least-squares (regression) form of the mixture of experts ---- */

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

/* The FFN expert family: moe_family_ffn() fills the table from `info`, which
 * must outlive it. State per chain: K log random-walk scales of the hidden
 * layers, then K counts of adaptation steps. */
typedef struct {
  ffn_net net;
  int lm_steps;      /* Levenberg-Marquardt steps per EM M-step */
  int mh_steps;      /* Metropolis steps per expert and sweep */
  ffn_prior prior;   /* prior of the Metropolis-within-Gibbs update */
} ffn_family_info;
void moe_family_ffn(moe_expert_family *f, const ffn_family_info *info, int K);

/* loss_strong.c: the Voronoi loss for strongly identifiable experts */
int voronoi_strong(int d, int m, int K, const double *atoms, int kstar,
                   const double *truth, int mode, const double *t1_given,
                   double *loss, int *max_cell, double *shift, double *work,
                   int *iwork);
R_xlen_t voronoi_strong_work_size(int d, int m, int K, int kstar);

/* ---- gates ---- */

/* Work of the EM's gate M-steps (carved by em.c, moe_em_work_size()). */
typedef struct {
  double *eta, *etaV, *logg, *mu, *lN, *Zs;   /* n x K, n x G, n x K, n x K, n x K, n x q */
  double *Rl, *wtl, *etal, *loggl, *Wl;       /* n x K, n, n x K, n x K, q x K */
  double *nwork;                              /* gate_newton_step(): 2 m^2 + 3 m + 2 n + n K */
  double *g, *delta, *H, *Hsave, *Wold;       /* m, m, m x m, m x m, m */
  double *kwork, *xwork;                      /* 2 K, the expert family's work */
} moe_em_work;

/* Work of the Gibbs sampler's generic sweep and gate updates (mcmc.c);
 * observation-major arrays (K x n) unless said otherwise. */
typedef struct {
  double *Zr, *Zsr;       /* q x n rows of Z and of Z / tau */
  int *wi, *N, *Nl, *bl;  /* n; K x n counts; level counts K x n; trials n */
  int *active;            /* K */
  double *eta, *etaV;     /* K x n and G x n logits */
  double *logg, *lN, *mu; /* K x n each; mu n x K column-major */
  double *etal, *Wl;      /* level logits K x n; level coefficients q x K */
  double *Wp, *etap, *loggp; /* top-k proposal: q x K, K x n, K x n */
  double *P, *Psave, *r, *mw, *zq; /* Polya-Gamma block: q x q, q x q, q, q, q */
  double *H0, *H1, *Hsave, *g, *mu2, *tm, *Ws, *pk; /* refresh: m x m x 3, m, m, m + 1, q x K, K */
  double *cov;            /* adaptation: q x q */
  double *asums;          /* top-k adaptation sums: (K - 1) (1 + q + q^2) */
  double *xwork;          /* the expert family's work */
} moe_gibbs_work;

/* What one gate update of a sweep does and where it counts. */
typedef struct {
  int pg;          /* make the Polya-Gamma draws of the softmax levels */
  int mh;          /* make the joint Metropolis-Hastings refresh */
  int warm, t;     /* a warm-up sweep (adaptation on); the sweep number */
  int *block;      /* accepted proposals per Metropolis block of the gate */
  int *acc, *prop; /* accepted / proposed joint refreshes (stall counts) */
} moe_gibbs_step;

/*
 * The operations of a gate (one const table per gate type):
 *  - logprob: log gating probabilities of one observation from its logits
 *    eta[k se] (and group logits etaV[h sv]) into logg[k sl]; `active`: K
 *    ints of scratch;
 *  - state_size: doubles of adaptation state of the Gibbs update;
 *  - penalty: what the EM objective subtracts from the log-likelihood
 *    (ridge on the free coefficients, prior of a learned temperature);
 *  - em_mstep: the gate's part of the M-step given responsibilities R
 *    (n x K) (first = 1: the first M-step, from the starting R);
 *  - gibbs: the gate's update in a sweep, given the allocation counts
 *    s->N (and the family, for updates that integrate them out).
 */
typedef struct moe_gate_ops {
  void (*logprob)(const moe_gate *g, int K, const double *eta, R_xlen_t se,
                  const double *etaV, R_xlen_t sv, double *logg, R_xlen_t sl,
                  int *active);
  int (*state_size)(const moe_gate *g, int q, int K, int learn_tau);
  double (*penalty)(const moe_data *d, const moe_gate *g, const moe_vpar *par,
                    double ridge, const double *tau_prior);
  int (*em_mstep)(const moe_data *d, moe_gate *g, moe_vpar *par,
                  const double *tau_prior, const double *R,
                  const moe_em_control *ctl, int first, moe_em_work *s,
                  int *iwork);
  int (*gibbs)(const moe_data *d, const moe_mcmc_prior *pr, moe_gate *g,
               const moe_expert_family *ef, moe_vpar *par,
               const double *tau_prior, double *state,
               const moe_gibbs_step *st, moe_gibbs_work *s);
} moe_gate_ops;

extern const moe_gate_ops gate_softmax_ops, gate_temperature_ops,
  gate_hier_ops, gate_topk_ops;
/* Set g->ops from g->type. */
void moe_gate_init(moe_gate *g);

/* ---- gate.c: the softmax and the softmax-level machinery ---- */
void gate_logits(const moe_data *d, const double *W, double *eta);
void gate_logprob_softmax(int n, int K, const double *eta, double *logg);
void gate_logprob(const moe_gate *g, int n, int K, const double *eta,
                  const double *etaV, double *logg, int *active);
double gate_expected_loglik(const moe_data *d, const double *R,
                            const double *logg);
int gate_newton_direction(int q, int K, const double *grad, const double *hess,
                          const double *W, double ridge, double *g,
                          double *delta, double *work);
int gate_newton_step(const moe_data *d, const double *R, double *W,
                     double *eta, double *logg, double ridge, double *work);
double lse_strided(int K, const double *v, R_xlen_t s, const int *keep,
                   double scale);
double sumsq(const double *v, R_xlen_t m);
/* EM: ctl->gate_steps Newton steps on a softmax level (design Zl, weights
 * wtl, responsibilities Rl n x Kl, coefficients Wl q x Kl). */
int level_newton(const moe_data *d, const double *Zl, const double *wtl,
                 int Kl, const double *Rl, double *Wl, double ridge, int steps,
                 moe_em_work *s);
/* Gibbs, on a softmax level of Kl categories with counts Nl (Kl x n) out of
 * bl (n) trials, design rows Zr (q x n), coefficients Wl (q x Kl, last
 * column zero) and logits etal (Kl x n): */
void eta_rows(int n, int q, int K, const double *Zr, const double *W,
              double *eta);
void eta_col(int n, int q, int K, const double *Zr, const double *W, int k,
             double *eta);
int level_pg(int n, int q, const moe_mcmc_prior *pr, int Kl, const int *Nl,
             const int *bl, const double *Zr, double *Wl, double *etal,
             double *P, double *Psave, double *r, double *mw, double *zq);
/* the pieces of level_pg(), for the fused kernel's draws by chunks: */
double pg_offset(const double *ei, int Kl, int k, int fast, double *psi);
int pg_column_draw(int q, const moe_mcmc_prior *pr, int Kl, double *Wl, int k,
                   double *P, double *Psave, double *r, double *mw, double *zq);
double level_logpost(int n, int q, const moe_mcmc_prior *pr, int Kl,
                     const int *Nl, const int *bl, const double *Zr,
                     const double *Wf, double *g, double *H, double *pk);
double chol_quad(int m, const double *L, const double *x, const double *mu,
                 double *tmp);
int level_refresh(int n, int q, const moe_mcmc_prior *pr, int Kl,
                  const int *Nl, const int *bl, const double *Zr, double *Wl,
                  moe_gibbs_work *s);
int level_update(const moe_data *d, const moe_mcmc_prior *pr, int Kl,
                 const int *Nl, const int *bl, const double *Zr, double *Wl,
                 double *etal, const moe_gibbs_step *st, int *block,
                 moe_gibbs_work *s);
void adapt_scale(double *logl, double accept_prob, int t);
int gate_no_state(const moe_gate *g, int q, int K, int learn_tau);
double gate_ridge_penalty(const moe_data *d, const moe_gate *g,
                          const moe_vpar *par, double ridge,
                          const double *tau_prior);
void gate_topk_active(int K, int k, const double *eta, R_xlen_t s, int *active);

/* The model the fused kernels serve: the softmax gate with linear Gaussian
 * experts (both drivers select them for it). */
static inline int moe_use_fused(const moe_gate *g, const moe_expert_family *ef)
{
  return g->type == GATE_SOFTMAX && ef->fused;
}

/* ---- em.c: the EM driver ---- */
double estep_logdens(const moe_data *d, const double *logg, const double *lN,
                     double *R);
R_xlen_t moe_em_work_size(const moe_data *d, const moe_gate *g,
                          const moe_expert_family *ef);
int moe_em_run(const moe_data *d, moe_gate *g, const moe_expert_family *ef,
               moe_vpar *par, const double *tau_prior, const double *R0,
               const moe_em_control *ctl, double *R, double *trace, int *iter,
               double *loglik, double *work, int *iwork);

/* ---- em_fused.c: the fused softmax x linear-Gaussian kernels ---- */
double moe_estep(const moe_data *d, const double *logg, const double *mu,
                 const double *sigma2, double *R, double *ll_i, double *kwork);
double moe_loglik(const moe_data *d, const moe_par *par, double *work);
R_xlen_t em_fused_work_size(const moe_data *d);
/* The EM kernel interface (em.c): an M-step from the current
 * responsibilities (first = 1: from R0), an E-step returning the
 * log-likelihood at the current parameters, the final responsibilities. */
typedef struct {
  void *ctx;
  int (*mstep)(void *ctx, int first);
  double (*estep)(void *ctx, int *mstatus);
  void (*finish)(void *ctx, double *R);
} em_kernel;
void em_fused_init(em_kernel *k, const moe_data *d, moe_vpar *par,
                   const double *R0, const moe_em_control *ctl, double *work);

/* ---- mcmc.c: the Gibbs driver ---- */

/* Kept draws (internal scale), filled by moe_gibbs_run(). */
typedef struct {
  double *alpha;     /* npar x K x nkeep */
  double *sigma2;    /* K x nkeep */
  double *W;         /* q x K x nkeep */
  double *V;         /* q x G x nkeep (hierarchical gates), else unused */
  double *tau;       /* nkeep temperatures (gate->tau, also when fixed) */
  double *loglik;    /* nkeep total log-likelihoods */
  int *moves;        /* MOE_NACC gating move counts (enum above) */
  int *accept;       /* nblocks: accepted proposals after warm-up per block */
  int nblocks;       /* gate blocks first, then the expert family's */
  int expert_slot;   /* index of the expert family's first block */
  int nkeep, done;   /* capacity, then the number filled; sweeps done */
  int pg_every;      /* on return: the schedule of Polya-Gamma draws after
                        warm-up (ctl->pg_every, or 1 when the warm-up found
                        the Metropolis-Hastings moves stuck) */
} moe_gibbs_draws;

/* The sweep kernel interface (mcmc.c): one sweep of the chosen kernel,
 * returning the log-likelihood of the state it started from when need_ll;
 * the kept state; the log-likelihood at the current state (no random
 * numbers). */
typedef struct {
  void *ctx;
  double (*sweep)(void *ctx, const moe_gibbs_step *st, int need_ll,
                  int *status);
  void (*store)(void *ctx, moe_gibbs_draws *out, int slot);
  double (*loglik)(void *ctx);
} gibbs_kernel;

void moe_gibbs_work_size(const moe_data *d, const moe_gate *g,
                         const moe_expert_family *ef, int nblocks,
                         R_xlen_t *ndouble, R_xlen_t *nint);
int moe_gibbs_state_size(const moe_gate *g, int q, int K, int learn_tau);
int moe_gibbs_run(const moe_data *d, moe_gate *g, const moe_expert_family *ef,
                  const moe_mcmc_prior *pr, const double *tau_prior,
                  const moe_mcmc_control *ctl, moe_vpar *par, double *state,
                  double *xstate, moe_gibbs_draws *out, double *work,
                  int *iwork);

/* ---- mcmc_fused.c: the fused softmax x linear-Gaussian sweep (and the
 * multinomial allocation draw both sweeps use) ---- */
void alloc_multinomial(int K, int wi, const double *pk, double s, int *Ni);
void mcmc_fused_work_size(const moe_data *d, R_xlen_t *ndouble, R_xlen_t *nint);
/* tests only: observations in pairs in vector lanes (on, default 1) for the
 * chains started after the call; returns the previous setting */
int mcmc_fused_set_v2(int on);
void mcmc_fused_init(gibbs_kernel *k, const moe_data *d,
                      const moe_mcmc_prior *pr, const moe_mcmc_control *ctl,
                      moe_vpar *par, double *work, int *iwork);

#endif
