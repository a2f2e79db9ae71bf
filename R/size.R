# Memory guard for the sizes a user chooses (numbers of starts, simulations,
# draws, chains, iterations).
#
# A request is refused, with a classed error (`bayesmoe_error_size`) saying
# how much memory it would need, when its estimated memory exceeds the
# limit: `getOption("bayesmoe.max_bytes")` when set, otherwise the physical
# memory of the machine (MemTotal of /proc/meminfo), otherwise 64 GiB.
# Estimates count the doubles a request keeps (for example draws x
# parameters x 8 bytes for a sampler run) and are lower bounds, so a request
# that could fit in memory is never refused; long but feasible runs are not
# refused either.

size_limit <- function() {
  opt <- getOption("bayesmoe.max_bytes")
  if (is.numeric(opt) && length(opt) == 1L && !is.na(opt) && opt > 0) {
    return(structure(as.numeric(opt), source = "set by `options(bayesmoe.max_bytes = )`"))
  }
  mem <- physical_memory()
  if (is.finite(mem)) {
    structure(mem, source = "the physical memory; `options(bayesmoe.max_bytes = )` changes it")
  } else {
    structure(64 * 2^30, source = "the default; `options(bayesmoe.max_bytes = )` changes it")
  }
}

physical_memory <- function() {
  line <- tryCatch(suppressWarnings(readLines("/proc/meminfo", n = 1L)),
                   error = function(e) character())
  kb <- if (length(line) == 1L && grepl("^MemTotal:\\s*[0-9]+ kB", line)) {
    as.numeric(sub("^MemTotal:\\s*([0-9]+) kB.*$", "\\1", line))
  } else NA_real_
  kb * 1024
}

format_bytes <- function(b) {
  units <- c("bytes", "KB", "MB", "GB", "TB", "PB", "EB")
  i <- max(1L, min(length(units), floor(log(max(b, 1), 1024)) + 1L))
  sprintf("%s %s", format(signif(b / 1024^(i - 1L), 3)), units[i])
}

# Refuse a request of `bytes` (described by `what`, e.g. "4e9 draws x 8
# parameters x 8 bytes") given through argument(s) `arg`.
check_size <- function(bytes, what, arg, call = NULL) {
  lim <- size_limit()
  if (!(bytes <= lim)) {
    abort(sprintf("`%s` asks for too much: it would need about %s of memory (%s), more than the limit of %s (%s).",
                  arg, format_bytes(bytes), what, format_bytes(lim), attr(lim, "source")),
          kind = "size", call = call, arg = arg)
  }
  invisible(bytes)
}

# The memory of a sampler run: the retained draws (chains x kept
# iterations) of `npar` parameters and the log-likelihood, and the state
# kept per chain (its RNG state alone is 626 integers). `npar` defaults to 1,
# a lower bound when the design is not yet known (as in mcmc_settings()).
check_mcmc_size <- function(chains, iter, warmup, thin, npar = 1, call = NULL) {
  kept <- floor((iter - warmup) / thin)
  bytes <- 8 * chains * kept * (npar + 1) + 2504 * chains
  num <- function(v) format(v, big.mark = ",", scientific = FALSE, trim = TRUE)
  check_size(bytes, sprintf("%s chain%s x %s retained draw%s x %s values x 8 bytes, plus the state of each chain",
                            num(chains), if (chains == 1) "" else "s",
                            num(kept), if (kept == 1) "" else "s", num(npar + 1)),
             if (2504 * chains > size_limit()) "chains" else "iter", call)
}
