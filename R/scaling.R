# Internal centring and scaling of the designs and the response. Priors and
# starting values are stated on this scale; results are reported on the
# original one. With an intercept, non-intercept columns are centred and
# scaled to unit sd; without one they are only scaled (root mean square).
# Returns the linear maps between internal and original coefficients:
#   alpha_orig = sy * Tx %*% alpha_int + my * e_int,  sigma2_orig = sy^2 * sigma2_int,
#   W_orig = Tz %*% W_int.
design_scaling <- function(M) {
  int <- which(colnames(M) == "(Intercept)")
  p <- ncol(M)
  if (length(int) == 1L) {
    ctr <- colMeans(M)
    scl <- col_rms(sweep(M, 2L, ctr))
    ctr[int] <- 0
    scl[int] <- 1
  } else {
    ctr <- rep(0, p)
    scl <- col_rms(M)
  }
  scl[!(scl > 0)] <- 1
  Tm <- diag(1 / scl, p)
  if (length(int) == 1L) Tm[int, ] <- Tm[int, ] - ctr / scl
  Tm[int, int] <- 1
  list(center = ctr, scale = scl, T = Tm, intercept = if (length(int)) int else 0L)
}

# Root mean squares of the columns of D. Squares underflow below about
# 1e-154 and overflow above 1e154: such columns are divided by their largest
# absolute value first (the data checks keep values within 1e-300 to 1e100).
col_rms <- function(D) {
  out <- sqrt(colMeans(D^2))
  redo <- which(!(out > 1e-140 & out < 1e140))
  for (j in redo) out[j] <- rms(D[, j])
  out
}

rms <- function(v) {
  m <- max(abs(v))
  if (!(m > 0)) return(0)
  m * sqrt(mean((v / m)^2))
}

# The inverse of the map T of design_scaling(), which takes internal to
# original coefficients: beta_int = scaling_inverse(s) %*% beta_orig. In
# closed form (diagonal `scale`, the `center` in the intercept row):
# solve(T) refuses T as computationally singular once the scales of the
# columns span 1 / .Machine$double.eps (a covariate of magnitude 1e17 next
# to the intercept).
scaling_inverse <- function(s) {
  p <- length(s$scale)
  Ti <- diag(s$scale, p)
  int <- s$intercept
  if (int > 0L) {
    Ti[int, ] <- s$center
    Ti[int, int] <- 1
  }
  Ti
}

moe_scaling <- function(y, X, Z) {
  sx <- design_scaling(X)
  sz <- design_scaling(Z)
  my <- if (sx$intercept > 0L) mean(y) else 0
  sy <- sqrt(mean((y - my)^2))
  if (!(sy > 1e-140 && sy < 1e140)) sy <- rms(y - my)
  if (!(sy > 0)) sy <- 1
  list(x = sx, z = sz, my = my, sy = sy)
}

scale_data <- function(sc, y, X, Z) {
  list(y = (y - sc$my) / sc$sy,
       X = sweep(sweep(X, 2L, sc$x$center), 2L, sc$x$scale, "/"),
       Z = sweep(sweep(Z, 2L, sc$z$center), 2L, sc$z$scale, "/"))
}
