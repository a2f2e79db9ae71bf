# Student-t experts: the family constructor student_t(), its expert object
# (class "moe_expert_t") with the methods of the expert generics of
# R/family.R, and its prior draws; the C side is src/family_t.c.
#
# Expert k: y | x ~ t_{nu_k}(x' a_k, sigma2_k) (location, squared scale,
# degrees of freedom). Parameters of one expert (a column of `alpha`): the p
# coefficients a_k and, when the degrees of freedom are estimated, nu_k in a
# last row "df" (P_e = p + 1); with fixed degrees of freedom P_e = p and nu
# lives in the expert object.

#' Student-t experts
#'
#' `student_t()` is the family of robust linear experts: pass it as `family =`
#' to [moe_em()] or [moe_mcmc()]. Expert \eqn{k} is the linear regression
#' with Student-\eqn{t} errors
#' \deqn{y \mid x, \text{expert } k \sim t_{\nu_k}(x^\top a_k, \sigma_k^2),}{
#'   y | x, expert k ~ t_nu_k(x' a_k, sigma_k^2),}
#' location \eqn{x^\top a_k}, scale \eqn{\sigma_k} (`sigma2` in `coef()` is
#' the squared scale; the variance is \eqn{\sigma_k^2 \nu_k / (\nu_k - 2)} for
#' \eqn{\nu_k > 2}) and \eqn{\nu_k} degrees of freedom. A few gross outliers
#' barely move such an expert, where they drag a Gaussian expert's line.
#'
#' **Degrees of freedom.** `df = NULL` (the default) estimates one
#' \eqn{\nu_k} **per expert**, reported as the parameter `df` of each expert
#' (after its coefficients, before `sigma2`); the estimates are kept in
#' \eqn{[0.1, 10^4]}. A number fixes \eqn{\nu_k = } `df` for every expert
#' (a large value gives nearly Gaussian experts). An expert without heavy
#' tails has its estimate at the upper end \eqn{10^4}; `vcov()` then holds
#' that \eqn{\nu_k} fixed (its standard error is `NA`, the others are
#' computed given it).
#'
#' **EM** ([moe_em()]) uses the scale-mixture form \eqn{y \mid u \sim
#' N(x^\top a_k, \sigma_k^2 / u)}, \eqn{u \sim \mathrm{Gamma}(\nu_k/2,
#' \nu_k/2)}: each M-step runs ECME rounds (Liu and Rubin, 1995) for every
#' expert: latent precision weights \eqn{u_i = (\nu_k + 1) / (\nu_k +
#' r_i^2/\sigma_k^2)} at the current parameters, weighted least squares with
#' weights \eqn{R_{ik} u_i}, the scale, then \eqn{\nu_k} by a
#' one-dimensional maximisation of the expert's weighted \eqn{t}
#' log-likelihood. The log-likelihood never decreases.
#'
#' **MCMC** ([moe_mcmc()]): latent Gamma precision weights given the
#' allocations, the conjugate normal / inverse-gamma draw of \eqn{(a_k,
#' \sigma_k^2)} given them (the expert prior of [moe_prior()]), then
#' random-walk Metropolis steps on \eqn{\log \nu_k} with the weights
#' integrated out, under the prior \eqn{\nu_k \sim \mathrm{Gamma}(}`df_shape`,
#' `df_rate`\eqn{)} of [moe_prior()] (default Gamma(2, 0.1), Juárez and
#' Steel, 2010), truncated to \eqn{[0.1, 10^4]}. The step sizes adapt during
#' the warm-up only; acceptance rates are in the fit's `accept`.
#'
#' Student-\eqn{t} experts take the softmax gate and linear expert means.
#'
#' @param df `NULL` to estimate the degrees of freedom of each expert, or a
#'   positive number fixing them.
#' @return A family object (class `"family"`) with `family = "student_t"`,
#'   `link = "identity"` and `df`.
#' @references Liu, C. and Rubin, D. B. (1995). ML estimation of the t
#'   distribution using EM and its extensions, ECM and ECME. *Statistica
#'   Sinica*, 5, 19--39.
#'
#'   Juárez, M. A. and Steel, M. F. J. (2010). Model-based clustering of
#'   non-Gaussian panel data based on skew-t distributions. *Journal of
#'   Business & Economic Statistics*, 28, 52--66.
#' @seealso [moe_families]
#' @examples
#' student_t()
#' set.seed(1)
#' x <- runif(200)
#' y <- ifelse(x < 0.5, 1 + 2 * x, 3 - x) + 0.2 * rt(200, df = 3)
#' fit <- moe_em(y ~ x, data = data.frame(x, y), K = 2, family = student_t(),
#'               seed = 1)
#' coef(fit)
#' @export
student_t <- function(df = NULL) {
  call <- sys.call()
  if (!is.null(df)) df <- check_t_df(df, call)
  structure(list(family = "student_t", link = "identity", df = df,
                 linkfun = function(mu) mu, linkinv = function(eta) eta),
            class = "family")
}

# `df` of student_t(): NULL or one finite number > 0.
check_t_df <- function(df, call = NULL) {
  if (!is.numeric(df) || length(df) != 1L || is.na(df) || !is.finite(df) || !(df > 0)) {
    abort(sprintf("`df` must be NULL (estimate the degrees of freedom) or a finite number > 0, not %s.",
                  describe(df)), kind = "input", call = call, arg = "df")
  }
  as.numeric(df)
}

# The registry entry of student_t() (registered in R/variants-check.R, which is
# collated after this file): the expert object of a student_t() family.
make_expert_student_t <- function(family, expert, call) {
  if (!is.null(expert) && !inherits(expert, "moe_expert_linear")) {
    abort(sprintf("`family = student_t()` takes linear experts only, not `expert = %s`.",
                  expert_call(expert)), kind = "family", call = call, arg = "family")
  }
  df <- if (is.null(family$df)) NULL else check_t_df(family$df, call)
  expert_t(df)
}

# Softmax gating with Student-t experts: the one gate they are offered with.
is_t_softmax <- function(spec) {
  inherits(spec_expert(spec), "moe_expert_t") && inherits(spec_gate(spec), "moe_gate_softmax")
}

# The expert object of student_t(df).
expert_t <- function(df = NULL) {
  if (!is.null(df)) df <- check_t_df(df)
  structure(list(type = "t", df = df), class = c("moe_expert_t", "moe_expert"))
}

# Range of the estimated degrees of freedom (T_DF_MIN, T_DF_MAX in
# src/moe.h): the EM search range and the truncation of their prior.
t_df_bounds <- c(0.1, 1e4)

t_estimates_df <- function(expert) is.null(expert$df)

expert_label.moe_expert_t <- function(expert) {
  if (t_estimates_df(expert)) "linear Student-t (df per expert)" else
    sprintf("linear Student-t (df = %s)", format(expert$df))
}

expert_noise_label.moe_expert_t <- function(expert) {
  "squared scale sigma2 and scale sigma (t noise)"
}

expert_call.moe_expert_t <- function(expert) {
  sprintf("student_t(%s)", if (t_estimates_df(expert)) "" else format(expert$df))
}

expert_c.moe_expert_t <- function(expert) {
  list(type = family_codes[["t"]],
       df = if (t_estimates_df(expert)) NA_real_ else as.double(expert$df))
}

expert_npar.moe_expert_t <- function(expert, p) p + t_estimates_df(expert)

expert_par_names.moe_expert_t <- function(expert, xnames) {
  c(xnames, if (t_estimates_df(expert)) "df")
}

# The rows of the coefficients in a P_e x K parameter matrix.
t_coef_rows <- function(expert, alpha) {
  seq_len(nrow(alpha) - t_estimates_df(expert))
}

expert_mean.moe_expert_t <- function(expert, X, alpha) {
  alpha <- as.matrix(alpha)
  X %*% alpha[t_coef_rows(expert, alpha), , drop = FALSE]
}

# The degrees of freedom of the K experts of `par`.
expert_df.moe_expert_t <- function(expert, par) {
  if (t_estimates_df(expert)) {
    alpha <- as.matrix(par$alpha)
    alpha[nrow(alpha), ]
  } else rep(expert$df, length(par$sigma2))
}

expert_to_original.moe_expert_t <- function(expert, sc, alpha) {
  alpha <- as.matrix(alpha)
  i <- t_coef_rows(expert, alpha)
  alpha[i, ] <- expert_to_original(expert_linear(), sc, alpha[i, , drop = FALSE])
  alpha
}

expert_to_internal.moe_expert_t <- function(expert, sc, alpha) {
  alpha <- as.matrix(alpha)
  i <- t_coef_rows(expert, alpha)
  alpha[i, ] <- expert_to_internal(expert_linear(), sc, alpha[i, , drop = FALSE])
  alpha
}

# The df estimated on a bound of t_df_bounds (at the upper one the expert is
# Gaussian and its information about df vanishes): their positions in the
# par_flatten() layout (P_e + 1 entries per expert, df the P_e-th).
expert_bound_index.moe_expert_t <- function(expert, par) {
  if (!t_estimates_df(expert)) return(integer())
  df <- expert_df(expert, par)
  pe <- nrow(as.matrix(par$alpha))
  at <- df >= t_df_bounds[2L] * (1 - 1e-3) | df <= t_df_bounds[1L] * (1 + 1e-3)
  (which(at) - 1L) * (pe + 1L) + pe
}

# Relabelling features: the coefficients on the internal scale and log df.
expert_features.moe_expert_t <- function(expert, sc, A) {
  A <- as.matrix(A)
  if (!t_estimates_df(expert)) return(expert_features(expert_linear(), sc, A))
  P <- ncol(A)
  cbind(expert_features(expert_linear(), sc, A[, -P, drop = FALSE]), log(A[, P]))
}

# EM starting parameters: zero coefficients and an unset df (the first
# M-step starts the ECME rounds from df = 10).
expert_start.moe_expert_t <- function(expert, p, K) {
  matrix(0, expert_npar(expert, p), K)
}

# Metropolis blocks of the Gibbs sampler: one per expert when df is
# estimated, src/family_t.c's T_MH_STEPS steps per sweep.
expert_accept_names.moe_expert_t <- function(expert, K) {
  if (t_estimates_df(expert)) paste0("df:expert", seq_len(K)) else character()
}
expert_accept_scale.moe_expert_t <- function(expert) 3

# Adaptation state: K log step sizes of the log-df random walks (log 0.5)
# and K adaptation counts.
expert_state_init.moe_expert_t <- function(expert, K) {
  if (t_estimates_df(expert)) c(rep(log(0.5), K), rep(0, K)) else numeric()
}

# A draw from the prior (internal scale) of a parameter list `par` of
# linear experts (prior_draw_spec()) completed for Student-t experts: the
# degrees of freedom from their truncated Gamma prior as a last row of alpha.
t_complete_draw <- function(par, pc, K) {
  if (t_estimates_df(spec_expert(par$spec))) {
    par$alpha <- rbind(par$alpha, t_df_prior_draw(pc, K))
  }
  par
}

# K draws of df from Gamma(df_shape, rate df_rate) truncated to t_df_bounds.
t_df_prior_draw <- function(pc, K) {
  lo <- stats::pgamma(t_df_bounds[1L], pc$df_shape, pc$df_rate)
  hi <- stats::pgamma(t_df_bounds[2L], pc$df_shape, pc$df_rate)
  df <- stats::qgamma(lo + (hi - lo) * stats::runif(K), pc$df_shape, pc$df_rate)
  # extreme priors put (nearly) all their mass beyond a bound: stay inside
  df[!is.finite(df)] <- if (lo >= 0.5) t_df_bounds[2L] else t_df_bounds[1L]
  pmin(pmax(df, t_df_bounds[1L]), t_df_bounds[2L])
}

# Marginal likelihood pieces (R/marglik.R, "expert families"): in the
# bridge-sampling coordinates an expert is its p coefficients, log sigma2
# and, when estimated, log df (r = 2); the prior is the normal /
# inverse-gamma of linear experts (the default methods, reached by
# NextMethod()) times the Gamma(df_shape, df_rate) prior of df truncated to
# t_df_bounds, with the Jacobians of both logs. No complete-data mixture:
# bridge sampling uses the normal importance density.
ml_supported.moe_expert_t <- function(expert) TRUE

ml_extra.moe_expert_t <- function(expert) 1L + t_estimates_df(expert)

ml_ncoef.moe_expert_t <- function(expert, P_e) P_e - t_estimates_df(expert)

ml_extra_from_par.moe_expert_t <- function(expert, par) {
  K <- dim(par$alpha)[2L]
  S <- dim(par$alpha)[3L]
  E <- as.vector(log(par$sigma2))
  if (t_estimates_df(expert)) {
    E <- rbind(E, as.vector(log(par$alpha[dim(par$alpha)[1L], , ])))
  }
  array(E, c(1L + t_estimates_df(expert), K, S))
}

ml_par_from_extra.moe_expert_t <- function(expert, A, E) {
  K <- dim(A)[2L]
  S <- dim(A)[3L]
  if (t_estimates_df(expert)) {
    p <- dim(A)[1L]
    B <- array(0, c(p + 1L, K, S))
    B[seq_len(p), , ] <- A
    B[p + 1L, , ] <- exp(E[2L, , ])
    A <- B
  }
  list(alpha = A, sigma2 = matrix(exp(E[1L, , ]), K, S))
}

ml_log_prior_experts.moe_expert_t <- function(expert, par, pc) {
  if (!t_estimates_df(expert)) return(NextMethod())
  P <- dim(par$alpha)[1L]
  df <- matrix(par$alpha[P, , ], dim(par$alpha)[2L], dim(par$alpha)[3L])
  lz <- log(stats::pgamma(t_df_bounds[2L], pc$df_shape, pc$df_rate) -
              stats::pgamma(t_df_bounds[1L], pc$df_shape, pc$df_rate))
  ld <- stats::dgamma(df, pc$df_shape, pc$df_rate, log = TRUE) + log(df) - lz
  ld[df < t_df_bounds[1L] | df > t_df_bounds[2L] | !is.finite(ld)] <- -Inf
  par$alpha <- par$alpha[-P, , , drop = FALSE]
  NextMethod() + colSums(ld)
}

ml_expert_logdens.moe_expert_t <- function(expert, par, k, s) {
  P <- dim(par$alpha)[1L]
  S <- dim(par$alpha)[3L]
  p <- P - t_estimates_df(expert)
  n <- length(s$y)
  mu <- s$X %*% matrix(par$alpha[seq_len(p), k, ], p, S)
  df <- if (t_estimates_df(expert)) par$alpha[P, k, ] else rep(expert$df, S)
  noise_logpdf(s$y, mu, rep(sqrt(par$sigma2[k, ]), each = n), rep(df, each = n))
}

# The prior draw of linear experts (the default method) with the df drawn
# from their prior as a last row of alpha.
ml_prior_draw.moe_expert_t <- function(expert, pc, K) {
  par <- NextMethod()
  if (t_estimates_df(expert)) par$alpha <- rbind(par$alpha, t_df_prior_draw(pc, K))
  par
}

# MTM atoms of t experts: coefficients and sigma2 as for Gaussian experts
# (df, on a scale of its own, does not locate an atom).
mtm_expert_atoms.moe_expert_t <- function(expert, dr, xnames) {
  if (t_estimates_df(expert)) dr$alpha <- dr$alpha[-dim(dr$alpha)[1L], , , drop = FALSE]
  NextMethod()
}
