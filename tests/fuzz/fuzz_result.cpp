// libFuzzer target: the input is a result file (golden or run layout) compared with a reference
// golden by diff and replayed as a recorded candidate by bisect. The reference trace and golden
// are seeds/trace.h5 and seeds/golden.h5 beside the binary's working folder (MOESIM_FUZZ_REF).
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "fuzz_commands.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using moesim::fuzz::run;
  static const std::string ref = [] {
    const char* r = std::getenv("MOESIM_FUZZ_REF");
    if (!r) {
      std::fprintf(stderr, "fuzz_result: set MOESIM_FUZZ_REF to the folder holding trace.h5 and golden.h5\n");
      std::exit(2);
    }
    return std::string(r);
  }();
  const std::string in = moesim::fuzz::work_dir() + "/result.h5", out = moesim::fuzz::work_dir() + "/out.h5";
  moesim::fuzz::write_input(data, size, in);
  run({"diff", in, ref + "/golden.h5"}, in);
  run({"bisect", ref + "/trace.h5", "--candidate", in, "-o", out, "--max-tests", "16"}, in, out);
  std::filesystem::remove(out);
  return 0;
}
