#pragma once
// Transported values (reference/NUMERICS.md, "Transported values are compared bit for bit"): a
// run file's received rows (ids, weights, tokens and scales), which a dispatch copies from their
// source, checked bit for bit against what the file's recorded dispatch model delivers for the
// routing, by the capture check (capture_check.hpp), matched by source so any arrival order
// passes; and MORI's combine weights against the ones that dispatch returns. A 1e-6 error in one
// router weight, far inside any rounding bound, is a divergence at stage dispatch in every mode.
#include <string>

#include "diff.hpp"
#include "h5.hpp"
#include "trace.hpp"

namespace moesim::sim {

// Adds to r.transported every transported value `file` records that differs from what its
// recorded dispatch model delivers for `routing`. Tokens and scales are compared too: the ones
// `routing` holds, else, one layer at a time, the ones read from `routing_file` (the trace
// `routing` was read from without tensors). Returns why the file's values were not checked; ""
// when they were, or when the file records none (not a run file, a routing-only one).
std::string check_transported(const h5::File& file, const Trace& routing, diff::Result& r,
                              const h5::File* routing_file = nullptr);

// diff::run, then both files' transported values checked when the rounding bound judged the
// outputs and the routing is known (options.routing, else the trace diff found): the verdict
// `moesim diff` and `moesim bisect --candidate` give.
diff::Result compare_files(const std::string& file_a, const std::string& file_b, const diff::Options& options);

}  // namespace moesim::sim
