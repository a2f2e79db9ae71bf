# Test helpers for MCMC fits: fake fits with known labels, built without the
# sampler, and plain-R reference implementations.

# Data from a well separated 3-expert truth with one covariate.
sim_moe3 <- function(n = 300, seed = 1) {
  withr_seed(seed, {
    x <- runif(n, -2, 2)
    eta <- cbind(-3 * x - 2, 3 * x - 2, 0)
    g <- exp(eta - apply(eta, 1, max))
    g <- g / rowSums(g)
    k <- apply(g, 1, function(pr) sample.int(3, 1, prob = pr))
    a <- rbind(c(4, 0, -4), c(1, -1, 2))
    s <- c(0.3, 0.4, 0.5)
    data.frame(x = x, y = a[1, k] + a[2, k] * x + s[k] * rnorm(n))
  })
}

withr_seed <- function(seed, expr) {
  old <- if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv())
  on.exit(if (is.null(old)) rm(".Random.seed", envir = globalenv()) else
    assign(".Random.seed", old, envir = globalenv()))
  set.seed(seed)
  expr
}

# Plain-R permutation of one parameter set: new expert k is old expert pi[k];
# the gating is re-referenced to the new last expert.
permute_par_ref <- function(par, pi) {
  K <- length(pi)
  W <- par$W
  list(alpha = par$alpha[, pi, drop = FALSE], sigma2 = par$sigma2[pi],
       W = W[, pi, drop = FALSE] - W[, pi[K]])
}

# A fake MCMC fit around an EM fit: draws from the asymptotic normal
# (variances log-normal with the same standard error), `switch` the
# proportion of draws whose labels are permuted at random (a non-identity
# permutation, applied with permute_par_ref()). The unswitched draws are
# kept in `true_draws` and the permutations in `true_perm`.
fake_mcmc_fit <- function(em, iter = 100, chains = 2, switch = 0, spread = 1, seed = 1) {
  K <- em$K
  p <- ncol(em$X)
  q <- ncol(em$Z)
  theta <- coef(em)
  V <- suppressWarnings(vcov(em))
  if (anyNA(V)) V <- diag(pmax(abs(theta), 1) * 1e-4, length(theta))
  N <- iter * chains
  is_s2 <- grepl(":sigma2$", names(theta))
  withr_seed(seed, {
    Zn <- matrix(rnorm(N * length(theta)), N)
    D <- matrix(theta, N, length(theta), byrow = TRUE) + spread * Zn %*% chol(V)
    se <- sqrt(diag(V))[is_s2]
    D[, is_s2] <- exp(log(rep(theta[is_s2], each = N)) +
                        spread * Zn[, is_s2] * rep(se / theta[is_s2], each = N))
    perms <- all_permutations(K)
    which_perm <- ifelse(runif(N) < switch & K > 1,
                         sample.int(max(nrow(perms) - 1L, 1L), N, replace = TRUE) + 1L, 1L)
  })
  Dsw <- D
  for (i in which(which_perm > 1L)) {
    par <- permute_par_ref(par_unflatten(D[i, ], p, q, K), perms[which_perm[i], ])
    Dsw[i, ] <- par_flatten(par)
  }
  ll <- vapply(seq_len(N), function(i)
    sum(em$weights * moe_log_density(par_unflatten(Dsw[i, ], p, q, K), em$X, em$Z, em$y)), 0)
  nm <- list(NULL, paste0("chain", seq_len(chains)), names(theta))
  fr <- em[c("y", "X", "Z", "weights", "terms", "gating_terms", "formula", "gating",
             "xlevels", "zlevels", "contrasts", "zcontrasts", "na.action", "model")]
  res <- list(par = par_unflatten(colMeans(Dsw), p, q, K),
              draws = array(Dsw, c(iter, chains, length(theta)), nm),
              loglik_draws = matrix(ll, iter, chains),
              loglik = max(ll), prior = NULL, control = list(),
              iter = 2L * iter, warmup = iter, thin = 1L, chains = chains, seed = seed,
              init = "em", scaling = em$scaling, state = NULL, accept = NULL,
              timing = NULL, em = em)
  call <- em$call
  call[[1L]] <- as.name("moe_mcmc")
  fit <- new_moe_fit(fr, res, call = call, class = "moe_mcmc")
  fit$true_draws <- array(D, c(iter, chains, length(theta)), nm)
  fit$true_perm <- array(perms[which_perm, , drop = FALSE], c(iter, chains, K))
  fit
}

# EM fits used by several tests (cached per session).
em_tone <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) cache <<- moe_em(tuned ~ stretchratio, data = tonedata, K = 2,
                                         seed = 1)
    cache
  }
})

em_sim3 <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      d <- sim_moe3()
      cache <<- moe_em(y ~ x, data = d, K = 3, seed = 1)
    }
    cache
  }
})

# Evaluate `expr` without the warning for chains whose gating
# Metropolis-Hastings moves were (nearly) all rejected: for the very short or
# deliberately extreme runs of tests that check something else.
quiet_stall <- function(expr) {
  withCallingHandlers(expr, bayesmoe_warning_gating_stall = function(w)
    invokeRestart("muffleWarning"))
}

# Two chains' draws of the same functionals (matrices, one column each)
# agree on the posterior: means within 4 standard errors of their difference
# (batch means, 20 batches) and standard deviations within a factor 4/3.
expect_same_posterior <- function(a, b, nb = 20) {
  batch_se <- function(v) {
    m <- colMeans(matrix(v[seq_len(nb * (length(v) %/% nb))], ncol = nb))
    sd(m) / sqrt(nb)
  }
  z <- (colMeans(a) - colMeans(b)) /
    sqrt(apply(a, 2, batch_se)^2 + apply(b, 2, batch_se)^2)
  expect_true(all(abs(z) < 4), label = paste("z:", paste(round(z, 2), collapse = ", ")))
  ratio <- apply(a, 2, sd) / apply(b, 2, sd)
  expect_true(all(ratio > 0.75 & ratio < 1.33),
              label = paste("sd ratios:", paste(round(ratio, 2), collapse = ", ")))
}
