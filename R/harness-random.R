# One replicate of a contraction study with a random number of experts
# (moe_contraction(K = prior_K(...))): fixed-K Gibbs fits for every K the
# prior on K charges, their marginal likelihoods (moe_marglik()), the
# posterior over K, the density losses of the model-averaged posterior and
# the two K-selection strategies (posterior over K; Merge-Truncate-Merge of
# the largest fit).
#
# The model-averaged posterior is the mixture over K of the fixed-K
# posteriors with weights P(K = k | y) (a mixture of finite mixtures, Miller
# and Harrison 2018): a draw from it is a draw of K from the posterior over
# K followed by a draw from the fixed-K posterior. The posterior mean of a
# loss is therefore sum_k P(K = k | y) E[loss | K = k, y], with each
# conditional mean estimated on the draws of its fit; quantiles are those of
# the draws of all fits pooled with weight P(K = k | y) / S_k per draw.

# Weights below this are treated as zero: the fit is not used for the
# losses (density distances lie in [0, 1], so the error is below it).
random_k_min_weight <- 1e-10

# Run the fits and losses of one simulated data set `sim`; `st` the
# settings of moe_contraction() (prior_K, mcmc, losses, probs,
# density_draws). Uses the session RNG (the task's stream): one seed shared
# by every fixed-K fit (the fit with K = k is the one a fixed-K study with
# K = k would make from the same stream), then one for the marginal
# likelihoods, the Monte Carlo errors of the posterior and MTM.
contraction_random <- function(sim, truth, st) {
  f <- stats::as.formula(paste("y ~", paste(truth$xnames, collapse = " + ")))
  pk <- st$prior_K
  Ks <- which(pk$probs > 0)
  fit_seed <- sample.int(.Machine$integer.max, 1L)
  aux_seed <- sample.int(.Machine$integer.max, 1L)
  cpu <- numeric(length(Ks))
  fits <- lapply(seq_along(Ks), function(i) {
    args <- utils::modifyList(list(formula = f, data = sim, K = Ks[i], seed = fit_seed,
                                   progress = FALSE), st$mcmc)
    t0 <- proc.time()
    fit <- do.call(moe_mcmc, args)
    cpu[i] <<- sum((proc.time() - t0)[c("user.self", "sys.self")], na.rm = TRUE)
    fit
  })
  ml <- random_k_posterior(fits, Ks, pk, aux_seed)
  kstar <- truth$K
  # density losses of the model-averaged posterior
  w <- ml$post
  use <- which(w > random_k_min_weight)
  x <- density_x(NULL, truth$d)
  ta <- loss_atoms(truth)$atoms
  per_fit <- lapply(use, function(i) {
    at <- loss_atoms(fits[[i]])
    idx <- if (at$S > st$density_draws) {
      unique(round(seq(1, at$S, length.out = st$density_draws)))
    } else seq_len(at$S)
    at$atoms <- at$atoms[, , idx, drop = FALSE]
    at$S <- length(idx)
    lapply(setNames(nm = intersect(c("hellinger", "tv"), st$losses)), function(ty) {
      density_loss_atoms(at, ta, x, match(ty, c("hellinger", "tv")) - 1L, 2000L)
    })
  })
  qname <- sprintf("q%g", 100 * st$probs)
  values <- do.call(rbind, lapply(intersect(c("hellinger", "tv"), st$losses), function(ty) {
    v <- lapply(per_fit, `[[`, ty)
    data.frame(loss = ty, statistic = c("mean", qname),
               value = c(model_avg_mean(v, w[use]), model_avg_quantile(v, w[use], st$probs)),
               stringsAsFactors = FALSE)
  }))
  # the two strategies: posterior over K, and MTM of the largest fit
  kk <- Ks
  est <- data.frame(strategy = "posterior", p_true = sum(w[kk == kstar]),
                    p_true_se = if (any(kk == kstar)) ml$post_se[kk == kstar] else 0,
                    mean_K = sum(w * kk), K_hat = kk[which.max(w)], stringsAsFactors = FALSE)
  if (max(Ks) > 1L) {
    m <- moe_mtm(fits[[length(fits)]], weights = "gate", seed = aux_seed)
    kv <- as.integer(names(m$probs))
    est <- rbind(est, data.frame(strategy = "mtm",
                                 p_true = sum(m$probs[kv == kstar]), p_true_se = NA_real_,
                                 mean_K = sum(kv * m$probs), K_hat = m$K_hat,
                                 stringsAsFactors = FALSE))
  }
  post <- data.frame(K = Ks, prior = unname(pk$probs[Ks]), logml = ml$logml,
                     logml_se = ml$logml_se, post = w, post_se = ml$post_se,
                     cpu = cpu)
  best <- fits[[which.max(w)]]
  ll <- best$loglik_draws
  list(values = values, K_post = post, K_est = est, iter = NA_integer_,
       loglik = if (is.null(ll)) NA_real_ else mean(ll), status = "ok")
}

# Posterior over K from the fits (K = Ks) and the prior on K: log marginal
# likelihoods (closed form for K = 1, bridge sampling otherwise), posterior
# probabilities and their Monte Carlo errors (select_posterior()). With one
# K the posterior is that K and no marginal likelihood is computed.
random_k_posterior <- function(fits, Ks, pk, seed) {
  if (length(Ks) == 1L) {
    return(list(logml = NA_real_, logml_se = NA_real_, post = 1, post_se = 0))
  }
  mls <- lapply(fits, function(f) {
    if (f$K == 1L) moe_marglik(f, method = "exact") else moe_marglik(f, seed = seed)
  })
  logml <- vapply(mls, `[[`, 0, "logml")
  se <- vapply(mls, `[[`, 0, "se")
  pp <- select_posterior(logml, se, log(pk$probs[Ks]), seed)
  list(logml = logml, logml_se = se, post = unname(pp$probs), post_se = unname(pp$se))
}

# Posterior mean of a loss under the mixture of fits: `v` a list of per-draw
# values (one vector per fit), `w` the fits' weights (summing to one).
model_avg_mean <- function(v, w) {
  if (length(v) == 1L) return(mean(v[[1L]], na.rm = TRUE))
  sum(w * vapply(v, function(z) mean(z, na.rm = TRUE), 0)) / sum(w)
}

# The `prob` quantile of the draws of every fit pooled, draw j of fit k
# weighted w_k / S_k: the smallest value whose weighted distribution
# function reaches `prob`. With one fit, stats::quantile() of its draws.
model_avg_quantile <- function(v, w, prob) {
  if (length(v) == 1L) return(stats::quantile(v[[1L]], prob, na.rm = TRUE, names = FALSE))
  vals <- unlist(lapply(v, function(z) z[is.finite(z)]))
  wts <- unlist(lapply(seq_along(v), function(k) {
    z <- v[[k]][is.finite(v[[k]])]
    rep(w[k] / max(length(z), 1L), length(z))
  }))
  if (!length(vals)) return(NA_real_)
  o <- order(vals)
  cw <- cumsum(wts[o]) / sum(wts)
  vals[o][min(which(cw >= prob - 1e-12))]
}

# The P(K = k*) table of a random-K study: per strategy and sample size, the
# mean over replicates of P(K = k*), its Monte Carlo standard error (sd /
# sqrt(reps)), the mean of the posterior (or MTM) mean of K and the share of
# replicates whose estimate K_hat is k*.
random_k_table <- function(est, kstar) {
  if (is.null(est) || !nrow(est)) return(NULL)
  out <- do.call(rbind, lapply(split(est, list(est$strategy, est$n), drop = TRUE), function(g) {
    ok <- is.finite(g$p_true)
    data.frame(strategy = g$strategy[1L], n = g$n[1L], reps = sum(ok),
               p_true = mean(g$p_true[ok]),
               se = if (sum(ok) > 1L) stats::sd(g$p_true[ok]) / sqrt(sum(ok)) else NA_real_,
               mean_K = mean(g$mean_K[ok]), K_hat_true = mean(g$K_hat[ok] == kstar),
               stringsAsFactors = FALSE)
  }))
  out <- out[order(match(out$strategy, c("posterior", "mtm")), out$n), ]
  rownames(out) <- NULL
  out
}

# P(K = k*) of every replicate recomputed under another prior on K (`pk`,
# from prior_K(); its K_max must cover the fitted K) from the stored log
# marginal likelihoods: the sensitivity to the prior on K needs no refit.
random_k_reweight <- function(K_post, pk, kstar) {
  do.call(rbind, lapply(split(K_post, list(K_post$n, K_post$rep), drop = TRUE), function(g) {
    lp <- g$logml + log(pk$probs[g$K])
    w <- exp(lp - max(lp))
    w <- w / sum(w)
    data.frame(n = g$n[1L], rep = g$rep[1L], p_true = sum(w[g$K == kstar]),
               mean_K = sum(w * g$K), K_hat = g$K[which.max(w)])
  }))
}

#' Posterior probability of the true number of experts in a random-K study
#'
#' For a [moe_contraction()] study run with a prior on the number of
#' experts (`K = prior_K(...)`), tabulates per sample size the mean over
#' replicates of \eqn{P(K = k^*)} (posterior over K, and the frequency of
#' \eqn{k^*} under Merge-Truncate-Merge of the largest fit), its Monte
#' Carlo standard error over replicates (standard deviation / square root of
#' the number of replicates), the mean of \eqn{E(K \mid y)} and the share of
#' replicates whose most probable \eqn{K} is \eqn{k^*}.
#'
#' With `prior`, the posterior over K is recomputed under that prior on K
#' from the stored log marginal likelihoods (no refit: the marginal
#' likelihood of each fixed K does not depend on the prior on K), which
#' gives the sensitivity of \eqn{P(K = k^*)} to the prior on K. The MTM rows
#' do not depend on it and are left out then.
#'
#' @param x A [moe_contraction()] study with a prior on K.
#' @param prior `NULL` (the study's prior on K) or another [prior_K()]
#'   whose `K_max` is at least the largest fitted K; probabilities of K not
#'   fitted must be zero.
#' @return A data frame with columns `strategy`, `n`, `reps`, `p_true`,
#'   `se`, `mean_K` and `K_hat_true`.
#' @seealso [moe_contraction()]
#' @examples
#' tru <- moe_truth_example("p4")
#' rk <- moe_contraction(tru, n = c(150, 300), reps = 1, K = prior_K(K_max = 3),
#'                       method = "mcmc", mcmc = list(chains = 1, iter = 100),
#'                       density_draws = 5, seed = 1)
#' moe_contraction_K(rk)
#' moe_contraction_K(rk, prior = prior_K("uniform", K_max = 3))
#' @export
moe_contraction_K <- function(x, prior = NULL) {
  call <- sys.call()
  if (!inherits(x, "moe_contraction") || is.null(x$K_est)) {
    abort(sprintf("`x` must be a study made by `moe_contraction()` with `K = prior_K(...)`, not %s.",
                  if (inherits(x, "moe_contraction")) "one with a fixed K" else describe(x)),
          call = call, arg = "x")
  }
  kstar <- x$truth$K
  if (is.null(prior)) return(x$K_table)
  fitted <- sort(unique(x$K_post$K))
  prior <- check_prior_K(prior, "prior", call)
  if (prior$K_max < max(fitted) || any(prior$probs[-fitted] > 0)) {
    abort(sprintf("`prior` must put its mass on the fitted K (%s): the study has no marginal likelihood for the others.",
                  paste(fitted, collapse = ", ")), call = call, arg = "prior")
  }
  if (length(fitted) == 1L) {
    est <- unique(x$K_post[c("n", "rep")])
    est$p_true <- as.numeric(fitted == kstar)
    est$mean_K <- fitted
    est$K_hat <- fitted
  } else {
    est <- random_k_reweight(x$K_post, prior, kstar)
  }
  est$strategy <- "posterior"
  random_k_table(est, kstar)
}
