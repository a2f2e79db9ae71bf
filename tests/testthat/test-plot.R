test_that("plots draw without error and validate the covariate", {
  fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(fit), fit)
  grid <- bayesmoe:::plot_gating(fit)
  expect_identical(names(grid), c("stretchratio", "tuned"))
  expect_silent(plot(fit, what = "loglik"))
  expect_snapshot(error = TRUE, plot(fit, covariate = "nope"))
  expect_snapshot(error = TRUE, plot(fit, what = "nope"))
  # several covariates: the others are held at typical values
  d <- transform(tonedata, f = factor(rep(c("a", "b"), 75)))
  f2 <- moe_em(tuned ~ stretchratio + f, data = d, K = 2, seed = 1)
  g2 <- bayesmoe:::covariate_grid(f2, "stretchratio")
  expect_true(all(g2$f == "a"))
  expect_identical(plot(f2, what = "gating"), f2)
})

test_that("every plot draws without warnings", {
  set.seed(1)
  fit <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1)
  mc <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 2, iter = 100,
                 seed = 1, progress = FALSE)
  pdf(NULL)
  on.exit(dev.off())
  expect_no_warning(plot(fit, "fit"))
  expect_no_warning(plot(fit, "gating"))
  expect_no_warning(plot(fit, "loglik"))
  expect_no_warning(plot(fit, "fit", main = "tone"))
  expect_no_warning(plot(mc, "trace", pars = c("loglik", "gate1:stretchratio")))
  expect_no_warning(plot(mc, "density", pars = c("loglik", "expert1:sigma2")))
  expect_no_warning(plot(mc, "trace", pars = "loglik"))
  expect_no_warning(plot(mc, "fit"))
  expect_no_warning(plot(mc, "gating", level = 0.8))
  m1 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 1)
  expect_no_warning(plot(m1, "fit"))
  expect_no_warning(plot(m1, "gating"))
})

test_that("legends go where they cover the fewest items", {
  pdf(NULL)
  on.exit(dev.off())
  plot(0:1, 0:1, type = "n")
  args <- list(legend = c("a", "b"), lty = 1, bty = "n", inset = 0.01)
  # items in every corner but the bottom left
  occ <- rbind(c(0.95, 0.95, 0.95), c(0.05, 0.95, 0.95), c(0.95, 0.05, 0.05),
               c(0.5, 0.95, 0.95), c(0.5, 0.05, 0.05), c(0.95, 0.5, 0.5), c(0.05, 0.5, 0.5))
  expect_identical(bayesmoe:::legend_spot(args, occ), "bottomleft")
  # a band (a vertical stretch) counts wherever it overlaps the box
  occ2 <- rbind(occ[-c(3, 5), ], c(0.05, 0, 0.1))
  expect_identical(bayesmoe:::legend_spot(args, occ2), "bottomright")
})
