test_that("with_seed() restores the RNG kind and state, or its absence", {
  set.seed(1)
  before <- .Random.seed
  a <- bayesmoe:::with_seed(5, runif(2))
  expect_identical(.Random.seed, before)
  expect_identical(a, bayesmoe:::with_seed(5, runif(2)))
  old <- RNGkind()
  bayesmoe:::with_seed(5, runif(1), kind = "L'Ecuyer-CMRG")
  expect_identical(RNGkind(), old)
  rm(".Random.seed", envir = globalenv())
  bayesmoe:::with_seed(5, runif(1))
  expect_false(exists(".Random.seed", envir = globalenv(), inherits = FALSE))
})

test_that("the tests above leave the default RNG kind", {
  expect_identical(RNGkind()[1L], "Mersenne-Twister")
})

test_that("with_rng_state() runs from a state and restores the caller's", {
  restore <- bayesmoe:::save_rng()
  on.exit(restore(), add = TRUE)
  set.seed(2)
  before <- .Random.seed
  st <- bayesmoe:::rng_streams(4L, 1L)[[1L]]
  run <- bayesmoe:::with_rng_state(st, runif(3))
  expect_identical(.Random.seed, before)
  assign(".Random.seed", st, envir = globalenv())
  expect_identical(run$value, runif(3))
  expect_identical(run$state, .Random.seed)
})

test_that("rng_streams() are the seeded L'Ecuyer-CMRG state and its successors", {
  restore <- bayesmoe:::save_rng()
  on.exit(restore(), add = TRUE)
  old <- RNGkind()
  set.seed(3)
  before <- .Random.seed
  s <- bayesmoe:::rng_streams(7L, 3L)
  expect_identical(.Random.seed, before)
  expect_identical(RNGkind(), old)
  first <- bayesmoe:::with_seed(7L, .Random.seed, kind = "L'Ecuyer-CMRG")
  expect_identical(s[[1L]], first)
  expect_identical(s[[2L]], parallel::nextRNGStream(first))
  expect_identical(s[[3L]], parallel::nextRNGStream(s[[2L]]))
  # the chains skip the seeded state: chain c has the c-th successor
  ch <- bayesmoe:::chain_streams(7L, 2L)
  expect_identical(ch, s[2:3])
  expect_identical(bayesmoe:::rng_streams(7L, 2L, skip = 1L), ch)
})
