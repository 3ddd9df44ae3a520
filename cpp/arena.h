// Scratch memory for the operators: uninitialised, 64-byte aligned, taken
// from the calling thread's arena.
//
// Packed weights, depthwise tiles, GEMM work areas and layout-change copies
// are written before they are read, so zero-filling them would only cost
// time.  And they are large (megabytes) and short-lived: freed memory of that
// size goes back to the OS, and taking it again costs a page fault per 4 KiB
// -- measured at 2 us a page on this project's VMs, 1.6 ms for the two
// 1.6 MiB copies of a 56x56x128 layer, ten times the layer itself.  So each
// calling thread keeps one arena, used as a stack: a Buffer takes the top,
// its destructor gives it back, and Buffers live in scopes (released in
// reverse order).  A request that does not fit is served by the heap and
// the arena grows to the high-water mark the next time it is empty;
// it keeps at most kArenaKeep bytes.  OpenMP workers never allocate: the
// calling thread's Buffers hold every worker's share.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace pydsconv {

namespace detail {
constexpr size_t kArenaAlign = 64;
// Under AddressSanitizer every Buffer is its own heap block, so that an
// overrun of one is reported instead of landing in its arena neighbour.
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kArenaKeep = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr size_t kArenaKeep = 0;
#else
constexpr size_t kArenaKeep = size_t(256) << 20;
#endif
#else
constexpr size_t kArenaKeep = size_t(256) << 20;
#endif

struct Arena {
  char* base = nullptr;
  size_t cap = 0, top = 0;    // arena bytes in use: [0, top)
  size_t live = 0, high = 0;  // bytes of live Buffers (arena and heap), its peak
  ~Arena() { ::operator delete(base, std::align_val_t(kArenaAlign)); }
  // n bytes (a multiple of kArenaAlign) for a Buffer of `exact` bytes;
  // *heap = true when not from the arena (then exactly `exact` bytes, so
  // AddressSanitizer sees the Buffer's own end).
  void* take(size_t n, size_t exact, bool* heap) {
    if (live == 0 && high > cap && high <= kArenaKeep) {  // grow while empty
      ::operator delete(base, std::align_val_t(kArenaAlign));
      base = nullptr;
      cap = 0;
      base = static_cast<char*>(::operator new(high, std::align_val_t(kArenaAlign)));
      cap = high;
    }
    live += n;
    if (live > high) high = live;
    *heap = top + n > cap;
    if (*heap) return ::operator new(exact, std::align_val_t(kArenaAlign));
    void* p = base + top;
    top += n;
    return p;
  }
  void give(void* p, size_t n, bool heap) {
    live -= n;
    if (heap) {
      ::operator delete(p, std::align_val_t(kArenaAlign));
    } else if (static_cast<char*>(p) + n == base + top) {
      top -= n;
    }
    // (Buffers are scoped, so arena blocks come back last-in first-out; one
    // that did not would only stay reserved until the thread ends.)
  }
};

inline Arena& arena() {
  thread_local Arena a;
  return a;
}

}  // namespace detail

template <class T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(int64_t n) {
    if (n <= 0) return;
    const size_t a = detail::kArenaAlign, exact = static_cast<size_t>(n) * sizeof(T);
    bytes_ = (exact + a - 1) / a * a;
    p_ = static_cast<T*>(detail::arena().take(bytes_, exact, &heap_));
  }
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    Buffer(std::move(o)).swap(*this);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (p_) detail::arena().give(p_, bytes_, heap_);
  }
  T* data() { return p_; }
  const T* data() const { return p_; }

 private:
  void swap(Buffer& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    std::swap(heap_, o.heap_);
  }
  T* p_ = nullptr;
  size_t bytes_ = 0;
  bool heap_ = false;
};

}  // namespace pydsconv
