# Expert families: the expert objects (expert_linear() here,
# expert_ffn() in R/family-ffn.R) and the generics every function that
# receives a parameter list dispatches on for its expert part; their C side
# is src/family_*.c (family_codes and expert_c() are what C receives).
#
# Generics (S3 on the expert objects):
#   expert_mean(expert, X, alpha)       n x K expert means
#   expert_npar(expert, p)              P_e, parameters per expert (no sigma2)
#   expert_par_names(expert, xnames)    their names
#   expert_to_original(expert, sc, alpha), expert_to_internal(expert, sc, alpha)
#   expert_features(expert, sc, A)      relabelling features of one expert
#                                       over draws (rows of A, original scale)
#   expert_c(expert), expert_design(expert, X), expert_start(expert, p, K)
#                                       the family as the C engine takes it,
#                                       its design and EM starting values
#   expert_label(), expert_call()       descriptions for printing

#' Experts of a mixture of experts
#'
#' Expert objects choose the form of each expert's mean; pass one as
#' `expert =` to [moe_em()] or [moe_mcmc()]. `expert_linear()`, the default,
#' is the linear-Gaussian expert \eqn{y \mid x \sim N(x^\top a_k,
#' \sigma_k^2)} with the covariates of the model formula.
#'
#' @param x An expert object.
#' @param ... Unused.
#' @return An object of class `c("moe_expert_<type>", "moe_expert")`.
#' @seealso [gate_softmax()] and the other gates.
#' @examples
#' expert_linear()
#' @name moe_experts
NULL

#' @rdname moe_experts
#' @export
expert_linear <- function() {
  structure(list(type = "linear"), class = c("moe_expert_linear", "moe_expert"))
}

#' @rdname moe_experts
#' @export
print.moe_expert <- function(x, ...) {
  cat("<moe_expert> ", expert_label(x), " experts\n", sep = "")
  invisible(x)
}

expert_label <- function(expert) UseMethod("expert_label")

expert_label.NULL <- function(expert) "linear-Gaussian"

expert_label.moe_expert_linear <- function(expert) "linear-Gaussian"

expert_label.moe_expert <- function(expert) paste(expert$type, "Gaussian")

family_codes <- c(linear = 0L, ffn = 1L, binomial = 2L, poisson = 3L, t = 4L)

# The expert family in the form the C code takes (make_family() in
# src/ffi.c): its integer code.
expert_c <- function(expert) UseMethod("expert_c")

expert_c.moe_expert_linear <- function(expert) list(type = family_codes[["linear"]])

# The design the family's C kernels take (the expert design for linear
# experts) and the starting expert parameters of an EM run (zeros: the first
# M-step solves them).
expert_design <- function(expert, X) UseMethod("expert_design")

expert_design.moe_expert <- function(expert, X) X

expert_start <- function(expert, p, K) UseMethod("expert_start")

expert_start.moe_expert <- function(expert, p, K) matrix(0, p, K)

expert_mean <- function(expert, X, alpha) UseMethod("expert_mean")

expert_mean.moe_expert_linear <- function(expert, X, alpha) X %*% alpha

expert_npar <- function(expert, p) UseMethod("expert_npar")

expert_npar.moe_expert_linear <- function(expert, p) p

expert_par_names <- function(expert, xnames) UseMethod("expert_par_names")

expert_par_names.moe_expert_linear <- function(expert, xnames) xnames

expert_to_original <- function(expert, sc, alpha) UseMethod("expert_to_original")

expert_to_original.moe_expert_linear <- function(expert, sc, alpha) {
  alpha <- sc$sy * (sc$x$T %*% alpha)
  if (sc$x$intercept > 0L) alpha[sc$x$intercept, ] <- alpha[sc$x$intercept, ] + sc$my
  alpha
}

expert_to_internal <- function(expert, sc, alpha) UseMethod("expert_to_internal")

expert_to_internal.moe_expert_linear <- function(expert, sc, alpha) {
  if (sc$x$intercept > 0L) alpha[sc$x$intercept, ] <- alpha[sc$x$intercept, ] - sc$my
  scaling_inverse(sc$x) %*% alpha / sc$sy
}

# Relabelling features of one expert over N draws: A is N x P_e (original
# scale, one row per draw); returns an N x f matrix on the internal scale.
expert_features <- function(expert, sc, A) UseMethod("expert_features")

expert_features.moe_expert_linear <- function(expert, sc, A) {
  t(expert_to_internal(expert, sc, t(A)))
}

expert_call <- function(expert) UseMethod("expert_call")

expert_call.moe_expert <- function(expert) sprintf("expert_%s()", expert$type)

# The noise model of the experts at one parameter set: NULL for Gaussian
# noise, else the K degrees of freedom of Student-t noise (R/family-t.R).
expert_df <- function(expert, par) UseMethod("expert_df")

expert_df.default <- function(expert, par) NULL

# What `sigma2` and `sigma` of the experts are, for printing.
expert_noise_label <- function(expert) UseMethod("expert_noise_label")

expert_noise_label.default <- function(expert) "variance sigma2 and sd sigma"

# Positions (in the par_flatten() layout) of the expert parameters of `par`
# estimated on a bound of their range, which vcov() holds fixed: none for
# Gaussian experts.
expert_bound_index <- function(expert, par) UseMethod("expert_bound_index")

expert_bound_index.default <- function(expert, par) integer()

# Log density, distribution function, quantiles and draws of the noise
# model of moe_components(): location `mean`, scale `sd` and, for Student-t
# experts, degrees of freedom `df` (NULL: Gaussian), recycled as dnorm() does.
noise_logpdf <- function(x, mean, sd, df = NULL) {
  if (is.null(df)) return(dnorm(x, mean, sd, log = TRUE))
  stats::dt((x - mean) / sd, df, log = TRUE) - log(sd)
}

noise_cdf <- function(x, mean, sd, df = NULL) {
  if (is.null(df)) return(pnorm(x, mean, sd))
  stats::pt((x - mean) / sd, df)
}

noise_quantile <- function(p, mean, sd, df = NULL) {
  if (is.null(df)) return(stats::qnorm(p, mean, sd))
  mean + sd * stats::qt(p, df)
}

# Variances of the experts from their squared scales sigma2 (Inf for
# Student-t experts with df <= 2).
noise_var <- function(sigma2, df = NULL) {
  if (is.null(df)) return(sigma2)
  ifelse(df > 2, sigma2 * df / pmax(df - 2, 1e-300), Inf)
}

noise_draw <- function(mean, sd, df = NULL) {
  if (is.null(df)) return(mean + sd * rnorm(length(mean)))
  mean + sd * stats::rt(length(mean), df)
}

#' Response families of the experts
#'
#' The `family` argument of [moe_em()] and [moe_mcmc()] chooses the
#' distribution of the response given its expert, the way [glm()]'s does:
#' pass a family object (`gaussian()`), the family function (`gaussian`) or
#' its name (`"gaussian"`). `gaussian()` with the identity link, the
#' default, gives the linear-Gaussian experts of [expert_linear()] (or the
#' network experts of [expert_ffn()]). Other families give linear experts
#' with that family's noise model; each is documented with its constructor:
#' [student_t()] (linear experts with Student-t noise, robust to outliers;
#' degrees of freedom estimated per expert or fixed), `binomial()` (logit
#' link) and `poisson()` (log link) in [moe_glm_experts]. The vignette
#' "Beyond Gaussian experts" shows each on data.
#' A family or link the package does not support is refused with an error of
#' class `bayesmoe_error_family`.
#'
#' @name moe_families
#' @seealso [moe_experts] for the form of the experts' means.
NULL
