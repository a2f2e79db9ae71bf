# sigma(), model.matrix(), df.residual(), deviance() and anova() (R/ml-methods.R)

fit_pair <- function() {
  list(g1 = moe_em(tuned ~ stretchratio, data = tonedata, K = 2, gating = ~ 1, seed = 1,
                   control = moe_em_control(tol = 1e-12)),
       g2 = moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1,
                   control = moe_em_control(tol = 1e-12)))
}

test_that("sigma() is the square root of the expert variances, named per expert", {
  set.seed(1)
  fit <- fit_pair()$g2
  s <- sigma(fit)
  expect_named(s, c("expert1", "expert2"))
  expect_equal(s^2, coef(fit, matrix = TRUE)$sigma2, ignore_attr = TRUE)
  # K = 1 is lm()'s ML estimate of the noise sd
  fit1 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 1, seed = 1)
  ref <- lm(tuned ~ stretchratio, data = tonedata)
  n <- nrow(tonedata)
  expect_equal(unname(sigma(fit1)), sigma(ref) * sqrt((n - 2) / n), tolerance = 1e-6)
})

test_that("model.matrix() returns the expert and gating designs", {
  set.seed(2)
  fits <- fit_pair()
  expect_equal(model.matrix(fits$g2),
               model.matrix(tuned ~ stretchratio, data = tonedata), ignore_attr = "assign")
  expect_identical(model.matrix(fits$g2, which = "gating"), fits$g2$Z)
  expect_identical(colnames(model.matrix(fits$g1, which = "gating")), "(Intercept)")
  expect_snapshot(model.matrix(fits$g1, which = "both"), error = TRUE)
  # factors and weights go through
  d <- transform(tonedata, f = factor(rep(c("a", "b", "c"), 50)))
  fit <- moe_em(tuned ~ stretchratio + f, data = d, K = 2, seed = 1, weights = rep(2, 150))
  expect_identical(colnames(model.matrix(fit)), c("(Intercept)", "stretchratio", "fb", "fc"))
})

test_that("df.residual() and deviance() agree with logLik()", {
  set.seed(3)
  fit <- fit_pair()$g2
  ll <- logLik(fit)
  expect_equal(df.residual(fit), 150 - 8)
  expect_equal(deviance(fit), -2 * as.numeric(ll))
  # case weights count in nobs, as in logLik()
  fw <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1,
               weights = rep(2, 150))
  expect_equal(df.residual(fw), attr(logLik(fw), "nobs") - attr(logLik(fw), "df"))
  expect_equal(df.residual(fw), 300 - 8)
  # K = 1: the deviance is n (log(2 pi RSS / n) + 1), lm()'s -2 logLik
  fit1 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 1, seed = 1)
  ref <- lm(tuned ~ stretchratio, data = tonedata)
  expect_equal(deviance(fit1), -2 * as.numeric(logLik(ref)), tolerance = 1e-8)
})

test_that("anova() gives likelihood-ratio tests between nested EM fits", {
  set.seed(4)
  fits <- fit_pair()
  a <- anova(fits$g1, fits$g2)
  expect_s3_class(a, "anova")
  expect_named(a, c("Resid. Df", "npar", "logLik", "Df", "Chisq", "Pr(>Chisq)"))
  stat <- 2 * (as.numeric(logLik(fits$g2)) - as.numeric(logLik(fits$g1)))
  expect_equal(a$Chisq[2], stat)
  expect_equal(a$Df[2], 1)
  expect_equal(a[["Pr(>Chisq)"]][2], pchisq(stat, 1, lower.tail = FALSE))
  expect_equal(a[["Resid. Df"]], c(143, 142))
  # in the other order the same test, with a negative Df
  b <- anova(fits$g2, fits$g1)
  expect_equal(b$Chisq[2], stat)
  expect_equal(b$Df[2], -1)
  expect_snapshot(print(a))
  # K = 1 equals the F-free likelihood-ratio test of nested lm() fits
  m0 <- moe_em(tuned ~ 1, data = tonedata, K = 1, seed = 1)
  m1 <- moe_em(tuned ~ stretchratio, data = tonedata, K = 1, seed = 1)
  l0 <- lm(tuned ~ 1, data = tonedata)
  l1 <- lm(tuned ~ stretchratio, data = tonedata)
  expect_equal(anova(m0, m1)$Chisq[2],
               2 * (as.numeric(logLik(l1)) - as.numeric(logLik(l0))), tolerance = 1e-8)
})

test_that("anova() refuses fits it cannot compare, naming the reason", {
  set.seed(5)
  fits <- fit_pair()
  k3 <- suppressWarnings(moe_em(tuned ~ stretchratio, data = tonedata, K = 3, seed = 1))
  expect_snapshot(anova(fits$g2, k3), error = TRUE)
  expect_error(anova(fits$g2, k3), class = "bayesmoe_error_anova")
  other_rows <- moe_em(tuned ~ stretchratio, data = tonedata[-1, ], K = 2, seed = 1)
  expect_snapshot(anova(fits$g2, other_rows), error = TRUE)
  d <- transform(tonedata, t2 = tuned^2, s2 = stretchratio^2)
  other_y <- moe_em(t2 ~ stretchratio, data = d, K = 2, seed = 1)
  expect_snapshot(anova(fits$g2, other_y), error = TRUE)
  not_nested <- moe_em(tuned ~ s2, data = d, K = 2, seed = 1)
  expect_snapshot(anova(fits$g1, not_nested), error = TRUE)
  expect_error(anova(fits$g1, not_nested), class = "bayesmoe_error_anova")
  expect_snapshot(anova(fits$g2), error = TRUE)
  expect_snapshot(anova(fits$g2, lm(tuned ~ 1, data = tonedata)), error = TRUE)
  topk <- moe_em(tuned ~ stretchratio, data = tonedata, K = 2, seed = 1,
                 gate = gate_topk(1))
  expect_snapshot(anova(fits$g2, topk), error = TRUE)
})

test_that("anova() warns when the larger fit has the smaller log-likelihood", {
  set.seed(6)
  fits <- fit_pair()
  bad <- fits$g2
  bad$loglik <- as.numeric(logLik(fits$g1)) - 1
  expect_snapshot(a <- anova(fits$g1, bad))
  expect_warning(anova(fits$g1, bad), class = "bayesmoe_warning_anova")
})

test_that("sigma(), model.matrix() and df.residual() work for MCMC fits", {
  set.seed(7)
  fit <- moe_mcmc(tuned ~ stretchratio, data = tonedata, K = 2, chains = 1, iter = 60,
                  seed = 1, progress = FALSE)
  expect_equal(sigma(fit)^2, coef(fit, matrix = TRUE)$sigma2, ignore_attr = TRUE)
  expect_identical(model.matrix(fit, which = "gating"), fit$Z)
  expect_equal(df.residual(fit), 142)
})
test_that("prints show sigma, expert sizes and mixing weights within 80 columns", {
  set.seed(8)
  d <- data.frame(x1 = rnorm(200), x2 = rnorm(200), x3 = rnorm(200))
  d$y <- ifelse(d$x1 > 0.5, 2 + d$x2, ifelse(d$x1 < -0.5, -2 - d$x3, d$x2)) +
    rnorm(200, sd = 0.3)
  fit <- suppressWarnings(moe_em(y ~ x1 + x2 + x3, data = d, K = 3, seed = 1, starts = 3))
  out <- c(capture.output(print(fit)), capture.output(print(summary(fit))))
  expect_true(all(nchar(out) <= 80), label = paste(out[nchar(out) > 80], collapse = "\n"))
  sz <- bayesmoe:::expert_sizes(fit)
  expect_equal(sum(sz["size", ]), 200)
  expect_equal(sum(sz["weight", ]), 1)
  expect_equal(unname(sz["size", ]), unname(colSums(moe_membership(fit))))
  expect_equal(unname(sz["weight", ]), unname(colMeans(predict(fit, type = "gating"))))
  fit2 <- fit_pair()$g2
  expect_snapshot(print(fit2))
  expect_snapshot(print(summary(fit2)))
})
