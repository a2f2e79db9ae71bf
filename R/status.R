# Status flags returned by the C kernels (enum moe_status in src/moe.h).
# Keep this table in sync with the enum.
status_flags <- c(maxit = 1L, empty = 2L, var_floor = 4L, not_pd = 8L,
                  nonfinite = 16L, gate_step = 32L, decrease = 64L,
                  separation = 128L)

decode_status <- function(status) {
  names(status_flags)[bitwAnd(as.integer(status), status_flags) > 0L]
}

status_text <- function(status) {
  flags <- decode_status(status)
  if (!length(flags)) "ok" else paste(flags, collapse = ", ")
}
