/*
 * init.c: registration of the .Call entry points (all defined in ffi.c).
 * Dynamic symbol lookup is off and symbols are forced, as in R's stats.
 */
#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>

extern SEXP ffi_loglik(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_moe_exp(SEXP, SEXP);
extern SEXP ffi_set_v2(SEXP);
extern SEXP ffi_estep(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_gate_newton(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_voronoi(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_voronoi_cells(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_density_loss(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_rpolyagamma(SEXP, SEXP, SEXP);
extern SEXP ffi_rpg1_stream(SEXP, SEXP);
extern SEXP ffi_assign(SEXP, SEXP);
extern SEXP ffi_em(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_gibbs(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP,
                      SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_code_tables(void);
extern SEXP ffi_mtm(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_mix_logdens(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP,
                            SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_gate_logprob(SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_ffn_eval(SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_ffn_mstep(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);
extern SEXP ffi_ffn_mh(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP,
                       SEXP);
extern SEXP ffi_ls_eval(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP,
                        SEXP, SEXP);
extern SEXP ffi_ls(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP, SEXP,
                   SEXP, SEXP);
extern SEXP ffi_voronoi_strong(SEXP, SEXP, SEXP, SEXP, SEXP, SEXP);

static const R_CallMethodDef call_methods[] = {
  {"ffi_loglik", (DL_FUNC) &ffi_loglik, 7},
  {"ffi_moe_exp", (DL_FUNC) &ffi_moe_exp, 2},
  {"ffi_set_v2", (DL_FUNC) &ffi_set_v2, 1},
  {"ffi_estep", (DL_FUNC) &ffi_estep, 7},
  {"ffi_gate_newton", (DL_FUNC) &ffi_gate_newton, 7},
  {"ffi_voronoi", (DL_FUNC) &ffi_voronoi, 9},
  {"ffi_voronoi_cells", (DL_FUNC) &ffi_voronoi_cells, 6},
  {"ffi_density_loss", (DL_FUNC) &ffi_density_loss, 7},
  {"ffi_rpolyagamma", (DL_FUNC) &ffi_rpolyagamma, 3},
  {"ffi_rpg1_stream", (DL_FUNC) &ffi_rpg1_stream, 2},
  {"ffi_assign", (DL_FUNC) &ffi_assign, 2},
  {"ffi_em", (DL_FUNC) &ffi_em, 10},
  {"ffi_gibbs", (DL_FUNC) &ffi_gibbs, 17},
  {"ffi_code_tables", (DL_FUNC) &ffi_code_tables, 0},
  {"ffi_mtm", (DL_FUNC) &ffi_mtm, 6},
  {"ffi_mix_logdens", (DL_FUNC) &ffi_mix_logdens, 13},
  {"ffi_gate_logprob", (DL_FUNC) &ffi_gate_logprob, 4},
  {"ffi_ffn_eval", (DL_FUNC) &ffi_ffn_eval, 5},
  {"ffi_ffn_mstep", (DL_FUNC) &ffi_ffn_mstep, 7},
  {"ffi_ffn_mh", (DL_FUNC) &ffi_ffn_mh, 10},
  {"ffi_ls_eval", (DL_FUNC) &ffi_ls_eval, 11},
  {"ffi_ls", (DL_FUNC) &ffi_ls, 12},
  {"ffi_voronoi_strong", (DL_FUNC) &ffi_voronoi_strong, 6},
  {NULL, NULL, 0}
};

void R_init_bayesmoe(DllInfo *dll)
{
  R_registerRoutines(dll, NULL, call_methods, NULL, NULL);
  R_useDynamicSymbols(dll, FALSE);
  R_forceSymbols(dll, TRUE);
}
