#pragma once
// Tolerances for moesim diff: torch.testing.assert_close's per-dtype defaults, overridable
// globally, per dataset pattern on the command line, or from a small tolerance file.
#include <optional>
#include <string>
#include <vector>

#include "dtype.hpp"

namespace moesim::diff {

struct Tolerance {
  double atol = 0, rtol = 0;
};

// torch.testing defaults: bf16 (1e-5, 1.6e-2), fp16 (1e-5, 1e-3), fp32 (1e-5, 1.3e-6),
// fp64 (1e-7, 1e-7); integers exact. fp8 has no torch default: one e4m3 step (rtol 0.125).
Tolerance default_tolerance(DType t);

// One override: datasets whose path matches `pattern` (shell glob, '*' crosses '/') get `tol`.
struct ToleranceRule {
  std::string pattern;
  Tolerance tol;
};

struct ToleranceRules {
  std::optional<double> atol, rtol;   // for every float dataset
  std::vector<ToleranceRule> rules;   // later rules win over earlier ones
  // The tolerance for a dataset of element type `t` (the coarser of the two files').
  Tolerance lookup(const std::string& path, DType t) const;
};

bool glob_match(const std::string& pattern, const std::string& text);

// "PATTERN=ATOL,RTOL" as given to --tol.
ToleranceRule parse_rule(const std::string& spec);
// A tolerance file: one "PATTERN ATOL RTOL" per line, '#' starts a comment.
std::vector<ToleranceRule> read_tolerance_file(const std::string& path);

}  // namespace moesim::diff
