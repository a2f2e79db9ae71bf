# The draws of Bayesian fits (class "moe_mcmc") for other packages and the
# summaries computed from them.
#
# Exported draws: the parameters relabelled as coef() and summary() use them
# (relabelled_draws(), R/relabel.R; `relabel = FALSE` gives the draws as
# sampled) and the label-invariant total log-likelihood `loglik` of each draw.
# Conversions: every posterior::as_draws_*() form, coda::as.mcmc() and
# coda::as.mcmc.list(), as.data.frame(). Predictive draws under the
# rstantools names: posterior_predict(), posterior_epred() (log_lik() lives in
# R/mcmc-methods.R). loo() and waic(), and confint() / vcov() from the
# relabelled draws. Methods for generics of packages in Suggests are
# registered in .onLoad() (R/zzz.R).

# ---------------------------------------------------------------------------
# Draws in every format

#' Draws of a Bayesian fit for posterior, coda, bayesplot and data frames
#'
#' Methods that turn a fit from [moe_mcmc()] into the draws objects of the
#' posterior and coda packages, and into a data frame, so that tools built on
#' them (`posterior::summarise_draws()`, `coda::gelman.diag()`, the
#' `mcmc_*()` plots of bayesplot) work on a fit.
#'
#' @section Which draws:
#' The variables are the parameters in the layout of [coef()] (expert
#' coefficients and variances, then the gating coefficients), **relabelled**
#' as `coef()`, `summary()` and [confint.moe_mcmc()] use them: the
#' relabelling stored by [moe_relabel()] when the fit has one for these
#' draws, otherwise the default relabelling computed on the fly. A last
#' variable `loglik` holds the total log-likelihood of each draw, which does
#' not depend on the expert labels. With `relabel = FALSE` the parameters are
#' the draws as sampled, whose labels may switch within and between chains
#' (use them to see label switching, not to summarise experts).
#' Warm-up draws are never stored, so never exported. Draws a stopped chain
#' left unfilled are `NA`.
#'
#' @section Formats:
#' * `posterior::as_draws()` and `posterior::as_draws_array()`: a
#'   `draws_array` (iterations x chains x variables); `as_draws_df()`,
#'   `as_draws_matrix()`, `as_draws_list()` and `as_draws_rvars()` the other
#'   formats of posterior (one `rvar` per variable for `as_draws_rvars()`).
#'   Iterations are numbered from 1 within each chain, as posterior does.
#' * `coda::as.mcmc.list()`: an `mcmc.list`, one `mcmc` per chain with the
#'   iterations of the sampler (from `warmup + thin` by `thin`).
#'   `coda::as.mcmc()`: the single chain of a one-chain fit as an `mcmc`; for
#'   several chains the `mcmc.list` (as brms does; the chains are not one
#'   Markov chain), or with `combine_chains = TRUE` one `mcmc` of the chains
#'   stacked.
#' * `as.data.frame()`: one row per draw (chain 1 first), one column per
#'   variable, then the columns `.chain`, `.iteration` and `.draw` of a
#'   posterior `draws_df`; it needs no other package.
#'
#' The posterior and coda methods are registered when bayesmoe is loaded,
#' or when posterior or coda is loaded later, so `posterior::as_draws_df(fit)`
#' works without attaching either package. bayesplot takes the results
#' directly: `bayesplot::mcmc_trace(posterior::as_draws_array(fit))`; for
#' posterior predictive checks see [posterior_predict.moe_mcmc()].
#'
#' @param x A fit from [moe_mcmc()].
#' @param relabel `TRUE` (the default) for relabelled parameters, `FALSE`
#'   for the draws as sampled; see "Which draws".
#' @param combine_chains For `as.mcmc()` with several chains: `FALSE` (the
#'   default) returns an `mcmc.list`, `TRUE` one `mcmc` of the stacked chains.
#' @param row.names,optional Not used (arguments of the generic).
#' @param ... Unused.
#' @return The draws in the requested format: see "Formats".
#' @seealso [moe_relabel()] for the relabelling; [log_lik()],
#'   [posterior_predict.moe_mcmc()] and [loo.moe_mcmc()] for the rstantools
#'   and loo methods.
#' @examples
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                 chains = 2, iter = 300, seed = 1)
#' d <- as.data.frame(fit)
#' head(d[, c("expert1:stretchratio", "loglik", ".chain", ".iteration", ".draw")])
#' if (requireNamespace("posterior", quietly = TRUE)) {
#'   a <- posterior::as_draws_array(fit)
#'   posterior::summarise_draws(a)
#'   posterior::as_draws_df(fit, relabel = FALSE)
#' }
#' if (requireNamespace("coda", quietly = TRUE)) {
#'   coda::gelman.diag(coda::as.mcmc.list(fit), autoburnin = FALSE)
#' }
#' if (requireNamespace("bayesplot", quietly = TRUE) &&
#'     requireNamespace("posterior", quietly = TRUE)) {
#'   bayesplot::mcmc_trace(posterior::as_draws_array(fit),
#'                         pars = c("expert2:stretchratio", "loglik"))
#' }
#' @name moe_draws
NULL

# The draws with the log-likelihood as one more variable (iterations x
# chains x variables).
draws_with_loglik <- function(x, relabel) {
  validate_moe_fit(x, "x")
  draws <- if (isTRUE(relabel)) relabelled_draws(x) else x$draws
  d <- dim(draws)
  array(c(draws, x$loglik_draws), c(d[1L], d[2L], d[3L] + 1L),
        list(iteration = NULL, chain = dimnames(draws)[[2L]],
             variable = c(dimnames(draws)[[3L]], "loglik")))
}

check_relabel_arg <- function(relabel, call) check_flag(relabel, "relabel", call)

#' @rdname moe_draws
#' @method as_draws_array moe_mcmc
as_draws_array.moe_mcmc <- function(x, relabel = TRUE, ...) {
  relabel <- check_relabel_arg(relabel, sys.call())
  a <- draws_with_loglik(x, relabel)
  dimnames(a)[[2L]] <- seq_len(dim(a)[2L])
  posterior::as_draws_array(a)
}

#' @rdname moe_draws
#' @method as_draws moe_mcmc
as_draws.moe_mcmc <- function(x, relabel = TRUE, ...) {
  relabel <- check_relabel_arg(relabel, sys.call())
  as_draws_array.moe_mcmc(x, relabel)
}

#' @rdname moe_draws
#' @method as_draws_df moe_mcmc
as_draws_df.moe_mcmc <- function(x, relabel = TRUE, ...) {
  relabel <- check_relabel_arg(relabel, sys.call())
  posterior::as_draws_df(as_draws_array.moe_mcmc(x, relabel))
}

#' @rdname moe_draws
#' @method as_draws_matrix moe_mcmc
as_draws_matrix.moe_mcmc <- function(x, relabel = TRUE, ...) {
  relabel <- check_relabel_arg(relabel, sys.call())
  posterior::as_draws_matrix(as_draws_array.moe_mcmc(x, relabel))
}

#' @rdname moe_draws
#' @method as_draws_list moe_mcmc
as_draws_list.moe_mcmc <- function(x, relabel = TRUE, ...) {
  relabel <- check_relabel_arg(relabel, sys.call())
  posterior::as_draws_list(as_draws_array.moe_mcmc(x, relabel))
}

#' @rdname moe_draws
#' @method as_draws_rvars moe_mcmc
as_draws_rvars.moe_mcmc <- function(x, relabel = TRUE, ...) {
  relabel <- check_relabel_arg(relabel, sys.call())
  posterior::as_draws_rvars(as_draws_array.moe_mcmc(x, relabel))
}

#' @rdname moe_draws
#' @method as.mcmc.list moe_mcmc
as.mcmc.list.moe_mcmc <- function(x, relabel = TRUE, ...) {
  relabel <- check_relabel_arg(relabel, sys.call())
  a <- draws_with_loglik(x, relabel)
  thin <- x$thin
  start <- x$warmup + thin
  coda::mcmc.list(lapply(seq_len(dim(a)[2L]), function(j) {
    coda::mcmc(matrix(a[, j, ], dim(a)[1L], dim(a)[3L],
                      dimnames = list(NULL, dimnames(a)[[3L]])),
               start = start, thin = thin)
  }))
}

#' @rdname moe_draws
#' @method as.mcmc moe_mcmc
as.mcmc.moe_mcmc <- function(x, relabel = TRUE, combine_chains = FALSE, ...) {
  call <- sys.call()
  relabel <- check_relabel_arg(relabel, call)
  combine_chains <- check_flag(combine_chains, "combine_chains", call)
  m <- as.mcmc.list.moe_mcmc(x, relabel)
  if (length(m) == 1L) return(m[[1L]])
  if (!combine_chains) return(m)
  coda::mcmc(do.call(rbind, lapply(m, unclass_mcmc)))
}

unclass_mcmc <- function(m) {
  attr(m, "mcpar") <- NULL
  unclass(m)
}

#' @rdname moe_draws
#' @export
as.data.frame.moe_mcmc <- function(x, row.names = NULL, optional = FALSE, relabel = TRUE, ...) {
  relabel <- check_relabel_arg(relabel, sys.call())
  a <- draws_with_loglik(x, relabel)
  d <- dim(a)
  out <- as.data.frame(matrix(a, d[1L] * d[2L], d[3L],
                              dimnames = list(NULL, dimnames(a)[[3L]])),
                       optional = TRUE)
  out$.chain <- rep(seq_len(d[2L]), each = d[1L])
  out$.iteration <- rep(seq_len(d[1L]), d[2L])
  out$.draw <- seq_len(d[1L] * d[2L])
  out
}

# ---------------------------------------------------------------------------
# Predictive draws (rstantools generics)

#' Posterior predictive draws of a Bayesian fit
#'
#' `posterior_predict()` draws responses from the posterior predictive
#' distribution: for each posterior draw \eqn{\theta} a response for every
#' observation from \eqn{p(y \mid x, z, \theta)} (an expert drawn from the
#' gating probabilities, then a normal response from it).
#' `posterior_epred()` returns the predictive mean
#' \eqn{E(y \mid x, z, \theta) = \sum_k g_k(z; \theta) \mu_k(x; \theta)} of
#' every observation under every draw. Both are label invariant and use the
#' draws as sampled.
#'
#' These are methods for the generics of the rstantools package (as in
#' rstanarm and brms); they are registered when rstantools is loaded, so
#' call them as `rstantools::posterior_predict(fit)` or after
#' `library(rstantools)` (or of a package that re-exports the generics, such
#' as rstanarm or brms). The matrices are what bayesplot's `ppc_*()`
#' functions take as `yrep`: `bayesplot::ppc_dens_overlay(y, yrep)`.
#' [simulate()] gives the same kind of draws as a data frame with one column
#' per simulation (`t(as.matrix(simulate(fit, nsim)))` is a `yrep`).
#'
#' @param object A fit from [moe_mcmc()].
#' @param newdata `NULL` (the data of the fit) or a data frame with the
#'   covariates (a response in it is ignored). Rows with a missing covariate
#'   give `NA` columns.
#' @param draws `NULL` (every draw) or the number of draws to use, evenly
#'   spread over the chains and iterations, as `ndraws` of
#'   [predict.moe_mcmc()].
#' @param seed For `posterior_predict()`: `NULL` or a seed; with a seed the
#'   caller's RNG state is left untouched.
#' @param ... Unused.
#' @return A draws x observations matrix (one row per posterior draw, chains
#'   stacked; columns named by the rows of the data).
#' @seealso [log_lik()] (also a method for `rstantools::log_lik()`),
#'   [moe_draws] for the parameter draws.
#' @examples
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                 chains = 2, iter = 300, seed = 1)
#' if (requireNamespace("rstantools", quietly = TRUE)) {
#'   yrep <- rstantools::posterior_predict(fit, draws = 50, seed = 2)
#'   dim(yrep)
#'   mu <- rstantools::posterior_epred(fit, data.frame(stretchratio = c(1.5, 2.5)))
#'   colMeans(mu)
#'   if (requireNamespace("bayesplot", quietly = TRUE)) {
#'     bayesplot::ppc_dens_overlay(tonedata$tuned, yrep)
#'   }
#' }
#' @name posterior_predict.moe_mcmc
NULL

# The design of `newdata` (the fit's data when NULL) and the draws (rows of
# the N x P matrix of complete draws as sampled) chosen by `draws`.
predictive_setup <- function(object, newdata, draws, call) {
  validate_moe_fit(object, "object", call)
  des <- if (is.null(newdata)) fit_design(object) else
    new_design(object, newdata)
  D <- draws_matrix(object, complete = TRUE)
  if (!is.null(draws)) {
    draws <- check_number(draws, "draws", lower = 1, upper = nrow(D), whole = TRUE, call = call)
    D <- D[unique(round(seq(1, nrow(D), length.out = draws))), , drop = FALSE]
  }
  list(des = des, D = D, p = ncol(object$X), q = ncol(object$Z), K = object$K,
       spec = fit_spec(object))
}

#' @rdname posterior_predict.moe_mcmc
#' @method posterior_predict moe_mcmc
posterior_predict.moe_mcmc <- function(object, newdata = NULL, draws = NULL, seed = NULL,
                                       ...) {
  call <- sys.call()
  seed <- check_seed(seed, call)
  s <- predictive_setup(object, newdata, draws, call)
  n <- nrow(s$des$X)
  out <- with_seed(seed, t(vapply(seq_len(nrow(s$D)), function(i) {
    par <- par_unflatten(s$D[i, ], s$p, s$q, s$K, s$spec)
    cm <- moe_components(par, s$des$X, s$des$Z, s$des$offset)
    k <- draw_expert(exp(cm$log_gate), runif(n))
    mk <- cm$mean[cbind(seq_len(n), k)]
    if (is_glm_expert(s$spec$expert)) glm_simulate(s$spec$expert, mk, s$des$trials) else
      noise_draw(mk, cm$sd[k], cm$df[k])
  }, numeric(n))))
  dim(out) <- c(nrow(s$D), n)
  dimnames(out) <- list(NULL, rownames(s$des$X))
  out
}

#' @rdname posterior_predict.moe_mcmc
#' @method posterior_epred moe_mcmc
posterior_epred.moe_mcmc <- function(object, newdata = NULL, draws = NULL, ...) {
  s <- predictive_setup(object, newdata, draws, sys.call())
  n <- nrow(s$des$X)
  out <- t(vapply(seq_len(nrow(s$D)), function(i) {
    cm <- moe_components(par_unflatten(s$D[i, ], s$p, s$q, s$K, s$spec), s$des$X, s$des$Z,
                         s$des$offset)
    rowSums(exp(cm$log_gate) * cm$mean)
  }, numeric(n)))
  dim(out) <- c(nrow(s$D), n)
  dimnames(out) <- list(NULL, rownames(s$des$X))
  out
}

# One expert per row of the n x K gating probabilities `g`, by inversion of
# the uniforms `u`; NA for rows with missing probabilities.
draw_expert <- function(g, u) {
  K <- ncol(g)
  if (K == 1L) return(ifelse(is.na(g[, 1L]), NA_integer_, 1L))
  cum <- g[, 1L]
  k <- rep(1L, nrow(g))
  for (j in seq_len(K - 1L)) {
    k <- k + (u > cum)
    if (j < K - 1L) cum <- cum + g[, j + 1L]
  }
  k[is.na(k)] <- NA_integer_
  k
}

# posterior_predict(), posterior_epred(), log_lik(), loo() and waic() of
# other fits (registered for class "moe_fit", so EM fits get a classed error
# rather than "no applicable method").
# `arg` names the first argument of the generic.
mcmc_only_method <- function(arg = "object") {
  force(arg)
  function(object, ...) {
    abort(sprintf("`%s` must be a fit from `moe_mcmc()`, not %s.", arg, describe_fit(object)),
          call = sys.call(), arg = arg)
  }
}

# ---------------------------------------------------------------------------
# loo and WAIC

#' Leave-one-out cross-validation and WAIC of a Bayesian fit
#'
#' Methods for [loo::loo()] and [loo::waic()]: the pointwise log-likelihood
#' of [log_lik()] (label invariant, draws as sampled; observations with zero
#' weight left out, case weights multiply the log density) as a draws x
#' observations matrix, with the relative efficiencies of
#' `loo::relative_eff()` computed per chain (the draws of each chain as one
#' Markov chain). The results are ordinary loo objects: compare fits with
#' `loo::loo_compare()`. Draws a stopped chain left unfilled are dropped
#' (the efficiencies then use the first draws of every chain up to the
#' length of the shortest).
#' The methods are registered when loo is loaded.
#'
#' @param x A fit from [moe_mcmc()].
#' @param r_eff `NULL` (computed per chain as described) or the relative
#'   efficiencies, one per observation, as [loo::loo()] takes them.
#' @param cores Number of cores loo uses.
#' @param ... Further arguments of `loo::loo.matrix()` (such as
#'   `save_psis`) or `loo::waic.matrix()`.
#' @return An object of class `psis_loo` (`loo()`) or `waic` (`waic()`).
#' @examples
#' set.seed(1)
#' sim <- rmoe(300, moe_truth_example("p4"))
#' fit1 <- moe_mcmc(y ~ x, data = sim, K = 1, chains = 2, iter = 600, seed = 1)
#' fit2 <- moe_mcmc(y ~ x, data = sim, K = 2, chains = 2, iter = 600, seed = 1)
#' if (requireNamespace("loo", quietly = TRUE)) {
#'   l1 <- loo::loo(fit1)
#'   l2 <- loo::loo(fit2)
#'   print(l2)
#'   print(loo::loo_compare(l1, l2))
#'   # WAIC flags observations near a sharp gating boundary (p_waic > 0.4)
#'   # more readily than PSIS-LOO does; shown here for the one-expert fit
#'   print(loo::waic(fit1))
#' }
#' @name loo.moe_mcmc
NULL

# The pointwise log-likelihood as a complete draws x observations matrix
# and the chain of every row.
loglik_matrix <- function(x) {
  ll <- log_lik(x)
  d <- dim(ll)
  M <- matrix(ll, d[1L] * d[2L], d[3L], dimnames = list(NULL, dimnames(ll)[[3L]]))
  chain <- rep(seq_len(d[2L]), each = d[1L])
  ok <- stats::complete.cases(M)
  list(ll = M[ok, , drop = FALSE], chain = chain[ok])
}

#' @rdname loo.moe_mcmc
#' @method loo moe_mcmc
loo.moe_mcmc <- function(x, ..., r_eff = NULL, cores = getOption("mc.cores", 1)) {
  m <- loglik_matrix(x)
  if (is.null(r_eff)) r_eff <- chain_relative_eff(m$ll, m$chain, cores)
  loo::loo(m$ll, r_eff = r_eff, cores = cores, ...)
}

# Relative efficiencies of exp(ll) (draws x observations, chain of every
# row in `chain`) from loo::relative_eff() per chain. It needs chains of one
# length: when a stopped chain is shorter, every chain contributes its first
# draws up to the shortest length. The efficiencies do not depend on the
# scale of the likelihood values, so the column maxima are subtracted first
# (no underflow in exp()).
chain_relative_eff <- function(ll, chain, cores) {
  len <- tabulate(chain)
  m <- min(len[len > 0L])
  keep <- unlist(lapply(which(len > 0L), function(j) which(chain == j)[seq_len(m)]))
  ll <- ll[keep, , drop = FALSE]
  mx <- apply(ll, 2L, max)
  loo::relative_eff(exp(sweep(ll, 2L, mx)), chain_id = chain[keep], cores = cores)
}

#' @rdname loo.moe_mcmc
#' @method waic moe_mcmc
waic.moe_mcmc <- function(x, ...) {
  loo::waic(loglik_matrix(x)$ll, ...)
}

# ---------------------------------------------------------------------------
# Credible intervals and posterior covariance

#' Credible intervals and posterior covariance of a Bayesian fit
#'
#' `confint()` gives equal-tailed credible intervals, the
#' \eqn{(1 - level)/2} and \eqn{(1 + level)/2} quantiles of the relabelled
#' draws of each parameter, in the layout of [stats::confint()] for `lm`
#' fits (one row per parameter, columns named by the percentages).
#' `vcov()` is the posterior covariance matrix of the relabelled draws. Both
#' use the draws [coef()] averages (see [moe_draws] for the relabelling;
#' draws a stopped chain left unfilled are dropped).
#'
#' @param object A fit from [moe_mcmc()].
#' @param parm Parameters: names as in `names(coef(object))` or their
#'   positions; missing means all.
#' @param level Probability of the intervals.
#' @param ... Unused.
#' @return `confint()`: a matrix with one row per parameter and two columns;
#'   `vcov()`: a square matrix with the parameter names as dimnames.
#' @examples
#' fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2,
#'                 chains = 2, iter = 300, seed = 1)
#' confint(fit)
#' confint(fit, c("expert1:stretchratio", "expert2:stretchratio"), level = 0.9)
#' sqrt(diag(vcov(fit)))
#' @importFrom stats confint
#' @export
confint.moe_mcmc <- function(object, parm, level = 0.95, ...) {
  validate_moe_fit(object, "object")
  call <- sys.call()
  level <- check_level(level, call)
  D <- draws_matrix(object, relabel = TRUE, complete = TRUE)
  pnames <- colnames(D)
  if (!missing(parm)) {
    ok <- if (is.character(parm)) length(parm) && !anyNA(parm) && all(parm %in% pnames) else
      is.numeric(parm) && length(parm) && !anyNA(parm) && all(parm == round(parm)) &&
      all(parm >= 1 & parm <= length(pnames))
    if (!ok) {
      abort(sprintf("`parm` must name parameters of the fit (such as \"%s\") or give their positions (1 to %d), not %s.",
                    pnames[1L], length(pnames), describe(parm)), call = call, arg = "parm")
    }
    pnames <- if (is.character(parm)) parm else pnames[parm]
  }
  a <- (1 - level) / 2
  probs <- c(a, 1 - a)
  lim <- column_limits(D[, pnames, drop = FALSE], level)
  out <- t(lim)
  dimnames(out) <- list(pnames, paste(format(100 * probs, trim = TRUE, scientific = FALSE,
                                             digits = 3), "%"))
  out
}

#' @rdname confint.moe_mcmc
#' @export
vcov.moe_mcmc <- function(object, ...) {
  validate_moe_fit(object, "object")
  stats::cov(draws_matrix(object, relabel = TRUE, complete = TRUE))
}
