/*
 * Batch driver for tl2cgen-generated models, called through ctypes.
 *
 * A tl2cgen shared library exports `predict(union Entry* row, int pred_margin, leaf_t* out)`
 * for ONE row. This shim loops over a dense row-major matrix and calls that function
 * through a pointer, so one small library serves every model of a bundle. Rules (measured in
 * ../shared/docs/ml-stack.md section 8/9):
 *   - a missing value is an Entry whose bytes are all 0xFF (safe for 32- and 64-bit layouts);
 *   - the output slots are zeroed before each call (generated code does result[0] += ...);
 *   - the Entry buffer is refilled for every row (quantized models overwrite it in place).
 * Build: gcc -O1 -shared -fPIC -o predict_batch.so predict_batch.c
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void (*predict_f32_fn)(void* row, int pred_margin, float* out);
typedef void (*predict_f64_fn)(void* row, int pred_margin, double* out);

/* Thresholds float32, leaves float32 (XGBoost models). Returns 0, or -1 on allocation failure. */
int predict_batch_f32(void* fn, const float* X, int64_t nrow, int32_t ncol, int pred_margin,
                      float* out, int32_t nout) {
  uint32_t* row = (uint32_t*)malloc(sizeof(uint32_t) * (size_t)(ncol > 0 ? ncol : 1));
  if (row == NULL) return -1;
  predict_f32_fn predict = (predict_f32_fn)fn;
  for (int64_t r = 0; r < nrow; ++r) {
    const float* x = X + r * (int64_t)ncol;
    for (int32_t c = 0; c < ncol; ++c) {
      if (isnan(x[c])) {
        row[c] = 0xFFFFFFFFu;
      } else {
        memcpy(&row[c], &x[c], sizeof(float));
      }
    }
    float* o = out + r * (int64_t)nout;
    memset(o, 0, sizeof(float) * (size_t)nout);
    predict(row, pred_margin, o);
  }
  free(row);
  return 0;
}

/* Thresholds float64, leaves float64 (LightGBM / sklearn models). */
int predict_batch_f64(void* fn, const double* X, int64_t nrow, int32_t ncol, int pred_margin,
                      double* out, int32_t nout) {
  uint64_t* row = (uint64_t*)malloc(sizeof(uint64_t) * (size_t)(ncol > 0 ? ncol : 1));
  if (row == NULL) return -1;
  predict_f64_fn predict = (predict_f64_fn)fn;
  for (int64_t r = 0; r < nrow; ++r) {
    const double* x = X + r * (int64_t)ncol;
    for (int32_t c = 0; c < ncol; ++c) {
      if (isnan(x[c])) {
        row[c] = 0xFFFFFFFFFFFFFFFFull;
      } else {
        memcpy(&row[c], &x[c], sizeof(double));
      }
    }
    double* o = out + r * (int64_t)nout;
    memset(o, 0, sizeof(double) * (size_t)nout);
    predict(row, pred_margin, o);
  }
  free(row);
  return 0;
}
