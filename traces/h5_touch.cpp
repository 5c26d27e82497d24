// File::touch_all: every byte of metadata and data moesim could later read, read once, in the
// order a crash would be easiest to name. Errors are ignored: the real read reports them.
#include <algorithm>
#include <string>
#include <vector>

#include "error.hpp"
#include "h5.hpp"

namespace moesim::h5 {

namespace {

constexpr std::uint64_t kBlockBytes = std::uint64_t{64} << 20;  // the child's memory stays bounded
constexpr std::uint64_t kConvertBytes = std::uint64_t{1} << 20;  // of doubles: one conversion's code path

// The readers look attributes up by name, then list them (diff); HDF5 1.10 can crash on that
// order alone for a damaged header, so the child does both, in that order.
std::vector<std::string> touch_attributes(hid_t object, bool& ok) {
  std::vector<std::string> names;
  const auto collect = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->emplace_back(name);
    return 0;
  };
  hsize_t at = 0;
  ok = H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, &at, collect, &names) >= 0;
  H5Aexists_by_name(object, ".", "moesim: an absent name", H5P_DEFAULT);  // a search past every name
  for (const auto& name : names) {
    if (H5Aexists_by_name(object, ".", name.c_str(), H5P_DEFAULT) <= 0) continue;
    Id a(H5Aopen_by_name(object, ".", name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (a.get() < 0) continue;
    Id type(H5Aget_type(a.get()), H5Tclose), space(H5Aget_space(a.get()), H5Sclose);
    if (type.get() < 0 || space.get() < 0) continue;
    const hssize_t n = H5Sget_simple_extent_npoints(space.get());
    // The readers convert numbers to int64 or double, even where HDF5 finds no native type:
    // converting a damaged integer type overran its stack (H5T__conv_i_f) or read wild memory
    // (H5T__bit_find), where a native-type read does not convert.
    const H5T_class_t cls = H5Tget_class(type.get());
    if (n == 1 && (cls == H5T_INTEGER || cls == H5T_FLOAT)) {
      std::int64_t i = 0;
      double v = 0;
      H5Aread(a.get(), H5T_NATIVE_INT64, &i);
      H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v);
    }
    Id mem(H5Tget_native_type(type.get(), H5T_DIR_ASCEND), H5Tclose);
    const std::size_t size = mem.get() >= 0 ? H5Tget_size(mem.get()) : 0;
    if (n <= 0 || size == 0 || static_cast<std::uint64_t>(n) * size > kBlockBytes) continue;
    std::vector<unsigned char> buf(static_cast<std::size_t>(n) * size);
    H5Aread(a.get(), mem.get(), buf.data());  // variable-length parts leak: the child exits soon
  }
  std::vector<std::string> again;
  at = 0;
  H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, &at, collect, &again);
  return names;
}

// Contiguous, unfiltered numbers: a read copies bytes from one extent of the file and converts
// fixed-size values, which any bit pattern survives; only the extent's ends can differ between
// reads, so the first and the last element stand for the whole (a diff of two large datasets
// then reads their data once, not once here and once more for real).
bool plain_extent(hid_t dcpl, hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  return dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Pget_nfilters(dcpl) == 0 &&
         (cls == H5T_INTEGER || cls == H5T_FLOAT);
}

// One element in every memory type a reader asks for (h5.cpp's read<T> and read_rows_as_double):
// HDF5 picks its conversion code by the pair of types, and a damaged file type broke some of them
// (H5T__conv_i_f, H5T__bit_find) whatever the values.
void read_as_reader_types(hid_t d, hid_t mspace, hid_t fspace) {
  unsigned char buf[8];
  for (hid_t t : {H5T_NATIVE_DOUBLE, H5T_NATIVE_FLOAT, H5T_NATIVE_INT64, H5T_NATIVE_INT32, H5T_NATIVE_UINT16,
                  H5T_NATIVE_UINT8})
    H5Dread(d, t, mspace, fspace, H5P_DEFAULT, buf);
}

// Each end is read as stored and in the readers' types.
void touch_ends(hid_t d, hid_t mem, hid_t space, const std::vector<hsize_t>& dims) {
  std::vector<unsigned char> buf(H5Tget_size(mem));
  for (bool last : {false, true}) {
    std::vector<hsize_t> start(dims.size(), 0), one(dims.size(), 1);
    for (std::size_t i = 0; i < dims.size() && last; ++i) start[i] = dims[i] - 1;
    Id fspace(H5Scopy(space), H5Sclose), mspace(H5Screate_simple(static_cast<int>(one.size()), one.data(), nullptr), H5Sclose);
    H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, one.data(), nullptr);
    if (H5Dread(d, mem, mspace.get(), fspace.get(), H5P_DEFAULT, buf.data()) < 0) return;
    read_as_reader_types(d, mspace.get(), fspace.get());
  }
}

void touch_data(hid_t d) {
  Id dcpl(H5Dget_create_plist(d), H5Pclose);
  if (dcpl.get() >= 0) H5Pget_nfilters(dcpl.get());
  Id type(H5Dget_type(d), H5Tclose), space(H5Dget_space(d), H5Sclose);
  if (type.get() < 0 || space.get() < 0) return;
  Id mem(H5Tget_native_type(type.get(), H5T_DIR_ASCEND), H5Tclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0 || rank > 8) return;
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  if (mem.get() < 0) {  // no native type, but the readers still ask for theirs: one element of each
    const H5T_class_t c = H5Tget_class(type.get());
    if ((c != H5T_INTEGER && c != H5T_FLOAT) || !std::all_of(dims.begin(), dims.end(), [](hsize_t n) { return n > 0; }))
      return;
    std::vector<hsize_t> start(dims.size(), 0), one(dims.size(), 1);
    Id f(H5Scopy(space.get()), H5Sclose), m(H5Screate_simple(std::max(rank, 1), one.data(), nullptr), H5Sclose);
    if (rank > 0) H5Sselect_hyperslab(f.get(), H5S_SELECT_SET, start.data(), nullptr, one.data(), nullptr);
    read_as_reader_types(d, rank > 0 ? m.get() : H5S_ALL, rank > 0 ? f.get() : H5S_ALL);
    return;
  }
  if (rank > 0 && plain_extent(dcpl.get(), type.get()) &&
      std::all_of(dims.begin(), dims.end(), [](hsize_t n) { return n > 0; })) {
    touch_ends(d, mem.get(), space.get(), dims);
    return;
  }
  std::uint64_t row_bytes = H5Tget_size(mem.get());
  for (int i = 1; i < rank; ++i) row_bytes *= dims[static_cast<std::size_t>(i)];
  if (row_bytes == 0 || row_bytes > kBlockBytes) return;
  if (rank == 0) {
    std::vector<unsigned char> buf(row_bytes);
    H5Dread(d, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
    read_as_reader_types(d, H5S_ALL, H5S_ALL);  // one element
    return;
  }
  const H5T_class_t cls = H5Tget_class(type.get());
  const std::uint64_t row_elements = row_bytes / H5Tget_size(mem.get());
  const hsize_t rows_per_block = std::max<hsize_t>(1, kBlockBytes / row_bytes);
  std::vector<unsigned char> buf(std::min<std::uint64_t>(rows_per_block, dims[0]) * row_bytes);
  for (hsize_t row = 0; row < dims[0]; row += rows_per_block) {
    std::vector<hsize_t> start(dims.size(), 0), count(dims);
    start[0] = row;
    count[0] = std::min(rows_per_block, dims[0] - row);
    Id fspace(H5Scopy(space.get()), H5Sclose), mspace(H5Screate_simple(rank, count.data(), nullptr), H5Sclose);
    H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
    if (H5Dread(d, mem.get(), mspace.get(), fspace.get(), H5P_DEFAULT, buf.data()) < 0) return;
    if (row == 0 && (cls == H5T_INTEGER || cls == H5T_FLOAT)) {
      // read_rows_as_double converts to double: one block of that conversion, as above for attributes.
      const hsize_t rows = std::min<hsize_t>(count[0], std::max<hsize_t>(1, kConvertBytes / (row_elements * 8)));
      std::vector<hsize_t> c2(count);
      c2[0] = rows;
      Id f2(H5Scopy(space.get()), H5Sclose), m2(H5Screate_simple(rank, c2.data(), nullptr), H5Sclose);
      H5Sselect_hyperslab(f2.get(), H5S_SELECT_SET, start.data(), nullptr, c2.data(), nullptr);
      std::vector<double> as_double(static_cast<std::size_t>(rows * row_elements));
      H5Dread(d, H5T_NATIVE_DOUBLE, m2.get(), f2.get(), H5P_DEFAULT, as_double.data());
      std::vector<hsize_t> one(dims.size(), 1);
      Id f3(H5Scopy(space.get()), H5Sclose), m3(H5Screate_simple(rank, one.data(), nullptr), H5Sclose);
      H5Sselect_hyperslab(f3.get(), H5S_SELECT_SET, start.data(), nullptr, one.data(), nullptr);
      read_as_reader_types(d, m3.get(), f3.get());
    }
  }
}

}  // namespace

void File::touch_all(const std::function<void(const std::string&)>& at,
                     const std::function<void(const std::string&, const std::vector<std::string>&)>& listed) const {
  std::vector<std::string> objects;
  at("/");
  check_structure([&](const std::string& p) { objects.push_back(p); });
  for (const auto& p : objects) {
    at(p);
    Id o(H5Oopen(file_.get(), p.c_str(), H5P_DEFAULT), H5Oclose);
    if (o.get() < 0) continue;
    bool ok = false;
    const auto names = touch_attributes(o.get(), ok);
    if (ok) listed(p, names);
    H5O_info_t oi;
    if (H5Oget_info(o.get(), &oi) < 0 || oi.type != H5O_TYPE_DATASET) continue;
    Id d(H5Dopen2(file_.get(), p.c_str(), H5P_DEFAULT), H5Dclose);
    if (d.get() < 0) continue;
    try {
      Id type(H5Dget_type(d.get()), H5Tclose), space(H5Dget_space(d.get()), H5Sclose);
      const hssize_t n = H5Sget_simple_extent_npoints(space.get());
      if (n > 0) check_storage(d.get(), p, static_cast<std::uint64_t>(n) * H5Tget_size(type.get()));
    } catch (const Error&) {
      continue;  // fill values only or impossible sizes: the real read refuses it unread
    }
    touch_data(d.get());
  }
}

}  // namespace moesim::h5
