#include "blas.hpp"

#include <cstddef>
#include <string>

#include "error.hpp"
#include "check.hpp"
#include "fast_layer.hpp"

namespace moesim::gpu {

#if defined(MOESIM_HAVE_VENDOR_BLAS)

namespace {
void check(hipblasStatus_t s, const char* what) {
  if (s != HIPBLAS_STATUS_SUCCESS) throw Error(std::string("gpu: vendor BLAS ") + what + " failed (status " + std::to_string(static_cast<int>(s)) + ")");
}
hipblasHandle_t h(void* p) { return static_cast<hipblasHandle_t>(p); }
}  // namespace

bool vendor_blas_built() { return true; }

Blas::Blas(hipStream_t stream) : stream_(stream) {
  hipblasHandle_t handle;
  check(hipblasCreate(&handle), "create");
  handle_ = handle;
  check(hipblasSetStream(handle, stream), "set stream");
#if defined(MOESIM_GPU_CUDA)
  // Split-K partial sums stay fp32: a bf16 reduction would add roundings the bound does not allow.
  check(cublasSetMathMode(handle, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION), "math mode");
#endif
}

Blas::~Blas() {
#if defined(MOESIM_HAVE_VENDOR_BLASLT)
  if (workspace_) (void)hipFree(workspace_);
  if (lt_) (void)hipblasLtDestroy(static_cast<hipblasLtHandle_t>(lt_));
#endif
  if (handle_) (void)hipblasDestroy(h(handle_));
}

void Blas::gemm_nt_bf16(std::uint16_t* out, const std::uint16_t* a, const std::uint16_t* w, std::int64_t n, int m,
                        int k) {
  if (n == 0) return;
  if (n > 0x7fffffff) throw Error("gpu: a GEMM of " + std::to_string(n) + " rows is more than the vendor BLAS takes");
  const float one = 1.0f, zero = 0.0f;
  // Column-major view: out^T [m, n] = w [k, m]^T * a^T [k, n]; the TN layout both vendors run fastest.
  check(hipblasGemmEx(h(handle_), HIPBLAS_OP_T, HIPBLAS_OP_N, m, static_cast<int>(n), k, &one, w, HIP_R_16BF, k, a,
                      HIP_R_16BF, k, &zero, out, HIP_R_16BF, m, HIPBLAS_COMPUTE_32F, HIPBLAS_GEMM_DEFAULT),
        "bf16 GEMM");
}

#if defined(MOESIM_HAVE_VENDOR_BLASLT)

namespace {
constexpr std::size_t kLtWorkspace = std::size_t(32) << 20;  // what the library's fp8 kernels ask at most

// Descriptors released however the call ends.
template <class T, auto destroy>
struct Owned {
  T v{};
  ~Owned() {
    if (v) (void)destroy(v);
  }
};
}  // namespace

void Blas::gemm_nt_fp8(std::uint16_t* out, const std::uint8_t* a, const float* a_scale, const std::uint8_t* w,
                       const float* w_scale, std::int64_t n, int m, int k) {
  if (n == 0) return;
  if (n > 0x7fffffff) throw Error("gpu: a GEMM of " + std::to_string(n) + " rows is more than the vendor BLAS takes");
  if (k % 128 != 0) throw Error("gpu: the block-scaled fp8 GEMM needs a depth that is a multiple of 128, not " + std::to_string(k));
  if (!lt_) {
    hipblasLtHandle_t lt;
    check(hipblasLtCreate(&lt), "BLASLt create");
    lt_ = lt;
    MOESIM_GPU_CHECK(hipMalloc(&workspace_, kLtWorkspace));
  }
  Owned<hipblasLtMatmulDesc_t, hipblasLtMatmulDescDestroy> op;
  check(hipblasLtMatmulDescCreate(&op.v, HIPBLAS_COMPUTE_32F, HIP_R_32F), "fp8 GEMM descriptor");
  const auto set = [&](auto attr, const auto& value) {
    check(hipblasLtMatmulDescSetAttribute(op.v, attr, &value, sizeof value), "fp8 GEMM attribute");
  };
  // The same column-major view as gemm_nt_bf16: out^T [m, n] = w^T [m, k] * a^T [k, n].
  set(HIPBLASLT_MATMUL_DESC_TRANSA, HIPBLAS_OP_T);
  set(HIPBLASLT_MATMUL_DESC_TRANSB, HIPBLAS_OP_N);
  set(HIPBLASLT_MATMUL_DESC_A_SCALE_MODE, HIPBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F);
  set(HIPBLASLT_MATMUL_DESC_B_SCALE_MODE, HIPBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F);
  set(HIPBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(w_scale));
  set(HIPBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(a_scale));
  Owned<hipblasLtMatrixLayout_t, hipblasLtMatrixLayoutDestroy> la, lb, lc;
  check(hipblasLtMatrixLayoutCreate(&la.v, HIP_R_8F_E4M3, k, m, k), "fp8 GEMM layout");
  check(hipblasLtMatrixLayoutCreate(&lb.v, HIP_R_8F_E4M3, k, n, k), "fp8 GEMM layout");
  check(hipblasLtMatrixLayoutCreate(&lc.v, HIP_R_16BF, m, n, m), "fp8 GEMM layout");
  Owned<hipblasLtMatmulPreference_t, hipblasLtMatmulPreferenceDestroy> pref;
  check(hipblasLtMatmulPreferenceCreate(&pref.v), "fp8 GEMM preference");
  const std::size_t ws = kLtWorkspace;
  check(hipblasLtMatmulPreferenceSetAttribute(pref.v, HIPBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
        "fp8 GEMM workspace");
  hipblasLtMatmulHeuristicResult_t algo{};
  int found = 0;
  check(hipblasLtMatmulAlgoGetHeuristic(static_cast<hipblasLtHandle_t>(lt_), op.v, la.v, lb.v, lc.v, lc.v, pref.v, 1,
                                        &algo, &found),
        "fp8 GEMM algorithm search");
  if (found == 0)
    throw Error("gpu: the vendor BLAS has no block-scaled fp8 GEMM for " + std::to_string(n) + " x " +
                std::to_string(m) + " x " + std::to_string(k) + " on this device (it needs an sm_90 GPU or newer)");
  const float one = 1.0f, zero = 0.0f;
  check(hipblasLtMatmul(static_cast<hipblasLtHandle_t>(lt_), op.v, &one, w, la.v, a, lb.v, &zero, out, lc.v, out, lc.v,
                        &algo.algo, workspace_, kLtWorkspace, stream_),
        "block-scaled fp8 GEMM");
}

#else

void Blas::gemm_nt_fp8(std::uint16_t*, const std::uint8_t*, const float*, const std::uint8_t*, const float*,
                       std::int64_t, int, int) {
  throw Error("gpu: the fast mode's fp8 GEMM needs hipBLASLt's block scales, which this build does not map yet; "
              "use --numerics bf16, or the deterministic GPU backend (--backend gpu) for fp8");
}

#endif

#else

bool vendor_blas_built() { return false; }

Blas::Blas(hipStream_t) {
  throw Error("gpu: the fast mode needs hipBLAS, which this build lacks (Debian 12's ROCm has none); "
              "use the deterministic GPU backend (--backend gpu) or install hipBLAS and rebuild");
}
Blas::~Blas() = default;
void Blas::gemm_nt_bf16(std::uint16_t*, const std::uint16_t*, const std::uint16_t*, std::int64_t, int, int) {}
void Blas::gemm_nt_fp8(std::uint16_t*, const std::uint8_t*, const float*, const std::uint8_t*, const float*,
                       std::int64_t, int, int) {}

#endif

}  // namespace moesim::gpu
