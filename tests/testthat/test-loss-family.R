# Truths, losses and contraction studies of binomial, Poisson and Student-t
# experts (R/truth-family.R, R/truth.R, R/loss.R, R/harness.R).

pois_truth <- function(b = c(0.5, 3), a = c(1, -0.5), beta0 = -4, beta1 = 8) {
  moe_truth(beta0 = beta0, beta1 = beta1, a = a, b = b, family = poisson())
}
binom_truth <- function(b = c(-2, 2), a = c(2, -1), trials = 10, beta0 = -4, beta1 = 8) {
  moe_truth(beta0 = beta0, beta1 = beta1, a = a, b = b, family = binomial(), trials = trials)
}
has_t <- function() exists("student_t", envir = asNamespace("bayesmoe"))

# Direct per-x pmfs of a two-expert truth on the x grid of density_loss().
direct_pmf <- function(tr, y, x) {
  eta_g <- tr$beta0[1] + tr$beta1[1, 1] * x
  g1 <- plogis(eta_g)
  mu <- sapply(1:2, function(k) tr$b[k] + tr$a[1, k] * x)
  f <- if (inherits(tr$expert, "moe_expert_poisson")) {
    function(k) outer(exp(mu[, k]), y, function(l, yy) dpois(yy, l))
  } else function(k) outer(plogis(mu[, k]), y, function(p, yy) dbinom(yy, tr$trials, p))
  g1 * f(1) + (1 - g1) * f(2)
}

test_that("family truths store the family, no sigma, and print it", {
  tp <- pois_truth()
  expect_s3_class(tp$expert, "moe_expert_poisson")
  expect_null(tp$sigma)
  expect_null(tp$sigma2)
  expect_output(print(tp), "Poisson")
  tb <- binom_truth(trials = 4)
  expect_equal(tb$trials, 4)
  expect_output(print(tb), "binomial \\(logit\\), 4 trials")
})

test_that("malformed family truths get classed errors", {
  expect_error(moe_truth(beta0 = 0, beta1 = 1, a = c(1, 1), b = c(0, 1), sigma = c(1, 1),
                         family = poisson()), class = "bayesmoe_error_family")
  expect_error(moe_truth(beta0 = 0, beta1 = 1, a = c(1, 1), b = c(0, 1), family = poisson(),
                         trials = 3), class = "bayesmoe_error_family")
  expect_error(binom_truth(trials = 0), class = "bayesmoe_error")
  expect_error(binom_truth(trials = 2.5), class = "bayesmoe_error")
  expect_error(moe_truth(beta0 = 0, beta1 = 1, a = c(1, 1), b = c(0, 1), family = quasi()),
               class = "bayesmoe_error_family")
  expect_error(moe_truth(beta0 = 0.5, beta1 = 3, eta = cbind(c(2, 0.5, 1.5, -0.5), c(-3, 1, 1, 0.5)),
                         sigma = c(0.1, 0.1), expert = expert_ffn(1), family = poisson()),
               class = "bayesmoe_error_family")
  expect_error(rmoe(10, pois_truth(), trials = 3), class = "bayesmoe_error_family")
  expect_error(rmoe(10, binom_truth(), trials = c(1, 2)), class = "bayesmoe_error")
  expect_error(rmoe(10, binom_truth(), trials = -1), class = "bayesmoe_error")
})

test_that("rmoe() simulates the family's responses with the truth's means", {
  set.seed(11)
  tp <- pois_truth()
  sim <- rmoe(20000, tp)
  expect_true(all(sim$y >= 0 & sim$y == round(sim$y)))
  k <- attr(sim, "expert")
  mu <- exp(tp$b[k] + tp$a[1, k] * sim$x)
  # the standardised mean residual of Poisson counts given their experts
  z <- sum(sim$y - mu) / sqrt(sum(mu))
  expect_lt(abs(z), 4)
  tb <- binom_truth(trials = 6)
  sb <- rmoe(5000, tb)
  expect_true(all(sb$trials == 6 & sb$y >= 0 & sb$y <= 6))
  sb1 <- rmoe(100, binom_truth(trials = 1))
  expect_null(sb1$trials)
  expect_true(all(sb1$y %in% 0:1))
  st <- rmoe(50, tb, trials = rep(1:5, 10))
  expect_true(all(st$y <= st$trials) && identical(st$trials, as.numeric(rep(1:5, 10))))
})

test_that("moe_truth(fit) extracts family truths that losses compare with the truth", {
  set.seed(12)
  tp <- pois_truth()
  sim <- rmoe(3000, tp)
  fit <- moe_em(y ~ x, data = sim, K = 2, family = poisson(), seed = 1)
  ft <- moe_truth(fit)
  expect_s3_class(ft$expert, "moe_expert_poisson")
  expect_null(ft$sigma)
  # the loss of the fit is the loss of its truth
  expect_equal(density_loss(fit, tp), density_loss(ft, tp))
  expect_equal(voronoi_loss(fit, tp), voronoi_loss(ft, tp))
  expect_lt(density_loss(fit, tp), 0.05)
  tb <- binom_truth(trials = 5)
  sb <- rmoe(3000, tb)
  fb <- moe_em(cbind(y, trials - y) ~ x, data = sb, K = 2, family = binomial(), seed = 1)
  expect_equal(moe_truth(fb)$trials, 5)
  expect_lt(density_loss(fb, tb), 0.05)
  expect_error(density_loss(fb, tp), class = "bayesmoe_error_family")
  expect_error(voronoi_loss(fit, moe_truth_example("p4")), class = "bayesmoe_error_family")
})

test_that("family losses vanish at the truth and are symmetric", {
  for (tr in list(pois_truth(), binom_truth(), binom_truth(trials = 1))) {
    expect_equal(density_loss(tr, tr), 0)
    expect_equal(density_loss(tr, tr, type = "tv"), 0)
    expect_equal(voronoi_loss(tr, tr), 0)
  }
  p1 <- pois_truth()
  p2 <- pois_truth(b = c(0.7, 2.8), beta1 = 7)
  for (ty in c("hellinger", "tv", "hellinger_joint")) {
    expect_equal(density_loss(p1, p2, type = ty), density_loss(p2, p1, type = ty),
                 tolerance = 1e-12)
  }
  b1 <- binom_truth()
  b2 <- binom_truth(a = c(1.5, -0.5))
  expect_equal(density_loss(b1, b2), density_loss(b2, b1), tolerance = 1e-12)
  expect_equal(voronoi_loss(b1, b2, reference = "fixed"), voronoi_loss(b2, b1, reference = "fixed"))
})

test_that("Hellinger between one-expert Poisson truths is the closed form", {
  for (l in list(c(2, 3), c(0.5, 9), c(40, 41))) {
    t1 <- moe_truth(beta0 = numeric(0), beta1 = numeric(0), a = 0, b = log(l[1]),
                    family = poisson())
    t2 <- moe_truth(beta0 = numeric(0), beta1 = numeric(0), a = 0, b = log(l[2]),
                    family = poisson())
    # h^2 = 1 - sum sqrt(p q) = 1 - exp(-(sqrt(l1) - sqrt(l2))^2 / 2) (the
    # 1/2 convention of src/loss.c); density_loss() gives E_X h
    h2 <- 1 - exp(-(sqrt(l[1]) - sqrt(l[2]))^2 / 2)
    expect_equal(density_loss(t1, t2), sqrt(h2), tolerance = 1e-10)
    expect_equal(density_loss(t1, t2, type = "hellinger_joint"), sqrt(h2), tolerance = 1e-10)
  }
})

test_that("TV and Hellinger of two-expert truths match a direct computation", {
  x <- (seq_len(200) - 0.5) / 200
  p1 <- pois_truth()
  p2 <- pois_truth(b = c(0.8, 2.6), a = c(0.7, -0.2), beta1 = 6)
  y <- 0:200
  P <- direct_pmf(p1, y, x)
  Q <- direct_pmf(p2, y, x)
  expect_equal(density_loss(p1, p2, type = "tv"), mean(0.5 * rowSums(abs(P - Q))),
               tolerance = 1e-10)
  expect_equal(density_loss(p1, p2), mean(sqrt(0.5 * rowSums((sqrt(P) - sqrt(Q))^2))),
               tolerance = 1e-10)
  b1 <- binom_truth(trials = 7)
  b2 <- binom_truth(trials = 7, b = c(-1, 1.5), beta0 = -3)
  P <- direct_pmf(b1, 0:7, x)
  Q <- direct_pmf(b2, 0:7, x)
  expect_equal(density_loss(b1, b2, type = "tv"), mean(0.5 * rowSums(abs(P - Q))),
               tolerance = 1e-12)
  expect_equal(density_loss(b1, b2), mean(sqrt(0.5 * rowSums((sqrt(P) - sqrt(Q))^2))),
               tolerance = 1e-12)
  # other covariate values
  xs <- c(0.1, 0.9)
  P <- direct_pmf(b1, 0:7, xs)
  Q <- direct_pmf(b2, 0:7, xs)
  expect_equal(density_loss(b1, b2, type = "tv", x = xs), mean(0.5 * rowSums(abs(P - Q))),
               tolerance = 1e-12)
})

test_that("an expert split in two identical halves is the same mixture", {
  # logits (eta, 0) against (eta + log 2, 0, 0) with experts 2 and 3 equal
  p1 <- pois_truth()
  p3 <- moe_truth(beta0 = c(-4 + log(2), 0), beta1 = c(8, 0), a = c(1, -0.5, -0.5),
                  b = c(0.5, 3, 3), family = poisson())
  expect_equal(density_loss(p3, p1), 0, tolerance = 1e-12)
  expect_equal(density_loss(p3, p1, type = "tv"), 0, tolerance = 1e-12)
  # the over-fitted Voronoi loss counts both halves in one cell, weights summing
  cl <- voronoi_cells(p3, p1, translation = TRUE)
  expect_equal(sort(cl$cell), c(1L, 2L, 2L))
  expect_equal(voronoi_loss(p3, p1, translation = TRUE), 0, tolerance = 1e-10)
})

test_that("the Voronoi loss of GLM atoms is that of the same atoms with equal variances", {
  # the variance coordinate is constant, so it contributes nothing
  g <- function(tr) moe_truth(beta0 = tr$beta0, beta1 = tr$beta1, a = tr$a, b = tr$b,
                              sigma = rep(1, tr$K))
  p1 <- pois_truth()
  p2 <- pois_truth(b = c(0.8, 2.6), a = c(0.7, -0.2), beta1 = 6, beta0 = -3)
  for (ty in c("exact", "over")) {
    expect_equal(voronoi_loss(p1, p2, type = ty), voronoi_loss(g(p1), g(p2), type = ty))
  }
  cl <- voronoi_cells(p2, p1)
  expect_equal(cl$sigma2, c(0, 0))
})

test_that("moe_contraction() runs studies with truths of each family", {
  st <- moe_contraction(pois_truth(), n = c(200, 400), reps = 2, seed = 3,
                        losses = c("D", "hellinger", "tv"))
  expect_setequal(unique(st$results$loss), c("D1", "hellinger", "tv"))
  expect_true(all(is.finite(st$results$value)))
  expect_true(all(st$runs$status == "ok"))
  sb <- moe_contraction(binom_truth(trials = 5), n = c(200, 400), reps = 2, seed = 3)
  expect_true(all(is.finite(sb$results$value)))
  expect_error(moe_contraction(pois_truth(), n = 100, method = "ls"),
               class = "bayesmoe_error_family")
})

test_that("moe_contraction(method = \"mcmc\") runs with a Poisson truth", {
  st <- moe_contraction(pois_truth(), n = c(150, 300), reps = 1, seed = 4, method = "mcmc",
                        mcmc = list(chains = 1, iter = 120, warmup = 60), density_draws = 10)
  expect_true(all(is.finite(st$results$value)))
  expect_setequal(unique(st$results$statistic), c("mean", "q90"))
})

test_that("the shipped contraction studies per family have density slopes near -1/2", {
  path <- system.file("extdata", "contraction-families.rds", package = "bayesmoe")
  skip_if(!nzchar(path), "inst/extdata/contraction-families.rds not installed")
  studies <- readRDS(path)
  expect_true(all(c("poisson", "binomial") %in% names(studies)))
  for (nm in names(studies)) {
    st <- studies[[nm]]
    expect_s3_class(st, "moe_contraction")
    expect_true(truth_is_family(st$truth))
    expect_gte(length(st$settings$n), 6L)
    expect_gte(max(st$settings$n) / min(st$settings$n), 16)
    sl <- st$slopes[["hellinger"]]
    expect_true(abs(sl + 0.5) < 0.15, info = sprintf("%s: Hellinger slope %.3f", nm, sl))
    expect_true(abs(st$slopes[["tv"]] + 0.5) < 0.15, info = nm)
  }
})

test_that("t truths: losses vanish at the truth, match integrate() and rmoe() simulates t noise", {
  skip_if_not(has_t(), "student_t() not available")
  st <- get("student_t", asNamespace("bayesmoe"))
  t1 <- moe_truth(beta0 = -4, beta1 = 8, a = c(2, -2), b = c(1, 4), sigma = c(0.3, 0.4),
                  df = c(3, 5), family = st())
  expect_equal(t1$df, c(expert1 = 3, expert2 = 5))
  expect_output(print(t1), "degrees of freedom")
  expect_equal(density_loss(t1, t1), 0)
  expect_equal(voronoi_loss(t1, t1), 0)
  # one expert, Cauchy against t_2 with other scale: integrate() reference
  c1 <- moe_truth(beta0 = numeric(0), beta1 = numeric(0), a = 0, b = 0, sigma = 1, df = 1,
                  family = st())
  c2 <- moe_truth(beta0 = numeric(0), beta1 = numeric(0), a = 0, b = 0.5, sigma = 2, df = 2,
                  family = st())
  f <- function(y) 0.5 * (sqrt(dt(y, 1)) - sqrt(dt((y - 0.5) / 2, 2) / 2))^2
  ref <- sqrt(integrate(f, -Inf, Inf, rel.tol = 1e-12)$value)
  expect_equal(density_loss(c1, c2), ref, tolerance = 1e-8)
  g <- function(y) 0.5 * abs(dt(y, 1) - dt((y - 0.5) / 2, 2) / 2)
  ref_tv <- integrate(g, -Inf, -3, rel.tol = 1e-12)$value +
    integrate(g, -3, 3, rel.tol = 1e-12, subdivisions = 1000)$value +
    integrate(g, 3, Inf, rel.tol = 1e-12)$value
  # TV has kinks where the densities cross (not split here): about 1e-6
  expect_equal(density_loss(c1, c2, type = "tv"), ref_tv, tolerance = 2e-5)
  set.seed(5)
  sim <- rmoe(4000, c2)
  expect_gt(stats::ks.test((sim$y - 0.5) / 2, "pt", df = 2)$p.value, 1e-3)
})
