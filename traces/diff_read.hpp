#pragma once
// Streams a dataset in blocks of at most `block_elements` values, decoded to double: bf16,
// fp16 and fp8 stored as integer patterns are decoded through their "dtype" attribute; float32
// datasets can also be read as stored (no conversion). Blocks depend only on the shape, so two
// same-shaped datasets are read in aligned blocks. PairStream reads the next pairs of blocks of
// two datasets on a second thread while the caller compares the current one.
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "h5.hpp"

namespace moesim::diff {

struct ElementType {
  DType type = DType::f64;  // what tolerances and ULPs use; integers map to i32/i64/u8
  bool integer = false;
  std::string label;  // "bfloat16", "float32", "int32", "uint16" ...
};

// True for integer and float datasets (strings, compounds and the like are not compared).
bool is_numeric(const h5::File& f, const std::string& ds);
// The element type a dataset holds; raw = take integer patterns as integers.
ElementType element_type(const h5::File& f, const std::string& ds, bool raw);
// The coarser of two types (the one a comparison can be exact to).
ElementType coarser(const ElementType& a, const ElementType& b);

class BlockReader {
 public:
  BlockReader(const h5::File& f, std::string ds, bool raw, std::uint64_t block_elements);
  const std::vector<std::uint64_t>& dims() const { return dims_; }
  const ElementType& type() const { return type_; }
  std::uint64_t elements() const { return total_; }
  // Reads the next block; `first` is the row-major index of its first element. False at the end.
  bool next(std::vector<double>& out, std::uint64_t& first);
  // The same for a float32 dataset read as stored (native_f32()).
  bool next(std::vector<float>& out, std::uint64_t& first);
  bool native_f32() const { return !type_.integer && type_.type == DType::f32 && !decode_; }
  [[noreturn]] void fail(const std::string& why) const { file_.fail(ds_, why); }
  // Reads one whole row (first-axis index) into out, resized to the row's elements.
  void read_row(std::uint64_t row, std::vector<double>& out);

 private:
  const h5::File& file_;
  std::string ds_;
  ElementType type_;
  bool decode_ = false;  // read stored integers and decode them
  std::vector<std::uint64_t> dims_;
  std::uint64_t total_ = 0, done_ = 0;
  size_t split_ = 0;             // axes before split_ advance one index per block
  std::uint64_t inner_ = 1;      // elements per index step of the split axis
  std::uint64_t per_block_ = 1;  // split-axis indices per block
  h5::Id dataset_;
  template <class T>
  bool next_block(std::vector<T>& out, std::uint64_t& first);
  void read_block(const std::vector<hsize_t>& start, const std::vector<hsize_t>& count, std::uint64_t elems,
                  std::vector<double>& out, std::uint64_t at);
  void read_block(const std::vector<hsize_t>& start, const std::vector<hsize_t>& count, std::uint64_t elems,
                  std::vector<float>& out, std::uint64_t at);
};

// Aligned block pairs of two same-shaped datasets, read ahead on one thread (libhdf5 serializes
// its calls; the caller makes none on these datasets meanwhile): at most kSlots pairs are held,
// so memory stays bounded by the block size. A read error is rethrown by next().
template <class T>
class PairStream {
 public:
  PairStream(BlockReader& a, BlockReader& b);
  ~PairStream();
  PairStream(const PairStream&) = delete;
  PairStream& operator=(const PairStream&) = delete;
  // The next pair, valid until the following call; false at the end.
  bool next(const std::vector<T>*& a, const std::vector<T>*& b, std::uint64_t& first);

 private:
  static constexpr int kSlots = 3;  // one compared, one ready, one being read
  struct Slot {
    std::vector<T> a, b;
    std::uint64_t first = 0;
  };
  void read_ahead(BlockReader& a, BlockReader& b);
  Slot slots_[kSlots];
  std::mutex mu_;
  std::condition_variable cv_;
  long long read_ = 0, taken_ = 0;  // pairs filled by the reader, and handed to the caller
  bool done_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread reader_;
};

}  // namespace moesim::diff
