#pragma once
// moesim diff's default when both files record their numerics: every element of the pipeline's
// outputs is judged against the rounding bound (rounding_bound.hpp), computed from the second
// file's (the reference's) own magnitudes and the trace's routing weights; dispatch-stage data
// (copies of tokens, ids, weights, layouts) must be equal. Memory: one row summary per expert
// output row, and one token's slot outputs at a time.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "diff_read.hpp"
#include "h5.hpp"
#include "rounding_bound.hpp"
#include "trace.hpp"

namespace moesim::diff {

// The bound of each element of one dataset, by the second file's flat index.
class ElementBounds {
 public:
  virtual ~ElementBounds() = default;
  virtual double at(std::uint64_t flat) = 0;
};

class DiffBound {
 public:
  // nullopt, with `note` saying why, when the files do not both record a numerics mode or the
  // routing (weights and configuration) is unknown.
  static std::optional<DiffBound> make(const h5::File& a, const h5::File& b, const Trace* routing,
                                       std::string& note);
  // nullptr: the dataset is not a pipeline output or layout the bound covers (or its slot outputs
  // or weights cannot be found: `note` says so); the caller keeps the tolerance.
  std::unique_ptr<ElementBounds> for_dataset(const h5::File& a, const h5::File& b, const std::string& ds,
                                             const std::vector<std::uint64_t>& dims, bool dispatch_stage,
                                             bool raw, std::string& note) const;
  std::string label() const { return budget_.label(); }

 private:
  DiffBound(bound::Budget budget, const Trace* routing) : budget_(budget), routing_(routing) {}
  bound::Budget budget_;
  const Trace* routing_;
};

}  // namespace moesim::diff
