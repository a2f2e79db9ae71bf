# Tests of prior_K() and moe_select() (R/select.R).

test_that("prior_K() gives truncated Poisson, geometric and uniform probabilities", {
  p <- prior_K()
  expect_s3_class(p, "moe_prior_K")
  expect_equal(unname(p$probs), dpois(0:5, 1) / sum(dpois(0:5, 1)))
  expect_named(p$probs, as.character(1:6))
  g <- prior_K("geometric", lambda = 2, K_max = 100)
  expect_equal(sum((seq_len(100) - 1) * g$probs), 2, tolerance = 1e-10)  # mean of K - 1
  expect_equal(unname(prior_K("uniform", K_max = 4)$probs), rep(0.25, 4))
  expect_equal(unname(prior_K("poisson", lambda = 3, K_max = 1)$probs), 1)
  expect_snapshot(print(prior_K()))
  expect_snapshot(print(prior_K("geometric", lambda = 0.5, K_max = 4)))
})

test_that("prior_K() rejects bad arguments", {
  expect_snapshot(error = TRUE, prior_K("binomial"))
  expect_snapshot(error = TRUE, prior_K(lambda = 0))
  expect_snapshot(error = TRUE, prior_K(K_max = 0))
  expect_snapshot(error = TRUE, prior_K(K_max = 2.5))
  expect_snapshot(error = TRUE, prior_K(kmax = 3))
  expect_error(prior_K(lambda = -1), class = "bayesmoe_error_input")
})

test_that("moe_prior() carries a prior on K", {
  pr <- moe_prior(K = prior_K("geometric", lambda = 2, K_max = 5))
  expect_s3_class(pr$K, "moe_prior_K")
  expect_null(moe_prior()$K)
  expect_snapshot(print(pr))
  expect_snapshot(error = TRUE, moe_prior(K = 3))
})

test_that("moe_select() with the EM criteria returns the documented structure", {
  d <- three_experts(300, seed = 1)
  sel <- moe_select(y ~ x, data = d, K = 1:4, method = c("bic", "icl"), seed = 1, starts = 3)
  expect_s3_class(sel, "moe_select")
  expect_named(sel, c("call", "method", "methods", "K", "probs", "K_hat", "K_hats", "table",
                      "fits", "marglik", "mtm", "prior_K", "cpu", "warnings", "degenerate",
                      "n"))
  expect_identical(sel$method, "bic")
  expect_identical(sel$K, 1:4)
  expect_true(all(is.na(sel$probs)))
  expect_named(sel$probs, as.character(1:4))
  expect_identical(names(sel$table), c("K", "prior", "logml", "logml_se", "post_prob",
                                        "post_prob_se", "mtm_freq", "loglik_em", "BIC", "ICL"))
  expect_equal(sel$table$BIC, unname(vapply(sel$fits$em, BIC, 0)))
  expect_identical(sel$K_hat, sel$table$K[which.min(sel$table$BIC)])
  expect_identical(sel$K_hat, 3L)
  expect_identical(unname(sel$K_hats[["icl"]]), sel$table$K[which.min(sel$table$ICL)])
  expect_true(all(sel$table$ICL >= sel$table$BIC - 1e-8))
  expect_null(sel$fits$mcmc)
  # the EM fits are those of moe_em() with the derived seeds: reproducible
  sel2 <- moe_select(y ~ x, data = d, K = 1:4, method = c("bic", "icl"), seed = 1, starts = 3)
  expect_identical(sel2$table, sel$table)
  expect_snapshot(print(sel))
  expect_snapshot(print(summary(sel)),
                  transform = function(x) sub("CPU seconds: .*", "CPU seconds: <timing>", x))
  pdf(NULL)
  on.exit(dev.off())
  expect_silent(plot(sel))
})

test_that("moe_select() with both Bayesian strategies", {
  d <- three_experts(300, seed = 1)
  sel <- moe_select(y ~ x, data = d, K = 1:4, method = c("posterior", "mtm", "bic"),
                    chains = 2, iter = 200, seed = 2, starts = 3, progress = FALSE)
  expect_identical(sel$methods, c("posterior", "mtm", "bic"))
  expect_equal(sum(sel$probs), 1)
  expect_equal(unname(sel$probs), sel$table$post_prob)
  expect_identical(sel$K_hat, as.integer(names(which.max(sel$probs))))
  expect_identical(names(sel$fits$mcmc), paste0("K", 1:4))
  expect_true(all(vapply(sel$fits$mcmc, inherits, TRUE, "moe_mcmc")))
  # the posterior is prior x marginal likelihood, normalised
  lp <- sel$table$logml + log(sel$table$prior)
  expect_equal(sel$table$post_prob, exp(lp - max(lp)) / sum(exp(lp - max(lp))))
  expect_equal(sel$table$logml[1], moe_marglik(sel$fits$mcmc$K1, method = "exact")$logml)
  expect_identical(sel$table$logml_se[1], 0)
  expect_true(all(sel$table$logml_se[-1] > 0))
  # MTM on the over-fitted fit (the K = 4 fit of the posterior route)
  expect_identical(sel$fits$mtm, sel$fits$mcmc$K4)
  expect_s3_class(sel$mtm, "moe_mtm")
  expect_equal(sel$table$mtm_freq, unname(sel$mtm$probs[as.character(1:4)]))
  expect_identical(unname(sel$K_hats[["mtm"]]), sel$mtm$K_hat)
  # on clear three-expert data all methods find 3 experts
  expect_identical(unname(sel$K_hats[c("posterior", "mtm", "bic")]), c(3L, 3L, 3L))
  pdf(NULL)
  on.exit(dev.off())
  expect_silent(plot(sel))
  expect_silent(plot(sel, which = "criteria"))
  # only MTM: probs are the MTM frequencies, one over-fitted fit
  sm <- moe_select(y ~ x, data = d, K = 2:4, method = "mtm", chains = 1, iter = 100,
                   seed = 3, starts = 2, progress = FALSE, c = 0.1)
  expect_identical(sm$method, "mtm")
  expect_null(sm$fits$mcmc)
  expect_identical(sm$fits$mtm$K, 4L)
  expect_identical(sm$mtm$c, 0.1)
  expect_named(sm$probs, as.character(2:4))
  expect_true(all(is.na(sm$table$logml)))
})

test_that("moe_select() uses the prior on K of `prior`", {
  d <- three_experts(200, seed = 4)
  pr <- moe_prior(K = prior_K("uniform", K_max = 3))
  sel <- moe_select(y ~ x, data = d, K = 1:3, prior = pr, chains = 1, iter = 100,
                    seed = 1, starts = 2, progress = FALSE)
  expect_identical(sel$prior_K, pr$K)
  expect_equal(sel$table$prior, rep(1 / 3, 3))
  expect_identical(sel$methods, "posterior")
})

test_that("moe_select() rejects bad arguments", {
  d <- three_experts(100, seed = 1)
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, K = 0:3))
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, K = c(1, 2.5)))
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, K = c(2, 2)))
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, K = integer()))
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, method = "aic"))
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, prior = list()))
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, K = 1:4,
                                           prior = moe_prior(K = prior_K(K_max = 3))))
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, K = 1:2, method = "bic", foo = 1))
  expect_snapshot(error = TRUE, moe_select(y ~ x, d, 1:2, NULL, "bic", moe_prior(), 1, 3))
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, K = 1:2, method = "bic",
                                           control = list()))
  expect_snapshot(error = TRUE, moe_select(y ~ x, data = d, K = 1:2, method = "bic", seed = 0.5))
  expect_error(moe_select(y ~ x, data = d, K = 0:3), class = "bayesmoe_error_input")
})

test_that("slow: both strategies find the true number of experts", {
  skip_if_not(Sys.getenv("BAYESMOE_SLOW_TESTS") == "true", "slow test")
  # the well-separated truths of inst/scripts/choosing-k.R
  d2 <- sim_moe(3000, alpha = cbind(c(0, 3), c(4, -3)), sigma = c(0.4, 0.4),
                W = cbind(c(-2, 4), c(0, 0)), seed = 31)
  d3 <- sim_moe(3000, alpha = cbind(c(4, -2), c(-3, 2), c(0.5, 0)), sigma = c(0.3, 0.3, 0.3),
                W = cbind(c(3, -6), c(-3, 6), c(0, 0)), seed = 32)
  for (case in list(list(d = d2, k = 2L), list(d = d3, k = 3L))) {
    sel <- moe_select(y ~ x, data = case$d, K = 1:5, method = c("posterior", "mtm"),
                      chains = 2, iter = 1500, seed = 5, progress = FALSE)
    expect_identical(unname(sel$K_hats[c("posterior", "mtm")]), c(case$k, case$k))
    expect_gt(sel$table$post_prob[case$k], 0.8)
    expect_gt(sel$table$mtm_freq[case$k], 0.8)
  }
})

test_that("moe_select() warns when the selected K rests on a degenerate fit", {
  expect_snapshot(sel <- moe_select(tuned ~ stretchratio, data = tonedata, K = 1:3,
                                    method = "bic", seed = 1))
  expect_true(3L %in% sel$degenerate)
})

test_that("moe_select() warns when the posterior's choice rests on a degenerate EM fit", {
  # tonedata with K up to 4: the EM fits of K = 3 and 4 have spike experts,
  # and the posterior over K (chains started from them) picks K = 4
  expect_warning(sel <- moe_select(tuned ~ stretchratio, data = tonedata, K = 1:4, seed = 1,
                                   chains = 2, iter = 400),
                 "posterior \\(K = 4\\)", class = "bayesmoe_warning_degenerate")
  expect_true(all(c(3L, 4L) %in% sel$degenerate))
})

test_that("prior_K(\"custom\") takes given probabilities and rejects bad ones", {
  p <- prior_K("custom", probs = c(1, 3, 0))
  expect_equal(unname(p$probs), c(0.25, 0.75, 0))
  expect_identical(p$K_max, 3L)
  expect_identical(prior_K("custom", probs = c(0, 1), K_max = 2)$K_max, 2L)
  expect_snapshot(print(p))
  expect_snapshot(error = TRUE, {
    prior_K("custom")
    prior_K("custom", probs = c(-1, 2))
    prior_K("custom", probs = c(0, 0))
    prior_K("custom", probs = c(NA, 1))
    prior_K("custom", probs = c(1, 1), K_max = 3)
    prior_K("poisson", probs = c(1, 1))
  })
  expect_error(prior_K("custom", probs = "a"), class = "bayesmoe_error_input")
  expect_error(prior_K("custom", probs = rep(1, 101)), class = "bayesmoe_error_input")
})

test_that("moe_select() refuses malformed priors on K before fitting", {
  d <- data.frame(x = 1:20 / 20, y = rnorm(20))
  bad <- prior_K(K_max = 3)
  bad$probs <- c(0.2, 0.2, 0.2)
  expect_snapshot(error = TRUE, {
    moe_select(y ~ x, data = d, K = 1:3, prior = moe_prior(K = bad))
    moe_select(y ~ x, data = d, K = 2:3, prior = moe_prior(K = prior_K("custom", probs = c(1, 0, 0))))
  })
  bad$probs <- c(NA, 0.5, 0.5)
  expect_error(moe_select(y ~ x, data = d, K = 1:3, prior = moe_prior(K = bad)),
               class = "bayesmoe_error_input")
})
