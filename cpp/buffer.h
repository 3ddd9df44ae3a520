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
#include <mutex>
#include <new>
#include <utility>
#include <vector>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define PYDSCONV_MAP_RESULTS 1
#else
#define PYDSCONV_MAP_RESULTS 0
#endif

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
  size_t cap = 0, top = 0;  // arena bytes in use: [0, top)
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

// Memory of the results handed to Python (outputs, gradients): 64-byte
// aligned and recycled.  A program that runs the same layers again and again
// (inference, training) frees each output and asks for one of the same size
// at the next step; glibc gives such blocks (megabytes) back to the OS and
// faults them in again page by page -- batch 8, a 112x112x64 float32 output
// (25.7 MB): 13.1 ms a fused call with a fresh output, 4.0 ms into out=.
// Freed blocks of kResultMin bytes or more are kept, kResultKeep bytes at
// most (the oldest go first), and reused for a request of exactly their
// size.  Never destroyed: arrays may outlive the module's statics at exit.
//
// Those blocks are mapped from the OS, not taken from malloc: blocks kept
// in glibc's heap pin the free holes between them, which glibc cannot give
// back -- 600 results of distinct sizes once left RSS 95 MiB above the
// 256 MiB kept.  A mapped block costs exactly its pages while kept, and
// nothing once dropped.  (Not under AddressSanitizer, which then keeps
// nothing and must see every block's end.)
constexpr size_t kResultMin = size_t(64) << 10;
constexpr size_t kResultKeep = kArenaKeep;
constexpr bool kMapResults = PYDSCONV_MAP_RESULTS && kResultKeep > 0;

class ResultPool {
 public:
  void* take(size_t bytes) {
    if (bytes >= kResultMin && bytes <= kResultKeep) {
      std::lock_guard<std::mutex> lock(m_);
      for (size_t i = blocks_.size(); i-- > 0;) {  // newest first
        if (blocks_[i].first != bytes) continue;
        void* p = blocks_[i].second;
        blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(i));
        kept_ -= bytes;
        return p;
      }
    }
    return fresh(bytes);
  }
  void give(void* p, size_t bytes) noexcept {
    if (bytes >= kResultMin && bytes <= kResultKeep) {
      std::lock_guard<std::mutex> lock(m_);
      try {
        blocks_.emplace_back(bytes, p);
        kept_ += bytes;
        p = nullptr;
      } catch (...) {  // no room to remember it: free it below
      }
      while (kept_ > kResultKeep) {
        kept_ -= blocks_.front().first;
        release(blocks_.front().second, blocks_.front().first);
        blocks_.erase(blocks_.begin());
      }
      if (!p) return;
    }
    release(p, bytes);
  }

 private:
  static bool mapped(size_t bytes) { return kMapResults && bytes >= kResultMin; }
  static void* fresh(size_t bytes) {
#if PYDSCONV_MAP_RESULTS
    if (mapped(bytes)) {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      return p;  // page-aligned
    }
#endif
    // nothrow, then bad_alloc (Python's MemoryError): AddressSanitizer
    // aborts on a failed throwing new even where malloc may return null.
    void* p = ::operator new(bytes > 0 ? bytes : 1, std::align_val_t(kArenaAlign), std::nothrow);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void release(void* p, size_t bytes) noexcept {
#if PYDSCONV_MAP_RESULTS
    if (mapped(bytes)) {
      munmap(p, bytes);
      return;
    }
#endif
    ::operator delete(p, std::align_val_t(kArenaAlign));
  }

  std::mutex m_;
  std::vector<std::pair<size_t, void*>> blocks_;  // oldest first
  size_t kept_ = 0;
};

inline ResultPool& result_pool() {
  static ResultPool* pool = new ResultPool;  // never destroyed (see above)
  return *pool;
}
}  // namespace detail

// A result block of `bytes` (64-byte aligned) and its release.
inline void* result_alloc(size_t bytes) { return detail::result_pool().take(bytes); }
inline void result_free(void* p, size_t bytes) noexcept { detail::result_pool().give(p, bytes); }

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
