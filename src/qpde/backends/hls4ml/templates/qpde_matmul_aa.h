#ifndef QPDE_MATMUL_AA_H_
#define QPDE_MATMUL_AA_H_

// qpde extension layer: activation x activation matrix product for io_stream, bit-exact.
//   res[i][j] = cast<res_T>( 2^shift * sum_k a[i][k] * b[k][j] )
// a: n_rows beats of n_contract values, b: n_contract beats of n_cols values,
// res: n_rows beats of n_cols values. accum_t holds every partial sum exactly (qpde sizes it as
// n_contract * max|a| * max|b| at the LSB of the product), so no addition rounds or wraps in any
// order. scaled_t has accum_t's width with the binary point moved by `shift` (the power-of-two
// factor of a following Mul): the bits are reinterpreted, nothing is lost. The final cast to
// res_T (AP_TRN, AP_SAT when a Quant is folded in) is QONNX's FLOOR + clip.

#include "hls_stream.h"
#include "nnet_common.h"

namespace nnet {

struct qpde_matmul_aa_config {
    static const unsigned n_rows = 1;
    static const unsigned n_contract = 1;
    static const unsigned n_cols = 1;
    typedef float accum_t;
    typedef float scaled_t;
};

template <class a_T, class b_T, class res_T, typename CONFIG_T>
void qpde_matmul_aa(hls::stream<a_T> &a, hls::stream<b_T> &b, hls::stream<res_T> &res) {
    assert(a_T::size == CONFIG_T::n_contract && b_T::size == CONFIG_T::n_cols && res_T::size == CONFIG_T::n_cols);
    typename b_T::value_type b_buf[CONFIG_T::n_contract][CONFIG_T::n_cols];
    #pragma HLS ARRAY_PARTITION variable = b_buf complete dim = 0

ReadB:
    for (unsigned k = 0; k < CONFIG_T::n_contract; k++) {
        #pragma HLS PIPELINE
        b_T beat = b.read();
        for (unsigned j = 0; j < CONFIG_T::n_cols; j++) {
            #pragma HLS UNROLL
            b_buf[k][j] = beat[j];
        }
    }

Rows:
    for (unsigned i = 0; i < CONFIG_T::n_rows; i++) {
        #pragma HLS PIPELINE
        a_T row = a.read();
        res_T out;
        PRAGMA_DATA_PACK(out)
    Cols:
        for (unsigned j = 0; j < CONFIG_T::n_cols; j++) {
            #pragma HLS UNROLL
            typename CONFIG_T::accum_t acc = 0;
        Contract:
            for (unsigned k = 0; k < CONFIG_T::n_contract; k++) {
                #pragma HLS UNROLL
                acc += row[k] * b_buf[k][j];
            }
            typename CONFIG_T::scaled_t scaled;
            scaled.range() = acc.range();
            out[j] = scaled;
        }
        res.write(out);
    }
}

} // namespace nnet

#endif
