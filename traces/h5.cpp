#include "h5.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>

#include "contained.hpp"
#include "error.hpp"
#include "temp_files.hpp"

namespace moesim::h5 {

void silence_this_thread() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {
// HDF5 prints its error stack by default; moesim reports one line instead.
struct SilenceHdf5 {
  SilenceHdf5() { silence_this_thread(); }
};
const SilenceHdf5 silence;

template <class T>
struct Native;
template <>
struct Native<float> {
  static hid_t mem() { return H5T_NATIVE_FLOAT; }
  static hid_t disk() { return H5T_IEEE_F32LE; }
  static constexpr DType type = DType::f32;
};
template <>
struct Native<double> {
  static hid_t mem() { return H5T_NATIVE_DOUBLE; }
  static hid_t disk() { return H5T_IEEE_F64LE; }
  static constexpr DType type = DType::f64;
};
template <>
struct Native<std::int32_t> {
  static hid_t mem() { return H5T_NATIVE_INT32; }
  static hid_t disk() { return H5T_STD_I32LE; }
  static constexpr DType type = DType::i32;
};
template <>
struct Native<std::int64_t> {
  static hid_t mem() { return H5T_NATIVE_INT64; }
  static hid_t disk() { return H5T_STD_I64LE; }
  static constexpr DType type = DType::i64;
};
template <>
struct Native<std::uint16_t> {
  static hid_t mem() { return H5T_NATIVE_UINT16; }
  static hid_t disk() { return H5T_STD_U16LE; }
  static constexpr DType type = DType::bf16;  // 16-bit patterns: bf16 or fp16 per "dtype"
};
template <>
struct Native<std::uint8_t> {
  static hid_t mem() { return H5T_NATIVE_UINT8; }
  static hid_t disk() { return H5T_STD_U8LE; }
  static constexpr DType type = DType::u8;
};

// Whether a number type's bit layout fits inside its size. HDF5 1.10 converts a type whose
// precision or offset runs past its bytes by reading past its buffers (H5T__bit_find), which
// crashed or not depending on what lay there: such a type is refused before any read.
bool sane_number_type(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) return true;
  const std::size_t size = H5Tget_size(type), bits = 8 * size, precision = H5Tget_precision(type);
  const int offset = H5Tget_offset(type);
  if (size == 0 || size > 16 || precision == 0 || offset < 0 || static_cast<std::size_t>(offset) + precision > bits)
    return false;
  if (cls == H5T_INTEGER) return true;
  std::size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
  if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) return false;
  return esize > 0 && msize > 0 && spos < bits && epos + esize <= bits && mpos + msize <= bits;
}

// Maps an on-disk type onto the DType moesim reads it as.
DType classify(hid_t type, bool& ok) {
  ok = sane_number_type(type);
  if (!ok) return DType::u8;
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT && size == 4) return DType::f32;
  if (cls == H5T_FLOAT && size == 8) return DType::f64;
  if (cls == H5T_FLOAT && size == 2) return DType::f16;
  if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
    if (is_signed && size == 4) return DType::i32;
    if (is_signed && size == 8) return DType::i64;
    if (!is_signed && size == 2) return DType::bf16;
    if (!is_signed && size == 1) return DType::u8;
  }
  ok = false;
  return DType::u8;
}

std::string stored_name(DType t) {
  if (t == DType::bf16) return "uint16";
  return std::string(name(t));
}
}  // namespace

Id& Id::operator=(Id&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
  }
  return *this;
}

void Id::reset() noexcept {
  if (id_ >= 0 && close_) close_(id_);
  id_ = -1;
}

std::uint64_t DatasetInfo::elements() const {
  std::uint64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

void File::fail(const std::string& obj, const std::string& what) const { throw Error(where(path_, obj) + what); }

namespace {

// Files this process wrote and committed, by device, inode, size and modification time. Re-reading
// one (bisect re-reads its scratch runs at every step) needs no crash probe; any later change by
// another process changes the stamp, and the file is probed again.
struct Stamp {
  dev_t dev;
  ino_t ino;
  off_t size;
  std::int64_t mtime_ns;
  bool operator==(const Stamp&) const = default;
};
std::mutex written_lock;
std::vector<Stamp> written;

bool stamp_of(const std::string& path, Stamp& out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  out = {st.st_dev, st.st_ino, st.st_size, std::int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
  return true;
}

void remember_written(const std::string& path) {
  Stamp s;
  if (!stamp_of(path, s)) return;
  const std::lock_guard<std::mutex> hold(written_lock);
  if (written.size() >= 4096) written.erase(written.begin());  // bounded: the oldest are probed again
  written.push_back(s);
}

bool written_here(const std::string& path) {
  Stamp s;
  if (!stamp_of(path, s)) return false;
  const std::lock_guard<std::mutex> hold(written_lock);
  return std::find(written.begin(), written.end(), s) != written.end();
}

}  // namespace

File File::open_read(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);  // follows links: a link to a file is fine
  if (!std::filesystem::exists(st)) throw Error(path + ": cannot open: no such file");
  // A FIFO or device would block the read forever, a folder is no file: refused before opening.
  if (!std::filesystem::is_regular_file(st)) throw Error(path + ": cannot open: not a regular file");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw Error(path + ": cannot open: not an HDF5 file");
  // Everything is read once in a child process first: where the library itself crashes on a
  // damaged file, the child dies and this process reports it as one line.
  std::shared_ptr<std::map<std::string, std::vector<std::string>>> listed;
  if (!written_here(path)) {
    const auto records = contained::run(path, [&](const contained::Progress& progress) {
      open_unprobed(path).touch_all([&](const std::string& step) { progress.at(step); },
                                    [&](const std::string& obj, const std::vector<std::string>& names) {
                                      std::string r = obj;  // names hold no NUL: C strings in HDF5
                                      for (const auto& n : names) r += '\0' + n;
                                      progress.found(r);
                                    });
    });
    listed = std::make_shared<std::map<std::string, std::vector<std::string>>>();
    for (const auto& r : records) {
      std::vector<std::string> parts;
      for (size_t at = 0;;) {
        const size_t nul = r.find('\0', at);
        parts.push_back(r.substr(at, nul == std::string::npos ? std::string::npos : nul - at));
        if (nul == std::string::npos) break;
        at = nul + 1;
      }
      (*listed)[parts[0]].assign(parts.begin() + 1, parts.end());
    }
  }
  File file = open_unprobed(path);
  file.listed_ = std::move(listed);
  file.check_structure();  // before any reader walks or reads it
  return file;
}

File File::open_unprobed(const std::string& path) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw Error(path + ": cannot open: truncated or damaged HDF5 file");
  return File(path, Id(f, H5Fclose));
}

File File::create(const std::string& path) {
  hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) throw Error(path + ": cannot create file");
  return File(path, Id(f, H5Fclose));
}

void File::close() {
  if (file_.get() < 0) return;
  errno = 0;
  if (H5Fflush(file_.get(), H5F_SCOPE_LOCAL) < 0)
    fail("", std::string("cannot flush file") + (errno ? std::string(": ") + std::strerror(errno) : ""));
  file_.reset();
}

bool File::exists(const std::string& obj) const {
  if (obj.empty() || obj == "/") return true;
  // H5Lexists must be asked one component at a time, or a missing parent is an error.
  std::string prefix;
  size_t pos = obj[0] == '/' ? 1 : 0;
  prefix = obj[0] == '/' ? "/" : "";
  while (pos <= obj.size()) {
    size_t next = obj.find('/', pos);
    if (next == std::string::npos) next = obj.size();
    prefix += obj.substr(pos, next - pos);
    if (H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (H5Oexists_by_name(file_.get(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    prefix += "/";
    pos = next + 1;
  }
  return true;
}

Id File::open_object(const std::string& obj) const {
  if (!exists(obj)) fail(obj, "missing");
  hid_t o = H5Oopen(file_.get(), obj.c_str(), H5P_DEFAULT);
  if (o < 0) fail(obj, "cannot open object");
  return Id(o, H5Oclose);
}

bool File::is_group(const std::string& obj) const {
  if (!exists(obj)) return false;
  H5O_info_t oi;
  if (H5Oget_info_by_name(file_.get(), obj.c_str(), &oi, H5P_DEFAULT) < 0) fail(obj, "cannot inspect object");
  return oi.type == H5O_TYPE_GROUP;
}

std::vector<std::string> File::children(const std::string& group) const {
  if (!is_group(group)) fail(group, "missing group");
  Id g(H5Gopen2(file_.get(), group.c_str(), H5P_DEFAULT), H5Gclose);
  if (g.get() < 0) fail(group, "cannot open group");
  H5G_info_t gi;
  if (H5Gget_info(g.get(), &gi) < 0) fail(group, "cannot list group");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < gi.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) fail(group, "cannot list group");
    std::string s(static_cast<size_t>(n), '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, s.data(), s.size() + 1, H5P_DEFAULT);
    names.push_back(s);
  }
  return names;
}

void File::check_structure(const std::function<void(const std::string&)>& visit) const {
  std::map<std::string, std::string> seen;  // group address -> first path
  std::size_t objects = 0;
  const auto key = [&](const std::string& p) {
    H5O_info_t oi;
    if (H5Oget_info_by_name(file_.get(), p.c_str(), &oi, H5P_DEFAULT) < 0) fail(p, "cannot inspect object");
#if H5_VERSION_GE(1, 12, 0)
    char* text = nullptr;
    H5Otoken_to_str(file_.get(), &oi.token, &text);
    std::string k = text ? text : p;
    H5free_memory(text);
    return k;
#else
    return std::to_string(oi.addr);
#endif
  };
  std::function<void(const std::string&, int)> walk = [&](const std::string& g, int depth) {
    if (depth > kMaxDepth) fail(g, "groups nested deeper than " + std::to_string(kMaxDepth) + " levels");
    const auto [it, fresh] = seen.emplace(key(g), g);
    if (!fresh) fail(g, "hard link to the group " + it->second + " seen before (a cycle or a shared group)");
    if (visit) visit(g);
    for (const auto& c : children(g)) {
      const std::string p = (g == "/" ? "/" : g + "/") + c;
      if (++objects > kMaxObjects) fail(g, "more than " + std::to_string(kMaxObjects) + " objects");
      H5L_info_t li;
      if (H5Lget_info(file_.get(), p.c_str(), &li, H5P_DEFAULT) < 0) fail(p, "cannot inspect link");
      if (li.type != H5L_TYPE_HARD) fail(p, "soft or external link: moesim reads only hard links");
      if (is_group(p)) {
        walk(p, depth + 1);
      } else if (visit) {
        visit(p);
      }
    }
  };
  walk("/", 0);
}

DatasetInfo File::info(const std::string& ds) const {
  if (!exists(ds)) fail(ds, "missing dataset");
  Id d(H5Dopen2(file_.get(), ds.c_str(), H5P_DEFAULT), H5Dclose);
  if (d.get() < 0) fail(ds, "not a dataset");
  Id space(H5Dget_space(d.get()), H5Sclose);
  Id type(H5Dget_type(d.get()), H5Tclose);
  if (space.get() < 0 || type.get() < 0) fail(ds, "cannot read dataspace");
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0 || rank > 8) fail(ds, "unsupported dataspace");
  DatasetInfo info;
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  info.dims.assign(dims.begin(), dims.end());
  bool ok;
  info.stored = classify(type.get(), ok);
  if (!ok) fail(ds, "unsupported element type");
  if (has_attr(ds, "dtype")) info.declared = attr_string(ds, "dtype");
  return info;
}

namespace {

// Why a read failed: a compression filter this HDF5 build lacks (LZF from h5py, Blosc ...) is not
// damage, and saying so tells the user what to install or how to re-save the file.
std::string read_failure(hid_t dataset) {
  Id dcpl(H5Dget_create_plist(dataset), H5Pclose);
  const int n = dcpl.get() >= 0 ? H5Pget_nfilters(dcpl.get()) : 0;
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, cd[8];
    std::size_t ncd = 8;
    char fname[64] = {};
    const H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &ncd, cd, sizeof fname,
                                           fname, nullptr);
    if (id >= 0 && H5Zfilter_avail(id) <= 0)
      return "read failed: it needs HDF5 filter " + std::to_string(id) + (fname[0] ? std::string(" (") + fname + ")" : "") +
             ", which this HDF5 library does not have (re-save it with gzip or no compression)";
  }
  return "read failed (truncated or damaged file)";
}

constexpr std::uint64_t kMaxExpansion = 1100, kSmallBytes = 1 << 20;

}  // namespace

// What the file really holds for a dataset must cover what reading it allocates: a dataset that
// stores nothing (fill values only, a 1 MB file declaring gigabytes) or more than deflate could
// ever expand (about 1000:1 on zeros) is damage, refused before the allocation.
void File::check_storage(hid_t dataset, const std::string& ds, std::uint64_t bytes) const {
  if (bytes <= kSmallBytes) return;
  const std::uint64_t stored = H5Dget_storage_size(dataset);
  if (stored == 0) fail(ds, "holds no stored data (" + std::to_string(bytes) + " bytes of fill values only)");
  if (bytes / kMaxExpansion > stored)
    fail(ds, "declares " + std::to_string(bytes) + " bytes but stores " + std::to_string(stored) +
                 ", more than any compression expands");
}

namespace {

// The buffer a read fills; when the machine cannot give it, the error names the dataset whose
// declared size asked for it.
template <class T>
std::vector<T> buffer_for(const File& f, const std::string& ds, std::uint64_t elements) {
  try {
    return std::vector<T>(elements);
  } catch (const std::bad_alloc&) {
    f.fail(ds, "out of memory: reading it needs " + std::to_string(elements * sizeof(T)) + " bytes");
  }
}

}  // namespace

template <class T>
std::vector<T> File::read(const std::string& ds) const {
  DatasetInfo in = info(ds);
  if (in.stored != Native<T>::type)
    fail(ds, "dtype is " + stored_name(in.stored) + ", expected " + stored_name(Native<T>::type));
  // Callers check shapes against the trace's config before reading; this guards the rest.
  if (in.elements() > (std::uint64_t{1} << 34) / sizeof(T)) fail(ds, "absurd size");
  Id d(H5Dopen2(file_.get(), ds.c_str(), H5P_DEFAULT), H5Dclose);
  check_storage(d.get(), ds, in.elements() * sizeof(T));
  std::vector<T> out = buffer_for<T>(*this, ds, in.elements());
  if (!out.empty() && H5Dread(d.get(), Native<T>::mem(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail(ds, read_failure(d.get()));
  return out;
}

std::vector<double> File::read_rows_as_double(const std::string& ds, std::uint64_t row0, std::uint64_t nrows) const {
  DatasetInfo in = info(ds);
  std::uint64_t row_elems = 1;
  for (size_t i = 1; i < in.dims.size(); ++i) row_elems *= in.dims[i];
  if (in.dims.empty()) {
    if (row0 != 0 || nrows != 1) fail(ds, "scalar dataset read past its end");
  } else if (row0 + nrows > in.dims[0]) {
    fail(ds, "rows " + std::to_string(row0) + ".." + std::to_string(row0 + nrows) + " past its end");
  }
  std::vector<double> out = buffer_for<double>(*this, ds, nrows * row_elems);
  if (out.empty()) return out;
  Id d(H5Dopen2(file_.get(), ds.c_str(), H5P_DEFAULT), H5Dclose);
  Id fspace(H5Dget_space(d.get()), H5Sclose);
  std::vector<hsize_t> start(in.dims.size(), 0), count(in.dims.begin(), in.dims.end());
  hid_t mspace_id = H5S_ALL, fspace_id = H5S_ALL;
  Id mspace;
  if (!in.dims.empty()) {
    start[0] = row0;
    count[0] = nrows;
    H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
    mspace = Id(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
    mspace_id = mspace.get();
    fspace_id = fspace.get();
  }
  if (H5Dread(d.get(), H5T_NATIVE_DOUBLE, mspace_id, fspace_id, H5P_DEFAULT, out.data()) < 0)
    fail(ds, read_failure(d.get()));
  return out;
}

template <class T>
void File::write(const std::string& ds, const std::vector<std::uint64_t>& dims, const T* data,
                 const std::string& declared) {
  const auto slash = ds.rfind('/');
  if (slash != std::string::npos && slash > 0) create_group(ds.substr(0, slash));
  std::vector<hsize_t> hd(dims.begin(), dims.end());
  Id space(H5Screate_simple(static_cast<int>(hd.size()), hd.data(), nullptr), H5Sclose);
  Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(dcpl.get(), 0);  // no timestamps: same content, same bytes
  std::uint64_t elems = 1;
  for (auto d : dims) elems *= d;
  if (!hd.empty() && elems * sizeof(T) >= 4096 && hd[0] > 0) {
    // Chunks of whole rows near 256 KiB; shuffle + deflate are built into every HDF5 build.
    std::vector<hsize_t> chunk = hd;
    std::uint64_t row = elems / hd[0] * sizeof(T);
    chunk[0] = std::clamp<hsize_t>(row ? (256 * 1024) / row : 1, 1, hd[0]);
    H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data());
    H5Pset_shuffle(dcpl.get());
    H5Pset_deflate(dcpl.get(), 4);
  }
  Id d(H5Dcreate2(file_.get(), ds.c_str(), Native<T>::disk(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
       H5Dclose);
  if (d.get() < 0) fail(ds, "cannot create dataset");
  if (elems && H5Dwrite(d.get(), Native<T>::mem(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(ds, "write failed");
  if (!declared.empty()) set_attr(ds, "dtype", declared);
}

void File::create_group(const std::string& group) {
  if (exists(group)) return;
  Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  Id gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5Pset_obj_track_times(gcpl.get(), 0);
  Id g(H5Gcreate2(file_.get(), group.c_str(), lcpl.get(), gcpl.get(), H5P_DEFAULT), H5Gclose);
  if (g.get() < 0) fail(group, "cannot create group");
}

bool File::has_attr(const std::string& obj, const std::string& name) const {
  if (!exists(obj)) return false;
  return H5Aexists_by_name(file_.get(), obj.c_str(), name.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> File::attr_names(const std::string& obj) const {
  Id o = open_object(obj);
  H5O_info_t oi;
  if (H5Oget_info(o.get(), &oi) < 0) fail(obj, "cannot inspect object");
  if (oi.num_attrs > kMaxAttributes) fail(obj, "absurd number of attributes (" + std::to_string(oi.num_attrs) + ")");
  // One iteration in name order: looking each name up by index rebuilds the index every time,
  // quadratic in the count (5000 attributes took 9 s to diff).
  if (listed_) {
    std::string key = obj.empty() || obj[0] != '/' ? "/" + obj : obj;
    while (key.size() > 1 && key.back() == '/') key.pop_back();
    const auto it = listed_->find(key);
    if (it == listed_->end()) fail(obj, "cannot list attributes");  // the probe could not either
    return it->second;
  }
  std::vector<std::string> names;
  const auto collect = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  hsize_t at = 0;
  if (H5Aiterate2(o.get(), H5_INDEX_NAME, H5_ITER_INC, &at, collect, &names) < 0) fail(obj, "cannot list attributes");
  return names;
}

namespace {
struct Attr {
  Id attr, type;
};
Attr open_attr(const File& f, const std::string& obj, const std::string& name) {
  if (!f.has_attr(obj, name)) f.fail(obj, "missing attribute '" + name + "'");
  Id a(H5Aopen_by_name(f.id(), obj.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (a.get() < 0) f.fail(obj, "cannot open attribute '" + name + "'");
  Id t(H5Aget_type(a.get()), H5Tclose);
  Id s(H5Aget_space(a.get()), H5Sclose);
  if (H5Sget_simple_extent_npoints(s.get()) != 1) f.fail(obj, "attribute '" + name + "' is not a scalar");
  if (!sane_number_type(t.get())) f.fail(obj, "attribute '" + name + "' has a damaged number type");
  return {std::move(a), std::move(t)};
}
}  // namespace

std::string File::attr_string(const std::string& obj, const std::string& name) const {
  Attr a = open_attr(*this, obj, name);
  if (H5Tget_class(a.type.get()) != H5T_STRING) fail(obj, "attribute '" + name + "' is not a string");
  // The memory type takes the stored character set: HDF5 will not convert UTF-8 (what h5py
  // writes) to ASCII.
  const H5T_cset_t cset = H5Tget_cset(a.type.get());
  if (H5Tis_variable_str(a.type.get()) > 0) {
    Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), cset);
    char* s = nullptr;
    if (H5Aread(a.attr.get(), mem.get(), &s) < 0) fail(obj, "cannot read attribute '" + name + "'");
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  size_t n = H5Tget_size(a.type.get());
  if (n > (1u << 20)) fail(obj, "attribute '" + name + "' is absurdly long");
  // One byte more than stored: a null-terminated memory type of the stored size would drop the
  // last character of a null-padded string.
  std::string out(n + 1, '\0');
  Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mem.get(), n + 1);
  H5Tset_cset(mem.get(), cset);
  if (H5Aread(a.attr.get(), mem.get(), out.data()) < 0) fail(obj, "cannot read attribute '" + name + "'");
  const std::size_t len = std::strlen(out.c_str());
  // Null padding ends the string; text after a NUL is damage ('silu_and_mul\0junk' is no
  // activation). The conversion above stops at the NUL, so the stored bytes are read as they are.
  std::string raw(n, '\0');
  if (H5Aread(a.attr.get(), a.type.get(), raw.data()) < 0) fail(obj, "cannot read attribute '" + name + "'");
  const std::size_t nul = raw.find('\0');
  if (nul != std::string::npos && raw.find_first_not_of('\0', nul) != std::string::npos)
    fail(obj, "attribute '" + name + "' has text after a NUL byte");
  out.resize(len);
  return out;
}

std::int64_t File::attr_int(const std::string& obj, const std::string& name) const {
  Attr a = open_attr(*this, obj, name);
  if (H5Tget_class(a.type.get()) != H5T_INTEGER) fail(obj, "attribute '" + name + "' is not an integer");
  std::int64_t v = 0;
  if (H5Aread(a.attr.get(), H5T_NATIVE_INT64, &v) < 0) fail(obj, "cannot read attribute '" + name + "'");
  return v;
}

double File::attr_double(const std::string& obj, const std::string& name) const {
  Attr a = open_attr(*this, obj, name);
  const auto cls = H5Tget_class(a.type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) fail(obj, "attribute '" + name + "' is not a number");
  double v = 0;
  if (H5Aread(a.attr.get(), H5T_NATIVE_DOUBLE, &v) < 0) fail(obj, "cannot read attribute '" + name + "'");
  return v;
}

namespace {
void write_attr(File& f, const std::string& obj, const std::string& name, hid_t disk, hid_t mem, const void* v) {
  if (!f.exists(obj)) f.create_group(obj);
  if (f.has_attr(obj, name)) H5Adelete_by_name(f.id(), obj.c_str(), name.c_str(), H5P_DEFAULT);
  Id space(H5Screate(H5S_SCALAR), H5Sclose);
  Id a(H5Acreate_by_name(f.id(), obj.c_str(), name.c_str(), disk, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT),
       H5Aclose);
  if (a.get() < 0 || H5Awrite(a.get(), mem, v) < 0) f.fail(obj, "cannot write attribute '" + name + "'");
}
}  // namespace

void File::set_attr(const std::string& obj, const std::string& name, const std::string& value) {
  // Fixed-length ASCII strings: h5py returns them as bytes/str and h5dump prints them plainly.
  Id t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), std::max<size_t>(value.size(), 1));
  H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
  std::string padded = value;
  padded.resize(std::max<size_t>(value.size(), 1), '\0');
  write_attr(*this, obj, name, t.get(), t.get(), padded.data());
}

void File::set_attr(const std::string& obj, const std::string& name, std::int64_t value) {
  write_attr(*this, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void File::set_attr(const std::string& obj, const std::string& name, double value) {
  write_attr(*this, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

template std::vector<float> File::read<float>(const std::string&) const;
template std::vector<double> File::read<double>(const std::string&) const;
template std::vector<std::int32_t> File::read<std::int32_t>(const std::string&) const;
template std::vector<std::int64_t> File::read<std::int64_t>(const std::string&) const;
template std::vector<std::uint16_t> File::read<std::uint16_t>(const std::string&) const;
template std::vector<std::uint8_t> File::read<std::uint8_t>(const std::string&) const;
template void File::write<float>(const std::string&, const std::vector<std::uint64_t>&, const float*,
                                 const std::string&);
template void File::write<double>(const std::string&, const std::vector<std::uint64_t>&, const double*,
                                  const std::string&);
template void File::write<std::int32_t>(const std::string&, const std::vector<std::uint64_t>&,
                                        const std::int32_t*, const std::string&);
template void File::write<std::int64_t>(const std::string&, const std::vector<std::uint64_t>&,
                                        const std::int64_t*, const std::string&);
template void File::write<std::uint16_t>(const std::string&, const std::vector<std::uint64_t>&,
                                         const std::uint16_t*, const std::string&);
template void File::write<std::uint8_t>(const std::string&, const std::vector<std::uint64_t>&,
                                        const std::uint8_t*, const std::string&);

namespace {
// Messages name the file the user asked for, not its temporary name.
Id create_for(const std::string& tmp, const std::string& shown) {
  hid_t f = H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) throw Error(shown + ": cannot create file");
  return Id(f, H5Fclose);
}
}  // namespace

AtomicOutput::AtomicOutput(std::string path)
    : path_(std::move(path)),
      tmp_(path_ + ".tmp" + std::to_string(::getpid())),
      slot_(temp_files::add(tmp_)),  // before the file exists: a signal finds it registered
      file_(path_, create_for(tmp_, path_)) {}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    file_ = File(std::string(), Id());
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
  temp_files::drop(slot_);
}

void AtomicOutput::commit() {
  file_.close();
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) throw Error(path_ + ": cannot rename output into place: " + ec.message());
  committed_ = true;
  remember_written(path_);
  temp_files::drop(slot_);
}

}  // namespace moesim::h5
