#pragma once
// A capture made from a simulated run: every rank's captured side of a layer filled from a
// dispatch and its outputs (receive buffers, per-row expert outputs, combine and final outputs),
// as a user's capture of that integration would hold them. The diagnose tests and
// `moesim bench diagnose` build their captures with it.
#include <vector>

#include "simulate.hpp"

namespace moesim::sim {

// *x[r]: rank r's source token rows the run saw ([T_r, H], normally the trace's own).
void fill_capture(Trace& trace, const Dispatch& dispatch, const std::vector<RankRun>& ranks,
                  const std::vector<const std::vector<float>*>& x, bool outputs = true, int layer_pos = 0);

// Simulates layer `layer_pos` with `options` and fills its capture from the run.
void capture_run(Trace& trace, const SimOptions& options, bool outputs = true, int layer_pos = 0);

}  // namespace moesim::sim
