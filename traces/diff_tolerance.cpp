#include "diff_tolerance.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "error.hpp"

namespace moesim::diff {

Tolerance default_tolerance(DType t) {
  switch (t) {
    case DType::bf16: return {1e-5, 1.6e-2};
    case DType::f16: return {1e-5, 1e-3};
    case DType::f32: return {1e-5, 1.3e-6};
    case DType::f64: return {1e-7, 1e-7};
    case DType::e4m3:
    case DType::e4m3fnuz: return {1e-5, 0.125};
    default: return {0, 0};
  }
}

static bool is_float(DType t) {
  return t == DType::bf16 || t == DType::f16 || t == DType::f32 || t == DType::f64 || is_fp8(t);
}

Tolerance ToleranceRules::lookup(const std::string& path, DType t) const {
  Tolerance tol = default_tolerance(t);
  if (is_float(t)) {
    if (atol) tol.atol = *atol;
    if (rtol) tol.rtol = *rtol;
  }
  for (const auto& r : rules)
    if (glob_match(r.pattern, path)) tol = r.tol;
  return tol;
}

bool glob_match(const std::string& p, const std::string& s) {
  // Iterative matcher with one backtrack point: linear enough for dataset paths.
  size_t pi = 0, si = 0, star = std::string::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
      ++pi, ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (star != std::string::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

static double parse_number(const std::string& s, const std::string& context) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v >= 0)) throw Error(context + "bad tolerance '" + s + "'");
  return v;
}

ToleranceRule parse_rule(const std::string& spec) {
  const auto eq = spec.rfind('=');
  const auto comma = spec.rfind(',');
  if (eq == std::string::npos || comma == std::string::npos || comma < eq)
    throw Error("--tol " + spec + ": expected PATTERN=ATOL,RTOL");
  const std::string ctx = "--tol " + spec + ": ";
  return {spec.substr(0, eq), {parse_number(spec.substr(eq + 1, comma - eq - 1), ctx),
                               parse_number(spec.substr(comma + 1), ctx)}};
}

std::vector<ToleranceRule> read_tolerance_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open tolerance file");
  std::vector<ToleranceRule> rules;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
    std::istringstream ss(line);
    std::string pattern, atol, rtol, extra;
    if (!(ss >> pattern)) continue;
    const std::string ctx = path + ": line " + std::to_string(n) + ": ";
    if (!(ss >> atol >> rtol) || (ss >> extra)) throw Error(ctx + "expected PATTERN ATOL RTOL");
    rules.push_back({pattern, {parse_number(atol, ctx), parse_number(rtol, ctx)}});
  }
  return rules;
}

}  // namespace moesim::diff
