// moesim bench diff: `moesim diff -d 0.1` on two float32 datasets of --diff-mib MiB each (default
// 256, [N, 1024], contiguous as h5py writes them) with 100k elements apart by 0.5, beside a plain
// read of the same two datasets in the same blocks and h5diff -d 0.1 on them, in the same run.
// The files are written under --dir and removed afterwards.
#include <hdf5.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "bench.hpp"
#include "command.hpp"
#include "counter_random.hpp"
#include "diff.hpp"
#include "diff_read.hpp"
#include "error.hpp"
#include "h5.hpp"

namespace moesim::cli {

namespace {

constexpr std::uint64_t kCols = 1024, kSlabRows = 1024;

// Value i of the first file, and whether the second file's is 0.5 larger: about `differ` of them.
float value_of(std::uint64_t i) { return static_cast<float>(static_cast<double>(mix64(i) >> 11) * 0x1p-53 - 0.5); }
bool apart(std::uint64_t i, std::uint64_t n, std::uint64_t differ) { return mix64(i ^ 0x9e3779b97f4a7c15ULL) % n < differ; }

// A contiguous float32 dataset /x [rows, 1024], written in slabs so memory stays small.
void write_file(const std::string& path, std::uint64_t rows, std::uint64_t differ, bool second) {
  h5::Id file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (file.get() < 0) throw Error(path + ": cannot create");
  const hsize_t dims[2] = {rows, kCols};
  h5::Id space(H5Screate_simple(2, dims, nullptr), H5Sclose);
  h5::Id ds(H5Dcreate2(file.get(), "x", H5T_IEEE_F32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  std::vector<float> slab(kSlabRows * kCols);
  const std::uint64_t n = rows * kCols;
  for (std::uint64_t r0 = 0; r0 < rows; r0 += kSlabRows) {
    const hsize_t start[2] = {r0, 0}, count[2] = {std::min(kSlabRows, rows - r0), kCols};
    for (std::uint64_t j = 0; j < count[0] * kCols; ++j) {
      const std::uint64_t i = r0 * kCols + j;
      slab[j] = value_of(i) + (second && apart(i, n, differ) ? 0.5f : 0.0f);
    }
    h5::Id fs(H5Dget_space(ds.get()), H5Sclose);
    H5Sselect_hyperslab(fs.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
    h5::Id ms(H5Screate_simple(2, count, nullptr), H5Sclose);
    if (H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, ms.get(), fs.get(), H5P_DEFAULT, slab.data()) < 0)
      throw Error(path + ": write failed");
  }
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Both datasets block by block, as diff reads them, and a checksum so the reads are not dropped.
double plain_read(const std::string& a, const std::string& b, std::uint64_t block, double& checksum) {
  const auto t0 = std::chrono::steady_clock::now();
  const h5::File fa = h5::File::open_read(a), fb = h5::File::open_read(b);
  diff::BlockReader ra(fa, "/x", false, block), rb(fb, "/x", false, block);
  std::vector<float> va, vb;
  std::uint64_t first = 0;
  while (ra.next(va, first) && rb.next(vb, first)) checksum += va[va.size() / 2] + vb[vb.size() / 3];
  return since(t0);
}

}  // namespace

int bench_diff(const po::variables_map& vm) {
  const int mib = vm["diff-mib"].as<int>();
  if (mib < 1) throw UsageError("--diff-mib must be at least 1");
  const std::uint64_t rows = static_cast<std::uint64_t>(mib) * (1 << 20) / (kCols * 4), differ = 100000;
  const std::filesystem::path dir = vm["dir"].as<std::string>();
  const std::string a = (dir / "moesim-bench-diff-a.h5").string(), b = (dir / "moesim-bench-diff-b.h5").string();
  struct Remove {
    std::string a, b;
    ~Remove() { std::filesystem::remove(a), std::filesystem::remove(b); }
  } remove{a, b};
  write_file(a, rows, differ, false);
  write_file(b, rows, differ, true);
  diff::Options o;
  o.delta = 0.1;
  double checksum = 0;
  plain_read(a, b, o.block_elements, checksum);  // the page cache holds both files from here on
  const double read_s = plain_read(a, b, o.block_elements, checksum);
  auto t0 = std::chrono::steady_clock::now();
  const diff::Result r = diff::run(a, b, o);
  const double diff_s = since(t0);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  if (r.datasets.size() != 1 || r.datasets[0].metrics.mismatched == 0) throw Error("bench diff: the difference was not found");
  const std::uint64_t found = r.datasets[0].metrics.mismatched;
  std::printf("diff -d 0.1 on two float32 datasets [%llu, %llu] (%d MiB each), %llu elements apart by 0.5\n",
              static_cast<unsigned long long>(rows), static_cast<unsigned long long>(kCols), mib,
              static_cast<unsigned long long>(found));
  std::printf("  %-40s %7.3f s  (checksum %g)\n", "plain read of both, blocks of 1 Mi values", read_s, checksum);
  std::printf("  %-40s %7.3f s  %.2f of the read floor (read / diff); peak RSS %ld MiB\n", "moesim diff", diff_s,
              read_s / diff_s, ru.ru_maxrss / 1024);
  if (std::system("command -v h5diff > /dev/null 2>&1") == 0) {
    const std::string cmd = "h5diff -d 0.1 '" + a + "' '" + b + "' > /dev/null 2>&1";
    t0 = std::chrono::steady_clock::now();
    const int rc = std::system(cmd.c_str());
    const double h5_s = since(t0);
    std::printf("  %-40s %7.3f s  %.2f of the read floor; moesim diff %.2fx its speed (exit %d)\n", "h5diff -d 0.1", h5_s,
                read_s / h5_s, h5_s / diff_s, WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
  } else {
    std::printf("  h5diff: not installed\n");
  }
  return 0;
}

}  // namespace moesim::cli
