#pragma once
// How much two runs of the same layer differ, element by element: the nondeterminism a user
// should expect from a stack whose kernels add in the hardware's order, beside what a semantic
// bug gives. Distances are in units in the last place of the values' format (bf16 for the
// bf16/fp8 modes, whose outputs are bf16 values held in float).
#include <cstdint>
#include <string>

#include "reference.hpp"

namespace moesim {

struct RunToRun {
  std::int64_t elements = 0;  // compared, over every rank and every repeat
  std::int64_t changed = 0;   // whose bits differ from the first run's
  std::uint64_t max_ulps = 0;  // large only near zero, where a reordered sum loses its leading bits
  double max_abs = 0;          // largest |difference|
  double max_value = 0;        // largest |value| of the first run: the scale max_abs is read against
  std::string first;          // "rank 2 token 17 column 5", the first changed element
  std::string unit = "bf16";  // the ulp's format
  void add(const LayerOutputs& first_run, const LayerOutputs& again, Numerics numerics);
  std::string text() const;   // "3 of 1048576 final_out elements changed (max 1 bf16 ulp, |diff| ...), first at ..."
};

}  // namespace moesim
