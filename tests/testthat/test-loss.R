# Plain-R reference implementations (deliberately written from the
# definitions of Nguyen, Nguyen and Ho (2023), not from the C code).

ref_par <- function(tr) {
  list(beta0 = unname(tr$beta0), beta1 = unname(tr$beta1), a = unname(tr$a),
       b = unname(tr$b), s2 = unname(tr$sigma2))
}

# D1 / D2 under the reference convention (the fit as given), with the
# gating of the fit translated by (t0, t1) when `shift` is given.
ref_voronoi <- function(fit, tru, loss, rbar = c(1, 4, 6), norm = "euclidean",
                        shift = NULL) {
  f <- ref_par(fit)
  t <- ref_par(tru)
  if (!is.null(shift)) {
    f$beta0 <- f$beta0 + shift[1]
    f$beta1 <- f$beta1 + shift[-1]
  }
  K <- length(f$b)
  ks <- length(t$b)
  theta <- function(p, k) c(p$beta1[, k], p$a[, k], p$b[k], p$s2[k])
  cell <- vapply(seq_len(K), function(i) {
    dd <- vapply(seq_len(ks), function(j) {
      v <- theta(f, i) - theta(t, j)
      if (norm == "l1") sum(abs(v)) else sum(v^2)
    }, 0)
    which(dd == min(dd))[1]
  }, 1L)
  out <- 0
  S <- vapply(seq_len(ks), function(j) sum(exp(f$beta0[cell == j])), 0)
  for (j in seq_len(ks)) {
    A <- which(cell == j)
    out <- out + abs(sum(exp(f$beta0[A])) - exp(t$beta0[j]))
    M <- length(A)
    for (i in A) {
      d1 <- sqrt(sum((f$beta1[, i] - t$beta1[, j])^2))
      da <- sqrt(sum((f$a[, i] - t$a[, j])^2))
      db <- abs(f$b[i] - t$b[j])
      ds <- abs(f$s2[i] - t$s2[j])
      if (loss == "D1" || M == 1) {
        out <- out + exp(f$beta0[i]) * (d1 + da + db + ds)
      } else {
        if (M > length(rbar)) return(NA_real_)
        r <- rbar[M]
        out <- out + exp(f$beta0[i]) * (d1^r + db^r + da^(r / 2) + ds^(r / 2))
      }
    }
  }
  structure(out, S = S)
}

# The translated loss at a gating-slope shift t1: the minimum over the
# weight scales exp(t0) at which one cell's fitted weight equals its true
# weight.
ref_translated_at <- function(fit, tru, loss, t1) {
  S <- attr(ref_voronoi(fit, tru, loss, shift = c(0, t1)), "S")
  v <- (exp(unname(tru$beta0)) / S)[S > 0]
  min(vapply(v, function(vv) c(ref_voronoi(fit, tru, loss, shift = c(log(vv), t1))), 0))
}

# The same parameter set with expert r as the reference, as a raw list
# (moe_truth() would put the reference back on the last expert).
rereference <- function(tr, r) {
  list(beta0 = tr$beta0 - tr$beta0[r], beta1 = tr$beta1 - tr$beta1[, r],
       a = tr$a, b = tr$b, sigma2 = tr$sigma2)
}

permute <- function(tr, perm) {
  moe_truth(beta0 = tr$beta0[perm], beta1 = tr$beta1[, perm, drop = FALSE],
            a = tr$a[, perm, drop = FALSE], b = tr$b[perm], sigma = tr$sigma[perm])
}

rand_truth <- function(K, d) {
  moe_truth(beta0 = rnorm(K - 1, 0, 1), beta1 = matrix(rnorm(d * (K - 1), 0, 2), d),
            a = matrix(rnorm(d * K, 0, 2), d), b = rnorm(K, 0, 2),
            sigma = exp(rnorm(K, -1, 0.3)))
}

# A fitted parameter set whose atom i lies near true atom map[i].
rand_fit <- function(tru, map, noise = 0.3) {
  K <- length(map)
  d <- tru$d
  b1 <- tru$beta1[, map, drop = FALSE] + rnorm(d * K, 0, noise)
  moe_truth(beta0 = rnorm(K, -0.5, 1), beta1 = b1,
            a = tru$a[, map, drop = FALSE] + rnorm(d * K, 0, noise),
            b = tru$b[map] + rnorm(K, 0, noise),
            sigma = sqrt(tru$sigma2[map] + abs(rnorm(K, 0, noise / 3))))
}

p4 <- function() moe_truth_example("p4")

test_that("the loss of the truth against itself is zero", {
  tru <- p4()
  for (type in c("exact", "over")) {
    expect_equal(voronoi_loss(tru, tru, type = type), 0)
    expect_equal(voronoi_loss(tru, tru, type = type, translation = TRUE), 0)
    expect_equal(voronoi_loss(tru, tru, type = type, reference = "fixed"), 0)
  }
  set.seed(1)
  tr3 <- rand_truth(3, 2)
  expect_equal(voronoi_loss(tr3, tr3), 0)
  expect_equal(density_loss(tru, tru), 0)
  expect_equal(density_loss(tr3, tr3, type = "tv"), 0)
})

test_that("D1 and D2 match the plain-R reference, with cells of 2 and 3 atoms and empty cells", {
  set.seed(2)
  sizes <- integer()
  for (r in 1:40) {
    d <- sample(1:2, 1)
    ks <- sample(1:3, 1)
    K <- sample(1:6, 1)
    tru <- rand_truth(ks, d)
    map <- sample.int(ks, K, replace = TRUE)
    fit <- rand_fit(tru, map, noise = sample(c(0.05, 0.5, 2), 1))
    for (loss in c("D1", "D2")) {
      type <- if (loss == "D1") "exact" else "over"
      for (norm in c("euclidean", "l1")) {
        ref <- ref_voronoi(fit, tru, loss, rbar = c(1, 4, 6, 8, 10, 12), norm = norm)
        got <- voronoi_loss(fit, tru, type = type, rbar = c(1, 4, 6, 8, 10, 12), norm = norm,
                            reference = "fixed")
        expect_equal(as.numeric(got), c(ref), tolerance = 1e-12)
      }
    }
    cl <- voronoi_cells(fit, tru, reference = "fixed")
    sizes <- c(sizes, tabulate(cl$cell, ks))
  }
  # the random sets did exercise empty, 2-atom and 3-atom cells
  expect_true(all(c(0L, 2L, 3L) %in% sizes))
})

test_that("cells beyond the rbar table give NA with a classed warning; an extended table works", {
  set.seed(3)
  tru <- rand_truth(2, 1)
  fit <- rand_fit(tru, c(1, 1, 1, 1, 2), noise = 0.01)
  expect_warning(v <- voronoi_loss(fit, tru, reference = "fixed"),
                 class = "bayesmoe_warning_rbar")
  expect_true(is.na(v))
  v4 <- voronoi_loss(fit, tru, rbar = c(1, 4, 6, 8), reference = "fixed")
  expect_equal(as.numeric(v4), c(ref_voronoi(fit, tru, "D2", rbar = c(1, 4, 6, 8))))
  expect_snapshot(v <- voronoi_loss(fit, tru, reference = "fixed"))
})

test_that("ties go to the lowest true atom", {
  # two true atoms at distance 2 in b only; a fitted atom exactly between them
  tru <- moe_truth(beta0 = 0, beta1 = 0, a = c(0, 0), b = c(-1, 1), sigma = c(1, 1))
  fit <- moe_truth(beta0 = numeric(0), beta1 = numeric(0), a = 0, b = 0, sigma = 1)
  cl <- voronoi_cells(fit, tru)
  expect_equal(cl$cell, 1L)
  # cell 1 holds the atom (weight 1, true weight 1), cell 2 is empty (true weight 1)
  expect_equal(as.numeric(voronoi_loss(fit, tru, type = "exact")), 0 + 1 + 1)
})

test_that("the best reference is the minimum over re-referenced fits", {
  set.seed(4)
  for (r in 1:10) {
    tru <- rand_truth(2, 1)
    fit <- rand_fit(tru, sample(1:2, 3, replace = TRUE))
    refs <- vapply(1:3, function(k) c(ref_voronoi(rereference(fit, k), tru, "D1")), 0)
    expect_equal(as.numeric(voronoi_loss(fit, tru, type = "exact")), min(refs),
                 tolerance = 1e-12)
  }
})

test_that("losses are invariant to relabelling the fitted experts", {
  set.seed(5)
  for (r in 1:10) {
    d <- sample(1:2, 1)
    tru <- rand_truth(2, d)
    fit <- rand_fit(tru, c(1, 2, 2, 1), noise = 0.2)
    perm <- sample.int(4)
    pf <- permute(fit, perm)
    for (type in c("exact", "over")) {
      expect_equal(as.numeric(voronoi_loss(pf, tru, type = type)),
                   as.numeric(voronoi_loss(fit, tru, type = type)), tolerance = 1e-10)
      expect_equal(as.numeric(voronoi_loss(pf, tru, type = type, translation = TRUE)),
                   as.numeric(voronoi_loss(fit, tru, type = type, translation = TRUE)),
                   tolerance = 1e-6)
    }
    x <- matrix(runif(6 * d), ncol = d)
    expect_equal(density_loss(pf, tru, x = x), density_loss(fit, tru, x = x), tolerance = 1e-10)
  }
})

test_that("the translation infimum is exact in t0, consistent and below a brute-force search", {
  set.seed(6)
  for (r in 1:3) {
    tru <- rand_truth(2, 1)
    fit <- rand_fit(tru, c(1, 2, 2), noise = 0.3)
    for (loss in c("D1", "D2")) {
      type <- if (loss == "D1") "exact" else "over"
      v <- voronoi_loss(fit, tru, type = type, translation = TRUE)
      sh <- attr(voronoi_cells(fit, tru, type = type, translation = TRUE), "shift")[, 1]
      # the reported translation gives the reported loss, and t0 is optimal
      expect_equal(c(ref_voronoi(fit, tru, loss, shift = sh)), as.numeric(v),
                   tolerance = 1e-10)
      expect_equal(ref_translated_at(fit, tru, loss, sh[2]), as.numeric(v), tolerance = 1e-10)
      # not above a grid search over t1
      t1s <- sh[2] + seq(-3, 3, length.out = 241)
      brute <- min(vapply(t1s, function(t1) ref_translated_at(fit, tru, loss, t1), 0))
      expect_lte(as.numeric(v), brute + 1e-10)
    }
  }
})

test_that("an over-fitted fit with two atoms in the reference cell: only the translated loss vanishes", {
  tru <- p4()
  # the reference atom split in two identical halves: the same model as the truth
  split <- moe_truth(beta0 = c(-8 + log(2), 0), beta1 = c(25, 0), a = c(-20, 20, 20),
                     b = c(15, -5, -5), sigma = c(0.3, 0.4, 0.4))
  expect_equal(density_loss(split, tru), 0, tolerance = 1e-12)
  expect_equal(as.numeric(voronoi_loss(split, tru)), 1 + (2 - 1) * exp(-8), tolerance = 1e-12)
  expect_equal(as.numeric(voronoi_loss(split, tru, translation = TRUE)), 0, tolerance = 1e-12)
})

test_that("fits: EM and MCMC fits give the losses of their parameter sets", {
  set.seed(7)
  tru <- p4()
  sim <- rmoe(400, tru)
  fit <- moe_em(y ~ x, data = sim, K = 2, starts = 2, seed = 1)
  expect_equal(voronoi_loss(fit, tru), voronoi_loss(moe_truth(fit), tru))
  expect_equal(density_loss(fit, tru), density_loss(moe_truth(fit), tru))
  # a short real chain: 2 chains x 3 kept draws, labels as sampled
  mc <- moe_mcmc(y ~ x, data = sim, K = 2, chains = 2, iter = 13, warmup = 10,
                 seed = 1, progress = FALSE, control = moe_mcmc_control(em_starts = 2))
  expect_equal(dim(mc$draws)[1:2], c(3L, 2L))
  v <- voronoi_loss(mc, tru)
  expect_equal(dim(v), c(3L, 2L))
  per_draw <- vapply(1:6, function(i) as.numeric(voronoi_loss(moe_truth(mc, draw = i), tru)), 0)
  expect_equal(as.vector(v), per_draw)
  h <- density_loss(mc, tru, x = c(0.2, 0.7))
  expect_equal(as.vector(h), vapply(1:6, function(i)
    density_loss(moe_truth(mc, draw = i), tru, x = c(0.2, 0.7)), 0))
  cl <- voronoi_cells(mc, tru)
  expect_equal(nrow(cl), 12L)
  expect_equal(cl$chain, rep(1:2, each = 6))
  expect_equal(cl$iteration, rep(rep(1:3, each = 2), 2))
})

test_that("a plain parameter list works, with sigma or sigma2", {
  tru <- p4()
  l1 <- list(beta0 = -7.9, beta1 = 24.8, a = c(-20.1, 20), b = c(15, -5.1), sigma = c(0.31, 0.4))
  l2 <- list(beta0 = -7.9, beta1 = 24.8, a = c(-20.1, 20), b = c(15, -5.1),
             sigma2 = c(0.31, 0.4)^2)
  expect_equal(voronoi_loss(l1, tru), voronoi_loss(l2, tru))
  expect_equal(as.numeric(voronoi_loss(l1, tru)),
               c(ref_voronoi(do.call(moe_truth, l1), tru, "D1")), tolerance = 1e-12)
})

# Reference density distance: integrate() over y at each x.
ref_density <- function(fit, tru, x, type) {
  x <- as.matrix(x)
  comp <- function(tr, xx) {
    eta <- tr$beta0 + drop(crossprod(tr$beta1, xx))
    g <- exp(eta - max(eta))
    list(g = g / sum(g), mu = tr$b + drop(crossprod(tr$a, xx)), sd = sqrt(tr$sigma2))
  }
  vals <- apply(x, 1, function(xx) {
    f <- comp(fit, xx)
    t <- comp(tru, xx)
    dens <- function(cm, y) colSums(cm$g * dnorm(outer(cm$mu, y, "-") / cm$sd) / cm$sd)
    integrand <- if (type == "tv") function(y) abs(dens(f, y) - dens(t, y)) else
      function(y) (sqrt(dens(f, y)) - sqrt(dens(t, y)))^2
    br <- sort(unique(c(f$mu + outer(f$sd, c(-12, -4, -1, 0, 1, 4, 12)),
                        t$mu + outer(t$sd, c(-12, -4, -1, 0, 1, 4, 12)))))
    tot <- 0
    for (i in seq_len(length(br) - 1)) {
      tot <- tot + integrate(integrand, br[i], br[i + 1], rel.tol = 1e-11, abs.tol = 0,
                             subdivisions = 1000)$value
    }
    tot / 2
  })
  switch(type, hellinger = mean(sqrt(vals)), tv = mean(vals),
         hellinger_joint = sqrt(mean(vals)))
}

test_that("density distances match integrate() to 1e-6", {
  set.seed(8)
  for (r in 1:4) {
    d <- if (r <= 3) 1 else 2
    tru <- if (d == 1) p4() else rand_truth(2, 2)
    fit <- rand_fit(tru, sample(1:tru$K, sample(1:4, 1), replace = TRUE),
                    noise = c(0.02, 0.3, 1, 0.3)[r])
    x <- matrix(runif(3 * d), ncol = d)
    for (type in c("hellinger", "tv", "hellinger_joint")) {
      expect_equal(density_loss(fit, tru, type = type, x = x), ref_density(fit, tru, x, type),
                   tolerance = 1e-6)
      expect_lt(abs(density_loss(fit, tru, type = type, x = x) -
                      ref_density(fit, tru, x, type)), 1e-6)
    }
  }
})

test_that("density_loss() averages over the documented default x", {
  set.seed(9)
  tru <- p4()
  fit <- rand_fit(tru, 1:2, noise = 0.1)
  expect_equal(density_loss(fit, tru), density_loss(fit, tru, x = (1:200 - 0.5) / 200))
  tr2 <- rand_truth(2, 2)
  f2 <- rand_fit(tr2, 1:2, noise = 0.1)
  set.seed(10)
  before <- runif(1)
  set.seed(10)
  a <- density_loss(f2, tr2)
  expect_equal(runif(1), before)  # the caller's stream is untouched
  expect_equal(a, density_loss(f2, tr2))
  # Hellinger distance is at most 1, total variation at most 1, and TV >= h^2
  far <- moe_truth(beta0 = 0, beta1 = 0, a = c(0, 0), b = c(100, 200), sigma = c(1, 1))
  expect_equal(density_loss(far, tru), 1, tolerance = 1e-8)
  expect_equal(density_loss(far, tru, type = "tv"), 1, tolerance = 1e-8)
})

test_that("errors of the losses", {
  set.seed(11)
  tru <- p4()
  sim <- rmoe(200, tru)
  fit1 <- moe_em(y ~ x, data = sim, K = 2, gating = ~ 1, starts = 1, seed = 1)
  tr2 <- rand_truth(2, 2)
  expect_snapshot(error = TRUE, {
    voronoi_loss(1:3, tru)
    voronoi_loss(tru, "p4")
    voronoi_loss(list(beta0 = 1, a = 2), tru)
    voronoi_loss(list(beta0 = -8, beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma2 = c(0.1, -1)),
                 tru)
    voronoi_loss(tru, tru, type = "D1")
    voronoi_loss(tru, tru, rbar = c(2, 4))
    voronoi_loss(tru, tru, rbar = c(1, NA))
    voronoi_loss(tru, tru, norm = "max")
    voronoi_loss(tru, tru, reference = "first")
    voronoi_loss(tru, tru, translation = NA)
    voronoi_loss(tr2, tru)
    voronoi_loss(fit1, tru)
    voronoi_cells(tru, tru, norm = "l2")
    density_loss(tru, tru, type = "kl")
    density_loss(tru, tru, x = matrix(0.5, 2, 2))
    density_loss(tru, tru, x = "a")
    density_loss(tru, tru, min_points = 1)
  })
})

test_that("voronoi_loss() hands least-squares and FFN fits to voronoi_loss_strong()", {
  set.seed(6)
  tru <- moe_truth(beta0 = 0.5, beta1 = 3, a = c(2, -0.5), b = c(1, -1), sigma = c(0.1, 0.1))
  lt <- list(alpha = rbind(c(1, -1), c(2, -0.5)), W = rbind(c(0.5, 0), c(3, 0)), sd = 0.1,
             expert = expert_linear())
  s <- bayesmoe:::ls_simulate(lt, 300)
  d <- data.frame(y = s$y, x = s$X[, 2])
  fit <- moe_ls(y ~ x, data = d, K = 2, starts = 2, seed = 1)
  expect_identical(voronoi_loss(fit, tru),
                   voronoi_loss_strong(fit, lt[c("alpha", "W")], translate = "reference"))
  expect_identical(voronoi_loss(fit, tru, translation = TRUE),
                   voronoi_loss_strong(fit, lt[c("alpha", "W")]))
  expect_identical(voronoi_loss(fit, lt[c("alpha", "W")], reference = "fixed"),
                   voronoi_loss_strong(fit, lt[c("alpha", "W")], translate = "none"))
  # an FFN truth and an MCMC fit with FFN experts: one loss per draw
  ft <- moe_truth(beta0 = 0.5, beta1 = 3, eta = cbind(c(2, 0.5, 1.5, -0.5), c(-3, 1, 1, 0.5)),
                  sigma = c(0.1, 0.1), expert = expert_ffn(1))
  sim <- rmoe(300, ft)
  mc <- moe_mcmc(y ~ x, data = sim, K = 2, expert = expert_ffn(1), chains = 2, iter = 20,
                 warmup = 10, seed = 1, control = moe_mcmc_control(em_starts = 1))
  v <- voronoi_loss(mc, ft)
  expect_equal(dim(v), c(10L, 2L))
  expect_equal(as.vector(v), as.numeric(voronoi_loss_strong(
    mc, bayesmoe:::truth_par(ft)[c("alpha", "W")], translate = "reference")))
  expect_snapshot(error = TRUE, {
    voronoi_loss(fit, ft)
    voronoi_loss(ft, tru)
    voronoi_loss(tru, ft)
    density_loss(fit, tru)
    density_loss(mc, ft)
    voronoi_cells(mc, tru)
  })
})

test_that("an overflowing Voronoi loss is a classed error, not Inf", {
  targs <- list(beta0 = 1e5, beta1 = 25, a = c(-20, 20), b = c(15, -5), sigma = c(0.3, 0.4))
  tr5 <- do.call(moe_truth, targs)
  expect_snapshot(voronoi_loss(moe_truth_example("p4"), tr5), error = TRUE)
  expect_error(voronoi_loss(moe_truth_example("p4"), tr5, type = "over"),
               class = "bayesmoe_error_numerical")
})
