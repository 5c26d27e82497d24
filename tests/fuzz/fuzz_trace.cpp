// libFuzzer target: the input is a trace. info and validate run on it, and once validate accepts
// it golden, run and diagnose, as users run them.
#include <filesystem>

#include "fuzz_commands.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using moesim::fuzz::run;
  const std::string in = moesim::fuzz::work_dir() + "/trace.h5", out = moesim::fuzz::work_dir() + "/out.h5";
  moesim::fuzz::write_input(data, size, in);
  run({"info", in}, in);
  if (!run({"validate", in}, in)) return 0;
  for (const char* cmd : {"golden", "run"}) {
    run({cmd, in, "-o", out}, in, out);
    std::filesystem::remove(out);
  }
  run({"diagnose", in}, in);  // bisect reads traces with the same reader; fuzz_result covers it
  return 0;
}
