# Reference implementations and wrappers used only by the tests of
# R/relabel.R.

# Apply permutations to a draws array (iterations x chains x P) with a
# permutation array (iterations x chains x K).
permute_draws <- function(draws, perms, p, q, K, spec = NULL) {
  d <- dim(draws)
  N <- d[1L] * d[2L]
  D <- permute_rows(matrix(draws, N, d[3L]), matrix(perms, N, K), p, q, K, spec)
  array(D, d, dimnames(draws))
}
