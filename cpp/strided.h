// Copy of a strided array (any byte strides, negative ones included) into a
// C-contiguous buffer.  The binding copies non-contiguous or unaligned inputs
// with it, in C++ and without the GIL, instead of calling NumPy's copy from
// C++ (which may release and retake the GIL inside a C++ frame: at
// interpreter exit that ends a daemon thread by unwinding through it).
#pragma once
#include <cstdint>
#include <cstring>

namespace pydsconv {

inline void copy_strided(void* dst, const void* src, int ndim, const int64_t* shape,
                         const int64_t* strides, int64_t itemsize) {
  int64_t total = 1;
  for (int i = 0; i < ndim; ++i) total *= shape[i];
  if (total == 0) return;
  char* d = static_cast<char*>(dst);
  if (ndim == 0) {
    std::memcpy(d, src, itemsize);
    return;
  }
  const int64_t inner = shape[ndim - 1], step = strides[ndim - 1];
  int64_t index[8] = {0};
  const char* row = static_cast<const char*>(src);
  for (int64_t done = 0; done < total; done += inner) {
    if (step == itemsize) {
      std::memcpy(d, row, inner * itemsize);
    } else {
      for (int64_t j = 0; j < inner; ++j) std::memcpy(d + j * itemsize, row + j * step, itemsize);
    }
    d += inner * itemsize;
    for (int i = ndim - 2; i >= 0; --i) {  // next row: odometer over the outer axes
      row += strides[i];
      if (++index[i] < shape[i]) break;
      row -= strides[i] * shape[i];
      index[i] = 0;
    }
  }
}

}  // namespace pydsconv
