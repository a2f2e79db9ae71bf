# Polya-Gamma random variates: the R front end of src/polyagamma.c, the
# sampler used by the Gibbs sampler's gating update.

#' Random draws from the Polya-Gamma distribution
#'
#' Draws from the Polya-Gamma distribution \eqn{PG(b, z)} of Polson, Scott and
#' Windle (2013), the latent variable that makes a logistic (or softmax)
#' likelihood conditionally Gaussian. `X ~ PG(b, z)` has the law of
#' \deqn{X = \frac{1}{2\pi^2} \sum_{k=1}^\infty
#'   \frac{G_k}{(k - 1/2)^2 + z^2 / (4\pi^2)},\qquad G_k \sim
#'   \mathrm{Gamma}(b, 1) \ \mathrm{independent},}{X = (1 / (2 pi^2)) sum_k
#'   G_k / ((k - 1/2)^2 + z^2 / (4 pi^2)),  G_k ~ Gamma(b, 1) independent,}
#' with mean \eqn{b \tanh(z/2) / (2z)}{b tanh(z/2) / (2z)} (\eqn{b/4} at
#' \eqn{z = 0}) and density \eqn{\cosh^b(z/2) e^{-z^2 x/2} p(x \mid b, 0)}{cosh(z/2)^b
#' exp(-z^2 x / 2) p(x | b, 0)}. The law depends on \eqn{|z|} only.
#'
#' **Method and accuracy.** \eqn{PG(1, z)} is drawn exactly by the
#' accept-reject method of Polson, Scott and Windle (2013), built on
#' Devroye's (1986) sampler for the Jacobi distribution:
#' \eqn{PG(1, z) = J^*(1, |z|/2) / 4}, with a proposal made of an inverse
#' Gaussian truncated to \eqn{(0, 0.64]} and an exponential tail beyond 0.64,
#' and acceptance decided by an alternating series. About 1.001 proposals
#' are needed per draw, whatever `z`. For larger `b` a hybrid sampler in the
#' spirit of Windle, Polson and Scott (2014) keeps the cost of a draw
#' bounded, whatever `b`:
#' * `b <= 20`: the sum of `b` independent \eqn{PG(1, z)} draws. Exact; the
#'   time grows linearly in `b` (about 20 times that of one \eqn{PG(1, z)}
#'   draw at `b = 20`, twice that of the series below).
#' * `20 < b < 2^28` (and \eqn{|z| < 2\pi 10^8}): the series above truncated
#'   after 16 terms, each drawn exactly, with the remaining tail replaced by a
#'   shifted gamma variable with the same mean, variance and third cumulant.
#'   The draws have the exact mean, variance and skewness of
#'   \eqn{PG(b, z)}; the excess kurtosis is off by at most
#'   \eqn{2.3 \times 10^{-4}}{2.3e-4} (at `b = 21`, less in proportion to
#'   \eqn{1/b}), so the distribution function is within about
#'   \eqn{10^{-5}}{1e-5} of the exact one. 17 gamma draws.
#' * `b >= 2^28` (or \eqn{|z| \ge 2\pi 10^8}{|z| >= 2 pi 1e8}): the normal
#'   law with the exact mean and variance
#'   \eqn{b (\sinh z - z) / (4 z^3 \cosh^2(z/2))}{b (sinh z - z) / (4 z^3 cosh(z/2)^2)}
#'   (\eqn{b/24} at \eqn{z = 0}). The skewness of \eqn{PG(b, z)} is at most
#'   \eqn{1.96 / \sqrt{b}}{1.96 / sqrt(b)}, so the distribution function is
#'   within \eqn{10^{-5}}{1e-5} of the exact one.
#'
#' All randomness comes from R's generator: [set.seed()] reproduces the draws.
#'
#' @param n Number of draws: a whole number >= 0. As in [rnorm()], a numeric
#'   vector of length > 1 stands for its length.
#' @param b Shape parameter(s): whole numbers >= 1 (at most
#'   `.Machine$integer.max`), no `NA`.
#' @param z Tilting parameter(s): finite numbers, no `NA`.
#'   `b` and `z` are recycled to length `n`; their lengths must divide `n`
#'   (when `n > 0`), so that draw `i` uses `b[(i - 1) %% length(b) + 1]` and
#'   `z[(i - 1) %% length(z) + 1]`.
#' @return A numeric vector of length `n` of positive draws.
#' @references
#' N. G. Polson, J. G. Scott and J. Windle (2013). Bayesian inference for
#' logistic models using Polya-Gamma latent variables. *Journal of the
#' American Statistical Association*, 108(504), 1339--1349.
#' \doi{10.1080/01621459.2013.829001}
#'
#' J. Windle, N. G. Polson and J. G. Scott (2014). Sampling Polya-Gamma
#' random variates: alternate and approximate techniques. arXiv:1405.0506.
#'
#' L. Devroye (1986). *Non-Uniform Random Variate Generation*. Springer.
#' @examples
#' set.seed(1)
#' x <- rpolyagamma(10000, b = 1, z = 2)
#' c(mean = mean(x), exact = tanh(1) / 4)
#'
#' # one draw per linear predictor, as in a Gibbs sampler
#' eta <- c(-3, 0, 0.5, 8)
#' rpolyagamma(length(eta), b = 1, z = eta)
#'
#' # PG(3, 0) has mean 3/4
#' mean(rpolyagamma(5000, b = 3))
#'
#' # the cost of a draw does not grow with b
#' rpolyagamma(3, b = 1e9, z = 1)
#' @export
rpolyagamma <- function(n, b = 1, z = 0) {
  call <- sys.call()
  n <- pg_check_n(n, call)
  b <- pg_check_b(b, call)
  z <- pg_check_z(z, call)
  if (n > 0) {
    pg_check_recycle(b, "b", n, call)
    pg_check_recycle(z, "z", n, call)
  }
  .Call(ffi_rpolyagamma, n, b, z)
}

# `n` as a double: a whole number >= 0, or the length of a longer numeric vector.
pg_check_n <- function(n, call) {
  if (is.numeric(n) && length(n) > 1L) return(as.double(length(n)))
  ok <- is.numeric(n) && length(n) == 1L && !is.na(n) && is.finite(n) &&
    n >= 0 && n == floor(n)
  if (!ok) {
    abort(sprintf("`n` must be a whole number >= 0, not %s.", describe(n)),
          call = call, arg = "n")
  }
  as.double(n)
}

# The first element of `x` failing `ok`, described with its position.
pg_bad_element <- function(x, ok) {
  i <- which(!ok)[1L]
  if (length(x) == 1L) describe(x) else sprintf("%s at position %d", describe(x[i]), i)
}

pg_check_b <- function(b, call) {
  what <- if (length(b) <= 1L) "a whole number >= 1" else "whole numbers >= 1"
  if (!is.numeric(b) || length(b) == 0L) {
    abort(sprintf("`b` must be %s, not %s.", what, describe(b)), call = call, arg = "b")
  }
  ok <- !is.na(b) & is.finite(b) & b >= 1 & abs(b - round(b)) < 1e-8
  if (!all(ok)) {
    abort(sprintf("`b` must be %s, not %s.", what, pg_bad_element(b, ok)),
          call = call, arg = "b")
  }
  big <- b > .Machine$integer.max
  if (any(big)) {
    abort(sprintf("`b` must be at most %d (the largest integer), not %s.",
                  .Machine$integer.max, pg_bad_element(b, !big)),
          call = call, arg = "b")
  }
  as.integer(round(b))
}

pg_check_z <- function(z, call) {
  what <- if (length(z) <= 1L) "a finite number" else "finite numbers"
  if (!is.numeric(z) || length(z) == 0L) {
    abort(sprintf("`z` must be %s, not %s.", what, describe(z)), call = call, arg = "z")
  }
  ok <- is.finite(z)
  if (!all(ok)) {
    abort(sprintf("`z` must be %s, not %s.", what, pg_bad_element(z, ok)),
          call = call, arg = "z")
  }
  as.double(z)
}

pg_check_recycle <- function(x, arg, n, call) {
  if (n %% length(x) != 0) {
    abort(sprintf("`%s` must have a length that divides `n` = %s, not length %d.",
                  arg, format(n, scientific = FALSE), length(x)),
          call = call, arg = arg)
  }
  invisible(x)
}
