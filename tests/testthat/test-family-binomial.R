# Binomial (logistic) experts: family = binomial() (R/family-binomial.R,
# R/family-glm.R, src/family_binomial.c).

sim_binomial <- function(n = 400, seed = 1) {
  set.seed(seed)
  x <- runif(n)
  k <- rbinom(n, 1, plogis(8 * (x - 0.5)))
  y <- rbinom(n, 1, plogis(ifelse(k == 1, 2 - 4 * x, -2 + 3 * x)))
  data.frame(x = x, y = y, m = 1 + rpois(n, 3))
}

test_that("K = 1 EM equals glm() for every response form", {
  d <- sim_binomial(300)
  set.seed(2)
  d$s <- rbinom(nrow(d), d$m, plogis(-0.5 + d$x))
  d$o <- rnorm(nrow(d), sd = 0.3)
  cases <- list(
    list(y ~ x, y ~ x),
    list(as.logical(y) ~ x, y ~ x),
    list(factor(y, labels = c("no", "yes")) ~ x, y ~ x),
    list(cbind(s, m - s) ~ x, cbind(s, m - s) ~ x),
    list(cbind(s, m - s) ~ x + offset(o), cbind(s, m - s) ~ x + offset(o)))
  for (cs in cases) {
    fit <- moe_em(cs[[1]], data = d, K = 1, family = binomial())
    ref <- glm(cs[[2]], family = binomial(), data = d)
    expect_equal(unname(coef(fit)), unname(coef(ref)), tolerance = 1e-7)
    expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(ref)), tolerance = 1e-9)
    expect_equal(attr(logLik(fit), "df"), attr(logLik(ref), "df"))
    expect_equal(unname(fitted(fit)), unname(fitted(ref)), tolerance = 1e-6)
    expect_equal(unname(sqrt(diag(vcov(fit)))), unname(sqrt(diag(vcov(ref)))),
                 tolerance = 1e-4)
  }
  # family given as a function or a name
  a <- moe_em(y ~ x, data = d, K = 1, family = "binomial")
  b <- moe_em(y ~ x, data = d, K = 1, family = binomial)
  expect_identical(coef(a), coef(b))
})

test_that("case weights equal replicated rows", {
  d <- sim_binomial(200)
  w <- rep(1:3, length.out = nrow(d))
  dd <- d[rep(seq_len(nrow(d)), w), ]
  a <- moe_em(y ~ x, data = d, weights = w, K = 1, family = binomial())
  b <- moe_em(y ~ x, data = dd, K = 1, family = binomial())
  expect_equal(coef(a), coef(b), tolerance = 1e-8)
  expect_equal(as.numeric(logLik(a)), as.numeric(logLik(b)), tolerance = 1e-9)
  # K = 2: one EM run of the engine from the same starting responsibilities
  X <- cbind("(Intercept)" = 1, x = d$x)
  idx <- rep(seq_len(nrow(d)), w)
  ex <- bayesmoe:::resolve_family(binomial(), expert_linear())
  set.seed(1)
  R0 <- matrix(runif(2 * nrow(d)), nrow(d))
  R0 <- R0 / rowSums(R0)
  run <- function(rows, wt) {
    s <- list(y = d$y[rows], X = X[rows, ], Z = X[rows, ],
              family = bayesmoe:::glm_family_data(ex, d$y[rows]))
    bayesmoe:::em_run(s, wt, R0[rows, ], moe_em_control(tol = 1e-12), 3, gate_softmax(), ex)
  }
  fa <- run(seq_len(nrow(d)), w)
  fb <- run(idx, rep(1, length(idx)))
  expect_equal(fa$loglik, fb$loglik, tolerance = 1e-8)
  expect_equal(fa$alpha, fb$alpha, tolerance = 1e-5)
  expect_equal(fa$W, fb$W, tolerance = 1e-5)
})

test_that("EM is monotone and the log-likelihood is the binomial one", {
  d <- sim_binomial(500)
  fit <- moe_em(y ~ x, data = d, K = 2, family = binomial(), seed = 3)
  expect_true(all(diff(fit$trace) >= -1e-8 * abs(fit$trace[-1])))
  par <- coef(fit, matrix = TRUE)
  expect_null(par$sigma2)
  eta <- cbind(1, d$x) %*% par$alpha
  g <- predict(fit, type = "gating")
  ll <- sum(log(rowSums(g * dbinom(d$y, 1, plogis(eta)))))
  expect_equal(as.numeric(logLik(fit)), ll, tolerance = 1e-8)
  # no sigma2 anywhere in the layout
  expect_false(any(grepl("sigma2", names(coef(fit)))))
  expect_identical(dim(suppressWarnings(vcov(fit))), c(6L, 6L))
  expect_equal(attr(logLik(fit), "df"), 6)
})

test_that("the Gibbs sampler matches the K = 1 posterior computed on a grid", {
  set.seed(11)
  n <- 80
  x <- rnorm(n)
  x <- (x - mean(x)) / sqrt(mean((x - mean(x))^2))  # internal scale = original
  y <- rbinom(n, 1, plogis(0.3 + 1.2 * x))
  fit <- moe_mcmc(y ~ x, data = data.frame(x, y), K = 1, family = binomial(),
                  prior = moe_prior(V_a = 4), chains = 2, iter = 3000, seed = 1)
  D <- as.data.frame(fit)
  a0 <- seq(-1.5, 2, length.out = 301)
  a1 <- seq(-0.5, 3.5, length.out = 301)
  lp <- outer(a0, a1, Vectorize(function(u, v) {
    sum(dbinom(y, 1, plogis(u + v * x), log = TRUE)) - (u^2 + v^2) / 8
  }))
  pw <- exp(lp - max(lp))
  pw <- pw / sum(pw)
  m0 <- sum(rowSums(pw) * a0)
  m1 <- sum(colSums(pw) * a1)
  s1 <- sqrt(sum(colSums(pw) * (a1 - m1)^2))
  d0 <- D[["expert1:(Intercept)"]]
  d1 <- D[["expert1:x"]]
  # the Polya-Gamma Gibbs draws are nearly independent: 5 standard errors
  se <- s1 / sqrt(length(d1) / 2)
  expect_lt(abs(mean(d0) - m0), 5 * se * 1.5)
  expect_lt(abs(mean(d1) - m1), 5 * se)
  expect_lt(abs(sd(d1) / s1 - 1), 0.08)
})

test_that("every method works on binomial fits", {
  d <- sim_binomial(300)
  em <- moe_em(y ~ x, data = d, K = 2, family = binomial(), seed = 1)
  mc <- moe_mcmc(y ~ x, data = d, K = 2, family = binomial(), chains = 2, iter = 300,
                 seed = 1)
  for (fit in list(em, mc)) {
    expect_output(print(fit), "binomial \\(logit\\)")
    expect_output(print(summary(fit)))
    expect_false(any(grepl("sigma", names(coef(fit)))))
    p <- predict(fit, type = "mean")
    expect_true(all(p > 0 & p < 1))
    g <- predict(fit, type = "gating")
    expect_equal(unname(rowSums(g)), rep(1, nrow(d)))
    e <- predict(fit, type = "expert")
    # the mean is the gated mean of the experts (for MCMC fits the posterior
    # means of the three do not factor)
    if (inherits(fit, "moe_em")) expect_equal(unname(rowSums(g * e)), unname(p), tolerance = 1e-10)
    dens <- predict(fit, newdata = d[1:5, ], type = "density", y = c(0, 1))
    expect_equal(unname(rowSums(dens)), rep(1, 5), tolerance = 1e-10)
    q <- predict(fit, newdata = d[1:5, ], type = "quantile", probs = c(0.1, 0.9))
    expect_true(all(q >= 0 & q <= 1))
    if (inherits(fit, "moe_em")) expect_true(all(q %in% c(0, 1)))
    s <- simulate(fit, nsim = 2, seed = 1)
    expect_true(all(unlist(s) %in% c(0, 1)))
    expect_true(all(is.finite(residuals(fit, type = "pearson"))))
    m <- predict(fit, type = "membership")
    expect_equal(unname(rowSums(m)), rep(1, nrow(d)), tolerance = 1e-8)
    pdf(NULL)
    expect_silent(plot(fit, "fit"))
    dev.off()
  }
  expect_true(all(is.finite(confint(em))))
  ll <- log_lik(mc)
  expect_identical(dim(ll)[3L], nrow(d))
  # log_lik() sums to the kept log-likelihoods
  expect_equal(apply(ll, c(1, 2), sum), unname(mc$loglik_draws), tolerance = 1e-8,
               ignore_attr = TRUE)
  skip_if_not_installed("loo")
  expect_s3_class(suppressWarnings(loo::loo(mc)), "loo")
  r <- moe_relabel(mc)
  expect_false(any(grepl("sigma", dimnames(r$draws)[[3L]])))
  skip_if_not_installed("posterior")
  dm <- posterior::as_draws_matrix(mc)
  expect_true(all(names(coef(mc)) %in% colnames(dm)))
  expect_false(any(grepl("sigma", colnames(dm))))
})

test_that("a binomial Gibbs chain continued is one long chain", {
  d <- sim_binomial(150)
  a <- moe_mcmc(y ~ x, data = d, K = 2, family = binomial(), chains = 1, iter = 60, seed = 4)
  b <- moe_mcmc(a, iter = 40)
  c <- moe_mcmc(y ~ x, data = d, K = 2, family = binomial(), chains = 1, iter = 100,
                warmup = 30, seed = 4)
  expect_identical(unname(b$draws), unname(c$draws))
})

test_that("malformed binomial input gets classed errors", {
  d <- sim_binomial(50)
  d$bad <- d$y * 2
  expect_error(moe_em(bad ~ x, data = d, K = 2, family = binomial()),
               class = "bayesmoe_error_data", regexp = "outside \\[0, 1\\]")
  d$f3 <- factor(rep(c("a", "b", "c"), length.out = 50))
  expect_error(moe_em(f3 ~ x, data = d, K = 2, family = binomial()),
               class = "bayesmoe_error_data", regexp = "3 levels")
  expect_error(moe_em(y ~ x, data = d, K = 2, family = binomial(link = "probit")),
               class = "bayesmoe_error_family")
  expect_error(moe_em(y ~ x, data = d, K = 2, family = quasibinomial()),
               class = "bayesmoe_error_family")
})

test_that("SBC of the binomial sampler: calibrated ranks, no frozen chain", {
  path <- system.file("extdata", "sbc-binomial.rds", package = "bayesmoe")
  skip_if(!nzchar(path), "inst/extdata/sbc-binomial.rds not installed")
  sbc <- readRDS(path)
  expect_gte(sbc$reps, 500)
  expect_identical(c(sbc$K, sbc$n), c(2L, 100L))
  expect_true(all(sbc$tests[, "chisq_p"] > 0.001))
  expect_true(all(sbc$tests[, "extreme_p"] > 0.001))
  expect_equal(sbc$frozen, 0)
})
