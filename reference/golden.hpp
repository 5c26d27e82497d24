#pragma once
// Golden files (traces/SCHEMA.md, "Golden and run files"): the reference's per-rank final and
// per-(token, slot) expert outputs, in the layout simulator run files share so the two diff.
#include <string>
#include <vector>

#include "h5.hpp"
#include "numerics.hpp"
#include "reference.hpp"

namespace moesim {

inline constexpr const char* kGoldenFormat = "moesim-golden";

// 16 lowercase hex digits of FNV-1a 64 over the file's bytes.
std::string trace_file_hash(const std::string& path);

// Root attributes every golden or run file carries.
// backend: "cpu" or "gpu", where the expert FFNs ran (the bits are the same; the record says which).
// fp8 numerics also record `fp8_format`, the dispatch quantizer's format: the token dtype for fp8
// tokens, `fp8_option` (--fp8) otherwise.
void write_result_header(h5::File& file, const std::string& format, Numerics numerics, const Trace& trace,
                         const std::string& command, const std::string& backend = "cpu",
                         DType fp8_option = DType::e4m3);

// /layers/<l>/ranks/<r>/final_out [T,H] (stage "final") and expert_out [T,K,H] (stage "expert"),
// stored as output_dtype(numerics). Also /layers num_layers and /layers/<l> step attributes.
void write_reference_outputs(h5::File& file, const Trace& trace, const std::vector<LayerOutputs>& outputs,
                             Numerics numerics);

// One output tensor stored as output_dtype(numerics), with its "stage" and "axes" attributes.
void write_output(h5::File& file, const std::string& ds, const std::vector<std::uint64_t>& dims, const Values& v,
                  Numerics numerics, const char* stage, const char* axes);

// A whole golden file, written to a temporary name and renamed into place.
void write_golden(const std::string& out_path, const Trace& trace, const std::vector<LayerOutputs>& outputs,
                  Numerics numerics, const std::string& command, const std::string& backend = "cpu",
                  DType fp8_option = DType::e4m3);

}  // namespace moesim
