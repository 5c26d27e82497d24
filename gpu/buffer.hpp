#pragma once
// Device memory owned by small RAII types: DeviceBuffer<T> frees on destruction (never throws),
// moves steal, and the byte count is checked before hipMalloc so an absurd size fails with the
// size named rather than deep in the driver.
#include <cstddef>
#include <string>
#include <utility>

#include "check.hpp"
#include "error.hpp"

namespace moesim::gpu {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n, const char* what = "buffer") { allocate(n, what); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return p_; }
  std::size_t size() const { return n_; }

  // At least n elements; the contents are lost when it grows.
  void reserve(std::size_t n, const char* what = "buffer") {
    if (n > n_) {
      release();
      allocate(n, what);
    }
  }

 private:
  void allocate(std::size_t n, const char* what) {
    if (n == 0) return;
    if (n > static_cast<std::size_t>(-1) / sizeof(T))
      throw Error("gpu: " + std::string(what) + " of " + std::to_string(n) + " elements overflows a byte count");
    std::size_t free_bytes = 0, total_bytes = 0;
    MOESIM_GPU_CHECK(hipMemGetInfo(&free_bytes, &total_bytes));
    const std::size_t bytes = n * sizeof(T);
    if (bytes > free_bytes)
      throw Error("gpu: " + std::string(what) + " needs " + std::to_string(bytes >> 20) + " MiB, the device has " +
                  std::to_string(free_bytes >> 20) + " MiB free of " + std::to_string(total_bytes >> 20));
    void* p = nullptr;
    MOESIM_GPU_CHECK(hipMalloc(&p, bytes));
    p_ = static_cast<T*>(p);
    n_ = n;
  }
  void release() noexcept {
    if (p_) (void)hipFree(p_);
    p_ = nullptr;
    n_ = 0;
  }

  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// Page-locked host memory: device-to-host copies into it run at the link's speed, not at the
// speed of the driver's own staging through pageable pages.
template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  T* get() const { return p_; }
  // At least n elements; the contents are lost when it grows.
  void reserve(std::size_t n) {
    if (n <= n_) return;
    release();
    void* p = nullptr;
    MOESIM_GPU_CHECK(hipHostMalloc(&p, n * sizeof(T)));
    p_ = static_cast<T*>(p);
    n_ = n;
  }

 private:
  void release() noexcept {
    if (p_) (void)hipHostFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace moesim::gpu
