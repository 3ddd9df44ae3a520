// The result pool: memory of the results handed to Python (outputs,
// gradients), 64-byte aligned and recycled.  Shares the arena's alignment
// and its size cap (none kept under AddressSanitizer).
//
// A program that runs the same layers again and again (inference,
// training) frees each output and asks for one of the same size at the
// next step; glibc gives such blocks (megabytes) back to the OS and
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
#pragma once
#include <cstddef>
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

#include "arena.h"

namespace pydsconv {

namespace detail {
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

}  // namespace pydsconv
