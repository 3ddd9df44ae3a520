// Scratch memory for the operators: uninitialised and 64-byte aligned.
// Packed weights, depthwise tiles and GEMM work areas are always written
// before they are read, so the zero fill of a std::vector would only cost
// time (for the 4 MiB of a 1024x1024 pointwise weight, a sixth of the layer).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace pydsconv {

template <class T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(int64_t n)
      : p_(n > 0 ? static_cast<T*>(::operator new(static_cast<size_t>(n) * sizeof(T),
                                                   std::align_val_t(64)))
                 : nullptr) {}
  T* data() { return p_.get(); }
  const T* data() const { return p_.get(); }

 private:
  struct Free {
    void operator()(T* p) const { ::operator delete(p, std::align_val_t(64)); }
  };
  std::unique_ptr<T, Free> p_;
};

}  // namespace pydsconv
