#pragma once
// The fast mode's fp8 operands (reference/NUMERICS.md, "Fast mode", fp8): token rows quantized as
// the contract's dispatch quantization does it (1 x 128 blocks, OCP e4m3fn), moved as codes with
// their scales, and e4m3 weights as codes, for the vendor BLAS's block-scaled fp8 GEMM.
#include <cstdint>

#include "vendor.hpp"

namespace moesim::gpu {

// The block-scaled GEMM takes 1 x 128 scales (on both operands) only for a row count that is a
// multiple of this (cuBLASLt 13.0 on an H200: 7 and 130 rows refused, 64 and 1000 taken).
constexpr std::int64_t kFp8RowMultiple = 4;

// q [rows, hidden] e4m3fn codes and scales [rows, hidden / 128] (row-major) of the float token
// values x [rows, hidden]: per block scale = max(amax, 1e-10) / 448, q = rne(v / scale), saturating.
void quantize_fp8(std::uint8_t* q, float* scales, const float* x, std::int64_t rows, int hidden, hipStream_t stream);

// The dispatched rows' scales as the block-scaled GEMM reads them, block-major per GEMM:
// dst[base[j] + b * stride[j]] = src[src_row[j] * blocks + b]; base nullptr: base j, stride rows.
void gather_scales(float* dst, const float* src, const std::int64_t* src_row, const std::int64_t* base,
                   const std::int64_t* stride, std::int64_t rows, int blocks, hipStream_t stream);

// dst[i] = e4m3fn code of src[i]; *bad becomes nonzero where some src[i] is not an e4m3fn value.
void to_e4m3(std::uint8_t* dst, const float* src, std::int64_t count, int* bad, hipStream_t stream);

// dst[i] = v.
void fill(float* dst, float v, std::int64_t count, hipStream_t stream);

}  // namespace moesim::gpu
