# Contraction studies of the expert families other than the Gaussian
# (issue 14): for a truth of each family, EM fits (K = 2, the truth's
# family, default starts) at log-spaced sample sizes, the density losses
# (Hellinger and total variation between the conditional pmfs / densities,
# averaged over x) and the Voronoi loss D1, and the slope of the log mean
# loss on log n (theory: -1/2). Written as one .rds file,
# inst/extdata/contraction-families.rds: a named list of moe_contraction
# objects, one per family ("poisson", "binomial", "t"), read by the
# contraction vignette and tests/testthat/test-loss-family.R.
#
# Usage, from the package source folder (bayesmoe installed):
#   Rscript inst/scripts/contraction-families.R [size] [output folder] [families]
# size: "shipped" (default) or "full"; families: a comma-separated subset of
# poisson,binomial,t (default: all three; "t" needs student_t(), skipped
# with a message when the installed bayesmoe lacks it). An existing output
# file is updated: the families run replace their entries, the others are
# kept. Set BAYESMOE_CHECKPOINT to a folder to resume interrupted studies
# (see ?moe_contraction).
#
# Truths (covariate uniform on [0, 1]; gating beta0 = -4, beta1 = 8: expert 1
# for x > 1/2, expert 2 below; experts well apart over all of [0, 1]):
#   poisson   log means 0.5 + x (1.6 to 4.5) and 3 - 0.5 x (20 to 12);
#   binomial  10 trials, logits -2 + 2 x (success probability 0.12 to 0.5)
#             and 2 - x (0.88 to 0.73). With one trial (0/1 responses) the
#             two experts are told apart only through the shape of the
#             success probability in x: EM needs hundreds to thousands of
#             iterations per fit (about 100 times the CPU), so the shipped
#             study uses 10 trials;
#   t         locations 1 + 2 x and 4 - 2 x, scales 0.3 and 0.4, df 3 and 5,
#             df estimated (student_t()).
# "shipped": 8 sizes from 500 to 16,000, 40 replicates for poisson and
# binomial (64 and 70 s of CPU on one core), 20 for t (about 30 s of CPU per
# replicate, half of it the density losses, which integrate numerically:
# about 10 minutes). "full": 12 sizes from 500 to 64,000, 100 replicates.

library(bayesmoe)

args <- commandArgs(trailingOnly = TRUE)
size <- if (length(args) >= 1L) args[1L] else "shipped"
out_dir <- if (length(args) >= 2L) args[2L] else file.path("inst", "extdata")
families <- if (length(args) >= 3L) strsplit(args[3L], ",", fixed = TRUE)[[1L]] else
  c("poisson", "binomial", "t")
stopifnot(size %in% c("shipped", "full"), all(families %in% c("poisson", "binomial", "t")))
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
path <- file.path(out_dir, "contraction-families.rds")

log_grid <- function(from, to, length.out) {
  unique(round(exp(seq(log(from), log(to), length.out = length.out))))
}
if (size == "shipped") {
  n <- log_grid(500, 16000, 8)
  reps <- c(poisson = 40L, binomial = 40L, t = 20L)
} else {
  n <- log_grid(500, 64000, 12)
  reps <- c(poisson = 100L, binomial = 100L, t = 100L)
}

truths <- list(
  poisson = function() moe_truth(beta0 = -4, beta1 = 8, a = c(1, -0.5), b = c(0.5, 3),
                                 family = poisson()),
  binomial = function() moe_truth(beta0 = -4, beta1 = 8, a = c(2, -1), b = c(-2, 2),
                                  family = binomial(), trials = 10),
  t = function() moe_truth(beta0 = -4, beta1 = 8, a = c(2, -2), b = c(1, 4),
                           sigma = c(0.3, 0.4), df = c(3, 5),
                           family = get("student_t", asNamespace("bayesmoe"))())
)
seeds <- c(poisson = 1401L, binomial = 1402L, t = 1403L)

checkpoint_of <- function(name) {
  root <- Sys.getenv("BAYESMOE_CHECKPOINT")
  if (nzchar(root)) file.path(root, paste0("contraction-families-", name))
}

out <- if (file.exists(path)) readRDS(path) else list()
for (fam in families) {
  if (fam == "t" && !exists("student_t", envir = asNamespace("bayesmoe"))) {
    message("skipping t: the installed bayesmoe has no student_t()")
    next
  }
  message(format(Sys.time()), " start ", fam)
  cpu <- system.time(st <- moe_contraction(truths[[fam]](), n = n, reps = reps[[fam]], K = 2,
                                           method = "em", losses = c("D", "hellinger", "tv"),
                                           seed = seeds[[fam]], starts = 5,
                                           checkpoint = checkpoint_of(fam)))
  st$settings$cpu_seconds <- sum(cpu[c("user.self", "sys.self", "user.child", "sys.child")],
                                 na.rm = TRUE)
  st$settings$elapsed_seconds <- cpu[["elapsed"]]
  st$settings$created <- format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z")
  st$settings$package_version <- as.character(utils::packageVersion("bayesmoe"))
  st$settings$size <- size
  out[[fam]] <- st
  saveRDS(out, path, compress = "xz")
  message(format(Sys.time()), sprintf(" done %s: %.0f s CPU, %.0f s elapsed", fam,
                                      st$settings$cpu_seconds, st$settings$elapsed_seconds))
  print(st)
}
