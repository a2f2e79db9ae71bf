# The `family` argument of the front ends (R/family.R: resolve_family()).

test_that("family = gaussian() in any form reproduces the default fit", {
  set.seed(1)
  d <- data.frame(x = runif(150))
  d$y <- ifelse(d$x > 0.5, 1 + 2 * d$x, -1 - d$x) + rnorm(150, sd = 0.2)
  ref <- moe_em(y ~ x, data = d, K = 2, seed = 3)
  for (fam in list(gaussian(), gaussian, "gaussian", gaussian(link = "identity"))) {
    fit <- moe_em(y ~ x, data = d, K = 2, family = fam, seed = 3)
    expect_identical(coef(fit), coef(ref))
  }
  m1 <- moe_mcmc(y ~ x, data = d, K = 2, chains = 1, iter = 60, seed = 4)
  m2 <- moe_mcmc(y ~ x, data = d, K = 2, family = "gaussian", chains = 1, iter = 60, seed = 4)
  expect_identical(m1$draws, m2$draws)
})

test_that("unsupported or malformed families get classed errors naming `family`", {
  d <- data.frame(x = 1:20, y = rnorm(20))
  expect_error(moe_em(y ~ x, data = d, K = 2, family = Gamma()),
               class = "bayesmoe_error_family", regexp = "Gamma")
  expect_error(moe_em(y ~ x, data = d, K = 2, family = gaussian(link = "log")),
               class = "bayesmoe_error_family", regexp = "identity")
  expect_error(moe_em(y ~ x, data = d, K = 2, family = "no_such_family"),
               class = "bayesmoe_error_family", regexp = "no_such_family")
  expect_error(moe_em(y ~ x, data = d, K = 2, family = 3),
               class = "bayesmoe_error_family", regexp = "`family`")
  expect_error(moe_mcmc(y ~ x, data = d, K = 2, family = list(family = "gaussian")),
               class = "bayesmoe_error_family")
  e <- tryCatch(moe_em(y ~ x, data = d, K = 2, family = quasi()), error = identity)
  expect_identical(conditionCall(e)[[1L]], quote(moe_em))
})

test_that("family errors name the family and the supported ones", {
  d <- data.frame(x = 1:20, y = rnorm(20))
  expect_snapshot(error = TRUE, moe_em(y ~ x, data = d, K = 2, family = Gamma()))
  expect_snapshot(error = TRUE, moe_em(y ~ x, data = d, K = 2, family = poisson(link = "identity")))
  expect_snapshot(error = TRUE, student_t(df = 0))
})
