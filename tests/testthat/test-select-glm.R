# moe_select() with GLM experts (family = poisson() / binomial()): the
# posterior over K from bridge sampling, MTM on atoms without a variance,
# BIC and ICL.

test_that("moe_select() finds two Poisson experts with every method", {
  set.seed(2)
  n <- 200
  x <- runif(n)
  k <- rbinom(n, 1, plogis(8 * (x - 0.5)))
  d <- data.frame(x = x, y = rpois(n, exp(ifelse(k == 1, 0.2 + 0.5 * x, 2.5 - 0.5 * x))))
  sel <- expect_silent(moe_select(y ~ x, data = d, K = 1:3, family = poisson(),
                                  method = c("posterior", "mtm", "bic", "icl"),
                                  chains = 2, iter = 600, seed = 1))
  expect_s3_class(sel, "moe_select")
  expect_equal(unname(sel$K_hats), c(2L, 2L, 2L, 2L))
  expect_gt(sel$probs[["2"]], 0.5)
  expect_lt(sel$probs[["1"]], 1e-6)
  expect_true(all(is.finite(sel$table$logml)) && all(sel$table$logml_se < 0.5))
  # the fits are Poisson fits, and the MTM atoms have no variance coordinate
  expect_true(all(vapply(sel$fits$mcmc, function(f) inherits(f$expert, "moe_expert_poisson"),
                         TRUE)))
  expect_true(inherits(sel$fits$em$K2$expert, "moe_expert_poisson"))
  expect_false(any(grepl("sigma2", colnames(sel$mtm$atoms[[1]]))))
  expect_equal(ncol(sel$mtm$atoms[[1]]), 3L)   # gate slope, intercept, slope
  expect_length(sel$degenerate, 0L)
  expect_output(print(sel), "Selected K = 2")
  expect_output(print(summary(sel)), "Estimates")
  pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  expect_silent(plot(sel))
})

test_that("moe_select() passes binomial() on and checks `family` before fitting", {
  # a tent-shaped success probability: rising in one expert, falling in the
  # other (one logistic regression cannot follow it)
  set.seed(3)
  n <- 400
  x <- runif(n)
  k <- rbinom(n, 1, plogis(12 * (x - 0.5)))
  d <- data.frame(x = x, y = rbinom(n, 1, plogis(ifelse(k == 1, 7 - 10 * x, -3 + 10 * x))))
  sel <- moe_select(y ~ x, data = d, K = 1:2, family = binomial, method = c("bic", "mtm"),
                    chains = 1, iter = 300, seed = 1)
  expect_true(inherits(sel$fits$em$K1$expert, "moe_expert_binomial"))
  expect_true(inherits(sel$fits$mtm$expert, "moe_expert_binomial"))
  expect_equal(sel$K_hats[["bic"]], 2L)
  expect_error(moe_select(y ~ x, data = d, K = 1:2, family = Gamma()),
               class = "bayesmoe_error_family")
  expect_error(moe_select(y ~ x, data = d, K = 1:2, family = "nonsense"),
               class = "bayesmoe_error_family")
})
