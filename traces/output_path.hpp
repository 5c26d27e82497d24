#pragma once
// Checks on an output path made before any work: its folder exists, and it is none of the
// command's inputs (through any path, symbolic or hard link), so an hour of computation never
// ends in "cannot create" and `golden t.h5 -o t.h5` cannot replace its own trace.
#include <string>
#include <vector>

namespace moesim {

// Throws Error "OUT: cannot write: ..." naming the problem.
void check_output_path(const std::string& out, const std::vector<std::string>& inputs);

}  // namespace moesim
