# The codes and layouts R and C share have one source on each side; these
# tests fail when one side changes without the other (ffi_code_tables() in
# src/ffi.c exports the C side).

tables <- function() .Call(bayesmoe:::ffi_code_tables)

in_order <- function(codes) names(sort(codes))

test_that("status bits and type codes agree between R and C", {
  tb <- tables()
  expect_identical(tb$status, bayesmoe:::status_flags)
  expect_identical(tb$gate, bayesmoe:::gate_codes)
  expect_identical(tb$family, bayesmoe:::family_codes)
  expect_identical(in_order(tb$activation), bayesmoe:::ffn_activations)
  expect_identical(tb$activation[["gelu"]],
                   bayesmoe:::ffn_act_code(expert_ffn(activation = "gelu")))
  expect_identical(tb$gate_mode, bayesmoe:::gate_update_codes)
  expect_setequal(names(tb$gate_mode), eval(formals(moe_mcmc_control)$gate_update))
  expect_identical(in_order(tb$moves), bayesmoe:::gating_move_names)
})

test_that("the packed control vectors have the C layout", {
  tb <- tables()
  em <- bayesmoe:::em_control_c(moe_em_control(), 3)
  expect_identical(names(em), in_order(tb$em_control))
  expect_identical(unname(em), c(1000, 1e-8, 1e-6, 3, 1, 0, 1e3, 1))
  mc <- bayesmoe:::mcmc_control_c(10, 20, 1, 0, 0, 1,
                                  bayesmoe:::gate_mode(moe_mcmc_control()))
  expect_identical(names(mc), in_order(tb$mcmc_control))
})

test_that("the lists sent to C carry the fields C reads", {
  tb <- tables()
  expect_identical(names(bayesmoe:::gate_c(gate_hierarchical(c(1, 1, 2)), 3L)),
                   tb$gate_fields)
  # every field C reads is sent by one family, and every field sent is read
  glm_fields <- function(family, n = 3L) {
    ex <- bayesmoe:::resolve_family(family, expert_linear())
    s <- list(family = bayesmoe:::glm_family_data(ex, c(0, 1, 1), offset = rep(0.1, n)))
    names(bayesmoe:::expert_c_data(ex, s))
  }
  t_est <- names(bayesmoe:::expert_c(bayesmoe:::expert_t()))
  expect_identical(t_est, names(bayesmoe:::expert_c(bayesmoe:::expert_t(3))))
  sent <- list(names(bayesmoe:::expert_c(expert_linear())),
               names(bayesmoe:::expert_c(expert_ffn())),
               glm_fields(binomial()), glm_fields(poisson()), t_est)
  for (f in sent) expect_true(all(f %in% tb$family_fields))
  expect_setequal(unique(unlist(sent)), tb$family_fields)
  # the codes of the GLM and Student-t families
  for (family in list(binomial(), poisson(), student_t())) {
    ex <- bayesmoe:::resolve_family(family, expert_linear())
    expect_identical(bayesmoe:::expert_c(ex)$type,
                     tb$family[[if (family$family == "student_t") "t" else family$family]])
  }
  pc <- bayesmoe:::prior_internal(moe_prior(), 2L, 2L)
  expect_true(all(tb$prior_fields %in% names(pc)))
  # every gate type and family the R constructors make has a C code
  for (g in list(gate_softmax(), gate_topk(1), gate_temperature(2), gate_hierarchical(c(1, 2))))
    expect_true(g$type %in% names(tb$gate))
  for (e in list(expert_linear(), expert_ffn(), bayesmoe:::expert_t()))
    expect_true(e$type %in% names(tb$family))
})
