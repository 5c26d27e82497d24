// OpenBLAS on the reference bench's GEMMs, in this process and in a child whose OpenBLAS loaded
// with OPENBLAS_CORETYPE set: a DYNAMIC_ARCH build reads that variable once, when the library
// loads, and falls back to generic kernels on a CPU it does not recognise (Debian's 0.3.21 picks
// 'Prescott', SSE3, on this VM's Xeon), so its best AVX2 kernels run only in a fresh process.
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#ifndef MOESIM_HAVE_OPENBLAS
#define MOESIM_HAVE_OPENBLAS 0
#endif
#if MOESIM_HAVE_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);  // not in every cblas.h
extern "C" char* openblas_get_corename();
#endif

#include "bench.hpp"
#include "error.hpp"

namespace moesim::cli {

bool have_openblas() { return MOESIM_HAVE_OPENBLAS; }

std::string openblas_core() {
#if MOESIM_HAVE_OPENBLAS
  return openblas_get_corename();
#else
  return "";
#endif
}

BlasGemms::BlasGemms(int hidden, int inter, int rows)
    : H(hidden), I(inter), n(rows), w1(static_cast<std::size_t>(2) * inter * hidden, 0.01f),
      w2(static_cast<std::size_t>(hidden) * inter, 0.01f), g(static_cast<std::size_t>(rows) * 2 * inter),
      out(static_cast<std::size_t>(rows) * hidden) {
#if MOESIM_HAVE_OPENBLAS
  openblas_set_num_threads(1);
#endif
}

void BlasGemms::run(const float* x, int experts) {
#if MOESIM_HAVE_OPENBLAS
  for (int e = 0; e < experts; ++e) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, 2 * I, H, 1.0f, x, H, w1.data(), H, 0.0f, g.data(), 2 * I);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, H, I, 1.0f, g.data(), 2 * I, w2.data(), I, 0.0f,
                out.data(), H);
  }
#else
  (void)x, (void)experts;
#endif
}

void check_core_name(const std::string& coretype) {
  for (char c : coretype)
    if (!std::isalnum(static_cast<unsigned char>(c)))
      throw Error("OpenBLAS core '" + coretype + "' is not a name (letters and digits, as Haswell)");
}

BlasChild openblas_in_child(const std::string& coretype, int H, int I, int n, int experts, int reps) {
  check_core_name(coretype);
  std::vector<char> exe(4096);
  const ssize_t len = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  if (len <= 0) throw Error("cannot find this program's path (/proc/self/exe) to run OpenBLAS in a child");
  std::string quoted = "'";
  for (ssize_t i = 0; i < len; ++i) quoted += exe[i] == '\'' ? std::string("'\\''") : std::string(1, exe[i]);
  quoted += "'";
  const std::string cmd = "OPENBLAS_CORETYPE=" + coretype + " " + quoted + " bench blas --hidden " + std::to_string(H) +
                          " --intermediate " + std::to_string(I) + " --tokens " + std::to_string(n) + " --experts " +
                          std::to_string(experts) + " --reps " + std::to_string(reps);
  BlasChild out;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw Error("cannot start '" + cmd + "'");
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) {
    std::string l = buf;
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    if (l.rfind("core ", 0) == 0) out.core = l.substr(5);
    if (l.rfind("gflops ", 0) == 0) out.gflops = std::atof(l.c_str() + 7);
  }
  if (::pclose(p) != 0 || out.core.empty() || out.gflops <= 0) throw Error("'" + cmd + "' failed");
  return out;
}

}  // namespace moesim::cli
