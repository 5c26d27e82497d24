#pragma once
// Errors moesim reports. Library code throws; only main() turns them into exit codes.
#include <stdexcept>
#include <string>

namespace moesim {

// Bad input or a failed operation the user can act on: one line naming the file,
// dataset and index. main() prints it and exits with code 2.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "FILE: DATASET: what" or "FILE: what" when no dataset is involved.
inline std::string where(const std::string& file, const std::string& dataset = {}) {
  return dataset.empty() ? file + ": " : file + ": " + dataset + ": ";
}

}  // namespace moesim
