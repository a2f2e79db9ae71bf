# Fits shared by test-draws.R and test-membership.R.

# A fake MCMC fit of the tone data whose relabelled draws are known
# (`true_draws`; 30% of the draws as stored have switched labels).
fake_draws_fit <- function(seed = 1, switch = 0.3, iter = 100, chains = 2) {
  fake_mcmc_fit(em_tone(), iter = iter, chains = chains, switch = switch, seed = seed)
}

# The relabelled draws of a fake fit as an N x P matrix (chains stacked).
true_draws_matrix <- function(f) {
  d <- dim(f$true_draws)
  matrix(f$true_draws, d[1L] * d[2L], d[3L], dimnames = list(NULL, dimnames(f$true_draws)[[3L]]))
}

# A short real run of the sampler (cached per session).
real_tone_fit <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      cache <<- quiet_stall(moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2,
                                     iter = 200, seed = 1, progress = FALSE))
    }
    cache
  }
})

# Plain-R responsibilities of one parameter set: gating times expert
# density at the response, normalised.
resp_ref <- function(par, X, Z, y) {
  eta <- Z %*% par$W
  g <- exp(eta - apply(eta, 1, max))
  g <- g / rowSums(g)
  dens <- sapply(seq_along(par$sigma2), function(k)
    dnorm(y, X %*% par$alpha[, k], sqrt(par$sigma2[k])))
  num <- g * matrix(dens, length(y))
  num / rowSums(num)
}

# Plain-R gating probabilities g and expert means mu (rows of the design
# `des`, K = 2 experts, 2 coefficients each) of one flat draw `theta`, and
# its variances.
draw_components <- function(theta, des) {
  par <- bayesmoe:::par_unflatten(theta, 2, 2, 2)
  eta <- des$Z %*% par$W
  list(g = exp(eta) / rowSums(exp(eta)), mu = des$X %*% par$alpha, sigma2 = par$sigma2)
}
