#pragma once
// Shared command-line parsing for the subcommands (Boost.Program_options).
#include <boost/program_options.hpp>
#include <iostream>
#include <string>
#include <vector>

namespace moesim::cli {

namespace po = boost::program_options;

// Parses args into vm; prints help and returns false on --help. Positional names are taken in
// order (a name given with count -1 takes the rest).
inline bool parse_options(const std::string& command, const std::string& synopsis, po::options_description& desc,
                          const po::positional_options_description& positional, const std::vector<std::string>& args,
                          po::variables_map& vm) {
  desc.add_options()("help,h", "show this help");
  po::store(po::command_line_parser(args).options(desc).positional(positional).run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: moesim " << command << " " << synopsis << "\n\n" << desc << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

}  // namespace moesim::cli
