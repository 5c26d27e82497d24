#include "blas.hpp"

#include <string>

#include "error.hpp"
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

Blas::Blas(hipStream_t stream) {
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

#else

bool vendor_blas_built() { return false; }

Blas::Blas(hipStream_t) {
  throw Error("gpu: the fast mode needs hipBLAS, which this build lacks (Debian 12's ROCm has none); "
              "use the deterministic GPU backend (--backend gpu) or install hipBLAS and rebuild");
}
Blas::~Blas() = default;
void Blas::gemm_nt_bf16(std::uint16_t*, const std::uint16_t*, const std::uint16_t*, std::int64_t, int, int) {}

#endif

}  // namespace moesim::gpu
