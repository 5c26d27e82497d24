#pragma once
// Scratch files of the tests: paths in the shared scratch folder and whole-file reads.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace moesim::test {

// `name` inside MOESIM_TEST_TMP (created when missing); callers prefix names to stay unique.
inline std::string tmp(const std::string& name) {
  std::filesystem::create_directories(MOESIM_TEST_TMP);
  return std::string(MOESIM_TEST_TMP) + "/" + name;
}

inline std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace moesim::test
