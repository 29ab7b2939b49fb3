// The shim's C ABI convention: a call returns 0 on success, or 1 with the C++ exception's
// message copied into `err` (NUL-terminated within `err_len`); nothing throws into Rust.
#pragma once

#include <c10/util/Exception.h>

#include <cstddef>
#include <cstring>
#include <exception>

namespace titan {

inline int fail(const char* what, char* err, size_t err_len) {
  if (err != nullptr && err_len > 0) {
    std::strncpy(err, what, err_len - 1);
    err[err_len - 1] = '\0';
  }
  return 1;
}

// Runs `body`, turning any exception into `fail` with its message.
template <typename F>
int guarded(char* err, size_t err_len, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace(), err, err_len);
  } catch (const std::exception& e) {
    return fail(e.what(), err, err_len);
  } catch (...) {
    return fail("unknown C++ exception", err, err_len);
  }
}

}  // namespace titan
