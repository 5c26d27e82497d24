#include "output_path.hpp"

#include <filesystem>

#include "error.hpp"

namespace moesim {

void check_output_path(const std::string& out, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path parent = fs::path(out).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    throw Error(out + ": cannot write: folder " + parent.string() + " does not exist");
  if (fs::is_directory(out, ec)) throw Error(out + ": cannot write: it is a folder");
  if (!fs::exists(out, ec)) return;  // a new file cannot be an existing input
  for (const std::string& in : inputs)
    if (!in.empty() && fs::exists(in, ec) && fs::equivalent(out, in, ec))
      throw Error(out + ": cannot write: it is this command's input " + in + " (the input is never modified)");
}

}  // namespace moesim
