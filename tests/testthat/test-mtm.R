# Tests of moe_mtm() (R/mtm.R, src/mtm.c).
#
# Hand-built atom sets whose outcome is worked out by hand from the algorithm
# (Guha, Ho and Nguyen 2021, Algorithm 1, as stated in ?moe_mtm), including
# exact ties and weights exactly at the threshold (all numbers below are
# exact in binary floating point), a plain-R reference implementation
# compared with the C kernel on random atom sets, and the method for fits.

one_set <- function(atoms, weights) list(atoms = as.matrix(atoms), weights = weights)

# Plain-R Merge-Truncate-Merge of one atom set (rows of `atoms`), visiting
# order `ord` (1-based).
mtm_reference <- function(atoms, w, ord, omega, c, r) {
  thr <- (c * omega)^r
  dist <- function(i, j) sqrt(sum((atoms[i, ] - atoms[j, ])^2))
  kept <- integer()
  q <- numeric()
  slot <- integer(nrow(atoms))
  for (j in ord) {
    d <- vapply(kept, function(i) dist(i, j), 0)
    cand <- which(d < omega)
    if (length(cand)) {
      b <- cand[which.min(d[cand])]
      q[b] <- q[b] + w[j]
      slot[j] <- b
    } else {
      kept <- c(kept, j)
      q <- c(q, w[j])
      slot[j] <- length(kept)
    }
  }
  o <- order(-q, seq_along(q))         # stable: equal weights in visiting order
  inA <- q[o] > thr
  if (!any(inA)) inA[1L] <- TRUE
  for (s in seq_along(o)[-1L]) {
    if (!inA[s]) next
    for (u in seq_len(s - 1L)) {
      if (inA[u] && q[o[s]] * dist(kept[o[s]], kept[o[u]])^r <= thr) {
        inA[s] <- FALSE
        break
      }
    }
  }
  A <- which(inA)
  dest <- integer(length(o))
  dest[A] <- seq_along(A)
  wout <- q[o[A]]
  for (s in which(!inA)) {
    d <- vapply(A, function(u) dist(kept[o[s]], kept[o[u]]), 0)
    b <- A[which.min(d)]
    dest[s] <- dest[b]
    wout[dest[b]] <- wout[dest[b]] + q[o[s]]
  }
  pos <- match(seq_along(q), o)
  list(K = length(A), atoms = atoms[kept[o[A]], , drop = FALSE], weights = wout,
       assign = dest[pos[slot]])
}

test_that("merging keeps the earlier atom's location and adds the weights", {
  set.seed(1)
  s <- one_set(cbind(c(0, 0.25, 5)), c(0.5, 0.25, 0.25))
  m <- moe_mtm(s, omega = 0.5, c = 0.05, r = 2, order = list(1:3))
  expect_identical(m$K, 2L)
  expect_identical(m$atoms[[1]], cbind(c(0, 5)))
  expect_identical(m$weights[[1]], c(0.75, 0.25))
  expect_identical(m$assign[, 1], c(1L, 1L, 2L))
  # visiting the second atom first keeps its location instead
  m2 <- moe_mtm(s, omega = 0.5, c = 0.05, r = 2, order = list(c(2L, 1L, 3L)))
  expect_identical(m2$atoms[[1]], cbind(c(0.25, 5)))
  expect_identical(m2$weights[[1]], c(0.75, 0.25))
})

test_that("an atom merges into the nearest earlier atom; distance ties go to the first kept", {
  set.seed(1)
  # atoms 0, 2, 1.5 with omega = 1: atom 3 is 1.5 from atom 1 and 0.5 from
  # atom 2, so it merges into atom 2, which then outweighs atom 1
  m <- moe_mtm(one_set(cbind(c(0, 2, 1.5)), c(0.25, 0.25, 0.5)), omega = 1, c = 0.05,
               order = list(1:3))
  expect_identical(m$atoms[[1]], cbind(c(2, 0)))
  expect_identical(m$weights[[1]], c(0.75, 0.25))
  expect_identical(m$assign[, 1], c(2L, 1L, 1L))
  # atoms 0, 3, 1.5 with omega = 2: atom 3 is at distance 1.5 from both
  # kept atoms (a tie): it joins atom 1, kept first
  m <- moe_mtm(one_set(cbind(c(0, 3, 1.5)), c(0.25, 0.5, 0.25)), omega = 2, c = 0.05,
               order = list(1:3))
  expect_identical(m$weights[[1]], c(0.5, 0.5))
  expect_identical(m$atoms[[1]], cbind(c(0, 3)))   # equal weights: visiting order
  expect_identical(m$assign[, 1], c(1L, 2L, 1L))
})

test_that("a weight exactly at the threshold is truncated, just above it is kept", {
  set.seed(1)
  # c = 0.5, omega = 0.5, r = 2: threshold (0.25)^2 = 0.0625 exactly
  at <- cbind(c(0, 10, 20))
  m <- moe_mtm(one_set(at, c(0.5, 0.4375, 0.0625)), omega = 0.5, c = 0.5, r = 2,
               order = list(1:3))
  expect_identical(m$threshold, 0.0625)
  expect_identical(m$K, 2L)
  expect_identical(m$weights[[1]], c(0.5, 0.5))    # 0.0625 went to its nearest atom (10)
  expect_identical(m$assign[, 1], c(1L, 2L, 2L))
  m <- moe_mtm(one_set(at, c(0.5, 0.4375 - 2^-10, 0.0625 + 2^-10)), omega = 0.5, c = 0.5,
               r = 2, order = list(1:3))
  expect_identical(m$K, 3L)
})

test_that("weight times distance^r at the threshold is truncated; distance omega does not merge", {
  set.seed(1)
  # atoms 0 and 0.5 (distance = omega: no merge); 0.25 * 0.5^2 = 0.0625 = threshold
  m <- moe_mtm(one_set(cbind(c(0, 0.5)), c(0.75, 0.25)), omega = 0.5, c = 0.5, r = 2,
               order = list(1:2))
  expect_identical(m$K, 1L)
  expect_identical(m$atoms[[1]], cbind(0))
  expect_identical(m$weights[[1]], 1)
  # with r = 1 and c = 0.25 the threshold is 0.125 = 0.25 * 0.5^1: truncated (<=)
  m <- moe_mtm(one_set(cbind(c(0, 0.5)), c(0.75, 0.25)), omega = 0.5, c = 0.25, r = 1,
               order = list(1:2))
  expect_identical(m$K, 1L)
  # the heavier atom is never truncated by the second rule; the second one
  # is tested against the first only: at distance 1 it survives
  m <- moe_mtm(one_set(cbind(c(0, 1)), c(0.75, 0.25)), omega = 0.5, c = 0.5, r = 2,
               order = list(1:2))
  expect_identical(m$K, 2L)
})

test_that("the truncate rule only compares with heavier atoms still kept", {
  set.seed(1)
  # sorted weights 0.5 (at 0), 0.3 (at 0.6), 0.2 (at 1.2); threshold 0.0625.
  # atom 0.6: 0.3 * 0.36 = 0.108 > thr, kept. atom 1.2: vs 0: 0.2 * 1.44 >
  # thr; vs 0.6: 0.2 * 0.36 = 0.072 > thr: kept. K = 3.
  m <- moe_mtm(one_set(cbind(c(0, 0.6, 1.2)), c(0.5, 0.3, 0.2)), omega = 0.5, c = 0.5,
               order = list(1:3))
  expect_identical(m$K, 3L)
  # atoms a = 0 (0.65), b = 0.55 (0.2), c = 1.15 (0.15). b: 0.2 * 0.55^2 =
  # 0.0605 <= 0.0625, set aside. c would be set aside against b (0.15 * 0.6^2
  # = 0.054) but b is no longer kept; against a: 0.15 * 1.15^2 > thr. K = 2,
  # and b's weight goes to its nearest kept atom, a (0.55 < 0.6).
  m <- moe_mtm(one_set(cbind(c(0, 0.55, 1.15)), c(0.65, 0.2, 0.15)), omega = 0.5, c = 0.5,
               order = list(1:3))
  expect_identical(m$K, 2L)
  expect_equal(m$atoms[[1]], cbind(c(0, 1.15)))
  expect_equal(m$weights[[1]], c(0.85, 0.15))
  expect_identical(m$assign[, 1], c(1L, 1L, 2L))
  # sorted 0.5 (at 0), 0.35 (at 1.2), 0.15 (at 0.6): the light atom at 0.6 is
  # set aside (0.15 * 0.36 = 0.054) and is exactly 0.6 from both kept atoms:
  # the tie goes to the heavier one
  m <- moe_mtm(one_set(cbind(c(0, 0.6, 1.2)), c(0.5, 0.15, 0.35)), omega = 0.5, c = 0.5,
               order = list(1:3))
  expect_identical(m$K, 2L)
  expect_equal(m$weights[[1]], c(0.65, 0.35))
  expect_identical(m$assign[, 1], c(1L, 1L, 2L))
})

test_that("a single atom, all atoms merging, and a threshold above every weight", {
  set.seed(1)
  m <- moe_mtm(one_set(cbind(1, 2, 3), 1), omega = 0.1)
  expect_identical(m$K, 1L)
  expect_identical(m$atoms[[1]], cbind(1, 2, 3))
  expect_identical(m$weights[[1]], 1)
  m <- moe_mtm(one_set(cbind(c(0, 0.125, 0.25, 0.375)), rep(0.25, 4)), omega = 0.5,
               order = list(c(3L, 1L, 4L, 2L)))
  expect_identical(m$K, 1L)
  expect_identical(m$atoms[[1]], cbind(0.25))
  expect_identical(m$weights[[1]], 1)
  # merging does not move atoms: 0.4 merges into 0, then 0.8 is 0.8 from 0
  m <- moe_mtm(one_set(cbind(c(0, 0.375, 0.75)), c(0.5, 0.25, 0.25)), omega = 0.5,
               order = list(1:3))
  expect_identical(m$K, 2L)
  expect_identical(m$atoms[[1]], cbind(c(0, 0.75)))
  # c so large that (c omega)^r exceeds every weight: the heaviest atom stays
  m <- moe_mtm(one_set(cbind(c(0, 5, 10)), c(0.25, 0.5, 0.25)), omega = 0.5, c = 10,
               order = list(1:3))
  expect_identical(m$K, 1L)
  expect_identical(m$atoms[[1]], cbind(5))
  expect_identical(m$weights[[1]], 1)
})

test_that("distances are Euclidean over all coordinates", {
  set.seed(1)
  # (0, 0) and (3, 4) are at distance 5
  s <- one_set(rbind(c(0, 0), c(3, 4)), c(0.5, 0.5))
  expect_identical(moe_mtm(s, omega = 5, c = 0.05, order = list(1:2))$K, 2L)
  expect_identical(moe_mtm(s, omega = 5 + 1e-9, c = 0.05, order = list(1:2))$K, 1L)
})

test_that("the C kernel matches a plain-R implementation on random atom sets", {
  set.seed(42)
  for (rep in 1:200) {
    K <- sample(1:7, 1)
    d <- sample(1:3, 1)
    atoms <- matrix(round(rnorm(K * d), 1), K, d)
    w <- rexp(K)^3
    w <- w / sum(w)
    ord <- sample.int(K)
    omega <- runif(1, 0.05, 1.5)
    cc <- runif(1, 0.01, 1)
    r <- sample(c(1, 2, 3), 1)
    m <- moe_mtm(list(atoms = atoms, weights = w), omega = omega, c = cc, r = r,
                 order = list(ord))
    ref <- mtm_reference(atoms, w, ord, omega, cc, r)
    expect_identical(m$K, ref$K)
    expect_equal(m$atoms[[1]], ref$atoms, ignore_attr = TRUE)
    expect_equal(m$weights[[1]], ref$weights)
    expect_identical(m$assign[seq_len(K), 1], ref$assign)
  }
})

test_that("random visiting orders are uniform and reproducible", {
  set.seed(3)
  s <- one_set(cbind(c(0, 0.25)), c(0.5, 0.5))
  sets <- rep(list(s), 4000)
  m1 <- moe_mtm(sets, omega = 0.5, seed = 7)
  m2 <- moe_mtm(sets, omega = 0.5, seed = 7)
  expect_identical(m1$atoms, m2$atoms)
  first_is_1 <- mean(vapply(m1$atoms, function(a) a[1, 1] == 0, TRUE))
  expect_lt(abs(first_is_1 - 0.5), 5 * sqrt(0.25 / 4000))
  # without a seed the session RNG is used and advanced
  set.seed(11)
  a <- moe_mtm(sets[1:50], omega = 0.5)$atoms
  set.seed(11)
  expect_identical(moe_mtm(sets[1:50], omega = 0.5)$atoms, a)
})

test_that("atom sets of different sizes and weights that do not sum to one", {
  set.seed(1)
  sets <- list(one_set(cbind(c(0, 3)), c(2, 2)), one_set(cbind(c(0, 3, 6, 9)), c(1, 1, 1, 1)))
  m <- moe_mtm(sets, omega = 1, c = 0.05, order = list(1:2, 1:4))
  expect_identical(m$K, c(2L, 4L))
  expect_identical(m$weights[[1]], c(0.5, 0.5))
  expect_equal(unname(m$probs), c(0, 0.5, 0, 0.5))
  expect_identical(m$K_hat, 2L)  # ties: the smallest K
  expect_true(all(is.na(m$assign[3:4, 1])))
})

test_that("print and summary of hand-built examples", {
  sets <- list(one_set(rbind(c(0, 0), c(0.25, 0), c(5, 5)), c(0.5, 0.3, 0.2)),
               one_set(rbind(c(0, 0), c(5, 5), c(9, 9)), c(0.6, 0.3999, 1e-4)))
  m <- moe_mtm(sets, omega = 0.5, c = 0.05, seed = 1)
  expect_snapshot(print(m))
  expect_snapshot(print(summary(m)))
})

test_that("bad arguments give classed errors", {
  s <- one_set(cbind(c(0, 1)), c(0.5, 0.5))
  expect_snapshot(error = TRUE, moe_mtm(s, omega = 0))
  expect_snapshot(error = TRUE, moe_mtm(s, omega = -1))
  expect_snapshot(error = TRUE, moe_mtm(s, omega = 0.5, c = 0))
  expect_snapshot(error = TRUE, moe_mtm(s, omega = 0.5, c = -1))
  expect_snapshot(error = TRUE, moe_mtm(s, omega = 0.5, r = 0.5))
  expect_snapshot(error = TRUE, moe_mtm(s))
  expect_snapshot(error = TRUE, moe_mtm("a", omega = 1))
  expect_snapshot(error = TRUE, moe_mtm(list(list(atoms = cbind(c(0, NA)), weights = c(1, 1))),
                                        omega = 1))
  expect_snapshot(error = TRUE, moe_mtm(list(list(atoms = cbind(c(0, 1)), weights = c(-1, 2))),
                                        omega = 1))
  expect_snapshot(error = TRUE, moe_mtm(list(s, one_set(rbind(c(0, 1)), 1)), omega = 1))
  expect_snapshot(error = TRUE, moe_mtm(s, omega = 1, order = list(c(1, 1))))
  expect_error(moe_mtm(s, omega = 0), class = "bayesmoe_error_input")
  expect_error(moe_mtm(s, omega = 0.5, c = 0), class = "bayesmoe_error_input")
  expect_error(moe_mtm(s, omega = 0.5, r = 0.9), class = "bayesmoe_error_input")
})

test_that("on an over-fitted MCMC fit: atoms on the internal scale, one K per draw", {
  d <- three_experts(400, seed = 5)
  fit <- moe_mcmc(y ~ x, data = d, K = 4, chains = 2, iter = 60, warmup = 30, seed = 2,
                  progress = FALSE)
  m <- moe_mtm(fit, seed = 1)
  S <- prod(dim(fit$draws)[1:2])
  expect_s3_class(m, "moe_mtm")
  expect_length(m$K, S)
  expect_equal(sum(m$probs), 1)
  expect_named(m$probs, as.character(1:4))
  expect_equal(m$omega, (log(400) / 400)^(1 / 8))
  expect_true(all(m$K >= 1 & m$K <= 4))
  expect_identical(m$K_hat, as.integer(names(which.max(m$probs))))
  expect_identical(colnames(m$atoms[[1]]), c("gate:x", "(Intercept)", "x", "sigma2"))
  # merged weights sum to one and K matches the atoms kept
  expect_equal(vapply(m$weights, sum, 0), rep(1, S))
  expect_identical(vapply(m$atoms, nrow, 1L), m$K)
  # the atoms of a draw are its internal-scale parameters: with a tiny
  # radius and threshold nothing merges and the atoms are the experts
  none <- moe_mtm(fit, omega = 1e-12, c = 1e-100, seed = 1)
  expect_true(all(none$K == 4L))
  j <- 7L
  th <- fit$draws[j, 1, ]
  par <- bayesmoe:::par_unflatten(th, 2L, 2L, 4L)
  pin <- bayesmoe:::par_to_internal(fit$scaling, par)
  expect_equal(nrow(none$atoms[[j]]), 4L)
  ref <- cbind("gate:x" = pin$W[2, ], t(pin$alpha), sigma2 = pin$sigma2)
  w <- exp(pin$W[1, ]) / sum(exp(pin$W[1, ]))
  o <- order(-w)
  expect_equal(unname(none$atoms[[j]]), unname(ref[o, ]), tolerance = 1e-10)
  expect_equal(none$weights[[j]], w[o], tolerance = 1e-10)
  # "gate" weights: the average gating probabilities
  g <- moe_mtm(fit, omega = 1e-12, c = 1e-100, weights = "gate", seed = 1)
  sc <- fit$scaling
  Zs <- bayesmoe:::scale_data(sc, fit$y, fit$X, fit$Z)$Z
  G <- exp(bayesmoe:::log_softmax_rows(Zs %*% pin$W))
  expect_equal(sort(g$weights[[j]]), sort(unname(colMeans(G))), tolerance = 1e-10)
  # a huge radius merges everything
  expect_true(all(moe_mtm(fit, omega = 1e6, seed = 1)$K == 1L))
  expect_snapshot(error = TRUE, moe_mtm(fit, weights = "foo"))
  expect_snapshot(error = TRUE, moe_mtm(fit, omega = 0))
  # reproducible with a seed
  expect_identical(moe_mtm(fit, seed = 3)$K, moe_mtm(fit, seed = 3)$K)
  pdf(NULL)
  on.exit(dev.off())
  expect_silent(plot(m))
  expect_silent(plot(m, which = "trace"))
})

test_that("a gating without an intercept needs weights = \"gate\"", {
  d <- three_experts(200, seed = 5)
  fit <- moe_mcmc(y ~ x, gating = ~ x - 1, data = d, K = 2, chains = 1, iter = 20,
                  warmup = 10, seed = 2, progress = FALSE)
  expect_snapshot(error = TRUE, moe_mtm(fit))
  m <- moe_mtm(fit, weights = "gate", seed = 1)
  expect_length(m$K, 10L)
})
