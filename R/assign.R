# The linear assignment problem: the permutation of K labels to K old experts
# of least total cost, solved exactly in O(K^3) by the Hungarian algorithm in
# src/assign.c. Used everywhere labels are matched: relabelling of MCMC draws
# (R/relabel.R), alignment of starting values (R/mcmc.R), summaries of
# mixing measures (R/mtm.R).

# Optimal assignments of a cost array C (N x K x K, C[n, k, j]: label k takes
# old expert j in problem n) or of one K x K cost matrix. Returns the N x K
# integer matrix of permutations (row n: label k takes expert perm[n, k]), or
# the permutation vector for a matrix. Among optimal permutations the
# identity is preferred. Non-finite costs (NaN, Inf) are treated as larger
# than any sum of finite ones. With `duals = TRUE` a list with `perm` and
# the dual potentials `u` (labels) and `v` (experts), N x K matrices:
# u[n, k] + v[n, j] <= C[n, k, j] with equality on the assignment, which
# certifies its optimality.
solve_assignment <- function(C, duals = FALSE) {
  one <- is.matrix(C)
  if (one) C <- array(C, c(1L, dim(C)))
  d <- dim(C)
  storage.mode(C) <- "double"
  bad <- !is.finite(C)
  if (any(bad)) {
    big <- if (all(bad)) 1 else max(abs(C[!bad]))
    C[bad] <- (big + 1) * (d[2L] + 1) * 10
  }
  res <- .Call(ffi_assign, C, isTRUE(duals))
  if (duals) return(res)
  if (one) res$perm[1L, ] else res$perm
}

# The permutation minimising sum_k cost[k, perm[k]] for a K x K matrix.
best_assignment <- function(cost) solve_assignment(as.matrix(cost))

# All permutations of 1..K as the rows of a K! x K matrix, in lexicographic
# order (for enumerations over the label-switching orbit, R/marglik.R, and
# brute-force checks; never for solving an assignment).
all_permutations <- function(K) {
  if (K == 1L) return(matrix(1L, 1L, 1L))
  sub <- all_permutations(K - 1L)
  unname(do.call(rbind, lapply(seq_len(K), function(first)
    cbind(first, matrix(setdiff(seq_len(K), first)[sub], nrow(sub))))))
}
