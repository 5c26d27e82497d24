#include "diff_read.hpp"

#include <algorithm>

#include "error.hpp"

namespace moesim::diff {

namespace {
int precision(DType t) {
  switch (t) {
    case DType::e4m3fnuz:
    case DType::e4m3: return 3;
    case DType::bf16: return 7;
    case DType::f16: return 10;
    case DType::f32: return 23;
    case DType::f64: return 52;
    default: return 1000;  // integers: exact
  }
}
// The file and memory selections of one block: [start, start + count) on every axis.
struct Selection {
  h5::Id file, mem;
  hid_t fs = H5S_ALL, ms = H5S_ALL;
  Selection(hid_t dataset, const std::vector<hsize_t>& start, const std::vector<hsize_t>& count)
      : file(H5Dget_space(dataset), H5Sclose) {
    if (count.empty()) return;  // a scalar: the whole of it
    H5Sselect_hyperslab(file.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
    mem = h5::Id(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
    ms = mem.get();
    fs = file.get();
  }
};
}  // namespace

bool is_numeric(const h5::File& f, const std::string& ds) {
  h5::Id d(H5Dopen2(f.id(), ds.c_str(), H5P_DEFAULT), H5Dclose);
  if (d.get() < 0) f.fail(ds, "not a dataset");
  h5::Id t(H5Dget_type(d.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(t.get());
  return cls == H5T_INTEGER || cls == H5T_FLOAT;
}

ElementType element_type(const h5::File& f, const std::string& ds, bool raw) {
  const h5::DatasetInfo in = f.info(ds);
  ElementType e;
  // info() calls every unsigned 16-bit type bf16; only the "dtype" attribute makes it one.
  if (!raw && (in.stored == DType::bf16 || in.stored == DType::u8) && !in.declared.empty()) {
    DType d;
    try {
      d = parse_dtype(in.declared);
    } catch (const Error&) {
      f.fail(ds, "unknown dtype attribute '" + in.declared + "'");
    }
    const bool fits = in.stored == DType::bf16 ? (d == DType::bf16 || d == DType::f16) : is_fp8(d);
    if (!fits) f.fail(ds, "dtype attribute '" + in.declared + "' does not match its stored integers");
    e.type = d;
    e.label = in.declared;
    return e;
  }
  switch (in.stored) {
    case DType::bf16:
      e = {DType::i32, true, "uint16"};
      break;
    case DType::u8:
      e = {DType::u8, true, "uint8"};
      break;
    case DType::i32:
    case DType::i64:
      e = {in.stored, true, std::string(name(in.stored))};
      break;
    default:
      e = {in.stored, false, std::string(name(in.stored))};
  }
  return e;
}

ElementType coarser(const ElementType& a, const ElementType& b) {
  if (a.integer && b.integer) return a.type == DType::i64 ? a : b.type == DType::i64 ? b : a;
  if (a.integer) return b;
  if (b.integer) return a;
  return precision(a.type) <= precision(b.type) ? a : b;
}

BlockReader::BlockReader(const h5::File& f, std::string ds, bool raw, std::uint64_t block_elements)
    : file_(f), ds_(std::move(ds)) {
  type_ = element_type(f, ds_, raw);
  decode_ = !type_.integer && (type_.type == DType::bf16 || type_.type == DType::f16 || is_fp8(type_.type));
  dims_ = f.info(ds_).dims;
  total_ = 1;
  for (auto d : dims_) total_ *= d;
  block_elements = std::max<std::uint64_t>(block_elements, 1);
  // The outermost axis whose one step fits in a block; axes before it step one index at a time.
  split_ = dims_.size();
  inner_ = 1;
  for (size_t i = dims_.size(); i-- > 0;) {
    std::uint64_t step = 1;
    for (size_t j = i + 1; j < dims_.size(); ++j) step *= dims_[j];
    if (step > block_elements) break;
    split_ = i;
    inner_ = step;
  }
  per_block_ = std::max<std::uint64_t>(1, block_elements / inner_);
  dataset_ = h5::Id(H5Dopen2(f.id(), ds_.c_str(), H5P_DEFAULT), H5Dclose);
  if (dataset_.get() < 0) f.fail(ds_, "cannot open dataset");
}

bool BlockReader::next(std::vector<double>& out, std::uint64_t& first) { return next_block(out, first); }
bool BlockReader::next(std::vector<float>& out, std::uint64_t& first) { return next_block(out, first); }

template <class T>
bool BlockReader::next_block(std::vector<T>& out, std::uint64_t& first) {
  if (done_ >= total_) return false;
  first = done_;
  const size_t n = dims_.size();
  std::vector<hsize_t> start(n, 0), count(dims_.begin(), dims_.end());
  std::uint64_t elems = 1;
  if (n > 0) {
    // Unravel `done_` over the axes up to the split axis.
    std::uint64_t rest = done_;
    std::vector<std::uint64_t> stride(n, 1);
    for (size_t i = n - 1; i-- > 0;) stride[i] = stride[i + 1] * dims_[i + 1];
    for (size_t i = 0; i < n; ++i) {
      start[i] = rest / stride[i];
      rest %= stride[i];
    }
    // The innermost axis always fits (one step is one element), so split_ < n.
    const size_t s = split_;
    for (size_t i = 0; i < s; ++i) count[i] = 1;
    count[s] = std::min<std::uint64_t>(per_block_, dims_[s] - start[s]);
    for (auto c : count) elems *= c;
  }
  read_block(start, count, elems, out, done_);
  done_ += elems;
  return true;
}

void BlockReader::read_row(std::uint64_t row, std::vector<double>& out) {
  if (dims_.empty() || row >= dims_[0]) file_.fail(ds_, "row " + std::to_string(row) + " past its end");
  std::vector<hsize_t> start(dims_.size(), 0), count(dims_.begin(), dims_.end());
  start[0] = row;
  count[0] = 1;
  std::uint64_t elems = 1;
  for (auto c : count) elems *= c;
  read_block(start, count, elems, out, row * elems);
}

void BlockReader::read_block(const std::vector<hsize_t>& start, const std::vector<hsize_t>& count,
                             std::uint64_t elems, std::vector<double>& out, std::uint64_t at) {
  out.resize(elems);
  const Selection sel(dataset_.get(), start, count);
  const hid_t ms = sel.ms, fs = sel.fs;
  herr_t rc;
  if (decode_) {
    if (type_.type == DType::bf16 || type_.type == DType::f16) {
      std::vector<std::uint16_t> bits(elems);
      rc = H5Dread(dataset_.get(), H5T_NATIVE_UINT16, ms, fs, H5P_DEFAULT, bits.data());
      for (std::uint64_t i = 0; i < elems; ++i)
        out[i] = type_.type == DType::bf16 ? bf16_bits_to_float(bits[i]) : f16_bits_to_float(bits[i]);
    } else {
      std::vector<std::uint8_t> bits(elems);
      rc = H5Dread(dataset_.get(), H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, bits.data());
      for (std::uint64_t i = 0; i < elems; ++i) out[i] = fp8_bits_to_float(bits[i], type_.type);
    }
  } else {
    rc = elems ? H5Dread(dataset_.get(), H5T_NATIVE_DOUBLE, ms, fs, H5P_DEFAULT, out.data()) : 0;
  }
  if (rc < 0) file_.fail(ds_, "read failed at element " + std::to_string(at) + " (truncated or damaged file)");
}

void BlockReader::read_block(const std::vector<hsize_t>& start, const std::vector<hsize_t>& count,
                             std::uint64_t elems, std::vector<float>& out, std::uint64_t at) {
  if (!native_f32()) file_.fail(ds_, "not a float32 dataset");
  out.resize(elems);
  const Selection sel(dataset_.get(), start, count);
  const hid_t ms = sel.ms, fs = sel.fs;
  const herr_t rc = elems ? H5Dread(dataset_.get(), H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, out.data()) : 0;
  if (rc < 0) file_.fail(ds_, "read failed at element " + std::to_string(at) + " (truncated or damaged file)");
}

template <class T>
PairStream<T>::PairStream(BlockReader& a, BlockReader& b) : reader_([this, &a, &b] { read_ahead(a, b); }) {}

template <class T>
PairStream<T>::~PairStream() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  reader_.join();
}

template <class T>
void PairStream<T>::read_ahead(BlockReader& a, BlockReader& b) {
  h5::silence_this_thread();
  try {
    for (;;) {
      long long slot;
      {
        // A slot is free once the caller has moved past it: the one it holds is taken_ - 1.
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || read_ - taken_ < kSlots - 1; });
        if (stop_) return;
        slot = read_ % kSlots;
      }
      Slot& s = slots_[slot];
      std::uint64_t fb = 0;
      const bool more = a.next(s.a, s.first);
      if (more != b.next(s.b, fb) || (more && (fb != s.first || s.a.size() != s.b.size())))
        b.fail("blocks out of step");
      std::lock_guard<std::mutex> lock(mu_);
      if (!more) {
        done_ = true;
        cv_.notify_all();
        return;
      }
      ++read_;
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::current_exception();
    done_ = true;
    cv_.notify_all();
  }
}

template <class T>
bool PairStream<T>::next(const std::vector<T>*& a, const std::vector<T>*& b, std::uint64_t& first) {
  std::unique_lock<std::mutex> lock(mu_);
  ++taken_;  // frees the slot handed out last time
  cv_.notify_all();
  cv_.wait(lock, [&] { return read_ >= taken_ || done_; });
  if (read_ < taken_) {
    --taken_;
    if (error_) std::rethrow_exception(error_);
    return false;
  }
  const Slot& s = slots_[(taken_ - 1) % kSlots];
  a = &s.a;
  b = &s.b;
  first = s.first;
  return true;
}

template class PairStream<double>;
template class PairStream<float>;

}  // namespace moesim::diff
