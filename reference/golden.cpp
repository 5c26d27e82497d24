#include "golden.hpp"

#include <cstdio>
#include <fstream>

#include "error.hpp"
#include "moesim/version.hpp"
#include "trace_io.hpp"

namespace moesim {

void write_output(h5::File& f, const std::string& ds, const std::vector<std::uint64_t>& dims, const Values& v,
                  Numerics numerics, const char* stage, const char* axes) {
  switch (output_dtype(numerics)) {
    case DType::f64: f.write(ds, dims, v.f64.data()); break;
    case DType::f32: f.write(ds, dims, v.f32.data()); break;
    default: write_values(f, ds, dims, v.f32, DType::bf16); break;
  }
  f.set_attr(ds, "stage", stage);
  f.set_attr(ds, "axes", axes);
}

std::string trace_file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(where(path) + "cannot open file");
  std::uint64_t h = 0xcbf29ce484222325ULL;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) {
      h ^= static_cast<unsigned char>(buf[i]);
      h *= 0x100000001b3ULL;
    }
  }
  if (in.bad()) throw Error(where(path) + "read failed");
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

void write_result_header(h5::File& f, const std::string& format, Numerics numerics, const Trace& trace,
                         const std::string& command, const std::string& backend, DType fp8_option) {
  const std::string& trace_path = trace.path;
  f.set_attr("/", "format", format);
  f.set_attr("/", "schema_version", kSchemaVersion);
  f.set_attr("/", "moesim_version", std::string(version));
  f.set_attr("/", "numerics", std::string(name(numerics)));
  f.set_attr("/", "trace_hash", trace_file_hash(trace_path));
  f.set_attr("/", "trace_path", trace_path);
  f.set_attr("/", "command", command);
  f.set_attr("/", "backend", backend);
  if (numerics == Numerics::fp8)
    f.set_attr("/", "fp8_format",
               std::string(name(is_fp8(trace.config.token_dtype) ? trace.config.token_dtype : fp8_option)));
}

void write_reference_outputs(h5::File& f, const Trace& trace, const std::vector<LayerOutputs>& outputs,
                             Numerics numerics) {
  const auto H = static_cast<std::uint64_t>(trace.config.hidden), K = static_cast<std::uint64_t>(trace.config.top_k);
  f.create_group("/layers");
  f.set_attr("/layers", "num_layers", static_cast<int>(outputs.size()));
  for (std::size_t l = 0; l < outputs.size(); ++l) {
    const LayerOutputs& lo = outputs[l];
    const std::string lp = layer_path(lo.layer_index);
    f.create_group(lp);
    f.set_attr(lp, "step", trace.layers[l].step);
    for (std::size_t r = 0; r < lo.ranks.size(); ++r) {
      const RankOutputs& ro = lo.ranks[r];
      const std::string rp = rank_path(lo.layer_index, static_cast<int>(r));
      const auto T = static_cast<std::uint64_t>(ro.num_tokens);
      f.create_group(rp);
      f.set_attr(rp, "num_tokens", static_cast<std::int64_t>(T));
      write_output(f, rp + "/final_out", {T, H}, ro.final_out, numerics, "final", "token,hidden");
      write_output(f, rp + "/expert_out", {T, K, H}, ro.expert_out, numerics, "expert", "token,slot,hidden");
    }
  }
}

void write_golden(const std::string& out_path, const Trace& trace, const std::vector<LayerOutputs>& outputs,
                  Numerics numerics, const std::string& command, const std::string& backend, DType fp8_option) {
  h5::AtomicOutput out(out_path);
  write_result_header(out.file(), kGoldenFormat, numerics, trace, command, backend, fp8_option);
  write_reference_outputs(out.file(), trace, outputs, numerics);
  out.commit();
}

}  // namespace moesim
