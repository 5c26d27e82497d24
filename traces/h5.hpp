#pragma once
// A thin RAII layer over the handful of HDF5 C calls moesim needs. Every failure becomes a
// moesim::Error naming the file and the object, never an HDF5 error-stack dump.
#include <hdf5.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtype.hpp"

namespace moesim::h5 {

// Owns one hid_t; move steals, the destructor never throws.
class Id {
 public:
  Id() = default;
  Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Id(Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Id& operator=(Id&& o) noexcept;
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() { reset(); }
  hid_t get() const { return id_; }
  void reset() noexcept;

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// What a dataset holds: its shape and the element type stored on disk.
struct DatasetInfo {
  std::vector<std::uint64_t> dims;
  DType stored;           // the on-disk numeric class and size (bf16/fp8 are stored as u16/u8)
  std::string declared;   // the "dtype" attribute, empty when absent ("bfloat16", "float8_e4m3fn")
  std::uint64_t elements() const;
};

// A thread-safe libhdf5 keeps one error stack per thread, each printing by default: a thread
// other than the main one that calls HDF5 calls this first (the main thread's is silenced at start).
void silence_this_thread();

class File {
 public:
  static File open_read(const std::string& path);
  static File create(const std::string& path);  // truncates

  const std::string& path() const { return path_; }
  hid_t id() const { return file_.get(); }
  void close();  // flushes and reports errors; the destructor closes silently

  bool exists(const std::string& obj) const;  // every component of the path is checked
  bool is_group(const std::string& obj) const;
  std::vector<std::string> children(const std::string& group) const;  // names, in name order
  // The structure moesim relies on, checked before any data is read: only hard links, no group
  // reached twice (a hard-link cycle made diff and bisect walk forever), at most kMaxDepth
  // levels, at most kMaxObjects objects. Throws Error naming the offending path.
  static constexpr int kMaxDepth = 32;
  static constexpr unsigned kMaxAttributes = 1 << 16;  // per object
  static constexpr std::size_t kMaxObjects = std::size_t{1} << 20;
  // `visit` is called once for every object found, groups included, with its path.
  void check_structure(const std::function<void(const std::string&)>& visit = {}) const;
  // Reads every attribute and every dataset's data (in bounded blocks) once, saying the step
  // before each through `at` and handing each object's attribute names, listed before anything
  // else read them, to `listed`: the probe run in a child process before the first real read.
  void touch_all(const std::function<void(const std::string&)>& at,
                 const std::function<void(const std::string& obj, const std::vector<std::string>& names)>& listed) const;
  DatasetInfo info(const std::string& ds) const;

  // Reads a whole dataset whose stored type is exactly T's (int32, float, uint16 ...).
  template <class T>
  std::vector<T> read(const std::string& ds) const;
  // Reads rows [row0, row0+nrows) of the first dimension, converting any numeric type to double.
  std::vector<double> read_rows_as_double(const std::string& ds, std::uint64_t row0, std::uint64_t nrows) const;

  // Creates the dataset (and missing parent groups), chunked and deflated when large enough.
  // `declared` is written as the dataset's "dtype" attribute when not empty.
  template <class T>
  void write(const std::string& ds, const std::vector<std::uint64_t>& dims, const T* data,
             const std::string& declared = {});

  bool has_attr(const std::string& obj, const std::string& name) const;
  std::vector<std::string> attr_names(const std::string& obj) const;  // in name order
  std::string attr_string(const std::string& obj, const std::string& name) const;
  std::int64_t attr_int(const std::string& obj, const std::string& name) const;
  double attr_double(const std::string& obj, const std::string& name) const;
  void set_attr(const std::string& obj, const std::string& name, const std::string& value);
  void set_attr(const std::string& obj, const std::string& name, const char* value) {
    set_attr(obj, name, std::string(value));
  }
  void set_attr(const std::string& obj, const std::string& name, std::int64_t value);
  void set_attr(const std::string& obj, const std::string& name, int value) {
    set_attr(obj, name, static_cast<std::int64_t>(value));
  }
  void set_attr(const std::string& obj, const std::string& name, double value);
  void create_group(const std::string& group);  // with missing parents

  [[noreturn]] void fail(const std::string& obj, const std::string& what) const;

 private:
  friend class AtomicOutput;
  File(std::string path, Id file) : path_(std::move(path)), file_(std::move(file)) {}
  Id open_object(const std::string& obj) const;
  static File open_unprobed(const std::string& path);
  // Refuses a dataset whose stored bytes cannot hold what reading it allocates.
  void check_storage(hid_t dataset, const std::string& ds, std::uint64_t bytes) const;
  std::string path_;
  Id file_;
  // Attribute names by object path, as the probe listed them. HDF5 1.10 can crash listing a
  // damaged header's attributes after reading some of them by name (the readers' order), and
  // the same heap damage does not always crash the child: a probed file's names come from here.
  std::shared_ptr<const std::map<std::string, std::vector<std::string>>> listed_;
};

// An output file written under a temporary name and renamed into place by commit(), so a
// failed run leaves no partial output and never touches an existing file until it succeeds.
class AtomicOutput {
 public:
  explicit AtomicOutput(std::string path);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  File& file() { return file_; }
  void commit();

 private:
  std::string path_, tmp_;
  int slot_ = -1;  // temp_files registration
  File file_;
  bool committed_ = false;
};

}  // namespace moesim::h5
